// elementwise.cu: conversions, residual adds, SwiGLU and GELU GLU, embedding gather, scaling,
// Linear biases, row masks. Every tensor is dense; n elements; grid-stride loops over a
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
    /* embedding_T: dst [n, h] = table[ids[t], :]; ids int32 [n]; an id -1-j                    \
       takes fed[j] instead (fed int32, a draw left on the device), a negative                    \
       fed token row 0 */                                                                         \
    extern "C" __global__ void embedding_##N(T* dst, const T* table, const int* ids, const int* fed, \
                                             int n, int h) {                                      \
        pdl_launch();                                                                              \
        pdl_wait();                                                                                \
        FOR_N(i, (i64)n * h) {                                                                   \
            i64 t = i / h, c = i % h;                                                            \
            int id = ids[t];                                                                     \
            if (id < 0) id = max(fed[-1 - id], 0);                                               \
            dst[i] = table[(i64)id * h + c];                                                     \
        }                                                                                        \
    }                                                                                            \
    /* add_bias_T: x [rows, cols] += bias [cols] in place (a Linear's bias on                    \
       its product), n = rows*cols */                                                             \
    extern "C" __global__ void add_bias_##N(T* x, const T* bias, i64 n, int cols) {               \
        FOR_N(i, n) x[i] = from_f32<T>(to_f32(x[i]) + to_f32(bias[i % cols]));                   \
    }                                                                                            \
    /* mask_rows_T: dst [rows, cols] = x * mask[row]; mask fp32 [rows] */                         \
    extern "C" __global__ void mask_rows_##N(T* dst, const T* x, const float* mask, int rows, int cols) { \
        FOR_N(i, (i64)rows * cols) dst[i] = from_f32<T>(to_f32(x[i]) * mask[i / cols]);           \
    }                                                                                            \
    /* sigmoid_rows_T: dst [rows, cols] = x * sigmoid(g[row]), the sigmoid rounded                \
       to T (Qwen2-MoE's shared expert gate); g [rows] */                                         \
    extern "C" __global__ void sigmoid_rows_##N(T* dst, const T* x, const T* g, int rows, int cols) { \
        FOR_N(i, (i64)rows * cols) {                                                             \
            float s = to_f32(from_f32<T>(1.0f / (1.0f + expf(-to_f32(g[i / cols])))));          \
            dst[i] = from_f32<T>(to_f32(x[i]) * s);                                              \
        }                                                                                        \
    }
FOR_DTYPES(ELEMENTWISE)

// gelu_glu_T: d = gelu_tanh(gate) * up (transformers Gemma3MLP with
// gelu_pytorch_tanh: 0.5·g·(1 + tanh(sqrt(2/π)·(g + 0.044715·g³)))), one
// rounding; scale_T: d = x * s (Gemma's embedding scale); softcap_T: d =
// c·tanh(x/c) (Gemma 2's final_logit_softcapping). d may alias the inputs.
__device__ __forceinline__ float gelu_tanh(float v) {
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}
#define GEMMA_ELEMENTWISE(N, T)                                                                  \
    extern "C" __global__ void gelu_glu_##N(T* d, const T* gate, const T* up, i64 n) {           \
        FOR_N(i, n) d[i] = from_f32<T>(gelu_tanh(to_f32(gate[i])) * to_f32(up[i]));             \
    }                                                                                            \
    extern "C" __global__ void scale_##N(T* d, const T* x, float s, i64 n) {                     \
        FOR_N(i, n) d[i] = from_f32<T>(to_f32(x[i]) * s);                                        \
    }                                                                                            \
    extern "C" __global__ void softcap_##N(T* d, const T* x, float c, i64 n) {                   \
        FOR_N(i, n) d[i] = from_f32<T>(c * tanhf(to_f32(x[i]) / c));                             \
    }
FOR_DTYPES(GEMMA_ELEMENTWISE)

