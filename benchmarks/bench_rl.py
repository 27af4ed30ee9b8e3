"""Benchmark the rl layer: Task-Relative REINFORCE++ advantages and the
clipped policy loss with its gradient weights, azr's C core against
(a) a vectorised NumPy implementation and (b) torch autograd of the same
surrogate (the usual way to get these weights), on a self-play-sized batch.

    python benchmarks/bench_rl.py [--quick] [--json PATH]

ratio = baseline time / azr time (> 1: azr is faster).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def numpy_advantages(r, g, n_groups, eps):
    adv = np.zeros_like(r)
    for k in range(n_groups):
        m = g == k
        if m.sum() == 0:
            continue
        x = r[m].astype(np.float64)
        var = x.var(ddof=1) if x.size > 1 else 0.0
        adv[m] = (x - x.mean()) / np.sqrt(var + eps)
    return adv


def numpy_weights(logp, old, adv, mask, lo, hi):
    ratio = np.exp(logp - old)
    a = adv[:, None]
    un, cl = ratio * a, np.clip(ratio, 1 - lo, 1 + hi) * a
    active = ~(cl < un)
    c = mask / mask.sum()
    return (c * ratio * a * active).astype(np.float32)


def torch_weights(logp, old, adv, mask, lo, hi):
    import torch

    lp = torch.from_numpy(logp).requires_grad_(True)
    ratio = torch.exp(lp - torch.from_numpy(old))
    a = torch.from_numpy(adv)[:, None]
    m = torch.from_numpy(mask.astype(np.float32))
    loss = (-(torch.minimum(ratio * a, torch.clamp(ratio, 1 - lo, 1 + hi) * a)) * m).sum() / m.sum()
    loss.backward()
    return (-lp.grad).numpy()


def timeit(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from azr import rl

    # paper: 6 groups x 64 sequences; responses up to 8k tokens
    B, T, reps = (384, 512, 5) if args.quick else (384, 4096, 5)
    rng = np.random.default_rng(0)
    old = rng.normal(-2, 1, (B, T)).astype(np.float32)
    logp = (old + rng.normal(0, 0.2, (B, T))).astype(np.float32)
    lens = rng.integers(T // 4, T + 1, B)
    mask = (np.arange(T)[None, :] < lens[:, None]).astype(np.uint8)
    r = rng.choice([1.0, -0.5, -1.0, 0.25], B).astype(np.float32)
    g = np.repeat(np.arange(6), B // 6).astype(np.int32)
    adv_c, _, _ = rl.advantages(r, g, n_groups=6)
    np.testing.assert_allclose(adv_c, numpy_advantages(r, g, 6, 1e-6), rtol=1e-5, atol=1e-6)
    w_c, _ = rl.policy_loss(logp, old, adv_c, mask)
    np.testing.assert_allclose(w_c, numpy_weights(logp, old, adv_c, mask, 0.2, 0.2), rtol=1e-4, atol=1e-10)

    results = []
    t_ours = timeit(lambda: rl.advantages(r, g, n_groups=6), 50)
    t_np = timeit(lambda: numpy_advantages(r, g, 6, 1e-6), 50)
    results.append(dict(name=f"advantages B={B}", unit="s", ours=t_ours, baseline=t_np,
                        baseline_name="numpy", ratio=t_np / t_ours))
    t_ours = timeit(lambda: rl.policy_loss(logp, old, adv_c, mask), reps)
    t_np = timeit(lambda: numpy_weights(logp, old, adv_c, mask, 0.2, 0.2), reps)
    results.append(dict(name=f"policy_loss weights B={B} T={T}", unit="s", ours=t_ours, baseline=t_np,
                        baseline_name="numpy", ratio=t_np / t_ours))
    try:
        t_t = timeit(lambda: torch_weights(logp, old, adv_c, mask, 0.2, 0.2), reps)
        results.append(dict(name=f"policy_loss weights B={B} T={T}", unit="s", ours=t_ours, baseline=t_t,
                            baseline_name="torch autograd (CPU)", ratio=t_t / t_ours))
    except ImportError:
        pass
    for x in results:
        print(f"{x['name']:<40} azr {x['ours'] * 1e3:9.3f} ms   {x['baseline_name']:<22} "
              f"{x['baseline'] * 1e3:9.3f} ms   ratio {x['ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
