"""bf16 matrix products (azr.set_matmul_precision("bf16"); csrc/backend/cpu/gemm_bf16.c)
against PyTorch: the rounding of single values, products of every transposition
against float64 products of torch's bf16-rounded inputs, on every instruction-set
level this machine has, thread-count invariance, and a whole model's logits and
gradients against transformers with the same bf16 products (a custom autograd
function), all closer to it than to the fp32 model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import azr
from azr import _core
from azr.model import Model

LEVELS = [lv for lv in azr.ISA_LEVELS if azr.ISA_LEVELS.index(lv) <= azr.ISA_LEVELS.index(azr.cpu_info()["isa_available"])]


@pytest.fixture(params=LEVELS)
def level(request):
    azr.set_isa(request.param)
    yield request.param
    azr.set_isa(None)


def _tbf(a: np.ndarray) -> np.ndarray:
    """torch's bf16 rounding (to nearest, ties to even), back as float64."""
    return torch.from_numpy(np.ascontiguousarray(a, np.float32)).bfloat16().double().numpy()


def test_cpu_info_and_levels():
    info = azr.cpu_info()
    assert info["isa"] in azr.ISA_LEVELS and info["isa_available"] in azr.ISA_LEVELS
    assert isinstance(info["brand"], str) and info["brand"]
    if info["avx512_bf16"] and info["avx512bw"] and info["avx512vl"]:
        assert info["isa_available"] == "avx512_bf16"
    with pytest.raises(ValueError, match="unknown instruction-set level"):
        azr.set_isa("sse9")
    if info["isa_available"] == "fp32":
        with pytest.raises(azr.UnsupportedError, match="does not have avx512_bf16"):
            azr.set_isa("avx512_bf16")
    azr.set_isa("fp32")
    assert azr.cpu_info()["isa"] == "fp32"
    azr.set_isa(None)
    assert azr.cpu_info()["isa"] == info["isa_available"]
    with pytest.raises(ValueError, match="'fp32' or 'bf16'"):
        azr.set_matmul_precision("fp16")


def test_rounding_of_single_values(level):
    xs = np.array([1.0, 1.00390625, 1.005859375, 1.0078125 + 2**-9, -3.14159, 65504.0, 3.0e38, 3.4e38,
                   1e-30, -2.5e-38, np.inf, -np.inf, 0.0, -0.0], np.float32)
    got = np.array([_core.gemm(np.array([[x]]), np.array([[1.0]], np.float32), precision="bf16")[0, 0]
                    for x in xs])
    want = _tbf(xs)
    normal = np.isfinite(want) & (np.abs(xs) >= np.finfo(np.float32).tiny)
    np.testing.assert_array_equal(got[normal], want[normal])
    assert got[1] == 1.0 and got[2] == 1.0078125  # ties to even; above the tie rounds up
    assert got[7] == np.inf  # past bf16's largest finite value
    # subnormal inputs become zeros (as the hardware's conversion does), so
    # subnormal x huge gives 0, not the ~1e-9 of the exact product
    x = np.float32(1e-39)
    for v in (x, -x):
        r = _core.gemm(np.array([[v]]), np.array([[2.0**100]], np.float32), precision="bf16")[0, 0]
        assert r == 0.0
    assert np.isnan(_core.gemm(np.array([[np.nan]], np.float32), np.array([[1.0]], np.float32),
                               precision="bf16")[0, 0])


@pytest.mark.parametrize("shape", [(1, 1, 1), (12, 32, 2), (13, 33, 7), (11, 31, 3), (100, 70, 65),
                                   (257, 300, 129), (3, 700, 40)])
def test_products_against_torch(level, shape):
    M, N, K = shape
    rng = np.random.default_rng(M * 1000 + N + K)
    for ta in (False, True):
        for tb in (False, True):
            A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
            oa, ob = (A.T if ta else A), (B.T if tb else B)
            ref = _tbf(oa) @ _tbf(ob)
            scale = np.abs(_tbf(oa)) @ np.abs(_tbf(ob))
            got = _core.gemm(A, B, ta, tb, "bf16")
            # fp32 sums of exact bf16 products: K roundings of the running sum at most
            assert (np.abs(got - ref) <= 1e-6 * K * scale + 1e-30).all(), (shape, ta, tb)
            f32 = _core.gemm(A, B, ta, tb, "fp32")
            assert np.abs(f32 - ref).max() > np.abs(got - ref).max()  # it really rounded the inputs


