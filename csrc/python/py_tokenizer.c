/*
 * py_tokenizer.c -- binding for the tokenizer layer: the `_core.Tokenizer`
 * type wrapping azr_tokenizer.
 *
 * Owns: argument checking and conversion (str <-> UTF-8, lists <-> ids),
 * releasing the GIL around encoding and decoding.
 * Must not: contain tokenizer logic or read files; azr/tokenizer.py parses
 * tokenizer.json and passes plain Python values here.
 *
 * _core.Tokenizer(config: dict, vocab: dict[str, int], merges: list, added: list)
 *   config keys: model ("byte_level"|"spm"), pre (list[int] stages),
 *   norm (list of (kind:int, a:str, b:str)), ignore_merges, byte_fallback,
 *   fuse_unk (bool), unk_id (int, -1 none), dec_byte_level, dec_byte_fallback
 *   (bool), dec_replace ((from, to) or None), dec_strip_start (int),
 *   bpe_heap_threshold (int, 0 default).
 *   merges: items are (a, b) pairs of str or "a b" strings.
 *   added: items are (content: str, id: int, flags: int).
 */
#include "py_common.h"

#include <string.h>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

typedef struct {
    PyObject_HEAD
    azr_tokenizer *tok;
} PyTok;

static void PyTok_dealloc(PyTok *self) {
    azr_tok_free(self->tok);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int cfg_int(PyObject *cfg, const char *key, long dflt, long *out) {
    PyObject *v = PyDict_GetItemString(cfg, key);  /* borrowed */
    if (!v || v == Py_None) { *out = dflt; return 0; }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "tokenizer config '%s' must be an int or bool", key);
        return -1;
    }
    *out = x;
    return 0;
}

