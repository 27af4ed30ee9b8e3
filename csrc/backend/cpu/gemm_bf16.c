/*
 * gemm_bf16.c -- matrix products with bfloat16 inputs and fp32 sums
 * (azr_gemm_bf16; azr_gemm takes this path when the matmul precision is
 * bf16). See kernels.h for the contract.
 *
 * How: op(A) and op(B) are rounded to bf16 while being packed -- A in blocks
 * of MR rows, B in panels of NR columns, both with pairs of consecutive k
 * side by side in one 32-bit word, the layout vdpbf16ps multiplies -- and a
 * 12x32 register tile accumulates each block x panel product in fp32. The
 * packed copies are made once per call (a product's inputs are read once to
 * pack; rounding a weight matrix costs about what reading it costs, small
 * beside the M*N*K of a training product), so no bf16 copy of the weights
 * has to be kept in step with the optimizer.
 *
 * Machines without AVX512-BF16 (every x86-64 can run this file) multiply the
 * same rounded inputs with the fp32 path: the same products of the same
 * bf16 values, summed in another order.
 *
 * Owns: rounding to bf16, packing, the microkernel, its threads.
 * Must not: change results by thread count (each output tile is one thread's
 * fixed-order chain).
 */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../../core/cpu.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AZR_HAVE_BF16_KERNEL 1
#endif

#define MR 12
#define NR 32

static int g_bf16; /* azr_gemm's precision: 1 = bf16 inputs */

/* The weight cache: packed panels of B operands marked as weights, while on
 * (one model call). A handful of entries per layer and the head. */
#define WC_MAX 512
typedef struct {
    const float *B;
    int64_t ldb, K, N;
    int transb;
    uint32_t *Bp;
} wc_entry;
static _Thread_local wc_entry g_wc[WC_MAX]; /* per calling thread: two threads running models never share one */
static _Thread_local int g_wc_n, g_wc_on;

void azr_gemm_weight_cache(int on) {
    for (int i = 0; i < g_wc_n; i++) free(g_wc[i].Bp);
    g_wc_n = 0;
    g_wc_on = on != 0;
}

static wc_entry *wc_find(const float *B, int64_t ldb, int64_t K, int64_t N, int transb) {
    for (int i = 0; i < g_wc_n; i++)
        if (g_wc[i].B == B && g_wc[i].ldb == ldb && g_wc[i].K == K && g_wc[i].N == N &&
            g_wc[i].transb == transb)
            return &g_wc[i];
    return NULL;
}

void azr_gemm_set_precision(int bf16) { g_bf16 = bf16 != 0; }
int azr_gemm_get_precision(void) { return g_bf16; }

/* Branch-free so the packing loops vectorize. */
static inline uint16_t round_bits(uint32_t u) {
    uint32_t rne = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* to nearest, ties to even; overflow -> inf */
    uint32_t nan = (u >> 16) | 0x0040u;                     /* NaN stays NaN, quiet */
    uint32_t zero = (u >> 16) & 0x8000u;                     /* zero, subnormal: signed zero */
    uint32_t r = (u & 0x7fffffffu) > 0x7f800000u ? nan : rne;
    return (uint16_t)((u & 0x7f800000u) == 0 ? zero : r);
}

uint16_t azr_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return round_bits(u);
}

/* dst[i] = bf16 of src[i], i < n */
static void round_row(uint16_t *restrict dst, const float *restrict src, int64_t n) {
    const uint32_t *u = (const uint32_t *)(const void *)src;
    for (int64_t i = 0; i < n; i++) dst[i] = round_bits(u[i]);
}

static inline float bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t pair(float lo, float hi) {
    return (uint32_t)azr_bf16_round(lo) | ((uint32_t)azr_bf16_round(hi) << 16);
}

/* op(A) (i, k) and op(B) (k, j) */
#define AEL(i, k) (transa ? A[(k) * lda + (i)] : A[(i) * lda + (k)])
#define BEL(k, j) (transb ? B[(j) * ldb + (k)] : B[(k) * ldb + (j)])

/* Rows i0 .. i0+MR of A (not transposed), k pairs 0 .. KK, into
 * Ap[kk * MR + i] (zeros past M or K); tmp: K + 1 halves of scratch. */
