/* 1x1 stride-1 convolution and fully connected layers: per pixel, blocks of 4 output channels. */
#include "nn.h"
#include "nn_dot.h"
#include "nn_fixed.h"

void nn_pointwise(const nn_pointwise_t *p, const int8_t *in, int8_t *out) {
    const int32_t K = p->in_c, OC = p->out_c;
#if defined(__ARM_ARCH_6M__)
    if (p->rq.fast) {
        const nn_blocks_t b = {p->weights, 0, K, OC, p->rq.act_min, p->rq.act_max, 0, p->pixels, K, 0};
        nn_blocks(&b, in, out);
        return;
    }
#endif
    for (int32_t i = 0; i < p->pixels; i++, in += K, out += OC) {
        const int32_t *w = p->weights;
        for (int32_t o = 0; o < OC; o += 4, w += NN_PACKED_WORDS(K) + 32) {
            int32_t acc[4] = {0, 0, 0, 0};
            nn_dot4(in, 0, K, w, acc);
            nn_store4(&p->rq, nn_records(w, NN_PACKED_WORDS(K)), acc, OC - o < 4 ? OC - o : 4, out + o);
        }
    }
}
