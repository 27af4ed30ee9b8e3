"""Throughput of azr.Executor against baselines built like the paper's executor.

Ours: azr.Executor (C supervisor, fork per run from pre-warmed zygotes, every
isolation layer the machine allows), `run` on a batch.

Baselines, measured in the same process on the same machine:
  * per-call pool ("paper"): what AZR's PythonExecutor does for each call of
    `apply`: a fresh process pool (multiprocessing, fork) is created for the
    call, the program runs with a per-call timeout, the result comes back
    pickled, the pool is torn down. Two calls run concurrently (2 threads) to
    use both cores.
  * persistent pool: two long-lived unisolated worker processes fed through
    pipes, per-call timeouts (a worker that overruns is killed and
    replaced), pickled results. State leaks between programs here; it is the
    fastest possible unsandboxed design and is reported for honesty.

The trivial workload runs in rounds (3 with --quick, else 5), ours and the
per-call baseline alternating, and reports the medians: this machine's speed
drifts by tens of percent over minutes, and alternating gives both the same
conditions.

Workloads: trivial programs (`return x + 1`), and a realistic mix: the seed
programs of the paper (../shared/data/azr_seeds/*_seed_io.jsonl, fields
snippet/input/output).

Usage: python benchmarks/bench_executor.py [--quick] [--json PATH] [--workers 2]
"""
from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from multiprocessing.connection import wait as mp_wait
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
try:  # the installed package (pip install .), else the checkout's in-place build
    import azr  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

from azr.executor import Executor  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None


# ------------------------------------------------------------------ baselines

def _exec_call(code: str, inp: str):
    import contextlib
    import io

    ns: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the paper's executor captures stdout too
        exec(code, ns)
        return eval("f(" + inp + ")", ns)


