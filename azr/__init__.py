"""azr: Absolute Zero self-play for language models, on a C core.

Public API (each piece documented in its own module):

- ``azr.set_num_threads(n)`` / ``azr.get_num_threads()``: threads for the C kernels.
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


__all__ = sorted(n for n in dir() if not n.startswith("_") and n != "annotations")
