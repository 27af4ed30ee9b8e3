/*
 * model.h -- the decoder-only transformer of the Llama / Qwen2 family:
 * configuration, the parameter / gradient / AdamW-moment arenas, activations
 * sized from (B, T), forward, backward from per-token weights, and the
 * per-layer pieces a KV-cached decode step is built from.
 *
 * Owns: the math of one model (through the kernels in
 * backend/cpu/kernels.h) and loading its weights from safetensors files.
 * Must not: read config.json (the Python layer does and fills
 * azr_model_config), print, abort, or keep anything per call beyond the
 * activation arena it grows once.
 *
 * ---- Weight layout -------------------------------------------------------
 * All parameters live in ONE float32 arena (llm.c style); gradients in a
 * second arena of the same layout, AdamW's m and v in two more. Order
 * (C = hidden, V = vocab, I = intermediate, Hq/Hkv heads of D values,
 * Dq = Hq*D, Dkv = Hkv*D, Dqkv = Dq + 2*Dkv):
 *
 *   model.embed_tokens.weight                      (V, C)
 *   for each layer l (a block of identical size):
 *     model.layers.l.input_layernorm.weight        (C)
 *     model.layers.l.self_attn.q_proj.weight       (Dq, C)   \  one (Dqkv, C)
 *     model.layers.l.self_attn.k_proj.weight       (Dkv, C)   > matrix: q, k, v
 *     model.layers.l.self_attn.v_proj.weight       (Dkv, C)  /  in one sgemm
 *     model.layers.l.self_attn.{q,k,v}_proj.bias   (Dq), (Dkv), (Dkv)  [qkv_bias only]
 *     model.layers.l.self_attn.o_proj.weight       (C, Dq)
 *     model.layers.l.post_attention_layernorm.weight (C)
 *     model.layers.l.mlp.gate_proj.weight          (I, C)    \ one (2I, C) matrix
 *     model.layers.l.mlp.up_proj.weight            (I, C)    /
 *     model.layers.l.mlp.down_proj.weight          (C, I)
 *   model.norm.weight                              (C)
 *   lm_head.weight                                 (V, C)    [untied only; tied
 *                                                   models use embed_tokens]
 * Each matrix is stored as HF stores it: (out_features, in_features), so a
 * linear layer is y = x @ W^T.
 *
 * ---- Batches -------------------------------------------------------------
 * A batch is B right-padded rows of T token ids with lengths[b] valid tokens
 * each. Internally only the valid tokens are processed: they are packed into
 * N = sum(lengths) rows, sequence b at rows seq_off[b] ..., position p of a
 * sequence at its row seq_off[b] + p. Outputs are unpacked to (B, T) with 0 at
 * padded positions.
 *
 * ---- Decode-step recipe (for a KV-cached generator) ----------------------
 * For n new tokens with positions pos (n) and a row of scratch per token:
 *   azr_model_embed(m, tok, n, x);                     x (n, C)
 *   azr_rope_table(cos, sin, pos, n, D, theta);        (n, D/2) each
 *   for l in layers:
 *     azr_model_attn_qkv(m, l, x, n, xn, NULL, qkv, cos, sin);  qkv (n, Dqkv), rotated
 *     copy k, v of each token into the cache; for each token
 *     azr_attention_decode(att + i*Dq, qkv + i*Dqkv, kcache, vcache, ctx, ...);
 *     azr_model_attn_out(m, l, att, n, x, x);           x += att @ Wo^T
 *     azr_model_mlp(m, l, x, x, n, xn, NULL, gu, h);   x += MLP(norm(x))
 *   azr_model_head(m, x, n, xn, NULL, logits, n);      logits (n, V)
 * These are the same functions the training forward uses.
 */
#ifndef AZR_MODEL_H
#define AZR_MODEL_H

#include <stdint.h>

#include "../core/azr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int64_t vocab_size;        /* V */
    int64_t hidden_size;       /* C */
    int64_t intermediate_size; /* I */
    int n_layers;
    int n_heads;    /* Hq */
    int n_kv_heads; /* Hkv, divides Hq */
    int head_dim;   /* D, even, <= 2048 */
    float rms_eps;
    float rope_theta;
    int qkv_bias;       /* Qwen2: q/k/v projections have biases */
    int tie_embeddings; /* lm_head shares model.embed_tokens.weight */
} azr_model_config;

