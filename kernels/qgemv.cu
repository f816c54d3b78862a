// qgemv.cu: matrix products with group-quantized weights (runtime/cuda
// quant.go), 4 and 8 bits, on tensor cores.
//
// Weight layout, made once at load from runtime.QuantWeight (act order
// already sequential), tiled for mma.sync.m16n8k16 with the weight as the A
// operand (16 output columns × 16 inputs) so that a warp's 16-byte loads
// are its A fragments:
//   qw   u32x4 [N/16][K/KB][32 lanes]: chunk (tile nt, kc) holds inputs
//        kc*KB.. of columns nt*16..nt*16+15, KB = 64 (4 bits) or 32 (8
//        bits); lane (g = lane/4, t = lane%4) holds, for each 16-input step
//        kk, the codes of A[r][c] = code(input kk+c, column nt*16+r) at
//        (r, c) = (g, 2t|2t+1), (g+8, 2t|2t+1), (g, 2t+8|2t+9), (g+8,
//        2t+8|2t+9): 4 bits: one u32 a step, pair i at bits 4i (first input)
//        and 4i+16 (second); 8 bits: two u32 a step, pairs 0 and 1 of the
//        first at bytes 0/2 and 1/3, pairs 2 and 3 likewise in the second;
//   sz   u32 [G, N]: the fp16 pair (scale, 1024 + zero) of group g, column n,
//        the scale in the low half; with QG_SZ16 (below) u16 [G, N], the
//        scale alone;
//   perm i32 [K] or null: sequential input k reads x column perm[k];
//   group of sequential input k: k / gs (gs a multiple of 16).
// A code c becomes fp16 exactly as (c | 0x6400) = 1024 + c, minus (1024 +
// zero) exactly: the mma multiplies code − zero by x and sums in fp32, and
// each group's sum is multiplied by its scale in fp32.
//
// qmma<BITS, MT, T>: out[m, n] = (res ? res[m, n] : 0) + Σ_k x[m, perm[k]] · w[k, n]
// for M <= 8*MT rows (the batch is the mma's N dimension, tiles of 8 rows).
// Grid (ceil(N/128), S), 256 threads: a block owns 128 columns (a warp an
// n tile of 16) and the chunks [y*cps, (y+1)*cps) of the inputs. Each warp
// starts QD chunk copies into its ring in shared memory (cp.async), the
// block stages x for the first P chunks of its slice (gathered through
// perm, as fp16, times 2^-8 for bf16/f32 inputs so that their range fits;
// 16-byte aligned rows when there is no perm; only kernels of one tile,
// MT = 1, gather, the caller permutes more rows once) in shared memory, and
// the warps then stream their chunks QD deep, decode in registers and
// multiply with fp32 accumulation; every P chunks (a multiple of QD, or the
// whole slice) the block stages the next phase of x between two barriers,
// so that many rows need not split K further to fit (kernels of one tile
// always take the whole slice at once and split K instead). Each group's
// scale pairs are loaded a group ahead; the first group's, like the weights
// and a one-tile kernel's permutation, before waiting for the previous
// kernel (PDL). With S > 1 the blocks of a column slab write fp32 partial
// sums to part [S, M, N] and the last one to finish (a counter per slab in
// count, left at zero again) adds them up; the block's sums then go out
// through qout. Rows of x past M are never read (their mma columns are
// discarded). With cl (the launch makes the S blocks of a slab one thread
// block cluster, S <= 8) the partial sums stay in each block's shared memory
// instead, and each block adds up and writes its share of the slab's
// outputs from the cluster's shared memory. The warps of a last block past N repeat warp 0's work and
// write nothing, so that every warp takes part in the phases' barriers.
// Shared memory: the ring (a warp's QD chunk slots of 512 bytes for each of
// the block's NW warps), then x [M][P·KB+8] fp16, whose space the block's
// sums [M][QC] fp32 reuse after the loop.
//
// The _g kernels (one tile, glu, groups of whole chunks) are the plain
// kernel in blocks of 14 warps (224 columns: gate and up of 112 outputs,
// qtile), two an SM: a gate/up product's 128 slabs of the 7B shape, split
// in two, then load the SMs evenly (its 448 blocks of 8 warps, four an SM
// at most, left half the SMs of an H200 with four and the rest with two or
// three).
//
// The _p kernels (one tile, plain: no glu, RoPE, norm or attention parts;
// groups of whole chunks) are the plain kernel in blocks of 16 warps (256
// columns), one an SM (runtime/cuda asks for more than half an SM's shared
// memory): the 7B shape's down product (4,096 outputs, split in 8) is then
// 128 blocks on 128 SMs, where its 256 blocks of 8 warps ran one to three
// an SM and every cluster waited for the SMs of three.
//
// The _w kernels (WG, sm_90a; two to eight tiles, groups of whole
// chunks) keep the ring, the split and the epilogue, and multiply on
// warpgroup MMA: the four warps of a warpgroup own its 64 columns, decode
// each chunk into fp16 A registers, and x, staged in the 128-byte swizzle
// (fp16 x by the tensor memory accelerator, QF_TMA), is the B operand
// (8·MT rows, m64n{8·MT}k16); the next chunk is decoded while this one's
// MMAs run. They decode code − zero exactly and add each group's sums
// into the fp32 sums times its scale, as the kernels of mma.sync do (WG_FS;
// with WG_FS below the tiles, or WG_FAST=0, they decode scale·(code −
// zero) rounded once, as qdequant writes the weight: only weights whose
// values fit fp16 run on the _w kernels).
//
// The _n kernels (one tile, NRM) take x as the input of an RMSNorm whose
// weight, in sequential input order, is nw (null for the others): the block
// normalizes the rows it stages (eps, and nv8 saying whether norm.cu would
// take its 8-element form), bit for bit as the norm kernel would have
// written them, so that a decode step needs no norm kernel before its
// q/k/v and gate/up products.
//
// Fused weights (LoadQuantSplit, LoadQuantGLU) run through the same kernel:
// split output columns go to up to three tensors, [0, seg1) to out0 [M, seg1],
// [seg1, seg2) to out1 [M, seg2-seg1], [seg2, N) to out2 [M, N-seg2] (one
// tensor: seg1 = seg2 = N); with glu, the columns are gate and up interleaved
// in runs of 64 (a block's 128 columns are gate and up of the same 64
// outputs) and out0 [M, N/2] = silu(gate)·up, from the fp32 sums, output c
// at column oslots[c] when oslots is not null (the input order of the
// product that reads it). glu_rows<T> is that epilogue for the dequantize +
// cuBLAS path: dst [M, N/2] from the product src [M, N] in the interleaved
// order.
//
// The _a kernels (one tile, AP, runtime/cuda PagedAttentionMatMul) take x
// from paged attention that left its rows of at most dfr splits in parts
// (decode.cu dfr, QAttn): as they stage x, each (row, head)'s splits are
// weighed as attention's own combine weighs them, and input k is its
// splits' outputs so weighed (the parts in this product's input order, so
// that the loads are contiguous; perm, the weight's permutation, only
// says each input's head); rows attention combined itself come from x.
//
// qdequant<BITS, T>: w [N, K] T, w[n, k] = scale·(code − zero) in sequential
// input order, for the prefill path (dequantize, then cuBLAS) and the forced
// reference; gather_cols<T> gives that product its input, xp[m, k] =
// x[m, perm[k]]. qdequant: grid (N/16, ceil(K/(8*KB))), 256 threads; a warp
// decodes one chunk into a shared-memory tile of 16 rows, which the block
// writes out row by row (coalesced).

#define QCOLS 128

// QG_SZ16=1 (a define the backend adds for weights whose zeros are all
// 2^(BITS-1), the symmetric quantizer's): sz holds only the fp16 scales,
// u16 [G, N], half the bytes of the pairs; a loaded scale stands for its
// pair (the scale in the low half, as there), and SZ_ZZ is the pairs'
// zero half doubled, 1024 + 2^(BITS-1) twice, a constant (szw, SZ_ZZ and
// sz_group: common.cuh). (The scale is kept as loaded until its group
// begins: a pair made from it as it is loaded waits for the load there, a
// round trip a group change.)
#if QG_SZ16
// szld: the warpgroup kernels' loads of the scales of columns p[0] and
// p[8], straight into 32-bit registers (the load zero-extends). A u16
// loaded as such is widened where the prologue's loads (some predicated)
// meet at the passes' loop, by a mask that waits for them there; and
// ptxas (NVRTC 13) then made the loop's head wait for every pass's loads
// of the next group: the warpgroup kernels were 5% slower at batch 32 than
// with the pairs, and 1.2% faster with these loads (docs/benchmarks.md,
// the forty-sixth session).
__device__ __forceinline__ void szld(const u16* p, u32& a, u32& b) {
    asm("ld.global.nc.u16 %0, [%2];\n\tld.global.nc.u16 %1, [%2+16];" : "=r"(a), "=r"(b) : "l"(p));
}
#endif

// qmma's flags: QF_XASYNC stages fp16 x with cp.async; QF_EVICT streams
// the weights with the L2 policy evict_first (l2_policy); QF_EARLY lets
// the next kernel launch as this one starts rather than after its main
// loop (its blocks then take the room this one's leave on each SM);
// QF_LATE only as this one ends (its epilogue then shares the SMs' memory
// pipes with no prologue of the next).
#define QF_XASYNC 1
#define QF_EVICT 2
#define QF_EARLY 4
#define QF_LATE 8
// QF_TMA (the _w kernels, fp16 x): x is staged by the tensor memory
// accelerator from the launch's tensor map tmx (runtime/cuda rowsMap: boxes
// of 64 inputs by the 8·MT rows, in the 128-byte swizzle), one thread
// issuing a phase's copies and every thread waiting on an mbarrier.
#define QF_TMA 16
// QF_MC2 / QF_MC4 (with QF_TMA): the launch makes 2 or 4 blocks along the
// grid's x one cluster (with cl, by the S blocks of each slab along y), and
// the CX blocks of a row of it, which stage the same x, share its copies:
// each issues every CX-th box of a phase, multicast to all of them. A phase
// is copied only when all of them are done with the last (each arrives on
// the others' mbarrier xfree). runtime/cuda sets neither flag: on the H200
// the 7B decode hung with them (clusters of 2 and 4 along x alone too),
// though TestRoPEFuse's products passed with clusters of one row; the cause
// was not found (docs/benchmarks.md, the thirteenth session). A probe that
// copies only every CX-th box (WG_XDIV, below) put what sharing x's copies
// could gain at batch 32 at 0.7% (2 blocks) and 1.5% (4). The code stays
// although nothing runs it: deleted, the _w kernels' registers change (the
// four-tile kernel's 102 back to 96 under NVRTC 12.4) and batch 32 lost
// 2.4% (docs/benchmarks.md, the fourteenth session), so it goes only once
// what those registers buy is had on purpose.
#define QF_MC2 32
#define QF_MC4 64
// QF_PUSH (the clustered kernels of one tile and 8 warps; runtime/cuda
// sets it for products of up to 4 rows, GPTQTOOL_QMMA_PUSH=N for up to N;
// QPUSH=0 compiles it out): the S blocks of a slab add up
// their sums by pushing into each block's receive slots (after x's space)
// the sums of that block's share of the outputs, and reading them from
// their own shared memory, instead of reading each other's tot: one
// cluster barrier after the loops instead of two (the wait on the arrival
// each block made as it started costs nothing then), and none before a
// block exits, since no block reads another's shared memory. Every output
// is the same sum in the same rank order: the same bits.
#define QF_PUSH 128
// QF_PARTS (the _p kernels, S > 1 without clusters; runtime/cuda
// MatMulAddNormTo, GPTQTOOL_DOWN_NORM): each block writes its fp32 sums to
// part [S, M, N] and ends; the next kernel (norm.cu rmsnorm_parts_v8) adds
// them up, in split order from 0.0f, and the residual as qout adds it: the
// same bits, without the last block's fence, counter and reads.
#define QF_PARTS 256
#ifndef QPUSH
#define QPUSH 1
#endif
// pshare: block rk's share [lo, hi) of an epilogue of items items (a
// multiple of 4) among ns blocks under QF_PUSH, in quads of 4 items.
template <int Z = 0> __device__ __forceinline__ void pshare(int items, int ns, int rk, int& lo, int& hi) {
    const int q4 = items / 4;
    lo = 4 * (rk * q4 / ns), hi = 4 * ((rk + 1) * q4 / ns);
}
// st_cluster4: 16 bytes to a shared::cluster address (cluster_addr).
template <int Z = 0> __device__ __forceinline__ void st_cluster4(u32 addr, float4 v) {
#if __CUDA_ARCH__ >= 900
    asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};" ::"r"(addr), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
