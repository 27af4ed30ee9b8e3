/*
 * py_sandbox.c -- binding for the sandbox layer: the `SandboxPool` type (the
 * supervisor of csrc/sandbox/pool.c) and `sandbox_decode`, the host-side
 * decoder of the literal-only result encoding (csrc/sandbox/codec.h).
 *
 * Owns: argument checking, GIL release around whole batches, turning replies
 * into tuples. The decoder builds exact builtin values only, checks every
 * length against the bytes left, bounds nesting, and rejects dict keys or set
 * items that collide (normalised subclasses) instead of merging them.
 * Must not: unpickle, eval, or call any method that a decoded value could
 * have overridden (there are none: every decoded value is an exact builtin).
 */
#include "py_common.h"
#include "pythread.h"

#include "../sandbox/codec.h"
#include "../sandbox/sandbox.h"

#include <string.h>

/* ---------------------------------------------------------------- decoder */

typedef struct {
    const unsigned char *p, *end;
} dec;

static int need(dec *d, size_t n) {
    if ((size_t)(d->end - d->p) < n) {
        PyErr_SetString(PyExc_ValueError, "sandbox result: truncated encoding");
        return -1;
    }
    return 0;
}

static int get_u32(dec *d, uint32_t *v) {
    if (need(d, 4) < 0) return -1;
    memcpy(v, d->p, 4);
    d->p += 4;
    return 0;
}

static PyObject *dec_value(dec *d, int depth) {
    if (need(d, 1) < 0) return NULL;
    unsigned char t = *d->p++;
    uint32_t n;
    switch (t) {
    case AZR_ENC_NONE: Py_RETURN_NONE;
    case AZR_ENC_ELLIPSIS: return Py_NewRef(Py_Ellipsis);
    case AZR_ENC_TRUE: Py_RETURN_TRUE;
    case AZR_ENC_FALSE: Py_RETURN_FALSE;
    case AZR_ENC_INT: {
        int64_t x;
        if (need(d, 8) < 0) return NULL;
        memcpy(&x, d->p, 8);
        d->p += 8;
        return PyLong_FromLongLong((long long)x);
    }
    case AZR_ENC_BIGINT: {
        if (get_u32(d, &n) < 0 || need(d, n) < 0) return NULL;
        if (n == 0 || n > 4096) {
            PyErr_SetString(PyExc_ValueError, "sandbox result: integer out of range");
            return NULL;
        }
        PyObject *v = _PyLong_FromByteArray(d->p, n, 1, 1);
        d->p += n;
        return v;
    }
    case AZR_ENC_FLOAT: {
        double x;
        if (need(d, 8) < 0) return NULL;
        memcpy(&x, d->p, 8);
        d->p += 8;
        return PyFloat_FromDouble(x);
    }
    case AZR_ENC_COMPLEX: {
        double re, im;
        if (need(d, 16) < 0) return NULL;
        memcpy(&re, d->p, 8);
        memcpy(&im, d->p + 8, 8);
        d->p += 16;
        return PyComplex_FromDoubles(re, im);
    }
    case AZR_ENC_STR:
        if (get_u32(d, &n) < 0 || need(d, n) < 0) return NULL;
        {
            PyObject *v = PyUnicode_DecodeUTF8((const char *)d->p, n, "surrogatepass");
            d->p += n;
            return v;
        }
    case AZR_ENC_BYTES:
        if (get_u32(d, &n) < 0 || need(d, n) < 0) return NULL;
        {
            PyObject *v = PyBytes_FromStringAndSize((const char *)d->p, n);
            d->p += n;
            return v;
        }
    default: break;
    }
    if (t != AZR_ENC_LIST && t != AZR_ENC_TUPLE && t != AZR_ENC_SET && t != AZR_ENC_FROZENSET &&
        t != AZR_ENC_DICT) {
        PyErr_Format(PyExc_ValueError, "sandbox result: unknown tag 0x%02x", t);
        return NULL;
    }
    if (depth >= AZR_ENC_MAX_DEPTH) {
        PyErr_SetString(PyExc_ValueError, "sandbox result: nested too deeply");
        return NULL;
    }
    if (get_u32(d, &n) < 0) return NULL;
    /* Every item takes at least one byte: a count larger than what is left lies. */
    if ((size_t)n > (size_t)(d->end - d->p)) {
        PyErr_SetString(PyExc_ValueError, "sandbox result: container count exceeds the data");
        return NULL;
    }
    if (t == AZR_ENC_LIST || t == AZR_ENC_TUPLE) {
        PyObject *v = t == AZR_ENC_LIST ? PyList_New(n) : PyTuple_New(n);
        if (!v) return NULL;
        for (uint32_t i = 0; i < n; i++) {
            PyObject *it = dec_value(d, depth + 1);
            if (!it) { Py_DECREF(v); return NULL; }
            if (t == AZR_ENC_LIST) PyList_SET_ITEM(v, i, it);
            else PyTuple_SET_ITEM(v, i, it);
        }
        return v;
    }
    if (t == AZR_ENC_DICT) {
        PyObject *v = PyDict_New();
        if (!v) return NULL;
        for (uint32_t i = 0; i < n; i++) {
            PyObject *k = dec_value(d, depth + 1);
            PyObject *x = k ? dec_value(d, depth + 1) : NULL;
            int rc = (k && x) ? PyDict_SetItem(v, k, x) : -1;
            Py_XDECREF(k);
            Py_XDECREF(x);
            if (rc < 0) { Py_DECREF(v); return NULL; }
            if (PyDict_GET_SIZE(v) != (Py_ssize_t)i + 1) {
                PyErr_SetString(PyExc_ValueError,
                                "sandbox result: two dict keys are equal once normalised to builtin types");
                Py_DECREF(v);
                return NULL;
            }
        }
        return v;
    }
    PyObject *v = t == AZR_ENC_SET ? PySet_New(NULL) : PyFrozenSet_New(NULL);
    if (!v) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *k = dec_value(d, depth + 1);
        int rc = k ? PySet_Add(v, k) : -1;
        Py_XDECREF(k);
        if (rc < 0) { Py_DECREF(v); return NULL; }
        if (PySet_GET_SIZE(v) != (Py_ssize_t)i + 1) {
            PyErr_SetString(PyExc_ValueError,
                            "sandbox result: two set items are equal once normalised to builtin types");
            Py_DECREF(v);
            return NULL;
        }
    }
    return v;
}

