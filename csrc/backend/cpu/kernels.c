/*
 * kernels.c -- optimized CPU kernels (OpenBLAS sgemm + OpenMP + loops the
 * compiler vectorizes). See kernels.h for the contract of each function.
 * Owns: the fast paths. The naive references live in kernels_naive.c.
 * Must not: allocate, print, abort, or depend on the model layer.
 */
/* Comparisons in the vectorized loops (clamps, max) may be if-converted:
 * nothing here relies on floating-point exception flags. Without this GCC
 * keeps every loop that calls fast_expf scalar. (sqrtf loops also need
 * -fno-math-errno, which setup.py passes: a pragma cannot turn errno off.) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "kernels.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../blas.h"

/* Below this many elements an elementwise kernel runs on one thread: a
 * parallel region costs a few microseconds on an idle machine and whole
 * scheduler time slices on a busy one. */
#define AZR_PAR_MIN (1 << 20)

/* exp(x) for x <= 88.7, vectorizable: Cody-Waite reduction to r in
 * [-ln2/2, ln2/2] and a degree-7 Taylor polynomial (relative error < 1e-7).
 * Inputs below -87.3 give a tiny positive number (treated as 0 by callers). */
static inline float fast_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.7f ? 88.7f : x;
    /* round to nearest by the 1.5 * 2^23 trick (vectorizes, |t| < 2^22) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.428606765330187045e-06f, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ---- gemm ------------------------------------------------------------------ */

static double gemm_seconds, gemm_flops;

static double wall_now(void) {
#ifdef _OPENMP
    return omp_get_wtime();
#else
    return 0.0;
#endif
}

void azr_gemm_stats(double *seconds, double *flops, int reset) {
    if (seconds) *seconds = gemm_seconds;
    if (flops) *flops = gemm_flops;
    if (reset) gemm_seconds = gemm_flops = 0.0;
}



static void gemm_any(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc, int b_is_weight) {
    if (M <= 0 || N <= 0) return;
    double t0 = wall_now();
    if (azr_gemm_get_precision())
        azr_gemm_bf16_ex(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, b_is_weight);
    else
        azr_gemm_f32(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    gemm_seconds += wall_now() - t0;
    gemm_flops += 2.0 * (double)M * (double)N * (double)(K > 0 ? K : 0);
}

void azr_gemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_any(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 0);
}

void azr_gemm_wb(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc) {
    gemm_any(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1);
}

void azr_gemm_f32(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (nt <= 1 || flops < 3e7 || K <= 0) {
        azr_sgemm(transa, transb, (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C,
                  (int)ldc);
        return;
    }
    /* OpenBLAS must not start its own threads inside ours */
    if (AZR_BLAS_NAME(openblas_get_num_threads)() != 1) azr_blas_set_threads(1);
    int split_n = N >= M;
    int64_t len = split_n ? N : M;
    int64_t blk = (len + nt - 1) / nt;
    blk = (blk + 15) / 16 * 16;
    int64_t nblk = (len + blk - 1) / blk;
#pragma omp parallel for schedule(static, 1) num_threads(nt)
    for (int64_t i = 0; i < nblk; i++) {
        int64_t lo = i * blk, n = len - lo < blk ? len - lo : blk;
        if (split_n) {
            const float *b = transb ? B + lo * ldb : B + lo;
            azr_sgemm(transa, transb, (int)M, (int)n, (int)K, alpha, A, (int)lda, b, (int)ldb,
                      beta, C + lo, (int)ldc);
        } else {
            const float *a = transa ? A + lo : A + lo * lda;
            azr_sgemm(transa, transb, (int)n, (int)N, (int)K, alpha, a, (int)lda, B, (int)ldb,
                      beta, C + lo * ldc, (int)ldc);
        }
    }
}

/* ---- linear ------------------------------------------------------------ */

void azr_linear_forward(float *y, const float *x, const float *w, const float *b, int64_t N,
                        int64_t in, int64_t out) {
    if (N <= 0 || out <= 0) return;
    if (in <= 0) {
        memset(y, 0, (size_t)(N * out) * sizeof(float));
    } else {
        azr_gemm_wb(0, 1, N, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    }
    if (b) {
#pragma omp parallel for schedule(static) if (N * out > AZR_PAR_MIN)
        for (int64_t n = 0; n < N; n++) {
            float *yr = y + n * out;
#pragma omp simd
            for (int64_t o = 0; o < out; o++) yr[o] += b[o];
        }
    }
}

void azr_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int64_t N, int64_t in, int64_t out, int accumulate_dx) {
    if (N <= 0 || in <= 0 || out <= 0) return;
    if (dx)
        azr_gemm_wb(0, 0, N, in, out, 1.0f, dy, out, w, in, accumulate_dx ? 1.0f : 0.0f, dx, in);
    if (dw)
        azr_gemm(1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db) {
        for (int64_t n = 0; n < N; n++) {
            const float *r = dy + n * out;
#pragma omp simd
            for (int64_t o = 0; o < out; o++) db[o] += r[o];
        }
    }
}

/* ---- RMSNorm ----------------------------------------------------------- */

/* One row. Not inlined: the serial and the threaded call below run the same
 * machine code, so a row's rounding does not depend on the batch size. */
static __attribute__((noinline)) void rmsnorm_row(float *yr, float *rstd, const float *xr,
                                                  const float *w, int64_t C, float eps) {
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; c++) ss += xr[c] * xr[c];
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (rstd) *rstd = r;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] = w[c] * (xr[c] * r);
}

