// norm.cu: RMSNorm (transformers MistralRMSNorm) and the fused residual add
// + RMSNorm of a decoder layer.
//
// rmsnorm_T(dst [rows, h], x [rows, h], w [h], h, eps): one block of 256
// threads per row (grid = rows); the mean of squares is accumulated in
// fp32, inv = 1/sqrt(mean + eps), dst = w * (x * inv) rounded once. dst
// may alias x.
// add_rmsnorm_T(norm, x, delta, w, h, eps): x += delta (rounded to T), then
// norm = rmsnorm(x). Same grid.

template <typename T>
__device__ __forceinline__ void rms_row(T* dst, const T* x, const T* w, int h, float eps, float* red) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < h; i += blockDim.x) {
        float v = to_f32(x[i]);
        ss += v * v;
    }
    ss = block_sum(ss, red);
    float inv = 1.0f / sqrtf(ss / (float)h + eps);
    for (int i = threadIdx.x; i < h; i += blockDim.x) dst[i] = from_f32<T>(to_f32(w[i]) * (to_f32(x[i]) * inv));
}

#define NORM(N, T)                                                                                     \
    extern "C" __global__ void rmsnorm_##N(T* dst, const T* x, const T* w, int h, float eps) {          \
        __shared__ float red[32];                                                                      \
        i64 r = blockIdx.x;                                                                            \
        rms_row<T>(dst + r * h, x + r * h, w, h, eps, red);                                            \
    }                                                                                                  \
    extern "C" __global__ void add_rmsnorm_##N(T* norm, T* x, const T* delta, const T* w, int h, float eps) { \
        __shared__ float red[32];                                                                      \
        i64 r = blockIdx.x;                                                                            \
        T* xr = x + r * h;                                                                             \
        const T* dr = delta + r * h;                                                                   \
        for (int i = threadIdx.x; i < h; i += blockDim.x) xr[i] = from_f32<T>(to_f32(xr[i]) + to_f32(dr[i])); \
        __syncthreads();                                                                               \
        rms_row<T>(norm + r * h, xr, w, h, eps, red);                                                  \
    }
FOR_DTYPES(NORM)
