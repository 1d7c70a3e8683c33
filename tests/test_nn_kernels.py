"""Each int8 kernel in firmware/nn, run through the generated C on the host, equals TFLite-Micro byte for byte."""
import numpy as np
import pytest

from _tflite_fixture import keras_model, random_int8, tflm_run, to_int8_tflite

L = pytest.importorskip("tensorflow").keras.layers

CASES = {
    "conv_first_3ch_s2_same_relu6": ((11, 13, 3), lambda x: L.Conv2D(5, 3, strides=2, padding="same", activation="relu6")(x)),
    "conv_3x2_s1_valid": ((9, 10, 6), lambda x: L.Conv2D(7, (3, 2), padding="valid")(x)),
    "conv_5x5_s2_same_relu": ((8, 9, 5), lambda x: L.Conv2D(9, 5, strides=2, padding="same", activation="relu")(x)),
    "conv_s3_same": ((10, 10, 4), lambda x: L.Conv2D(4, 3, strides=3, padding="same")(x)),
    "pointwise_odd": ((7, 9, 10), lambda x: L.Conv2D(11, 1)(x)),
    "pointwise_relu6": ((4, 4, 16), lambda x: L.Conv2D(8, 1, activation="relu6")(x)),
    "depthwise_s2_same_relu6": ((9, 11, 6), lambda x: L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(x)),
    "depthwise_3x5_valid": ((10, 7, 5), lambda x: L.DepthwiseConv2D((3, 5), padding="valid")(x)),
    "depthwise_s1_same": ((6, 6, 3), lambda x: L.DepthwiseConv2D(3, padding="same")(x)),
    "pad_then_conv": ((9, 8, 3), lambda x: L.Conv2D(4, 3, strides=2)(L.ZeroPadding2D(((1, 0), (0, 1)))(x))),
    "pad_then_depthwise": ((7, 7, 4), lambda x: L.DepthwiseConv2D(3, strides=2)(L.ZeroPadding2D(1)(x))),
    "avgpool_3_s2_same": ((9, 11, 4), lambda x: L.AveragePooling2D(3, strides=2, padding="same")(L.Conv2D(4, 1)(x))),
    "avgpool_2_valid": ((7, 6, 3), lambda x: L.AveragePooling2D(2, padding="valid")(x)),
    "mean_hw": ((6, 5, 7), lambda x: L.GlobalAveragePooling2D()(L.Conv2D(7, 1, activation="relu6")(x))),
    "mean_large": ((12, 12, 5), lambda x: L.GlobalAveragePooling2D()(L.Conv2D(6, 3, padding="same")(x))),
    # 4 channels a word (16-bit lane sums flushed every 256 pixels)
    "mean_words_300_pixels": ((20, 15, 3), lambda x: L.GlobalAveragePooling2D()(L.Conv2D(8, 1)(x))),
    "fully_connected": ((3, 4, 5), lambda x: L.Dense(9)(L.Flatten()(x))),
    "softmax": ((2, 3, 4), lambda x: L.Softmax()(L.Dense(10)(L.Flatten()(x)))),
    "softmax_wide_logits": ((4, 4, 3), lambda x: L.Softmax()(L.Dense(7, kernel_initializer="he_normal")(L.Flatten()(x)) * 4.0)),
    "add_two_scales": ((6, 7, 3), lambda x: L.ReLU()(L.Add()([L.Conv2D(4, 1)(x), L.Conv2D(4, 3, padding="same")(x)]))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_bit_exact_with_tflm(name, tmp_path):
    from export.rp2040.host import HostModel

    shape, build = CASES[name]
    model_bytes = to_int8_tflite(keras_model(shape, build, seed=7), shape, seed=3)
    path = tmp_path / "m.tflite"
    path.write_bytes(model_bytes)
    x = random_int8(shape, 48, seed=11)
    ours = HostModel(path).run(x)
    ref = tflm_run(model_bytes, x)
    assert ours.shape == ref.shape
    assert len(np.unique(ref)) > 2, "degenerate reference output: the case tests nothing"
    np.testing.assert_array_equal(ours, ref)


def test_fast_requant_equals_tflite_reference(tmp_path):
    """nn_requant (M0+ path, no 64-bit multiply, one collapsed rounding) == MultiplyByQuantizedMultiplier."""
    import ctypes
    import subprocess

    from export.rp2040.host import NN_DIR

    src = tmp_path / "rq.c"
    src.write_text('#include "nn_fixed.h"\n'
                   "int32_t ref(int32_t x, int32_t m, int s) { return nn_mbqm(x, m, s); }\n"
                   "int32_t fast(int32_t x, int32_t m, int s) { return nn_requant(x, m, s); }\n")
    lib = tmp_path / "rq.so"
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", f"-I{NN_DIR}",
                    str(src), "-o", str(lib)], check=True)
    so = ctypes.CDLL(str(lib))
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.integers(-2**31, 2**31, 20000), rng.integers(-2**20, 2**20, 20000),
                         rng.integers(-300, 300, 5000), [-2**31, 2**31 - 1, 0, 1, -1]])
    ms = np.concatenate([rng.integers(2**30, 2**31, len(xs) - 4), [0, 2**30, 2**31 - 1, 2**30 + 1]])
    shifts = rng.integers(-31, 8, len(xs))
    bad = [(x, m, s) for x, m, s in zip(xs.tolist(), ms.tolist(), shifts.tolist()) if so.ref(x, m, s) != so.fast(x, m, s)]
    assert not bad, bad[:5]


