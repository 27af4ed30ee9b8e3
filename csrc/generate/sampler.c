/*
 * sampler.c -- greedy / temperature / top-k / top-p sampling of one logits
 * row by inverse CDF (see sampler.h).
 * Owns: the sampling distribution and the log-probs reported for it.
 * Must not: allocate, print, or keep state between calls.
 */
/* No implicit fused multiply-add contraction: exp_neg and exp_neg8 must
 * round the same way (see fastmath.h). */
#pragma GCC optimize("fp-contract=off")
#pragma GCC diagnostic ignored "-Wpsabi"

#include "sampler.h"
#include "fastmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif


static float row_max(const float *z, int64_t V) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t v = 0; v < V; v++) m = z[v] > m ? z[v] : m;
    return m;
}

#define SUM_BLOCK 256

/* sum of exp(z*scale - shift) over z[b0..b1): 8 lanes, then their sum,
 * then the scalar tail. With store, the exponentials go to store. */
static float block_exp(const float *z, int64_t b0, int64_t b1, float scale, float shift,
                       float *store) {
    azr_v8f vs = azr_splat8(scale), vh = azr_splat8(shift);
    int64_t v = b0;
    azr_v8f acc = azr_splat8(0.0f);
    for (; v + 8 <= b1; v += 8) {
        azr_v8f zv;
        memcpy(&zv, z + v, sizeof zv);
        azr_v8f e = exp_neg8(zv * vs - vh);
        if (store) memcpy(store + v, &e, sizeof e);
        acc += e;
    }
    float s = azr_hsum8(acc);
    for (; v < b1; v++) {
        float e = exp_neg(z[v] * scale - shift);
        if (store) store[v] = e;
        s += e;
    }
    return s;
}

/* sum of exp(z*scale - shift), in blocks of SUM_BLOCK floats (block_exp),
 * blocks added in double. With store, the exponentials go to store and
 * each block's sum to bsum. */
static double sum_exp(const float *z, int64_t V, float scale, float shift, float *store,
                      float *bsum) {
    double total = 0.0;
    for (int64_t b0 = 0; b0 < V; b0 += SUM_BLOCK) {
        float s = block_exp(z, b0, b0 + SUM_BLOCK < V ? b0 + SUM_BLOCK : V, scale, shift, store);
        if (store) bsum[b0 / SUM_BLOCK] = s;
        total += (double)s;
    }
    return total;
}

/* The inverse CDF over exponentials e (V) whose block sums bsum add up (in
 * double, in order) to S: the first token at which the running sum passes
 * u*S. Blocks are skipped by their sums, the same partial sums S was made
 * of, so only one block is walked token by token; tokens with e = 0 are
 * never chosen (if rounding leaves the target unpassed, the last token
 * with e > 0). */
static int32_t inverse_cdf(const float *e, const float *bsum, int64_t V, double u, double S) {
    int64_t nb = (V + SUM_BLOCK - 1) / SUM_BLOCK, b = 0;
    double target = u * S, cum = 0.0;
    for (; b < nb; b++) {
        if (bsum[b] > 0.0f && cum + (double)bsum[b] > target) break;
        cum += (double)bsum[b];
    }
    if (b < nb)
        for (int64_t v = b * SUM_BLOCK; v < V; v++) {
            if (e[v] <= 0.0f) continue;
            cum += (double)e[v];
            if (cum > target) return (int32_t)v;
        }
    for (int64_t v = V - 1; v > 0; v--)
        if (e[v] > 0.0f) return (int32_t)v;
    return 0;
}

double azr_gen_logsumexp(const float *z, int64_t V) {
    float m = row_max(z, V);
    return (double)m + log(sum_exp(z, V, 1.0f, m, NULL, NULL));
}

