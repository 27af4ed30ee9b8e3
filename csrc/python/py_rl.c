/*
 * py_rl.c -- binding for the rl layer (csrc/rl): rewards, Task-Relative
 * REINFORCE++ advantages and the clipped policy loss.
 *
 * Must not: hold RL logic. Wrappers accept only C-contiguous NumPy arrays of
 * the exact dtype (azr/rl.py converts and checks shapes first, with messages
 * that name the argument), release the GIL around the C call and convert
 * errors with azr_py_raise.
 */
#include "py_common.h"
#include "../rl/rl.h"

/* Borrowed check: `o` is a C-contiguous ndarray of `type` with `ndim` dims. */
static int check_array(PyObject *o, const char *fn, const char *name, int type, int ndim) {
    if (!PyArray_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a numpy array", fn, name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != type || PyArray_NDIM(a) != ndim || !PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a C-contiguous %dD array of dtype %s", fn, name, ndim,
                     type == NPY_FLOAT32 ? "float32" : (type == NPY_INT32 ? "int32" : "uint8"));
        return -1;
    }
    return 0;
}

static PyObject *py_solver_rewards(PyObject *self, PyObject *arg) {
    (void)self;
    if (check_array(arg, "solver_rewards", "outcome", NPY_INT32, 1) < 0) return NULL;
    npy_intp n = PyArray_DIM((PyArrayObject *)arg, 0);
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    if (!out) return NULL;
    azr_status st = azr_rl_solver_rewards((const int32_t *)PyArray_DATA((PyArrayObject *)arg), (int64_t)n,
                                          (float *)PyArray_DATA(out));
    if (st != AZR_OK) {
        Py_DECREF(out);
        return azr_py_raise(st, "solver_rewards failed");
    }
    return (PyObject *)out;
}

static PyObject *py_proposer_rewards(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *status, *ncor, *nsam;
    if (!PyArg_ParseTuple(args, "OOO:proposer_rewards", &status, &ncor, &nsam)) return NULL;
    if (check_array(status, "proposer_rewards", "status", NPY_INT32, 1) < 0 ||
        check_array(ncor, "proposer_rewards", "n_correct", NPY_INT32, 1) < 0 ||
        check_array(nsam, "proposer_rewards", "n_samples", NPY_INT32, 1) < 0)
        return NULL;
    npy_intp n = PyArray_DIM((PyArrayObject *)status, 0);
    if (PyArray_DIM((PyArrayObject *)ncor, 0) != n || PyArray_DIM((PyArrayObject *)nsam, 0) != n) {
        PyErr_SetString(PyExc_ValueError, "proposer_rewards: status, n_correct and n_samples differ in length");
        return NULL;
    }
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    if (!out) return NULL;
    azr_status st = azr_rl_proposer_rewards((const int32_t *)PyArray_DATA((PyArrayObject *)status),
                                            (const int32_t *)PyArray_DATA((PyArrayObject *)ncor),
                                            (const int32_t *)PyArray_DATA((PyArrayObject *)nsam), (int64_t)n,
                                            (float *)PyArray_DATA(out));
    if (st != AZR_OK) {
        Py_DECREF(out);
        return azr_py_raise(st, "proposer_rewards failed");
    }
    return (PyObject *)out;
}

static PyObject *py_advantages(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rewards, *group, *lengths;
    int n_groups, mode;
    float eps;
    if (!PyArg_ParseTuple(args, "OOOiif:advantages", &rewards, &group, &lengths, &n_groups, &mode, &eps))
        return NULL;
    if (check_array(rewards, "advantages", "rewards", NPY_FLOAT32, 1) < 0 ||
        check_array(group, "advantages", "group", NPY_INT32, 1) < 0)
        return NULL;
    npy_intp n = PyArray_DIM((PyArrayObject *)rewards, 0);
    if (PyArray_DIM((PyArrayObject *)group, 0) != n) {
        PyErr_SetString(PyExc_ValueError, "advantages: rewards and group differ in length");
        return NULL;
    }
    const int32_t *len_p = NULL;
    if (lengths != Py_None) {
        if (check_array(lengths, "advantages", "lengths", NPY_INT32, 1) < 0) return NULL;
        if (PyArray_DIM((PyArrayObject *)lengths, 0) != n) {
            PyErr_SetString(PyExc_ValueError, "advantages: rewards and lengths differ in length");
            return NULL;
        }
        len_p = (const int32_t *)PyArray_DATA((PyArrayObject *)lengths);
    }
    if (n_groups < 1) {
        PyErr_Format(PyExc_ValueError, "advantages: n_groups = %d, need >= 1", n_groups);
        return NULL;
    }
    npy_intp ng = n_groups;
    PyArrayObject *adv = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT32);
    PyArrayObject *mean = (PyArrayObject *)PyArray_SimpleNew(1, &ng, NPY_FLOAT32);
    PyArrayObject *std = (PyArrayObject *)PyArray_SimpleNew(1, &ng, NPY_FLOAT32);
    if (!adv || !mean || !std) {
        Py_XDECREF(adv);
        Py_XDECREF(mean);
        Py_XDECREF(std);
        return NULL;
    }
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    st = azr_rl_advantages((const float *)PyArray_DATA((PyArrayObject *)rewards),
                           (const int32_t *)PyArray_DATA((PyArrayObject *)group), len_p, (int64_t)n, n_groups,
                           mode, eps, (float *)PyArray_DATA(adv), (float *)PyArray_DATA(mean),
                           (float *)PyArray_DATA(std));
    Py_END_ALLOW_THREADS
    if (st != AZR_OK) {
        Py_DECREF(adv);
        Py_DECREF(mean);
        Py_DECREF(std);
        return azr_py_raise(st, "advantages failed");
    }
    return Py_BuildValue("(NNN)", adv, mean, std);
}

