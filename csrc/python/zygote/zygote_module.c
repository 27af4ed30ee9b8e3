/*
 * zygote_module.c -- `azr._zygote`, the small extension module loaded (by
 * path, without importing the azr package) into every sandbox zygote.
 *
 * Owns: the Python face of the fork server (init, serve), the child's
 * literal-only result encoder, and the face of the input fast path
 * (`parse_args`, grammar in csrc/sandbox/literal.c). The encoder reads
 * exact builtin values and the storage of builtin subclasses directly (never
 * calling __eq__, __hash__, __repr__, __iter__, __index__ or any other user
 * method), rejects other types, cycles and nesting deeper than
 * AZR_ENC_MAX_DEPTH, and stops at the size cap.
 * Must not: link NumPy, OpenBLAS or OpenMP (the zygote stays single-threaded
 * and small), or run user code itself.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>
#include <unistd.h>

#include "../../sandbox/codec.h"
#include "../../sandbox/sandbox.h"
/* Compiled here, not in zygote_units.c: it needs the CPython API and is no
   part of azr._core (setup.py and tests/c/run.sh leave it out there). */
#include "../../sandbox/literal.c"

static azr_sbx_zygote *g_zygote = NULL; /* one per process: the zygote itself */
static PyObject *g_digit_limit = NULL;  /* 10 ** 4300 */

/* ---------------------------------------------------------------- encoder */

typedef struct {
    char *buf;
    size_t len, cap, limit;
    int truncated;
    PyObject *path[AZR_ENC_MAX_DEPTH + 2];
    int depth;
    char err[256];
} enc;

static int put(enc *e, const void *p, size_t n) {
    if (e->len + n > e->limit) { e->truncated = 1; return -1; }
    if (e->len + n > e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 256;
        while (nc < e->len + n) nc *= 2;
        char *nb = PyMem_Realloc(e->buf, nc);
        if (!nb) { snprintf(e->err, sizeof e->err, "out of memory while encoding the result"); return -1; }
        e->buf = nb;
        e->cap = nc;
    }
    memcpy(e->buf + e->len, p, n);
    e->len += n;
    return 0;
}
static int put_tag(enc *e, char t) { return put(e, &t, 1); }
static int put_u32(enc *e, size_t v) {
    if (v > 0xFFFFFFFFu) { snprintf(e->err, sizeof e->err, "a container or string is too large"); return -1; }
    uint32_t x = (uint32_t)v;
    return put(e, &x, 4);
}

static int enc_value(enc *e, PyObject *v);

static int enter(enc *e, PyObject *v) {
    if (e->depth >= AZR_ENC_MAX_DEPTH) {
        snprintf(e->err, sizeof e->err, "the result nests deeper than %d levels", AZR_ENC_MAX_DEPTH);
        return -1;
    }
    for (int i = 0; i < e->depth; i++)
        if (e->path[i] == v) {
            snprintf(e->err, sizeof e->err, "the result contains a reference cycle");
            return -1;
        }
    e->path[e->depth++] = v;
    return 0;
}

static int enc_int(enc *e, PyObject *v) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (!overflow) {
        if (put_tag(e, AZR_ENC_INT) < 0) return -1;
        int64_t y = (int64_t)x;
        return put(e, &y, 8);
    }
    PyObject *exact = _PyLong_Copy((PyLongObject *)v);
    if (!exact) return -1;
    PyObject *a = PyNumber_Absolute(exact);
    int too_big = a ? PyObject_RichCompareBool(a, g_digit_limit, Py_GE) : -1;
    Py_XDECREF(a);
    if (too_big != 0) {
        Py_DECREF(exact);
        if (too_big > 0)
            snprintf(e->err, sizeof e->err,
                     "the result holds an integer with more than %d decimal digits", AZR_ENC_MAX_DIGITS);
        return -1;
    }
    size_t nbits = _PyLong_NumBits(exact);
    size_t nbytes = nbits / 8 + 1;
    unsigned char *tmp = PyMem_Malloc(nbytes);
    int rc = -1;
    if (tmp && _PyLong_AsByteArray((PyLongObject *)exact, tmp, nbytes, 1, 1) == 0)
        rc = (put_tag(e, AZR_ENC_BIGINT) < 0 || put_u32(e, nbytes) < 0 || put(e, tmp, nbytes) < 0) ? -1 : 0;
    PyMem_Free(tmp);
    Py_DECREF(exact);
    return rc;
}