static int utf8_of(PyObject *o, const char **s, Py_ssize_t *n, const char *what) {
    if (!PyUnicode_Check(o)) {
        PyErr_Format(azr_py_FormatError, "%s must be a string, got %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    *s = PyUnicode_AsUTF8AndSize(o, n);
    if (!*s && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
        PyErr_Clear();
        PyErr_Format(azr_py_FormatError, "%s %R holds a lone UTF-16 surrogate: not a character", what, o);
    }
    return *s ? 0 : -1;
}

static int PyTok_init(PyTok *self, PyObject *args, PyObject *kw) {
    PyObject *cfg, *vocab, *merges, *added;
    if (!PyArg_ParseTuple(args, "O!O!OO", &PyDict_Type, &cfg, &PyDict_Type, &vocab, &merges, &added)) return -1;
    if (self->tok) { azr_tok_free(self->tok); self->tok = NULL; }
    azr_tok_config c;
    memset(&c, 0, sizeof(c));
    PyObject *model = PyDict_GetItemString(cfg, "model");
    if (!model || !PyUnicode_Check(model)) { PyErr_SetString(PyExc_ValueError, "tokenizer config needs 'model'"); return -1; }
    if (PyUnicode_CompareWithASCIIString(model, "byte_level") == 0) c.model = AZR_TOK_MODEL_BYTE_LEVEL;
    else if (PyUnicode_CompareWithASCIIString(model, "spm") == 0) c.model = AZR_TOK_MODEL_SPM;
    else { PyErr_Format(azr_py_UnsupportedError, "tokenizer model kind %R is not supported", model); return -1; }
    long v;
    PyObject *pre = PyDict_GetItemString(cfg, "pre");
    if (pre) {
        PyObject *seq = PySequence_Fast(pre, "config 'pre' must be a sequence");
        if (!seq) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n > AZR_TOK_MAX_STAGES) { Py_DECREF(seq); PyErr_SetString(PyExc_ValueError, "too many pre-tokenizer stages"); return -1; }
        for (Py_ssize_t i = 0; i < n; i++) {
            long s = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
            if (s == -1 && PyErr_Occurred()) { Py_DECREF(seq); return -1; }
            c.pre[i] = (int)s;
        }
        c.n_pre = (int)n;
        Py_DECREF(seq);
    }
    PyObject *norm = PyDict_GetItemString(cfg, "norm");
    PyObject *normseq = NULL;
    if (norm) {
        normseq = PySequence_Fast(norm, "config 'norm' must be a sequence");
        if (!normseq) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(normseq);
        if (n > AZR_TOK_MAX_STAGES) { Py_DECREF(normseq); PyErr_SetString(PyExc_ValueError, "too many normaliser steps"); return -1; }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *it = PySequence_Fast_GET_ITEM(normseq, i);
            int kind;
            const char *a = "", *b = "";
            Py_ssize_t al = 0, bl = 0;
            if (!PyArg_ParseTuple(it, "i|s#s#", &kind, &a, &al, &b, &bl)) { Py_DECREF(normseq); return -1; }
            c.norm[i] = (azr_tok_norm_step){kind, a, (size_t)al, b, (size_t)bl};
        }
        c.n_norm = (int)n;
    }
    if (cfg_int(cfg, "ignore_merges", 0, &v)) goto fail_norm;
    c.ignore_merges = (int)v;
    if (cfg_int(cfg, "byte_fallback", 0, &v)) goto fail_norm;
    c.byte_fallback = (int)v;
    if (cfg_int(cfg, "fuse_unk", 0, &v)) goto fail_norm;
    c.fuse_unk = (int)v;
    if (cfg_int(cfg, "unk_id", -1, &v)) goto fail_norm;
    c.unk_id = (int32_t)v;
    if (cfg_int(cfg, "dec_byte_level", 1, &v)) goto fail_norm;
    c.dec_byte_level = (int)v;
    if (cfg_int(cfg, "dec_byte_fallback", 0, &v)) goto fail_norm;
    c.dec_byte_fallback = (int)v;
    if (cfg_int(cfg, "dec_strip_start", 0, &v)) goto fail_norm;
    c.dec_strip_start = (int)v;
    if (cfg_int(cfg, "bpe_heap_threshold", 0, &v)) goto fail_norm;
    c.bpe_heap_threshold = (int)v;
    if (cfg_int(cfg, "metaspace_prepend", 0, &v)) goto fail_norm;
    c.metaspace_prepend = (int)v;
    if (cfg_int(cfg, "metaspace_split", 0, &v)) goto fail_norm;
    c.metaspace_split = (int)v;
    PyObject *rep = PyDict_GetItemString(cfg, "dec_replace");
    if (rep && rep != Py_None) {
        const char *a, *b;
        Py_ssize_t al, bl;
        if (!PyArg_ParseTuple(rep, "s#s#", &a, &al, &b, &bl)) goto fail_norm;
        c.dec_replace_from = a; c.dec_replace_from_len = (size_t)al;
        c.dec_replace_to = b; c.dec_replace_to_len = (size_t)bl;
    }
    azr_status st = azr_tok_create(&self->tok, &c);
    Py_XDECREF(normseq);
    normseq = NULL;
    if (st) { azr_py_raise(st, "cannot create tokenizer"); return -1; }

    PyObject *key, *val;
    Py_ssize_t pos = 0;
    while (PyDict_Next(vocab, &pos, &key, &val)) {
        const char *s;
        Py_ssize_t n;
        if (utf8_of(key, &s, &n, "vocab key")) return -1;
        if (!PyLong_Check(val)) {
            PyErr_Format(azr_py_FormatError, "vocab: id of token %R must be an integer", key);
            return -1;
        }
        int overflow = 0;
        long long id = PyLong_AsLongLongAndOverflow(val, &overflow);
        if (id == -1 && PyErr_Occurred()) return -1;
        if (overflow || id < 0 || id > 0xFFFFFF) {
            PyErr_Format(azr_py_FormatError, "vocab: token %R has invalid id %R (ids must be in 0..16777215)", key, val);
            return -1;
        }
        st = azr_tok_add_token(self->tok, s, (size_t)n, (int32_t)id);
        if (st) { azr_py_raise(st, "vocab error"); return -1; }
    }
    PyObject *mseq = PySequence_Fast(merges, "merges must be a list");
    if (!mseq) return -1;
    Py_ssize_t nm = PySequence_Fast_GET_SIZE(mseq);
    for (Py_ssize_t i = 0; i < nm; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(mseq, i);
        const char *a, *b;
        Py_ssize_t al, bl;
        if (PyUnicode_Check(it)) {
            Py_ssize_t n;
            const char *s;
            if (utf8_of(it, &s, &n, "merge")) { Py_DECREF(mseq); return -1; }
            const char *sp = memchr(s, ' ', (size_t)n);
            if (!sp || memchr(sp + 1, ' ', (size_t)(n - (sp + 1 - s)))) {
                Py_DECREF(mseq);
                PyErr_Format(azr_py_FormatError, "merges[%zd] %R is not two tokens separated by one space", i, it);
                return -1;
            }
            a = s; al = sp - s; b = sp + 1; bl = n - al - 1;
        } else if ((PyList_Check(it) || PyTuple_Check(it)) && PySequence_Size(it) == 2) {
            PyObject *pa = PySequence_GetItem(it, 0), *pb = PySequence_GetItem(it, 1);
            int bad = !pa || !pb || utf8_of(pa, &a, &al, "merge token") || utf8_of(pb, &b, &bl, "merge token");
            /* the str objects are owned by the list item, so the UTF-8 stays valid */
            Py_XDECREF(pa);
            Py_XDECREF(pb);
            if (bad) { Py_DECREF(mseq); return -1; }
        } else {
            Py_DECREF(mseq);
            PyErr_Format(azr_py_FormatError, "merges[%zd] must be a \"a b\" string or a pair of strings, got %.200R", i, it);
            return -1;
        }
        st = azr_tok_add_merge(self->tok, a, (size_t)al, b, (size_t)bl);
        if (st) { Py_DECREF(mseq); azr_py_raise(st, "merge error"); return -1; }
    }
    Py_DECREF(mseq);
    PyObject *aseq = PySequence_Fast(added, "added tokens must be a list");
    if (!aseq) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(aseq); i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(aseq, i);
        const char *s;
        Py_ssize_t n;
        PyObject *content, *ido;
        int flags;
        if (!PyArg_ParseTuple(it, "UOi", &content, &ido, &flags) || utf8_of(content, &s, &n, "added token")) {
            Py_DECREF(aseq);
            return -1;
        }
        int overflow = 0;
        long long id = PyLong_Check(ido) ? PyLong_AsLongLongAndOverflow(ido, &overflow) : -1;
        if (id == -1 && PyErr_Occurred()) { Py_DECREF(aseq); return -1; }
        if (!PyLong_Check(ido) || overflow || id < 0 || id > 0xFFFFFF) {
            PyErr_Format(azr_py_FormatError, "added_tokens: token %R has invalid id %R (ids must be in 0..16777215)",
                         PyTuple_Check(it) && PyTuple_GET_SIZE(it) > 0 ? PyTuple_GET_ITEM(it, 0) : Py_None, ido);
            Py_DECREF(aseq);
            return -1;
        }
        st = azr_tok_add_added(self->tok, s, (size_t)n, (int32_t)id, flags);
        if (st) { Py_DECREF(aseq); azr_py_raise(st, "added token error"); return -1; }
    }
    Py_DECREF(aseq);
    Py_BEGIN_ALLOW_THREADS
    st = azr_tok_finalize(self->tok);
    Py_END_ALLOW_THREADS
    if (st) { azr_py_raise(st, "cannot finalize tokenizer"); return -1; }
    return 0;