/* Pointers to one layer's tensors inside an arena (parameters or grads). */
typedef struct {
    float *input_norm; /* (C) */
    float *wqkv;       /* (Dqkv, C) */
    float *bqkv;       /* (Dqkv) or NULL without qkv_bias */
    float *wo;         /* (C, Dq) */
    float *post_norm;  /* (C) */
    float *wgu;        /* (2I, C) */
    float *wdown;      /* (C, I) */
} azr_layer_ptrs;

/* One named tensor of the arena, with its HF name. */
typedef struct {
    char name[96];
    int64_t offset; /* in floats from the arena start */
    int ndim;       /* 1 or 2 */
    int64_t shape[2];
    int64_t numel;
} azr_tensor_info;

typedef struct azr_model azr_model;

/* Check a config; AZR_ERR_INVALID naming the field if it is impossible
 * (non-positive sizes, Hq not a multiple of Hkv, odd head_dim...). */
azr_status azr_model_config_check(const azr_model_config *cfg);

/* Create a model with a zeroed parameter arena. NULL cfg/out -> INVALID.
 * Fails with NOMEM naming the arena size if it cannot be allocated. */
azr_status azr_model_new(const azr_model_config *cfg, azr_model **out);
/* Free everything. NULL is a no-op. */
void azr_model_free(azr_model *m);

const azr_model_config *azr_model_cfg(const azr_model *m);
/* Number of floats in one arena. */
int64_t azr_model_num_params(const azr_model *m);
/* The tensor table in arena order (n_tensors entries). */
int azr_model_num_tensors(const azr_model *m);
const azr_tensor_info *azr_model_tensor(const azr_model *m, int i);

/* Arenas. params always exists. grads / adam moments are allocated (zeroed)
 * on first use by the ensure functions (NOMEM on failure); the getters
 * return NULL before that. */
float *azr_model_params(azr_model *m);
float *azr_model_grads(azr_model *m);
azr_status azr_model_ensure_grads(azr_model *m);
float *azr_model_adam_m(azr_model *m);
float *azr_model_adam_v(azr_model *m);
azr_status azr_model_ensure_adam(azr_model *m);
int64_t azr_model_adam_step_count(const azr_model *m);
void azr_model_set_adam_step_count(azr_model *m, int64_t t);
/* Set grads to 0 (no-op if they do not exist yet). */
void azr_model_zero_grad(azr_model *m);
/* Free the activation arena (it grows to the largest batch seen and is
 * otherwise kept); the next run allocates what it needs. */
void azr_model_free_activations(azr_model *m);
/* Bytes currently held by the activation arena. */
int64_t azr_model_activation_bytes(const azr_model *m);

/* Pointers to layer l's tensors inside `arena` (azr_model_params(m) or
 * azr_model_grads(m)). l must be in range. */
azr_layer_ptrs azr_model_layer(const azr_model *m, float *arena, int l);
/* Embedding and head matrices inside `arena`. */
float *azr_model_embed_ptr(const azr_model *m, float *arena);  /* (V, C) */
float *azr_model_norm_ptr(const azr_model *m, float *arena);   /* (C) */
float *azr_model_head_ptr(const azr_model *m, float *arena);   /* (V, C), = embed if tied */

/* Load every parameter from the given safetensors files (one, or the shards
 * of an index). Each parameter is looked up by HF name in every file; a
 * missing embed_tokens may come from a `__metadata__` alias (name -> stored
 * name) or, when tied, from lm_head.weight. Errors name the file and tensor:
 * missing tensor (FORMAT), wrong shape (FORMAT), unsupported dtype
 * (UNSUPPORTED), unexpected tensor not in this config (FORMAT). On failure
 * the parameters are partly overwritten. */
azr_status azr_model_load_safetensors(azr_model *m, const char *const *paths, int n_paths);
/* Write all parameters as F32 HF-named tensors to `path` (tied models do not
 * write lm_head.weight), with metadata {"format": "pt"}. */
azr_status azr_model_save_safetensors(azr_model *m, const char *path);

