/*
 * py_model.c -- binding for the model layer: the type `azr._core.Model`
 * (a thin owner of one azr_model), and the safetensors read/write helpers.
 * Must not: contain model math; it checks arguments, releases the GIL
 * around C work, and turns azr_status into exceptions. The researcher-facing
 * API is azr/model.py; this type is its engine.
 */
#include "py_common.h"
#include "py_model.h"
#include "../core/cpu.h"

#include <string.h>

#include "../backend/cpu/kernels.h"
#include "../io/safetensors.h"
#include "../model/model.h"

typedef struct {
    PyObject_HEAD azr_model *m;
    int busy; /* a call with the GIL released is running on this model */
} PyModel;

static int parse_cfg(PyObject *kw, azr_model_config *c) {
    static char *kwlist[] = {"vocab_size", "hidden_size", "intermediate_size", "num_layers",
                             "num_heads", "num_kv_heads", "head_dim", "rms_eps", "rope_theta",
                             "qkv_bias", "tie_embeddings", NULL};
    long long V, C, Im;
    int L, H, K, D, qb, tie;
    float eps, theta;
    PyObject *empty = PyTuple_New(0);
    if (!empty) return -1;
    int ok = PyArg_ParseTupleAndKeywords(empty, kw, "LLLiiiiffpp:Model", kwlist, &V, &C, &Im, &L,
                                         &H, &K, &D, &eps, &theta, &qb, &tie);
    Py_DECREF(empty);
    if (!ok) return -1;
    memset(c, 0, sizeof *c);
    c->vocab_size = V;
    c->hidden_size = C;
    c->intermediate_size = Im;
    c->n_layers = L;
    c->n_heads = H;
    c->n_kv_heads = K;
    c->head_dim = D;
    c->rms_eps = eps;
    c->rope_theta = theta;
    c->qkv_bias = qb;
    c->tie_embeddings = tie;
    azr_status st = azr_model_config_check(c);
    if (st) {
        azr_py_raise(st, "bad model config");
        return -1;
    }
    return 0;
}

static int model_init(PyModel *self, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Model() takes keyword arguments only");
        return -1;
    }
    azr_model_config c;
    if (parse_cfg(kw, &c) < 0) return -1;
    if (self->m) {
        azr_model_free(self->m);
        self->m = NULL;
    }
    azr_status st;
    Py_BEGIN_ALLOW_THREADS st = azr_model_new(&c, &self->m);
    Py_END_ALLOW_THREADS if (st) {
        azr_py_raise(st, "cannot create the model");
        return -1;
    }
    return 0;
}

static void model_dealloc(PyModel *self) {
    azr_model_free(self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_ready(PyModel *self) {
    if (!self->m) {
        PyErr_SetString(PyExc_RuntimeError, "Model is not initialized");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Model is in use by another thread; calls on one model must not overlap");
        return -1;
    }
    return 0;
}

static PyObject *view(PyModel *self, float *p, int64_t n) {
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *arr = PyArray_SimpleNewFromData(1, dims, NPY_FLOAT32, p);
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)self) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *model_params(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    return view(self, azr_model_params(self->m), azr_model_num_params(self->m));
}

static PyObject *model_grads(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    azr_status st = azr_model_ensure_grads(self->m);
    if (st) return azr_py_raise(st, "cannot allocate gradients");
    return view(self, azr_model_grads(self->m), azr_model_num_params(self->m));
}

static PyObject *model_adam_state(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    azr_status st = azr_model_ensure_adam(self->m);
    if (st) return azr_py_raise(st, "cannot allocate AdamW state");
    PyObject *m = view(self, azr_model_adam_m(self->m), azr_model_num_params(self->m));
    PyObject *v = view(self, azr_model_adam_v(self->m), azr_model_num_params(self->m));
    if (!m || !v) {
        Py_XDECREF(m);
        Py_XDECREF(v);
        return NULL;
    }
    return Py_BuildValue("(NN)", m, v);
}

static PyObject *model_get_step(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    return PyLong_FromLongLong(azr_model_adam_step_count(self->m));
}

static PyObject *model_set_step(PyModel *self, PyObject *arg) {
    if (check_ready(self) < 0) return NULL;
    long long t = PyLong_AsLongLong(arg);
    if (t == -1 && PyErr_Occurred()) return NULL;
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "AdamW step count must be >= 0");
        return NULL;
    }
    azr_model_set_adam_step_count(self->m, t);
    Py_RETURN_NONE;
}

