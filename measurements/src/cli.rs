//! The `dait-measure` command line (feature `cli`).
//!
//! Exit codes: 0 = success (and, for `diff` and `replay --quote`, every value matches), 1 = a value differs,
//! 2 = usage, input or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dait_chain_client::runtime_log;
use sha2::{Digest, Sha256};

use crate::hexbytes::{HexBytes, Sha256Digest, Sha384Digest};
use crate::reference::{
    Artefacts, FileDigest, FirmwareDigest, FirmwareKind, Platform, ReferenceMeasurements,
    RuntimeEvent, RuntimeReference, SCHEMA_VERSION, SnpReference, SnpShapeValues, TdxReference,
    TdxShapeValues, VmShape, Vmm,
};
use crate::reported::{self, ReportedValues};
use crate::snp::{self, CpuType, Ovmf, SevHashes, SnpLaunch};
use crate::tdx::{self, PageAddOrder, Tdvf};
use crate::{eventlog, gpt, tpmlog, uki};

/// Largest artefact read (kernel, initrd, UKI, firmware, event log, quote).
const MAX_INPUT_LEN: u64 = 1 << 30;

/// Expected TDX and SEV-SNP measurements from image artefacts, event-log replay, and reference files.
#[derive(Debug, Parser)]
#[command(name = "dait-measure", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// SEV-SNP launch digest of a QEMU direct boot.
    Snp(SnpArgs),
    /// TDX MRTD, RTMR1 and RTMR2 of a QEMU direct boot.
    Tdx(TdxArgs),
    /// Replay a TCG2 / CCEL event log into RTMR0..RTMR3 (and compare with a quote).
    Replay(ReplayArgs),
    /// Replay a TPM event log per PCR bank, fold it into the RTMR1/RTMR2 TDVF would build from the same boot,
    /// and compare them event by event with the events predicted for a UKI.
    CheckTpmLog(CheckTpmLogArgs),
    /// Write the reference file of a release from its artefacts and VM shapes.
    Reference(Box<ReferenceArgs>),
    /// Compare reported values (JSON, TDX quote or SNP report) with a reference, field by field.
    Diff(DiffArgs),
    /// The launch-time binding of a runtime configuration: the TDX MRCONFIGID and SEV-SNP HOST_DATA a host
    /// launches the guest with when the guest cannot extend RTMR3 (PROTOCOL.md §10.1).
    LaunchBinding(LaunchBindingArgs),
}

#[derive(Debug, Args)]
struct LaunchBindingArgs {
    /// Runtime event as `name=sha256hex`, in the order the agent extends them (repeat; the lines
    /// `dait-host runtime-events` prints).
    #[arg(
        long = "runtime-event",
        value_name = "NAME=SHA256",
        conflicts_with = "reference"
    )]
    runtime_events: Vec<String>,
    /// Take the runtime events from this reference file instead.
    #[arg(long)]
    reference: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BootArgs {
    /// Kernel given to the VMM (`-kernel`): a bzImage or a UKI.
    #[arg(long)]
    kernel: PathBuf,
    /// Initrd given to the VMM (`-initrd`), if any.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line exactly as given to the VMM (`-append`).
    #[arg(long, default_value = "")]
    cmdline: String,
}

impl BootArgs {
    /// Reads the kernel and the initrd, if any.
    fn read(&self) -> anyhow::Result<(Vec<u8>, Option<Vec<u8>>)> {
        let kernel = read(&self.kernel)?;
        Ok((kernel, self.initrd.as_deref().map(read).transpose()?))
    }
}

