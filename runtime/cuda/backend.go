package cuda

import (
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/gptqtool/gptqtool/kernels"
	"github.com/gptqtool/gptqtool/runtime"
)

// Options configure New.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// CacheDir holds compiled kernels; "" means $GPTQTOOL_KERNEL_CACHE or
	// the user cache folder, "-" disables the cache.
	CacheDir string
	// MemoryLimit caps the device memory the backend reserves (0: none).
	MemoryLimit int64
	// Log, when not nil, gets a line for each kernel module compiled (a
	// first run on a machine, or after an upgrade; then they are cached).
	Log io.Writer
}

// Backend is the CUDA backend: one device, its primary context, one
// stream, cuBLAS and (on first use) cuSOLVER handles, a caching allocator
// and the kernels of package kernels compiled with NVRTC. It is safe for
// use by several goroutines; calls are serialised.
type Backend struct {
	mu       sync.Mutex
	dev      int32
	ctx      uintptr
	stream   uintptr
	name     string
	arch     int
	sms      int
	shared   int // max dynamic shared memory per block (opt-in)
	driver   int
	cacheDir string
	log      io.Writer // Options.Log

	alloc    allocator
	compiles compileJobs        // module compiles, started by Prepare or a first launch
	mods     map[string]uintptr // loaded modules by kernels.Module.Key
	fns      map[fnKey]*function
	args     *launchArgs // pinned (pin) for the backend's life
	tmaps    tmapScratch // rowsMap's encoding space
	pin      *goruntime.Pinner
	blas     uintptr
	blasWS   uint64
	solver   uintptr
	err      error // first error of an op (ops return none); reported by Sync

	ids    *Buffer     // scratch for Embedding ids and CrossEntropy targets
	nll    *Buffer     // scratch for CrossEntropy, ScoreRows and ColumnSquares results
	rope   []ropeTable // device copies of the RoPE tables ops were given
	tmp    *Buffer     // scratch for conversions and masked Gram rows
	closed bool

	deq     *Buffer // a dequantized weight for products of many rows
	xperm   *Buffer // their input in sequential (act order) column order
	xnorm   *Buffer // normalized rows of a norm-fused product that the kernels do not fuse
	qpart   *Buffer // fp32 partial sums of split GEMV blocks
	qcount  *Buffer // per column slab, blocks of a split GEMV done (kept at 0)
	lcount  *Buffer // the pieces GLU kernel's pairs of counters (qglu.cu; kept at 0)
	mlpPart *Buffer // the fused MLP's blocks' shares of down's sums
	mlpTag  *Buffer // the same for its _ll kernels: the blocks' launch counters, then shares tagged with the launch
	glu     *Buffer // the interleaved gate/up product of a GLU weight on the cuBLAS path
	apart   *Buffer // fp32 partial results of split paged attention
	acount  *Buffer // per (row, head group), blocks of a split paged attention done (kept at 0)
	srules  *Buffer // SampleTokens: the rows' rules and penalties

	// ExpertMatMul's (moe.go): fp32 partial sums, its blocks done per slot
	// and column slab (kept at 0), and its tables of experts (qgemv.cu
	// QExp) by their contents.
	epart, ecount *Buffer
	etabs         map[string]*Buffer
	etopk         map[uint64]int // the top k of the routing RouteTopK last wrote to an order (by its address), for ExpertMatMul's kernel
	// srulesUp: the bytes last uploaded to srulesIn (srules then; nil:
	// none kept).
	srulesUp []byte
	srulesIn *Buffer
	swork    *Buffer // SampleTokens: penalised copies of logits rows
	stoks    *Buffer // SampleTokens: the drawn tokens
	sargp    *Buffer // SampleTokens: argmax_rows' partials
	sargc    *Buffer // SampleTokens, DrawGreedy: argmax_rows' counters
	sgrp     *Buffer // DrawGreedy: argmax_rows' partials (kept while graphs use them)
	argmax   bool    // greedy draws without penalties on argmax_rows (GPTQTOOL_ARGMAX=0: never)
	// greedy draws recorded in decode steps' graphs (GreedySlot;
	// GPTQTOOL_GRAPH_DRAW=0: never)
	graphDraw bool
	ahead     aheadCopies // SampleTokensTo's copies
	greedy    aheadCopies // DrawGreedy's host slots (mapped)

	capturing    bool            // a graph is being recorded: no allocation may happen
	graphs       int             // live graphs: scratch they use is retired, not reused
	retired      []*Buffer       // scratch replaced while graphs were alive
	dequantGEMM  bool            // products with quantized weights go through deq
	pdl          bool            // launch pdlKernels with programmatic stream serialization
	clusters     bool            // split products reduce in thread-block clusters (qmma's cl)
	inputOrder   bool            // InputSlots reports act-order weights' orders (runtime.InputOrderer)
	scalesOnly   bool            // weights whose zeros are all 2^(bits-1) upload their scales alone (qgemv.cu QG_SZ16)
	scalesWG     int             // the most tiles of a warpgroup product that reads them too (defaultScalesWG; GPTQTOOL_SZ16=1: none, =2: all)
	normFuseRows int             // the most rows whose products normalize their input (runtime.NormFuser); 0: none
	ropeFuse     bool            // q/k/v products rotate and store in the KV cache (runtime.RoPEFuser)
	mlpRows      int             // the most rows of a fused MLP (runtime.MLPFuser); 0: none
	rowScore     bool            // ScoreRows in use (runtime.RowScorer); GPTQTOOL_ROW_SCORE=0 turns it off
	mlpQD        int             // the fused MLP's ring: chunks a warp
	mlpLL        bool            // GPTQTOOL_FUSED_MLP_LL=1: the fused MLP's _ll kernels (shares tagged with the launch, no flags)
	mlpProbe     int             // GPTQTOOL_FUSED_MLP_PROBE: parts of the fused MLP left out (bits: the sums across the grid, down's work, gate/up's work, the stream), for measuring
	smemSM       int             // shared memory of an SM
	waveCap      bool            // quantized products split into no more blocks than one wave
	qfill        [4]int          // a quantized product's blocks fill the SMs this many times (K split to reach it), by qfillClass
	xasync       int32           // 1: qmma stages fp16 x with cp.async (GPTQTOOL_XASYNC=0: through registers)
	tracePath    string          // GPTQTOOL_TRACE: the kernel timeline's file (trace.go); "" off
	traceCap     int             // records a module holds
	traceAt      int             // GPTQTOOL_TRACE_AT: the kernels' mark placement (trace.go)
	traceSM      map[string]bool // GPTQTOOL_TRACE_SM: the kernel kinds whose launches keep each SM's marks
	extraDefines []string        // GPTQTOOL_KERNEL_DEFINES as NVRTC options (trace.go)
	gemv         bool            // products of up to gemvMaxRows rows of 16-bit x and w into fp32 run gemv.cu, not cuBLAS (GPTQTOOL_GEMV=0: cuBLAS)
	headWG       bool            // with gemv, products of gemvMaxRows+1 to headMaxRows such rows run head.cu on sm_90 (GPTQTOOL_HEAD_WG=0: cuBLAS)
	attnPrefetch int             // paged attention of up to this many rows loads a settled cache's rows before its wait (GPTQTOOL_ATTN_PREFETCH)
	attnSplit    int             // the fewest positions a block of split paged attention takes
	attnWaves    int             // how many times paged attention's grid fills the SMs (GPTQTOOL_ATTN_WAVES)
	attnTC       int             // paged attention of at least this many rows runs on tensor cores (0: never; GPTQTOOL_ATTN_TC)
	attnTCStages int             // the tensor-core kernel's tiles in flight a warp, 2-4 (GPTQTOOL_ATTN_TC_STAGES; 0: by the step's rows, tcStages)
	attnTCCap    bool            // the tensor-core kernel's splits keep its grid to one wave (pagedTCSplits; GPTQTOOL_ATTN_TC_CAP=0: not)
	attnFit      bool            // and its clusters all run at once (fitClusters; GPTQTOOL_ATTN_FIT=0: not)
	apDefer      bool            // PagedAttentionMatMul leaves attention's rows in parts for the product (SetAttentionDefer(false): not, for tests)
	oprojAdd     int             // GPTQTOOL_OPROJ_ADD: the most rows of a step whose o_proj adds into the residual stream (ResidualProjects)
	probeSkip    []string        // GPTQTOOL_PROBE_SKIP: kernels whose names start with one of these are not launched (a probe: wrong outputs)
	clusterMaxS  int             // GPTQTOOL_CLUSTER_MAXS: quantized products split in more blocks than this add up their sums through global memory (0: up to maxClusterBlocks in a cluster)
	passKeep     bool            // a pass of a product of more than qmmaPass rows whose weights the next pass reads again (no QF_EVICT)
	qmmaTMA      bool            // the _w kernels stage fp16 x with the tensor memory accelerator (QF_TMA; GPTQTOOL_QMMA_TMA=0: with cp.async)
	qmmaWG       int             // products of at least this many tiles (of 8 rows) a pass on warpgroup MMA (sm_90a, qgemv.cu _w kernels; 33-64 rows in one pass): defaultQmmaWG (2 tiles, 9 rows); GPTQTOOL_QMMA_WG=0 none, =1 from 2 tiles (9 rows), =2 from 4 (17 rows)
	qmmaFit      bool            // warpgroup-MMA products on as few tiles as their rows need (three for 17-24 rows, five to seven for 33-56), not only 2, 4 and 8 (GPTQTOOL_QMMA_FIT=0 turns it off; qmmaTileFor)
	qmmaWide     int             // GLU products of this many rows or more, up to 8, on the wide kernels (qgemv.cu _g): defaultQmmaWide; GPTQTOOL_QMMA_WIDE=0 none
	qmmaPlain    int             // plain products of this many rows or more, up to qmmaPlainMax, on the plain wide kernels (qgemv.cu _p): defaultQmmaPlain; GPTQTOOL_QMMA_PLAIN=0 none
	qmmaPlainMax int             // GPTQTOOL_QMMA_PLAIN_MAX: the most rows of those (defaultQmmaPlainMax)
	plainGlobal  bool            // the plain wide kernels' splits add up through global memory (the default), not in a cluster (GPTQTOOL_QMMA_PLAIN_CLUSTER=1)
	qmmaMaxS     int             // GPTQTOOL_QMMA_MAXS=N: the most K splits of a qmma product (0: maxSplits' default)
	wideSplit    int             // GPTQTOOL_QMMA_WIDE_SPLIT: the most K splits of a wide GLU product (0: as qmmaSplitWide plans)
	qstWide      int             // GPTQTOOL_QMMA_WIDE_QST: the wide GLU kernels' ring depth (0: qstDepth's for one tile)
	qstAP        int             // GPTQTOOL_QMMA_AP_QST: the _a kernels' (o_proj's) ring depth (0: qstDepth's for one tile)
	qstRoPE      int             // GPTQTOOL_QMMA_ROPE_QST: the one-tile _r kernels' (q/k/v's) ring depth (0: qstDepth's for one tile)
	moeSlots     int             // ExpertMatMul takes at most this many slots (GPTQTOOL_MOE_SLOTS); -1: the default (RoutesExperts)
	moeRuns      int             // ExpertMatMul multiplies runs of an expert's slots (GPTQTOOL_MOE_RUNS): 0 never, 1 for more slots than experts (the default), 2 always
	qmmaPush     int             // clustered one-tile 8-warp products of at most this many rows add up their splits by pushing their sums (QF_PUSH; GPTQTOOL_QMMA_PUSH, SetQMMAPush)
	qgluBlocks   int             // the pieces kernel's most blocks (SetQGLUBlocks, GPTQTOOL_QGLU_BLOCKS; 0: as the SMs hold them)
	qgluW, qgluD int             // the pieces kernel's warps a block and chunks in flight a warp (GPTQTOOL_QGLU_WARPS, GPTQTOOL_QGLU_DEPTH, SetQGLUShape; 0: qgluShape's defaults)
	qgluPad      int             // GPTQTOOL_QGLU_SMEM: bytes of shared memory the pieces kernel's blocks take beyond their need (-1: qgluShared's rule)
	qgluNorm     int             // GPTQTOOL_QGLU_NORM=N: GLU products of at most N rows (1-qgluMaxRows) normalize their input on the pieces kernel (runtime.GLUNormer); 0 none
	qgluSeq      int             // the pieces kernel's launches so far (which pair of counters the next one takes)
	qgluPieces   int             // GPTQTOOL_QGLU_PIECES=N: GLU products of at most N rows (1-qgluMaxRows) that the wide kernels would run take their work in pieces from a counter instead (qglu.cu); 0 none, -1 the default (qgluRows)
	qst          [2]int          // GPTQTOOL_QMMA_QST: the qmma kernels' chunks in flight a warp, kernels of one tile and of more (qstDepth; 0: the defaults)
	evictFirst   bool            // quantized products and gemv.cu stream weights with the L2 policy evict_first (GPTQTOOL_EVICT_FIRST=0: evict_normal)
	normThreads  int             // the norms' threads a row (GPTQTOOL_NORM_THREADS); 0: normThreadsFor's
	downNorm     int             // GPTQTOOL_DOWN_NORM: MatMulAddNormTo leaves a plain wide product's splits to the norm (qgemv.cu QF_PARTS), 1: in one block a row, 2 (the default): in a cluster of 8 (0: not)
	partsWant    bool            // MatMulAddNormTo's product is being issued: it may leave its splits in parts
	partsGot     partsArg        // where it left them
	gt           graphTimes

	// A measuring switch for the products' placement (GPTQTOOL_QMMA_S).
	qmmaS map[[2]int]int // the K splits of the products by weights of K inputs and N outputs, by [K, N]
}

