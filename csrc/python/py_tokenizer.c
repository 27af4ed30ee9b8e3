/*
 * py_tokenizer.c -- binding for the tokenizer layer. Placeholder: this layer is not
 * built yet, so it registers nothing.
 */
#include "py_common.h"

int azr_py_init_tokenizer(PyObject *m) {
    (void)m;
    return 0;
}
