"""Math answers: final-answer extraction, normalisation and equivalence.

Owns: pulling the final answer out of a model completion (``<answer>`` tags,
the last ``\\boxed{...}`` with nested braces, "the answer is ...", GSM8K's
``#### x``, else the last number); normalising LaTeX answers (``\\frac`` /
``\\dfrac``, ``\\sqrt``, ``\\text{}`` and units, degrees, percentages,
thousands separators, spacing); deciding equivalence: exact after
normalisation, numeric, element-wise for tuples / intervals / matrices, and
symbolic with SymPy in a child process under a time bound.

Must not: call SymPy (or ``eval``) on model text in this process: a hostile
answer such as ``10^{10^{10}}`` would hang or exhaust the evaluator. All SymPy
work goes to `_sympy_worker.py`, run as a separate process that is killed when
it exceeds the time limit. No global state: a `MathGrader` owns its worker.
"""
from __future__ import annotations

import json
import math
import os
import re
import select
import subprocess
import sys
from fractions import Fraction

__all__ = [
    "extract_boxed",
    "extract_answer",
    "normalize_answer",
    "MathGrader",
    "math_equal",
]

_MAX_ANSWER_CHARS = 1000

# --------------------------------------------------------------------------- extraction


def _matching_brace(s: str, i: int) -> int:
    """Index of the '}' closing the '{' at s[i], or -1."""
    depth = 0
    for j in range(i, len(s)):
        c = s[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces), or None.

    ``\\boxed 5`` (no braces) gives ``5``. An unclosed box gives None.
    """
    if not text:
        return None
    starts = [m.start() for m in re.finditer(r"\\(?:boxed|fbox)\b", text)]
    for st in reversed(starts[-8:]):  # the last few only: bounded work on hostile text
        k = text.index("\\", st) + (6 if text.startswith("\\boxed", st) else 5)
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            end = _matching_brace(text, k)
            if end >= 0:
                return text[k + 1:end].strip()
            continue
        m = re.match(r"[^\s$]+", text[k:])
        if m:
            return m.group(0).rstrip(".")
    return None


_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def _last_number(text: str) -> str | None:
    nums = _NUM_RE.findall(text)
    for n in reversed(nums):
        n = n.rstrip(",")
        if n and n not in ("-",):
            return n
    return None


def extract_answer(text: str, *, fallback_last_number: bool = True) -> str | None:
    """The final answer written in a completion, or None.

    Order: the last ``<answer>...</answer>`` (an unclosed final ``<answer>``
    counts; a box inside it wins), the last ``\\boxed{}``, "the (final) answer
    is X", GSM8K's ``#### X``, and finally the last number in the text.
    """
    if not text:
        return None
    text = text[-20000:]  # the answer is at the end; bounds the regex work
    tags = re.findall(r"<answer>(.*?)(?:</answer>|$)", text, flags=re.S)
    if tags:
        inner = tags[-1].strip()
        boxed = extract_boxed(inner)
        if boxed is not None:
            return boxed
        if inner:
            return inner.strip().strip("$").strip()
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    m = None
    for m in re.finditer(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", text,
                         flags=re.I | re.S):
        pass
    if m is not None:
        ans = m.group(1).strip().strip("$").strip()
        # "The answer is 18 because ...": a number followed by prose is the number
        lead = re.match(r"^\$?\s*(-?\d[\d,]*(?:\.\d+)?)\s+(?:[A-Za-z]+\s+){2,}", ans + " ")
        if lead:
            return lead.group(1)
        if ans:
            return ans
    m2 = re.findall(r"####\s*(.+)", text)
    if m2:
        return m2[-1].strip()
    return _last_number(text) if fallback_last_number else None


# --------------------------------------------------------------------------- normalisation

_UNIT_WORDS = (
    "degrees?", "radians?", "units?", "square", "sq", "cubic", "inches", "inch", "in", "feet", "foot", "ft",
    "yards?", "miles?", "mph", "meters?", "metres?", "m", "cm", "mm", "km", "kg", "g", "grams?", "pounds?",
    "lbs?", "ounces?", "oz", "dollars?", "cents?", "hours?", "hrs?", "minutes?", "mins?", "seconds?", "secs?",
    "s", "days?", "weeks?", "months?", "years?", "people", "students?", "points?", "liters?", "litres?", "ml",
    "gallons?", "cups?", "percent", "sq\\.?\\s*units", "mm\\^2", "cm\\^2", "m\\^2", "cm\\^3", "m\\^3",
)
_UNIT_RE = re.compile(r"(?<=[\d}\s.])\s*(?:(?:" + "|".join(_UNIT_WORDS) + r")(?:\^\{?\d\}?)?\s*)+$")


def _unwrap_command(s: str, name: str) -> str:
    """Replace every ``\\name{X}`` by ``X`` (nested braces respected)."""
    out = []
    i = 0
    tok = "\\" + name
    while True:
        j = s.find(tok, i)
        if j < 0:
            out.append(s[i:])
            break
        k = j + len(tok)
        if k < len(s) and s[k].isalpha():  # a longer command, e.g. \textbf vs \text
            out.append(s[i:k])
            i = k
            continue
        while k < len(s) and s[k] == " ":
            k += 1
        if k < len(s) and s[k] == "{":
            end = _matching_brace(s, k)
            if end < 0:
                out.append(s[i:])
                break
            out.append(s[i:j])
            out.append(s[k + 1:end])
            i = end + 1
        else:
            out.append(s[i:k])
            i = k
    return "".join(out)


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``; ``\\frac1{x}`` -> ``\\frac{1}{x}``."""
    parts = s.split("\\frac")
    out = parts[0]
    for p in parts[1:]:
        out += "\\frac"
        if p[:1] == "{":
            end = _matching_brace(p, 0)
            if end < 0:
                out += p
                continue
            a, rest = p[:end + 1], p[end + 1:]
        elif p:
            a, rest = "{" + p[0] + "}", p[1:]
        else:
            continue
        if rest[:1] == "{" or not rest:
            out += a + rest
        else:
            out += a + "{" + rest[0] + "}" + rest[1:]
    return out


