//! The initial VMSA page of each vCPU: the register state QEMU/KVM gives it at reset, per CPU model.

use super::*;

/// A QEMU `-cpu` model and the CPUID signature (family/model/stepping) QEMU puts in RDX at reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuType {
    /// QEMU model name.
    pub name: &'static str,
    /// CPUID Fn0000_0001_EAX signature.
    pub signature: u32,
}

/// CPUID Fn0000_0001_EAX from family, model and stepping (AMD CPUID specification #25481).
pub const fn cpu_signature(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, family.saturating_sub(0xf) & 0xff)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

impl CpuType {
    /// The AMD models in QEMU's built-in x86 CPU definitions.
    pub const ALL: &'static [CpuType] = &[
        Self::new("EPYC", 23, 1, 2),
        Self::new("EPYC-v1", 23, 1, 2),
        Self::new("EPYC-v2", 23, 1, 2),
        Self::new("EPYC-IBPB", 23, 1, 2),
        Self::new("EPYC-v3", 23, 1, 2),
        Self::new("EPYC-v4", 23, 1, 2),
        Self::new("EPYC-Rome", 23, 49, 0),
        Self::new("EPYC-Rome-v1", 23, 49, 0),
        Self::new("EPYC-Rome-v2", 23, 49, 0),
        Self::new("EPYC-Rome-v3", 23, 49, 0),
        Self::new("EPYC-Milan", 25, 1, 1),
        Self::new("EPYC-Milan-v1", 25, 1, 1),
        Self::new("EPYC-Milan-v2", 25, 1, 1),
        Self::new("EPYC-Genoa", 25, 17, 0),
        Self::new("EPYC-Genoa-v1", 25, 17, 0),
        Self::new("EPYC-Turin", 26, 0, 0),
    ];

    const fn new(name: &'static str, family: u32, model: u32, stepping: u32) -> Self {
        Self {
            name,
            signature: cpu_signature(family, model, stepping),
        }
    }

    /// Looks a model up by its QEMU name (case-sensitive, as QEMU's `-cpu`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.name == name)
    }
}

/// Byte offsets in the VMSA (AMD APM vol. 2, table B-4, "VMSA layout, state save area").
mod vmsa_offset {
    pub const ES: usize = 0x000;
    pub const CS: usize = 0x010;
    pub const SS: usize = 0x020;
    pub const DS: usize = 0x030;
    pub const FS: usize = 0x040;
    pub const GS: usize = 0x050;
    pub const GDTR: usize = 0x060;
    pub const LDTR: usize = 0x070;
    pub const IDTR: usize = 0x080;
    pub const TR: usize = 0x090;
    pub const EFER: usize = 0x0d0;
    pub const CR4: usize = 0x148;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    pub const G_PAT: usize = 0x268;
    pub const RDX: usize = 0x310;
    pub const SEV_FEATURES: usize = 0x3b0;
    pub const XCR0: usize = 0x3e8;
    pub const MXCSR: usize = 0x408;
    pub const X87_FCW: usize = 0x410;
}

/// Boot processor reset EIP.
pub(super) const BSP_EIP: u32 = 0xffff_fff0;

/// The VMSA page QEMU/KVM gives a vCPU starting at `eip` (segments at reset, CR0.ET, EFER.SVME, CR4.MCE, PAT, x87
/// and SSE defaults, RDX = CPUID signature).
pub fn vmsa_page(eip: u32, cpu: CpuType, guest_features: u64) -> Vec<u8> {
    use vmsa_offset::*;
    let mut page = vec![0u8; PAGE_SIZE];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = page.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    };
    let mut segment = |at: usize, selector: u16, attrib: u16, limit: u32, base: u64| {
        put(at, &selector.to_le_bytes());
        put(at.saturating_add(2), &attrib.to_le_bytes());
        put(at.saturating_add(4), &limit.to_le_bytes());
        put(at.saturating_add(8), &base.to_le_bytes());
    };
    segment(ES, 0, 0x93, 0xffff, 0);
    segment(CS, 0xf000, 0x9b, 0xffff, u64::from(eip & 0xffff_0000));
    segment(SS, 0, 0x93, 0xffff, 0);
    segment(DS, 0, 0x93, 0xffff, 0);
    segment(FS, 0, 0x93, 0xffff, 0);
    segment(GS, 0, 0x93, 0xffff, 0);
    segment(GDTR, 0, 0, 0xffff, 0);
    segment(LDTR, 0, 0x82, 0xffff, 0);
    segment(IDTR, 0, 0, 0xffff, 0);
    segment(TR, 0, 0x8b, 0xffff, 0);
    put(EFER, &0x1000u64.to_le_bytes());
    put(CR4, &0x40u64.to_le_bytes());
    put(CR0, &0x10u64.to_le_bytes());
    put(DR7, &0x400u64.to_le_bytes());
    put(DR6, &0xffff_0ff0u64.to_le_bytes());
    put(RFLAGS, &0x2u64.to_le_bytes());
    put(RIP, &u64::from(eip & 0xffff).to_le_bytes());
    put(G_PAT, &0x0007_0406_0007_0406u64.to_le_bytes());
    put(RDX, &u64::from(cpu.signature).to_le_bytes());
    put(SEV_FEATURES, &guest_features.to_le_bytes());
    put(XCR0, &0x1u64.to_le_bytes());
    put(MXCSR, &0x1f80u32.to_le_bytes());
    put(X87_FCW, &0x37fu16.to_le_bytes());
    page
}
