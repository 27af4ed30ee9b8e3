/*
 * dequant.c -- ggml block formats decoded to fp32.
 *
 * Owns: the type table and one block decoder per supported type, plus the
 * serial reference loop and the OpenMP loop over blocks that share them.
 * Must not: read files or know tensor names; print or abort.
 *
 * Bit-exactness: every decoder rounds its products and sums in the order the
 * `gguf` package's NumPy reference does (for Q4_1: (d * q) + m, two
 * roundings). The build uses -ffp-contract=fast, which would fuse those into
 * FMAs and change the last bit, so this file turns contraction off.
 * Layouts (little-endian, as in ggml-common.h):
 *   Q4_0  (32 elems, 18 B): f16 d, 16 B nibbles; x = d * (q - 8)
 *   Q4_1  (32 elems, 20 B): f16 d, f16 m, 16 B nibbles; x = d * q + m
 *   Q8_0  (32 elems, 34 B): f16 d, 32 int8; x = q * d
 *   Q4_K  (256, 144 B): f16 d, f16 dmin, 12 B packed 6-bit scales/mins, 128 B nibbles
 *   Q5_K  (256, 176 B): as Q4_K plus 32 B of fifth bits before the nibbles
 *   Q6_K  (256, 210 B): 128 B low nibbles, 64 B high 2 bits, 16 int8 scales, f16 d
 *   Q8_K  (256, 292 B): f32 d, 256 int8, 16 int16 block sums (unused here)
 * Nibble order in a 32-element group: element j is the low nibble of byte j,
 * element j + 16 (j + 32 in K-quants' 64-element pairs) the high nibble.
 */
#pragma GCC optimize("fp-contract=off")

#include "dequant.h"

#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "dequant.c reads little-endian GGUF data directly; big-endian hosts need byte swaps"
#endif

/* Tensors smaller than this many elements are decoded on the calling thread. */
#define AZR_DEQUANT_PARALLEL_MIN ((int64_t)1 << 22)

typedef struct {
    const char *name;
    int64_t elems;
    int64_t bytes;
} type_traits;

/* Geometry of every ggml type id below AZR_GGML_TYPE_LIMIT that ggml
 * defines (from ggml.h / gguf-py's GGML_QUANT_SIZES). */
static const type_traits k_traits[AZR_GGML_TYPE_LIMIT] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},        [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},     [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},     [9] = {"Q8_1", 32, 40},     [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},  [12] = {"Q4_K", 256, 144},  [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},  [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74}, [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},  [21] = {"IQ3_S", 256, 110}, [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},       [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},       [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},  [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},  [39] = {"MXFP4", 32, 17},
};

int64_t azr_ggml_block_elems(uint32_t type) {
    return type < AZR_GGML_TYPE_LIMIT ? k_traits[type].elems : 0;
}

int64_t azr_ggml_block_bytes(uint32_t type) {
    return type < AZR_GGML_TYPE_LIMIT ? k_traits[type].bytes : 0;
}

const char *azr_ggml_type_name(uint32_t type) {
    return type < AZR_GGML_TYPE_LIMIT ? k_traits[type].name : NULL;
}

int azr_ggml_can_dequantize(uint32_t type) {
    switch (type) {
    case AZR_GGML_F32: case AZR_GGML_F16: case AZR_GGML_BF16: case AZR_GGML_Q8_0:
    case AZR_GGML_Q4_0: case AZR_GGML_Q4_1: case AZR_GGML_Q4_K: case AZR_GGML_Q5_K:
    case AZR_GGML_Q6_K: case AZR_GGML_Q8_K:
        return 1;
    default:
        return 0;
    }
}

int64_t azr_ggml_nbytes(uint32_t type, int64_t n) {
    int64_t be = azr_ggml_block_elems(type), bb = azr_ggml_block_bytes(type);
    if (be == 0) {
        azr_set_error(AZR_ERR_FORMAT, "unknown ggml tensor type id %u", (unsigned)type);
        return -1;
    }
    if (n < 0 || n % be != 0) {
        azr_set_error(AZR_ERR_FORMAT, "%lld elements of type %s: not a multiple of its block size %lld",
                      (long long)n, k_traits[type].name, (long long)be);
        return -1;
    }
    int64_t blocks = n / be;
    if (blocks > INT64_MAX / bb) {
        azr_set_error(AZR_ERR_FORMAT, "%lld elements of type %s overflow a 64-bit byte count",
                      (long long)n, k_traits[type].name);
        return -1;
    }
    return blocks * bb;
}

