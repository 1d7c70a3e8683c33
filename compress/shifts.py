"""The robustness suite: fixed camera shifts applied to test images, to see how a model holds up when exposure,
white balance, pose, optics or compression differ from its training photos. Built on compress.camera, so a
shift means exactly what the training augmentation means by it."""
from __future__ import annotations

import math

import numpy as np
import torch

from . import camera

# name -> description; the order is the report's order.
SUITE = {
    "exposure_x0.5": "under-exposed: sensor gain x0.5 (one stop darker)",
    "exposure_x1.6": "over-exposed: sensor gain x1.6",
    "wb_warm": "warm white balance: red x1.25, blue x0.8 (tungsten light)",
    "wb_cool": "cool white balance: red x0.8, blue x1.25 (shade, LED)",
    "rotate_30": "camera rotated 30 degrees, scene fills the corners",
    "vignette": "strong lens vignette: corners 60 % darker",
    "blur_1.5": "out of focus: Gaussian blur, sigma 1.5 % of the image side",
    "jpeg_q15": "JPEG quality 15",
    "noise_0.06": "sensor noise, sigma 0.06 (dim light, high ISO)",
    "contrast_x0.6": "low contrast x0.6 (haze, glare)",
    "gamma_1.4": "darker mid-tones: gamma 1.4",
    "saturation_x0.5": "washed-out colour: saturation x0.5 (a flat picture profile, a faded lamp)",
    "tilt_zoom": "tilted, closer camera: perspective 0.15, zoom x1.15",
}


def _full(n: int, value: float) -> torch.Tensor:
    return torch.full((n,), float(value))


def _apply(x: torch.Tensor, name: str, gen: torch.Generator) -> torch.Tensor:
    n, side = len(x), x.shape[-1]
    if name == "exposure_x0.5":
        return camera.exposure_wb(x, _full(n, 0.5))
    if name == "exposure_x1.6":
        return camera.exposure_wb(x, _full(n, 1.6))
    if name in ("wb_warm", "wb_cool"):
        r, b = (1.25, 0.8) if name == "wb_warm" else (0.8, 1.25)
        return camera.exposure_wb(x, _full(n, 1.0), torch.tensor([[r, 1.0, b]]).repeat(n, 1))
    if name == "rotate_30":
        # Alternate the direction per image, so the suite does not favour one handedness.
        sign = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
        return camera.warp(x, sign * math.radians(30), _full(n, 1.0), torch.zeros(n, 2))
    if name == "vignette":
        return camera.vignette(x, _full(n, 0.6))
    if name == "blur_1.5":
        return camera.blur(x, _full(n, 0.015 * side))
    if name == "jpeg_q15":
        return camera.jpeg(x, _full(n, 15))
    if name == "noise_0.06":
        return camera.noise(x, _full(n, 0.06), gen)
    if name == "contrast_x0.6":
        return camera.contrast(x, _full(n, 0.6))
    if name == "gamma_1.4":
        return camera.gamma(x, _full(n, 1.4))
    if name == "saturation_x0.5":
        return camera.saturation(x, _full(n, 0.5))
    if name == "tilt_zoom":
        return camera.warp(x, _full(n, 0.0), _full(n, 1.15), torch.zeros(n, 2), tilt=torch.tensor([[0.15, 0.1]]).repeat(n, 1))
    raise KeyError(name)


def apply_shift(images_u8: np.ndarray, name: str, seed: int) -> np.ndarray:
    """The shift `name` applied to uint8 NHWC images; same shape and dtype, deterministic for a seed."""
    if name not in SUITE:
        raise KeyError(f"unknown shift {name!r}; the suite has: {', '.join(SUITE)}")
    if len(images_u8) == 0:
        return images_u8.copy()
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float() / 255.0
        y = _apply(x, name, gen)
    return camera.to_u8(y)
