/*
 * generate.c -- the rollout engine: scheduler, KV block pool, KV-cached
 * forward over a batch of token rows, and the per-token bookkeeping (EOS,
 * stop strings, length). See generate.h for the design.
 * Owns: one run's state, allocated in gen_init and freed in gen_free.
 * Must not: print, abort, allocate per token or per step, or call BLAS
 * (whose rounding depends on the batch shape; see gen_kernels.h).
 */
#include "generate.h"
#include "prefix_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../backend/cpu/kernels.h"
#include "gen_kernels.h"

/* ---- packed weights and their cache ------------------------------------------ */

/* Floats of each packed matrix: per layer qkv, o, gate/up, down (in that
 * order), then the head after the L layers. */
typedef struct {
    int64_t qkv, o, gu, down, layer, head, total;
} pack_layout_t;

static void pack_layout(const azr_model_config *c, pack_layout_t *lay) {
    int64_t C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t Dq = (int64_t)c->n_heads * D, Dqkv = Dq + 2 * (int64_t)c->n_kv_heads * D;
    lay->qkv = azr_gen_packed_floats(C, Dqkv);
    lay->o = azr_gen_packed_floats(Dq, C);
    lay->gu = azr_gen_packed_floats(C, 2 * I);
    lay->down = azr_gen_packed_floats(I, C);
    lay->layer = lay->qkv + lay->o + lay->gu + lay->down;
    lay->head = azr_gen_packed_floats(C, c->vocab_size);
    lay->total = (int64_t)c->n_layers * lay->layer + lay->head;
}

static void pack_all(float *dst, azr_model *m, const pack_layout_t *lay) {
    const azr_model_config *c = azr_model_cfg(m);
    int64_t C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t Dq = (int64_t)c->n_heads * D, Dqkv = Dq + 2 * (int64_t)c->n_kv_heads * D;
    float *P = azr_model_params(m);
    for (int l = 0; l < c->n_layers; l++) {
        azr_layer_ptrs w = azr_model_layer(m, P, l);
        float *d = dst + (int64_t)l * lay->layer;
        azr_gen_pack(d, w.wqkv, C, Dqkv);
        azr_gen_pack(d + lay->qkv, w.wo, Dq, C);
        azr_gen_pack(d + lay->qkv + lay->o, w.wgu, C, 2 * I);
        azr_gen_pack(d + lay->qkv + lay->o + lay->gu, w.wdown, I, C);
    }
    azr_gen_pack(dst + (int64_t)c->n_layers * lay->layer, azr_model_head_ptr(m, P), C,
                 c->vocab_size);
}

struct azr_gen_weights {
    float *packed;
    int64_t floats; /* allocated */
    int valid;
    uint64_t hash;
    azr_model_config cfg;  /* the shape it was packed for */
    const float *arena;    /* azr_model_params of the model it was packed from */
    int64_t packs;
};

azr_gen_weights *azr_gen_weights_new(void) {
    azr_gen_weights *w = calloc(1, sizeof *w);
    if (!w) azr_set_error(AZR_ERR_NOMEM, "generate: out of memory for a weight cache");
    return w;
}

void azr_gen_weights_free(azr_gen_weights *w) {
    if (!w) return;
    azr_free(w->packed);
    free(w);
}

int64_t azr_gen_weights_bytes(const azr_gen_weights *w) {
    return w && w->valid ? w->floats * (int64_t)sizeof(float) : 0;
}

int64_t azr_gen_weights_packs(const azr_gen_weights *w) { return w ? w->packs : 0; }

uint64_t azr_gen_weights_packed_hash(const azr_gen_weights *w) { return w && w->valid ? w->hash : 0; }

uint64_t azr_gen_weights_hash(azr_model *m) {
    if (!m) return 0;
    const azr_model_config *c = azr_model_cfg(m);
    int64_t C = c->hidden_size, I = c->intermediate_size, D = c->head_dim;
    int64_t Dq = (int64_t)c->n_heads * D, Dqkv = Dq + 2 * (int64_t)c->n_kv_heads * D;
    float *P = azr_model_params(m);
    int k = 4 * c->n_layers + 1;
    /* the matrices the packed copy is made of, hashed in one parallel
     * region (one region per matrix cost ~4 ms more a call for
     * SmolLM2-135M: each small matrix's end left a thread idle) */
    const float **a = malloc((size_t)k * sizeof *a);
    int64_t *n = malloc((size_t)k * sizeof *n);
    uint64_t *sums = malloc((size_t)k * sizeof *sums);
    uint64_t h = 0;
    if (a && n && sums) {
        for (int l = 0; l < c->n_layers; l++) {
            azr_layer_ptrs w = azr_model_layer(m, P, l);
            a[4 * l] = w.wqkv, n[4 * l] = Dqkv * C;
            a[4 * l + 1] = w.wo, n[4 * l + 1] = C * Dq;
            a[4 * l + 2] = w.wgu, n[4 * l + 2] = 2 * I * C;
            a[4 * l + 3] = w.wdown, n[4 * l + 3] = C * I;
        }
        a[k - 1] = azr_model_head_ptr(m, P), n[k - 1] = c->vocab_size * C;
        h = azr_gen_hash_many(a, n, k, 0x243F6A8885A308D3ULL, sums);
    }
    free(a);
    free(n);
    free(sums);
    return h; /* 0: out of memory, which azr_gen_weights_sync never takes as current */
}

static int same_shape(const azr_model_config *a, const azr_model_config *b) {
    return a->hidden_size == b->hidden_size && a->intermediate_size == b->intermediate_size &&
           a->vocab_size == b->vocab_size && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->tie_embeddings == b->tie_embeddings;
}

azr_status azr_gen_weights_sync(azr_gen_weights *w, azr_model *m, int *repacked) {
    if (repacked) *repacked = 0;
    if (!w || !m) return azr_set_error(AZR_ERR_INVALID, "generate: NULL weight cache or model");
    const azr_model_config *c = azr_model_cfg(m);
    uint64_t h = azr_gen_weights_hash(m);
    if (w->valid && w->arena == azr_model_params(m) && same_shape(&w->cfg, c) && w->hash == h &&
        h != 0)
        return AZR_OK;
    pack_layout_t lay;
    pack_layout(c, &lay);
    w->valid = 0;
    if (w->floats != lay.total) {
        azr_free(w->packed);
        w->floats = 0;
        w->packed = azr_alloc_streamed((size_t)lay.total * sizeof(float), "the packed weights");
        if (!w->packed) return AZR_ERR_NOMEM;
        w->floats = lay.total;
    }
    pack_all(w->packed, m, &lay);
    w->cfg = *c;
    w->arena = azr_model_params(m);
    w->hash = h;
    w->valid = 1;
    w->packs++;
    if (repacked) *repacked = 1;
    return AZR_OK;
}

