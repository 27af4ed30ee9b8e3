/*
 * model.c -- Llama / Qwen2 decoder: arenas, tensor table, activations,
 * forward, backward, AdamW step, safetensors load/save. See model.h for the
 * weight layout and the contracts.
 * Owns: the order of operations of the model and its memory. Must not:
 * print, abort, allocate per token, or parse config.json.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../backend/blas.h"
#include "../backend/cpu/kernels.h"
#include "../io/safetensors.h"

/* Activations: one arena carved by act_layout(). */
typedef struct {
    int32_t *tok, *pos, *tgt, *rowb; /* (N): token, position, target, batch row */
    float *dcoef;                     /* (N): -weight of each token's log-prob */
    float *head_lp, *head_ent;        /* (chunk) */
    int32_t *hrow;                    /* (N): rows the head runs on when it skips weight-0 rows */
    int32_t *htgt;                    /* (chunk): their targets, gathered */
    float *hcoef;                     /* (chunk): their -weights, gathered */
    int64_t *seq_off, *seq_len;
    float *rope_cos, *rope_sin; /* (N, D/2) */
    float *res;                 /* training: (L+1, N, C) layer inputs + last output; else (N, C) */
    float *mid;                 /* training: (L, N, C) after the attention residual */
    float *rstd1, *rstd2;       /* (Ls, N) */
    float *qkv;                 /* (Ls, N, Dqkv) */
    float *att;                 /* (Ls, N, Dq) */
    float *lse;                 /* (Ls, Hq, N) */
    float *gu;                  /* (Ls, N, 2I) */
    float *rstdf;               /* (N) */
    float *xf;                  /* (N, C) final normed */
    float *xn;                  /* (N, C) scratch */
    float *h;                   /* (N, I) scratch */
    float *logits;              /* (chunk, V) */
    float *attn_scratch;
    /* backward */
    float *dx, *dxn, *dqkv, *datt, *dgu, *dh; /* (N,C) (N,C) (N,Dqkv) (N,Dq) (N,2I) (N,I) */
} azr_acts;

struct azr_model {
    azr_model_config cfg;
    int64_t n_params;
    int64_t dq, dkv, dqkv;
    int64_t layer_floats, off_layers, off_norm, off_head;
    /* offsets inside one layer block */
    int64_t lo_in, lo_qkv, lo_bqkv, lo_o, lo_post, lo_gu, lo_down;
    float *params, *grads, *adam_m, *adam_v;
    int64_t adam_t;
    int n_tensors;
    azr_tensor_info *tensors;
    float *acts_mem;
    int64_t acts_cap; /* floats */
    azr_acts a;
};

/* Rows of logits computed at once. Large enough that the head's weight
 * gradient (V x C, hundreds of MB for big vocabularies) is read and written
 * only a few times per step (a chunk of r rows costs one pass over it), small
 * enough to stay within ~128 MB of logits. */
static int64_t head_chunk_rows(int64_t N, int64_t V) {
    int64_t c = (32 * 1024 * 1024) / (V > 0 ? V : 1);
    if (c < 256) c = 256;
    if (c > N) c = N;
    return c < 1 ? 1 : c;
}

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Carve the activation arena for N packed tokens of B rows with max length
 * T; returns the total floats. base == NULL only measures. */
static int64_t act_layout(const azr_model_config *c, int64_t N, int64_t B, int64_t T, int training,
                          float *base, azr_acts *a) {
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t D = c->head_dim, Dq = (int64_t)c->n_heads * D;
    int64_t Dqkv = Dq + 2 * (int64_t)c->n_kv_heads * D;
    int64_t Ls = training ? c->n_layers : 1;
    int64_t off = 0;
    azr_acts tmp;
    if (!a) a = &tmp;
#define CARVE(field, type, count)                                                \
    do {                                                                         \
        a->field = base ? (type *)(void *)(base + off) : NULL;                   \
        off += ((int64_t)(count) * (int64_t)sizeof(type) / 4 + 15) / 16 * 16;    \
    } while (0)
    CARVE(tok, int32_t, N);
    CARVE(pos, int32_t, N);
    CARVE(tgt, int32_t, N);
    CARVE(rowb, int32_t, N);
    CARVE(head_lp, float, head_chunk_rows(N, V));
    CARVE(head_ent, float, head_chunk_rows(N, V));
    CARVE(dcoef, float, N);
    CARVE(hrow, int32_t, training ? N : 0);
    CARVE(htgt, int32_t, training ? head_chunk_rows(N, V) : 0);
    CARVE(hcoef, float, training ? head_chunk_rows(N, V) : 0);
    CARVE(seq_off, int64_t, B);
    CARVE(seq_len, int64_t, B);
    CARVE(rope_cos, float, N * (D / 2));
    CARVE(rope_sin, float, N * (D / 2));
    CARVE(res, float, (training ? (Ls + 1) : 1) * N * C);
    CARVE(mid, float, (training ? Ls : 0) * N * C);
    CARVE(rstd1, float, Ls * N);
    CARVE(rstd2, float, Ls * N);
    CARVE(qkv, float, Ls * N * Dqkv);
    CARVE(att, float, Ls * N * Dq);
    CARVE(lse, float, Ls * c->n_heads * N);
    CARVE(gu, float, Ls * N * 2 * I);
    CARVE(rstdf, float, N);
    CARVE(xf, float, N * C);
    CARVE(xn, float, N * C);
    CARVE(h, float, N * I);
    CARVE(logits, float, head_chunk_rows(N, V) * V);
    CARVE(attn_scratch, float, azr_attention_scratch_floats(T, max_threads()));
    int64_t t = training ? 1 : 0;
    CARVE(dx, float, t * N * C);
    CARVE(dxn, float, t * N * C);
    CARVE(dqkv, float, t * N * Dqkv);
    CARVE(datt, float, t * N * Dq);
    CARVE(dgu, float, t * N * 2 * I);
    CARVE(dh, float, t * N * I);
#undef CARVE
    return off;
}