#endif
}

__device__ __forceinline__ u32x4 ldg_u32x4(const u32* p) {
    u32x4 v;
    asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.a), "=r"(v.b), "=r"(v.c), "=r"(v.d) : "l"(p));
    return v;
}

__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + expf(-v)); }

// QE_PRE (kernels of one tile): the epilogue's step inputs and model data
// of a thread's first item read before the wait, a bit a kind: 1 RoPE's
// angle and cache slot, 2 glu's output slot (0: in the epilogue).
#ifndef QE_PRE
#define QE_PRE 3
#endif
#define QPRE 64

// QRope: a q/k/v product's RoPE and cache store (kc not null): row m is
// at position pos[m] and goes to cache row slot[m]; invf [QCOLS/2] the
// rotary inverse frequencies of a head of QCOLS dimensions (the host's
// table, runtime.RoPEFreqs: plain or scaled).
template <typename T> struct QRope {
    const int* pos;
    const int* slot;
    const float* invf;
    T* kc;
    T* vc;
};

// QAttn (the _a kernels): x is paged attention's output (decode.cu, in
// this product's input order), whose rows of at most dfr splits that
// kernel left in parts: part [M, hq, sg, 2] holds each split's (max, sum)
// of each head, then [M, sg, K] each split's unnormalised output, in the
// product's input order too (sg the attention grid's splits, a row's own
// count pa_splits of pos[m]); its other rows it combined into x itself.
struct QAttn {
    const float* part;
    const int* pos;
    int sg, hq, hd, window, minsplit, dfr;
};

// qout writes the outputs of a block's QC columns (QCOLS but in the _g
// kernels), items [lo, hi) of the M × QC/2 outputs j (glu) or of the M × QC
// columns c (the others), from their sums v(e) for elements e = m*QC + c of
// tot [M][QC] (see the header: split or glu). With rp.kc (split, every
// head QCOLS columns, so that a block's columns are one head): items of M ×
// QCOLS/2 rotation pairs (j, j + QCOLS/2); a q or k head's pair is rounded
// to T, rotated as rope_store does and written rotated, a k head's also to
// row slot[m] of kc, a v head's pair to its output and to vc.
template <typename T, int QO, int QC = QCOLS, typename V>
__device__ __forceinline__ void qout(V v, int lo, int hi, T* out0, T* out1, T* out2, const T* res, int seg1, int seg2,
                                     int glu, int col0, int N, const int* oslots, const QRope<T>& rp,
                                     const float2* pre_cs = nullptr, const int* pre_sl = nullptr,
                                     const int* orows = nullptr) {
    if (rp.kc) {
        constexpr int D2 = QC / 2;
        if (col0 >= N) return;
        const bool isq = col0 < seg1, isv = col0 >= seg2;
        T* o = isq ? out0 : isv ? out2 : out1;
        const int w = isq ? seg1 : isv ? N - seg2 : seg2 - seg1, c = col0 - (isq ? 0 : isv ? seg2 : seg1);
        for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            const int m = i / D2, j = i % D2;
            T y1 = from_f32<T>(v(m * QC + j)), y2 = from_f32<T>(v(m * QC + D2 + j));
            // (pre_cs, pre_sl: the first item's angle and slot, read
            // before the wait; see qmma's QE_PRE.)
            const bool first = pre_cs && i == lo + (int)threadIdx.x && threadIdx.x < QPRE;
            if (!isv) {
                float cs, sn;
                if (first)
                    cs = pre_cs[threadIdx.x].x, sn = pre_cs[threadIdx.x].y;
                else
                    rope_angle(rp.pos[m], rp.invf[j], cs, sn);
                rope_rot<T>(to_f32(y1), to_f32(y2), cs, sn, y1, y2);
            }
            T* dst = o + (i64)m * w + c;
            dst[j] = y1, dst[j + D2] = y2;
            if (!isq) {
                T* cache = (isv ? rp.vc : rp.kc) + (i64)(first ? pre_sl[threadIdx.x] : rp.slot[m]) * w + c;
                cache[j] = y1, cache[j + D2] = y2;
            }
        }
        return;
    }
    if (glu) {
        const int No = N / 2;
        for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            const int m = i / (QC / 2), j = i % (QC / 2);
            // (Blocks of QCOLS columns: slabs are whole, N a multiple of 128.)
            if (QC == QCOLS ? col0 + j >= N : col0 / 2 + j >= N / 2) continue;
            const float g = v(m * QC + j), u = v(m * QC + QC / 2 + j);
            const int c = col0 / 2 + j;
            const int oc = !oslots ? c : (QE_PRE & 2) && pre_sl && i == lo + (int)threadIdx.x && threadIdx.x < QPRE ? pre_sl[threadIdx.x]
                                                                                                   : oslots[c];
            out0[(i64)m * No + oc] = from_f32<T>(silu_f(g) * u);
        }
        return;
    }
    // QO items a thread at a time (4 in kernels of more tiles, whose
    // threads take several): their sums and residuals are all read before
    // any is stored (res may be out0 itself, so a store would otherwise
    // keep the next item's loads waiting behind it).
    for (int e0 = lo + threadIdx.x; e0 < hi; e0 += QO * blockDim.x) {
        float xv[QO];
        T* dst[QO];
#pragma unroll
        for (int u = 0; u < QO; u++) {
            const int e = e0 + u * blockDim.x;
            dst[u] = nullptr;
            if (e >= hi) continue;
            const int m = e / QC, cb = e % QC, n = col0 + cb;  // the block's column cb
            if (n >= N) continue;
            T* o;
            int w, c;
            if (n < seg1) {
                o = out0, w = seg1, c = n;
            } else if (n < seg2) {
                o = out1, w = seg2 - seg1, c = n - seg1;
            } else {
                o = out2, w = N - seg2, c = n - seg2;
            }
            float x = v(m * QC + cb);
            if (res) x += to_f32(res[(i64)m * w + c]);
            xv[u] = x, dst[u] = o + (i64)(orows ? orows[m] : m) * w + c;
        }
#pragma unroll
        for (int u = 0; u < QO; u++)
            if (dst[u]) *dst[u] = from_f32<T>(xv[u]);
    }
}

template <typename T> struct xscale { static constexpr float v = 1.0f / 256.0f; };
template <> struct xscale<f16> { static constexpr float v = 1.0f; };

// dq: two codes as the exact fp16 values code − zero (zz holds 1024 + zero
// twice).
__device__ __forceinline__ u32 dq(u32 w, u32 mask, u32 zz) { return hsub2((w & mask) | 0x64006400u, zz); }

// Warpgroup MMA (sm_90a; the _w kernels, QG_WG=1|2): wg_desc, wg_fence,
// wg_commit, wg_wait and wg_keep are common.cuh's.
// wg_mma<MT>: d[64 × 8·MT] += a[64 × 16] · b[16 × 8·MT], fp16 in, fp32 sums;
// a this warp's mma.m16n8k16 A fragment (rows 16·(warp%4)..), b at
// descriptor desc (K-major, rows of x); d[bt][e] is the mma C fragment of
// tile bt, so that the epilogue reads it as qmma's. sd 0: d = a·b (the
// sums before are dropped).
template <int MT> __device__ __forceinline__ void wg_mma(float (&d)[MT][4], const u32 (&a)[4], u32 dlo, int sd = 1);
template <> __device__ __forceinline__ void wg_mma<2>(float (&d)[2][4], const u32 (&a)[4], u32 dlo, int sd) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, %14, 0;\nmov.b64 d, {%12, %13};\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI), "r"(sd));
}
// (Three and five to seven tiles: 17-24 and 33-56 rows in one pass whose
// MMAs are no wider than its rows need.)
template <> __device__ __forceinline__ void wg_mma<3>(float (&d)[3][4], const u32 (&a)[4], u32 dlo, int sd) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, %18, 0;\nmov.b64 d, {%16, %17};\n"
        "wgmma.mma_async.sync.aligned.m64n24k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11}, "
        "{%12,%13,%14,%15}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI), "r"(sd));
}
template <> __device__ __forceinline__ void wg_mma<4>(float (&d)[4][4], const u32 (&a)[4], u32 dlo, int sd) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, %22, 0;\nmov.b64 d, {%20, %21};\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, "
        "{%16,%17,%18,%19}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI), "r"(sd));
}

template <> __device__ __forceinline__ void wg_mma<5>(float (&d)[5][4], const u32 (&a)[4], u32 dlo, int sd) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, %26, 0;\nmov.b64 d, {%24, %25};\n"
        "wgmma.mma_async.sync.aligned.m64n40k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19}, {%20,%21,%22,%23}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI), "r"(sd));
}
template <> __device__ __forceinline__ void wg_mma<6>(float (&d)[6][4], const u32 (&a)[4], u32 dlo, int sd) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, %30, 0;\nmov.b64 d, {%28, %29};\n"
        "wgmma.mma_async.sync.aligned.m64n48k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23}, {%24,%25,%26,%27}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI), "r"(sd));
}
template <> __device__ __forceinline__ void wg_mma<7>(float (&d)[7][4], const u32 (&a)[4], u32 dlo, int sd) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, %34, 0;\nmov.b64 d, {%32, %33};\n"
        "wgmma.mma_async.sync.aligned.m64n56k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27}, {%28,%29,%30,%31}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI), "r"(sd));
}

template <> __device__ __forceinline__ void wg_mma<8>(float (&d)[8][4], const u32 (&a)[4], u32 dlo, int sd) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, %38, 0;\nmov.b64 d, {%36, %37};\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI), "r"(sd));
}

// TMap, bar_init, bar_expect, bar_wait and tma_x (x's copies by the tensor
// memory accelerator) are common.cuh's.

// WG_FAST (the _w kernels): the main loop in passes specialized by what
// they know (see qmma), the same products as WG_FAST=0, the plain loop, in
// fewer instructions a chunk; wg_pass<KD> names a pass's kind.
#ifndef WG_FAST
#define WG_FAST 1
#endif
#if WG_FAST
template <int KD> struct wg_pass {
    static constexpr int value = KD;
};
#endif
// WG_FS=N (the _w kernels of at most N tiles, WG_FAST loop): A holds the
// exact code − zero, the MMAs of a group sum into a group accumulator of
// their own, and at the group's end (its MMAs retired) acc += scale·sums
// in fp32, as the kernels of mma.sync do, instead of a multiply by the
// scale per weight pair in fp16 (16 of a 4-bit chunk's 98 instructions a
// warp at 16 rows, whose loop was bound by its warps' instruction
// latencies: 13.6 warps an SM). 0: none. On the H200 (7B decode, 256 new
// tokens) 4 bits at batch 12 / 16 / 24 / 32 4,850 / 6,376 / 8,846 /
// 10,867 tok/s against 4,424 / 5,845 / 8,130 / 10,181 with WG_FS=0
// (+6.7% to +9.6%), 8 bits +3.0% / +2.7% at 16 / 32 (docs/benchmarks.md,
// the forty-third session); at five to eight tiles (WG_FS=8, the default
// since the forty-fourth session, whose tests ran under it) batch 40 / 48
// / 64 12,362 / 13,524 / 15,196 against 11,765 / 13,100 / 14,900 with
// WG_FS=4, though the seven- and eight-tile 4-bit kernels spill (NVRTC
// 12.4: 20 / 36 bytes stored).
#ifndef WG_FS
#define WG_FS 8
#endif

