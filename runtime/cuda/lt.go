package cuda

import (
	"fmt"
	"math"
	"os"
	"sync"
	"unsafe"

	"github.com/gptqtool/gptqtool/runtime"
)

// cuBLASLt entry points (cublasLt.h), for the products of few rows whose
// algorithm is picked by timing (ltTune).
var lt struct {
	cublasLtCreate                       func(h *uintptr) cublasStatus
	cublasLtDestroy                      func(h uintptr) cublasStatus
	cublasLtMatmulDescCreate             func(d *uintptr, compute int32, scale int32) cublasStatus
	cublasLtMatmulDescDestroy            func(d uintptr) cublasStatus
	cublasLtMatmulDescSetAttribute       func(d uintptr, attr int32, buf unsafe.Pointer, size uint64) cublasStatus
	cublasLtMatrixLayoutCreate           func(l *uintptr, dt int32, rows, cols uint64, ld int64) cublasStatus
	cublasLtMatrixLayoutDestroy          func(l uintptr) cublasStatus
	cublasLtMatmulPreferenceCreate       func(p *uintptr) cublasStatus
	cublasLtMatmulPreferenceDestroy      func(p uintptr) cublasStatus
	cublasLtMatmulPreferenceSetAttribute func(p uintptr, attr int32, buf unsafe.Pointer, size uint64) cublasStatus
	cublasLtMatmulAlgoGetHeuristic       func(h, desc, a, b, c, d, pref uintptr, requested int32, results unsafe.Pointer, n *int32) cublasStatus
	cublasLtMatmul                       func(h, desc uintptr, alpha unsafe.Pointer, A uint64, a uintptr, B uint64, b uintptr, beta unsafe.Pointer,
		C uint64, c uintptr, D uint64, d uintptr, algo unsafe.Pointer, ws uint64, wsBytes uint64, stream uintptr) cublasStatus
}

// cuBLASLt enums.
const (
	ltDescTransA       = 3 // CUBLASLT_MATMUL_DESC_TRANSA
	ltDescTransB       = 4 // CUBLASLT_MATMUL_DESC_TRANSB
	ltPrefMaxWorkspace = 1 // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
	ltCandidates       = 16
	blasWSBytes        = 32 << 20
)

// ltHeuristic is cublasLtMatmulHeuristicResult_t: the algorithm (64
// bytes), its workspace, a status, a waves count, reserved words.
type ltHeuristic struct {
	algo      [64]byte
	workspace uint64
	state     cublasStatus
	waves     float32
	_         [4]int32
}

var (
	ltOnce sync.Once
	ltErr  error
)

func loadLt() error {
	ltOnce.Do(func() {
		lib, path, err := openLib("cuBLASLt", libCUBLASLt)
		if err != nil {
			ltErr = err
			return
		}
		ltErr = register(lib, path, map[string]any{
			"cublasLtCreate":                       &lt.cublasLtCreate,
			"cublasLtDestroy":                      &lt.cublasLtDestroy,
			"cublasLtMatmulDescCreate":             &lt.cublasLtMatmulDescCreate,
			"cublasLtMatmulDescDestroy":            &lt.cublasLtMatmulDescDestroy,
			"cublasLtMatmulDescSetAttribute":       &lt.cublasLtMatmulDescSetAttribute,
			"cublasLtMatrixLayoutCreate":           &lt.cublasLtMatrixLayoutCreate,
			"cublasLtMatrixLayoutDestroy":          &lt.cublasLtMatrixLayoutDestroy,
			"cublasLtMatmulPreferenceCreate":       &lt.cublasLtMatmulPreferenceCreate,
			"cublasLtMatmulPreferenceDestroy":      &lt.cublasLtMatmulPreferenceDestroy,
			"cublasLtMatmulPreferenceSetAttribute": &lt.cublasLtMatmulPreferenceSetAttribute,
			"cublasLtMatmulAlgoGetHeuristic":       &lt.cublasLtMatmulAlgoGetHeuristic,
			"cublasLtMatmul":                       &lt.cublasLtMatmul,
		})
	})
	return ltErr
}

// ltMaxRows is the most rows (the GEMM's n) whose products ltTune times:
// decode steps' products with 16-bit weights (the head's logits).
const ltMaxRows = 64

// ltKey is a GEMM gemm(T, N) of one shape and set of types.
type ltKey struct {
	m, n, k    int
	at, bt, ct runtime.DType
}

// ltPlan is how a GEMM of ltKey runs: cublasGemmEx's own choice (lt
// false) or cuBLASLt's algorithm algo, whichever was faster.
type ltPlan struct {
	lt               bool
	desc, a, b, c    uintptr
	algo             [64]byte
	workspace        uint64
	gemmExUS, bestUS float64 // measured when planned, µs a run
}