/* Bytes one call on a (B, T) batch will need: the parameter arena (plus
 * gradients and both AdamW moments when training) and the activations. */
int64_t azr_model_memory_estimate(const azr_model_config *cfg, int64_t B, int64_t T, int training);

/* ---- the main entry point: forward (+ backward) over a padded batch ----
 * ids (B, T) int32 right-padded; lengths (B) valid tokens per row (NULL: all
 * T); targets (B, T) int32 (may be NULL when only logits are wanted).
 * Outputs, each may be NULL: logp (B, T) log-prob of targets, ent (B, T)
 * softmax entropy, logits (B, T, V) full logits (tests / small use only; the
 * normal path never materializes them). Padded positions give 0.
 * If weights (B, T) is not NULL, runs the backward of
 *   loss = -sum(weights * logp)
 * ACCUMULATING into the gradient arena (allocated on first use), and stores
 * the loss in *loss (may be NULL). When training with logp, ent and logits
 * all NULL, the vocabulary head runs only on positions whose weight is not
 * 0 (the others contribute nothing to the loss or its gradient). Errors: ids/targets out of [0, V)
 * (INVALID, naming row and position), lengths out of [0, T] (INVALID),
 * non-finite weights (INVALID), non-finite log-probs where weight != 0
 * (NUMERIC, naming row and position; gradients may then be partly
 * accumulated), allocation failure (NOMEM, naming the bytes). B == 0 or all
 * lengths 0 is a no-op returning loss 0. */
azr_status azr_model_run(azr_model *m, const int32_t *ids, const int32_t *targets,
                         const float *weights, const int64_t *lengths, int64_t B, int64_t T,
                         float *logp, float *ent, float *logits, double *loss);

/* One AdamW step over the whole arena (torch.optim.AdamW semantics, weight
 * decay on every parameter): computes the global gradient L2 norm into
 * *grad_norm (may be NULL), scales gradients by max_norm / (norm + 1e-6) when
 * max_norm > 0 and norm > max_norm (the gradient arena is not modified), and
 * updates the parameters. Errors: no gradients yet (STATE), non-finite norm
 * (NUMERIC; nothing is updated), NOMEM for the moments. */
azr_status azr_model_adamw_step(azr_model *m, float lr, float beta1, float beta2, float eps,
                                float weight_decay, float max_norm, double *grad_norm);

/* ---- per-layer pieces (see the decode-step recipe above) ---------------- */

/* x (n, C) = embedding rows of tok (n); ids must be in range (checked by
 * the caller). */
void azr_model_embed(const azr_model *m, const int32_t *tok, int64_t n, float *x);
/* xn = rmsnorm(x) with the layer's input norm (rstd (n) saved if not NULL),
 * qkv (n, Dqkv) = xn @ Wqkv^T + b, then q and k rotated with cos/sin (n, D/2). */
void azr_model_attn_qkv(const azr_model *m, int l, const float *x, int64_t n, float *xn,
                        float *rstd, float *qkv, const float *cos_t, const float *sin_t);
/* xout (n, C) = xin + att (n, Dq) @ Wo^T. xout may equal xin (in place). */
void azr_model_attn_out(const azr_model *m, int l, const float *att, int64_t n, const float *xin,
                        float *xout);
/* xout = xin + down(silu(gate(xn)) * up(xn)) with xn = rmsnorm(xin) (post
 * attention norm; rstd saved if not NULL). gu (n, 2I) and h (n, I) scratch
 * (gu keeps the gate/up activations). xout may equal xin. */
void azr_model_mlp(const azr_model *m, int l, const float *xin, float *xout, int64_t n, float *xn,
                   float *rstd, float *gu, float *h);
/* logits (rows, V) = rmsnorm_final(x) @ head^T for n rows processed in
 * chunks of chunk_rows (logits must hold n*V floats). xn (n, C) receives the
 * normed rows; rstd (n) saved if not NULL. */
void azr_model_head(const azr_model *m, const float *x, int64_t n, float *xn, float *rstd,
                    float *logits, int64_t chunk_rows);

#ifdef __cplusplus
}
#endif
#endif /* AZR_MODEL_H */
