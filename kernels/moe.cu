// moe.cu: a mixture-of-experts layer's routing on the device (runtime
// ExpertRouter), so that a decode step needs nothing from the host in its
// middle. A slot is one of a row's K experts, slot s = r·K + k of row r.
//
// moe_route_T(ids, wts, order, logits, rows, E, K, norm): one block of 256
// threads; logits fp32 [rows, E] (E <= MOE_EMAX), each rounded to T first
// (the router's product in the activation dtype), K <= MOE_KMAX, rows·K <=
// MOE_SLOTS. Each warp takes rows in turn: the softmax over the row's E
// logits in fp32 as transformers (and runtime.RouteRow) compute it, each
// exponential in double rounded once (CUDA's exp and Go's math.Exp are
// each within an ulp of double, so the floats agree but for a double's
// rounding boundary), the max propagating a NaN, the sum
// in expert order by lane 0; then K rounds of a warp argmax (the larger
// probability, the lower expert among equal ones; taken experts and NaN
// left out), the chosen probabilities summed in the order chosen and
// divided by that sum where norm. Row r's experts go to ids[r·K ..] in
// ascending order, their weights to wts (fp32), -1 and 0 in the slots a
// row lacks (a NaN row has none). Then order [rows·K] lists the slots by
// expert, stably (slots of -1 last): a warp an expert places its slots by
// ballots over the slots in order; order[rows·K ..] the runs of that list
// (runtime.ExpertOrder: at most MOE_RUN slots of one expert each, start |
// count << 11 | expert << 15; -1 after the last), which qgemv.cu's _x
// kernels take one a block.
//
// Both wait for the kernel before (pdl_wait) before they read anything and
// let the next start at once (runtime/cuda launches them with programmatic
// stream serialization: pdlKernels).
//
// moe_combine_T(x, out, wts, ids, extra, rows, H, K): x [rows, H] += the
// row's slots' outputs out [rows·K, H] weighed by wts, as runtime/model's
// host path rounds them: acc = T(w·out) of the first slot, acc = T(acc +
// T(w·out)) of each next one, then acc = T(acc + extra) where extra [rows,
// H] is given (a shared expert's output; null: none), x = T(x + acc);
// slots of id -1 left out. A 1-D grid over rows·H.

#define MOE_EMAX 256
#define MOE_KMAX 16
#define MOE_SLOTS 1024
#define MOE_RUN 8

// moe_better: (p, e) is chosen before (q, f): the larger probability, the
// lower expert among equal ones; e < 0 is nothing.
__device__ __forceinline__ bool moe_better(float p, int e, float q, int f) {
    return e >= 0 && (f < 0 || p > q || (p == q && e < f));
}

