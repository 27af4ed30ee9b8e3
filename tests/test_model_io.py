"""Model files: safetensors in and out (F32/F16/BF16, sharded, aliased), the
TinyStories-656K golden reference, and hostile inputs. Every bad input must
raise a Python exception that names the file / tensor / field."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import safetensors.numpy as st_numpy
import torch
import transformers

import azr
from azr import _core
from azr.model import Model, ModelConfig


def _tiny_cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, model_type="llama",
                tie_word_embeddings=False)
    base.update(kw)
    return ModelConfig(**base)


def _ids(B, T, V=50, seed=0):
    return np.random.default_rng(seed).integers(0, V, (B, T))


def _raw_safetensors(path: Path, header: dict, data: bytes) -> None:
    """Write a safetensors file by hand (no validation) for hostile-input tests."""
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


@pytest.fixture
def saved(tmp_path):
    m = Model.from_config(_tiny_cfg(), seed=3, init_std=0.2)
    d = tmp_path / "m"
    m.save_pretrained(d)
    return m, d


# ---- round trips --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_save_then_transformers_loads_same_logits(tmp_path, kind):
    cfg = _tiny_cfg(model_type=kind, tie_word_embeddings=(kind == "qwen2"),
                    rope_theta=1e6 if kind == "qwen2" else 1e4)
    m = Model.from_config(cfg, seed=1, init_std=0.2)
    m.save_pretrained(tmp_path)
    tm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    tm.eval()
    assert type(tm).__name__ == {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM",
                                 "mistral": "MistralForCausalLM"}[kind]
    ids = _ids(2, 11)
    with torch.no_grad():
        ref = tm(torch.tensor(ids)).logits.numpy()
    assert np.abs(m.logits(ids) - ref).max() <= 1e-4
    # and our reload is bit-identical
    m2 = Model.from_pretrained(tmp_path)
    assert m2.config == m.config
    for k, v in m.parameters().items():
        np.testing.assert_array_equal(m2.parameters()[k], v)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_load_half_precision_and_sharded(tmp_path, dtype):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=40,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=1, tie_word_embeddings=False)
    tm = transformers.LlamaForCausalLM(cfg).to(dtype)
    tm.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    m = Model.from_pretrained(tmp_path)
    for name, p in tm.named_parameters():
        np.testing.assert_array_equal(m.parameters()[name], p.detach().float().numpy())


def test_safetensors_reader_matches_reference_library(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a": rng.normal(size=(3, 4)).astype(np.float32),
               "b.c": rng.normal(size=(7,)).astype(np.float16),
               "scalar": np.array(2.5, dtype=np.float32), "empty": np.zeros((0, 3), np.float32)}
    st_numpy.save_file(tensors, tmp_path / "x.safetensors", metadata={"k": "v"})
    got, meta = _core.safetensors_read(tmp_path / "x.safetensors")
    assert meta == {"k": "v"}
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32))
    # our writer is readable by the reference library
    _core.safetensors_write(tmp_path / "y.safetensors", [(k, v) for k, v in got.items()],
                            {"format": "pt"})
    back = st_numpy.load_file(tmp_path / "y.safetensors")
    for k, v in got.items():
        np.testing.assert_array_equal(back[k], v)


# ---- TinyStories-656K golden reference ----------------------------------------

def test_tinystories_golden_greedy(shared_data):
    d = shared_data / "models" / "tinystories-656k"
    golden = json.loads((d / "golden_greedy_reference.json").read_text())
    m = Model.from_pretrained(d)  # only lm_head.weight is stored, aliased by __metadata__
    assert m.config.tie_word_embeddings
    tm = transformers.LlamaForCausalLM.from_pretrained(d, dtype=torch.float32)
    tm.eval()
    for case in golden:
        ids = list(case["input_ids"])
        # first-step top-5 logits: ours, transformers and the golden file agree
        lg = m.logits(np.array([ids]))[0, -1]
        with torch.no_grad():
            ref = tm(torch.tensor([ids])).logits[0, -1].numpy()
        assert np.abs(lg - ref).max() <= 1e-4
        top = np.argsort(-lg)[:5]
        want = case["first_step_top5_logits"]
        assert [int(t) for t in top] == [t for t, _ in want]
        np.testing.assert_allclose(lg[top], [v for _, v in want], atol=1e-4)
        # 64 greedy tokens with a naive loop over the full forward
        seq = list(ids)
        for _ in range(len(case["greedy_new_ids"])):
            seq.append(int(np.argmax(m.logits(np.array([seq]))[0, -1])))
        new = seq[len(ids):]
        assert new == case["greedy_new_ids"]
        # the golden file itself, checked with transformers
        with torch.no_grad():
            out = tm.generate(torch.tensor([ids]), max_new_tokens=len(new), do_sample=False,
                              eos_token_id=None, pad_token_id=0)
        assert out[0, len(ids):].tolist() == case["greedy_new_ids"]


# ---- hostile inputs ------------------------------------------------------------

def test_missing_weights_file(saved):
    _, d = saved
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        Model.from_pretrained(d)


def test_missing_directory_without_gguf_layer(tmp_path):
    with pytest.raises((FileNotFoundError, OSError, ValueError)) as ei:
        Model.from_pretrained(tmp_path / "nope")
    assert "nope" in str(ei.value)


def test_truncated_file(saved):
    _, d = saved
    f = d / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(azr.FormatError, match=r"model\.safetensors.*'model\.norm\.weight'|past the end"):
        Model.from_pretrained(d)
    f.write_bytes(raw[:5])
    with pytest.raises(azr.FormatError, match="too short"):
        Model.from_pretrained(d)


def test_header_length_lies(saved):
    _, d = saved
    f = d / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<Q", len(raw) * 2) + raw[8:])
    with pytest.raises(azr.FormatError, match="header length"):
        Model.from_pretrained(d)


def _rewrite_header(f: Path, edit) -> None:
    raw = f.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    edit(header)
    _raw_safetensors(f, header, raw[8 + n:])


def test_header_offsets_overlap(saved):
    _, d = saved
    f = d / "model.safetensors"

    def overlap(h):
        a, b = h["model.norm.weight"], h["model.layers.0.input_layernorm.weight"]
        b["data_offsets"] = list(a["data_offsets"])
    _rewrite_header(f, overlap)
    with pytest.raises(azr.FormatError, match="overlap"):
        Model.from_pretrained(d)


def test_header_size_disagrees_with_shape(saved):
    _, d = saved
    f = d / "model.safetensors"

    def lie(h):
        t = h["model.norm.weight"]
        t["data_offsets"] = [t["data_offsets"][0], t["data_offsets"][1] - 4]
    _rewrite_header(f, lie)
    with pytest.raises(azr.FormatError, match=r"'model\.norm\.weight'.*need"):
        Model.from_pretrained(d)


@pytest.mark.parametrize("bad", ["{", "[]", '{"x": {"dtype": "F32"}}',
                                 '{"x": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}',
                                 '{"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}',
                                 '{"x": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}'])
def test_malformed_headers(tmp_path, bad):
    f = tmp_path / "bad.safetensors"
    h = bad.encode()
    f.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 8)
    with pytest.raises(azr.FormatError, match="bad.safetensors"):
        _core.safetensors_read(f)


def _st_bytes(header: bytes, data: bytes) -> bytes:
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def _reference_refuses(raw: bytes) -> bool:
    import safetensors

    try:
        st_numpy.load(raw)
    except safetensors.SafetensorError:
        return True
    return False


@pytest.mark.parametrize("header,data,match", [
    # element count x element size overflows 64 bits (the count alone does not)
    (b'{"x": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}}', b"",
     "byte size overflows"),
    (b'{"x": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0]}}', b"",
     "byte size overflows"),
    # 2**64 + 8: a number the old parser wrapped around to 8
    (b'{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551624]}}',
     b"\0" * 8, "data_offsets.*too large"),
    (b'{"x": {"dtype": "F32", "shape": [19000000000000000000], "data_offsets": [0, 8]}}',
     b"\0" * 8, "shape.*too large"),
], ids=["f32-count-times-4", "f64-count-times-8", "offset-wraps", "shape-wraps"])
def test_safetensors_sizes_that_overflow_are_refused(tmp_path, header, data, match):
    raw = _st_bytes(header, data)
    assert _reference_refuses(raw)
    f = tmp_path / "big.safetensors"
    f.write_bytes(raw)
    with pytest.raises(azr.FormatError, match=match) as ei:
        _core.safetensors_read(f)
    assert "big.safetensors" in str(ei.value) and "'x'" in str(ei.value)


@pytest.mark.parametrize("header,match", [
    (b'{"a\\u0000b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     r"tensor name 'a' is followed by a NUL"),
    (b'{"__metadata__": {"k": "v\\u0000w"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     r"__metadata__ value 'v' is followed by a NUL"),
    (b'{"a\xff": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     "tensor name is not valid UTF-8"),
    (b'{"a\xed\xa0\x80": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     "tensor name is not valid UTF-8"),
    (b'{"a\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     r"tensor name has a lone UTF-16 surrogate \\uD800"),
    (b'{"a\\udc00\\ud800": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     r"tensor name has a lone UTF-16 surrogate \\uDC00"),
    (b'{"__metadata__": {"k\xc0\x80": "v"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     "__metadata__ key is not valid UTF-8"),
    (b'{"__metadata__": {"k": "\xf5"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
     "__metadata__ value is not valid UTF-8"),
], ids=["nul-name", "nul-meta", "ff", "cesu-surrogate", "lone-high", "lone-low", "overlong", "f5"])
def test_safetensors_header_strings_must_be_utf8_without_nul(tmp_path, header, match):
    """The old reader cut "a\\u0000b" to "a" and handed bytes that are not
    UTF-8 to Python, which raised UnicodeDecodeError."""
    f = tmp_path / "names.safetensors"
    f.write_bytes(_st_bytes(header, b"\0" * 8))
    with pytest.raises(azr.FormatError, match=match) as ei:
        _core.safetensors_read(f)
    assert "names.safetensors" in str(ei.value)


def test_safetensors_escaped_non_ascii_names_still_load(tmp_path):
    f = tmp_path / "ok.safetensors"
    f.write_bytes(_st_bytes('{"\\u00e9t\\ud83d\\ude00\u00e9": {"dtype": "F32", "shape": [2], '
                            '"data_offsets": [0, 8]}}'.encode(), b"\0" * 8))
    got, _ = _core.safetensors_read(f)
    assert list(got) == ["\u00e9t\U0001F600\u00e9"]


_TWO = '"a": {{"dtype": "F32", "shape": [1], "data_offsets": [{a0}, {a1}]}}, ' \
       '"b": {{"dtype": "F32", "shape": [1], "data_offsets": [{b0}, {b1}]}}'


@pytest.mark.parametrize("offsets,size,match", [
    ((0, 4, 8, 12), 12, r"tensor 'b'.*begin 8 leaves a gap of 4 bytes after the previous tensor"),
    ((4, 8, 8, 12), 12, r"tensor 'a'.*begin 4 leaves a gap of 4 bytes after the header"),
    ((0, 4, 4, 8), 12, r"4 trailing bytes after the last tensor"),
    ((0, 4, 4, 8), 9, r"1 trailing bytes"),
], ids=["gap-between", "gap-at-start", "trailing", "one-trailing-byte"])
def test_safetensors_data_section_must_be_packed_like_the_reference(tmp_path, offsets, size, match):
    a0, a1, b0, b1 = offsets
    raw = _st_bytes(("{" + _TWO.format(a0=a0, a1=a1, b0=b0, b1=b1) + "}").encode(), b"\0" * size)
    assert _reference_refuses(raw)
    f = tmp_path / "gaps.safetensors"
    f.write_bytes(raw)
    with pytest.raises(azr.FormatError, match=match) as ei:
        _core.safetensors_read(f)
    assert "gaps.safetensors" in str(ei.value)


def test_safetensors_packed_layouts_the_reference_accepts_still_load(tmp_path):
    cases = [
        # out of order in the header, packed in the file
        ("{" + _TWO.format(a0=4, a1=8, b0=0, b1=4) + "}", 8),
        # zero-size tensors at the start, at the end, and sharing an offset
        ('{"z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]}, '
         '"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
         '"e": {"dtype": "F16", "shape": [0], "data_offsets": [8, 8]}}', 8),
        ("{}", 0),
    ]
    for header, size in cases:
        raw = _st_bytes(header.encode(), b"\0" * size)
        assert not _reference_refuses(raw), header
        f = tmp_path / "ok.safetensors"
        f.write_bytes(raw)
        got, _ = _core.safetensors_read(f)
        assert set(got) == set(st_numpy.load(raw)), header


def test_wrong_shape_tensor(saved):
    m, d = saved
    tensors, _ = _core.safetensors_read(d / "model.safetensors")
    tensors["model.layers.1.self_attn.k_proj.weight"] = np.zeros((8, 8), np.float32)
    st_numpy.save_file(tensors, d / "model.safetensors")
    with pytest.raises(azr.FormatError, match=r"k_proj\.weight.*\[8, 8\].*\[16, 32\]"):
        Model.from_pretrained(d)


def test_wrong_dtype_tensor(saved):
    _, d = saved
    tensors, _ = _core.safetensors_read(d / "model.safetensors")
    tensors = {k: v for k, v in tensors.items()}
    tensors["model.norm.weight"] = np.ones(32, np.int64)
    st_numpy.save_file(tensors, d / "model.safetensors")
    with pytest.raises(azr.UnsupportedError, match=r"model\.norm\.weight.*I64"):
        Model.from_pretrained(d)


def test_missing_and_unexpected_tensors(saved):
    _, d = saved
    tensors, _ = _core.safetensors_read(d / "model.safetensors")
    t2 = dict(tensors)
    del t2["model.layers.0.mlp.up_proj.weight"]
    st_numpy.save_file(t2, d / "model.safetensors")
    with pytest.raises(azr.FormatError, match=r"up_proj\.weight.*missing"):
        Model.from_pretrained(d)
    t3 = dict(tensors)
    t3["model.layers.0.self_attn.o_proj.bias"] = np.zeros(32, np.float32)
    st_numpy.save_file(t3, d / "model.safetensors")
    with pytest.raises(azr.FormatError, match=r"unexpected tensor 'model\.layers\.0\.self_attn\.o_proj\.bias'"):
        Model.from_pretrained(d)


def test_sharded_index_with_missing_shard(saved):
    _, d = saved
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002"):
        Model.from_pretrained(d)
    (d / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(azr.FormatError, match="index"):
        Model.from_pretrained(d)


@pytest.mark.parametrize("edit,match,exc", [
    ({"model_type": "gpt2"}, "model_type 'gpt2'", azr.UnsupportedError),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling.*yarn", azr.UnsupportedError),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "llama3", azr.UnsupportedError),
    ({"use_sliding_window": True}, "use_sliding_window", azr.UnsupportedError),
    ({"num_local_experts": 8}, "num_local_experts", azr.UnsupportedError),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'", azr.UnsupportedError),
    ({"num_key_value_heads": 3}, "num_key_value_heads", ValueError),
    ({"hidden_size": -4}, "hidden_size", ValueError),
])
def test_bad_configs_name_the_field(saved, edit, match, exc):
    _, d = saved
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(edit)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(exc, match=match):
        Model.from_pretrained(d)


_DROP = object()  # a config edit that removes the field


def _mistral_dir(tmp_path, **cfg_edit) -> Path:
    m = Model.from_config(_tiny_cfg(model_type="mistral", max_position_embeddings=64), seed=5, init_std=0.2)
    d = tmp_path / "mistral"
    m.save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(cfg_edit)
    for k in [k for k, v in cfg_edit.items() if v is _DROP]:
        del cfg[k]
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("edit,exc,match", [
    ({"sliding_window": 16}, azr.UnsupportedError,
     r"config\.json: sliding_window=16 is shorter than max_position_embeddings=64: sliding-window"),
    # no max_position_embeddings: azr's context is the default 2048, longer than the window
    ({"sliding_window": 1024, "max_position_embeddings": _DROP}, azr.UnsupportedError,
     r"config\.json: sliding_window=1024 is shorter than max_position_embeddings=2048"),
    ({"sliding_window": "4096"}, azr.FormatError, r"config\.json: sliding_window must be a positive integer"),
    ({"sliding_window": 0}, azr.FormatError, r"config\.json: sliding_window must be a positive integer"),
], ids=["shorter", "default-context", "string", "zero"])
def test_mistral_sliding_window_shorter_than_the_context_is_refused(tmp_path, edit, exc, match):
    """A window the engine does not implement would give wrong logits past it;
    the error names the file and the field (the old check let a string
    through as a TypeError and did not name the file)."""
    d = _mistral_dir(tmp_path, **edit)
    with pytest.raises(exc, match=match) as ei:
        Model.from_pretrained(d)
    assert str(d / "config.json") in str(ei.value)


def test_mistral_window_as_long_as_the_context_matches_transformers_up_to_it(tmp_path):
    """sliding_window >= max_position_embeddings is accepted (Ministral's
    config has 32768 and 32768): up to the window full attention is what
    transformers computes; longer sequences, where it is not, are refused
    (the old code ran them)."""
    d = _mistral_dir(tmp_path, sliding_window=64)
    m = Model.from_pretrained(d)
    assert m.config.sliding_window == 64 and m.config.to_hf_dict()["sliding_window"] == 64
    ref = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    assert ref.config.sliding_window == 64
    ids = _ids(2, 64)
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(m.logits(ids), want, atol=2e-4, rtol=0)
    m.logits(_ids(1, 80), lengths=np.array([64]))  # padding past the window is fine
    with pytest.raises(ValueError, match=r"65 positions is longer than the model's sliding_window \(64\)"):
        m.logits(_ids(1, 65))
    with pytest.raises(ValueError, match="sliding_window"):
        m.logprobs(_ids(1, 70), _ids(1, 70), lengths=np.array([66]))


def test_saved_mistral_config_has_no_window_for_transformers(tmp_path):
    """transformers' MistralConfig defaults to a 4096-token window when
    config.json has no sliding_window; azr computes full attention, so it
    writes "sliding_window": null (the old writer left it out)."""
    d = _mistral_dir(tmp_path)
    assert json.loads((d / "config.json").read_text())["sliding_window"] is None
    assert transformers.AutoConfig.from_pretrained(d).sliding_window is None
    assert Model.from_pretrained(d).config.sliding_window is None


def test_config_json_not_json(saved):
    _, d = saved
    (d / "config.json").write_text("{oops")
    with pytest.raises(azr.FormatError, match="config.json"):
        Model.from_pretrained(d)


@pytest.mark.parametrize("text,match", [
    ('{"vocab_size": 1%s}' % ("0" * 4999), r"config\.json: vocab_size is an integer of 5000 digits"),
    ('{"a": {"b c": [0, -%s]}}' % ("9" * 5000), r'config\.json: a\["b c"\]\[1\] is an integer of 5000 digits'),
    ("[" * 100000 + "]" * 100000, r"config\.json: not valid JSON"),
    (b'{"model_type": "ll\xe1ma"}', r"config\.json: not valid JSON: the file is not UTF-8"),
], ids=["5000-digits", "nested-negative", "deep", "not-utf8"])
def test_config_json_that_python_cannot_read_raises_format_error(saved, text, match):
    """A 5,000-digit number made json.load raise a bare ValueError (Python's
    int conversion limit) and deep nesting a RecursionError."""
    _, d = saved
    f = d / "config.json"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(azr.FormatError, match=match):
        Model.from_pretrained(d)


def test_index_json_with_a_huge_number_raises_format_error(saved):
    _, d = saved
    (d / "model.safetensors.index.json").write_text('{"weight_map": {"x": %s}}' % ("7" * 5000))
    with pytest.raises(azr.FormatError, match=r"index\.json: weight_map\.x is an integer of 5000 digits"):
        Model.from_pretrained(d)


def test_config_roundtrip_hf_dict():
    cfg = _tiny_cfg(model_type="qwen2", tie_word_embeddings=True, rope_theta=1e6)
    d = cfg.to_hf_dict()
    assert d["model_type"] == "qwen2" and d["architectures"] == ["Qwen2ForCausalLM"]
    assert ModelConfig.from_hf_dict(d) == cfg
    hf = transformers.Qwen2Config(**{k: v for k, v in d.items() if k != "architectures"})
    back = ModelConfig.from_hf_dict(hf.to_dict())  # transformers 5 writes rope_parameters
    assert back.rope_theta == 1e6 and back.num_key_value_heads == 2


def test_nonfinite_loss_names_the_position():
    m = Model.from_config(_tiny_cfg(), seed=0)
    m.parameters()["model.layers.1.mlp.down_proj.weight"][0, 0] = np.inf
    ids = _ids(2, 5)
    with pytest.raises(FloatingPointError, match="batch row 0, position 0"):
        m.loss_and_backward(ids, ids, np.ones(ids.shape, np.float32))
    m2 = Model.from_config(_tiny_cfg(), seed=0)
    w = np.ones(ids.shape, np.float32)
    w[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"weights\[1, 3\]"):
        m2.loss_and_backward(ids, ids, w)


def test_bad_batch_arguments():
    m = Model.from_config(_tiny_cfg(), seed=0)
    ids = _ids(2, 5)
    bad = ids.copy()
    bad[1, 2] = 50
    with pytest.raises(ValueError, match=r"ids\[1, 2\] = 50"):
        m.logprobs(bad, ids)
    with pytest.raises(ValueError, match="lengths"):
        m.logprobs(ids, ids, lengths=[3, 6])
    with pytest.raises(ValueError, match="targets"):
        m.logprobs(ids, ids[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        m.logits(ids[0])
    lp, ent = m.logprobs(np.zeros((0, 4), np.int32), np.zeros((0, 4), np.int32))
    assert lp.shape == (0, 4)


def test_activation_memory_is_bounded_by_the_estimate_and_can_be_freed():
    m = Model.from_config(_tiny_cfg(), seed=0)
    ids = _ids(3, 20)
    assert m.activation_bytes == 0
    m.loss_and_backward(ids, ids, np.ones(ids.shape, np.float32))
    held = m.activation_bytes
    arenas = 4 * 4 * m.num_params  # params, grads, AdamW m and v
    assert 0 < held <= m.memory_estimate(3, 20, training=True) - arenas
    lp_before, _ = m.logprobs(ids, ids)
    m.free_activations()
    assert m.activation_bytes == 0
    lp_after, _ = m.logprobs(ids, ids)
    np.testing.assert_array_equal(lp_before, lp_after)


def test_memory_estimate_grows_with_batch():
    cfg = _tiny_cfg()
    m = Model.from_config(cfg)
    small, big = m.memory_estimate(1, 8), m.memory_estimate(4, 64)
    assert big > small > 4 * 4 * m.num_params  # params, grads, m, v + activations
    assert m.memory_estimate(4, 64, training=False) < big
    assert cfg.memory_estimate(4, 64) == big


def test_real_qwen25_config_parses(shared_data):
    raw = json.loads((shared_data / "tokenizers" / "qwen2.5" / "config.json").read_text())
    cfg = ModelConfig.from_hf_dict(raw)  # sliding_window is set but use_sliding_window is false
    assert (cfg.model_type, cfg.hidden_size, cfg.num_key_value_heads, cfg.head_dim) == ("qwen2", 896, 2, 64)
    assert cfg.attention_bias and cfg.tie_word_embeddings and cfg.rope_theta == 1e6
    # about 0.5B parameters: 4 arenas of ~2 GB each when training
    assert 7.5e9 < cfg.memory_estimate(1, 1) < 8.5e9
    raw["use_sliding_window"] = True
    with pytest.raises(azr.UnsupportedError, match="use_sliding_window"):
        ModelConfig.from_hf_dict(raw)


def test_failed_loads_leak_no_file_descriptors(saved):
    import os

    _, d = saved
    f = d / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])  # truncated: fails after mmap
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(30):
        with pytest.raises(azr.FormatError):
            Model.from_pretrained(d)
        with pytest.raises(azr.FormatError):
            _core.safetensors_read(f)
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) <= before


def test_python_header_reader_raises_format_error(tmp_path):
    """azr.safetensors_io.read_header raised UnicodeDecodeError and a bare
    ValueError on these headers."""
    from azr.safetensors_io import read_header

    f = tmp_path / "h.safetensors"
    for header, match in [(b'{"a\xff": 1}', "not valid JSON"), (b'{"a": %s}' % (b"1" * 5000), "not valid JSON"),
                          (b"[1, 2]", "not a JSON object"), (b"{", "not valid JSON")]:
        f.write_bytes(struct.pack("<Q", len(header)) + header)
        with pytest.raises(azr.FormatError, match=match) as ei:
            read_header(f)
        assert str(f) in str(ei.value)
    f.write_bytes(b"\x10\0\0\0\0\0\0\0{}")
    with pytest.raises(azr.FormatError, match="truncated safetensors header"):
        read_header(f)
