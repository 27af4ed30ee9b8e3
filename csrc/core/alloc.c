/*
 * alloc.c -- 64-byte aligned allocation with error messages.
 * Owns: azr_alloc / azr_calloc / azr_free. Must not: abort on failure.
 */
#include "azr_core.h"

#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define AZR_ALIGN 64

/* `bytes` rounded up to a multiple of `align` and allocated at that alignment */
static void *alloc_aligned(size_t align, size_t bytes, const char *what) {
    size_t rounded = (bytes + align - 1) / align * align;
    if (rounded < bytes) {
        azr_set_error(AZR_ERR_NOMEM, "size overflow allocating %s", what ? what : "memory");
        return NULL;
    }
    void *p = aligned_alloc(align, rounded);
    if (!p)
        azr_set_error(AZR_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes,
                      what ? what : "memory");
    return p;
}

void *azr_alloc(size_t bytes, const char *what) {
    if (bytes == 0) return NULL;
    return alloc_aligned(AZR_ALIGN, bytes, what);
}

void *azr_calloc(size_t bytes, const char *what) {
    void *p = azr_alloc(bytes, what);
    if (p) memset(p, 0, bytes);
    return p;
}

void azr_free(void *p) { free(p); }

#define AZR_HUGE_PAGE ((size_t)2 << 20)

void *azr_alloc_streamed(size_t bytes, const char *what) {
    if (bytes < AZR_HUGE_PAGE) return azr_alloc(bytes, what);
    void *p = alloc_aligned(AZR_HUGE_PAGE, bytes, what);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    /* before the first touch; a refusal only costs the speed-up */
    if (p) (void)madvise(p, (bytes + AZR_HUGE_PAGE - 1) / AZR_HUGE_PAGE * AZR_HUGE_PAGE, MADV_HUGEPAGE);
#endif
    return p;
}
