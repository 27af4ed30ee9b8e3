"""The three Absolute Zero task types: prompts, parsing of completions, and
their validation and judging through the sandbox.

A *task* is a Python program ``f`` with inputs and gold outputs:

- **deduction**: the solver sees ``f`` and an input and must predict the output;
- **abduction**: the solver sees ``f`` and an output and must find an input
  that produces it (judged by running ``f(answer)`` in the sandbox);
- **induction**: the solver sees half of the input/output pairs and a message
  and must write ``f``; it is judged on the held-out half (all must pass).

Both roles answer in the format ``<think> ... </think> <answer> ... </answer>``
with fenced blocks inside the answer: ```` ```python ```` (a program),
```` ```input ```` (an argument list such as ``1, [2, 3]``), ```` ```output ````
(a Python literal) and ```` ```message ```` (free text).

Prompt texts live in :class:`PromptTemplates`: plain ``str.format`` templates
whose fields are listed on each attribute. Edit them in code
(``dataclasses.replace(PromptTemplates(), solve_deduction=...)``) or from a TOML
file with the same keys (:meth:`PromptTemplates.from_toml`). Model-written text
(programs, inputs, messages) is substituted as data: ``str.format`` never
interprets braces inside the substituted values.

Prompts reach the model through :func:`build_prompt_ids`: with a chat template
(instruct models) the user text goes through ``tokenizer.apply_chat_template``;
without one (base models) through the plain wrapper
``"...User: {prompt}\\nAssistant: <think>"``. Only the wrapper may contain
special tokens: the user text, which embeds model-written programs, is encoded
with ``allow_special=False`` so a program that spells ``<|im_end|>`` cannot
inject a control token.

Nothing in this module executes or compiles model-written code: parsing is
regular-expression extraction with size limits (and, in
:func:`perturbed_inputs`, ``ast.parse`` plus ``ast.literal_eval`` of an
argument list, which build no code object); syntax, safety, determinism and
equality are the sandbox's job (``azr.Executor``).
"""
from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

TASK_TYPES: tuple[str, ...] = ("deduction", "abduction", "induction")

# Size limits on model-written pieces (characters). Larger pieces make the
# completion malformed: they would blow up later prompts and the buffers.
# MAX_OUTPUT_CHARS bounds both a solver's answer and a valid task's gold
# output (validate_proposals, azr.Executor.validate), so every valid task can
# be answered.
MAX_PROGRAM_CHARS = 8000
MAX_INPUT_CHARS = 2000
MAX_OUTPUT_CHARS = 4000
MAX_MESSAGE_CHARS = 2000
MAX_COMPLETION_CHARS = 200_000


