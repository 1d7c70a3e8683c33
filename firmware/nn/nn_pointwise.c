/* 1x1 convolution / fully connected as a 2-pixel x 2-channel register-blocked matrix product.
 * Weights are w+128 as uint8: sum x*w = sum x*(w+128) - 128*sum x, and sum x is shared by every
 * output channel of a pixel, so the correction costs one add per input byte per pixel. */
#include "nn.h"
#include "nn_fixed.h"

static inline int8_t requant(const nn_requant_t *rq, int o, int32_t acc) {
    return nn_clamp8(nn_mbqm(acc, rq->mult[o], rq->shift[o]) + rq->out_zp, rq->act_min, rq->act_max);
}

static int32_t sum128(const int8_t *x, int n) {
    int32_t s = 0;
    for (int k = 0; k < n; k++) s += x[k];
    return s * 128;
}

/* Two pixels at once: four accumulators share two input and two weight loads per step. */
static void two_pixels(const nn_pointwise_t *p, const int8_t *x0, int8_t *y0) {
    const int K = p->in_c, OC = p->out_c;
    const int8_t *x1 = x0 + K;
    int8_t *y1 = y0 + OC;
    const int32_t s0 = sum128(x0, K), s1 = sum128(x1, K);
    const uint8_t *w = p->weights;
    int o = 0;
    for (; o + 2 <= OC; o += 2) {
        int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
        for (int k = 0; k < K; k++, w += 2) {
            int32_t u = x0[k], v = x1[k];
            int32_t w0 = w[0], w1 = w[1];
            a00 += u * w0;
            a01 += u * w1;
            a10 += v * w0;
            a11 += v * w1;
        }
        const int32_t b0 = p->rq.bias[o], b1 = p->rq.bias[o + 1];
        y0[o] = requant(&p->rq, o, b0 + a00 - s0);
        y0[o + 1] = requant(&p->rq, o + 1, b1 + a01 - s0);
        y1[o] = requant(&p->rq, o, b0 + a10 - s1);
        y1[o + 1] = requant(&p->rq, o + 1, b1 + a11 - s1);
    }
    if (o < OC) {
        int32_t a0 = 0, a1 = 0;
        for (int k = 0; k < K; k++) {
            int32_t wk = w[k];
            a0 += x0[k] * wk;
            a1 += x1[k] * wk;
        }
        y0[o] = requant(&p->rq, o, p->rq.bias[o] + a0 - s0);
        y1[o] = requant(&p->rq, o, p->rq.bias[o] + a1 - s1);
    }
}

static void one_pixel(const nn_pointwise_t *p, const int8_t *x, int8_t *y) {
    const int K = p->in_c, OC = p->out_c;
    const int32_t s = sum128(x, K);
    const uint8_t *w = p->weights;
    int o = 0;
    for (; o + 2 <= OC; o += 2) {
        int32_t a0 = 0, a1 = 0;
        for (int k = 0; k < K; k++, w += 2) {
            int32_t u = x[k];
            a0 += u * w[0];
            a1 += u * w[1];
        }
        y[o] = requant(&p->rq, o, p->rq.bias[o] + a0 - s);
        y[o + 1] = requant(&p->rq, o + 1, p->rq.bias[o + 1] + a1 - s);
    }
    if (o < OC) {
        int32_t a = 0;
        for (int k = 0; k < K; k++) a += x[k] * w[k];
        y[o] = requant(&p->rq, o, p->rq.bias[o] + a - s);
    }
}

void nn_pointwise(const nn_pointwise_t *p, const int8_t *in, int8_t *out) {
    const int K = p->in_c, OC = p->out_c;
    int32_t i = 0;
    for (; i + 2 <= p->pixels; i += 2) two_pixels(p, in + i * K, out + i * OC);
    if (i < p->pixels) one_pixel(p, in + i * K, out + i * OC);
}