// The same ops on 16-bit tensors, 8 elements per thread in 16-byte vectors
// (n8 = n/8; every pointer 16-byte aligned): add_v8_T, mul_v8_T,
// swiglu_v8_T. The launcher picks them when n and the addresses allow.
#define ELEMENTWISE_V8(N, T)                                                                     \
    extern "C" __global__ void add_v8_##N(T* d, const T* a, const T* b, i64 n8) {                \
        FOR_N(i, n8) {                                                                           \
            float x[8], y[8];                                                                    \
            unpack8<T>(((const u32x4*)a)[i], x);                                                 \
            unpack8<T>(((const u32x4*)b)[i], y);                                                 \
            _Pragma("unroll") for (int j = 0; j < 8; j++) x[j] += y[j];                          \
            ((u32x4*)d)[i] = pack8<T>(x);                                                        \
        }                                                                                        \
    }                                                                                            \
    extern "C" __global__ void mul_v8_##N(T* d, const T* a, const T* b, i64 n8) {                \
        FOR_N(i, n8) {                                                                           \
            float x[8], y[8];                                                                    \
            unpack8<T>(((const u32x4*)a)[i], x);                                                 \
            unpack8<T>(((const u32x4*)b)[i], y);                                                 \
            _Pragma("unroll") for (int j = 0; j < 8; j++) x[j] *= y[j];                          \
            ((u32x4*)d)[i] = pack8<T>(x);                                                        \
        }                                                                                        \
    }                                                                                            \
    extern "C" __global__ void swiglu_v8_##N(T* d, const T* gate, const T* up, i64 n8) {         \
        FOR_N(i, n8) {                                                                           \
            float x[8], y[8];                                                                    \
            unpack8<T>(((const u32x4*)gate)[i], x);                                              \
            unpack8<T>(((const u32x4*)up)[i], y);                                                \
            _Pragma("unroll") for (int j = 0; j < 8; j++) x[j] = silu(x[j]) * y[j];              \
            ((u32x4*)d)[i] = pack8<T>(x);                                                        \
        }                                                                                        \
    }
ELEMENTWISE_V8(f16, f16)
ELEMENTWISE_V8(bf16, bf16)

// nll_f32(out [rows] double, logits [rows, V], targets int32 [rows], V):
// out[r] = log Σ exp(logits[r] - max) + max - logits[r][targets[r]], the sum
// in double (verify.CrossEntropy). One 256-thread block per row.
__device__ __forceinline__ double block_sum_d(double v, double* red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    double s = lane < nw ? red[lane] : 0.0;
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
    return s;
}

extern "C" __global__ void nll_f32(double* out, const float* logits, const int* targets, int V) {
    __shared__ double red[32];
    __shared__ float redf[32];
    const float* x = logits + (i64)blockIdx.x * V;
    float m = NEG_INF;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, x[i]);
    m = warp_max(m);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) redf[threadIdx.x >> 5] = m;
    __syncthreads();
    m = (int)(threadIdx.x & 31) < (int)(blockDim.x >> 5) ? redf[threadIdx.x & 31] : NEG_INF;
    m = warp_max(m);
    double s = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += exp((double)x[i] - (double)m);
    s = block_sum_d(s, red);
    if (threadIdx.x == 0) out[blockIdx.x] = (double)m + log(s) - (double)x[targets[blockIdx.x]];
}


