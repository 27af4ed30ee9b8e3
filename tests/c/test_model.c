/* test_model.c -- the model layer under ASan/UBSan: every optimized kernel
 * against its naive reference, a finite-difference gradient check of the
 * whole model, safetensors round trip and mutated (hostile) headers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "azr_test.h"
#include "backend/cpu/kernels.h"
#include "io/safetensors.h"
#include "model/model.h"

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *rnd(int64_t n, float scale) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}
static float *fdup(const float *x, int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}
static double maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

static void test_linear(void) {
    int64_t N = 37, in = 29, out = 41;
    float *x = rnd(N * in, 1), *w = rnd(out * in, 1), *b = rnd(out, 1), *dy = rnd(N * out, 1);
    float *y1 = rnd(N * out, 1), *y2 = rnd(N * out, 1);
    azr_linear_forward(y1, x, w, b, N, in, out);
    azr_linear_forward_naive(y2, x, w, b, N, in, out);
    CHECK(maxdiff(y1, y2, N * out) < 1e-4);
    float *dx1 = rnd(N * in, 1), *dx2 = fdup(dx1, N * in), *dw1 = rnd(out * in, 1),
          *dw2 = fdup(dw1, out * in), *db1 = rnd(out, 1), *db2 = fdup(db1, out);
    azr_linear_backward(dx1, dw1, db1, dy, x, w, N, in, out, 1);
    azr_linear_backward_naive(dx2, dw2, db2, dy, x, w, N, in, out, 1);
    CHECK(maxdiff(dx1, dx2, N * in) < 1e-4);
    CHECK(maxdiff(dw1, dw2, out * in) < 1e-4);
    CHECK(maxdiff(db1, db2, out) < 1e-4);
    /* a big one goes through the threaded split */
    int64_t M = 300, K = 200, Nn = 260;
    float *A = rnd(M * K, 1), *B = rnd(Nn * K, 1), *C1 = rnd(M * Nn, 1), *C2 = rnd(M * Nn, 1);
    azr_linear_forward(C1, A, B, NULL, M, K, Nn);
    azr_linear_forward_naive(C2, A, B, NULL, M, K, Nn);
    CHECK(maxdiff(C1, C2, M * Nn) < 1e-3);
    free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1), free(dx2), free(dw1),
        free(dw2), free(db1), free(db2), free(A), free(B), free(C1), free(C2);
}

static void test_rmsnorm_rope_swiglu(void) {
    int64_t N = 23, C = 48, I = 40;
    float *x = rnd(N * C, 2), *w = rnd(C, 1), *y1 = rnd(N * C, 1), *y2 = rnd(N * C, 1);
    float r1[23], r2[23];
    azr_rmsnorm_forward(y1, r1, x, w, N, C, 1e-5f);
    azr_rmsnorm_forward_naive(y2, r2, x, w, N, C, 1e-5f);
    CHECK(maxdiff(y1, y2, N * C) < 1e-5 && maxdiff(r1, r2, N) < 1e-5);
    float *dy = rnd(N * C, 1), *dx1 = rnd(N * C, 1), *dx2 = fdup(dx1, N * C), *dw1 = rnd(C, 1),
          *dw2 = fdup(dw1, C);
    azr_rmsnorm_backward(dx1, dw1, dy, x, w, r1, N, C);
    azr_rmsnorm_backward_naive(dx2, dw2, dy, x, w, r1, N, C);
    CHECK(maxdiff(dx1, dx2, N * C) < 1e-4 && maxdiff(dw1, dw2, C) < 1e-4);

    int D = 16, H = 3;
    int32_t pos[23];
    for (int i = 0; i < N; i++) pos[i] = i * 37 % 500;
    float *cs = malloc(sizeof(float) * N * D / 2), *sn = malloc(sizeof(float) * N * D / 2);
    azr_rope_table(cs, sn, pos, N, D, 10000.0f);
    float *q = rnd(N * H * D, 1), *q1 = fdup(q, N * H * D), *q2 = fdup(q, N * H * D);
    azr_rope_apply(q1, N, H, D, H * D, cs, sn, 0);
    azr_rope_apply_naive(q2, N, H, D, H * D, cs, sn, 0);
    CHECK(maxdiff(q1, q2, N * H * D) < 1e-6);
    azr_rope_apply(q1, N, H, D, H * D, cs, sn, 1); /* inverse undoes it */
    CHECK(maxdiff(q1, q, N * H * D) < 1e-5);
    CHECK(fabsf(cs[0] - 1.0f) < 1e-7f && fabsf(sn[0]) < 1e-7f); /* position 0: identity */

    float *gu = rnd(N * 2 * I, 4), *h1 = rnd(N * I, 1), *h2 = rnd(N * I, 1);
    azr_swiglu_forward(h1, gu, N, I);
    azr_swiglu_forward_naive(h2, gu, N, I);
    CHECK(maxdiff(h1, h2, N * I) < 1e-5);
    float *dh = rnd(N * I, 1), *dg1 = rnd(N * 2 * I, 1), *dg2 = rnd(N * 2 * I, 1);
    azr_swiglu_backward(dg1, dh, gu, N, I);
    azr_swiglu_backward_naive(dg2, dh, gu, N, I);
    CHECK(maxdiff(dg1, dg2, N * 2 * I) < 1e-5);
    free(x), free(w), free(y1), free(y2), free(dy), free(dx1), free(dx2), free(dw1), free(dw2);
    free(cs), free(sn), free(q), free(q1), free(q2), free(gu), free(h1), free(h2), free(dh),
        free(dg1), free(dg2);
}

