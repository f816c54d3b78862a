// common.cuh: prepended to every kernel source (see kernels.go). No system
// or CUDA headers: the few types and helpers the kernels need are here.
#line 3 "common.cuh"

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

// 16-bit floats as plain bit patterns; arithmetic is done in fp32.
struct bf16 { u16 x; };
struct f16 { u16 x; };

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __uint_as_float(((u32)v.x) << 16); }
__device__ __forceinline__ float to_f32(f16 v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x));
    return f;
}

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) {
    bf16 r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r.x) : "f"(v));
    return r;
}
template <> __device__ __forceinline__ f16 from_f32<f16>(float v) {
    f16 r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.x) : "f"(v));
    return r;
}

// Two fp32 values packed as one 32-bit register of 16-bit floats (low
// half first), the operand format of mma.sync.
template <typename T> __device__ __forceinline__ u32 pack2(float lo, float hi);
template <> __device__ __forceinline__ u32 pack2<bf16>(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
template <> __device__ __forceinline__ u32 pack2<f16>(float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

// block_sum: the sum of v over a block of blockDim.x threads (a multiple of
// 32, at most 1024); every thread gets the result. red holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = lane < nw ? red[lane] : 0.0f;
    return warp_sum(s);
}

// dynamic_smem_bytes: the dynamic shared memory the launch gave the block.
__device__ __forceinline__ unsigned dynamic_smem_bytes() {
    unsigned r;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(r));
    return r;
}

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }

// Paged attention's splits (decode.cu), here because a product that takes
// its output unfinished (qgemv.cu's _a kernels) splits rows as it does.
// PA_TILE positions a tile, one a thread: also the block's thread count
// (pagedThreads in runtime/cuda). PA_SPLITS: the most blocks that split one
// (row, kv head) (pagedMaxSplits; the kernel clamps to it as well).
#define PA_TILE 128
#define PA_SPLITS 32
// pa_splits: how many of a grid's gs splits the row at position pos takes:
// splits of PA_TILE positions, or, where that makes fewer than eight, up to
// eight of at least minsplit positions (short contexts still spread over
// the GPU, long ones keep every thread busy). Where a row's splits are
// combined cheaply up to cap of them (cap > 0: the next kernel's dfr, or
// a cluster of cap blocks; decode.cu), a row of at most cap·PA_DTILE
// positions takes no more than cap splits, each longer than PA_TILE: its
// blocks then leave their parts to that kernel, or combine them in their
// cluster, where more splits would have to be combined through global
// memory after a counter (the last block reading every part). Measured on
// the H200 (7B shape, 4-bit act order, one row, 128 new tokens): prompts of
// 1,024 / 2,048 / 4,096 tokens 517.9 / 495.4 / 463.2 tok/s against 472.3 /
// 436.2 / 398.8 with splits of 128 (8 bits at 1,024: 362.0 against 341.8);
// PA_DTILE 256 (16 splits at 4,096, combined first) gave 398.8 there; two
// and three rows, combined in clusters of 8, at 2,048 tokens 878.5 /
// 1,254.3 against 818.4 / 1,117.3 with splits of 128 (decode.cu PA_CCAP=0),
// two rows at 1,024 / 4,096 tokens 930.7 / 799.2 against 876.8 / 719.9. A
// sliding window of 4,096 (Mistral's) keeps every row within the bound.
#ifndef PA_DTILE
#define PA_DTILE 512
#endif
__device__ __forceinline__ int pa_splits(int pos, int window, int gs, int minsplit, int cap) {
    const int lo = window > 0 ? imax(0, pos - window + 1) : 0, len = pos - lo + 1;
    const int S = imin(imin(gs, PA_SPLITS), imax((len + PA_TILE - 1) / PA_TILE, imin(8, (len + minsplit - 1) / minsplit)));
    return S > cap && len <= cap * PA_DTILE ? cap : S;
}

#define NEG_INF __int_as_float(0xff800000)

