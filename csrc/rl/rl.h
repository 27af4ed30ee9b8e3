/*
 * rl.h -- the reinforcement-learning math of Absolute Zero self-play:
 * rewards, Task-Relative REINFORCE++ advantages and the clipped-ratio
 * policy loss with its per-token gradient weights.
 *
 * Owns: pure arithmetic over flat float/int arrays supplied by the caller.
 * Must not: know about models, tokens, text, buffers or the sandbox; allocate
 * more than O(number of groups) scratch; print, abort or exit.
 *
 * Conventions: sizes are int64_t; every function returns AZR_OK or an error
 * status with a message (azr_set_error) naming the offending argument and
 * index. Inputs with non-finite values are rejected with AZR_ERR_NUMERIC.
 */
#ifndef AZR_RL_H
#define AZR_RL_H

#include <stdint.h>

#include "../core/azr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- rewards --------------------------------------------------------- */

/* Solver outcome codes, one per answer. */
enum {
    AZR_RL_CORRECT = 0,      /* well-formed and judged correct        -> +1   */
    AZR_RL_WRONG = 1,        /* well-formed, judged wrong             -> -0.5 */
    AZR_RL_FORMAT_ERROR = 2  /* <think>/<answer> format not respected -> -1   */
};

/* Proposer status codes, one per proposal. */
enum {
    AZR_RL_VALID = 0,        /* parsed and validated by the sandbox            */
    AZR_RL_INVALID = 1       /* malformed text or rejected by the sandbox -> -1 */
};

/* Solver rewards: out[i] = +1, -0.5 or -1 for outcome[i] = CORRECT, WRONG,
 * FORMAT_ERROR. n == 0 is a no-op (pointers may then be NULL). NULL arrays
 * with n > 0, or an unknown code, give AZR_ERR_INVALID naming the index;
 * `out` is then left partly written. */
azr_status azr_rl_solver_rewards(const int32_t *outcome, int64_t n, float *out);

/* Proposer rewards from the learnability rollouts (Absolute Zero eq. 4 with
 * the format penalties): for status[i] == VALID with acc = n_correct[i] /
 * n_samples[i], out[i] = 1 - acc when 0 < acc < 1 and -0.5 when acc is 0 or
 * 1; for status[i] == INVALID, out[i] = -1 (counts are ignored). The test
 * for acc in {0, 1} is done on the integer counts, so it is exact.
 * n == 0 is a no-op. NULL arrays with n > 0, an unknown status, n_samples
 * < 1 or n_correct outside [0, n_samples] for a valid proposal give
 * AZR_ERR_INVALID naming the index. */
azr_status azr_rl_proposer_rewards(const int32_t *status, const int32_t *n_correct,
                                   const int32_t *n_samples, int64_t n, float *out);

/* ---- Task-Relative REINFORCE++ advantages ---------------------------- */

enum {
    /* Each sequence counts once: mean and variance over the sequences of the
     * group. The default. */
    AZR_RL_ADV_PER_SAMPLE = 0,
    /* Each sequence counts once per response token, as in the paper's
     * implementation (veRL's masked whitening of a reward broadcast over the
     * response tokens): mean and variance weighted by lengths[i]. */
    AZR_RL_ADV_TOKEN_WEIGHTED = 1
};

/* Normalise rewards separately inside each group g = group[i] (the trainer
 * uses g = 2 * task_type + role, six groups):
 *     mean_g = sum_i w_i r_i / W_g,   W_g = sum_i w_i   (w_i = 1 or lengths[i])
 *     var_g  = sum_i w_i (r_i - mean_g)^2 / (W_g - 1)   (unbiased; 0 if W_g <= 1)
 *     adv[i] = (r_i - mean_g) / sqrt(var_g + eps)
 * Rows with group[i] < 0 are excluded (dropped sequences): adv[i] = 0 and
 * they do not enter any statistic. Rows with w_i == 0 (token-weighted mode,
 * empty response) get adv = 0 and do not enter the statistics.
 * `lengths` is required only in token-weighted mode (else may be NULL).
 * `group_mean`, `group_std` (n_groups each) may be NULL; when given they
 * receive mean_g and sqrt(var_g) (0 for empty groups). `eps` must be > 0.
 * n == 0 is a no-op apart from zeroing the group statistics.
 * Errors (AZR_ERR_INVALID): NULL required arrays, n_groups < 1, a group id
 * >= n_groups, a negative length, an unknown mode, eps <= 0.
 * AZR_ERR_NUMERIC: a non-finite reward. */