def _fix_sqrt(s: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}``."""
    return re.sub(r"\\sqrt\s*(?![{\[])(\w)", r"\\sqrt{\1}", s)


def _matrix_to_brackets(s: str) -> str:
    def rep(m: re.Match) -> str:
        rows = [r.strip() for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        cells = [[c.strip() for c in r.split("&")] for r in rows]
        if all(len(r) == 1 for r in cells):  # column vector -> a flat tuple
            return "[" + ",".join(r[0] for r in cells) + "]"
        return "[" + ",".join("[" + ",".join(r) + "]" for r in cells) + "]"

    return re.sub(r"\\begin\{([pbvB]?matrix)\}(.*?)\\end\{\1\}", rep, s, flags=re.S)


def normalize_answer(ans: str | None) -> str:
    """Canonical text of a math answer, for string comparison.

    Removes ``$``, LaTeX spacing, ``\\left``/``\\right``, ``\\displaystyle``,
    ``\\text{}``-style wrappers, trailing units, degree marks, ``%``, thousands
    separators and a leading ``x =``; rewrites ``\\dfrac``/``\\tfrac`` to
    ``\\frac`` and ``\\frac12`` to ``\\frac{1}{2}``; turns matrices into nested
    brackets; drops spaces. None gives "".
    """
    if ans is None:
        return ""
    s = str(ans)[:_MAX_ANSWER_CHARS].strip()
    s = s.replace("\n", " ").replace("\\$", "").replace("$", "")
    s = _matrix_to_brackets(s)
    s = re.sub(r"(?<!\\)\\(?:!|,|;|:| |quad|qquad)", " ", s).replace("~", " ")
    s = s.replace("\\displaystyle", "").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\lbrace", "\\{").replace("\\rbrace", "\\}")
    for cmd in ("textbf", "textit", "mathrm", "mathbf", "mathit", "operatorname", "mbox", "text", "mathbb"):
        s = _unwrap_command(s, cmd)
    # degrees / percentages
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s).replace("°", "").replace("\\circ", "")
    s = s.replace("\\%", "").replace("%", "")
    s = s.strip()
    # trailing units ("10 inches", "5 cm^2"); never the whole answer
    stripped = _UNIT_RE.sub("", s).strip()
    if stripped and stripped != s and re.search(r"[\d}]", stripped):
        s = stripped
    s = re.sub(r"\s*\\(?:degree|deg)s?\b", "", s)
    s = re.sub(r"^\s*[A-Za-z]\s*\\in\s*", "", s)  # "x \in [-2, 7]" -> "[-2, 7]"
    # "x = 5", "k=3" -> "5" (a short left side that is a name, not an equation like y = 2x)
    m = re.match(r"^\s*([A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*=\s*(.+)$", s)
    if m and "=" not in m.group(2) and not re.search(r"[A-Za-z]", m.group(2).replace("\\frac", "")
                                                          .replace("\\sqrt", "").replace("\\pi", "")
                                                          .replace("\\infty", "")):
        s = m.group(2)
    s = s.strip().rstrip(".").strip()
    # 1{,}000 / 1\,000 / 1,000 -> 1000 (only for a plain number)
    s = s.replace("{,}", ",")
    if re.fullmatch(r"-?\d{1,3}(?:[, ]\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "").replace(" ", "")
    s = _fix_sqrt(_fix_fracs(s))
    # mixed numbers in MATH style: 1\frac{4}{5} = 1 + 4/5
    s = re.sub(r"^(-?)(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}$",
               lambda m: m.group(1) + str(Fraction(int(m.group(2))) + Fraction(int(m.group(3)), int(m.group(4))))
               if int(m.group(4)) != 0 else m.group(0), s)
    # drop spaces, but keep the one that separates a command from a name: \cot x is not \cotx
    s = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z0-9])", "\\1\x00", s)
    s = s.replace(" ", "").replace("\x00", " ")
    s = s.replace("\\infty", "\\infty").replace("infinity", "\\infty").replace("∞", "\\infty")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"^\((\w)\)$", r"\1", s)  # "(C)" -> "C" (multiple choice)
    if re.fullmatch(r"-?\d+\.\d*?0+", s):  # 2.50 -> 2.5, 27.0 -> 27
        s = s.rstrip("0").rstrip(".")
    return s


# --------------------------------------------------------------------------- numbers


def _to_number(s: str) -> float | None:
    """A plain numeric value of a normalised answer (int, decimal, a/b, \\frac{a}{b}, 1e5, a\\times10^{b}); else None."""
    if not s or len(s) > 60:
        return None
    t = s
    neg = False
    if t.startswith("-"):
        neg, t = True, t[1:]
    elif t.startswith("+"):
        t = t[1:]
    m = re.fullmatch(r"\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}", t) or re.fullmatch(
        r"(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", t)
    try:
        if m:
            den = float(m.group(2))
            if den == 0:
                return None
            v = float(m.group(1)) / den
        else:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)(?:\\times|\*|\\cdot)10\^\{?(-?\d{1,3})\}?", t)
            if m:
                v = float(m.group(1)) * 10.0 ** int(m.group(2))
            elif re.fullmatch(r"\d+(?:\.\d+)?(?:[eE][-+]?\d{1,3})?", t):
                v = float(t)
            else:
                return None
    except (ValueError, OverflowError):
        return None
    return -v if neg else v


def _num_close(a: float, b: float, rel: float = 1e-4) -> bool:
    if math.isnan(a) or math.isnan(b):
        return False
    if a == 0 or b == 0:
        return abs(a - b) <= 1e-9
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


# --------------------------------------------------------------------------- structure

_OPEN = "([{"
_CLOSE = ")]}"


def _split_top(s: str, sep: str = ",") -> list[str]:
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _outer_brackets(s: str) -> tuple[str, str, str] | None:
    """(open, inner, close) when s is wrapped in one matching bracket pair (intervals may mix)."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "{", s[2:-2], "}"
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None
    return s[0], s[1:-1], s[-1]


