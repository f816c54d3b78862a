// mlp.cu: a decode step's whole MLP in one kernel for up to 8 rows
// (runtime/cuda FuseMLP and MatMulMLP, GPTQTOOL_FUSED_MLP; off by default,
// docs/benchmarks.md has its measurements): x += down(silu(xn·gateᵀ) ·
// (xn·upᵀ)), with gate/up and down quantized as qgemv.cu's weights.
//
// fmlp<BITS, QD, T>: one block an SM (gridDim.x = NB blocks, NB at most the
// intermediate's J = I/16 tiles of 16), 16 warps. Block b owns the
// intermediate's tiles [J0, J1) = [b·J/NB, (b+1)·J/NB), S = J1 − J0 of them
// (at most FM_SMAX), in down's sequential input order (the GLU weight's
// output columns are in that order: runtime/model folds down's act order
// into gate/up's columns). It takes them one at a time, step p the tile
// J0 + p, and interleaves the two products so that down's work on step
// p − 1 runs while gate/up's weights of step p + 1 stream in. Round p =
// 0..S of every warp:
//   1. gate/up of step p (p < S): the step's gate tile and up tile over
//      all K = H inputs are 2·CK chunks (CK = H/KB; the GLU weight's tiles
//      as qgemv.cu lays them out), warp w taking [w·2CK/16, (w+1)·2CK/16):
//      warps 0–7 the gate tile, 8–15 the up tile. Its sums go to gpart
//      [p % FM_NBUF][w], and its threads arrive on the step's mbarrier;
//   2. down's step p − 1 (p ≥ 1), once the step's mbarrier has every
//      thread's arrival (no block-wide barrier: a warp waits only for the
//      gate/up sums it needs, and its ring keeps streaming): each warp
//      works out h = silu(gate)·up of the step's 16 inputs from the 16
//      warps' sums (in warp order), rounded to T as the GLU product
//      writes it, as the mma's B fragment; then its TW = H/256 output
//      tiles of 16, tile w·TW + i, one mma each, whose sums are scaled by
//      the tile's scale in fp32 and held in registers (dacc[i]) across
//      the rounds.
// FM_NBUF = 4 buffers of sums suffice: a warp writing step p's has passed
// the wait for step p − 2, so every warp has arrived for p − 2 and reads
// step p − 3's or later.
// After the last round each block writes its share of down's sums of
// every output to the block that adds that output up (part [⌈H/WM⌉
// owners][NB blocks][M][WM] fp32, block b owning outputs [b·WM, (b+1)·WM),
// WM the power of two at least ⌈H/NB⌉) and raises its flag sync[b]; an
// owner adds up the NB shares of its outputs of every row in a fixed
// order, each warp a run of blocks once their flags are up (no barrier of
// the grid), and adds them to x, rounded once to T: runs are bit for bit
// the same.
// Every warp streams its chunks through one ring of QD slots of 512 bytes
// in shared memory (cp.async) in the order it takes them. Down's scale
// pairs (as (zero, scale) constants of the decode, dcon) and gate/up's are
// staged in shared memory before the wait for the previous kernel.
//
// Down's codes are re-laid at load (fmlp_relayout) step by step: for each
// tile j of the intermediate (16 of down's inputs) and warp w, DC = ⌈TW /
// SPC⌉ chunks, chunk c a lane's 16 bytes of SPC items, item u the lane's A
// fragment of output tile w·TW + c·SPC + u at that step as qgemv.cu's
// tiled layout holds it (one word at 4 bits, two at 8; zero words past
// TW). A block's step p is chunk ((J0 + p)·16 + w)·DC of them.
//
// Shared memory (fusedMLP.shared in runtime/cuda sizes it): the ring
// (16·QD·512 bytes), x [M][H+8] fp16, gpart [FM_NBUF][16][M][16] fp32,
// dcon [ndg][NT][8] u32x4 for the ndg groups of down's
// inputs the block's slice reaches, gate/up's scale pairs of the block's
// tiles ([2S][H/gsg][16] u32).

