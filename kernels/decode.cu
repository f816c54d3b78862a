// decode.cu: the ops of a decode step whose per-token data lives on the
// device (runtime.PagedDecoder), so that a whole step can be recorded once
// as a CUDA graph and replayed.
//
// rope_store_T(q [rows, hq*hd], k [rows, hkv*hd], v, kc, vc [slots, hkv*hd],
// pos, slot int32 [rows], inv [rd/2], rows, hq, hkv, hd, rd): rotates the
// first rd channels of every head of q and k row t at position pos[t]
// exactly as rope_seq does (fp32 angle, sincos in double; rd < hd is
// partial RoPE, the other channels kept), writes the k row (rotated part
// and kept part) and the v row into row slot[t] of kc and vc. One thread
// per (row, head, j) for j < hd/2: j < rd/2 rotates the pair (j, j+rd/2),
// j >= rd/2 carries the kept pair rd+2(j-rd/2), +1 of a k head to the
// cache; then one per v element; grid-stride.
//
// paged_attn_cC_gG_T(out, q, kc, vc, tables [rows, width], width, pos, bs,
// hq, hkv, hd, window, scale, part, cnt, minsplit, oslots, clu, late, dfr, cap), hd <= 32*C,
// hq/hkv <= G (output column c of a row goes to column oslots[c] when
// oslots, I32 [hq*hd], is not null): query row
// r (position pos[r]) attends over positions lo..pos[r] of its sequence (lo
// = pos[r]-window+1 with a window), position p in cache row tables[r,
// p/bs]*bs + p%bs; fp32 math; with cap > 0 each scaled score s is
// soft-capped, cap·tanh(s/cap) (runtime.AttentionParams.Softcap). Grid (hkv, S, rows), 128 threads: a block is
// one kv head of one row and its query heads (each K and V row is read
// once for all of them; see paged_attn below), and the S blocks of a (row,
// kv head) split the positions into S even chunks (flash-decoding), so that
// a batch of one still spreads over the GPU. With S > 1 each block writes
// (max, sum, unnormalised output) per head to part [rows, hq, gridDim.y,
// hd+2] (a row's own S may be fewer: the stride is the grid's) and
// the last of the S blocks to finish (a counter per (row, kv head) in cnt,
// left at zero again) combines them; launched in clusters of clu > 0 blocks
// along the splits (clu dividing the grid's split count), a row of 2 to clu
// splits is combined from the first cluster's shared memory instead,
// each of its blocks writing a share of the outputs. S is the grid's split count (at most
// PA_SPLITS) or fewer: splits of a tile of positions, or, where that makes
// fewer than eight, up to eight splits of at least minsplit positions
// (runtime/cuda defaultAttnSplit unless a benchmark sets it), and no more
// than dfr longer ones where that leaves a row of up to dfr·PA_DTILE
// positions to the next kernel (below), or than clu where a row of up to
// clu·PA_DTILE positions is then combined in its cluster (common.cuh
// pa_splits); decided per row from its position (the grid
// is fixed when a step is replayed); the blocks past it return at once
// (those of a combining cluster after its two barriers).
// Dynamic shared memory: max(128·32C·sizeof(T), 4·G·32C·4) bytes (the _tc
// kernels: max(4·stages·2·16·(32C+8)·2, 4·G·32C·4), see paged_tc). With
// late 1, the next kernel (PDL) launches only as this one ends, not once its
// loop is done (its prologue then does not share the SMs' memory pipes
// with the combine); late 2, as soon as this one's wait returns. A row
// of at most dfr splits (dfr > 0, one split too) is not combined here: each of its blocks writes its part and ends, and
// the next kernel (qgemv.cu's _a products, which multiply the output by
// o_proj) combines the parts as it reads them, so that no block waits
// for the slowest split and the next kernel's prologue overlaps this
// one; rows of more splits are combined as above (without clusters: the
// launch of such a step makes none). part then holds first the parts left
// ([rows, hq, gridDim.y, 2] each split's (max, sum) of each head, then
// [rows, gridDim.y, hq·hd] its unnormalised output, column c at oslots[c])
// and after them, in as much again, those of the rows combined here.
// paged_attn_cC_gG_pre_T, the same for a settled cache (every row a query
// reads but its own position's written before the step): a thread's first
// K and V rows but the query's own are fetched before the wait.

#define ROPE_STORE(N, T)                                                                                      \
    extern "C" __global__ void rope_store_##N(T* q, T* k, const T* v, T* kc, T* vc, const int* pos,              \
                                              const int* slot, const float* invf, int rows, int hq, int hkv,     \
                                              int hd, int rd) {                                                  \
        pdl_launch();                                                                                           \
        pdl_wait();                                                                                             \
        const int d2 = hd / 2, r2 = rd / 2, heads = hq + hkv;                                                   \
        const i64 kvc = (i64)hkv * hd, nrot = (i64)rows * heads * d2, nv = (i64)rows * kvc;                      \
        FOR_N(i, nrot + nv) {                                                                                   \
            if (i < nrot) {                                                                                     \
                int j = (int)(i % d2);                                                                          \
                i64 rh = i / d2;                                                                                \
                int h = (int)(rh % heads);                                                                      \
                i64 t = rh / heads;                                                                             \
                T* p = h < hq ? q + t * hq * hd + (i64)h * hd : k + t * kvc + (i64)(h - hq) * hd;               \
                int c1 = j, c2 = j + r2;                                                                        \
                T y1, y2;                                                                                       \
                if (j < r2) {                                                                                   \
                    float cs, sn;                                                                               \
                    rope_angle(pos[t], invf[j], cs, sn);                                                        \
                    rope_rot<T>(to_f32(p[c1]), to_f32(p[c2]), cs, sn, y1, y2);                                  \
                    p[c1] = y1;                                                                                 \
                    p[c2] = y2;                                                                                 \
                } else {                                                                                        \
                    c1 = rd + 2 * (j - r2), c2 = c1 + 1;                                                        \
                    y1 = p[c1], y2 = p[c2];                                                                     \
                }                                                                                               \
                if (h >= hq) {                                                                                  \
                    T* o = kc + (i64)slot[t] * kvc + (i64)(h - hq) * hd;                                        \
                    o[c1] = y1;                                                                                 \
                    o[c2] = y2;                                                                                 \
                }                                                                                               \
            } else {                                                                                            \
                i64 e = i - nrot, t = e / kvc, c = e % kvc;                                                     \
                vc[(i64)slot[t] * kvc + c] = v[t * kvc + c];                                                    \
            }                                                                                                   \
        }                                                                                                       \
    }
