// cudacheck.h: lets clang compile kernels/*.cu on a machine without CUDA
// (scripts/kernelcheck.sh), to catch C++ errors before device time is
// spent. NVRTC needs none of this: it defines all of it itself.
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __host__ __attribute__((host))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#include <__clang_cuda_builtin_vars.h>
__device__ void __syncthreads();
__device__ float __shfl_xor_sync(unsigned, float, int, int = 32);
__device__ int __shfl_xor_sync(unsigned, int, int, int = 32);
__device__ unsigned __shfl_xor_sync(unsigned, unsigned, int, int = 32);
__device__ double __shfl_xor_sync(unsigned, double, int, int = 32);
__device__ float __shfl_sync(unsigned, float, int, int = 32);
__device__ double __shfl_sync(unsigned, double, int, int = 32);
__device__ int __shfl_sync(unsigned, int, int, int = 32);
__device__ float __int_as_float(int);
__device__ float __uint_as_float(unsigned);
__device__ unsigned __float_as_uint(float);
__device__ float expf(float);
__device__ float exp2f(float);
__device__ float sqrtf(float);
__device__ float fmaxf(float, float);
__device__ float fminf(float, float);
__device__ float fabsf(float);
__device__ double fabs(double);
__device__ double fmax(double, double);
__device__ double fmin(double, double);
__device__ double pow(double, double);
__device__ double sqrt(double);
__device__ double rint(double);
__device__ void sincos(double, double*, double*);
__device__ int isfinite(double);
__device__ int isnan(double);
__device__ double atomicAdd(double*, double);
__device__ float atomicAdd(float*, float);
__device__ unsigned long long atomicAdd(unsigned long long*, unsigned long long);
__device__ unsigned atomicAdd(unsigned*, unsigned);
__device__ int atomicAdd(int*, int);
__device__ int atomicMax(int*, int);
__device__ void __threadfence();
__device__ double frexp(double, int*);
__device__ double ldexp(double, int);
__device__ double __longlong_as_double(long long);
__device__ double exp(double);
__device__ double log(double);
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
__device__ int4 __ldg(const int4*);
__device__ unsigned __ldg(const unsigned*);
__device__ float __ldcg(const float*);
__device__ long long __shfl_sync(unsigned, long long, int, int = 32);
__device__ void __syncwarp(unsigned = 0xffffffffu);
__device__ unsigned __ballot_sync(unsigned, int);
__device__ int __ffs(int);
__device__ int __popc(unsigned);
__device__ unsigned __shfl_sync(unsigned, unsigned, int, int = 32);
__device__ unsigned long long __shfl_xor_sync(unsigned, unsigned long long, int, int = 32);
__device__ int __shfl_up_sync(unsigned, int, unsigned, int = 32);
__device__ unsigned long long __shfl_up_sync(unsigned, unsigned long long, unsigned, int = 32);
__device__ int atomicMin(int*, int);
__device__ double ceil(double);
__device__ unsigned long long __umul64hi(unsigned long long, unsigned long long);
