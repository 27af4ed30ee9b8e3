"""Seeded mutation fuzzing of the three file formats azr reads (issue #24).

Each test takes a small, valid file, mutates it a few hundred times and
loads every mutant through the public entry point:

- safetensors: TinyStories-656K's real ``model.safetensors`` (beside its
  config.json) through ``azr.Model.from_pretrained``, and
  ``azr._core.safetensors_read``, which hands every name to Python;
- GGUF: a tiny llama written by the reference ``gguf`` package (F32, F16,
  Q8_0 and Q4_0 tensors, a byte-level BPE vocabulary, a chat template)
  through ``azr.gguf.ensure_hf_dir`` and then ``azr.Model.from_pretrained``
  and ``azr.Tokenizer.from_pretrained`` on the converted directory;
- tokenizer.json: TinyStories-656K's real tokenizer (SentencePiece-style
  BPE: normalizer, byte fallback, decoder sequence, post-processor) through
  ``azr.Tokenizer.from_pretrained``, then encode and decode.

Mutations: byte flips, bytes set to boundary values, 4- and 8-byte integers
overwritten with boundary values, truncations, deletions and insertions
(weighted towards headers, where the parsing is), and edits of fields of the
parsed JSON header / tokenizer JSON / GGUF metadata and tensor list (values
of other types, huge, negative and 5000-digit numbers, NUL, lone surrogates,
bytes that are not UTF-8, deleted, duplicated and added keys).

A load must succeed or raise `azr.FormatError` / `azr.UnsupportedError`
naming the file; any other exception type is a failure that reports its
seed and traceback, a crash ends the run, and a hang is stopped by the
per-test timeout. Every mutation is a function of its seed and the input
file alone (`random.Random(seed)`), so a run is the same every time, and a
failing seed reproduces with the `case` helpers below. Seeds that found bugs
are kept as named regression cases (``REGRESSIONS``); when the mutators
change, re-derive them.
"""
from __future__ import annotations

import json
import random
import shutil
import struct
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT
from gguf import quants

import azr
from azr import _core

ALLOWED = (azr.FormatError, azr.UnsupportedError)

N_SAFETENSORS = 400
N_GGUF = 400
N_TOKENIZER = 400

# Seeds that found bugs (run whatever the counts above): format -> seed -> what
# the loader did before the fix. The seeds above 400 come from a run of 3000
# per format when the fuzzer was written.
REGRESSIONS: dict[str, dict[int, str]] = {
    "safetensors": {
        28: "a tensor name that is not UTF-8, quoted in the loader's error: UnicodeDecodeError",
        91: "an encoded UTF-16 surrogate in a name: UnicodeDecodeError from safetensors_read",
        108: "a 0xFF byte in a name: UnicodeDecodeError from safetensors_read",
    },
    "gguf": {
        108: "a metadata key that is not UTF-8: UnicodeDecodeError from metadata()",
        179: "llama.block_count = 2**32 - 1: memory ran out listing the expected tensors",
        311: "tokenizer.ggml.token_type written as a string: TypeError (len of a 0-d array)",
        513: "a tensor name that is not UTF-8: UnicodeDecodeError from tensors()",
        566: "tokenizer.ggml.tokens written as an integer: TypeError",
        1115: "a tensor whose byte count overflows: a FormatError naming neither file nor tensor",
        1219: "llama.expert_count written as an array: NumPy's ambiguous truth value (ValueError)",
        1795: "tokenizer.ggml.merges written as an integer: TypeError",
    },
    "tokenizer": {
        76: "a 5000-digit number: ValueError from json (Python's int digit limit)",
        83: "a post_processor 'single' entry that is not an object: TypeError",
        98: "a \\ud800 escape in an added token: UnicodeEncodeError from the binding",
        246: "post_processor special_tokens entries of the wrong type: AttributeError",
        393: "a lone surrogate escape: UnicodeEncodeError from the binding",
        473: "Strip decoder start 'a b': ValueError from int()",
        804: "post_processor 'single' that is an integer: TypeError",
        1066: "special-token ids that are strings: ValueError from int()",
        1315: "an added token id of 2**32: OverflowError from the binding",
        1444: "special-token ids holding a list: TypeError from int()",
        2170: "an added token id of -(2**63 - 1): OverflowError from the binding",
        2227: "Strip decoder start 1e+30: TypeError from the binding",
        2368: "a SpecialToken id that is a list: TypeError (unhashable)",
    },
}

