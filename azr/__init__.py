"""azr: Absolute Zero self-play for language models, on a C core.

Public API (each piece documented in its own module):

- ``azr.set_num_threads(n)`` / ``azr.get_num_threads()``: threads for the C kernels.
- ``azr.cpu_info()``, ``azr.set_isa(level)``: what the CPU can do and which
  instruction-set level the kernels use (environment: ``AZR_ISA``).
- ``azr.set_matmul_precision("bf16" | "fp32")``: bf16 inputs, fp32 sums in
  every training and scoring product (``TrainerConfig.precision``).
- Self-play: ``azr.Trainer``, ``azr.TrainerConfig`` (trainer.py, config.py), the task
  types and prompt templates (``azr.tasks``), buffers (``azr.buffers``), oversight
  monitors (``azr.monitors``) and the RL math (``azr.rl``).
- ``azr.Tokenizer``: byte-level / SentencePiece BPE identical to HF ``tokenizers`` (azr/tokenizer.py).
- ``azr.Executor``: the sandboxed executor and judge (``azr/executor.py``).
- ``azr.gguf``: GGUF files and the default model (``ensure_hf_dir``).
"""
from __future__ import annotations

from ._native import _core
from .tokenizer import StreamDecoder, Tokenizer
from . import gguf  # noqa: E402  (GGUF files and the default model: azr.gguf.ensure_hf_dir)

__version__ = "0.1.0"

from . import rl, tasks  # noqa: E402
from .buffers import Buffers, TaskBuffer  # noqa: E402
from .config import TrainerConfig  # noqa: E402
from .monitors import CallableMonitor, MonitorSet, PatternMonitor  # noqa: E402
from .tasks import PromptTemplates, Task  # noqa: E402
from .trainer import Trainer, build_trainer  # noqa: E402
from .executor import DenyList, Executor, RunResult, Verdict  # noqa: E402

FormatError = _core.FormatError
UnsupportedError = _core.UnsupportedError

from .generate import Completion, GenerateProgress  # noqa: E402
from .model import Model, ModelConfig  # noqa: E402
from .optim import AdamW  # noqa: E402


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in azr's kernels (OpenMP and OpenBLAS).

    ``n <= 0`` restores the default: ``OMP_NUM_THREADS`` if set, else the
    number of online CPUs.
    """
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads azr's kernels use."""
    return _core.get_num_threads()


ISA_LEVELS = ("fp32", "avx512_bf16")


def cpu_info() -> dict:
    """The CPU's name and features (found at run time: cpuid and the OS's
    saved-state mask), ``isa_available`` (the best level azr has kernels for
    here) and ``isa`` (the level in use). Levels: "fp32" (every x86-64:
    OpenBLAS sgemm), "avx512_bf16" (vdpbf16ps: Zen 4/5, Cooper Lake,
    Sapphire Rapids and later). AMX is reported but has no kernel yet."""
    return dict(_core.cpu_info())


def set_isa(level: str | None) -> None:
    """Use at most ``level`` (one of `ISA_LEVELS`; None: the best this CPU
    has), so every path a machine has can be tested there. A level the CPU
    lacks raises `UnsupportedError` naming it."""
    if level is not None and level not in ISA_LEVELS:
        raise ValueError(f"unknown instruction-set level {level!r}; levels are {ISA_LEVELS} or None")
    _core.set_isa(level)


def set_matmul_precision(precision: str) -> None:
    """The precision of every matrix product of training and scoring
    (`Model.logits`, `logprobs`, `loss_and_backward`; the rollout engine keeps
    its own fp32 kernels): "fp32" (the default) or "bf16" (both inputs rounded
    to bfloat16, products and sums in fp32, as mixed-precision training does
    on a GPU; weights, gradients, optimizer state, norms and softmax stay
    fp32). Process-wide. Without a bf16 unit the same rounded inputs go
    through the fp32 path (same numbers up to summation order, slower)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"matmul precision must be 'fp32' or 'bf16', got {precision!r}")
    _core.set_matmul_precision(precision == "bf16")


def get_matmul_precision() -> str:
    """ "fp32" or "bf16" (see `set_matmul_precision`)."""
    return "bf16" if _core.get_matmul_precision() else "fp32"


def _isa_from_env() -> None:
    import os
    import warnings

    v = os.environ.get("AZR_ISA", "").strip()
    if not v:
        return
    try:
        set_isa(None if v == "auto" else v)
    except (ValueError, UnsupportedError) as e:
        warnings.warn(f"AZR_ISA={v!r} ignored: {e}", RuntimeWarning, stacklevel=2)


_isa_from_env()

__all__ = sorted(n for n in dir() if not n.startswith("_") and n != "annotations")
