/*
 * py_generate.c -- binding for the generate layer. Placeholder: this layer is not
 * built yet, so it registers nothing.
 */
#include "py_common.h"

int azr_py_init_generate(PyObject *m) {
    (void)m;
    return 0;
}
