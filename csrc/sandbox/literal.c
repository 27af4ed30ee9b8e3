/*
 * literal.c -- the sandbox child's fast path for a program's input: a Python
 * argument list made of plain literals (`[3, 1, 2], 'ab', k={'q': (1,)}`)
 * parsed straight into objects, without compile() (which touches the
 * compiler's state and so copies pages on write in a freshly forked child).
 *
 * Owns: the grammar of that literal subset and the objects built from it.
 * The grammar (anything else is refused):
 *   args   := ws* (item (ws* ',' ws* item)* (ws* ',')?)? ws*
 *   item   := value | NAME ws* '=' ws* value   (no positional after a keyword,
 *                                               no repeated keyword)
 *   value  := '-'? ws* number | string | True | False | None
 *           | '[' ... ']' | '(' ')' | '(' value ')' | '(' value ',' ... ')'
 *           | '{' '}' | '{' k ':' v , ... '}' | '{' v , ... '}'
 *   number := decimal int without leading zeros (0s alone are fine), or a
 *             decimal float; no '_', no prefix, no 'j'
 *   string := '...' or "...", one line, no backslash, no control character,
 *             strict UTF-8, not followed by another string
 *   ws     := ' ' | '\t' | '\n'
 * Containers nest at most AZR_LIT_MAX_DEPTH deep.
 *
 * Object identity is the compiler's too, as a program can see it with `is`:
 * every number, string and tuple of such (at any depth) is a constant of
 * the compiled call, and the compiler keeps one object per equal constant
 * (same type, same value, -0.0 apart from 0.0) and interns strings made
 * only of ASCII letters, digits and '_'. So `1000, [1000]` gives the same
 * int object twice, and 'ab' is sys.intern('ab'). Lists, dicts and sets,
 * and tuples holding any of them, are new objects each.
 *
 * Must not: accept any text whose value could differ from what the compile
 * path of azr/_sandbox_zygote.py gives (in doubt, refuse: that path decides
 * and raises), leave a Python exception set, call user code (only exact
 * builtin types are built, so hashing them runs none), or be part of
 * azr._core (it needs the CPython API: only the `_zygote` module includes it).
 */
#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>

#include <string.h>

#define AZR_LIT_MAX_DEPTH 64
/* sys.int_info.default_max_str_digits: longer int literals are refused
   (Python raises a SyntaxError for them, except for all zeros, which the
   compile path then takes); a lower limit set at run time makes
   PyLong_FromString fail, which refuses too. */
#define AZR_LIT_MAX_INT_DIGITS 4300

typedef struct {
    const char *p;     /* next unread byte */
    const char *end;   /* one past the last byte */
    int depth;         /* containers open around p */
    int is_const;      /* the value lit_value just returned is a constant */
    PyObject *consts;  /* one object per equal constant (see lit_merge), or NULL */
} azr_lit;

static PyObject *lit_value(azr_lit *L);

static int lit_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int lit_name_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
/* A byte that could continue a Python name or number token. Non-ASCII bytes
   count (Python allows non-ASCII identifiers), so a token followed by one
   is refused. */
static int lit_name_char(unsigned char c) { return lit_name_start(c) || lit_digit(c) || c >= 0x80; }

static void lit_skip_ws(azr_lit *L) {
    while (L->p < L->end && (*L->p == ' ' || *L->p == '\t' || *L->p == '\n')) L->p++;
}

/* The byte at p, or 0 at the end (the text holds no NUL: checked first). */
static unsigned char lit_peek(const azr_lit *L) { return L->p < L->end ? (unsigned char)*L->p : 0; }

/* The object that stands for constant `v` in this parse: the first one
   seen with the same key, else `v` itself. `key` (NULL: `v` itself) must be
   equal only for constants the compiler merges: ints and strs are their own
   key (an int never equals a str; bools and small ints are singletons and
   never come here), floats and tuples get bytes keys (see callers). Steals
   `v`; returns a new reference, or NULL on failure. */
static PyObject *lit_merge(azr_lit *L, PyObject *v, PyObject *key) {
    if (!L->consts && !(L->consts = PyDict_New())) {
        Py_DECREF(v);
        return NULL;
    }
    PyObject *got = PyDict_SetDefault(L->consts, key ? key : v, v); /* borrowed */
    Py_XINCREF(got);
    Py_DECREF(v);
    return got;
}

