/*
 * safetensors.c -- mmap reader with strict header validation, and a writer.
 * See safetensors.h for the format and the checks.
 * Owns: the JSON subset of safetensors headers (objects, strings with
 * escapes, non-negative integers, arrays of them). Must not: print, abort,
 * read outside the mapping, or trust any number from the file before
 * checking it.
 */
#include "safetensors.h"
#include "utf8_check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u * 1024u * 1024u)

float azr_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float azr_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- a strict little JSON reader over [p, end) --------------------------- */

typedef struct {
    const char *p, *end;
    const char *path;
} jp;

static void ws(jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static azr_status jerr(jp *j, const char *what) {
    return azr_set_error(AZR_ERR_FORMAT, "%s: malformed safetensors header: %s", j->path, what);
}

static azr_status expect(jp *j, char c, const char *what) {
    ws(j);
    if (j->p >= j->end || *j->p != c) return jerr(j, what);
    j->p++;
    return AZR_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parse a JSON string into a new NUL-terminated UTF-8 buffer. `what` names
 * the string in errors ("tensor name", ...). Refused like the reference
 * library refuses them: bytes that are not UTF-8 and lone UTF-16 surrogates
 * in \u escapes; refused because azr keeps names as C strings (the reference
 * accepts it): a NUL character (\u0000), which would cut the name. */
static azr_status jstring(jp *j, char **out, const char *what) {
    *out = NULL;
    ws(j);
    if (j->p >= j->end || *j->p != '"') return jerr(j, "expected a string");
    j->p++;
    const char *s = j->p;
    size_t cap = 16;
    while (s < j->end && *s != '"') {
        if (*s == '\\') s++;
        s++;
        cap += 4;
    }
    if (s >= j->end) return jerr(j, "unterminated string");
    char *buf = malloc(cap);
    if (!buf) return azr_set_error(AZR_ERR_NOMEM, "%s: out of memory parsing header", j->path);
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p++;
        if (c < 0x20) {
            free(buf);
            return jerr(j, "control character in a string");
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            continue;
        }
        if (j->p >= j->end) break;
        char e = *j->p++;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            if (j->end - j->p < 4) {
                free(buf);
                return jerr(j, "truncated \\u escape");
            }
            unsigned cp = 0;
            for (int k = 0; k < 4; k++) {
                int h = hexval(j->p[k]);
                if (h < 0) {
                    free(buf);
                    return jerr(j, "bad \\u escape");
                }
                cp = cp * 16 + (unsigned)h;
            }
            j->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
                j->p[1] == 'u') {
                unsigned lo = 0;
                int ok = 1;
                for (int k = 0; k < 4; k++) {
                    int h = hexval(j->p[2 + k]);
                    if (h < 0) ok = 0;
                    lo = lo * 16 + (unsigned)(h < 0 ? 0 : h);
                }
                if (ok && lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    j->p += 6;
                }
            }
            if (cp >= 0xD800 && cp < 0xE000) {
                free(buf);
                return azr_set_error(AZR_ERR_FORMAT,
                                     "%s: malformed safetensors header: a %s has a lone UTF-16 "
                                     "surrogate \\u%04X (not a character)", j->path, what, cp);
            }
            if (cp == 0) {
                buf[n] = '\0';
                azr_set_error(AZR_ERR_FORMAT,
                              "%s: malformed safetensors header: the %s '%.80s' is followed by a "
                              "NUL character (\\u0000); azr refuses NUL in header strings",
                              j->path, what, buf);
                free(buf);
                return AZR_ERR_FORMAT;
            }
            if (cp < 0x80) {
                buf[n++] = (char)cp;
            } else if (cp < 0x800) {
                buf[n++] = (char)(0xC0 | (cp >> 6));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[n++] = (char)(0xE0 | (cp >> 12));
                buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[n++] = (char)(0xF0 | (cp >> 18));
                buf[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[n++] = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default: free(buf); return jerr(j, "bad escape in a string");
        }
    }
    if (j->p >= j->end) {
        free(buf);
        return jerr(j, "unterminated string");
    }
    j->p++; /* closing quote */
    buf[n] = '\0';
    if (!azr_io_utf8_valid((const unsigned char *)buf, n)) {
        free(buf);
        return azr_set_error(AZR_ERR_FORMAT,
                             "%s: malformed safetensors header: a %s is not valid UTF-8", j->path,
                             what);
    }
    *out = buf;
    return AZR_OK;
}

/* A non-negative integer that fits in 2^62. */
static azr_status juint(jp *j, uint64_t *out, const char *tensor, const char *field) {
    ws(j);
    if (j->p >= j->end || *j->p < '0' || *j->p > '9')
        return azr_set_error(AZR_ERR_FORMAT,
                             "%s: tensor '%s': field '%s' must hold non-negative integers",
                             j->path, tensor, field);
    uint64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        uint64_t d = (uint64_t)(*j->p - '0');
        if (v > ((((uint64_t)1 << 62) - d) / 10)) /* checked before it can wrap */
            return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': field '%s' is too large",
                                 j->path, tensor, field);
        v = v * 10 + d;
        j->p++;
    }
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': field '%s' must be integers",
                             j->path, tensor, field);
    *out = v;
    return AZR_OK;
}

