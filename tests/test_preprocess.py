"""The preprocessing contract (edgecore.preprocess): its integer definition, what it cancels, what it ships."""
import math

import numpy as np
import pytest
import torch

from compress import camera, shifts
from edgecore import preprocess
from edgecore.preprocess import standardize


def _scenes(n=12, side=24, seed=0) -> np.ndarray:
    """Smooth colour fields with a dark blob: structure like a photo, values well inside 0..255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    out = []
    for _ in range(n):
        base = rng.uniform(70, 150, 3) + 40 * np.stack([np.sin(3 * xx + rng.uniform(0, 6)),
                                                        np.cos(2 * yy + rng.uniform(0, 6)), xx * yy], -1)
        blob = np.exp(-((xx - rng.uniform(.3, .7)) ** 2 + (yy - rng.uniform(.3, .7)) ** 2) / 0.02)[..., None]
        out.append(np.clip(base * (1 - 0.6 * blob) + rng.normal(0, 3, (side, side, 3)), 0, 255))
    return np.round(np.stack(out)).astype(np.uint8)


def _reference(img: np.ndarray) -> np.ndarray:
    """The DESCRIPTION, one pixel at a time with Python integers (math.isqrt): an independent reading of it."""
    h, w, c = img.shape
    n = h * w
    chans = [[int(v) for v in img[..., ch].ravel()] for ch in range(c)]
    m, r = [], []
    for p in chans:
        s1, s2 = sum(p), sum(v * v for v in p)
        m.append(max((256 * s1 + n // 2) // n, preprocess.MIN_MEAN_Q8))
        r.append((n * s2 - s1 * s1) * 65536 // (n * n) * 2 ** 24 // (m[-1] * m[-1]))
    q = math.isqrt(max(math.isqrt(sum(r) // c), preprocess.MIN_CV_Q12) * preprocess.REF_CV_Q12)
    ys = []
    for ch, p in enumerate(chans):
        g = (preprocess.TARGET_SPREAD * 2 ** 28 + m[ch] * q // 2) // (m[ch] * q)
        ys.append([min(255, max(0, ((256 * v - m[ch]) * g + preprocess.TARGET_MEAN * 65536 + 32768) // 65536))
                   for v in p])
    pixels = list(zip(*ys))
    sq = sum((c * v - sum(px)) ** 2 for px in pixels for v in px)
    s = max(math.isqrt(sq // (n * c)), preprocess.MIN_CHROMA3)
    k = math.isqrt(preprocess.REF_CHROMA3 * 2 ** 24 // s)
    out = [[min(255, max(0, (4096 * sum(px) + k * (c * v - sum(px)) + 2048 * c) // (4096 * c))) for v in px]
           for px in pixels]
    return np.array(out, np.uint8).reshape(h, w, c)


def test_matches_the_integer_definition_exactly():
    x = np.concatenate([_scenes(4, side=9), np.random.default_rng(3).integers(0, 256, (3, 9, 9, 3), np.uint8)])
    got = standardize(x)
    assert got.dtype == np.uint8 and got.shape == x.shape
    for img, out in zip(x, got):
        assert np.array_equal(out, _reference(img))


def test_channels_end_at_mean_128_with_half_their_relative_spread_normalised():
    """Channels that vary together (no chroma to rescale), so step 1's spread shows in the output as it is."""
    rng = np.random.default_rng(0)
    cv = rng.uniform(0.08, 0.2, (4, 1, 1, 1))  # each image's relative spread, the same in every channel
    x = (1 + cv * rng.normal(0, 1, (4, 32, 32, 1))) * [150, 110, 70] * rng.uniform(0.5, 1.3, (4, 1, 1, 1))
    x = x.clip(0, 255).round().astype(np.uint8)
    y = standardize(x).reshape(4, -1, 3).astype(np.float64)
    assert np.abs(y.mean(1) - 128).max() < 0.6
    raw = x.reshape(4, -1, 3).astype(np.float64)
    cv = raw.std(1) / raw.mean(1)  # each channel's relative spread
    pooled = np.sqrt((cv ** 2).mean(1, keepdims=True))
    expected = preprocess.TARGET_SPREAD * cv / np.sqrt(pooled * preprocess.REF_CV_Q12 / 4096)
    assert np.abs(y.std(1) - expected).max() < 0.5


