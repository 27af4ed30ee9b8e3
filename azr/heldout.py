"""Held-out evaluation sets for self-play runs, and paired before/after statistics.

Owns: which tasks are held out (fixed once, before any tuning), their
dev/test splits, loading them as :class:`azr.tasks.Task` objects with gold
outputs recomputed in the sandbox, the keys that keep their programs out of
every buffer, and the paired statistics used to report a change in accuracy.

Must not: run model-written code outside ``azr.Executor``, tune anything, or
keep global state. Answering the sets is :meth:`azr.Trainer.evaluate`'s job
(it owns the prompts, scaffold and sampling of the run).

The sets (names as used by ``TrainerConfig.eval_tasks``):

- ``heldout-dev`` / ``heldout-test``: the paper's seed triplets in
  ``7b_seed_io.jsonl`` and ``14b_seed_io.jsonl`` (programs written by
  Qwen2.5-7B/14B for the paper's seeding, see ``../shared/data/SOURCES.md``).
  Records are read in file order (7B first), programs deduplicated on their
  whitespace-normalised text, the identity program (the built-in training
  seed) dropped, and the distinct programs permuted once by
  ``numpy.random.default_rng(HELDOUT_SPLIT_SEED)``: the first third is dev,
  the rest test. Every program gives a deduction task (predict the output)
  and an abduction task (find an input), both judged as the run judges
  them. Programs whose two validation runs fail or disagree in the sandbox
  are dropped when the set is loaded (the count is reported).
- ``cruxeval-o-dev`` / ``cruxeval-o-test`` (deduction) and
  ``cruxeval-i-dev`` / ``cruxeval-i-test`` (abduction): CRUXEval's 800
  problems, permuted once by ``numpy.random.default_rng(CRUX_SPLIT_SEED)``;
  the first 400 are dev, the other 400 test (the same split for -O and -I).
  They are asked with the run's solver prompts, not CRUXEval's own prompt
  (``azr eval`` has that).

Tune on dev sets only; report test sets once.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from .tasks import Task

HELDOUT_FILES: tuple[str, ...] = ("7b_seed_io.jsonl", "14b_seed_io.jsonl")
HELDOUT_SPLIT_SEED = 20_250_503
HELDOUT_DEV_FRACTION = 1 / 3
CRUX_SPLIT_SEED = 250_503_335
CRUX_DEV_SIZE = 400
EVAL_SETS: tuple[str, ...] = ("heldout-dev", "heldout-test", "cruxeval-o-dev", "cruxeval-o-test",
                              "cruxeval-i-dev", "cruxeval-i-test")
_IDENTITY = "def f(a):\n    return a"


def program_key(program: str) -> str:
    """The identity of a program for hold-out purposes: its text with every
    run of whitespace collapsed to one space and the ends stripped, hashed.
    Two programs that differ only in layout share a key."""
    norm = re.sub(r"\s+", " ", program).strip()
    return hashlib.sha256(norm.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class EvalSet:
    """One named evaluation set: ``tasks`` (deduction or abduction, gold
    outputs set), ``ids`` (stable names, one per task), where it came from,
    and how many source records were dropped and why."""

    name: str
    tasks: list[Task]
    ids: list[str]
    source: str
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    def limit(self, n: int) -> "EvalSet":
        """The first ``n`` tasks (all when ``n`` is 0), in the set's fixed order."""
        if n <= 0 or n >= len(self.tasks):
            return self
        return EvalSet(self.name, self.tasks[:n], self.ids[:n], self.source, dict(self.dropped))


def _read_seed_programs(data_dir: Any, download: bool) -> list[tuple[str, str, str]]:
    """(file, program, input) of the held-out files' triplet records, in file order."""
    from .buffers import load_seed_jsonl
    from .evaluation.datasets import seed_file

    out = []
    for name in HELDOUT_FILES:
        trip, _ = load_seed_jsonl(seed_file(name, data_dir, download=download, progress=False))
        out += [(name, t.program, t.input) for t in trip]
    return out


def heldout_programs(data_dir: Any = None, download: bool = True) -> dict[str, list[tuple[str, str, str]]]:
    """``{"dev": [...], "test": [...]}``: the held-out (file, program, input)
    records of each split, before any sandbox run (see the module docstring)."""
    seen: set[str] = {program_key(_IDENTITY)}
    uniq = []
    for rec in _read_seed_programs(data_dir, download):
        k = program_key(rec[1])
        if k in seen:
            continue
        seen.add(k)
        uniq.append(rec)
    order = np.random.default_rng(HELDOUT_SPLIT_SEED).permutation(len(uniq))
    n_dev = int(round(len(uniq) * HELDOUT_DEV_FRACTION))
    return {"dev": [uniq[int(i)] for i in order[:n_dev]], "test": [uniq[int(i)] for i in order[n_dev:]]}


def heldout_keys(data_dir: Any = None, download: bool = True) -> set[str]:
    """:func:`program_key` of every held-out program, dev and test."""
    progs = heldout_programs(data_dir, download)
    return {program_key(p) for split in progs.values() for _, p, _ in split}