enum { REQ_WAITING = 0, REQ_PREFILL, REQ_READY, REQ_DONE };

typedef struct {
    int state;
    int32_t gslot;      /* group slot while PREFILL / READY */
    int32_t admitted;   /* samples given a slot so far */
    int has_reservation;
    int64_t plen, prefilled;
    int64_t prompt_blocks; /* blocks holding the prompt */
    int64_t priv_blocks;   /* blocks one sample adds beyond the prompt's full blocks */
} gen_req;

typedef struct {
    int active;
    int64_t r;      /* request */
    int32_t i;      /* sample */
    int32_t pending; /* token to feed next */
    int64_t pos;    /* its position */
    int32_t ngen;   /* tokens sampled */
    int32_t nblocks;
    int32_t tail_len; /* bytes in the stop-string tail */
} gen_slot;

typedef struct {
    azr_model *m;
    const azr_gen_params *p;
    const int32_t *prompt_ids;
    const int64_t *prompt_off;
    int64_t R, S;
    azr_gen_outputs *out;
    /* dims */
    int64_t C, I, V, Dq, Dkv, Dqkv;
    int L, Hq, Hkv, D, bs;
    int nthreads;
    /* weights repacked into panels once per run (gen_kernels.h): per layer
     * qkv, o, gate/up, down, then the head */
    const float *packed; /* the cache's or own_packed */
    float *own_packed;
    pack_layout_t lay;
    /* KV pool: (L, kv_blocks, 2, bs, Dkv) */
    float *kv;
    int64_t layer_stride, block_stride, nblocks_total;
    int32_t *refcnt, *free_stack;
    int64_t nfree, reserved;
    /* block tables: slots first, then group slots; maxb entries each */
    int64_t maxb;
    int32_t *tables;
    gen_slot *slots;
    gen_req *reqs;
    int32_t *gfree;
    int32_t ngfree;
    float *glogits; /* (max_slots + lookahead, V): kept last-prompt-position logits */
    int64_t next_waiting, first_live;
    int64_t unadmitted; /* samples of PREFILL/READY requests not yet in a slot */
    int32_t free_slots;
    int32_t lookahead; /* requests prefilled ahead of free slots */
    /* step buffers */
    int64_t max_rows, max_lrows, max_ctx;
    int32_t *row_tok, *row_pos;
    int64_t *row_toff;
    int32_t *lrow_src, *lrow_slot; /* logits row -> batch row; slot (>= 0) or -1 - request */
    float *x, *xn, *qkv, *att, *gu, *h, *cosb, *sinb, *xh, *xhn, *logits, *attn_scratch;
    /* sampling: rows are copied to a 64-byte aligned buffer first, so the
     * vectorized sums see the same alignment for every row */
    int64_t Vp; /* V rounded up to 16 floats */
    float *work_z;
    float *xnt;       /* forward_team: each thread's copy of the normed rows */
    azr_gen_claims *claims; /* a team step's products' claim counters (4 a layer + the head) */
    azr_gen_barrier *bar;
    int team; /* run decode steps as one parallel region (forward_team) */
    float *work_f;
    azr_gen_cand *work_c;
    double *lrow_u;
    int32_t *lrow_tok;
    float *lrow_lp, *lrow_mlp;
    /* stop strings */
    int64_t max_stop, max_tok_bytes, tail_cap;
    char *tails;
    /* prefix cache (NULL: none): matched nodes of a prompt; a sequence's ids */
    azr_gen_prefix *pc;
    int32_t *pc_nodes, *pc_ids;
    azr_gen_progress prog;
} gen_state;

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int64_t azr_gen_kv_bytes_per_block(const azr_model_config *c, int32_t block_size) {
    if (!c || block_size < 1) return 0;
    return (int64_t)c->n_layers * 2 * block_size * c->n_kv_heads * c->head_dim * 4;
}

int64_t azr_gen_blocks_for(int64_t prompt_len, int32_t max_new_tokens, int32_t max_context,
                           int32_t block_size, int64_t *prompt_blocks) {
    if (block_size < 1) return 0;
    /* positions that get a KV entry: the prompt and every sampled token but
     * the last, never past the context */
    int64_t npos = prompt_len + (int64_t)max_new_tokens - 1;
    if (npos > max_context) npos = max_context;
    if (npos < prompt_len) npos = prompt_len;
    int64_t total = (npos + block_size - 1) / block_size;
    if (prompt_blocks) *prompt_blocks = (prompt_len + block_size - 1) / block_size;
    return total - prompt_len / block_size;
}

/* ---- block pool ------------------------------------------------------------ */

static int32_t blk_alloc(gen_state *st) {
    int32_t b = st->free_stack[--st->nfree];
    st->refcnt[b] = 1;
    return b;
}

static void blk_release(gen_state *st, int32_t b) {
    if (--st->refcnt[b] == 0) st->free_stack[st->nfree++] = b;
}

static void blk_copy(gen_state *st, int32_t dst, int32_t src) {
    for (int l = 0; l < st->L; l++) {
        float *base = st->kv + (int64_t)l * st->layer_stride;
        memcpy(base + (int64_t)dst * st->block_stride, base + (int64_t)src * st->block_stride,
               (size_t)st->block_stride * sizeof(float));
    }
}

/* ---- setup / teardown --------------------------------------------------------- */

static void gen_free(gen_state *st) {
    azr_free(st->own_packed);
    azr_free(st->kv);
    free(st->refcnt);
    free(st->free_stack);
    free(st->tables);
    free(st->slots);
    free(st->reqs);
    free(st->gfree);
    azr_free(st->glogits);
    free(st->row_tok);
    free(st->row_pos);
    free(st->row_toff);
    free(st->lrow_src);
    free(st->lrow_slot);
    azr_free(st->x);
    azr_free(st->xn);
    azr_free(st->qkv);
    azr_free(st->att);
    azr_free(st->gu);
    azr_free(st->h);
    azr_free(st->cosb);
    azr_free(st->sinb);
    azr_free(st->xh);
    azr_free(st->xhn);
    azr_free(st->claims);
    azr_free(st->xnt);
    azr_free(st->bar);
    azr_free(st->logits);
    azr_free(st->attn_scratch);
    azr_free(st->work_z);
    azr_free(st->work_f);
    azr_free(st->work_c);
    free(st->lrow_u);
    free(st->lrow_tok);
    free(st->lrow_lp);
    free(st->lrow_mlp);
    free(st->tails);
    free(st->pc_nodes);
    free(st->pc_ids);
}