static void pack_a(uint32_t *Ap, const float *A, int64_t lda, int64_t M, int64_t K, int64_t i0,
                   uint16_t *tmp) {
    int64_t KK = (K + 1) / 2;
    { /* row i of op(A) is a row of A: round it whole, then deal its pairs */
        for (int i = 0; i < MR; i++) {
            if (i0 + i >= M) {
                for (int64_t kk = 0; kk < KK; kk++) Ap[kk * MR + i] = 0;
                continue;
            }
            round_row(tmp, A + (i0 + i) * lda, K);
            tmp[K] = 0;
            for (int64_t kk = 0; kk < KK; kk++)
                Ap[kk * MR + i] = (uint32_t)tmp[2 * kk] | ((uint32_t)tmp[2 * kk + 1] << 16);
        }
        return;
    }
}

/* Transposed A (stored K x M): k pair kk of every row block at once --
 * rows 2kk and 2kk+1 of A, rounded whole, dealt into each block's words.
 * tmp: 2 M halves of scratch. */
static void pack_a_t(uint32_t *Ap, const float *A, int64_t lda, int64_t M, int64_t K, int64_t kk,
                     uint16_t *tmp) {
    int64_t KK = (K + 1) / 2, nrb = (M + MR - 1) / MR;
    uint16_t *t0 = tmp, *t1 = tmp + M;
    round_row(t0, A + 2 * kk * lda, M);
    if (2 * kk + 1 < K)
        round_row(t1, A + (2 * kk + 1) * lda, M);
    else
        memset(t1, 0, (size_t)M * sizeof *t1);
    for (int64_t rb = 0; rb < nrb; rb++) {
        uint32_t *w = Ap + (rb * KK + kk) * MR;
        for (int i = 0; i < MR; i++) {
            int64_t r = rb * MR + i;
            w[i] = r < M ? (uint32_t)t0[r] | ((uint32_t)t1[r] << 16) : 0;
        }
    }
}

/* Columns j0 .. j0+NR of op(B) into Bp[kk * NR + j]; tmp as for pack_a. */
static void pack_b(uint32_t *Bp, int transb, const float *B, int64_t ldb, int64_t N, int64_t K,
                   int64_t j0, uint16_t *tmp) {
    int64_t KK = (K + 1) / 2;
    int64_t nj = N - j0 < NR ? N - j0 : NR;
    if (transb) { /* column j of op(B) is row j of B */
        for (int64_t j = 0; j < NR; j++) {
            if (j >= nj) {
                for (int64_t kk = 0; kk < KK; kk++) Bp[kk * NR + j] = 0;
                continue;
            }
            round_row(tmp, B + (j0 + j) * ldb, K);
            tmp[K] = 0;
            for (int64_t kk = 0; kk < KK; kk++)
                Bp[kk * NR + j] = (uint32_t)tmp[2 * kk] | ((uint32_t)tmp[2 * kk + 1] << 16);
        }
        return;
    }
    uint16_t *t0 = tmp, *t1 = tmp + NR;
    for (int64_t kk = 0; kk < KK; kk++) {
        int64_t k = 2 * kk;
        round_row(t0, B + k * ldb + j0, nj);
        if (k + 1 < K)
            round_row(t1, B + (k + 1) * ldb + j0, nj);
        else
            memset(t1, 0, (size_t)nj * sizeof *t1);
        for (int64_t j = 0; j < NR; j++)
            Bp[kk * NR + j] = j < nj ? (uint32_t)t0[j] | ((uint32_t)t1[j] << 16) : 0;
    }
}

/* C tile (mr x nr at C) = alpha * T + beta * C, T (MR x NR) the tile's sums. */
static void store_tile(float *C, int64_t ldc, const float *T, int mr, int nr, float alpha,
                       float beta) {
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        const float *t = T + i * NR;
        if (beta == 0.0f) {
            for (int j = 0; j < nr; j++) c[j] = alpha * t[j];
        } else {
            for (int j = 0; j < nr; j++) c[j] = alpha * t[j] + beta * c[j];
        }
    }
}

#ifdef AZR_HAVE_BF16_KERNEL
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"), noinline)) static void
kernel_bf16(int64_t KK, const uint32_t *Ap, const uint32_t *Bp, float *T) {
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < KK; kk++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)(Bp + kk * NR));
        __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(Bp + kk * NR + 16));
        const uint32_t *a = Ap + kk * MR;
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
            c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(T + i * NR, c[i][0]);
        _mm512_storeu_ps(T + i * NR + 16, c[i][1]);
    }
}
#endif

