"""Benchmark loaders: each task's standard file format, read from a local
directory or downloaded once into azr's cache.

Owns: finding a benchmark's file (in the data directory given as an argument,
else ``$AZR_DATA_DIR``, else the benchmark cache), downloading a file missing
from the cache from its canonical source (pinned by commit, checked against
its SHA-256), parsing files into `Problem` records, and saying clearly which
file is missing, where it comes from and how to provide it.

Where the data comes from:

- A directory the user names (``data_dir=`` / ``--data-dir``, or
  ``AZR_DATA_DIR``) is only read: a missing file there is an error that names
  the file and its source. azr never downloads into a folder you chose.
- With neither, the data directory is the cache, ``<cache>/benchmarks``, where
  ``<cache>`` is `azr.gguf.cache_root` (``$AZR_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/azr``, else ``~/.cache/azr``; the same root the converted
  models use). A file missing there is downloaded from its canonical source
  (a GitHub repository at a pinned commit, see `BENCHMARK_FILES`) or from
  ``$AZR_BENCHMARK_MIRROR/<file>`` when that is set. The bytes go to a
  temporary file beside the destination, are checked for size and SHA-256,
  and only then renamed into place: the cache never holds a partial or
  unverified file. ``AZR_OFFLINE=1`` forbids the download;
  ``AZR_DOWNLOAD_TIMEOUT`` (seconds, default 60) bounds each network wait.

Must not: download into a directory the user named, keep a file whose hash
does not match, execute any code from the files (canonical solutions are
only run inside the sandbox), or keep global state.

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
import hashlib
import http.client
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..gguf import cache_root

__all__ = [
    "Problem",
    "DataNotFoundError",
    "DataDownloadError",
    "BenchmarkFile",
    "BENCHMARK_FILES",
    "TASKS",
    "CODE_GEN_TASKS",
    "CRUX_TASKS",
    "MATH_TASKS",
    "benchmark_cache_dir",
    "resolve_data_dir",
    "load_task",
    "mbpp_deserialize_inputs",
    "seed_file",
    "task_file",
]


class DataNotFoundError(FileNotFoundError):
    """A benchmark file is missing; the message names the file and its source."""


class DataDownloadError(DataNotFoundError):
    """A benchmark file is missing from the cache and could not be downloaded
    (offline, server error, timeout, size or SHA-256 mismatch); the message
    names the file, the URL(s) tried, the reason and the ways out."""


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


# --------------------------------------------------------------------------- canonical sources

@dataclass(frozen=True)
class BenchmarkFile:
    """Where one benchmark file comes from.

    ``name`` is its path under a data directory (and under the cache);
    ``repo`` / ``commit`` / ``path`` locate it on GitHub; ``sha256`` and
    ``size`` (bytes) are what a download must match; ``extra_urls`` are tried
    after the raw GitHub URL (e.g. a release asset of the same bytes).
    """

    name: str
    repo: str
    commit: str
    path: str
    sha256: str
    size: int
    note: str = ""
    extra_urls: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The raw.githubusercontent.com URL of the file at the pinned commit."""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"

    def describe(self) -> str:
        """A one-line human description of the source."""
        return (f"GitHub {self.repo} @ {self.commit[:12]}, {self.path}"
                + (f" ({self.note})" if self.note else ""))


_AZR_REPO, _AZR_COMMIT = "LeapLabTHU/Absolute-Zero-Reasoner", "a82124e514e27692aa9860c5ee21dbf9d81e3bc5"


def _azr_math(name: str, sha256: str, size: int) -> BenchmarkFile:
    return BenchmarkFile(f"azr_math_eval/{name}/test.jsonl", _AZR_REPO, _AZR_COMMIT,
                         f"evaluation/math_eval/eval/data/{name}/test.jsonl", sha256, size)


