/* test_gguf.c -- the GGUF reader and dequantisers under ASan/UBSan.
 *
 * Builds small GGUF files byte by byte, checks what the reader decodes,
 * then feeds it every truncation, corrupted headers and random byte flips:
 * each must fail with a message (or parse), never crash or leak. The
 * parallel dequantiser is compared bit for bit with the serial reference,
 * and a few values with hand-computed ones. (Bit-exactness against the
 * `gguf` package's NumPy dequantiser is tested in tests/test_gguf_reader.py.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "azr_test.h"
#include "io/dequant.h"
#include "io/gguf.h"

typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

static void put(buf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void u32(buf *w, uint32_t v) { put(w, &v, 4); }
static void u64(buf *w, uint64_t v) { put(w, &v, 8); }
static void str(buf *w, const char *s) {
    u64(w, strlen(s));
    put(w, s, strlen(s));
}
static void pad_to(buf *w, size_t a) {
    while (w->n % a) {
        uint8_t z = 0;
        put(w, &z, 1);
    }
}

static uint16_t f32_to_f16_simple(float f) { /* exact for the values used here */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int e = (int)((x >> 23) & 0xff) - 127 + 15;
    uint32_t m = (x >> 13) & 0x3ffu;
    if ((x & 0x7fffffffu) == 0) return (uint16_t)sign;
    return (uint16_t)(sign | ((uint32_t)e << 10) | m);
}

/* A file with: 5 metadata entries (uint32, string, float32, string array,
 * int32 array), and tensors a (F32, 4x2), b (F16, 2), c (Q8_0, 32). */
static buf make_file(uint32_t version, uint32_t type_of_c) {
    buf w = {0};
    put(&w, "GGUF", 4);
    u32(&w, version);
    u64(&w, 3); /* tensors */
    u64(&w, 5); /* kv */
    str(&w, "general.architecture");
    u32(&w, AZR_GGUF_STRING);
    str(&w, "llama");
    str(&w, "llama.block_count");
    u32(&w, AZR_GGUF_UINT32);
    u32(&w, 30);
    str(&w, "llama.rope.freq_base");
    u32(&w, AZR_GGUF_FLOAT32);
    float theta = 100000.0f;
    put(&w, &theta, 4);
    str(&w, "tokenizer.ggml.tokens");
    u32(&w, AZR_GGUF_ARRAY);
    u32(&w, AZR_GGUF_STRING);
    u64(&w, 3);
    str(&w, "a");
    str(&w, "");
    str(&w, "\xc4\xa0the");
    str(&w, "tokenizer.ggml.token_type");
    u32(&w, AZR_GGUF_ARRAY);
    u32(&w, AZR_GGUF_INT32);
    u64(&w, 3);
    u32(&w, 1);
    u32(&w, 3);
    u32(&w, (uint32_t)-7);
    /* tensor infos */
    str(&w, "a");
    u32(&w, 2);
    u64(&w, 4);
    u64(&w, 2);
    u32(&w, AZR_GGML_F32);
    u64(&w, 0);
    str(&w, "b");
    u32(&w, 1);
    u64(&w, 2);
    u32(&w, AZR_GGML_F16);
    u64(&w, 32);
    str(&w, "c");
    u32(&w, 1);
    u64(&w, 32);
    u32(&w, type_of_c);
    u64(&w, 64);
    pad_to(&w, 32);
    /* data: a at 0 (32 bytes), b at 32 (4 bytes, padded), c at 64 (34 bytes) */
    for (int i = 0; i < 8; i++) {
        float v = (float)i * 0.5f - 1.0f;
        put(&w, &v, 4);
    }
    uint16_t h0 = f32_to_f16_simple(1.5f), h1 = f32_to_f16_simple(-2.0f);
    put(&w, &h0, 2);
    put(&w, &h1, 2);
    pad_to(&w, 32);
    uint16_t d = f32_to_f16_simple(0.25f);
    put(&w, &d, 2);
    for (int i = 0; i < 32; i++) {
        int8_t q = (int8_t)(i - 16);
        put(&w, &q, 1);
    }
    return w;
}

static char tmpl_path[64];

