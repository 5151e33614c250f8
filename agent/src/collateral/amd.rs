//! AMD SEV-SNP collateral from AMD's Key Distribution Service (KDS), cached on disk.
//!
//! Three items, with the paths and content types of `kdsintf.amd.com` (AMD VCEK specification 57230, §4):
//! - the VCEK of a chip at a TCB: `GET /vcek/v1/{product}/{hwid}?blSPL=…&teeSPL=…&snpSPL=…&ucodeSPL=…`
//!   (Turin: `fmcSPL` too, and the hwid is the first 8 bytes of CHIP_ID), DER, `application/pkix-cert`
//!   (or `application/x-x509-ca-cert`);
//! - the product's ASK and ARK: `GET /vcek/v1/{product}/cert_chain`, PEM (ASK, then ARK),
//!   `application/x-pem-file`;
//! - the product's CRL: `GET /vcek/v1/{product}/crl`, DER, `application/pkix-crl`.
//!
//! Every item is checked with the verifier's code before it is cached or used: the VCEK against AMD's
//! pinned chain of its product and against the report (CHIP_ID, SPLs), the served ASK/ARK against the
//! pinned ARK, the CRL's signature by the ARK, its validity and that it lists neither ASK nor VCEK.
//!
//! When the host hands the guest no certificate table (configfs-tsm `auxblob` empty), the configfs-tsm
//! backend takes the VCEK from this cache ([`cached_vcek`]); `dait-host serve` fills it at start. The ARK,
//! ASK and CRL go into every bundle's collateral (`amd_chain`, `amd_crl`), so a tenant verifies offline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dait_chain_client::proto::{self, Platform, cpu_evidence::Evidence};
use dait_verifier::UnixTime;
use dait_verifier::snp::{
    SigningKey, SnpCert, SnpCerts, SnpError, SnpPolicy, SnpProduct, SnpReport, TcbVersion,
    amd_ark_pem, check_vek_binding, crl, split_pem_certs, verify_chain,
};

use super::service::Service;
use super::{FetchError, store_file};
use crate::http::App;

/// Environment variable naming the AMD KDS base URL.
pub const AMD_KDS_URL_ENV: &str = "DAIT_AMD_KDS_URL";
/// AMD's public Key Distribution Service.
pub const DEFAULT_AMD_KDS_URL: &str = "https://kdsintf.amd.com";

const VCEK_TYPES: &[&str] = &["application/pkix-cert", "application/x-x509-ca-cert"];
const CHAIN_TYPES: &[&str] = &["application/x-pem-file"];
const CRL_TYPES: &[&str] = &["application/pkix-crl"];

/// A KDS client with an on-disk cache.
#[derive(Clone, Debug)]
pub struct KdsClient {
    service: Service,
    cache_dir: PathBuf,
    refresh_before: Duration,
}

/// A VCEK that verified under AMD's pinned chain of `product` and binds the report it was fetched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vcek {
    /// The product generation (the URL's `{product}`).
    pub product: SnpProduct,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// A product's ARK, ASK and CRL, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmdCollateral {
    /// ARK, DER.
    pub ark: Vec<u8>,
    /// ASK, DER.
    pub ask: Vec<u8>,
    /// CRL, DER.
    pub crl: Vec<u8>,
    /// The CRL's `nextUpdate`.
    pub next_update: UnixTime,
}

impl AmdCollateral {
    /// The bundle's collateral: `amd_chain` = ARK, ASK (the verifier's order) and `amd_crl`.
    pub fn to_proto(&self) -> proto::Collateral {
        proto::Collateral {
            amd_chain: vec![self.ark.clone(), self.ask.clone()],
            amd_crl: self.crl.clone(),
            ..proto::Collateral::default()
        }
    }
}

/// The KDS name of a product.
pub fn product_name(p: SnpProduct) -> &'static str {
    match p {
        SnpProduct::Milan => "Milan",
        SnpProduct::Genoa => "Genoa",
        SnpProduct::Turin => "Turin",
    }
}

/// The products a report can be from: the one its CPUID names (report version 3 and later), else every
/// generation, oldest first.
fn candidates(report: &SnpReport<'_>) -> Vec<SnpProduct> {
    let [family, model, _] = report.cpuid_fam_mod_step;
    match (family, model) {
        (0x19, 0x00..=0x0f) => vec![SnpProduct::Milan],
        (0x19, 0x10..=0x1f | 0xa0..=0xaf) => vec![SnpProduct::Genoa],
        (0x1a, _) => vec![SnpProduct::Turin],
        _ => SnpProduct::ALL.to_vec(),
    }
}

