/*
 * gen_kernels.c -- row-invariant skinny matrix product and paged attention
 * for the rollout engine (see gen_kernels.h for the contracts), with their
 * naive references.
 * Owns: the decode-step math that must not depend on batch shape or thread
 * count. Must not: allocate, print, abort, or call BLAS (whose rounding
 * depends on the shape).
 */
#include "gen_kernels.h"
#include "fastmath.h"

/* No implicit fused multiply-add contraction in this file: whether GCC
 * fuses a multiply and an add depends on how a loop was unrolled, which
 * would make the rounding of a row depend on the blocking chosen for its
 * batch. Fused multiply-adds are written explicitly (fma8 / fmaf) instead,
 * so every path rounds the same way. */
#pragma GCC optimize("fp-contract=off")
/* The vector helpers below are static and inlined: the ABI note GCC gives
 * for 32-byte vector arguments without -mavx does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
#define AZR_GEN_HAVE_FMA 1
#endif

/* 8 float lanes; GCC lowers this to AVX (ymm) with -march=native on x86-64
 * and to pairs of SSE/NEON registers elsewhere. */
typedef float v8f __attribute__((vector_size(32)));

static inline v8f ld8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* a * b + c, fused when the CPU has FMA (the same choice on every path). */
static inline v8f fma8(v8f a, v8f b, v8f c) {
#ifdef AZR_GEN_HAVE_FMA
    return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}