static azr_status open_bytes(const uint8_t *p, size_t n, azr_gguf **g) {
    FILE *f = fopen(tmpl_path, "wb");
    if (n) fwrite(p, 1, n, f);
    fclose(f);
    return azr_gguf_open(tmpl_path, g);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static void test_good_file(void) {
    buf w = make_file(3, AZR_GGML_Q8_0);
    azr_gguf *g = NULL;
    CHECK(open_bytes(w.b, w.n, &g) == AZR_OK);
    if (!g) {
        fprintf(stderr, "open failed: %s\n", azr_last_error());
        free(w.b);
        return;
    }
    CHECK(g->version == 3 && g->n_kv == 5 && g->n_tensors == 3 && g->alignment == 32);
    int64_t k = azr_gguf_find_kv(g, "llama.block_count");
    CHECK(k >= 0 && g->kv[k].type == AZR_GGUF_UINT32 && g->kv[k].v.u == 30);
    k = azr_gguf_find_kv(g, "llama.rope.freq_base");
    CHECK(k >= 0 && g->kv[k].v.f == 100000.0);
    const char *s;
    uint64_t len;
    k = azr_gguf_find_kv(g, "general.architecture");
    CHECK(azr_gguf_get_string(g, k, &s, &len) == AZR_OK && len == 5 && memcmp(s, "llama", 5) == 0);
    k = azr_gguf_find_kv(g, "tokenizer.ggml.tokens");
    CHECK(azr_gguf_get_array_string(g, k, 1, &s, &len) == AZR_OK && len == 0);
    CHECK(azr_gguf_get_array_string(g, k, 2, &s, &len) == AZR_OK && len == 5 && memcmp(s, "\xc4\xa0the", 5) == 0);
    CHECK(azr_gguf_get_array_string(g, k, 3, &s, &len) == AZR_ERR_INVALID);
    CHECK(azr_gguf_get_string(g, k, &s, &len) == AZR_ERR_INVALID);
    k = azr_gguf_find_kv(g, "tokenizer.ggml.token_type");
    const void *p;
    size_t es;
    CHECK(azr_gguf_get_array_data(g, k, &p, &es) == AZR_OK && es == 4);
    int32_t tt[3];
    memcpy(tt, p, 12);
    CHECK(tt[0] == 1 && tt[1] == 3 && tt[2] == -7);
    CHECK(azr_gguf_find_kv(g, "missing") == -1 && azr_gguf_find_kv(NULL, "x") == -1);

    int64_t ta = azr_gguf_find_tensor(g, "a"), tb = azr_gguf_find_tensor(g, "b"), tc = azr_gguf_find_tensor(g, "c");
    CHECK(ta == 0 && tb == 1 && tc == 2);
    CHECK(g->tensors[ta].ne[0] == 4 && g->tensors[ta].ne[1] == 2 && g->tensors[ta].n_elements == 8);
    float out[32];
    CHECK(azr_gguf_dequantize(g, ta, out, 8) == AZR_OK);
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= out[i] == (float)i * 0.5f - 1.0f;
    CHECK(ok);
    CHECK(azr_gguf_dequantize(g, tb, out, 2) == AZR_OK && out[0] == 1.5f && out[1] == -2.0f);
    CHECK(azr_gguf_dequantize(g, tc, out, 32) == AZR_OK);
    ok = 1;
    for (int i = 0; i < 32; i++) ok &= out[i] == (float)(i - 16) * 0.25f;
    CHECK(ok);
    CHECK(azr_gguf_dequantize(g, tc, out, 31) == AZR_ERR_INVALID);
    CHECK(azr_gguf_dequantize(g, 7, out, 32) == AZR_ERR_INVALID);
    azr_gguf_close(g);
    azr_gguf_close(NULL);

    /* version 2 reads the same way */
    w.b[4] = 2;
    CHECK(open_bytes(w.b, w.n, &g) == AZR_OK && g && g->version == 2);
    azr_gguf_close(g);
    w.b[4] = 3;

    /* every truncation fails cleanly with "truncated" or a range error */
    int all_fail = 1, all_named = 1;
    for (size_t n = 0; n < w.n; n++) {
        g = NULL;
        azr_status st = open_bytes(w.b, n, &g);
        if (st == AZR_OK) {
            all_fail = 0;
            azr_gguf_close(g);
        } else if (!contains(azr_last_error(), "truncated") && !contains(azr_last_error(), "past the end")) {
            all_named = 0;
            fprintf(stderr, "prefix %zu: %s\n", n, azr_last_error());
        }
    }
    CHECK(all_fail);
    CHECK(all_named);

    /* random byte flips: must never crash; parse or fail with a message */
    srand(1234);
    uint8_t *copy = malloc(w.n);
    int messages = 1;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, w.b, w.n);
        int flips = 1 + rand() % 4;
        for (int f = 0; f < flips; f++) copy[rand() % w.n] = (uint8_t)rand();
        g = NULL;
        azr_status st = open_bytes(copy, w.n, &g);
        if (st == AZR_OK) {
            for (uint64_t t = 0; t < g->n_tensors; t++) {
                if (g->tensors[t].n_elements > 4096) continue;
                float *o = malloc(sizeof(float) * (size_t)(g->tensors[t].n_elements + 1));
                azr_gguf_dequantize(g, (int64_t)t, o, g->tensors[t].n_elements);
                free(o);
            }
            azr_gguf_close(g);
        } else if (azr_last_error()[0] == 0) {
            messages = 0;
        }
    }
    CHECK(messages);
    free(copy);
    free(w.b);
}

