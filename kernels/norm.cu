// norm.cu: RMSNorm (transformers MistralRMSNorm) and the fused residual add
// + RMSNorm of a decoder layer.
//
// rmsnorm_T(dst [rows, h], x [rows, h], w [h], h, eps, slots): one block per
// row (grid = rows) of any multiple of 32 threads up to 512 (the backend's
// normThreadsFor: 512 for decode steps of 9-64 rows, else 256); the mean
// of squares is accumulated in
// fp32, inv = 1/sqrt(mean + eps), dst = w * (x * inv) rounded once, column
// i written to column slots[i] when slots (I32 [h], a permutation) is not
// null: the input order of the quantized product that reads it. dst may
// alias x only without slots. With slots, a launch whose dynamic shared
// memory holds h elements of T places the row there first and stores it
// whole (coalesced): scattered 2-byte global stores from the row's one
// block cost ~3 us a row on the H200 (ncu, 4096 columns), the staging a
// few hundred cycles; with less, the stores scatter.
// add_rmsnorm_T(norm, x, delta, w, h, eps, slots): x += delta (rounded to
// T), then norm = rmsnorm(x). Same grid.

extern __shared__ u32x4 smem_norm[];

// norm_stage returns the block's dynamic shared memory as a row of h
// elements of T to place slotted outputs in, or null without slots or
// where it does not hold them.
template <typename T>
__device__ __forceinline__ T* norm_stage(const int* slots, int h) {
    return slots && (unsigned)h * sizeof(T) <= dynamic_smem_bytes() ? (T*)smem_norm : nullptr;
}

template <typename T>
__device__ __forceinline__ void rms_row(T* dst, const T* x, const T* w, int h, float eps, float* red,
                                        const int* __restrict__ slots) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float v = to_f32(x[i]);
        ss += v * v;
    }
    ss = block_sum(ss, red);
    float inv = 1.0f / sqrtf(ss / (float)h + eps);
    T* stage = norm_stage<T>(slots, h);
    T* out = stage ? stage : dst;
    for (int i = threadIdx.x; i < h; i += blockDim.x) out[slots ? slots[i] : i] = from_f32<T>(to_f32(w[i]) * (to_f32(x[i]) * inv));
    if (stage) {
        __syncthreads();
        for (int i = threadIdx.x; i < h; i += blockDim.x) dst[i] = stage[i];
    }
}

#define NORM(N, T)                                                                                     \
    extern "C" __global__ void rmsnorm_##N(T* dst, const T* x, const T* w, int h, float eps, const int* slots) { \
        __shared__ float red[32];                                                                      \
        TRACE_BEGIN(3);                                                                                \
        pdl_launch();                                                                                  \
        pdl_wait();                                                                                    \
        TRACE_MARK(1);                                                                                 \
        i64 r = blockIdx.x;                                                                            \
        rms_row<T>(dst + r * h, x + r * h, w, h, eps, red, slots);                                     \
    }                                                                                                  \
    extern "C" __global__ void add_rmsnorm_##N(T* norm, T* x, const T* delta, const T* w, int h, float eps,   \
                                               const int* slots) {                                     \
        __shared__ float red[32];                                                                      \
        TRACE_BEGIN(4);                                                                                \
        pdl_launch();                                                                                  \
        pdl_wait();                                                                                    \
        TRACE_MARK(1);                                                                                 \
        i64 r = blockIdx.x;                                                                            \
        T* xr = x + r * h;                                                                             \
        const T* dr = delta + r * h;                                                                   \
        for (int i = threadIdx.x; i < h; i += blockDim.x) xr[i] = from_f32<T>(to_f32(xr[i]) + to_f32(dr[i])); \
        __syncthreads();                                                                               \
        rms_row<T>(norm + r * h, xr, w, h, eps, red, slots);                                           \
    }
FOR_DTYPES(NORM)

