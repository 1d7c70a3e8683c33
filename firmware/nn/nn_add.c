/* ADD of two int8 tensors of the same shape, TFLite's reference integer arithmetic. */
#include "nn.h"
#include "nn_fixed.h"

/* MultiplyByQuantizedMultiplierSmallerThanOneExp: shift <= 0. */
static inline int32_t mul_small(int32_t x, int32_t mult, int32_t shift) {
    return nn_rdbpot(nn_srdhm(x, mult), -shift);
}

void nn_add(const nn_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    for (int32_t i = 0; i < p->n; i++) {
        const int32_t a = (int32_t)((uint32_t)(p->in1_offset + in1[i]) << p->left_shift);
        const int32_t b = (int32_t)((uint32_t)(p->in2_offset + in2[i]) << p->left_shift);
        const int32_t sum = mul_small(a, p->in1_mult, p->in1_shift) + mul_small(b, p->in2_mult, p->in2_shift);
        const int32_t v = mul_small(sum, p->out_mult, p->out_shift) + p->out_zp;
        out[i] = nn_clamp8(v, p->act_min, p->act_max);
    }
}
