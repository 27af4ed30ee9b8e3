"""The rl layer: rewards, Task-Relative REINFORCE++ advantages against a NumPy
reference, and the policy-loss weights against torch autograd of the clipped
surrogate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from azr import rl


# ---------------------------------------------------------------- rewards
def test_solver_reward_table():
    got = rl.solver_rewards([rl.CORRECT, rl.WRONG, rl.FORMAT_ERROR, rl.CORRECT])
    np.testing.assert_array_equal(got, np.array([1.0, -0.5, -1.0, 1.0], np.float32))
    assert rl.solver_rewards([]).shape == (0,)
    with pytest.raises(ValueError, match=r"outcome\[1\] = 7"):
        rl.solver_rewards([0, 7])


@pytest.mark.parametrize("k,n,expected", [(0, 8, -0.5), (8, 8, -0.5), (1, 8, 1 - 1 / 8), (7, 8, 1 / 8),
                                          (4, 8, 0.5), (1, 3, 2 / 3), (0, 1, -0.5), (1, 1, -0.5)])
def test_proposer_reward_valid(k, n, expected):
    got = rl.proposer_rewards([rl.VALID], [k], [n])
    assert got.dtype == np.float32
    assert got[0] == pytest.approx(expected, abs=1e-7)


def test_proposer_reward_invalid_ignores_counts():
    got = rl.proposer_rewards([rl.INVALID, rl.INVALID], [0, 3], [0, 8])
    np.testing.assert_array_equal(got, [-1.0, -1.0])


def test_proposer_reward_errors():
    with pytest.raises(ValueError, match=r"n_correct\[0\] = 9"):
        rl.proposer_rewards([0], [9], [8])
    with pytest.raises(ValueError, match=r"n_samples\[0\] = 0"):
        rl.proposer_rewards([0], [0], [0])
    with pytest.raises(ValueError, match=r"status\[0\] = 5"):
        rl.proposer_rewards([5], [0], [8])
    with pytest.raises(ValueError, match="n_correct has 2 entries"):
        rl.proposer_rewards([0], [0, 1], [8])


# ---------------------------------------------------------------- advantages
def np_advantages(r, g, lengths, n_groups, token_weighted, eps):
    """Independent reference: token-weighted = broadcast the reward over the
    response tokens and whiten the group's tokens (unbiased variance), like
    veRL's masked_whiten; per-sample = the same over one entry per sequence."""
    r = np.asarray(r, np.float64)
    adv = np.zeros_like(r)
    for gid in range(n_groups):
        idx = [i for i in range(len(r)) if g[i] == gid]
        if token_weighted:
            vals = np.concatenate([np.full(lengths[i], r[i]) for i in idx]) if idx else np.zeros(0)
        else:
            vals = r[idx]
        if vals.size == 0:
            continue
        mean = vals.mean()
        var = vals.var(ddof=1) if vals.size > 1 else 0.0
        for i in idx:
            if token_weighted and lengths[i] == 0:
                continue
            adv[i] = (r[i] - mean) / np.sqrt(var + eps)
    return adv


@pytest.mark.parametrize("mode", ["per-sample", "token-weighted"])
@pytest.mark.parametrize("seed", range(4))
def test_advantages_match_numpy(mode, seed):
    rng = np.random.default_rng(seed)
    n = 40
    r = rng.choice([1.0, -0.5, -1.0, 0.25, 0.875], size=n).astype(np.float32)
    g = rng.integers(-1, 6, size=n)
    lengths = rng.integers(0, 30, size=n)
    adv, mean, std = rl.advantages(r, g, lengths, n_groups=6, mode=mode, eps=1e-6)
    ref = np_advantages(r, g, lengths, 6, mode == "token-weighted", 1e-6)
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-5)
    assert np.all(adv[g < 0] == 0)


def test_advantages_are_task_relative():
    # The same reward gets a different advantage in different groups.
    r = [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    g = [0, 0, 3, 3, 3, 3]
    adv, mean, _ = rl.advantages(r, g, n_groups=6)
    assert mean[0] == pytest.approx(0.5) and mean[3] == pytest.approx(0.75)
    assert adv[0] != pytest.approx(adv[2])
    # a group of one, and a constant group, give zero advantage
    adv, _, std = rl.advantages([3.0, 2.0, 2.0], [1, 2, 2], n_groups=6)
    np.testing.assert_array_equal(adv, [0.0, 0.0, 0.0])
    assert std[2] == 0.0


def test_advantages_errors():
    with pytest.raises(ValueError, match=r"group\[1\] = 6 >= n_groups = 6"):
        rl.advantages([1.0, 1.0], [0, 6])
    with pytest.raises(FloatingPointError, match=r"rewards\[0\]"):
        rl.advantages([np.nan], [0])
    with pytest.raises(ValueError, match="token-weighted"):
        rl.advantages([1.0], [0], mode="token-weighted")
    with pytest.raises(ValueError, match="not one of"):
        rl.advantages([1.0], [0], mode="bogus")


# ---------------------------------------------------------------- policy loss
def torch_reference(logp, old, adv, mask, clip_lo, clip_hi, agg, ent=None, ent_coef=0.0, ref=None,
                    kl_coef=0.0):
    """The clipped surrogate written in torch; returns (loss, d loss / d logp).
    The entropy and KL terms use the same surrogate objectives whose gradient
    w.r.t. logp is the score-function estimate (see rl.h)."""
    lp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    old_t = torch.tensor(old, dtype=torch.float64)
    a = torch.tensor(adv, dtype=torch.float64)[:, None]
    m = torch.tensor(mask, dtype=torch.float64)
    ratio = torch.exp(lp - old_t)
    surr = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip_lo, 1 + clip_hi) * a)
    if agg == "token-mean":
        c = m / m.sum()
    else:
        lens = m.sum(1, keepdim=True)
        nseq = (lens > 0).sum()
        c = torch.where(lens > 0, m / lens.clamp(min=1), torch.zeros_like(m)) / nseq
    loss = (c * surr).sum()
    total = loss
    if ent is not None and ent_coef > 0:
        H = torch.tensor(ent, dtype=torch.float64)
        # d/dlogp of ratio.detach()*... : score-function surrogate, value-free
        sf = ratio * (-lp.detach() - H)
        total = total - ent_coef * (c * sf).sum()
    if ref is not None and kl_coef > 0:
        d = lp.detach() - torch.tensor(ref, dtype=torch.float64)
        total = total + kl_coef * (c * ratio * d).sum()
    total.backward()
    return loss.item(), lp.grad.numpy()