static inline float fma1(float a, float b, float c) {
#ifdef AZR_GEN_HAVE_FMA
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

/* The one lane reduction every path uses. */
static inline float hsum8(v8f a) {
    float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s2) + (s1 + s3);
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- skinny matrix product ------------------------------------------------ */

/* MR rows of x times NR rows of w: dots[i][j] = dot(x_i, w_j) in the fixed
 * order (lanes over k, hsum8, scalar tail). MR, NR are compile-time
 * constants at every call, so the loops unroll into registers. */
static inline __attribute__((always_inline)) void micro(int MR, int NR, const float *x,
                                                        int64_t ldx, const float *w, int64_t ldw,
                                                        int64_t in, float dots[4][4]) {
    v8f acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k8 = in & ~(int64_t)7;
    for (int64_t k = 0; k < k8; k += 8) {
        v8f wv[4];
        for (int j = 0; j < NR; j++) wv[j] = ld8(w + j * ldw + k);
        for (int i = 0; i < MR; i++) {
            v8f xv = ld8(x + i * ldx + k);
            for (int j = 0; j < NR; j++) acc[i][j] = fma8(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            float t = 0.0f;
            for (int64_t k = k8; k < in; k++) t = fma1(x[i * ldx + k], w[j * ldw + k], t);
            dots[i][j] = hsum8(acc[i][j]) + t;
        }
}

static inline void store(float *y, int64_t out, int64_t i0, int64_t o0, int MR, int NR,
                         float dots[4][4], const float *b, int accumulate) {
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            float v = dots[i][j] + (b ? b[o0 + j] : 0.0f);
            float *dst = y + (i0 + i) * out + o0 + j;
            *dst = accumulate ? *dst + v : v;
        }
}

#define OUT_BLOCK 16

void azr_gen_matmul(float *y, const float *x, const float *w, const float *b, int64_t M,
                    int64_t in, int64_t out, int accumulate) {
    if (M <= 0 || out <= 0) return;
    int64_t tasks = (out + OUT_BLOCK - 1) / OUT_BLOCK;
    int64_t M4 = M & ~(int64_t)3;
    int par = (M * in * out) > 32768;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t o0 = t * OUT_BLOCK, o1 = o0 + OUT_BLOCK < out ? o0 + OUT_BLOCK : out;
        float dots[4][4];
        /* groups of 4 rows (kept in L1) times pairs of this block's weight
         * rows (kept in L2): 4x2 register blocks */
        for (int64_t i = 0; i < M4; i += 4) {
            for (int64_t o = o0; o < o1; o += 2) {
                const float *wo = w + o * in;
                if (o + 2 <= o1) {
                    micro(4, 2, x + i * in, in, wo, in, in, dots);
                    store(y, out, i, o, 4, 2, dots, b, accumulate);
                } else {
                    micro(4, 1, x + i * in, in, wo, in, in, dots);
                    store(y, out, i, o, 4, 1, dots, b, accumulate);
                }
            }
        }
        /* the last M % 4 rows: 1x4 blocks (a single decode row is this path) */
        for (int64_t i = M4; i < M; i++) {
            int64_t o = o0;
            for (; o + 4 <= o1; o += 4) {
                micro(1, 4, x + i * in, in, w + o * in, in, in, dots);
                store(y, out, i, o, 1, 4, dots, b, accumulate);
            }
            for (; o < o1; o++) {
                micro(1, 1, x + i * in, in, w + o * in, in, in, dots);
                store(y, out, i, o, 1, 1, dots, b, accumulate);
            }
        }
    }
}

/* ---- packed weights ---------------------------------------------------------- */

int64_t azr_gen_packed_floats(int64_t in, int64_t out) {
    return (out + AZR_GEN_PANEL - 1) / AZR_GEN_PANEL * AZR_GEN_PANEL * in;
}

void azr_gen_pack(float *dst, const float *w, int64_t in, int64_t out) {
    int64_t panels = (out + AZR_GEN_PANEL - 1) / AZR_GEN_PANEL;
#pragma omp parallel for schedule(static) if (in * out > 65536)
    for (int64_t p = 0; p < panels; p++) {
        float *d = dst + p * AZR_GEN_PANEL * in;
        for (int j = 0; j < AZR_GEN_PANEL; j++) {
            int64_t o = p * AZR_GEN_PANEL + j;
            if (o < out) {
                const float *wr = w + o * in;
                for (int64_t k = 0; k < in; k++) d[k * AZR_GEN_PANEL + j] = wr[k];
            } else {
                for (int64_t k = 0; k < in; k++) d[k * AZR_GEN_PANEL + j] = 0.0f;
            }
        }
    }
}

/* MR rows x one 16-wide panel: acc[i][.] = fma chain over k. */
static inline __attribute__((always_inline)) void panel_kernel(int MR, const float *x, int64_t in,
                                                               const float *wp, v8f acc[6][2]) {
    for (int i = 0; i < MR; i++) {
        acc[i][0] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
        acc[i][1] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
    }
    for (int64_t k = 0; k < in; k++) {
        v8f w0 = ld8(wp + k * AZR_GEN_PANEL), w1 = ld8(wp + k * AZR_GEN_PANEL + 8);
        for (int i = 0; i < MR; i++) {
            float xs = x[i * in + k];
            v8f xb = {xs, xs, xs, xs, xs, xs, xs, xs};
            acc[i][0] = fma8(xb, w0, acc[i][0]);
            acc[i][1] = fma8(xb, w1, acc[i][1]);
        }
    }
}

static inline void panel_store(float *y, int64_t out, int64_t i0, int MR, int64_t o0,
                               v8f acc[6][2], const float *b, int accumulate) {
    int64_t n = out - o0 < AZR_GEN_PANEL ? out - o0 : AZR_GEN_PANEL;
    for (int i = 0; i < MR; i++) {
        float v[AZR_GEN_PANEL];
        memcpy(v, &acc[i][0], sizeof(v8f));
        memcpy(v + 8, &acc[i][1], sizeof(v8f));
        float *dst = y + (i0 + i) * out + o0;
        for (int64_t j = 0; j < n; j++) {
            float t = v[j] + (b ? b[o0 + j] : 0.0f);
            dst[j] = accumulate ? dst[j] + t : t;
        }
    }
}

void azr_gen_matmul_packed(float *y, const float *x, const float *wp, const float *b, int64_t M,
                           int64_t in, int64_t out, int accumulate) {
    if (M <= 0 || out <= 0) return;
    int64_t panels = (out + AZR_GEN_PANEL - 1) / AZR_GEN_PANEL;
    int64_t M6 = M - M % 6;
    int par = (M * in * out) > 32768;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t p = 0; p < panels; p++) {
        const float *pw = wp + p * AZR_GEN_PANEL * in;
        int64_t o0 = p * AZR_GEN_PANEL;
        v8f acc[6][2];
        for (int64_t i = 0; i < M6; i += 6) {
            panel_kernel(6, x + i * in, in, pw, acc);
            panel_store(y, out, i, 6, o0, acc, b, accumulate);
        }
        int64_t i = M6;
        switch (M - M6) {
        case 5: panel_kernel(5, x + i * in, in, pw, acc); panel_store(y, out, i, 5, o0, acc, b, accumulate); break;
        case 4: panel_kernel(4, x + i * in, in, pw, acc); panel_store(y, out, i, 4, o0, acc, b, accumulate); break;
        case 3: panel_kernel(3, x + i * in, in, pw, acc); panel_store(y, out, i, 3, o0, acc, b, accumulate); break;
        case 2: panel_kernel(2, x + i * in, in, pw, acc); panel_store(y, out, i, 2, o0, acc, b, accumulate); break;
        case 1: panel_kernel(1, x + i * in, in, pw, acc); panel_store(y, out, i, 1, o0, acc, b, accumulate); break;
        default: break;
        }
    }
}

void azr_gen_matmul_naive(float *y, const float *x, const float *w, const float *b, int64_t M,
                          int64_t in, int64_t out, int accumulate) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = 0.0;
            for (int64_t k = 0; k < in; k++) s += (double)x[i * in + k] * (double)w[o * in + k];
            if (b) s += b[o];
            y[i * out + o] = (float)((accumulate ? (double)y[i * out + o] : 0.0) + s);
        }
}

/* ---- paged attention ---------------------------------------------------- */


static inline float dot_d(const float *a, const float *b, int D) {
    int d8 = D & ~7;
    v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int d = 0; d < d8; d += 8) acc = fma8(ld8(a + d), ld8(b + d), acc);
    float t = 0.0f;
    for (int d = d8; d < D; d++) t = fma1(a[d], b[d], t);
    return hsum8(acc) + t;
}