static azr_status check_params(const azr_model *m, const int32_t *ids, const int64_t *off,
                               int64_t R, const azr_gen_params *p, const azr_gen_outputs *o) {
    if (!m || !ids || !off || !p || !o)
        return azr_set_error(AZR_ERR_INVALID, "generate: NULL argument");
    if (!o->tokens || !o->logprobs || !o->model_logprobs || !o->lengths || !o->finish)
        return azr_set_error(AZR_ERR_INVALID, "generate: NULL output array");
    const azr_model_config *c = azr_model_cfg(m);
    if (R < 1) return azr_set_error(AZR_ERR_INVALID, "generate: no prompts");
    if (p->prefix && !p->weights)
        return azr_set_error(AZR_ERR_INVALID,
                             "generate: a prefix cache needs the packed-weight cache (weights)");
    if (p->n < 1) return azr_set_error(AZR_ERR_INVALID, "generate: n = %d must be >= 1", p->n);
    if (R > INT32_MAX || (int64_t)p->n * R > INT32_MAX)
        return azr_set_error(AZR_ERR_INVALID, "generate: too many sequences (%lld x %d)",
                             (long long)R, p->n);
    if (p->max_new_tokens < 1)
        return azr_set_error(AZR_ERR_INVALID, "generate: max_new_tokens = %d must be >= 1",
                             p->max_new_tokens);
    const azr_gen_sampling *s = &p->sampling;
    if (!(s->temperature >= 0.0f) || !isfinite(s->temperature))
        return azr_set_error(AZR_ERR_INVALID, "generate: temperature %g must be finite and >= 0",
                             (double)s->temperature);
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
        return azr_set_error(AZR_ERR_INVALID, "generate: top_p %g must be in (0, 1]",
                             (double)s->top_p);
    if (s->top_k < 0)
        return azr_set_error(AZR_ERR_INVALID, "generate: top_k %d must be >= 0 (0 = off)",
                             s->top_k);
    if (p->max_slots < 1 || p->max_slots > (1 << 20))
        return azr_set_error(AZR_ERR_INVALID, "generate: max_slots %d must be in 1..2^20",
                             p->max_slots);
    if (p->block_size < 1 || p->block_size > 4096)
        return azr_set_error(AZR_ERR_INVALID, "generate: block_size %d must be in 1..4096",
                             p->block_size);
    if (p->kv_blocks < 1 || p->kv_blocks > INT32_MAX)
        return azr_set_error(AZR_ERR_INVALID, "generate: kv_blocks %lld out of range",
                             (long long)p->kv_blocks);
    if (p->prefill_chunk < 1)
        return azr_set_error(AZR_ERR_INVALID, "generate: prefill_chunk must be >= 1");
    if (p->max_context < 2)
        return azr_set_error(AZR_ERR_INVALID, "generate: max_context %d must be >= 2",
                             p->max_context);
    if (c->n_heads / c->n_kv_heads > 64)
        return azr_set_error(AZR_ERR_UNSUPPORTED,
                             "generate: more than 64 query heads per key/value head");
    if (p->n_eos < 0 || (p->n_eos > 0 && !p->eos_ids))
        return azr_set_error(AZR_ERR_INVALID, "generate: bad EOS id list");
    if (p->n_stop < 0 || (p->n_stop > 0 && (!p->stop_bytes || !p->stop_off)))
        return azr_set_error(AZR_ERR_INVALID, "generate: bad stop string list");
    if (p->n_stop > 0 && (!p->tok_bytes || !p->tok_off))
        return azr_set_error(AZR_ERR_INVALID,
                             "generate: stop strings need the byte strings of the tokens");
    for (int32_t k = 0; k < p->n_stop; k++)
        if (p->stop_off[k + 1] <= p->stop_off[k])
            return azr_set_error(AZR_ERR_INVALID, "generate: stop string %d is empty", k);
    if (p->n_stop > 0)
        for (int64_t v = 0; v < c->vocab_size; v++)
            if (p->tok_off[v + 1] < p->tok_off[v])
                return azr_set_error(AZR_ERR_INVALID, "generate: token byte table is not ordered");
    for (int64_t r = 0; r < R; r++) {
        int64_t len = off[r + 1] - off[r];
        if (len < 1)
            return azr_set_error(AZR_ERR_INVALID, "generate: prompt %lld is empty", (long long)r);
        if (len >= p->max_context)
            return azr_set_error(AZR_ERR_INVALID,
                                 "generate: prompt %lld has %lld tokens; the model's context is "
                                 "%d positions (a prompt must leave room for one new token)",
                                 (long long)r, (long long)len, p->max_context);
        for (int64_t t = off[r]; t < off[r + 1]; t++)
            if (ids[t] < 0 || ids[t] >= c->vocab_size)
                return azr_set_error(AZR_ERR_INVALID,
                                     "generate: prompt %lld token %lld is id %d, outside the "
                                     "vocabulary 0..%lld",
                                     (long long)r, (long long)(t - off[r]), ids[t],
                                     (long long)c->vocab_size - 1);
    }
    return AZR_OK;
}

#define ALLOC(ptr, count, what)                                                      \
    do {                                                                             \
        size_t nb_ = (size_t)(count) * sizeof(*(ptr));                               \
        (ptr) = azr_alloc(nb_ ? nb_ : 64, what);                                     \
        if (!(ptr)) return AZR_ERR_NOMEM;                                            \
    } while (0)
#define CALLOC(ptr, count, what)                                                     \
    do {                                                                             \
        (ptr) = calloc((size_t)(count) + 1, sizeof(*(ptr)));                         \
        if (!(ptr))                                                                  \
            return azr_set_error(AZR_ERR_NOMEM, "generate: out of memory for %s", what); \
    } while (0)

