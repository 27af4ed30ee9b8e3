"""The `azr` command line: `azr <subcommand> [options]`.

`python -m azr` runs the same (azr/__main__.py); `azr --version` prints the
version. Subcommands are registered in `COMMANDS` (name -> (help, add_arguments,
run)); adding `train` or `eval` means writing those two functions and one
entry. `run` returns the process exit code.

`azr train` and `azr eval` have their own parsers (`azr.trainer.cli_main`,
`azr.evaluation.cli_main`); `azr train --help` / `azr eval --help` list
their options.

Implemented here: `azr demo` -- a tiny self-contained training run that needs no
data or downloads: a small random Llama learns a fixed synthetic token
pattern with AdamW, printing the falling loss.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import numpy as np


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=40, help="AdamW steps (default 40)")
    p.add_argument("--batch", type=int, default=8, help="sequences per step (default 8)")
    p.add_argument("--seq-len", type=int, default=48, help="tokens per sequence (default 48)")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="kernel threads (0: default)")


def _demo_batch(rng: np.random.Generator, batch: int, seq_len: int, vocab: int):
    """Sequences counting up by a per-row stride: t[i+1] = (t[i] + k) % vocab with
    k in {1, 2, 3}; the model must infer k from context, so the loss falls from
    ln(vocab) towards ~0 as it learns in-context."""
    start = rng.integers(0, vocab, size=(batch, 1))
    stride = rng.integers(1, 4, size=(batch, 1))
    seq = (start + stride * np.arange(seq_len + 1)[None, :]) % vocab
    return seq[:, :-1], seq[:, 1:]


def _demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import azr

    for flag, value, least in (("--steps", args.steps, 1), ("--batch", args.batch, 1), ("--seq-len", args.seq_len, 2)):
        if value < least:
            print(f"azr demo: error: {flag} must be >= {least}, got {value}", file=sys.stderr)
            return 2
    if args.threads:
        azr.set_num_threads(args.threads)
    cfg = azr.ModelConfig(model_type="llama", vocab_size=64, hidden_size=64,
                          intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=args.seq_len)
    model = azr.Model.from_config(cfg, seed=args.seed)
    opt = azr.AdamW(model, lr=args.lr, weight_decay=0.01, max_grad_norm=1.0)
    rng = np.random.default_rng(args.seed)
    print(f"azr demo: random Llama ({model.num_params / 1e3:.0f}K parameters, "
          f"{azr.get_num_threads()} threads) learning a counting pattern; "
          f"uniform guessing gives loss ln(64) = {np.log(64):.2f}")
    first = last = None
    t0 = time.perf_counter()
    tokens = 0
    with tqdm(range(args.steps), desc="training", unit="step") as bar:
        for step in bar:
            ids, tg = _demo_batch(rng, args.batch, args.seq_len, cfg.vocab_size)
            w = np.full(ids.shape, 1.0 / ids.size, np.float32)  # mean token loss
            opt.lr = args.lr * min(1.0, (step + 1) / 5)  # short warm-up
            opt.zero_grad()
            loss, _, _ = model.loss_and_backward(ids, tg, w)
            norm = opt.step()
            tokens += ids.size
            first = loss if first is None else first
            last = loss
            bar.set_postfix(loss=f"{loss:.3f}", grad_norm=f"{norm:.2f}")
    dt = time.perf_counter() - t0
    print(f"loss {first:.3f} -> {last:.3f} in {args.steps} steps "
          f"({tokens / dt:,.0f} tokens/s fwd+bwd+AdamW)")
    return 0 if last < first else 1


# name -> (help, add_arguments, run)
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None],
                          Callable[[argparse.Namespace], int]]] = {
    "demo": ("train a tiny random model on a synthetic pattern (no data needed)", _demo_args, _demo),
}


# Subcommands whose module parses its own arguments: name -> (help, module).
DELEGATED: dict[str, tuple[str, str]] = {
    "train": ("Absolute Zero self-play training (azr train --preset quickstart --out runs/NAME)",
              "azr.trainer"),
    "eval": ("evaluate a model on CRUXEval, HumanEval+, MBPP+ and math benchmarks", "azr.evaluation"),
    "plot": ("draw a run's curves, or several runs overlaid (azr plot RUN [RUN ...] --out curves.png)",
             "azr.plots"),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="azr", description="Absolute Zero self-play on a C core.")
    p.add_argument("--version", action="version", version=f"azr {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, _module) in DELEGATED.items():
        sub.add_parser(name, help=help_, add_help=False)
    for name, (help_, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_, description=help_))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        module = importlib.import_module(DELEGATED[argv[0]][1])
        try:
            return int(module.cli_main(argv[1:]) or 0)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
