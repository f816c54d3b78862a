// rope.cu: rotate-half rotary embeddings (transformers apply_rotary_pos_emb),
// in place.
//
// rope_seq_T(x [rows, cols], rows, cols, hd, rd, pos0, seq, inv [rd/2]):
// rows/seq stacked sequences of seq rows, row t at position pos0 + t%seq;
// the first rd channels of every head of hd columns are rotated (rd = hd,
// or less for partial RoPE: Phi-4-mini's 96 of 128, Phi3's
// apply_rotary_pos_emb q_rot) and the rest left as they are: with d2 =
// rd/2 and j < d2, inv[j] the inverse frequencies, plain or scaled,
// computed on the host (runtime.RoPEFreqs, the CPU backend's table), a =
// fp32(pos)*inv[j] in fp32 (as transformers), cos and sin of a in
// double rounded to fp32, and
// x[j], x[j+d2] = x[j]cos - x[j+d2]sin, x[j+d2]cos + x[j]sin.
// One thread per (row, head, j); grid-stride.

#define ROPE(N, T)                                                                                        \
    extern "C" __global__ void rope_seq_##N(T* x, int rows, int cols, int hd, int rd, int pos0, int seq,    \
                                            const float* invf) {                                          \
        int d2 = rd / 2, heads = cols / hd;                                                               \
        FOR_N(i, (i64)rows * heads * d2) {                                                                \
            int j = (int)(i % d2);                                                                        \
            i64 rh = i / d2;                                                                              \
            int h = (int)(rh % heads);                                                                    \
            i64 t = rh / heads;                                                                           \
            float inv = invf[j];                                                                          \
            float a = (float)(pos0 + (int)(t % seq)) * inv;                                               \
            double s, c;                                                                                  \
            sincos((double)a, &s, &c);                                                                    \
            float cs = (float)c, sn = (float)s;                                                           \
            T* p = x + t * cols + (i64)h * hd;                                                            \
            float x1 = to_f32(p[j]), x2 = to_f32(p[j + d2]);                                              \
            p[j] = from_f32<T>(x1 * cs - x2 * sn);                                                        \
            p[j + d2] = from_f32<T>(x2 * cs + x1 * sn);                                                   \
        }                                                                                                 \
    }
FOR_DTYPES(ROPE)

// rope_tail_T(x [rows, cols], rows, cols, hd, c0, f): channels c0..hd-1 of
// every head of hd columns times f, in place (fp32 product rounded once
// to T): partial RoPE's unrotated channels of q scaled by 1/af², where
// the model folds longrope's attention factor af, which transformers
// multiplies into the rotated part's cos and sin alone, into the
// attention scale as af² (runtime.TailScaler). One thread per element;
// grid-stride.
#define ROPE_TAIL(N, T)                                                                                   \
    extern "C" __global__ void rope_tail_##N(T* x, int rows, int cols, int hd, int c0, float f) {         \
        int w = hd - c0, heads = cols / hd;                                                               \
        FOR_N(i, (i64)rows * heads * w) {                                                                 \
            int c = (int)(i % w);                                                                         \
            i64 rh = i / w;                                                                               \
            T* p = x + rh * hd + c0 + c;                                                                  \
            *p = from_f32<T>(to_f32(*p) * f);                                                             \
        }                                                                                                 \
    }
FOR_DTYPES(ROPE_TAIL)
