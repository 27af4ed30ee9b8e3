/* test_generate.c -- the rollout engine under ASan/UBSan: kernels against
 * their naive references, row invariance of the matrix product, and full
 * runs (greedy == recompute with azr_model_run, shared prefixes, small KV
 * budgets, stop strings, errors) on a tiny random model. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "azr_test.h"
#include "backend/cpu/kernels.h"
#include "generate/fastmath.h"
#include "generate/gen_kernels.h"
#include "generate/generate.h"
#include "generate/sampler.h"
#include "model/model.h"

static uint64_t rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

static void test_matmul(void) {
    int64_t M = 11, in = 37, out = 29;
    float *x = malloc(sizeof(float) * M * in), *w = malloc(sizeof(float) * out * in);
    float *b = malloc(sizeof(float) * out), *y = malloc(sizeof(float) * M * out);
    float *yr = malloc(sizeof(float) * M * out), *y1 = malloc(sizeof(float) * out);
    for (int64_t i = 0; i < M * in; i++) x[i] = frand();
    for (int64_t i = 0; i < out * in; i++) w[i] = frand();
    for (int64_t i = 0; i < out; i++) b[i] = frand();
    for (int64_t i = 0; i < M * out; i++) y[i] = yr[i] = frand();
    azr_gen_matmul(y, x, w, b, M, in, out, 1);
    azr_gen_matmul_naive(yr, x, w, b, M, in, out, 1);
    float err = 0.0f;
    for (int64_t i = 0; i < M * out; i++) err = fmaxf(err, fabsf(y[i] - yr[i]));
    CHECK(err < 1e-5f);
    /* each row alone gives bit-identical results to the batched product */
    azr_gen_matmul(y, x, w, b, M, in, out, 0);
    int same = 1;
    for (int64_t i = 0; i < M; i++) {
        azr_gen_matmul(y1, x + i * in, w, b, 1, in, out, 0);
        if (memcmp(y1, y + i * out, sizeof(float) * out) != 0) same = 0;
    }
    CHECK(same);
    /* packed weights: close to the reference, and row-invariant */
    float *wp = malloc(sizeof(float) * azr_gen_packed_floats(in, out));
    azr_gen_pack(wp, w, in, out);
    for (int64_t i = 0; i < M * out; i++) y[i] = yr[i] = frand();
    azr_gen_matmul_packed(y, x, wp, b, M, in, out, 1);
    azr_gen_matmul_naive(yr, x, w, b, M, in, out, 1);
    err = 0.0f;
    for (int64_t i = 0; i < M * out; i++) err = fmaxf(err, fabsf(y[i] - yr[i]));
    CHECK(err < 1e-5f);
    azr_gen_matmul_packed(y, x, wp, b, M, in, out, 0);
    same = 1;
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 1; k <= 7 && i + k <= M; k++) {
            azr_gen_matmul_packed(yr, x + i * in, wp, b, k, in, out, 0);
            if (memcmp(yr, y + i * out, sizeof(float) * out) != 0) same = 0;
        }
    CHECK(same);
    free(wp);
    free(x);
    free(w);
    free(b);
    free(y);
    free(yr);
    free(y1);
}

/* The small-M decode path (several panels side by side, threads over
 * contiguous panel runs) gives bit-identical rows to the 6-row blocks,
 * whatever the thread count, and stays close to the naive reference.
 * `panels` decides the runs: 10 gives runs of 1 to 4 panels, 75 runs long
 * enough that the panels walked side by side are several panels apart. */
static void test_matmul_small_m(int64_t panels) {
    int64_t M = 7, in = 19, out = AZR_GEN_PANEL * (panels - 1) + 5;
    float *x = malloc(sizeof(float) * M * in), *w = malloc(sizeof(float) * out * in);
    float *b = malloc(sizeof(float) * out), *y = malloc(sizeof(float) * M * out);
    float *yr = malloc(sizeof(float) * M * out);
    float *wp = malloc(sizeof(float) * azr_gen_packed_floats(in, out));
    for (int64_t i = 0; i < M * in; i++) x[i] = frand();
    for (int64_t i = 0; i < out * in; i++) w[i] = frand();
    for (int64_t i = 0; i < out; i++) b[i] = frand();
    azr_gen_pack(wp, w, in, out);
    azr_gen_matmul_packed(y, x, wp, b, M, in, out, 0);
    azr_gen_matmul_naive(yr, x, w, b, M, in, out, 0);
    float err = 0.0f;
    for (int64_t i = 0; i < M * out; i++) err = fmaxf(err, fabsf(y[i] - yr[i]));
    CHECK(err < 1e-5f);
    int same = 1;
#ifdef _OPENMP
    int old_threads = omp_get_max_threads();
#endif
    for (int threads = 1; threads <= 3; threads++) {
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        for (int64_t k = 1; k <= 3; k++)
            for (int64_t i = 0; i + k <= M; i++) {
                /* accumulate onto ones: y_old + value, as the residual adds do */
                for (int64_t j = 0; j < k * out; j++) yr[j] = 1.0f;
                azr_gen_matmul_packed(yr, x + i * in, wp, b, k, in, out, 1);
                for (int64_t j = 0; j < k * out; j++)
                    if (yr[j] != 1.0f + y[i * out + j]) same = 0;
            }
    }
#ifdef _OPENMP
    omp_set_num_threads(old_threads);
#endif
    CHECK(same);
    free(x);
    free(w);
    free(b);
    free(y);
    free(yr);
    free(wp);
}

