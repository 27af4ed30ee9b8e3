/*
 * kernels.h -- the CPU kernels of the decoder-only transformer: linear layers
 * (OpenBLAS sgemm, or bf16 inputs: gemm_bf16.c), RMSNorm, rotary embeddings (HF rotate-half layout),
 * causal grouped-query attention over packed variable-length sequences,
 * SwiGLU, the chunked vocabulary log-softmax / entropy, and AdamW.
 *
 * Owns: pure math on raw float buffers. Each forward has its backward; every
 * backward ACCUMULATES (+=) into parameter gradients, and into input
 * gradients where the comment says so. Every optimized kernel has a naive
 * reference next to it (suffix _naive) that the tests compare against.
 * Must not: allocate (except where a comment says), print, abort, or know
 * about files, parameter names or Python. Kernels never fail: callers check
 * shapes. NULL pointers are only allowed where a comment says so; a zero
 * length (N == 0) is a no-op everywhere.
 *
 * Layout conventions: row-major; "N" is a number of token rows (a batch of
 * packed sequences), "C" the hidden size, "D" the head dimension.
 * A token row of the fused q/k/v projection holds [q (Hq*D) | k (Hkv*D) |
 * v (Hkv*D)], each head's D values contiguous. A row of the fused gate/up
 * projection holds [gate (I) | up (I)].
 *
 * Threads: kernels use OpenMP; OpenBLAS is kept at one thread and azr_gemm
 * splits products over the OpenMP threads itself. Call them from one
 * thread at a time.
 */
#ifndef AZR_KERNELS_H
#define AZR_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix multiply ------------------------------------------------------ */

/* C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major, like azr_sgemm, but
 * parallelized by azr itself: the larger of M and N is split across the
 * OpenMP threads, each calling single-threaded OpenBLAS on its block. azr
 * keeps OpenBLAS at one thread so that only one thread pool (OpenMP) ever
 * runs: two pools spinning against each other on a small machine cost 10x.
 * Small products run on the calling thread. */
void azr_gemm(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* azr_gemm's precision, process-wide: 0 (the default) multiplies in fp32;
 * 1 rounds both inputs to bf16 and sums in fp32 (azr_gemm_bf16), as mixed
 * precision training does on a GPU. Set it from one thread, between calls. */
void azr_gemm_set_precision(int bf16);
int azr_gemm_get_precision(void);
/* azr_gemm in fp32 whatever the precision (and without its counters). */
void azr_gemm_f32(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc);
/* C (M, N) = alpha * bf16(op(A)) @ bf16(op(B)) + beta * C: both inputs
 * rounded to bfloat16 (azr_bf16_round), products and sums in fp32. With
 * AZR_ISA_AVX512_BF16 (core/cpu.h) a vdpbf16ps kernel on packed bf16
 * panels; otherwise the rounded inputs go through the fp32 path (same
 * products, summed in another order). Allocates its packed copies for the
 * call; if that fails it falls back to azr_gemm_f32 on the unrounded inputs.
 * The result does not depend on the thread count. */
void azr_gemm_bf16(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc);
/* azr_gemm with B marked as a weight matrix: in bf16 precision, while the
 * weight cache is on, B's packed bf16 panels are kept (keyed by pointer,
 * shape, ldb and transposition) and reused by later products with the same
 * B, instead of being rounded and packed again (the vocabulary head runs in
 * chunks of rows: each chunk used to pack the whole head). Only for
 * operands that do not change while the cache is on. */
void azr_gemm_wb(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc);
/* Turn the weight cache on (1) or off (0, which frees every kept panel).
 * azr_model_run keeps it on for one forward/backward in bf16 precision. */
void azr_gemm_weight_cache(int on);
/* azr_gemm_bf16 with B's panels taken from / kept in the weight cache when
 * b_is_weight and the cache is on. */
void azr_gemm_bf16_ex(int transa, int transb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                      int64_t ldc, int b_is_weight);
/* f rounded to bfloat16: to nearest, ties to even; subnormals to a signed
 * zero; NaN stays NaN (quiet); overflow gives infinity. */
uint16_t azr_bf16_round(float f);
/* Profiling counters of azr_gemm (for benchmarks): total wall seconds spent
 * in it and floating-point operations done since the last reset. Either
 * pointer may be NULL; reset != 0 zeroes the counters after reading. The
 * counters are process-wide and only meaningful from one calling thread. */
void azr_gemm_stats(double *seconds, double *flops, int reset);

/* ---- linear layers: y = x @ W^T (+ b) --------------------------------- */

/* y (N, out) = x (N, in) @ w^T, w (out, in) as stored by HF, plus bias b
 * (out) when b is not NULL. y is overwritten. */
void azr_linear_forward(float *y, const float *x, const float *w, const float *b, int64_t N,
                        int64_t in, int64_t out);
void azr_linear_forward_naive(float *y, const float *x, const float *w, const float *b, int64_t N,
                              int64_t in, int64_t out);
/* Backward of azr_linear_forward. dx (N, in): overwritten when accumulate_dx
 * is 0, added to when 1; may be NULL (not needed). dw (out, in) += dy^T x.
 * db (out) += column sums of dy; may be NULL (no bias). */
void azr_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int64_t N, int64_t in, int64_t out, int accumulate_dx);
void azr_linear_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int64_t N, int64_t in, int64_t out,
                               int accumulate_dx);

