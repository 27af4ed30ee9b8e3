/*
 * generate.h -- the rollout engine: continuously batched sampling from an
 * azr_model with a paged KV cache, prompt-prefix sharing between the n
 * samples of a prompt, chunked prefill, stop strings / EOS / length, and
 * per-token log-probs.
 *
 * Owns: sequence slots, the scheduler, the KV block pool, the KV-cached
 * forward over a batch of token rows (built from the model's per-layer
 * weights, the engine's rmsnorm / rope / swiglu kernels and the
 * row-invariant products in gen_kernels.h), and the outputs of one run.
 * Must not: print, abort, touch Python, or allocate per token: everything a
 * run needs is allocated once when it starts and freed when it ends.
 *
 * ---- How a run goes ------------------------------------------------------
 * R requests (prompts) each want n samples: sequence s = r*n + i. A fixed
 * number of slots (max_slots) decode together: every step runs ONE forward
 * over the pending token of every active slot plus up to prefill_chunk
 * prompt tokens of requests being prefilled (long prompts take several
 * steps), so each weight matrix is read once per step. A request's prompt
 * is prefilled once into KV blocks the request owns; its last-position
 * logits are kept, and each sample, when a slot frees up, shares the
 * prompt's full blocks (reference counts), copies its partial last block,
 * and draws its first token from the kept logits. A sample finishes at EOS,
 * at a stop string (checked on the bytes of the generated tokens, so a stop
 * string may span tokens), after max_new_tokens, or at the context limit;
 * its blocks return to the pool and the slot admits the next sample.
 *
 * ---- Memory --------------------------------------------------------------
 * Weights: one repacked copy of every matrix (gen_kernels.h), about the
 * size of the parameters: kept between runs in an azr_gen_weights cache
 * when the caller passes one (repacked only when the weights changed, see
 * azr_gen_weights_sync), else made for the run and freed at its end. KV: kv_blocks blocks of block_size positions for every layer (bytes from
 * azr_gen_kv_bytes_per_block). A sample is admitted only when all the blocks
 * it can ever need are free (no preemption, so nothing is recomputed); a
 * request starts prefilling only if its prompt blocks plus one sample's
 * blocks fit beside the reservations of requests already started, which
 * guarantees progress. A budget too small for one sequence is an error
 * before anything runs.
 *
 * ---- Reproducibility -----------------------------------------------------
 * Token j of sample i of request r is drawn with u from
 * azr_philox(seed, key_r, (i << 32) | j), where key_r is the caller's
 * request key (the Python layer derives it from the prompt's tokens and how
 * many identical prompts precede it, so a prompt's samples do not depend on
 * the other prompts of the call) or r itself; every row's logits are computed by
 * kernels whose rounding does not depend on the other rows or on the thread
 * count, so completions are identical whatever the slot count, batch
 * composition and threads.
 */
#ifndef AZR_GENERATE_H
#define AZR_GENERATE_H

#include <stdint.h>

#include "../core/azr_core.h"
#include "../model/model.h"
#include "sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { AZR_GEN_FINISH_LENGTH = 0, AZR_GEN_FINISH_EOS = 1, AZR_GEN_FINISH_STOP = 2 };

typedef struct {
    int64_t steps;            /* forward steps so far */
    int64_t tokens_generated; /* sampled tokens so far */
    int64_t prompt_tokens;    /* prompt tokens prefilled so far */
    int64_t seqs_done, seqs_total;
    int32_t active_slots;
} azr_gen_progress;

/* Called once per step with the GIL-free progress; return nonzero to cancel
 * the run (it then returns AZR_ERR_INTERRUPTED and the outputs are
 * undefined). */
typedef int (*azr_gen_callback)(void *ctx, const azr_gen_progress *p);

/* ---- packed-weight cache ----------------------------------------------------
 * The packed form of a model's matrices, kept between runs. Whether it is
 * still current is decided by content, not by a version counter: the
 * parameters are plain memory that NumPy views, optimizers, loaders and
 * users write directly, so no counter could see every write. A sync hashes
 * the matrices (one sequential read of the weights: what one decode step
 * of one sequence reads anyway, much less than packing them) and repacks
 * only when the hash, the model's shape or its parameter arena differ from
 * those the cache was packed from. The hash (32 lanes of a
 * multiply-xor chain, folded in a fixed order whatever the thread count)
 * always changes when any single weight word changes; several changes
 * collide with probability about 2^-32 per lane and all 32 lanes see
 * every update of a training step. */
typedef struct azr_gen_weights azr_gen_weights;

/* A new empty cache, or NULL (error set) when out of memory. */
azr_gen_weights *azr_gen_weights_new(void);
/* Free the cache and its packed copy; NULL is a no-op. */
void azr_gen_weights_free(azr_gen_weights *w);
/* Make w hold m's current matrices packed. *repacked (may be NULL) is set
 * to 1 when it had to (re)pack, 0 when the cache was current. Errors: NULL
 * w or m (INVALID); out of memory for the packed copy (NOMEM; the cache is
 * then empty). */
azr_status azr_gen_weights_sync(azr_gen_weights *w, azr_model *m, int *repacked);
/* Bytes held by the packed copy (0 when empty or NULL), and how many times
 * the cache has packed since it was made. */
int64_t azr_gen_weights_bytes(const azr_gen_weights *w);
int64_t azr_gen_weights_packs(const azr_gen_weights *w);
/* The content hash of m's packed matrices as the cache computes it (0 for NULL). */
uint64_t azr_gen_weights_hash(azr_model *m);