/* A decode step's team (forward_team): products run by every thread of one
 * region with claim counters and spin barriers between them -- waiting
 * threads prefetching the next product's first claim -- give the same bits
 * as the products run one by one, at 1 to 3 threads, for 1 to 3 rows, over
 * many barriers in a row (a barrier that let a thread through early would
 * show as a wrong sum). SwiGLU split by threads into 16-float runs gives the
 * same bits as whole rows. */
static void test_team(void) {
    int64_t in = 40, mid = AZR_GEN_PANEL * 23 + 7, rounds = 30;
    float *w1 = malloc(sizeof(float) * mid * in), *w2 = malloc(sizeof(float) * in * mid);
    float *p1 = malloc(sizeof(float) * azr_gen_packed_floats(in, mid));
    float *p2 = malloc(sizeof(float) * azr_gen_packed_floats(mid, in));
    float x[3 * 40], xr[3 * 40], h[3 * AZR_GEN_PANEL * 24], hr[3 * AZR_GEN_PANEL * 24];
    for (int64_t i = 0; i < mid * in; i++) w1[i] = 0.1f * frand();
    for (int64_t i = 0; i < mid * in; i++) w2[i] = 0.1f * frand();
    azr_gen_pack(p1, w1, in, mid);
    azr_gen_pack(p2, w2, mid, in);
    azr_gen_claims *cl = malloc(sizeof(azr_gen_claims) * 2 * rounds);
    azr_gen_barrier bar;
    int same = 1;
    int old_threads = omp_get_max_threads();
    for (int64_t M = 1; M <= 3; M++) {
        /* reference: x += (x W1^T) W2^T, `rounds` times, one product at a time */
        for (int64_t i = 0; i < M * in; i++) xr[i] = x[i] = frand();
        for (int64_t r = 0; r < rounds; r++) {
            azr_gen_matmul_packed(hr, xr, p1, NULL, M, in, mid, 0);
            azr_gen_matmul_packed(xr, hr, p2, NULL, M, mid, in, 1);
        }
        for (int threads = 1; threads <= 3; threads++) {
            omp_set_num_threads(threads);
            float xt[3 * 40];
            memcpy(xt, x, sizeof(float) * M * in);
            memset(cl, 0, sizeof(azr_gen_claims) * 2 * rounds);
            memset(&bar, 0, sizeof bar);
#pragma omp parallel
            {
                int t = omp_get_thread_num(), T = omp_get_num_threads();
                int64_t gen = 0;
                azr_gen_prefetch pf;
                for (int64_t r = 0; r < rounds; r++) {
                    azr_gen_matmul_team(h, xt, p1, NULL, M, in, mid, 0, &cl[2 * r], t, T);
                    azr_gen_prefetch_init(&pf, p2, M, mid, in, t, T);
                    azr_gen_barrier_wait(&bar, T, &gen, &pf);
                    azr_gen_matmul_team(xt, h, p2, NULL, M, mid, in, 1, &cl[2 * r + 1], t,
                                        T);
                    azr_gen_prefetch_init(&pf, p1, M, in, mid, t, T);
                    azr_gen_barrier_wait(&bar, T, &gen, &pf);
                }
            }
            if (memcmp(xt, xr, sizeof(float) * M * in) != 0) same = 0;
        }
    }
    omp_set_num_threads(old_threads);
    CHECK(same);
    /* SwiGLU in column runs */
    int64_t I = AZR_GEN_PANEL * 24;
    float *gu = malloc(sizeof(float) * 3 * 2 * I);
    for (int64_t i = 0; i < 3 * 2 * I; i++) gu[i] = 4.0f * frand();
    azr_swiglu_forward(hr, gu, 3, I);
    for (int parts = 1; parts <= 5; parts++) {
        memset(h, 0, sizeof(float) * 3 * I);
        for (int k = 0; k < parts; k++)
            azr_swiglu_forward_cols(h, gu, 3, I, I / 16 * k / parts * 16,
                                    k == parts - 1 ? I : I / 16 * (k + 1) / parts * 16);
        CHECK(memcmp(h, hr, sizeof(float) * 3 * I) == 0);
    }
    free(gu);
    free(cl);
    free(w1);
    free(w2);
    free(p1);
    free(p2);
}

typedef struct {
    float *h, *gu;
    int64_t M, I;
    int64_t *covered; /* per column: how many times done() saw it */
} pairs_ctx;