float azr_dequant_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise into a float32 normal */
            uint32_t e = 113;
            while (!(mant & 0x400u)) {
                mant <<= 1;
                e--;
            }
            bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float rd_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return azr_dequant_f16_to_f32(h);
}

/* ---- one block each: src points at the block, y receives block_elems floats ---- */

static void blk_f32(const uint8_t *b, float *y) { memcpy(y, b, 4); }

static void blk_f16(const uint8_t *b, float *y) { y[0] = rd_f16(b); }

static void blk_bf16(const uint8_t *b, float *y) {
    uint16_t h;
    memcpy(&h, b, 2);
    uint32_t bits = (uint32_t)h << 16;
    memcpy(y, &bits, 4);
}

static void blk_q4_0(const uint8_t *b, float *y) {
    const float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((int)(qs[j] & 0x0f) - 8);
        y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
    }
}

static void blk_q4_1(const uint8_t *b, float *y) {
    const float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0x0f) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

static void blk_q8_0(const uint8_t *b, float *y) {
    const float d = rd_f16(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
}

/* The 12-byte K-quant scale block: 8 six-bit scales and 8 six-bit mins. */
static void kquant_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    for (int i = 0; i < 4; i++) {
        sc[i] = s[i] & 0x3f;
        mn[i] = s[i + 4] & 0x3f;
        sc[i + 4] = (uint8_t)((s[i + 8] & 0x0f) | ((s[i] >> 2) & 0x30));
        mn[i + 4] = (uint8_t)((s[i + 8] >> 4) | ((s[i + 4] >> 2) & 0x30));
    }
}

static void blk_q4_k(const uint8_t *b, float *y) {
    const float d = rd_f16(b), dmin = rd_f16(b + 2);
    uint8_t sc[8], mn[8];
    kquant_scales(b + 4, sc, mn);
    const uint8_t *qs = b + 16;
    for (int c = 0; c < 4; c++) { /* 4 chunks of 32 bytes -> 64 elements */
        const float d0 = d * (float)sc[2 * c], m0 = dmin * (float)mn[2 * c];
        const float d1 = d * (float)sc[2 * c + 1], m1 = dmin * (float)mn[2 * c + 1];
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = d0 * (float)(qs[32 * c + l] & 0x0f) - m0;
            y[64 * c + 32 + l] = d1 * (float)(qs[32 * c + l] >> 4) - m1;
        }
    }
}

static void blk_q5_k(const uint8_t *b, float *y) {
    const float d = rd_f16(b), dmin = rd_f16(b + 2);
    uint8_t sc[8], mn[8];
    kquant_scales(b + 4, sc, mn);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int c = 0; c < 4; c++) {
        const int j0 = 2 * c, j1 = 2 * c + 1;
        const float d0 = d * (float)sc[j0], m0 = dmin * (float)mn[j0];
        const float d1 = d * (float)sc[j1], m1 = dmin * (float)mn[j1];
        for (int l = 0; l < 32; l++) {
            int q0 = (qs[32 * c + l] & 0x0f) | (((qh[l] >> j0) & 1) << 4);
            int q1 = (qs[32 * c + l] >> 4) | (((qh[l] >> j1) & 1) << 4);
            y[64 * c + l] = d0 * (float)q0 - m0;
            y[64 * c + 32 + l] = d1 * (float)q1 - m1;
        }
    }
}

static void blk_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    const float d = rd_f16(b + 208);
    for (int e = 0; e < 256; e++) {
        const int h = e / 128, w = e % 128;
        const int lo = (ql[64 * h + (w % 64)] >> (4 * (w / 64))) & 0x0f;
        const int hi = (qh[32 * h + (w % 32)] >> (2 * (w / 32))) & 0x03;
        const int q = (int)(int8_t)(uint8_t)(lo | (hi << 4)) - 32;
        const float ds = d * (float)scales[e / 16];
        y[e] = ds * (float)q;
    }
}

static void blk_q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4);
    const int8_t *qs = (const int8_t *)(b + 4);
    for (int j = 0; j < 256; j++) y[j] = d * (float)qs[j];
}

