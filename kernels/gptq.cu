// gptq.cu: the GPTQ solve on the device (spec §4.2-4.4), in float64 like
// the host reference, so that both give the same codes.
//
// Layouts. G is the fp32 Gram matrix [K, K] row-major of which the upper
// triangle (j >= i) is valid. A/R [K, K] float64 are column-major (cuSOLVER):
// A is the permuted, reversed, damped Hessian J·P·H·Pᵀ·J; after potrf and
// trtri (lower) and gptq_rotate, R[i + j*K] = U[i][j], the upper Cholesky
// factor of H⁻¹ in processing order. Wk [K, N] float64 row-major is the
// working weight transposed (row j = the column processed j-th), so that a
// thread per output channel n reads coalesced. codes u8 [K, N] are in
// processing order; scale f32 [G, N] holds values already rounded to the
// storage precision; zero u8 [G, N] real zero points; gmap int32 [K] the
// group of each processing position; perm/invperm int32 [K].
// Every kernel with a flag argument stores 1 there on a non-finite input or
// output, the host reads it once per module.

#define KERNELS_DOUBLE_TINY_F16 5.9604644775390625e-08  // 2^-24, the smallest fp16
#define KERNELS_DOUBLE_TINY_F32 1.4012984643248171e-45  // the smallest fp32

__device__ __forceinline__ bool finite_d(double v) { return v - v == 0.0; }

// round_fp16 is quantize.RoundFP16: x rounded to the nearest IEEE binary16
// value (ties to even) as a double, ±inf beyond ±65504, in one rounding.
__device__ __forceinline__ double round_fp16(double x) {
    if (x == 0.0 || !finite_d(x)) return x;
    double a = fabs(x);
    int e;
    frexp(a, &e);  // a in [2^(e-1), 2^e)
    double ulp = KERNELS_DOUBLE_TINY_F16;
    if (e - 11 > -24) ulp = ldexp(1.0, e - 11);
    double r = rint(a / ulp) * ulp;
    if (r > 65504.0) r = __longlong_as_double(0x7ff0000000000000LL);
    return x < 0.0 ? -r : r;
}

// round_scale: nearest fp16 or nearest fp32 (quantize.Quantizer.RoundScale);
// a positive value that rounds to 0 becomes the type's smallest.
__device__ __forceinline__ double round_scale(double s, int fp16) {
    double r;
    if (fp16) {
        r = round_fp16(s);
        if (r == 0.0 && s > 0.0) r = KERNELS_DOUBLE_TINY_F16;
    } else {
        r = (double)(float)s;
        if (r == 0.0 && s > 0.0) r = KERNELS_DOUBLE_TINY_F32;
    }
    return r;
}

// find_params: quantize.Quantizer.FindParams (no MSE) over cnt values
// w[0], w[stride], ...
__device__ __forceinline__ void find_params(const double* w, i64 stride, int cnt, int bits, int sym, int fp16, float* s_out, u8* z_out) {
    double xmin = 0.0, xmax = 0.0;
    for (int c = 0; c < cnt; c++) {
        double v = w[c * stride];
        xmin = fmin(xmin, v);
        xmax = fmax(xmax, v);
    }
    if (sym) {
        xmax = fmax(-xmin, xmax);
        if (xmin < 0.0) xmin = -xmax;
    }
    if (xmin == 0.0 && xmax == 0.0) {
        xmin = -1.0;
        xmax = 1.0;
    }
    int maxq = (1 << bits) - 1;
    double s = round_scale((xmax - xmin) / (double)maxq, fp16);
    int z;
    if (sym) {
        z = (maxq + 1) / 2;
    } else {
        double zz = rint(-xmin / s);
        if (!(zz >= 0.0)) zz = 0.0;
        z = (int)fmin(zz, (double)maxq);
    }
    *s_out = (float)s;
    *z_out = (u8)z;
}