static void expect_error(buf *w, azr_status want, const char *needle) {
    azr_gguf *g = NULL;
    azr_status st = open_bytes(w->b, w->n, &g);
    CHECK(st == want);
    CHECK(g == NULL);
    if (!contains(azr_last_error(), needle)) {
        fprintf(stderr, "expected '%s' in: %s\n", needle, azr_last_error());
        CHECK(0);
    }
    azr_gguf_close(g);
}

static void test_bad_files(void) {
    buf w = make_file(3, AZR_GGML_Q8_0);
    memcpy(w.b, "GGML", 4);
    expect_error(&w, AZR_ERR_FORMAT, "wrong magic 'GGML'");
    memcpy(w.b, "GGUF", 4);
    w.b[4] = 1;
    expect_error(&w, AZR_ERR_UNSUPPORTED, "version 1");
    w.b[4] = 9;
    expect_error(&w, AZR_ERR_UNSUPPORTED, "unsupported GGUF version 9");
    w.b[4] = 0;
    w.b[7] = 3;
    expect_error(&w, AZR_ERR_UNSUPPORTED, "big-endian");
    w.b[7] = 0;
    w.b[4] = 3;
    /* huge counts cannot allocate: refused up front */
    uint64_t big = (uint64_t)1 << 60, saved;
    memcpy(&saved, w.b + 8, 8);
    memcpy(w.b + 8, &big, 8);
    expect_error(&w, AZR_ERR_FORMAT, "tensors, more than");
    memcpy(w.b + 8, &saved, 8);
    memcpy(&saved, w.b + 16, 8);
    memcpy(w.b + 16, &big, 8);
    expect_error(&w, AZR_ERR_FORMAT, "metadata entries");
    memcpy(w.b + 16, &saved, 8);
    free(w.b);

    w = make_file(3, 99);
    expect_error(&w, AZR_ERR_FORMAT, "tensor 'c' has unknown tensor type id 99");
    free(w.b);
    w = make_file(3, 4); /* removed Q4_2 */
    expect_error(&w, AZR_ERR_FORMAT, "unknown tensor type id 4");
    free(w.b);

    /* known-but-undecodable type parses, dequantize names it */
    w = make_file(3, AZR_GGML_Q8_1); /* 32 elems in 40 bytes: fits before EOF? extend */
    for (int i = 0; i < 8; i++) put(&w, "\0", 1);
    azr_gguf *g = NULL;
    CHECK(open_bytes(w.b, w.n, &g) == AZR_OK);
    if (g) {
        float out[32];
        CHECK(azr_gguf_dequantize(g, 2, out, 32) == AZR_ERR_UNSUPPORTED);
        CHECK(contains(azr_last_error(), "tensor 'c' has type Q8_1"));
        azr_gguf_close(g);
    }
    free(w.b);

    /* a tensor whose data runs past the end */
    w = make_file(3, AZR_GGML_Q8_0);
    w.n -= 1;
    expect_error(&w, AZR_ERR_FORMAT, "tensor 'c' (Q8_0, 34 bytes at data offset 64) extends past the end");
    free(w.b);

    /* empty file, missing file */
    g = NULL;
    CHECK(open_bytes((const uint8_t *)"", 0, &g) == AZR_ERR_FORMAT && contains(azr_last_error(), "empty"));
    CHECK(azr_gguf_open("/nonexistent/model.gguf", &g) == AZR_ERR_IO &&
          contains(azr_last_error(), "/nonexistent/model.gguf"));
    CHECK(azr_gguf_open(NULL, &g) == AZR_ERR_INVALID && azr_gguf_open("x", NULL) == AZR_ERR_INVALID);

    /* misaligned offset, bad alignment value, duplicate names, unknown value type,
     * rows not a multiple of the block size */
    buf m = {0};
    put(&m, "GGUF", 4);
    u32(&m, 3);
    u64(&m, 1);
    u64(&m, 1);
    str(&m, "general.alignment");
    u32(&m, AZR_GGUF_UINT32);
    u32(&m, 24);
    str(&m, "t");
    u32(&m, 1);
    u64(&m, 4);
    u32(&m, AZR_GGML_F32);
    u64(&m, 0);
    pad_to(&m, 32);
    for (int i = 0; i < 16; i++) put(&m, "\0", 1);
    expect_error(&m, AZR_ERR_FORMAT, "general.alignment = 24 is not a power of two");
    free(m.b);

    buf d = {0};
    put(&d, "GGUF", 4);
    u32(&d, 3);
    u64(&d, 2);
    u64(&d, 0);
    str(&d, "t");
    u32(&d, 1);
    u64(&d, 4);
    u32(&d, AZR_GGML_F32);
    u64(&d, 0);
    str(&d, "t");
    u32(&d, 1);
    u64(&d, 4);
    u32(&d, AZR_GGML_F32);
    u64(&d, 32);
    pad_to(&d, 32);
    for (int i = 0; i < 64; i++) put(&d, "\0", 1);
    expect_error(&d, AZR_ERR_FORMAT, "duplicate tensor name 't'");
    free(d.b);

    buf o = {0};
    put(&o, "GGUF", 4);
    u32(&o, 3);
    u64(&o, 1);
    u64(&o, 0);
    str(&o, "t");
    u32(&o, 1);
    u64(&o, 4);
    u32(&o, AZR_GGML_F32);
    u64(&o, 8);
    pad_to(&o, 32);
    for (int i = 0; i < 64; i++) put(&o, "\0", 1);
    expect_error(&o, AZR_ERR_FORMAT, "offset 8 is not a multiple of the alignment 32");
    free(o.b);

    buf v = {0};
    put(&v, "GGUF", 4);
    u32(&v, 3);
    u64(&v, 0);
    u64(&v, 1);
    str(&v, "weird");
    u32(&v, 77);
    u64(&v, 0);
    expect_error(&v, AZR_ERR_FORMAT, "metadata 'weird' has unknown value type 77");
    free(v.b);

    buf q = {0};
    put(&q, "GGUF", 4);
    u32(&q, 3);
    u64(&q, 1);
    u64(&q, 0);
    str(&q, "w");
    u32(&q, 2);
    u64(&q, 16);
    u64(&q, 2);
    u32(&q, AZR_GGML_Q4_0);
    u64(&q, 0);
    pad_to(&q, 32);
    for (int i = 0; i < 64; i++) put(&q, "\0", 1);
    expect_error(&q, AZR_ERR_FORMAT, "rows of 16 elements, not a multiple of its block size 32");
    free(q.b);
}