// Programmatic dependent launch (sm_90). A kernel launched with it may
// start while the stream's previous kernel is still running: pdl_wait()
// returns once that kernel has ended and its writes are visible, so a
// kernel reads nothing another kernel writes, and writes nothing, before
// it; pdl_launch() lets the stream's next kernel start early. Kernels that
// call pdl_wait first thing are the ones the backend launches this way
// (runtime/cuda pdlKernel); without the attribute both are no-ops.
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Kernel timeline (runtime/cuda trace.go; compiled in only with
// -DGPTQTOOL_TRACE=N, N records a module, a multiple of TRACE_SMS): thread
// 0 of every block of a traced kernel records its grid, block and SM, and
// the global timer (ns) and the SM's clock at marks 0 (start), 1-3 (the
// kernel's own: after its wait for the previous kernel, after staging,
// after its main loop; paged attention: after its wait, its loop, its
// combine's barrier) and 4 (end, when the block returns) into the module's
// g_trace. The marks go to shared memory and the record is written as the
// block returns, into a slot of its SM's share of g_trace claimed as the
// block starts (g_trace_n counts each SM's blocks): no mark waits for a
// store's address, and a launch's blocks do not all contend for one
// counter. (With one counter, whose claim the first mark after the wait
// needed, that mark came up to 2.6 µs after the previous kernel's end in
// grids of 448 blocks, against 0.5 µs in smaller ones; the traced step was
// 4% slower than the plain one.)
#ifndef TRACE_AT
#define TRACE_AT 0
#endif
#ifdef GPTQTOOL_TRACE
#define TRACE_SMS 256
struct TraceRec {
    u64 grid;
    u32 kind, block, smid, gxy;  // gxy: gridDim.x << 16 | gridDim.y
    u64 g[5];
    u32 c[5], cl;  // cl: the block's cluster, its index << 5 | its blocks (sm_90; 1 elsewhere)
};
struct TraceMarks {
    u64 g[4];
    u32 c[4];
};
__device__ TraceRec g_trace[GPTQTOOL_TRACE];
__device__ u32 g_trace_n[TRACE_SMS];
__device__ __forceinline__ u64 trace_gtimer() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ u32 trace_clock() {
    u32 c;
    asm volatile("mov.u32 %0, %%clock;" : "=r"(c));
    return c;
}
struct Tracer {
    TraceMarks& m;
    u32 k, sm, kind;  // k: the block's index among its SM's (the claim, first read at the end)
    __device__ Tracer(u32 kd, TraceMarks& marks) : m(marks), k(0xffffffffu), sm(0), kind(kd) {
        if (threadIdx.x == 0) {
            m.g[0] = trace_gtimer(), m.c[0] = trace_clock();
#pragma unroll
            for (int j = 1; j < 4; j++) m.g[j] = 0, m.c[j] = 0;
            asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
            k = atomicAdd(&g_trace_n[sm % TRACE_SMS], 1u);
        }
    }
    __device__ void mark(int j) {
        if (threadIdx.x == 0) m.g[j] = trace_gtimer(), m.c[j] = trace_clock();
    }
    // mark_max: mark j as the latest of the calling threads (any thread;
    // the global timer only, its clock left 0), for the last warp to reach
    // a point (GPTQTOOL_TRACE_AT=6's mark 3). Call it only after a barrier that
    // follows the constructor, which clears the marks.
    __device__ void mark_max(int j) { atomicMax((unsigned long long*)&m.g[j], (unsigned long long)trace_gtimer()); }
    __device__ ~Tracer() {
        if (threadIdx.x != 0) return;
        const u64 g4 = trace_gtimer();
        const u32 c4 = trace_clock();
        constexpr u32 per = GPTQTOOL_TRACE / TRACE_SMS;
        if (k >= per) return;
        TraceRec& r = g_trace[(sm % TRACE_SMS) * per + k];
        u64 grid;
        asm volatile("mov.u64 %0, %%gridid;" : "=l"(grid));
        r.grid = grid, r.kind = kind, r.block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        r.smid = sm, r.gxy = gridDim.x << 16 | gridDim.y;
        u32 cl = 1;
#if __CUDA_ARCH__ >= 900
        {
            u32 cx, cy, ncx, n;
            asm volatile("mov.u32 %0, %%clusterid.x;" : "=r"(cx));
            asm volatile("mov.u32 %0, %%clusterid.y;" : "=r"(cy));
            asm volatile("mov.u32 %0, %%nclusterid.x;" : "=r"(ncx));
            asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
            cl = (cx + ncx * cy) << 5 | n;
        }
#endif
        r.cl = cl;
#pragma unroll
        for (int j = 0; j < 4; j++) r.g[j] = m.g[j], r.c[j] = m.c[j];
        r.g[4] = g4, r.c[4] = c4;
    }
};
#define TRACE_BEGIN(kind)          \
    __shared__ TraceMarks trace_m_; \
    Tracer trace_(kind, trace_m_)
#define TRACE_MARK(k) trace_.mark(k)
// TRACE_MARK_AT(at, k): mark k of the placement -DTRACE_AT=at
// (GPTQTOOL_TRACE_AT), where a kernel has other marks than its default
// (TRACE_AT 0) for a closer look at one of its parts.
#define TRACE_MARK_AT(at, k)              \
    do {                                  \
        if (TRACE_AT == (at)) trace_.mark(k); \
    } while (0)
#else
#define TRACE_BEGIN(kind)
#define TRACE_MARK(k)
#define TRACE_MARK_AT(at, k)
#endif

// 16 bytes, for vector loads and stores (addresses must be 16-aligned).
struct alignas(16) u32x4 { u32 a, b, c, d; };

// Grid-stride loop over n elements.
#define FOR_N(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// Instantiate a templated kernel body for each activation dtype; a module
// compiled with KDT=0, 1 or 2 holds f32's, f16's or bf16's only (see
// kernels.Module).
#if !defined(KDT)
#define FOR_DTYPES(M) M(f32, float) M(f16, f16) M(bf16, bf16)
#elif KDT == 0
#define FOR_DTYPES(M) M(f32, float)
#elif KDT == 1
#define FOR_DTYPES(M) M(f16, f16)
#else
#define FOR_DTYPES(M) M(bf16, bf16)
#endif

// Eight 16-bit floats in one 16-byte vector, as fp32 values.
template <typename T> __device__ __forceinline__ void unpack8(u32x4 v, float* f);
template <> __device__ __forceinline__ void unpack8<bf16>(u32x4 v, float* f) {
    u32 w[4] = {v.a, v.b, v.c, v.d};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
template <> __device__ __forceinline__ void unpack8<f16>(u32x4 v, float* f) {
    u32 w[4] = {v.a, v.b, v.c, v.d};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f16 lo = {(u16)(w[i] & 0xffffu)}, hi = {(u16)(w[i] >> 16)};
        f[2 * i] = to_f32(lo);
        f[2 * i + 1] = to_f32(hi);
    }
}
template <typename T> __device__ __forceinline__ u32x4 pack8(const float* f) {
    u32x4 v;
    v.a = pack2<T>(f[0], f[1]);
    v.b = pack2<T>(f[2], f[3]);
    v.c = pack2<T>(f[4], f[5]);
    v.d = pack2<T>(f[6], f[7]);
    return v;
}

// load8: eight consecutive elements as fp32 (16-byte aligned for 16-bit T).
template <typename T> __device__ __forceinline__ void load8(const T* p, float* f) {
    unpack8<T>(*(const u32x4*)p, f);
}
template <> __device__ __forceinline__ void load8<float>(const float* p, float* f) {
    float4 a = ((const float4*)p)[0], b = ((const float4*)p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

// D += A·B for one m16n8k16 tile: A 4 registers (16x16, row), B 2 (16x8,
// col), D 4 fp32.
template <typename T> __device__ __forceinline__ void mma16816(float* d, const u32* a, u32 b0, u32 b1);
template <> __device__ __forceinline__ void mma16816<bf16>(float* d, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<f16>(float* d, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// The quantized products' helpers (qgemv.cu; stream.cu's probe of their
// main loop): fp16x2 arithmetic on raw words, 4/8-bit codes as fp16,
// shared-memory loads of a chunk and of mma B fragments.
__device__ __forceinline__ u32 hsub2(u32 a, u32 b) {
    u32 d;
    asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

__device__ __forceinline__ u32 hmul2(u32 a, u32 b) {
    u32 d;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

__device__ __forceinline__ float h_lo(u32 a) {
    f16 h;
    h.x = (u16)(a & 0xffffu);
    return to_f32(h);
}

// A group's scales (qgemv.cu, qglu.cu). QG_SZ16=1, a define the backend
// adds for weights whose zeros are all 2^(BITS-1) (the symmetric
// quantizer's): they are the fp16 scales alone (szw u16, [G, N]) instead
// of the pairs of scale and zero (u32, the scale in the low half), and
// SZ_ZZ is the pairs' zero half doubled, 1024 + 2^(BITS-1) twice, a
// constant.
#ifndef QG_SZ16
#define QG_SZ16 0
#endif
#if QG_SZ16
typedef u16 szw;
#define SZ_ZZ(BITS) ((0x6400u + (1u << ((BITS) - 1))) * 0x10001u)
#else
typedef u32 szw;
#endif

// sz_group: a group's scales of rows g and g+8 of a tile (q0, q1: the
// loaded pairs, or with QG_SZ16 the scales alone) as the products' loops
// use them: fp32 scales, 1024 + zero twice (zz) and 960 − (1024 + zero)
// for row g+8's 4-bit codes taken as 1024 + 16c (dq_step).
template <int BITS>
__device__ __forceinline__ void sz_group(u32 q0, u32 q1, float& s0, float& s1, u32& zz0, u32& zz1, u32& nz1) {
    s0 = h_lo(q0), s1 = h_lo(q1);
#if QG_SZ16
    zz0 = zz1 = SZ_ZZ(BITS);
#else
    zz0 = (q0 >> 16) * 0x10001u;
    zz1 = (q1 >> 16) * 0x10001u;
#endif
    nz1 = hsub2(0x63806380u, zz1);  // 960 − (1024 + z)
}

__device__ __forceinline__ u32 word_of(const u32x4& v, int i) {
    return i == 0 ? v.a : i == 1 ? v.b : i == 2 ? v.c : v.d;
}

// codes: (w & MASK) | magic in one LOP3 (magic in a register): two codes
// as fp16 1024 + c (or 1024 + 16c for the nibbles at bits 4..7).
template <u32 MASK> __device__ __forceinline__ u32 codes(u32 w, u32 magic) {
    u32 d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(w), "n"(MASK), "r"(magic));
    return d;
}

__device__ __forceinline__ u32 hfma2(u32 a, u32 b, u32 c) {
    u32 d;
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// dq_step<BITS>: the A fragments (a[0..3]) of 16-input step s of a weight
// chunk w laid out as qgemv.cu's header says, each the exact fp16 value
// code − zero: zz0 and zz1 hold 1024 + zero of rows g and g+8 twice; at 4
// bits pairs 1 and 3 (row g+8) come straight from bits 4..7 as 1024 + 16c,
// times 1/16 plus nz1 = 960 − (1024 + zero), exact.
template <int BITS>
__device__ __forceinline__ void dq_step(const u32x4& w, int s, u32 magic, u32 zz0, u32 zz1, u32 nz1, u32 (&a)[4]) {
    if constexpr (BITS == 4) {
        const u32 sixteenth = 0x2c002c00u;  // fp16 1/16, twice
        const u32 wd = word_of(w, s), wh = wd >> 8;
        a[0] = hsub2(codes<0x000F000Fu>(wd, magic), zz0);
        a[1] = hfma2(codes<0x00F000F0u>(wd, magic), sixteenth, nz1);
        a[2] = hsub2(codes<0x000F000Fu>(wh, magic), zz0);
        a[3] = hfma2(codes<0x00F000F0u>(wh, magic), sixteenth, nz1);
    } else {
        const u32 w0 = word_of(w, 2 * s), w1 = word_of(w, 2 * s + 1);
        a[0] = hsub2(codes<0x00FF00FFu>(w0, magic), zz0);
        a[1] = hsub2(codes<0x00FF00FFu>(w0 >> 8, magic), zz1);
        a[2] = hsub2(codes<0x00FF00FFu>(w1, magic), zz0);
        a[3] = hsub2(codes<0x00FF00FFu>(w1 >> 8, magic), zz1);
    }
}

__device__ __forceinline__ u32x4 lds128(u32 addr) {
    u32x4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.a), "=r"(v.b), "=r"(v.c), "=r"(v.d) : "r"(addr) : "memory");
    return v;
}

// ldsm4: four 8×8 fp16 matrices from shared memory (ldmatrix), lane L
// giving the address of row L%8 of matrix L/8; register i holds, for lane
// (g, t), elements (g, 2t) and (g, 2t+1) of matrix i. With x staged in its
// natural order, matrices at inputs k0, k0+8, k0+16 and k0+24 of rows
// bt*8.. are the mma's B fragments (b0, b1) of the steps at k0 and k0+16.
__device__ __forceinline__ u32x4 ldsm4(u32 addr) {
    u32x4 v;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.a), "=r"(v.b), "=r"(v.c), "=r"(v.d)
                 : "r"(addr)
                 : "memory");
    return v;
}

// cp_async16: 16 bytes from global to shared memory without passing
// through registers (wait with cp.async.wait_group / wait_all).
__device__ __forceinline__ void cp_async16(u32 dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src));
}

// L2 policies for streams read once a step (a model's weights): with
// evict_first their lines are the first to go, so that what a step reads
// again (the kernels' code, the KV cache, activations, norms) stays in L2;
// evict_normal is the plain loads' behaviour.
__device__ __forceinline__ u64 l2_policy(bool evict_first) {
    u64 p;
    if (evict_first)
        asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    else
        asm("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(p));
    return p;
}

// cp_async16_pol: cp_async16 under the L2 policy pol (l2_policy).
__device__ __forceinline__ void cp_async16_pol(u32 dst, const void* src, u64 pol) {
    asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "l"(pol));
}

// cp_async16_if: cp_async16_pol (under the L2 policy pol) when on, as one
// predicated instruction.
__device__ __forceinline__ void cp_async16_if(u32 dst, const void* src, bool on, u64 pol) {
    asm volatile("{ .reg .pred p; setp.ne.b32 p, %2, 0; @p cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %3; }" ::"r"(dst),
                 "l"(src), "r"((int)on), "l"(pol));
}

// ldg_pol: 16 read-only bytes under the L2 policy pol (l2_policy).
__device__ __forceinline__ uint4 ldg_pol(const uint4* p, u64 pol) {
    uint4 v;
    asm volatile("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p), "l"(pol));
    return v;
}

// prefetch_l1: the line holding p into L1 (no register, no wait).
__device__ __forceinline__ void prefetch_l1(const void* p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

// cp_async4: 4 bytes from global to shared memory through L1.
__device__ __forceinline__ void cp_async4(u32 dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(dst), "l"(src));
}

// Thread-block clusters (sm_90; the backend clusters no launch before it;
// arrive releases and wait acquires by default, which PTX 7.8 requires):
// the blocks of a cluster read each other's shared memory.
__device__ __forceinline__ void cluster_sync() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
#endif
}
// cluster_sync_relaxed: the same barrier, ordering no memory (PTX 8.0,
// NVRTC 12 and later; before, cluster_sync): for the last barrier of a
// cluster whose blocks read each other's shared memory, so that none exits
// while the others still read it. Their reads are done (their values used)
// before they arrive, so the release fence (a MEMBAR) is not needed.
__device__ __forceinline__ void cluster_sync_relaxed() {
#if __CUDA_ARCH__ >= 900
#if defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
    asm volatile("barrier.cluster.arrive.relaxed.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
#else
    cluster_sync();
#endif
#endif
}
// cluster_x, cluster_y: this block's place in its cluster (x and y);
// cluster_nx and cluster_ny the cluster's width and height (special
// registers; before sm_90, one block at (0, 0)).
#if __CUDA_ARCH__ >= 900
#define CLUSTER_SREG(NAME, REG, DEF)                    \
    __device__ __forceinline__ u32 NAME() {             \
        u32 r;                                          \
        asm volatile("mov.u32 %0, %%" REG ";" : "=r"(r)); \
        return r;                                       \
    }
#else
#define CLUSTER_SREG(NAME, REG, DEF) \
    __device__ __forceinline__ u32 NAME() { return DEF; }
#endif
CLUSTER_SREG(cluster_x, "cluster_ctaid.x", 0)
CLUSTER_SREG(cluster_y, "cluster_ctaid.y", 0)
CLUSTER_SREG(cluster_nx, "cluster_nctaid.x", 1)
CLUSTER_SREG(cluster_ny, "cluster_nctaid.y", 1)
// cluster_rank_of: the rank (the multicast masks' bit, mapa's argument) of
// the block at (x, y) of this block's cluster. The linear order is read off
// this block's own rank: x fastest (x + y·nx), else y fastest (y + x·ny).
__device__ __forceinline__ u32 cluster_rank_of(u32 x, u32 y);
// cluster_arrive and cluster_wait: cluster_sync in two halves, so that the
// work between them overlaps the other blocks' arrival.
__device__ __forceinline__ void cluster_arrive() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}
CLUSTER_SREG(cluster_rank, "cluster_ctarank", 0)
__device__ __forceinline__ u32 cluster_rank_of(u32 x, u32 y) {
    const u32 nx = cluster_nx(), ny = cluster_ny();
    return cluster_rank() == cluster_x() + cluster_y() * nx ? x + y * nx : y + x * ny;
}
// cluster_addr: the shared-memory address p has in the cluster's block rank.
__device__ __forceinline__ u32 cluster_addr(const void* p, u32 rank) {
    u32 a = 0;
#if __CUDA_ARCH__ >= 900
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(smem_addr(p)), "r"(rank));
#endif
    return a;
}
__device__ __forceinline__ float ld_cluster(u32 addr) {
    float v = 0.0f;
#if __CUDA_ARCH__ >= 900
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(addr) : "memory");
#endif
    return v;
}