# --------------------------------------------------------------------- tasks
@dataclass
class Task:
    """One task in a buffer.

    Deduction and abduction tasks use ``program``, ``input`` and ``output``
    (a triplet); induction tasks use ``program``, ``inputs``, ``outputs`` and
    ``message``. ``output``/``outputs`` are the sandbox's canonical text of the
    gold values. ``source`` is ``"seed"`` or ``"proposed"``; ``step`` the
    training step that created it (-1 for seeds).
    """

    kind: str
    program: str
    input: str = ""
    output: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    message: str = ""
    imports: list[str] = field(default_factory=list)
    source: str = "proposed"
    step: int = -1

    def key(self) -> tuple:
        """Identity for deduplication: the program and its input(s), stripped."""
        if self.kind == "induction":
            return (self.program.strip(), tuple(s.strip() for s in self.inputs))
        return (self.program.strip(), self.input.strip())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "task") -> "Task":
        """Build a task from a dict (a saved buffer), checking every field's type."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise ValueError(f"{where}: unknown fields {sorted(extra)}; allowed: {sorted(names)}")
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                if f.name in ("kind", "program"):
                    raise ValueError(f"{where}: missing field {f.name!r}")
                continue
            v = d[f.name]
            if f.name in ("inputs", "outputs", "imports"):
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ValueError(f"{where}: field {f.name!r} must be a list of strings")
            elif f.name == "step":
                if not isinstance(v, int) or isinstance(v, bool):
                    raise ValueError(f"{where}: field 'step' must be an integer")
            elif not isinstance(v, str):
                raise ValueError(f"{where}: field {f.name!r} must be a string")
            kw[f.name] = v
        if kw["kind"] not in TASK_TYPES:
            raise ValueError(f"{where}: kind {kw['kind']!r} is not one of {TASK_TYPES}")
        t = cls(**kw)
        if t.kind == "induction" and len(t.inputs) != len(t.outputs):
            raise ValueError(f"{where}: induction task has {len(t.inputs)} inputs but {len(t.outputs)} outputs")
        return t


# ----------------------------------------------------------------- templates
_FORMAT_RULES = (
    "Answer format: first reason inside <think> </think>, then give the final answer inside "
    "<answer> </answer>. Put code and values inside fenced blocks as asked."
)


@dataclass
class PromptTemplates:
    """The prompt texts. Each is a ``str.format`` template; fields in braces.

    - ``propose_deduction`` / ``propose_abduction``: ``{references}`` (the K
      reference tasks, formatted with ``reference``), ``{format_rules}``.
    - ``propose_induction``: ``{program}``, ``{n_inputs}``, ``{format_rules}``.
    - ``solve_deduction``: ``{program}``, ``{input}``, ``{format_rules}``.
    - ``solve_abduction``: ``{program}``, ``{output}``, ``{format_rules}``.
    - ``solve_induction``: ``{message}``, ``{examples}`` (formatted with
      ``example``), ``{format_rules}``.
    - ``reference``: ``{index}``, ``{program}``, ``{input}``, ``{output}``.
    - ``example``: ``{input}``, ``{output}``.
    - ``plain_wrapper``: ``{prompt}``; used for base models (no chat template);
      it must end where the model continues, conventionally after ``<think>``.
    - ``chat_response_prefix``: no fields; text written after the chat
      template's generation prompt as the start of the assistant's reply
      (``<think>`` by default: small instruct models rarely open the tag
      themselves, and the format reward needs it). ``""`` leaves the reply
      entirely to the model.
    """

    propose_deduction: str = (
        "You design code-reasoning puzzles. Write a new Python function `f` and one input for it, "
        "so that predicting the output of `f` on that input takes careful reasoning. The function "
        "must be deterministic (no randomness, time, files, network or printing), use only the "
        "standard library, and return a value made of builtin types. It should differ from these "
        "examples:\n\n{references}\n"
        "Give the function in a ```python block and the input, written as the arguments of the "
        "call f(...), in an ```input block.\n{format_rules}"
    )
    propose_abduction: str = (
        "You design code-reasoning puzzles. Write a new Python function `f` and one input for it, "
        "so that finding an input that produces the output of `f` takes careful reasoning. The "
        "function must be deterministic (no randomness, time, files, network or printing), use "
        "only the standard library, and return a value made of builtin types. It should differ "
        "from these examples:\n\n{references}\n"
        "Give the function in a ```python block and the input, written as the arguments of the "
        "call f(...), in an ```input block.\n{format_rules}"
    )
    propose_induction: str = (
        "Here is a Python function:\n```python\n{program}\n```\n"
        "Write {n_inputs} different inputs for it, each in its own ```input block (written as the "
        "arguments of the call f(...)), chosen so that together with their outputs they reveal "
        "what the function does. Then write a short hint for someone who must rewrite the "
        "function from those examples, in a ```message block.\n{format_rules}"
    )
    solve_deduction: str = (
        "Predict the output of this Python function on the given input.\n"
        "```python\n{program}\n```\n```input\n{input}\n```\n"
        "Give the returned value as a Python literal in an ```output block.\n{format_rules}"
    )
    solve_abduction: str = (
        "Find an input for which this Python function returns the given output.\n"
        "```python\n{program}\n```\n```output\n{output}\n```\n"
        "Give the input, written as the arguments of the call f(...), in an ```input block.\n"
        "{format_rules}"
    )
    solve_induction: str = (
        "Write a Python function `f` that maps each of these inputs to its output.\n"
        "Hint: {message}\n\n{examples}\n"
        "Give the function in a ```python block.\n{format_rules}"
    )
    reference: str = (
        "Example {index}:\n```python\n{program}\n```\n```input\n{input}\n```\n```output\n{output}\n```\n"
    )
    example: str = "```input\n{input}\n```\n```output\n{output}\n```\n"
    format_rules: str = _FORMAT_RULES
    plain_wrapper: str = (
        "A conversation between User and Assistant. The Assistant first thinks step by step "
        "inside <think> </think> and then answers inside <answer> </answer>.\n"
        "User: {prompt}\nAssistant: <think>"
    )
    chat_response_prefix: str = "<think>"

    @classmethod
    def from_toml(cls, path: str | Path) -> "PromptTemplates":
        """Defaults overridden by the string keys of a TOML file (unknown keys are errors)."""
        from .config import read_toml

        p = Path(path)
        data = read_toml(p, "prompt template file")
        names = [f.name for f in dataclasses.fields(cls)]
        for k, v in data.items():
            if k not in names:
                raise ValueError(f"prompt template file {p}: unknown key {k!r}; allowed: {names}")
            if not isinstance(v, str):
                raise ValueError(f"prompt template file {p}: key {k!r} must be a string")
        t = cls(**data)
        t.check()
        return t

    def check(self) -> None:
        """Render every template once with dummy values so a typo fails early."""
        dummy = dict(references="", format_rules="", program="", n_inputs=1, input="", output="",
                     message="", examples="", index=1, prompt="")
        for f in dataclasses.fields(self):
            try:
                getattr(self, f.name).format(**dummy)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"prompt template {f.name!r} does not render: {e!r}; fields are "
                                 f"listed in azr.tasks.PromptTemplates") from None


# ------------------------------------------------------------------ scaffolds
SCAFFOLDS: tuple[str, ...] = ("think", "answer")
ANSWER_BLOCK = {"deduction": "output", "abduction": "input", "induction": "python"}
SCAFFOLD_HEAD = "<think>\n</think>\n<answer>\n"


def response_plan(kind: str, role: str, scaffold: str, n_inputs: int = 1) -> list[str | None]:
    """How a response is written: a list of segments, ``None`` for a span the
    model samples (it ends at the stop string) and strings for text the
    trainer writes itself.

    - ``"think"`` (the paper's way): ``[None]``; the model writes the whole
      ``<think>...</think><answer>...</answer>`` (after the forced prefix) and
      stops at ``</answer>``.
    - ``"answer"`` (for small models that cannot yet keep the format): the
      trainer writes ``<think>\n</think>\n<answer>\n`` and each fence opener;
      the model writes only the body of each fenced block, ending it with
      ```` ``` ```` (the stop string). Solvers write one block (``output`` /
      ``input`` / ``python``); deduction/abduction proposers a ``python`` then
      an ``input`` block; induction proposers a ``message`` then ``n_inputs``
      ``input`` blocks. The text stays in the ``<think>``/``<answer>`` format,
      so parsing and judging are unchanged; only sampled tokens are trained.
    """
    if kind not in TASK_TYPES:
        raise ValueError(f"unknown task type {kind!r}; expected one of {TASK_TYPES}")
    if role not in ("propose", "solve"):
        raise ValueError(f"unknown role {role!r}; expected 'propose' or 'solve'")
    if scaffold not in SCAFFOLDS:
        raise ValueError(f"scaffold {scaffold!r} is not one of {SCAFFOLDS}")
    if scaffold == "think":
        return [None]
    if role == "solve":
        return [f"{SCAFFOLD_HEAD}```{ANSWER_BLOCK[kind]}\n", None, "\n</answer>"]
    if kind == "induction":
        plan: list[str | None] = [f"{SCAFFOLD_HEAD}```message\n", None]
        for _ in range(max(1, n_inputs)):
            plan += ["\n```input\n", None]
        return plan + ["\n</answer>"]
    return [f"{SCAFFOLD_HEAD}```python\n", None, "\n```input\n", None, "\n</answer>"]


def scaffold_stop(scaffold: str) -> str:
    """The stop string that ends each sampled span of a :func:`response_plan`."""
    if scaffold not in SCAFFOLDS:
        raise ValueError(f"scaffold {scaffold!r} is not one of {SCAFFOLDS}")
    return "</answer>" if scaffold == "think" else "```"


def scaffold_extra(prefix: str, plan: Sequence[str | None]) -> str:
    """The text to append to a prompt that already ends with the forced
    ``prefix`` so it ends with the plan's leading scaffold text. Raises
    ``ValueError`` when the two disagree (a custom prefix other than
    ``<think>`` or ``""`` with the ``answer`` scaffold)."""
    head = plan[0] if plan and isinstance(plan[0], str) else ""
    if not head:
        return ""
    if not head.startswith(prefix):
        raise ValueError(f"the prompt already ends with {prefix!r} (chat_response_prefix / plain_wrapper), "
                         f"which the answer scaffold's {head[:30]!r} does not start with: use the 'think' "
                         f"scaffold or a prefix of '<think>' or ''")
    return head[len(prefix):]


# ------------------------------------------------------------------ wrapping
def resolve_style(tokenizer: Any, style: str) -> str:
    """``"chat"`` or ``"plain"``: ``"auto"`` picks chat when the tokenizer has a chat template."""
    if style not in ("auto", "chat", "plain"):
        raise ValueError(f"prompt style {style!r} is not one of 'auto', 'chat', 'plain'")
    if style == "auto":
        return "chat" if getattr(tokenizer, "chat_template", None) else "plain"
    return style


def forced_prefix(style: str, templates: PromptTemplates) -> str:
    """Text the wrapper already wrote for the model's response: for the plain
    wrapper, everything after the user text from its first ``<think>`` on
    (``<think>`` for the default wrapper; a wrapper ending in
    ``<think></think><answer>`` makes the model write only the answer)."""
    if style == "plain":
        probe = templates.plain_wrapper.format(prompt="\x00")
        tail = probe.split("\x00", 1)[1]
        i = tail.find("<think>")
        return tail[i:].rstrip() if i >= 0 else ""
    return templates.chat_response_prefix


_PLACEHOLDER = "\x00AZR_USER_TEXT\x00"


def build_prompt_ids(tokenizer: Any, user_text: str, style: str,
                     templates: PromptTemplates) -> tuple[list[int], str]:
    """Token ids and text of the full prompt.

    The wrapper (chat template or plain wrapper) is encoded with special tokens
    allowed; ``user_text`` with them disallowed.
    """
    style = resolve_style(tokenizer, style)
    if style == "chat":
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": _PLACEHOLDER}],
                                                 add_generation_prompt=True, tokenize=False)
        rendered += templates.chat_response_prefix
    else:
        rendered = templates.plain_wrapper.format(prompt=_PLACEHOLDER)
    if rendered.count(_PLACEHOLDER) != 1:
        raise ValueError("the chat template or plain wrapper must place the user message exactly once")
    before, after = rendered.split(_PLACEHOLDER)
    ids = (tokenizer.encode(before, allow_special=True) + tokenizer.encode(user_text, allow_special=False)
           + tokenizer.encode(after, allow_special=True))
    return ids, before + user_text + after


