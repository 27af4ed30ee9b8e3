"""Does self-play make the model better? Evaluate, train for M minutes, evaluate again.

    python benchmarks/bench_learning.py --minutes 120 [--preset cpu] [--set FIELD=VALUE ...]
        [--report heldout-test,cruxeval-o-test] [--out runs/learning] [--json PATH] [--quick]

1. Builds a `Trainer` from the preset (default ``cpu``) and the overrides;
   the run's own evaluation during training (``eval_every``, ``eval_tasks``)
   draws the curves.
2. Answers the report sets (`azr.heldout.EVAL_SETS`, greedy, with the run's
   solver prompts and scaffold) with the base model.
3. Trains until ``--minutes`` of training wall time have passed (seeding,
   steps and checkpoints count; evaluations do not) or ``--steps`` steps.
4. Answers the same sets again and compares task by task: the change in
   accuracy with a 95 % paired-bootstrap interval and the exact McNemar test.
   With ``keep_best = true`` (``--set keep_best=true``) "again" means with
   the weights that scored best on the run's first ``eval_tasks`` set (a
   dev set) during training, the base model's included: selection on dev,
   report on test. ``selected_step`` in each entry says which step's weights.

Entries (``--json``): ``{"name", "unit", "ours" (after), "baseline" (before),
"baseline_name": "base model", "ratio" (after / before, null when before is
0), "delta", "ci95", "p_value", "n"}``, named ``heldout_accuracy`` (the first
``heldout-*`` report set), ``cruxeval_o_test_accuracy``, and
``<set>_accuracy`` for the others. The per-task results go to
``<out>/learning.json``.

``--before RUN`` reuses the base model's answers from an earlier run's
``learning.json`` instead of answering the report sets again (about ten
minutes on two cores): the base model answers greedily, so the figures are
the same when everything that shapes an answer is. The run's ``config.toml``
must agree on those fields (model, tokenizer, prompt style, templates,
scaffold, solver answer length, data folder) and its ``before`` must hold
every report set with the same tasks and limit; otherwise the script
refuses.

``--quick`` runs the same path on the TinyStories-656K model from
``../shared/data`` (or ``$AZR_SHARED_DATA``) for a few seconds, with small
sets: a check that the path works, not a learning result.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    """The CPU model and its bf16/AMX/AVX-512 flags, from /proc/cpuinfo."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    keep = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({os.cpu_count()} CPUs; {' '.join(keep) or 'no AVX2'})"


def shared_data() -> Path | None:
    env = os.environ.get("AZR_SHARED_DATA")
    d = Path(env) if env else REPO.parent / "shared" / "data"
    return d if d.is_dir() else None


def entry_name(set_name: str, first_heldout: str | None) -> str:
    if set_name == first_heldout:
        return "heldout_accuracy"
    return set_name.replace("-", "_") + "_accuracy"


# Config fields that shape the base model's greedy answers to a report set.
ANSWER_FIELDS = ("model", "tokenizer", "prompt_style", "templates", "scaffold", "max_new_tokens_solve",
                 "eval_data_dir")


