/*
 * alloc.c -- 64-byte aligned allocation with error messages.
 * Owns: azr_alloc / azr_calloc / azr_free. Must not: abort on failure.
 */
#include "azr_core.h"

#include <stdlib.h>
#include <string.h>

#define AZR_ALIGN 64

void *azr_alloc(size_t bytes, const char *what) {
    if (bytes == 0) return NULL;
    size_t rounded = (bytes + AZR_ALIGN - 1) / AZR_ALIGN * AZR_ALIGN;
    if (rounded < bytes) {
        azr_set_error(AZR_ERR_NOMEM, "size overflow allocating %s", what ? what : "memory");
        return NULL;
    }
    void *p = aligned_alloc(AZR_ALIGN, rounded);
    if (!p)
        azr_set_error(AZR_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes,
                      what ? what : "memory");
    return p;
}

void *azr_calloc(size_t bytes, const char *what) {
    void *p = azr_alloc(bytes, what);
    if (p) memset(p, 0, bytes);
    return p;
}

void azr_free(void *p) { free(p); }