azr_status azr_model_config_check(const azr_model_config *c) {
    if (!c) return azr_set_error(AZR_ERR_INVALID, "model config is NULL");
    if (c->vocab_size <= 0 || c->vocab_size > (1LL << 31) - 1)
        return azr_set_error(AZR_ERR_INVALID, "config: vocab_size %lld must be in 1..2^31-1",
                             (long long)c->vocab_size);
    if (c->hidden_size <= 0 || c->hidden_size > (1 << 20))
        return azr_set_error(AZR_ERR_INVALID, "config: hidden_size %lld out of range",
                             (long long)c->hidden_size);
    if (c->intermediate_size <= 0 || c->intermediate_size > (1 << 22))
        return azr_set_error(AZR_ERR_INVALID, "config: intermediate_size %lld out of range",
                             (long long)c->intermediate_size);
    if (c->n_layers <= 0 || c->n_layers > 1024)
        return azr_set_error(AZR_ERR_INVALID, "config: num_hidden_layers %d out of range",
                             c->n_layers);
    if (c->n_heads <= 0 || c->n_heads > 4096)
        return azr_set_error(AZR_ERR_INVALID, "config: num_attention_heads %d out of range",
                             c->n_heads);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
        return azr_set_error(AZR_ERR_INVALID,
                             "config: num_key_value_heads %d must divide num_attention_heads %d",
                             c->n_kv_heads, c->n_heads);
    if (c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > 2048)
        return azr_set_error(AZR_ERR_INVALID, "config: head_dim %d must be even and <= 2048",
                             c->head_dim);
    if (!(c->rms_eps > 0.0f) || !isfinite(c->rms_eps))
        return azr_set_error(AZR_ERR_INVALID, "config: rms_norm_eps must be positive");
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return azr_set_error(AZR_ERR_INVALID, "config: rope_theta must be positive");
    return AZR_OK;
}

static void add_tensor(azr_model *m, const char *name, int64_t off, int ndim, int64_t s0,
                       int64_t s1) {
    azr_tensor_info *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = off;
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = ndim > 1 ? s1 : 1;
    t->numel = s0 * (ndim > 1 ? s1 : 1);
}

azr_status azr_model_new(const azr_model_config *cfg, azr_model **out) {
    if (!out) return azr_set_error(AZR_ERR_INVALID, "azr_model_new: NULL output");
    *out = NULL;
    azr_status st = azr_model_config_check(cfg);
    if (st) return st;
    azr_model *m = calloc(1, sizeof *m);
    if (!m) return azr_set_error(AZR_ERR_NOMEM, "out of memory creating a model");
    m->cfg = *cfg;
    int64_t C = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    m->dq = (int64_t)cfg->n_heads * cfg->head_dim;
    m->dkv = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    m->dqkv = m->dq + 2 * m->dkv;
    int64_t o = 0;
    m->lo_in = o; o += C;
    m->lo_qkv = o; o += m->dqkv * C;
    m->lo_bqkv = o; o += cfg->qkv_bias ? m->dqkv : 0;
    m->lo_o = o; o += C * m->dq;
    m->lo_post = o; o += C;
    m->lo_gu = o; o += 2 * I * C;
    m->lo_down = o; o += C * I;
    m->layer_floats = o;
    m->off_layers = V * C;
    m->off_norm = m->off_layers + (int64_t)cfg->n_layers * m->layer_floats;
    m->off_head = m->off_norm + C;
    m->n_params = m->off_head + (cfg->tie_embeddings ? 0 : V * C);

    m->tensors = calloc((size_t)cfg->n_layers * 12 + 4, sizeof(azr_tensor_info));
    if (!m->tensors) {
        free(m);
        return azr_set_error(AZR_ERR_NOMEM, "out of memory creating a model");
    }
    char nm[96];
    add_tensor(m, "model.embed_tokens.weight", 0, 2, V, C);
    for (int l = 0; l < cfg->n_layers; l++) {
        int64_t b = m->off_layers + (int64_t)l * m->layer_floats;
#define T2(suffix, off, s0, s1)                                            \
    snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);              \
    add_tensor(m, nm, b + (off), (s1) ? 2 : 1, s0, s1)
        T2("input_layernorm.weight", m->lo_in, C, 0);
        T2("self_attn.q_proj.weight", m->lo_qkv, m->dq, C);
        T2("self_attn.k_proj.weight", m->lo_qkv + m->dq * C, m->dkv, C);
        T2("self_attn.v_proj.weight", m->lo_qkv + (m->dq + m->dkv) * C, m->dkv, C);
        if (cfg->qkv_bias) {
            T2("self_attn.q_proj.bias", m->lo_bqkv, m->dq, 0);
            T2("self_attn.k_proj.bias", m->lo_bqkv + m->dq, m->dkv, 0);
            T2("self_attn.v_proj.bias", m->lo_bqkv + m->dq + m->dkv, m->dkv, 0);
        }
        T2("self_attn.o_proj.weight", m->lo_o, C, m->dq);
        T2("post_attention_layernorm.weight", m->lo_post, C, 0);
        T2("mlp.gate_proj.weight", m->lo_gu, I, C);
        T2("mlp.up_proj.weight", m->lo_gu + I * C, I, C);
        T2("mlp.down_proj.weight", m->lo_down, C, I);
#undef T2
    }
    add_tensor(m, "model.norm.weight", m->off_norm, 1, C, 0);
    if (!cfg->tie_embeddings) add_tensor(m, "lm_head.weight", m->off_head, 2, V, C);

    /* on huge pages like the packed decode weights: read end to end by the
     * training products, the weight hash and the benchmark's bandwidth probe */
    m->params = azr_alloc_streamed((size_t)m->n_params * sizeof(float), "the parameter arena");
    if (m->params) memset(m->params, 0, (size_t)m->n_params * sizeof(float));
    if (!m->params) {
        st = azr_set_error(AZR_ERR_NOMEM, "cannot allocate the parameter arena (%lld bytes)",
                           (long long)m->n_params * 4);
        azr_model_free(m);
        return st;
    }
    *out = m;
    return AZR_OK;
}

