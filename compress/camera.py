"""What a real camera does to a photo, as batched torch transforms: the seeded training augmentation (student and
teacher) and the fixed shift suite (compress.shifts) share these primitives, so both mean the same "exposure".

Images are float NCHW in [0, 1]; per-image parameters are tensors of shape [N] (or [N, 3]). Exposure and
white balance scale pixel values (x0.6 means every channel times 0.6, as photo editors and most robustness
benchmarks define it), which keeps channel ratios: a darker golden pizza stays orange, charring stays grey-black.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _col(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, 1, 1, 1)


def exposure_wb(x: torch.Tensor, gain: torch.Tensor, rgb_gains: torch.Tensor | None = None) -> torch.Tensor:
    """Exposure gain `gain` [N] and white-balance gains `rgb_gains` [N, 3]."""
    y = x * _col(gain)
    if rgb_gains is not None:
        y = y * rgb_gains[:, :, None, None]
    return y.clamp(0.0, 1.0)


def gamma(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return x.clamp(1e-6, 1.0) ** _col(g)


def contrast(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * _col(c) + mean).clamp(0.0, 1.0)


def saturation(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    grey = (x * _LUMA.to(x.dtype).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    return ((x - grey) * _col(s) + grey).clamp(0.0, 1.0)


def hue(x: torch.Tensor, radians: torch.Tensor) -> torch.Tensor:
    """Rotate chroma around the grey axis (YIQ), a colour cast that keeps luma."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=x.dtype)
    from_yiq = torch.linalg.inv(to_yiq)
    c, s = torch.cos(radians), torch.sin(radians)
    rot = torch.zeros(len(x), 3, 3, dtype=x.dtype)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = from_yiq @ rot @ to_yiq  # [N, 3, 3]
    return torch.einsum("nij,njhw->nihw", m, x).clamp(0.0, 1.0)


def blur(x: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a per-image sigma in pixels (0 = unchanged); separable, edges reflected."""
    n, c, h, w = x.shape
    sigma = sigma_px.clamp_min(1e-3)
    rad = int(min(math.ceil(2.5 * float(sigma.max())), (min(h, w) - 1) // 2))
    if rad < 1:
        return x
    taps = torch.arange(-rad, rad + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [N*C, 2r+1]
    y = F.pad(x.reshape(1, n * c, h, w), (rad, rad, rad, rad), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def noise(x: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Sensor noise: Gaussian, stronger in bright areas (shot noise) plus a floor (read noise)."""
    z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return (x + z * _col(sigma) * (0.5 + 0.5 * x.sqrt())).clamp(0.0, 1.0)


def jpeg(x: torch.Tensor, quality: torch.Tensor, apply: torch.Tensor | None = None) -> torch.Tensor:
    """JPEG round trip through PIL (libjpeg) at a per-image quality; `apply` [N] bool picks which images."""
    out = x.clone()
    for i in range(len(x)):
        if apply is not None and not bool(apply[i]):
            continue
        u8 = (x[i].permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality[i]))
        buf.seek(0)
        back = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
        out[i] = torch.from_numpy(back).permute(2, 0, 1)
    return out


def warp(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
         tilt: torch.Tensor | None = None, flip: torch.Tensor | None = None, fill: str = "reflection") -> torch.Tensor:
    """Rotate (radians), zoom (`scale` > 1 zooms in), translate (`shift` [N, 2], fraction of the half-width),
    tilt the camera (`tilt` [N, 2], perspective terms) and mirror. `fill` is how uncovered corners are filled:
    'reflection' continues the scene (what a rotated camera sees), 'zeros' gives black corners."""
    n = len(x)
    c, s = torch.cos(angle) / scale, torch.sin(angle) / scale
    mirror = torch.where(flip, -1.0, 1.0) if flip is not None else torch.ones(n)
    hmat = torch.zeros(n, 3, 3, dtype=x.dtype)
    hmat[:, 0, 0], hmat[:, 0, 1], hmat[:, 0, 2] = c * mirror, -s, shift[:, 0]
    hmat[:, 1, 0], hmat[:, 1, 1], hmat[:, 1, 2] = s * mirror, c, shift[:, 1]
    hmat[:, 2, 2] = 1.0
    if tilt is not None:
        hmat[:, 2, 0], hmat[:, 2, 1] = tilt[:, 0], tilt[:, 1]
    h, w = x.shape[2:]
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=x.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=x.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)  # [1, HW, 3]
    src = pts @ hmat.transpose(1, 2)  # [N, HW, 3]
    grid = (src[..., :2] / src[..., 2:].clamp_min(1e-3)).reshape(n, h, w, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=fill, align_corners=False)


