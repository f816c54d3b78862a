// qglu.cu: the GLU product of one to a few rows, out[m, c] = silu(gate)·up,
// on the wide GLU kernels' weight tiles (qgemv.cu's tiled layout, the _g
// kernels' tile order), its work taken in pieces from a counter instead of
// fixed splits, so that the blocks that free up first take more of it
// (runtime/cuda quant.go, GPTQTOOL_QGLU_PIECES).
//
// The weight, its scales (the pairs, or with QG_SZ16 the scales alone) and
// its permutation are qgemv.cu's, groups of whole chunks (KB inputs a
// chunk: 32 at 8 bits, 64 at 4). A piece is one output tile, 16 outputs:
// its gate tile and its up tile over the whole of K, so that no piece's
// sums are added up with another block's. Piece p's gate tile is tile
// (p >> 2)·8 + (p & 3) of the weight, its up tile the one 4 past it.
//
// Grid: nb blocks (one an SM, nb <= the pieces), QL_W warps (16 or 32):
// the first half take the gate tile, the second the up tile, warp w its
// QL_C chunks from chunk (w % QL_KW)·QL_C (QL_IN = 8192 / QL_W inputs, 512
// or 256; K <= 4096, a multiple of QL_IN: warps past K idle). Each warp
// streams its chunks of each of the block's pieces
// through a ring of QL_D chunks (cp.async), which runs on from piece to
// piece; its groups' scales come into shared memory with the piece's first
// chunk. The block's first piece is blockIdx.x; warp 0 takes the others
// from ctr[0] (piece nb + its value), one piece ahead of its own reading,
// into a list in shared memory that the other warps read. x (rows of K
// inputs, gathered through perm, fp16 times XS as qgemv.cu stages it) is
// staged whole once.
//
// A warp's sums of a piece (fp32, [M][16]) go to one of QL_SLOTS slots in
// shared memory; the warp that arrives there last adds the slot up, gate's
// warps and up's in warp order (so that the bits do not depend on
// which warp came last or which block took the piece), and writes
// silu(gate)·up as qgemv.cu's glu epilogue does, output c to column
// oslots[c] (c where oslots is null). A warp waits only for a slot that
// has not been added up yet.
//
// ctr: [0] the pieces taken, [1] the blocks done taking; the last block
// done taking zeroes both for the next launch. QF_EARLY lets the next
// kernel launch at once, QF_LATE only as the blocks end, neither as each
// warp's streaming ends (as in qgemv.cu); QF_EVICT streams the weights
// under evict_first.

// (szw, SZ_ZZ and sz_group, a group's scales as the loops use them:
// common.cuh.)

#define QF_EVICT 2
#define QF_EARLY 4
#define QF_LATE 8

// The block's shape, in the kernel's name (qglu<bits>_w<QL_W>d<QL_D>_<dtype>):
#ifndef QL_W
#define QL_W 16               // warps, 16 or 32
#endif
#ifndef QL_D
#define QL_D 8                // chunks in flight a warp (a piece's chunks a warp are whole turns of it)
#endif
#define QL_KW (QL_W / 2)      // warps a tile
#define QL_IN (8192 / QL_W)   // inputs a warp a piece (QL_C chunks)
#define QL_SLOTS 4    // pieces' sums in shared memory
#define QL_LIST 64    // a block's list: it takes QL_LIST - 1 pieces at most
#define QL_NONE (-1)
#define QL_WAIT (-2)
// QL_LEAD4 and QL_LEAD8 (QL_LEAD at 4 and 8 bits): warp 0 publishes the
// block's next piece QL_LEAD chunks of its own stream before the point
// where every warp needs it (the first copy of that piece), so that the
// other warps wait less for warp 0 there (Nsight Compute had the 8-bit
// kernel's warps spin on the list entry 28 times a piece on average).
// Beyond that point's own place in a piece it publishes the piece after
// the next one instead. On the H200 (7B shape, g128 act order, the
// fifty-fourth session): at 4 bits 8 chunks (the piece after the next one,
// at the point where the next one's first copy goes out) gave 565.3 /
// 565.6 / 565.4 tok/s at batch 1 against 563.1 / 563.4 / 562.8 in the same
// calls (batch 2 even), 1 chunk 561.1 and 5 chunks 543.6; at 8 bits 4, 9
// and 12 chunks gave 400.3 / 399.9 / 401.0 against 400.8 and 400.4 (even).
#ifndef QL_LEAD4
#define QL_LEAD4 8
#endif
#ifndef QL_LEAD8
#define QL_LEAD8 0
#endif