static void test_attention_case(int B, int Hq, int Hkv, int D, const int64_t *len);

static void test_attention(void) {
    int64_t small[4] = {7, 0, 13, 1};
    test_attention_case(4, 6, 2, 8, small);
    /* big enough to run threaded, with several 64-row tiles and ragged ends */
    int64_t big[3] = {200, 131, 65};
    test_attention_case(3, 4, 1, 16, big);
}

static void test_attention_case(int B, int Hq, int Hkv, int D, const int64_t *len) {
    int64_t off[8], N = 0, maxl = 0;
    for (int b = 0; b < B; b++) off[b] = N, N += len[b], maxl = len[b] > maxl ? len[b] : maxl;
    int64_t row = (Hq + 2 * Hkv) * D, orow = Hq * D;
    float *qkv = rnd(N * row, 1.5f), *o1 = rnd(N * orow, 1), *o2 = rnd(N * orow, 1);
    float *l1 = rnd(Hq * N, 1), *l2 = rnd(Hq * N, 1);
    float *scratch = malloc(sizeof(float) * (size_t)azr_attention_scratch_floats(maxl, 64));
    azr_attention_forward(o1, l1, qkv, N, B, off, len, Hq, Hkv, D, scratch);
    azr_attention_forward_naive(o2, l2, qkv, N, B, off, len, Hq, Hkv, D);
    CHECK(maxdiff(o1, o2, N * orow) < 1e-5 && maxdiff(l1, l2, Hq * N) < 1e-5);
    float *dout = rnd(N * orow, 1), *d1 = rnd(N * row, 1), *d2 = rnd(N * row, 1);
    azr_attention_backward(d1, dout, qkv, o1, l1, N, B, off, len, Hq, Hkv, D, scratch);
    azr_attention_backward_naive(d2, dout, qkv, o2, l2, N, B, off, len, Hq, Hkv, D);
    CHECK(maxdiff(d1, d2, N * row) < 1e-4);
    /* decode: the last token of each sequence against its whole prefix as a cache */
    float dec[256];
    for (int b = 0; b < B; b++) {
        if (len[b] == 0) continue;
        int64_t last = off[b] + len[b] - 1;
        azr_attention_decode(dec, qkv + last * row, qkv + off[b] * row + Hq * D,
                             qkv + off[b] * row + (Hq + Hkv) * D, len[b], row, Hq, Hkv, D, scratch);
        CHECK(maxdiff(dec, o1 + last * orow, orow) < 1e-5);
    }
    free(qkv), free(o1), free(o2), free(l1), free(l2), free(scratch), free(dout), free(d1), free(d2);
}

