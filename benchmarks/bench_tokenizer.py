"""Encode throughput of azr.Tokenizer vs Hugging Face `tokenizers` (same run, same machine).

Corpus: the .py files of this Python's standard library (site-packages excluded),
taken in sorted order up to --mb megabytes of UTF-8. Tokenizer: Qwen2.5 from
../shared/data (or --tokenizer DIR). Figures (MB/s of UTF-8 input, best of --repeat):
  single:  one text per call, one thread (azr: encode; HF: encode(...).ids)
  batched: all texts in one call, all threads (azr: encode_batch; HF: encode_batch)
Both produce Python lists of ids, and the ids are checked to be equal.

  python benchmarks/bench_tokenizer.py [--quick] [--json PATH] [--mb 8] [--threads N]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
try:  # the installed package (pip install .), else the checkout's in-place build
    import azr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))


def corpus(limit_bytes: int) -> list[str]:
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(f for f in glob.glob(os.path.join(root, "**", "*.py"), recursive=True)
                   if "site-packages" not in f and "dist-packages" not in f)
    out, total = [], 0
    for f in files:
        with open(f, "rb") as fh:
            t = fh.read().decode("utf-8", "replace")
        out.append(t)
        total += len(t.encode("utf-8"))
        if total >= limit_bytes:
            break
    return out


def best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 MB corpus, 2 repeats (well under a minute)")
    ap.add_argument("--json", type=str, default=None, help="write results as a JSON list to this path")
    ap.add_argument("--mb", type=float, default=8.0, help="corpus size in MB of UTF-8 (default 8)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="threads for the batched run (0: all CPUs)")
    ap.add_argument("--tokenizer", type=str, default=None, help="tokenizer dir (default ../shared/data Qwen2.5)")
    args = ap.parse_args()
    if args.quick:
        args.mb, args.repeat = 1.0, 2

    import tokenizers

    import azr
    from azr.tokenizer import Tokenizer

    tdir = Path(args.tokenizer) if args.tokenizer else Path(
        os.environ.get("AZR_SHARED_DATA", REPO.parent / "shared" / "data")) / "tokenizers" / "qwen2.5"
    if not (tdir / "tokenizer.json").is_file():
        sys.exit(f"tokenizer.json not found in {tdir}: pass --tokenizer DIR or set AZR_SHARED_DATA")
    ours = Tokenizer.from_pretrained(tdir)
    hf = tokenizers.Tokenizer.from_file(str(tdir / "tokenizer.json"))
    hf.encode_special_tokens = True   # the same meaning as azr's default allow_special=False

    texts = corpus(int(args.mb * 1e6))
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    mb = nbytes / 1e6
    threads = args.threads or os.cpu_count() or 1
    print(f"corpus: {len(texts)} stdlib files, {mb:.2f} MB; tokenizer {tdir}; batched threads {threads}")

    # correctness first (also warms both caches)
    a = ours.encode_batch(texts)
    b = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    if a != b:
        sys.exit("ids differ between azr and tokenizers: benchmark aborted")

    azr.set_num_threads(1)
    t_ours_single = best_time(lambda: [ours.encode(t) for t in texts], args.repeat)
    t_hf_single = best_time(lambda: [hf.encode(t, add_special_tokens=False).ids for t in texts], args.repeat)
    azr.set_num_threads(threads)
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    t_ours_batch = best_time(lambda: ours.encode_batch(texts), args.repeat)
    t_hf_batch = best_time(lambda: [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)], args.repeat)
    azr.set_num_threads(0)

    rows = []
    for name, to, th in [("encode_single_thread", t_ours_single, t_hf_single),
                         ("encode_batch", t_ours_batch, t_hf_batch)]:
        ours_mbs, hf_mbs = mb / to, mb / th
        rows.append({"name": f"tokenizer_qwen2.5_{name}", "unit": "MB/s", "ours": round(ours_mbs, 3),
                     "baseline": round(hf_mbs, 3), "baseline_name": f"HF tokenizers {tokenizers.__version__}",
                     "ratio": round(ours_mbs / hf_mbs, 3)})
        print(f"{name:24s} azr {ours_mbs:8.2f} MB/s   tokenizers {hf_mbs:8.2f} MB/s   ratio {ours_mbs / hf_mbs:6.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