def vignette(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Lens fall-off: corners darkened by `strength` (0-1)."""
    h, w = x.shape[2:]
    ys = torch.linspace(-1, 1, h, dtype=x.dtype)[:, None]
    xs = torch.linspace(-1, 1, w, dtype=x.dtype)[None, :]
    r2 = (xs * xs + ys * ys) / 2.0
    return x * (1.0 - _col(strength) * r2[None, None])


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand((n, *shape), generator=gen)


def _log_uniform(gen: torch.Generator, n: int, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return torch.exp(_uniform(gen, n, math.log(lo), math.log(hi), *shape))


def _maybe(gen: torch.Generator, n: int, p: float, value: torch.Tensor, identity: float) -> torch.Tensor:
    """`value` for a random fraction `p` of the images, `identity` (no change) for the others."""
    keep = torch.rand(n, generator=gen) < p
    return torch.where(keep.reshape(-1, *([1] * (value.dim() - 1))), value, torch.full_like(value, identity))


DEFAULT_STRENGTH = 0.5

# JPEG quality draws, (lowest, highest, log-uniform): the student's (see `photometric`), and the teacher head's,
# which stays uniform over 20-90: heavy-JPEG views cost its frozen-feature head about 1 point on the unlabeled
# pool (76.3 vs 77.2 % seed 0, 79.2 vs 80.2 % seed 1; docs/distillation.md, "JPEG quality").
STUDENT_JPEG = (10, 95, True)
TEACHER_JPEG = (20, 90, False)


def to_u8(x_nchw: torch.Tensor) -> np.ndarray:
    """Float NCHW in [0, 1] -> uint8 NHWC, rounded as a camera delivers it."""
    return (x_nchw.clamp(0.0, 1.0).permute(0, 2, 3, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def geometry(batch_u8: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] seen by a random camera pose: any rotation, mirror, zoom 0.85-1.2,
    shift, mild perspective, scene-continuing fill."""
    x = batch_u8.permute(0, 3, 1, 2).float() / 255.0
    n = len(x)
    return warp(x, angle=_uniform(gen, n, -math.pi, math.pi), scale=_log_uniform(gen, n, 0.85, 1.2),
                shift=_uniform(gen, n, -0.12, 0.12, 2), tilt=_uniform(gen, n, -0.15, 0.15, 2),
                flip=torch.rand(n, generator=gen) < 0.5)


def photometric(x: torch.Tensor, gen: torch.Generator, strength: float = DEFAULT_STRENGTH,
                jpeg_quality: tuple[float, float, bool] = STUDENT_JPEG) -> torch.Tensor:
    """Light, optics and sensor on float NCHW images, each transform on a random `strength` fraction of them
    over its full range: exposure x0.45-1.7, white balance, vignette, gamma, contrast, saturation, hue cast,
    blur, noise, and JPEG on half as many.

    The student's JPEG quality is log-uniform over 10-95 (it was uniform over 20-90): compression damage grows
    about as 1/quality below 50 and little is left of it above, so the uniform draw spent most JPEG views on
    harmless qualities; q10-30, what a low-bitrate stream or a cheap camera module delivers, is now about half.
    Float students on 3000 fresh test images, seeds 0/1/2 (docs/distillation.md, "JPEG quality"): JPEG q15 cost
    3.8/5.4/3.7 -> 1.7/3.4/3.2 points, for clean accuracy 76.0/86.1/79.9 -> 76.0/82.5/78.9 %."""
    n, p = len(x), float(strength)
    if p <= 0:
        return x.clamp(0.0, 1.0)
    wb = _log_uniform(gen, n, 0.78, 1.28, 3)
    wb = wb / wb.mean(1, keepdim=True)
    x = exposure_wb(x, _maybe(gen, n, p, _log_uniform(gen, n, 0.45, 1.7), 1.0), _maybe(gen, n, p, wb, 1.0))
    x = vignette(x, _maybe(gen, n, p, _uniform(gen, n, 0.0, 0.5), 0.0))
    x = gamma(x, _maybe(gen, n, p, _log_uniform(gen, n, 0.75, 1.35), 1.0))
    x = contrast(x, _maybe(gen, n, p, _log_uniform(gen, n, 0.6, 1.4), 1.0))
    x = saturation(x, _maybe(gen, n, p, _log_uniform(gen, n, 0.55, 1.5), 1.0))
    x = hue(x, _maybe(gen, n, p, _uniform(gen, n, -0.2, 0.2), 0.0))
    x = blur(x, _maybe(gen, n, p, _uniform(gen, n, 0.0, 1.3), 0.0))
    x = noise(x, _maybe(gen, n, p, _uniform(gen, n, 0.0, 0.05), 0.0), gen)
    lo, hi, log = jpeg_quality
    quality = (_log_uniform if log else _uniform)(gen, n, lo, hi).round()  # both take the same random numbers
    return jpeg(x, quality, torch.rand(n, generator=gen) < 0.5 * p)


def augment(batch_u8: torch.Tensor, gen: torch.Generator, strength: float = DEFAULT_STRENGTH,
            jpeg_quality: tuple[float, float, bool] = STUDENT_JPEG) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1]: a random camera per image, drawn from `gen` (seeded, deterministic):
    `geometry` always, then `photometric` at `strength` (0 = geometry only, 1 = every transform on every image).

    A tiny student trained under all of them at once underfits (measured: 64 % vs 78 % test accuracy at 20
    labels per class), while each range must stay wide for the shifts a real camera makes. Doneness classes
    stay what they are under all of these because the pizza keeps its colours relative to its plate and board,
    and charring keeps its hue at any exposure.
    """
    return photometric(geometry(batch_u8, gen), gen, strength, jpeg_quality)
