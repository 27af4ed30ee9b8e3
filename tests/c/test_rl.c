/* test_rl.c -- the rl layer under sanitizers: reward tables, advantage
 * statistics on a hand-worked example, policy-loss weights against a finite
 * difference of the loss, and argument errors. */
#include <math.h>
#include <string.h>

#include "azr_test.h"
#include "rl/rl.h"

static double loss_of(const float *logp, const float *old, const float *adv, const uint8_t *mask, int64_t B,
                      int64_t T, const azr_rl_loss_opts *o) {
    float w[64];
    azr_rl_loss_stats s;
    if (azr_rl_policy_loss(logp, old, adv, mask, NULL, NULL, B, T, o, w, &s) != AZR_OK) return NAN;
    return s.loss;
}

int main(void) {
    int32_t oc[3] = {AZR_RL_CORRECT, AZR_RL_WRONG, AZR_RL_FORMAT_ERROR};
    float r[3];
    CHECK(azr_rl_solver_rewards(oc, 3, r) == AZR_OK);
    CHECK(r[0] == 1.0f && r[1] == -0.5f && r[2] == -1.0f);
    CHECK(azr_rl_solver_rewards(NULL, 0, NULL) == AZR_OK);
    CHECK(azr_rl_solver_rewards(NULL, 2, r) == AZR_ERR_INVALID);
    oc[1] = 9;
    CHECK(azr_rl_solver_rewards(oc, 3, r) == AZR_ERR_INVALID && strstr(azr_last_error(), "outcome[1]"));

    int32_t st[4] = {AZR_RL_VALID, AZR_RL_VALID, AZR_RL_VALID, AZR_RL_INVALID};
    int32_t k[4] = {0, 8, 2, 5}, n[4] = {8, 8, 8, 0};
    float pr[4];
    CHECK(azr_rl_proposer_rewards(st, k, n, 4, pr) == AZR_OK);
    CHECK(pr[0] == -0.5f && pr[1] == -0.5f && pr[2] == 0.75f && pr[3] == -1.0f);
    k[0] = 9;
    CHECK(azr_rl_proposer_rewards(st, k, n, 4, pr) == AZR_ERR_INVALID && strstr(azr_last_error(), "n_correct[0]"));

    /* group 0: rewards 1, -1 -> mean 0, unbiased var 2; group 1: single. */
    float rw[4] = {1.0f, -1.0f, 0.5f, 7.0f};
    int32_t g[4] = {0, 0, 1, -1};
    float adv[4], mean[2], sd[2];
    CHECK(azr_rl_advantages(rw, g, NULL, 4, 2, AZR_RL_ADV_PER_SAMPLE, 1e-6f, adv, mean, sd) == AZR_OK);
    CHECK(fabsf(adv[0] - 1.0f / sqrtf(2.0f)) < 1e-5f && fabsf(adv[1] + 1.0f / sqrtf(2.0f)) < 1e-5f);
    CHECK(adv[2] == 0.0f && adv[3] == 0.0f && mean[1] == 0.5f && fabsf(sd[0] - sqrtf(2.0f)) < 1e-6f);
    /* token-weighted: lengths 3 and 1 -> mean 0.5, var = (3*0.25+1*2.25)/3 = 1 */
    int32_t len[4] = {3, 1, 2, 2};
    CHECK(azr_rl_advantages(rw, g, len, 4, 2, AZR_RL_ADV_TOKEN_WEIGHTED, 1e-6f, adv, mean, sd) == AZR_OK);
    CHECK(fabsf(mean[0] - 0.5f) < 1e-6f && fabsf(adv[0] - 0.5f) < 1e-5f && fabsf(adv[1] + 1.5f) < 1e-5f);
    g[2] = 2;
    CHECK(azr_rl_advantages(rw, g, NULL, 4, 2, 0, 1e-6f, adv, NULL, NULL) == AZR_ERR_INVALID);
    CHECK(azr_rl_advantages(rw, g, NULL, 4, 2, 5, 1e-6f, adv, NULL, NULL) == AZR_ERR_INVALID);

    /* policy loss: weights are minus the derivative of the loss w.r.t. logp */
    enum { B = 3, T = 4 };
    float logp[B * T], old[B * T], w[B * T], av[B] = {0.7f, -1.3f, 0.4f};
    uint8_t mask[B * T] = {1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < B * T; i++) {
        old[i] = -1.0f - 0.1f * (float)i;
        logp[i] = old[i] + 0.15f * (float)((i * 7) % 5 - 2);
    }
    for (int agg = 0; agg < 2; agg++) {
        azr_rl_loss_opts o = {0.2f, 0.2f, agg, 0.0f, 0.0f};
        azr_rl_loss_stats s;
        CHECK(azr_rl_policy_loss(logp, old, av, mask, NULL, NULL, B, T, &o, w, &s) == AZR_OK);
        CHECK(s.n_tokens == 6 && s.n_seqs == 2);
        for (int i = 0; i < B * T; i++) {
            if (!mask[i]) {
                CHECK(w[i] == 0.0f);
                continue;
            }
            float save = logp[i], h = 1e-3f;
            logp[i] = save + h;
            double lp = loss_of(logp, old, av, mask, B, T, &o);
            logp[i] = save - h;
            double lm = loss_of(logp, old, av, mask, B, T, &o);
            logp[i] = save;
            double fd = (lp - lm) / (2.0 * h);
            CHECK(fabs(-fd - (double)w[i]) < 2e-3);
        }
    }
    azr_rl_loss_opts bad = {-1.0f, 0.2f, 0, 0.0f, 0.0f};
    CHECK(azr_rl_policy_loss(logp, old, av, mask, NULL, NULL, B, T, &bad, w, NULL) == AZR_ERR_INVALID);
    logp[1] = NAN;
    azr_rl_loss_opts ok = {0.2f, 0.2f, 0, 0.0f, 0.0f};
    CHECK(azr_rl_policy_loss(logp, old, av, mask, NULL, NULL, B, T, &ok, w, NULL) == AZR_ERR_NUMERIC);
    CHECK(strstr(azr_last_error(), "logp[0, 1]") != NULL);
    CHECK(azr_rl_policy_loss(NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, &ok, NULL, NULL) == AZR_OK);
    TEST_MAIN_END();
}