#if !defined(PA_C) || PA_C == 0
FOR_DTYPES(ROPE_STORE)
#endif

// PA_TILE, PA_SPLITS and pa_splits: common.cuh.
#ifndef PA_CCAP
#define PA_CCAP 1
#endif

// split_weights turns a head's splits' (max, sum) pairs, wy[y] and l[y],
// into the weights of their partial outputs: exp(max_y - max) / sum.
__device__ __forceinline__ void split_weights(float* wy, const float* l, int S) {
    float M = NEG_INF, L = 0.0f;
    for (int y = 0; y < S; y++) M = fmaxf(M, wy[y]);
    for (int y = 0; y < S; y++) {
        const float w = expf(wy[y] - M);
        wy[y] = w;
        L += w * l[y];
    }
    for (int y = 0; y < S; y++) wy[y] /= L;
}

// paged_attn<T, C, G>: one block per (kv head, split, row), 128 threads; the
// G = hq/hkv query heads of the kv head share every K and V row it loads.
// A tile of 128 positions at a time: a thread takes one position, finds its
// cache row, loads its K row (scores for the G heads into shared memory)
// and its V row (into shared memory); the block updates each head's running
// max and sum; then warp w and lane l accumulate, for dimensions l + 32c,
// the probability-weighted V rows of positions w, w+4, ... of the tile.
// The four warps' sums are added in shared memory at the end.
// The tensor-core loop (the _tc kernels, PA_TC; 16-bit caches, hd = 32·C
// of 64 or 128): each warp walks its own tiles of PA_TCT = 16 positions,
// tiles w, w+4, ... of the block's range, several deep in its own part of
// the dynamic shared memory ([stages][K, V][16][hd + 8] T: rows 16 bytes
// apart from a bank's view, so that ldmatrix reads without conflicts; 2 to
// 4 stages, as many as the launch's dynamic shared memory holds),
// fetched with cp.async through the block table (zeros past the range).
// S = Q·Kᵀ is mma.sync m16n8k16 with the query heads as the 16 rows
// (heads past the kv head's, and rows 8..15, are zeros) and the positions
// as the 8 columns: the query fragments stay in registers, K's come from
// shared memory with ldmatrix. The output is taken transposed, Oᵀ += Vᵀ·Pᵀ,
// so that no row of it is padding: dimensions as the 16 rows (V's A
// fragments by ldmatrix.trans), the heads as the 8 columns, whose B
// fragments are the probabilities, rounded to T, straight from the first
// product's sums (the sum of the probabilities adds the rounded values, so
// that the output is their exact weighted mean). Scores in the log2 domain. Each warp keeps
// its own running max and sum; at the end the warps' partial outputs are
// scaled to the block's max into red[w], and mh, lh hold the block's
// (max, in the natural log domain as the plain loop's, and sum), so that
// everything after the loop is the plain kernel's. The caller (runtime/cuda
// attnTCFor) launches it only where hd is D: the queries' stride, the rows'
// width and the 16-byte copies assume it.
#define PA_TCT 16
// PA_TAB_AHEAD: paged_tc's block table entries loaded a pass of its loop
// ahead of their tiles' fetches (1, the default), or by each fetch (0).
#ifndef PA_TAB_AHEAD
#define PA_TAB_AHEAD 1
#endif
__device__ __forceinline__ void ldsm4t(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
// cp16z: 16 bytes global -> shared, asynchronously; zeros when !on.
__device__ __forceinline__ void cp16z(u32 dst, const void* src, bool on) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(on ? 16 : 0));
}

