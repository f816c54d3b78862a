// Package cpu is the reference runtime.Backend: every op in plain fp32 on
// the host, parallel over cores. It is the backend other backends are
// checked against (runtime/backendtest), so its ops follow their
// runtime.Backend documentation literally; speed comes from a blocked
// matrix multiply whose inner dot-product kernels use AVX2/FMA assembly on
// amd64 CPUs that have it and portable Go elsewhere.
//
// # Layouts
//
// A Tensor is a []float32 in row-major PyTorch order plus its shape; a View
// is a sub-slice of its parent's storage. Only runtime.F32 tensors exist
// here (the model converts fp16/bf16 activations' tensors to fp32 on
// upload), but for a WithHalf backend's F16 and BF16 tensors: fp32 values
// that every op rounds to the tensor's dtype where the CUDA kernels round,
// so that a GPU calibration forward can be reproduced on the host.
//
// # Compact weights
//
// LoadQuant (runtime.QuantLoader) keeps a GPTQ weight packed: each output
// row's codes in the original input order (act order undone at load, each
// input's group in a table), blocks of 32 codes in 4·bits bytes, fp16
// scales and zero points per row and group (quant.go). LoadWeight
// (runtime.WeightLoader) keeps an F16 or BF16 Linear weight as its 16-bit
// values (weight16.go). Only MatMul and MatMulAdd read either, as their w:
// a task expands a tile of weight rows (4 at decode, 32 otherwise) by
// slices of kc inputs into fp32 scratch, exactly as the fp32 weight would
// hold them (scale·(code − zero), one rounding; exact 16-bit widening),
// and runs the dense kernels over it with matmul's slices and grouping of
// rows, so that every output is the dense product's bit for bit.
//
// On the AVX2 kernels a weight takes the panel layout instead (panel.go;
// N and K multiples of 8, and without act order a group size that is
// too): 8 rows' codes of one input side by side, inputs in their original
// order, so that a vector of weights shares one group's scales and zero
// points (a vector load, not an act-order weight's gather; without act
// order input c's group is c/groupSize, nothing stored). Up to 3 rows of
// x multiply the panels directly (one pass over the codes for all of
// them), keeping the dense kernels' partial sums lane for lane and adding
// them as they do; more rows expand the panels into rows for the dense
// kernels. Either way the products are the dense product's bit for bit.
// Resident counts the bytes all tensors hold.
//
// # Parallelism
//
// Each op splits its work into independent tasks (tiles of the output,
// (head, query) pairs of attention, row ranges) that up to Threads
// goroutines take in turn; an op returns when all its tasks are done, so ops
// are ordered and Sync has nothing to wait for. Tasks write disjoint parts
// of dst, and the summation order inside an output element does not depend
// on the thread count, so results are bit-identical for any Threads.
//
// A Backend's ops may be called from one goroutine at a time.
package cpu
