// Package quantize implements GPTQ for one Linear at a time, as spec §4
// (docs/gptq-spec.md) describes the reference (REF = IST-DASLab/gptq
// gptq.py/quant.py; AutoGPTQ is identical), and the layer drivers built on
// it. Writing checkpoints, model cards and branch tables is package publish.
//
// # Pieces
//
//   - Hessian: H = (2/n)·Σ XᵀX as REF's running mean over calibration
//     sequences (spec §4.1), float64, updated with gonum GEMMs on all cores.
//   - Quantizer: find_params/quantize of spec §4.3, including REF's quirks:
//     a symmetric group without negatives keeps xmin = 0 (positives clip at
//     (2^(b-1)-1)·scale), an all-zero group uses the range (-1, 1), rounding
//     is half to even (torch.round), optional MSE shrink-grid search.
//   - GPTQ: fasterquant of spec §4.2 with block size, act order (desc_act),
//     static groups, damping and Cholesky retries.
//   - RTN: round-to-nearest with the same quantizer and Result layout.
//   - Run, the layer driver, in two forms. The reference driver keeps the
//     calibration activations on the host per sequence and folds each
//     Hessian in float64 (what the CPU runs, unchanged output). The device
//     driver (DriverOptions.Solver set) keeps them on the backend in the
//     checkpoint's dtype, runs every layer over all samples in chunks with
//     passes that resume at the attention output or the residual, forms
//     Hessians there with Backend.Gram (a device tap), and hands each module
//     group to a Solver: HostSolver (this package's GPTQ) or a device
//     solver (package quantize/gpu), which returns packed tensors. Both
//     load the layers for the samples' length (CalibrationContext), which
//     chooses Phi-3's longrope factors as transformers does for a
//     calibration sequence of that length.
//
// # Layouts
//
// Weights are HF row-major [N, K] (N = out, K = in). Result.Q is [K, N]
// (transposed, ready for packing along K), Scales and Zeros are [G, N],
// GIdx is [K] (spec §1.5), and Result.W = Scales[GIdx[k]][n]·(Q[k][n] -
// Zeros[GIdx[k]][n]) exactly, in float32. Zeros are the real zero points
// (2^(b-1) when symmetric); v1 checkpoints store zero-1 (spec §1.4), which
// packing does, not this package. Hessian.H is [K, K] row-major, symmetric.
//
// # Invariants and deviations from REF
//
//   - Inputs are never modified: GPTQ works on float64 copies of W and H.
//   - H, the inverse factor U and the working W are float64 where REF uses
//     fp32; this is at least as accurate. U (UᵀU = H⁻¹, REF step 6) is
//     computed as J·chol(J·H·J)⁻¹·J with J the reversal, the same matrix
//     as REF's cholesky → cholesky_inverse → cholesky(upper) (uniqueness of
//     the Cholesky factor), with half the flops and no explicit H⁻¹.
//   - Act order sorts diag(H) descending with a stable sort (torch leaves
//     ties unspecified); dead columns count with diag 1, as in REF.
//   - With Options.Fp16Scales (our default) each scale is rounded to fp16
//     when chosen, so error feedback, loss and Result.W use exactly the
//     stored weights; otherwise scales are rounded to fp32 as REF computes
//     them. Scales are never 0 (tiny ones are raised to the smallest
//     positive value of the type); GPTQ returns an error rather than a
//     non-finite scale, weight, Hessian or loss.
//   - Non-static groups call find_params on the error-updated weights, as
//     the GPTQ paper's algorithm does; Options.StaleGroupParams replicates
//     REF/AG/GM, which use the block-level W for a group that starts inside
//     a block (spec §4.2 step 7). Per-channel params are found on the full
//     row before dead columns are zeroed (REF step 1 precedes step 2).
//   - Cholesky failure (REF and AG give up) retries with the damp fraction
//     doubled each time, capped at 1.0, logging each retry; Result.Damp is
//     the fraction used.
//
// # Concurrency
//
// Rows are independent inside a GPTQ block, so the per-column loop runs on
// GOMAXPROCS workers over row ranges; the lazy batch update
// W[:, i2:] -= Err1·U[i1:i2, i2:] and the Hessian products are gonum GEMMs,
// themselves parallel. No function keeps state between calls; a Hessian
// must not be updated concurrently.
package quantize