// rmsnorm_offset_T(dst [rows, h], x [rows, h], w [h], h, eps): Gemma's
// RMSNorm (transformers Gemma3RMSNorm: x * rsqrt(mean(x²) + eps) * (1 +
// w), all in fp32, rounded once); one block a row as rmsnorm_T, without
// slots. dst may alias x (each thread rewrites the elements it read,
// after block_sum's barrier).
#define NORM_OFFSET(N, T)                                                                               \
    extern "C" __global__ void rmsnorm_offset_##N(T* dst, const T* x, const T* w, int h, float eps) {   \
        __shared__ float red[32];                                                                       \
        pdl_launch();                                                                                   \
        pdl_wait();                                                                                     \
        i64 r = blockIdx.x;                                                                             \
        const T* xr = x + r * h;                                                                        \
        T* dr = dst + r * h;                                                                            \
        float ss = 0.0f;                                                                                \
        for (int i = threadIdx.x; i < h; i += blockDim.x) {                                             \
            float v = to_f32(xr[i]);                                                                    \
            ss += v * v;                                                                                \
        }                                                                                               \
        ss = block_sum(ss, red);                                                                        \
        float inv = 1.0f / sqrtf(ss / (float)h + eps);                                                  \
        for (int i = threadIdx.x; i < h; i += blockDim.x)                                               \
            dr[i] = from_f32<T>((to_f32(xr[i]) * inv) * (1.0f + to_f32(w[i])));                         \
    }
FOR_DTYPES(NORM_OFFSET)

// norm_put8: normalized elements 8i..8i+7 of a row (f): to output slots
// a and b in out (the staged row or dst) with slots, else to dst in one
// 16-byte store.
template <typename T>
__device__ __forceinline__ void norm_put8(T* out, T* dst, int i, const float* f, const int* slots, int4 a, int4 b) {
    if (slots) {
        out[a.x] = from_f32<T>(f[0]), out[a.y] = from_f32<T>(f[1]), out[a.z] = from_f32<T>(f[2]), out[a.w] = from_f32<T>(f[3]);
        out[b.x] = from_f32<T>(f[4]), out[b.y] = from_f32<T>(f[5]), out[b.z] = from_f32<T>(f[6]), out[b.w] = from_f32<T>(f[7]);
    } else {
        ((u32x4*)dst)[i] = pack8<T>(f);
    }
}

// norm_sq8 adds the squares of an item's 8 elements to ss, in element
// order, as every v8 norm sums them.
template <typename T>
__device__ __forceinline__ float norm_sq8(u32x4 x, float ss) {
    float f[8];
    unpack8<T>(x, f);
#pragma unroll
    for (int j = 0; j < 8; j++) ss += f[j] * f[j];
    return ss;
}

// norm_flush stores a row staged in shared memory (stage not null) to dst
// whole, h8 16-byte items.
template <typename T>
__device__ __forceinline__ void norm_flush(const T* stage, T* dst, int h8) {
    if (stage) {
        __syncthreads();
        for (int i = threadIdx.x; i < h8; i += blockDim.x) ((u32x4*)dst)[i] = ((const u32x4*)stage)[i];
    }
}

// rmsnorm_v8_T, add_rmsnorm_v8_T: the same for 16-bit rows with h a multiple
// of 8 and 16-byte aligned rows, 8 elements per access.
template <typename T>
__device__ __forceinline__ void rms_row_v8(T* dst, const T* x, const T* w, int h, float eps, float* red,
                                           const int* __restrict__ slots) {
    const u32x4* xv = (const u32x4*)x;
    const u32x4* wv = (const u32x4*)w;
    int h8 = h / 8;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < h8; i += blockDim.x) ss = norm_sq8<T>(xv[i], ss);
    ss = block_sum(ss, red);
    float inv = 1.0f / sqrtf(ss / (float)h + eps);
    T* stage = norm_stage<T>(slots, h);
    T* out = stage ? stage : dst;
    for (int i = threadIdx.x; i < h8; i += blockDim.x) {
        float f[8], g[8];
        unpack8<T>(xv[i], f);
        unpack8<T>(wv[i], g);
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = g[j] * (f[j] * inv);
        if (slots) {
            norm_put8<T>(out, dst, i, f, slots, ((const int4*)slots)[2 * i], ((const int4*)slots)[2 * i + 1]);
        } else {
            norm_put8<T>(out, dst, i, f, slots, int4{}, int4{});
        }
    }
    norm_flush<T>(stage, dst, h8);
}

// add8: eight 16-bit elements a + b, added in fp32 and rounded once.
template <typename T>
__device__ __forceinline__ u32x4 add8(u32x4 a, u32x4 b) {
    float fa[8], fb[8];
    unpack8<T>(a, fa);
    unpack8<T>(b, fb);
#pragma unroll
    for (int j = 0; j < 8; j++) fa[j] += fb[j];
    return pack8<T>(fa);
}

// NORM_NI: the items of 8 elements a thread of the v8 kernels holds in
// registers; rows of up to NORM_NI·256·8 elements (8,192: a 7B's 4,096)
// take norm_v8_regs, longer ones the loops of rms_row_v8.
#define NORM_NI 4