// rope_rot rotates the pair (x1, x2) by the angle whose cosine and sine are
// cs and sn, rounding to T: the one expression of every decode-time RoPE
// (rope_store, the q/k/v product's epilogue), so that both give the same bits.
template <typename T> __device__ __forceinline__ void rope_rot(float x1, float x2, float cs, float sn, T& y1, T& y2) {
    y1 = from_f32<T>(x1 * cs - x2 * sn);
    y2 = from_f32<T>(x2 * cs + x1 * sn);
}

// rope_angle: cos and sin of pos·invf as rope_seq computes them (fp32 angle,
// sincos in double).
__device__ __forceinline__ void rope_angle(int pos, float invf, float& cs, float& sn) {
    const float a = (float)pos * invf;
    double s, c;
    sincos((double)a, &s, &c);
    cs = (float)c, sn = (float)s;
}


// Warpgroup MMA and the tensor memory accelerator (sm_90a: qgemv.cu's _w
// kernels, head.cu): templates, so that nothing of them is emitted where no
// kernel uses them.
// wg_desc: the low word of the shared-memory descriptor of a K-major
// operand in the 128-byte swizzle at byte address addr (the start address;
// LBO 16 bytes, unused by a K-major swizzled operand), WG_DHI its high word:
// 8-row groups of 128-byte rows 1,024 bytes apart (SBO), the 128-byte
// swizzle. A row of the operand is 64 16-bit inputs, its 16-byte unit u
// stored at unit u ^ (row % 8) of the row (the groups 1,024-byte aligned); a
// k-step of 16 inputs 32 bytes further along the row is addr + 32.
template <int Z = 0> __device__ __forceinline__ u32 wg_desc(u32 addr) { return ((addr >> 4) & 0x3FFFu) | (1u << 16); }
#define WG_DHI (64u | (1u << 30))
template <int Z = 0> __device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
template <int Z = 0> __device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }
// wg_keep: the accumulators stay in their registers across a wgmma
// fence or wait (the compiler moves no access of them across it).
template <int MT> __device__ __forceinline__ void wg_keep(float (&d)[MT][4]) {
#pragma unroll
    for (int bt = 0; bt < MT; bt++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[bt][e])::"memory");
}

