"""Matrix products of a training step: azr's bf16 path (vdpbf16ps on packed
panels, fp32 sums) against azr's fp32 path (OpenBLAS sgemm split over
OpenMP) and PyTorch's bf16 matmul (oneDNN), same shapes, same threads.

Shapes: those of a 4096-token micro-batch of SmolLM2-135M (gate/up, a
backward dY W, a weight gradient dY^T X, q/k/v, a wider one). Each product
is run 5 times per system, interleaved; the best GFLOP/s is kept.

Usage: python benchmarks/bench_gemm.py [--quick] [--json PATH] [--threads N]
--quick: 1024-row shapes, 2 repetitions (a few seconds).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

try:  # the installed package, else the checkout's in-place build
    import azr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import azr  # noqa: E402
from azr import _core  # noqa: E402


def shapes(quick: bool):
    n = 1024 if quick else 4096
    return [("gate_up", n, 3072, 576, False, True), ("backward_dx", n, 576, 1536, False, False),
            ("weight_grad", 576, 1536, n, True, False), ("qkv", n, 960, 576, False, True)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1024-row shapes, 2 repetitions")
    ap.add_argument("--json", help="write the entries to this JSON file")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: azr's)")
    args = ap.parse_args(argv)
    if args.threads:
        azr.set_num_threads(args.threads)
    threads = azr.get_num_threads()
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    info = azr.cpu_info()
    print(f"machine: {info['brand']}, {threads} threads, isa {info['isa']} (available {info['isa_available']})")
    if info["isa"] == "fp32":
        print("note: no bf16 unit in use here: the bf16 path rounds the inputs and runs the fp32 products")
    reps = 2 if args.quick else 5
    rng = np.random.default_rng(0)
    results = []
    for name, M, N, K, ta, tb in shapes(args.quick):
        A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        flops = 2.0 * M * N * K
        best = {"bf16": 0.0, "fp32": 0.0, "torch": 0.0}
        if torch is not None:
            ta_t = torch.from_numpy(A).bfloat16()
            tb_t = torch.from_numpy(B).bfloat16()
            oa = ta_t.T if ta else ta_t
            ob = tb_t.T if tb else tb_t
        for _ in range(reps):
            for p in ("bf16", "fp32"):
                t0 = time.perf_counter()
                _core.gemm(A, B, ta, tb, p)
                best[p] = max(best[p], flops / (time.perf_counter() - t0) / 1e9)
            if torch is not None:
                t0 = time.perf_counter()
                oa @ ob
                best["torch"] = max(best["torch"], flops / (time.perf_counter() - t0) / 1e9)
        line = (f"{name:12s} {M}x{N}x{K}: azr bf16 {best['bf16']:7.1f} GFLOP/s | azr fp32 {best['fp32']:7.1f} "
                f"(x{best['bf16'] / best['fp32']:.2f})")
        results.append(dict(name=f"gemm_{name}_bf16", unit="GFLOP/s", ours=best["bf16"], baseline=best["fp32"],
                            baseline_name="azr fp32 (OpenBLAS sgemm over OpenMP)", ratio=best["bf16"] / best["fp32"]))
        if torch is not None:
            line += f" | torch bf16 matmul {best['torch']:7.1f} (x{best['bf16'] / best['torch']:.2f})"
            results.append(dict(name=f"gemm_{name}_bf16", unit="GFLOP/s", ours=best["bf16"], baseline=best["torch"],
                                baseline_name=f"torch {torch.__version__} bf16 matmul (oneDNN)",
                                ratio=best["bf16"] / best["torch"]))
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