void azr_model_free(azr_model *m) {
    if (!m) return;
    azr_free(m->params);
    azr_free(m->grads);
    azr_free(m->adam_m);
    azr_free(m->adam_v);
    azr_free(m->acts_mem);
    free(m->tensors);
    free(m);
}

const azr_model_config *azr_model_cfg(const azr_model *m) { return &m->cfg; }
int64_t azr_model_num_params(const azr_model *m) { return m->n_params; }
int azr_model_num_tensors(const azr_model *m) { return m->n_tensors; }
const azr_tensor_info *azr_model_tensor(const azr_model *m, int i) {
    return (i >= 0 && i < m->n_tensors) ? &m->tensors[i] : NULL;
}
float *azr_model_params(azr_model *m) { return m->params; }
float *azr_model_grads(azr_model *m) { return m->grads; }
float *azr_model_adam_m(azr_model *m) { return m->adam_m; }
float *azr_model_adam_v(azr_model *m) { return m->adam_v; }
int64_t azr_model_adam_step_count(const azr_model *m) { return m->adam_t; }
void azr_model_set_adam_step_count(azr_model *m, int64_t t) { m->adam_t = t < 0 ? 0 : t; }

azr_status azr_model_ensure_grads(azr_model *m) {
    if (m->grads) return AZR_OK;
    m->grads = azr_calloc((size_t)m->n_params * sizeof(float), "the gradient arena");
    return m->grads ? AZR_OK : AZR_ERR_NOMEM;
}

azr_status azr_model_ensure_adam(azr_model *m) {
    if (!m->adam_m) m->adam_m = azr_calloc((size_t)m->n_params * sizeof(float), "AdamW m");
    if (!m->adam_m) return AZR_ERR_NOMEM;
    if (!m->adam_v) m->adam_v = azr_calloc((size_t)m->n_params * sizeof(float), "AdamW v");
    return m->adam_v ? AZR_OK : AZR_ERR_NOMEM;
}

void azr_model_zero_grad(azr_model *m) {
    if (m->grads) memset(m->grads, 0, (size_t)m->n_params * sizeof(float));
}

void azr_model_free_activations(azr_model *m) {
    if (!m) return;
    azr_free(m->acts_mem);
    m->acts_mem = NULL;
    m->acts_cap = 0;
    memset(&m->a, 0, sizeof m->a);
}

int64_t azr_model_activation_bytes(const azr_model *m) { return m ? m->acts_cap * 4 : 0; }

azr_layer_ptrs azr_model_layer(const azr_model *m, float *arena, int l) {
    float *b = arena + m->off_layers + (int64_t)l * m->layer_floats;
    azr_layer_ptrs p;
    p.input_norm = b + m->lo_in;
    p.wqkv = b + m->lo_qkv;
    p.bqkv = m->cfg.qkv_bias ? b + m->lo_bqkv : NULL;
    p.wo = b + m->lo_o;
    p.post_norm = b + m->lo_post;
    p.wgu = b + m->lo_gu;
    p.wdown = b + m->lo_down;
    return p;
}

