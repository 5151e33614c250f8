//! The per-boot keyset: receipt signing key (P-256), OHTTP key (X25519) and TLS key with its
//! self-signed certificate. Generated at start, held in memory only, never written to disk.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dait_chain_client::{
    Address, B256, Domain, Freshness, HostSigningKey, Keyset, keyset_hash, report_data,
};
use rand::RngCore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::hpke::{HpkeError, HpkeKey};
use dait_chain_client::WireMessage as _;

/// Errors while generating the keyset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// OHTTP key generation failed.
    #[error("ohttp key")]
    Hpke(#[from] HpkeError),
    /// TLS key or certificate generation failed.
    #[error("tls certificate")]
    Certificate(#[from] rcgen::Error),
    /// Building the TLS server configuration failed.
    #[error("tls configuration")]
    Tls(#[from] rustls::Error),
    /// The operator account key file is malformed.
    #[error("operator account key file is not a 32-byte hex secp256k1 key")]
    HostAccountKey,
}

/// The TLS key and self-signed certificate. The private key is zeroized on drop.
pub struct TlsKey {
    cert: CertificateDer<'static>,
    key_der: Zeroizing<Vec<u8>>,
    spki: Vec<u8>,
}

impl std::fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsKey").finish_non_exhaustive()
    }
}

impl TlsKey {
    /// A fresh P-256 key and a self-signed certificate for `localhost` / `dait-host`.
    pub fn generate() -> Result<Self, KeyError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "dait-host".to_owned()])?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            spki: key.public_key_der(),
            key_der: Zeroizing::new(key.serialize_der()),
            cert: cert.der().clone(),
        })
    }

    /// DER SubjectPublicKeyInfo (the keyset's `tls_spki`).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// A rustls server configuration (ring provider, TLS 1.3 and 1.2, ALPN http/1.1).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, KeyError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.to_vec()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Everything generated at boot.
pub struct BootKeys {
    /// Receipt signing key.
    pub receipt: HostSigningKey,
    /// OHTTP key.
    pub hpke: HpkeKey,
    /// TLS key.
    pub tls: TlsKey,
    /// The keyset document as served.
    pub keyset_bytes: Vec<u8>,
    /// `H256("dait/v1/keyset" || keyset_bytes)`.
    pub keyset_hash: B256,
    /// `H256(receipt_key)`.
    pub host_key_id: B256,
    /// The operator's chain account (`host_account` of the keyset): the `host` of every channel this
    /// agent serves. Zero without `--host-key-path` (off-chain channels only).
    pub host_account: Address,
    /// The EIP-712 domain.
    pub domain: Domain,
}

impl std::fmt::Debug for BootKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootKeys")
            .field("keyset_hash", &self.keyset_hash)
            .field("host_key_id", &self.host_key_id)
            .field("host_account", &self.host_account)
            .finish_non_exhaustive()
    }
}

impl BootKeys {
    /// Generate a keyset for the given domain and operator account.
    pub fn generate(
        chain_id: u64,
        settlement: [u8; 20],
        host_account: Address,
    ) -> Result<Self, KeyError> {
        let receipt = HostSigningKey::generate(&mut rand::rngs::OsRng);
        let hpke = HpkeKey::generate()?;
        let tls = TlsKey::generate()?;
        let mut boot_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut boot_id);
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let keyset = Keyset {
            receipt_key: receipt.verifying_key().to_sec1(),
            ohttp_key_config: hpke.config().to_vec(),
            tls_spki: tls.spki().to_vec(),
            chain_id,
            settlement: Address(settlement),
            created_at,
            boot_id,
            host_account,
        };
        let keyset_bytes = keyset.encode();
        Ok(Self {
            host_key_id: keyset.host_key_id(),
            host_account: keyset.host_account,
            domain: keyset.domain(),
            keyset_hash: keyset_hash(&keyset_bytes),
            keyset_bytes,
            receipt,
            hpke,
            tls,
        })
    }

    /// `report_data` for a freshness value.
    pub fn report_data(&self, freshness: &Freshness) -> [u8; 64] {
        report_data(&self.keyset_hash, freshness)
    }
}

/// Read the operator's chain account key file (hex secp256k1 secret, optional `0x`) and return its
/// address. The key itself is dropped (zeroized) at once; only the address is kept.
pub fn host_account_from_file(text: &str) -> Result<Address, KeyError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    hex::decode_to_slice(t, &mut secret[..]).map_err(|_| KeyError::HostAccountKey)?;
    let signer = dait_chain_client::TenantSigner::from_bytes(&secret)
        .map_err(|_| KeyError::HostAccountKey)?;
    Ok(signer.address())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keyset_binds_all_keys() {
        let k = BootKeys::generate(7, [1; 20], Address::ZERO).unwrap();
        let ks = Keyset::decode(&k.keyset_bytes).unwrap();
        assert_eq!(ks.receipt_key, k.receipt.verifying_key().to_sec1());
        assert_eq!(ks.ohttp_key_config, k.hpke.config());
        assert_eq!(ks.tls_spki, k.tls.spki());
        assert_eq!(ks.chain_id, 7);
        assert_eq!(k.keyset_hash, keyset_hash(&k.keyset_bytes));
        assert!(k.tls.server_config().is_ok());
    }

    #[test]
    fn host_account_address() {
        // Well-known test key (anvil account 0).
        let a = host_account_from_file(
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80\n",
        )
        .unwrap();
        assert_eq!(a.to_string(), "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
        assert!(matches!(
            host_account_from_file("zz"),
            Err(KeyError::HostAccountKey)
        ));
    }
}
