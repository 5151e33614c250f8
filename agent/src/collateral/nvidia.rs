//! NVIDIA GPU collateral, cached on disk: reference integrity manifests (RIMs) from NVIDIA's RIM service
//! and OCSP responses (RFC 6960) for the GPU device certificate chains.
//!
//! - RIM: `GET /v1/rim/{id}` answers `application/json` `{"id":…,"rim":"<base64 SWID XML>",…}`. The ids
//!   follow NVIDIA's scheme, from the SPDM report's opaque data: `NV_GPU_DRIVER_GH100_{driver version}` and
//!   `NV_GPU_VBIOS_{project}_{project SKU}_{chip SKU}_{VBIOS version without dots}`.
//! - OCSP: `POST /` of an `application/ocsp-request` for each non-root certificate of a device chain, one
//!   `application/ocsp-response` back.
//!
//! Every item is verified with the verifier's code (RIM: XML-DSig and signer chain to NVIDIA's pinned RIM
//! root; OCSP: signature by the issuer or its delegated responder, status good, within
//! `thisUpdate..nextUpdate`) before it is cached or used, and a cached item is used while it still verifies
//! at the time asked for: until its validity ends. [`NvidiaClient::embed`] fills a bundle's
//! [`proto::GpuEvidence`] (`driver_rim`, `vbios_rim`, `ocsp_responses`) for the GPU path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use dait_chain_client::proto;
use dait_verifier::UnixTime;
use dait_verifier::nvidia::{NvidiaRoots, ocsp, opaque, spdm};
use dait_verifier::rim::verify_rim;
use sha2::Digest as _;

use super::service::Service;
use super::{FetchError, Refresh, RimFailure, store_file};
use crate::http::App;

/// Environment variable naming the NVIDIA RIM service base URL.
pub const NVIDIA_RIM_URL_ENV: &str = "DAIT_NVIDIA_RIM_URL";
/// NVIDIA's public RIM service.
pub const DEFAULT_NVIDIA_RIM_URL: &str = "https://rim.attestation.nvidia.com";
/// Environment variable naming the NVIDIA OCSP responder URL.
pub const NVIDIA_OCSP_URL_ENV: &str = "DAIT_NVIDIA_OCSP_URL";
/// NVIDIA's public OCSP responder.
pub const DEFAULT_NVIDIA_OCSP_URL: &str = "https://ocsp.ndis.nvidia.com";

/// The driver and VBIOS RIM ids of one GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RimIds {
    /// `NV_GPU_DRIVER_GH100_…`.
    pub driver: String,
    /// `NV_GPU_VBIOS_…`.
    pub vbios: String,
}

impl RimIds {
    /// The ids named by the opaque data of `spdm` (SPDM GET_MEASUREMENTS request ‖ response); `None` when it
    /// lacks a version, project or SKU.
    pub fn of_spdm(spdm_bytes: &[u8]) -> Option<Self> {
        let ev = spdm::parse(spdm_bytes).ok()?;
        let o = opaque::parse(ev.response.opaque).ok()?;
        Some(Self {
            driver: format!("NV_GPU_DRIVER_GH100_{}", o.driver_version()?),
            vbios: format!(
                "NV_GPU_VBIOS_{}_{}_{}_{}",
                o.project()?,
                o.project_sku()?,
                o.chip_sku()?,
                o.vbios_version()?.replace('.', "").to_ascii_uppercase()
            ),
        })
    }
}

/// A RIM service and OCSP responder client with an on-disk cache.
#[derive(Clone, Debug)]
pub struct NvidiaClient {
    rim: Service,
    ocsp: Service,
    cache_dir: PathBuf,
    roots: NvidiaRoots,
}

#[derive(serde::Deserialize)]
struct RimReply {
    id: String,
    rim: String,
}

impl NvidiaClient {
    /// A client for the RIM service at `rim_url` and the OCSP responder at `ocsp_url` (each
    /// `http(s)://host[:port][/prefix]`), caching under `cache_dir`; `https` services are trusted through the
    /// roots in `ca_file` (PEM). Each item must arrive within 30 s.
    pub fn new(
        rim_url: &str,
        ocsp_url: &str,
        ca_file: &Path,
        cache_dir: &Path,
    ) -> Result<Self, FetchError> {
        Ok(Self {
            rim: Service::new(rim_url, ca_file)?,
            ocsp: Service::new(ocsp_url, ca_file)?,
            cache_dir: cache_dir.to_owned(),
            roots: NvidiaRoots::pinned(),
        })
    }