float *azr_model_embed_ptr(const azr_model *m, float *arena) { return arena; }
float *azr_model_norm_ptr(const azr_model *m, float *arena) { return arena + m->off_norm; }
float *azr_model_head_ptr(const azr_model *m, float *arena) {
    return m->cfg.tie_embeddings ? arena : arena + m->off_head;
}

int64_t azr_model_memory_estimate(const azr_model_config *cfg, int64_t B, int64_t T,
                                  int training) {
    if (azr_model_config_check(cfg) != AZR_OK || B < 0 || T < 0) return -1;
    azr_model_config c = *cfg;
    int64_t C = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
    int64_t dq = (int64_t)c.n_heads * c.head_dim, dkv = (int64_t)c.n_kv_heads * c.head_dim;
    int64_t layer = C + (dq + 2 * dkv) * C + (c.qkv_bias ? dq + 2 * dkv : 0) + C * dq + C +
                    3 * I * C;
    int64_t np = V * C + c.n_layers * layer + C + (c.tie_embeddings ? 0 : V * C);
    int64_t bytes = np * 4 * (training ? 4 : 1);
    bytes += act_layout(&c, B * T, B, T, training, NULL, NULL) * 4;
    return bytes;
}

/* Grow the activation arena to fit; carve it into m->a. */
static azr_status ensure_acts(azr_model *m, int64_t N, int64_t B, int64_t T, int training) {
    int64_t need = act_layout(&m->cfg, N, B, T, training, NULL, NULL);
    if (need > m->acts_cap) {
        azr_free(m->acts_mem);
        m->acts_mem = NULL;
        m->acts_cap = 0;
        m->acts_mem = azr_alloc((size_t)need * sizeof(float), "activations");
        if (!m->acts_mem)
            return azr_set_error(AZR_ERR_NOMEM,
                                 "cannot allocate %lld bytes of activations for %lld tokens "
                                 "(batch %lld x %lld); use a smaller batch",
                                 (long long)need * 4, (long long)N, (long long)B, (long long)T);
        m->acts_cap = need;
    }
    act_layout(&m->cfg, N, B, T, training, m->acts_mem, &m->a);
    return AZR_OK;
}

/* ---- per-layer pieces -------------------------------------------------------- */

void azr_model_embed(const azr_model *m, const int32_t *tok, int64_t n, float *x) {
    int64_t C = m->cfg.hidden_size;
#pragma omp parallel for schedule(static) if (n * C > (1 << 20))
    for (int64_t i = 0; i < n; i++)
        memcpy(x + i * C, m->params + (int64_t)tok[i] * C, (size_t)C * sizeof(float));
}

void azr_model_attn_qkv(const azr_model *m, int l, const float *x, int64_t n, float *xn,
                        float *rstd, float *qkv, const float *cos_t, const float *sin_t) {
    azr_layer_ptrs w = azr_model_layer(m, m->params, l);
    int64_t C = m->cfg.hidden_size;
    azr_rmsnorm_forward(xn, rstd, x, w.input_norm, n, C, m->cfg.rms_eps);
    azr_linear_forward(qkv, xn, w.wqkv, w.bqkv, n, C, m->dqkv);
    azr_rope_apply(qkv, n, m->cfg.n_heads, m->cfg.head_dim, m->dqkv, cos_t, sin_t, 0);
    azr_rope_apply(qkv + m->dq, n, m->cfg.n_kv_heads, m->cfg.head_dim, m->dqkv, cos_t, sin_t, 0);
}

void azr_model_attn_out(const azr_model *m, int l, const float *att, int64_t n, const float *xin,
                        float *xout) {
    azr_layer_ptrs w = azr_model_layer(m, m->params, l);
    int64_t C = m->cfg.hidden_size;
    if (n <= 0) return;
    if (xout != xin) memcpy(xout, xin, (size_t)(n * C) * sizeof(float));
    azr_gemm_wb(0, 1, n, C, m->dq, 1.0f, att, m->dq, w.wo, m->dq, 1.0f, xout, C);
}

void azr_model_mlp(const azr_model *m, int l, const float *xin, float *xout, int64_t n, float *xn,
                   float *rstd, float *gu, float *h) {
    azr_layer_ptrs w = azr_model_layer(m, m->params, l);
    int64_t C = m->cfg.hidden_size, I = m->cfg.intermediate_size;
    if (n <= 0) return;
    azr_rmsnorm_forward(xn, rstd, xin, w.post_norm, n, C, m->cfg.rms_eps);
    azr_linear_forward(gu, xn, w.wgu, NULL, n, C, 2 * I);
    azr_swiglu_forward(h, gu, n, I);
    if (xout != xin) memcpy(xout, xin, (size_t)(n * C) * sizeof(float));
    azr_gemm_wb(0, 1, n, C, I, 1.0f, h, I, w.wdown, I, 1.0f, xout, C);
}

void azr_model_head(const azr_model *m, const float *x, int64_t n, float *xn, float *rstd,
                    float *logits, int64_t chunk_rows) {
    int64_t C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    azr_rmsnorm_forward(xn, rstd, x, m->params + m->off_norm, n, C, m->cfg.rms_eps);
    const float *wh = azr_model_head_ptr(m, m->params);
    if (chunk_rows <= 0) chunk_rows = n;
    for (int64_t r0 = 0; r0 < n; r0 += chunk_rows) {
        int64_t rows = n - r0 < chunk_rows ? n - r0 : chunk_rows;
        azr_linear_forward(logits + r0 * V, xn + r0 * C, wh, NULL, rows, C, V);
    }
}