static azr_status gen_init(gen_state *st) {
    const azr_model_config *c = azr_model_cfg(st->m);
    const azr_gen_params *p = st->p;
    st->C = c->hidden_size;
    st->I = c->intermediate_size;
    st->V = c->vocab_size;
    st->L = c->n_layers;
    st->Hq = c->n_heads;
    st->Hkv = c->n_kv_heads;
    st->D = c->head_dim;
    st->Dq = (int64_t)st->Hq * st->D;
    st->Dkv = (int64_t)st->Hkv * st->D;
    st->Dqkv = st->Dq + 2 * st->Dkv;
    st->bs = p->block_size;
    st->nthreads = max_threads();
    st->S = st->R * p->n;

    /* per-request sizes and the budget check */
    CALLOC(st->reqs, st->R, "requests");
    st->maxb = 1;
    st->max_ctx = 1;
    for (int64_t r = 0; r < st->R; r++) {
        gen_req *q = &st->reqs[r];
        q->plen = st->prompt_off[r + 1] - st->prompt_off[r];
        q->priv_blocks = azr_gen_blocks_for(q->plen, p->max_new_tokens, p->max_context, st->bs,
                                            &q->prompt_blocks);
        int64_t total = q->plen / st->bs + q->priv_blocks;
        if (total > st->maxb) st->maxb = total;
        if (q->prompt_blocks > st->maxb) st->maxb = q->prompt_blocks;
        int64_t ctx = q->plen + p->max_new_tokens;
        if (ctx > p->max_context) ctx = p->max_context;
        if (ctx > st->max_ctx) st->max_ctx = ctx;
        if (q->prompt_blocks + q->priv_blocks > p->kv_blocks) {
            int64_t need = q->prompt_blocks + q->priv_blocks;
            return azr_set_error(
                AZR_ERR_NOMEM,
                "generate: the KV budget (%lld blocks of %d positions, %.1f MB) cannot hold "
                "prompt %lld (%lld tokens) plus %d new tokens: it needs %lld blocks (%.1f MB); "
                "raise kv_budget_mb or lower max_new_tokens",
                (long long)p->kv_blocks, st->bs,
                (double)p->kv_blocks * azr_gen_kv_bytes_per_block(c, st->bs) / 1e6, (long long)r,
                (long long)q->plen, p->max_new_tokens, (long long)need,
                (double)need * azr_gen_kv_bytes_per_block(c, st->bs) / 1e6);
        }
    }

    /* packed weights: the caller's cache, or a copy for this run */
    pack_layout(c, &st->lay);
    if (p->weights) {
        azr_status rc = azr_gen_weights_sync(p->weights, st->m, NULL);
        if (rc) return rc;
        st->packed = p->weights->packed;
        if (p->prefix) {
            if ((rc = azr_pc_sync(p->prefix, st->m, p->weights, p->block_size))) return rc;
            st->pc = p->prefix;
        }
    } else {
        ALLOC(st->own_packed, st->lay.total, "the packed weights");
        pack_all(st->own_packed, st->m, &st->lay);
        st->packed = st->own_packed;
    }

    /* KV pool, allocated once */
    st->nblocks_total = p->kv_blocks;
    st->block_stride = 2 * (int64_t)st->bs * st->Dkv;
    st->layer_stride = st->nblocks_total * st->block_stride;
    /* on transparent huge pages, like the packed weights: a decode step
     * reads every cached block of the layer, scattered over the pool, and
     * on 4 KiB pages each one was a TLB miss (~1% of a one-sequence decode
     * step in an in-process A/B) */
    st->kv = azr_alloc_streamed((size_t)st->L * (size_t)st->layer_stride * sizeof(float),
                                "the KV cache");
    if (!st->kv) return AZR_ERR_NOMEM;
    CALLOC(st->refcnt, st->nblocks_total, "KV block counts");
    CALLOC(st->free_stack, st->nblocks_total, "KV block list");
    for (int64_t b = 0; b < st->nblocks_total; b++)
        st->free_stack[b] = (int32_t)(st->nblocks_total - 1 - b);
    st->nfree = st->nblocks_total;

    /* prefill a few requests ahead of free slots, so a slot that frees up
     * finds a prompt ready instead of idling while one is prefilled */
    st->lookahead = p->max_slots / 8 > 0 ? p->max_slots / 8 : 1;
    int64_t NS = p->max_slots, G = (int64_t)p->max_slots + st->lookahead;
    CALLOC(st->tables, (NS + G) * st->maxb, "block tables");
    CALLOC(st->slots, NS, "slots");
    CALLOC(st->gfree, G, "group slots");
    for (int64_t g = 0; g < G; g++) st->gfree[g] = (int32_t)(G - 1 - g);
    st->ngfree = (int32_t)G;
    st->free_slots = (int32_t)NS;
    ALLOC(st->glogits, G * st->V, "prompt logits");

    st->max_rows = NS + p->prefill_chunk;
    st->max_lrows = NS + (G < p->prefill_chunk ? G : p->prefill_chunk);
    int64_t Rw = st->max_rows, Lr = st->max_lrows;
    CALLOC(st->row_tok, Rw, "step rows");
    CALLOC(st->row_pos, Rw, "step rows");
    CALLOC(st->row_toff, Rw, "step rows");
    CALLOC(st->lrow_src, Lr, "step rows");
    CALLOC(st->lrow_slot, Lr, "step rows");
    ALLOC(st->x, Rw * st->C, "activations");
    ALLOC(st->xn, Rw * st->C, "activations");
    ALLOC(st->qkv, Rw * st->Dqkv, "activations");
    ALLOC(st->att, Rw * st->Dq, "activations");
    ALLOC(st->gu, Rw * 2 * st->I, "activations");
    ALLOC(st->h, Rw * st->I, "activations");
    ALLOC(st->cosb, Rw * (st->D / 2), "rope tables");
    ALLOC(st->sinb, Rw * (st->D / 2), "rope tables");
    ALLOC(st->xh, Lr * st->C, "activations");
    ALLOC(st->xhn, Lr * st->C, "activations");
    ALLOC(st->logits, Lr * st->V, "logits");
    ALLOC(st->attn_scratch,
          azr_gen_attention_scratch_floats(st->Hq, st->Hkv, st->max_ctx, st->nthreads),
          "attention scratch");
    st->Vp = (st->V + 15) / 16 * 16;
    ALLOC(st->work_z, (int64_t)st->nthreads * st->Vp, "sampler scratch");
    ALLOC(st->xnt, (int64_t)st->nthreads * AZR_GEN_DECODE_ROWS * st->C, "activations");
    ALLOC(st->work_f, (int64_t)st->nthreads * st->Vp, "sampler scratch");
    ALLOC(st->work_c, (int64_t)st->nthreads * st->Vp, "sampler scratch");
    ALLOC(st->claims, 4 * (int64_t)st->L + 1, "decode step counters");
    ALLOC(st->bar, 1, "decode step barrier");
    {
        /* decode steps in one region (forward_team), whose spin barriers
         * need a core per thread: not when there are more threads than the
         * cores this process may run on */
        cpu_set_t cs;
        st->team = !(sched_getaffinity(0, sizeof cs, &cs) == 0 && CPU_COUNT(&cs) < st->nthreads);
    }
    CALLOC(st->lrow_u, Lr, "step rows");
    CALLOC(st->lrow_tok, Lr, "step rows");
    CALLOC(st->lrow_lp, Lr, "step rows");
    CALLOC(st->lrow_mlp, Lr, "step rows");

    if (p->n_stop > 0) {
        for (int32_t k = 0; k < p->n_stop; k++) {
            int64_t len = p->stop_off[k + 1] - p->stop_off[k];
            if (len > st->max_stop) st->max_stop = len;
        }
        for (int64_t v = 0; v < st->V; v++) {
            int64_t len = p->tok_off[v + 1] - p->tok_off[v];
            if (len > st->max_tok_bytes) st->max_tok_bytes = len;
        }
        st->tail_cap = st->max_stop + st->max_tok_bytes;
        CALLOC(st->tails, NS * st->tail_cap, "stop-string buffers");
    }
    if (st->pc) {
        int64_t maxp = 1;
        for (int64_t r = 0; r < st->R; r++)
            if (st->reqs[r].plen > maxp) maxp = st->reqs[r].plen;
        CALLOC(st->pc_nodes, st->maxb, "prefix cache matches");
        CALLOC(st->pc_ids, maxp + p->max_new_tokens + 1, "prefix cache ids");
    }
    st->prog.seqs_total = st->S;
    return AZR_OK;
}

