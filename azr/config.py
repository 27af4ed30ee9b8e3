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
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

CHOICES: dict[str, tuple[str, ...]] = {
    "prompt_style": ("auto", "chat", "plain"),
    "aggregation": ("token-mean", "sequence-mean"),
    "precision": ("fp32", "bf16"),
    "advantage_mode": ("per-sample", "token-weighted"),
    "eviction": ("fifo", "random"),
    "buffer_weighting": ("uniform", "learnable"),
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


def _f(default: Any, help: str) -> Any:
    """A config field with its help text as metadata (``help()``, ``--show-config``, docs/config.md)."""
    return field(default=default, metadata={"help": help})


def _ff(factory: Any, help: str) -> Any:
    """:func:`_f` for a mutable default made by ``factory``."""
    return field(default_factory=factory, metadata={"help": help})


@dataclass
class TrainerConfig:
    """Configuration of a self-play run (see the module docstring for presets)."""

    # --- model and run
    model: str = _f("SmolLM2-135M-Instruct",
        'Model to train: a directory (HF safetensors), a .gguf file, a Hub id in the local HF cache, or a '
        'short name that azr.Model.from_pretrained knows.')
    tokenizer: str = _f("", 'Tokenizer directory when the model directory has none ("" = the model\'s own).')
    out: str = _f("runs/azr",
        'Run directory: config.toml, metrics.jsonl, samples.jsonl, evals.jsonl, checkpoints/, buffers/, '
        'best/.')
    steps: int = _f(20, 'Self-play steps to run in total (with max_minutes, whichever comes first ends the run).')
    seed: int = _f(0, "Seed of the run's random generator and of every generation seed; a run is reproducible from it.")
    prompt_style: str = _f("auto",
        "auto: the tokenizer's chat template if it has one, else plain; chat; plain (a User:/Assistant: "
        'wrapper for base models).')
    templates: str = _f("",
        'TOML file overriding fields of azr.tasks.PromptTemplates (the prompt texts); "" = the built-in '
        'prompts.')
    scaffold: str = _f("think",
        'think: the model writes the whole <think>/<answer> format (the paper); answer: the trainer writes '
        "the tags and fence openers and the model only each block's body (small models; "
        'azr.tasks.response_plan).')
    # --- self-play sizes
    task_types: list[str] = _ff(lambda: ["deduction", "abduction", "induction"],
        'Task types to propose and solve (deduction, abduction, induction).')
    roles: list[str] = _ff(lambda: ["propose", "solve"],
        'Roles trained each step; ["solve"] alone trains solvers on fixed buffers.')
    batch_size: int = _f(64,
        'B: prompts per task type and role per step; each (task type, role) group of B is one advantage '
        'group.')
    n_learnability: int = _f(8,
        "n: solver rollouts per valid proposal that estimate its solve rate (the proposer's learnability "
        'reward).')
    k_references: int = _f(6, 'K: reference triplets from the buffer shown in a deduction/abduction proposer prompt.')
    induction_inputs: int = _f(10,
        'Inputs an induction proposal asks for (half shown to the solver, half held back to judge it).')
    induction_min_pairs: int = _f(2, 'Valid input/output pairs an induction task needs to be valid.')
    # --- generation
    max_prompt_tokens: int = _f(0,
        'Longest prompt in tokens: longer proposer prompts drop references, other long prompts are skipped (0 '
        '= no limit).')
    max_new_tokens_propose: int = _f(8192, 'Longest proposal, in sampled tokens.')
    max_new_tokens_solve: int = _f(8192,
        'Longest answer, in sampled tokens (learnability rollouts and evaluation too).')
    temperature: float = _f(1.0, 'Sampling temperature of rollouts (evaluation answers greedily).')
    top_p: float = _f(1.0, 'Nucleus sampling: keep the smallest set of tokens with this much probability (1.0 = off).')
    top_k: int = _f(0, 'Sample among the k most likely tokens only (0 = off).')
    max_slots: int = _f(0, 'Sequences the rollout engine decodes at once (0 = its default).')
    kv_budget_mb: int = _f(0, "Memory for the rollout engine's KV cache, in MiB (0 = its default).")
    prefix_cache_mb: float = _f(256.0,
        "Memory for the rollout engine's prefix cache, in MiB (0 = off): KV blocks kept between generate "
        "calls while the weights are unchanged, so a prompt prefills only what no earlier prompt of the step "
        "computed (shared headers, the answer scaffold's later spans, learnability prompts asked again). Same "
        "completions either way (azr/generate.py).")
    # --- optimisation (on --resume these values replace the checkpoint's optimizer settings)
    lr: float = _f(1e-6,
        "AdamW learning rate (the 7B paper's 1e-6; the cpu preset's 1e-5 is the rate a 135M model learns at).")
    lr_schedule: str = _f("constant",
        "constant | linear | cosine, per self-play step (azr.optim.lr_at; the conventions of transformers' "
        'get_*_schedule_with_warmup).')
    warmup_steps: int = _f(0, 'Steps whose learning rate rises linearly from 0 to lr.')
    decay_steps: int = _f(0,
        'linear/cosine: the step at which the decay ends (0 = steps); set it for a run that max_minutes ends, '
        'since steps is then only a bound.')
    min_lr_ratio: float = _f(0.0, 'linear/cosine: the rate falls to lr * min_lr_ratio and stays there.')
    beta1: float = _f(0.9, 'AdamW first-moment decay.')
    beta2: float = _f(0.999, 'AdamW second-moment decay.')
    adam_eps: float = _f(1e-8, 'AdamW epsilon.')
    weight_decay: float = _f(0.0, 'AdamW decoupled weight decay.')
    max_grad_norm: float = _f(1.0, 'Clip the global gradient norm to this (0 = no clipping).')
    precision: str = _f("fp32",
        "Matrix products of the update: fp32, or bf16 (inputs rounded to bfloat16, fp32 sums; weights, "
        "gradients, optimizer state, norms and softmax stay fp32; azr.set_matmul_precision). Rollouts and "
        "evaluation keep the engine's fp32 kernels.")
    clip_low: float = _f(0.2, 'PPO ratio clip below 1 (the surrogate clips the ratio at 1 - clip_low).')
    clip_high: float = _f(0.2, 'PPO ratio clip above 1 (at 1 + clip_high).')
    aggregation: str = _f("token-mean",
        'token-mean: every response token of the batch weighs the same; sequence-mean: the mean over each '
        "response's tokens, then over responses (short answers weigh as much as long proposals).")
    advantage_mode: str = _f("per-sample",
        "per-sample: each response counts once in its group's mean and deviation; token-weighted: each counts "
        "its length (the paper's code).")
    adv_eps: float = _f(1e-6, "Added to a group's standard deviation before dividing the advantages by it.")
    entropy_coef: float = _f(0.0, 'Weight of an entropy bonus in the loss (0 = none).')
    kl_coef: float = _f(0.0, 'Weight of a KL penalty towards a reference model; > 0 needs Trainer(ref_model=...).')
    ppo_epochs: int = _f(1, "Passes over each step's batch; the first has ratio 1, later ones are clipped.")
    micro_batch: int = _f(8, 'Sequences per forward/backward call (gradients accumulate over the calls).')
    micro_batch_tokens: int = _f(0,
        'And at most this many padded positions per call (0 = no limit); activation memory grows with it '
        '(Model.memory_estimate).')
    # --- buffers and seeds
    seed_files: list[str] = _ff(list,
        "Seed triplets in the paper's JSONL format; [] = the built-in identity seeds (the paper's start).")
    seed_limit: int = _f(0, 'Records read per seed file (0 = all).')
    seed_min: int = _f(0,
        "Before training, rounds of proposals without updates fill each type's buffer to this many tasks ...")
    seed_rounds: int = _f(0, '... in at most this many rounds (each proposes only for the types still short).')
    buffer_capacity: int = _f(0, 'Tasks per type buffer (0 = unbounded).')
    eviction: str = _f("fifo", 'Which task a full buffer drops: fifo (the oldest) or random.')
    buffer_weighting: str = _f("uniform",
        "How solver batches (after the step's new tasks) and proposer references are drawn from a buffer: "
        "uniform, or learnable: in proportion to p(1 - p) of each task's smoothed solve rate so far "
        "(azr.buffers.learnable_weight), favouring tasks of middling difficulty.")
    reject_trivial: bool = _f(False,
        'A valid deduction/abduction proposal whose program returns its input unchanged, or behaves like a '
        'reference it was shown, is invalid (reward -1).')
    reject_constant: bool = _f(False,
        'With reject_trivial: also one whose output stays the gold output on every perturbed input '
        '(azr.tasks.perturbed_inputs: constant functions). Off in the presets (docs/results.md, run 2).')
    max_same_shape: int = _f(0,
        'A valid deduction/abduction proposal whose program has the shape (azr.tasks.program_shape: names '
        "numbered, literals reduced to their type) of this many tasks already in its type's buffer is invalid "
        '(0 = no limit).')
    share_triplets: bool = _f(False,
        "A valid deduction or abduction task also enters the other type's buffer, so each solver role sees "
        'every valid triplet.')
    exclude_heldout: bool = _f(True, 'Programs of the held-out evaluation sets (azr.heldout) never enter a buffer.')
    # --- sandbox
    executor_workers: int = _f(2, 'Sandbox zygotes running programs in parallel.')
    executor_timeout: float = _f(5.0, 'Wall-clock limit of one sandboxed run, in seconds.')
    executor_memory_mb: int = _f(512, 'Address-space limit of one sandboxed run, in MiB.')
    # --- oversight
    monitor_action: str = _f("log",
        "What a monitor's flag on a response does: log (audit.jsonl only), penalize (reward - "
        'monitor_penalty) or drop (advantage 0).')
    monitor_penalty: float = _f(1.0, 'Reward subtracted from a flagged response with monitor_action = penalize.')
    monitor_patterns: dict[str, str] = _ff(dict,
        'Extra pattern monitors: name -> regular expression searched in each response.')
    # --- evaluation during training (azr.heldout; greedy, the run's solver prompts and scaffold)
    eval_every: int = _f(0, 'Evaluate before the first step, every N steps and after the last (0 = never).')
    eval_tasks: list[str] = _ff(lambda: ["heldout-dev"],
        'Sets to evaluate, from azr.heldout.EVAL_SETS (tune on *-dev sets, report *-test ones).')
    eval_limit: int = _f(0, 'First N tasks of each evaluation set (0 = all).')
    keep_best: bool = _f(False,
        "Keep the weights with the best accuracy on eval_tasks[0] (the base model's included) in <out>/best/ "
        'and memory; Trainer.restore_best() puts them back.')
    eval_data_dir: str = _f("", 'Benchmark folder ("" = $AZR_DATA_DIR, else the download cache).')
    max_minutes: float = _f(0.0,
        'Stop after this much training wall time (seeding, steps, checkpoints; evaluations excluded; 0 = no '
        'limit).')
    # --- bookkeeping
    log_samples: bool = _f(False, 'Write every trained completion to <out>/samples.jsonl.')
    save_every: int = _f(1, 'Checkpoint every N steps (0 = only at the end).')
    keep_checkpoints: int = _f(2, 'Most recent checkpoints kept (0 = all).')
    progress: bool = _f(True,
        'A progress bar on a terminal or in Jupyter; false (or no terminal): one plain line per step.')

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

    def to_toml(self, comments: bool = False) -> str:
        """The config as TOML text that :meth:`from_toml` reads back; with
        ``comments``, each field's help text above it (``--show-config``)."""
        lines = []
        helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(self)}
        for k, v in self.to_dict().items():
            if comments and helps.get(k):
                lines += ["# " + x for x in textwrap.wrap(helps[k], 96, break_on_hyphens=False)]
            lines.append(f"{k} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name``."""
        fs = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fs:
            raise ValueError(f"unknown field {name!r}{_name_hint(name, list(fs))}")
        return fs[name].metadata.get("help", "")

    def set(self, name: str, value: Any, where: str = "config") -> None:
        """Set one field, converting and checking the value's type."""
        hints = _hints()
        if name not in hints:
            raise ValueError(f"{where}: unknown field {name!r}{_name_hint(name, hints)}; "
                             f"fields are {sorted(hints)}")
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
        nonneg = ["warmup_steps", "decay_steps", "max_same_shape", "eval_every", "eval_limit", "max_minutes", "max_prompt_tokens", "micro_batch_tokens", "k_references", "top_k", "max_slots", "kv_budget_mb", "prefix_cache_mb", "weight_decay", "clip_low",
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
                             "evaluations during training); without evaluations set keep_best = false too "
                             "(--set keep_best=false)")
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
                       max_new_tokens_propose=128, max_new_tokens_solve=48, max_prompt_tokens=1536,
                       temperature=1.0, top_p=1.0, lr=1e-5, max_grad_norm=1.0, aggregation="sequence-mean",
                       reject_trivial=True, max_same_shape=4, steps=5, buffer_capacity=4096, micro_batch=4,
                       micro_batch_tokens=4096, log_samples=True, executor_workers=2, executor_timeout=5.0,
                       seed_min=4, seed_rounds=1),
    # the learning preset for a 2-core CPU (docs/results.md has the sweep behind each value)
    "cpu": dict(batch_size=8, n_learnability=4, k_references=1, induction_inputs=4, scaffold="answer",
                max_new_tokens_propose=128, max_new_tokens_solve=48, max_prompt_tokens=1536, temperature=1.0,
                top_p=1.0, lr=1e-5, max_grad_norm=1.0, aggregation="sequence-mean", reject_trivial=True,
                max_same_shape=4, keep_best=True,
                steps=100_000, max_minutes=120.0, buffer_capacity=4096, micro_batch=8, micro_batch_tokens=4096,
                log_samples=True, executor_workers=2, executor_timeout=5.0, seed_min=8, seed_rounds=12,
                save_every=25, keep_checkpoints=1, eval_every=20, eval_tasks=["heldout-dev"], eval_limit=0,
                task_types=["deduction", "abduction"], share_triplets=True),
}


