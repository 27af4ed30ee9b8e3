/*
 * py_rl.c -- binding for the rl layer. Placeholder: this layer is not
 * built yet, so it registers nothing.
 */
#include "py_common.h"

int azr_py_init_rl(PyObject *m) {
    (void)m;
    return 0;
}