#define FM_W 16
#define FM_SMAX 8
#define FM_TW 16
#define FM_NBUF 4
#define FM_KMAX 12  // the most blocks' shares a warp adds up (NB at most 16·FM_KMAX)
// fmlp's flags: FM_EVICT streams the weights with the L2 policy
// evict_first; FM_NORED and FM_NODOWN (runtime/cuda
// GPTQTOOL_FUSED_MLP_PROBE, wrong results: for measuring what each part of
// down's work costs) leave out the grid's sums (x is left as it is), or
// down's work on the chunks it still streams; FM_NOGU leaves out gate/up's
// work on its chunks (the _ns kernels below leave out the stream instead).
// The _ll kernels (LL; runtime/cuda GPTQTOOL_FUSED_MLP_LL=1) end with
// shares that carry the launch's tag instead of flags (part as u64, sync
// the blocks' launch counters: fmlp_end_ll). Trace marks (GPTQTOOL_TRACE):
// the wait, x staged and the loop's end; with GPTQTOOL_TRACE_AT=1 the
// prologue's end, the wait and the flags seen (the flags' end).
#define FM_EVICT 1
#define FM_NORED 2
#define FM_NODOWN 4
#define FM_NOGU 8

template <typename T> struct fm_xscale { static constexpr float v = 1.0f / 256.0f; };
template <> struct fm_xscale<f16> { static constexpr float v = 1.0f; };

__device__ __forceinline__ float fm_silu(float v) { return v / (1.0f + expf(-v)); }

// mma_z: mma16816 from zero sums (d = a·b).
__device__ __forceinline__ void mma_z(float* d, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
}

// fm_decode: the A fragment of one 16-input step from its word(s): the
// exact fp16 values code − zero (zz: 1024 + zero of rows g and g+8, twice;
// nz1: 960 − (1024 + zero) of row g+8, for the 4-bit nibbles at bits 4..7
// taken as 1024 + 16c).
template <int BITS> __device__ __forceinline__ void fm_decode(u32 w0, u32 w1, u32 zz0, u32 zz1, u32 nz1, u32 (&a)[4]) {
    const u32 magic = 0x64006400u, sixteenth = 0x2c002c00u;
    if (BITS == 4) {
        const u32 wh = w0 >> 8;
        a[0] = hsub2(codes<0x000F000Fu>(w0, magic), zz0);
        a[1] = hfma2(codes<0x00F000F0u>(w0, magic), sixteenth, nz1);
        a[2] = hsub2(codes<0x000F000Fu>(wh, magic), zz0);
        a[3] = hfma2(codes<0x00F000F0u>(wh, magic), sixteenth, nz1);
    } else {
        a[0] = hsub2(codes<0x00FF00FFu>(w0, magic), zz0);
        a[1] = hsub2(codes<0x00FF00FFu>(w0 >> 8, magic), zz1);
        a[2] = hsub2(codes<0x00FF00FFu>(w1, magic), zz0);
        a[3] = hsub2(codes<0x00FF00FFu>(w1 >> 8, magic), zz1);
    }
}

// fm_shares: a block's shares of down's sums of every output, each handed
// to put(address, sum) at part[n / WM][b][m][n % WM] (lane (g, t) of tile
// nt holds rows 2t (c0, c2) and 2t+1 (c1, c3) of outputs 16·nt + g and
// 16·nt + g + 8); both ends lay them out so.
template <typename P, typename F>
__device__ __forceinline__ void fm_shares(P* part, const float (&dacc)[FM_TW][4], int TW, int NB, int M, int WM, int lw,
                                          F put) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, b = blockIdx.x;
#pragma unroll
    for (int i = 0; i < FM_TW; i++) {
        if (i < TW) {
#pragma unroll
            for (int h8 = 0; h8 < 2; h8++) {
                const int n = (warp * TW + i) * 16 + g + 8 * h8;
                P* q = part + ((i64)(n >> lw) * NB + b) * M * WM + (n & (WM - 1));
                if (2 * t < M) put(q + 2 * t * WM, dacc[i][2 * h8]);
                if (2 * t + 1 < M) put(q + (2 * t + 1) * WM, dacc[i][2 * h8 + 1]);
            }
        }
    }
}

// fm_add_owned: x of row om, output n0 + ow (read before the shares as
// xpre) plus the 16 warps' sums of it (red[w], in each warp's ring) in
// warp order, rounded once to T.
template <typename T, int QD>
__device__ __forceinline__ void fm_add_owned(T* x, int H, int WM, int n0, int om, int ow, float xpre) {
    extern __shared__ u32x4 smem_f[];
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < FM_W; k++) sum += ((const float*)(smem_f + k * QD * 32))[om * WM + ow];
    x[(i64)om * H + n0 + ow] = from_f32<T>(xpre + sum);
}

