"""What a learning run relies on: held-out sets that stay held out, evaluation
that does not disturb training, resumes that honour a changed config, the
proposal filters that keep self-play from collapsing, and the paired
statistics the results are reported with.

The held-out and CRUXEval sets are read from ``../shared/data`` (skipped with
a reason when absent); the evaluation-trajectory and resume tests run the real
engine (TinyStories-656K, azr.AdamW, azr.Executor).
"""
from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from azr import heldout
from azr.config import TrainerConfig
from azr.tasks import MAX_OUTPUT_CHARS, Proposal, Task, validate_proposals
from azr.trainer import Trainer

from test_trainer import NAMES, FakeAdamW, FakeExecutor, FakeModel, make_config, make_trainer

from azr import executor as executor_mod


@pytest.fixture(scope="module")
def executor():
    ex = executor_mod.Executor(workers=2, timeout=5.0, memory_mb=256)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def bench_dir(shared_data: Path) -> str:
    return str(shared_data / "benchmarks")


# ------------------------------------------------------------ held-out sets
def test_heldout_programs_fixed_split(bench_dir):
    progs = heldout.heldout_programs(bench_dir, download=False)
    dev, test = progs["dev"], progs["test"]
    keys_dev = {heldout.program_key(p) for _, p, _ in dev}
    keys_test = {heldout.program_key(p) for _, p, _ in test}
    assert not keys_dev & keys_test
    assert len(keys_dev) == len(dev) and len(keys_test) == len(test)  # deduplicated
    assert heldout.program_key("def f(a):\n    return a") not in keys_dev | keys_test  # the training seed
    # the split is fixed: a third dev, in a reproducible order; >= 300 test tasks (two per program)
    assert abs(len(dev) - (len(dev) + len(test)) / 3) <= 1
    assert 2 * len(test) >= 300
    assert heldout.heldout_programs(bench_dir, download=False) == progs
    # layout-only differences share a key
    assert heldout.program_key("def f(x):\n  return x+1") == heldout.program_key("def f(x):\n    return x+1 ")


def test_eval_sets_have_gold_from_the_sandbox(bench_dir, executor):
    es = heldout.load_eval_set("heldout-dev", executor, bench_dir, download=False)
    kinds = [t.kind for t in es.tasks]
    assert set(kinds) == {"deduction", "abduction"} and kinds.count("deduction") == kinds.count("abduction")
    assert len(es.ids) == len(set(es.ids)) == len(es)
    t = es.tasks[0]
    got = executor.validate([t.program], [t.input])[0]
    assert got.status == "ok" and got.output == t.output
    crux = heldout.load_eval_set("cruxeval-o-test", executor, bench_dir, download=False)
    crux_i = heldout.load_eval_set("cruxeval-i-test", executor, bench_dir, download=False)
    dev = heldout.load_eval_set("cruxeval-o-dev", executor, bench_dir, download=False)
    assert {t.kind for t in crux.tasks} == {"deduction"} and {t.kind for t in crux_i.tasks} == {"abduction"}
    assert len(crux) + sum(dev.dropped.values()) + len(dev) + sum(crux.dropped.values()) == 800
    assert not {i.split(":", 1)[1] for i in crux.ids} & {i.split(":", 1)[1] for i in dev.ids}
    with pytest.raises(ValueError, match="unknown evaluation set"):
        heldout.load_eval_set("heldout-train", executor, bench_dir)


class HeldoutProposer(FakeModel):
    """Proposes a held-out program; answers unknown programs wrong."""

    program = ""

    def _answer(self, prompt, rng):
        if "You design code-reasoning puzzles" in prompt:
            return f"p</think><answer>```python\n{self.program}\n```\n```input\n3\n```</answer>"
        try:
            return super()._answer(prompt, rng)
        except KeyError:
            return "h</think><answer>```output\n0\n```</answer>"


