/*
 * py_sandbox.c -- binding for the sandbox layer. Placeholder: this layer is not
 * built yet, so it registers nothing.
 */
#include "py_common.h"

int azr_py_init_sandbox(PyObject *m) {
    (void)m;
    return 0;
}
