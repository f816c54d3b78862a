#!/usr/bin/env python3
"""Compile kernels/*.cu without a GPU and print a kernel's SASS, to count
instructions before spending device time.

Needs NVRTC and cuobjdump from Debian's non-free CUDA 11.8 packages (the
device has CUDA 13; codegen differs in detail, not in kind):
  add 'Components: non-free contrib' to the bookworm apt source, then
  apt-get install libnvrtc11.2 libnvrtc-builtins11.8
  apt-get download nvidia-cuda-toolkit && dpkg -x nvidia-cuda-toolkit_*.deb /tmp/cudatk

Usage:
  scripts/kernel-sass.py FILE.cu                 # compile only (syntax check, compute_90)
  scripts/kernel-sass.py FILE.cu KERNEL [OUT]    # SASS of KERNEL for sm_90, and its registers

KS_DEFINES="-DQG_BITS=4 -DKDT=1 -DQG_NRM=0" selects a part of the file
(kernels.Module); KS_ARCH=sm_90a (NVRTC 12 or later) compiles for the
arch-specific target (what wgmma needs) instead of sm_90 / compute_90.
"""
import ctypes
import os
import subprocess
import sys

KDIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels")
CUOBJDUMP = os.environ.get("CUOBJDUMP", "/tmp/cudatk/usr/bin/cuobjdump")


def compile_cu(name, arch):
    lib = ctypes.CDLL(os.environ.get("NVRTC", "libnvrtc.so.11.2"))
    read = lambda p: open(p, encoding="utf-8").read()
    # As kernels.Source: common.cuh, then the file under its own name.
    src = read(os.path.join(KDIR, "common.cuh")) + '\n#line 1 "' + name + '"\n' + read(os.path.join(KDIR, name))
    prog = ctypes.c_void_p()
    lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode("utf-8"), name.encode(), 0, None, None)
    opts = [("--gpu-architecture=" + arch).encode(), b"--std=c++17", b"-default-device"]
    opts += [d.encode() for d in os.environ.get("KS_DEFINES", "").split()]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    n = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetProgramLog(prog, log)
    if log.value.strip():
        print(log.value.decode(), file=sys.stderr)
    if rc != 0:
        sys.exit(f"{name}: NVRTC failed")
    if not arch.startswith("sm_"):
        return None
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(n))
    cubin = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetCUBIN(prog, cubin)
    return cubin.raw


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name = sys.argv[1]
    if len(sys.argv) == 2:
        compile_cu(name, os.environ.get("KS_ARCH", "compute_90"))
        print(f"{name}: OK")
        return
    kernel = sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else "/tmp/" + kernel + ".sass"
    path = "/tmp/" + os.path.splitext(name)[0] + "-sm90.cubin"
    open(path, "wb").write(compile_cu(name, os.environ.get("KS_ARCH", "sm_90")))
    sass = subprocess.run([CUOBJDUMP, "-sass", "-fun", kernel, path], capture_output=True, text=True, check=True).stdout
    open(out, "w").write(sass)
    res = subprocess.run([CUOBJDUMP, "-res-usage", path], capture_output=True, text=True, check=True).stdout.splitlines()
    for i, line in enumerate(res):
        if line.strip() == "Function " + kernel + ":" and i + 1 < len(res):
            print(res[i + 1].strip())
    ops = [l.split(";")[0].split("*/")[-1].split() for l in sass.splitlines() if "/*" in l and ";" in l]
    ops = [o[1] if o[0].startswith("@") else o[0] for o in ops if o]
    print(f"{kernel}: {len(ops)} instructions ({ops.count('HMMA.16816.F32')} HMMA) -> {out}")


if __name__ == "__main__":
    main()