/* lit_merge for a float: keyed by its bits (so -0.0 and 0.0 stay apart, as
   in the compiler's constant key) behind an 'f' tag. */
static PyObject *lit_merge_float(azr_lit *L, PyObject *v) {
    char k[1 + sizeof(double)] = {'f'};
    double d = PyFloat_AS_DOUBLE(v);
    memcpy(k + 1, &d, sizeof d);
    PyObject *key = PyBytes_FromStringAndSize(k, sizeof k);
    if (!key) {
        Py_DECREF(v);
        return NULL;
    }
    PyObject *out = lit_merge(L, v, key);
    Py_DECREF(key);
    return out;
}

/* lit_merge for a number: small ints (-5..256) are singletons already. */
static PyObject *lit_merge_number(azr_lit *L, PyObject *v) {
    if (PyFloat_CheckExact(v)) return lit_merge_float(L, v);
    int overflow = 0;
    long x = PyLong_AsLongAndOverflow(v, &overflow);
    if (!overflow && x >= -5 && x <= 256) return v;
    return lit_merge(L, v, NULL);
}

/* lit_merge for a non-empty tuple whose items are all merged constants:
   two such tuples are equal constants exactly when they hold the same
   objects, so the key is their pointers behind a 't' tag. */
static PyObject *lit_merge_tuple(azr_lit *L, PyObject *t) {
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    size_t len = 1 + (size_t)n * sizeof(PyObject *);
    PyObject *key = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)len);
    if (!key) {
        Py_DECREF(t);
        return NULL;
    }
    char *k = PyBytes_AS_STRING(key);
    k[0] = 't';
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(t, i);
        memcpy(k + 1 + (size_t)i * sizeof item, &item, sizeof item);
    }
    PyObject *out = lit_merge(L, t, key);
    Py_DECREF(key);
    return out;
}

/* 1 if the ASCII bytes s[0..n) are all letters, digits or '_' (the strings
   the compiler interns; the empty string too). */
static int lit_all_name_chars(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(lit_name_start(c) || lit_digit(c))) return 0;
    }
    return 1;
}

/* A number token at L->p (a digit or '.'), as a new int or float; NULL if
   the token is not one the grammar takes. Python's own conversions are used
   (PyLong_FromString, PyOS_string_to_double), as the compiler does, so
   rounding and overflow (1e999 -> inf) are the same. */
