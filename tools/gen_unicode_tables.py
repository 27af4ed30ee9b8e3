#!/usr/bin/env python3
"""Generate csrc/tokenizer/unicode_tables.c from Python's `unicodedata`.

Usage: python tools/gen_unicode_tables.py [OUT]   (default csrc/tokenizer/unicode_tables.c)

What the tables hold (see csrc/tokenizer/unicode.h for the lookup functions):
- a property byte per code point (two-level table): letter (\\p{L}), number (\\p{N}),
  White_Space (what Oniguruma's and Rust regex's Unicode \\s match), "word" (\\w as
  Rust regex defines it, for added tokens' single_word), and NFC quick-check flags;
- the canonical combining class per code point (two-level table);
- full canonical decompositions (recursive, Hangul syllables excluded: they are
  algorithmic) and the primary composition pairs, for NFC.

Unicode version: the tables start from `unicodedata` of the Python that runs this
script (Python 3.11: Unicode 14.0.0). Hugging Face `tokenizers`, whose ids azr must
reproduce, is older in two places: its Oniguruma regex engine does not know the
code points assigned in the newest Unicode versions (they are not \\p{L} / \\p{N}
there), and its NFC normaliser (the unicode-normalization-alignments crate) knows
even fewer (newer combining marks have class 0 there, newer decompositions are
absent). So when `tokenizers` is importable (it is a test dependency) the
generator calibrates: for every code point it asks `tokenizers` itself (a Split
pre-tokenizer with the Llama-3 regex, and its NFC/NFD normalizers) and, where the
answer differs from `unicodedata`, follows `tokenizers`. The number of such code
points is written into the generated file. Pass --no-calibrate to get pure
`unicodedata` tables. tests/test_tokenizer_unicode.py checks every code point.
"""
from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

MAXCP = 0x110000
BLOCK = 256

# PropList.txt White_Space (stable since Unicode 6.3; \s in Oniguruma/Rust regex).
WHITE_SPACE = set(list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B))
                  + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

P_LETTER, P_NUMBER, P_SPACE, P_WORD, P_NFC_NO, P_NFC_MAYBE, P_CCC = 1, 2, 4, 8, 16, 32, 64

SBase, LBase, VBase, TBase = 0xAC00, 0x1100, 0x1161, 0x11A7
LCount, VCount, TCount = 19, 21, 28
SCount = LCount * VCount * TCount


def is_hangul_syllable(cp: int) -> bool:
    return SBase <= cp < SBase + SCount


def canon_decomp(cp: int) -> list[int] | None:
    d = unicodedata.decomposition(chr(cp))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def full_decomp(cp: int) -> list[int]:
    d = canon_decomp(cp)
    if d is None:
        return [cp]
    out: list[int] = []
    for x in d:
        out.extend(full_decomp(x))
    return out


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