def test_heldout_programs_never_enter_a_buffer(bench_dir, executor, tmp_path):
    test_prog = heldout.heldout_programs(bench_dir, download=False)["test"]
    prog = next(p for _, p, i in test_prog if executor.validate([p], ["3"])[0].status == "ok")
    seed_prog, seed_inp = next((p, i) for _, p, i in test_prog if p != prog)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"snippet": NAMES[1], "input": "1", "output": "2"}) + "\n"
                     + json.dumps({"snippet": seed_prog, "input": seed_inp, "output": ""}) + "\n")
    model = HeldoutProposer()
    model.program = prog
    cfg = make_config(tmp_path, steps=2, eval_data_dir=bench_dir, seed_files=[str(seeds)])
    rolls = []
    tr = Trainer(cfg, model=model, executor=executor, optimizer_factory=lambda m, c: FakeAdamW(m))
    tr.add_callback(SimpleNamespace(on_rollouts=lambda t, r: rolls.extend(r)))
    tr.train()
    keys = heldout.heldout_keys(bench_dir, download=False)
    for kind in ("deduction", "abduction", "induction", "seed"):
        assert not {heldout.program_key(t.program) for t in tr.buffers[kind].tasks} & keys
    props = [r for r in rolls if r.role == "propose" and r.task != "induction"]
    assert props and all(r.outcome == "invalid" and r.reason.startswith("heldout") for r in props)
    assert tr._stats["heldout_seeds_skipped"] == 1
    # the guard is what keeps it out: without it the same proposals are valid
    rolls.clear()
    cfg2 = make_config(tmp_path / "b", steps=1, exclude_heldout=False, seed_files=[str(seeds)])
    tr2 = Trainer(cfg2, model=model, executor=executor, optimizer_factory=lambda m, c: FakeAdamW(m))
    tr2.add_callback(SimpleNamespace(on_rollouts=lambda t, r: rolls.extend(r)))
    tr2.train()
    assert any(heldout.program_key(t.program) in keys for t in tr2.buffers["deduction"].tasks)


# --------------------------------------------------------- trivial proposals
def test_trivial_proposals_are_invalid(tmp_path):
    tr = make_trainer(make_config(tmp_path, reject_trivial=True))
    ref = Task(kind="deduction", program="def f(x):\n    return x * 2", input="3", output="6")
    copy = Task(kind="deduction", program="def f(x):\n    return x + 1", input="3", output="4")
    why = tr._trivial([
        (Task(kind="deduction", program="def f(a):\n    return a", input="5", output="5"), []),   # identity
        (Task(kind="deduction", program="def f(x):\n    return x * 2", input="4", output="8"), [ref]),  # = ref
        (copy, [ref]),                                                                                    # new
        (Task(kind="deduction", program="def f(x):\n    return x * 2", input="0", output="0"), []),  # 0*2 == 0
    ])
    assert why[0].startswith("trivial: the program returns its input")
    assert why[1] == "trivial: behaves like reference 1 on both inputs"
    assert why[2] == ""
    assert why[3].startswith("trivial: the program returns its input")


def test_constant_proposals_are_trivial(tmp_path, executor):
    """The late collapse of the 2-hour run: constant functions of a string
    input. Judged by the real sandbox, next to programs that must pass."""
    tr = make_trainer(make_config(tmp_path, reject_trivial=True))
    tr.executor = executor
    cases = [
        ("def f(a: int) -> int:\n    return 10", '"Tofu, lemonade!"', "10", True),
        ("def f(x):\n    return 5.0", "[1, 2, 3]", "5.0", True),
        ("def f(a, b):\n    return len('abc') + 1", '1, "x"', "4", True),
        ("def f(a, b):\n    return b * 2", '1, "x"', "'xx'", False),          # ignores a, not b
        ("def f(x):\n    return x > 0", "5", "True", False),                   # flips on -x - 3
        ("def f(s):\n    return {'ab': 1}[s]", '"ab"', "1", False),             # raises elsewhere
        ("def f(d):\n    return sorted(d)", '{"b": 1, "a": 2}', "['a', 'b']", False),  # keys change shape
        ("def f(s):\n    return 7", '"a" + "b"', "7", False),  # not a literal: nothing to perturb
    ]
    items = [(Task(kind="deduction", program=p, input=i, output=o), []) for p, i, o, _ in cases]
    why = tr._trivial(items)
    for (p, i, o, const), w in zip(cases, why):
        assert (w == "trivial: the output does not change when the input does") == const, (p, i, w)
    assert tr._trivial(items, constant=False) == [""] * len(items)  # reject_constant = false


def test_perturbed_inputs():
    from azr.tasks import perturbed_inputs
    assert perturbed_inputs('"ab"') == ["'abx'", "'aQ7'", "'baQ7'"]
    assert perturbed_inputs("1, [2, 3]") == ["2, [3, 4]", "-4, [-5, -6]", "9, [3, 2, 2]"]
    assert perturbed_inputs("x=3, y=None") == ["x=4, y=0", "x=-6, y='a'", "x=13, y=[1]"]
    assert perturbed_inputs("True") == ["False"]
    assert perturbed_inputs('"a" + "b", 2') == ['"a" + "b", 3', '"a" + "b", -5', '"a" + "b", 11']
    for bad in ("", '"a" + "b"', "*a", "f(", "1)+(2", "**{}", "(" * 500 + ")" * 500, "9" * 5000):
        assert perturbed_inputs(bad) == [], bad
    for inp in ('{1, 2}', '{"k": [1.5, (2, "z")]}', "b'xy', 2j", "[[], {}, set()]", "((),)"):
        alts = perturbed_inputs(inp)
        assert alts and inp not in alts and len(set(alts)) == len(alts)
        for a in alts:
            import ast
            ast.parse(f"f({a})", mode="eval")  # each is a valid argument list