// gptq_diag(diag [K], G, K, scale): diag[k] = scale·G[k][k]. Grid-stride.
extern "C" __global__ void gptq_diag(double* diag, const float* G, int K, double scale) {
    FOR_N(k, K) diag[k] = scale * (double)G[k * (i64)K + k];
}

// gptq_build(A, G, perm, dead, K, scale, damp, flag): A = J·P·(scale·G)·Pᵀ·J
// in full (both triangles), the diagonal of a dead column set to 1, then
// damp added to every diagonal entry. One thread per element, grid-stride.
extern "C" __global__ void gptq_build(double* A, const float* G, const int* perm, const u8* dead, int K, double scale, double damp, int* flag) {
    FOR_N(p, (i64)K * K) {
        int i = (int)(p % K), j = (int)(p / K);
        int a = perm[K - 1 - i], b = perm[K - 1 - j];
        int lo = a < b ? a : b, hi = a < b ? b : a;
        float g = G[(i64)lo * K + hi];
        if (!finite_d((double)g)) *flag = 1;
        double v = scale * (double)g;
        if (i == j) {
            if (dead[a]) v = 1.0;
            v += damp;
        }
        A[p] = v;
    }
}

// gptq_check_diag(A, K, flag): flag unless every A[i][i] is finite and > 0.
extern "C" __global__ void gptq_check_diag(const double* A, int K, int* flag) {
    FOR_N(i, K) {
        double d = A[i * (i64)K + i];
        if (!(d > 0.0) || !finite_d(d)) *flag = 1;
    }
}

// gptq_rotate(A, n): A[p] <-> A[n-1-p], turning J·L⁻¹·J's storage into U.
extern "C" __global__ void gptq_rotate(double* A, i64 n) {
    FOR_N(p, n / 2) {
        double t = A[p];
        A[p] = A[n - 1 - p];
        A[n - 1 - p] = t;
    }
}

// gptq_load_T(Wk, W [N, K] row-major, perm, N, K, flag): Wk[j][n] = W[n][perm[j]].
#define LOAD(NAME, T)                                                                                 \
    extern "C" __global__ void gptq_load_##NAME(double* Wk, const T* W, const int* perm, int N, int K, int* flag) { \
        FOR_N(p, (i64)K * N) {                                                                        \
            int n = (int)(p % N), j = (int)(p / N);                                                   \
            double v = (double)to_f32(W[(i64)n * K + perm[j]]);                                       \
            if (!finite_d(v)) *flag = 1;                                                              \
            Wk[p] = v;                                                                                \
        }                                                                                             \
    }
FOR_DTYPES(LOAD)

// gptq_zero_dead(Wk, deadj, N, K): zero the rows j whose column is dead.
extern "C" __global__ void gptq_zero_dead(double* Wk, const u8* deadj, int N, int K) {
    FOR_N(p, (i64)K * N) {
        if (deadj[p / N]) Wk[p] = 0.0;
    }
}

// gptq_params_rows(scale [N], zero [N], Wk, N, K, ...): per-channel params
// over all K values of each channel (group size -1).
extern "C" __global__ void gptq_params_rows(float* scale, u8* zero, const double* Wk, int N, int K, int bits, int sym, int fp16) {
    FOR_N(n, N) find_params(Wk + n, N, K, bits, sym, fp16, scale + n, zero + n);
}

// gptq_params_cols(scale [N], zero [N], Wk (at the group's first row), N,
// cnt, ...): params of one group of cnt consecutive processing positions.
extern "C" __global__ void gptq_params_cols(float* scale, u8* zero, const double* Wk, int N, int cnt, int bits, int sym, int fp16) {
    FOR_N(n, N) find_params(Wk + n, N, cnt, bits, sym, fp16, scale + n, zero + n);
}

