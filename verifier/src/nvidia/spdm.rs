//! DMTF DSP0274 (SPDM 1.1) GET_MEASUREMENTS request and MEASUREMENTS response, as NVIDIA Hopper GPUs return
//! them: parsed into borrowed values, no cryptography.

use crate::wire::{ParseError, Reader};

/// Length of a GET_MEASUREMENTS request with a signature requested (DSP0274 1.1 §10.11.1, table 38).
pub const REQUEST_LEN: usize = 37;
/// SPDM nonce length (DSP0274 §10.11.1).
pub const NONCE_LEN: usize = 32;
/// Raw ECDSA P-384 signature length (r‖s, DSP0274 §14 "ECDSA signatures").
pub const P384_SIGNATURE_LEN: usize = 96;
/// The most measurement blocks a response may hold (Index is one byte; 0 and 0xFF are reserved).
pub const MAX_BLOCKS: usize = 254;
/// The largest measurement record accepted (the field is 3 bytes; real H100 records are 3,520 bytes).
pub const MAX_RECORD_LEN: usize = 64 * 1024;
/// The largest single measurement accepted.
pub const MAX_MEASUREMENT_LEN: usize = 1024;
/// The largest opaque data accepted (DSP0274 1.1 limits OpaqueLength to 1024).
pub const MAX_OPAQUE_LEN: usize = 1024;
/// The most zero bytes accepted after the signature: the size of the buffer NVML returns the report in
/// (`NVML_CC_GPU_ATTESTATION_REPORT_SIZE`, 0x2000), so even a collector that keeps the whole buffer stays
/// under it, while megabytes of "padding" are refused.
pub const MAX_PADDING: usize = 0x2000;

/// SPDM version byte for 1.1.
pub const SPDM_VERSION_11: u8 = 0x11;
/// GET_MEASUREMENTS request code.
pub const CODE_GET_MEASUREMENTS: u8 = 0xE0;
/// MEASUREMENTS response code.
pub const CODE_MEASUREMENTS: u8 = 0x60;

/// A GET_MEASUREMENTS request (DSP0274 1.1 table 38).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasurementsRequest<'a> {
    /// Param1: bit 0 set = signature requested.
    pub attributes: u8,
    /// Param2: measurement operation (0xFF = all blocks).
    pub operation: u8,
    /// The requester's nonce.
    pub nonce: &'a [u8; NONCE_LEN],
    /// SlotIDParam (certificate slot).
    pub slot_id: u8,
}

/// One measurement block (DSP0274 1.1 table 40) in DMTF format (table 41).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasurementBlock<'a> {
    /// Index (1-based).
    pub index: u8,
    /// MeasurementSpecification (bit 0 = DMTF).
    pub spec: u8,
    /// DMTFSpecMeasurementValueType (bit 7 = raw bit stream; low bits = kind).
    pub value_type: u8,
    /// DMTFSpecMeasurementValue: the digest (or raw value).
    pub value: &'a [u8],
}

/// A MEASUREMENTS response (DSP0274 1.1 table 39).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasurementsResponse<'a> {
    /// Param1 (number of indices when the operation was 0; reserved otherwise).
    pub param1: u8,
    /// Param2: slot id in bits 0..4.
    pub param2: u8,
    /// The measurement blocks, in wire order.
    pub blocks: Vec<MeasurementBlock<'a>>,
    /// The responder's nonce.
    pub nonce: &'a [u8; NONCE_LEN],
    /// OpaqueData (NVIDIA: type/length/value list).
    pub opaque: &'a [u8],
    /// Signature: raw r‖s.
    pub signature: &'a [u8; P384_SIGNATURE_LEN],
}

/// A request and its signed response, with the exact byte ranges the signature covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpdmEvidence<'a> {
    /// The request.
    pub request: MeasurementsRequest<'a>,
    /// The response.
    pub response: MeasurementsResponse<'a>,
    /// request ‖ response without its signature: the signed message (DSP0274 1.1 §10.11.2, L1/L2 transcript).
    pub signed: &'a [u8],
    /// Zero bytes after the signature: not part of SPDM and not signed, but some real H100 evidence carries
    /// them (see [`parse`]).
    pub padding: usize,
}

/// Parses the 37-byte request followed by the MEASUREMENTS response.
///
/// Up to [`MAX_PADDING`] zero bytes after the signature are accepted and counted in
/// [`SpdmEvidence::padding`], as the TDX quote parser does for its buffer padding; a non-zero byte there
/// is [`ParseError::NonZeroPadding`], more zeros [`ParseError::TooLong`]. Why: H100 evidence captured on
/// real hardware can end in zero bytes (trustee's `hopper_coco_report1` fixture, from a CoCo CI run, has
/// one `0x00` after the signature), and trustee's verifier accepts it, because it signs and checks only
/// the parsed length and ignores whatever follows. NVIDIA's own verifiers do not accept it: the C++
/// attestation SDK (`spdm_resp.cpp`) refuses any byte left after the signature, and nvtrust's Python
/// `local_gpu_verifier` takes the signed message as "all but the last 96 bytes", so trailing bytes make its
/// signature check fail. This parser sits between the two: zeros are padding (they carry nothing, and the
/// signed range ends at the parsed signature, so they cannot change what is verified), anything else is
/// refused.
pub fn parse(bytes: &[u8]) -> Result<SpdmEvidence<'_>, ParseError> {
    let mut r = Reader::new(bytes);
    let request = parse_request(&mut r)?;
    let response_start = r.offset();
    let (response, sig_offset) = parse_response(&mut r, response_start)?;
    let padding =
        r.finish_zero_padding("spdm.measurements_response", "spdm.padding", MAX_PADDING)?;
    let signed = bytes
        .get(..sig_offset)
        .ok_or(ParseError::Internal("signed range"))?;
    Ok(SpdmEvidence {
        request,
        response,
        signed,
        padding,
    })
}