static PyObject *py_policy_loss(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"logp", "old_logp", "adv", "mask", "entropy", "ref_logp", "clip_low",
                             "clip_high", "aggregation", "entropy_coef", "kl_coef", NULL};
    PyObject *logp, *old, *adv, *mask, *ent = Py_None, *ref = Py_None;
    azr_rl_loss_opts o = {0.2f, 0.2f, AZR_RL_AGG_TOKEN_MEAN, 0.0f, 0.0f};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|OOffiff:policy_loss", kwlist, &logp, &old, &adv, &mask,
                                     &ent, &ref, &o.clip_low, &o.clip_high, &o.aggregation, &o.entropy_coef,
                                     &o.kl_coef))
        return NULL;
    const char *fn = "policy_loss";
    if (check_array(logp, fn, "logp", NPY_FLOAT32, 2) < 0 || check_array(old, fn, "old_logp", NPY_FLOAT32, 2) < 0 ||
        check_array(adv, fn, "adv", NPY_FLOAT32, 1) < 0 || check_array(mask, fn, "mask", NPY_UINT8, 2) < 0)
        return NULL;
    npy_intp *dims = PyArray_DIMS((PyArrayObject *)logp);
    npy_intp B = dims[0], T = dims[1];
#define SAME2(o, name)                                                                                   \
    if (PyArray_DIM((PyArrayObject *)(o), 0) != B || PyArray_DIM((PyArrayObject *)(o), 1) != T) {        \
        PyErr_Format(PyExc_ValueError, "policy_loss: %s has a different shape than logp (%zd, %zd)", name, \
                     (Py_ssize_t)B, (Py_ssize_t)T);                                                      \
        return NULL;                                                                                     \
    }
    SAME2(old, "old_logp");
    SAME2(mask, "mask");
    if (PyArray_DIM((PyArrayObject *)adv, 0) != B) {
        PyErr_SetString(PyExc_ValueError, "policy_loss: adv must have one value per row of logp");
        return NULL;
    }
    const float *ent_p = NULL, *ref_p = NULL;
    if (ent != Py_None) {
        if (check_array(ent, fn, "entropy", NPY_FLOAT32, 2) < 0) return NULL;
        SAME2(ent, "entropy");
        ent_p = (const float *)PyArray_DATA((PyArrayObject *)ent);
    }
    if (ref != Py_None) {
        if (check_array(ref, fn, "ref_logp", NPY_FLOAT32, 2) < 0) return NULL;
        SAME2(ref, "ref_logp");
        ref_p = (const float *)PyArray_DATA((PyArrayObject *)ref);
    }
#undef SAME2
    npy_intp wd[2] = {B, T};
    PyArrayObject *w = (PyArrayObject *)PyArray_SimpleNew(2, wd, NPY_FLOAT32);
    if (!w) return NULL;
    azr_rl_loss_stats s;
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    st = azr_rl_policy_loss((const float *)PyArray_DATA((PyArrayObject *)logp),
                            (const float *)PyArray_DATA((PyArrayObject *)old),
                            (const float *)PyArray_DATA((PyArrayObject *)adv),
                            (const uint8_t *)PyArray_DATA((PyArrayObject *)mask), ent_p, ref_p, (int64_t)B,
                            (int64_t)T, &o, (float *)PyArray_DATA(w), &s);
    Py_END_ALLOW_THREADS
    if (st != AZR_OK) {
        Py_DECREF(w);
        return azr_py_raise(st, "policy_loss failed");
    }
    return Py_BuildValue("(N{s:d,s:d,s:d,s:d,s:d,s:d,s:L,s:L})", w, "loss", s.loss, "pg_loss", s.pg_loss,
                         "entropy", s.entropy, "kl", s.kl, "clip_frac", s.clip_frac, "ratio_mean",
                         s.ratio_mean, "n_tokens", (long long)s.n_tokens, "n_seqs", (long long)s.n_seqs);
}

static PyMethodDef rl_methods[] = {
    {"rl_solver_rewards", py_solver_rewards, METH_O,
     "rl_solver_rewards(outcome: int32[n]) -> float32[n]\n--\n\n+1 / -0.5 / -1 for outcome 0 / 1 / 2."},
    {"rl_proposer_rewards", py_proposer_rewards, METH_VARARGS,
     "rl_proposer_rewards(status, n_correct, n_samples) -> float32[n]\n--\n\n"
     "1 - acc for 0 < acc < 1, -0.5 for acc in {0, 1}, -1 for status 1 (invalid)."},
    {"rl_advantages", py_advantages, METH_VARARGS,
     "rl_advantages(rewards, group, lengths, n_groups, mode, eps) -> (adv, group_mean, group_std)"},
    {"rl_policy_loss", (PyCFunction)(void (*)(void))py_policy_loss, METH_VARARGS | METH_KEYWORDS,
     "rl_policy_loss(logp, old_logp, adv, mask, entropy=None, ref_logp=None, clip_low=0.2, clip_high=0.2,\n"
     "               aggregation=0, entropy_coef=0.0, kl_coef=0.0) -> (weights, stats)"},
    {NULL, NULL, 0, NULL}};

int azr_py_init_rl(PyObject *m) {
    if (PyModule_AddFunctions(m, rl_methods) < 0) return -1;
    return 0;
}