def test_channel_requant_equals_tflite_reference(tmp_path):
    """nn_out with the nn_rqc_t record from quant.channel_requant == MultiplyByQuantizedMultiplier + zero point
    + clamp, on random channels (right shifts 1..31: short records, also with a fast part shorter than the range
    or at a coarser scale for shifts over 9, and long ones; no shift, left shifts; ReLU or not) and accumulators at the clamp thresholds, at the end of the
    fast part, around zero (negative ties round differently), inside the range and far outside."""
    import ctypes
    import subprocess

    from export.rp2040.host import NN_DIR
    from export.rp2040.quant import channel_requant, clamp_thresholds, is_generic, quantize_multiplier, requantize

    src = tmp_path / "out.c"
    src.write_text('#include "nn_fixed.h"\n'
                   "void run(const nn_rqc_t *c, int32_t zp, int32_t lo, int32_t hi, const int32_t *acc, int n, int8_t *y) {\n"
                   "    const nn_requant_t rq = {.out_zp = zp, .act_min = lo, .act_max = hi};\n"
                   "    for (int i = 0; i < n; i++) y[i] = nn_out(&rq, c, acc[i]);\n}\n")
    lib = tmp_path / "out.so"
    subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", f"-I{NN_DIR}",
                    str(src), str(NN_DIR / "nn_requant.c"), "-o", str(lib)], check=True)
    so = ctypes.CDLL(str(lib))
    i32 = ctypes.c_int32
    so.run.argtypes = [ctypes.c_void_p, i32, i32, i32, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    rng = np.random.default_rng(2)
    short = long = partial = coarse = carries = 0
    for i in range(400):
        mult, shift = quantize_multiplier(float(2.0 ** rng.uniform(-24, 3 if i % 10 == 0 else -0.5)))
        zp = int(rng.integers(-128, 128))
        lo = int(rng.choice([-128, zp, max(-128, zp - 3)]))
        hi = int(rng.choice([127, min(127, zp + int(rng.integers(1, 200)))]))
        bias = int(rng.choice([0, int(rng.integers(-2**20, 2**20))]))   # the record reads acc - bias
        rec = channel_requant(mult, shift, zp, lo, hi, bias)
        fast = rec[1] - rec[0]   # hi - lo: the short record's fast part, 0 for the others
        short += fast > 0
        long += fast == 0 and rec[6] > 0 and not is_generic(rec)
        partial += 0 < fast < rec[6]
        coarse += fast > 0 and -shift > 9
        t_lo, t_hi = clamp_thresholds(mult, shift, zp, lo, hi)
        inner = rng.integers(max(t_lo, -2**31), min(t_hi, 2**31 - 1) + 1, 300) if t_lo <= t_hi else []
        edges = [t_lo - 1, t_lo, t_lo + 1, t_hi - 1, t_hi, t_hi + 1, -2, -1, 0, 1, 2, -2**31, 2**31 - 1,
                 t_lo + fast - 1, t_lo + fast]
        accs = np.clip(np.concatenate([inner, edges, rng.integers(-2**31, 2**31, 50), rng.integers(-5000, 5000, 100)]),
                       -2**31 + max(bias, 0), 2**31 - 1 + min(bias, 0))   # sums without the bias fit int32
        words, sums = np.array(rec, np.int64).astype(np.uint32), (accs - bias).astype(np.int32)  # alive across run
        y = np.zeros(len(accs), np.int8)
        so.run(words.ctypes.data, zp, lo, hi, sums.ctypes.data, len(accs), y.ctypes.data)
        want = [requantize(int(a), mult, shift, zp, lo, hi) for a in accs]
        assert y.tolist() == want, (mult, shift, zp, lo, hi, bias)
        # nn_blocks_m0.S's fast part: the byte of a = sum*mh + w1 unless (a << 8) + cmax8 carries, then exact
        for a_acc, w in zip(accs.tolist(), want):
            u = a_acc - bias
            if not rec[0] <= u < rec[1]:
                continue
            a = (u * rec[2] + rec[3]) % 2**32
            carry = ((a << 8) % 2**32) + rec[4] >= 2**32
            if carry:
                a += ((u - rec[0]) * (rec[5] & 0xFFFF) + (rec[5] >> 16)) >> 16
            assert ((a % 2**32) >> 24) == w % 256, (mult, shift, zp, lo, hi, bias, a_acc)
            carries += carry
    print(f"{carries} accumulators of the fast parts took the exact sum")
    assert short > 100 and long > 100 and partial > 20 and coarse > 20, \
        f"{short} short ({partial} with a shorter fast part, {coarse} coarser) and {long} long records: a path was " \
        "hardly tested"


def test_clamp_thresholds_are_exact():
    """Below clamp_lo every accumulator requantizes to act_min, above clamp_hi to act_max; at the thresholds
    themselves the full requantization is still needed (the bounds are tight)."""
    from export.rp2040.quant import clamp_thresholds, quantize_multiplier, requantize

    rng = np.random.default_rng(1)
    for _ in range(200):
        mult, shift = quantize_multiplier(float(rng.uniform(1e-5, 0.9)))
        zp = int(rng.integers(-128, 128))
        lo = int(rng.choice([-128, zp]))
        hi = int(rng.choice([127, min(127, zp + int(rng.integers(1, 200)))]))
        t_lo, t_hi = clamp_thresholds(mult, shift, zp, lo, hi)
        f = lambda a: requantize(a, mult, shift, zp, lo, hi)  # noqa: E731
        for a in (t_lo - 1, t_lo - 12345):
            assert a < -2**31 or f(a) == lo
        for a in (t_hi + 1, t_hi + 12345):
            assert a >= 2**31 or f(a) == hi
        assert t_lo == 2**31 - 1 or f(t_lo) > lo
        assert t_hi == -2**31 or f(t_hi) < hi
