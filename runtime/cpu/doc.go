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
// here (the model converts fp16/bf16 checkpoints to fp32 on upload), but
// for a WithHalf backend's F16 and BF16 tensors: fp32 values that every op
// rounds to the tensor's dtype where the CUDA kernels round, so that a GPU
// calibration forward can be reproduced on the host.
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
