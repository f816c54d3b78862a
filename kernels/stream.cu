// stream.cu: read-bandwidth probes (runtime/cuda BenchmarkStream), to
// tell how fast a grid of the products' shape can stream weights from
// device memory by each way of loading them: every warp of the grid reads
// its own contiguous stretch of n 512-byte chunks (n / W of them, W the
// grid's warps), as a product's warps read their chunks, and folds what it
// reads into one word that decides whether sink is written (so that no
// load is dropped). ef: the loads' L2 policy is evict_first (1) or
// evict_normal (0), as qgemv.cu's QF_EVICT.
//
//   stream_ldg<D>:  16-byte loads into registers (ld.global.nc), D a
//                   thread in flight;
//   stream_cpa<D>:  the products' way: cp.async of 16 bytes a lane into a
//                   ring of D chunk slots a warp in shared memory, refilled
//                   one behind (D·512 bytes a warp of dynamic shared memory);
//   stream_bulk<C, S>: the copy engine (cp.async.bulk, sm_90, PTX 8.0):
//                   one lane of each warp copies C chunks at a time into a
//                   ring of S stages, each completing on an mbarrier
//                   (S·C·512 bytes a warp). Built only by NVRTC 12 and later.
//   stream_mma<V>:  stream_cpa<8> with the work of qgemv.cu's one-tile
//                   main loop on each chunk (below);
//   grid_barriers, stream_phases, stream_layer<D>: barriers of the whole
//                   grid, alone and between four streamed regions (a
//                   persistent kernel's layer), the rings drained at each
//                   barrier or running on across them;
//   stream_layer_bulk<C, S>: stream_layer with the copy engine's copies
//                   (stream_bulk's stages; NVRTC 12 and later).
//   stream_i8<V>:   stream_mma's loop with int8 activations (below);
//   stream_pdl_*:   stream_mma0, stream_i8 and stream_cpa8 launched with
//                   PDL, as the products are.
// Grid: any number of blocks of up to 1024 threads (32 warps); dynamic
// shared memory for each warp's ring (stream_mma: and x after the rings).

__device__ __forceinline__ u32 fold4(uint4 v) { return v.x ^ v.y ^ v.z ^ v.w; }
__device__ __forceinline__ u32 fold4(u32x4 v) { return v.a ^ v.b ^ v.c ^ v.d; }

// The chunks [c0, c1) of n that warp gw of W reads.
__device__ __forceinline__ void stretch(i64 n, i64& c0, int& nc) {
    const i64 W = (i64)gridDim.x * (blockDim.x >> 5), gw = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    c0 = gw * n / W;
    nc = (int)((gw + 1) * n / W - c0);
}

template <int D> __device__ void stream_ldg(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    const int lane = threadIdx.x & 31;
    i64 c0;
    int nc;
    stretch(n, c0, nc);
    const u64 pol = l2_policy(ef);
    const uint4* p = src + c0 * 32 + lane;
    u32 acc = 0;
    for (int i = 0; i < nc; i += D) {
        uint4 v[D];
#pragma unroll
        for (int u = 0; u < D; u++) v[u] = i + u < nc ? ldg_pol(p + (i64)(i + u) * 32, pol) : uint4{0, 0, 0, 0};
#pragma unroll
        for (int u = 0; u < D; u++) acc ^= fold4(v[u]);
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

// ring_start: this warp's ring of D chunk slots (stream_cpa, stream_mma):
// its stretch's first D chunks in flight; ring0 is this lane's slot 0, p
// its first chunk, nc the stretch's chunks.
struct Ring {
    u32 ring0;
    const uint4* p;
    int nc;
    u64 pol;
};
// ring_at: this warp's ring of D chunk slots over the nc chunks of src from
// chunk c0 (ring_start's, stream_wg's warpgroup quarters), its first D
// chunks in flight.
template <int D> __device__ __forceinline__ Ring ring_at(const uint4* __restrict__ src, i64 c0, int nc, int ef) {
    extern __shared__ uint4 smem_s[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const Ring r{smem_addr(smem_s) + (warp * D * 32 + lane) * 16, src + c0 * 32 + lane, nc, l2_policy(ef)};
#pragma unroll
    for (int i = 0; i < D; i++) {
        if (i < nc) cp_async16_pol(r.ring0 + i * 512, r.p + i * 32, r.pol);
        asm volatile("cp.async.commit_group;");
    }
    return r;
}
template <int D> __device__ __forceinline__ Ring ring_start(const uint4* __restrict__ src, i64 n, int ef) {
    i64 c0;
    int nc;
    stretch(n, c0, nc);
    return ring_at<D>(src, c0, nc, ef);
}

// cpa_stretch: this warp's stretch of the n chunks at src through its
// ring (stream_cpa; a phase of stream_phases), folded into a word.
// first: where lane 0 writes the global timer as the first chunk has
// arrived (stream_phases_ts), or null. P: the ring's first chunks go out
// before the wait for the kernel before (stream_pdl_cpa8).
template <int D, bool P = false>
__device__ __forceinline__ u32 cpa_stretch(const uint4* __restrict__ src, i64 n, int ef, u64* first = nullptr) {
    const Ring rg = ring_start<D>(src, n, ef);
    if (P) pdl_wait();
    const u32 ring0 = rg.ring0;
    const uint4* p = rg.p;
    const int nc = rg.nc;
    const u64 pol = rg.pol;
    u32 acc = 0;
    for (int i = 0; i < nc; i++) {
        const int slot = i & (D - 1);
        if (i > 0 && i - 1 + D < nc) cp_async16_pol(ring0 + ((slot - 1) & (D - 1)) * 512, p + (i64)(i - 1 + D) * 32, pol);
        asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group %0;" ::"n"(D - 1));
        acc ^= fold4(lds128(ring0 + slot * 512));
        if (first && i == 0 && (threadIdx.x & 31) == 0) {
            u64 t;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t) : "r"(acc));  // after the load (acc)
            *first = t;
        }
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    return acc;
}

template <int D> __device__ void stream_cpa(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    const u32 acc = cpa_stretch<D>(src, n, ef);
    if (acc == 0x9e3779b9u) *sink = acc;
}

// grid_sync: a barrier of all the grid's blocks, which must all be
// resident at once (no more blocks than the SMs hold). bar[0] counts the
// blocks arrived (left at 0), bar[1] the barriers passed; both start at 0.
// Thread 0 of each block reads the generation, arrives (acquire-release),
// and the last to arrive resets the count and releases the next
// generation, which the others wait for (acquire).
__device__ __forceinline__ void grid_sync(u32* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const u32 nb = gridDim.x * gridDim.y * gridDim.z;
        u32 g, old, cur;
        asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(g) : "l"(bar + 1) : "memory");
        asm volatile("atom.acq_rel.gpu.add.u32 %0, [%1], 1;" : "=r"(old) : "l"(bar) : "memory");
        if (old == nb - 1) {
            asm volatile("st.relaxed.gpu.u32 [%0], 0;" ::"l"(bar) : "memory");
            asm volatile("red.release.gpu.add.u32 [%0], 1;" ::"l"(bar + 1) : "memory");
        } else {
            do {
                asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(cur) : "l"(bar + 1) : "memory");
            } while (cur == g);
        }
    }
    __syncthreads();
}