// QA_HOIST (the _a kernels): the first item's loads of attention's parts
// before the splits' weights (1), or after them (0, the fourteenth
// session's order), for measuring one against the other.
#ifndef QA_HOIST
#define QA_HOIST 1
#endif
// QA_FAST (the _a kernels): what the staging of the first phase computes
// before its first loads (the rows' split counts' barrier, the first
// item's heads, which divide the permutation, a model's array, by the
// head size, and the residual's prefetch address, which divides by the
// cluster's blocks) is done before the wait, so that the parts' loads and
// the first (max, sum) loads go out as the wait returns: 37 instructions
// after it in the SASS instead of 245 (NVRTC 12.4). Measured on an H200
// (docs/benchmarks.md, the thirty-seventh session): the wait to x staged
// 1.79 µs instead of 2.11 (a trace's medians), batch 1 +0.7-0.8% at 4
// bits and +0.4% at 8; 0 is the old order.
#ifndef QA_FAST
#define QA_FAST 1
#endif
// QA_PROBE_W (a probe for traces, not a product: wrong outputs): the _a
// staging takes every split's (max, sum) as (0, 1) instead of loading it,
// to time its splits' weights without the loads every block makes of the
// same (max, sum) table.
#ifndef QA_PROBE_W
#define QA_PROBE_W 0
#endif

// Chunks in flight per warp: a ring of chunk slots in shared memory,
// filled with cp.async (no registers held by loads in flight); QST1_4 and
// QST1_8 for the 4- and 8-bit kernels of one tile (4 for both: measured
// fastest at batch 1 and 8 on an H200), QST1 for both; QST_4 and QST_8
// for the kernels of more tiles (4 and 8: at 4 bits 4 measured 0.3-2.2%
// faster at 12-64 rows, at 8 bits 1.3-5.9% slower), QST for both. Powers
// of two (runtime/cuda qstDepth, GPTQTOOL_QMMA_QST, sizes the rings to
// match).
#ifdef QST
#define QST_4 QST
#define QST_8 QST
#endif
#ifndef QST_4
#define QST_4 4
#endif
#ifndef QST_8
#define QST_8 8
#endif
#ifdef QST1
#define QST1_4 QST1
#define QST1_8 QST1
#endif
#ifndef QST1_4
#define QST1_4 4
#endif
#ifndef QST1_8
#define QST1_8 4
#endif
#ifndef QPRO
#define QPRO -1
#endif
// QSTG: the wide kernels' depth (_g and _p; runtime/cuda defaultQSTWide,
// GPTQTOOL_QMMA_WIDE_QST).
#ifndef QSTG
#define QSTG 4
#endif
// QSTA, QSTR: the depth of the kernels of one tile that read attention's
// parts (_a: o_proj) and of those with the q/k/v epilogue (_r, _n_r;
// default for both that of the kernels of one tile; runtime/cuda
// GPTQTOOL_QMMA_AP_QST, GPTQTOOL_QMMA_ROPE_QST): a block of 8 splits holds
// its whole slice of 8 chunks a warp in flight before its wait at 8.
#ifndef QSTA
#define QSTA 0
#endif
#ifndef QSTR
#define QSTR 0
#endif
// QSTR8: the _r kernels' depth at 8 bits where QSTR sets none
// (runtime/cuda defaultQSTRoPE8).
#ifndef QSTR8
#define QSTR8 8
#endif
#define QST_OK(n) ((n) >= 2 && (n) <= 16 && ((n) & ((n) - 1)) == 0)
static_assert(QST_OK(QST_4) && QST_OK(QST_8) && QST_OK(QST1_4) && QST_OK(QST1_8) && QST_OK(QSTG) && (QSTA == 0 || QST_OK(QSTA)) &&
                  (QSTR == 0 || QST_OK(QSTR)) && QST_OK(QSTR8),
              "QST_4, QST_8, QST1_4, QST1_8, QSTG, QSTA, QSTR, QSTR8: 2, 4, 8 or 16 chunks");

// qtile: the weight tile (16 columns) of warp w of column slab s in a
// block of NW warps. Blocks of 8 warps, and the plain wide ones (the _p
// kernels, !GW), take NW tiles in a row. The wide GLU blocks (the _g
// kernels, GW: NW/2 gate and NW/2 up tiles of the same outputs) take
// output tiles p = s·NW/2 + w mod NW/2, whose gate tile is (p/4)·8 + p mod
// 4 in the runs of 64 and whose up tile follows it by 4, the gate tiles
// with warps 0 to NW/2-1: the block's sums then lie as an 8-warp block's
// do, gate's QC/2 columns then up's.
template <int NW, bool GW> __device__ __forceinline__ int qtile(int s, int w) {
    if constexpr (!GW) {
        return s * NW + w;
    } else {
        constexpr int H = NW / 2;
        const int p = s * H + w % H;
        return (p >> 2) * 8 + (w >= H ? 4 : 0) + (p & 3);
    }
}

// AL: gs is a multiple of the chunk (KB), so groups change between chunks
// only; otherwise they are checked at every step of 16 inputs. NW: the
// block's warps (8, 14 in the _g kernels, 16 in the _p ones); GW: the _g
// kernels' gate and up tiles (qtile).
template <int BITS, int MT, typename T, bool AL, bool NRM, bool WG = false, bool AP = false, int NW = 8, bool GW = false,
          bool RP = false, bool RM = false>
__device__ void qmma(T* __restrict__ out0, T* out1, T* out2, int seg1, int seg2, int glu, const T* res,
                     const T* __restrict__ x, const u32* __restrict__ qw, const u32* __restrict__ sz,
                     const int* __restrict__ perm, float* part, u32* count, int K, int N, int M, int gs, int cps,
                     int P, const int* __restrict__ oslots, int cl, int flags, const T* __restrict__ nw, float eps,
                     int nv8, const QRope<T> rp, const TMap* tmx, const QAttn ap = QAttn{}, const int* rmap = nullptr,
                     int rdiv = 1) {
    constexpr int SPC = BITS == 4 ? 4 : 2;  // 16-input steps a chunk
    constexpr int KB = 16 * SPC;
    constexpr float XS = xscale<T>::v;
    // Chunks in flight a warp (RP: a kernel with the q/k/v epilogue).
    constexpr int QD = NW != 8                         ? QSTG
                       : AP && QSTA                    ? QSTA
                       : RP && MT == 1 && !WG && QSTR  ? QSTR
                       : RP && MT == 1 && !WG && BITS == 8 ? QSTR8
                       : MT == 1                       ? (BITS == 4 ? QST1_4 : QST1_8)
                                                       : (BITS == 4 ? QST_4 : QST_8);
    static_assert(!WG || (MT > 1 && AL && !NRM), "the _w kernels: two or more tiles, groups of whole chunks");
    static_assert(!AP || (MT == 1 && !NRM && !WG), "the _a kernels: one tile");
    static_assert(NW == 8 || ((GW ? NW % 2 == 0 && NW <= 16 : NW == 16) && MT == 1 && !NRM && !WG && !AP),
                  "the _g and _p kernels: one tile, plain");
    static_assert(!GW || NW != 8, "GW: the _g kernels");
    static_assert(!RM || (MT == 1 && NW == 8 && !NRM && !WG && !AP && !RP), "RM: the _x kernels, of one tile, plain");
    // RM (the _x kernels): row m of the block's x is x's row rmap[m] /
    // rdiv, its output row rmap[m] (rmap in shared memory).
    auto xrow = [&](int m) { return x + (i64)(RM ? rmap[m] / rdiv : m) * K; };
    constexpr int QC = NW * 16;  // the block's columns
    extern __shared__ u32x4 smem_q[];
    TRACE_BEGIN(1);
    if (flags & QF_EARLY) pdl_launch();
    // QF_PUSH: this block's arrival, which its wait before its pushes
    // (after the loop) matches, so that every block of the cluster has
    // started before any writes another's shared memory.
    constexpr bool PUSH = QPUSH && MT == 1 && NW == 8 && !WG;
    if constexpr (PUSH) {
        if ((flags & QF_PUSH) && cl && gridDim.y > 1) cluster_arrive();
    }
    const int CK = K / KB;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int c0 = blockIdx.y * cps, c1 = imin(CK, c0 + cps), nc = c1 - c0;
    const int kbase = c0 * KB, LDX = P * KB + 8;
    const int slab = blockIdx.x;
    const int col0 = slab * QC;  // (the _g kernels: in the order of the block's sums, not the weight's)
    // (NW 8: the expressions as they were before qtile, which compile to
    // the same SASS as before under NVRTC 12.4.)
    const bool active = (NW == 8 ? slab * 8 + warp : qtile<NW, GW>(slab, warp)) * 16 < N;
    const int nt = NW == 8 ? (active ? slab * 8 + warp : slab * 8) : active ? qtile<NW, GW>(slab, warp) : qtile<NW, GW>(slab, 0);
    const u32 ring0 = smem_addr(smem_q) + (warp * QD * 32 + lane) * 16;  // this lane's slot 0; slots 512 B apart
    u16* xs = (u16*)(smem_q + NW * QD * 32);                             // [M][LDX] fp16, inputs in order
    float* tot = (float*)xs;                                               // [M][QC], after the loop
    // The _w kernels' x (wg_desc): 1,024-byte aligned, blocks of 64 inputs
    // for the 8·MT rows of the wgmma's B operand, JB bytes each.
    constexpr u32 JB = MT * 8 * 128;
    const u32 xsw = (smem_addr(xs) + 1023u) & ~1023u;
    // QF_TMA: the mbarrier x's copies complete on, and the parity of the
    // next phase's.
    __shared__ __align__(8) unsigned long long xbar, xfree;
    const bool tma = WG && (flags & QF_TMA);
    u32 xph = 0;
    // QF_MC2 / QF_MC4: the CX blocks of this one's cluster row, and the
    // parity of the next wait on xfree (thread 0's, after a first phase).
    const int CX = tma && (flags & QF_MC4) ? 4 : tma && (flags & QF_MC2) ? 2 : 1;
    u32 fph = 0;
    bool xused = false;
    if (WG && tma && threadIdx.x == 0) {
        bar_init(smem_addr(&xbar));
        if (CX > 1) bar_init(smem_addr(&xfree), CX);
    }
    // The other blocks' mbarriers must be made before this one's copies
    // reach them: arrive now, wait before the first phase.
    if (WG && CX > 1) cluster_arrive();

    const u32x4* src = (const u32x4*)qw + ((i64)nt * CK + c0) * 32 + lane;
    const u64 wpol = l2_policy(flags & QF_EVICT);
    // QPRO (a define, for measuring): only the ring's first QPRO chunks are
    // copied before the wait, the others once x is staged (default: all).
    constexpr int QP = QPRO < 0 || QPRO > QD ? QD : QPRO;
#pragma unroll
    for (int i = 0; i < QP; i++) {
        if (i < nc) cp_async16_pol(ring0 + i * 512, src + i * 32, wpol);
        asm volatile("cp.async.commit_group;");
    }
    src += QD * 32;
    // The scales, zeros and permutation are the model's too: the first
    // group's scale pairs and the permutation of this thread's first items
    // of x are in flight before the wait, and each group's scales are
    // fetched a group ahead (a load at the group's start would stall the
    // warp for a round trip to L2 at every group).
    const szw* szc = (const szw*)sz + nt * 16 + g;
    const int ngrp = (K + gs - 1) / gs;
    u32 q0, q1;  // the next group's (scale, 1024 + zero) pairs of rows g and g+8
    auto fetch = [&](int gi) {
        gi = imin(gi, ngrp - 1);
#if QG_SZ16
        if constexpr (WG) {
            szld(szc + (i64)gi * N, q0, q1);
            return;
        }
#endif
        q0 = __ldg(szc + (i64)gi * N), q1 = __ldg(szc + (i64)gi * N + 8);
    };
    fetch(kbase / gs);
    constexpr int IT = MT == 1 ? 2 : 4;  // x items a thread in flight; registers: one item is 8
    // Only kernels of one tile gather x through perm (more rows are
    // gathered once by a kernel of their own): the permutation of this
    // thread's first item is loaded now.
    int4 pre0, pre1;
    if (MT == 1 && !AP && perm && threadIdx.x < imin(P, nc) * (KB / 8)) {
        pre0 = __ldg((const int4*)(perm + kbase + threadIdx.x * 8));
        pre1 = __ldg((const int4*)(perm + kbase + threadIdx.x * 8 + 4));
    }
    // AP: each row's splits left in parts (0: combined in x), from the
    // positions (a step's inputs, written before it) before the wait;
    // apw, the splits' weights of each (row, head) (at most 4 rows, 64
    // heads and 8 splits: runtime/cuda apFits).
    __shared__ int aps[AP ? 4 : 1];
    __shared__ float apw[AP ? 4 : 1][AP ? 64 : 1][8];
    if constexpr (AP) {
        // (By the last warp: thread 0's trace mark then does not wait for
        // the load.)
        const int m = threadIdx.x - (blockDim.x - 32);
        if (m >= 0 && m < M) {
            const int S = pa_splits(ap.pos[m], ap.window, ap.sg, ap.minsplit, ap.dfr);
            aps[m] = S <= ap.dfr ? S : 0;
        }
    }
    // QE_PRE (kernels of one tile): what this thread's first item of the
    // epilogue (qout's item lo + threadIdx.x) reads of the step's inputs
    // and of the model, not of the previous kernel, is read now, before
    // the wait, and kept in shared memory (no register held through the
    // loop): with RoPE its pair's angle (sincos in double) and its row's
    // cache slot, with glu its output's slot. Only the first QPRE threads
    // (768 bytes; qmmaSharedReserve in runtime/cuda counts a block's
    // static arrays): one row's items of a slab are QC / 2 = 64 at
    // most (112 in the _g kernels, whose threads past QPRE read their
    // output's slot in the epilogue).
    // eshare: this block's share [lo, hi) of an epilogue of items items,
    // as the epilogue splits it (by rank among the S blocks of a slab that
    // add up their sums in a cluster; the whole slab otherwise).
    auto eshare = [&](int items, int& lo, int& hi) {
        const int S = gridDim.y, rk = S > 1 && cl ? (int)cluster_y() : 0, ns = S > 1 && cl ? S : 1;
        if constexpr (PUSH) {
            if (flags & QF_PUSH) {
                pshare(items, ns, rk, lo, hi);
                return;
            }
        }
        lo = rk * items / ns, hi = (rk + 1) * items / ns;
    };
    __shared__ float2 pre_cs[MT == 1 && QE_PRE ? QPRE : 1];
    __shared__ int pre_sl[MT == 1 && QE_PRE ? QPRE : 1];
    if (MT == 1 && (((QE_PRE & 1) && rp.kc) || ((QE_PRE & 2) && glu && oslots)) && threadIdx.x < QPRE) {
        int lo, hi;
        eshare(M * (QC / 2), lo, hi);
        const int i = lo + (int)threadIdx.x, m = i / (QC / 2), j = i % (QC / 2);
        if (i < hi && col0 < N) {
            if (rp.kc) {
                float cs = 0.0f, sn = 0.0f;
                if (col0 < seg2) rope_angle(rp.pos[m], rp.invf[j], cs, sn);
                pre_cs[threadIdx.x] = make_float2(cs, sn);
                pre_sl[threadIdx.x] = col0 >= seg1 ? rp.slot[m] : 0;
            } else if (QC == QCOLS ? col0 + j < N : col0 / 2 + j < N / 2) {
                pre_sl[threadIdx.x] = oslots[col0 / 2 + j];
            }
        }
    }
    // QA_FAST: the first phase's first item (stage's fetch: inputs
    // threadIdx.x + u·blockDim.x of row 0, their parts fpv and x fxv, their
    // heads fhk), this thread's first (row, head, split) of the weights
    // (fms; fmo its offset in part, -1 for none) and the residual's
    // prefetch (fres, null for none): the addresses and heads worked out
    // before the wait, the loads issued as it returns.
    constexpr bool AFAST = AP && QA_FAST;
    // (AP) the splits' (max, sum) table, and their outputs after it.
    const float* aptab = ap.part;
    const float* apout = ap.part + (i64)M * ap.hq * ap.sg * 2;
    float fpv[2][8], fxv[2];
    int fhk[2], fmo = -1;
    float2 fms = make_float2(NEG_INF, 0.0f);
    const T* fres = nullptr;
    if constexpr (AFAST) {
        __syncthreads();  // aps
        const int nin = imin(P, nc) * KB;
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int k = imin((int)threadIdx.x + u * (int)blockDim.x, nin - 1);
            fhk[u] = (perm ? __ldg(perm + kbase + k) : kbase + k) / ap.hd;
        }
        const int t = threadIdx.x, y = t & 7, m = imin((t >> 3) / ap.hq, M - 1), h = (t >> 3) - m * ap.hq;
        if (t < M * ap.hq * 8 && h < ap.hq && y < aps[m]) fmo = ((m * ap.hq + h) * ap.sg + y) * 2;
        if (res && !glu && !rp.kc) {
            int lo, hi;
            eshare(M * QC, lo, hi);
            const int e = lo + (int)threadIdx.x, n = col0 + e % QC;
            if (e < hi && n < N && n < seg1) fres = res + (i64)(e / QC) * seg1 + n;
        }
    }
    // The weights are the model's: only now wait for the previous kernel.
    pdl_wait();
    TRACE_MARK(1);
    if constexpr (AFAST) {
        // The first item's parts (fetch's loads, as stage would issue
        // them), the first weights' (max, sum), the residual's prefetch.
        const int sm = aps[0];
        const float* pm = apout + kbase;
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int k = imin((int)threadIdx.x + u * (int)blockDim.x, imin(P, nc) * KB - 1);
#pragma unroll
            for (int y = 0; y < 8; y++) fpv[u][y] = y < sm ? __ldcg(pm + k + (i64)y * K) : 0.0f;
            fxv[u] = sm == 0 ? to_f32(x[kbase + k]) : 0.0f;
        }
        if (fmo >= 0) fms = QA_PROBE_W ? make_float2(0.0f, 1.0f) : __ldcg((const float2*)(aptab + fmo));
        if (fres) prefetch_l1(fres);
