/*
 * kernels_naive.c -- the reference versions of the kernels in kernels.c:
 * plain serial loops straight from the formulas, with double accumulators
 * and libm exp, so the tests can compare the fast paths against them.
 * Owns: readability, not speed. Must not: allocate, print or abort; be
 * called on hot paths.
 */
#include <math.h>
#include <string.h>

#include "kernels.h"

void azr_linear_forward_naive(float *y, const float *x, const float *w, const float *b, int64_t N,
                              int64_t in, int64_t out) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) s += (double)x[n * in + i] * w[o * in + i];
            y[n * out + o] = (float)s;
        }
}

void azr_linear_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int64_t N, int64_t in, int64_t out,
                               int accumulate_dx) {
    if (dx)
        for (int64_t n = 0; n < N; n++)
            for (int64_t i = 0; i < in; i++) {
                double s = accumulate_dx ? dx[n * in + i] : 0.0;
                for (int64_t o = 0; o < out; o++) s += (double)dy[n * out + o] * w[o * in + i];
                dx[n * in + i] = (float)s;
            }
    if (dw)
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) {
                double s = dw[o * in + i];
                for (int64_t n = 0; n < N; n++) s += (double)dy[n * out + o] * x[n * in + i];
                dw[o * in + i] = (float)s;
            }
    if (db)
        for (int64_t o = 0; o < out; o++) {
            double s = db[o];
            for (int64_t n = 0; n < N; n++) s += dy[n * out + o];
            db[o] = (float)s;
        }
}

void azr_rmsnorm_forward_naive(float *y, float *rstd, const float *x, const float *w, int64_t N,
                               int64_t C, float eps) {
    for (int64_t n = 0; n < N; n++) {
        double ss = 0.0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[n * C + c] * x[n * C + c];
        double r = 1.0 / sqrt(ss / (double)C + eps);
        if (rstd) rstd[n] = (float)r;
        for (int64_t c = 0; c < C; c++) y[n * C + c] = (float)(w[c] * (x[n * C + c] * r));
    }
}

void azr_rmsnorm_backward_naive(float *dx, float *dw, const float *dy, const float *x,
                                const float *w, const float *rstd, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        double r = rstd[n], dot = 0.0;
        for (int64_t c = 0; c < C; c++) dot += (double)w[c] * dy[n * C + c] * x[n * C + c];
        for (int64_t c = 0; c < C; c++) {
            dx[n * C + c] += (float)(r * w[c] * dy[n * C + c] - r * r * r * dot / (double)C * x[n * C + c]);
            dw[c] += (float)((double)dy[n * C + c] * x[n * C + c] * r);
        }
    }
}

void azr_rope_apply_naive(float *x, int64_t N, int nheads, int D, int64_t row_stride,
                          const float *cos_t, const float *sin_t, int inverse) {
    int half = D / 2;
    for (int64_t n = 0; n < N; n++)
        for (int h = 0; h < nheads; h++)
            for (int i = 0; i < half; i++) {
                float *a = x + n * row_stride + (int64_t)h * D;
                double c = cos_t[n * half + i], s = sin_t[n * half + i] * (inverse ? -1.0 : 1.0);
                double x1 = a[i], x2 = a[i + half];
                a[i] = (float)(x1 * c - x2 * s);
                a[i + half] = (float)(x2 * c + x1 * s);
            }
}

static double dot_d(const float *a, const float *b, int D) {
    double s = 0.0;
    for (int d = 0; d < D; d++) s += (double)a[d] * b[d];
    return s;
}

void azr_attention_forward_naive(float *out, float *lse, const float *qkv, int64_t N, int B,
                                 const int64_t *seq_off, const int64_t *seq_len, int Hq, int Hkv,
                                 int D) {
    int64_t row = (int64_t)(Hq + 2 * Hkv) * D, orow = (int64_t)Hq * D;
    double scale = 1.0 / sqrt((double)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            int g = h / (Hq / Hkv);
            for (int64_t i = 0; i < seq_len[b]; i++) {
                int64_t ri = seq_off[b] + i;
                const float *q = qkv + ri * row + (int64_t)h * D;
                double m = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j <= i; j++) {
                    const float *k = qkv + (seq_off[b] + j) * row + (int64_t)(Hq + g) * D;
                    double s = dot_d(q, k, D) * scale;
                    if (s > m) m = s;
                }
                for (int64_t j = 0; j <= i; j++) {
                    const float *k = qkv + (seq_off[b] + j) * row + (int64_t)(Hq + g) * D;
                    sum += exp(dot_d(q, k, D) * scale - m);
                }
                for (int d = 0; d < D; d++) {
                    double o = 0.0;
                    for (int64_t j = 0; j <= i; j++) {
                        const float *k = qkv + (seq_off[b] + j) * row + (int64_t)(Hq + g) * D;
                        const float *v = k + (int64_t)Hkv * D;
                        o += exp(dot_d(q, k, D) * scale - m) / sum * v[d];
                    }
                    out[ri * orow + (int64_t)h * D + d] = (float)o;
                }
                if (lse) lse[(int64_t)h * N + ri] = (float)(m + log(sum));
            }
        }
}