// grid_barriers: rounds barriers of the whole grid in a row (what one
// costs a persistent kernel).
extern "C" __global__ void __launch_bounds__(1024) grid_barriers(u32* bar, int rounds) {
    for (int r = 0; r < rounds; r++) grid_sync(bar);
}

// grid_sync_tree: grid_sync with the arrivals spread over k counters
// (block b arrives at counter b % k; the last of each then arrives at the
// top one, and the top's last releases the generation), each counter in
// its own 128-byte line: bar[0] the generation, bar[32] the top count,
// bar[64 + 32 i] counter i, all starting at 0. Whether the 1.7 µs of a
// barrier of the grid is its one counter's serialized arrivals.
__device__ __forceinline__ void grid_sync_tree(u32* bar, int k) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const u32 nb = gridDim.x * gridDim.y * gridDim.z, b = blockIdx.x, i = b % k;
        const u32 members = nb / k + (i < nb % k);
        u32* sub = bar + 64 + 32 * i;
        u32 g, old, cur;
        asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(g) : "l"(bar) : "memory");
        asm volatile("atom.acq_rel.gpu.add.u32 %0, [%1], 1;" : "=r"(old) : "l"(sub) : "memory");
        bool wait = true;
        if (old == members - 1) {
            asm volatile("st.relaxed.gpu.u32 [%0], 0;" ::"l"(sub) : "memory");
            asm volatile("atom.acq_rel.gpu.add.u32 %0, [%1], 1;" : "=r"(old) : "l"(bar + 32) : "memory");
            if (old == (u32)k - 1) {
                asm volatile("st.relaxed.gpu.u32 [%0], 0;" ::"l"(bar + 32) : "memory");
                asm volatile("red.release.gpu.add.u32 [%0], 1;" ::"l"(bar) : "memory");
                wait = false;
            }
        }
        if (wait) do {
                asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(cur) : "l"(bar) : "memory");
            } while (cur == g);
    }
    __syncthreads();
}

// grid_barriers_tree: grid_barriers with grid_sync_tree's k counters.
extern "C" __global__ void __launch_bounds__(1024) grid_barriers_tree(u32* bar, int rounds, int k) {
    for (int r = 0; r < rounds; r++) grid_sync_tree(bar, k);
}

