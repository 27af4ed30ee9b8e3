"""Build script for azr's C extension `azr._core`.

Compiles every C file under csrc/ (except the optional CUDA backend and the
zygote module's own files) into one extension, against NumPy's C API and the
OpenBLAS shipped by the `scipy-openblas32` wheel (a build and runtime
dependency, so no system BLAS is needed). Environment knobs:

  AZR_PORTABLE=1   do not use -march=native (for wheels built for other CPUs)
  AZR_DEBUG=1      -O0 -g, plus AddressSanitizer/UBSan if AZR_SANITIZE=1
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


# C files only the zygote module compiles (they need the CPython API and
# `azr._core` has no use for them; zygote_module.c #includes them).
ZYGOTE_ONLY = [os.path.join("csrc", "sandbox", "literal.c")]


def _sources():
    files = sorted(glob.glob(os.path.join("csrc", "**", "*.c"), recursive=True))
    return [f for f in files if os.sep + "cuda" + os.sep not in f
            and os.sep + "zygote" + os.sep not in f and f not in ZYGOTE_ONLY]


# The sandbox zygote's own small module: loaded by path inside each zygote, so
# it must not pull in NumPy, OpenBLAS or OpenMP (see csrc/sandbox/sandbox.h).
# (zygote_units.c #includes the sandbox and core units it needs.)
ZYGOTE_SOURCES = sorted(glob.glob(os.path.join("csrc", "python", "zygote", "*.c")))


class BuildExt(build_ext):
    """Resolve NumPy and OpenBLAS locations at build time (they are build deps)."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        import numpy
        import scipy_openblas32

        inc = scipy_openblas32.get_include_dir()
        libdir = scipy_openblas32.get_lib_dir()
        libname = scipy_openblas32.get_library()
        for ext in self.extensions:
            if ext.name == "azr._zygote":
                ext.include_dirs += ["csrc"]
                continue
            ext.include_dirs += [numpy.get_include(), inc, "csrc"]
            ext.library_dirs += [libdir]
            ext.libraries += [libname]
            # Found at run time next to the installed wheel, or at the build
            # location for in-place builds; azr/__init__.py also preloads it.
            ext.runtime_library_dirs += [libdir]
            ext.extra_link_args += ["-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib"]
        super().build_extensions()


debug = os.environ.get("AZR_DEBUG") == "1"
cflags = ["-std=c11", "-fopenmp", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-Wno-cast-function-type", "-D_GNU_SOURCE",
          "-DAZR_BLAS_PREFIX_SCIPY", "-fno-strict-aliasing",
          # libm calls (sqrtf...) need not set errno: lets their loops vectorize
          "-fno-math-errno"]
ldflags = ["-fopenmp", "-lm"]
if debug:
    cflags += ["-O0", "-g"]
    if os.environ.get("AZR_SANITIZE") == "1":
        cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        ldflags += ["-fsanitize=address,undefined"]
else:
    cflags += ["-O3", "-ffp-contract=fast"]
    if os.environ.get("AZR_PORTABLE") != "1" and sys.platform.startswith("linux"):
        cflags += ["-march=native"]

setup(
    ext_modules=[
        Extension(
            "azr._core",
            sources=_sources(),
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        ),
        Extension(
            "azr._zygote",
            sources=ZYGOTE_SOURCES,
            depends=sorted(glob.glob(os.path.join("csrc", "sandbox", "*")))
            + [os.path.join("csrc", "core", "error.c"), os.path.join("csrc", "core", "azr_core.h")],
            extra_compile_args=[f for f in cflags if f != "-fopenmp"],
            extra_link_args=[f for f in ldflags if f != "-fopenmp"],
        ),
    ],
    cmdclass={"build_ext": BuildExt},
)