# Names that TRL's GRPOConfig / transformers' TrainingArguments users know -> ours (docs/config.md).
TRL_NAMES: dict[str, tuple[str, str]] = {
    "learning_rate": ("lr", ""),
    "output_dir": ("out", ""),
    "max_steps": ("steps", ""),
    "num_generations": ("batch_size", "the advantage group here is the B responses of one task type and "
                                      "role, not the samples of one prompt"),
    "max_completion_length": ("max_new_tokens_solve", "and max_new_tokens_propose for proposals"),
    "max_prompt_length": ("max_prompt_tokens", ""),
    "beta": ("kl_coef", ""),
    "epsilon": ("clip_low", "and clip_high (TRL's epsilon_high)"),
    "epsilon_high": ("clip_high", ""),
    "save_steps": ("save_every", ""),
    "save_total_limit": ("keep_checkpoints", ""),
    "eval_steps": ("eval_every", ""),
    "lr_scheduler_type": ("lr_schedule", ""),
    "warmup_ratio": ("warmup_steps", "a number of steps, not a ratio"),
    "adam_beta1": ("beta1", ""),
    "adam_beta2": ("beta2", ""),
    "adam_epsilon": ("adam_eps", ""),
    "per_device_train_batch_size": ("micro_batch", "rows per forward/backward call"),
    "num_iterations": ("ppo_epochs", ""),
    "loss_type": ("aggregation", "token-mean or sequence-mean"),
    "disable_tqdm": ("progress", "inverted"),
}


