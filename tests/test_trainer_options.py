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


# ------------------------------------------------------------ lr schedule
@pytest.mark.parametrize("schedule,ratio", [("constant", 0.0), ("linear", 0.0), ("cosine", 0.0), ("cosine", 0.1)])
def test_lr_schedule_matches_transformers(schedule, ratio):
    torch = pytest.importorskip("torch")
    opt_mod = pytest.importorskip("transformers.optimization")
    from azr.optim import lr_at
    base, warmup, total = 3e-4, 3, 11
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    if schedule == "constant":
        sch = opt_mod.get_constant_schedule_with_warmup(opt, warmup)
    elif schedule == "linear":
        sch = opt_mod.get_linear_schedule_with_warmup(opt, warmup, total)
    elif ratio:
        sch = opt_mod.get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total, min_lr_rate=ratio)
    else:
        sch = opt_mod.get_cosine_schedule_with_warmup(opt, warmup, total)
    for done in range(total + 1):
        want = opt.param_groups[0]["lr"]  # the rate of the update that follows `done` earlier ones
        assert lr_at(schedule, base, done, warmup, total, ratio) == pytest.approx(want, rel=1e-9, abs=1e-15), done
        opt.step()
        sch.step()
    # past the end the decay stays at its floor (transformers' cosine would rise again)
    assert lr_at(schedule, base, total + 5, warmup, total, ratio) == pytest.approx(
        base if schedule == "constant" else base * ratio)
    with pytest.raises(ValueError, match="schedule"):
        lr_at("step", base, 0)


def test_trainer_follows_the_lr_schedule(tmp_path):
    from azr.optim import lr_at
    cfg = _config(tmp_path, "sched", steps=5, lr=0.2, lr_schedule="cosine", warmup_steps=2, decay_steps=4,
                  min_lr_ratio=0.25)
    tr = make_trainer(cfg)
    ms = tr.train()
    got = [m["lr"] for m in ms]
    assert got == pytest.approx([lr_at("cosine", 0.2, k, 2, 4, 0.25) for k in range(5)])
    assert got[0] == 0.0 and got[2] == pytest.approx(0.2) and got[4] == pytest.approx(0.05)
    # the default leaves the optimizer's rate alone (a notebook may set it by hand)
    tr2 = make_trainer(_config(tmp_path, "const", steps=2))
    tr2.optimizer.lr = 0.125
    assert [m["lr"] for m in tr2.train()] == [0.125, 0.125]
    with pytest.raises(ValueError, match="lr_schedule"):
        _config(tmp_path, "bad", lr_schedule="exp")
    with pytest.raises(ValueError, match="min_lr_ratio"):
        _config(tmp_path, "bad2", lr_schedule="cosine", min_lr_ratio=1.5)


# ---------------------------------------------------------------- callbacks
class Events:
    def __init__(self, stop_at=None):
        self.seen, self.stop_at = [], stop_at

    def on_train_begin(self, trainer, payload):
        self.seen.append(("train_begin", payload))

    def on_step_begin(self, trainer, step):
        self.seen.append(("step_begin", step))

    def on_rollouts(self, trainer, rolls):
        self.seen.append(("rollouts", trainer.step_count + 1))

    def on_step(self, trainer, m):
        self.seen.append(("step", m["step"]))
        if m["step"] == self.stop_at:
            trainer.request_stop("enough")

    def on_save(self, trainer, path):
        self.seen.append(("save", path.name))

    def on_train_end(self, trainer, out):
        self.seen.append(("train_end", len(out)))


def test_callback_lifecycle_and_stop(tmp_path, capsys):
    ev = Events(stop_at=2)
    tr = make_trainer(_config(tmp_path, "cb", steps=5, save_every=1), callbacks=[ev])
    out = tr.train()
    assert tr.step_count == 2 and len(out) == 2 and tr.stop_reason == "enough"
    assert ev.seen == [("train_begin", None),
                       ("step_begin", 1), ("rollouts", 1), ("step", 1), ("save", "step_000001"),
                       ("step_begin", 2), ("rollouts", 2), ("step", 2), ("save", "step_000002"),
                       ("train_end", 2)]
    assert (tmp_path / "cb" / "run" / "checkpoints" / "latest").read_text() == "step_000002"
    err = capsys.readouterr().err
    assert "stopped after step 2: enough" in err
    # no bar (progress = false): one plain line per step, and the metrics carry the time
    assert [ln.split()[3] for ln in err.splitlines() if ln.startswith("azr train: step")] == ["1/5", "2/5"]
    assert all(isinstance(m["wall_time"], float) and m["train_seconds"] > 0 for m in out)
    # a later train() starts afresh: the stop applied to that call only
    assert len(tr.train(steps=3)) == 1 and tr.stop_reason is None


def test_on_rollouts_can_replace_the_rewards(tmp_path):
    """A callback that replaces the solver reward with a length penalty: the
    update follows the new rewards exactly (np_update on them)."""
    class LengthPenalty:
        def on_rollouts(self, trainer, rolls):
            for r in rolls:
                if r.role == "solve":
                    r.reward = -0.01 * len(r.completion.token_ids)

    cfg = _config(tmp_path, "plain")
    plain_w, plain_rolls, _ = _one_step(cfg)
    cfg2 = _config(tmp_path, "pen")
    model, rec = FakeModel(), Recorder()
    tr = make_trainer(cfg2, model, callbacks=[LengthPenalty(), rec])
    tr.step()
    rolls = rec.rollouts[0]
    assert [r.text for r in rolls] == [r.text for r in plain_rolls]
    assert all(r.reward == pytest.approx(-0.01 * len(r.completion.token_ids)) for r in rolls if r.role == "solve")
    _assert_close(model.params["w"].astype(np.float64), np_update(rolls, np.zeros(16), cfg2), plain_w)