static int enc_str(enc *e, PyObject *v) {
    Py_ssize_t n = 0;
    const char *s = NULL;
    PyObject *tmp = NULL;
    if (PyUnicode_CheckExact(v)) {
        s = PyUnicode_AsUTF8AndSize(v, &n);
        if (!s) PyErr_Clear();
    }
    if (!s) {
        tmp = PyUnicode_AsEncodedString(v, "utf-8", "surrogatepass");
        if (!tmp) return -1;
        s = PyBytes_AS_STRING(tmp);
        n = PyBytes_GET_SIZE(tmp);
    }
    int rc = (put_tag(e, AZR_ENC_STR) < 0 || put_u32(e, (size_t)n) < 0 || put(e, s, (size_t)n) < 0) ? -1 : 0;
    Py_XDECREF(tmp);
    return rc;
}

static int enc_value(enc *e, PyObject *v) {
    if (v == Py_None) return put_tag(e, AZR_ENC_NONE);
    if (v == Py_Ellipsis) return put_tag(e, AZR_ENC_ELLIPSIS);
    if (v == Py_True) return put_tag(e, AZR_ENC_TRUE);
    if (v == Py_False) return put_tag(e, AZR_ENC_FALSE);
    if (PyLong_Check(v)) return enc_int(e, v);
    if (PyFloat_Check(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        return (put_tag(e, AZR_ENC_FLOAT) < 0 || put(e, &d, 8) < 0) ? -1 : 0;
    }
    if (PyComplex_Check(v)) {
        Py_complex c = ((PyComplexObject *)v)->cval;
        return (put_tag(e, AZR_ENC_COMPLEX) < 0 || put(e, &c.real, 8) < 0 || put(e, &c.imag, 8) < 0) ? -1 : 0;
    }
    if (PyUnicode_Check(v)) return enc_str(e, v);
    if (PyBytes_Check(v)) {
        Py_ssize_t n = PyBytes_GET_SIZE(v);
        return (put_tag(e, AZR_ENC_BYTES) < 0 || put_u32(e, (size_t)n) < 0 ||
                put(e, PyBytes_AS_STRING(v), (size_t)n) < 0) ? -1 : 0;
    }
    int rc = 0;
    if (PyTuple_Check(v) || PyList_Check(v)) {
        int is_t = PyTuple_Check(v);
        if (enter(e, v) < 0) return -1;
        Py_ssize_t n = is_t ? PyTuple_GET_SIZE(v) : PyList_GET_SIZE(v);
        if (put_tag(e, is_t ? AZR_ENC_TUPLE : AZR_ENC_LIST) < 0 || put_u32(e, (size_t)n) < 0) rc = -1;
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
            /* A list cannot change here: no Python code runs while encoding. */
            PyObject *it = is_t ? PyTuple_GET_ITEM(v, i) : PyList_GET_ITEM(v, i);
            Py_INCREF(it);
            rc = enc_value(e, it);
            Py_DECREF(it);
        }
        e->depth--;
        return rc;
    }
    if (PyDict_Check(v)) {
        if (enter(e, v) < 0) return -1;
        Py_ssize_t pos = 0, n = PyDict_GET_SIZE(v);
        PyObject *k, *x;
        if (put_tag(e, AZR_ENC_DICT) < 0 || put_u32(e, (size_t)n) < 0) rc = -1;
        Py_ssize_t seen = 0;
        while (rc == 0 && PyDict_Next(v, &pos, &k, &x)) {
            Py_INCREF(k); Py_INCREF(x);
            rc = enc_value(e, k);
            if (rc == 0) rc = enc_value(e, x);
            Py_DECREF(k); Py_DECREF(x);
            seen++;
        }
        if (rc == 0 && seen != n) { snprintf(e->err, sizeof e->err, "a dict changed size while encoding"); rc = -1; }
        e->depth--;
        return rc;
    }
    if (PyAnySet_Check(v)) {
        if (enter(e, v) < 0) return -1;
        Py_ssize_t pos = 0, n = PySet_GET_SIZE(v);
        PyObject *k;
        Py_hash_t hash;
        if (put_tag(e, PyFrozenSet_Check(v) ? AZR_ENC_FROZENSET : AZR_ENC_SET) < 0 || put_u32(e, (size_t)n) < 0) rc = -1;
        Py_ssize_t seen = 0;
        while (rc == 0 && _PySet_NextEntry(v, &pos, &k, &hash)) {
            Py_INCREF(k);
            rc = enc_value(e, k);
            Py_DECREF(k);
            seen++;
        }
        if (rc == 0 && seen != n) { snprintf(e->err, sizeof e->err, "a set changed size while encoding"); rc = -1; }
        e->depth--;
        return rc;
    }
    /* Not a literal: name the type without calling anything on the value. */
    const char *tn = Py_TYPE(v)->tp_name;
    snprintf(e->err, sizeof e->err, "the result holds a value of type '%.80s', which is not a literal "
             "(allowed: None, Ellipsis, bool, int, float, complex, str, bytes, tuple, list, dict, set, frozenset)", tn);
    return -1;
}

