/* azr_test.h -- a minimal check macro set for the C-level tests. */
#ifndef AZR_TEST_H
#define AZR_TEST_H
#include <stdio.h>
#include <stdlib.h>

static int azr_test_failures = 0;
static int azr_test_checks = 0;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        azr_test_checks++;                                                                \
        if (!(cond)) {                                                                    \
            azr_test_failures++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                                 \
    } while (0)

#define TEST_MAIN_END()                                                                   \
    do {                                                                                  \
        printf("%d checks, %d failed\n", azr_test_checks, azr_test_failures);             \
        return azr_test_failures ? 1 : 0;                                                 \
    } while (0)
#endif
