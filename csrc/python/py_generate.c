/*
 * py_generate.c -- binding for the rollout engine: `azr._core.generate`.
 * Must not: contain scheduling or sampling logic; it converts arguments,
 * allocates the output arrays, releases the GIL around azr_gen_run, and
 * re-acquires it briefly once per step to check for KeyboardInterrupt
 * (PyErr_CheckSignals) and to call the progress callback.
 * The researcher-facing API is azr/generate.py.
 */
#include "py_common.h"

#include <time.h>

#include "../generate/gen_kernels.h"
#include "../generate/generate.h"
#include "py_model.h"

/* ---- the packed-weight cache as a capsule ----
 * A capsule named "azr.gen_weights" holding a gen_cache: the C cache plus
 * a busy flag (set with the GIL held) so two runs never share it at once. */
#define WEIGHTS_CAPSULE "azr.gen_weights"

typedef struct {
    azr_gen_weights *w;
    int busy;
} gen_cache;

static void cache_destroy(PyObject *cap) {
    gen_cache *c = PyCapsule_GetPointer(cap, WEIGHTS_CAPSULE);
    if (!c) {
        PyErr_Clear();
        return;
    }
    azr_gen_weights_free(c->w);
    PyMem_Free(c);
}

static gen_cache *cache_of(PyObject *o) {
    if (!PyCapsule_IsValid(o, WEIGHTS_CAPSULE)) {
        PyErr_SetString(PyExc_TypeError,
                        "generate: weights must be a cache made by azr._core.gen_weights_new()");
        return NULL;
    }
    return PyCapsule_GetPointer(o, WEIGHTS_CAPSULE);
}

static PyObject *py_weights_new(PyObject *mod, PyObject *noargs) {
    (void)mod;
    (void)noargs;
    gen_cache *c = PyMem_Calloc(1, sizeof *c);
    if (!c) return PyErr_NoMemory();
    c->w = azr_gen_weights_new();
    if (!c->w) {
        PyMem_Free(c);
        return azr_py_raise(AZR_ERR_NOMEM, "gen_weights_new failed");
    }
    PyObject *cap = PyCapsule_New(c, WEIGHTS_CAPSULE, cache_destroy);
    if (!cap) {
        azr_gen_weights_free(c->w);
        PyMem_Free(c);
    }
    return cap;
}

static PyObject *py_weights_info(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:gen_weights_info", &cap)) return NULL;
    gen_cache *c = cache_of(cap);
    if (!c) return NULL;
    return Py_BuildValue("(LL)", (long long)azr_gen_weights_bytes(c->w),
                         (long long)azr_gen_weights_packs(c->w));
}

static PyObject *py_weights_hash(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *model_o;
    if (!PyArg_ParseTuple(args, "O:gen_weights_hash", &model_o)) return NULL;
    azr_model *m = NULL;
    if (azr_py_model_acquire(model_o, &m) < 0) return NULL;
    uint64_t h;
    Py_BEGIN_ALLOW_THREADS h = azr_gen_weights_hash(m);
    Py_END_ALLOW_THREADS
    azr_py_model_release(model_o);
    return PyLong_FromUnsignedLongLong(h);
}

/* ---- the prefix cache as a capsule ("azr.gen_prefix"), same busy rule ---- */
#define PREFIX_CAPSULE "azr.gen_prefix"

typedef struct {
    azr_gen_prefix *pc;
    int busy;
} gen_prefix_box;

static void prefix_destroy(PyObject *cap) {
    gen_prefix_box *c = PyCapsule_GetPointer(cap, PREFIX_CAPSULE);
    if (!c) {
        PyErr_Clear();
        return;
    }
    azr_gen_prefix_free(c->pc);
    PyMem_Free(c);
}

static gen_prefix_box *prefix_of(PyObject *o) {
    if (!PyCapsule_IsValid(o, PREFIX_CAPSULE)) {
        PyErr_SetString(PyExc_TypeError,
                        "generate: prefix must be a cache made by azr._core.gen_prefix_new()");
        return NULL;
    }
    return PyCapsule_GetPointer(o, PREFIX_CAPSULE);
}

