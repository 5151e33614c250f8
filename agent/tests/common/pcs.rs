//! A local Intel PCS (API v4) on 127.0.0.1 serving real collateral from the evidence set, with the real
//! service's paths, issuer-chain headers (URL-encoded PEM) and content types.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use super::local::{LocalServer, not_found};

/// One PCS collateral set: the bodies and issuer chains the PCS serves for one FMSPC (PCK Platform CA).
#[derive(Clone, Debug)]
pub struct PcsSet {
    /// Upper-case FMSPC the TCB Info is for.
    pub fmspc: String,
    pub tcb_info_json: Vec<u8>,
    pub qe_identity_json: Vec<u8>,
    pub pck_crl_der: Vec<u8>,
    pub root_ca_crl_der: Vec<u8>,
    pub tcb_info_issuer_chain_pem: Vec<u8>,
    pub qe_identity_issuer_chain_pem: Vec<u8>,
    pub pck_crl_issuer_chain_pem: Vec<u8>,
}

impl PcsSet {
    /// Sample tdx-A1 (go-tdx-guest, Sapphire Rapids, FMSPC 50806f000000): the files as the PCS served them.
    pub fn go_tdx_guest_a1() -> Self {
        let r = |p: &str| dait_testdata::read(&format!("tdx/go-tdx-guest__{p}"));
        Self {
            fmspc: "50806F000000".into(),
            tcb_info_json: r("spr-e4_tcbinfo_50806f000000.json"),
            qe_identity_json: r("qe_identity_2023-06.json"),
            pck_crl_der: r("pck_platform_crl_2023-06.der"),
            root_ca_crl_der: r("root_ca_crl_2023-04.der"),
            tcb_info_issuer_chain_pem: r("tcb_info_issuer_chain.pem"),
            qe_identity_issuer_chain_pem: r("qe_identity_issuer_chain.pem"),
            pck_crl_issuer_chain_pem: r("pck_crl_issuer_chain.pem"),
        }
    }

    /// A set from a dcap-qvl `QuoteCollateralV3` JSON bundle of the evidence set: the signed bodies are
    /// the exact bytes served, so the PCS responses are `{"tcbInfo":<body>,"signature":"<hex>"}`.
    pub fn from_bundle(rel: &str) -> Self {
        let b: serde_json::Value = serde_json::from_slice(&dait_testdata::read(rel)).unwrap();
        let s = |k: &str| b[k].as_str().unwrap().to_owned();
        let tcb = s("tcb_info");
        let fmspc = serde_json::from_str::<serde_json::Value>(&tcb).unwrap()["fmspc"]
            .as_str()
            .unwrap()
            .to_ascii_uppercase();
        Self {
            fmspc,
            tcb_info_json: format!(
                "{{\"tcbInfo\":{tcb},\"signature\":\"{}\"}}",
                s("tcb_info_signature")
            )
            .into_bytes(),
            qe_identity_json: format!(
                "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                s("qe_identity"),
                s("qe_identity_signature")
            )
            .into_bytes(),
            pck_crl_der: hex::decode(s("pck_crl")).unwrap(),
            root_ca_crl_der: hex::decode(s("root_ca_crl")).unwrap(),
            tcb_info_issuer_chain_pem: s("tcb_info_issuer_chain").into_bytes(),
            qe_identity_issuer_chain_pem: s("qe_identity_issuer_chain").into_bytes(),
            pck_crl_issuer_chain_pem: s("pck_crl_issuer_chain").into_bytes(),
        }
    }

    /// The same set with one hex digit of the TCB Info signature changed.
    pub fn with_bad_tcb_signature(mut self) -> Self {
        let key = b"\"signature\":\"";
        let at = self
            .tcb_info_json
            .windows(key.len())
            .rposition(|w| w == key)
            .unwrap()
            + key.len();
        let d = &mut self.tcb_info_json[at];
        *d = if *d == b'0' { b'1' } else { b'0' };
        self
    }
}

/// What the local PCS leaves out.
#[derive(Clone, Copy, Debug, Default)]
pub struct PcsFaults {
    /// A path (without query) answered 404.
    pub missing: Option<&'static str>,
}

/// The local PCS; [`PcsServer::stop`] closes the listener and every connection.
pub struct PcsServer(LocalServer);

impl PcsServer {
    /// Starts on 127.0.0.1:0.
    pub async fn start(set: PcsSet, faults: PcsFaults) -> Self {
        Self(
            LocalServer::start(Arc::new(move |r: &http::request::Parts, _: &[u8]| {
                answer(&set, faults, r)
            }))
            .await,
        )
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        self.0.url()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.0.requests()
    }

    /// Closes the listener and every connection.
    pub async fn stop(self) {
        self.0.stop().await;
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as Intel's PCS encodes its chains.
pub fn url_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3 / 2);
    for &c in b {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

/// An issuer-chain header: its name and the PEM it carries.
type ChainHeader<'a> = Option<(&'static str, &'a [u8])>;

fn answer(set: &PcsSet, faults: PcsFaults, r: &http::request::Parts) -> Response<Full<Bytes>> {
    let path = r.uri.path();
    let query = r.uri.query().unwrap_or("");
    if faults.missing == Some(path) {
        return not_found();
    }
    let (body, content_type, chain): (&[u8], &str, ChainHeader<'_>) = match path {
        "/tdx/certification/v4/tcb"
            if query.eq_ignore_ascii_case(&format!("fmspc={}", set.fmspc)) =>
        {
            (
                &set.tcb_info_json,
                "application/json",
                Some(("TCB-Info-Issuer-Chain", &set.tcb_info_issuer_chain_pem)),
            )
        }
        "/tdx/certification/v4/qe/identity" => (
            &set.qe_identity_json,
            "application/json",
            Some((
                "SGX-Enclave-Identity-Issuer-Chain",
                &set.qe_identity_issuer_chain_pem,
            )),
        ),
        "/sgx/certification/v4/pckcrl" if query == "ca=platform&encoding=der" => (
            &set.pck_crl_der,
            "application/pkix-crl",
            Some(("SGX-PCK-CRL-Issuer-Chain", &set.pck_crl_issuer_chain_pem)),
        ),
        "/sgx/certification/v4/rootcacrl" => (&set.root_ca_crl_der, "application/pkix-crl", None),
        _ => return not_found(),
    };
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", content_type)
        .header("Request-ID", "0123456789abcdef0123456789abcdef");
    if let Some((name, pem)) = chain {
        b = b.header(name, url_encode(pem));
    }
    b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
}
