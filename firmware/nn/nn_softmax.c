/* int8 SOFTMAX: TFLite's reference algorithm (gemmlowp fixed-point exp and reciprocal). */
#include "nn.h"
#include "nn_fixed.h"

#define F0_ONE INT32_MAX     /* 1.0 in Q0.31 (saturated) */
#define F2_ONE (1 << 29)     /* 1.0 in Q2.29 */

static inline int32_t pot_mul_pos(int32_t x, int exponent) { /* SaturatingRoundingMultiplyByPOT, exponent > 0 */
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;     /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = a + (1 << 28);
    const int32_t x2 = nn_srdhm(x, x);
    const int32_t x3 = nn_srdhm(x2, x);
    const int32_t x4 = nn_srdhm(x2, x2);
    const int32_t x4_over_4 = nn_rdbpot(x4, 2);
    const int32_t poly = nn_rdbpot(nn_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + nn_srdhm(constant_term, x + poly);
}

/* gemmlowp exp_on_negative_values for a Q5.26 input, Q0.31 result. */
static int32_t exp_negative_q5(int32_t a) {
    enum { FRAC = 26 };
    const int32_t one_quarter = 1 << (FRAC - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod = (a & mask) - one_quarter;
    int32_t result = exp_quarter(a_mod << 5); /* Rescale<0> from Q5.26: exponent 5, never saturates here */
    const int32_t remainder = a_mod - a;
    static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    for (int e = -2; e <= 4; e++)
        if (remainder & (1 << (FRAC + e))) result = nn_srdhm(result, mults[e + 2]);
    return a == 0 ? F0_ONE : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31. */
static int32_t one_over_one_plus_x(int32_t a) {
    const int64_t sum = (int64_t)a + F0_ONE;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    const int32_t c48_17 = 1515870810, cneg32_17 = -1010580540;
    int32_t x = c48_17 + nn_srdhm(half_denominator, cneg32_17);
    for (int i = 0; i < 3; i++) {
        const int32_t hdx = nn_srdhm(half_denominator, x);
        const int32_t one_minus = F2_ONE - hdx;
        x = x + pot_mul_pos(nn_srdhm(x, one_minus), 2);
    }
    return pot_mul_pos(x, 1); /* Rescale<0>(ExactMulByPot<-1>(x)): Q2.29 -> Q0.31 */
}

static int clz32(uint32_t x) {
    int n = 0;
    if (x == 0) return 32;
    while (!(x & 0x80000000u)) { x <<= 1; n++; }
    return n;
}

void nn_softmax(const nn_softmax_t *p, const int8_t *in, int8_t *out) {
    const int D = p->depth;
    for (int32_t r = 0; r < p->rows; r++, in += D, out += D) {
        int32_t max = -128;
        for (int c = 0; c < D; c++) if (in[c] > max) max = in[c];
        int32_t sum = 0; /* Q12.19 */
        for (int c = 0; c < D; c++) {
            const int32_t diff = in[c] - max;
            if (diff >= p->diff_min) {
                const int32_t scaled = nn_srdhm(diff * (1 << p->input_left_shift), p->input_multiplier);
                sum += nn_rdbpot(exp_negative_q5(scaled), 12); /* Rescale<12> from Q0.31 */
            }
        }
        const int headroom_plus_one = clz32((uint32_t)sum);
        const int num_bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_sum_minus_one = (int32_t)(((uint32_t)sum << headroom_plus_one) - (1u << 31));
        const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);
        const int exponent = num_bits_over_unit + 31 - 8;
        for (int c = 0; c < D; c++) {
            const int32_t diff = in[c] - max;
            if (diff >= p->diff_min) {
                const int32_t scaled = nn_srdhm(diff * (1 << p->input_left_shift), p->input_multiplier);
                const int32_t e = exp_negative_q5(scaled);
                const int32_t v = nn_rdbpot(nn_srdhm(shifted_scale, e), exponent) - 128;
                out[c] = nn_clamp8(v, -128, 127);
            } else {
                out[c] = -128;
            }
        }
    }
}
