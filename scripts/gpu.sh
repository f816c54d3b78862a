#!/usr/bin/env bash
# Runs every GPU test and benchmark on the device machine in one call and
# prints a JSON summary last; full logs and JSON go to $OUT. Build first with
# scripts/device-build.sh and carry .device. Usage:
#   scripts/gpu.sh [tests] [testsquant] [e2e] [bench7b] [table7b] [solvebench] [tablesizes] [resume] [preflight] [cpuscale]
#                  [quantppl] [ordercheck] [decode] [ppl7b] [decodeops] [attnbench] [serve7b] [nsys] [ncu]
#                  [kerneltimes] [decodebase] [decodeshapes] [seedspread] [emulate] [ncusrc] [coldstart] [cudatests] [gputests] [trace] [sass] [streambench] [specbench] [gguf7b] [imatrix7b] [moebench] [synthbench]
#   (default: tests e2e bench7b)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
# At most 8 files come back from $OUT: logs stay in $LOGS, and only the
# summary, one file of all benchmark JSON and one file of all logs are
# copied there.
LOGS=/tmp/gpu-logs
mkdir -p "$LOGS"
steps=${*:-tests e2e bench7b}
bin=/tmp/gptqtool-bin
mkdir -p "$bin"
for f in .device/bin/*.gz; do gunzip -c "$f" >"$bin/$(basename "${f%.gz}")"; done
chmod +x "$bin"/*
export GPTQTOOL_FIXTURES=$PWD/.device/fixtures
export GPTQTOOL_KERNEL_CACHE=/tmp/gptqtool-kernels
mkdir -p "$GPTQTOOL_KERNEL_CACHE"
# A kernel cache brought back by an earlier call (device-build.sh with
# DEVICE_KERNEL_CACHE=DIR puts it in .device): its entries whose source,
# options, NVRTC and driver are unchanged are not compiled again. The cache
# this call used goes back in $OUT (kernel-cache.tgz.NN) at the end.
[ -f .device/kernel-cache.tgz ] && tar -xzf .device/kernel-cache.tgz -C "$GPTQTOOL_KERNEL_CACHE"
mkdir -p "$GPTQTOOL_FIXTURES/models"
ln -sfn "$PWD/testdata/models/openchat-tiny" "$GPTQTOOL_FIXTURES/models/openchat-tiny"
summary="$OUT/summary.txt" # written as it goes: a call cut short still brings it back
# A second run of this script in the same call ($OUT, empty as a call
# starts, then holds the first run's summary) adds to the first's summary
# and keeps its mark, so that the call brings back the kernel cache entries
# of both runs (the second's parts replace the first's), e.g. for two
# DECODE_ENV_MODELs.
if [ -s "$summary" ]; then
  echo "=== next run: $*" >>"$summary"
else
  touch /tmp/kernel-cache-mark
fi
note() { echo "$*" | tee -a "$summary"; }
note "machine: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader 2>&1 | head -1); $(nproc) cores"
run() { # name timeout cmd...
  local name=$1 t=$2
  shift 2
  local s=$(date +%s.%N)
  timeout "$t" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  local e=$(date +%s.%N)
  note "$name: rc=$rc $(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.1fs", b-a}')"
  grep -E -- '^(--- FAIL|FAIL|ok|PASS|panic)|_test.go:[0-9]+:' "$LOGS/$name.log" | grep -v -- '--- PASS' | head -60 | tee -a "$summary"
  return $rc
}
for step in $steps; do
  case $step in
  tests)
    # The whole runtime/cuda suite is longer than one call allows (about 420
    # s with its kernels compiled cold on the H200 of the 63rd session, plus
    # TestQuantMatMul's 182 s): tests runs it without TestQuantMatMul, and
    # testsquant runs that one in a call of its own.
    run cuda-tests "${CUDA_TIMEOUT:-480}" "$bin/cuda.test" -test.v -test.count=1 -test.skip '^TestQuantMatMul$'
    run solver-tests 240 "$bin/gpu.test" -test.v -test.count=1 -test.run 'SolverMatchesHost|RefusesNonFinite|Preflight'
    ;;
  gputests)
    # quantize/gpu's tests matching GPU_TESTS (all without it) within
    # GPU_TIMEOUT seconds (default 300).
    run gpu-tests "${GPU_TIMEOUT:-300}" "$bin/gpu.test" -test.v -test.count=1 ${GPU_TESTS:+-test.run "$GPU_TESTS"}
    ;;
  testsquant)
    run cuda-tests-quant "${CUDA_TIMEOUT:-480}" "$bin/cuda.test" -test.v -test.count=1 -test.run '^TestQuantMatMul$'
    ;;
  cudatests)
    run cuda-tests "${CUDA_TIMEOUT:-200}" "$bin/cuda.test" -test.v -test.count=1 ${CUDA_TESTS:+-test.run "$CUDA_TESTS"}
    # CUDA_ENV="VAR=value ..." runs CUDA_ENV_TESTS (default CUDA_TESTS) once
    # more under that setting (e.g. GPTQTOOL_QMMA_PUSH=0), within
    # CUDA_ENV_TIMEOUT seconds (default 200).
    if [ -n "${CUDA_ENV:-}" ]; then
      t=${CUDA_ENV_TESTS:-${CUDA_TESTS:-}}
      run cuda-tests-env "${CUDA_ENV_TIMEOUT:-200}" env $CUDA_ENV "$bin/cuda.test" -test.v -test.count=1 ${t:+-test.run "$t"}
    fi
    ;;
  decodeops)
    # DECODEOPS_BENCH narrows the ops (e.g. 'DecodeOps/M1/(gate_up_glu|down_res)').
    run decode-ops 300 "$bin/cuda.test" -test.run '^$' -test.bench "${DECODEOPS_BENCH:-DecodeOps}" -test.benchtime 20x
    grep -E '^Benchmark' "$LOGS/decode-ops.log" | tee -a "$summary"
    # DECODEOPS_ENV="VAR=value ...[;VAR=value ...]" times them again under
    # each ';'-separated setting (e.g. GPTQTOOL_KERNEL_DEFINES=WG_NACC=2).
    i=0
    echo "${DECODEOPS_ENV:-}" | tr ';' '\n' | while read -r e; do
      [ -n "$e" ] || continue
      i=$((i + 1))
      run decode-ops-env$i 300 env $e "$bin/cuda.test" -test.run '^$' -test.bench "${DECODEOPS_BENCH:-DecodeOps}" -test.benchtime 20x
      note "decodeops with $e:"
      grep -E '^Benchmark' "$LOGS/decode-ops-env$i.log" | tee -a "$summary"
    done
    ;;
  streambench)
    # The device's read bandwidth by each way of loading weights
    # (kernels/stream.cu, BenchmarkStream): registers, cp.async rings,
    # the copy engine's bulk copies, the one-tile product's loop; on every
    # SM or 16. BenchmarkGridPhases: a grid barrier's cost, and a layer's
    # weights streamed as four launches, four phases of one, or one.
    run stream-bench "${STREAM_TIMEOUT:-300}" "$bin/cuda.test" -test.run '^$' -test.bench "${STREAM_BENCH:-Stream|GridPhases}" \
      -test.benchtime ${STREAM_TIMES:-30}x
    grep -E '^Benchmark' "$LOGS/stream-bench.log" | tee -a "$summary"
    ;;
  specbench)
    # Speculative decoding by prompt lookup on the engine (BenchmarkSpeculate:
    # openchat-tiny in fp16, drafts of 0 / 3 / 7, a repeating prompt and a
    # plain one).
    run spec-bench 300 "$bin/cuda.test" -test.run '^$' -test.bench Speculate -test.benchtime ${SPEC_TIMES:-5}x
    grep -E '^Benchmark' "$LOGS/spec-bench.log" | tee -a "$summary"
    ;;
  attnbench)
    # Decode attention of a 7B layer for contexts of 256-4096 positions and
    # the fewest positions a split block takes (SetAttentionSplit).
    run attn-bench 300 "$bin/cuda.test" -test.run '^$' -test.bench PagedAttention -test.benchtime 20x
    grep -E '^Benchmark' "$LOGS/attn-bench.log" | tee -a "$summary"
    ;;
  serve7b)
    # Issue 10: 64 concurrent streams of 256 tokens against the server on the
    # 7B shape at 4 bits (the checkpoint of the decode step), next to the
    # runtime's own batch-64 decode figure in decode-q4act.json.
    if [ ! -d /tmp/oc7b-q4act ]; then note "serve7b: needs /tmp/oc7b-q4act (run the decode step first)"; continue; fi
    # SERVE_ENV="VAR=value ...[;VAR=value ...]" runs the server once more
    # under each ';'-separated setting (e.g. GPTQTOOL_AHEAD=0), to compare.
    # (Read line by line, as DECODE_ENV's: a setting may hold spaces and
    # commas.)
    # Words of a setting that start with -- are the server's flags, each one
    # word (--prefix-cache=false, --step-tokens=2048), the others its
    # environment. SERVE_SHARED=1 also
    # runs a shared-prefix load against each server: 64 requests of 128 new
    # tokens, 16 streams, one prompt of wiki.test.raw's first 2,800
    # characters (773 tokens), which the prefix cache serves after the
    # first requests.
    export SERVE_PROMPT_TEXT="$(head -c 2800 "$GPTQTOOL_FIXTURES/datasets/wikitext-2-raw/wiki.test.raw" | tr '\n' ' ')"
    # SERVE_BASE=1 runs each setting with the build device-build.sh made
    # with DEVICE_BASE too (gptqtool-base, its name's suffix -base), right
    # after this build's.
    sbins=gptqtool
    [ "${SERVE_BASE:-0}" = 1 ] && [ -x "$bin/gptqtool-base" ] && sbins="gptqtool gptqtool-base"
    i=0
    printf 'GPTQTOOL_NONE=1;%s\n' "${SERVE_ENV:-}" | tr ';' '\n' | while read -r e; do
      [ -n "$e" ] || continue
      esfx=""
      [ $i -gt 0 ] && esfx="-env$i"
      i=$((i + 1))
      senv=""
      sflags=""
      for w in $e; do
        case $w in --*) sflags="$sflags $w" ;; *) senv="$senv $w" ;; esac
      done
      for sb in $sbins; do
        sfx=$esfx
        [ $sb = gptqtool-base ] && sfx=$esfx-base
        env $senv "$bin/$sb" serve --device cuda --model /tmp/oc7b-q4act --port 18999 --max-len 2048 --kv-cache 8GiB \
          --max-batch 64 $sflags </dev/null >"$LOGS/serve7b$sfx-server.log" 2>&1 &
        spid=$!
        for _ in $(seq 1 180); do
          (exec 3<>/dev/tcp/127.0.0.1/18999 && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && head -1 <&3 | grep -q ' 200') 2>/dev/null && break
          sleep 1
        done
        run serve7b$sfx 300 sh -c "'$bin/gptqtool' bench serve --url http://127.0.0.1:18999 --concurrency 64 --requests 64 \
          --max-tokens 256 --ignore-eos >'$LOGS/serve7b$sfx.json'"
        if [ "${SERVE_SHARED:-0}" = 1 ]; then
          run serve7b-shared$sfx 300 sh -c "'$bin/gptqtool' bench serve --url http://127.0.0.1:18999 --concurrency 16 --requests 64 \
            --max-tokens 128 --ignore-eos --prompt \"\$SERVE_PROMPT_TEXT\" >'$LOGS/serve7b-shared$sfx.json'"
          (exec 3<>/dev/tcp/127.0.0.1/18999 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && grep -E '^gptqtool_prefix_cache' <&3) 2>/dev/null | tee -a "$summary"
        fi
        # SERVE_SCORE=1: 64 scoring requests of the shared prompt, 16 at a
        # time (lm-eval's loglikelihood requests: bench serve --score).
        # SERVE_LONG=1: three requests of a prompt of about 2,000 tokens (7,800
        # characters of wiki.test.raw from its 100,001st, which no other load's
        # prompt shares) one after another, 8 tokens each: the time
        # to first token of a long prompt through the server (with the prefix
        # cache on, the second and third find it cached).
        # SERVE_JSON=1: structured output (response_format json_schema, a
        # recipe schema) against the same loads unconstrained: one stream of
        # 8 requests of 128 tokens (plain1 / json1), and 64 streams of 256
        # tokens (plain64 / json64), the shared prompt's.
        printf '%s' '{"type": "json_schema", "json_schema": {"name": "recipe", "schema": {"type": "object", "properties": {"title": {"type": "string"}, "servings": {"type": "integer"}, "steps": {"type": "array", "items": {"type": "string"}}}, "required": ["title", "servings", "steps"]}}}' >"$LOGS/recipe-format.json"
        for load in score long plain1 json1 plain64 json64; do
          case $load in
          plain1) [ "${SERVE_JSON:-0}" = 1 ] || continue
            largs="--concurrency 1 --requests 8 --max-tokens 128 --ignore-eos" lp=SERVE_PROMPT_TEXT ;;
          json1) [ "${SERVE_JSON:-0}" = 1 ] || continue
            largs="--concurrency 1 --requests 8 --max-tokens 128 --ignore-eos --response-format @$LOGS/recipe-format.json" lp=SERVE_PROMPT_TEXT ;;
          plain64) [ "${SERVE_JSON:-0}" = 1 ] || continue
            largs="--concurrency 64 --requests 64 --max-tokens 256 --ignore-eos" lp=SERVE_PROMPT_TEXT ;;
          json64) [ "${SERVE_JSON:-0}" = 1 ] || continue
            largs="--concurrency 64 --requests 64 --max-tokens 256 --ignore-eos --response-format @$LOGS/recipe-format.json" lp=SERVE_PROMPT_TEXT ;;
          score) [ "${SERVE_SCORE:-0}" = 1 ] || continue
            largs="--score --concurrency 16 --requests 64" lp=SERVE_PROMPT_TEXT ;;
          long) [ "${SERVE_LONG:-0}" = 1 ] || continue
            export SERVE_LONG_TEXT="$(tail -c +100001 "$GPTQTOOL_FIXTURES/datasets/wikitext-2-raw/wiki.test.raw" | head -c 7800 | tr '\n' ' ')"
            largs="--concurrency 1 --requests 3 --max-tokens 8 --ignore-eos" lp=SERVE_LONG_TEXT ;;
          esac
          run serve7b-$load$sfx 300 sh -c "'$bin/gptqtool' bench serve --url http://127.0.0.1:18999 $largs --prompt \"\$$lp\" >'$LOGS/serve7b-$load$sfx.json'"
          note "serve7b $load with $e ($sb):"
          grep -E '"(requests|errors|first_error|prompt_tokens|completion_tokens|seconds|tokens_per_second|prompt_tokens_per_second|p50_s|p99_s|max_s)"' "$LOGS/serve7b-$load$sfx.json" | tr -d '\n' | tee -a "$summary"
          echo | tee -a "$summary"
          # (With --speculate: the draft tokens fed and held so far.)
          case "$sflags" in *--speculate*)
            (exec 3<>/dev/tcp/127.0.0.1/18999 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && grep -E '^gptqtool_spec_decode' <&3) 2>/dev/null | tr '\n' ' ' | tee -a "$summary"
            echo | tee -a "$summary" ;;
          esac
        done
        kill -TERM $spid
        wait $spid
        note "serve7b with $e ($sb):"
        grep -E '"(requests|errors|completion_tokens|seconds|tokens_per_second|p50_s|p99_s)"' "$LOGS/serve7b$sfx.json" | tr -d '\n' | tee -a "$summary"
        echo | tee -a "$summary"
        if [ -f "$LOGS/serve7b-shared$sfx.json" ]; then
          note "serve7b shared prefix with $e ($sb):"
          grep -E '"(requests|errors|completion_tokens|seconds|tokens_per_second|p50_s|p99_s)"' "$LOGS/serve7b-shared$sfx.json" | tr -d '\n' | tee -a "$summary"
          echo | tee -a "$summary"
        fi
      done
    done
    ;;
  nsys)
    # Nsight Systems trace of the decode bench on the 7B shape (NSYS_BATCH,
    # default 1; NSYS_MODELS, default q4act, any checkpoints the decode step
    # made): each kernel of the real, replayed step (the op bench runs every
    # op alone, with small weights left in L2) and how long the device idles
    # between kernels, within and between steps.
    NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
    if [ -z "$NSYS" ]; then note "nsys: Nsight Systems is not installed here"; continue; fi
    for m in ${NSYS_MODELS:-q4act}; do
      if [ ! -d /tmp/oc7b-$m ]; then note "nsys: needs /tmp/oc7b-$m (run the decode step first)"; continue; fi
      run nsys-$m 300 "$NSYS" profile -o /tmp/dec-$m --force-overwrite true --trace cuda --cuda-graph-trace node \
        "$bin/gptqtool" bench decode --device cuda --model /tmp/oc7b-$m --batch "${NSYS_BATCH:-1}" --prompt 128 --new 64
      run nsys-stats-$m 200 "$NSYS" stats --report cuda_gpu_trace --format csv --output /tmp/dec-$m /tmp/dec-$m.nsys-rep
      tr=$(ls /tmp/dec-$m*cuda_gpu_trace*.csv 2>/dev/null | head -1)
      if [ -z "$tr" ]; then
        note "nsys $m: no trace CSV"
        continue
      fi
      # Kernels only (rows with a grid), in start order: time per kernel
      # name, and the idle gaps between kernels (the whole bench: prompt
      # steps included).
      sed 's/"//g' "$tr" | awk -F, -v m="$m" 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i ~ /^Start/) s = i; if ($i ~ /^Duration/) d = i; if ($i == "Name") n = i; if ($i ~ /^GrdX/) g = i; if ($i ~ /^GrdY/) gy = i }; next }
        $g != "" { st = $s + 0; du = $d + 0; if (pe > 0) { gap = st - pe; if (gap > 0) { idle += gap; if (gap > 20000) big += gap } }; pe = st + du; busy += du;
          nm = $n; sub(/\(.*/, "", nm); nm = nm " [" $g "x" $gy "]"; t[nm] += du; c[nm]++ }
        END { printf "nsys %s: kernels busy %.3f ms, idle between kernels %.3f ms (gaps over 20 us: %.3f ms)\n", m, busy / 1e6, idle / 1e6, big / 1e6;
          for (k in t) printf "%9.3f ms %7d launches %9.1f us each  %s\n", t[k] / 1e6, c[k], t[k] / c[k] / 1e3, k }' >/tmp/dec-$m-kernels.txt
      grep '^nsys' /tmp/dec-$m-kernels.txt | tee -a "$summary"
      grep -v '^nsys' /tmp/dec-$m-kernels.txt | sort -rn | head -${NSYS_TOP:-30} | tee -a "$summary"
    done
    ;;
  ncu)
    # Nsight Compute on the decode kernels of the 7B shape (where the device
    # allows profiling): NCU_RUNS lists "benchmark|kernel regex" pairs, each
    # profiled at its first launch (default: batch 1's gate/up product).
    for r in ${NCU_RUNS:-"DecodeOps/M1/gate_up_glu|qmma"}; do
      nb=${r%%|*} nk=${r#*|}
      tag=$(echo "$nb" | tr -c 'A-Za-z0-9\n' '_')
      run ncu-$tag 300 /usr/local/cuda/bin/ncu --kernel-name "regex:$nk" --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
        --section MemoryWorkloadAnalysis ${NCU_EXTRA:-} \
        "$bin/cuda.test" -test.run '^$' -test.bench "$nb" -test.benchtime 1x
      grep -vE '^(Benchmark|==PROF|PASS|goos|goarch|pkg|cpu)|^ *$|----|^ +(OPT|WRN|INF) |^          ' "$LOGS/ncu-$tag.log" | cut -c1-110 | head -${NCU_LINES:-80} | tee -a "$summary"
    done
    ;;
  coldstart)
    # Time to a first token on a machine with no kernel cache: bench decode
    # (batch 1, 8 new tokens) with an empty cache, then again with the cache
    # it filled, for this build and (DEVICE_BASE) the base build, on the
    # decode step's checkpoint (COLD_MODEL, default q4act); the builds log
    # each module they compile.
    cm=${COLD_MODEL:-q4act}
    [ -d /tmp/oc7b-$cm ] || { note "coldstart: needs /tmp/oc7b-$cm (run the decode step first)"; continue; }
    for bn in gptqtool gptqtool-base; do
      [ -x "$bin/$bn" ] || continue
      for pass in cold warm; do
        [ $pass = cold ] && rm -rf /tmp/kc-$bn
        run cold-$bn-$pass 400 env GPTQTOOL_KERNEL_CACHE=/tmp/kc-$bn "$bin/$bn" bench decode --device cuda --model /tmp/oc7b-$cm --batch 1 --prompt 16 --new 8
        grep -E '^cuda: compiled' "$LOGS/cold-$bn-$pass.log" | tee -a "$summary"
      done
    done
    ;;
  ncusrc)
    # Nsight Compute's per-instruction stall samples of the NCU_RUNS pairs
    # (as ncu), the source page as CSV (SASS), gzipped into $OUT; NCUSRC_EXTRA
    # adds ncu options (e.g. --section ComputeWorkloadAnalysis).
    for r in ${NCU_RUNS:-"DecodeOps/M1/gate_up_glu|qmma"}; do
      nb=${r%%|*} nk=${r#*|}
      tag=$(echo "$nb" | tr -c 'A-Za-z0-9\n' '_')
      run ncusrc-$tag 300 /usr/local/cuda/bin/ncu --kernel-name "regex:$nk" --launch-count 1 --import-source no \
        --section SourceCounters --section WarpStateStats --section SpeedOfLight ${NCUSRC_EXTRA:-} -f -o /tmp/ncusrc-$tag \
        "$bin/cuda.test" -test.run '^$' -test.bench "$nb" -test.benchtime 1x
      /usr/local/cuda/bin/ncu -i /tmp/ncusrc-$tag.ncu-rep --page source --csv --print-source sass >"$LOGS/ncusrc-$tag.csv" 2>"$LOGS/ncusrc-$tag.stderr"
      note "ncusrc $tag: $(wc -l <"$LOGS/ncusrc-$tag.csv") lines; $(head -c 300 "$LOGS/ncusrc-$tag.stderr")"
      gzip -c "$LOGS/ncusrc-$tag.csv" >"$OUT/ncusrc-$tag.csv.gz"
      /usr/local/cuda/bin/ncu -i /tmp/ncusrc-$tag.ncu-rep --page details 2>&1 | grep -vE '^ +(OPT|WRN|INF) |^          |----' | cut -c1-110 | head -${NCU_LINES:-60} | tee -a "$summary"
    done
    ;;
  kerneltimes)
    # Nsight Compute's duration of every kernel of KT_COUNT launches (about
    # one batch-KT_BATCH decode step, default 1) of the decode step's
    # kernels (KT_KERNELS) after KT_SKIP of them in the decode bench on each
    # of KT_MODELS (checkpoints the decode step made), summed by kernel and
    # grid, with the bytes each read from DRAM and their rate: where two
    # checkpoints' steps differ (act order against none). ncu serialises kernels at base clocks, so
    # the figures compare with each other, not with the bench's (KT_CLOCK=none: the clocks the
    # bench runs at, still one kernel at a time).
    # KT_BIN=gptqtool-base profiles the DEVICE_BASE build instead.
    for m in ${KT_MODELS:-q4act q4}; do
      if [ ! -d /tmp/oc7b-$m ]; then note "kerneltimes: needs /tmp/oc7b-$m (run the decode step first)"; continue; fi
      run kt-$m 300 /usr/local/cuda/bin/ncu --csv --page raw --print-units base --metrics gpu__time_duration.sum,dram__bytes_read.sum \
        --clock-control "${KT_CLOCK:-base}" \
        --kernel-name "regex:${KT_KERNELS:-qmma|paged_attn|rope_store|norm|gemv|sample|glu_rows|gather}" \
        --launch-skip "${KT_SKIP:-3000}" --launch-count "${KT_COUNT:-300}" \
        "$bin/${KT_BIN:-gptqtool}" bench decode --device cuda --model /tmp/oc7b-$m --batch "${KT_BATCH:-1}" --prompt 128 --new 64
      # Rows: "ID","Process ID",...,"Kernel Name",...,"Grid Size",...,metric.
      grep -E '^"(ID|[0-9])' "$LOGS/kt-$m.log" | sed 's/^"//; s/"$//; s/","/\t/g' | awk -F'\t' -v m="$m" '
        $1 == "ID" { for (i = 1; i <= NF; i++) { if ($i == "Kernel Name") kn = i; if ($i == "Grid Size") gs = i; if ($i == "gpu__time_duration.sum") d = i; if ($i == "dram__bytes_read.sum") rb = i }; next }
        kn && d { v = $d; gsub(/,/, "", v); r = rb ? $rb : 0; gsub(/,/, "", r); k = $kn " " $gs; t[k] += v; by[k] += r; c[k]++; tot += v; totb += r; n++ }
        END { printf "kerneltimes %s: %d kernels, %.1f us, %.1f MB read from DRAM (%.2f TB/s)\n", m, n, tot / 1e3, totb / 1e6, tot ? totb / tot / 1e3 : 0;
          for (k in t) printf "%9.1f us %4d x %7.2f us %8.2f MB %5.2f TB/s  %s\n", t[k] / 1e3, c[k], t[k] / c[k] / 1e3, by[k] / c[k] / 1e6, by[k] / t[k] / 1e3, k }' >/tmp/kt-$m.txt
      grep '^kerneltimes' /tmp/kt-$m.txt | tee -a "$summary"
      grep -v '^kerneltimes' /tmp/kt-$m.txt | sort -rn | head -25 | tee -a "$summary"
    done
    ;;
  trace)
    # The kernel timeline of decode steps (GPTQTOOL_TRACE, runtime/cuda
    # trace.go) on the decode step's checkpoint (TRACE_MODEL, default
    # q4act) at each of TRACE_BATCHES (default 1 and 32), gzipped into one
    # tar, $OUT/traces.tar; scripts/trace-summary.py reads each trace once
    # the tar is unpacked (tar -xf traces.tar).
    # TRACE_ENV="VAR=value ...[;VAR=value ...]" traces each setting too,
    # as trace-MODEL-bB-eN (N from 1), e.g. GPTQTOOL_TRACE_AT=1 for
    # attention's combine marks and the products' loops of all warps.
    tm=${TRACE_MODEL:-q4act}
    # Without the decode step's checkpoint, one of random codes (gptqtool
    # synth --bits, as DECODE_SOURCE=synth) of the same variant;
    # TRACE_MODEL=moe2b traces moebench's checkpoint (run moebench first).
    md=/tmp/oc7b-$tm
    case $tm in
    moe2b) md=/tmp/moe2b-q tf= ;;
    q4act) tf="--bits 4 --group 128 --act-order" ;;
    q4) tf="--bits 4 --group 128" ;;
    q8act) tf="--bits 8 --group 128 --act-order" ;;
    *) note "trace: TRACE_MODEL=$tm: want q4act, q4, q8act or moe2b"; continue ;;
    esac
    [ -d $md ] || [ $tm = moe2b ] || run synthq7b-$tm 200 "$bin/gptqtool" synth --config "$GPTQTOOL_FIXTURES/configs/openchat-3.5-1210" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out $md $tf --json
    [ -d $md ] || { note "trace: no $md"; continue; }
    IFS=';' read -r -a tenvs <<<"${TRACE_ENV:-}"
    # TRACE_TIMEOUT (seconds, default 300) bounds each traced run.
    # TRACE_PROMPT sets the prompt's tokens (default 128); TRACE_BASE=1 also
    # traces the build device-build.sh made with DEVICE_BASE (as -base).
    tbins=gptqtool
    [ "${TRACE_BASE:-0}" = 1 ] && [ -x "$bin/gptqtool-base" ] && tbins="gptqtool gptqtool-base"
    for tb in ${TRACE_BATCHES:-1 32}; do
      for tbin in $tbins; do
      for ((ti = 0; ti <= ${#tenvs[@]}; ti++)); do
        # (A prompt other than 128 tokens is in the name, so that traces of
        # several TRACE_PROMPTs in one call do not overwrite each other.)
        tn=trace-$tm-b$tb tv=
        [ "${TRACE_PROMPT:-128}" != 128 ] && tn=$tn-p$TRACE_PROMPT
        [ $ti -gt 0 ] && tn=$tn-e$ti tv=${tenvs[ti - 1]}
        [ $tbin = gptqtool-base ] && tn=$tn-base
        # (--new 16: the warm-up's 4 steps and 16 timed ones stay within the
        # records a module holds at batch 1.) The traced run's own tok/s says
        # how much the records slow the step.
        run $tn "${TRACE_TIMEOUT:-300}" sh -c "env $tv GPTQTOOL_TRACE='$LOGS/$tn.trace' '$bin/$tbin' bench decode --device cuda \
          --model $md --batch $tb --prompt ${TRACE_PROMPT:-128} --new 16 >'$LOGS/$tn.bench.json'"
        note "$tn ($tv), traced: $(grep -E '"(tok_per_s|step_ms)"' "$LOGS/$tn.bench.json" | tr -d '\n ')"
        # (Every trace goes into one tar, $OUT/traces.tar: a call brings
        # back at most 8 files, 16 MiB each; a trace is about 0.7 MB.)
        [ -f "$LOGS/$tn.trace" ] && gzip -c "$LOGS/$tn.trace" >"$LOGS/$tn.json.gz" &&
          tar -rf "$OUT/traces.tar" -C "$LOGS" "$tn.json.gz" &&
          note "$tn: $(grep -c '"kind"' "$LOGS/$tn.trace") launches (traces.tar: $tn.json.gz)"
      done
      done
    done
    ;;
  sass)
    # SASS of the kernel-cache entries this call compiled or used whose
    # names match SASS_MATCH (a grep -E pattern, default decode-PA_C_4),
    # from the device's own cuobjdump (the cubins of NVRTC 13 are not
    # readable by older ones), gzipped into $OUT/sass.txt.gz.
    (cd "$GPTQTOOL_KERNEL_CACHE" && find . -name '*.cubin' -newer /tmp/kernel-cache-mark | grep -E "${SASS_MATCH:-decode-PA_C_4}" | sort |
      while read -r f; do echo "=== $f"; cuobjdump -sass "$f"; done) | gzip >"$OUT/sass.txt.gz"
    note "sass: $(zcat "$OUT/sass.txt.gz" | grep -c '^===') cubins"
    ;;
  decodeshapes)
    # Other models' shapes (biased q/k/v, per-head q/k norms: the decode
    # step's unfused paths), 4-bit g128 act order from `gptqtool synth
    # --bits`, decoded at DECODE_ENV_BATCH (default 1,8). DECODE_SHAPES names
    # configs of formats/hfconfig/testdata (default qwen2-7b-instruct
    # qwen3-8b); openchat's tokenizer stands in for theirs (speed depends on
    # the vocabulary's size, which the config gives, not on its entries).
    for c in ${DECODE_SHAPES:-qwen2-7b-instruct qwen3-8b}; do
      cfg=formats/hfconfig/testdata/$c.json
      [ -f "$cfg" ] || { note "decodeshapes: no $cfg"; continue; }
      mkdir -p /tmp/cfg-$c && cp "$cfg" /tmp/cfg-$c/config.json
      [ -d /tmp/shape-$c ] || run synth-$c 200 "$bin/gptqtool" synth --config /tmp/cfg-$c \
        --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/shape-$c --bits 4 --group 128 --act-order --json
      run decode-$c 300 sh -c "'$bin/gptqtool' bench decode --device cuda --model /tmp/shape-$c --batch ${DECODE_ENV_BATCH:-1,8} --prompt ${DECODE_PROMPT:-128} --new ${DECODE_NEW:-128} >'$LOGS/decode-$c.json'"
      note "$c, 4-bit g128 act order:"
      grep -E '"(batch|tok_per_s|step_ms|bandwidth_fraction|step_weight_bytes)"' "$LOGS/decode-$c.json" | tr -d '\n' | tee -a "$summary"
      echo | tee -a "$summary"
    done
    ;;
  decodebase)
    # The build scripts/device-build.sh made with DEVICE_BASE=REV, decoding
    # the checkpoints the decode step made (DECODE_VARIANTS) at
    # DECODE_ENV_BATCH and DECODE_PROMPT, next to this build's figures from
    # the same machine.
    if [ ! -x "$bin/gptqtool-base" ]; then note "decodebase: no gptqtool-base (build with DEVICE_BASE=REV)"; continue; fi
    for n in ${DECODE_VARIANTS:-q4act q4}; do
      [ -d /tmp/oc7b-$n ] || { note "decodebase: needs /tmp/oc7b-$n (run the decode step first)"; continue; }
      run decodebase-$n 300 sh -c "'$bin/gptqtool-base' bench decode --device cuda --model /tmp/oc7b-$n --batch ${DECODE_ENV_BATCH:-1,8,32} --prompt ${DECODE_PROMPT:-128} --new ${DECODE_NEW:-128} >'$LOGS/decodebase-$n.json'"
      note "base build, $n:"
      grep -E '"(batch|tok_per_s|step_ms)"' "$LOGS/decodebase-$n.json" | tr -d '\n' | tee -a "$summary"
      echo | tee -a "$summary"
    done
    ;;
  opbench)
    run op-bench 200 "$bin/cuda.test" -test.run '^$' -test.bench . -test.benchtime 5x
    grep -E '^Benchmark' "$LOGS/op-bench.log" | tee -a "$summary"
    ;;
  solvebench)
    run solver-bench 300 "$bin/gpu.test" -test.run '^$' -test.bench Solve -test.benchtime 3x
    grep -E '^Benchmark' "$LOGS/solver-bench.log" | tee -a "$summary"
    ;;
  seedspread)
    # Issue 8: the 4-bit branches of openchat-tiny quantized on the GPU in
    # fp16 and on the CPU (reference, fp32) with the calibration of seeds
    # 1..SPREAD_SEEDS: how far half-precision calibration alone moves them.
    run seed-spread "${SPREAD_TIMEOUT:-540}" env GPTQTOOL_SEED_SPREAD="${SPREAD_SEEDS:-2}" "$bin/gpu.test" -test.v -test.count=1 -test.run SeedSpread
    grep -E 'seed [0-9]+ ' "$LOGS/seed-spread.log" | tee -a "$summary"
    ;;
  emulate)
    # Issue 8: the CPU backend's WithHalf against the device, op by op
    # (bitwise) and over a whole quantization (codes and perplexity).
    run half-ops 200 "$bin/cuda.test" -test.v -test.count=1 -test.run HalfEmulation
    grep -E 'equal' "$LOGS/half-ops.log" | tee -a "$summary"
    # EMULATE_SEEDS: the calibration draws (default 0), e.g. 0,1,2.
    run host-emulation 500 env GPTQTOOL_EMULATE_SEEDS="${EMULATE_SEEDS:-0}" "$bin/gpu.test" -test.v -test.count=1 -test.run HostEmulation
    grep -E 'activations|codes|layer [0-9]' "$LOGS/host-emulation.log" | tee -a "$summary"
    ;;
  e2e)
    run e2e-tiny 400 "$bin/gpu.test" -test.v -test.count=1 -test.run OpenchatTinyBranches
    grep -E 'ppl|quantized on' "$LOGS/e2e-tiny.log" | tee -a "$summary"
    run ppl-tiny 120 sh -c "'$bin/gptqtool' verify perplexity --device cuda --model testdata/models/openchat-tiny \
      --text '$GPTQTOOL_FIXTURES/datasets/wikitext-2-raw/wiki.test.raw' --ctx 1024 --json >'$LOGS/ppl-tiny.json'"
    cat "$LOGS/ppl-tiny.json" | tee -a "$summary"
    ;;
  bench7b)
    [ -d /tmp/oc7b ] || run synth7b 200 "$bin/gptqtool" synth --config "$GPTQTOOL_FIXTURES/configs/openchat-3.5-1210" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/oc7b --json
    cat "$LOGS/synth7b.log" 2>/dev/null | tail -3
    run bench7b 420 sh -c "'$bin/gptqtool' bench quantize --device cuda --model /tmp/oc7b \
      --dataset '$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json' --bits 4 --group 128 --act-order --damp 0.1 \
      --seq-len 4096 --nsamples 128 --out /tmp/oc7b-gptq --force >'$LOGS/bench7b.json' 2>'$LOGS/bench7b.stderr'"
    tail -3 "$LOGS/bench7b.stderr"
    grep -E '"(wall_s|quantize_s|peak_gpu_reserved_bytes|peak_gpu_device_used_bytes|peak_rss_bytes)"' "$LOGS/bench7b.json" | tee -a "$summary"
    ;;
  gguf7b)
    # llama-quantize's file types from the 7B shape, one run writing one
    # file a type (GGUF7B_TYPES), on the device host's cores.
    [ -d /tmp/oc7b ] || run synth7b 200 "$bin/gptqtool" synth --config "$GPTQTOOL_FIXTURES/configs/openchat-3.5-1210" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/oc7b --json
    # GGUF7B_IMATRIX=1 passes the importance matrix the imatrix7b step wrote
    # (the 1- to 3-bit i-quants need one).
    im=
    [ -n "${GGUF7B_IMATRIX:-}" ] && im="--imatrix /tmp/oc7b-gptqtool.imatrix.gguf"
    run gguf7b "${GGUF7B_TIMEOUT:-400}" sh -c "/usr/bin/time -v '$bin/gptqtool' convert --in /tmp/oc7b --out /tmp/oc7b-gguf --force \
      --gguf '${GGUF7B_TYPES:-q2_k,q3_k_m,q4_0,iq4_xs}' $im --json >'$LOGS/gguf7b.json' 2>'$LOGS/gguf7b.stderr'"
    grep -E 'GGUF|Maximum resident|Elapsed' "$LOGS/gguf7b.stderr" | tee -a "$summary"
    ;;
  imatrix7b)
    # The importance matrix of the 7B shape (bf16, IMATRIX7B_SAMPLES samples
    # of 512 tokens), with this build and, where device-build.sh made one
    # with DEVICE_BASE=REV, with gptqtool-base on the same machine.
    [ -d /tmp/oc7b ] || run synth7b 200 "$bin/gptqtool" synth --config "$GPTQTOOL_FIXTURES/configs/openchat-3.5-1210" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/oc7b --json
    for b in gptqtool gptqtool-base; do
      [ -x "$bin/$b" ] || continue
      run "imatrix7b-$b" 300 sh -c "/usr/bin/time -v '$bin/$b' imatrix --model /tmp/oc7b --device cuda \
        --dataset '$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json' --nsamples ${IMATRIX7B_SAMPLES:-32} --seq-len 512 \
        --out /tmp/oc7b-$b.imatrix.gguf --force --json >'$LOGS/imatrix7b-$b.json' 2>'$LOGS/imatrix7b-$b.stderr'"
      note "$b: $(tr -d '\n' <"$LOGS/imatrix7b-$b.json")"
      grep -E 'imatrix:|Maximum resident|Elapsed' "$LOGS/imatrix7b-$b.stderr" | tee -a "$summary"
    done
    [ -f /tmp/oc7b-gptqtool-base.imatrix.gguf ] && { cmp /tmp/oc7b-gptqtool.imatrix.gguf /tmp/oc7b-gptqtool-base.imatrix.gguf && note "imatrix7b: the two files are identical" || note "imatrix7b: the files differ"; }
    ;;
  table7b)
    run table7b 600 sh -c "'$bin/gptqtool' bench quantize --device cuda --model /tmp/oc7b \
      --dataset '$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json' --branches all \
      --seq-len 4096 --nsamples 128 --out /tmp/oc7b-table --force >'$LOGS/table7b.json' 2>'$LOGS/table7b.stderr'"
    grep -E 'wrote' "$LOGS/table7b.stderr" | tee -a "$summary"
    ;;
  tablesizes)
    # The six branches' files with a small calibration (sizes do not depend on it).
    run tablesizes 400 sh -c "'$bin/gptqtool' bench quantize --device cuda --model /tmp/oc7b \
      --dataset '$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json' --branches all \
      --seq-len 1024 --nsamples 16 --out /tmp/oc7b-sizes --force >'$LOGS/tablesizes.json' 2>'$LOGS/tablesizes.stderr'"
    grep -E 'wrote' "$LOGS/tablesizes.stderr" | tee -a "$summary"
    ;;
  resume)
    # Issue 11 on the GPU: a run killed after layer 2 and resumed equals an
    # uninterrupted one byte for byte.
    q="quantize --device cuda --model $PWD/testdata/models/openchat-tiny --dataset $GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json --seq-len 1024 --nsamples 128 --bits 4 --group 128 --act-order --damp 0.1 --out q --estimate=false"
    rm -rf /tmp/rs-ref /tmp/rs-kill && mkdir -p /tmp/rs-ref /tmp/rs-kill
    run resume-ref 200 sh -c "cd /tmp/rs-ref && '$bin/gptqtool' $q"
    run resume-kill 200 sh -c "cd /tmp/rs-kill && ('$bin/gptqtool' $q & p=\$!; \
      while ! grep -qs '\"layers_done\": [2-9]' q.partial/gptqtool-progress.json; do sleep 0.01; done; kill -9 \$p; wait \$p; \
      grep layers_done q.partial/gptqtool-progress.json; '$bin/gptqtool' $q --resume && diff -r /tmp/rs-ref/q q && echo RESUMED-IDENTICAL)"
    grep -E 'layers_done|RESUMED-IDENTICAL|differ' "$LOGS/resume-kill.log" | tee -a "$summary"
    ;;
  preflight)
    # The plan and estimate on the 7B shape, then the measured run (bench7b's figure).
    [ -d /tmp/oc7b ] || run synth7b 200 "$bin/gptqtool" synth --config "$GPTQTOOL_FIXTURES/configs/openchat-3.5-1210" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/oc7b --json
    run preflight7b 200 sh -c "'$bin/gptqtool' quantize --device cuda --model /tmp/oc7b --dry-run --json \
      --dataset '$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json' --bits 4 --group 128 --act-order --damp 0.1 \
      --seq-len 4096 --nsamples 128 --out /tmp/oc7b-plan >'$LOGS/preflight7b.json'"
    grep -E '"(estimated_seconds|host_bytes_needed|device_bytes_needed|device_bytes_free)"' "$LOGS/preflight7b.json" | tee -a "$summary"
    ;;
  cpuscale)
    # Issue 11: the CPU path on this machine's cores, 2 threads against 16, same bytes.
    for th in 2 16; do
      rm -rf /tmp/cs$th && mkdir -p /tmp/cs$th
      run cpu-threads-$th 500 sh -c "cd /tmp/cs$th && /usr/bin/time -f 'wall %e s user %U s maxrss %M KB' '$bin/gptqtool' quantize \
        --device cpu --threads $th --model $PWD/testdata/models/openchat-tiny --dataset $PWD/testdata/datasets/alpaca_en_demo.parquet \
        --seq-len 1024 --nsamples 128 --bits 4 --group 128 --act-order --damp 0.1 --out q"
      grep -E 'wall|time  ' "$LOGS/cpu-threads-$th.log" | tee -a "$summary"
    done
    cmp /tmp/cs2/q/model.safetensors /tmp/cs16/q/model.safetensors && note "cpuscale: 2 and 16 threads wrote the same bytes"
    ;;
  quantppl)
    # Issue 9: a GPTQ checkpoint of openchat-tiny scored by the fp16 runtime
    # (quantized weights, GEMV and dequantize+cuBLAS) and by the CPU
    # reference (fp32, dequantized at load).
    rm -rf /tmp/qp && mkdir -p /tmp/qp
    for br in "main --bits 4 --group 128 --act-order" "g32 --bits 4 --group 32" "b8 --bits 8 --group 128 --act-order"; do
      set -- $br
      n=$1
      shift
      run quant-$n 200 "$bin/gptqtool" quantize --device cuda --model "$PWD/testdata/models/openchat-tiny" \
        --dataset "$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json" --seq-len 1024 --nsamples 128 --damp 0.1 "$@" \
        --out /tmp/qp/$n --estimate=false
      # QUANTPPL_DEVICES=cuda scores on the GPU only (a short call).
      for dev in ${QUANTPPL_DEVICES:-cuda cpu}; do
        run ppl-$n-$dev 300 sh -c "'$bin/gptqtool' verify perplexity --device $dev --model /tmp/qp/$n \
          --text '$GPTQTOOL_FIXTURES/datasets/wikitext-2-raw/wiki.test.raw' --ctx 1024 --max-windows 60 --json >'$LOGS/ppl-$n-$dev.json'"
        grep -E '"(ppl|tokens_per_second|windows)"' "$LOGS/ppl-$n-$dev.json" | tr -d '\n' | tee -a "$summary"
        echo | tee -a "$summary"
      done
    done
    ;;
  ppl7b)
    # Issue 9: the whole wiki.test.raw scored on the 7B shape at 4 bits (the
    # decode step's checkpoint), and its KL divergence from the bf16 model
    # over the first 32 windows.
    if [ ! -d /tmp/oc7b-q4act ]; then note "ppl7b: needs /tmp/oc7b-q4act (run the decode step first)"; continue; fi
    run ppl7b 300 sh -c "'$bin/gptqtool' verify perplexity --device cuda --model /tmp/oc7b-q4act \
      --text '$GPTQTOOL_FIXTURES/datasets/wikitext-2-raw/wiki.test.raw' --ctx 2048 --json >'$LOGS/ppl7b.json'"
    grep -E '"(ppl|tokens|windows|seconds|tokens_per_second)"' "$LOGS/ppl7b.json" | tr -d '\n' | tee -a "$summary"
    echo | tee -a "$summary"
    run kl7b 300 sh -c "'$bin/gptqtool' verify kl --device cuda --model /tmp/oc7b-q4act --baseline /tmp/oc7b \
      --text '$GPTQTOOL_FIXTURES/datasets/wikitext-2-raw/wiki.test.raw' --ctx 2048 --max-windows 32 --json >'$LOGS/kl7b.json'"
    grep -E '"(mean_kl|max_kl|top1_agreement|ppl|baseline_ppl|windows|seconds|tokens_per_second)"' "$LOGS/kl7b.json" | tr -d '\n' | tee -a "$summary"
    echo | tee -a "$summary"
    ;;
  ordercheck)
    # Act order without gathers (runtime.InputOrderer): greedy decoding of the
    # act-order checkpoint quantppl made, with the producers writing each
    # product's input in its weights' order and with GPTQTOOL_INPUT_ORDER=0
    # (each product gathering): the same ids, since every op gives the same
    # bits either way.
    # (Without quantppl's checkpoint, a quick one of the same branch.)
    mkdir -p /tmp/qp
    [ -d /tmp/qp/main ] || run quant-main 200 "$bin/gptqtool" quantize --device cuda --model "$PWD/testdata/models/openchat-tiny" \
      --dataset "$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json" --seq-len 512 --nsamples 16 --damp 0.1 \
      --bits 4 --group 128 --act-order --out /tmp/qp/main --estimate=false
    if [ ! -d /tmp/qp/main ]; then note "ordercheck: no /tmp/qp/main"; continue; fi
    # greedy_ids NAME ENV: the greedy ids under the setting ENV in order-NAME.txt.
    greedy_ids() {
      run order-$1 120 sh -c "$2 '$bin/gptqtool' generate --device cuda --model /tmp/qp/main \
        --prompt 'Once upon a time, in a small village by the sea,' --max-tokens 96 --temperature 0 --ids >'$LOGS/order-$1.txt'"
    }
    # same_ids NAME WHAT [MORE]: order-NAME.txt against order-1.txt (the defaults).
    same_ids() {
      if cmp -s "$LOGS/order-1.txt" "$LOGS/order-$1.txt" && [ -s "$LOGS/order-1.txt" ]; then
        note "ordercheck: the same ids with and without $2${3:-}"
      else
        note "ordercheck: DIFFERENT ids with and without $2"
        head -c 600 "$LOGS/order-1.txt" "$LOGS/order-$1.txt" | tee -a "$summary"
      fi
    }
    # compare_ids NAME ENV WHAT: greedy_ids NAME ENV, then same_ids NAME WHAT.
    compare_ids() {
      greedy_ids "$1" "$2"
      same_ids "$1" "$3"
    }
    greedy_ids 1 GPTQTOOL_INPUT_ORDER=1
    greedy_ids 0 GPTQTOOL_INPUT_ORDER=0
    same_ids 0 "input orders" " ($(wc -w <"$LOGS/order-1.txt") ids)"
    # The same for RoPE and the cache store in the q/k/v product's epilogue
    # (openchat-tiny's heads are 128 wide, so its decode steps fuse them):
    # bit for bit rope_store's, so the same ids.
    compare_ids rope0 GPTQTOOL_ROPE_FUSE=0 "the fused RoPE"
    # The MLP as one kernel (runtime.MLPFuser): its down sums are added in
    # an order of its own (each block's share, then the blocks' shares), so
    # an argmax within fp32 rounding of a tie could differ; the ids are
    # expected the same.
    compare_ids mlp GPTQTOOL_FUSED_MLP=8 "the fused MLP"
    # Down at one row on the plain wide kernels, launched as the GLU
    # product's loops end (the default), against the 8-warp kernels
    # launched as it ends and against the plain kernels adding up in
    # clusters: sums in other orders, so the ids are expected the same up
    # to near-ties.
    compare_ids plain0 GPTQTOOL_QMMA_PLAIN=0 "down on the plain wide kernels launched early (GPTQTOOL_QMMA_PLAIN=0)"
    compare_ids plaincl GPTQTOOL_QMMA_PLAIN_CLUSTER=1 "the plain kernels' sums in clusters (GPTQTOOL_QMMA_PLAIN_CLUSTER=1)"
    # Paged attention fetching the settled cache rows before its wait (the
    # default, _tcpre on tensor cores) and after it: the same bits.
    compare_ids attnpre0 GPTQTOOL_ATTN_PREFETCH=0 "attention's rows fetched before its wait (GPTQTOOL_ATTN_PREFETCH=0)"
    # Down's splits added up by the norm after it in a cluster of 8 blocks
    # a row (the default, MatMulAddNormTo), against the product adding them
    # up (GPTQTOOL_DOWN_NORM=0) and the norm in one block a row (=1, the
    # same bits as 0): the norm's squares added in another order, so the
    # ids are expected the same up to near-ties.
    compare_ids downnorm0 GPTQTOOL_DOWN_NORM=0 "down's splits added up by the next norm in a cluster (GPTQTOOL_DOWN_NORM=0)"
    compare_ids downnorm1 GPTQTOOL_DOWN_NORM=1 "down's splits added up by the next norm in a cluster rather than in one block a row (GPTQTOOL_DOWN_NORM=1)"
    ;;
  moebench)
    # Mixture of experts (docs/benchmarks.md, "Mixture-of-experts models"):
    # a Mixtral-shaped 2.2B of random weights (testdata/configs/mixtral-2b)
    # quantized by the GPU driver, then decoded at MOE_BATCHES (default
    # 1,8,64) as the defaults route it (on the device, recorded steps, by
    # runs of an expert's slots from two rows on) and, with
    # GPTQTOOL_MOE_SLOTS=0, on the host (op by op).
    [ -d /tmp/moe2b ] || run moesynth 200 "$bin/gptqtool" synth --config "$PWD/testdata/configs/mixtral-2b" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/moe2b
    [ -d /tmp/moe2b-q ] || run moequant 300 "$bin/gptqtool" quantize --model /tmp/moe2b --out /tmp/moe2b-q --bits 4 --group 128 \
      --act-order --damp 0.1 --dataset "$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json" --nsamples 64 --seq-len 512 --estimate=false
    tail -2 "$LOGS/moequant.log" 2>/dev/null | tee -a "$summary"
    # MOE_ENVS: the settings decoded, one a run ("-": none).
    i=0
    for e in ${MOE_ENVS:-- GPTQTOOL_MOE_SLOTS=0}; do
      i=$((i + 1))
      n=moedecode$i
      [ "$e" = - ] && e=
      run $n 300 sh -c "env $e '$bin/gptqtool' bench decode --device cuda --model /tmp/moe2b-q --batch ${MOE_BATCHES:-1,8,64} --prompt 128 --new ${MOE_NEW:-64} >'$LOGS/$n.json'"
      note "moe decode with ${e:-the defaults}:"
      grep -E '"(batch|tok_per_s|step_ms|bandwidth_fraction|step_weight_bytes)"' "$LOGS/$n.json" | tr -d '\n' | tee -a "$summary"
      echo | tee -a "$summary"
    done
    ;;
  synthbench)
    # Decode speed of another model's shape: a GPTQ checkpoint of random
    # codes of SYNTH_CONFIG's shape (default testdata/configs/gemma-2-9b,
    # Gemma 2 9B; testdata/configs/gemma-7b is Gemma 7B's,
    # testdata/configs/granite-3.1-8b Granite 8B's,
    # testdata/configs/qwen1.5-moe-a2.7b Qwen1.5-MoE-A2.7B's; SYNTH_QUANT, default
    # 4-bit g128 act order) written by synth, decoded at SYNTH_BATCHES (default 1,8) with 128-token prompts
    # and SYNTH_NEW new tokens (default 128).
    cfgdir=${SYNTH_CONFIG:-testdata/configs/gemma-2-9b}
    n=synth-$(basename "$cfgdir")
    [ -d /tmp/$n ] || run $n-write 300 "$bin/gptqtool" synth --config "$PWD/$cfgdir" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/$n ${SYNTH_QUANT:---bits 4 --group 128 --act-order} --json
    run $n-decode 300 sh -c "'$bin/gptqtool' bench decode --device cuda --model /tmp/$n --batch ${SYNTH_BATCHES:-1,8} --prompt 128 --new ${SYNTH_NEW:-128} >'$LOGS/$n.json'"
    note "$n decode:"
    grep -E '"(batch|tok_per_s|step_ms|bandwidth_fraction|step_weight_bytes)"' "$LOGS/$n.json" | tr -d '\n' | tee -a "$summary"
    echo | tee -a "$summary"
    ;;
  decode)
    # Issue 9: decode and prefill speed on the 7B shape, 4-bit g128 with and
    # without act order, and 8-bit; a short calibration (speed does not
    # depend on it). DECODE_SOURCE=synth writes the GPTQ checkpoints with
    # `gptqtool synth --bits` instead (random codes, no float checkpoint,
    # no quantization: about a minute less a call). DECODE_NEW sets the new
    # tokens a sequence (default 128; issue 9's batch-32 figure is for 256),
    # DECODE_PROMPT the prompt's (default 128).
    [ "${DECODE_SOURCE:-quant}" = synth ] || [ -d /tmp/oc7b ] || run synth7b 200 "$bin/gptqtool" synth --config "$GPTQTOOL_FIXTURES/configs/openchat-3.5-1210" \
      --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/oc7b --json
    # DECODE_VARIANTS narrows the checkpoints (e.g. "q4act q8act"), DECODE_PREFILL=0
    # skips the prefill bench: a short device call.
    for v in "q4act --bits 4 --group 128 --act-order" "q4 --bits 4 --group 128" "q8act --bits 8 --group 128 --act-order"; do
      set -- $v
      n=$1
      shift
      case " ${DECODE_VARIANTS:-q4act q4 q8act} " in *" $n "*) ;; *) continue ;; esac
      if [ "${DECODE_SOURCE:-quant}" = synth ]; then
        [ -d /tmp/oc7b-$n ] || run synthq7b-$n 200 "$bin/gptqtool" synth --config "$GPTQTOOL_FIXTURES/configs/openchat-3.5-1210" \
          --tokenizer "$GPTQTOOL_FIXTURES/tokenizers/openchat-3.5-1210" --out /tmp/oc7b-$n "$@" --json
      else
        [ -d /tmp/oc7b-$n ] || run quant7b-$n 200 "$bin/gptqtool" quantize --device cuda --model /tmp/oc7b \
          --dataset "$GPTQTOOL_FIXTURES/datasets/instruct/alpaca_en_demo.json" --seq-len 512 --nsamples 16 --damp 0.1 "$@" \
          --out /tmp/oc7b-$n --estimate=false
      fi
      # (DECODE_BATCHES sets the 4-bit act-order checkpoint's batches,
      # DECODE_BATCHES_Q8 the 8-bit one's.)
      batches=1,8
      [ $n = q4act ] && batches=${DECODE_BATCHES:-1,8,32,64}
      [ $n = q4 ] && batches=1,8,32
      [ $n = q8act ] && batches=${DECODE_BATCHES_Q8:-1,8}
      run decode-$n 300 sh -c "'$bin/gptqtool' bench decode --device cuda --model /tmp/oc7b-$n --batch $batches --prompt ${DECODE_PROMPT:-128} --new ${DECODE_NEW:-128} >'$LOGS/decode-$n.json'"
      grep -E '"(batch|tok_per_s|step_ms|graph_ms|host_ms|bandwidth_fraction|step_weight_bytes|load_s)"' "$LOGS/decode-$n.json" | tr -d '\n' | tee -a "$summary"
      echo | tee -a "$summary"
    done
    # DECODE_ENV="VAR=value ...[;VAR=value ...]" decodes the act-order
    # checkpoint once more under each ';'-separated setting (e.g.
    # GPTQTOOL_PDL=0), to compare, at DECODE_ENV_BATCH (default 1,8,32).
    # DECODE_ENV_MODEL picks another of the checkpoints (e.g. q4);
    # DECODE_TIMEOUT (seconds, default 300) bounds each such run;
    # DECODE_ENV_BASE=1 runs each setting with the build device-build.sh
    # made with DEVICE_BASE too (gptqtool-base), right after this build's.
    em=${DECODE_ENV_MODEL:-q4act}
    if [ -n "${DECODE_ENV:-}" ] && [ -d /tmp/oc7b-$em ]; then
      ebins=gptqtool
      [ "${DECODE_ENV_BASE:-0}" = 1 ] && [ -x "$bin/gptqtool-base" ] && ebins="gptqtool gptqtool-base"
      i=0
      echo "$DECODE_ENV" | tr ';' '\n' | while read -r e; do
        [ -n "$e" ] || continue
        i=$((i + 1))
        for eb in $ebins; do
          en=decode-$em-env$i
          [ $eb = gptqtool-base ] && en=$en-base
          run $en "${DECODE_TIMEOUT:-300}" sh -c "env $e '$bin/$eb' bench decode --device cuda --model /tmp/oc7b-$em --batch ${DECODE_ENV_BATCH:-1,8,32} --prompt ${DECODE_PROMPT:-128} --new ${DECODE_NEW:-128} >'$LOGS/$en.json'"
          note "$em with $e ($eb):"
          grep -E '"(batch|tok_per_s|step_ms|graph_ms|host_ms|load_s)"' "$LOGS/$en.json" | tr -d '\n' | tee -a "$summary"
          echo | tee -a "$summary"
        done
      done
    fi
    # DECODE_IDS_ENV="VAR=value ...": greedy ids of that checkpoint (64 new
    # tokens) without and with the setting, compared: the same ids are
    # expected where the setting only adds the same sums in another order
    # (up to near-ties).
    if [ -n "${DECODE_IDS_ENV:-}" ] && [ -d /tmp/oc7b-$em ]; then
      for s in base env; do
        e=
        [ $s = env ] && e=$DECODE_IDS_ENV
        run ids-$em-$s 120 sh -c "env $e '$bin/gptqtool' generate --device cuda --model /tmp/oc7b-$em \
          --prompt 'Once upon a time, in a small village by the sea,' --max-tokens 64 --temperature 0 --ids >'$LOGS/ids-$em-$s.txt'"
      done
      if cmp -s "$LOGS/ids-$em-base.txt" "$LOGS/ids-$em-env.txt" && [ -s "$LOGS/ids-$em-base.txt" ]; then
        note "decode ids: the same $(wc -w <"$LOGS/ids-$em-base.txt") ids of $em with and without $DECODE_IDS_ENV"
      else
        note "decode ids: DIFFERENT ids of $em with and without $DECODE_IDS_ENV"
        head -c 600 "$LOGS/ids-$em-base.txt" "$LOGS/ids-$em-env.txt" | tee -a "$summary"
      fi
    fi
    [ "${DECODE_PREFILL:-1}" = 0 ] && continue
    run prefill-q4act 300 sh -c "'$bin/gptqtool' bench prefill --device cuda --model /tmp/oc7b-q4act --prompts 128,2048,4096 >'$LOGS/prefill-q4act.json'"
    grep -E '"(prompt_tokens|ttft_ms|tok_per_s|peak_gpu_in_use_bytes)"' "$LOGS/prefill-q4act.json" | tr -d '\n' | tee -a "$summary"
    echo | tee -a "$summary"
    ;;
  esac
