"""Code benchmarks: answer extraction, sandbox test programs and pass@k.

Owns: reading a CRUXEval answer (an output literal or an input argument
list) out of a completion; turning a HumanEval+/MBPP+ completion into a
program; building the test code that `Executor.run_tests` runs after that
program (it returns the outputs on the base and plus inputs) and judging
those outputs on the host against the canonical solution's (EvalPlus-style
differential testing); the unbiased pass@k estimator.

Must not: execute any of this code in the evaluator process (model-written
programs and the canonical solutions only ever run inside the sandbox,
`azr.Executor`; this module builds source text and compares the literal
values that come back), or decide a verdict inside the sandbox: a program
owns its process and can forge its own run's result.

Test semantics (as EvalPlus, for comparability): for every input, the
candidate's output must equal the reference's; float outputs (or tasks with
an ``atol``) are compared with ``|out - exp| <= atol + 1e-7 * |exp|`` after a
type and length check (atol 1e-6 when the task gives 0); MBPP+ has a few
special oracles (set equality for 8 tasks, "not None" for 3, a few custom
checks) and HumanEval/32 (`find_zero`) checks ``|poly(xs, x)| <= atol``.
One deliberate difference: two NaNs compare equal.
"""
from __future__ import annotations

import ast
import math
import re
import warnings
from typing import Sequence

__all__ = [
    "extract_code",
    "build_program",
    "sanitize_code",
    "build_output_code",
    "judge_outputs",
    "extract_crux_answer",
    "pass_at_k",
]


