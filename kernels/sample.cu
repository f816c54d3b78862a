// sample.cu: token draws where the logits are (runtime.TokenSampler), under
// runtime.DrawToken's rule, so that a decode step returns token ids instead
// of its logits.
//
// sample_rows(logits [*, V] f32, V, rows SampleRow [n], adj_tok int [*],
// adj_bias, adj_rep, adj_sub f32 [*], masks u32 [*], work [n, V] f32, out int
// [n]): block b draws out[b] from row rows[b].row of logits. Grid n, SB = 512
// threads.
//   1. A non-finite logit: out = -1 - (its first index), nothing drawn.
//   2. Masks and penalties: the row is copied to work row b; with a mask
//      (mask0 >= 0: bit i of word mask0 + i/32 of masks, runtime's Allow) a
//      token whose bit is 0 is lowered by BANNED (runtime.Banned) as it is
//      copied; then entries [adj0, adj0+nadj) of the adj arrays change one
//      token each (runtime.LogitAdjust: + bias, then / rep when positive,
//      * rep otherwise, then − sub).
//   3. temp <= 0 or topk == 1: the largest logit, the lowest index on ties.
//   4. Otherwise each token weighs exp((v − max)/T) as a 2^-40 fixed-point
//      integer (so that sums do not depend on their order). topk: a radix
//      select on the logits' order-preserving keys (four passes of 8 bits,
//      histograms in shared memory, warp-aggregated atomics) finds the k-th
//      largest key tk; every token of that key is kept (transformers' and
//      vLLM's top-k keep the ties of the k-th); topp: the same select over the weights' mass (of the top-k
//      set) finds the smallest key tp whose tokens above it reach topp of
//      the set's mass, and how many tokens of key tp complete it.
//   5. The draw: r = floor(u · W) (u = U·2^64, W the kept weight), and the
//      token is the first kept one, in id order, whose running weight
//      exceeds r: tiles of SB tokens, a block scan of the ties' ranks and
//      one of the weights each, stopping at the tile that holds it.
// Tokens of equal logit weigh the same, so a tie class's kept members are
// counted, not ranked, until the draw.

#define SB 512
#define SW (SB / 32)
#define SFIX 1099511627776.0f  // 2^40

struct SampleRow {
    int row;      // the logits row
    float temp;   // temperature; <= 0: greedy
    int topk;     // 0: all
    float topp;   // 0 or >= 1: all
    u64 u;        // U · 2^64
    int adj0;     // first penalty entry
    int nadj;     // penalty entries
    int mask0;    // first word of the mask (-1: none)
    int pad;
};

#define BANNED 1e30f  // runtime.Banned

// fkey orders floats as unsigned integers (-0 as 0, its equal); fval
// inverts it.
__device__ __forceinline__ u32 fkey(float v) {
    const u32 b = v == 0.0f ? 0u : __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float fval(u32 k) { return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }

// hist_add adds, for the lanes that are on, one to cnt[bin] and m to
// mass[bin] (when mass): one atomic per distinct bin of the warp.
__device__ __forceinline__ void hist_add(u32* cnt, u64* mass, u32 bin, u64 m, bool on) {
    const int lane = threadIdx.x & 31;
    u32 act = __ballot_sync(0xffffffffu, on);
    while (act) {
        const int leader = __ffs(act) - 1;
        const u32 b = __shfl_sync(0xffffffffu, bin, leader);
        const bool mine = on && bin == b;
        const u32 same = __ballot_sync(0xffffffffu, mine);
        if (mass) {
            u64 s = mine ? m : 0;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == leader) atomicAdd(&mass[b], s);
        }
        if (lane == leader) atomicAdd(&cnt[b], (u32)__popc(same));
        act &= ~same;
    }
}

// block_scan: the inclusive prefix sum of v over the block's threads in
// order, and the block's total; red holds SW values.
template <typename X> __device__ __forceinline__ X block_scan(X v, X* red, X& total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const X n = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += n;
    }
    __syncthreads();
    if (lane == 31) red[warp] = v;
    __syncthreads();
    X pre = 0, tot = 0;
#pragma unroll
    for (int w = 0; w < SW; w++) {
        const X t = red[w];
        if (w < warp) pre += t;
        tot += t;
    }
    total = tot;
    return v + pre;
}

template <typename X> __device__ __forceinline__ X block_total(X v, X* red) {
    X tot;
    block_scan(v, red, tot);
    return tot;
}

__device__ __forceinline__ float block_max(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float m = NEG_INF;
#pragma unroll
    for (int w = 0; w < SW; w++) m = fmaxf(m, red[w]);
    return m;
}

