/* CONV_2D (any kernel, stride, padding) and DEPTHWISE_CONV_2D with TFLite int8 per-channel semantics.
 * Interior windows take the fast path; only border windows pay for bounds checks. */
#include "nn.h"
#include "nn_dot.h"
#include "nn_fixed.h"

/* A window of 3 rows of 9 bytes (3x3 over 3 channels, an RGB stem; also 3x1 over 9): its weights come in this tap
 * order (lower.WIN9_ORDER), so that nn_blocks' unrolled loop reads every pair of taps with one LDRH: rows 0 and 1's
 * bytes 0-7 and 8 paired, row 1's bytes 0-7, row 2's bytes 0-7, then its byte 8. */
static const uint8_t win9_order[27] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 17, 9, 10, 11, 12, 13, 14, 15, 16,
                                       18, 19, 20, 21, 22, 23, 24, 25, 26};

/* Window crossing the border: valid taps accumulate, padded taps add zero_point * weights. */
static void conv_border(const nn_conv_t *p, const int8_t *in, int iy0, int ix0, const int32_t *block, int32_t acc[4]) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c;
    const int32_t n = g->k_h * g->k_w * C;
    const int win9 = g->k_h == 3 && g->k_w * C == 9;
    for (int32_t t = 0; t < n; t++) {
        const int at = win9 ? win9_order[t] : (int)t;    /* the tap's index in window order (ky, kx, c) */
        const int c = at % C, kx = at / C % g->k_w, ky = at / C / g->k_w;
        const int iy = iy0 + ky, ix = ix0 + kx;
        const int inside = iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w;
        const int32_t u = inside ? in[(iy * g->in_w + ix) * C + c] : g->in_zp;
        for (int j = 0; j < 4; j++) acc[j] += u * nn_wtap(block, n, t, j);
    }
}

#if defined(__ARM_ARCH_6M__)
/* How many output columns from ox on (ox's window being interior) have windows inside the input's width:
 * nn_blocks computes such a run in one call. */
static int interior_run(const nn_geom_t *g, int ox) {
    const int last = (g->in_w - g->k_w + g->pad_left) / g->stride_w;
    return (last + 1 < g->out_w ? last + 1 : g->out_w) - ox;
}

#define DW_MAX_C 256
#define CONV_MAX_TAPS 128
/* Border windows point their padded taps at a row of zero points, so nn_blocks needs no bounds checks. */
static int8_t zp_row[DW_MAX_C] __attribute__((aligned(4)));

/* A border window of a 3x3 convolution over 3 channels (an RGB stem), zero points where it is padded, in rows of
 * WIN9_ROW bytes that nn_blocks' unrolled loop reads like an interior window's. */
#define WIN9_ROW 10
static int8_t win9[3 * WIN9_ROW] __attribute__((aligned(4)));

typedef uint32_t nn_word_t __attribute__((may_alias));

/* n bytes from src to dst, by words where both are aligned and n % 4 == 0. */
static void copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
    if ((((uintptr_t)dst | (uintptr_t)src | (uint32_t)n) & 3u) == 0) {
        nn_word_t *d = (nn_word_t *)(void *)dst, *end = (nn_word_t *)(void *)(dst + n);
        const nn_word_t *s = (const nn_word_t *)(const void *)src;
        if (n & 4) *d++ = *s++;
        while (d != end) {
            const uint32_t a = s[0], b = s[1];
            d[0] = a;
            d[1] = b;
            d += 2;
            s += 2;
        }
    } else {
        for (int32_t i = 0; i < n; i++) dst[i] = src[i];
    }
}

/* n bytes of v at dst, by words where dst is aligned and n % 4 == 0. */
static void fill_bytes(int8_t *dst, int8_t v, int32_t n) {
    if ((((uintptr_t)dst | (uint32_t)n) & 3u) == 0) {
        nn_word_t *d = (nn_word_t *)(void *)dst, *end = (nn_word_t *)(void *)(dst + n);
        const uint32_t w = (uint8_t)v * 0x01010101u;
        while (d != end) *d++ = w;
    } else {
        for (int32_t i = 0; i < n; i++) dst[i] = v;
    }
}

/* Columns [ix0, ix0 + cols) of input row iy into dst, zero points outside the input. */
static void padded_row(const nn_geom_t *g, const int8_t *in, int iy, int ix0, int cols, int8_t *dst) {
    const int C = g->in_c;
    const int8_t zp = (int8_t)g->in_zp;
    if (iy < 0 || iy >= g->in_h) {
        fill_bytes(dst, zp, cols * C);
        return;
    }
    const int a = ix0 < 0 ? -ix0 : 0;                                 /* first column inside */
    const int e = g->in_w - ix0 < cols ? g->in_w - ix0 : cols;        /* past the last one */
    fill_bytes(dst, zp, a * C);
    copy_bytes(dst + a * C, in + (iy * g->in_w + ix0 + a) * C, (e - a) * C);
    fill_bytes(dst + e * C, zp, (cols - e) * C);
}