// gtimer: the global timer (ns).
__device__ __forceinline__ u64 gtimer() {
    u64 t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// idle_ns: every thread waits ns nanoseconds of the global timer (a
// stand-in for attention's time between two products).
__device__ __forceinline__ void idle_ns(long long ns) {
    if (ns <= 0) return;
    const u64 t0 = gtimer();
    while ((long long)(gtimer() - t0) < ns) {
    }
}

// stream_phases: the chunks of four regions one after another at src (n0
// .. n3 chunks: a decode layer's products), each streamed by the whole
// grid as stream_cpa<8> streams one, with a grid barrier between phases
// and idle ns after the first (a persistent kernel's layer that drains its
// rings at each barrier, against a launch a product).
extern "C" __global__ void __launch_bounds__(1024) stream_phases(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3,
                                                                 long long idle, u32* sink, u32* bar) {
    const i64 n[4] = {n0, n1, n2, n3};
    u32 acc = 0;
    for (int ph = 0; ph < 4; ph++) {
        if (ph > 0) grid_sync(bar);
        if (ph == 1) idle_ns(idle);
        acc ^= cpa_stretch<8>(src, n[ph], 1);
        src += n[ph] * 32;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

// stream_phases_ts: stream_phases (idle 0) with the global timer read at
// each step of each block into ts, one launch's record of nb = gridDim.x
// blocks: [0, nb) the blocks' starts; then for each phase ph the blocks'
// ends (their last warp's stretch done), [(1 + ph) nb, (2 + ph) nb); the
// blocks' exits from the barrier after phase ph (ph < 3) at
// [(5 + ph) nb, (6 + ph) nb); the warps' ends of phase ph at
// [8 nb + (ph nb + block) 32 + warp], and their first chunks' arrival
// 4 nb 32 after those. Phases of no chunks are skipped
// (n1 = n2 = n3 = 0 is the one-stream case), their stamps left as they
// were. Where a boundary's time goes: the blocks' spread, the barrier,
// the warps' spread within a block.
extern "C" __global__ void __launch_bounds__(1024) stream_phases_ts(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3,
                                                                    u32* sink, u32* bar, u64* ts) {
    const i64 n[4] = {n0, n1, n2, n3};
    const int nb = gridDim.x, b = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (threadIdx.x == 0) ts[b] = gtimer();
    u32 acc = 0;
    for (int ph = 0; ph < 4; ph++) {
        if (n[ph] == 0) continue;
        if (ph > 0) {
            grid_sync(bar);
            if (threadIdx.x == 0) ts[(4 + ph) * nb + b] = gtimer();
        }
        acc ^= cpa_stretch<8>(src, n[ph], 1, ts + 8 * nb + (4 + ph) * nb * 32 + b * 32 + warp);
        if (lane == 0) ts[8 * nb + (ph * nb + b) * 32 + warp] = gtimer();
        __syncthreads();
        if (threadIdx.x == 0) ts[(1 + ph) * nb + b] = gtimer();
        src += n[ph] * 32;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}

// stream_seq<D>: the four regions of stream_phases with each warp's ring
// of D chunks running on across the phases: the warp's stretches of the
// four regions are one sequence, so the next phase's first chunks are in
// flight through each phase boundary (boundary(ph) before phase ph) and
// through the idle time after the first.
template <int D, typename B>
__device__ void stream_seq(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3, long long idle, u32* sink, B boundary) {
    extern __shared__ uint4 smem_s[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const i64 n[4] = {n0, n1, n2, n3};
    // This warp's stretch of each region (its first chunk, this lane's
    // part) and the chunks of the sequence before each phase.
    const uint4* first[4];
    int cum[5];
    cum[0] = 0;
#pragma unroll
    for (int ph = 0; ph < 4; ph++) {
        i64 c0;
        int nc;
        stretch(n[ph], c0, nc);
        first[ph] = src + c0 * 32 + lane;
        cum[ph + 1] = cum[ph] + nc;
        src += n[ph] * 32;
    }
    const u64 pol = l2_policy(1);
    const u32 ring0 = smem_addr(smem_s) + (warp * D * 32 + lane) * 16;
    // The copy cursor: chunk rj of the sequence (in phase rph, at rp) goes
    // to slot rj % D next.
    int rj = 0, rph = 0;
    const uint4* rp = first[0];
    // (Phases picked by compare and select: an array indexed at run time
    // would live in local memory.)
    int rend = cum[1];  // the sequence index where phase rph ends
    auto issue = [&]() {
        if (rj >= cum[4]) return;
        while (rj == rend) {
            rph++;
            rp = rph == 1 ? first[1] : rph == 2 ? first[2] : first[3];
            rend = rph == 1 ? cum[2] : rph == 2 ? cum[3] : cum[4];
        }
        cp_async16_pol(ring0 + (rj & (D - 1)) * 512, rp, pol);
        rp += 32, rj++;
    };
#pragma unroll
    for (int i = 0; i < D; i++) {
        issue();
        asm volatile("cp.async.commit_group;");
    }
    u32 acc = 0;
#pragma unroll
    for (int ph = 0; ph < 4; ph++) {
        if (ph > 0) boundary(ph);  // the next chunks stay in flight
        if (ph == 1) idle_ns(idle);
        for (int i = cum[ph]; i < cum[ph + 1]; i++) {
            if (i > 0) issue();  // chunk i-1+D into the slot read in iteration i-1
            asm volatile("cp.async.commit_group;");
            asm volatile("cp.async.wait_group %0;" ::"n"(D - 1));
            acc ^= fold4(lds128(ring0 + (i & (D - 1)) * 512));
        }
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    if (acc == 0x9e3779b9u) *sink = acc;
}
// stream_layer<D>: stream_seq with a barrier of the grid at each boundary
// (what a persistent kernel that keeps its weights streaming would pay at
// its phase boundaries).
template <int D> __device__ void stream_layer(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3, long long idle, u32* sink,
                                              u32* bar) {
    stream_seq<D>(src, n0, n1, n2, n3, idle, sink, [&](int) { grid_sync(bar); });
}
#define STREAM_LAYER(D)                                                                                              \
    extern "C" __global__ void __launch_bounds__(1024) stream_layer##D(const uint4* src, i64 n0, i64 n1, i64 n2,     \
                                                                       i64 n3, long long idle, u32* sink, u32* bar) { \
        stream_layer<D>(src, n0, n1, n2, n3, idle, sink, bar);                                                      \
    }
STREAM_LAYER(8)
STREAM_LAYER(16)

// flow_wait: the boundary before phase ph of stream_flow. Block b says
// its phase ph-1 is done (flags[(ph-1)·NB + b] = gen, released after the
// block's barrier), then waits only for the blocks whose results its phase
// ph would read: with S slices, blocks [s·NB/S, (s+1)·NB/S) for s = b % S
// (a down block's K-slice, written by the gate/up blocks of those outputs;
// S = 1: every block, a barrier of the grid made of flags, as a norm
// between two products needs). Warp 0's lanes poll those flags, then a
// fence and the block's barrier order the block's next reads after them.
__device__ __forceinline__ void flow_wait(u32* flags, int ph, u32 gen, int S) {
    const int NB = gridDim.x, b = blockIdx.x;
    u32* f = flags + (i64)(ph - 1) * NB;
    __syncthreads();
    if (threadIdx.x == 0) asm volatile("st.release.gpu.u32 [%0], %1;" ::"l"(f + b), "r"(gen) : "memory");
    if (threadIdx.x < 32) {
        const int s = b % S, k1 = (s + 1) * NB / S;
        for (int k = s * NB / S + threadIdx.x; k < k1; k += 32) {
            u32 v;
            do {
                asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(v) : "l"(f + k) : "memory");
            } while (v != gen);
        }
        asm volatile("fence.acq_rel.gpu;" ::: "memory");
    }
    __syncthreads();
}

// stream_flow<D>: stream_seq with flow_wait at each boundary instead of a
// barrier of the grid: s1, s2, s3 are the slices of the boundaries before
// phases 1-3 (a layer's q/k/v → o_proj through attention, o_proj → gate/up
// through a norm, gate/up → down), gen this launch's generation (the host
// counts launches from 1; flags start at 0). What a dataflow decode kernel,
// whose blocks wait only for the blocks they read, would pay at its
// boundaries against stream_layer's barriers.
#define STREAM_FLOW(D)                                                                                                \
    extern "C" __global__ void __launch_bounds__(1024) stream_flow##D(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3, \
                                                                      long long idle, u32* sink, u32* flags, u32 gen,   \
                                                                      int s1, int s2, int s3) {                        \
        stream_seq<D>(src, n0, n1, n2, n3, idle, sink,                                                                 \
                      [&](int ph) { flow_wait(flags, ph, gen, ph == 1 ? s1 : ph == 2 ? s2 : s3); });                  \
    }
STREAM_FLOW(8)

// ring_drive<D>: a warp's ring of D chunk slots from ring0 (this lane's
// slot 0; slots 512 bytes apart), fed by issue(slot), which copies the
// warp's next chunk into this lane's part of that slot and returns true,
// or returns false once none is left: chunk k in slot k % D and commit
// group k (a group committed each round, empty once the chunks are out).
// Before the c-th chunk is read, at(c) is called. Returns the chunks
// folded into a word. The slots are addressed by two pointers that
// advance and wrap (wa, ra), not by the chunk count modulo D: with the
// count, ptxas (12.4 and 13.0 alike) split a copy's shared address into a
// register plus the uniform register UR0 and encoded its L2 policy as
// desc[UR1], an odd pair that overlaps it, and on the H200 the copy
// trapped (CUDA_ERROR_ILLEGAL_INSTRUCTION; compute-sanitizer stopped at
// that LDGSTS).
template <int D, typename I, typename A> __device__ __forceinline__ u32 ring_drive(u32 ring0, I issue, A at) {
    const u32 ring1 = ring0 + D * 512;
    auto next = [&](u32 a) { return a + 512 == ring1 ? ring0 : a + 512; };
    u32 wa = ring0, ra = ring0;
    int issued = 0;
#pragma unroll
    for (int i = 0; i < D; i++) {
        if (issue(wa)) issued++, wa = next(wa);
        asm volatile("cp.async.commit_group;");
    }
    u32 acc = 0;
    for (int c = 0; c < issued; c++) {
        at(c);
        asm volatile("cp.async.wait_group %0;" ::"n"(D - 1));
        acc ^= fold4(lds128(ra));
        ra = next(ra);
        if (issue(wa)) issued++, wa = next(wa);  // into the slot just read
        asm volatile("cp.async.commit_group;");
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    return acc;
}

// dyn_phase<D>: n chunks at src streamed by the grid through each warp's
// ring of D slots, as stream_cpa streams them, but each warp takes its
// chunks from the counter ctr in batches of G instead of a fixed stretch:
// lane 0 grabs the next batch as the warp starts the one before, so a grab's
// round trip is hidden behind a batch, and warps that stream faster take
// more batches (ring_drive). Returns the chunks folded into a word. H:
// the copies under evict_first (1, as the products copy) or with no hint
// (0).
template <int D, int H> __device__ u32 dyn_phase(const uint4* __restrict__ src, i64 n, u32* ctr, int G) {
    extern __shared__ uint4 smem_s[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const u32 ring0 = smem_addr(smem_s) + (warp * D * 32 + lane) * 16;
    const u64 pol = l2_policy(1);
    const i64 nbat = (n + G - 1) / G;
    u32 next = 0;  // (lane 0) the batch grabbed ahead
    if (lane == 0) next = atomicAdd(ctr, 1u);
    const uint4* p = src;
    i64 left = 0;       // chunks of the current batch not yet issued
    bool done = false;  // no batch left
    auto issue = [&](u32 slot) -> bool {
        if (left == 0) {
            if (done) return false;
            const i64 b = __shfl_sync(0xffffffffu, next, 0);
            if (b >= nbat) {
                done = true;
                return false;
            }
            if (lane == 0) next = atomicAdd(ctr, 1u);
            p = src + b * G * 32 + lane;
            left = b * G + G <= n ? G : n - b * G;
        }
        if (H)
            cp_async16_pol(slot, p, pol);
        else
            cp_async16(slot, p);
        p += 32, left--;
        return true;
    };
    return ring_drive<D>(ring0, issue, [](int) {});
}

// stream_dyn: stream_phases with each phase's chunks taken from a counter
// (dyn_phase<8>, batches of G chunks) instead of fixed stretches, a barrier
// of the grid between phases (phases of no chunks skipped): whether a
// layer's phase boundaries cost the blocks' imbalance within a phase (then
// these phases approach one stream plus the barriers) or something else.
// ctr holds the four phases' counters, zero as the launch starts (the
// host zeroes them). stream_dyn copies under evict_first, as the
// products do; stream_dyn_nh with no hint.
template <int H> __device__ void stream_dyn_h(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3, u32* sink, u32* bar, u32* ctr, int G) {
    const i64 n[4] = {n0, n1, n2, n3};
    u32 acc = 0;
    for (int ph = 0; ph < 4; ph++) {
        if (n[ph] == 0) continue;
        if (ph > 0) grid_sync(bar);
        acc ^= dyn_phase<8, H>(src, n[ph], ctr + ph, G);
        src += n[ph] * 32;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}
extern "C" __global__ void __launch_bounds__(1024) stream_dyn(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3,
                                                              u32* sink, u32* bar, u32* ctr, int G) {
    stream_dyn_h<1>(src, n0, n1, n2, n3, sink, bar, ctr, G);
}
extern "C" __global__ void __launch_bounds__(1024) stream_dyn_nh(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3,
                                                                 u32* sink, u32* bar, u32* ctr, int G) {
    stream_dyn_h<0>(src, n0, n1, n2, n3, sink, bar, ctr, G);
}

// stream_pieces: n chunks cut into pieces of C chunks a warp (W·C chunks,
// W the block's streaming warps; warp w streams chunks [w·C, (w+1)·C) of
// each piece), streamed through each warp's ring of D chunks (4:
// stream_pieces, as the wide GLU kernels; 8: stream_pieces_d8), the ring
// running on from piece to piece. dyn = 0: block b takes the pieces
// [b·np/nb, (b+1)·np/nb) in order; dyn = 1: the block's last warp (not
// streaming) takes pieces from the counter ctr (zero as the launch starts)
// one at a time, at most lead ahead of the block's slowest warp, into a
// list in shared memory that the warps read; dyn = 2: as 0, and the
// block lets the stream's next kernel start at once (PDL), whose blocks
// then take each SM as this launch's leave it (stream_tail). Each block's
// end (its last warp's last chunk read) goes to ends[b] (global timer), its
// SM to sms[b]. Whether gate/up's uneven end at 8 bits (two groups of GPCs
// ending 4.6 µs apart) is the memory's and whether pieces taken as blocks
// free up even it out.
template <int D>
__device__ void pieces(const uint4* src, i64 n, int C, int dyn, u32* ctr, u32* sink, u64* ends, u32* sms) {
    constexpr int MAXP = 256;
    extern __shared__ uint4 smem_s[];
    __shared__ int list[MAXP];       // the block's pieces in the order taken (-1: none left)
    __shared__ volatile int listed;  // entries of list written
    __shared__ volatile int at[16];  // the piece each streaming warp is reading
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (dyn == 2) pdl_launch();
    const int taker = dyn == 1;
    const int W = (blockDim.x >> 5) - taker, nb = gridDim.x, b = blockIdx.x;
    const i64 pc = (i64)W * C, np = (n + pc - 1) / pc;
    if (threadIdx.x == 0) listed = 0;
    if (threadIdx.x < 16) at[threadIdx.x] = 0;
    __syncthreads();
    // The pieces the taker keeps listed ahead of the slowest warp's: a
    // warp issues up to D chunks past the one it reads.
    const int lead = (D + C - 1) / C + 1;
    if (warp == W) {  // dyn: the taker
        if (lane == 0) {
            int k = 0;
            for (;;) {
                int slow = 1 << 30;
                for (int w = 0; w < W; w++) slow = min(slow, at[w]);
                if (k - slow >= lead) continue;
                const u32 p = atomicAdd(ctr, 1u);
                list[k] = p < np && k < MAXP - 1 ? (int)p : -1;
                __threadfence_block();
                listed = ++k;
                if (list[k - 1] < 0) break;
            }
        }
        return;
    }
    const i64 p0 = b * np / nb, p1 = (b + 1) * np / nb;
    // The k-th piece of this block, or -1.
    auto piece = [&](int k) -> i64 {
        if (!taker) return p0 + k < p1 ? p0 + k : -1;
        while (listed <= k) {
        }
        return list[k];
    };
    const u32 ring0 = smem_addr(smem_s) + (warp * D * 32 + lane) * 16;
    const u64 pol = l2_policy(1);
    // Chunk j of this warp's sequence: piece j / C, its chunk w·C + j % C.
    // A piece's index is read as its first chunk is issued, not before
    // (the taker lists pieces only so far ahead of the warps' reading).
    int ik = 0, ij = 0;  // the next chunk to issue: piece ik, chunk ij of it
    i64 ip = 0;
    bool done = false;
    auto issue = [&](u32 slot) -> bool {
        if (done) return false;
        if (ij == 0 && (ip = piece(ik)) < 0) {
            done = true;
            return false;
        }
        const i64 c = ip * pc + (i64)warp * C + ij;
        if (c < n) cp_async16_pol(slot, src + c * 32 + lane, pol);
        if (++ij == C) ij = 0, ik++;
        return true;
    };
    const u32 acc = ring_drive<D>(ring0, issue, [&](int c) {
        if (lane == 0 && c % C == 0) at[warp] = c / C;
    });
    if (lane == 0) at[warp] = 1 << 30;  // (the taker stops waiting for this warp)
    // The block's end: after its last streaming warp (named barrier 1, the
    // taker not counted).
    asm volatile("bar.sync 1, %0;" ::"r"(W * 32));
    if (threadIdx.x == 0) {
        u32 sm;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        ends[b] = gtimer(), sms[b] = sm;
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}
extern "C" __global__ void __launch_bounds__(512) stream_pieces(const uint4* src, i64 n, int C, int dyn, u32* ctr, u32* sink,
                                                              u64* ends, u32* sms) {
    pieces<4>(src, n, C, dyn, ctr, sink, ends, sms);
}
// stream_tail: a static stream_pieces of n chunks launched after one with
// dyn = 2 (runtime/cuda launches it with programmatic stream
// serialization; it reads nothing the launch before writes, so it does
// not wait for it): with shared memory for one block an SM beside one of
// the launch before's but not two, its blocks take the SMs that launch
// leaves first, the block scheduler handing out the tail.
extern "C" __global__ void __launch_bounds__(512) stream_tail(const uint4* src, i64 n, int C, u32* sink, u64* ends, u32* sms) {
    pieces<4>(src, n, C, 0, nullptr, sink, ends, sms);
}
extern "C" __global__ void __launch_bounds__(512) stream_pieces_d8(const uint4* src, i64 n, int C, int dyn, u32* ctr, u32* sink,
                                                                 u64* ends, u32* sms) {
    pieces<8>(src, n, C, dyn, ctr, sink, ends, sms);
}

#if defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
// The copy engine's stages (stream_bulk, stream_layer_bulk): bulk_init
// sets up a warp's S mbarriers (lane 0), bulk_stage copies bytes from src
// into dst completing on the mbarrier at b, bulk_wait waits for the
// stage's phase par.
template <int S> __device__ __forceinline__ void bulk_init(u64* bars) {
    for (int s = 0; s < S; s++) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bars[s])));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void bulk_stage(u32 dst, const uint4* src, int bytes, u32 b, u64 pol) {
    asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" ::"r"(b), "r"(bytes) : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(dst),
        "l"(src), "r"(bytes), "r"(b), "l"(pol)
        : "memory");
}
__device__ __forceinline__ void bulk_wait(u32 b, u32 par) {
    asm volatile("{ .reg .pred p; W: mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1; @!p bra W; }" ::"r"(b), "r"(par)
                 : "memory");
}
template <int C, int S> __device__ void stream_bulk(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    extern __shared__ uint4 smem_s[];
    __shared__ __align__(8) u64 bar[32][S];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    i64 c0;
    int nc;
    stretch(n, c0, nc);
    const u64 pol = l2_policy(ef);
    const u32 ring = smem_addr(smem_s) + warp * S * C * 512;
    const int nst = (nc + C - 1) / C;  // stages of C chunks, the last maybe shorter
    auto issue = [&](int j) {          // lane 0: stage j into its slot
        const int s = j % S;
        bulk_stage(ring + s * C * 512, src + (c0 + (i64)j * C) * 32, imin(C, nc - j * C) * 512, smem_addr(&bar[warp][s]), pol);
    };
    if (lane == 0) {
        bulk_init<S>(bar[warp]);
        for (int j = 0; j < imin(S, nst); j++) issue(j);
    }
    __syncwarp();
    u32 acc = 0;
    for (int j = 0; j < nst; j++) {
        const int s = j % S;
        bulk_wait(smem_addr(&bar[warp][s]), (j / S) & 1);
        const int ch = imin(C, nc - j * C);
        for (int c = 0; c < ch; c++) {
            acc ^= fold4(lds128(ring + (s * C + c) * 512 + lane * 16));
        }
        __syncwarp();  // every lane's reads of the slot are done before it is refilled
        if (lane == 0 && j + S < nst) issue(j + S);
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}
#define STREAM_BULK(C, S)                                                                                            \
    extern "C" __global__ void __launch_bounds__(1024) stream_bulk_c##C##_s##S(const uint4* src, i64 n, u32* sink,      \
                                                                              int ef) {                             \
        stream_bulk<C, S>(src, n, sink, ef);                                                                        \
    }

// stream_layer_bulk<C, S>: stream_layer with stream_bulk's copies: each
// warp's stretches of the four regions are one sequence of stages of up to
// C chunks (a stage does not cross regions), S stages in flight, issued by
// lane 0 with the copy engine, so that what a warp has in flight at a
// barrier or through the idle time is its whole ring (the engine's queue,
// not the SM's load slots, holds the copies).
template <int C, int S>
__device__ void stream_layer_bulk(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3, long long idle, u32* sink, u32* gbar) {
    extern __shared__ uint4 smem_s[];
    __shared__ __align__(8) u64 bar[32][S];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const i64 n[4] = {n0, n1, n2, n3};
    const uint4* first[4];
    int nc[4], cst[5];  // each phase's chunks, and the stages before it
    cst[0] = 0;
#pragma unroll
    for (int ph = 0; ph < 4; ph++) {
        i64 c0;
        stretch(n[ph], c0, nc[ph]);
        first[ph] = src + c0 * 32;
        cst[ph + 1] = cst[ph] + (nc[ph] + C - 1) / C;
        src += n[ph] * 32;
    }
    const u64 pol = l2_policy(1);
    const u32 ring = smem_addr(smem_s) + warp * S * C * 512;
    auto issue = [&](int G) {  // lane 0: stage G of the sequence into its slot
        const int ph = G < cst[1] ? 0 : G < cst[2] ? 1 : G < cst[3] ? 2 : 3;
        const int j = G - (ph == 0 ? 0 : ph == 1 ? cst[1] : ph == 2 ? cst[2] : cst[3]);
        const int ncp = ph == 0 ? nc[0] : ph == 1 ? nc[1] : ph == 2 ? nc[2] : nc[3];
        const uint4* fp = ph == 0 ? first[0] : ph == 1 ? first[1] : ph == 2 ? first[2] : first[3];
        const int s = G % S;
        bulk_stage(ring + s * C * 512, fp + (i64)j * C * 32, imin(C, ncp - j * C) * 512, smem_addr(&bar[warp][s]), pol);
    };
    const int total = cst[4];
    if (lane == 0) {
        bulk_init<S>(bar[warp]);
        for (int G = 0; G < imin(S, total); G++) issue(G);
    }
    __syncwarp();
    u32 acc = 0;
    for (int ph = 0; ph < 4; ph++) {
        if (ph > 0) grid_sync(gbar);  // the next stages stay in flight
        if (ph == 1) idle_ns(idle);
        for (int G = cst[ph]; G < cst[ph + 1]; G++) {
            const int s = G % S;
            bulk_wait(smem_addr(&bar[warp][s]), (G / S) & 1);
            const int ch = imin(C, nc[ph] - (G - cst[ph]) * C);
            for (int c = 0; c < ch; c++) acc ^= fold4(lds128(ring + (s * C + c) * 512 + lane * 16));
            __syncwarp();
            if (lane == 0 && G + S < total) issue(G + S);
        }
    }
    if (acc == 0x9e3779b9u) *sink = acc;
}
#define STREAM_LAYER_BULK(C, S)                                                                                      \
    extern "C" __global__ void __launch_bounds__(1024) stream_layer_bulk_c##C##_s##S(                                \
        const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3, long long idle, u32* sink, u32* bar) {                     \
        stream_layer_bulk<C, S>(src, n0, n1, n2, n3, idle, sink, bar);                                              \
    }
#else
#define STREAM_BULK(C, S)                                                                                            \
    extern "C" __global__ void stream_bulk_c##C##_s##S(const uint4* src, i64 n, u32* sink, int ef) { __trap(); }
#endif
#if !defined(__CUDACC_VER_MAJOR__) || __CUDACC_VER_MAJOR__ < 12
#define STREAM_LAYER_BULK(C, S)                                                                                      \
    extern "C" __global__ void stream_layer_bulk_c##C##_s##S(const uint4* src, i64 n0, i64 n1, i64 n2, i64 n3,       \
                                                             long long idle, u32* sink, u32* bar) {                  \
        __trap();                                                                                                    \
    }
#endif

// stream_mma<V>: stream_cpa<8> with the one-tile product's work on each
// chunk (qgemv.cu qmma, one row tile): the B fragments of x from shared
// memory (ldmatrix, x [8][1024 + 8] fp16 after the rings, cycled through),
// the 4-bit codes decoded into A fragments, four mma a chunk into a group
// sum folded into the accumulators every two chunks (groups of 128
// inputs). V = 0: as qmma (one group sum, each mma waiting for the one
// before); 1: two group sums, the steps alternating; 2: the decode only
// (no mma; the A fragments folded into the word); 3: the mma only (the
// raw words as A); 4: as 0, the B fragments of one row read with two
// 16-byte loads by lanes 0-3 alone (x laid out so that lane t's eight
// words of a chunk are contiguous; the other lanes' columns are
// discarded by the products and keep zeros here) instead of two
// ldmatrix.x4; 5: as 4 with every lane loading (eight rows); 6: as 0
// with the B fragments held in registers (no x loads: the bound).
template <int V, bool P = false> __device__ void stream_mma(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    constexpr int D = 8, LDX = 1024 + 8;
    extern __shared__ uint4 smem_s[];
    const int lane = threadIdx.x & 31;
    const Ring rg = ring_start<D>(src, n, ef);
    if (P) pdl_wait();
    const u32 ring0 = rg.ring0;
    const uint4* p = rg.p;
    const int nc = rg.nc;
    const u64 pol = rg.pol;
    u16* xs = (u16*)(smem_s + (blockDim.x >> 5) * D * 32);
    for (int e = threadIdx.x; e < 8 * LDX; e += blockDim.x) xs[e] = (u16)(0x3c00u ^ (e & 0x3ff));  // finite fp16
    __syncthreads();
    const u32 xb = smem_addr(xs + (lane & 7) * LDX + (lane >> 3) * 8);
    const u32 xq = smem_addr(xs + (V == 5 ? (lane >> 2) * LDX : 0) + (lane & 3) * 16);
    const u32 magic = 0x64006400u, sixteenth = 0x2c002c00u, zz0 = 0x64086408u, nz1 = 0x5f805f80u;
    const float s0 = 1.0f, s1 = 0.5f;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tmp[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    u32 fold = 0;
    int left = 2;
    const uint4* refill = p + (D - 2) * 32;
    for (int i0 = 0; i0 < nc; i0 += D) {
#pragma unroll
        for (int u = 0; u < D; u++) {
            const int i = i0 + u;
            if (i >= nc) break;
            refill += 32;
            cp_async16_if(ring0 + ((u - 1) & (D - 1)) * 512, refill, i > 0 && i - 1 + D < nc, pol);
            asm volatile("cp.async.commit_group;");
            asm volatile("cp.async.wait_group %0;" ::"n"(D - 1));
            const u32x4 w = lds128(ring0 + u * 512);
            const u32 xo = (i & 15) * 128;
            u32x4 bf[2];
            if (V == 4 || V == 5) {
                bf[0] = bf[1] = u32x4{0, 0, 0, 0};
                if (V == 5 || lane < 4) bf[0] = lds128(xq + xo), bf[1] = lds128(xq + xo + 16);
            } else if (V == 6) {
                bf[0] = u32x4{magic, sixteenth, magic, sixteenth}, bf[1] = u32x4{sixteenth, magic, sixteenth, magic};
            } else if (V != 2) {
                bf[0] = ldsm4(xb + xo), bf[1] = ldsm4(xb + xo + 64);
            }
            if (left == 0) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    acc[e] += (e < 2 ? s0 : s1) * (tmp[0][e] + (V == 1 ? tmp[1][e] : 0.0f));
                    tmp[0][e] = tmp[1][e] = 0.0f;
                }
                left = 2;
            }
            left--;
#pragma unroll
            for (int s = 0; s < 4; s++) {
                u32 a[4];
                if (V == 3) {
                    const u32 wd = word_of(w, s), wh = wd >> 8;
                    a[0] = wd, a[1] = wh, a[2] = wd ^ magic, a[3] = wh ^ magic;
                } else {
                    dq_step<4>(w, s, magic, zz0, zz0, nz1, a);
                }
                if (V == 2) {
                    fold ^= a[0] ^ a[1] ^ a[2] ^ a[3];
                } else {
                    const u32x4 v = bf[s / 2];
                    mma16816<f16>(tmp[V == 1 ? (s & 1) : 0], a, (s & 1) ? v.c : v.a, (s & 1) ? v.d : v.b);
                }
            }
        }
    }
    asm volatile("cp.async.wait_group 0;");
    if (P) pdl_launch();
#pragma unroll
    for (int e = 0; e < 4; e++) fold ^= __float_as_uint(acc[e] + tmp[0][e] + tmp[1][e]);
    if (fold == 0x9e3779b9u) *sink = fold;
}
#define STREAM_MMA(V)                                                                                                \
    extern "C" __global__ void __launch_bounds__(1024) stream_mma##V(const uint4* src, i64 n, u32* sink, int ef) {     \
        stream_mma<V>(src, n, sink, ef);                                                                            \
    }
