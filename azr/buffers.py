"""Task buffers: one per task type plus a seed buffer.

- **Deduplication**: a task whose :meth:`Task.key` (program and input(s)) is
  already in the buffer is not added again.
- **Capacity and eviction**: ``capacity = 0`` means unbounded. A full buffer
  keeps taking new tasks: it evicts the oldest task (``"fifo"``, the default)
  or a uniformly random one (``"random"``). (The paper's implementation
  silently stops adding to a full buffer, which freezes the curriculum.)
- **Sampling**: solver batches take the newest valid tasks of the step first
  and fill the rest from the buffer (without replacement when it is large
  enough, with replacement otherwise): uniformly, or (``weighting =
  "learnable"``) in proportion to :func:`learnable_weight` of each task's
  recorded solve history, so that tasks of middling difficulty come up more
  often than ones the solver always or never gets right.
- **Solve history**: :meth:`TaskBuffer.record` counts attempts and correct
  answers per task (learnability rollouts and solver answers); it is saved
  with the buffer and dropped with an evicted task.
- **Seed buffer**: the seed triplets, never evicted; proposer prompts fall back
  to it for references when a type's buffer is empty.
- **References**: a proposer prompt shows up to K distinct tasks, drawn
  without replacement (fewer when the buffer holds fewer), with the same
  weighting as the solver batches.

Seed files use the paper's JSONL format: triplet records
``{"snippet", "input", "output", "imports", ...}`` and induction ("code_f")
records ``{"snippet", "inputs", "outputs", "message", "imports"}``.
:meth:`TaskBuffer.export_jsonl` writes the same format back (plus ``step`` and
``source``), so exported buffers can seed another run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .tasks import TASK_TYPES, Task

EVICTION_POLICIES = ("fifo", "random")
WEIGHTINGS = ("uniform", "learnable")


def learnable_weight(attempts: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Sampling weight of tasks with a solve history: ``p (1 - p)`` of the
    smoothed solve rate ``p = (correct + 0.5) / (attempts + 1)``. A task never
    tried weighs 0.25 (the most), one solved 2 of 4 times 0.25, 1 of 4 times
    0.21, 0 or 4 of 4 times 0.09, 0 of 16 times 0.03."""
    p = (np.asarray(correct, np.float64) + 0.5) / (np.asarray(attempts, np.float64) + 1.0)
    return p * (1.0 - p)


