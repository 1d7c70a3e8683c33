/* AVERAGE_POOL_2D and MEAN over H,W with TFLite int8 semantics. */
#include "nn.h"
#include "nn_fixed.h"

void nn_avgpool(const nn_avgpool_t *p, const int8_t *in, int8_t *out) {
    const int C = p->c;
    for (int oy = 0; oy < p->out_h; oy++) {
        const int iy0 = oy * p->stride_h - p->pad_top;
        const int y0 = iy0 < 0 ? 0 : iy0;
        const int y1 = iy0 + p->k_h > p->in_h ? p->in_h : iy0 + p->k_h;
        for (int ox = 0; ox < p->out_w; ox++) {
            const int ix0 = ox * p->stride_w - p->pad_left;
            const int x0 = ix0 < 0 ? 0 : ix0;
            const int x1 = ix0 + p->k_w > p->in_w ? p->in_w : ix0 + p->k_w;
            const int32_t count = (y1 - y0) * (x1 - x0);
            for (int c = 0; c < C; c++) {
                int32_t acc = 0;
                for (int y = y0; y < y1; y++)
                    for (int x = x0; x < x1; x++) acc += in[(y * p->in_w + x) * C + c];
                /* TFLite: round half away from zero */
                acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                *out++ = nn_clamp8(acc, p->act_min, p->act_max);
            }
        }
    }
}

typedef uint32_t nn_mean_word_t __attribute__((may_alias));

static int8_t mean_out(const nn_mean_t *p, int32_t sum) {
    return nn_clamp8(nn_requant(sum - p->in_zp_sum, p->mult, p->shift) + p->out_zp, -128, 127);
}

void nn_mean(const nn_mean_t *p, const int8_t *in, int8_t *out) {
    int32_t c = 0;
    if (p->c % 4 == 0 && ((uintptr_t)in & 3u) == 0) {
        /* 4 channels a word: x + 128 as unsigned bytes, channels 0 and 2 (1 and 3) summed in the 16-bit halves of
         * one register, at most 256 pixels at a time (256 * 255 < 2^16) */
        const int32_t stride = p->c / 4;
        for (; c < p->c; c += 4) {
            int32_t s[4] = {0, 0, 0, 0};
            const nn_mean_word_t *x = (const nn_mean_word_t *)(const void *)(in + c);
            for (int32_t i = 0; i < p->hw;) {
                const int32_t end = p->hw - i < 256 ? p->hw : i + 256;
                uint32_t a = 0, b = 0;
                for (; i < end; i++, x += stride) {
                    const uint32_t v = *x ^ 0x80808080u;
                    a += v & 0x00ff00ffu;
                    b += (v >> 8) & 0x00ff00ffu;
                }
                s[0] += (int32_t)(a & 0xffffu);
                s[1] += (int32_t)(b & 0xffffu);
                s[2] += (int32_t)(a >> 16);
                s[3] += (int32_t)(b >> 16);
            }
            for (int j = 0; j < 4; j++) out[c + j] = mean_out(p, s[j] - 128 * p->hw);
        }
    }
    for (; c < p->c; c++) {
        int32_t sum = 0;
        const int8_t *x = in + c;
        for (int32_t i = 0; i < p->hw; i++, x += p->c) sum += *x;
        out[c] = mean_out(p, sum);
    }
}