type fnKey struct{ src, name string }

// maxKernelArgs is the most parameters a kernel of kernels/ may take
// (TestKernelArgs counts them).
const maxKernelArgs = 40

// launchArgs holds a launch's argument values and the pointers to them
// that cuLaunchKernel reads: one per backend, used under its lock, pinned
// for the backend's life so that no launch allocates.
type launchArgs struct {
	vals [maxKernelArgs]uint64
	ptrs [maxKernelArgs]unsafe.Pointer
	cfg  launchConfig  // cuLaunchKernelEx's, with attrs
	attr [2]launchAttr // programmatic serialization, the cluster's shape
	tmap [2]TensorMap  // a launch's TensorMap arguments (at most two)
}

type function struct {
	fn       uintptr
	shared   int // dynamic shared memory limit set so far
	launches int // launches so far (tests check which kernel a product took)
	// clusters caches activeClusters: the clusters of a shape that the
	// device runs at once.
	clusters map[clusterShape]int
	// resident caches activeBlocks: the blocks of a shape (threads, dynamic
	// shared memory) an SM holds at once.
	resident map[[2]int]int
}

// clusterShape is a cluster launch's shape for function.clusters: the
// block's threads, its dynamic shared memory, the cluster's blocks.
type clusterShape struct{ threads, shared, blocks int }