# ------------------------------------------------------------------- parsing
@dataclass
class Parsed:
    """A completion split into its parts. ``ok`` is False on a format error."""

    ok: bool
    think: str = ""
    answer: str = ""
    blocks: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""


_TAG_RE = re.compile(r"</?(?:think|answer)>")
_SPECIAL_END_RE = re.compile(r"(?:<\|[^<>|\s]{1,40}\|>|</s>)\Z")
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_BLOCK_ALIASES = {"py": "python", "python3": "python", "inputs": "input", "outputs": "output"}


def _strip_trailer(s: str) -> str:
    """Remove trailing whitespace and end-of-text special tokens (``<|im_end|>``,
    ``</s>``), looking only at the end of the string (linear time)."""
    while True:
        s = s.rstrip()
        m = _SPECIAL_END_RE.search(s[-48:])
        if not m:
            return s
        s = s[: len(s) - (m.end() - m.start())]


def parse_completion(text: str, prefix: str = "") -> Parsed:
    """Check the ``<think>...</think><answer>...</answer>`` format and extract fenced blocks.

    ``prefix`` is what the prompt already wrote for the model (e.g. ``"<think>"``).
    Well-formed means: after optional leading whitespace, exactly one of each
    tag, in the order think, /think, answer, /answer, only whitespace between
    ``</think>`` and ``<answer>``, and after ``</answer>`` only whitespace or
    end-of-text special tokens. Never raises on any string.
    """
    if not isinstance(text, str):
        return Parsed(False, error="completion is not text")
    if len(text) + len(prefix) > MAX_COMPLETION_CHARS:
        return Parsed(False, error=f"completion longer than {MAX_COMPLETION_CHARS} characters")
    full = prefix + text
    full = _strip_trailer(full).lstrip()
    tags = [(m.group(0), m.start(), m.end()) for m in _TAG_RE.finditer(full)]
    names = [t[0] for t in tags]
    if names != ["<think>", "</think>", "<answer>", "</answer>"]:
        return Parsed(False, error=f"expected <think></think><answer></answer> once each, found {names[:8]}")
    (_, s0, e0), (_, s1, e1), (_, s2, e2), (_, s3, e3) = tags
    if s0 != 0:
        return Parsed(False, error="text before <think>")
    if full[e1:s2].strip():
        return Parsed(False, error="text between </think> and <answer>")
    if e3 != len(full):
        return Parsed(False, error="text after </answer>")
    answer = full[e2:s3]
    blocks: dict[str, list[str]] = {}
    for m in _FENCE_RE.finditer(answer):
        tag = m.group(1).lower()
        tag = _BLOCK_ALIASES.get(tag, tag)
        body = m.group(2)
        if body.endswith("\n"):
            body = body[:-1]
        if body.endswith("\r"):
            body = body[:-1]
        blocks.setdefault(tag, []).append(body)
    return Parsed(True, think=full[e0:s1], answer=answer, blocks=blocks)


