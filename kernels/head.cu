// head.cu: y [M, N] fp32 = x [M, K] · w [N, K]ᵀ for 5-64 rows of 16-bit x
// and w on warpgroup MMA (sm_90a; compiled for it alone): the head's logits
// in a decode step of 5-64 sequences, where cuBLAS reads the 262 MB of an
// fp16 7B head at 2.8 TB/s (runtime/cuda headRows; gemv.cu takes 1-4 rows).
//
// head_wg_tMT_T(y, N, K, M, ef, tw, tx): MT tiles of 8 rows of x (1, 2, 4,
// 8: the wgmma's N of 8·MT), K a multiple of 64. A block owns HW_ROWS = 128
// rows of w (outputs), grid ceil(N/128), 288 threads: warps 0-7 are two
// warpgroups that multiply 64 rows of w each (the wgmma's A), warp 8 copies.
// Both operands come by the tensor memory accelerator from their tensor
// maps (tw: boxes of 64 inputs by 128 rows of w, under the L2 policy
// evict_first with ef; tx: 64 inputs by the 8·MT rows of x, rows past M as
// zeros), in the 128-byte swizzle that wg_desc describes, into a ring of
// HW_ST stages of 64 inputs. Stage s is full when its mbarrier full[s] has
// its bytes, and free again when the eight multiplying warps have arrived on
// empty[s] after waiting for its wgmma. The first stages' weights are in
// flight before the wait for the previous kernel (x only after it).
// Each warp's sums are the wgmma's fragment: element e of tile j is w row
// 16·(warp%4) + g (+8 for e >= 2) of its warpgroup's 64, x row 8j + 2t (+1
// for odd e), g = lane/4, t = lane%4.

#define HW_ROWS 128
#define HW_ST 4

// hw_mma<MT>: d[64 × 8·MT] += a[64 × 16] · b[16 × 8·MT], both from shared
// memory (descriptors da and db, K-major), fp16 (bf: bf16) in, fp32 sums.
template <int MT> __device__ __forceinline__ void hw_mma(float (&d)[MT][4], u64 da, u64 db, bool bf);
template <typename T> struct hw_bf16 { static constexpr bool v = false; };
template <> struct hw_bf16<bf16> { static constexpr bool v = true; };
// HW_MMA(MT, N, REGS, PI, AI, BI, outputs...): hw_mma<MT>'s two forms
// (bf16, fp16), N = 8·MT columns; REGS the sums' operands, PI, AI and BI
// the predicate's, a's and b's operand numbers.
#define HW_MMA_ASM(TY, N, REGS, PI, AI, BI, ...)                                                      \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" PI ", 0;\n"                                   \
                 "wgmma.mma_async.sync.aligned.m64n" N "k16.f32." TY "." TY " {" REGS "}, %" AI ", %" BI \
                 ", p, 1, 1, 0, 0;\n}"                                                                 \
                 : __VA_ARGS__                                                                        \
                 : "l"(da), "l"(db), "r"(1))
#define HW_MMA(MT, N, REGS, PI, AI, BI, ...)                                                               \
    template <> __device__ __forceinline__ void hw_mma<MT>(float (&d)[MT][4], u64 da, u64 db, bool bf) { \
        if (bf)                                                                                            \
            HW_MMA_ASM("bf16", N, REGS, PI, AI, BI, __VA_ARGS__);                                          \
        else                                                                                               \
            HW_MMA_ASM("f16", N, REGS, PI, AI, BI, __VA_ARGS__);                                           \
    }