// norm_v8_rows: the v8 kernels' body for a row whose items fit the
// block's registers: weights and output slots loaded before wait(), then
// fill(xr) puts the row's items (8 elements of T each, item
// threadIdx.x + u·blockDim.x in xr[u]) in registers, which are squared,
// normalized and stored.
template <typename T, typename W, typename F>
__device__ __forceinline__ void norm_v8_rows(T* dst, const T* w, int h, float eps, float* red,
                                             const int* __restrict__ slots, W wait, F fill) {
    const int h8 = h / 8;
    u32x4 wr[NORM_NI], xr[NORM_NI];
    int4 sa[NORM_NI], sb[NORM_NI];
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        const int i = threadIdx.x + u * blockDim.x;
        if (i < h8) {
            wr[u] = ((const u32x4*)w)[i];
            if (slots) sa[u] = ((const int4*)slots)[2 * i], sb[u] = ((const int4*)slots)[2 * i + 1];
        }
    }
    wait();
    fill(xr);
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < NORM_NI; u++)
        if (threadIdx.x + u * blockDim.x < h8) ss = norm_sq8<T>(xr[u], ss);
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / (float)h + eps);
    T* stage = norm_stage<T>(slots, h);
    T* out = stage ? stage : dst;
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        const int i = threadIdx.x + u * blockDim.x;
        if (i >= h8) continue;
        float f[8], g[8];
        unpack8<T>(xr[u], f);
        unpack8<T>(wr[u], g);
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = g[j] * (f[j] * inv);
        norm_put8<T>(out, dst, i, f, slots, sa[u], sb[u]);
    }
    norm_flush<T>(stage, dst, h8);
}

// norm_v8_regs: the v8 kernels' body for a row whose items fit the block's
// registers (ADD: x += delta first, written back). The weights and output
// slots are the model's, loaded before wait() (the kernel's wait for the
// one ahead); x (and delta) are then read once, and squared, normalized and
// stored from registers: one round trip to L2 after the wait instead of
// three. Same items a thread and the same order of sums as rms_row_v8, so
// the same bits. (norm_v8_rows with the loads after the wait as fill.)
template <typename T, bool ADD, typename W>
__device__ __forceinline__ void norm_v8_regs(T* dst, T* x, const T* delta, const T* w, int h, float eps, float* red,
                                             const int* __restrict__ slots, W wait) {
    norm_v8_rows<T>(dst, w, h, eps, red, slots, wait, [&](u32x4* xr) {
        const int h8 = h / 8;
#pragma unroll
        for (int u = 0; u < NORM_NI; u++) {
            const int i = threadIdx.x + u * blockDim.x;
            if (i < h8) xr[u] = ((const u32x4*)x)[i];
        }
        if constexpr (ADD) {
            u32x4 dr[NORM_NI];
#pragma unroll
            for (int u = 0; u < NORM_NI; u++) {
                const int i = threadIdx.x + u * blockDim.x;
                if (i < h8) dr[u] = ((const u32x4*)delta)[i];
            }
#pragma unroll
            for (int u = 0; u < NORM_NI; u++) {
                const int i = threadIdx.x + u * blockDim.x;
                if (i < h8) {
                    xr[u] = add8<T>(xr[u], dr[u]);
                    ((u32x4*)x)[i] = xr[u];
                }
            }
        }
    });
}

// PARTS_MAX: the most splits norm_v8_parts adds up (a cluster's 8, which
// bounds the plain wide kernels' splits: runtime/cuda maxClusterBlocks).
#define PARTS_MAX 8

// parts_item: item i (8 elements) of x plus the S splits' sums of part
// (split y at part + y·ldp), added in split order from 0.0f and then to x
// as qgemv.cu's qout adds a residual, rounded once; every split's loads in
// flight at once (S <= PARTS_MAX).
template <typename T>
__device__ __forceinline__ u32x4 parts_item(const float* part, int S, i64 ldp, const T* x, int i) {
    float4 a[PARTS_MAX], b[PARTS_MAX];
#pragma unroll
    for (int y = 0; y < PARTS_MAX; y++)
        if (y < S) {
            a[y] = __ldcg((const float4*)(part + y * ldp) + 2 * i);
            b[y] = __ldcg((const float4*)(part + y * ldp) + 2 * i + 1);
        }
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = 0.0f;
#pragma unroll
    for (int y = 0; y < PARTS_MAX; y++)
        if (y < S) {
            v[0] += a[y].x, v[1] += a[y].y, v[2] += a[y].z, v[3] += a[y].w;
            v[4] += b[y].x, v[5] += b[y].y, v[6] += b[y].z, v[7] += b[y].w;
        }
    float f[8];
    unpack8<T>(((const u32x4*)x)[i], f);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] += f[j];
    return pack8<T>(v);
}