fail_norm:
    Py_XDECREF(normseq);
    return -1;
}

static int check_ready(PyTok *self) {
    if (!self->tok) { PyErr_SetString(PyExc_RuntimeError, "tokenizer is not initialised"); return -1; }
    return 0;
}

static PyObject *ids_to_list(const azr_tok_ids *ids) {
    PyObject *l = PyList_New((Py_ssize_t)ids->len);
    if (!l) return NULL;
    for (size_t i = 0; i < ids->len; i++) {
        PyObject *x = PyLong_FromLong(ids->ids[i]);
        if (!x) { Py_DECREF(l); return NULL; }
        PyList_SET_ITEM(l, (Py_ssize_t)i, x);
    }
    return l;
}

static PyObject *PyTok_encode(PyTok *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"text", "allow_special", NULL};
    PyObject *text;
    int allow_special = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|p", kwlist, &text, &allow_special)) return NULL;
    if (check_ready(self)) return NULL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (!s) return NULL;
    azr_tok_ids ids = {0};
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    st = azr_tok_encode(self->tok, s, (size_t)n, allow_special, &ids);
    Py_END_ALLOW_THREADS
    if (st) { free(ids.ids); return azr_py_raise(st, "encode failed"); }
    PyObject *r = ids_to_list(&ids);
    free(ids.ids);
    return r;
}