static PyObject *py_sandbox_decode(PyObject *self, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    dec d = {(const unsigned char *)b.buf, (const unsigned char *)b.buf + b.len};
    PyObject *v = dec_value(&d, 0);
    if (v && d.p != d.end) {
        Py_DECREF(v);
        v = NULL;
        PyErr_SetString(PyExc_ValueError, "sandbox result: trailing bytes after the value");
    }
    PyBuffer_Release(&b);
    return v;
}

/* ---------------------------------------------------------------- pool */

typedef struct {
    PyObject_HEAD
    azr_sbx_pool *pool;
    PyThread_type_lock lock;
} SandboxPool;

static int pool_init(SandboxPool *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"python", "driver", "ext_path", "scratch", "config_json", "workers",
                          "namespaces", "startup_timeout_ms", NULL};
    const char *python, *driver, *ext, *scratch, *cfgjson;
    int workers, ns, startup_ms = 30000;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sssssip|i:SandboxPool", kws, &python, &driver, &ext,
                                     &scratch, &cfgjson, &workers, &ns, &startup_ms))
        return -1;
    if (self->pool) {
        PyErr_SetString(PyExc_RuntimeError, "SandboxPool is already initialised");
        return -1;
    }
    if (!self->lock) self->lock = PyThread_allocate_lock();
    if (!self->lock) { PyErr_NoMemory(); return -1; }
    azr_sbx_pool_config cfg = {python, driver, ext, scratch, cfgjson, workers, ns, startup_ms};
    azr_status st;
    azr_sbx_pool *p = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = azr_sbx_pool_new(&cfg, &p);
    Py_END_ALLOW_THREADS
    if (st != AZR_OK) { azr_py_raise(st, "cannot start the sandbox pool"); return -1; }
    self->pool = p;
    return 0;
}