# ------------------------------------------------------------ program shapes
def test_program_shape():
    from azr.tasks import program_shape as shape
    a = shape("def f(x):\n    return x + 1")
    assert a is not None
    assert shape("def g(y):\n    return y + 5") == a                    # names and constants vary
    assert shape("def f(x: int) -> int:\n    return x + 1.5") != a      # a float is another type
    assert shape("def f(x):\n    return x * 1") != a                    # another operator
    assert shape("def f(x):\n    return 1 + x") != a                    # operands swapped
    assert shape("def f(s):\n    return s.upper()") != shape("def f(s):\n    return s.lower()")
    # run 2's template: a spread input plus a constant, whatever the names and the text
    assert (shape('def f(*counter):\n    return *counter, "John G Q ID 1005"')
            == shape("def f(*q):\n    return *q, 'x'"))
    # identifiers are numbered by first appearance, so which argument is used matters
    assert shape("def f(a, b):\n    return a") != shape("def f(a, b):\n    return b")
    for bad in ("def f(:", "", "x = " + "(" * 300 + ")" * 300, "y = " + "-" * 200_000 + "1"):
        r = shape(bad)
        assert r is None or isinstance(r, str), bad  # never raises


def _proposal(program: str, inp: str = "1") -> "Rollout":
    from azr.trainer import Rollout
    return Rollout("deduction", "propose", [], "", None, outcome="valid",
                   item=Task(kind="deduction", program=program, input=inp, output="0"))


def test_max_same_shape_rejects_a_template_the_buffer_holds(tmp_path):
    tr = make_trainer(make_config(tmp_path, max_same_shape=2))
    buf = tr.buffers["deduction"]
    buf.add(Task(kind="deduction", program="def f(x):\n    return x + 1", input="1", output="2"))
    buf.add(Task(kind="deduction", program="def f(y):\n    return y + 7", input="2", output="9"))
    rolls = [_proposal("def g(z):\n    return z + 3"),      # third of a shape the buffer holds twice
             _proposal("def f(x):\n    return x * 2"),      # new shape: accepted ...
             _proposal("def f(v):\n    return v * 5"),      # ... twice ...
             _proposal("def f(w):\n    return w * 9"),      # ... not a third time within the batch
             _proposal("def f(x):\n    return [x, 1]")]
    tr._limit_shapes("deduction", rolls)
    assert [r.item is not None for r in rolls] == [False, True, True, False, True]
    assert rolls[0].outcome == "invalid" and rolls[0].reason.startswith("duplicate:")
    # evicted tasks stop counting
    buf._items.clear()
    again = [_proposal("def g(z):\n    return z + 3")]
    tr._limit_shapes("deduction", again)
    assert again[0].item is not None


def test_max_same_shape_in_training_caps_every_shape(tmp_path):
    from collections import Counter
    from azr.tasks import program_shape
    rolls = []
    tr = make_trainer(make_config(tmp_path, steps=3, max_same_shape=1))
    tr.add_callback(SimpleNamespace(on_rollouts=lambda t, r: rolls.extend(r)))
    tr.train()
    for kind in ("deduction", "abduction"):
        counts = Counter(program_shape(t.program) for t in tr.buffers[kind].tasks)
        assert counts and max(counts.values()) == 1, counts
    assert any(r.reason.startswith("duplicate:") for r in rolls if r.role == "propose")


# ------------------------------------------------------------ output limit
def test_gold_output_longer_than_an_answer_is_invalid():
    class Ex:
        def validate(self, programs, inputs):
            return [SimpleNamespace(status="ok", output="'" + "a" * n + "'", message="")
                    for n in (MAX_OUTPUT_CHARS - 2, MAX_OUTPUT_CHARS - 1)]

    res = validate_proposals(Ex(), "deduction", [Proposal(program="def f(a):\n    return a", input="1")] * 2)
    assert res[0][0] is not None and res[1][0] is None and "more than the" in res[1][1]
    assert executor_mod.Executor.__init__.__kwdefaults__["max_output_chars"] == MAX_OUTPUT_CHARS


