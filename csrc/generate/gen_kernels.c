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
#include <sched.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__FMA__) && defined(__AVX__)
#include <immintrin.h>
#define AZR_GEN_HAVE_FMA 1
#endif

/* 8 float lanes (fastmath.h's type); GCC lowers this to AVX (ymm) with
 * -march=native on x86-64 and to pairs of SSE/NEON registers elsewhere. */
typedef azr_v8f v8f;

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

/* The one lane reduction every path uses (fastmath.h, shared with the
 * sampler). */
#define hsum8 azr_hsum8

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int num_threads_in_team(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
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
#pragma omp parallel for schedule(guided, 1) if (par)
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

/* MR rows x one 16-wide panel: acc[i][.] = fma chain over k. pf (NULL:
 * none) is the next panel, prefetched a line (one k) per k. */
static inline __attribute__((always_inline)) void panel_kernel(int MR, const float *x, int64_t in,
                                                               const float *wp, v8f acc[6][2],
                                                               const float *pf) {
    for (int i = 0; i < MR; i++) {
        acc[i][0] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
        acc[i][1] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
    }
    for (int64_t k = 0; k < in; k++) {
        if (pf) __builtin_prefetch(pf + k * AZR_GEN_PANEL, 0, 3);
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

/* MR rows x NP panels at once (the small-M decode path): the same chain of
 * fused multiply-adds per output as panel_kernel -- from 0, k increasing --
 * so results are bit-identical to it; running NP panels side by side only
 * gives the core 2*MR*NP independent chains to hide the FMA latency, which
 * one panel with one row (2 chains) cannot. The NP panels are `pstride`
 * floats apart: each is its own sequential stream of weights, and the
 * caller spaces them so that each stream runs on through many panels (see
 * small_m_range). No software prefetch: the hardware prefetcher follows
 * these few long streams, and explicit prefetches measured ~8% slower. */
static inline __attribute__((always_inline)) void multi_panel_kernel(int MR, int NP, const float *x,
                                                                     int64_t in, const float *pw,
                                                                     int64_t pstride,
                                                                     v8f acc[4][4][2]) {
    for (int p = 0; p < NP; p++)
        for (int i = 0; i < MR; i++) {
            acc[p][i][0] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
            acc[p][i][1] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
        }
    for (int64_t k = 0; k < in; k++) {
        v8f xb[4];
        for (int i = 0; i < MR; i++) {
            float xs = x[i * in + k];
            xb[i] = (v8f){xs, xs, xs, xs, xs, xs, xs, xs};
        }
        for (int p = 0; p < NP; p++) {
            const float *wk = pw + p * pstride + k * AZR_GEN_PANEL;
            v8f w0 = ld8(wk), w1 = ld8(wk + 8);
            for (int i = 0; i < MR; i++) {
                acc[p][i][0] = fma8(xb[i], w0, acc[p][i][0]);
                acc[p][i][1] = fma8(xb[i], w1, acc[p][i][1]);
            }
        }
    }
}

/* Panels p0, p0 + gap, ..., p0 + (NP-1)*gap for MR rows. */
static inline __attribute__((always_inline)) void multi_panel(int MR, int NP, float *y,
                                                              const float *x, const float *wp,
                                                              const float *b, int64_t in,
                                                              int64_t out, int64_t p0, int64_t gap,
                                                              int accumulate) {
    v8f acc[4][4][2];
    int64_t pstride = AZR_GEN_PANEL * in;
    multi_panel_kernel(MR, NP, x, in, wp + p0 * pstride, gap * pstride, acc);
    for (int p = 0; p < NP; p++) {
        v8f one[6][2];
        for (int i = 0; i < MR; i++) {
            one[i][0] = acc[p][i][0];
            one[i][1] = acc[p][i][1];
        }
        panel_store(y, out, 0, MR, (p0 + p * gap) * AZR_GEN_PANEL, one, b, accumulate);
    }
}

/* Panels [p0, p1) for M = MR rows (MR <= 3), NP panels at a time. The run
 * is cut into NP equal parts walked side by side (panels i, i + q, i + 2q,
 * ... together), not into groups of NP neighbours: each of the NP weight
 * streams is then sequential over a whole part, where with neighbours
 * every stream jumped NP panels ahead after each one and the hardware
 * prefetcher had to find it again (~15% slower decode products). */
static void small_m_range(int MR, float *y, const float *x, const float *wp, const float *b,
                          int64_t in, int64_t out, int64_t p0, int64_t p1, int accumulate) {
    int64_t n = p1 - p0, q, p;
    switch (MR) {
    case 1:
        q = n / 4;
        for (int64_t i = 0; i < q; i++) multi_panel(1, 4, y, x, wp, b, in, out, p0 + i, q, accumulate);
        p = p0 + 4 * q;
        for (; p + 2 <= p1; p += 2) multi_panel(1, 2, y, x, wp, b, in, out, p, 1, accumulate);
        for (; p < p1; p++) multi_panel(1, 1, y, x, wp, b, in, out, p, 1, accumulate);
        break;
    case 2:
        q = n / 2;
        for (int64_t i = 0; i < q; i++) multi_panel(2, 2, y, x, wp, b, in, out, p0 + i, q, accumulate);
        if (n % 2) multi_panel(2, 1, y, x, wp, b, in, out, p1 - 1, 1, accumulate);
        break;
    default:
        q = n / 2;
        for (int64_t i = 0; i < q; i++) multi_panel(3, 2, y, x, wp, b, in, out, p0 + i, q, accumulate);
        if (n % 2) multi_panel(3, 1, y, x, wp, b, in, out, p1 - 1, 1, accumulate);
        break;
    }
}

/* A product's first claims: thread t of T starts on panels
 * [t*len, (t+1)*len), 15/16 of its even share, so a thread knows where its
 * next product starts and can prefetch that while it waits at the barrier
 * before it; the last sixteenth is claimed from the shared counter, in
 * shrinking runs, to even out the finish. (A quarter each for two threads,
 * then shrinking runs, made more claims: each starts new weight streams
 * that the hardware prefetcher must find again. In-process A/B of decode
 * steps alternated one by one: 2-3% slower than 15/16.) */
static int64_t first_claim(int64_t panels, int T) {
    int64_t len = panels * 15 / (16 * (int64_t)T);
    return len > 4 ? len & ~(int64_t)3 : len;
}

/* Streams of a decode-path run of `len` panels (small_m_range): 4 for one
 * row, 2 for two or three, each q = len / streams panels long. */
static int run_streams(int64_t M) { return M == 1 ? 4 : 2; }

/* Thread t's runs of `units` units for a team of T: a first run each
 * (first_claim) and then runs from a shared counter, each a share of what
 * is left (large runs first, down to single units at the end), so a thread
 * that streams slower, or joins late, is not waited for at the end of the
 * product: with a static split one of two threads idled ~6% of every
 * decode step at this barrier. run(ctx, u0, u1) does units [u0, u1). */
static void claim_runs(int64_t units, azr_gen_claims *cl, int t, int T,
                       void (*run)(void *, int64_t, int64_t), void *ctx) {
    int64_t len0 = first_claim(units, T), base = len0 * T, T2 = 2 * (int64_t)T;
    if (len0 > 0) run(ctx, t * len0, (t + 1) * len0);
    int64_t c = __atomic_load_n(&cl->next, __ATOMIC_RELAXED);
    while (base + c < units) {
        int64_t len = (units - base - c) / T2;
        len = len < 1 ? 1 : len > 4 ? len & ~(int64_t)3 : len;
        if (__atomic_compare_exchange_n(&cl->next, &c, c + len, 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            run(ctx, base + c, base + c + len);
            c = __atomic_load_n(&cl->next, __ATOMIC_RELAXED);
        }
    }
}

typedef struct {
    float *y;
    const float *x, *wp, *b;
    int64_t M, in, out, half;
    int accumulate;
    void (*done)(void *, int64_t, int64_t);
    void *done_ctx;
} team_product;

static void run_panels(void *ctx, int64_t p0, int64_t p1) {
    team_product *tp = ctx;
    small_m_range((int)tp->M, tp->y, tp->x, tp->wp, tp->b, tp->in, tp->out, p0, p1,
                  tp->accumulate);
}

/* Units are pairs of panels u and half/16 + u: the same outputs of the two
 * halves; then done() on the half's columns of the run. */
static void run_pairs(void *ctx, int64_t u0, int64_t u1) {
    team_product *tp = ctx;
    int64_t h = tp->half / AZR_GEN_PANEL;
    run_panels(tp, u0, u1);
    run_panels(tp, h + u0, h + u1);
    tp->done(tp->done_ctx, u0 * AZR_GEN_PANEL, u1 * AZR_GEN_PANEL);
}

void azr_gen_matmul_team(float *y, const float *x, const float *wp, const float *b, int64_t M,
                         int64_t in, int64_t out, int accumulate, azr_gen_claims *cl, int t,
                         int T) {
    if (M <= 0 || out <= 0) return;
    /* Each output is computed by one thread in the same order whatever the
     * split, so the result does not depend on the schedule. */
    team_product tp = {y, x, wp, b, M, in, out, 0, accumulate, NULL, NULL};
    claim_runs((out + AZR_GEN_PANEL - 1) / AZR_GEN_PANEL, cl, t, T, run_panels, &tp);
}

void azr_gen_matmul_team_pairs(float *y, const float *x, const float *wp, int64_t M, int64_t in,
                               int64_t half, azr_gen_claims *cl, int t, int T,
                               void (*done)(void *, int64_t, int64_t), void *done_ctx) {
    if (M <= 0 || half <= 0) return;
    team_product tp = {y, x, wp, NULL, M, in, 2 * half, half, 0, done, done_ctx};
    claim_runs(half / AZR_GEN_PANEL, cl, t, T, run_pairs, &tp);
}

void azr_gen_prefetch_init(azr_gen_prefetch *pf, const float *wp, int64_t M, int64_t in,
                           int64_t out, int t, int T) {
    memset(pf, 0, sizeof *pf);
    pf->wp = wp;
    if (!wp) return;
    int64_t len0 = first_claim((out + AZR_GEN_PANEL - 1) / AZR_GEN_PANEL, T);
    int S = run_streams(M);
    int64_t q = len0 / S, cap = AZR_GEN_TEAM_PF_BYTES / S;
    pf->bytes = q * AZR_GEN_PANEL * in * (int64_t)sizeof(float);
    if (pf->bytes > cap) pf->bytes = cap;
    pf->streams = S;
    for (int s = 0; s < S; s++)
        pf->stream[s] = (const char *)(wp + (t * len0 + s * q) * AZR_GEN_PANEL * in);
}

void azr_gen_barrier_wait(azr_gen_barrier *bar, int T, int64_t *gen, azr_gen_prefetch *pf) {
    if (T <= 1) return;
    int64_t g = *gen;
    *gen = g + 1;
    if (__atomic_add_fetch(&bar->arrived, 1, __ATOMIC_ACQ_REL) == T) {
        __atomic_store_n(&bar->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar->gen, g + 1, __ATOMIC_RELEASE);
        return;
    }
    for (int64_t spins = 0; __atomic_load_n(&bar->gen, __ATOMIC_ACQUIRE) == g; spins++) {
        if (pf && pf->off < pf->bytes) {
            for (int s = 0; s < pf->streams; s++) {
                __builtin_prefetch(pf->stream[s] + pf->off, 0, 3);
                __builtin_prefetch(pf->stream[s] + pf->off + 64, 0, 3);
            }
            pf->off += 128;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        /* a long wait (the late thread was descheduled?): give the core
         * away between looks */
        if (spins > 2048) sched_yield();
    }
}

void azr_gen_matmul_packed(float *y, const float *x, const float *wp, const float *b, int64_t M,
                           int64_t in, int64_t out, int accumulate) {
    if (M <= 0 || out <= 0) return;
    int64_t panels = (out + AZR_GEN_PANEL - 1) / AZR_GEN_PANEL;
    int par = (M * in * out) > 32768;
    if (M <= AZR_GEN_DECODE_ROWS) {
        /* decode of one to three rows: memory bound (azr_gen_matmul_team) */
        azr_gen_claims cl = {0};
#pragma omp parallel if (par)
        {
            int t = thread_id(), T = num_threads_in_team();
            azr_gen_matmul_team(y, x, wp, b, M, in, out, accumulate, &cl, t, T);
        }
        return;
    }
    int64_t M6 = M - M % 6;
#pragma omp parallel for schedule(guided, 1) if (par)
    for (int64_t p = 0; p < panels; p++) {
        const float *pw = wp + p * AZR_GEN_PANEL * in;
        int64_t o0 = p * AZR_GEN_PANEL;
        v8f acc[6][2];
        /* the panel after this one streams into the cache during the first
         * row block's pass (a thread's guided chunk is a run of panels) */
        const float *pf = p + 1 < panels ? pw + AZR_GEN_PANEL * in : NULL;
        for (int64_t i = 0; i < M6; i += 6) {
            if (i == 0)
                panel_kernel(6, x, in, pw, acc, pf);
            else
                panel_kernel(6, x + i * in, in, pw, acc, NULL);
            panel_store(y, out, i, 6, o0, acc, b, accumulate);
        }
        int64_t i = M6;
        if (M6) pf = NULL;
        switch (M - M6) {
        case 5: panel_kernel(5, x + i * in, in, pw, acc, pf); panel_store(y, out, i, 5, o0, acc, b, accumulate); break;
        case 4: panel_kernel(4, x + i * in, in, pw, acc, pf); panel_store(y, out, i, 4, o0, acc, b, accumulate); break;
        case 3: panel_kernel(3, x + i * in, in, pw, acc, NULL); panel_store(y, out, i, 3, o0, acc, b, accumulate); break;
        case 2: panel_kernel(2, x + i * in, in, pw, acc, NULL); panel_store(y, out, i, 2, o0, acc, b, accumulate); break;
        case 1: panel_kernel(1, x + i * in, in, pw, acc, NULL); panel_store(y, out, i, 1, o0, acc, b, accumulate); break;
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

/* ---- content hash ------------------------------------------------------------ */

#define HASH_CHUNK 65536
#define HASH_MUL 0x9E3779B1u

typedef uint32_t v8u __attribute__((vector_size(32)));

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t fold_lanes(const uint32_t lanes[32], uint64_t seed, int64_t chunk) {
    uint64_t r = mix64(seed ^ ((uint64_t)chunk * 0x9E3779B97F4A7C15ULL));
    for (int j = 0; j < 32; j += 2)
        r = mix64(r ^ (((uint64_t)lanes[j + 1] << 32) | lanes[j]));
    return r;
}

static void lanes_init(uint32_t lanes[32]) {
    for (int j = 0; j < 32; j++) lanes[j] = 0x85EBCA6Bu * (uint32_t)(j + 1);
}

/* Chunk c of the n words at a (HASH_CHUNK words, the last one fewer)
 * folded with seed and c. */
static uint64_t hash_chunk(const float *a, int64_t n, uint64_t seed, int64_t c) {
    const float *p = a + c * HASH_CHUNK;
    int64_t len = n - c * HASH_CHUNK < HASH_CHUNK ? n - c * HASH_CHUNK : HASH_CHUNK;
    uint32_t lanes[32];
    lanes_init(lanes);
    v8u h[4];
    memcpy(h, lanes, sizeof h);
    int64_t full = len & ~(int64_t)31;
    for (int64_t w = 0; w < full; w += 32)
        for (int q = 0; q < 4; q++) {
            v8u x;
            memcpy(&x, p + w + 8 * q, sizeof x);
            h[q] = (h[q] ^ x) * HASH_MUL;
        }
    memcpy(lanes, h, sizeof h);
    for (int64_t w = full; w < len; w++) {
        uint32_t x;
        memcpy(&x, p + w, sizeof x);
        lanes[w & 31] = (lanes[w & 31] ^ x) * HASH_MUL;
    }
    return fold_lanes(lanes, seed, c);
}

static inline int64_t hash_chunks(const float *a, int64_t n) {
    return a && n > 0 ? (n + HASH_CHUNK - 1) / HASH_CHUNK : 0;
}

uint64_t azr_gen_hash_floats(const float *a, int64_t n, uint64_t seed) {
    if (!a || n <= 0) return mix64(seed);
    int64_t chunks = hash_chunks(a, n);
    uint64_t total = mix64(seed ^ (uint64_t)n);
#pragma omp parallel for schedule(static) reduction(+ : total) if (n > 4 * HASH_CHUNK)
    for (int64_t c = 0; c < chunks; c++) total += hash_chunk(a, n, seed, c);
    return total;
}

uint64_t azr_gen_hash_many(const float *const *a, const int64_t *n, int k, uint64_t seed,
                           uint64_t *sums) {
    int64_t total = 0;
    for (int i = 0; i < k; i++) {
        sums[i] = 0;
        total += hash_chunks(a[i], n[i]);
    }
    /* one parallel region over every array's chunks, cut evenly: a region
     * per array left threads idle at each small array's end */
#pragma omp parallel
    {
        int t = thread_id(), T = num_threads_in_team();
        int64_t c0 = total * t / T, c1 = total * (t + 1) / T, base = 0;
        for (int i = 0; i < k && base < c1; i++) {
            int64_t ci = hash_chunks(a[i], n[i]);
            uint64_t sum = 0;
            for (int64_t c = (c0 > base ? c0 - base : 0); c < ci && base + c < c1; c++)
                sum += hash_chunk(a[i], n[i], seed + (uint64_t)i, c);
            if (sum) __atomic_fetch_add(&sums[i], sum, __ATOMIC_RELAXED);
            base += ci;
        }
    }
    uint64_t h = mix64(seed ^ (uint64_t)k);
    for (int i = 0; i < k; i++) {
        uint64_t hi = hash_chunks(a[i], n[i]) ? mix64((seed + (uint64_t)i) ^ (uint64_t)n[i]) + sums[i]
                                             : mix64(seed + (uint64_t)i);
        h = mix64(h ^ hi);
    }
    return h;
}

uint64_t azr_gen_hash_floats_naive(const float *a, int64_t n, uint64_t seed) {
    if (!a || n <= 0) return mix64(seed);
    uint64_t total = mix64(seed ^ (uint64_t)n);
    for (int64_t c = 0; c * HASH_CHUNK < n; c++) {
        uint32_t lanes[32];
        lanes_init(lanes);
        for (int64_t w = c * HASH_CHUNK; w < n && w < (c + 1) * HASH_CHUNK; w++) {
            uint32_t x;
            memcpy(&x, a + w, sizeof x);
            int j = (int)((w - c * HASH_CHUNK) & 31);
            lanes[j] = (lanes[j] ^ x) * HASH_MUL;
        }
        total += fold_lanes(lanes, seed, c);
    }
    return total;
}

/* ---- read bandwidth probe ------------------------------------------------------ */

double azr_gen_sum_floats(const float *a, int64_t n) {
    if (!a || n <= 0) return 0.0;
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        /* each thread reads its run as 4 long streams side by side, with
         * no software prefetch: of the patterns measured here (1, 2, 4, 8
         * streams; with and without prefetching 512 bytes ahead) the
         * fastest, ~14% faster than the same with prefetches and ~35%
         * faster than one stream. It is the decode product's pattern. */
        int64_t T = num_threads_in_team(), t = thread_id();
        int64_t i0 = n * t / T, i1 = n * (t + 1) / T;
        int64_t q = (i1 - i0) / 4 / 16 * 16;
        const float *s0p = a + i0, *s1p = s0p + q, *s2p = s1p + q, *s3p = s2p + q;
        v8f z = {0, 0, 0, 0, 0, 0, 0, 0};
        v8f s0 = z, s1 = z, s2 = z, s3 = z, s4 = z, s5 = z, s6 = z, s7 = z;
        for (int64_t k = 0; k < q; k += 16) {
            s0 += ld8(s0p + k);
            s1 += ld8(s0p + k + 8);
            s2 += ld8(s1p + k);
            s3 += ld8(s1p + k + 8);
            s4 += ld8(s2p + k);
            s5 += ld8(s2p + k + 8);
            s6 += ld8(s3p + k);
            s7 += ld8(s3p + k + 8);
        }
        float tail = 0.0f;
        for (int64_t i = i0 + 4 * q; i < i1; i++) tail += a[i];
        total += (double)hsum8(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) + tail;
    }
    return total;
}

/* ---- paged attention ---------------------------------------------------- */

/* How many values ahead the value loops prefetch (at most a block:
 * row_ahead looks into the next block only). In a decode, 16 rather than 8
 * and both lines of pv_heads' 32-float slice rather than the first took
 * its value pass from 4.7 to 4.0 us per 3-head unit (~150 positions, timers
 * inside the engine's decode). */
#define KV_AHEAD 16

/* The row of value i of a block (b; bn the next block, NULL if none; rows
 * rs floats apart), where i may run past this block's jn values into the
 * next one (of the `left` values from this block's start on); NULL past
 * the last one. For prefetching a few values ahead across a block
 * boundary: blocks are scattered, so no hardware prefetcher finds the next
 * one. */
static inline const float *row_ahead(const float *b, const float *bn, int64_t i, int64_t jn, int bs,
                                     int64_t left, int64_t rs) {
    if (i < jn) return b + i * rs;
    if (bn && i < left && i - bs < bs) return bn + (i - bs) * rs;
    return NULL;
}

/* o[0..nd) = sum over keys j < ctx of p[j] * v_j[0..nd), v_j at
 * vb + table[j / bs] * block_stride + (j % bs) * rs. NC = nd / 8 vector
 * accumulators kept in registers (1..8), or NC = 0 for any nd (scalar
 * lanes, the same fused chain per element). */
static inline __attribute__((always_inline)) void pv_slice(int NC, float *o, const float *p,
                                                           const float *vb,
                                                           const int32_t *table,
                                                           int64_t block_stride, int bs,
                                                           int64_t rs, int64_t ctx, int nd) {
    if (NC > 0) {
        v8f acc[8];
        for (int c = 0; c < NC; c++) acc[c] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j0 = 0; j0 < ctx; j0 += bs) {
            const float *b = vb + (int64_t)table[j0 / bs] * block_stride;
            int64_t jn = ctx - j0 < bs ? ctx - j0 : bs;
            const float *bn = j0 + bs < ctx ? vb + (int64_t)table[j0 / bs + 1] * block_stride : NULL;
            for (int64_t jj = 0; jj < jn; jj++) {
                v8f pb = azr_splat8(p[j0 + jj]);
                const float *v = b + jj * rs;
#if defined(__GNUC__)
                const float *vp = row_ahead(b, bn, jj + KV_AHEAD, jn, bs, ctx - j0, rs);
                if (vp)
                    for (int c = 0; c < NC; c += 2) __builtin_prefetch(vp + 8 * c, 0, 3);
#endif
                for (int c = 0; c < NC; c++) acc[c] = fma8(pb, ld8(v + 8 * c), acc[c]);
            }
        }
        for (int c = 0; c < NC; c++) memcpy(o + 8 * c, &acc[c], sizeof(v8f));
        return;
    }
    for (int d = 0; d < nd; d++) o[d] = 0.0f;
    for (int64_t j0 = 0; j0 < ctx; j0 += bs) {
        const float *b = vb + (int64_t)table[j0 / bs] * block_stride;
        int64_t jn = ctx - j0 < bs ? ctx - j0 : bs;
        for (int64_t jj = 0; jj < jn; jj++) {
            float pj = p[j0 + jj];
            const float *v = b + jj * rs;
            for (int d = 0; d < nd; d++) o[d] = fma1(pj, v[d], o[d]);
        }
    }
}

/* For G heads (2..3) that share their keys: o_h[0..32) = sum over keys j <
 * ctx of p_h[j] * v_j[0..32), o_h at o + h * ostride, p_h at p + h *
 * pstride. 4 vector accumulators per head; each output is the same fused
 * chain (j increasing) as in pv_slice. */
static inline __attribute__((always_inline)) void pv_heads(int G, float *o, int64_t ostride,
                                                           const float *p, int64_t pstride,
                                                           const float *vb,
                                                           const int32_t *table,
                                                           int64_t block_stride, int bs,
                                                           int64_t rs, int64_t ctx) {
    v8f acc[3][4];
    for (int h = 0; h < G; h++)
        for (int c = 0; c < 4; c++) acc[h][c] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t j0 = 0; j0 < ctx; j0 += bs) {
        const float *b = vb + (int64_t)table[j0 / bs] * block_stride;
        int64_t jn = ctx - j0 < bs ? ctx - j0 : bs;
        const float *bn = j0 + bs < ctx ? vb + (int64_t)table[j0 / bs + 1] * block_stride : NULL;
        for (int64_t jj = 0; jj < jn; jj++) {
            const float *v = b + jj * rs;
#if defined(__GNUC__)
            const float *vp = row_ahead(b, bn, jj + KV_AHEAD, jn, bs, ctx - j0, rs);
            if (vp) { /* both lines of the 32-float slice */
                __builtin_prefetch(vp, 0, 3);
                __builtin_prefetch(vp + 16, 0, 3);
            }
#endif
            v8f v0 = ld8(v), v1 = ld8(v + 8), v2 = ld8(v + 16), v3 = ld8(v + 24);
            for (int h = 0; h < G; h++) {
                v8f pb = azr_splat8(p[h * pstride + j0 + jj]);
                acc[h][0] = fma8(pb, v0, acc[h][0]);
                acc[h][1] = fma8(pb, v1, acc[h][1]);
                acc[h][2] = fma8(pb, v2, acc[h][2]);
                acc[h][3] = fma8(pb, v3, acc[h][3]);
            }
        }
    }
    for (int h = 0; h < G; h++)
        for (int c = 0; c < 4; c++) memcpy(o + h * ostride + 8 * c, &acc[h][c], sizeof(v8f));
}

int64_t azr_gen_attention_scratch_floats(int Hq, int Hkv, int64_t max_ctx, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    return (int64_t)nthreads * (Hq / Hkv) * (max_ctx + 8);
}

/* Scores of G <= 3 query heads (q, q + D, ...) against NV*8 keys of one
 * block (NV 1 or 2) from their key slice kt: kt[d * bs] holds dimension d
 * of the first of them, the next keys follow. Each lane is
 * scale * (e + o), e and o the fused chains of q[d] * k[d] over the even
 * and the odd d (d increasing): score_lane's arithmetic, so a key's score
 * is the same whichever path computes it. The n <= NV*8 scores wanted go
 * to sc + h * sstride, their lane-wise maximum into mx[h]. While it runs it
 * prefetches pf_lines cache lines from pf (the next block's slice; pf may
 * be NULL). */
static inline __attribute__((always_inline)) void score_keys(int G, int NV, const float *q, int D,
                                                             const float *kt, int64_t bs,
                                                             int64_t n, float scale, float *sc,
                                                             int64_t sstride, v8f *mx,
                                                             const char *pf, int64_t pf_lines) {
    v8f e[3][2], o[3][2];
    for (int h = 0; h < G; h++)
        for (int v = 0; v < NV; v++) e[h][v] = o[h][v] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};
    int64_t per = pf && D >= 2 ? (pf_lines + D / 2 - 1) / (D / 2) : 0, li = 0;
    int d = 0;
    for (; d + 2 <= D; d += 2) {
        const float *r0 = kt + d * bs, *r1 = r0 + bs;
        v8f a[2], b[2];
        for (int v = 0; v < NV; v++) a[v] = ld8(r0 + 8 * v);
        for (int h = 0; h < G; h++) {
            v8f x = azr_splat8(q[h * D + d]);
            for (int v = 0; v < NV; v++) e[h][v] = fma8(x, a[v], e[h][v]);
        }
        for (int v = 0; v < NV; v++) b[v] = ld8(r1 + 8 * v);
        for (int h = 0; h < G; h++) {
            v8f x = azr_splat8(q[h * D + d + 1]);
            for (int v = 0; v < NV; v++) o[h][v] = fma8(x, b[v], o[h][v]);
        }
#if defined(__GNUC__)
        for (int64_t i = 0; i < per && li < pf_lines; i++, li++) __builtin_prefetch(pf + 64 * li, 0, 3);
#endif
    }
    if (d < D) {
        const float *r0 = kt + d * bs;
        for (int h = 0; h < G; h++) {
            v8f x = azr_splat8(q[h * D + d]);
            for (int v = 0; v < NV; v++) e[h][v] = fma8(x, ld8(r0 + 8 * v), e[h][v]);
        }
    }
    const azr_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int h = 0; h < G; h++)
        for (int v = 0; v < NV; v++) {
            v8f y = (e[h][v] + o[h][v]) * azr_splat8(scale);
            int32_t left = (int32_t)(n - 8 * v);
            if (left >= 8)
                memcpy(sc + h * sstride + 8 * v, &y, sizeof y);
            else
                for (int32_t i = 0; i < left; i++) sc[h * sstride + 8 * v + i] = y[i];
            /* m = y > m ? y : m lane by lane (as the scalar path), lanes
             * past the n wanted left out */
            azr_v8i in = lane < (azr_v8i){left, left, left, left, left, left, left, left};
            in &= y > mx[h];
            mx[h] = (v8f)(((azr_v8i)y & in) | ((azr_v8i)mx[h] & ~in));
        }
}

/* One key's score_keys lane, for blocks whose size is not a multiple of 8. */
static inline float score_lane(const float *q, int D, const float *kt, int64_t bs, float scale) {
    float e = 0.0f, o = 0.0f;
    int d = 0;
    for (; d + 2 <= D; d += 2) {
        e = fma1(q[d], kt[d * bs], e);
        o = fma1(q[d + 1], kt[(d + 1) * bs], o);
    }
    if (d < D) e = fma1(q[d], kt[d * bs], e);
    return (e + o) * scale;
}

/* One unit of the paged attention: row r, KV group g, its query heads
 * [h0, h1). Every head's arithmetic is the same whichever unit holds it. */
static inline __attribute__((always_inline)) void attend_unit(
    float *out, const float *q, int64_t q_stride, const float *kv, int64_t block_stride,
    int64_t v_offset, int block_size, const int32_t *tables, const int64_t *table_off,
    const int32_t *pos, int Hkv, int D, float *s, int64_t max_ctx, int64_t r, int g, int h0,
    int h1) {
    int group = h1 - h0 > 0 ? h1 - h0 : 0;
    int64_t bs = block_size, slice = (int64_t)D * bs; /* a group's keys (or values) in a block */
    float scale = 1.0f / sqrtf((float)D);
    int64_t ctx = (int64_t)pos[r] + 1;
    const int32_t *table = tables + table_off[r];
    const float *qg = q + r * q_stride + (int64_t)h0 * D;
    float mx[64];
    /* scores: each block's key slice read once for up to three heads, 16
     * keys at a time (the key dimension runs down the slice, so a key's
     * dot product is one lane: no horizontal sums) */
    v8f mxv[64]; /* the vector paths' lane-wise maxima */
    for (int h = 0; h < group; h++) mx[h] = -INFINITY, mxv[h] = azr_splat8(-INFINITY);
    int64_t kn_lines = (slice * (int64_t)sizeof(float) + 63) / 64;
    int64_t ps = max_ctx + 8; /* floats from one head's scores (in s) to the next's */
    for (int64_t j0 = 0; j0 < ctx; j0 += bs) {
        const float *kb = kv + (int64_t)table[j0 / bs] * block_stride + g * slice;
        int64_t jn = ctx - j0 < bs ? ctx - j0 : bs;
        /* the next block's slice (blocks are scattered: no hardware
         * prefetcher finds it), fetched along the first pass over this one */
        const char *kn = j0 + bs < ctx ? (const char *)(kv + (int64_t)table[j0 / bs + 1] * block_stride +
                                                        g * slice)
                                       : NULL;
        for (int hh = 0; hh < group; hh += 3) {
            int G = group - hh < 3 ? group - hh : 3;
            const float *qh = qg + (int64_t)hh * D;
            float *sh = s + hh * ps + j0;
            int64_t jj = 0;
            const char *pf = hh == 0 ? kn : NULL;
            if (bs % 8 == 0) {
                for (; jj < jn; jj += bs - jj >= 16 ? 16 : 8) {
                    int NV = bs - jj >= 16 ? 2 : 1; /* 16 keys, or the block's last 8 */
                    int64_t n = jn - jj < 8 * NV ? jn - jj : 8 * NV;
#define SCORE(G_, NV_) \
    score_keys(G_, NV_, qh, D, kb + jj, bs, n, scale, sh + jj, ps, mxv + hh, pf, kn_lines)
                    if (NV == 2) {
                        if (G == 3) SCORE(3, 2);
                        else if (G == 2) SCORE(2, 2);
                        else SCORE(1, 2);
                    } else {
                        if (G == 3) SCORE(3, 1);
                        else if (G == 2) SCORE(2, 1);
                        else SCORE(1, 1);
                    }
#undef SCORE
                    pf = NULL;
                }
            }
            for (; jj < jn; jj++)
                for (int h = 0; h < G; h++) {
                    float v = score_lane(qh + (int64_t)h * D, D, kb + jj, bs, scale);
                    sh[h * ps + jj] = v;
                    mx[hh + h] = v > mx[hh + h] ? v : mx[hh + h];
                }
        }
    }
    for (int h = 0; h < group; h++) {
        for (int i = 0; i < 8; i++) mx[h] = mxv[h][i] > mx[h] ? mxv[h][i] : mx[h];
        float *sh = s + h * ps, m = mx[h];
        /* exponentials (vectorised), then their sum in 8 lanes */
        int64_t j = 0;
        for (; j + 8 <= ctx; j += 8) {
            v8f e = exp_neg8(ld8(sh + j) - azr_splat8(m));
            memcpy(sh + j, &e, sizeof e);
        }
        for (; j < ctx; j++) sh[j] = exp_neg(sh[j] - m);
        int64_t c8 = ctx & ~(int64_t)7;
        v8f acc = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = 0; j < c8; j += 8) acc += ld8(sh + j);
        float sum = hsum8(acc);
        for (int64_t j = c8; j < ctx; j++) sum += sh[j];
        /* the probabilities, p_j = e_j * (1 / sum), in place (one
         * multiply per key here, not one per key and head slice in the
         * value passes) */
        float inv = 1.0f / sum;
        for (j = 0; j + 8 <= ctx; j += 8) {
            v8f e = ld8(sh + j) * azr_splat8(inv);
            memcpy(sh + j, &e, sizeof e);
        }
        for (; j < ctx; j++) sh[j] *= inv;
    }
    /* out_h = sum_j p_j v_j, one fused multiply-add chain per output (j
     * increasing) with the accumulators in registers over all keys */
    /* a group's values in a block: one row of D per key, keys in order */
    const float *vbase = kv + v_offset + g * slice;
    if (group >= 2 && group <= 3 && D % 32 == 0) {
        /* all the unit's heads in one pass over V (read once, not once per
         * head), 32-wide slices; the same chains as pv_slice, so the same bits */
        float *o = out + (int64_t)h0 * D;
        for (int d0 = 0; d0 < D; d0 += 32) {
            if (group == 2)
                pv_heads(2, o + d0, D, s, ps, vbase + d0, table, block_stride, block_size,
                         D, ctx);
            else
                pv_heads(3, o + d0, D, s, ps, vbase + d0, table, block_stride, block_size,
                         D, ctx);
        }
        return;
    }
    /* per head, 64-wide slices of the head dimension */
    for (int h = 0; h < group; h++) {
        const float *ph = s + h * ps;
        float *o = out + (int64_t)(h0 + h) * D;
        for (int d0 = 0; d0 < D; d0 += 64) {
            int nd = D - d0 < 64 ? D - d0 : 64;
#define PV(NC) pv_slice(NC, o + d0, ph, vbase + d0, table, block_stride, block_size, D, ctx, nd)
            switch (nd % 8 ? 0 : nd / 8) {
            case 8: PV(8); break;
            case 7: PV(7); break;
            case 6: PV(6); break;
            case 5: PV(5); break;
            case 4: PV(4); break;
            case 3: PV(3); break;
            case 2: PV(2); break;
            case 1: PV(1); break;
            default: PV(0); break;
            }
#undef PV
        }
    }
}

void azr_gen_paged_attention(float *out, const float *q, int64_t q_stride, const float *kv,
                             int64_t block_stride, int64_t v_offset, int block_size,
                             const int32_t *tables, const int64_t *table_off,
                             const int32_t *pos, int64_t N, int Hq, int Hkv, int D,
                             float *scratch, int64_t max_ctx) {
    int group = Hq / Hkv;
    int64_t Dq = (int64_t)Hq * D;
    int64_t per_thread = azr_gen_attention_scratch_floats(Hq, Hkv, max_ctx, 1);
    if (N * Hkv >= 4 * (int64_t)num_threads()) {
        /* many rows: one unit per row and KV group, so each key is loaded
         * once for all the group's query heads */
        int64_t units = N * Hkv;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; u++) {
            int64_t r = u / Hkv;
            int g = (int)(u % Hkv);
            attend_unit(out + r * Dq, q, q_stride, kv, block_stride, v_offset, block_size, tables,
                        table_off, pos, Hkv, D, scratch + (int64_t)thread_id() * per_thread,
                        max_ctx, r, g, g * group, (g + 1) * group);
        }
        return;
    }
#pragma omp parallel if (N * Hq > 1)
    azr_gen_paged_attention_share(out, q, q_stride, kv, block_stride, v_offset, block_size,
                                  tables, table_off, pos, N, Hq, Hkv, D, scratch, max_ctx,
                                  thread_id(), num_threads_in_team());
}

void azr_gen_paged_attention_share(float *out, const float *q, int64_t q_stride, const float *kv,
                                   int64_t block_stride, int64_t v_offset, int block_size,
                                   const int32_t *tables, const int64_t *table_off,
                                   const int32_t *pos, int64_t N, int Hq, int Hkv, int D,
                                   float *scratch, int64_t max_ctx, int t, int T) {
    /* few rows (decode of one or two sequences): the (row, query head)
     * pairs are cut into one contiguous share per thread, evenly (3 KV
     * groups on 2 threads as whole units left one thread idle for a third
     * of the attention), and each share into units at KV-group boundaries,
     * so a thread reads a group's keys and values once for all of its heads
     * of that group (one unit per head read them once per head: a third of
     * the decode's attention time went to reading them again). Bit-identical
     * to the grouped path: each head is computed the same way in either. */
    int group = Hq / Hkv;
    int64_t Dq = (int64_t)Hq * D, pairs = N * Hq;
    int64_t a = pairs * t / T, b = pairs * (t + 1) / T;
    float *s = scratch + t * azr_gen_attention_scratch_floats(Hq, Hkv, max_ctx, 1);
    while (a < b) {
        int64_t r = a / Hq;
        int h = (int)(a % Hq), g = h / group;
        int h1 = (g + 1) * group;
        if (h1 - h > b - a) h1 = h + (int)(b - a);
        attend_unit(out + r * Dq, q, q_stride, kv, block_stride, v_offset, block_size, tables,
                    table_off, pos, Hkv, D, s, max_ctx, r, g, h, h1);
        a += h1 - h;
    }
}

void azr_gen_paged_attention_naive(float *out, const float *q, int64_t q_stride, const float *kv,
                                   int64_t block_stride, int64_t v_offset, int block_size,
                                   const int32_t *tables, const int64_t *table_off,
                                   const int32_t *pos, int64_t N, int Hq, int Hkv, int D) {
    int group = Hq / Hkv;
    int64_t Dq = (int64_t)Hq * D;
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
                                 (int64_t)g * D * block_size + j % block_size;
                double sc = 0.0;
                for (int d = 0; d < D; d++) sc += (double)qh[d] * k[(int64_t)d * block_size];
                sc *= scale;
                if (sc > m) m = sc;
            }
            float *o = out + r * Dq + (int64_t)h * D;
            double acc[2048];
            for (int d = 0; d < D; d++) acc[d] = 0.0;
            for (int64_t j = 0; j < ctx; j++) {
                int64_t base = (int64_t)table[j / block_size] * block_stride, p_in = j % block_size;
                const float *k = kv + base + (int64_t)g * D * block_size + p_in;
                const float *v = kv + base + v_offset + ((int64_t)g * block_size + p_in) * D;
                double sc = 0.0;
                for (int d = 0; d < D; d++) sc += (double)qh[d] * k[(int64_t)d * block_size];
                double p = exp(sc * scale - m);
                sum += p;
                for (int d = 0; d < D; d++) acc[d] += p * v[d];
            }
            for (int d = 0; d < D; d++) o[d] = (float)(acc[d] / sum);
        }
    }
}
