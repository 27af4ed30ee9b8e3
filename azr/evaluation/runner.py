"""The evaluation runner: `evaluate(model, tasks, ...)` and the `azr eval` command.

Owns: for each task, building the prompts, generating in batches through
``model.generate`` (any object with the documented signature works, so a fake
model can drive it), judging the completions (sandbox for code, `MathGrader`
for math) in a background thread while the next batch generates, scoring
(pass@1 and unbiased pass@k), writing ``results.json`` (after each task) and
one JSONL line per sample (after each judged batch), reusing the problems an
interrupted run with the same settings finished in the same folder, and the
console summary table.

Must not: run model-written code outside `azr.Executor`, print from
`evaluate` (the CLI prints; the library returns an `EvalResult`), or keep
global state.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .code_tasks import build_output_code, build_program, extract_crux_answer, judge_outputs, pass_at_k
from .datasets import (CODE_GEN_TASKS, CRUX_TASKS, MATH_TASKS, TASKS, DataNotFoundError, Problem, canonical_task,
                       load_task, task_file)
from .math_grader import MathGrader, extract_answer
from .prompts import PROMPT_STYLES, BuiltPrompt, build_prompt
from ..config import _f, _with_field_docs, check_fields, check_writable_dir

__all__ = ["EvalConfig", "EvalResult", "TaskResult", "evaluate", "cli_main"]


@dataclass
class EvalConfig:
    """Settings of one evaluation run (all recorded in results.json).

    temperature 0 means greedy decoding (sent to the engine as top_k=1).
    prompt_style "auto" picks "chat" when the tokenizer has a chat template,
    else "azr" (the paper's self-play template). Every pass_k value must be
    at most n_samples.
    """

    tasks: tuple[str, ...] = _f(("cruxeval-i", "cruxeval-o"), "Benchmarks to run (azr.evaluation.TASKS).")
    data_dir: str | None = _f(None, "Benchmark folder (None = $AZR_DATA_DIR, else the download cache).")
    out_dir: str | None = _f(None, "Folder for results.json and the samples (None = nothing written).")
    limit: int | None = _f(None, "First N problems of each task (None = all).")
    prompt_style: str = _f("auto", "azr (the paper's self-play template), chat, base (plain completion with "
                                   "few_shot examples) or auto (chat if the tokenizer has a template, else azr).")
    few_shot: int = _f(0, "Worked examples before each question (base style).")
    n_samples: int = _f(1, "Samples per problem (pass@k needs k of them).")
    temperature: float = _f(0.0, "Sampling temperature; 0 = greedy.")
    top_p: float = _f(1.0, "Nucleus sampling threshold (1.0 = off).")
    max_new_tokens: int = _f(512, "Longest answer, in tokens.")
    pass_k: tuple[int, ...] = _f((1,), "k values of pass@k, each at most n_samples.")
    seed: int = _f(0, "Sampling seed.")
    batch_size: int = _f(32, "Prompts per generate call.")
    workers: int = _f(2, "Sandbox worker processes that judge answers.")
    crux_timeout: float = _f(5.0, "Seconds per CRUXEval judgement run.")
    code_timeout: float = _f(30.0, "Seconds per HumanEval+/MBPP+ test run.")
    math_timeout: float = _f(5.0, "Seconds per math answer comparison.")
    memory_mb: int = _f(1024, "Address-space limit of one sandboxed run, in MiB.")
    progress: bool = _f(True, "Progress bars.")

    def __post_init__(self) -> None:
        # built directly, EvalConfig(limit="5") is converted and checked like TrainerConfig's fields
        self.validate()

    def validate(self, label: Callable[[str], str] | None = None) -> None:
        """Convert each field to its declared type (``"5"`` for an int, ``"1,2"`` for
        pass_k) and check ranges and choices; raises ValueError naming the setting as
        ``label(field)`` (default ``EvalConfig.<field>``; the CLI names its flags)."""
        check_fields(self, "EvalConfig")
        name_of = label or (lambda f: f"EvalConfig.{f}")
        for name in ("n_samples", "max_new_tokens", "batch_size", "workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name_of(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("crux_timeout", "code_timeout", "math_timeout"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name_of(name)} must be > 0 seconds, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"{name_of('temperature')} must be >= 0 (0 = greedy), got {self.temperature}")
        if not (0 < self.top_p <= 1):
            raise ValueError(f"{name_of('top_p')} must be in (0, 1], got {self.top_p}")
        if self.prompt_style not in PROMPT_STYLES + ("auto",):
            raise ValueError(f"{name_of('prompt_style')} must be one of {PROMPT_STYLES + ('auto',)}, "
                             f"got {self.prompt_style!r}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"{name_of('limit')} must be >= 0, got {self.limit}")
        if self.few_shot < 0:
            raise ValueError(f"{name_of('few_shot')} must be >= 0, got {self.few_shot}")
        if not self.pass_k or any(int(k) < 1 for k in self.pass_k):
            raise ValueError(f"{name_of('pass_k')} values must be >= 1, got {self.pass_k}")
        over = [k for k in self.pass_k if int(k) > self.n_samples]
        if over:
            raise ValueError(f"{name_of('pass_k')} {over[0]} is larger than {name_of('n_samples')} "
                             f"({self.n_samples}): pass@k needs at least k samples per problem")
        if not self.tasks:
            raise ValueError(f"{name_of('tasks')} is empty; choose from {', '.join(TASKS)}")


_with_field_docs(EvalConfig)


@dataclass
class TaskResult:
    task: str
    n_problems: int
    n_samples: int
    scores: dict[str, float]
    prompt_style: str
    wall_s: float
    generate_s: float
    generated_tokens: int
    tokens_per_s: float
    statuses: dict[str, int] = field(default_factory=dict)
    resumed: int = 0  # problems whose samples an earlier run in the same out_dir had finished


@dataclass
class EvalResult:
    model: str
    config: dict[str, Any]
    tasks: dict[str, TaskResult]
    wall_s: float
    samples_dir: str | None = None
    complete: bool = True  # False while the run is in progress (results.json written after each task)

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """``{task: {"pass@1": ..., ...}}`` (fractions in [0, 1])."""
        return {t: dict(r.scores) for t, r in self.tasks.items()}

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """Flat ``{"eval/<task>/<metric>": value}`` for a training run's metrics log."""
        out: dict[str, float] = {}
        for t, r in self.tasks.items():
            for k, v in r.scores.items():
                out[f"{prefix}{t}/{k}"] = float(v)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "config": self.config,
            "wall_s": self.wall_s,
            "complete": self.complete,
            "scores": {t: r.scores for t, r in self.tasks.items()},
            "tasks": {t: asdict(r) for t, r in self.tasks.items()},
            "environment": {"python": platform.python_version(), "platform": platform.platform()},
        }

    def table(self) -> str:
        """The console summary: one row per task, scores in percent."""
        keys: list[str] = []
        for r in self.tasks.values():
            for k in r.scores:
                if k not in keys:
                    keys.append(k)
        head = ["task", "problems", "n"] + keys + ["wall s", "tok/s"]
        rows = [head]
        for t, r in self.tasks.items():
            rows.append([t, str(r.n_problems), str(r.n_samples)]
                        + [f"{100 * r.scores[k]:.2f}" if k in r.scores else "-" for k in keys]
                        + [f"{r.wall_s:.1f}", f"{r.tokens_per_s:.1f}"])
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