static void pairs_done(void *ctx, int64_t c0, int64_t c1) {
    pairs_ctx *c = ctx;
    azr_swiglu_forward_cols(c->h, c->gu, c->M, c->I, c0, c1);
    for (int64_t j = c0; j < c1; j++) __atomic_add_fetch(&c->covered[j], 1, __ATOMIC_RELAXED);
}

/* The gate/up product with SwiGLU in its runs (azr_gen_matmul_team_pairs):
 * the same bits as the whole product then SwiGLU of whole rows, at 1 to 3
 * threads and rows, every column handed to done() exactly once, and only
 * after both its gate and up outputs were written (a done() called early
 * would SwiGLU stale values: the output buffer starts as NaNs). */
static void test_team_pairs(void) {
    int64_t in = 40, I = AZR_GEN_PANEL * 37;
    float *w = malloc(sizeof(float) * 2 * I * in);
    float *wp = malloc(sizeof(float) * azr_gen_packed_floats(in, 2 * I));
    float *gu = malloc(sizeof(float) * 3 * 2 * I), *gur = malloc(sizeof(float) * 3 * 2 * I);
    float *h = malloc(sizeof(float) * 3 * I), *hr = malloc(sizeof(float) * 3 * I);
    int64_t *covered = malloc(sizeof(int64_t) * I);
    float x[3 * 40];
    for (int64_t i = 0; i < 2 * I * in; i++) w[i] = 0.3f * frand();
    azr_gen_pack(wp, w, in, 2 * I);
    int old_threads = omp_get_max_threads(), same = 1, once = 1;
    for (int64_t M = 1; M <= 3; M++) {
        for (int64_t i = 0; i < M * in; i++) x[i] = frand();
        azr_gen_matmul_packed(gur, x, wp, NULL, M, in, 2 * I, 0);
        azr_swiglu_forward(hr, gur, M, I);
        for (int threads = 1; threads <= 3; threads++) {
            omp_set_num_threads(threads);
            for (int64_t i = 0; i < M * 2 * I; i++) gu[i] = NAN;
            memset(h, 0, sizeof(float) * M * I);
            memset(covered, 0, sizeof(int64_t) * I);
            azr_gen_claims cl = {0};
            pairs_ctx c = {h, gu, M, I, covered};
#pragma omp parallel
            azr_gen_matmul_team_pairs(gu, x, wp, M, in, I, &cl, omp_get_thread_num(),
                                      omp_get_num_threads(), pairs_done, &c);
            if (memcmp(gu, gur, sizeof(float) * M * 2 * I) != 0) same = 0;
            if (memcmp(h, hr, sizeof(float) * M * I) != 0) same = 0;
            for (int64_t j = 0; j < I; j++)
                if (covered[j] != 1) once = 0;
        }
    }
    omp_set_num_threads(old_threads);
    CHECK(same);
    CHECK(once);
    free(w);
    free(wp);
    free(gu);
    free(gur);
    free(h);
    free(hr);
    free(covered);
}

/* gen_kernels.c's 64-bit mixer (splitmix64's finalizer), written out */
static uint64_t mix64_ref(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The content hash equals its one-word-at-a-time reference on sizes around
 * the lane and chunk boundaries, and changes with any single word. */
static void test_hash(void) {
    int64_t n = 3 * 65536 + 45;
    float *a = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) a[i] = frand();
    int64_t sizes[] = {0, 1, 31, 32, 33, 65536, 65537, n};
    int ok = 1;
    for (int k = 0; k < 8; k++)
        if (azr_gen_hash_floats(a, sizes[k], 9) != azr_gen_hash_floats_naive(a, sizes[k], 9))
            ok = 0;
    CHECK(ok);
    CHECK(azr_gen_hash_floats(a, n, 9) != azr_gen_hash_floats(a, n, 10));
    CHECK(azr_gen_hash_floats(a, n - 1, 9) != azr_gen_hash_floats(a, n, 9));
    uint64_t h = azr_gen_hash_floats(a, n, 9);
    int64_t where[] = {0, 31, 32, 65535, 65536, n - 1};
    for (int k = 0; k < 6; k++) {
        float old = a[where[k]];
        a[where[k]] = nextafterf(old, 2.0f);
        if (azr_gen_hash_floats(a, n, 9) == h) ok = 0;
        a[where[k]] = old;
    }
    CHECK(ok);
    /* swapping two words of one lane changes it too */
    float t = a[0];
    a[0] = a[32];
    a[32] = t;
    CHECK(a[0] == a[32] || azr_gen_hash_floats(a, n, 9) != h);

    /* several arrays in one region: each one's hash is azr_gen_hash_floats
     * (here its one-word-at-a-time reference) with seed + i, combined in
     * order; the same at 1-3 threads, and any word of any array counts */
    const float *arr[6] = {a, a + 5, NULL, a + 100, a + 7, a};
    int64_t len[6] = {65536 + 3, 40, 12, 0, 2 * 65536 + 1, n};
    uint64_t sums[6], ref = mix64_ref(77 ^ 6);
    for (int i = 0; i < 6; i++)
        ref = mix64_ref(ref ^ azr_gen_hash_floats_naive(arr[i], len[i], 77 + (uint64_t)i));
    int old_threads = omp_get_max_threads();
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        CHECK(azr_gen_hash_many(arr, len, 6, 77, sums) == ref);
    }
    omp_set_num_threads(old_threads);
    int64_t touch[] = {0, 65536 + 2, 5 + 39, 7 + 65536, 7 + 2 * 65536};
    ok = 1;
    for (int k = 0; k < 5; k++) {
        float old = a[touch[k]];
        a[touch[k]] = nextafterf(old, 2.0f);
        if (azr_gen_hash_many(arr, len, 6, 77, sums) == ref) ok = 0;
        a[touch[k]] = old;
    }
    CHECK(ok);
    CHECK(azr_gen_hash_many(arr, len, 6, 78, sums) != ref);
    CHECK(azr_gen_hash_many(arr, len, 5, 77, sums) != ref);
    free(a);
}

