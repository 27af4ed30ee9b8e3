"""`TrainerConfig`: every knob of an Absolute Zero self-play run.

Build one from a preset (``TrainerConfig.preset("quickstart")``), a TOML file
(``TrainerConfig.from_toml(path)``, top-level keys = field names, optionally
``preset = "..."`` as the base) and/or overrides (``cfg.override(["lr=2e-6"])``,
what ``azr train --set lr=2e-6`` uses), or directly (``TrainerConfig(lr=1e-5)``,
converted and checked the same way). Unknown fields and bad values raise
``ValueError`` naming the field and its allowed values.

Presets:

- ``paper``: the paper's sizes (B = 64 per task type and role, n = 8
  learnability rollouts, K = 6 references, 8192-token responses, lr 1e-6,
  500 steps, buffers seeded by the base model up to 4 x B tasks per type).
- ``quickstart``: sized so a 2-core CPU finishes a handful of steps of a
  135M-parameter model in minutes (B = 2, n = 4, K = 3, short responses, one
  seeding round). A 135M model cannot yet keep the ``<think>``/``<answer>``
  format, and at temperature 1 its samples are mostly noise (measured: no
  well-formed response in 20 steps), so quickstart uses the ``answer``
  scaffold (the trainer writes the tags and fence openers, the model each
  block's body) and temperature 0.7. Use ``scaffold = "think"`` and
  temperature 1.0 (the paper's) for models of a few billion parameters.
"""
from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