#if defined(GPTQTOOL_TRACE) && TRACE_AT == 5
        // (GPTQTOOL_TRACE_AT=5: mark 2 once thread 0's first loads are
        // back, a branch on their values holding the mark until then.)
        if (__float_as_uint(fms.x) + __float_as_uint(fpv[0][0]) != 1u)
            TRACE_MARK(2);
#endif
    }
    // The residual this thread adds to its first output in the epilogue
    // (qout's plain path: one output tensor, res in its shape) goes to L1
    // now, so that the epilogue does not wait a round trip to L2 for it.
    if (!AFAST && res && !glu && !rp.kc) {
        int lo, hi;
        eshare(M * QC, lo, hi);
        const int e = lo + (int)threadIdx.x, n = col0 + e % QC;
        if (e < hi && n < N && n < seg1) prefetch_l1(res + (i64)(e / QC) * seg1 + n);
    }

    // NRM (kernels of one tile): x's rows are RMS-normalized as they are
    // staged, nw[k] the norm weight of sequential input k. The block sums
    // each row's squares as norm.cu's block of 256 threads does (nv8: its
    // 8-element form) - thread t adds items t, t+256, ... of the row, each
    // warp adds up its threads, then the warps' sums - term for term, so
    // that the staged values are the bits the norm kernel would have
    // written. Every thread walks the same M*cnt items (past the row's end
    // adding 0), four loads in flight.
    __shared__ float inv_rms[8], rms_red[8][8];
    if constexpr (NRM) {
        const int nper = nv8 ? K / 8 : K, cnt = (nper + 255) / 256, total = M * cnt;
        float acc = 0.0f;
        for (int b0 = 0; b0 < total; b0 += 4) {
            u32x4 raw[4];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int it = b0 + u, m = it / cnt, i = threadIdx.x + 256 * (it - m * cnt);
                raw[u] = u32x4{0u, 0u, 0u, 0u};
                if (it < total && i < nper) {
                    if (sizeof(T) == 2 && nv8) {
                        raw[u] = *(const u32x4*)(x + (i64)m * K + (i64)i * 8);
                    } else {
                        raw[u].a = __float_as_uint(to_f32(x[(i64)m * K + i]));
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int it = b0 + u;
                if (it >= total) break;
                if constexpr (sizeof(T) == 2) {
                    if (nv8) {
                        float f[8];
                        unpack8<T>(raw[u], f);
#pragma unroll
                        for (int j = 0; j < 8; j++) acc += f[j] * f[j];
                    } else {
                        const float v = __uint_as_float(raw[u].a);
                        acc += v * v;
                    }
                } else {
                    const float v = __uint_as_float(raw[u].a);
                    acc += v * v;
                }
                if ((it + 1) % cnt == 0) {
                    const float w = warp_sum(acc);
                    if (lane == 0) rms_red[it / cnt][warp] = w;
                    acc = 0.0f;
                }
            }
        }
        __syncthreads();
        if (warp < M) {
            const float w = warp_sum(lane < 8 ? rms_red[warp][lane] : 0.0f);
            if (lane == 0) inv_rms[warp] = 1.0f / sqrtf(w / (float)K + eps);
        }
        __syncthreads();
    }
    // normed8: x[m, k0..k0+7] (v) as the norm kernel would have written
    // them (rounded to T); one 16-byte load of the weights (k0 a multiple
    // of 8).
    auto normed8 = [&](int m, int k0, float* v) {
        float wv[8];
        load8<T>(nw + k0, wv);
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = to_f32(from_f32<T>(wv[j] * (v[j] * inv_rms[m])));
    };

    // Stage x for the chunks [ci, ci+P) of the slice in shared memory, in
    // input order (the main loop reads the B fragments with ldmatrix).
    // Without perm: (row, eight inputs) items spread over the block, IT a
    // thread in flight, one 16-byte load each. With perm: items of eight
    // inputs for all rows, whose permutation is loaded once (for the first
    // phase, before the wait) and whose rows are gathered IT items at a time.
    // packx: eight inputs as staged, fp16 times XS.
    auto packx = [&](const float* v) {
        return u32x4{pack2<f16>(v[0] * XS, v[1] * XS), pack2<f16>(v[2] * XS, v[3] * XS), pack2<f16>(v[4] * XS, v[5] * XS),
                     pack2<f16>(v[6] * XS, v[7] * XS)};
    };
    auto put = [&](int m, int k8, const float* v) { *(u32x4*)(xs + m * LDX + k8) = packx(v); };
    auto stage = [&](int ci) {
        const int kb0 = kbase + ci * KB, n8 = imin(P, nc - ci) * (KB / 8);
        if constexpr (WG) {
            if (tma) {
                // One thread copies the phase's blocks of 64 inputs
                // (whole boxes of 8·MT rows, zeros past M), JB bytes each.
                const int nb = (n8 * 8 + 63) / 64;
                const u32 bar = smem_addr(&xbar);
                if (threadIdx.x == 0 && CX > 1) {
                    // This block's share of the boxes, to its cluster row,
                    // once the row's blocks are done with the last phase.
                    bar_expect(bar, nb * JB);
                    if (xused) bar_wait_cluster(smem_addr(&xfree), fph), fph ^= 1;
                    xused = true;
                    const u32 cx = cluster_x(), cy = cluster_y();
                    u16 mask = 0;
                    for (int r = 0; r < CX; r++) mask |= (u16)(1u << cluster_rank_of(r, cy));
                    for (int j = cx; j < nb; j += CX) tma_x_mc(xsw + j * JB, tmx, kb0 + 64 * j, bar, mask);
                } else if (threadIdx.x == 0) {
#if defined(WG_XDIV) && WG_XDIV > 1
                    // A probe, not a product: only every WG_XDIV-th box
                    // is copied (what a multicast over WG_XDIV blocks
                    // would leave each to read); the others keep stale x.
                    int cnt = 0;
                    for (int j = 0; j < nb; j++) cnt += j % WG_XDIV == (int)(blockIdx.x % WG_XDIV);
                    bar_expect(bar, cnt * JB);
                    for (int j = 0; j < nb; j++)
                        if (j % WG_XDIV == (int)(blockIdx.x % WG_XDIV)) tma_x(xsw + j * JB, tmx, kb0 + 64 * j, bar);
#else
                    bar_expect(bar, nb * JB);
                    for (int j = 0; j < nb; j++) tma_x(xsw + j * JB, tmx, kb0 + 64 * j, bar);
#endif
                }
                bar_wait(bar, xph);
                xph ^= 1;
                return;
            }
            // The wgmma's B operand (wg_desc): blocks of 64 inputs JB
            // bytes apart, in each the rows' 128 bytes swizzled. Item e
            // is row m's 16-byte unit u: eight threads copy a row's 128
            // contiguous bytes and store them to 128 distinct bytes of
            // shared memory. Rows past M are not staged (the wgmma's
            // columns of them are discarded).
            for (int e = threadIdx.x; e < M * n8; e += blockDim.x) {
                const int m = e / n8, u = e - m * n8;
                const u32 dst = xsw + (u >> 3) * JB + m * 128 + (((u & 7) ^ (m & 7)) << 4);
                const T* src = x + (i64)m * K + kb0 + u * 8;
                if constexpr (XS == 1.0f) {
                    cp_async16(dst, src);
                } else {
                    float v[8];
                    load8<T>(src, v);
                    const u32x4 w = packx(v);
                    asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(dst), "r"(w.a), "r"(w.b), "r"(w.c), "r"(w.d)
                                 : "memory");
                }
            }
            asm volatile("cp.async.commit_group;\n\tcp.async.wait_all;" ::: "memory");
            // The wgmma reads shared memory through the async proxy.
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            return;
        }
        if constexpr (AP) {
            // Each (row, head)'s split weights exp(max_y - max) / sum, as
            // paged attention's own combine has them (split_weights), then
            // input k of row m (of head perm[k] / hd) is its splits'
            // outputs so weighed: consecutive threads take consecutive
            // inputs, two a thread with all their loads in flight. The
            // outputs do not depend on the weights: the first (inputs, row)
            // item's loads go out before the weights' (max, sum), so that
            // the staging waits one round trip to L2, not two.
            // aps (AFAST: before the wait; the _a kernels, of one tile,
            // stage once, so no later phase needs this barrier either).
            if (!AFAST) __syncthreads();
            const int nin = n8 * 8;
            const float* po = apout + kb0;
            float pv[2][8], xv[2];
            int hk[2];
            // fetch: row m's splits' outputs (and, for a row attention
            // combined, x) of inputs k0 and k0 + blockDim.x; heads: their
            // heads too.
            auto fetch = [&](int k0, int m, bool heads) {
                const int sm = aps[m];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const int k = imin(k0 + u * blockDim.x, nin - 1);
                    if (heads) hk[u] = (perm ? __ldg(perm + kb0 + k) : kb0 + k) / ap.hd;
                    const float* pm = po + (i64)m * ap.sg * K + k;
#pragma unroll
                    for (int y = 0; y < 8; y++) pv[u][y] = y < sm ? __ldcg(pm + (i64)y * K) : 0.0f;
                    xv[u] = sm == 0 ? to_f32(x[(i64)m * K + kb0 + k]) : 0.0f;
                }
            };
            if (AFAST && ci == 0) {
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    hk[u] = fhk[u], xv[u] = fxv[u];
#pragma unroll
                    for (int y = 0; y < 8; y++) pv[u][y] = fpv[u][y];
                }
            } else if (QA_HOIST) {
                fetch(threadIdx.x, 0, true);
            }
            // Eight threads a (row, head), one a split (neighbours read
            // neighbouring pairs, so that no line of part is asked for by
            // every thread of the grid at once).
            for (int t0 = 0; t0 < M * ap.hq * 8; t0 += blockDim.x) {
                const int t = t0 + threadIdx.x, y = t & 7, m = imin((t >> 3) / ap.hq, M - 1), h = (t >> 3) - m * ap.hq;
                const bool on = t < M * ap.hq * 8 && h < ap.hq;
                const int sm = aps[m];
                float2 v = make_float2(NEG_INF, 0.0f);
                if (AFAST && ci == 0 && t0 == 0)
                    v = fms;
                else if (on && y < sm)
                    v = __ldcg((const float2*)(aptab + ((i64)(m * ap.hq + h) * ap.sg + y) * 2));
                float mx = v.x;
                for (int o = 1; o < 8; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
                const float w = y < sm ? expf(v.x - mx) : 0.0f;
                float L = w * v.y;
                for (int o = 1; o < 8; o <<= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
                // (A row attention combined: weights of 0, which multiply 0s.)
                if (on) apw[m][h][y] = y < sm ? w / L : 0.0f;
            }
            __syncthreads();
            if (ci == 0) TRACE_MARK_AT(4, 2);  // (GPTQTOOL_TRACE_AT=4: the splits' weights staged)
            if (ci == 0) TRACE_MARK_AT(5, 3);  // (GPTQTOOL_TRACE_AT=5: the same, as mark 3)
#if defined(GPTQTOOL_TRACE) && TRACE_AT == 6
            // (GPTQTOOL_TRACE_AT=6, AFAST: mark 3 once the last warp's
            // first item's parts are back, a branch on their values after
            // the weights' barrier holding each warp's mark until then;
            // mark 2 is the default's, x staged.)
            if (AFAST && ci == 0 && (threadIdx.x & 31) == 0) {
                u32 b = 0;
#pragma unroll
                for (int u = 0; u < 2; u++)
#pragma unroll
                    for (int y = 0; y < 8; y++) b += __float_as_uint(pv[u][y]);
                if (b != 1u) trace_.mark_max(3);
            }
#endif
            for (int k0 = threadIdx.x; k0 < nin; k0 += 2 * blockDim.x) {
                for (int m = 0; m < M; m++) {
                    // (With QA_HOIST the first item's loads went out above.)
                    if (!QA_HOIST || k0 != (int)threadIdx.x || m != 0) fetch(k0, m, m == 0);
                    float v[2];
#pragma unroll
                    for (int u = 0; u < 2; u++) {
                        v[u] = xv[u];
#pragma unroll
                        for (int y = 0; y < 8; y++) v[u] += apw[m][hk[u]][y] * pv[u][y];
                    }
#pragma unroll
                    for (int u = 0; u < 2; u++) {
                        const int k = k0 + u * blockDim.x;
                        if (k < nin) xs[m * LDX + k] = (u16)(pack2<f16>(v[u] * XS, 0.0f) & 0xffffu);
                    }
                }
            }
            return;
        }
        if (MT == 1 && perm) {
            for (int e0 = threadIdx.x; e0 < n8; e0 += IT * blockDim.x) {
                int4 p[IT][2];
#pragma unroll
                for (int u = 0; u < IT; u++) {
                    const int e = e0 + u * blockDim.x;
                    if (e >= n8) break;
                    if (ci == 0 && e0 == threadIdx.x && u == 0) {
                        p[u][0] = pre0, p[u][1] = pre1;
                    } else {
                        p[u][0] = __ldg((const int4*)(perm + kb0 + e * 8));
                        p[u][1] = __ldg((const int4*)(perm + kb0 + e * 8 + 4));
                    }
                }
#pragma unroll 2
                for (int m = 0; m < M; m++) {
                    const T* xr = xrow(m);
                    float v[IT][8];
#pragma unroll
                    for (int u = 0; u < IT; u++) {
                        if (e0 + u * blockDim.x >= n8) break;
                        v[u][0] = to_f32(xr[p[u][0].x]), v[u][1] = to_f32(xr[p[u][0].y]);
                        v[u][2] = to_f32(xr[p[u][0].z]), v[u][3] = to_f32(xr[p[u][0].w]);
                        v[u][4] = to_f32(xr[p[u][1].x]), v[u][5] = to_f32(xr[p[u][1].y]);
                        v[u][6] = to_f32(xr[p[u][1].z]), v[u][7] = to_f32(xr[p[u][1].w]);
                    }
#pragma unroll
                    for (int u = 0; u < IT; u++) {
                        const int e = e0 + u * blockDim.x;
                        if (e >= n8) break;
                        if constexpr (NRM) normed8(m, kb0 + e * 8, v[u]);
                        put(m, e * 8, v[u]);
                    }
                }
            }
            return;
        }
        const int items = M * n8;
        if constexpr (XS == 1.0f) {
            if ((flags & QF_XASYNC) && !NRM && !RM) {
                // fp16 x goes to shared memory as it is, one 16-byte copy
                // an item, all in flight at once and held in no register;
                // the item's row and column step without a division.
                const int m0 = threadIdx.x / n8, dm = blockDim.x / n8, dr = blockDim.x - dm * n8;
                int r = threadIdx.x - m0 * n8;
                const T* src = x + (i64)m0 * K + kb0 + r * 8;
                u32 dst = smem_addr(xs + m0 * LDX + r * 8);
                const i64 step = (i64)dm * K + dr * 8, wrap = K - n8 * 8;
                const u32 sstep = (dm * LDX + dr * 8) * 2, swrap = (LDX - n8 * 8) * 2;
                for (int e = threadIdx.x; e < items; e += blockDim.x) {
                    cp_async16(dst, src);
                    src += step, dst += sstep, r += dr;
                    if (r >= n8) r -= n8, src += wrap, dst += swrap;
                }
                asm volatile("cp.async.commit_group;\n\tcp.async.wait_all;" ::: "memory");
                return;
            }
        }
        for (int e0 = threadIdx.x; e0 < items; e0 += IT * blockDim.x) {
            float v[IT][8];
#pragma unroll
            for (int u = 0; u < IT; u++) {
                const int e = e0 + u * blockDim.x;
                if (e >= items) break;
                const int m = e / n8, k = kb0 + (e - m * n8) * 8;
                load8<T>(xrow(m) + k, v[u]);
            }
#pragma unroll
            for (int u = 0; u < IT; u++) {
                const int e = e0 + u * blockDim.x;
                if (e >= items) break;
                const int m = e / n8;
                if constexpr (NRM) normed8(m, kb0 + (e - m * n8) * 8, v[u]);
                put(m, (e - m * n8) * 8, v[u]);
            }
        }
    };
    if (WG && CX > 1)
        cluster_wait();  // xbar and xfree initialized in every block of the cluster
    else if (tma)
        __syncthreads();  // xbar initialized
    stage(0);
    __syncthreads();
    if (!AP || (TRACE_AT != 4 && TRACE_AT != 5))
        TRACE_MARK(2);
    else if (TRACE_AT == 4)
        TRACE_MARK(3);  // (GPTQTOOL_TRACE_AT=4, _a: x staged, mark 2 the splits' weights)
    // QPRO: the rest of the ring, in chunk order, once x is staged (a
    // cp.async staging waits for every copy before its own).