    /// Bounds the time each item may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.rim.timeout = timeout;
        self.ocsp.timeout = timeout;
        self
    }

    /// How many HTTP requests this client (and its clones) has sent, RIM service and OCSP responder.
    pub fn requests(&self) -> u64 {
        self.rim.requests() + self.ocsp.requests()
    }

    /// The RIM `id` (SWID XML), verified at `now`: from the cache while it verifies, else fetched, verified
    /// and cached.
    pub async fn rim(&self, id: &str, now: UnixTime) -> Result<Vec<u8>, FetchError> {
        let reject = |reason| FetchError::RimRejected {
            id: id.to_owned(),
            reason,
        };
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(FetchError::BadUrl(format!("RIM id {id:?}")));
        }
        let file = self.cache_dir.join("nvidia").join("rim").join(id);
        if let Ok(xml) = std::fs::read(&file)
            && verify_rim(&xml, &self.roots.rim_signing, now).is_ok()
        {
            return Ok(xml);
        }
        let reply = self
            .rim
            .get("NVIDIA RIM", &format!("/v1/rim/{id}"), "application/json")
            .await?;
        reply.expect_type("NVIDIA RIM", &["application/json"])?;
        let parsed: RimReply =
            serde_json::from_slice(&reply.body).map_err(|_| reject(RimFailure::Json))?;
        if parsed.id != id {
            return Err(reject(RimFailure::Json));
        }
        let xml = base64::engine::general_purpose::STANDARD
            .decode(parsed.rim.trim())
            .map_err(|_| reject(RimFailure::Json))?;
        verify_rim(&xml, &self.roots.rim_signing, now)
            .map_err(|e| reject(RimFailure::Verify(e)))?;
        store_file(&file, &xml)?;
        Ok(xml)
    }

    /// One good OCSP response (DER) for each non-root certificate of `chain` (DER, leaf first), verified at
    /// `now`: from the cache while it verifies, else POSTed for, verified and cached.
    pub async fn ocsp(&self, chain: &[Vec<u8>], now: UnixTime) -> Result<Vec<Vec<u8>>, FetchError> {
        let certs = dait_verifier::x509::parse_chain(&chain.concat()).map_err(|_| {
            FetchError::OcspRejected {
                index: 0,
                source: ocsp::OcspError::Malformed,
            }
        })?;
        let mut out = Vec::with_capacity(certs.len().saturating_sub(1));
        for (index, pair) in certs.windows(2).enumerate() {
            let [cert, issuer] = pair else { continue };
            let reject = |source| FetchError::OcspRejected { index, source };
            let key = chain
                .get(index)
                .map(sha2::Sha256::digest)
                .unwrap_or_default();
            let file = self
                .cache_dir
                .join("nvidia")
                .join("ocsp")
                .join(format!("{}.der", hex::encode(key)));
            if let Ok(der) = std::fs::read(&file)
                && ocsp::verify(&der, cert, issuer, now).is_ok()
            {
                out.push(der);
                continue;
            }
            let request = ocsp::encode_request(cert, issuer).map_err(reject)?;
            let reply = self
                .ocsp
                .post(
                    "NVIDIA OCSP",
                    "/",
                    "application/ocsp-request",
                    "application/ocsp-response",
                    request,
                )
                .await?;
            reply.expect_type("NVIDIA OCSP", &["application/ocsp-response"])?;
            let der = reply.body.to_vec();
            ocsp::verify(&der, cert, issuer, now).map_err(reject)?;
            store_file(&file, &der)?;
            out.push(der);
        }
        Ok(out)
    }

    /// Fills `gpu`'s `driver_rim`, `vbios_rim` (ids from its SPDM report) and `ocsp_responses` (for its
    /// device chain), each verified at `now`: what the GPU path calls for each GPU's evidence.
    pub async fn embed(
        &self,
        gpu: &mut proto::GpuEvidence,
        now: UnixTime,
    ) -> Result<(), FetchError> {
        let spdm = [gpu.spdm_request.as_slice(), gpu.spdm_response.as_slice()].concat();
        let ids = RimIds::of_spdm(&spdm).ok_or_else(|| FetchError::RimRejected {
            id: String::new(),
            reason: RimFailure::NoIds,
        })?;
        gpu.driver_rim = self.rim(&ids.driver, now).await?;
        gpu.vbios_rim = self.rim(&ids.vbios, now).await?;
        gpu.ocsp_responses = self.ocsp(&gpu.cert_chain, now).await?;
        Ok(())
    }
}
/// The NVIDIA collateral of each GPU (by index), put into the GPUs' evidence of every bundle; filled by
/// [`refresh_once`] and replaced when refreshed.
#[derive(Debug, Default)]
pub struct GpuCollateralSlot(RwLock<Vec<GpuCollateral>>);

