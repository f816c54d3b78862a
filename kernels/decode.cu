// decode.cu: the ops of a decode step whose per-token data lives on the
// device (runtime.PagedDecoder), so that a whole step can be recorded once
// as a CUDA graph and replayed.
//
// rope_store_T(q [rows, hq*hd], k [rows, hkv*hd], v, kc, vc [slots, hkv*hd],
// pos, slot int32 [rows], inv [hd/2], rows, hq, hkv, hd): rotates every head
// of q and k row t at position pos[t] exactly as rope_seq does (fp32 angle,
// sincos in double), writes the rotated k row and the v row into row slot[t]
// of kc and vc. One thread per (row, head, j) rotation pair, then one per v
// element; grid-stride.
//
// paged_attn_T(out, q, kc, vc, tables [rows, width], width, pos, bs, hq, hkv,
// hd, window, scale, part, cnt): query row r (position pos[r]) attends over
// positions lo..pos[r] of its sequence (lo = pos[r]-window+1 with a window),
// position p in cache row tables[r, p/bs]*bs + p%bs; fp32 math. Grid
// (ceil(hq/4), S, rows), 128 threads: warp w is query head 4*blockIdx.x + w,
// and the S blocks of a (row, head group) split the positions into S even
// chunks (flash-decoding), so that a batch of one still fills the GPU. A
// warp takes 32 keys at a time, a key a lane: the lane's score is a dot
// product over the head (q staged in shared memory, pre-scaled), then an
// online softmax over the tile and P·V with a lane per 32nd dimension. With
// S > 1 each block writes (max, sum, unnormalised output) per head to part
// [rows, hq, S, hd+2] and the last of the S blocks to finish (a counter per
// (row, head group) in cnt, left at zero again) combines them. hd <= 256.

#define ROPE_STORE(N, T)                                                                                      \
    extern "C" __global__ void rope_store_##N(T* q, T* k, const T* v, T* kc, T* vc, const int* pos,              \
                                              const int* slot, const float* invf, int rows, int hq, int hkv,     \
                                              int hd) {                                                          \
        const int d2 = hd / 2, heads = hq + hkv;                                                                \
        const i64 kvc = (i64)hkv * hd, nrot = (i64)rows * heads * d2, nv = (i64)rows * kvc;                      \
        FOR_N(i, nrot + nv) {                                                                                   \
            if (i < nrot) {                                                                                     \
                int j = (int)(i % d2);                                                                          \
                i64 rh = i / d2;                                                                                \
                int h = (int)(rh % heads);                                                                      \
                i64 t = rh / heads;                                                                             \
                float a = (float)pos[t] * invf[j];                                                              \
                double s, c;                                                                                    \
                sincos((double)a, &s, &c);                                                                      \
                float cs = (float)c, sn = (float)s;                                                             \
                T* p = h < hq ? q + t * hq * hd + (i64)h * hd : k + t * kvc + (i64)(h - hq) * hd;               \
                float x1 = to_f32(p[j]), x2 = to_f32(p[j + d2]);                                                \
                T y1 = from_f32<T>(x1 * cs - x2 * sn), y2 = from_f32<T>(x2 * cs + x1 * sn);                     \
                p[j] = y1;                                                                                      \
                p[j + d2] = y2;                                                                                 \
                if (h >= hq) {                                                                                  \
                    T* o = kc + (i64)slot[t] * kvc + (i64)(h - hq) * hd;                                        \
                    o[j] = y1;                                                                                  \
                    o[j + d2] = y2;                                                                             \
                }                                                                                               \
            } else {                                                                                            \
                i64 e = i - nrot, t = e / kvc, c = e % kvc;                                                     \
                vc[(i64)slot[t] * kvc + c] = v[t * kvc + c];                                                    \
            }                                                                                                   \
        }                                                                                                       \
    }
FOR_DTYPES(ROPE_STORE)

#define PA_HDMAX 256