def baseline_per_call_pool(programs, inputs, timeout: float, concurrency: int = 2) -> list:
    """A process pool created and destroyed per call, pickled results."""
    ctx = mp.get_context("fork")
    out = [None] * len(programs)
    idx = iter(range(len(programs)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            with ctx.Pool(1) as pool:
                r = pool.apply_async(_exec_call, (programs[i], inputs[i]))
                try:
                    out[i] = ("ok", r.get(timeout=timeout))
                except mp.TimeoutError:
                    out[i] = ("timeout", None)
                except BaseException as exc:  # noqa: BLE001
                    out[i] = ("error", repr(exc))

    ts = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def _pool_worker(conn):
    while True:
        try:
            code, inp = conn.recv()
        except EOFError:
            return
        try:
            res = ("ok", _exec_call(code, inp))
            conn.send(res)  # pickled
        except BaseException as exc:  # noqa: BLE001
            try:
                conn.send(("error", repr(exc)))
            except BaseException:  # noqa: BLE001
                conn.send(("error", "unpicklable"))


class PersistentPool:
    """Long-lived workers with per-call timeouts and pickled results."""

    def __init__(self, workers: int = 2):
        self.ctx = mp.get_context("fork")
        self.procs = [self._spawn() for _ in range(workers)]

    def _spawn(self):
        a, b = self.ctx.Pipe()
        p = self.ctx.Process(target=_pool_worker, args=(b,), daemon=True)
        p.start()
        b.close()
        return [p, a]

    def run(self, programs, inputs, timeout: float) -> list:
        out = [None] * len(programs)
        queue = list(range(len(programs)))[::-1]
        busy = {}  # slot -> (i, deadline)
        while queue or busy:
            for s in range(len(self.procs)):
                if s not in busy and queue:
                    i = queue.pop()
                    self.procs[s][1].send((programs[i], inputs[i]))
                    busy[s] = (i, time.monotonic() + timeout)
            conns = {self.procs[s][1]: s for s in busy}
            soon = min(d for _, d in busy.values())
            ready = mp_wait(list(conns), max(0.0, soon - time.monotonic()))
            for c in ready:
                s = conns[c]
                i, _ = busy.pop(s)
                try:
                    out[i] = c.recv()
                except EOFError:
                    out[i] = ("error", "worker died")
                    self._replace(s)
            now = time.monotonic()
            for s, (i, d) in list(busy.items()):
                if now >= d:
                    out[i] = ("timeout", None)
                    busy.pop(s)
                    self._replace(s)
        return out

    def _replace(self, s):
        p, c = self.procs[s]
        p.kill()
        p.join()
        c.close()
        self.procs[s] = self._spawn()

    def close(self):
        for p, c in self.procs:
            c.close()
            p.kill()
            p.join()


# ------------------------------------------------------------------ workloads

def load_seeds(limit: int) -> list[tuple[str, str, str]]:
    root = Path(os.environ.get("AZR_SHARED_DATA", REPO.parent / "shared" / "data")) / "azr_seeds"
    seen, out = set(), []
    for path in sorted(glob.glob(str(root / "*_seed_io.jsonl"))):
        if "code_f" in path:
            continue
        with open(path) as fh:
            for line in fh:
                d = json.loads(line)
                key = (d["snippet"], d["input"])
                if key in seen:
                    continue
                seen.add(key)
                out.append((d["snippet"], d["input"], d["output"]))
    return out[:limit]


def _zygote_cpu(ex) -> float:
    """CPU seconds used so far by the zygotes and the runs they reaped."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in ex._worker_pids():
        try:
            with open(f"/proc/{pid}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in f[11:15]) / tck
        except OSError:
            pass
    return total


def _own_and_children_cpu() -> float:
    """CPU seconds of this process (all threads) and of its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, *args):
    t = time.perf_counter()
    r = fn(*args)
    return r, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    ap.add_argument("--json", metavar="PATH", help="write results as JSON")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.json:
        args.json = os.path.abspath(args.json)
    # The baselines run programs unsandboxed: give them a throw-away cwd.
    import shutil
    import tempfile

    work = tempfile.mkdtemp(prefix="azr-bench-")
    os.chdir(work)
    try:
        _main(args)
    finally:
        os.chdir("/")
        shutil.rmtree(work, ignore_errors=True)


def _main(args) -> None:
    n_triv = 1000 if args.quick else 5000
    n_seed = 300 if args.quick else 2000
    n_base_paper = 60 if args.quick else 300
    timeout = 5.0

    results = []
    triv_p = ["def f(x):\n    return x + 1"] * n_triv
    triv_i = [str(i) for i in range(n_triv)]
    seeds = load_seeds(n_seed)

    rounds = 3 if args.quick else 5
    ncpu = len(os.sched_getaffinity(0))
    ours_r, cpu_r, paper_r, paper_cpu_r = [], [], [], []
    with Executor(workers=args.workers, timeout=timeout, memory_mb=512) as ex:
        layers = [k for k, v in ex.isolation.items() if v]
        off = [k for k, v in ex.isolation.items() if not v]
        print(f"isolation layers on: {', '.join(layers)}")
        print(f"isolation layers off: {', '.join(off) or 'none'}")
        ex.run(triv_p[:50], triv_i[:50])  # warm-up
        # Trivial programs: ours and the paper-like baseline in alternating
        # rounds, so a drift of the machine's speed (this one's varies by
        # tens of percent over minutes) reaches both; medians are reported.
        for k in range(rounds):
            z0, s0 = _zygote_cpu(ex), time.process_time()
            r, dt = timed(ex.run, triv_p, triv_i)
            cpu_r.append((_zygote_cpu(ex) - z0 + time.process_time() - s0) / n_triv)
            assert all(x.status == "ok" for x in r), [x.message for x in r if x.status != "ok"][:3]
            ours_r.append(n_triv / dt)
            c0 = _own_and_children_cpu()
            _, dt = timed(baseline_per_call_pool, triv_p[:n_base_paper], triv_i[:n_base_paper], timeout)
            paper_cpu_r.append((_own_and_children_cpu() - c0) / n_base_paper)
            paper_r.append(n_base_paper / dt)
            print(f"trivial round {k + 1}/{rounds}: ours {ours_r[-1]:.0f} runs/s ({cpu_r[-1] * 1e3:.2f} ms CPU "
                  f"per run over all processes: supervisor, zygotes, runs), paper-like {paper_r[-1]:.0f} runs/s "
                  f"({paper_cpu_r[-1] * 1e3:.2f} ms CPU), ratio {ours_r[-1] / paper_r[-1]:.2f}; load average "
                  f"{os.getloadavg()[0]:.1f} on {ncpu} CPUs", flush=True)
        ours_seed = None
        if seeds:
            r, dt = timed(ex.run, [s[0] for s in seeds], [s[1] for s in seeds])
            ours_seed = len(seeds) / dt
            agree = sum(1 for x, s in zip(r, seeds) if x.status == "ok" and x.output == s[2])
            statuses = {}
            for x in r:
                statuses[x.status] = statuses.get(x.status, 0) + 1
            print(f"seed mix: {len(seeds)} programs, statuses {statuses}, "
                  f"{agree} outputs identical to the recorded text")
            r, dt = timed(ex.validate, [s[0] for s in seeds], [s[1] for s in seeds])
            ours_validate = len(seeds) / dt
    ours_triv, paper_triv = statistics.median(ours_r), statistics.median(paper_r)
    cpu, paper_cpu = statistics.median(cpu_r), statistics.median(paper_cpu_r)
    print(f"trivial, median of {rounds} rounds: {cpu * 1e3:.2f} ms CPU per run over all processes (an idle "
          f"machine with {ncpu} CPUs would allow about {ncpu / cpu:.0f} runs/s); baseline {paper_cpu * 1e3:.2f} "
          f"ms CPU per run")

    # Baselines.
    pool = PersistentPool(args.workers)
    try:
        pool.run(triv_p[:50], triv_i[:50], timeout)
        _, dt = timed(pool.run, triv_p, triv_i, timeout)
        persist_triv = n_triv / dt
        persist_seed = None
        if seeds:
            _, dt = timed(pool.run, [s[0] for s in seeds], [s[1] for s in seeds], timeout)
            persist_seed = len(seeds) / dt
    finally:
        pool.close()
    paper_seed = None
    if seeds:
        k = min(n_base_paper, len(seeds))
        _, dt = timed(baseline_per_call_pool, [s[0] for s in seeds[:k]], [s[1] for s in seeds[:k]], timeout)
        paper_seed = k / dt

    def add(name, ours, base, base_name):
        ratio = ours / base if base else None
        results.append({"name": name, "unit": "runs/s", "ours": round(ours, 1), "baseline": round(base, 1),
                        "baseline_name": base_name, "ratio": round(ratio, 3) if ratio else None})
        print(f"{name:40s} ours {ours:9.1f} runs/s   {base_name:38s} {base:9.1f} runs/s   ratio {ratio:6.2f}")

    add("trivial_runs", ours_triv, paper_triv, "per-call process pool (paper-like)")
    # CPU per run is what a loaded machine cannot hide: both figures count
    # every process involved (ours: supervisor, zygotes and their runs).
    ours_cpu = cpu
    results.append({"name": "trivial_cpu_per_run", "unit": "ms CPU/run", "ours": round(ours_cpu * 1e3, 3),
                    "baseline": round(paper_cpu * 1e3, 3), "baseline_name": "per-call process pool (paper-like)",
                    "ratio": round(paper_cpu / ours_cpu, 3)})
    print(f"{'trivial_cpu_per_run':40s} ours {ours_cpu * 1e3:9.3f} ms CPU  {'per-call process pool (paper-like)':38s} "
          f"{paper_cpu * 1e3:9.3f} ms CPU   ratio {paper_cpu / ours_cpu:6.2f}")
    add("trivial_runs_vs_persistent", ours_triv, persist_triv, "persistent unisolated pool")
    if seeds:
        add("seed_mix_runs", ours_seed, paper_seed, "per-call process pool (paper-like)")
        add("seed_mix_runs_vs_persistent", ours_seed, persist_seed, "persistent unisolated pool")
        add("seed_mix_validate_vs_persistent", ours_validate, persist_seed / 2,
            "persistent pool, 2 runs per program")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