static PyObject *PyTok_encode_batch(PyTok *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"texts", "allow_special", NULL};
    PyObject *texts;
    int allow_special = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p", kwlist, &texts, &allow_special)) return NULL;
    if (check_ready(self)) return NULL;
    PyObject *seq = PySequence_Fast(texts, "encode_batch expects a list of str");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const char **ptrs = calloc((size_t)n + 1, sizeof(char *));
    size_t *lens = calloc((size_t)n + 1, sizeof(size_t));
    azr_tok_ids *outs = calloc((size_t)n + 1, sizeof(azr_tok_ids));
    PyObject *result = NULL;
    if (!ptrs || !lens || !outs) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(it)) {
            PyErr_Format(PyExc_TypeError, "encode_batch: texts[%zd] is %.100s, not str", i, Py_TYPE(it)->tp_name);
            goto done;
        }
        Py_ssize_t l;
        ptrs[i] = PyUnicode_AsUTF8AndSize(it, &l);
        if (!ptrs[i]) goto done;
        lens[i] = (size_t)l;
    }
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    st = azr_tok_encode_batch(self->tok, ptrs, lens, (size_t)n, allow_special, outs);
    Py_END_ALLOW_THREADS
    if (st) { azr_py_raise(st, "encode_batch failed"); goto done; }
    result = PyList_New(n);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *l = ids_to_list(&outs[i]);
        if (!l) { Py_CLEAR(result); goto done; }
        PyList_SET_ITEM(result, i, l);
    }
done:
    if (outs)
        for (Py_ssize_t i = 0; i < n; i++) free(outs[i].ids);
    free(outs);
    free(lens);
    free(ptrs);
    Py_DECREF(seq);
    return result;
}

/* ids (any sequence or array of ints) -> malloc'ed int32 array. */
static int32_t *ids_from(PyObject *obj, size_t *n_out) {
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(obj, NPY_INT64, 0, 1, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!arr) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "token ids must be a sequence of integers");
        return NULL;
    }
    if (PyArray_TYPE(arr) != NPY_INT64) { Py_DECREF(arr); PyErr_SetString(PyExc_TypeError, "token ids must be integers"); return NULL; }
    size_t n = (size_t)PyArray_SIZE(arr);
    const int64_t *src = (const int64_t *)PyArray_DATA(arr);
    int32_t *ids = malloc((n ? n : 1) * sizeof(int32_t));
    if (!ids) { Py_DECREF(arr); PyErr_NoMemory(); return NULL; }
    for (size_t i = 0; i < n; i++) {
        if (src[i] < 0 || src[i] > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "decode: token id %lld at position %zu is out of range", (long long)src[i], i);
            free(ids);
            Py_DECREF(arr);
            return NULL;
        }
        ids[i] = (int32_t)src[i];
    }
    Py_DECREF(arr);
    *n_out = n;
    return ids;
}

static PyObject *decode_impl(PyTok *self, PyObject *args, PyObject *kw, int as_bytes) {
    static char *kwlist[] = {"ids", "skip_special_tokens", NULL};
    PyObject *obj;
    int skip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p", kwlist, &obj, &skip)) return NULL;
    if (check_ready(self)) return NULL;
    size_t n;
    int32_t *ids = ids_from(obj, &n);
    if (!ids) return NULL;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    azr_status st;
    Py_BEGIN_ALLOW_THREADS
    st = azr_tok_decode(self->tok, ids, n, skip, &buf, &len, &cap);
    Py_END_ALLOW_THREADS
    free(ids);
    if (st) { free(buf); return azr_py_raise(st, "decode failed"); }
    PyObject *r = as_bytes ? PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)len)
                           : PyUnicode_DecodeUTF8((const char *)(buf ? buf : (uint8_t *)""), (Py_ssize_t)len, "replace");
    free(buf);
    return r;
}

static PyObject *PyTok_decode(PyTok *self, PyObject *args, PyObject *kw) { return decode_impl(self, args, kw, 0); }
static PyObject *PyTok_decode_bytes(PyTok *self, PyObject *args, PyObject *kw) { return decode_impl(self, args, kw, 1); }

static PyObject *PyTok_token_bytes(PyTok *self, PyObject *arg) {
    if (check_ready(self)) return NULL;
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    size_t len;
    int bv, sp;
    const uint8_t *p = (id < 0 || id > INT32_MAX) ? NULL : azr_tok_token_bytes(self->tok, (int32_t)id, &len, &bv, &sp);
    if (!p) Py_RETURN_NONE;
    return Py_BuildValue("(y#ii)", (const char *)p, (Py_ssize_t)len, bv, sp);
}

typedef struct { PyObject *list; PyObject *text_bytes; const char *base; int err; } pre_ctx;

