/* test_core.c -- the core layer under sanitizers: errors, allocation, RNG. */
#include <string.h>

#include "azr_test.h"
#include "core/azr_core.h"

int main(void) {
    CHECK(azr_set_error(AZR_ERR_IO, "cannot open %s", "x.bin") == AZR_ERR_IO);
    CHECK(strcmp(azr_last_error(), "cannot open x.bin") == 0);
    azr_clear_error();
    CHECK(azr_last_error()[0] == '\0');

    CHECK(azr_alloc(0, "nothing") == NULL);
    float *p = azr_calloc(1000 * sizeof(float), "floats");
    CHECK(p != NULL && ((uintptr_t)p % 64) == 0 && p[999] == 0.0f);
    azr_free(p);
    azr_free(NULL);

    /* Random123 known-answer vector for philox4x32_10 with zero key and counter. */
    azr_u32x4 r = azr_philox(0, 0, 0);
    CHECK(r.v[0] == 0x6627E8D5u && r.v[1] == 0xE169C58Du && r.v[2] == 0xBC57AC4Cu &&
          r.v[3] == 0x9B00DBD8u);
    azr_set_num_threads(1);
    CHECK(azr_get_num_threads() == 1);
    TEST_MAIN_END();
}