static void pool_close_impl(SandboxPool *self) {
    if (!self->pool) return;
    azr_sbx_pool *p = self->pool;
    self->pool = NULL;
    Py_BEGIN_ALLOW_THREADS
    if (self->lock) PyThread_acquire_lock(self->lock, WAIT_LOCK);
    azr_sbx_pool_free(p);
    if (self->lock) PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
}

static void pool_dealloc(SandboxPool *self) {
    pool_close_impl(self);
    if (self->lock) PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *pool_close(SandboxPool *self, PyObject *unused) {
    pool_close_impl(self);
    Py_RETURN_NONE;
}

static int check_open(SandboxPool *self) {
    if (!self->pool) {
        PyErr_SetString(PyExc_RuntimeError, "the sandbox pool is closed");
        return -1;
    }
    return 0;
}

static int cancel_cb(void *ctx) {
    (void)ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_CheckSignals() < 0;
    if (stop) PyErr_Clear(); /* re-raised as KeyboardInterrupt below */
    PyGILState_Release(g);
    return stop;
}

static PyObject *pool_run(SandboxPool *self, PyObject *arg) {
    if (check_open(self) < 0) return NULL;
    PyObject *seq = PySequence_Fast(arg, "run: expected a list of request tuples");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    azr_sbx_request *reqs = PyMem_Calloc((size_t)n + 1, sizeof *reqs);
    azr_sbx_result *res = PyMem_Calloc((size_t)n + 1, sizeof *res);
    PyObject *out = NULL;
    if (!reqs || !res) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        unsigned int mode, tmo, mem, ocap, rcap, fsz;
        long long pair;
        const char *a, *b, *c;
        Py_ssize_t al, bl, cl;
        if (!PyTuple_Check(t) ||
            !PyArg_ParseTuple(t, "IIIIIILy#y#y#:request", &mode, &tmo, &mem, &ocap, &rcap, &fsz, &pair,
                              &a, &al, &b, &bl, &c, &cl)) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "run: request %zd is not a tuple", i);
            goto done;
        }
        if (al > AZR_SBX_MAX_FIELD || bl > AZR_SBX_MAX_FIELD || cl > AZR_SBX_MAX_FIELD) {
            PyErr_Format(PyExc_ValueError, "run: request %zd is larger than %u bytes", i, AZR_SBX_MAX_FIELD);
            goto done;
        }
        if (pair >= n || pair < -1) {
            PyErr_Format(PyExc_ValueError, "run: request %zd names request %lld as its group's first, "
                         "out of range", i, pair);
            goto done;
        }
        reqs[i] = (azr_sbx_request){mode, tmo, mem, ocap, rcap, fsz, pair,
                                    a, (uint32_t)al, b, (uint32_t)bl, c, (uint32_t)cl};
    }
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    st = self->pool ? azr_sbx_pool_run(self->pool, reqs, (size_t)n, res, cancel_cb, NULL)
                    : azr_set_error(AZR_ERR_STATE, "the sandbox pool is closed");
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    if (st != AZR_OK) {
        for (Py_ssize_t i = 0; i < n; i++) azr_sbx_result_clear(&res[i]);
        if (st == AZR_ERR_INTERRUPTED) {
            PyErr_SetString(PyExc_KeyboardInterrupt, "sandbox batch interrupted");
            goto done;
        }
        azr_py_raise(st, "sandbox batch failed");
        goto done;
    }
    out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        azr_sbx_result *r = &res[i];
        PyObject *t = Py_BuildValue("(Iy#y#sddiiIKI)", r->status, (const char *)r->payload,
                                    (Py_ssize_t)r->payload_len, (const char *)r->out,
                                    (Py_ssize_t)r->out_len, r->msg, r->cpu_time, r->wall_time,
                                    r->exit_code, r->term_signal, r->flags,
                                    (unsigned long long)r->zygote_id, r->hash_seed);
        if (!t) {
            PyErr_Clear();
            t = Py_BuildValue("(Iy#y#sddiiIKI)", (unsigned)AZR_SBX_ERROR, "", (Py_ssize_t)0, "",
                              (Py_ssize_t)0, "sandbox: unreadable reply", 0.0, 0.0, -1, 0, 0u,
                              (unsigned long long)r->zygote_id, r->hash_seed);
        }
        if (!t) { Py_CLEAR(out); break; }
        PyList_SET_ITEM(out, i, t);
    }
    for (Py_ssize_t i = 0; i < n; i++) azr_sbx_result_clear(&res[i]);