# --------------------------------------------------------------------------- pass@k

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    Computed as a product (no huge binomials). Requires 0 <= c <= n and 1 <= k <= n.
    """
    if not (0 <= c <= n) or k < 1 or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


# --------------------------------------------------------------------------- answers

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|$)", re.S)


def _strip_think(text: str) -> str:
    """Drop a leading reasoning section (``<think>...</think>``) when it is closed."""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    return text


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """The code a completion proposes.

    Prefers the fenced block (```python) that defines ``entry_point``, then
    the last fenced python block, then any fenced block; inside ``<answer>``
    tags when present. Without fences the text itself (up to a closing tag).
    """
    text = _strip_think(completion or "")
    m = re.findall(r"<answer>(.*?)(?:</answer>|$)", text, flags=re.S)
    if m and m[-1].strip():
        text = m[-1]
    blocks = _FENCE_RE.findall(text)
    if blocks:
        if entry_point:
            pat = re.compile(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", re.M)
            for lang, body in reversed(blocks):
                if pat.search(body):
                    return body
        py = [b for lang, b in blocks if lang.lower() in ("python", "py", "python3", "")]
        return (py or [b for _, b in blocks])[-1]
    return text.split("</answer>")[0]


_KEEP_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)


def sanitize_code(code: str) -> str:
    """Keep the definitions of a model's code, drop its example usage.

    Top-level imports, functions, classes and assignments stay; calls, prints,
    asserts, loops and ``if __name__ == "__main__":`` blocks go (as EvalPlus's
    sanitizer does), so a correct function is not failed by a wrong example
    or an ``input()`` call. Code that does not parse is returned unchanged (the
    sandbox reports the syntax error). Only parses: never runs anything.
    """
    if len(code) > 200_000:
        return code
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" in the model's regexes
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    lines = code.splitlines()
    keep: list[str] = []
    for node in tree.body:
        if not isinstance(node, _KEEP_NODES):
            continue
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        keep.append("\n".join(lines[start - 1:node.end_lineno]))
    return "\n".join(keep) + "\n" if keep else code


def build_program(problem_prompt: str, completion: str, entry_point: str, dataset: str) -> str:
    """The full program to test for one completion.

    If the extracted code defines ``entry_point`` it is the program, after the
    problem's prompt (for HumanEval the prompt holds imports and helper
    functions, and a later ``def`` overrides the prompt's stub; for MBPP it is
    a docstring), with its example usage removed (`sanitize_code`). Otherwise the completion is taken as the continuation of the
    prompt (base models completing a function body).
    """
    code = extract_code(completion, entry_point)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        return problem_prompt.rstrip() + "\n\n" + sanitize_code(code).strip("\n") + "\n"
    if dataset == "humaneval":
        return problem_prompt + completion.split("</answer>")[0]
    return problem_prompt.rstrip() + "\n\n" + code.strip("\n") + "\n"


def _literal_text(text: str) -> str:
    t = text.strip()
    t = re.sub(r"^\s*(?:output|input|answer)\s*[:=]\s*", "", t, flags=re.I)
    return t.strip().strip("`").strip()


def _split_assert(t: str, task: str) -> str | None:
    """From ``assert f(X) == Y`` take Y (output task) or X (input task)."""
    m = re.match(r"^\s*assert\s+(.*)$", t, re.S)
    body = m.group(1) if m else t
    if not re.match(r"^\s*f\s*\(", body):
        return None
    if len(body) > 100_000:
        return None
    try:
        tree = ast.parse(body.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    node = tree.body
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
        call, rhs = node.left, node.comparators[0]
    elif isinstance(node, ast.Call):
        call, rhs = node, None
    else:
        return None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"):
        return None
    src = body.strip()
    if task == "cruxeval-o":
        return ast.get_source_segment(src, rhs) if rhs is not None else None
    parts = [ast.get_source_segment(src, a) for a in call.args]
    parts += [f"{kw.arg}={ast.get_source_segment(src, kw.value)}" for kw in call.keywords if kw.arg]
    if any(p is None for p in parts):
        return None
    return ", ".join(parts)


def extract_crux_answer(completion: str, task: str) -> str | None:
    """The CRUXEval answer in a completion: an output literal (cruxeval-o) or an argument list (cruxeval-i).

    Looks, in order, at the last ``<answer>`` block, ``[ANSWER]...[/ANSWER]``,
    the last fenced block that does not define a function (an echo of the
    program), then the last non-empty line. ``assert f(x) == y``
    and ``f(x)`` forms are reduced to the wanted part.
    """
    if task not in ("cruxeval-i", "cruxeval-o"):
        raise ValueError(f"task must be cruxeval-i or cruxeval-o, got {task!r}")
    text = _strip_think(completion or "")
    cand = None
    tags = re.findall(r"<answer>(.*?)(?:</answer>|$)", text, flags=re.S)
    if tags:
        cand = tags[-1]  # may be empty: f() takes no arguments
    else:
        tags = re.findall(r"\[ANSWER\](.*?)(?:\[/ANSWER\]|$)", text, flags=re.S)
        if tags:
            cand = tags[-1]
    if cand is None:
        # A fenced block that defines a function is the model echoing the
        # program, not its answer: skip those and look further.
        blocks = [b for b in _FENCE_RE.findall(text) if not re.search(r"^\s*def\s", b[1], flags=re.M)]
        if blocks and blocks[-1][1].strip():
            cand = blocks[-1][1]
    if cand is None:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        if not lines:
            return None
        cand = lines[-1]
        # prose such as "The output is `[1, 2]`.": the last inline code span is the answer
        spans = re.findall(r"`([^`\n]+)`", cand)
        if spans and not re.match(r"^\s*`[^`]*`\s*$", cand):
            cand = spans[-1]
    blocks = _FENCE_RE.findall(cand)
    if blocks:
        cand = blocks[-1][1]
    t = _literal_text(cand)
    if not t:
        return "" if task == "cruxeval-i" and tags else None
    split = _split_assert(t, task)
    if split is not None:
        return split.strip()
    if task == "cruxeval-i":
        m = re.match(r"^\s*f\s*\((.*)\)\s*$", t, re.S)
        if m:
            return m.group(1).strip()
    return t


# --------------------------------------------------------------------------- EvalPlus-style tests

_MBPP_SET_EQ = ("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
                "intersection_array", "find_dissimilar", "Diff")
_MBPP_NOT_NONE = ("check_str", "text_match_three", "text_starta_endb")

# The test code runs inside the sandbox after the program, in its namespace:
# check(candidate) calls the entry point on a deep copy of each input and
# returns the outputs, which the host judges (judge_outputs) against the
# reference's outputs from a run of its own. No verdict is decided inside
# the sandbox: a program can write its own run's result frame (it owns the
# process), but that only ever gives its own outputs, never a pass.
# Names start with _azr_ so they do not collide with the program's.
# `%(...)s` fields are filled by build_output_code.
_OUTPUT_TEMPLATE = r"""
import copy as _azr_copy
import sys as _azr_sys
nan = float("nan")
inf = float("inf")
_AZR_INPUTS = %(inputs)s
_AZR_FOUND_OR_NOT = %(found_or_not)r
_AZR_LITERAL = (type(None), bool, int, float, complex, str, bytes)
_AZR_LARGE = %(large)d


def _azr_large(x):
    # Whether x's literal form is over about _AZR_LARGE bytes (counting stops there).
    stack, n = [x], 0
    while stack:
        y = stack.pop()
        if isinstance(y, (str, bytes)):
            n += len(y) + 3
        elif isinstance(y, dict):
            n += 2 + 2 * len(y)
            if n > _AZR_LARGE:
                return True
            stack.extend(y.keys())
            stack.extend(y.values())
        elif isinstance(y, (list, tuple, set, frozenset)):
            n += 2 + len(y)
            if n > _AZR_LARGE:
                return True
            stack.extend(y)
        else:
            n += 24
        if n > _AZR_LARGE:
            return True
    return False


def _azr_canon(x, h, depth=0):
    # A digest input that is equal for values == calls equal: numbers by
    # value (True == 1 == 1.0), sets and dicts whatever their order, set
    # and frozenset alike; lists and tuples apart, as == keeps them.
    import hashlib
    if isinstance(x, bool) or (isinstance(x, float) and x.is_integer()):
        x = int(x)
    if isinstance(x, (type(None), int, float, complex, str, bytes)):
        h.update(repr(x).encode("utf-8", "surrogatepass") + b",")
    elif isinstance(x, (list, tuple)):
        h.update(b"[" if isinstance(x, list) else b"(")
        for i in x:
            _azr_canon(i, h, depth + 1)
        h.update(b"]")
    elif isinstance(x, (set, frozenset, dict)):
        parts = []
        for k in x:
            g = hashlib.sha256()
            _azr_canon(k, g, depth + 1)
            if isinstance(x, dict):
                _azr_canon(x[k], g, depth + 1)
            parts.append(g.digest())
        h.update((b"{" if isinstance(x, dict) else b"<") + b"".join(sorted(parts)) + b">")
    else:
        h.update(("<%%s %%r>" %% (type(x).__name__, repr(x)[:1000])).encode("utf-8", "surrogatepass"))


class _AzrSink:
    def write(self, s):
        return len(s)

    def flush(self):
        pass


def _azr_value(x, depth=0):
    # What the sandbox's literal-only encoder carries: anything else is
    # replaced by its type name and repr (equal only to the same text). A
    # large output is replaced by a digest (it would not fit the result).
    if depth == 0 and _azr_large(x):
        import hashlib
        h = hashlib.sha256()
        _azr_canon(x, h)
        return ("<azr:digest>", h.hexdigest())
    if isinstance(x, _AZR_LITERAL):
        return x
    for kind in (list, tuple, set, frozenset):  # subclasses as their base (equal as before)
        if depth < 64 and isinstance(x, kind):
            return kind(_azr_value(i, depth + 1) for i in x)
    if depth < 64 and isinstance(x, dict):
        return {_azr_value(k, depth + 1): _azr_value(v, depth + 1) for k, v in x.items()}
    return ("<azr:unencodable>", type(x).__name__, repr(x)[:1000])


def check(candidate):
    outs = []
    stdout, stderr = _azr_sys.stdout, _azr_sys.stderr
    for inp in _AZR_INPUTS:
        _azr_sys.stdout = _azr_sys.stderr = _AzrSink()
        try:
            out = candidate(*_azr_copy.deepcopy(inp))
        finally:
            _azr_sys.stdout, _azr_sys.stderr = stdout, stderr
        if _AZR_FOUND_OR_NOT:
            # the reference returns a match object or None: only "found or not" counts
            out = out if isinstance(out, bool) else out is not None
        outs.append(_azr_value(out))
    return outs
"""


# An output whose literal form is over this many bytes comes back as a
# digest: HumanEval+ has plus inputs whose outputs add up to ~150 MB. Such
# outputs are compared exactly (numbers by value), without a float tolerance.
LARGE_OUTPUT = 16 << 10


def build_output_code(entry_point: str, inputs: Sequence[Sequence[object]], *, dataset: str) -> str:
    """Test code for ``Executor.run_tests(..., entry_points=[entry_point])``:
    its ``check(candidate)`` returns the entry point's outputs on ``inputs``
    (a list, one per input: the run's value), to be judged on the host by
    `judge_outputs` against the reference's outputs from the same code.

    ``dataset`` is "humaneval" or "mbpp" (the three MBPP+ regex tasks keep
    only whether something was found). An exception on any input ends the
    run with its error. Outputs over `LARGE_OUTPUT` bytes come back as a
    digest that is equal for outputs == finds equal.
    """
    if dataset not in ("humaneval", "mbpp"):
        raise ValueError(f"dataset must be 'humaneval' or 'mbpp', got {dataset!r}")
    rows = ",\n    ".join("[" + ", ".join(_py_literal(a) for a in inp) + "]" for inp in inputs)
    return _OUTPUT_TEMPLATE % {
        "inputs": "[\n    " + rows + "\n]" if rows else "[]",
        "found_or_not": dataset == "mbpp" and entry_point in _MBPP_NOT_NONE,
        "large": LARGE_OUTPUT,
    }


def _is_floats(x: object) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _close(out: object, exp: object, atol: float) -> bool:
    if isinstance(exp, (list, tuple)):
        if not isinstance(out, (list, tuple)) or len(out) != len(exp):
            return False
        return all(_close(o, e, atol) for o, e in zip(out, exp))
    if isinstance(exp, bool) or isinstance(out, bool):
        return out == exp
    if isinstance(exp, (int, float)) and isinstance(out, (int, float)):
        if math.isnan(exp) and math.isnan(out):
            return True
        if math.isinf(exp) or math.isinf(out):
            return out == exp
        return abs(out - exp) <= atol + 1e-07 * abs(exp)
    return out == exp


def _nan_eq(a: object, b: object) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _poly(xs: Sequence[float], x: float) -> float:
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _surface_area(base_edge: float, height: float) -> float:
    slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)


def _digit_distance(a: int, b: int) -> int:
    sa, sb = str(a), str(b)
    n = max(len(sa), len(sb))
    return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(n), sb.zfill(n)))