@dataclass
class _Verdict:
    correct: bool
    status: str
    message: str = ""


# ----------------------------------------------------------------------------- helpers

def _task_file_name(task: str) -> str:
    return task.replace("+", "_plus") + ".jsonl"


def _make_executor(cfg: EvalConfig) -> Any:
    from azr.executor import Executor

    return Executor(workers=cfg.workers, timeout=cfg.crux_timeout, memory_mb=cfg.memory_mb)


def _resolve_style(cfg: EvalConfig, tokenizer: Any) -> str:
    if cfg.prompt_style != "auto":
        return cfg.prompt_style
    return "chat" if tokenizer is not None and getattr(tokenizer, "chat_template", None) else "azr"


def _encode_prompts(tokenizer: Any, texts: list[str]) -> list[str] | list[list[int]]:
    """Token ids for azr-built prompts (special tokens such as <|im_start|> are recognised), or the texts
    themselves when there is no tokenizer to encode with (the model then encodes them)."""
    if tokenizer is None or not callable(getattr(tokenizer, "encode", None)):
        return texts
    batch = getattr(tokenizer, "encode_batch", None)
    try:
        if callable(batch):
            return [list(x) for x in batch(texts, add_special_tokens=False, allow_special=True)]
        return [list(tokenizer.encode(t, add_special_tokens=False, allow_special=True)) for t in texts]
    except TypeError:  # a tokenizer without azr's allow_special keyword (e.g. a Hugging Face one)
        return [list(tokenizer.encode(t, add_special_tokens=False)) for t in texts]