template <typename T> struct qlxs { static constexpr float v = 1.0f / 256.0f; };
template <> struct qlxs<f16> { static constexpr float v = 1.0f; };

__device__ __forceinline__ float ql_silu(float v) { return v / (1.0f + expf(-v)); }

// ql_take: atomicAdd(ctr, 1) as one instruction, its value waited for only
// where it is used: ptxas makes an add (atomicAdd, or atom.add itself) a
// warp's aggregated add, whose shuffle of the value waits for it at once,
// holding back warp 0 a round trip (in the staging, and as it publishes
// each piece); an increment that wraps at 2^31 - 1 (the same as the add,
// as a launch's counters stay far below it) it leaves be.
__device__ __forceinline__ u32 ql_take(u32* ctr) {
    u32 r;
    asm volatile("atom.global.inc.u32 %0, [%1], 0x7fffffff;" : "=r"(r) : "l"(ctr) : "memory");
    return r;
}

// ql_chunk: one chunk w's steps into the group's sums tmp, bf its B
// fragments (two steps each).
template <int BITS>
__device__ __forceinline__ void ql_chunk(const u32x4& w, const u32x4 (&bf)[BITS == 4 ? 2 : 1], u32 magic, u32 zz0, u32 zz1,
                                         u32 nz1, float (&tmp)[4]) {
    constexpr int SPC = BITS == 4 ? 4 : 2;
#pragma unroll
    for (int s = 0; s < SPC; s++) {
        u32 a[4];
        dq_step<BITS>(w, s, magic, zz0, zz1, nz1, a);
        const u32x4 b = bf[s / 2];
        mma16816<f16>(tmp, a, (s & 1) ? b.c : b.a, (s & 1) ? b.d : b.b);
    }
}

// NRM (the _n kernels, runtime/cuda GPTQTOOL_QGLU_NORM): x's rows are the
// input of an RMSNorm whose weight in the weight's sequential input order
// is nw (FuseNorm's), normalized as they are staged. Every block stages
// all of each row anyway: it sums the squares of the values it gathered,
// its warps' sums added in warp order, and stages each value as the norm
// kernel would have written it (rounded to T), so that no norm kernel runs
// between the product before and this one.
template <int BITS, typename T, bool NRM>
__device__ void qglu(T* __restrict__ out, const T* __restrict__ x, const u32* __restrict__ qw, const szw* __restrict__ sz,
                     const int* __restrict__ perm, const int* __restrict__ oslots, u32* ctr, int K, int N, int M, int gs,
                     int flags, const T* __restrict__ nw, float eps) {
    constexpr int SPC = BITS == 4 ? 4 : 2;  // 16-input steps a chunk
    constexpr int KB = 16 * SPC;
    constexpr int QL_C = QL_IN / KB;        // chunks a warp a piece
    static_assert(QL_C % QL_D == 0, "a piece is whole ring turns, so that its chunks' slots are constants");
    // QL_LEAD4 / QL_LEAD8: the chunk of a piece at which the next piece's first copy
    // goes out (QL_UN), and at which warp 0 publishes (QL_PU) the piece
    // QL_AH + 1 after this one.
    constexpr int QL_UN = QL_C + 1 - QL_D;
    constexpr int QL_LEAD = BITS == 4 ? QL_LEAD4 : QL_LEAD8;
    constexpr int QL_LD = QL_LEAD < QL_UN + QL_C - 1 ? QL_LEAD : QL_UN + QL_C - 1;  // (at most a piece more)
    constexpr int QL_AH = QL_LD > QL_UN ? 1 : 0;
    constexpr int QL_PU = QL_UN - QL_LD + QL_AH * QL_C;
    static_assert(QL_LD >= 0 && QL_PU >= 0 && QL_PU < QL_C, "QL_LEAD");
    constexpr float XS = qlxs<T>::v;
    extern __shared__ u32x4 smem_l[];
    __shared__ volatile int list[QL_LIST];    // the block's pieces in order (QL_WAIT: not yet, QL_NONE: the end)
    __shared__ volatile int parr[QL_SLOTS];   // a slot's warps' arrivals, cumulative
    __shared__ volatile int psumd[QL_SLOTS];  // a slot's pieces added up, cumulative
    // (Traced, runtime/cuda trace.go: marks 1 after the wait, 2 with x
    // staged, 3 as warp 0's loop ends; the record as thread 0 returns.)
    TRACE_BEGIN(9);
    if (flags & QF_EARLY) pdl_launch();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int nb = gridDim.x, CK = K / KB, np = N / 32;
    const int wk = warp % QL_KW, half = warp / QL_KW;
    const int kw = CK / QL_C;               // warps a tile with inputs (the rest idle)
    const int glen = imin(gs / KB, QL_C);  // chunks of a group within a piece (a power of two)
    const int gsh = __ffs(glen) - 1, GP = QL_C >> gsh;
    const int SB = GP * 16;                // a warp's scales of one piece
    const int LDX = K + 8, W = M * 16;
    szw* scl = (szw*)((char*)smem_l + QL_W * QL_D * 512);  // [QL_W][2][GP][16]
    u16* xs = (u16*)(scl + QL_W * 2 * SB);                // [M][LDX]
    float* psum = (float*)(xs + M * LDX);                 // [QL_SLOTS][QL_W][M][16]
    int* prs = (int*)(psum + QL_SLOTS * QL_W * M * 16);    // NRM: [K], the permutation
    T* nws = (T*)(prs + K);                                // NRM: [K], the norm weight
    if (threadIdx.x < QL_LIST) list[threadIdx.x] = threadIdx.x == 0 ? (int)blockIdx.x : QL_WAIT;
    if (threadIdx.x < QL_SLOTS) parr[threadIdx.x] = 0, psumd[threadIdx.x] = 0;

    const bool act = wk < kw;
    const u64 pol = l2_policy(flags & QF_EVICT);
    const u32 ring0 = smem_addr(smem_l) + (warp * QL_D * 32 + lane) * 16;
    szw* mysc = scl + warp * 2 * SB;
    // begin: piece pc's first chunk of this warp's share of its tile
    // (qgemv.cu's qtile order, gate's tiles then up's in fours), and its
    // groups' scales copied into scale slot j (a 16-byte copy a lane, in
    // the commit group of the piece's first chunk).
    auto begin = [&](int pc, int j) -> const u32x4* {
        const int nt = (pc >> 2) * 8 + half * 4 + (pc & 3);
        constexpr int CPG = sizeof(szw);  // 16-byte copies a group's 16 columns
        // (Up to 16 groups of 4 copies a warp: two rounds of its lanes.)
        for (int i = lane; i < GP * CPG; i += 32) {
            const int gi = wk * QL_IN / gs + i / CPG;
            cp_async16(smem_addr(mysc + j * SB + (i / CPG) * 16) + (i % CPG) * 16,
                       (const char*)(sz + (i64)gi * N + nt * 16) + (i % CPG) * 16);
        }
        return (const u32x4*)qw + ((i64)nt * CK + wk * QL_C) * 32 + lane;
    };
    const u32x4* src = nullptr;
    // NRM: this thread's item of the permutation and of the norm weight
    // (model weights, not the previous kernel's output) copied to shared
    // memory before the wait, the oldest commit group, and read only after
    // it: loaded into registers, their first uses (addresses, conversions)
    // were scheduled before the wait, which then waited a round trip for
    // them behind the ring's first turn.
    if constexpr (NRM) {
        const int e = threadIdx.x;
        if (e < K / 8) {
            if (perm) {
                cp_async16(smem_addr(prs + e * 8), perm + e * 8);
                cp_async16(smem_addr(prs + e * 8 + 4), perm + e * 8 + 4);
            }
#pragma unroll
            for (int i = 0; i < (int)(sizeof(T) / 2); i++) cp_async16(smem_addr(nws + e * 8) + 16 * i, (const char*)(nw + e * 8) + 16 * i);
        }
        asm volatile("cp.async.commit_group;");
    }
    if (act) {
        // The weights and scales are the model's: the ring's first turn
        // before the wait.
        src = begin(blockIdx.x, 0);
#pragma unroll
        for (int i = 0; i < QL_D; i++) {
            cp_async16_pol(ring0 + i * 512, src + i * 32, pol);
            asm volatile("cp.async.commit_group;");
        }
    }
    // The permutation of this thread's item of x (K <= 8 × the block's
    // threads, the backend checks).
    const int n8 = K / 8, e = threadIdx.x;
    int4 pr[2];
    if (!NRM && perm && e < n8) pr[0] = __ldg((const int4*)(perm + e * 8)), pr[1] = __ldg((const int4*)(perm + e * 8 + 4));
    pdl_wait();
    u32x4 wr[sizeof(T) / 2];
    if constexpr (NRM) {
        // (Its group is the oldest: a warp with inputs has its ring's first
        // turn, QL_D groups, after it.)
        if (act) {
            asm volatile("cp.async.wait_group %0;" ::"n"(QL_D) : "memory");
        } else {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
        }
        if (e < n8) {
            if (perm) pr[0] = *(const int4*)(prs + e * 8), pr[1] = *(const int4*)(prs + e * 8 + 4);
#pragma unroll
            for (int i = 0; i < (int)(sizeof(T) / 2); i++) wr[i] = *(const u32x4*)((const char*)(nws + e * 8) + 16 * i);
        }
    }
    TRACE_MARK(1);
    u32 pend = 0;  // warp 0, lane 0: the value ctr[0] gave for the next list entry
    const bool taker = warp == 0 && lane == 0;
    if (taker) pend = ql_take(ctr);
    // x, staged whole: rows of eight inputs a thread an item.
    auto gather = [&](int m, float* v) {
        const T* xr = x + (i64)m * K;
        if (perm) {
            const int4 a = pr[0], b = pr[1];
            v[0] = to_f32(xr[a.x]), v[1] = to_f32(xr[a.y]), v[2] = to_f32(xr[a.z]), v[3] = to_f32(xr[a.w]);
            v[4] = to_f32(xr[b.x]), v[5] = to_f32(xr[b.y]), v[6] = to_f32(xr[b.z]), v[7] = to_f32(xr[b.w]);
        } else {
            load8<T>(xr + e * 8, v);
        }
    };
    auto put = [&](int m, const float* v) {
        *(u32x4*)(xs + m * LDX + e * 8) = u32x4{pack2<f16>(v[0] * XS, v[1] * XS), pack2<f16>(v[2] * XS, v[3] * XS),
                                                pack2<f16>(v[4] * XS, v[5] * XS), pack2<f16>(v[6] * XS, v[7] * XS)};
    };
    if constexpr (NRM) {
        // Each row's values, its squares' sum over the block (the warps'
        // sums in warp order), then the values normalized.
        __shared__ float ql_red[4][QL_W];
        float v[4][8];
#pragma unroll
        for (int m = 0; m < 4; m++) {
            if (m >= M) break;
            float ss = 0.0f;
            if (e < n8) {
                gather(m, v[m]);
#pragma unroll
                for (int j = 0; j < 8; j++) ss += v[m][j] * v[m][j];
            }
            ss = warp_sum(ss);
            if (lane == 0) ql_red[m][warp] = ss;
        }
        __syncthreads();
        if (e < n8) {
            float wv[8];
            if constexpr (sizeof(T) == 2) {
                unpack8<T>(wr[0], wv);
            } else {
                const float* f = (const float*)wr;
#pragma unroll
                for (int j = 0; j < 8; j++) wv[j] = f[j];
            }
#pragma unroll
            for (int m = 0; m < 4; m++) {
                if (m >= M) break;
                float t = 0.0f;
                for (int i = 0; i < QL_W; i++) t += ql_red[m][i];
                const float inv = 1.0f / sqrtf(t / (float)K + eps);
#pragma unroll
                for (int j = 0; j < 8; j++) v[m][j] = to_f32(from_f32<T>(wv[j] * (v[m][j] * inv)));
                put(m, v[m]);
            }
        }
    } else if (e < n8) {
        for (int m = 0; m < M; m++) {
            float v[8];
            gather(m, v);
            put(m, v);
        }
    }
    __syncthreads();
    TRACE_MARK(2);
    // publish (warp 0, lane 0): list entry i from ctr[0]'s value r; whether
    // to take another (not past the last piece, nor past the list, whose
    // last entry is always QL_NONE). A block done taking counts itself in
    // ctr[1]; the last of them zeroes both counters for the next launch
    // (every block's last take on ctr[0] has returned by then).
    bool taking = true;
    auto publish = [&](int i, u32 r) {
        const bool ok = r < (u32)(np - nb);
        list[i] = ok ? nb + (int)r : QL_NONE;
        taking = ok && i + 1 < QL_LIST - 1;
        if (ok && !taking) list[i + 1] = QL_NONE;
        if (!taking) {
            __threadfence();
            if (atomicAdd(ctr + 1, 1u) == (u32)(nb - 1)) {
                __threadfence();
                ctr[0] = 0, ctr[1] = 0;
            }
        } else {
            pend = ql_take(ctr);  // (its value is read a piece later)
        }
    };
    if (!act) return;  // (warp 0 always has inputs)
    if (QL_AH && taker) publish(1, pend);  // (QL_LEAD4/8: the pieces in the loop publish two ahead)

    const u32 magic = 0x64006400u;  // fp16 1024, twice
    const u32 xk = smem_addr(xs + imin(lane & 7, M - 1) * LDX + (lane >> 3) * 8) + wk * (QL_IN * 2);
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int pc = blockIdx.x;
    for (int k = 0;; k++) {
        const u32x4* nsrc = src;
        int npc = QL_NONE;
        float s0 = 0.0f, s1 = 0.0f;
        u32 zz0 = 0, zz1 = 0, nz1 = 0;
#pragma unroll
        for (int u = 0; u < QL_C; u++) {
            // Item j = k·QL_C + u of the warp's sequence: refill the slot
            // item j-1 was read from with item j-1+QL_D, of this piece or
            // (from chunk 0, with its scales) the next one.
            const int v = u - 1 + QL_D;
            if (QL_LD > 0 && u == QL_PU && taker && taking) publish(k + 1 + QL_AH, pend);
            if (v == QL_C) {
                if (QL_LD == 0 && taker && taking) publish(k + 1, pend);
                while ((npc = list[k + 1]) == QL_WAIT) {
                }
                if (npc >= 0) nsrc = begin(npc, (k + 1) & 1);
            }
            const u32 rs = ring0 + ((u + QL_D - 1) % QL_D) * 512;
            if (v < QL_C)
                cp_async16_if(rs, src + v * 32, k > 0 || u > 0, pol);
            else
                cp_async16_if(rs, nsrc + (v - QL_C) * 32, npc >= 0, pol);
            asm volatile("cp.async.commit_group;");
            asm volatile("cp.async.wait_group %0;" ::"n"(QL_D - 1) : "memory");  // (the scales too)
            const u32x4 w = lds128(ring0 + (u % QL_D) * 512);
            u32x4 bf[SPC / 2];
#pragma unroll
            for (int q = 0; q < SPC / 2; q++) bf[q] = ldsm4(xk + u * (KB * 2) + 64 * q);
            if ((u & (glen - 1)) == 0) {
                // A group starts: the last one's sums times its scales,
                // then this one's scales (rows g and g+8 of the tile;
                // other lanes copied them: the warp's waits are done).
                __syncwarp();
                if (u > 0) {
                    acc[0] += s0 * tmp[0], acc[1] += s0 * tmp[1], acc[2] += s1 * tmp[2], acc[3] += s1 * tmp[3];
                    tmp[0] = tmp[1] = tmp[2] = tmp[3] = 0.0f;
                }
                const szw* sc = mysc + (k & 1) * SB + (u >> gsh) * 16;
                sz_group<BITS>(sc[g], sc[g + 8], s0, s1, zz0, zz1, nz1);
            }
            ql_chunk<BITS>(w, bf, magic, zz0, zz1, nz1, tmp);
        }
        acc[0] += s0 * tmp[0], acc[1] += s0 * tmp[1], acc[2] += s1 * tmp[2], acc[3] += s1 * tmp[3];
        tmp[0] = tmp[1] = tmp[2] = tmp[3] = 0.0f;
        // The piece's sums to slot k % QL_SLOTS, once piece k - QL_SLOTS
        // has been added up from it.
        const int sl = k % QL_SLOTS, use = k / QL_SLOTS;
        while (psumd[sl] < use) {
        }
        volatile float* ps = psum + sl * QL_W * W;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int m = 2 * t + (e & 1);
            if (m < M) ps[warp * W + m * 16 + g + (e >> 1) * 8] = acc[e] / XS;
            acc[e] = 0.0f;
        }
        __syncwarp();
        int arr = 0;
        if (lane == 0) {
            __threadfence_block();
            arr = atomicAdd((int*)&parr[sl], 1);
        }
        if (__shfl_sync(0xffffffffu, arr, 0) == 2 * kw * (use + 1) - 1) {
            // The last warp of the piece adds it up: lanes 0-15 gate's
            // columns, 16-31 up's, over their tile's warps in order (lane
            // 0's count saw the others' arrivals; the fence and the warp
            // barrier carry that to every lane).
            __threadfence_block();
            __syncwarp();
            const int h = lane >> 4, c = lane & 15;
            for (int m = 0; m < M; m++) {
                float gv = 0.0f;
                float pv[QL_KW];
#pragma unroll
                for (int i = 0; i < QL_KW; i++) pv[i] = i < kw ? ps[(h * QL_KW + i) * W + m * 16 + c] : 0.0f;
#pragma unroll
                for (int i = 0; i < QL_KW; i++)
                    if (i < kw) gv += pv[i];
                const float up = __shfl_down_sync(0xffffffffu, gv, 16);
                if (lane < 16) {
                    const int oc = pc * 16 + c;
                    const T o = from_f32<T>(ql_silu(gv) * up);
                    out[(i64)m * (N / 2) + (oslots ? oslots[oc] : oc)] = o;
                }
            }
            __syncwarp();
            if (lane == 0) {
                __threadfence_block();
                psumd[sl] = use + 1;
            }
        }
        if (npc < 0) break;
        pc = npc, src = nsrc;
    }
    TRACE_MARK(3);
    asm volatile("cp.async.wait_group 0;");
    if (!(flags & (QF_EARLY | QF_LATE))) pdl_launch();
}

