/*
 * threads.c -- the number of OpenMP threads azr uses.
 * Owns: azr_set_num_threads / azr_get_num_threads. Must not: spawn threads
 * itself; OpenMP owns its pool.
 */
#include "azr_core.h"

#include <stdlib.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int azr_default_threads(void) {
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) {
        int n = atoi(env);
        if (n >= 1) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)n : 1;
}

void azr_set_num_threads(int n) {
    if (n <= 0) n = azr_default_threads();
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int azr_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