STREAM_MMA(0)
STREAM_MMA(1)
STREAM_MMA(2)
STREAM_MMA(3)
STREAM_MMA(4)
STREAM_MMA(5)
STREAM_MMA(6)

// stream_mmr<V, D>: stream_mma's loop (V = 0: the decode and four mma a
// chunk, x by ldmatrix; 2: the decode alone) with the ring in registers
// instead of shared memory: each lane keeps its 16 bytes of the warp's
// next D chunks in flight as ld.global.nc loads, and the slot of the chunk
// being worked on is refilled with the chunk D ahead once its words have
// been decoded. No shared memory but x's. Launched at up to 768 threads
// (its registers), so BenchmarkStream runs it at 16 and 24 warps.
template <int V, int D> __device__ void stream_mmr(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    constexpr int LDX = 1024 + 8;
    extern __shared__ uint4 smem_s[];
    const int lane = threadIdx.x & 31;
    i64 c0;
    int nc;
    stretch(n, c0, nc);
    const u64 pol = l2_policy(ef);
    const uint4* p = src + c0 * 32 + lane;
    uint4 rr[D];
#pragma unroll
    for (int u = 0; u < D; u++) rr[u] = u < nc ? ldg_pol(p + (i64)u * 32, pol) : uint4{0, 0, 0, 0};
    u16* xs = (u16*)smem_s;
    for (int e = threadIdx.x; e < 8 * LDX; e += blockDim.x) xs[e] = (u16)(0x3c00u ^ (e & 0x3ff));  // finite fp16
    __syncthreads();
    const u32 xb = smem_addr(xs + (lane & 7) * LDX + (lane >> 3) * 8);
    const u32 magic = 0x64006400u, zz0 = 0x64086408u, nz1 = 0x5f805f80u;
    const float s0 = 1.0f, s1 = 0.5f;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    u32 fold = 0;
    int left = 2;
    for (int i0 = 0; i0 < nc; i0 += D) {
#pragma unroll
        for (int u = 0; u < D; u++) {
            const int i = i0 + u;
            if (i >= nc) break;
            const u32x4 w{rr[u].x, rr[u].y, rr[u].z, rr[u].w};
            u32 a[4][4];
#pragma unroll
            for (int s = 0; s < 4; s++) dq_step<4>(w, s, magic, zz0, zz0, nz1, a[s]);
            if (i + D < nc) rr[u] = ldg_pol(p + (i64)(i + D) * 32, pol);
            if (V == 2) {
#pragma unroll
                for (int s = 0; s < 4; s++) fold ^= a[s][0] ^ a[s][1] ^ a[s][2] ^ a[s][3];
                continue;
            }
            const u32 xo = (i & 15) * 128;
            const u32x4 bf[2] = {ldsm4(xb + xo), ldsm4(xb + xo + 64)};
            if (left == 0) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    acc[e] += (e < 2 ? s0 : s1) * tmp[e];
                    tmp[e] = 0.0f;
                }
                left = 2;
            }
            left--;
#pragma unroll
            for (int s = 0; s < 4; s++) {
                const u32x4 v = bf[s / 2];
                mma16816<f16>(tmp, a[s], (s & 1) ? v.c : v.a, (s & 1) ? v.d : v.b);
            }
        }
    }