/* A paged cache of blocks of bs positions holding the logical keys and
 * values k, v (npos x Hkv*D each, per sequence) of nseq sequences whose
 * block tables are tables + r * per (per blocks each), in the layout
 * write_kv fills (gen_kernels.h); the other slots hold noise. */
static float *paged_cache(const float *k, const float *v, int npos, int nseq,
                          const int32_t *tables, int per, int bs, int Hkv, int D, int nblk) {
    int64_t Dkv = (int64_t)Hkv * D, block_stride = 2 * bs * Dkv;
    float *kv = malloc(sizeof(float) * nblk * block_stride);
    for (int64_t i = 0; i < nblk * block_stride; i++) kv[i] = frand();
    for (int r = 0; r < nseq; r++)
        for (int j = 0; j < npos; j++) {
            float *b = kv + (int64_t)tables[r * per + j / bs] * block_stride;
            int p = j % bs;
            for (int64_t c = 0; c < Dkv; c++) {
                b[c * bs + p] = k[((int64_t)r * npos + j) * Dkv + c];
                b[bs * Dkv + ((c / D) * bs + p) * D + c % D] = v[((int64_t)r * npos + j) * Dkv + c];
            }
        }
    return kv;
}

/* Paged attention against the naive reference; bit for bit at 1 to 8
 * threads; and bit for bit across block sizes: 3 and 5 (each key's score a
 * scalar lane), 8 (8-key vectors), 16 and 24 (16 keys, then 8) must agree,
 * since a key's arithmetic does not depend on where its block puts it. */
static void check_paged_attention(int Hq, int Hkv, int D) {
    enum { NSEQ = 2, NPOS = 40 };
    static const int sizes[] = {3, 5, 8, 16, 24};
    int64_t Dkv = (int64_t)Hkv * D, Dq = (int64_t)Hq * D;
    float *k = malloc(sizeof(float) * NSEQ * NPOS * Dkv), *v = malloc(sizeof(float) * NSEQ * NPOS * Dkv);
    for (int64_t i = 0; i < NSEQ * NPOS * Dkv; i++) {
        k[i] = frand();
        v[i] = frand();
    }
    float *q = malloc(sizeof(float) * 3 * Dq), *o1 = malloc(sizeof(float) * 3 * Dq);
    float *o2 = malloc(sizeof(float) * 3 * Dq), *o3 = malloc(sizeof(float) * 3 * Dq);
    float *first = malloc(sizeof(float) * 3 * Dq);
    for (int64_t i = 0; i < 3 * Dq; i++) q[i] = frand();
    /* rows: sequence 0 near its end (a part-written last block at most
     * sizes), sequence 1 at position 17, sequence 0 at position 0 */
    int32_t pos[3] = {NPOS - 3, 17, 0};
    int64_t max_ctx = NPOS;
    float *scratch = malloc(sizeof(float) * azr_gen_attention_scratch_floats(Hq, Hkv, max_ctx, 64));
    int old_threads = omp_get_max_threads();
    for (int si = 0; si < (int)(sizeof sizes / sizeof sizes[0]); si++) {
        int bs = sizes[si], per = (NPOS + bs - 1) / bs, nblk = NSEQ * per + 1;
        int64_t block_stride = 2 * bs * Dkv;
        /* blocks scattered over the pool: block i of the tables is pool
         * block (3 i + 2) mod nblk (nblk is 29, 17, 11, 7, 5: all distinct) */
        int32_t *tables = malloc(sizeof(int32_t) * NSEQ * per);
        for (int i = 0; i < NSEQ * per; i++) {
            tables[i] = (int32_t)((3 * i + 2) % nblk);
            for (int i2 = 0; i2 < i; i2++) CHECK(tables[i2] != tables[i]);
        }
        int64_t toff[3] = {0, per, 0};
        float *kv = paged_cache(k, v, NPOS, NSEQ, tables, per, bs, Hkv, D, nblk);
        omp_set_num_threads(old_threads);
        azr_gen_paged_attention(o1, q, Dq, kv, block_stride, bs * Dkv, bs, tables, toff, pos, 3,
                                Hq, Hkv, D, scratch, max_ctx);
        azr_gen_paged_attention_naive(o2, q, Dq, kv, block_stride, bs * Dkv, bs, tables, toff, pos,
                                      3, Hq, Hkv, D);
        float err = 0.0f;
        for (int64_t i = 0; i < 3 * Dq; i++) err = fmaxf(err, fabsf(o1[i] - o2[i]));
        CHECK(err < 1e-5f);
        /* one thread takes the grouped path (a unit per row and KV group),
         * many threads the per-head path; the results must be the same bits */
        omp_set_num_threads(1);
        azr_gen_paged_attention(o1, q, Dq, kv, block_stride, bs * Dkv, bs, tables, toff, pos, 3,
                                Hq, Hkv, D, scratch, max_ctx);
        /* many threads: contiguous shares of the (row, head) pairs, cut
         * wherever the thread count puts them (inside a group or not) */
        for (int threads = 2; threads <= 8; threads++) {
            omp_set_num_threads(threads);
            azr_gen_paged_attention(o3, q, Dq, kv, block_stride, bs * Dkv, bs, tables, toff, pos,
                                    3, Hq, Hkv, D, scratch, max_ctx);
            CHECK(memcmp(o1, o3, sizeof(float) * 3 * Dq) == 0);
        }
        if (si == 0) memcpy(first, o1, sizeof(float) * 3 * Dq);
        else CHECK(memcmp(first, o1, sizeof(float) * 3 * Dq) == 0);
        free(kv);
        free(tables);
    }
    omp_set_num_threads(old_threads);
    free(scratch);
    free(k);
    free(v);
    free(q);
    free(o1);
    free(o2);
    free(o3);
    free(first);
}

