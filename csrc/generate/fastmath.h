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
 * x = n ln2 + r, |r| <= ln2/2, degree-7 polynomial for e^r; relative error ~1e-7. */
static inline float exp_neg(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
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

#endif /* AZR_GEN_FASTMATH_H */