#pragma unroll
    for (int e = 0; e < 4; e++) fold ^= __float_as_uint(acc[e] + tmp[e]);
    if (fold == 0x9e3779b9u) *sink = fold;
}
#define STREAM_MMR(V, D)                                                                                             \
    extern "C" __global__ void __launch_bounds__(768) stream_mmr##V##_d##D(const uint4* src, i64 n, u32* sink, int ef) { \
        stream_mmr<V, D>(src, n, sink, ef);                                                                         \
    }
STREAM_MMR(0, 4)
STREAM_MMR(0, 8)
STREAM_MMR(2, 8)

#define STREAM(KIND, D)                                                                                              \
    extern "C" __global__ void __launch_bounds__(1024) stream_##KIND##D(const uint4* src, i64 n, u32* sink, int ef) { \
        stream_##KIND<D>(src, n, sink, ef);                                                                         \
    }
STREAM(ldg, 4)
STREAM(ldg, 8)
STREAM(ldg, 16)
STREAM(cpa, 8)
STREAM(cpa, 16)
STREAM_BULK(1, 8)
STREAM_BULK(2, 4)
STREAM_BULK(4, 4)
STREAM_BULK(8, 4)
STREAM_LAYER_BULK(2, 4)
STREAM_LAYER_BULK(2, 6)

