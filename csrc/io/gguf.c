/*
 * gguf.c -- GGUF v2/v3 reader: mmap, strict parse, lookups, dequantise.
 *
 * Owns: the parse of the header, metadata and tensor infos, and every
 * validation of them against the file's real size.
 * Must not: trust any count, length or offset before checking it against
 * the bytes that remain; allocate in proportion to a count that the file's
 * size cannot back; print or abort.
 */
#include "gguf.h"
#include "utf8_check.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ARRAY_DEPTH 8

typedef struct {
    const uint8_t *data;
    uint64_t size;
    uint64_t pos;
    const char *path;
} cursor;

static azr_status truncated(const cursor *c, uint64_t need, const char *what) {
    return azr_set_error(AZR_ERR_FORMAT,
                         "%s: truncated GGUF file: %s needs %llu bytes at offset %llu but the file "
                         "has %llu bytes",
                         c->path, what, (unsigned long long)need, (unsigned long long)c->pos,
                         (unsigned long long)c->size);
}

static azr_status take(cursor *c, uint64_t n, const char *what, const uint8_t **p) {
    *p = NULL;
    if (n > c->size - c->pos) return truncated(c, n, what);
    *p = c->data + c->pos;
    c->pos += n;
    return AZR_OK;
}

static azr_status rd_u32(cursor *c, const char *what, uint32_t *v) {
    const uint8_t *p = NULL;
    azr_status st = take(c, 4, what, &p);
    *v = 0;
    if (st == AZR_OK) memcpy(v, p, 4);
    return st;
}

static azr_status rd_u64(cursor *c, const char *what, uint64_t *v) {
    const uint8_t *p = NULL;
    azr_status st = take(c, 8, what, &p);
    *v = 0;
    if (st == AZR_OK) memcpy(v, p, 8);
    return st;
}

/* Read a GGUF string; *s points into the map. */
static azr_status rd_str(cursor *c, const char *what, const uint8_t **s, uint64_t *len) {
    *s = NULL;
    azr_status st = rd_u64(c, what, len);
    if (st != AZR_OK) return st;
    return take(c, *len, what, s);
}

/* NUL-terminated copy of a GGUF string, refusing embedded NULs and bytes
 * that are not UTF-8 (GGUF strings are UTF-8; the names become Python str). */
static azr_status dup_name(cursor *c, const uint8_t *s, uint64_t len, const char *what, char **out) {
    if (memchr(s, 0, len))
        return azr_set_error(AZR_ERR_FORMAT, "%s: %s at offset %llu contains a NUL byte", c->path,
                             what, (unsigned long long)(c->pos - len));
    if (!azr_io_utf8_valid(s, len))
        return azr_set_error(AZR_ERR_FORMAT, "%s: %s at offset %llu is not valid UTF-8", c->path,
                             what, (unsigned long long)(c->pos - len));
    char *d = azr_alloc(len + 1, what);
    if (!d) return AZR_ERR_NOMEM;
    memcpy(d, s, len);
    d[len] = 0;
    *out = d;
    return AZR_OK;
}

size_t azr_gguf_scalar_size(uint32_t t) {
    switch (t) {
    case AZR_GGUF_UINT8: case AZR_GGUF_INT8: case AZR_GGUF_BOOL: return 1;
    case AZR_GGUF_UINT16: case AZR_GGUF_INT16: return 2;
    case AZR_GGUF_UINT32: case AZR_GGUF_INT32: case AZR_GGUF_FLOAT32: return 4;
    case AZR_GGUF_UINT64: case AZR_GGUF_INT64: case AZR_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *azr_gguf_value_type_name(uint32_t t) {
    static const char *names[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32", "float32",
                                  "bool",  "string", "array",  "uint64", "int64",  "float64"};
    return t <= AZR_GGUF_FLOAT64 ? names[t] : "?";
}

/* Decode one scalar at p into kv->v. */
static void decode_scalar(uint32_t t, const uint8_t *p, azr_gguf_kv *kv) {
    switch (t) {
    case AZR_GGUF_UINT8: kv->v.u = p[0]; break;
    case AZR_GGUF_BOOL: kv->v.u = p[0] != 0; break;
    case AZR_GGUF_INT8: kv->v.i = (int8_t)p[0]; break;
    case AZR_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); kv->v.u = x; break; }
    case AZR_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); kv->v.i = x; break; }
    case AZR_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); kv->v.u = x; break; }
    case AZR_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); kv->v.i = x; break; }
    case AZR_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); kv->v.f = x; break; }
    case AZR_GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); kv->v.u = x; break; }
    case AZR_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); kv->v.i = x; break; }
    case AZR_GGUF_FLOAT64: { double x; memcpy(&x, p, 8); kv->v.f = x; break; }
    default: break;
    }
}