static PyObject *model_zero_grad(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    azr_model_zero_grad(self->m);
    Py_RETURN_NONE;
}

static PyObject *model_free_acts(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    azr_model_free_activations(self->m);
    Py_RETURN_NONE;
}

static PyObject *model_act_bytes(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    return PyLong_FromLongLong(azr_model_activation_bytes(self->m));
}

static PyObject *model_tensors(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    int n = azr_model_num_tensors(self->m);
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int i = 0; i < n; i++) {
        const azr_tensor_info *t = azr_model_tensor(self->m, i);
        PyObject *shape = t->ndim == 1 ? Py_BuildValue("(L)", (long long)t->shape[0])
                                       : Py_BuildValue("(LL)", (long long)t->shape[0],
                                                       (long long)t->shape[1]);
        PyObject *item = shape ? Py_BuildValue("(sLN)", t->name, (long long)t->offset, shape) : NULL;
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *model_num_params(PyModel *self, PyObject *unused) {
    if (check_ready(self) < 0) return NULL;
    return PyLong_FromLongLong(azr_model_num_params(self->m));
}

/* Convert a sequence of str/PathLike into a C array of UTF-8 paths. */
static PyObject *fspaths(PyObject *seq, const char ***out, int *n) {
    PyObject *fast = PySequence_Fast(seq, "paths must be a sequence");
    if (!fast) return NULL;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    PyObject *encoded = PyList_New(k);
    const char **arr = PyMem_Calloc((size_t)k + 1, sizeof(char *));
    if (!encoded || !arr) {
        Py_DECREF(fast);
        Py_XDECREF(encoded);
        PyMem_Free(arr);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *b = NULL;
        if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(fast, i), &b)) {
            Py_DECREF(fast);
            Py_DECREF(encoded);
            PyMem_Free(arr);
            return NULL;
        }
        PyList_SET_ITEM(encoded, i, b);
        arr[i] = PyBytes_AS_STRING(b);
    }
    Py_DECREF(fast);
    *out = arr;
    *n = (int)k;
    return encoded;
}

static PyObject *model_load(PyModel *self, PyObject *arg) {
    if (check_ready(self) < 0) return NULL;
    const char **paths = NULL;
    int n = 0;
    PyObject *keep = fspaths(arg, &paths, &n);
    if (!keep) return NULL;
    azr_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS st = azr_model_load_safetensors(self->m, paths, n);
    Py_END_ALLOW_THREADS self->busy = 0;
    PyMem_Free(paths);
    Py_DECREF(keep);
    if (st) return azr_py_raise(st, "cannot load weights");
    Py_RETURN_NONE;
}

static PyObject *model_save(PyModel *self, PyObject *arg) {
    if (check_ready(self) < 0) return NULL;
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(arg, &b)) return NULL;
    azr_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS st = azr_model_save_safetensors(self->m, PyBytes_AS_STRING(b));
    Py_END_ALLOW_THREADS self->busy = 0;
    Py_DECREF(b);
    if (st) return azr_py_raise(st, "cannot save weights");
    Py_RETURN_NONE;
}

/* run(ids, targets, weights, lengths, want_logp, want_ent, want_logits)
 * -> (loss or None, logp or None, ent or None, logits or None) */
