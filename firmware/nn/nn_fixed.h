/* TFLite / gemmlowp fixed-point primitives (same rounding, same saturation). Internal to firmware/nn. */
#ifndef NN_FIXED_H
#define NN_FIXED_H

#include <stdint.h>

/* gemmlowp SaturatingRoundingDoublingHighMul: (a*b*2 + 2^31 rounding) >> 32, truncating toward zero. */
static inline int32_t nn_srdhm(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t t = ab + (ab >= 0 ? (1 << 30) : (1 - (1 << 30)));
    /* division by 2^31 truncates toward zero, unlike an arithmetic shift */
    return (int32_t)(t >= 0 ? (t >> 31) : -((-t) >> 31));
}

/* gemmlowp RoundingDivideByPOT: round half away from zero. */
static inline int32_t nn_rdbpot(int32_t x, int exponent) {
    int32_t mask = (int32_t)((1ll << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* tflite MultiplyByQuantizedMultiplier (double rounding, TFLM's default build). */
static inline int32_t nn_mbqm(int32_t x, int32_t mult, int shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return nn_rdbpot(nn_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

static inline int8_t nn_clamp8(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

#endif