def test_bf16_products_do_not_depend_on_threads():
    rng = np.random.default_rng(9)
    A = rng.standard_normal((300, 257)).astype(np.float32)
    B = rng.standard_normal((190, 257)).astype(np.float32)
    old = azr.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            azr.set_num_threads(t)
            outs.append(_core.gemm(A, B, False, True, "bf16"))
    finally:
        azr.set_num_threads(old)
    for o in outs[1:]:
        np.testing.assert_array_equal(outs[0], o)


class _Bf16Linear(torch.autograd.Function):
    """y = bf16(x) bf16(w)^T; dx = bf16(dy) bf16(w); dw = bf16(dy)^T bf16(x): the
    products azr makes in bf16 mode, with fp32 results."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x.bfloat16().float() @ w.bfloat16().float().T

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        dyb = dy.bfloat16().float()
        dx = dyb @ w.bfloat16().float()
        dw = dyb.reshape(-1, dy.shape[-1]).T @ x.bfloat16().float().reshape(-1, x.shape[-1])
        return dx, dw


def _hf(kind):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(vocab_size=61, hidden_size=48, intermediate_size=88, num_hidden_layers=2,
                                       num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=False,
                                       max_position_embeddings=64)
        tm = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(vocab_size=61, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                       max_position_embeddings=64)
        tm = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if name.endswith("norm.weight") else 0.15 * torch.randn_like(p))
    tm.config._attn_implementation = "eager"
    return tm.eval()


def _torch_run(tm, ids, tg, w, bf16):
    orig = torch.nn.Linear.forward

    def fwd(self, x):
        y = _Bf16Linear.apply(x, self.weight)
        return y + self.bias if self.bias is not None else y

    if bf16:
        torch.nn.Linear.forward = fwd
    try:
        tm.zero_grad()
        logits = tm(torch.tensor(ids)).logits.float()
        lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(tg)[..., None])[..., 0]
        (-(torch.tensor(w) * lp).sum()).backward()
    finally:
        torch.nn.Linear.forward = orig
    return logits.detach().numpy(), {n: p.grad.numpy().copy() for n, p in tm.named_parameters()}


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_model_in_bf16_matches_torch_with_bf16_products(kind, level, tmp_path):
    tm = _hf(kind)
    tm.save_pretrained(tmp_path, safe_serialization=True)
    m = Model.from_pretrained(tmp_path)
    rng = np.random.default_rng(3)
    ids, tg = rng.integers(0, 61, (2, 19)), rng.integers(0, 61, (2, 19))
    w = rng.normal(size=ids.shape).astype(np.float32)
    ref16 = _torch_run(tm, ids, tg, w, True)
    ref32 = _torch_run(tm, ids, tg, w, False)
    got = {}
    for prec in ("fp32", "bf16"):
        azr.set_matmul_precision(prec)
        try:
            logits = m.logits(ids)
            m.zero_grad()
            m.loss_and_backward(ids, tg, w)
            got[prec] = (logits, {k: v.copy() for k, v in m.grads().items()})
        finally:
            azr.set_matmul_precision("fp32")
    lg16, g16 = got["bf16"]
    e16 = np.abs(lg16 - ref16[0]).max()
    e32 = np.abs(lg16 - ref32[0]).max()
    assert e16 < 1e-2 and e16 < e32 / 8, (e16, e32)  # bf16 products, the same ones torch made
    assert np.abs(got["fp32"][0] - ref32[0]).max() < 1e-4  # fp32 mode untouched
    for name, g in g16.items():
        rel16 = np.linalg.norm(g - ref16[1][name]) / np.linalg.norm(ref16[1][name])
        rel32 = np.linalg.norm(g - ref32[1][name]) / np.linalg.norm(ref32[1][name])
        assert rel16 < 5e-3 and rel16 < rel32 / 4, (name, rel16, rel32)