/* ---- RMSNorm: y = w * x / sqrt(mean(x^2) + eps) ---------------------- */

/* y, x: (N, C); w: (C); rstd (N) receives 1/sqrt(mean(x^2)+eps) per row and
 * may be NULL (inference). y may not alias x. */
void azr_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int64_t N,
                         int64_t C, float eps);
void azr_rmsnorm_forward_naive(float *y, float *rstd, const float *x, const float *w, int64_t N,
                               int64_t C, float eps);
/* dx (N, C) += d/dx, dw (C) += d/dw, given dy (N, C), the forward input x and
 * its rstd. */
void azr_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                          const float *rstd, int64_t N, int64_t C);
void azr_rmsnorm_backward_naive(float *dx, float *dw, const float *dy, const float *x,
                                const float *w, const float *rstd, int64_t N, int64_t C);

/* ---- rotary embeddings (HF "rotate half") ----------------------------- */

/* Fill cos/sin tables (N, D/2) for the given positions (N), exactly as HF
 * computes them in float32: inv_freq[i] = 1 / theta^(2i/D) rounded to float,
 * angle = (float)pos * inv_freq[i] in float, then cos/sin of that angle.
 * Positions may be arbitrary (a KV-cached decode step passes its own). */
void azr_rope_table(float *cos_t, float *sin_t, const int32_t *pos, int64_t N, int D, float theta);
/* Rotate, in place, `nheads` heads of D values in each of N rows of x (row
 * n starts at x + n*row_stride): for i < D/2, (a, b) = (x[i], x[i+D/2]) ->
 * (a cos - b sin, b cos + a sin). inverse = 1 rotates by minus the angle,
 * which is the backward of the forward rotation (it is orthogonal). */
void azr_rope_apply(float *x, int64_t N, int nheads, int D, int64_t row_stride,
                    const float *cos_t, const float *sin_t, int inverse);
void azr_rope_apply_naive(float *x, int64_t N, int nheads, int D, int64_t row_stride,
                          const float *cos_t, const float *sin_t, int inverse);

/* ---- causal grouped-query attention over packed sequences ------------- */

/* The batch is `B` sequences packed one after another into N rows: sequence
 * b occupies rows seq_off[b] .. seq_off[b]+seq_len[b]-1 and its tokens only
 * attend to earlier tokens of the same sequence (causal). Query head h uses
 * key/value head h / (Hq/Hkv). qkv (N, (Hq+2Hkv)*D) holds rotated q and k
 * and v; out (N, Hq*D) is overwritten with softmax(q k^T / sqrt(D)) v;
 * lse (Hq, N) receives each row's log-sum-exp of the scaled scores (for the
 * backward; may be NULL). scratch: at least azr_attention_scratch_floats()
 * floats. */
