//! Fixed-size byte newtypes: [`B256`] (hashes, ids) and [`Address`] (EVM accounts).

use alloc::string::String;
use core::fmt;

macro_rules! fixed_bytes {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;
            /// All zero.
            pub const ZERO: Self = Self([0u8; $len]);

            /// The bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Whether every byte is zero.
            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|b| *b == 0)
            }

            /// Copies from a slice of exactly [`Self::LEN`] bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }

            /// Parses lowercase or uppercase hex, with or without a `0x` prefix.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; $len];
                crate::types::hex_decode_into(s, &mut out)?;
                Some(Self(out))
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(b: [u8; $len]) -> Self {
                Self(b)
            }
        }

        impl From<$name> for [u8; $len] {
            fn from(b: $name) -> Self {
                b.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        /// `0x`-prefixed lowercase hex.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0x")?;
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

fixed_bytes!(
    /// A 32-byte value: a hash, an id or a `bytes32` EIP-712 field.
    B256,
    32
);

fixed_bytes!(
    /// A 20-byte EVM address: the last 20 bytes of `keccak(uncompressed public key without 0x04)`.
    Address,
    20
);

/// Lowercase hex of `bytes`, no prefix.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(DIGITS[usize::from(nibble)]));
        }
    }
    out
}

/// Decodes hex (optional `0x`) into exactly `out.len()` bytes.
pub(crate) fn hex_decode_into(s: &str, out: &mut [u8]) -> Option<()> {
    let s = s.strip_prefix("0x").unwrap_or(s).as_bytes();
    if s.len() != out.len().checked_mul(2)? {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let hi = hex_val(*pair.first()?)?;
        let lo = hex_val(*pair.get(1)?)?;
        *o = (hi << 4) | lo;
    }
    Some(())
}

/// Decodes exactly `2 * N` hex digits (no prefix). For constants: evaluated at compile time, malformed text fails
/// the build.
pub(crate) const fn hex_array<const N: usize>(s: &str) -> [u8; N] {
    let s = s.as_bytes();
    assert!(s.len() == 2 * N, "hex constant of the wrong length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        match (hex_val(s[2 * i]), hex_val(s[2 * i + 1])) {
            (Some(hi), Some(lo)) => out[i] = (hi << 4) | lo,
            _ => panic!("hex constant with a non-hex digit"),
        }
        i += 1;
    }
    out
}

const fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn hex_round_trip() {
        let b = B256([0xab; 32]);
        let s = b.to_string();
        assert_eq!(s.len(), 66);
        assert_eq!(B256::from_hex(&s), Some(b));
        assert_eq!(B256::from_hex(&s[2..]), Some(b));
        assert_eq!(B256::from_hex(&s[..64]), None);
        assert_eq!(hex_encode(&[0x00, 0x9f, 0xa0]), "009fa0");
        assert_eq!(B256::from_hex(&hex_encode(&b.0)), Some(b));
        assert_eq!(
            Address::from_hex("0xzz00000000000000000000000000000000000000"),
            None
        );
    }
}
