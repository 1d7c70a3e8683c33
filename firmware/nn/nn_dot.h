/* The multiply-accumulate core shared by convolution and fully connected layers, over blocks of 4 output
 * channels (nn.h's weight stream). Internal to firmware/nn. */
#ifndef NN_DOT_H
#define NN_DOT_H

#include <stddef.h>
#include <stdint.h>

#include "nn.h"
#include "nn_fixed.h"

#if defined(__ARM_ARCH_6M__)
/* nn_blocks_m0.S: every output channel of one pixel, y[o] = nn_out(acc_o) with acc_o = sum_t x[t or offsets[t]]
 * times channel o % 4's weight at tap t of block o / 4, the record after that block's weights (nn.h's weight
 * stream, packed but for depthwise). Only for layers whose records and weights it takes (nn_requant_t.fast). The
 * field order is the assembler's. */
typedef struct {
    const int32_t *weights;
    const int32_t *offsets;  /* NULL: taps are the n bytes from x */
    int32_t n, oc, act_min, act_max;
    int32_t dw;              /* depthwise: tap t of channel o reads x[offsets[t] + o]; word-aligned, oc % 4 == 0 */
    int32_t pixels;          /* >= 1 output pixels: pixel i reads from x + i * x_step and writes y + i * oc */
    int32_t x_step;
    int32_t row;             /* nonzero: an interior 3x3 window read without the offset table. Convolution over 3
                              * channels (an RGB stem): rows of 9 bytes, `row` bytes apart. Depthwise: taps C bytes
                              * apart along a row, `row` bytes from a row's last tap to the next row's first. */
} nn_blocks_t;
void nn_blocks(const nn_blocks_t *b, const int8_t *x, int8_t *y);

/* The offsets nn_blocks_m0.S reads (its B_* and the RQ macros' record fields). */
_Static_assert(offsetof(nn_blocks_t, weights) == 0 && offsetof(nn_blocks_t, offsets) == 4 &&
               offsetof(nn_blocks_t, n) == 8 && offsetof(nn_blocks_t, oc) == 12 &&
               offsetof(nn_blocks_t, act_min) == 16 && offsetof(nn_blocks_t, act_max) == 20 &&
               offsetof(nn_blocks_t, dw) == 24 && offsetof(nn_blocks_t, pixels) == 28 &&
               offsetof(nn_blocks_t, x_step) == 32 && offsetof(nn_blocks_t, row) == 36,
               "nn_blocks_t layout is nn_blocks_m0.S's B_* offsets");
_Static_assert(offsetof(nn_rqc_t, lo) == 0 && offsetof(nn_rqc_t, hi) == 4 && offsetof(nn_rqc_t, w0) == 8 &&
               offsetof(nn_rqc_t, range) == 24 && offsetof(nn_rqc_t, w4) == 28 && sizeof(nn_rqc_t) == 32 &&
               NN_PACKED_WORDS(3) == 8 && NN_DW_WORDS(3) == 12,
               "nn_rqc_t layout and the weight stream are what the RQ macros and the block loop read");

#endif

/* acc[j] += sum_{t<n} base[off ? off[t] : t] * w(t, j) over a packed block (nn.h): the C kernels' dot product
 * (the host build, and on the M0+ the layers nn_blocks does not run). */
static inline void nn_dot4(const int8_t *base, const int32_t *off, int32_t n, const int32_t *block, int32_t acc[4]) {
    for (int32_t t = 0; t < n; t++) {
        const int32_t u = base[off ? off[t] : t];
        for (int j = 0; j < 4; j++) acc[j] += u * nn_wtap(block, n, t, j);
    }
}

#endif