// ltTuning says whether products of few rows pick their algorithm by
// timing (GPTQTOOL_LT=0: cublasGemmEx's own choice, as before).
func ltTuning() bool { return os.Getenv("GPTQTOOL_LT") != "0" }

// GEMM tunings (SetGEMMTuning).
const (
	GEMMDefault = iota // cublasGemmEx's own algorithm (GPTQTOOL_LT=0)
	GEMMTimed          // the fastest of cublasGemmEx and cuBLASLt's candidates, by timing (the default)
	GEMMLt             // cuBLASLt's fastest candidate even where cublasGemmEx is faster (tests)
)

// SetGEMMTuning sets how products of up to 64 rows with 16-bit weights
// pick their algorithm (GEMMDefault, GEMMTimed, GEMMLt); the plans made
// so far are dropped. Graphs recorded before keep theirs.
func (b *Backend) SetGEMMTuning(mode int) {
	b.enter()
	defer b.exit()
	b.ltOff, b.ltForce = mode == GEMMDefault, mode == GEMMLt
	for _, p := range b.ltPlans {
		if b.graphs == 0 {
			p.free()
		}
	}
	b.ltPlans = nil
}

// GEMMTuning reports SetGEMMTuning's mode.
func (b *Backend) GEMMTuning() int {
	b.enter()
	defer b.exit()
	switch {
	case b.ltOff:
		return GEMMDefault
	case b.ltForce:
		return GEMMLt
	}
	return GEMMTimed
}

// GEMMPlan is how a product of few rows runs: M rows of K inputs into N
// outputs, by cuBLASLt (Lt) or cublasGemmEx, with the times measured when
// it was planned.
type GEMMPlan struct {
	M, N, K          int
	Lt               bool
	GemmExUS, BestUS float64
}

// GEMMPlans lists the plans made so far.
func (b *Backend) GEMMPlans() []GEMMPlan {
	b.enter()
	defer b.exit()
	var out []GEMMPlan
	for k, p := range b.ltPlans {
		out = append(out, GEMMPlan{M: k.n, N: k.m, K: k.k, Lt: p.lt, GemmExUS: p.gemmExUS, BestUS: p.bestUS})
	}
	return out
}

// ltGemm runs C = Aᵀ·B (column-major: A k×m, B k×n, C m×n; gemm(T, N)
// with alpha 1 and beta 0) under the plan of its shape and types: made
// on first use (outside a graph's recording) by timing cublasGemmEx and up
// to ltCandidates of cuBLASLt's algorithms. It reports false, doing
// nothing, where no plan exists or can be made now; the caller then runs
// cublasGemmEx. The caller holds the backend.
func (b *Backend) ltGemm(m, n, k int, A uint64, at runtime.DType, B uint64, bt runtime.DType, C uint64, ct runtime.DType) bool {
	if b.ltOff || n > ltMaxRows {
		return false
	}
	key := ltKey{m, n, k, at, bt, ct}
	p, ok := b.ltPlans[key]
	if !ok {
		if b.capturing || b.err != nil {
			return false
		}
		var err error
		if p, err = b.ltPlan(key, A, B, C); err != nil {
			// cuBLASLt unusable for this shape: cublasGemmEx from now on.
			p = &ltPlan{}
		}
		if b.ltPlans == nil {
			b.ltPlans = map[ltKey]*ltPlan{}
		}
		b.ltPlans[key] = p
	}
	if !p.lt {
		return false
	}
	b.fail(b.ltRun(p, A, B, C))
	return true
}

func (b *Backend) ltRun(p *ltPlan, A, B, C uint64) error {
	alpha, beta := float32(1), float32(0)
	return blasErr("cublasLtMatmul", lt.cublasLtMatmul(b.lt, p.desc, unsafe.Pointer(&alpha), A, p.a, B, p.b, unsafe.Pointer(&beta),
		C, p.c, C, p.c, unsafe.Pointer(&p.algo[0]), b.blasWS, p.workspace, b.stream))
}