fn rejected(item: &'static str) -> impl Fn(SnpError) -> FetchError {
    move |source| FetchError::AmdRejected { item, source }
}

fn parse_report(report: &[u8]) -> Result<SnpReport<'_>, FetchError> {
    let parsed = SnpReport::parse(report).map_err(|e| FetchError::AmdRejected {
        item: "SNP report",
        source: SnpError::Malformed(e),
    })?;
    if parsed.signing_key() != Some(SigningKey::Vcek) {
        // A VLEK is provisioned by the cloud provider; the KDS serves VCEKs only.
        return Err(FetchError::AmdRejected {
            item: "SNP report",
            source: SnpError::SigningKeyMismatch,
        });
    }
    Ok(parsed)
}

/// The cache file of the VCEK for a report's chip and reported TCB.
fn vcek_file(cache_dir: &Path, report: &SnpReport<'_>) -> PathBuf {
    cache_dir.join("amd").join("vcek").join(format!(
        "{}-{:016x}.der",
        hex::encode(report.chip_id),
        report.reported_tcb
    ))
}

/// The cached VCEK for `report` (its chip and reported TCB), if [`KdsClient::vcek`] stored one; read by the
/// configfs-tsm backend when the host gives no certificate table.
pub fn cached_vcek(cache_dir: &Path, report: &[u8]) -> Option<Vec<u8>> {
    let parsed = SnpReport::parse(report).ok()?;
    std::fs::read(vcek_file(cache_dir, &parsed)).ok()
}

/// Checks `vek` under AMD's pinned ASK/ARK of `product` at `now`, and its binding to `report`.
fn check_vcek(
    report: &SnpReport<'_>,
    vek: &[u8],
    product: SnpProduct,
    now: UnixTime,
) -> Result<(), FetchError> {
    let certs = SnpCerts {
        ark: amd_ark_pem(product),
        ask: dait_verifier::snp::amd_ask_pem(product),
        vek,
    };
    verify_chain(&certs, now).map_err(rejected("VCEK"))?;
    check_vek_binding(report, vek, product, &SnpPolicy::default()).map_err(rejected("VCEK"))?;
    Ok(())
}

impl KdsClient {
    /// A client for `url` (`http(s)://host[:port][/prefix]`) caching under `cache_dir`; an `https` KDS is
    /// trusted through the roots in `ca_file` (PEM). Each item must arrive within 30 s; the ASK/ARK and CRL
    /// are fetched again one day before the CRL's `nextUpdate`.
    pub fn new(url: &str, ca_file: &Path, cache_dir: &Path) -> Result<Self, FetchError> {
        Ok(Self {
            service: Service::new(url, ca_file)?,
            cache_dir: cache_dir.to_owned(),
            refresh_before: Duration::from_secs(24 * 3600),
        })
    }