template <typename T, int C, int G, bool PRE, typename W>
__device__ __forceinline__ void paged_tc(const T* __restrict__ q, const T* __restrict__ kb, const T* __restrict__ vb,
                                         const int* __restrict__ tab, int bs, i64 kvc, int r, int hq, int h0, int Gr,
                                         int j0, int j1, int own, float scale, float cap, float (*red)[G][32 * C],
                                         float* mh, float* lh, void* smem, W wait) {
    constexpr int D = 32 * C, LD = D + 8, TP = PA_TCT;
    constexpr int CPR = D / 8, RPI = 32 / CPR;  // 16-byte pieces a row; rows a pass of the warp
    constexpr u32 TB = TP * LD * 2;             // bytes of one tile of K (or V)
    static_assert(C == 2 || C == 4, "the tensor-core loop: head sizes 64 and 128");
    __shared__ float wm[4][8], wl[4][8];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int nst = imax(2, imin(4, (int)(dynamic_smem_bytes() / (4 * 2 * TB))));
    const u32 st0 = smem_addr(smem) + warp * nst * 2 * TB;
    const int ntile = (j1 - j0 + TP - 1) / TP;
    // fetch_at: tile n of the block's range (the warp's tiles are warp +
    // 4k) into stage st, its lanes' cache rows crow (crow_at(tab_at(n))); one
    // commit group a call, empty past the range. early: before the wait
    // (PRE), the query's own position (which the kernel ahead writes) left
    // out: no copy to its rows at all, not even zeros.
    auto fetch_at = [&](int n, int st, bool early, int crow) {
        if (n < ntile) {
            const int p0 = j0 + n * TP;
            const u32 ks = st0 + st * 2 * TB, vs = ks + TB;
#pragma unroll
            for (int u = 0; u < TP / RPI; u++) {
                const int row = lane / CPR + u * RPI, c = lane % CPR;
                const int cr = __shfl_sync(0xffffffffu, crow, row);
                const bool on = p0 + row < j1;
                const i64 off = (i64)cr * kvc + c * 8;
                const u32 so = (row * LD + c * 8) * 2;
                if (!early || p0 + row != own) {
                    cp16z(ks + so, kb + off, on);
                    cp16z(vs + so, vb + off, on);
                }
            }
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    };
    // tab_at: lane's block table entry for tile n (lane & 15) and its
    // position's row within that block, the entry's load not yet used (0, 0
    // past the range: no load); crow_at, the cache row from them. Kept
    // apart so that a load made a pass ahead is not waited for until its
    // fetch: a product of the entry right after its load would make the
    // warp wait the round trip there.
    auto tab_at = [&](int n) {
        const int p = j0 + n * TP + (lane & (TP - 1));
        int2 e = make_int2(0, 0);
        if (n < ntile && p < j1) {
            const int b = p / bs;
            e = make_int2(tab[b], p - b * bs);
        }
        return e;
    };
    auto crow_at = [&](int2 e) { return e.x * bs + e.y; };
    auto fetch = [&](int n, int st, bool early) { fetch_at(n, st, early, crow_at(tab_at(n))); };
    // PA_TAB_AHEAD (1): the block table's entries of the tile a pass of the
    // loop fetches are loaded a pass before (the first ones now, with the
    // PRE kernels before the wait: the table is a step's input), so that
    // the fetch does not wait a round trip to L2 for them. Measured on the
    // H200 (7B shape, one row, 2,048 positions): +0.85% against loading
    // each entry in its fetch (0), +0.4-0.5% against multiplying it into
    // its cache row right after its load a pass early (the thirty-fourth
    // session's form); even at two rows, with 128 positions and at batch 8
    // and 32 (docs/benchmarks.md, the thirty-fifth session).
    int2 enx = PA_TAB_AHEAD ? tab_at(warp + 4 * (nst - 1)) : make_int2(0, 0);
    // PRE (the _tcpre kernels, for a settled cache): the first stages'
    // tiles are fetched before the wait, all but the own position's rows,
    // which the warp whose tile holds it then loads after the wait, with
    // the queries. The queries take one round trip to L2 after the wait;
    // the own position's rows take two (its block table entry, then the
    // rows: the SASS under NVRTC 12.4). Loading that entry before the wait
    // too measured even on the H200 (the thirty-seventh session,
    // PA_OWN_EARLY, removed).
    if constexpr (PRE) {
#pragma unroll
        for (int k = 0; k < 3; k++)
            if (k < nst - 1) fetch(warp + 4 * k, k, true);
        wait();
    }
    // The query fragments of head h0 + g (rows g < Gr; the rows 8..15 of
    // the A fragments are zeros).
    u32 qf[D / 16][2];
    {
        const T* qr = q + ((i64)r * hq + h0 + imin(g, Gr - 1)) * D + 2 * t;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            qf[ks][0] = g < Gr ? *(const u32*)(qr + ks * 16) : 0u;
            qf[ks][1] = g < Gr ? *(const u32*)(qr + ks * 16 + 8) : 0u;
        }
    }
    if constexpr (PRE) {
        // The own position's K and V rows (16-byte pieces: K's by lanes
        // 0..CPR-1, V's by the next CPR) into the stage fetched for its
        // tile, where that tile was fetched before the wait; a later tile
        // is fetched whole in the loop.
        const int n = (own - j0) / TP;
        if (own >= j0 && own < j1 && n % 4 == warp && n / 4 < nst - 1 && lane < 2 * CPR) {
            const int row = (own - j0) % TP, c = lane % CPR;
            const i64 off = ((i64)tab[own / bs] * bs + own % bs) * kvc + c * 8;
            const uint4 v = __ldcg((const uint4*)((lane < CPR ? kb : vb) + off));
            const u32 dst = st0 + (n / 4) * 2 * TB + (lane < CPR ? 0u : TB) + (row * LD + c * 8) * 2;
            asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(dst), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                         : "memory");
        }
    }
    // O transposed (dimensions × heads, so that no row of it is padding):
    // o[mt] is the C fragment of dimensions mt*16.. and heads 0..7, thread
    // (g, t) holding dimensions g and g+8 of heads 2t and 2t+1.
    float o[D / 16][4];
