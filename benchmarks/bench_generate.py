"""Rollout-engine throughput: azr's Model.generate against transformers.generate
(torch CPU) and llama.cpp (llama-cpp-python, when importable), same weights,
float32, same machine, same run.

Cases (new tokens are sampled at temperature 1, no EOS, so every system
generates exactly the same number of tokens; prefill is included):
  (a) 1 prompt  x 256 new tokens          -- decode latency, memory bound
  (b) 64 prompts x 256 new tokens         -- continuous batching
  (c) 8 prompts x 8 samples x 256 tokens  -- prefix sharing (n=8)
  (d) the trainer's answer scaffold: 16 prompts that share a 115-token
      header (the cpu preset's proposer prompts: 250-350 tokens), 64 new
      tokens, then the same prompts continued by their completion and 5
      fixed tokens, 32 new tokens more -- two calls, as the trainer's
      spans are; azr with its prefix cache (emptied before each
      repetition, as a weight update empties it) against azr without it
      and against transformers making the same two calls
(a)-(c) run with the prefix cache off, so every system prefills everything.
Also printed: the memory-bandwidth bound for (a): the bytes a call must read
from memory -- the fp32 weights once per new token, and at each decode step
the keys and values already in its fp32 KV cache (~1.4% on top of the
weights for (a)'s prompt and 256 tokens; the figure for the weights alone
is printed too) -- against a STREAM-like read bandwidth measured in this
run with the same threads. K runs of (a) are made for this alone (no other
system runs among them), each paired with as many reads of the weights as
it has new tokens: by default interleaved with it (every 8 tokens the
call's progress callback reads once per token, timed apart, so decode and
read alternate in ~0.1 s windows and a drift of the machine's bandwidth
hits both alike; the call's time without the reads still includes its
prefill and hash), or with --bound-pairing around, back to back just
before and just after the call (seconds apart: the pairs scatter more).
The reported fraction is the median over the K runs (a single ~15 ms read
on a machine whose bandwidth varies is a burst no sustained decode can
match, so it is printed but not used). Also printed: what a `generate` call costs in
fixed overhead (the packed-weight cache: a hash check when it is current,
a repack after a weight change, an allocation on a model's first call).

llama.cpp gets an F32 GGUF written from the same weights (its default F16 KV
cache) and is driven through the low-level API the way its batched example
does: all sequences in one llama_batch per step, n_seq_max sequences, a
prompt decoded once and its KV copied to its n samples (llama_memory_seq_cp),
its own `dist` sampler. `--llama-kv both` also tries its unified KV buffer
and reports the faster. When llama-cpp-python is not installed the llama.cpp
columns are skipped with a note (it builds llama.cpp from source, so CI does
not install it).

The model is SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads, 3 KV
heads, intermediate 1536, vocab 49152, tied embeddings) with random weights,
or --model (a Hugging Face directory or a name Model.from_pretrained knows,
e.g. smollm2-135m-instruct, the default model dequantized to fp32). Speed
does not depend on the weights' values.

Usage:  python benchmarks/bench_generate.py [--quick] [--json out.json]
            [--model DIR|NAME] [--threads N] [--cases abc] [--no-transformers]
            [--llama-kv split|unified|both] [--repeat-a K]
            [--bound-pairing interleaved|around]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:  # the installed package (pip install .), else the checkout's in-place build
    import azr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import azr  # noqa: E402
import azr.generate as gen  # noqa: E402
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


def prompts_for(k: int, vocab: int, seed: int, lo: int = 16, hi: int = 48) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, int(rng.integers(lo, hi))).tolist() for _ in range(k)]


def run_ours(m: Model, prompts, n: int, new: int) -> float:
    t0 = time.perf_counter()
    outs = m.generate(prompts, n=n, max_new_tokens=new, temperature=1.0, seed=0, prefix_cache=False)
    dt = time.perf_counter() - t0
    toks = sum(len(c.token_ids) for r in outs for c in r)
    assert toks == len(prompts) * n * new, (toks, len(prompts) * n * new)
    return toks / dt


def scaffold_prompts(k: int, vocab: int, header: int, lo: int, hi: int) -> list[list[int]]:
    """Case (d): k prompts that start with the same header tokens."""
    head = prompts_for(1, vocab, 4, header, header + 1)[0]
    return [head + p for p in prompts_for(k, vocab, 5, lo, hi)]


def run_scaffold(m: Model, prompts, spans: tuple[int, int], cache: bool,
                 path: Path | None = None, threads: int = 0) -> tuple[float, dict, list]:
    """Case (d): two calls, the second continuing each prompt with its first
    completion and 5 fixed tokens. Returns (new tokens per second over both
    calls, the prefix cache's counters for them, the completions' tokens).
    With ``path``, the same two calls (same prompts, same lengths) are made
    with transformers instead."""
    if cache:
        gen.clear_prefix_cache(m)  # empty, as after a weight update
    before = gen.prefix_cache_stats(m)
    t0 = time.perf_counter()
    first = m.generate(prompts, max_new_tokens=spans[0], temperature=1.0, seed=0, prefix_cache=cache)
    t1 = time.perf_counter()
    cont = [p + c[0].token_ids + [11, 12, 13, 14, 15] for p, c in zip(prompts, first)]
    toks = sum(len(c[0].token_ids) for c in first)
    if path is None:
        second = m.generate(cont, max_new_tokens=spans[1], temperature=1.0, seed=1, prefix_cache=cache)
        toks += sum(len(c[0].token_ids) for c in second)
        after = gen.prefix_cache_stats(m)
        ids = [(c[0].token_ids, d[0].token_ids, d[0].model_logprobs.tolist()) for c, d in zip(first, second)]
        return toks / (time.perf_counter() - t0), {k: after[k] - before[k] for k in after}, ids
    r1 = run_transformers(path, prompts, 1, spans[0], threads)
    r2 = run_transformers(path, cont, 1, spans[1], threads)
    if not r1 or not r2:
        return 0.0, {}, []
    n1, n2 = len(prompts) * spans[0], len(cont) * spans[1]
    return (n1 + n2) / (n1 / r1 + n2 / r2), {}, []


def run_transformers(path: Path, prompts, n: int, new: int, threads: int) -> float | None:
    try:
        import torch
        import transformers
    except ImportError as exc:
        print(f"  transformers baseline skipped: {exc}")
        return None
    torch.set_num_threads(threads)
    tm = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
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


class LlamaCpp:
    """llama.cpp through llama-cpp-python's low-level bindings, used the way
    its own batched example does: one context with n_seq_max sequences, one
    llama_batch per step holding the next token of every running sequence,
    prompts prefilled in batches of n_batch tokens, and for n samples per
    prompt the prompt decoded once and its KV copied to the other samples
    (llama_memory_seq_cp). Sampling is llama.cpp's own `dist` sampler (the
    full softmax, temperature 1), called from C per sequence.

    kv_unified=False gives every sequence its own KV stream (llama.cpp's
    advice for independent sequences: attention then reads only a
    sequence's own cells); True is one shared buffer with masks."""

    def __init__(self, gguf_path: Path, threads: int):
        import llama_cpp as L

        self.L = L
        L.llama_backend_init()
        L.llama_log_set(_llama_quiet_cb(L), None)
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(str(gguf_path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {gguf_path}")
        self.threads = threads

    def close(self) -> None:
        self.L.llama_model_free(self.model)

    def run(self, prompts, n: int, new: int, kv_unified: bool = False, seed: int = 0,
            return_tokens: bool = False, greedy: bool = False):
        """tokens/s for `n` samples of each prompt, `new` tokens each (the
        first from the prompt's logits, like azr), prefill included."""
        L = self.L
        S = len(prompts) * n
        per_seq = max(len(p) for p in prompts) + new + 1
        cp = L.llama_context_default_params()
        cp.n_seq_max = S
        cp.n_ctx = S * ((per_seq + 255) // 256 * 256)
        cp.n_batch = max(512, S)
        cp.n_ubatch = cp.n_batch
        cp.n_threads = self.threads
        cp.n_threads_batch = self.threads
        cp.kv_unified = kv_unified
        cp.no_perf = True
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            raise RuntimeError("llama.cpp could not create a context")
        mem = L.llama_get_memory(ctx)
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy() if greedy
                                  else L.llama_sampler_init_dist(seed))
        nb = cp.n_batch
        batch = L.llama_batch_init(nb, 0, 1)
        out = [[] for _ in range(S)]

        def add(i, tok, pos, seq, logits):
            batch.token[i] = tok
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits

        def decode(k):
            batch.n_tokens = k
            rc = L.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")

        t0 = time.perf_counter()
        # prefill: prompt r in sequence r*n, n_batch tokens per decode call
        k, pending = 0, []
        for r, p in enumerate(prompts):
            for j, tok in enumerate(p):
                last = j == len(p) - 1
                add(k, int(tok), j, r * n, last)
                if last:
                    pending.append((r, k))
                k += 1
                if k == nb:
                    decode(k)
                    self._branch(mem, chain, ctx, pending, n, out)
                    k, pending = 0, []
        if k:
            decode(k)
            self._branch(mem, chain, ctx, pending, n, out)
        # decode: one token of every sequence per step
        plen = [len(prompts[s // n]) for s in range(S)]
        for step in range(1, new):
            for s in range(S):
                add(s, out[s][-1], plen[s] + step - 1, s, True)
            decode(S)
            for s in range(S):
                out[s].append(L.llama_sampler_sample(chain, ctx, s))
        dt = time.perf_counter() - t0
        L.llama_batch_free(batch)
        L.llama_sampler_free(chain)
        L.llama_free(ctx)
        toks = sum(len(o) for o in out)
        assert toks == S * new, (toks, S * new)
        return (toks / dt, out) if return_tokens else toks / dt

    def _branch(self, mem, chain, ctx, pending, n, out):
        """After a prefill batch: copy each finished prompt's KV to its other
        samples and draw every sample's first token from the prompt's logits."""
        for r, idx in pending:
            for i in range(1, n):
                self.L.llama_memory_seq_cp(mem, r * n, r * n + i, -1, -1)
            for i in range(n):
                out[r * n + i].append(self.L.llama_sampler_sample(chain, ctx, idx))


def _llama_quiet_cb(L):
    """A log callback that drops llama.cpp's messages (kept alive on the module)."""
    @L.llama_log_callback
    def cb(level, text, user_data):  # noqa: ARG001
        return None

    _llama_quiet_cb.keep = cb
    return cb


def read_bandwidth(m: Model, tries: int = 5, reads: int = 1) -> float:
    """Bytes/s of a STREAM-like read of the model's own parameter arena
    (fp32, as many bytes as a decode step reads, allocated the way the
    packed copy is: on transparent huge pages, which read ~5% faster than
    4 KiB pages here, so the bound is the stricter one), read by the engine's OpenMP threads, each its run as 4
    long streams side by side like the decode product, the fastest read
    pattern measured on this machine (azr._core.gen_sum_floats).
    `reads` back-to-back reads are timed together (reads=256: the bytes 256
    decode steps read, over about as long as they take); best of `tries`."""
    a = m._params
    azr._core.gen_sum_floats(a)
    best = 0.0
    for _ in range(tries):
        t0 = time.perf_counter()
        for _ in range(reads):
            azr._core.gen_sum_floats(a)
        best = max(best, reads * a.nbytes / (time.perf_counter() - t0))
    return best


def kv_read_bytes(m: Model, prompt_len: int, new: int) -> int:
    """Bytes of cached keys and values one sequence's decode steps read,
    fp32 as the engine keeps them: the prefill gives the first new token,
    then step i (i = 1 .. new-1) feeds token i at position prompt_len+i-1
    and its attention reads the prompt_len+i-1 positions cached before it,
    in every layer (the row being decoded is written and read in cache,
    and the prefill's own keys are written and read in cache too, so
    neither is counted)."""
    c = m.config
    per_pos = c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * 4
    positions = sum(prompt_len + i - 1 for i in range(1, new))
    return per_pos * positions


def run_ours_interleaved(m: Model, prompts, new: int, every: int = 8) -> tuple[float, float]:
    """Case (a) with the bound's read interleaved into the call: every
    `every` new tokens the progress callback (called by the engine between
    steps, while it waits) reads the parameter arena once per token since
    the last read, timed apart from the call; the rest reads after the call
    returns. Returns (tokens/s of the call with the reads' time taken out,
    which still counts its prefill, weights hash and callbacks; the read
    bandwidth of those reads). Decode and read alternate in ~0.1 s windows,
    so a drift of the machine's bandwidth hits both alike."""
    a = m._params
    st = {"last": 0, "read_s": 0.0, "reads": 0}

    def read(k):
        t0 = time.perf_counter()
        for _ in range(k):
            azr._core.gen_sum_floats(a)
        st["read_s"] += time.perf_counter() - t0
        st["reads"] += k

    def cb(p):
        if p.tokens - st["last"] >= every and p.tokens < new:
            read(p.tokens - st["last"])
            st["last"] = p.tokens

    t0 = time.perf_counter()
    outs = m.generate(prompts, n=1, max_new_tokens=new, temperature=1.0, seed=0, progress=cb,
                      prefix_cache=False)
    dt = time.perf_counter() - t0 - st["read_s"]
    assert sum(len(c.token_ids) for r in outs for c in r) == len(prompts) * new
    read(new - st["last"])
    return len(prompts) * new / dt, st["reads"] * a.nbytes / st["read_s"]


def load_line() -> str:
    la = os.getloadavg()
    return f"load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short runs (under a minute): 4 of the 30 layers, 16 new tokens, "
                         "fewer prompts")
    ap.add_argument("--json", help="write results to this JSON file")
    ap.add_argument("--model", help="Hugging Face model directory or a name Model.from_pretrained "
                                    "knows (default: random weights in SmolLM2-135M's shape)")
    ap.add_argument("--threads", type=int, default=0, help="threads for every system (default: all)")
    ap.add_argument("--cases", default="abcd", help="which of the cases a, b, c, d to run (default: abcd)")
    ap.add_argument("--no-transformers", action="store_true", help="skip the transformers baseline")
    ap.add_argument("--repeat-a", type=int, default=5,
                    help="run case (a) K times with each system, interleaved, and K more times "
                         "alone between reads of the weights: the tokens/s reported are each "
                         "system's best, the fraction of the bandwidth bound the median of the K "
                         "runs against the reads around each (default 5; fairer on a machine "
                         "whose load or bandwidth varies)")
    ap.add_argument("--bound-pairing", choices=["interleaved", "around"], default="interleaved",
                    help="how each of (a)'s K runs for the bandwidth bound meets its read: "
                         "interleaved (default: the read is done in pieces inside the call, every "
                         "8 tokens from its progress callback, and its time taken out of the "
                         "call's) or around (one sustained read just before the call and one just "
                         "after, averaged; seconds apart, so the machine's bandwidth drift "
                         "scatters the pairs more)")
    ap.add_argument("--llama-kv", choices=["split", "unified", "both"], default="split",
                    help="llama.cpp KV layout: one stream per sequence (split, its advice for "
                         "independent sequences), one unified buffer, or both (best reported)")
    args = ap.parse_args()
    threads = args.threads or azr.get_num_threads()
    azr.set_num_threads(threads)

    tmp = tempfile.TemporaryDirectory(prefix="azr_bench_gen_")
    if args.model:
        m = Model.from_pretrained(args.model)
        path = Path(tmp.name) / "hf"
        m.save_pretrained(path)
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
    llama = None
    try:
        import llama_cpp

        gguf_path = Path(tmp.name) / "model-f32.gguf"
        write_gguf_f32(m, gguf_path)
        llama = LlamaCpp(gguf_path, threads)
        print(f"llama.cpp: llama-cpp-python {llama_cpp.__version__}, F32 GGUF written from the same "
              f"weights, KV cache at its default precision (F16), {threads} threads")
    except ImportError:
        print("note: llama-cpp-python is not installed; the llama.cpp baseline is skipped "
              "(pip install llama-cpp-python to include it; it builds llama.cpp from source)")

    weight_bytes = m.num_params * 4
    # (a) must read, per new token: the weights, and on average this many
    # bytes of its KV cache
    kv_bytes = kv_read_bytes(m, len(cases["a"][1][0]), new) / new
    token_bytes = weight_bytes + kv_bytes
    burst = read_bandwidth(m)
    bw = read_bandwidth(m, tries=1, reads=new)
    bound = bw / token_bytes
    print(f"machine: {os.cpu_count()} CPUs, {threads} threads, {load_line()} before the runs")
    print(f"read bandwidth (STREAM-like read of the fp32 weights, {threads} threads): sustained over {new} "
          f"reads {bw / 1e9:.2f} GB/s (one read alone, best of 5: {burst / 1e9:.2f} GB/s); a token of "
          f"(a) reads the weights, {weight_bytes / 1e6:.0f} MB (fp32), and on average "
          f"{kv_bytes / 1e6:.1f} MB of its KV cache -> memory-bandwidth bound for (a): {bound:.1f} "
          f"tokens/s ({bw / weight_bytes:.1f} counting the weights alone)")

    # the packed-weight cache: what a call pays for it
    probe = prompts_for(1, V, 9)

    def timed_call() -> float:
        t0 = time.perf_counter()
        m.generate(probe, max_new_tokens=1, temperature=0.0)
        return time.perf_counter() - t0

    gen.release_weight_cache(m)
    t_first = timed_call()  # allocates the packed copy (page faults) and packs
    t_hit = timed_call()  # hashes the weights: current
    a = m._params
    i, old = a.size // 2, a[a.size // 2]
    a[i] = np.nextafter(old, np.float32(np.inf))  # a weight change, as a training step makes
    t_pack = timed_call()  # hash, then repack into the same buffer
    a[i] = old
    timed_call()  # back to the model's own weights
    print(f"generate call overhead (1 prompt of {len(probe[0])} tokens, 1 new token, so mostly its "
          f"prefill): {t_hit * 1e3:.0f} ms when the packed weights are current (a hash of the "
          f"weights), {t_pack * 1e3:.0f} ms after a weight change (hash and repack), "
          f"{t_first * 1e3:.0f} ms on a model's first call (allocating the packed copy)")
    if llama is not None:
        ours_g = m.generate(probe, max_new_tokens=8, temperature=0.0)[0][0].token_ids
        _, lc_g = llama.run(probe, 1, 8, greedy=True, return_tokens=True)
        same = sum(a == b for a, b in zip(ours_g, lc_g[0]))
        print(f"same weights check: greedy tokens azr {ours_g} vs llama.cpp {lc_g[0]}: "
              f"{same}/8 agree")

    results = []
    for key, (label, prompts, n) in cases.items():
        if key not in args.cases:
            continue
        run_ours(m, prompts[:1], 1, 4)  # warm-up
        reps = max(1, args.repeat_a) if key == "a" else 1
        ours, hf, lc, lc_mode = 0.0, None, None, ""
        pairs = []  # (a): (ours, the sustained read bandwidth just before and just after it)
        if key == "a":
            # The bound's pairs first, back to back with nothing else in
            # between: another runtime's threads can linger after its run
            # (spinning, or its memory still being returned), which slowed
            # whichever of our run and our read came next and scattered the
            # pairs from ~70% to ~90%.
            for _ in range(reps):
                if args.bound_pairing == "interleaved":
                    pairs.append(run_ours_interleaved(m, prompts, new))
                    continue
                before = read_bandwidth(m, tries=1, reads=new)
                r = run_ours(m, prompts, n, new)
                pairs.append((r, (before + read_bandwidth(m, tries=1, reads=new)) / 2))
        for _ in range(reps):  # the systems' tokens/s: the best of K each, interleaved
            r = run_ours(m, prompts, n, new)
            ours = max(ours, r)
            if not args.no_transformers:
                r = run_transformers(path, prompts, n, new, threads)
                hf = r if hf is None or (r and r > hf) else hf
            if llama is not None:
                modes = {"split": [False], "unified": [True], "both": [False, True]}[args.llama_kv]
                if n == 1 and len(prompts) == 1:
                    modes = modes[:1]  # one sequence: the layouts are the same
                for uni in modes:
                    r = llama.run(prompts, n, new, kv_unified=uni)
                    if lc is None or r > lc:
                        lc, lc_mode = r, ("unified KV" if uni else "KV per sequence")
        line = f"{label}: azr {ours:8.1f} tok/s"
        if hf:
            line += f" | transformers {hf:8.1f} tok/s (azr x{ours / hf:.2f})"
            results.append(dict(name=f"generate_{key}", unit="tokens/s", ours=ours, baseline=hf,
                                baseline_name="transformers.generate (torch CPU)", ratio=ours / hf))
        if lc:
            line += f" | llama.cpp ({lc_mode}) {lc:8.1f} tok/s (azr x{ours / lc:.2f})"
            results.append(dict(name=f"generate_{key}", unit="tokens/s", ours=ours, baseline=lc,
                                baseline_name=f"llama.cpp (llama-cpp-python, F32 GGUF, {lc_mode})",
                                ratio=ours / lc))
        if key == "a":
            # Each repetition against the bandwidth read within it (or right
            # around it: the machine's bandwidth drifts by tens of percent
            # between seconds); the median repetition's pair is reported.
            pairs.sort(key=lambda p: p[0] * token_bytes / p[1])
            r_ours, bw = pairs[len(pairs) // 2]
            bound = bw / token_bytes
            where = {"interleaved": "interleaved with it", "around": "around it"}[args.bound_pairing]
            line += (f" | {100 * r_ours / bound:.0f}% of the bandwidth bound: {r_ours:.1f} of {bound:.1f} "
                     f"({bw / 1e9:.2f} GB/s read {where}; median of {len(pairs)} paired runs: "
                     f"{', '.join(f'{100 * o * token_bytes / b:.0f}%' for o, b in pairs)}; "
                     f"{100 * r_ours * weight_bytes / bw:.0f}% counting the weights alone)")
            results.append(dict(name="generate_a_vs_bandwidth_bound", unit="tokens/s", ours=r_ours,
                                baseline=bound,
                                baseline_name="memory-bandwidth bound (weights and KV cache, sustained read)",
                                ratio=r_ours / bound))
        if reps > 1:
            line += f" [best of {reps}]"
        print(line + f" [{load_line()}]", flush=True)
    if "d" in args.cases:
        k, header, lo, hi, spans = (4, 48, 40, 80, (8, 8)) if args.quick else (16, 115, 135, 235, (64, 32))
        prompts = scaffold_prompts(k, V, header, lo, hi)
        run_scaffold(m, prompts[:2], (2, 2), True)  # warm-up
        with_c, without, hf, stats = 0.0, 0.0, None, {}
        for _ in range(max(1, args.repeat_a) if not args.quick else 1):  # best of K, interleaved
            r, st, ids_c = run_scaffold(m, prompts, spans, True)
            if r > with_c:
                with_c, stats = r, st
            r, _, ids_n = run_scaffold(m, prompts, spans, False)
            without = max(without, r)
            if ids_c != ids_n:
                raise SystemExit("(d): the prefix cache changed the completions (tokens or log-probs)")
            if not args.no_transformers:
                r = run_scaffold(m, prompts, spans, False, path, threads)[0]
                hf = r if hf is None or (r and r > hf) else hf
        reuse = stats["reused_tokens"] / max(1, stats["prompt_tokens"])
        line = (f"(d) scaffold, {k} prompts ({header}-token header) x {spans[0]} + {spans[1]} new tokens in two "
                f"calls: azr {with_c:8.1f} tok/s with the prefix cache ({100 * reuse:.0f}% of "
                f"{stats['prompt_tokens']} prompt tokens reused) | azr without it {without:8.1f} tok/s "
                f"(x{with_c / without:.2f})")
        results.append(dict(name="generate_d_scaffold", unit="tokens/s", ours=with_c, baseline=without,
                            baseline_name="azr without the prefix cache", ratio=with_c / without))
        if hf:
            line += f" | transformers {hf:8.1f} tok/s (azr x{with_c / hf:.2f})"
            results.append(dict(name="generate_d_scaffold", unit="tokens/s", ours=with_c, baseline=hf,
                                baseline_name="transformers.generate (torch CPU), same two calls",
                                ratio=with_c / hf))
        print(line + f" [{load_line()}]", flush=True)
    if llama is not None:
        llama.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