def _output_ok(entry: str, dataset: str, atol: float, inp: Sequence[object], out: object, exp: object) -> bool:
    """One input's verdict (EvalPlus's rules; see the module doc)."""
    ok = out == exp or _nan_eq(out, exp)
    if dataset == "mbpp":
        if entry == "are_equivalent":
            ok = True
        elif entry == "sum_div":
            ok = ok or out == 0
        elif entry == "surface_Area":
            ok = ok or abs(out - _surface_area(*inp)) <= atol
        elif entry == "digit_distance_nums":
            ok = ok or out == _digit_distance(*inp)
        elif entry in _MBPP_SET_EQ:
            ok = set(out) == set(exp)
    if dataset == "humaneval" and entry == "find_zero":
        return bool(abs(_poly(*inp, out)) <= atol)
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not ok and atol != 0:
        ok = type(out) == type(exp) and _close(out, exp, atol)
    return bool(ok)


def judge_outputs(entry_point: str, inputs: Sequence[Sequence[object]], outputs: object,
                  expected: Sequence[object], *, dataset: str, atol: float = 0.0, label: str = "test") -> str:
    """Judge a candidate's outputs (the value of its `build_output_code` run)
    on the host against the reference's: "" when every input passes, else
    what failed first. ``outputs`` comes from the candidate's run and may be
    any decoded literal; only a list with one output per input can pass (a
    comparison that raises is a wrong output)."""
    if not isinstance(outputs, list) or len(outputs) != len(inputs) or len(expected) != len(inputs):
        return f"{entry_point}: expected {len(inputs)} outputs, the run returned {type(outputs).__name__}"
    for i, (inp, out, exp) in enumerate(zip(inputs, outputs, expected)):
        try:
            ok = _output_ok(entry_point, dataset, float(atol), inp, out, exp)
        except (TypeError, ValueError, ArithmeticError, RecursionError):
            ok = False
        if not ok:
            return f"{entry_point}: wrong output on {label} input #{i}: {repr(inp)[:200]}"
    return ""


def _py_literal(v: object) -> str:
    """Python source for an input value (repr, with nan/inf named by the test preamble)."""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_py_literal(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + "".join(_py_literal(x) + ", " for x in v) + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_py_literal(k)}: {_py_literal(x)}" for k, x in v.items()) + "}"
    if isinstance(v, set):
        return "{" + ", ".join(_py_literal(x) for x in v) + "}" if v else "set()"
    if isinstance(v, complex):
        return f"complex({_py_literal(v.real)}, {_py_literal(v.imag)})"
    if v is None or isinstance(v, (bool, int, str, bytes)):
        return repr(v)
    raise TypeError(f"unsupported input value of type {type(v).__name__}")