#pragma unroll
    for (int mt = 0; mt < D / 16; mt++) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    const float sl2 = scale * 1.4426950408889634f;
    // Soft-capped (cap > 0): a score s becomes cap·tanh(s·scale/cap), in
    // the log2 domain cap·log2 e·tanh(s·cin).
    const float cin = cap > 0.0f ? scale / cap : 0.0f, cout = cap * 1.4426950408889634f;
    if constexpr (!PRE) {
#pragma unroll
        for (int k = 0; k < 3; k++)
            if (k < nst - 1) fetch(warp + 4 * k, k, false);
    }
    int st = 0;
    for (int n = warp; n < ntile; n += 4) {
        if (PA_TAB_AHEAD) {
            const int2 e = enx;
            enx = tab_at(n + 4 * nst);
            fetch_at(n + 4 * (nst - 1), st == 0 ? nst - 1 : st - 1, false, crow_at(e));  // the stage read in the last pass
        } else {
            fetch(n + 4 * (nst - 1), st == 0 ? nst - 1 : st - 1, false);
        }
        if (nst == 2) {
            asm volatile("cp.async.wait_group 1;" ::: "memory");
        } else if (nst == 3) {
            asm volatile("cp.async.wait_group 2;" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 3;" ::: "memory");
        }
        __syncwarp();
        const u32 ks = st0 + st * 2 * TB, vs = ks + TB;
        float s[2][4];
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int k2 = 0; k2 < D / 16; k2 += 2) {
                // Four 8×8 matrices: positions nt*8.., dimensions k2*16 + {0, 8, 16, 24}.
                const u32x4 kf = ldsm4(ks + ((nt * 8 + (lane & 7)) * LD + k2 * 16 + (lane >> 3) * 8) * 2);
                const u32 a0[4] = {qf[k2][0], 0u, qf[k2][1], 0u}, a1[4] = {qf[k2 + 1][0], 0u, qf[k2 + 1][1], 0u};
                mma16816<T>(s[nt], a0, kf.a, kf.b);
                mma16816<T>(s[nt], a1, kf.c, kf.d);
            }
        }
        // Head g's scores at positions p + nt*8 + 2t + e (rows 8.. unused).
        const int p = j0 + n * TP;
        float mx = NEG_INF;
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float v = p + nt * 8 + 2 * t + e >= j1 ? NEG_INF
                                : cin > 0.0f                  ? cout * tanhf(s[nt][e] * cin)
                                                              : s[nt][e] * sl2;
                s[nt][e] = v;
                mx = fmaxf(mx, v);
            }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mn = fmaxf(m, mx);  // finite: a tile's first position is in the range
        const float corr = exp2f(m - mn);
        m = mn;
        u32 pa[4];
        float ps = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            const u32 w = pack2<T>(exp2f(s[nt][0] - mn), exp2f(s[nt][1] - mn));
            pa[2 * nt] = w, pa[2 * nt + 1] = 0u;
            T lo_, hi_;
            lo_.x = (u16)(w & 0xffffu), hi_.x = (u16)(w >> 16);
            ps += to_f32(lo_) + to_f32(hi_);
        }
        l = l * corr + ps;
        // Heads 2t and 2t+1's corrections (head h's are lane 4h's).
        const float ca = __shfl_sync(0xffffffffu, corr, 8 * t), cb = __shfl_sync(0xffffffffu, corr, 8 * t + 4);
#pragma unroll
        for (int mt = 0; mt < D / 16; mt++) {
            // Oᵀ += Vᵀ·Pᵀ: the A fragment is four 8×8 matrices of V,
            // transposed (positions {0, 8}.., dimensions mt*16 + {0, 8}),
            // the B fragment the probabilities as they are.
            u32 vf[4];
            ldsm4t(vf, vs + (((lane & 7) + ((lane >> 4) & 1) * 8) * LD + mt * 16 + ((lane >> 3) & 1) * 8) * 2);
            o[mt][0] *= ca, o[mt][1] *= cb, o[mt][2] *= ca, o[mt][3] *= cb;
            mma16816<T>(o[mt], vf, pa[0], pa[2]);
        }
        __syncwarp();  // the stage is refilled in the next pass
        st = st == nst - 1 ? 0 : st + 1;
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (t == 0) wm[warp][g] = m, wl[warp][g] = l;
    __syncthreads();  // every warp's loop is done: red may take the stages' memory
    float M = NEG_INF;
#pragma unroll
    for (int w = 0; w < 4; w++) M = fmaxf(M, wm[w][g]);
    const float f = m == NEG_INF ? 0.0f : exp2f(m - M);
    const float fa = __shfl_sync(0xffffffffu, f, 8 * t), fb = __shfl_sync(0xffffffffu, f, 8 * t + 4);
#pragma unroll
    for (int mt = 0; mt < D / 16; mt++) {
        const int d = mt * 16 + g;
        if (2 * t < G) red[warp][2 * t][d] = o[mt][0] * fa, red[warp][2 * t][d + 8] = o[mt][2] * fa;
        if (2 * t + 1 < G) red[warp][2 * t + 1][d] = o[mt][1] * fb, red[warp][2 * t + 1][d + 8] = o[mt][3] * fb;
    }
    if (g < G && warp == 0 && t == 0) {
        float L = 0.0f;
#pragma unroll
        for (int w = 0; w < 4; w++)
            if (wm[w][g] != NEG_INF) L += wl[w][g] * exp2f(wm[w][g] - M);
        mh[g] = M * 0.6931471805599453f;
        lh[g] = L;
    }
}