/* ---- forward / backward --------------------------------------------------- */

static azr_status pack_batch(azr_model *m, const int32_t *ids, const int32_t *targets,
                             const float *weights, const int64_t *lengths, int64_t B, int64_t T,
                             int64_t *N_out, int64_t *Tmax_out) {
    int64_t V = m->cfg.vocab_size, N = 0, Tmax = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t L = lengths ? lengths[b] : T;
        if (L < 0 || L > T)
            return azr_set_error(AZR_ERR_INVALID, "lengths[%lld] = %lld is outside 0..%lld",
                                 (long long)b, (long long)L, (long long)T);
        for (int64_t t = 0; t < L; t++) {
            int32_t id = ids[b * T + t];
            if (id < 0 || id >= V)
                return azr_set_error(AZR_ERR_INVALID,
                                     "ids[%lld, %lld] = %d is outside the vocabulary 0..%lld",
                                     (long long)b, (long long)t, id, (long long)V - 1);
            if (targets) {
                int32_t tg = targets[b * T + t];
                if (tg < 0 || tg >= V)
                    return azr_set_error(AZR_ERR_INVALID,
                                         "targets[%lld, %lld] = %d is outside the vocabulary 0..%lld",
                                         (long long)b, (long long)t, tg, (long long)V - 1);
            }
            if (weights && !isfinite(weights[b * T + t]))
                return azr_set_error(AZR_ERR_INVALID, "weights[%lld, %lld] is not finite",
                                     (long long)b, (long long)t);
        }
        N += L;
        if (L > Tmax) Tmax = L;
    }
    *N_out = N;
    *Tmax_out = Tmax;
    return AZR_OK;
}

static azr_status model_run(azr_model *m, const int32_t *ids, const int32_t *targets,
                            const float *weights, const int64_t *lengths, int64_t B, int64_t T,
                            float *logp, float *ent, float *logits, double *loss);

/* In bf16 precision the weights' packed bf16 panels are kept for the whole
 * call (the parameters do not change during it) and freed at its end. */
azr_status azr_model_run(azr_model *m, const int32_t *ids, const int32_t *targets,
                         const float *weights, const int64_t *lengths, int64_t B, int64_t T,
                         float *logp, float *ent, float *logits, double *loss) {
    int keep = azr_gemm_get_precision();
    if (keep) azr_gemm_weight_cache(1);
    azr_status st = model_run(m, ids, targets, weights, lengths, B, T, logp, ent, logits, loss);
    if (keep) azr_gemm_weight_cache(0);
    return st;
}