/// One GPU's RIMs and the OCSP responses for its device chain.
#[derive(Clone, Debug, Default)]
pub struct GpuCollateral {
    driver_rim: Vec<u8>,
    vbios_rim: Vec<u8>,
    ocsp_responses: Vec<Vec<u8>>,
}

impl GpuCollateralSlot {
    /// Fills each of `gpus` (index order) with its collateral, where fetched; the rest stay without.
    pub fn fill(&self, gpus: &mut [proto::GpuEvidence]) {
        let held = self.0.read().unwrap_or_else(PoisonError::into_inner);
        for (gpu, c) in gpus.iter_mut().zip(held.iter()) {
            gpu.driver_rim.clone_from(&c.driver_rim);
            gpu.vbios_rim.clone_from(&c.vbios_rim);
            gpu.ocsp_responses.clone_from(&c.ocsp_responses);
        }
    }

    fn set(&self, collateral: Vec<GpuCollateral>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = collateral;
    }
}

/// Fetches (or takes from the cache) the RIMs and OCSP responses of the agent's GPUs, from one fresh
/// collection of their evidence, and puts them in `app.gpu_collateral`. Returns the earliest OCSP
/// `nextUpdate`; `None` without GPUs (`--gpus 0`).
pub async fn refresh_once(
    app: &Arc<App>,
    client: &NvidiaClient,
    now: UnixTime,
) -> Result<Option<UnixTime>, FetchError> {
    if app.gpus.is_none() {
        return Ok(None);
    }
    let gpu_app = Arc::clone(app);
    let evidence = tokio::task::spawn_blocking(move || {
        let mut report_data = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut report_data);
        gpu_app.gpus.as_ref().map(|g| g.evidence(&report_data))
    })
    .await
    .map_err(|e| FetchError::Transport {
        item: "GPU evidence",
        reason: e.to_string(),
    })?;
    let Some(evidence) = evidence else {
        return Ok(None);
    };
    let evidence = evidence.map_err(|e| FetchError::Transport {
        item: "GPU evidence",
        reason: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(evidence.len());
    let mut earliest: Option<u64> = None;
    for mut gpu in evidence {
        client.embed(&mut gpu, now).await?;
        let certs = dait_verifier::x509::parse_chain(&gpu.cert_chain.concat()).map_err(|_| {
            FetchError::OcspRejected {
                index: 0,
                source: ocsp::OcspError::Malformed,
            }
        })?;
        for (index, (der, pair)) in gpu.ocsp_responses.iter().zip(certs.windows(2)).enumerate() {
            let [cert, issuer] = pair else { continue };
            let good = ocsp::verify(der, cert, issuer, now)
                .map_err(|source| FetchError::OcspRejected { index, source })?;
            earliest = Some(earliest.map_or(good.next_update, |e| e.min(good.next_update)));
        }
        out.push(GpuCollateral {
            driver_rim: gpu.driver_rim,
            vbios_rim: gpu.vbios_rim,
            ocsp_responses: gpu.ocsp_responses,
        });
    }
    app.gpu_collateral.set(out);
    Ok(earliest.map(UnixTime::from_secs))
}

impl Refresh for NvidiaClient {
    fn refresh<'a>(
        &'a self,
        app: &'a Arc<App>,
        now: UnixTime,
    ) -> futures::future::BoxFuture<'a, Result<Option<UnixTime>, FetchError>> {
        Box::pin(refresh_once(app, self, now))
    }

    /// OCSP responses live for days; a day's margin, as for the other collateral.
    fn margin(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }

    /// The default policy requires RIMs and OCSP for every GPU: a bundle without them does not verify.
    fn required(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_fills_each_gpu_by_index_and_leaves_the_rest() {
        let slot = GpuCollateralSlot::default();
        let mut gpus = vec![proto::GpuEvidence::default(); 2];
        slot.fill(&mut gpus);
        assert!(gpus.iter().all(|g| g.driver_rim.is_empty()));

        slot.set(vec![GpuCollateral {
            driver_rim: b"driver".to_vec(),
            vbios_rim: b"vbios".to_vec(),
            ocsp_responses: vec![b"leaf".to_vec(), b"intermediate".to_vec()],
        }]);
        slot.fill(&mut gpus);
        assert_eq!(gpus[0].driver_rim, b"driver");
        assert_eq!(gpus[0].vbios_rim, b"vbios");
        assert_eq!(gpus[0].ocsp_responses.len(), 2);
        assert!(gpus[1].driver_rim.is_empty() && gpus[1].ocsp_responses.is_empty());
    }
}
