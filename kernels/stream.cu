// stream.cu: read-bandwidth probes (runtime/cuda BenchmarkStream), to
// tell how fast a grid of the products' shape can stream weights from
// device memory by each way of loading them: every warp of the grid reads
// its own contiguous stretch of n 512-byte chunks (n / W of them, W the
// grid's warps), as a product's warps read their chunks, and folds what it
// reads into one word that decides whether sink is written (so that no
// load is dropped). ef: the loads' L2 policy is evict_first (1) or
// evict_normal (0), as qgemv.cu's QF_EVICT.
//
//   stream_ldg<D>:  16-byte loads into registers (ld.global.nc), D a
//                   thread in flight;
//   stream_cpa<D>:  the products' way: cp.async of 16 bytes a lane into a
//                   ring of D chunk slots a warp in shared memory, refilled
//                   one behind (8·D·512 bytes of dynamic shared memory);
//   stream_bulk<C, S>: the copy engine (cp.async.bulk, sm_90, PTX 8.0):
//                   one lane of each warp copies C chunks at a time into a
//                   ring of S stages, each completing on an mbarrier
//                   (8·S·C·512 bytes). Built only by NVRTC 12 and later.
// Grid: any number of blocks of 256 threads.

__device__ __forceinline__ u32 fold4(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }

// The chunks [c0, c1) of n that warp gw of W reads.
__device__ __forceinline__ void stretch(i64 n, i64& c0, int& nc) {
    const i64 W = (i64)gridDim.x * (blockDim.x >> 5), gw = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    c0 = gw * n / W;
    nc = (int)((gw + 1) * n / W - c0);
}

template <int D> __device__ void stream_ldg(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    const int lane = threadIdx.x & 31;
    i64 c0;
    int nc;
    stretch(n, c0, nc);
    const u64 pol = l2_policy(ef);
    const uint4* p = src + c0 * 32 + lane;
    u32 acc = 0;
    for (int i = 0; i < nc; i += D) {
        uint4 v[D];
#pragma unroll
        for (int u = 0; u < D; u++) v[u] = i + u < nc ? ldg_pol(p + (i64)(i + u) * 32, pol) : uint4{0, 0, 0, 0};
#pragma unroll
        for (int u = 0; u < D; u++) acc ^= fold4(v[u]);
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

template <int D> __device__ void stream_cpa(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    extern __shared__ uint4 smem_s[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    i64 c0;
    int nc;
    stretch(n, c0, nc);
    const u64 pol = l2_policy(ef);
    const u32 ring0 = smem_addr(smem_s) + (warp * D * 32 + lane) * 16;
    const uint4* p = src + c0 * 32 + lane;
#pragma unroll
    for (int i = 0; i < D; i++) {
        if (i < nc) cp_async16_pol(ring0 + i * 512, p + i * 32, pol);
        asm volatile("cp.async.commit_group;");
    }
    u32 acc = 0;
    for (int i = 0; i < nc; i++) {
        const int slot = i & (D - 1);
        if (i > 0 && i - 1 + D < nc) cp_async16_pol(ring0 + ((slot - 1) & (D - 1)) * 512, p + (i64)(i - 1 + D) * 32, pol);
        asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group %0;" ::"n"(D - 1));
        uint4 v;
        asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "r"(ring0 + slot * 512)
                     : "memory");
        acc ^= fold4(v);
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

#if defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
template <int C, int S> __device__ void stream_bulk(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    extern __shared__ uint4 smem_s[];
    __shared__ __align__(8) u64 bar[8][S];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    i64 c0;
    int nc;
    stretch(n, c0, nc);
    const u64 pol = l2_policy(ef);
    const u32 ring = smem_addr(smem_s) + warp * S * C * 512;
    const int nst = (nc + C - 1) / C;  // stages of C chunks, the last maybe shorter
    auto issue = [&](int j) {          // lane 0: stage j into its slot
        const int s = j % S, bytes = imin(C, nc - j * C) * 512;
        const u32 b = smem_addr(&bar[warp][s]);
        asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" ::"r"(b), "r"(bytes) : "memory");
        asm volatile(
            "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
                ring + s * C * 512),
            "l"(src + (c0 + (i64)j * C) * 32), "r"(bytes), "r"(b), "l"(pol)
            : "memory");
    };
    if (lane == 0) {
        for (int s = 0; s < S; s++) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar[warp][s])));
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        for (int j = 0; j < imin(S, nst); j++) issue(j);
    }
    __syncwarp();
    u32 acc = 0;
    for (int j = 0; j < nst; j++) {
        const int s = j % S;
        const u32 b = smem_addr(&bar[warp][s]), par = (j / S) & 1;
        asm volatile(
            "{ .reg .pred p; W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1; @!p bra W; }" ::"r"(b), "r"(par)
            : "memory");
        const int ch = imin(C, nc - j * C);
        for (int c = 0; c < ch; c++) {
            uint4 v;
            asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                         : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                         : "r"(ring + (s * C + c) * 512 + lane * 16)
                         : "memory");
            acc ^= fold4(v);
        }
        __syncwarp();  // every lane's reads of the slot are done before it is refilled
        if (lane == 0 && j + S < nst) issue(j + S);
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}
#define STREAM_BULK(C, S)                                                                                            \
    extern "C" __global__ void __launch_bounds__(256) stream_bulk_c##C##_s##S(const uint4* src, i64 n, u32* sink,      \
                                                                              int ef) {                             \
        stream_bulk<C, S>(src, n, sink, ef);                                                                        \
    }
#else
#define STREAM_BULK(C, S)                                                                                            \
    extern "C" __global__ void stream_bulk_c##C##_s##S(const uint4* src, i64 n, u32* sink, int ef) { __trap(); }
#endif

#define STREAM(KIND, D)                                                                                              \
    extern "C" __global__ void __launch_bounds__(256) stream_##KIND##D(const uint4* src, i64 n, u32* sink, int ef) { \
        stream_##KIND<D>(src, n, sink, ef);                                                                         \
    }
STREAM(ldg, 4)
STREAM(ldg, 8)
STREAM(ldg, 16)
STREAM(cpa, 8)
STREAM(cpa, 16)
STREAM_BULK(1, 8)
STREAM_BULK(2, 4)
STREAM_BULK(4, 4)
STREAM_BULK(8, 4)
