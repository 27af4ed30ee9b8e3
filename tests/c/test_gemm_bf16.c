/* test_gemm_bf16.c -- azr_gemm_bf16 (csrc/backend/cpu/gemm_bf16.c) against a
 * double-precision product of the bf16-rounded inputs, for every
 * transposition, edge-sized tiles (rows past a 12-row block, columns past a
 * 32-column panel, odd K), every ISA level the machine has, beta 0 and 1,
 * strided leading dimensions; and the rounding of special values. Under
 * ASan/UBSan (run.sh), which also checks the packing never leaves its
 * buffers. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../../csrc/backend/cpu/kernels.h"
#include "../../csrc/core/cpu.h"
#include "azr_test.h"

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static double bf(float x) {
    uint16_t h = azr_bf16_round(x);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void check_shape(int64_t M, int64_t N, int64_t K, int ta, int tb, float beta, uint32_t *seed) {
    int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
    int64_t ra = ta ? K : M, rb = tb ? N : K;
    float *A = malloc(sizeof(float) * (size_t)(ra * lda));
    float *B = malloc(sizeof(float) * (size_t)(rb * ldb));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc));
    for (int64_t i = 0; i < ra * lda; i++) A[i] = frand(seed);
    for (int64_t i = 0; i < rb * ldb; i++) B[i] = frand(seed);
    for (int64_t i = 0; i < M * ldc; i++) C[i] = frand(seed);
    float *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
    memcpy(C0, C, sizeof(float) * (size_t)(M * ldc));
    azr_gemm_bf16(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, beta, C, ldc);
    int ok = 1;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = bf(ta ? A[k * lda + i] : A[i * lda + k]);
                double b = bf(tb ? B[j * ldb + k] : B[k * ldb + j]);
                s += a * b;
                sa += fabs(a * b);
            }
            double want = 0.5 * s + (beta != 0.0f ? beta * (double)C0[i * ldc + j] : 0.0);
            if (fabs((double)C[i * ldc + j] - want) > 1e-6 * (double)(K + 1) * (sa + 1.0)) ok = 0;
        }
        for (int64_t j = N; j < ldc; j++) /* past the columns: untouched */
            if (C[i * ldc + j] != C0[i * ldc + j]) ok = 0;
    }
    CHECK(ok);
    if (!ok) fprintf(stderr, "  M=%lld N=%lld K=%lld ta=%d tb=%d beta=%g\n", (long long)M,
                     (long long)N, (long long)K, ta, tb, beta);
    free(A);
    free(B);
    free(C);
    free(C0);
}

int main(void) {
    uint32_t seed = 12345;
    /* rounding: ties to even, NaN stays NaN, subnormals to zero, overflow to inf */
    CHECK(azr_bf16_round(1.0f) == 0x3f80);
    CHECK(azr_bf16_round(1.00390625f) == 0x3f80); /* tie, even below */
    CHECK(azr_bf16_round(1.01171875f) == 0x3f82); /* tie, even above */
    CHECK(azr_bf16_round(-2.0f) == 0xc000);
    CHECK(azr_bf16_round(1e-39f) == 0x0000 && azr_bf16_round(-1e-39f) == 0x8000);
    CHECK(azr_bf16_round(INFINITY) == 0x7f80 && azr_bf16_round(3.4e38f) == 0x7f80);
    uint16_t n = azr_bf16_round(NAN);
    CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    int top = azr_isa_available();
    for (int level = 0; level <= top; level++) {
        CHECK(azr_isa_set(level) == AZR_OK);
        static const int64_t shapes[][3] = {{1, 1, 1}, {12, 32, 2}, {13, 33, 3}, {11, 31, 7},
                                            {25, 65, 64}, {40, 7, 129}, {3, 100, 1}};
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++)
                    for (int b = 0; b < 2; b++)
                        check_shape(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb,
                                    b ? 1.0f : 0.0f, &seed);
        /* K = 0: C = beta C */
        float c[2] = {3.0f, 4.0f}, a = 1.0f;
        azr_gemm_bf16(0, 0, 1, 2, 0, 1.0f, &a, 1, &a, 2, 0.5f, c, 2);
        CHECK(c[0] == 1.5f && c[1] == 2.0f);
    }
    CHECK(azr_isa_set(top + 1) != AZR_OK);
    CHECK(azr_isa_set(-1) == AZR_OK && azr_isa_get() == top);
    TEST_MAIN_END();
}
