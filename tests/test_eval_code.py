"""Code scorers: pass@k, answer extraction, and judging through the sandbox API.

Scorer tests run against two executors with the documented `azr.Executor`
API: `ReferenceExecutor` (tests/eval_support.py, a subprocess-per-run stand-in
that checks this layer's test logic) and the real `azr.Executor`.
They run on a subset by default; AZR_EVAL_FULL=1 runs every problem.
"""
from __future__ import annotations

import ast
import itertools
import os
import time
from fractions import Fraction
from math import comb
import struct

import pytest
from eval_support import ReferenceExecutor

from azr.evaluation import (build_output_code, build_program, extract_code, extract_crux_answer, judge_outputs,
                            load_task, pass_at_k)
from azr.evaluation.code_tasks import sanitize_code
from azr.evaluation.prompts import BuiltPrompt
from azr.evaluation.runner import EvalConfig, _Judge
from azr.executor import Executor

FULL = os.environ.get("AZR_EVAL_FULL") == "1"

# Known exceptions among the canonical solutions (they fail only by resources, never by a wrong output):
# - Mbpp/255 combinations_colors: a plus input asks for all combinations with replacement of a long list,
#   which does not fit in the 1 GiB address-space limit.
# - Mbpp/271 even_Power_Sum, Mbpp/599 sum_average: plain loops up to very large n on the plus inputs; the
#   reference plus the candidate take over 60 s on this machine (EvalPlus allows each input 4x the
#   reference's own time instead of one bound for the whole run).
KNOWN_RESOURCE_EXCEPTIONS = {"Mbpp/255", "Mbpp/271", "Mbpp/599"}
# CRUXEval-I gold inputs that are expressions, not literals: azr.Executor accepts only literal inputs
# (a model answer is data, never code), so judge_input refuses them ("not allowed in an input"); a model
# answering with the equivalent literal is judged normally. 6 of 800; ReferenceExecutor evaluates them.
CRUX_I_NOT_LITERAL = {"sample_152", "sample_258", "sample_344", "sample_364", "sample_720", "sample_770"}
# Correct but slow (15-20 s each for reference + candidate on the plus inputs): left out of the default
# subset to keep CI short, run with AZR_EVAL_FULL=1, where on a loaded machine they (and Mbpp/271, which
# sits near the bound) may also run out of time; a timeout is accepted for them, a wrong output never.
SLOW = {"Mbpp/84", "Mbpp/589"}


# --------------------------------------------------------------------------- pass@k