#: Every downloadable benchmark file, keyed by its path under the data directory.
#: Hashes and sizes are those of the files in ../shared/data/benchmarks (see its SOURCES.md).
BENCHMARK_FILES: dict[str, BenchmarkFile] = {f.name: f for f in (
    BenchmarkFile("cruxeval.jsonl", "facebookresearch/cruxeval", "190faf16d175b5847b0af05d937872b1fb395942",
                  "data/cruxeval.jsonl",
                  "8368b81047dc5014e4caf5a2f97604eff7644e0ecd7415e3ceeb184bbc2e0c96", 186873),
    BenchmarkFile("HumanEvalPlus-v0.1.10.jsonl.gz", "evalplus/humanevalplus_release",
                  "200defce9e3429d28ca215b6dd061c0f7f31c18b", "HumanEvalPlus.jsonl.gz",
                  "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101", 925932,
                  note="tag v0.1.10",
                  extra_urls=("https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/"
                              "HumanEvalPlus.jsonl.gz",)),
    BenchmarkFile("MbppPlus.jsonl", _AZR_REPO, _AZR_COMMIT, "evaluation/code_eval/data/MbppPlus.jsonl",
                  "b54e762755248ca411b523c917fa9f93c07b5ff2966bf60b3917b853926a3dad", 2592369,
                  note="EvalPlus MBPP+ v0.2.0"),
    BenchmarkFile("gsm8k/test.jsonl", "openai/grade-school-math", "3101c7d5072418e28b9008a6636bde82a006892c",
                  "grade_school_math/data/test.jsonl",
                  "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14", 749738),
    BenchmarkFile("math500/test.jsonl", _AZR_REPO, _AZR_COMMIT, "evaluation/math_eval/eval/data/math500/test.jsonl",
                  "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132", 446564),
    _azr_math("aime24", "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac", 156944),
    _azr_math("aime25", "20c1ca392758d96bd1e28af15d9f30df5660257927cacc9eac7301c29f677d1a", 15961),
    _azr_math("amc23", "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4", 27631),
    _azr_math("minerva_math", "0e656b430d3a0a1dab6aa853f453ba3805e28e2cabe4fc72486a897cc09d8ba2", 247267),
    _azr_math("olympiadbench", "bb8c1e38a16ea9eacb77530315a674d883f267fbff79183effc53681b4fcc416", 1493870),
    # the paper's seed triplets that azr.heldout builds its held-out set from
    BenchmarkFile("azr_seeds/7b_seed_io.jsonl", _AZR_REPO, _AZR_COMMIT, "data/7b_seed_io.jsonl",
                  "a3dfebb665f5b4b65b98f07431c8bdebaaf8565f53c75b9249a590f63a1ed0db", 218481),
    BenchmarkFile("azr_seeds/14b_seed_io.jsonl", _AZR_REPO, _AZR_COMMIT, "data/14b_seed_io.jsonl",
                  "a4f6a3c89c4946384cd2aa3a8b565c2f256100bcb0866eb149b599934e1db770", 274149),
)}

_LIVECODEBENCH_SOURCE = "https://github.com/LiveCodeBench/LiveCodeBench"
_DEFAULT_TIMEOUT_S = 60.0
_WAYS_OUT = ("pass --data-dir DIR (evaluate(..., data_dir=DIR)) or set AZR_DATA_DIR to a folder that has it "
             "(layout in docs/evaluation.md)")


def benchmark_cache_dir() -> Path:
    """The benchmark cache: ``azr.gguf.cache_root() / "benchmarks"`` (not created here)."""
    return cache_root() / "benchmarks"


