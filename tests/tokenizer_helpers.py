"""Shared helpers for the tokenizer tests: the real tokenizers, the stdlib
corpus, and a small GPT-2/SmolLM-style tokenizer trained with HF `tokenizers`."""
from __future__ import annotations

import glob
import json
import os
import sysconfig
from functools import lru_cache
from pathlib import Path

REAL = {
    "qwen2.5": "tokenizers/qwen2.5",
    "qwen3": "tokenizers/qwen3",
    "llama3.1": "tokenizers/llama3.1",
    "tinystories": "models/tinystories-656k",
}


@lru_cache(maxsize=None)
def load_pair(shared: str, name: str):
    """(azr.Tokenizer, tokenizers.Tokenizer) for a real tokenizer, cached per session."""
    import tokenizers

    from azr.tokenizer import Tokenizer

    d = Path(shared) / REAL[name]
    ours = Tokenizer.from_pretrained(d)
    hf = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    return ours, hf


def stdlib_files() -> list[str]:
    """Every .py file of this Python's standard library (site-packages excluded)."""
    root = sysconfig.get_paths()["stdlib"]
    files = glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
    return sorted(f for f in files if "site-packages" not in f and "dist-packages" not in f)


@lru_cache(maxsize=None)
def stdlib_corpus(head_chars: int = 512, extra_chars: int = 1024) -> tuple[str, ...]:
    """One text per stdlib file: its first `head_chars` characters plus up to
    `extra_chars` of its lines that contain non-ASCII characters (where the
    Unicode handling is exercised), so every file is covered and the whole
    corpus stays small enough for HF `tokenizers` to encode in seconds."""
    out = []
    for f in stdlib_files():
        with open(f, "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
        extra = "".join(line for line in text.splitlines(keepends=True) if not line.isascii())
        out.append(text[:head_chars] + extra[:extra_chars])
    return tuple(out)


@lru_cache(maxsize=None)
def gpt2_style_json(variant: str) -> str:
    """A tokenizer.json string for a tiny byte-level BPE trained with HF's
    trainer on stdlib text. variant: 'smollm' (Digits(individual) + ByteLevel,
    as SmolLM2), 'gpt2' (ByteLevel), 'gpt2_prefix' (ByteLevel add_prefix_space)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if variant == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=(variant == "gpt2_prefix"))
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = list(stdlib_corpus())[:400]
    tok.train_from_iterator(texts, trainer=trainer)
    return tok.to_str()


def with_added_tokens(json_str: str, added: list[dict]) -> str:
    """Append added tokens (content + flags) with fresh ids to a tokenizer.json string."""
    d = json.loads(json_str)
    next_id = max(list(d["model"]["vocab"].values()) + [a["id"] for a in d["added_tokens"]]) + 1
    for a in added:
        d["added_tokens"].append({"id": next_id, "single_word": False, "lstrip": False, "rstrip": False,
                                  "normalized": False, "special": False, **a})
        next_id += 1
    return json.dumps(d)