/* ---- the KV-cached forward ------------------------------------------------- */

/* Floats [c0, c1) of each row's K (half 0) or V (half 1), in qkv after
 * RoPE, into the layer's cache, in the layout azr_gen_paged_attention
 * reads: key float c of the block's position p at c * bs + p (the key
 * dimension runs down the block), value float d of group g at bs * Dkv +
 * (g * bs + p) * D + d. */
static void write_kv(gen_state *st, float *kvl, int64_t n, int half, int64_t c0, int64_t c1) {
    int64_t bs = st->bs, D = st->D;
    for (int64_t r = 0; r < n; r++) {
        int64_t pos = st->row_pos[r], p = pos % bs;
        int32_t blk = st->tables[st->row_toff[r] + pos / bs];
        float *b = kvl + (int64_t)blk * st->block_stride;
        const float *src = st->qkv + r * st->Dqkv + st->Dq + half * st->Dkv;
        if (half == 0) {
            for (int64_t c = c0; c < c1; c++) b[c * bs + p] = src[c];
            continue;
        }
        for (int64_t c = c0; c < c1;) { /* a group's run at a time */
            int64_t g = c / D, e = (g + 1) * D < c1 ? (g + 1) * D : c1;
            memcpy(b + bs * st->Dkv + (g * bs + p) * D + c % D, src + c,
                   (size_t)(e - c) * sizeof(float));
            c = e;
        }
    }
}

/* The last hidden rows of lrow_src through the final norm into xhn. */
static void head_norm(gen_state *st, int64_t nl) {
    const azr_model_config *c = azr_model_cfg(st->m);
    for (int64_t j = 0; j < nl; j++)
        memcpy(st->xh + j * st->C, st->x + (int64_t)st->lrow_src[j] * st->C,
               (size_t)st->C * sizeof(float));
    azr_rmsnorm_forward(st->xhn, NULL, st->xh, azr_model_norm_ptr(st->m, azr_model_params(st->m)),
                        nl, st->C, c->rms_eps);
}

typedef struct {
    gen_state *st;
    int64_t n;
} swiglu_job;

/* SwiGLU of the columns [c0, c1) whose gate and up outputs a thread of the
 * gate/up product has just computed (azr_gen_matmul_team_pairs). */
static void swiglu_run(void *ctx, int64_t c0, int64_t c1) {
    swiglu_job *j = ctx;
    azr_swiglu_forward_cols(j->st->h, j->st->gu, j->n, j->st->I, c0, c1);
}

/* forward() for a decode step of n <= AZR_GEN_DECODE_ROWS rows (and nl <= n
 * logits rows): the same operations, giving the same bits, in one parallel
 * region. Each thread norms the rows into its own copy (no wait for one
 * thread to do it), RoPE, the KV writes and SwiGLU are split by heads or
 * columns, products and attention are shared as in forward(); the phases
 * meet at spin barriers, where a thread that waits prefetches the start of
 * its first claim of the next product. */
static void forward_team(gen_state *st, int64_t n, int64_t nl) {
    azr_model *m = st->m;
    const azr_model_config *c = azr_model_cfg(m);
    float *P = azr_model_params(m);
    int64_t C = st->C, I = st->I, Dq = st->Dq, Dkv = st->Dkv, Dqkv = st->Dqkv, L = st->L;
    int D = st->D, Hq = st->Hq, HT = st->Hq + st->Hkv;
    azr_model_embed(m, st->row_tok, n, st->x);
    azr_rope_table(st->cosb, st->sinb, st->row_pos, n, D, c->rope_theta);
    memset(st->claims, 0, (size_t)(4 * L + 1) * sizeof(azr_gen_claims));
    memset(st->bar, 0, sizeof(azr_gen_barrier));
    const float *phead = st->packed + L * st->lay.layer;
    /* at most the threads the per-thread buffers were sized for */
#pragma omp parallel num_threads(st->nthreads)
    {
        int t = thread_id(), T = omp_get_num_threads();
        int64_t gen = 0;
        float *xn = st->xnt + (int64_t)t * AZR_GEN_DECODE_ROWS * C;
        /* this thread's heads for RoPE (Q heads then K heads, contiguous in
         * qkv) and its columns of SwiGLU (whole 16-float runs) */
        int h0 = HT * t / T, h1 = HT * (t + 1) / T;
        int64_t runs = I / 16, i0 = t == 0 ? 0 : runs * t / T * 16;
        int64_t i1 = t == T - 1 ? I : runs * (t + 1) / T * 16;
        azr_gen_prefetch pf;
        azr_gen_prefetch_init(&pf, NULL, 0, 0, 0, t, T);
        /* whole 16-column runs of gate and up: SwiGLU in the product's runs */
        int pairs = I % AZR_GEN_PANEL == 0;
        swiglu_job sj = {st, n};
        /* wait at a barrier, prefetching for the product with packed weights
         * WP (on from where the last wait stopped if it is the same one) */
#define TEAM_WAIT(WP, IN, OUT)                                                     \
    do {                                                                           \
        if (pf.wp != (WP)) azr_gen_prefetch_init(&pf, (WP), n, (IN), (OUT), t, T); \
        azr_gen_barrier_wait(st->bar, T, &gen, &pf);                               \
    } while (0)
        for (int64_t l = 0; l < L; l++) {
            azr_layer_ptrs w = azr_model_layer(m, P, (int)l);
            const float *pq = st->packed + l * st->lay.layer, *po = pq + st->lay.qkv;
            const float *pgu = po + st->lay.o, *pdown = pgu + st->lay.gu;
            float *kvl = st->kv + l * st->layer_stride;
            azr_rmsnorm_forward(xn, NULL, st->x, w.input_norm, n, C, c->rms_eps);
            azr_gen_matmul_team(st->qkv, xn, pq, w.bqkv, n, C, Dqkv, 0, &st->claims[4 * l], t,
                                T);
            TEAM_WAIT(NULL, 0, 0);
            if (h1 > h0)
                azr_rope_apply(st->qkv + (int64_t)h0 * D, n, h1 - h0, D, Dqkv, st->cosb, st->sinb,
                               0);
            if (h1 > Hq) /* its K heads into the cache */
                write_kv(st, kvl, n, 0, (int64_t)(h0 > Hq ? h0 - Hq : 0) * D,
                         (int64_t)(h1 - Hq) * D);
            if (t == 0) write_kv(st, kvl, n, 1, 0, Dkv);
            TEAM_WAIT(NULL, 0, 0);
            azr_gen_paged_attention_share(st->att, st->qkv, Dqkv, kvl, st->block_stride,
                                          (int64_t)st->bs * Dkv, st->bs, st->tables, st->row_toff,
                                          st->row_pos, n, Hq, st->Hkv, D, st->attn_scratch,
                                          st->max_ctx, t, T);
            TEAM_WAIT(po, Dq, C);
            azr_gen_matmul_team(st->x, st->att, po, NULL, n, Dq, C, 1,
                                &st->claims[4 * l + 1], t, T);
            TEAM_WAIT(pgu, C, pairs ? I : 2 * I);
            azr_rmsnorm_forward(xn, NULL, st->x, w.post_norm, n, C, c->rms_eps);
            if (pairs) { /* gate and up of the same columns, then their SwiGLU */
                azr_gen_matmul_team_pairs(st->gu, xn, pgu, n, C, I, &st->claims[4 * l + 2], t,
                                          T, swiglu_run, &sj);
            } else {
                azr_gen_matmul_team(st->gu, xn, pgu, NULL, n, C, 2 * I, 0,
                                    &st->claims[4 * l + 2], t, T);
                TEAM_WAIT(pdown, I, C);
                azr_swiglu_forward_cols(st->h, st->gu, n, I, i0, i1);
            }
            TEAM_WAIT(pdown, I, C);
            azr_gen_matmul_team(st->x, st->h, pdown, NULL, n, I, C, 1,
                                &st->claims[4 * l + 3], t, T);
            if (l + 1 < L)
                TEAM_WAIT(pq + st->lay.layer, C, Dqkv);
            else
                TEAM_WAIT(nl > 0 ? phead : NULL, C, st->V);
        }
        if (nl > 0) {
            if (t == 0) head_norm(st, nl);
            TEAM_WAIT(phead, C, st->V);
            azr_gen_matmul_team(st->logits, st->xhn, phead, NULL, nl, C, st->V, 0,
                                &st->claims[4 * L], t, T);
        }
#undef TEAM_WAIT
    }
}