// score_rows_f32(lp [rows] double, ids [rows, k] int32, top [rows, k] double,
// logits [rows, V], targets int32 [rows], V, k): a prompt's rows scored where
// they are (runtime.RowScorer): lp[r] = logits[r][targets[r]] - lse and the
// k largest entries of row r, in descending order with ties to the lower id,
// as ids and their logits - lse, lse = max + log Σ exp(logits[r] - max), the
// sum in double (the engine's host scoring's arithmetic). Entry j is the
// largest after entry j-1 in that order: one pass over the row each, no
// list of the entries taken. One 256-thread block per row.
__device__ __forceinline__ bool score_before(float v, int i, float w, int j) {
    return v > w || (v == w && i < j);
}
extern "C" __global__ void score_rows_f32(double* lp, int* ids, double* top, const float* logits, const int* targets,
                                          int V, int k) {
    __shared__ double red[32];
    __shared__ float redv[32];
    __shared__ int redi[32];
    const float* x = logits + (i64)blockIdx.x * V;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float m = NEG_INF;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, x[i]);
    m = warp_max(m);
    __syncthreads();
    if (lane == 0) redv[warp] = m;
    __syncthreads();
    m = lane < nw ? redv[lane] : NEG_INF;
    m = warp_max(m);
    double s = 0.0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += exp((double)x[i] - (double)m);
    s = block_sum_d(s, red);
    const double lse = (double)m + log(s);
    if (threadIdx.x == 0) lp[blockIdx.x] = (double)x[targets[blockIdx.x]] - lse;
    // (pv, pi): the entry taken last; the first round takes from all.
    float pv = __int_as_float(0x7f800000);
    int pi = -1;
    for (int j = 0; j < k; j++) {
        float bv = NEG_INF;
        int bi = 0x7fffffff;
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            const float v = x[i];
            if (score_before(pv, pi, v, i) && score_before(v, i, bv, bi)) bv = v, bi = i;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (score_before(ov, oi, bv, bi)) bv = ov, bi = oi;
        }
        __syncthreads();
        if (lane == 0) redv[warp] = bv, redi[warp] = bi;
        __syncthreads();
        bv = lane < nw ? redv[lane] : NEG_INF;
        bi = lane < nw ? redi[lane] : 0x7fffffff;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (score_before(ov, oi, bv, bi)) bv = ov, bi = oi;
        }
        if (threadIdx.x == 0) {
            ids[(i64)blockIdx.x * k + j] = bi;
            top[(i64)blockIdx.x * k + j] = (double)bv - lse;
        }
        pv = bv, pi = bi;
    }
}

// col_squares_T(out [cols] double, x [rows, cols]): out[j] = Σ_r x[r][j]²,
// products and sums in double, the importance matrix's sums (llama.cpp's
// imatrix) of one pass. Block b owns columns [64b, 64b+64): lane l of warp w
// takes columns 64b+l and 64b+32+l over rows w, w+8, …; the 8 warps' sums
// are then added in warp order, so the result does not depend on timing.
// Grid ceil(cols/64) blocks of 256 threads.
#define COL_SQUARES(N, T)                                                                        \
    extern "C" __global__ void col_squares_##N(double* out, const T* x, int rows, int cols) {    \
        __shared__ double part[8][64];                                                           \
        int lane = threadIdx.x & 31, w = threadIdx.x >> 5;                                       \
        int c0 = blockIdx.x * 64 + lane, c1 = c0 + 32;                                           \
        double s0 = 0, s1 = 0;                                                                   \
        for (int r = w; r < rows; r += 8) {                                                      \
            const T* row = x + (i64)r * cols;                                                    \
            if (c0 < cols) {                                                                     \
                double v = to_f32(row[c0]);                                                      \
                s0 += v * v;                                                                     \
            }                                                                                    \
            if (c1 < cols) {                                                                     \
                double v = to_f32(row[c1]);                                                      \
                s1 += v * v;                                                                     \
            }                                                                                    \
        }                                                                                        \
        part[w][lane] = s0;                                                                      \
        part[w][lane + 32] = s1;                                                                 \
        __syncthreads();                                                                         \
        if (w == 0) {                                                                            \
            double t0 = 0, t1 = 0;                                                               \
            _Pragma("unroll") for (int k = 0; k < 8; k++) {                                      \
                t0 += part[k][lane];                                                             \
                t1 += part[k][lane + 32];                                                        \
            }                                                                                    \
            if (c0 < cols) out[c0] = t0;                                                         \
            if (c1 < cols) out[c1] = t1;                                                         \
        }                                                                                        \
    }
FOR_DTYPES(COL_SQUARES)
