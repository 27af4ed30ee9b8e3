"""Training-step speed of the C engine against PyTorch CPU, same weights, same threads.

For a SmolLM2-135M-shaped Llama and a Qwen2.5-0.5B-shaped Qwen2 at batch x
length 4 x 256 (random weights, copied into both engines), it measures:

- forward+backward tokens/s of a per-token log-prob loss (ours:
  ``Model.loss_and_backward``; PyTorch: transformers forward with SDPA
  attention + cross-entropy + ``backward()``),
- a self-play update's shape, the first 80 % of each row a prompt at weight
  0 (ours: ``Model.backward``, whose vocabulary head skips those rows, and
  for reference our ``loss_and_backward``, which runs it on every row;
  PyTorch: full logits, log-softmax, masked sum, ``backward()``),
- the AdamW step time (ours: ``azr.AdamW.step`` with clipping; PyTorch:
  ``clip_grad_norm_`` + ``torch.optim.AdamW.step``),
- our achieved matmul GFLOP/s (time inside azr's sgemm calls) next to the
  machine's SGEMM GFLOP/s measured through the same path.

With ``--precision bf16`` the products of both engines take bf16 inputs:
ours through ``azr.set_matmul_precision("bf16")`` (fp32 sums and outputs),
PyTorch under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (oneDNN, AMX or
AVX512-BF16 where the CPU has them); an extra entry compares our bf16 step
with our fp32 step in the same run.

Usage: python benchmarks/bench_train.py [--quick] [--json PATH] [--threads N]
       [--models smollm2,qwen2.5] [--steps N] [--precision fp32|bf16]
``--quick`` shrinks layers and batch so the whole run takes under a minute.
Ratios > 1 mean azr is better. The models run one after the other and each
engine's memory is freed before the next (the full Qwen2 shape needs ~8 GiB
per engine for weights, gradients and AdamW state).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

try:  # the installed package, else the checkout's in-place build
    import azr
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import azr
from azr import _core  # noqa: E402

SHAPES = {
    "smollm2": dict(model_type="llama", vocab_size=49152, hidden_size=576, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536,
                    tie_word_embeddings=True, rope_theta=100000.0, rms_norm_eps=1e-5,
                    max_position_embeddings=2048),
    "qwen2.5": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, num_hidden_layers=24,
                    num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864,
                    tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6,
                    max_position_embeddings=32768),
}
QUICK = {"smollm2": dict(num_hidden_layers=4), "qwen2.5": dict(num_hidden_layers=2)}


def matmul_flops_per_token(cfg: azr.ModelConfig) -> float:
    """Forward+backward FLOPs per token in the linear layers (6 x matmul params)."""
    C, I, V, L = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    dq = cfg.num_attention_heads * cfg.head_dim
    dkv = cfg.num_key_value_heads * cfg.head_dim
    per_layer = (dq + 2 * dkv) * C + C * dq + 3 * I * C
    return 6.0 * (L * per_layer + V * C)


def bench_model(name: str, shape: dict, B: int, T: int, steps: int, threads: int,
                precision: str = "fp32") -> list[dict]:
    import torch
    import transformers

    cfg = azr.ModelConfig(**shape)
    hf_cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
              "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)}[cfg.model_type]
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.vocab_size, (B, T))
    tg = rng.integers(0, cfg.vocab_size, (B, T))
    w = np.full((B, T), 1.0 / (B * T), np.float32)
    print(f"\n== {name}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab "
          f"{cfg.vocab_size}, batch {B} x {T}, {threads} threads", flush=True)

    # ---- ours -------------------------------------------------------------
    bf16 = precision == "bf16"
    azr.set_matmul_precision(precision)
    ours = azr.Model.from_config(cfg, seed=0)
    weights = {k: v.copy() for k, v in ours.parameters().items()}
    opt = azr.AdamW(ours, lr=1e-5, weight_decay=0.01, max_grad_norm=1.0)
    ours.loss_and_backward(ids, tg, w)  # warm-up (allocates activations)
    opt.step()
    ours.zero_grad()
    t_fb, t_opt = [], []
    # the machine's SGEMM rate, measured right next to our steps (the load of
    # a shared machine changes minute to minute)
    azr.set_matmul_precision("fp32")  # the machine's fp32 SGEMM rate
    sg_before = max(_core.sgemm_gflops(4 * T, shape["intermediate_size"], shape["hidden_size"], 2),
                    _core.sgemm_gflops(4 * T, 1536, 576, 2))
    azr.set_matmul_precision(precision)
    _core.gemm_stats(True)
    for _ in range(steps):
        t0 = time.perf_counter()
        loss_ours, _, _ = ours.loss_and_backward(ids, tg, w)
        t_fb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        opt.step()
        t_opt.append(time.perf_counter() - t0)
        ours.zero_grad()
    gemm_s, gemm_f = _core.gemm_stats(True)
    # A self-play update's shape: the first 80% of each row is prompt, whose
    # weight is 0. Model.backward runs the vocabulary head only on the other
    # rows; loss_and_backward (log-probs out) runs it on every row.
    wm = w.copy()
    wm[:, :int(0.8 * T)] = 0.0
    ours.backward(ids, tg, wm)
    ours.zero_grad()
    t_skip, t_full = [], []
    for _ in range(steps):  # alternated, so a drift of the machine hits both
        t0 = time.perf_counter()
        ours.backward(ids, tg, wm)
        t_skip.append(time.perf_counter() - t0)
        ours.zero_grad()
        t0 = time.perf_counter()
        ours.loss_and_backward(ids, tg, wm)
        t_full.append(time.perf_counter() - t0)
        ours.zero_grad()
    azr.set_matmul_precision("fp32")
    sg_after = max(_core.sgemm_gflops(4 * T, shape["intermediate_size"], shape["hidden_size"], 2),
                   _core.sgemm_gflops(4 * T, 1536, 576, 2))
    azr.set_matmul_precision(precision)
    sgemm_rate = max(sg_before, sg_after)
    t_fb32 = []
    if bf16:  # our fp32 step in the same run, alternated with bf16 ones
        for _ in range(steps):
            azr.set_matmul_precision("fp32")
            t0 = time.perf_counter()
            ours.loss_and_backward(ids, tg, w)
            t_fb32.append(time.perf_counter() - t0)
            ours.zero_grad()
            azr.set_matmul_precision("bf16")
            t0 = time.perf_counter()
            ours.loss_and_backward(ids, tg, w)
            t_fb.append(time.perf_counter() - t0)
            ours.zero_grad()
    azr.set_matmul_precision("fp32")
    del ours, opt
    gc.collect()

    # ---- PyTorch ----------------------------------------------------------
    hf = cfg.to_hf_dict()
    hf.pop("architectures", None)
    tcfg = hf_cls[0](**hf)
    tm = hf_cls[1](tcfg)
    tm.config._attn_implementation = "sdpa"
    with torch.no_grad():
        for k, p in tm.named_parameters():
            p.copy_(torch.from_numpy(weights[k]))
    del weights
    gc.collect()
    tm.train()
    topt = torch.optim.AdamW(tm.parameters(), lr=1e-5, weight_decay=0.01)
    ids_t, tg_t = torch.from_numpy(ids), torch.from_numpy(tg)

    def torch_fb():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = tm(ids_t).logits
        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), tg_t.view(-1))
        loss.backward()
        return loss

    wm_t = torch.from_numpy(wm)

    def torch_masked():  # the usual way: full logits, log-softmax, masked sum
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = tm(ids_t).logits
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tg_t[..., None])[..., 0]
        loss = -(wm_t * lp).sum()
        loss.backward()
        return loss

    torch_masked()
    tm.zero_grad()
    p_masked = []
    for _ in range(steps):
        t0 = time.perf_counter()
        torch_masked()
        p_masked.append(time.perf_counter() - t0)
        tm.zero_grad()
    torch_fb()
    torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
    topt.step()
    topt.zero_grad()
    p_fb, p_opt = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss_t = torch_fb()
        p_fb.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        topt.step()
        p_opt.append(time.perf_counter() - t0)
        topt.zero_grad()
    del tm, topt
    gc.collect()

    tok = B * T
    ours_tps, torch_tps = tok / min(t_fb), tok / min(p_fb)
    flops = matmul_flops_per_token(cfg) * tok
    model_gflops = flops / min(t_fb) / 1e9
    gemm_gflops = gemm_f / gemm_s / 1e9 if gemm_s > 0 else 0.0
    print(f"   loss ours {loss_ours:.4f}  torch {loss_t.item():.4f} (same weights)")
    print(f"   fwd+bwd tokens/s: azr {ours_tps:,.0f}   torch {torch_tps:,.0f}   "
          f"ratio {ours_tps / torch_tps:.2f}x")
    print(f"   update, 80% prompt (weight 0), s: azr backward {min(t_skip):.3f}   torch {min(p_masked):.3f}   "
          f"ratio {min(p_masked) / min(t_skip):.2f}x;   azr loss_and_backward (head on every row) "
          f"{min(t_full):.3f}   ratio {min(t_full) / min(t_skip):.2f}x")
    print(f"   AdamW step (s):   azr {min(t_opt):.3f}   torch {min(p_opt):.3f}   "
          f"ratio {min(p_opt) / min(t_opt):.2f}x")
    print(f"   machine SGEMM beside our steps: {sgemm_rate:.1f} GFLOP/s")
    print(f"   matmul FLOPs / fwd+bwd time: {model_gflops:.1f} GFLOP/s "
          f"({model_gflops / sgemm_rate * 100:.0f}% of SGEMM); inside sgemm calls "
          f"{gemm_gflops:.1f} GFLOP/s ({gemm_gflops / sgemm_rate * 100:.0f}%); share of step "
          f"time in sgemm {gemm_s / sum(t_fb) * 100 if sum(t_fb) else 0:.0f}%", flush=True)
    tag = "_bf16" if bf16 else ""
    tname = f"torch {torch.__version__} CPU" + (", autocast bf16" if bf16 else "")
    extra = []
    if bf16:
        r32 = tok / min(t_fb32)
        print(f"   ours bf16 {ours_tps:,.0f} tokens/s vs ours fp32 {r32:,.0f} (x{ours_tps / r32:.2f}, same run)")
        extra.append({"name": f"{name}_fwd_bwd_tokens_per_s_bf16_vs_fp32", "unit": "tokens/s", "ours": ours_tps,
                      "baseline": r32, "baseline_name": "azr fp32 products, same run", "ratio": ours_tps / r32})
    out = [
        {"name": f"{name}_fwd_bwd_tokens_per_s", "unit": "tokens/s", "ours": ours_tps,
         "baseline": torch_tps, "baseline_name": f"torch {torch.__version__} CPU",
         "ratio": ours_tps / torch_tps},
        {"name": f"{name}_update_prompt80_s", "unit": "s", "ours": min(t_skip), "baseline": min(p_masked),
         "baseline_name": f"torch {torch.__version__} CPU, full logits, masked loss",
         "ratio": min(p_masked) / min(t_skip)},
        {"name": f"{name}_update_prompt80_head_skip_s", "unit": "s", "ours": min(t_skip),
         "baseline": min(t_full), "baseline_name": "azr loss_and_backward (head on every row)",
         "ratio": min(t_full) / min(t_skip)},
        {"name": f"{name}_adamw_step_s", "unit": "s", "ours": min(t_opt), "baseline": min(p_opt),
         "baseline_name": f"torch.optim.AdamW {torch.__version__}",
         "ratio": min(p_opt) / min(t_opt)},
        {"name": f"{name}_matmul_gflops", "unit": "GFLOP/s", "ours": model_gflops,
         "baseline": sgemm_rate, "baseline_name": "machine SGEMM (azr_gemm), measured beside the steps",
         "ratio": model_gflops / sgemm_rate if sgemm_rate else 0.0},
        {"name": f"{name}_sgemm_call_gflops", "unit": "GFLOP/s", "ours": gemm_gflops,
         "baseline": sgemm_rate, "baseline_name": "machine SGEMM (azr_gemm), measured beside the steps",
         "ratio": gemm_gflops / sgemm_rate if sgemm_rate else 0.0},
    ]
    for e in out:
        e["name"] += tag
        if e["baseline_name"].startswith("torch"):
            e["baseline_name"] = e["baseline_name"].replace(f"torch {torch.__version__} CPU", tname)
    return out + extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, under a minute")
    ap.add_argument("--json", metavar="PATH", help="write results as JSON")
    ap.add_argument("--threads", type=int, default=0, help="threads for both (default: azr's)")
    ap.add_argument("--models", default="smollm2,qwen2.5", help="comma list of " + ",".join(SHAPES))
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default 3, quick 1)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="products in fp32 (default) or with bf16 inputs in both engines")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        azr.set_num_threads(args.threads)
    threads = azr.get_num_threads()
    torch.set_num_threads(threads)
    steps = args.steps or (1 if args.quick else 3)
    B, T = (2, 128) if args.quick else (4, 256)
    results = []
    for name in args.models.split(","):
        if name not in SHAPES:
            ap.error(f"unknown model {name!r}; choose from {', '.join(SHAPES)}")
        shape = dict(SHAPES[name])
        if args.quick:
            shape.update(QUICK[name])
        results += bench_model(name, shape, B, T, steps, threads, args.precision)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