/* Rows 0..n-1 (token, position, block table) through the model; their K/V
 * are written into the cache; logits (nl, V) for the rows in lrow_src. */
static void forward(gen_state *st, int64_t n, int64_t nl) {
    if (st->team && n <= AZR_GEN_DECODE_ROWS && nl <= n) {
        forward_team(st, n, nl);
        return;
    }
    azr_model *m = st->m;
    const azr_model_config *c = azr_model_cfg(m);
    float *P = azr_model_params(m);
    int64_t C = st->C, I = st->I, Dq = st->Dq, Dkv = st->Dkv, Dqkv = st->Dqkv;
    int bs = st->bs;
    azr_model_embed(m, st->row_tok, n, st->x);
    azr_rope_table(st->cosb, st->sinb, st->row_pos, n, st->D, c->rope_theta);
    for (int l = 0; l < st->L; l++) {
        azr_layer_ptrs w = azr_model_layer(m, P, l);
        const float *pq = st->packed + (int64_t)l * st->lay.layer, *po = pq + st->lay.qkv;
        const float *pgu = po + st->lay.o, *pdown = pgu + st->lay.gu;
        azr_rmsnorm_forward(st->xn, NULL, st->x, w.input_norm, n, C, c->rms_eps);
        float *kvl = st->kv + (int64_t)l * st->layer_stride;
        azr_gen_matmul_packed(st->qkv, st->xn, pq, w.bqkv, n, C, Dqkv, 0);
        azr_rope_apply(st->qkv, n, st->Hq, st->D, Dqkv, st->cosb, st->sinb, 0);
        azr_rope_apply(st->qkv + Dq, n, st->Hkv, st->D, Dqkv, st->cosb, st->sinb, 0);
        write_kv(st, kvl, n, 0, 0, Dkv);
        write_kv(st, kvl, n, 1, 0, Dkv);
        azr_gen_paged_attention(st->att, st->qkv, Dqkv, kvl, st->block_stride, (int64_t)bs * Dkv,
                                bs, st->tables, st->row_toff, st->row_pos, n, st->Hq, st->Hkv,
                                st->D, st->attn_scratch, st->max_ctx);
        azr_gen_matmul_packed(st->x, st->att, po, NULL, n, Dq, C, 1);
        azr_rmsnorm_forward(st->xn, NULL, st->x, w.post_norm, n, C, c->rms_eps);
        azr_gen_matmul_packed(st->gu, st->xn, pgu, NULL, n, C, 2 * I, 0);
        azr_swiglu_forward(st->h, st->gu, n, I);
        azr_gen_matmul_packed(st->x, st->h, pdown, NULL, n, I, C, 1);
    }
    if (nl <= 0) return;
    head_norm(st, nl);
    azr_gen_matmul_packed(st->logits, st->xhn, st->packed + (int64_t)st->L * st->lay.layer, NULL,
                          nl, C, st->V, 0);
}

/* ---- per-sequence bookkeeping ------------------------------------------------ */

static double unit_u(const azr_gen_params *p, int64_t r, int32_t i, int32_t j) {
    uint64_t key = p->request_keys ? p->request_keys[r] : (uint64_t)r;
    azr_u32x4 b = azr_philox(p->seed, key, ((uint64_t)(uint32_t)i << 32) | (uint32_t)j);
    return azr_u32x2_to_unit_double(b.v[0], b.v[1]);
}

/* Does appending token t complete a stop string? Updates the slot's tail. */
static int stop_hit(gen_state *st, int32_t s, int32_t t) {
    const azr_gen_params *p = st->p;
    if (p->n_stop <= 0) return 0;
    gen_slot *sl = &st->slots[s];
    char *buf = st->tails + (int64_t)s * st->tail_cap;
    int64_t old = sl->tail_len, tl = p->tok_off[t + 1] - p->tok_off[t];
    memcpy(buf + old, p->tok_bytes + p->tok_off[t], (size_t)tl);
    int64_t total = old + tl;
    int hit = 0;
    for (int32_t k = 0; k < p->n_stop && !hit; k++) {
        const char *sb = p->stop_bytes + p->stop_off[k];
        int64_t sl_len = p->stop_off[k + 1] - p->stop_off[k];
        /* only matches that end inside the new bytes are new */
        int64_t start = old - sl_len + 1;
        if (start < 0) start = 0;
        for (int64_t a = start; a + sl_len <= total; a++)
            if (memcmp(buf + a, sb, (size_t)sl_len) == 0) {
                hit = 1;
                break;
            }
    }
    int64_t keep = st->max_stop - 1;
    if (total > keep) {
        memmove(buf, buf + total - keep, (size_t)keep);
        total = keep;
    }
    sl->tail_len = (int32_t)total;
    return hit;
}