/* Skip (and validate) an array body of `count` elements of type `et`;
 * used for nested arrays. */
static azr_status skip_array(cursor *c, const char *key, uint32_t et, uint64_t count, int depth) {
    if (depth > MAX_ARRAY_DEPTH)
        return azr_set_error(AZR_ERR_FORMAT, "%s: metadata '%s' nests arrays deeper than %d", c->path,
                             key, MAX_ARRAY_DEPTH);
    size_t es = azr_gguf_scalar_size(et);
    const uint8_t *p;
    if (es) {
        if (count > (c->size - c->pos) / es) return truncated(c, count > UINT64_MAX / es ? UINT64_MAX : count * es, "array data");
        return take(c, count * es, "array data", &p);
    }
    for (uint64_t i = 0; i < count; i++) {
        azr_status st;
        if (et == AZR_GGUF_STRING) {
            uint64_t len;
            st = rd_str(c, "array string", &p, &len);
        } else if (et == AZR_GGUF_ARRAY) {
            uint32_t inner;
            uint64_t n;
            st = rd_u32(c, "nested array type", &inner);
            if (st == AZR_OK) st = rd_u64(c, "nested array length", &n);
            if (st == AZR_OK && inner > AZR_GGUF_FLOAT64)
                st = azr_set_error(AZR_ERR_FORMAT, "%s: metadata '%s' has an array of unknown value type %u",
                                   c->path, key, (unsigned)inner);
            if (st == AZR_OK) st = skip_array(c, key, inner, n, depth + 1);
        } else {
            st = azr_set_error(AZR_ERR_FORMAT, "%s: metadata '%s' has an array of unknown value type %u",
                               c->path, key, (unsigned)et);
        }
        if (st != AZR_OK) return st;
    }
    return AZR_OK;
}

static azr_status parse_kv(cursor *c, azr_gguf_kv *kv) {
    const uint8_t *s;
    uint64_t len;
    azr_status st = rd_str(c, "metadata key", &s, &len);
    if (st != AZR_OK) return st;
    if (len == 0)
        return azr_set_error(AZR_ERR_FORMAT, "%s: empty metadata key at offset %llu", c->path,
                             (unsigned long long)(c->pos - 8));
    if ((st = dup_name(c, s, len, "metadata key", &kv->key)) != AZR_OK) return st;
    if ((st = rd_u32(c, "metadata value type", &kv->type)) != AZR_OK) return st;
    const uint8_t *p;
    size_t es = azr_gguf_scalar_size(kv->type);
    if (es) {
        kv->count = 1;
        kv->offset = c->pos;
        if ((st = take(c, es, kv->key, &p)) != AZR_OK) return st;
        decode_scalar(kv->type, p, kv);
        return AZR_OK;
    }
    if (kv->type == AZR_GGUF_STRING) {
        if ((st = rd_str(c, kv->key, &p, &kv->count)) != AZR_OK) return st;
        kv->offset = (uint64_t)(p - c->data);
        return AZR_OK;
    }
    if (kv->type != AZR_GGUF_ARRAY)
        return azr_set_error(AZR_ERR_FORMAT, "%s: metadata '%s' has unknown value type %u", c->path,
                             kv->key, (unsigned)kv->type);
    if ((st = rd_u32(c, "array element type", &kv->elem_type)) != AZR_OK) return st;
    if ((st = rd_u64(c, "array length", &kv->count)) != AZR_OK) return st;
    if (kv->elem_type > AZR_GGUF_FLOAT64)
        return azr_set_error(AZR_ERR_FORMAT, "%s: metadata '%s' is an array of unknown value type %u",
                             c->path, kv->key, (unsigned)kv->elem_type);
    kv->offset = c->pos;
    if (kv->elem_type == AZR_GGUF_STRING) {
        /* each element takes at least its 8-byte length */
        if (kv->count > (c->size - c->pos) / 8)
            return truncated(c, kv->count > UINT64_MAX / 8 ? UINT64_MAX : kv->count * 8, kv->key);
        if (kv->count) {
            kv->str_offsets = azr_alloc(kv->count * sizeof(uint64_t), "GGUF string array index");
            if (!kv->str_offsets) return AZR_ERR_NOMEM;
        }
        for (uint64_t i = 0; i < kv->count; i++) {
            kv->str_offsets[i] = c->pos;
            if ((st = rd_str(c, kv->key, &p, &len)) != AZR_OK) return st;
        }
        return AZR_OK;
    }
    return skip_array(c, kv->key, kv->elem_type, kv->count, 1);
}