static PyObject *model_run(PyModel *self, PyObject *args) {
    if (check_ready(self) < 0) return NULL;
    PyObject *ids_o, *tg_o, *w_o, *len_o;
    int want_logp, want_ent, want_logits;
    if (!PyArg_ParseTuple(args, "OOOOppp:run", &ids_o, &tg_o, &w_o, &len_o, &want_logp, &want_ent,
                          &want_logits))
        return NULL;
    PyArrayObject *ids = NULL, *tg = NULL, *w = NULL, *len = NULL;
    PyObject *logp = NULL, *ent = NULL, *logits = NULL, *result = NULL;
    ids = (PyArrayObject *)PyArray_FROMANY(ids_o, NPY_INT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!ids) goto done;
    npy_intp B = PyArray_DIM(ids, 0), T = PyArray_DIM(ids, 1);
    if (tg_o != Py_None) {
        tg = (PyArrayObject *)PyArray_FROMANY(tg_o, NPY_INT32, 2, 2, NPY_ARRAY_IN_ARRAY);
        if (!tg) goto done;
        if (PyArray_DIM(tg, 0) != B || PyArray_DIM(tg, 1) != T) {
            PyErr_SetString(PyExc_ValueError, "targets must have the same shape as ids");
            goto done;
        }
    }
    if (w_o != Py_None) {
        w = (PyArrayObject *)PyArray_FROMANY(w_o, NPY_FLOAT32, 2, 2, NPY_ARRAY_IN_ARRAY);
        if (!w) goto done;
        if (PyArray_DIM(w, 0) != B || PyArray_DIM(w, 1) != T) {
            PyErr_SetString(PyExc_ValueError, "weights must have the same shape as ids");
            goto done;
        }
        if (!tg) {
            PyErr_SetString(PyExc_ValueError, "weights need targets");
            goto done;
        }
    }
    if (len_o != Py_None) {
        len = (PyArrayObject *)PyArray_FROMANY(len_o, NPY_INT64, 1, 1, NPY_ARRAY_IN_ARRAY);
        if (!len) goto done;
        if (PyArray_DIM(len, 0) != B) {
            PyErr_SetString(PyExc_ValueError, "lengths must have one entry per batch row");
            goto done;
        }
    }
    npy_intp d2[2] = {B, T};
    npy_intp d3[3] = {B, T, (npy_intp)azr_model_cfg(self->m)->vocab_size};
    if (want_logp && tg && !(logp = PyArray_SimpleNew(2, d2, NPY_FLOAT32))) goto done;
    if (want_ent && !(ent = PyArray_SimpleNew(2, d2, NPY_FLOAT32))) goto done;
    if (want_logits && !(logits = PyArray_SimpleNew(3, d3, NPY_FLOAT32))) goto done;
    {
        double loss = 0.0;
        azr_status st;
        const int32_t *pids = PyArray_DATA(ids);
        const int32_t *ptg = tg ? PyArray_DATA(tg) : NULL;
        const float *pw = w ? PyArray_DATA(w) : NULL;
        const int64_t *plen = len ? PyArray_DATA(len) : NULL;
        float *plp = logp ? PyArray_DATA((PyArrayObject *)logp) : NULL;
        float *pen = ent ? PyArray_DATA((PyArrayObject *)ent) : NULL;
        float *plg = logits ? PyArray_DATA((PyArrayObject *)logits) : NULL;
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS st = azr_model_run(self->m, pids, ptg, pw, plen, (int64_t)B,
                                                  (int64_t)T, plp, pen, plg, &loss);
        Py_END_ALLOW_THREADS self->busy = 0;
        if (st) {
            azr_py_raise(st, "model run failed");
            goto done;
        }
        PyObject *lossobj = w ? PyFloat_FromDouble(loss) : Py_NewRef(Py_None);
        if (!lossobj) goto done;
        result = Py_BuildValue("(NOOO)", lossobj, logp ? logp : Py_None, ent ? ent : Py_None,
                               logits ? logits : Py_None);
    }
done:
    Py_XDECREF(ids);
    Py_XDECREF(tg);
    Py_XDECREF(w);
    Py_XDECREF(len);
    Py_XDECREF(logp);
    Py_XDECREF(ent);
    Py_XDECREF(logits);
    return result;
}

