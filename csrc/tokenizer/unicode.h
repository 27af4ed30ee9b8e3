/*
 * unicode.h -- Unicode lookups for the tokenizer: code-point properties for the
 * pre-tokenizer scanners, UTF-8 decoding, and NFC normalisation.
 *
 * Owns: the table lookups (tables in the generated unicode_tables.c) and NFC.
 * Must not: know about vocabularies, merges or Python.
 */
#ifndef AZR_TOK_UNICODE_H
#define AZR_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/azr_core.h"

enum {
    AZR_UNI_LETTER = 1,     /* \p{L}                                          */
    AZR_UNI_NUMBER = 2,     /* \p{N}                                          */
    AZR_UNI_SPACE = 4,      /* White_Space (\s)                               */
    AZR_UNI_WORD = 8,       /* \w (Rust regex): L, M, Nd, Nl, Pc, ZWJ/ZWNJ    */
    AZR_UNI_NFC_NO = 16,    /* the code point alone is not NFC                */
    AZR_UNI_NFC_MAYBE = 32, /* may compose with the preceding character       */
    AZR_UNI_CCC = 64        /* canonical combining class != 0                 */
};

typedef struct { uint32_t cp; uint16_t off; uint8_t len; } azr_uni_decomp;
typedef struct { uint32_t a, b, c; } azr_uni_comp;

extern const char azr_unicode_version[];
extern const uint16_t azr_uni_prop_stage1[];
extern const uint8_t azr_uni_prop_stage2[];
extern const uint16_t azr_uni_ccc_stage1[];
extern const uint8_t azr_uni_ccc_stage2[];
extern const int azr_uni_n_decomp;
extern const azr_uni_decomp azr_uni_decomp_table[];
extern const uint32_t azr_uni_decomp_seq[];
extern const int azr_uni_n_comp;
extern const azr_uni_comp azr_uni_comp_table[];

/* Property bits of code point `cp` (0 for cp >= 0x110000). */
static inline unsigned azr_uni_prop(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return azr_uni_prop_stage2[((uint32_t)azr_uni_prop_stage1[cp >> 8] << 8) | (cp & 255)];
}

/* Canonical combining class of `cp`. */
static inline unsigned azr_uni_ccc(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return azr_uni_ccc_stage2[((uint32_t)azr_uni_ccc_stage1[cp >> 8] << 8) | (cp & 255)];
}

/* Decode one UTF-8 code point at s[0..n). Returns its length (1..4) and stores the
 * code point in *cp. Input is assumed valid UTF-8 (it comes from Python str or has
 * been checked with azr_utf8_valid); an invalid byte decodes as itself with length 1
 * so the caller never loops forever. n must be >= 1. */
static inline int azr_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if ((c & 0xE0) == 0xC0 && n >= 2) { *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if ((c & 0xF0) == 0xE0 && n >= 3) {
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if ((c & 0xF8) == 0xF0 && n >= 4) {
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
              ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    *cp = c;
    return 1;
}

/* Encode `cp` as UTF-8 into out (room for 4 bytes); returns the length. */
int azr_utf8_encode(uint32_t cp, uint8_t *out);

/* 1 if s[0..n) is well-formed UTF-8 (no surrogates, no overlongs), else 0.
 * NULL with n == 0 is valid. */
int azr_utf8_valid(const uint8_t *s, size_t n);

/* Length of the longest prefix of s[0..n) that ends on a complete UTF-8
 * sequence, holding back a trailing incomplete (but so far valid) sequence of at
 * most 3 bytes. Invalid bytes count as complete (they decode to U+FFFD). */
size_t azr_utf8_complete_prefix(const uint8_t *s, size_t n);

/* 1 if s[0..n) (valid UTF-8) is certainly already in NFC (quick check), else 0. */
int azr_nfc_quick_check(const uint8_t *s, size_t n);

/* NFC-normalise s[0..n) (valid UTF-8) into a buffer *out of capacity *cap, which
 * is grown with realloc as needed (caller frees with free()). On success sets
 * *out_len. NULL s with n == 0 gives an empty result. Fails only with
 * AZR_ERR_NOMEM. */
azr_status azr_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *cap, size_t *out_len);

#endif /* AZR_TOK_UNICODE_H */
