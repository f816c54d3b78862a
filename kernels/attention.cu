// attention.cu: causal softmax attention with grouped KV heads and an
// optional sliding window (runtime.Backend.Attention).
//
// q [nq, hq*hd] (row t at position pos0+t), k and v [>= pos0+nq, hkv*hd],
// out [nq, hq*hd], all row-major; query head h reads KV head h/(hq/hkv).
// Key j is visible to the query at position i when j <= i and, with
// window > 0, j > i - window (transformers masks j <= i - sliding_window).
//
// attn_generic_T(..., window, scale, cap): any dtype and head size (hd <=
// 512), fp32 math, one warp per (query row, head), online softmax over the
// visible keys; with cap > 0 each scaled score s is soft-capped first,
// cap·tanh(s/cap) (runtime.AttentionParams.Softcap). Grid: one 256-thread
// block per 8 (row, head) pairs.
//
// flash_T_d<HD> (T = f16/bf16, HD = 64 or 128): FlashAttention-2 style on
// tensor cores (mma.sync m16n8k16, fp32 accumulation). Grid (ceil(nq/128),
// hq), 256 threads: each of the 8 warps owns 16 query rows; key tiles of 64
// rows of K and V are staged in shared memory, two tiles deep: cp.async
// fetches tile i+1 while tile i is used (4*64*(HD+8) elements of dynamic
// shared memory). K and V fragments come from shared memory with ldmatrix
// (.trans for V). S = QKᵀ and O += PV run from registers, P is rounded to
// T for the second product. Scores are kept in the log2 domain
// (scale_log2 = scale·log2 e); with cap_in > 0 a score s (unscaled) is
// soft-capped instead, cap_out·tanh(s·cap_in) with cap_in = scale/cap and
// cap_out = cap·log2 e. Nothing of size nq×nq is ever materialised.
// (A first version with one stage, synchronous loads and scalar V reads ran
// at 113 TFLOP/s against this one's 158 on an H200: docs/benchmarks.md.)

#define ATTN_GENERIC(N, T)                                                                                \
    extern "C" __global__ void attn_generic_##N(T* out, const T* q, const T* k, const T* v, int nq, int hq, \
                                                int hkv, int hd, int pos0, int window, float scale,       \
                                                float cap) {                                              \
        const int PER = 16;                                                                               \
        i64 w = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;                                        \
        int lane = threadIdx.x & 31;                                                                      \
        if (w >= (i64)nq * hq) return;                                                                    \
        int t = (int)(w / hq), h = (int)(w % hq), kh = h / (hq / hkv);                                    \
        i64 qc = (i64)hq * hd, kc = (i64)hkv * hd;                                                        \
        int i = pos0 + t;                                                                                 \
        float qr[PER], acc[PER];                                                                          \
        _Pragma("unroll") for (int c = 0; c < PER; c++) {                                                 \
            int d = lane + 32 * c;                                                                        \
            qr[c] = d < hd ? to_f32(q[t * qc + (i64)h * hd + d]) : 0.0f;                                  \
            acc[c] = 0.0f;                                                                                \
        }                                                                                                 \
        float m = NEG_INF, l = 0.0f;                                                                      \
        int jlo = window > 0 ? imax(0, i - window + 1) : 0;                                                \
        for (int j = jlo; j <= i; j++) {                                                                  \
            const T* kr = k + j * kc + (i64)kh * hd;                                                      \
            const T* vr = v + j * kc + (i64)kh * hd;                                                      \
            float s = 0.0f;                                                                               \
            _Pragma("unroll") for (int c = 0; c < PER; c++) {                                             \
                int d = lane + 32 * c;                                                                    \
                if (d < hd) s += qr[c] * to_f32(kr[d]);                                                   \
            }                                                                                             \
            s = warp_sum(s) * scale;                                                                      \
            if (cap > 0.0f) s = cap * tanhf(s / cap);                                                     \
            float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);                                \
            l = l * corr + p;                                                                             \
            _Pragma("unroll") for (int c = 0; c < PER; c++) {                                             \
                int d = lane + 32 * c;                                                                    \
                if (d < hd) acc[c] = acc[c] * corr + p * to_f32(vr[d]);                                   \
            }                                                                                             \
            m = mn;                                                                                       \
        }                                                                                                 \
        _Pragma("unroll") for (int c = 0; c < PER; c++) {                                                 \
            int d = lane + 32 * c;                                                                        \
            if (d < hd) out[t * qc + (i64)h * hd + d] = from_f32<T>(acc[c] / l);                          \
        }                                                                                                 \
    }
FOR_DTYPES(ATTN_GENERIC)