static azr_status parse_tensor_info(cursor *c, uint64_t index, azr_gguf_tensor *t) {
    const uint8_t *s;
    uint64_t len;
    azr_status st = rd_str(c, "tensor name", &s, &len);
    if (st != AZR_OK) return st;
    if ((st = dup_name(c, s, len, "tensor name", &t->name)) != AZR_OK) return st;
    if ((st = rd_u32(c, "tensor n_dims", &t->n_dims)) != AZR_OK) return st;
    if (t->n_dims < 1 || t->n_dims > AZR_GGUF_MAX_DIMS)
        return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (1 to %d allowed)",
                             c->path, t->name, (unsigned)t->n_dims, AZR_GGUF_MAX_DIMS);
    int64_t n = 1;
    for (int d = 0; d < AZR_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        if ((st = rd_u64(c, "tensor dimension", &v)) != AZR_OK) return st;
        if (v > (uint64_t)INT64_MAX || (v > 0 && n > INT64_MAX / (int64_t)v))
            return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s' dimension %u = %llu overflows", c->path,
                                 t->name, (unsigned)d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
        n *= (int64_t)v;
    }
    t->n_elements = n;
    if ((st = rd_u32(c, "tensor type", &t->type)) != AZR_OK) return st;
    const char *tn = azr_ggml_type_name(t->type);
    if (!tn)
        return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s' has unknown tensor type id %u", c->path,
                             t->name, (unsigned)t->type);
    int64_t be = azr_ggml_block_elems(t->type);
    if (t->ne[0] % be != 0)
        return azr_set_error(AZR_ERR_FORMAT,
                             "%s: tensor '%s' of type %s has rows of %lld elements, not a multiple of "
                             "its block size %lld",
                             c->path, t->name, tn, (long long)t->ne[0], (long long)be);
    int64_t nb = azr_ggml_nbytes(t->type, n);
    if (nb < 0) { /* the message names neither the file nor the tensor: add them */
        char why[256];
        snprintf(why, sizeof why, "%s", azr_last_error());
        return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': %s", c->path, t->name, why);
    }
    t->nbytes = (uint64_t)nb;
    (void)index;
    return rd_u64(c, "tensor offset", &t->offset);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Report the first duplicate among `n` names; `what` is "metadata key" etc. */
static azr_status check_unique(const char *path, char **names, uint64_t n, const char *what) {
    if (n < 2) return AZR_OK;
    char **sorted = azr_alloc(n * sizeof(char *), "GGUF name check");
    if (!sorted) return AZR_ERR_NOMEM;
    memcpy(sorted, names, n * sizeof(char *));
    qsort(sorted, n, sizeof(char *), cmp_str_ptr);
    azr_status st = AZR_OK;
    for (uint64_t i = 1; i < n; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            st = azr_set_error(AZR_ERR_FORMAT, "%s: duplicate %s '%s'", path, what, sorted[i]);
            break;
        }
    azr_free(sorted);
    return st;
}