def _completion_text(c: Any, tokenizer: Any, stop: list[str]) -> str:
    """The completion's text; decoded here when the engine had no tokenizer to do it."""
    text = getattr(c, "text", None)
    if text or tokenizer is None or not getattr(c, "token_ids", None):
        return text or ""
    text = tokenizer.decode(list(c.token_ids), skip_special_tokens=True)
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[:min(cuts)] if cuts else text


def _check_prompt_lengths(model: Any, task: str, problems: list[Problem], prompts: list[Any]) -> None:
    """A prompt the model's context cannot hold is a ValueError naming the problem (not the engine's
    "prompts[k]" from inside a batch)."""
    ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(ctx, int):
        return
    for p, ids in zip(problems, prompts):
        if isinstance(ids, list) and len(ids) >= ctx:
            raise ValueError(f"{task} problem {p.id}: its prompt has {len(ids)} tokens but the model's context is "
                             f"{ctx} positions (max_position_embeddings), leaving no room for an answer; use "
                             f"a model with a longer context, or a shorter prompt (--prompt-style, --few-shot)")


def _generate(model: Any, prompts: list[str] | list[list[int]], cfg: EvalConfig, stop: list[str],
              seed: int) -> list[list[Any]]:
    greedy = cfg.temperature == 0
    outs = model.generate(prompts, n=cfg.n_samples, max_new_tokens=cfg.max_new_tokens,
                          temperature=1.0 if greedy else cfg.temperature, top_p=1.0 if greedy else cfg.top_p,
                          top_k=1 if greedy else 0, stop=stop or None, seed=seed, progress=False)
    if len(outs) != len(prompts):
        raise RuntimeError(f"model.generate returned {len(outs)} results for {len(prompts)} prompts")
    return outs


# ----------------------------------------------------------------------------- judges

# Bytes of encoded outputs a HumanEval+/MBPP+ run may return (every plus
# input's output, for the host to judge).
_OUTPUTS_LIMIT = 64 << 20