__device__ __forceinline__ void ldsm_x4(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(u32* r, u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// cp16: 16 bytes global -> shared, asynchronously; zeros when !valid.
__device__ __forceinline__ void cp16(u32 dst, const void* src, bool valid) {
    int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(n));
}

template <typename T, int HD>
__device__ __forceinline__ void flash_fwd(T* out, const T* q, const T* k, const T* v, int nq, int hq, int hkv,
                                           int pos0, int window, float scale_log2, float cap_in,
                                           float cap_out) {
    constexpr int BM = 128, BN = 64, LD = HD + 8;
    extern __shared__ u32x4 smem_flash[];
    T* base = (T*)smem_flash;  // [2 stages][K, V][BN][LD]
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int h = blockIdx.y, kh = h / (hq / hkv);
    const int q0 = blockIdx.x * BM;
    const i64 ldq = (i64)hq * HD, ldk = (i64)hkv * HD;
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;

    u32 qf[HD / 16][4];
#pragma unroll
    for (int ks = 0; ks < HD / 16; ks++) {
        const int c = h * HD + ks * 16 + 2 * tq;
        qf[ks][0] = r0 < nq ? *(const u32*)(q + r0 * ldq + c) : 0u;
        qf[ks][1] = r1 < nq ? *(const u32*)(q + r1 * ldq + c) : 0u;
        qf[ks][2] = r0 < nq ? *(const u32*)(q + r0 * ldq + c + 8) : 0u;
        qf[ks][3] = r1 < nq ? *(const u32*)(q + r1 * ldq + c + 8) : 0u;
    }
    float o[HD / 8][4];
#pragma unroll
    for (int dt = 0; dt < HD / 8; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.0f, l1 = 0.0f;

    const int nkeys = pos0 + nq;
    const int hi = imin(pos0 + q0 + BM, nkeys);
    const int lo = window > 0 ? imax(0, pos0 + q0 - window + 1) : 0;
    const int p0 = pos0 + r0, p1 = pos0 + r1;
    const int first = lo / BN, ntiles = (hi + BN - 1) / BN - first;

    auto fetch = [&](int tile, int stage) {
        const int j0 = (first + tile) * BN;
        T* Ks = base + stage * 2 * BN * LD;
        T* Vs = Ks + BN * LD;
        for (int idx = tid; idx < BN * HD / 8; idx += blockDim.x) {
            const int r = idx / (HD / 8), c = (idx % (HD / 8)) * 8, j = j0 + r;
            const bool ok = j < nkeys;
            const i64 off = (i64)(ok ? j : 0) * ldk + kh * HD + c;
            cp16(smem_addr(Ks + r * LD + c), k + off, ok);
            cp16(smem_addr(Vs + r * LD + c), v + off, ok);
        }
        asm volatile("cp.async.commit_group;");
    };
    if (ntiles > 0) fetch(0, 0);
    for (int tile = 0; tile < ntiles; tile++) {
        if (tile + 1 < ntiles) {
            fetch(tile + 1, (tile + 1) & 1);
            asm volatile("cp.async.wait_group 1;");
        } else {
            asm volatile("cp.async.wait_group 0;");
        }
        __syncthreads();
        const int j0 = (first + tile) * BN;
        const T* Ks = base + (tile & 1) * 2 * BN * LD;
        const T* Vs = Ks + BN * LD;

        float s[BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < HD / 16; ks += 2) {
                // Four 8x8 matrices: keys nt*8.., dims ks*16 + {0, 8, 16, 24}.
                u32 kb[4];
                ldsm_x4(kb, smem_addr(Ks + (nt * 8 + (lane & 7)) * LD + ks * 16 + (lane >> 3) * 8));
                mma16816<T>(s[nt], qf[ks], kb[0], kb[1]);
                mma16816<T>(s[nt], qf[ks + 1], kb[2], kb[3]);
            }
        }
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = j0 + nt * 8 + 2 * tq + (e & 1);
                const int p = e < 2 ? p0 : p1;
                const bool ok = j <= p && (window <= 0 || j > p - window);
                s[nt][e] = !ok ? NEG_INF : cap_in > 0.0f ? cap_out * tanhf(s[nt][e] * cap_in) : s[nt][e] * scale_log2;
            }
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float b0 = mx0 == NEG_INF ? 0.0f : mx0, b1 = mx1 == NEG_INF ? 0.0f : mx1;
        const float c0 = exp2f(m0 - b0), c1 = exp2f(m1 - b1);
        m0 = mx0;
        m1 = mx1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int dt = 0; dt < HD / 8; dt++) {
            o[dt][0] *= c0;
            o[dt][1] *= c0;
            o[dt][2] *= c1;
            o[dt][3] *= c1;
        }
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - b0);
            s[nt][1] = exp2f(s[nt][1] - b0);
            s[nt][2] = exp2f(s[nt][2] - b1);
            s[nt][3] = exp2f(s[nt][3] - b1);
            l0 += s[nt][0] + s[nt][1];
            l1 += s[nt][2] + s[nt][3];
        }
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            u32 pa[4];
            pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int dt = 0; dt < HD / 8; dt += 2) {
                // Four 8x8 matrices, transposed: keys kk*16 + {0, 8}, dims (dt, dt+1)*8.
                u32 vb[4];
                ldsm_x4_trans(vb, smem_addr(Vs + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + (dt + (lane >> 4)) * 8));
                mma16816<T>(o[dt], pa, vb[0], vb[1]);
                mma16816<T>(o[dt + 1], pa, vb[2], vb[3]);
            }
        }
        __syncthreads();  // this stage is refilled two tiles on
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, i1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
    for (int dt = 0; dt < HD / 8; dt++) {
        const int c = h * HD + dt * 8 + 2 * tq;
        if (r0 < nq) *(u32*)(out + r0 * ldq + c) = pack2<T>(o[dt][0] * i0, o[dt][1] * i0);
        if (r1 < nq) *(u32*)(out + r1 * ldq + c) = pack2<T>(o[dt][2] * i1, o[dt][3] * i1);
    }
}

#define FLASH(N, T, HD)                                                                                  \
    extern "C" __global__ void __launch_bounds__(256) flash_##N##_d##HD(T* out, const T* q, const T* k, const T* v, \
                                                                       int nq, int hq, int hkv, int pos0,  \
                                                                       int window, float scale_log2,       \
                                                                       float cap_in, float cap_out) {      \
        flash_fwd<T, HD>(out, q, k, v, nq, hq, hkv, pos0, window, scale_log2, cap_in, cap_out);          \
    }
FLASH(bf16, bf16, 128)
FLASH(f16, f16, 128)
FLASH(bf16, bf16, 64)
FLASH(f16, f16, 64)
