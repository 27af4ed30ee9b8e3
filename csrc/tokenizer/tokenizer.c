/*
 * tokenizer.c -- vocabulary, merges, added tokens, normaliser, BPE, decoding.
 *
 * Owns: the azr_tokenizer object and everything tokenizer.h promises.
 * Must not: parse JSON or read files, print, abort or exit. Encoding is
 * thread-safe: per-call scratch (and the word cache) lives in workspaces taken
 * from a small lock-free pool, never in the shared tokenizer.
 *
 * The algorithm is Hugging Face `tokenizers`' pipeline, step for step:
 *   1. added tokens whose `normalized` flag is false are found in the raw text
 *      (leftmost-longest, lstrip/rstrip/single_word honoured; special ones only
 *      when allow_special);
 *   2. each remaining segment is normalised (NFC / Prepend / Replace), then
 *      added tokens with `normalized` true are found in it (their patterns are
 *      their normalised content);
 *   3. each remaining segment is split by the pre-tokenizer stages;
 *   4. each piece is turned into initial symbols (bytes, or characters with
 *      byte fallback / unk) and merged, lowest merge rank first, leftmost first.
 */
#include "tokenizer/tokenizer.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/pretok.h"
#include "tokenizer/unicode.h"

#define NONE32 0xFFFFFFFFu
#define POOL_SIZE 64
#define CACHE_MAX_KEY 64
#define CACHE_SLOTS (1u << 15)
#define CACHE_MAX_ENTRIES (1u << 14)
#define DEFAULT_HEAP_THRESHOLD 96
#define MAX_TOKEN_ID 0xFFFFFF   /* 16.7M ids: far above any real vocabulary, bounds hostile files */

/* ---------------------------------------------------------------- hashing */

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 31;
    h *= 0x7fb5d329728ea185ull;
    h ^= h >> 27;
    h *= 0x81dadef4bc2dd44dull;
    h ^= h >> 33;
    return h;
}

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    if (n) memcpy(&v, p, n);
    return mix64(h ^ v);
}

/* ------------------------------------------------------------ byte arena */

typedef struct { uint8_t *p; size_t len, cap; } bytes_buf;

static int buf_reserve(bytes_buf *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t nc = b->cap ? b->cap * 2 : 1024;
    while (nc < b->len + extra) nc *= 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np) return -1;
    b->p = np;
    b->cap = nc;
    return 0;
}

static int buf_append(bytes_buf *b, const void *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return 0;
}

/* ------------------------------------------------------- string -> id map */

/* Open addressing; keys are the id's bytes in one of the per-id arenas. */
typedef struct {
    uint32_t *slot;   /* id + 1, 0 = empty */
    uint32_t *hhi;    /* high hash bits, to skip most memcmp */
    size_t mask, count;
} str_map;

typedef struct { uint32_t off, len; } span;

typedef struct {
    uint64_t key;   /* (a << 32) | b, UINT64_MAX = empty */
    uint32_t rank, new_id;
} merge_entry;

typedef struct {
    uint8_t *content; size_t len;
    int32_t id;
    int flags;
} added_tok;

typedef struct {
    int n;
    int *order;           /* indices into the pattern list, grouped by first byte, longest first */
    int first[257];       /* order[first[b] .. first[b+1]) start with byte b */
    const uint8_t **pat; size_t *pat_len; int *tok;  /* pattern bytes, length, index in added[] */
} matcher;

struct azr_workspace;

struct azr_tokenizer {
    azr_tok_config cfg;
    bytes_buf strings;    /* owned copies of cfg strings */
    int finalized;
    /* per id */
    size_t id_cap;
    int32_t n_ids;
    uint8_t *has_str;     /* vocab or added entry exists */
    span *str;            /* token text as in tokenizer.json (vocab) */
    span *raw;            /* bytes BPE pieces are compared with; len = NONE32 if none */
    span *dec;            /* decoded bytes */
    int16_t *byte_val;    /* ByteFallback byte value or -1 */
    uint8_t *special;
    bytes_buf str_arena, raw_arena, dec_arena;
    str_map by_str, by_raw;
    /* merges */
    merge_entry *merges;
    size_t merge_mask, n_merges;
    int32_t byte_id[256];     /* byte-level: id of each single byte's symbol */
    int32_t byte_fb[256];     /* id of <0xXX>, or -1 */
    /* added tokens */
    added_tok *added;
    size_t n_added, added_cap;
    uint8_t *norm_content_store; /* normalised contents for normalized tokens */
    matcher m_raw, m_norm;
    /* workspace pool */
    _Atomic int busy[POOL_SIZE];
    struct azr_workspace *pool[POOL_SIZE];
};

/* --------------------------------------------------------------- maps */

static int map_init(str_map *m, size_t cap) {
    size_t c = 16;
    while (c < cap * 2) c *= 2;
    m->slot = calloc(c, sizeof(uint32_t));
    m->hhi = calloc(c, sizeof(uint32_t));
    if (!m->slot || !m->hhi) return -1;
    m->mask = c - 1;
    m->count = 0;
    return 0;
}

static void map_free(str_map *m) {
    free(m->slot);
    free(m->hhi);
    m->slot = m->hhi = NULL;
}

static inline const uint8_t *arena_at(const bytes_buf *a, span s) { return a->p + s.off; }

/* Find id of key in map whose keys live in (arena, spans). -1 if absent. */
static inline int32_t map_get(const str_map *m, const bytes_buf *arena, const span *spans,
                              const uint8_t *key, size_t n, uint64_t h) {
    size_t i = (size_t)h & m->mask;
    uint32_t hi = (uint32_t)(h >> 32);
    for (;;) {
        uint32_t s = m->slot[i];
        if (!s) return -1;
        if (m->hhi[i] == hi) {
            span sp = spans[s - 1];
            if (sp.len == n && memcmp(arena_at(arena, sp), key, n) == 0) return (int32_t)(s - 1);
        }
        i = (i + 1) & m->mask;
    }
}

static int map_put(str_map *m, const bytes_buf *arena, const span *spans, int32_t id, uint64_t h);

static int map_grow(str_map *m, const bytes_buf *arena, const span *spans) {
    str_map nm;
    if (map_init(&nm, (m->mask + 1))) return -1;
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->slot[i]) continue;
        int32_t id = (int32_t)(m->slot[i] - 1);
        span sp = spans[id];
        map_put(&nm, arena, spans, id, hash_bytes(arena_at(arena, sp), sp.len));
    }
    map_free(m);
    *m = nm;
    return 0;
}

/* Insert id (key = its span); keeps an existing equal key. */
static int map_put(str_map *m, const bytes_buf *arena, const span *spans, int32_t id, uint64_t h) {
    if ((m->count + 1) * 2 > m->mask + 1) {
        if (map_grow(m, arena, spans)) return -1;
    }
    span ks = spans[id];
    size_t i = (size_t)h & m->mask;
    uint32_t hi = (uint32_t)(h >> 32);
    for (;;) {
        uint32_t s = m->slot[i];
        if (!s) break;
        if (m->hhi[i] == hi) {
            span sp = spans[s - 1];
            if (sp.len == ks.len && memcmp(arena_at(arena, sp), arena_at(arena, ks), ks.len) == 0) return 0;
        }
        i = (i + 1) & m->mask;
    }
    m->slot[i] = (uint32_t)id + 1;
    m->hhi[i] = hi;
    m->count++;
    return 0;
}