/* Array of up to maxn integers; count in *n. */
static azr_status juint_array(jp *j, uint64_t *vals, int maxn, int *n, const char *tensor,
                              const char *field) {
    *n = 0;
    ws(j);
    if (j->p >= j->end || *j->p != '[')
        return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': field '%s' must be an array",
                             j->path, tensor, field);
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return AZR_OK;
    }
    for (;;) {
        if (*n >= maxn)
            return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': field '%s' has more than %d entries",
                                 j->path, tensor, field, maxn);
        azr_status st = juint(j, &vals[*n], tensor, field);
        if (st) return st;
        (*n)++;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return AZR_OK;
        }
        return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': field '%s' is not a valid array",
                             j->path, tensor, field);
    }
}

static int dtype_of(const char *s, int *size) {
    static const struct { const char *n; int sz; int dt; } tab[] = {
        {"F32", 4, AZR_DT_F32}, {"F16", 2, AZR_DT_F16}, {"BF16", 2, AZR_DT_BF16},
        {"F64", 8, AZR_DT_OTHER}, {"I64", 8, AZR_DT_OTHER}, {"I32", 4, AZR_DT_OTHER},
        {"I16", 2, AZR_DT_OTHER}, {"I8", 1, AZR_DT_OTHER}, {"U8", 1, AZR_DT_OTHER},
        {"U16", 2, AZR_DT_OTHER}, {"U32", 4, AZR_DT_OTHER}, {"U64", 8, AZR_DT_OTHER},
        {"BOOL", 1, AZR_DT_OTHER}, {"F8_E4M3", 1, AZR_DT_OTHER}, {"F8_E5M2", 1, AZR_DT_OTHER}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].n) == 0) {
            *size = tab[i].sz;
            return tab[i].dt;
        }
    return -1;
}

static void free_tensors(azr_st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    f->meta_keys = f->meta_values = NULL;
    f->n_meta = 0;
}

void azr_st_close(azr_st_file *f) {
    if (!f) return;
    free_tensors(f);
    if (f->map && f->map != MAP_FAILED) munmap(f->map, f->map_size);
    if (f->fd >= 0) close(f->fd);
    free(f->path);
    free(f);
}

static azr_status parse_metadata(jp *j, azr_st_file *f) {
    azr_status st = expect(j, '{', "__metadata__ must be an object");
    if (st) return st;
    ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return AZR_OK;
    }
    for (;;) {
        char *k = NULL, *v = NULL;
        if ((st = jstring(j, &k, "__metadata__ key"))) return st;
        if ((st = expect(j, ':', "expected ':' in __metadata__"))) {
            free(k);
            return st;
        }
        ws(j);
        if (j->p >= j->end || *j->p != '"') {
            azr_set_error(AZR_ERR_FORMAT, "%s: __metadata__ value of '%.80s' must be a string",
                          f->path, k);
            free(k);
            return AZR_ERR_FORMAT;
        }
        if ((st = jstring(j, &v, "__metadata__ value"))) {
            free(k);
            return st;
        }
        char **nk = realloc(f->meta_keys, (size_t)(f->n_meta + 1) * sizeof(char *));
        if (nk) f->meta_keys = nk;
        char **nv = realloc(f->meta_values, (size_t)(f->n_meta + 1) * sizeof(char *));
        if (nv) f->meta_values = nv;
        if (!nk || !nv) {
            free(k);
            free(v);
            return azr_set_error(AZR_ERR_NOMEM, "%s: out of memory", f->path);
        }
        f->meta_keys[f->n_meta] = k;
        f->meta_values[f->n_meta] = v;
        f->n_meta++;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return expect(j, '}', "expected '}' closing __metadata__");
    }
}