// New opens device o.Device. Errors that mean CUDA is absent here (no
// driver, no device, a library missing) wrap ErrNotAvailable.
func New(o Options) (*Backend, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := loadDriver(); err != nil {
		return nil, err
	}
	if r := drv.cuInit(0); r != 0 {
		err := cuErr("cuInit", r)
		return nil, fmt.Errorf("%w: %v (driver %s)", ErrNotAvailable, err, drvPath)
	}
	var count int32
	if err := cuErr("cuDeviceGetCount", drv.cuDeviceGetCount(&count)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotAvailable, err)
	}
	if o.Device < 0 || int(count) <= o.Device {
		return nil, fmt.Errorf("%w: device %d requested, %d present", ErrNotAvailable, o.Device, count)
	}
	b := &Backend{args: new(launchArgs), mods: map[string]uintptr{}, fns: map[fnKey]*function{}, cacheDir: o.CacheDir, log: o.Log}
	b.alloc.free = map[uint64][]uint64{}
	b.alloc.limit = o.MemoryLimit
	switch b.cacheDir {
	case "":
		b.cacheDir = defaultCacheDir()
	case "-":
		b.cacheDir = ""
	}
	if err := cuErr("cuDeviceGet", drv.cuDeviceGet(&b.dev, int32(o.Device))); err != nil {
		return nil, err
	}
	var nameBuf [256]byte
	drv.cuDeviceGetName(&nameBuf[0], int32(len(nameBuf)), b.dev)
	b.name = strings.TrimRight(string(nameBuf[:]), "\x00")
	var attrErr error
	attr := func(a int32) int {
		var v int32
		if err := cuErr(fmt.Sprintf("cuDeviceGetAttribute(%d)", a), drv.cuDeviceGetAttribute(&v, a, b.dev)); err != nil && attrErr == nil {
			attrErr = err
		}
		return int(v)
	}
	b.arch = attr(attrComputeMajor)*10 + attr(attrComputeMinor)
	// Programmatic dependent launch: sm_90 and a CUDA 12 driver;
	// GPTQTOOL_PDL=0 turns it off.
	b.pdl = b.arch >= 90 && drv.cuLaunchKernelEx != nil && os.Getenv("GPTQTOOL_PDL") != "0"
	// The fewest positions a split of paged attention takes where a
	// context is too short for eight splits of 128 (for comparisons).
	var err error
	if b.attnSplit, err = envInt("GPTQTOOL_ATTN_MINSPLIT", defaultAttnSplit, 1, pagedThreads, fmt.Sprintf("1-%d positions", pagedThreads)); err != nil {
		return nil, err
	}
	// Thread-block clusters: sm_90 and cuLaunchKernelEx;
	// GPTQTOOL_CLUSTER=0 turns them off (split products then reduce
	// through global memory).
	b.clusters = b.arch >= 90 && drv.cuLaunchKernelEx != nil && os.Getenv("GPTQTOOL_CLUSTER") != "0"
	b.inputOrder = os.Getenv("GPTQTOOL_INPUT_ORDER") != "0"
	// A symmetric weight (every zero 2^(bits-1)) uploads its fp16 scales
	// alone too, half the bytes of the (scale, zero) pairs, which the
	// kernels built with QG_SZ16 read instead: the mma.sync products of 1-8
	// rows (+1.1% at batch 1) and the warpgroup products of up to
	// defaultScalesWG tiles (docs/benchmarks.md). GPTQTOOL_SZ16=0 turns it
	// off; =1 keeps every warpgroup product on the pairs (the forty-fifth
	// session's default), =2 none.
	b.scalesOnly = os.Getenv("GPTQTOOL_SZ16") != "0"
	switch os.Getenv("GPTQTOOL_SZ16") {
	case "1":
		b.scalesWG = 0
	case "2":
		b.scalesWG = qmmaTiles[len(qmmaTiles)-1]
	default:
		b.scalesWG = defaultScalesWG
	}
	if b.normFuseRows, err = envInt("GPTQTOOL_NORM_FUSE", defaultNormFuse, 0, 8*qmmaTiles[0], fmt.Sprintf("the most rows, 0-%d", 8*qmmaTiles[0])); err != nil {
		return nil, err
	}
	// The q/k/v product's epilogue rotates and stores in the KV cache
	// (runtime.RoPEFuser); GPTQTOOL_ROPE_FUSE=0 runs rope_store after it.
	b.ropeFuse = os.Getenv("GPTQTOOL_ROPE_FUSE") != "0"
	// A prompt's rows scored on the device (runtime.RowScorer), the
	// default since the 61st session (2.1x the host path's prompt tokens a
	// second, docs/benchmarks.md "Serving"); GPTQTOOL_ROW_SCORE=0 brings
	// every row's logits to the host instead.
	rs, err := envInt("GPTQTOOL_ROW_SCORE", 1, 0, 1, "0 or 1")
	if err != nil {
		return nil, err
	}
	b.rowScore = rs == 1
	// A decode step's MLP as one kernel (runtime.MLPFuser) for up to
	// GPTQTOOL_FUSED_MLP rows (default 0: off), its rings of
	// GPTQTOOL_FUSED_MLP_QST chunks a warp (4 or 8).
	if b.mlpRows, err = envInt("GPTQTOOL_FUSED_MLP", 0, 0, fmlpRows, fmt.Sprintf("the most rows, 0-%d", fmlpRows)); err != nil {
		return nil, err
	}
	if b.mlpQD, err = envInt("GPTQTOOL_FUSED_MLP_QST", 8, 4, 8, "4 or 8 chunks"); err != nil {
		return nil, err
	}
	if b.mlpQD != 4 && b.mlpQD != 8 {
		return nil, fmt.Errorf("cuda: GPTQTOOL_FUSED_MLP_QST=%d: want 4 or 8 chunks", b.mlpQD)
	}
	// GPTQTOOL_FUSED_MLP_PROBE, bits of: 1 leaves out the fused MLP's sums
	// across its blocks, 2 its down work but the weights' stream, 4 its
	// gate/up work but the weights' stream, 8 the stream but the work (4-bit
	// f16 and bf16 rows only): wrong results, for measuring what each part
	// costs.
	if b.mlpProbe, err = envInt("GPTQTOOL_FUSED_MLP_PROBE", 0, 0, 15, "0-15"); err != nil {
		return nil, err
	}
	// GPTQTOOL_FUSED_MLP_LL=1: the fused MLP ends with shares that carry
	// the launch's tag (kernels/mlp.cu fmlp_end_ll) instead of flags.
	ll, err := envInt("GPTQTOOL_FUSED_MLP_LL", 0, 0, 1, "0 or 1")
	if err != nil {
		return nil, err
	}
	b.mlpLL = ll == 1
	b.xasync = 1
	if os.Getenv("GPTQTOOL_XASYNC") == "0" {
		b.xasync = 0
	}
	if err := b.traceSetup(); err != nil {
		return nil, err
	}
	// GPTQTOOL_DOWN_NORM=0|1|2: a decode step's down product at the plain
	// wide kernels' rows leaves its splits' sums for the next norm to add
	// up (MatMulAddNormTo), in one block a row (1) or a cluster of 8 (2,
	// the default: +1.7% at 4 bits and +1.0% at 8 at batch 1, against +0.7%
	// and +0.5% for 1, on one machine in the thirtieth session, and 0.7%
	// and 0.45% more once its blocks pushed their sums), or not (0).
	if b.downNorm, err = envInt("GPTQTOOL_DOWN_NORM", 2, 0, 2, "0, 1 or 2"); err != nil {
		return nil, err
	}
	// The norms' threads a row (one block a row): GPTQTOOL_NORM_THREADS for
	// every norm, else normThreadsFor's.
	if b.normThreads, err = envInt("GPTQTOOL_NORM_THREADS", 0, 32, 512, "32-512 threads, a multiple of 32"); err != nil {
		return nil, err
	}
	if b.normThreads%32 != 0 {
		return nil, fmt.Errorf("cuda: GPTQTOOL_NORM_THREADS=%d: want a multiple of 32", b.normThreads)
	}
	b.gemv = os.Getenv("GPTQTOOL_GEMV") != "0"
	b.headWG = os.Getenv("GPTQTOOL_HEAD_WG") != "0"
	// Weights stream through L2 as its first lines to evict, so that what
	// a step reads again stays; GPTQTOOL_EVICT_FIRST=0 streams them under
	// the evict_normal policy (the same instructions).
	b.evictFirst = os.Getenv("GPTQTOOL_EVICT_FIRST") != "0"
	// (The clusters' scheduling policy is the driver's: asking for spread
	// or load balancing, GPTQTOOL_CLUSTER_POLICY=1|2, measured even and
	// 0.5% slower, docs/benchmarks.md, and the switch is removed.)
	// GPTQTOOL_CLUSTER_MAXS=N: a quantized product split in more than N
	// blocks a column slab adds up its sums through global memory (a
	// counter and a last block) rather than in a cluster, whose blocks the
	// hardware places within one GPC (for measuring one against the other).
	if b.clusterMaxS, err = envInt("GPTQTOOL_CLUSTER_MAXS", 0, 1, maxClusterBlocks, fmt.Sprintf("1-%d blocks", maxClusterBlocks)); err != nil {
		return nil, err
	}
	b.qmmaTMA = os.Getenv("GPTQTOOL_QMMA_TMA") != "0"
	if b.qmmaWG, err = parseQmmaWG(os.Getenv("GPTQTOOL_QMMA_WG")); err != nil {
		return nil, err
	}
	b.qmmaFit = os.Getenv("GPTQTOOL_QMMA_FIT") != "0"
	// Attention whose rows the product combines (PagedAttentionMatMul) lets
	// it launch as soon as its own wait returns, so that the product's
	// weights stream during attention: on the H200 (7B shape, 4-bit g128
	// act order, batch 1) 459.3 tok/s against 453.7 launching it once
	// attention's loop is done and 441.0 with attention combining its rows
	// itself, in one call (docs/benchmarks.md, the fourteenth session; the
	// thirty-sixth measured the latter 5.3% slower again). Their switch,
	// GPTQTOOL_ATTN_DEFER=1|0, is removed (decode.go apLate).
	b.apDefer = true
	// GPTQTOOL_PROBE_SKIP=PREFIX[,PREFIX...]: a probe for measurements, not
	// a product (its outputs are wrong): kernels whose names start with one
	// of the prefixes are not launched, so that a decode step's time without
	// them (e.g. paged_attn_, add_rmsnorm_, rmsnorm_parts_) bounds what
	// fusing them away could gain.
	if b.probeSkip = prefixList(os.Getenv("GPTQTOOL_PROBE_SKIP")); len(b.probeSkip) > 0 {
		fmt.Fprintf(os.Stderr, "cuda: GPTQTOOL_PROBE_SKIP: kernels starting with %s are not launched, outputs are wrong\n", strings.Join(b.probeSkip, ", "))
	}
	// GPTQTOOL_OPROJ_ADD=N: decode steps of 2 to N rows add o_proj's
	// product into the residual stream in its epilogue, and the norm after
	// it is a plain one (ResidualProjects; 0: none).
	if b.oprojAdd, err = envInt("GPTQTOOL_OPROJ_ADD", defaultOprojAdd, 0, 64, "0-64 rows"); err != nil {
		return nil, err
	}
	if b.attnWaves, err = envInt("GPTQTOOL_ATTN_WAVES", defaultAttnWaves, 1, 16, "1-16 waves"); err != nil {
		return nil, err
	}
	if b.attnTC, err = envInt("GPTQTOOL_ATTN_TC", defaultAttnTC, 0, 1<<20, "the fewest rows, 0 for never"); err != nil {
		return nil, err
	}
	b.attnTCCap = os.Getenv("GPTQTOOL_ATTN_TC_CAP") != "0"
	b.attnFit = os.Getenv("GPTQTOOL_ATTN_FIT") != "0"
	if b.attnTCStages, err = envInt("GPTQTOOL_ATTN_TC_STAGES", 0, 2, 4, "2-4 stages"); err != nil {
		return nil, err
	}
	if b.attnPrefetch, err = envInt("GPTQTOOL_ATTN_PREFETCH", defaultAttnPrefetch, 0, 1<<20, "the most rows, 0 for none"); err != nil {
		return nil, err
	}
	if b.qfill, err = parseFill(os.Getenv("GPTQTOOL_QMMA_FILL")); err != nil {
		return nil, err
	}
	if b.extraDefines, err = parseKernelDefines(os.Getenv("GPTQTOOL_KERNEL_DEFINES")); err != nil {
		return nil, err
	}
	// GPTQTOOL_QMMA_QST=N or N1,N: the qmma kernels' rings hold N chunks a
	// warp (N1 those of one tile) instead of the defaults (qstDepth), their
	// shared memory sized to match (for measuring one against the other).
	if b.qst, err = parseQST(os.Getenv("GPTQTOOL_QMMA_QST")); err != nil {
		return nil, err
	}
	b.extraDefines = append(b.extraDefines, qstDefines(b.qst)...)
	// GPTQTOOL_QMMA_WIDE=N: GLU products of N to 8 rows run on the wide
	// kernels (blocks of 14 warps, qmmaSplitWide); 0: none.
	if b.qmmaWide, err = envInt("GPTQTOOL_QMMA_WIDE", defaultQmmaWide, 0, 8*qmmaTiles[0], fmt.Sprintf("the fewest rows, 0-%d", 8*qmmaTiles[0])); err != nil {
		return nil, err
	}
	// GPTQTOOL_QMMA_PLAIN=N: plain products (no GLU, RoPE, norm or
	// attention parts) of N to GPTQTOOL_QMMA_PLAIN_MAX rows (both 1 unless
	// set: defaultQmmaPlain) run on the plain wide kernels (blocks of 16
	// warps, one an SM, qmmaSplitPlain); 0: none. A wide GLU product of
	// those rows lets the product after it (down_proj's) launch as its
	// loops end (lateAfterWide).
	if b.qmmaPlain, err = envInt("GPTQTOOL_QMMA_PLAIN", defaultQmmaPlain, 0, 8*qmmaTiles[0], fmt.Sprintf("the fewest rows, 0-%d", 8*qmmaTiles[0])); err != nil {
		return nil, err
	}
	if b.qmmaPlainMax, err = envInt("GPTQTOOL_QMMA_PLAIN_MAX", defaultQmmaPlainMax, 1, 8*qmmaTiles[0], fmt.Sprintf("the most rows, 1-%d", 8*qmmaTiles[0])); err != nil {
		return nil, err
	}
	// GPTQTOOL_QMMA_MAXS=N caps the K splits of the qmma products but
	// those of attention's parts (clusters of N blocks at most), of any
	// rows, instead of maxSplits' default (for measuring; 8: no cap).
	if b.qmmaMaxS, err = envInt("GPTQTOOL_QMMA_MAXS", 0, 1, maxClusterBlocks, fmt.Sprintf("1-%d splits", maxClusterBlocks)); err != nil {
		return nil, err
	}
	// GPTQTOOL_QMMA_S=KxN:S,... splits the products by weights of K inputs
	// and N outputs in S blocks (for measuring one product's splits).
	if b.qmmaS, err = parseSplits(os.Getenv("GPTQTOOL_QMMA_S")); err != nil {
		return nil, err
	}
	// GPTQTOOL_QMMA_PLAIN_CLUSTER=1: their splits add up in clusters; 0,
	// the default, through global memory (a counter and a last block), so
	// that the hardware may place their blocks on any SM: at one block an
	// SM an H200 holds 15 clusters of 8 at once, and the 7B down product's
	// 16th then waits for one of them to end (at 8-bit batch 1, in
	// clusters 328.7 tok/s against 361.9 through global memory; the
	// twenty-seventh session).
	plainCl, err := envInt("GPTQTOOL_QMMA_PLAIN_CLUSTER", 0, 0, 1, "0 (global memory) or 1 (clusters)")
	if err != nil {
		return nil, err
	}
	b.plainGlobal = plainCl == 0
	// GPTQTOOL_QMMA_WIDE_SPLIT=N caps a wide GLU product's K splits (1: one
	// block a slab, no sums to add up across blocks) (for measuring).
	if b.wideSplit, err = envInt("GPTQTOOL_QMMA_WIDE_SPLIT", 0, 1, maxClusterBlocks, fmt.Sprintf("1-%d splits", maxClusterBlocks)); err != nil {
		return nil, err
	}
	// GPTQTOOL_QGLU_PIECES=N: GLU products of 1-N rows, at both widths, on
	// the pieces kernel (qglu.cu) where the wide kernels would run them
	// (0: none); unset, up to four rows at 8 bits and two at 4 (qgluRows).
	if b.qgluPieces, err = envInt("GPTQTOOL_QGLU_PIECES", -1, 0, qgluMaxRows, fmt.Sprintf("0-%d rows", qgluMaxRows)); err != nil {
		return nil, err
	}
	// GPTQTOOL_QGLU_BLOCKS=N caps the pieces kernel's grid; GPTQTOOL_QGLU_WARPS
	// (16 or 32) and GPTQTOOL_QGLU_DEPTH (2, 4 or 8 chunks) set its blocks'
	// shape (qgluShape), GPTQTOOL_QGLU_SMEM=N the shared memory they take
	// beyond their need (qgluShared; for measuring).
	if b.qgluBlocks, err = envInt("GPTQTOOL_QGLU_BLOCKS", 0, 1, 1<<16, "1-65536 blocks"); err != nil {
		return nil, err
	}
	if b.qgluW, err = envInt("GPTQTOOL_QGLU_WARPS", 0, 16, 32, "16 or 32 warps"); err != nil {
		return nil, err
	}
	if b.qgluD, err = envInt("GPTQTOOL_QGLU_DEPTH", 0, 2, 8, "2, 4 or 8 chunks"); err != nil {
		return nil, err
	}
	if b.qgluPad, err = envInt("GPTQTOOL_QGLU_SMEM", -1, 0, 1<<18, "0-262144 bytes"); err != nil {
		return nil, err
	}
	// (Running down in the pieces kernel's launch, after gate/up,
	// GPTQTOOL_QGLU_JOIN=N, measured slower on the H200, 7B shape, g128 act
	// order, the fifty-fourth session: 512.6 / 361.7 tok/s at 4 / 8 bits
	// against 565.8 / 401.2 at one row; the switch and its launch are
	// removed, and so are qglu.cu's _j kernels (506a783 is the last commit with them).)
	// GPTQTOOL_QGLU_NORM=N: decode steps of up to N rows have the pieces
	// kernel normalize gate/up's input as it stages it, o_proj adding into
	// the residual stream, and no norm kernel between (runtime.GLUNormer;
	// 0, the default: none). On the H200 (8 bits, the fifty-second
	// session) 392.7 / 720.9 tok/s at batch 1 / 2 against the default's
	// 400.3 / 729.7: the pieces kernel's blocks, which take a whole SM,
	// start only as o_proj's leave, and wait after it what the add + norm
	// kernel otherwise covers.
	if b.qgluNorm, err = envInt("GPTQTOOL_QGLU_NORM", 0, 0, qgluMaxRows, fmt.Sprintf("0-%d rows", qgluMaxRows)); err != nil {
		return nil, err
	}
	if err := qgluShapeErr(b.qgluW, b.qgluD); err != nil {
		return nil, fmt.Errorf("cuda: GPTQTOOL_QGLU_WARPS=%d, GPTQTOOL_QGLU_DEPTH=%d: %w", b.qgluW, b.qgluD, err)
	}
	// Ring depths of their own, for measuring: GPTQTOOL_QMMA_WIDE_QST=D the
	// wide kernels' (QSTG), and GPTQTOOL_QMMA_AP_QST, GPTQTOOL_QMMA_ROPE_QST
	// the one-tile kernels' of o_proj at 1-4 rows (the _a kernels, which
	// read attention's parts) and of q/k/v (the _r kernels, RoPE in their
	// epilogue; at 8 a block of 8 splits has its whole slice in flight
	// before it waits).
	for _, d := range []struct {
		env, def string
		v        *int
	}{{"GPTQTOOL_QMMA_WIDE_QST", "QSTG", &b.qstWide}, {"GPTQTOOL_QMMA_AP_QST", "QSTA", &b.qstAP}, {"GPTQTOOL_QMMA_ROPE_QST", "QSTR", &b.qstRoPE}} {
		if *d.v, err = envInt(d.env, 0, 2, 16, "2, 4, 8 or 16 chunks"); err != nil {
			return nil, err
		}
		if *d.v != 0 && !qstDepthOK(*d.v) {
			return nil, fmt.Errorf("cuda: %s=%d: want 2, 4, 8 or 16 chunks", d.env, *d.v)
		}
		if *d.v != 0 {
			b.extraDefines = append(b.extraDefines, "-D"+d.def+"="+strconv.Itoa(*d.v))
		}
	}
	// GPTQTOOL_MOE_SLOTS=N: a mixture-of-experts layer routes on the device
	// (runtime.ExpertRouter) for at most N slots (rows times experts a row;
	// 0: never, the host routes every step); by default for as many as
	// moe.cu takes (RoutesExperts).
	if b.moeSlots, err = envInt("GPTQTOOL_MOE_SLOTS", -1, -1, moeMaxSlots, fmt.Sprintf("the most slots, 0-%d (-1: the default)", moeMaxSlots)); err != nil {
		return nil, err
	}
	// GPTQTOOL_MOE_RUNS: how ExpertMatMul multiplies: 0, each slot by its
	// expert's weight (qgemv.cu's _e kernels); 2, each run of up to eight
	// slots of one expert (the _x kernels); 1 (the default), by runs for
	// more slots than experts, else by slots (moeRunsFrom).
	if b.moeRuns, err = envInt("GPTQTOOL_MOE_RUNS", 1, 0, 2, "0, 1 or 2"); err != nil {
		return nil, err
	}
	// GPTQTOOL_QMMA_PUSH=N: clustered products of one tile and 8 warps of
	// at most N rows add up their splits by pushing each block's sums into
	// the shared memory of the block that owns them (qgemv.cu QF_PUSH); 0:
	// none (defaultQmmaPush).
	if b.qmmaPush, err = envInt("GPTQTOOL_QMMA_PUSH", defaultQmmaPush, 0, 8*qmmaTiles[0], fmt.Sprintf("the most rows, 0-%d", 8*qmmaTiles[0])); err != nil {
		return nil, err
	}
	// Draws whose every row is greedy without penalties run on
	// argmax_rows (kernels/sample.cu: 32 blocks a row) instead of
	// sample_rows' one block a row. On an H200 (7B shape, 4-bit g128 act
	// order) batch 1 measured 509.3 and 509.6 tok/s against 508.3 and
	// 508.2, batch 8 3,485.8 and 3,484.7 against 3,472.8 and 3,471.4
	// (docs/benchmarks.md, the twentieth session). GPTQTOOL_ARGMAX=0:
	// sample_rows for every draw.
	b.argmax = os.Getenv("GPTQTOOL_ARGMAX") != "0"
	// Decode steps whose every row draws greedily without penalties record
	// the draw in their graph (runtime.GreedyDrawer): it follows the head
	// with PDL, and the tokens go straight to mapped host memory.
	// GPTQTOOL_GRAPH_DRAW=0: such draws are launched after the graph and
	// their tokens copied back (SampleTokensTo).
	b.graphDraw = os.Getenv("GPTQTOOL_GRAPH_DRAW") != "0"
	b.greedy.mapped = true
	// (Sizing the quantized products' shared memory so that an SM holds
	// no more than its even share of their blocks measured slower for
	// every product, for the one after a wide product, for o_proj and for
	// q/k/v, docs/benchmarks.md; those switches, GPTQTOOL_QMMA_SPREAD,
	// _WIDE_SPREAD, _AP_SPREAD and _ROPE_SPREAD, are removed.)
	b.sms = attr(attrMultiprocessorCount)
	b.shared = attr(attrMaxSharedPerBlockOptin)
	b.smemSM = attr(attrMaxSharedPerSM)
	// GPTQTOOL_QMMA_WAVE=0: quantized products may split into more blocks
	// than one wave (for comparisons).
	b.waveCap = os.Getenv("GPTQTOOL_QMMA_WAVE") != "0"
	if attrErr != nil {
		return nil, attrErr
	}
	var dv int32
	drv.cuDriverGetVersion(&dv)
	b.driver = int(dv)
	if b.arch < 80 {
		return nil, fmt.Errorf("%w: %s is sm_%d; the kernels need sm_80 or newer (bf16 tensor cores)", ErrNotAvailable, b.name, b.arch)
	}
	if err := cuErr("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&b.ctx, b.dev)); err != nil {
		return nil, err
	}
	// The launch arguments stay pinned until closeLocked, or, for a
	// backend dropped without Close, until it is collected: a Pinner
	// collected while it pins panics.
	b.pin = new(goruntime.Pinner)
	b.pin.Pin(b.args)
	goruntime.AddCleanup(b, func(p *goruntime.Pinner) { p.Unpin() }, b.pin)
	fail := func(err error) (*Backend, error) {
		b.closeLocked()
		return nil, err
	}
	if err := cuErr("cuCtxSetCurrent", drv.cuCtxSetCurrent(b.ctx)); err != nil {
		return fail(err)
	}
	const nonBlocking = 1
	if err := cuErr("cuStreamCreate", drv.cuStreamCreate(&b.stream, nonBlocking)); err != nil {
		return fail(err)
	}
	if err := loadNVRTC(); err != nil {
		return fail(err)
	}
	if err := loadCUBLAS(); err != nil {
		return fail(err)
	}
	// cuSOLVER is first used by the GPTQ solve; load it now so that a missing
	// library is found before any work (and --device auto falls back).
	if err := loadCUSOLVER(); err != nil {
		return fail(err)
	}
	if err := blasErr("cublasCreate", bl.cublasCreate(&b.blas)); err != nil {
		return fail(err)
	}
	if err := blasErr("cublasSetStream", bl.cublasSetStream(b.blas, b.stream)); err != nil {
		return fail(err)
	}
	// Our own workspace, so that cuBLAS memory is accounted for and never
	// allocated behind the allocator's back.
	const wsBytes = 32 << 20
	ws, _, err := b.alloc.alloc(wsBytes)
	if err != nil {
		return fail(err)
	}
	b.blasWS = ws
	if err := blasErr("cublasSetWorkspace", bl.cublasSetWorkspace(b.blas, ws, wsBytes)); err != nil {
		return fail(err)
	}
	return b, nil
}

