/* The multiply-accumulate core shared by convolution and fully connected layers. Internal to firmware/nn.
 * acc[j] += sum_{k<n} x[k] * w[4k+j], j < 4: one int8 input feeds four output channels whose weights
 * were widened to int32 at compile time, so one LDM fetches the four weights of a step. */
#ifndef NN_DOT_H
#define NN_DOT_H

#include <stddef.h>
#include <stdint.h>

#include "nn.h"
#include "nn_fixed.h"

#if defined(__ARM_ARCH_6M__)
/* nn_blocks_m0.S: every output channel of one pixel, y[o] = nn_out(acc_o) with
 * acc_o = sum_t x[t or offsets[t]] * w[o/4][t][o%4], its record at nn_records(block o/4) + o%4 (nn.h's weight
 * stream). Only for layers whose channels all take nn_out's fast path (nn_requant_t.fast). The field order is
 * the assembler's. */
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
_Static_assert(offsetof(nn_rqc_t, lo) == 0 && offsetof(nn_rqc_t, fast) == 4 && offsetof(nn_rqc_t, w0) == 8 &&
               offsetof(nn_rqc_t, range) == 24 && offsetof(nn_rqc_t, w4) == 28 && sizeof(nn_rqc_t) == 32 &&
               NN_BLOCK_WORDS(1) == 36,
               "nn_rqc_t layout and the weight stream are what the RQ macros and the block loop read");

/* Cortex-M0+: 8 low registers hold x_end, k, w, x and four weights; accumulators live in high
 * registers. Two steps per branch: 17 cycles per 4 MACs. */
static inline void nn_dot4(const int8_t *x, const int32_t *w, int32_t n, int32_t acc[4]) {
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t a2 = acc[2];
    int32_t a3 = acc[3];
    const int8_t *xe = x + n;
    int32_t k = -n;
    int32_t u;
    __asm__ volatile(
        ".syntax unified\n\t"
        "lsls r4, %[k], #31\n\t"      /* odd n: enter at the second half */
        "bne 3f\n"
        "1:\n\t"
        "ldrsb %[u], [%[xe], %[k]]\n\t"
        "ldm %[w]!, {r4, r5, r6, r7}\n\t"
        "muls r4, %[u], r4\n\t"
        "muls r5, %[u], r5\n\t"
        "muls r6, %[u], r6\n\t"
        "muls r7, %[u], r7\n\t"
        "add %[a0], r4\n\t"
        "add %[a1], r5\n\t"
        "add %[a2], r6\n\t"
        "add %[a3], r7\n\t"
        "adds %[k], #1\n"
        "3:\n\t"
        "ldrsb %[u], [%[xe], %[k]]\n\t"
        "ldm %[w]!, {r4, r5, r6, r7}\n\t"
        "muls r4, %[u], r4\n\t"
        "muls r5, %[u], r5\n\t"
        "muls r6, %[u], r6\n\t"
        "muls r7, %[u], r7\n\t"
        "add %[a0], r4\n\t"
        "add %[a1], r5\n\t"
        "add %[a2], r6\n\t"
        "add %[a3], r7\n\t"
        "adds %[k], #1\n\t"
        "bne 1b\n\t"
        ".syntax divided\n"
        : [k] "+l"(k), [w] "+l"(w), [u] "=&l"(u), [a0] "+h"(a0), [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3)
        : [xe] "l"(xe)
        : "r4", "r5", "r6", "r7", "cc", "memory");
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}
/* acc[j] += sum_{t<n} base[off[t]] * w[4t+j]: a whole convolution window in one loop, the window's
 * byte offsets precomputed at compile time. 20 cycles per 4 MACs, no per-row set-up. */
static inline void nn_dot4_tab(const int8_t *base, const int32_t *off, int32_t n, const int32_t *w, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int32_t *end = off + n;
    int32_t u;
    __asm__ volatile(
        ".syntax unified\n"
        "1:\n\t"
        "ldmia %[off]!, {%[u]}\n\t"
        "ldrsb %[u], [%[base], %[u]]\n\t"
        "ldm %[w]!, {r4, r5, r6, r7}\n\t"
        "muls r4, %[u], r4\n\t"
        "muls r5, %[u], r5\n\t"
        "muls r6, %[u], r6\n\t"
        "muls r7, %[u], r7\n\t"
        "add %[a0], r4\n\t"
        "add %[a1], r5\n\t"
        "add %[a2], r6\n\t"
        "add %[a3], r7\n\t"
        "cmp %[off], %[end]\n\t"
        "bne 1b\n\t"
        ".syntax divided\n"
        : [off] "+l"(off), [w] "+l"(w), [u] "=&l"(u), [a0] "+h"(a0), [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3)
        : [base] "l"(base), [end] "h"(end)
        : "r4", "r5", "r6", "r7", "cc", "memory");
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}
#else
static inline void nn_dot4(const int8_t *x, const int32_t *w, int32_t n, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int32_t k = 0; k < n; k++, w += 4) {
        const int32_t u = x[k];
        a0 += u * w[0];
        a1 += u * w[1];
        a2 += u * w[2];
        a3 += u * w[3];
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}
static inline void nn_dot4_tab(const int8_t *base, const int32_t *off, int32_t n, const int32_t *w, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (int32_t t = 0; t < n; t++, w += 4) {
        const int32_t u = base[off[t]];
        a0 += u * w[0];
        a1 += u * w[1];
        a2 += u * w[2];
        a3 += u * w[3];
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
}
#endif

#endif
