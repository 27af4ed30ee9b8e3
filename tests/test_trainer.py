"""Trainer step logic with small fakes (the real model, tokenizer and sandbox
are other layers; the end-to-end tests with the real tiny model live with the
integration). The fakes follow docs/api.md:

- FakeTokenizer: one id per character;
- FakeModel: a "policy" that knows a few programs and answers right or wrong
  at random (its random stream depends on its parameters, so a resume that
  lost the weights would diverge); logp of a token = w[token % 16] + const,
  so loss_and_backward's gradient is exact and checkable;
- FakeExecutor: knows the same programs by their text and never executes
  model-written text;
- FakeAdamW: momentum SGD with a state dict.

Checked: six (task, role) batches, rewards from the tables reaching the
weights passed to loss_and_backward (against a NumPy reference), complete
metrics, changed weights, checkpoint + exact resume, the CLI, monitors,
seed files and the multi-pass / entropy paths.
"""
from __future__ import annotations

import ast
import json
import re
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from azr import tasks
from azr.config import TrainerConfig
from azr.monitors import MonitorSet, PatternMonitor
from azr.trainer import Trainer, build_trainer, cli_main

PROGRAMS = {
    "def f(a):\n    return a": lambda x: x,
    "def f(x):\n    return x + 1": lambda x: x + 1,
    "def f(x):\n    return x * 2": lambda x: x * 2,
    "def f(x):\n    return [x, x]": lambda x: [x, x],
}
NAMES = list(PROGRAMS)


def run_known(prog: str, inp: str):
    fn = PROGRAMS.get(prog)
    if fn is None:
        raise KeyError("unknown program")
    return fn(ast.literal_eval(inp))


def safe_repr(prog: str, inp: str) -> str | None:
    try:
        return repr(run_known(prog, inp))
    except Exception:  # noqa: BLE001
        return None


def blocks(text: str, tag: str) -> list[str]:
    return re.findall(r"```" + tag + r"\n(.*?)\n```", text, re.DOTALL)