static PyObject *py_prefix_new(PyObject *mod, PyObject *args) {
    (void)mod;
    long long max_bytes;
    if (!PyArg_ParseTuple(args, "L:gen_prefix_new", &max_bytes)) return NULL;
    if (max_bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "gen_prefix_new: max_bytes must be >= 0");
        return NULL;
    }
    gen_prefix_box *c = PyMem_Calloc(1, sizeof *c);
    if (!c) return PyErr_NoMemory();
    c->pc = azr_gen_prefix_new(max_bytes);
    if (!c->pc) {
        PyMem_Free(c);
        return azr_py_raise(AZR_ERR_NOMEM, "gen_prefix_new failed");
    }
    PyObject *cap = PyCapsule_New(c, PREFIX_CAPSULE, prefix_destroy);
    if (!cap) {
        azr_gen_prefix_free(c->pc);
        PyMem_Free(c);
    }
    return cap;
}

static PyObject *py_prefix_info(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:gen_prefix_info", &cap)) return NULL;
    gen_prefix_box *c = prefix_of(cap);
    if (!c) return NULL;
    azr_gen_prefix_stats s;
    azr_gen_prefix_get_stats(c->pc, &s);
    return Py_BuildValue("{s:L,s:L,s:i,s:L,s:L,s:L,s:L,s:L}", "capacity_blocks",
                         (long long)s.capacity_blocks, "used_blocks", (long long)s.used_blocks,
                         "block_size", (int)s.block_size, "prompt_tokens",
                         (long long)s.prompt_tokens, "reused_tokens", (long long)s.reused_tokens,
                         "inserted_blocks", (long long)s.inserted_blocks, "evicted_blocks",
                         (long long)s.evicted_blocks, "flushes", (long long)s.flushes);
}

static PyObject *py_prefix_clear(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *cap;
    if (!PyArg_ParseTuple(args, "O:gen_prefix_clear", &cap)) return NULL;
    gen_prefix_box *c = prefix_of(cap);
    if (!c) return NULL;
    if (c->busy) {
        PyErr_SetString(PyExc_RuntimeError, "gen_prefix_clear: the cache is in use by a generate call");
        return NULL;
    }
    azr_gen_prefix_clear(c->pc);
    Py_RETURN_NONE;
}

static PyObject *py_sum_floats(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *o;
    if (!PyArg_ParseTuple(args, "O:gen_sum_floats", &o)) return NULL;
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(o, NPY_FLOAT32, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (!a) return NULL;
    double s;
    const float *p = PyArray_DATA(a);
    int64_t n = (int64_t)PyArray_DIM(a, 0);
    Py_BEGIN_ALLOW_THREADS s = azr_gen_sum_floats(p, n);
    Py_END_ALLOW_THREADS
    Py_DECREF(a);
    return PyFloat_FromDouble(s);
}

typedef struct {
    PyObject *callback; /* callable or NULL */
    double interval;    /* seconds between callback calls */
    double last;
} cb_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Called by the engine once per step without the GIL: take it, check
 * signals, maybe report progress, release it. Nonzero cancels the run with
 * the Python exception left set. */
static int step_callback(void *ctx, const azr_gen_progress *p) {
    cb_state *c = ctx;
    int stop = 0;
    PyGILState_STATE g = PyGILState_Ensure();
    if (PyErr_CheckSignals() < 0) {
        stop = 1;
    } else if (c->callback) {
        double t = now_s();
        if (t - c->last >= c->interval || p->seqs_done == p->seqs_total) {
            c->last = t;
            PyObject *r = PyObject_CallFunction(c->callback, "LLLLLi", (long long)p->steps,
                                                (long long)p->tokens_generated,
                                                (long long)p->prompt_tokens,
                                                (long long)p->seqs_done,
                                                (long long)p->seqs_total, (int)p->active_slots);
            if (!r) stop = 1;
            Py_XDECREF(r);
        }
    }
    PyGILState_Release(g);
    return stop;
}

static PyArrayObject *as_array(PyObject *o, int type, const char *what) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(o, type, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (!a) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "generate: %s must be a 1-D array of %s", what,
                     type == NPY_INT32 ? "int32" : "int64");
    }
    return a;
}

