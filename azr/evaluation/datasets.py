"""Benchmark loaders: each task's standard file format, read from a local directory.

Owns: finding a benchmark's file under a data directory (argument, else the
``AZR_DATA_DIR`` environment variable), parsing it into `Problem` records, and
saying clearly which file is missing and where it comes from.

Must not: download anything (azr evaluates offline; fetching the canonical
files into a cache is future work, see docs/evaluation.md), execute any code
from the files (canonical solutions are only run inside the sandbox), or keep
global state.

Expected layout (the one in ``../shared/data/benchmarks``)::

    cruxeval.jsonl                              CRUXEval-I and CRUXEval-O (800)
    HumanEvalPlus-v0.1.10.jsonl.gz              HumanEval+ (164)   (or HumanEvalPlus.jsonl[.gz])
    MbppPlus.jsonl                              MBPP+ v0.2.0 (378) (or MbppPlus-v0.2.0.jsonl[.gz])
    gsm8k/test.jsonl                            GSM8K test (1319)
    math500/test.jsonl                          MATH-500 (500)
    azr_math_eval/<name>/test.jsonl             aime24, aime25, amc23, minerva_math, olympiadbench
                                                (or <name>/test.jsonl directly under the data dir)
"""
from __future__ import annotations

import ast
import gzip
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "Problem",
    "DataNotFoundError",
    "TASKS",
    "CODE_GEN_TASKS",
    "CRUX_TASKS",
    "MATH_TASKS",
    "resolve_data_dir",
    "load_task",
    "mbpp_deserialize_inputs",
    "task_file",
]


class DataNotFoundError(FileNotFoundError):
    """A benchmark file is missing; the message names the file and its source."""


@dataclass
class Problem:
    """One benchmark problem.

    ``question`` is the text shown to the model (task-specific: a function
    prompt, a math problem, a program); ``answer`` is the gold answer as text
    (math: the final answer; CRUXEval-O: the output literal; CRUXEval-I: the
    input argument list; code generation: the canonical solution). ``meta``
    holds whatever else the scorer needs (program, inputs, entry point, ...).
    """

    task: str
    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)


CRUX_TASKS = ("cruxeval-i", "cruxeval-o")
CODE_GEN_TASKS = ("humaneval+", "mbpp+")
MATH_TASKS = ("gsm8k", "math500", "aime24", "aime25", "amc23", "minerva", "olympiadbench")
TASKS = CRUX_TASKS + CODE_GEN_TASKS + MATH_TASKS

