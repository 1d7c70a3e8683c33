/* Requantization beyond a record's fast range: the three-multiply short formula, long records, act_max and the
 * generic path (nn_rqc_t). */
#include "nn_fixed.h"

int8_t nn_out_slow(const nn_requant_t *rq, const nn_rqc_t *c, int32_t acc) {
    if (c->hi == c->lo && (int32_t)c->w3 < 0) {
        const int32_t full = (int32_t)((uint32_t)acc + c->w2);   /* the bias back in, wrapping like TFLite's int32 */
        return nn_clamp8(nn_requant(full, (int32_t)c->w0, (int32_t)c->w1) + rq->out_zp, rq->act_min, rq->act_max);
    }
    const uint32_t d = (uint32_t)acc - (uint32_t)c->lo;
    if (d >= c->range) return (int8_t)rq->act_max;
    const uint32_t dl = d & 0xffffu, dh = d >> 16;
    if (c->hi != c->lo) {
        const uint32_t ml = c->w3 & 0xffffu, klo = c->w3 >> 16;
        return (int8_t)(uint8_t)((d * c->w0 + dh * ml + ((dl * ml + klo) >> 16) + c->w4) >> 24);
    }
    const uint32_t ml = c->w0 & 0xffffu, mh = c->w0 >> 16;
    uint64_t v = ((uint64_t)(dh * mh) << 32 | (dl * ml)) + ((uint64_t)(dl * mh + dh * ml) << 16)
                 + ((uint64_t)c->w2 << 32 | c->w1);
    if (d < c->w4) v -= 0x80000000u;
    return (int8_t)(uint8_t)((uint32_t)(v >> 32) >> c->w3);
}