typedef struct {
    uint64_t start, end;
    const char *name;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

static azr_status validate_tensors(azr_gguf *g) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        azr_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return azr_set_error(AZR_ERR_FORMAT,
                                 "%s: tensor '%s' data offset %llu is not a multiple of the alignment %llu",
                                 g->path, t->name, (unsigned long long)t->offset,
                                 (unsigned long long)g->alignment);
        uint64_t room = g->size >= g->data_offset ? g->size - g->data_offset : 0;
        if (t->offset > room || t->nbytes > room - t->offset)
            return azr_set_error(AZR_ERR_FORMAT,
                                 "%s: tensor '%s' (%s, %llu bytes at data offset %llu) extends past the end "
                                 "of the file (%llu bytes of tensor data): the file is truncated or the "
                                 "offset is wrong",
                                 g->path, t->name, azr_ggml_type_name(t->type),
                                 (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                                 (unsigned long long)room);
        t->offset += g->data_offset;
    }
    if (g->n_tensors < 2) return AZR_OK;
    span *sp = azr_alloc(g->n_tensors * sizeof(span), "GGUF overlap check");
    if (!sp) return AZR_ERR_NOMEM;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        sp[i] = (span){g->tensors[i].offset, g->tensors[i].offset + g->tensors[i].nbytes,
                       g->tensors[i].name};
    qsort(sp, g->n_tensors, sizeof(span), cmp_span);
    azr_status st = AZR_OK;
    for (uint64_t i = 1; i < g->n_tensors; i++)
        if (sp[i].start < sp[i - 1].end && sp[i].start != sp[i].end) {
            st = azr_set_error(AZR_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section",
                               g->path, sp[i - 1].name, sp[i].name);
            break;
        }
    azr_free(sp);
    return st;
}

static azr_status parse(azr_gguf *g) {
    cursor c = {g->data, g->size, 0, g->path};
    const uint8_t *magic;
    azr_status st = take(&c, 4, "the magic bytes", &magic);
    if (st != AZR_OK) return st;
    if (memcmp(magic, "GGUF", 4) != 0) {
        char shown[5];
        for (int i = 0; i < 4; i++) shown[i] = (magic[i] >= 32 && magic[i] < 127) ? (char)magic[i] : '?';
        shown[4] = 0;
        return azr_set_error(AZR_ERR_FORMAT,
                             "%s: not a GGUF file: wrong magic '%s' (bytes %02x %02x %02x %02x), "
                             "expected 'GGUF'",
                             g->path, shown, magic[0], magic[1], magic[2], magic[3]);
    }
    if ((st = rd_u32(&c, "the version", &g->version)) != AZR_OK) return st;
    if (g->version == 0x02000000u || g->version == 0x03000000u)
        return azr_set_error(AZR_ERR_UNSUPPORTED, "%s: big-endian GGUF files are not supported", g->path);
    if (g->version == 1)
        return azr_set_error(AZR_ERR_UNSUPPORTED,
                             "%s: GGUF version 1 is not supported (only 2 and 3): re-convert the model "
                             "with a current llama.cpp",
                             g->path);
    if (g->version != 2 && g->version != 3)
        return azr_set_error(AZR_ERR_UNSUPPORTED, "%s: unsupported GGUF version %u (azr reads 2 and 3)",
                             g->path, (unsigned)g->version);
    if ((st = rd_u64(&c, "the tensor count", &g->n_tensors)) != AZR_OK) return st;
    if ((st = rd_u64(&c, "the metadata count", &g->n_kv)) != AZR_OK) return st;
    /* Each entry occupies at least 13 bytes (key length, type, 1-byte value);
     * each tensor info at least 32. Larger counts cannot fit in the file. */
    uint64_t rest = g->size - c.pos;
    if (g->n_kv > rest / 13)
        return azr_set_error(AZR_ERR_FORMAT,
                             "%s: header claims %llu metadata entries, more than the %llu remaining "
                             "bytes can hold (truncated or corrupt file)",
                             g->path, (unsigned long long)g->n_kv, (unsigned long long)rest);
    if (g->n_tensors > rest / 32)
        return azr_set_error(AZR_ERR_FORMAT,
                             "%s: header claims %llu tensors, more than the %llu remaining bytes can "
                             "hold (truncated or corrupt file)",
                             g->path, (unsigned long long)g->n_tensors, (unsigned long long)rest);
    if (g->n_kv) {
        g->kv = azr_calloc(g->n_kv * sizeof(azr_gguf_kv), "GGUF metadata");
        if (!g->kv) return AZR_ERR_NOMEM;
    }
    uint64_t parsed_kv = 0;
    for (; parsed_kv < g->n_kv; parsed_kv++) {
        st = parse_kv(&c, &g->kv[parsed_kv]);
        if (st != AZR_OK) return st;
    }
    {
        char **keys = g->n_kv ? azr_alloc(g->n_kv * sizeof(char *), "GGUF keys") : NULL;
        if (g->n_kv && !keys) return AZR_ERR_NOMEM;
        for (uint64_t i = 0; i < g->n_kv; i++) keys[i] = g->kv[i].key;
        st = check_unique(g->path, keys, g->n_kv, "metadata key");
        azr_free(keys);
        if (st != AZR_OK) return st;
    }
    g->alignment = AZR_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = azr_gguf_find_kv(g, "general.alignment");
    if (ai >= 0) {
        const azr_gguf_kv *a = &g->kv[ai];
        if (a->type != AZR_GGUF_UINT32)
            return azr_set_error(AZR_ERR_FORMAT, "%s: general.alignment has type %s, expected uint32",
                                 g->path, azr_gguf_value_type_name(a->type));
        if (a->v.u == 0 || (a->v.u & (a->v.u - 1)) != 0)
            return azr_set_error(AZR_ERR_FORMAT, "%s: general.alignment = %llu is not a power of two",
                                 g->path, (unsigned long long)a->v.u);
        g->alignment = a->v.u;
    }
    if (g->n_tensors) {
        g->tensors = azr_calloc(g->n_tensors * sizeof(azr_gguf_tensor), "GGUF tensor infos");
        if (!g->tensors) return AZR_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((st = parse_tensor_info(&c, i, &g->tensors[i])) != AZR_OK) return st;
    {
        char **names = g->n_tensors ? azr_alloc(g->n_tensors * sizeof(char *), "GGUF names") : NULL;
        if (g->n_tensors && !names) return AZR_ERR_NOMEM;
        for (uint64_t i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
        st = check_unique(g->path, names, g->n_tensors, "tensor name");
        azr_free(names);
        if (st != AZR_OK) return st;
    }
    g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    return validate_tensors(g);
}

static void free_contents(azr_gguf *g) {
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) {
            azr_free(g->kv[i].key);
            azr_free(g->kv[i].str_offsets);
        }
    azr_free(g->kv);
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++) azr_free(g->tensors[i].name);
    azr_free(g->tensors);
    if (g->data) munmap((void *)g->data, g->size);
    azr_free(g->path);
}