done:
    PyMem_Free(reqs);
    PyMem_Free(res);
    Py_DECREF(seq);
    return out;
}

static PyObject *pool_layers(SandboxPool *self, PyObject *unused) {
    if (check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLong(azr_sbx_pool_layers(self->pool));
}

static PyObject *pool_pids(SandboxPool *self, PyObject *unused) {
    if (check_open(self) < 0) return NULL;
    pid_t pids[256];
    int n = azr_sbx_pool_pids(self->pool, pids, 256);
    if (n > 256) n = 256;
    PyObject *l = PyList_New(n);
    for (int i = 0; l && i < n; i++) PyList_SET_ITEM(l, i, PyLong_FromLong(pids[i]));
    return l;
}

static PyObject *pool_spawned(SandboxPool *self, PyObject *unused) {
    if (check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(azr_sbx_pool_spawned(self->pool));
}

static PyObject *pool_reseed(SandboxPool *self, PyObject *arg) {
    if (check_open(self) < 0) return NULL;
    long count = PyLong_AsLong(arg);
    if (count == -1 && PyErr_Occurred()) return NULL;
    if (count < 0 || count > 256) {
        PyErr_Format(PyExc_ValueError, "reseed: count must be in 0..256, got %ld", count);
        return NULL;
    }
    int done;
    Py_BEGIN_ALLOW_THREADS
    done = azr_sbx_pool_reseed(self->pool, (int)count);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(done);
}

static PyObject *pool_get_closed(SandboxPool *self, void *unused) {
    return PyBool_FromLong(self->pool == NULL);
}

static PyMethodDef pool_methods[] = {
    {"run", (PyCFunction)pool_run, METH_O,
     "run(requests) -> list of (status, payload, out, msg, cpu, wall, exit, signal, flags, zygote, seed)"},
    {"layers", (PyCFunction)pool_layers, METH_NOARGS, "layers() -> bit mask of active isolation layers"},
    {"pids", (PyCFunction)pool_pids, METH_NOARGS, "pids() -> host pids of the zygotes"},
    {"spawned", (PyCFunction)pool_spawned, METH_NOARGS, "spawned() -> zygotes started so far"},
    {"reseed", (PyCFunction)pool_reseed, METH_O,
     "reseed(count) -> replaced; start fresh-seeded zygotes in place of the count oldest idle ones"},
    {"close", (PyCFunction)pool_close, METH_NOARGS, "close(): kill and reap every zygote"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef pool_getset[] = {{"closed", (getter)pool_get_closed, NULL, "True once closed", NULL},
                                    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject SandboxPoolType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "azr._core.SandboxPool",
    .tp_basicsize = sizeof(SandboxPool),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SandboxPool(python, driver, ext_path, scratch, config_json, workers, namespaces, "
              "startup_timeout_ms=30000): the sandbox supervisor (use azr.Executor).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pool_init,
    .tp_dealloc = (destructor)pool_dealloc,
    .tp_methods = pool_methods,
    .tp_getset = pool_getset,
};

static PyMethodDef sandbox_functions[] = {
    {"sandbox_decode", py_sandbox_decode, METH_O,
     "sandbox_decode(data) -> value; decode the sandbox's literal-only encoding"},
    {NULL, NULL, 0, NULL}};

int azr_py_init_sandbox(PyObject *m) {
    if (PyType_Ready(&SandboxPoolType) < 0) return -1;
    if (PyModule_AddObjectRef(m, "SandboxPool", (PyObject *)&SandboxPoolType) < 0) return -1;
    if (PyModule_AddFunctions(m, sandbox_functions) < 0) return -1;
    return 0;
}
