// elementwise.cu: conversions, residual adds, SwiGLU, embedding gather,
// row masks. Every tensor is dense; n elements; grid-stride loops over a
// 1-D grid of 256-thread blocks (any grid size is correct). Arithmetic is
// fp32; results are rounded once to the destination dtype.

// convert_<from>_<to>(dst [n], src [n])
#define CONVERT(SN, ST, DN, DT)                                                      \
    extern "C" __global__ void convert_##SN##_##DN(DT* dst, const ST* src, i64 n) { \
        FOR_N(i, n) dst[i] = from_f32<DT>(to_f32(src[i]));                            \
    }
CONVERT(f32, float, f16, f16)
CONVERT(f32, float, bf16, bf16)
CONVERT(f16, f16, f32, float)
CONVERT(bf16, bf16, f32, float)
CONVERT(f16, f16, bf16, bf16)
CONVERT(bf16, bf16, f16, f16)

// add_T: d = a + b; mul_T: d = a * b; silu_T: d = x*sigmoid(x);
// swiglu_T: d = silu(gate) * up (transformers MistralMLP); d may alias inputs.
__device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }

#define ELEMENTWISE(N, T)                                                                        \
    extern "C" __global__ void add_##N(T* d, const T* a, const T* b, i64 n) {                    \
        FOR_N(i, n) d[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));                             \
    }                                                                                            \
    extern "C" __global__ void mul_##N(T* d, const T* a, const T* b, i64 n) {                    \
        FOR_N(i, n) d[i] = from_f32<T>(to_f32(a[i]) * to_f32(b[i]));                             \
    }                                                                                            \
    extern "C" __global__ void silu_##N(T* d, const T* x, i64 n) {                               \
        FOR_N(i, n) d[i] = from_f32<T>(silu(to_f32(x[i])));                                      \
    }                                                                                            \
    extern "C" __global__ void swiglu_##N(T* d, const T* gate, const T* up, i64 n) {             \
        FOR_N(i, n) d[i] = from_f32<T>(silu(to_f32(gate[i])) * to_f32(up[i]));                   \
    }                                                                                            \
    /* embedding_T: dst [n, h] = table[ids[t], :]; ids int32 [n] */                               \
    extern "C" __global__ void embedding_##N(T* dst, const T* table, const int* ids, int n, int h) { \
        FOR_N(i, (i64)n * h) {                                                                   \
            i64 t = i / h, c = i % h;                                                            \
            dst[i] = table[(i64)ids[t] * h + c];                                                 \
        }                                                                                        \
    }                                                                                            \
    /* mask_rows_T: dst [rows, cols] = x * mask[row]; mask fp32 [rows] */                         \
    extern "C" __global__ void mask_rows_##N(T* dst, const T* x, const float* mask, int rows, int cols) { \
        FOR_N(i, (i64)rows * cols) dst[i] = from_f32<T>(to_f32(x[i]) * mask[i / cols]);           \
    }
FOR_DTYPES(ELEMENTWISE)
