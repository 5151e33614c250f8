//! The one bounds-checked reader for untrusted evidence bytes.
//!
//! Every parser in this crate reads through [`Reader`]: it never indexes, never panics, names the field it
//! was reading when input runs out, and [`Reader::finish`] rejects trailing bytes unless the caller says
//! explicitly that padding is allowed.

use super::ParseError;

/// A cursor over borrowed, untrusted bytes.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    /// Bytes consumed so far (for error offsets).
    used: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf` from its first byte.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, used: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Offset of the next byte from the start of the input.
    pub fn offset(&self) -> usize {
        self.used
    }

    /// The unread rest, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Takes exactly `n` bytes, or fails naming `field`.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], ParseError> {
        match self.buf.split_at_checked(n) {
            Some((head, tail)) => {
                self.buf = tail;
                self.used = self.used.saturating_add(n);
                Ok(head)
            }
            None => Err(ParseError::Truncated {
                field,
                need: n,
                have: self.buf.len(),
            }),
        }
    }

    /// Takes exactly `N` bytes as an array.
    pub fn take_array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<&'a [u8; N], ParseError> {
        let bytes = self.take(field, N)?;
        // INVARIANT: `take` returned exactly N bytes.
        bytes
            .try_into()
            .map_err(|_| ParseError::Internal("take_array length"))
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(self.take_array::<1>(field)?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(*self.take_array(field)?))
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(*self.take_array(field)?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(*self.take_array(field)?))
    }

    /// Reads a big-endian `u16` (TPM structures are big-endian).
    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(*self.take_array(field)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(*self.take_array(field)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(*self.take_array(field)?))
    }

    /// Splits off a length-prefixed sub-structure of `len` bytes, refusing lengths above `max`.
    pub fn sub(
        &mut self,
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<Reader<'a>, ParseError> {
        if len > max {
            return Err(ParseError::TooLong { field, len, max });
        }
        let used = self.used;
        let bytes = self.take(field, len)?;
        Ok(Reader { buf: bytes, used })
    }

    /// Takes `N` reserved bytes and requires them to be zero.
    pub fn expect_zero<const N: usize>(&mut self, field: &'static str) -> Result<(), ParseError> {
        let bytes = self.take_array::<N>(field)?;
        if bytes.iter().any(|b| *b != 0) {
            return Err(ParseError::NonZeroReserved { field });
        }
        Ok(())
    }

    /// Ends parsing: fails if any byte is left over.
    pub fn finish(self, structure: &'static str) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes {
                structure,
                extra: self.buf.len(),
            })
        }
    }

    /// Ends parsing where the format allows zero padding after the structure (real TDX quotes carry it):
    /// the rest must be all zero bytes.
    pub fn finish_zero_padded(self, structure: &'static str) -> Result<(), ParseError> {
        if self.buf.iter().all(|b| *b == 0) {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes {
                structure,
                extra: self.buf.len(),
            })
        }
    }

    /// Ends parsing where the format allows at most `max` zero bytes of padding after the structure, and
    /// returns how many there were. A non-zero byte there is [`ParseError::NonZeroPadding`] (naming its
    /// offset); more than `max` zero bytes are [`ParseError::TooLong`] for `field`.
    pub fn finish_zero_padding(
        self,
        structure: &'static str,
        field: &'static str,
        max: usize,
    ) -> Result<usize, ParseError> {
        if let Some(i) = self.buf.iter().position(|b| *b != 0) {
            return Err(ParseError::NonZeroPadding {
                structure,
                offset: self.used.saturating_add(i),
            });
        }
        let len = self.buf.len();
        if len > max {
            return Err(ParseError::TooLong { field, len, max });
        }
        Ok(len)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn take_names_the_field_on_truncation() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.take("a", 2).ok(), Some(&[1u8, 2][..]));
        assert!(matches!(
            r.take("b", 2),
            Err(ParseError::Truncated {
                field: "b",
                need: 2,
                have: 1
            })
        ));
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let mut r = Reader::new(&[1, 2]);
        let _ = r.u8("x");
        assert!(matches!(
            r.finish("s"),
            Err(ParseError::TrailingBytes {
                structure: "s",
                extra: 1
            })
        ));
    }

    #[test]
    fn zero_padding_is_allowed_only_when_zero() {
        assert!(Reader::new(&[0, 0]).finish_zero_padded("q").is_ok());
        assert!(Reader::new(&[0, 1]).finish_zero_padded("q").is_err());
    }

    #[test]
    fn capped_zero_padding_is_counted_and_checked() {
        let mut r = Reader::new(&[7, 0, 0]);
        let _ = r.u8("x");
        assert_eq!(r.clone().finish_zero_padding("s", "s.padding", 2), Ok(2));
        assert!(matches!(
            r.finish_zero_padding("s", "s.padding", 1),
            Err(ParseError::TooLong {
                field: "s.padding",
                len: 2,
                max: 1
            })
        ));
        let mut r = Reader::new(&[7, 0, 5]);
        let _ = r.u8("x");
        assert_eq!(
            r.finish_zero_padding("s", "s.padding", 8),
            Err(ParseError::NonZeroPadding {
                structure: "s",
                offset: 2
            })
        );
        assert_eq!(Reader::new(&[]).finish_zero_padding("s", "p", 0), Ok(0));
    }

    #[test]
    fn sub_caps_lengths() {
        let mut r = Reader::new(&[0; 8]);
        assert!(matches!(
            r.sub("chain", 9, 4),
            Err(ParseError::TooLong { .. })
        ));
        let mut s = r.sub("chain", 4, 4).expect("sub");
        assert_eq!(s.u32_le("v").ok(), Some(0));
        assert_eq!(r.remaining(), 4);
    }

    #[test]
    fn expect_zero_rejects_set_bits() {
        assert!(Reader::new(&[0, 0, 0, 1]).expect_zero::<4>("rsvd").is_err());
    }
}