// FmOwned: what block b adds up at fmlp's end, either way (flags or
// tags): outputs [n0, n0 + W) of every row; thread o's output, row om and
// n0 + ow, if it owns one (owns), with x of it (xpre) read before any
// share is; and warp w's run of the NB blocks' shares, [k0, k0 + nk).
struct FmOwned {
    int n0, W, om, ow, k0, nk;
    bool owns;
    float xpre;
};
template <typename T>
__device__ __forceinline__ FmOwned fm_owned(const T* x, int H, int M, int NB, int WM, int lw) {
    FmOwned o;
    o.n0 = blockIdx.x * WM, o.W = imax(0, imin(H - o.n0, WM));
    o.om = threadIdx.x >> lw, o.ow = threadIdx.x & (WM - 1);
    o.owns = o.om < M && o.ow < o.W;
    o.xpre = o.owns ? to_f32(x[(i64)o.om * H + o.n0 + o.ow]) : 0.0f;
    const int warp = threadIdx.x >> 5;
    o.k0 = warp * NB / FM_W, o.nk = (warp + 1) * NB / FM_W - o.k0;
    return o;
}

// fmlp_end_ll: fmlp's end in the _ll kernels (NCCL's LL protocol). Each share
// is one 8-byte word, the sum's bits and the launch's tag, stored and read
// whole (single-copy atomic), at part[n / WM][b][m][n % WM] as the flags'
// end lays them out; an owner takes a share once its tag is this launch's,
// with no flag, fence or barrier between. The blocks' launch counters
// (sync) all hold the same count at a launch's start, and a block never
// uses a tag twice, so no share of another launch has this one's tag.
template <typename T, int QD>
__device__ __forceinline__ void fmlp_end_ll(u64* part, const float (&dacc)[FM_TW][4], T* x, int H, int M, int NB,
                                            int TW, int WM, int lw, u32 tag) {
    constexpr float XS = fm_xscale<T>::v;
    extern __shared__ u32x4 smem_f[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, b = blockIdx.x;
    fm_shares(part, dacc, TW, NB, M, WM, lw, [&](u64* q, float v) {
        asm volatile("st.relaxed.gpu.u64 [%0], %1;" ::"l"(q), "l"(((u64)tag << 32) | __float_as_uint(v / XS)) : "memory");
    });
    // As the flags' end: warp w adds up the shares of blocks [k0, k0 + nk)
    // in order into red[w], then thread o the 16 warps' sums of its output.
    const FmOwned o = fm_owned(x, H, M, NB, WM, lw);
    if (o.W == 0) return;
    const int nk = o.nk;
    float* red = (float*)(smem_f + warp * QD * 32);
    const u64* pp = part + ((i64)b * NB + o.k0) * M * WM;
    for (int c = lane; c < M * WM; c += 32) {
        float v[FM_KMAX];
        u32 left = (1u << nk) - 1u;  // shares not yet taken
        // Polls that bring nothing new wait twice as long before the next
        // (32 ns to 512 ns), so that blocks done early do not flood L2
        // while the last ones still stream.
        u32 ns = 32;
        for (;;) {
            u64 e[FM_KMAX];
#pragma unroll
            for (int u = 0; u < FM_KMAX; u++) {
                if (left >> u & 1u) asm volatile("ld.relaxed.gpu.u64 %0, [%1];" : "=l"(e[u]) : "l"(pp + (i64)u * M * WM + c) : "memory");
            }
            const u32 was = left;
#pragma unroll
            for (int u = 0; u < FM_KMAX; u++) {
                if ((left >> u & 1u) && (u32)(e[u] >> 32) == tag) v[u] = __uint_as_float((u32)e[u]), left &= ~(1u << u);
            }
            if (left == 0u) break;
            ns = left == was ? min(2 * ns, 512u) : 32u;
            __nanosleep(ns);
        }
        float sum = 0.0f;
#pragma unroll
        for (int u = 0; u < FM_KMAX; u++) sum += u < nk ? v[u] : 0.0f;
        red[c] = sum;
    }
    __syncthreads();
    if (o.owns) fm_add_owned<T, QD>(x, H, WM, o.n0, o.om, o.ow, o.xpre);
}

template <int BITS, int QD, typename T, bool NS = false, bool LL = false>
__device__ void fmlp(T* x, const T* __restrict__ xn, const u32* __restrict__ gqw, const u32* __restrict__ gsz,
                     const u32* __restrict__ dqw, const u32* __restrict__ dsz, float* part, u32* sync, int H, int I,
                     int M, int gsg, int gsd, int ndg, int flags) {
    constexpr int SPC = BITS == 4 ? 4 : 2;  // 16-input steps a chunk (gate/up) and items a chunk (down)
    constexpr int KB = 16 * SPC;
    constexpr int WPI = BITS == 4 ? 1 : 2;  // words a step
    constexpr int DCM = FM_TW / SPC;        // the most down chunks a warp takes a step
    constexpr float XS = fm_xscale<T>::v;
    extern __shared__ u32x4 smem_f[];
    TRACE_BEGIN(8);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int NB = gridDim.x, b = blockIdx.x, J = I / 16, NT = H / 16, CK = H / KB, NG = 2 * I, NGH = H / gsg;
    const int J0 = b * J / NB, S = (b + 1) * J / NB - J0;
    const int TW = NT / FM_W, DC = (TW + SPC - 1) / SPC;
    const int LDX = H + 8;
    const u32 ring0 = smem_addr(smem_f) + (warp * QD * 32 + lane) * 16;
    u16* xs = (u16*)(smem_f + FM_W * QD * 32);
    float* gpart = (float*)(xs + ((M * LDX + 7) & ~7));
    u32x4* dcon = (u32x4*)(gpart + FM_NBUF * FM_W * M * 16);
    u32* gsc = (u32*)(dcon + ndg * NT * 8);

    // This warp's gate/up chunks of a step: [ea, eb) of the step's 2·CK,
    // all in one tile (half 0 gate, 1 up: w·2CK/16 = CK at w = 8).
    const int ea = warp * 2 * CK / FM_W, ngw = (warp + 1) * 2 * CK / FM_W - ea;
    const int half = warp >= FM_W / 2 ? 1 : 0, kc0 = ea - half * CK;
    const int ntot = S * (ngw + DC);
    const u64 wpol = l2_policy(flags & FM_EVICT);
    // tileq: the GLU weight's tile of gate (h 0) or up (h 1) of the
    // intermediate's tile P.
    auto tileq = [&](int P, int h) { return (P >> 2) * 8 + h * 4 + (P & 3); };
    // The refill cursor: segment rk = 2q + kind (kind 0: gate/up's ngw
    // chunks of step q, taken in round q; kind 1: down's DC chunks of step
    // q − 1, taken in round q; empty segments skipped), rleft chunks left
    // in it from rp, rn copied in all.
    int rn = 0, rk = -1, rleft = 0;
    const u32x4* rp = nullptr;
    auto next_segment = [&]() {
        for (;;) {
            rk++;
            const int q = rk >> 1;
            if ((rk & 1) == 0 && q < S && ngw > 0) {
                rp = (const u32x4*)gqw + ((i64)tileq(J0 + q, half) * CK + kc0) * 32 + lane, rleft = ngw;
                return;
            }
            if ((rk & 1) == 1 && q >= 1) {
                rp = (const u32x4*)dqw + ((i64)((J0 + q - 1) * FM_W + warp) * DC) * 32 + lane, rleft = DC;
                return;
            }
        }
    };
    next_segment();
    auto refill = [&](u32 slot) {
        if (rn < ntot) {
            cp_async16_pol(slot, rp, wpol);
            rp += 32;
            if (++rn < ntot && --rleft == 0) next_segment();
        }
        asm volatile("cp.async.commit_group;");
    };
    // Down's decode constants of the groups the block's slice of its inputs
    // reaches: for output tile nt and lane group gg, (1024 + zero of row
    // gg, twice; 960 − (1024 + zero) of row gg+8 at 4 bits, 1024 + zero of
    // row gg+8 at 8; the two rows' scales as fp32). Their loads go out
    // before the copies of the scale pairs and the ring: the prologue waits
    // for them, and behind those copies they came in 2 µs after the
    // previous kernel's end (GPTQTOOL_TRACE_AT=1).
    const int glo = 16 * J0 / gsd, nd = (16 * (J0 + S) - 1) / gsd - glo + 1;
    const int ndc = nd * NT * 8;
    u32 a0[8], a1[8];  // eight entries' loads in flight a thread
    auto dload = [&](int i0) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int i = i0 + k * FM_W * 32, r = i / (NT * 8), rem = i - r * NT * 8;
            if (i < ndc) {
                const u32* p = dsz + (i64)(glo + r) * H + (rem >> 3) * 16 + (rem & 7);
                a0[k] = __ldg(p), a1[k] = __ldg(p + 8);
            }
        }
    };
    auto dstore = [&](int i0) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int i = i0 + k * FM_W * 32;
            if (i < ndc) {
                const u32 z0 = (a0[k] >> 16) * 0x10001u, z1 = (a1[k] >> 16) * 0x10001u;
                dcon[i] = u32x4{z0, BITS == 4 ? hsub2(0x63806380u, z1) : z1, __float_as_uint(h_lo(a0[k])),
                                __float_as_uint(h_lo(a1[k]))};
            }
        }
    };
    dload(threadIdx.x);
    // The scale pairs of gate/up's tiles (one cp.async group, the oldest),
    // then the ring's first QD chunks, all model data.
    for (int i = threadIdx.x; i < 2 * S * NGH * 4; i += blockDim.x) {
        const int q = i & 3, r = i >> 2, l = r / NGH, gi = r - l * NGH;
        cp_async16(smem_addr(gsc + r * 16 + q * 4), gsz + (i64)gi * NG + tileq(J0 + (l >> 1), l & 1) * 16 + q * 4);
    }
    asm volatile("cp.async.commit_group;");