// SharedMemory is the most dynamic shared memory a block may use (opt-in).
func (b *Backend) SharedMemory() int { return b.shared }

// SMs is the device's multiprocessor count.
func (b *Backend) SMs() int { return b.sms }

// Name implements runtime.Backend.
func (b *Backend) Name() string { return fmt.Sprintf("cuda(%s, sm_%d)", b.name, b.arch) }

// Device describes the device: name, architecture, multiprocessors, driver.
func (b *Backend) Device() string {
	return fmt.Sprintf("%s, sm_%d, %d SMs, driver %d.%d, NVRTC %s", b.name, b.arch, b.sms, b.driver/1000, b.driver%1000/10, nvVer)
}

// enter makes the context current on a locked OS thread; exit undoes it.
func (b *Backend) enter() {
	b.mu.Lock()
	goruntime.LockOSThread()
	if b.closed {
		goruntime.UnlockOSThread()
		b.mu.Unlock()
		panic("cuda: backend used after Close")
	}
	if r := drv.cuCtxSetCurrent(b.ctx); r != 0 {
		b.fail(cuErr("cuCtxSetCurrent", r))
	}
}

func (b *Backend) exit() {
	goruntime.UnlockOSThread()
	b.mu.Unlock()
}

// fail records the first error of an op.
func (b *Backend) fail(err error) {
	if err != nil && b.err == nil {
		b.err = err
	}
}

