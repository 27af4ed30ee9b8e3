"""`azr.Trainer`: the Absolute Zero self-play loop.

One step (``Trainer.step()``):

1. **Propose.** For each task type, B proposer prompts: deduction and
   abduction show K reference triplets from their buffer; induction shows one
   program from the deduction ∪ abduction buffers and asks for inputs and a
   message. All 3B prompts are sampled in one ``model.generate`` call.
2. **Validate.** Completions are parsed (:mod:`azr.tasks`) and the programs run
   in the sandbox (``executor.validate``: syntax, deny-list, determinism, gold
   output).
3. **Learnability.** Each valid proposal gets n solver rollouts (one generate
   call, prefix shared); the sandbox judges them; the solve rate ``acc`` gives
   the proposer reward (``1 - acc`` for ``0 < acc < 1``, -0.5 for 0 or 1, -1
   invalid). Valid tasks enter their buffer.
4. **Solve.** For each type, B tasks (this step's newest valid ones first,
   uniform fill from the buffer) are answered once (one generate call), judged
   in the sandbox and rewarded (+1 / -0.5 / -1).
5. **Oversee.** Every completion passes the monitors (:mod:`azr.monitors`).
6. **Update.** Task-Relative REINFORCE++ advantages per (task type, role), the
   clipped surrogate's per-token weights (:mod:`azr.rl`),
   ``model.loss_and_backward`` in micro-batches, then ``AdamW.step``.
7. **Log.** Metrics per (task, role) and per phase go to ``metrics.jsonl``.

The model, tokenizer, executor and optimizer are injected (or built from the
config), so any object with the documented interfaces (docs/api.md) works.
Checkpoints hold the model (``save_pretrained``), the optimizer state, the
buffers, the RNG state, the step and the config; :meth:`Trainer.resume`
continues exactly where the run stopped.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import rl
from .buffers import Buffers, load_seed_jsonl
from .config import TrainerConfig, check_writable_dir
from .monitors import Flag, MonitorSet, PatternMonitor, default_monitors
from .optim import lr_at
from .tasks import (TASK_TYPES, PromptTemplates, Proposal, Task, build_prompt_ids, forced_prefix,
                    judge_answers, parse_answer, parse_proposal, perturbed_inputs, program_shape, proposer_text,
                    resolve_style, response_plan, scaffold_extra, scaffold_stop, solver_text, split_induction,
                    validate_proposals)

# The built-in seeds (the paper starts from the identity function).
IDENTITY_TRIPLET = Task(kind="deduction", program="def f(a):\n    return a", input='"Hello world"',
                        output="'Hello world'", source="seed")
IDENTITY_INDUCTION = Task(kind="induction", program="def f(a):\n    return a",
                          inputs=['"Hello world"', "1", "[1, 2, 3]", "(1.5, 'x')"],
                          outputs=["'Hello world'", "1", "[1, 2, 3]", "(1.5, 'x')"],
                          message="The function returns its input unchanged.", source="seed")


@dataclass
class Rollout:
    """One sampled completion with everything the step learned about it."""

    task: str                      # deduction | abduction | induction
    role: str                      # propose | solve
    prompt_ids: list[int]
    prompt_text: str
    completion: Any                # a Completion (docs/api.md)
    text: str = ""                 # the completion text as parsed
    reward: float = 0.0
    outcome: str = ""              # propose: valid | invalid | malformed ; solve: correct | wrong | format_error
    reason: str = ""               # why invalid / format error
    acc: float | None = None       # propose: solve rate of the learnability rollouts
    item: Task | None = None       # the task proposed (valid) or solved
    flags: list[Flag] = field(default_factory=list)
    dropped: bool = False
    prefix: str = ""               # response text the prompt already wrote (parsed with the completion)
    plan: list[Any] = field(default_factory=lambda: [None])  # the rest of the response plan


@dataclass
class Response:
    """A response as the trainer sees it: the sampled spans of a response plan
    (:func:`azr.tasks.response_plan`) with the scaffold text written between
    them. ``token_ids`` is everything after the prompt; ``train_mask`` is 1
    where the model sampled the token (only those are trained);
    ``model_logprobs`` / ``logprobs`` are the sampler's (0 at scaffold tokens).
    ``text`` is what gets parsed: sampled text, the stop strings that ended
    each span, and the scaffold text. ``finish_reason`` is the last span's
    (``stop`` when the plan was completed)."""

    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    model_logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    finish_reason: str = "length"
    train_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))


def _n_sampled(c: Any) -> int:
    """Tokens the model sampled in a completion (scaffold tokens excluded)."""
    tm = getattr(c, "train_mask", None)
    return int(np.count_nonzero(tm)) if tm is not None else len(c.token_ids)


def _micro_batches(order: Sequence[int], lengths: np.ndarray, size: int, tokens: int) -> list[list[int]]:
    """Split rows (``order``: sorted by length, ascending) into micro-batches of
    at most ``size`` rows and, when ``tokens`` > 0, at most ``tokens`` padded
    positions (rows x longest row; a row longer than ``tokens`` goes alone)."""
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        L = int(lengths[i])
        if cur and (len(cur) >= size or (tokens > 0 and (len(cur) + 1) * max(L, int(lengths[cur].max())) > tokens)):
            out.append(cur)
            cur = []
        cur.append(int(i))
    if cur:
        out.append(cur)
    return out


def _gen_seed(seed: int, step: int, phase: int) -> int:
    return (seed * 1_000_003 + step * 7919 + phase * 104_729) % (2**31 - 1)


def _nan_to_none(v: float | None) -> float | None:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return float(v)


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- state files
def _save_tree(obj: Any, path_npz: Path, path_json: Path) -> None:
    """Save a nested dict/list of arrays and scalars: arrays in an .npz, the
    rest in JSON (no pickle, so a checkpoint can be read safely)."""
    arrays: dict[str, np.ndarray] = {}
    tree = _enc_tree(obj, arrays)
    np.savez(path_npz, **arrays)
    path_json.write_text(json.dumps(tree), encoding="utf-8")


# The encoder and decoder are module functions taking the array table as an
# argument: a recursive closure would form a reference cycle (function <->
# cell) that keeps the optimizer-state copies (2 x model size) alive until the
# cyclic collector happens to run -- 1 GB per checkpoint on SmolLM2-135M.
def _enc_tree(o: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(o, np.ndarray):
        k = f"a{len(arrays)}"
        arrays[k] = o
        return {"__array__": k}
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, dict):
        if not all(isinstance(k, str) for k in o):
            return {"__dict_items__": [[_enc_tree(k, arrays), _enc_tree(v, arrays)] for k, v in o.items()]}
        return {k: _enc_tree(v, arrays) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_enc_tree(x, arrays) for x in o]
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    raise TypeError(f"cannot save a {type(o).__name__} in a checkpoint")


def _dec_tree(o: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(o, dict):
        if set(o) == {"__array__"}:
            return arrays[o["__array__"]]
        if set(o) == {"__dict_items__"}:
            return {_dec_tree(k, arrays): _dec_tree(v, arrays) for k, v in o["__dict_items__"]}
        return {k: _dec_tree(v, arrays) for k, v in o.items()}
    if isinstance(o, list):
        return [_dec_tree(x, arrays) for x in o]
    return o


def _load_tree(path_npz: Path, path_json: Path) -> Any:
    tree = json.loads(path_json.read_text(encoding="utf-8"))
    with np.load(path_npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return _dec_tree(tree, arrays)


def _load_tokenizer(cfg: TrainerConfig) -> Any:
    """The tokenizer when the model came without one (e.g. a checkpoint dir):
    ``config.tokenizer``, else the tokenizer files of ``config.model``."""
    from .tokenizer import Tokenizer

    if cfg.tokenizer:
        return Tokenizer.from_pretrained(cfg.tokenizer)
    p = Path(cfg.model)
    if p.is_dir() and any((p / n).is_file() for n in ("tokenizer.json", "vocab.json")):
        return Tokenizer.from_pretrained(str(p))
    from .model import Model

    tok = getattr(Model.from_pretrained(cfg.model), "tokenizer", None)
    if tok is None:
        raise ValueError(f"model {cfg.model!r} has no tokenizer files; set config field 'tokenizer' to a "
                         f"tokenizer directory")
    return tok


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "merges.txt", "chat_template.jinja", "generation_config.json")


def _read_tokenizer_files(*dirs: Any) -> dict[str, bytes]:
    """The tokenizer files of the first directory that has a tokenizer.json or
    vocab.json (kept in memory: small, and the directory may be a checkpoint
    that is rotated away later)."""
    for d in dirs:
        if not d:
            continue
        p = Path(d)
        if p.is_dir() and any((p / n).is_file() for n in ("tokenizer.json", "vocab.json")):
            return {n: (p / n).read_bytes() for n in _TOKENIZER_FILES if (p / n).is_file()}
    return {}


# ------------------------------------------------------------------- trainer
def _check_reward_fns(fns: Sequence[Any], mode: str) -> list[tuple[Callable[[Any], Any], float]]:
    if mode not in ("add", "replace"):
        raise ValueError(f"reward_mode must be 'add' or 'replace', got {mode!r}")
    if callable(fns):
        fns = [fns]
    out = []
    for i, f in enumerate(fns):
        fn, w = (f if isinstance(f, tuple) else (f, 1.0))
        if not callable(fn) or isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise TypeError(f"reward_fns[{i}] must be a function or a (function, finite weight) pair, got {f!r}")
        out.append((fn, float(w)))
    return out


class Trainer:
    """Absolute Zero self-play. See the module docstring for the step.

    Parameters are the config and, optionally, ready-made pieces: ``model``
    (azr.Model or compatible), ``tokenizer`` (default ``model.tokenizer``, else
    ``azr.Tokenizer.from_pretrained(config.tokenizer)``), ``executor``
    (default ``azr.Executor`` from the config's sandbox fields, closed by
    :meth:`close`), ``optimizer`` (default ``azr.AdamW``), ``ref_model`` (only
    for ``kl_coef > 0``), ``monitors`` (default: the built-in patterns plus
    ``config.monitor_patterns``), ``callbacks`` (objects with optional
    ``on_step(trainer, metrics)`` and ``on_rollouts(trainer, rollouts)``),
    ``templates`` (default: ``config.templates`` or :class:`PromptTemplates`)
    and ``optimizer_factory(model, config)`` (used when ``optimizer`` is None;
    handy for :meth:`resume`, which builds the model itself).

    ``reward_fns``: your own rewards, as TRL's ``reward_funcs``: functions
    (or ``(function, weight)`` pairs) called with each judged
    :class:`Rollout` -- ``task`` and ``role``, the ``completion`` and its
    parsed ``text``, the ``outcome`` and ``reason`` the sandbox gave, the
    proposed or solved ``item`` (a Task), the learnability ``acc`` of a
    proposal, and ``reward``, the paper's reward -- returning a number, or
    None to leave that rollout alone. ``reward_mode`` "add" (the default)
    adds the weighted sum to the paper's reward; "replace" uses the weighted
    sum instead (for a rollout where every function returned None, the
    paper's reward stays). The task-relative advantages are computed from the
    result; the oversight monitors' penalties apply after it.

    A new trainer refuses a run directory (``config.out``) that already holds
    a run (metrics, checkpoints, samples, evaluations): continue it with
    :meth:`resume` (``azr train --resume DIR``), or pass ``overwrite=True``
    (``--overwrite``) to delete that run's files first.
    """

    def __init__(self, config: TrainerConfig, model: Any = None, executor: Any = None, tokenizer: Any = None,
                 optimizer: Any = None, ref_model: Any = None, monitors: MonitorSet | None = None,
                 callbacks: Sequence[Any] = (), templates: PromptTemplates | None = None,
                 optimizer_factory: Callable[[Any, TrainerConfig], Any] | None = None,
                 overwrite: bool | None = False, reward_fns: Sequence[Any] = (),
                 reward_mode: str = "add") -> None:
        config.validate()
        self.reward_fns = _check_reward_fns(reward_fns, reward_mode)
        self.reward_mode = reward_mode
        self.config = config
        cfg = config
        if overwrite is not None:  # None: resume() continues the run that is there
            _claim_run_dir(Path(cfg.out), bool(overwrite))
        check_writable_dir(cfg.out, "run directory (config field 'out')")
        src_dir: Any = None
        if model is None:
            from .model import Model  # the model engine (docs/api.md)

            model = Model.from_pretrained(cfg.model)
            if not Path(cfg.model).is_dir():  # a short name / .gguf: its (already converted) HF directory
                try:
                    from . import gguf

                    src_dir = gguf.ensure_hf_dir(cfg.model, progress=False)
                except Exception:  # noqa: BLE001 - only used to copy tokenizer files into checkpoints
                    src_dir = None
        self.model = model
        _check_context(cfg, model)
        if getattr(model, "_engine", None) is not None:  # azr's engine (not a stand-in model)
            from .generate import set_prefix_cache

            set_prefix_cache(model, cfg.prefix_cache_mb)
        # tokenizer files copied into every checkpoint, so it loads on its own
        self._tokenizer_files = _read_tokenizer_files(cfg.tokenizer, cfg.model, src_dir,
                                                      getattr(model, "source_dir", None))
        if tokenizer is None:
            tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            tokenizer = _load_tokenizer(cfg)
        self.tokenizer = tokenizer
        tv = getattr(tokenizer, "vocab_size", None)
        mv = getattr(getattr(model, "config", None), "vocab_size", None)
        if isinstance(tv, int) and isinstance(mv, int) and tv > mv:
            raise ValueError(f"the tokenizer has {tv} tokens but the model's vocabulary has {mv}: they do not "
                             f"belong together (set config 'model' to the model's directory, or 'tokenizer')")
        if getattr(model, "tokenizer", None) is None and hasattr(model, "generate"):
            # model.generate needs model.tokenizer for stop strings (a model
            # reloaded from a directory without tokenizer files has none)
            try:
                model.tokenizer = tokenizer
            except AttributeError:
                pass
        self._own_executor = executor is None
        if executor is None:
            from .executor import Executor

            executor = Executor(workers=cfg.executor_workers, timeout=cfg.executor_timeout,
                                memory_mb=cfg.executor_memory_mb)
        self.executor = executor
        if optimizer is None and optimizer_factory is not None:
            optimizer = optimizer_factory(model, cfg)
        if optimizer is None:
            from .optim import AdamW

            optimizer = AdamW(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps,
                              weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm)
        self.optimizer = optimizer
        if cfg.kl_coef > 0 and ref_model is None:
            from .model import Model

            ref_model = Model.from_pretrained(cfg.model)
        self.ref_model = ref_model
        if templates is None:
            templates = PromptTemplates.from_toml(cfg.templates) if cfg.templates else PromptTemplates()
        templates.check()
        self.templates = templates
        self.style = resolve_style(tokenizer, cfg.prompt_style)
        self.prefix = forced_prefix(self.style, templates)
        self.stop = scaffold_stop(cfg.scaffold)
        for kind in TASK_TYPES:  # a scaffold that clashes with the prompt's prefix fails now, not mid-run
            for role in ("propose", "solve"):
                scaffold_extra(self.prefix, response_plan(kind, role, cfg.scaffold, cfg.induction_inputs))
        self.run_dir = Path(cfg.out)
        self.rng = np.random.default_rng(cfg.seed)
        self.buffers = Buffers(cfg.buffer_capacity, cfg.eviction)
        if monitors is None:
            ms = default_monitors() + [PatternMonitor(k, v) for k, v in cfg.monitor_patterns.items()]
            monitors = MonitorSet(ms, audit_path=self.run_dir / "audit.jsonl", action=cfg.monitor_action,
                                  penalty=cfg.monitor_penalty)
        self.monitors = monitors
        self.callbacks = list(callbacks)
        self.step_count = 0
        self.seeded = False
        self._times: dict[str, float] = {}
        self._gen_tokens = 0
        self._skipped_long = 0
        self._shapes: dict[str, dict[tuple, str | None]] = {}
        self.best: dict[str, Any] | None = None  # keep_best: the best evaluation so far
        self._best_params: dict[str, np.ndarray] | None = None
        self._bar: Any = None
        self._seed_round: int | None = None  # the seeding round under way (progress bar)
        self.stop_reason: str | None = None  # set by request_stop (a callback): train() ends after the step
        self.last_metrics: dict[str, Any] | None = None
        self._heldout_keys: set[str] | None = None  # program keys never admitted to a buffer
        self._eval_sets: dict[str, Any] = {}
        self.last_eval: dict[str, Any] = {}
        self._eval_cache: dict[tuple[str, int], Any] = {}
        self._eval_cache_step = -1
        self.train_seconds = 0.0  # wall time of seeding, steps and checkpoints (evaluations excluded)
        self.last_eval_seconds = 0.0
        self._stats: dict[str, int] = {}
        self.eval_disabled = ""  # why evaluation during training is off although asked for ("" if not)
        if cfg.exclude_heldout or cfg.eval_every:
            self._prepare_heldout()

    def _prepare_heldout(self) -> None:
        """Load the held-out programs' keys (kept out of every buffer) and make
        sure the evaluation data is at hand. Without ``eval_every`` the files
        are used when present locally (nothing is downloaded; a run cannot
        meet programs it has no file of). With it they are downloaded into the
        cache if need be; when that fails, a folder the user named
        (``eval_data_dir``) is an error, otherwise training goes on with
        evaluation off, a warning and ``eval_disabled`` in the metrics."""
        from .evaluation.datasets import DataNotFoundError, task_file
        from .heldout import heldout_keys

        cfg = self.config
        want = bool(cfg.eval_every)
        d = cfg.eval_data_dir or None
        try:
            if cfg.exclude_heldout or (want and any(t.startswith("heldout") for t in cfg.eval_tasks)):
                self._heldout_keys = heldout_keys(d, download=want)
            if want and any(t.startswith("cruxeval") for t in cfg.eval_tasks):
                task_file("cruxeval-o", d, download=True, progress=False)
        except DataNotFoundError as e:
            if not want:
                return
            if cfg.eval_data_dir:
                raise
            import warnings

            self.eval_disabled = f"the evaluation data is unavailable: {e}"
            warnings.warn(f"azr train: evaluation during training is off ({self.eval_disabled}); set config "
                          f"field 'eval_data_dir' (or AZR_DATA_DIR) to a folder with the benchmark files",
                          stacklevel=3)

    def _held_out(self, program: str) -> bool:
        if not self._heldout_keys:
            return False
        from .heldout import program_key

        return program_key(program) in self._heldout_keys

    _OPT_HPARAMS = ("lr", "betas", "eps", "weight_decay", "max_grad_norm")

    def _load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore the optimizer's moments and step count from a checkpoint
        while keeping the hyper-parameters it was built with (from this
        config, by the default AdamW or ``optimizer_factory``): a resumed run
        with a changed ``lr`` (or betas, eps, weight decay, clipping) uses the
        new values, not the saved ones."""
        opt = self.optimizer
        keep = {k: getattr(opt, k) for k in self._OPT_HPARAMS if hasattr(opt, k)}
        opt.load_state_dict(state)
        for k, v in keep.items():
            setattr(opt, k, v)

    # ----------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close the executor if this trainer created it."""
        if self._own_executor and hasattr(self.executor, "close"):
            self.executor.close()
            self._own_executor = False

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add_callback(self, cb: Any) -> None:
        self.callbacks.append(cb)

    def _emit(self, name: str, payload: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn is not None:
                fn(self, payload)

    def _phase(self, name: str) -> None:
        self._cur_phase = name.split()[0]
        if self._bar is not None:
            where = f"seeding round {self._seed_round + 1}" if self._seed_round is not None else \
                f"step {self.step_count + 1}"
            self._bar.set_postfix_str(f"{where} {name}", refresh=True)

    # ------------------------------------------------------------ sampling
    def _prefix_stats(self) -> dict[str, int] | None:
        if getattr(self.model, "_engine", None) is None:
            return None
        from .generate import prefix_cache_stats

        return prefix_cache_stats(self.model)

    def _prefix_delta(self) -> dict[str, Any] | None:
        """The step's prompt tokens, those of them the prefix cache supplied
        (not prefilled), and their share."""
        now, before = self._prefix_stats(), getattr(self, "_pc0", None)
        if now is None or before is None:
            return None
        p = now["prompt_tokens"] - before["prompt_tokens"]
        r = now["reused_tokens"] - before["reused_tokens"]
        return {"prompt_tokens": p, "reused_tokens": r, "reuse_rate": (r / p) if p else None,
                "evicted_blocks": now["evicted_blocks"] - before["evicted_blocks"]}

    def _generate(self, prompts: list[list[int]], n: int, max_new_tokens: int, seed: int,
                  greedy: bool = False) -> list[list[Any]]:
        """One ``model.generate`` call with the run's sampling settings (or
        greedy: the most likely token each step, as evaluation answers)."""
        if not prompts:
            return []
        cfg = self.config
        kw: dict[str, Any] = dict(n=n, max_new_tokens=max_new_tokens, temperature=cfg.temperature,
                                  top_p=cfg.top_p, top_k=cfg.top_k, stop=[self.stop], seed=seed)
        if greedy:
            kw.update(temperature=1.0, top_p=1.0, top_k=1)
        if cfg.max_slots:
            kw["max_slots"] = cfg.max_slots
        if cfg.kv_budget_mb:
            kw["kv_budget_mb"] = cfg.kv_budget_mb
        t = time.perf_counter()
        outs = self.model.generate(prompts, **kw)
        dt = time.perf_counter() - t
        self._times["generate"] = self._times.get("generate", 0.0) + dt
        key = f"generate_{getattr(self, '_cur_phase', 'other')}"  # per phase: propose, learnability, solve
        self._times[key] = self._times.get(key, 0.0) + dt
        if len(outs) != len(prompts) or any(len(o) != n for o in outs):
            raise RuntimeError(f"model.generate returned {len(outs)} groups for {len(prompts)} prompts "
                               f"(expected {n} completions each)")
        for o in outs:
            for c in o:
                self._gen_tokens += len(c.token_ids)
        return outs

    def _sample(self, rolls_prompts: list[list[int]], plans: list[list[Any]], n: int, max_new_tokens: int,
                seed: int, greedy: bool = False) -> list[list[Response]]:
        """Sample ``n`` responses per prompt following each prompt's plan (the
        segments after the prompt's own scaffold text; see
        :func:`azr.tasks.response_plan`). The first sampled span of all prompts
        is one generate call (``n`` samples, prefix shared); each further span
        is one call over every response still going. ``max_new_tokens`` bounds
        the whole response, scaffold tokens included."""
        out = [[Response() for _ in range(n)] for _ in rolls_prompts]
        seg = [[0] * n for _ in rolls_prompts]
        done = [[False] * n for _ in rolls_prompts]
        parts: dict[tuple[int, int], list[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]]] = {}
        for i, plan in enumerate(plans):
            for j in range(n):
                parts[(i, j)] = []
                if not plan or plan[0] is not None:
                    raise ValueError("a response plan (after the prompt's scaffold) must start with a sampled span")
        round_ = 0
        while True:
            live = [(i, j) for i in range(len(rolls_prompts)) for j in range(n)
                    if not done[i][j] and seg[i][j] < len(plans[i]) and plans[i][seg[i][j]] is None]
            if not live:
                break
            budget = {(i, j): max_new_tokens - sum(len(p[0]) for p in parts[(i, j)]) for i, j in live}
            for key in [k for k, b in budget.items() if b <= 0]:
                i, j = key
                done[i][j] = True
                out[i][j].finish_reason = "length"
                live.remove(key)
            if not live:
                break
            cap = max(budget[k] for k in live)
            if round_ == 0:  # every response is at its first span: n samples per prompt
                outs = self._generate(rolls_prompts, n, cap, seed, greedy)
                got = {(i, j): outs[i][j] for i, j in live}
            else:
                prompts = [list(rolls_prompts[i]) + [t for p in parts[(i, j)] for t in p[0]] for i, j in live]
                outs = self._generate(prompts, 1, cap, (seed + 7919 * round_) % (2**31 - 1), greedy)
                got = {k: o[0] for k, o in zip(live, outs)}
            for (i, j), c in got.items():
                r = out[i][j]
                ids = list(c.token_ids)
                reason = c.finish_reason
                text = c.text
                if len(ids) > budget[(i, j)]:  # another response needed a longer span
                    ids = ids[:budget[(i, j)]]
                    reason = "length"
                    text = self.tokenizer.decode(ids)
                k = len(ids)
                parts[(i, j)].append((ids, np.asarray(c.logprobs[:k], np.float32),
                                      np.asarray(c.model_logprobs[:k], np.float32), np.ones(k, np.uint8)))
                r.text += text
                if reason != "stop":
                    done[i][j] = True
                    r.finish_reason = reason
                    continue
                r.text += self.stop
                s = seg[i][j] + 1
                plan = plans[i]
                while s < len(plan) and plan[s] is not None:
                    fixed = plan[s]
                    if s + 1 < len(plan):  # text the model reads before its next span
                        toks = list(self.tokenizer.encode(fixed, allow_special=False))
                        z = np.zeros(len(toks), np.float32)
                        parts[(i, j)].append((toks, z, z, np.zeros(len(toks), np.uint8)))
                    r.text += fixed
                    s += 1
                seg[i][j] = s
                if s >= len(plan):
                    done[i][j] = True
                    r.finish_reason = "stop"
            round_ += 1
        for (i, j), ps in parts.items():
            r = out[i][j]
            r.token_ids = [t for p in ps for t in p[0]]
            r.logprobs = np.concatenate([p[1] for p in ps]) if ps else np.zeros(0, np.float32)
            r.model_logprobs = np.concatenate([p[2] for p in ps]) if ps else np.zeros(0, np.float32)
            r.train_mask = np.concatenate([p[3] for p in ps]) if ps else np.zeros(0, np.uint8)
        return out

    def _exec(self, fn: Callable[..., Any], *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._times["execute"] = self._times.get("execute", 0.0) + time.perf_counter() - t

    def _too_long(self, ids: list[int]) -> bool:
        return bool(self.config.max_prompt_tokens) and len(ids) > self.config.max_prompt_tokens

    def _prompt(self, user_text: str, kind: str, role: str) -> tuple[list[int], str, str, list[Any]]:
        """Prompt ids and text (ending with the scaffold's leading text), the
        response prefix to parse with, and the rest of the response plan."""
        ids, full = build_prompt_ids(self.tokenizer, user_text, self.style, self.templates)
        plan = response_plan(kind, role, self.config.scaffold, self.config.induction_inputs)
        extra = scaffold_extra(self.prefix, plan)
        if extra:
            ids = ids + list(self.tokenizer.encode(extra, allow_special=False))
            full += extra
        rest = plan[1:] if isinstance(plan[0], str) else plan
        return ids, full, self.prefix + extra, rest

    # --------------------------------------------------------------- seeds
    def _validate_seeds(self, triplets: list[Task], induction: list[Task]) -> tuple[list[Task], list[Task]]:
        """Recompute gold outputs of seed tasks in the sandbox; drop failing ones."""
        props = [Proposal(program=t.program, input=t.input) for t in triplets]
        res = self._exec(validate_proposals, self.executor, "deduction", props, -1)
        trip = []
        for t, (task, _) in zip(triplets, res):
            if task is not None:
                task.source, task.imports = "seed", list(t.imports)
                trip.append(task)
        iprops = [Proposal(program=t.program, inputs=list(dict.fromkeys(s.strip() for s in t.inputs)),
                           message=t.message or "(no hint)") for t in induction]
        ires = self._exec(validate_proposals, self.executor, "induction", iprops, -1,
                          self.config.induction_min_pairs)
        ind = []
        for t, (task, _) in zip(induction, ires):
            if task is not None:
                task.source, task.imports = "seed", list(t.imports)
                ind.append(task)
        return trip, ind

    def prepare(self) -> None:
        """Fill the buffers before the first step: seed files (or the built-in
        identity seeds), validated in the sandbox; then, if ``seed_min`` > 0,
        rounds of proposals by the current model without updates."""
        if self.seeded:
            return
        cfg = self.config
        trip: list[Task] = []
        ind: list[Task] = []
        if cfg.seed_files:
            for p in cfg.seed_files:
                a, b = load_seed_jsonl(p, cfg.seed_limit or None)
                trip += a
                ind += b
        else:
            trip, ind = [IDENTITY_TRIPLET], [IDENTITY_INDUCTION]
        n_seeds = len(trip) + len(ind)
        trip = [t for t in trip if not self._held_out(t.program)]
        ind = [t for t in ind if not self._held_out(t.program)]
        self._stats["heldout_seeds_skipped"] = n_seeds - len(trip) - len(ind)
        trip, ind = self._validate_seeds(trip, ind)
        self.buffers.add_seed_triplets(trip, self.rng)
        self.buffers["induction"].extend(ind, self.rng)
        for r in range(cfg.seed_rounds):
            short = [k for k in cfg.task_types if len(self.buffers[k]) < cfg.seed_min]
            if cfg.seed_min and not short:
                break
            self._seed_round = r
            try:
                self._propose(step=0, round_=r, learnability=False, kinds=short if cfg.seed_min else None)
            finally:
                self._seed_round = None
        self.seeded = True

    # ------------------------------------------------------------- propose
    def _propose(self, step: int, round_: int = 0, learnability: bool = True,
                 kinds: Sequence[str] | None = None) -> tuple[list[Rollout], dict[str, list[Task]]]:
        cfg = self.config
        rolls: list[Rollout] = []
        meta: list[str] = []
        shown: list[list[Task]] = []  # the references each proposer prompt showed
        self._phase("propose")
        for kind in (cfg.task_types if kinds is None else kinds):
            for _ in range(cfg.batch_size):
                refs = []
                if kind == "induction":
                    pool = self.buffers.program_pool()
                    if not pool:
                        continue
                    prog = pool[int(self.rng.integers(len(pool)))].program
                    text = proposer_text(kind, self.templates, program=prog, n_inputs=cfg.induction_inputs)
                else:
                    refs = self.buffers.references(kind, cfg.k_references, self.rng, cfg.buffer_weighting)
                    prog = ""
                    text = proposer_text(kind, self.templates, refs)
                ids, full, prefix, plan = self._prompt(text, kind, "propose")
                while kind != "induction" and self._too_long(ids) and refs:
                    refs = refs[:-1]  # fewer references until the prompt fits
                    ids, full, prefix, plan = self._prompt(proposer_text(kind, self.templates, refs), kind,
                                                           "propose")
                if self._too_long(ids):
                    self._skipped_long += 1
                    continue
                rolls.append(Rollout(kind, "propose", ids, full, None, prefix=prefix, plan=plan))
                meta.append(prog)
                shown.append(list(refs))
        outs = self._sample([r.prompt_ids for r in rolls], [r.plan for r in rolls], 1,
                            cfg.max_new_tokens_propose, _gen_seed(cfg.seed, step, 10 + round_))
        for r, o in zip(rolls, outs):
            r.completion = o[0]
            r.text = o[0].text
        self._phase("validate")
        newest: dict[str, list[Task]] = {k: [] for k in TASK_TYPES}
        for kind in TASK_TYPES:
            idx = [i for i, r in enumerate(rolls) if r.task == kind]
            if not idx:
                continue
            flags = self.monitors.review(step, kind, "propose", [rolls[i].text for i in idx])
            props = [parse_proposal(kind, rolls[i].text, rolls[i].prefix, program=meta[i],
                                    max_inputs=cfg.induction_inputs) for i in idx]
            res = self._exec(validate_proposals, self.executor, kind, props, step, cfg.induction_min_pairs)
            for i, fl, p, (task, reason) in zip(idx, flags, props, res):
                r = rolls[i]
                r.flags = fl
                r.item, r.reason = task, reason
                r.outcome = "valid" if task is not None else ("malformed" if p.error else "invalid")
                if task is not None and self._held_out(task.program):
                    r.item, r.outcome, r.reason = None, "invalid", "heldout: a program of the held-out sets"
            if cfg.reject_trivial and kind != "induction":
                idx = [i for i in idx if rolls[i].item is not None]
                for i, why in zip(idx, self._trivial([(rolls[i].item, shown[i]) for i in idx],
                                                     constant=cfg.reject_constant)):
                    if why:
                        r = rolls[i]
                        r.item, r.outcome, r.reason = None, "invalid", why
            if cfg.max_same_shape and kind != "induction":
                self._limit_shapes(kind, [rolls[i] for i in idx])
        if learnability:
            self._learnability(rolls, step)
        for r in rolls:
            if r.item is None:
                continue
            if r.flags and self.monitors.action == "drop":
                continue
            if self.buffers[r.task].add(r.item, self.rng):
                newest[r.task].append(r.item)
                if r.acc is not None:  # the learnability rollouts are the task's first attempts
                    self.buffers[r.task].record(r.item, cfg.n_learnability, round(r.acc * cfg.n_learnability))
                if cfg.share_triplets and r.task in ("deduction", "abduction"):
                    other = "abduction" if r.task == "deduction" else "deduction"
                    twin = Task.from_dict({**r.item.to_dict(), "kind": other})
                    if self.buffers[other].add(twin, self.rng):
                        newest[other].append(twin)
        return rolls, newest

    def _limit_shapes(self, kind: str, rolls: list[Rollout]) -> None:
        """Mark invalid each valid proposal whose program has the shape
        (:func:`azr.tasks.program_shape`) of ``max_same_shape`` tasks already
        in the ``kind`` buffer or accepted earlier in this batch."""
        cap = self.config.max_same_shape
        known = self._shapes.get(kind, {})
        shapes = {t.key(): known[t.key()] if t.key() in known else program_shape(t.program)
                  for t in self.buffers[kind].tasks}
        self._shapes[kind] = shapes  # a cache of the buffer's shapes, evicted tasks dropped
        counts: dict[str | None, int] = {}
        for shape in shapes.values():
            counts[shape] = counts.get(shape, 0) + 1
        for r in rolls:
            if r.item is None:
                continue
            shape = program_shape(r.item.program)
            if counts.get(shape, 0) >= cap:
                r.item, r.outcome = None, "invalid"
                r.reason = f"duplicate: the {kind} buffer already holds {cap} programs of this shape"
            else:
                counts[shape] = counts.get(shape, 0) + 1

    def _trivial(self, items: list[tuple[Task, list[Task]]], constant: bool = True) -> list[str]:
        """Why each (valid deduction/abduction task, references shown) is
        trivial, "" when it is not: its program returns the input unchanged;
        (with ``constant``) its output stays the same on every perturbed input
        (:func:`azr.tasks.perturbed_inputs`: constant functions, and functions
        that ignore the literal arguments; an error on a perturbed input counts
        as a change); or it behaves like a reference (gives the reference's
        output on the reference's input, and the reference gives its output on
        its input). One batched sandbox call."""
        progs, golds, answers, owner = [], [], [], []
        for q, (t, refs) in enumerate(items):
            progs.append(IDENTITY_TRIPLET.program)
            golds.append(t.output)
            answers.append(t.input)
            owner.append((q, -1))
            for alt in (perturbed_inputs(t.input) if constant else ()):
                progs.append(t.program)
                golds.append(t.output)
                answers.append(alt)
                owner.append((q, -2))
            for k, ref in enumerate(refs):
                if not ref.output:
                    continue
                progs += [t.program, ref.program]
                golds += [ref.output, t.output]
                answers += [ref.input, t.input]
                owner += [(q, k), (q, k)]
        if not progs:
            return []
        vs = list(self._exec(self.executor.judge_input, progs, golds, answers))
        if len(vs) != len(progs):
            raise RuntimeError(f"executor.judge_input returned {len(vs)} verdicts for {len(progs)} answers")
        why = [""] * len(items)
        both: dict[tuple[int, int], int] = {}
        same = {q: True for q, k in owner if k == -2}  # every perturbed input gives the same output
        for (q, k), v in zip(owner, vs):
            if k == -2:
                same[q] = same[q] and v.correct
                continue
            if not v.correct:
                continue
            if k == -1:
                why[q] = why[q] or "trivial: the program returns its input unchanged"
            else:
                both[(q, k)] = both.get((q, k), 0) + 1
                if both[(q, k)] == 2:
                    why[q] = why[q] or f"trivial: behaves like reference {k + 1} on both inputs"
        for q, const in same.items():
            if const:
                why[q] = why[q] or "trivial: the output does not change when the input does"
        return why

    def _solver_prompt(self, task: Task) -> tuple[list[int], str, Any, str, list[Any]]:
        held = None
        shown: list[tuple[str, str]] = []
        if task.kind == "induction":
            shown, held = split_induction(task, self.rng)
        ids, full, prefix, plan = self._prompt(solver_text(task, self.templates, shown), task.kind, "solve")
        return ids, full, held, prefix, plan

    def _learnability(self, rolls: list[Rollout], step: int) -> None:
        cfg = self.config
        prompts, items, valid, prefixes, plans = [], [], [], [], []
        for r in rolls:
            if r.item is None:
                continue
            ids, _, held, prefix, plan = self._solver_prompt(r.item)
            if self._too_long(ids):  # a task nobody can be shown is not a valid task
                r.item, r.outcome, r.reason = None, "invalid", "solver prompt longer than max_prompt_tokens"
                self._skipped_long += 1
                continue
            valid.append(r)
            prompts.append(ids)
            items.append((r.item, held))
            prefixes.append(prefix)
            plans.append(plan)
        self._phase("learnability")
        outs = self._sample(prompts, plans, cfg.n_learnability, cfg.max_new_tokens_solve,
                            _gen_seed(cfg.seed, step, 2))
        self._phase("judge")
        for kind in TASK_TYPES:
            idx = [j for j, r in enumerate(valid) if r.task == kind]
            if not idx:
                continue
            flat_items, answers = [], []
            for j in idx:
                for c in outs[j]:
                    a, _ = parse_answer(kind, c.text, prefixes[j])
                    flat_items.append(items[j])
                    answers.append(a)
            ok = self._exec(judge_answers, self.executor, flat_items, answers)
            n = cfg.n_learnability
            for q, j in enumerate(idx):
                valid[j].acc = float(sum(ok[q * n:(q + 1) * n])) / n
        status = np.array([rl.VALID if r.item is not None else rl.INVALID for r in rolls], np.int32)
        ncor = np.array([round((r.acc or 0.0) * cfg.n_learnability) if r.item is not None else 0 for r in rolls],
                        np.int32)
        nsam = np.full(len(rolls), cfg.n_learnability, np.int32)
        for r, rew in zip(rolls, rl.proposer_rewards(status, ncor, nsam)):
            r.reward = float(rew)

    # --------------------------------------------------------------- solve
    def _solve(self, step: int, newest: dict[str, list[Task]]) -> list[Rollout]:
        cfg = self.config
        rolls: list[Rollout] = []
        items: list[tuple[Task, Any]] = []
        for kind in cfg.task_types:
            for task in self.buffers[kind].sample(cfg.batch_size, self.rng, newest[kind], cfg.buffer_weighting):
                ids, full, held, prefix, plan = self._solver_prompt(task)
                if self._too_long(ids):
                    self._skipped_long += 1
                    continue
                rolls.append(Rollout(kind, "solve", ids, full, None, item=task, prefix=prefix, plan=plan))
                items.append((task, held))
        self._phase("solve")
        outs = self._sample([r.prompt_ids for r in rolls], [r.plan for r in rolls], 1, cfg.max_new_tokens_solve,
                            _gen_seed(cfg.seed, step, 3))
        self._phase("judge")
        for kind in TASK_TYPES:
            idx = [i for i, r in enumerate(rolls) if r.task == kind]
            if not idx:
                continue
            answers = []
            for i in idx:
                r = rolls[i]
                r.completion = outs[i][0]
                r.text = r.completion.text
                a, why = parse_answer(kind, r.text, r.prefix)
                answers.append(a)
                r.reason = why
            ok = self._exec(judge_answers, self.executor, [items[i] for i in idx], answers)
            flags = self.monitors.review(step, kind, "solve", [rolls[i].text for i in idx])
            codes = []
            for i, a, good, fl in zip(idx, answers, ok, flags):
                r = rolls[i]
                r.flags = fl
                self.buffers[kind].record(r.item, 1, int(bool(good)))
                r.outcome = "format_error" if a is None else ("correct" if good else "wrong")
                codes.append({"correct": rl.CORRECT, "wrong": rl.WRONG, "format_error": rl.FORMAT_ERROR}[r.outcome])
            for i, rew in zip(idx, rl.solver_rewards(codes)):
                rolls[i].reward = float(rew)
        return rolls

    # -------------------------------------------------------------- update
    def _apply_reward_fns(self, rolls: list[Rollout]) -> None:
        """The user's reward functions (see the class docstring)."""
        for r in rolls:
            total, any_value = 0.0, False
            for fn, w in self.reward_fns:
                name = getattr(fn, "__name__", repr(fn))
                try:
                    v = fn(r)
                except Exception as e:
                    raise RuntimeError(f"reward function {name} failed on a {r.task} {r.role} rollout: "
                                       f"{type(e).__name__}: {e}") from e
                if v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                        or not math.isfinite(float(v)):
                    raise ValueError(f"reward function {name} returned {v!r} for a {r.task} {r.role} rollout; "
                                     "expected a finite number or None")
                total += w * float(v)
                any_value = True
            if any_value:
                r.reward = total if self.reward_mode == "replace" else r.reward + total

    def _update_at_precision(self, rolls: list[Rollout]) -> dict[str, Any]:
        """`_update` with the config's matmul precision, restored after."""
        if getattr(self.model, "_engine", None) is None:
            return self._update(rolls)
        from . import get_matmul_precision, set_matmul_precision

        before = get_matmul_precision()
        set_matmul_precision(self.config.precision)
        try:
            return self._update(rolls)
        finally:
            set_matmul_precision(before)

    def _update(self, rolls: list[Rollout]) -> dict[str, Any]:
        """Advantages, loss weights and one optimizer step over all rollouts."""
        cfg = self.config
        self._phase("update")
        t0 = time.perf_counter()
        train = [r for r in rolls if r.completion is not None and len(r.completion.token_ids) > 0]
        stats: dict[str, Any] = {"loss": None, "pg_loss": None, "grad_norm": None, "clip_frac": None,
                                 "entropy": None, "kl": None, "trained_sequences": 0, "trained_tokens": 0,
                                 "backward_sequences": 0}
        if not train:
            self._times["update"] = time.perf_counter() - t0
            return stats
        groups = np.array([-1 if r.dropped else rl.group_id(r.task, r.role) for r in train], np.int32)
        rewards = np.array([r.reward for r in train], np.float32)
        lens = np.array([_n_sampled(r.completion) for r in train], np.int32)
        adv, _, _ = rl.advantages(rewards, groups, lens, n_groups=6, mode=cfg.advantage_mode, eps=cfg.adv_eps)
        N = len(train)
        rows = []
        for r in train:
            full = list(r.prompt_ids) + list(r.completion.token_ids)
            old = np.asarray(r.completion.model_logprobs, np.float32)
            if old.shape != (len(r.completion.token_ids),):
                raise RuntimeError(f"a completion has {len(r.completion.token_ids)} tokens but "
                                   f"{old.shape} model_logprobs")
            if not r.prompt_ids:
                raise ValueError("a rollout has an empty prompt; the first response token has no context")
            tm = getattr(r.completion, "train_mask", None)
            tm = np.ones(len(old), np.uint8) if tm is None else np.asarray(tm, np.uint8)
            if tm.shape != old.shape:
                raise RuntimeError(f"a completion has {len(old)} tokens but a train_mask of shape {tm.shape}")
            rows.append((full, len(r.prompt_ids), old, tm))
        T = max(len(f) - 1 for f, _, _, _ in rows)
        ids = np.zeros((N, T), np.int32)
        tgt = np.zeros((N, T), np.int32)
        old_lp = np.zeros((N, T), np.float32)
        mask = np.zeros((N, T), np.uint8)
        lengths = np.zeros(N, np.int64)
        for b, (full, P, old, tm) in enumerate(rows):
            L = len(full) - 1
            ids[b, :L] = full[:-1]
            tgt[b, :L] = full[1:]
            old_lp[b, P - 1:L] = old
            mask[b, P - 1:L] = 0 if groups[b] < 0 else tm
            lengths[b] = L
        # micro-batches of similar lengths waste less padding
        order = [int(i) for i in np.argsort(lengths, kind="stable")]
        chunks = _micro_batches(order, lengths, cfg.micro_batch, cfg.micro_batch_tokens)
        need_fwd = cfg.entropy_coef > 0
        ref_lp = None
        if cfg.kl_coef > 0 and self.ref_model is not None:
            ref_lp = np.zeros((N, T), np.float32)
            for sl in chunks:
                Tm = int(lengths[sl].max())
                lp, _ = self.ref_model.logprobs(ids[sl, :Tm], tgt[sl, :Tm], lengths[sl])
                ref_lp[sl, :Tm] = lp
        grad_norm = None
        for epoch in range(cfg.ppo_epochs):
            if epoch == 0 and not need_fwd:
                cur, ent = old_lp, None  # ratio exactly 1 on the first pass
            else:
                cur = np.zeros((N, T), np.float32)
                ent = np.zeros((N, T), np.float32)
                for sl in chunks:
                    Tm = int(lengths[sl].max())
                    lp, en = self.model.logprobs(ids[sl, :Tm], tgt[sl, :Tm], lengths[sl])
                    cur[sl, :Tm] = lp
                    ent[sl, :Tm] = en
                if epoch == 0:
                    cur = np.where(mask != 0, old_lp, cur).astype(np.float32)  # ratio 1 on the first pass
            w, st = rl.policy_loss(cur, old_lp, adv, mask, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                                   aggregation=cfg.aggregation, entropy=ent, entropy_coef=cfg.entropy_coef,
                                   ref_logp=ref_lp, kl_coef=cfg.kl_coef)
            self.optimizer.zero_grad()
            if st.n_tokens > 0:
                # a row whose weights are all zero (advantage 0: its reward
                # equals its group's mean, e.g. every answer of a group a
                # format error) adds exactly nothing to the gradient, so only
                # the other rows are run; with none left the optimizer step
                # still runs (its momentum moves the weights, as with the
                # passes) after one pass (the optimizer wants a backward first)
                rows = [i for i in order if np.any(w[i])]
                live = _micro_batches(rows, lengths, cfg.micro_batch, cfg.micro_batch_tokens) if rows else chunks[:1]
                computed = sum(len(sl) for sl in live) if rows else 0
                # Model.backward, when the model has it, skips the log-prob
                # outputs and the vocabulary head at weight-0 (prompt) positions
                backward = getattr(self.model, "backward", None) or self.model.loss_and_backward
                for sl in live:
                    Tm = int(lengths[sl].max())
                    backward(ids[sl, :Tm], tgt[sl, :Tm], np.ascontiguousarray(w[sl, :Tm]), lengths[sl])
                grad_norm = float(self.optimizer.step())
                self.optimizer.zero_grad()
            stats.update(loss=st.loss, pg_loss=st.pg_loss, clip_frac=st.clip_frac,
                         entropy=st.entropy if ent is not None else None,
                         kl=st.kl if ref_lp is not None else None,
                         trained_sequences=int(st.n_seqs), trained_tokens=int(st.n_tokens))
            stats["backward_sequences"] = computed if st.n_tokens > 0 else 0
        stats["grad_norm"] = grad_norm
        for m in (self.model, self.ref_model):
            if m is not None and hasattr(m, "free_activations"):
                m.free_activations()  # generation (KV cache) comes next; activations would double the peak
        self._times["update"] = time.perf_counter() - t0
        return stats

    # ---------------------------------------------------------------- step
    def step(self) -> dict[str, Any]:
        """Run one self-play step; returns (and logs) its metrics."""
        if not self.seeded:
            self.prepare()
        step = self.step_count + 1
        self._emit("on_step_begin", step)
        self._times = {"generate": 0.0, "execute": 0.0, "update": 0.0}
        self._gen_tokens = 0
        self._skipped_long = 0
        self._pc0 = self._prefix_stats()
        t0 = time.perf_counter()
        prop: list[Rollout] = []
        newest: dict[str, list[Task]] = {k: [] for k in TASK_TYPES}
        if "propose" in self.config.roles:
            prop, newest = self._propose(step)
        solve = self._solve(step, newest) if "solve" in self.config.roles else []
        rolls = prop + solve
        if self.reward_fns:
            self._apply_reward_fns(rolls)
        for r in rolls:
            r.reward, r.dropped = self.monitors.adjust(r.reward, r.flags)
            r.reward = float(r.reward)
        self._emit("on_rollouts", rolls)
        cfg = self.config
        if cfg.lr_schedule != "constant" or cfg.warmup_steps:
            self.optimizer.lr = lr_at(cfg.lr_schedule, cfg.lr, step - 1, cfg.warmup_steps,
                                      cfg.decay_steps or cfg.steps, cfg.min_lr_ratio)
        upd = self._update_at_precision(rolls)
        self.step_count = step
        total = time.perf_counter() - t0
        self.train_seconds += total
        metrics = self._metrics(step, rolls, upd, total)
        evaluated = self._eval_due(step)
        if evaluated:
            metrics["eval"] = self._eval_summary(self.evaluate(step=step))
            metrics["time"]["eval"] = round(self.last_eval_seconds, 6)
        metrics["wall_time"] = round(time.time(), 3)
        metrics["train_seconds"] = round(self.train_seconds, 3)
        self.last_metrics = metrics
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.config.log_samples:
            self._log_samples(step, rolls)
        if evaluated:
            self._emit("on_eval", {"step": step, "eval": metrics["eval"], "time": {"eval": metrics["time"]["eval"]},
                                   "wall_time": metrics["wall_time"], "train_seconds": metrics["train_seconds"]})
        self._emit("on_step", metrics)
        return metrics

    def request_stop(self, reason: str = "stopped by a callback") -> None:
        """Ask :meth:`train` to end after the current step (a callback can
        call it from ``on_step`` or any other hook): the run then evaluates
        and saves as at a normal end. ``stop_reason`` holds ``reason``."""
        self.stop_reason = str(reason) or "stopped"

    # ----------------------------------------------------------- evaluation
    def _eval_due(self, step: int) -> bool:
        e = self.config.eval_every
        return bool(e) and not self.eval_disabled and step % e == 0

    @staticmethod
    def _eval_summary(ev: dict[str, Any]) -> dict[str, Any]:
        return {name: {k: r[k] for k in ("n", "accuracy", "deduction", "abduction", "empty_rate")}
                for name, r in ev.items()}

    def eval_set(self, name: str) -> Any:
        """The evaluation set ``name`` (:data:`azr.heldout.EVAL_SETS`), built
        once per trainer with this run's sandbox (gold outputs recomputed)."""
        if name not in self._eval_sets:
            from .heldout import load_eval_set

            self._eval_sets[name] = load_eval_set(name, self.executor, self.config.eval_data_dir or None)
        return self._eval_sets[name]

    def evaluate(self, sets: Sequence[str] | None = None, limit: int | None = None,
                 step: int | None = None, use_cache: bool = True) -> dict[str, Any]:
        """Answer held-out sets greedily with this run's solver prompts,
        scaffold and answer length, and judge the answers in the sandbox.

        ``sets`` defaults to ``config.eval_tasks``, ``limit`` (first N tasks of
        each set, 0 = all) to ``config.eval_limit``. Returns ``{set: {"n",
        "accuracy", "deduction", "abduction" (per-kind accuracy or None),
        "empty_rate" (no usable answer: an empty block or a format error),
        "too_long" (prompts longer than the model's context, counted wrong),
        "correct" (one bool per task), "ids", "answers"}}``. With ``step`` set, one line per set is
        appended to ``<out>/evals.jsonl`` (the per-task results, so runs can
        be compared task by task). A set already answered at this step (same
        limit) is not answered again (``use_cache=False`` forces it, e.g.
        after changing the weights by hand). Nothing here touches the training state:
        the random generator, buffers, weights and optimizer are unchanged,
        so a run with evaluations follows the same trajectory as one without.
        """
        cfg = self.config
        names = list(cfg.eval_tasks if sets is None else sets)
        lim = cfg.eval_limit if limit is None else int(limit)
        saved = (dict(self._times), self._gen_tokens, self._skipped_long)
        t0 = time.perf_counter()
        out: dict[str, Any] = {}
        if self._eval_cache_step != self.step_count:
            self._eval_cache, self._eval_cache_step = {}, self.step_count
        try:
            for name in names:
                if use_cache and (name, lim) in self._eval_cache:
                    out[name] = self._eval_cache[(name, lim)]
                    continue
                es = self.eval_set(name).limit(lim)
                self._phase(f"eval {name}")
                ctx = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
                prompts, prefixes, plans, fits = [], [], [], []
                for i, t in enumerate(es.tasks):
                    ids, _, prefix, plan = self._prompt(solver_text(t, self.templates), t.kind, "solve")
                    if isinstance(ctx, int) and len(ids) >= ctx:
                        continue  # the model cannot read it: answered wrong (counted in "too_long")
                    fits.append(i)
                    prompts.append(ids)
                    prefixes.append(prefix)
                    plans.append(plan)
                outs = self._sample(prompts, plans, 1, cfg.max_new_tokens_solve, _gen_seed(cfg.seed, 0, 5),
                                    greedy=True)
                answers: list[str | None] = [None] * len(es.tasks)
                for i, o, pf in zip(fits, outs, prefixes):
                    answers[i] = parse_answer(es.tasks[i].kind, o[0].text, pf)[0]
                correct = [False] * len(es.tasks)
                for kind in ("deduction", "abduction"):
                    idx = [i for i, t in enumerate(es.tasks) if t.kind == kind]
                    if idx:
                        ok = self._exec(judge_answers, self.executor, [(es.tasks[i], None) for i in idx],
                                        [answers[i] for i in idx])
                        for i, v in zip(idx, ok):
                            correct[i] = bool(v)

                def acc(kind: str | None) -> float | None:
                    c = [ok for ok, t in zip(correct, es.tasks) if kind is None or t.kind == kind]
                    return float(np.mean(c)) if c else None

                out[name] = {"n": len(es.tasks), "accuracy": acc(None), "deduction": acc("deduction"),
                             "abduction": acc("abduction"),
                             "empty_rate": float(np.mean([a is None for a in answers])) if answers else None,
                             "too_long": len(es.tasks) - len(fits),
                             "correct": correct, "ids": list(es.ids), "answers": answers}
                self._eval_cache[(name, lim)] = out[name]
        finally:
            self._times, self._gen_tokens, self._skipped_long = saved
        if step is not None and cfg.keep_best:
            self._consider_best(step, out)
        self.last_eval_seconds = time.perf_counter() - t0
        self.last_eval = out
        if step is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with open(self.run_dir / "evals.jsonl", "a", encoding="utf-8") as f:
                for name, r in out.items():
                    f.write(json.dumps({"step": step, "set": name, "seconds": round(self.last_eval_seconds, 3),
                                        **r}) + "\n")
        return out

    def _consider_best(self, step: int, out: dict[str, Any]) -> None:
        """``keep_best``: when this evaluation's accuracy on ``eval_tasks[0]``
        beats every earlier one, copy the weights (memory) and write them to
        ``<out>/best/`` (``model/`` and ``best.json``), replacing the old."""
        name = self.config.eval_tasks[0]
        r = out.get(name)
        if r is None or r.get("accuracy") is None:
            return
        if self.best is not None and r["accuracy"] <= self.best["accuracy"]:
            return
        self.best = {"step": int(step), "set": name, "accuracy": float(r["accuracy"]), "n": int(r["n"])}
        self._best_params = {k: v.copy() for k, v in self.model.parameters().items()}
        final = self.run_dir / "best"
        tmp = self._fresh_model_dir(self.run_dir / "best.tmp")
        (tmp / "best.json").write_text(json.dumps(self.best), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)

    def restore_best(self) -> dict[str, Any] | None:
        """Put the weights kept by ``keep_best`` into the model (from memory,
        or from ``<out>/best/model`` after a resume) and return their record
        ``{"step", "set", "accuracy", "n"}``; ``None`` (weights unchanged)
        when nothing was kept. For evaluating the selected weights after
        training: the optimizer's moments still belong to the last step."""
        if self.best is None:
            return None
        params = self._best_params
        if params is None:
            from .model import Model

            params = Model.from_pretrained(str(self.run_dir / "best" / "model")).parameters()
        mine = self.model.parameters()
        if set(params) != set(mine) or any(params[k].shape != v.shape for k, v in mine.items()):
            raise ValueError(f"{self.run_dir / 'best'}: the kept weights do not fit this model")
        for k, v in mine.items():
            v[...] = params[k]
        self._eval_cache, self._eval_cache_step = {}, -1
        return dict(self.best)

    def _log_samples(self, step: int, rolls: list[Rollout]) -> None:
        """One JSON line per trained completion: the prompt the model saw, what
        it wrote (after the response prefix), how it was judged, its reward
        and the task."""
        with open(self.run_dir / "samples.jsonl", "a", encoding="utf-8") as f:
            for r in rolls:
                rec = {"step": step, "task": r.task, "role": r.role, "prompt": r.prompt_text, "prefix": r.prefix,
                       "text": r.text,
                       "outcome": r.outcome, "reason": r.reason, "reward": r.reward, "acc": r.acc,
                       "flags": [fl.monitor for fl in r.flags], "dropped": r.dropped,
                       "item": r.item.to_dict() if r.item is not None else None}
                f.write(json.dumps(rec) + "\n")

    def _metrics(self, step: int, rolls: list[Rollout], upd: dict[str, Any], total: float) -> dict[str, Any]:
        tasks: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in TASK_TYPES:
            tasks[kind] = {}
            for role in ("propose", "solve"):
                rs = [r for r in rolls if r.task == kind and r.role == role]
                n = len(rs)
                lens = [_n_sampled(r.completion) for r in rs if r.completion is not None]
                m: dict[str, Any] = {
                    "count": n,
                    "mean_reward": _nan_to_none(float(np.mean([r.reward for r in rs]))) if n else None,
                    "response_len_mean": _nan_to_none(float(np.mean(lens))) if lens else None,
                    "response_len_max": int(max(lens)) if lens else None,
                    "flagged": sum(1 for r in rs if r.flags),
                    "dropped": sum(1 for r in rs if r.dropped),
                }
                if role == "propose":
                    valid = [r for r in rs if r.outcome == "valid"]
                    malformed = [r for r in rs if r.outcome == "malformed"]
                    accs = [r.acc for r in valid if r.acc is not None]
                    m["valid_rate"] = len(valid) / n if n else None
                    m["format_error_rate"] = len(malformed) / n if n else None
                    m["solve_acc"] = float(np.mean(accs)) if accs else None
                    m["learnability"] = (float(np.mean([(1 - a) if 0 < a < 1 else 0.0 for a in accs]))
                                         if accs else None)
                    m["learnable_rate"] = (sum(1 for a in accs if 0 < a < 1) / len(accs)) if accs else None
                else:
                    fe = sum(1 for r in rs if r.outcome == "format_error")
                    m["valid_rate"] = (n - fe) / n if n else None
                    m["format_error_rate"] = fe / n if n else None
                    m["solve_acc"] = sum(1 for r in rs if r.outcome == "correct") / n if n else None
                    m["learnability"] = None
                    m["learnable_rate"] = None
                tasks[kind][role] = m
        gen_t = self._times.get("generate", 0.0)
        return {
            "step": step,
            "tasks": tasks,
            "buffer": self.buffers.sizes(),
            "time": {**{k: round(v, 6) for k, v in self._times.items()}, "total": round(total, 6)},
            "generated_tokens": self._gen_tokens,
            "skipped_long_prompts": self._skipped_long,
            "tokens_per_s": (self._gen_tokens / gen_t) if gen_t > 0 else None,
            "prefix_cache": self._prefix_delta(),
            "peak_memory_mb": round(_peak_memory_mb(), 1),
            "monitor_counts": dict(self.monitors.counts),
            **{k: _nan_to_none(v) if isinstance(v, float) else v for k, v in upd.items()},
            "lr": float(getattr(self.optimizer, "lr", self.config.lr)),
            "heldout_excluded": bool(self._heldout_keys),
            **({"eval_disabled": self.eval_disabled} if self.eval_disabled else {}),
        }

    # --------------------------------------------------------------- train
    def train(self, steps: int | None = None) -> list[dict[str, Any]]:
        """Run until ``steps`` (default ``config.steps``) steps are done in total,
        or ``config.max_minutes`` of training wall time have passed (seeding,
        steps and checkpoints count; evaluations do not), checkpointing every
        ``save_every`` steps and at the end. With ``eval_every`` set, the
        held-out sets are answered before the first step, every
        ``eval_every`` steps and after the last step."""
        cfg = self.config
        target = cfg.steps if steps is None else int(steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(cfg.to_toml(), encoding="utf-8")
        out = []
        try:
            from tqdm.auto import tqdm

            budget_bound = cfg.max_minutes and target >= 100_000  # a time budget, not a step count, ends it
            # a bar on a terminal or in a notebook; a plain line per step otherwise (log files, --no-progress)
            if cfg.progress and (_isatty(sys.stderr) or "ipykernel" in sys.modules):
                self._bar = tqdm(total=None if budget_bound else target, initial=self.step_count,
                                 desc="azr train", unit="step")
        except ImportError:  # pragma: no cover - tqdm is a dependency
            self._bar = None
        budget = cfg.max_minutes * 60.0
        self.stop_reason = None
        self._emit("on_train_begin", None)
        try:
            evaluating = bool(cfg.eval_every) and not self.eval_disabled
            if evaluating and self.step_count == 0 and not self._evaluated(0):
                self._eval_record(0)
            if not self.seeded:
                self._phase("seed buffers")
                t = time.perf_counter()
                self.prepare()
                self.train_seconds += time.perf_counter() - t
            while (self.step_count < target and not (budget and self.train_seconds >= budget)
                   and self.stop_reason is None):
                m = self.step()
                out.append(m)
                summary = _bar_summary(m, self._eval_summary(self.last_eval))
                if self._bar is not None:
                    self._bar.update(1)
                    self._bar.set_postfix(summary, refresh=False)
                else:
                    _log_line(m, summary, target, budget)
                if cfg.save_every and self.step_count % cfg.save_every == 0:
                    self._timed_save()
            if self.stop_reason is not None:
                print(f"azr train: stopped after step {self.step_count}: {self.stop_reason}", file=sys.stderr,
                      flush=True)
            if evaluating and not self._evaluated(self.step_count):
                self._eval_record(self.step_count)
            if not cfg.save_every or self.step_count % cfg.save_every:
                self._timed_save()
            self.buffers.export_jsonl(self.run_dir / "buffers")  # readable tasks, the paper's seed format
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        self._emit("on_train_end", out)
        return out

    def _timed_save(self) -> None:
        t = time.perf_counter()
        self.save()
        self.train_seconds += time.perf_counter() - t

    def _evaluated(self, step: int) -> bool:
        """Whether metrics.jsonl already holds an evaluation of ``step``."""
        p = self.run_dir / "metrics.jsonl"
        if not p.is_file():
            return False
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("step") == step and "eval" in rec:
                return True
        return False

    def _eval_record(self, step: int) -> dict[str, Any]:
        """Evaluate now and append a metrics line ``{"step", "eval", "time"}``
        (used before the first step and after the last one)."""
        ev = self._eval_summary(self.evaluate(step=step))
        rec = {"step": step, "eval": ev, "time": {"eval": round(self.last_eval_seconds, 6)},
               "wall_time": round(time.time(), 3), "train_seconds": round(self.train_seconds, 3)}
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self._bar is not None:
            self._bar.set_postfix_str(_eval_line(ev), refresh=True)
        self._emit("on_eval", rec)
        return rec

    # ---------------------------------------------------------- checkpoints
    def _fresh_model_dir(self, tmp: Path) -> Path:
        """``tmp`` emptied and holding ``model/``: the weights and the tokenizer files."""
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.model.save_pretrained(str(tmp / "model"))
        for n, data in self._tokenizer_files.items():
            if not (tmp / "model" / n).exists():
                (tmp / "model" / n).write_bytes(data)
        return tmp

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write a checkpoint (default ``<out>/checkpoints/step_NNNNNN``) and mark it latest."""
        ck_root = self.run_dir / "checkpoints"
        final = Path(path) if path is not None else ck_root / f"step_{self.step_count:06d}"
        tmp = self._fresh_model_dir(final.with_name(final.name + ".tmp"))
        _save_tree(self.optimizer.state_dict(), tmp / "optimizer.npz", tmp / "optimizer.json")
        self.buffers.save(tmp / "buffers.json")
        state = {"version": 1, "step": self.step_count, "seeded": self.seeded, "config": self.config.to_dict(),
                 "rng": self.rng.bit_generator.state, "monitor_counts": dict(self.monitors.counts),
                 "train_seconds": self.train_seconds}
        (tmp / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if path is None:
            (ck_root / "latest.tmp").write_text(final.name, encoding="utf-8")
            os.replace(ck_root / "latest.tmp", ck_root / "latest")
            keep = self.config.keep_checkpoints
            if keep:
                olds = sorted(p for p in ck_root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
                for p in olds[:-keep]:
                    shutil.rmtree(p, ignore_errors=True)
        self._emit("on_save", final)
        return final

    @classmethod
    def resume(cls, run_dir: str | os.PathLike, model_loader: Callable[[str], Any] | None = None,
               overrides: Sequence[str] = (), checkpoint: str | os.PathLike | None = None,
               **kwargs: Any) -> "Trainer":
        """Rebuild a trainer from a run directory's latest checkpoint (or ``checkpoint``).

        ``model_loader(path)`` loads the saved model (default
        ``azr.Model.from_pretrained``); other keyword arguments go to the
        constructor (executor, tokenizer, optimizer factory...). ``overrides``
        are ``field=value`` strings applied to the saved config (e.g.
        ``steps=10``); the resulting config's optimizer settings (``lr``,
        ``beta1``, ``beta2``, ``adam_eps``, ``weight_decay``,
        ``max_grad_norm``) replace those saved with the optimizer state, whose
        moments and step count are kept. ``metrics.jsonl``, ``samples.jsonl``
        and ``evals.jsonl`` lines after the checkpoint's step are removed, so
        the resumed run's log reads as if never interrupted.
        """
        run = Path(run_dir)
        ck, state, cfg = _read_checkpoint(run, overrides, checkpoint)
        check_writable_dir(run, "run directory")  # before the model loads
        if model_loader is None:
            from .model import Model

            model_loader = Model.from_pretrained
        model = model_loader(str(ck / "model"))
        try:
            model.source_dir = str(ck / "model")  # its tokenizer files go into the next checkpoints
        except AttributeError:
            pass
        tr = cls(cfg, model=model, overwrite=None, **kwargs)
        tr._load_optimizer_state(_load_tree(ck / "optimizer.npz", ck / "optimizer.json"))
        tr.buffers = Buffers.load(ck / "buffers.json")
        try:
            tr.rng.bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f"checkpoint {ck}: trainer_state.json has an invalid 'rng' state ({e})") from None
        tr.step_count = int(state["step"])
        tr.seeded = bool(state.get("seeded", True))
        ts = state.get("train_seconds", 0.0)
        tr.train_seconds = float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else 0.0
        tr.monitors.counts.update(state.get("monitor_counts", {}))
        bj = run / "best" / "best.json"
        if cfg.keep_best and bj.is_file():
            try:
                best = json.loads(bj.read_text(encoding="utf-8"))
                if int(best["step"]) <= tr.step_count and isinstance(best["accuracy"], (int, float)):
                    tr.best = best
            except (ValueError, KeyError, TypeError):
                tr.best = None  # a damaged record: the next better evaluation replaces it
        for name in ("metrics.jsonl", "samples.jsonl", "evals.jsonl"):
            mpath = run / name
            if not mpath.is_file():
                continue
            kept = []
            for line in mpath.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= tr.step_count:
                        kept.append(line)
                except (json.JSONDecodeError, AttributeError):
                    continue
            mpath.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
        return tr


def _read_checkpoint(run: Path, overrides: Sequence[str] = (), checkpoint: str | os.PathLike | None = None
                     ) -> tuple[Path, dict[str, Any], TrainerConfig]:
    """The checkpoint :meth:`Trainer.resume` continues from (``run``'s latest
    or ``checkpoint``), its checked ``trainer_state.json`` and the resumed
    config (the saved one with ``overrides``), without loading any weights."""
    if checkpoint is None:
        latest = run / "checkpoints" / "latest"
        if not latest.is_file():
            raise FileNotFoundError(f"{run} has no checkpoints/latest: not a run directory, or no "
                                    f"checkpoint was written yet")
        ck = run / "checkpoints" / latest.read_text(encoding="utf-8").strip()
    else:
        ck = Path(checkpoint)
    if not (ck / "trainer_state.json").is_file():
        raise FileNotFoundError(f"checkpoint {ck} is incomplete (no trainer_state.json)")
    try:
        state = json.loads((ck / "trainer_state.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"checkpoint {ck}: trainer_state.json is not valid JSON ({e})") from None
    if not isinstance(state, dict) or state.get("version") != 1:
        raise ValueError(f"checkpoint {ck}: unsupported trainer_state.json (expected version 1)")
    for k in ("config", "step", "rng"):
        if k not in state:
            raise ValueError(f"checkpoint {ck}: trainer_state.json lacks {k!r}")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise ValueError(f"checkpoint {ck}: trainer_state.json 'step' must be an integer >= 0")
    if not isinstance(state["config"], dict):
        raise ValueError(f"checkpoint {ck}: trainer_state.json 'config' must be an object")
    cfg = TrainerConfig.from_dict(state["config"], where=f"{ck}/trainer_state.json")
    cfg.out = str(run)
    cfg.override(overrides)
    return ck, state, cfg


# What a run writes into its directory; a new run refuses a directory holding any of it.
_RUN_FILES = ("metrics.jsonl", "samples.jsonl", "evals.jsonl", "audit.jsonl", "config.toml", "learning.json")
_RUN_DIRS = ("checkpoints", "buffers", "best")


def _claim_run_dir(run: Path, overwrite: bool) -> None:
    """Refuse (ValueError) to start a new run in a directory that holds one,
    unless ``overwrite``, which deletes that run's files (nothing else)."""
    if not run.exists():
        return
    if not run.is_dir():
        raise ValueError(f"run directory {run} exists and is not a directory")
    found = [n for n in _RUN_FILES if (run / n).exists()] + [n for n in _RUN_DIRS if (run / n).exists()]
    if not found:
        return
    if not overwrite:
        raise ValueError(f"{run} already holds a run ({', '.join(found)}): continue it with "
                         f"`azr train --resume {run}` (Trainer.resume), choose another --out, or pass "
                         f"--overwrite (Trainer(..., overwrite=True)) to delete that run first")
    for n in found:
        p = run / n
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _check_context(cfg: TrainerConfig, model: Any) -> None:
    """Refuse (ValueError) a prompt budget the model's context cannot hold:
    ``max_prompt_tokens`` plus the longer response budget must fit in
    ``max_position_embeddings`` (otherwise long prompts fail mid-run)."""
    ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not isinstance(ctx, int) or isinstance(ctx, bool):
        return
    budgets = [("max_new_tokens_solve", cfg.max_new_tokens_solve)]  # solving, learnability, evaluation
    if "propose" in cfg.roles or cfg.seed_rounds:
        budgets.append(("max_new_tokens_propose", cfg.max_new_tokens_propose))
    field_, new = max(budgets, key=lambda x: x[1])
    prompt = cfg.max_prompt_tokens  # 0: no limit, but a prompt has at least one token
    if (prompt + new <= ctx) if prompt else (new < ctx):
        return
    have = f"the model {cfg.model} has a context of {ctx} positions (max_position_embeddings)"
    if new >= ctx:
        raise ValueError(f"config field {field_!r} = {new} leaves no room for a prompt: {have}; lower it "
                         f"(--set {field_}=N) and set max_prompt_tokens so that both fit")
    raise ValueError(f"the prompt budget does not fit the model: max_prompt_tokens ({prompt}) + {field_} "
                     f"({new}) = {prompt + new} tokens, but {have}; lower max_prompt_tokens to {ctx - new} "
                     f"or less (--set max_prompt_tokens={ctx - new}) or the max_new_tokens_* fields")


def _bar_summary(m: dict[str, Any], last_eval: dict[str, Any] | None = None) -> dict[str, str]:
    """The progress bar's fields: per task type the proposals' valid rate and
    the solvers' solve rate, seconds per step, and the latest evaluation."""
    out = {}
    for kind, short in (("deduction", "ded"), ("abduction", "abd"), ("induction", "ind")):
        p = m["tasks"][kind]["propose"]["valid_rate"]
        s = m["tasks"][kind]["solve"]["solve_acc"]
        out[short] = f"{'-' if p is None else f'{p:.2f}'}/{'-' if s is None else f'{s:.2f}'}"
    out["s/step"] = f"{m['time']['total']:.1f}"
    ev = m.get("eval") or last_eval
    if ev:
        out["eval"] = _eval_line(ev)
    return out


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _log_line(m: dict[str, Any], summary: dict[str, str], target: int, budget: float) -> None:
    """One plain progress line per step on stderr, for runs without a bar
    (``progress = false``, or stderr not a terminal: nohup, batch jobs)."""
    of = f"/{target}" if target < 100_000 or not budget else ""
    left = f", {max(0.0, budget - m['train_seconds']) / 60:.1f} min left" if budget else ""
    fields = " ".join(f"{k}={v}" for k, v in summary.items())
    print(f"azr train: step {m['step']}{of} {fields} ({m['train_seconds'] / 60:.1f} min trained{left})",
          file=sys.stderr, flush=True)


def _eval_line(ev: dict[str, Any]) -> str:
    """``heldout-dev 0.123 ...``: each evaluated set's accuracy."""
    return " ".join(f"{k} {'-' if v.get('accuracy') is None else format(v['accuracy'], '.3f')}"
                    for k, v in ev.items())


def build_trainer(config: TrainerConfig, model: Any = None, executor: Any = None, **kwargs: Any) -> Trainer:
    """A Trainer from a config plus optional ready-made model/executor/... (see :class:`Trainer`)."""
    return Trainer(config, model=model, executor=executor, **kwargs)


# ----------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    from .config import _toml_value, field_table

    fields = "\n".join(f"  {name} = {_toml_value(default)}\n      {hlp}" for name, _, default, hlp in field_table())
    p = argparse.ArgumentParser(prog="azr train", description="Absolute Zero self-play training.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="config fields (--set FIELD=VALUE, TOML syntax; defaults before any "
                                       "preset; docs/config.md):\n" + fields)
    p.add_argument("--preset", default=None, help="cpu | paper | quickstart (default: quickstart unless --config)")
    p.add_argument("--config", default=None, help="TOML file with TrainerConfig fields")
    p.add_argument("--steps", type=int, default=None, help="total steps to reach")
    p.add_argument("--out", default=None, help="run directory (metrics.jsonl, checkpoints/)")
    p.add_argument("--model", default=None, help="model path or short name")
    p.add_argument("--seed-file", action="append", default=None, help="seed JSONL (paper format); repeatable")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any TrainerConfig field; repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar: one plain line per step")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in --out (metrics, checkpoints, ...) instead of refusing")
    p.add_argument("--show-config", action="store_true",
                   help="print the resolved config (preset, --config, --set, ...) as commented TOML and exit")
    return p


def _check_resume_flags(args: argparse.Namespace) -> None:
    """``--resume RUN`` continues RUN as saved: refuse (ValueError) the flags
    that would otherwise be ignored, each with the reason."""
    run = Path(args.resume)
    why = []
    if args.out is not None and Path(args.out).resolve() != run.resolve():
        why.append(f"--out {args.out} (a resumed run stays in {run})")
    for flag, given, reason in (
            ("--preset", args.preset, "a resumed run keeps its saved config; change a field with --set FIELD=VALUE"),
            ("--config", args.config, "a resumed run keeps its saved config; change a field with --set FIELD=VALUE"),
            ("--model", args.model, "a resumed run continues from its checkpoint's model"),
            ("--seed-file", args.seed_file, "a resumed run's buffers come from its checkpoint"),
            ("--overwrite", args.overwrite, "--overwrite deletes a run, --resume continues it")):
        if given:
            why.append(f"{flag} ({reason})")
    if why:
        raise ValueError(f"--resume {run} cannot be combined with " + "; ".join(why))


def _nothing_to_do(run: str, state: dict[str, Any], cfg: TrainerConfig) -> str:
    """Why resuming ``run`` would train no step ("" when it would)."""
    step = state["step"]
    if step >= cfg.steps:
        return (f"{run} already has {step} steps done and its target is {cfg.steps}: nothing to do "
                f"(pass --steps N with N > {step} to train further)")
    spent = state.get("train_seconds", 0.0)
    if cfg.max_minutes and isinstance(spent, (int, float)) and spent >= cfg.max_minutes * 60:
        return (f"{run} has used its training time ({spent / 60:.1f} of max_minutes = {cfg.max_minutes:g}): "
                f"nothing to do (raise it with --set max_minutes=M)")
    return ""


def cli_main(argv: Sequence[str] | None = None, **trainer_kwargs: Any) -> int:
    """``azr train ...``: returns the exit status. ``trainer_kwargs`` go to the
    Trainer (tests inject a model/executor this way)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["train"]:
        args_list = args_list[1:]
    args = _parser().parse_args(args_list)
    try:
        sets = list(args.set)
        if args.steps is not None:
            sets.append(f"steps={args.steps}")
        if args.no_progress:
            sets.append("progress=false")
        if args.resume:
            _check_resume_flags(args)
            _, state, cfg = _read_checkpoint(Path(args.resume), sets)
            if args.show_config:
                sys.stdout.write(cfg.to_toml(comments=True))
                return 0
            done = _nothing_to_do(args.resume, state, cfg)
            if done:
                print(f"azr train: {done}", file=sys.stderr)
                return 0
            loader = trainer_kwargs.pop("model_loader", None)
            tr = Trainer.resume(args.resume, model_loader=loader, overrides=sets, **trainer_kwargs)
        else:
            trainer_kwargs.pop("model_loader", None)
            if args.config:
                cfg = TrainerConfig.from_toml(args.config)
                if args.preset:
                    raise ValueError("give either --preset or --config (a config may name its preset)")
            else:
                cfg = TrainerConfig.preset(args.preset or "quickstart")
            if args.out:
                cfg.set("out", args.out)
            if args.model:
                cfg.set("model", args.model)
            if args.seed_file:
                cfg.set("seed_files", args.seed_file)
            cfg.override(sets)
            if args.show_config:
                sys.stdout.write(cfg.to_toml(comments=True))
                return 0
            tr = Trainer(cfg, overwrite=args.overwrite, **trainer_kwargs)
        with tr:
            tr.train()
            m = tr.last_metrics
        if m is not None:
            print(f"azr train: {tr.step_count} steps done; run directory {tr.run_dir}", file=sys.stderr)
        return 0
    except (ValueError, FileNotFoundError) as e:
        print(f"azr train: error: {e}", file=sys.stderr)
        return 2


__all__ = ["Rollout", "Trainer", "build_trainer", "cli_main"]

if __name__ == "__main__":  # python -m azr.trainer train --preset quickstart ...
    sys.exit(cli_main())
