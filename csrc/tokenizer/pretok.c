/*
 * pretok.c -- pre-tokenizer scanners (see pretok.h).
 *
 * The patterns, as written in tokenizer.json files (Oniguruma semantics):
 *   Qwen2:   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   Llama-3: the same with \p{N}{1,3}
 *   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Each scanner tries the alternatives in order at the current position, as a
 * backtracking matcher does, and returns the first one that matches.
 * Must not: allocate, print, abort or exit.
 */
#include "tokenizer/pretok.h"

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

#define C_L AZR_UNI_LETTER
#define C_N AZR_UNI_NUMBER
#define C_S AZR_UNI_SPACE

/* Class bits of the code point at s[i]; *len gets its byte length. */
static inline unsigned cls_at(const uint8_t *s, size_t n, size_t i, int *len, uint32_t *cpo) {
    uint8_t c = s[i];
    if (c < 0x80) {
        static const uint8_t ascii[128] = {
            ['\t'] = C_S, ['\n'] = C_S, ['\v'] = C_S, ['\f'] = C_S, ['\r'] = C_S, [' '] = C_S,
            ['0'] = C_N, ['1'] = C_N, ['2'] = C_N, ['3'] = C_N, ['4'] = C_N, ['5'] = C_N, ['6'] = C_N,
            ['7'] = C_N, ['8'] = C_N, ['9'] = C_N,
            ['A'] = C_L, ['B'] = C_L, ['C'] = C_L, ['D'] = C_L, ['E'] = C_L, ['F'] = C_L, ['G'] = C_L,
            ['H'] = C_L, ['I'] = C_L, ['J'] = C_L, ['K'] = C_L, ['L'] = C_L, ['M'] = C_L, ['N'] = C_L,
            ['O'] = C_L, ['P'] = C_L, ['Q'] = C_L, ['R'] = C_L, ['S'] = C_L, ['T'] = C_L, ['U'] = C_L,
            ['V'] = C_L, ['W'] = C_L, ['X'] = C_L, ['Y'] = C_L, ['Z'] = C_L,
            ['a'] = C_L, ['b'] = C_L, ['c'] = C_L, ['d'] = C_L, ['e'] = C_L, ['f'] = C_L, ['g'] = C_L,
            ['h'] = C_L, ['i'] = C_L, ['j'] = C_L, ['k'] = C_L, ['l'] = C_L, ['m'] = C_L, ['n'] = C_L,
            ['o'] = C_L, ['p'] = C_L, ['q'] = C_L, ['r'] = C_L, ['s'] = C_L, ['t'] = C_L, ['u'] = C_L,
            ['v'] = C_L, ['w'] = C_L, ['x'] = C_L, ['y'] = C_L, ['z'] = C_L,
        };
        *len = 1;
        *cpo = c;
        return ascii[c];
    }
    uint32_t cp;
    *len = azr_utf8_decode(s + i, n - i, &cp);
    *cpo = cp;
    return azr_uni_prop(cp) & (C_L | C_N | C_S);
}

/* End of the run of characters whose class intersects `want` (or, with
 * negate, does not intersect it) starting at i. */
static inline size_t run_end(const uint8_t *s, size_t n, size_t i, unsigned want, int negate) {
    while (i < n) {
        int l;
        uint32_t cp;
        unsigned k = cls_at(s, n, i, &l, &cp);
        int in = (k & want) != 0;
        if (negate) in = !in;
        if (!in) break;
        i += (size_t)l;
    }
    return i;
}

/* Contraction after the apostrophe at s[i-1]; returns the end or 0. With ci
 * the letters match case-insensitively (Unicode simple case folding: 's'
 * also matches U+017F LATIN SMALL LETTER LONG S). */
static size_t contraction(const uint8_t *s, size_t n, size_t i, int ci) {
    if (i >= n) return 0;
    uint8_t a = s[i];
    uint8_t la = (ci && a >= 'A' && a <= 'Z') ? (uint8_t)(a + 32) : a;
    if (la == 's' || la == 't' || la == 'm' || la == 'd') return i + 1;
    if (ci && a == 0xC5 && i + 1 < n && s[i + 1] == 0xBF) return i + 2; /* U+017F folds to 's' */
    if (i + 1 < n) {
        uint8_t b = s[i + 1];
        uint8_t lb = (ci && b >= 'A' && b <= 'Z') ? (uint8_t)(b + 32) : b;
        if ((la == 'r' && lb == 'e') || (la == 'v' && lb == 'e') || (la == 'l' && lb == 'l')) return i + 2;
    }
    return 0;
}

