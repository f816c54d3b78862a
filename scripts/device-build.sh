#!/usr/bin/env bash
# Builds what scripts/gpu.sh runs on the GPU machine (which has no Go): the
# gptqtool binary and the GPU test binaries, gzipped, plus the fixtures they
# read, into .device/ (git-ignored; pass it to the device tool's carry).
# openchat-tiny itself travels in testdata/.
set -euo pipefail
cd "$(dirname "$0")/.."
fx=../shared/fixtures
rm -rf .device
mkdir -p .device/bin .device/fixtures/datasets/instruct .device/fixtures/datasets/wikitext-2-raw .device/fixtures/tokenizers .device/fixtures/configs
export CGO_ENABLED=0
go build -ldflags="-s -w" -o .device/bin/gptqtool ./cmd/gptqtool
go test -c -ldflags="-s -w" -o .device/bin/cuda.test ./runtime/cuda
go test -c -ldflags="-s -w" -o .device/bin/gpu.test ./quantize/gpu
# DEVICE_BASE=REV also builds REV's gptqtool as gptqtool-base, so that one
# device call decodes with both builds on the same machine (gpu.sh decodebase).
if [ -n "${DEVICE_BASE:-}" ]; then
  wt=$(mktemp -d)
  git archive "$DEVICE_BASE" | tar -x -C "$wt"
  (cd "$wt" && go build -ldflags="-s -w" -o "$OLDPWD/.device/bin/gptqtool-base" ./cmd/gptqtool)
  rm -rf "$wt"
fi
gzip -9 .device/bin/*
# DEVICE_KERNEL_CACHE=DIR: the files folder of an earlier gpu.sh call, whose
# kernel-cache.tgz.NN parts are joined here; gpu.sh unpacks the cache, so that
# unchanged kernels are not compiled again on the device.
if [ -n "${DEVICE_KERNEL_CACHE:-}" ]; then
  parts=("$DEVICE_KERNEL_CACHE"/kernel-cache.tgz.*)
  [ -f "${parts[0]}" ] || { echo "device-build: no kernel-cache.tgz.NN in $DEVICE_KERNEL_CACHE" >&2; exit 1; }
  cat "${parts[@]}" >.device/kernel-cache.tgz
fi
cp "$fx"/datasets/instruct/alpaca_en_demo.json .device/fixtures/datasets/instruct/
cp "$fx"/datasets/wikitext-2-raw/* .device/fixtures/datasets/wikitext-2-raw/
cp -r "$fx"/tokenizers/openchat-3.5-1210 .device/fixtures/tokenizers/
cp -r "$fx"/configs/openchat-3.5-1210 .device/fixtures/configs/
mkdir -p .device/fixtures/models && cp -r "$fx"/models/stories260K-hf-mistral .device/fixtures/models/
du -sh .device