static inline const merge_entry *merge_get(const azr_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & t->merge_mask;
    for (;;) {
        const merge_entry *e = &t->merges[i];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* ------------------------------------------------- byte-level alphabet */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static uint32_t byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
    return 256u + (uint32_t)k;
}

static int cp_to_byte(uint32_t cp) {
    static int16_t inv[324];
    static _Atomic int ready = 0;
    if (!atomic_load(&ready)) {
        for (int i = 0; i < 324; i++) inv[i] = -1;
        for (int b = 0; b < 256; b++) inv[byte_to_cp(b)] = (int16_t)b;
        atomic_store(&ready, 1);
    }
    return cp < 324 ? inv[cp] : -1;
}

/* Byte-level decode of a token text: 1 and bytes in out if every character
 * is in the alphabet, else 0. */
static int byte_level_decode(const uint8_t *s, size_t n, bytes_buf *out) {
    size_t i = 0;
    size_t start = out->len;
    while (i < n) {
        uint32_t cp;
        i += (size_t)azr_utf8_decode(s + i, n - i, &cp);
        int b = cp_to_byte(cp);
        if (b < 0) { out->len = start; return 0; }
        uint8_t bb = (uint8_t)b;
        if (buf_append(out, &bb, 1)) { out->len = start; return -1; }
    }
    return 1;
}

static int parse_byte_token(const uint8_t *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        int c = s[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ------------------------------------------------------------ create */

azr_status azr_tok_create(azr_tokenizer **out, const azr_tok_config *cfg) {
    if (!out || !cfg) return azr_set_error(AZR_ERR_INVALID, "azr_tok_create: NULL argument");
    *out = NULL;
    if (cfg->n_pre < 0 || cfg->n_pre > AZR_TOK_MAX_STAGES || cfg->n_norm < 0 || cfg->n_norm > AZR_TOK_MAX_STAGES)
        return azr_set_error(AZR_ERR_INVALID, "tokenizer config: too many pre-tokenizer or normaliser steps (max %d)",
                             AZR_TOK_MAX_STAGES);
    for (int i = 0; i < cfg->n_pre; i++)
        if (cfg->pre[i] < AZR_PRE_QWEN2 || cfg->pre[i] > AZR_PRE_METASPACE)
            return azr_set_error(AZR_ERR_UNSUPPORTED, "tokenizer config: unknown pre-tokenizer stage %d", cfg->pre[i]);
    for (int i = 0; i < cfg->n_norm; i++) {
        int k = cfg->norm[i].kind;
        if (k < AZR_NORM_NFC || k > AZR_NORM_REPLACE)
            return azr_set_error(AZR_ERR_UNSUPPORTED, "tokenizer config: unknown normaliser step %d", k);
        if (k == AZR_NORM_REPLACE && cfg->norm[i].a_len == 0)
            return azr_set_error(AZR_ERR_FORMAT, "tokenizer config: Replace normaliser with an empty pattern");
    }
    azr_tokenizer *t = calloc(1, sizeof(*t));
    if (!t) return azr_set_error(AZR_ERR_NOMEM, "cannot allocate tokenizer");
    t->cfg = *cfg;
    /* Copy the config's strings into one arena, then repoint (two passes so
     * realloc cannot invalidate earlier pointers). */
    size_t offs[2 * AZR_TOK_MAX_STAGES + 2];
    int k = 0;
    int fail = 0;
    for (int i = 0; i < cfg->n_norm; i++) {
        offs[k++] = t->strings.len;
        fail |= buf_append(&t->strings, cfg->norm[i].a, cfg->norm[i].a_len);
        offs[k++] = t->strings.len;
        fail |= buf_append(&t->strings, cfg->norm[i].b, cfg->norm[i].b_len);
    }
    size_t off_rf = t->strings.len;
    fail |= buf_append(&t->strings, cfg->dec_replace_from, cfg->dec_replace_from ? cfg->dec_replace_from_len : 0);
    size_t off_rt = t->strings.len;
    fail |= buf_append(&t->strings, cfg->dec_replace_to, cfg->dec_replace_from ? cfg->dec_replace_to_len : 0);
    fail |= buf_append(&t->strings, "", 1);
    k = 0;
    for (int i = 0; i < cfg->n_norm; i++) {
        t->cfg.norm[i].a = (const char *)t->strings.p + offs[k++];
        t->cfg.norm[i].b = (const char *)t->strings.p + offs[k++];
    }
    if (cfg->dec_replace_from) {
        t->cfg.dec_replace_from = (const char *)t->strings.p + off_rf;
        t->cfg.dec_replace_to = (const char *)t->strings.p + off_rt;
    }
    if (t->cfg.bpe_heap_threshold <= 0) t->cfg.bpe_heap_threshold = DEFAULT_HEAP_THRESHOLD;
    if (fail || map_init(&t->by_str, 1024) || map_init(&t->by_raw, 1024)) {
        azr_tok_free(t);
        return azr_set_error(AZR_ERR_NOMEM, "cannot allocate tokenizer tables");
    }
    for (int b = 0; b < 256; b++) t->byte_id[b] = t->byte_fb[b] = -1;
    *out = t;
    return AZR_OK;
}

static int ensure_id(azr_tokenizer *t, int32_t id) {
    if ((size_t)id < t->id_cap) return 0;
    size_t nc = t->id_cap ? t->id_cap : 1024;
    while (nc <= (size_t)id) nc *= 2;
    uint8_t *hs = realloc(t->has_str, nc);
    if (hs) t->has_str = hs;
    span *s1 = realloc(t->str, nc * sizeof(span));
    if (s1) t->str = s1;
    span *s2 = realloc(t->raw, nc * sizeof(span));
    if (s2) t->raw = s2;
    span *s3 = realloc(t->dec, nc * sizeof(span));
    if (s3) t->dec = s3;
    int16_t *bv = realloc(t->byte_val, nc * sizeof(int16_t));
    if (bv) t->byte_val = bv;
    uint8_t *sp = realloc(t->special, nc);
    if (sp) t->special = sp;
    if (!hs || !s1 || !s2 || !s3 || !bv || !sp) return -1;
    for (size_t i = t->id_cap; i < nc; i++) {
        t->has_str[i] = 0;
        t->str[i] = (span){0, 0};
        t->raw[i] = (span){0, NONE32};
        t->dec[i] = (span){0, 0};
        t->byte_val[i] = -1;
        t->special[i] = 0;
    }
    t->id_cap = nc;
    return 0;
}

azr_status azr_tok_add_token(azr_tokenizer *t, const char *text, size_t len, int32_t id) {
    if (!t || (!text && len)) return azr_set_error(AZR_ERR_INVALID, "azr_tok_add_token: NULL argument");
    if (t->finalized) return azr_set_error(AZR_ERR_STATE, "azr_tok_add_token: tokenizer already finalized");
    if (id < 0 || id > MAX_TOKEN_ID)
        return azr_set_error(AZR_ERR_FORMAT, "vocab: token '%.*s' has invalid id %d", (int)(len > 64 ? 64 : len), text ? text : "", id);
    if (len == 0) return azr_set_error(AZR_ERR_FORMAT, "vocab: empty token text for id %d", id);
    if (!azr_utf8_valid((const uint8_t *)text, len))
        return azr_set_error(AZR_ERR_FORMAT, "vocab: token with id %d is not valid UTF-8", id);
    if (ensure_id(t, id)) return azr_set_error(AZR_ERR_NOMEM, "vocab: cannot grow tables to id %d", id);
    if (t->has_str[id] & 1)
        return azr_set_error(AZR_ERR_FORMAT, "vocab: id %d is used by two tokens ('%.*s' and another)", id,
                             (int)(len > 64 ? 64 : len), text);
    const uint8_t *s = (const uint8_t *)text;
    t->str[id] = (span){(uint32_t)t->str_arena.len, (uint32_t)len};
    if (buf_append(&t->str_arena, s, len)) return azr_set_error(AZR_ERR_NOMEM, "vocab: out of memory");
    t->has_str[id] |= 1;
    if (id + 1 > t->n_ids) t->n_ids = id + 1;
    if (map_put(&t->by_str, &t->str_arena, t->str, id, hash_bytes(s, len)))
        return azr_set_error(AZR_ERR_NOMEM, "vocab: out of memory");
    /* raw bytes for whole-piece lookups */
    if (t->cfg.model == AZR_TOK_MODEL_BYTE_LEVEL) {
        size_t start = t->raw_arena.len;
        int r = byte_level_decode(s, len, &t->raw_arena);
        if (r < 0) return azr_set_error(AZR_ERR_NOMEM, "vocab: out of memory");
        if (r == 1) {
            t->raw[id] = (span){(uint32_t)start, (uint32_t)(t->raw_arena.len - start)};
            if (t->raw[id].len == 1) {
                uint8_t b = t->raw_arena.p[start];
                if (t->byte_id[b] < 0) t->byte_id[b] = id;
            }
        }
    } else {
        t->raw[id] = (span){(uint32_t)t->raw_arena.len, (uint32_t)len};
        if (buf_append(&t->raw_arena, s, len)) return azr_set_error(AZR_ERR_NOMEM, "vocab: out of memory");
    }
    if (t->raw[id].len != NONE32) {
        const uint8_t *rp = t->raw_arena.p + t->raw[id].off;
        if (map_put(&t->by_raw, &t->raw_arena, t->raw, id, hash_bytes(rp, t->raw[id].len)))
            return azr_set_error(AZR_ERR_NOMEM, "vocab: out of memory");
    }
    int bv = parse_byte_token(s, len);
    if (bv >= 0 && len == 6 && s[3] == (uint8_t)"0123456789ABCDEF"[bv >> 4] &&
        s[4] == (uint8_t)"0123456789ABCDEF"[bv & 15] && t->byte_fb[bv] < 0)
        t->byte_fb[bv] = id;
    return AZR_OK;
}

static int32_t lookup_str(const azr_tokenizer *t, const uint8_t *s, size_t n) {
    return map_get(&t->by_str, &t->str_arena, t->str, s, n, hash_bytes(s, n));
}

static int merges_grow(azr_tokenizer *t) {
    size_t nc = t->merge_mask ? (t->merge_mask + 1) * 2 : 1024;
    merge_entry *nm = malloc(nc * sizeof(merge_entry));
    if (!nm) return -1;
    for (size_t i = 0; i < nc; i++) nm[i].key = UINT64_MAX;
    for (size_t i = 0; t->merges && i <= t->merge_mask; i++) {
        if (t->merges[i].key == UINT64_MAX) continue;
        size_t j = (size_t)mix64(t->merges[i].key) & (nc - 1);
        while (nm[j].key != UINT64_MAX) j = (j + 1) & (nc - 1);
        nm[j] = t->merges[i];
    }
    free(t->merges);
    t->merges = nm;
    t->merge_mask = nc - 1;
    return 0;
}

azr_status azr_tok_add_merge(azr_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen) {
    if (!t || (!a && alen) || (!b && blen)) return azr_set_error(AZR_ERR_INVALID, "azr_tok_add_merge: NULL argument");
    if (t->finalized) return azr_set_error(AZR_ERR_STATE, "azr_tok_add_merge: tokenizer already finalized");
    size_t rank = t->n_merges;
    int32_t ia = lookup_str(t, (const uint8_t *)a, alen);
    if (ia < 0)
        return azr_set_error(AZR_ERR_FORMAT, "merges[%zu] ('%.*s' '%.*s'): token '%.*s' is not in the vocabulary",
                             rank, (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b,
                             (int)(alen > 64 ? 64 : alen), a);
    int32_t ib = lookup_str(t, (const uint8_t *)b, blen);
    if (ib < 0)
        return azr_set_error(AZR_ERR_FORMAT, "merges[%zu] ('%.*s' '%.*s'): token '%.*s' is not in the vocabulary",
                             rank, (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b,
                             (int)(blen > 64 ? 64 : blen), b);
    uint8_t stackbuf[256];
    uint8_t *cat = alen + blen <= sizeof(stackbuf) ? stackbuf : malloc(alen + blen);
    if (!cat) return azr_set_error(AZR_ERR_NOMEM, "merges: out of memory");
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t in = lookup_str(t, cat, alen + blen);
    if (cat != stackbuf) free(cat);
    if (in < 0)
        return azr_set_error(AZR_ERR_FORMAT,
                             "merges[%zu] ('%.*s' '%.*s'): the merged token '%.*s%.*s' is not in the vocabulary",
                             rank, (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b,
                             (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b);
    if ((t->n_merges + 1) * 2 > t->merge_mask + 1 || !t->merges) {
        if (merges_grow(t)) return azr_set_error(AZR_ERR_NOMEM, "merges: out of memory");
    }
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    size_t j = (size_t)mix64(key) & t->merge_mask;
    while (t->merges[j].key != UINT64_MAX && t->merges[j].key != key) j = (j + 1) & t->merge_mask;
    /* A repeated pair takes the later rank, as HF's HashMap collect does. */
    t->merges[j].key = key;
    t->merges[j].rank = (uint32_t)rank;
    t->merges[j].new_id = (uint32_t)in;
    t->n_merges++;
    return AZR_OK;
}

azr_status azr_tok_add_added(azr_tokenizer *t, const char *content, size_t len, int32_t id, int flags) {
    if (!t || (!content && len)) return azr_set_error(AZR_ERR_INVALID, "azr_tok_add_added: NULL argument");
    if (t->finalized) return azr_set_error(AZR_ERR_STATE, "azr_tok_add_added: tokenizer already finalized");
    if (len == 0) return azr_set_error(AZR_ERR_FORMAT, "added_tokens: empty content for id %d", id);
    if (id < 0 || id > MAX_TOKEN_ID)
        return azr_set_error(AZR_ERR_FORMAT, "added_tokens: '%.*s' has invalid id %d", (int)(len > 64 ? 64 : len), content, id);
    if (!azr_utf8_valid((const uint8_t *)content, len))
        return azr_set_error(AZR_ERR_FORMAT, "added_tokens: content of id %d is not valid UTF-8", id);
    if (t->n_added == t->added_cap) {
        size_t nc = t->added_cap ? t->added_cap * 2 : 16;
        added_tok *na = realloc(t->added, nc * sizeof(added_tok));
        if (!na) return azr_set_error(AZR_ERR_NOMEM, "added_tokens: out of memory");
        t->added = na;
        t->added_cap = nc;
    }
    uint8_t *c = malloc(len);
    if (!c) return azr_set_error(AZR_ERR_NOMEM, "added_tokens: out of memory");
    memcpy(c, content, len);
    t->added[t->n_added++] = (added_tok){c, len, id, flags};
    if (ensure_id(t, id)) return azr_set_error(AZR_ERR_NOMEM, "added_tokens: out of memory");
    if (id + 1 > t->n_ids) t->n_ids = id + 1;
    t->has_str[id] |= 2;
    t->special[id] = (flags & AZR_ADDED_SPECIAL) ? 1 : 0;
    return AZR_OK;
}

/* -------------------------------------------------------- workspaces */

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len, ids_off, n_ids;
} cache_entry;

typedef struct azr_workspace {
    bytes_buf nbuf[2];            /* normaliser ping-pong buffers */
    bytes_buf pre[AZR_TOK_MAX_STAGES];
    int32_t *sym; uint32_t *rk; int32_t *nw; int32_t *prv; int32_t *nxt; uint64_t *heap;
    size_t sym_cap, heap_cap;
    uint32_t *ctab;               /* CACHE_SLOTS slots: entry index + 1 */
    cache_entry *cent; size_t n_cent;
    bytes_buf ckeys;
    int32_t *cids; size_t cids_len, cids_cap;
    /* per call */
    int at_start;                 /* the segment being processed starts at offset 0 of the input */
    const azr_tokenizer *t;
    azr_tok_ids *out;
    azr_status st;
    int allow_special;
} workspace;

static void ws_free(workspace *w) {
    if (!w) return;
    for (int i = 0; i < 2; i++) free(w->nbuf[i].p);
    for (int i = 0; i < AZR_TOK_MAX_STAGES; i++) free(w->pre[i].p);
    free(w->sym); free(w->rk); free(w->nw); free(w->prv); free(w->nxt); free(w->heap);
    free(w->ctab); free(w->cent); free(w->ckeys.p); free(w->cids);
    free(w);
}

static workspace *ws_acquire(const azr_tokenizer *tc, int *slot) {
    azr_tokenizer *t = (azr_tokenizer *)tc;  /* the pool is the only mutable part */
    for (int i = 0; i < POOL_SIZE; i++) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&t->busy[i], &expected, 1)) {
            if (!t->pool[i]) t->pool[i] = calloc(1, sizeof(workspace));
            if (!t->pool[i]) { atomic_store(&t->busy[i], 0); return NULL; }
            *slot = i;
            return t->pool[i];
        }
    }
    *slot = -1;
    return calloc(1, sizeof(workspace));
}

static void ws_release(const azr_tokenizer *tc, workspace *w, int slot) {
    azr_tokenizer *t = (azr_tokenizer *)tc;
    if (slot < 0) { ws_free(w); return; }
    atomic_store(&t->busy[slot], 0);
}

static int ws_sym_reserve(workspace *w, size_t n) {
    if (n <= w->sym_cap) return 0;
    size_t nc = w->sym_cap ? w->sym_cap : 256;
    while (nc < n) nc *= 2;
    int32_t *a = realloc(w->sym, nc * sizeof(int32_t)); if (a) w->sym = a;
    uint32_t *b = realloc(w->rk, nc * sizeof(uint32_t)); if (b) w->rk = b;
    int32_t *c = realloc(w->nw, nc * sizeof(int32_t)); if (c) w->nw = c;
    int32_t *d = realloc(w->prv, nc * sizeof(int32_t)); if (d) w->prv = d;
    int32_t *e = realloc(w->nxt, nc * sizeof(int32_t)); if (e) w->nxt = e;
    uint64_t *f = realloc(w->heap, 4 * nc * sizeof(uint64_t)); if (f) w->heap = f;
    if (!a || !b || !c || !d || !e || !f) return -1;
    w->sym_cap = nc;
    w->heap_cap = 4 * nc;
    return 0;
}

static int out_push(workspace *w, int32_t id) {
    azr_tok_ids *o = w->out;
    if (o->len == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->ids, nc * sizeof(int32_t));
        if (!p) return -1;
        o->ids = p;
        o->cap = nc;
    }
    o->ids[o->len++] = id;
    return 0;
}

/* ------------------------------------------------------------- cache */

static int cache_get(workspace *w, const uint8_t *p, size_t n, uint64_t h) {
    if (!w->ctab) return 0;
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    for (;;) {
        uint32_t s = w->ctab[i];
        if (!s) return 0;
        cache_entry *e = &w->cent[s - 1];
        if (e->hash == h && e->key_len == n && memcmp(w->ckeys.p + e->key_off, p, n) == 0) {
            for (uint32_t k = 0; k < e->n_ids; k++)
                if (out_push(w, w->cids[e->ids_off + k])) { w->st = AZR_ERR_NOMEM; return 1; }
            return 1;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
}

static void cache_put(workspace *w, const uint8_t *p, size_t n, uint64_t h, const int32_t *ids, size_t k) {
    if (!w->ctab) {
        w->ctab = calloc(CACHE_SLOTS, sizeof(uint32_t));
        w->cent = malloc(CACHE_MAX_ENTRIES * sizeof(cache_entry));
        if (!w->ctab || !w->cent) { free(w->ctab); free(w->cent); w->ctab = NULL; w->cent = NULL; return; }
        w->n_cent = 0;
    }
    if (w->n_cent >= CACHE_MAX_ENTRIES) {
        memset(w->ctab, 0, CACHE_SLOTS * sizeof(uint32_t));
        w->n_cent = 0;
        w->ckeys.len = 0;
        w->cids_len = 0;
    }
    if (w->cids_len + k > w->cids_cap) {
        size_t nc = w->cids_cap ? w->cids_cap * 2 : 4096;
        while (nc < w->cids_len + k) nc *= 2;
        int32_t *np = realloc(w->cids, nc * sizeof(int32_t));
        if (!np) return;
        w->cids = np;
        w->cids_cap = nc;
    }
    uint32_t koff = (uint32_t)w->ckeys.len;
    if (buf_append(&w->ckeys, p, n)) return;
    memcpy(w->cids + w->cids_len, ids, k * sizeof(int32_t));
    cache_entry *e = &w->cent[w->n_cent];
    *e = (cache_entry){h, koff, (uint32_t)n, (uint32_t)w->cids_len, (uint32_t)k};
    w->cids_len += k;
    size_t i = (size_t)h & (CACHE_SLOTS - 1);
    while (w->ctab[i]) i = (i + 1) & (CACHE_SLOTS - 1);
    w->ctab[i] = (uint32_t)(++w->n_cent);
}

/* -------------------------------------------------------------- BPE */

static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0];
    uint64_t v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m) break;
        size_t c = (l + 1 < m && h[l + 1] < h[l]) ? l + 1 : l;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

/* Merge w->sym[0..n) in place; returns the new count. Lowest rank first,
 * leftmost first among equal ranks. Array version for short words. */
static size_t merge_array(const azr_tokenizer *t, workspace *w, size_t n) {
    int32_t *sym = w->sym;
    uint32_t *rk = w->rk;
    int32_t *nw = w->nw;
    for (size_t i = 0; i + 1 < n; i++) {
        const merge_entry *e = merge_get(t, sym[i], sym[i + 1]);
        rk[i] = e ? e->rank : NONE32;
        nw[i] = e ? (int32_t)e->new_id : -1;
    }
    while (n > 1) {
        uint32_t best = NONE32;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rk[i] < best) { best = rk[i]; bi = i; }
        if (best == NONE32) break;
        sym[bi] = nw[bi];
        size_t tail = n - bi - 2;
        memmove(sym + bi + 1, sym + bi + 2, tail * sizeof(int32_t));
        if (tail) {
            memmove(rk + bi + 1, rk + bi + 2, (tail - 1) * sizeof(uint32_t));
            memmove(nw + bi + 1, nw + bi + 2, (tail - 1) * sizeof(int32_t));
        }
        n--;
        if (bi > 0) {
            const merge_entry *e = merge_get(t, sym[bi - 1], sym[bi]);
            rk[bi - 1] = e ? e->rank : NONE32;
            nw[bi - 1] = e ? (int32_t)e->new_id : -1;
        }
        if (bi + 1 < n) {
            const merge_entry *e = merge_get(t, sym[bi], sym[bi + 1]);
            rk[bi] = e ? e->rank : NONE32;
            nw[bi] = e ? (int32_t)e->new_id : -1;
        }
    }
    return n;
}

/* Heap version for long words: a linked list of symbols and a min-heap of
 * (rank, position), stale entries skipped, as HF's Word::merge_all. */
static size_t merge_heap(const azr_tokenizer *t, workspace *w, size_t n) {
    int32_t *sym = w->sym, *prv = w->prv, *nxt = w->nxt;
    uint64_t *h = w->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prv[i] = (int32_t)i - 1;
        nxt[i] = (i + 1 < n) ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const merge_entry *e = merge_get(t, sym[i], sym[i + 1]);
        if (e) heap_push(h, &hn, ((uint64_t)e->rank << 32) | i);
    }
    while (hn) {
        uint64_t top = heap_pop(h, &hn);
        uint32_t rank = (uint32_t)(top >> 32);
        int32_t pos = (int32_t)(uint32_t)top;
        if (sym[pos] < 0) continue;
        int32_t r = nxt[pos];
        if (r < 0) continue;
        const merge_entry *e = merge_get(t, sym[pos], sym[r]);
        if (!e || e->rank != rank) continue;
        sym[pos] = (int32_t)e->new_id;
        sym[r] = -1;
        nxt[pos] = nxt[r];
        if (nxt[r] >= 0) prv[nxt[r]] = pos;
        if (prv[pos] >= 0) {
            const merge_entry *e2 = merge_get(t, sym[prv[pos]], sym[pos]);
            if (e2 && hn < w->heap_cap) heap_push(h, &hn, ((uint64_t)e2->rank << 32) | (uint32_t)prv[pos]);
        }
        if (nxt[pos] >= 0) {
            const merge_entry *e2 = merge_get(t, sym[pos], sym[nxt[pos]]);
            if (e2 && hn < w->heap_cap) heap_push(h, &hn, ((uint64_t)e2->rank << 32) | (uint32_t)pos);
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = nxt[i]) sym[m++] = sym[i];
    return m;
}

/* Initial symbols of a piece, HF BPE::merge_word's rules: a character (a byte
 * for byte-level) in the vocab is one symbol; else its bytes as <0xXX> when
 * byte_fallback and all exist; else unk (fused when fuse_unk), or dropped
 * when there is no unk token. */
static size_t init_symbols(const azr_tokenizer *t, workspace *w, const uint8_t *p, size_t n) {
    size_t m = 0;
    int32_t pend_unk = -1;
    int32_t *sym = w->sym;
    size_t i = 0;
    while (i < n) {
        size_t cl;
        int32_t id;
        if (t->cfg.model == AZR_TOK_MODEL_BYTE_LEVEL) {
            cl = 1;
            id = t->byte_id[p[i]];
        } else {
            uint32_t cp;
            cl = (size_t)azr_utf8_decode(p + i, n - i, &cp);
            id = map_get(&t->by_raw, &t->raw_arena, t->raw, p + i, cl, hash_bytes(p + i, cl));
        }
        if (id >= 0) {
            if (pend_unk >= 0) { sym[m++] = pend_unk; pend_unk = -1; }
            sym[m++] = id;
        } else {
            int ok = t->cfg.byte_fallback;
            for (size_t k = 0; ok && k < cl; k++) ok = t->byte_fb[p[i + k]] >= 0;
            if (ok) {
                for (size_t k = 0; k < cl; k++) sym[m++] = t->byte_fb[p[i + k]];
            } else if (t->cfg.unk_id >= 0) {
                if (pend_unk >= 0 && !t->cfg.fuse_unk) sym[m++] = pend_unk;
                pend_unk = t->cfg.unk_id;
            }
        }
        i += cl;
    }
    if (pend_unk >= 0) sym[m++] = pend_unk;
    return m;
}

static void bpe_piece(workspace *w, const uint8_t *p, size_t n) {
    const azr_tokenizer *t = w->t;
    if (n == 0 || w->st) return;
    uint64_t h = 0;
    int cacheable = n <= CACHE_MAX_KEY;
    if (cacheable) {
        h = hash_bytes(p, n);
        if (cache_get(w, p, n, h)) return;
    }
    if (t->cfg.ignore_merges) {
        int32_t id = map_get(&t->by_raw, &t->raw_arena, t->raw, p, n, cacheable ? h : hash_bytes(p, n));
        if (id >= 0) {
            if (out_push(w, id)) w->st = AZR_ERR_NOMEM;
            return;
        }
    }
    if (ws_sym_reserve(w, n + 1)) { w->st = AZR_ERR_NOMEM; return; }
    size_t m = init_symbols(t, w, p, n);
    if (m > 1) m = (m <= (size_t)t->cfg.bpe_heap_threshold) ? merge_array(t, w, m) : merge_heap(t, w, m);
    size_t start = w->out->len;
    for (size_t k = 0; k < m; k++)
        if (out_push(w, w->sym[k])) { w->st = AZR_ERR_NOMEM; return; }
    if (cacheable) cache_put(w, p, n, h, w->out->ids + start, m);
}

/* ------------------------------------------------- pre-tokenization */

static const uint8_t METASPACE[3] = {0xE2, 0x96, 0x81};   /* U+2581 */

/* Run pre-tokenizer stage `stage` on a piece; at_start: the piece begins at
 * offset 0 of the original text (Metaspace's prepend_scheme "first"). */
static void pre_stage(workspace *w, int stage, const uint8_t *p, size_t n, int at_start) {
    const azr_tokenizer *t = w->t;
    if (w->st || n == 0) return;
    if (stage >= t->cfg.n_pre) { bpe_piece(w, p, n); return; }
    int kind = t->cfg.pre[stage];
    if (kind == AZR_PRE_PREFIX_SPACE) {
        if (p[0] == ' ') { pre_stage(w, stage + 1, p, n, at_start); return; }
        bytes_buf *b = &w->pre[stage];
        b->len = 0;
        if (buf_append(b, " ", 1) || buf_append(b, p, n)) { w->st = AZR_ERR_NOMEM; return; }
        pre_stage(w, stage + 1, b->p, b->len, at_start);
        return;
    }
    if (kind == AZR_PRE_METASPACE) {
        /* HF Metaspace: replace ' ' by U+2581, prepend one unless the piece
         * already starts with it (always, or only at the text's start), then
         * optionally split so that each U+2581 begins a piece. */
        bytes_buf *b = &w->pre[stage];
        b->len = 0;
        int starts = n >= 3 && memcmp(p, METASPACE, 3) == 0;
        int pre = !starts && (t->cfg.metaspace_prepend == 2 || (t->cfg.metaspace_prepend == 1 && at_start));
        if (pre && p[0] == ' ') pre = 0;   /* the replaced space itself becomes the leading U+2581 */
        if (pre && buf_append(b, METASPACE, 3)) { w->st = AZR_ERR_NOMEM; return; }
        for (size_t i = 0; i < n; i++) {
            if (p[i] == ' ' ? buf_append(b, METASPACE, 3) : buf_append(b, p + i, 1)) { w->st = AZR_ERR_NOMEM; return; }
        }
        const uint8_t *q = b->p;
        size_t m = b->len;
        if (!t->cfg.metaspace_split) { pre_stage(w, stage + 1, q, m, at_start); return; }
        size_t s0 = 0;
        for (size_t i = 1; i + 3 <= m && !w->st; i++) {
            if (q[i] == 0xE2 && memcmp(q + i, METASPACE, 3) == 0) {
                pre_stage(w, stage + 1, q + s0, i - s0, at_start && s0 == 0);
                s0 = i;
                i += 2;
            }
        }
        if (!w->st) pre_stage(w, stage + 1, q + s0, m - s0, at_start && s0 == 0);
        return;
    }
    size_t i = 0;
    while (i < n && !w->st) {
        size_t e = azr_pretok_next(kind, p, n, i);
        pre_stage(w, stage + 1, p + i, e - i, at_start && i == 0);
        i = e;
    }
}

/* ------------------------------------------------------- normaliser */

/* Apply the normaliser steps; returns the result (maybe p itself). */
static const uint8_t *normalize(workspace *w, const azr_tok_config *cfg, const uint8_t *p, size_t n, size_t *out_n) {
    const uint8_t *cur = p;
    size_t cn = n;
    int which = 0;
    for (int s = 0; s < cfg->n_norm && !w->st; s++) {
        const azr_tok_norm_step *st = &cfg->norm[s];
        bytes_buf *o = &w->nbuf[which];
        if (st->kind == AZR_NORM_NFC) {
            if (azr_nfc_quick_check(cur, cn)) continue;
            uint8_t *ob = o->p;
            size_t cap = o->cap, len = 0;
            if (azr_nfc(cur, cn, &ob, &cap, &len)) { w->st = AZR_ERR_NOMEM; o->p = ob; o->cap = cap; break; }
            o->p = ob; o->cap = cap; o->len = len;
        } else if (st->kind == AZR_NORM_PREPEND) {
            if (cn == 0) continue;
            o->len = 0;
            if (buf_append(o, st->a, st->a_len) || buf_append(o, cur, cn)) { w->st = AZR_ERR_NOMEM; break; }
        } else {
            const uint8_t *hit = cn >= st->a_len ? memmem(cur, cn, st->a, st->a_len) : NULL;
            if (!hit) continue;
            o->len = 0;
            size_t i = 0;
            while (hit) {
                size_t k = (size_t)(hit - cur);
                if (buf_append(o, cur + i, k - i) || buf_append(o, st->b, st->b_len)) { w->st = AZR_ERR_NOMEM; break; }
                i = k + st->a_len;
                hit = (i < cn && cn - i >= st->a_len) ? memmem(cur + i, cn - i, st->a, st->a_len) : NULL;
            }
            if (w->st || buf_append(o, cur + i, cn - i)) { w->st = AZR_ERR_NOMEM; break; }
        }
        cur = o->p;
        cn = o->len;
        which ^= 1;
    }
    *out_n = cn;
    return cur;
}

/* ------------------------------------------------------ added tokens */

static inline int is_space_cp(uint32_t cp) { return (azr_uni_prop(cp) & AZR_UNI_SPACE) != 0; }
static inline int is_word_cp(uint32_t cp) { return (azr_uni_prop(cp) & AZR_UNI_WORD) != 0; }

static size_t prev_char_start(const uint8_t *s, size_t i) {
    size_t j = i - 1;
    while (j > 0 && (s[j] & 0xC0) == 0x80) j--;
    return j;
}

typedef void (*seg_fn)(workspace *w, const uint8_t *p, size_t n);

/* Split s[0..n) on the matcher's tokens (HF AddedVocabulary::find_matches),
 * emitting token ids and calling fn for the text between them. */
static void split_added(workspace *w, const matcher *m, const uint8_t *s, size_t n, seg_fn fn) {
    const azr_tokenizer *t = w->t;
    int outer_at_start = w->at_start;
    if (m->n == 0) { fn(w, s, n); return; }
    size_t start_offset = 0, i = 0;
    while (i < n && !w->st) {
        uint8_t b = s[i];
        int lo = m->first[b], hi = m->first[b + 1];
        int found = -1;
        for (int k = lo; k < hi; k++) {
            int pi = m->order[k];
            size_t L = m->pat_len[pi];
            if (L <= n - i && memcmp(s + i, m->pat[pi], L) == 0) { found = pi; break; }
        }
        if (found < 0) { i++; continue; }
        size_t start = i, stop = i + m->pat_len[found];
        const added_tok *at = &t->added[m->tok[found]];
        i = stop;
        if ((at->flags & AZR_ADDED_SPECIAL) && !w->allow_special) continue;
        if (at->flags & AZR_ADDED_SINGLE_WORD) {
            uint32_t cp;
            int start_space = 1, stop_space = 1;
            if (start > 0) {
                size_t ps = prev_char_start(s, start);
                azr_utf8_decode(s + ps, start - ps, &cp);
                start_space = !is_word_cp(cp);
            }
            if (stop < n) {
                azr_utf8_decode(s + stop, n - stop, &cp);
                stop_space = !is_word_cp(cp);
            }
            if (!start_space || !stop_space) continue;
        }
        if (at->flags & AZR_ADDED_LSTRIP) {
            size_t ns = start;
            while (ns > 0) {
                size_t ps = prev_char_start(s, ns);
                uint32_t cp;
                azr_utf8_decode(s + ps, ns - ps, &cp);
                if (!is_space_cp(cp)) break;
                ns = ps;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (at->flags & AZR_ADDED_RSTRIP) {
            while (stop < n) {
                uint32_t cp;
                int l = azr_utf8_decode(s + stop, n - stop, &cp);
                if (!is_space_cp(cp)) break;
                stop += (size_t)l;
            }
            i = stop;
        }
        if (start_offset < start) {
            w->at_start = outer_at_start && start_offset == 0;
            fn(w, s + start_offset, start - start_offset);
        }
        if (out_push(w, at->id)) { w->st = AZR_ERR_NOMEM; return; }
        start_offset = stop;
    }
    if (!w->st && start_offset < n) {
        w->at_start = outer_at_start && start_offset == 0;
        fn(w, s + start_offset, n - start_offset);
    }
    w->at_start = outer_at_start;
}

static void seg_pretok(workspace *w, const uint8_t *p, size_t n) { pre_stage(w, 0, p, n, w->at_start); }

static void seg_normalize(workspace *w, const uint8_t *p, size_t n) {
    if (n == 0) return;
    size_t nn;
    const uint8_t *q = normalize(w, &w->t->cfg, p, n, &nn);
    if (w->st) return;
    /* The normaliser's buffers may be reused by nothing below (pre-tokenizer
     * stages have their own), so q stays valid during this call. */
    split_added(w, &w->t->m_norm, q, nn, seg_pretok);
}

/* ---------------------------------------------------------- finalize */

static int build_matcher(matcher *m, const azr_tokenizer *t, int normalized, uint8_t **store) {
    int n = 0;
    for (size_t i = 0; i < t->n_added; i++)
        if (((t->added[i].flags & AZR_ADDED_NORMALIZED) != 0) == normalized) n++;
    m->n = 0;
    m->order = calloc((size_t)n + 1, sizeof(int));
    m->pat = calloc((size_t)n + 1, sizeof(*m->pat));
    m->pat_len = calloc((size_t)n + 1, sizeof(size_t));
    m->tok = calloc((size_t)n + 1, sizeof(int));
    if (!m->order || !m->pat || !m->pat_len || !m->tok) return -1;
    /* normalised contents */
    size_t total = 0;
    int k = 0;
    workspace tmp;
    memset(&tmp, 0, sizeof(tmp));
    bytes_buf store_buf = {0};
    size_t *offs = calloc((size_t)n + 1, sizeof(size_t));
    if (!offs) return -1;
    for (size_t i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        if (((a->flags & AZR_ADDED_NORMALIZED) != 0) != normalized) continue;
        const uint8_t *c = a->content;
        size_t cl = a->len;
        if (normalized) {
            c = normalize(&tmp, &t->cfg, a->content, a->len, &cl);
            if (tmp.st) { free(offs); return -1; }
        }
        offs[k] = store_buf.len;
        if (buf_append(&store_buf, c, cl)) { free(offs); return -1; }
        m->pat_len[k] = cl;
        m->tok[k] = (int)i;
        total += cl;
        k++;
    }
    for (int i = 0; i < 2; i++) free(tmp.nbuf[i].p);
    for (int i = 0; i < k; i++) m->pat[i] = store_buf.p + offs[i];
    free(offs);
    *store = store_buf.p;
    /* drop empty patterns; bucket by first byte, longest first */
    int cnt[257] = {0};
    for (int i = 0; i < k; i++)
        if (m->pat_len[i]) cnt[m->pat[i][0]]++;
    m->first[0] = 0;
    for (int b = 0; b < 256; b++) m->first[b + 1] = m->first[b] + cnt[b];
    int fill[256];
    for (int b = 0; b < 256; b++) fill[b] = m->first[b];
    for (int i = 0; i < k; i++)
        if (m->pat_len[i]) m->order[fill[m->pat[i][0]]++] = i;
    for (int b = 0; b < 256; b++) {
        for (int x = m->first[b] + 1; x < m->first[b + 1]; x++) {
            int v = m->order[x], y = x;
            while (y > m->first[b] && m->pat_len[m->order[y - 1]] < m->pat_len[v]) {
                m->order[y] = m->order[y - 1];
                y--;
            }
            m->order[y] = v;
        }
    }
    m->n = m->first[256];
    (void)total;
    return 0;
}

static void matcher_free(matcher *m) {
    free(m->order); free(m->pat); free(m->pat_len); free(m->tok);
    memset(m, 0, sizeof(*m));
}

static int added_by_id(const void *a, const void *b) {
    const added_tok *x = *(const added_tok *const *)a, *y = *(const added_tok *const *)b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->content, y->content, x->len);
}

static int added_by_content(const void *a, const void *b) {
    const added_tok *x = *(const added_tok *const *)a, *y = *(const added_tok *const *)b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->content, y->content, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

#define SHOWN(len) ((int)((len) > 64 ? 64 : (len)))

/* An added token must agree with the vocabulary and with the other added
 * tokens: one id, one text. Hugging Face `tokenizers` does not keep a file's
 * id for an added token whose content is not the vocabulary's token at that
 * id: it renumbers it (or takes the vocabulary's id for that text), so such a
 * file means something else there; azr refuses it rather than guess. The
 * same content listed twice with the same id is allowed (HF dedups it). */
static azr_status check_added(const azr_tokenizer *t) {
    for (size_t i = 0; i < t->n_added; i++) {
        const added_tok *a = &t->added[i];
        if (t->has_str[a->id] & 1) {
            span v = t->str[a->id];
            if (v.len != a->len || memcmp(t->str_arena.p + v.off, a->content, a->len) != 0)
                return azr_set_error(AZR_ERR_FORMAT,
                                     "added_tokens: token '%.*s' has id %d, which the vocabulary "
                                     "gives to '%.*s'; an added token may share an id only with "
                                     "the same vocabulary token",
                                     SHOWN(a->len), (const char *)a->content, a->id,
                                     SHOWN(v.len), (const char *)(t->str_arena.p + v.off));
        } else {
            int32_t vid = lookup_str(t, a->content, a->len);
            if (vid >= 0)
                return azr_set_error(AZR_ERR_FORMAT,
                                     "added_tokens: token '%.*s' has id %d, but the vocabulary "
                                     "gives it id %d",
                                     SHOWN(a->len), (const char *)a->content, a->id, vid);
        }
    }
    if (t->n_added < 2) return AZR_OK;
    const added_tok **p = malloc(t->n_added * sizeof *p);
    if (!p) return azr_set_error(AZR_ERR_NOMEM, "added_tokens: out of memory");
    for (size_t i = 0; i < t->n_added; i++) p[i] = &t->added[i];
    azr_status st = AZR_OK;
    qsort(p, t->n_added, sizeof *p, added_by_id);
    for (size_t i = 1; i < t->n_added && !st; i++)
        if (p[i]->id == p[i - 1]->id && added_by_id(&p[i], &p[i - 1]) != 0)
            st = azr_set_error(AZR_ERR_FORMAT,
                               "added_tokens: id %d is given to two tokens, '%.*s' and '%.*s'",
                               p[i]->id, SHOWN(p[i - 1]->len), (const char *)p[i - 1]->content,
                               SHOWN(p[i]->len), (const char *)p[i]->content);
    if (!st) {
        qsort(p, t->n_added, sizeof *p, added_by_content);
        for (size_t i = 1; i < t->n_added && !st; i++)
            if (p[i]->len == p[i - 1]->len && p[i]->id != p[i - 1]->id &&
                memcmp(p[i]->content, p[i - 1]->content, p[i]->len) == 0)
                st = azr_set_error(AZR_ERR_FORMAT,
                                   "added_tokens: token '%.*s' appears twice, with ids %d and %d",
                                   SHOWN(p[i]->len), (const char *)p[i]->content, p[i - 1]->id,
                                   p[i]->id);
    }
    free(p);
    return st;
}

azr_status azr_tok_finalize(azr_tokenizer *t) {
    if (!t) return azr_set_error(AZR_ERR_INVALID, "azr_tok_finalize: NULL tokenizer");
    if (t->finalized) return AZR_OK;
    if (t->n_ids == 0) return azr_set_error(AZR_ERR_FORMAT, "tokenizer has an empty vocabulary");
    if (!t->merges && merges_grow(t)) return azr_set_error(AZR_ERR_NOMEM, "merges: out of memory");
    if (t->cfg.unk_id >= t->n_ids || (t->cfg.unk_id >= 0 && !t->has_str[t->cfg.unk_id]))
        return azr_set_error(AZR_ERR_FORMAT, "unk token id %d is not in the vocabulary", t->cfg.unk_id);
    azr_status ast = check_added(t);
    if (ast) return ast;
    /* Decoded bytes of every id: added content overrides the vocab text. */
    const uint8_t *rf = (const uint8_t *)t->cfg.dec_replace_from;
    workspace tmp;
    memset(&tmp, 0, sizeof(tmp));
    for (int32_t id = 0; id < t->n_ids; id++) {
        const uint8_t *s;
        size_t n;
        if (t->has_str[id] & 2) {
            const added_tok *a = NULL;
            for (size_t i = t->n_added; i-- > 0;)
                if (t->added[i].id == id) { a = &t->added[i]; break; }
            s = a->content;
            n = a->len;
            /* HF's id_to_token gives a normalized added token's normalized
             * content, and decoding goes through it. */
            if (a->flags & AZR_ADDED_NORMALIZED) {
                s = normalize(&tmp, &t->cfg, a->content, a->len, &n);
                if (tmp.st) goto dec_nomem;
                /* HF skips a special token when decoding only if that name is
                 * a special token's content: a normalized special token whose
                 * normalized content differs (TinyStories' '\u2581<unk>') is kept. */
                if (n != a->len || memcmp(s, a->content, n) != 0) t->special[id] = 0;
            }
        } else if (t->has_str[id] & 1) {
            s = t->str_arena.p + t->str[id].off;
            n = t->str[id].len;
        } else {
            continue;
        }
        size_t start = t->dec_arena.len;
        if (t->cfg.dec_byte_level) {
            int r = byte_level_decode(s, n, &t->dec_arena);
            if (r < 0) goto dec_nomem;
            if (r == 0 && buf_append(&t->dec_arena, s, n)) goto dec_nomem;
        } else {
            if (t->cfg.dec_byte_fallback) t->byte_val[id] = (int16_t)parse_byte_token(s, n);
            size_t i = 0;
            size_t fl = t->cfg.dec_replace_from_len;
            while (i < n) {
                if (rf && fl && i + fl <= n && memcmp(s + i, rf, fl) == 0) {
                    if (buf_append(&t->dec_arena, t->cfg.dec_replace_to, t->cfg.dec_replace_to_len))
                        goto dec_nomem;
                    i += fl;
                } else {
                    if (buf_append(&t->dec_arena, s + i, 1)) goto dec_nomem;
                    i++;
                }
            }
        }
        t->dec[id] = (span){(uint32_t)start, (uint32_t)(t->dec_arena.len - start)};
    }
    for (int i = 0; i < 2; i++) free(tmp.nbuf[i].p);
    uint8_t *st1 = NULL, *st2 = NULL;
    if (build_matcher(&t->m_raw, t, 0, &st1) || build_matcher(&t->m_norm, t, 1, &st2)) {
        free(st1); free(st2);
        return azr_set_error(AZR_ERR_NOMEM, "added tokens: out of memory");
    }
    /* keep both stores alive: chain them in one allocation list */
    t->norm_content_store = NULL;
    {
        uint8_t **pair = malloc(2 * sizeof(uint8_t *));
        if (!pair) { free(st1); free(st2); return azr_set_error(AZR_ERR_NOMEM, "out of memory"); }
        pair[0] = st1;
        pair[1] = st2;
        t->norm_content_store = (uint8_t *)pair;
    }
    t->finalized = 1;
    return AZR_OK;
dec_nomem:
    for (int i = 0; i < 2; i++) free(tmp.nbuf[i].p);
    return azr_set_error(AZR_ERR_NOMEM, "decoder tables: out of memory");
}

void azr_tok_free(azr_tokenizer *t) {
    if (!t) return;
    free(t->strings.p);
    free(t->has_str); free(t->str); free(t->raw); free(t->dec); free(t->byte_val); free(t->special);
    free(t->str_arena.p); free(t->raw_arena.p); free(t->dec_arena.p);
    map_free(&t->by_str);
    map_free(&t->by_raw);
    free(t->merges);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    if (t->norm_content_store) {
        uint8_t **pair = (uint8_t **)t->norm_content_store;
        free(pair[0]);
        free(pair[1]);
        free(pair);
    }
    matcher_free(&t->m_raw);
    matcher_free(&t->m_norm);
    for (int i = 0; i < POOL_SIZE; i++) ws_free(t->pool[i]);
    free(t);
}

/* ------------------------------------------------------------ encode */

static azr_status encode_with(const azr_tokenizer *t, workspace *w, const char *text, size_t n, int allow_special,
                              azr_tok_ids *out) {
    w->t = t;
    w->out = out;
    w->st = AZR_OK;
    w->allow_special = allow_special;
    w->at_start = 1;
    split_added(w, &t->m_raw, (const uint8_t *)text, n, seg_normalize);
    return w->st;
}

azr_status azr_tok_encode(const azr_tokenizer *t, const char *text, size_t n, int allow_special, azr_tok_ids *out) {
    if (!t || !out || (!text && n)) return azr_set_error(AZR_ERR_INVALID, "azr_tok_encode: NULL argument");
    if (!t->finalized) return azr_set_error(AZR_ERR_STATE, "azr_tok_encode: tokenizer not finalized");
    if (n == 0) return AZR_OK;
    if (!azr_utf8_valid((const uint8_t *)text, n))
        return azr_set_error(AZR_ERR_INVALID, "azr_tok_encode: input is not valid UTF-8");
    int slot;
    workspace *w = ws_acquire(t, &slot);
    if (!w) return azr_set_error(AZR_ERR_NOMEM, "azr_tok_encode: cannot allocate a workspace");
    azr_status st = encode_with(t, w, text, n, allow_special, out);
    ws_release(t, w, slot);
    if (st) return azr_set_error(st, "azr_tok_encode: out of memory while encoding %zu bytes", n);
    return AZR_OK;
}

azr_status azr_tok_encode_batch(const azr_tokenizer *t, const char *const *texts, const size_t *lens, size_t n_texts,
                                int allow_special, azr_tok_ids *outs) {
    if (!t || (n_texts && (!texts || !lens || !outs))) return azr_set_error(AZR_ERR_INVALID, "azr_tok_encode_batch: NULL argument");
    if (!t->finalized) return azr_set_error(AZR_ERR_STATE, "azr_tok_encode_batch: tokenizer not finalized");
    azr_status first = AZR_OK;
    long first_idx = -1;
    int nth = azr_get_num_threads();
    if ((size_t)nth > n_texts) nth = (int)(n_texts ? n_texts : 1);
#pragma omp parallel num_threads(nth)
    {
        int slot;
        workspace *w = ws_acquire(t, &slot);
#pragma omp for schedule(dynamic, 1)
        for (long i = 0; i < (long)n_texts; i++) {
            azr_status st;
            if (!w) st = AZR_ERR_NOMEM;
            else if (lens[i] && !texts[i]) st = AZR_ERR_INVALID;
            else if (!azr_utf8_valid((const uint8_t *)texts[i], lens[i])) st = AZR_ERR_INVALID;
            else st = lens[i] ? encode_with(t, w, texts[i], lens[i], allow_special, &outs[i]) : AZR_OK;
            if (st) {
#pragma omp critical(azr_tok_batch_err)
                if (first_idx < 0 || i < first_idx) { first = st; first_idx = i; }
            }
        }
        if (w) ws_release(t, w, slot);
    }
    if (first != AZR_OK) {
        if (first == AZR_ERR_INVALID)
            return azr_set_error(first, "azr_tok_encode_batch: text %ld is not valid UTF-8", first_idx);
        return azr_set_error(first, "azr_tok_encode_batch: out of memory at text %ld", first_idx);
    }
    return AZR_OK;
}

/* ------------------------------------------------------------ decode */

static int append_replacement(uint8_t **out, size_t *len, size_t *cap, const uint8_t *s, size_t n) {
    if (*len + n > *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        while (nc < *len + n) nc *= 2;
        uint8_t *p = realloc(*out, nc);
        if (!p) return -1;
        *out = p;
        *cap = nc;
    }
    if (n) memcpy(*out + *len, s, n);
    *len += n;
    return 0;
}

static int flush_group(const uint8_t *g, size_t gn, uint8_t **out, size_t *len, size_t *cap) {
    if (gn == 0) return 0;
    if (azr_utf8_valid(g, gn)) return append_replacement(out, len, cap, g, gn);
    static const uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
    for (size_t i = 0; i < gn; i++)
        if (append_replacement(out, len, cap, fffd, 3)) return -1;
    return 0;
}

azr_status azr_tok_decode(const azr_tokenizer *t, const int32_t *ids, size_t n, int skip_special, uint8_t **out,
                          size_t *out_len, size_t *out_cap) {
    if (!t || !out || !out_len || !out_cap || (!ids && n)) return azr_set_error(AZR_ERR_INVALID, "azr_tok_decode: NULL argument");
    if (!t->finalized) return azr_set_error(AZR_ERR_STATE, "azr_tok_decode: tokenizer not finalized");
    size_t base = *out_len;
    uint8_t group[256];
    size_t gn = 0;
    uint8_t *gbig = NULL;
    size_t gbig_len = 0, gbig_cap = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !t->has_str[id]) {
            free(gbig);
            return azr_set_error(AZR_ERR_INVALID, "decode: token id %d at position %zu is not in the vocabulary (size %d)",
                                 id, i, t->n_ids);
        }
        if (skip_special && t->special[id]) continue;
        if (t->byte_val[id] >= 0) {
            uint8_t b = (uint8_t)t->byte_val[id];
            if (gn < sizeof(group)) group[gn++] = b;
            else {
                if (!gbig_len && append_replacement(&gbig, &gbig_len, &gbig_cap, group, gn)) goto nomem;
                if (append_replacement(&gbig, &gbig_len, &gbig_cap, &b, 1)) goto nomem;
            }
            continue;
        }
        if (gn) {
            if (gbig_len ? flush_group(gbig, gbig_len, out, out_len, out_cap) : flush_group(group, gn, out, out_len, out_cap))
                goto nomem;
            gn = 0;
            gbig_len = 0;
        }
        span d = t->dec[id];
        if (append_replacement(out, out_len, out_cap, t->dec_arena.p + d.off, d.len)) goto nomem;
    }
    if (gn) {
        if (gbig_len ? flush_group(gbig, gbig_len, out, out_len, out_cap) : flush_group(group, gn, out, out_len, out_cap))
            goto nomem;
    }
    free(gbig);
    if (!t->cfg.dec_byte_level) {
        int k = 0;
        while (k < t->cfg.dec_strip_start && *out_len > base && (*out)[base] == ' ') {
            memmove(*out + base, *out + base + 1, *out_len - base - 1);
            (*out_len)--;
            k++;
        }
    }
    return AZR_OK;
nomem:
    free(gbig);
    return azr_set_error(AZR_ERR_NOMEM, "decode: out of memory");
}

const uint8_t *azr_tok_token_bytes(const azr_tokenizer *t, int32_t id, size_t *len, int *byte_value, int *is_special) {
    if (!t || !t->finalized || id < 0 || id >= t->n_ids || !t->has_str[id]) return NULL;
    if (len) *len = t->dec[id].len;
    if (byte_value) *byte_value = t->byte_val[id];
    if (is_special) *is_special = t->special[id];
    return t->dec_arena.p + t->dec[id].off;
}

int32_t azr_tok_n_ids(const azr_tokenizer *t) { return t ? t->n_ids : 0; }

azr_status azr_tok_pretokenize(const azr_tokenizer *t, const char *text, size_t n,
                               void (*fn)(void *ctx, size_t start, size_t end), void *ctx) {
    if (!t || !fn || (!text && n)) return azr_set_error(AZR_ERR_INVALID, "azr_tok_pretokenize: NULL argument");
    if (!azr_utf8_valid((const uint8_t *)text, n)) return azr_set_error(AZR_ERR_INVALID, "pretokenize: invalid UTF-8");
    /* Up to two splitting stages (e.g. Digits then GPT-2), prefix-space stages ignored. */
    int stages[AZR_TOK_MAX_STAGES], ns = 0;
    for (int i = 0; i < t->cfg.n_pre; i++)
        if (t->cfg.pre[i] != AZR_PRE_PREFIX_SPACE && t->cfg.pre[i] != AZR_PRE_METASPACE) stages[ns++] = t->cfg.pre[i];
    const uint8_t *s = (const uint8_t *)text;
    if (ns == 0) { if (n) fn(ctx, 0, n); return AZR_OK; }
    /* iterative over stage 0, recursive emulation for stage 1 */
    size_t i = 0;
    while (i < n) {
        size_t e = azr_pretok_next(stages[0], s, n, i);
        if (ns == 1) fn(ctx, i, e);
        else {
            size_t j = 0;
            while (j < e - i) {
                size_t f = azr_pretok_next(stages[1], s + i, e - i, j);
                fn(ctx, i + j, i + f);
                j = f;
            }
        }
        i = e;
    }
    return AZR_OK;
}

const char *azr_unicode_version_str(void) { return azr_unicode_version; }
