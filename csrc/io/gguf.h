/*
 * gguf.h -- read GGUF files (versions 2 and 3), the container llama.cpp uses
 * for models: a header, typed key/value metadata, tensor infos, and an
 * aligned data section.
 *
 * Owns: mapping a file read-only, strict validation of everything in it
 * (magic, version, every length and offset against the file size, value and
 * tensor types, alignment, tensor shapes and byte ranges, duplicate names,
 * names (metadata keys, tensor names) with a NUL byte or bytes that are not
 * UTF-8), lookups of metadata and tensors, and dequantising one tensor to fp32
 * through dequant.h.
 * Must not: interpret what the metadata means for a model (the Python
 * converter azr/gguf.py does that), print or abort. Every failure returns an
 * azr_status with a message naming the file and the field or tensor.
 *
 * Layout reminders: all integers are little-endian; a string is a uint64
 * byte length followed by that many bytes (not NUL-terminated); a tensor's
 * dims `ne` are in ggml order, ne[0] being the fastest-varying (row
 * length), so its NumPy shape is ne reversed.
 */
#ifndef AZR_IO_GGUF_H
#define AZR_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../core/azr_core.h"
#include "dequant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    AZR_GGUF_UINT8 = 0,
    AZR_GGUF_INT8 = 1,
    AZR_GGUF_UINT16 = 2,
    AZR_GGUF_INT16 = 3,
    AZR_GGUF_UINT32 = 4,
    AZR_GGUF_INT32 = 5,
    AZR_GGUF_FLOAT32 = 6,
    AZR_GGUF_BOOL = 7,
    AZR_GGUF_STRING = 8,
    AZR_GGUF_ARRAY = 9,
    AZR_GGUF_UINT64 = 10,
    AZR_GGUF_INT64 = 11,
    AZR_GGUF_FLOAT64 = 12
} azr_gguf_value_type;

#define AZR_GGUF_MAX_DIMS 4
#define AZR_GGUF_DEFAULT_ALIGNMENT 32

/* One metadata entry. Scalars are decoded into `u`/`i`/`f`; strings and
 * arrays stay in the mapped file and are reached through the accessors. */
typedef struct {
    char *key;              /* NUL-terminated copy */
    uint32_t type;          /* azr_gguf_value_type */
    uint32_t elem_type;     /* arrays: element type (AZR_GGUF_ARRAY for nested arrays) */
    uint64_t count;         /* arrays: element count; strings: byte length; scalars: 1 */
    uint64_t offset;        /* file offset of the payload (string bytes / first element) */
    uint64_t *str_offsets;  /* string arrays: file offset of each element's length prefix */
    union {
        uint64_t u;
        int64_t i;
        double f;
    } v;                    /* scalars (bool as u = 0/1; every int type widened) */
} azr_gguf_kv;

typedef struct {
    char *name;             /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[AZR_GGUF_MAX_DIMS]; /* ggml order; unused dims are 1 */
    uint32_t type;          /* azr_ggml_type */
    uint64_t offset;        /* absolute file offset of the data */
    uint64_t nbytes;
    int64_t n_elements;
} azr_gguf_tensor;

typedef struct azr_gguf {
    char *path;
    const uint8_t *data;    /* the whole file, mapped read-only */
    size_t size;
    uint32_t version;
    uint64_t n_kv;
    uint64_t n_tensors;
    azr_gguf_kv *kv;
    azr_gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;   /* absolute offset of the data section */
} azr_gguf;

/* Map and validate the GGUF file at `path`. On success *out owns the map
 * and must be released with azr_gguf_close. Errors: NULL arguments
 * (AZR_ERR_INVALID), the file cannot be opened or mapped (AZR_ERR_IO),
 * anything malformed: wrong magic, big-endian or unsupported version,
 * truncation, unknown value or tensor type, bad alignment, out-of-range or
 * misaligned tensor data, duplicate keys or tensor names (AZR_ERR_FORMAT).
 * An empty file is "truncated". *out is NULL on failure. */
azr_status azr_gguf_open(const char *path, azr_gguf **out);

/* Unmap and free. NULL is a no-op. */
void azr_gguf_close(azr_gguf *g);

/* Index of the entry / tensor named `key` / `name`, or -1 if absent (or
 * on NULL arguments). Linear search: the counts are small. */
int64_t azr_gguf_find_kv(const azr_gguf *g, const char *key);
int64_t azr_gguf_find_tensor(const azr_gguf *g, const char *name);

/* A string value: *p points into the map (not NUL-terminated), *len its
 * bytes. AZR_ERR_INVALID if `idx` is out of range or not a string. */
azr_status azr_gguf_get_string(const azr_gguf *g, int64_t idx, const char **p, uint64_t *len);

/* Element `i` of a string array, as above. AZR_ERR_INVALID when idx is not
 * a string array or i is out of range. */
azr_status azr_gguf_get_array_string(const azr_gguf *g, int64_t idx, uint64_t i, const char **p,
                                     uint64_t *len);

/* Pointer into the map at the first element of a numeric/bool array (may
 * be unaligned: copy with memcpy), with its element size in bytes.
 * AZR_ERR_INVALID when idx is not an array of fixed-size elements. */
azr_status azr_gguf_get_array_data(const azr_gguf *g, int64_t idx, const void **p,
                                   size_t *elem_size);

/* Byte size of one value of scalar type `t` (0 for string/array/unknown). */
size_t azr_gguf_scalar_size(uint32_t t);

/* A short name of a value type ("uint32", "string"...), "?" if unknown. */
const char *azr_gguf_value_type_name(uint32_t t);

/* Dequantise tensor `idx` into `dst`, which must hold `n` floats where n
 * equals the tensor's element count (checked: AZR_ERR_INVALID otherwise).
 * OpenMP-parallel. Unsupported types give AZR_ERR_UNSUPPORTED naming the
 * tensor and type. */
azr_status azr_gguf_dequantize(const azr_gguf *g, int64_t idx, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif /* AZR_IO_GGUF_H */
