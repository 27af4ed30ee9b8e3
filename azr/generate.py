"""The rollout engine's Python face: `generate` and `Completion`.

`Model.generate(...)` delegates here. The heavy work (one batched forward
per step over every active sequence, the paged KV cache, sampling, stop
strings) runs in C (`azr._core.generate`, csrc/generate/); this module checks
arguments, encodes text prompts, sizes the KV budget, shows progress and
builds the `Completion` objects.

Semantics worth knowing:

- ``token_ids`` holds every sampled token, including the EOS token or the
  token that completed a stop string, so ``logprobs`` / ``model_logprobs``
  align with it one to one (what a policy-gradient loss needs). ``text`` is
  the decoded completion without the EOS token and cut before the stop
  string.
- ``logprobs`` are under the sampling distribution (temperature, top-k,
  top-p applied; 0 for greedy), ``model_logprobs`` under the unmodified model
  (temperature 1, no truncation): the same numbers `Model.logprobs` gives for
  the same sequence, to float32 rounding.
- The same ``seed`` gives the same completions whatever ``max_slots``, the
  other prompts in the call, or the thread count: token j of sample i of a
  prompt is drawn from Philox keyed by (seed, request key, i, j), where the
  request key hashes the prompt's token ids and the number of identical
  prompts before it in the call (so repeated prompts still get different
  samples, and a prompt's samples do not depend on its neighbours).
- Stop strings are matched on the bytes of the generated tokens. The byte
  string of each token comes from ``tokenizer.token_bytes_table()`` when the
  tokenizer has it (exact for byte-level BPE tokens that hold partial UTF-8
  characters), else from ``tokenizer.decode([i])`` encoded as UTF-8.
- The engine reads weights repacked for its kernels. The packed copy (about
  the size of the parameters) is kept on the model between calls and
  repacked only when the matrices changed: each call hashes them (one read
  of the weights), so optimizer steps, loads and direct NumPy writes are
  all seen. `release_weight_cache(model)` frees it.
- A prefix cache keeps KV blocks (16 positions each) between calls while
  the weights are unchanged, keyed by the token ids they hold: a prompt
  that starts with tokens an earlier call computed (a shared instruction
  header, an earlier prompt plus its completion, the same prompt again)
  prefills only the rest. Completions are the same bit for bit with and
  without it. It is made on first use with `DEFAULT_PREFIX_CACHE_MB` (capped
  at an eighth of the available memory); `set_prefix_cache(model, mb)`
  resizes it (0 turns it off), `prefix_cache_stats(model)` reports how much
  it saved, `clear_prefix_cache(model)` empties it,
  `release_prefix_cache(model)` frees it, and
  ``generate(..., prefix_cache=False)`` bypasses it for one call. Any change
  to the weights empties it at the next call (content hash).
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ._native import _core
from .model import _mem_available

log = logging.getLogger("azr.generate")

_FINISH = {0: "length", 1: "eos", 2: "stop"}
BLOCK_SIZE = 16
PREFILL_CHUNK = 512
DEFAULT_MAX_SLOTS = 64
DEFAULT_PREFIX_CACHE_MB = 256


@dataclass
class Completion:
    """One sampled continuation of one prompt."""

    token_ids: list[int]
    text: str
    logprobs: np.ndarray  # float32 (len(token_ids),) under the sampling distribution
    model_logprobs: np.ndarray  # float32 (len(token_ids),) under the unmodified model
    finish_reason: str  # "stop" | "eos" | "length"


@dataclass(frozen=True)
class GenerateProgress:
    """Where a `generate` call stands, passed to a ``progress`` callable
    after every engine step (a step is one forward over every active
    sequence: a decode step, a prefill chunk, or both at once)."""

    steps: int  # engine steps run so far
    tokens: int  # new tokens sampled so far, all sequences together
    prompt_tokens: int  # prompt tokens prefilled so far
    seqs_done: int  # sequences finished
    seqs_total: int  # sequences in the call (prompts x n)
    active_slots: int  # sequences in the batch at this step


@dataclass
class GenerationPlan:
    """What a `generate` call will use, computed before anything runs
    (logged at INFO level on the ``azr.generate`` logger and shown by the
    progress bar)."""

    num_prompts: int
    num_sequences: int
    max_slots: int
    block_size: int
    kv_blocks: int
    kv_bytes: int
    kv_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return (f"generate: {self.num_sequences} sequences from {self.num_prompts} prompts, "
                f"{self.max_slots} slots, KV cache {self.kv_bytes / 2**20:.1f} MiB "
                f"({self.kv_blocks} blocks of {self.block_size} positions = {self.kv_tokens} tokens)")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _encode_prompts(model, prompts) -> list[np.ndarray]:
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence) \
            and not isinstance(prompts, np.ndarray):
        raise TypeError("prompts must be a list of str or a list of token-id lists; "
                        f"got {type(prompts).__name__} (wrap a single prompt in a list)")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: pass at least one prompt")
    V = model.config.vocab_size
    out = []
    for k, p in enumerate(prompts):
        if isinstance(p, str):
            tok = getattr(model, "tokenizer", None)
            if tok is None:
                raise ValueError(f"prompts[{k}] is text but the model has no tokenizer attached; "
                                 "pass token ids or set model.tokenizer")
            ids = np.asarray(tok.encode(p), dtype=np.int64)
        else:
            if isinstance(p, np.ndarray):
                arr = p
            else:
                if not isinstance(p, Sequence) or isinstance(p, bytes):
                    raise TypeError(f"prompts[{k}] must be a str or a list of token ids, "
                                    f"got {type(p).__name__}")
                if not all(_is_int(t) for t in p):
                    raise TypeError(f"prompts[{k}] must hold only integer token ids")
                arr = np.asarray(list(p), dtype=np.int64)
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise TypeError(f"prompts[{k}] must be a 1-D sequence of integer token ids")
            ids = arr.astype(np.int64)
        if ids.size == 0:
            raise ValueError(f"prompts[{k}] is empty: a prompt needs at least one token")
        if ids.min() < 0 or ids.max() >= V:
            bad = int(ids[(ids < 0) | (ids >= V)][0])
            raise ValueError(f"prompts[{k}] holds token id {bad}, outside the vocabulary 0..{V - 1}")
        out.append(ids.astype(np.int32))
    return out


def request_keys(ids: list[np.ndarray]) -> np.ndarray:
    """The random-stream key of each prompt: BLAKE2b-64 of its token ids
    (int32 little-endian) and of how many identical prompts precede it."""
    seen: dict[bytes, int] = {}
    keys = np.empty(len(ids), dtype=np.uint64)
    for k, a in enumerate(ids):
        b = a.astype("<i4").tobytes()
        occ = seen.get(b, 0)
        seen[b] = occ + 1
        h = hashlib.blake2b(b + occ.to_bytes(8, "little"), digest_size=8).digest()
        keys[k] = int.from_bytes(h, "little")
    return keys


def _stop_list(stop) -> list[bytes]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, (list, tuple)):
        raise TypeError(f"stop must be None, a str or a list of str; got {type(stop).__name__}")
    out = []
    for k, s in enumerate(stop):
        if not isinstance(s, str):
            raise TypeError(f"stop[{k}] must be a str, got {type(s).__name__}")
        if s == "":
            raise ValueError(f"stop[{k}] is the empty string, which would stop immediately")
        out.append(s.encode("utf-8"))
    return out


def token_byte_table(tokenizer, vocab_size: int) -> tuple[bytes, np.ndarray]:
    """(all token bytes back to back, offsets (V+1,) int64) for stop-string
    matching: ``tokenizer.token_bytes_table()`` when available, else
    ``decode([i])`` as UTF-8 (not byte-exact for tokens holding partial
    UTF-8 characters). Ids the tokenizer does not know get no bytes."""
    table = None
    if hasattr(tokenizer, "token_bytes_table"):
        table = list(tokenizer.token_bytes_table())
    if table is None:
        table = []
        for i in range(vocab_size):
            try:
                s = tokenizer.decode([i])
            except Exception:  # noqa: BLE001 - ids past the tokenizer's vocabulary
                s = ""
            table.append(s.encode("utf-8", "replace"))
    table = [bytes(b) for b in table[:vocab_size]]
    table += [b""] * (vocab_size - len(table))
    lens = np.fromiter((len(b) for b in table), dtype=np.int64, count=vocab_size)
    offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return b"".join(table), offsets


def _cached_byte_table(model, tokenizer) -> tuple[bytes, np.ndarray]:
    cache = model.__dict__.setdefault("_gen_byte_table", {})
    key = id(tokenizer)
    if key not in cache or cache[key][0] is not tokenizer:
        cache.clear()
        cache[key] = (tokenizer, token_byte_table(tokenizer, model.config.vocab_size))
    return cache[key][1]


def _eos_ids(model) -> np.ndarray:
    ids: set[int] = set()
    tok = getattr(model, "tokenizer", None)
    for src in (getattr(tok, "eos_token_id", None), getattr(model.config, "eos_token_id", None)):
        if src is None:
            continue
        for e in (src if isinstance(src, (list, tuple)) else [src]):
            if _is_int(e) and 0 <= int(e) < model.config.vocab_size:
                ids.add(int(e))
    return np.asarray(sorted(ids), dtype=np.int32)


def _check_scalars(n, max_new_tokens, temperature, top_p, top_k, seed, max_slots, kv_budget_mb):
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be a positive integer (samples per prompt), got {n!r}")
    if not _is_int(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.floating)) \
            or not (0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    if not _is_int(top_k) or top_k < 0:
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {top_k!r}")
    if not _is_int(seed) or not (0 <= seed < 2**64):
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if max_slots is not None and (not _is_int(max_slots) or not (1 <= max_slots <= 1 << 20)):
        raise ValueError(f"max_slots must be a positive integer or None, got {max_slots!r}")
    if kv_budget_mb is not None and (isinstance(kv_budget_mb, bool)
                                     or not isinstance(kv_budget_mb, (int, float, np.floating))
                                     or not math.isfinite(kv_budget_mb) or kv_budget_mb <= 0):
        raise ValueError(f"kv_budget_mb must be a positive number or None, got {kv_budget_mb!r}")


def plan(model, prompt_lens: Sequence[int], n: int, max_new_tokens: int,
         max_slots: int | None = None, kv_budget_mb: float | None = None) -> GenerationPlan:
    """Slots and KV blocks a call will use. The default budget holds
    ``max_slots`` sequences of the longest prompt + ``max_new_tokens`` at
    once (without counting prefix sharing), capped at a quarter of the
    available memory but never below one sequence."""
    ctx = int(model.config.max_position_embeddings)
    S = len(prompt_lens) * n
    slots = int(max_slots) if max_slots is not None else min(S, DEFAULT_MAX_SLOTS)
    per_block = int(_core.kv_bytes_per_block(model._engine, BLOCK_SIZE))
    worst = 1
    for L in prompt_lens:
        pb, priv = _core.gen_blocks_for(int(L), int(max_new_tokens), ctx, BLOCK_SIZE)
        worst = max(worst, pb + priv)
    if kv_budget_mb is None:
        blocks = slots * worst
        avail = _mem_available()
        if avail is not None:
            blocks = min(blocks, max(worst, avail // 4 // per_block))
    else:
        blocks = int(kv_budget_mb * 2**20) // per_block
        if blocks < worst:
            raise MemoryError(
                f"kv_budget_mb={kv_budget_mb} holds {blocks} KV blocks of {BLOCK_SIZE} positions "
                f"({per_block / 2**20:.2f} MiB each); the longest prompt plus max_new_tokens="
                f"{max_new_tokens} needs {worst} ({worst * per_block / 2**20:.1f} MiB): raise the "
                "budget or lower max_new_tokens")
    blocks = max(1, min(blocks, 2**31 - 1))
    return GenerationPlan(num_prompts=len(prompt_lens), num_sequences=S, max_slots=slots,
                          block_size=BLOCK_SIZE, kv_blocks=blocks, kv_bytes=blocks * per_block,
                          kv_tokens=blocks * BLOCK_SIZE)


def generate(model, prompts, n: int = 1, max_new_tokens: int = 256, temperature: float = 1.0,
             top_p: float = 1.0, top_k: int = 0, stop: str | Sequence[str] | None = None,
             seed: int = 0, max_slots: int | None = None, kv_budget_mb: float | None = None,
             progress: bool | Callable[[GenerateProgress], object] = False,
             prefix_cache: bool = True) -> list[list[Completion]]:
    """Sample ``n`` completions for each prompt; see the module docstring.

    ``progress``: False (quiet), True (a tqdm bar: sequences done, tokens/s,
    active slots), or a callable, called with a `GenerateProgress` after
    every engine step and once more at the end, while the engine waits; an
    exception it raises cancels the call and propagates, nothing returned.

    Returns one list of ``n`` `Completion` per prompt, in prompt order.
    Raises ValueError / TypeError for bad arguments (naming the argument),
    MemoryError when ``kv_budget_mb`` cannot hold one sequence, and
    KeyboardInterrupt (with nothing returned) when interrupted.
    """
    _check_scalars(n, max_new_tokens, temperature, top_p, top_k, seed, max_slots, kv_budget_mb)
    if not isinstance(prefix_cache, bool):
        raise TypeError(f"prefix_cache must be True or False, got {prefix_cache!r}")
    if not isinstance(progress, bool) and not callable(progress):
        raise TypeError("progress must be True, False or a callable taking a GenerateProgress, "
                        f"got {type(progress).__name__}")
    stops = _stop_list(stop)
    ids = _encode_prompts(model, prompts)
    ctx = int(model.config.max_position_embeddings)
    for k, a in enumerate(ids):
        if a.size >= ctx:
            raise ValueError(f"prompts[{k}] has {a.size} tokens but the model's context is {ctx} "
                             "positions (max_position_embeddings); a prompt must leave room for "
                             "at least one new token")
    tok = getattr(model, "tokenizer", None)
    tok_bytes, tok_off = None, None
    stop_bytes, stop_off = None, None
    if stops:
        if tok is None:
            raise ValueError("stop strings need a tokenizer (model.tokenizer is None) to know "
                             "each token's text")
        tok_bytes, tok_off = _cached_byte_table(model, tok)
        stop_bytes = b"".join(stops)
        stop_off = np.zeros(len(stops) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in stops], out=stop_off[1:])
    pl = plan(model, [a.size for a in ids], int(n), int(max_new_tokens), max_slots, kv_budget_mb)
    log.info(pl.describe())
    flat = np.concatenate(ids).astype(np.int32)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum([a.size for a in ids], out=offsets[1:])

    bar = None
    callback: Callable[..., None] | None = None
    interval = 0.2  # seconds between the bar's refreshes
    if callable(progress):
        user = progress
        interval = 0.0

        def callback(*state):
            user(GenerateProgress(*state))
    elif progress:
        from tqdm.auto import tqdm  # noqa: PLC0415 - only when asked for

        bar = tqdm(total=pl.num_sequences, desc="generate", unit="seq", leave=False)
        bar.write(pl.describe())
        t0 = time.perf_counter()

        def callback(steps, tokens, prompt_tokens, done, total, active):  # noqa: ARG001
            dt = max(time.perf_counter() - t0, 1e-9)
            bar.n = done
            bar.set_postfix_str(f"{tokens / dt:.1f} tok/s, {active} active slots", refresh=False)
            bar.refresh()

    try:
        toks, lp, mlp, lens, fin = _core.generate(
            model._engine, flat, offsets, int(n), int(max_new_tokens), float(temperature),
            float(top_p), int(top_k), int(seed), _eos_ids(model), stop_bytes, stop_off, tok_bytes,
            tok_off, pl.max_slots, pl.kv_blocks, pl.block_size, PREFILL_CHUNK, ctx, callback,
            callback_interval=interval, request_keys=request_keys(ids), weights=_weight_cache(model),
            prefix=_prefix_cache(model) if prefix_cache else None)
    finally:
        if bar is not None:
            bar.close()

    out: list[list[Completion]] = []
    for r in range(len(ids)):
        row = []
        for i in range(n):
            s = r * n + i
            L = int(lens[s])
            t = toks[s, :L].tolist()
            reason = _FINISH[int(fin[s])]
            row.append(Completion(token_ids=t, text=_text(tok, t, reason, stops), logprobs=lp[s, :L].copy(),
                                  model_logprobs=mlp[s, :L].copy(), finish_reason=reason))
        out.append(row)
    return out


def _weight_cache(model):
    """The model's packed-weight cache (made on first use)."""
    cache = model.__dict__.get("_gen_weights")
    if cache is None:
        cache = model.__dict__["_gen_weights"] = _core.gen_weights_new()
    return cache