azr_status azr_rl_advantages(const float *rewards, const int32_t *group, const int32_t *lengths,
                             int64_t n, int32_t n_groups, int mode, float eps, float *adv,
                             float *group_mean, float *group_std);

/* ---- clipped-ratio policy loss --------------------------------------- */

enum {
    /* Sum of per-token losses over all valid tokens of the batch divided by
     * their count: every token weighs the same (long answers weigh more). */
    AZR_RL_AGG_TOKEN_MEAN = 0,
    /* Per-sequence mean over its tokens, then mean over the sequences that
     * have at least one token: every sequence weighs the same. */
    AZR_RL_AGG_SEQ_MEAN = 1
};

typedef struct {
    float clip_low;      /* ratio clipped to [1 - clip_low, 1 + clip_high]; >= 0 */
    float clip_high;
    int aggregation;     /* AZR_RL_AGG_TOKEN_MEAN or AZR_RL_AGG_SEQ_MEAN */
    float entropy_coef;  /* >= 0; 0 disables the entropy bonus           */
    float kl_coef;       /* >= 0; 0 disables the KL penalty              */
} azr_rl_loss_opts;

typedef struct {
    double loss;         /* the aggregated objective (surrogate - bonus + penalty) */
    double pg_loss;      /* the clipped surrogate part only */
    double entropy;      /* aggregated entropy (0 if no entropy given) */
    double kl;           /* aggregated k1 KL estimate (0 if no ref_logp given) */
    double clip_frac;    /* fraction of valid tokens whose gradient the clip cut */
    double ratio_mean;   /* token-mean of the ratio */
    int64_t n_tokens;    /* valid tokens */
    int64_t n_seqs;      /* sequences with at least one valid token */
} azr_rl_loss_stats;

/* The clipped-ratio surrogate (PPO-style) for one batch and its gradient as
 * per-token weights. For a valid token (b, t) (mask != 0):
 *     ratio = exp(logp - old_logp),  A = adv[b]   (log-ratio capped at +-20)
 *     l_bt  = -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)
 * aggregated with c_bt = 1 / n_tokens (token-mean) or
 * 1 / (n_seqs * len_b) (sequence-mean): loss = sum c_bt l_bt.
 * weights[b, t] is chosen so that d loss / d logp_bt = -weights[b, t], i.e.
 * the gradient of loss equals that of -sum(weights * logp) with weights held
 * constant -- exactly what Model.loss_and_backward computes. For the
 * surrogate, weights = c_bt * ratio * A where the unclipped branch is active
 * and 0 where the clip cut the gradient.
 * Optional terms (each needs its array):
 *  - entropy bonus (entropy != NULL, entropy_coef > 0): loss -= coef * sum c H_bt.
 *    Its gradient cannot be expressed through logp of the sampled token
 *    exactly, so the weight adds the score-function estimate
 *    coef * c_bt * ratio * (-logp_bt - H_bt) (H_bt, the exact entropy of the
 *    position, is the baseline); unbiased for samples of the current policy.
 *  - KL penalty to a frozen reference (ref_logp != NULL, kl_coef > 0): loss +=
 *    coef * sum c (logp - ref_logp) (the k1 estimate); weight adds
 *    -coef * c_bt * ratio * (logp - ref_logp), the score-function gradient
 *    of KL(pi || ref) (the E[grad logp] = 0 term dropped).
 * Arrays: logp, old_logp, mask, weights (B, T) row-major; adv (B,);
 * entropy, ref_logp (B, T) or NULL. Masked tokens get weight 0.
 * B == 0 or T == 0: stats zeroed, AZR_OK. Errors: NULL required arrays
 * (AZR_ERR_INVALID), negative clips or coefficients or unknown aggregation
 * (AZR_ERR_INVALID), non-finite values at valid tokens (AZR_ERR_NUMERIC,
 * naming the array and the position). `stats` may be NULL. */
azr_status azr_rl_policy_loss(const float *logp, const float *old_logp, const float *adv,
                              const uint8_t *mask, const float *entropy, const float *ref_logp,
                              int64_t B, int64_t T, const azr_rl_loss_opts *opts, float *weights,
                              azr_rl_loss_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* AZR_RL_H */
