"""Test-only helpers for tests/test_eval*.py (never shipped in the azr package).

`ReferenceExecutor` is a minimal stand-in for `azr.Executor` with the same
methods the evaluation layer uses (run_tests, judge_output, judge_input),
built on one `python -I` subprocess per run with a wall-clock timeout and an
address-space limit. It exists so the scorers' test logic can be checked
independently of the real sandbox; it is NOT a security boundary.

`FakeModel` has the documented `Model.generate` signature and answers from a
table (prompt substring -> completion text), so the runner can be driven end
to end without a language model.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunResult:
    status: str
    value: object = None
    output: str = ""
    message: str = ""
    cpu_time: float = 0.0
    wall_time: float = 0.0


@dataclass
class Verdict:
    correct: bool
    status: str
    message: str = ""


# Type-aware equality used by the judge scripts: 1 != 1.0 != True, tuples are not lists.
_TEQ = r'''
def _ref_teq(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (a != a and b != b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_ref_teq(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_ref_teq(a[k], b[k]) for k in a)
    return a == b
'''


class ReferenceExecutor:
    """Subprocess-per-run executor for tests (see module doc)."""

    def __init__(self, workers: int = 2, timeout: float = 5.0, memory_mb: int = 1024) -> None:
        self.workers, self.timeout, self.memory_mb = workers, timeout, memory_mb
        self.calls = 0

    def __enter__(self) -> "ReferenceExecutor":
        return self

    def __exit__(self, *a: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def _run_one(self, source: str, timeout: float) -> RunResult:
        limit = self.memory_mb * 1024 * 1024

        def lim() -> None:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        with tempfile.TemporaryDirectory(prefix="azr-refexec-") as d:
            path = os.path.join(d, "prog.py")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(source)
            try:
                p = subprocess.run([sys.executable, "-I", path], cwd=d, capture_output=True, text=True,
                                   timeout=timeout, preexec_fn=lim, env={"PATH": os.environ.get("PATH", "")})
            except subprocess.TimeoutExpired:
                return RunResult("timeout", message=f"over {timeout} s")
        if p.returncode != 0:
            err = p.stderr.strip().splitlines()
            if any("SyntaxError" in ln for ln in err[-3:]):
                return RunResult("syntax", message="\n".join(err[-5:]))
            if any("MemoryError" in ln for ln in err[-3:]):
                return RunResult("memory", message="\n".join(err[-5:]))
            return RunResult("error", message="\n".join(err[-5:]))
        return RunResult("ok", output=p.stdout)

    def _map(self, sources: list[str], timeout: float) -> list[RunResult]:
        self.calls += len(sources)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda s: self._run_one(s, timeout), sources))

    def run_tests(self, programs: list[str], tests: list[str], timeout: float | None = None,
                  entry_points: list[str | None] | None = None, result_limit: int | None = None) -> list[RunResult]:
        """Program, then test code, in one process; "ok" only if the test code ran to its end.
        With entry_points, check(<entry point>)'s return value (repr after the sentinel) is the value.

        A fresh random sentinel printed after the tests tells a finished run
        from a program that exits early with status 0 (sys.exit(0), os._exit(0)).
        """
        assert len(programs) == len(tests)
        eps = entry_points or [None] * len(programs)
        nonces = [secrets.token_hex(16) for _ in programs]
        srcs = [f"{p}\n\n{t}\n\n_ref_v = check({e}) if {e!r} and callable(globals().get('check')) else None\n"
                f"import sys as _ref_sys\n_ref_sys.__stdout__.write('\\n{n}\\n' + repr(_ref_v))\n"
                for p, t, e, n in zip(programs, tests, eps, nonces)]
        out = []
        for r, n in zip(self._map(srcs, timeout or self.timeout), nonces):
            if r.status == "ok" and n not in r.output:
                r = RunResult("error", message="the program exited before its tests finished")
            elif r.status == "ok":
                text = r.output.split(n, 1)[1]
                env = {"__builtins__": {}, "nan": float("nan"), "inf": float("inf"), "set": set,
                       "frozenset": frozenset}
                r = RunResult("ok", value=eval(text, env), output=r.output)  # test helper only (see module doc)
            out.append(r)
        return out

    def _judge(self, sources: list[str]) -> list[Verdict]:
        out = []
        for r in self._map(sources, self.timeout):
            if r.status != "ok":
                out.append(Verdict(False, r.status, r.message))
            else:
                out.append(Verdict(r.output.strip().endswith("AZR_REF_TRUE"), "ok"))
        return out

    def judge_output(self, programs, inputs, gold_outputs, answers) -> list[Verdict]:
        assert len(programs) == len(inputs) == len(gold_outputs) == len(answers)
        srcs = [f"{p}\n{_TEQ}\n_v = f({i})\n_g = ({g})\n_a = ({a})\n"
                f"print('AZR_REF_TRUE' if _ref_teq(_v, _g) and _ref_teq(_a, _g) else 'AZR_REF_FALSE')\n"
                for p, i, g, a in zip(programs, inputs, gold_outputs, answers)]
        return self._judge(srcs)

    def judge_input(self, programs, gold_outputs, answers) -> list[Verdict]:
        assert len(programs) == len(gold_outputs) == len(answers)
        srcs = [f"{p}\n{_TEQ}\n_g = ({g})\n_v = f({a})\n"
                f"print('AZR_REF_TRUE' if _ref_teq(_v, _g) else 'AZR_REF_FALSE')\n"
                for p, g, a in zip(programs, gold_outputs, answers)]
        return self._judge(srcs)


@dataclass
class FakeCompletion:
    token_ids: list[int]
    text: str
    logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    model_logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    finish_reason: str = "stop"


class FakeModel:
    """`generate` answers each prompt with ``answer_for(prompt, sample_index)``; records every call."""

    def __init__(self, answer_for, tokenizer=None) -> None:
        self.answer_for = answer_for
        self.tokenizer = tokenizer
        self.calls: list[dict] = []

    def generate(self, prompts, n=1, max_new_tokens=256, temperature=1.0, top_p=1.0, top_k=0, stop=None, seed=0,
                 max_slots=None, kv_budget_mb=None, progress=False):
        self.calls.append({"prompts": list(prompts), "n": n, "temperature": temperature, "top_k": top_k,
                           "stop": stop, "max_new_tokens": max_new_tokens, "seed": seed})
        out = []
        for p in prompts:
            row = []
            for j in range(n):
                text = self.answer_for(p, j)
                row.append(FakeCompletion(token_ids=list(range(len(text.split()) + 1)), text=text))
            out.append(row)
        return out