def _pass_at_k_bruteforce(n: int, c: int, k: int) -> Fraction:
    """Fraction of all k-subsets of n samples (c correct) that contain a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(samples[i] for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_bruteforce(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(_pass_at_k_bruteforce(n, c, k)), abs=1e-12)


def test_pass_at_k_large_n_matches_exact_combinatorics():
    for n, c, k in [(200, 13, 1), (200, 13, 10), (200, 13, 100), (1000, 1, 50), (100, 0, 5), (100, 100, 5)]:
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9, abs=1e-12)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_pass_at_k_rejects_bad_arguments():
    for n, c, k in [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError, match="pass@k"):
            pass_at_k(n, c, k)


# --------------------------------------------------------------------------- extraction

@pytest.mark.parametrize("text,task,expected", [
    ("<think>..</think> <answer>[1, 2]</answer>", "cruxeval-o", "[1, 2]"),
    ("<answer>assert f('a', 1) == 'b'</answer>", "cruxeval-o", "'b'"),
    ("<answer>assert f('a', 1) == 'b'</answer>", "cruxeval-i", "'a', 1"),
    ("<answer>f([1, 2], x=3)</answer>", "cruxeval-i", "[1, 2], x=3"),
    ("<answer></answer>", "cruxeval-i", ""),  # f() takes no arguments
    ("<answer></answer>", "cruxeval-o", None),
    ("[ANSWER]assert f(3) == 9[/ANSWER]", "cruxeval-o", "9"),
    ("I think the output is:\n```python\n{'a': 1}\n```", "cruxeval-o", "{'a': 1}"),
    ("Output: (1, 'x')", "cruxeval-o", "(1, 'x')"),
    ("Calling `f([3, 1])` sorts it, so the output is `[1, 3]`.", "cruxeval-o", "[1, 3]"),
    ("So the input is `f('ab', 2)`", "cruxeval-i", "'ab', 2"),
    ("", "cruxeval-o", None),
])
def test_extract_crux_answer(text, task, expected):
    assert extract_crux_answer(text, task) == expected


def test_sanitize_keeps_definitions_and_drops_examples():
    code = ("import math\nfrom typing import List\nK = 3\n\n@staticmethod\ndef helper(x):\n    return x * K\n\n"
            "def add(a, b):\n    return helper(a) + b\n\nprint(add(1, 2))\nassert add(1, 1) == 99\n"
            "for i in range(3):\n    print(i)\nif __name__ == '__main__':\n    print(input())\n")
    out = sanitize_code(code)
    assert out == ("import math\nfrom typing import List\nK = 3\n@staticmethod\ndef helper(x):\n    return x * K\n"
                   "def add(a, b):\n    return helper(a) + b\n")
    assert sanitize_code("def broken(:\n") == "def broken(:\n"
    assert sanitize_code("print(1)\n") == "print(1)\n"  # nothing to keep: unchanged


def test_extraction_is_bounded_on_hostile_text():
    """Each extraction returns (or gives None) within 1 s on 5-160 KB of hostile text: it takes
    milliseconds, and a regex that backtracks quadratically here would take minutes."""
    for text in ["assert f(" + "[" * 50_000 + ") == 1", "<answer>f(" + "(" * 5000 + ")</answer>",
                 "```" * 10_000, "`" * 100_001, "<answer>" * 20_000]:
        for task in ("cruxeval-i", "cruxeval-o"):
            t0 = time.perf_counter()
            extract_crux_answer(text, task)  # returns something or None, never raises
            assert time.perf_counter() - t0 < 1.0, (task, text[:40])
        t0 = time.perf_counter()
        extract_code(text, "f")
        assert time.perf_counter() - t0 < 1.0, ("code", text[:40])


def test_extract_code_and_build_program():
    c = "Sure:\n```python\ndef helper():\n    return 1\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```"
    assert extract_code(c, "add").startswith("def add")
    prompt = 'def add(a, b):\n    """Add."""\n'
    prog = build_program(prompt, c, "add", "humaneval")
    assert prog.startswith(prompt.rstrip()) and prog.rstrip().endswith("return a + b")
    # a base model continuing the prompt: the completion is the body
    assert build_program(prompt, "    return a + b\n", "add", "humaneval") == prompt + "    return a + b\n"
    # <answer> tags around a block (the azr prompt style)
    assert "return a - b" in build_program(prompt, "<think>x</think><answer>```python\ndef add(a, b):\n"
                                                   "    return a - b\n```</answer>", "add", "humaneval")


# --------------------------------------------------------------------------- executors

@pytest.fixture(params=["reference", "azr"], scope="module")
def executor(request):
    if request.param == "reference":
        with ReferenceExecutor(workers=2, timeout=10.0, memory_mb=1024) as ex:
            yield ex
        return
    with Executor(workers=2, timeout=10.0, memory_mb=1024) as ex:
        yield ex


def _subset(probs, n):
    if FULL:
        return probs
    step = max(1, len(probs) // n)
    return probs[::step][:n]


def _judge(task, ex, items, **cfg):
    return _Judge(task, EvalConfig(**cfg), ex, None)(
        [(p, 0, text, BuiltPrompt("", [])) for p, text in items])


@pytest.mark.parametrize("task", ["cruxeval-o", "cruxeval-i"])
def test_cruxeval_gold_scores_100_and_wrong_scores_0(shared_data, executor, task):
    probs = _subset(load_task(task, shared_data / "benchmarks"), 24)
    if not FULL:  # make sure the subset includes the known exceptions
        probs += [p for p in load_task(task, shared_data / "benchmarks") if p.id in CRUX_I_NOT_LITERAL]
    gold = _judge(task, executor, [(p, f"<think>...</think> <answer>{p.answer}</answer>") for p in probs])
    bad = {p.id: r for p, r in zip(probs, gold) if not r["correct"]}
    unexpected = {k: r for k, r in bad.items() if not (task == "cruxeval-i" and k in CRUX_I_NOT_LITERAL)}
    assert not unexpected, unexpected
    for k, r in bad.items():  # refused as non-literal input by the sandbox, not judged wrong
        assert r["status"] == "error" and "not allowed in an input" in r["message"], (k, r)
    # wrong answers: for CRUXEval-O an output of another problem (different text and value), or a type
    # change; for CRUXEval-I an argument list f runs on and returns another output for, so the judge
    # compares outputs instead of stopping at a TypeError for the wrong number of arguments
    if task == "cruxeval-o":
        wrong = []
        for i, p in enumerate(probs):
            other = probs[(i + 1) % len(probs)]
            wrong.append((p, other.answer if other.answer != p.answer else repr(p.answer)))
    else:
        found = _runnable_wrong_inputs([p for p in probs if p.id not in CRUX_I_NOT_LITERAL])
        missing = [p.id for p in probs if p.id not in CRUX_I_NOT_LITERAL and p.id not in found]
        assert not missing or FULL, f"no runnable wrong input found for {missing}"
        wrong = [(p, found[p.id]) for p in probs if p.id in found]
    res = _judge(task, executor, [(p, f"<answer>{w}</answer>") for p, w in wrong])
    assert not any(r["correct"] for r in res), [(p.id, r) for (p, _), r in zip(wrong, res) if r["correct"]]
    if task == "cruxeval-i":  # judged on their outputs: every run ended normally
        assert all(r["status"] == "ok" for r in res), [(p.id, w, r) for (p, w), r in zip(wrong, res)
                                                       if r["status"] != "ok"]


def _literal_variants(v) -> list:
    """Other values near v, plus a few of other types."""
    out: list = []
    if isinstance(v, bool):
        out = [not v]
    elif isinstance(v, int):
        out = [v + 1, v - 1, 0, 1]
    elif isinstance(v, float):
        out = [v + 1.0, 0.0]
    elif isinstance(v, str):
        out = [v + "x", v[::-1], "", "\u00e9" * max(1, len(v))]
    elif isinstance(v, (list, tuple)):
        t = type(v)
        out = [t(v[1:]), t(list(v) + list(v[:1])), t(list(v)[::-1]), t()]
    elif isinstance(v, dict):
        out = [dict(list(v.items())[1:]), {**v, "x": 1}, {}]
    return out + [None, 0, "", []]


def _runnable_wrong_inputs(probs) -> dict[str, str]:
    """problem id -> an argument list that f accepts and that gives another output than the gold: the gold
    arguments with one changed, else another problem's gold input. Found by running f in azr.Executor
    (independent of the executor under test) and comparing with the gold output here."""
    from azr.executor import values_equal

    def args_of(text):
        call = ast.parse(f"f({text})", mode="eval").body
        return [ast.literal_eval(a) for a in call.args], {k.arg: ast.literal_eval(k.value) for k in call.keywords}

    def render(args, kwargs):
        return ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])

    cands = []
    for i, p in enumerate(probs):
        args, kwargs = args_of(p.answer)
        mine = [render(args[:j] + [m] + args[j + 1:], kwargs) for j, a in enumerate(args)
                for m in _literal_variants(a)]
        others = [q.answer for q in probs[i + 1:] + probs[:i] if q.answer != p.answer]
        cands += [(p, c) for c in mine + others]
    with Executor(workers=2, timeout=2.0, memory_mb=512) as ex:
        runs = ex.run([p.meta["code"] for p, _ in cands], [c for _, c in cands])
    found: dict[str, str] = {}
    for (p, c), r in zip(cands, runs):
        if p.id not in found and r.status == "ok" and not values_equal(r.value, ast.literal_eval(p.meta["output"])):
            found[p.id] = c
    return found


def test_cruxeval_output_equality_is_type_aware(executor):
    from azr.evaluation import Problem

    p = Problem("cruxeval-o", "t", "", "1", {"code": "def f(x):\n    return x + 0", "input": "1", "output": "1"})
    res = _judge("cruxeval-o", executor, [(p, "<answer>1</answer>"), (p, "<answer>1.0</answer>"),
                                          (p, "<answer>True</answer>"), (p, "<answer>'1'</answer>")])
    assert [r["correct"] for r in res] == [True, False, False, False]


def _corrupt(program: str, entry: str) -> str:
    """Wrap the canonical function so that every output is changed."""
    return program + f'''

_azr_orig_{entry} = {entry}
def {entry}(*a, **k):
    r = _azr_orig_{entry}(*a, **k)
    if isinstance(r, bool):
        return not r
    if isinstance(r, (int, float)):
        return r + 1
    if isinstance(r, str):
        return r + "x"
    if isinstance(r, list):
        return r + [None]
    if isinstance(r, tuple):
        return r + (None,)
    return [r]
'''


@pytest.mark.parametrize("task", ["humaneval+", "mbpp+"])
def test_canonical_solutions_pass_plus_tests_and_corrupted_fail(shared_data, executor, task):
    probs = load_task(task, shared_data / "benchmarks")
    if not FULL:
        probs = [p for p in _subset(probs, 12) if p.id not in KNOWN_RESOURCE_EXCEPTIONS | SLOW]
    items = [(p, f"```python\n{p.meta['reference']}\n```") for p in probs]
    res = _judge(task, executor, items, code_timeout=60.0)
    failures = {p.id: r for p, r in zip(probs, res) if not (r["correct"] and r["base_correct"])}
    unexpected = {k: v for k, v in failures.items() if k not in KNOWN_RESOURCE_EXCEPTIONS | SLOW}
    assert not unexpected, unexpected
    for k, r in failures.items():  # the known exceptions fail by resources, not by a wrong output
        assert r["status"] in ("timeout", "memory"), (k, r)

    # corrupted solutions (every output changed) fail; Mbpp/164's special oracle accepts any output
    corrupt = [(p, f"```python\n{_corrupt(p.meta['reference'], p.meta['entry_point'])}\n```")
               for p in probs if p.id != "Mbpp/164"][:8]
    res = _judge(task, executor, corrupt, code_timeout=60.0)
    assert not any(r["correct"] or r["base_correct"] for r in res), \
        [(p.id, r) for (p, _), r in zip(corrupt, res) if r["correct"]]


def test_codegen_hostile_and_broken_programs_fail(shared_data, executor):
    """Programs that exit early, crash, loop, or lack the function never pass."""
    p = load_task("humaneval+", shared_data / "benchmarks", limit=1)[0]
    ref = p.meta["reference"]
    programs = [
        # exits before the tests run (as assignments, which the sanitizer keeps)
        ref + "\n_stop = __import__('sys').exit(0)\n",
        ref + "\n_stop = __import__('os')._exit(0)\n",
        "def has_close_elements(numbers, threshold):\n    raise RuntimeError('no')\n",
        "def has_close_elements(numbers, threshold):\n    while True:\n        pass\n",
        "def something_else():\n    return 1\n",
        "def has_close_elements(numbers, threshold)\n    return True\n",  # syntax error
    ]
    items = [(p, f"```python\n{prog}\n```") for prog in programs]
    res = _judge("humaneval+", executor, items, code_timeout=3.0)
    assert [r["base_correct"] for r in res] == [False] * len(programs), res
    assert res[3]["status"] == "timeout"


def test_output_code_is_self_contained_and_judged_on_the_host():
    code = build_output_code("f", [[float("nan")], [float("inf")], [(1, {2})]], dataset="humaneval")
    compile(code, "<test>", "exec")
    with pytest.raises(ValueError, match="dataset"):
        build_output_code("f", [], dataset="apps")
    inputs = [[1], [2]]
    assert judge_outputs("f", inputs, [1, 2], [1, 2], dataset="humaneval") == ""
    assert "input #1" in judge_outputs("f", inputs, [1, 3], [1, 2], dataset="humaneval")
    assert "outputs" in judge_outputs("f", inputs, None, [1, 2], dataset="humaneval")  # not a list
    assert "outputs" in judge_outputs("f", inputs, [1], [1, 2], dataset="humaneval")
    assert judge_outputs("f", inputs, [0.1 + 0.2, float("nan")], [0.3, float("nan")], dataset="humaneval") == ""
    assert judge_outputs("f", inputs, [[1, 2], (1,)], [[1, 2], [1]], dataset="humaneval") != ""  # type-aware
    assert judge_outputs("Diff", inputs, [[2, 1], [3]], [[1, 2], [3]], dataset="mbpp") == ""  # set oracle
    assert judge_outputs("Diff", inputs, [1, 2], [[1], [2]], dataset="mbpp") != ""  # raising compare: wrong
    assert judge_outputs("find_zero", [[[1.0, 2.0]]], [-0.5], [-0.4], dataset="humaneval", atol=1e-6) == ""


def test_large_outputs_come_back_as_digests_that_compare_like_eq(executor):
    code = build_output_code("g", [[20000], [3]], dataset="humaneval")
    progs = ["def g(n):\n    return [1] * n\n",
             "def g(n):\n    return [True] * (n - 1) + [1.0]\n",  # == the first
             "def g(n):\n    return [1] * (n - 1) + [2]\n",
             "def g(n):\n    return tuple([1] * n)\n",  # a tuple is not == a list
             "def g(n):\n    return {str(i): {i, -i} for i in range(n)}\n",
             "def g(n):\n    return {str(i): frozenset({-i, i}) for i in reversed(range(n))}\n"]
    r = executor.run_tests(progs, [code] * len(progs), entry_points=["g"] * len(progs))
    assert [x.status for x in r] == ["ok"] * len(progs), [x.message for x in r]
    big = [x.value[0] for x in r]
    assert all(type(v) is tuple and v[0] == "<azr:digest>" for v in big), big
    assert big[0] == big[1] != big[2] and big[0] != big[3] and big[4] == big[5]
    assert r[0].value[1] == [1, 1, 1] and r[4].value[1] == {"0": {0}, "1": {1, -1}, "2": {2, -2}}


def _frame(payload: bytes) -> bytes:
    """The result frame a run's driver writes for status ok (csrc/sandbox/sandbox.h)."""
    return struct.pack("<III", 0x5A52C0DE, 0, len(payload)) + payload


