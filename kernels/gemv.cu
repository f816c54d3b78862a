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

// gemm_rows_tc_tMT_T(y, x, w, N, K, ef): the same product for 5..64 rows
// (MT tiles of 8 rows: 1, 2, 4, 8) on tensor cores (mma.sync m16n8k16,
// fp32 sums), K a multiple of 32: cuBLAS reads the head at 2.8 TB/s at 32
// rows too. 256 threads, eight warps, each warp 32 rows of w (two tiles of
// 16), a block 256, grid ceil(N/256). The inputs of a tile's 32-input
// block are taken in the order its lanes load them: lane (g, t) loads the
// 16 bytes 8t..8t+7 of rows g and g+8 (A) and of x's rows g, g+8, ... (B),
// and its pairs 0 and 1 are the first k-step's, 2 and 3 the second's, so
// that A and B agree on which input each pair is and one 16-byte load
// feeds two k-steps (the sum over k does not care in which order). w is
// read GT_U blocks ahead in registers (the first before waiting for the
// previous kernel; with ef under evict_first), x staged in shared memory
// in phases of KP inputs (cp.async), its rows 64 bytes longer than KP so
// that the eight lanes of a 16-byte load's phase hit distinct banks.
#define GT_U 4

template <typename T, int MT>
__device__ void gemm_rows_tc(float* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w, int N, int K, int ef,
                             int M) {
    constexpr int KP = MT <= 4 ? 2048 : 1024, LD = KP + 32;
    extern __shared__ u32x4 smem_g[];
    T* xs = (T*)smem_g;  // [8·MT][LD]
    TRACE_BEGIN(6);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int v0 = blockIdx.x * 256 + warp * 32;
    const uint4* wr[4];  // rows g, g+8 of the warp's two tiles
#pragma unroll
    for (int r = 0; r < 4; r++) wr[r] = (const uint4*)(w + (i64)imin(v0 + g + 8 * r, N - 1) * K) + t;
    float acc[2][MT][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < MT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    const int K32 = K / 32;
    const u64 wpol = l2_policy(ef);
    uint4 a[GT_U][4];
    auto fetch = [&](int kb, uint4(&f)[4]) {
        if (kb < K32)
#pragma unroll
            for (int r = 0; r < 4; r++) f[r] = ldg_pol(wr[r] + kb * 4, wpol);
    };
#pragma unroll
    for (int u = 0; u < GT_U; u++) fetch(u, a[u]);
    pdl_wait();
    TRACE_MARK(1);
    const u32 xs0 = smem_addr(xs);
    auto stage = [&](int k0) {
        const int kn = imin(KP, K - k0) / 8;
        for (int e = threadIdx.x; e < 8 * MT * kn; e += 256) {
            const int m = e / kn, c = e - m * kn;
            cp_async16(xs0 + (m * LD + c * 8) * 2, x + (i64)imin(m, M - 1) * K + k0 + c * 8);
        }
        asm volatile("cp.async.commit_group;\n\tcp.async.wait_all;" ::: "memory");
        __syncthreads();
    };
    for (int k0 = 0; k0 < K; k0 += KP) {
        if (k0 > 0) __syncthreads();  // every warp is done with the last phase
        stage(k0);
        const int nb = imin(KP, K - k0) / 32;
        for (int b0 = 0; b0 < nb; b0 += GT_U) {
#pragma unroll
            for (int u = 0; u < GT_U; u++) {
                if (b0 + u >= nb) break;
                const int kb = k0 / 32 + b0 + u;
                uint4 c[4];
#pragma unroll
                for (int r = 0; r < 4; r++) c[r] = a[u][r];
                fetch(kb + GT_U, a[u]);
                u32 bx[MT][4];
#pragma unroll
                for (int j = 0; j < MT; j++) {
                    const u32x4 v = lds128(xs0 + ((8 * j + g) * LD + (b0 + u) * 32 + 8 * t) * 2);
                    bx[j][0] = v.a, bx[j][1] = v.b, bx[j][2] = v.c, bx[j][3] = v.d;
                }
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    // k-step 0: pairs 0 (a0, a1) and 1 (a2, a3); k-step 1: pairs 2 and 3.
                    const u32 s0[4] = {c[2 * i].x, c[2 * i + 1].x, c[2 * i].y, c[2 * i + 1].y};
                    const u32 s1[4] = {c[2 * i].z, c[2 * i + 1].z, c[2 * i].w, c[2 * i + 1].w};
#pragma unroll
                    for (int j = 0; j < MT; j++) {
                        mma16816<T>(acc[i][j], s0, bx[j][0], bx[j][1]);
                        mma16816<T>(acc[i][j], s1, bx[j][2], bx[j][3]);
                    }
                }
            }
        }
    }
    TRACE_MARK(3);
    pdl_launch();
    // acc[i][j][e]: output row v0 + 16i + g (+8 for e >= 2), x row 8j + 2t
    // (+1 for odd e).
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < MT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int v = v0 + 16 * i + g + 8 * (e >> 1), m = 8 * j + 2 * t + (e & 1);
                if (v < N && m < M) y[(i64)m * N + v] = acc[i][j][e];
            }
}

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
#define GEMM_TC(N, T, MT)                                                                                             \
    extern "C" __global__ void __launch_bounds__(256) gemm_rows_tc_t##MT##_##N(float* y, const T* x, const T* w, int n, \
                                                                                int k, int ef, int m) {               \
        gemm_rows_tc<T, MT>(y, x, w, n, k, ef, m);                                                                    \
    }
#define GEMM_TCS(N, T) GEMM_TC(N, T, 1) GEMM_TC(N, T, 2) GEMM_TC(N, T, 4) GEMM_TC(N, T, 8)
GEMM_TCS(f16, f16)
GEMM_TCS(bf16, bf16)
