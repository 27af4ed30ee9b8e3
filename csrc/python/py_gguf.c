/*
 * py_gguf.c -- binding for the gguf layer. Placeholder: this layer is not
 * built yet, so it registers nothing.
 */
#include "py_common.h"

int azr_py_init_gguf(PyObject *m) {
    (void)m;
    return 0;
}