static PyObject *model_adamw(PyModel *self, PyObject *args) {
    if (check_ready(self) < 0) return NULL;
    float lr, b1, b2, eps, wd, maxn;
    if (!PyArg_ParseTuple(args, "ffffff:adamw_step", &lr, &b1, &b2, &eps, &wd, &maxn)) return NULL;
    double norm = 0.0;
    azr_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS st = azr_model_adamw_step(self->m, lr, b1, b2, eps, wd, maxn, &norm);
    Py_END_ALLOW_THREADS self->busy = 0;
    if (st) return azr_py_raise(st, "AdamW step failed");
    return PyFloat_FromDouble(norm);
}

static PyObject *model_memory_estimate(PyModel *self, PyObject *args) {
    if (check_ready(self) < 0) return NULL;
    long long B, T;
    int training;
    if (!PyArg_ParseTuple(args, "LLp:memory_estimate", &B, &T, &training)) return NULL;
    if (B < 0 || T < 0) {
        PyErr_SetString(PyExc_ValueError, "batch and seq_len must be >= 0");
        return NULL;
    }
    return PyLong_FromLongLong(azr_model_memory_estimate(azr_model_cfg(self->m), B, T, training));
}

static PyMethodDef model_methods[] = {
    {"params", (PyCFunction)model_params, METH_NOARGS, "Flat float32 view of the parameter arena."},
    {"grads", (PyCFunction)model_grads, METH_NOARGS, "Flat float32 view of the gradient arena."},
    {"adam_state", (PyCFunction)model_adam_state, METH_NOARGS, "(m, v) views of AdamW moments."},
    {"adam_step_count", (PyCFunction)model_get_step, METH_NOARGS, "AdamW steps taken."},
    {"set_adam_step_count", (PyCFunction)model_set_step, METH_O, "Set the AdamW step count."},
    {"zero_grad", (PyCFunction)model_zero_grad, METH_NOARGS, "Zero the gradient arena."},
    {"tensors", (PyCFunction)model_tensors, METH_NOARGS, "[(hf_name, offset, shape)] in order."},
    {"free_activations", (PyCFunction)model_free_acts, METH_NOARGS, "Free the activation arena."},
    {"activation_bytes", (PyCFunction)model_act_bytes, METH_NOARGS, "Bytes of activations held."},
    {"num_params", (PyCFunction)model_num_params, METH_NOARGS, "Floats per arena."},
    {"load_safetensors", (PyCFunction)model_load, METH_O, "Load weights from safetensors files."},
    {"save_safetensors", (PyCFunction)model_save, METH_O, "Save weights as F32 safetensors."},
    {"run", (PyCFunction)model_run, METH_VARARGS,
     "run(ids, targets, weights, lengths, want_logp, want_ent, want_logits)"},
    {"adamw_step", (PyCFunction)model_adamw, METH_VARARGS,
     "adamw_step(lr, beta1, beta2, eps, weight_decay, max_grad_norm) -> grad norm"},
    {"memory_estimate", (PyCFunction)model_memory_estimate, METH_VARARGS,
     "memory_estimate(batch, seq_len, training) -> bytes"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject PyModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "azr._core.Model",
    .tp_basicsize = sizeof(PyModel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C model engine (use azr.Model).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)model_init,
    .tp_dealloc = (destructor)model_dealloc,
    .tp_methods = model_methods,
};

/* ---- use from other binding files (py_model.h) --------------------------- */

static PyObject *engine_of(PyObject *obj) {
    if (PyObject_TypeCheck(obj, &PyModelType)) return Py_NewRef(obj);
    PyObject *eng = PyObject_GetAttrString(obj, "_engine");
    if (eng && PyObject_TypeCheck(eng, &PyModelType)) return eng;
    Py_XDECREF(eng);
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "expected an azr.Model, got %.100s", Py_TYPE(obj)->tp_name);
    return NULL;
}

