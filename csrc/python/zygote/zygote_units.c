/*
 * zygote_units.c -- the C units the `azr._zygote` module needs, compiled here
 * as one translation unit so they get their own object files (the same
 * sources are also part of `azr._core`; sharing object paths between two
 * extensions built in parallel would race).
 * Must not: add code of its own.
 */
#include "../../core/error.c"
#include "../../sandbox/layers.c"
#include "../../sandbox/zygote.c"
