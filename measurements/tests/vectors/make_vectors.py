#!/usr/bin/env python3
"""Writes the pinned inputs of dait-measure's TDX tests and prints their expected digests.

Independent of the Rust code: the MRTD follows the Intel TDX module ABI (TDH.MEM.PAGE.ADD / TDH.MR.EXTEND
buffers) and the TDVF design guide (metadata layout) as written here in Python; the Authenticode digests come from
`signify` (PyPI, 0.9.3), not from this script. Re-run with `python3 make_vectors.py` (needs signify) and compare
with README.md.
"""
import hashlib
import struct
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = 4096


def guid_le(text):
    return uuid.UUID(text).bytes_le


def footer_table(entries):
    """OVMF GUIDed footer table: entries (data || u16 size || guid), then the footer entry."""
    table = b""
    for guid, body in entries:
        table += body + struct.pack("<H", len(body) + 18) + guid_le(guid)
    return table + struct.pack("<H", len(table) + 18) + guid_le("96b582de-1fb2-45f7-baea-a366c55a082d")


def tdvf_image():
    pages = 4
    image = bytearray((i * 7 + (i >> 8)) & 0xFF for i in range(pages * PAGE))
    sections = [
        # data_offset, raw_size, memory_address, memory_size, type, attributes
        (0x2000, 0x2000, 0xFFFFE000, 0x2000, 0, 1),  # BFV, MR.EXTEND
        (0x0000, 0x2000, 0xFFFFC000, 0x2000, 1, 0),  # CFV
        (0x0000, 0x0000, 0x00809000, 0x1000, 2, 0),  # TD HOB
        (0x0000, 0x0000, 0x0080A000, 0x2000, 3, 2),  # temporary memory, PAGE.AUG (not added)
    ]
    desc = b"TDVF" + struct.pack("<III", 16 + 32 * len(sections), 1, len(sections))
    for s in sections:
        desc += struct.pack("<IIQQII", *s)
    desc_at = 3 * PAGE + 0x100
    image[desc_at:desc_at + len(desc)] = desc
    table = footer_table([("e47a6535-984a-4798-865e-4685a7bf8ec2", struct.pack("<I", len(image) - desc_at))])
    end = len(image) - 32
    image[end - len(table):end] = table
    return bytes(image), sections


def mrtd(image, sections, two_pass):
    h = hashlib.sha384()

    def page_add(s, page):
        if s[5] & 2 == 0:
            h.update(b"MEM.PAGE.ADD".ljust(16, b"\0") + struct.pack("<Q", s[2] + page * PAGE) + bytes(104))

    def extend(s, page):
        if s[5] & 1:
            for chunk in range(PAGE // 256):
                off = page * PAGE + chunk * 256
                h.update(b"MR.EXTEND".ljust(16, b"\0") + struct.pack("<Q", s[2] + off) + bytes(104))
                h.update(image[s[0] + off:s[0] + off + 256])

    for s in sections:
        pages = s[3] // PAGE
        if two_pass:
            for p in range(pages):
                page_add(s, p)
            for p in range(pages):
                extend(s, p)
        else:
            for p in range(pages):
                page_add(s, p)
                extend(s, p)
    return h.hexdigest()


def tiny_pe():
    """A PE32+ image: headers, two sections listed out of file order, trailing data, a certificate table."""
    headers_size = 0x200
    text = bytes((i * 13) & 0xFF for i in range(0x200))
    data = bytes((i * 29 + 5) & 0xFF for i in range(0x200))
    overlay = b"trailing data after the last section".ljust(0x30, b".")
    cert = struct.pack("<IHH", 0x40, 0x0200, 0x0002) + bytes(range(0x38))
    cert_at = headers_size + len(text) + len(data) + len(overlay)
    pe = 0x40
    dos = bytearray(pe)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, pe)
    coff = struct.pack("<HHIIIHH", 0x8664, 2, 0, 0, 0, 240, 0x2022)
    opt = bytearray(240)
    struct.pack_into("<H", opt, 0, 0x20B)
    struct.pack_into("<I", opt, 16, 0x1000)  # AddressOfEntryPoint
    struct.pack_into("<Q", opt, 24, 0x140000000)  # ImageBase
    struct.pack_into("<II", opt, 32, 0x1000, 0x200)  # SectionAlignment, FileAlignment
    struct.pack_into("<I", opt, 56, 0x3000)  # SizeOfImage
    struct.pack_into("<I", opt, 60, headers_size)  # SizeOfHeaders
    struct.pack_into("<I", opt, 64, 0xDEADBEEF)  # CheckSum (excluded from the hash)
    struct.pack_into("<H", opt, 68, 10)  # Subsystem: EFI application
    struct.pack_into("<I", opt, 108, 16)  # NumberOfRvaAndSizes
    struct.pack_into("<II", opt, 112 + 4 * 8, cert_at, len(cert))  # certificate table
    sections = b""
    # .data first in the table but second in the file.
    for name, rva, ptr, raw in ((b".data", 0x2000, headers_size + len(text), data),
                                (b".text", 0x1000, headers_size, text)):
        sections += struct.pack("<8sIIIIIIHHI", name, len(raw), rva, len(raw), ptr, 0, 0, 0, 0, 0x60000020)
    head = bytes(dos) + b"PE\0\0" + coff + bytes(opt) + sections
    head = head.ljust(headers_size, b"\0")
    return head + text + data + overlay + cert


def main():
    image, sections = tdvf_image()
    (HERE / "tdvf-synthetic.fd").write_bytes(image)
    print("tdvf-synthetic.fd sha256", hashlib.sha256(image).hexdigest())
    print("mrtd single-pass", mrtd(image, sections, two_pass=False))
    print("mrtd two-pass   ", mrtd(image, sections, two_pass=True))
    pe = tiny_pe()
    (HERE / "tiny-pe.efi").write_bytes(pe)
    print("tiny-pe.efi sha256", hashlib.sha256(pe).hexdigest())
    try:
        # signify 0.9.3 with oscrypto 1.3.0, whose OpenSSL version probe needs the upstream fix for two-digit
        # patch numbers ("3.0.16") to import on current OpenSSL 3.
        from signify.authenticode.signed_file.pe import SignedPEFingerprinter
    except ImportError:
        print("signify not installed: no Authenticode digests", file=sys.stderr)
        return
    with open(HERE / "tiny-pe.efi", "rb") as f:
        fp = SignedPEFingerprinter(f)
        assert fp.add_signed_pe_hashers(hashlib.sha256, hashlib.sha384)
        for name, digest in sorted(fp.hash().items()):
            print("authenticode", name, digest.hex())


if __name__ == "__main__":
    main()
