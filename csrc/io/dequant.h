/*
 * dequant.h -- ggml tensor types: their block sizes, and dequantisation of
 * the ones azr supports to fp32.
 *
 * Owns: the table of ggml type ids (as numbered in ggml.h and GGUF files),
 * block geometry, and the decoders F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K,
 * Q5_K, Q6_K, Q8_K. Results are bit-identical to the `gguf` Python
 * package's reference dequantiser (gguf.quants.dequantize): the products and
 * sums are rounded in the same order and never fused into FMAs.
 * Must not: know about files, metadata or models (see gguf.h), print or
 * abort.
 */
#ifndef AZR_IO_DEQUANT_H
#define AZR_IO_DEQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/azr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ggml type ids, as stored in GGUF tensor infos. */
typedef enum {
    AZR_GGML_F32 = 0,
    AZR_GGML_F16 = 1,
    AZR_GGML_Q4_0 = 2,
    AZR_GGML_Q4_1 = 3,
    AZR_GGML_Q5_0 = 6,
    AZR_GGML_Q5_1 = 7,
    AZR_GGML_Q8_0 = 8,
    AZR_GGML_Q8_1 = 9,
    AZR_GGML_Q2_K = 10,
    AZR_GGML_Q3_K = 11,
    AZR_GGML_Q4_K = 12,
    AZR_GGML_Q5_K = 13,
    AZR_GGML_Q6_K = 14,
    AZR_GGML_Q8_K = 15,
    AZR_GGML_BF16 = 30,
    AZR_GGML_TYPE_LIMIT = 64 /* ids at or above this are unknown */
} azr_ggml_type;

/* Elements per block and bytes per block of ggml type `type`. Returns 0
 * for both when the id is not a ggml type azr knows the geometry of
 * (unknown ids, and the removed ids 4 and 5). Known-but-undecodable types
 * (Q2_K, IQ*, ...) have a geometry so files holding them can be listed. */
int64_t azr_ggml_block_elems(uint32_t type);
int64_t azr_ggml_block_bytes(uint32_t type);

/* The ggml name of `type` ("Q4_K"), or NULL when unknown. */
const char *azr_ggml_type_name(uint32_t type);

/* 1 if azr can dequantise `type` to fp32, else 0. */
int azr_ggml_can_dequantize(uint32_t type);

/* Bytes that `n` elements of `type` occupy. On an unknown type, `n` not a
 * multiple of the block size, a negative n or overflow, returns -1 and
 * records an AZR_ERR_FORMAT / AZR_ERR_UNSUPPORTED message. */
int64_t azr_ggml_nbytes(uint32_t type, int64_t n);

/* Decode `n` elements of type `type` from `src` (`src_bytes` bytes, no
 * alignment required) into `dst` (n floats). OpenMP-parallel over blocks
 * for n >= 2^22 elements (smaller tensors decode on the calling thread).
 * n == 0 does nothing and returns AZR_OK. Errors: NULL pointers with n > 0
 * or n negative (AZR_ERR_INVALID), n not a multiple of the block size or
 * src_bytes too small (AZR_ERR_FORMAT), a type azr cannot decode
 * (AZR_ERR_UNSUPPORTED, naming it). dst is untouched on error. */
azr_status azr_dequantize(uint32_t type, const void *src, size_t src_bytes, float *dst, int64_t n);

/* The same decode, single-threaded and block by block: the naive reference
 * the parallel path is tested against. Same contract as azr_dequantize. */
azr_status azr_dequantize_ref(uint32_t type, const void *src, size_t src_bytes, float *dst,
                              int64_t n);

/* IEEE half (binary16) bits to float, exact for every input incl.
 * subnormals, infinities and NaN payloads. */
float azr_dequant_f16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif /* AZR_IO_DEQUANT_H */