# ---------------------------------------------------------------------------
# Mutators
# ---------------------------------------------------------------------------

_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xC0, 0xED, 0xFF, ord('"'), ord("\\"), ord("{"), ord("}"), ord("["),
          ord("]"), ord(","), ord(":"), ord("0"), ord("9"), ord("-"), ord("."), ord("e"), ord(" "))
_INTS = (0, 1, 2, 7, 31, 32, 255, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1)
HUGE = "__azr_fuzz_5000_digits__"  # replaced by a 5000-digit number after json.dumps


def mutate_bytes(data: bytes, rng: random.Random, hot: int) -> bytes:
    """One byte-level mutation; positions fall in data[:hot] three times in four."""
    b = bytearray(data)
    n = len(b)

    def pos() -> int:
        return rng.randrange(min(hot, n) if hot and rng.random() < 0.75 else n)

    kind = rng.randrange(7)
    if kind == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            b[pos()] ^= 1 << rng.randrange(8)
    elif kind == 1:  # boundary bytes
        for _ in range(rng.randint(1, 3)):
            b[pos()] = rng.choice(_BYTES)
    elif kind in (2, 3):  # a little-endian integer
        w = 4 if kind == 2 else 8
        i = pos()
        i -= i % w if rng.random() < 0.5 else 0
        v = rng.choice(_INTS) % (1 << (8 * w))
        b[i:i + w] = v.to_bytes(w, "little")[: max(0, n - i)]
        del b[n:]
    elif kind == 4:  # truncate
        del b[pos():]
    elif kind == 5:  # delete a run
        i = pos()
        del b[i:i + rng.choice((1, 2, 4, 8, 64))]
    else:  # insert boundary bytes or a copy of a run
        i = pos()
        j = rng.randrange(n)
        ins = bytes(rng.choice(_BYTES) for _ in range(rng.randint(1, 8))) if rng.random() < 0.5 \
            else bytes(b[j:j + rng.randint(1, 64)])
        b[i:i] = ins
    return bytes(b)


def _weird(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False, 0, -1, 1, 2, 255, 10**12, -(10**12), 2**32, 2**63, 2**64 + 8, 10**30, 0.5, -2.5,
        1e308, "", "x", "a b", "\u0000", "a\u0000b", "\ud800", "\u2581", "<unk>", "é" * 40, HUGE, [], [0],
        ["a", "b"], [[1]], {}, {"type": "x"}, {"a": None},
    ])


