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

/* ---- a decode step in one parallel region ----
 * The engine runs a decode step of up to AZR_GEN_DECODE_ROWS rows as one
 * OpenMP region whose threads meet at spin barriers (~0.04 us) between the
 * phases, instead of opening a region per product (~1.3 us each, 150 a
 * step). A thread that waits at a barrier prefetches the start of its first
 * claim of the next product (azr_gen_prefetch), so it streams from L2 when
 * the barrier opens instead of waiting for DRAM. */
typedef struct {
    int64_t arrived __attribute__((aligned(64)));
    int64_t gen __attribute__((aligned(64)));
} azr_gen_barrier;
/* One product's shared claim counters; zero before the product. */
typedef struct {
    int64_t next __attribute__((aligned(64))); /* panels claimed after the first claims */
} azr_gen_claims;
/* What a thread waiting at a barrier prefetches: the start of each weight
 * stream of its first claim of the next product (azr_gen_prefetch_init). */
typedef struct {
    const float *wp;        /* the product's packed weights (NULL: nothing) */
    const char *stream[4];  /* where the claim's streams start */
    int64_t off, bytes;     /* prefetched so far, and the limit, per stream */
    int streams;
} azr_gen_prefetch;
/* Bytes of its first claim a waiting thread prefetches at most (L2 is 512
 * KiB a core on the machine this was tuned on). */
#define AZR_GEN_TEAM_PF_BYTES (192 * 1024)
/* Every thread t of a team of T calls this: its share of
 * azr_gen_matmul_packed (M <= AZR_GEN_DECODE_ROWS; same results, bit for
 * bit, whatever T). The caller zeroes cl before and has all threads meet
 * at a barrier after it. */
void azr_gen_matmul_team(float *y, const float *x, const float *wp, const float *b, int64_t M,
                         int64_t in, int64_t out, int accumulate, azr_gen_claims *cl, int t,
                         int T);
/* azr_gen_matmul_team (no bias, no accumulate) for out = 2 * half outputs,
 * half a multiple of AZR_GEN_PANEL, where output j of the first half goes
 * with output j of the second (gate and up): a thread takes both halves'
 * panels of the same columns in each run, then calls done(done_ctx, c0,
 * c1) for the half's columns [c0, c1) of the run, whose outputs of both
 * halves are then in y for every row (SwiGLU without a barrier). A thread's
 * first run starts where azr_gen_prefetch_init(.., in, half, ..) says. */
void azr_gen_matmul_team_pairs(float *y, const float *x, const float *wp, int64_t M, int64_t in,
                               int64_t half, azr_gen_claims *cl, int t, int T,
                               void (*done)(void *, int64_t, int64_t), void *done_ctx);
/* pf for thread t of T and the product of M rows with packed weights wp
 * (in, out); wp NULL prefetches nothing. */
void azr_gen_prefetch_init(azr_gen_prefetch *pf, const float *wp, int64_t M, int64_t in,
                           int64_t out, int t, int T);
/* Spin until all T threads have arrived (bar zeroed before the region;
 * gen: the thread's own count of barriers passed, 0 at the start). While
 * waiting, prefetch pf's next two cache lines per stream at a time, up to
 * AZR_GEN_TEAM_PF_BYTES in all (pf may be NULL). Yields the core after a
 * long wait. */
void azr_gen_barrier_wait(azr_gen_barrier *bar, int T, int64_t *gen, azr_gen_prefetch *pf);

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
/* Hash of k arrays (a[i], n[i] floats): h_i = azr_gen_hash_floats(a[i],
 * n[i], seed + i), combined in order, h = mix(h ^ h_i) from mix(seed ^ k);
 * all arrays' chunks in one parallel region, cut evenly over the threads
 * (the result does not depend on their number). sums: k words of scratch. */
uint64_t azr_gen_hash_many(const float *const *a, const int64_t *n, int k, uint64_t seed,
                           uint64_t *sums);

/* Sum of n floats read once, front to back, split over the OpenMP threads
 * in contiguous runs: a STREAM-like read that the generate benchmark times
 * to state the memory-bandwidth bound of a decode step honestly (same
 * threads, same kind of sequential read the matrix products do). The
 * rounding depends on the thread count. NULL or n <= 0 gives 0. */
double azr_gen_sum_floats(const float *a, int64_t n);

/* Attention of N token rows over a paged KV cache.
 *
 * Cache layout: block `blk` of `block_size` (bs) positions starts at kv +
 * blk*block_stride and holds, for the layer being computed, float c of the
 * key at position p at offset c*bs + p % bs (the key dimension runs down
 * the block, so kv head g's keys are one D*bs run, each key a column), and
 * float d of the value of kv head g at v_offset + (g*bs + p % bs)*D + d
 * (head g's values one D*bs run, each value a row). Dkv = Hkv*D.
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
/* Thread t of T's share of azr_gen_paged_attention for a few rows (every
 * thread of a team calls it; same results as azr_gen_paged_attention). */
void azr_gen_paged_attention_share(float *out, const float *q, int64_t q_stride, const float *kv,
                                   int64_t block_stride, int64_t v_offset, int block_size,
                                   const int32_t *tables, const int64_t *table_off,
                                   const int32_t *pos, int64_t N, int Hq, int Hkv, int D,
                                   float *scratch, int64_t max_ctx, int t, int T);
/* Reference: plain loops, double accumulation. */
void azr_gen_paged_attention_naive(float *out, const float *q, int64_t q_stride, const float *kv,
                                   int64_t block_stride, int64_t v_offset, int block_size,
                                   const int32_t *tables, const int64_t *table_off,
                                   const int32_t *pos, int64_t N, int Hq, int Hkv, int D);

#ifdef __cplusplus
}
#endif
#endif /* AZR_GEN_KERNELS_H */
