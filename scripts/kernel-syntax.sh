#!/usr/bin/env bash
# kernel-syntax.sh: parse and instantiate every kernel source with the
# host's g++ (common.cuh + the file, as NVRTC sees it, behind the CUDA stubs
# of scripts/kernel-syntax.h), whole and under representative module
# defines (kernels/module.go's parts), so that a misspelt name, a wrong
# type or a template that does not instantiate shows here before a device
# call. It checks C++ only: inline PTX, NVRTC's own rules and anything under
# __CUDA_ARCH__ are left to the device (scripts/gpu.sh's tests).
# Usage: scripts/kernel-syntax.sh [FILE.cu ...]   (default: kernels/*.cu)
set -uo pipefail
cd "$(dirname "$0")/.."
command -v g++ >/dev/null || { echo "kernel-syntax: no g++ here" >&2; exit 2; }
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(kernels/*.cu)
# Module defines a file is also checked under ("" is the whole file).
defines() {
  case "$(basename "$1")" in
    qgemv.cu) printf '%s\n' "" "QG_BITS=0" "QG_BITS=4 KDT=1 QG_NRM=0" "QG_BITS=8 KDT=2 QG_NRM=1" \
      "QG_BITS=4 KDT=0 QG_NRM=0 QG_SZ16=1" "QG_BITS=4 KDT=1 QG_WG=1" "QG_BITS=8 KDT=2 QG_WG=2 QG_SZ16=1" ;;
    qglu.cu) printf '%s\n' "" "QL_BITS=4 KDT=1 QL_W=16 QL_D=8" "QL_BITS=8 KDT=2 QL_W=32 QL_D=4 QG_SZ16=1" ;;
    decode.cu) printf '%s\n' "" "PA_C=0" "PA_C=4 PA_G=4 KDT=1" "PA_C=4 PA_G=4 KDT=2 PA_PRE=1 PA_TC=1" "PA_C=2 PA_G=8 KDT=1 PA_TC=1" ;;
    stream.cu) printf '%s\n' "" "STREAM_WG=1" ;;
    *) printf '%s\n' "" ;;
  esac
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for f in "${files[@]}"; do
  { cat scripts/kernel-syntax.h kernels/common.cuh; printf '#line 1 "%s"\n' "$(basename "$f")"; cat "$f"; } >"$tmp/k.cpp"
  while IFS= read -r d; do
    opts=()
    for x in $d; do opts+=("-D$x"); done
    if ! g++ -std=c++17 -fsyntax-only -w "${opts[@]}" "$tmp/k.cpp" 2>"$tmp/err"; then
      echo "kernel-syntax: $f [${d:-whole}]:" >&2
      grep -E 'error' "$tmp/err" | head -20 >&2
      fail=1
    fi
  done < <(defines "$f")
done
[ "$fail" = 0 ] && echo "kernel-syntax: ${#files[@]} file(s) parse and instantiate"
exit $fail