class Oracle:
    """Answers from the installed HF `tokenizers` (None when not calibrating)."""

    def __init__(self) -> None:
        from tokenizers import Regex, normalizers, pre_tokenizers

        self.split = pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated")
        self.nfc = normalizers.NFC()
        self.nfd = normalizers.NFD()
        import tokenizers

        self.version = tokenizers.__version__

    def is_letter(self, ch: str) -> bool:
        return len(self.split.pre_tokenize_str("x" + ch)) == 1

    def is_number(self, ch: str) -> bool:
        return len(self.split.pre_tokenize_str("1" + ch)) == 1


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    calibrate = "--no-calibrate" not in sys.argv
    out_path = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "csrc/tokenizer/unicode_tables.c"
    oracle = Oracle() if calibrate else None
    n_cat_fixed = n_ccc_fixed = n_dec_fixed = n_comp_fixed = 0
    props = bytearray(MAXCP)
    ccc = bytearray(MAXCP)
    decomps: dict[int, list[int]] = {}
    comps: dict[tuple[int, int], int] = {}
    for cp in range(MAXCP):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        p = 0
        is_l, is_n = cat[0] == "L", cat[0] == "N"
        if oracle is not None and not (0xD800 <= cp < 0xE000) and cp >= 0x80:
            hl, hn = oracle.is_letter(ch), oracle.is_number(ch)
            if (hl, hn) != (is_l, is_n):
                n_cat_fixed += 1
                is_l, is_n = hl, hn
        if is_l:
            p |= P_LETTER
        if is_n:
            p |= P_NUMBER
        if cp in WHITE_SPACE:
            p |= P_SPACE
        # Rust regex \w: Alphabetic + M + Nd + Pc + Join_Control (Alphabetic ~ L + Nl + Other_Alphabetic marks).
        if cat[0] in "LM" or cat in ("Nd", "Nl", "Pc") or cp in (0x200C, 0x200D):
            p |= P_WORD
        c = unicodedata.combining(ch)
        if oracle is not None and c:
            # a mark tokenizers' NFC gives class 0 is not reordered there
            probes = ("a\u0301" + ch, "a" + ch + "\u0334")
            if any(oracle.nfc.normalize_str(x) != unicodedata.normalize("NFC", x) for x in probes):
                n_ccc_fixed += 1
                c = 0
        ccc[cp] = c
        if c:
            p |= P_CCC
        if 0xD800 <= cp < 0xE000:
            props[cp] = p
            continue
        if not is_hangul_syllable(cp):
            d = canon_decomp(cp)
            if d is not None and oracle is not None and oracle.nfd.normalize_str(ch) == ch:
                n_dec_fixed += 1
                d = None
            if d is not None:
                decomps[cp] = full_decomp(cp)
                if len(d) == 2 and unicodedata.normalize("NFC", chr(d[0]) + chr(d[1])) == ch:
                    if oracle is None or oracle.nfc.normalize_str(chr(d[0]) + chr(d[1])) == ch:
                        comps[(d[0], d[1])] = cp
                    else:
                        n_comp_fixed += 1
        nfc_ch = oracle.nfc.normalize_str(ch) if oracle is not None else unicodedata.normalize("NFC", ch)
        if nfc_ch != ch:
            p |= P_NFC_NO
        props[cp] = p
    seconds = {b for (_, b) in comps}
    seconds |= set(range(VBase, VBase + VCount)) | set(range(TBase + 1, TBase + TCount))
    for cp in seconds:
        props[cp] |= P_NFC_MAYBE

    def two_level(arr: bytearray, name: str) -> str:
        blocks: dict[bytes, int] = {}
        stage1 = []
        stage2: list[bytes] = []
        for b in range(MAXCP // BLOCK):
            chunk = bytes(arr[b * BLOCK:(b + 1) * BLOCK])
            if chunk not in blocks:
                blocks[chunk] = len(stage2)
                stage2.append(chunk)
            stage1.append(blocks[chunk])
        s = [f"const uint16_t azr_uni_{name}_stage1[{len(stage1)}] = {{"]
        for i in range(0, len(stage1), 16):
            s.append("    " + ", ".join(str(x) for x in stage1[i:i + 16]) + ",")
        s.append("};")
        s.append(f"const uint8_t azr_uni_{name}_stage2[{len(stage2) * BLOCK}] = {{")
        flat = b"".join(stage2)
        for i in range(0, len(flat), 32):
            s.append("    " + ",".join(str(x) for x in flat[i:i + 32]) + ",")
        s.append("};")
        return "\n".join(s)

    dkeys = sorted(decomps)
    dseq: list[int] = []
    dentries = []
    for cp in dkeys:
        seq = decomps[cp]
        dentries.append((cp, len(dseq), len(seq)))
        dseq.extend(seq)
    ckeys = sorted(comps)

    lines = [
        "/*",
        " * unicode_tables.c -- GENERATED by tools/gen_unicode_tables.py from Python's",
        f" * unicodedata (Unicode {unicodedata.unidata_version}). Do not edit by hand; rerun the generator.",
        " *",
        " * Owns: the Unicode property, combining-class, decomposition and composition",
        " * tables the tokenizer's pre-tokenizer scanners and NFC normaliser read.",
        " * Must not: contain code other than constant tables.",
        " */",
        "#include <stdint.h>",
        '#include "tokenizer/unicode.h"',
        "",
        f'const char azr_unicode_version[] = "{unicodedata.unidata_version}";',
        "/* Calibrated against HF tokenizers " + (oracle.version if oracle else "(not calibrated)") +
        f": {n_cat_fixed} code points with another letter/number class in its Oniguruma,",
        f" * {n_ccc_fixed} marks with combining class 0, {n_dec_fixed} code points without a decomposition and",
        f" * {n_comp_fixed} compositions missing in its NFC. */",
        f"const int azr_unicode_calibrated = {1 if oracle else 0};",
        "",
        two_level(props, "prop"),
        "",
        two_level(ccc, "ccc"),
        "",
        f"const int azr_uni_n_decomp = {len(dentries)};",
        f"const azr_uni_decomp azr_uni_decomp_table[{len(dentries)}] = {{",
    ]
    for cp, off, n in dentries:
        lines.append(f"    {{0x{cp:X}, {off}, {n}}},")
    lines.append("};")
    lines.append(f"const uint32_t azr_uni_decomp_seq[{len(dseq)}] = {{")
    for i in range(0, len(dseq), 12):
        lines.append("    " + ", ".join(f"0x{x:X}" for x in dseq[i:i + 12]) + ",")
    lines.append("};")
    lines.append(f"const int azr_uni_n_comp = {len(ckeys)};")
    lines.append(f"const azr_uni_comp azr_uni_comp_table[{len(ckeys)}] = {{")
    for a, b in ckeys:
        lines.append(f"    {{0x{a:X}, 0x{b:X}, 0x{comps[(a, b)]:X}}},")
    lines.append("};")
    out_path.write_text("\n".join(lines) + "\n")
    print(f"wrote {out_path} (Unicode {unicodedata.unidata_version}, {len(dentries)} decompositions, "
          f"{len(ckeys)} compositions; calibrated: {oracle is not None}, class fixes {n_cat_fixed}, "
          f"ccc fixes {n_ccc_fixed}, decomposition fixes {n_dec_fixed}, composition fixes {n_comp_fixed})")


if __name__ == "__main__":
    main()
