"""Symbolic equivalence of two normalised math answers, run in a child process.

Owns: turning a normalised LaTeX-ish answer into a SymPy expression (without
``eval`` on free text: the string is checked against a whitelist first) and
deciding whether two such expressions are equal, either symbolically or
numerically.

Must not: be imported by the evaluator for its side effects. The grader runs
this file as a separate script (``python _sympy_worker.py``) and talks to it
over stdin/stdout, one JSON object per line, so a model-written answer that
makes SymPy run forever or eat memory only costs a killed child process.
It deliberately imports nothing from azr.

Protocol: request ``{"a": str, "b": str}``; reply ``{"eq": true|false|null}``
(null: could not parse or decide).
"""
from __future__ import annotations

import json
import re
import sys

_FUNCS = {
    "sqrt", "log", "ln", "exp", "sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan",
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "pi", "oo", "E", "I", "abs", "Abs",
}
_GREEK = {"alpha", "beta", "gamma", "delta", "theta", "phi", "lambda", "mu", "sigma", "omega", "tau", "rho", "epsilon"}
_ALLOWED_CHARS = re.compile(r"^[0-9A-Za-z+\-*/().,\s]*$")


def _brace_arg(s: str, i: int) -> tuple[str, int]:
    """The {...} group (or single char) starting at s[i]; returns (content, index after)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise ValueError("missing argument")
    if s[i] != "{":
        return s[i], i + 1
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1:j], j + 1
    raise ValueError("unbalanced braces")


def latex_to_sympy_text(s: str) -> str:
    """Rewrite the LaTeX constructs answers use into SymPy's input syntax."""
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\,", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    out = []
    i = 0
    while i < len(s):
        if s.startswith("\\frac", i):
            a, j = _brace_arg(s, i + 5)
            b, j = _brace_arg(s, j)
            out.append(f"(({latex_to_sympy_text(a)})/({latex_to_sympy_text(b)}))")
            i = j
        elif s.startswith("\\sqrt", i):
            j = i + 5
            n = None
            if j < len(s) and s[j] == "[":
                k = s.index("]", j)
                n, j = s[j + 1:k], k + 1
            a, j = _brace_arg(s, j)
            a = latex_to_sympy_text(a)
            out.append(f"sqrt({a})" if n is None else f"(({a})**(1/({latex_to_sympy_text(n)})))")
            i = j
        elif s[i] == "\\":
            m = re.match(r"\\([A-Za-z]+)", s[i:])
            if not m:
                i += 1
                continue
            name = m.group(1)
            rep = {"cdot": "*", "times": "*", "div": "/", "pi": " pi ", "infty": " oo ", "ln": " log",
                   "log": " log", "exp": " exp"}.get(name)
            if rep is None:
                rep = f" {name} " if name in _FUNCS or name in _GREEK else None
            if rep is None:
                raise ValueError(f"unsupported command \\{name}")
            out.append(rep)
            i += len(name) + 1
        elif s[i] == "^":
            a, j = _brace_arg(s, i + 1)
            out.append(f"**({latex_to_sympy_text(a)})")
            i = j
        elif s[i] in "{}":
            out.append("(" if s[i] == "{" else ")")
            i += 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _parse(text: str):
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    t = latex_to_sympy_text(text)
    if len(t) > 400 or not _ALLOWED_CHARS.match(t):
        raise ValueError("not a plain expression")
    if re.search(r"\.(?!\d)", t) or "__" in t:
        raise ValueError("attribute access")
    def _split(m: "re.Match[str]") -> str:
        w = m.group(0)
        if w in _FUNCS or w in _GREEK or len(w) == 1:
            return w
        if len(w) > 6:
            raise ValueError(f"unknown name {w}")
        return " ".join(w)  # "ab" is the product a*b

    t = re.sub(r"[A-Za-z]+", _split, t)
    trans = standard_transformations + (implicit_multiplication_application, convert_xor)
    return parse_expr(t, transformations=trans, local_dict={"ln": __import__("sympy").log,
                                                              "E": __import__("sympy").E,
                                                              "e": __import__("sympy").E})


def sympy_equal(a: str, b: str) -> bool | None:
    import sympy

    try:
        ea, eb = _parse(a), _parse(b)
    except Exception:
        return None
    try:
        if sympy.simplify(ea - eb) == 0:
            return True
    except Exception:
        pass
    try:
        va, vb = complex(sympy.N(ea, 30)), complex(sympy.N(eb, 30))
        return abs(va - vb) <= 1e-6 * max(1.0, abs(vb))
    except Exception:
        return False


def main() -> None:
    for line in sys.stdin:
        try:
            req = json.loads(line)
            eq = sympy_equal(str(req["a"]), str(req["b"]))
        except Exception:
            eq = None
        sys.stdout.write(json.dumps({"eq": eq}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
