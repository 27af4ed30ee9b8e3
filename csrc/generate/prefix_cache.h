/*
 * prefix_cache.h -- the engine's side of the cross-call prefix cache
 * (azr_gen_prefix, declared in generate.h): a tree of KV blocks keyed by the
 * token ids they hold, kept between generate runs while the weights they
 * were computed with are unchanged.
 *
 * Owns: the cache's own block store, the tree (one node per full block of
 * block_size positions: its parent, its token ids, its KV for every layer),
 * least-recently-used eviction of leaves, the validity key and the counters.
 * Must not: touch a run's block tables or reference counts. A run copies a
 * matched block into a block of its own pool when a request starts and
 * copies a full block in after it holds final KV, so nothing in the cache is
 * ever shared with a live sequence and eviction can never pull KV from under
 * a run.
 *
 * Why it is exact: a position's K and V depend only on the weights and the
 * token ids up to it (the engine's kernels round each row the same way
 * whatever else is in the batch, prefill or decode), so a block computed once
 * is the block any later run would compute; the tests compare completions
 * with and without the cache bit for bit.
 */
#ifndef AZR_PREFIX_CACHE_H
#define AZR_PREFIX_CACHE_H

#include <stdint.h>

#include "generate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The content hash the weight cache was packed from (0 when it is empty);
 * defined in generate.c, which owns the weight cache. */
uint64_t azr_gen_weights_packed_hash(const azr_gen_weights *w);

/* Make the cache current for model m with packed weights w (already synced)
 * and blocks of bs positions: empties it when anything the cached KV depends
 * on changed (the weights' content hash, the other parameters' hash, the
 * shape and constants of the model, the block size), allocating the store on
 * first use. Errors: out of memory (NOMEM). */
azr_status azr_pc_sync(azr_gen_prefix *pc, azr_model *m, const azr_gen_weights *w, int32_t bs);

/* The longest chain of cached blocks that starts the token sequence ids:
 * at most max_blocks; node ids into nodes (max_blocks entries). Touches
 * them for the LRU order. */
int64_t azr_pc_match(azr_gen_prefix *pc, const int32_t *ids, int64_t max_blocks, int32_t *nodes);

/* Copy node's KV (every layer) into block dst of a run pool whose layers
 * are layer_stride floats apart. */
void azr_pc_copy_out(const azr_gen_prefix *pc, int32_t node, float *kv, int64_t layer_stride,
                     int32_t dst);

/* Add the first nblocks full blocks of ids, whose KV is in the run pool's
 * blocks table[0 .. nblocks) (layers layer_stride floats apart), copying
 * only blocks not cached yet. Stops early when the store is full of blocks
 * it may not evict (the chain being added). */
void azr_pc_insert(azr_gen_prefix *pc, const int32_t *ids, int64_t nblocks, const float *kv,
                   int64_t layer_stride, const int32_t *table);

/* Count a request's prompt: plen tokens, reused of them from the cache. */
void azr_pc_count(azr_gen_prefix *pc, int64_t plen, int64_t reused);

#ifdef __cplusplus
}
#endif
#endif /* AZR_PREFIX_CACHE_H */
