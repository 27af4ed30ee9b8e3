"""Trainer options that change the update, checked by their effect on the
weights: ``kl_coef > 0`` (a KL penalty to a reference model),
``monitor_action = "penalize"`` (flagged samples' rewards lowered) and
``ppo_epochs > 1`` (further passes with the clipped ratio).

The fakes are test_trainer's: FakeModel's log-prob of a token is
w[token % 16] + const, so its gradient is exact, and FakeAdamW is momentum
SGD. `np_update` recomputes one step's weights from the rollouts in NumPy
(advantages, the clipped surrogate and its KL term per pass, the gradient,
the optimizer), independently of azr.rl and the trainer.
"""
from __future__ import annotations

import numpy as np
import pytest
from test_trainer import FakeModel, Recorder, make_config, make_trainer, np_advantages

from azr import tasks
from azr.monitors import CallableMonitor, MonitorSet

LR, MOMENTUM = 0.5, 0.9  # FakeAdamW's


def _fake_logp(w, toks):
    return w[toks % 16] - 0.1 - (toks % 7) * 0.1  # FakeModel._logp


def np_update(rolls, w0, cfg, ref_w=None):
    """FakeModel's weights after one trainer step from w0 (token-mean aggregation, no entropy bonus)."""
    assert cfg.aggregation == "token-mean" and cfg.entropy_coef == 0
    train = [r for r in rolls if len(r.completion.token_ids) > 0]
    groups = [-1 if r.dropped else 2 * tasks.TASK_TYPES.index(r.task) + (r.role == "solve") for r in train]
    lens = [len(r.completion.token_ids) for r in train]
    adv = np_advantages([r.reward for r in train], groups, lens, cfg.advantage_mode == "token-weighted",
                        cfg.adv_eps)
    live = [(np.asarray(r.completion.token_ids), np.asarray(r.completion.model_logprobs, np.float64), a)
            for r, g, a in zip(train, groups, adv) if g >= 0]
    n_tok = sum(len(t) for t, _, _ in live)
    w, mom = np.asarray(w0, np.float64).copy(), np.zeros(16)
    for epoch in range(cfg.ppo_epochs):
        grad = np.zeros(16)
        for toks, old, a in live:
            cur = old if epoch == 0 else _fake_logp(w, toks)  # the first pass has ratio 1
            ratio = np.exp(cur - old)
            clipped = np.clip(ratio, 1 - cfg.clip_low, 1 + cfg.clip_high)
            # d/d logp of min(ratio * a, clip(ratio) * a): ratio * a where the unclipped term is the min
            weight = np.where(ratio * a <= clipped * a, ratio * a, 0.0) / n_tok
            if ref_w is not None:  # + kl_coef * ratio * (logp - ref_logp), logp held fixed
                weight -= cfg.kl_coef * ratio * (cur - _fake_logp(ref_w, toks)) / n_tok
            grad += np.bincount(toks % 16, weights=-weight, minlength=16)
        mom = MOMENTUM * mom + grad
        w -= LR * mom
    return w


def _one_step(cfg, **kw):
    model, rec = FakeModel(), Recorder()
    tr = make_trainer(cfg, model, callbacks=[rec], **kw)
    metrics = tr.step()
    return model.params["w"].astype(np.float64), rec.rollouts[0], metrics


def _config(tmp_path, name, **kw):
    return make_config(tmp_path / name, aggregation="token-mean", advantage_mode="per-sample", entropy_coef=0.0,
                       **kw)


def _assert_close(got, want, other):
    """got equals want, and want is far (relative to the tolerance) from other: the option matters."""
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.abs(want - other).max() > 10 * (1e-5 + 1e-4 * np.abs(want).max())


def test_kl_coef_pulls_the_weights_toward_the_reference(tmp_path):
    w_ref = np.random.default_rng(3).normal(0, 1, 16).astype(np.float32)
    base_w, base_rolls, _ = _one_step(_config(tmp_path, "base"))
    cfg = _config(tmp_path, "kl", kl_coef=0.5)
    w, rolls, m = _one_step(cfg, ref_model=FakeModel(w_ref))
    assert [r.text for r in rolls] == [r.text for r in base_rolls]  # the same rollouts: only the update differs
    assert m["kl"] is not None
    want = np_update(rolls, np.zeros(16), cfg, ref_w=w_ref)
    np.testing.assert_allclose(np_update(base_rolls, np.zeros(16), _config(tmp_path, "b2")), base_w,
                               rtol=1e-4, atol=1e-5)
    _assert_close(w, want, base_w)
    # the penalty moves the weights toward the reference model's
    assert np.linalg.norm(w - w_ref) < np.linalg.norm(base_w - w_ref)


def test_monitor_penalize_lowers_flagged_rewards_in_the_update(tmp_path):
    log_cfg = _config(tmp_path, "log", monitor_action="log")
    _, first, _ = _one_step(log_cfg)
    # Flag one sample of a group with three distinct rewards: per-sample advantages are invariant to
    # shifting and scaling a group's rewards, so flagging a whole group, or every sample with one of a
    # group's two reward values, would leave the update as it was.
    texts = [r.text for r in first]

    def rewards_of(r):
        return {q.reward for q in first if (q.task, q.role) == (r.task, r.role)}

    target = next(r.text for r in first if texts.count(r.text) == 1 and len(rewards_of(r)) == 3)

    def monitors(action):
        return MonitorSet([CallableMonitor("marked", lambda text: text == target)],
                          audit_path=tmp_path / f"{action}.jsonl", action=action, penalty=3.0)

    log_w, log_rolls, _ = _one_step(_config(tmp_path, "log2", monitor_action="log"), monitors=monitors("log"))
    cfg = _config(tmp_path, "pen", monitor_action="penalize", monitor_penalty=3.0)
    w, rolls, _ = _one_step(cfg, monitors=monitors("penalize"))
    assert [r.text for r in rolls] == [r.text for r in log_rolls] == texts
    assert [bool(r.flags) for r in rolls] == [t == target for t in texts]
    for r, lr_ in zip(rolls, log_rolls):
        assert r.reward == pytest.approx(lr_.reward - (3.0 if r.flags else 0.0)) and not r.dropped
    _assert_close(w, np_update(rolls, np.zeros(16), cfg), log_w)


def test_ppo_epochs_make_further_clipped_passes(tmp_path):
    one_w, one_rolls, _ = _one_step(_config(tmp_path, "one", clip_low=0.01, clip_high=0.01))
    cfg = _config(tmp_path, "two", ppo_epochs=2, clip_low=0.01, clip_high=0.01)
    w, rolls, _ = _one_step(cfg)
    assert [r.text for r in rolls] == [r.text for r in one_rolls]
    _assert_close(w, np_update(rolls, np.zeros(16), cfg), one_w)
    # the second pass saw ratios away from 1, some beyond the clip range
    w1 = np_update(rolls, np.zeros(16), _config(tmp_path, "r", clip_low=0.01, clip_high=0.01))
    ratios = np.concatenate([np.exp(_fake_logp(w1, np.asarray(r.completion.token_ids))
                                    - np.asarray(r.completion.model_logprobs, np.float64))
                             for r in rolls if len(r.completion.token_ids) > 0])
    assert np.any(np.abs(ratios - 1) > 0.01)