static void test_vocab_and_adamw(void) {
    int64_t R = 5, V = 333;
    float *z = rnd(R * V, 8), *z1 = fdup(z, R * V), *z2 = fdup(z, R * V);
    int32_t tg[5] = {0, 332, 17, 100, 5};
    float coef[5] = {-1.0f, 0.5f, 0.0f, 2.0f, -0.25f};
    float lp1[5], lp2[5], e1[5], e2[5], s1[5], s2[5];
    azr_vocab_logsoftmax(z1, R, V, tg, lp1, e1, s1, coef);
    azr_vocab_logsoftmax_naive(z2, R, V, tg, lp2, e2, s2, coef);
    CHECK(maxdiff(lp1, lp2, R) < 1e-5 && maxdiff(e1, e2, R) < 1e-5 && maxdiff(s1, s2, R) < 1e-5);
    CHECK(maxdiff(z1, z2, R * V) < 1e-6);
    for (int64_t v = 0; v < V; v++) CHECK(z1[2 * V + v] == 0.0f); /* coef 0 row */

    int64_t n = 1000;
    float *p = rnd(n, 1), *g = rnd(n, 1), *m = rnd(n, 0.1f), *v = rnd(n, 0.1f);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *p2 = fdup(p, n), *m2 = fdup(m, n), *v2 = fdup(v, n);
    azr_adamw_update(p, g, m, v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.7f);
    azr_adamw_update_naive(p2, g, m2, v2, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.7f);
    CHECK(maxdiff(p, p2, n) < 1e-6 && maxdiff(m, m2, n) < 1e-7 && maxdiff(v, v2, n) < 1e-7);
    double ss = azr_sumsq(g, n), ref = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)g[i] * g[i];
    CHECK(fabs(ss - ref) < 1e-4 * ref);
    free(z), free(z1), free(z2), free(p), free(g), free(m), free(v), free(p2), free(m2), free(v2);
}

/* Whole-model gradient check by central finite differences (double the
 * loss through float forward passes, so tolerances are loose but the check
 * still catches any missing or wrong term). */