#pragma unroll
    for (int i = 0; i < QD; i++) refill(ring0 + i * 512);
    // The constants' first eight entries a thread, then the rest (more
    // than 4,096 entries: groups of fewer than 128 inputs).
    dstore(threadIdx.x);
    for (int i0 = threadIdx.x + 8 * FM_W * 32; i0 < ndc; i0 += 8 * FM_W * 32) dload(i0), dstore(i0);
    // The steps' barriers: gbar[p % FM_NBUF] completes when every thread
    // has written its warp's gate/up sums of step p (phase p / FM_NBUF).
    __shared__ __align__(8) u64 gbar[FM_NBUF];
    if (threadIdx.x < FM_NBUF) bar_init(smem_addr(&gbar[threadIdx.x]), blockDim.x);

    TRACE_MARK_AT(1, 1);
    pdl_wait();
    // LL: the launch's tag, block b's launch counter plus one, read and
    // raised here by thread 0 (read again only after this launch has
    // ended; block 0 raises those of blocks past NB), shared with the
    // block's threads through the barrier below.
    __shared__ u32 ll_tag;
    if (LL && threadIdx.x == 0) {
        u32 c;
        asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(c) : "l"(sync + b) : "memory");
        ll_tag = c + 1;
        sync[b] = c + 1;
        if (b == 0) {
            for (int k = NB; k < FM_KMAX * FM_W; k++) sync[k] = c + 1;
        }
    }
    TRACE_MARK_AT(0, 1);
    TRACE_MARK_AT(1, 2);
    // x, rows of the normed input in gate/up's input order, as fp16 times XS.
    for (int e = threadIdx.x; e < M * (H / 8); e += blockDim.x) {
        const int m = e / (H / 8), k = (e - m * (H / 8)) * 8;
        float v[8];
        load8<T>(xn + (i64)m * H + k, v);
        *(u32x4*)(xs + m * LDX + k) = u32x4{pack2<f16>(v[0] * XS, v[1] * XS), pack2<f16>(v[2] * XS, v[3] * XS),
                                            pack2<f16>(v[4] * XS, v[5] * XS), pack2<f16>(v[6] * XS, v[7] * XS)};
    }
    // The scale pairs' copies (the oldest group) are done, and visible to
    // the block after the barrier.
    asm volatile("cp.async.wait_group %0;" ::"n"(QD));
    __syncthreads();
    TRACE_MARK_AT(0, 2);

    // take: the next stream chunk from the ring, after refilling the slot
    // the one before it left.
    int ci = 0;
    auto take = [&]() {
        if constexpr (NS) {  // the _ns probe: whatever the ring's slots hold, no copies
            return lds128(ring0 + (ci++ & (QD - 1)) * 512);
        }
        if (ci > 0) {
            refill(ring0 + ((ci - 1) & (QD - 1)) * 512);
        } else {
            asm volatile("cp.async.commit_group;");
        }
        asm volatile("cp.async.wait_group %0;" ::"n"(QD - 1));
        const u32x4 w = lds128(ring0 + (ci & (QD - 1)) * 512);
        ci++;
        return w;
    };
    float dacc[FM_TW][4];
