/*
 * error.c -- thread-local error messages and status names.
 * Owns: the per-thread message buffer. Must not: print or abort.
 */
#include "azr_core.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char azr_err_buf[1024];

azr_status azr_set_error(azr_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(azr_err_buf, sizeof azr_err_buf, fmt, ap);
    va_end(ap);
    return st;
}

const char *azr_last_error(void) { return azr_err_buf; }

void azr_clear_error(void) { azr_err_buf[0] = '\0'; }

const char *azr_status_name(azr_status st) {
    switch (st) {
    case AZR_OK: return "ok";
    case AZR_ERR_NOMEM: return "nomem";
    case AZR_ERR_IO: return "io";
    case AZR_ERR_FORMAT: return "format";
    case AZR_ERR_INVALID: return "invalid";
    case AZR_ERR_UNSUPPORTED: return "unsupported";
    case AZR_ERR_NUMERIC: return "numeric";
    case AZR_ERR_STATE: return "state";
    case AZR_ERR_SYSTEM: return "system";
    case AZR_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown";
}
