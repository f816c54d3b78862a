// rownorm.cuh: the RMSNorm of a row by one block (norm.cu's v8 kernels, and
// qgemv.cu's _na kernels, which normalize the row their product wrote), so
// that both give the same bits. Included by those two files (kernels.Source).

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

// norm_flush stores a row staged in shared memory (stage not null) to dst
// whole, h8 16-byte items.
template <typename T>
__device__ __forceinline__ void norm_flush(const T* stage, T* dst, int h8) {
    if (stage) {
        __syncthreads();
        for (int i = threadIdx.x; i < h8; i += blockDim.x) ((u32x4*)dst)[i] = ((const u32x4*)stage)[i];
    }
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

// norm_v8_regs: the v8 kernels' body for a row whose items fit the block's
// registers (ADD: x += delta first, written back), the row staged where
// stage_of() says (norm.cu's norm_stage; null: stored as it goes); CG reads
// x from L2 (a row other blocks of the same kernel wrote: qgemv.cu's _na
// kernels). The weights and output
// slots are the model's, loaded before wait() (the kernel's wait for the
// one ahead); x (and delta) are then read once, and squared, normalized and
// stored from registers: one round trip to L2 after the wait instead of
// three. Same items a thread and the same order of sums as rms_row_v8, so
// the same bits.
template <typename T, bool ADD, bool CG = false, typename W, typename S>
__device__ __forceinline__ void norm_v8_regs(T* dst, T* x, const T* delta, const T* w, int h, float eps, float* red,
                                             const int* __restrict__ slots, W wait, S stage_of) {
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
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        const int i = threadIdx.x + u * blockDim.x;
        if (i < h8) {
            if constexpr (CG) {
                const uint4 v = __ldcg((const uint4*)x + i);
                xr[u] = u32x4{v.x, v.y, v.z, v.w};
            } else {
                xr[u] = ((const u32x4*)x)[i];
            }
        }
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
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < NORM_NI; u++) {
        if (threadIdx.x + u * blockDim.x < h8) {
            float f[8];
            unpack8<T>(xr[u], f);
#pragma unroll
            for (int j = 0; j < 8; j++) ss += f[j] * f[j];
        }
    }
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / (float)h + eps);
    T* stage = stage_of();
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