static void test_paged_attention(void) {
    check_paged_attention(4, 2, 6);   /* odd head size: the scalar lanes */
    check_paged_attention(6, 2, 64);  /* SmolLM2's head size, 3 heads per KV group */
    check_paged_attention(4, 2, 32);  /* 2 heads per group */
    check_paged_attention(8, 2, 16);  /* 4 heads per group: three heads, then one */
    check_paged_attention(9, 3, 7);   /* odd head size in the vector path */
}

static azr_model *tiny_model(void) {
    azr_model_config c = {.vocab_size = 29, .hidden_size = 16, .intermediate_size = 24,
                          .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
                          .rms_eps = 1e-5f, .rope_theta = 10000.0f, .qkv_bias = 1,
                          .tie_embeddings = 0};
    azr_model *m = NULL;
    CHECK(azr_model_new(&c, &m) == AZR_OK);
    float *p = azr_model_params(m);
    for (int64_t i = 0; i < azr_model_num_params(m); i++) p[i] = 0.5f * frand();
    return m;
}

/* greedy continuation by recomputing the whole sequence each step */
static void naive_greedy(azr_model *m, const int32_t *prompt, int64_t plen, int steps, int32_t *out) {
    int64_t V = azr_model_cfg(m)->vocab_size;
    int32_t ids[64];
    memcpy(ids, prompt, sizeof(int32_t) * plen);
    float *logits = malloc(sizeof(float) * 64 * V);
    for (int s = 0; s < steps; s++) {
        int64_t T = plen + s;
        CHECK(azr_model_run(m, ids, NULL, NULL, NULL, 1, T, NULL, NULL, logits, NULL) == AZR_OK);
        const float *z = logits + (T - 1) * V;
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (z[v] > z[best]) best = (int32_t)v;
        out[s] = best;
        ids[T] = best;
    }
    free(logits);
}

typedef struct {
    int calls;
    int cancel_at;
} cb_info;

static int count_cb(void *ctx, const azr_gen_progress *p) {
    cb_info *c = ctx;
    c->calls++;
    return c->cancel_at > 0 && c->calls >= c->cancel_at;
}

