/*
 * rl.c -- rewards, Task-Relative REINFORCE++ advantages and the clipped
 * policy loss of Absolute Zero self-play (see rl.h for the formulas).
 *
 * Owns: arithmetic over caller-owned arrays; accumulation in double.
 * Must not: know about models, text or the sandbox; print, abort or exit.
 */
#include "rl.h"

#include <math.h>
#include <stddef.h>

azr_status azr_rl_solver_rewards(const int32_t *outcome, int64_t n, float *out) {
    if (n < 0) return azr_set_error(AZR_ERR_INVALID, "solver_rewards: negative count %lld", (long long)n);
    if (n == 0) return AZR_OK;
    if (!outcome || !out) return azr_set_error(AZR_ERR_INVALID, "solver_rewards: NULL outcome or out array");
    for (int64_t i = 0; i < n; i++) {
        switch (outcome[i]) {
        case AZR_RL_CORRECT: out[i] = 1.0f; break;
        case AZR_RL_WRONG: out[i] = -0.5f; break;
        case AZR_RL_FORMAT_ERROR: out[i] = -1.0f; break;
        default:
            return azr_set_error(AZR_ERR_INVALID,
                                 "solver_rewards: outcome[%lld] = %d is not 0 (correct), 1 (wrong) "
                                 "or 2 (format error)",
                                 (long long)i, (int)outcome[i]);
        }
    }
    return AZR_OK;
}

azr_status azr_rl_proposer_rewards(const int32_t *status, const int32_t *n_correct,
                                   const int32_t *n_samples, int64_t n, float *out) {
    if (n < 0) return azr_set_error(AZR_ERR_INVALID, "proposer_rewards: negative count %lld", (long long)n);
    if (n == 0) return AZR_OK;
    if (!status || !n_correct || !n_samples || !out)
        return azr_set_error(AZR_ERR_INVALID, "proposer_rewards: NULL input or output array");
    for (int64_t i = 0; i < n; i++) {
        if (status[i] == AZR_RL_INVALID) {
            out[i] = -1.0f;
            continue;
        }
        if (status[i] != AZR_RL_VALID)
            return azr_set_error(AZR_ERR_INVALID,
                                 "proposer_rewards: status[%lld] = %d is not 0 (valid) or 1 (invalid)",
                                 (long long)i, (int)status[i]);
        int32_t k = n_correct[i], m = n_samples[i];
        if (m < 1)
            return azr_set_error(AZR_ERR_INVALID,
                                 "proposer_rewards: n_samples[%lld] = %d, a valid proposal needs >= 1 "
                                 "learnability rollout",
                                 (long long)i, (int)m);
        if (k < 0 || k > m)
            return azr_set_error(AZR_ERR_INVALID,
                                 "proposer_rewards: n_correct[%lld] = %d is outside [0, n_samples = %d]",
                                 (long long)i, (int)k, (int)m);
        if (k == 0 || k == m)
            out[i] = -0.5f;
        else
            out[i] = (float)(1.0 - (double)k / (double)m);
    }
    return AZR_OK;
}