HW_MMA(1, "8", "%0,%1,%2,%3", "6", "4", "5",
       "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]))
HW_MMA(2, "16", "%0,%1,%2,%3,%4,%5,%6,%7", "10", "8", "9",
       "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]))
HW_MMA(4, "32", "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15", "18", "16", "17",
       "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]))
HW_MMA(8, "64", "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31", "34", "32", "33",
       "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]))

template <typename T, int MT>
__device__ void head_wg(float* __restrict__ y, int N, int K, int M, int ef, const TMap* tw, const TMap* tx) {
    constexpr u32 AB = HW_ROWS * 128, BB = MT * 8 * 128, SB = AB + BB;  // a stage's bytes of w, of x, in all
    extern __shared__ u32x4 smem_h[];
    __shared__ __align__(8) unsigned long long full[HW_ST], empty[HW_ST];
    TRACE_BEGIN(6);
    const u32 ring = (smem_addr(smem_h) + 1023u) & ~1023u;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n0 = blockIdx.x * HW_ROWS, KB = K / 64;
    if (threadIdx.x == 0) {
        for (int s = 0; s < HW_ST; s++) bar_init(smem_addr(&full[s])), bar_init(smem_addr(&empty[s]), 8);
    }
    __syncthreads();
    if (warp == 8) {
        if (lane == 0) {
            const u64 pol = l2_policy(ef);
            const int pre = imin(HW_ST, KB);
            for (int kb = 0; kb < pre; kb++) {
                const u32 f = smem_addr(&full[kb]);
                bar_expect(f, SB);
                tma_box_pol(ring + kb * SB, tw, kb * 64, n0, f, pol);
            }
            pdl_wait();  // x is the previous kernel's
            for (int kb = 0; kb < pre; kb++) tma_x(ring + kb * SB + AB, tx, kb * 64, smem_addr(&full[kb]));
            for (int kb = HW_ST; kb < KB; kb++) {
                const int s = kb % HW_ST;
                const u32 f = smem_addr(&full[s]);
                bar_wait(smem_addr(&empty[s]), (kb / HW_ST - 1) & 1);
                bar_expect(f, SB);
                tma_box_pol(ring + s * SB, tw, kb * 64, n0, f, pol);
                tma_x(ring + s * SB + AB, tx, kb * 64, f);
            }
        }
        return;
    }
    const int wg = warp >> 2;
    float d[MT][4];
#pragma unroll
    for (int j = 0; j < MT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) d[j][e] = 0.0f;
    constexpr bool bf = hw_bf16<T>::v;
    for (int kb = 0; kb < KB; kb++) {
        const int s = kb % HW_ST;
        bar_wait(smem_addr(&full[s]), (kb / HW_ST) & 1);
        const u32 a = ring + s * SB + wg * (64 * 128), b = ring + s * SB + AB;
        wg_fence();
#pragma unroll
        for (int ks = 0; ks < 4; ks++)
            hw_mma<MT>(d, (u64)(wg_desc(a) + 2 * ks) | ((u64)WG_DHI << 32), (u64)(wg_desc(b) + 2 * ks) | ((u64)WG_DHI << 32), bf);
        wg_commit();
        wg_wait<1>();  // stage kb-1's products are done: it is free
        if (kb > 0 && lane == 0) bar_arrive(smem_addr(&empty[(kb - 1) % HW_ST]));
    }
    wg_wait<0>();
    wg_keep<MT>(d);
    TRACE_MARK(3);
    pdl_launch();
    const int g = lane >> 2, t = lane & 3, v0 = n0 + wg * 64 + (warp & 3) * 16 + g;
#pragma unroll
    for (int j = 0; j < MT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int v = v0 + 8 * (e >> 1), m = 8 * j + 2 * t + (e & 1);
            if (v < N && m < M) y[(i64)m * N + v] = d[j][e];
        }
}

#define HEAD_WG(N, T, MT)                                                                                             \
    extern "C" __global__ void __launch_bounds__(288) head_wg_t##MT##_##N(float* y, int n, int k, int m, int ef,      \
                                                                           const __grid_constant__ TMap tw,           \
                                                                           const __grid_constant__ TMap tx) {         \
        head_wg<T, MT>(y, n, k, m, ef, &tw, &tx);                                                                     \
    }
#define HEAD_WGS(N, T) HEAD_WG(N, T, 1) HEAD_WG(N, T, 2) HEAD_WG(N, T, 4) HEAD_WG(N, T, 8)
HEAD_WGS(f16, f16)
HEAD_WGS(bf16, bf16)