def _prefix_cache(model):
    """The model's prefix cache (made on first use; None when turned off)."""
    d = model.__dict__
    if "_gen_prefix" not in d:
        mb = DEFAULT_PREFIX_CACHE_MB
        avail = _mem_available()
        nbytes = int(mb * 2**20) if avail is None else min(int(mb * 2**20), avail // 8)
        d["_gen_prefix"] = _core.gen_prefix_new(nbytes) if nbytes > 0 else None
    return d["_gen_prefix"]


def set_prefix_cache(model, mb: float) -> None:
    """Give ``model`` a new, empty prefix cache of ``mb`` MiB (0: none, so
    every call prefills its whole prompts)."""
    if isinstance(mb, bool) or not isinstance(mb, (int, float)) or not math.isfinite(mb) or mb < 0:
        raise ValueError(f"prefix cache size must be a number of MiB >= 0, got {mb!r}")
    model.__dict__["_gen_prefix"] = _core.gen_prefix_new(int(mb * 2**20)) if mb > 0 else None


def prefix_cache_stats(model) -> dict[str, int]:
    """The prefix cache's size and counters since it was made: capacity_blocks,
    used_blocks, block_size, prompt_tokens (of the prompts it was asked
    about), reused_tokens (of them, not prefilled), inserted_blocks,
    evicted_blocks, flushes (emptied because the weights changed). All 0
    when there is none."""
    cache = model.__dict__.get("_gen_prefix")
    if cache is None:
        return dict(capacity_blocks=0, used_blocks=0, block_size=0, prompt_tokens=0, reused_tokens=0,
                    inserted_blocks=0, evicted_blocks=0, flushes=0)
    return dict(_core.gen_prefix_info(cache))


def clear_prefix_cache(model) -> None:
    """Empty the model's prefix cache (keeping its memory), as a weight
    change does at the next call."""
    cache = model.__dict__.get("_gen_prefix")
    if cache is not None:
        _core.gen_prefix_clear(cache)


def release_prefix_cache(model) -> None:
    """Free the model's prefix cache; the next call makes a new default one."""
    model.__dict__.pop("_gen_prefix", None)


def release_weight_cache(model) -> int:
    """Free the packed weights `generate` keeps on ``model`` between calls;
    returns the bytes freed. The next call repacks."""
    cache = model.__dict__.pop("_gen_weights", None)
    return 0 if cache is None else int(_core.gen_weights_info(cache)[0])


def _text(tok, ids: list[int], reason: str, stops: list[bytes]) -> str:
    if tok is None:
        return ""
    if reason == "eos" and ids:
        ids = ids[:-1]
    text = tok.decode(ids)
    if reason == "stop":
        cut = [text.find(s.decode("utf-8", "replace")) for s in stops]
        cut = [c for c in cut if c >= 0]
        if cut:
            text = text[:min(cut)]
    return text


__all__ = ["Completion", "GenerationPlan", "generate", "plan", "release_weight_cache",
           "request_keys", "token_byte_table"]
