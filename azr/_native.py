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


def _load_core():
    try:
        from . import _core
    except ImportError as exc:
        here = os.path.dirname(os.path.abspath(__file__))
        built = any(n.startswith("_core.") and n.endswith((".so", ".pyd")) for n in os.listdir(here))
        if built or not os.path.exists(os.path.join(os.path.dirname(here), "setup.py")):
            raise
        raise ImportError(
            f"azr's C extension (azr._core) is not built in {here}: Python imported azr from the "
            "source checkout (the current directory or a script's folder comes first on sys.path). "
            "Either run from outside the checkout after 'pip install .', or build in place with "
            "'python setup.py build_ext --inplace' (or 'pip install -e .')") from exc
    return _core


_core = _load_core()

__all__ = ["_core"]