// scan_best: of the logits src[i] this thread visits (i = i0 + threadIdx.x,
// then every NT, UR loads in flight at once), the largest finite one bv at
// bi and the least non-finite index nb (0x7fffffff: none). Its indices
// ascend: with a strict > its first of equal logits stays, and its first
// non-finite one is its least.
template <int UR, int NT>
__device__ __forceinline__ void scan_best(const float* __restrict__ src, int i0, int i1, float& bv, int& bi, int& nb) {
    bv = NEG_INF, bi = 0x7fffffff, nb = 0x7fffffff;
    for (int b0 = i0 + (int)threadIdx.x; b0 < i1; b0 += UR * NT) {
        float v[UR];
#pragma unroll
        for (int u = 0; u < UR; u++) v[u] = b0 + u * NT < i1 ? src[b0 + u * NT] : 0.0f;
#pragma unroll
        for (int u = 0; u < UR; u++) {
            const int i = b0 + u * NT;
            if (i >= i1) break;
            if (v[u] - v[u] != 0.0f) {
                nb = imin(nb, i);
            } else if (v[u] > bv) {
                bv = v[u], bi = i;
            }
        }
    }
}

// warp_best: the warp's largest (v, i), the lowest i on ties, in every lane.
__device__ __forceinline__ void warp_best(float& v, int& i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
    }
}