class _Judge:
    """Scores one task's completions; runs in the background thread."""

    def __init__(self, task: str, cfg: EvalConfig, executor: Any, grader: MathGrader | None) -> None:
        self.task, self.cfg, self.ex, self.grader = task, cfg, executor, grader
        self._tests: dict[tuple[str, str], tuple[list, str]] = {}
        self._expected: dict[tuple[str, str], Any] = {}  # the canonical solution's run, per (problem, which)

    def __call__(self, items: list[tuple[Problem, int, str, BuiltPrompt]]) -> list[dict[str, Any]]:
        if self.task in CRUX_TASKS:
            return self._crux(items)
        if self.task in CODE_GEN_TASKS:
            return self._codegen(items)
        return self._math(items)

    def _crux(self, items: list[tuple[Problem, int, str, BuiltPrompt]]) -> list[dict[str, Any]]:
        answers = [extract_crux_answer(bp.answer_prefix + text, self.task) for _, _, text, bp in items]
        verdicts: list[Any] = [_Verdict(False, "no_answer", "no answer found in the completion")] * len(items)
        run_idx = [i for i, a in enumerate(answers) if a is not None]
        if run_idx:
            progs = [items[i][0].meta["code"] for i in run_idx]
            golds = [items[i][0].meta["output"] for i in run_idx]
            ans = [answers[i] for i in run_idx]
            if self.task == "cruxeval-o":
                inputs = [items[i][0].meta["input"] for i in run_idx]
                got = self.ex.judge_output(progs, inputs, golds, ans)
            else:
                got = self.ex.judge_input(progs, golds, ans)
            for i, v in zip(run_idx, got):
                verdicts[i] = v
        return [{"extracted": a, "correct": bool(v.correct), "status": v.status, "message": v.message}
                for a, v in zip(answers, verdicts)]

    def _output_code(self, p: Problem, which: str) -> tuple[list, str]:
        """The inputs of `which` ("base" or "plus", which includes base) and the test code returning outputs."""
        key = (p.id, which)
        if key not in self._tests:
            inputs = p.meta["base_input"] + (p.meta["plus_input"] if which == "plus" else [])
            self._tests[key] = (inputs, build_output_code(p.meta["entry_point"], inputs, dataset=p.meta["dataset"]))
        return self._tests[key]

    def _outputs(self, programs: list[str], probs: list[Problem], which: str) -> list[Any]:
        """Run each program's entry point on its problem's inputs; each run's value is the outputs."""
        return self.ex.run_tests(programs, [self._output_code(p, which)[1] for p in probs],
                                 timeout=self.cfg.code_timeout, entry_points=[p.meta["entry_point"] for p in probs],
                                 result_limit=_OUTPUTS_LIMIT)

    def _verdicts(self, probs: list[Problem], programs: list[str], which: str) -> list[tuple[bool, str, str]]:
        """(correct, status, message) per program: its outputs judged on the host against the canonical
        solution's, which ran on its own (once per problem); no verdict comes out of a candidate's run."""
        todo = list({p.id: p for p in probs if (p.id, which) not in self._expected}.values())
        for p, r in zip(todo, self._outputs([p.meta["reference"] for p in todo], todo, which)):
            self._expected[(p.id, which)] = r
        run = [i for i, p in enumerate(probs) if self._expected[(p.id, which)].status == "ok"]
        got = dict(zip(run, self._outputs([programs[i] for i in run], [probs[i] for i in run], which)))
        out = []
        for i, p in enumerate(probs):
            ref = self._expected[(p.id, which)]
            if ref.status != "ok":
                out.append((False, ref.status, f"the canonical solution's {which} run failed: {ref.message}"))
                continue
            r = got[i]
            if r.status != "ok":
                out.append((False, r.status, r.message))
                continue
            why = judge_outputs(p.meta["entry_point"], self._output_code(p, which)[0], r.value, ref.value,
                                dataset=p.meta["dataset"], atol=p.meta["atol"], label=which)
            out.append((not why, "error" if why else "ok", why))
        return out

    def _codegen(self, items: list[tuple[Problem, int, str, BuiltPrompt]]) -> list[dict[str, Any]]:
        programs = [build_program(p.meta["prompt"], bp.answer_prefix + text, p.meta["entry_point"],
                                  p.meta["dataset"]) for p, _, text, bp in items]
        probs = [p for p, _, _, _ in items]
        base = self._verdicts(probs, programs, "base")
        plus: list[Any] = [None] * len(items)
        idx = [i for i, b in enumerate(base) if b[0]]
        if idx:  # plus includes the base inputs: only programs that passed base can pass plus
            got = self._verdicts([probs[i] for i in idx], [programs[i] for i in idx], "plus")
            for i, r in zip(idx, got):
                plus[i] = r
        out = []
        for prog, b, pl in zip(programs, base, plus):
            r = pl if pl is not None else b
            out.append({"extracted": prog, "correct": pl is not None and pl[0],
                        "base_correct": b[0], "status": r[1], "message": r[2][:2000]})
        return out

    def _math(self, items: list[tuple[Problem, int, str, BuiltPrompt]]) -> list[dict[str, Any]]:
        assert self.grader is not None
        out = []
        for p, _, text, bp in items:
            ans = extract_answer(bp.answer_prefix + text)
            ok = self.grader.equal(ans, p.answer)
            out.append({"extracted": ans, "correct": ok, "status": "ok" if ans is not None else "no_answer",
                        "message": ""})
        return out


def _scores(task: str, per_problem: list[list[dict[str, Any]]], cfg: EvalConfig) -> dict[str, float]:
    n = cfg.n_samples
    ks = sorted({int(k) for k in cfg.pass_k} | {1})
    keys = [("pass", "correct")] + ([("base_pass", "base_correct")] if task in CODE_GEN_TASKS else [])
    out: dict[str, float] = {}
    for label, field_ in keys:
        for k in ks:
            vals = [pass_at_k(n, sum(bool(s.get(field_)) for s in samples), k) for samples in per_problem]
            out[f"{label}@{k}"] = sum(vals) / len(vals) if vals else 0.0
    return out