// Close releases every resource; the backend is unusable afterwards.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	b.closeLocked()
}

func (b *Backend) closeLocked() {
	if b.closed {
		return
	}
	b.closed = true
	defer b.pin.Unpin()
	if b.ctx == 0 {
		return
	}
	drv.cuCtxSetCurrent(b.ctx)
	if b.stream != 0 {
		drv.cuStreamSynchronize(b.stream)
	}
	b.ahead.free()
	b.greedy.free()
	for _, ev := range slices.Concat(b.gt.start[:], b.gt.end[:]) {
		if ev != 0 {
			drv.cuEventDestroy(ev)
		}
	}
	if b.blas != 0 {
		bl.cublasDestroy(b.blas)
	}
	if b.solver != 0 {
		bl.cusolverDnDestroy(b.solver)
	}
	if b.blasWS != 0 {
		b.alloc.release(b.blasWS, class(32<<20))
	}
	for _, buf := range append([]*Buffer{b.ids, b.nll, b.tmp, b.deq, b.xperm, b.xnorm, b.qpart, b.qcount, b.lcount, b.mlpPart, b.mlpTag, b.glu, b.apart, b.acount, b.srules, b.swork, b.stoks, b.sargp, b.sargc, b.sgrp, b.epart, b.ecount}, append(slices.Collect(maps.Values(b.etabs)), b.retired...)...) {
		if buf != nil {
			b.alloc.release(buf.Ptr, buf.cls)
		}
	}
	for _, t := range b.rope {
		b.alloc.release(t.buf.Ptr, t.buf.cls)
	}
	b.alloc.trim()
	for _, m := range b.mods {
		drv.cuModuleUnload(m)
	}
	if b.stream != 0 {
		drv.cuStreamDestroy(b.stream)
	}
	drv.cuDevicePrimaryCtxRelease(b.dev)
}