# --------------------------------------------------------------------- fakes
class FakeTokenizer:
    chat_template = None
    bos_token_id = eos_token_id = pad_token_id = None

    def encode(self, text, add_special_tokens=False, allow_special=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(map(chr, ids))


class FakeModel:
    def __init__(self, w=None):
        self.params = {"w": np.zeros(16, np.float32) if w is None else np.asarray(w, np.float32).copy()}
        self._grads = {"w": np.zeros(16, np.float32)}
        self.tokenizer = FakeTokenizer()
        self.lb_calls: list[tuple] = []
        self.gen_calls: list[dict] = []
        self.logprob_calls = 0

    def parameters(self):
        return self.params

    def grads(self):
        return self._grads

    def zero_grad(self):
        self._grads["w"][:] = 0

    def _logp(self, toks):
        toks = np.asarray(toks)
        return (self.params["w"][toks % 16] - 0.1 - (toks % 7) * 0.1).astype(np.float32)

    # the "policy"
    def _answer(self, prompt: str, rng) -> str:
        bad_format = rng.random() < 0.15
        right = rng.random() < 0.5
        if "You design code-reasoning puzzles" in prompt:
            u = rng.random()
            if u < 0.2:
                return "no tags here"
            prog = NAMES[1 + int(rng.integers(3))] if u < 0.8 else "def f(x):\n    return y"
            return f"plan</think><answer>```python\n{prog}\n```\n```input\n{int(rng.integers(-5, 6))}\n```</answer>"
        if "different inputs" in prompt:
            ins = "".join(f"```input\n{int(rng.integers(-9, 10))}\n```\n" for _ in range(4))
            return f"ok</think><answer>{ins}```message\nsomething numeric\n```</answer>"
        if bad_format:
            return "</answer> oops"
        if "Predict the output" in prompt:
            v = run_known(blocks(prompt, "python")[0], blocks(prompt, "input")[0])
            ans = repr(v) if right else repr([v, "wrong"])
            return f"hmm</think><answer>```output\n{ans}\n```"  # stopped at </answer>
        if "Find an input" in prompt:
            prog, out = blocks(prompt, "python")[0], blocks(prompt, "output")[0]
            cands = [str(x) for x in range(-20, 21) if safe_repr(prog, str(x)) == out]
            ans = cands[0] if (right and cands) else "'no'"
            return f"hmm</think><answer>```input\n{ans}\n```</answer>"
        if "maps each of these inputs" in prompt:
            shown = list(zip(blocks(prompt, "input"), blocks(prompt, "output")))
            fits = [p for p in NAMES if all(safe_repr(p, i) == o for i, o in shown)]
            prog = fits[0] if (right and fits) else "def f(x):\n    return None"
            return f"hmm</think><answer>```python\n{prog}\n```</answer>"
        raise AssertionError("unexpected prompt: " + prompt[:200])

    def generate(self, prompts, n=1, max_new_tokens=256, temperature=1.0, top_p=1.0, top_k=0, stop=None,
                 seed=0, max_slots=None, kv_budget_mb=None, progress=False):
        self.gen_calls.append(dict(n=n, count=len(prompts), seed=seed, stop=stop))
        key = zlib.crc32(self.params["w"].tobytes())
        outs = []
        for i, ids in enumerate(prompts):
            assert isinstance(ids, list) and all(isinstance(t, int) for t in ids)
            text = self._decode(ids)
            group = []
            for j in range(n):
                rng = np.random.default_rng([seed, i, j, key])
                toks = self._encode(self._answer(text, rng))[:max_new_tokens]
                out = self._decode(toks)
                stopped = stop and "</answer>" not in out and "hmm" in out
                lp = self._logp(toks)
                group.append(SimpleNamespace(token_ids=toks, text=out, logprobs=lp, model_logprobs=lp.copy(),
                                             finish_reason="stop" if stopped else "eos"))
            outs.append(group)
        return outs

    # token ids <-> text: one id per character here; a subclass may use a real tokenizer
    def _encode(self, text):
        return [ord(c) for c in text]

    def _decode(self, ids):
        return "".join(map(chr, ids))

    def _rows_logp(self, targets, lengths):
        lp = self._logp(targets)
        valid = np.arange(targets.shape[1])[None, :] < np.asarray(lengths)[:, None]
        return np.where(valid, lp, 0).astype(np.float32), valid

    def logprobs(self, ids, targets, lengths=None):
        self.logprob_calls += 1
        lp, valid = self._rows_logp(targets, lengths)
        return lp, np.where(valid, 1.5, 0).astype(np.float32)

    def loss_and_backward(self, ids, targets, weights, lengths=None):
        assert ids.dtype == np.int32 and targets.dtype == np.int32 and weights.dtype == np.float32
        assert ids.shape == targets.shape == weights.shape
        self.lb_calls.append((ids.copy(), targets.copy(), weights.copy(), np.asarray(lengths).copy()))
        lp, valid = self._rows_logp(targets, lengths)
        w = np.where(valid, weights, 0)
        self._grads["w"] += np.bincount((targets % 16).ravel(), weights=-w.ravel(), minlength=16).astype(np.float32)
        return float(-(w * lp).sum()), lp, np.zeros_like(lp)

    def save_pretrained(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        np.save(Path(path) / "w.npy", self.params["w"])

    @classmethod
    def from_pretrained(cls, path):
        return cls(np.load(Path(path) / "w.npy"))


class FakeAdamW:
    def __init__(self, model, lr=0.5):
        self.model, self.lr = model, lr
        self.m = np.zeros(16, np.float32)
        self.t = 0

    def step(self):
        g = self.model.grads()["w"]
        self.m = 0.9 * self.m + g
        self.model.params["w"] -= self.lr * self.m
        self.t += 1
        return float(np.linalg.norm(g))

    def zero_grad(self):
        self.model.zero_grad()

    def state_dict(self):
        return {"t": self.t, "lr": self.lr, "state": {"w": {"m": self.m.copy()}}}

    def load_state_dict(self, d):
        self.t, self.lr, self.m = int(d["t"]), float(d["lr"]), np.array(d["state"]["w"]["m"], np.float32)


class FakeExecutor:
    def __init__(self):
        self.closed = False

    def _run(self, prog, inp):
        try:
            v = run_known(prog, inp)
        except Exception as e:  # noqa: BLE001
            return SimpleNamespace(status="error", value=None, output="", message=str(e))
        return SimpleNamespace(status="ok", value=v, output=repr(v), message="")

    def validate(self, programs, inputs):
        return [self._run(p, i) for p, i in zip(programs, inputs)]

    def judge_output(self, programs, inputs, golds, answers):
        out = []
        for g, a in zip(golds, answers):
            try:
                ok = repr(ast.literal_eval(a)) == g
            except Exception:  # noqa: BLE001
                ok = False
            out.append(SimpleNamespace(correct=ok, status="ok", message=""))
        return out

    def judge_input(self, programs, golds, answers):
        return [SimpleNamespace(correct=self._run(p, a).output == g, status="ok", message="")
                for p, g, a in zip(programs, golds, answers)]

    def judge_program(self, programs, io_pairs):
        return [SimpleNamespace(correct=all(self._run(p, i).output == o for i, o in pairs), status="ok",
                                message="") for p, pairs in zip(programs, io_pairs)]

    def close(self):
        self.closed = True


def make_config(tmp_path, **kw):
    base = dict(out=str(tmp_path / "run"), batch_size=3, n_learnability=4, k_references=2, micro_batch=4,
                progress=False, induction_inputs=4, max_new_tokens_propose=400, max_new_tokens_solve=400,
                seed_min=0, seed_rounds=0, max_prompt_tokens=0, scaffold="think", temperature=1.0)
    base.update(kw)
    return TrainerConfig.preset("quickstart", **base)


def make_trainer(cfg, model=None, **kw):
    model = model or FakeModel()
    return build_trainer(cfg, model=model, executor=kw.pop("executor", FakeExecutor()),
                         optimizer_factory=lambda m, c: FakeAdamW(m), **kw)


class Recorder:
    def __init__(self):
        self.rollouts, self.metrics = [], []

    def on_rollouts(self, trainer, rollouts):
        self.rollouts.append(rollouts)

    def on_step(self, trainer, metrics):
        self.metrics.append(metrics)


def np_advantages(r, g, lengths, token_weighted, eps):
    r = np.asarray(r, np.float64)
    adv = np.zeros_like(r)
    for gid in set(g):
        if gid < 0:
            continue
        idx = [i for i in range(len(r)) if g[i] == gid]
        vals = np.concatenate([np.full(lengths[i], r[i]) for i in idx]) if token_weighted else r[idx]
        var = vals.var(ddof=1) if vals.size > 1 else 0.0
        for i in idx:
            adv[i] = (r[i] - vals.mean()) / np.sqrt(var + eps)
    return adv


EXPECTED_METRICS = {"count", "mean_reward", "response_len_mean", "response_len_max", "flagged", "dropped",
                    "valid_rate", "format_error_rate", "solve_acc", "learnability", "learnable_rate"}


# --------------------------------------------------------------------- tests
@pytest.mark.parametrize("aggregation,adv_mode", [("token-mean", "per-sample"), ("sequence-mean", "token-weighted")])
def test_step_data_flow(tmp_path, aggregation, adv_mode):
    cfg = make_config(tmp_path, aggregation=aggregation, advantage_mode=adv_mode)
    model = FakeModel()
    rec = Recorder()
    tr = make_trainer(cfg, model, callbacks=[rec])
    w0 = model.params["w"].copy()
    m = tr.step()

    # six (task, role) batches of B each, in three generate calls of the step (+ learnability)
    rolls = rec.rollouts[0]
    for kind in tasks.TASK_TYPES:
        for role in ("propose", "solve"):
            rs = [r for r in rolls if r.task == kind and r.role == role]
            assert len(rs) == cfg.batch_size, (kind, role)
            assert m["tasks"][kind][role]["count"] == cfg.batch_size
            assert set(m["tasks"][kind][role]) == EXPECTED_METRICS
    assert [c["n"] for c in model.gen_calls] == [1, cfg.n_learnability, 1]
    assert model.gen_calls[0]["stop"] == ["</answer>"]

    # rewards follow the tables, judged independently here
    for r in rolls:
        if r.role == "solve":
            ans, _ = tasks.parse_answer(r.task, r.text, "<think>")
            if ans is None:
                assert r.outcome == "format_error" and r.reward == -1.0
                continue
            t = r.item
            try:
                if r.task == "deduction":
                    ok = repr(ast.literal_eval(ans)) == t.output
                elif r.task == "abduction":
                    ok = repr(run_known(t.program, ans)) == t.output
                else:
                    ok = None  # held-out half is random; trust outcome but check reward below
            except Exception:  # noqa: BLE001
                ok = False
            if ok is not None:
                assert r.outcome == ("correct" if ok else "wrong")
            assert r.reward == {"correct": 1.0, "wrong": -0.5}[r.outcome]
        else:
            if r.outcome == "valid":
                assert r.acc is not None
                k = round(r.acc * cfg.n_learnability)
                assert r.reward == pytest.approx(-0.5 if k in (0, cfg.n_learnability) else 1 - r.acc)
            else:
                assert r.reward == -1.0 and r.item is None
    assert any(r.outcome == "valid" for r in rolls if r.role == "propose")
    assert any(r.outcome in ("invalid", "malformed") for r in rolls if r.role == "propose")
    assert {r.outcome for r in rolls if r.role == "solve"} >= {"correct", "wrong"}

    # weights passed to loss_and_backward = advantage (NumPy reference) x aggregation
    train = [r for r in rolls if len(r.completion.token_ids) > 0]
    groups = [2 * tasks.TASK_TYPES.index(r.task) + (r.role == "solve") for r in train]
    lens = [len(r.completion.token_ids) for r in train]
    adv = np_advantages([r.reward for r in train], groups, lens, adv_mode == "token-weighted", cfg.adv_eps)
    rows = []
    for ids, tgt, w, L in model.lb_calls:
        for b in range(ids.shape[0]):
            rows.append((ids[b, :L[b]], tgt[b, :L[b]], w[b], int(L[b])))
    # rows with advantage 0 add nothing to the gradient and are not run
    assert len(rows) == sum(1 for a in adv if abs(a) > 1e-6) == m["backward_sequences"]
    assert 0 < len(rows) <= len(train)
    if adv_mode == "per-sample":  # this run has groups whose rewards are all equal (deterministic fakes)
        assert len(rows) < len(train)
    # rows may come in any order (micro-batches group similar lengths): match them by content
    by_content = {}
    for ids, tgt, w, L in rows:
        by_content.setdefault(tuple(ids) + (tgt[-1],), []).append((ids, tgt, w, L))
    n_tok = sum(lens)
    for r, a in zip(train, adv):
        full = r.prompt_ids + r.completion.token_ids
        if abs(a) <= 1e-6:
            assert tuple(full) not in by_content or len(by_content[tuple(full)]) == 0 or any(
                np.any(x[2]) for x in by_content[tuple(full)])
            continue
        ids, tgt, w, L = by_content[tuple(full)].pop()
        assert list(ids) == full[:-1] and list(tgt) == full[1:]
        P = len(r.prompt_ids)
        c = 1.0 / n_tok if aggregation == "token-mean" else 1.0 / (len(train) * len(r.completion.token_ids))
        np.testing.assert_allclose(w[P - 1:L], a * c, rtol=1e-4, atol=1e-9)
        assert np.all(w[:P - 1] == 0) and np.all(w[L:] == 0)
    assert max(ids.shape[0] for ids, *_ in model.lb_calls) <= cfg.micro_batch

    # weights changed; metrics complete and logged
    assert not np.array_equal(w0, model.params["w"])
    assert m["grad_norm"] > 0 and m["loss"] is not None
    assert set(m["time"]) >= {"generate", "execute", "update", "total"}
    assert m["buffer"]["deduction"] >= 1 and m["buffer"]["induction"] >= 1
    assert m["tokens_per_s"] > 0 and m["peak_memory_mb"] > 0 and m["generated_tokens"] > 0
    lines = (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [m] == rec.metrics


def strip_volatile(m):
    m = dict(m)
    for k in ("time", "tokens_per_s", "peak_memory_mb", "wall_time", "train_seconds"):
        m.pop(k)
    return m


def test_checkpoint_and_exact_resume(tmp_path):
    a = make_trainer(make_config(tmp_path / "a", steps=4))
    a.train()
    full = [strip_volatile(json.loads(x)) for x in (Path(a.config.out) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in full] == [1, 2, 3, 4]

    b = make_trainer(make_config(tmp_path / "b", steps=4))
    b.train(steps=2)
    run_b = Path(b.config.out)
    assert (run_b / "checkpoints" / "latest").read_text() == "step_000002"
    # a partial step 3 logged after the checkpoint is discarded on resume
    for name in ("metrics.jsonl", "samples.jsonl"):
        with open(run_b / name, "a") as f:
            f.write(json.dumps({"step": 3, "partial": True}) + "\n")
    del b
    c = Trainer.resume(run_b, model_loader=FakeModel.from_pretrained, executor=FakeExecutor(),
                       optimizer_factory=lambda m, cfg: FakeAdamW(m))
    assert c.step_count == 2
    c.train()
    resumed = [strip_volatile(json.loads(x)) for x in (run_b / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    assert resumed[2:] == full[2:]
    # samples.jsonl (log_samples) likewise: every trained completion, once, as in the uninterrupted run
    samples_a = (Path(a.config.out) / "samples.jsonl").read_text().splitlines()
    samples_c = (run_b / "samples.jsonl").read_text().splitlines()
    assert samples_c == samples_a and len(samples_a) == 4 * 6 * a.config.batch_size
    rec = json.loads(samples_a[0])
    assert {"step", "task", "role", "prompt", "text", "outcome", "reward", "item"} <= set(rec)
    np.testing.assert_array_equal(c.model.params["w"], a.model.params["w"])
    assert c.buffers.state_dict() == a.buffers.state_dict()
    assert c.optimizer.t == a.optimizer.t == 4
    # old checkpoints are pruned to keep_checkpoints
    assert sorted(p.name for p in (run_b / "checkpoints").glob("step_*")) == ["step_000003", "step_000004"]


def test_samples_carry_the_prompt_each_completion_answered(tmp_path):
    rec = Recorder()
    tr = make_trainer(make_config(tmp_path, steps=1, log_samples=True), callbacks=[rec])
    tr.train()
    lines = [json.loads(x) for x in (Path(tr.config.out) / "samples.jsonl").read_text().splitlines()]
    rolls = rec.rollouts[0]
    assert [(x["task"], x["role"], x["text"]) for x in lines] == [(r.task, r.role, r.text) for r in rolls]
    assert [x["prompt"] for x in lines] == [r.prompt_text for r in rolls]
    assert len({x["prompt"] for x in lines}) > 1 and all(x["prompt"] for x in lines)


def test_resume_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoints/latest"):
        Trainer.resume(tmp_path, model_loader=FakeModel.from_pretrained, executor=FakeExecutor())


def test_cli_train_and_resume(tmp_path, capsys):
    out = tmp_path / "runs" / "q"
    kw = lambda: dict(executor=FakeExecutor(), optimizer_factory=lambda m, c: FakeAdamW(m))  # noqa: E731
    rc = cli_main(["train", "--preset", "quickstart", "--steps", "2", "--out", str(out), "--no-progress",
                   "--set", "batch_size=2", "--set", "n_learnability=2", "--set", "seed_rounds=0"],
                  model=FakeModel(), **kw())
    assert rc == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert (out / "config.toml").is_file()
    rc = cli_main(["train", "--resume", str(out), "--steps", "3", "--no-progress"],
                  model_loader=FakeModel.from_pretrained, **kw())
    assert rc == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    assert lines[2]["tasks"]["deduction"]["solve"]["count"] == 2  # the saved config was kept
    capsys.readouterr()
    rc = cli_main(["train", "--set", "bach_size=1", "--out", str(tmp_path / "x")], model=FakeModel(), **kw())
    assert rc == 2
    assert "unknown field 'bach_size'" in capsys.readouterr().err


def test_monitor_drop_removes_samples_from_update(tmp_path):
    cfg = make_config(tmp_path, monitor_action="drop")
    model = FakeModel()
    rec = Recorder()
    ms = MonitorSet([PatternMonitor("outputs", r"```output")], audit_path=tmp_path / "audit.jsonl", action="drop")
    tr = make_trainer(cfg, model, monitors=ms, callbacks=[rec])
    m = tr.step()
    rolls = rec.rollouts[0]
    dropped = [r for r in rolls if r.dropped]
    assert dropped and all(r.task == "deduction" and r.role == "solve" for r in dropped)
    assert m["tasks"]["deduction"]["solve"]["dropped"] == len(dropped)
    # a dropped sample has weight 0 everywhere, so its row is not run at all;
    # every row that is run has some weight
    passed = {}
    for ids, tgt, w, L in model.lb_calls:
        for b in range(ids.shape[0]):
            passed.setdefault(tuple(ids[b, :L[b]]) + (int(tgt[b, L[b] - 1]),), []).append(w[b])
    assert passed and all(np.any(w) for ws in passed.values() for w in ws)
    kept_keys = {tuple(r.prompt_ids + r.completion.token_ids) for r in rolls if not r.dropped}
    for r in dropped:
        key = tuple(r.prompt_ids + r.completion.token_ids)
        assert key not in passed or key in kept_keys
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == len(dropped) and {a["role"] for a in audit} == {"solve"}


def test_seed_file_outputs_recomputed_in_sandbox(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    recs = [{"snippet": "def f(x):\n    return x + 1", "input": "4", "output": "999", "imports": []},
            {"snippet": "def f(x):\n    return nope", "input": "1", "output": "1", "imports": []},
            {"snippet": "def f(x):\n    return x * 2", "inputs": ["1", "2", "'a'"], "outputs": ["?", "?", "?"],
             "message": "doubles", "imports": []}]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in recs))
    tr = make_trainer(make_config(tmp_path, seed_files=[str(seeds)]))
    tr.prepare()
    ded = tr.buffers["deduction"].tasks
    assert [(t.program, t.output, t.source) for t in ded] == [("def f(x):\n    return x + 1", "5", "seed")]
    assert len(tr.buffers["abduction"]) == 1 and len(tr.buffers.seed) == 1
    ind = tr.buffers["induction"].tasks
    assert ind[0].outputs == ["2", "4", "'aa'"] and ind[0].message == "doubles"


def test_seeding_rounds_fill_buffers_without_updates(tmp_path):
    model = FakeModel()
    tr = make_trainer(make_config(tmp_path, seed_min=4, seed_rounds=3), model)
    tr.prepare()
    assert len(tr.buffers["deduction"]) >= 2 and len(tr.buffers["induction"]) >= 2
    assert model.lb_calls == [] and np.all(model.params["w"] == 0)
    assert all(c["n"] == 1 for c in model.gen_calls)  # no learnability rollouts while seeding


def test_multi_epoch_and_entropy_paths(tmp_path):
    model = FakeModel()
    tr = make_trainer(make_config(tmp_path, ppo_epochs=2, entropy_coef=0.01), model)
    m = tr.step()
    assert model.logprob_calls > 0  # current log-probs are computed for the ratio / entropy
    n_rows = sum(ids.shape[0] for ids, *_ in model.lb_calls)
    assert n_rows == 2 * m["trained_sequences"]
    assert m["entropy"] == pytest.approx(1.5)


def test_executor_built_by_trainer_is_closed(tmp_path, monkeypatch):
    import azr.trainer as trmod

    made = []

    class FakeExecutorModule:
        class Executor(FakeExecutor):
            def __init__(self, workers, timeout, memory_mb):
                super().__init__()
                made.append((workers, timeout, memory_mb))

    monkeypatch.setitem(__import__("sys").modules, "azr.executor", FakeExecutorModule)
    cfg = make_config(tmp_path)
    with trmod.Trainer(cfg, model=FakeModel(), optimizer_factory=lambda m, c: FakeAdamW(m)) as tr:
        ex = tr.executor
    assert made == [(cfg.executor_workers, cfg.executor_timeout, cfg.executor_memory_mb)] and ex.closed


class FakeBanditModel(FakeModel):
    """Answers a deduction prompt right with probability sigmoid(theta),
    theta = w[0]. The first answer token ('R' or 'W') carries the choice's
    log-prob and the rest are deterministic (log-prob 0), so
    loss_and_backward's gradient is the true score function of this policy."""

    def _theta(self):
        return float(self.params["w"][0])

    def _logp(self, toks):
        toks = np.asarray(toks)
        s = 1.0 / (1.0 + np.exp(-self._theta()))
        return np.where(toks == ord("R"), np.log(s), np.where(toks == ord("W"), np.log1p(-s), 0.0)).astype(np.float32)

    def _answer(self, prompt, rng):
        v = run_known(blocks(prompt, "python")[0], blocks(prompt, "input")[0])
        s = 1.0 / (1.0 + np.exp(-self._theta()))
        if rng.random() < s:
            return f"R</think><answer>```output\n{v!r}\n```</answer>"
        return f"W</think><answer>```output\n{v + 1!r}\n```</answer>"

    def loss_and_backward(self, ids, targets, weights, lengths=None):
        self.lb_calls.append(None)
        lp, valid = self._rows_logp(targets, lengths)
        w = np.where(valid, weights, 0)
        s = 1.0 / (1.0 + np.exp(-self._theta()))
        dlogp = np.where(targets == ord("R"), 1 - s, np.where(targets == ord("W"), -s, 0.0))
        self._grads["w"][0] += float(-(w * dlogp).sum())
        return float(-(w * lp).sum()), lp, np.zeros_like(lp)


def test_learning_signal_has_the_right_sign(tmp_path):
    """On a fixed buffer of easy deduction tasks (solver role only), the
    solver reward rises over the steps: rewards -> advantages -> weights ->
    loss_and_backward -> optimizer step all have the right sign."""
    seeds = tmp_path / "easy.jsonl"
    seeds.write_text("".join(json.dumps({"snippet": "def f(x):\n    return x + 1", "input": str(i), "output": "",
                                         "imports": []}) + "\n" for i in range(8)))
    cfg = make_config(tmp_path, seed_files=[str(seeds)], roles=["solve"], task_types=["deduction"], batch_size=8,
                      steps=30, save_every=0)
    model = FakeBanditModel()
    rec = Recorder()
    tr = build_trainer(cfg, model=model, executor=FakeExecutor(), optimizer=FakeAdamW(model, lr=5.0),
                       callbacks=[rec])
    tr.train()
    rewards = [m["tasks"]["deduction"]["solve"]["mean_reward"] for m in rec.metrics]
    assert all(m["tasks"]["abduction"]["solve"]["count"] == 0 for m in rec.metrics)
    assert all(m["tasks"]["deduction"]["propose"]["count"] == 0 for m in rec.metrics)
    assert np.mean(rewards[-10:]) > np.mean(rewards[:10]) + 0.3
    assert model._theta() > 1.0


def test_resume_rejects_damaged_checkpoint(tmp_path):
    tr = make_trainer(make_config(tmp_path, steps=1))
    tr.train()
    state = Path(tr.config.out) / "checkpoints" / "step_000001" / "trainer_state.json"
    good = json.loads(state.read_text())
    kw = dict(model_loader=FakeModel.from_pretrained, executor=FakeExecutor(),
              optimizer_factory=lambda m, c: FakeAdamW(m))
    for bad, msg in [({**good, "rng": {"bit_generator": "nope"}}, "invalid 'rng'"),
                     ({**good, "step": -3}, "'step' must be"),
                     ({**good, "config": {**good["config"], "batch_size": "x"}}, "field 'batch_size'")]:
        state.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            Trainer.resume(tr.config.out, **kw)
    state.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        Trainer.resume(tr.config.out, **kw)


def test_long_prompts_drop_references_then_skip(tmp_path):
    seeds = tmp_path / "s.jsonl"
    long_input = "[" + "1, " * 400 + "1]"
    seeds.write_text(json.dumps({"snippet": "def f(a):\n    return a", "input": long_input, "output": ""})
                     + "\n" + json.dumps({"snippet": "def f(x):\n    return x * 2", "input": "3", "output": ""})
                     + "\n")
    limit = 1500
    # solver only: the task whose prompt is too long is never shown
    cfg = make_config(tmp_path / "a", seed_files=[str(seeds)], max_prompt_tokens=limit, task_types=["deduction"],
                      roles=["solve"], batch_size=6)
    rec = Recorder()
    m = make_trainer(cfg, FakeModel(), callbacks=[rec]).step()
    solves = rec.rollouts[0]
    assert m["skipped_long_prompts"] > 0
    assert len(solves) == 6 - m["skipped_long_prompts"] and all(r.item.input == "3" for r in solves)
    # proposer prompts fit by showing fewer references
    cfg = make_config(tmp_path / "b", seed_files=[str(seeds)], max_prompt_tokens=limit, task_types=["deduction"],
                      k_references=2, batch_size=4)
    rec = Recorder()
    tr = make_trainer(cfg, FakeModel(), callbacks=[rec])
    tr.step()
    props = [r for r in rec.rollouts[0] if r.role == "propose"]
    assert len(props) == 4 and all(len(r.prompt_ids) <= limit for r in props)
    # K = 2 references from {long, short}: the long one never fits, so at most one is shown
    assert all("Example 2" not in r.prompt_text and long_input not in r.prompt_text for r in props)
    assert any("Example 1" in r.prompt_text for r in props)
    tr.train(steps=2)
    exported = (Path(cfg.out) / "buffers" / "deduction.jsonl").read_text().splitlines()
    assert len(exported) == len(tr.buffers["deduction"])


# ------------------------------------------------------------ answer scaffold
class SpanModel(FakeModel):
    """Writes only block bodies, as the ``answer`` scaffold asks: what it
    writes depends on the fence the prompt ends with. Like the real engine,
    ``token_ids`` include the characters of the stop string and ``text`` is cut
    before it."""

    def _body(self, text: str) -> str:
        if text.endswith("```python\n"):
            return "def f(x):\n    return x + 1\n"
        if text.endswith("```message\n"):
            return "adds one\n"
        if text.endswith("```input\n"):
            return "%d\n" % (text.rsplit("<answer>", 1)[1].count("```input") + 2)  # distinct for induction
        if text.endswith("```output\n"):  # every third answer is wrong, so rewards differ
            self.answers = getattr(self, "answers", 0) + 1
            v = run_known(blocks(text, "python")[0], blocks(text, "input")[0])
            return repr(v if self.answers % 3 else [v]) + "\n"
        raise AssertionError("prompt does not end with a fence opener: " + text[-80:])

    def generate(self, prompts, n=1, max_new_tokens=256, temperature=1.0, top_p=1.0, top_k=0, stop=None,
                 seed=0, max_slots=None, kv_budget_mb=None, progress=False):
        assert stop == ["```"]
        self.gen_calls.append(dict(n=n, count=len(prompts), seed=seed, stop=stop, prompts=prompts))
        outs = []
        for ids in prompts:
            group = []
            for _ in range(n):
                body = self._body("".join(map(chr, ids)))
                toks = [ord(c) for c in body + "```"][:max_new_tokens]
                done = len(toks) == len(body) + 3
                lp = self._logp(toks)
                group.append(SimpleNamespace(token_ids=list(toks), text=body if done else "".join(map(chr, toks)),
                                             logprobs=lp, model_logprobs=lp.copy(),
                                             finish_reason="stop" if done else "length"))
            outs.append(group)
        return outs


def test_answer_scaffold_writes_tags_and_trains_only_sampled_tokens(tmp_path):
    cfg = make_config(tmp_path, scaffold="answer", induction_inputs=3)
    model = SpanModel()
    rec = Recorder()
    tr = make_trainer(cfg, model, callbacks=[rec])
    m = tr.step()
    rolls = rec.rollouts[0]
    # deduction/abduction proposals: python then input; induction: message then 3 inputs
    for kind in ("deduction", "abduction"):
        assert m["tasks"][kind]["propose"]["valid_rate"] == 1.0
    assert m["tasks"]["induction"]["propose"]["valid_rate"] == 1.0
    for kind in tasks.TASK_TYPES:
        assert m["tasks"][kind]["solve"]["format_error_rate"] == 0.0
    assert 0 < m["tasks"]["deduction"]["solve"]["solve_acc"] < 1 or \
        0 < m["tasks"]["deduction"]["propose"]["solve_acc"] < 1
    ded = [r for r in rolls if r.task == "deduction" and r.role == "propose"][0]
    assert ded.prompt_text.endswith("<think>\n</think>\n<answer>\n```python\n")
    assert ded.prefix + ded.text == ("<think>\n</think>\n<answer>\n```python\ndef f(x):\n    return x + 1\n```"
                                     "\n```input\n3\n```\n</answer>")
    assert ded.item.program == "def f(x):\n    return x + 1" and ded.item.input == "3"
    c = ded.completion
    sampled = "def f(x):\n    return x + 1\n```"
    scaffold = "\n```input\n"
    assert "".join(map(chr, c.token_ids)) == sampled + scaffold + "3\n```"
    assert c.train_mask.tolist() == [1] * len(sampled) + [0] * len(scaffold) + [1] * 5
    assert np.all(c.model_logprobs[c.train_mask == 0] == 0)
    # the second span's prompt is the first prompt + the first span + the scaffold text
    later = [p for call in model.gen_calls[1:] for p in call["prompts"]]
    assert ded.prompt_ids + c.token_ids[:len(sampled) + len(scaffold)] in later
    ind = [r for r in rolls if r.task == "induction" and r.role == "propose"][0]
    assert ind.item.message == "adds one" and len(ind.item.inputs) == 3
    # scaffold tokens get zero loss weight; sampled ones do not (rewards differ across groups)
    seen_zero = seen_live = False
    for ids, tg, w, ln in model.lb_calls:
        for b in range(ids.shape[0]):
            full = ids[b, :ln[b]].tolist() + [int(tg[b, ln[b] - 1])]
            for r in rolls:
                if r.prompt_ids + list(r.completion.token_ids) == full:
                    P = len(r.prompt_ids)
                    wb = w[b, P - 1:ln[b]]
                    assert np.all(wb[r.completion.train_mask == 0] == 0)
                    seen_zero |= bool(np.any(r.completion.train_mask == 0))
                    seen_live |= bool(np.any(wb[r.completion.train_mask == 1] != 0))
    assert seen_zero and seen_live
    # response lengths count sampled tokens only
    assert m["tasks"]["deduction"]["propose"]["response_len_max"] == len(sampled) + 5


def test_answer_scaffold_budget_cuts_the_response(tmp_path):
    cfg = make_config(tmp_path, scaffold="answer", max_new_tokens_propose=30, roles=["propose"])
    model = SpanModel()
    rec = Recorder()
    tr = make_trainer(cfg, model, callbacks=[rec])
    m = tr.step()
    ded = [r for r in rec.rollouts[0] if r.task == "deduction" and r.role == "propose"][0]
    # the program (28 sampled tokens + 11 scaffold tokens) leaves no room for the input
    assert len(ded.completion.token_ids) <= 30 + len("\n```input\n")
    assert ded.outcome == "malformed" and ded.completion.finish_reason == "length"
    assert m["tasks"]["deduction"]["propose"]["format_error_rate"] == 1.0


def test_answer_scaffold_rejects_a_clashing_prefix(tmp_path):
    cfg = make_config(tmp_path, scaffold="answer")
    T = tasks.PromptTemplates(plain_wrapper="User: {prompt}\nAssistant: <think>Let me see")
    with pytest.raises(ValueError, match="answer scaffold"):
        make_trainer(cfg, SpanModel(), templates=T)


def test_micro_batches_bound_rows_and_padded_tokens(tmp_path):
    from azr.trainer import _micro_batches

    lengths = np.array([5, 100, 7, 60, 60, 300, 8])
    order = [int(i) for i in np.argsort(lengths, kind="stable")]
    assert _micro_batches(order, lengths, 3, 0) == [[0, 2, 6], [3, 4, 1], [5]]
    got = _micro_batches(order, lengths, 8, 130)
    assert sorted(i for c in got for i in c) == list(range(7))
    for c in got:  # rows x longest row within the budget, unless a row alone exceeds it
        assert len(c) * lengths[c].max() <= 130 or len(c) == 1
    assert got == [[0, 2, 6], [3, 4], [1], [5]]
    # the trainer honours it: every loss_and_backward call stays within the budget
    cfg = make_config(tmp_path, micro_batch=8, micro_batch_tokens=900)
    model = FakeModel()
    make_trainer(cfg, model).step()
    assert model.lb_calls
    for ids, _, _, ln in model.lb_calls:
        assert ids.shape[0] * int(ln.max()) <= 900 or ids.shape[0] == 1


def test_checkpoint_tree_writer_frees_its_arrays_at_once(tmp_path):
    # a recursive closure in the writer once kept every optimizer-state copy
    # alive until the cyclic collector ran: 1 GB per checkpoint on SmolLM2-135M
    import gc
    import weakref

    from azr.trainer import _load_tree, _save_tree

    state = {"exp_avg": np.arange(6, dtype=np.float32), "nested": [{"v": np.ones(3)}, (1, 2.5, "x")],
             7: None}
    refs = [weakref.ref(state["exp_avg"]), weakref.ref(state["nested"][0]["v"])]
    gc.disable()
    try:
        _save_tree(state, tmp_path / "o.npz", tmp_path / "o.json")
        back = _load_tree(tmp_path / "o.npz", tmp_path / "o.json")
        np.testing.assert_array_equal(back["exp_avg"], state["exp_avg"])
        np.testing.assert_array_equal(back["nested"][0]["v"], np.ones(3))
        assert back["nested"][1] == [1, 2.5, "x"] and back[7] is None
        del state, back
        assert all(r() is None for r in refs)  # freed by reference counting alone
    finally:
        gc.enable()


@pytest.mark.parametrize("weighting", ["uniform", "learnable"])
def test_buffers_record_each_tasks_solve_history(tmp_path, weighting):
    """Learnability rollouts of a new task and every solver answer become the
    task's solve history, counted here from the rollouts themselves."""
    rec = Recorder()
    tr = make_trainer(make_config(tmp_path, buffer_weighting=weighting), callbacks=[rec])
    tr.prepare()
    seen = {k: {t.key() for t in tr.buffers[k].tasks} for k in tasks.TASK_TYPES}
    want: dict[tuple, list[int]] = {}
    for _ in range(3):
        tr.step()
        rolls = rec.rollouts[-1]
        for r in rolls:
            if r.role == "propose" and r.outcome == "valid" and r.item.key() not in seen[r.task]:
                seen[r.task].add(r.item.key())
                h = want.setdefault((r.task, r.item.key()), [0, 0])
                h[0] += tr.config.n_learnability
                h[1] += round(r.acc * tr.config.n_learnability)
        for r in rolls:
            if r.role == "solve":
                h = want.setdefault((r.task, r.item.key()), [0, 0])
                h[0] += 1
                h[1] += r.outcome == "correct"
    assert any(c for _, c in want.values()) and any(c < a for a, c in want.values())
    for kind in tasks.TASK_TYPES:
        for t in tr.buffers[kind].tasks:
            assert list(tr.buffers[kind].solve_history(t)) == want.get((kind, t.key()), [0, 0]), t


def test_reward_fns_replace_and_add(tmp_path):
    """A user reward replaces the solver's (a length penalty): the rewards and
    the update's loss weights follow it; another adds a weighted bonus to
    every proposal's paper reward; bad functions give named errors."""
    def length_penalty(r):
        return -len(r.completion.token_ids) / 10 if r.role == "solve" else None

    rec, model = Recorder(), FakeModel()
    tr = make_trainer(make_config(tmp_path, aggregation="sequence-mean"), model, callbacks=[rec],
                      reward_fns=[length_penalty], reward_mode="replace")
    tr.step()
    rolls = rec.rollouts[0]
    solve = [r for r in rolls if r.role == "solve"]
    assert solve and all(r.reward == pytest.approx(-len(r.completion.token_ids) / 10) for r in solve)
    # the update follows the new rewards: within a task type's solver group, a
    # longer answer than the group's mean gets a negative weight
    rows = {}
    for ids, tgt, w, L in model.lb_calls:
        for b in range(ids.shape[0]):
            rows[tuple(ids[b, :L[b]]) + (tgt[b, L[b] - 1],)] = float(w[b].sum())
    checked = 0
    for kind in tasks.TASK_TYPES:
        grp = [r for r in solve if r.task == kind and len(r.completion.token_ids) > 0]
        lens = [len(r.completion.token_ids) for r in grp]
        if len(set(lens)) < 2:
            continue
        mean = sum(lens) / len(lens)
        for r, n in zip(grp, lens):
            key = tuple(r.prompt_ids + r.completion.token_ids)
            if n != mean and key in rows:
                assert (rows[key] < 0) == (n > mean), (kind, n, mean, rows[key])
                checked += 1
    assert checked > 0

    # add mode, with a weight: the paper's proposer rewards plus 0.5
    rec2 = Recorder()
    base = make_trainer(make_config(tmp_path / "b", seed=7), FakeModel(), callbacks=[rec2])
    base.step()
    rec3 = Recorder()
    bonus = make_trainer(make_config(tmp_path / "c", seed=7), FakeModel(), callbacks=[rec3],
                         reward_fns=[(lambda r: 1.0 if r.role == "propose" else None, 0.5)])
    bonus.step()
    for a, b in zip(rec2.rollouts[0], rec3.rollouts[0]):
        assert a.text == b.text
        assert b.reward == pytest.approx(a.reward + (0.5 if a.role == "propose" else 0.0))

    with pytest.raises(ValueError, match="reward_mode must be"):
        make_trainer(make_config(tmp_path / "d"), reward_fns=[length_penalty], reward_mode="sum")
    with pytest.raises(TypeError, match=r"reward_fns\[0\]"):
        make_trainer(make_config(tmp_path / "e"), reward_fns=[(length_penalty, "x")])

    def wrong_type(r):
        return "good"

    tr = make_trainer(make_config(tmp_path / "f"), reward_fns=[wrong_type])
    with pytest.raises(ValueError, match="reward function wrong_type returned 'good'"):
        tr.step()

    def broken(r):
        raise KeyError("oops")

    tr = make_trainer(make_config(tmp_path / "g"), reward_fns=[broken])
    with pytest.raises(RuntimeError, match="reward function broken failed .*KeyError"):
        tr.step()
