#!/usr/bin/env bash
# Compiles every kernels/*.cu as NVRTC will see it (common.cuh prepended) with
# clang's CUDA front end, to catch C++ errors on a machine without a GPU or a
# CUDA toolkit. Needs clang-16 (apt-get install clang-16). Inline PTX is not
# checked here: ptxas runs on the device only.
set -euo pipefail
cd "$(dirname "$0")/.."
clang=${CLANG:-clang++-16}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for f in kernels/*.cu; do
  name=$(basename "$f")
  { cat kernels/common.cuh; printf '\n#line 1 "%s"\n' "$name"; cat "$f"; } >"$tmp/$name"
  if ! "$clang" -x cuda --cuda-gpu-arch=sm_90 -nocudainc -nocudalib --cuda-device-only -std=c++17 -O1 \
      -Wno-unknown-cuda-version -Wno-pass-failed -include scripts/cudacheck.h -S -o "$tmp/${name%.cu}.ptx" "$tmp/$name"; then
    status=1
  fi
done
exit $status