// ltPlan times cublasGemmEx and cuBLASLt's candidates for key on the
// caller's buffers (C is overwritten) and keeps the fastest.
func (b *Backend) ltPlan(key ltKey, A, B, C uint64) (*ltPlan, error) {
	if err := loadLt(); err != nil {
		return nil, err
	}
	if drv.cuEventCreate == nil {
		return nil, fmt.Errorf("cuda: no events to time GEMM algorithms")
	}
	if b.lt == 0 {
		if err := blasErr("cublasLtCreate", lt.cublasLtCreate(&b.lt)); err != nil {
			return nil, err
		}
	}
	p := &ltPlan{}
	ok := false
	defer func() {
		if !ok {
			p.free()
		}
	}()
	if err := blasErr("cublasLtMatmulDescCreate", lt.cublasLtMatmulDescCreate(&p.desc, computeF32, dtF32)); err != nil {
		return nil, err
	}
	ta, tb := int32(opT), int32(opN)
	if err := blasErr("cublasLtMatmulDescSetAttribute", lt.cublasLtMatmulDescSetAttribute(p.desc, ltDescTransA, unsafe.Pointer(&ta), 4)); err != nil {
		return nil, err
	}
	if err := blasErr("cublasLtMatmulDescSetAttribute", lt.cublasLtMatmulDescSetAttribute(p.desc, ltDescTransB, unsafe.Pointer(&tb), 4)); err != nil {
		return nil, err
	}
	// A stored k×m (transposed by the op), B k×n, C m×n, all column-major.
	for _, l := range []struct {
		h          *uintptr
		dt         runtime.DType
		rows, cols int
	}{{&p.a, key.at, key.k, key.m}, {&p.b, key.bt, key.k, key.n}, {&p.c, key.ct, key.m, key.n}} {
		if err := blasErr("cublasLtMatrixLayoutCreate", lt.cublasLtMatrixLayoutCreate(l.h, cudaType(l.dt), uint64(l.rows), uint64(l.cols), int64(l.rows))); err != nil {
			return nil, err
		}
	}
	var pref uintptr
	if err := blasErr("cublasLtMatmulPreferenceCreate", lt.cublasLtMatmulPreferenceCreate(&pref)); err != nil {
		return nil, err
	}
	defer lt.cublasLtMatmulPreferenceDestroy(pref)
	ws := uint64(blasWSBytes)
	if err := blasErr("cublasLtMatmulPreferenceSetAttribute", lt.cublasLtMatmulPreferenceSetAttribute(pref, ltPrefMaxWorkspace, unsafe.Pointer(&ws), 8)); err != nil {
		return nil, err
	}
	var res [ltCandidates]ltHeuristic
	var n int32
	if err := blasErr("cublasLtMatmulAlgoGetHeuristic", lt.cublasLtMatmulAlgoGetHeuristic(b.lt, p.desc, p.a, p.b, p.c, p.c, pref, ltCandidates, unsafe.Pointer(&res[0]), &n)); err != nil {
		return nil, err
	}
	var start, end uintptr
	if err := cuErr("cuEventCreate", drv.cuEventCreate(&start, 0)); err != nil {
		return nil, err
	}
	defer drv.cuEventDestroy(start)
	if err := cuErr("cuEventCreate", drv.cuEventCreate(&end, 0)); err != nil {
		return nil, err
	}
	defer drv.cuEventDestroy(end)
	// clock runs fn twice to warm up, then reps times between events: µs
	// a run.
	const reps = 5
	clock := func(fn func() error) (float64, error) {
		for range 2 {
			if err := fn(); err != nil {
				return 0, err
			}
		}
		if err := cuErr("cuEventRecord", drv.cuEventRecord(start, b.stream)); err != nil {
			return 0, err
		}
		for range reps {
			if err := fn(); err != nil {
				return 0, err
			}
		}
		if err := cuErr("cuEventRecord", drv.cuEventRecord(end, b.stream)); err != nil {
			return 0, err
		}
		if err := cuErr("cuEventSynchronize", drv.cuEventSynchronize(end)); err != nil {
			return 0, err
		}
		var ms float32
		if err := cuErr("cuEventElapsedTime", drv.cuEventElapsedTime(&ms, start, end)); err != nil {
			return 0, err
		}
		return 1e3 * float64(ms) / reps, nil
	}
	var err error
	p.gemmExUS, err = clock(func() error {
		return b.gemm(opT, opN, key.m, key.n, key.k, 1, A, key.at, key.k, B, key.bt, key.k, 0, C, key.ct, key.m)
	})
	if err != nil {
		return nil, err
	}
	p.bestUS = p.gemmExUS
	if b.ltForce {
		p.bestUS = math.Inf(1)
	}
	for i := range int(n) {
		h := &res[i]
		if h.state != 0 || h.workspace > ws {
			continue
		}
		q := &ltPlan{lt: true, desc: p.desc, a: p.a, b: p.b, c: p.c, algo: h.algo, workspace: h.workspace}
		us, err := clock(func() error { return b.ltRun(q, A, B, C) })
		if err != nil {
			continue // an algorithm that fails here is not used
		}
		if us < p.bestUS {
			p.bestUS, p.lt, p.algo, p.workspace = us, true, h.algo, h.workspace
		}
	}
	ok = p.lt
	if !p.lt {
		return &ltPlan{gemmExUS: p.gemmExUS, bestUS: p.gemmExUS}, nil
	}
	return p, nil
}

func (p *ltPlan) free() {
	if p.desc != 0 {
		lt.cublasLtMatmulDescDestroy(p.desc)
	}
	for _, l := range []uintptr{p.a, p.b, p.c} {
		if l != 0 {
			lt.cublasLtMatrixLayoutDestroy(l)
		}
	}
	*p = ltPlan{}
}