static void pre_cb(void *vctx, size_t s, size_t e) {
    pre_ctx *c = vctx;
    if (c->err) return;
    PyObject *piece = PyUnicode_DecodeUTF8(c->base + s, (Py_ssize_t)(e - s), "strict");
    if (!piece || PyList_Append(c->list, piece)) c->err = 1;
    Py_XDECREF(piece);
}

static PyObject *PyTok_pretokenize(PyTok *self, PyObject *arg) {
    if (check_ready(self)) return NULL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s) return NULL;
    pre_ctx c = {PyList_New(0), NULL, s, 0};
    if (!c.list) return NULL;
    azr_status st = azr_tok_pretokenize(self->tok, s, (size_t)n, pre_cb, &c);
    if (st) { Py_DECREF(c.list); return azr_py_raise(st, "pretokenize failed"); }
    if (c.err) { Py_DECREF(c.list); return NULL; }
    return c.list;
}

static PyObject *PyTok_n_ids(PyTok *self, void *closure) {
    if (check_ready(self)) return NULL;
    return PyLong_FromLong(azr_tok_n_ids(self->tok));
}

static PyMethodDef PyTok_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))PyTok_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, allow_special=False) -> list[int]"},
    {"encode_batch", (PyCFunction)(void (*)(void))PyTok_encode_batch, METH_VARARGS | METH_KEYWORDS,
     "encode_batch(texts, allow_special=False) -> list[list[int]] (OpenMP, GIL released)"},
    {"decode", (PyCFunction)(void (*)(void))PyTok_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(ids, skip_special_tokens=False) -> str (invalid UTF-8 -> U+FFFD)"},
    {"decode_bytes", (PyCFunction)(void (*)(void))PyTok_decode_bytes, METH_VARARGS | METH_KEYWORDS,
     "decode_bytes(ids, skip_special_tokens=False) -> bytes (before lossy UTF-8 decoding)"},
    {"token_bytes", (PyCFunction)PyTok_token_bytes, METH_O,
     "token_bytes(id) -> (bytes, byte_fallback_value or -1, is_special) or None"},
    {"pretokenize", (PyCFunction)PyTok_pretokenize, METH_O,
     "pretokenize(text) -> list[str]: the pre-tokenizer's pieces (tests)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef PyTok_getset[] = {
    {"n_ids", (getter)PyTok_n_ids, NULL, "max id + 1", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PyTokType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "azr._core.Tokenizer",
    .tp_basicsize = sizeof(PyTok),
    .tp_dealloc = (destructor)PyTok_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "C BPE tokenizer; build it through azr.Tokenizer.",
    .tp_methods = PyTok_methods,
    .tp_getset = PyTok_getset,
    .tp_init = (initproc)PyTok_init,
    .tp_new = PyType_GenericNew,
};

/* _core.tokenizer_nfc(text) -> str: the C NFC normaliser (for tests). */
static PyObject *py_tokenizer_nfc(PyObject *mod, PyObject *arg) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s) return NULL;
    uint8_t *out = NULL;
    size_t cap = 0, len = 0;
    azr_status st;
    if (azr_nfc_quick_check((const uint8_t *)s, (size_t)n)) return PyUnicode_FromStringAndSize(s, n);
    Py_BEGIN_ALLOW_THREADS
    st = azr_nfc((const uint8_t *)s, (size_t)n, &out, &cap, &len);
    Py_END_ALLOW_THREADS
    if (st) { free(out); return azr_py_raise(st, "NFC failed"); }
    PyObject *r = PyUnicode_DecodeUTF8((const char *)out, (Py_ssize_t)len, "strict");
    free(out);
    return r;
}

static PyMethodDef tok_module_methods[] = {
    {"tokenizer_nfc", (PyCFunction)py_tokenizer_nfc, METH_O, "tokenizer_nfc(text) -> str (C NFC, for tests)"},
    {NULL, NULL, 0, NULL},
};

int azr_py_init_tokenizer(PyObject *m) {
    if (PyModule_AddFunctions(m, tok_module_methods) < 0) return -1;
    if (PyType_Ready(&PyTokType) < 0) return -1;
    Py_INCREF(&PyTokType);
    if (PyModule_AddObject(m, "Tokenizer", (PyObject *)&PyTokType) < 0) {
        Py_DECREF(&PyTokType);
        return -1;
    }
    PyObject *ver = PyUnicode_FromString(azr_unicode_version_str());
    if (!ver || PyModule_AddObject(m, "TOKENIZER_UNICODE_VERSION", ver) < 0) { Py_XDECREF(ver); return -1; }
    return 0;
}