def _crux_problems(data_dir: Any, download: bool) -> dict[str, list[Any]]:
    from .evaluation.datasets import load_task

    probs = load_task("cruxeval-o", data_dir, download=download, progress=False)
    order = np.random.default_rng(CRUX_SPLIT_SEED).permutation(len(probs))
    return {"dev": [probs[int(i)] for i in order[:CRUX_DEV_SIZE]],
            "test": [probs[int(i)] for i in order[CRUX_DEV_SIZE:]]}


def load_eval_set(name: str, executor: Any, data_dir: Any = None, download: bool = True) -> EvalSet:
    """Build the set ``name`` (one of `EVAL_SETS`), gold outputs recomputed by
    ``executor.validate`` (the run's sandbox: deterministic, output within the
    answer limit). Raises ValueError for an unknown name and
    ``azr.evaluation.DataNotFoundError`` naming a missing file."""
    if name not in EVAL_SETS:
        raise ValueError(f"unknown evaluation set {name!r}; sets are {list(EVAL_SETS)}")
    family, split = name.rsplit("-", 1)
    if family == "heldout":
        recs = heldout_programs(data_dir, download)[split]
        progs = [p for _, p, _ in recs]
        inps = [i for _, _, i in recs]
        names = [f"{f}:{program_key(p)[:12]}" for f, p, _ in recs]
        source = f"paper seed triplets {', '.join(HELDOUT_FILES)} ({split} split, seed {HELDOUT_SPLIT_SEED})"
        kinds = ("deduction", "abduction")
    else:
        probs = _crux_problems(data_dir, download)[split]
        progs = [p.meta["code"] for p in probs]
        inps = [p.meta["input"] for p in probs]
        names = [p.id for p in probs]
        source = f"CRUXEval ({split} split, seed {CRUX_SPLIT_SEED})"
        kinds = ("deduction",) if family == "cruxeval-o" else ("abduction",)
    results = list(executor.validate(progs, inps)) if progs else []
    dropped: dict[str, int] = {}
    tasks: list[Task] = []
    ids: list[str] = []
    for p, i, n, r in zip(progs, inps, names, results):
        if r.status != "ok":
            dropped[r.status] = dropped.get(r.status, 0) + 1
            continue
        for kind in kinds:  # a program's deduction and abduction tasks side by side, so a limit keeps both
            tasks.append(Task(kind=kind, program=p, input=i, output=r.output, source="heldout"))
            ids.append(f"{kind}:{n}")
    return EvalSet(name, tasks, ids, source, dropped)


# ---------------------------------------------------------------- statistics
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` (right
    before, wrong after) and ``c`` (wrong before, right after): the binomial
    test of ``min(b, c)`` successes in ``b + c`` trials at 1/2, doubled and
    capped at 1. 1.0 when there is no discordant pair."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(x - top) for x in logs)
    return min(1.0, 2.0 * tail)


@dataclass
class PairedResult:
    """Accuracy on the same tasks before and after, and how sure the change is.

    ``delta`` = after - before (fractions); ``ci95`` its 95 % percentile
    interval from a paired bootstrap (tasks resampled with replacement,
    ``n_boot`` draws, fixed seed); ``p_value`` the exact McNemar test;
    ``b`` / ``c`` the discordant counts (right-then-wrong / wrong-then-right).
    """

    n: int
    before: float
    after: float
    delta: float
    ci95: tuple[float, float]
    p_value: float
    b: int
    c: int

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "before": self.before, "after": self.after, "delta": self.delta,
                "ci95": list(self.ci95), "p_value": self.p_value, "b": self.b, "c": self.c}


def paired_compare(before: Sequence[bool], after: Sequence[bool], n_boot: int = 10_000,
                   seed: int = 0) -> PairedResult:
    """Compare per-task correctness of the same tasks before and after (see
    :class:`PairedResult`). Raises ValueError when the lengths differ or are 0."""
    x = np.asarray(before, dtype=bool)
    y = np.asarray(after, dtype=bool)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired_compare needs two equally long non-empty lists, got {x.shape} and {y.shape}")
    n = int(x.size)
    d = y.astype(np.int8) - x.astype(np.int8)
    b = int(np.sum(d < 0))
    c = int(np.sum(d > 0))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = d[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return PairedResult(n=n, before=float(x.mean()), after=float(y.mean()), delta=float(d.mean()),
                        ci95=(float(lo), float(hi)), p_value=mcnemar_exact(b, c), b=b, c=c)


def accuracy(correct: Iterable[bool]) -> float | None:
    c = list(correct)
    return float(np.mean(c)) if c else None


__all__ = ["CRUX_SPLIT_SEED", "EVAL_SETS", "EvalSet", "HELDOUT_FILES", "HELDOUT_SPLIT_SEED", "PairedResult",
           "accuracy", "heldout_keys", "heldout_programs", "load_eval_set", "mcnemar_exact", "paired_compare",
           "program_key"]
