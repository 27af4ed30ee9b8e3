"""Test helper: the sandbox's `azr._zygote` extension, loaded by path the way
a zygote loads it (it is never imported through the azr package)."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path


def load_zygote_module():
    import azr

    here = Path(azr.__file__).parent
    path = str(sorted(here.glob("_zygote*.so"))[-1])
    loader = importlib.machinery.ExtensionFileLoader("_zygote", path)
    spec = importlib.util.spec_from_file_location("_zygote", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod
