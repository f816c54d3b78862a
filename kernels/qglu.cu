// qglu.cu: the GLU product of one to a few rows, out[m, c] = silu(gate)·up,
// on the wide GLU kernels' slabs (qgemv.cu _g: 14 warps a block, the gate
// tiles and the up tiles of 112 outputs), its work taken in pieces from a
// counter instead of fixed splits, so that the blocks that free up first
// take more of it (runtime/cuda quant.go, GPTQTOOL_QGLU_PIECES).
//
// The weight, its scales (the pairs, or with QG_SZ16 the scales alone) and
// its permutation are qgemv.cu's, groups of whole chunks (KB inputs a
// chunk: 32 at 8 bits, 64 at 4). A piece is QL_C chunks of each of a
// slab's 14 tiles (QL_C·KB inputs: 256 at 8 bits, 512 at 4); a slab has
// PPS = K / (QL_C·KB) of them, and piece p is chunks (p % PPS)·QL_C.. of
// slab p / PPS (slab-major, so that a slab's pieces are taken close
// together). A piece never straddles a group: QL_C·KB is a multiple of
// the group size or the group size of it (the backend checks).
//
// Grid: nb blocks (two an SM, nb <= the pieces), QL_W + 1 warps. Warps 0 to
// QL_W-1 stream their tile of each of the block's pieces through a ring of
// QL_D chunks (cp.async), which runs on from piece to piece; each group's
// scales come into shared memory with the piece's first chunk. The block's
// first piece is blockIdx.x; warp 0 takes the others from ctr[0] (piece nb
// + its value), one piece ahead of its own reading, into a list in shared
// memory that the other warps read. x (rows of K inputs, gathered through
// perm, fp16 times XS as qgemv.cu stages it) is staged whole once.
//
// A piece's sums (fp32, [M][224] in the block's column order: gate's 112,
// then up's) go through one of QL_SLOTS slots in shared memory to the last
// warp, the collector, which writes them to part [pieces][M][224], each
// sum as one 64-bit word with the launch's epoch. Once a block has
// streamed all of its pieces (so that no warp waits for other blocks'
// pieces while it could stream), its warps write the outputs, one job of
// 16 outputs a warp (gate's and up's columns of one output tile of a
// slab, jobs spread over the blocks' first warps): the warp reads their
// sums over the slab's PPS parts, again where a word still holds an
// earlier epoch, adds them up in piece order, so that the bits do not
// depend on which block took which piece, and writes silu(gate)·up as
// qgemv.cu's glu epilogue does, output c to column oslots[c] (c where
// oslots is null). No warp waits for a fence: a word's epoch says that
// its sum is this launch's. A streaming warp waits only for a slot the
// collector has not emptied yet.
//
// ctr: [0] the pieces taken, [1] the blocks done taking, [2] the last
// launch's epoch. A launch's epoch is one past [2] as it starts; the last
// block done taking zeroes [0] and [1] and stores the epoch in [2], so
// that a word of an earlier launch never holds a later one's epoch and
// part is never cleared (an epoch repeats only 2^32 launches later, and
// every launch rewrites the words it reads). QF_EARLY lets the next kernel launch at once,
// QF_LATE only as the blocks end, neither as each warp's streaming ends
// (as in qgemv.cu); QF_EVICT streams the weights under evict_first.

#ifndef QG_SZ16
#define QG_SZ16 0
#endif
#if QG_SZ16
typedef u16 szw;
#define SZ_ZZ(BITS) ((0x6400u + (1u << ((BITS) - 1))) * 0x10001u)
#else
typedef u32 szw;
#endif

#define QF_EVICT 2
#define QF_EARLY 4
#define QF_LATE 8

// Flags for measuring (runtime/cuda GPTQTOOL_QGLU_FLAGS): no outputs at
// all (QL_NOFIN), the list two pieces ahead instead of one (QL_LA2).
#define QL_NOFIN 32
#define QL_LA2 64

