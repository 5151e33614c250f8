//! The indeterminate-length Binary HTTP response encoder (RFC 9292 §3.2) that a streamed call
//! writes piece by piece: the head before the engine's first byte, one chunk per piece of the
//! engine's stream, and the tail with the trailer fields (the receipt) at the end. The `bhttp` crate
//! encodes a whole message only, so a stream is written with these.

/// QUIC variable-length integer (RFC 9000 §16), as Binary HTTP uses.
fn varint(v: u64, out: &mut Vec<u8>) {
    if v < (1 << 6) {
        out.push(v as u8);
    } else if v < (1 << 14) {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < (1 << 30) {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// One field line: length-prefixed name and value.
fn field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    varint(name.len() as u64, out);
    out.extend_from_slice(name);
    varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// Start of an indeterminate-length BHTTP response (RFC 9292 §3.2): framing indicator 3,
/// status, header fields, end of the field section.
pub(super) fn indeterminate_head(status: u16, content_type: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    varint(3, &mut out);
    varint(u64::from(status), &mut out);
    field(b"content-type", content_type, &mut out);
    varint(0, &mut out);
    out
}

/// One content chunk.
pub(super) fn indeterminate_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    varint(data.len() as u64, &mut out);
    out.extend_from_slice(data);
    out
}

/// Content terminator, trailer fields, end of the trailer section.
pub(super) fn indeterminate_tail(trailer: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    varint(0, &mut out);
    for (n, v) in trailer {
        field(n, v, &mut out);
    }
    varint(0, &mut out);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::http::RECEIPT_FIELD;

    fn parse(m: &[u8]) -> ::bhttp::Message {
        ::bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(m)).unwrap()
    }

    #[test]
    fn varints() {
        // RFC 9000 appendix A.1's examples.
        let mut v = Vec::new();
        varint(37, &mut v);
        varint(15293, &mut v);
        varint(494_878_333, &mut v);
        assert_eq!(hex::encode(&v), "257bbd9d7f3e7d");
        let mut v = Vec::new();
        varint(151_288_809_941_952_652, &mut v);
        assert_eq!(hex::encode(&v), "c2197c5eff14e88c");
    }

    #[test]
    fn varint_boundaries() {
        for (value, len) in [
            (0, 1),
            (63, 1),
            (64, 2),
            (16_383, 2),
            (16_384, 4),
            ((1 << 30) - 1, 4),
            (1 << 30, 8),
            ((1 << 62) - 1, 8),
        ] {
            let mut v = Vec::new();
            varint(value, &mut v);
            assert_eq!(v.len(), len, "{value}");
            // The two high bits give the length; the rest is the value, big-endian.
            let prefix = v.first().copied().unwrap() >> 6;
            assert_eq!(1usize << prefix, len, "{value}");
            let mut bytes = [0u8; 8];
            bytes[8 - len..].copy_from_slice(&v);
            bytes[8 - len] &= 0x3f;
            assert_eq!(u64::from_be_bytes(bytes), value);
        }
    }

    #[test]
    fn field_is_length_prefixed() {
        let mut out = Vec::new();
        field(b"ab", b"xyz", &mut out);
        assert_eq!(out, b"\x02ab\x03xyz");
        let long = vec![b'v'; 100];
        let mut out = Vec::new();
        field(b"", &long, &mut out);
        assert_eq!(out.get(..3), Some(&[0x00, 0x40, 100][..]));
        assert_eq!(out.len(), 3 + 100);
    }

    #[test]
    fn head_chunk_and_tail_bytes() {
        assert_eq!(
            indeterminate_head(200, b"a/b"),
            b"\x03\x40\xc8\x0ccontent-type\x03a/b\x00"
        );
        assert_eq!(indeterminate_chunk(b"hi"), b"\x02hi");
        assert_eq!(indeterminate_tail(&[]), b"\x00\x00");
        assert_eq!(indeterminate_tail(&[(b"k", b"v")]), b"\x00\x01k\x01v\x00");
    }

    #[test]
    fn indeterminate_response_parses_with_bhttp() {
        let mut m = indeterminate_head(200, b"text/event-stream");
        m.extend(indeterminate_chunk(b"data: a\n\n"));
        m.extend(indeterminate_chunk(b"data: b\n\n"));
        m.extend(indeterminate_tail(&[(RECEIPT_FIELD, b"abc")]));
        let msg = parse(&m);
        assert_eq!(msg.control().status().unwrap().code(), 200);
        assert_eq!(
            msg.header().get(b"content-type"),
            Some(&b"text/event-stream"[..])
        );
        assert_eq!(msg.content(), b"data: a\n\ndata: b\n\n");
        assert_eq!(msg.trailer().get(RECEIPT_FIELD), Some(&b"abc"[..]));
        // No content at all still parses.
        let mut e = indeterminate_head(502, b"application/json");
        e.extend(indeterminate_tail(&[]));
        let msg = parse(&e);
        assert_eq!(msg.control().status().unwrap().code(), 502);
        assert!(msg.content().is_empty());
    }

    #[test]
    fn large_chunk_parses_with_bhttp() {
        // A chunk past the one- and two-byte varint lengths.
        let data = vec![b'x'; 20_000];
        let mut m = indeterminate_head(200, b"text/event-stream");
        m.extend(indeterminate_chunk(&data));
        m.extend(indeterminate_tail(&[]));
        assert_eq!(parse(&m).content(), &data[..]);
    }
}
