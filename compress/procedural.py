"""Deterministic procedural pizza photos (six bake classes); hand-written because no pizza photo set is reachable offline.

Image i of class c depends only on (seed, class, i): each image gets its own numpy Generator seeded with
that triple, so any subset can be rendered in any order or in parallel with identical pixels.

The scene is built as a "doneness" field b over the pizza (0 = raw/pale, 0.5 = golden, 1 = brown,
>= 1.3 = charred). The class decides only how b is laid out; colours, textures, toppings, background,
lighting and camera effects are shared, so a classifier has to look at the bake pattern.

Versions (render(..., version=...)); each stays reproducible by seed, byte for byte:
- 4: a clean disc under an affine tilt on a surface, geometric layouts (a straight wedge, round spots).
- 5 (default), with fewer shortcuts: irregular char (warped wedge of varied width and reach, warped blotches of
  varied size and elongation that merge, patchy burnt, curved progression fronts, warped pale regions, ragged
  char texture); and, for every class alike, a tilted perspective camera with barrel distortion and varied
  field of view, clutter partly in frame (dark pan, knife, cutlery, pale napkin or bowl, crumbs) with soft
  shadows, a soft shadow cast from outside the frame, and two lights of different colour temperature.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

# Bump when the look of the images changes, so cached data sets are regenerated. Older versions stay
# selectable (render(..., version=4)) and reproduce their images byte for byte.
VERSION = 5
VERSIONS = (4, 5)

CLASSES = ("basic", "burnt", "combined", "mixed", "progression", "segment")

# Colour ramps over doneness b at these control points (pale, golden, brown, dark, black).
_B_POINTS = np.float32([0.0, 0.5, 1.0, 1.3, 1.7])
_CHEESE = np.float32([[0.97, 0.94, 0.80], [0.95, 0.78, 0.40], [0.66, 0.40, 0.16], [0.28, 0.16, 0.08], [0.08, 0.06, 0.05]])
_CRUST = np.float32([[0.93, 0.85, 0.66], [0.86, 0.60, 0.30], [0.56, 0.31, 0.13], [0.25, 0.14, 0.07], [0.07, 0.05, 0.04]])


def _rng(seed: int, cls: int, index: int, salt: int | None = None) -> np.random.Generator:
    key = [int(seed), int(cls), int(index), 0x9177A]
    return np.random.default_rng(key if salt is None else key + [int(salt)])


def _value_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0,1]: a random (cells+1)^2 lattice, smoothstep-interpolated to h x w (separably)."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)

    def weights(n):
        t = np.minimum(np.linspace(0, cells, n, endpoint=False, dtype=np.float32) + rng.random(dtype=np.float32) * 0.999,
                       cells - 1e-4)
        i = t.astype(np.int32)
        f = t - np.floor(t)
        return i, f * f * (3 - 2 * f)

    y0, ty = weights(h)
    x0, tx = weights(w)
    rows = grid[:, x0] + (grid[:, x0 + 1] - grid[:, x0]) * tx  # (cells+1, w)
    return rows[y0] + (rows[y0 + 1] - rows[y0]) * ty[:, None]


def fractal_noise(rng, h: int, w: int, base: int = 3, octaves: int = 4, gain: float = 0.5) -> np.ndarray:
    """Sum of value-noise octaves, normalised to zero mean, unit-ish range [-1, 1]."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = min(base * (2 ** o), max(h, w) // 2)
        out += amp * _value_noise(rng, h, w, max(cells, 1))
        total += amp
        amp *= gain
    out = out / total
    return (out - out.mean()) * 2.0


def _ramp(b: np.ndarray, colours: np.ndarray) -> np.ndarray:
    bc = np.clip(b, _B_POINTS[0], _B_POINTS[-1])
    return np.stack([np.interp(bc, _B_POINTS, colours[:, k]).astype(np.float32) for k in range(3)], axis=-1)


def _smooth(edge_dist: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased step: 1 inside (edge_dist < 0), 0 outside, linear over `width`."""
    return np.clip(0.5 - edge_dist / width, 0.0, 1.0)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float array over its first two axes (edges clamped)."""
    rad = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-rad, rad + 1, dtype=np.float32) / np.float32(sigma)) ** 2)
    k /= k.sum()
    h, w = img.shape[:2]
    pad = [(rad, rad), (0, 0)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode="edge")
    img = sum(k[j] * p[j:j + h] for j in range(2 * rad + 1))
    pad[0], pad[1] = (0, 0), (rad, rad)
    p = np.pad(img, pad, mode="edge")
    return sum(k[j] * p[:, j:j + w] for j in range(2 * rad + 1))


# --- background --------------------------------------------------------------------------------------

def _wood(rng, yy, xx, s):
    h, w = yy.shape
    ang = rng.uniform(0, np.pi)
    along = (math.cos(ang) * xx + math.sin(ang) * yy) / s
    warp = fractal_noise(rng, h, w, base=2, octaves=3)
    freq = rng.uniform(25, 50)
    grain = np.sin(2 * np.pi * (along * freq + 0.6 * warp)) ** 8
    plank = (along * rng.uniform(2, 4)) % 1.0
    grain = grain - 0.6 * (plank < 0.015)  # seams between planks
    fine = fractal_noise(rng, h, w, base=16, octaves=2)
    base = np.float32([0.62, 0.43, 0.25]) * rng.uniform(0.7, 1.2) + rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    tone = 1 + 0.18 * grain + 0.08 * fine + 0.10 * warp
    return base * tone[..., None]


def _cloth(rng, yy, xx, s):
    h, w = yy.shape
    palette = np.float32([[0.80, 0.15, 0.15], [0.90, 0.90, 0.88], [0.20, 0.30, 0.55], [0.35, 0.50, 0.30]])
    c1 = palette[rng.integers(len(palette))]
    check = (np.floor(xx / (s * rng.uniform(0.08, 0.2))) + np.floor(yy / (s * rng.uniform(0.08, 0.2)))) % 2
    c2 = np.float32([0.92, 0.92, 0.90])
    weave = 1 + 0.06 * fractal_noise(rng, h, w, base=24, octaves=2)
    return (c1 * check[..., None] + c2 * (1 - check[..., None])) * weave[..., None]


