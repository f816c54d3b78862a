// kernel-syntax.h: stubs of the CUDA keywords and builtins the kernels use,
// so that scripts/kernel-syntax.sh can have the host's g++ parse and
// instantiate kernels/*.cu (common.cuh + a file, under a module's defines)
// where no device or NVRTC is at hand. Declarations only: nothing links or
// runs, and inline PTX is not checked (NVRTC does that on the device).
#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__
#define __constant__
#define __launch_bounds__(...)
#define __restrict__
#define __grid_constant__
#define __align__(n) alignas(n)
struct dim3 { unsigned x, y, z; };
extern dim3 threadIdx, blockIdx, gridDim, blockDim;
struct int2 { int x, y; };
struct int4 { int x, y, z, w; };
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
float2 make_float2(float, float);
int2 make_int2(int, int);
float __uint_as_float(unsigned);
unsigned __float_as_uint(float);
float __int_as_float(int);
int __float_as_int(float);
double __longlong_as_double(long long);
long long __double_as_longlong(double);
template <typename T> T __shfl_xor_sync(unsigned, T, int, int = 32);
template <typename T> T __shfl_sync(unsigned, T, int, int = 32);
template <typename T> T __shfl_down_sync(unsigned, T, int, int = 32);
template <typename T> T __shfl_up_sync(unsigned, T, int, int = 32);
unsigned __ballot_sync(unsigned, int);
int __any_sync(unsigned, int);
int __all_sync(unsigned, int);
void __syncthreads();
int __syncthreads_or(int);
int __syncthreads_count(int);
void __syncwarp(unsigned = 0xffffffffu);
void __threadfence();
void __threadfence_block();
void __trap();
int __dp4a(int, int, int);
int __ffs(int);
int __clz(int);
int __popc(unsigned);
unsigned __byte_perm(unsigned, unsigned, unsigned);
unsigned long long __umul64hi(unsigned long long, unsigned long long);
int min(int, int);
int max(int, int);
unsigned min(unsigned, unsigned);
unsigned max(unsigned, unsigned);
long long min(long long, long long);
long long max(long long, long long);
float fmaxf(float, float);
float fminf(float, float);
float fabsf(float);
float rintf(float);
float expf(float);
float exp2f(float);
float logf(float);
float sqrtf(float);
float rsqrtf(float);
float fmaf(float, float, float);
float tanhf(float);
float powf(float, float);
float sinf(float);
float cosf(float);
void sincosf(float, float*, float*);
double fmax(double, double);
double fmin(double, double);
double fabs(double);
double rint(double);
double exp(double);
double log(double);
double ceil(double);
double floor(double);
double sqrt(double);
double ldexp(double, int);
double frexp(double, int*);
void sincos(double, double*, double*);
unsigned atomicAdd(unsigned*, unsigned);
int atomicAdd(int*, int);
float atomicAdd(float*, float);
float __fmul_rn(float, float);
float __fadd_rn(float, float);
unsigned long long atomicAdd(unsigned long long*, unsigned long long);
unsigned atomicInc(unsigned*, unsigned);
int atomicMin(int*, int);
unsigned atomicMin(unsigned*, unsigned);
int atomicMax(int*, int);
unsigned atomicMax(unsigned*, unsigned);
unsigned atomicCAS(unsigned*, unsigned, unsigned);
unsigned atomicExch(unsigned*, unsigned);
template <typename T> T __ldg(const T*);
template <typename T> T __ldcg(const T*);
template <typename T> T __ldcs(const T*);
template <typename T> void __stcg(T*, T);
template <typename T> void __stcs(T*, T);
void __nanosleep(unsigned);