// load8: eight consecutive elements as fp32 (16-byte aligned for 16-bit T).
template <typename T> __device__ __forceinline__ void load8(const T* p, float* f) {
    unpack8<T>(*(const u32x4*)p, f);
}
template <> __device__ __forceinline__ void load8<float>(const float* p, float* f) {
    float4 a = ((const float4*)p)[0], b = ((const float4*)p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

__device__ __forceinline__ float ldcg_f(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

template <typename T>
__device__ void paged_attn(T* __restrict__ out, const T* __restrict__ q, const T* __restrict__ kc,
                           const T* __restrict__ vc, const int* __restrict__ tables, int width,
                           const int* __restrict__ pos, int bs, int hq, int hkv, int hd, int window, float scale,
                           float* part, u32* cnt) {
    constexpr int C = PA_HDMAX / 32;
    __shared__ float qs[4][PA_HDMAX];
    __shared__ int last;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = blockIdx.z, h = blockIdx.x * 4 + warp, S = gridDim.y, s = blockIdx.y;
    const int i = pos[r];
    const int lo = window > 0 ? imax(0, i - window + 1) : 0;
    const int chunk = (i - lo + 1 + S - 1) / S;
    const int j0 = lo + s * chunk, j1 = imin(i + 1, j0 + chunk);
    const i64 kvc = (i64)hkv * hd;
    const bool vec = (hd & 7) == 0;
    float m = NEG_INF, l = 0.0f, acc[C];
#pragma unroll
    for (int c = 0; c < C; c++) acc[c] = 0.0f;
    if (h < hq) {
        const int kh = h / (hq / hkv);
        for (int d = lane; d < hd; d += 32) qs[warp][d] = to_f32(q[((i64)r * hq + h) * hd + d]) * scale;
        __syncwarp();
        const int* tab = tables + (i64)r * width;
        const T* kb = kc + (i64)kh * hd;
        const T* vb = vc + (i64)kh * hd;
        for (int jt = j0; jt < j1; jt += 32) {
            const int j = jt + lane;
            const bool ok = j < j1;
            const i64 row = ok ? (i64)tab[j / bs] * bs + j % bs : 0;
            float sc = NEG_INF;
            if (ok) {
                const T* kr = kb + row * kvc;
                float dot = 0.0f;
                if (vec) {
                    for (int d = 0; d < hd; d += 8) {
                        float f[8];
                        load8<T>(kr + d, f);
#pragma unroll
                        for (int e = 0; e < 8; e++) dot += qs[warp][d + e] * f[e];
                    }
                } else {
                    for (int d = 0; d < hd; d++) dot += qs[warp][d] * to_f32(kr[d]);
                }
                sc = dot;
            }
            const float mn = fmaxf(m, warp_max(sc));
            const float corr = expf(m - mn);
            const float p = ok ? expf(sc - mn) : 0.0f;
            l = l * corr + warp_sum(p);
            m = mn;
#pragma unroll
            for (int c = 0; c < C; c++) acc[c] *= corr;
            const int nk = imin(32, j1 - jt);
            for (int jj = 0; jj < nk; jj++) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
                const i64 rj = __shfl_sync(0xffffffffu, row, jj);
                const T* vr = vb + rj * kvc;
#pragma unroll
                for (int c = 0; c < C; c++) {
                    const int d = lane + 32 * c;
                    if (d < hd) acc[c] += pj * to_f32(vr[d]);
                }
            }
        }
    }
    if (S == 1) {
        if (h < hq) {
#pragma unroll
            for (int c = 0; c < C; c++) {
                const int d = lane + 32 * c;
                if (d < hd) out[((i64)r * hq + h) * hd + d] = from_f32<T>(acc[c] / l);
            }
        }
        return;
    }
    if (h < hq) {
        float* pp = part + (((i64)r * hq + h) * S + s) * (hd + 2);
#pragma unroll
        for (int c = 0; c < C; c++) {
            const int d = lane + 32 * c;
            if (d < hd) pp[2 + d] = acc[c];
        }
        if (lane == 0) {
            pp[0] = m;
            pp[1] = l;
        }
    }
    __threadfence();
    __syncthreads();
    u32* ctr = cnt + (i64)r * gridDim.x + blockIdx.x;
    if (threadIdx.x == 0) last = atomicAdd(ctr, 1u) == (u32)(S - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    if (h < hq) {
        const float* pp = part + ((i64)r * hq + h) * S * (hd + 2);
        float M = NEG_INF;
        for (int y = 0; y < S; y++) M = fmaxf(M, ldcg_f(pp + y * (hd + 2)));
        float L = 0.0f, o[C];
#pragma unroll
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int y = 0; y < S; y++) {
            const float* py = pp + y * (hd + 2);
            const float my = ldcg_f(py);
            if (my == NEG_INF) continue;
            const float w = expf(my - M);
            L += w * ldcg_f(py + 1);
#pragma unroll
            for (int c = 0; c < C; c++) {
                const int d = lane + 32 * c;
                if (d < hd) o[c] += w * ldcg_f(py + 2 + d);
            }
        }
#pragma unroll
        for (int c = 0; c < C; c++) {
            const int d = lane + 32 * c;
            if (d < hd) out[((i64)r * hq + h) * hd + d] = from_f32<T>(o[c] / L);
        }
    }
    if (threadIdx.x == 0) *ctr = 0;
}

#define PAGED_ATTN(N, T)                                                                                       \
    extern "C" __global__ void __launch_bounds__(128) paged_attn_##N(                                             \
        T* out, const T* q, const T* kc, const T* vc, const int* tables, int width, const int* pos, int bs, int hq, \
        int hkv, int hd, int window, float scale, float* part, u32* cnt) {                                        \
        paged_attn<T>(out, q, kc, vc, tables, width, pos, bs, hq, hkv, hd, window, scale, part, cnt);             \
    }
FOR_DTYPES(PAGED_ATTN)