#pragma unroll
    for (int i = QP; i < QD; i++) {
        if (i < nc) cp_async16_pol(ring0 + i * 512, src + (i - QD) * 32, wpol);
        asm volatile("cp.async.commit_group;");
    }

    // tmp sums the exact (code − zero)·x products of one group in fp32; at
    // the end of the group acc += scale·tmp.
    float acc[MT][4], tmp[MT][4];
#pragma unroll
    for (int bt = 0; bt < MT; bt++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[bt][e] = tmp[bt][e] = 0.0f;
    {
        u32 xb[MT];
#pragma unroll
        for (int bt = 0; bt < MT; bt++) xb[bt] = smem_addr(xs + imin(bt * 8 + (lane & 7), M - 1) * LDX + (lane >> 3) * 8);
        // The group of the first input, and how many chunks (AL) or steps
        // of it are left.
        int grp = kbase / gs;
        int left = AL ? (grp + 1) * (gs / KB) - c0 : (grp + 1) * (gs / 16) - c0 * SPC;
        const int glen = AL ? gs / KB : gs / 16;
        const u32 magic = 0x64006400u;  // fp16 1024, twice
        // Rows g and g+8 of the tile: their scales (fp32), 1024 + zero (fp16
        // pairs) and, for 4-bit codes taken as 1024 + 16c, -(64 + zero).
        float s0, s1;
        u32 zz0, zz1, nz1, hs0, hs1;  // hs: the fp16 scales twice (the _w kernels)
        auto load = [&]() {  // group grp's pairs from the prefetch; then fetch grp + 1's
            sz_group<BITS>(q0, q1, s0, s1, zz0, zz1, nz1);
            hs0 = (q0 & 0xffffu) * 0x10001u, hs1 = (q1 & 0xffffu) * 0x10001u;
            fetch(grp + 1);
        };
        // fold: a group's sums t into acc, times its scales (rows g and
        // g+8), in fp32.
        auto fold = [&](const float (&t)[MT][4]) {
#pragma unroll
            for (int bt = 0; bt < MT; bt++) {
                acc[bt][0] += s0 * t[bt][0], acc[bt][1] += s0 * t[bt][1];
                acc[bt][2] += s1 * t[bt][2], acc[bt][3] += s1 * t[bt][3];
            }
        };
        auto next = [&]() {
            fold(tmp);
#pragma unroll
            for (int bt = 0; bt < MT; bt++) tmp[bt][0] = tmp[bt][1] = tmp[bt][2] = tmp[bt][3] = 0.0f;
            grp++;
            left = glen;
            load();
        };
        load();
        // At iteration i, refill the slot read in iteration i-1 (its data is
        // in registers by now) with chunk i-1+QD; chunk i has landed once at
        // most QD-1 later groups are pending.
        // Unrolled QD deep so that the slots are constant offsets.
        const u32x4* refill = src - 64;  // chunk QD-2: advanced before each use
        int pleft = P;                    // chunks left in this phase of x
        u32 xoff = 0;                     // their offset in xs
        if constexpr (WG) {
            // Warpgroup MMA: the four warps of a warpgroup multiply their
            // column tiles (64 columns) by the staged x, whose fragments
            // no thread loads. Each chunk's A fragments are decoded (FS:
            // code − zero, exact; else scale·(code − zero) rounded to
            // fp16, as qdequant writes the weight), into one of two
            // register sets:
            // chunk i+1 is decoded while chunk i's wgmma run (wg_wait<1>
            // first retires chunk i-1's, which read that set). At
            // iteration i, slot i (read in iteration i-1) is refilled with
            // chunk i+QD; chunk i+1 has landed once at most QD-1 later
            // groups are pending.
            u32 a[2][SPC][4];
            constexpr bool FS = WG_FAST && MT <= WG_FS;
            // FS (WG_FS): the group's sums (the wgmma's accumulators),
            // added into acc times the group's scales (s0, s1) once its
            // last chunk's MMAs are retired (wg_wait<0> where a group
            // ends, instead of wg_wait<1>); ga0 the next MMA's scale-d (0
            // at a group's first chunk, which overwrites the sums).
            float gs_[MT][4];
            int ga0 = 0;
            if constexpr (FS) {
#pragma unroll
                for (int bt = 0; bt < MT; bt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) gs_[bt][e] = 0.0f;
            }
            // sc: code − zero as A holds it (FS: exact; else times the
            // group's fp16 scale hs, rounded once).
            auto sc = [&](u32 v, u32 hs) { return FS ? v : hmul2(v, hs); };
            auto decode = [&](const u32x4 w, u32 (&f)[SPC][4]) {
#pragma unroll
                for (int s = 0; s < SPC; s++) {
                    dq_step<BITS>(w, s, magic, zz0, zz1, nz1, f[s]);
                    f[s][0] = sc(f[s][0], hs0), f[s][1] = sc(f[s][1], hs1);
                    f[s][2] = sc(f[s][2], hs0), f[s][3] = sc(f[s][3], hs1);
                }
            };
            // take: the chunk in slot u, its group's scales current.
            auto take = [&](int u) {
                if (left == 0) {
                    grp++;
                    left = glen;
                    load();
                }
                left--;
                return lds128(ring0 + u * 512);
            };
            asm volatile("cp.async.wait_group %0;" ::"n"(QD - 1));
            decode(take(0), a[0]);
            refill = src - 32;  // chunk QD-1: advanced before each use
            u32 xd = wg_desc(xsw);  // the descriptor of this chunk's first k-step
            // restage: the next phase of x, from chunk i0 of the slice; the
            // wgmma reading this one are done first.
            auto restage = [&](int i0) {
                wg_wait<0>();
                wg_keep<MT>(acc);
                if constexpr (FS) wg_keep<MT>(gs_);
                __syncthreads();
                if (CX > 1 && threadIdx.x == 0) {
                    // This block is done with x: so are the row's others
                    // once all have arrived on each one's xfree.
                    const u32 cy = cluster_y();
                    for (int r = 0; r < CX; r++) bar_arrive_remote(cluster_addr(&xfree, cluster_rank_of(r, cy)));
                }
                stage(i0);
                __syncthreads();
                pleft = P, xd = wg_desc(xsw);
            };
#if WG_FAST
            // The loop runs in passes of QD chunks of three kinds, each an
            // unrolled copy of its own, so that the steady state checks
            // nothing per chunk that it knows for the whole pass: kind 0 is
            // a whole pass whose refills are all in the slice (i0 + 2·QD <=
            // nc), kind 1 the last whole pass (its refills predicated, and
            // its last chunk takes no next one where the slice ends with
            // it), kind 2 the last pass where it is partial (every check of
            // the plain loop, WG_FAST=0). x's phases change only at pass
            // starts (P is a multiple of QD, or the whole slice), so pleft
            // drops by QD a pass (at every pass start it holds what the
            // plain loop's count of chunks does there), and the descriptor
            // and the refill pointer advance once a pass, the chunks'
            // offsets from them constants.
            // A group change is cheap too. gl is the chunk, counted from the
            // pass start, that begins the next group, so that a chunk
            // compares it with a constant (take(0) left the rest of chunk
            // 0's group in left: the next group begins at chunk left + 1).
            // soff is the offset from szc of the pairs in q0 and q1,
            // min(grp + 1, ngrp − 1)·N as fetch clamps it, advanced a group
            // by adding N and clamped again by a min with the last group's
            // (a weight's scale pairs are fewer than 2^32, so that u32
            // offsets hold them); szb is szc through an asm copy, so that
            // the compiler makes the pairs' address one wide multiply-add
            // from it instead of redoing the column's index arithmetic.
            // The halves are doubled by byte permutations instead of
            // multiplies. The plain loop's grp and left are not used past
            // here (s0 and s1 only by the FS kernels, hs0 and hs1 by the
            // others).
            const u32 slast = (u32)(ngrp - 1) * (u32)N;
            u32 soff = (u32)imin(grp + 1, ngrp - 1) * (u32)N;
            const szw* szb;
            asm("mov.b64 %0, %1;" : "=l"(szb) : "l"(szc));
            int gl = left + 1;
            // The refill pointer is kept at the middle of the pass's refills
            // (chunk i0 + QD + QD/2), so that all of them are within the
            // immediate offsets of one base register.
            const u32x4* rmid = refill + (QD / 2 + 1) * 32;
            auto change = [&]() {  // load() for the group that begins at this chunk
                if constexpr (FS)
                    s0 = h_lo(q0), s1 = h_lo(q1);
                else
                    hs0 = __byte_perm(q0, 0u, 0x1010u), hs1 = __byte_perm(q1, 0u, 0x1010u);
#if QG_SZ16
                zz0 = zz1 = SZ_ZZ(BITS);
#else
                zz0 = __byte_perm(q0, 0u, 0x3232u), zz1 = __byte_perm(q1, 0u, 0x3232u);
#endif
                nz1 = hsub2(0x63806380u, zz1);  // 960 − (1024 + z)
                soff = min(soff + (u32)N, slast);
#if QG_SZ16
                szld(szb + soff, q0, q1);
#else
                q0 = __ldg(szb + soff), q1 = __ldg(szb + soff + 8);
#endif
                gl += glen;
            };
            // pass: the chunks from i0, of kind KD (above). At chunk u, slot
            // u (read at chunk u-1) is refilled with chunk i0+u+QD where
            // that is in the slice (u < rn), and chunk i0+u+1 is taken and
            // decoded while chunk u's wgmma run, as in the plain loop; its
            // group's scales are changed after wg_wait<1> rather than
            // before the load from the ring (registers and loads of sz
            // only: the same decode). With the change first, ptxas began
            // the decode before the wait, into further sets of A registers
            // (spills in the kernels of four tiles, serialized wgmma in
            // those of eight). The change is in a
            // while (it runs once: glen >= 1), not an if, because ptxas
            // keeps a loop as a branch where it would predicate the few
            // instructions of an if into every chunk.
            auto pass = [&](int i0, auto kind) {
                constexpr int KD = decltype(kind)::value;
                const int rn = nc - i0 - QD;
#pragma unroll
                for (int u = 0; u < QD; u++) {
                    if (KD == 2 && i0 + u >= nc) break;
                    wg_fence();
                    // Chunk u's inputs: block u of x (4 bits), or the half
                    // u % 2 of block u / 2's rows (8 bits: passes start at
                    // even chunks, as phases do).
                    const u32 xu = xd + (BITS == 4 ? u * (JB / 16) : (u >> 1) * (JB / 16) + (u & 1) * (64 / 16));
                    if constexpr (FS) {
#pragma unroll
                        for (int s = 0; s < SPC; s++) wg_mma<MT>(gs_, a[u & 1][s], xu + 2 * s, s == 0 ? ga0 : 1);
                        ga0 = 1;
                    } else {
#pragma unroll
                        for (int s = 0; s < SPC; s++) wg_mma<MT>(acc, a[u & 1][s], xu + 2 * s);  // 32 bytes a k-step
                    }
                    wg_commit();
                    if (KD == 0 || (KD == 1 ? u + 1 < QD || rn > 0 : i0 + u + 1 < nc)) {
                        if (KD == 0)
                            cp_async16_pol(ring0 + u * 512, rmid + (u - QD / 2) * 32, wpol);
                        else
                            cp_async16_if(ring0 + u * 512, rmid + (u - QD / 2) * 32, u < rn, wpol);
                        asm volatile("cp.async.commit_group;");
                        asm volatile("cp.async.wait_group %0;" ::"n"(QD - 1));
                        const u32x4 w = lds128(ring0 + ((u + 1) & (QD - 1)) * 512);
                        if constexpr (FS) {
                            // A group ends with chunk u: its sums once
                            // retired, then the next group's scales.
                            if (gl == u + 1) {
                                wg_wait<0>();
                                fold(gs_);  // (its MMAs retired)
                                change();
                                ga0 = 0;
                            } else {
                                wg_wait<1>();
                            }
                        } else {
                            wg_wait<1>();
                            while (gl == u + 1) change();
                        }
                        decode(w, a[(u + 1) & 1]);
                    }
                }
                xd += BITS == 4 ? QD * (JB / 16) : QD / 2 * (JB / 16);
                rmid += QD * 32;
                gl -= QD;
            };
            for (int i0 = 0; i0 < nc; i0 += QD) {
                if (pleft == 0) restage(i0);
                pleft -= QD;
                if (i0 + 2 * QD <= nc)
                    pass(i0, wg_pass<0>{});
                else if (i0 + QD <= nc)
                    pass(i0, wg_pass<1>{});
                else
                    pass(i0, wg_pass<2>{});
            }
            if constexpr (FS) {
                wg_wait<0>();
                fold(gs_);  // the last group's
            }
#else
            for (int i0 = 0; i0 < nc; i0 += QD) {
                if (pleft == 0) restage(i0);
#pragma unroll
                for (int u = 0; u < QD; u++) {
                    const int i = i0 + u;
                    if (i >= nc) break;
                    wg_fence();
#pragma unroll
                    for (int s = 0; s < SPC; s++) wg_mma<MT>(acc, a[u & 1][s], xd + 2 * s);  // 32 bytes a k-step
                    wg_commit();
                    pleft--;
                    // The next chunk's inputs: the next block of x (4 bits), or
                    // the second half of this block's rows, then the next
                    // block (8 bits: phases start at even u).
                    xd += BITS == 4 ? JB / 16 : (u & 1) ? (JB - 64) / 16 : 64 / 16;
                    if (i + 1 < nc) {
                        refill += 32;
                        cp_async16_if(ring0 + u * 512, refill, i + QD < nc, wpol);
                        asm volatile("cp.async.commit_group;");
                        asm volatile("cp.async.wait_group %0;" ::"n"(QD - 1));
                        const u32x4 w = take((u + 1) & (QD - 1));
                        wg_wait<1>();
                        decode(w, a[(u + 1) & 1]);
                    }
                }
            }
#endif
            wg_wait<0>();
            wg_keep<MT>(acc);
        } else
        for (int i0 = 0; i0 < nc; i0 += QD) {
            if (MT > 1 && pleft == 0) {  // the next phase of x (P is a multiple of QD)
                __syncthreads();
                stage(i0);
                __syncthreads();
                pleft = P, xoff = 0;
            }
#pragma unroll
            for (int u = 0; u < QD; u++) {
                const int i = i0 + u;
                if (i >= nc) break;
                refill += 32;
                cp_async16_if(ring0 + ((u - 1) & (QD - 1)) * 512, refill, i > 0 && i - 1 + QD < nc, wpol);
                asm volatile("cp.async.commit_group;");
                asm volatile("cp.async.wait_group %0;" ::"n"(QD - 1));
                const u32x4 w = lds128(ring0 + u * 512);
                u32x4 bf[MT][SPC / 2];
#pragma unroll
                for (int bt = 0; bt < MT; bt++)
#pragma unroll
                    for (int q = 0; q < SPC / 2; q++) bf[bt][q] = ldsm4(xb[bt] + xoff + 64 * q);
                pleft--, xoff += KB * 2;
                // (QG_SZ16 at 8 bits: the group change in a while, which
                // runs once, so that ptxas keeps it a branch: without the
                // zeros to load it predicated the change into every chunk.)
#if QG_SZ16
#define QG_CHANGE()                           \
    if constexpr (BITS == 8) {                \
        while (left == 0) next();             \
    } else {                                  \
        if (left == 0) next();                \
    }
#else
#define QG_CHANGE() \
    if (left == 0) next();
#endif
                if (AL) {
                    QG_CHANGE()
                    left--;
                }
#pragma unroll
                for (int s = 0; s < SPC; s++) {
                    if (!AL) {
                        QG_CHANGE()
                        left--;
                    }
                    u32 a[4];
                    dq_step<BITS>(w, s, magic, zz0, zz1, nz1, a);
#pragma unroll
                    for (int bt = 0; bt < MT; bt++) {
                        const u32x4 v = bf[bt][s / 2];
                        mma16816<f16>(tmp[bt], a, (s & 1) ? v.c : v.a, (s & 1) ? v.d : v.b);
                    }
                }
            }
        }
        if constexpr (!WG) fold(tmp);
    }
    TRACE_MARK_AT(0, 3);
    asm volatile("cp.async.wait_group 0;");
    if (!(flags & (QF_EARLY | QF_LATE))) pdl_launch();  // the next kernel may start its prologue now

    // Fragment element e of tile bt: column n = nt*16 + g (+8 for e >= 2),
    // row m = bt*8 + 2t (+1 for odd e).
    const int S = gridDim.y;
    const int W = glu || rp.kc ? QC / 2 : QC, items = M * W;
    __syncthreads();  // tot reuses x's space
    TRACE_MARK_AT(1, 3);  // (GPTQTOOL_TRACE_AT=1: the loop's mark once every warp's loop is done)
    if (S == 1 || cl) {
        if (active)
#pragma unroll
            for (int bt = 0; bt < MT; bt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int m = bt * 8 + 2 * t + (e & 1);
                    if (m < M) tot[m * QC + warp * 16 + g + (e >> 1) * 8] = acc[bt][e] / XS;
                }
        if (S > 1) {
            if constexpr (PUSH) {
                if (flags & QF_PUSH) {
                    // Each block of the slab gets, from every block, only
                    // the sums of its own share of the outputs (pshare:
                    // quads of 4 items, which lie in one row since W is a
                    // multiple of 4), 16 bytes a store: a quad's one float4
                    // (plain) or two (glu and RoPE items: columns j and
                    // W + j). One barrier releases them and acquires the
                    // others'; each block then adds up its own slots.
                    float4* recv = (float4*)((char*)xs + imax(M * LDX * 2, M * QC * 4));
                    const int P2 = W == QC ? 1 : 2, q4 = items / 4, cap = (q4 + S - 1) / S * P2;
                    const u32 rank = cluster_y(), cx = cluster_x();
                    __syncthreads();  // tot is whole
                    cluster_wait();   // (the arrival made as the block started)
                    TRACE_MARK_AT(7, 2);  // (GPTQTOOL_TRACE_AT=7: every warp's sums in tot)
                    for (int i = threadIdx.x; i < q4 * P2; i += blockDim.x) {
                        const int q = P2 == 1 ? i : i >> 1, h = P2 == 1 ? 0 : i & 1;
                        const int r = ((q + 1) * S - 1) / q4;  // the quad's block: pshare's r * q4 / S <= q
                        const int it = 4 * q, m = it / W, j = it - m * W;
                        st_cluster4(cluster_addr(recv + rank * cap + (q - r * q4 / S) * P2 + h, cluster_rank_of(cx, r)),
                                    *(const float4*)(tot + m * QC + h * W + j));
                    }
                    cluster_sync();
                    TRACE_MARK_AT(7, 3);  // (GPTQTOOL_TRACE_AT=7: the slab's pushes received)
                    int lo, hi;
                    pshare(items, S, rank, lo, hi);
                    const float* rf = (const float*)recv;
                    qout<T, 1, QC>(
                        [&](int e) {
                            const int m = e / QC, c = e - m * QC, h = c >= W ? 1 : 0, d = m * W + c - h * W - lo;
                            const int off = (d & ~3) * P2 + h * 4 + (d & 3);
                            float v = 0.0f;
#pragma unroll
                            for (int r = 0; r < 8; r++)
                                if (r < S) v += rf[r * cap * 4 + off];
                            return v;
                        },
                        lo, hi, out0, out1, out2, res, seg1, seg2, glu, col0, N, oslots, rp,
                        (QE_PRE & 1) ? pre_cs : nullptr, QE_PRE ? pre_sl : nullptr, RM ? rmap : nullptr);
                    return;
                }
            }
            // The S blocks of the slab are one cluster: each adds up its
            // share of the outputs from all of their sums, in rank order.
            TRACE_MARK_AT(7, 2);  // (GPTQTOOL_TRACE_AT=7: thread 0's sums in tot)
            cluster_sync();
            TRACE_MARK_AT(7, 3);  // (GPTQTOOL_TRACE_AT=7: every block's sums in tot)
            // (This block's rank in its slab is its place along y.)
            const u32 rank = cluster_y(), cx = cluster_x();
            u32 base[8];  // tot in each block of the slab (S <= 8)
#pragma unroll
            for (int r = 0; r < 8; r++) base[r] = r < S ? cluster_addr(tot, cluster_rank_of(cx, r)) : 0;
            qout<T, MT == 1 ? 1 : 4, QC>(
                [&](int e) {
                    float v = 0.0f;
#pragma unroll
                    for (int r = 0; r < 8; r++)
                        if (r < S) v += ld_cluster(base[r] + 4 * e);
                    return v;
                },
                rank * items / S, (rank + 1) * items / S, out0, out1, out2, res, seg1, seg2, glu, col0, N, oslots, rp,
                MT == 1 && (QE_PRE & 1) ? pre_cs : nullptr, MT == 1 && QE_PRE ? pre_sl : nullptr, RM ? rmap : nullptr);
            cluster_sync_relaxed();  // the others may still read this block's sums
            return;
        }
    } else {
        if (active)
#pragma unroll
            for (int bt = 0; bt < MT; bt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int m = bt * 8 + 2 * t + (e & 1), n = nt * 16 + g + (e >> 1) * 8;
                    if (m < M) part[((i64)blockIdx.y * M + m) * N + n] = acc[bt][e] / XS;
                }
        if (NW == 16 && !GW && (flags & QF_PARTS)) return;
        __threadfence();
        __syncthreads();
        __shared__ int last;
        if (threadIdx.x == 0) last = atomicAdd(count + blockIdx.x, 1u) == (u32)(S - 1);
        __syncthreads();
        if (!last) return;
        __threadfence();
        for (int e = threadIdx.x; e < M * QC; e += blockDim.x) {
            const int m = e / QC, vc = e % QC, n = NW == 8 ? col0 + vc : qtile<NW, GW>(slab, vc >> 4) * 16 + (vc & 15);
            float v = 0.0f;
            if (n < N)
                for (int y = 0; y < S; y++) v += __ldcg(part + ((i64)y * M + m) * N + n);
            tot[e] = v;
        }
        if (threadIdx.x == 0) count[blockIdx.x] = 0;
    }
    __syncthreads();
    qout<T, MT == 1 ? 1 : 4, QC>([&](int e) { return tot[e]; }, 0, items, out0, out1, out2, res, seg1, seg2, glu, col0, N, oslots, rp,
                             MT == 1 && (QE_PRE & 1) ? pre_cs : nullptr, MT == 1 && QE_PRE ? pre_sl : nullptr,
                             RM ? rmap : nullptr);
}