void azr_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int64_t N,
                         int64_t C, float eps) {
    /* small calls (a decode step's few rows) skip the OpenMP region: even
     * one that runs serially costs ~0.5 us, several times the row */
    if (N * C <= AZR_PAR_MIN) {
        for (int64_t n = 0; n < N; n++) rmsnorm_row(y + n * C, rstd ? rstd + n : NULL, x + n * C, w, C, eps);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) rmsnorm_row(y + n * C, rstd ? rstd + n : NULL, x + n * C, w, C, eps);
}

void azr_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                          const float *rstd, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > AZR_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *gr = dy + n * C;
        float *dxr = dx + n * C;
        float r = rstd[n];
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < C; c++) dot += w[c] * gr[c] * xr[c];
        float k = r * r * r * dot / (float)C;
#pragma omp simd
        for (int64_t c = 0; c < C; c++) dxr[c] += r * w[c] * gr[c] - k * xr[c];
    }
    for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *gr = dy + n * C;
        float r = rstd[n];
#pragma omp simd
        for (int64_t c = 0; c < C; c++) dw[c] += gr[c] * xr[c] * r;
    }
}

/* ---- RoPE -------------------------------------------------------------- */

void azr_rope_table(float *cos_t, float *sin_t, const int32_t *pos, int64_t N, int D, float theta) {
    int half = D / 2;
    float inv[1024];
    for (int i = 0; i < half && i < 1024; i++)
        inv[i] = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)D));
#pragma omp parallel for schedule(static) if (N * half > AZR_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        float p = (float)pos[n];
        for (int i = 0; i < half; i++) {
            float a = p * inv[i];
            cos_t[n * half + i] = (float)cos((double)a);
            sin_t[n * half + i] = (float)sin((double)a);
        }
    }
}

static __attribute__((noinline)) void rope_row(float *xr, int nheads, int D, const float *cr,
                                               const float *sr, float sgn) {
    int half = D / 2;
    for (int h = 0; h < nheads; h++) {
        float *a = xr + (int64_t)h * D, *b = a + half;
#pragma omp simd
        for (int i = 0; i < half; i++) {
            float c = cr[i], s = sgn * sr[i];
            float x1 = a[i], x2 = b[i];
            a[i] = x1 * c - x2 * s;
            b[i] = x2 * c + x1 * s;
        }
    }
}

void azr_rope_apply(float *x, int64_t N, int nheads, int D, int64_t row_stride,
                    const float *cos_t, const float *sin_t, int inverse) {
    int half = D / 2;
    float sgn = inverse ? -1.0f : 1.0f;
    if (N * nheads * D <= AZR_PAR_MIN) { /* see azr_rmsnorm_forward */
        for (int64_t n = 0; n < N; n++)
            rope_row(x + n * row_stride, nheads, D, cos_t + n * half, sin_t + n * half, sgn);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++)
        rope_row(x + n * row_stride, nheads, D, cos_t + n * half, sin_t + n * half, sgn);
}

/* ---- attention --------------------------------------------------------- */

/* Attention runs in tiles of ATT_TILE query rows of one (sequence, head):
 * S = scale * Q_tile K^T over the keys up to the tile's last row (one sgemm,
 * reading q/k/v in place through their row strides), a causal softmax on S,
 * then O_tile = P V (one sgemm). Only a log-sum-exp per row is kept; the
 * backward recomputes P the same way. Per thread the scratch holds two
 * ATT_TILE x L blocks. */
