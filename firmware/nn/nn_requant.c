/* Requantization of the channels whose nn_rqc_t record is long (right shifts beyond the short record's). */
#include "nn_fixed.h"

int8_t nn_out_long(const nn_requant_t *rq, const nn_rqc_t *c, int32_t acc) {
    if ((int32_t)c->w4 < 0)
        return nn_clamp8(nn_requant(acc, (int32_t)c->w1, (int32_t)c->w2) + rq->out_zp, rq->act_min, rq->act_max);
    const uint32_t d = (uint32_t)acc - (uint32_t)c->lo;
    if (d >= c->w0) return (int8_t)rq->act_max;
    const uint32_t dl = d & 0xffffu, dh = d >> 16, ml = c->w1 & 0xffffu, mh = c->w1 >> 16;
    uint64_t v = ((uint64_t)(dh * mh) << 32 | (dl * ml)) + ((uint64_t)(dl * mh + dh * ml) << 16)
                 + ((uint64_t)c->w3 << 32 | c->w2);
    if (acc < 0) v -= 0x80000000u;
    return (int8_t)(uint8_t)((uint32_t)(v >> 32) >> c->w4);
}
