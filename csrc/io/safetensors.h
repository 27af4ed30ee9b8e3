/*
 * safetensors.h -- read (mmap) and write safetensors files.
 *
 * Format: 8-byte little-endian header length H, then H bytes of a JSON object
 * mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the byte after the header) plus an optional
 * "__metadata__" object of string -> string, then the data.
 *
 * The reader trusts nothing: it checks that the header fits the file, is one
 * JSON object whose strings are UTF-8 without NUL characters, that every
 * entry has a known dtype, a shape of non-negative integers, offsets with
 * begin <= end inside the data area, a byte size equal to the product of the
 * shape times the dtype size (neither may overflow), that the tensors tile
 * the data area exactly (no overlaps, gaps or trailing bytes, as the
 * reference `safetensors` library requires) and that names are unique. Every
 * error names the file and the tensor or field.
 *
 * Owns: file bytes <-> float32 arrays. Must not: know about models (parameter
 * names, shapes expected by a model are the model layer's business), print or
 * abort.
 */
#ifndef AZR_SAFETENSORS_H
#define AZR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/azr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    AZR_DT_F32 = 0,
    AZR_DT_F16 = 1,
    AZR_DT_BF16 = 2,
    AZR_DT_OTHER = 3 /* a valid safetensors dtype azr cannot convert (I64, F64, ...) */
} azr_dtype;

#define AZR_ST_MAX_DIMS 8

typedef struct {
    char *name;
    azr_dtype dtype;
    char dtype_name[8];
    int ndim;
    int64_t shape[AZR_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte offsets into the data area */
} azr_st_tensor;

typedef struct {
    char *path;
    int fd;
    unsigned char *map; /* whole file, read-only */
    size_t map_size;
    const unsigned char *data; /* start of the data area */
    uint64_t data_size;
    int n_tensors;
    azr_st_tensor *tensors;
    int n_meta;
    char **meta_keys, **meta_values;
} azr_st_file;

/* Open and validate `path`. On success *out is a new file the caller closes
 * with azr_st_close. On failure *out is NULL and the error names the path and
 * what is wrong (AZR_ERR_IO for a missing/unreadable file, AZR_ERR_FORMAT for
 * bad contents). NULL path or out -> AZR_ERR_INVALID. */
azr_status azr_st_open(const char *path, azr_st_file **out);
/* Unmap and free. NULL is a no-op. */
void azr_st_close(azr_st_file *f);
/* Index of the tensor called `name`, or -1. NULL f or name -> -1. */
int azr_st_find(const azr_st_file *f, const char *name);
/* The metadata value for `key`, or NULL. */
const char *azr_st_meta(const azr_st_file *f, const char *key);
/* Convert tensor `idx` to float32 into out (numel floats). Errors: index out
 * of range (INVALID), dtype not F32/F16/BF16 (UNSUPPORTED, naming the tensor
 * and dtype). */
azr_status azr_st_read_f32(const azr_st_file *f, int idx, float *out);

/* Write a safetensors file of float32 tensors: names[i] with shape
 * shapes[i][0..ndims[i]-1] and data[i] (product of shape floats), plus
 * n_meta metadata pairs (may be 0 with NULL arrays). The file is written to
 * path + ".tmp" and renamed over `path`, so a failure never leaves a
 * half-written file under the final name. Errors name the path. */
azr_status azr_st_write(const char *path, int n, const char *const *names, const int *ndims,
                        const int64_t *const *shapes, const float *const *data, int n_meta,
                        const char *const *meta_keys, const char *const *meta_values);

/* float16 / bfloat16 bit patterns to float (exact). */
float azr_f16_to_f32(uint16_t h);
float azr_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif /* AZR_SAFETENSORS_H */
