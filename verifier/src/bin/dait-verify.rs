//! `dait-verify`: verifies attestation evidence offline.
//!
//! ```text
//! dait-verify evidence --tdx-quote quote.bin --collateral collateral.json --at 2025-07-19T10:00:34Z
//! dait-verify evidence --tdx-quote quote.bin --collateral pcs-dir/ --at 1739419232 --json
//! dait-verify evidence --snp-report report.bin --vcek vcek.der [--ask ask.pem --ark ark.pem] --at <time>
//! dait-verify evidence --gpu-report spdm.hex --gpu-chain chain.pem --driver-rim d.swidtag --vbios-rim v.swidtag \
//!     --gpu-ocsp leaf.ocsp.der --gpu-nonce <64 hex> --at <time>
//! dait-verify evidence --tpm-quote quote.bin --ak-pub ak.pem --tpm-qualifying-data <hex> [--hcl-report hcl.bin]
//! dait-verify evidence --bundle bundle.pb --nonce <64 hex> [--policy reference.json] [--collateral c.json] --at <time>
//! ```
//!
//! `--bundle` verifies a whole `EvidenceBundle` (PROTOCOL.md §7): CPU evidence, keyset binding to the
//! nonce, every GPU and the vTPM quote; the per-file options then tune that bundle's policy.
//!
//! Exit status: 0 every given piece of evidence verified; 1 one was rejected; 2 usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use dait_measure::ReferenceMeasurements;
use dait_verifier::UnixTime;
use dait_verifier::bundle::Policy;
use dait_verifier::collateral::TdxCollateral;
use dait_verifier::snp::{self, SnpPolicy};
use dait_verifier::tdx::{self, TcbStatus, TdxPolicy};
use dait_verifier::wire::decode_hex_or_raw;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "dait-verify",
    version,
    about = "Verifies dait attestation evidence offline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify evidence files (one or more platforms) against collateral at a given time.
    Evidence(EvidenceArgs),
}

/// Arguments of `evidence`. Each platform is a flattened group; add a group per new evidence kind.
#[derive(Args, Debug)]
struct EvidenceArgs {
    #[command(flatten)]
    bundle: BundleArgs,
    #[command(flatten)]
    tdx: TdxArgs,
    #[command(flatten)]
    snp: SnpArgs,
    #[command(flatten)]
    gpu: GpuArgs,
    #[command(flatten)]
    tpm: TpmArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
struct BundleArgs {
    /// A whole evidence bundle (protobuf `EvidenceBundle`, raw bytes).
    #[arg(long, value_name = "FILE", requires = "nonce")]
    bundle: Option<PathBuf>,
    /// The freshness nonce the bundle must be bound to (64 hex digits): a tenant nonce, or with --epoch a
    /// chain epoch nonce.
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// The chain epoch of a chain epoch nonce.
    #[arg(long, value_name = "N")]
    epoch: Option<u64>,
    /// Accept simulated evidence certified by this platform root (P-256 SEC1, hex). Development only.
    #[arg(long, value_name = "HEX")]
    dangerous_simulated_root: Option<String>,
    /// Require at least this many GPUs in the bundle.
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_gpus: usize,
}

#[derive(Args, Debug)]
struct TdxArgs {
    /// TDX quote (v4/v5), raw or hex.
    #[arg(long, value_name = "FILE", requires = "collateral")]
    tdx_quote: Option<PathBuf>,
    /// Collateral: a JSON bundle (QuoteCollateralV3 layout) or a directory of PCS files (TCB Info JSON
    /// `*tcb*info*.json`, QE Identity JSON `*qe*identity*.json`, PCK CRL `*pck*crl*.der`, root CRL
    /// `*root*crl*.der`, issuer chains `*.pem`).
    #[arg(long, value_name = "FILE|DIR")]
    collateral: Option<PathBuf>,
    /// Accept this TCB status besides UpToDate (repeatable; case is ignored), e.g. SWHardeningNeeded.
    #[arg(
        long = "accept-tcb",
        value_name = "STATUS",
        value_parser = tcb_status_parser(),
        ignore_case = true
    )]
    accept_tcb: Vec<TcbStatus>,
    /// Tolerate this advisory ID (repeatable), e.g. INTEL-SA-00837.
    #[arg(long = "allow-advisory", value_name = "ID")]
    allow_advisory: Vec<String>,
}