def _nodes(obj: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every node of a parsed JSON document."""
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _nodes(v, path + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def mutate_json(obj: Any, rng: random.Random, prefer: Callable[[tuple], bool] = lambda p: True) -> Any:
    """Edit one to three nodes of a parsed JSON document in place; returns it
    (the new root if the root itself was replaced)."""
    for _ in range(rng.randint(1, 3)):
        paths = _nodes(obj)
        liked = [p for p in paths if prefer(p)]
        path = rng.choice(liked if liked and rng.random() < 0.8 else paths)
        node = _get(obj, path)
        parent = _get(obj, path[:-1]) if path else None
        op = rng.randrange(6)
        if op == 0 or parent is None:  # replace with a value of any type
            if parent is None:
                if rng.random() < 0.1:
                    return _weird(rng)
                continue
            parent[path[-1]] = _weird(rng)
        elif op == 1:  # delete it
            del parent[path[-1]]
        elif op == 2 and isinstance(node, dict):  # add or duplicate a key
            key = rng.choice(list(node) + ["", "type", "id", "\u0000", "__metadata__", "x\ud800"]) \
                if node else "x"
            node[key + rng.choice(["", "_", "\u0000"]) if rng.random() < 0.5 else key] = _weird(rng)
        elif op == 2 and isinstance(node, list):  # duplicate, drop or reorder elements
            if node:
                i = rng.randrange(len(node))
                rng.choice([lambda: node.insert(i, node[i]), lambda: node.pop(i), lambda: rng.shuffle(node)])()
        elif op == 3 and isinstance(node, bool):
            parent[path[-1]] = not node
        elif op == 3 and isinstance(node, int):
            parent[path[-1]] = node + rng.choice([-1, 1, -node - 1, 2**31, 2**32, 10**12, -(2**63)])
        elif op == 3 and isinstance(node, str):
            s = list(node)
            if s and rng.random() < 0.5:
                s[rng.randrange(len(s))] = rng.choice(["\u0000", "\ud800", "é", " ", '"', "\\", "\u2581", "x"])
            else:
                s.insert(rng.randrange(len(s) + 1), rng.choice(["\u0000", "\udfff", "\U0001F600", "x"]))
            parent[path[-1]] = "".join(s)
        elif op == 4 and isinstance(parent, dict):  # rename the key
            parent[path[-1] + rng.choice(["_", "\u0000", "x", "é"])] = parent.pop(path[-1])
        else:  # the value of a sibling
            sib = rng.choice(list(parent.values()) if isinstance(parent, dict) else parent)
            parent[path[-1]] = json.loads(json.dumps(sib))
    return obj


def dumps(obj: Any, rng: random.Random) -> bytes:
    """JSON text (sometimes pretty, sometimes escaped) with HUGE spelled out.
    A lone surrogate is written as a \\u escape, or rarely as the bytes
    that encode it (which are not UTF-8)."""
    ascii_, indent = rng.random() < 0.5, rng.choice([None, None, 2])
    text = json.dumps(obj, ensure_ascii=ascii_, indent=indent).replace(f'"{HUGE}"', "1" + "0" * 4999)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        if rng.random() < 0.8:
            text = json.dumps(obj, ensure_ascii=True, indent=indent).replace(f'"{HUGE}"', "1" + "0" * 4999)
        return text.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------


def _load_outcome(load: Callable[[], Any], names: tuple[str, ...]) -> str | None:
    """None if the load succeeded or failed cleanly, else what went wrong."""
    try:
        load()
    except ALLOWED as e:
        msg = str(e)
        if not any(n in msg for n in names):
            return f"{type(e).__name__} does not name the file: {msg[:300]}"
        return None
    except Exception as e:  # noqa: BLE001 - the point of the test
        return f"{type(e).__name__}: {str(e)[:300]}\n{traceback.format_exc()}"
    return None


def _run(fmt: str, n: int, case: Callable[[int], str | None]) -> None:
    seeds = sorted(set(range(n)) | set(REGRESSIONS[fmt]))
    failures = []
    for seed in seeds:
        why = case(seed)
        if why:
            failures.append(f"{fmt} mutation seed {seed}"
                            f"{' (regression: ' + REGRESSIONS[fmt][seed] + ')' if seed in REGRESSIONS[fmt] else ''}"
                            f": {why}")
    assert not failures, f"{len(failures)} of {len(seeds)} mutants broke the loader:\n\n" + "\n\n".join(failures[:8])


# ---------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tinystories(shared_data) -> Path:
    d = shared_data / "models" / "tinystories-656k"
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"real test data not found: {d}/model.safetensors")
    return d


class SafetensorsCase:
    def __init__(self, src: Path, work: Path) -> None:
        self.raw = (src / "model.safetensors").read_bytes()
        (hlen,) = struct.unpack("<Q", self.raw[:8])
        self.hlen = hlen
        self.header = json.loads(self.raw[8:8 + hlen])
        self.data = self.raw[8 + hlen:]
        self.dir = work / "st"
        self.dir.mkdir()
        shutil.copy(src / "config.json", self.dir / "config.json")
        self.file = self.dir / "model.safetensors"

    def mutant(self, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return mutate_bytes(self.raw, rng, hot=8 + self.hlen)
        h = mutate_json(json.loads(json.dumps(self.header)), rng,
                        prefer=lambda p: len(p) >= 2 or p == ("__metadata__",))
        blob = dumps(h, rng)
        if rng.random() < 0.8:
            blob += b" " * (-len(blob) % 8)
        n = len(blob) if rng.random() < 0.9 else rng.choice([len(blob) + 8, len(blob) - 1, 2**64 - 1])
        return struct.pack("<Q", n) + blob + self.data

    def __call__(self, seed: int) -> str | None:
        self.file.write_bytes(self.mutant(seed))
        names = (str(self.file),)
        return (_load_outcome(lambda: azr.Model.from_pretrained(self.dir), names)
                or _load_outcome(lambda: _core.safetensors_read(self.file), names))


@pytest.mark.timeout(120)
def test_safetensors_mutants_load_or_raise_format_error(tinystories, tmp_path):
    case = SafetensorsCase(tinystories, tmp_path)
    case.file.write_bytes(case.raw)  # the unmutated file loads
    assert azr.Model.from_pretrained(case.dir).config.vocab_size == 2048
    _run("safetensors", N_SAFETENSORS, case)


# ---------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tiny_gguf_spec() -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(metadata key -> (value, type, array element type), tensor name ->
    (array, raw ggml type or None)) of a one-layer llama."""
    rng = np.random.default_rng(0)
    b2u = _bytes_to_unicode()
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [b2u[b] for b in range(256)] + \
        ["Ġt", "he", "Ġthe", "in", "Ġa"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    vocab, hidden, heads, kv_heads, inter = len(tokens), 32, 2, 1, 64
    a = "llama"
    kv: dict[str, tuple] = {
        "general.architecture": (a, VT.STRING, None),
        "general.name": ("fuzz", VT.STRING, None),
        f"{a}.block_count": (1, VT.UINT32, None),
        f"{a}.context_length": (128, VT.UINT32, None),
        f"{a}.embedding_length": (hidden, VT.UINT32, None),
        f"{a}.feed_forward_length": (inter, VT.UINT32, None),
        f"{a}.attention.head_count": (heads, VT.UINT32, None),
        f"{a}.attention.head_count_kv": (kv_heads, VT.UINT32, None),
        f"{a}.rope.freq_base": (10000.0, VT.FLOAT32, None),
        f"{a}.attention.layer_norm_rms_epsilon": (1e-6, VT.FLOAT32, None),
        "tokenizer.ggml.model": ("gpt2", VT.STRING, None),
        "tokenizer.ggml.pre": ("smollm", VT.STRING, None),
        "tokenizer.ggml.tokens": (tokens, VT.ARRAY, VT.STRING),
        "tokenizer.ggml.token_type": ([3, 3, 3] + [1] * (vocab - 3), VT.ARRAY, VT.INT32),
        "tokenizer.ggml.merges": (merges, VT.ARRAY, VT.STRING),
        "tokenizer.ggml.bos_token_id": (1, VT.UINT32, None),
        "tokenizer.ggml.eos_token_id": (2, VT.UINT32, None),
        "tokenizer.ggml.add_bos_token": (True, VT.BOOL, None),
        "tokenizer.chat_template": ("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}",
                                    VT.STRING, None),
    }

    def w(*shape, scale=0.1):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    hd = hidden // heads
    tensors: dict[str, tuple] = {
        "token_embd.weight": (w(vocab, hidden), None),
        "blk.0.attn_norm.weight": (1 + w(hidden), None),
        "blk.0.attn_q.weight": (quants.quantize(w(heads * hd, hidden), QT.Q8_0), QT.Q8_0),
        "blk.0.attn_k.weight": (quants.quantize(w(kv_heads * hd, hidden), QT.Q4_0), QT.Q4_0),
        "blk.0.attn_v.weight": (w(kv_heads * hd, hidden).astype(np.float16), None),
        "blk.0.attn_output.weight": (w(hidden, heads * hd), None),
        "blk.0.ffn_norm.weight": (1 + w(hidden), None),
        "blk.0.ffn_gate.weight": (quants.quantize(w(inter, hidden), QT.Q8_0), QT.Q8_0),
        "blk.0.ffn_up.weight": (w(inter, hidden).astype(np.float16), None),
        "blk.0.ffn_down.weight": (w(hidden, inter), None),
        "output_norm.weight": (1 + w(hidden), None),
    }
    return kv, tensors


def write_gguf(path: Path, kv: dict[str, tuple], tensors: dict[str, tuple]) -> None:
    """Write with the reference writer; general.architecture comes from `kv`
    like every other key (so a mutant may drop it or change its type)."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.kv_data[0].clear()
    for key, (val, vtype, sub) in kv.items():
        w.kv_data[0][key] = gguf.GGUFValue(value=val, type=vtype, sub_type=sub)
    for name, (arr, raw) in tensors.items():
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


_GGUF_VALUES: list[tuple] = [
    (0, VT.UINT32, None), (2**32 - 1, VT.UINT32, None), (-1, VT.INT32, None), (2**63, VT.UINT64, None),
    (-(2**63), VT.INT64, None), (1.5, VT.FLOAT32, None), (float("nan"), VT.FLOAT32, None),
    (float("inf"), VT.FLOAT64, None), (-0.0, VT.FLOAT64, None), (True, VT.BOOL, None), (7, VT.UINT8, None),
    ("", VT.STRING, None), ("llama", VT.STRING, None), ("qwen2", VT.STRING, None), ("gpt2", VT.STRING, None),
    ("yarn", VT.STRING, None), (b"\xff\xfe", VT.STRING, None), ("x\u0000y", VT.STRING, None),
    ("é" * 40, VT.STRING, None), ([1, 2], VT.ARRAY, VT.INT32), (["a", "b"], VT.ARRAY, VT.STRING),
    ([b"\xff"], VT.ARRAY, VT.STRING), ([1.5], VT.ARRAY, VT.FLOAT32), ([True], VT.ARRAY, VT.BOOL),
]
_GGUF_EXTRA_KEYS = ["llama.expert_count", "llama.rope.scaling.type", "llama.rope.scaling.factor",
                    "llama.attention.key_length", "llama.attention.value_length", "llama.rope.dimension_count",
                    "llama.vocab_size", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id",
                    "tokenizer.ggml.add_eos_token", "general.alignment", "llama.context_length"]


def mutate_gguf_spec(kv: dict, tensors: dict, rng: random.Random) -> None:
    """Edit one to three metadata entries or tensors in place."""
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        key = rng.choice(list(kv)) if kv else "general.architecture"
        if op == 0 and kv:  # drop a key
            del kv[key]
        elif op == 1:  # another value, of any type, for an existing or a new key
            kv[rng.choice([key, key, rng.choice(_GGUF_EXTRA_KEYS)])] = rng.choice(_GGUF_VALUES)
        elif op == 2 and key in kv and kv[key][1] == VT.ARRAY:  # edit an array
            val, vt, sub = kv[key]
            val = list(val)
            i = rng.randrange(len(val))
            if rng.random() < 0.3:
                val = val[: rng.randrange(len(val))] or val[:1]
            elif sub == VT.STRING:
                val[i] = rng.choice(["", "<|endoftext|>", val[rng.randrange(len(val))], b"\xc3", "Ġ t x",
                                     "nope nope", "\u0000"])
            else:
                val[i] = rng.choice([0, 6, 99, -5, 2**31 - 1])
            kv[key] = (val, vt, sub)
        elif op == 3 and key in kv and kv[key][1] in (VT.UINT32, VT.INT32, VT.UINT64):  # boundary integer
            kv[key] = (rng.choice([0, 1, 3, 4096, 2**31 - 1, 2**32 - 1]), VT.UINT32, None)
        elif op == 4:  # drop a tensor
            del tensors[rng.choice(list(tensors))]
        elif op == 5:  # a tensor of another shape or type, or under another name
            name = rng.choice(list(tensors))
            arr, raw = tensors.pop(name)
            if rng.random() < 0.5:
                new = name.replace("blk.0", rng.choice(["blk.1", "blk.00"])) if rng.random() < 0.5 else \
                    rng.choice([name + "\u00e9", "rope_freqs.weight", "output.weight", "blk.0.attn_q.bias"])
                tensors[new] = (arr, raw)
            else:
                f32 = np.zeros((rng.choice([1, 2, 32]), rng.choice([16, 32, 64])), np.float32)
                choice = rng.randrange(3)
                tensors[name] = ((f32, None) if choice == 0 else
                                 (f32.astype(np.float16), None) if choice == 1 else
                                 (quants.quantize(np.zeros((2, 32), np.float32), QT.Q8_0), QT.Q8_0))
        else:  # the same value written with another integer or float type
            if key in kv and isinstance(kv[key][0], (int, float)) and not isinstance(kv[key][0], bool):
                v = kv[key][0]
                kv[key] = (float(v), VT.FLOAT32, None) if rng.random() < 0.5 else \
                    (int(v) if v == v and abs(v) < 2**31 else 0, VT.INT32, None)


class GGUFCase:
    def __init__(self, work: Path) -> None:
        self.kv, self.tensors = tiny_gguf_spec()
        self.work = work
        base = work / "base.gguf"
        write_gguf(base, self.kv, self.tensors)
        self.raw = base.read_bytes()
        with _core.GGUFFile(str(base)) as g:
            self.hot = int(g.data_offset)

    def write_mutant(self, seed: int, path: Path) -> None:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            path.write_bytes(mutate_bytes(self.raw, rng, hot=self.hot))
            return
        kv = dict(self.kv)
        tensors = dict(self.tensors)
        mutate_gguf_spec(kv, tensors, rng)
        try:
            write_gguf(path, kv, tensors)
        except (ValueError, TypeError, struct.error, UnicodeError):  # the writer refuses it: flip bytes
            path.write_bytes(mutate_bytes(self.raw, rng, hot=self.hot))

    def __call__(self, seed: int) -> str | None:
        d = self.work / f"m{seed}"
        d.mkdir()
        path = d / "m.gguf"
        self.write_mutant(seed, path)
        cache = d / "cache"
        out: list[Path] = []

        def convert() -> None:
            out.append(azr.gguf.ensure_hf_dir(path, cache_dir=cache, progress=False))

        try:
            why = _load_outcome(convert, (str(path),))
            if why is None and out:
                names = (str(out[0]),)
                why = (_load_outcome(lambda: azr.Model.from_pretrained(out[0]), names)
                       or _load_outcome(lambda: _tokenize(azr.Tokenizer.from_pretrained(out[0])), names))
            return why
        finally:
            shutil.rmtree(d, ignore_errors=True)


def _tokenize(tok: azr.Tokenizer) -> None:
    """Use a tokenizer that loaded: encode, decode what it encoded and every
    id it has a token for (decoding other ids is a documented ValueError)."""
    text = "<|im_start|>the cat 12 é\u2581\n<unk> x"
    for allow in (False, True):
        ids = tok.encode(text, allow_special=allow)
        tok.decode(ids)
    tok.decode([i for i in range(min(tok.vocab_size, 400)) if tok.id_to_token(i) is not None])


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:.*tokenizer not attached")  # the tokenizer is loaded on its own
def test_gguf_mutants_load_or_raise_format_error(tmp_path):
    case = GGUFCase(tmp_path)
    path = tmp_path / "ok.gguf"
    write_gguf(path, case.kv, case.tensors)
    m = azr.Model.from_pretrained(azr.gguf.ensure_hf_dir(path, cache_dir=tmp_path / "c", progress=False))
    assert m.config.num_hidden_layers == 1 and m.tokenizer is not None  # the unmutated file converts
    _run("gguf", N_GGUF, case)


# ---------------------------------------------------------------------------
# tokenizer.json
# ---------------------------------------------------------------------------


class TokenizerCase:
    def __init__(self, src: Path, work: Path) -> None:
        self.raw = (src / "tokenizer.json").read_bytes()
        self.obj = json.loads(self.raw)
        self.dir = work / "tok"
        self.dir.mkdir()
        self.file = self.dir / "tokenizer.json"
        big = ("vocab", "merges")
        self.prefer = lambda p: not (len(p) >= 3 and p[0] == "model" and p[1] in big)
        # the text before the vocabulary: where the structure is
        self.hot = self.raw.find(b'"vocab"') if b'"vocab"' in self.raw else len(self.raw)

    def mutant(self, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.3:
            return mutate_bytes(self.raw, rng, hot=self.hot)
        return dumps(mutate_json(json.loads(self.raw), rng, prefer=self.prefer), rng)

    def __call__(self, seed: int) -> str | None:
        self.file.write_bytes(self.mutant(seed))
        return _load_outcome(lambda: _tokenize(azr.Tokenizer.from_pretrained(self.dir)), (str(self.file),))


@pytest.mark.timeout(120)
def test_tokenizer_json_mutants_load_or_raise_format_error(tinystories, tmp_path):
    case = TokenizerCase(tinystories, tmp_path)
    case.file.write_bytes(case.raw)  # the unmutated file loads
    _tokenize(azr.Tokenizer.from_pretrained(case.dir))
    _run("tokenizer", N_TOKENIZER, case)