#[derive(Debug, Args)]
struct SnpArgs {
    /// OVMF built from OvmfPkg/AmdSev/AmdSevX64.dsc (scripts/ovmf.sh).
    #[arg(long)]
    ovmf: PathBuf,
    #[command(flatten)]
    boot: BootArgs,
    /// Number of vCPUs.
    #[arg(long)]
    vcpus: u32,
    /// QEMU CPU model (EPYC, EPYC-v4, EPYC-Milan, EPYC-Genoa, …).
    #[arg(long, default_value = "EPYC-v4")]
    cpu_type: String,
    /// SEV features in the VMSA.
    #[arg(long, default_value_t = snp::DEFAULT_GUEST_FEATURES, value_parser = parse_u64)]
    guest_features: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OrderArg {
    /// Page add then extend, page by page (upstream KVM).
    PerPage,
    /// All page adds of a section, then its extends (older TDX QEMU/KVM).
    PerSection,
}

impl From<OrderArg> for PageAddOrder {
    fn from(value: OrderArg) -> Self {
        match value {
            OrderArg::PerPage => PageAddOrder::PerPage,
            OrderArg::PerSection => PageAddOrder::PerSection,
        }
    }
}

#[derive(Debug, Args)]
struct TdxArgs {
    /// TDVF / OVMF image for TDX.
    #[arg(long)]
    firmware: PathBuf,
    #[command(flatten)]
    boot: BootArgs,
    /// Order of page adds and extends when QEMU builds the TD.
    #[arg(long, value_enum, default_value = "per-page")]
    order: OrderArg,
    /// Print each predicted event.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Event log (CCEL data area, or a TPM binary_bios_measurements file).
    #[arg(long)]
    event_log: PathBuf,
    /// A TDX quote whose RTMRs the replay must equal.
    #[arg(long)]
    quote: Option<PathBuf>,
    /// Print each event.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Args)]
struct CheckTpmLogArgs {
    /// TPM event log (the firmware's `binary_bios_measurements`, TCG PC Client crypto-agile format).
    #[arg(long)]
    event_log: PathBuf,
    /// The UKI the guest booted.
    #[arg(long)]
    uki: PathBuf,
    /// The disk image the guest booted the UKI from (the firmware measures its GPT); omit for a direct boot.
    #[arg(long)]
    disk: Option<PathBuf>,
    /// The disk's logical sector size.
    #[arg(long, default_value_t = 512)]
    sector_size: usize,
    /// Print each folded and predicted event.
    #[arg(long)]
    events: bool,
}

#[derive(Debug, Args)]
struct ReferenceArgs {
    /// Image release (also the output file's name).
    #[arg(long)]
    release: String,
    #[command(flatten)]
    boot: BootArgs,
    /// The UKI, when the image boots one (its PE digest enters RTMR1 instead of the kernel's).
    #[arg(long)]
    uki: Option<PathBuf>,
    /// Firmware as `name=path` (repeat): its kind (TDVF or AmdSev OVMF) is read from its metadata.
    #[arg(long = "firmware", value_name = "NAME=PATH", required = true)]
    firmware: Vec<String>,
    /// VM shape as `name,platform,vcpus,cpu_type,memory_mib,firmware` (repeat).
    #[arg(long = "shape", value_name = "SHAPE", required = true)]
    shapes: Vec<String>,
    /// RTMR0 of a TDX shape as `shape=hex`, from `dait-measure replay` of a boot on that shape (repeat).
    #[arg(long = "rtmr0", value_name = "SHAPE=HEX")]
    rtmr0: Vec<String>,
    /// RTMR1 pinned from a boot log, replacing the direct-boot prediction.
    #[arg(long)]
    rtmr1: Option<Sha384Digest>,
    /// RTMR2 pinned from a boot log, replacing the direct-boot prediction.
    #[arg(long)]
    rtmr2: Option<Sha384Digest>,
    /// Order of page adds and extends for MRTD.
    #[arg(long, value_enum, default_value = "per-page")]
    order: OrderArg,
    /// dm-verity root hash of the root file system.
    #[arg(long)]
    verity_root_hash: Option<Sha256Digest>,
    /// The image's package manifest (its SHA-256 is recorded).
    #[arg(long)]
    package_manifest: Option<PathBuf>,
    /// The agent binary the image ships (its name, size and SHA-256 are recorded).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Allowed SNP HOST_DATA (repeat; default: all zero).
    #[arg(long = "host-data")]
    host_data: Vec<Sha256Digest>,
    /// Required SNP guest policy.
    #[arg(long, default_value = "0x30000", value_parser = parse_u64)]
    guest_policy: u64,
    /// VMPL of an SNP shape's reports as `shape=N` (repeat; default 0): 1 for a guest under an SVSM.
    #[arg(long = "vmpl", value_name = "SHAPE=N")]
    vmpl: Vec<String>,
    /// Required TDX TD attributes (8 bytes hex, as in the TD report).
    #[arg(long, default_value = "0000001000000000")]
    td_attributes: HexBytes<8>,
    /// Runtime event as `name=sha256hex`, in the order the agent extends them (repeat).
    #[arg(long = "runtime-event", value_name = "NAME=SHA256")]
    runtime_events: Vec<String>,
    /// The host binds the runtime events at launch: TDX MRCONFIGID and (unless --host-data is given) SNP
    /// HOST_DATA become their launch-binding values (`launch-binding`), and RTMR3 is expected zero.
    #[arg(long)]
    launch_binding: bool,
    /// Output file (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// The reference file.
    #[arg(long)]
    reference: PathBuf,
    /// The VM shape the evidence comes from.
    #[arg(long)]
    shape: String,
    /// Reported values as JSON (the `ReportedValues` format).
    #[arg(long, group = "input")]
    reported: Option<PathBuf>,
    /// A TDX quote (raw bytes, or hex).
    #[arg(long, group = "input")]
    tdx_quote: Option<PathBuf>,
    /// An SNP attestation report (raw bytes, or hex).
    #[arg(long, group = "input")]
    snp_report: Option<PathBuf>,
}

fn parse_u64(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| e.to_string())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > MAX_INPUT_LEN {
        bail!("{} is larger than {MAX_INPUT_LEN} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Raw bytes, or ASCII hex (optionally `0x`-prefixed, with surrounding whitespace) decoded.
fn read_binary_or_hex(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read(path)?;
    let text = std::str::from_utf8(&bytes).ok().map(str::trim);
    if let Some(text) =
        text.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'x'))
    {
        let digits = text.strip_prefix("0x").unwrap_or(text);
        if let Ok(decoded) = hex::decode(digits) {
            return Ok(decoded);
        }
    }
    Ok(bytes)
}

fn file_digest(path: &Path, bytes: &[u8]) -> FileDigest {
    FileDigest {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        sha256: HexBytes(Sha256::digest(bytes).into()),
    }
}

/// Runs the command line; the binary's `main` calls this.
pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("dait-measure: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Snp(args) => snp_command(&args),
        Command::Tdx(args) => tdx_command(&args),
        Command::Replay(args) => replay_command(&args),
        Command::CheckTpmLog(args) => check_tpm_log_command(&args),
        Command::Reference(args) => reference_command(&args),
        Command::Diff(args) => diff_command(&args),
        Command::LaunchBinding(args) => launch_binding_command(&args),
    }
}

fn snp_digest(
    firmware: &[u8],
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    vcpus: u32,
    cpu_type: &str,
    features: u64,
) -> anyhow::Result<Sha384Digest> {
    let ovmf = Ovmf::parse(firmware).context("parsing the OVMF image")?;
    let cpu =
        CpuType::from_name(cpu_type).ok_or_else(|| anyhow!("unknown SNP cpu type {cpu_type:?}"))?;
    let hashes = SevHashes::new(kernel, initrd, Some(cmdline));
    let launch = SnpLaunch {
        hashes: Some(&hashes),
        vcpus,
        cpu,
        guest_features: features,
    };
    snp::launch_digest(&ovmf, &launch).context("computing the launch digest")
}

fn snp_command(args: &SnpArgs) -> anyhow::Result<bool> {
    let firmware = read(&args.ovmf)?;
    let (kernel, initrd) = args.boot.read()?;
    let digest = snp_digest(
        &firmware,
        &kernel,
        initrd.as_deref(),
        &args.boot.cmdline,
        args.vcpus,
        &args.cpu_type,
        args.guest_features,
    )?;
    println!("{digest}");
    Ok(true)
}

struct TdxValues {
    mrtd: Sha384Digest,
    rtmr1: Vec<tdx::PredictedEvent>,
    rtmr2: Vec<tdx::PredictedEvent>,
}

fn tdx_values(
    firmware: &[u8],
    application: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    order: PageAddOrder,
) -> anyhow::Result<TdxValues> {
    let tdvf = Tdvf::parse(firmware).context("parsing the TDVF metadata")?;
    let pe = tdx::authenticode_sha384(application)
        .context("hashing the EFI application (UKI or kernel)")?;
    Ok(TdxValues {
        mrtd: tdx::mrtd(&tdvf, order),
        rtmr1: tdx::rtmr1_events(&pe),
        rtmr2: tdx::rtmr2_events(cmdline, initrd),
    })
}

fn tdx_command(args: &TdxArgs) -> anyhow::Result<bool> {
    let firmware = read(&args.firmware)?;
    let (kernel, initrd) = args.boot.read()?;
    let values = tdx_values(
        &firmware,
        &kernel,
        initrd.as_deref(),
        &args.boot.cmdline,
        args.order.into(),
    )?;
    println!("mrtd  {}", values.mrtd);
    if let Some(cfv) = tdx::cfv_digest(&Tdvf::parse(&firmware)?)? {
        println!("cfv   {cfv} (RTMR0 event EV_EFI_PLATFORM_FIRMWARE_BLOB2)");
    }
    for (name, events) in [("rtmr1", &values.rtmr1), ("rtmr2", &values.rtmr2)] {
        println!("{name} {}", tdx::replay(events));
        if args.events {
            for event in events.iter() {
                println!("      {} {}", hex::encode(event.digest), event.label);
            }
        }
    }
    Ok(true)
}

fn replay_command(args: &ReplayArgs) -> anyhow::Result<bool> {
    let bytes = read(&args.event_log)?;
    let log = eventlog::parse(&bytes).context("parsing the event log")?;
    if args.events {
        for (index, event) in log.events.iter().enumerate() {
            let digest = event
                .digest(eventlog::ALG_SHA384)
                .map(hex::encode)
                .unwrap_or_default();
            let printable = eventlog::describe(event.data);
            println!(
                "{index:4} mr{} {:#010x} {:<34} {digest} {printable}",
                event.register,
                event.event_type,
                eventlog::event_type_name(event.event_type)
            );
        }
    }
    let rtmrs = log.replay_rtmrs().context("replaying into RTMRs")?;
    for (index, value) in rtmrs.iter().enumerate() {
        println!("rtmr{index} {value}");
    }
    let Some(quote_path) = &args.quote else {
        return Ok(true);
    };
    let quote = read_binary_or_hex(quote_path)?;
    let reported = reported::tdx_quote_fields(&quote).context("reading the quote's TD report")?;
    let quoted = reported
        .rtmr
        .ok_or_else(|| anyhow!("the quote has no RTMRs"))?;
    let mut all = true;
    for (index, (replayed, quoted)) in rtmrs.iter().zip(quoted.iter()).enumerate() {
        if replayed == quoted {
            println!("ok       rtmr{index}");
        } else {
            all = false;
            println!("MISMATCH rtmr{index}: quote {quoted}");
        }
    }
    Ok(all)
}

/// The first `len` bytes of a file (a disk image's partition table), or fewer if it is shorter.
fn read_head(path: &Path, len: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(len).read_to_end(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(head)
}

fn check_tpm_log_command(args: &CheckTpmLogArgs) -> anyhow::Result<bool> {
    let bytes = read(&args.event_log)?;
    let log = eventlog::parse(&bytes).context("parsing the TPM event log")?;
    for (algorithm, name) in [
        (eventlog::ALG_SHA256, "sha256"),
        (eventlog::ALG_SHA384, "sha384"),
    ] {
        let Ok(pcrs) = log.replay_pcrs(algorithm) else {
            println!("{name}: not in the log");
            continue;
        };
        for (pcr, value) in pcrs {
            println!("pcr{pcr:<2} {name} {}", hex::encode(value));
        }
    }
    let fold = tpmlog::fold_into_rtmrs(&log).context("folding the log into RTMR1/RTMR2")?;
    let uki = read(&args.uki)?;
    let boot = uki::Uki::parse(&uki).context("reading the UKI")?;
    let gpt = args
        .disk
        .as_deref()
        .map(|disk| {
            // The header is at LBA 1 and the entries follow it; 1 MiB covers them for any sector size used.
            let head = read_head(disk, 1 << 20)?;
            gpt::gpt_event_digest(&head, args.sector_size)
                .with_context(|| format!("reading the GPT of {}", disk.display()))
        })
        .transpose()?;
    let predicted = [
        (
            "rtmr1",
            &fold.rtmr1,
            boot.rtmr1_events(gpt)
                .context("predicting RTMR1 for the UKI")?,
        ),
        (
            "rtmr2",
            &fold.rtmr2,
            boot.rtmr2_events()
                .context("predicting RTMR2 for the UKI")?,
        ),
    ];
    if !fold.dropped_separators.is_empty() {
        println!(
            "separators of PCR 2-6 not folded (TDVF measures one for RTMR1): log events {:?}",
            fold.dropped_separators
        );
    }
    let mut all = true;
    for (name, log_events, predicted_events) in &predicted {
        let replayed = HexBytes(tpmlog::replay(log_events));
        let expected = tdx::replay(predicted_events);
        println!("{name} log       {replayed} ({} events)", log_events.len());
        println!(
            "{name} predicted {expected} ({} events)",
            predicted_events.len()
        );
        if args.events {
            for event in log_events.iter() {
                println!(
                    "      log {:3} pcr{:<2} {} {:<32} {}",
                    event.index,
                    event.pcr,
                    hex::encode(event.digest),
                    eventlog::event_type_name(event.event_type),
                    event.description
                );
            }
            for event in predicted_events {
                println!(
                    "      predicted       {} {}",
                    hex::encode(event.digest),
                    event.label
                );
            }
        }
        let differences = tpmlog::compare(log_events, predicted_events);
        if differences.is_empty() {
            println!("ok       {name}");
        } else {
            all = false;
            println!("MISMATCH {name}:");
            for difference in differences {
                println!("  {difference}");
            }
        }
    }
    Ok(all)
}

fn split_pair<'a>(text: &'a str, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    text.split_once('=')
        .ok_or_else(|| anyhow!("{what} must be NAME=VALUE, got {text:?}"))
}

fn parse_shape(text: &str) -> anyhow::Result<VmShape> {
    let parts: Vec<&str> = text.split(',').collect();
    let [name, platform, vcpus, cpu_type, memory, firmware] = parts.as_slice() else {
        bail!("--shape must be name,platform,vcpus,cpu_type,memory_mib,firmware; got {text:?}");
    };
    let platform = match *platform {
        "snp" => Platform::Snp,
        "tdx" => Platform::Tdx,
        other => bail!("unknown platform {other:?} (snp or tdx)"),
    };
    Ok(VmShape {
        name: (*name).to_owned(),
        platform,
        vcpus: vcpus.parse().context("shape vcpus")?,
        cpu_type: (*cpu_type).to_owned(),
        memory_mib: memory.parse().context("shape memory_mib")?,
        firmware: (*firmware).to_owned(),
        vmm: Vmm::Qemu,
    })
}

fn reference_command(args: &ReferenceArgs) -> anyhow::Result<bool> {
    let (kernel, initrd) = args.boot.read()?;
    let uki = args.uki.as_deref().map(read).transpose()?;
    let mut firmware = Vec::new();
    let mut firmware_bytes = Vec::new();
    for spec in &args.firmware {
        let (name, path) = split_pair(spec, "--firmware")?;
        let bytes = read(Path::new(path))?;
        // The AmdSev build carries TDX metadata too (edk2's reset vector is shared), so the SEV kernel-hashes
        // table, which only the AmdSev build has, decides first.
        let kind = if Ovmf::parse(&bytes).is_ok_and(|o| o.supports_kernel_hashes()) {
            FirmwareKind::OvmfAmdsev
        } else if Tdvf::parse(&bytes).is_ok() {
            FirmwareKind::Tdvf
        } else {
            bail!("{path}: neither TDVF metadata nor an SEV kernel-hashes table");
        };
        let digest = file_digest(Path::new(path), &bytes);
        firmware.push(FirmwareDigest {
            name: name.to_owned(),
            kind,
            size: digest.size,
            sha256: digest.sha256,
        });
        firmware_bytes.push((name.to_owned(), bytes));
    }
    let shapes = args
        .shapes
        .iter()
        .map(|s| parse_shape(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let firmware_of = |shape: &VmShape| {
        firmware_bytes
            .iter()
            .find(|(n, _)| *n == shape.firmware)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| {
                anyhow!(
                    "shape {}: no --firmware named {}",
                    shape.name,
                    shape.firmware
                )
            })
    };

    let mut vmpls = Vec::new();
    for spec in &args.vmpl {
        let (name, value) = split_pair(spec, "--vmpl")?;
        if !shapes
            .iter()
            .any(|s| s.name == name && s.platform == Platform::Snp)
        {
            bail!("--vmpl {spec}: no SNP shape named {name}");
        }
        let vmpl: u8 = value
            .parse()
            .with_context(|| format!("--vmpl {spec}: not a VMPL"))?;
        vmpls.push((name, vmpl));
    }

    let mut snp_shapes = Vec::new();
    let mut tdx_shapes = Vec::new();
    let mut tdx_boot = None;
    for shape in &shapes {
        let fw = firmware_of(shape)?;
        match shape.platform {
            Platform::Snp => {
                let measurement = snp_digest(
                    fw,
                    &kernel,
                    initrd.as_deref(),
                    &args.boot.cmdline,
                    shape.vcpus,
                    &shape.cpu_type,
                    snp::DEFAULT_GUEST_FEATURES,
                )
                .with_context(|| format!("shape {}", shape.name))?;
                snp_shapes.push(SnpShapeValues {
                    shape: shape.name.clone(),
                    measurement,
                    vmpl: vmpls
                        .iter()
                        .rev()
                        .find(|(name, _)| *name == shape.name)
                        .map_or(0, |(_, v)| *v),
                });
            }
            Platform::Tdx => {
                let application = uki.as_deref().unwrap_or(&kernel);
                let values = tdx_values(
                    fw,
                    application,
                    initrd.as_deref(),
                    &args.boot.cmdline,
                    args.order.into(),
                )
                .with_context(|| format!("shape {}", shape.name))?;
                let rtmr0 = args
                    .rtmr0
                    .iter()
                    .map(|s| split_pair(s, "--rtmr0"))
                    .find(|pair| pair.as_ref().is_ok_and(|(name, _)| *name == shape.name))
                    .transpose()?
                    .ok_or_else(|| {
                        anyhow!(
                            "shape {}: RTMR0 depends on QEMU's TD HOB and ACPI tables for the shape; pass \
                             --rtmr0 {}=<hex> from `dait-measure replay` of a boot's event log",
                            shape.name,
                            shape.name
                        )
                    })?
                    .1
                    .parse::<Sha384Digest>()
                    .context("--rtmr0 value")?;
                tdx_shapes.push(TdxShapeValues {
                    shape: shape.name.clone(),
                    mrtd: values.mrtd,
                    rtmr0,
                });
                tdx_boot = Some((tdx::replay(&values.rtmr1), tdx::replay(&values.rtmr2)));
            }
        }
    }
    let cmdline_sha256 = HexBytes(Sha256::digest(args.boot.cmdline.as_bytes()).into());
    let runtime = parse_runtime_events(&args.runtime_events)?;
    let mut reference = ReferenceMeasurements {
        schema: SCHEMA_VERSION,
        release: args.release.clone(),
        artefacts: Artefacts {
            uki: args
                .uki
                .as_deref()
                .zip(uki.as_deref())
                .map(|(p, b)| file_digest(p, b)),
            kernel: file_digest(&args.boot.kernel, &kernel),
            initrd: args
                .boot
                .initrd
                .as_deref()
                .zip(initrd.as_deref())
                .map(|(p, b)| file_digest(p, b)),
            cmdline: args.boot.cmdline.clone(),
            cmdline_sha256,
            firmware,
            verity_root_hash: args.verity_root_hash,
            package_manifest_sha256: args
                .package_manifest
                .as_deref()
                .map(read)
                .transpose()?
                .map(|b| HexBytes(Sha256::digest(&b).into())),
            agent: args
                .agent
                .as_deref()
                .map(|p| read(p).map(|b| file_digest(p, &b)))
                .transpose()?,
        },
        shapes,
        tdx: tdx_boot.map(|(rtmr1, rtmr2)| TdxReference {
            shapes: tdx_shapes,
            rtmr1: args.rtmr1.unwrap_or(rtmr1),
            rtmr2: args.rtmr2.unwrap_or(rtmr2),
            mr_config_id: vec![HexBytes::ZERO],
            mr_owner: vec![HexBytes::ZERO],
            mr_owner_config: vec![HexBytes::ZERO],
            td_attributes: args.td_attributes,
            xfam: None,
        }),
        snp: (!snp_shapes.is_empty()).then(|| SnpReference {
            shapes: snp_shapes,
            host_data: if args.host_data.is_empty() {
                vec![HexBytes::ZERO]
            } else {
                args.host_data.clone()
            },
            guest_policy: args.guest_policy,
        }),
        runtime,
    };
    if args.launch_binding {
        let mrconfigid = reference.expected_launch_mrconfigid();
        let host_data = reference.expected_launch_host_data();
        if let Some(tdx) = reference.tdx.as_mut() {
            tdx.mr_config_id = vec![mrconfigid];
        }
        if let Some(snp) = reference.snp.as_mut()
            && args.host_data.is_empty()
        {
            snp.host_data = vec![host_data];
        }
    }
    reference
        .validate()
        .context("the computed reference is inconsistent")?;
    let text = reference.to_json_pretty();
    match &args.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(true)
}

/// The `--runtime-event name=sha256hex` arguments, in order.
fn parse_runtime_events(specs: &[String]) -> anyhow::Result<RuntimeReference> {
    let mut runtime = RuntimeReference::default();
    for spec in specs {
        let (name, digest) = split_pair(spec, "--runtime-event")?;
        runtime.events.push(RuntimeEvent {
            name: name.to_owned(),
            sha256: digest.parse().context("--runtime-event digest")?,
        });
    }
    Ok(runtime)
}

/// Prints the register the runtime events replay to and its launch-binding values, one `name hex` line each.
fn launch_binding_command(args: &LaunchBindingArgs) -> anyhow::Result<bool> {
    let runtime = match &args.reference {
        Some(path) => {
            ReferenceMeasurements::load(path)
                .with_context(|| format!("loading {}", path.display()))?
                .runtime
        }
        None => parse_runtime_events(&args.runtime_events)?,
    };
    let register = runtime.expected_rtmr3().0;
    println!("rtmr3 {}", hex::encode(register));
    println!(
        "mrconfigid {}",
        hex::encode(runtime_log::launch_binding_mrconfigid(&register))
    );
    println!(
        "host_data {}",
        hex::encode(runtime_log::launch_binding_host_data(&register))
    );
    Ok(true)
}

fn diff_command(args: &DiffArgs) -> anyhow::Result<bool> {
    let reference = ReferenceMeasurements::load(&args.reference)
        .with_context(|| format!("loading {}", args.reference.display()))?;
    let reported: ReportedValues = match (&args.reported, &args.tdx_quote, &args.snp_report) {
        (Some(path), None, None) => {
            serde_json::from_slice(&read(path)?).context("parsing the reported values")?
        }
        (None, Some(path), None) => {
            reported::tdx_quote_fields(&read_binary_or_hex(path)?).context("reading the quote")?
        }
        (None, None, Some(path)) => reported::snp_report_fields(&read_binary_or_hex(path)?)
            .context("reading the SNP report")?,
        _ => bail!("give exactly one of --reported, --tdx-quote, --snp-report"),
    };
    let report = crate::diff::diff(&reference, &args.shape, &reported).context("comparing")?;
    print!("{report}");
    Ok(report.matches())
}
