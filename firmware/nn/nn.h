/* int8 kernels with TFLite's integer arithmetic, bit-exact with tflite-micro's reference kernels.
 * Written here because tflite-micro's C++ sources cannot be installed for this target; plain C11,
 * no allocation, tuned for Cortex-M0+ (no SIMD, single-cycle 32x32 multiply). */
#ifndef NN_H
#define NN_H

#include <stdint.h>

#define NN_DW_MAX_TAPS 49 /* depthwise kernels up to 7x7 */

/* Model constants the kernels stream, placed in SRAM on the RP2040 (rp2040.ld copies .sram_rodata with .data):
 * the pointwise layers re-read their weights for every pixel, and from flash those reads miss the 16 KB XIP
 * cache (export/rp2040/xip.py). */
#if defined(__ARM_ARCH_6M__)
#define NN_SRAM __attribute__((section(".sram_rodata")))
#else
#define NN_SRAM
#endif

/* One output channel's requantization, precomputed so the M0+ needs no 64-bit multiply (quant.channel_requant
 * explains the fields). It reads the channel's sum without its bias (the folded bias bias - zp_in * sum(w) is
 * inside lo and the generic path's w2): acc < lo saturates to act_min. A short record (hi != lo), w0..w3 = mh,
 * k, cmax8, ml + 2^16 klo, takes lo <= acc < hi with two multiplies: a = acc*mh + k, out = (int8)(s >> 24),
 * s = a + ((d*ml + klo) >> 16) in uint32 arithmetic, d = acc - lo; the second only when (a << 8) + cmax8 carries
 * (rarely: otherwise the sum cannot carry into the byte and out = a >> 24). hi <= acc < lo + range with three,
 * s = d*mh + (d >> 16)*ml + (((d & 0xffff)*ml + klo) >> 16) + w4. A long record (hi == lo, range > 0, for right
 * shifts the short one cannot hold), w0..w3 = m, k_lo, k_hi, sh: out = (int8)(((d*m + k) >> 32) >> sh),
 * k = k_hi:k_lo less 2^31 when d < w4 (TFLite rounds negative ties the other way). d >= range saturates to
 * act_max. w3 = -1 with hi == lo (lo = INT32_MIN) marks a channel that needs the generic
 * MultiplyByQuantizedMultiplier (mult, shift, bias in w0..w2). */
typedef struct {
    int32_t lo;
    int32_t hi;
    uint32_t w0, w1, w2, w3;
    uint32_t range;
    uint32_t w4;
} nn_rqc_t;

/* Requantization shared by a layer's channels; the per-channel records follow each block's weights. */
typedef struct {
    int32_t out_zp, act_min, act_max;
    int32_t fast;         /* nn_blocks runs the layer: no channel needs the generic path, packed pairs fit */
} nn_requant_t;

/* CONV_2D and DEPTHWISE_CONV_2D geometry. Padding taps read as the input zero point, so the folded bias
 * stays exact at the borders. */
typedef struct {
    int16_t in_h, in_w, in_c, out_h, out_w, out_c;
    int16_t k_h, k_w, stride_h, stride_w, pad_top, pad_left;
    int32_t in_zp;
} nn_geom_t;

/* Weights of CONV_2D, DEPTHWISE_CONV_2D, 1x1 convolutions and FULLY_CONNECTED: int32 words grouped by 4 output
 * channels (zero-padded), the stream nn_blocks reads: each block the 4 channels' weights, then their 4 nn_rqc_t
 * records. Depthwise: the 4 weights of each tap (4 * taps words). The others pack two taps of two channels a word:
 * taps 2k and 2k+1 in 4 words, w_0 + 2^16 w_1 at tap 2k, at tap 2k+1, then w_2 + 2^16 w_3 at both; an odd last
 * tap in 4 plain words (4 * ceil(taps / 2) words). One multiply by an input then gives two channels' products. */

/* CONV_2D. */
typedef struct {
    nn_geom_t g;
    const int32_t *weights;
    const int32_t *offsets;  /* [k_h*k_w*in_c] byte offset of each tap from the window's first byte */
    nn_requant_t rq;
} nn_conv_t;

/* 1x1 stride-1 CONV_2D and FULLY_CONNECTED: out[p][o] = requant(bias[o] + sum_k in[p][k] * w[o][k]), in_c taps. */
typedef struct {
    int32_t pixels;
    int16_t in_c, out_c;
    const int32_t *weights;
    nn_requant_t rq;
} nn_pointwise_t;

/* DEPTHWISE_CONV_2D, depth multiplier 1, kernels up to NN_DW_MAX_TAPS taps (k_h*k_w per channel). */
typedef struct {
    nn_geom_t g;
    const int32_t *weights;
    const int32_t *offsets;  /* [k_h*k_w] byte offset of each tap from the window's first byte */
    nn_requant_t rq;
} nn_dwconv_t;

/* AVERAGE_POOL_2D (input and output share their quantization, as TFLite requires). */
typedef struct {
    int16_t in_h, in_w, c, out_h, out_w;
    int16_t k_h, k_w, stride_h, stride_w, pad_top, pad_left;
    int32_t act_min, act_max;
} nn_avgpool_t;

/* MEAN over H and W (TFLite's reference QuantizedMeanOrSum): the 1/(H*W) is folded into mult/shift. */
typedef struct {
    int32_t hw, c;
    int32_t in_zp_sum;  /* zp_in * H * W */
    int32_t mult, shift, out_zp;
} nn_mean_t;

/* SOFTMAX int8 -> int8 (scale 1/256, zp -128), gemmlowp fixed point as in TFLM. */
typedef struct {
    int32_t rows, depth;
    int32_t input_multiplier, input_left_shift, diff_min;
} nn_softmax_t;

/* ADD of two equally shaped int8 tensors. */
typedef struct {
    int32_t n;
    int32_t in1_offset, in2_offset, out_zp, left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift, out_mult, out_shift;
    int32_t act_min, act_max;
} nn_add_t;

void nn_conv2d(const nn_conv_t *p, const int8_t *in, int8_t *out);
void nn_pointwise(const nn_pointwise_t *p, const int8_t *in, int8_t *out);
void nn_dwconv(const nn_dwconv_t *p, const int8_t *in, int8_t *out);
void nn_avgpool(const nn_avgpool_t *p, const int8_t *in, int8_t *out);
void nn_mean(const nn_mean_t *p, const int8_t *in, int8_t *out);
void nn_softmax(const nn_softmax_t *p, const int8_t *in, int8_t *out);
void nn_add(const nn_add_t *p, const int8_t *in1, const int8_t *in2, int8_t *out);

#endif
