"""Camera transforms and the shift suite: deterministic, shape- and range-preserving, and meaning what they say."""
import math

import numpy as np
import pytest
import torch

from compress import camera
from compress.shifts import SUITE, apply_shift

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", list(SUITE))
def test_every_shift_is_deterministic_and_keeps_shape_and_range(name):
    a = apply_shift(IMAGES, name, seed=3)
    assert a.shape == IMAGES.shape and a.dtype == np.uint8
    assert np.array_equal(a, apply_shift(IMAGES, name, seed=3))
    assert not np.array_equal(a, IMAGES)  # every shift changes the pictures


def test_the_suite_is_large_enough_and_refuses_unknown_names():
    assert len(SUITE) >= 8
    with pytest.raises(KeyError, match="unknown shift"):
        apply_shift(IMAGES, "sepia", 0)
    assert apply_shift(IMAGES[:0], "jpeg_q15", 0).shape == (0, 40, 40, 3)


def test_noise_depends_on_the_seed_and_exposure_scales_pixels():
    assert not np.array_equal(apply_shift(IMAGES, "noise_0.06", 1), apply_shift(IMAGES, "noise_0.06", 2))
    flat = np.full((1, 8, 8, 3), 200, np.uint8)
    assert int(apply_shift(flat, "exposure_x0.5", 0)[0, 0, 0, 0]) == 100
    assert int(apply_shift(flat, "exposure_x1.6", 0)[0, 0, 0, 0]) == 255  # clipped, never wrapped
    warm = apply_shift(flat, "wb_warm", 0)[0, 0, 0]
    assert warm[0] > 200 > warm[2]


def test_rotation_fills_corners_with_the_scene_not_black():
    bright = np.full((1, 32, 32, 3), 180, np.uint8)
    rotated = apply_shift(bright, "rotate_30", 0)
    assert rotated.min() >= 175  # a rotated camera sees more table, not a black frame
    x = torch.from_numpy(bright).permute(0, 3, 1, 2).float() / 255
    black = camera.warp(x, torch.tensor([math.radians(30)]), torch.ones(1), torch.zeros(1, 2), fill="zeros")
    assert float(black[0, :, 0, 0].max()) < 0.05


def test_identity_parameters_change_nothing():
    x = torch.from_numpy(IMAGES).permute(0, 3, 1, 2).float() / 255
    ones, zeros = torch.ones(4), torch.zeros(4)
    for y in (camera.exposure_wb(x, ones, torch.ones(4, 3)), camera.gamma(x, ones), camera.contrast(x, ones),
              camera.saturation(x, ones), camera.hue(x, zeros), camera.blur(x, zeros), camera.vignette(x, zeros),
              camera.warp(x, zeros, ones, torch.zeros(4, 2))):
        assert torch.allclose(y, x, atol=2e-3)


def test_augment_is_seeded_and_strength_zero_is_geometry_only():
    u8 = torch.from_numpy(IMAGES)
    a = camera.augment(u8, torch.Generator().manual_seed(5), 1.0)
    assert torch.equal(a, camera.augment(u8, torch.Generator().manual_seed(5), 1.0))
    assert a.shape == (4, 3, 40, 40) and float(a.min()) >= 0 and float(a.max()) <= 1
    flat = torch.full((16, 24, 24, 3), 120, dtype=torch.uint8)
    geometry = camera.augment(flat, torch.Generator().manual_seed(1), 0.0)
    assert torch.allclose(geometry, torch.full_like(geometry, 120 / 255), atol=1e-5)  # a flat scene stays flat
    light = camera.augment(flat, torch.Generator().manual_seed(1), 1.0)
    means = light.mean(dim=(1, 2, 3))
    assert float(means.max() - means.min()) > 0.2  # exposure, gamma and contrast really vary per image


def test_augment_is_geometry_then_photometric_from_the_same_draws():
    u8 = torch.from_numpy(IMAGES)
    whole = camera.augment(u8, torch.Generator().manual_seed(3), 0.5)
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(whole, camera.photometric(camera.geometry(u8, gen), gen, 0.5))


def test_student_jpeg_quality_is_log_uniform_and_the_teacher_keeps_its_draw(monkeypatch):
    """The student's JPEG views spend about half their draws on q10-30; the teacher head's stay uniform over
    20-90; both take the same random numbers, so every other transform is the same image for image."""
    seen = {}

    def record(x, quality, apply=None):
        seen["q"] = quality[apply]
        return x

    monkeypatch.setattr(camera, "jpeg", record)
    x = torch.rand(4000, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    out = {}
    for name, draw in (("student", camera.STUDENT_JPEG), ("teacher", camera.TEACHER_JPEG)):
        out[name] = camera.photometric(x, torch.Generator().manual_seed(7), 1.0, draw)
        q = seen["q"]
        assert 1700 < len(q) < 2300  # JPEG on half the views at strength 1
        assert float(q.min()) >= draw[0] and float(q.max()) <= draw[1] and torch.equal(q, q.round())
        out[name + "_low"] = float((q <= 30).float().mean())
    assert 0.44 < out["student_low"] < 0.54 and 0.1 < out["teacher_low"] < 0.2
    assert torch.equal(out["student"], out["teacher"])  # the rest of the camera is unchanged
