"""Rollout-engine throughput: azr's Model.generate against transformers.generate
(torch CPU) and llama.cpp (llama-cpp-python, when importable), same weights,
float32, same machine, same run.

Cases (new tokens are sampled at temperature 1, no EOS, so every system
generates exactly the same number of tokens):
  (a) 1 prompt  x 256 new tokens          -- decode latency, memory bound
  (b) 64 prompts x 256 new tokens         -- continuous batching
  (c) 8 prompts x 8 samples x 256 tokens  -- prefix sharing (n=8)
Also printed: the memory-bandwidth bound for (a) (weight bytes read per token
against a NumPy copy bandwidth measured in this run with as many threads).

The model is SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads, 3 KV
heads, intermediate 1536, vocab 49152, tied embeddings) with random weights
unless --model points at a Hugging Face directory (config.json +
safetensors). Speed does not depend on the weights' values.

Usage:  python benchmarks/bench_generate.py [--quick] [--json out.json]
                                             [--model DIR] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import azr  # noqa: E402
from azr.model import Model, ModelConfig  # noqa: E402

SMOLLM2 = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
               num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
               rope_theta=100000.0, rms_norm_eps=1e-5, max_position_embeddings=8192,
               bos_token_id=None, eos_token_id=None)


def random_smollm2(path: Path, layers: int | None = None) -> Model:
    cfg = ModelConfig(**{**SMOLLM2, **({"num_hidden_layers": layers} if layers else {})})
    m = Model(cfg)
    rng = np.random.default_rng(0)
    flat = m._params
    step = 1 << 24
    for i in range(0, flat.size, step):
        flat[i:i + step] = rng.standard_normal(min(step, flat.size - i), dtype=np.float32) * 0.02
    for name, a in m.parameters().items():
        if name.endswith("norm.weight"):
            a[...] = 1.0
    m.save_pretrained(path)
    return m


def copy_bandwidth(threads: int, mb: int = 512) -> float:
    """Bytes/s of a NumPy copy split over `threads` Python threads (NumPy
    releases the GIL), read + write counted, best of 5."""
    n = mb * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(n), threads)
    bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts if p.size]
    best = 0.0
    for _ in range(5):
        ts = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b])) for a, b in bounds]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        dt = time.perf_counter() - t0
        best = max(best, 2 * src.nbytes / dt)
    return best


def prompts_for(k: int, vocab: int, seed: int, lo: int = 16, hi: int = 48) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, int(rng.integers(lo, hi))).tolist() for _ in range(k)]


def run_ours(m: Model, prompts, n: int, new: int) -> float:
    t0 = time.perf_counter()
    outs = m.generate(prompts, n=n, max_new_tokens=new, temperature=1.0, seed=0)
    dt = time.perf_counter() - t0
    toks = sum(len(c.token_ids) for r in outs for c in r)
    assert toks == len(prompts) * n * new, (toks, len(prompts) * n * new)
    return toks / dt


def run_transformers(path: Path, prompts, n: int, new: int, threads: int) -> float | None:
    try:
        import torch
        import transformers
    except ImportError as exc:
        print(f"  transformers baseline skipped: {exc}")
        return None
    torch.set_num_threads(threads)
    tm = transformers.AutoModelForCausalLM.from_pretrained(str(path), torch_dtype=torch.float32)
    tm.eval()
    T = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), T), dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding, as generation needs
        ids[i, T - len(p):] = torch.tensor(p)
        mask[i, T - len(p):] = 1
    torch.manual_seed(0)
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = tm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                          min_new_tokens=new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                          num_return_sequences=n, pad_token_id=0, eos_token_id=None)
        dt = time.perf_counter() - t0
    toks = (out.shape[1] - T) * out.shape[0]
    assert toks == len(prompts) * n * new, (toks, out.shape)
    return toks / dt


def write_gguf_f32(m: Model, path: Path) -> None:
    """The model as an F32 GGUF (llama architecture) for llama.cpp, with a
    placeholder vocabulary (the benchmark feeds token ids). q/k rows are
    permuted to llama.cpp's interleaved rotary layout."""
    import gguf

    c = m.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("azr-bench")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.head_dim)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>".encode() for i in range(c.vocab_size)])
    w.add_token_scores([0.0] * c.vocab_size)
    w.add_token_types([gguf.TokenType.NORMAL] * c.vocab_size)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def permute(x, heads):
        return (x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:])
                .swapaxes(1, 2).reshape(x.shape))

    p = m.parameters()
    w.add_tensor("token_embd.weight", p["model.embed_tokens.weight"])
    for i in range(c.num_hidden_layers):
        pre = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", p[pre + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight",
                     permute(p[pre + "self_attn.q_proj.weight"], c.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight",
                     permute(p[pre + "self_attn.k_proj.weight"], c.num_key_value_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", p[pre + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", p[pre + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", p[pre + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", p[pre + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", p[pre + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", p[pre + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", p["model.norm.weight"])
    if not c.tie_word_embeddings:
        w.add_tensor("output.weight", p["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run_llamacpp(gguf_path: Path, prompts, n: int, new: int, threads: int) -> float:
    """llama-cpp-python has no batched sampling API: prompts and samples run
    one after another (its prompt cache reuses the shared prefix)."""
    import llama_cpp

    ctx = max(len(p) for p in prompts) + new + 8
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=ctx, n_threads=threads,
                          n_batch=512, verbose=False, seed=0)
    toks = 0
    t0 = time.perf_counter()
    for p in prompts:
        for _ in range(n):
            llm.reset()
            k = 0
            for _tok in llm.generate(p, temp=1.0, top_k=0, top_p=1.0, reset=True):
                k += 1
                if k >= new:
                    break
            toks += k
    return toks / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short runs (under a minute): 4 of the 30 layers, 16 new tokens, "
                         "fewer prompts")
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--model", help="Hugging Face model directory (default: random SmolLM2-135M shape)")
    ap.add_argument("--threads", type=int, default=0, help="threads for every system (default: all)")
    ap.add_argument("--cases", default="abc", help="which of the cases a, b, c to run (default: abc)")
    args = ap.parse_args()
    threads = args.threads or azr.get_num_threads()
    azr.set_num_threads(threads)

    tmp = tempfile.TemporaryDirectory(prefix="azr_bench_gen_")
    if args.model:
        path = Path(args.model)
        m = Model.from_pretrained(path)
        m.tokenizer = None
        m.config.eos_token_id = None  # fixed-length runs for every system
    else:
        path = Path(tmp.name) / "smollm2_random"
        layers = 4 if args.quick else None
        print("building a random SmolLM2-135M-shaped model"
              + (f" (quick: {layers} layers)" if layers else "") + " ...", flush=True)
        m = random_smollm2(path, layers)
    V = m.config.vocab_size
    new = 16 if args.quick else 256
    cases = {
        "a": ("(a) 1 prompt x %d" % new, prompts_for(1, V, 1), 1),
        "b": ("(b) %d prompts x %d" % (16 if args.quick else 64, new),
              prompts_for(16 if args.quick else 64, V, 2), 1),
        "c": ("(c) %d prompts x 8 samples x %d" % (2 if args.quick else 8, new),
              prompts_for(2 if args.quick else 8, V, 3), 8),
    }
    try:
        import llama_cpp  # noqa: F401

        have_llama = True
    except ImportError:
        have_llama = False
        print("note: llama-cpp-python is not installed; the llama.cpp baseline is skipped "
              "(pip install llama-cpp-python to include it)")
    gguf_path = Path(tmp.name) / "model-f32.gguf"
    if have_llama:
        write_gguf_f32(m, gguf_path)

    bw = copy_bandwidth(threads, 128 if args.quick else 512)
    weight_bytes = m.num_params * 4
    bound = bw / weight_bytes
    print(f"machine: {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), {threads} threads; NumPy copy bandwidth "
          f"{bw / 1e9:.1f} GB/s; weights {weight_bytes / 1e6:.0f} MB")
    print(f"memory-bandwidth bound for (a): {bound:.1f} tokens/s (one full weight read per token)")

    results = []
    for key, (label, prompts, n) in cases.items():
        if key not in args.cases:
            continue
        run_ours(m, prompts[:1], 1, 4)  # warm-up (page in weights)
        ours = run_ours(m, prompts, n, new)
        hf = run_transformers(path, prompts, n, new, threads)
        line = f"{label}: azr {ours:8.1f} tok/s"
        if hf:
            line += f" | transformers {hf:8.1f} tok/s (x{ours / hf:.2f})"
            results.append(dict(name=f"generate_{key}", unit="tokens/s", ours=ours, baseline=hf,
                                baseline_name="transformers.generate (torch CPU)", ratio=ours / hf))
        if have_llama:
            lc = run_llamacpp(gguf_path, prompts, n, new, threads)
            line += f" | llama.cpp {lc:8.1f} tok/s (x{ours / lc:.2f})"
            results.append(dict(name=f"generate_{key}", unit="tokens/s", ours=ours, baseline=lc,
                                baseline_name="llama.cpp (llama-cpp-python, F32 GGUF)",
                                ratio=ours / lc))
        if key == "a":
            line += f" | {100 * ours / bound:.0f}% of the bandwidth bound {bound:.1f}"
            results.append(dict(name="generate_a_vs_bandwidth_bound", unit="tokens/s", ours=ours,
                                baseline=bound, baseline_name="memory-bandwidth bound (NumPy copy)",
                                ratio=ours / bound))
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