#define ATT_TILE 64

int64_t azr_attention_scratch_floats(int64_t max_seq_len, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (max_seq_len < 1) max_seq_len = 1;
    return (int64_t)nthreads * 2 * ATT_TILE * (max_seq_len + 16);
}

static inline float dotf(const float *a, const float *b, int D) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

static int64_t attn_work(int B, const int64_t *seq_len, int H, int D) {
    int64_t w = 0;
    for (int b = 0; b < B; b++) w += seq_len[b] * seq_len[b];
    return w * H * D;
}

static int64_t max_len(int B, const int64_t *seq_len) {
    int64_t m = 0;
    for (int b = 0; b < B; b++) m = seq_len[b] > m ? seq_len[b] : m;
    return m;
}

void azr_attention_forward(float *out, float *lse, const float *qkv, int64_t N, int B,
                           const int64_t *seq_off, const int64_t *seq_len, int Hq, int Hkv, int D,
                           float *scratch) {
    int64_t row = (int64_t)(Hq + 2 * Hkv) * D, orow = (int64_t)Hq * D;
    int group = Hq / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    int64_t maxlen = max_len(B, seq_len);
    int64_t per_thread = 2 * ATT_TILE * (maxlen + 16);
    int64_t tiles_per_seq = (maxlen + ATT_TILE - 1) / ATT_TILE;
    int64_t units = (int64_t)B * Hq * tiles_per_seq;
    if (AZR_BLAS_NAME(openblas_get_num_threads)() != 1) azr_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1) if (attn_work(B, seq_len, Hq, D) > 4 * AZR_PAR_MIN)
    for (int64_t u = 0; u < units; u++) {
        /* largest tiles first: tile index runs backwards */
        int64_t tile = tiles_per_seq - 1 - u / ((int64_t)B * Hq);
        int b = (int)((u / Hq) % B), h = (int)(u % Hq), g = h / group;
        int64_t off = seq_off[b], L = seq_len[b];
        int64_t i0 = tile * ATT_TILE;
        if (i0 >= L) continue;
        int64_t rows = L - i0 < ATT_TILE ? L - i0 : ATT_TILE, end = i0 + rows;
        float *S = scratch + (int64_t)thread_id() * per_thread;
        const float *q = qkv + (off + i0) * row + (int64_t)h * D;
        const float *k = qkv + off * row + (int64_t)(Hq + g) * D;
        const float *v = qkv + off * row + (int64_t)(Hq + Hkv + g) * D;
        azr_sgemm(0, 1, (int)rows, (int)end, D, scale, q, (int)row, k, (int)row, 0.0f, S, (int)end);
        for (int64_t r = 0; r < rows; r++) {
            float *s = S + r * end;
            int64_t n = i0 + r + 1; /* causal: keys 0..i */
            float m = -INFINITY;
            for (int64_t j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < n; j++) {
                float e = fast_expf(s[j] - m);
                s[j] = e;
                sum += e;
            }
            float inv = 1.0f / sum;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) s[j] *= inv;
            for (int64_t j = n; j < end; j++) s[j] = 0.0f;
            if (lse) lse[(int64_t)h * N + off + i0 + r] = m + logf(sum);
        }
        azr_sgemm(0, 0, (int)rows, D, (int)end, 1.0f, S, (int)end, v, (int)row, 0.0f,
                  out + (off + i0) * orow + (int64_t)h * D, (int)orow);
    }
}