def _slate(rng, yy, xx, s):
    h, w = yy.shape
    base = np.float32([0.22, 0.22, 0.24]) * rng.uniform(0.6, 1.4)
    tone = 1 + 0.25 * fractal_noise(rng, h, w, base=3, octaves=5, gain=0.6)
    return base * tone[..., None]


def _tray(rng, yy, xx, s):
    h, w = yy.shape
    base = np.float32([0.55, 0.55, 0.57]) * rng.uniform(0.7, 1.2)
    brushed = fractal_noise(rng, h, w, base=2, octaves=2) * 0.15 + 0.05 * np.sin(yy / s * rng.uniform(60, 120))
    return base * (1 + brushed)[..., None]


_SURFACES = (_wood, _cloth, _slate, _tray)


# --- bake layouts per class ---------------------------------------------------------------------------

def _bake_field(rng, cls: str, u, v, d, phi, h, w) -> np.ndarray:
    """Doneness b over the image, in the pizza's own frame (u, v, radius d, angle phi)."""
    n_lo = fractal_noise(rng, h, w, base=3, octaves=3)
    n_hi = fractal_noise(rng, h, w, base=10, octaves=3)
    golden = rng.uniform(0.45, 0.65)
    b = golden + 0.08 * n_lo + 0.06 * n_hi
    if cls == "basic":
        return b
    if cls == "burnt":
        level = rng.uniform(1.2, 1.65)
        patchy = fractal_noise(rng, h, w, base=4, octaves=4)
        return level + 0.30 * patchy + 0.08 * n_hi
    if cls == "combined":
        spots = np.zeros_like(b)
        for _ in range(rng.integers(4, 11)):
            r = math.sqrt(rng.random()) * 0.85
            a = rng.uniform(0, 2 * np.pi)
            su, sv = r * math.cos(a), r * math.sin(a)
            rad = rng.uniform(0.09, 0.2)
            dist = np.sqrt((u - su) ** 2 + (v - sv) ** 2) / rad + 0.35 * n_hi
            spots = np.maximum(spots, np.clip(1.3 - dist, 0, 1) ** 0.7)
        return b + spots * rng.uniform(1.0, 1.3)
    if cls == "mixed":
        pale = fractal_noise(rng, h, w, base=rng.integers(2, 5), octaves=3)
        thr = rng.uniform(-0.35, -0.1)
        mask = np.clip((pale - thr) * 6, 0, 1)
        return b * (1 - mask) + (rng.uniform(0.0, 0.12) + 0.05 * n_hi) * mask
    if cls == "progression":
        ang = rng.uniform(0, 2 * np.pi)
        t = (math.cos(ang) * u + math.sin(ang) * v + 1) / 2  # 0 at one edge, 1 at the other
        lo, hi = rng.uniform(0.1, 0.4), rng.uniform(1.35, 1.75)
        return lo + (hi - lo) * np.clip(t, 0, 1) ** rng.uniform(0.8, 1.25) + 0.08 * n_lo + 0.05 * n_hi
    if cls == "segment":
        centre = rng.uniform(-np.pi, np.pi)
        half = math.radians(rng.uniform(22, 50))
        off = np.abs((phi - centre + np.pi) % (2 * np.pi) - np.pi)
        sector = np.clip((half - off) * d * 12 + 0.5, 0, 1)
        return b + sector * (rng.uniform(1.3, 1.6) - golden + 0.15 * n_hi)
    raise ValueError(f"unknown class {cls!r}")


# --- toppings -----------------------------------------------------------------------------------------

class _Frame:
    """Maps the pizza frame (u, v in radii) to image pixels, so toppings are painted only in their window."""

    def __init__(self, cx, cy, r, tilt, rot, shape):
        self.cx, self.cy, self.r, self.tilt, self.rot, self.shape = cx, cy, r, tilt, rot, shape

    def window(self, pu, pv, rad):
        c, s = math.cos(self.rot), math.sin(self.rot)
        x = self.cx + self.r * (c * pu - s * pv * self.tilt)
        y = self.cy + self.r * (s * pu + c * pv * self.tilt)
        half = rad * self.r + 3
        h, w = self.shape
        ys = slice(int(np.clip(y - half, 0, h)), int(np.clip(y + half + 1, 0, h)))
        xs = slice(int(np.clip(x - half, 0, w)), int(np.clip(x + half + 1, 0, w)))
        return ys, xs


def _toppings(rng, frame, u, v, aa, noise, colour, height):
    """Paint pepperoni, olives and basil in the pizza frame; returns a mask of topping cover."""
    cover = np.zeros(u.shape, np.float32)
    n_pep = rng.integers(0, 9)
    n_oli = rng.integers(0, 8) if rng.random() < 0.5 else 0
    n_bas = rng.integers(0, 6) if rng.random() < 0.5 else 0

    def place(maxr, rad):
        rr = math.sqrt(rng.random()) * maxr
        a = rng.uniform(0, 2 * np.pi)
        pu, pv = rr * math.cos(a), rr * math.sin(a)
        win = frame.window(pu, pv, rad)
        return win, u[win] - pu, v[win] - pv

    def paint(win, m, col, lift):
        colour[win] = colour[win] * (1 - m[..., None]) + col * m[..., None]
        height[win] += lift * m
        cover[win] = np.maximum(cover[win], m)

    for _ in range(n_pep):
        pr = rng.uniform(0.10, 0.16)
        win, du, dv = place(0.66, pr)
        nz = noise[win]
        dist = np.sqrt(du * du + dv * dv)
        m = _smooth(dist - pr * (1 + 0.04 * nz), aa)
        rim = np.clip(dist / pr, 0, 1) ** 3
        base = np.array([0.55, 0.12, 0.08], np.float32) * rng.uniform(0.75, 1.05)
        fat = np.clip(nz * 3 - 1.5, 0, 0.5)[..., None]  # pale fat flecks
        col = base * (1 - 0.45 * rim[..., None]) * (1 + 0.25 * nz[..., None]) * (1 - fat) + fat * np.float32(0.75)
        paint(win, m, col, 0.3 + 0.5 * rim)
    for _ in range(n_oli):
        pr = rng.uniform(0.035, 0.055)
        win, du, dv = place(0.72, pr)
        dist = np.sqrt(du * du + dv * dv)
        m = _smooth(dist - pr, aa) * (1 - _smooth(dist - pr * 0.45, aa))
        olive = np.float32([0.08, 0.07, 0.07]) if rng.random() < 0.7 else np.float32([0.27, 0.33, 0.13])
        paint(win, m, olive * (1 + 0.4 * noise[win][..., None]), 0.3)
    for _ in range(n_bas):
        length = rng.uniform(0.06, 0.11)
        win, du, dv = place(0.7, length)
        a = rng.uniform(0, np.pi)
        lu = du * math.cos(a) + dv * math.sin(a)
        lv = -du * math.sin(a) + dv * math.cos(a)
        dist = np.sqrt((lu / length) ** 2 + (lv / (length * 0.5)) ** 2)
        nz = noise[win]
        m = _smooth((dist - 1) * length + 0.01 * nz, aa)
        vein = 1 - 0.3 * _smooth(np.abs(lv) - 0.004, aa)
        leaf = np.float32([0.12, 0.33, 0.09]) * ((1 + 0.3 * nz) * vein)[..., None] * rng.uniform(0.5, 1.0)
        paint(win, m, leaf, 0.05)
    return cover


# --- the whole photo ----------------------------------------------------------------------------------

def render(seed: int, cls: str, index: int, size: int = 128, version: int = VERSION) -> tuple[np.ndarray, int]:
    """Render one photo as RGB uint8 [size, size, 3] (before JPEG) and the JPEG quality to save it with.

    `version` picks the generator: every version in VERSIONS stays reproducible by seed (4 is the original
    look, byte for byte; 5 adds irregular charring, clutter, cast shadows, lens and mixed light)."""
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r}; expected one of {CLASSES}")
    if version == 4:
        return _render_v4(_rng(seed, CLASSES.index(cls), index), cls, size)
    if version == 5:
        return _render_v5(_rng(seed, CLASSES.index(cls), index, salt=5), cls, size)
    raise ValueError(f"unknown generator version {version!r}; expected one of {VERSIONS}")


def _render_v4(rng: np.random.Generator, cls: str, size: int) -> tuple[np.ndarray, int]:
    """Version 4: the original look (a clean disc on a surface, geometric bake layouts)."""
    h = w = int(size)
    s = float(size)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + np.float32(0.5)

    # Pose: centre, radius, ellipticity (camera tilt), rotation.
    r = s * rng.uniform(0.30, 0.44)
    cx, cy = s / 2 + rng.uniform(-0.08, 0.08) * s, s / 2 + rng.uniform(-0.08, 0.08) * s
    tilt = rng.uniform(0.72, 1.0)
    rot = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = (math.cos(rot) * dx + math.sin(rot) * dy) / r
    v = (-math.sin(rot) * dx + math.cos(rot) * dy) / (r * tilt)
    phi = np.arctan2(v, u)
    table = np.linspace(-np.pi, np.pi, 257, dtype=np.float32)
    table = sum(rng.uniform(0, 0.02) * np.cos(k * table + rng.uniform(0, 2 * np.pi)) for k in range(2, 7))
    wobble = table[((phi + np.pi) * (256 / (2 * np.pi))).astype(np.int32)]
    d = np.sqrt(u * u + v * v) / (1 + wobble)
    aa = 1.5 / r  # one and a half pixels in pizza units

    light = rng.uniform(0, 2 * np.pi)
    lx, ly = math.cos(light), math.sin(light)

    # Background: a surface, maybe a plate, and the pizza's soft shadow.
    bg = _SURFACES[rng.integers(len(_SURFACES))](rng, yy, xx, s)
    if rng.random() < 0.45:
        pr = rng.uniform(1.08, 1.25)
        pd = np.sqrt(u * u + v * v) / pr
        plate = _smooth(pd - 1, aa / pr)
        rim = np.clip((pd - 0.82) / 0.18, 0, 1)
        pc = np.float32([0.93, 0.92, 0.89]) * rng.uniform(0.85, 1.02)
        shade = 1 - 0.12 * rim * (0.5 + 0.5 * (u * lx + v * ly) / (np.sqrt(u * u + v * v) + 1e-6))
        bg = bg * (1 - plate[..., None]) + (pc * shade[..., None]) * plate[..., None]
    sh = np.sqrt((u + 0.08 * lx) ** 2 + (v + 0.08 * ly) ** 2)
    bg = bg * (1 - 0.35 * np.clip(1.12 - sh, 0, 0.25)[..., None] / 0.25)

    # Pizza: bake field, base colours and textures.
    n_tex = fractal_noise(rng, h, w, base=12, octaves=3)
    n_bub = fractal_noise(rng, h, w, base=20, octaves=2)
    b = _bake_field(rng, cls, u, v, d, phi, h, w)
    crust_w = rng.uniform(0.12, 0.22)
    n_lo_ring = fractal_noise(rng, h, w, base=5, octaves=2)
    crust = _smooth(d - 1, aa)
    inner = _smooth(d - (1 - crust_w), aa)
    ring = crust * (1 - inner)

    n_fine = fractal_noise(rng, h, w, base=32, octaves=2)
    # Cheese: mottled melt, browned bubbles on any bake, sauce showing through in patches.
    cheese_b = b + 0.12 * n_fine + 0.4 * np.clip(n_bub - 0.3, 0, None)
    cheese = _ramp(cheese_b, _CHEESE) * (1 + 0.10 * n_tex + 0.06 * n_fine)[..., None]
    sauce_amt = np.clip((fractal_noise(rng, h, w, base=6, octaves=3) - rng.uniform(0.1, 0.5)) * 3, 0, 1)
    sauce_col = np.float32([0.70, 0.20, 0.08]) * np.clip(1.25 - 0.55 * b, 0.2, 1)[..., None]
    top = cheese * (1 - sauce_amt[..., None] * 0.75) + sauce_col * sauce_amt[..., None] * 0.75
    height = 0.25 * n_tex + 0.3 * np.clip(n_bub, 0, None) + 0.15 * n_fine
    cover = _toppings(rng, _Frame(cx, cy, r, tilt, rot, (h, w)), u, v, aa, n_fine, top, height)
    # Toppings bake too: darken them where the surface is dark.
    top = top * (1 - cover[..., None] * np.clip(b - 1.0, 0, 0.7)[..., None])

    # Crust: matte bread with darker blistered tops and flour specks.
    ring_pos = np.clip((d - (1 - crust_w)) / crust_w, 0, 1)
    puff = np.sin(np.pi * ring_pos) * (1 + 0.4 * n_lo_ring)
    crust_b = b + 0.1 + 0.25 * n_tex + 0.15 * n_fine + 0.25 * np.clip(n_bub, 0, None) * puff
    crust_col = _ramp(crust_b, _CRUST) * (1 + 0.08 * n_fine[..., None])
    flour = np.clip(n_fine * 4 - 2.2, 0, 0.6) * ring * rng.uniform(0, 1)
    crust_col = crust_col * (1 - flour[..., None]) + np.float32(0.92) * flour[..., None]
    height = height * inner + ring * (1.0 * puff + 0.3 * n_fine)
    pizza = top * inner[..., None] + crust_col * ring[..., None]

    # Cut lines between slices on half the pizzas (all classes, so they are not a class cue).
    if rng.random() < 0.5:
        k = int(rng.integers(3, 5))
        off = rng.uniform(0, np.pi / k)
        dist_line = np.abs(np.sin((phi - off) * k)) * np.sqrt(u * u + v * v)
        cut = _smooth(dist_line - 0.006, aa) * inner
        pizza = pizza * (1 - 0.45 * cut[..., None])

    # Relief shading from the height field.
    gy, gx = np.gradient(_blur(height, 0.8) * r * 0.025)
    lz = 0.8
    shade = (lz + lx * -gx + ly * -gy) / np.sqrt(1 + gx * gx + gy * gy) / lz
    pizza = pizza * np.clip(shade, 0.6, 1.35)[..., None]
    spec = np.clip(shade - 1.1, 0, None) * inner * (1 - cover)
    pizza = pizza + spec[..., None] * 0.2

    img = bg * (1 - crust[..., None]) + pizza * crust[..., None]

    # Camera: lighting gradient and vignette, white balance, exposure, blur, sensor noise.
    grad = 1 + rng.uniform(0.05, 0.25) * ((xx - s / 2) * lx + (yy - s / 2) * ly) / s
    vig = 1 - rng.uniform(0.0, 0.35) * (((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (s * s / 2))
    img = img * (grad * vig)[..., None]
    img = img * (1 + rng.uniform(-0.06, 0.06, 3).astype(np.float32)) * np.float32(rng.uniform(0.8, 1.15))
    img = _blur(img, rng.uniform(0.3, 0.9) * s / 128)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.004, 0.025))
    img = np.clip(img, 0, 1)
    return (img * 255 + 0.5).astype(np.uint8), int(rng.integers(60, 93))


# --- version 5: less shortcut -------------------------------------------------------------------------
# Everything below is shared by all classes except _bake_field_v5: clutter, dark and pale objects, cast
# shadows, lens and mixed light appear with the same odds for every class, so none of them is a class cue.

def _sample(field: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """field displaced by (dy, dx) pixels (nearest neighbour, edges clamped): a domain warp of a pixel-grid field."""
    h, w = field.shape
    iy = np.clip((np.arange(h, dtype=np.float32)[:, None] + dy + 0.5).astype(np.int32), 0, h - 1)
    ix = np.clip((np.arange(w, dtype=np.float32)[None, :] + dx + 0.5).astype(np.int32), 0, w - 1)
    return field[iy, ix]


def _inside_quantile(field: np.ndarray, inside: np.ndarray, q: float) -> float:
    vals = field[inside]
    return float(np.quantile(vals, q)) if vals.size else 0.0


def _bake_field_v5(rng, cls: str, u, v, d, h, w, s) -> np.ndarray:
    """Doneness b (see _bake_field) with irregular layouts: warped boundaries, varied reach, size and shape."""
    n_lo = fractal_noise(rng, h, w, base=3, octaves=3)
    n_hi = fractal_noise(rng, h, w, base=10, octaves=3)
    # Warp fields: n_lo flipped and shifted (cheap, and unlike the n_lo that shades b).
    wu = np.roll(n_lo[::-1, ::-1], (h // 3, w // 4), axis=(0, 1))
    wv = np.roll(n_lo, (h // 2, w // 3), axis=(0, 1))
    amp = rng.uniform(0.12, 0.3)
    uw, vw = u + amp * wu + 0.04 * n_hi, v + amp * wv + 0.04 * n_hi  # the pizza frame, warped
    inside = d < 0.97
    golden = rng.uniform(0.42, 0.66)
    b = golden + 0.09 * n_lo + 0.06 * n_hi
    if cls == "basic":
        return b
    if cls == "burnt":
        # Most of the surface dark brown to black, in patches: islands that are only brown, some near-black.
        patchy = fractal_noise(rng, h, w, base=int(rng.integers(2, 6)), octaves=4, gain=0.6)
        level = rng.uniform(1.25, 1.6)
        b = level + rng.uniform(0.35, 0.6) * patchy + 0.1 * n_hi
        lo = _inside_quantile(b, inside, 0.3)  # at least 70 % of the pizza dark brown or darker (b >= 1.15)
        return b + max(0.0, 1.15 - lo)
    if cls == "combined":
        # Several scattered charred blotches: warped, of varied size and elongation, some merging in clusters.
        spots = np.zeros_like(b)
        n = int(rng.integers(4, 12))
        scale = min(1.0, math.sqrt(6.0 / n))
        centres: list[tuple[float, float]] = []
        for j in range(n):
            if centres and rng.random() < 0.3:
                pu, pv = centres[int(rng.integers(len(centres)))]
                a, gap = rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.22)
                su, sv = pu + gap * math.cos(a), pv + gap * math.sin(a)
            else:
                r, a = math.sqrt(rng.random()) * 0.86, rng.uniform(0, 2 * np.pi)
                su, sv = r * math.cos(a), r * math.sin(a)
            centres.append((su, sv))
            rad = rng.uniform(0.12 if j == 0 else 0.07, 0.2) * scale  # the first one clearly visible
            el = rng.uniform(1.0, 2.3) ** 0.5
            ang = rng.uniform(0, np.pi)
            du, dv = uw - su, vw - sv
            lu = (math.cos(ang) * du + math.sin(ang) * dv) / (rad * el)
            lv = (-math.sin(ang) * du + math.cos(ang) * dv) * el / rad
            dist = np.sqrt(lu * lu + lv * lv) + rng.uniform(0.3, 0.6) * n_hi
            spots = np.maximum(spots, np.clip(1.3 - dist, 0, 1) ** rng.uniform(0.5, 0.9) * rng.uniform(0.85, 1.1))
        return b + spots * rng.uniform(1.1, 1.35)
    if cls == "mixed":
        # Irregular pale (under-baked) regions next to baked ones, no char; 25-60 % pale.
        pale = fractal_noise(rng, h, w, base=int(rng.integers(2, 6)), octaves=4, gain=0.55)
        k = rng.uniform(4, 14) * s / 128
        pale = _sample(pale, k * wv, k * wu)
        thr = _inside_quantile(pale, inside, rng.uniform(0.4, 0.75))
        mask = np.clip((pale - thr) * rng.uniform(4, 10) + 0.5, 0, 1)
        baked = b + rng.uniform(0.05, 0.25)
        return baked * (1 - mask) + (rng.uniform(0.0, 0.14) + 0.05 * n_hi) * mask
    if cls == "progression":
        # Browning that grows from one edge to the other; the front is curved (heat from a point at some
        # distance beyond the edge) and wavy, the profile steeper or gentler.
        ang = rng.uniform(0, 2 * np.pi)
        src = rng.uniform(1.15, 5.0)
        su, sv = src * math.cos(ang), src * math.sin(ang)
        near = np.sqrt((uw - su) ** 2 + (vw - sv) ** 2)
        t = np.clip((src + 1 - near) / 2 + rng.uniform(0, 0.1), 0, 1)  # 1 at the nearest edge, 0 at the far one
        lo, hi = rng.uniform(0.05, 0.3), rng.uniform(1.5, 1.8)
        return lo + (hi - lo) * t ** rng.uniform(0.75, 1.3) + 0.1 * n_lo + 0.05 * n_hi
    if cls == "segment":
        # One slice sharply charred: a wedge with wavy edges, varied angular width, from near (not always at)
        # the centre, sometimes starting part-way out, reaching the crust or stopping short of it.
        ra, aa_ = rng.uniform(0, 0.12), rng.uniform(0, 2 * np.pi)
        au, av = ra * math.cos(aa_), ra * math.sin(aa_)
        du, dv = uw - au, vw - av
        rad = np.sqrt(du * du + dv * dv)
        centre = rng.uniform(-np.pi, np.pi)
        half = math.radians(rng.uniform(20, 55)) * (1 + 0.25 * n_lo)
        off = np.abs((np.arctan2(dv, du) - centre + np.pi) % (2 * np.pi) - np.pi)
        sector = np.clip((half - off) * np.maximum(rad, 0.2) * rng.uniform(7, 16) + 0.5, 0, 1)
        r_in = 0.0 if rng.random() < 0.6 else rng.uniform(0.1, 0.3)
        reach = rng.uniform(0.85, 1.15) + 0.1 * wu
        radial = np.clip((rad - r_in) * 8 + 0.5, 0, 1) * np.clip((reach - d) * 10 + 0.5, 0, 1)
        return b + sector * radial * (rng.uniform(1.3, 1.65) - golden + 0.18 * n_hi)
    raise ValueError(f"unknown class {cls!r}")


_STEP = 4  # windows are searched on every _STEP-th pixel


def _window(a, b, ca, cb, rad, tol):
    """Pixel window (row and column slices) holding every pixel whose (a, b) lies within rad of (ca, cb) in
    both axes. a, b: maps subsampled by _STEP; tol: the map of how far (a, b) move over _STEP + 1 pixels."""
    r = tol + rad
    m = (np.abs(a - ca) < r) & (np.abs(b - cb) < r)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if rows.size == 0:
        return None
    return (slice(max(0, int(rows[0]) * _STEP - _STEP), int(rows[-1]) * _STEP + _STEP + 1),
            slice(max(0, int(cols[0]) * _STEP - _STEP), int(cols[-1]) * _STEP + _STEP + 1))


class _WarpFrame:
    """_Frame for a warped camera: the window of a pizza-frame point is found from the (u, v) maps themselves."""

    def __init__(self, u, v, tol):
        self.u, self.v, self.tol = u[::_STEP, ::_STEP], v[::_STEP, ::_STEP], tol

    def window(self, pu, pv, rad):
        win = _window(self.u, self.v, pu, pv, rad, self.tol)
        return (slice(0, 0), slice(0, 0)) if win is None else win


def _camera_v5(rng, s, xx, yy):
    """Table-plane coordinates (X right, Y away from the camera) of every pixel, in units of the pizza radius,
    through mild barrel distortion and a tilted pinhole camera of varied field of view; and the pizza radius
    in pixels at the image centre."""
    half = s / 2
    fov = math.radians(rng.uniform(36, 78))
    f = half / math.tan(fov / 2)
    k1 = rng.uniform(0.0, 0.14)
    tmax = min(math.radians(56), math.atan(0.5 / math.tan(fov / 2)))  # the far edge stays well below the horizon
    theta = tmax * rng.random() ** 0.7
    r_pix = s * rng.uniform(0.29, 0.42) * (1 - 0.25 * math.sin(theta) * math.tan(fov / 2))
    dist = f / r_pix
    xn, yn = (xx - half) / half, (yy - half) / half
    undist = 1 + k1 * (xn * xn + yn * yn)
    a, b = xn * undist * (half / f), -yn * undist * (half / f)
    ct, st = math.cos(theta), math.sin(theta)
    t = dist * ct / (ct - b * st)
    return t * a, -dist * st + t * (st + b * ct), r_pix


def _sd_box(x, y, hx, hy, round_=0.0):
    qx, qy = np.abs(x) - hx + round_, np.abs(y) - hy + round_
    return np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2) + np.minimum(np.maximum(qx, qy), 0) - round_


def _clutter(rng, bg, px, py, aa_map, L, clear):
    """Objects on the table beside the pizza, partly in frame, each with its soft shadow: a dark pan, a knife,
    cutlery, a pale napkin or bowl; and crumbs. px, py: table coordinates centred on the pizza (radii).
    Every object is drawn only inside its own pixel window."""
    h, w = px.shape
    px_s, py_s = px[::_STEP, ::_STEP], py[::_STEP, ::_STEP]
    tol = aa_map[::_STEP, ::_STEP] * ((_STEP + 2) / 1.5)
    kinds = ("pan", "knife", "cutlery", "napkin", "bowl")
    n = int(rng.choice([0, 1, 1, 2, 2, 3]))
    for kind in [kinds[int(i)] for i in rng.choice(len(kinds), size=n, replace=False)]:
        ang = rng.uniform(0, 2 * np.pi)
        near = clear + rng.uniform(0.0, 0.45)
        shadow_k = rng.uniform(0.3, 0.55)
        if kind == "pan":
            R = rng.uniform(0.8, 1.5)
            dist, beta, extent = near + R, ang, R + 1.3
            lift = rng.uniform(0.08, 0.16)
            metal = np.float32([0.07, 0.07, 0.08]) * rng.uniform(0.6, 1.6)
        elif kind == "knife":
            Lb, hw, hl = rng.uniform(0.9, 1.5), rng.uniform(0.05, 0.08), rng.uniform(0.45, 0.7)
            dist, beta, extent = near + 0.12, ang + np.pi / 2 + rng.uniform(-0.5, 0.5), Lb + hl
            lift = rng.uniform(0.03, 0.1)
            steel = np.float32([0.72, 0.73, 0.75]) * rng.uniform(0.7, 1.05)
            hcol = np.float32([0.05, 0.05, 0.05]) if rng.random() < 0.6 else np.float32([0.35, 0.2, 0.1])
        elif kind == "cutlery":
            hl, fork = rng.uniform(0.6, 0.9), rng.random() < 0.5
            dist, beta, extent = near + 0.12, ang + np.pi / 2 + rng.uniform(-0.6, 0.6), hl + 0.4
            lift = rng.uniform(0.02, 0.05)
            silver = np.float32([0.78, 0.78, 0.8]) * rng.uniform(0.75, 1.05)
        elif kind == "napkin":
            hx, hy = rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.9)
            dist, beta, extent = near + max(hx, hy) * 0.8, rng.uniform(0, 2 * np.pi), math.hypot(hx, hy)
            lift = rng.uniform(0.01, 0.025)
            pale = np.float32([[0.95, 0.95, 0.93], [0.96, 0.92, 0.82], [0.90, 0.88, 0.80], [0.86, 0.90, 0.95]])
            base = pale[int(rng.integers(len(pale)))] * rng.uniform(0.9, 1.05)
            fold_x, fold_y = rng.uniform(-0.3, 0.3) * hx, rng.uniform(-0.3, 0.3)
        else:  # bowl
            R = rng.uniform(0.4, 0.8)
            dist, beta, extent = near + R, 0.0, R
            lift = rng.uniform(0.1, 0.2)
            base = np.float32([0.93, 0.92, 0.88]) * rng.uniform(0.85, 1.05)
        cxo, cyo = dist * math.cos(ang), dist * math.sin(ang)
        win = _window(px_s, py_s, cxo, cyo, extent + 2 * lift + 0.1, tol)
        if win is None:
            continue
        dx, dy = px[win] - cxo, py[win] - cyo
        cb, sb = math.cos(beta), math.sin(beta)
        x0, y0 = cb * dx + sb * dy, -sb * dx + cb * dy
        lo = (cb * L[0] + sb * L[1], -sb * L[0] + cb * L[1])  # the light direction in the object's frame
        aa = aa_map[win]

        def sdf(o):  # signed distance to the object's outline, the outline moved by o away from the light
            x, y = x0 + o * lo[0], y0 + o * lo[1]
            if kind == "pan":
                return np.minimum(np.sqrt(x * x + y * y) - R, _sd_box(x - R - 0.55, y, 0.6, 0.07, 0.05))
            if kind == "knife":
                tp = np.clip((x - Lb * 0.6) / (Lb * 0.4), 0, 1)
                blade = _sd_box(x - Lb / 2, y + hw * 0.5 * tp, Lb / 2, hw * (1 - 0.85 * tp))
                return np.minimum(blade, _sd_box(x + hl / 2, y, hl / 2, hw * 1.1, hw * 0.8))
            if kind == "cutlery":
                handle = _sd_box(x + hl / 2, y, hl / 2, 0.035, 0.03)
                if fork:
                    head = _sd_box(x - 0.17, y, 0.17, 0.09, 0.03)
                    tines = (np.abs(((y + 0.09) / 0.18 * 4) % 1 - 0.5) > 0.3) & (x > 0.12)
                    head = np.where(tines, np.maximum(head, 0.02), head)
                else:
                    head = np.sqrt(((x - 0.17) / 1.5) ** 2 + y * y) - 0.1
                return np.minimum(handle, head)
            if kind == "napkin":
                return _sd_box(x, y, hx, hy, 0.03)
            return np.sqrt(x * x + y * y) - R

        if kind == "pan":
            rr = np.sqrt(x0 * x0 + y0 * y0)
            rim = np.clip((rr - R * 0.9) / (R * 0.1), 0, 1) * (rr < R * 1.02)
            facing = np.clip((x0 * lo[0] + y0 * lo[1]) / (rr + 1e-3), 0, 1)
            col = metal * (1 + 2.5 * rim * (0.4 + facing) + 0.4 * (1 - facing) * (rr < R * 0.9))[..., None]
        elif kind == "knife":
            sheen = 1 + 0.35 * np.clip(y0 / hw, -1, 1)
            col = np.where((x0 < 0)[..., None], hcol, steel * sheen[..., None])
        elif kind == "cutlery":
            col = silver * (1 + 0.3 * np.sin(y0 * 40))[..., None]
        elif kind == "napkin":
            fold = 1 - 0.12 * _smooth(np.abs(x0 - fold_x) - 0.01, 0.03)
            col = base * (fold * (1 + 0.06 * np.clip((y0 - fold_y) * 3, -1, 1)))[..., None]
        else:
            shade = np.clip((x0 * lo[0] + y0 * lo[1]) / R, -1, 1)  # the inside is darker on the lit side
            bowl_in = np.sqrt(x0 * x0 + y0 * y0) < R * 0.86
            col = base * np.where(bowl_in, 0.82 - 0.12 * shade, 1.0 + 0.05 * shade)[..., None]
        shadow = _smooth(sdf(lift), aa + lift * 1.5)
        m = _smooth(sdf(0.0), aa)
        bw = bg[win] * (1 - shadow_k * shadow)[..., None]
        bg[win] = bw * (1 - m[..., None]) + col * m[..., None]
    if rng.random() < 0.5:  # crumbs, in pixel space (too small for perspective to matter)
        n = int(rng.integers(5, 30))
        cy_, cx_ = rng.integers(0, h, 96), rng.integers(0, w, 96)
        rr = np.sqrt(px[cy_, cx_] ** 2 + py[cy_, cx_] ** 2)
        keep = np.flatnonzero((rr > clear - 0.05) & (rr < clear + 0.9))[:n]
        rad_px = rng.uniform(0.008, 0.03, 96) * 1.5 / aa_map[cy_, cx_]
        tone = rng.integers(0, 4, 96)
        gain = rng.uniform(0.85, 1.1, 96)
        for j in keep:
            y, x, r = int(cy_[j]), int(cx_[j]), float(rad_px[j])
            ys = slice(max(0, y - int(r) - 2), min(h, y + int(r) + 3))
            xs = slice(max(0, x - int(r) - 2), min(w, x + int(r) + 3))
            yg, xg = np.mgrid[ys, xs]
            m = _smooth(np.sqrt((yg - y) ** 2 + (xg - x) ** 2) - r, 1.5)[..., None]
            bg[ys, xs] = bg[ys, xs] * (1 - m) + _CRUST[tone[j]] * gain[j] * m
    return bg


def _cast_shadow(rng, xn, yn, h, w) -> np.ndarray:
    """Soft shadow of something outside the frame (a cupboard edge, a bottle, a hand), 0..1 over the image."""
    warp = fractal_noise(rng, h, w, base=2, octaves=2)
    g = rng.uniform(0, 2 * np.pi)
    along = math.cos(g) * xn + math.sin(g) * yn + rng.uniform(0.1, 0.3) * warp
    soft = rng.uniform(0.04, 0.35)
    kind = rng.integers(3)
    if kind == 0:  # an edge: one side in shade
        sd = rng.uniform(-0.7, 0.5) - along
    elif kind == 1:  # a bar across the scene
        sd = np.abs(along - rng.uniform(-0.6, 0.6)) - rng.uniform(0.08, 0.3)
    else:  # a blob entering from a side
        c = rng.uniform(0.8, 1.3)
        across = -math.sin(g) * xn + math.cos(g) * yn
        sd = np.sqrt(((along - c) / rng.uniform(0.5, 0.9)) ** 2 + (across / rng.uniform(0.4, 0.9)) ** 2) - 1 \
            + 0.1 * warp
    return _smooth(sd, soft)


def _tint(tau: float) -> np.ndarray:
    """White-balance gains of a light of colour temperature tau (-1 = cold daylight, +1 = warm tungsten)."""
    g = np.float32([1 + 0.14 * tau, 1 + 0.01 * tau, 1 - 0.2 * tau])
    return g / np.float32(0.299 * g[0] + 0.587 * g[1] + 0.114 * g[2])


def _render_v5(rng: np.random.Generator, cls: str, size: int) -> tuple[np.ndarray, int]:
    """Version 5: version 4's textures, toppings, plates and camera noise, plus a perspective camera with
    barrel distortion, irregular charring, clutter, cast shadows and two lights of different colour."""
    h = w = int(size)
    s = float(size)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + np.float32(0.5)
    xn, yn = (xx - s / 2) / (s / 2), (yy - s / 2) / (s / 2)

    # Camera and pose: the table plane through the lens, the pizza somewhere near the middle, rotated.
    X, Y, r_pix = _camera_v5(rng, s, xx, yy)
    ox, oy = (float(o) * s / r_pix for o in rng.uniform(-0.08, 0.08, 2))
    px, py = X - ox, Y - oy
    rot = rng.uniform(0, 2 * np.pi)
    u = math.cos(rot) * px + math.sin(rot) * py
    v = -math.sin(rot) * px + math.cos(rot) * py
    phi = np.arctan2(v, u)
    table = np.linspace(-np.pi, np.pi, 257, dtype=np.float32)
    table = sum(rng.uniform(0, 0.025) * np.cos(k * table + rng.uniform(0, 2 * np.pi)) for k in range(2, 7))
    wobble = table[((phi + np.pi) * (256 / (2 * np.pi))).astype(np.int32)]
    d = np.sqrt(u * u + v * v) / (1 + wobble)
    gy_x, gx_x = np.gradient(X)
    gy_y, gx_y = np.gradient(Y)
    aa_map = 1.5 * np.sqrt(np.maximum(gx_x ** 2 + gx_y ** 2, gy_x ** 2 + gy_y ** 2))  # 1.5 px in pizza units
    aa = 1.5 / r_pix

    light = rng.uniform(0, 2 * np.pi)
    lx, ly = math.cos(light), math.sin(light)
    L = (lx, -ly)  # the light direction on the table (image y runs against table Y)

    # Background: a surface seen through the same camera, maybe a plate, clutter, the pizza's soft shadow.
    bg = _SURFACES[rng.integers(len(_SURFACES))](rng, Y * r_pix, X * r_pix, s)
    clear = 1.08
    if rng.random() < 0.45:
        pr = rng.uniform(1.08, 1.25)
        pd = np.sqrt(px * px + py * py) / pr
        plate = _smooth(pd - 1, aa_map / pr)
        rim = np.clip((pd - 0.82) / 0.18, 0, 1)
        pc = np.float32([0.93, 0.92, 0.89]) * rng.uniform(0.85, 1.02)
        shade = 1 - 0.12 * rim * (0.5 + 0.5 * (px * L[0] + py * L[1]) / (np.sqrt(px * px + py * py) + 1e-6))
        bg = bg * (1 - plate[..., None]) + (pc * shade[..., None]) * plate[..., None]
        clear = pr + 0.04
    bg = _clutter(rng, bg, px, py, aa_map, L, clear)
    sh = np.sqrt((px + 0.08 * L[0]) ** 2 + (py + 0.08 * L[1]) ** 2)
    bg = bg * (1 - 0.35 * np.clip(1.12 - sh, 0, 0.25)[..., None] / 0.25)

    # Pizza: bake field, ragged char, base colours and textures (as in version 4).
    n_tex = fractal_noise(rng, h, w, base=12, octaves=3)
    n_bub = fractal_noise(rng, h, w, base=20, octaves=2)
    b = _bake_field_v5(rng, cls, u, v, d, h, w, s)
    n_rag = np.roll(n_tex, (h // 3, w // 2), axis=(0, 1))
    # Ragged char (every class alike): blistered black and dark-brown mottling wherever the bake is dark.
    b = b + np.clip((b - 0.95) / 0.35, 0, 1) * (0.45 * n_rag + 0.15 * np.clip(n_rag * 3 - 1, 0, 1))
    crust_w = rng.uniform(0.12, 0.22)
    n_lo_ring = fractal_noise(rng, h, w, base=5, octaves=2)
    crust = _smooth(d - 1, aa_map)
    inner = _smooth(d - (1 - crust_w), aa_map)
    ring = crust * (1 - inner)

    n_fine = fractal_noise(rng, h, w, base=32, octaves=2)
    cheese_b = b + 0.12 * n_fine + 0.4 * np.clip(n_bub - 0.3, 0, None)
    cheese = _ramp(cheese_b, _CHEESE) * (1 + 0.10 * n_tex + 0.06 * n_fine)[..., None]
    sauce_amt = np.clip((fractal_noise(rng, h, w, base=6, octaves=3) - rng.uniform(0.1, 0.5)) * 3, 0, 1)
    sauce_col = np.float32([0.70, 0.20, 0.08]) * np.clip(1.25 - 0.55 * b, 0.2, 1)[..., None]
    top = cheese * (1 - sauce_amt[..., None] * 0.75) + sauce_col * sauce_amt[..., None] * 0.75
    height = 0.25 * n_tex + 0.3 * np.clip(n_bub, 0, None) + 0.15 * n_fine
    tol = aa_map[::_STEP, ::_STEP] * ((_STEP + 2) / 1.5)
    cover = _toppings(rng, _WarpFrame(u, v, tol), u, v, aa, n_fine, top, height)
    top = top * (1 - cover[..., None] * np.clip(b - 1.0, 0, 0.7)[..., None])

    ring_pos = np.clip((d - (1 - crust_w)) / crust_w, 0, 1)
    puff = np.sin(np.pi * ring_pos) * (1 + 0.4 * n_lo_ring)
    crust_b = b + 0.1 + 0.25 * n_tex + 0.15 * n_fine + 0.25 * np.clip(n_bub, 0, None) * puff
    crust_col = _ramp(crust_b, _CRUST) * (1 + 0.08 * n_fine[..., None])
    flour = np.clip(n_fine * 4 - 2.2, 0, 0.6) * ring * rng.uniform(0, 1)
    crust_col = crust_col * (1 - flour[..., None]) + np.float32(0.92) * flour[..., None]
    height = height * inner + ring * (1.0 * puff + 0.3 * n_fine)
    pizza = top * inner[..., None] + crust_col * ring[..., None]

    if rng.random() < 0.5:
        k = int(rng.integers(3, 5))
        off = rng.uniform(0, np.pi / k)
        dist_line = np.abs(np.sin((phi - off) * k)) * np.sqrt(u * u + v * v)
        cut = _smooth(dist_line - 0.006, aa_map) * inner
        pizza = pizza * (1 - 0.45 * cut[..., None])

    gy, gx = np.gradient(_blur(height, 0.8) * r_pix * 0.025)
    lz = 0.8
    shade = (lz + lx * -gx + ly * -gy) / np.sqrt(1 + gx * gx + gy * gy) / lz
    pizza = pizza * np.clip(shade, 0.6, 1.35)[..., None]
    spec = np.clip(shade - 1.1, 0, None) * inner * (1 - cover)
    pizza = pizza + spec[..., None] * 0.2

    img = bg * (1 - crust[..., None]) + pizza * crust[..., None]

    # Light: a soft shadow from outside the frame, two lights of different colour across the image,
    # gradient and vignette, white balance, exposure; then the camera's blur and sensor noise.
    if rng.random() < 0.55:
        shadow = _cast_shadow(rng, xn, yn, h, w) * rng.uniform(0.2, 0.5)
        img = img * (1 - shadow[..., None] * np.float32([1.05, 1.0, 0.9]))
    tau1 = rng.uniform(-0.8, 0.8)
    tau2 = float(np.clip(tau1 + rng.choice([-1, 1]) * rng.uniform(0.3, 1.4), -1, 1))
    g = rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:  # two lights left and right, say, meeting in a soft band
        mix = np.clip(0.5 + (math.cos(g) * xn + math.sin(g) * yn - rng.uniform(-0.5, 0.5)) / rng.uniform(0.6, 2.5),
                      0, 1)
    else:  # a lamp's pool of light
        cxl, cyl = rng.uniform(0.3, 1.2) * math.cos(g), rng.uniform(0.3, 1.2) * math.sin(g)
        mix = np.exp(-((xn - cxl) ** 2 + (yn - cyl) ** 2) / rng.uniform(0.3, 1.5))
    mix = mix * rng.uniform(0.3, 1.0)
    i2 = rng.uniform(0.85, 1.15)
    light_map = _tint(tau1) * (1 - mix[..., None]) + _tint(tau2) * (i2 * mix[..., None])
    img = img * light_map
    grad = 1 + rng.uniform(0.05, 0.25) * ((xx - s / 2) * lx + (yy - s / 2) * ly) / s
    vig = 1 - rng.uniform(0.0, 0.35) * (((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (s * s / 2))
    img = img * (grad * vig)[..., None]
    img = img * (1 + rng.uniform(-0.05, 0.05, 3).astype(np.float32)) * np.float32(rng.uniform(0.75, 1.2))
    img = _blur(img, rng.uniform(0.3, 0.9) * s / 128)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.004, 0.025))
    img = np.clip(img, 0, 1)
    return (img * 255 + 0.5).astype(np.uint8), int(rng.integers(60, 93))


def generate_jpeg(seed: int, cls: str, index: int, size: int = 128, version: int = VERSION) -> bytes:
    """The photo as JPEG bytes (the compression artefacts are part of the look)."""
    arr, quality = render(seed, cls, index, size, version)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def generate(seed: int, cls: str, index: int, size: int = 128, version: int = VERSION) -> np.ndarray:
    """One photo after the JPEG round trip, RGB uint8 [size, size, 3]."""
    return np.asarray(Image.open(io.BytesIO(generate_jpeg(seed, cls, index, size, version))).convert("RGB"))
