/*
 * prefix_cache.c -- the cross-call prefix cache of KV blocks (see
 * prefix_cache.h and generate.h).
 *
 * The tree: node k owns store block k. A node's children are a singly
 * linked list (first_child / next_sib); the root's children start at
 * root_child. Lookups walk the children comparing block_size token ids: the
 * trees the trainer builds are shallow and narrow (tens of blocks deep, a
 * few hundred children under a shared header at most), so lists are cheaper
 * than hashing and need no rehashing. Eviction scans for the least recently
 * used leaf: at most a few thousand nodes, once per added block when full.
 */
#include "prefix_cache.h"

#include <stdlib.h>
#include <string.h>

#include "gen_kernels.h"

enum { NODE_FREE = -2, ROOT = -1 };

struct azr_gen_prefix {
    int64_t max_bytes;
    /* what the cached KV was computed from */
    int valid;
    uint64_t key;
    const float *arena;
    azr_model_config cfg;
    int32_t bs;
    int64_t layer_floats; /* one block of one layer: keys and values */
    int64_t block_floats; /* all layers */
    int L;
    /* the store and the tree */
    int32_t cap;
    float *store;
    int32_t *tok; /* cap * bs */
    int32_t *parent, *first_child, *next_sib, *free_list;
    int64_t *used;
    int32_t nfree, root_child;
    int64_t tick;
    azr_gen_prefix_stats st;
};

azr_gen_prefix *azr_gen_prefix_new(int64_t max_bytes) {
    if (max_bytes < 0) {
        azr_set_error(AZR_ERR_INVALID, "generate: prefix cache size must be >= 0 bytes");
        return NULL;
    }
    azr_gen_prefix *pc = calloc(1, sizeof *pc);
    if (!pc) {
        azr_set_error(AZR_ERR_NOMEM, "generate: out of memory for a prefix cache");
        return NULL;
    }
    pc->max_bytes = max_bytes;
    pc->root_child = -1;
    return pc;
}

static void drop_store(azr_gen_prefix *pc) {
    azr_free(pc->store);
    free(pc->tok);
    free(pc->parent);
    free(pc->first_child);
    free(pc->next_sib);
    free(pc->free_list);
    free(pc->used);
    pc->store = NULL;
    pc->tok = pc->parent = pc->first_child = pc->next_sib = pc->free_list = NULL;
    pc->used = NULL;
    pc->cap = 0;
    pc->nfree = 0;
    pc->root_child = -1;
    pc->valid = 0;
}

void azr_gen_prefix_free(azr_gen_prefix *pc) {
    if (!pc) return;
    drop_store(pc);
    free(pc);
}

void azr_gen_prefix_clear(azr_gen_prefix *pc) {
    if (!pc) return;
    for (int32_t k = 0; k < pc->cap; k++) {
        pc->parent[k] = NODE_FREE;
        pc->free_list[k] = pc->cap - 1 - k;
    }
    pc->nfree = pc->cap;
    pc->root_child = -1;
    pc->st.used_blocks = 0;
}

void azr_gen_prefix_get_stats(const azr_gen_prefix *pc, azr_gen_prefix_stats *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    if (!pc) return;
    *s = pc->st;
    s->capacity_blocks = pc->cap;
    s->block_size = pc->bs;
}

/* A hash of everything but the packed matrices that a position's K and V
 * depend on: the embedding when the head is not tied to it (tied, it is
 * hashed as the head), every norm and every bias. */