template <int BITS, typename T>
__device__ void qdequant(T* __restrict__ w, const u32* __restrict__ qw, const u32* __restrict__ sz, int K, int N, int gs) {
    constexpr int SPC = BITS == 4 ? 4 : 2, KB = 16 * SPC, TK = 8 * KB;
    constexpr u32 CODE = (1u << BITS) - 1;
    __shared__ T tile[16][TK + 8];
    const int CK = K / KB, nt = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kc = blockIdx.y * 8 + warp, kbase = blockIdx.y * TK, kn = imin(TK, K - kbase);
    if (kc < CK) {
        const u32x4 v = ldg_u32x4(qw + (((i64)nt * CK + kc) * 32 + lane) * 4);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const u32 wd = word_of(v, j);
            const int s = BITS == 4 ? j : j / 2;
#pragma unroll
            for (int i = 0; i < (BITS == 4 ? 4 : 2); i++) {
                // 4 bits: pair i at bits 4i / 4i+16; 8 bits: pair i of this
                // word at bytes i / i+2, pairs (0,1) or (2,3) of the step.
                const int pi = BITS == 4 ? i : (j & 1) * 2 + i;
                const int r = g + 8 * (pi & 1), c = warp * KB + s * 16 + 2 * t + 8 * (pi >> 1);
                const int n = nt * 16 + r, grp = (kbase + c) / gs;
#if QG_SZ16  // (the backend's dequantize path reads the pairs: this build is not launched)
                const float sc = h_lo(((const szw*)sz)[(i64)grp * N + n]), z = (float)(1 << (BITS - 1));
#else
                const u32 p = sz[(i64)grp * N + n];
                const float sc = h_lo(p), z = h_lo(p >> 16) - 1024.0f;
#endif
                const int sh = BITS * i;
                tile[r][c] = from_f32<T>(sc * ((float)((wd >> sh) & CODE) - z));
                tile[r][c + 1] = from_f32<T>(sc * ((float)((wd >> (sh + 16)) & CODE) - z));
            }
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < 16 * kn; e += blockDim.x) {
        const int r = e / kn, c = e % kn;
        w[(i64)(nt * 16 + r) * K + kbase + c] = tile[r][c];
    }
}