// stream_wg<V>: stream_mma's 4-bit work on warpgroup MMA instead of
// mma.sync (sm_90a: compiled only in the STREAM_WG part, kernels/module.go):
// the four warps of a warpgroup each stream a quarter of the warpgroup's
// stretch (the same number of chunks, since a wgmma takes all four), decode
// each chunk's four 16-input steps into A fragments in registers as qmma
// does, and multiply them by x (8 rows, 16 blocks of 64 inputs in the
// 128-byte swizzle, cycled through) with one wgmma.m64n8k16 a step, a
// chunk's four in one commit group: chunk i+1 is decoded into the other
// register set after wgmma.wait_group 1 has retired chunk i-1's. The
// decoded steps are multiplied by a group's fp16 scale (as the _w kernels'
// sc without WG_FS), so that one set of sums runs through and no group
// drains the pipeline. V = 7: that; 8: the raw words as A (no decode: the
// wgmma's own cost, as stream_mma3 is for mma.sync).
#ifndef STREAM_WG
#define STREAM_WG 0
#endif
#if STREAM_WG
__device__ __forceinline__ void wg_mma_n8(float (&d)[4], const u32 (&a)[4], u32 dlo) {
    asm volatile(
        "{\n.reg .pred p;\n.reg .b64 d;\nsetp.ne.b32 p, 1, 0;\nmov.b64 d, {%8, %9};\n"
        "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%0,%1,%2,%3}, {%4,%5,%6,%7}, d, p, 1, 1, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(dlo), "r"(WG_DHI));
}

template <int V> __device__ void stream_wg(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    constexpr int D = 8;
    extern __shared__ uint4 smem_s[];
    const int warp = threadIdx.x >> 5;
    const i64 G = (i64)gridDim.x * (blockDim.x >> 7), gg = (i64)blockIdx.x * (blockDim.x >> 7) + (warp >> 2);
    const i64 g0 = gg * n / G, g1 = (gg + 1) * n / G;
    const int q = (int)((g1 - g0) / 4);
    const Ring rg = ring_at<D>(src, g0 + (i64)(warp & 3) * q, q, ef);
    const u32 ring0 = rg.ring0;
    const uint4* p = rg.p;
    const int nc = rg.nc;
    const u64 pol = rg.pol;
    const u32 xs0 = smem_addr(smem_s + (blockDim.x >> 5) * D * 32), xs = (xs0 + 1023u) & ~1023u;
    u16* xp = (u16*)((char*)smem_s + (xs - smem_addr(smem_s)));
    for (int e = threadIdx.x; e < 16 * 512; e += blockDim.x) xp[e] = (u16)(0x3c00u ^ (e & 0x3ff));  // finite fp16
    __syncthreads();
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    const u32 magic = 0x64006400u, zz0 = 0x64086408u, nz1 = 0x5f805f80u, hs = 0x3c003c00u;
    float d[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};  // (one tile: wg_keep's shape)
    u32 a[2][4][4];
    auto decode = [&](const u32x4 w, u32 (&f)[4][4]) {
#pragma unroll
        for (int s = 0; s < 4; s++) {
            if (V == 8) {
                const u32 wd = word_of(w, s), wh = wd >> 8;
                f[s][0] = wd, f[s][1] = wh, f[s][2] = wd ^ magic, f[s][3] = wh ^ magic;
            } else {
                dq_step<4>(w, s, magic, zz0, zz0, nz1, f[s]);
#pragma unroll
                for (int e = 0; e < 4; e++) f[s][e] = hmul2(f[s][e], hs);
            }
        }
    };
    // take: chunk i from its slot, the slot of chunk i-1 (decoded by now)
    // refilled with chunk i-1+D.
    auto take = [&](int i) {
        cp_async16_if(ring0 + ((i - 1) & (D - 1)) * 512, p + (i64)(i - 1 + D) * 32, i > 0 && i - 1 + D < nc, pol);
        asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group %0;" ::"n"(D - 1));
        return lds128(ring0 + (i & (D - 1)) * 512);
    };
    if (nc > 0) decode(take(0), a[0]);
    for (int i0 = 0; i0 < nc; i0 += 2) {
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int i = i0 + u;
            if (i >= nc) break;
            const u32 xd = wg_desc(xs + (i & 15) * 1024);
            wg_fence();
#pragma unroll
            for (int s = 0; s < 4; s++) wg_mma_n8(d[0], a[u][s], xd + 2 * s);
            wg_commit();
            if (i + 1 < nc) {
                // (V 8: the words, which are A itself, loaded after the
                // wait, so that nothing defines A within a stage.)
                u32x4 w;
                if (V != 8) w = take(i + 1);
                wg_wait<1>();
                if (V == 8) w = take(i + 1);
                decode(w, a[u ^ 1]);
            }
        }
    }
    wg_wait<0>();
    wg_keep<1>(d);
    asm volatile("cp.async.wait_group 0;");
    u32 fold = 0;
#pragma unroll
    for (int e = 0; e < 4; e++) fold ^= __float_as_uint(d[0][e]);
    if (fold == 0x9e3779b9u) *sink = fold;
}
#define STREAM_WGK(V)                                                                                                \
    extern "C" __global__ void __launch_bounds__(1024) stream_wg##V(const uint4* src, i64 n, u32* sink, int ef) {      \
        stream_wg<V>(src, n, sink, ef);                                                                             \
    }
