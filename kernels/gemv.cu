// gemv.cu: y [M, N] fp32 = x [M, K] · w [N, K]ᵀ for a few rows of 16-bit
// x and w (M = 1..4, K a multiple of 8, 16-byte aligned rows): the head's
// logits in a decode step, where cuBLAS's GEMV reads the 262 MB of an fp16
// 7B head at 2.8 TB/s (runtime/cuda linear, GPTQTOOL_GEMV).
//
// gemv_rows_mM_T(y, x, w, N, K, ef): 256 threads, eight warps, each warp two
// rows of w (two outputs), 16 columns a block, grid ceil(N/16). A lane
// reads 16-byte pieces k8 = lane, lane+32, ... of its two rows, GV_U of
// each in flight at once (the first before waiting for the previous
// kernel: w is the model's; with ef, under the L2 policy evict_first),
// and the same pieces of x (L1), and sums in fp32; the warp adds up its
// lanes.

#define GV_U 4

template <typename T, int M>
__device__ void gemv_rows(float* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w, int N, int K, int ef) {
    TRACE_BEGIN(6);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n0 = (blockIdx.x * 8 + warp) * 2, K8 = K / 8;
    const uint4* w0 = (const uint4*)(w + (i64)imin(n0, N - 1) * K);
    const uint4* w1 = (const uint4*)(w + (i64)imin(n0 + 1, N - 1) * K);
    float acc[2][M];
#pragma unroll
    for (int m = 0; m < M; m++) acc[0][m] = acc[1][m] = 0.0f;
    uint4 a[GV_U], b[GV_U];
    const u64 wpol = l2_policy(ef);
    auto fetch = [&](int k0) {
#pragma unroll
        for (int u = 0; u < GV_U; u++) {
            const int k8 = k0 + 32 * u;
            if (k8 < K8) a[u] = ldg_pol(w0 + k8, wpol), b[u] = ldg_pol(w1 + k8, wpol);
        }
    };
    fetch(lane);
    pdl_wait();
    TRACE_MARK(1);
    for (int k0 = lane; k0 < K8; k0 += 32 * GV_U) {
        uint4 ca[GV_U], cb[GV_U];
#pragma unroll
        for (int u = 0; u < GV_U; u++) ca[u] = a[u], cb[u] = b[u];
        fetch(k0 + 32 * GV_U);  // the next pieces in flight while these are summed
#pragma unroll
        for (int u = 0; u < GV_U; u++) {
            const int k8 = k0 + 32 * u;
            if (k8 >= K8) break;
            float fa[8], fb[8];
            unpack8<T>(u32x4{ca[u].x, ca[u].y, ca[u].z, ca[u].w}, fa);
            unpack8<T>(u32x4{cb[u].x, cb[u].y, cb[u].z, cb[u].w}, fb);
#pragma unroll
            for (int m = 0; m < M; m++) {
                const uint4 xv = __ldg((const uint4*)(x + (i64)m * K) + k8);
                float fx[8];
                unpack8<T>(u32x4{xv.x, xv.y, xv.z, xv.w}, fx);
#pragma unroll
                for (int j = 0; j < 8; j++) acc[0][m] += fa[j] * fx[j], acc[1][m] += fb[j] * fx[j];
            }
        }
    }
    TRACE_MARK(3);
    pdl_launch();
#pragma unroll
    for (int m = 0; m < M; m++) {
        const float s0 = warp_sum(acc[0][m]), s1 = warp_sum(acc[1][m]);
        if (lane == 0) {
            if (n0 < N) y[(i64)m * N + n0] = s0;
            if (n0 + 1 < N) y[(i64)m * N + n0 + 1] = s1;
        }
    }
}

#define GEMV_M(N, T, M)                                                                                          \
    extern "C" __global__ void __launch_bounds__(256) gemv_rows_m##M##_##N(float* y, const T* x, const T* w, int n, \
                                                                           int k, int ef) {                      \
        gemv_rows<T, M>(y, x, w, n, k, ef);                                                                      \
    }
#define GEMV(N, T) GEMV_M(N, T, 1) GEMV_M(N, T, 2) GEMV_M(N, T, 3) GEMV_M(N, T, 4)
GEMV(f16, f16)
GEMV(bf16, bf16)