// norm_v8_parts: x += the S splits' fp32 sums of a product left in parts
// (part [S][rows][h] from this row's, qgemv.cu QF_PARTS), added in split
// order from 0.0f and then to x as qgemv.cu's qout adds a residual, rounded
// once and written back; then the norm as norm_v8_regs: the bits of the
// product's own epilogue followed by rmsnorm_v8.
template <typename T, typename W>
__device__ __forceinline__ void norm_v8_parts(T* dst, T* x, const float* part, int S, i64 ldp, const T* w, int h,
                                              float eps, float* red, const int* __restrict__ slots, W wait) {
    norm_v8_rows<T>(dst, w, h, eps, red, slots, wait, [&](u32x4* xr) {
        const int h8 = h / 8;
#pragma unroll
        for (int u = 0; u < NORM_NI; u++) {
            const int i = threadIdx.x + u * blockDim.x;
            if (i >= h8) continue;
            xr[u] = parts_item<T>(part, S, ldp, x, i);
            ((u32x4*)x)[i] = xr[u];
        }
    });
}

// NORM_PROLOGUE(kind): the v8 kernels' start: the block's reduction
// space, the trace, the next kernel let launch, the row r and wait(), the
// wait for the kernel ahead.
#define NORM_PROLOGUE(kind)      \
    __shared__ float red[32];    \
    TRACE_BEGIN(kind);           \
    pdl_launch();                \
    i64 r = blockIdx.x;          \
    auto wait = [&]() {          \
        pdl_wait();              \
        TRACE_MARK(1);           \
    }

#define NORM_V8(N, T)                                                                                     \
    extern "C" __global__ void rmsnorm_v8_##N(T* dst, const T* x, const T* w, int h, float eps, const int* slots) { \
        NORM_PROLOGUE(3);                                                                                 \
        if (h / 8 <= NORM_NI * (int)blockDim.x) {                                                         \
            norm_v8_regs<T, false>(dst + r * h, (T*)x + r * h, nullptr, w, h, eps, red, slots, wait);     \
            return;                                                                                       \
        }                                                                                                 \
        wait();                                                                                           \
        rms_row_v8<T>(dst + r * h, x + r * h, w, h, eps, red, slots);                                     \
    }                                                                                                     \
    extern "C" __global__ void add_rmsnorm_v8_##N(T* norm, T* x, const T* delta, const T* w, int h, float eps,   \
                                                  const int* slots) {                                     \
        NORM_PROLOGUE(4);                                                                                 \
        if (h / 8 <= NORM_NI * (int)blockDim.x) {                                                         \
            norm_v8_regs<T, true>(norm + r * h, x + r * h, delta + r * h, w, h, eps, red, slots, wait);   \
            return;                                                                                       \
        }                                                                                                 \
        wait();                                                                                           \
        u32x4* xr = (u32x4*)(x + r * h);                                                                  \
        const u32x4* dr = (const u32x4*)(delta + r * h);                                                  \
        for (int i = threadIdx.x; i < h / 8; i += blockDim.x) xr[i] = add8<T>(xr[i], dr[i]);              \
        __syncthreads();                                                                                  \
        rms_row_v8<T>(norm + r * h, x + r * h, w, h, eps, red, slots);                                    \
    }
NORM_V8(f16, f16)
NORM_V8(bf16, bf16)

// rmsnorm_parts_v8_T(norm, x, part, S, rows, w, h, eps, slots): x += the S
// splits of a product's sums left in part [S, rows, h] (norm_v8_parts),
// then norm = rmsnorm(x); one block a row whose items fit its registers
// (h/8 <= NORM_NI·blockDim.x: runtime/cuda checks).
#define NORM_PARTS(N, T)                                                                                  \
    extern "C" __global__ void rmsnorm_parts_v8_##N(T* norm, T* x, const float* part, int S, int rows,     \
                                                    const T* w, int h, float eps, const int* slots) {     \
        NORM_PROLOGUE(3);                                                                                 \
        norm_v8_parts<T>(norm + r * h, x + r * h, part + r * h, S, (i64)rows * h, w, h, eps, red, slots, wait); \
    }