template <typename T>
__device__ void glu_rows(T* __restrict__ dst, const T* __restrict__ src, int M, int N, const int* __restrict__ oslots) {
    const int No = N / 2;
    for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < (i64)M * No; t += (i64)gridDim.x * blockDim.x) {
        const i64 m = t / No;
        const int j = (int)(t % No), c = (j / (QCOLS / 2)) * QCOLS + j % (QCOLS / 2);
        dst[m * No + (oslots ? oslots[j] : j)] = from_f32<T>(silu_f(to_f32(src[m * N + c])) * to_f32(src[m * N + c + QCOLS / 2]));
    }
}

template <typename T>
__device__ void gather_cols(T* __restrict__ dst, const T* __restrict__ x, const int* __restrict__ perm, int M, int K) {
    pdl_launch();
    pdl_wait();
    for (i64 t = blockIdx.x * (i64)blockDim.x + threadIdx.x; t < (i64)M * K; t += (i64)gridDim.x * blockDim.x) {
        i64 m = t / K;
        dst[t] = x[m * K + perm[t % K]];
    }
}

// Registers: a kernel of one tile keeps to 64 (four blocks an SM, so that a
// gate/up product's blocks fit in one wave), the others to 128 (two blocks
// an SM: one more register than 128 halves their occupancy). Kernels of one
// tile also come normalizing x (_n: NRM, nw not null), and kernels whose
// groups are whole chunks also with the q/k/v epilogue's RoPE and cache
// store (_r: ROPE), each a kernel of its own so that the plain ones compile
// as if neither existed.
#define QMMA(BITS, MT, T, NAME, AL, SUF, NRM, ROPE, WG, AP)                                                       \
    extern "C" __global__ void __launch_bounds__(256, MT == 1 ? 4 : 2) qmma##BITS##_t##MT##SUF##_##NAME(          \
        T* out0, T* out1, T* out2, int seg1, int seg2, int glu, const T* res, const T* x, const u32* qw,             \
        const u32* sz, const int* perm, float* part, u32* count, int K, int N, int M, int gs, int cps, int P,         \
        const int* oslots, int cl, int flags, const T* nw, float eps, int nv8, const int* pos, const int* slot,      \
        const float* invf, T* kc, T* vc QMMA_TMAP_##WG QMMA_AP_##AP) {                                              \
        qmma<BITS, MT, T, AL, NRM, WG, AP, 8, false, ROPE>(out0, out1, out2, seg1, seg2, glu, res, x, qw, sz, perm,    \
                                                       part, count, K, N, M, gs, cps, P, oslots, cl, flags, nw, eps, \
                                                       nv8, ROPE ? QRope<T>{pos, slot, invf, kc, vc} : QRope<T>{},    \
                                                       QMMA_TMARG_##WG QMMA_APARG_##AP);                              \
    }
