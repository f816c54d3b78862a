#!/usr/bin/env bash
# Reproduces the openchat-tiny acceptance figures of docs/benchmarks.md:
# quantizes the published branch table (plus the reference's extra
# 4bit-128g-noact and 3bit-128g-act rows) with the reference.json recipe
# (alpaca_en_demo in the openchat template, 128 x 1024, seed 0) and measures
# every branch's perplexity, and that of round-to-nearest 4-bit g128, on the
# whole wiki.test.raw at ctx 1024.
# Usage: scripts/acceptance.sh [OUTDIR]   (needs ../shared/fixtures beside the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/acceptance}
fx=../shared/fixtures
wiki=$fx/datasets/wikitext-2-raw/wiki.test.raw
model=$fx/models/openchat-tiny
bin=./gptqtool
CGO_ENABLED=0 go build -o "$bin" ./cmd/gptqtool
mkdir -p "$out"
log="$out/results.txt"
: >"$log"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(go version)" | tee -a "$log"
start=$(date +%s)
"$bin" quantize --model "$model" --dataset "$fx/datasets/instruct/alpaca_en_demo.json" \
  --seq-len 1024 --nsamples 128 --seed 0 \
  --branches all,gptq-4bit-128g-actorder_False,gptq-3bit-128g-actorder_True \
  --out "$out/branches" --force --json >"$out/quantize.json" 2>"$out/quantize.log"
echo "quantize: $(( $(date +%s) - start ))s" | tee -a "$log"
# The round-to-nearest baseline of reference.json (4-bit, group 128).
"$bin" quantize --model "$model" --rtn --bits 4 --group 128 --out "$out/rtn/rtn-4bit-128g" --force 2>/dev/null >/dev/null
for dir in "$model" "$out"/branches/*/ "$out"/rtn/*/; do
  name=$(basename "$dir")
  "$bin" verify perplexity --model "$dir" --text "$wiki" --ctx 1024 --json >"$out/ppl-$name.json"
  ppl=$(grep -o '"ppl": [0-9.]*' "$out/ppl-$name.json" | head -1 | awk '{print $2}')
  echo "$name ppl $ppl" | tee -a "$log"
done
echo "total: $(( $(date +%s) - start ))s" | tee -a "$log"