/* 10 ** AZR_ENC_MAX_DIGITS, made once (in the zygote, by init, so no child
 * pays for the big multiplication). 0 or -1 with a Python error set. */
static int digit_limit_ready(void) {
    if (g_digit_limit) return 0;
    PyObject *ten = PyLong_FromLong(10), *ex = PyLong_FromLong(AZR_ENC_MAX_DIGITS);
    g_digit_limit = (ten && ex) ? PyNumber_Power(ten, ex, Py_None) : NULL;
    Py_XDECREF(ten); Py_XDECREF(ex);
    return g_digit_limit ? 0 : -1;
}

/* Encode v. Returns 0 and fills e->buf, or -1 with e->err / e->truncated /
 * a Python error set. */
static int encode(PyObject *v, size_t limit, enc *e) {
    memset(e, 0, sizeof *e);
    e->limit = limit;
    if (digit_limit_ready() < 0) return -1;
    return enc_value(e, v);
}

static PyObject *py_encode(PyObject *self, PyObject *args) {
    PyObject *v;
    Py_ssize_t limit = 1 << 20;
    if (!PyArg_ParseTuple(args, "O|n:encode", &v, &limit)) return NULL;
    enc e;
    int rc = encode(v, (size_t)limit, &e);
    PyObject *res = NULL;
    if (rc == 0) res = PyBytes_FromStringAndSize(e.buf, (Py_ssize_t)e.len);
    else if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, e.truncated ? "the encoded result exceeds the size cap" : e.err);
    PyMem_Free(e.buf);
    return res;
}

/* reply_value(value, cap) -> status sent. Encodes and writes the frame. */
static PyObject *py_reply_value(PyObject *self, PyObject *args) {
    PyObject *v;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "On:reply_value", &v, &limit)) return NULL;
    enc e;
    int rc = encode(v, (size_t)limit, &e);
    uint32_t status;
    int wrc;
    if (rc == 0) {
        status = AZR_SBX_OK;
        wrc = azr_sbx_child_reply(status, e.buf, e.len);
    } else if (e.truncated) {
        char msg[128];
        int n = snprintf(msg, sizeof msg, "the result exceeds %zd bytes when encoded", limit);
        status = AZR_SBX_TRUNCATED;
        wrc = azr_sbx_child_reply(status, msg, (size_t)n);
    } else {
        if (PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
                PyErr_Clear();
                status = AZR_SBX_MEMORY;
                snprintf(e.err, sizeof e.err, "out of memory while encoding the result");
            } else {
                PyErr_Clear();
                status = AZR_SBX_ERROR;
                if (!e.err[0]) snprintf(e.err, sizeof e.err, "the result could not be encoded");
            }
        } else {
            status = AZR_SBX_ERROR;
        }
        wrc = azr_sbx_child_reply(status, e.err, strlen(e.err));
    }
    PyMem_Free(e.buf);
    if (wrc != 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromUnsignedLong(status);
}

static PyObject *py_reply(PyObject *self, PyObject *args) {
    unsigned int status;
    const char *msg;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Is#:reply", &status, &msg, &n)) return NULL;
    if (status >= AZR_SBX_NSTATUS) {
        PyErr_SetString(PyExc_ValueError, "reply: unknown status");
        return NULL;
    }
    if (azr_sbx_child_reply(status, msg, (size_t)n) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- inputs */

static PyObject *py_parse_args(PyObject *self, PyObject *src) {
    if (!PyBytes_Check(src)) {
        PyErr_Format(PyExc_TypeError, "parse_args: expected bytes, got %.100s", Py_TYPE(src)->tp_name);
        return NULL;
    }
    PyObject *r = azr_lit_parse_args(PyBytes_AS_STRING(src), (size_t)PyBytes_GET_SIZE(src));
    if (!r) Py_RETURN_NONE;
    return r;
}

PyDoc_STRVAR(parse_args_doc,
             "parse_args(src: bytes) -> (args: tuple, kwargs: dict) | None\n\n"
             "Parse the UTF-8 text of a call's argument list made only of plain literals\n"
             "(decimal numbers, simple quoted strings, True/False/None, lists, tuples, dicts,\n"
             "sets, keyword arguments) without compile(). None when the text is outside that\n"
             "subset or anything fails: the caller then parses it the general way. A result\n"
             "is always what f(<src>) would receive.");

/* ---------------------------------------------------------------- server */

static char **str_list(PyObject *seq) {
    PyObject *f = PySequence_Fast(seq, "expected a list of paths");
    if (!f) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
    char **out = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    for (Py_ssize_t i = 0; out && i < n; i++) {
        const char *s = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(f, i));
        if (!s) { PyMem_Free(out); out = NULL; break; }
        out[i] = strdup(s); /* kept for the life of the zygote */
    }
    Py_DECREF(f);
    return out;
}

static PyObject *py_init(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kws[] = {"ctl_fd", "scratch", "ro_paths", "dev_paths", "run_uid", "run_gid",
                          "namespaces", "in_pid_ns", "nproc", NULL};
    int fd, ns, in_pid, uid, gid;
    unsigned int nproc;
    const char *scratch;
    PyObject *ro, *dev;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "isOOiippI:init", kws, &fd, &scratch, &ro, &dev, &uid,
                                     &gid, &ns, &in_pid, &nproc))
        return NULL;
    if (g_zygote) {
        PyErr_SetString(PyExc_RuntimeError, "init: this zygote is already initialised");
        return NULL;
    }
    if (digit_limit_ready() < 0) return NULL;
    char **rop = str_list(ro), **devp = str_list(dev);
    if (!rop || !devp) return NULL;
    azr_sbx_zygote_config cfg = {0};
    cfg.ctl_fd = fd;
    cfg.run_uid = (uid_t)uid;
    cfg.run_gid = (gid_t)gid;
    cfg.scratch = strdup(scratch);
    cfg.ro_paths = (const char **)rop;
    cfg.dev_paths = (const char **)devp;
    cfg.want_namespaces = ns;
    cfg.in_pid_ns = in_pid;
    cfg.nproc = nproc;
    cfg.before_fork = PyOS_BeforeFork;
    cfg.after_fork_parent = PyOS_AfterFork_Parent;
    cfg.after_fork_child = PyOS_AfterFork_Child;
    azr_status st = azr_sbx_zygote_init(&cfg, &g_zygote);
    if (st != AZR_OK) {
        PyErr_SetString(PyExc_OSError, azr_last_error());
        return NULL;
    }
    return PyLong_FromUnsignedLong(azr_sbx_zygote_layers(g_zygote));
}