#pragma unroll
    for (int i = 0; i < FM_TW; i++) dacc[i][0] = dacc[i][1] = dacc[i][2] = dacc[i][3] = 0.0f;
    const u32 xb = smem_addr(xs + imin(lane & 7, M - 1) * LDX + (lane >> 3) * 8);
    const int cpg = gsg / KB;  // chunks a group (gsg a multiple of KB, H of gsg)
    // Round p: gate/up of step p, then down's step p − 1.
    for (int p = 0; p <= S; p++) {
        if (p < S) {
            float accv[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (ngw > 0) {
                const u32* gp = gsc + (2 * p + half) * NGH * 16;
                int gi = kc0 / cpg, gleft = cpg - (kc0 - gi * cpg);
                float s0, s1;
                u32 zz0, zz1, nz1;
                auto setq = [&]() {  // the pairs of rows g and g+8 of group gi
                    const u32 a0 = gp[gi * 16 + g], a1 = gp[gi * 16 + g + 8];
                    s0 = h_lo(a0), s1 = h_lo(a1);
                    zz0 = (a0 >> 16) * 0x10001u, zz1 = (a1 >> 16) * 0x10001u;
                    nz1 = hsub2(0x63806380u, zz1);
                };
                auto fold = [&]() {
                    accv[0] += s0 * tmp[0], accv[1] += s0 * tmp[1], accv[2] += s1 * tmp[2], accv[3] += s1 * tmp[3];
                    tmp[0] = tmp[1] = tmp[2] = tmp[3] = 0.0f;
                };
                setq();
                for (int i = 0; i < ngw && (flags & FM_NOGU); i++) take();
                for (int i = 0; i < ngw && !(flags & FM_NOGU); i++) {
                    const u32x4 w = take();
                    const int kc = kc0 + i;
                    u32x4 bf[SPC / 2];
#pragma unroll
                    for (int q = 0; q < SPC / 2; q++) bf[q] = ldsm4(xb + kc * (KB * 2) + 64 * q);
#pragma unroll
                    for (int s = 0; s < SPC; s++) {
                        u32 a[4];
                        fm_decode<BITS>(word_of(w, WPI * s), word_of(w, WPI * s + WPI - 1), zz0, zz1, nz1, a);
                        const u32x4 v = bf[s / 2];
                        mma16816<f16>(tmp, a, (s & 1) ? v.c : v.a, (s & 1) ? v.d : v.b);
                    }
                    if (--gleft == 0 && i + 1 < ngw) {  // the next group starts
                        fold();
                        gi++, gleft = cpg;
                        setq();
                    }
                }
                fold();
            }
            // The warp's sums of its tile (lane (g, t): rows 2t, 2t+1 of
            // outputs g, g+8) to gpart[p % FM_NBUF][warp][row][output].
            float* gw = gpart + ((p % FM_NBUF) * FM_W + warp) * M * 16;
            if (2 * t < M) gw[2 * t * 16 + g] = accv[0], gw[2 * t * 16 + g + 8] = accv[2];
            if (2 * t + 1 < M) gw[(2 * t + 1) * 16 + g] = accv[1], gw[(2 * t + 1) * 16 + g + 8] = accv[3];
            bar_arrive(smem_addr(&gbar[p % FM_NBUF]));
        }
        if (p == 0) continue;
        // Down's step st = p − 1, once every warp's gate/up sums of it are
        // in: the mma's B fragment (lane (g, t): row g, inputs 2t, 2t+1
        // and 2t+8, 2t+9) is h of those, which each warp works out from
        // the 16 warps' sums, added up in warp order.
        const int st = p - 1;
        bar_wait(smem_addr(&gbar[st % FM_NBUF]), (st / FM_NBUF) & 1);
        u32 b0, b1;
        {
            const float* hp = gpart + (st % FM_NBUF) * FM_W * M * 16 + imin(g, M - 1) * 16 + 2 * t;
            float gs[4] = {0.0f, 0.0f, 0.0f, 0.0f}, us[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int w = 0; w < FM_W; w++) {
                const float2 lo = *(const float2*)(hp + w * M * 16), hi = *(const float2*)(hp + w * M * 16 + 8);
                float* d = w < FM_W / 2 ? gs : us;
                d[0] += lo.x, d[1] += lo.y, d[2] += hi.x, d[3] += hi.y;
            }
            float hv[4];
#pragma unroll
            for (int e = 0; e < 4; e++) hv[e] = to_f32(from_f32<T>(fm_silu(gs[e] / XS) * (us[e] / XS))) * XS;
            b0 = pack2<f16>(hv[0], hv[1]), b1 = pack2<f16>(hv[2], hv[3]);
        }
        if (flags & FM_NODOWN) {
            for (int c = 0; c < DC; c++) take();
            continue;
        }
        const u32 cb = smem_addr(dcon + ((16 * (J0 + st) / gsd - glo) * NT + warp * TW) * 8 + g);
#pragma unroll
        for (int c = 0; c < DCM; c++) {
            if (c < DC) {
                const u32x4 w = take();
                // Every item of a chunk: those past TW (zero words,
                // constants of the next warp's tiles or past them, still
                // in shared memory) go to sums never emitted.
#pragma unroll
                for (int u = 0; u < SPC; u++) {
                    const int i = c * SPC + u;
                    const u32x4 k = lds128(cb + i * 8 * 16);
                    u32 a[4];
                    fm_decode<BITS>(word_of(w, WPI * u), word_of(w, WPI * u + WPI - 1), k.a, k.b, k.b, a);
                    float d[4];
                    mma_z(d, a, b0, b1);
                    const float s0 = __uint_as_float(k.c), s1 = __uint_as_float(k.d);
                    dacc[i][0] += s0 * d[0], dacc[i][1] += s0 * d[1];
                    dacc[i][2] += s1 * d[2], dacc[i][3] += s1 * d[3];
                }
            }
        }
    }
    asm volatile("cp.async.wait_group 0;");
    TRACE_MARK_AT(0, 3);
    pdl_launch();

    // The block's sums of down (its slice of the intermediate's share of
    // every output) go to the blocks that add them up: output n to its
    // owner n / WM (WM the power of two at least ⌈H/NB⌉, so the first
    // ⌈H/WM⌉ ≤ NB blocks own outputs) at part[n / WM][b][m][n % WM], so
    // that each owner reads its NB shares as one run. Lane (g, t) of tile
    // nt holds rows 2t (c0, c2) and 2t+1 (c1, c3) of outputs 16·nt + g and
    // 16·nt + g + 8.
    if (flags & FM_NORED) return;
    const int wm0 = (H + NB - 1) / NB, lw = wm0 <= 1 ? 0 : 32 - __clz(wm0 - 1), WM = 1 << lw;
    if constexpr (LL) {
        fmlp_end_ll<T, QD>((u64*)part, dacc, x, H, M, NB, TW, WM, lw, ll_tag);
        return;
    }
    // The generation: every block's flag sync[k] is the same at a launch's
    // start (each launch raises each by one, and a launch starts after the
    // one before has ended), so block b's own tells every block's.
    u32 gen;
    asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(gen) : "l"(sync + b) : "memory");
    gen++;
    fm_shares(part, dacc, TW, NB, M, WM, lw, [&](float* q, float v) { __stcg(q, v / XS); });
    // Block b adds up outputs [n0, n0 + W) of every row (below); x of them
    // is read before the wait (no other block writes them).
    const FmOwned o = fm_owned(x, H, M, NB, WM, lw);
    // Its shares are out: the block's stores are ordered before the flag
    // by the block barrier and the release (as stream.cu's grid_sync).
    __syncthreads();
    if (threadIdx.x == 0) asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(sync + b), "r"(gen) : "memory");
    // Warp w adds up the shares of blocks [k0, k0 + nk) in order, once
    // their flags say they are out (no barrier of the grid: a block waits
    // only for the shares it reads), into red[w] (its own ring's slots,
    // free now: M·WM floats at most 2 KB, FuseMLP checks), then thread o
    // the 16 warps' sums of its output in order: runs are bit for bit the
    // same.
    if (o.W == 0) return;  // a block that owns no outputs
    const int k0 = o.k0, nk = o.nk;
    // Lane k polls block k0 + k's flag (all at once: one acquiring load
    // after another took a round trip each), then the fence after its
    // observation and the warp's barrier order every lane's reads of the
    // shares after those blocks' release.
    if (lane < nk) {
        u32 v;
        do {
            asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(v) : "l"(sync + k0 + lane) : "memory");
        } while (v != gen);
    }
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
    __syncwarp();
    TRACE_MARK_AT(1, 3);
    float* red = (float*)(smem_f + warp * QD * 32);
    const float* pp = part + ((i64)b * NB + k0) * M * WM;
    for (int c = lane; c < M * WM; c += 32) {
        float v[FM_KMAX], sum = 0.0f;
#pragma unroll
        for (int u = 0; u < FM_KMAX; u++) v[u] = u < nk ? __ldcg(pp + (i64)u * M * WM + c) : 0.0f;
#pragma unroll
        for (int u = 0; u < FM_KMAX; u++) sum += v[u];
        red[c] = sum;
    }
    __syncthreads();
    if (o.owns) fm_add_owned<T, QD>(x, H, WM, o.n0, o.om, o.ow, o.xpre);
}