NORM_PARTS(f16, f16)
NORM_PARTS(bf16, bf16)

// rmsnorm_parts_cl_v8_T(norm, x, part, S, rows, w, h, eps, slots): the same
// over a cluster of PCL blocks a row (grid (rows, PCL), clusters of PCL
// along y; runtime/cuda GPTQTOOL_DOWN_NORM=2, the default): block b adds up
// the parts of items [b·I, (b+1)·I) of the row (I = h/(8·PCL), at most
// NORM_NI a thread), writes x back (the same bits as rmsnorm_parts_v8;
// stored last) and sums its squares. It pushes its sum into every block's
// allss (after a wait on the arrival each block made as it started, so
// that all have started); after one cluster barrier, each block adds the
// blocks' sums up from its own shared memory in rank order (the norm's
// bits may differ from the one-block kernel's in the last place: another
// order of the squares' sum) and normalizes its items, stored straight to
// global memory (with slots, one element at a time to its slot). No
// barrier precedes the blocks' exit: none reads another's shared memory.
// (Against a first version that read each block's sum across the cluster
// and staged slotted outputs in the owning block's shared memory, two
// cluster barriers: +0.7% at 4 bits and +0.45% at 8 at batch 1 on the
// H200, docs/benchmarks.md, the thirtieth session.)
#define PCL 8
#define PCL_ELEMS 2048
template <typename T>
__device__ __forceinline__ void norm_parts_cl(T* dst, T* x, const float* part, int S, i64 ldp, const T* w, int h,
                                              float eps, const int* __restrict__ slots) {
    __shared__ float red[32];
    __shared__ float allss[PCL];
    TRACE_BEGIN(3);
    pdl_launch();
    cluster_arrive();  // (waited for before the pushes)
    const u32 rank = cluster_y();
    const int I = h / (8 * PCL), i0 = (int)rank * I;
    u32x4 wr[NORM_NI], xr[NORM_NI];
    int4 sa[NORM_NI], sb[NORM_NI];
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        const int k = threadIdx.x + u * blockDim.x, i = i0 + k;
        if (k < I) {
            wr[u] = ((const u32x4*)w)[i];
            if (slots) sa[u] = ((const int4*)slots)[2 * i], sb[u] = ((const int4*)slots)[2 * i + 1];
        }
    }
    pdl_wait();
    TRACE_MARK(1);
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        const int k = threadIdx.x + u * blockDim.x, i = i0 + k;
        if (k >= I) continue;
        xr[u] = parts_item<T>(part, S, ldp, x, i);
        ss = norm_sq8<T>(xr[u], ss);
    }
    ss = block_sum(ss, red);
    cluster_wait();  // every block has started
#if __CUDA_ARCH__ >= 900
    if (threadIdx.x < PCL)
        asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(cluster_addr(&allss[rank], cluster_rank_of(0, threadIdx.x))),
                     "f"(ss)
                     : "memory");
#endif
    cluster_sync();  // every block's sum in this one's allss
    float tot = 0.0f;
    for (int c = 0; c < PCL; c++) tot += allss[c];
    const float inv = 1.0f / sqrtf(tot / (float)h + eps);
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        const int k = threadIdx.x + u * blockDim.x, i = i0 + k;
        if (k >= I) continue;
        float f[8], g[8];
        unpack8<T>(xr[u], f);
        unpack8<T>(wr[u], g);
#pragma unroll
        for (int j = 0; j < 8; j++) f[j] = g[j] * (f[j] * inv);
        norm_put8<T>(dst, dst, i, f, slots, sa[u], sb[u]);
    }
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        const int k = threadIdx.x + u * blockDim.x;
        if (k < I) ((u32x4*)x)[i0 + k] = xr[u];
    }
}
#define NORM_PARTS_CL(N, T)                                                                               \
    extern "C" __global__ void rmsnorm_parts_cl_v8_##N(T* norm, T* x, const float* part, int S, int rows,  \
                                                       const T* w, int h, float eps, const int* slots) {  \
        const i64 r = blockIdx.x;                                                                         \
        norm_parts_cl<T>(norm + r * h, x + r * h, part + r * h, S, (i64)rows * h, w, h, eps, slots);      \
    }
NORM_PARTS_CL(f16, f16)
NORM_PARTS_CL(bf16, bf16)
