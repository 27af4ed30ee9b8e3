/*
 * py_model.h -- what other binding files (py_generate.c, py_rl.c...) may use
 * of the `azr._core.Model` type: reach the azr_model inside a Python model
 * object, and hold it while working on it with the GIL released.
 * Must not: expose the object's layout.
 */
#ifndef AZR_PY_MODEL_H
#define AZR_PY_MODEL_H

#include "py_common.h"
#include "../model/model.h"

/* If `obj` is an azr._core.Model (or an azr.Model, whose `_engine` is one),
 * mark it busy and store its azr_model in *out; return 0. Otherwise, or if
 * another call is already using it, set a Python exception (TypeError /
 * RuntimeError) and return -1. Call with the GIL held; every successful
 * acquire must be paired with azr_py_model_release(obj) (also GIL held).
 * While busy, other calls on the model raise instead of racing. */
int azr_py_model_acquire(PyObject *obj, azr_model **out);
void azr_py_model_release(PyObject *obj);

#endif /* AZR_PY_MODEL_H */
