//! A local NVIDIA RIM service (`GET /v1/rim/{id}`, `application/json` with the base64 RIM) and OCSP responder
//! (`POST /`, RFC 6960 `application/ocsp-request` in, `application/ocsp-response` out) on 127.0.0.1.

use std::sync::{Arc, Mutex};

use base64::Engine as _;

use super::local::{LocalServer, not_found, ok};

/// The 2023 H100 sample of the evidence set: SPDM request ‖ response, whose driver and VBIOS versions are
/// those of the evidence set's RIMs.
pub fn h100_2023_spdm() -> Vec<u8> {
    let text = dait_testdata::read("nvidia/nvtrust__h100_2023_report.hex");
    hex::decode(String::from_utf8(text).unwrap().trim()).unwrap()
}

/// The 2023 H100 device chain (DER, leaf first).
pub fn h100_2023_chain() -> Vec<Vec<u8>> {
    dait_verifier::x509::pem_to_der(&dait_testdata::read(
        "nvidia/nvtrust__h100_2023_cert_chain.pem",
    ))
    .unwrap()
}

/// Serves each `(id, RIM XML)` as the RIM service does; the JSON's `id` is `json_id` when given.
pub async fn rim_service(rims: Vec<(String, Vec<u8>)>, json_id: Option<String>) -> LocalServer {
    LocalServer::start(Arc::new(move |r: &http::request::Parts, _: &[u8]| {
        let Some(id) = r.uri.path().strip_prefix("/v1/rim/") else {
            return not_found();
        };
        let Some((_, xml)) = rims.iter().find(|(i, _)| i == id) else {
            return not_found();
        };
        let body = serde_json::json!({
            "id": json_id.clone().unwrap_or_else(|| id.to_owned()),
            "rim": base64::engine::general_purpose::STANDARD.encode(xml),
            "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(xml)),
            "rim_format": "SWID",
            "request_id": "0123456789abcdef",
        });
        ok("application/json", body.to_string().as_bytes())
    }))
    .await
}

/// An OCSP responder answering every request with `response`; the requests it got are kept in `seen`.
pub async fn ocsp_responder(response: Vec<u8>, seen: Arc<Mutex<Vec<Vec<u8>>>>) -> LocalServer {
    LocalServer::start(Arc::new(move |r: &http::request::Parts, body: &[u8]| {
        let is_request = r
            .headers
            .get("content-type")
            .is_some_and(|v| v == "application/ocsp-request");
        if r.method != http::Method::POST || r.uri.path() != "/" || !is_request {
            return not_found();
        }
        seen.lock().unwrap().push(body.to_vec());
        ok("application/ocsp-response", &response)
    }))
    .await
}