CHOICES: dict[str, tuple[str, ...]] = {
    "prompt_style": ("auto", "chat", "plain"),
    "aggregation": ("token-mean", "sequence-mean"),
    "advantage_mode": ("per-sample", "token-weighted"),
    "eviction": ("fifo", "random"),
    "scaffold": ("think", "answer"),
    "monitor_action": ("log", "penalize", "drop"),
}


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The parsed TOML at ``path``; errors name ``what`` and the path."""
    import tomllib

    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{what} {p} is not valid TOML: {e}") from None


def check_writable_dir(path: str | Path, what: str) -> None:
    """Raise ValueError (naming ``what`` and the path) unless files can be
    written in directory ``path``, or it can be created; creates nothing."""
    import tempfile

    p = Path(path)
    probe = p
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            where = "is a file" if probe == p else f"is inside {probe}, which is a file"
            raise ValueError(f"{what} {p} {where}, not a directory")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise ValueError(f"{what} {p} is not writable: cannot create files in {probe} "
                         f"({e.strerror or e})") from None


@dataclass
class TrainerConfig:
    """Configuration of a self-play run (see the module docstring for presets)."""

    # --- model and run
    model: str = "SmolLM2-135M-Instruct"  # path or short name for azr.Model.from_pretrained
    tokenizer: str = ""                   # tokenizer dir if the model dir has none ("" = the model's)
    out: str = "runs/azr"                 # run directory: metrics.jsonl, audit.jsonl, checkpoints/
    steps: int = 20
    seed: int = 0
    prompt_style: str = "auto"            # auto: chat template if the tokenizer has one, else plain
    templates: str = ""                   # TOML file overriding azr.tasks.PromptTemplates fields
    scaffold: str = "think"               # think: the model writes the whole <think>/<answer> format (paper);
                                          # answer: the trainer writes the tags and fence openers, the model
                                          # only each block's body (small models; see azr.tasks.response_plan)
    # --- self-play sizes
    task_types: list[str] = field(default_factory=lambda: ["deduction", "abduction", "induction"])
    roles: list[str] = field(default_factory=lambda: ["propose", "solve"])  # solve only = fixed buffers
    batch_size: int = 64                  # B: prompts per task type and role per step
    n_learnability: int = 8               # n: solver rollouts that estimate a proposal's solve rate
    k_references: int = 6                 # K: reference triplets in a proposer prompt
    induction_inputs: int = 10            # inputs an induction proposal asks for
    induction_min_pairs: int = 2          # valid input/output pairs an induction task needs
    # --- generation
    max_prompt_tokens: int = 0            # longer prompts: fewer references, else the prompt is skipped (0 = no limit)
    max_new_tokens_propose: int = 8192
    max_new_tokens_solve: int = 8192
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_slots: int = 0                    # rollout engine slots (0 = its default)
    kv_budget_mb: int = 0                 # rollout engine KV budget (0 = its default)
    # --- optimisation (on --resume these config values replace the checkpoint's optimizer settings)
    lr: float = 1e-6
    lr_schedule: str = "constant"         # constant | linear | cosine, per self-play step (azr.optim.lr_at;
                                          # the transformers get_*_schedule_with_warmup conventions)
    warmup_steps: int = 0                 # steps whose lr rises linearly from 0 to lr
    decay_steps: int = 0                  # linear/cosine: the step at which the decay ends (0 = steps); set it
                                          # for a run that max_minutes ends, since steps is then a bound only
    min_lr_ratio: float = 0.0             # linear/cosine: the lr falls to lr * min_lr_ratio, not below
    beta1: float = 0.9
    beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    clip_low: float = 0.2
    clip_high: float = 0.2
    aggregation: str = "token-mean"
    advantage_mode: str = "per-sample"
    adv_eps: float = 1e-6
    entropy_coef: float = 0.0
    kl_coef: float = 0.0                  # > 0 needs a reference model (Trainer(ref_model=...))
    ppo_epochs: int = 1                   # passes over each batch; the first has ratio 1
    micro_batch: int = 8                  # sequences per loss_and_backward call
    micro_batch_tokens: int = 0           # and at most this many padded positions per call (0 = no limit);
                                          # activation memory grows with it (Model.memory_estimate)
    # --- buffers and seeds
    seed_files: list[str] = field(default_factory=list)  # paper-format JSONL; [] = built-in identity seeds
    seed_limit: int = 0                   # records read per seed file (0 = all)
    seed_min: int = 0                     # before training, rounds of proposals without updates (each round
    seed_rounds: int = 0                  #   proposes only for the types whose buffer holds fewer than seed_min
                                          #   tasks) until none does or seed_rounds rounds have run
    buffer_capacity: int = 0              # per type (0 = unbounded)
    eviction: str = "fifo"
    reject_trivial: bool = False          # a deduction/abduction proposal whose program returns its input
                                          # unchanged, or that behaves like a reference it was shown (same
                                          # output on its own input and on the reference's), is invalid
    reject_constant: bool = False         # with reject_trivial: also one whose output stays the gold output on
                                          # every perturbed input (azr.tasks.perturbed_inputs; constant
                                          # functions). Off in the presets: docs/results.md, run 2
    max_same_shape: int = 0               # a deduction/abduction proposal whose program has the shape
                                          # (azr.tasks.program_shape: names numbered, literals reduced to
                                          # their type) of this many tasks already in its type's buffer is
                                          # invalid (0 = no limit): keeps one template from filling the buffer
    share_triplets: bool = False          # a valid deduction or abduction task also enters the other type's
                                          # buffer (both are (program, input, output) triplets), so each
                                          # solver role sees every valid triplet
    exclude_heldout: bool = True          # programs of the held-out sets (azr.heldout) never enter a buffer
    # --- sandbox
    executor_workers: int = 2
    executor_timeout: float = 5.0
    executor_memory_mb: int = 512
    # --- oversight
    monitor_action: str = "log"
    monitor_penalty: float = 1.0
    monitor_patterns: dict[str, str] = field(default_factory=dict)  # extra name -> regex
    # --- evaluation during training (azr.heldout; greedy, the run's solver prompts and scaffold)
    eval_every: int = 0                   # evaluate before the first step and every N steps (0 = never)
    eval_tasks: list[str] = field(default_factory=lambda: ["heldout-dev"])  # sets in azr.heldout.EVAL_SETS
    eval_limit: int = 0                   # first N tasks of each set (0 = all)
    keep_best: bool = False               # keep the weights with the best accuracy on eval_tasks[0] (the base
                                          # model's included) in <out>/best/ and memory; Trainer.restore_best()
    eval_data_dir: str = ""               # benchmark folder ("" = $AZR_DATA_DIR, else the download cache)
    max_minutes: float = 0.0              # stop after this much training wall time, evaluations excluded (0 = no limit)
    # --- bookkeeping
    log_samples: bool = False             # write every trained completion to <out>/samples.jsonl
    save_every: int = 1                   # checkpoint every N steps (0 = only at the end)
    keep_checkpoints: int = 2             # most recent checkpoints kept (0 = all)
    progress: bool = True

    def __post_init__(self) -> None:
        # built directly, TrainerConfig(lr="1e-5") is converted and checked like a preset or TOML value
        self.validate(where="TrainerConfig")

    # ------------------------------------------------------------------ API
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainerConfig":
        """A preset (``"paper"`` or ``"quickstart"``) with keyword overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
        cfg = cls(**PRESETS[name])
        for k, v in overrides.items():
            cfg.set(k, v)
        cfg.validate()
        return cfg

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "TrainerConfig":
        """Fields from a dict; ``preset`` (optional) picks the base."""
        d = dict(d)
        base = d.pop("preset", None)
        cfg = cls(**PRESETS[_check_preset(base, where)]) if base is not None else cls()
        for k, v in d.items():
            cfg.set(k, v, where)
        cfg.validate()
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> "TrainerConfig":
        return cls.from_dict(read_toml(path, "config file"), where=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML text that :meth:`from_toml` reads back."""
        lines = []
        for k, v in self.to_dict().items():
            lines.append(f"{k} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"

    def set(self, name: str, value: Any, where: str = "config") -> None:
        """Set one field, converting and checking the value's type."""
        hints = _hints()
        if name not in hints:
            close = difflib.get_close_matches(name, hints, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown field {name!r}{hint}; fields are {sorted(hints)}")
        setattr(self, name, _coerce(name, hints[name], value, where))
        if name in CHOICES and getattr(self, name) not in CHOICES[name]:
            raise ValueError(f"{where}: field {name!r} = {getattr(self, name)!r} is not one of {CHOICES[name]}")

    def override(self, items: Iterable[str]) -> "TrainerConfig":
        """Apply ``"field=value"`` strings (CLI ``--set``); values use TOML syntax
        when they parse as TOML (``[1, 2]``, ``true``), else are plain strings."""
        for it in items:
            if "=" not in it:
                raise ValueError(f"override {it!r} must look like field=value; fields are "
                                 f"{self.field_names()}")
            k, v = it.split("=", 1)
            self.set(k.strip(), _parse_cli_value(v.strip()), where="--set")
        self.validate()
        return self

    def validate(self, where: str = "config") -> None:
        """Convert each field to its declared type and check ranges and choices;
        raises ValueError naming the field (and ``where`` for a wrong type)."""
        check_fields(self, where)
        for k, allowed in CHOICES.items():
            if getattr(self, k) not in allowed:
                raise ValueError(f"config field {k!r} = {getattr(self, k)!r} is not one of {allowed}")
        for k, allowed in (("task_types", ("deduction", "abduction", "induction")), ("roles", ("propose", "solve"))):
            v = getattr(self, k)
            if not v or any(x not in allowed for x in v) or len(set(v)) != len(v):
                raise ValueError(f"config field {k!r} = {v!r} must be a non-empty list of distinct values "
                                 f"from {allowed}")
        positive = ["steps", "batch_size", "n_learnability", "induction_inputs", "max_new_tokens_propose",
                    "max_new_tokens_solve", "ppo_epochs", "micro_batch", "executor_workers"]
        for k in positive:
            if getattr(self, k) < 1:
                raise ValueError(f"config field {k!r} must be >= 1, got {getattr(self, k)}")
        nonneg = ["warmup_steps", "decay_steps", "max_same_shape", "eval_every", "eval_limit", "max_minutes", "max_prompt_tokens", "micro_batch_tokens", "k_references", "top_k", "max_slots", "kv_budget_mb", "weight_decay", "clip_low",
                  "clip_high", "entropy_coef", "kl_coef", "seed_limit", "seed_min", "seed_rounds",
                  "buffer_capacity", "save_every", "keep_checkpoints", "monitor_penalty", "max_grad_norm"]
        for k in nonneg:
            if getattr(self, k) < 0:
                raise ValueError(f"config field {k!r} must be >= 0, got {getattr(self, k)}")
        if self.induction_min_pairs < 2:
            raise ValueError("config field 'induction_min_pairs' must be >= 2 (one shown, one held out)")
        if not self.lr > 0:
            raise ValueError(f"config field 'lr' must be > 0, got {self.lr}")
        if not self.temperature > 0:
            raise ValueError(f"config field 'temperature' must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"config field 'top_p' must be in (0, 1], got {self.top_p}")
        if not self.adam_eps > 0:
            raise ValueError(f"config field 'adam_eps' must be > 0, got {self.adam_eps}")
        from .heldout import EVAL_SETS

        from .optim import LR_SCHEDULES

        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"config field 'lr_schedule' = {self.lr_schedule!r} is not one of {LR_SCHEDULES}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"config field 'min_lr_ratio' must be in [0, 1], got {self.min_lr_ratio}")
        if self.keep_best and not self.eval_every:
            raise ValueError("config field 'keep_best' needs 'eval_every' > 0 (the weights are chosen by the "
                             "evaluations during training)")
        bad = [t for t in self.eval_tasks if t not in EVAL_SETS]
        if bad or len(set(self.eval_tasks)) != len(self.eval_tasks):
            raise ValueError(f"config field 'eval_tasks' = {self.eval_tasks!r} must be a list of distinct names "
                             f"from {list(EVAL_SETS)}")
        if not self.adv_eps > 0:
            raise ValueError(f"config field 'adv_eps' must be > 0, got {self.adv_eps}")
        for k in ("beta1", "beta2"):
            if not 0 <= getattr(self, k) < 1:
                raise ValueError(f"config field {k!r} must be in [0, 1), got {getattr(self, k)}")
        if not self.executor_timeout > 0 or self.executor_memory_mb < 16:
            raise ValueError("config fields 'executor_timeout' must be > 0 and 'executor_memory_mb' >= 16")


PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(batch_size=64, n_learnability=8, k_references=6, induction_inputs=10,
                  max_new_tokens_propose=8192, max_new_tokens_solve=8192, temperature=1.0, top_p=1.0,
                  lr=1e-6, max_grad_norm=1.0, steps=500, buffer_capacity=16384, micro_batch=8, max_prompt_tokens=6144,
                  seed_min=256, seed_rounds=16),
    # the cpu recipe at a small batch, for a look at the loop in a few minutes
    "quickstart": dict(batch_size=2, n_learnability=4, k_references=1, induction_inputs=4, scaffold="answer",
                       max_new_tokens_propose=128, max_new_tokens_solve=48, max_prompt_tokens=1536, temperature=1.0, top_p=1.0,
                       lr=1e-5, max_grad_norm=1.0, aggregation="sequence-mean", reject_trivial=True, steps=5, buffer_capacity=4096, micro_batch=4, micro_batch_tokens=4096, log_samples=True,
                       executor_workers=2, executor_timeout=5.0, seed_min=4, seed_rounds=1),
    # the learning preset for a 2-core CPU (docs/results.md has the sweep behind each value)
    "cpu": dict(batch_size=8, n_learnability=4, k_references=1, induction_inputs=4, scaffold="answer",
                max_new_tokens_propose=128, max_new_tokens_solve=48, max_prompt_tokens=1536, temperature=1.0,
                top_p=1.0, lr=1e-5, max_grad_norm=1.0, aggregation="sequence-mean", reject_trivial=True,
                steps=100_000, max_minutes=120.0, buffer_capacity=4096, micro_batch=8, micro_batch_tokens=4096,
                log_samples=True, executor_workers=2, executor_timeout=5.0, seed_min=8, seed_rounds=12,
                save_every=25, keep_checkpoints=1, eval_every=20, eval_tasks=["heldout-dev"], eval_limit=0,
                task_types=["deduction", "abduction"], share_triplets=True),
}


def _check_preset(name: Any, where: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"{where}: preset {name!r} is not one of {sorted(PRESETS)}")
    return name


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainerConfig)


def check_fields(obj: Any, where: str) -> None:
    """Convert every field of dataclass ``obj`` to its type hint as :meth:`TrainerConfig.set`
    does for one (``"1e-5"`` for a float, ``"a,b"`` for a list); a value that does not
    convert raises ValueError naming ``where``, the field and the value."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, _coerce(f.name, hints[f.name], getattr(obj, f.name), where))


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if typing.get_origin(tp) in (list, tuple):
        return f"{typing.get_origin(tp).__name__} of {_type_name(args[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(name: str, tp: Any, v: Any, where: str) -> Any:
    bad = ValueError(f"{where}: field {name!r} expects {_type_name(tp)}, got {v!r}")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # only X | None is used
        if v is None and type(None) in typing.get_args(tp):
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        try:
            return _coerce(name, inner, v, where)
        except ValueError:
            raise bad from None
    if tp is bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "yes", "1", "false", "no", "0"):
            return v.lower() in ("true", "yes", "1")
        raise bad
    if tp is int:
        if isinstance(v, bool):
            raise bad
        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, str):
            try:
                return int(v)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(v, bool):
            raise bad
        if isinstance(v, numbers.Real):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if isinstance(v, str):
            return v
        raise bad
    if origin in (list, tuple):
        if isinstance(v, str):
            v = [s for s in (x.strip() for x in v.split(",")) if s]
        if not isinstance(v, (list, tuple)):
            raise bad
        try:
            items = [_coerce(name, typing.get_args(tp)[0], x, where) for x in v]
        except ValueError:
            raise bad from None
        return origin(items)
    if origin is dict:
        if isinstance(v, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items()):
            return dict(v)
        raise bad
    raise bad  # pragma: no cover


def _parse_cli_value(s: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {s}")["v"]
    except tomllib.TOMLDecodeError:
        return s


def _toml_value(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


__all__ = ["CHOICES", "PRESETS", "TrainerConfig", "check_fields", "check_writable_dir"]
