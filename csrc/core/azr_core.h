/*
 * azr_core.h -- the bottom layer of azr: status codes and error messages,
 * aligned allocation, thread-count control and a counter-based RNG.
 *
 * Owns: nothing that knows about models, tokens or processes.
 * Must not: print, abort or exit. Every fallible function returns an
 * azr_status and records a human-readable message with azr_set_error();
 * the Python binding turns that message into an exception.
 */
#ifndef AZR_CORE_H
#define AZR_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    AZR_OK = 0,
    AZR_ERR_NOMEM = 1,      /* allocation failed or a size estimate exceeded a budget */
    AZR_ERR_IO = 2,         /* a file could not be opened, read, mapped or written   */
    AZR_ERR_FORMAT = 3,     /* a file's contents are malformed or lie about themselves */
    AZR_ERR_INVALID = 4,    /* a caller passed an invalid argument                    */
    AZR_ERR_UNSUPPORTED = 5,/* a valid request this build does not implement          */
    AZR_ERR_NUMERIC = 6,    /* non-finite values where finite ones are required       */
    AZR_ERR_STATE = 7,      /* an object used in the wrong state (closed, freed...)   */
    AZR_ERR_SYSTEM = 8,     /* an OS call failed (fork, pipe, seccomp...)             */
    AZR_ERR_INTERRUPTED = 9 /* the operation was cancelled by the caller              */
} azr_status;

/* Record a printf-style message for the calling thread and return `st`.
 * The message is kept in thread-local storage (at most 1023 bytes, longer
 * messages are cut) until the next azr_set_error() on the same thread.
 * Usage: return azr_set_error(AZR_ERR_IO, "cannot open %s", path); */
azr_status azr_set_error(azr_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The last message recorded on this thread; "" if none. Never NULL. */
const char *azr_last_error(void);

/* Reset this thread's message to "". */
void azr_clear_error(void);

/* A short constant name for a status ("io", "format", ...). */
const char *azr_status_name(azr_status st);

/* Aligned allocation (64-byte alignment, suitable for SIMD and cache lines).
 * azr_alloc(0) returns NULL without setting an error. On failure it returns
 * NULL and records an AZR_ERR_NOMEM message naming `what` and the size.
 * azr_free(NULL) is a no-op. Memory from azr_alloc must be freed with azr_free. */
void *azr_alloc(size_t bytes, const char *what);
void *azr_calloc(size_t bytes, const char *what);
void azr_free(void *p);

/* azr_alloc for a large buffer that is streamed end to end many times (the
 * parameter arena, the packed decode weights): 2 MiB-aligned, rounded up to 2 MiB, and marked
 * for transparent huge pages where the kernel offers them (Linux
 * madvise(MADV_HUGEPAGE), a hint that may be refused). With 4 KiB pages a
 * weight stream crosses a page (a TLB miss, and a restart of the hardware
 * prefetcher) every 4 KiB. Free with azr_free. */
void *azr_alloc_streamed(size_t bytes, const char *what);

/* Threads. azr_set_num_threads(n) with n >= 1 sets the number of OpenMP
 * threads azr uses; n <= 0 restores the default (OMP_NUM_THREADS if set,
 * else the number of online CPUs). azr_get_num_threads() reports it. */
void azr_set_num_threads(int n);
int azr_get_num_threads(void);

/* Counter-based RNG (Philox-4x32-10). The same (key, counter) gives the same
 * bits on every machine and thread count, so a random stream can be keyed by
 * (seed, request, sample, position) and be independent of batch layout. */
typedef struct { uint32_t v[4]; } azr_u32x4;
azr_u32x4 azr_philox(uint64_t key, uint64_t counter_hi, uint64_t counter_lo);
/* Uniform float in [0, 1) with 24 random bits, from one Philox word. */
static inline float azr_u32_to_unit_float(uint32_t x) {
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}
/* Uniform double in [0, 1) with 53 random bits from two Philox words. */
static inline double azr_u32x2_to_unit_double(uint32_t a, uint32_t b) {
    uint64_t x = ((uint64_t)a << 21) ^ (uint64_t)b;
    x &= ((uint64_t)1 << 53) - 1;
    return (double)x * (1.0 / 9007199254740992.0);
}

#ifdef __cplusplus
}
#endif
#endif /* AZR_CORE_H */
