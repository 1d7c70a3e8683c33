"""TFLite's host-side quantization helpers (QuantizeMultiplier & co.), reproduced in Python double precision
so the constants baked into model.c equal those TFLite-Micro computes at Prepare time."""
from __future__ import annotations

import math

import numpy as np


def _round_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def quantize_multiplier(m: float) -> tuple[int, int]:
    """tflite::QuantizeMultiplier: m = q * 2^shift with q a Q31 value in [0.5, 1)."""
    if m == 0.0:
        return 0, 0
    mant, shift = math.frexp(m)
    q = _round_away(mant * (1 << 31))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return (1 << 31) - 1, 30
    return q, shift


def activation_range(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (float32 division and roundf, as in TFLite)."""
    def q(f: float) -> int:
        return int(zero_point) + _round_away(float(np.float32(f) / np.float32(scale)))

    lo, hi = -128, 127
    if act == 1:                      # RELU
        return max(lo, q(0.0)), hi
    if act == 3:                      # RELU6
        return max(lo, q(0.0)), min(hi, q(6.0))
    if act == 2:                      # RELU_N1_TO_1
        return max(lo, q(-1.0)), min(hi, q(1.0))
    return lo, hi


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius with 5 integer bits: (multiplier, left_shift, diff_min)."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * (1 << 26), (1 << 31) - 1.0)
    mult, shift = quantize_multiplier(real)
    radius = math.floor(1.0 * 31 * (1 << 26) / (1 << shift))
    return mult, shift, -int(radius)


def mean_multiplier(real: float, n: int) -> tuple[int, int]:
    """QuantizedMeanOrSum folds 1/n into the multiplier: shift by floor(log2 n) (clamped), integer-divide."""
    mult, shift = quantize_multiplier(real)
    extra = min(n.bit_length() - 1, 32, 31 + shift)
    return int((mult << extra) // n), shift - extra


def _srdhm(a: int, b: int) -> int:
    if a == b == -2**31:
        return 2**31 - 1
    t = a * b + ((1 << 30) if a * b >= 0 else 1 - (1 << 30))
    return (abs(t) >> 31) * (1 if t >= 0 else -1)


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def requantize(acc: int, mult: int, shift: int, zp: int, lo: int, hi: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier + zero point + clamp, in Python integers (reference)."""
    x = ((acc << max(shift, 0)) + 2**31) % 2**32 - 2**31
    return min(max(_rdbpot(_srdhm(x, mult), max(-shift, 0)) + zp, lo), hi)


def clamp_thresholds(mult: int, shift: int, zp: int, lo: int, hi: int) -> tuple[int, int]:
    """(t_lo, t_hi): every acc < t_lo requantizes to `lo` and every acc > t_hi to `hi`, so the kernels skip
    the multiply for clamped outputs (half of a ReLU layer's). Found by bisection on the monotone reference;
    a left shift can wrap (not monotone), so it disables the shortcut."""
    i32_min, i32_max = -2**31, 2**31 - 1
    if shift > 0:
        return i32_min, i32_max
    f = lambda a: requantize(a, mult, shift, zp, lo, hi)  # noqa: E731

    def first(pred) -> int:  # smallest acc in [i32_min, i32_max] with pred(acc), 2^31 if none
        a, b = i32_min, i32_max + 1
        while a < b:
            mid = (a + b) // 2
            if pred(mid):
                b = mid
            else:
                a = mid + 1
        return a

    t_lo = first(lambda a: f(a) > lo)
    t_hi = first(lambda a: f(a) >= hi) - 1
    return min(t_lo, i32_max), max(t_hi, i32_min)


def _floors(m: int, k: int, s: int, d: np.ndarray) -> np.ndarray:
    """floor((d*m + k) / 2^s) in int64 for d < 2^22, m < 2^31, s <= 62 (k split so that nothing overflows)."""
    kq, kr = k >> s, k & ((1 << s) - 1)
    return kq + ((d * m + kr) >> s)


def _coarser(mult: int, k: int, s: int, t: int, rng: int, t_lo: int) -> tuple[int | None, int | None]:
    """(m, kk) with floor((d*m + kk) / 2^(s-t)) == floor((d*mult + k) / 2^s) for every d < rng, and the same with
    k less 2^31 and kk less 2^(31-t) for d < -t_lo (acc < 0): a short record at S = 40 for a right shift over 9.
    Exact when 2^t divides mult; otherwise mult / 2^t rounded either way, kept only if every d of the range agrees
    (checked, for ranges up to 2^22). (None, None): a long record."""
    if t > 15:
        return None, None
    if mult % (1 << t) == 0:
        return mult >> t, k >> t
    if rng > 1 << 22 or s > 62:
        return None, None
    d = np.arange(rng, dtype=np.int64)
    neg = d[:max(min(-t_lo, rng), 0)]
    want, want_neg = _floors(mult, k, s, d), _floors(mult, k - (1 << 31), s, neg)
    for m in (mult >> t, (mult >> t) + 1):
        for kk in ((k >> t) + j for j in (0, 1, -1, 2, -2)):
            if np.array_equal(_floors(m, kk, s - t, d), want) and \
                    np.array_equal(_floors(m, kk - (1 << (31 - t)), s - t, neg), want_neg):
                return m, kk
    return None, None


def channel_requant(mult: int, shift: int, zp: int, lo: int, hi: int, bias: int = 0) -> tuple[int, ...]:
    """The nn_rqc_t record (lo, hi, w0..w3, range, w4) of one output channel whose accumulator is `bias` plus the
    sum nn_blocks computes, see firmware/nn/nn.h: every constant refers to that sum, acc - bias.

    For a right shift r >= 1 (S = 31 + r), TFLite's two roundings collapse into one floor (nn_requant):
    q(acc) = floor((acc*mult + E) / 2^S) for acc >= 0 and the same less 2^31 inside the floor for acc < 0,
    E = 2^30 + 2^(30+r). Over the unsaturated range [t_lo, t_hi] (clamp_thresholds, `range` accumulators) no clamp
    is needed and, with d = acc - t_lo >= 0, q + zp + 256 = floor((d*mult + k) / 2^S),
    k = t_lo*mult + E + (zp + 256)*2^S: the +256 keeps the floor positive and the int8 output is its low byte.
    The record's lo is t_lo - bias, so d is the same for the sum.

    Short record (S - 32 <= 8): scaled by 2^e, e = 8 - (S - 32), that byte is bits 24..31 of
    s = floor((d*m' + K') / 2^16), m' = mult*2^e = mh*2^16 + ml, K' = k*2^e = khi*2^16 + klo. While
    d*ml + klo < 2^32 (the first `fast` accumulators of the range, hi = lo + fast) two 32-bit multiplies give it,
    s = d*mh + khi + c (mod 2^32), c = (d*ml + klo) >> 16 < 2^16, and since d*mh + khi = sum*mh + (khi - lo*mh) the
    first needs no d: a = sum*mh + w1. c only matters when it carries into bit 24: below c_max = the largest c of the
    fast part, (a mod 2^24) + c_max < 2^24 (no carry out of (a << 8) + (c_max << 8)) means the byte is a's.
    w0..w3 = mh, khi_fast - lo*mh, c_max << 8, ml + 2^16 klo; w4 = khi. Beyond the fast part, d = dh*2^16 + dl and
    s = d*mh + dh*ml + ((dl*ml + klo) >> 16) + khi, where only dl*ml + klo < 2^32 must not wrap. For acc < 0, k is
    2^31 less: a range that starts below zero keeps its fast part there, with khi_fast = khi - 2^(15+e) (otherwise
    khi_fast = khi), and takes a long record if the fast part ends before zero.
    A right shift over 9 (S - 32 > 8) takes a short record at S = 40 when _coarser finds mult / 2^(S-40) exact or
    checked over the range, else a long record (hi = lo), w0..w3 = mult, k mod 2^32, k >> 32, S - 32, w4 = max(-t_lo, 0) (d < w4: acc < 0, k less
    2^31): the byte is bits S..S+7 of the 64-bit d*mult + k. A channel with an empty range has hi = lo and zeros
    (every acc >= t_lo saturates to act_max). Channels that need the generic path (left shift, r = 0, huge ranges)
    have lo = hi = INT32_MIN and w0..w3 = mult, shift, bias, -1."""
    t_lo, t_hi = clamp_thresholds(mult, shift, zp, lo, hi)
    r = -shift
    rng = max(t_hi - t_lo + 1, 0)
    generic = -2**31, -2**31, mult, shift % 2**32, bias % 2**32, 2**32 - 1, 0, 0
    if shift > 0 or r < 1 or rng >= 2**31 or not -2**31 <= t_lo - bias < 2**31:
        return generic
    if rng and not lo < requantize(t_lo, mult, shift, zp, lo, hi) <= requantize(t_hi, mult, shift, zp, lo, hi) < hi:
        return generic    # the thresholds were clipped to int32: the range's ends saturate
    base = t_lo - bias
    if not rng:
        return base, base, 0, 0, 0, 0, 0, 0
    s = 31 + r
    k = t_lo * mult + (1 << 30) + (1 << (30 + r)) + (zp + 256) * (1 << s)
    e = 8 - (s - 32)
    m, kk = (mult << e, k << e) if e >= 0 else _coarser(mult, k, s, -e, rng, t_lo)
    if m is not None and base < 2**31 - 1:
        ml, mh, klo, khi = m & 0xFFFF, (m >> 16) % 2**32, kk & 0xFFFF, (kk >> 16) % 2**32
        fast = min(rng, (2**32 - 1 - klo) // ml + 1 if ml else rng)   # d*ml + klo < 2^32 for every d < fast
        khi_fast = khi
        if t_lo < 0:
            fast = min(-t_lo, rng) if fast >= min(-t_lo, rng) else 0
            khi_fast = (khi - (1 << (15 + e))) % 2**32
        if fast:
            c8 = (((fast - 1) * ml + klo) >> 16) << 8
            return (base, min(base + fast, 2**31 - 1), mh, (khi_fast - base * mh) % 2**32, c8, ml + (klo << 16),
                    rng, khi)
    if k < 0 or k + (rng - 1) * mult >= 2**64:
        return generic
    return base, base, mult, k % 2**32, k >> 32, s - 32, rng, max(-t_lo, 0)


def is_generic(record: tuple[int, ...]) -> bool:
    """A channel nn_blocks cannot requantize (its layer runs the C kernels)."""
    return record[1] == record[0] and record[5] == 2**32 - 1