STREAM_WGK(7)
STREAM_WGK(8)
#endif

// stream_i8<V>: stream_mma's ring and chunks with the one-row loop of a
// product whose activations are int8 (a row's inputs quantized once a
// step, one scale a group of 128) instead of fp16: the 4-bit codes need no
// conversion, only split into bytes (lo = w & 0x0F0F0F0F, hi = (w >> 4) &
// 0x0F0F0F0F: three instructions a word against stream_mma's nine), and a
// chunk's 16 rows × 64 inputs take two int8 mma (m16n8k32, s32 sums)
// instead of four fp16 ones; every two chunks (a group) the sums are
// converted, less the group's zero times its Σx, and scaled into fp32.
// V = 0: that loop, x's B fragments by one ldmatrix.x4 a chunk; 2: the
// split alone (folded into the word); 7: the same split with dp4a on the
// CUDA cores instead of mma (a lane's 32 codes against its 32 bytes of x,
// two 16-byte loads a chunk; one row's sum a lane pair, added up once at
// the end); 8: 7 with x in two int8 parts, x ≈ s·(hi + lo/256), twice the
// dp4a and loads of x (int8 alone moved openchat-tiny's 4-bit perplexity
// by 0.05%, the two parts by 0.0001%). Whether int8 activations would
// leave an SM's loop more headroom over its share of memory than
// stream_mma0's ~10%.
__device__ __forceinline__ void mma16832s8(int* d, const u32* a, u32 b0, u32 b1) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <int V, bool P = false> __device__ void stream_i8(const uint4* __restrict__ src, i64 n, u32* sink, int ef) {
    constexpr int D = 8, LDX = 1024 + 16;  // x: 8 rows of 1024 int8 inputs (+16 bytes against bank conflicts)
    extern __shared__ uint4 smem_s[];
    const int lane = threadIdx.x & 31;
    const Ring rg = ring_start<D>(src, n, ef);
    if (P) pdl_wait();
    const u32 ring0 = rg.ring0;
    const uint4* p = rg.p;
    const int nc = rg.nc;
    const u64 pol = rg.pol;
    u8* xs = (u8*)(smem_s + (blockDim.x >> 5) * D * 32);
    for (int e = threadIdx.x; e < 8 * LDX; e += blockDim.x) xs[e] = (u8)((e * 37) & 0x7f);
    __syncthreads();
    // ldmatrix of b16 pairs: matrix i of a chunk's x is inputs 16i.. of rows 0-7.
    const u32 xb = smem_addr(xs + (lane & 7) * LDX + (lane >> 3) * 16);
    const u32 xq = smem_addr(xs + (lane & 1) * 32);
    const float s0 = 1.0f, s1 = 0.5f, zx0 = 8.0f, zx1 = 8.0f;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int tmp[4] = {0, 0, 0, 0};
    u32 fold = 0;
    int left = 2;
    const uint4* refill = p + (D - 2) * 32;
    for (int i0 = 0; i0 < nc; i0 += D) {
#pragma unroll
        for (int u = 0; u < D; u++) {
            const int i = i0 + u;
            if (i >= nc) break;
            refill += 32;
            cp_async16_if(ring0 + ((u - 1) & (D - 1)) * 512, refill, i > 0 && i - 1 + D < nc, pol);
            asm volatile("cp.async.commit_group;");
            asm volatile("cp.async.wait_group %0;" ::"n"(D - 1));
            const u32x4 w = lds128(ring0 + u * 512);
            const u32 xo = (i & (V == 8 ? 7 : 15)) * 64;
            if (left == 0) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    acc[e] = fmaf(e < 2 ? s0 : s1, (float)tmp[e] - (e < 2 ? zx0 : zx1), acc[e]);
                    tmp[e] = 0;
                }
                left = 2;
            }
            left--;
            u32 a[8];
#pragma unroll
            for (int s = 0; s < 4; s++) {
                const u32 wd = word_of(w, s);
                a[2 * s] = wd & 0x0F0F0F0Fu;
                a[2 * s + 1] = (wd >> 4) & 0x0F0F0F0Fu;
            }
            if (V == 2) {
#pragma unroll
                for (int s = 0; s < 8; s++) fold ^= a[s];
            } else if (V == 7 || V == 8) {
                const u32x4 x0 = lds128(xq + xo), x1 = lds128(xq + xo + 16);
                const u32 xv[8] = {x0.a, x0.b, x0.c, x0.d, x1.a, x1.b, x1.c, x1.d};
#pragma unroll
                for (int s = 0; s < 8; s++) tmp[s & 1] = __dp4a((int)a[s], (int)xv[s], tmp[s & 1]);
                if (V == 8) {  // x's low bytes (x ≈ s·(hi + lo/256)), 512 bytes past the high ones
                    const u32x4 y0 = lds128(xq + 512 + xo), y1 = lds128(xq + 512 + xo + 16);
                    const u32 yv[8] = {y0.a, y0.b, y0.c, y0.d, y1.a, y1.b, y1.c, y1.d};
#pragma unroll
                    for (int s = 0; s < 8; s++) tmp[2 + (s & 1)] = __dp4a((int)a[s], (int)yv[s], tmp[2 + (s & 1)]);
                }
            } else {
                const u32x4 bf = ldsm4(xb + xo);
                mma16832s8(tmp, a, bf.a, bf.b);
                mma16832s8(tmp, a + 4, bf.c, bf.d);
            }
        }
    }
    asm volatile("cp.async.wait_group 0;");
    if (P) pdl_launch();
    if (V >= 7) acc[0] += __shfl_xor_sync(0xffffffffu, acc[0] + (float)tmp[0] + (float)tmp[1], 1);