/* Whitespace alternatives shared by the patterns, at a position holding
 * whitespace: \s*[\r\n]+ (only when crlf_alt), then \s+(?!\S), then \s+. */
static size_t whitespace(const uint8_t *s, size_t n, size_t i, int crlf_alt) {
    size_t j = i, last_start = i, last_crlf = (size_t)-1;
    size_t nchars = 0;
    while (j < n) {
        int l;
        uint32_t cp;
        unsigned k = cls_at(s, n, j, &l, &cp);
        if (!(k & C_S)) break;
        if (cp == '\r' || cp == '\n') last_crlf = j;
        last_start = j;
        j += (size_t)l;
        nchars++;
    }
    if (crlf_alt && last_crlf != (size_t)-1) return last_crlf + 1;
    if (j == n) return j;
    if (nchars >= 2) return last_start;
    return j;
}

static size_t next_llama_family(const uint8_t *s, size_t n, size_t i, int maxd) {
    int l;
    uint32_t c;
    unsigned k = cls_at(s, n, i, &l, &c);
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (c == '\'') {
        size_t e = contraction(s, n, i + 1, 1);
        if (e) return e;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k & C_L) return run_end(s, n, i, C_L, 0);
    if (!(k & C_N) && c != '\r' && c != '\n' && i + (size_t)l < n) {
        int l2;
        uint32_t c2;
        if (cls_at(s, n, i + (size_t)l, &l2, &c2) & C_L) return run_end(s, n, i + (size_t)l, C_L, 0);
    }
    /* \p{N} or \p{N}{1,3} */
    if (k & C_N) {
        size_t j = i + (size_t)l;
        for (int d = 1; d < maxd && j < n; d++) {
            int l2;
            uint32_t c2;
            if (!(cls_at(s, n, j, &l2, &c2) & C_N)) break;
            j += (size_t)l2;
        }
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = (size_t)-1;
    if (!(k & C_S)) j = i;
    else if (c == ' ' && i + 1 < n) {
        int l2;
        uint32_t c2;
        if (!(cls_at(s, n, i + 1, &l2, &c2) & (C_S | C_L | C_N))) j = i + 1;
    }
    if (j != (size_t)-1) {
        j = run_end(s, n, j, C_S | C_L | C_N, 1);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* \s*[\r\n]+ | \s+(?!\S) | \s+ */
    return whitespace(s, n, i, 1);
}

static size_t next_gpt2(const uint8_t *s, size_t n, size_t i) {
    int l;
    uint32_t c;
    unsigned k = cls_at(s, n, i, &l, &c);
    if (c == '\'') {
        size_t e = contraction(s, n, i + 1, 0);
        if (e) return e;
    }
    size_t j = i;
    unsigned kk = k;
    if (c == ' ' && i + 1 < n) {
        int l2;
        uint32_t c2;
        unsigned k2 = cls_at(s, n, i + 1, &l2, &c2);
        if (k2 & C_L) return run_end(s, n, i + 1, C_L, 0);
        if (k2 & C_N) return run_end(s, n, i + 1, C_N, 0);
        if (!(k2 & C_S)) return run_end(s, n, i + 1, C_S | C_L | C_N, 1);
    }
    if (kk & C_L) return run_end(s, n, j, C_L, 0);
    if (kk & C_N) return run_end(s, n, j, C_N, 0);
    if (!(kk & C_S)) return run_end(s, n, j, C_S | C_L | C_N, 1);
    return whitespace(s, n, i, 0);
}

static size_t next_digits(const uint8_t *s, size_t n, size_t i, int each) {
    int l;
    uint32_t c;
    unsigned k = cls_at(s, n, i, &l, &c);
    if (k & C_N) return each ? i + (size_t)l : run_end(s, n, i, C_N, 0);
    return run_end(s, n, i, C_N, 1);
}

size_t azr_pretok_next(int stage, const uint8_t *s, size_t n, size_t i) {
    switch (stage) {
    case AZR_PRE_QWEN2: return next_llama_family(s, n, i, 1);
    case AZR_PRE_LLAMA3: return next_llama_family(s, n, i, 3);
    case AZR_PRE_GPT2: return next_gpt2(s, n, i);
    case AZR_PRE_DIGITS: return next_digits(s, n, i, 0);
    case AZR_PRE_DIGITS_EACH: return next_digits(s, n, i, 1);
    default: return n;
    }
}