def reuse_before(run: Path, cfg, report: list[str], limit: int) -> dict:
    """The ``before`` results of an earlier run, checked for reuse (ValueError says why not)."""
    import tomllib
    try:
        prev = json.loads((run / "learning.json").read_text(encoding="utf-8"))
        with open(run / "config.toml", "rb") as f:
            old = tomllib.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read its learning.json and config.toml ({e})") from None
    diff = [k for k in ANSWER_FIELDS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise ValueError("its config differs in what shapes the answers: " +
                         ", ".join(f"{k} {old.get(k)!r} != {getattr(cfg, k)!r}" for k in diff))
    if prev.get("report_limit", 0) != limit:
        raise ValueError(f"it answered the first {prev.get('report_limit', 0)} tasks per set, this run {limit}")
    before = prev.get("before")
    missing = [s for s in report if not isinstance(before, dict) or s not in before]
    if missing:
        raise ValueError(f"it has no base-model answers for {missing}")
    return {s: before[s] for s in report}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=120.0, help="training wall time (evaluations excluded)")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps as well (0 = no limit)")
    ap.add_argument("--preset", default="cpu", help="TrainerConfig preset (default cpu)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override; repeatable")
    ap.add_argument("--report", default="heldout-test,cruxeval-o-test",
                    help="comma-separated sets compared before and after (azr.heldout.EVAL_SETS)")
    ap.add_argument("--report-limit", type=int, default=0, help="first N tasks of each report set (0 = all)")
    ap.add_argument("--out", default="runs/bench_learning", help="run directory")
    ap.add_argument("--data-dir", default=None, help="benchmark folder (default: $AZR_DATA_DIR or the cache)")
    ap.add_argument("--threads", type=int, default=0, help="kernel threads (0 = azr's default)")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the entries to PATH")
    ap.add_argument("--quick", action="store_true", help="seconds on a tiny model: checks the path only")
    ap.add_argument("--before", default=None, metavar="RUN",
                    help="reuse the base model's answers from RUN/learning.json (same answer-shaping config)")
    args = ap.parse_args(argv)

    import azr
    from azr.heldout import EVAL_SETS, paired_compare

    if args.threads:
        azr.set_num_threads(args.threads)
    report = [s for s in (x.strip() for x in args.report.split(",")) if s]
    bad = [s for s in report if s not in EVAL_SETS]
    if bad or not report:
        ap.error(f"--report: {bad or 'nothing'} not among {list(EVAL_SETS)}")
    overrides = list(args.set)
    data_dir = args.data_dir
    if args.quick:
        sd = shared_data()
        if sd is None:
            print("bench_learning --quick: needs ../shared/data (or $AZR_SHARED_DATA) for the tiny model",
                  file=sys.stderr)
            return 2
        data_dir = data_dir or str(sd / "benchmarks")
        overrides = [f"model={sd / 'models' / 'tinystories-656k'}", "batch_size=2", "n_learnability=2",
                     "k_references=1", "max_new_tokens_propose=24", "max_new_tokens_solve=8", "eval_every=1",
                     "eval_limit=8", "seed_min=0", "seed_rounds=0", "save_every=0", "log_samples=true",
                     "max_prompt_tokens=0", "executor_workers=1", "eval_tasks=[\"heldout-dev\"]"] + overrides
        args.minutes = min(args.minutes, 0.1)
        args.report_limit = args.report_limit or 12
    if data_dir:
        overrides.append(f"eval_data_dir={data_dir}")
    cfg = azr.TrainerConfig.preset(args.preset, out=args.out)
    cfg.override(overrides)
    cfg.set("max_minutes", float(args.minutes))
    if args.steps:
        cfg.set("steps", int(args.steps))
    elif not any(o.startswith("steps=") for o in overrides):
        cfg.set("steps", 1_000_000)
    cfg.validate()
    out = Path(cfg.out)
    if (out / "metrics.jsonl").exists():
        print(f"bench_learning: {out} already holds a run; pass another --out", file=sys.stderr)
        return 2

    reused = None
    if args.before:
        try:
            reused = reuse_before(Path(args.before), cfg, report, args.report_limit)
        except ValueError as e:
            print(f"bench_learning: --before {args.before}: {e}", file=sys.stderr)
            return 2

    print(f"machine: {cpu_name()}, azr threads {azr.get_num_threads()}")
    print(f"config: preset {args.preset}, overrides {overrides}")
    t_all = time.perf_counter()
    with azr.Trainer(cfg) as tr:
        t = time.perf_counter()
        before = reused if reused is not None else tr.evaluate(report, limit=args.report_limit)
        t_before = time.perf_counter() - t
        tr.train()
        chosen = tr.restore_best() if cfg.keep_best else None
        if chosen is not None:
            print(f"keep_best: evaluating the weights of step {chosen['step']} "
                  f"({chosen['set']} accuracy {chosen['accuracy']:.3f}), not those of the last step")
        t = time.perf_counter()
        after = tr.evaluate(report, limit=args.report_limit)
        t_after = time.perf_counter() - t
        steps, train_s = tr.step_count, tr.train_seconds

    first_heldout = next((s for s in report if s.startswith("heldout")), None)
    entries, table = [], []
    for name in report:
        b, a = before[name], after[name]
        if b["ids"] != a["ids"]:
            raise RuntimeError(f"{name}: the before and after evaluations saw different tasks")
        pr = paired_compare(b["correct"], a["correct"])
        entries.append({"name": entry_name(name, first_heldout), "unit": "accuracy", "ours": pr.after,
                        "baseline": pr.before, "baseline_name": "base model",
                        "ratio": (pr.after / pr.before) if pr.before > 0 else None, "delta": pr.delta,
                        "ci95": list(pr.ci95), "p_value": pr.p_value, "n": pr.n, "set": name,
                        "steps": steps, "train_minutes": round(train_s / 60.0, 2),
                        "selected_step": chosen["step"] if chosen else steps})
        table.append((name, pr))
    res = {"machine": cpu_name(), "preset": args.preset, "overrides": overrides, "steps": steps,
           "selected": chosen, "before_from": str(Path(args.before).resolve()) if reused is not None else None,
           "report_limit": args.report_limit,
           "train_seconds": train_s, "eval_seconds": {"before": t_before, "after": t_after},
           "wall_seconds": time.perf_counter() - t_all, "entries": entries,
           "before": before, "after": after}
    (out / "learning.json").write_text(json.dumps(res), encoding="utf-8")

    print(f"\ntrained {steps} steps in {train_s / 60:.1f} min (evaluations {t_before / 60:.1f} + "
          f"{t_after / 60:.1f} min)")
    print(f"{'set':<18} {'n':>5} {'before':>8} {'after':>8} {'delta':>8} {'95% CI':>18} {'McNemar p':>10}")
    for name, pr in table:
        print(f"{name:<18} {pr.n:>5} {pr.before:>8.3f} {pr.after:>8.3f} {pr.delta:>+8.3f} "
              f"[{pr.ci95[0]:+.3f}, {pr.ci95[1]:+.3f}] {pr.p_value:>10.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