int64_t azr_attention_scratch_floats(int64_t max_seq_len, int nthreads);
void azr_attention_forward(float *out, float *lse, const float *qkv, int64_t N, int B,
                           const int64_t *seq_off, const int64_t *seq_len, int Hq, int Hkv, int D,
                           float *scratch);
void azr_attention_forward_naive(float *out, float *lse, const float *qkv, int64_t N, int B,
                                 const int64_t *seq_off, const int64_t *seq_len, int Hq, int Hkv,
                                 int D);
/* Backward: dqkv (N, (Hq+2Hkv)*D) is OVERWRITTEN with the gradient wrt the
 * (rotated) q, k and v, given dout (N, Hq*D), the forward's qkv, out and lse.
 * Probabilities are recomputed from lse (nothing of size T^2 is stored). */
void azr_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, int64_t N, int B, const int64_t *seq_off,
                            const int64_t *seq_len, int Hq, int Hkv, int D, float *scratch);
void azr_attention_backward_naive(float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, int64_t N, int B,
                                  const int64_t *seq_off, const int64_t *seq_len, int Hq, int Hkv,
                                  int D);
/* One decode step for a KV cache: query q (Hq*D) of one token attends to
 * `ctx` cached positions, key k of position j for kv head g at
 * kcache + j*kv_stride + g*D (same for v). out (Hq*D) is overwritten.
 * scratch: at least ctx floats. ctx == 0 writes zeros. */
void azr_attention_decode(float *out, const float *q, const float *kcache, const float *vcache,
                          int64_t ctx, int64_t kv_stride, int Hq, int Hkv, int D, float *scratch);

/* ---- SwiGLU: h = silu(gate) * up ------------------------------------- */

/* gu (N, 2*inter) rows [gate | up]; h (N, inter) overwritten. */
void azr_swiglu_forward(float *h, const float *gu, int64_t N, int64_t inter);
/* Columns [i0, i1) of azr_swiglu_forward (serial; the same bits as the
 * whole row when i0 is a multiple of 16, so threads can split a row). */
void azr_swiglu_forward_cols(float *h, const float *gu, int64_t N, int64_t inter, int64_t i0,
                             int64_t i1);
void azr_swiglu_forward_naive(float *h, const float *gu, int64_t N, int64_t inter);
/* dgu (N, 2*inter) overwritten from dh (N, inter) and the forward's gu. */
void azr_swiglu_backward(float *dgu, const float *dh, const float *gu, int64_t N, int64_t inter);
void azr_swiglu_backward_naive(float *dgu, const float *dh, const float *gu, int64_t N, int64_t inter);

/* ---- vocabulary log-softmax, one chunk of rows at a time -------------- */

/* For each of `rows` rows of logits (rows, V): the log-probability of the
 * target token (logp, may be NULL), the entropy of the softmax (ent, may be
 * NULL) and the log-sum-exp (lse, may be NULL). targets may be NULL only if
 * logp is NULL. When `dcoef` is not NULL the logits are OVERWRITTEN in place
 * by the gradient of  sum_r dcoef[r] * logp[r]  wrt the logits:
 * dcoef[r] * ([v == target] - softmax_v). Rows with dcoef[r] == 0 become 0. */
void azr_vocab_logsoftmax(float *logits, int64_t rows, int64_t V, const int32_t *targets,
                          float *logp, float *ent, float *lse, const float *dcoef);
void azr_vocab_logsoftmax_naive(float *logits, int64_t rows, int64_t V, const int32_t *targets,
                                float *logp, float *ent, float *lse, const float *dcoef);

/* ---- optimizer --------------------------------------------------------- */

/* Sum of squares of x (n), accumulated in double. */
double azr_sumsq(const float *x, int64_t n);
/* One AdamW step (torch.optim.AdamW semantics) over n parameters, with the
 * gradient multiplied by gscale first (gradient clipping) and weight decay
 * decoupled: p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). t >= 1. */
void azr_adamw_update(float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1,
                      float b2, float eps, float wd, int64_t t, float gscale);
void azr_adamw_update_naive(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                            float b1, float b2, float eps, float wd, int64_t t, float gscale);

#ifdef __cplusplus
}
#endif
#endif /* AZR_KERNELS_H */