// fmlp_relayout<BITS>: down's codes (qgemv.cu's tiled layout of the weight
// [I inputs, H outputs], std) re-laid for fmlp (above) into out. Grid
// (J, 16): block (j, w) writes warp w's DC chunks of the intermediate's
// tile j, 128 threads: lane = threadIdx.x / 4, word q = threadIdx.x % 4.
template <int BITS>
__device__ void fmlp_relayout(u32* out, const u32* std, int H, int I) {
    constexpr int SPC = BITS == 4 ? 4 : 2, WPI = BITS == 4 ? 1 : 2, KB = 16 * SPC;
    const int j = blockIdx.x, w = blockIdx.y, NT = H / 16, CKd = I / KB, TW = NT / FM_W, DC = (TW + SPC - 1) / SPC;
    const int lane = threadIdx.x >> 2, q = threadIdx.x & 3;
    const int kc = j / SPC, sw = j - kc * SPC;
    for (int c = 0; c < DC; c++) {
        const int i = c * SPC + q / WPI, wi = q % WPI;
        u32 v = 0u;
        if (i < TW) v = std[(((i64)(w * TW + i) * CKd + kc) * 32 + lane) * 4 + sw * WPI + wi];
        out[(((i64)j * FM_W + w) * DC + c) * 128 + lane * 4 + q] = v;
    }
}