static void test_runs(void) {
    azr_model *m = tiny_model();
    int64_t V = azr_model_cfg(m)->vocab_size;
    int32_t prompts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 3, 7, 7, 20, 21, 22};
    int64_t off[] = {0, 11, 12, 17};
    enum { R = 3, N = 2, NEW = 9, S = R * N };
    int32_t tokens[S * NEW], lens[S];
    float lp[S * NEW], mlp[S * NEW];
    int8_t fin[S];
    azr_gen_outputs o = {tokens, lp, mlp, lens, fin};
    cb_info info = {0, 0};
    azr_gen_params p;
    memset(&p, 0, sizeof p);
    p.n = N;
    p.max_new_tokens = NEW;
    p.sampling.temperature = 0.0f;
    p.sampling.top_p = 1.0f;
    p.max_slots = 3;
    p.kv_blocks = 64;
    p.block_size = 4;
    p.prefill_chunk = 5;
    p.max_context = 64;
    p.callback = count_cb;
    p.callback_ctx = &info;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_OK);
    CHECK(info.calls > 0);
    for (int r = 0; r < R; r++) {
        int32_t ref[NEW];
        naive_greedy(m, prompts + off[r], off[r + 1] - off[r], NEW, ref);
        for (int i = 0; i < N; i++) {
            int s = r * N + i;
            CHECK(lens[s] == NEW);
            CHECK(fin[s] == AZR_GEN_FINISH_LENGTH);
            CHECK(memcmp(tokens + s * NEW, ref, sizeof ref) == 0);
        }
    }
    /* a budget of exactly one sequence still completes everything */
    int32_t tokens2[S * NEW];
    o.tokens = tokens2;
    int64_t pb = 0, worst = 0;
    for (int r = 0; r < R; r++) {
        int64_t priv = azr_gen_blocks_for(off[r + 1] - off[r], NEW, 64, 4, &pb);
        if (pb + priv > worst) worst = pb + priv;
    }
    p.kv_blocks = worst;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_OK);
    CHECK(memcmp(tokens, tokens2, sizeof tokens) == 0);
    /* one block less: a clear NOMEM before anything runs */
    p.kv_blocks = worst - 1;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_ERR_NOMEM);
    CHECK(strstr(azr_last_error(), "kv_budget_mb") != NULL);
    p.kv_blocks = 64;

    /* sampling with stop strings over a byte table (token v -> 'a' + v % 3, 1-2 bytes) */
    char tb[64];
    int64_t toff[30];
    toff[0] = 0;
    for (int64_t v = 0; v < V; v++) {
        int64_t k = toff[v];
        tb[k++] = (char)('a' + v % 3);
        if (v % 2) tb[k++] = (char)('a' + (v / 2) % 3);
        toff[v + 1] = k;
    }
    const char *stop = "ab";
    int64_t soff[2] = {0, 2};
    p.sampling.temperature = 1.0f;
    p.sampling.top_k = 5;
    p.sampling.top_p = 0.9f;
    p.stop_bytes = stop;
    p.stop_off = soff;
    p.n_stop = 1;
    p.tok_bytes = tb;
    p.tok_off = toff;
    int32_t eos = 4;
    p.eos_ids = &eos;
    p.n_eos = 1;
    o.tokens = tokens;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_OK);
    for (int s = 0; s < S; s++) {
        CHECK(lens[s] >= 1 && lens[s] <= NEW);
        /* rebuild the text and check the finish reason against it */
        char text[64];
        int64_t tl = 0, first_stop = -1;
        int eos_at = -1;
        for (int j = 0; j < lens[s]; j++) {
            int32_t t = tokens[s * NEW + j];
            CHECK(t >= 0 && t < V);
            CHECK(lp[s * NEW + j] <= 1e-6f && mlp[s * NEW + j] <= 1e-6f);
            if (t == eos && eos_at < 0) eos_at = j;
            memcpy(text + tl, tb + toff[t], (size_t)(toff[t + 1] - toff[t]));
            tl += toff[t + 1] - toff[t];
            for (int64_t a = 0; a + 2 <= tl && first_stop < 0; a++)
                if (text[a] == 'a' && text[a + 1] == 'b') first_stop = j;
        }
        if (fin[s] == AZR_GEN_FINISH_STOP) CHECK(first_stop == lens[s] - 1 && eos_at < 0);
        if (fin[s] == AZR_GEN_FINISH_EOS) CHECK(eos_at == lens[s] - 1);
        if (fin[s] == AZR_GEN_FINISH_LENGTH) CHECK(lens[s] == NEW && eos_at < 0 && first_stop < 0);
    }

    /* cancellation from the callback */
    info.calls = 0;
    info.cancel_at = 2;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_ERR_INTERRUPTED);
    info.cancel_at = 0;

    /* errors */
    int64_t bad_off[] = {0, 11, 11, 17};
    CHECK(azr_gen_run(m, prompts, bad_off, R, &p, &o) == AZR_ERR_INVALID);
    CHECK(strstr(azr_last_error(), "empty") != NULL);
    p.max_context = 11;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_ERR_INVALID);
    CHECK(strstr(azr_last_error(), "context") != NULL);
    p.max_context = 64;
    p.sampling.temperature = -1.0f;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_ERR_INVALID);
    p.sampling.temperature = 1.0f;
    p.n = 0;
    CHECK(azr_gen_run(m, prompts, off, R, &p, &o) == AZR_ERR_INVALID);
    p.n = N;
    int32_t bad_ids[] = {1, 2, 99};
    int64_t one_off[] = {0, 3};
    CHECK(azr_gen_run(m, bad_ids, one_off, 1, &p, &o) == AZR_ERR_INVALID);
    CHECK(azr_gen_run(NULL, prompts, off, R, &p, &o) == AZR_ERR_INVALID);
    azr_model_free(m);
}

/* A run with a weight cache gives the run without one; the cache packs
 * once, is reused while the weights stay, and repacks after a change. */
