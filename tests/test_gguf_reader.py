"""The C GGUF reader (azr._core.GGUFFile) against the `gguf` Python package.

- metadata and tensor infos of the real SmolLM2 file equal what gguf's
  GGUFReader reads;
- dequantisation is bit-exact (fp32 bits) against gguf.quants.dequantize, on
  every tensor of the SmolLM2 file (Q4_1, Q8_0, F32) and on synthetic blocks
  of every other supported type written with the `gguf` package (quantised
  with gguf.quants.quantize where it can, otherwise random raw blocks with
  finite scales; Q8_K, which gguf cannot decode, against a NumPy reference
  written here);
- bad files fail with errors that name the problem.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import quants

import azr
from azr._native import _core  # noqa: E402
from azr import gguf as agguf  # noqa: E402


@pytest.fixture(scope="module")
def smollm_path() -> Path:
    try:
        return agguf.locate_default_model()
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"default model file unavailable: {exc}")


@pytest.fixture(scope="module")
def smollm_ref(smollm_path):
    return gguf.GGUFReader(str(smollm_path))


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


# ---------------------------------------------------------------------------
# The real file
# ---------------------------------------------------------------------------


def test_metadata_matches_gguf_package(smollm_path, smollm_ref):
    ref = smollm_ref
    with _core.GGUFFile(str(smollm_path)) as f:
        md = f.metadata()
        types = f.metadata_types()
        assert f.version == 3
        assert f.n_tensors == len(ref.tensors)
    keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert sorted(keys) == sorted(md)
    for k in keys:
        field = ref.fields[k]
        want = field.contents()
        got = md[k]
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert types[k] == f"array[{field.types[1].name.lower()}]"
            if field.types[1] == gguf.GGUFValueType.STRING:
                assert got == want, k
            else:
                assert np.array_equal(np.asarray(got), np.asarray(want)), k
        elif field.types[0] == gguf.GGUFValueType.FLOAT32:
            assert np.float32(got) == np.float32(want), k
        else:
            assert got == want, k
    assert md["general.architecture"] == "llama"
    assert len(md["tokenizer.ggml.tokens"]) == 49152


def test_tensor_infos_match_gguf_package(smollm_path, smollm_ref):
    ref = smollm_ref
    with _core.GGUFFile(str(smollm_path)) as f:
        infos = f.tensors()
    assert [t["name"] for t in infos] == [t.name for t in ref.tensors]
    for ours, theirs in zip(infos, ref.tensors):
        assert ours["type"] == int(theirs.tensor_type)
        assert ours["type_name"] == theirs.tensor_type.name
        assert ours["shape"] == tuple(int(x) for x in reversed(theirs.shape))
        assert ours["offset"] == theirs.data_offset
        assert ours["nbytes"] == theirs.n_bytes
        assert ours["n_elements"] == theirs.n_elements


def test_real_tensors_dequantize_bit_exact(smollm_path, smollm_ref):
    """Every tensor of the first and last blocks, the embedding and the final
    norm (the reference dequantiser is slow; these cover all three types and
    both ends of the file)."""
    ref = smollm_ref
    picked = [t for t in ref.tensors
              if t.name.startswith(("blk.0.", "blk.29.")) or t.name in ("token_embd.weight", "output_norm.weight")]
    assert len(picked) == 20
    seen = set()
    with _core.GGUFFile(str(smollm_path)) as f:
        for t in picked:
            want = quants.dequantize(t.data, t.tensor_type)
            got = f.dequantize(t.name)
            assert got.shape == want.shape, t.name
            assert np.array_equal(bits(got), bits(want)), t.name
            seen.add(t.tensor_type.name)
        # `out=` fills a caller's buffer, and raw() returns the stored bytes
        name = ref.tensors[2].name
        out = np.empty(ref.tensors[2].n_elements, np.float32)
        assert f.dequantize(name, out=out) is out
        assert np.array_equal(bits(out), bits(f.dequantize(2).reshape(-1)))
        assert np.array_equal(f.raw(name), np.asarray(ref.tensors[2].data).view(np.uint8).reshape(-1))
    assert seen == {"Q4_1", "Q8_0", "F32"}


# ---------------------------------------------------------------------------
# Synthetic blocks of every supported type
# ---------------------------------------------------------------------------

BLOCK = {t: gguf.GGML_QUANT_SIZES[t] for t in QT}


def _random_raw_blocks(qtype: QT, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random blocks of a K-quant with finite fp16 scales (the scale fields
    hold real, modest values; the packed bits are uniformly random)."""
    _, nbytes = BLOCK[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)

    def f16(k: int) -> np.ndarray:
        return (rng.standard_normal((n_blocks, k)) * 0.05).astype(np.float16).view(np.uint8)

    if qtype in (QT.Q4_K, QT.Q5_K):
        raw[:, 0:4] = f16(2)        # d, dmin
    elif qtype == QT.Q6_K:
        raw[:, 208:210] = f16(1)    # d
    elif qtype == QT.Q8_K:
        raw[:, 0:4] = (rng.standard_normal((n_blocks, 1)) * 0.01).astype(np.float32).view(np.uint8)
    return raw