template <typename T, int C, int G, bool PRE, bool TC = false>
__device__ void paged_attn(T* __restrict__ out, const T* __restrict__ q, const T* __restrict__ kc,
                           const T* __restrict__ vc, const int* __restrict__ tables, int width,
                           const int* __restrict__ pos, int bs, int hq, int hkv, int hd, int window, float scale,
                           float* part, u32* cnt, int minsplit, const int* __restrict__ oslots, int clu, int late,
                           int dfr, float cap) {
    constexpr int D = 32 * C;
    TRACE_BEGIN(2);
    __shared__ float4 qs4[G][D / 4];        // the heads' queries, scaled
    __shared__ float sc[G][PA_TILE];         // scores, then probabilities
    __shared__ float mh[G], lh[G], ch[G];    // running max, sum; this tile's correction
    __shared__ int last;
    __shared__ float wy[G][PA_SPLITS];       // the combine's weights of the splits
    // Dynamic: the tile's V rows [PA_TILE][D] T, then (after the last tile)
    // the warps' sums [4][G][D] fp32 in the same memory.
    extern __shared__ u32x4 smem_pa[];
    T(*vs)[D] = (T(*)[D])smem_pa;
    float(*red)[G][D] = (float(*)[G][D])smem_pa;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    // Gr query heads share a kv head; G (a power of two) is at least Gr.
    const int Gr = hq / hkv;
    const int kh = blockIdx.x, r = blockIdx.z, s = blockIdx.y, h0 = kh * Gr;
    // Positions and block tables are the step's inputs, written before the
    // step's first kernel: they are read before waiting for the previous
    // kernel (which writes q and this position's K and V).
    const int i = pos[r];
    const int lo = window > 0 ? imax(0, i - window + 1) : 0;
    // The first S of the grid's splits take part (pa_splits): no more than
    // dfr where the next kernel combines the row's parts, or than a
    // cluster's clu where the cluster combines them (PA_CCAP, a define for
    // measuring: 0 caps only the former), up to PA_DTILE positions a split.
    const int len = i - lo + 1;
    const int S = pa_splits(i, window, gridDim.y, minsplit, dfr > 0 ? dfr : PA_CCAP ? clu : 0);
    // dfr: a row of at most dfr splits is left for the next kernel to
    // combine (every split writes its part and ends).
    const bool defer = S <= dfr;
    // With clusters of clu blocks along the splits (clu > 0), a row of 2 to
    // clu splits combines them in the first cluster's shared memory; that
    // cluster's blocks past S take part in its two barriers only.
    const bool cm = !defer && clu > 0 && S > 1 && S <= clu;
    if (s >= S) {
        pdl_launch();  // touches nothing: the next kernel need not wait for it
        if (cm && s < clu) {
            cluster_sync();
            cluster_sync_relaxed();
        }
        return;
    }
    // The output slot of this thread's first output in a combining
    // cluster (the model's, loaded before the wait).
    int oslot0 = 0;
    if (cm && oslots) {
        const int tot = Gr * hd, e = s * tot / S + tid;
        if (e < (s + 1) * tot / S) oslot0 = oslots[(h0 + e / hd) * hd + e % hd];
    }
    // The output slots of this thread's elements e = tid + u·PA_TILE, which
    // it writes where one block holds a row's heads (S = 1) or combines the
    // splits last: loaded with the model's data before the wait, so that the
    // epilogue's stores do not wait for them.
    constexpr int EPT = (G * D + PA_TILE - 1) / PA_TILE;
    int oslot[EPT];
    if (oslots && !cm) {
#pragma unroll
        for (int u = 0; u < EPT; u++) {
            const int e = tid + u * PA_TILE, g = e / hd, d = e % hd;
            oslot[u] = g < Gr ? oslots[(h0 + g) * hd + d] : 0;
        }
    }
    const int chunk = (len + S - 1) / S;
    const int j0 = lo + s * chunk, j1 = imin(i + 1, j0 + chunk);
    const int* tab = tables + (i64)r * width;
    // The cache row of this thread's position in the first tile.
    i64 row0 = j0 + tid < j1 ? (i64)tab[(j0 + tid) / bs] * bs + (j0 + tid) % bs : 0;
    const i64 kvc = (i64)hkv * hd;
    const T* kb = kc + (i64)kh * hd;
    const T* vb = vc + (i64)kh * hd;
    // PRE (the _pre kernels, for a settled cache: runtime.AttentionParams.CacheSettled;
    // with TC, the _tcpre kernels, whose early copies paged_tc makes):
    // the rows of this thread's first position, unless it is the query's
    // own (which the kernel ahead writes), are fetched before the wait, V
    // into shared memory, K into L1 (prefetched: registers held across the
    // wait would cost the kernel its occupancy).
    bool early = false;
    if constexpr (PRE && !TC && sizeof(T) == 2 && C <= 4) {
        if (hd == D && j0 + tid < j1 && j0 + tid != i) {
            const T* kr = kb + row0 * kvc;
            const T* vr = vb + row0 * kvc;
#pragma unroll
            for (int u = 0; u < D * (int)sizeof(T) / 128; u++) prefetch_l1(kr + u * (128 / sizeof(T)));
#pragma unroll
            for (int u = 0; u < D / 8; u++) cp_async16(smem_addr(&vs[tid][u * 8]), vr + u * 8);
            early = true;
        }
    }
    auto wait = [&]() {
        pdl_wait();
        if (late == 2) pdl_launch();  // (late 2: the next kernel may start now)
        TRACE_MARK_AT(0, 1);
        TRACE_MARK_AT(2, 1);
    };
    // (The _tcpre kernels wait within paged_tc, after their first copies.)
    if constexpr (!(TC && PRE)) wait();
    if constexpr (TC) {
        paged_tc<T, C, G, PRE>(q, kb, vb, tab, bs, kvc, r, hq, h0, Gr, j0, j1, i, scale, cap, red, mh, lh, smem_pa, wait);
        TRACE_MARK_AT(0, 2);
        if (!late) pdl_launch();
    } else {
        const bool vec = (hd & 7) == 0;
        for (int e = tid; e < G * D; e += blockDim.x) {
            const int g = e / D, d = e % D;
            ((float*)qs4[g])[d] = d < hd && g < Gr ? to_f32(q[((i64)r * hq + h0 + g) * hd + d]) * scale : 0.0f;
        }
        if (tid < G) mh[tid] = NEG_INF, lh[tid] = 0.0f;
        float acc[G][C];
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int c = 0; c < C; c++) acc[g][c] = 0.0f;
        __syncthreads();
        TRACE_MARK_AT(2, 2);
        for (int jt = j0; jt < j1; jt += PA_TILE) {
            const int j = jt + tid, nk = imin(PA_TILE, j1 - jt);
            if (j < j1) {
                const i64 row = jt == j0 ? row0 : (i64)tab[j / bs] * bs + j % bs;
                const T* kr = kb + row * kvc;
                const T* vr = vb + row * kvc;
                float dot[G];
#pragma unroll
                for (int g = 0; g < G; g++) dot[g] = 0.0f;
                // Whole 16-bit rows of up to 128 elements: the K row's loads
                // all in flight at once, the V row copied to shared memory
                // without registers.
                bool whole = false;
                if constexpr (sizeof(T) == 2 && C <= 4) whole = hd == D;
                if (whole) {
                    u32x4 kw[D / 8];
#pragma unroll
                    for (int u = 0; u < D / 8; u++) kw[u] = *(const u32x4*)(kr + u * 8);
                    if (jt != j0 || !early) {
#pragma unroll
                        for (int u = 0; u < D / 8; u++) cp_async16(smem_addr(&vs[tid][u * 8]), vr + u * 8);
                    }
#pragma unroll
                    for (int u = 0; u < D / 8; u++) {
                        float e[8];
                        if constexpr (sizeof(T) == 2) unpack8<T>(kw[u], e);
#pragma unroll
                        for (int g = 0; g < G; g++) {
                            const float4 qa = qs4[g][2 * u], qb = qs4[g][2 * u + 1];
                            dot[g] += qa.x * e[0] + qa.y * e[1] + qa.z * e[2] + qa.w * e[3] + qb.x * e[4] + qb.y * e[5] +
                                      qb.z * e[6] + qb.w * e[7];
                        }
                    }
                } else if (vec) {
#pragma unroll
                    for (int c = 0; c < C; c++) {
                        if (c * 32 < hd) {
                            float f[32];
                            u32x4 vv[4];
#pragma unroll
                            for (int u = 0; u < 4; u++)
                                if (c * 32 + u * 8 < hd) {
                                    load8<T>(kr + c * 32 + u * 8, f + u * 8);
                                    if (sizeof(T) == 2) vv[u] = *(const u32x4*)(vr + c * 32 + u * 8);
                                }
#pragma unroll
                            for (int u = 0; u < 4; u++)
                                if (c * 32 + u * 8 < hd) {
                                    if (sizeof(T) == 2) {
                                        *(u32x4*)&vs[tid][c * 32 + u * 8] = vv[u];
                                    } else {
#pragma unroll
                                        for (int e = 0; e < 8; e++) vs[tid][c * 32 + u * 8 + e] = vr[c * 32 + u * 8 + e];
                                    }
#pragma unroll
                                    for (int g = 0; g < G; g++) {
                                        const float4 qa = qs4[g][c * 8 + 2 * u], qb = qs4[g][c * 8 + 2 * u + 1];
                                        const float* e = f + u * 8;
                                        dot[g] += qa.x * e[0] + qa.y * e[1] + qa.z * e[2] + qa.w * e[3] + qb.x * e[4] +
                                                  qb.y * e[5] + qb.z * e[6] + qb.w * e[7];
                                    }
                                }
                        }
                    }
                } else {
                    for (int d = 0; d < hd; d++) {
                        const float kv = to_f32(kr[d]);
                        vs[tid][d] = vr[d];
#pragma unroll
                        for (int g = 0; g < G; g++) dot[g] += ((const float*)qs4[g])[d] * kv;
                    }
                }
#pragma unroll
                for (int g = 0; g < G; g++) sc[g][tid] = cap > 0.0f ? cap * tanhf(dot[g] / cap) : dot[g];
            }
            asm volatile("cp.async.wait_all;" ::: "memory");  // this thread's V row has landed
            __syncthreads();
            if (jt == j0) TRACE_MARK_AT(2, 3);
            // Warp w updates heads w, w+4: the tile's max, the probabilities, the sum.
            for (int g = warp; g < G; g += 4) {
                float mx = NEG_INF;
                for (int e = lane; e < nk; e += 32) mx = fmaxf(mx, sc[g][e]);
                mx = warp_max(mx);
                const float mo = mh[g], mn = fmaxf(mo, mx);
                float sum = 0.0f;
                for (int e = lane; e < nk; e += 32) {
                    const float p = expf(sc[g][e] - mn);
                    sc[g][e] = p;
                    sum += p;
                }
                sum = warp_sum(sum);
                if (lane == 0) {
                    const float corr = expf(mo - mn);
                    ch[g] = corr;
                    mh[g] = mn;
                    lh[g] = lh[g] * corr + sum;
                }
            }
            __syncthreads();
#pragma unroll
            for (int g = 0; g < G; g++) {
                const float corr = ch[g];
#pragma unroll
                for (int c = 0; c < C; c++) acc[g][c] *= corr;
            }
            for (int e = warp; e < nk; e += 4) {
#pragma unroll
                for (int c = 0; c < C; c++) {
                    const int d = lane + 32 * c;
                    const float v = d < hd ? to_f32(vs[e][d]) : 0.0f;
#pragma unroll
                    for (int g = 0; g < G; g++) acc[g][c] += sc[g][e] * v;
                }
            }
            __syncthreads();  // sc and vs are refilled by the next tile
        }
        // Trace marks (TRACE_AT 0): 2 as the loop is done, 3 as the combine's
        // barrier is passed (a combining cluster's first cluster barrier, or
        // the last block's election among the S; at once with one split).
        // TRACE_AT 1, the combine: 1 as its barrier is passed, 2 with the
        // splits' weights, 3 with the outputs written (before a cluster's last
        // barrier). TRACE_AT 2, the first tile: 1 after the wait, 2 with the
        // queries staged, 3 with the tile's scores and V rows in shared memory.
        // TRACE_AT 3, a combining cluster's last part run twice from the same
        // code: 1 as the barrier is passed, 2 and 3 after each pass (what the
        // second saves is what fetching the code costs the first).
        TRACE_MARK_AT(0, 2);
        if (!late) pdl_launch();  // the next kernel may start its prologue now (late: as this one ends)
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int c = 0; c < C; c++) red[warp][g][lane + 32 * c] = acc[g][c];
    }
    __syncthreads();
    const int nh = Gr;
    // This block's (max, sum) and unnormalised output of each head, in its
    // split's place of part (with dfr, past the parts left for the next
    // kernel: the same size again), for the last of the S to combine.
    float* cpart = dfr > 0 ? part + (i64)gridDim.z * hq * gridDim.y * (hd + 2) : part;
    auto write_part = [&]() {
        for (int e = tid; e < nh * (hd + 2); e += blockDim.x) {
            const int g = e / (hd + 2), d = e % (hd + 2);
            float* pp = cpart + (((i64)r * hq + h0 + g) * gridDim.y + s) * (hd + 2);
            pp[d] = d == 0 ? mh[g] : d == 1 ? lh[g] : red[0][g][d - 2] + red[1][g][d - 2] + red[2][g][d - 2] + red[3][g][d - 2];
        }
    };
    if (defer) {
        // Left for the next kernel, laid out for it to read its inputs
        // contiguously: part [rows, hq, gridDim.y, 2] the heads' (max,
        // sum) of each split, then [rows, gridDim.y, hq·hd] each split's
        // unnormalised output, column c at oslots[c] (the product's input
        // order).
        if (tid < nh) {
            float* ml = part + (((i64)r * hq + h0 + tid) * gridDim.y + s) * 2;
            ml[0] = mh[tid], ml[1] = lh[tid];
        }
        float* po = part + (i64)gridDim.z * hq * gridDim.y * 2 + ((i64)r * gridDim.y + s) * hq * hd;
#pragma unroll
        for (int u = 0; u < EPT; u++) {
            const int e = tid + u * PA_TILE, g = e / hd, d = e % hd;
            if (g < nh) po[oslots ? oslot[u] : (h0 + g) * hd + d] = red[0][g][d] + red[1][g][d] + red[2][g][d] + red[3][g][d];
        }
        return;
    }
    if (cm) {
        // This block's partial output (the warps' sums) in red[0]; then each
        // block of the cluster writes its share of the outputs from every
        // split's (max, sum) and partial output, read across the cluster.
        for (int e = tid; e < nh * hd; e += blockDim.x) {
            const int g = e / hd, d = e % hd;
            red[0][g][d] = red[0][g][d] + red[1][g][d] + red[2][g][d] + red[3][g][d];
        }
        cluster_sync();
        TRACE_MARK_AT(0, 3);
        TRACE_MARK_AT(1, 1);
        for (int e = tid; e < nh * S; e += blockDim.x) {
            const int g = e / S, y = e % S;
            wy[g][y] = ld_cluster(cluster_addr(&mh[g], y));
            sc[g][y] = ld_cluster(cluster_addr(&lh[g], y));  // the tiles' scores are done with
        }
        __syncthreads();
        if (tid < nh) split_weights(wy[tid], sc[tid], S);
        __syncthreads();
        TRACE_MARK_AT(1, 2);
        u32 base[8];  // red in each block of the cluster (clu <= 8)
#pragma unroll
        for (int y = 0; y < 8; y++) base[y] = y < S ? cluster_addr(&red[0][0][0], y) : 0;
        const int tot = nh * hd;
        TRACE_MARK_AT(3, 1);
#pragma unroll 1
        for (int pass = 0; pass < (TRACE_AT == 3 ? 2 : 1); pass++) {
            for (int e = s * tot / S + tid; e < (s + 1) * tot / S; e += blockDim.x) {
                const int g = e / hd, d = e % hd;
                float o = 0.0f;
#pragma unroll
                for (int y = 0; y < 8; y++)
                    if (y < S) o += wy[g][y] * ld_cluster(base[y] + 4 * (g * D + d));
                const int col = (h0 + g) * hd + d;
                out[(i64)r * hq * hd + (oslots ? (e == s * tot / S + tid ? oslot0 : oslots[col]) : col)] = from_f32<T>(o);
            }
            TRACE_MARK_AT(3, 2 + pass);
        }
        TRACE_MARK_AT(1, 3);
        cluster_sync_relaxed();  // the others may still read this block's sums
        return;
    }
    if (S == 1) {
        TRACE_MARK_AT(0, 3);
#pragma unroll
        for (int u = 0; u < EPT; u++) {
            const int e = tid + u * PA_TILE, g = e / hd, d = e % hd;
            if (g >= nh) continue;
            const float v = red[0][g][d] + red[1][g][d] + red[2][g][d] + red[3][g][d];
            const int col = (h0 + g) * hd + d;
            out[(i64)r * hq * hd + (oslots ? oslot[u] : col)] = from_f32<T>(v / lh[g]);
        }
        return;
    }
    write_part();
    __threadfence();
    __syncthreads();
    u32* ctr = cnt + (i64)r * gridDim.x + blockIdx.x;
    if (tid == 0) last = atomicAdd(ctr, 1u) == (u32)(S - 1);
    __syncthreads();
    if (!last) return;
    TRACE_MARK_AT(0, 3);
    TRACE_MARK_AT(1, 1);
    __threadfence();
    // Each head's weights for the splits, exp(max_y - max) / sum, from
    // their (max, sum) pairs; then every output element is the weighted sum
    // of the splits' partial outputs, EPT elements a thread with their
    // loads in flight together.
    for (int e = tid; e < nh * S; e += blockDim.x) {
        const int g = e / S, y = e % S;
        const float* py = cpart + (((i64)r * hq + h0 + g) * gridDim.y + y) * (hd + 2);
        wy[g][y] = __ldcg(py);
        sc[g][y] = __ldcg(py + 1);  // the tiles' scores are done with
    }
    __syncthreads();
    if (tid < nh) split_weights(wy[tid], sc[tid], S);
    __syncthreads();
    TRACE_MARK_AT(1, 2);
    float o[EPT];
