/*
 * py_model.c -- binding for the model layer. Placeholder: this layer is not
 * built yet, so it registers nothing.
 */
#include "py_common.h"

int azr_py_init_model(PyObject *m) {
    (void)m;
    return 0;
}