# Where each file comes from, for the "missing file" message.
_SOURCES = {
    "cruxeval": "https://github.com/facebookresearch/cruxeval (data/cruxeval.jsonl)",
    "humaneval+": "https://github.com/evalplus/humanevalplus_release/releases/tag/v0.1.10 (HumanEvalPlus.jsonl.gz)",
    "mbpp+": "https://github.com/evalplus/mbppplus_release/releases/tag/v0.2.0 (MbppPlus.jsonl.gz)",
    "gsm8k": "https://github.com/openai/grade-school-math (grade_school_math/data/test.jsonl)",
    "math500": "https://github.com/LeapLabTHU/Absolute-Zero-Reasoner (evaluation/math_eval/eval/data/math500/test.jsonl)",
    "azr_math": "https://github.com/LeapLabTHU/Absolute-Zero-Reasoner (evaluation/math_eval/eval/data/<name>/test.jsonl)",
    "livecodebench": "https://github.com/LiveCodeBench/LiveCodeBench",
}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The benchmark directory: ``data_dir`` if given, else ``$AZR_DATA_DIR``.

    Raises DataNotFoundError when neither is set or the directory is absent.
    """
    src = "--data-dir"
    if data_dir is None:
        env = os.environ.get("AZR_DATA_DIR")
        if not env:
            raise DataNotFoundError(
                "no benchmark directory given: pass --data-dir DIR (evaluate(..., data_dir=DIR)) "
                "or set AZR_DATA_DIR to a folder holding the benchmark files "
                "(cruxeval.jsonl, HumanEvalPlus-v0.1.10.jsonl.gz, MbppPlus.jsonl, gsm8k/test.jsonl, ...); "
                "azr does not download them (offline)")
        data_dir, src = env, "AZR_DATA_DIR"
    p = Path(data_dir).expanduser()
    if not p.is_dir():
        raise DataNotFoundError(f"benchmark directory {str(p)!r} (from {src}) does not exist or is not a directory")
    return p


def _find(data_dir: Path, candidates: list[str], source_key: str, task: str) -> Path:
    for c in candidates:
        p = data_dir / c
        if p.is_file():
            return p
    raise DataNotFoundError(
        f"{task}: expected {candidates[0]!r} under {str(data_dir)!r}"
        + (f" (also tried {', '.join(repr(c) for c in candidates[1:])})" if len(candidates) > 1 else "")
        + f"; azr evaluates offline and does not download it: get it from {_SOURCES[source_key]} "
        "and place it there, or point --data-dir / AZR_DATA_DIR at a folder that has it")


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg}); is this the right file?") from None
                if not isinstance(rec, dict):
                    raise ValueError(f"{path}:{lineno}: expected a JSON object per line, got {type(rec).__name__}")
                yield lineno, rec
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot be read ({e})") from None


def _need(rec: dict, keys: tuple[str, ...], path: Path, lineno: int) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise ValueError(f"{path}:{lineno}: record lacks field(s) {missing}; has {sorted(rec)}")


# --------------------------------------------------------------------------- CRUXEval

def _load_crux(data_dir: Path, task: str) -> list[Problem]:
    path = _find(data_dir, *_FILES[task], task)
    out = []
    for lineno, r in _read_jsonl(path):
        _need(r, ("code", "input", "output"), path, lineno)
        pid = str(r.get("id", f"sample_{lineno - 1}"))
        gold = r["input"] if task == "cruxeval-i" else r["output"]
        out.append(Problem(task, pid, r["code"], gold,
                           {"code": r["code"], "input": r["input"], "output": r["output"]}))
    return out


# --------------------------------------------------------------------------- EvalPlus

def _as_inputs(v: Any, path: Path, lineno: int, name: str) -> list:
    if isinstance(v, str):  # some releases store the inputs as JSON text
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{lineno}: field {name!r} is neither a list nor JSON text") from None
    if v == {}:  # MBPP+ writes "{}" for a task with no plus inputs (Mbpp/793)
        v = []
    if not isinstance(v, list) or not all(isinstance(a, list) for a in v):
        raise ValueError(f"{path}:{lineno}: field {name!r} must be a list of argument lists")
    return v


def _atol(v: Any) -> float:
    try:
        return float(v or 0)
    except (TypeError, ValueError):
        return 0.0


def _load_humaneval_plus(data_dir: Path, task: str) -> list[Problem]:
    path = _find(data_dir, *_FILES[task], task)
    out = []
    for lineno, r in _read_jsonl(path):
        _need(r, ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input"), path, lineno)
        out.append(Problem(task, r["task_id"], r["prompt"], r["prompt"] + r["canonical_solution"], {
            "dataset": "humaneval",
            "prompt": r["prompt"],
            "entry_point": r["entry_point"],
            "reference": r["prompt"] + r["canonical_solution"],
            "base_input": _as_inputs(r["base_input"], path, lineno, "base_input"),
            "plus_input": _as_inputs(r["plus_input"], path, lineno, "plus_input"),
            "atol": _atol(r.get("atol")),
            "test": r.get("test", ""),
        }))
    return out


# The MBPP+ file stores inputs as JSON, which has no tuples, sets or complex
# numbers; these are the tasks whose arguments must be converted back (the
# same conversion EvalPlus applies when it loads MBPP+ v0.2.0).
_MBPP_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630,
                    726, 740, 744, 809}
_MBPP_TUPLE_IN_LISTS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_MBPP_FIRST_IS_LIST_OF_TUPLES = {75, 413, 444, 753}
_MBPP_SECOND_IS_TUPLE = {106, 750}
_MBPP_FIRST_IS_TUPLE = {250, 405, 446, 617, 720, 763, 808}
_MBPP_TUPLES_OF_TUPLES = {259, 401, 445}
_MBPP_ALL_TUPLES = {580, 615, 791}


def _all_tuples(x: Any) -> Any:
    return tuple(_all_tuples(i) for i in x) if isinstance(x, list) else x


def mbpp_deserialize_inputs(task_id: str, inputs: list) -> list:
    """Turn MBPP+ JSON argument lists back into the Python types the task expects."""
    try:
        n = int(str(task_id).rsplit("/", 1)[-1])
    except ValueError:
        return inputs
    if n in _MBPP_TUPLE_ARGS:
        return [[tuple(a) for a in inp] for inp in inputs]
    if n in _MBPP_TUPLE_IN_LISTS:
        return [[[tuple(x) for x in a] for a in inp] for inp in inputs]
    if n in _MBPP_FIRST_IS_LIST_OF_TUPLES:
        return [[[tuple(x) for x in inp[0]]] + list(inp[1:]) for inp in inputs]
    if n in _MBPP_SECOND_IS_TUPLE:
        return [[inp[0], tuple(inp[1])] + list(inp[2:]) for inp in inputs]
    if n == 115:
        return [[[set(x) if isinstance(x, list) and x else {} for x in inp[0]]] for inp in inputs]
    if n == 124:
        return [[float(inp[0]), complex(inp[1])] for inp in inputs]
    if n in _MBPP_FIRST_IS_TUPLE:
        return [[tuple(inp[0])] + list(inp[1:]) for inp in inputs]
    if n in _MBPP_TUPLES_OF_TUPLES:
        return [[tuple(tuple(x) for x in a) for a in inp] for inp in inputs]
    if n == 278:
        return [[tuple(tuple(x) if isinstance(x, list) else x for x in inp[0])] for inp in inputs]
    if n == 307:
        return [[tuple(inp[0])] + list(inp[1:]) for inp in inputs]
    if n == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}] + list(inp[1:]) for inp in inputs]
    if n == 252:
        return [[complex(inp[0])] for inp in inputs]
    if n in _MBPP_ALL_TUPLES:
        return [_all_tuples(inp) for inp in inputs]
    return inputs


def _load_mbpp_plus(data_dir: Path, task: str) -> list[Problem]:
    path = _find(data_dir, *_FILES[task], task)
    out = []
    for lineno, r in _read_jsonl(path):
        _need(r, ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input"), path, lineno)
        tid = r["task_id"]
        try:
            base = mbpp_deserialize_inputs(tid, _as_inputs(r["base_input"], path, lineno, "base_input"))
            plus = mbpp_deserialize_inputs(tid, _as_inputs(r["plus_input"], path, lineno, "plus_input"))
        except (TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"{path}:{lineno}: inputs of {tid} do not have the expected shape ({e})") from None
        desc = r["prompt"].strip().strip('"').strip()
        out.append(Problem(task, tid, desc, r["canonical_solution"], {
            "dataset": "mbpp",
            "prompt": r["prompt"],
            "description": desc,
            "entry_point": r["entry_point"],
            "reference": r["canonical_solution"],
            "base_input": base,
            "plus_input": plus,
            "atol": _atol(r.get("atol")),
            "test": r.get("assertion", ""),
        }))
    return out


# --------------------------------------------------------------------------- math

def _gsm8k_gold(ans: str) -> str:
    m = re.search(r"####\s*(.+?)\s*$", ans.strip())
    return (m.group(1) if m else ans.strip()).replace(",", "").strip()


def _load_gsm8k(data_dir: Path, task: str) -> list[Problem]:
    path = _find(data_dir, *_FILES[task], task)
    out = []
    for lineno, r in _read_jsonl(path):
        _need(r, ("question", "answer"), path, lineno)
        out.append(Problem(task, str(r.get("idx", lineno - 1)), r["question"], _gsm8k_gold(r["answer"]),
                           {"solution": r["answer"]}))
    return out


def _load_math500(data_dir: Path, task: str) -> list[Problem]:
    path = _find(data_dir, *_FILES[task], task)
    out = []
    for lineno, r in _read_jsonl(path):
        _need(r, ("problem", "answer"), path, lineno)
        out.append(Problem(task, str(r.get("unique_id", lineno - 1)), r["problem"], str(r["answer"]),
                           {k: r[k] for k in ("subject", "level") if k in r}))
    return out


_AZR_MATH_DIRS = {"aime24": "aime24", "aime25": "aime25", "amc23": "amc23", "minerva": "minerva_math",
                  "olympiadbench": "olympiadbench"}


def _olympiad_gold(r: dict) -> str:
    fa = r.get("final_answer")
    if isinstance(fa, str):
        try:
            fa = ast.literal_eval(fa)
        except (ValueError, SyntaxError):
            fa = [fa]
    if isinstance(fa, (list, tuple)):
        parts = [str(x).strip().strip("$").strip() for x in fa]
        return ", ".join(parts)
    return str(fa)


def _load_azr_math(data_dir: Path, task: str) -> list[Problem]:
    from .math_grader import extract_boxed

    path = _find(data_dir, *_FILES[task], task)
    out = []
    for lineno, r in _read_jsonl(path):
        q = r.get("problem") or r.get("question")
        if not q:
            raise ValueError(f"{path}:{lineno}: record has no 'problem' or 'question' field")
        if task == "minerva":
            gold = extract_boxed(r.get("solution", "")) if "answer" not in r else str(r["answer"])
            if gold is None:
                raise ValueError(f"{path}:{lineno}: minerva solution has no \\boxed{{}} final answer")
        elif task == "olympiadbench":
            if "final_answer" not in r:
                raise ValueError(f"{path}:{lineno}: olympiadbench record has no 'final_answer'")
            gold = _olympiad_gold(r)
        else:
            _need(r, ("answer",), path, lineno)
            gold = str(r["answer"])
        pid = str(r.get("id", r.get("idx", lineno - 1)))
        meta = {}
        if task == "olympiadbench":
            meta = {"unit": r.get("unit"), "answer_type": r.get("answer_type"),
                    "multiple": str(r.get("is_multiple_answer")) == "True"}
        out.append(Problem(task, pid, q, gold, meta))
    return out


_LOADERS: dict[str, Callable[[Path, str], list[Problem]]] = {
    "cruxeval-i": _load_crux,
    "cruxeval-o": _load_crux,
    "humaneval+": _load_humaneval_plus,
    "mbpp+": _load_mbpp_plus,
    "gsm8k": _load_gsm8k,
    "math500": _load_math500,
    **{k: _load_azr_math for k in _AZR_MATH_DIRS},
}

_ALIASES = {"humanevalplus": "humaneval+", "humaneval": "humaneval+", "mbppplus": "mbpp+", "mbpp": "mbpp+",
            "math-500": "math500", "minerva_math": "minerva", "cruxeval_i": "cruxeval-i",
            "cruxeval_o": "cruxeval-o", "aime2024": "aime24", "aime2025": "aime25", "amc2023": "amc23"}


def canonical_task(name: str) -> str:
    """The canonical task name for ``name`` (case-insensitive, a few aliases)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in ("livecodebench", "lcb"):
        raise DataNotFoundError(
            "livecodebench: not available offline. LiveCodeBench problems and tests are fetched from "
            f"{_SOURCES['livecodebench']} (Hugging Face dataset livecodebench/code_generation_lite); azr "
            "does not download. A loader for a local copy of that file is planned; until then evaluate the other tasks")
    if key not in _LOADERS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return key