void azr_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, int64_t N, int B, const int64_t *seq_off,
                            const int64_t *seq_len, int Hq, int Hkv, int D, float *scratch) {
    int64_t row = (int64_t)(Hq + 2 * Hkv) * D, orow = (int64_t)Hq * D;
    int group = Hq / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    int64_t maxlen = max_len(B, seq_len);
    int64_t per_thread = 2 * ATT_TILE * (maxlen + 16);
    int64_t units = (int64_t)B * Hkv;
    if (AZR_BLAS_NAME(openblas_get_num_threads)() != 1) azr_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1) if (attn_work(B, seq_len, Hq, D) > 2 * AZR_PAR_MIN)
    for (int64_t u = 0; u < units; u++) {
        int b = (int)(u / Hkv), g = (int)(u % Hkv);
        int64_t off = seq_off[b], L = seq_len[b];
        float *P = scratch + (int64_t)thread_id() * per_thread;
        float *dS = P + ATT_TILE * (maxlen + 16);
        const float *k = qkv + off * row + (int64_t)(Hq + g) * D;
        const float *v = qkv + off * row + (int64_t)(Hq + Hkv + g) * D;
        float *dk = dqkv + off * row + (int64_t)(Hq + g) * D;
        float *dv = dqkv + off * row + (int64_t)(Hq + Hkv + g) * D;
        for (int64_t j = 0; j < L; j++) {
            memset(dk + j * row, 0, (size_t)D * sizeof(float));
            memset(dv + j * row, 0, (size_t)D * sizeof(float));
        }
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int64_t i0 = 0; i0 < L; i0 += ATT_TILE) {
                int64_t rows = L - i0 < ATT_TILE ? L - i0 : ATT_TILE, end = i0 + rows;
                const float *q = qkv + (off + i0) * row + (int64_t)h * D;
                const float *dO = dout + (off + i0) * orow + (int64_t)h * D;
                const float *O = out + (off + i0) * orow + (int64_t)h * D;
                float *dq = dqkv + (off + i0) * row + (int64_t)h * D;
                /* P = exp(scale q k^T - lse), dP = dO v^T */
                azr_sgemm(0, 1, (int)rows, (int)end, D, scale, q, (int)row, k, (int)row, 0.0f, P,
                          (int)end);
                azr_sgemm(0, 1, (int)rows, (int)end, D, 1.0f, dO, (int)orow, v, (int)row, 0.0f, dS,
                          (int)end);
                for (int64_t r = 0; r < rows; r++) {
                    float *p = P + r * end, *ds = dS + r * end;
                    int64_t n = i0 + r + 1;
                    float l = lse[(int64_t)h * N + off + i0 + r];
                    float Di = dotf(dO + r * orow, O + r * orow, D);
#pragma omp simd
                    for (int64_t j = 0; j < n; j++) {
                        float pj = fast_expf(p[j] - l);
                        p[j] = pj;
                        ds[j] = pj * (ds[j] - Di) * scale;
                    }
                    for (int64_t j = n; j < end; j++) p[j] = ds[j] = 0.0f;
                }
                /* dq = dS k ; dk += dS^T q ; dv += P^T dO */
                azr_sgemm(0, 0, (int)rows, D, (int)end, 1.0f, dS, (int)end, k, (int)row, 0.0f, dq,
                          (int)row);
                azr_sgemm(1, 0, (int)end, D, (int)rows, 1.0f, dS, (int)end, q, (int)row, 1.0f, dk,
                          (int)row);
                azr_sgemm(1, 0, (int)end, D, (int)rows, 1.0f, P, (int)end, dO, (int)orow, 1.0f, dv,
                          (int)row);
            }
        }
    }
}

void azr_attention_decode(float *out, const float *q, const float *kcache, const float *vcache,
                          int64_t ctx, int64_t kv_stride, int Hq, int Hkv, int D, float *scratch) {
    int group = Hq / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    for (int h = 0; h < Hq; h++) {
        int g = h / group;
        const float *qh = q + (int64_t)h * D;
        float *o = out + (int64_t)h * D;
        for (int d = 0; d < D; d++) o[d] = 0.0f;
        if (ctx <= 0) continue;
        float m = -INFINITY;
        for (int64_t j = 0; j < ctx; j++) {
            float v = dotf(qh, kcache + j * kv_stride + (int64_t)g * D, D) * scale;
            scratch[j] = v;
            m = v > m ? v : m;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < ctx; j++) {
            scratch[j] = fast_expf(scratch[j] - m);
            sum += scratch[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < ctx; j++) {
            const float *v = vcache + j * kv_stride + (int64_t)g * D;
            float p = scratch[j] * inv;
#pragma omp simd
            for (int d = 0; d < D; d++) o[d] += p * v[d];
        }
    }
}

/* ---- SwiGLU ------------------------------------------------------------ */

/* h = silu(g) * u over n elements (one code path for whole rows and for
 * the column ranges of azr_swiglu_forward_cols, so both give the same bits) */
static __attribute__((noinline)) void swiglu_span(float *hr, const float *g, const float *u,
                                                  int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + fast_expf(-g[i]));
        hr[i] = g[i] * sg * u[i];
    }
}