static void test_model_gradcheck(void) {
    azr_model_config c = {.vocab_size = 11, .hidden_size = 8, .intermediate_size = 12,
                          .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
                          .rms_eps = 1e-5f, .rope_theta = 10000.0f, .qkv_bias = 1,
                          .tie_embeddings = 0};
    for (int tied = 0; tied < 2; tied++) {
        c.tie_embeddings = tied;
        azr_model *m = NULL;
        CHECK(azr_model_new(&c, &m) == AZR_OK);
        if (!m) return;
        float *p = azr_model_params(m);
        int64_t np = azr_model_num_params(m);
        for (int64_t i = 0; i < np; i++) p[i] = frand() * 0.5f;
        for (int k = 0; k < azr_model_num_tensors(m); k++) {
            const azr_tensor_info *t = azr_model_tensor(m, k);
            if (strstr(t->name, "norm"))
                for (int64_t i = 0; i < t->numel; i++) p[t->offset + i] = 1.0f + 0.3f * frand();
        }
        int64_t B = 2, T = 5, lengths[2] = {5, 3};
        int32_t ids[10], tg[10];
        float w[10];
        for (int i = 0; i < 10; i++) {
            ids[i] = (int32_t)((i * 7 + 3) % 11);
            tg[i] = (int32_t)((i * 5 + 1) % 11);
            w[i] = 0.3f + 0.1f * (float)i;
        }
        double loss = 0;
        CHECK(azr_model_run(m, ids, tg, w, lengths, B, T, NULL, NULL, NULL, &loss) == AZR_OK);
        float *g = azr_model_grads(m);
        double num = 0, den = 0, worst = 0;
        for (int64_t i = 0; i < np; i++) {
            float keep = p[i];
            double lp = 0, lm = 0;
            float h = 3e-3f;
            p[i] = keep + h;
            azr_model_run(m, ids, tg, NULL, lengths, B, T, NULL, NULL, NULL, NULL);
            /* loss without backward: use logp */
            float lpb[10];
            azr_model_run(m, ids, tg, NULL, lengths, B, T, lpb, NULL, NULL, NULL);
            for (int k = 0; k < 10; k++) lp -= (double)w[k] * lpb[k];
            p[i] = keep - h;
            azr_model_run(m, ids, tg, NULL, lengths, B, T, lpb, NULL, NULL, NULL);
            for (int k = 0; k < 10; k++) lm -= (double)w[k] * lpb[k];
            p[i] = keep;
            double fd = (lp - lm) / (2.0 * h);
            num += (fd - g[i]) * (fd - g[i]);
            den += fd * fd;
            double e = fabs(fd - g[i]);
            if (e > worst) worst = e;
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        printf("gradcheck (tied=%d): %lld params, relative error %.2e, worst abs %.2e\n", tied,
               (long long)np, rel, worst);
        CHECK(rel < 2e-3);
        CHECK(worst < 5e-3);
        /* AdamW step moves parameters and counts steps */
        double norm = 0;
        CHECK(azr_model_adamw_step(m, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, &norm) == AZR_OK);
        CHECK(norm > 0 && azr_model_adam_step_count(m) == 1);
        /* bad ids are rejected with a message naming the position */
        ids[7] = 11;
        CHECK(azr_model_run(m, ids, tg, NULL, NULL, B, T, NULL, NULL, NULL, NULL) == AZR_ERR_INVALID);
        CHECK(strstr(azr_last_error(), "ids[1, 2]") != NULL);
        azr_model_free(m);
    }
}

/* The decode-step recipe documented in model.h, run token by token with a
 * KV cache, gives the same logits as the full training forward. */
static void test_decode_recipe(void) {
    azr_model_config c = {.vocab_size = 13, .hidden_size = 16, .intermediate_size = 24,
                          .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
                          .rms_eps = 1e-6f, .rope_theta = 1e6f, .qkv_bias = 1,
                          .tie_embeddings = 1};
    azr_model *m = NULL;
    CHECK(azr_model_new(&c, &m) == AZR_OK);
    if (!m) return;
    float *p = azr_model_params(m);
    for (int64_t i = 0; i < azr_model_num_params(m); i++) p[i] = frand() * 0.5f;
    enum { T = 6 };
    int32_t ids[T] = {3, 1, 4, 1, 5, 9};
    float full[T * 13];
    CHECK(azr_model_run(m, ids, NULL, NULL, NULL, 1, T, NULL, NULL, full, NULL) == AZR_OK);
    int64_t I = 24, Dq = 16, Dkv = 8, Dqkv = Dq + 2 * Dkv, L = 2;
    float *kc = calloc((size_t)(L * T * 2 * Dkv), sizeof(float)); /* per layer (T, [k|v]) */
    float x[16], xn[16], qkv[32], att[16], gu[48], h[24], logits[13], cs[2], sn[2], scratch[T];
    for (int t = 0; t < T; t++) {
        int32_t pos = t;
        azr_model_embed(m, &ids[t], 1, x);
        azr_rope_table(cs, sn, &pos, 1, 4, c.rope_theta);
        for (int l = 0; l < L; l++) {
            azr_model_attn_qkv(m, l, x, 1, xn, NULL, qkv, cs, sn);
            float *cache = kc + (int64_t)l * T * 2 * Dkv;
            memcpy(cache + t * 2 * Dkv, qkv + Dq, (size_t)(2 * Dkv) * sizeof(float));
            azr_attention_decode(att, qkv, cache, cache + Dkv, t + 1, 2 * Dkv, 4, 2, 4, scratch);
            azr_model_attn_out(m, l, att, 1, x, x);
            azr_model_mlp(m, l, x, x, 1, xn, NULL, gu, h);
        }
        azr_model_head(m, x, 1, xn, NULL, logits, 1);
        CHECK(maxdiff(logits, full + t * 13, 13) < 1e-5);
    }
    (void)I;
    (void)Dqkv;
    free(kc);
    azr_model_free(m);
}

static void test_safetensors(void) {
    char dir[] = "/tmp/azr_test_st_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {-1, 0.5f};
    const char *names[2] = {"w.a", "b\"q"};
    int nd[2] = {2, 1};
    int64_t sa[2] = {2, 3}, sb[1] = {2};
    const int64_t *shapes[2] = {sa, sb};
    const float *data[2] = {a, b};
    const char *mk[1] = {"model.embed"}, *mv[1] = {"w.a"};
    CHECK(azr_st_write(path, 2, names, nd, shapes, data, 1, mk, mv) == AZR_OK);
    azr_st_file *f = NULL;
    CHECK(azr_st_open(path, &f) == AZR_OK);
    if (f) {
        CHECK(f->n_tensors == 2 && strcmp(azr_st_meta(f, "model.embed"), "w.a") == 0);
        int i = azr_st_find(f, "b\"q");
        float out[2] = {0};
        CHECK(i >= 0 && azr_st_read_f32(f, i, out) == AZR_OK && out[0] == -1 && out[1] == 0.5f);
    }
    /* Mutate every header byte in turn, and truncate at every length: the
     * reader must reject or accept without any out-of-bounds access. */
    FILE *fp = fopen(path, "rb");
    unsigned char buf[4096];
    size_t n = fp ? fread(buf, 1, sizeof buf, fp) : 0;
    if (fp) fclose(fp);
    size_t hlen = f ? (size_t)(f->data - (const unsigned char *)f->map) : 0;
    azr_st_close(f);
    char mpath[256];
    snprintf(mpath, sizeof mpath, "%s/m.safetensors", dir);
    int rejected = 0, total = 0;
    const unsigned char subs[] = {'{', '}', '[', ']', '"', ',', ':', '9', '0', '-', 'x', 0, 0xff};
    for (size_t pos = 0; pos < hlen; pos++)
        for (size_t s = 0; s < sizeof subs; s++) {
            unsigned char mb[4096];
            memcpy(mb, buf, n);
            mb[pos] = subs[s];
            FILE *o = fopen(mpath, "wb");
            fwrite(mb, 1, n, o);
            fclose(o);
            azr_st_file *g = NULL;
            azr_status st = azr_st_open(mpath, &g);
            if (st != AZR_OK) rejected++;
            CHECK((st == AZR_OK) == (g != NULL));
            if (g)
                for (int k = 0; k < g->n_tensors; k++) {
                    float *tmp = malloc((size_t)(g->tensors[k].numel + 1) * sizeof(float));
                    azr_st_read_f32(g, k, tmp);
                    free(tmp);
                }
            azr_st_close(g);
            total++;
        }
    for (size_t len = 0; len < n; len++) {
        FILE *o = fopen(mpath, "wb");
        fwrite(buf, 1, len, o);
        fclose(o);
        azr_st_file *g = NULL;
        CHECK(azr_st_open(mpath, &g) != AZR_OK);
        azr_st_close(g);
    }
    printf("safetensors: %d of %d mutated headers rejected, all truncations rejected\n", rejected,
           total);
    CHECK(rejected > total / 2);
    CHECK(azr_st_open("/nonexistent/x.safetensors", &f) == AZR_ERR_IO);
    CHECK(strstr(azr_last_error(), "/nonexistent/x.safetensors") != NULL);
    unlink(path);
    unlink(mpath);
    rmdir(dir);
}

/* Write an 8-byte length, `header` padded with spaces, then `data_len` zero bytes. */
static void write_raw_st(const char *path, const char *header, size_t data_len) {
    size_t h = strlen(header), padded = (h + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)padded >> (8 * i)) & 0xFF);
    FILE *o = fopen(path, "wb");
    if (!o) return;
    fwrite(len8, 1, 8, o);
    fwrite(header, 1, h, o);
    for (size_t i = h; i < padded; i++) fputc(' ', o);
    for (size_t i = 0; i < data_len; i++) fputc(0, o);
    fclose(o);
}

