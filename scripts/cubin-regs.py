#!/usr/bin/env python3
"""Registers a thread of each kernel in the cubins the device compiled.

The device's NVRTC (CUDA 13) writes cubins that the CUDA 11.8 cuobjdump of
scripts/kernel-sass.py cannot read, and its register counts differ from
NVRTC 11.8's or 12.4's. This reads them from the ELF itself: each kernel's
EIATTR_REGCOUNT in the .nv.info sections.

Usage:
  scripts/cubin-regs.py DIR [PATTERN]        # DIR: a device call's files
                                             # (kernel-cache.tgz.NN parts)
  scripts/cubin-regs.py FILE.cubin... [-k PATTERN]

PATTERN (a regular expression) keeps the cubins or kernels whose names
match it. Kernels built with GPTQTOOL_TRACE (their cubins' names say so) may
take more registers than the plain ones, so that fewer of their blocks share
an SM: compare the plain cubins' counts before reading a trace's occupancy.
"""
import glob
import io
import os
import re
import struct
import sys
import tarfile

EIFMT_NVAL, EIFMT_BVAL, EIFMT_HVAL, EIFMT_SVAL = 1, 2, 3, 4
EIATTR_REGCOUNT = 0x2F


def registers(data):
    """{kernel: registers} of one cubin (a 64-bit little-endian ELF)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not a 64-bit ELF")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def cstr(off):
        return data[off : data.index(b"\0", off)].decode()

    names = [cstr(secs[shstrndx][4] + s[0]) for s in secs]
    symtab = secs[names.index(".symtab")]
    strtab = secs[symtab[6]]
    syms = [cstr(strtab[4] + struct.unpack_from("<I", data, symtab[4] + 24 * i)[0]) for i in range(symtab[5] // 24)]
    out = {}
    for s, n in zip(secs, names):
        if not n.startswith(".nv.info"):
            continue
        p, end = s[4], s[4] + s[5]
        while p + 2 <= end:
            fmt, attr = data[p], data[p + 1]
            if fmt == EIFMT_SVAL:
                size = struct.unpack_from("<H", data, p + 2)[0]
                if attr == EIATTR_REGCOUNT:
                    sym, val = struct.unpack_from("<II", data, p + 4)
                    out[syms[sym]] = val
                p += 4 + size
            elif fmt in (EIFMT_BVAL, EIFMT_HVAL):
                p += 4
            elif fmt == EIFMT_NVAL:
                p += 2
            else:
                raise ValueError(f"{n}: unknown attribute format {fmt} at {p - s[4]}")
    return out


def cubins(paths):
    """(name, bytes) of the cubins in files, or in a folder's kernel-cache.tgz.NN parts."""
    for path in paths:
        if os.path.isdir(path):
            parts = sorted(glob.glob(os.path.join(path, "kernel-cache.tgz.*")))
            if not parts:
                sys.exit(f"{path}: no kernel-cache.tgz.NN")
            blob = b"".join(open(p, "rb").read() for p in parts)
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                for m in tar.getmembers():
                    if m.isfile() and m.name.endswith(".cubin"):
                        yield os.path.basename(m.name), tar.extractfile(m).read()
        else:
            yield os.path.basename(path), open(path, "rb").read()


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    pat = None
    if "-k" in args:
        i = args.index("-k")
        pat, args = args[i + 1], args[:i] + args[i + 2 :]
    elif len(args) == 2 and os.path.isdir(args[0]) and not os.path.exists(args[1]):
        pat, args = args[1], args[:1]
    rx = re.compile(pat) if pat else None
    for name, data in sorted(cubins(args)):
        for kernel, regs in sorted(registers(data).items()):
            if rx is None or rx.search(name) or rx.search(kernel):
                print(f"{regs:4d}  {kernel:32s} {name}")


if __name__ == "__main__":
    main()