    /// Bounds the time each item may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.service.timeout = timeout;
        self
    }

    /// How long before the CRL's `nextUpdate` the cached chain and CRL are fetched again.
    pub fn with_refresh_before(mut self, margin: Duration) -> Self {
        self.refresh_before = margin;
        self
    }

    /// The refresh margin.
    pub fn refresh_before(&self) -> Duration {
        self.refresh_before
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// How many HTTP requests this client (and its clones) has sent.
    pub fn requests(&self) -> u64 {
        self.service.requests()
    }

    /// The VCEK that signed `report` (an SNP attestation report): from the cache when it holds one that
    /// still verifies at `now`, else from the KDS (product from the report's CPUID, else each generation
    /// in turn until one answers), verified, then cached.
    pub async fn vcek(&self, report: &[u8], now: UnixTime) -> Result<Vcek, FetchError> {
        let parsed = parse_report(report)?;
        let file = vcek_file(&self.cache_dir, &parsed);
        let products = candidates(&parsed);
        if let Ok(der) = std::fs::read(&file)
            && let Some(product) = products
                .iter()
                .copied()
                .find(|p| check_vcek(&parsed, &der, *p, now).is_ok())
        {
            return Ok(Vcek { product, der });
        }
        let mut last = None;
        for product in products {
            let path = format!(
                "/vcek/v1/{}/{}",
                product_name(product),
                vcek_query(&parsed, product)
            );
            let reply = match self.service.get("AMD VCEK", &path, VCEK_TYPES[0]).await {
                // Not this generation's chip (the KDS answers an unknown hwid with a client error).
                Err(
                    e @ FetchError::Status {
                        status: 400 | 404, ..
                    },
                ) => {
                    last = Some(e);
                    continue;
                }
                other => other?,
            };
            reply.expect_type("AMD VCEK", VCEK_TYPES)?;
            let der = reply.body.to_vec();
            check_vcek(&parsed, &der, product, now)?;
            store_file(&file, &der)?;
            return Ok(Vcek { product, der });
        }
        Err(last.unwrap_or(FetchError::Status {
            item: "AMD VCEK",
            status: 404,
        }))
    }

    /// The ASK, ARK and CRL of `vcek`'s product, valid at `now`: from the cache while the CRL's
    /// `nextUpdate` is more than the refresh margin away, else fetched, verified and cached. The served
    /// ARK must be the pinned one, the ASK must sign `vcek`, the CRL must be signed by the ARK, current,
    /// and list neither.
    pub async fn collateral(
        &self,
        vcek: &Vcek,
        now: UnixTime,
    ) -> Result<AmdCollateral, FetchError> {
        let dir = self
            .cache_dir
            .join("amd")
            .join(product_name(vcek.product).to_ascii_lowercase());
        let refresh_at =
            UnixTime::from_secs(now.as_secs().saturating_add(self.refresh_before.as_secs()));
        if let (Ok(pem), Ok(crl)) = (
            std::fs::read(dir.join("cert_chain.pem")),
            std::fs::read(dir.join("crl.der")),
        ) && let Ok(c) = check_collateral(vcek, &pem, crl, now)
            && c.next_update > refresh_at
        {
            return Ok(c);
        }
        let name = product_name(vcek.product);
        let chain = self
            .service
            .get(
                "AMD ASK/ARK",
                &format!("/vcek/v1/{name}/cert_chain"),
                CHAIN_TYPES[0],
            )
            .await?;
        chain.expect_type("AMD ASK/ARK", CHAIN_TYPES)?;
        check_chain(vcek, &chain.body, now)?;
        let crl = self
            .service
            .get("AMD CRL", &format!("/vcek/v1/{name}/crl"), CRL_TYPES[0])
            .await?;
        crl.expect_type("AMD CRL", CRL_TYPES)?;
        let c = check_collateral(vcek, &chain.body, crl.body.to_vec(), now)?;
        store_file(&dir.join("cert_chain.pem"), &chain.body)?;
        store_file(&dir.join("crl.der"), &c.crl)?;
        Ok(c)
    }
}

/// The VCEK path's `{hwid}?{SPLs}` for `report` on `product`.
fn vcek_query(report: &SnpReport<'_>, product: SnpProduct) -> String {
    let tcb = TcbVersion::decode(report.reported_tcb, product);
    let spl = format!(
        "blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
        tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
    );
    match (product, tcb.fmc) {
        (SnpProduct::Turin, fmc) => format!(
            "{}?fmcSPL={}&{spl}",
            hex::encode(report.chip_id.get(..8).unwrap_or_default()),
            fmc.unwrap_or(0)
        ),
        _ => format!("{}?{spl}", hex::encode(report.chip_id)),
    }
}

/// The served `cert_chain` (PEM: ASK, then ARK) as DER, checked: pinned ARK of `vcek`'s product, ARK → ASK
/// → VCEK signatures and validity at `now`.
fn check_chain(vcek: &Vcek, pem: &[u8], now: UnixTime) -> Result<(Vec<u8>, Vec<u8>), FetchError> {
    let bad = || FetchError::AmdRejected {
        item: "AMD ASK/ARK",
        source: SnpError::CertParse(SnpCert::Ask),
    };
    let blocks = split_pem_certs(pem);
    let [ask, ark] = blocks.as_slice() else {
        return Err(bad());
    };
    let product = verify_chain(
        &SnpCerts {
            ark,
            ask,
            vek: &vcek.der,
        },
        now,
    )
    .map_err(rejected("AMD ASK/ARK"))?;
    if product != vcek.product {
        return Err(FetchError::AmdRejected {
            item: "AMD ASK/ARK",
            source: SnpError::UntrustedRoot,
        });
    }
    let der = |b: &[u8]| {
        dait_verifier::x509::pem_to_der(b)
            .ok()
            .and_then(|v| v.into_iter().next())
            .ok_or_else(bad)
    };
    Ok((der(ask)?, der(ark)?))
}