// TMap is a CUtensorMap (runtime/cuda TensorMap), a __grid_constant__
// kernel parameter. tma_box copies the box at (c0, c1) (the inner
// coordinate first: an input, then a row) to shared memory at dst
// (1,024-byte aligned), completing on the mbarrier at bar (tma_box_pol:
// under the L2 policy pol, l2_policy); tma_x is the box at (input k, row
// 0). bar_init makes an mbarrier of count arrivals, bar_expect arrives on it
// with the bytes a phase's copies bring, bar_arrive arrives, and bar_wait
// waits for the phase of parity ph.
struct __align__(64) TMap {
    unsigned long long v[16];
};
template <int Z = 0> __device__ __forceinline__ void bar_init(u32 bar, u32 count = 1) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n\tfence.mbarrier_init.release.cluster;" ::"r"(bar), "r"(count)
                 : "memory");
}
template <int Z = 0> __device__ __forceinline__ void bar_expect(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
template <int Z = 0> __device__ __forceinline__ void bar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
// BAR_WAIT_ASM: the wait loop on the mbarrier at operand 0 for parity
// operand 1, its try_wait qualified by SEM ("" or ".acquire.cluster").
#define BAR_WAIT_ASM(SEM)                                                  \
    "{\n.reg .pred p;\nWAIT_%=:\n"                                         \
    "mbarrier.try_wait.parity" SEM ".shared::cta.b64 p, [%0], %1;\n" \
    "@!p bra WAIT_%=;\n}"
template <int Z = 0> __device__ __forceinline__ void bar_wait(u32 bar, u32 ph) {
    asm volatile(BAR_WAIT_ASM("") ::"r"(bar), "r"(ph) : "memory");
}
template <int Z = 0> __device__ __forceinline__ void tma_box(u32 dst, const TMap* tm, int c0, int c1, u32 bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
        "l"(tm), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}
template <int Z = 0> __device__ __forceinline__ void tma_box_pol(u32 dst, const TMap* tm, int c0, int c1, u32 bar, u64 pol) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
        "l"(tm), "r"(c0), "r"(c1), "r"(bar), "l"(pol)
        : "memory");
}
template <int Z = 0> __device__ __forceinline__ void tma_x(u32 dst, const TMap* tm, int k, u32 bar) { tma_box(dst, tm, k, 0, bar); }
// tma_x_mc: tma_x into the same offset dst of the shared memory of every
// block of the cluster whose rank is set in mask, completing on the
// mbarrier at the same offset bar in each.
template <int Z = 0> __device__ __forceinline__ void tma_x_mc(u32 dst, const TMap* tm, int k, u32 bar, u16 mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
        "l"(tm), "r"(k), "r"(0), "r"(bar), "h"(mask)
        : "memory");
}
// bar_arrive_remote: an arrival on the mbarrier at bar (a shared::cluster
// address, cluster_addr), released to the cluster: what this block wrote
// and read before it is ordered before the arrival.
template <int Z = 0> __device__ __forceinline__ void bar_arrive_remote(u32 bar) {
    asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(bar) : "memory");
}
// bar_wait_cluster: bar_wait acquiring at cluster scope (for arrivals made
// by bar_arrive_remote).
template <int Z = 0> __device__ __forceinline__ void bar_wait_cluster(u32 bar, u32 ph) {
    asm volatile(BAR_WAIT_ASM(".acquire.cluster") ::"r"(bar), "r"(ph) : "memory");
}
