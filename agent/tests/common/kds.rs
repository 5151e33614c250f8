//! A local AMD KDS on 127.0.0.1 with the real service's paths (`/vcek/v1/{product}/{hwid}?{SPLs}`,
//! `/vcek/v1/{product}/cert_chain`, `/vcek/v1/{product}/crl`) and content types, serving real files of the
//! evidence set.

use std::sync::Arc;

use super::local::{LocalServer, not_found, ok};

/// What the local KDS serves for one product.
#[derive(Clone, Debug)]
pub struct KdsSet {
    /// `Milan`, `Genoa` or `Turin`.
    pub product: &'static str,
    /// The VCEK's `{hwid}?{SPLs}` and the certificate (DER); `None`: 404.
    pub vcek: Option<(String, Vec<u8>)>,
    /// ASK then ARK, PEM; `None`: 404.
    pub cert_chain_pem: Option<Vec<u8>>,
    /// The CRL (DER); `None`: 404.
    pub crl_der: Option<Vec<u8>>,
    /// The content type of the certificate chain.
    pub chain_type: &'static str,
}

/// The virtee/sev Milan report of the evidence set (a VCEK-signed report, ABI version 2).
pub fn milan_report() -> Vec<u8> {
    dait_verifier::snp::decode_report_file(&dait_testdata::read("snp/virtee__milan_report.hex"))
}

impl KdsSet {
    /// The virtee/sev Milan sample: its VCEK at the report's chip and TCB, AMD's Milan ASK and ARK; no CRL
    /// (the evidence set has none).
    pub fn milan() -> Self {
        let report = milan_report();
        let r = dait_verifier::snp::SnpReport::parse(&report).unwrap();
        let tcb = dait_verifier::snp::TcbVersion::decode(
            r.reported_tcb,
            dait_verifier::snp::SnpProduct::Milan,
        );
        let query = format!(
            "{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            hex::encode(r.chip_id),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        );
        Self {
            product: "Milan",
            vcek: Some((query, dait_testdata::read("snp/virtee__milan_vcek.der"))),
            cert_chain_pem: Some(dait_testdata::read("snp/virtee__milan_cert_chain.pem")),
            crl_der: None,
            chain_type: "application/x-pem-file",
        }
    }

    /// Starts the KDS on 127.0.0.1:0.
    pub async fn serve(self) -> LocalServer {
        LocalServer::start(Arc::new(move |r: &http::request::Parts, _: &[u8]| {
            let full = r.uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
            let Some(rest) = full.strip_prefix(&format!("/vcek/v1/{}/", self.product)) else {
                return not_found();
            };
            match (rest, &self.vcek, &self.cert_chain_pem, &self.crl_der) {
                ("cert_chain", _, Some(pem), _) => ok(self.chain_type, pem),
                ("crl", _, _, Some(crl)) => ok("application/pkix-crl", crl),
                (q, Some((want, der)), _, _) if q == want => ok("application/pkix-cert", der),
                _ => not_found(),
            }
        }))
        .await
    }
}
