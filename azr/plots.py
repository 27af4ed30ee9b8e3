"""Reading a run directory and drawing its curves.

Owns: turning ``metrics.jsonl`` and ``evals.jsonl`` of a run directory into
per-step series (:func:`load_run`) and the standard figure of a self-play
run (:func:`plot_run`): reward, valid rate and solve rate per (task type,
role), held-out accuracy and buffer sizes over steps.

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
    entropy, seconds per step, trained tokens."""

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
    for n in ("loss", "grad_norm", "entropy", "seconds", "trained_tokens"):
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


def plot_run(run_dir: str | Path | RunData, path: str | Path | None = None, window: int = 5) -> Any:
    """The standard figure of a run (six panels): mean reward, valid rate
    and solve rate per (task type, role), held-out accuracy per evaluated
    set, buffer sizes and seconds per step; per-step series are smoothed
    over ``window`` steps. Saved to ``path`` when given (PNG, SVG, PDF by
    extension). Returns the matplotlib Figure."""
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plot_run needs matplotlib: pip install "azr[plot]" (or matplotlib)') from None
    data = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    styles = {"propose": "--", "solve": "-"}
    colors = {"deduction": "tab:blue", "abduction": "tab:orange", "induction": "tab:green"}
    for ax, (metric, title) in zip(axes[0], (("mean_reward", "mean reward"), ("valid_rate", "valid rate"),
                                            ("solve_acc", "solve rate (propose: learnability rollouts)"))):
        for (k, r), series in data.tasks.items():
            ys = series[metric]
            if not any(isinstance(v, (int, float)) for v in ys):
                continue
            ax.plot(data.steps, smooth(ys, window), styles[r], color=colors[k], label=f"{k} {r}")
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=7)
    ax = axes[1][0]
    for name, pts in data.evals.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.set_title("held-out accuracy (greedy; step 0 = base model)")
    ax.set_xlabel("step")
    if data.evals:
        ax.legend(fontsize=7)
    ax = axes[1][1]
    for k, ys in data.buffers.items():
        if any(isinstance(v, int) for v in ys):
            ax.plot(data.steps, ys, label=k, color=colors.get(k, "tab:gray"))
    ax.set_title("buffer sizes")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    ax = axes[1][2]
    ax.plot(data.steps, smooth(data.scalars["seconds"], window), color="tab:gray")
    ax.set_title("seconds per step")
    ax.set_xlabel("step")
    fig.suptitle(str(data.run_dir))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def main(argv: list[str] | None = None) -> int:
    """``python -m azr.plots RUN_DIR OUT.png [--window N]``: draw a run's curves."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m azr.plots", description="Draw a self-play run's curves.")
    ap.add_argument("run_dir", help="a run directory (azr train --out)")
    ap.add_argument("out", help="image to write (.png, .svg, .pdf)")
    ap.add_argument("--window", type=int, default=5, help="steps per moving average (default 5)")
    args = ap.parse_args(argv)
    if args.window < 1:
        ap.error("--window must be >= 1")
    try:
        plot_run(args.run_dir, args.out, window=args.window)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"azr.plots: error: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["RunData", "load_run", "main", "plot_run", "smooth"]

if __name__ == "__main__":
    raise SystemExit(main())