#[derive(Args, Debug)]
struct SnpArgs {
    /// SNP attestation report (1184 bytes), raw or hex.
    #[arg(long, value_name = "FILE", requires = "vcek")]
    snp_report: Option<PathBuf>,
    /// VCEK or VLEK certificate (PEM or DER).
    #[arg(long, value_name = "FILE", alias = "vlek")]
    vcek: Option<PathBuf>,
    /// ASK (or ASVK) certificate, PEM or DER; default: AMD's, for each generation in turn.
    #[arg(long, value_name = "FILE")]
    ask: Option<PathBuf>,
    /// ARK certificate, PEM or DER (must be a pinned AMD root); default: AMD's, for each generation.
    #[arg(long, value_name = "FILE")]
    ark: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CommonArgs {
    /// Verification time: RFC 3339 UTC (2025-07-19T10:00:34Z) or Unix seconds; default: the system clock.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Reference measurements JSON (`measurements/reference/<release>.json`): pins MRTD/RTMRs/MRCONFIGID...
    /// and the SNP launch measurement, host data and guest policy.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Expected REPORTDATA / REPORT_DATA (128 hex digits).
    #[arg(long, value_name = "HEX")]
    report_data: Option<String>,
    /// Accept a debuggable TD / guest (never in production).
    #[arg(long)]
    dangerous_allow_debug: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// The outcome for one piece of evidence.
#[derive(Serialize, Debug)]
struct Item {
    kind: &'static str,
    file: String,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl Item {
    /// Not (yet) verified, with no claims.
    fn new(kind: &'static str, file: &Path) -> Self {
        Self {
            kind,
            file: file.display().to_string(),
            verified: false,
            error: None,
            claims: serde_json::Map::new(),
        }
    }
}

#[derive(Serialize, Debug)]
struct Outcome {
    verified: bool,
    at: u64,
    evidence: Vec<Item>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("dait-verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    let Command::Evidence(args) = cli.command;
    let now = match &args.common.at {
        Some(t) => parse_time(t)?,
        None => UnixTime::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("system clock")?
                .as_secs(),
        ),
    };
    let reference = match &args.common.policy {
        Some(p) => {
            let r = ReferenceMeasurements::load(p)
                .with_context(|| format!("{} is not a reference measurements file", p.display()))?;
            Some(Policy::from_reference(&r).with_context(|| format!("{}", p.display()))?)
        }
        None => None,
    };
    let report_data = match &args.common.report_data {
        Some(h) => Some(
            <[u8; 64]>::try_from(hex::decode(h.trim()).context("--report-data is not hex")?)
                .map_err(|_| anyhow::anyhow!("--report-data must be 64 bytes"))?,
        ),
        None => None,
    };
    let mut items = Vec::new();
    if let Some(b) = &args.bundle.bundle {
        let mut policy = reference.clone().unwrap_or_default();
        policy.tdx = tdx_policy(&args.tdx, reference.as_ref());
        policy.tdx.dangerous_allow_debug = args.common.dangerous_allow_debug;
        policy.snp.dangerous_allow_debug = args.common.dangerous_allow_debug;
        policy.gpu.require_ocsp = !args.gpu.dangerous_skip_gpu_ocsp;
        policy.gpu.require_rim_match = !args.gpu.dangerous_skip_gpu_rims;
        policy.min_gpus = args.bundle.min_gpus;
        if let Some(root) = &args.bundle.dangerous_simulated_root {
            let root = hex::decode(root.trim()).context("--dangerous-simulated-root is not hex")?;
            policy = policy
                .dangerous_allow_simulated(&root)
                .context("--dangerous-simulated-root")?;
        }
        items.push(verify_bundle_file(b, &args, &policy, now)?);
    }
    if let Some(q) = &args.tdx.tdx_quote {
        let mut policy = tdx_policy(&args.tdx, reference.as_ref());
        policy.report_data = report_data;
        policy.dangerous_allow_debug = args.common.dangerous_allow_debug;
        items.push(verify_tdx(q, args.tdx.collateral.as_deref(), &policy, now)?);
    }
    if let Some(r) = &args.snp.snp_report {
        let mut policy = snp_policy(reference.as_ref());
        policy.report_data = report_data;
        policy.dangerous_allow_debug = args.common.dangerous_allow_debug;
        items.push(verify_snp(r, &args.snp, &policy, now)?);
    }
    if let Some(r) = &args.gpu.gpu_report {
        items.push(verify_gpu_file(r, &args.gpu, report_data.as_ref(), now)?);
    }
    if let Some(q) = &args.tpm.tpm_quote {
        items.push(verify_tpm_file(q, &args.tpm, report_data.as_ref())?);
    }
    if items.is_empty() {
        bail!(
            "nothing to verify: give --bundle, --tdx-quote, --snp-report, --gpu-report or --tpm-quote"
        );
    }
    let outcome = Outcome {
        verified: items.iter().all(|i| i.verified),
        at: now.as_secs(),
        evidence: items,
    };
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_human(&outcome);
    }
    Ok(outcome.verified)
}

fn parse_time(t: &str) -> anyhow::Result<UnixTime> {
    if t.bytes().all(|c| c.is_ascii_digit()) {
        return Ok(UnixTime::from_secs(t.parse().context("--at")?));
    }
    UnixTime::parse_rfc3339(t)
        .with_context(|| format!("--at {t:?} is neither RFC 3339 UTC nor Unix seconds"))
}

fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

fn print_human(o: &Outcome) {
    for i in &o.evidence {
        let verdict = if i.verified { "VERIFIED" } else { "REJECTED" };
        println!("{} {}: {verdict}", i.kind, i.file);
        if let Some(e) = &i.error {
            println!("  reason: {e}");
        }
        for (k, v) in &i.claims {
            match v {
                serde_json::Value::String(s) => println!("  {k}: {s}"),
                other => println!("  {k}: {other}"),
            }
        }
    }
    println!(
        "{}",
        if o.verified {
            "result: verified"
        } else {
            "result: rejected"
        }
    );
}

// ---- TDX ----------------------------------------------------------------------------------------

/// `--accept-tcb` takes the name of any status but Revoked, which no policy accepts.
fn tcb_status_parser() -> impl clap::builder::TypedValueParser<Value = TcbStatus> {
    use clap::builder::{PossibleValuesParser, TypedValueParser as _};
    let names = TcbStatus::ALL
        .into_iter()
        .filter(|s| *s != TcbStatus::Revoked)
        .map(TcbStatus::as_str);
    PossibleValuesParser::new(names).try_map(|name| name.parse::<TcbStatus>())
}

fn tdx_policy(args: &TdxArgs, reference: Option<&Policy>) -> TdxPolicy {
    let mut p = reference.map(|r| r.tdx.clone()).unwrap_or_default();
    p.accepted_tcb_statuses.extend(&args.accept_tcb);
    p.allowed_advisories.clone_from(&args.allow_advisory);
    p
}

fn verify_tdx(
    quote: &Path,
    collateral: Option<&Path>,
    policy: &TdxPolicy,
    now: UnixTime,
) -> anyhow::Result<Item> {
    let raw = tdx::decode_quote_file(&read(quote)?);
    let collateral_path = collateral.context("--tdx-quote needs --collateral")?;
    let collateral = TdxCollateral::load(collateral_path)?;
    let mut item = Item::new("tdx", quote);
    match tdx::verify_quote(&raw, &collateral, policy, now) {
        Ok(v) => {
            item.verified = true;
            let c = &mut item.claims;
            c.insert("tcb_status".into(), v.tcb_status().as_str().into());
            c.insert("advisory_ids".into(), v.advisory_ids().to_vec().into());
            c.insert("quote_version".into(), v.version().into());
            c.insert("mr_td".into(), hex::encode(v.mr_td()).into());
            for (i, r) in v.rtmr().iter().enumerate() {
                c.insert(format!("rtmr{i}"), hex::encode(r).into());
            }
            c.insert("mr_config_id".into(), hex::encode(v.mr_config_id()).into());
            c.insert("mr_owner".into(), hex::encode(v.mr_owner()).into());
            c.insert("mr_seam".into(), hex::encode(v.mr_seam()).into());
            c.insert(
                "td_attributes".into(),
                format!("{:016x}", v.td_attributes()).into(),
            );
            c.insert("xfam".into(), format!("{:016x}", v.xfam()).into());
            c.insert("report_data".into(), hex::encode(v.report_data()).into());
        }
        Err(e) => item.error = Some(reason(e)),
    }
    Ok(item)
}

// ---- SNP ----------------------------------------------------------------------------------------

fn snp_policy(reference: Option<&Policy>) -> SnpPolicy {
    reference.map(|r| r.snp.clone()).unwrap_or_default()
}

fn verify_snp(
    report: &Path,
    args: &SnpArgs,
    policy: &SnpPolicy,
    now: UnixTime,
) -> anyhow::Result<Item> {
    let raw = snp::decode_report_file(&read(report)?);
    let vek = read(args.vcek.as_deref().context("--snp-report needs --vcek")?)?;
    let ark_file = args.ark.as_deref().map(read).transpose()?;
    let ask_file = args.ask.as_deref().map(read).transpose()?;
    let mut item = Item::new("snp", report);
    let result = snp::verify_report_with_amd_certs(
        &raw,
        &vek,
        ask_file.as_deref(),
        ark_file.as_deref(),
        policy,
        now,
    );
    match result {
        Ok(v) => {
            item.verified = true;
            let c = &mut item.claims;
            c.insert("product".into(), format!("{:?}", v.product()).into());
            c.insert("report_version".into(), v.version().into());
            c.insert(
                "signing_key".into(),
                format!("{:?}", v.signing_key()).into(),
            );
            c.insert("measurement".into(), hex::encode(v.measurement()).into());
            c.insert("host_data".into(), hex::encode(v.host_data()).into());
            c.insert("report_data".into(), hex::encode(v.report_data()).into());
            c.insert("chip_id".into(), hex::encode(v.chip_id()).into());
            c.insert(
                "reported_tcb".into(),
                serde_json::to_value(v.reported_tcb())?,
            );
            c.insert(
                "guest_policy".into(),
                format!("{:#x}", v.guest_policy()).into(),
            );
            c.insert("vmpl".into(), v.vmpl().into());
        }
        Err(e) => item.error = Some(reason(e)),
    }
    Ok(item)
}

// ---- NVIDIA GPU and vTPM ------------------------------------------------------------------------

#[derive(Args, Debug)]
struct GpuArgs {
    /// NVIDIA SPDM evidence: GET_MEASUREMENTS request followed by the MEASUREMENTS response, raw or hex.
    #[arg(long, value_name = "FILE", requires = "gpu_chain")]
    gpu_report: Option<PathBuf>,
    /// The GPU's device certificate chain (PEM, leaf first, ending at NVIDIA's Device Identity CA).
    #[arg(long, value_name = "FILE")]
    gpu_chain: Option<PathBuf>,
    /// Driver RIM (SWID XML).
    #[arg(long, value_name = "FILE")]
    driver_rim: Option<PathBuf>,
    /// VBIOS RIM (SWID XML).
    #[arg(long, value_name = "FILE")]
    vbios_rim: Option<PathBuf>,
    /// DER OCSP response for a certificate of the GPU chain (repeatable).
    #[arg(long, value_name = "FILE")]
    gpu_ocsp: Vec<PathBuf>,
    /// Expected SPDM nonce (64 hex digits); default: derived from --report-data for GPU 0.
    #[arg(long, value_name = "HEX")]
    gpu_nonce: Option<String>,
    /// Do not require OCSP responses for the GPU chain.
    #[arg(long)]
    dangerous_skip_gpu_ocsp: bool,
    /// Do not require RIMs nor compare measurements with them.
    #[arg(long)]
    dangerous_skip_gpu_rims: bool,
}

#[derive(Args, Debug)]
struct TpmArgs {
    /// vTPM quote in the Azure vTPM tooling container (signature, TPMS_ATTEST, PCR values).
    #[arg(long, value_name = "FILE", requires = "ak_pub")]
    tpm_quote: Option<PathBuf>,
    /// The attestation key: PEM SubjectPublicKeyInfo, or a raw TPM2B_PUBLIC.
    #[arg(long, value_name = "FILE")]
    ak_pub: Option<PathBuf>,
    /// Expected qualifying data (hex); default: derived from --report-data.
    #[arg(long, value_name = "HEX")]
    tpm_qualifying_data: Option<String>,
    /// Azure HCL report: also check that it binds the attestation key (its hardware report is not verified here).
    #[arg(long, value_name = "FILE")]
    hcl_report: Option<PathBuf>,
}

/// `{"index": "hex", ...}` for indexed digests (GPU measurements, PCRs).
fn hex_by_index<D: AsRef<[u8]>>(entries: &[(u8, D)]) -> serde_json::Value {
    entries
        .iter()
        .map(|(i, d)| (i.to_string(), hex::encode(d).into()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn verify_gpu_file(
    report: &Path,
    args: &GpuArgs,
    report_data: Option<&[u8; 64]>,
    now: UnixTime,
) -> anyhow::Result<Item> {
    use dait_verifier::nvidia::{self, GpuEvidenceInput, GpuPolicy, NvidiaRoots};
    let spdm = decode_hex_or_raw(&read(report)?);
    let chain = read(
        args.gpu_chain
            .as_deref()
            .context("--gpu-report needs --gpu-chain")?,
    )?;
    let driver = args.driver_rim.as_deref().map(read).transpose()?;
    let vbios = args.vbios_rim.as_deref().map(read).transpose()?;
    let ocsp: Vec<Vec<u8>> = args
        .gpu_ocsp
        .iter()
        .map(|p| read(p))
        .collect::<Result<_, _>>()?;
    let ocsp_refs: Vec<&[u8]> = ocsp.iter().map(Vec::as_slice).collect();
    let nonce: [u8; 32] = match (&args.gpu_nonce, report_data) {
        (Some(h), _) => {
            <[u8; 32]>::try_from(hex::decode(h.trim()).context("--gpu-nonce is not hex")?)
                .map_err(|_| anyhow::anyhow!("--gpu-nonce must be 32 bytes"))?
        }
        (None, Some(rd)) => nvidia::gpu_nonce(rd, 0),
        (None, None) => bail!("--gpu-report needs --gpu-nonce or --report-data"),
    };
    let policy = GpuPolicy {
        require_ocsp: !args.dangerous_skip_gpu_ocsp,
        require_rim_match: !args.dangerous_skip_gpu_rims,
        ..GpuPolicy::default()
    };
    let input = GpuEvidenceInput {
        spdm: &spdm,
        cert_chain_pem: &chain,
        driver_rim: driver.as_deref(),
        vbios_rim: vbios.as_deref(),
        ocsp_responses: &ocsp_refs,
    };
    let mut item = Item::new("nvidia-gpu", report);
    match nvidia::verify_gpu(&input, &nonce, &policy, &NvidiaRoots::pinned(), now) {
        Ok(v) => {
            item.verified = true;
            let c = &mut item.claims;
            c.insert("nonce".into(), hex::encode(v.nonce()).into());
            c.insert("driver_version".into(), v.driver_version().into());
            c.insert("vbios_version".into(), v.vbios_version().into());
            c.insert("fwid".into(), v.fwid().map(hex::encode).into());
            c.insert("ocsp_good".into(), v.ocsp_checked().into());
            c.insert("padding".into(), v.padding().into());
            if let Some(cmp) = v.comparison() {
                let matched = cmp.indices(nvidia::IndexOutcome::Match);
                c.insert("rim_matched_indices".into(), matched.into());
            }
            c.insert("measurements".into(), hex_by_index(v.measurements()));
        }
        Err(e) => item.error = Some(reason(e)),
    }
    Ok(item)
}

fn verify_tpm_file(
    quote: &Path,
    args: &TpmArgs,
    report_data: Option<&[u8; 64]>,
) -> anyhow::Result<Item> {
    use dait_verifier::tpm::{self, AkPublic};
    let bytes = read(quote)?;
    let ak_bytes = read(
        args.ak_pub
            .as_deref()
            .context("--tpm-quote needs --ak-pub")?,
    )?;
    let ak = AkPublic::from_pem_or_tpm2b(&ak_bytes).context("--ak-pub")?;
    let expected: Vec<u8> = match (&args.tpm_qualifying_data, report_data) {
        (Some(h), _) => hex::decode(h.trim()).context("--tpm-qualifying-data is not hex")?,
        (None, Some(rd)) => tpm::qualifying_data(rd).to_vec(),
        (None, None) => bail!("--tpm-quote needs --tpm-qualifying-data or --report-data"),
    };
    let hcl = args.hcl_report.as_deref().map(read).transpose()?;
    let mut item = Item::new("vtpm", quote);
    let result = tpm::parse_azure_quote(&bytes)
        .map_err(tpm::TpmError::Parse)
        .and_then(|q| tpm::verify_quote(&q.input(), &ak, &expected))
        .and_then(|v| match &hcl {
            Some(h) => {
                tpm::verify_hcl_ak_binding(h, &ak).map(|b| (v, Some(format!("{:?}", b.kind))))
            }
            None => Ok((v, None)),
        });
    match result {
        Ok((v, hcl_kind)) => {
            item.verified = true;
            let c = &mut item.claims;
            c.insert("qualifying_data".into(), hex::encode(v.extra_data()).into());
            c.insert("pcrs".into(), hex_by_index(v.pcrs()));
            if let Some(k) = hcl_kind {
                c.insert("hcl_ak_binding".into(), k.into());
            }
        }
        Err(e) => item.error = Some(reason(e)),
    }
    Ok(item)
}

// ---- whole bundle -------------------------------------------------------------------------------

fn verify_bundle_file(
    path: &Path,
    args: &EvidenceArgs,
    policy: &Policy,
    now: UnixTime,
) -> anyhow::Result<Item> {
    use dait_chain_client::Freshness;
    let bytes = read(path)?;
    let nonce_hex = args
        .bundle
        .nonce
        .as_deref()
        .context("--bundle needs --nonce")?;
    let nonce = <[u8; 32]>::try_from(hex::decode(nonce_hex.trim()).context("--nonce is not hex")?)
        .map_err(|_| anyhow::anyhow!("--nonce must be 32 bytes"))?;
    let freshness = match args.bundle.epoch {
        Some(epoch) => Freshness::ChainEpoch { epoch, nonce },
        None => Freshness::TenantNonce(nonce),
    };
    let collateral = match &args.tdx.collateral {
        Some(p) => Some(TdxCollateral::load(p)?.to_proto()),
        None => None,
    };
    let mut item = Item::new("bundle", path);
    match dait_verifier::bundle::verify_bundle_with_collateral(
        &bytes,
        policy,
        collateral.as_ref(),
        &freshness,
        now,
    ) {
        Ok(v) => {
            item.verified = true;
            let c = &mut item.claims;
            c.insert("platform".into(), format!("{:?}", v.platform()).into());
            c.insert(
                "keyset_hash".into(),
                hex::encode(v.keyset_hash().as_bytes()).into(),
            );
            c.insert(
                "host_key_id".into(),
                hex::encode(v.host_key_id().as_bytes()).into(),
            );
            c.insert(
                "host_account".into(),
                hex::encode(v.keyset().host_account.as_bytes()).into(),
            );
            c.insert("report_data".into(), hex::encode(v.report_data()).into());
            if let Some(q) = v.tdx() {
                c.insert("tcb_status".into(), q.tcb_status().to_string().into());
                c.insert("mr_td".into(), hex::encode(q.mr_td()).into());
            }
            if let Some(r) = v.snp() {
                c.insert("measurement".into(), hex::encode(r.measurement()).into());
            }
            c.insert("gpus".into(), v.gpus().len().into());
            c.insert("vtpm".into(), v.tpm().is_some().into());
        }
        Err(e) => item.error = Some(reason(e)),
    }
    Ok(item)
}

/// Why a piece of evidence was rejected: the error and each of its causes, once.
fn reason(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}