/* The same rounded inputs through the fp32 path (no bf16 unit, or no
 * memory for the packed copies of the kernel path). 0, or -1 when out of
 * memory. */
static int gemm_emulated(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc) {
    float *Ar = malloc((size_t)M * (size_t)K * sizeof(float));
    float *Br = malloc((size_t)K * (size_t)N * sizeof(float));
    if (!Ar || !Br) {
        free(Ar);
        free(Br);
        return -1;
    }
#pragma omp parallel for schedule(static) if (M * K > (1 << 18))
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) Ar[i * K + k] = bf16_value(azr_bf16_round(AEL(i, k)));
#pragma omp parallel for schedule(static) if (K * N > (1 << 18))
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) Br[k * N + j] = bf16_value(azr_bf16_round(BEL(k, j)));
    azr_gemm_f32(0, 0, M, N, K, alpha, Ar, K, Br, N, beta, C, ldc);
    free(Ar);
    free(Br);
    return 0;
}

void azr_gemm_bf16(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc) {
    azr_gemm_bf16_ex(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 0);
}

void azr_gemm_bf16_ex(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                      int64_t ldc, int b_is_weight) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* nothing to multiply: C = beta * C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
#ifdef AZR_HAVE_BF16_KERNEL
    if (azr_isa_get() >= AZR_ISA_AVX512_BF16) {
        int64_t KK = (K + 1) / 2, nrb = (M + MR - 1) / MR, npan = (N + NR - 1) / NR;
        uint32_t *Ap = malloc((size_t)nrb * MR * (size_t)KK * sizeof(uint32_t));
        wc_entry *kept = b_is_weight && g_wc_on ? wc_find(B, ldb, K, N, transb) : NULL;
        int have_b = kept != NULL;
        uint32_t *Bp = kept ? kept->Bp : malloc((size_t)npan * NR * (size_t)KK * sizeof(uint32_t));
        if (Ap && Bp) {
            int par = 2.0 * (double)M * (double)N * (double)K >= 3e7;
            int ok = 1;
#pragma omp parallel if (par)
            {
                float T[MR * NR] __attribute__((aligned(64)));
                uint16_t *tmp = malloc((size_t)(K + 2 * M + 2 * NR + 1) * sizeof *tmp);
                if (!tmp) {
#pragma omp atomic write
                    ok = 0;
                }
#pragma omp barrier
                if (ok) {
                if (transa) {
#pragma omp for schedule(static)
                    for (int64_t kk = 0; kk < KK; kk++) pack_a_t(Ap, A, lda, M, K, kk, tmp);
                } else {
#pragma omp for schedule(static)
                    for (int64_t rb = 0; rb < nrb; rb++)
                        pack_a(Ap + rb * MR * KK, A, lda, M, K, rb * MR, tmp);
                }
                if (!have_b) {
#pragma omp for schedule(static)
                    for (int64_t p = 0; p < npan; p++)
                        pack_b(Bp + p * NR * KK, transb, B, ldb, N, K, p * NR, tmp);
                }
                /* panel-major, so a thread's tiles reuse a panel while it is in cache */
#pragma omp for collapse(2) schedule(static)
                for (int64_t p = 0; p < npan; p++)
                    for (int64_t rb = 0; rb < nrb; rb++) {
                        kernel_bf16(KK, Ap + rb * MR * KK, Bp + p * NR * KK, T);
                        int mr = M - rb * MR < MR ? (int)(M - rb * MR) : MR;
                        int nr = N - p * NR < NR ? (int)(N - p * NR) : NR;
                        store_tile(C + rb * MR * ldc + p * NR, ldc, T, mr, nr, alpha, beta);
                    }
                }
                free(tmp);
            }
            free(Ap);
            if (ok && !kept && b_is_weight && g_wc_on && g_wc_n < WC_MAX) {
                g_wc[g_wc_n++] = (wc_entry){B, ldb, K, N, transb, Bp}; /* the panels stay */
                Bp = NULL;
            }
            if (!kept) free(Bp);
            if (ok) return;
            Ap = Bp = NULL;
        }
        free(Ap);
        if (!kept) free(Bp);
    }
#endif
    if (gemm_emulated(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) != 0)
        azr_gemm_f32(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); /* no memory */
}
