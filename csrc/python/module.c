/*
 * module.c -- the `azr._core` extension module: creation, exception
 * classes, and the calls to each layer's init function.
 * Must not: hold logic of its own beyond registration and thread control.
 */
#define AZR_PY_MODULE_C
#include "py_common.h"
#include "../backend/blas.h"

PyObject *azr_py_FormatError = NULL;
PyObject *azr_py_UnsupportedError = NULL;

PyObject *azr_py_raise(azr_status st, const char *fallback) {
    const char *msg = azr_last_error();
    if (!msg || !*msg) msg = fallback ? fallback : azr_status_name(st);
    PyObject *type;
    switch (st) {
    case AZR_ERR_NOMEM: type = PyExc_MemoryError; break;
    case AZR_ERR_IO:
    case AZR_ERR_SYSTEM: type = PyExc_OSError; break;
    case AZR_ERR_FORMAT: type = azr_py_FormatError; break;
    case AZR_ERR_UNSUPPORTED: type = azr_py_UnsupportedError; break;
    case AZR_ERR_NUMERIC: type = PyExc_FloatingPointError; break;
    case AZR_ERR_STATE: type = PyExc_RuntimeError; break;
    case AZR_ERR_INTERRUPTED: type = PyExc_KeyboardInterrupt; break;
    case AZR_ERR_INVALID:
    default: type = PyExc_ValueError; break;
    }
    /* A message quotes names from files, cut to a length that may split a
     * UTF-8 character: decode it leniently, or PyErr_SetString would raise
     * with no message at all. */
    PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (text) {
        PyErr_SetObject(type, text);
        Py_DECREF(text);
    }
    azr_clear_error();
    return NULL;
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n > 4096) {
        PyErr_Format(PyExc_ValueError, "set_num_threads: %ld threads is more than 4096", n);
        return NULL;
    }
    azr_set_num_threads((int)n);
    /* OpenBLAS stays single-threaded: azr's kernels split matrix products
     * across OpenMP threads themselves (azr_gemm), so only one pool runs. */
    azr_blas_set_threads(1);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return PyLong_FromLong(azr_get_num_threads());
}

static PyObject *py_philox(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long key, hi, lo;
    if (!PyArg_ParseTuple(args, "KKK:philox", &key, &hi, &lo)) return NULL;
    azr_u32x4 r = azr_philox(key, hi, lo);
    return Py_BuildValue("(kkkk)", (unsigned long)r.v[0], (unsigned long)r.v[1],
                         (unsigned long)r.v[2], (unsigned long)r.v[3]);
}

static PyMethodDef core_methods[] = {
    {"set_num_threads", py_set_num_threads, METH_O,
     "set_num_threads(n)\n--\n\nUse n OpenMP/OpenBLAS threads; n <= 0 restores the default "
     "(OMP_NUM_THREADS, else the CPU count)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS,
     "get_num_threads()\n--\n\nThe number of threads azr's kernels use."},
    {"philox", py_philox, METH_VARARGS,
     "philox(key, counter_hi, counter_lo)\n--\n\nFour 32-bit words of Philox-4x32-10."},
    {NULL, NULL, 0, NULL}};

int azr_py_init_core(PyObject *m) {
    azr_py_FormatError = PyErr_NewExceptionWithDoc(
        "azr._core.FormatError", "A file or text is malformed or inconsistent.",
        PyExc_ValueError, NULL);
    if (!azr_py_FormatError || PyModule_AddObjectRef(m, "FormatError", azr_py_FormatError) < 0)
        return -1;
    azr_py_UnsupportedError = PyErr_NewExceptionWithDoc(
        "azr._core.UnsupportedError", "A valid option or format azr does not implement.",
        PyExc_ValueError, NULL);
    if (!azr_py_UnsupportedError ||
        PyModule_AddObjectRef(m, "UnsupportedError", azr_py_UnsupportedError) < 0)
        return -1;
    if (PyModule_AddFunctions(m, core_methods) < 0) return -1;
    return 0;
}

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "azr._core",
    "The C core of azr: model engine, tokenizers, rollout engine, sandbox and RL math.", -1,
    NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) {
    import_array();
    PyObject *m = PyModule_Create(&core_module);
    if (!m) return NULL;
    azr_set_num_threads(0);
    azr_blas_set_threads(1); /* see py_set_num_threads */
    if (azr_py_init_core(m) < 0 || azr_py_init_model(m) < 0 || azr_py_init_tokenizer(m) < 0 ||
        azr_py_init_sandbox(m) < 0 || azr_py_init_gguf(m) < 0 || azr_py_init_generate(m) < 0 ||
        azr_py_init_rl(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