static PyObject *py_generate(PyObject *mod, PyObject *args, PyObject *kw) {
    (void)mod;
    static char *kwlist[] = {"model", "ids", "offsets", "n", "max_new_tokens", "temperature",
                             "top_p", "top_k", "seed", "eos", "stop_bytes", "stop_offsets",
                             "token_bytes", "token_offsets", "max_slots", "kv_blocks",
                             "block_size", "prefill_chunk", "max_context", "callback",
                             "callback_interval", "request_keys", "weights", "prefix", NULL};
    PyObject *model_o, *ids_o, *off_o, *eos_o, *sb_o, *so_o, *tb_o, *to_o, *cb_o;
    int n, max_new, top_k, max_slots, block_size, prefill_chunk, max_context;
    float temperature, top_p;
    unsigned long long seed;
    long long kv_blocks;
    double interval = 0.2;
    PyObject *keys_o = Py_None, *weights_o = Py_None, *prefix_o = Py_None;
    gen_cache *cache = NULL;
    gen_prefix_box *pbox = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOiiffiKOOOOOiLiiiO|dOOO:generate", kwlist, &model_o,
                                     &ids_o, &off_o, &n, &max_new, &temperature, &top_p, &top_k,
                                     &seed, &eos_o, &sb_o, &so_o, &tb_o, &to_o, &max_slots,
                                     &kv_blocks, &block_size, &prefill_chunk, &max_context, &cb_o,
                                     &interval, &keys_o, &weights_o, &prefix_o))
        return NULL;
    if (prefix_o != Py_None) {
        if (!(pbox = prefix_of(prefix_o))) return NULL;
        if (weights_o == Py_None) {
            PyErr_SetString(PyExc_ValueError, "generate: prefix needs weights (a packed-weight cache)");
            return NULL;
        }
        if (pbox->busy) {
            PyErr_SetString(PyExc_RuntimeError,
                            "generate: this prefix cache is in use by another generate call");
            return NULL;
        }
    }
    if (weights_o != Py_None) {
        if (!(cache = cache_of(weights_o))) return NULL;
        if (cache->busy) {
            PyErr_SetString(PyExc_RuntimeError,
                            "generate: this weight cache is in use by another generate call");
            return NULL;
        }
    }
    if (cb_o != Py_None && !PyCallable_Check(cb_o)) {
        PyErr_SetString(PyExc_TypeError, "generate: callback must be callable or None");
        return NULL;
    }
    PyArrayObject *ids = NULL, *off = NULL, *eos = NULL, *so = NULL, *to = NULL, *keys = NULL;
    PyObject *tokens = NULL, *lp = NULL, *mlp = NULL, *lens = NULL, *fin = NULL, *res = NULL;
    azr_model *m = NULL;
    if (!(ids = as_array(ids_o, NPY_INT32, "ids"))) goto done;
    if (!(off = as_array(off_o, NPY_INT64, "offsets"))) goto done;
    if (!(eos = as_array(eos_o, NPY_INT32, "eos"))) goto done;
    npy_intp R = PyArray_DIM(off, 0) - 1;
    if (R < 1) {
        PyErr_SetString(PyExc_ValueError, "generate: no prompts");
        goto done;
    }
    const int64_t *po = PyArray_DATA(off);
    if (po[0] != 0 || po[R] != (int64_t)PyArray_DIM(ids, 0)) {
        PyErr_SetString(PyExc_ValueError, "generate: offsets must start at 0 and end at len(ids)");
        goto done;
    }
    for (npy_intp r = 0; r < R; r++)
        if (po[r + 1] < po[r]) {
            PyErr_SetString(PyExc_ValueError, "generate: offsets must be non-decreasing");
            goto done;
        }
    if (keys_o != Py_None) {
        keys = (PyArrayObject *)PyArray_FROMANY(keys_o, NPY_UINT64, 1, 1, NPY_ARRAY_IN_ARRAY);
        if (!keys) goto done;
        if (PyArray_DIM(keys, 0) != R) {
            PyErr_SetString(PyExc_ValueError, "generate: request_keys needs one entry per prompt");
            goto done;
        }
    }
    const char *stop_bytes = NULL, *tok_bytes = NULL;
    Py_ssize_t n_stop = 0;
    if (sb_o != Py_None) {
        if (!PyBytes_Check(sb_o)) {
            PyErr_SetString(PyExc_TypeError, "generate: stop_bytes must be bytes");
            goto done;
        }
        if (!(so = as_array(so_o, NPY_INT64, "stop_offsets"))) goto done;
        n_stop = PyArray_DIM(so, 0) - 1;
        const int64_t *sop = PyArray_DATA(so);
        if (n_stop < 0 || sop[0] != 0 || sop[n_stop] != PyBytes_GET_SIZE(sb_o)) {
            PyErr_SetString(PyExc_ValueError, "generate: stop_offsets do not match stop_bytes");
            goto done;
        }
        for (Py_ssize_t k = 0; k < n_stop; k++)
            if (sop[k + 1] < sop[k]) {
                PyErr_SetString(PyExc_ValueError, "generate: stop_offsets must be non-decreasing");
                goto done;
            }
        stop_bytes = PyBytes_AS_STRING(sb_o);
    }
    if (azr_py_model_acquire(model_o, &m) < 0) {
        m = NULL;
        goto done;
    }
    if (cache) cache->busy = 1;
    if (pbox) pbox->busy = 1;
    const azr_model_config *cfg = azr_model_cfg(m);
    if (tb_o != Py_None) {
        if (!PyBytes_Check(tb_o)) {
            PyErr_SetString(PyExc_TypeError, "generate: token_bytes must be bytes");
            goto done;
        }
        if (!(to = as_array(to_o, NPY_INT64, "token_offsets"))) goto done;
        const int64_t *top = PyArray_DATA(to);
        if (PyArray_DIM(to, 0) != cfg->vocab_size + 1 || top[0] != 0 ||
            top[cfg->vocab_size] != PyBytes_GET_SIZE(tb_o)) {
            PyErr_Format(PyExc_ValueError,
                         "generate: the token byte table must have %lld entries and offsets "
                         "matching its bytes",
                         (long long)cfg->vocab_size);
            goto done;
        }
        for (int64_t v = 0; v < cfg->vocab_size; v++)
            if (top[v + 1] < top[v]) {
                PyErr_SetString(PyExc_ValueError, "generate: token_offsets must be non-decreasing");
                goto done;
            }
        tok_bytes = PyBytes_AS_STRING(tb_o);
    }
    if (n < 1 || max_new < 1) {
        PyErr_Format(PyExc_ValueError, "generate: n (%d) and max_new_tokens (%d) must be >= 1", n,
                     max_new);
        goto done;
    }
    if ((long long)R * n > (1LL << 31) / (long long)max_new) {
        PyErr_Format(PyExc_ValueError,
                     "generate: %lld sequences x %d new tokens is too many outputs for one call",
                     (long long)R * n, max_new);
        goto done;
    }
    npy_intp S = R * n;
    npy_intp d2[2] = {S, max_new}, d1[1] = {S};
    if (!(tokens = PyArray_ZEROS(2, d2, NPY_INT32, 0)) || !(lp = PyArray_ZEROS(2, d2, NPY_FLOAT32, 0)) ||
        !(mlp = PyArray_ZEROS(2, d2, NPY_FLOAT32, 0)) || !(lens = PyArray_ZEROS(1, d1, NPY_INT32, 0)) ||
        !(fin = PyArray_ZEROS(1, d1, NPY_INT8, 0)))
        goto done;
    {
        azr_gen_params p;
        memset(&p, 0, sizeof p);
        p.n = n;
        p.max_new_tokens = max_new;
        p.sampling.temperature = temperature;
        p.sampling.top_p = top_p;
        p.sampling.top_k = top_k;
        p.seed = seed;
        p.request_keys = keys ? PyArray_DATA(keys) : NULL;
        p.max_slots = max_slots;
        p.kv_blocks = kv_blocks;
        p.block_size = block_size;
        p.prefill_chunk = prefill_chunk;
        p.max_context = max_context;
        p.eos_ids = PyArray_DATA(eos);
        p.n_eos = (int32_t)PyArray_DIM(eos, 0);
        p.stop_bytes = stop_bytes;
        p.stop_off = so ? PyArray_DATA(so) : NULL;
        p.n_stop = (int32_t)n_stop;
        p.tok_bytes = tok_bytes;
        p.tok_off = to ? PyArray_DATA(to) : NULL;
        cb_state cs = {cb_o == Py_None ? NULL : cb_o, interval, now_s()};
        p.callback = step_callback;
        p.callback_ctx = &cs;
        p.weights = cache ? cache->w : NULL;
        p.prefix = pbox ? pbox->pc : NULL;
        azr_gen_outputs o = {PyArray_DATA((PyArrayObject *)tokens),
                             PyArray_DATA((PyArrayObject *)lp),
                             PyArray_DATA((PyArrayObject *)mlp),
                             PyArray_DATA((PyArrayObject *)lens),
                             PyArray_DATA((PyArrayObject *)fin)};
        azr_status st;
        Py_BEGIN_ALLOW_THREADS st = azr_gen_run(m, PyArray_DATA(ids), po, (int64_t)R, &p, &o);
        Py_END_ALLOW_THREADS
        if (st) {
            if (st == AZR_ERR_INTERRUPTED && PyErr_Occurred()) {
                azr_clear_error();
            } else {
                azr_py_raise(st, "generate failed");
            }
            goto done;
        }
    }
    res = Py_BuildValue("(OOOOO)", tokens, lp, mlp, lens, fin);
