#!/usr/bin/env bash
# Joins the kernel caches that scripts/gpu.sh calls brought back into
# .device/kernel-cache.tgz, for the next call (run it after
# scripts/device-build.sh, which empties .device). Usage:
#   scripts/kernel-cache.sh DIR...    (each DIR holds kernel-cache.tgz.NN, oldest first)
# Of each entry name (file, options, arch) the newest is kept; traced
# builds are dropped, and so are entries matching KC_DROP (space-separated
# globs: e.g. 'qgemv-*' when kernels/qgemv.cu changed, whose old entries
# would never be used again); KC_ONLY (an extended regex) keeps only the
# entries matching it, to stay within the device tool's 64 MiB carry (e.g.
# 'KDT_1|^decode-|^sample-' for a decode call in fp16). KC_SAVE=DIR also
# keeps the joined cache as DIR/kernel-cache.tgz.00, a folder to name first
# next time (/work/.device/kcache: the device tool's numbered folders are
# reused from session to session, so the caches in them do not last).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 2; }
[ -d .device ] || { echo "kernel-cache: no .device (run scripts/device-build.sh first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in "$@"; do
  parts=("$d"/kernel-cache.tgz.*)
  [ -f "${parts[0]}" ] || { echo "kernel-cache: no kernel-cache.tgz.NN in $d" >&2; exit 1; }
  # Later calls' entries overwrite earlier ones of the same file name.
  # (-i: a folder whose parts are whole archives of several calls, e.g.
  # .00 of one and .01 of another, is read through to its last one, where
  # tar would stop at the first archive's end and cat die of SIGPIPE.)
  cat "${parts[@]}" | tar -xzif - -C "$tmp"
done
cd "$tmp"
rm -f ./*TRACE*
for g in ${KC_DROP:-}; do rm -f ./$g; done
# The newest entry of each name (the name less its key).
ls -t | awk '{p=$0; sub(/-[0-9a-f]*\.cubin$/,"",p); if (seen[p]++) print $0}' | xargs -r rm -f
if [ -n "${KC_ONLY:-}" ]; then
  ls | grep -Ev -- "$KC_ONLY" | xargs -r rm -f
fi
n=$(ls | wc -l)
tar -czf "$OLDPWD/.device/kernel-cache.tgz" .
cd "$OLDPWD"
if [ -n "${KC_SAVE:-}" ]; then
  mkdir -p "$KC_SAVE"
  cp .device/kernel-cache.tgz "$KC_SAVE/kernel-cache.tgz.00"
fi
echo "kernel-cache: $n entries, $(stat -c %s .device/kernel-cache.tgz) bytes; .device $(du -sb .device | cut -f1) bytes, tracked files $(git ls-files -z | xargs -0 du -bc | tail -1 | cut -f1) bytes (carry limit 67108864)"
