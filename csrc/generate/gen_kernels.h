/*
 * gen_kernels.h -- the kernels of the rollout engine's KV-cached forward
 * that the training engine does not have: a row-invariant "skinny" matrix
 * product for a batch of token rows, and causal attention of token rows
 * over a paged KV cache.
 *
 * Owns: pure math on raw float buffers.
 * Must not: allocate, print, abort, or know about slots, requests or Python.
 *
 * Why separate matrix products: sampling must give the same tokens whatever
 * the batch composition, slot count and thread count. BLAS libraries pick
 * different code paths (gemv for one row, "small matrix" kernels, K-split
 * threading) depending on the shape, so the same row can come out with
 * different rounding in a batch of 1 and in a batch of 16. Here every output
 * element is computed with one fixed summation order whatever M, the
 * blocking or the number of threads (threads split only the output columns),
 * and every weight is read once per call however many rows there are, which
 * is what a batched decode step needs. The engine uses the packed form
 * (azr_gen_matmul_packed: one FMA chain per element); azr_gen_matmul (8 lanes
 * over k, fixed lane reduction, register blocked 4 rows x 2 outputs) works on
 * unpacked weights.
 */
#ifndef AZR_GEN_KERNELS_H
#define AZR_GEN_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y (M, out) = [y if accumulate] + x (M, in) @ w^T (+ b), w (out, in) as HF
 * stores it, b (out) or NULL. For each element the result is
 * y_old + (dot(x_i, w_o) + b_o) (y_old = 0 without accumulate). y must not
 * alias x or w. M == 0 or out == 0 is a no-op; in == 0 gives the bias. */
void azr_gen_matmul(float *y, const float *x, const float *w, const float *b, int64_t M,
                    int64_t in, int64_t out, int accumulate);
/* Reference: one element at a time, accumulated in double (tests check
 * closeness to it, and bit equality of azr_gen_matmul across M, blockings
 * and thread counts). */
void azr_gen_matmul_naive(float *y, const float *x, const float *w, const float *b, int64_t M,
                          int64_t in, int64_t out, int accumulate);

/* ---- packed weights: the fast path of the rollout engine ----
 * A weight w (out, in) is repacked once per run into panels of 16 output
 * rows transposed to (in, 16) (the last panel zero-padded), so that a block
 * of up to 6 token rows x 16 outputs is one chain of fused multiply-adds per
 * element over k = 0..in-1 in increasing order -- the same chain for every
 * row count, blocking and thread count, hence row-invariant -- with weights
 * streamed once per call. */
#define AZR_GEN_PANEL 16
/* Floats of the packed form of an (out, in) weight. */
int64_t azr_gen_packed_floats(int64_t in, int64_t out);
/* Pack w (out, in) into dst (azr_gen_packed_floats floats). */
void azr_gen_pack(float *dst, const float *w, int64_t in, int64_t out);
/* y (M, out) = [y if accumulate] + x (M, in) @ w^T (+ b), with wp the packed
 * w. Each element: y_old + (fma chain of x_i . w_o from 0, then + b_o).
 * Same NULL / zero-size rules as azr_gen_matmul. */
void azr_gen_matmul_packed(float *y, const float *x, const float *wp, const float *b, int64_t M,
                           int64_t in, int64_t out, int accumulate);
/* Up to this many rows a product takes the decode path (several panels
 * side by side, memory-bandwidth bound); more rows run register blocks. */
#define AZR_GEN_DECODE_ROWS 3
/* A piece of memory (at most AZR_GEN_PF_PIECE bytes) a product pulls
 * toward the cache while it streams its weights. */
#define AZR_GEN_PF_PIECE 4096
typedef struct {
    const void *p;
    int64_t bytes;
} azr_gen_span;
/* azr_gen_matmul_packed that, for M <= AZR_GEN_DECODE_ROWS (the decode path), also
 * prefetches the npf pieces pf[] into L2, a few after each group of panels
 * over the first half of the product or so: memory the next step reads
 * (the layer's KV cache for attention) arrives while the weights stream,
 * instead of as cold misses afterwards. Results are unchanged. */
void azr_gen_matmul_packed_pf(float *y, const float *x, const float *wp, const float *b,
                              int64_t M, int64_t in, int64_t out, int accumulate,
                              const azr_gen_span *pf, int64_t npf);

/* Content hash of n floats (their bit patterns), used to tell whether
 * packed weights are still current. Words are dealt to 32 lanes (word w to
 * lane w % 32 within chunks of 65536 words); each lane runs
 * h = (h ^ word) * odd constant, a bijection of h for a fixed word, so any
 * single changed word changes its lane and the result. Chunks are folded
 * with their index by a 64-bit mixer and summed, so the result does not
 * depend on the thread count. n <= 0 or a NULL a give the hash of nothing
 * (a function of seed). */
uint64_t azr_gen_hash_floats(const float *a, int64_t n, uint64_t seed);
/* Reference: the same function, one word at a time. */
uint64_t azr_gen_hash_floats_naive(const float *a, int64_t n, uint64_t seed);

/* Sum of n floats read once, front to back, split over the OpenMP threads
 * in contiguous runs: a STREAM-like read that the generate benchmark times
 * to state the memory-bandwidth bound of a decode step honestly (same
 * threads, same kind of sequential read the matrix products do). The
 * rounding depends on the thread count. NULL or n <= 0 gives 0. */
double azr_gen_sum_floats(const float *a, int64_t n);

/* Attention of N token rows over a paged KV cache.
 *
 * Cache layout: block `blk` of `block_size` positions holds, for the layer
 * being computed, keys at kv + blk*block_stride + (p % block_size)*Dkv and
 * values `v_offset` floats further (Dkv = Hkv*D; head g at +g*D).
 * Row r (query q (Hq*D) at q + r*q_stride) sits at position pos[r] of a
 * sequence whose block table is tables + table_off[r] (block of position p
 * = table[p / block_size]); it attends to positions 0..pos[r] (the caller
 * has already written this row's own key/value). out (N, Hq*D) is
 * overwritten. scratch: (Hq/Hkv)*max_ctx floats per thread (pass
 * azr_gen_attention_scratch_floats(); max_ctx >= max(pos)+1). Threads split
 * rows x kv heads, or rows x query heads when there are fewer than four
 * (row, kv head) units per thread; each output is computed in one fixed
 * order either way, so the result does not depend on N or the threads. */
int64_t azr_gen_attention_scratch_floats(int Hq, int Hkv, int64_t max_ctx, int nthreads);
void azr_gen_paged_attention(float *out, const float *q, int64_t q_stride, const float *kv,
                             int64_t block_stride, int64_t v_offset, int block_size,
                             const int32_t *tables, const int64_t *table_off,
                             const int32_t *pos, int64_t N, int Hq, int Hkv, int D,
                             float *scratch, int64_t max_ctx);
/* Reference: plain loops, double accumulation. */
void azr_gen_paged_attention_naive(float *out, const float *q, int64_t q_stride, const float *kv,
                                   int64_t block_stride, int64_t v_offset, int block_size,
                                   const int32_t *tables, const int64_t *table_off,
                                   const int32_t *pos, int64_t N, int Hq, int Hkv, int D);

#ifdef __cplusplus
}
#endif
#endif /* AZR_GEN_KERNELS_H */