done:
    if (m) {
        azr_py_model_release(model_o);
        if (cache) cache->busy = 0;
        if (pbox) pbox->busy = 0;
    }
    Py_XDECREF(ids);
    Py_XDECREF(off);
    Py_XDECREF(eos);
    Py_XDECREF(so);
    Py_XDECREF(to);
    Py_XDECREF(keys);
    Py_XDECREF(tokens);
    Py_XDECREF(lp);
    Py_XDECREF(mlp);
    Py_XDECREF(lens);
    Py_XDECREF(fin);
    return res;
}

static PyObject *py_kv_bytes_per_block(PyObject *mod, PyObject *args) {
    (void)mod;
    PyObject *model_o;
    int bs;
    if (!PyArg_ParseTuple(args, "Oi:kv_bytes_per_block", &model_o, &bs)) return NULL;
    azr_model *m = NULL;
    if (azr_py_model_acquire(model_o, &m) < 0) return NULL;
    long long b = azr_gen_kv_bytes_per_block(azr_model_cfg(m), bs);
    azr_py_model_release(model_o);
    return PyLong_FromLongLong(b);
}

static PyObject *py_blocks_for(PyObject *mod, PyObject *args) {
    (void)mod;
    long long plen;
    int max_new, ctx, bs;
    if (!PyArg_ParseTuple(args, "Liii:gen_blocks_for", &plen, &max_new, &ctx, &bs)) return NULL;
    int64_t pb = 0;
    long long priv = azr_gen_blocks_for(plen, max_new, ctx, bs, &pb);
    return Py_BuildValue("(LL)", (long long)pb, priv);
}