static uint64_t rest_hash(azr_model *m, int *ok) {
    const azr_model_config *c = azr_model_cfg(m);
    float *P = azr_model_params(m);
    int64_t C = c->hidden_size;
    int64_t Dqkv = ((int64_t)c->n_heads + 2 * (int64_t)c->n_kv_heads) * c->head_dim;
    int k = 3 * c->n_layers + 2;
    const float **a = malloc((size_t)k * sizeof *a);
    int64_t *n = malloc((size_t)k * sizeof *n);
    uint64_t *sums = malloc((size_t)k * sizeof *sums);
    uint64_t h = 0;
    *ok = a && n && sums;
    if (*ok) {
        int j = 0;
        for (int l = 0; l < c->n_layers; l++) {
            azr_layer_ptrs w = azr_model_layer(m, P, l);
            a[j] = w.input_norm, n[j++] = C;
            a[j] = w.post_norm, n[j++] = C;
            if (w.bqkv) a[j] = w.bqkv, n[j++] = Dqkv;
        }
        a[j] = azr_model_norm_ptr(m, P), n[j++] = C;
        if (!c->tie_embeddings) a[j] = azr_model_embed_ptr(m, P), n[j++] = c->vocab_size * C;
        h = azr_gen_hash_many(a, n, j, 0x13198A2E03707344ULL, sums);
    }
    free(a);
    free(n);
    free(sums);
    return h;
}

static int same_model(const azr_model_config *a, const azr_model_config *b) {
    return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->intermediate_size == b->intermediate_size && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->rms_eps == b->rms_eps &&
           a->rope_theta == b->rope_theta && a->qkv_bias == b->qkv_bias &&
           a->tie_embeddings == b->tie_embeddings;
}

azr_status azr_pc_sync(azr_gen_prefix *pc, azr_model *m, const azr_gen_weights *w, int32_t bs) {
    const azr_model_config *c = azr_model_cfg(m);
    int ok = 1;
    uint64_t wh = azr_gen_weights_packed_hash(w);
    uint64_t key = wh ^ (rest_hash(m, &ok) * 0x9E3779B97F4A7C15ULL);
    int64_t layer_floats = 2 * (int64_t)bs * c->n_kv_heads * c->head_dim;
    int64_t block_floats = layer_floats * c->n_layers;
    if (pc->valid && ok && wh != 0 && key == pc->key && pc->arena == azr_model_params(m) &&
        same_model(&pc->cfg, c) && pc->bs == bs)
        return AZR_OK;
    if (pc->valid) pc->st.flushes++;
    if (pc->bs != bs || pc->block_floats != block_floats) drop_store(pc);
    if (!pc->store) {
        int64_t cap = pc->max_bytes / (block_floats * (int64_t)sizeof(float));
        if (cap > (1 << 30)) cap = 1 << 30;
        pc->bs = bs;
        pc->layer_floats = layer_floats;
        pc->block_floats = block_floats;
        if (cap > 0) {
            pc->store = azr_alloc((size_t)cap * (size_t)block_floats * sizeof(float),
                                  "the prefix cache");
            pc->tok = malloc((size_t)cap * (size_t)bs * sizeof *pc->tok);
            pc->parent = malloc((size_t)cap * sizeof *pc->parent);
            pc->first_child = malloc((size_t)cap * sizeof *pc->first_child);
            pc->next_sib = malloc((size_t)cap * sizeof *pc->next_sib);
            pc->free_list = malloc((size_t)cap * sizeof *pc->free_list);
            pc->used = malloc((size_t)cap * sizeof *pc->used);
            if (!pc->store || !pc->tok || !pc->parent || !pc->first_child || !pc->next_sib ||
                !pc->free_list || !pc->used) {
                int had_store = pc->store != NULL;
                drop_store(pc);
                return had_store ? azr_set_error(AZR_ERR_NOMEM,
                                                 "generate: out of memory for the prefix cache")
                                 : AZR_ERR_NOMEM;
            }
            pc->cap = (int32_t)cap;
        }
    }
    azr_gen_prefix_clear(pc);
    pc->L = c->n_layers;
    pc->cfg = *c;
    pc->arena = azr_model_params(m);
    pc->key = key;
    /* an incomplete hash (out of memory) never matches: nothing is kept */
    pc->valid = ok && wh != 0;
    return AZR_OK;
}

