"""Reading a run directory and drawing its curves.

Owns: turning ``metrics.jsonl`` and ``evals.jsonl`` of a run directory into
per-step series (:func:`load_run`) and the standard figure of a self-play
run (:func:`plot_run`): reward, valid rate, solve rate and format errors per
(task type, role), held-out accuracy, loss and gradient norm, learning rate,
tokens/s and seconds per phase, buffer sizes over steps -- of one run, or of
several overlaid (``azr plot RUN [RUN ...]``).

Must not: change a run directory, or need matplotlib for anything but
drawing (``pip install "azr[plot]"`` installs it; :func:`load_run` works
without it).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = ("deduction", "abduction", "induction")
ROLES = ("propose", "solve")


@dataclass
class RunData:
    """The series of one run. ``steps`` are the training steps logged;
    ``tasks[(task, role)][name]`` holds one value per step (None where the
    step had none) for name in ``mean_reward``, ``valid_rate``,
    ``solve_acc``, ``format_error_rate``, ``count``; ``buffers[kind]`` the
    buffer sizes; ``evals[set]`` a list of ``(step, accuracy)`` (step 0 is
    the model before training); ``scalars[name]`` per-step loss, grad_norm,
    entropy, seconds per step (and per phase: ``seconds_generate``,
    ``seconds_execute``, ``seconds_update``), trained tokens, lr,
    tokens_per_s, prefix_reuse (the share of prompt tokens the rollout
    engine's prefix cache supplied)."""

    run_dir: Path
    steps: list[int] = field(default_factory=list)
    tasks: dict[tuple[str, str], dict[str, list[Any]]] = field(default_factory=dict)
    buffers: dict[str, list[int]] = field(default_factory=dict)
    evals: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    scalars: dict[str, list[Any]] = field(default_factory=dict)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    if not path.is_file():
        return out
    for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{ln}: not valid JSON ({e.msg})") from None
        if isinstance(rec, dict):
            out.append(rec)
    return out


def load_run(run_dir: str | Path) -> RunData:
    """Read ``run_dir``'s metrics.jsonl (required) into a :class:`RunData`.
    Raises FileNotFoundError naming the file when it is missing."""
    d = Path(run_dir)
    mpath = d / "metrics.jsonl"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath} does not exist: is {d} a run directory (azr train --out)?")
    data = RunData(run_dir=d)
    names = ("mean_reward", "valid_rate", "solve_acc", "format_error_rate", "count")
    for k in TASKS:
        for r in ROLES:
            data.tasks[(k, r)] = {n: [] for n in names}
    for k in TASKS + ("seed",):
        data.buffers[k] = []
    phases = ("generate", "execute", "update")
    for n in ("loss", "grad_norm", "entropy", "seconds", "trained_tokens", "lr", "tokens_per_s",
              "prefix_reuse") + tuple(f"seconds_{ph}" for ph in phases):
        data.scalars[n] = []
    for rec in _read_jsonl(mpath):
        step = rec.get("step")
        if not isinstance(step, int):
            continue
        for name, v in (rec.get("eval") or {}).items():
            acc = v.get("accuracy") if isinstance(v, dict) else None
            if isinstance(acc, (int, float)):
                data.evals.setdefault(name, []).append((step, float(acc)))
        if "tasks" not in rec:
            continue
        data.steps.append(step)
        for (k, r), series in data.tasks.items():
            m = rec["tasks"].get(k, {}).get(r, {})
            for n in names:
                series[n].append(m.get(n))
        for k in data.buffers:
            data.buffers[k].append(rec.get("buffer", {}).get(k))
        data.scalars["loss"].append(rec.get("loss"))
        data.scalars["grad_norm"].append(rec.get("grad_norm"))
        data.scalars["entropy"].append(rec.get("entropy"))
        data.scalars["seconds"].append(rec.get("time", {}).get("total"))
        data.scalars["trained_tokens"].append(rec.get("trained_tokens"))
        data.scalars["lr"].append(rec.get("lr"))
        data.scalars["tokens_per_s"].append(rec.get("tokens_per_s"))
        data.scalars["prefix_reuse"].append((rec.get("prefix_cache") or {}).get("reuse_rate"))
        for ph in phases:
            data.scalars[f"seconds_{ph}"].append(rec.get("time", {}).get(ph))
    for name in data.evals:
        data.evals[name].sort()
    return data


def smooth(values: list[Any], window: int) -> list[float]:
    """Trailing moving average over the last ``window`` values that are
    numbers (None and NaN skipped; NaN where the window holds none)."""
    out = []
    for i in range(len(values)):
        w = [v for v in values[max(0, i - window + 1):i + 1]
             if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
        out.append(sum(w) / len(w) if w else float("nan"))
    return out


def _numbers(ys: list[Any]) -> bool:
    return any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ys)