static PyMethodDef gen_methods[] = {
    {"generate", (PyCFunction)(void (*)(void))py_generate, METH_VARARGS | METH_KEYWORDS,
     "generate(model, ids, offsets, n, max_new_tokens, temperature, top_p, top_k, seed, eos, "
     "stop_bytes, stop_offsets, token_bytes, token_offsets, max_slots, kv_blocks, block_size, "
     "prefill_chunk, max_context, callback, callback_interval=0.2, request_keys=None, "
     "weights=None, prefix=None)\n"
     "-> (tokens (S, max_new) int32, logprobs, model_logprobs (S, max_new) float32, "
     "lengths (S,) int32, finish (S,) int8: 0 length, 1 eos, 2 stop)"},
    {"gen_weights_new", py_weights_new, METH_NOARGS,
     "gen_weights_new() -> a packed-weight cache for generate(weights=...): kept between "
     "calls, repacked only when the model's matrices change (content hash)"},
    {"gen_prefix_new", py_prefix_new, METH_VARARGS,
     "gen_prefix_new(max_bytes) -> a prefix cache for generate(prefix=...): KV blocks kept "
     "between calls while the weights are unchanged (csrc/generate/generate.h)"},
    {"gen_prefix_info", py_prefix_info, METH_VARARGS,
     "gen_prefix_info(cache) -> dict of its size and counters"},
    {"gen_prefix_clear", py_prefix_clear, METH_VARARGS, "gen_prefix_clear(cache): drop every block"},
    {"gen_weights_info", py_weights_info, METH_VARARGS,
     "gen_weights_info(cache) -> (bytes held, times packed)"},
    {"gen_weights_hash", py_weights_hash, METH_VARARGS,
     "gen_weights_hash(model) -> the content hash of the model's matrices (uint64)"},
    {"gen_sum_floats", py_sum_floats, METH_VARARGS,
     "gen_sum_floats(a) -> sum of a 1-D float32 array read once with the engine's threads "
     "(the benchmark's memory-bandwidth probe)"},
    {"kv_bytes_per_block", py_kv_bytes_per_block, METH_VARARGS,
     "kv_bytes_per_block(model, block_size) -> bytes of one KV block (all layers)"},
    {"gen_blocks_for", py_blocks_for, METH_VARARGS,
     "gen_blocks_for(prompt_len, max_new_tokens, max_context, block_size) -> "
     "(prompt blocks, blocks one sample adds)"},
    {NULL, NULL, 0, NULL}};

int azr_py_init_generate(PyObject *m) {
    if (PyModule_AddFunctions(m, gen_methods) < 0) return -1;
    return 0;
}