// MemStats is the allocator's accounting and the device's view of memory.
type MemStats struct {
	InUse, PeakInUse       int64 // bytes held by tensors and buffers
	Reserved, PeakReserved int64 // bytes obtained from the device
	Free, Total            uint64
	// PeakDeviceUsed is the most device memory seen in use (total - free)
	// when the allocator grew: with one process on the device, its whole
	// footprint (context and libraries included).
	PeakDeviceUsed int64
}

// MemStats reports memory use.
func (b *Backend) MemStats() MemStats {
	b.enter()
	defer b.exit()
	s := MemStats{InUse: b.alloc.inUse, PeakInUse: b.alloc.peakUse, Reserved: b.alloc.reserved, PeakReserved: b.alloc.peakRes, PeakDeviceUsed: b.alloc.peakDevice}
	// On failure Free and Total stay 0, which Memory reports as unknown.
	b.fail(cuErr("cuMemGetInfo", drv.cuMemGetInfo(&s.Free, &s.Total)))
	return s
}

// ResetPeak sets the peaks to the current use.
func (b *Backend) ResetPeak() {
	b.enter()
	defer b.exit()
	b.alloc.peakUse, b.alloc.peakRes = b.alloc.inUse, b.alloc.reserved
}

// Trim returns cached device memory to the device.
func (b *Backend) Trim() {
	b.enter()
	defer b.exit()
	drv.cuStreamSynchronize(b.stream)
	b.alloc.trim()
}

// Tensor is a device tensor. Views share their parent's memory and own none.
type Tensor struct {
	dt    runtime.DType
	shape []int
	n     int
	ptr   uint64
	cls   uint64 // allocation class; 0 for a view
	freed bool
	q     *quant // a quantized weight (LoadQuant); its memory is qw
	// nat is, for a norm weight prepared by FuseNorm (held here in its
	// product's sequential input order), the weight as the model gave it;
	// normq the quantized weight it was prepared for.
	nat   *Tensor
	normq *quant
	mlp   *fusedMLP // a fused MLP (FuseMLP); its memory is its down codes
}

// DType implements runtime.Tensor.
func (t *Tensor) DType() runtime.DType { return t.dt }

// Shape implements runtime.Tensor.
func (t *Tensor) Shape() []int { return t.shape }

// Len implements runtime.Tensor.
func (t *Tensor) Len() int { return t.n }

// Bytes is the size of the tensor's data.
func (t *Tensor) Bytes() int64 { return int64(t.n) * int64(t.dt.Size()) }

func (b *Backend) tensor(t runtime.Tensor) *Tensor {
	ct, ok := t.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("cuda: tensor of type %T is not a cuda tensor", t))
	}
	if ct.freed {
		panic(fmt.Sprintf("cuda: tensor %v used after Free", ct.shape))
	}
	return ct
}

// Ptr returns the device address of t's first element.
func (b *Backend) Ptr(t runtime.Tensor) uint64 { return b.tensor(t).ptr }

// DTypes implements runtime.Backend.
func (b *Backend) DTypes() []runtime.DType {
	return []runtime.DType{runtime.F32, runtime.F16, runtime.BF16}
}

// Alloc implements runtime.Backend.
func (b *Backend) Alloc(dt runtime.DType, shape ...int) (runtime.Tensor, error) {
	switch dt {
	case runtime.F32, runtime.F16, runtime.BF16, runtime.I32:
	default:
		return nil, fmt.Errorf("cuda: alloc %v %v: unsupported dtype", dt, shape)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("cuda: alloc %v: negative dimension", shape)
		}
		n *= d
	}
	b.enter()
	defer b.exit()
	if b.capturing {
		return nil, fmt.Errorf("cuda: alloc %v %v while recording a graph", dt, shape)
	}
	bytes := int64(n) * int64(dt.Size())
	p, c, err := b.alloc.alloc(bytes)
	if err != nil {
		return nil, fmt.Errorf("cuda: alloc %v %v (%s): %w", dt, shape, FormatBytes(bytes), err)
	}
	if err := cuErr("cuMemsetD8Async", drv.cuMemsetD8Async(p, 0, uint64(bytes), b.stream)); err != nil {
		b.alloc.release(p, c)
		return nil, err
	}
	return &Tensor{dt: dt, shape: append([]int(nil), shape...), n: n, ptr: p, cls: c}, nil
}

// Free implements runtime.Backend; freeing a view does nothing.
func (b *Backend) Free(t runtime.Tensor) {
	if t == nil {
		return
	}
	ct, ok := t.(*Tensor)
	if !ok || ct == nil || ct.cls == 0 {
		return
	}
	b.enter()
	defer b.exit()
	if ct.freed {
		return
	}
	ct.freed = true
	if ct.q != nil {
		b.releaseQuant(ct)
		return
	}
	if ct.mlp != nil {
		b.releaseMLP(ct)
		return
	}
	// The memory may still be read by queued work; the allocator hands it
	// out again only to later work on the same stream, which runs after.
	b.alloc.release(ct.ptr, ct.cls)
}

// View implements runtime.Backend.
func (b *Backend) View(t runtime.Tensor, row0, rows int) runtime.Tensor {
	ct := b.tensor(t)
	if len(ct.shape) == 0 || row0 < 0 || rows < 0 || row0+rows > ct.shape[0] {
		panic(fmt.Sprintf("cuda: view rows [%d,%d) of shape %v", row0, row0+rows, ct.shape))
	}
	stride := 1
	for _, d := range ct.shape[1:] {
		stride *= d
	}
	shape := append([]int{rows}, ct.shape[1:]...)
	return &Tensor{dt: ct.dt, shape: shape, n: rows * stride, ptr: ct.ptr + uint64(row0*stride*ct.dt.Size())}
}

// Reshape implements runtime.Backend: a view (cls 0) of the same memory.
func (b *Backend) Reshape(t runtime.Tensor, shape ...int) runtime.Tensor {
	ct := b.tensor(t)
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != ct.n || ct.q != nil {
		panic(fmt.Sprintf("cuda: reshape %v to %v", ct.shape, shape))
	}
	return &Tensor{dt: ct.dt, shape: slices.Clone(shape), n: n, ptr: ct.ptr}
}

// Sync implements runtime.Backend.
func (b *Backend) Sync() error {
	b.enter()
	defer b.exit()
	return b.syncLocked()
}

func (b *Backend) syncLocked() error {
	if b.err != nil {
		return fmt.Errorf("cuda: the backend is in error since an earlier operation: %w", b.err)
	}
	b.fail(cuErr("cuStreamSynchronize", drv.cuStreamSynchronize(b.stream)))
	return b.err
}