class TaskBuffer:
    """An insertion-ordered, deduplicated set of tasks with a capacity."""

    def __init__(self, name: str, capacity: int = 0, eviction: str = "fifo") -> None:
        if eviction not in EVICTION_POLICIES:
            raise ValueError(f"buffer eviction {eviction!r} is not one of {EVICTION_POLICIES}")
        if capacity < 0:
            raise ValueError(f"buffer capacity must be >= 0 (0 = unbounded), got {capacity}")
        self.name = name
        self.capacity = int(capacity)
        self.eviction = eviction
        self._items: dict[tuple, Task] = {}
        self._solves: dict[tuple, list[int]] = {}  # key -> [attempts, correct]
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, task: Task) -> bool:
        return task.key() in self._items

    @property
    def tasks(self) -> list[Task]:
        """The tasks, oldest first."""
        return list(self._items.values())

    def add(self, task: Task, rng: np.random.Generator | None = None) -> bool:
        """Add a task; False if an equal one is present. Evicts when full
        (``"random"`` eviction needs ``rng``)."""
        k = task.key()
        if k in self._items:
            return False
        if self.capacity and len(self._items) >= self.capacity:
            if self.eviction == "fifo":
                victim = next(iter(self._items))
            else:
                if rng is None:
                    raise ValueError(f"buffer {self.name!r}: random eviction needs an rng")
                victim = list(self._items)[int(rng.integers(len(self._items)))]
            del self._items[victim]
            self._solves.pop(victim, None)
            self.evicted += 1
        self._items[k] = task
        return True

    def extend(self, tasks: Iterable[Task], rng: np.random.Generator | None = None) -> int:
        """Add several tasks; returns how many were new."""
        return sum(self.add(t, rng) for t in tasks)

    def record(self, task: Task, attempts: int, correct: int) -> None:
        """Add ``attempts`` tries with ``correct`` right answers to the solve
        history of ``task`` (ignored when the task is not in the buffer)."""
        k = task.key()
        if k not in self._items or attempts <= 0:
            return
        h = self._solves.setdefault(k, [0, 0])
        h[0] += int(attempts)
        h[1] += int(min(max(correct, 0), attempts))

    def solve_history(self, task: Task) -> tuple[int, int]:
        """(attempts, correct) recorded for ``task``; (0, 0) when none."""
        a, c = self._solves.get(task.key(), (0, 0))
        return a, c

    def weights(self, weighting: str = "uniform") -> np.ndarray | None:
        """Sampling probabilities of :attr:`tasks` (None = uniform)."""
        if weighting not in WEIGHTINGS:
            raise ValueError(f"buffer weighting {weighting!r} is not one of {WEIGHTINGS}")
        if weighting == "uniform" or not self._items:
            return None
        h = np.array([self._solves.get(k, (0, 0)) for k in self._items], np.int64).reshape(-1, 2)
        w = learnable_weight(h[:, 0], h[:, 1])
        return w / w.sum()

    def sample(self, n: int, rng: np.random.Generator, newest: Sequence[Task] = (),
               weighting: str = "uniform") -> list[Task]:
        """``n`` tasks: ``newest`` first (up to n), then a fill from the buffer
        drawn with ``weighting``. Empty when both are empty."""
        out = list(newest[:n])
        need = n - len(out)
        items = self.tasks
        if need > 0 and items:
            replace = len(items) < need
            for i in rng.choice(len(items), size=need, replace=replace, p=self.weights(weighting)):
                out.append(items[int(i)])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "capacity": self.capacity, "eviction": self.eviction,
                "evicted": self.evicted, "tasks": [t.to_dict() for t in self._items.values()],
                "solves": [list(self._solves.get(k, (0, 0))) for k in self._items]}

    @classmethod
    def from_state_dict(cls, d: Any, where: str = "buffer") -> "TaskBuffer":
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object")
        for k in ("name", "capacity", "eviction", "tasks"):
            if k not in d:
                raise ValueError(f"{where}: missing field {k!r}")
        if not isinstance(d["tasks"], list) or not isinstance(d["capacity"], int):
            raise ValueError(f"{where}: 'tasks' must be a list and 'capacity' an integer")
        b = cls(str(d["name"]), d["capacity"], str(d["eviction"]))
        solves = d.get("solves")
        if solves is not None and (not isinstance(solves, list) or len(solves) != len(d["tasks"])):
            raise ValueError(f"{where}: 'solves' must be a list with one [attempts, correct] per task")
        for i, t in enumerate(d["tasks"]):
            task = Task.from_dict(t, f"{where}.tasks[{i}]")
            b._items[task.key()] = task
            if solves is not None:
                h = solves[i]
                if (not isinstance(h, list) or len(h) != 2 or not all(type(x) is int for x in h)
                        or not 0 <= h[1] <= h[0]):
                    raise ValueError(f"{where}.solves[{i}]: expected [attempts, correct] with "
                                     f"0 <= correct <= attempts, got {h!r}")
                if h[0]:
                    b._solves[task.key()] = list(h)
        b.evicted = int(d.get("evicted", 0))
        return b

    def export_jsonl(self, path: str | os.PathLike) -> int:
        """Write the tasks in the paper's seed JSONL format; returns the count."""
        with open(path, "w", encoding="utf-8") as f:
            for t in self._items.values():
                f.write(json.dumps(task_to_seed_record(t), ensure_ascii=False) + "\n")
        return len(self._items)


def task_to_seed_record(t: Task) -> dict[str, Any]:
    """A task as one record of the paper's JSONL format (plus step and source)."""
    if t.kind == "induction":
        return {"snippet": t.program, "inputs": list(t.inputs), "outputs": list(t.outputs),
                "message": t.message, "imports": list(t.imports), "step": t.step, "source": t.source}
    return {"snippet": t.program, "input": t.input, "output": t.output, "imports": list(t.imports),
            "original_snippet": t.program, "composite_functions": [], "step": t.step, "source": t.source}