int azr_py_model_acquire(PyObject *obj, azr_model **out) {
    *out = NULL;
    PyObject *eng = engine_of(obj);
    if (!eng) return -1;
    PyModel *pm = (PyModel *)eng;
    int rc = check_ready(pm);
    if (rc == 0) {
        pm->busy = 1;
        *out = pm->m;
    }
    Py_DECREF(eng);
    return rc;
}

void azr_py_model_release(PyObject *obj) {
    PyObject *eng = engine_of(obj);
    if (!eng) {
        PyErr_Clear();
        return;
    }
    ((PyModel *)eng)->busy = 0;
    Py_DECREF(eng);
}

/* ---- module functions ------------------------------------------------------ */

static PyObject *py_memory_estimate(PyObject *mod, PyObject *args, PyObject *kw) {
    long long B, T;
    int training;
    if (!PyArg_ParseTuple(args, "LLp:memory_estimate", &B, &T, &training)) return NULL;
    azr_model_config c;
    if (parse_cfg(kw, &c) < 0) return NULL;
    if (B < 0 || T < 0) {
        PyErr_SetString(PyExc_ValueError, "batch and seq_len must be >= 0");
        return NULL;
    }
    return PyLong_FromLongLong(azr_model_memory_estimate(&c, B, T, training));
}

/* safetensors_read(path) -> (dict name -> float32 ndarray, metadata dict) */
static PyObject *py_st_read(PyObject *mod, PyObject *arg) {
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(arg, &b)) return NULL;
    azr_st_file *f = NULL;
    azr_status st;
    Py_BEGIN_ALLOW_THREADS st = azr_st_open(PyBytes_AS_STRING(b), &f);
    Py_END_ALLOW_THREADS Py_DECREF(b);
    if (st) return azr_py_raise(st, "cannot read safetensors");
    PyObject *tensors = PyDict_New(), *meta = PyDict_New(), *res = NULL;
    if (!tensors || !meta) goto done;
    for (int i = 0; i < f->n_meta; i++) {
        PyObject *v = PyUnicode_DecodeUTF8(f->meta_values[i], (Py_ssize_t)strlen(f->meta_values[i]),
                                           "replace");
        if (!v || PyDict_SetItemString(meta, f->meta_keys[i], v) < 0) {
            Py_XDECREF(v);
            goto done;
        }
        Py_DECREF(v);
    }
    for (int i = 0; i < f->n_tensors; i++) {
        const azr_st_tensor *t = &f->tensors[i];
        npy_intp dims[AZR_ST_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) dims[d] = (npy_intp)t->shape[d];
        PyObject *arr = PyArray_SimpleNew(t->ndim, dims, NPY_FLOAT32);
        if (!arr) goto done;
        st = azr_st_read_f32(f, i, PyArray_DATA((PyArrayObject *)arr));
        if (st || PyDict_SetItemString(tensors, t->name, arr) < 0) {
            Py_DECREF(arr);
            if (st) azr_py_raise(st, "cannot read tensor");
            goto done;
        }
        Py_DECREF(arr);
    }
    res = Py_BuildValue("(OO)", tensors, meta);
done:
    Py_XDECREF(tensors);
    Py_XDECREF(meta);
    azr_st_close(f);
    return res;
}