// Err returns the first error an op recorded, without waiting.
func (b *Backend) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Buffer is raw device memory for callers that manage their own layouts
// (the GPTQ solver's float64 matrices); it counts in MemStats.
type Buffer struct {
	Ptr  uint64
	Size int64
	cls  uint64
}

// AllocBuffer returns n bytes of zeroed device memory.
func (b *Backend) AllocBuffer(n int64) (*Buffer, error) {
	b.enter()
	defer b.exit()
	return b.allocBufferLocked(n)
}

func (b *Backend) allocBufferLocked(n int64) (*Buffer, error) {
	if b.capturing {
		return nil, fmt.Errorf("cuda: buffer of %s allocated while recording a graph", FormatBytes(n))
	}
	p, c, err := b.alloc.alloc(n)
	if err != nil {
		return nil, fmt.Errorf("cuda: buffer of %s: %w", FormatBytes(n), err)
	}
	if err := cuErr("cuMemsetD8Async", drv.cuMemsetD8Async(p, 0, uint64(n), b.stream)); err != nil {
		b.alloc.release(p, c)
		return nil, err
	}
	return &Buffer{Ptr: p, Size: n, cls: c}, nil
}

// FreeBuffer releases a Buffer; nil is a no-op.
func (b *Backend) FreeBuffer(buf *Buffer) {
	if buf == nil || buf.cls == 0 {
		return
	}
	b.enter()
	defer b.exit()
	b.freeBufferLocked(buf)
}

// freeBufferLocked is FreeBuffer within an entered call; nil, or a buffer
// already released, is a no-op.
func (b *Backend) freeBufferLocked(buf *Buffer) {
	if buf == nil || buf.cls == 0 {
		return
	}
	b.alloc.release(buf.Ptr, buf.cls)
	buf.cls = 0
}

// scratch returns *slot grown to at least n bytes.
// While graphs are alive the old buffer is kept (a graph may use it) until
// the last graph is freed.
func (b *Backend) scratch(slot **Buffer, n int64) (*Buffer, error) { return b.grow(slot, n, false) }

// transient is scratch for an op that waits for its own result (nothing
// queued or recorded uses it afterwards): outgrown buffers are released at
// once, never retired, and it grows at least twofold so that slowly growing
// requests (a penalty list a token longer each step) reallocate rarely.
func (b *Backend) transient(slot **Buffer, n int64) (*Buffer, error) { return b.grow(slot, n, true) }

func (b *Backend) grow(slot **Buffer, n int64, transient bool) (*Buffer, error) {
	if *slot != nil && (*slot).Size >= n {
		return *slot, nil
	}
	if b.capturing {
		return nil, fmt.Errorf("cuda: scratch of %s needed while recording a graph (run the ops once before capturing)", FormatBytes(n))
	}
	if old := *slot; old != nil {
		if transient {
			n = max(n, 2*old.Size)
		}
		if b.graphs > 0 && !transient {
			b.retired = append(b.retired, old)
		} else {
			b.alloc.release(old.Ptr, old.cls)
		}
		*slot = nil
	}
	buf, err := b.allocBufferLocked(n)
	if err != nil {
		return nil, err
	}
	*slot = buf
	return buf, nil
}

// counters returns the address of at least n u32 counters in *slot for a
// kernel whose last block of a group counts the others in (split-K, split
// attention): new memory is zeroed and the kernels leave it at zero, so the
// buffer only ever grows.
func (b *Backend) counters(slot **Buffer, n int) (uint64, error) {
	buf, err := b.scratch(slot, int64(4*max(n, 1024)))
	if err != nil {
		return 0, err
	}
	return buf.Ptr, nil
}

// Memset zeroes n bytes at p.
func (b *Backend) Memset(p uint64, n int64) error {
	b.enter()
	defer b.exit()
	return cuErr("cuMemsetD8Async", drv.cuMemsetD8Async(p, 0, uint64(n), b.stream))
}

// CopyToDevice copies host bytes to p (in stream order).
func (b *Backend) CopyToDevice(p uint64, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	b.enter()
	defer b.exit()
	return b.htod(p, src)
}

func (b *Backend) htod(p uint64, src []byte) error {
	return cuErr("cuMemcpyHtoDAsync", drv.cuMemcpyHtoDAsync(p, unsafe.Pointer(&src[0]), uint64(len(src)), b.stream))
}

// CopyToHost waits for queued work and copies device bytes at p to dst.
func (b *Backend) CopyToHost(dst []byte, p uint64) error {
	if len(dst) == 0 {
		return nil
	}
	b.enter()
	defer b.exit()
	return b.dtoh(dst, p)
}

func (b *Backend) dtoh(dst []byte, p uint64) error {
	if err := cuErr("cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), p, uint64(len(dst)), b.stream)); err != nil {
		return err
	}
	return b.syncLocked()
}

// CopyDevice copies n bytes between device addresses (in stream order).
func (b *Backend) CopyDevice(dst, src uint64, n int64) error {
	b.enter()
	defer b.exit()
	return cuErr("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync(dst, src, uint64(n), b.stream))
}

// function returns a kernel of package kernels, loading the module that
// holds it (kernels.ModuleOf: its source file, or the part of the file
// that holds it) on first use: compiled then, or by a compile Prepare
// started.
func (b *Backend) function(src, name string) (*function, error) {
	key := fnKey{src, name}
	if f := b.fns[key]; f != nil {
		return f, nil
	}
	m := kernels.ModuleOf(src, name)
	mod, ok := b.mods[m.Key()]
	if !ok {
		cubin, err := b.cubin(m)
		if err != nil {
			return nil, moduleError(err, m, name)
		}
		if err := cuErr("cuModuleLoadData("+m.Key()+")", drv.cuModuleLoadData(&mod, unsafe.Pointer(&cubin[0]))); err != nil {
			return nil, err
		}
		b.mods[m.Key()] = mod
		b.compiles.loaded(m)
	}
	var fn uintptr
	if err := cuErr("cuModuleGetFunction("+name+")", drv.cuModuleGetFunction(&fn, mod, kernels.Symbol(name))); err != nil {
		return nil, fmt.Errorf("%w (kernel %s in %s)", err, name, m.Key())
	}
	f := &function{fn: fn}
	b.fns[key] = f
	return f, nil
}

// qgluShape is the pieces kernel's block shape for a product of M rows at
// bits: 16 warps, each with 8 chunks in flight at one row and at 4 bits,
// and 4 from two rows at 8 (defaultQGLUShape), unless GPTQTOOL_QGLU_WARPS
// or GPTQTOOL_QGLU_DEPTH (SetQGLUShape) set others.
func (b *Backend) qgluShape(bits, M int) (warps, depth int) {
	warps, depth = defaultQGLUShape(bits, M)
	if b.qgluW > 0 {
		warps = b.qgluW
	}
	if b.qgluD > 0 {
		depth = b.qgluD
	}
	return warps, depth
}

// sharedFunction is function with the kernel's dynamic shared memory
// limit at least shared bytes: past 48 KiB a block (static included) a
// kernel must opt in, so the limit is raised whenever a launch needs more
// than the last one set.
func (b *Backend) sharedFunction(src, name string, shared int) (*function, error) {
	f, err := b.function(src, name)
	if err != nil {
		return nil, err
	}
	if shared > f.shared {
		if shared > b.shared {
			return nil, fmt.Errorf("cuda: kernel %s needs %d bytes of shared memory, the device allows %d", name, shared, b.shared)
		}
		if err := cuErr("cuFuncSetAttribute("+name+")", drv.cuFuncSetAttribute(f.fn, funcAttrMaxDynamicShared, int32(shared))); err != nil {
			return nil, err
		}
		f.shared = shared
	}
	return f, nil
}

// activeBlocks is how many blocks of kernel name, of threads threads with
// shared bytes of dynamic shared memory, an SM holds at once
// (cuOccupancyMaxActiveBlocksPerMultiprocessor; 0 where the driver cannot
// say).
func (b *Backend) activeBlocks(src, name string, threads, shared int) int {
	if drv.cuOccupancyMaxActiveBlocksPerMultiprocessor == nil {
		return 0
	}
	f, err := b.sharedFunction(src, name, shared)
	if err != nil {
		return 0
	}
	key := [2]int{threads, shared}
	if n, ok := f.resident[key]; ok {
		return n
	}
	var n int32
	if drv.cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, f.fn, int32(threads), uint64(shared)) != 0 {
		n = 0
	}
	if f.resident == nil {
		f.resident = map[[2]int]int{}
	}
	f.resident[key] = int(n)
	return int(n)
}

