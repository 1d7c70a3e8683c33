/* CONV_2D (any kernel, stride, padding) and DEPTHWISE_CONV_2D with TFLite int8 per-channel semantics.
 * Interior windows take the fast path; only border windows pay for bounds checks. */
#include "nn.h"
#include "nn_dot.h"
#include "nn_fixed.h"

/* Window crossing the border: valid taps accumulate, padded taps add zero_point * weights. */
static void conv_border(const nn_conv_t *p, const int8_t *in, int iy0, int ix0, const int32_t *w, int32_t acc[4]) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c;
    for (int ky = 0; ky < g->k_h; ky++) {
        const int iy = iy0 + ky;
        for (int kx = 0; kx < g->k_w; kx++, w += 4 * C) {
            const int ix = ix0 + kx;
            if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
                nn_dot4(in + (iy * g->in_w + ix) * C, w, C, acc);
            } else {
                for (int c = 0; c < C; c++)
                    for (int j = 0; j < 4; j++) acc[j] += g->in_zp * w[4 * c + j];
            }
        }
    }
}

void nn_conv2d(const nn_conv_t *p, const int8_t *in, int8_t *out) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c, OC = g->out_c;
    const int32_t taps = g->k_h * g->k_w * C, block = taps * 4;
#if defined(__ARM_ARCH_6M__)
    const nn_blocks_t b = {p->weights, p->rq.bias, p->rq.ch, p->offsets, taps, OC, p->rq.act_min, p->rq.act_max};
#endif
    for (int oy = 0; oy < g->out_h; oy++) {
        const int iy0 = oy * g->stride_h - g->pad_top;
        const int rows_in = iy0 >= 0 && iy0 + g->k_h <= g->in_h;
        for (int ox = 0; ox < g->out_w; ox++, out += OC) {
            const int ix0 = ox * g->stride_w - g->pad_left;
            const int interior = rows_in && ix0 >= 0 && ix0 + g->k_w <= g->in_w;
            const int8_t *base = interior ? in + (iy0 * g->in_w + ix0) * C : in;
#if defined(__ARM_ARCH_6M__)
            if (interior && p->rq.fast) {
                nn_blocks(&b, base, out);
                continue;
            }
#endif
            const int32_t *w = p->weights;
            for (int o = 0; o < OC; o += 4, w += block) {
                int32_t acc[4] = {p->rq.bias[o], p->rq.bias[o + 1], p->rq.bias[o + 2], p->rq.bias[o + 3]};
                if (interior) {
                    nn_dot4_tab(base, p->offsets, taps, w, acc);
                } else {
                    conv_border(p, in, iy0, ix0, w, acc);
                }
                nn_store4(&p->rq, o, acc, OC - o < 4 ? OC - o : 4, out);
            }
        }
    }
}

/* Depthwise window crossing the border: the valid taps are listed once per pixel; padded taps read as
 * the input zero point. */
static void dw_border(const nn_dwconv_t *p, const int8_t *in, int iy0, int ix0, int8_t *out) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c, K = g->k_h * g->k_w;
    int32_t off[NN_DW_MAX_TAPS];
    int8_t tap[NN_DW_MAX_TAPS], pad[NN_DW_MAX_TAPS];
    int nv = 0, np = 0;
    for (int ky = 0; ky < g->k_h; ky++) {
        for (int kx = 0; kx < g->k_w; kx++) {
            const int iy = iy0 + ky, ix = ix0 + kx;
            if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
                off[nv] = (iy * g->in_w + ix) * C;
                tap[nv++] = (int8_t)(ky * g->k_w + kx);
            } else {
                pad[np++] = (int8_t)(ky * g->k_w + kx);
            }
        }
    }
    const int8_t *w = p->weights;
    for (int c = 0; c < C; c++, w += K) {
        int32_t acc = p->rq.bias[c], wpad = 0;
        for (int t = 0; t < nv; t++) acc += in[off[t] + c] * w[tap[t]];
        for (int t = 0; t < np; t++) wpad += w[pad[t]];
        out[c] = nn_out(&p->rq, c, acc + g->in_zp * wpad);
    }
}

static void dw_interior(const nn_dwconv_t *p, const int8_t *base, int8_t *out) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c, KW = g->k_w, KH = g->k_h;
    const int32_t rowstep = g->in_w * C;
    const int8_t *w = p->weights;
    if (KH == 3 && KW == 3) {
        for (int c = 0; c < C; c++, w += 9) {
            const int8_t *r0 = base + c, *r1 = r0 + rowstep, *r2 = r1 + rowstep;
            int32_t acc = p->rq.bias[c];
            acc += r0[0] * w[0] + r0[C] * w[1] + r0[2 * C] * w[2];
            acc += r1[0] * w[3] + r1[C] * w[4] + r1[2 * C] * w[5];
            acc += r2[0] * w[6] + r2[C] * w[7] + r2[2 * C] * w[8];
            out[c] = nn_out(&p->rq, c, acc);
        }
        return;
    }
    for (int c = 0; c < C; c++, w += KH * KW) {
        int32_t acc = p->rq.bias[c];
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++) acc += base[ky * rowstep + kx * C + c] * w[ky * KW + kx];
        out[c] = nn_out(&p->rq, c, acc);
    }
}

void nn_dwconv(const nn_dwconv_t *p, const int8_t *in, int8_t *out) {
    const nn_geom_t *g = &p->g;
    for (int oy = 0; oy < g->out_h; oy++) {
        const int iy0 = oy * g->stride_h - g->pad_top;
        const int rows_in = iy0 >= 0 && iy0 + g->k_h <= g->in_h;
        for (int ox = 0; ox < g->out_w; ox++, out += g->out_c) {
            const int ix0 = ox * g->stride_w - g->pad_left;
            if (rows_in && ix0 >= 0 && ix0 + g->k_w <= g->in_w)
                dw_interior(p, in + (iy0 * g->in_w + ix0) * g->in_c, out);
            else
                dw_border(p, in, iy0, ix0, out);
        }
    }
}
