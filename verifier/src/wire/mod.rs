//! Parsers for untrusted evidence bytes. No cryptography happens here: `parse` turns bytes into typed,
//! borrowed values; `verify` (elsewhere) applies crypto and policy.

pub mod reader;

pub use reader::Reader;

/// Decodes an evidence file that holds either raw bytes or ASCII hex (optionally `0x`-prefixed; white space
/// anywhere, as in wrapped hex dumps, is ignored). Anything that is not entirely hex is taken as raw.
pub fn decode_hex_or_raw(bytes: &[u8]) -> Vec<u8> {
    let text: Option<String> = core::str::from_utf8(bytes)
        .ok()
        .map(|t| t.split_whitespace().collect());
    match text.as_deref().map(|t| t.strip_prefix("0x").unwrap_or(t)) {
        Some(t) if !t.is_empty() => hex::decode(t).unwrap_or_else(|_| bytes.to_vec()),
        _ => bytes.to_vec(),
    }
}

/// Why a piece of evidence could not be parsed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The input ended inside `field`.
    #[error("truncated in {field}: need {need} bytes, have {have}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// A length read from the wire is above the cap for that field.
    #[error("{field} length {len} is above the limit {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The length on the wire.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Bytes were left after a complete structure.
    #[error("{extra} trailing bytes after {structure}")]
    TrailingBytes {
        /// The structure that ended.
        structure: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A byte in the padding a format allows after a structure is not zero (padding is zeros only).
    #[error("non-zero byte at offset {offset} in the padding after {structure}")]
    NonZeroPadding {
        /// The structure the padding follows.
        structure: &'static str,
        /// Offset of the first non-zero byte from the start of the input.
        offset: usize,
    },
    /// A reserved field was not zero.
    #[error("reserved field {field} is not zero")]
    NonZeroReserved {
        /// The field.
        field: &'static str,
    },
    /// A version this crate does not know.
    #[error("unsupported {structure} version {version}")]
    UnsupportedVersion {
        /// The structure.
        structure: &'static str,
        /// The version on the wire.
        version: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid value in {field}")]
    InvalidValue {
        /// The field.
        field: &'static str,
    },
    /// A bug in this crate, not in the input.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_or_raw_files_decode() {
        assert_eq!(decode_hex_or_raw(b"0x0102\n"), vec![1, 2]);
        assert_eq!(decode_hex_or_raw(b"0a0B"), vec![10, 11]);
        assert_eq!(decode_hex_or_raw(b"0a 0b\n0c"), vec![10, 11, 12]);
        assert_eq!(decode_hex_or_raw(&[4, 0, 2]), vec![4, 0, 2]);
        assert_eq!(decode_hex_or_raw(b"0a0"), b"0a0".to_vec());
        assert_eq!(decode_hex_or_raw(b" \n"), b" \n".to_vec());
    }
}