// warp_min: the warp's least v, in every lane.
__device__ __forceinline__ int warp_min(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = imin(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

extern "C" __global__ void __launch_bounds__(SB) sample_rows(const float* __restrict__ logits, int V,
                                                             const SampleRow* __restrict__ rows,
                                                             const int* __restrict__ adj_tok,
                                                             const float* __restrict__ adj_bias,
                                                             const float* __restrict__ adj_rep,
                                                             const float* __restrict__ adj_sub,
                                                             const u32* __restrict__ masks, float* work, int* out) {
    __shared__ u32 hcnt[256];
    __shared__ u64 hmass[256];
    __shared__ u64 redu[SW];
    __shared__ int redi[SW];
    __shared__ float redf[SW];
    __shared__ int bad, found;
    __shared__ u32 s_prefix;
    __shared__ int s_need;
    __shared__ u64 s_above;
    TRACE_BEGIN(5);
    pdl_launch();
    pdl_wait();
    TRACE_MARK(1);
    const SampleRow R = rows[blockIdx.x];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float* src = logits + (i64)R.row * V;

    // 1. The first non-finite logit and, for a greedy draw without
    // penalties, the largest, in one pass with UR loads of a thread in
    // flight at once (one at a time, the row's 63 loads a thread were as
    // many round trips). A thread visits its indices in ascending order: its
    // first non-finite one is its least, and with a strict > the first of
    // equal logits stays.
    const bool masked = R.mask0 >= 0, copied = R.nadj > 0 || masked;
    const bool greedy = R.temp <= 0.0f || R.topk == 1, fast = greedy && !copied;
    if (tid == 0) bad = 0x7fffffff, found = -1;
    __syncthreads();
    float bv;
    int bi, nb;
    scan_best<8, SB>(src, 0, V, bv, bi, nb);
    if (nb != 0x7fffffff) atomicMin(&bad, nb);
    __syncthreads();
    if (bad != 0x7fffffff) {
        if (tid == 0) out[blockIdx.x] = -1 - bad;
        return;
    }

    // 2. The mask and the penalties, on a copy.
    if (copied) {
        float* w = work + (i64)blockIdx.x * V;
        if (masked) {
            const u32* m = masks + R.mask0;
            for (int i = tid; i < V; i += SB) w[i] = (m[i >> 5] >> (i & 31)) & 1u ? src[i] : src[i] - BANNED;
        } else {
            for (int i = tid; i < V; i += SB) w[i] = src[i];
        }
        __syncthreads();
        for (int a = tid; a < R.nadj; a += SB) {
            const int t = adj_tok[R.adj0 + a];
            if (t < 0 || t >= V) continue;
            float v = w[t] + adj_bias[R.adj0 + a];
            const float rp = adj_rep[R.adj0 + a];
            if (rp != 1.0f && rp != 0.0f) v = v > 0.0f ? v / rp : v * rp;
            w[t] = v - adj_sub[R.adj0 + a];
        }
        __syncthreads();
        src = w;
    }

    // 3. Greedy (without penalties the pass above found each thread's
    // largest).
    if (greedy) {
        if (!fast) {
            bv = NEG_INF, bi = 0x7fffffff;
            for (int i = tid; i < V; i += SB) {
                const float v = src[i];
                if (v > bv) bv = v, bi = i;  // ascending: the first of equals stays
            }
        }
        warp_best(bv, bi);
        if (lane == 0) redf[warp] = bv, redi[warp] = bi;
        __syncthreads();
        if (tid == 0) {
            for (int w = 1; w < SW; w++)
                if (redf[w] > bv || (redf[w] == bv && redi[w] < bi)) bv = redf[w], bi = redi[w];
            out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
        }
        return;
    }

    // 4. Weights, then the kept set: every token, or those with keys above
    // thr and the first mthr (in id order) of key thr.
    // The largest logit: without penalties the first pass found each
    // thread's.
    float mx = NEG_INF;
    if (copied) {
        for (int i = tid; i < V; i += SB) mx = fmaxf(mx, src[i]);
    } else {
        mx = bv;
    }
    mx = block_max(mx, redf);
    const float invT = 1.0f / R.temp;
    auto weight = [&](float v) -> u64 { return (u64)(expf((v - mx) * invT) * SFIX); };
    const bool topk = R.topk > 0 && R.topk < V, topp = R.topp > 0.0f && R.topp < 1.0f;
    u32 tk = 0;
    int needK = 0;
    if (topk) {
        u32 prefix = 0, mask = 0;
        int need = R.topk;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = tid; b < 256; b += SB) hcnt[b] = 0;
            __syncthreads();
            for (int base = 0; base < V; base += SB) {
                const int i = base + tid;
                u32 k = 0;
                if (i < V) k = fkey(src[i]);
                hist_add(hcnt, nullptr, (k >> shift) & 255u, 0, i < V && (k & mask) == prefix);
            }
            __syncthreads();
            if (tid == 0) {
                int cum = 0, d = 255;
                for (; d > 0; d--) {
                    if (cum + (int)hcnt[d] >= need) break;
                    cum += hcnt[d];
                }
                // The last pass's bin is the k-th's whole class: all kept.
                s_need = shift == 0 ? (int)hcnt[d] : need - cum;
                s_prefix = prefix | ((u32)d << shift);
            }
            __syncthreads();
            need = s_need, prefix = s_prefix, mask |= 255u << shift;
            __syncthreads();
        }
        tk = prefix, needK = need;  // tk's class: needK tokens, all kept
    }
    const u64 etk = topk ? weight(fval(tk)) : 0;
    u64 Sk;  // the mass of the top-k set (or of all)
    {
        u64 s = 0;
        for (int i = tid; i < V; i += SB) {
            const float v = src[i];
            if (!topk || fkey(v) > tk) s += weight(v);
        }
        Sk = block_total(s, redu) + (u64)needK * etk;
    }
    bool all = !topk;
    u32 thr = tk;
    int mthr = needK;
    u64 W = Sk;
    if (topp) {
        const double target = (double)R.topp * (double)Sk;
        u32 prefix = 0, mask = 0;
        u64 above = 0;
        int cnt = 0;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = tid; b < 256; b += SB) hcnt[b] = 0, hmass[b] = 0;
            __syncthreads();
            for (int base = 0; base < V; base += SB) {
                const int i = base + tid;
                u32 k = 0;
                u64 m = 0;
                bool on = false;
                if (i < V) {
                    const float v = src[i];
                    k = fkey(v);
                    on = (k & mask) == prefix && (!topk || k > tk);
                    if (on) m = weight(v);
                }
                hist_add(hcnt, hmass, (k >> shift) & 255u, m, on);
            }
            __syncthreads();
            if (tid == 0) {
                if (topk && (tk & mask) == prefix) {  // the kept members of tk's class
                    const u32 b = (tk >> shift) & 255u;
                    hcnt[b] += needK, hmass[b] += (u64)needK * etk;
                }
                u64 cum = above;
                int d = 255;
                for (; d > 0; d--) {
                    if ((double)(cum + hmass[d]) >= target) break;
                    cum += hmass[d];
                }
                s_above = cum, s_prefix = prefix | ((u32)d << shift), s_need = hcnt[d];
            }
            __syncthreads();
            above = s_above, prefix = s_prefix, cnt = s_need, mask |= 255u << shift;
            __syncthreads();
        }
        if (cnt > 0) {  // else rounding left the target out of reach: keep the top-k set
            const u64 ep = weight(fval(prefix));
            int m = cnt;
            if (ep > 0) m = (int)fmin((double)cnt, fmax(1.0, ceil((target - (double)above) / (double)ep)));
            all = false, thr = prefix, mthr = m, W = above + (u64)m * ep;
        }
    }

    // 5. The draw, in id order.
    const u64 r = __umul64hi(R.u, W);
    int ties = 0, last = -1;
    u64 before = 0;
    for (int base = 0; base < V; base += SB) {
        const int i = base + tid;
        float v = 0.0f;
        u32 k = 0;
        if (i < V) v = src[i], k = fkey(v);
        bool kept = i < V;
        if (!all) {
            int nt;
            const int rank = block_scan(i < V && k == thr ? 1 : 0, redi, nt) - 1 + ties;
            kept = i < V && (k > thr || (k == thr && rank < mthr));
            ties += nt;
        }
        const u64 w = kept ? weight(v) : 0;
        u64 tot;
        const u64 cum = block_scan(w, redu, tot) + before;
        if (kept && w > 0 && cum > r && cum - w <= r) found = i;
        if (kept) last = i;
        before += tot;
        __syncthreads();
        if (found >= 0) break;
    }
    if (found < 0) {  // r past the rounded weights: the last kept token
        int lm = last;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) lm = imax(lm, __shfl_xor_sync(0xffffffffu, lm, o));
        if (lane == 0) redi[warp] = lm;
        __syncthreads();
        if (tid == 0) {
            for (int w = 0; w < SW; w++) lm = imax(lm, redi[w]);
            out[blockIdx.x] = imax(lm, 0);
        }
        return;
    }
    if (tid == 0) out[blockIdx.x] = found;
}

