"""azr.Executor: the sandboxed judge of every self-play task and answer.

A program is Python source that defines ``f``; an input is the source text of
an argument list (``"1, [2, 3]"``), so a run evaluates ``f(<input>)``. Runs go
to a pool of pre-warmed Python zygotes driven by a C supervisor
(``csrc/sandbox``): each run is a fresh fork of a zygote, isolated by every
layer the machine allows (see :attr:`Executor.isolation`), and its result
comes back as a literal-only encoding decoded into exact builtin values, never
a pickle. Comparisons are type-aware (``True != 1 != 1.0``, ``0.0 != -0.0``,
``nan == nan``, ``[1] != (1,)``, sets and dicts by content).

Example::

    with azr.Executor(workers=2, timeout=5.0, memory_mb=512) as ex:
        [r] = ex.run(["def f(x):\\n    return x * 2"], ["21"])
        assert r.status == "ok" and r.value == 42 and r.output == "42"
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .tasks import MAX_OUTPUT_CHARS

from ._native import _core

__all__ = ["Executor", "RunResult", "Verdict", "DenyList", "DEFAULT_DENY", "values_equal",
           "canonical_repr"]

STATUSES = ("ok", "error", "timeout", "memory", "denied", "truncated", "syntax")
_MODE_RUN, _MODE_VALIDATE, _MODE_PARSE, _MODE_TESTS, _MODE_PROBE = range(5)

_LAYER_NAMES = {
    "process_group": 1 << 0,
    "rlimits": 1 << 1,
    "unprivileged_uid": 1 << 2,
    "no_new_privs": 1 << 3,
    "seccomp": 1 << 4,
    "landlock": 1 << 5,
    "pid_namespace": 1 << 6,
    "mount_namespace": 1 << 7,
    "network_namespace": 1 << 8,
    "private_scratch_tmpfs": 1 << 9,
    "empty_environment": 1 << 10,
    "wall_clock_deadline": 1 << 11,
    "subreaper": 1 << 12,
    "landlock_network": 1 << 13,
    "landlock_scope": 1 << 14,
    "parent_death_signal": 1 << 15,
    "no_capabilities": 1 << 16,
    "time_namespace": 1 << 17,
    "minimal_root": 1 << 18,
}


@dataclass
class RunResult:
    """The outcome of one run.

    status: "ok" | "error" | "timeout" | "memory" | "denied" | "truncated" |
    "syntax" | "nondeterministic". value: the decoded builtin value (None
    unless ok); output: its canonical text ("" unless ok); message: why, when
    not ok; stdout: what the run printed (bounded)."""

    status: str
    value: Any
    output: str
    message: str
    cpu_time: float
    wall_time: float
    stdout: str = ""


@dataclass
class Verdict:
    """A judged answer: correct, the status of the run that produced it."""

    correct: bool
    status: str
    message: str


@dataclass(frozen=True)
class DenyList:
    """What `Executor.validate` refuses, checked on the syntax tree.

    modules: imports of these (or their submodules) are denied. names: these
    identifiers may not appear (builtins like eval/open/__import__).
    attributes: attribute access to these (and string constants spelling
    them, and getattr-style calls with computed or dunder names) is denied."""

    modules: frozenset = frozenset()
    names: frozenset = frozenset()
    attributes: frozenset = frozenset()

    def to_json(self) -> str:
        return json.dumps({"modules": sorted(self.modules), "names": sorted(self.names),
                           "attributes": sorted(self.attributes)})


DEFAULT_DENY = DenyList(
    modules=frozenset({
        # processes, files, network, the interpreter itself
        "os", "sys", "subprocess", "shutil", "socket", "ctypes", "importlib", "multiprocessing",
        "threading", "_thread", "signal", "resource", "pty", "pickle", "marshal", "shelve",
        "builtins", "gc", "inspect", "io", "pathlib", "tempfile", "glob", "mmap", "fcntl",
        "select", "selectors", "asyncio", "concurrent", "code", "codeop", "runpy", "pdb", "bdb",
        "trace", "faulthandler", "urllib", "http", "ftplib", "smtplib", "telnetlib", "ssl",
        "xmlrpc", "socketserver", "webbrowser", "platform", "sysconfig", "site", "zipimport",
        "pkgutil", "ensurepip", "venv", "posix", "_posixsubprocess", "_io", "_socket", "_ctypes",
        "atexit", "tracemalloc", "sqlite3", "dbm", "zipfile", "tarfile", "pebble",
        # nondeterministic or irrelevant to a reasoning task (the paper's list)
        "random", "time", "datetime", "calendar", "hashlib", "logging", "uuid", "secrets",
    }),
    names=frozenset({
        "eval", "exec", "compile", "open", "__import__", "globals", "locals", "vars",
        "breakpoint", "input", "exit", "quit", "help", "__builtins__", "__loader__", "__spec__",
        "memoryview",
    }),
    attributes=frozenset({
        "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__bases__",
        "__base__", "__mro__", "mro", "__getattribute__", "__reduce__", "__reduce_ex__",
        "__loader__", "__spec__", "__import__", "__self__", "__func__", "__defaults__",
        "__kwdefaults__", "__traceback__", "f_globals", "f_locals", "f_back", "f_builtins",
        "f_code", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "tb_frame", "tb_next",
        "co_code", "_getframe",
    }),
)


# ------------------------------------------------------------------ values

def _key(v: Any) -> Any:
    """A hashable, type-tagged canonical form: equal keys <=> equal values."""
    t = type(v)
    if v is None:
        return ("n",)
    if v is Ellipsis:
        return ("e",)
    if t is bool:
        return ("b", v)
    if t is int:
        return ("i", v)
    if t is float:
        return ("f", "nan") if v != v else ("f", v.hex())
    if t is complex:
        return ("c", _key(v.real), _key(v.imag))
    if t is str:
        return ("s", v)
    if t is bytes:
        return ("y", v)
    if t is tuple:
        return ("t", tuple(_key(x) for x in v))
    if t is list:
        return ("l", tuple(_key(x) for x in v))
    if t is dict:
        return ("d", frozenset((_key(k), _key(x)) for k, x in v.items()))
    if t is set:
        return ("S", frozenset(_key(x) for x in v))
    if t is frozenset:
        return ("Z", frozenset(_key(x) for x in v))
    raise TypeError(f"not a literal value: {t.__name__}")


def values_equal(a: Any, b: Any) -> bool:
    """Type-aware equality of decoded values: True != 1 != 1.0, 0.0 != -0.0,
    nan == nan, list != tuple, sets and dicts compared by content."""
    return _key(a) == _key(b)


def canonical_repr(v: Any) -> str:
    """repr() of a decoded value with set elements in a stable order."""
    t = type(v)
    if t is list:
        return "[" + ", ".join(canonical_repr(x) for x in v) + "]"
    if t is tuple:
        inner = ", ".join(canonical_repr(x) for x in v)
        return "(" + inner + ("," if len(v) == 1 else "") + ")"
    if t is dict:
        return "{" + ", ".join(canonical_repr(k) + ": " + canonical_repr(x) for k, x in v.items()) + "}"
    if t is set or t is frozenset:
        items = sorted((canonical_repr(x) for x in v))
        if not items:
            return "set()" if t is set else "frozenset()"
        body = "{" + ", ".join(items) + "}"
        return body if t is set else "frozenset(" + body + ")"
    return repr(v)


# ------------------------------------------------------------------ executor

def _as_list(name: str, xs: Any, n: int | None = None) -> list:
    if isinstance(xs, (str, bytes)) or not isinstance(xs, Iterable):
        raise TypeError(f"{name} must be a list, got {type(xs).__name__}")
    xs = list(xs)
    if n is not None and len(xs) != n:
        raise ValueError(f"{name} has {len(xs)} items but programs has {n}")
    return xs


def _b(s: Any, what: str) -> bytes:
    if isinstance(s, str):
        return s.encode("utf-8", "surrogatepass")
    if isinstance(s, bytes):
        return s
    raise TypeError(f"{what} must be str, got {type(s).__name__}")


class Executor:
    """A pool of sandboxed Python workers (see the module docstring).

    workers: zygotes running in parallel (at least ``determinism_runs``, which
    the determinism check needs: it runs each program in that many zygotes,
    each with its own hash seed). determinism_runs: runs per program in
    `validate` (>= 2, default 4). rotate_seeds: after each `validate` call,
    replace the zygote started longest ago by one with a fresh hash seed, so
    the seeds change over a run (see `validate`). timeout:
    wall-clock seconds per run. memory_mb: address space a run may add to the
    zygote's own. output_limit: bytes of printed output kept; more ends the
    run as "truncated". result_limit: bytes of encoded result. file_limit_mb:
    largest file a run may write in its private scratch directory.
    deny: the deny-list `validate` enforces. max_output_chars: longest gold
    output text `validate` accepts (default: the longest answer a solver may
    give, `azr.tasks.MAX_OUTPUT_CHARS`, so every valid task can be solved). namespaces: use pid/mount/net namespaces
    when permitted. run_uid: the first unprivileged uid runs use when azr
    runs as root: the zygote in pool slot i runs its children as run_uid + i,
    so the per-uid process limit (512 processes and threads) counts each
    zygote's run apart and one run's threads cannot starve runs elsewhere.
    python: interpreter for the zygotes (default: this one).

    Files a run writes live in its zygote's private scratch tmpfs (when the
    mount namespace is available): at most 256 MiB and 65,536 inodes, one
    file at most file_limit_mb, emptied after every run. They are host
    memory outside memory_mb, so a pool can hold up to workers x 256 MiB of
    scratch at once (and one run at most 256 MiB).
    progress: show a tqdm bar on batches larger than a few hundred runs.
    Batches release the GIL; Ctrl-C cancels a batch (KeyboardInterrupt)."""

    def __init__(self, workers: int = 2, timeout: float = 5.0, memory_mb: int = 512, *,
                 output_limit: int = 64 << 10, result_limit: int = 256 << 10, file_limit_mb: int = 16,
                 deny: DenyList = DEFAULT_DENY, max_output_chars: int = MAX_OUTPUT_CHARS,
                 namespaces: bool = True, run_uid: int = 61000, python: str | None = None,
                 preload: Sequence[str] | None = None, startup_timeout: float = 60.0,
                 progress: bool = False, determinism_runs: int = 4, rotate_seeds: bool = True) -> None:
        self._pool = None
        self._scratch = None
        self._owner = os.getpid()
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        if not isinstance(determinism_runs, int) or isinstance(determinism_runs, bool) \
                or not 2 <= determinism_runs <= 16:
            raise ValueError(f"determinism_runs must be an int in 2..16, got {determinism_runs!r}")
        self.determinism_runs = determinism_runs
        self.rotate_seeds = bool(rotate_seeds)
        self.workers = max(2, workers, determinism_runs)
        self.timeout = self._check_timeout(timeout)
        self.memory_mb = self._check_memory(memory_mb)
        if output_limit < 0 or result_limit < 64 or file_limit_mb < 1:
            raise ValueError("output_limit >= 0, result_limit >= 64 and file_limit_mb >= 1 are required")
        self.output_limit = int(output_limit)
        self.result_limit = int(result_limit)
        self.file_limit_mb = int(file_limit_mb)
        if not isinstance(deny, DenyList):
            raise TypeError("deny must be an azr.executor.DenyList")
        self.deny = deny
        self.max_output_chars = int(max_output_chars)
        self.progress = bool(progress)
        here = Path(__file__).resolve().parent
        driver = here / "_sandbox_zygote.py"
        exts = sorted(here.glob("_zygote*.so"))
        if not exts:
            raise ImportError(f"the sandbox zygote module azr/_zygote*.so is missing in {here}: "
                              "rebuild with `python setup.py build_ext --inplace`")
        python = python or sys.executable
        if not python or not os.access(python, os.X_OK):
            raise ValueError(f"python interpreter {python!r} is not executable")
        self._scratch = tempfile.mkdtemp(prefix="azr-sandbox-")
        os.chmod(self._scratch, 0o711)
        cfg = {"run_uid": int(run_uid), "run_gid": int(run_uid), "namespaces": bool(namespaces),
               "nproc": 512, "deny": self.deny.to_json()}
        if preload is not None:
            cfg["preload"] = list(preload)
        try:
            self._pool = _core.SandboxPool(python, str(driver), str(exts[-1]), self._scratch,
                                           json.dumps(cfg), self.workers, bool(namespaces),
                                           int(startup_timeout * 1000))
            probe = self._pool.run([(_MODE_PROBE, 10_000, 64, 1024, 1024, 1, -1, b"", b"", b"")] * self.workers)
            bad = [p for p in probe if p[0] != 0]
            if bad:
                raise RuntimeError("the sandbox could not install its isolation layers (nothing is run): "
                                   + (bad[0][1].decode("utf-8", "replace") or bad[0][3]))
        except BaseException:
            self.close()
            raise

    # -- lifecycle
    def close(self) -> None:
        """Kill every zygote and run, remove the scratch directory. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()  # in a forked copy this only closes our copies of the sockets
        if os.getpid() != getattr(self, "_owner", None):
            self._scratch = None  # the zygotes (and their scratch) belong to the parent
            return
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    @property
    def closed(self) -> bool:
        return self._pool is None

    @property
    def isolation(self) -> dict[str, bool]:
        """Which isolation layers are active for runs (name -> bool)."""
        mask = self._live().layers()
        return {name: bool(mask & bit) for name, bit in _LAYER_NAMES.items()}

    def _worker_pids(self) -> list[int]:
        return self._live().pids()

    def _spawned(self) -> int:
        return self._live().spawned()

    def _live(self):
        if self._pool is None:
            raise RuntimeError("this Executor is closed; create a new one")
        return self._pool

    @staticmethod
    def _check_timeout(t: float) -> float:
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0 or t > 3600:
            raise ValueError(f"timeout must be in (0, 3600] seconds, got {t!r}")
        return float(t)

    @staticmethod
    def _check_result_limit(n: int) -> int:
        if not isinstance(n, int) or n < 64 or n > 1 << 27:
            raise ValueError(f"result_limit must be an int in [64, {1 << 27}] bytes, got {n!r}")
        return n

    @staticmethod
    def _check_memory(m: int) -> int:
        if not isinstance(m, int) or m < 16 or m > 1 << 20:
            raise ValueError(f"memory_mb must be an int in [16, 1048576], got {m!r}")
        return m

    # -- plumbing
    def _req(self, mode: int, a: bytes, b: bytes = b"", c: bytes = b"", pair: int = -1,
             timeout: float | None = None, memory_mb: int | None = None, result_limit: int | None = None) -> tuple:
        t = self.timeout if timeout is None else self._check_timeout(timeout)
        m = self.memory_mb if memory_mb is None else self._check_memory(memory_mb)
        rl = self.result_limit if result_limit is None else self._check_result_limit(result_limit)
        return (mode, max(1, int(t * 1000)), m, self.output_limit, rl, self.file_limit_mb, pair, a, b, c)

    def _exec(self, reqs: list) -> list[RunResult]:
        pool = self._live()
        if not reqs:
            return []
        chunk = max(256, 64 * self.workers)
        if not self.progress or len(reqs) <= chunk:
            raw = pool.run(reqs)
        else:
            # Chunks so a progress bar can move; each chunk still runs in
            # parallel across the pool with the GIL released.
            from tqdm import tqdm

            raw = []
            with tqdm(total=len(reqs), desc="sandbox", unit="run") as bar:
                for s in range(0, len(reqs), chunk):
                    raw += pool.run(reqs[s:s + chunk])
                    bar.update(min(chunk, len(reqs) - s))
        return [self._to_result(r) for r in raw]

    @staticmethod
    def _to_result(r: tuple) -> RunResult:
        code, payload, out, msg, cpu, wall = r[:6]
        status = STATUSES[code] if code < len(STATUSES) else "error"
        stdout = out.decode("utf-8", "replace")
        if status == "ok":
            try:
                value = _core.sandbox_decode(payload)
                text = canonical_repr(value)
            except (ValueError, TypeError, RecursionError, MemoryError) as exc:
                return RunResult("error", None, "", f"the result could not be decoded: {exc}", cpu, wall, stdout)
            return RunResult("ok", value, text, "", cpu, wall, stdout)
        message = payload.decode("utf-8", "replace") if payload else msg
        return RunResult(status, None, "", message, cpu, wall, stdout)

    # -- public batch calls
    def run(self, programs: Sequence[str], inputs: Sequence[str], timeout: float | None = None,
            memory_mb: int | None = None) -> list[RunResult]:
        """Run f(<inputs[i]>) for each program; one RunResult per program."""
        programs = _as_list("programs", programs)
        inputs = _as_list("inputs", inputs, len(programs))
        reqs = [self._req(_MODE_RUN, _b(p, "program"), _b(i, "input"), timeout=timeout, memory_mb=memory_mb)
                for p, i in zip(programs, inputs)]
        return self._exec(reqs)

    def validate(self, programs: Sequence[str], inputs: Sequence[str], timeout: float | None = None,
                 memory_mb: int | None = None, deny: DenyList | None = None,
                 max_output_chars: int | None = None) -> list[RunResult]:
        """Check proposed (program, input) pairs: syntax, the deny-list on the
        syntax tree, ``determinism_runs`` runs in zygotes with pairwise
        different hash seeds ("nondeterministic" unless all return equal
        values), and the gold output (`output`).

        What the hash seeds catch: iteration order of sets and dicts keyed by
        strings, bytes or tuples of them (``hash`` of numbers is not seeded).
        A program whose result depends on the order of a 2-element set passes
        all k runs when every seed happens to give the same order, about
        (1/2)^(k-1) of the time (1/8 with the default k = 4); a 3-element set,
        about (1/6)^(k-1) (under 1/200). With ``rotate_seeds`` each call
        replaces one zygote with a freshly seeded one, so a program proposed
        again later meets other seeds; without it the same seeds judge every
        call of the executor's life."""
        programs = _as_list("programs", programs)
        inputs = _as_list("inputs", inputs, len(programs))
        d = (deny or self.deny).to_json().encode()
        limit = self.max_output_chars if max_output_chars is None else int(max_output_chars)
        k_runs = self.determinism_runs
        reqs = []
        for k, (p, i) in enumerate(zip(programs, inputs)):
            pb, ib = _b(p, "program"), _b(i, "input")
            for _ in range(k_runs):  # a group led by its first request: pairwise distinct seeds
                reqs.append(self._req(_MODE_VALIDATE, pb, ib, d, k_runs * k, timeout, memory_mb))
        res = self._exec(reqs)
        if self.rotate_seeds and reqs:
            self._live().reseed(1)
        return [self._combine(res[k_runs * k:k_runs * (k + 1)], limit) for k in range(len(programs))]

    @staticmethod
    def _combine(runs: Sequence[RunResult], limit: int) -> RunResult:
        """One verdict from the runs of one program under different hash seeds."""
        r1 = runs[0]
        if all(r.status == "ok" for r in runs):
            for r in runs[1:]:
                if not values_equal(r1.value, r.value):
                    return RunResult("nondeterministic", None, "",
                                     "runs with different hash seeds returned different values: "
                                     f"{r1.output[:100]} vs {r.output[:100]}", r1.cpu_time, r1.wall_time,
                                     r1.stdout)
            if len(r1.output) > limit:
                return RunResult("truncated", None, "", f"the output text has {len(r1.output)} characters, "
                                 f"more than {limit}", r1.cpu_time, r1.wall_time, r1.stdout)
            return r1
        if all(r.status == r1.status for r in runs):
            return r1
        for s in ("syntax", "denied", "timeout", "memory", "truncated"):
            for r in runs:
                if r.status == s:
                    return r
        other = next(r for r in runs if r.status != r1.status)
        return RunResult("nondeterministic", None, "",
                         f"runs with different hash seeds ended differently: {r1.status} "
                         f"({r1.message[:80]}) vs {other.status} ({other.message[:80]})",
                         r1.cpu_time, r1.wall_time, r1.stdout)

    def judge_output(self, programs: Sequence[str], inputs: Sequence[str],
                     gold_outputs: Sequence[str | None], answers: Sequence[str]) -> list[Verdict]:
        """Deduction: is answers[i] (parsed as a literal inside the sandbox)
        equal, type-aware, to gold_outputs[i]? A None gold is computed by
        running programs[i] on inputs[i]."""
        programs = _as_list("programs", programs)
        n = len(programs)
        inputs = _as_list("inputs", inputs, n)
        golds = _as_list("gold_outputs", gold_outputs, n)
        answers = _as_list("answers", answers, n)
        reqs = []
        for p, i, g, a in zip(programs, inputs, golds, answers):
            reqs.append(self._req(_MODE_PARSE, _b(a, "answer")))
            if g is None:
                reqs.append(self._req(_MODE_RUN, _b(p, "program"), _b(i, "input")))
            else:
                reqs.append(self._req(_MODE_PARSE, _b(g, "gold output")))
        res = self._exec(reqs)
        return [self._verdict(res[2 * k], res[2 * k + 1]) for k in range(n)]

    @staticmethod
    def _verdict(ans: RunResult, gold: RunResult, what: str = "answer") -> Verdict:
        if gold.status != "ok":
            return Verdict(False, "error", f"the gold output is unusable ({gold.status}): {gold.message}")
        if ans.status != "ok":
            return Verdict(False, ans.status, f"{what}: {ans.message}")
        if values_equal(ans.value, gold.value):
            return Verdict(True, "ok", "")
        return Verdict(False, "ok", f"{what} {ans.output[:200]} != gold {gold.output[:200]}")

    def judge_input(self, programs: Sequence[str], gold_outputs: Sequence[str],
                    answers: Sequence[str]) -> list[Verdict]:
        """Abduction: does f(<answers[i]>) equal gold_outputs[i] (type-aware)?"""
        programs = _as_list("programs", programs)
        n = len(programs)
        golds = _as_list("gold_outputs", gold_outputs, n)
        answers = _as_list("answers", answers, n)
        reqs = []
        for p, g, a in zip(programs, golds, answers):
            reqs.append(self._req(_MODE_RUN, _b(p, "program"), _b(a, "answer")))
            reqs.append(self._req(_MODE_PARSE, _b(g, "gold output")))
        res = self._exec(reqs)
        return [self._verdict(res[2 * k], res[2 * k + 1], "f(answer)") for k in range(n)]

    def judge_program(self, programs: Sequence[str],
                      io_pairs: Sequence[Sequence[tuple[str, str]]]) -> list[Verdict]:
        """Induction: does each candidate program map every held-out input
        to its output (type-aware)? All pairs must pass."""
        programs = _as_list("programs", programs)
        pairs = _as_list("io_pairs", io_pairs, len(programs))
        reqs, spans = [], []
        for p, ps in zip(programs, pairs):
            ps = list(ps)
            spans.append((len(reqs), len(ps)))
            pb = _b(p, "program")
            for inp, outp in ps:
                reqs.append(self._req(_MODE_RUN, pb, _b(inp, "input")))
                reqs.append(self._req(_MODE_PARSE, _b(outp, "output")))
        res = self._exec(reqs)
        verdicts = []
        for start, count in spans:
            if count == 0:
                verdicts.append(Verdict(False, "error", "no input/output pairs to judge against"))
                continue
            v = Verdict(True, "ok", "")
            for j in range(count):
                vj = self._verdict(res[start + 2 * j], res[start + 2 * j + 1], f"pair {j}: f(input)")
                if not vj.correct:
                    v = vj
                    break
            verdicts.append(v)
        return verdicts

    def run_tests(self, programs: Sequence[str], tests: Sequence[str], timeout: float | None = None,
                  entry_points: Sequence[str | None] | None = None,
                  memory_mb: int | None = None, result_limit: int | None = None) -> list[RunResult]:
        """HumanEval/MBPP style: run each program, then its test code in the
        same namespace; if entry_points[i] is given and the tests define
        check(), call check(<entry point>): its return value (a literal) is
        the result's value. ok = no exception.

        The program shares the process with its tests and can write its own
        run's result, "ok" included, whatever the tests would have found. A
        verdict that must hold against the program comes from values instead:
        let check() return the entry point's outputs and judge them outside
        (as azr.evaluation does for HumanEval+/MBPP+)."""
        programs = _as_list("programs", programs)
        tests = _as_list("tests", tests, len(programs))
        eps = _as_list("entry_points", entry_points, len(programs)) if entry_points is not None \
            else [None] * len(programs)
        reqs = [self._req(_MODE_TESTS, _b(p, "program"), _b(t, "tests"), _b(e or "", "entry point"),
                          timeout=timeout, memory_mb=memory_mb, result_limit=result_limit)
                for p, t, e in zip(programs, tests, eps)]
        return self._exec(reqs)