static int32_t find_child(const azr_gen_prefix *pc, int32_t parent, const int32_t *ids) {
    int32_t k = parent == ROOT ? pc->root_child : pc->first_child[parent];
    for (; k >= 0; k = pc->next_sib[k])
        if (!memcmp(pc->tok + (int64_t)k * pc->bs, ids, (size_t)pc->bs * sizeof *ids)) return k;
    return -1;
}

int64_t azr_pc_match(azr_gen_prefix *pc, const int32_t *ids, int64_t max_blocks, int32_t *nodes) {
    if (!pc->valid || pc->cap == 0) return 0;
    int32_t at = ROOT;
    int64_t b = 0;
    pc->tick++;
    for (; b < max_blocks; b++) {
        int32_t k = find_child(pc, at, ids + b * pc->bs);
        if (k < 0) break;
        pc->used[k] = pc->tick;
        nodes[b] = k;
        at = k;
    }
    return b;
}

void azr_pc_copy_out(const azr_gen_prefix *pc, int32_t node, float *kv, int64_t layer_stride,
                     int32_t dst) {
    const float *src = pc->store + (int64_t)node * pc->block_floats;
    for (int l = 0; l < pc->L; l++)
        memcpy(kv + l * layer_stride + (int64_t)dst * pc->layer_floats, src + l * pc->layer_floats,
               (size_t)pc->layer_floats * sizeof(float));
}

static void unlink_node(azr_gen_prefix *pc, int32_t k) {
    int32_t p = pc->parent[k];
    int32_t *link = p == ROOT ? &pc->root_child : &pc->first_child[p];
    while (*link != k) link = &pc->next_sib[*link];
    *link = pc->next_sib[k];
}

/* Free the least recently used leaf other than keep; 0 if there is none. */
static int evict_one(azr_gen_prefix *pc, int32_t keep) {
    int32_t best = -1;
    for (int32_t k = 0; k < pc->cap; k++)
        if (pc->parent[k] != NODE_FREE && pc->first_child[k] < 0 && k != keep &&
            (best < 0 || pc->used[k] < pc->used[best]))
            best = k;
    if (best < 0) return 0;
    unlink_node(pc, best);
    pc->parent[best] = NODE_FREE;
    pc->free_list[pc->nfree++] = best;
    pc->st.used_blocks--;
    pc->st.evicted_blocks++;
    return 1;
}

void azr_pc_insert(azr_gen_prefix *pc, const int32_t *ids, int64_t nblocks, const float *kv,
                   int64_t layer_stride, const int32_t *table) {
    if (!pc->valid || pc->cap == 0) return;
    int32_t at = ROOT;
    pc->tick++;
    for (int64_t b = 0; b < nblocks; b++) {
        const int32_t *t = ids + b * pc->bs;
        int32_t k = find_child(pc, at, t);
        if (k < 0) {
            /* at is a leaf now or has children: never evicted here, and an
             * ancestor of it always has a child, so the chain stays whole */
            if (pc->nfree == 0 && !evict_one(pc, at)) return;
            k = pc->free_list[--pc->nfree];
            memcpy(pc->tok + (int64_t)k * pc->bs, t, (size_t)pc->bs * sizeof *t);
            float *dst = pc->store + (int64_t)k * pc->block_floats;
            for (int l = 0; l < pc->L; l++)
                memcpy(dst + l * pc->layer_floats,
                       kv + l * layer_stride + (int64_t)table[b] * pc->layer_floats,
                       (size_t)pc->layer_floats * sizeof(float));
            pc->parent[k] = at;
            pc->first_child[k] = -1;
            int32_t *head = at == ROOT ? &pc->root_child : &pc->first_child[at];
            pc->next_sib[k] = *head;
            *head = k;
            pc->st.used_blocks++;
            pc->st.inserted_blocks++;
        }
        pc->used[k] = pc->tick;
        at = k;
    }
}

void azr_pc_count(azr_gen_prefix *pc, int64_t plen, int64_t reused) {
    pc->st.prompt_tokens += plen;
    pc->st.reused_tokens += reused;
}
