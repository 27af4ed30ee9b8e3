"""Load time of the default model (SmolLM2-135M-Instruct, Q4_1 GGUF).

Measured in one run, on this machine:

- azr, first load: convert the GGUF into a fresh cache directory
  (azr.gguf.ensure_hf_dir: dequantise, un-permute, write fp32 safetensors and
  the tokenizer files), then load the weights. The weights are loaded with
  azr.Model.from_pretrained when the model engine is built into this tree,
  otherwise read into fp32 NumPy arrays from the safetensors file (what the
  engine does, minus its arena); the JSON record says which.
- azr, cached load: the same with the cache already filled.
- baseline: transformers' AutoModelForCausalLM.from_pretrained(gguf_file=...)
  loading the same GGUF into an fp32 model.
- and the dequantisation alone: azr's C dequantiser over every tensor vs the
  `gguf` package's NumPy reference (gguf.quants.dequantize).

ratio = baseline seconds / azr seconds (> 1: azr is faster).

    python benchmarks/bench_load.py --quick --json results/bench_load.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:  # the installed package (pip install .), else the checkout's in-place build
    import azr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azr import gguf as agguf  # noqa: E402
from azr.safetensors_io import read_header  # noqa: E402


def _load_weights(hf_dir: Path) -> tuple[int, str]:
    """Load the converted weights; returns (parameter count, method)."""
    try:
        from azr import Model  # the model engine, when present in this tree
    except ImportError:
        Model = None
    if Model is not None:
        m = Model.from_pretrained(str(hf_dir))
        return sum(int(np.prod(p.shape)) for p in m.parameters().values()), "azr.Model.from_pretrained"
    path = hf_dir / "model.safetensors"
    header = read_header(path)
    total = 0
    with open(path, "rb") as f:
        base = 8 + int.from_bytes(f.read(8), "little")
        for name, info in header.items():
            if name == "__metadata__":
                continue
            a, b = info["data_offsets"]
            f.seek(base + a)
            arr = np.fromfile(f, dtype=np.float32, count=(b - a) // 4).reshape(info["shape"])
            total += arr.size
    return total, "fp32 arrays read from model.safetensors (azr.Model not in this tree)"


def _time(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition of each (under a minute)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--model", default=agguf.DEFAULT_MODEL_NAME, help="short name or .gguf path")
    args = ap.parse_args(argv)
    reps = 1 if args.quick else 3

    gguf_path = agguf.resolve_gguf(args.model)
    print(f"model file: {gguf_path} ({gguf_path.stat().st_size / 1e6:.1f} MB)")
    results = []
    method = ""
    tmp_root = Path(tempfile.mkdtemp(prefix="azr-bench-load-"))
    try:
        def first() -> None:
            nonlocal method
            cache = Path(tempfile.mkdtemp(dir=tmp_root))
            d = agguf.ensure_hf_dir(gguf_path, cache_dir=cache, progress=False)
            _, method = _load_weights(d)
            shutil.rmtree(cache)

        t_first = _time(first, reps)
        warm_cache = tmp_root / "warm"
        agguf.ensure_hf_dir(gguf_path, cache_dir=warm_cache, progress=False)

        def cached() -> None:
            d = agguf.ensure_hf_dir(gguf_path, cache_dir=warm_cache, progress=False)
            _load_weights(d)

        t_cached = _time(cached, reps)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    # baseline: transformers loads the GGUF itself
    t_tf = float("nan")
    try:
        import torch
        from transformers import AutoModelForCausalLM

        def tf_load() -> None:
            AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)

        t_tf = _time(tf_load, 1)
    except ImportError as exc:
        print(f"baseline skipped: {exc}")
    for name, ours in (("load_first_conversion", t_first), ("load_cached", t_cached)):
        results.append({"name": name, "unit": "s", "ours": round(ours, 3), "baseline": round(t_tf, 3),
                        "baseline_name": "transformers from_pretrained(gguf_file=..., fp32)",
                        "ratio": round(t_tf / ours, 3) if ours > 0 else None})

    # dequantisation alone
    try:
        import gguf
        from gguf import quants

        ref = gguf.GGUFReader(str(gguf_path))

        def ours_deq() -> None:
            with agguf.GGUFFile(str(gguf_path)) as f:
                for t in f.tensors():
                    f.dequantize(t["name"])

        def ref_deq() -> None:
            for t in ref.tensors:
                quants.dequantize(t.data, t.tensor_type)

        t_ours = _time(ours_deq, reps)
        t_ref = _time(ref_deq, 1)
        results.append({"name": "dequantize_all_tensors", "unit": "s", "ours": round(t_ours, 4),
                        "baseline": round(t_ref, 4), "baseline_name": "gguf.quants.dequantize (NumPy)",
                        "ratio": round(t_ref / t_ours, 3)})
    except ImportError as exc:
        print(f"dequantisation baseline skipped: {exc}")

    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"\n{'benchmark':28s} {'azr':>10s} {'baseline':>10s} {'ratio':>7s}   (OMP_NUM_THREADS={threads})")
    for r in results:
        print(f"{r['name']:28s} {r['ours']:>9.3f}s {r['baseline']:>9.3f}s {r['ratio']:>7}   vs {r['baseline_name']}")
    if method:
        print(f"azr weights loaded as: {method}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
