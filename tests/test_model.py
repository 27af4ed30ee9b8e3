"""The C model engine against transformers + torch on small random models.

Two architectures: a Llama with grouped-query attention and untied
embeddings, and a Qwen2 with q/k/v biases, tied embeddings and rope_theta
1e6. Checked: logits, per-token log-probs and entropy, every parameter's
gradient, several AdamW steps, padded batches, save/load both ways.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import azr  # noqa: E402
from azr.model import Model, ModelConfig  # noqa: E402

VOCAB = 101


def _hf_model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=48, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=False,
            rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=128)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(
            vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
            rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=128)
        model = transformers.Qwen2ForCausalLM(cfg)
    # Larger than the default init so attention patterns are far from uniform,
    # and non-trivial norm weights and biases.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.config._attn_implementation = "eager"
    model.eval()
    return model


@pytest.fixture(params=["llama", "qwen2"])
def pair(request, tmp_path):
    """(transformers model, our model loaded from its save_pretrained)."""
    tm = _hf_model(request.param)
    tm.save_pretrained(tmp_path, safe_serialization=True)
    return tm, Model.from_pretrained(tmp_path)


def _ids(B: int, T: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (B, T)).astype(np.int64)


def test_config_from_transformers(pair):
    tm, m = pair
    assert m.config.num_key_value_heads == tm.config.num_key_value_heads
    assert m.config.tie_word_embeddings == tm.config.tie_word_embeddings
    if tm.config.model_type == "qwen2":
        assert m.config.attention_bias and m.config.rope_theta == 1e6


def test_logits_match_transformers(pair):
    tm, m = pair
    ids = _ids(3, 17)
    with torch.no_grad():
        ref = tm(torch.tensor(ids)).logits.float().numpy()
    out = m.logits(ids)
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4
