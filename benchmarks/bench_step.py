"""One self-play step's model work, azr against PyTorch + transformers, same
weights, same threads, same run.

The step is the `cpu` preset's shape (docs/results.md), with random prompt
tokens standing in for the text:
  1. propose: 16 prompts that share a 115-token header (250-350 tokens), the
     answer scaffold's two spans -- 64 new tokens, then each prompt continued
     by its completion and 5 fixed tokens, 32 new tokens more;
  2. learnability: 4 new solver prompts (a 43-token header, 140-240 tokens),
     4 samples of 24 tokens each;
  3. solve: 16 solver prompts (the 4 of step 2 among them), 24 tokens each;
  4. update: forward and backward of every sampled sequence (prompt plus
     completion; the loss only on completion tokens, the prompt at weight 0)
     in micro-batches of at most 8 sequences, then one AdamW step.
Every call samples at temperature 1 with no end-of-sequence token, so both
systems generate exactly the same number of tokens.

azr: `Model.generate` (rollout engine; its prefix cache on, emptied at the
start of the step as an update empties it), `Model.backward` (the vocabulary
head skips rows of weight 0), `azr.AdamW`. PyTorch: `generate` of
transformers (left-padded batches, SDPA attention), a forward with full
logits, masked log-probability loss and `backward()`, `torch.optim.AdamW`.

Usage: python benchmarks/bench_step.py [--quick] [--json PATH] [--threads N]
       [--precision fp32|bf16] [--no-torch]
--quick: 4 of SmolLM2's 30 layers and fewer, shorter prompts (under a minute).
--precision bf16: our update's products with bf16 inputs, PyTorch's under
torch.autocast bf16 (generation stays fp32 in both).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:  # the installed package, else the checkout's in-place build
    import azr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import azr  # noqa: E402
import azr.generate as gen  # noqa: E402
from azr.model import Model, ModelConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import SMOLLM2  # noqa: E402  (the SmolLM2-135M shape, no EOS)


def workload(quick: bool, vocab: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def prompts(k, header, lo, hi, rng_):
        head = rng_.integers(3, vocab, header).tolist()
        return [head + rng_.integers(3, vocab, int(rng_.integers(lo, hi))).tolist() for _ in range(k)]

    if quick:
        return dict(propose=prompts(4, 48, 40, 80, rng), spans=(8, 8), solve=prompts(4, 24, 40, 80, rng),
                    n_learn=2, learn_k=2, solve_new=8, micro=8)
    return dict(propose=prompts(16, 115, 135, 235, rng), spans=(64, 32), solve=prompts(16, 43, 100, 200, rng),
                n_learn=4, learn_k=4, solve_new=24, micro=8)


def step_ours(m: Model, opt, w: dict, precision: str) -> tuple[dict, list[list[int]], list[int]]:
    """One step with azr; returns (seconds per phase, sequences, completion starts)."""
    times = {}
    gen.clear_prefix_cache(m)
    kw = dict(temperature=1.0, top_p=1.0)
    seqs, starts = [], []
    t0 = time.perf_counter()
    first = m.generate(w["propose"], max_new_tokens=w["spans"][0], seed=1, **kw)
    cont = [p + c[0].token_ids + [11, 12, 13, 14, 15] for p, c in zip(w["propose"], first)]
    second = m.generate(cont, max_new_tokens=w["spans"][1], seed=2, **kw)
    times["propose"] = time.perf_counter() - t0
    for p, c, d in zip(w["propose"], first, second):
        seqs.append(p + c[0].token_ids + [11, 12, 13, 14, 15] + d[0].token_ids)
        starts.append(len(p))
    t0 = time.perf_counter()
    learn = m.generate(w["solve"][:w["learn_k"]], n=w["n_learn"], max_new_tokens=w["solve_new"], seed=3, **kw)
    times["learnability"] = time.perf_counter() - t0
    del learn  # judged, not trained on
    t0 = time.perf_counter()
    sol = m.generate(w["solve"], max_new_tokens=w["solve_new"], seed=4, **kw)
    times["solve"] = time.perf_counter() - t0
    for p, c in zip(w["solve"], sol):
        seqs.append(p + c[0].token_ids)
        starts.append(len(p))
    t0 = time.perf_counter()
    azr.set_matmul_precision(precision)
    try:
        m.zero_grad()
        for ids, tg, wt in micro_batches(seqs, starts, w["micro"]):
            m.backward(ids, tg, wt)
        opt.step()
    finally:
        azr.set_matmul_precision("fp32")
    times["update"] = time.perf_counter() - t0
    return times, seqs, starts


def micro_batches(seqs, starts, micro):
    """Right-padded (ids, targets, weights) batches; weight 1/len on completion tokens."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for b in range(0, len(order), micro):
        idx = order[b:b + micro]
        T = max(len(seqs[i]) for i in idx) - 1
        ids = np.zeros((len(idx), T), np.int64)
        tg = np.zeros((len(idx), T), np.int64)
        wt = np.zeros((len(idx), T), np.float32)
        for r, i in enumerate(idx):
            s = seqs[i]
            ids[r, :len(s) - 1] = s[:-1]
            tg[r, :len(s) - 1] = s[1:]
            n = len(s) - starts[i]
            wt[r, starts[i] - 1:len(s) - 1] = 1.0 / (n * len(seqs))
        yield ids, tg, wt


