/*
 * fastmath.h -- small vectorizable math shared by the generate layer's
 * kernels and samplers. Must not: hold state.
 */
#ifndef AZR_GEN_FASTMATH_H
#define AZR_GEN_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for x <= 0 (clamped at -87, where the result is ~0), vectorizable:
 * x = n ln2 + r, |r| <= ln2/2, degree-7 polynomial for e^r; relative error ~1e-7.
 * n = x log2(e) rounded to nearest (ties to even) by adding and subtracting
 * 1.5 * 2^23, exact for |x log2(e)| < 2^22. Its users compile without
 * fused multiply-add contraction, so exp_neg8 below, the same operations
 * lane by lane, gives the same bits. */
static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

typedef float azr_v8f __attribute__((vector_size(32)));
typedef int32_t azr_v8i __attribute__((vector_size(32)));

static inline azr_v8f azr_splat8(float v) { return (azr_v8f){v, v, v, v, v, v, v, v}; }

/* Sum of 8 lanes in one fixed order. */
static inline float azr_hsum8(azr_v8f a) {
    float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s2) + (s1 + s3);
}

/* exp_neg of 8 lanes (GCC vector extensions: AVX with -march=native). */
static inline azr_v8f exp_neg8(azr_v8f x) {
    azr_v8f lo = azr_splat8(-87.0f);
    azr_v8i below = x < lo;
    x = (azr_v8f)(((azr_v8i)x & ~below) | ((azr_v8i)lo & below));
    azr_v8f big = azr_splat8(12582912.0f);
    azr_v8f n = (x * azr_splat8(1.44269504088896341f) + big) - big;
    azr_v8f r = x - n * azr_splat8(0.693145751953125f);
    r = r - n * azr_splat8(1.428606765330187045e-06f);
    azr_v8f p = azr_splat8(1.0f / 5040.0f);
    p = p * r + azr_splat8(1.0f / 720.0f);
    p = p * r + azr_splat8(1.0f / 120.0f);
    p = p * r + azr_splat8(1.0f / 24.0f);
    p = p * r + azr_splat8(1.0f / 6.0f);
    p = p * r + azr_splat8(0.5f);
    p = p * r + azr_splat8(1.0f);
    p = p * r + azr_splat8(1.0f);
    azr_v8i bits = (__builtin_convertvector(n, azr_v8i) + 127) << 23;
    return p * (azr_v8f)bits;
}

#endif /* AZR_GEN_FASTMATH_H */