# --------------------------------------------------------------- references
def test_references_without_replacement(tmp_path):
    tr = make_trainer(make_config(tmp_path, k_references=3))
    tr.prepare()
    rng = np.random.default_rng(0)
    for kind in ("deduction", "abduction"):
        src = tr.buffers[kind].tasks
        for _ in range(20):
            refs = tr.buffers.references(kind, 3, rng)
            assert len(refs) == min(3, len(src)) and len({r.key() for r in refs}) == len(refs)


# ------------------------------------------------------------- statistics
def _mcnemar_reference(b: int, c: int) -> float:
    """Exact rational binomial tail, an independent reference."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(Fraction(math.comb(n, i), 2 ** n) for i in range(k + 1))
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize("b,c", [(0, 0), (0, 5), (1, 9), (3, 3), (10, 25), (40, 70), (300, 350)])
def test_mcnemar_exact(b, c):
    assert heldout.mcnemar_exact(b, c) == pytest.approx(_mcnemar_reference(b, c), rel=1e-9, abs=1e-300)


def test_paired_compare():
    before = [True] * 10 + [False] * 90
    after = [True] * 8 + [False] * 2 + [True] * 17 + [False] * 73
    pr = heldout.paired_compare(before, after)
    assert (pr.n, pr.b, pr.c) == (100, 2, 17)
    assert pr.before == 0.10 and pr.after == 0.25 and pr.delta == pytest.approx(0.15)
    assert pr.p_value == pytest.approx(_mcnemar_reference(2, 17))
    lo, hi = pr.ci95
    assert 0.05 < lo < 0.15 < hi < 0.25
    same = heldout.paired_compare(before, before)
    assert same.delta == 0 and same.ci95 == (0.0, 0.0) and same.p_value == 1.0
    with pytest.raises(ValueError):
        heldout.paired_compare([True], [True, False])


# ------------------------------------------------------------ config checks
def test_eval_config_checked():
    with pytest.raises(ValueError, match="eval_tasks"):
        TrainerConfig.preset("cpu", eval_tasks=["heldout-train"])
    with pytest.raises(ValueError, match="eval_every"):
        TrainerConfig.preset("cpu", eval_every=-1)
    with pytest.raises(ValueError, match="adam_eps"):
        TrainerConfig.preset("cpu", adam_eps=0.0)
    with pytest.raises(ValueError, match="keep_best"):
        TrainerConfig.preset("cpu", keep_best=True, eval_every=0)
    with pytest.raises(ValueError, match="max_same_shape"):
        TrainerConfig.preset("cpu", max_same_shape=-1)


# ------------------------------------------------ real engine: eval, resume
SEEDS = [
    {"snippet": "def f(a):\n    return a + 1", "input": "3", "output": "4", "imports": []},
    {"snippet": "def f(s):\n    return s[::-1]", "input": "'abc'", "output": "'cba'", "imports": []},
    {"snippet": "def f(a):\n    return a * 2", "inputs": ["1", "2", "3", "5"], "outputs": ["2", "4", "6", "10"],
     "message": "doubles", "imports": []},
]


@pytest.fixture
def tiny_cfg(shared_data: Path, bench_dir, tmp_path):
    d = shared_data / "models" / "tinystories-656k"
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"{d} missing")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(r) + "\n" for r in SEEDS), encoding="utf-8")

    def make(out: str, **kw) -> TrainerConfig:
        base = dict(model=str(d), out=str(tmp_path / out), seed_files=[str(seeds)], batch_size=2,
                    n_learnability=2, k_references=1, induction_inputs=3, max_prompt_tokens=440,
                    max_new_tokens_propose=24, max_new_tokens_solve=8, lr=1e-3, micro_batch=4, steps=2,
                    executor_workers=1, entropy_coef=0.01, seed_min=0, seed_rounds=0, progress=False,
                    save_every=1, keep_checkpoints=0, eval_data_dir=bench_dir, temperature=0.7)
        base.update(kw)
        return TrainerConfig(**base)
    return make


def _params(model) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in model.parameters().items()}


def test_evaluation_does_not_change_the_trajectory(tiny_cfg, executor):
    with Trainer(tiny_cfg("plain"), executor=executor) as a:
        a.train()
        pa = _params(a.model)
    cfg = tiny_cfg("evals", eval_every=1, eval_limit=6, eval_tasks=["heldout-dev", "cruxeval-o-dev"],
                   keep_best=True)
    with Trainer(cfg, executor=executor) as b:
        b.train()
        pb = _params(b.model)
        assert b.step_count == 2
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    run = Path(cfg.out)
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], sorted(r["eval"])) for r in recs if "eval" in r]
    assert evals == [(s, ["cruxeval-o-dev", "heldout-dev"]) for s in (0, 1, 2)]
    assert all(0 <= r["eval"]["heldout-dev"]["accuracy"] <= 1 and r["eval"]["heldout-dev"]["n"] == 6
               for r in recs if "eval" in r)
    assert [r["step"] for r in recs if "tasks" in r] == [1, 2]
    lines = [json.loads(x) for x in (run / "evals.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all(len(x["correct"]) == len(x["ids"]) == 6 for x in lines)
    assert {x["set"] for x in lines} == {"heldout-dev", "cruxeval-o-dev"}


def test_keep_best_restores_the_weights_of_the_best_evaluation(tiny_cfg, executor):
    """keep_best keeps the weights of the best dev evaluation (memory and
    <out>/best/), a worse or equal one does not replace them, and
    restore_best puts them back, also in a resumed trainer (from disk)."""
    cfg = tiny_cfg("best", eval_every=1, eval_limit=4, keep_best=True, steps=1)
    with Trainer(cfg, executor=executor) as tr:
        p0 = _params(tr.model)
        tr.train()
        assert tr.best is not None and tr.best["set"] == "heldout-dev"
        first = dict(tr.best)
        # a better evaluation at step 1 takes over; an equal one later does not
        tr._consider_best(1, {"heldout-dev": {"accuracy": first["accuracy"] + 0.5, "n": 4}})
        p1 = _params(tr.model)
        assert tr.best["step"] == 1
        for v in tr.model.parameters().values():
            v += 0.25  # weights move on
        tr._consider_best(2, {"heldout-dev": {"accuracy": first["accuracy"] + 0.5, "n": 4}})
        assert tr.best["step"] == 1
        assert tr.restore_best()["step"] == 1
        for k, v in tr.model.parameters().items():
            np.testing.assert_array_equal(v, p1[k], err_msg=k)
        assert not all(np.array_equal(p0[k], p1[k]) for k in p0)  # the step changed them
    run = Path(cfg.out)
    assert json.loads((run / "best" / "best.json").read_text())["step"] == 1
    res = Trainer.resume(run, executor=executor)
    try:
        assert res.best["step"] == 1 and res._best_params is None
        res.restore_best()  # from <out>/best/model
        for k, v in res.model.parameters().items():
            np.testing.assert_array_equal(v, p1[k], err_msg=k)
    finally:
        res.close()
    # nothing kept: weights unchanged, None
    with Trainer(tiny_cfg("nobest", eval_every=1, eval_limit=4, steps=1), executor=executor) as tr:
        tr.train()
        before = _params(tr.model)
        assert tr.restore_best() is None
        for k, v in tr.model.parameters().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_evaluate_judges_gold_answers_right(tiny_cfg, executor):
    """The evaluation path judges the model's answers with the set's gold:
    a model that writes each task's gold answer scores 1, one that writes a
    wrong literal scores 0."""
    cfg = tiny_cfg("judge", eval_limit=8, scaffold="answer", max_new_tokens_solve=2048)
    model = __import__("azr").Model.from_pretrained(cfg.model)
    model.config.max_position_embeddings = 8192  # read every prompt (the answers are scripted)
    with Trainer(cfg, model=model, executor=executor) as tr:
        es = tr.eval_set("heldout-dev").limit(8)
        gold = {}
        for t in es.tasks:
            ids, _, _, _ = tr._prompt(__import__("azr").tasks.solver_text(t, tr.templates), t.kind, "solve")
            gold[tuple(ids)] = t.output if t.kind == "deduction" else t.input

        def fake_generate(prompts, n=1, **kw):
            outs = []
            for p in prompts:
                ans = answer(gold[tuple(p)])
                toks = list(tr.tokenizer.encode(ans + "```"))
                outs.append([SimpleNamespace(token_ids=toks, text=ans, logprobs=np.zeros(len(toks), np.float32),
                                             model_logprobs=np.zeros(len(toks), np.float32),
                                             finish_reason="stop")])
            return outs

        tr.model.generate = fake_generate
        answer = lambda g: g  # noqa: E731
        right = tr.evaluate(["heldout-dev"], use_cache=False)["heldout-dev"]
        answer = lambda g: "'certainly not the gold %%%'"  # noqa: E731
        wrong = tr.evaluate(["heldout-dev"], use_cache=False)["heldout-dev"]
    assert right["too_long"] == 0 and right["n"] == 8
    assert right["accuracy"] == 1.0 and right["deduction"] == 1.0 and right["abduction"] == 1.0
    assert wrong["accuracy"] == 0.0 and wrong["empty_rate"] == 0.0


class RecordingAdamW:
    """The real azr.AdamW, recording the settings each step runs with."""

    def __init__(self, model, cfg):
        from azr.optim import AdamW

        self.opt = AdamW(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                         weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm)
        self.seen: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self.opt, name)

    def __setattr__(self, name, value):
        if name in ("opt", "seen"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.opt, name, value)

    def step(self):
        o = self.opt
        self.seen.append((o.lr, tuple(o.betas), o.eps, o.weight_decay, o.max_grad_norm))
        return o.step()


def test_resume_with_changed_optimizer_settings(tiny_cfg, executor):
    cfg = tiny_cfg("run", steps=1)
    with Trainer(cfg, executor=executor) as a:
        a.train()
        saved_m = a.optimizer.state_dict()["exp_avg"].copy()
    new = ["lr=5e-4", "beta1=0.8", "beta2=0.99", "adam_eps=1e-6", "weight_decay=0.1", "max_grad_norm=0.5",
           "steps=2"]
    rec: list[RecordingAdamW] = []

    def factory(model, c):
        rec.append(RecordingAdamW(model, c))
        return rec[0]

    with Trainer.resume(cfg.out, overrides=new, executor=executor, optimizer_factory=factory) as b:
        st = b.optimizer.state_dict()
        np.testing.assert_array_equal(st["exp_avg"], saved_m)  # the moments come from the checkpoint
        assert st["step"] == 1
        b.train()
    assert rec[0].seen == [(5e-4, (0.8, 0.99), 1e-6, 0.1, 0.5)]
    saved = json.loads((Path(cfg.out) / "checkpoints" / "step_000002" / "optimizer.json").read_text())
    assert saved["lr"] == 5e-4 and saved["weight_decay"] == 0.1 and saved["max_grad_norm"] == 0.5
    toml = (Path(cfg.out) / "config.toml").read_text()
    assert "lr = 0.0005" in toml and "beta2 = 0.99" in toml
    # the default optimizer (no factory) honours the config the same way
    with Trainer.resume(cfg.out, overrides=["lr=2e-4", "steps=3"], executor=executor) as c:
        assert c.optimizer.lr == 2e-4 and c.optimizer.betas == (0.8, 0.99) and c.optimizer.step_count == 2


def test_old_logprobs_are_the_untempered_model_logprobs(tiny_cfg, executor):
    """Rollouts are sampled at the config's temperature, but the surrogate's
    old log-probs are the model's own (temperature 1): what Model.logprobs
    gives for the same tokens, so later PPO epochs compare like with like."""
    cfg = tiny_cfg("lp", steps=1, temperature=0.7, ppo_epochs=2)
    rolls = []
    with Trainer(cfg, executor=executor) as tr:
        tr.add_callback(SimpleNamespace(on_rollouts=lambda t, r: rolls.extend(
            (x.prompt_ids, list(x.completion.token_ids), np.array(x.completion.model_logprobs),
             np.array(x.completion.logprobs), np.array(x.completion.train_mask)) for x in r)))
        tr.step()
    checked = 0
    model = __import__("azr").Model.from_pretrained(cfg.model)
    for p, toks, mlp, slp, mask in rolls:
        if not toks:
            continue
        full = np.array(p + toks, np.int32)
        lp, _ = model.logprobs(full[None, :-1], full[None, 1:])
        ref = lp[0, len(p) - 1:]
        sel = mask.astype(bool)
        np.testing.assert_allclose(mlp[sel], ref[sel], atol=2e-4)
        if sel.any() and np.any(np.abs(slp[sel] - ref[sel]) > 1e-2):
            checked += 1  # the sampler's (tempered) log-probs differ: the choice matters
    assert checked > 0


# ------------------------------------------------------ notebook and plots
def _run_notebook(path: Path, env: dict[str, str], monkeypatch) -> dict:
    """Execute a notebook's code cells in order in one namespace (what
    "Run all" does), with ``env`` set; returns the namespace."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ns: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            src = "".join(cell["source"])
            exec(compile(src, f"{path.name}[cell {i}]", "exec"), ns)  # noqa: S102 - our own notebook
    return ns


