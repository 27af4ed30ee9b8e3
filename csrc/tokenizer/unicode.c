/*
 * unicode.c -- UTF-8 helpers and NFC normalisation for the tokenizer.
 *
 * Owns: UTF-8 encode/validate/complete-prefix, NFC (canonical decomposition,
 * canonical ordering, canonical composition, Hangul done algorithmically) over
 * the generated tables in unicode_tables.c.
 * Must not: know about tokens, print, abort or exit.
 */
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

int azr_utf8_encode(uint32_t cp, uint8_t *o) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | (cp >> 6)); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12)); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18)); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if the bytes there are not
 * a complete valid sequence. *prefix_ok is set to 1 when the bytes, although
 * incomplete, are a valid start of a sequence cut by the end of the buffer. */
static int seq_len(const uint8_t *s, size_t n, int *prefix_ok) {
    uint8_t c = s[0];
    *prefix_ok = 0;
    if (c < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return 0;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) { *prefix_ok = 1; return 0; }
        uint8_t b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
    }
    return need + 1;
}

int azr_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int pok;
        int l = seq_len(s + i, n - i, &pok);
        if (l == 0) return 0;
        i += (size_t)l;
    }
    return 1;
}

size_t azr_utf8_complete_prefix(const uint8_t *s, size_t n) {
    /* Only the last 3 bytes can start an incomplete sequence. */
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = start; i < n; i++) {
        if (s[i] < 0xC0) continue;
        int pok;
        int l = seq_len(s + i, n - i, &pok);
        if (l == 0 && pok) return i;
    }
    return n;
}

int azr_nfc_quick_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        uint32_t cp;
        i += (size_t)azr_utf8_decode(s + i, n - i, &cp);
        if (azr_uni_prop(cp) & (AZR_UNI_NFC_NO | AZR_UNI_NFC_MAYBE | AZR_UNI_CCC)) return 0;
    }
    return 1;
}

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7,
       LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static const azr_uni_decomp *find_decomp(uint32_t cp) {
    int lo = 0, hi = azr_uni_n_decomp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        uint32_t m = azr_uni_decomp_table[mid].cp;
        if (m == cp) return &azr_uni_decomp_table[mid];
        if (m < cp) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    int lo = 0, hi = azr_uni_n_comp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const azr_uni_comp *c = &azr_uni_comp_table[mid];
        if (c->a == a && c->b == b) return c->c;
        if (c->a < a || (c->a == a && c->b < b)) lo = mid + 1; else hi = mid - 1;
    }
    return 0;
}

azr_status azr_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *cap, size_t *out_len) {
    /* Decomposition is at most 18 code points per input code point (Unicode
     * guarantees a much smaller bound: 4 for canonical), so 4x + 4 is ample. */
    size_t maxcp = n * 4 + 4;
    uint32_t *cps = malloc(maxcp * sizeof(uint32_t));
    if (!cps) return azr_set_error(AZR_ERR_NOMEM, "NFC normaliser: cannot allocate %zu code points", maxcp);
    size_t m = 0, i = 0;
    while (i < n) {
        uint32_t cp;
        i += (size_t)azr_utf8_decode(s + i, n - i, &cp);
        if (cp >= SBASE && cp < SBASE + SCOUNT) {
            uint32_t si = cp - SBASE;
            cps[m++] = LBASE + si / NCOUNT;
            cps[m++] = VBASE + (si % NCOUNT) / TCOUNT;
            if (si % TCOUNT) cps[m++] = TBASE + si % TCOUNT;
            continue;
        }
        const azr_uni_decomp *d = (cp >= 0xC0) ? find_decomp(cp) : NULL;
        if (d) {
            for (int k = 0; k < d->len; k++) cps[m++] = azr_uni_decomp_seq[d->off + k];
        } else {
            cps[m++] = cp;
        }
    }
    /* Canonical ordering: stable insertion sort of each run of non-starters. */
    for (size_t k = 1; k < m; k++) {
        unsigned c = azr_uni_ccc(cps[k]);
        if (c == 0) continue;
        size_t j = k;
        uint32_t v = cps[k];
        while (j > 0) {
            unsigned pc = azr_uni_ccc(cps[j - 1]);
            if (pc == 0 || pc <= c) break;
            cps[j] = cps[j - 1];
            j--;
        }
        cps[j] = v;
    }
    /* Canonical composition. */
    size_t o = 0;
    long starter = -1;
    unsigned last_cc = 0;
    for (size_t k = 0; k < m; k++) {
        uint32_t c = cps[k];
        unsigned cc = azr_uni_ccc(c);
        if (starter >= 0) {
            int adjacent = (o == (size_t)starter + 1);
            if (adjacent || (last_cc != 0 && last_cc < cc)) {
                uint32_t x = compose_pair(cps[starter], c);
                if (x) { cps[starter] = x; continue; }
            }
        }
        if (cc == 0) starter = (long)o;
        last_cc = cc;
        cps[o++] = c;
    }
    size_t need = o * 4 + 1;
    if (*cap < need) {
        uint8_t *nb = realloc(*out, need);
        if (!nb) { free(cps); return azr_set_error(AZR_ERR_NOMEM, "NFC normaliser: cannot allocate %zu bytes", need); }
        *out = nb;
        *cap = need;
    }
    size_t len = 0;
    for (size_t k = 0; k < o; k++) len += (size_t)azr_utf8_encode(cps[k], *out + len);
    *out_len = len;
    free(cps);
    return AZR_OK;
}