done
# The cache entries this call compiled or used (a hit refreshes an entry's
# time), in parts of 15 MB (a file coming back holds at most 16 MiB), three
# at most: kernel-cache.tgz.00, .01, ... device-build.sh joins them again.
if (cd "$GPTQTOOL_KERNEL_CACHE" && find . -name '*.cubin' -newer /tmp/kernel-cache-mark -print0 | tar -czf /tmp/kernel-cache.tgz --null -T -); then
  size=$(stat -c %s /tmp/kernel-cache.tgz)
  if [ "$size" -le 45000000 ]; then
    rm -f "$OUT"/kernel-cache.tgz.*
    split -b 15000000 -d /tmp/kernel-cache.tgz "$OUT/kernel-cache.tgz."
    echo "kernel cache: $size bytes back in $(ls "$OUT"/kernel-cache.tgz.* | wc -l) part(s)" | tee -a "$summary"
  else
    echo "kernel cache: $size bytes, too large to bring back" | tee -a "$summary"
  fi
fi
for j in "$LOGS"/*.json; do [ -f "$j" ] && { echo "=== $j"; cat "$j"; }; done >"$OUT/json.txt"
for l in "$LOGS"/*.log "$LOGS"/*.stderr; do [ -f "$l" ] && { echo "=== $l"; tail -c 300000 "$l"; }; done >"$OUT/logs.txt"
echo "=== summary"
cat "$summary"