azr_status azr_rl_advantages(const float *rewards, const int32_t *group, const int32_t *lengths,
                             int64_t n, int32_t n_groups, int mode, float eps, float *adv,
                             float *group_mean, float *group_std) {
    if (n < 0) return azr_set_error(AZR_ERR_INVALID, "advantages: negative count %lld", (long long)n);
    if (n_groups < 1 || n_groups > 1 << 20)
        return azr_set_error(AZR_ERR_INVALID, "advantages: n_groups = %d, need 1..%d", (int)n_groups,
                             1 << 20);
    if (mode != AZR_RL_ADV_PER_SAMPLE && mode != AZR_RL_ADV_TOKEN_WEIGHTED)
        return azr_set_error(AZR_ERR_INVALID,
                             "advantages: mode %d is not 0 (per-sample) or 1 (token-weighted)", mode);
    if (!(eps > 0.0f) || !isfinite(eps))
        return azr_set_error(AZR_ERR_INVALID, "advantages: eps = %g, need a finite eps > 0", (double)eps);
    if (n > 0 && (!rewards || !group || !adv))
        return azr_set_error(AZR_ERR_INVALID, "advantages: NULL rewards, group or adv array");
    if (n > 0 && mode == AZR_RL_ADV_TOKEN_WEIGHTED && !lengths)
        return azr_set_error(AZR_ERR_INVALID, "advantages: token-weighted mode needs lengths");

    double *sw = azr_calloc(sizeof(double) * 3 * (size_t)n_groups, "advantage group statistics");
    if (!sw) return AZR_ERR_NOMEM;
    double *swr = sw + n_groups, *swd = sw + 2 * (size_t)n_groups;
    azr_status st = AZR_OK;
    for (int64_t i = 0; i < n; i++) {
        int32_t g = group[i];
        if (g >= n_groups) {
            st = azr_set_error(AZR_ERR_INVALID, "advantages: group[%lld] = %d >= n_groups = %d",
                               (long long)i, (int)g, (int)n_groups);
            goto done;
        }
        if (!isfinite(rewards[i])) {
            st = azr_set_error(AZR_ERR_NUMERIC, "advantages: rewards[%lld] is not finite", (long long)i);
            goto done;
        }
        double w = 1.0;
        if (mode == AZR_RL_ADV_TOKEN_WEIGHTED) {
            if (lengths[i] < 0) {
                st = azr_set_error(AZR_ERR_INVALID, "advantages: lengths[%lld] = %d is negative",
                                   (long long)i, (int)lengths[i]);
                goto done;
            }
            w = (double)lengths[i];
        }
        if (g < 0) continue;
        sw[g] += w;
        swr[g] += w * (double)rewards[i];
    }
    for (int32_t g = 0; g < n_groups; g++)
        if (sw[g] > 0) swr[g] /= sw[g]; /* now the mean */
    for (int64_t i = 0; i < n; i++) {
        int32_t g = group[i];
        if (g < 0) continue;
        double w = mode == AZR_RL_ADV_TOKEN_WEIGHTED ? (double)lengths[i] : 1.0;
        double d = (double)rewards[i] - swr[g];
        swd[g] += w * d * d;
    }
    for (int32_t g = 0; g < n_groups; g++) swd[g] = sw[g] > 1.0 ? swd[g] / (sw[g] - 1.0) : 0.0;
    for (int64_t i = 0; i < n; i++) {
        int32_t g = group[i];
        double w = mode == AZR_RL_ADV_TOKEN_WEIGHTED ? (double)lengths[i] : 1.0;
        if (g < 0 || w == 0.0) {
            adv[i] = 0.0f;
            continue;
        }
        adv[i] = (float)(((double)rewards[i] - swr[g]) / sqrt(swd[g] + (double)eps));
    }
    for (int32_t g = 0; g < n_groups; g++) {
        if (group_mean) group_mean[g] = (float)swr[g];
        if (group_std) group_std[g] = (float)sqrt(swd[g]);
    }
done:
    azr_free(sw);
    return st;
}

