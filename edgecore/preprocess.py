"""The preprocessing contract every runtime shares (docs/CONTRACT.md): what a resized RGB uint8 image becomes
before the student sees it. Integer arithmetic only, so the host, the exported runners and a C port agree byte
for byte.

Each image is standardised by what a camera's auto-exposure, auto-white-balance and picture style set, in two
steps:
1. every colour channel is divided by its own mean (grey world: exposure and white balance cancel), and the
   result is scaled by the square root of its relative spread (std / mean, pooled over the channels) against a
   typical scene's: a contrast change reaches the model at half its size, and half of the scene's own contrast,
   which tells charred from pale, stays (dividing by the whole spread: 71.8 % clean, the square root: 76.7 %,
   one seed each; docs/distillation.md);
2. each pixel's chroma (its channels minus their mean) is scaled by the square root of a typical scene's chroma
   over the image's own (RMS over pixels and channels): a saturation change reaches the model at half its size
   (measured with float students, 3 seeds: saturation x0.5 cost 6.0-12.7 points without this step, 3.5-7.5 with
   it; docs/distillation.md), and half of the scene's own colourfulness, which tells charred grey from golden,
   stays.
What is left for the model to judge is the pizza relative to its own scene: which parts are darker, browner or
paler than the rest.
"""
from __future__ import annotations

import inspect

import numpy as np

NAME = "grayworld-halfcontrast-halfchroma-v2"
TARGET_MEAN = 128
TARGET_SPREAD = 40  # levels of std for a scene of typical spread: it spans about 0..255
MIN_MEAN_Q8 = 2 * 256  # a channel darker than 2 levels on average is treated as 2: black frames stay finite
MIN_CV_Q12 = 82  # pooled std / mean of at least 0.02: a flat image is not blown up into noise
REF_CV_Q12 = 1638  # 0.4, the median pooled std / mean of the procedural training images (0.26-0.72 for 90 %)
REF_CHROMA3 = 50  # 3 x 16.7 levels: the median chroma RMS of step 1's output on procedural images (8-22 for 90 %)
MIN_CHROMA3 = 6  # a grey image (chroma RMS under 2 levels) is not blown up into colour noise
FLOAT_FORMULA = "standardize(pixel) / 255.0"
INT8_FORMULA = "standardize(pixel) - 128"
DESCRIPTION = (f"per image over its n = H*W pixels, for each colour channel c of C with pixels p (uint8): "
               f"m_c = max(round(256 * mean(p)), {MIN_MEAN_Q8}); v_c = floor(65536 * population variance(p)); "
               f"r_c = floor(v_c * 2**24 / m_c**2); q = isqrt(max(isqrt(floor(sum_c r_c / C)), {MIN_CV_Q12}) * {REF_CV_Q12}); "
               f"g_c = round({TARGET_SPREAD} * 2**28 / (m_c * q)); "
               f"y = clamp(floor(((256 * p - m_c) * g_c + {TARGET_MEAN} * 65536 + 32768) / 65536), 0, 255); "
               f"then per pixel t = sum_c y_c and e_c = C * y_c - t; s = max(isqrt(floor(sum of e_c**2 over pixels "
               f"and channels / (n * C))), {MIN_CHROMA3}); k = isqrt(floor({REF_CHROMA3} * 2**24 / s)); "
               f"out_c = clamp(floor((4096 * t + k * e_c + 2048 * C) / (4096 * C)), 0, 255) (floor division)")


def standardize(images_u8):
    """uint8 NHWC images -> uint8 NHWC, each image standardised (see DESCRIPTION); numpy only, so the exported
    runners embed this very function."""
    x = np.asarray(images_u8)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 NHWC images, got {x.dtype} with shape {x.shape}")
    n, h, w, c = x.shape
    count = h * w
    out = np.empty_like(x)

    def isqrt(v):  # float64 is within one of it for these magnitudes; fix both ways
        r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
        r = np.where(r * r > v, r - 1, r)
        return np.where((r + 1) * (r + 1) <= v, r + 1, r)

    for i in range(0, n, 64):  # bounds the temporaries
        p = x[i:i + 64].reshape(-1, count, c).astype(np.int64)
        s1 = p.sum(1)
        s2 = np.einsum("npc,npc->nc", p, p)
        mean_q8 = np.maximum((s1 * 256 + count // 2) // count, MIN_MEAN_Q8)
        var_q16 = (count * s2 - s1 * s1) * 65536 // (count * count)
        rel = var_q16 * (1 << 24) // (mean_q8 * mean_q8)
        q = isqrt(np.maximum(isqrt(rel.sum(1) // c), MIN_CV_Q12) * REF_CV_Q12)
        den = mean_q8 * q[:, None]
        gain = (TARGET_SPREAD * (1 << 28) + den // 2) // den
        v = (p * 256 - mean_q8[:, None]) * gain[:, None] + (TARGET_MEAN * 65536 + 32768)
        y = np.clip(v >> 16, 0, 255)
        t = y.sum(2, keepdims=True)
        e = c * y - t
        chroma = np.maximum(isqrt(np.einsum("npc,npc->n", e, e) // (count * c)), MIN_CHROMA3)
        k = isqrt(REF_CHROMA3 * (1 << 24) // chroma)
        y = (4096 * t + k[:, None, None] * e + 2048 * c) // (4096 * c)
        out[i:i + 64] = np.clip(y, 0, 255).reshape(-1, h, w, c)
    return out


def source() -> str:
    """Stand-alone Python source of `standardize` and its constants, for runners that ship without this package."""
    consts = "".join(f"{k} = {globals()[k]!r}\n" for k in ("TARGET_MEAN", "TARGET_SPREAD", "MIN_MEAN_Q8", "MIN_CV_Q12",
                                                               "REF_CV_Q12", "REF_CHROMA3", "MIN_CHROMA3"))
    return consts + "\n\n" + inspect.getsource(standardize)


def to_float_nhwc(images_u8) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC, standardize(pixel) / 255 (the float models' input, channels last)."""
    return standardize(images_u8).astype(np.float32) / np.float32(255.0)


def to_float_nchw(images_u8) -> np.ndarray:
    """uint8 NHWC -> the float student's input: float32 NCHW, standardize(pixel) / 255."""
    return np.ascontiguousarray(to_float_nhwc(images_u8).transpose(0, 3, 1, 2))


def to_int8(images_u8) -> np.ndarray:
    """uint8 NHWC -> the INT8 model's input: standardize(pixel) - 128 (input scale 1/255, zero point -128)."""
    return (standardize(images_u8).astype(np.int16) - 128).astype(np.int8)
