"""azr.Tokenizer: byte-level BPE and SentencePiece-style BPE on a C core.

Gives the same ids as Hugging Face ``tokenizers`` for the tokenizers azr runs
(Qwen2 / Qwen2.5 / Qwen3, Llama-3.x, GPT-2 / SmolLM style, and
SentencePiece-converted BPE such as TinyStories-656K). This module reads the
files (``tokenizer.json``, ``tokenizer_config.json``, or ``vocab.json`` +
``merges.txt``), checks them and turns them into plain values for the C
tokenizer (``azr._core.Tokenizer``), which does all encoding and decoding.

Added and special tokens: text that spells a *special* token (``<|im_end|>``)
is encoded as ordinary text unless ``allow_special=True``, so model-written
text cannot inject control tokens. Added tokens that are not special (Qwen3's
``<think>``) are always matched, as in ``tokenizers``; ``allow_special=False``
is ``tokenizers``' ``encode_special_tokens=True``.

``vocab_size`` is the largest id + 1 over the vocabulary and the added tokens
(for every supported file this equals ``tokenizers``' ``get_vocab_size(True)``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import _jsonfile
from ._native import _core

FormatError = _core.FormatError
UnsupportedError = _core.UnsupportedError

# Pre-tokenizer stages and normaliser steps understood by the C core
# (csrc/tokenizer/tokenizer.h).
_PRE_QWEN2, _PRE_LLAMA3, _PRE_GPT2, _PRE_DIGITS, _PRE_DIGITS_EACH, _PRE_PREFIX_SPACE, _PRE_METASPACE = 1, 2, 3, 4, 5, 6, 7
_NORM_NFC, _NORM_PREPEND, _NORM_REPLACE = 1, 2, 3
_ADDED_SPECIAL, _ADDED_LSTRIP, _ADDED_RSTRIP, _ADDED_SINGLE_WORD, _ADDED_NORMALIZED = 1, 2, 4, 8, 16

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_KNOWN_SPLITS = {QWEN2_PATTERN: _PRE_QWEN2, LLAMA3_PATTERN: _PRE_LLAMA3, GPT2_PATTERN: _PRE_GPT2}

UNICODE_VERSION: str = _core.TOKENIZER_UNICODE_VERSION


def hf_pre_tokenizer_json(kind: str) -> dict:
    """The tokenizer.json ``pre_tokenizer`` object azr recognises for ``kind``:
    'qwen2' (Qwen2/2.5/3), 'llama3' (Llama-3.x), 'gpt2' (GPT-2 ByteLevel) or
    'smollm' (Digits + ByteLevel, SmolLM/SmolLM2). For writers of tokenizer.json
    files (e.g. the GGUF converter), so the patterns match byte for byte."""
    def split(pattern: str) -> dict:
        return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    if kind == "qwen2":
        return {"type": "Sequence", "pretokenizers": [split(QWEN2_PATTERN), byte_level]}
    if kind == "llama3":
        return {"type": "Sequence", "pretokenizers": [split(LLAMA3_PATTERN), byte_level]}
    if kind == "gpt2":
        return {**byte_level, "use_regex": True}
    if kind == "smollm":
        return {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                      {**byte_level, "use_regex": True}]}
    raise ValueError(f"unknown pre-tokenizer kind {kind!r}; expected 'qwen2', 'llama3', 'gpt2' or 'smollm'")


def _fail(where: str, msg: str) -> FormatError:
    return FormatError(f"{where}: {msg}")


def _need(d: Any, key: str, typ: type | tuple, where: str) -> Any:
    if not isinstance(d, dict):
        raise _fail(where, f"expected an object, got {type(d).__name__}")
    if key not in d:
        raise _fail(where, f"missing field '{key}'")
    v = d[key]
    if not isinstance(v, typ):
        raise _fail(where, f"field '{key}' has type {type(v).__name__}")
    return v


def _parse_normalizer(n: Any, where: str) -> list[tuple]:
    if n is None:
        return []
    t = _need(n, "type", str, where)
    if t == "Sequence":
        out: list[tuple] = []
        for i, sub in enumerate(_need(n, "normalizers", list, where)):
            out += _parse_normalizer(sub, f"{where}.normalizers[{i}]")
        return out
    if t == "NFC":
        return [(_NORM_NFC,)]
    if t == "Prepend":
        return [(_NORM_PREPEND, _need(n, "prepend", str, where))]
    if t == "Replace":
        pat = _need(n, "pattern", dict, where)
        if "String" not in pat or not isinstance(pat["String"], str):
            raise UnsupportedError(f"{where}: Replace normalizer with pattern {pat!r} is not supported "
                                   "(only {'String': ...} patterns are)")
        if pat["String"] == "":
            raise _fail(where, "Replace normalizer with an empty pattern")
        return [(_NORM_REPLACE, pat["String"], _need(n, "content", str, where))]
    raise UnsupportedError(f"{where}: normalizer type '{t}' is not supported (supported: NFC, Prepend, "
                           "Replace, Sequence)")


def _parse_pre(p: Any, where: str, extra: dict) -> tuple[list[int], bool]:
    """Pre-tokenizer JSON -> (stages, has_byte_level); Metaspace settings go to extra."""
    if p is None:
        return [], False
    t = _need(p, "type", str, where)
    if t == "Sequence":
        stages: list[int] = []
        bl = False
        for i, sub in enumerate(_need(p, "pretokenizers", list, where)):
            s, b = _parse_pre(sub, f"{where}.pretokenizers[{i}]", extra)
            stages += s
            bl |= b
        return stages, bl
    if t == "Metaspace":
        if p.get("replacement", "\u2581") != "\u2581":
            raise UnsupportedError(f"{where}: Metaspace replacement {p.get('replacement')!r} is not supported "
                                   "(only U+2581)")
        scheme = p.get("prepend_scheme")
        if scheme is None:
            scheme = "always" if p.get("add_prefix_space", True) else "never"
        if scheme not in ("always", "first", "never"):
            raise _fail(where, f"Metaspace prepend_scheme {scheme!r} is not one of always, first, never")
        if "metaspace_prepend" in extra:
            raise UnsupportedError(f"{where}: more than one Metaspace pre-tokenizer")
        extra["metaspace_prepend"] = {"never": 0, "first": 1, "always": 2}[scheme]
        extra["metaspace_split"] = int(bool(p.get("split", True)))
        return [_PRE_METASPACE], False
    if t == "Split":
        pat = _need(p, "pattern", dict, where)
        regex = pat.get("Regex")
        if not isinstance(regex, str) or regex not in _KNOWN_SPLITS:
            raise UnsupportedError(f"{where}: Split pattern {pat!r} is not supported; azr has hand-written "
                                   "scanners for the Qwen2, Llama-3 and GPT-2 regexes only")
        if p.get("behavior", "Isolated") != "Isolated" or p.get("invert", False):
            raise UnsupportedError(f"{where}: Split with behavior {p.get('behavior')!r} / invert "
                                   f"{p.get('invert')!r} is not supported (only Isolated, not inverted)")
        return [_KNOWN_SPLITS[regex]], False
    if t == "ByteLevel":
        stages = []
        if p.get("add_prefix_space", False):
            stages.append(_PRE_PREFIX_SPACE)
        if p.get("use_regex", True):
            stages.append(_PRE_GPT2)
        return stages, True
    if t == "Digits":
        return [_PRE_DIGITS_EACH if p.get("individual_digits", False) else _PRE_DIGITS], False
    raise UnsupportedError(f"{where}: pre-tokenizer type '{t}' is not supported (supported: ByteLevel, "
                           "Split with the Qwen2/Llama-3/GPT-2 regex, Digits, Metaspace, Sequence)")


def _parse_decoder(d: Any, where: str, cfg: dict) -> None:
    if d is None:
        cfg["dec_byte_level"] = 0
        return
    t = _need(d, "type", str, where)
    if t == "ByteLevel":
        cfg["dec_byte_level"] = 1
        return
    cfg["dec_byte_level"] = 0
    items = _need(d, "decoders", list, where) if t == "Sequence" else [d]
    fused = False
    for i, sub in enumerate(items):
        w = f"{where}.decoders[{i}]" if t == "Sequence" else where
        st = _need(sub, "type", str, w)
        if st == "Replace":
            pat = _need(sub, "pattern", dict, w)
            if not isinstance(pat.get("String"), str) or cfg.get("dec_replace") or fused:
                raise UnsupportedError(f"{w}: Replace decoder {sub!r} is not supported here")
            cfg["dec_replace"] = (pat["String"], _need(sub, "content", str, w))
        elif st == "ByteFallback":
            cfg["dec_byte_fallback"] = 1
        elif st == "Fuse":
            fused = True
        elif st == "Strip":
            if sub.get("content") != " " or sub.get("stop", 0) != 0 or not fused:
                raise UnsupportedError(f"{w}: Strip decoder {sub!r} is not supported (only content ' ', stop 0, "
                                       "after Fuse)")
            start = sub.get("start", 0)
            if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < 2**31:
                raise _fail(w, f"Strip decoder field 'start' must be a count of characters, got {start!r:.80}")
            cfg["dec_strip_start"] = start
        else:
            raise UnsupportedError(f"{w}: decoder type '{st}' is not supported (supported: ByteLevel, or a "
                                   "Sequence of Replace, ByteFallback, Fuse, Strip)")


def _parse_post(p: Any, where: str, token_id) -> tuple[list[int], list[int], str | None]:
    """Post-processor -> (prefix ids, suffix ids, unsupported-reason)."""
    if p is None:
        return [], [], None
    t = p.get("type") if isinstance(p, dict) else None
    if t == "Sequence":
        pre: list[int] = []
        suf: list[int] = []
        for i, sub in enumerate(_need(p, "processors", list, where)):
            a, b, why = _parse_post(sub, f"{where}.processors[{i}]", token_id)
            if why:
                return [], [], why
            pre += a
            suf = b + suf
        return pre, suf, None
    if t == "ByteLevel":
        return [], [], None
    if t == "TemplateProcessing":
        pre, suf, seen = [], [], False
        specials = p.get("special_tokens", {})
        if not isinstance(specials, dict):
            raise _fail(where, f"field 'special_tokens' has type {type(specials).__name__}")
        for j, item in enumerate(_need(p, "single", list, where) if "single" in p else []):
            if not isinstance(item, dict):
                raise _fail(f"{where}.single[{j}]", f"expected an object, got {type(item).__name__}")
            if "Sequence" in item:
                seen = True
                continue
            st = item.get("SpecialToken")
            name = st.get("id") if isinstance(st, dict) else None
            if not isinstance(name, str):
                raise _fail(f"{where}.single[{j}]", f"expected a Sequence or a SpecialToken with a string id, "
                                                     f"got {item!r:.80}")
            entry = specials.get(name)
            ids = entry.get("ids") if isinstance(entry, dict) else None
            if ids is None:
                tid = token_id(name)
                ids = [tid] if tid is not None else None
            if ids is None:
                raise _fail(where, f"TemplateProcessing names unknown special token {name!r}")
            if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool)
                                                    and 0 <= x <= _MAX_ID for x in ids):
                raise _fail(where, f"special_tokens[{name!r}].ids must be a list of token ids, got {ids!r:.80}")
            (suf if seen else pre).extend(ids)
        return pre, suf, None
    return [], [], f"post-processor {t!r} is not supported for add_special_tokens=True"


_MAX_ID = 0xFFFFFF  # the C core's largest token id


def _chat_template(ct: Any, where: str) -> str | None:
    """A tokenizer_config ``chat_template`` (a string, or a list of
    ``{"name", "template"}`` whose "default" or first entry is used), or
    None; FormatError naming `where` and the field for anything else."""
    if ct is None:
        return None
    if isinstance(ct, list):
        named = {}
        for i, c in enumerate(ct):
            if not (isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("template"), str)):
                raise FormatError(f"{where}: chat_template[{i}] must be an object with string 'name' and "
                                  f"'template', got {c!r:.80}")
            named[c["name"]] = c["template"]
        return named.get("default") or next(iter(named.values()), None)
    if not isinstance(ct, str):
        raise FormatError(f"{where}: chat_template must be a string (a Jinja template) or a list of named "
                          f"templates, got {type(ct).__name__} {ct!r:.80}")
    return ct


def _token_str(v: Any) -> str | None:
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def _normalize_py(steps: list[tuple], text: str) -> str:
    """The normaliser steps in Python (for added-token names only)."""
    import unicodedata

    for step in steps:
        if step[0] == _NORM_NFC:
            text = unicodedata.normalize("NFC", text)
        elif step[0] == _NORM_PREPEND and text:
            text = step[1] + text
        elif step[0] == _NORM_REPLACE:
            text = text.replace(step[1], step[2])
    return text


class StreamDecoder:
    """Incremental decoding for generation: ``push(id)`` returns the text that
    is now complete, holding back bytes of an unfinished UTF-8 character (and,
    for byte-fallback tokenizers, a run of ``<0xXX>`` tokens until it ends);
    ``flush()`` returns the rest. The concatenation of everything returned
    equals ``Tokenizer.decode`` of all pushed ids."""

    def __init__(self, tok: "Tokenizer", skip_special_tokens: bool = False) -> None:
        self._core = tok._core
        self._skip = skip_special_tokens
        self._byte_level = bool(tok._spec["dec_byte_level"])
        self._byte_fallback = bool(tok._spec.get("dec_byte_fallback", 0))
        self._strip_left = 0 if self._byte_level else int(tok._spec.get("dec_strip_start", 0))
        self._pending = bytearray()
        self._group = bytearray()

    def _strip(self, s: str) -> str:
        while self._strip_left > 0 and s.startswith(" "):
            s = s[1:]
            self._strip_left -= 1
        if s:
            self._strip_left = 0
        return s

    def _flush_group(self) -> str:
        if not self._group:
            return ""
        g = bytes(self._group)
        self._group.clear()
        try:
            return g.decode("utf-8")
        except UnicodeDecodeError:
            return "\ufffd" * len(g)

    def push(self, token_id: int) -> str:
        info = self._core.token_bytes(int(token_id))
        if info is None:
            raise ValueError(f"StreamDecoder.push: token id {token_id} is not in the vocabulary")
        data, byte_value, special = info
        if self._skip and special:
            return ""
        if self._byte_level:
            self._pending += data
            buf = self._pending
            cut = len(buf)
            for i in range(len(buf) - 1, max(len(buf) - 4, -1), -1):
                b = buf[i]
                if b < 0x80:
                    break
                if b >= 0xC0:
                    need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
                    if len(buf) - i < need:
                        cut = i
                    break
            out = bytes(buf[:cut]).decode("utf-8", "replace")
            del buf[:cut]
            return out
        if self._byte_fallback and byte_value >= 0:
            self._group.append(byte_value)
            return ""
        return self._strip(self._flush_group() + data.decode("utf-8", "replace"))

    def flush(self) -> str:
        if self._byte_level:
            out = bytes(self._pending).decode("utf-8", "replace")
            self._pending.clear()
            return out
        return self._strip(self._flush_group())


class Tokenizer:
    """A BPE tokenizer identical to Hugging Face ``tokenizers`` on supported files.

    Build it with :meth:`from_pretrained` (a directory or a tokenizer.json
    path), :meth:`from_hf_json_dict` (a parsed tokenizer.json, e.g. converted
    from GGUF) or :meth:`from_vocab_merges`.
    """

    def __init__(self, spec: dict, vocab: dict[str, int], merges: list, added: list[dict],
                 config: dict | None = None, *, source: str = "<dict>") -> None:
        self._spec = spec
        self._source = source
        added_tuples = []
        for a in added:
            flags = ((_ADDED_SPECIAL if a.get("special") else 0) | (_ADDED_LSTRIP if a.get("lstrip") else 0)
                     | (_ADDED_RSTRIP if a.get("rstrip") else 0) | (_ADDED_SINGLE_WORD if a.get("single_word") else 0)
                     | (_ADDED_NORMALIZED if a.get("normalized") else 0))
            added_tuples.append((a["content"], int(a["id"]), flags))
        try:
            self._core = _core.Tokenizer(spec, vocab, merges, added_tuples)
        except FormatError as e:
            raise FormatError(f"{source}: {e}") from None
        self._vocab = vocab
        self._added = {a["content"]: int(a["id"]) for a in added}
        self._special_ids = {int(a["id"]) for a in added if a.get("special")}
        self._id_to_tok: dict[int, str] = {i: s for s, i in vocab.items()}
        for a in added:   # like tokenizers: a normalized added token's name is its normalized content
            self._id_to_tok[int(a["id"])] = (_normalize_py(spec.get("norm", []), a["content"])
                                             if a.get("normalized") else a["content"])
        self.vocab_size: int = int(self._core.n_ids)
        self._prefix_ids: list[int] = spec.get("_prefix_ids", [])
        self._suffix_ids: list[int] = spec.get("_suffix_ids", [])
        self._post_unsupported: str | None = spec.get("_post_unsupported")
        config = config or {}
        self._config = config
        self.bos_token: str | None = _token_str(config.get("bos_token"))
        self.eos_token: str | None = _token_str(config.get("eos_token"))
        self.pad_token: str | None = _token_str(config.get("pad_token"))
        self.unk_token: str | None = _token_str(config.get("unk_token"))
        self.bos_token_id: int | None = self.token_to_id(self.bos_token) if self.bos_token else None
        self.eos_token_id: int | None = self.token_to_id(self.eos_token) if self.eos_token else None
        self.pad_token_id: int | None = self.token_to_id(self.pad_token) if self.pad_token else None
        self.chat_template: str | None = _chat_template(config.get("chat_template"), "tokenizer_config")
        self._jinja = None

    # ------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Tokenizer":
        """Load from a directory holding tokenizer.json (+ tokenizer_config.json),
        or vocab.json + merges.txt (+ tokenizer_config.json), or a tokenizer.json path,
        or a Hub id (``owner/name``) already in the local Hugging Face cache."""
        p = Path(path)
        if not p.exists():
            from .gguf import hub_snapshot  # noqa: PLC0415 - only for Hub ids
            p = hub_snapshot(os.fspath(path)) or p  # a Hub id already in the local Hugging Face cache
        if p.is_file():
            d, tj = p.parent, p
        elif p.is_dir():
            d, tj = p, p / "tokenizer.json"
        else:
            raise FileNotFoundError(f"tokenizer path {str(p)!r} does not exist (expected a directory with "
                                    "tokenizer.json, or vocab.json + merges.txt; Hub ids are read only "
                                    "from the local Hugging Face cache, never downloaded)")
        config = cls._read_config(d)
        if tj.is_file():
            data = _jsonfile.load(tj, hint="; the file may be truncated or corrupt")
            return cls.from_hf_json_dict(data, config, source=str(tj))
        if (d / "vocab.json").is_file() and (d / "merges.txt").is_file():
            return cls.from_vocab_merges(d / "vocab.json", d / "merges.txt", config)
        raise FileNotFoundError(f"{d}: no tokenizer.json, and no vocab.json + merges.txt pair")

    @staticmethod
    def _read_config(d: Path) -> dict:
        config: dict = {}
        stm = d / "special_tokens_map.json"
        tc = d / "tokenizer_config.json"
        for f in (stm, tc):
            if f.is_file():
                obj = _jsonfile.load(f)
                if not isinstance(obj, dict):
                    raise FormatError(f"{f}: expected a JSON object")
                if "chat_template" in obj:
                    _chat_template(obj["chat_template"], str(f))
                config.update(obj)  # tokenizer_config.json (read last) wins
        jt = d / "chat_template.jinja"
        if jt.is_file() and not config.get("chat_template"):
            try:
                config["chat_template"] = jt.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(f"{jt}: not valid UTF-8 ({e})") from None
        return config

    @classmethod
    def from_hf_json_dict(cls, data: dict, config: dict | None = None, *, source: str = "tokenizer.json") -> "Tokenizer":
        """Build from a parsed tokenizer.json (``tokenizers``' serialisation) and
        an optional tokenizer_config.json dict (special tokens, chat template)."""
        if not isinstance(data, dict):
            raise FormatError(f"{source}: expected a JSON object at top level")
        model = _need(data, "model", dict, source)
        mtype = model.get("type", "BPE")
        if mtype != "BPE":
            raise UnsupportedError(f"{source}: model type '{mtype}' is not supported (only BPE)")
        for k in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(k):
                raise UnsupportedError(f"{source}: model.{k}={model[k]!r} is not supported")
        if model.get("dropout"):
            raise UnsupportedError(f"{source}: BPE dropout is not supported")
        vocab = _need(model, "vocab", dict, f"{source} model")
        merges = _need(model, "merges", list, f"{source} model")
        pre_extra: dict = {}
        stages, has_bl = _parse_pre(data.get("pre_tokenizer"), f"{source} pre_tokenizer", pre_extra)
        dec = data.get("decoder")
        byte_level = has_bl or (isinstance(dec, dict) and dec.get("type") == "ByteLevel")
        spec: dict[str, Any] = {
            "model": "byte_level" if byte_level else "spm",
            "pre": stages,
            "norm": _parse_normalizer(data.get("normalizer"), f"{source} normalizer"),
            "ignore_merges": int(bool(model.get("ignore_merges", False))),
            "byte_fallback": int(bool(model.get("byte_fallback", False))),
            "fuse_unk": int(bool(model.get("fuse_unk", False))),
            "unk_id": -1,
            **pre_extra,
        }
        unk = model.get("unk_token")
        if unk is not None:
            if not isinstance(unk, str) or unk not in vocab:
                raise FormatError(f"{source}: model.unk_token {unk!r} is not in the vocabulary")
            uid = vocab[unk]
            if isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid <= _MAX_ID:
                raise FormatError(f"{source}: model.vocab gives the unk_token {unk!r} the id {uid!r}, "
                                  f"not an id in 0..{_MAX_ID}")
            spec["unk_id"] = uid
        _parse_decoder(dec, f"{source} decoder", spec)
        added = data.get("added_tokens") or []
        if not isinstance(added, list):
            raise FormatError(f"{source}: added_tokens must be a list")
        for i, a in enumerate(added):
            _need(a, "content", str, f"{source} added_tokens[{i}]")
            _need(a, "id", int, f"{source} added_tokens[{i}]")
        added_map = {a["content"]: a["id"] for a in added}
        pre, suf, why = _parse_post(data.get("post_processor"), f"{source} post_processor",
                                    lambda s: added_map.get(s, vocab.get(s)))
        spec["_prefix_ids"], spec["_suffix_ids"], spec["_post_unsupported"] = pre, suf, why
        core_spec = {k: v for k, v in spec.items() if not k.startswith("_")}
        tok = cls(core_spec, vocab, merges, added, config, source=source)
        tok._spec = spec
        tok._prefix_ids, tok._suffix_ids, tok._post_unsupported = pre, suf, why
        return tok

    @classmethod
    def from_vocab_merges(cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                          config: dict | None = None) -> "Tokenizer":
        """Build from GPT-2-style vocab.json + merges.txt. The pre-tokenizer follows
        tokenizer_config.json's tokenizer_class: Qwen2Tokenizer -> Qwen2 split + NFC;
        GPT2Tokenizer (and unknown classes) -> GPT-2 byte-level regex."""
        config = dict(config or {})
        vocab = _jsonfile.load(vocab_path)
        if not isinstance(vocab, dict):
            raise FormatError(f"{vocab_path}: expected a JSON object mapping tokens to ids")
        merges = []
        try:
            with open(merges_path, "r", encoding="utf-8") as f:
                for i, line in enumerate(f):
                    line = line.rstrip("\r\n")
                    if (i == 0 and line.startswith("#version")) or not line:
                        continue
                    merges.append(line)
        except UnicodeDecodeError as e:
            raise FormatError(f"{merges_path}: not valid UTF-8 ({e})") from None
        cls_name = str(config.get("tokenizer_class", ""))
        if cls_name.startswith("Qwen2"):
            stages, norm = [_PRE_QWEN2], [(_NORM_NFC,)]
        else:
            stages = ([_PRE_PREFIX_SPACE] if config.get("add_prefix_space") else []) + [_PRE_GPT2]
            norm = []
        added = []
        atd = config.get("added_tokens_decoder") or {}
        if not isinstance(atd, dict):
            raise FormatError(f"tokenizer_config.json added_tokens_decoder must be an object, got {atd!r:.80}")
        for k, v in atd.items():
            if not isinstance(v, dict) or not isinstance(v.get("content"), str):
                raise FormatError(f"tokenizer_config.json added_tokens_decoder[{k!r}] has no content")
            if not (k.isascii() and k.isdigit() and len(k) <= 8):
                raise FormatError(f"tokenizer_config.json added_tokens_decoder key {k!r:.80} is not a token id")
            added.append({**v, "id": int(k)})
        spec = {"model": "byte_level", "pre": stages, "norm": norm, "unk_id": -1, "dec_byte_level": 1}
        return cls(spec, vocab, merges, added, config, source=str(vocab_path))

    # ------------------------------------------------------------ encode / decode
    def encode(self, text: str, add_special_tokens: bool = False, allow_special: bool = False) -> list[int]:
        """Token ids of ``text``. ``add_special_tokens`` applies the file's
        post-processor template (e.g. Llama-3's BOS); ``allow_special`` lets the
        text's spelled-out special tokens become special ids."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        ids = self._core.encode(text, bool(allow_special))
        if add_special_tokens:
            ids = self._wrap(ids)
        return ids

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = False,
                     allow_special: bool = False) -> list[list[int]]:
        """``encode`` over many texts, in parallel threads (azr.set_num_threads)."""
        out = self._core.encode_batch(list(texts), bool(allow_special))
        if add_special_tokens:
            out = [self._wrap(x) for x in out]
        return out

    def _wrap(self, ids: list[int]) -> list[int]:
        if self._post_unsupported:
            raise UnsupportedError(f"{self._source}: {self._post_unsupported}")
        return self._prefix_ids + ids + self._suffix_ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD."""
        if not hasattr(ids, "__len__"):
            ids = list(ids)
        return self._core.decode(ids, bool(skip_special_tokens))

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        return StreamDecoder(self, skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        if token in self._added:
            return self._added[token]
        return self._vocab.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._id_to_tok.get(int(token_id))

    def is_special(self, token_id: int) -> bool:
        return int(token_id) in self._special_ids

    @property
    def special_token_ids(self) -> set[int]:
        return set(self._special_ids)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer({self._source!r}, vocab_size={self.vocab_size}, model={self._spec['model']})"

    # ------------------------------------------------------------ chat template
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            tokenize: bool = False, **kwargs: Any) -> str | list[int]:
        """Render the chat template of tokenizer_config.json (Jinja, sandboxed, with
        the globals transformers provides: raise_exception, strftime_now, the
        special tokens). With ``tokenize`` the prompt is encoded with
        ``allow_special=True``."""
        if self.chat_template is None:
            raise ValueError(f"{self._source}: this tokenizer has no chat_template (tokenizer_config.json has none)")
        if self._jinja is None:
            self._jinja = _compile_template(self.chat_template)
        ctx = {k: v for k, v in self._config.items() if k.endswith("_token") and isinstance(_token_str(v), str)}
        ctx = {k: _token_str(v) for k, v in ctx.items()}
        ctx.update(kwargs)
        text = self._jinja.render(messages=messages, add_generation_prompt=add_generation_prompt, **ctx)
        if tokenize:
            return self.encode(text, allow_special=True)
        return text


def _compile_template(source: str):
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover
        raise ImportError("apply_chat_template needs jinja2: pip install jinja2") from e

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


__all__ = ["StreamDecoder", "Tokenizer", "UNICODE_VERSION", "hf_pre_tokenizer_json", "QWEN2_PATTERN", "LLAMA3_PATTERN", "GPT2_PATTERN"]