static azr_status model_run(azr_model *m, const int32_t *ids, const int32_t *targets,
                            const float *weights, const int64_t *lengths, int64_t B, int64_t T,
                            float *logp, float *ent, float *logits, double *loss) {
    if (loss) *loss = 0.0;
    if (!m) return azr_set_error(AZR_ERR_INVALID, "model is NULL");
    if (B < 0 || T < 0) return azr_set_error(AZR_ERR_INVALID, "negative batch shape");
    if (B == 0 || T == 0) return AZR_OK;
    if (!ids) return azr_set_error(AZR_ERR_INVALID, "ids is NULL");
    if ((logp || weights) && !targets)
        return azr_set_error(AZR_ERR_INVALID, "targets are needed for log-probs and the loss");
    const azr_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int Hq = c->n_heads, Hkv = c->n_kv_heads, D = c->head_dim, L = c->n_layers;
    int64_t Dq = m->dq, Dqkv = m->dqkv;
    int training = weights != NULL;
    int64_t N = 0, Tmax = 0;
    azr_status st = pack_batch(m, ids, targets, weights, lengths, B, T, &N, &Tmax);
    if (st) return st;
    if (logp) memset(logp, 0, (size_t)(B * T) * sizeof(float));
    if (ent) memset(ent, 0, (size_t)(B * T) * sizeof(float));
    if (logits) memset(logits, 0, (size_t)(B * T * V) * sizeof(float));
    if (N == 0) return AZR_OK;
    if (training && (st = azr_model_ensure_grads(m))) return st;
    if ((st = ensure_acts(m, N, B, Tmax, training))) return st;
    azr_acts *a = &m->a;

    /* pack */
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t Lb = lengths ? lengths[b] : T;
        a->seq_off[b] = n;
        a->seq_len[b] = Lb;
        for (int64_t t = 0; t < Lb; t++, n++) {
            a->tok[n] = ids[b * T + t];
            a->pos[n] = (int32_t)t;
            a->rowb[n] = (int32_t)b;
            a->tgt[n] = targets ? targets[b * T + t] : 0;
            a->dcoef[n] = weights ? -weights[b * T + t] : 0.0f;
        }
    }

    /* forward through the blocks */
    azr_rope_table(a->rope_cos, a->rope_sin, a->pos, N, D, c->rope_theta);
    azr_model_embed(m, a->tok, N, a->res);
    for (int l = 0; l < L; l++) {
        int64_t s = training ? l : 0;
        float *xin = a->res + (training ? (int64_t)l * N * C : 0);
        float *xmid = training ? a->mid + (int64_t)l * N * C : xin;
        float *xout = training ? a->res + (int64_t)(l + 1) * N * C : xin;
        float *qkv = a->qkv + s * N * Dqkv, *att = a->att + s * N * Dq;
        azr_model_attn_qkv(m, l, xin, N, a->xn, a->rstd1 + s * N, qkv, a->rope_cos, a->rope_sin);
        azr_attention_forward(att, a->lse + s * Hq * N, qkv, N, (int)B, a->seq_off, a->seq_len, Hq,
                              Hkv, D, a->attn_scratch);
        azr_model_attn_out(m, l, att, N, xin, xmid);
        azr_model_mlp(m, l, xmid, xout, N, a->xn, a->rstd2 + s * N, a->gu + s * N * 2 * I, a->h);
    }
    float *xlast = a->res + (training ? (int64_t)L * N * C : 0);
    azr_rmsnorm_forward(a->xf, a->rstdf, xlast, m->params + m->off_norm, N, C, c->rms_eps);

    /* head: chunked vocabulary projection, log-softmax, and (training) its
     * backward while the chunk's logits are still in cache-sized memory */
    const float *wh = azr_model_head_ptr(m, m->params);
    float *dwh = training ? azr_model_head_ptr(m, m->grads) : NULL;
    int64_t chunk = head_chunk_rows(N, V);
    double total = 0.0;
    if (training && !logp && !ent && !logits) {
        /* Nobody reads a weight-0 row's log-prob or entropy, and its logits'
         * gradient is exactly 0: run the head on the weighted rows only,
         * gathered (into xn and dx, both free until the blocks' backward),
         * and give the other rows a zero gradient. */
        int64_t H = 0;
        for (int64_t r = 0; r < N; r++)
            if (a->dcoef[r] != 0.0f) a->hrow[H++] = (int32_t)r;
        memset(a->dxn, 0, (size_t)(N * C) * sizeof(float));
        for (int64_t h0 = 0; h0 < H; h0 += chunk) {
            int64_t rows = H - h0 < chunk ? H - h0 : chunk;
            const int32_t *hr = a->hrow + h0;
#pragma omp parallel for schedule(static) if (rows * C > 65536)
            for (int64_t k = 0; k < rows; k++) {
                memcpy(a->xn + k * C, a->xf + (int64_t)hr[k] * C, (size_t)C * sizeof(float));
                a->htgt[k] = a->tgt[hr[k]];
                a->hcoef[k] = a->dcoef[hr[k]];
            }
            azr_linear_forward(a->logits, a->xn, wh, NULL, rows, C, V);
            azr_vocab_logsoftmax(a->logits, rows, V, a->htgt, a->head_lp, a->head_ent, NULL, a->hcoef);
            for (int64_t k = 0; k < rows; k++) {
                if (!isfinite(a->head_lp[k]))
                    return azr_set_error(AZR_ERR_NUMERIC,
                                         "non-finite log-prob %g at batch row %lld, position %lld "
                                         "(the parameters or inputs hold NaN/inf)", (double)a->head_lp[k],
                                         (long long)a->rowb[hr[k]], (long long)a->pos[hr[k]]);
                total += (double)a->hcoef[k] * (double)a->head_lp[k];
            }
            azr_linear_backward(a->dx, dwh, NULL, a->logits, a->xn, wh, rows, C, V, 0);
#pragma omp parallel for schedule(static) if (rows * C > 65536)
            for (int64_t k = 0; k < rows; k++)
                memcpy(a->dxn + (int64_t)hr[k] * C, a->dx + k * C, (size_t)C * sizeof(float));
        }
    }
    for (int64_t r0 = 0; r0 < N && !(training && !logp && !ent && !logits); r0 += chunk) {
        int64_t rows = N - r0 < chunk ? N - r0 : chunk;
        azr_linear_forward(a->logits, a->xf + r0 * C, wh, NULL, rows, C, V);
        if (logits)
            for (int64_t r = 0; r < rows; r++)
                memcpy(logits + ((int64_t)a->rowb[r0 + r] * T + a->pos[r0 + r]) * V,
                       a->logits + r * V, (size_t)V * sizeof(float));
        float *lp = a->head_lp, *en = a->head_ent;
        if (targets)
            azr_vocab_logsoftmax(a->logits, rows, V, a->tgt + r0, lp, en, NULL,
                                 training ? a->dcoef + r0 : NULL);
        else
            azr_vocab_logsoftmax(a->logits, rows, V, NULL, NULL, en, NULL, NULL);
        for (int64_t r = 0; r < rows; r++) {
            int64_t row = r0 + r, b = a->rowb[row], t = a->pos[row];
            if (targets) {
                if (!isfinite(lp[r]) && (!training || a->dcoef[row] != 0.0f))
                    return azr_set_error(AZR_ERR_NUMERIC,
                                         "non-finite log-prob %g at batch row %lld, position %lld "
                                         "(the parameters or inputs hold NaN/inf)",
                                         (double)lp[r], (long long)b, (long long)t);
                if (logp) logp[b * T + t] = lp[r];
                total += (double)a->dcoef[row] * (double)lp[r];
            }
            if (ent) ent[b * T + t] = en[r];
        }
        if (training) {
            azr_linear_backward(a->dxn + r0 * C, dwh, NULL, a->logits, a->xf + r0 * C, wh, rows,
                                C, V, 0);
        }
    }
    if (loss) *loss = total;
    if (!training) return AZR_OK;
    if (!isfinite(total))
        return azr_set_error(AZR_ERR_NUMERIC, "the loss is not finite (%g)", total);

    /* backward through the blocks */
    memset(a->dx, 0, (size_t)(N * C) * sizeof(float));
    azr_rmsnorm_backward(a->dx, m->grads + m->off_norm, a->dxn, xlast, m->params + m->off_norm,
                         a->rstdf, N, C);
    for (int l = L - 1; l >= 0; l--) {
        azr_layer_ptrs w = azr_model_layer(m, m->params, l);
        azr_layer_ptrs g = azr_model_layer(m, m->grads, l);
        float *xin = a->res + (int64_t)l * N * C, *xmid = a->mid + (int64_t)l * N * C;
        float *qkv = a->qkv + (int64_t)l * N * Dqkv, *att = a->att + (int64_t)l * N * Dq;
        float *gu = a->gu + (int64_t)l * N * 2 * I;
        /* MLP: xout = xmid + down(swiglu(gate_up(norm2(xmid)))) */
        azr_swiglu_forward(a->h, gu, N, I);
        azr_linear_backward(a->dh, g.wdown, NULL, a->dx, a->h, w.wdown, N, I, C, 0);
        azr_swiglu_backward(a->dgu, a->dh, gu, N, I);
        azr_rmsnorm_forward(a->xn, NULL, xmid, w.post_norm, N, C, c->rms_eps);
        azr_linear_backward(a->dxn, g.wgu, NULL, a->dgu, a->xn, w.wgu, N, C, 2 * I, 0);
        azr_rmsnorm_backward(a->dx, g.post_norm, a->dxn, xmid, w.post_norm,
                             a->rstd2 + (int64_t)l * N, N, C);
        /* attention: xmid = xin + o_proj(attn(rope(qkv(norm1(xin))))) */
        azr_linear_backward(a->datt, g.wo, NULL, a->dx, att, w.wo, N, Dq, C, 0);
        azr_attention_backward(a->dqkv, a->datt, qkv, att, a->lse + (int64_t)l * Hq * N, N,
                               (int)B, a->seq_off, a->seq_len, Hq, Hkv, D, a->attn_scratch);
        azr_rope_apply(a->dqkv, N, Hq, D, Dqkv, a->rope_cos, a->rope_sin, 1);
        azr_rope_apply(a->dqkv + Dq, N, Hkv, D, Dqkv, a->rope_cos, a->rope_sin, 1);
        azr_rmsnorm_forward(a->xn, NULL, xin, w.input_norm, N, C, c->rms_eps);
        azr_linear_backward(a->dxn, g.wqkv, g.bqkv, a->dqkv, a->xn, w.wqkv, N, C, Dqkv, 0);
        azr_rmsnorm_backward(a->dx, g.input_norm, a->dxn, xin, w.input_norm,
                             a->rstd1 + (int64_t)l * N, N, C);
    }
    /* embedding: scatter-add (serial: ids may repeat) */
    for (int64_t i = 0; i < N; i++) {
        float *ge = m->grads + (int64_t)a->tok[i] * C;
        const float *d = a->dx + i * C;
#pragma omp simd
        for (int64_t k = 0; k < C; k++) ge[k] += d[k];
    }
    return AZR_OK;
}

