/* CONV_2D (general kernel size/stride/padding) and DEPTHWISE_CONV_2D, TFLite int8 per-channel semantics. */
#include "nn.h"
#include "nn_fixed.h"

static inline int8_t requant(const nn_requant_t *rq, int o, int32_t acc) {
    return nn_clamp8(nn_mbqm(acc, rq->mult[o], rq->shift[o]) + rq->out_zp, rq->act_min, rq->act_max);
}

/* Accumulates one input run of n bytes against 4 weight rows spaced `ws` apart. */
static inline void dot4(const int8_t *x, const int8_t *w, int32_t ws, int n, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int8_t *w1 = w + ws, *w2 = w1 + ws, *w3 = w2 + ws;
    for (int k = 0; k < n; k++) {
        int32_t v = x[k];
        a0 += v * w[k];
        a1 += v * w1[k];
        a2 += v * w2[k];
        a3 += v * w3[k];
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}

static inline int32_t dot1(const int8_t *x, const int8_t *w, int n) {
    int32_t a = 0;
    for (int k = 0; k < n; k++) a += x[k] * w[k];
    return a;
}

/* One output pixel whose window may cross the border: padded taps count as the input zero point. */
static void conv_pixel_border(const nn_conv_t *p, const int8_t *in, int iy0, int ix0, int8_t *out) {
    const int C = p->in_c, KW = p->k_w, KH = p->k_h;
    const int32_t ksz = KH * KW * C;
    for (int o = 0; o < p->out_c; o++) {
        const int8_t *w = p->weights + o * ksz;
        int32_t acc = p->rq.bias[o];
        for (int ky = 0; ky < KH; ky++) {
            int iy = iy0 + ky;
            for (int kx = 0; kx < KW; kx++, w += C) {
                int ix = ix0 + kx;
                if (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w) {
                    acc += dot1(in + (iy * p->in_w + ix) * C, w, C);
                } else {
                    int32_t s = 0;
                    for (int c = 0; c < C; c++) s += w[c];
                    acc += p->in_zp * s;
                }
            }
        }
        out[o] = requant(&p->rq, o, acc);
    }
}

/* Window fully inside: each kernel row is one contiguous run of KW*C input bytes. */
static void conv_pixel_interior(const nn_conv_t *p, const int8_t *in, int iy0, int ix0, int8_t *out) {
    const int C = p->in_c, KW = p->k_w, KH = p->k_h, OC = p->out_c;
    const int32_t ksz = KH * KW * C, run = KW * C, rowstep = p->in_w * C;
    const int8_t *base = in + (iy0 * p->in_w + ix0) * C;
    int o = 0;
    for (; o + 4 <= OC; o += 4) {
        int32_t acc[4] = {p->rq.bias[o], p->rq.bias[o + 1], p->rq.bias[o + 2], p->rq.bias[o + 3]};
        const int8_t *w = p->weights + o * ksz;
        for (int ky = 0; ky < KH; ky++) dot4(base + ky * rowstep, w + ky * run, ksz, run, acc);
        for (int j = 0; j < 4; j++) out[o + j] = requant(&p->rq, o + j, acc[j]);
    }
    for (; o < OC; o++) {
        int32_t acc = p->rq.bias[o];
        const int8_t *w = p->weights + o * ksz;
        for (int ky = 0; ky < KH; ky++) acc += dot1(base + ky * rowstep, w + ky * run, run);
        out[o] = requant(&p->rq, o, acc);
    }
}

void nn_conv2d(const nn_conv_t *p, const int8_t *in, int8_t *out) {
    for (int oy = 0; oy < p->out_h; oy++) {
        int iy0 = oy * p->stride_h - p->pad_top;
        int rows_in = iy0 >= 0 && iy0 + p->k_h <= p->in_h;
        for (int ox = 0; ox < p->out_w; ox++, out += p->out_c) {
            int ix0 = ox * p->stride_w - p->pad_left;
            if (rows_in && ix0 >= 0 && ix0 + p->k_w <= p->in_w)
                conv_pixel_interior(p, in, iy0, ix0, out);
            else
                conv_pixel_border(p, in, iy0, ix0, out);
        }
    }
}

/* Depthwise, weights [C][KH*KW]; the window may cross the border (padded taps = zero point). */
static void dw_pixel_border(const nn_dwconv_t *p, const int8_t *in, int iy0, int ix0, int8_t *out) {
    const int C = p->in_c, KW = p->k_w, KH = p->k_h;
    for (int c = 0; c < C; c++) {
        const int8_t *w = p->weights + c * KH * KW;
        int32_t acc = p->rq.bias[c];
        for (int ky = 0; ky < KH; ky++) {
            int iy = iy0 + ky;
            for (int kx = 0; kx < KW; kx++) {
                int ix = ix0 + kx;
                int32_t v = (iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w)
                                ? in[(iy * p->in_w + ix) * C + c] : p->in_zp;
                acc += v * w[ky * KW + kx];
            }
        }
        out[c] = requant(&p->rq, c, acc);
    }
}

static void dw_pixel_interior(const nn_dwconv_t *p, const int8_t *in, int iy0, int ix0, int8_t *out) {
    const int C = p->in_c, KW = p->k_w, KH = p->k_h;
    const int8_t *base = in + (iy0 * p->in_w + ix0) * C;
    const int32_t rowstep = p->in_w * C;
    if (KH == 3 && KW == 3) {
        const int32_t r1 = rowstep, r2 = 2 * rowstep;
        const int32_t C2 = 2 * C;
        for (int c = 0; c < C; c++) {
            const int8_t *w = p->weights + c * 9;
            const int8_t *x = base + c;
            int32_t acc = p->rq.bias[c];
            acc += x[0] * w[0] + x[C] * w[1] + x[C2] * w[2];
            acc += x[r1] * w[3] + x[r1 + C] * w[4] + x[r1 + C2] * w[5];
            acc += x[r2] * w[6] + x[r2 + C] * w[7] + x[r2 + C2] * w[8];
            out[c] = requant(&p->rq, c, acc);
        }
        return;
    }
    for (int c = 0; c < C; c++) {
        const int8_t *w = p->weights + c * KH * KW;
        int32_t acc = p->rq.bias[c];
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++) acc += base[ky * rowstep + kx * C + c] * w[ky * KW + kx];
        out[c] = requant(&p->rq, c, acc);
    }
}

void nn_dwconv(const nn_dwconv_t *p, const int8_t *in, int8_t *out) {
    for (int oy = 0; oy < p->out_h; oy++) {
        int iy0 = oy * p->stride_h - p->pad_top;
        int rows_in = iy0 >= 0 && iy0 + p->k_h <= p->in_h;
        for (int ox = 0; ox < p->out_w; ox++, out += p->out_c) {
            int ix0 = ox * p->stride_w - p->pad_left;
            if (rows_in && ix0 >= 0 && ix0 + p->k_w <= p->in_w)
                dw_pixel_interior(p, in, iy0, ix0, out);
            else
                dw_pixel_border(p, in, iy0, ix0, out);
        }
    }
}
