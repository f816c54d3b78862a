// Package cuda is the CUDA backend of package runtime: one NVIDIA device
// driven through our own bindings, made with purego (no cgo: the binary
// builds anywhere and loads the libraries at run time), to the driver API
// (libcuda.so.1, nvcuda.dll on Windows), NVRTC, cuBLAS and cuSOLVER.
//
// Libraries are found by soname through the dynamic loader, then in the
// usual CUDA folders and pip's nvidia/*/lib folders (lib_unix.go); on
// Windows by DLL name through the standard search, then in the toolkit's
// bin folders and pip's nvidia\*\bin folders (lib_windows.go). Errors that
// mean "no CUDA here" wrap ErrNotAvailable (--device auto falls back to the CPU on
// them), the others name the call and the CUDA error (Error). The device's
// primary context is made current on a locked OS thread for every call;
// all work goes to one non-blocking stream, so device memory freed by a
// tensor can be handed out again at once (later work on the stream runs
// after earlier work). Ops return no errors (runtime.Backend): the first
// failure is kept and reported by Sync, Download and the transfers.
//
// Memory comes from a caching allocator (size classes: powers of two below
// 1 MiB, 2 MiB steps above) that accounts for every byte, including
// cuBLAS's workspace, and reports peaks (MemStats); MemoryLimit caps it.
// Kernels are the CUDA C sources of package kernels, compiled by NVRTC for
// the device's architecture on first use and cached on disk by source,
// options, architecture, NVRTC and driver version.
//
// Tensors are F32, F16, BF16 or I32, row-major; MatMul and Gram call
// cublasGemmEx with fp32 compute (no TF32), except products of up to 64
// rows of 16-bit x and w into fp32 (a decode step's logits: kernels/gemv.cu
// for 1–4 rows, kernels/head.cu on sm_90's warpgroup MMA for 5–64); attention in f16/bf16 with head
// size 64 or 128 runs a FlashAttention-2 style tensor-core kernel, other
// cases a generic fp32 kernel. GPTQ weights (LoadQuant, fused by
// LoadQuantSplit/LoadQuantGLU) are tiled at load for tensor-core products
// of 1–64 rows (kernels/qgemv.cu: mma.sync in passes of up to 32 rows, and
// on sm_90 warpgroup MMA for 17–64 rows in one pass), dequantized into a scratch
// for cuBLAS above that; decode steps use the PagedDecoder ops (kernels/decode.cu; at
// one row, attention's splits combined by o_proj's product as it stages
// them, PagedAttentionMatMul) and are recorded as CUDA graphs (Capture), and their tokens drawn on the
// device (SampleTokens, kernels/sample.cu). Beyond runtime.Backend the package
// offers what the GPTQ solver needs: raw device buffers, kernel launches,
// DGEMM, Cholesky factorisation and triangular inverse (float64).
package cuda