#pragma unroll
    for (int u = 0; u < EPT; u++) o[u] = 0.0f;
    const float* pr = cpart + ((i64)r * hq + h0) * gridDim.y * (hd + 2) + 2;
#pragma unroll 4
    for (int y = 0; y < S; y++) {
#pragma unroll
        for (int u = 0; u < EPT; u++) {
            const int e = tid + u * PA_TILE, g = e / hd, d = e % hd;
            if (g < nh) o[u] += wy[g][y] * __ldcg(pr + ((i64)g * gridDim.y + y) * (hd + 2) + d);
        }
    }
#pragma unroll
    for (int u = 0; u < EPT; u++) {
        const int e = tid + u * PA_TILE, g = e / hd, d = e % hd;
        const int col = (h0 + g) * hd + d;
        if (g < nh) out[(i64)r * hq * hd + (oslots ? oslot[u] : col)] = from_f32<T>(o[u]);
    }
    TRACE_MARK_AT(1, 3);
    if (tid == 0) *ctr = 0;
}

#define PAGED_ATTN_K(N, T, C, G, SUF, PRE, TC)                                                                 \
    extern "C" __global__ void __launch_bounds__(128) paged_attn_c##C##_g##G##SUF##_##N(                          \
        T* out, const T* q, const T* kc, const T* vc, const int* tables, int width, const int* pos, int bs, int hq, \
        int hkv, int hd, int window, float scale, float* part, u32* cnt, int minsplit, const int* oslots,        \
        int clu, int late, int dfr, float cap) {                                                               \
        paged_attn<T, C, G, PRE, TC>(out, q, kc, vc, tables, width, pos, bs, hq, hkv, hd, window, scale, part, cnt, \
                                     minsplit, oslots, clu, late, dfr, cap);                                   \
    }