def _str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def load_seed_jsonl(path: str | os.PathLike, limit: int | None = None) -> tuple[list[Task], list[Task]]:
    """Read a seed file in the paper's JSONL format.

    Returns ``(triplets, induction_tasks)``: triplet records give tasks of kind
    ``"deduction"`` (the trainer copies them into the abduction buffer too);
    code_f records give induction tasks. Outputs in these files are the paper's
    text and may be truncated; the trainer re-computes gold outputs in the
    sandbox. Blank lines are skipped; anything else malformed raises
    ``ValueError`` naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"seed file {p} does not exist")
    trip: list[Task] = []
    ind: list[Task] = []
    with open(p, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if limit is not None and len(trip) + len(ind) >= limit:
                break
            if not line.strip():
                continue
            where = f"{p}:{ln}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(r, dict):
                raise ValueError(f"{where}: expected a JSON object")
            snippet = r.get("snippet")
            if not isinstance(snippet, str) or not snippet.strip():
                raise ValueError(f"{where}: 'snippet' must be a non-empty string")
            imports = r.get("imports", [])
            if not _str_list(imports):
                raise ValueError(f"{where}: 'imports' must be a list of strings")
            step = r.get("step", -1)
            step = step if isinstance(step, int) and not isinstance(step, bool) else -1
            source = r.get("source", "seed")
            source = source if isinstance(source, str) else "seed"
            if "inputs" in r:
                ins, outs, msg = r.get("inputs"), r.get("outputs", []), r.get("message", "")
                if not _str_list(ins) or not _str_list(outs) or len(ins) != len(outs):
                    raise ValueError(f"{where}: 'inputs' and 'outputs' must be lists of strings of equal length")
                if not isinstance(msg, str):
                    raise ValueError(f"{where}: 'message' must be a string")
                ind.append(Task(kind="induction", program=snippet, inputs=ins, outputs=outs, message=msg,
                                imports=imports, source=source, step=step))
            elif "input" in r:
                inp, out = r.get("input"), r.get("output", "")
                if not isinstance(inp, str) or not isinstance(out, str):
                    raise ValueError(f"{where}: 'input' and 'output' must be strings")
                trip.append(Task(kind="deduction", program=snippet, input=inp, output=out, imports=imports,
                                 source=source, step=step))
            else:
                raise ValueError(f"{where}: a record needs 'input'/'output' (triplet) or 'inputs'/'outputs' "
                                 f"(code_f)")
    return trip, ind


class Buffers:
    """The deduction, abduction and induction buffers plus the seed buffer."""

    def __init__(self, capacity: int = 0, eviction: str = "fifo") -> None:
        self.by_type: dict[str, TaskBuffer] = {k: TaskBuffer(k, capacity, eviction) for k in TASK_TYPES}
        self.seed = TaskBuffer("seed", 0, "fifo")

    def __getitem__(self, kind: str) -> TaskBuffer:
        if kind == "seed":
            return self.seed
        if kind not in self.by_type:
            raise KeyError(f"no buffer {kind!r}; buffers are {TASK_TYPES + ('seed',)}")
        return self.by_type[kind]

    def sizes(self) -> dict[str, int]:
        d = {k: len(b) for k, b in self.by_type.items()}
        d["seed"] = len(self.seed)
        return d

    def add_seed_triplets(self, tasks: Iterable[Task], rng: np.random.Generator | None = None) -> int:
        """Add validated triplets to the seed, deduction and abduction buffers."""
        n = 0
        for t in tasks:
            base = Task.from_dict({**t.to_dict(), "kind": "deduction", "source": "seed"})
            self.seed.add(base)
            n += self.by_type["deduction"].add(base, rng)
            self.by_type["abduction"].add(Task.from_dict({**base.to_dict(), "kind": "abduction"}), rng)
        return n

    def references(self, kind: str, k: int, rng: np.random.Generator,
                   weighting: str = "uniform") -> list[Task]:
        """Up to K distinct reference triplets for a proposer prompt, drawn
        without replacement with ``weighting`` (from the seed buffer when the
        type's buffer is empty): a buffer of fewer than K tasks gives all of
        them, in random order, rather than repeating one."""
        src = self.by_type[kind] if len(self.by_type[kind]) else self.seed
        items = src.tasks
        if not items or k <= 0:
            return []
        p = src.weights(weighting)
        pick = rng.choice(len(items), size=min(k, len(items)), replace=False, p=p)
        return [items[int(i)] for i in pick]

    def program_pool(self) -> list[Task]:
        """Programs for induction proposals: deduction ∪ abduction (∪ seeds if empty)."""
        pool = self.by_type["deduction"].tasks + self.by_type["abduction"].tasks
        return pool or self.seed.tasks

    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "buffers": {k: b.state_dict() for k, b in self.by_type.items()},
                "seed": self.seed.state_dict()}

    @classmethod
    def from_state_dict(cls, d: Any) -> "Buffers":
        if not isinstance(d, dict) or d.get("version") != 1 or not isinstance(d.get("buffers"), dict):
            raise ValueError("saved buffers: expected {'version': 1, 'buffers': {...}, 'seed': {...}}")
        b = cls()
        for k in TASK_TYPES:
            if k not in d["buffers"]:
                raise ValueError(f"saved buffers: missing buffer {k!r}")
            b.by_type[k] = TaskBuffer.from_state_dict(d["buffers"][k], f"buffers.{k}")
        b.seed = TaskBuffer.from_state_dict(d.get("seed"), "buffers.seed")
        return b

    def save(self, path: str | os.PathLike) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.state_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Buffers":
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"buffer file {p} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"buffer file {p} is not valid JSON: {e.msg}") from None
        return cls.from_state_dict(d)

    def export_jsonl(self, directory: str | os.PathLike) -> dict[str, Path]:
        """Write ``<type>.jsonl`` (and ``seed.jsonl``) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        out = {}
        for k, b in list(self.by_type.items()) + [("seed", self.seed)]:
            out[k] = d / f"{k}.jsonl"
            b.export_jsonl(out[k])
        return out


__all__ = ["Buffers", "EVICTION_POLICIES", "TaskBuffer", "WEIGHTINGS", "learnable_weight", "load_seed_jsonl",
           "task_to_seed_record"]
