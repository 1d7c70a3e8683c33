/* TFLite / gemmlowp fixed-point primitives (same rounding, same saturation). Internal to firmware/nn. */
#ifndef NN_FIXED_H
#define NN_FIXED_H

#include <stdint.h>

#include "nn.h"

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

/* tflite MultiplyByQuantizedMultiplier (double rounding, TFLM's default build), literally: the reference
 * that tests/test_nn_kernels.py holds nn_requant to. */
static inline int32_t nn_mbqm(int32_t x, int32_t mult, int shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return nn_rdbpot(nn_srdhm((int32_t)((uint32_t)x << left), mult), right);
}

/* nn_mbqm for mult >= 0 without a 64-bit multiply (the M0+ has only 32x32->32). Both TFLite roundings
 * are symmetric in the sign, so work on |x|; and the two roundings collapse into one exact floor,
 * since floor((floor(a/b) + c) / d) == floor((a + c*b) / (b*d)):
 *   |result| = floor((|x|*mult + 2^30 - neg + 2^(r-1)*2^31) / 2^(31+r)),  r = right shift. */
static inline int32_t nn_requant(int32_t x, int32_t mult, int shift) {
    if (shift > 0) x = (int32_t)((uint32_t)x << shift);
    const uint32_t sign = (uint32_t)(x >> 31);             /* 0 or all ones */
    const uint32_t u = ((uint32_t)x + sign) ^ sign;        /* |x| */
    const uint32_t m = (uint32_t)mult;
    const uint32_t uh = u >> 16, ul = u & 0xffffu, mh = m >> 16, ml = m & 0xffffu;
    uint32_t lo, hi;
    if (uh == 0) {                                         /* common case: two multiplies suffice */
        const uint32_t a = ul * mh, b = ul * ml;
        lo = b + (a << 16);
        hi = (a >> 16) + (lo < b);
    } else {
        const uint32_t cross = uh * ml + ul * mh;          /* < 2^32 since u <= 2^31, m < 2^31 */
        const uint32_t ll = ul * ml;
        lo = ll + (cross << 16);
        hi = uh * mh + (cross >> 16) + (lo < ll);
    }
    const uint32_t t = lo;
    lo += (1u << 30) + sign;                               /* + 2^30 - neg */
    hi += lo < t;
    uint32_t q;
    if (shift <= -2) {
        q = (hi + (1u << (-shift - 2))) >> (-shift - 1);   /* 2^(r-1)*2^31 lands in the high word */
    } else if (shift == -1) {
        q = hi + (lo >> 31);                               /* + 2^31 carries exactly when lo >= 2^31 */
    } else {
        q = (hi << 1) | (lo >> 31);
    }
    return (int32_t)((q ^ sign) - sign);
}

static inline int8_t nn_clamp8(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* The weight words of a block of 4 channels (nn.h) before its records: depthwise, packed (the other layers). */
#define NN_DW_WORDS(taps) (4 * (taps))
#define NN_PACKED_WORDS(taps) (4 * (((taps) + 1) / 2))
static inline const nn_rqc_t *nn_records(const int32_t *block, int32_t words) {
    return (const nn_rqc_t *)(const void *)(block + words);
}

/* Channel j's weight at tap t of a packed block of n taps. */
static inline int32_t nn_wtap(const int32_t *block, int32_t n, int32_t t, int j) {
    if (t == n - 1 && n % 2) return block[2 * t + j];
    const int32_t p = block[4 * (t / 2) + 2 * (j / 2) + t % 2];
    const int32_t lo = (int32_t)(((uint32_t)p & 0xffffu) ^ 0x8000u) - 0x8000;
    return j % 2 ? (p - lo) / 65536 : lo;
}

/* nn_out beyond a record's fast range, acc >= lo (nn_requant.c; rare, so out of nn_out's callers' loops). */
int8_t nn_out_slow(const nn_requant_t *rq, const nn_rqc_t *c, int32_t acc);

/* One output channel from its sum without the bias (nn_rqc_t). Accumulators below the range (half of a ReLU
 * layer's) cost a compare; most of the others two 32-bit multiplies. */
static inline int8_t nn_out(const nn_requant_t *rq, const nn_rqc_t *c, int32_t acc) {
    if (acc < c->lo) return (int8_t)rq->act_min;
    if (acc < c->hi) {
        const uint32_t d = (uint32_t)acc - (uint32_t)c->lo;
        const uint32_t a = (uint32_t)acc * c->w0 + c->w1;
        return (int8_t)(uint8_t)((a + ((d * (c->w3 & 0xffffu) + (c->w3 >> 16)) >> 16)) >> 24);
    }
    return nn_out_slow(rq, c, acc);
}

/* Requantizes up to 4 accumulators of output channels o..o+n-1 into y[0..n-1], records at c. */
static inline void nn_store4(const nn_requant_t *rq, const nn_rqc_t *c, const int32_t acc[4], int n, int8_t *y) {
    for (int j = 0; j < n; j++) y[j] = nn_out(rq, c + j, acc[j]);
}

#endif