static azr_status parse_entry(jp *j, azr_st_file *f, azr_st_tensor *t) {
    azr_status st = expect(j, '{', "a tensor entry must be an object");
    if (st) return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': entry must be an object",
                                 f->path, t->name);
    int have_dtype = 0, have_shape = 0, have_off = 0;
    ws(j);
    if (j->p < j->end && *j->p == '}') j->p++;
    else
        for (;;) {
            char *key = NULL;
            if ((st = jstring(j, &key, "tensor field name"))) return st;
            if ((st = expect(j, ':', "expected ':'"))) {
                free(key);
                return st;
            }
            if (strcmp(key, "dtype") == 0) {
                char *dt = NULL;
                ws(j);
                if (j->p >= j->end || *j->p != '"') {
                    free(key);
                    return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': dtype must be a string",
                                         f->path, t->name);
                }
                if ((st = jstring(j, &dt, "dtype"))) {
                    free(key);
                    return st;
                }
                int sz = 0, code = dtype_of(dt, &sz);
                if (code < 0) {
                    azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.16s'",
                                  f->path, t->name, dt);
                    free(dt);
                    free(key);
                    return AZR_ERR_FORMAT;
                }
                t->dtype = (azr_dtype)code;
                snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt);
                free(dt);
                have_dtype = 1;
            } else if (strcmp(key, "shape") == 0) {
                uint64_t v[AZR_ST_MAX_DIMS];
                int n = 0;
                if ((st = juint_array(j, v, AZR_ST_MAX_DIMS, &n, t->name, "shape"))) {
                    free(key);
                    return st;
                }
                t->ndim = n;
                for (int i = 0; i < n; i++) t->shape[i] = (int64_t)v[i];
                have_shape = 1;
            } else if (strcmp(key, "data_offsets") == 0) {
                uint64_t v[2];
                int n = 0;
                if ((st = juint_array(j, v, 2, &n, t->name, "data_offsets"))) {
                    free(key);
                    return st;
                }
                if (n != 2) {
                    free(key);
                    return azr_set_error(AZR_ERR_FORMAT,
                                         "%s: tensor '%s': data_offsets must be [begin, end]",
                                         f->path, t->name);
                }
                t->begin = v[0];
                t->end = v[1];
                have_off = 1;
            } else {
                azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': unexpected field '%.40s'", f->path,
                              t->name, key);
                free(key);
                return AZR_ERR_FORMAT;
            }
            free(key);
            ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if ((st = expect(j, '}', "expected '}' closing a tensor entry"))) return st;
            break;
        }
    if (!have_dtype || !have_shape || !have_off)
        return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': missing field '%s'", f->path,
                             t->name, !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return AZR_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const azr_st_tensor *x = *(const azr_st_tensor *const *)a, *y = *(const azr_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

static azr_status validate(azr_st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) {
        azr_st_tensor *t = &f->tensors[i];
        int sz = 0;
        dtype_of(t->dtype_name, &sz);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t s = (uint64_t)t->shape[d];
            if (s != 0 && numel > (((uint64_t)1 << 62) / s))
                return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s': shape is too large",
                                     f->path, t->name);
            numel *= s;
        }
        t->numel = (int64_t)numel;
        if (sz > 0 && numel > (((uint64_t)1 << 62) / (uint64_t)sz))
            return azr_set_error(AZR_ERR_FORMAT,
                                 "%s: tensor '%s': shape has %llu elements of %d bytes (dtype %s): "
                                 "the byte size overflows",
                                 f->path, t->name, (unsigned long long)numel, sz, t->dtype_name);
        if (t->begin > t->end)
            return azr_set_error(AZR_ERR_FORMAT,
                                 "%s: tensor '%s': data_offsets begin %llu is after end %llu",
                                 f->path, t->name, (unsigned long long)t->begin,
                                 (unsigned long long)t->end);
        if (t->end > f->data_size)
            return azr_set_error(AZR_ERR_FORMAT,
                                 "%s: tensor '%s': data_offsets end %llu is past the end of the "
                                 "data (%llu bytes; file truncated or header wrong)",
                                 f->path, t->name, (unsigned long long)t->end,
                                 (unsigned long long)f->data_size);
        if (t->end - t->begin != numel * (uint64_t)sz)
            return azr_set_error(AZR_ERR_FORMAT,
                                 "%s: tensor '%s': data_offsets span %llu bytes but shape and "
                                 "dtype %s need %llu",
                                 f->path, t->name, (unsigned long long)(t->end - t->begin),
                                 t->dtype_name, (unsigned long long)(numel * (uint64_t)sz));
    }
    /* Like the reference library: in offset order, each tensor starts where
     * the previous one ends (the first at 0), and the last one ends at the end
     * of the file: no overlaps, no gaps, no trailing bytes. */
    uint64_t covered = 0;
    if (f->n_tensors > 0) {
        azr_st_tensor **order = malloc((size_t)f->n_tensors * sizeof *order);
        if (!order) return azr_set_error(AZR_ERR_NOMEM, "%s: out of memory", f->path);
        for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
        qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_begin);
        for (int i = 1; i < f->n_tensors; i++) {
            if (order[i]->begin < order[i - 1]->end) {
                azr_set_error(AZR_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap", f->path,
                              order[i - 1]->name, order[i]->name);
                free(order);
                return AZR_ERR_FORMAT;
            }
        }
        for (int i = 0; i < f->n_tensors; i++) {
            if (order[i]->begin != covered) {
                azr_set_error(AZR_ERR_FORMAT,
                              "%s: tensor '%s': data_offsets begin %llu leaves a gap of %llu bytes "
                              "after %s (the data section must be packed)",
                              f->path, order[i]->name, (unsigned long long)order[i]->begin,
                              (unsigned long long)(order[i]->begin - covered),
                              i ? "the previous tensor" : "the header");
                free(order);
                return AZR_ERR_FORMAT;
            }
            covered = order[i]->end;
        }
        free(order);
    }
    if (covered != f->data_size)
        return azr_set_error(AZR_ERR_FORMAT,
                             "%s: %llu trailing bytes after the last tensor's data_offsets end "
                             "(%llu; the data section is %llu bytes)",
                             f->path, (unsigned long long)(f->data_size - covered),
                             (unsigned long long)covered, (unsigned long long)f->data_size);
    if (f->n_tensors > 1) {
        /* unique names: sort a copy of pointers by name */
        for (int i = 0; i < f->n_tensors; i++)
            for (int k = i + 1; k < f->n_tensors && f->n_tensors <= 4096; k++)
                if (strcmp(f->tensors[i].name, f->tensors[k].name) == 0)
                    return azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s' appears twice", f->path,
                                         f->tensors[i].name);
    }
    return AZR_OK;
}