static int cand_cmp(const void *a, const void *b) {
    const azr_gen_cand *x = a, *y = b;
    if (x->e != y->e) return x->e > y->e ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* k-th largest (k >= 1) of a (n), destroying a's order (quickselect). */
static float kth_largest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

void azr_gen_sample(const float *z, int64_t V, const azr_gen_sampling *sp, double u, float *work_f,
                    azr_gen_cand *work_c, int32_t *tok, float *lp, float *model_lp) {
    float m = row_max(z, V);
    if (!isfinite(m)) {
        *tok = 0;
        *lp = NAN;
        *model_lp = NAN;
        return;
    }
    int full = (sp->top_k <= 0 || sp->top_k >= V) && !(sp->top_p < 1.0f);
    /* temperature 1 without truncation: the sampling sum is the same sum as
     * the model's (same scale, same shift, same order), so compute it once */
    int same = full && sp->temperature == 1.0f;
    float *bsum = (float *)work_c; /* unused by the full-vocabulary path */
    double S1 = sum_exp(z, V, 1.0f, m, same ? work_f : NULL, bsum);
    double lse = (double)m + log(S1);
    int32_t t = 0;
    if (!(sp->temperature > 0.0f)) {
        for (int64_t v = 0; v < V; v++)
            if (z[v] == m) {
                t = (int32_t)v;
                break;
            }
        *tok = t;
        *lp = 0.0f;
        *model_lp = (float)((double)z[t] - lse);
        return;
    }
    float inv_t = 1.0f / sp->temperature;
    float ms = m * inv_t; /* max of z * inv_t (rounding is monotonic) */
    if (full) {
        double S = same ? S1 : sum_exp(z, V, inv_t, ms, work_f, bsum);
        t = inverse_cdf(work_f, bsum, V, u, S);
        *tok = t;
        *lp = (float)((double)(z[t] * inv_t - ms) - log(S));
        *model_lp = (float)((double)z[t] - lse);
        return;
    }
    /* candidates after top-k */
    int64_t n = 0;
    if (sp->top_k > 0 && sp->top_k < V) {
        int64_t k = sp->top_k;
        memcpy(work_f, z, (size_t)V * sizeof(float));
        float thr = kth_largest(work_f, V, k);
        for (int64_t v = 0; v < V; v++)
            if (z[v] > thr) work_c[n++].id = (int32_t)v;
        for (int64_t v = 0; v < V && n < k; v++)
            if (z[v] == thr) work_c[n++].id = (int32_t)v;
    } else {
        for (int64_t v = 0; v < V; v++) work_c[v].id = (int32_t)v;
        n = V;
    }
    double S = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float e = exp_neg(z[work_c[i].id] * inv_t - ms);
        work_c[i].e = e;
        S += (double)e;
    }
    if (sp->top_p < 1.0f) {
        /* shrink to a most-probable set that still holds top_p of the mass
         * (it contains the nucleus), so only that set is sorted */
        double need = (double)sp->top_p * S;
        float thr = 1.0f;
        for (;;) {
            thr *= 0.5f;
            double mass = 0.0;
            for (int64_t i = 0; i < n; i++)
                if (work_c[i].e >= thr) mass += (double)work_c[i].e;
            if (mass >= need || thr < 1e-30f) break;
        }
        if (thr >= 1e-30f) {
            int64_t w = 0;
            for (int64_t i = 0; i < n; i++)
                if (work_c[i].e >= thr) work_c[w++] = work_c[i];
            n = w;
        }
    }
    qsort(work_c, (size_t)n, sizeof *work_c, cand_cmp);
    int64_t keep = n;
    if (sp->top_p < 1.0f) {
        double need = (double)sp->top_p * S, cum = 0.0;
        keep = 0;
        while (keep < n && (keep == 0 || cum < need)) cum += (double)work_c[keep++].e;
    }
    double Sk = 0.0;
    for (int64_t i = 0; i < keep; i++) Sk += (double)work_c[i].e;
    double target = u * Sk, cum = 0.0;
    int64_t pick = keep - 1;
    for (int64_t i = 0; i < keep; i++) {
        cum += (double)work_c[i].e;
        if (cum > target) {
            pick = i;
            break;
        }
    }
    t = work_c[pick].id;
    *tok = t;
    *lp = (float)(log((double)work_c[pick].e) - log(Sk));
    *model_lp = (float)((double)z[t] - lse);
}

void azr_gen_sample_par(const float *z, int64_t V, const azr_gen_sampling *sp, double u,
                        float *work_f, azr_gen_cand *work_c, int32_t *tok, float *lp,
                        float *model_lp) {
    int full = (sp->top_k <= 0 || sp->top_k >= V) && !(sp->top_p < 1.0f);
    int64_t nb = (V + SUM_BLOCK - 1) / SUM_BLOCK;
    if (!full || !(sp->temperature > 0.0f) || nb < 2) {
        azr_gen_sample(z, V, sp, u, work_f, work_c, tok, lp, model_lp);
        return;
    }
    /* block sums under the model (bsum1) and under the sampling
     * distribution (bsum; the same sums at temperature 1), in work_c */
    float *bsum = (float *)work_c, *bsum1 = bsum + nb;
    int same = sp->temperature == 1.0f;
    float inv_t = 1.0f / sp->temperature, m = -INFINITY;
#pragma omp parallel
    {
#pragma omp for schedule(static) reduction(max : m)
        for (int64_t v = 0; v < V; v++) m = z[v] > m ? z[v] : m;
        /* (the loop's end is a barrier: every thread sees the final max) */
        if (isfinite(m)) {
            float ms = m * inv_t;
#pragma omp for schedule(static)
            for (int64_t b = 0; b < nb; b++) {
                int64_t b0 = b * SUM_BLOCK, b1 = b0 + SUM_BLOCK < V ? b0 + SUM_BLOCK : V;
                bsum1[b] = block_exp(z, b0, b1, 1.0f, m, same ? work_f : NULL);
                bsum[b] = same ? bsum1[b] : block_exp(z, b0, b1, inv_t, ms, work_f);
            }
        }
    }
    if (!isfinite(m)) { /* azr_gen_sample's answer for non-finite logits */
        azr_gen_sample(z, V, sp, u, work_f, work_c, tok, lp, model_lp);
        return;
    }
    double S1 = 0.0, S = 0.0;
    for (int64_t b = 0; b < nb; b++) {
        S1 += (double)bsum1[b];
        S += (double)bsum[b];
    }
    float ms = m * inv_t;
    int32_t t = inverse_cdf(work_f, bsum, V, u, S);
    *tok = t;
    *lp = (float)((double)(z[t] * inv_t - ms) - log(S));
    *model_lp = (float)((double)z[t] - ((double)m + log(S1)));
}