azr_status azr_model_adamw_step(azr_model *m, float lr, float beta1, float beta2, float eps,
                                float weight_decay, float max_norm, double *grad_norm) {
    if (!m) return azr_set_error(AZR_ERR_INVALID, "model is NULL");
    if (!m->grads)
        return azr_set_error(AZR_ERR_STATE,
                             "AdamW step before any backward: there are no gradients yet");
    double norm = sqrt(azr_sumsq(m->grads, m->n_params));
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return azr_set_error(AZR_ERR_NUMERIC,
                             "the gradient norm is not finite (%g); parameters not updated", norm);
    azr_status st = azr_model_ensure_adam(m);
    if (st) return st;
    float scale = 1.0f;
    if (max_norm > 0.0f && norm > max_norm) scale = (float)(max_norm / (norm + 1e-6));
    m->adam_t++;
    azr_adamw_update(m->params, m->grads, m->adam_m, m->adam_v, m->n_params, lr, beta1, beta2, eps,
                     weight_decay, m->adam_t, scale);
    return AZR_OK;
}

/* ---- safetensors ------------------------------------------------------------ */

static int shape_matches(const azr_st_tensor *t, const azr_tensor_info *w) {
    if (t->ndim != w->ndim) return 0;
    for (int d = 0; d < w->ndim; d++)
        if (t->shape[d] != w->shape[d]) return 0;
    return 1;
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

azr_status azr_model_load_safetensors(azr_model *m, const char *const *paths, int n_paths) {
    if (!m || !paths || n_paths <= 0)
        return azr_set_error(AZR_ERR_INVALID, "load_safetensors: no files given");
    azr_st_file **files = calloc((size_t)n_paths, sizeof *files);
    char *used = NULL;
    int *used_off = calloc((size_t)n_paths + 1, sizeof(int));
    if (!files || !used_off) {
        free(files);
        free(used_off);
        return azr_set_error(AZR_ERR_NOMEM, "out of memory loading weights");
    }
    azr_status st = AZR_OK;
    int total = 0;
    for (int i = 0; i < n_paths; i++) {
        if ((st = azr_st_open(paths[i], &files[i]))) goto done;
        used_off[i] = total;
        total += files[i]->n_tensors;
    }
    used_off[n_paths] = total;
    used = calloc((size_t)total + 1, 1);
    if (!used) {
        st = azr_set_error(AZR_ERR_NOMEM, "out of memory loading weights");
        goto done;
    }
    for (int k = 0; k < m->n_tensors; k++) {
        const azr_tensor_info *w = &m->tensors[k];
        int fi = -1, ti = -1;
        for (int i = 0; i < n_paths && ti < 0; i++) {
            ti = azr_st_find(files[i], w->name);
            if (ti >= 0) fi = i;
        }
        /* aliases: __metadata__ {name: stored_name}, or tied lm_head */
        for (int i = 0; i < n_paths && ti < 0; i++) {
            const char *alias = azr_st_meta(files[i], w->name);
            if (!alias) continue;
            for (int j = 0; j < n_paths && ti < 0; j++) {
                ti = azr_st_find(files[j], alias);
                if (ti >= 0) fi = j;
            }
        }
        if (ti < 0 && k == 0 && m->cfg.tie_embeddings) {
            for (int i = 0; i < n_paths && ti < 0; i++) {
                ti = azr_st_find(files[i], "lm_head.weight");
                if (ti >= 0) fi = i;
            }
        }
        if (ti < 0) {
            st = azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s' is missing (the config expects it)",
                               paths[0], w->name);
            goto done;
        }
        const azr_st_tensor *t = &files[fi]->tensors[ti];
        if (!shape_matches(t, w)) {
            char got[96], want[96];
            fmt_shape(got, sizeof got, t->ndim, t->shape);
            fmt_shape(want, sizeof want, w->ndim, w->shape);
            st = azr_set_error(AZR_ERR_FORMAT, "%s: tensor '%s' has shape %s, the config expects %s",
                               files[fi]->path, t->name, got, want);
            goto done;
        }
        if ((st = azr_st_read_f32(files[fi], ti, m->params + w->offset))) goto done;
        used[used_off[fi] + ti] = 1;
    }
    for (int i = 0; i < n_paths; i++)
        for (int j = 0; j < files[i]->n_tensors; j++) {
            const char *name = files[i]->tensors[j].name;
            if (used[used_off[i] + j]) continue;
            size_t ln = strlen(name);
            if (ln >= 19 && strcmp(name + ln - 19, "rotary_emb.inv_freq") == 0) continue;
            if (m->cfg.tie_embeddings && strcmp(name, "lm_head.weight") == 0) continue;
            st = azr_set_error(AZR_ERR_FORMAT,
                               "%s: unexpected tensor '%s' (not part of a model with this config: "
                               "check attention_bias / tie_word_embeddings / num_hidden_layers)",
                               files[i]->path, name);
            goto done;
        }
done:
    for (int i = 0; i < n_paths; i++) azr_st_close(files[i]);
    free(files);
    free(used);
    free(used_off);
    return st;
}

azr_status azr_model_save_safetensors(azr_model *m, const char *path) {
    if (!m || !path) return azr_set_error(AZR_ERR_INVALID, "save_safetensors: NULL argument");
    int n = m->n_tensors;
    const char **names = malloc((size_t)n * sizeof *names);
    int *ndims = malloc((size_t)n * sizeof *ndims);
    const int64_t **shapes = malloc((size_t)n * sizeof *shapes);
    const float **data = malloc((size_t)n * sizeof *data);
    azr_status st;
    if (!names || !ndims || !shapes || !data) {
        st = azr_set_error(AZR_ERR_NOMEM, "out of memory saving %s", path);
    } else {
        for (int i = 0; i < n; i++) {
            names[i] = m->tensors[i].name;
            ndims[i] = m->tensors[i].ndim;
            shapes[i] = m->tensors[i].shape;
            data[i] = m->params + m->tensors[i].offset;
        }
        const char *mk[1] = {"format"}, *mv[1] = {"pt"};
        st = azr_st_write(path, n, names, ndims, shapes, data, 1, mk, mv);
    }
    free(names);
    free(ndims);
    free(shapes);
    free(data);
    return st;
}
