// mlp.cu: a decode step's whole MLP in one kernel for up to 8 rows
// (runtime/cuda FuseMLP and MatMulMLP, GPTQTOOL_FUSED_MLP; off by default:
// measured slower than the GLU product and down, docs/benchmarks.md, the
// twenty-second session): x += down(silu(xn·gateᵀ) · (xn·upᵀ)), with
// gate/up and down quantized as qgemv.cu's weights.
//
// fmlp<BITS, QD, T>: one block an SM (gridDim.x = NB blocks, NB at most the
// intermediate's J = I/16 tiles of 16), 16 warps. Block b owns the
// intermediate's tiles [J0, J1) = [b·J/NB, (b+1)·J/NB), S = J1 − J0 of them
// (at most FM_SMAX), in down's sequential input order (the GLU weight's
// output columns are in that order: runtime/model folds down's act order
// into gate/up's columns):
//   1. gate/up: the block's 2S weight tiles (gate and up of each of its
//      output tiles; the GLU weight's tiles as qgemv.cu lays them out,
//      gate and up interleaved in runs of 64 columns) over all K = H inputs
//      are one sequence of 2S·CK chunks (CK = H/KB), cut evenly among the
//      warps; a warp's sums of each tile it takes part in go to shared
//      memory (gpart), and the block adds them up in warp order;
//   2. h = silu(gate)·up of the block's 16·S outputs, rounded to T as the
//      GLU product writes them, staged in shared memory (fp16, times XS);
//   3. down: the block's slice of down's inputs, 16·S of them, for all H
//      outputs: warp w takes output tiles [w·NT/16, (w+1)·NT/16) (NT =
//      H/16), each tile's S steps of 16 inputs in a row, and adds its sums
//      of each tile to acc [M][H] (fp32, zero between products) with
//      vector reductions (through the warp's wst, four outputs of a row a
//      lane);
//   4. the last block to finish (count) sets x = x + acc, rounded once to
//      T, and leaves acc and count at zero.
// Every warp streams its gate/up chunks, then its down chunks, through one
// ring of QD chunk slots of 512 bytes in shared memory (cp.async), so that
// down's weights are in flight while gate/up's sums are added up. The
// scale pairs of both go to shared memory before the wait for the previous
// kernel: loaded from L2 at each group change, gate/up's waited behind the
// ring's copies (the gate/up phase took 28 µs on the 7B shape against 19).
// The sums of down are added in the order the reductions arrive: not bit
// for bit the same from run to run.
//
// Down's codes are re-laid at load (fmlp_relayout) so that each block's
// slice is one run: block b's chunks from dbase[b], warp w's after the
// chunks of the warps before it, each chunk a lane's 16 bytes of SPC items
// (4 at 4 bits, 2 at 8), item it = (output tile it / S, step it % S) of the
// warp's tiles, each item the lane's A fragment of one 16-input step as
// qgemv.cu's tiled layout holds it (one word at 4 bits, two at 8); a warp's
// last chunk is padded with zero words, which it never reads as items.
//
// Shared memory (fmlpShared and fusedMLP.shared in runtime/cuda size it):
// the ring (16·QD·512 bytes), x [M][H+8] fp16, gpart [16][ntw][32 lanes]
// float4, h [M][FM_LDH] fp16, down's scale pairs of the ndg groups the
// block's slice reaches ([ndg][H] u32), gate/up's of the block's tiles
// ([2S][H/gsg][16] u32); static: wst [16][8·16] fp32 and the warps' ranges.

#define FM_W 16
#define FM_SMAX 8
#define FM_LDH (16 * FM_SMAX + 8)
// fmlp's flags: FM_EVICT streams the weights with the L2 policy
// evict_first; FM_NORED and FM_NODOWN (runtime/cuda
// GPTQTOOL_FUSED_MLP_PROBE, wrong results: for measuring what each part of
// the down phase costs) leave out its reductions, or all its work on the
// chunks it still streams.
#define FM_EVICT 1
#define FM_NORED 2
#define FM_NODOWN 4

template <typename T> struct fm_xscale { static constexpr float v = 1.0f / 256.0f; };
template <> struct fm_xscale<f16> { static constexpr float v = 1.0f; };