static void border_window9(const nn_geom_t *g, const int8_t *in, int iy0, int ix0) {
    const int8_t zp = (int8_t)g->in_zp;
    const unsigned in_h = (unsigned)g->in_h, in_w = (unsigned)g->in_w;
    int8_t *w = win9;
    for (int ky = 0; ky < 3; ky++, w += WIN9_ROW - 9) {
        const int8_t *r = in + ((iy0 + ky) * (int)in_w + ix0) * 3;
        const int row_in = (unsigned)(iy0 + ky) < in_h;
        for (int kx = 0; kx < 3; kx++, w += 3, r += 3) {
            if (row_in && (unsigned)(ix0 + kx) < in_w) {
                w[0] = r[0];
                w[1] = r[1];
                w[2] = r[2];
            } else {
                w[0] = zp;
                w[1] = zp;
                w[2] = zp;
            }
        }
    }
}

/* The k_h input rows of a whole output row that crosses the top or bottom border, copied with zero points around
 * them, so that one nn_blocks call takes the row's windows like interior ones (3x3 RGB stems and 3x3 depthwise). */
#define STRIP_BYTES 1024
static int8_t strip[3 * STRIP_BYTES] __attribute__((aligned(4)));

/* The strip's row length for an output row of g (even, a multiple of 4 for depthwise), 0 if it does not fit. */
static int32_t strip_row(const nn_geom_t *g) {
    const int32_t cols = (g->out_w - 1) * g->stride_w + g->k_w;
    const int32_t bytes = (cols * g->in_c + 3) & ~3;
    return g->k_h == 3 && bytes <= STRIP_BYTES ? bytes : 0;
}

static void fill_strip(const nn_geom_t *g, const int8_t *in, int iy0, int32_t row) {
    const int32_t cols = (g->out_w - 1) * g->stride_w + g->k_w;
    for (int ky = 0; ky < 3; ky++) padded_row(g, in, iy0 + ky, -g->pad_left, cols, strip + ky * row);
}

/* The taps of a border window as offsets from its origin `base`: padded taps land in zp_row. */
static void border_offsets(const nn_geom_t *g, const int32_t *offsets, int per_tap, int iy0, int ix0,
                           uintptr_t base, int32_t *off) {
    const int32_t pad = (int32_t)((uintptr_t)zp_row - base);
    const unsigned in_h = (unsigned)g->in_h, in_w = (unsigned)g->in_w;
    const int k_h = g->k_h, k_w = g->k_w;
    for (int ky = 0, t = 0; ky < k_h; ky++) {
        const int row_in = (unsigned)(iy0 + ky) < in_h;
        for (int kx = 0; kx < k_w; kx++) {
            const int inside = row_in && (unsigned)(ix0 + kx) < in_w;
            for (int c = 0; c < per_tap; c++, t++) off[t] = inside ? offsets[t] : pad;
        }
    }
}
#endif

void nn_conv2d(const nn_conv_t *p, const int8_t *in, int8_t *out) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c, OC = g->out_c;
    const int32_t taps = g->k_h * g->k_w * C, block = NN_PACKED_WORDS(taps) + 32;
#if defined(__ARM_ARCH_6M__)
    nn_blocks_t b = {p->weights, p->offsets, taps, OC, p->rq.act_min, p->rq.act_max, 0, 1, g->stride_w * C, 0};
    /* nn_blocks reads a 3x3x3 window's rows two bytes at a time: every window must start at an even address */
    const int win9_fits = g->k_h == 3 && g->k_w * C == 9;
    const int32_t row9 = win9_fits && g->in_w * C % 2 == 0 && b.x_step % 2 == 0 ? g->in_w * C : 0;
    int32_t off[CONV_MAX_TAPS];
    const int border_fast = p->rq.fast && taps <= CONV_MAX_TAPS;
    zp_row[0] = (int8_t)g->in_zp;
    const int32_t srow = border_fast && row9 ? strip_row(g) : 0;