// The _w kernels' last parameter: x's tensor map (QF_TMA).
#define QMMA_TMAP_true , const __grid_constant__ TMap tmx
#define QMMA_TMAP_false
#define QMMA_TMARG_true &tmx
#define QMMA_TMARG_false nullptr
// The _a kernels' last parameters: the attention's parts (QAttn).
#define QMMA_AP_true , const float* apart, const int* apos, int asg, int ahq, int ahd, int awin, int amin, int adfr
#define QMMA_AP_false
#define QMMA_APARG_true , QAttn{apart, apos, asg, ahq, ahd, awin, amin, adfr}
#define QMMA_APARG_false

#define QMMA_A(BITS, MT, T, NAME)                                                                               \
    QMMA(BITS, MT, T, NAME, true, , false, false, false, false)                                                   \
    QMMA(BITS, MT, T, NAME, false, _sg, false, false, false, false)                                               \
    QMMA(BITS, MT, T, NAME, true, _r, false, true, false, false)
// The wide kernels of one tile: GLU (_g, 14 warps, two blocks an SM) and
// plain (_p, 16 warps, 256 columns, one block an SM: runtime/cuda sizes its
// shared memory so).
#define QMMA_WIDE(BITS, T, NAME, SUF, THREADS, MINB, NW, GW)                                                       \
    extern "C" __global__ void __launch_bounds__(THREADS, MINB) qmma##BITS##_t1##SUF##_##NAME(                      \
        T* out0, T* out1, T* out2, int seg1, int seg2, int glu, const T* res, const T* x, const u32* qw,             \
        const u32* sz, const int* perm, float* part, u32* count, int K, int N, int M, int gs, int cps, int P,         \
        const int* oslots, int cl, int flags, const T* nw, float eps, int nv8, const int* pos, const int* slot,      \
        const float* invf, T* kc, T* vc) {                                                                           \
        qmma<BITS, 1, T, true, false, false, false, NW, GW>(out0, out1, out2, seg1, seg2, glu, res, x, qw, sz, perm,   \
                                                          part, count, K, N, M, gs, cps, P, oslots, cl, flags, nw, eps, \
                                                          nv8, QRope<T>{}, nullptr);                                    \
    }
#define QMMA_G(BITS, T, NAME) QMMA_WIDE(BITS, T, NAME, _g, 448, 2, 14, true)
#define QMMA_P(BITS, T, NAME) QMMA_WIDE(BITS, T, NAME, _p, 512, 1, 16, false)
// The kernel of one tile that reads paged attention's parts (_a).
#define QMMA_AP(BITS, T, NAME) QMMA(BITS, 1, T, NAME, true, _a, false, false, false, true)
// The experts' kernels of one tile (_e, runtime/cuda ExpertMatMul): the
// plain kernel once for each slot of a mixture-of-experts layer and each of
// one or two products of the same x (the experts' gate and up), the grid's
// z the slots in order's order (a run of one expert's slots together, so
// that its weights are read back to back), then again for the second
// product (z >= slots: ex2 and out2): the slot's expert's codes, scales and
// permutation from ex[ids[slot]] (expert 0 for a slot of none, -1), its
// input row x[slot / div], its output row out[slot], and its own stretch
// (z's) of part and count. ids and order are made by the kernel before
// (moe.cu), so the block waits before it reads them: its weights' copies
// start only then.
struct QExp {
    const u32* qw;
    const u32* sz;
    const int* perm;
};
#define QMMA_E1(BITS, T, NAME, AL, SUF)                                                                             \
    extern "C" __global__ void __launch_bounds__(256, 4) qmma##BITS##_t1##SUF##_e_##NAME(                          \
        T* out, T* out2, const T* x, const QExp* ex, const QExp* ex2, const int* ids, const int* order, int slots,    \
        int div, float* part, u32* count, int K, int N, int gs, int cps, int P, int cl, int flags) {                  \
        pdl_wait();                                                                                                   \
        const bool second = (int)blockIdx.z >= slots;                                                                 \
        const int s = order[blockIdx.z - (second ? slots : 0)], e = imax(ids[s], 0);                                  \
        const QExp w = (second ? ex2 : ex)[e];                                                                        \
        if (second) out = out2;                                                                                       \
        qmma<BITS, 1, T, AL, false>(out + (i64)s * N, nullptr, nullptr, N, N, 0, nullptr, x + (i64)(s / div) * K,     \
                                    w.qw, w.sz, w.perm, part ? part + (i64)blockIdx.z * gridDim.y * N : nullptr,       \
                                    count ? count + (i64)blockIdx.z * gridDim.x : nullptr, K, N, 1, gs, cps, P,        \
                                    nullptr, cl, flags, nullptr, 0.0f, 0, QRope<T>{}, nullptr);                       \
    }
#define QMMA_E(BITS, T, NAME) \
    QMMA_E1(BITS, T, NAME, true, ) QMMA_E1(BITS, T, NAME, false, _sg) QMMA_X1(BITS, T, NAME, true, ) QMMA_X1(BITS, T, NAME, false, _sg)
// The experts' kernels of runs (_x, runtime/cuda ExpertMatMul): the
// kernel of one tile once for each run of order (moe.cu: up to 8 slots of
// one expert, runtime.ExpertOrder) and each of one or two products, the
// grid's z the runs (zper a product; the first product's, then the
// second's, z >= zper: ex2 and out2), so that an expert's weights are read
// once a run instead of once a slot: its rows x[slot / div], its outputs
// out[slot], its own stretch of part (8 rows) and count. A block past the
// last run (order's -1) leaves at once. QX_RUN: runtime.ExpertRun, moe.cu's
// MOE_RUN (the rows of one tile).
#define QX_RUN 8
#define QMMA_X1(BITS, T, NAME, AL, SUF)                                                                             \
    extern "C" __global__ void __launch_bounds__(256, 4) qmma##BITS##_t1##SUF##_x_##NAME(                          \
        T* out, T* out2, const T* x, const QExp* ex, const QExp* ex2, const int* order, int slots, int zper,         \
        int div, float* part, u32* count, int K, int N, int gs, int cps, int P, int cl, int flags) {                  \
        __shared__ int rmap[QX_RUN];                                                                                  \
        pdl_wait();                                                                                                   \
        const bool second = (int)blockIdx.z >= zper;                                                                  \
        const int run = order[slots + blockIdx.z - (second ? zper : 0)];                                              \
        if (run < 0) return;                                                                                          \
        const int start = run & 2047, M = (run >> 11) & 15;                                                           \
        const QExp w = (second ? ex2 : ex)[run >> 15];                                                                \
        if ((int)threadIdx.x < M) rmap[threadIdx.x] = order[start + threadIdx.x];                                     \
        __syncthreads();                                                                                              \
        qmma<BITS, 1, T, AL, false, false, false, 8, false, false, true>(                                             \
            second ? out2 : out, nullptr, nullptr, N, N, 0, nullptr, x, w.qw, w.sz, w.perm,                           \
            part ? part + (i64)blockIdx.z * gridDim.y * QX_RUN * N : nullptr, count ? count + (i64)blockIdx.z * gridDim.x : nullptr, \
            K, N, M, gs, cps, P, nullptr, cl, flags, nullptr, 0.0f, 0, QRope<T>{}, nullptr, QAttn{}, rmap, div);         \
    }
// The warpgroup-MMA kernels (_w, _w_r), two to eight tiles with groups of
// whole chunks: parts of their own (QG_WG=1 and 2), compiled for sm_90a.
#define QMMA_W(BITS, MT, T, NAME) \
    QMMA(BITS, MT, T, NAME, true, _w, false, false, true, false) QMMA(BITS, MT, T, NAME, true, _w_r, false, true, true, false)
#define QMMA_N(BITS, T, NAME)                                                                                  \
    QMMA(BITS, 1, T, NAME, true, _n, true, false, false, false)                                                  \
    QMMA(BITS, 1, T, NAME, false, _sg_n, true, false, false, false) QMMA(BITS, 1, T, NAME, true, _n_r, true, true, false, false)
// Parts (kernels.Module): QG_BITS=4|8 with KDT and QG_NRM=0 is one bit
// width and dtype's products and qdequant, QG_NRM=1 its products that
// normalize x; QG_WG=1 (with QG_BITS and KDT, for sm_90a) its _w kernels
// of two to four tiles, QG_WG=2 those of five to eight (two parts, so that
// a first run compiles them at once); QG_BITS=0 glu_rows and gather_cols;
// no QG_BITS, everything but the _w kernels.
#if defined(QG_WG) && QG_WG == 1
#define QMMA_T(BITS, T, NAME) QMMA_W(BITS, 2, T, NAME) QMMA_W(BITS, 3, T, NAME) QMMA_W(BITS, 4, T, NAME)
#elif defined(QG_WG) && QG_WG == 2
#define QMMA_T(BITS, T, NAME)                                                                                  \
    QMMA_W(BITS, 5, T, NAME) QMMA_W(BITS, 6, T, NAME) QMMA_W(BITS, 7, T, NAME) QMMA_W(BITS, 8, T, NAME)
#elif !defined(QG_NRM)
#define QMMA_T(BITS, T, NAME)                                                                                    \
    QMMA_A(BITS, 1, T, NAME) QMMA_AP(BITS, T, NAME) QMMA_G(BITS, T, NAME) QMMA_P(BITS, T, NAME)                   \
    QMMA_N(BITS, T, NAME) QMMA_A(BITS, 2, T, NAME) QMMA_A(BITS, 4, T, NAME) QMMA_E(BITS, T, NAME)
#elif QG_NRM
#define QMMA_T(BITS, T, NAME) QMMA_N(BITS, T, NAME)
#else
#define QMMA_T(BITS, T, NAME)                                                                      \
    QMMA_A(BITS, 1, T, NAME) QMMA_AP(BITS, T, NAME) QMMA_G(BITS, T, NAME) QMMA_P(BITS, T, NAME) \
    QMMA_A(BITS, 2, T, NAME) QMMA_A(BITS, 4, T, NAME) QMMA_E(BITS, T, NAME)
#endif

#define QMMA_4(NAME, T) QMMA_T(4, T, NAME)
#define QMMA_8(NAME, T) QMMA_T(8, T, NAME)

#define QDEQUANT(BITS, T, NAME)                                                                             \
    extern "C" __global__ void qdequant##BITS##_##NAME(T* w, const u32* qw, const u32* sz, int K, int N, int gs) { \
        qdequant<BITS, T>(w, qw, sz, K, N, gs);                                                                   \
    }

#define QDEQUANT_4(NAME, T) QDEQUANT(4, T, NAME)
#define QDEQUANT_8(NAME, T) QDEQUANT(8, T, NAME)

#if !defined(QG_BITS) || QG_BITS == 4
FOR_DTYPES(QMMA_4)
#if (!defined(QG_NRM) || !QG_NRM) && !(defined(QG_WG) && QG_WG)
FOR_DTYPES(QDEQUANT_4)
#endif
#endif
#if !defined(QG_BITS) || QG_BITS == 8
FOR_DTYPES(QMMA_8)
#if (!defined(QG_NRM) || !QG_NRM) && !(defined(QG_WG) && QG_WG)
FOR_DTYPES(QDEQUANT_8)
#endif
#endif

#define GATHER(T, NAME)                                                                                   \
    extern "C" __global__ void gather_cols_##NAME(T* dst, const T* x, const int* perm, int M, int K) { \
        gather_cols<T>(dst, x, perm, M, K);                                                            \
    }

#define GLU_ROWS(T, NAME)                                                                   \
    extern "C" __global__ void glu_rows_##NAME(T* dst, const T* src, int M, int N, const int* oslots) { \
        glu_rows<T>(dst, src, M, N, oslots);                                                                \
    }

#define GLU_ROWS_N(NAME, T) GLU_ROWS(T, NAME)
#define GATHER_N(NAME, T) GATHER(T, NAME)
#if !defined(QG_BITS) || QG_BITS == 0
FOR_DTYPES(GLU_ROWS_N)
FOR_DTYPES(GATHER_N)
#endif