// qglu<bits>_w<QL_W>d<QL_D>_<dtype>: QL_W warps, one block an SM; the
// same with _n before the dtype: normalizing x (NRM).
#define QGLU_SYM2(BITS, W, D, NAME) qglu##BITS##_w##W##d##D##_##NAME
#define QGLU_SYM(BITS, W, D, NAME) QGLU_SYM2(BITS, W, D, NAME)
#define QGLU_SYMN2(BITS, W, D, NAME) qglu##BITS##_w##W##d##D##_n_##NAME
#define QGLU_SYMN(BITS, W, D, NAME) QGLU_SYMN2(BITS, W, D, NAME)
#define QGLU(BITS, NAME, T)                                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * QL_W, 1) QGLU_SYM(BITS, QL_W, QL_D, NAME)(                \
        T* out, const T* x, const u32* qw, const szw* sz, const int* perm, const int* oslots, u32* ctr,   \
        int K, int N, int M, int gs, int flags) {                                                                    \
        qglu<BITS, T, false>(out, x, qw, sz, perm, oslots, ctr, K, N, M, gs, flags, nullptr, 0.0f);            \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(32 * QL_W, 1) QGLU_SYMN(BITS, QL_W, QL_D, NAME)(               \
        T* out, const T* x, const u32* qw, const szw* sz, const int* perm, const int* oslots, u32* ctr,   \
        int K, int N, int M, int gs, int flags, const T* nw, float eps) {                                            \
        qglu<BITS, T, true>(out, x, qw, sz, perm, oslots, ctr, K, N, M, gs, flags, nw, eps);                   \
    }
#define QGLU_4(NAME, T) QGLU(4, NAME, T)
#define QGLU_8(NAME, T) QGLU(8, NAME, T)
#if !defined(QL_BITS) || QL_BITS == 4
FOR_DTYPES(QGLU_4)
#endif
#if !defined(QL_BITS) || QL_BITS == 8
FOR_DTYPES(QGLU_8)
#endif