int64_t azr_gen_attention_scratch_floats(int Hq, int Hkv, int64_t max_ctx, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    return (int64_t)nthreads * (Hq / Hkv) * (max_ctx + 8);
}

void azr_gen_paged_attention(float *out, const float *q, int64_t q_stride, const float *kv,
                             int64_t block_stride, int64_t v_offset, int block_size,
                             const int32_t *tables, const int64_t *table_off,
                             const int32_t *pos, int64_t N, int Hq, int Hkv, int D,
                             float *scratch, int64_t max_ctx) {
    int group = Hq / Hkv;
    int64_t Dkv = (int64_t)Hkv * D, Dq = (int64_t)Hq * D;
    float scale = 1.0f / sqrtf((float)D);
    int64_t units = N * Hkv;
    int64_t per_thread = (int64_t)group * (max_ctx + 8);
    (void)num_threads;
#pragma omp parallel for schedule(dynamic, 1) if (units > 1)
    for (int64_t u = 0; u < units; u++) {
        int64_t r = u / Hkv;
        int g = (int)(u % Hkv);
        int64_t ctx = (int64_t)pos[r] + 1;
        const int32_t *table = tables + table_off[r];
        float *s = scratch + (int64_t)thread_id() * per_thread;
        const float *qg = q + r * q_stride + (int64_t)g * group * D;
        float mx[64], inv[64];
        /* scores, one pass over the keys for all query heads of the group */
        for (int h = 0; h < group; h++) mx[h] = -INFINITY;
        for (int64_t j = 0; j < ctx; j++) {
            const float *k = kv + (int64_t)table[j / block_size] * block_stride +
                             (j % block_size) * Dkv + (int64_t)g * D;
            for (int h = 0; h < group; h++) {
                float v = dot_d(qg + (int64_t)h * D, k, D) * scale;
                s[h * (max_ctx + 8) + j] = v;
                mx[h] = v > mx[h] ? v : mx[h];
            }
        }
        for (int h = 0; h < group; h++) {
            float *sh = s + h * (max_ctx + 8), m = mx[h], sum = 0.0f;
            for (int64_t j = 0; j < ctx; j++) {
                float e = exp_neg(sh[j] - m);
                sh[j] = e;
                sum += e;
            }
            inv[h] = 1.0f / sum;
            float *o = out + r * Dq + (int64_t)(g * group + h) * D;
            for (int d = 0; d < D; d++) o[d] = 0.0f;
        }
        for (int64_t j = 0; j < ctx; j++) {
            const float *v = kv + (int64_t)table[j / block_size] * block_stride + v_offset +
                             (j % block_size) * Dkv + (int64_t)g * D;
            for (int h = 0; h < group; h++) {
                float p = s[h * (max_ctx + 8) + j] * inv[h];
                float *o = out + r * Dq + (int64_t)(g * group + h) * D;
#pragma omp simd
                for (int d = 0; d < D; d++) o[d] += p * v[d];
            }
        }
    }
}

void azr_gen_paged_attention_naive(float *out, const float *q, int64_t q_stride, const float *kv,
                                   int64_t block_stride, int64_t v_offset, int block_size,
                                   const int32_t *tables, const int64_t *table_off,
                                   const int32_t *pos, int64_t N, int Hq, int Hkv, int D) {
    int group = Hq / Hkv;
    int64_t Dkv = (int64_t)Hkv * D, Dq = (int64_t)Hq * D;
    double scale = 1.0 / sqrt((double)D);
    for (int64_t r = 0; r < N; r++) {
        const int32_t *table = tables + table_off[r];
        int64_t ctx = (int64_t)pos[r] + 1;
        for (int h = 0; h < Hq; h++) {
            int g = h / group;
            const float *qh = q + r * q_stride + (int64_t)h * D;
            double m = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < ctx; j++) {
                const float *k = kv + (int64_t)table[j / block_size] * block_stride +
                                 (j % block_size) * Dkv + (int64_t)g * D;
                double sc = 0.0;
                for (int d = 0; d < D; d++) sc += (double)qh[d] * k[d];
                sc *= scale;
                if (sc > m) m = sc;
            }
            float *o = out + r * Dq + (int64_t)h * D;
            double acc[2048];
            for (int d = 0; d < D; d++) acc[d] = 0.0;
            for (int64_t j = 0; j < ctx; j++) {
                int64_t base = (int64_t)table[j / block_size] * block_stride + (j % block_size) * Dkv +
                               (int64_t)g * D;
                double sc = 0.0;
                for (int d = 0; d < D; d++) sc += (double)qh[d] * kv[base + d];
                double p = exp(sc * scale - m);
                sum += p;
                for (int d = 0; d < D; d++) acc[d] += p * kv[base + v_offset + d];
            }
            for (int d = 0; d < D; d++) o[d] = (float)(acc[d] / sum);
        }
    }
}