// argmax_rows(logits [*, V] f32, V, rows SampleRow [n], pv f32 [n, AG], pi int
// [n, AG], count u32 [n], out int [n], h0 int [n], h1 int [n], hslot int [1]):
// sample_rows' draw for rows that are greedy without penalties (steps 1 and 3)
// over AG blocks a row instead of one (grid AG × n, AB threads). Block g scans
// its stretch [g·V/AG, (g+1)·V/AG) of row rows[r].row for its largest logit
// (the lowest index on ties) and its first non-finite one (as -1 - index in pi,
// then pv unused); the row's last block to finish (count[r], left at 0 again)
// takes the partials in stretch order: the first non-finite index if any, the
// largest logit otherwise, ties to the lowest stretch. out[r] is what
// sample_rows draws for the row. Without rows (a draw recorded in a decode
// step's graph) row r is logits row r. With h0 (page-locked host memory,
// mapped) the token also goes to h0[r] or, when *hslot is 1, to h1[r]: the host
// reads it there once the stream is past the draw, with no copy.
#define AG 32
#define AB 256
static_assert(AG == 32, "argmax_rows: the last block's warp takes one partial a lane");
extern "C" __global__ void __launch_bounds__(AB) argmax_rows(const float* __restrict__ logits, int V,
                                                             const SampleRow* __restrict__ rows, float* pv, int* pi,
                                                             u32* count, int* out, int* h0, int* h1,
                                                             const int* hslot) {
    __shared__ float rv[AB / 32];
    __shared__ int ri[AB / 32], rb[AB / 32];
    __shared__ int last;
    TRACE_BEGIN(7);
    pdl_launch();
    pdl_wait();
    TRACE_MARK(1);
    const int r = blockIdx.y, g = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float* src = logits + (i64)(rows ? rows[r].row : r) * V;
    const int i0 = (int)((i64)g * V / AG), i1 = (int)((i64)(g + 1) * V / AG);
    float bv;
    int bi, nb;
    scan_best<4, AB>(src, i0, i1, bv, bi, nb);
    warp_best(bv, bi);
    nb = warp_min(nb);
    if (lane == 0) rv[warp] = bv, ri[warp] = bi, rb[warp] = nb;
    __syncthreads();
    if (tid == 0) {
        for (int w = 1; w < AB / 32; w++) {
            nb = imin(nb, rb[w]);
            if (rv[w] > bv || (rv[w] == bv && ri[w] < bi)) bv = rv[w], bi = ri[w];
        }
        pv[r * AG + g] = bv;
        pi[r * AG + g] = nb != 0x7fffffff ? -1 - nb : bi;
        __threadfence();
        last = atomicAdd(count + r, 1u) == AG - 1;
    }
    __syncthreads();
    if (!last || warp != 0) return;
    __threadfence();
    // The row's AG partials, one a lane (AG = 32), in stretch order.
    float v = __ldcg(pv + r * AG + lane);
    int i = __ldcg(pi + r * AG + lane);
    int bad = i < 0 ? -1 - i : 0x7fffffff;
    if (i < 0) v = NEG_INF, i = 0x7fffffff;
    warp_best(v, i);
    bad = warp_min(bad);
    if (lane == 0) {
        const int tok = bad != 0x7fffffff ? -1 - bad : i == 0x7fffffff ? 0 : i;
        out[r] = tok;
        if (h0) (*hslot ? h1 : h0)[r] = tok;
        count[r] = 0;
    }
}