// gptq_params_static(scale [G, N], zero [G, N], Wk, invperm, N, K, gs, G, ...):
// static groups: group g is original columns [g·gs, min((g+1)·gs, K)),
// found in Wk at rows invperm[c]. One thread per (g, n).
extern "C" __global__ void gptq_params_static(float* scale, u8* zero, const double* Wk, const int* invperm, int N, int K, int gs, int G, int bits, int sym, int fp16) {
    FOR_N(p, (i64)G * N) {
        int n = (int)(p % N), g = (int)(p / N);
        int c0 = g * gs, c1 = c0 + gs < K ? c0 + gs : K;
        double xmin = 0.0, xmax = 0.0;
        // find_params needs a strided array; gather through invperm here.
        for (int c = c0; c < c1; c++) {
            double v = Wk[(i64)invperm[c] * N + n];
            xmin = fmin(xmin, v);
            xmax = fmax(xmax, v);
        }
        double two[2] = {xmin, xmax};
        find_params(two, 1, 2, bits, sym, fp16, scale + p, zero + p);
    }
}

// gptq_block: spec §4.2 step 7 for the columns [i1, i1+B) of every channel.
// Grid ceil(N/CH) blocks of CH threads (CH = 128, or 64/32 where a block may
// not have that much shared memory), thread = channel n. Dynamic shared
// memory: the block's U as a packed upper triangle (B(B+1)/2 doubles; row i
// at off(i) = i·B - i(i-1)/2) and the channels' B working weights, k-major
// (ws[i·CH + t]) so a warp's accesses are consecutive.
// For groups that divide the block (gsin > 0) the params are found here:
// on the updated weights at each group start, or with stale on the weights
// as they were at the block start (REF's quirk); otherwise they were found
// before (gmap says which group each column uses). err [B, N] receives
// the scaled errors for the trailing update, loss [N] accumulates Σ err².
extern "C" __global__ void __launch_bounds__(128) gptq_block(double* Wk, const double* R, u8* codes, float* scale, u8* zero, const int* gmap,
                                                           double* err, double* loss, int N, int K, int i1, int B, int bits, int sym,
                                                           int fp16, int gsin, int stale) {
    extern __shared__ double sm_gptq[];
    double* Us = sm_gptq;
    double* ws = sm_gptq + B * (B + 1) / 2;
    const int CH = blockDim.x;
    const int t = threadIdx.x, n = blockIdx.x * CH + t;
    for (int idx = t; idx < B * B; idx += blockDim.x) {
        int k = idx / B, i = idx % B;
        if (k >= i) Us[i * B - i * (i - 1) / 2 + (k - i)] = R[(i64)(i1 + i) + (i64)(i1 + k) * K];
    }
    const bool active = n < N;
    for (int i = 0; i < B; i++) ws[i * CH + t] = active ? Wk[(i64)(i1 + i) * N + n] : 0.0;
    __syncthreads();
    if (!active) return;
    const double maxq = (double)((1 << bits) - 1);
    if (gsin > 0 && stale) {
        for (int g0 = 0; g0 < B; g0 += gsin) {
            int g = (i1 + g0) / gsin;
            int cnt = g0 + gsin < B ? gsin : B - g0;
            find_params(ws + g0 * CH + t, CH, cnt, bits, sym, fp16, scale + (i64)g * N + n, zero + (i64)g * N + n);
        }
    }
    int gcur = -1;
    double sc = 1.0, z = 0.0, lacc = 0.0;
    for (int i = 0; i < B; i++) {
        const int j = i1 + i;
        if (gsin > 0 && !stale && i % gsin == 0) {
            int g = j / gsin;
            int cnt = i + gsin < B ? gsin : B - i;
            find_params(ws + i * CH + t, CH, cnt, bits, sym, fp16, scale + (i64)g * N + n, zero + (i64)g * N + n);
            gcur = -1;
        }
        const int g = gmap[j];
        if (g != gcur) {
            gcur = g;
            sc = (double)scale[(i64)g * N + n];
            z = (double)zero[(i64)g * N + n];
        }
        const double x = ws[i * CH + t];
        double q = rint(x / sc) + z;
        q = fmin(fmax(q, 0.0), maxq);
        codes[(i64)j * N + n] = (u8)q;
        const double* ur = Us + i * B - i * (i - 1) / 2;  // ur[k-i] = U[i][k]
        const double e = (x - sc * (q - z)) / ur[0];
        err[(i64)i * N + n] = e;
        lacc += e * e;
        for (int k = i + 1; k < B; k++) ws[k * CH + t] -= e * ur[k - i];
    }
    loss[n] += lacc;
}