static void finish_slot(gen_state *st, int32_t s, int reason) {
    gen_slot *sl = &st->slots[s];
    int64_t seq = sl->r * st->p->n + sl->i;
    st->out->lengths[seq] = sl->ngen;
    st->out->finish[seq] = (int8_t)reason;
    int32_t *table = st->tables + (int64_t)s * st->maxb;
    if (st->pc) { /* its full blocks hold final KV for prompt + every token but the last */
        int64_t plen = st->reqs[sl->r].plen;
        memcpy(st->pc_ids, st->prompt_ids + st->prompt_off[sl->r], (size_t)plen * sizeof(int32_t));
        memcpy(st->pc_ids + plen, st->out->tokens + seq * st->p->max_new_tokens,
               (size_t)sl->ngen * sizeof(int32_t));
        azr_pc_insert(st->pc, st->pc_ids, (plen + sl->ngen - 1) / st->bs, st->kv, st->layer_stride,
                      table);
    }
    for (int32_t b = 0; b < sl->nblocks; b++) blk_release(st, table[b]);
    sl->active = 0;
    sl->nblocks = 0;
    st->free_slots++;
    st->prog.seqs_done++;
}

/* Record sampled token t for slot s; finish the sequence or make t the
 * pending token. */
static azr_status take_token(gen_state *st, int32_t s, int32_t t, float lp, float mlp) {
    const azr_gen_params *p = st->p;
    gen_slot *sl = &st->slots[s];
    int64_t seq = sl->r * p->n + sl->i;
    if (!isfinite(lp) || !isfinite(mlp))
        return azr_set_error(AZR_ERR_NUMERIC,
                             "generate: non-finite logits for request %lld sample %d at new token "
                             "%d (the parameters hold NaN/inf)",
                             (long long)sl->r, sl->i, sl->ngen);
    int64_t o = seq * p->max_new_tokens + sl->ngen;
    st->out->tokens[o] = t;
    st->out->logprobs[o] = lp;
    st->out->model_logprobs[o] = mlp;
    sl->ngen++;
    st->prog.tokens_generated++;
    for (int32_t k = 0; k < p->n_eos; k++)
        if (p->eos_ids[k] == t) {
            finish_slot(st, s, AZR_GEN_FINISH_EOS);
            return AZR_OK;
        }
    if (stop_hit(st, s, t)) {
        finish_slot(st, s, AZR_GEN_FINISH_STOP);
        return AZR_OK;
    }
    int64_t next_pos = st->reqs[sl->r].plen + sl->ngen - 1;
    if (sl->ngen >= p->max_new_tokens || next_pos >= p->max_context) {
        finish_slot(st, s, AZR_GEN_FINISH_LENGTH);
        return AZR_OK;
    }
    sl->pending = t;
    sl->pos = next_pos;
    return AZR_OK;
}

static void release_request(gen_state *st, int64_t r) {
    gen_req *q = &st->reqs[r];
    int32_t *gt = st->tables + (st->p->max_slots + (int64_t)q->gslot) * st->maxb;
    for (int64_t b = 0; b < q->prompt_blocks; b++) blk_release(st, gt[b]);
    st->gfree[st->ngfree++] = q->gslot;
    q->state = REQ_DONE;
}

/* Try to give slot s to the next sample of a READY request. 1 if done. */
static azr_status admit(gen_state *st, int32_t s, int *admitted) {
    const azr_gen_params *p = st->p;
    *admitted = 0;
    for (int64_t r = st->first_live; r < st->next_waiting; r++) {
        gen_req *q = &st->reqs[r];
        if (q->state != REQ_READY || q->admitted >= p->n) continue;
        int64_t need = q->priv_blocks;
        if (q->has_reservation) {
            st->reserved -= need;
            q->has_reservation = 0;
        } else if (st->nfree - st->reserved < need) {
            continue;
        }
        gen_slot *sl = &st->slots[s];
        int32_t *table = st->tables + (int64_t)s * st->maxb;
        int32_t *gt = st->tables + (p->max_slots + (int64_t)q->gslot) * st->maxb;
        int64_t full = q->plen / st->bs;
        for (int64_t b = 0; b < full; b++) {
            table[b] = gt[b];
            st->refcnt[gt[b]]++;
        }
        for (int64_t b = 0; b < need; b++) table[full + b] = blk_alloc(st);
        if (q->plen % st->bs) blk_copy(st, table[full], gt[full]);
        memset(sl, 0, sizeof *sl);
        sl->active = 1;
        sl->r = r;
        sl->i = q->admitted++;
        sl->nblocks = (int32_t)(full + need);
        st->free_slots--;
        st->unadmitted--;
        /* the first token comes from the prompt's kept logits */
        int32_t t;
        float lp, mlp;
        memcpy(st->work_z, st->glogits + (int64_t)q->gslot * st->V, (size_t)st->V * sizeof(float));
        azr_gen_sample(st->work_z, st->V, &p->sampling, unit_u(p, r, sl->i, 0), st->work_f,
                       st->work_c, &t, &lp, &mlp);
        if (q->admitted == p->n) release_request(st, r);
        azr_status rc = take_token(st, s, t, lp, mlp);
        if (rc) return rc;
        *admitted = 1;
        return AZR_OK;
    }
    return AZR_OK;
}

/* Full blocks (at most lim) that ids shares with the prompt of a request
 * still being prefilled: KV that will be in the prefix cache in a few steps. */
static int64_t shared_with_prefill(const gen_state *st, const int32_t *ids, int64_t lim) {
    int64_t best = 0;
    for (int64_t r = st->first_live; r < st->next_waiting; r++) {
        const gen_req *q = &st->reqs[r];
        if (q->state != REQ_PREFILL) continue;
        const int32_t *o = st->prompt_ids + st->prompt_off[r];
        int64_t k = 0, kmax = q->plen / st->bs < lim ? q->plen / st->bs : lim;
        while (k < kmax && !memcmp(o + k * st->bs, ids + k * st->bs, (size_t)st->bs * sizeof *ids))
            k++;
        if (k > best) best = k;
    }
    return best;
}

/* Start prefilling waiting requests while slots would be free for them. With
 * a prefix cache, a request first takes its cached blocks, and waits while a
 * request being prefilled is computing more of its prefix (it then finds
 * those blocks cached: prompts that share a header prefill it once). */
