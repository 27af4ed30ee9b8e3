/*
 * sampler.h -- turning one row of logits into one sampled token, with the
 * token's log-probability under the sampling distribution and under the
 * unmodified model.
 *
 * Owns: greedy, temperature, top-k and top-p (nucleus) sampling by inverse
 * CDF from a uniform number the caller supplies (the rollout engine derives
 * it from Philox keyed by seed, request, sample and position, so the choice
 * does not depend on batch layout or threads).
 * Must not: allocate, print, abort, or draw randomness itself.
 *
 * The sampling distribution, in the order Hugging Face applies it:
 *   z / temperature -> keep the top_k largest (ties: lower token id first)
 *   -> keep the smallest most-probable prefix whose probability reaches
 *   top_p (the token that crosses top_p is kept; at least one token)
 *   -> renormalize. temperature == 0 means greedy (argmax, lowest id on
 *   ties), whose sampling log-prob is 0.
 */
#ifndef AZR_GEN_SAMPLER_H
#define AZR_GEN_SAMPLER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float temperature; /* >= 0; 0 = greedy */
    float top_p;       /* (0, 1]; 1 = off */
    int32_t top_k;     /* >= 0; 0 = off */
} azr_gen_sampling;

/* One (prob-weight, token id) pair of the work area. */
typedef struct {
    float e;
    int32_t id;
} azr_gen_cand;

/* Sample from logits z (V) with u in [0, 1). work_f: V floats, work_c: V
 * candidates (scratch, overwritten). Writes the token, its log-prob under
 * the sampling distribution (*lp) and under softmax(z) (*model_lp).
 * Non-finite logits give token 0 with NaN log-probs; the caller checks. */
void azr_gen_sample(const float *z, int64_t V, const azr_gen_sampling *sp, double u, float *work_f,
                    azr_gen_cand *work_c, int32_t *tok, float *lp, float *model_lp);

/* azr_gen_sample, with the maximum and the exponentials of a
 * full-vocabulary draw (temperature > 0, no top-k or top-p) split over the
 * threads of an OpenMP region it opens (one row alone: no thread idles
 * while one samples). Block by block the same arithmetic, the block sums
 * added in the same order: the same bits as azr_gen_sample whatever the
 * threads. Other modes run azr_gen_sample. work_c must hold V candidates
 * (2*ceil(V/256) block sums are kept there). */
void azr_gen_sample_par(const float *z, int64_t V, const azr_gen_sampling *sp, double u,
                        float *work_f, azr_gen_cand *work_c, int32_t *tok, float *lp,
                        float *model_lp);

/* log(sum(exp(z))) of V logits, as azr_gen_sample computes it. */
double azr_gen_logsumexp(const float *z, int64_t V);

#ifdef __cplusplus
}
#endif
#endif /* AZR_GEN_SAMPLER_H */