azr_status azr_gguf_open(const char *path, azr_gguf **out) {
    if (!out) return azr_set_error(AZR_ERR_INVALID, "azr_gguf_open: NULL output pointer");
    *out = NULL;
    if (!path) return azr_set_error(AZR_ERR_INVALID, "azr_gguf_open: NULL path");
    azr_gguf *g = azr_calloc(sizeof(azr_gguf), "GGUF reader");
    if (!g) return AZR_ERR_NOMEM;
    size_t plen = strlen(path);
    g->path = azr_alloc(plen + 1, "GGUF path");
    if (!g->path) {
        azr_free(g);
        return AZR_ERR_NOMEM;
    }
    memcpy(g->path, path, plen + 1);
    azr_status st = AZR_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = azr_set_error(AZR_ERR_IO, "cannot open GGUF file %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = azr_set_error(AZR_ERR_IO, "%s is not a regular file", path);
        close(fd);
        goto fail;
    }
    g->size = (size_t)sb.st_size;
    if (g->size == 0) {
        close(fd);
        st = azr_set_error(AZR_ERR_FORMAT, "%s: truncated GGUF file: the file is empty", path);
        goto fail;
    }
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        st = azr_set_error(AZR_ERR_IO, "cannot map GGUF file %s: %s", path, strerror(errno));
        goto fail;
    }
    g->data = m;
    st = parse(g);
    if (st != AZR_OK) goto fail;
    *out = g;
    return AZR_OK;
fail:
    free_contents(g);
    azr_free(g);
    return st;
}

void azr_gguf_close(azr_gguf *g) {
    if (!g) return;
    free_contents(g);
    azr_free(g);
}

