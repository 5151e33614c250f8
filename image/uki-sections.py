#!/usr/bin/env python3
"""Writes the named PE sections of a unified kernel image to files, byte for byte (VirtualSize bytes, so
without the file alignment padding). Usage: uki-sections.py UKI SECTION=FILE [SECTION=FILE ...]
Example: uki-sections.py dait.efi .cmdline=dait.cmdline .osrel=dait.osrel"""
import struct
import sys


def sections(data: bytes) -> dict[str, bytes]:
    if data[:2] != b"MZ":
        raise SystemExit("not a PE file: no MZ header")
    (pe,) = struct.unpack_from("<I", data, 0x3C)
    if data[pe : pe + 4] != b"PE\0\0":
        raise SystemExit("not a PE file: no PE signature")
    count, _, _, _, opt_size = struct.unpack_from("<HIIIH", data, pe + 6)
    table = pe + 24 + opt_size
    out = {}
    for i in range(count):
        name, vsize, _, rsize, roff = struct.unpack_from("<8sIIII", data, table + 40 * i)
        out[name.rstrip(b"\0").decode("ascii")] = data[roff : roff + min(vsize, rsize)]
    return out


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1], "rb") as f:
        found = sections(f.read())
    for arg in sys.argv[2:]:
        name, _, path = arg.partition("=")
        if name not in found:
            raise SystemExit(f"no section {name} in {sys.argv[1]}")
        with open(path, "wb") as f:
            f.write(found[name])


if __name__ == "__main__":
    main()