def _resolve(data_dir: str | os.PathLike | None) -> tuple[Path, str | None]:
    """(directory, how it was given): "--data-dir" or "AZR_DATA_DIR" for a
    directory the user chose (must exist), None for the cache (may not exist yet)."""
    src = "--data-dir"
    if data_dir is None:
        env = os.environ.get("AZR_DATA_DIR")
        if not env:
            return benchmark_cache_dir(), None
        data_dir, src = env, "AZR_DATA_DIR"
    p = Path(data_dir).expanduser()
    if not p.is_dir():
        raise DataNotFoundError(f"benchmark directory {str(p)!r} (from {src}) does not exist or is not a directory")
    return p, src


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The benchmark directory: ``data_dir`` if given, else ``$AZR_DATA_DIR``,
    else the download cache (`benchmark_cache_dir`, which may not exist yet).

    Raises DataNotFoundError when a directory given by the user is absent.
    """
    return _resolve(data_dir)[0]


def _find(data_dir: Path, candidates: list[str]) -> Path | None:
    for c in candidates:
        p = data_dir / c
        if p.is_file():
            return p
    return None


def _missing(task: str, data_dir: Path, candidates: list[str], src: str) -> DataNotFoundError:
    """The error for a file absent from a directory the user chose (never downloaded into)."""
    return DataNotFoundError(
        f"{task}: expected {candidates[0]!r} under {str(data_dir)!r} (from {src})"
        + (f" (also tried {', '.join(repr(c) for c in candidates[1:])})" if len(candidates) > 1 else "")
        + f"; azr does not download into a folder you chose: get it from {BENCHMARK_FILES[candidates[0]].url} "
        f"({BENCHMARK_FILES[candidates[0]].describe()}) and place it there, or point --data-dir / AZR_DATA_DIR at a folder that has it, or leave both unset "
        f"to download it into the cache ({benchmark_cache_dir()})")


# --------------------------------------------------------------------------- download

def _download_urls(bf: BenchmarkFile) -> list[str]:
    mirror = os.environ.get("AZR_BENCHMARK_MIRROR", "").strip()
    if mirror:
        if not mirror.lower().startswith(("http://", "https://")):
            raise DataDownloadError(
                f"AZR_BENCHMARK_MIRROR={mirror!r} is not an http:// or https:// URL; set it to the base URL of a "
                f"copy of the benchmark folder, or unset it to download from GitHub")
        return [mirror.rstrip("/") + "/" + bf.name]
    return [bf.url, *bf.extra_urls]


def _timeout_s() -> float:
    raw = os.environ.get("AZR_DOWNLOAD_TIMEOUT", "").strip()
    if not raw:
        return _DEFAULT_TIMEOUT_S
    try:
        t = float(raw)
    except ValueError:
        t = -1.0
    if not t > 0 or t == float("inf"):
        raise DataDownloadError(f"AZR_DOWNLOAD_TIMEOUT={raw!r} must be a positive number of seconds")
    return t


def _fetch_to(url: str, fh: Any, bf: BenchmarkFile, timeout: float, progress: bool) -> None:
    """Stream ``url`` into the open binary file ``fh``, at most ``bf.size`` bytes,
    within ``timeout`` per network wait and 10 x ``timeout`` in all. Raises
    OSError / http.client.HTTPException / ValueError with the reason."""
    from tqdm.auto import tqdm

    deadline = time.monotonic() + 10 * timeout
    req = urllib.request.Request(url, headers={"User-Agent": "azr-benchmark-download"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http/https only, checked above)
        length = resp.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) != bf.size:
            raise ValueError(f"the server announces {int(length)} bytes, expected {bf.size}")
        got = 0
        with tqdm(total=bf.size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"downloading {bf.name}",
                  leave=False, disable=None if progress else True) as bar:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
                if got > bf.size:
                    raise ValueError(f"the download exceeds the expected {bf.size} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the download took longer than {10 * timeout:g} s")
                fh.write(chunk)
                bar.update(len(chunk))
    if got != bf.size:
        raise ValueError(f"the download has {got} bytes, expected {bf.size}")


def _download(bf: BenchmarkFile, cache_dir: Path, task: str, progress: bool) -> Path:
    """Download ``bf`` to ``cache_dir / bf.name`` (verified, atomic); DataDownloadError if every URL fails."""
    dest = cache_dir / bf.name
    head = f"{task}: {bf.name!r} is not in the benchmark cache {str(cache_dir)!r}"
    if os.environ.get("AZR_OFFLINE") == "1":
        raise DataDownloadError(f"{head} and AZR_OFFLINE=1 forbids downloading it from {bf.url}; {_WAYS_OUT}, "
                                f"or unset AZR_OFFLINE")
    urls = _download_urls(bf)
    timeout = _timeout_s()
    created: list[Path] = []  # folders this call made, removed again on failure when empty
    d = dest.parent
    while not d.exists():
        created.append(d)
        d = d.parent
    failures: list[str] = []
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataDownloadError(f"{head} and the cache folder cannot be created ({e}); set AZR_CACHE_DIR to a "
                                f"writable folder, or {_WAYS_OUT}") from None
    for url in urls:
        tmp = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as fh:
                _fetch_to(url, fh, bf, timeout, progress)
                fh.flush()
                os.fsync(fh.fileno())
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
            if digest != bf.sha256:
                raise ValueError(f"SHA-256 mismatch: got {digest}, expected {bf.sha256}")
            os.replace(tmp, dest)
            return dest
        except (OSError, http.client.HTTPException, ValueError) as e:
            reason = str(e.reason) if isinstance(e, urllib.error.URLError) and not isinstance(
                e, urllib.error.HTTPError) else str(e)
            if isinstance(e, TimeoutError) and not str(e):
                reason = f"timed out after {timeout:g} s"
            failures.append(f"{url} ({type(e).__name__}: {reason})")
        finally:
            if tmp is not None and tmp.exists():
                tmp.unlink()
    for c in created:  # innermost first
        try:
            c.rmdir()
        except OSError:
            break
    raise DataDownloadError(
        f"{head} and could not be downloaded: tried {'; '.join(failures)}. Expected {bf.describe()}, "
        f"{bf.size} bytes, SHA-256 {bf.sha256}. Offline? Either {_WAYS_OUT}, or place the file at {str(dest)!r}, "
        f"or set AZR_BENCHMARK_MIRROR to a server holding a copy of the benchmark folder")


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

def _load_crux(path: Path, task: str) -> list[Problem]:
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


def _load_humaneval_plus(path: Path, task: str) -> list[Problem]:
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


def _load_mbpp_plus(path: Path, task: str) -> list[Problem]:
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


def _load_gsm8k(path: Path, task: str) -> list[Problem]:
    out = []
    for lineno, r in _read_jsonl(path):
        _need(r, ("question", "answer"), path, lineno)
        out.append(Problem(task, str(r.get("idx", lineno - 1)), r["question"], _gsm8k_gold(r["answer"]),
                           {"solution": r["answer"]}))
    return out


def _load_math500(path: Path, task: str) -> list[Problem]:
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


def _load_azr_math(path: Path, task: str) -> list[Problem]:
    from .math_grader import extract_boxed

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
            f"{_LIVECODEBENCH_SOURCE} (Hugging Face dataset livecodebench/code_generation_lite), which azr "
            "does not download. A loader for a local copy of that file is planned; until then evaluate the other tasks")
    if key not in _LOADERS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return key


# Candidate names under a data directory; the first is the canonical one (a key of BENCHMARK_FILES),
# the one a download writes.
_FILES: dict[str, list[str]] = {
    "cruxeval-i": ["cruxeval.jsonl", "cruxeval/cruxeval.jsonl"],
    "cruxeval-o": ["cruxeval.jsonl", "cruxeval/cruxeval.jsonl"],
    "humaneval+": ["HumanEvalPlus-v0.1.10.jsonl.gz", "HumanEvalPlus.jsonl.gz", "HumanEvalPlus.jsonl",
                   "humanevalplus/HumanEvalPlus.jsonl.gz"],
    "mbpp+": ["MbppPlus.jsonl", "MbppPlus-v0.2.0.jsonl.gz", "MbppPlus.jsonl.gz", "mbppplus/MbppPlus.jsonl"],
    "gsm8k": ["gsm8k/test.jsonl", "gsm8k_test.jsonl"],
    "math500": ["math500/test.jsonl", "math500.jsonl"],
    **{k: [f"azr_math_eval/{v}/test.jsonl", f"{v}/test.jsonl"] for k, v in _AZR_MATH_DIRS.items()},
}


def task_file(task: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
              progress: bool = True) -> Path:
    """The file ``task`` is read from (no parsing).

    In a directory the user gave (``data_dir`` or ``$AZR_DATA_DIR``) a missing
    file raises DataNotFoundError naming it and its source. Without one, the
    file is looked up in the cache (`benchmark_cache_dir`) and, when absent and
    ``download`` is true, downloaded there (see the module docstring;
    ``progress`` shows a tqdm bar in bytes on a terminal); a failed download
    raises DataDownloadError naming the file, the URLs tried and the reason.
    """
    key = canonical_task(task)
    names = _FILES[key]
    data_dir_path, src = _resolve(data_dir)
    found = _find(data_dir_path, names) if data_dir_path.is_dir() else None
    if found is not None:
        return found
    if src is not None:
        raise _missing(key, data_dir_path, names, src)
    bf = BENCHMARK_FILES[names[0]]
    if not download:
        raise DataNotFoundError(
            f"{key}: {bf.name!r} is not in the benchmark cache {str(data_dir_path)!r} and downloading is off; "
            f"{_WAYS_OUT}, or allow the download from {bf.url}")
    return _download(bf, data_dir_path, key, progress)


def seed_file(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True,
              progress: bool = True) -> Path:
    """One of the paper's seed files (``name`` such as ``"7b_seed_io.jsonl"``):
    ``<data dir>/azr_seeds/<name>``, else ``<data dir>/../azr_seeds/<name>``
    (the layout of ``../shared/data``, where the benchmarks sit beside the
    seeds), else, with no data directory given, the cache (downloaded there
    when it is one of `BENCHMARK_FILES`). Errors as in `task_file`."""
    key = f"azr_seeds/{name}"
    data_dir_path, src = _resolve(data_dir)
    if data_dir_path.is_dir():
        found = _find(data_dir_path, [key, f"../{key}"])
        if found is not None:
            return found
    if src is not None and key in BENCHMARK_FILES:
        raise _missing(key, data_dir_path, [key, f"../{key}"], src)
    if key not in BENCHMARK_FILES:
        raise DataNotFoundError(f"seed file {name!r} is not in {str(data_dir_path)!r} and azr knows no source for "
                                f"it; {_WAYS_OUT}")
    if not download:
        raise DataNotFoundError(f"seed file {name!r} is not in the benchmark cache {str(data_dir_path)!r} and "
                                f"downloading is off; {_WAYS_OUT}")
    return _download(BENCHMARK_FILES[key], data_dir_path, key, progress)


def load_task(task: str, data_dir: str | os.PathLike | None = None, limit: int | None = None, *,
              download: bool = True, progress: bool = True) -> list[Problem]:
    """Load the problems of ``task`` (see `TASKS`) from ``data_dir``, else
    ``$AZR_DATA_DIR``, else the benchmark cache (downloading a missing file
    there; see `task_file`).

    ``limit`` keeps the first N problems (file order). Raises DataNotFoundError
    naming the expected file when it is absent (DataDownloadError when the
    download failed), ValueError on a malformed file or an unknown task.
    """
    key = canonical_task(task)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    probs = _LOADERS[key](task_file(key, data_dir, download=download, progress=progress), key)
    return probs[:limit] if limit is not None else probs