def test_learning_notebook_reads_a_run(tiny_cfg, executor, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    cfg = tiny_cfg("nb", steps=3, eval_every=2, eval_limit=4, log_samples=True)
    with Trainer(cfg, executor=executor) as tr:
        tr.train()
    nb = Path(__file__).resolve().parent.parent / "notebooks" / "learning.ipynb"
    ns = _run_notebook(nb, {"AZR_RUN_DIR": cfg.out}, monkeypatch)
    data = ns["data"]
    assert data.steps == [1, 2, 3]
    assert [s for s, _ in data.evals["heldout-dev"]] == [0, 2, 3]
    assert len(ns["fig"].axes) >= 6
    # the figure is written by the same code that draws docs/results.md's curves
    from azr.plots import plot_run

    out = tmp_path / "curves.png"
    plot_run(cfg.out, out)
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_run_errors_name_the_file(tmp_path):
    from azr.plots import load_run

    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        load_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        load_run(tmp_path)


def test_bench_learning_quick_writes_its_entries(shared_data, tmp_path, monkeypatch):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_learning.py"
    spec = importlib.util.spec_from_file_location("bench_learning", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setenv("AZR_SHARED_DATA", str(shared_data))
    out = tmp_path / "entries.json"
    assert mod.main(["--quick", "--out", str(tmp_path / "run"), "--json", str(out), "--set", "keep_best=false"]) == 0
    entries = json.loads(out.read_text())
    assert [e["name"] for e in entries] == ["heldout_accuracy", "cruxeval_o_test_accuracy"]
    for e in entries:
        assert set(e) >= {"name", "unit", "ours", "baseline", "baseline_name", "ratio", "delta", "p_value", "n"}
        assert e["baseline_name"] == "base model" and e["n"] == 12
        assert 0 <= e["ours"] <= 1 and 0 <= e["baseline"] <= 1 and 0 <= e["p_value"] <= 1
        assert e["delta"] == pytest.approx(e["ours"] - e["baseline"])
    res = json.loads((tmp_path / "run" / "learning.json").read_text())
    assert res["steps"] >= 1 and res["before"]["heldout-test"]["ids"] == res["after"]["heldout-test"]["ids"]
    # a second run into the same directory is refused, not mixed with the first
    assert mod.main(["--quick", "--out", str(tmp_path / "run")]) == 2
    # --before reuses the base model's answers: the same figures as answering again
    assert mod.main(["--quick", "--out", str(tmp_path / "run2"), "--before", str(tmp_path / "run"),
                     "--set", "keep_best=true"]) == 0
    res2 = json.loads((tmp_path / "run2" / "learning.json").read_text())
    assert res2["before"] == res["before"] and res2["before_from"] == str((tmp_path / "run").resolve())
    # keep_best: the report sets are answered with the weights the dev evaluations chose
    best = json.loads((tmp_path / "run2" / "best" / "best.json").read_text())
    assert res2["selected"] == best and all(e["selected_step"] == best["step"] for e in res2["entries"])
    assert res["selected"] is None and all(e["selected_step"] == res["steps"] for e in res["entries"])
    assert res2["eval_seconds"]["before"] < 1.0
    # ... and refuses a run whose answers were shaped differently
    assert mod.main(["--quick", "--out", str(tmp_path / "run3"), "--before", str(tmp_path / "run"),
                     "--set", "max_new_tokens_solve=9"]) == 2
    assert mod.main(["--quick", "--out", str(tmp_path / "run4"), "--before", str(tmp_path / "nowhere")]) == 2
    assert mod.main(["--quick", "--out", str(tmp_path / "run5"), "--before", str(tmp_path / "run"),
                     "--report", "heldout-dev"]) == 2


# ------------------------------------------- the learning preset can learn
def test_cpu_preset_on_the_default_model_has_a_gradient(bench_dir, executor, tmp_path):
    """One step of the learning preset on SmolLM2-135M-Instruct (smaller
    batch, no seeding rounds): some (task, role) group has unequal rewards, so
    advantages are non-zero, rows reach the backward and the weights move."""
    from azr import gguf

    try:
        model_path = gguf.locate_default_model()
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"default model file unavailable: {exc}")
    cfg = TrainerConfig.preset("cpu", out=str(tmp_path / "run"), model=str(model_path), batch_size=4,
                               seed_rounds=0, seed_min=0, eval_every=0, keep_best=False, save_every=0, progress=False,
                               eval_data_dir=bench_dir, max_new_tokens_propose=64)
    rolls = []
    with Trainer(cfg, executor=executor) as tr:
        tr.add_callback(SimpleNamespace(on_rollouts=lambda t, r: rolls.extend(r)))
        before = {k: np.array(v, copy=True) for k, v in tr.model.parameters().items()
                  if k.endswith("layers.0.mlp.down_proj.weight")}
        m = tr.step()
        after = {k: np.asarray(v) for k, v in tr.model.parameters().items() if k in before}
    by_group: dict[tuple[str, str], set] = {}
    for r in rolls:
        by_group.setdefault((r.task, r.role), set()).add(r.reward)
    assert any(len(v) > 1 for v in by_group.values()), by_group
    assert m["backward_sequences"] > 0 and m["grad_norm"] > 0
    assert all(not np.array_equal(before[k], after[k]) for k in before)


def test_share_triplets_puts_each_valid_triplet_in_both_buffers(tmp_path):
    tr = make_trainer(make_config(tmp_path, steps=2, share_triplets=True))
    tr.train()
    ded = {(t.program, t.input, t.output) for t in tr.buffers["deduction"].tasks}
    abd = {(t.program, t.input, t.output) for t in tr.buffers["abduction"].tasks}
    assert ded == abd and len(ded) > 1
    assert all(t.kind == "abduction" for t in tr.buffers["abduction"].tasks)
    plain = make_trainer(make_config(tmp_path / "p", steps=2))
    plain.train()
    assert ({(t.program, t.input) for t in plain.buffers["deduction"].tasks}
            != {(t.program, t.input) for t in plain.buffers["abduction"].tasks})


def test_new_run_refuses_a_directory_holding_a_run(tmp_path, capsys):
    cfg = make_config(tmp_path, steps=1)
    make_trainer(cfg).train()
    run = Path(cfg.out)
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        make_trainer(cfg)
    assert (run / "metrics.jsonl").read_text() == before  # nothing was touched
    from test_trainer import cli_main

    argv = ["train", "--preset", "quickstart", "--out", str(run), "--steps", "1", "--no-progress"]
    assert cli_main(argv, model=FakeModel(), executor=FakeExecutor()) == 2
    assert "already holds a run" in capsys.readouterr().err
    # --overwrite (overwrite=True) deletes that run's files and starts afresh
    (run / "notes.txt").write_text("mine")
    tr = make_trainer(cfg, overwrite=True)
    assert not (run / "metrics.jsonl").exists() and not (run / "checkpoints").exists()
    assert (run / "notes.txt").read_text() == "mine"
    tr.train()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    # resuming is not a new run
    Trainer.resume(run, model_loader=FakeModel.from_pretrained, executor=FakeExecutor(),
                   optimizer_factory=lambda m, c: FakeAdamW(m), overrides=["steps=2"]).train()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def test_evaluation_without_data_warns_and_trains(tmp_path, monkeypatch):
    monkeypatch.delenv("AZR_DATA_DIR", raising=False)
    monkeypatch.setenv("AZR_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("AZR_OFFLINE", "1")
    cfg = make_config(tmp_path, steps=1, eval_every=1)
    with pytest.warns(UserWarning, match="evaluation during training is off.*eval_data_dir"):
        tr = make_trainer(cfg)
    m = tr.train()[0]
    assert "unavailable" in m["eval_disabled"] and "eval" not in m and m["heldout_excluded"] is False
    assert not (Path(cfg.out) / "evals.jsonl").exists()
    # a folder the user named must hold the files
    cfg2 = make_config(tmp_path / "b", steps=1, eval_every=1, eval_data_dir=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        make_trainer(cfg2)


def test_azr_plot_draws_one_run_and_overlays(tiny_cfg, executor, tmp_path, capsys):
    """`azr plot` through the real CLI: a run's nine panels from a real small
    run, then two runs overlaid; clear errors for a missing run, a missing
    --out with several runs, and labels that do not match."""
    import matplotlib

    matplotlib.use("Agg")
    from azr.cli import main
    from azr.plots import load_run, plot_run

    dirs = []
    for name in ("a", "b"):
        cfg = tiny_cfg(name, steps=2, eval_every=2, eval_limit=4)
        with Trainer(cfg, executor=executor) as tr:
            tr.train()
        dirs.append(cfg.out)
    data = load_run(dirs[0])
    assert data.steps == [1, 2] and len(data.scalars["lr"]) == 2 and len(data.scalars["seconds_update"]) == 2
    assert all(isinstance(v, float) for v in data.scalars["lr"])
    assert main(["plot", dirs[0]]) == 0
    png = Path(dirs[0]) / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "wrote" in capsys.readouterr().out
    fig = plot_run(dirs, labels=["first", "second"])
    assert len([a for a in fig.axes if a.get_title()]) == 9
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("first:") for t in legend) and any(t.startswith("second:") for t in legend)
    out = tmp_path / "both.svg"
    assert main(["plot", *dirs, "--out", str(out), "--labels", "x,y"]) == 0 and out.stat().st_size > 10_000
    with pytest.raises(SystemExit):
        main(["plot", *dirs])  # several runs need --out
    assert "--out is needed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plot", dirs[0], "--labels", "x,y"])
    assert main(["plot", str(tmp_path / "nope")]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