template <typename T>
__device__ void moe_route(int* __restrict__ ids, float* __restrict__ wts, int* __restrict__ order,
                          const float* __restrict__ logits, int rows, int E, int K, int norm) {
    __shared__ float pr[8][MOE_EMAX];
    __shared__ int sid[MOE_SLOTS];
    pdl_launch();
    pdl_wait();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int r = warp; r < rows; r += 8) {
        const float* l = logits + (i64)r * E;
        float* p = pr[warp];
        float most = NEG_INF;
        bool nan = false;
        for (int e = lane; e < E; e += 32) {
            const float v = to_f32(from_f32<T>(l[e]));
            nan = nan || v != v;
            most = fmaxf(most, v);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) most = fmaxf(most, __shfl_xor_sync(0xffffffffu, most, o));
        if (__any_sync(0xffffffffu, nan)) most = __int_as_float(0x7fffffff);
        for (int e = lane; e < E; e += 32) p[e] = (float)exp((double)(to_f32(from_f32<T>(l[e])) - most));
        __syncwarp();
        float sum = 0.0f;
        if (lane == 0) {
            for (int e = 0; e < E; e++) sum += p[e];
        }
        sum = __shfl_sync(0xffffffffu, sum, 0);
        for (int e = lane; e < E; e += 32) p[e] /= sum;
        __syncwarp();
        int pick[MOE_KMAX];
        float pw[MOE_KMAX];
        int n = 0;
        float total = 0.0f;
        for (int k = 0; k < K; k++) {
            int best = -1;
            float bp = 0.0f;
            for (int e = lane; e < E; e += 32) {
                const float v = p[e];
                if (v >= 0.0f && moe_better(v, e, bp, best)) best = e, bp = v;
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const float q = __shfl_xor_sync(0xffffffffu, bp, o);
                const int f = __shfl_xor_sync(0xffffffffu, best, o);
                if (moe_better(q, f, bp, best)) best = f, bp = q;
            }
            if (best < 0) break;  // (the same in every lane)
            pick[n] = best, pw[n] = bp, n++;
            total += bp;
            __syncwarp();
            if (lane == 0) p[best] = -1.0f;  // taken (its weight is kept in pw)
            __syncwarp();
        }
        if (lane == 0) {
            for (int i = 0; i < n; i++) {
                if (norm) pw[i] /= total;
            }
            for (int i = 1; i < n; i++) {  // ascending experts
                for (int j = i; j > 0 && pick[j] < pick[j - 1]; j--) {
                    const int te = pick[j];
                    pick[j] = pick[j - 1], pick[j - 1] = te;
                    const float tw = pw[j];
                    pw[j] = pw[j - 1], pw[j - 1] = tw;
                }
            }
            for (int k = 0; k < K; k++) {
                const int s = r * K + k;
                sid[s] = k < n ? pick[k] : -1;
                ids[s] = sid[s];
                wts[s] = k < n ? pw[k] : 0.0f;
            }
        }
        __syncwarp();
    }
    __syncthreads();
    const int slots = rows * K;
    // The slots by key (the expert, E for none): cnt[e] of them from
    // est[e] on in order, expert e's runs of at most MOE_RUN slots from
    // rb[e] on in the runs (runtime.ExpertOrder).
    __shared__ int cnt[MOE_EMAX + 1], est[MOE_EMAX + 1], rb[MOE_EMAX + 1];
    for (int e = threadIdx.x; e <= E; e += blockDim.x) cnt[e] = 0;
    __syncthreads();
    for (int s = threadIdx.x; s < slots; s += blockDim.x) atomicAdd(&cnt[sid[s] < 0 ? E : sid[s]], 1);
    __syncthreads();
    if (warp == 0) {
        int base = 0, rbase = 0;
        for (int e0 = 0; e0 <= E; e0 += 32) {
            const int e = e0 + lane, c = e <= E ? cnt[e] : 0, r = e < E ? (c + MOE_RUN - 1) / MOE_RUN : 0;
            int ic = c, ir = r;  // inclusive scans across the warp
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const int uc = __shfl_up_sync(0xffffffffu, ic, o), ur = __shfl_up_sync(0xffffffffu, ir, o);
                if (lane >= o) ic += uc, ir += ur;
            }
            if (e <= E) est[e] = base + ic - c, rb[e] = rbase + ir - r;
            base += __shfl_sync(0xffffffffu, ic, 31), rbase += __shfl_sync(0xffffffffu, ir, 31);
        }
    }
    __syncthreads();
    // A warp a key places its slots in slot order (stably): a ballot over
    // each 32 slots.
    for (int e = warp; e <= E; e += 8) {
        int at = est[e];
        for (int j0 = 0; j0 < slots; j0 += 32) {
            const int j = j0 + lane;
            const bool hit = j < slots && (sid[j] < 0 ? E : sid[j]) == e;
            const unsigned m = __ballot_sync(0xffffffffu, hit);
            if (hit) order[at + __popc(m & ((1u << lane) - 1u))] = j;
            at += __popc(m);
        }
    }
    int* runs = order + slots;
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        for (int i = 0; i * MOE_RUN < cnt[e]; i++)
            runs[rb[e] + i] = (est[e] + i * MOE_RUN) | (imin(MOE_RUN, cnt[e] - i * MOE_RUN) << 11) | (e << 15);
    }
    for (int r = rb[E] + threadIdx.x; r < slots; r += blockDim.x) runs[r] = -1;
}

template <typename T>
__device__ void moe_combine(T* __restrict__ x, const T* __restrict__ out, const float* __restrict__ wts,
                            const int* __restrict__ ids, const T* __restrict__ extra, int rows, int H, int K) {
    pdl_launch();
    pdl_wait();
    FOR_N(i, (i64)rows * H) {
        const i64 r = i / H, c = i % H;
        float acc = 0.0f;
        bool any = false;
        for (int k = 0; k < K; k++) {
            const i64 s = r * K + k;
            if (ids[s] < 0) continue;
            // (_rn: no product and sum fused into one, which fp32 x
            // would otherwise get.)
            float v = to_f32(from_f32<T>(__fmul_rn(to_f32(out[s * H + c]), wts[s])));
            if (any) v = to_f32(from_f32<T>(__fadd_rn(acc, v)));
            acc = v, any = true;
        }
        if (extra) acc = any ? to_f32(from_f32<T>(__fadd_rn(acc, to_f32(extra[i])))) : to_f32(extra[i]);
        x[i] = from_f32<T>(__fadd_rn(to_f32(x[i]), acc));
    }
}

#define MOE(N, T)                                                                                                   \
    extern "C" __global__ void __launch_bounds__(256) moe_route_##N(int* ids, float* wts, int* order, const float* logits, \
                                                                    int rows, int E, int K, int norm) {             \
        moe_route<T>(ids, wts, order, logits, rows, E, K, norm);                                                    \
    }                                                                                                               \
    extern "C" __global__ void moe_combine_##N(T* x, const T* out, const float* wts, const int* ids, const T* extra, \
                                               int rows, int H, int K) {                                            \
        moe_combine<T>(x, out, wts, ids, extra, rows, H, K);                                                        \
    }
FOR_DTYPES(MOE)
