// qgemv.cu: matrix products with group-quantized weights (runtime/cuda
// quant.go), 4 and 8 bits.
//
// Weight layout, made once at load from runtime.QuantWeight (act order
// already sequential):
//   qw   u32 [R, N], R = K/KP, KP = 32/BITS inputs a word: word (r, n) holds
//        the codes of sequential inputs k = r*KP + j at bits j*BITS, LSB
//        first (GPTQ's qweight packing);
//   sz   u32 [G, N]: the fp16 pair (scale, 1024 + zero) of group g, column n,
//        the scale in the low half;
//   perm i32 [K] or null: sequential input k reads x column perm[k];
//   group of sequential input k: k / gs (gs a multiple of KP).
//
// qgemv<BITS, M, T>: out[m, n] = (res ? res[m, n] : 0) + Σ_k x[m, perm[k]] · w[k, n]
// for M <= 8 rows, the memory-bound decode product. x [M, ldx] T, out and res
// [M, N] T (res may be out). Grid (ceil(N/128), S), 256 threads: a block owns
// 128 columns (4 a lane, one 16-byte load per word row) and word rows
// [y*rps, (y+1)*rps); its 8 warps take every 8th row. The block first stages
// its slice of x, gathered through perm and scaled by 2^-XS, as fp16 pairs in
// shared memory. Codes become fp16 exactly ((c | 0x6400) is 1024 + c), minus
// (1024 + zero) exactly, so that one fma.f16x2 multiplies two codes by two
// inputs; each word's 4 (8-bit: 2) products a half are summed in fp16 (the
// 2^-XS scale keeps them far from overflow) and added to an fp32 sum with the
// scale. With S > 1 the blocks of a column slab write fp32 partial sums to
// part [S, M, N] and the last one to finish (a counter per slab in count,
// left at zero again) adds them up and writes out.
//
// Fused weights (LoadQuantSplit, LoadQuantGLU) run through the same kernel:
// split output columns go to up to three tensors, [0, seg1) to out0 [M, seg1],
// [seg1, seg2) to out1 [M, seg2-seg1], [seg2, N) to out2 [M, N-seg2] (one
// tensor: seg1 = seg2 = N); with glu, the columns are gate and up interleaved
// in runs of 64 (a block's 128 columns are gate and up of the same 64
// outputs) and out0 [M, N/2] = silu(gate)·up, from the fp32 sums.
// glu_rows<T> is that epilogue for the dequantize + cuBLAS path: dst [M, N/2]
// from the product src [M, N] in the interleaved order.
//
// qdequant<BITS, T>: w [N, K] T, w[n, k] = scale·(code − zero) in sequential
// input order, for the prefill path (dequantize, then cuBLAS) and the forced
// reference; gather_cols<T> gives that product its input, xp[m, k] =
// x[m, perm[k]]. qdequant: grid (ceil(N/32), ceil(R/32)), block (32, 8); a
// 32×32 tile of words goes through shared memory so that both the reads (along
// n) and the writes (along k) are coalesced.

#define QCOLS 128
#define QWARPS 8

__device__ __forceinline__ u32 hsub2(u32 a, u32 b) {
    u32 d;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

__device__ __forceinline__ u32 hfma2(u32 a, u32 b, u32 c) {
    u32 d;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

__device__ __forceinline__ float h2sum(u32 a) {
    float lo, hi;
    asm("{.reg .f16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h;}" : "=f"(lo), "=f"(hi) : "r"(a));
    return lo + hi;
}

__device__ __forceinline__ float h_lo(u32 a) {
    f16 h;
    h.x = (u16)(a & 0xffffu);
    return to_f32(h);
}

__device__ __forceinline__ u32 ldg_u32(const u32* p) {
    u32 v;
    asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}

__device__ __forceinline__ u32x4 ldg_u32x4(const u32* p) {
    u32x4 v;
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.a), "=r"(v.b), "=r"(v.c), "=r"(v.d) : "l"(p));
    return v;
}

