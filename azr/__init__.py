"""azr: Absolute Zero self-play for language models, on a C core.

Public API (each piece documented in its own module):

- ``azr.set_num_threads(n)`` / ``azr.get_num_threads()``: threads for the C kernels.
- ``azr.Executor``: the sandboxed executor and judge (``azr/executor.py``).
"""
from __future__ import annotations

from ._native import _core

__version__ = "0.1.0"

from .executor import DenyList, Executor, RunResult, Verdict  # noqa: E402

FormatError = _core.FormatError
UnsupportedError = _core.UnsupportedError


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in azr's kernels (OpenMP and OpenBLAS).

    ``n <= 0`` restores the default: ``OMP_NUM_THREADS`` if set, else the
    number of online CPUs.
    """
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads azr's kernels use."""
    return _core.get_num_threads()


__all__ = ["DenyList", "Executor", "FormatError", "RunResult", "UnsupportedError", "Verdict",
           "get_num_threads", "set_num_threads"]