def test_a_wrong_program_cannot_pass_by_writing_its_own_result(shared_data, executor):
    """A program owns its process: it can write a well-formed "ok" frame on
    the result pipe, through every route Python offers to a descriptor, and
    stop. The verdict comes from the outputs it returns, judged on the host,
    so none of these wrong programs passes. (Before, each of them passed:
    the verdict was the run's status.)"""
    p = load_task("humaneval+", shared_data / "benchmarks", limit=1)[0]
    wrong = "def has_close_elements(numbers, threshold):\n    return True\n"
    ok_none = _frame(b"N")
    programs = [
        wrong + f"_stop = __import__('os').write(3, {ok_none!r})\n",
        wrong + f"_stop = open(3, 'wb', closefd=False).write({ok_none!r})\n",
        wrong + f"_stop = __import__('io').FileIO(3, 'w', closefd=False).write({ok_none!r})\n",
        wrong + f"_stop = __import__('os').writev(3, [{ok_none!r}])\n",
        wrong + f"_stop = __import__('ctypes').CDLL(None).write(3, {ok_none!r}, {len(ok_none)})\n",
        wrong + f"_fd = __import__('os').dup(3)\n_stop = __import__('os').write(_fd, {ok_none!r})\n",
        # inside the entry point, as many outputs as the harness has inputs (read from its frame), then a hang
        "def has_close_elements(numbers, threshold):\n"
        "    import os, struct, sys\n"
        "    n = len(sys._getframe(1).f_globals['_AZR_INPUTS'])\n"
        "    payload = b'l' + struct.pack('<I', n) + b'T' * n\n"
        "    os.write(3, struct.pack('<III', 0x5A52C0DE, 0, len(payload)) + payload)\n"
        "    while True:\n"
        "        pass\n",
    ]
    items = [(p, f"```python\n{prog}\n```") for prog in programs]
    res = _judge("humaneval+", executor, items, code_timeout=3.0)
    assert [r["base_correct"] or r["correct"] for r in res] == [False] * len(programs), res