// PA_PRE=1 parts hold the _pre kernel (PRE) of their PA_C and PA_G; PA_TC=1
// parts the _tc kernel (TC: f16 and bf16, C of 2 or 4 only); both, the
// _tcpre kernel (PRE and TC); neither, the plain one.
#define PA_TC_f32(X)
#define PA_TC_f16(X) X
#define PA_TC_bf16(X) X
#if defined(PA_PRE) && PA_PRE && defined(PA_TC) && PA_TC
#define PAGED_ATTN_CG(N, T, C, G) PA_TC_##N(PAGED_ATTN_K(N, T, C, G, _tcpre, true, true))
#elif defined(PA_PRE) && PA_PRE
#define PAGED_ATTN_CG(N, T, C, G) PAGED_ATTN_K(N, T, C, G, _pre, true, false)
#elif defined(PA_TC) && PA_TC
#define PAGED_ATTN_CG(N, T, C, G) PA_TC_##N(PAGED_ATTN_K(N, T, C, G, _tc, false, true))
#else
#define PAGED_ATTN_CG(N, T, C, G) PAGED_ATTN_K(N, T, C, G, , false, false)
#endif
#define PAGED_ATTN_C(N, T, C) PAGED_ATTN_CG(N, T, C, 1) PAGED_ATTN_CG(N, T, C, 2) PAGED_ATTN_CG(N, T, C, 4) PAGED_ATTN_CG(N, T, C, 8)
#if defined(PA_TC) && PA_TC
#define PAGED_ATTN(N, T) PAGED_ATTN_C(N, T, 2) PAGED_ATTN_C(N, T, 4)
#else
#define PAGED_ATTN(N, T) PAGED_ATTN_C(N, T, 1) PAGED_ATTN_C(N, T, 2) PAGED_ATTN_C(N, T, 4) PAGED_ATTN_C(N, T, 8)
#endif
// Parts (kernels.Module): PA_C, PA_G and KDT one paged_attn kernel, PA_C=0
// the rope_store kernels; no PA_C, everything but the _pre, _tc and _tcpre
// kernels (with PA_PRE, PA_TC or both, those). (PAGED_ATTN_X expands PA_C and PA_G before
// PAGED_ATTN_CG pastes them into the name.)
#define PAGED_ATTN_X(N, T, C, G) PAGED_ATTN_CG(N, T, C, G)
#define PAGED_ATTN_ONE(N, T) PAGED_ATTN_X(N, T, PA_C, PA_G)
#if !defined(PA_C)
FOR_DTYPES(PAGED_ATTN)
#elif PA_C > 0
FOR_DTYPES(PAGED_ATTN_ONE)
#endif