#pragma unroll
    for (int e = 0; e < 4; e++) fold ^= __float_as_uint(acc[e] + (float)tmp[e]);
    if (fold == 0x9e3779b9u) *sink = fold;
}
#define STREAM_I8(V)                                                                                                 \
    extern "C" __global__ void __launch_bounds__(1024) stream_i8_##V(const uint4* src, i64 n, u32* sink, int ef) {     \
        stream_i8<V>(src, n, sink, ef);                                                                             \
    }
STREAM_I8(0)
STREAM_I8(2)
STREAM_I8(7)
STREAM_I8(8)

// stream_pdl_*: stream_mma0, stream_i8_0 / _7 / _8 and stream_cpa8 launched with
// programmatic dependent launch (runtime/cuda pdlKernels), as the
// products are: the ring's first chunks go out, then the wait for the
// kernel before; the next kernel may launch as each block's loop ends.
// BenchmarkGridPhases' launches/pdl_* cases run them at 16 warps, two
// blocks an SM, so that the next launch's block starts beside this one's.
extern "C" __global__ void __launch_bounds__(1024) stream_pdl_mma0(const uint4* src, i64 n, u32* sink, int ef) {
    stream_mma<0, true>(src, n, sink, ef);
}
extern "C" __global__ void __launch_bounds__(1024) stream_pdl_i8_7(const uint4* src, i64 n, u32* sink, int ef) {
    stream_i8<7, true>(src, n, sink, ef);
}
extern "C" __global__ void __launch_bounds__(1024) stream_pdl_i8_8(const uint4* src, i64 n, u32* sink, int ef) {
    stream_i8<8, true>(src, n, sink, ef);
}
extern "C" __global__ void __launch_bounds__(1024) stream_pdl_i8_0(const uint4* src, i64 n, u32* sink, int ef) {
    stream_i8<0, true>(src, n, sink, ef);
}
extern "C" __global__ void __launch_bounds__(1024) stream_pdl_cpa8(const uint4* src, i64 n, u32* sink, int ef) {
    const u32 acc = cpa_stretch<8, true>(src, n, ef);
    pdl_launch();
    if (acc == 0x9e3779b9u) *sink = acc;
}