int64_t azr_gguf_find_kv(const azr_gguf *g, const char *key) {
    if (!g || !key) return -1;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return (int64_t)i;
    return -1;
}

int64_t azr_gguf_find_tensor(const azr_gguf *g, const char *name) {
    if (!g || !name) return -1;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return (int64_t)i;
    return -1;
}

static const azr_gguf_kv *kv_at(const azr_gguf *g, int64_t idx) {
    if (!g || idx < 0 || (uint64_t)idx >= g->n_kv) {
        azr_set_error(AZR_ERR_INVALID, "GGUF metadata index %lld out of range", (long long)idx);
        return NULL;
    }
    return &g->kv[idx];
}

azr_status azr_gguf_get_string(const azr_gguf *g, int64_t idx, const char **p, uint64_t *len) {
    const azr_gguf_kv *kv = kv_at(g, idx);
    if (!kv) return AZR_ERR_INVALID;
    if (!p || !len) return azr_set_error(AZR_ERR_INVALID, "azr_gguf_get_string: NULL output");
    if (kv->type != AZR_GGUF_STRING)
        return azr_set_error(AZR_ERR_INVALID, "GGUF metadata '%s' is a %s, not a string", kv->key,
                             azr_gguf_value_type_name(kv->type));
    *p = (const char *)g->data + kv->offset;
    *len = kv->count;
    return AZR_OK;
}

azr_status azr_gguf_get_array_string(const azr_gguf *g, int64_t idx, uint64_t i, const char **p,
                                     uint64_t *len) {
    const azr_gguf_kv *kv = kv_at(g, idx);
    if (!kv) return AZR_ERR_INVALID;
    if (!p || !len) return azr_set_error(AZR_ERR_INVALID, "azr_gguf_get_array_string: NULL output");
    if (kv->type != AZR_GGUF_ARRAY || kv->elem_type != AZR_GGUF_STRING)
        return azr_set_error(AZR_ERR_INVALID, "GGUF metadata '%s' is not an array of strings", kv->key);
    if (i >= kv->count)
        return azr_set_error(AZR_ERR_INVALID, "GGUF metadata '%s': index %llu out of range (%llu elements)",
                             kv->key, (unsigned long long)i, (unsigned long long)kv->count);
    uint64_t off = kv->str_offsets[i], n;
    memcpy(&n, g->data + off, 8);
    *p = (const char *)g->data + off + 8;
    *len = n;
    return AZR_OK;
}

azr_status azr_gguf_get_array_data(const azr_gguf *g, int64_t idx, const void **p, size_t *elem_size) {
    const azr_gguf_kv *kv = kv_at(g, idx);
    if (!kv) return AZR_ERR_INVALID;
    if (!p || !elem_size) return azr_set_error(AZR_ERR_INVALID, "azr_gguf_get_array_data: NULL output");
    size_t es = kv->type == AZR_GGUF_ARRAY ? azr_gguf_scalar_size(kv->elem_type) : 0;
    if (!es)
        return azr_set_error(AZR_ERR_INVALID, "GGUF metadata '%s' is not an array of numbers or bools",
                             kv->key);
    *p = g->data + kv->offset;
    *elem_size = es;
    return AZR_OK;
}

azr_status azr_gguf_dequantize(const azr_gguf *g, int64_t idx, float *dst, int64_t n) {
    if (!g || idx < 0 || (uint64_t)idx >= g->n_tensors)
        return azr_set_error(AZR_ERR_INVALID, "GGUF tensor index %lld out of range", (long long)idx);
    const azr_gguf_tensor *t = &g->tensors[idx];
    if (n != t->n_elements)
        return azr_set_error(AZR_ERR_INVALID, "tensor '%s' has %lld elements, the destination holds %lld",
                             t->name, (long long)t->n_elements, (long long)n);
    if (!azr_ggml_can_dequantize(t->type))
        return azr_set_error(AZR_ERR_UNSUPPORTED,
                             "%s: tensor '%s' has type %s, which azr cannot dequantize (supported: F32, "
                             "F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K, Q8_K)",
                             g->path, t->name, azr_ggml_type_name(t->type));
    return azr_dequantize(t->type, g->data + t->offset, (size_t)t->nbytes, dst, n);
}