__device__ __forceinline__ float fm_silu(float v) { return v / (1.0f + expf(-v)); }

__device__ __forceinline__ void red_add4(float* p, float a, float b, float c, float d) {
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
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

// fm_chunks: warp w's down chunks in a block of S steps (ipc items a chunk).
__device__ __forceinline__ int fm_chunks(int w, int NT, int S, int ipc) {
    const int tw = (w + 1) * NT / FM_W - w * NT / FM_W;
    return (tw * S + ipc - 1) / ipc;
}

template <int BITS, int QD, typename T>
__device__ void fmlp(T* x, const T* __restrict__ xn, const u32* __restrict__ gqw, const u32* __restrict__ gsz,
                     const u32* __restrict__ dqw, const u32* __restrict__ dsz, const int* __restrict__ dbase,
                     float* acc, u32* count, int H, int I, int M, int gsg, int gsd, int ntw, int ndg, int flags) {
    constexpr int SPC = BITS == 4 ? 4 : 2;  // 16-input steps a chunk (gate/up) and items a chunk (down)
    constexpr int KB = 16 * SPC;
    constexpr int WPI = BITS == 4 ? 1 : 2;  // words a step
    constexpr float XS = fm_xscale<T>::v;
    extern __shared__ u32x4 smem_f[];
    TRACE_BEGIN(8);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int NB = gridDim.x, b = blockIdx.x, J = I / 16, NT = H / 16, CK = H / KB, NG = 2 * I, NGH = H / gsg;
    const int J0 = b * J / NB, S = (b + 1) * J / NB - J0;
    const int LDX = H + 8;
    // Shared memory (fmlpShared in runtime/cuda): the ring, x, gpart, h,
    // down's scale pairs of the groups the block's slice reaches ([ndg][H]),
    // gate/up's of the block's tiles ([2S][NGH][16]).
    const u32 ring0 = smem_addr(smem_f) + (warp * QD * 32 + lane) * 16;
    u16* xs = (u16*)(smem_f + FM_W * QD * 32);
    float4* gpart = (float4*)(xs + ((M * LDX + 7) & ~7));
    u16* hs = (u16*)(gpart + FM_W * ntw * 32);
    u32* dsc = (u32*)(hs + ((M * FM_LDH + 7) & ~7));
    u32* gsc = dsc + ndg * H;
    // Each warp's [ea, eb) (the sums of step 2), and a warp's down sums of
    // one tile on their way out (emit).
    __shared__ int2 wrange[FM_W];
    __shared__ __align__(16) float wst[FM_W][8 * 16];

    // This warp's stream: gate/up chunks [ea, eb) of the block's sequence,
    // then its down chunks from dw.
    const int len = 2 * S * CK, ea = warp * len / FM_W, eb = (warp + 1) * len / FM_W, ngu = eb - ea;
    if (lane == 0) wrange[warp] = make_int2(ea, eb);
    int dw = dbase[b];
    for (int w = 0; w < warp; w++) dw += fm_chunks(w, NT, S, SPC);
    const int ndn = fm_chunks(warp, NT, S, SPC), ntot = ngu + ndn;
    const u64 wpol = l2_policy(flags & FM_EVICT);
    // tileq: the GLU weight's tile of the block's gate/up tile lt (gate and
    // up of output tile J0 + lt/2).
    auto tileq = [&](int lt) {
        const int P = J0 + (lt >> 1);
        return (P >> 2) * 8 + (lt & 1) * 4 + (P & 3);
    };
    // The refill cursor: the next stream chunk to copy, its place in the
    // gate/up sequence (rkc, rlt) while there, and this lane's address.
    int rn = 0, rkc = ea % CK, rlt = ea / CK;
    const u32x4* rp = ngu > 0 ? (const u32x4*)gqw + ((i64)tileq(rlt) * CK + rkc) * 32 + lane
                              : (const u32x4*)dqw + (i64)dw * 32 + lane;
    auto advance = [&]() {
        rn++;
        if (rn < ngu) {
            rp += 32;
            if (++rkc == CK) rkc = 0, rlt++, rp = (const u32x4*)gqw + (i64)tileq(rlt) * CK * 32 + lane;
        } else if (rn == ngu) {
            rp = (const u32x4*)dqw + (i64)dw * 32 + lane;
        } else {
            rp += 32;
        }
    };
    // The scale pairs, model data, go to shared memory before the ring (one
    // cp.async group; at each group change a load from L2 would wait behind
    // the ring's copies): down's of the groups the block's slice of its
    // inputs reaches, gate/up's of the block's tiles.
    const int glo = 16 * J0 / gsd, nd = (16 * (J0 + S) - 1) / gsd - glo + 1;
    for (int i = threadIdx.x; i < nd * H / 4; i += blockDim.x) {
        const int r = i / (H / 4), c4 = i - r * (H / 4);
        cp_async16(smem_addr(dsc + r * H + c4 * 4), dsz + (i64)(glo + r) * H + c4 * 4);
    }
    for (int i = threadIdx.x; i < 2 * S * NGH * 4; i += blockDim.x) {
        const int q = i & 3, r = i >> 2, l = r / NGH, gi = r - l * NGH;
        cp_async16(smem_addr(gsc + r * 16 + q * 4), gsz + (i64)gi * NG + tileq(l) * 16 + q * 4);
    }
    asm volatile("cp.async.commit_group;");
#pragma unroll
    for (int i = 0; i < QD; i++) {
        if (rn < ntot) {
            cp_async16_pol(ring0 + i * 512, rp, wpol);
            advance();
        }
        asm volatile("cp.async.commit_group;");
    }

    pdl_wait();
    TRACE_MARK(1);
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

    float accv[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float s0 = 0.0f, s1 = 0.0f;
    u32 zz0 = 0, zz1 = 0, nz1 = 0;
    auto setq = [&](const u32* p) {  // the pairs of rows g and g+8 at p[g], p[g+8]
        const u32 a0 = p[g], a1 = p[g + 8];
        s0 = h_lo(a0), s1 = h_lo(a1);
        zz0 = (a0 >> 16) * 0x10001u, zz1 = (a1 >> 16) * 0x10001u;
        nz1 = hsub2(0x63806380u, zz1);
    };
    auto fold = [&]() {
        accv[0] += s0 * tmp[0], accv[1] += s0 * tmp[1], accv[2] += s1 * tmp[2], accv[3] += s1 * tmp[3];
        tmp[0] = tmp[1] = tmp[2] = tmp[3] = 0.0f;
    };
    // take: stream chunk i from the ring, after refilling the slot chunk
    // i − 1 left with the next chunk (i − 1 + QD).
    auto take = [&](int i) {
        if (i > 0 && rn < ntot) {
            cp_async16_pol(ring0 + ((i - 1) & (QD - 1)) * 512, rp, wpol);
            advance();
        }
        asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group %0;" ::"n"(QD - 1));
        return lds128(ring0 + (i & (QD - 1)) * 512);
    };

    // 1. gate/up: chunk kc of tile lt at a time; at each group's start its
    // scale pairs from shared memory.
    const u32 xb = smem_addr(xs + imin(lane & 7, M - 1) * LDX + (lane >> 3) * 8);
    const int cpg = gsg / KB;  // chunks a group (gsg a multiple of KB, H of gsg)
    int kc = ea % CK, lt = ea / CK, gi = kc / cpg, gleft = cpg - kc % cpg;
    const int lt0 = lt;
    if (ngu > 0) setq(gsc + (lt * NGH + gi) * 16);
    for (int i = 0; i < ngu; i++) {
        const u32x4 w = take(i);
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
        kc++;
        if (--gleft == 0 && i + 1 < ngu) {  // the next group starts (a tile at kc 0)
            fold();
            gi++;
            if (kc == CK) {
                gpart[(warp * ntw + (lt - lt0)) * 32 + lane] = make_float4(accv[0], accv[1], accv[2], accv[3]);
                accv[0] = accv[1] = accv[2] = accv[3] = 0.0f;
                kc = 0, lt++, gi = 0;
            }
            gleft = cpg;
            setq(gsc + (lt * NGH + gi) * 16);
        }
    }
    if (ngu > 0) {
        fold();
        gpart[(warp * ntw + (lt - lt0)) * 32 + lane] = make_float4(accv[0], accv[1], accv[2], accv[3]);
    }
    __syncthreads();
    TRACE_MARK(2);

    // 2. h = silu(gate)·up: each (row, output) adds up the sums of the warps
    // that took part in its gate tile and its up tile, in warp order.
    for (int idx = threadIdx.x; idx < M * 16 * S; idx += blockDim.x) {
        const int m = idx / (16 * S), c = idx - m * 16 * S, p = c >> 4, col = c & 15;
        const int fl = (col & 7) * 4 + (m >> 1), fe = (col >= 8 ? 2 : 0) + (m & 1);
        float v[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int t0 = (2 * p + h) * CK, t1 = t0 + CK;
            float sum = 0.0f;
            for (int w = 0; w < FM_W; w++) {
                const int2 r = wrange[w];
                if (r.x >= r.y || r.y <= t0 || r.x >= t1) continue;
                const float4 f = gpart[(w * ntw + (2 * p + h - r.x / CK)) * 32 + fl];
                sum += fe == 0 ? f.x : fe == 1 ? f.y : fe == 2 ? f.z : f.w;
            }
            v[h] = sum / XS;
        }
        const float hv = to_f32(from_f32<T>(fm_silu(v[0]) * v[1]));
        hs[m * FM_LDH + c] = (u16)(pack2<f16>(hv * XS, 0.0f) & 0xffffu);
    }
    __syncthreads();

    // 3. down: items (tile nt, step st) of the warp's tiles, a tile's S
    // steps in a row, SPC a chunk. At a tile's first step, and where a
    // group of down's inputs starts within it (bit st of gnew), the scale
    // pairs from shared memory; at its last, its sums go out (emit).
    const u32 hb = smem_addr(hs + imin(lane & 7, M - 1) * FM_LDH + (lane >> 3) * 8);
    u32 gnew = 0;
    for (int s = 1; s < S; s++) gnew |= (16 * (J0 + s) % gsd < 16 ? 1u : 0u) << s;
    const int row0 = (16 * J0 / gsd - glo) * H;
    int nt = warp * NT / FM_W, st = 0;
    accv[0] = accv[1] = accv[2] = accv[3] = 0.0f;
    tmp[0] = tmp[1] = tmp[2] = tmp[3] = 0.0f;
    float* ws = wst[warp];
    // emit: tile nt's sums to acc, four outputs of one row a lane (lane L <
    // 4M: row L/4, outputs 4(L%4)..+3), through the warp's wst.
    auto emit = [&]() {
        if (2 * t < M) ws[2 * t * 16 + g] = accv[0] / XS, ws[2 * t * 16 + g + 8] = accv[2] / XS;
        if (2 * t + 1 < M) ws[(2 * t + 1) * 16 + g] = accv[1] / XS, ws[(2 * t + 1) * 16 + g + 8] = accv[3] / XS;
        __syncwarp();
        if (lane < 4 * M && !(flags & FM_NORED)) {
            const float4 o = *(const float4*)(ws + lane * 4);
            red_add4(acc + (i64)(lane >> 2) * H + nt * 16 + (lane & 3) * 4, o.x, o.y, o.z, o.w);
        }
        __syncwarp();
    };
    auto item = [&](u32 w0, u32 w1) {
        if (flags & FM_NODOWN) return;
        if (st == 0) {
            setq(dsc + row0 + nt * 16);
        } else if ((gnew >> st) & 1u) {
            fold();
            setq(dsc + (16 * (J0 + st) / gsd - glo) * H + nt * 16);
        }
        u32 a[4];
        fm_decode<BITS>(w0, w1, zz0, zz1, nz1, a);
        const u32x4 v = ldsm4(hb + (st >> 1) * 64);
        mma16816<f16>(tmp, a, (st & 1) ? v.c : v.a, (st & 1) ? v.d : v.b);
        if (++st == S) {
            fold();
            emit();
            accv[0] = accv[1] = accv[2] = accv[3] = 0.0f;
            st = 0, nt++;
        }
    };
    const int items = fm_chunks(warp, NT, S, 1), full = items / SPC;
    for (int i = ngu; i < ngu + full; i++) {
        const u32x4 w = take(i);
#pragma unroll
        for (int u = 0; u < SPC; u++) item(word_of(w, WPI * u), word_of(w, WPI * u + WPI - 1));
    }
    if (full < ndn) {  // a last chunk of fewer items
        const u32x4 w = take(ngu + full);
#pragma unroll
        for (int u = 0; u < SPC; u++)
            if (full * SPC + u < items) item(word_of(w, WPI * u), word_of(w, WPI * u + WPI - 1));
    }
    asm volatile("cp.async.wait_group 0;");
    TRACE_MARK(3);
    pdl_launch();

    // 4. The last block adds acc to x.
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(count, 1u) == (u32)NB - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int e = threadIdx.x * 8; e < M * H; e += blockDim.x * 8) {
        float4* ap = (float4*)(acc + e);
        const float4 a0 = __ldcg(ap), a1 = __ldcg(ap + 1);
        float v[8];
        load8<T>(x + e, v);
        v[0] += a0.x, v[1] += a0.y, v[2] += a0.z, v[3] += a0.w;
        v[4] += a1.x, v[5] += a1.y, v[6] += a1.z, v[7] += a1.w;
        if constexpr (sizeof(T) == 2) {
            *(u32x4*)(x + e) = pack8<T>(v);
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) x[e + j] = from_f32<T>(v[j]);
        }
        __stcg(ap, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
        __stcg(ap + 1, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
    }
    if (threadIdx.x == 0) *count = 0u;
}

// fmlp_relayout<BITS>: down's codes (qgemv.cu's tiled layout of the weight
// [I inputs, H outputs], std) re-laid for fmlp (above) into out, for NB
// blocks. Grid (NB, 16): block (b, w) writes warp w of fmlp block b's
// chunks, 128 threads: lane = threadIdx.x / 4, word q = threadIdx.x % 4.
template <int BITS>
__device__ void fmlp_relayout(u32* out, const u32* std, const int* dbase, int H, int I) {
    constexpr int SPC = BITS == 4 ? 4 : 2, WPI = BITS == 4 ? 1 : 2, KB = 16 * SPC;
    const int NB = gridDim.x, b = blockIdx.x, w = blockIdx.y, J = I / 16, NT = H / 16, CKd = I / KB;
    const int J0 = b * J / NB, S = (b + 1) * J / NB - J0;
    const int lane = threadIdx.x >> 2, q = threadIdx.x & 3;
    int dw = dbase[b];
    for (int v = 0; v < w; v++) dw += fm_chunks(v, NT, S, SPC);
    const int n = fm_chunks(w, NT, S, SPC), items = fm_chunks(w, NT, S, 1), nt0 = w * NT / FM_W;
    for (int c = 0; c < n; c++) {
        const int it = c * SPC + q / WPI, wi = q % WPI;
        u32 v = 0u;
        if (it < items) {
            const int ntl = it / S, s = it - ntl * S, step = J0 + s;
            const int kc = step / SPC, sw = step - kc * SPC;
            v = std[(((i64)(nt0 + ntl) * CKd + kc) * 32 + lane) * 4 + sw * WPI + wi];
        }
        out[((i64)(dw + c) * 32 + lane) * 4 + q] = v;
    }
}

#define FMLP(BITS, QD, N, T)                                                                                    \
    extern "C" __global__ void __launch_bounds__(512, 1) fmlp##BITS##_q##QD##_##N(                                  \
        T* x, const T* xn, const u32* gqw, const u32* gsz, const u32* dqw, const u32* dsz, const int* dbase, float* acc, \
        u32* count, int H, int I, int M, int gsg, int gsd, int ntw, int ndg, int flags) {                              \
        fmlp<BITS, QD, T>(x, xn, gqw, gsz, dqw, dsz, dbase, acc, count, H, I, M, gsg, gsd, ntw, ndg, flags);           \
    }
#define FMLP_T(N, T) FMLP(4, 4, N, T) FMLP(4, 8, N, T) FMLP(8, 4, N, T) FMLP(8, 8, N, T)
FMLP_T(f32, float)
FMLP_T(f16, f16)
FMLP_T(bf16, bf16)

extern "C" __global__ void fmlp_relayout4(u32* out, const u32* std, const int* dbase, int H, int I) {
    fmlp_relayout<4>(out, std, dbase, H, I);
}
extern "C" __global__ void fmlp_relayout8(u32* out, const u32* std, const int* dbase, int H, int I) {
    fmlp_relayout<8>(out, std, dbase, H, I);
}
