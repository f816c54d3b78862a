package quantize

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/gptqtool/gptqtool/formats/gptq"
	"github.com/gptqtool/gptqtool/runtime"
)

// SolveRequest is one module group of one layer, ready to quantize: the
// modules share an input, so one Hessian.
type SolveRequest struct {
	Backend runtime.Backend
	Layer   int
	// Modules names the Linears ("self_attn.q_proj", ...), in the order
	// they are quantized.
	Modules []string
	// Weights are the modules' weights [N, K] on Backend; Solve replaces
	// each with its quantized (dequantized) values, which the next passes
	// of the driver run with.
	Weights []runtime.Tensor
	// Gram is [K, K] F32 on Backend; its upper triangle holds Σ XᵀX over
	// the calibration tokens (Backend.Gram), of Samples sequences: the
	// Hessian is H = 2/Samples · Gram (spec §4.1).
	Gram    runtime.Tensor
	Samples int
	Options Options
	// Bits, GroupSize and Format describe the checkpoint the results are
	// packed for (a solver that packs on the device fills Result.Packed).
	Format gptq.Format
	Log    io.Writer
}

// Solver quantizes module groups. HostSolver is the reference (the float64
// GPTQ of this package on the CPU); a device solver keeps everything on
// its backend and returns packed tensors.
type Solver interface {
	// Name identifies the solver in logs.
	Name() string
	// Solve quantizes every module of r and returns their results in
	// r.Modules order.
	Solve(ctx context.Context, r SolveRequest) ([]*Result, error)
}

// HostSolver downloads the Hessian and the weights, runs GPTQ (or, with
// RTN, round to nearest) on the host in float64, and uploads the quantized
// weights.
type HostSolver struct {
	// RTN quantizes by plain round to nearest (no Hessian is read).
	RTN bool
}

// Workspace implements WorkspaceReporter with the host memory one [N, K]
// module's solve takes: the Gram downloaded in fp32, the Hessian and its
// inverse factor in float64 (20 bytes an entry of K×K), the weights
// downloaded, their float64 working copy, the codes twice and the
// quantized weights (18 bytes an entry of N×K).
func (s HostSolver) Workspace(N, K int) int64 {
	return 20*int64(K)*int64(K) + 18*int64(N)*int64(K)
}

// Name implements Solver.
func (s HostSolver) Name() string {
	if s.RTN {
		return "host (round to nearest)"
	}
	return "host"
}

// Solve implements Solver.
func (s HostSolver) Solve(ctx context.Context, r SolveRequest) ([]*Result, error) {
	var h *Hessian
	if !s.RTN {
		var err error
		if h, err = HessianFromGram(r.Backend, r.Gram, r.Samples); err != nil {
			return nil, err
		}
	}
	out := make([]*Result, len(r.Modules))
	for i, m := range r.Modules {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w := r.Weights[i]
		N, K := runtime.Rows(w), runtime.Cols(w)
		host := make([]float32, N*K)
		if err := r.Backend.Download(host, w); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		var res *Result
		var err error
		if s.RTN {
			res, err = RTN(host, N, K, r.Options)
		} else {
			res, err = GPTQ(host, N, K, h, r.Options, r.Log)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		if err := r.Backend.Upload(w, res.W); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		out[i] = res
	}
	return out, nil
}

// HessianFromGram downloads the upper triangle of a Gram matrix of n
// sequences and returns the symmetric Hessian 2/n · Gram in float64. A
// non-finite entry is an error naming it.
func HessianFromGram(b runtime.Backend, g runtime.Tensor, n int) (*Hessian, error) {
	K := runtime.Rows(g)
	if runtime.Cols(g) != K || n <= 0 {
		return nil, fmt.Errorf("hessian: gram %v of %d samples", g.Shape(), n)
	}
	host := make([]float32, K*K)
	if err := b.Download(host, g); err != nil {
		return nil, fmt.Errorf("hessian: %w", err)
	}
	h := NewHessian(K)
	h.N = n
	scale := 2 / float64(n)
	for i := range K {
		for j := i; j < K; j++ {
			v := float64(host[i*K+j])
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("hessian: H[%d,%d]=%g is not finite", i, j, v)
			}
			h.H[i*K+j] = v * scale
			h.H[j*K+i] = v * scale
		}
	}
	return h, nil
}