def test_hostile_answers_do_not_reach_the_host(tmp_path):
    """Through azr.Executor, a CRUXEval answer or a generated program cannot touch the evaluator's files
    (ReferenceExecutor is a plain subprocess, not a sandbox: this checks azr.Executor only)."""
    from azr.evaluation import Problem

    with Executor(workers=2, timeout=10.0, memory_mb=1024) as executor:
        marker = tmp_path / "pwned"
        touch = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
        p = Problem("cruxeval-o", "t", "", "1", {"code": "def f(x):\n    return x", "input": "1", "output": "1"})
        res = _judge("cruxeval-o", executor, [(p, f"<answer>{touch}</answer>")])
        crux_i = Problem("cruxeval-i", "t", "", "1", p.meta)
        res += _judge("cruxeval-i", executor, [(crux_i, f"<answer>{touch}</answer>")])
        he = Problem("humaneval+", "t", "", "", {"prompt": "", "entry_point": "g", "reference": "def g():\n    return 1\n",
                                                 "base_input": [[]], "plus_input": [], "atol": 0.0, "dataset": "humaneval"})
        res += _judge("humaneval+", executor, [(he, f"```python\n_x = {touch}\ndef g():\n    return 1\n```")])
    assert not any(r["correct"] for r in res[:2])
    assert not marker.exists()


def test_crux_extraction_skips_an_echo_of_the_program():
    """Small models often repeat the program in a fenced block and then give the
    answer in prose; the echo must not be taken as the answer."""
    from azr.evaluation.code_tasks import extract_crux_answer

    c = "```python\ndef f(nums):\n    return nums\n```\n\nOutput: `[1, 1, 3]`"
    assert extract_crux_answer(c, "cruxeval-o") == "[1, 1, 3]"
    assert extract_crux_answer("```python\n[1, 2]\n```", "cruxeval-o") == "[1, 2]"