def make_batch(seed, B=5, T=7, spread=0.5):
    rng = np.random.default_rng(seed)
    old = rng.normal(-2, 1, size=(B, T)).astype(np.float32)
    logp = (old + rng.normal(0, spread, size=(B, T))).astype(np.float32)
    adv = rng.normal(0, 1, size=B).astype(np.float32)
    lens = rng.integers(0, T + 1, size=B)
    lens[0] = T
    mask = (np.arange(T)[None, :] < lens[:, None]).astype(np.uint8)
    return logp, old, adv, mask


@pytest.mark.parametrize("agg", ["token-mean", "sequence-mean"])
@pytest.mark.parametrize("seed", range(5))
def test_policy_loss_weights_match_torch_autograd(agg, seed):
    logp, old, adv, mask = make_batch(seed)
    w, st = rl.policy_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.28, aggregation=agg)
    loss_ref, grad_ref = torch_reference(logp, old, adv, mask, 0.2, 0.28, agg)
    assert st.loss == pytest.approx(loss_ref, rel=1e-5, abs=1e-6)
    # gradient of -sum(w * logp) is -w; it must equal autograd's gradient
    np.testing.assert_allclose(-w, grad_ref, rtol=1e-5, atol=1e-7)
    assert np.all(w[mask == 0] == 0)
    assert 0 < st.clip_frac < 1  # this spread exercises both branches
    assert st.n_tokens == int(mask.sum())


def test_policy_loss_ratio_one_is_reinforce():
    logp, _, adv, mask = make_batch(11)
    w, st = rl.policy_loss(logp, logp, adv, mask)
    expected = adv[:, None] * mask / mask.sum()
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert st.clip_frac == 0 and st.ratio_mean == pytest.approx(1.0)


@pytest.mark.parametrize("agg", ["token-mean", "sequence-mean"])
def test_policy_loss_entropy_and_kl_terms_match_torch(agg):
    logp, old, adv, mask = make_batch(3)
    rng = np.random.default_rng(9)
    ent = rng.uniform(0, 3, size=logp.shape).astype(np.float32)
    ref = (logp + rng.normal(0, 0.3, size=logp.shape)).astype(np.float32)
    w, st = rl.policy_loss(logp, old, adv, mask, aggregation=agg, entropy=ent, entropy_coef=0.01,
                           ref_logp=ref, kl_coef=0.05)
    _, grad_ref = torch_reference(logp, old, adv, mask, 0.2, 0.2, agg, ent, 0.01, ref, 0.05)
    np.testing.assert_allclose(-w, grad_ref, rtol=1e-5, atol=1e-7)


def test_entropy_score_function_estimate_is_unbiased():
    # For one categorical position, E_{y~p}[w(y) * grad log p(y)] must equal
    # -coef * d loss/d theta with loss = -coef * H(p): check against torch.
    theta = torch.tensor([0.3, -1.2, 0.8, 0.1], dtype=torch.float64, requires_grad=True)
    p = torch.softmax(theta, 0)
    H = -(p * torch.log(p)).sum()
    H.backward()
    exact = theta.grad.numpy().copy()
    pn = p.detach().numpy()
    Hn = float(H.detach())
    est = np.zeros(4)
    for y in range(4):
        lp = np.array([[np.log(pn[y])]], np.float32)
        w, _ = rl.policy_loss(lp, lp, np.zeros(1, np.float32), np.ones((1, 1)), entropy=np.array([[Hn]]),
                              entropy_coef=1.0)
        glogp = -pn.copy()
        glogp[y] += 1.0
        est += pn[y] * w[0, 0] * glogp  # gradient ascent direction of H
    np.testing.assert_allclose(est, exact, rtol=1e-5, atol=1e-6)


def test_policy_loss_rejects_bad_input():
    logp, old, adv, mask = make_batch(0)
    bad = logp.copy()
    bad[0, 2] = np.inf
    with pytest.raises(FloatingPointError, match=r"logp\[0, 2\]"):
        rl.policy_loss(bad, old, adv, mask)
    bad[0, 2] = np.nan  # masked positions are not looked at
    m2 = mask.copy()
    m2[0, 2] = 0
    rl.policy_loss(bad, old, adv, m2)
    with pytest.raises(ValueError, match="aggregation"):
        rl.policy_loss(logp, old, adv, mask, aggregation="sum")
    with pytest.raises(ValueError, match="clip_low"):
        rl.policy_loss(logp, old, adv, mask, clip_low=-0.1)
    with pytest.raises(ValueError, match="adv has shape"):
        rl.policy_loss(logp, old, adv[:2], mask)
    w, st = rl.policy_loss(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)))
    assert w.shape == (0, 3) and st.n_tokens == 0


def test_group_id():
    ids = {rl.group_id(t, r) for t in rl.TASK_TYPES for r in rl.ROLES}
    assert ids == set(range(6))
    with pytest.raises(ValueError, match="unknown task type"):
        rl.group_id("proof", "solve")