static void swiglu_row(float *hr, const float *g, int64_t I) { swiglu_span(hr, g, g + I, I); }

void azr_swiglu_forward_cols(float *h, const float *gu, int64_t N, int64_t I, int64_t i0,
                             int64_t i1) {
    for (int64_t n = 0; n < N; n++)
        swiglu_span(h + n * I + i0, gu + n * 2 * I + i0, gu + n * 2 * I + I + i0, i1 - i0);
}

void azr_swiglu_forward(float *h, const float *gu, int64_t N, int64_t I) {
    if (N * I <= AZR_PAR_MIN) { /* see azr_rmsnorm_forward */
        for (int64_t n = 0; n < N; n++) swiglu_row(h + n * I, gu + n * 2 * I, I);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) swiglu_row(h + n * I, gu + n * 2 * I, I);
}

void azr_swiglu_backward(float *dgu, const float *dh, const float *gu, int64_t N, int64_t I) {
#pragma omp parallel for schedule(static) if (N * I > AZR_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *g = gu + n * 2 * I, *u = g + I, *d = dh + n * I;
        float *dg = dgu + n * 2 * I, *du = dg + I;
#pragma omp simd
        for (int64_t i = 0; i < I; i++) {
            float sg = 1.0f / (1.0f + fast_expf(-g[i]));
            float silu = g[i] * sg;
            du[i] = d[i] * silu;
            dg[i] = d[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
    }
}

/* ---- vocabulary log-softmax ---------------------------------------------- */

void azr_vocab_logsoftmax(float *logits, int64_t rows, int64_t V, const int32_t *targets,
                          float *logp, float *ent, float *lse, const float *dcoef) {
#pragma omp parallel for schedule(static) if (rows * V > AZR_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        float *z = logits + r * V;
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int64_t v = 0; v < V; v++) m = z[v] > m ? z[v] : m;
        float sum = 0.0f, sz = 0.0f;
        float zt = (targets && logp) ? z[targets[r]] : 0.0f;
        if (dcoef) {
#pragma omp simd reduction(+ : sum, sz)
            for (int64_t v = 0; v < V; v++) {
                float e = fast_expf(z[v] - m);
                sum += e;
                sz += e * z[v];
                z[v] = e;
            }
        } else {
#pragma omp simd reduction(+ : sum, sz)
            for (int64_t v = 0; v < V; v++) {
                float e = fast_expf(z[v] - m);
                sum += e;
                sz += e * z[v];
            }
        }
        float ls = m + logf(sum);
        if (logp) logp[r] = zt - ls;
        if (ent) ent[r] = ls - sz / sum;
        if (lse) lse[r] = ls;
        if (dcoef) {
            float c = dcoef[r];
            float k = -c / sum;
#pragma omp simd
            for (int64_t v = 0; v < V; v++) z[v] *= k;
            if (targets) z[targets[r]] += c;
        }
    }
}

/* ---- optimizer ----------------------------------------------------------- */

double azr_sumsq(const float *x, int64_t n) {
    double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static) if (n > AZR_PAR_MIN)
    for (int64_t blk = 0; blk < (n + 4095) / 4096; blk++) {
        int64_t lo = blk * 4096, hi = lo + 4096 < n ? lo + 4096 : n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = lo; i < hi; i++) s += x[i] * x[i];
        total += (double)s;
    }
    return total;
}

void azr_adamw_update(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                      float b2, float eps, float wd, int64_t t, float gscale) {
    float bc1 = (float)(1.0 - pow((double)b1, (double)t));
    float bc2 = (float)(1.0 - pow((double)b2, (double)t));
    float step = lr / bc1, bc2s = sqrtf(bc2), decay = 1.0f - lr * wd;
    float inv_bc2s = 1.0f / bc2s;
#pragma omp parallel for schedule(static) if (n > AZR_PAR_MIN)
    for (int64_t blk = 0; blk < (n + 4095) / 4096; blk++) {
        int64_t lo = blk * 4096, hi = lo + 4096 < n ? lo + 4096 : n;
#pragma omp simd
        for (int64_t i = lo; i < hi; i++) {
            float gi = g[i] * gscale;
            float mi = m[i] + (1.0f - b1) * (gi - m[i]);
            float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] * decay - step * mi / (sqrtf(vi) * inv_bc2s + eps);
        }
    }
}