@dataclass
class Proposal:
    """What a proposer completion yields; ``error`` is non-empty when malformed."""

    program: str = ""
    input: str = ""
    inputs: list[str] = field(default_factory=list)
    message: str = ""
    error: str = ""


def _first(blocks: dict[str, list[str]], tag: str) -> str | None:
    v = blocks.get(tag)
    return v[0] if v else None


def parse_proposal(kind: str, text: str, prefix: str = "", program: str = "",
                   max_inputs: int = 10) -> Proposal:
    """Extract a proposal. Deduction/abduction need a ``python`` and an ``input``
    block; induction (for the given ``program``) needs ``input`` blocks and a
    ``message`` block: duplicate inputs are dropped and at most ``max_inputs``
    kept. Never raises on any text."""
    if kind not in TASK_TYPES:
        raise ValueError(f"unknown task type {kind!r}; expected one of {TASK_TYPES}")
    p = parse_completion(text, prefix)
    if not p.ok:
        return Proposal(error=p.error)
    if kind in ("deduction", "abduction"):
        prog, inp = _first(p.blocks, "python"), _first(p.blocks, "input")
        if prog is None or not prog.strip():
            return Proposal(error="no ```python block")
        if inp is None or not inp.strip():
            return Proposal(error="no ```input block")
        if len(prog) > MAX_PROGRAM_CHARS:
            return Proposal(error=f"program longer than {MAX_PROGRAM_CHARS} characters")
        if len(inp) > MAX_INPUT_CHARS:
            return Proposal(error=f"input longer than {MAX_INPUT_CHARS} characters")
        return Proposal(program=prog, input=inp.strip())
    seen: list[str] = []
    for s in p.blocks.get("input", []):
        s = s.strip()
        if s and len(s) <= MAX_INPUT_CHARS and s not in seen:
            seen.append(s)
        if len(seen) >= max_inputs:
            break
    msg = _first(p.blocks, "message")
    if not seen:
        return Proposal(error="no usable ```input block")
    if msg is None or not msg.strip():
        return Proposal(error="no ```message block")
    if len(msg) > MAX_MESSAGE_CHARS:
        return Proposal(error=f"message longer than {MAX_MESSAGE_CHARS} characters")
    return Proposal(program=program, inputs=seen, message=msg.strip())