fn check_collateral(
    vcek: &Vcek,
    chain_pem: &[u8],
    crl_der: Vec<u8>,
    now: UnixTime,
) -> Result<AmdCollateral, FetchError> {
    let (ask, ark) = check_chain(vcek, chain_pem, now)?;
    let verified = crl::verify_crl(&crl_der, &ark, now).map_err(rejected("AMD CRL"))?;
    crl::check_not_revoked(&verified, &ask, SnpCert::Ask).map_err(rejected("AMD CRL"))?;
    crl::check_not_revoked(&verified, &vcek.der, SnpCert::Vek).map_err(rejected("AMD CRL"))?;
    Ok(AmdCollateral {
        ark,
        ask,
        crl: crl_der,
        next_update: verified.next_update(),
    })
}

/// Reads the report of the SNP guest's configfs-tsm interface and puts its VCEK into the cache (from the
/// KDS unless cached), so the backend finds it when the host gives no certificate table. A failure is
/// logged: a host that gives the table needs no VCEK from here.
pub async fn prefetch_vcek(client: &KdsClient) {
    let report = tokio::task::spawn_blocking(|| {
        crate::tee::TsmBackend::open(Path::new(crate::tee::TSM_REPORT_DIR), Platform::Snp)?
            .report(&[0; 64])
    })
    .await;
    match report {
        Ok(Ok(report)) => {
            if let Err(e) = client.vcek(&report, UnixTime::now()).await {
                tracing::warn!(error = %e, "no VCEK from the AMD KDS");
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "no SNP report to fetch the VCEK for"),
        Err(e) => tracing::warn!(error = %e, "no SNP report to fetch the VCEK for"),
    }
}

/// Fetches (or takes from the cache) the ASK, ARK and CRL for the VCEK of the TEE's own report and puts
/// them in `app.collateral`. Returns the CRL's `nextUpdate`; `None` when the TEE is not SNP or its report
/// is signed by a VLEK.
pub async fn refresh_once(
    app: &Arc<App>,
    client: &KdsClient,
    now: UnixTime,
) -> Result<Option<UnixTime>, FetchError> {
    if app.tee.platform() != Platform::Snp {
        return Ok(None);
    }
    let tee_app = Arc::clone(app);
    let evidence = tokio::task::spawn_blocking(move || tee_app.tee.evidence(&[0; 64]))
        .await
        .map_err(|e| super::service::transport("SNP report", &e))?
        .map_err(FetchError::Evidence)?;
    let Some(Evidence::Snp(snp)) = evidence.evidence else {
        return Ok(None);
    };
    let Ok(report) = parse_report(&snp.report) else {
        return Ok(None);
    };
    // The VCEK the evidence carries (the host's table or this cache); the KDS only when it carries none.
    let vcek = match snp.cert_chain.first() {
        Some(der) => {
            let product = candidates(&report)
                .into_iter()
                .find(|p| check_vcek(&report, der, *p, now).is_ok())
                .ok_or(FetchError::AmdRejected {
                    item: "VCEK",
                    source: SnpError::UntrustedRoot,
                })?;
            Vcek {
                product,
                der: der.clone(),
            }
        }
        None => client.vcek(&snp.report, now).await?,
    };
    let c = client.collateral(&vcek, now).await?;
    app.collateral.set(Some(c.to_proto()));
    Ok(Some(c.next_update))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn vcek_path_follows_the_kds_layout() {
        let report = dait_verifier::snp::decode_report_file(&dait_testdata::read(
            "snp/virtee__milan_report.hex",
        ));
        let parsed = SnpReport::parse(&report).unwrap();
        let q = vcek_query(&parsed, SnpProduct::Milan);
        let (hwid, spl) = q.split_once('?').unwrap();
        assert_eq!(hwid, hex::encode(parsed.chip_id));
        assert_eq!(hwid.len(), 128);
        assert!(
            spl.starts_with("blSPL=") && spl.contains("&ucodeSPL="),
            "{spl}"
        );
        let turin = vcek_query(&parsed, SnpProduct::Turin);
        assert!(turin.split_once('?').unwrap().0.len() == 16 && turin.contains("?fmcSPL="));
    }
}