#define FMLP(BITS, QD, N, T)                                                                                    \
    extern "C" __global__ void __launch_bounds__(512, 1) fmlp##BITS##_q##QD##_##N(                                  \
        T* x, const T* xn, const u32* gqw, const u32* gsz, const u32* dqw, const u32* dsz, float* part, u32* sync, int H,  \
        int I, int M, int gsg, int gsd, int ndg, int flags) {                                                           \
        fmlp<BITS, QD, T>(x, xn, gqw, gsz, dqw, dsz, part, sync, H, I, M, gsg, gsd, ndg, flags);                       \
    }
// fmlp*_ll (runtime/cuda GPTQTOOL_FUSED_MLP_LL=1): the same with the
// tagged shares' end (fmlp_end_ll) instead of the flags'.
#define FMLP_LL(BITS, QD, N, T)                                                                                    \
    extern "C" __global__ void __launch_bounds__(512, 1) fmlp##BITS##_q##QD##_##N##_ll(                                \
        T* x, const T* xn, const u32* gqw, const u32* gsz, const u32* dqw, const u32* dsz, float* part, u32* sync, int H,  \
        int I, int M, int gsg, int gsd, int ndg, int flags) {                                                           \
        fmlp<BITS, QD, T, false, true>(x, xn, gqw, gsz, dqw, dsz, part, sync, H, I, M, gsg, gsd, ndg, flags);          \
    }