def _name_hint(name: str, known: Iterable[str]) -> str:
    """`` (TRL's name; here it is 'lr')`` or `` (did you mean 'lr'?)`` or ""."""
    if name in TRL_NAMES:
        ours, note = TRL_NAMES[name]
        return f" (that is TRL's name; here it is {ours!r}{': ' + note if note else ''})"
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def field_table(cls: Any = None) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of every field of ``cls`` (default
    :class:`TrainerConfig`; :class:`azr.evaluation.EvalConfig` works too)."""
    cls = cls or TrainerConfig
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append((f.name, typ, default, f.metadata.get("help", "")))
    return out


def _with_field_docs(cls: Any) -> Any:
    """Append the field reference to ``cls.__doc__`` (``help()``, Jupyter's ``?``)."""
    lines = ["", "", "Fields (name: type = default; help):", ""]
    for name, typ, default, hlp in field_table(cls):
        lines.append(f"{name}: {typ} = {default!r}")
        lines += ["    " + x for x in textwrap.wrap(hlp, 76, break_on_hyphens=False)]
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n".join(lines) + "\n"
    return cls


def config_reference() -> str:
    """docs/config.md: every field of TrainerConfig and EvalConfig with its
    default, each preset's values, and the TRL name table (generated; a test
    compares the committed file with it)."""
    from .evaluation.runner import EvalConfig

    def cell(v: Any) -> str:
        t = _toml_value(list(v) if isinstance(v, tuple) else v) if v is not None else "none"
        return "`" + t.replace("|", "\\|") + "`"

    out = ["# Configuration reference", "",
           "Generated from the field metadata of `azr/config.py` and `azr/evaluation/runner.py`",
           "(`azr.config.config_reference()`; `tests/test_config.py` fails when this file is out of",
           "date and says how to write it again). The same text is in `help(azr.TrainerConfig)` and Jupyter's `?`, and",
           "`azr train --show-config [--preset P] [--config F] [--set FIELD=VALUE]` prints a resolved",
           "config as TOML with these comments.", "",
           "## `TrainerConfig` (`azr train`, `azr.Trainer`)", "",
           "Set fields in a TOML file (`--config`), with `--set FIELD=VALUE` (TOML syntax), or as",
           "keyword arguments (`TrainerConfig.preset(\"cpu\", lr=2e-5)`).", "",
           "| field | type | default | what it does |", "| --- | --- | --- | --- |"]
    for name, typ, default, hlp in field_table(TrainerConfig):
        out.append(f"| `{name}` | {typ} | {cell(default)} | {hlp.replace('|', '/')} |")
    out += ["", "## Presets", "",
            "`TrainerConfig.preset(name)` / `azr train --preset name`: the fields each preset changes",
            "from the defaults above.", ""]
    names = sorted(PRESETS)
    keys = [f.name for f in dataclasses.fields(TrainerConfig) if any(f.name in PRESETS[n] for n in names)]
    out += ["| field | " + " | ".join(f"`{n}`" for n in names) + " |", "| --- |" + " --- |" * len(names)]
    for k in keys:
        out.append(f"| `{k}` | " + " | ".join(cell(PRESETS[n][k]) if k in PRESETS[n] else "" for n in names) + " |")
    out += ["", "## Names from TRL", "",
            "TRL's `GRPOConfig` (and `transformers`' `TrainingArguments`) name some of these settings",
            "differently; an unknown field with one of these names is answered with ours.", "",
            "| TRL | azr | note |", "| --- | --- | --- |"]
    for trl, (ours, note) in TRL_NAMES.items():
        out.append(f"| `{trl}` | `{ours}` | {note} |")
    out += ["", "## `EvalConfig` (`azr eval`, `azr.evaluation.evaluate`)", "",
            "| field | type | default | what it does |", "| --- | --- | --- | --- |"]
    for name, typ, default, hlp in field_table(EvalConfig):
        out.append(f"| `{name}` | {typ} | {cell(default)} | {hlp.replace('|', '/')} |")
    return "\n".join(out) + "\n"


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


_with_field_docs(TrainerConfig)

__all__ = ["CHOICES", "PRESETS", "TRL_NAMES", "TrainerConfig", "check_fields", "check_writable_dir", "config_reference",
           "field_table"]