static azr_status parse_header(azr_st_file *f, const char *h, size_t hlen) {
    jp j = {h, h + hlen, f->path};
    azr_status st = expect(&j, '{', "the header must be a JSON object");
    if (st) return st;
    ws(&j);
    if (j.p < j.end && *j.p == '}') {
        j.p++;
    } else {
        int cap = 0;
        for (;;) {
            char *name = NULL;
            if ((st = jstring(&j, &name, "tensor name"))) return st;
            if ((st = expect(&j, ':', "expected ':' after a tensor name"))) {
                free(name);
                return st;
            }
            if (strcmp(name, "__metadata__") == 0) {
                free(name);
                if ((st = parse_metadata(&j, f))) return st;
            } else {
                if (f->n_tensors == cap) {
                    int ncap = cap ? cap * 2 : 64;
                    azr_st_tensor *nt = realloc(f->tensors, (size_t)ncap * sizeof *nt);
                    if (!nt) {
                        free(name);
                        return azr_set_error(AZR_ERR_NOMEM, "%s: out of memory", f->path);
                    }
                    f->tensors = nt;
                    cap = ncap;
                }
                azr_st_tensor *t = &f->tensors[f->n_tensors++];
                memset(t, 0, sizeof *t);
                t->name = name;
                if ((st = parse_entry(&j, f, t))) return st;
            }
            ws(&j);
            if (j.p < j.end && *j.p == ',') {
                j.p++;
                continue;
            }
            if ((st = expect(&j, '}', "expected ',' or '}' between tensors"))) return st;
            break;
        }
    }
    ws(&j);
    if (j.p != j.end) return jerr(&j, "trailing bytes after the JSON object");
    return validate(f);
}

azr_status azr_st_open(const char *path, azr_st_file **out) {
    if (!out) return azr_set_error(AZR_ERR_INVALID, "azr_st_open: NULL output pointer");
    *out = NULL;
    if (!path) return azr_set_error(AZR_ERR_INVALID, "azr_st_open: NULL path");
    azr_st_file *f = calloc(1, sizeof *f);
    if (!f) return azr_set_error(AZR_ERR_NOMEM, "out of memory opening %s", path);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        return azr_set_error(AZR_ERR_NOMEM, "out of memory opening %s", path);
    }
    azr_status st = AZR_OK;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        st = azr_set_error(AZR_ERR_IO, "cannot open safetensors file %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = azr_set_error(AZR_ERR_IO, "%s is not a regular file", path);
        goto fail;
    }
    if (sb.st_size < 8) {
        st = azr_set_error(AZR_ERR_FORMAT,
                           "%s: file is %lld bytes, too short for a safetensors header (truncated?)",
                           path, (long long)sb.st_size);
        goto fail;
    }
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, f->fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        st = azr_set_error(AZR_ERR_IO, "cannot mmap %s: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    if (hlen > ST_MAX_HEADER || hlen > (uint64_t)f->map_size - 8) {
        st = azr_set_error(AZR_ERR_FORMAT,
                           "%s: header length %llu does not fit in the file (%zu bytes; truncated "
                           "or not a safetensors file)",
                           path, (unsigned long long)hlen, f->map_size);
        goto fail;
    }
    f->data = f->map + 8 + hlen;
    f->data_size = (uint64_t)f->map_size - 8 - hlen;
    if ((st = parse_header(f, (const char *)f->map + 8, (size_t)hlen))) goto fail;
    *out = f;
    return AZR_OK;