def _q8k_reference(raw: np.ndarray) -> np.ndarray:
    """NumPy Q8_K decoder from ggml's block_q8_K: f32 d, int8 qs[256], int16 bsums[16]."""
    d = raw[:, 0:4].copy().view(np.float32)
    qs = raw[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * qs).reshape(-1)


def _synthetic(qtype: QT, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(raw bytes (rows, row_bytes), reference fp32 (rows, cols), shape)."""
    rows, cols = 6, 512
    if qtype in (QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1):
        x = (rng.standard_normal((rows, cols)) * rng.uniform(0.01, 3.0, size=(rows, 1))).astype(np.float32)
        x[0, :40] = 0.0  # an all-zero block
        raw = quants.quantize(x, qtype)
        raw = np.ascontiguousarray(raw).view(np.uint8).reshape(rows, -1)
        want = quants.dequantize(raw, qtype).reshape(rows, cols)
        return raw, want, (rows, cols)
    be, _ = BLOCK[qtype]
    raw = _random_raw_blocks(qtype, rows * cols // be, rng)
    want = _q8k_reference(raw) if qtype == QT.Q8_K else quants.dequantize(raw, qtype).reshape(-1)
    return raw.reshape(rows, -1), want.reshape(rows, cols), (rows, cols)


SUPPORTED = [QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q4_K, QT.Q5_K, QT.Q6_K, QT.Q8_K]


@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda q: q.name)
def test_synthetic_blocks_bit_exact(qtype, tmp_path):
    rng = np.random.default_rng(int(qtype) + 7)
    raw, want, shape = _synthetic(qtype, rng)
    assert np.isfinite(want).all()
    n = want.size
    # the raw decoder, serial reference and OpenMP path
    for reference in (False, True):
        got = _core.dequantize(int(qtype), raw.tobytes(), n, reference=reference)
        assert np.array_equal(bits(got), bits(want.reshape(-1))), (qtype.name, reference)
    # and through a GGUF file written by the gguf package
    path = tmp_path / f"{qtype.name}.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    if qtype == QT.F32:
        w.add_tensor("t", raw.view(np.float32).reshape(shape))
    elif qtype == QT.F16:
        w.add_tensor("t", raw.view(np.float16).reshape(shape))
    else:
        w.add_tensor("t", raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with _core.GGUFFile(str(path)) as f:
        (info,) = f.tensors()
        assert info["type_name"] == qtype.name and info["shape"] == shape and info["supported"]
        got = f.dequantize("t")
    assert got.shape == shape
    assert np.array_equal(bits(got), bits(want))


def test_threads_do_not_change_results():
    # large enough (>= 2**22 elements) for the OpenMP path, with a ragged last chunk
    rng = np.random.default_rng(3)
    nb = 2**22 // 256 + 3
    raw = _random_raw_blocks(QT.Q6_K, nb, rng).tobytes()
    before = azr.get_num_threads()
    try:
        azr.set_num_threads(1)
        one = _core.dequantize(int(QT.Q6_K), raw, nb * 256)
        azr.set_num_threads(2)
        two = _core.dequantize(int(QT.Q6_K), raw, nb * 256)
    finally:
        azr.set_num_threads(before)
    ref = _core.dequantize(int(QT.Q6_K), raw, nb * 256, reference=True)
    assert np.array_equal(bits(one), bits(two)) and np.array_equal(bits(two), bits(ref))
    sample = slice(0, 256 * 64)  # and a slice against the gguf package
    want = quants.dequantize(np.frombuffer(raw, np.uint8)[:210 * 64].reshape(64, 210), QT.Q6_K).reshape(-1)
    assert np.array_equal(bits(two[sample]), bits(want))


def test_dequantize_argument_errors():
    with pytest.raises(azr.UnsupportedError, match="Q2_K"):
        _core.dequantize(int(QT.Q2_K), bytes(84), 256)
    with pytest.raises(azr.FormatError, match="unknown ggml tensor type id 250"):
        _core.dequantize(250, bytes(64), 32)
    with pytest.raises(azr.FormatError, match="need 36 bytes, only 35 given"):
        _core.dequantize(int(QT.F16), bytes(35), 18)
    with pytest.raises(azr.FormatError, match="not a multiple of its block size 32"):
        _core.dequantize(int(QT.Q4_0), bytes(18), 16)
    types = _core.ggml_types()
    assert types["Q4_K"] == {"id": 12, "block_elems": 256, "block_bytes": 144, "supported": True}
    assert types["IQ2_XXS"]["supported"] is False
    for name, t in types.items():
        assert (t["block_elems"], t["block_bytes"]) == gguf.GGML_QUANT_SIZES[QT[name]]


# ---------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------


def _small_gguf(tmp_path: Path, tensor_type: int = 0, tensor_name: bytes = b"w",
                key: bytes = b"general.architecture", ne: int = 8) -> Path:
    """A valid GGUF (one kv, one 8-float F32 tensor) built byte by byte, so
    tests can corrupt any field."""
    def s(x: str | bytes) -> bytes:
        b = x.encode() if isinstance(x, str) else x
        return struct.pack("<Q", len(b)) + b

    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
    kv = s(key) + struct.pack("<I", 8) + s("llama")
    ti = s(tensor_name) + struct.pack("<IQ", 1, ne) + struct.pack("<I", tensor_type) + struct.pack("<Q", 0)
    body = head + kv + ti
    body += b"\0" * (-len(body) % 32)
    body += np.arange(8, dtype=np.float32).tobytes()
    p = tmp_path / "small.gguf"
    p.write_bytes(body)
    return p


def test_small_file_reads(tmp_path):
    p = _small_gguf(tmp_path)
    with _core.GGUFFile(str(p)) as f:
        assert f.metadata() == {"general.architecture": "llama"}
        assert np.array_equal(f.dequantize("w"), np.arange(8, dtype=np.float32))
        with pytest.raises(KeyError, match="no tensor named 'nope'"):
            f.dequantize("nope")
        with pytest.raises(IndexError):
            f.dequantize(5)
        with pytest.raises(TypeError):
            f.dequantize("w", out=np.empty(8, np.float64))
    with pytest.raises(ValueError, match="closed"):
        f.metadata()


def test_truncated_file(tmp_path):
    p = _small_gguf(tmp_path)
    data = p.read_bytes()
    for cut in (0, 3, 10, 30, 60, len(data) - 1):
        p.write_bytes(data[:cut])
        with pytest.raises(azr.FormatError, match="truncated|past the end") as ei:
            _core.GGUFFile(str(p))
        assert str(p) in str(ei.value)


def test_wrong_magic(tmp_path):
    p = _small_gguf(tmp_path)
    p.write_bytes(b"GGML" + p.read_bytes()[4:])
    with pytest.raises(azr.FormatError, match="not a GGUF file: wrong magic 'GGML'"):
        _core.GGUFFile(str(p))


def test_unknown_tensor_type(tmp_path):
    p = _small_gguf(tmp_path, tensor_type=77)
    with pytest.raises(azr.FormatError, match="tensor 'w' has unknown tensor type id 77"):
        _core.GGUFFile(str(p))


@pytest.mark.parametrize("kw,what", [
    (dict(tensor_name=b"w\xff"), "tensor name"),
    (dict(tensor_name=b"w\xed\xa0\x80"), "tensor name"),  # an encoded UTF-16 surrogate
    (dict(key=b"general.architectur\xc3"), "metadata key"),  # cut in the middle of a character
])
def test_names_that_are_not_utf8(tmp_path, kw, what):
    """The reader refuses them (GGUF strings are UTF-8); they used to reach
    Python as UnicodeDecodeError from metadata() and tensors(), through
    azr.gguf.ensure_hf_dir too."""
    p = _small_gguf(tmp_path, **kw)
    with pytest.raises(azr.FormatError, match=f"{what} at offset [0-9]+ is not valid UTF-8") as ei:
        _core.GGUFFile(str(p))
    assert str(p) in str(ei.value)
    with pytest.raises(azr.FormatError, match=f"{what} at offset"):
        agguf.ensure_hf_dir(p, cache_dir=tmp_path / "cache", progress=False)


def test_byte_count_overflow_names_the_file_and_tensor(tmp_path):
    """The message came from the dequantiser's size helper without the file
    or the tensor (found by tests/test_format_fuzz.py)."""
    p = _small_gguf(tmp_path, ne=2**62 + 32)
    with pytest.raises(azr.FormatError, match=f"{p}: tensor 'w': 4611686018427387936 elements of type F32 "
                                              "overflow a 64-bit byte count"):
        _core.GGUFFile(str(p))


def test_non_ascii_utf8_names_still_read(tmp_path):
    p = _small_gguf(tmp_path, tensor_name="wé😀".encode(), key="général".encode())
    with _core.GGUFFile(str(p)) as f:
        assert f.metadata() == {"général": "llama"}
        assert [t["name"] for t in f.tensors()] == ["wé😀"]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(OSError, match="nothere.gguf"):
        _core.GGUFFile(str(tmp_path / "nothere.gguf"))
    with pytest.raises(OSError, match="not a regular file"):
        _core.GGUFFile(str(tmp_path))


def test_every_metadata_type_matches_gguf_package(tmp_path):
    """A file with one entry of each GGUF value type and an array of each,
    written by the gguf package, read back equal to gguf's own reader."""
    VT = gguf.GGUFValueType
    path = tmp_path / "types.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    scalars = {
        "t.u8": (255, VT.UINT8), "t.i8": (-128, VT.INT8), "t.u16": (65535, VT.UINT16),
        "t.i16": (-32768, VT.INT16), "t.u32": (4294967295, VT.UINT32), "t.i32": (-2147483648, VT.INT32),
        "t.f32": (1.0e-5, VT.FLOAT32), "t.bool": (True, VT.BOOL), "t.str": ("héllo\nwörld", VT.STRING),
        "t.u64": (2**64 - 1, VT.UINT64), "t.i64": (-(2**63), VT.INT64), "t.f64": (3.141592653589793, VT.FLOAT64),
    }
    for k, (v, vt) in scalars.items():
        w.add_key_value(k, v, vt)
    arrays = {
        "a.u8": ([0, 1, 255], VT.UINT8), "a.i8": ([-1, 2], VT.INT8), "a.u16": ([7, 65535], VT.UINT16),
        "a.i16": ([-7, 300], VT.INT16), "a.u32": ([1, 2, 3], VT.UINT32), "a.i32": ([-5, 5], VT.INT32),
        "a.f32": ([0.5, -1.25], VT.FLOAT32), "a.bool": ([True, False, True], VT.BOOL),
        "a.u64": ([2**40], VT.UINT64), "a.i64": ([-(2**40)], VT.INT64), "a.f64": ([1e300], VT.FLOAT64),
        "a.str": (["", "a b", "Ġthe", "日本"], VT.STRING),
    }
    for k, (v, vt) in arrays.items():
        w.add_key_value(k, v, VT.ARRAY, sub_type=vt)
    w.add_tensor("x", np.zeros(32, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ref = gguf.GGUFReader(str(path))
    with _core.GGUFFile(str(path)) as f:
        md = f.metadata()
        types = f.metadata_types()
    for k, (v, vt) in scalars.items():
        assert types[k] == vt.name.lower()
        if vt == VT.FLOAT32:
            assert np.float32(md[k]) == np.float32(ref.fields[k].contents())
        else:
            assert md[k] == ref.fields[k].contents() == v, k
    for k, (v, vt) in arrays.items():
        assert types[k] == f"array[{vt.name.lower()}]"
        if vt == VT.STRING:
            assert md[k] == ref.fields[k].contents() == v
        else:
            got = np.asarray(md[k])
            assert got.shape == (len(v),)
            assert np.array_equal(got, np.asarray(ref.fields[k].contents(), dtype=got.dtype)), k
            if v:
                assert got.tolist() == (list(np.asarray(v, dtype=got.dtype)) if vt == VT.FLOAT32 else v), k
    assert md["general.architecture"] == "llama"