#endif
    for (int oy = 0; oy < g->out_h; oy++) {
        const int iy0 = oy * g->stride_h - g->pad_top;
        const int rows_in = iy0 >= 0 && iy0 + g->k_h <= g->in_h;
#if defined(__ARM_ARCH_6M__)
        if (!rows_in && srow) {  /* a top or bottom border row: all its windows in one call over a padded strip */
            fill_strip(g, in, iy0, srow);
            b.pixels = g->out_w;
            b.row = srow;
            nn_blocks(&b, strip, out);
            out += g->out_w * OC;
            continue;
        }
#endif
        for (int ox = 0; ox < g->out_w; ox++, out += OC) {
            const int ix0 = ox * g->stride_w - g->pad_left;
            const int interior = rows_in && ix0 >= 0 && ix0 + g->k_w <= g->in_w;
            const int8_t *base = interior ? in + (iy0 * g->in_w + ix0) * C : in;
#if defined(__ARM_ARCH_6M__)
            if (interior && p->rq.fast) {
                const int run = interior_run(g, ox);
                b.offsets = p->offsets;
                b.pixels = run;
                b.row = (uintptr_t)base % 2u == 0 ? row9 : 0;
                nn_blocks(&b, base, out);
                ox += run - 1;
                out += (run - 1) * OC;
                continue;
            }
            if (border_fast && win9_fits) {
                border_window9(g, in, iy0, ix0);
                b.pixels = 1;
                b.row = WIN9_ROW;
                nn_blocks(&b, win9, out);
                continue;
            }
            if (border_fast) {
                const uintptr_t origin = (uintptr_t)in + (uintptr_t)(intptr_t)((iy0 * g->in_w + ix0) * C);
                border_offsets(g, p->offsets, C, iy0, ix0, origin, off);
                b.offsets = off;
                b.pixels = 1;
                b.row = 0;
                nn_blocks(&b, (const int8_t *)origin, out);
                continue;
            }
#endif
            const int32_t *w = p->weights;
            for (int o = 0; o < OC; o += 4, w += block) {
                int32_t acc[4] = {0, 0, 0, 0};
                if (interior) {
                    nn_dot4(base, p->offsets, taps, w, acc);
                } else {
                    conv_border(p, in, iy0, ix0, w, acc);
                }
                nn_store4(&p->rq, nn_records(w, NN_PACKED_WORDS(taps)), acc, OC - o < 4 ? OC - o : 4, out + o);
            }
        }
    }
}

/* One depthwise output pixel in C: padded taps read as the input zero point. */
static void dw_pixel(const nn_dwconv_t *p, const int8_t *in, int iy0, int ix0, int8_t *out) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c, T = g->k_h * g->k_w;
    for (int c = 0; c < C; c++) {
        const int32_t *block = p->weights + (c / 4) * (NN_DW_WORDS(T) + 32), *w = block + c % 4;
        int32_t acc = 0;
        for (int ky = 0, t = 0; ky < g->k_h; ky++) {
            const int iy = iy0 + ky;
            for (int kx = 0; kx < g->k_w; kx++, t++) {
                const int ix = ix0 + kx;
                const int inside = iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w;
                acc += (inside ? in[(iy * g->in_w + ix) * C + c] : g->in_zp) * w[4 * t];
            }
        }
        out[c] = nn_out(&p->rq, nn_records(block, NN_DW_WORDS(T)) + c % 4, acc);
    }
}

void nn_dwconv(const nn_dwconv_t *p, const int8_t *in, int8_t *out) {
    const nn_geom_t *g = &p->g;
    const int C = g->in_c;
#if defined(__ARM_ARCH_6M__)
    const int T = g->k_h * g->k_w;
    const int fast = p->rq.fast && C % 4 == 0 && C <= DW_MAX_C;
    nn_blocks_t b = {p->weights, p->offsets, T, C, p->rq.act_min, p->rq.act_max, 1, 1, g->stride_w * C, 0};
    int32_t off[NN_DW_MAX_TAPS];
    const int32_t dw3 = g->k_h == 3 && g->k_w == 3 ? (g->in_w - 2) * C : 0;
    const int32_t srow = fast && dw3 ? strip_row(g) : 0;
    for (int c = 0; fast && c < C; c++) zp_row[c] = (int8_t)g->in_zp;
#endif
    for (int oy = 0; oy < g->out_h; oy++) {
        const int iy0 = oy * g->stride_h - g->pad_top;
#if defined(__ARM_ARCH_6M__)
        if (srow && (iy0 < 0 || iy0 + g->k_h > g->in_h)) {  /* top or bottom border row: one call over a strip */
            fill_strip(g, in, iy0, srow);
            b.offsets = p->offsets;
            b.pixels = g->out_w;
            b.row = srow - 2 * C;
            nn_blocks(&b, strip, out);
            out += g->out_w * C;
            continue;
        }
#endif
        for (int ox = 0; ox < g->out_w; ox++, out += C) {
            const int ix0 = ox * g->stride_w - g->pad_left;
#if defined(__ARM_ARCH_6M__)
            if (fast) {
                /* the window origin as an address: it lies outside the tensor for border windows */
                const uintptr_t base = (uintptr_t)in + (uintptr_t)(intptr_t)((iy0 * g->in_w + ix0) * C);
                if (iy0 < 0 || iy0 + g->k_h > g->in_h || ix0 < 0 || ix0 + g->k_w > g->in_w) {
                    border_offsets(g, p->offsets, 1, iy0, ix0, base, off);
                    b.offsets = off;
                    b.pixels = 1;
                    b.row = 0;
                } else {
                    b.offsets = p->offsets;
                    b.pixels = interior_run(g, ox);
                    b.row = dw3;
                }
                nn_blocks(&b, (const int8_t *)base, out);
                ox += b.pixels - 1;
                out += (b.pixels - 1) * C;
                continue;
            }
#endif
            dw_pixel(p, in, iy0, ix0, out);
        }
    }
}
