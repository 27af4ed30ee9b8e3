"""Evaluation prompts, in three selectable styles.

Owns: the text each benchmark problem is shown as, and the stop strings that
go with it.

- ``"azr"``: the paper's self-play style. The R1-Zero-style conversation that
  Absolute Zero trains its solver with ("A conversation between User and
  Assistant ... <think> </think> <answer> </answer>"), as raw text ending in
  ``Assistant: <think>``. Use it for models trained by ``azr train``.
- ``"chat"``: the tokenizer's own chat template with one user message (for
  instruct models such as SmolLM2-Instruct or Qwen2.5-Instruct). Math asks
  for ``\\boxed{}``, CRUXEval for ``<answer>`` tags, code for a fenced block.
- ``"base"``: plain completion text for base models, with ``few_shot``
  worked examples (written for azr, not taken from the benchmarks) before
  the question; HumanEval+ is the bare function prompt to be continued.

Must not: depend on a particular model; the chat style only needs an object
with ``apply_chat_template(messages, add_generation_prompt=True, tokenize=False)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .datasets import Problem

__all__ = ["PROMPT_STYLES", "BuiltPrompt", "build_prompt", "AZR_TEMPLATE"]

PROMPT_STYLES = ("azr", "chat", "base")

AZR_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {question}\nAssistant: <think>"
)


@dataclass
class BuiltPrompt:
    """Prompt text, stop strings, and the text the scorer puts before the completion.

    ``answer_prefix`` is the end of the prompt that belongs to the answer
    (base style: ``[ANSWER]assert f(``), so extraction sees the whole answer.
    """

    text: str
    stop: list[str]
    answer_prefix: str = ""


# ----------------------------------------------------------------------------- task texts

def _crux_o_text(p: Problem, answer_hint: str) -> str:
    return (
        "# Task: Deduce the Output of a Code Snippet\n"
        "Given the following Python function `f` and an input, predict the exact output of `f(input)`.\n\n"
        f"```python\n{p.meta['code']}\n```\n\nInput: `{p.meta['input']}`\n\n"
        f"Write the output as a Python literal. {answer_hint}"
    )


def _crux_i_text(p: Problem, answer_hint: str) -> str:
    return (
        "# Task: Find an Input for a Code Snippet\n"
        "Given the following Python function `f` and an output, find any input such that `f(input)` "
        "returns exactly that output.\n\n"
        f"```python\n{p.meta['code']}\n```\n\nOutput: `{p.meta['output']}`\n\n"
        "Write the input as the argument list of the call, e.g. `[1, 2], 'a'` for `f([1, 2], 'a')`. "
        f"{answer_hint}"
    )


def _codegen_text(p: Problem) -> str:
    if p.meta["dataset"] == "humaneval":
        return ("Complete the following Python function. Return the whole function in one ```python code block.\n\n"
                f"```python\n{p.meta['prompt'].strip()}\n```")
    return (f"{p.meta['description']}\n\nWrite the Python function `{p.meta['entry_point']}`. "
            "Return it in one ```python code block.")


_MATH_HINT = "Please reason step by step, and put your final answer within \\boxed{}."


def _question(p: Problem, style: str) -> str:
    tag_hint = "Give your final answer inside <answer> </answer> tags."
    if p.task == "cruxeval-o":
        return _crux_o_text(p, tag_hint if style == "chat" else "")
    if p.task == "cruxeval-i":
        return _crux_i_text(p, tag_hint if style == "chat" else "")
    if p.task in ("humaneval+", "mbpp+"):
        return _codegen_text(p)
    return p.question.strip() + ("\n" + _MATH_HINT if style == "chat" else "")


# ----------------------------------------------------------------------------- few-shot (base style)

_FEW_SHOT_MATH = [
    ("A shop sells pens at 3 dollars each. Mia buys 4 pens and pays with a 20 dollar bill. How much change does she get?",
     "4 pens cost 4 * 3 = 12 dollars. The change is 20 - 12 = 8 dollars. The answer is 8."),
    ("What is the value of $\\frac{2}{3} + \\frac{1}{6}$?",
     "$\\frac{2}{3} = \\frac{4}{6}$, so the sum is $\\frac{5}{6}$. The answer is $\\boxed{\\frac{5}{6}}$."),
    ("Solve for $x$: $5x - 7 = 18$.",
     "Adding 7 gives $5x = 25$, so $x = 5$. The answer is $\\boxed{5}$."),
    ("A rectangle has a perimeter of 30 and a width of 5. What is its area?",
     "The length is 30 / 2 - 5 = 10, so the area is 10 * 5 = 50. The answer is $\\boxed{50}$."),
]

_FEW_SHOT_CRUX = [
    ("def f(xs):\n    return [x * 2 for x in xs if x > 0]", "[3, -1, 2]", "[6, 4]"),
    ("def f(s, n):\n    return s[:n].upper() + s[n:]", "'hello', 2", "'HEllo'"),
    ("def f(d):\n    return sorted(d.items(), key=lambda kv: kv[1])", "{'a': 3, 'b': 1}", "[('b', 1), ('a', 3)]"),
]

_FEW_SHOT_MBPP = [
    ("Write a function to return the largest of three numbers.\nassert max_of_three(1, 5, 3) == 5",
     "def max_of_three(a, b, c):\n    return max(a, b, c)"),
    ("Write a function to count the vowels in a string.\nassert count_vowels('banana') == 3",
     "def count_vowels(s):\n    return sum(1 for ch in s if ch in 'aeiouAEIOU')"),
]


def _base_prompt(p: Problem, few_shot: int) -> BuiltPrompt:
    if p.task in ("cruxeval-o", "cruxeval-i"):
        def question(code: str, inp: str, out: str) -> str:
            hole = f"assert f({inp}) == ??" if p.task == "cruxeval-o" else f"assert f(??) == {out}"
            return f"```python\n{code}\n```\n{hole}\n"

        shots = "".join(question(c, i, o) + f"[ANSWER]assert f({i}) == {o}[/ANSWER]\n\n"
                        for c, i, o in _FEW_SHOT_CRUX[:few_shot])
        # output task: the model completes "assert f(<input>) ==" with the output;
        # input task: it completes "assert f(" with "<input>) == <output>" (the scorer reads the call back)
        tail = (f"[ANSWER]assert f({p.meta['input']}) ==" if p.task == "cruxeval-o" else "[ANSWER]assert f(")
        return BuiltPrompt(shots + question(p.meta["code"], p.meta["input"], p.meta["output"]) + tail,
                           ["[/ANSWER]", "\n"], answer_prefix=tail)
    if p.task == "humaneval+":
        return BuiltPrompt(p.meta["prompt"], ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert"])
    if p.task == "mbpp+":
        shots = "".join(f"Problem:\n{q}\nSolution:\n```python\n{a}\n```\n\n" for q, a in _FEW_SHOT_MBPP[:few_shot])
        return BuiltPrompt(shots + f"Problem:\n{p.meta['description']}\nSolution:\n```python\n", ["```", "\nProblem:"],
                           answer_prefix="```python\n")
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in _FEW_SHOT_MATH[:few_shot])
    return BuiltPrompt(shots + f"Question: {p.question.strip()}\nAnswer:", ["\n\nQuestion:", "\nQuestion:"])


def build_prompt(p: Problem, style: str, tokenizer: Any = None, few_shot: int = 0) -> BuiltPrompt:
    """The prompt text and stop strings for problem ``p`` in ``style`` (see `PROMPT_STYLES`).

    ``tokenizer`` is needed for the chat style (its chat template);
    ``few_shot`` only applies to the base style.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    if style == "base":
        if few_shot < 0:
            raise ValueError(f"few_shot must be >= 0, got {few_shot}")
        return _base_prompt(p, few_shot)
    q = _question(p, style)
    if style == "azr":
        return BuiltPrompt(AZR_TEMPLATE.format(question=q), ["</answer>"])
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("prompt style 'chat' needs a tokenizer with a chat template (model.tokenizer.chat_template); "
                         "use --prompt-style azr or base for models without one")
    text = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                         tokenize=False)
    return BuiltPrompt(text, [])