azr_status azr_rl_policy_loss(const float *logp, const float *old_logp, const float *adv,
                              const uint8_t *mask, const float *entropy, const float *ref_logp,
                              int64_t B, int64_t T, const azr_rl_loss_opts *opts, float *weights,
                              azr_rl_loss_stats *stats) {
    azr_rl_loss_stats s = {0};
    if (stats) *stats = s;
    if (!opts) return azr_set_error(AZR_ERR_INVALID, "policy_loss: NULL options");
    if (B < 0 || T < 0)
        return azr_set_error(AZR_ERR_INVALID, "policy_loss: negative shape (%lld, %lld)", (long long)B,
                             (long long)T);
    if (!(opts->clip_low >= 0.0f) || !(opts->clip_high >= 0.0f) || !isfinite(opts->clip_low) ||
        !isfinite(opts->clip_high))
        return azr_set_error(AZR_ERR_INVALID, "policy_loss: clip_low = %g, clip_high = %g, need finite >= 0",
                             (double)opts->clip_low, (double)opts->clip_high);
    if (!(opts->entropy_coef >= 0.0f) || !(opts->kl_coef >= 0.0f) || !isfinite(opts->entropy_coef) ||
        !isfinite(opts->kl_coef))
        return azr_set_error(AZR_ERR_INVALID,
                             "policy_loss: entropy_coef = %g, kl_coef = %g, need finite >= 0",
                             (double)opts->entropy_coef, (double)opts->kl_coef);
    if (opts->aggregation != AZR_RL_AGG_TOKEN_MEAN && opts->aggregation != AZR_RL_AGG_SEQ_MEAN)
        return azr_set_error(AZR_ERR_INVALID,
                             "policy_loss: aggregation %d is not 0 (token-mean) or 1 (sequence-mean)",
                             opts->aggregation);
    if (B == 0 || T == 0) return AZR_OK;
    if (!logp || !old_logp || !adv || !mask || !weights)
        return azr_set_error(AZR_ERR_INVALID, "policy_loss: NULL logp, old_logp, adv, mask or weights");
    const int use_ent = entropy != NULL && opts->entropy_coef > 0.0f;
    const int use_kl = ref_logp != NULL && opts->kl_coef > 0.0f;
    const double lo = 1.0 - (double)opts->clip_low, hi = 1.0 + (double)opts->clip_high;

    /* Pass 1: counts and input checks. */
    for (int64_t b = 0; b < B; b++) {
        int64_t len = 0;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            if (!mask[i]) continue;
            len++;
            const char *bad = NULL;
            if (!isfinite(logp[i])) bad = "logp";
            else if (!isfinite(old_logp[i])) bad = "old_logp";
            else if (entropy && !isfinite(entropy[i])) bad = "entropy";
            else if (ref_logp && !isfinite(ref_logp[i])) bad = "ref_logp";
            if (bad)
                return azr_set_error(AZR_ERR_NUMERIC, "policy_loss: %s[%lld, %lld] is not finite", bad,
                                     (long long)b, (long long)t);
        }
        if (len > 0) {
            if (!isfinite(adv[b]))
                return azr_set_error(AZR_ERR_NUMERIC, "policy_loss: adv[%lld] is not finite", (long long)b);
            s.n_seqs++;
            s.n_tokens += len;
        }
    }
    double clipped = 0.0, ratio_sum = 0.0;
    for (int64_t b = 0; b < B; b++) {
        int64_t len = 0;
        for (int64_t t = 0; t < T; t++) len += mask[b * T + t] != 0;
        double c = 0.0;
        if (len > 0)
            c = opts->aggregation == AZR_RL_AGG_TOKEN_MEAN ? 1.0 / (double)s.n_tokens
                                                            : 1.0 / ((double)s.n_seqs * (double)len);
        const double A = len > 0 ? (double)adv[b] : 0.0;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            if (!mask[i]) {
                weights[i] = 0.0f;
                continue;
            }
            /* The log-ratio is capped at +-20 so exp() stays finite for
             * wildly off-policy tokens (their gradient is clipped anyway
             * when the advantage is positive). */
            double lr = (double)logp[i] - (double)old_logp[i];
            lr = lr > 20.0 ? 20.0 : (lr < -20.0 ? -20.0 : lr);
            double ratio = exp(lr);
            double rc = ratio < lo ? lo : (ratio > hi ? hi : ratio);
            double un = ratio * A, cl = rc * A;
            double l, w;
            /* min(un, cl): the gradient flows through the unclipped branch
             * unless the clipped one is strictly smaller (then ratio is
             * outside [lo, hi] and the clipped branch is constant). */
            if (cl < un) {
                l = -cl;
                w = 0.0;
                clipped += 1.0;
            } else {
                l = -un;
                w = ratio * A;
            }
            double li = l;
            if (use_ent) {
                double H = (double)entropy[i];
                li -= (double)opts->entropy_coef * H;
                w += (double)opts->entropy_coef * ratio * (-(double)logp[i] - H);
            }
            if (use_kl) {
                double d = (double)logp[i] - (double)ref_logp[i];
                li += (double)opts->kl_coef * d;
                w -= (double)opts->kl_coef * ratio * d;
            }
            s.pg_loss += c * l;
            s.loss += c * li;
            if (entropy) s.entropy += c * (double)entropy[i];
            if (ref_logp) s.kl += c * ((double)logp[i] - (double)ref_logp[i]);
            ratio_sum += ratio;
            weights[i] = (float)(c * w);
        }
    }
    if (s.n_tokens > 0) {
        s.clip_frac = clipped / (double)s.n_tokens;
        s.ratio_mean = ratio_sum / (double)s.n_tokens;
    }
    if (stats) *stats = s;
    return AZR_OK;
}