/* safetensors_write(path, [(name, float32 array)], {str: str}) */
static PyObject *py_st_write(PyObject *mod, PyObject *args) {
    PyObject *path_o, *items, *meta;
    if (!PyArg_ParseTuple(args, "OOO!:safetensors_write", &path_o, &items, &PyDict_Type, &meta))
        return NULL;
    PyObject *pb = NULL;
    if (!PyUnicode_FSConverter(path_o, &pb)) return NULL;
    PyObject *fast = PySequence_Fast(items, "tensors must be a sequence of (name, array)");
    PyObject *keep = PyList_New(0), *res = NULL;
    Py_ssize_t n = fast ? PySequence_Fast_GET_SIZE(fast) : 0;
    Py_ssize_t nm = PyDict_Size(meta);
    const char **names = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    int *ndims = PyMem_Calloc((size_t)n + 1, sizeof(int));
    int64_t(*shapes)[AZR_ST_MAX_DIMS] = PyMem_Calloc((size_t)n + 1, sizeof *shapes);
    const int64_t **shp = PyMem_Calloc((size_t)n + 1, sizeof(int64_t *));
    const float **data = PyMem_Calloc((size_t)n + 1, sizeof(float *));
    const char **mk = PyMem_Calloc((size_t)nm + 1, sizeof(char *));
    const char **mv = PyMem_Calloc((size_t)nm + 1, sizeof(char *));
    if (!fast || !keep) goto done;
    if (!names || !ndims || !shapes || !shp || !data || !mk || !mv) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(fast, i), *name_o, *arr_o;
        if (!PyArg_ParseTuple(it, "UO", &name_o, &arr_o)) goto done;
        names[i] = PyUnicode_AsUTF8(name_o);
        if (!names[i]) goto done;
        PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(arr_o, NPY_FLOAT32, 0, AZR_ST_MAX_DIMS,
                                                            NPY_ARRAY_IN_ARRAY);
        if (!a) goto done;
        if (PyList_Append(keep, (PyObject *)a) < 0) {
            Py_DECREF(a);
            goto done;
        }
        Py_DECREF(a);
        ndims[i] = PyArray_NDIM(a);
        for (int d = 0; d < ndims[i]; d++) shapes[i][d] = PyArray_DIM(a, d);
        shp[i] = shapes[i];
        data[i] = PyArray_DATA(a);
    }
    {
        Py_ssize_t pos = 0, k = 0;
        PyObject *key, *val;
        while (PyDict_Next(meta, &pos, &key, &val)) {
            if (!PyUnicode_Check(key) || !PyUnicode_Check(val)) {
                PyErr_SetString(PyExc_TypeError, "metadata must map str to str");
                goto done;
            }
            mk[k] = PyUnicode_AsUTF8(key);
            mv[k] = PyUnicode_AsUTF8(val);
            if (!mk[k] || !mv[k]) goto done;
            k++;
        }
    }
    {
        azr_status st;
        Py_BEGIN_ALLOW_THREADS st = azr_st_write(PyBytes_AS_STRING(pb), (int)n, names, ndims, shp,
                                                 data, (int)nm, mk, mv);
        Py_END_ALLOW_THREADS if (st) {
            azr_py_raise(st, "cannot write safetensors");
            goto done;
        }
    }
    res = Py_NewRef(Py_None);
done:
    PyMem_Free(names);
    PyMem_Free(ndims);
    PyMem_Free(shapes);
    PyMem_Free(shp);
    PyMem_Free(data);
    PyMem_Free(mk);
    PyMem_Free(mv);
    Py_XDECREF(fast);
    Py_XDECREF(keep);
    Py_DECREF(pb);
    return res;
}

/* gemm_stats(reset=False) -> (seconds, flops) spent in azr_gemm */
static PyObject *py_gemm_stats(PyObject *mod, PyObject *args) {
    int reset = 0;
    if (!PyArg_ParseTuple(args, "|p:gemm_stats", &reset)) return NULL;
    double s = 0, f = 0;
    azr_gemm_stats(&s, &f, reset);
    return Py_BuildValue("(dd)", s, f);
}

