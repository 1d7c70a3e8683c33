"""Deterministic procedural pizza photos (six bake classes); hand-written because no pizza photo set is reachable offline.

Image i of class c depends only on (seed, class, i): each image gets its own numpy Generator seeded with
that triple, so any subset can be rendered in any order or in parallel with identical pixels.

The scene is built as a "doneness" field b over the pizza (0 = raw/pale, 0.5 = golden, 1 = brown,
>= 1.3 = charred). The class decides only how b is laid out; colours, textures, toppings, background,
lighting and camera effects are shared, so a classifier has to look at the bake pattern.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

# Bump when the look of the images changes, so cached data sets are regenerated.
VERSION = 4

CLASSES = ("basic", "burnt", "combined", "mixed", "progression", "segment")

# Colour ramps over doneness b at these control points (pale, golden, brown, dark, black).
_B_POINTS = np.float32([0.0, 0.5, 1.0, 1.3, 1.7])
_CHEESE = np.float32([[0.97, 0.94, 0.80], [0.95, 0.78, 0.40], [0.66, 0.40, 0.16], [0.28, 0.16, 0.08], [0.08, 0.06, 0.05]])
_CRUST = np.float32([[0.93, 0.85, 0.66], [0.86, 0.60, 0.30], [0.56, 0.31, 0.13], [0.25, 0.14, 0.07], [0.07, 0.05, 0.04]])


def _rng(seed: int, cls: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(cls), int(index), 0x9177A])


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

def render(seed: int, cls: str, index: int, size: int = 128) -> tuple[np.ndarray, int]:
    """Render one photo as RGB uint8 [size, size, 3] (before JPEG) and the JPEG quality to save it with."""
    if cls not in CLASSES:
        raise ValueError(f"unknown class {cls!r}; expected one of {CLASSES}")
    rng = _rng(seed, CLASSES.index(cls), index)
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


def generate_jpeg(seed: int, cls: str, index: int, size: int = 128) -> bytes:
    """The photo as JPEG bytes (the compression artefacts are part of the look)."""
    arr, quality = render(seed, cls, index, size)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def generate(seed: int, cls: str, index: int, size: int = 128) -> np.ndarray:
    """One photo after the JPEG round trip, RGB uint8 [size, size, 3]."""
    return np.asarray(Image.open(io.BytesIO(generate_jpeg(seed, cls, index, size))).convert("RGB"))
