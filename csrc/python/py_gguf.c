/*
 * py_gguf.c -- binding for the GGUF reader (csrc/io/gguf.h, dequant.h).
 *
 * Exposes `azr._core.GGUFFile(path)`: metadata as Python values (numeric
 * arrays as NumPy arrays, string arrays as lists), tensor infos as dicts,
 * and dequantisation of one tensor into a float32 NumPy array with the GIL
 * released; plus `azr._core.dequantize(type, raw, n)` for raw ggml blocks
 * and `azr._core.ggml_types()`.
 * Must not: interpret metadata (azr/gguf.py does), hold logic beyond
 * argument checks and conversions.
 */
#include "py_common.h"

#include <string.h>

#include "../io/dequant.h"
#include "../io/gguf.h"

typedef struct {
    PyObject_HEAD
    azr_gguf *g;
    int busy; /* dequantize calls in flight with the GIL released */
} GGUFFileObject;

static int gguf_check_open(GGUFFileObject *self) {
    if (!self->g) {
        PyErr_SetString(PyExc_ValueError, "GGUFFile is closed");
        return -1;
    }
    return 0;
}

static int GGUFFile_init(GGUFFileObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", NULL};
    PyObject *pathobj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&:GGUFFile", kwlist, PyUnicode_FSConverter, &pathobj))
        return -1;
    if (self->g) {
        if (self->busy) {
            Py_DECREF(pathobj);
            PyErr_SetString(PyExc_RuntimeError, "GGUFFile is in use by another thread");
            return -1;
        }
        azr_gguf_close(self->g);
        self->g = NULL;
    }
    const char *path = PyBytes_AS_STRING(pathobj);
    azr_gguf *g = NULL;
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    st = azr_gguf_open(path, &g);
    Py_END_ALLOW_THREADS
    Py_DECREF(pathobj);
    if (st != AZR_OK) {
        azr_py_raise(st, "cannot open GGUF file");
        return -1;
    }
    self->g = g;
    return 0;
}

static void GGUFFile_dealloc(GGUFFileObject *self) {
    azr_gguf_close(self->g);
    self->g = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *GGUFFile_close(GGUFFileObject *self, PyObject *unused) {
    (void)unused;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "GGUFFile.close: a dequantize call is still running");
        return NULL;
    }
    azr_gguf_close(self->g);
    self->g = NULL;
    Py_RETURN_NONE;
}

static PyObject *GGUFFile_enter(PyObject *self, PyObject *unused) {
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *GGUFFile_exit(GGUFFileObject *self, PyObject *args) {
    (void)args;
    return GGUFFile_close(self, NULL);
}

/* A string from the map: str if valid UTF-8, else bytes. */
static PyObject *map_string(const char *p, uint64_t len) {
    if (len > (uint64_t)PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_OverflowError, "GGUF string too long");
        return NULL;
    }
    PyObject *s = PyUnicode_DecodeUTF8(p, (Py_ssize_t)len, "strict");
    if (!s && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        s = PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
    }
    return s;
}

static int npy_type_for(uint32_t t) {
    switch (t) {
    case AZR_GGUF_UINT8: return NPY_UINT8;
    case AZR_GGUF_INT8: return NPY_INT8;
    case AZR_GGUF_UINT16: return NPY_UINT16;
    case AZR_GGUF_INT16: return NPY_INT16;
    case AZR_GGUF_UINT32: return NPY_UINT32;
    case AZR_GGUF_INT32: return NPY_INT32;
    case AZR_GGUF_FLOAT32: return NPY_FLOAT32;
    case AZR_GGUF_BOOL: return NPY_BOOL;
    case AZR_GGUF_UINT64: return NPY_UINT64;
    case AZR_GGUF_INT64: return NPY_INT64;
    case AZR_GGUF_FLOAT64: return NPY_FLOAT64;
    default: return -1;
    }
}

