"""Math grading: extraction, normalisation, equivalence, and the real benchmarks' gold answers."""
from __future__ import annotations

import os
import re
import time

import pytest

from azr.evaluation import MATH_TASKS, MathGrader, extract_answer, extract_boxed, load_task, normalize_answer


@pytest.fixture(scope="module")
def grader():
    with MathGrader(timeout=3.0) as g:
        yield g


# --------------------------------------------------------------------------- extraction

@pytest.mark.parametrize("text,expected", [
    ("so $\\boxed{5}$.", "5"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}} is it", "\\frac{1}{\\sqrt{2}}"),
    ("first \\boxed{1} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed 7.", "7"),
    ("\\fbox{x^{2}}", "x^{2}"),
    ("no box here", None),
    ("unclosed \\boxed{1 + {2}", None),
    ("\\boxed{" * 20000, None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("<think>2+2 is 4, maybe 5</think> <answer>4</answer>", "4"),
    ("<think>..</think><answer>The result is \\boxed{-3}</answer>", "-3"),
    ("<answer> 12", "12"),  # stopped at </answer>: the close tag is missing
    ("We get 3 apples and 4 pears. The answer is 7.", "7"),
    ("The answer is 18 because she sells 9 eggs.", "18"),
    ("The answer is 18 dollars.", "18 dollars"),
    ("Therefore, the final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("She pays 5 * 2 = 10 dollars.\n#### 10", "10"),
    ("5 + 6 = 11 and then 11 * 2 = 22", "22"),
    ("costs $1,250 in total", "1,250"),
    ("the temperature is -4 degrees", "-4"),
    ("", None),
    ("no digits at all", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# --------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("raw,norm", [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\tfrac12", "\\frac{1}{2}"),
    ("\\frac34", "\\frac{3}{4}"),
    ("\\sqrt3", "\\sqrt{3}"),
    ("$10$", "10"),
    ("10\\text{ inches}", "10"),
    ("5 \\mbox{cm}^2", "5"),
    ("\\text{even}", "even"),
    ("\\text{(C)}", "C"),
    ("30^\\circ", "30"),
    ("30^{\\circ}", "30"),
    ("25\\%", "25"),
    ("1,000,000", "1000000"),
    ("1{,}000", "1000"),
    ("x = 5", "5"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("\\$18.90", "18.9"),
    (".5", "0.5"),
    ("-27.0", "-27"),
    ("1\\frac{4}{5}", "9/5"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "[1,-2]"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "[[1,2],[3,4]]"),
    ("y = 2x + 1", "y=2x+1"),  # an equation keeps its left side
    ("\\!\\,2\\;\\quad", "2"),
    ("\\cot x", "\\cot x"),
    ("x \\in [-2,7]", "[-2,7]"),
    ("(0,9) \\cup (9,36)", "(0,9)\\cup(9,36)"),
])
def test_normalize(raw, norm):
    assert normalize_answer(raw) == norm


# --------------------------------------------------------------------------- equivalence

EQUAL = [
    ("\\frac{1}{2}", "0.5"), ("\\dfrac{1}{2}", "1/2"), ("\\frac12", "\\frac{1}{2}"), ("-\\frac{3}{4}", "-0.75"),
    ("\\boxed{7}", "\\boxed{7}"), ("10\\text{ inches}", "10"), ("10 cm", "10"), ("\\$5", "5"),
    ("-3", "-3.0"), ("-3", "- 3"), ("(-\\infty, 3]", "(-\\infty,3]"), ("[2, 5)", "[2,5)"),
    ("(1, 2)", "(1,2)"), ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("1,000", "1000"), ("25\\%", "25"), ("25\\%", "0.25"), ("30^\\circ", "30"),
    ("\\sqrt{12}", "2\\sqrt{3}"), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"), ("2\\pi", "\\pi \\cdot 2"),
    ("x^2 + 2x + 1", "(x+1)^2"), ("3, 5, 7", "7, 5, 3"), ("\\{1, 2\\}", "\\{2, 1\\}"),
    ("1 \\pm \\sqrt{19}", "1 - \\sqrt{19}, 1 + \\sqrt{19}"), ("x = 5", "5"), ("y = -2x", "2x + y = 0"),
    ("\\text{(C)}", "C"), ("\\text{Even}", "even"), ("\\cot x", "\\cot(x)"), ("x \\in [-2,7]", "[-2, 7]"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty,2)\\cup(3,\\infty)"), ("(0,9) \\cup (9,36)", "(0, 9)\\cup(9, 36.0)"),
    ("(0,9) \\cup (9,36)", "(9,36) \\cup (0,9)"), ("4.5 \\times 10^{3}", "4500"), ("1\\frac{4}{5}", "1.8"),
    ("\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", "\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}"),
]

NOT_EQUAL = [
    ("\\frac{1}{2}", "0.51"), ("-3", "3"), ("(-\\infty, 3]", "(-\\infty, 3)"), ("[2, 5)", "(2, 5)"),
    ("(1, 2)", "(2, 1)"), ("1,000", "100"), ("3, 5, 7", "3, 5"), ("x^2 + 2x + 1", "(x-1)^2"),
    ("\\sqrt{12}", "3\\sqrt{2}"), ("\\text{(C)}", "D"), ("2", ""), ("7", None), ("1.1e-10", "1.2e-10"),
    ("y = -2x", "y = 2x"), ("\\{1, 2\\}", "(1, 2)"), ("\\cot x", "\\tan x"),
    ("(0,9) \\cup (9,36)", "(0,9) \\cup [9,36)"),
]


@pytest.mark.parametrize("a,b", EQUAL)
def test_equal(grader, a, b):
    assert grader.equal(a, b), (a, b, normalize_answer(a), normalize_answer(b))
    assert grader.equal(b, a), (b, a)


@pytest.mark.parametrize("a,b", NOT_EQUAL)
def test_not_equal(grader, a, b):
    assert not grader.equal(a, b), (a, b, normalize_answer(a), normalize_answer(b))


def test_hostile_answers_are_bounded_and_inert(grader, tmp_path):
    """A model answer can neither hang the grader nor run code through SymPy's parser."""
    marker = tmp_path / "pwned"
    hostile = [
        "10^{10^{10^{10}}}",
        "__import__('os').system('touch " + str(marker) + "')",
        "().__class__.__base__.__subclasses__()",
        "x" * 5000,
        "\\frac{" * 300,
        "{" * 2000 + "}" * 2000,
    ]
    assert grader.symbolic_equal("x + 1", "1 + x") is True  # a warm worker: no start-up in the budget
    t0 = time.monotonic()
    timeouts = grader.symbolic_timeouts
    assert grader.equal(hostile[0], "5") is False
    # the power tower hangs SymPy: its check is killed at the 3 s bound (2 s slack for a busy machine)
    assert grader.symbolic_timeouts == timeouts + 1
    assert time.monotonic() - t0 < grader.timeout + 2.0
    for h in hostile[1:]:
        t0, calls = time.monotonic(), grader.symbolic_calls
        assert grader.equal(h, "5") is False
        # at most one check, which may restart the killed worker (its 10 s start-up allowance)
        assert grader.symbolic_calls - calls <= 1, h[:40]
        assert time.monotonic() - t0 < grader.timeout + 10.0 + 2.0, h[:40]
    assert not marker.exists()
    assert grader.equal("2", "2.0")  # the grader still works after a killed worker


# --------------------------------------------------------------------------- real gold answers

def _perturb(ans: str) -> str | None:
    m = re.search(r"\d", ans)
    if not m:
        return None
    d = int(ans[m.start()])
    return ans[:m.start()] + str(7 if d == 0 else (d + 1) % 10) + ans[m.start() + 1:]


@pytest.mark.parametrize("task", MATH_TASKS)
def test_gold_answers_graded_correct_and_perturbed_wrong(shared_data, grader, task):
    """Each set's gold answer, written in a completion as \\boxed{gold}, is extracted and graded
    correct; the same answer with one digit changed is graded wrong. Subset unless AZR_EVAL_FULL=1."""
    probs = load_task(task, shared_data / "benchmarks")
    if os.environ.get("AZR_EVAL_FULL") != "1":
        step = max(1, len(probs) // 60)
        probs = probs[::step]
    checked = 0
    for p in probs:
        completion = f"<think>12 + 7 = 19, check.</think> Therefore the final answer is $\\boxed{{{p.answer}}}$."
        ex = extract_answer(completion)
        assert grader.equal(ex, p.answer), (task, p.id, p.answer, ex)
        q = _perturb(p.answer)
        if q is not None:
            assert not grader.equal(q, p.answer), (task, p.id, p.answer, q)
            checked += 1
    assert checked >= min(10, len(probs) // 2)


def test_gsm8k_gold_is_the_number_after_hashes(shared_data):
    probs = load_task("gsm8k", shared_data / "benchmarks", limit=5)
    assert probs[0].answer == "18"  # "Janet's ducks": 16 - 3 - 4 = 9 eggs at $2
    for p in probs:
        assert p.meta["solution"].rstrip().endswith(p.answer)