#define QL_MAXM 4    // rows at most
#define QL_PPS 16    // a slab's pieces at most (K <= QL_PPS·QL_C·KB)
#define QL_W 14      // streaming warps: 7 gate and 7 up tiles
#define QL_H 7       // output tiles a slab
#define QL_COLS 224  // a slab's columns (the block's sums)
#define QL_D 4       // chunks in flight a warp
#define QL_C 8       // chunks a warp a piece
#define QL_SLOTS 4   // pieces' sums in shared memory
#define QL_LIST 64   // a block's list: it takes QL_LIST - 1 pieces at most
#define QL_NONE (-1)
#define QL_WAIT (-2)
static_assert(QL_C % QL_D == 0, "a piece is whole ring turns, so that its chunks' slots are constants");

template <typename T> struct qlxs { static constexpr float v = 1.0f / 256.0f; };
template <> struct qlxs<f16> { static constexpr float v = 1.0f; };

__device__ __forceinline__ float ql_silu(float v) { return v / (1.0f + expf(-v)); }

// A part's sums: (epoch << 32) | the fp32 bits, stored and loaded as one
// 64-bit access each (single-copy atomic), so that a sum read with the
// launch's epoch is that launch's, with no fence on either side.
__device__ __forceinline__ void st_relaxed(u64* p, u64 v) {
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ u64 ld_relaxed(const u64* p) {
    u64 v;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

template <int BITS, typename T>
__device__ void qglu(T* __restrict__ out, const T* __restrict__ x, const u32* __restrict__ qw, const szw* __restrict__ sz,
                     const int* __restrict__ perm, const int* __restrict__ oslots, u64* part, u32* ctr, int K, int N,
                     int M, int gs, int flags) {
    constexpr int SPC = BITS == 4 ? 4 : 2;  // 16-input steps a chunk
    constexpr int KB = 16 * SPC;
    constexpr float XS = qlxs<T>::v;
    extern __shared__ u32x4 smem_l[];
    __shared__ volatile int list[QL_LIST];    // the block's pieces in order (QL_WAIT: not yet, QL_NONE: the end)
    __shared__ volatile int parr[QL_SLOTS];  // a slot's warps' arrivals, cumulative
    __shared__ volatile int tdone;            // pieces the collector has emptied from their slots
    if (flags & QF_EARLY) pdl_launch();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int nb = gridDim.x, CK = K / KB, PPS = CK / QL_C, np = N / (2 * 16 * QL_H) * PPS;
    const int glen = imin(gs / KB, QL_C);  // chunks of a group within a piece (a power of two)
    const int gsh = __ffs(glen) - 1, GP = QL_C >> gsh;
    const int SB = GP * 16;                // a warp's scales of one piece
    const int LDX = K + 8, W = M * QL_COLS;
    szw* scl = (szw*)((char*)smem_l + QL_W * QL_D * 512);  // [QL_W][2][GP][16]
    u16* xs = (u16*)(scl + QL_W * 2 * SB);                // [M][LDX]
    float* psum = (float*)(xs + M * LDX);                 // [QL_SLOTS][M][QL_COLS]
    if (threadIdx.x < QL_LIST) list[threadIdx.x] = threadIdx.x == 0 ? (int)blockIdx.x : QL_WAIT;
    if (threadIdx.x < QL_SLOTS) parr[threadIdx.x] = 0;
    if (threadIdx.x == 0) tdone = 0;

    // tile: this warp's weight tile of slab s (qgemv.cu qtile with GW).
    auto tile = [&](int s) {
        const int p = s * QL_H + warp % QL_H;
        return (p >> 2) * 8 + (warp >= QL_H ? 4 : 0) + (p & 3);
    };
    const u64 pol = l2_policy(flags & QF_EVICT);
    const u32 ring0 = smem_addr(smem_l) + (warp * QL_D * 32 + lane) * 16;
    szw* mysc = scl + warp * 2 * SB;
    // begin: piece pc's first chunk of this warp's tile, and its groups'
    // scales copied into scale slot j (a 16-byte copy a lane, in the
    // commit group of the piece's first chunk).
    auto begin = [&](int pc, int j) -> const u32x4* {
        const int s = pc / PPS, kp = pc - s * PPS, nt = tile(s);
        constexpr int CPG = sizeof(szw);  // 16-byte copies a group's 16 columns
        if (lane < GP * CPG) {
            const int gi = kp * QL_C * KB / gs + lane / CPG;
            cp_async16(smem_addr(mysc + j * SB + (lane / CPG) * 16) + (lane % CPG) * 16,
                       (const char*)(sz + (i64)gi * N + nt * 16) + (lane % CPG) * 16);
        }
        return (const u32x4*)qw + ((i64)nt * CK + kp * QL_C) * 32 + lane;
    };
    const u32x4* src = nullptr;
    if (warp < QL_W) {
        // The weights and scales are the model's: the ring's first turn
        // before the wait.
        src = begin(blockIdx.x, 0);
#pragma unroll
        for (int i = 0; i < QL_D; i++) {
            cp_async16_pol(ring0 + i * 512, src + i * 32, pol);
            asm volatile("cp.async.commit_group;");
        }
    }
    // The permutation of this thread's items of x (two at most: K <= 16 ×
    // the block's threads, the backend checks).
    const int n8 = K / 8;
    int4 pr[2][2];
#pragma unroll
    for (int u = 0; u < 2; u++) {
        const int e = threadIdx.x + u * blockDim.x;
        if (perm && e < n8) pr[u][0] = __ldg((const int4*)(perm + e * 8)), pr[u][1] = __ldg((const int4*)(perm + e * 8 + 4));
    }
    pdl_wait();
    u32 pend = 0;  // warp 0, lane 0: the value ctr[0] gave for the next list entry
    const bool taker = warp == 0 && lane == 0;
    // This launch's epoch, one past ctr[2] as it starts (read before this
    // block takes a piece, so before the last block done taking stores it
    // there for the next launch).
    __shared__ u32 epoch;
    if (taker) epoch = __ldcg(ctr + 2) + 1, pend = atomicAdd(ctr, 1u);
    // x, staged whole: rows of eight inputs a thread an item.
    for (int m = 0; m < M; m++) {
        const T* xr = x + (i64)m * K;
        float v[2][8];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int e = threadIdx.x + u * blockDim.x;
            if (e >= n8) break;
            if (perm) {
                const int4 a = pr[u][0], b = pr[u][1];
                v[u][0] = to_f32(xr[a.x]), v[u][1] = to_f32(xr[a.y]), v[u][2] = to_f32(xr[a.z]), v[u][3] = to_f32(xr[a.w]);
                v[u][4] = to_f32(xr[b.x]), v[u][5] = to_f32(xr[b.y]), v[u][6] = to_f32(xr[b.z]), v[u][7] = to_f32(xr[b.w]);
            } else {
                load8<T>(xr + e * 8, v[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int e = threadIdx.x + u * blockDim.x;
            if (e >= n8) break;
            *(u32x4*)(xs + m * LDX + e * 8) =
                u32x4{pack2<f16>(v[u][0] * XS, v[u][1] * XS), pack2<f16>(v[u][2] * XS, v[u][3] * XS),
                      pack2<f16>(v[u][4] * XS, v[u][5] * XS), pack2<f16>(v[u][6] * XS, v[u][7] * XS)};
        }
    }
    __syncthreads();
    // publish (warp 0, lane 0): list entry i from ctr[0]'s value r; whether
    // to take another (not past the last piece, nor past the list, whose
    // last entry is always QL_NONE). A block done taking counts itself in
    // ctr[1]; the last of them zeroes both counters and stores the epoch
    // for the next launch (every block's last atomicAdd on ctr[0] has
    // returned by then).
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
                ctr[0] = 0, ctr[1] = 0, ctr[2] = epoch;
            }
        } else {
            pend = atomicAdd(ctr, 1u);  // (its value is read a piece later)
        }
    };
    // (QL_LA2: each entry published two pieces ahead, not one.)
    const int lead = flags & QL_LA2 ? 2 : 1;
    if (taker && lead == 2) publish(1, pend);

    if (warp < QL_W) {
        const u32 magic = 0x64006400u;  // fp16 1024, twice
        const u32 xb = smem_addr(xs + imin(lane & 7, M - 1) * LDX + (lane >> 3) * 8);
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        int pc = blockIdx.x;
        for (int k = 0;; k++) {
            const int kp = pc % PPS;
            const u32 xk = xb + kp * (QL_C * KB * 2);
            const u32x4* nsrc = src;
            int npc = QL_NONE;
            float s0 = 0.0f, s1 = 0.0f;
            u32 zz0 = 0, zz1 = 0, nz1 = 0;
#pragma unroll
            for (int u = 0; u < QL_C; u++) {
                // Item j = k·QL_C + u of the warp's sequence: refill the
                // slot item j-1 was read from with item j-1+QL_D, of this
                // piece or (from chunk 0, with its scales) the next one.
                const int v = u - 1 + QL_D;
                if (v == QL_C) {
                    if (taker && taking) publish(k + lead, pend);
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
                    const u32 q0 = sc[g], q1 = sc[g + 8];
                    s0 = h_lo(q0), s1 = h_lo(q1);
#if QG_SZ16
                    zz0 = zz1 = SZ_ZZ(BITS);
#else
                    zz0 = (q0 >> 16) * 0x10001u;
                    zz1 = (q1 >> 16) * 0x10001u;
#endif
                    nz1 = hsub2(0x63806380u, zz1);  // 960 − (1024 + z)
                }
#pragma unroll
                for (int s = 0; s < SPC; s++) {
                    u32 a[4];
                    dq_step<BITS>(w, s, magic, zz0, zz1, nz1, a);
                    const u32x4 b = bf[s / 2];
                    mma16816<f16>(tmp, a, (s & 1) ? b.c : b.a, (s & 1) ? b.d : b.b);
                }
            }
            acc[0] += s0 * tmp[0], acc[1] += s0 * tmp[1], acc[2] += s1 * tmp[2], acc[3] += s1 * tmp[3];
            tmp[0] = tmp[1] = tmp[2] = tmp[3] = 0.0f;
            // The piece's sums to slot k % QL_SLOTS, once the collector has
            // emptied it of piece k - QL_SLOTS.
            while (tdone < k - QL_SLOTS + 1) {
            }
            float* ps = psum + (k % QL_SLOTS) * W;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int m = 2 * t + (e & 1);
                if (m < M) ps[m * QL_COLS + warp * 16 + g + (e >> 1) * 8] = acc[e] / XS;
                acc[e] = 0.0f;
            }
            __syncwarp();
            if (lane == 0) {
                __threadfence_block();
                atomicAdd((int*)&parr[k % QL_SLOTS], 1);
            }
            if (npc < 0) break;
            pc = npc, src = nsrc;
        }
        asm volatile("cp.async.wait_group 0;");
        if (!(flags & (QF_EARLY | QF_LATE))) pdl_launch();
        // The outputs, once the block's pieces are streamed (a slab's
        // pieces are mostly summed by then, so that no warp waits for them
        // while it could stream): jobs j = warp·nb + block, + QL_W·nb, ...
        // are output tile j % QL_H of slab j / QL_H, whose 16 gate columns
        // (lanes 0-15) and 16 up columns (lanes 16-31) the warp adds up over
        // the slab's PPS parts in piece order once their words hold this
        // launch's epoch, so that the bits do not depend on which block
        // took which piece.
        if (flags & QL_NOFIN) return;
        for (int jb = warp * nb + blockIdx.x; jb < np / PPS * QL_H; jb += QL_W * nb) {
            const int sl = jb / QL_H, pr = jb - sl * QL_H;
            const u32 ep = epoch;
            const int col = (lane < 16 ? 0 : QL_COLS / 2) + pr * 16 + (lane & 15);
            for (int m = 0; m < M; m++) {
                const u64* q = part + (i64)sl * PPS * W + m * QL_COLS + col;
                // The parts in two halves of QL_PPS / 2, each read at once;
                // a part not yet written holds an earlier epoch: every such
                // part of the half is read again, all at once, a little
                // later, so that the warps waiting for the last pieces do
                // not crowd L2 while those pieces stream, and the round
                // trips do not chain.
                float v = 0.0f;
#pragma unroll
                for (int h = 0; h < QL_PPS; h += QL_PPS / 2) {
                    u64 pv[QL_PPS / 2];
#pragma unroll
                    for (int u = 0; u < QL_PPS / 2; u++)
                        pv[u] = h + u < PPS ? ld_relaxed(q + (i64)(h + u) * W) : (u64)ep << 32;
                    for (;;) {
                        bool all = true;
#pragma unroll
                        for (int u = 0; u < QL_PPS / 2; u++) all = all && (u32)(pv[u] >> 32) == ep;
                        if (all) break;
                        __nanosleep(64);
#pragma unroll
                        for (int u = 0; u < QL_PPS / 2; u++)
                            if ((u32)(pv[u] >> 32) != ep) pv[u] = ld_relaxed(q + (i64)(h + u) * W);
                    }
#pragma unroll
                    for (int u = 0; u < QL_PPS / 2; u++)
                        if (h + u < PPS) v += __uint_as_float((u32)pv[u]);
                }
                const float up = __shfl_down_sync(0xffffffffu, v, 16);
                if (lane < 16) {
                    const int c = sl * (QL_COLS / 2) + pr * 16 + lane;
                    out[(i64)m * (N / 2) + (oslots ? oslots[c] : c)] = from_f32<T>(ql_silu(v) * up);
                }
            }
        }
        return;
    }

    // The collector (warp QL_W): each piece's sums from its slot to part,
    // each with the launch's epoch.
    const u32 ep = epoch;
    for (int k = 0;; k++) {
        int pc;
        while ((pc = list[k]) == QL_WAIT) {
        }
        if (pc < 0) break;
        const int sl = k % QL_SLOTS;
        while (parr[sl] < QL_W * (k / QL_SLOTS + 1)) {
        }
        __threadfence_block();
        const float* ps = psum + sl * W;
        u64* dst = part + (i64)pc * W;
        for (int i = lane; i < W; i += 32) st_relaxed(dst + i, (u64)ep << 32 | __float_as_uint(ps[i]));
        __syncwarp();
        if (lane == 0) tdone = k + 1;
    }
    if (!(flags & (QF_EARLY | QF_LATE))) pdl_launch();
}

// qglu<bits>_<dtype>: 480 threads (QL_W + 1 warps), two blocks an SM.
#define QGLU(BITS, NAME, T)                                                                                         \
    extern "C" __global__ void __launch_bounds__(32 * (QL_W + 1), 2) qglu##BITS##_##NAME(                            \
        T* out, const T* x, const u32* qw, const szw* sz, const int* perm, const int* oslots, u64* part, u32* ctr,   \
        int K, int N, int M, int gs, int flags) {                                                                    \
        qglu<BITS, T>(out, x, qw, sz, perm, oslots, part, ctr, K, N, M, gs, flags);                                  \
    }
#define QGLU_4(NAME, T) QGLU(4, NAME, T)
#define QGLU_8(NAME, T) QGLU(8, NAME, T)
#if !defined(QL_BITS) || QL_BITS == 4
FOR_DTYPES(QGLU_4)
#endif
#if !defined(QL_BITS) || QL_BITS == 8
FOR_DTYPES(QGLU_8)
#endif
