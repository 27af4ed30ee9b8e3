"""Load the C core `azr._core`, making sure its OpenBLAS is found first.

The extension links the OpenBLAS shipped in the `scipy-openblas32` wheel. Its
rpath normally finds it; preloading through the wheel's own helper makes an
in-place build or an unusual layout work too.
"""
from __future__ import annotations

import ctypes
import os


def _preload_openblas() -> None:
    try:
        import scipy_openblas32
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ImportError(
            "azr needs the 'scipy-openblas32' package (its BLAS). "
            "Install it with: pip install scipy-openblas32"
        ) from exc
    libdir = scipy_openblas32.get_lib_dir()
    for name in os.listdir(libdir):
        if name.startswith("lib" + scipy_openblas32.get_library()) and ".so" in name:
            ctypes.CDLL(os.path.join(libdir, name), mode=ctypes.RTLD_GLOBAL)
            return


_preload_openblas()

from . import _core  # noqa: E402

__all__ = ["_core"]