def parse_answer(kind: str, text: str, prefix: str = "") -> tuple[str | None, str]:
    """The solver's answer: the first ``output`` (deduction), ``input``
    (abduction) or ``python`` (induction) block, else the whole answer text.
    Returns ``(answer, "")`` or ``(None, reason)`` on a format error."""
    if kind not in TASK_TYPES:
        raise ValueError(f"unknown task type {kind!r}; expected one of {TASK_TYPES}")
    p = parse_completion(text, prefix)
    if not p.ok:
        return None, p.error
    tag = {"deduction": "output", "abduction": "input", "induction": "python"}[kind]
    a = _first(p.blocks, tag)
    if a is None:
        a = p.answer if "```" not in p.answer else None
        if a is None:
            return None, f"no ```{tag} block"
    a = a.strip()
    if not a:
        return None, "empty answer"
    limit = MAX_PROGRAM_CHARS if kind == "induction" else MAX_OUTPUT_CHARS
    if len(a) > limit:
        return None, f"answer longer than {limit} characters"
    return a, ""


# ------------------------------------------------------------------- prompts
def format_references(refs: Sequence[Task], templates: PromptTemplates) -> str:
    return "".join(templates.reference.format(index=i + 1, program=t.program, input=t.input, output=t.output)
                   for i, t in enumerate(refs))