#define FMLP_T(N, T)                                                                                             \
    FMLP(4, 4, N, T) FMLP(4, 8, N, T) FMLP(8, 4, N, T) FMLP(8, 8, N, T) FMLP_LL(4, 4, N, T) FMLP_LL(4, 8, N, T) \
        FMLP_LL(8, 4, N, T) FMLP_LL(8, 8, N, T)
FMLP_T(f32, float)
FMLP_T(f16, f16)
FMLP_T(bf16, bf16)
// fmlp4_q*_*_ns (GPTQTOOL_FUSED_MLP_PROBE bit 8, 4 bits only; wrong
// results): the work without the stream, each chunk taken from the ring's
// slots as the prologue filled them and nothing copied after, to tell the
// work's own time from the stream's.
#define FMLP_NS(QD, N, T)                                                                                        \
    extern "C" __global__ void __launch_bounds__(512, 1) fmlp4_q##QD##_##N##_ns(                                    \
        T* x, const T* xn, const u32* gqw, const u32* gsz, const u32* dqw, const u32* dsz, float* part, u32* sync, int H,  \
        int I, int M, int gsg, int gsd, int ndg, int flags) {                                                           \
        fmlp<4, QD, T, true>(x, xn, gqw, gsz, dqw, dsz, part, sync, H, I, M, gsg, gsd, ndg, flags);                    \
    }
FMLP_NS(4, f16, f16)
FMLP_NS(8, f16, f16)
FMLP_NS(4, bf16, bf16)
FMLP_NS(8, bf16, bf16)

extern "C" __global__ void fmlp_relayout4(u32* out, const u32* std, int H, int I) {
    fmlp_relayout<4>(out, std, H, I);
}
extern "C" __global__ void fmlp_relayout8(u32* out, const u32* std, int H, int I) {
    fmlp_relayout<8>(out, std, H, I);
}
