"""The generated Unicode tables against HF `tokenizers` over every code point:
the pre-tokenizer scanners (Qwen2, Llama-3, GPT-2/SmolLM) must split exactly
where the Oniguruma regexes do, and the C NFC normaliser must equal HF's NFC
normalizer (and Python's unicodedata, which generated the tables)."""
from __future__ import annotations

import json
import unicodedata

import pytest

import tokenizers

from azr._native import _core
from azr.tokenizer import UNICODE_VERSION, Tokenizer
from tokenizer_helpers import gpt2_style_json, load_pair


def all_code_points() -> list[str]:
    """Every assigned code point, plus every 61st unassigned / private-use one."""
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        cat = unicodedata.category(chr(cp))
        if cat in ("Cn", "Co") and cp % 61:
            continue
        out.append(chr(cp))
    return out


def contexts(chars: list[str]) -> list[str]:
    """Each character in the positions where the alternatives of the regexes
    differ: after a space, before/after letters and digits, in whitespace runs,
    after an apostrophe and before newlines."""
    chunks, cur = [], []
    for i, c in enumerate(chars):
        cur.append(f"{c}a{c}1 {c}'{c}")
        if len(cur) == 4000:
            chunks.append("".join(cur))
            cur = []
    if cur:
        chunks.append("".join(cur))
    return chunks


def offsets_of(pieces: list[str]) -> list[tuple[int, int]]:
    out, pos = [], 0
    for p in pieces:
        out.append((pos, pos + len(p)))
        pos += len(p)
    return out


def test_tables_record_their_unicode_version():
    # Generated from Python 3.11's unicodedata, calibrated to tokenizers' older
    # Oniguruma / NFC data (tools/gen_unicode_tables.py); the tests below check it.
    assert UNICODE_VERSION == "14.0.0"


@pytest.mark.parametrize("which", ["qwen2.5", "smollm"])   # the Llama-3 / GPT-2 scanners share these paths
def test_pretokenizer_matches_hf_on_every_code_point(shared_data, which):
    if which in ("qwen2.5", "llama3.1"):
        ours, hf = load_pair(str(shared_data), which)
    else:
        js = gpt2_style_json(which)
        ours, hf = Tokenizer.from_hf_json_dict(json.loads(js)), tokenizers.Tokenizer.from_str(js)
    for chunk in contexts(all_code_points()):
        want = [off for _, off in hf.pre_tokenizer.pre_tokenize_str(chunk)]
        got = offsets_of(ours._core.pretokenize(chunk))
        if got != want:
            k = next(i for i in range(min(len(got), len(want))) if got[i] != want[i])
            a, b = want[k]
            pytest.fail(f"{which}: split differs at {chunk[max(0, a - 5):b + 5]!r}: ours {got[k]} hf {want[k]}")


def test_nfc_matches_hf_and_unicodedata_on_every_code_point():
    nfc = tokenizers.normalizers.NFC()
    chars = all_code_points()
    marks = [c for c in chars if unicodedata.combining(c)]
    texts = []
    for i in range(0, len(chars), 5000):   # \x00 is a starter that composes with nothing
        texts.append("\x00".join(chars[i:i + 5000]))
    # every combining mark after base letters, in both orders with another mark
    for i in range(0, len(marks), 500):
        ms = marks[i:i + 500]
        texts.append("".join(f"a{m}\u0301e\u0301{m}o{m}\u0323\u0328" + "\u1100\u1161" + m for m in ms))
    texts.append("".join(chr(0xAC00 + k) + chr(0x11A8 + k % 27) for k in range(0, 11172, 7)))
    for t in texts:
        want = nfc.normalize_str(t)   # differs from unicodedata (Unicode 14) for newer marks
        got = _core.tokenizer_nfc(t)
        if got != want:
            k = next(i for i in range(min(len(got), len(want))) if got[i] != want[i])
            pytest.fail(f"NFC differs near {want[max(0, k - 3):k + 3]!r}: ours {got[max(0, k - 3):k + 3]!r}")