static void test_weight_cache(void) {
    azr_model *m = tiny_model();
    int32_t prompt[] = {3, 1, 4, 1, 5};
    int64_t off[] = {0, 5};
    enum { NEW = 6 };
    int32_t t0[NEW], t1[NEW], lens[1];
    float lp[NEW], mlp[NEW];
    int8_t fin[1];
    azr_gen_outputs o = {t0, lp, mlp, lens, fin};
    azr_gen_params p;
    memset(&p, 0, sizeof p);
    p.n = 1;
    p.max_new_tokens = NEW;
    p.sampling.top_p = 1.0f;
    p.max_slots = 1;
    p.kv_blocks = 8;
    p.block_size = 4;
    p.prefill_chunk = 8;
    p.max_context = 64;
    CHECK(azr_gen_run(m, prompt, off, 1, &p, &o) == AZR_OK);
    azr_gen_weights *w = azr_gen_weights_new();
    CHECK(w != NULL && azr_gen_weights_bytes(w) == 0);
    p.weights = w;
    for (int k = 0; k < 2; k++) {
        o.tokens = t1;
        CHECK(azr_gen_run(m, prompt, off, 1, &p, &o) == AZR_OK);
        CHECK(memcmp(t0, t1, sizeof t0) == 0);
    }
    CHECK(azr_gen_weights_packs(w) == 1 && azr_gen_weights_bytes(w) > 0);
    int repacked = -1;
    CHECK(azr_gen_weights_sync(w, m, &repacked) == AZR_OK && repacked == 0);
    azr_layer_ptrs l0 = azr_model_layer(m, azr_model_params(m), 0);
    l0.wdown[0] += 0.5f;
    CHECK(azr_gen_weights_sync(w, m, &repacked) == AZR_OK && repacked == 1);
    CHECK(azr_gen_weights_packs(w) == 2);
    CHECK(azr_gen_weights_sync(NULL, m, NULL) == AZR_ERR_INVALID);
    azr_gen_weights_free(w);
    azr_gen_weights_free(NULL);
    azr_model_free(m);
}

/* Prefix cache: runs with it give the run without it, reuse what earlier
 * runs computed, evict in a store of a few blocks, and refuse to run
 * without the weight cache its validity key comes from. */
static void test_prefix_cache(void) {
    azr_model *m = tiny_model();
    /* two prompts sharing 9 tokens (two full blocks of 4), then one that
     * continues the first */
    int32_t ids[] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 3, 1, 4, 1, 5, 9, 2, 6, 5, 8, 9, 7};
    int64_t off[] = {0, 11, 23};
    enum { NEW = 7, S = 4 };
    int32_t t0[S * NEW], t1[S * NEW], lens[S];
    float lp0[S * NEW], lp1[S * NEW], mlp[S * NEW];
    int8_t fin[S];
    azr_gen_outputs o = {t0, lp0, mlp, lens, fin};
    azr_gen_params p;
    memset(&p, 0, sizeof p);
    p.n = 2;
    p.max_new_tokens = NEW;
    p.sampling.temperature = 1.0f;
    p.sampling.top_p = 1.0f;
    p.seed = 11;
    p.max_slots = 3;
    p.kv_blocks = 32;
    p.block_size = 4;
    p.prefill_chunk = 5;
    p.max_context = 64;
    CHECK(azr_gen_run(m, ids, off, 2, &p, &o) == AZR_OK);
    azr_gen_weights *w = azr_gen_weights_new();
    p.weights = w;
    azr_gen_prefix_stats st;
    for (int64_t bytes = 1 << 20; bytes > 0; bytes = bytes == (1 << 20) ? 3 * 2 * 2 * 4 * 8 * 4 : 0) {
        /* a roomy store, then one of 3 blocks (a block of the tiny model:
         * 2 layers * keys and values * 4 positions * 8 kv floats * 4 bytes) */
        azr_gen_prefix *pc = azr_gen_prefix_new(bytes);
        CHECK(pc != NULL);
        p.prefix = pc;
        for (int k = 0; k < 3; k++) {
            o.tokens = t1;
            o.logprobs = lp1;
            CHECK(azr_gen_run(m, ids, off, 2, &p, &o) == AZR_OK);
            CHECK(memcmp(t0, t1, sizeof t0) == 0 && memcmp(lp0, lp1, sizeof lp0) == 0);
        }
        azr_gen_prefix_get_stats(pc, &st);
        CHECK(st.prompt_tokens == 3 * 23 && st.reused_tokens > 0 && st.block_size == 4);
        CHECK(st.used_blocks <= st.capacity_blocks && st.flushes == 0);
        if (st.capacity_blocks <= 3) CHECK(st.evicted_blocks > 0);
        /* a weight change empties it at the next run */
        azr_layer_ptrs l0 = azr_model_layer(m, azr_model_params(m), 0);
        l0.input_norm[0] += 0.25f;
        CHECK(azr_gen_run(m, ids, off, 2, &p, &o) == AZR_OK);
        azr_gen_prefix_get_stats(pc, &st);
        CHECK(st.flushes == 1);
        l0.input_norm[0] -= 0.25f;
        azr_gen_prefix_clear(pc);
        azr_gen_prefix_get_stats(pc, &st);
        CHECK(st.used_blocks == 0);
        azr_gen_prefix_free(pc);
        o.tokens = t0;
        o.logprobs = lp0;
        p.prefix = NULL;
        CHECK(azr_gen_run(m, ids, off, 2, &p, &o) == AZR_OK);  /* the reference, weights restored */
    }
    azr_gen_prefix *pc = azr_gen_prefix_new(1 << 20);
    p.weights = NULL;
    p.prefix = pc;
    CHECK(azr_gen_run(m, ids, off, 2, &p, &o) == AZR_ERR_INVALID);
    CHECK(azr_gen_prefix_new(-1) == NULL);
    azr_gen_prefix_free(pc);
    azr_gen_prefix_free(NULL);
    azr_gen_weights_free(w);
    azr_model_free(m);
}

