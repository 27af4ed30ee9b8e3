/*
 * py_common.h -- shared helpers for the CPython binding `azr._core`.
 *
 * The binding is split by layer: one file per C layer (py_model.c,
 * py_tokenizer.c, py_sandbox.c, ...), each exporting one init function that
 * adds its types and functions to the module. module.c calls them in order.
 * Must not: contain model, tokenizer or sandbox logic; wrappers only check
 * arguments, release the GIL around long C calls and convert errors.
 */
#ifndef AZR_PY_COMMON_H
#define AZR_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL azr_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#ifndef AZR_PY_MODULE_C
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "../core/azr_core.h"

/* Exception classes, created in module.c. FormatError and UnsupportedError
 * subclass ValueError so generic handlers still catch them. */
extern PyObject *azr_py_FormatError;
extern PyObject *azr_py_UnsupportedError;

/* Raise the Python exception matching `st`, with the thread's last azr error
 * message (or `fallback` if that is empty). Always returns NULL. Mapping:
 * nomem->MemoryError, io/system->OSError, format->FormatError,
 * invalid->ValueError, unsupported->UnsupportedError,
 * numeric->FloatingPointError, state->RuntimeError,
 * interrupted->KeyboardInterrupt. */
PyObject *azr_py_raise(azr_status st, const char *fallback);

/* Per-layer init functions: add types/functions to `m`; return 0 or -1 with
 * a Python exception set. */
int azr_py_init_core(PyObject *m);
int azr_py_init_model(PyObject *m);
int azr_py_init_tokenizer(PyObject *m);
int azr_py_init_sandbox(PyObject *m);
int azr_py_init_gguf(PyObject *m);
int azr_py_init_generate(PyObject *m);
int azr_py_init_rl(PyObject *m);

#endif /* AZR_PY_COMMON_H */
