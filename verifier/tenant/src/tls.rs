//! TLS to the host, pinned to the attested `tls_spki` (PROTOCOL.md §2, §6).
//!
//! The host's certificate is self-issued inside the TEE; no CA vouches for it. The attested keyset names
//! the SubjectPublicKeyInfo of the serving key instead. The first connection (the one that fetches the
//! evidence bundle) accepts any certificate but records the SPKI it presented; once the bundle verifies,
//! the recorded SPKI must equal the attested one, and every later connection accepts only that SPKI.
//! Handshake signatures are always checked against the presented certificate, so a peer that shows the
//! pinned certificate without holding its key fails the handshake.

use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;

/// Which server keys a connection accepts.
#[derive(Debug)]
enum Pin {
    /// Accept any key and remember it (the bundle fetch only).
    Record(Mutex<Option<Vec<u8>>>),
    /// Accept exactly this DER SubjectPublicKeyInfo.
    Spki(Vec<u8>),
}

/// A rustls server-certificate verifier that pins the SubjectPublicKeyInfo.
#[derive(Debug)]
pub(crate) struct SpkiVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl SpkiVerifier {
    /// A verifier for the first connection: it records the SPKI the server presents.
    pub(crate) fn recording() -> Arc<Self> {
        Arc::new(Self {
            pin: Pin::Record(Mutex::new(None)),
            provider: provider(),
        })
    }

    /// A verifier that accepts exactly `spki`.
    pub(crate) fn pinned(spki: Vec<u8>) -> Arc<Self> {
        Arc::new(Self {
            pin: Pin::Spki(spki),
            provider: provider(),
        })
    }

    /// The SPKI recorded by a recording verifier, if a handshake has happened.
    pub(crate) fn recorded(&self) -> Option<Vec<u8>> {
        match &self.pin {
            Pin::Record(seen) => seen.lock().ok().and_then(|s| s.clone()),
            Pin::Spki(spki) => Some(spki.clone()),
        }
    }

    /// A client configuration that uses this verifier.
    pub(crate) fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerCertVerifier for SpkiVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let spki = parsed.subject_public_key_info();
        match &self.pin {
            Pin::Spki(expected) if expected.as_slice() == spki.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            Pin::Spki(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            Pin::Record(seen) => {
                let mut seen = seen
                    .lock()
                    .map_err(|_| rustls::Error::General("spki pin lock poisoned".into()))?;
                match seen.as_ref() {
                    // A recording verifier serves one host identity: a second, different key fails.
                    Some(previous) if previous.as_slice() != spki.as_ref() => {
                        Err(rustls::Error::InvalidCertificate(
                            rustls::CertificateError::ApplicationVerificationFailure,
                        ))
                    }
                    _ => {
                        *seen = Some(spki.as_ref().to_vec());
                        Ok(ServerCertVerified::assertion())
                    }
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