void azr_attention_backward_naive(float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, int64_t N, int B,
                                  const int64_t *seq_off, const int64_t *seq_len, int Hq, int Hkv,
                                  int D) {
    int64_t row = (int64_t)(Hq + 2 * Hkv) * D, orow = (int64_t)Hq * D;
    double scale = 1.0 / sqrt((double)D);
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < seq_len[b]; i++)
            memset(dqkv + (seq_off[b] + i) * row, 0, (size_t)row * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            int g = h / (Hq / Hkv);
            for (int64_t i = 0; i < seq_len[b]; i++) {
                int64_t ri = seq_off[b] + i;
                const float *q = qkv + ri * row + (int64_t)h * D;
                const float *dO = dout + ri * orow + (int64_t)h * D;
                double Di = dot_d(dO, out + ri * orow + (int64_t)h * D, D);
                for (int64_t j = 0; j <= i; j++) {
                    int64_t rj = seq_off[b] + j;
                    const float *k = qkv + rj * row + (int64_t)(Hq + g) * D;
                    const float *v = k + (int64_t)Hkv * D;
                    double p = exp(dot_d(q, k, D) * scale - lse[(int64_t)h * N + ri]);
                    double ds = p * (dot_d(dO, v, D) - Di) * scale;
                    float *dq = dqkv + ri * row + (int64_t)h * D;
                    float *dk = dqkv + rj * row + (int64_t)(Hq + g) * D;
                    float *dv = dk + (int64_t)Hkv * D;
                    for (int d = 0; d < D; d++) {
                        dq[d] += (float)(ds * k[d]);
                        dk[d] += (float)(ds * q[d]);
                        dv[d] += (float)(p * dO[d]);
                    }
                }
            }
        }
}

void azr_swiglu_forward_naive(float *h, const float *gu, int64_t N, int64_t I) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < I; i++) {
            double g = gu[n * 2 * I + i], u = gu[n * 2 * I + I + i];
            h[n * I + i] = (float)(g / (1.0 + exp(-g)) * u);
        }
}

void azr_swiglu_backward_naive(float *dgu, const float *dh, const float *gu, int64_t N, int64_t I) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < I; i++) {
            double g = gu[n * 2 * I + i], u = gu[n * 2 * I + I + i], d = dh[n * I + i];
            double s = 1.0 / (1.0 + exp(-g));
            dgu[n * 2 * I + I + i] = (float)(d * g * s);
            dgu[n * 2 * I + i] = (float)(d * u * s * (1.0 + g * (1.0 - s)));
        }
}

void azr_vocab_logsoftmax_naive(float *logits, int64_t rows, int64_t V, const int32_t *targets,
                                float *logp, float *ent, float *lse, const float *dcoef) {
    for (int64_t r = 0; r < rows; r++) {
        float *z = logits + r * V;
        double m = -INFINITY, sum = 0.0, sz = 0.0;
        for (int64_t v = 0; v < V; v++) if (z[v] > m) m = z[v];
        for (int64_t v = 0; v < V; v++) {
            double e = exp(z[v] - m);
            sum += e;
            sz += e * z[v];
        }
        double ls = m + log(sum);
        if (logp) logp[r] = (float)(z[targets[r]] - ls);
        if (ent) ent[r] = (float)(ls - sz / sum);
        if (lse) lse[r] = (float)ls;
        if (dcoef) {
            for (int64_t v = 0; v < V; v++)
                z[v] = (float)(dcoef[r] * ((targets && v == targets[r] ? 1.0 : 0.0) - exp(z[v] - ls)));
        }
    }
}

void azr_adamw_update_naive(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                            float b1, float b2, float eps, float wd, int64_t t, float gscale) {
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    for (int64_t i = 0; i < n; i++) {
        double gi = (double)g[i] * gscale;
        double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
        double vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
        double pi = (double)p[i] * (1.0 - (double)lr * wd);
        pi -= (double)lr / bc1 * mi / (sqrt(vi) / sqrt(bc2) + eps);
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)pi;
    }
}