typedef void (*block_fn)(const uint8_t *, float *);

static block_fn decoder_for(uint32_t type) {
    switch (type) {
    case AZR_GGML_F32: return blk_f32;
    case AZR_GGML_F16: return blk_f16;
    case AZR_GGML_BF16: return blk_bf16;
    case AZR_GGML_Q4_0: return blk_q4_0;
    case AZR_GGML_Q4_1: return blk_q4_1;
    case AZR_GGML_Q8_0: return blk_q8_0;
    case AZR_GGML_Q4_K: return blk_q4_k;
    case AZR_GGML_Q5_K: return blk_q5_k;
    case AZR_GGML_Q6_K: return blk_q6_k;
    case AZR_GGML_Q8_K: return blk_q8_k;
    default: return NULL;
    }
}

/* Shared argument checks; on success sets *fn and the block counts. */
static azr_status check_args(uint32_t type, const void *src, size_t src_bytes, float *dst,
                             int64_t n, block_fn *fn) {
    if (n < 0) return azr_set_error(AZR_ERR_INVALID, "dequantize: negative element count %lld", (long long)n);
    if (n > 0 && (!src || !dst)) return azr_set_error(AZR_ERR_INVALID, "dequantize: NULL buffer");
    const char *name = azr_ggml_type_name(type);
    if (!name) return azr_set_error(AZR_ERR_FORMAT, "dequantize: unknown ggml tensor type id %u", (unsigned)type);
    *fn = decoder_for(type);
    if (!*fn)
        return azr_set_error(AZR_ERR_UNSUPPORTED,
                             "dequantize: tensor type %s is not supported (azr decodes F32, F16, BF16, "
                             "Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, Q8_K)", name);
    int64_t need = azr_ggml_nbytes(type, n);
    if (need < 0) return AZR_ERR_FORMAT;
    if ((uint64_t)need > (uint64_t)src_bytes)
        return azr_set_error(AZR_ERR_FORMAT, "dequantize: %lld %s elements need %lld bytes, only %zu given",
                             (long long)n, name, (long long)need, src_bytes);
    return AZR_OK;
}

azr_status azr_dequantize_ref(uint32_t type, const void *src, size_t src_bytes, float *dst,
                              int64_t n) {
    block_fn fn = NULL;
    azr_status st = check_args(type, src, src_bytes, dst, n, &fn);
    if (st != AZR_OK || n == 0) return st;
    const int64_t be = azr_ggml_block_elems(type), bb = azr_ggml_block_bytes(type);
    const uint8_t *s = (const uint8_t *)src;
    for (int64_t i = 0; i < n / be; i++) fn(s + i * bb, dst + i * be);
    return AZR_OK;
}

azr_status azr_dequantize(uint32_t type, const void *src, size_t src_bytes, float *dst, int64_t n) {
    block_fn fn = NULL;
    azr_status st = check_args(type, src, src_bytes, dst, n, &fn);
    if (st != AZR_OK || n == 0) return st;
    const int64_t be = azr_ggml_block_elems(type), bb = azr_ggml_block_bytes(type);
    const int64_t nblocks = n / be;
    const uint8_t *s = (const uint8_t *)src;
    /* Chunks of ~64K elements keep each thread's work contiguous. Decoding
     * runs at about 1 ns per element, so a parallel region only pays off for
     * tensors of millions of elements: on a busy machine every region can
     * cost a scheduler quantum at its barrier (measured: all SmolLM2 tensors
     * took 0.16 s on one thread and 3.3 s on two when each tensor opened a
     * region while other processes kept both cores busy). */
    const int64_t per_chunk = be >= 65536 ? 1 : 65536 / be;
    const int64_t nchunks = (nblocks + per_chunk - 1) / per_chunk;
    const int nthreads = azr_get_num_threads();
    const int parallel = nthreads > 1 && n >= AZR_DEQUANT_PARALLEL_MIN && nchunks > 1;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (parallel)
    for (int64_t c = 0; c < nchunks; c++) {
        const int64_t b0 = c * per_chunk;
        const int64_t b1 = b0 + per_chunk < nblocks ? b0 + per_chunk : nblocks;
        for (int64_t i = b0; i < b1; i++) fn(s + i * bb, dst + i * be);
    }
    return AZR_OK;
}