static void test_dequant(void) {
    const uint32_t types[] = {AZR_GGML_F32, AZR_GGML_F16, AZR_GGML_BF16, AZR_GGML_Q8_0, AZR_GGML_Q4_0,
                              AZR_GGML_Q4_1, AZR_GGML_Q4_K, AZR_GGML_Q5_K, AZR_GGML_Q6_K, AZR_GGML_Q8_K};
    srand(99);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint32_t t = types[ti];
        int64_t be = azr_ggml_block_elems(t), bb = azr_ggml_block_bytes(t);
        int64_t nblocks = 300, n = nblocks * be;
        uint8_t *src = malloc((size_t)(nblocks * bb));
        for (int64_t i = 0; i < nblocks * bb; i++) src[i] = (uint8_t)rand();
        /* keep f16/f32 scales finite so comparisons are not NaN != NaN */
        for (int64_t b = 0; b < nblocks; b++) {
            uint8_t *blk = src + b * bb;
            if (t == AZR_GGML_F32) blk[3] &= 0x3f;
            if (t == AZR_GGML_F16 || t == AZR_GGML_BF16) blk[1] &= 0x3f;
            if (t == AZR_GGML_Q8_0 || t == AZR_GGML_Q4_0 || t == AZR_GGML_Q4_1 || t == AZR_GGML_Q4_K ||
                t == AZR_GGML_Q5_K) {
                blk[1] &= 0x3f;
                if (t != AZR_GGML_Q8_0 && t != AZR_GGML_Q4_0) blk[3] &= 0x3f;
            }
            if (t == AZR_GGML_Q6_K) blk[209] &= 0x3f;
            if (t == AZR_GGML_Q8_K) blk[3] &= 0x3f;
        }
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        CHECK(azr_dequantize(t, src, (size_t)(nblocks * bb), a, n) == AZR_OK);
        CHECK(azr_dequantize_ref(t, src, (size_t)(nblocks * bb), b, n) == AZR_OK);
        CHECK(memcmp(a, b, sizeof(float) * (size_t)n) == 0);
        int finite = 1;
        for (int64_t i = 0; i < n; i++) finite &= isfinite(a[i]);
        CHECK(finite);
        /* too few bytes, a partial block */
        CHECK(azr_dequantize(t, src, (size_t)(nblocks * bb - 1), a, n) == AZR_ERR_FORMAT);
        if (be > 1) CHECK(azr_dequantize(t, src, (size_t)(nblocks * bb), a, n - 1) == AZR_ERR_FORMAT);
        free(src);
        free(a);
        free(b);
    }
    /* a tensor big enough for the OpenMP path (>= 2^22 elements, ragged last chunk) */
    {
        const int64_t nblocks = ((int64_t)1 << 22) / 32 + 5, n = nblocks * 32;
        uint8_t *src = malloc((size_t)(nblocks * 18));
        for (int64_t i = 0; i < nblocks * 18; i++) src[i] = (uint8_t)rand();
        for (int64_t b = 0; b < nblocks; b++) src[b * 18 + 1] &= 0x3f; /* finite f16 scale */
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        azr_set_num_threads(2);
        CHECK(azr_dequantize(AZR_GGML_Q4_0, src, (size_t)(nblocks * 18), a, n) == AZR_OK);
        CHECK(azr_dequantize_ref(AZR_GGML_Q4_0, src, (size_t)(nblocks * 18), b, n) == AZR_OK);
        CHECK(memcmp(a, b, sizeof(float) * (size_t)n) == 0);
        azr_set_num_threads(0);
        free(src);
        free(a);
        free(b);
    }
    /* hand-computed values */
    uint8_t q41[20] = {0};
    uint16_t d = f32_to_f16_simple(0.5f), m = f32_to_f16_simple(-1.0f);
    memcpy(q41, &d, 2);
    memcpy(q41 + 2, &m, 2);
    q41[4] = 0x3a; /* element 0 -> 0xa = 10, element 16 -> 3 */
    float y[32];
    CHECK(azr_dequantize(AZR_GGML_Q4_1, q41, 20, y, 32) == AZR_OK && y[0] == 4.0f && y[16] == 0.5f &&
          y[1] == -1.0f);
    uint8_t q40[18] = {0};
    memcpy(q40, &d, 2);
    q40[2 + 5] = 0xf0; /* element 5 -> 0 - 8 = -8, element 21 -> 15 - 8 = 7 */
    CHECK(azr_dequantize(AZR_GGML_Q4_0, q40, 18, y, 32) == AZR_OK && y[5] == -4.0f && y[21] == 3.5f);
    CHECK(azr_dequant_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    CHECK(azr_dequant_f16_to_f32(0x7c00) == INFINITY && isnan(azr_dequant_f16_to_f32(0x7e00)));
    CHECK(azr_dequant_f16_to_f32(0xc000) == -2.0f && azr_dequant_f16_to_f32(0x3555) == 0x1.554p-2f);
    /* unsupported and unknown types, NULL and zero-length calls */
    CHECK(azr_dequantize(AZR_GGML_Q2_K, q41, 20, y, 0) == AZR_ERR_UNSUPPORTED &&
          contains(azr_last_error(), "Q2_K"));
    CHECK(azr_dequantize(200, q41, 20, y, 0) == AZR_ERR_FORMAT);
    CHECK(azr_dequantize(AZR_GGML_F32, NULL, 0, NULL, 0) == AZR_OK);
    CHECK(azr_dequantize(AZR_GGML_F32, NULL, 4, y, 1) == AZR_ERR_INVALID);
    CHECK(azr_dequantize(AZR_GGML_F32, q41, 20, y, -1) == AZR_ERR_INVALID);
    CHECK(azr_ggml_nbytes(AZR_GGML_Q4_K, 512) == 288 && azr_ggml_nbytes(AZR_GGML_Q4_K, 100) == -1);
}

int main(void) {
    snprintf(tmpl_path, sizeof tmpl_path, "/tmp/azr_test_gguf_%d.gguf", (int)getpid());
    test_good_file();
    test_bad_files();
    test_dequant();
    unlink(tmpl_path);
    TEST_MAIN_END();
}