/* exp_neg8 is exp_neg lane by lane, bit for bit (attention and the sampler
 * mix the two in one loop), and both are within 3e-7 of exp. */
static void test_exp_neg(void) {
    int same = 1, close = 1;
    float worst = 0.0f;
    float xs[8];
    for (int i = 0; i <= 200000; i += 8) {
        for (int k = 0; k < 8; k++) {
            int j = i + k;
            xs[k] = j % 97 == 0 ? -(float)(j % 89) : -100.0f * (float)j / 200000.0f;
        }
        if (i == 0) {
            xs[1] = -0.0f;
            xs[2] = -87.0f;
            xs[3] = -87.00001f;
            xs[4] = -1e-30f;
            xs[5] = -INFINITY;
            xs[6] = -0.34657359f; /* about -ln2/2, where n changes */
        }
        azr_v8f v;
        memcpy(&v, xs, sizeof v);
        azr_v8f e = exp_neg8(v);
        for (int k = 0; k < 8; k++) {
            float a = e[k], b = exp_neg(xs[k]);
            if (memcmp(&a, &b, sizeof a) != 0) same = 0;
            if (xs[k] >= -87.0f) {
                double ref = exp((double)xs[k]);
                float rel = (float)(fabs((double)b - ref) / ref);
                if (rel > worst) worst = rel;
                if (rel > 3e-7f) close = 0;
            }
        }
    }
    if (!close) fprintf(stderr, "exp_neg: worst relative error %.2e\n", (double)worst);
    CHECK(same);
    CHECK(close);
}

/* azr_gen_sample_par against azr_gen_sample, bit for bit: token and both
 * log-probs, at 1 to 3 threads, for vocabularies that do and do not fill
 * their last 256-float block or 8-float vector, temperatures 1 and 0.7,
 * many draws; and the modes it hands to azr_gen_sample (greedy, top-k,
 * top-p, non-finite logits). */
static void test_sample_par(void) {
    static const int64_t vocab[] = {300, 1000, 4099, 49152};
    static const azr_gen_sampling modes[] = {
        {1.0f, 1.0f, 0}, {0.7f, 1.0f, 0}, {0.0f, 1.0f, 0}, {1.0f, 0.9f, 0}, {1.0f, 1.0f, 40}};
    int old_threads = omp_get_max_threads(), same = 1;
    for (int vi = 0; vi < 4; vi++) {
        int64_t V = vocab[vi];
        float *z = malloc(sizeof(float) * V), *wf = malloc(sizeof(float) * V);
        azr_gen_cand *wc = malloc(sizeof(azr_gen_cand) * V);
        for (int64_t v = 0; v < V; v++) z[v] = 4.0f * frand();
        for (int mi = 0; mi < 5; mi++)
            for (int k = 0; k < 24; k++) {
                double u = (k + 0.5) / 24.0;
                if (mi == 0 && k == 23) z[V / 2] = NAN; /* last draw: a non-finite logit */
                int32_t t1, t2;
                float lp1, lp2, m1, m2;
                azr_gen_sample(z, V, &modes[mi], u, wf, wc, &t1, &lp1, &m1);
                for (int threads = 1; threads <= 3; threads++) {
                    omp_set_num_threads(threads);
                    azr_gen_sample_par(z, V, &modes[mi], u, wf, wc, &t2, &lp2, &m2);
                    if (t1 != t2 || memcmp(&lp1, &lp2, sizeof lp1) || memcmp(&m1, &m2, sizeof m1))
                        same = 0;
                }
                omp_set_num_threads(old_threads);
                if (mi == 0 && k == 23) z[V / 2] = 0.5f;
            }
        free(z);
        free(wf);
        free(wc);
    }
    CHECK(same);
}

int main(void) {
    test_sample_par();
    test_exp_neg();
    test_matmul();
    test_matmul_small_m(10);
    test_matmul_small_m(75);
    test_team();
    test_team_pairs();
    test_hash();
    test_paged_attention();
    test_runs();
    test_weight_cache();
    test_prefix_cache();
    TEST_MAIN_END();
}