/* sgemm_gflops(M, N, K, reps) -> GFLOP/s of azr_gemm (C = A @ B^T) on this machine */
static PyObject *py_sgemm_gflops(PyObject *mod, PyObject *args) {
    long long M, N, K;
    int reps;
    if (!PyArg_ParseTuple(args, "LLLi:sgemm_gflops", &M, &N, &K, &reps)) return NULL;
    if (M <= 0 || N <= 0 || K <= 0 || reps <= 0 || M * K > (1LL << 28) || N * K > (1LL << 28) ||
        M * N > (1LL << 28)) {
        PyErr_SetString(PyExc_ValueError, "sgemm_gflops: sizes must be positive and < 2^28 elements");
        return NULL;
    }
    float *a = azr_calloc((size_t)(M * K) * 4, "bench A"), *b = azr_calloc((size_t)(N * K) * 4, "bench B");
    float *c = azr_calloc((size_t)(M * N) * 4, "bench C");
    double best = 0.0;
    if (a && b && c) {
        for (long long i = 0; i < M * K; i++) a[i] = (float)((i % 7) - 3) * 0.01f;
        for (long long i = 0; i < N * K; i++) b[i] = (float)((i % 5) - 2) * 0.01f;
        Py_BEGIN_ALLOW_THREADS for (int r = 0; r < reps + 1; r++) {
            double s0, s1;
            azr_gemm_stats(&s0, NULL, 0);
            azr_gemm(0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
            azr_gemm_stats(&s1, NULL, 0);
            double g = 2.0 * (double)M * (double)N * (double)K / (s1 - s0) / 1e9;
            if (r > 0 && g > best) best = g;
        }
        Py_END_ALLOW_THREADS
    }
    azr_free(a);
    azr_free(b);
    azr_free(c);
    if (best == 0.0) return PyErr_NoMemory();
    return PyFloat_FromDouble(best);
}

/* gemm(a, b, transa=False, transb=False, precision=None) -> op(a) @ op(b) as
 * float32 through azr_gemm (precision None: the current one; "fp32";
 * "bf16"), for tests and benchmarks. */
static PyObject *py_gemm(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"a", "b", "transa", "transb", "precision", NULL};
    PyObject *ao, *bo, *prec_o = Py_None;
    int ta = 0, tb = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|ppO:gemm", kwlist, &ao, &bo, &ta, &tb, &prec_o))
        return NULL;
    int prec = azr_gemm_get_precision();
    if (prec_o != Py_None) {
        const char *ps = PyUnicode_Check(prec_o) ? PyUnicode_AsUTF8(prec_o) : NULL;
        if (!ps || (strcmp(ps, "fp32") && strcmp(ps, "bf16"))) {
            PyErr_SetString(PyExc_ValueError, "gemm: precision must be None, 'fp32' or 'bf16'");
            return NULL;
        }
        prec = !strcmp(ps, "bf16");
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(ao, NPY_FLOAT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!a) return NULL;
    PyArrayObject *b = (PyArrayObject *)PyArray_FROMANY(bo, NPY_FLOAT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (!b) {
        Py_DECREF(a);
        return NULL;
    }
    npy_intp M = PyArray_DIM(a, ta ? 1 : 0), K = PyArray_DIM(a, ta ? 0 : 1);
    npy_intp Kb = PyArray_DIM(b, tb ? 1 : 0), N = PyArray_DIM(b, tb ? 0 : 1);
    if (K != Kb) {
        PyErr_Format(PyExc_ValueError, "gemm: inner sizes differ (%zd and %zd)", (Py_ssize_t)K,
                     (Py_ssize_t)Kb);
        Py_DECREF(a);
        Py_DECREF(b);
        return NULL;
    }
    npy_intp dims[2] = {M, N};
    PyObject *c = PyArray_ZEROS(2, dims, NPY_FLOAT32, 0);
    if (c && M > 0 && N > 0) {
        const float *A = PyArray_DATA(a), *B = PyArray_DATA(b);
        float *C = PyArray_DATA((PyArrayObject *)c);
        int64_t lda = PyArray_DIM(a, 1), ldb = PyArray_DIM(b, 1);
        Py_BEGIN_ALLOW_THREADS if (prec) azr_gemm_bf16(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f,
                                                       C, N);
        else azr_gemm_f32(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(a);
    Py_DECREF(b);
    return c;
}

static PyObject *py_set_matmul_precision(PyObject *mod, PyObject *arg) {
    int bf16 = PyObject_IsTrue(arg);
    if (bf16 < 0) return NULL;
    azr_gemm_set_precision(bf16);
    Py_RETURN_NONE;
}

static PyObject *py_get_matmul_precision(PyObject *mod, PyObject *unused) {
    return PyBool_FromLong(azr_gemm_get_precision());
}

static PyObject *py_cpu_info(PyObject *mod, PyObject *unused) {
    const azr_cpu_features *f = azr_cpu_detect();
    return Py_BuildValue("{s:s,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:s,s:s}", "brand", f->brand,
                         "avx2", f->avx2 ? Py_True : Py_False, "fma", f->fma ? Py_True : Py_False,
                         "avx512f", f->avx512f ? Py_True : Py_False, "avx512bw",
                         f->avx512bw ? Py_True : Py_False, "avx512vl",
                         f->avx512vl ? Py_True : Py_False, "avx512_bf16",
                         f->avx512_bf16 ? Py_True : Py_False, "amx_tile",
                         f->amx_tile ? Py_True : Py_False, "amx_bf16",
                         f->amx_bf16 ? Py_True : Py_False, "isa_available",
                         azr_isa_name(azr_isa_available()), "isa", azr_isa_name(azr_isa_get()));
}

/* set_isa(name or None): use at most that level; None = the best available */
static PyObject *py_set_isa(PyObject *mod, PyObject *arg) {
    int level = -1;
    if (arg != Py_None) {
        const char *s = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
        if (!s) {
            PyErr_SetString(PyExc_TypeError, "set_isa: expected a level name or None");
            return NULL;
        }
        for (level = 0; level <= AZR_ISA_AVX512_BF16; level++)
            if (!strcmp(s, azr_isa_name(level))) break;
        if (level > AZR_ISA_AVX512_BF16) {
            PyErr_Format(PyExc_ValueError, "set_isa: unknown level %R (known: 'fp32', 'avx512_bf16')", arg);
            return NULL;
        }
    }
    azr_status st = azr_isa_set(level);
    if (st) return azr_py_raise(st, "set_isa failed");
    Py_RETURN_NONE;
}

static PyMethodDef module_fns[] = {
    {"gemm", (PyCFunction)(void (*)(void))py_gemm, METH_VARARGS | METH_KEYWORDS,
     "gemm(a, b, transa=False, transb=False, precision=None) -> op(a) @ op(b) (float32) through "
     "azr's product path; precision 'fp32', 'bf16' or None (the current one)"},
    {"set_matmul_precision", py_set_matmul_precision, METH_O,
     "set_matmul_precision(bf16: bool): the precision of every training and scoring product"},
    {"get_matmul_precision", py_get_matmul_precision, METH_NOARGS,
     "get_matmul_precision() -> True when products take bf16 inputs"},
    {"cpu_info", py_cpu_info, METH_NOARGS, "cpu_info() -> dict of the CPU's features and the level in use"},
    {"set_isa", py_set_isa, METH_O, "set_isa(name or None): the highest instruction-set level to use"},
    {"gemm_stats", py_gemm_stats, METH_VARARGS,
     "gemm_stats(reset=False) -> (seconds, flops) spent in azr's matrix products"},
    {"sgemm_gflops", py_sgemm_gflops, METH_VARARGS,
     "sgemm_gflops(M, N, K, reps) -> best GFLOP/s of azr's sgemm path"},
    {"memory_estimate", (PyCFunction)(void (*)(void))py_memory_estimate,
     METH_VARARGS | METH_KEYWORDS,
     "memory_estimate(batch, seq_len, training, **config) -> bytes"},
    {"safetensors_read", py_st_read, METH_O,
     "safetensors_read(path) -> ({name: float32 array}, metadata)"},
    {"safetensors_write", py_st_write, METH_VARARGS,
     "safetensors_write(path, [(name, array)], metadata) writes F32 tensors"},
    {NULL, NULL, 0, NULL}};

int azr_py_init_model(PyObject *m) {
    if (PyType_Ready(&PyModelType) < 0) return -1;
    if (PyModule_AddObjectRef(m, "Model", (PyObject *)&PyModelType) < 0) return -1;
    if (PyModule_AddFunctions(m, module_fns) < 0) return -1;
    return 0;
}