static void start_requests(gen_state *st) {
    const azr_gen_params *p = st->p;
    while (st->next_waiting < st->R && st->ngfree > 0 &&
           st->free_slots + st->lookahead > st->unadmitted) {
        gen_req *q = &st->reqs[st->next_waiting];
        if (st->nfree - st->reserved < q->prompt_blocks + q->priv_blocks) return;
        int64_t nm = 0;
        const int32_t *ids = st->prompt_ids + st->prompt_off[st->next_waiting];
        if (st->pc) { /* never the block holding its last token: its logits are needed */
            int64_t lim = (q->plen - 1) / st->bs;
            nm = azr_pc_match(st->pc, ids, lim, st->pc_nodes);
            if (nm < lim && shared_with_prefill(st, ids, lim) > nm) return;
        }
        q->gslot = st->gfree[--st->ngfree];
        int32_t *gt = st->tables + (p->max_slots + (int64_t)q->gslot) * st->maxb;
        for (int64_t b = 0; b < q->prompt_blocks; b++) gt[b] = blk_alloc(st);
        st->reserved += q->priv_blocks;
        q->has_reservation = 1;
        q->state = REQ_PREFILL;
        q->prefilled = 0;
        if (st->pc) {
            for (int64_t b = 0; b < nm; b++)
                azr_pc_copy_out(st->pc, st->pc_nodes[b], st->kv, st->layer_stride, gt[b]);
            q->prefilled = nm * st->bs;
            azr_pc_count(st->pc, q->plen, q->prefilled);
        }
        st->unadmitted += p->n;
        st->next_waiting++;
    }
}

azr_status azr_gen_run(azr_model *m, const int32_t *prompt_ids, const int64_t *prompt_off,
                       int64_t R, const azr_gen_params *p, azr_gen_outputs *out) {
    azr_status rc = check_params(m, prompt_ids, prompt_off, R, p, out);
    if (rc) return rc;
    gen_state st;
    memset(&st, 0, sizeof st);
    st.m = m;
    st.p = p;
    st.prompt_ids = prompt_ids;
    st.prompt_off = prompt_off;
    st.R = R;
    st.out = out;
    if ((rc = gen_init(&st))) goto done;

    while (st.prog.seqs_done < st.S) {
        /* 1. fill free slots with samples of prefilled requests */
        for (int32_t s = 0; s < p->max_slots && st.free_slots > 0; s++) {
            while (!st.slots[s].active) {
                int adm = 0;
                if ((rc = admit(&st, s, &adm))) goto done;
                if (!adm) break;
            }
        }
        while (st.first_live < st.next_waiting && st.reqs[st.first_live].state == REQ_DONE)
            st.first_live++;
        if (st.prog.seqs_done >= st.S) break;
        /* 2. start prefilling more requests if slots will be free for them */
        start_requests(&st);

        /* 3. the step's rows: every active slot's pending token, then prompt chunks */
        int64_t n = 0, nl = 0;
        for (int32_t s = 0; s < p->max_slots; s++) {
            gen_slot *sl = &st.slots[s];
            if (!sl->active) continue;
            st.row_tok[n] = sl->pending;
            st.row_pos[n] = (int32_t)sl->pos;
            st.row_toff[n] = (int64_t)s * st.maxb;
            st.lrow_src[nl] = (int32_t)n;
            st.lrow_slot[nl] = s;
            nl++;
            n++;
        }
        st.prog.active_slots = (int32_t)n;
        int64_t budget = p->prefill_chunk;
        for (int64_t r = st.first_live; r < st.next_waiting && budget > 0; r++) {
            gen_req *q = &st.reqs[r];
            if (q->state != REQ_PREFILL) continue;
            int64_t k = q->plen - q->prefilled;
            if (k > budget) k = budget;
            const int32_t *ids = prompt_ids + prompt_off[r] + q->prefilled;
            for (int64_t j = 0; j < k; j++, n++) {
                st.row_tok[n] = ids[j];
                st.row_pos[n] = (int32_t)(q->prefilled + j);
                st.row_toff[n] = (p->max_slots + (int64_t)q->gslot) * st.maxb;
            }
            q->prefilled += k;
            budget -= k;
            st.prog.prompt_tokens += k;
            if (q->prefilled == q->plen) {
                st.lrow_src[nl] = (int32_t)(n - 1);
                st.lrow_slot[nl] = (int32_t)(-1 - r);
                nl++;
            }
        }
        if (n == 0) {
            rc = azr_set_error(AZR_ERR_STATE,
                               "generate: the scheduler stalled with %lld of %lld sequences "
                               "done (KV blocks free %lld of %lld)",
                               (long long)st.prog.seqs_done, (long long)st.S,
                               (long long)st.nfree, (long long)st.nblocks_total);
            goto done;
        }

        /* 4. one forward over all rows */
        forward(&st, n, nl);
        st.prog.steps++;

        /* 5. sample every decode row (in parallel: each row is independent) */
        int64_t nd = 0;
        for (int64_t j = 0; j < nl; j++) {
            if (st.lrow_slot[j] < 0) continue;
            gen_slot *sl = &st.slots[st.lrow_slot[j]];
            st.lrow_u[j] = unit_u(p, sl->r, sl->i, sl->ngen);
            nd++;
        }
        if (nd <= 1) { /* one row: its draw is split over the threads (same bits) */
            for (int64_t j = 0; j < nl; j++)
                if (st.lrow_slot[j] >= 0)
                    azr_gen_sample_par(st.logits + j * st.V, st.V, &p->sampling, st.lrow_u[j],
                                       st.work_f, st.work_c, &st.lrow_tok[j], &st.lrow_lp[j],
                                       &st.lrow_mlp[j]);
        } else {
#pragma omp parallel for schedule(dynamic, 1)
            for (int64_t j = 0; j < nl; j++) {
                if (st.lrow_slot[j] < 0) continue;
                int64_t tid = thread_id();
                float *z = st.work_z + tid * st.Vp;
                memcpy(z, st.logits + j * st.V, (size_t)st.V * sizeof(float));
                azr_gen_sample(z, st.V, &p->sampling, st.lrow_u[j], st.work_f + tid * st.Vp,
                               st.work_c + tid * st.Vp, &st.lrow_tok[j], &st.lrow_lp[j],
                               &st.lrow_mlp[j]);
            }
        }
        for (int64_t j = 0; j < nl; j++) {
            int32_t s = st.lrow_slot[j];
            if (s >= 0) {
                if ((rc = take_token(&st, s, st.lrow_tok[j], st.lrow_lp[j], st.lrow_mlp[j])))
                    goto done;
            } else {
                int64_t r = -1 - (int64_t)s;
                gen_req *q = &st.reqs[r];
                memcpy(st.glogits + (int64_t)q->gslot * st.V, st.logits + j * st.V,
                       (size_t)st.V * sizeof(float));
                q->state = REQ_READY;
                if (st.pc)
                    azr_pc_insert(st.pc, prompt_ids + prompt_off[r], q->plen / st.bs, st.kv,
                                  st.layer_stride,
                                  st.tables + (p->max_slots + (int64_t)q->gslot) * st.maxb);
            }
        }
        if (p->callback && p->callback(p->callback_ctx, &st.prog)) {
            rc = azr_set_error(AZR_ERR_INTERRUPTED, "generate: cancelled");
            goto done;
        }
    }
    if (p->callback && p->callback(p->callback_ctx, &st.prog))
        rc = azr_set_error(AZR_ERR_INTERRUPTED, "generate: cancelled");
done:
    gen_free(&st);
    return rc;
}