def _expand_pm(s: str) -> list[str]:
    if "\\pm" not in s:
        return [s]
    return [s.replace("\\pm", "+", 1), s.replace("\\pm", "-", 1)]


class MathGrader:
    """Decides whether a predicted math answer equals the gold one.

    ``timeout`` bounds each symbolic check (seconds). SymPy runs in a child
    process started on first need and killed when it overruns; use the grader
    as a context manager (or call `close`) to stop it. Not thread-safe: use one
    grader per thread.
    """

    def __init__(self, timeout: float = 5.0, memory_mb: int = 2048) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self._proc: subprocess.Popen | None = None
        self.symbolic_calls = 0
        self.symbolic_timeouts = 0

    # -- worker management
    def _start(self) -> subprocess.Popen:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sympy_worker.py")
        limit = self.memory_mb * 1024 * 1024

        def _limits() -> None:  # runs in the child before exec
            try:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            except (ImportError, ValueError, OSError):
                pass

        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH")}
        env["OMP_NUM_THREADS"] = "1"
        return subprocess.Popen([sys.executable, "-u", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env,
                                preexec_fn=_limits if os.name == "posix" else None)

    def close(self) -> None:
        """Stop the SymPy worker (idempotent)."""
        p, self._proc = self._proc, None
        if p is not None:
            try:
                p.kill()
            except OSError:
                pass
            p.wait()
            for f in (p.stdin, p.stdout):
                try:
                    if f:
                        f.close()
                except OSError:
                    pass

    def __enter__(self) -> "MathGrader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def symbolic_equal(self, a: str, b: str) -> bool | None:
        """SymPy's verdict on two normalised answers; None when undecided or over time."""
        self.symbolic_calls += 1
        # the first call also pays for starting Python and importing SymPy
        budget = self.timeout + (10.0 if self._proc is None else 0.0)
        for attempt in range(2):
            if self._proc is None or self._proc.poll() is not None:
                self.close()
                self._proc = self._start()
            p = self._proc
            try:
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write(json.dumps({"a": a, "b": b}) + "\n")
                p.stdin.flush()
                ready, _, _ = select.select([p.stdout], [], [], budget)
                if not ready:
                    self.symbolic_timeouts += 1
                    self.close()
                    return None
                line = p.stdout.readline()
                if not line:
                    raise BrokenPipeError("worker exited")
                return json.loads(line).get("eq")
            except (BrokenPipeError, OSError, ValueError):
                self.close()  # e.g. killed by its memory limit; retry once on a fresh worker
                budget = self.timeout + 10.0
        return None

    # -- equivalence
    def equal(self, pred: str | None, gold: str | None) -> bool:
        """True when ``pred`` is the same answer as ``gold`` (see module doc)."""
        if pred is None or gold is None:
            return False
        a, b = normalize_answer(pred), normalize_answer(gold)
        if not a or not b:
            return False
        return self._equal_norm(a, b, pred, gold, depth=0)

    def _equal_norm(self, a: str, b: str, raw_a: str, raw_b: str, depth: int) -> bool:
        if a == b:
            return True
        if a.lower() == b.lower() and re.fullmatch(r"[a-z]+", a.lower()):
            return True  # "Even" vs "even"
        na, nb = _to_number(a), _to_number(b)
        if na is not None and nb is not None:
            if _num_close(na, nb):
                return True
            pa, pb = "%" in (raw_a or ""), "%" in (raw_b or "")
            if pa != pb and (_num_close(na, nb * 100) or _num_close(na * 100, nb)):
                return True  # "25%" vs "0.25"
            return False
        if depth > 3:
            return False
        if "\\cup" in a or "\\cup" in b:  # unions of intervals, part by part, in any order
            return self._equal_lists(a.split("\\cup"), b.split("\\cup"), depth, ordered=False)
        if "\\pm" in a or "\\pm" in b:  # 1 \pm \sqrt{2} is the list of both values
            a = ",".join(_expand_pm(a))
            b = ",".join(_expand_pm(b))
        # tuples, intervals, lists, matrices, sets
        oa, ob = _outer_brackets(a), _outer_brackets(b)
        if oa and ob:
            if oa[0] == "{" or ob[0] == "{":  # sets: order-free
                if oa[0] != ob[0]:
                    return False
                return self._equal_lists(_split_top(oa[1]), _split_top(ob[1]), depth, ordered=False)
            if (oa[0], oa[2]) != (ob[0], ob[2]):
                return False  # (1,2] is not [1,2]
            ea, eb = _split_top(oa[1]), _split_top(ob[1])
            if len(ea) > 1 or len(eb) > 1:
                return self._equal_lists(ea, eb, depth, ordered=True)
        elif oa or ob:
            o = oa or ob
            other = b if oa else a
            if o[0] == "(" and o[2] == ")" and "," in o[1]:
                e1, e2 = _split_top(o[1]), _split_top(other)
                if len(e1) == len(e2) > 1:
                    return self._equal_lists(e1, e2, depth, ordered=True)
        else:
            ea, eb = _split_top(a), _split_top(b)
            if len(ea) > 1 or len(eb) > 1:  # "3, 5, 7": a list of answers, order-free
                return self._equal_lists(ea, eb, depth, ordered=False)
        # equations: both sides compared as "lhs - rhs", up to sign
        if a.count("=") == 1 and b.count("=") == 1:
            la, ra = a.split("=")
            lb, rb = b.split("=")
            if not (la and ra and lb and rb):
                return False
            da, db = f"{la}-({ra})", f"{lb}-({rb})"
            if self._symbolic(da, db) or self._symbolic(da, f"-({db})"):
                return True
            return False
        if "=" in a or "=" in b:
            return False
        return bool(self._symbolic(a, b))

    def _equal_lists(self, ea: list[str], eb: list[str], depth: int, ordered: bool) -> bool:
        ea = [x.strip() for x in ea]
        eb = [x.strip() for x in eb]
        if len(ea) != len(eb) or not all(ea) or not all(eb):
            return False
        if ordered:
            return all(self._equal_norm(x, y, x, y, depth + 1) for x, y in zip(ea, eb))
        used = [False] * len(eb)
        for x in ea:
            for j, y in enumerate(eb):
                if not used[j] and self._equal_norm(x, y, x, y, depth + 1):
                    used[j] = True
                    break
            else:
                return False
        return True

    def _symbolic(self, a: str, b: str) -> bool:
        # only things that look like math go to SymPy (not words such as "even")
        for s in (a, b):
            if len(s) > 300 or re.search(r"[A-Za-z]{7,}", s.replace("\\frac", "").replace("\\sqrt", "")):
                return False
        return self.symbolic_equal(a, b) is True


def math_equal(pred: str | None, gold: str | None, *, timeout: float = 5.0, grader: MathGrader | None = None) -> bool:
    """One-off equivalence check; pass a `MathGrader` to reuse its SymPy worker across calls."""
    if grader is not None:
        return grader.equal(pred, gold)
    with MathGrader(timeout=timeout) as g:
        return g.equal(pred, gold)
