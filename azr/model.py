"""The model engine's Python face: `ModelConfig` and `Model`.

A `Model` is a decoder-only transformer of the Llama family (Hugging Face
`model_type` ``llama``, ``qwen2`` and ``mistral`` configs without sliding
windows, or a Mistral window no shorter than the context) whose math runs in the C core (`azr._core.Model`). Parameters live
in one float32 arena; `parameters()` and `grads()` return NumPy views into it
under Hugging Face names, so a notebook can inspect or edit them in place.

Batches are right-padded int32 arrays ``ids`` (B, T) with ``lengths`` (B,)
valid tokens per row. Positions at or past a row's length give log-prob 0
and entropy 0 and receive no gradient. The vocabulary projection is chunked:
`logprobs` and `loss_and_backward` never build the (B, T, V) logits.

Example::

    m = azr.Model.from_pretrained("path/to/hf_dir")
    logp, ent = m.logprobs(ids, targets, lengths)
    loss, logp, ent = m.loss_and_backward(ids, targets, weights, lengths)
    opt = azr.AdamW(m, lr=1e-5); opt.step(); opt.zero_grad()
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _jsonfile
from ._native import _core

FormatError = _core.FormatError
UnsupportedError = _core.UnsupportedError

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")
_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
_MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size",
             "num_experts_per_tok")


@dataclass
class ModelConfig:
    """The subset of a Hugging Face ``config.json`` this engine implements.

    Build it with `from_hf_dict` (which refuses options the engine does not
    implement, naming them) or directly for random models in tests.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    model_type: str = "llama"
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # q/k/v biases (always True for qwen2)
    bos_token_id: int | list[int] | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # Mistral's attention window. azr computes full attention, which is the
    # same as the window only over sequences of at most this many positions,
    # so a window shorter than max_position_embeddings is refused and longer
    # batches are refused at run time.
    sliding_window: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedError(
                f"config: model_type {self.model_type!r} is not supported; "
                f"azr implements {', '.join(SUPPORTED_MODEL_TYPES)}")
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"config: {name} must be a positive integer, got {v!r}")
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"config: hidden_size {self.hidden_size} is not divisible by "
                    f"num_attention_heads {self.num_attention_heads}; set head_dim")
            self.head_dim = self.hidden_size // self.num_attention_heads
        if isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int) \
                or self.head_dim <= 0 or self.head_dim % 2:
            raise ValueError(f"config: head_dim must be a positive even integer, got {self.head_dim!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"config: num_key_value_heads {self.num_key_value_heads} must divide "
                f"num_attention_heads {self.num_attention_heads}")
        for name in ("rms_norm_eps", "rope_theta"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"config: {name} must be a positive number, got {v!r}")
        mp = self.max_position_embeddings
        if isinstance(mp, bool) or not isinstance(mp, int) or mp <= 0:
            raise ValueError(f"config: max_position_embeddings must be a positive integer, got {mp!r}")
        sw = self.sliding_window
        if sw is not None:
            if isinstance(sw, bool) or not isinstance(sw, int) or sw <= 0:
                raise ValueError(f"config: sliding_window must be a positive integer or null, got {sw!r}")
            if self.model_type != "mistral":
                raise ValueError(f"config: sliding_window is a mistral option, not {self.model_type}'s")
            if sw < mp:
                raise UnsupportedError(
                    f"config: sliding_window={sw} is shorter than max_position_embeddings={mp}: "
                    "sliding-window attention is not implemented (azr computes full attention, "
                    "which differs from the window on sequences longer than it)")
        if self.model_type == "qwen2":
            self.attention_bias = True

    # ---- Hugging Face config.json ------------------------------------------------

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Read a Hugging Face config dict; refuse what azr does not implement.

        Raises `azr.UnsupportedError` naming the option (unknown model_type,
        rope scaling kinds, sliding-window attention, mixture of experts,
        activations other than SiLU, MLP or output-projection biases) and
        ValueError naming a missing or invalid field.
        """
        if not isinstance(d, dict):
            raise ValueError("config must be a JSON object")
        mt = d.get("model_type")
        if mt not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedError(
                f"config: model_type {mt!r} is not supported; azr implements "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}")
        theta = d.get("rope_theta")
        rp = d.get("rope_parameters")
        if isinstance(rp, dict):
            rtype = rp.get("rope_type", rp.get("type", "default"))
            if rtype not in (None, "default"):
                raise UnsupportedError(
                    f"config: rope_parameters.rope_type {rtype!r} is not implemented "
                    "(azr supports plain RoPE only)")
            if theta is None:
                theta = rp.get("rope_theta")
        rs = d.get("rope_scaling")
        if rs is not None:
            rtype = rs.get("rope_type", rs.get("type")) if isinstance(rs, dict) else rs
            if rtype not in (None, "default"):
                raise UnsupportedError(
                    f"config: rope_scaling of type {rtype!r} is not implemented "
                    "(azr supports plain RoPE only)")
        act = d.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise UnsupportedError(f"config: hidden_act {act!r} is not implemented (only 'silu')")
        if d.get("use_sliding_window"):
            raise UnsupportedError("config: use_sliding_window=true (sliding-window attention) "
                                   "is not implemented")
        # Mistral's sliding_window applies whenever it is set (transformers has no
        # use_sliding_window switch for it); it is checked with the context in
        # __post_init__. Llama and Qwen2 (use_sliding_window false) ignore it.
        lt = d.get("layer_types")
        if lt is not None and not isinstance(lt, list):
            raise ValueError(f"config: layer_types must be a list, got {lt!r}")
        if lt and any(t != "full_attention" for t in lt):
            raise UnsupportedError("config: layer_types other than 'full_attention' "
                                   "(sliding-window layers) are not implemented")
        for k in _MOE_KEYS:
            v = d.get(k)
            if v:
                raise UnsupportedError(f"config: {k}={v} (mixture of experts) is not implemented")
        if d.get("mlp_bias"):
            raise UnsupportedError("config: mlp_bias=true is not implemented")
        if mt != "qwen2" and d.get("attention_bias"):
            raise UnsupportedError(f"config: attention_bias=true for {mt} (o_proj bias) "
                                   "is not implemented")
        for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads"):
            if k not in d:
                raise ValueError(f"config: required field {k!r} is missing")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        if mt != "mistral":
            known.discard("sliding_window")
        kwargs = {k: d[k] for k in known if k in d and d[k] is not None}
        kwargs["model_type"] = mt
        kwargs.pop("attention_bias", None)
        if theta is not None:
            if isinstance(theta, bool) or not isinstance(theta, (int, float)):
                raise ValueError(f"config: rope_theta must be a positive number, got {theta!r}")
            kwargs["rope_theta"] = float(theta)
        kwargs["tie_word_embeddings"] = bool(d.get("tie_word_embeddings", False))
        cfg = cls(**kwargs)
        cfg.extra = {k: v for k, v in d.items() if k not in known}
        return cfg

    def to_hf_dict(self) -> dict[str, Any]:
        """A config.json dict that `transformers` loads as the same model."""
        d: dict[str, Any] = {
            "architectures": [_ARCH[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float32",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        }
        if self.pad_token_id is not None:
            d["pad_token_id"] = self.pad_token_id
        if self.model_type == "llama":
            d["attention_bias"] = False
            d["mlp_bias"] = False
        if self.model_type == "qwen2":
            d["use_sliding_window"] = False
        if self.model_type == "mistral":  # transformers' default would be a 4096-token window
            d["sliding_window"] = self.sliding_window
        return d

    def _engine_kwargs(self) -> dict[str, Any]:
        return dict(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                    intermediate_size=self.intermediate_size, num_layers=self.num_hidden_layers,
                    num_heads=self.num_attention_heads, num_kv_heads=self.num_key_value_heads,
                    head_dim=self.head_dim, rms_eps=float(self.rms_norm_eps),
                    rope_theta=float(self.rope_theta), qkv_bias=bool(self.attention_bias),
                    tie_embeddings=bool(self.tie_word_embeddings))

    def memory_estimate(self, batch: int, seq_len: int, training: bool = True) -> int:
        """Bytes a model of this config needs for one (batch, seq_len) step."""
        return int(_core.memory_estimate(int(batch), int(seq_len), bool(training),
                                         **self._engine_kwargs()))


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Model:
    """A Llama/Qwen2 decoder whose forward, backward and AdamW run in C.

    Create with `from_pretrained` or `from_config`. See the module docstring
    for the batch conventions.
    """

    def __init__(self, config: ModelConfig):
        self.config = config
        self._engine = _core.Model(**config._engine_kwargs())
        self._table = self._engine.tensors()
        self._params = self._engine.params()
        self._grads: np.ndarray | None = None
        self._act_peak = 0
        self.tokenizer = None

    # ---- construction ----------------------------------------------------------

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int = 0, init_std: float = 0.02) -> "Model":
        """A randomly initialized model: matrices ~ N(0, init_std), norms 1, biases 0."""
        m = cls(config)
        rng = np.random.default_rng(seed)
        for name, arr in m.parameters().items():
            if name.endswith("norm.weight"):
                arr[...] = 1.0
            elif name.endswith(".bias"):
                arr[...] = 0.0
            else:
                arr[...] = rng.normal(0.0, init_std, arr.shape)
        return m

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Model":
        """Load a Hugging Face directory (config.json + *.safetensors).

        A path that is not a directory (a ``.gguf`` file or a short name such
        as ``"smollm2-135m-instruct"``) is converted once to a cached HF
        directory by `azr.gguf`. A Hub id (``owner/name``) is read from the
        local Hugging Face cache when it is there; azr never downloads. The tokenizer is attached as ``.tokenizer``
        when the directory has tokenizer files.
        """
        p = Path(path)
        if not p.is_dir():
            try:
                from . import gguf  # noqa: PLC0415 - optional layer, imported lazily
            except ImportError as exc:
                raise FileNotFoundError(
                    f"{str(path)!r} is not a model directory (config.json + model.safetensors), "
                    "and loading GGUF files or short names needs azr.gguf, which is not "
                    f"available ({exc})") from exc
            p = Path(gguf.ensure_hf_dir(str(path)))
        cfg_path = p / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path} not found: a model directory needs config.json")
        raw = _jsonfile.load(cfg_path)
        try:
            cfg = ModelConfig.from_hf_dict(raw)
        except UnsupportedError as exc:
            raise UnsupportedError(_in_file(cfg_path, exc)) from None
        except ValueError as exc:  # a missing or invalid field (FormatError is one too)
            raise FormatError(_in_file(cfg_path, exc)) from None
        files = _weight_files(p)
        m = cls(cfg)
        m._engine.load_safetensors([str(f) for f in files])
        if (p / "tokenizer.json").is_file() or (p / "vocab.json").is_file():
            try:
                from .tokenizer import Tokenizer  # noqa: PLC0415 - another layer, optional
            except ImportError:
                Tokenizer = None  # noqa: N806
            if Tokenizer is not None:
                try:
                    m.tokenizer = Tokenizer.from_pretrained(p)
                except Exception as exc:  # noqa: BLE001 - the model itself loaded fine
                    warnings.warn(f"{p}: tokenizer not attached: {exc}", stacklevel=2)
        return m

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write config.json and model.safetensors (F32) that transformers loads."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        with open(p / "config.json", "w", encoding="utf-8") as f:
            json.dump(self.config.to_hf_dict(), f, indent=2)
        self._engine.save_safetensors(str(p / "model.safetensors"))

    # ---- parameters --------------------------------------------------------------

    @property
    def num_params(self) -> int:
        return int(self._engine.num_params())

    def _views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return {name: flat[off:off + int(np.prod(shape))].reshape(shape)
                for name, off, shape in self._table}

    def parameters(self) -> dict[str, np.ndarray]:
        """HF names -> float32 views into the parameter arena (writable)."""
        return self._views(self._params)

    def grads(self) -> dict[str, np.ndarray]:
        """HF names -> float32 views into the gradient arena (same layout)."""
        if self._grads is None:
            self._grads = self._engine.grads()
        return self._views(self._grads)

    def zero_grad(self) -> None:
        """Set all gradients to zero."""
        self._engine.zero_grad()

    def memory_estimate(self, batch: int, seq_len: int, training: bool = True) -> int:
        """Bytes one step on a (batch, seq_len) batch needs (arenas + activations)."""
        return int(self._engine.memory_estimate(int(batch), int(seq_len), bool(training)))

    def free_activations(self) -> None:
        """Release the activation memory (kept at the largest batch seen between calls),
        e.g. before generating; the next call allocates what it needs."""
        self._engine.free_activations()
        self._act_peak = 0

    @property
    def activation_bytes(self) -> int:
        """Bytes currently held for activations."""
        return int(self._engine.activation_bytes())

    # ---- compute -------------------------------------------------------------------

    def _batch(self, ids, targets=None, weights=None, lengths=None):
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be a 2-D (batch, seq_len) array, got shape {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
        B, T = ids.shape
        V = self.config.vocab_size

        def as_ids(a, what):
            a = np.asarray(a)
            if a.shape != (B, T):
                raise ValueError(f"{what} must have shape {(B, T)} like ids, got {a.shape}")
            if a.dtype.kind not in "iu":
                raise ValueError(f"{what} must be integers, got dtype {a.dtype}")
            if a.size and (a.min() < -(2**31) or a.max() >= 2**31):
                raise ValueError(f"{what} holds values outside int32 (vocabulary is 0..{V - 1})")
            return np.ascontiguousarray(a, dtype=np.int32)

        ids32 = as_ids(ids, "ids")
        tg = as_ids(targets, "targets") if targets is not None else None
        w = None
        if weights is not None:
            w = np.asarray(weights)
            if w.shape != (B, T):
                raise ValueError(f"weights must have shape {(B, T)} like ids, got {w.shape}")
            w = np.ascontiguousarray(w, dtype=np.float32)
        ln = None
        if lengths is not None:
            ln = np.asarray(lengths)
            if ln.shape != (B,) or ln.dtype.kind not in "iu":
                raise ValueError(f"lengths must be {B} integers (one per row), got {ln.shape} {ln.dtype}")
            if ln.size and (ln.min() < 0 or ln.max() > T):
                raise ValueError(f"lengths must be in 0..{T}, got {ln.min()}..{ln.max()}")
            ln = np.ascontiguousarray(ln, dtype=np.int64)
        sw = self.config.sliding_window
        longest = int(ln.max()) if ln is not None and ln.size else T
        if sw is not None and longest > sw:
            raise ValueError(
                f"a sequence of {longest} positions is longer than the model's sliding_window "
                f"({sw}): azr computes full attention, which equals the windowed attention only "
                f"up to {sw} positions")
        self._check_memory(B, T, weights is not None)
        return ids32, tg, w, ln

    def _check_memory(self, B: int, T: int, training: bool) -> None:
        need = self.memory_estimate(B, T, training) - self.memory_estimate(0, 0, training)
        if need <= self._act_peak:
            return
        avail = _mem_available()
        if avail is not None and need > avail:
            raise MemoryError(
                f"a batch of {B} x {T} needs about {need / 2**30:.2f} GiB of activations but only "
                f"{avail / 2**30:.2f} GiB is available; use smaller micro-batches")
        self._act_peak = need

    def logits(self, ids, lengths=None) -> np.ndarray:
        """Full (B, T, V) float32 logits (tests and small use only); padded rows are 0."""
        ids32, _, _, ln = self._batch(ids, lengths=lengths)
        _, _, _, lg = self._engine.run(ids32, None, None, ln, False, False, True)
        return lg

    def logprobs(self, ids, targets, lengths=None) -> tuple[np.ndarray, np.ndarray]:
        """(logp, entropy), each (B, T) float32: log-prob of each target token and the
        entropy of the next-token distribution. Padded positions are 0."""
        ids32, tg, _, ln = self._batch(ids, targets, lengths=lengths)
        _, lp, ent, _ = self._engine.run(ids32, tg, None, ln, True, True, False)
        return lp, ent

    def loss_and_backward(self, ids, targets, weights, lengths=None
                          ) -> tuple[float, np.ndarray, np.ndarray]:
        """loss = -sum(weights * logp); ACCUMULATES d loss / d params into `grads()`.

        Returns (loss, logp, entropy). Raises FloatingPointError naming the
        row and position if a weighted log-prob is not finite, ValueError for
        non-finite weights. Call it once per micro-batch, then step the
        optimizer (gradient accumulation).
        """
        ids32, tg, w, ln = self._batch(ids, targets, weights, lengths)
        loss, lp, ent, _ = self._engine.run(ids32, tg, w, ln, True, True, False)
        if self._grads is None:
            self._grads = self._engine.grads()
        return float(loss), lp, ent

    def backward(self, ids, targets, weights, lengths=None) -> float:
        """`loss_and_backward` without its log-prob and entropy outputs: returns
        the loss only, and the vocabulary head (a fifth of a SmolLM2 token's
        work) runs only at positions whose weight is not 0 (a prompt's, for
        instance), whose gradient is exactly 0. Same gradients up to float
        rounding. ACCUMULATES into `grads()`."""
        ids32, tg, w, ln = self._batch(ids, targets, weights, lengths)
        loss, _, _, _ = self._engine.run(ids32, tg, w, ln, False, False, False)
        if self._grads is None:
            self._grads = self._engine.grads()
        return float(loss)

    def generate(self, prompts, n: int = 1, max_new_tokens: int = 256, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, stop=None, seed: int = 0,
                 max_slots: int | None = None, kv_budget_mb: float | None = None,
                 progress=False, prefix_cache: bool = True):
        """Sample ``n`` completions per prompt with the rollout engine; returns,
        per prompt, a list of ``n`` `azr.generate.Completion`. ``progress``:
        False, True (a progress bar) or a callable given an
        `azr.generate.GenerateProgress` after every engine step.
        ``prefix_cache``: reuse KV blocks of earlier calls (same results).
        See azr/generate.py."""
        from .generate import generate  # noqa: PLC0415 - the generate layer

        return generate(self, prompts, n=n, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p, top_k=top_k, stop=stop, seed=seed,
                        max_slots=max_slots, kv_budget_mb=kv_budget_mb, progress=progress,
                        prefix_cache=prefix_cache)


def _in_file(path: Path, exc: Exception) -> str:
    """`exc`'s message ("config: field ...") with the file in place of "config"."""
    msg = str(exc)
    return f"{path}: {msg[len('config: '):] if msg.startswith('config: ') else msg}"


def _weight_files(d: Path) -> list[Path]:
    idx = d / "model.safetensors.index.json"
    if idx.is_file():
        index = _jsonfile.load(idx)
        try:
            wm = index["weight_map"]
            shards = sorted(set(wm.values()))
        except (KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"{idx}: not a valid safetensors index ({exc!r})") from exc
        out = []
        for s in shards:
            if not isinstance(s, str) or "/" in s or s.startswith(".."):
                raise FormatError(f"{idx}: bad shard file name {s!r}")
            f = d / s
            if not f.is_file():
                raise FileNotFoundError(f"{f} (listed in {idx.name}) is missing")
            out.append(f)
        if not out:
            raise FormatError(f"{idx}: weight_map is empty")
        return out
    single = d / "model.safetensors"
    if single.is_file():
        return [single]
    others = sorted(d.glob("*.safetensors"))
    if others:
        return others
    raise FileNotFoundError(
        f"{d}: no model.safetensors or model.safetensors.index.json (only safetensors "
        "weights are supported; convert .bin checkpoints with transformers first)")


__all__ = ["FormatError", "Model", "ModelConfig", "UnsupportedError"]