def plot_run(run_dir: str | Path | RunData | list, path: str | Path | None = None, window: int = 5,
             labels: list[str] | None = None) -> Any:
    """The standard figure of a run (nine panels): mean reward, valid rate and
    solve rate per (task type, role); format-error rate; held-out accuracy per
    evaluated set; loss and gradient norm; learning rate and generated
    tokens/s; seconds per step by phase; buffer sizes. Per-step series are smoothed
    over ``window`` steps. ``run_dir`` may be a list of runs: they are
    overlaid, one color per run (``labels`` names them; default: their
    directory names), the line style telling the role. Saved to ``path``
    when given (PNG, SVG, PDF by extension). Returns the matplotlib Figure."""
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plot_run needs matplotlib: pip install "azr[plot]" (or matplotlib)') from None
    runs = list(run_dir) if isinstance(run_dir, (list, tuple)) else [run_dir]
    if not runs:
        raise ValueError("plot_run: no run to draw")
    datas = [r if isinstance(r, RunData) else load_run(r) for r in runs]
    if labels is None:
        labels = [d.run_dir.name or str(d.run_dir) for d in datas]
    if len(labels) != len(datas):
        raise ValueError(f"plot_run: {len(labels)} labels for {len(datas)} runs")
    multi = len(datas) > 1
    palette = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["tab:blue"])
    run_color = {i: palette[i % len(palette)] for i in range(len(datas))}
    styles = {"propose": "--", "solve": "-"}
    colors = {"deduction": "tab:blue", "abduction": "tab:orange", "induction": "tab:green"}
    fig, axes = plt.subplots(3, 3, figsize=(16, 12), constrained_layout=True)
    task_panels = (("mean_reward", "mean reward"), ("valid_rate", "valid rate"),
                   ("solve_acc", "solve rate (propose: learnability rollouts)"),
                   ("format_error_rate", "format-error rate"))
    for ax, (metric, title) in zip(list(axes[0]) + [axes[1][0]], task_panels):
        for i, (data, lab) in enumerate(zip(datas, labels)):
            for (k, r), series in data.tasks.items():
                ys = series[metric]
                if not _numbers(ys):
                    continue
                name = f"{k} {r}" if not multi else f"{lab}: {k} {r}"
                c = run_color[i] if multi else colors[k]
                ax.plot(data.steps, smooth(ys, window), styles[r], color=c, label=name,
                        alpha=1.0 if not multi or k == "deduction" else 0.6)
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=6)
    ax = axes[1][1]
    for i, (data, lab) in enumerate(zip(datas, labels)):
        for name, pts in data.evals.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{lab}: {name}" if multi else name,
                    color=run_color[i] if multi else None)
    ax.set_title("held-out accuracy (greedy; step 0 = base model)")
    ax.set_xlabel("step")
    if any(d.evals for d in datas):
        ax.legend(fontsize=7)
    ax = axes[1][2]
    for i, (data, lab) in enumerate(zip(datas, labels)):
        c = run_color[i] if multi else "tab:red"
        if _numbers(data.scalars["loss"]):
            ax.plot(data.steps, smooth(data.scalars["loss"], window), "-", color=c,
                    label=f"{lab}: loss" if multi else "loss")
        if _numbers(data.scalars["grad_norm"]):
            ax.plot(data.steps, smooth(data.scalars["grad_norm"], window), ":", color=c,
                    label=f"{lab}: grad norm" if multi else "grad norm")
    ax.set_title("loss (solid) and gradient norm (dotted)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax = axes[2][0]
    tps = ax.twinx()
    for i, (data, lab) in enumerate(zip(datas, labels)):
        if _numbers(data.scalars["lr"]):
            ax.plot(data.steps, data.scalars["lr"], color=run_color[i], label=lab)
        if _numbers(data.scalars["tokens_per_s"]):
            tps.plot(data.steps, smooth(data.scalars["tokens_per_s"], window), ":", color=run_color[i])
    ax.set_title("learning rate (solid, left); generated tokens/s (dotted, right)")
    ax.set_xlabel("step")
    if multi:
        ax.legend(fontsize=7)
    ax = axes[2][1]
    for i, (data, lab) in enumerate(zip(datas, labels)):
        for ph, st in (("total", "-"), ("generate", "--"), ("update", ":"), ("execute", "-.")):
            ys = data.scalars["seconds" if ph == "total" else f"seconds_{ph}"]
            if _numbers(ys):
                ax.plot(data.steps, smooth(ys, window), st, color=run_color[i] if multi else None,
                        label=f"{lab}: {ph}" if multi else ph)
    ax.set_title("seconds per step, by phase")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax = axes[2][2]
    for i, (data, lab) in enumerate(zip(datas, labels)):
        for k, ys in data.buffers.items():
            if _numbers(ys):
                ax.plot(data.steps, ys, color=run_color[i] if multi else colors.get(k, "tab:gray"),
                        label=f"{lab}: {k}" if multi else k, alpha=1.0 if not multi or k == "deduction" else 0.6)
    ax.set_title("buffer sizes")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    fig.suptitle(" vs ".join(labels) if multi else str(datas[0].run_dir))
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def cli(argv: list[str] | None = None) -> int:
    """``azr plot RUN_DIR [RUN_DIR ...] [--out FILE] [--window N] [--labels A,B]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="azr plot", description="Draw one or several self-play runs' curves "
                                 "(several are overlaid, one color per run).")
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (azr train --out)")
    ap.add_argument("--out", help="image to write (.png, .svg, .pdf; default: RUN_DIR/curves.png for one run)")
    ap.add_argument("--window", type=int, default=5, help="steps per moving average (default 5)")
    ap.add_argument("--labels", help="comma-separated names of the runs in the legend (default: directory names)")
    args = ap.parse_args(argv)
    if args.window < 1:
        ap.error("--window must be >= 1")
    if args.out is None and len(args.run_dirs) > 1:
        ap.error("--out is needed when several runs are overlaid")
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(args.run_dirs):
        ap.error(f"--labels names {len(labels)} runs, {len(args.run_dirs)} were given")
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "curves.png"
    try:
        plot_run(args.run_dirs, out, window=args.window, labels=labels)
    except (FileNotFoundError, ValueError, ImportError, OSError) as e:
        print(f"azr plot: error: {e}", file=sys.stderr)
        return 2
    print(f"azr plot: wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m azr.plots``: the same as ``azr plot``."""
    return cli(argv)


cli_main = cli  # the name azr.cli calls a delegated subcommand by


__all__ = ["RunData", "cli", "load_run", "main", "plot_run", "smooth"]

if __name__ == "__main__":
    raise SystemExit(main())