# ----------------------------------------------------------------------------- main loop

def _run_task(task: str, model: Any, tokenizer: Any, cfg: EvalConfig, executor: Any, grader: MathGrader | None,
              style: str, sample_fh: Any, done: dict[Any, list[dict[str, Any]]] | None = None,
              notify: Callable[[str], None] | None = None) -> TaskResult:
    """Evaluate one task. ``done``: the sample records of problems finished by an earlier run (by id),
    scored as they are and not generated again. Each batch's records go to ``sample_fh`` (flushed) as
    soon as it is judged, so an interrupted run keeps every finished batch."""
    problems = load_task(task, cfg.data_dir, cfg.limit)
    done = done or {}
    t0 = time.perf_counter()
    gen_s = 0.0
    n_tokens = 0
    judge = _Judge(task, cfg, executor, grader)
    per_problem: list[list[dict[str, Any]]] = [list(done.get(p.id, [])) for p in problems]
    todo = [i for i, p in enumerate(problems) if p.id not in done]
    if notify is not None and len(todo) < len(problems):
        notify(f"{task}: {len(problems) - len(todo)} of {len(problems)} problems already done by an earlier run, "
               f"skipped (their samples are reused)")
    built = {i: build_prompt(problems[i], style, tokenizer, cfg.few_shot) for i in todo}
    statuses: dict[str, int] = {}
    for recs in per_problem:
        for rec in recs:
            statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc=task, unit="prob", leave=True,
                   dynamic_ncols=True)

    def record(batch: tuple[list[tuple[Problem, int, str, BuiltPrompt]], list[Any], Future, list[int]]) -> None:
        items, comps, fut, owners = batch
        for (p, j, text, bp), c, rec, owner in zip(items, comps, fut.result(), owners):
            rec_full = {"task": task, "id": p.id, "sample": j, "prompt": bp.text, "completion": text,
                        "finish_reason": getattr(c, "finish_reason", None),
                        "n_tokens": len(c.token_ids), "gold": p.answer if task not in CODE_GEN_TASKS else None,
                        **rec}
            per_problem[owner].append(rec_full)
            statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
            if sample_fh is not None:
                sample_fh.write(json.dumps(rec_full, ensure_ascii=False, default=str) + "\n")
        if sample_fh is not None:
            sample_fh.flush()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="azr-eval-judge")
    try:
        # judging of batch i (background thread) overlaps generation of batch i + 1; batch i's records
        # are written once batch i + 1 has generated
        pending = None
        for start in range(0, len(todo), cfg.batch_size):
            chunk = todo[start:start + cfg.batch_size]
            t1 = time.perf_counter()
            stop = built[chunk[0]].stop  # the same for every problem of a task
            prompts = _encode_prompts(tokenizer, [built[i].text for i in chunk])
            _check_prompt_lengths(model, task, [problems[i] for i in chunk], prompts)
            outs = _generate(model, prompts, cfg, stop, cfg.seed + chunk[0])
            gen_s += time.perf_counter() - t1
            items, comps, owners = [], [], []
            for i, samples in zip(chunk, outs):
                if len(samples) != cfg.n_samples:
                    raise RuntimeError(f"model.generate returned {len(samples)} samples, expected {cfg.n_samples}")
                for j, c in enumerate(samples):
                    items.append((problems[i], j, _completion_text(c, tokenizer, stop), built[i]))
                    comps.append(c)
                    owners.append(i)
                    n_tokens += len(c.token_ids)
            if pending is not None:
                prev, pending = pending, None  # never written twice, even if writing fails
                record(prev)
            pending = (items, comps, pool.submit(judge, items), owners)
            if bar is not None:
                bar.update(len(chunk))
                bar.set_postfix(tok_s=f"{n_tokens / max(gen_s, 1e-9):.0f}")
        if pending is not None:
            last, pending = pending, None
            record(last)
    finally:
        # on an error or Ctrl-C: the batch being judged ends within its timeouts and is still written
        pool.shutdown(wait=True, cancel_futures=True)
        if pending is not None and pending[2].done() and not pending[2].cancelled() \
                and pending[2].exception() is None:
            record(pending)
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    return TaskResult(task=task, n_problems=len(problems), n_samples=cfg.n_samples,
                      scores=_scores(task, per_problem, cfg), prompt_style=style, wall_s=wall, generate_s=gen_s,
                      generated_tokens=n_tokens, tokens_per_s=n_tokens / gen_s if gen_s > 0 else 0.0,
                      statuses=statuses, resumed=len(problems) - len(todo))