static PyObject *py_serve(PyObject *self, PyObject *unused) {
    if (!g_zygote) {
        PyErr_SetString(PyExc_RuntimeError, "serve: call init first");
        return NULL;
    }
    azr_sbx_child_request req;
    int is_child = 0;
    azr_status st = azr_sbx_zygote_serve(g_zygote, &req, &is_child);
    if (st != AZR_OK) {
        PyErr_SetString(PyExc_OSError, azr_last_error());
        return NULL;
    }
    if (!is_child) Py_RETURN_NONE;
    return Py_BuildValue("(Iy#y#y#I)", req.mode, req.a, (Py_ssize_t)req.a_len, req.b,
                         (Py_ssize_t)req.b_len, req.c, (Py_ssize_t)req.c_len, req.result_cap);
}

static PyMethodDef methods[] = {
    {"init", (PyCFunction)(void (*)(void))py_init, METH_VARARGS | METH_KEYWORDS,
     "init(ctl_fd, scratch, ro_paths, dev_paths, run_uid, run_gid, namespaces, in_pid_ns, nproc) -> layers"},
    {"serve", py_serve, METH_NOARGS,
     "serve() -> None at the end, or (mode, a, b, c, result_cap) inside a forked, isolated child"},
    {"reply_value", py_reply_value, METH_VARARGS,
     "reply_value(value, cap) -> status; encode value (literal-only) and send it on the result pipe"},
    {"reply", py_reply, METH_VARARGS, "reply(status, message); send a non-ok result"},
    {"encode", py_encode, METH_VARARGS, "encode(value, cap=1MiB) -> bytes (tests)"},
    {"parse_args", py_parse_args, METH_O, parse_args_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_zygote",
                                    "azr's sandbox fork server (loaded inside zygotes only).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__zygote(void) {
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "OK", AZR_SBX_OK) < 0 ||
        PyModule_AddIntConstant(m, "ERROR", AZR_SBX_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "TIMEOUT", AZR_SBX_TIMEOUT) < 0 ||
        PyModule_AddIntConstant(m, "MEMORY", AZR_SBX_MEMORY) < 0 ||
        PyModule_AddIntConstant(m, "DENIED", AZR_SBX_DENIED) < 0 ||
        PyModule_AddIntConstant(m, "TRUNCATED", AZR_SBX_TRUNCATED) < 0 ||
        PyModule_AddIntConstant(m, "SYNTAX", AZR_SBX_SYNTAX) < 0 ||
        PyModule_AddIntConstant(m, "MODE_RUN", AZR_SBX_MODE_RUN) < 0 ||
        PyModule_AddIntConstant(m, "MODE_VALIDATE", AZR_SBX_MODE_VALIDATE) < 0 ||
        PyModule_AddIntConstant(m, "MODE_PARSE", AZR_SBX_MODE_PARSE) < 0 ||
        PyModule_AddIntConstant(m, "MODE_TESTS", AZR_SBX_MODE_TESTS) < 0 ||
        PyModule_AddIntConstant(m, "MODE_PROBE", AZR_SBX_MODE_PROBE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