def proposer_text(kind: str, templates: PromptTemplates, refs: Sequence[Task] = (),
                  program: str = "", n_inputs: int = 10) -> str:
    """The user text of a proposer prompt (before wrapping)."""
    if kind == "induction":
        return templates.propose_induction.format(program=program, n_inputs=n_inputs,
                                                  format_rules=templates.format_rules)
    tpl = templates.propose_deduction if kind == "deduction" else templates.propose_abduction
    return tpl.format(references=format_references(refs, templates), format_rules=templates.format_rules)


def split_induction(task: Task, rng: np.random.Generator) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Shuffle an induction task's pairs and split them into (shown, held-out):
    ``n // 2`` shown (at least 1), the rest held out (at least 1). Needs n >= 2."""
    pairs = list(zip(task.inputs, task.outputs))
    if len(pairs) < 2:
        raise ValueError(f"an induction task needs at least 2 input/output pairs, this one has {len(pairs)}")
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    k = max(1, len(pairs) // 2)
    return pairs[:k], pairs[k:]


def solver_text(task: Task, templates: PromptTemplates, shown: Sequence[tuple[str, str]] = ()) -> str:
    """The user text of a solver prompt (before wrapping)."""
    if task.kind == "deduction":
        return templates.solve_deduction.format(program=task.program, input=task.input,
                                                format_rules=templates.format_rules)
    if task.kind == "abduction":
        return templates.solve_abduction.format(program=task.program, output=task.output,
                                                format_rules=templates.format_rules)
    examples = "".join(templates.example.format(input=i, output=o) for i, o in shown)
    return templates.solve_induction.format(message=task.message, examples=examples,
                                            format_rules=templates.format_rules)


# ------------------------------------------------------------ perturbation
def _perturb(v: Any, j: int) -> Any:
    """Variant ``j`` (0: small change, 1: large change, 2: change of shape)
    of a literal value; ``v`` itself when nothing fits."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return (v + 1, -v - 3, 2 * v + 7)[j]
    if isinstance(v, float):
        return (v + 1.5, -v - 2.25, 3 * v + 0.5)[j]
    if isinstance(v, complex):
        return (v + 1, -v - 2j, v * 2 + 1)[j]
    if isinstance(v, (str, bytes)):
        tail = "xQ7" if isinstance(v, str) else b"xQ7"
        return (v + tail[:1], (v[:1] + tail[1:]) if len(v) > 1 else v + tail, v[::-1] + tail[1:])[j]
    if v is None:
        return (0, "a", [1])[j]
    if isinstance(v, (list, tuple)):
        if j < 2:
            out = [_perturb(e, j) for e in v] if v else [1 + j]
        else:
            out = list(v[::-1]) + list(v[:1]) if v else [0, 1]
        return type(v)(out)
    if isinstance(v, (set, frozenset)):
        if j < 2:
            out = {_perturb(e, j) for e in v} if v else {1 + j}
        else:
            out = set(list(v)[1:]) if len(v) > 1 else (set() if v else {0, 1})
        return type(v)(out)
    if isinstance(v, dict):
        if j < 2:
            return {k: _perturb(x, j) for k, x in v.items()} if v else {1 + j: j}
        return dict(list(v.items())[1:]) if len(v) > 1 else ({} if v else {0: 1})
    return v


def perturbed_inputs(inp: str, n: int = 3) -> list[str]:
    """Up to ``n`` argument lists near ``inp`` (an argument list as in the
    ```` ```input ```` block) that differ from it, for the check that a
    program's output depends on its input. Literal arguments (positional or
    keyword) are changed; an argument that is not a literal stays as written.
    Returns [] when nothing can be changed or ``inp`` does not parse. Pure
    parsing: nothing model-written is executed here."""
    src = f"f({inp})"
    try:
        call = ast.parse(src, mode="eval").body
        if not isinstance(call, ast.Call):
            return []
        parts: list[tuple[str | None, Any, str]] = []  # (keyword, literal value or _NOLIT, source)
        for node in call.args:
            if isinstance(node, ast.Starred):
                return []
            parts.append((None, *_literal(node, src)))
        for kw in call.keywords:
            if kw.arg is None:
                return []
            parts.append((kw.arg, *_literal(kw.value, src)))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return []
    if not any(v is not _NOLIT for _, v, _ in parts):
        return []
    out: list[str] = []
    for j in range(3):
        try:
            args = []
            for kw, v, src in parts:
                text = src if v is _NOLIT else repr(_perturb(v, j))
                args.append(text if kw is None else f"{kw}={text}")
        except (TypeError, ValueError, MemoryError, RecursionError, OverflowError):
            continue
        text = ", ".join(args)
        if len(text) <= MAX_INPUT_CHARS and text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out


_NOLIT = object()


def _literal(node: ast.expr, src: str) -> tuple[Any, str]:
    """(the literal value of an argument node, "") or (_NOLIT, its source text in ``src``)."""
    try:
        return ast.literal_eval(node), ""
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        seg = ast.get_source_segment(src, node)
        if seg is None:
            raise ValueError("no source for an argument")
        return _NOLIT, seg


# ------------------------------------------------------------------ shape
class _Shape(ast.NodeTransformer):
    """Numbers every identifier in order of first appearance and reduces
    every literal to its type name (see :func:`program_shape`)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _n(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._n(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._n(node.arg)
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._n(node.name)
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)  # method names stay: s.upper() and s.lower() are different programs
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return ast.Constant(value=type(node.value).__name__)


def program_shape(program: str) -> str | None:
    """The shape of a program: its syntax tree with identifiers numbered in
    order of first appearance and every literal reduced to its type, so
    ``def f(x): return x + 1`` and ``def g(y): return y + 5`` have one shape
    and ``return x * 2`` another. Docstrings count as string literals. For
    ``max_same_shape``: proposals that vary only names and constants of one
    template. ``None`` when the text does not parse. Pure parsing: nothing
    model-written is executed here."""
    try:
        tree = ast.parse(program)
        return ast.dump(_Shape().visit(tree), annotate_fields=False, include_attributes=False)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


# ------------------------------------------------------- sandbox round trips
def validate_proposals(executor: Any, kind: str, proposals: Sequence[Proposal], step: int = -1,
                       min_pairs: int = 2) -> list[tuple[Task | None, str]]:
    """Validate well-formed proposals in the sandbox, in one batched call.

    Deduction/abduction: ``executor.validate([program], [input])`` must be
    ``ok``; the gold output is the sandbox's. Induction: every input is run;
    the task keeps the inputs that ran ``ok`` (distinct), and needs at least
    ``min_pairs`` of them. Returns ``(task or None, reason)`` per proposal;
    malformed proposals (``error`` set) give ``(None, error)`` without a run.
    """
    progs: list[str] = []
    inps: list[str] = []
    owner: list[int] = []
    for i, p in enumerate(proposals):
        if p.error:
            continue
        if kind == "induction":
            for s in p.inputs:
                progs.append(p.program)
                inps.append(s)
                owner.append(i)
        else:
            progs.append(p.program)
            inps.append(p.input)
            owner.append(i)
    results = list(executor.validate(progs, inps)) if progs else []
    if len(results) != len(progs):
        raise RuntimeError(f"executor.validate returned {len(results)} results for {len(progs)} programs")
    out: list[tuple[Task | None, str]] = [(None, p.error) for p in proposals]
    per: dict[int, list[tuple[str, Any]]] = {}
    for j, r in enumerate(results):
        per.setdefault(owner[j], []).append((inps[j], r))
    for i, runs in per.items():
        p = proposals[i]
        if kind == "induction":
            ok = [(s, r.output) for s, r in runs if r.status == "ok" and len(r.output) <= MAX_OUTPUT_CHARS]
            if len(ok) < min_pairs:
                bad = [r.status for s, r in runs if r.status != "ok"]
                out[i] = (None, f"only {len(ok)} of {len(runs)} inputs ran ok (need {min_pairs}); "
                                f"statuses {bad[:4]}")
                continue
            out[i] = (Task(kind="induction", program=p.program, inputs=[s for s, _ in ok],
                           outputs=[o for _, o in ok], message=p.message, step=step), "")
        else:
            r = runs[0][1]
            if r.status != "ok":
                out[i] = (None, f"sandbox: {r.status}: {str(r.message)[:200]}")
                continue
            if len(r.output) > MAX_OUTPUT_CHARS:
                out[i] = (None, f"the gold output has {len(r.output)} characters, more than the "
                                f"{MAX_OUTPUT_CHARS} an answer may have")
                continue
            out[i] = (Task(kind=kind, program=p.program, input=p.input, output=r.output, step=step), "")
    return out


def judge_answers(executor: Any, items: Sequence[tuple[Task, Any]], answers: Sequence[str | None]) -> list[bool]:
    """Judge solver answers of one task type in one batched sandbox call.

    ``items[i] = (task, held_out_pairs_or_None)``; ``answers[i]`` is the parsed
    answer (None for a format error: not sent, judged False). Deduction uses
    ``judge_output``, abduction ``judge_input`` (``f(answer) == gold``),
    induction ``judge_program`` on the held-out pairs.
    """
    idx = [i for i, a in enumerate(answers) if a is not None]
    verdict = [False] * len(answers)
    if not idx:
        return verdict
    kind = items[idx[0]][0].kind
    if kind == "deduction":
        vs = executor.judge_output([items[i][0].program for i in idx], [items[i][0].input for i in idx],
                                   [items[i][0].output for i in idx], [answers[i] for i in idx])
    elif kind == "abduction":
        vs = executor.judge_input([items[i][0].program for i in idx], [items[i][0].output for i in idx],
                                  [answers[i] for i in idx])
    else:
        vs = executor.judge_program([answers[i] for i in idx], [list(items[i][1]) for i in idx])
    vs = list(vs)
    if len(vs) != len(idx):
        raise RuntimeError(f"executor judge returned {len(vs)} verdicts for {len(idx)} answers")
    for i, v in zip(idx, vs):
        verdict[i] = bool(v.correct)
    return verdict


__all__ = [
    "Parsed", "PromptTemplates", "Proposal", "SCAFFOLDS", "TASK_TYPES", "Task", "build_prompt_ids",
    "forced_prefix", "judge_answers", "parse_answer", "parse_completion", "parse_proposal", "proposer_text",
    "resolve_style", "response_plan", "scaffold_extra", "scaffold_stop", "solver_text", "split_induction",
    "validate_proposals",
]
