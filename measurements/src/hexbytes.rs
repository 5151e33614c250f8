//! Fixed-size byte strings that serialise as lowercase hex (digests, register values).

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `N` bytes, written as `2 * N` lowercase hex digits in JSON and in `Display`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexBytes<const N: usize>(pub [u8; N]);

/// A SHA-256 digest.
pub type Sha256Digest = HexBytes<32>;
/// A SHA-384 digest, or a 48-byte TDX/SNP measurement register.
pub type Sha384Digest = HexBytes<48>;

/// The text was not `2 * N` hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex digits, got {got} characters (or a non-hex digit)")]
pub struct HexError {
    /// Number of hex digits required.
    pub expected: usize,
    /// Number of characters given.
    pub got: usize,
}

impl<const N: usize> HexBytes<N> {
    /// All zero bytes.
    pub const ZERO: Self = Self([0u8; N]);

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From a byte slice of exactly `N` bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; N]>::try_from(bytes).ok().map(Self)
    }
}

impl<const N: usize> Default for HexBytes<N> {
    fn default() -> Self {
        Self::ZERO
    }
}

impl<const N: usize> From<[u8; N]> for HexBytes<N> {
    fn from(value: [u8; N]) -> Self {
        Self(value)
    }
}

impl<const N: usize> FromStr for HexBytes<N> {
    type Err = HexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        let mut out = [0u8; N];
        hex::decode_to_slice(digits, &mut out).map_err(|_| HexError {
            expected: N.saturating_mul(2),
            got: digits.len(),
        })?;
        Ok(Self(out))
    }
}

impl<const N: usize> fmt::Display for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl<const N: usize> fmt::Debug for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexBytes<{N}>({})", self.to_hex())
    }
}

impl<const N: usize> Serialize for HexBytes<N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de, const N: usize> Deserialize<'de> for HexBytes<N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let value = HexBytes::<4>([0xde, 0xad, 0xbe, 0xef]);
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, "\"deadbeef\"");
        let back: HexBytes<4> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!(matches!(
            "deadbe".parse::<HexBytes<4>>(),
            Err(HexError {
                expected: 8,
                got: 6
            })
        ));
        assert!("deadbeeg".parse::<HexBytes<4>>().is_err());
        assert!(serde_json::from_str::<HexBytes<4>>("\"deadbeef00\"").is_err());
        assert_eq!(
            "0xdeadbeef".parse::<HexBytes<4>>().unwrap().0,
            [0xde, 0xad, 0xbe, 0xef]
        );
    }
}