__device__ __forceinline__ float ldcg_f32(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

__device__ __forceinline__ u32 word_of(const u32x4& v, int i) {
    return i == 0 ? v.a : i == 1 ? v.b : i == 2 ? v.c : v.d;
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }

// qout writes the finished sums of a block's columns, tot [M][QCOLS] in
// shared memory, to their outputs (see the header: split or glu).
template <int M, typename T>
__device__ __forceinline__ void qout(const float* tot, T* out0, T* out1, T* out2, const T* res, int seg1, int seg2,
                                     int glu, int col0, int N) {
    if (glu) {
        const int No = N / 2;
        for (int e = threadIdx.x; e < M * (QCOLS / 2); e += blockDim.x) {
            const int m = e / (QCOLS / 2), j = e % (QCOLS / 2);
            if (col0 + j >= N) continue;
            const float g = tot[m * QCOLS + j], u = tot[m * QCOLS + QCOLS / 2 + j];
            out0[(i64)m * No + col0 / 2 + j] = from_f32<T>(silu_f(g) * u);
        }
        return;
    }
    for (int e = threadIdx.x; e < M * QCOLS; e += blockDim.x) {
        const int m = e / QCOLS, n = col0 + e % QCOLS;
        if (n >= N) continue;
        T* o;
        int w, c;
        if (n < seg1) {
            o = out0, w = seg1, c = n;
        } else if (n < seg2) {
            o = out1, w = seg2 - seg1, c = n - seg1;
        } else {
            o = out2, w = N - seg2, c = n - seg2;
        }
        float v = tot[e];
        if (res) v += to_f32(res[(i64)m * w + c]);
        o[(i64)m * w + c] = from_f32<T>(v);
    }
}

template <int BITS, int M, typename T>
__device__ void qgemv(T* __restrict__ out0, T* out1, T* out2, int seg1, int seg2, int glu, const T* res,
                      const T* __restrict__ x, int ldx, const u32* __restrict__ qw, const u32* __restrict__ sz,
                      const int* __restrict__ perm, float* part, u32* count, int K, int N, int gs, int rps) {
    constexpr int KP = 32 / BITS;      // inputs a word
    constexpr int P = KP / 2;          // fp16 pairs a word
    constexpr u32 MASK = BITS == 4 ? 0x000F000Fu : 0x00FF00FFu;
    constexpr float XS = BITS == 4 ? 1.0f / 128.0f : 1.0f / 1024.0f;
    extern __shared__ u32x4 smem_q[];
    u32* smem = (u32*)smem_q;
    const int R = K / KP;
    const int r0 = blockIdx.y * rps, r1 = imin(R, r0 + rps), nr = r1 - r0;
    const int col0 = blockIdx.x * QCOLS;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u32* xs = smem;                                 // [M][rps*P] fp16 pairs
    float* red = (float*)(smem + M * rps * P);      // [QWARPS][M][QCOLS]

    // Stage x: pair i of row r is (x[k], x[k + P]), k = r*KP + i.
    for (int e = threadIdx.x; e < M * nr * P; e += blockDim.x) {
        int m = e / (nr * P), rem = e % (nr * P), r = r0 + rem / P, i = rem % P;
        int ka = r * KP + i, kb = ka + P;
        if (perm) {
            ka = perm[ka];
            kb = perm[kb];
        }
        float a = to_f32(x[(i64)m * ldx + ka]) * XS, b = to_f32(x[(i64)m * ldx + kb]) * XS;
        xs[m * (rps * P) + rem] = pack2<f16>(a, b);
    }
    __syncthreads();

    const int c = col0 + lane * 4;
    float acc[M][4];
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[m][j] = 0.0f;
    if (c < N) {
        int gcur = -1;
        float s[4];
        u32 zz[4];
        constexpr int U = 4;
        for (int rb = r0 + warp; rb < r1; rb += QWARPS * U) {
            u32x4 w[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                int r = rb + u * QWARPS;
                if (r < r1) w[u] = ldg_u32x4(qw + (i64)r * N + c);
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                int r = rb + u * QWARPS;
                if (r < r1) {
                    int g = r * KP / gs;
                    if (g != gcur) {
                        gcur = g;
                        u32x4 p = ldg_u32x4(sz + (i64)g * N + c);
#pragma unroll
                        for (int j = 0; j < 4; j++) {
                            u32 v = word_of(p, j);
                            s[j] = h_lo(v) / XS;
                            zz[j] = (v >> 16) | (v & 0xffff0000u);
                        }
                    }
                    const u32* xr = xs + (r - r0) * P;
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        u32 word = word_of(w[u], j);
                        u32 h[M];
#pragma unroll
                        for (int m = 0; m < M; m++) h[m] = 0;
#pragma unroll
                        for (int i = 0; i < P; i++) {
                            u32 d = hsub2(((word >> (BITS * i)) & MASK) | 0x64006400u, zz[j]);
#pragma unroll
                            for (int m = 0; m < M; m++) h[m] = hfma2(d, xr[m * (rps * P) + i], h[m]);
                        }
#pragma unroll
                        for (int m = 0; m < M; m++) acc[m][j] += s[j] * h2sum(h[m]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int j = 0; j < 4; j++) red[(warp * M + m) * QCOLS + lane * 4 + j] = acc[m][j];
    __syncthreads();

    // Each thread owns columns e of every warp's sums, so the total can go
    // in place of warp 0's (tot = red).
    const int S = gridDim.y;
    float* tot = red;
    for (int e = threadIdx.x; e < M * QCOLS; e += blockDim.x) {
        int m = e / QCOLS, n = col0 + e % QCOLS;
        float v = 0.0f;
#pragma unroll
        for (int wp = 0; wp < QWARPS; wp++) v += red[(wp * M + m) * QCOLS + e % QCOLS];
        if (S == 1) {
            tot[e] = v;
        } else if (n < N) {
            part[((i64)blockIdx.y * M + m) * N + n] = v;
        }
    }
    if (S > 1) {
        __threadfence();
        __syncthreads();
        __shared__ int last;
        if (threadIdx.x == 0) last = atomicAdd(count + blockIdx.x, 1u) == (u32)(S - 1);
        __syncthreads();
        if (!last) return;
        __threadfence();
        for (int e = threadIdx.x; e < M * QCOLS; e += blockDim.x) {
            int m = e / QCOLS, n = col0 + e % QCOLS;
            float v = 0.0f;
            if (n < N)
                for (int y = 0; y < S; y++) v += ldcg_f32(part + ((i64)y * M + m) * N + n);
            tot[e] = v;
        }
        if (threadIdx.x == 0) count[blockIdx.x] = 0;
    }
    __syncthreads();
    qout<M, T>(tot, out0, out1, out2, res, seg1, seg2, glu, col0, N);
}

template <int BITS, typename T>
__device__ void qdequant(T* __restrict__ w, const u32* __restrict__ qw, const u32* __restrict__ sz, int K, int N, int gs) {
    constexpr int KP = 32 / BITS;
    constexpr u32 CODE = (1u << BITS) - 1;
    __shared__ u32 tile[32][33];
    const int R = K / KP;
    const int n0 = blockIdx.x * 32, r0 = blockIdx.y * 32, tx = threadIdx.x, ty = threadIdx.y;
    for (int rr = ty; rr < 32; rr += 8) {
        int r = r0 + rr, n = n0 + tx;
        tile[rr][tx] = r < R && n < N ? qw[(i64)r * N + n] : 0u;
    }
    __syncthreads();
    const int r = r0 + tx;
    if (r >= R) return;
    const int g = r * KP / gs;
    for (int nn = ty; nn < 32 && n0 + nn < N; nn += 8) {
        int n = n0 + nn;
        u32 word = tile[tx][nn], p = sz[(i64)g * N + n];
        float s = h_lo(p), z = h_lo(p >> 16) - 1024.0f;
        T* dst = w + (i64)n * K + r * KP;
#pragma unroll
        for (int j = 0; j < KP; j++) dst[j] = from_f32<T>(s * ((float)((word >> (BITS * j)) & CODE) - z));
    }
}

template <typename T>
__device__ void glu_rows(T* __restrict__ dst, const T* __restrict__ src, int M, int N) {
    const int No = N / 2;
    for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < (i64)M * No; t += (i64)gridDim.x * blockDim.x) {
        const i64 m = t / No;
        const int j = (int)(t % No), c = (j / (QCOLS / 2)) * QCOLS + j % (QCOLS / 2);
        dst[t] = from_f32<T>(silu_f(to_f32(src[m * N + c])) * to_f32(src[m * N + c + QCOLS / 2]));
    }
}

template <typename T>
__device__ void gather_cols(T* __restrict__ dst, const T* __restrict__ x, const int* __restrict__ perm, int M, int K) {
    for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < (i64)M * K; t += (i64)gridDim.x * blockDim.x) {
        i64 m = t / K;
        dst[t] = x[m * K + perm[t % K]];
    }
}

#define QGEMV(BITS, M, T, NAME)                                                                                \
    extern "C" __global__ void __launch_bounds__(256) qgemv##BITS##_m##M##_##NAME(                              \
        T* out0, T* out1, T* out2, int seg1, int seg2, int glu, const T* res, const T* x, int ldx, const u32* qw, \
        const u32* sz, const int* perm, float* part, u32* count, int K, int N, int gs, int rps) {                 \
        qgemv<BITS, M, T>(out0, out1, out2, seg1, seg2, glu, res, x, ldx, qw, sz, perm, part, count, K, N, gs,    \
                          rps);                                                                                  \
    }

#define QGEMV_M(BITS, T, NAME) \
    QGEMV(BITS, 1, T, NAME)    \
    QGEMV(BITS, 2, T, NAME)    \
    QGEMV(BITS, 3, T, NAME)    \
    QGEMV(BITS, 4, T, NAME)    \
    QGEMV(BITS, 5, T, NAME)    \
    QGEMV(BITS, 6, T, NAME)    \
    QGEMV(BITS, 7, T, NAME)    \
    QGEMV(BITS, 8, T, NAME)

QGEMV_M(4, f16, f16)
QGEMV_M(4, bf16, bf16)
QGEMV_M(4, float, f32)
QGEMV_M(8, f16, f16)
QGEMV_M(8, bf16, bf16)
QGEMV_M(8, float, f32)

#define QDEQUANT(BITS, T, NAME)                                                                             \
    extern "C" __global__ void qdequant##BITS##_##NAME(T* w, const u32* qw, const u32* sz, int K, int N, int gs) { \
        qdequant<BITS, T>(w, qw, sz, K, N, gs);                                                                   \
    }

QDEQUANT(4, f16, f16)
QDEQUANT(4, bf16, bf16)
QDEQUANT(4, float, f32)
QDEQUANT(8, f16, f16)
QDEQUANT(8, bf16, bf16)
QDEQUANT(8, float, f32)

#define GATHER(T, NAME)                                                                                   \
    extern "C" __global__ void gather_cols_##NAME(T* dst, const T* x, const int* perm, int M, int K) { \
        gather_cols<T>(dst, x, perm, M, K);                                                            \
    }

#define GLU_ROWS(T, NAME)                                                                   \
    extern "C" __global__ void glu_rows_##NAME(T* dst, const T* src, int M, int N) { \
        glu_rows<T>(dst, src, M, N);                                                     \
    }

GLU_ROWS(f16, f16)
GLU_ROWS(bf16, bf16)
GLU_ROWS(float, f32)

GATHER(f16, f16)
GATHER(bf16, bf16)
GATHER(float, f32)