static PyObject *lit_number(azr_lit *L) {
    const char *s = L->p, *q = s, *end = L->end;
    while (q < end && lit_digit((unsigned char)*q)) q++;
    size_t nint = (size_t)(q - s);
    int is_float = 0;
    if (q < end && *q == '.') {
        is_float = 1;
        q++;
        const char *f = q;
        while (q < end && lit_digit((unsigned char)*q)) q++;
        if (nint == 0 && q == f) return NULL; /* a lone '.' */
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        const char *r = q + 1;
        if (r < end && (*r == '+' || *r == '-')) r++;
        if (!(r < end && lit_digit((unsigned char)*r))) return NULL; /* '1e', '1e+' */
        while (r < end && lit_digit((unsigned char)*r)) r++;
        is_float = 1;
        q = r;
    }
    /* 1_0, 0x1, 1j, 1e5j, 1.5.2, 1.e, 1'a' ... */
    if (q < end && (lit_name_char((unsigned char)*q) || *q == '.' || *q == '\'' || *q == '"'))
        return NULL;
    size_t n = (size_t)(q - s);
    if (!is_float) {
        if (n > 1 && s[0] == '0') {
            for (size_t i = 1; i < n; i++)
                if (s[i] != '0') return NULL; /* 01: not a Python literal */
        }
        if (n > AZR_LIT_MAX_INT_DIGITS) return NULL;
        if (n <= 18) { /* fits an int64 */
            long long v = 0;
            for (size_t i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
            L->p = q;
            return PyLong_FromLongLong(v);
        }
    }
    /* Both conversions want a NUL-terminated token (PyLong_FromString
       refuses anything but whitespace after the digits). */
    char small[64];
    char *buf = n < sizeof small ? small : PyMem_Malloc(n + 1);
    if (!buf) return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    PyObject *out = NULL;
    char *stop = NULL;
    if (is_float) {
        double d = PyOS_string_to_double(buf, &stop, NULL);
        if (!(d == -1.0 && PyErr_Occurred()) && stop == buf + n) out = PyFloat_FromDouble(d);
    } else {
        out = PyLong_FromString(buf, &stop, 10);
        if (out && stop != buf + n) Py_CLEAR(out);
    }
    if (buf != small) PyMem_Free(buf);
    if (out) L->p = q;
    return out;
}

/* A quoted string at L->p, as a new str; NULL unless it is one line of
   strict UTF-8 without backslashes or control characters, and is not
   followed by another string (implicit concatenation, or the rest of a
   triple quote). */
static PyObject *lit_string(azr_lit *L) {
    char quote = *L->p;
    const char *s = L->p + 1, *q = s;
    for (;; q++) {
        if (q >= L->end) return NULL;
        unsigned char c = (unsigned char)*q;
        if (c == (unsigned char)quote) break;
        if (c == '\\' || c < 0x20 || c == 0x7f) return NULL;
    }
    const char *after = q + 1;
    while (after < L->end && (*after == ' ' || *after == '\t' || *after == '\n')) after++;
    if (after < L->end && (*after == '\'' || *after == '"')) return NULL;
    PyObject *out = PyUnicode_DecodeUTF8(s, q - s, NULL);
    if (!out) return NULL;
    L->p = q + 1;
    if (lit_all_name_chars(s, (size_t)(q - s))) {
        PyUnicode_InternInPlace(&out); /* (it cannot report failure: checked) */
        if (!PyUnicode_CHECK_INTERNED(out)) Py_CLEAR(out);
        return out;
    }
    return lit_merge(L, out, NULL);
}

/* The length of the ASCII name at p (p < end, lit_name_start(*p)). */
static size_t lit_name_len(const char *p, const char *end) {
    const char *q = p + 1;
    while (q < end && (lit_name_start((unsigned char)*q) || lit_digit((unsigned char)*q))) q++;
    return (size_t)(q - p);
}

/* True, False or None at L->p, as a new reference; NULL for any other name
   and for a name that runs on (non-ASCII letters) or prefixes a string
   (b'x', r'x', f'x'...). */
static PyObject *lit_name(azr_lit *L) {
    size_t n = lit_name_len(L->p, L->end);
    const char *q = L->p + n;
    if (q < L->end && (lit_name_char((unsigned char)*q) || *q == '\'' || *q == '"')) return NULL;
    PyObject *v = NULL;
    if (n == 4 && memcmp(L->p, "True", 4) == 0) v = Py_True;
    else if (n == 5 && memcmp(L->p, "False", 5) == 0) v = Py_False;
    else if (n == 4 && memcmp(L->p, "None", 4) == 0) v = Py_None;
    if (!v) return NULL;
    L->p = q;
    Py_INCREF(v);
    return v;
}

/* After an element of a container closed by `close`: consume ws, then
   either the closer (returns 1), or a comma and optional ws (returns 1 if
   the closer follows: a trailing comma, else 0 for "another element");
   -1 for anything else. */
static int lit_after_elem(azr_lit *L, char close) {
    lit_skip_ws(L);
    if (lit_peek(L) == (unsigned char)close) {
        L->p++;
        return 1;
    }
    if (lit_peek(L) != ',') return -1;
    L->p++;
    lit_skip_ws(L);
    if (lit_peek(L) == (unsigned char)close) {
        L->p++;
        return 1;
    }
    return 0;
}

/* `[ ... ]` at L->p (the '[' already consumed) as a new list; NULL if
   refused. */
static PyObject *lit_list(azr_lit *L) {
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    lit_skip_ws(L);
    if (lit_peek(L) == ']') {
        L->p++;
        L->is_const = 0;
        return list;
    }
    for (;;) {
        PyObject *v = lit_value(L);
        if (!v) goto fail;
        int rc = PyList_Append(list, v);
        Py_DECREF(v);
        if (rc < 0) goto fail;
        int done = lit_after_elem(L, ']');
        if (done < 0) goto fail;
        if (done) {
            L->is_const = 0;
            return list;
        }
    }
fail:
    Py_DECREF(list);
    return NULL;
}

/* `( ... )` (the '(' consumed): `()` is the empty tuple, `(v)` is v itself,
   `(v,)` and `(v, w...)` are tuples, merged (lit_merge_tuple) when all their
   items are constants. NULL if refused. */
static PyObject *lit_paren(azr_lit *L) {
    lit_skip_ws(L);
    if (lit_peek(L) == ')') {
        L->p++;
        L->is_const = 1;
        return PyTuple_New(0);
    }
    PyObject *first = lit_value(L);
    if (!first) return NULL;
    int all_const = L->is_const;
    lit_skip_ws(L);
    if (lit_peek(L) == ')') {
        L->p++;
        return first; /* L->is_const is first's */
    }
    if (lit_peek(L) != ',') {
        Py_DECREF(first);
        return NULL;
    }
    PyObject *items = PyList_New(0);
    if (!items || PyList_Append(items, first) < 0) {
        Py_DECREF(first);
        Py_XDECREF(items);
        return NULL;
    }
    Py_DECREF(first);
    /* Re-read the comma after the first element through the common helper. */
    for (int done = lit_after_elem(L, ')'); done != 1;) {
        if (done < 0) goto fail;
        PyObject *v = lit_value(L);
        if (!v) goto fail;
        all_const &= L->is_const;
        int rc = PyList_Append(items, v);
        Py_DECREF(v);
        if (rc < 0) goto fail;
        done = lit_after_elem(L, ')');
    }
    PyObject *tuple = PyList_AsTuple(items);
    Py_DECREF(items);
    L->is_const = all_const;
    return tuple && all_const ? lit_merge_tuple(L, tuple) : tuple;
fail:
    Py_DECREF(items);
    return NULL;
}

/* `{ ... }` (the '{' consumed): `{}` is an empty dict, `{k: v, ...}` a
   dict, `{v, ...}` a set. Items go in source order through PyDict_SetItem /
   PySet_Add, as the interpreter builds a display: the first of equal keys
   (1, 1.0, True) is the one kept, the last value wins. An unhashable key or
   element refuses (its TypeError is cleared by the caller). */
static PyObject *lit_brace(azr_lit *L) {
    lit_skip_ws(L);
    if (lit_peek(L) == '}') {
        L->p++;
        L->is_const = 0;
        return PyDict_New();
    }
    PyObject *first = lit_value(L);
    if (!first) return NULL;
    lit_skip_ws(L);
    int is_dict = lit_peek(L) == ':';
    PyObject *out = is_dict ? PyDict_New() : PySet_New(NULL);
    if (!out) goto fail;
    for (;;) {
        int rc;
        if (is_dict) {
            L->p++; /* the ':' */
            PyObject *v = lit_value(L);
            rc = v ? PyDict_SetItem(out, first, v) : -1;
            Py_XDECREF(v);
        } else {
            rc = PySet_Add(out, first);
        }
        Py_CLEAR(first);
        if (rc < 0) goto fail;
        int done = lit_after_elem(L, '}');
        if (done < 0) goto fail;
        if (done) break;
        first = lit_value(L);
        if (!first) goto fail;
        if (is_dict) {
            lit_skip_ws(L);
            if (lit_peek(L) != ':') goto fail;
        }
    }
    L->is_const = 0;
    return out;
fail:
    Py_XDECREF(first);
    Py_XDECREF(out);
    return NULL;
}

/* One value at L->p (leading ws skipped), as a new reference, with
   L->is_const telling whether it is a constant; NULL if the text there is
   outside the grammar or a step failed (an exception may then be set: the
   caller clears it). */
static PyObject *lit_value(azr_lit *L) {
    lit_skip_ws(L);
    unsigned char c = lit_peek(L);
    L->is_const = 1;
    if (c == '-') { /* one unary minus, on a number only (folded, as the compiler does) */
        L->p++;
        lit_skip_ws(L);
        c = lit_peek(L);
        if (!(lit_digit(c) || c == '.')) return NULL;
        PyObject *v = lit_number(L);
        if (!v) return NULL;
        PyObject *neg = PyNumber_Negative(v);
        Py_DECREF(v);
        return neg ? lit_merge_number(L, neg) : NULL;
    }
    if (lit_digit(c) || c == '.') {
        PyObject *v = lit_number(L);
        return v ? lit_merge_number(L, v) : NULL;
    }
    if (c == '\'' || c == '"') return lit_string(L);
    if (lit_name_start(c)) return lit_name(L);
    if (c != '[' && c != '(' && c != '{') return NULL;
    if (L->depth >= AZR_LIT_MAX_DEPTH) return NULL;
    L->p++;
    L->depth++;
    PyObject *v = c == '[' ? lit_list(L) : c == '(' ? lit_paren(L) : lit_brace(L);
    L->depth--;
    return v;
}

/* Python's hard keywords, and __debug__ (which cannot be assigned): names
   that are never a keyword argument. */
static int lit_reserved(const char *s, size_t n) {
    static const char *const words[] = {
        "False", "None",   "True",    "and",      "as",       "assert", "async",  "await",
        "break", "class",  "continue", "def",     "del",      "elif",   "else",   "except",
        "finally", "for",  "from",    "global",   "if",       "import", "in",     "is",
        "lambda", "nonlocal", "not",  "or",       "pass",     "raise",  "return", "try",
        "while", "with",   "yield",   "__debug__"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strlen(words[i]) == n && memcmp(words[i], s, n) == 0) return 1;
    return 0;
}

/* If a keyword argument `NAME =` (not `==`) starts at L->p, consume it up
   to and including the '=' and return its length through *n with *name at
   its start: 1. 0 if no keyword starts here (L->p unchanged). */
static int lit_keyword(azr_lit *L, const char **name, size_t *n) {
    if (!lit_name_start(lit_peek(L))) return 0;
    size_t len = lit_name_len(L->p, L->end);
    const char *q = L->p + len;
    while (q < L->end && (*q == ' ' || *q == '\t' || *q == '\n')) q++;
    if (!(q < L->end && *q == '=' && !(q + 1 < L->end && q[1] == '='))) return 0;
    *name = L->p;
    *n = len;
    L->p = q + 1;
    return 1;
}

/* azr_lit_parse_args -- parse `n` bytes of `s` as a call's argument list
   (what sits between the parentheses of f(...)). Returns a new reference to
   a 2-tuple (args: tuple, kwargs: dict); ((), {}) for empty or whitespace
   only text. Returns NULL, with no Python exception set, when the text is
   outside the grammar above or any step fails (MemoryError included): the
   caller then parses it the general way, which raises what is due.
   `s` need not be NUL-terminated; a NUL byte in it refuses. Needs the GIL. */
PyObject *azr_lit_parse_args(const char *s, size_t n) {
    if (!s || memchr(s, '\0', n)) return NULL;
    azr_lit L = {s, s + n, 0, 0, NULL};
    PyObject *args = PyList_New(0), *kwargs = PyDict_New(), *out = NULL;
    if (!args || !kwargs) goto done;
    lit_skip_ws(&L);
    while (L.p < L.end) {
        const char *name;
        size_t nlen;
        if (lit_keyword(&L, &name, &nlen)) {
            if (lit_reserved(name, nlen)) goto done;
            PyObject *key = PyUnicode_FromStringAndSize(name, (Py_ssize_t)nlen);
            if (!key) goto done;
            PyUnicode_InternInPlace(&key); /* as the compiler's keyword names */
            if (!PyUnicode_CHECK_INTERNED(key)) {
                Py_DECREF(key);
                goto done;
            }
            int dup = PyDict_Contains(kwargs, key);
            PyObject *v = dup == 0 ? lit_value(&L) : NULL;
            int rc = v ? PyDict_SetItem(kwargs, key, v) : -1;
            Py_DECREF(key);
            Py_XDECREF(v);
            if (rc < 0) goto done;
        } else {
            if (PyDict_GET_SIZE(kwargs) > 0) goto done; /* positional after keyword */
            PyObject *v = lit_value(&L);
            int rc = v ? PyList_Append(args, v) : -1;
            Py_XDECREF(v);
            if (rc < 0) goto done;
        }
        lit_skip_ws(&L);
        if (L.p == L.end) break;
        if (*L.p != ',') goto done;
        L.p++;
        lit_skip_ws(&L);
    }
    PyObject *targs = PyList_AsTuple(args);
    if (targs) {
        out = PyTuple_Pack(2, targs, kwargs);
        Py_DECREF(targs);
    }
done:
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    Py_XDECREF(L.consts);
    if (!out && PyErr_Occurred()) PyErr_Clear();
    return out;
}