static PyObject *kv_value(azr_gguf *g, int64_t idx) {
    const azr_gguf_kv *kv = &g->kv[idx];
    switch (kv->type) {
    case AZR_GGUF_UINT8: case AZR_GGUF_UINT16: case AZR_GGUF_UINT32: case AZR_GGUF_UINT64:
        return PyLong_FromUnsignedLongLong(kv->v.u);
    case AZR_GGUF_INT8: case AZR_GGUF_INT16: case AZR_GGUF_INT32: case AZR_GGUF_INT64:
        return PyLong_FromLongLong(kv->v.i);
    case AZR_GGUF_FLOAT32: case AZR_GGUF_FLOAT64:
        return PyFloat_FromDouble(kv->v.f);
    case AZR_GGUF_BOOL:
        return PyBool_FromLong((long)kv->v.u);
    case AZR_GGUF_STRING: {
        const char *p;
        uint64_t len;
        azr_status st = azr_gguf_get_string(g, idx, &p, &len);
        if (st != AZR_OK) return azr_py_raise(st, "bad string");
        return map_string(p, len);
    }
    case AZR_GGUF_ARRAY: break;
    default:
        PyErr_Format(PyExc_ValueError, "metadata '%s' has unknown type %u", kv->key, (unsigned)kv->type);
        return NULL;
    }
    if (kv->elem_type == AZR_GGUF_STRING) {
        if (kv->count > (uint64_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
        PyObject *list = PyList_New((Py_ssize_t)kv->count);
        if (!list) return NULL;
        for (uint64_t i = 0; i < kv->count; i++) {
            const char *p;
            uint64_t len;
            azr_status st = azr_gguf_get_array_string(g, idx, i, &p, &len);
            PyObject *s = st == AZR_OK ? map_string(p, len) : azr_py_raise(st, "bad string");
            if (!s) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, s);
        }
        return list;
    }
    if (kv->elem_type == AZR_GGUF_ARRAY) {
        PyErr_Format(azr_py_UnsupportedError,
                     "metadata '%s' is an array of arrays, which azr does not decode", kv->key);
        return NULL;
    }
    int nt = npy_type_for(kv->elem_type);
    const void *p;
    size_t es;
    azr_status st = azr_gguf_get_array_data(g, idx, &p, &es);
    if (st != AZR_OK) return azr_py_raise(st, "bad array");
    npy_intp dims[1] = {(npy_intp)kv->count};
    PyObject *arr = PyArray_SimpleNew(1, dims, nt);
    if (!arr) return NULL;
    if (kv->count) memcpy(PyArray_DATA((PyArrayObject *)arr), p, kv->count * es);
    return arr;
}

static PyObject *GGUFFile_metadata(GGUFFileObject *self, PyObject *unused) {
    (void)unused;
    if (gguf_check_open(self) < 0) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (uint64_t i = 0; i < self->g->n_kv; i++) {
        PyObject *v = kv_value(self->g, (int64_t)i);
        if (!v || PyDict_SetItemString(d, self->g->kv[i].key, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *GGUFFile_metadata_types(GGUFFileObject *self, PyObject *unused) {
    (void)unused;
    if (gguf_check_open(self) < 0) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (uint64_t i = 0; i < self->g->n_kv; i++) {
        const azr_gguf_kv *kv = &self->g->kv[i];
        PyObject *v = kv->type == AZR_GGUF_ARRAY
                          ? PyUnicode_FromFormat("array[%s]", azr_gguf_value_type_name(kv->elem_type))
                          : PyUnicode_FromString(azr_gguf_value_type_name(kv->type));
        if (!v || PyDict_SetItemString(d, kv->key, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *tensor_info(const azr_gguf_tensor *t) {
    PyObject *shape = PyTuple_New(t->n_dims);
    if (!shape) return NULL;
    for (uint32_t d = 0; d < t->n_dims; d++) /* NumPy order: ne reversed */
        PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(t->ne[t->n_dims - 1 - d]));
    const char *tn = azr_ggml_type_name(t->type);
    return Py_BuildValue("{s:s,s:I,s:s,s:N,s:K,s:K,s:L,s:O}", "name", t->name, "type", (unsigned)t->type,
                         "type_name", tn ? tn : "?", "shape", shape, "offset",
                         (unsigned long long)t->offset, "nbytes", (unsigned long long)t->nbytes,
                         "n_elements", (long long)t->n_elements, "supported",
                         azr_ggml_can_dequantize(t->type) ? Py_True : Py_False);
}

static PyObject *GGUFFile_tensors(GGUFFileObject *self, PyObject *unused) {
    (void)unused;
    if (gguf_check_open(self) < 0) return NULL;
    PyObject *list = PyList_New((Py_ssize_t)self->g->n_tensors);
    if (!list) return NULL;
    for (uint64_t i = 0; i < self->g->n_tensors; i++) {
        PyObject *t = tensor_info(&self->g->tensors[i]);
        if (!t) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

/* Resolve a tensor given by name (str) or index (int); -1 with an error set. */
static int64_t tensor_index(GGUFFileObject *self, PyObject *key) {
    if (PyUnicode_Check(key)) {
        const char *name = PyUnicode_AsUTF8(key);
        if (!name) return -1;
        int64_t i = azr_gguf_find_tensor(self->g, name);
        if (i < 0) PyErr_Format(PyExc_KeyError, "no tensor named '%s' in %s", name, self->g->path);
        return i;
    }
    long long i = PyLong_AsLongLong(key);
    if (i == -1 && PyErr_Occurred()) return -1;
    if (i < 0 || (uint64_t)i >= self->g->n_tensors) {
        PyErr_Format(PyExc_IndexError, "tensor index %lld out of range (%llu tensors)", i,
                     (unsigned long long)self->g->n_tensors);
        return -1;
    }
    return (int64_t)i;
}

static PyObject *GGUFFile_dequantize(GGUFFileObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"tensor", "out", NULL};
    PyObject *key, *out = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:dequantize", kwlist, &key, &out)) return NULL;
    if (gguf_check_open(self) < 0) return NULL;
    int64_t idx = tensor_index(self, key);
    if (idx < 0) return NULL;
    const azr_gguf_tensor *t = &self->g->tensors[idx];
    npy_intp dims[AZR_GGUF_MAX_DIMS];
    for (uint32_t d = 0; d < t->n_dims; d++) dims[d] = (npy_intp)t->ne[t->n_dims - 1 - d];
    PyArrayObject *arr;
    if (out == Py_None) {
        arr = (PyArrayObject *)PyArray_SimpleNew((int)t->n_dims, dims, NPY_FLOAT32);
        if (!arr) return NULL;
    } else {
        if (!PyArray_Check(out) || PyArray_TYPE((PyArrayObject *)out) != NPY_FLOAT32 ||
            !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)out) || !PyArray_ISWRITEABLE((PyArrayObject *)out)) {
            PyErr_SetString(PyExc_TypeError, "dequantize: out must be a writable C-contiguous float32 array");
            return NULL;
        }
        if (PyArray_SIZE((PyArrayObject *)out) != (npy_intp)t->n_elements) {
            PyErr_Format(PyExc_ValueError, "dequantize: tensor '%s' has %lld elements, out has %lld",
                         t->name, (long long)t->n_elements, (long long)PyArray_SIZE((PyArrayObject *)out));
            return NULL;
        }
        arr = (PyArrayObject *)Py_NewRef(out);
    }
    float *dst = (float *)PyArray_DATA(arr);
    azr_status st;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    st = azr_gguf_dequantize(self->g, idx, dst, t->n_elements);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (st != AZR_OK) {
        Py_DECREF(arr);
        return azr_py_raise(st, "dequantize failed");
    }
    return (PyObject *)arr;
}

static PyObject *GGUFFile_raw(GGUFFileObject *self, PyObject *key) {
    if (gguf_check_open(self) < 0) return NULL;
    int64_t idx = tensor_index(self, key);
    if (idx < 0) return NULL;
    const azr_gguf_tensor *t = &self->g->tensors[idx];
    npy_intp dims[1] = {(npy_intp)t->nbytes};
    PyObject *arr = PyArray_SimpleNew(1, dims, NPY_UINT8);
    if (!arr) return NULL;
    if (t->nbytes) memcpy(PyArray_DATA((PyArrayObject *)arr), self->g->data + t->offset, t->nbytes);
    return arr;
}

static PyObject *GGUFFile_get_path(GGUFFileObject *self, void *c) {
    (void)c;
    if (gguf_check_open(self) < 0) return NULL;
    return PyUnicode_DecodeFSDefault(self->g->path);
}

#define GGUF_U64_GETTER(field)                                                  \
    static PyObject *GGUFFile_get_##field(GGUFFileObject *self, void *c) {      \
        (void)c;                                                                \
        if (gguf_check_open(self) < 0) return NULL;                             \
        return PyLong_FromUnsignedLongLong((unsigned long long)self->g->field); \
    }
GGUF_U64_GETTER(version)
GGUF_U64_GETTER(alignment)
GGUF_U64_GETTER(data_offset)
GGUF_U64_GETTER(n_tensors)
GGUF_U64_GETTER(n_kv)
GGUF_U64_GETTER(size)

static PyObject *GGUFFile_get_closed(GGUFFileObject *self, void *c) {
    (void)c;
    return PyBool_FromLong(self->g == NULL);
}

static PyGetSetDef GGUFFile_getset[] = {
    {"path", (getter)GGUFFile_get_path, NULL, "The file's path.", NULL},
    {"version", (getter)GGUFFile_get_version, NULL, "GGUF version (2 or 3).", NULL},
    {"alignment", (getter)GGUFFile_get_alignment, NULL, "Data alignment in bytes.", NULL},
    {"data_offset", (getter)GGUFFile_get_data_offset, NULL, "Absolute offset of the data section.", NULL},
    {"n_tensors", (getter)GGUFFile_get_n_tensors, NULL, "Number of tensors.", NULL},
    {"n_kv", (getter)GGUFFile_get_n_kv, NULL, "Number of metadata entries.", NULL},
    {"size", (getter)GGUFFile_get_size, NULL, "File size in bytes.", NULL},
    {"closed", (getter)GGUFFile_get_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef GGUFFile_methods[] = {
    {"metadata", (PyCFunction)GGUFFile_metadata, METH_NOARGS,
     "metadata()\n--\n\nAll metadata as a dict: ints, floats, bools, str (bytes if not UTF-8), "
     "numeric arrays as NumPy arrays, string arrays as lists."},
    {"metadata_types", (PyCFunction)GGUFFile_metadata_types, METH_NOARGS,
     "metadata_types()\n--\n\nThe GGUF value type of each key ('uint32', 'array[string]', ...)."},
    {"tensors", (PyCFunction)GGUFFile_tensors, METH_NOARGS,
     "tensors()\n--\n\nTensor infos in file order: dicts with name, type, type_name, shape (NumPy "
     "order), offset (absolute), nbytes, n_elements, supported."},
    {"dequantize", (PyCFunction)(void (*)(void))GGUFFile_dequantize, METH_VARARGS | METH_KEYWORDS,
     "dequantize(tensor, out=None)\n--\n\nThe tensor (name or index) as float32 with its NumPy "
     "shape; fills `out` (C-contiguous float32 of the same size) if given. GIL released."},
    {"raw", (PyCFunction)GGUFFile_raw, METH_O,
     "raw(tensor)\n--\n\nA copy of the tensor's stored bytes as a uint8 array."},
    {"close", (PyCFunction)GGUFFile_close, METH_NOARGS, "close()\n--\n\nUnmap the file."},
    {"__enter__", (PyCFunction)GGUFFile_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)GGUFFile_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject GGUFFileType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "azr._core.GGUFFile",
    .tp_doc = "GGUFFile(path)\n--\n\nA GGUF (v2/v3) file mapped read-only and validated.",
    .tp_basicsize = sizeof(GGUFFileObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)GGUFFile_init,
    .tp_dealloc = (destructor)GGUFFile_dealloc,
    .tp_methods = GGUFFile_methods,
    .tp_getset = GGUFFile_getset,
};

static PyObject *py_dequantize(PyObject *self, PyObject *args, PyObject *kwds) {
    (void)self;
    static char *kwlist[] = {"type", "data", "n", "reference", NULL};
    unsigned int type;
    Py_buffer buf;
    long long n;
    int reference = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Iy*L|p:dequantize", kwlist, &type, &buf, &n, &reference))
        return NULL;
    if (n < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "dequantize: n must be >= 0");
        return NULL;
    }
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *arr = PyArray_SimpleNew(1, dims, NPY_FLOAT32);
    if (!arr) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    float *dst = (float *)PyArray_DATA((PyArrayObject *)arr);
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    st = reference ? azr_dequantize_ref(type, buf.buf, (size_t)buf.len, dst, (int64_t)n)
                   : azr_dequantize(type, buf.buf, (size_t)buf.len, dst, (int64_t)n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (st != AZR_OK) {
        Py_DECREF(arr);
        return azr_py_raise(st, "dequantize failed");
    }
    return arr;
}

static PyObject *py_ggml_types(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (uint32_t t = 0; t < AZR_GGML_TYPE_LIMIT; t++) {
        const char *name = azr_ggml_type_name(t);
        if (!name) continue;
        PyObject *v = Py_BuildValue("{s:I,s:L,s:L,s:O}", "id", t, "block_elems",
                                    (long long)azr_ggml_block_elems(t), "block_bytes",
                                    (long long)azr_ggml_block_bytes(t), "supported",
                                    azr_ggml_can_dequantize(t) ? Py_True : Py_False);
        if (!v || PyDict_SetItemString(d, name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef gguf_methods[] = {
    {"dequantize", (PyCFunction)(void (*)(void))py_dequantize, METH_VARARGS | METH_KEYWORDS,
     "dequantize(type, data, n, reference=False)\n--\n\nDecode n elements of ggml type id `type` "
     "from the bytes-like `data` into a float32 array. reference=True uses the serial reference "
     "loop. GIL released."},
    {"ggml_types", py_ggml_types, METH_NOARGS,
     "ggml_types()\n--\n\n{name: {id, block_elems, block_bytes, supported}} for known ggml types."},
    {NULL, NULL, 0, NULL}};

int azr_py_init_gguf(PyObject *m) {
    if (PyType_Ready(&GGUFFileType) < 0) return -1;
    if (PyModule_AddObjectRef(m, "GGUFFile", (PyObject *)&GGUFFileType) < 0) return -1;
    return PyModule_AddFunctions(m, gguf_methods);
}