def test_exposure_and_white_balance_cancel_and_contrast_nearly():
    """A gain per channel (no clipping) changes the standardised input by rounding only; a contrast change
    (gain and offset) by about half of what it does to the pixels."""
    x = _scenes()
    y = standardize(x).astype(np.int16)

    def change(name):
        shifted = shifts.apply_shift(x, name, seed=0)
        raw = np.abs(shifted.astype(np.int16) - x.astype(np.int16)).mean()
        return np.abs(standardize(shifted).astype(np.int16) - y).mean(), raw

    for name in ("exposure_x0.5", "exposure_x1.6", "wb_warm", "wb_cool"):
        after, raw = change(name)
        assert raw > 15 and after < 2.0, (name, after, raw)  # x0.5 halves the levels: rounding, doubled back
    after, raw = change("contrast_x0.6")
    assert after < 0.6 * raw, (after, raw)  # the square root of the spread: about half


def _chroma_rms(u8: np.ndarray) -> np.ndarray:
    y = u8.astype(np.float64)
    return np.sqrt(((y - y.mean(-1, keepdims=True)) ** 2).mean((1, 2, 3)))


@pytest.mark.parametrize("s", [0.5, 1.5])
def test_a_saturation_change_reaches_the_model_at_about_half_its_size(s):
    """Chroma scaled by s in the photo is scaled by about sqrt(s) in the standardised input."""
    x = _scenes()
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    shifted = camera.to_u8(camera.saturation(t, torch.full((len(x),), s)))
    np.testing.assert_allclose(_chroma_rms(shifted) / _chroma_rms(x), s, atol=0.02)
    ratio = _chroma_rms(standardize(shifted)) / _chroma_rms(standardize(x))
    assert abs(np.log(ratio) - 0.5 * np.log(s)).max() < 0.12, ratio


def test_flat_and_tiny_images_stay_defined():
    flat = np.full((2, 5, 5, 3), 77, np.uint8)
    assert np.array_equal(standardize(flat), np.full_like(flat, 128))
    one = np.array([[[[0, 128, 255]]]], np.uint8)  # a black channel sits below its 2-level mean floor: 0, 128,
    assert standardize(one).tolist() == [[[[41, 108, 108]]]]  # 128 after step 1, then chroma to the typical RMS
    black = np.zeros((1, 6, 6, 3), np.uint8)
    black[0, 0, 0] = 255  # one hot pixel in a black frame: the mean floor keeps the gain finite
    out = standardize(black)
    assert out[0, 0, 0, 0] == 255 and (out.reshape(-1, 3)[1:] == out[0, 0, 1]).all()
    assert standardize(np.zeros((0, 4, 4, 3), np.uint8)).shape == (0, 4, 4, 3)


def test_batches_do_not_interact():
    x = _scenes(70, side=8)  # more than one internal chunk of 64
    assert np.array_equal(standardize(x), np.concatenate([standardize(x[i:i + 1]) for i in range(len(x))]))


def test_rejects_what_is_not_uint8_nhwc():
    with pytest.raises(ValueError, match="uint8 NHWC"):
        standardize(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 NHWC"):
        standardize(np.zeros((4, 4, 3), np.uint8))


def test_shipped_source_is_the_same_function():
    ns: dict = {}
    exec(compile("import numpy as np\n" + preprocess.source(), "pizza_preprocess.py", "exec"), ns)
    x = np.concatenate([_scenes(5), np.random.default_rng(1).integers(0, 256, (5, 24, 24, 3), np.uint8)])
    assert np.array_equal(ns["standardize"](x), standardize(x))


def test_model_inputs():
    x = _scenes(3)
    s = standardize(x)
    assert np.array_equal(preprocess.to_int8(x), (s.astype(np.int16) - 128).astype(np.int8))
    f = preprocess.to_float_nchw(x)
    assert f.dtype == np.float32 and f.shape == (3, 3, 24, 24) and f.flags.c_contiguous
    np.testing.assert_array_equal(f, s.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0))
    np.testing.assert_array_equal(preprocess.to_float_nhwc(x), s.astype(np.float32) / np.float32(255.0))