_FILES: dict[str, tuple[list[str], str]] = {
    "cruxeval-i": (["cruxeval.jsonl", "cruxeval/cruxeval.jsonl"], "cruxeval"),
    "cruxeval-o": (["cruxeval.jsonl", "cruxeval/cruxeval.jsonl"], "cruxeval"),
    "humaneval+": (["HumanEvalPlus-v0.1.10.jsonl.gz", "HumanEvalPlus.jsonl.gz", "HumanEvalPlus.jsonl",
                    "humanevalplus/HumanEvalPlus.jsonl.gz"], "humaneval+"),
    "mbpp+": (["MbppPlus.jsonl", "MbppPlus-v0.2.0.jsonl.gz", "MbppPlus.jsonl.gz", "mbppplus/MbppPlus.jsonl"], "mbpp+"),
    "gsm8k": (["gsm8k/test.jsonl", "gsm8k_test.jsonl"], "gsm8k"),
    "math500": (["math500/test.jsonl", "math500.jsonl"], "math500"),
    **{k: ([f"azr_math_eval/{v}/test.jsonl", f"{v}/test.jsonl"], "azr_math") for k, v in _AZR_MATH_DIRS.items()},
}


def task_file(task: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The file ``task`` would be read from (no parsing); DataNotFoundError naming it when absent."""
    key = canonical_task(task)
    names, src = _FILES[key]
    return _find(resolve_data_dir(data_dir), names, src, key)


def load_task(task: str, data_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[Problem]:
    """Load the problems of ``task`` (see `TASKS`) from ``data_dir`` or ``$AZR_DATA_DIR``.

    ``limit`` keeps the first N problems (file order). Raises DataNotFoundError
    naming the expected file when it is absent, ValueError on a malformed file
    or an unknown task.
    """
    key = canonical_task(task)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    probs = _LOADERS[key](resolve_data_dir(data_dir), key)
    return probs[:limit] if limit is not None else probs