/* Headers the reader must refuse with a message naming the problem (issue
 * #24): byte sizes that overflow, numbers that wrapped, NUL and non-UTF-8 in
 * names, lone surrogates, gaps and trailing bytes in the data section. */
static void test_safetensors_hostile(void) {
    char dir[] = "/tmp/azr_test_sth_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    static const struct { const char *header; size_t data; const char *msg; } cases[] = {
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
         "byte size overflows"},
        {"{\"x\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0,
         "byte size overflows"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551624]}}", 8,
         "too large"},
        {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "NUL"},
        {"{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "UTF-8"},
        {"{\"a\\ud800\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "surrogate"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "trailing"},
        {"{}", 8, "trailing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_raw_st(path, cases[i].header, cases[i].data);
        azr_st_file *g = NULL;
        CHECK(azr_st_open(path, &g) == AZR_ERR_FORMAT && g == NULL);
        CHECK(strstr(azr_last_error(), cases[i].msg) != NULL);
        CHECK(strstr(azr_last_error(), path) != NULL);
        azr_st_close(g);
    }
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_linear();
    test_rmsnorm_rope_swiglu();
    test_attention();
    test_vocab_and_adamw();
    test_model_gradcheck();
    test_decode_recipe();
    test_safetensors();
    test_safetensors_hostile();
    TEST_MAIN_END();
}