fn parse_request<'a>(r: &mut Reader<'a>) -> Result<MeasurementsRequest<'a>, ParseError> {
    let version = r.u8("request.spdm_version")?;
    if version != SPDM_VERSION_11 {
        return Err(ParseError::UnsupportedVersion {
            structure: "spdm request",
            version: version.into(),
        });
    }
    if r.u8("request.code")? != CODE_GET_MEASUREMENTS {
        return Err(ParseError::InvalidValue {
            field: "request.code",
        });
    }
    let attributes = r.u8("request.param1")?;
    if attributes & 1 == 0 {
        // Without a signature there is no nonce and nothing to verify.
        return Err(ParseError::InvalidValue {
            field: "request.param1 (signature not requested)",
        });
    }
    let operation = r.u8("request.param2")?;
    let nonce = r.take_array::<NONCE_LEN>("request.nonce")?;
    let slot_id = r.u8("request.slot_id")?;
    Ok(MeasurementsRequest {
        attributes,
        operation,
        nonce,
        slot_id,
    })
}

fn parse_response<'a>(
    r: &mut Reader<'a>,
    _start: usize,
) -> Result<(MeasurementsResponse<'a>, usize), ParseError> {
    let version = r.u8("response.spdm_version")?;
    if version != SPDM_VERSION_11 {
        return Err(ParseError::UnsupportedVersion {
            structure: "spdm response",
            version: version.into(),
        });
    }
    if r.u8("response.code")? != CODE_MEASUREMENTS {
        return Err(ParseError::InvalidValue {
            field: "response.code",
        });
    }
    let param1 = r.u8("response.param1")?;
    let param2 = r.u8("response.param2")?;
    let number_of_blocks = usize::from(r.u8("response.number_of_blocks")?);
    let len_bytes = r.take_array::<3>("response.measurement_record_length")?;
    let [l0, l1, l2] = *len_bytes;
    let record_len = usize::try_from(u32::from_le_bytes([l0, l1, l2, 0]))
        .map_err(|_| ParseError::Internal("u32 fits usize"))?;
    let mut record = r.sub("response.measurement_record", record_len, MAX_RECORD_LEN)?;
    let mut blocks = Vec::with_capacity(number_of_blocks.min(MAX_BLOCKS));
    for _ in 0..number_of_blocks {
        blocks.push(parse_block(&mut record)?);
    }
    record.finish("response.measurement_record")?;
    let nonce = r.take_array::<NONCE_LEN>("response.nonce")?;
    let opaque_len = usize::from(r.u16_le("response.opaque_length")?);
    let opaque = r
        .sub("response.opaque_data", opaque_len, MAX_OPAQUE_LEN)?
        .rest();
    let sig_offset = r.offset();
    let signature = r.take_array::<P384_SIGNATURE_LEN>("response.signature")?;
    Ok((
        MeasurementsResponse {
            param1,
            param2,
            blocks,
            nonce,
            opaque,
            signature,
        },
        sig_offset,
    ))
}

fn parse_block<'a>(r: &mut Reader<'a>) -> Result<MeasurementBlock<'a>, ParseError> {
    let index = r.u8("block.index")?;
    let spec = r.u8("block.measurement_specification")?;
    let size = usize::from(r.u16_le("block.measurement_size")?);
    let mut m = r.sub(
        "block.measurement",
        size,
        MAX_MEASUREMENT_LEN.saturating_add(3),
    )?;
    if spec & 1 == 0 {
        return Err(ParseError::InvalidValue {
            field: "block.measurement_specification (not DMTF)",
        });
    }
    let value_type = m.u8("block.dmtf.value_type")?;
    let value_size = usize::from(m.u16_le("block.dmtf.value_size")?);
    let value = m.take("block.dmtf.value", value_size)?;
    m.finish("block.measurement")?;
    Ok(MeasurementBlock {
        index,
        spec,
        value_type,
        value,
    })
}

/// Byte offsets where one field ends and the next begins, for truncation tests over real samples.
pub fn field_boundaries(bytes: &[u8]) -> Result<Vec<usize>, ParseError> {
    let ev = parse(bytes)?;
    let mut out = vec![1, 2, 3, 4, 36, REQUEST_LEN];
    let base = REQUEST_LEN;
    for off in [1usize, 2, 3, 4, 5, 8] {
        out.push(base.saturating_add(off));
    }
    let mut pos = base.saturating_add(8);
    for b in &ev.response.blocks {
        for step in [1usize, 1, 2, 1, 2, b.value.len()] {
            pos = pos.saturating_add(step);
            out.push(pos);
        }
    }
    for step in [NONCE_LEN, 2, ev.response.opaque.len(), P384_SIGNATURE_LEN] {
        pos = pos.saturating_add(step);
        out.push(pos);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