fail:
    azr_st_close(f);
    return st;
}

int azr_st_find(const azr_st_file *f, const char *name) {
    if (!f || !name) return -1;
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return i;
    return -1;
}

const char *azr_st_meta(const azr_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

azr_status azr_st_read_f32(const azr_st_file *f, int idx, float *out) {
    if (!f || idx < 0 || idx >= f->n_tensors)
        return azr_set_error(AZR_ERR_INVALID, "azr_st_read_f32: bad tensor index %d", idx);
    const azr_st_tensor *t = &f->tensors[idx];
    const unsigned char *src = f->data + t->begin;
    int64_t n = t->numel;
    if (n == 0) return AZR_OK;
    if (!out) return azr_set_error(AZR_ERR_INVALID, "azr_st_read_f32: NULL output");
    switch (t->dtype) {
    case AZR_DT_F32: memcpy(out, src, (size_t)n * 4); break;
    case AZR_DT_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = azr_f16_to_f32(h);
        }
        break;
    case AZR_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = azr_bf16_to_f32(h);
        }
        break;
    default:
        return azr_set_error(AZR_ERR_UNSUPPORTED,
                             "%s: tensor '%s' has dtype %s; azr reads F32, F16 and BF16", f->path,
                             t->name, t->dtype_name);
    }
    return AZR_OK;
}

/* ---- writer ---------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 4096);
        while (nc < b->n + n + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            sb_put(b, tmp, 2);
        } else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            sb_put(b, tmp, 6);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

azr_status azr_st_write(const char *path, int n, const char *const *names, const int *ndims,
                        const int64_t *const *shapes, const float *const *data, int n_meta,
                        const char *const *meta_keys, const char *const *meta_values) {
    if (!path || n < 0 || (n > 0 && (!names || !ndims || !shapes || !data)))
        return azr_set_error(AZR_ERR_INVALID, "azr_st_write: NULL argument");
    sbuf b = {0};
    sb_str(&b, "{");
    if (n_meta > 0) {
        sb_str(&b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(&b, ",");
            sb_json(&b, meta_keys[i]);
            sb_str(&b, ":");
            sb_json(&b, meta_values[i]);
        }
        sb_str(&b, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (ndims[i] < 0 || ndims[i] > AZR_ST_MAX_DIMS) {
            free(b.s);
            return azr_set_error(AZR_ERR_INVALID, "azr_st_write: tensor '%s' has %d dims",
                                 names[i], ndims[i]);
        }
        uint64_t numel = 1;
        char tmp[64];
        if (i || n_meta > 0) sb_str(&b, ",");
        sb_json(&b, names[i]);
        sb_str(&b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < ndims[i]; d++) {
            snprintf(tmp, sizeof tmp, "%s%lld", d ? "," : "", (long long)shapes[i][d]);
            sb_str(&b, tmp);
            numel *= (uint64_t)shapes[i][d];
        }
        snprintf(tmp, sizeof tmp, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + 4 * numel));
        sb_str(&b, tmp);
        off += 4 * numel;
    }
    sb_str(&b, "}");
    while (!b.oom && b.n % 8) sb_str(&b, " ");
    if (b.oom) {
        free(b.s);
        return azr_set_error(AZR_ERR_NOMEM, "out of memory writing the header of %s", path);
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(b.s);
        return azr_set_error(AZR_ERR_NOMEM, "out of memory writing %s", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        azr_status st = azr_set_error(AZR_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
        free(b.s);
        free(tmp);
        return st;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)b.n >> (8 * i)) & 0xFF);
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(b.s, 1, b.n, fp) == b.n;
    for (int i = 0; ok && i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) numel *= (uint64_t)shapes[i][d];
        if (numel && fwrite(data[i], 4, (size_t)numel, fp) != numel) ok = 0;
    }
    if (fclose(fp) != 0) ok = 0;
    free(b.s);
    if (!ok || rename(tmp, path) != 0) {
        azr_status st = azr_set_error(AZR_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return AZR_OK;
}