def step_torch(tm, topt, w: dict, seqs, starts, precision: str) -> dict:
    import torch

    times = {}

    def generate(prompts, n, new):
        T = max(len(p) for p in prompts)
        ids = torch.zeros((len(prompts), T), dtype=torch.long)
        mask = torch.zeros((len(prompts), T), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, T - len(p):] = torch.tensor(p)
            mask[i, T - len(p):] = 1
        with torch.inference_mode():
            out = tm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                              do_sample=True, temperature=1.0, top_p=1.0, top_k=0, num_return_sequences=n,
                              pad_token_id=0, eos_token_id=None)
        return [row[T:].tolist() for row in out]

    torch.manual_seed(0)
    tm.eval()
    t0 = time.perf_counter()
    first = generate(w["propose"], 1, w["spans"][0])
    cont = [p + c + [11, 12, 13, 14, 15] for p, c in zip(w["propose"], first)]
    generate(cont, 1, w["spans"][1])
    times["propose"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate(w["solve"][:w["learn_k"]], w["n_learn"], w["solve_new"])
    times["learnability"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate(w["solve"], 1, w["solve_new"])
    times["solve"] = time.perf_counter() - t0
    # the update, on the sequences azr sampled (same shapes)
    tm.train()
    t0 = time.perf_counter()
    topt.zero_grad()
    for ids, tg, wt in micro_batches(seqs, starts, w["micro"]):
        ids_t = torch.from_numpy(ids)  # right padding: causal attention keeps it out of the real rows
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = tm(ids_t).logits
        lp = torch.log_softmax(logits.float(), -1).gather(-1, torch.from_numpy(tg)[..., None])[..., 0]
        (-(torch.from_numpy(wt) * lp).sum()).backward()
    torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
    topt.step()
    times["update"] = time.perf_counter() - t0
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 layers, fewer and shorter prompts (under a minute)")
    ap.add_argument("--json", help="write the entries to this JSON file")
    ap.add_argument("--threads", type=int, default=0, help="threads for both systems (default: azr's)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="the update's products: fp32 (default) or bf16 inputs in both systems")
    ap.add_argument("--repeat", type=int, default=0, help="steps per system, best kept (default 2, quick 1)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    args = ap.parse_args(argv)
    if args.threads:
        azr.set_num_threads(args.threads)
    threads = azr.get_num_threads()
    reps = args.repeat or (1 if args.quick else 2)
    cfg = ModelConfig(**{**SMOLLM2, **({"num_hidden_layers": 4} if args.quick else {})})
    m = Model.from_config(cfg, seed=0, init_std=0.02)
    w = workload(args.quick, cfg.vocab_size)
    opt = azr.AdamW(m, lr=1e-5, max_grad_norm=1.0)
    cpu = azr.cpu_info()
    print(f"machine: {cpu['brand']}, {os.cpu_count()} CPUs, {threads} threads, isa {cpu['isa']}; "
          f"model: SmolLM2-135M shape, {cfg.num_hidden_layers} layers, random weights; precision "
          f"{args.precision}")
    step_ours(m, opt, w, args.precision)  # warm-up: packs weights, allocates
    ours, seqs, starts = None, None, None
    for _ in range(reps):
        t, seqs, starts = step_ours(m, opt, w, args.precision)
        ours = t if ours is None or sum(t.values()) < sum(ours.values()) else ours
    gen_tokens = sum(len(s) - st for s, st in zip(seqs, starts))
    print("azr   " + "  ".join(f"{k} {v:6.2f} s" for k, v in ours.items()) + f"  total {sum(ours.values()):6.2f} s")
    results = []
    # the same steps without the prefix cache (what it saves)
    gen.set_prefix_cache(m, 0)
    nocache = None
    for _ in range(reps):
        t, _, _ = step_ours(m, opt, w, args.precision)
        nocache = t if nocache is None or sum(t.values()) < sum(nocache.values()) else nocache
    gen.release_prefix_cache(m)
    print("azr without its prefix cache   " + "  ".join(f"{k} {v:6.2f} s" for k, v in nocache.items())
          + f"  total {sum(nocache.values()):6.2f} s")
    gen_o, gen_n = (sum(d[k] for k in ("propose", "learnability", "solve")) for d in (ours, nocache))
    results.append(dict(name="step_generate_s_prefix_cache", unit="s", ours=gen_o, baseline=gen_n,
                        baseline_name="azr without the prefix cache", ratio=gen_n / gen_o))
    base = None
    if not args.no_torch:
        import torch
        import transformers

        torch.set_num_threads(threads)
        tmp = tempfile.TemporaryDirectory(prefix="azr_bench_step_")
        m.save_pretrained(tmp.name)
        tm = transformers.AutoModelForCausalLM.from_pretrained(tmp.name, dtype=torch.float32)
        tm.config._attn_implementation = "sdpa"
        topt = torch.optim.AdamW(tm.parameters(), lr=1e-5)
        del m, opt
        gc.collect()
        step_torch(tm, topt, w, seqs, starts, args.precision)  # warm-up
        for _ in range(reps):
            t = step_torch(tm, topt, w, seqs, starts, args.precision)
            base = t if base is None or sum(t.values()) < sum(base.values()) else base
        print("torch " + "  ".join(f"{k} {v:6.2f} s" for k, v in base.items())
              + f"  total {sum(base.values()):6.2f} s")
        tmp.cleanup()
        tname = f"PyTorch {torch.__version__} + transformers {transformers.__version__}" + (
            ", autocast bf16" if args.precision == "bf16" else "")
        for k in list(ours) + ["total"]:
            o = sum(ours.values()) if k == "total" else ours[k]
            b = sum(base.values()) if k == "total" else base[k]
            results.append(dict(name=f"step_{k}_s" + ("_bf16" if args.precision == "bf16" else ""), unit="s",
                                ours=o, baseline=b, baseline_name=tname, ratio=b / o))
            print(f"  {k:13s} azr {o:7.2f} s   torch {b:7.2f} s   ratio {b / o:5.2f}x")
    print(f"({len(seqs)} trained sequences, {gen_tokens} sampled and fixed tokens trained)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