// activeClusters is how many clusters of clusterY blocks (along the grid's
// y) of kernel name, blocks of threads threads with shared bytes of
// dynamic shared memory, the device runs at once
// (cuOccupancyMaxActiveClusters): at most its SMs' slots for such blocks
// over clusterY, and fewer where a cluster must fit one GPC (on the H200
// 124 of the 132 SMs take clusters). 0 where the driver cannot say.
func (b *Backend) activeClusters(src, name string, threads, shared, clusterY int) int {
	if drv.cuOccupancyMaxActiveClusters == nil || clusterY < 2 {
		return 0
	}
	f, err := b.sharedFunction(src, name, shared)
	if err != nil {
		return 0
	}
	key := clusterShape{threads, shared, clusterY}
	if n, ok := f.clusters[key]; ok {
		return n
	}
	attr := [1]launchAttr{clusterAttr(clusterY)}
	cfg := launchConfig{gx: 1, gy: uint32(clusterY), gz: 1, bx: uint32(threads), by: 1, bz: 1, shared: uint32(shared),
		stream: b.stream, attrs: unsafe.Pointer(&attr[0]), numAttrs: 1}
	var n int32
	if drv.cuOccupancyMaxActiveClusters(&n, f.fn, unsafe.Pointer(&cfg)) != 0 {
		n = 0
	}
	if f.clusters == nil {
		f.clusters = map[clusterShape]int{}
	}
	f.clusters[key] = int(n)
	return int(n)
}

// clusterAttr is the launch attribute of clusters of clusterY blocks
// along the grid's y (1 × clusterY × 1).
func clusterAttr(clusterY int) launchAttr {
	a := launchAttr{id: launchAttrClusterDimension}
	binary.LittleEndian.PutUint32(a.val[0:], 1)
	binary.LittleEndian.PutUint32(a.val[4:], uint32(clusterY))
	binary.LittleEndian.PutUint32(a.val[8:], 1)
	return a
}

// Dim is a grid or block size.
type Dim struct{ X, Y, Z int }

// prefixList is a comma-separated list's non-empty entries, trimmed (an
// empty prefix would match every kernel name).
func prefixList(v string) []string {
	var l []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l = append(l, p)
		}
	}
	return l
}

// launch runs kernel name of source file src on the stream. Arguments are
// uint64 (device pointers), int32, uint32, int64, float32, float64 or (at
// most two) TensorMap, in the kernel's parameter order.
func (b *Backend) launch(src, name string, grid, block Dim, shared int, args ...any) error {
	return b.launchCluster(src, name, grid, block, shared, 0, args...)
}

// launchCluster is launch with the blocks of each clusterY rows of the
// grid's y dimension made one thread-block cluster (0: none; at most
// maxClusterBlocks).
func (b *Backend) launchCluster(src, name string, grid, block Dim, shared, clusterY int, args ...any) error {
	f, err := b.sharedFunction(src, name, shared)
	if err != nil {
		return err
	}
	if clusterY > maxClusterBlocks {
		return fmt.Errorf("cuda: kernel %s: clusters of %d blocks, at most %d", name, clusterY, maxClusterBlocks)
	}
	grid, block = dims(grid), dims(block)
	if grid.X == 0 || grid.Y == 0 || grid.Z == 0 {
		return nil // nothing to do
	}
	for _, p := range b.probeSkip {
		if strings.HasPrefix(name, p) {
			return nil
		}
	}
	f.launches++
	a := b.args
	if len(args) > len(a.vals) {
		panic(fmt.Sprintf("cuda: kernel %s: %d arguments", name, len(args)))
	}
	nt := 0 // tensor maps so far
	for i, arg := range args {
		var v uint64
		switch x := arg.(type) {
		case uint64:
			v = x
		case int32:
			v = uint64(uint32(x))
		case uint32:
			v = uint64(x)
		case int64:
			v = uint64(x)
		case float32:
			v = uint64(math.Float32bits(x))
		case float64:
			v = math.Float64bits(x)
		case TensorMap:
			if nt == len(a.tmap) {
				panic(fmt.Sprintf("cuda: kernel %s: more than %d tensor maps", name, len(a.tmap)))
			}
			a.tmap[nt] = x
			a.ptrs[i] = unsafe.Pointer(&a.tmap[nt])
			nt++
			continue
		default:
			panic(fmt.Sprintf("cuda: kernel %s: argument %d of type %T", name, i, arg))
		}
		a.vals[i] = v
		a.ptrs[i] = unsafe.Pointer(&a.vals[i])
	}
	var pp unsafe.Pointer
	if len(args) > 0 {
		pp = unsafe.Pointer(&a.ptrs[0])
	}
	pdl := b.pdl && pdlKernel(name)
	if pdl || clusterY > 1 {
		n := 0
		if pdl {
			a.attr[n] = launchAttr{id: launchAttrProgrammaticSerialization}
			a.attr[n].val[0] = 1
			n++
		}
		if clusterY > 1 {
			a.attr[n] = clusterAttr(clusterY)
			n++
		}
		a.cfg = launchConfig{gx: uint32(grid.X), gy: uint32(grid.Y), gz: uint32(grid.Z), bx: uint32(block.X), by: uint32(block.Y), bz: uint32(block.Z),
			shared: uint32(shared), stream: b.stream, attrs: unsafe.Pointer(&a.attr[0]), numAttrs: uint32(n)}
		return cuErr("cuLaunchKernelEx("+name+")", drv.cuLaunchKernelEx(unsafe.Pointer(&a.cfg), f.fn, pp, nil))
	}
	r := drv.cuLaunchKernel(f.fn, uint32(grid.X), uint32(grid.Y), uint32(grid.Z), uint32(block.X), uint32(block.Y), uint32(block.Z), uint32(shared), b.stream, pp, nil)
	return cuErr("cuLaunchKernel("+name+")", r)
}

// envInt reads the integer setting name from the environment: def where it
// is unset, else a value from lo to hi (want says which, in the error).
func envInt(name string, def, lo, hi int, want string) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return def, fmt.Errorf("cuda: %s=%q: want %s", name, v, want)
	}
	return n, nil
}

// pdlKernels are the name prefixes of the kernels that wait for the
// previous kernel themselves (pdl_wait in kernels/common.cuh) before they
// read or write anything it may touch: the backend launches them with
// programmatic stream serialization, so that they start while it ends
// (the products stream their first weights meanwhile). stream_tail (a
// probe of BenchmarkPieces) waits for nothing: it reads and writes nothing
// the kernel before it does; stream_pdl_* (BenchmarkGridPhases' probes)
// wait as the products do.
var pdlKernels = []string{"rmsnorm_", "add_rmsnorm_", "embedding_", "rope_store_", "paged_attn_", "qmma", "qglu", "gather_cols_", "sample_rows", "argmax_rows", "gemv_rows_", "head_wg_", "fmlp4_", "fmlp8_", "stream_tail", "stream_pdl_", "moe_route_", "moe_combine_"}

func pdlKernel(name string) bool {
	for _, p := range pdlKernels {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func dims(d Dim) Dim {
	if d.Y == 0 {
		d.Y = 1
	}
	if d.Z == 0 {
		d.Z = 1
	}
	return d
}

// Launch runs a kernel of package kernels (see launch) and returns the
// launch error; errors of the kernel itself appear at the next Sync.
func (b *Backend) Launch(src, name string, grid, block Dim, shared int, args ...any) error {
	b.enter()
	defer b.exit()
	return b.launch(src, name, grid, block, shared, args...)
}

// run is launch for ops, which record their error instead of returning it.
func (b *Backend) run(src, name string, grid, block Dim, shared int, args ...any) {
	b.fail(b.launch(src, name, grid, block, shared, args...))
}

// runCluster is run through launchCluster.
func (b *Backend) runCluster(src, name string, grid, block Dim, shared, clusterY int, args ...any) {
	b.fail(b.launchCluster(src, name, grid, block, shared, clusterY, args...))
}

// FormatBytes prints a byte count in binary units.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

var _ runtime.Backend = (*Backend)(nil)

// Memory reports the bytes a new allocation can still get (the device's
// free memory plus what the allocator holds cached) and the device total;
// total is 0 when the driver could not say.
func (b *Backend) Memory() (free, total int64) {
	s := b.MemStats()
	if s.Total == 0 {
		return 0, 0
	}
	free, total = int64(s.Free)+(s.Reserved-s.InUse), int64(s.Total)
	if l := b.alloc.limit; l > 0 {
		free, total = min(free, l-s.InUse), l
	}
	return free, total
}