// gptq_dequant_T(W [N, K], codes, scale, zero, invperm, gidx, N, K, flag):
// the quantized weight in the original column order, W[n][c] =
// scale·(code - zero) in fp32 (as quantize.Result.W) rounded to T.
#define DEQUANT(NAME, T)                                                                               \
    extern "C" __global__ void gptq_dequant_##NAME(T* W, const u8* codes, const float* scale, const u8* zero, \
                                                   const int* invperm, const int* gidx, int N, int K, int* flag) { \
        FOR_N(p, (i64)N * K) {                                                                         \
            int c = (int)(p % K), n = (int)(p / K);                                                    \
            i64 gi = (i64)gidx[c] * N + n;                                                             \
            float v = scale[gi] * (float)((int)codes[(i64)invperm[c] * N + n] - (int)zero[gi]);        \
            if (!finite_d((double)v)) *flag = 1;                                                       \
            W[p] = from_f32<T>(v);                                                                     \
        }                                                                                              \
    }
FOR_DTYPES(DEQUANT)

// gptq_pack_qweight(qw [K·bits/32, N], codes, invperm, N, K, bits): spec §1.2-1.3,
// an LSB-first bit stream of each column's codes in original order: code c
// at stream bit bits·c. One thread per (32 codes, n) writes bits words.
extern "C" __global__ void gptq_pack_qweight(int* qw, const u8* codes, const int* invperm, int N, int K, int bits) {
    FOR_N(p, (i64)(K / 32) * N) {
        int n = (int)(p % N), blk = (int)(p / N);
        u32 words[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int i = 0; i < 32; i++) {
            u32 v = codes[(i64)invperm[blk * 32 + i] * N + n];
            int bit = i * bits, w = bit >> 5, sh = bit & 31;
            words[w] |= v << sh;
            if (sh + bits > 32) words[w + 1] |= v >> (32 - sh);
        }
        for (int w = 0; w < bits; w++) qw[((i64)blk * bits + w) * N + n] = (int)words[w];
    }
}

// gptq_pack_qzeros(qz [G, N·bits/32], zero [G, N], G, N, bits, v1, flag):
// the zero points packed along N (v1 stores zero-1; a zero of 0 cannot be
// stored there and sets flag). One thread per (g, 32 columns).
extern "C" __global__ void gptq_pack_qzeros(int* qz, const u8* zero, int G, int N, int bits, int v1, int* flag) {
    FOR_N(p, (i64)G * (N / 32)) {
        int blk = (int)(p % (N / 32)), g = (int)(p / (N / 32));
        u32 words[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        u32 mask = (1u << bits) - 1u;
        for (int i = 0; i < 32; i++) {
            int z = zero[(i64)g * N + blk * 32 + i];
            if (v1) {
                if (z == 0) *flag = 1;
                z -= 1;
            }
            u32 v = (u32)z & mask;
            int bit = i * bits, w = bit >> 5, sh = bit & 31;
            words[w] |= v << sh;
            if (sh + bits > 32) words[w + 1] |= v >> (32 - sh);
        }
        for (int w = 0; w < bits; w++) qz[(i64)g * (N / 32 * bits) + blk * bits + w] = (int)words[w];
    }
}

// gptq_scales_f16(out [n], scale [n], n, flag): scales as fp16 bits (round
// to nearest even); flag unless finite and > 0.
extern "C" __global__ void gptq_scales_f16(u16* out, const float* scale, i64 n, int* flag) {
    FOR_N(i, n) {
        f16 h = from_f32<f16>(scale[i]);
        float back = to_f32(h);
        if (!(back > 0.0f) || !finite_d((double)back)) *flag = 1;
        out[i] = h.x;
    }
}