/* ---- prefix cache ---------------------------------------------------------
 * KV blocks kept between runs, keyed by the token ids they hold, so a prompt
 * that starts with tokens an earlier run already computed (a shared
 * instruction header; a prompt that continues an earlier prompt and its
 * completion, as the trainer's answer scaffold does span after span; the
 * same prompt asked again) prefills only the rest. Only full blocks are
 * kept, and a request always prefills at least its last token (its logits
 * are needed). Valid while the weights are: a run empties it when the
 * weights' content hash, the other parameters' hash, the model's shape or
 * constants, or the block size differ from those its blocks were computed
 * with (prefix_cache.h). A full store evicts the least recently used blocks
 * that no other cached block continues. Completions are the same bit for bit
 * with and without it. Needs the packed-weight cache in the run's params. */
typedef struct azr_gen_prefix azr_gen_prefix;

typedef struct {
    int64_t capacity_blocks; /* blocks the store holds (0 until first used) */
    int64_t used_blocks;
    int32_t block_size;
    int64_t prompt_tokens;   /* prompt tokens of the requests it was asked about */
    int64_t reused_tokens;   /* of them, taken from the cache instead of prefilled */
    int64_t inserted_blocks, evicted_blocks;
    int64_t flushes;         /* times emptied because the weights or model changed */
} azr_gen_prefix_stats;

/* A new empty cache whose store may use up to max_bytes (>= 0; a store
 * smaller than one block caches nothing), or NULL (error set). */
azr_gen_prefix *azr_gen_prefix_new(int64_t max_bytes);
/* Free it; NULL is a no-op. */
void azr_gen_prefix_free(azr_gen_prefix *pc);
/* Drop every cached block (the store stays allocated). */
void azr_gen_prefix_clear(azr_gen_prefix *pc);
void azr_gen_prefix_get_stats(const azr_gen_prefix *pc, azr_gen_prefix_stats *s);

typedef struct {
    int32_t n;              /* samples per request, >= 1 */
    int32_t max_new_tokens; /* >= 1 */
    azr_gen_sampling sampling;
    uint64_t seed;
    const uint64_t *request_keys; /* (R) random-stream key per request; NULL: r */
    int32_t max_slots;     /* >= 1 */
    int64_t kv_blocks;     /* >= 1 */
    int32_t block_size;    /* >= 1 positions per KV block */
    int32_t prefill_chunk; /* >= 1 prompt tokens per step */
    int32_t max_context;   /* positions the model supports; a prompt must be shorter */
    const int32_t *eos_ids;
    int32_t n_eos;
    /* stop strings: stop i is stop_bytes[stop_off[i] .. stop_off[i+1]) (non-empty) */
    const char *stop_bytes;
    const int64_t *stop_off;
    int32_t n_stop;
    /* the bytes of each token (needed when n_stop > 0): token v is
     * tok_bytes[tok_off[v] .. tok_off[v+1]), tok_off has V+1 entries */
    const char *tok_bytes;
    const int64_t *tok_off;
    azr_gen_callback callback; /* may be NULL */
    void *callback_ctx;
    /* packed weights kept between runs: synced with the model at the start
     * of the run (azr_gen_weights_sync); NULL packs for this run only. The
     * caller must not use the same cache in two runs at once. */
    azr_gen_weights *weights;
    /* blocks kept between runs (see above); NULL: none. Needs weights.
     * Same rule: one run at a time. */
    azr_gen_prefix *prefix;
} azr_gen_params;

/* Caller-allocated outputs for S = R*n sequences. */
typedef struct {
    int32_t *tokens;         /* (S, max_new_tokens) */
    float *logprobs;         /* (S, max_new_tokens) under the sampling distribution */
    float *model_logprobs;   /* (S, max_new_tokens) under softmax of the raw logits */
    int32_t *lengths;        /* (S) tokens generated */
    int8_t *finish;          /* (S) AZR_GEN_FINISH_* */
} azr_gen_outputs;

/* Bytes of one KV block (all layers, keys and values) for this model. */
int64_t azr_gen_kv_bytes_per_block(const azr_model_config *c, int32_t block_size);

/* KV blocks one sample needs in the worst case beyond its prompt's full
 * blocks, and blocks its prompt needs; used to size budgets. */
int64_t azr_gen_blocks_for(int64_t prompt_len, int32_t max_new_tokens, int32_t max_context,
                           int32_t block_size, int64_t *prompt_blocks);

/* Run generation. prompt_ids holds the R prompts back to back, prompt r at
 * prompt_ids[prompt_off[r] .. prompt_off[r+1]). Errors (nothing useful is
 * written then): NULL arguments or R < 1 (INVALID); a parameter out of
 * range, an empty prompt, a prompt of max_context tokens or more, or ids
 * outside the vocabulary (INVALID, naming the request); a KV budget that
 * cannot hold one sequence (NOMEM, naming the blocks needed); allocation
 * failure (NOMEM); non-finite logits (NUMERIC, naming request and sample);
 * the callback asking to stop (INTERRUPTED). */
azr_status azr_gen_run(azr_model *m, const int32_t *prompt_ids, const int64_t *prompt_off,
                       int64_t R, const azr_gen_params *p, azr_gen_outputs *out);

#ifdef __cplusplus
}
#endif
#endif /* AZR_GENERATE_H */