# ----------------------------------------------------------------------------- resuming an --out folder

# The settings that decide a sample's text and verdict: an --out folder's samples are reused only when
# these match (plus the model and the prompt style used).
_SAMPLE_SETTINGS = ("few_shot", "n_samples", "temperature", "top_p", "max_new_tokens", "seed", "crux_timeout",
                    "code_timeout", "math_timeout", "memory_mb")


def _sample_settings(model: str, style: str, cfg: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "prompt_style": style, **{k: cfg.get(k) for k in _SAMPLE_SETTINGS}}


def _out_dir_conflict(out_dir: Path, settings: dict[str, Any]) -> str:
    """Why the samples in ``out_dir`` cannot be reused by a run with ``settings`` ("" when they can,
    or when there are none); only the keys of ``settings`` are compared."""
    samples = list((out_dir / "samples").glob("*.jsonl")) if (out_dir / "samples").is_dir() else []
    if not samples:
        return ""
    try:
        data = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
        prior = _sample_settings(data.get("model"), data["config"].get("prompt_style_used"), data["config"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{out_dir} holds samples but no readable results.json saying how they were made"
    diff = [f"{k} {prior[k]!r} there, {v!r} now" for k, v in settings.items() if prior[k] != v]
    return f"{out_dir} holds samples of another evaluation ({'; '.join(diff)})" if diff else ""


def _claim_out_dir(out_dir: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Prepare ``out_dir`` for this run. Samples an earlier run left there are kept for reuse when that
    run had the same ``settings`` (from its results.json); otherwise ValueError, unless ``overwrite``,
    which deletes results.json and samples/*.jsonl (nothing else)."""
    if overwrite:
        samples = list((out_dir / "samples").glob("*.jsonl")) if (out_dir / "samples").is_dir() else []
        for f in samples + [out_dir / "results.json"]:
            f.unlink(missing_ok=True)
        return
    why = _out_dir_conflict(out_dir, settings)
    if why:
        raise ValueError(f"{why}: choose another --out (out_dir), or pass --overwrite "
                         f"(evaluate(..., overwrite=True)) to replace them")


def _finished(path: Path, task: str, n_samples: int) -> dict[Any, list[dict[str, Any]]]:
    """The records in samples file ``path`` of the problems with all ``n_samples`` samples (by problem
    id); a line cut by an interruption, and problems left half done, are left out."""
    by_id: dict[Any, dict[int, dict[str, Any]]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                if rec.get("task") == task and isinstance(rec.get("sample"), int) and "status" in rec:
                    by_id.setdefault(rec["id"], {})[rec["sample"]] = rec
            except (ValueError, AttributeError, TypeError):
                continue
    return {pid: [recs[j] for j in range(n_samples)] for pid, recs in by_id.items()
            if set(recs) == set(range(n_samples))}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _parse_tasks(tasks: str | Iterable[str]) -> tuple[str, ...]:
    items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    out: list[str] = []
    for t in items:
        if t.strip():
            c = canonical_task(t)
            if c not in out:
                out.append(c)
    if not out:
        raise ValueError(f"no tasks given; choose from {', '.join(TASKS)}")
    return tuple(out)


def evaluate(model: Any, tasks: str | Sequence[str], *, config: EvalConfig | None = None, executor: Any = None,
             tokenizer: Any = None, model_name: str | None = None, overwrite: bool = False,
             notify: Callable[[str], None] | None = None, **overrides: Any) -> EvalResult:
    """Evaluate ``model`` on ``tasks`` and return the scores.

    ``model``: anything with ``generate(prompts, n=, max_new_tokens=, temperature=, top_p=, top_k=, stop=,
    seed=, progress=)`` returning per prompt a list of completions with ``.text`` and ``.token_ids`` (the
    `Model.generate` contract in docs/api.md). ``tasks``: names from `TASKS` (a list or "a,b,c").
    ``config`` / keyword ``overrides``: `EvalConfig` fields (e.g. ``limit=20, data_dir=...``).
    ``executor``: an `azr.Executor` to judge code with (one is created, and closed, when needed and not given).
    ``tokenizer``: for the chat template (default ``model.tokenizer``).

    When ``out_dir`` is set, writes ``samples/<task>.jsonl`` there as each batch is judged and
    ``results.json`` as each task finishes (``"complete": false`` until the last). A later call with
    the same ``out_dir``, model name and sample settings (prompt style, few_shot, n_samples,
    temperature, top_p, max_new_tokens, seed, timeouts, memory) reuses the problems finished there
    and generates only the rest; with other settings it raises ValueError unless ``overwrite``
    (which deletes the earlier results.json and samples first). ``notify(message)`` is told how many
    problems of each task were reused. Raises DataNotFoundError when a benchmark file is missing,
    ValueError on bad settings.
    """
    cfg = EvalConfig(**asdict(config)) if config is not None else EvalConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"evaluate() got an unknown setting {k!r}; EvalConfig fields are "
                            f"{', '.join(f for f in asdict(cfg))}")
        setattr(cfg, k, v)
    cfg.tasks = _parse_tasks(tasks)
    cfg.validate()
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    style = _resolve_style(cfg, tokenizer)
    # fail early on missing data, before loading anything heavy
    for t in cfg.tasks:
        task_file(t, cfg.data_dir, progress=cfg.progress)

    name = model_name or str(getattr(model, "name_or_path", None) or type(model).__name__)
    config = {**asdict(cfg), "prompt_style_used": style}
    out_dir = Path(cfg.out_dir) if cfg.out_dir else None
    if out_dir is not None:
        check_writable_dir(out_dir, "out_dir")
        _claim_out_dir(out_dir, _sample_settings(name, style, config), overwrite)
        (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    needs_sandbox = any(t in CRUX_TASKS + CODE_GEN_TASKS for t in cfg.tasks)
    own_executor = executor is None and needs_sandbox
    if own_executor:
        executor = _make_executor(cfg)
    grader = MathGrader(timeout=cfg.math_timeout) if any(t in MATH_TASKS for t in cfg.tasks) else None
    t0 = time.perf_counter()
    results: dict[str, TaskResult] = {}

    def result(complete: bool) -> EvalResult:
        return EvalResult(model=name, config=config, tasks=dict(results), wall_s=time.perf_counter() - t0,
                          samples_dir=str(out_dir / "samples") if out_dir else None, complete=complete)

    try:
        for t in cfg.tasks:
            fh, done = None, {}
            if out_dir is not None:
                _write_json(out_dir / "results.json", result(False).to_json())  # the settings, then each task
                path = out_dir / "samples" / _task_file_name(t)
                done = _finished(path, t, cfg.n_samples)
                # finished problems kept (a cut line or a half-done problem is generated again), then appended to
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                       for recs in done.values() for r in recs), encoding="utf-8")
                os.replace(tmp, path)
                fh = open(path, "a", encoding="utf-8")
            try:
                results[t] = _run_task(t, model, tokenizer, cfg, executor, grader, style, fh, done, notify)
            finally:
                if fh is not None:
                    fh.close()
    finally:
        if grader is not None:
            grader.close()
        if own_executor and executor is not None:
            close = getattr(executor, "close", None) or getattr(executor, "__exit__", None)
            if close is not None:
                close() if close.__name__ == "close" else close(None, None, None)
        if out_dir is not None and results:
            _write_json(out_dir / "results.json", result(len(results) == len(cfg.tasks)).to_json())
    return result(True)


# ----------------------------------------------------------------------------- CLI

def _build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="azr eval", description="Evaluate a model on code and math benchmarks.")
    ap.add_argument("--model", required=True, help="HF directory, GGUF path or short name (azr.Model.from_pretrained)")
    ap.add_argument("--tasks", default="cruxeval-i,cruxeval-o",
                    help=f"comma-separated, from: {','.join(TASKS)} (livecodebench: not available offline)")
    ap.add_argument("--out", default="results", help="output folder for results.json and samples/ (default: results)")
    ap.add_argument("--limit", type=int, default=None, help="first N problems of each task")
    ap.add_argument("--data-dir", default=None,
                    help="benchmark folder, only read (default: $AZR_DATA_DIR, else the cache "
                         "~/.cache/azr/benchmarks or $AZR_CACHE_DIR/benchmarks, where missing files are "
                         "downloaded from their pinned sources)")
    ap.add_argument("--prompt-style", default="auto", choices=PROMPT_STYLES + ("auto",),
                    help="azr: the paper's self-play template; chat: the tokenizer's chat template; "
                         "base: plain completion with --few-shot examples; auto: chat if the tokenizer has a "
                         "template, else azr")
    ap.add_argument("--few-shot", type=int, default=0, help="worked examples before each question (base style)")
    ap.add_argument("--n", type=int, default=1, dest="n_samples", help="samples per problem (for pass@k)")
    ap.add_argument("--pass-k", default="1", help="comma-separated k values for pass@k (<= --n)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32, help="prompts per generate call")
    ap.add_argument("--workers", type=int, default=2, help="sandbox worker processes")
    ap.add_argument("--code-timeout", type=float, default=30.0, help="seconds per HumanEval+/MBPP+ test run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the results and samples already in --out (by default a rerun with the same "
                         "model and settings reuses the problems finished there, and other settings are refused)")
    return ap


def _flag(field_: str) -> str:
    """The `azr eval` flag that sets EvalConfig field ``field_``."""
    return "--n" if field_ == "n_samples" else "--" + field_.replace("_", "-")


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``azr eval ...``: returns the process exit code (0 ok, 2 bad arguments or missing data)."""
    args = _build_parser().parse_args(list(argv) if argv is not None else None)
    try:  # every argument is checked before the model loads
        try:
            pass_k = tuple(int(k) for k in args.pass_k.split(",") if k.strip())
        except ValueError:
            raise ValueError(f"--pass-k must be comma-separated integers, got {args.pass_k!r}") from None
        cfg = EvalConfig()  # then each setting, checked once with the flags' names
        for k, v in dict(tasks=_parse_tasks(args.tasks), data_dir=args.data_dir, out_dir=args.out,
                         limit=args.limit, prompt_style=args.prompt_style, few_shot=args.few_shot,
                         n_samples=args.n_samples, pass_k=pass_k, temperature=args.temperature, top_p=args.top_p,
                         max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, workers=args.workers,
                         code_timeout=args.code_timeout, seed=args.seed, progress=not args.no_progress).items():
            setattr(cfg, k, v)
        cfg.validate(label=_flag)
        check_writable_dir(args.out, "--out")
        if not args.overwrite:  # what can be compared before the model (and its tokenizer) is known
            known = _sample_settings(args.model, cfg.prompt_style, asdict(cfg))
            if cfg.prompt_style == "auto":
                del known["prompt_style"]
            why = _out_dir_conflict(Path(args.out), known)
            if why:
                raise ValueError(f"{why}: choose another --out, or pass --overwrite to replace them")
        for t in cfg.tasks:  # without --data-dir / AZR_DATA_DIR: fetched into the cache when missing
            task_file(t, args.data_dir, progress=not args.no_progress)
    except (ValueError, DataNotFoundError) as e:
        print(f"azr eval: error: {e}", file=sys.stderr)
        return 2
    try:
        import azr

        model = azr.Model.from_pretrained(args.model)  # type: ignore[attr-defined]
    except AttributeError:
        print("azr eval: error: azr.Model is not available in this build", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"azr eval: error: cannot load model {args.model!r}: {e}", file=sys.stderr)
        return 2
    try:
        res = evaluate(model, cfg.tasks, config=cfg, model_name=args.model, overwrite=args.overwrite,
                       notify=lambda m: print(f"azr eval: {m} ({args.out})", file=sys.stderr))
    except (ValueError, DataNotFoundError) as e:
        print(f"azr eval: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"azr eval: interrupted; the problems finished so far are kept in {args.out}: the same command "
              f"continues from there", file=sys.stderr)
        return 130
    print(res.table())
    print(f"\nwall time {res.wall_s:.1f} s; results: {Path(args.out) / 'results.json'}; samples: {res.samples_dir}")
    return 0
