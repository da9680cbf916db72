"""Procedural textures evaluated at world points, and small decal images (posters, windows, doors...).

Every texture is a pure function of surface coordinates in metres, so it has no resolution of its own and the
same material looks the same from any distance. Colours are linear floats in [0, 1], arrays are (N, 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# --- noise -------------------------------------------------------------------------------------------


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) from integer lattice coordinates (a 32-bit integer hash)."""
    with np.errstate(over="ignore"):
        h = ix.astype(np.int64).astype(np.uint32) * np.uint32(374761393)
        h += iy.astype(np.int64).astype(np.uint32) * np.uint32(668265263)
        h += np.uint32((seed * 1442695041) & 0xFFFFFFFF)
        h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
        h ^= h >> np.uint32(16)
    return h.astype(np.float64) / 4294967296.0


def cell_random(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """A random value per unit lattice cell containing (u, v)."""
    return _hash(np.floor(u), np.floor(v), seed)


def value_noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with features of size ~1 (lattice spacing 1)."""
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu = fu * fu * (3 - 2 * fu)
    fv = fv * fv * (3 - 2 * fv)
    a = _hash(iu, iv, seed)
    b = _hash(iu + 1, iv, seed)
    c = _hash(iu, iv + 1, seed)
    d = _hash(iu + 1, iv + 1, seed)
    return (a + (b - a) * fu) + ((c + (d - c) * fu) - (a + (b - a) * fu)) * fv


def fbm(u: np.ndarray, v: np.ndarray, seed: int, freq: float = 1.0, octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, in [0, 1]; ``freq`` = features per metre of the first octave."""
    total = np.zeros(np.shape(u))
    amp, norm = 1.0, 0.0
    for k in range(octaves):
        total += amp * value_noise(u * freq + 17.3 * k, v * freq - 9.1 * k, seed + 101 * k)
        norm += amp
        amp *= 0.5
        freq *= 2.03
    return total / norm


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


# --- materials ---------------------------------------------------------------------------------------

MATERIAL_KINDS = (
    "paint", "wood", "planks", "carpet", "tiles", "ceiling", "concrete", "fabric", "leaves", "metal", "books",
)  # fmt: skip


@dataclass
class Material:
    """A surface: ``kind`` in MATERIAL_KINDS, two colours, a pattern scale (metres), a seed, extra parameters."""

    kind: str
    color: np.ndarray
    color2: np.ndarray | None = None
    scale: float = 1.0
    seed: int = 0
    params: dict = field(default_factory=dict)


def surface_uv(pos: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Planar coordinates (metres) of points on axis-aligned-ish surfaces: drop the normal's dominant axis.

    Vertical surfaces get v = height, so patterns such as book spines and skirting boards stand upright.
    """
    ax = np.abs(normal).argmax(axis=-1)
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    u = np.where(ax == 0, z, x)
    v = np.where(ax == 1, z, y)
    return u, v


def albedo(mat: Material, pos: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) of ``mat`` at world points ``pos`` (N, 3) with normals ``normal`` (N, 3)."""
    u, v = surface_uv(pos, normal)
    c1 = np.asarray(mat.color, float)
    c2 = c1 * 0.7 if mat.color2 is None else np.asarray(mat.color2, float)
    s, seed, k = mat.scale, mat.seed, mat.kind
    if k == "paint":
        g = (
            1
            + 0.10 * (fbm(u, v, seed, 1.5 / s, 3) - 0.5)
            + 0.04 * (value_noise(u * 90, v * 90, seed + 1) - 0.5)
        )
        return c1 * g[:, None]
    if k == "wood":
        return _wood(u, v, c1, c2, s, seed, mat.params.get("along_v", False))
    if k == "planks":
        return _planks(u, v, c1, c2, s, seed)
    if k == "carpet":
        return _carpet(u, v, c1, c2, s, seed, mat.params.get("pattern", 0))
    if k == "tiles":
        return _tiles(u, v, c1, c2, s, seed)
    if k == "ceiling":
        gu, gv = np.abs((u / s) % 1 - 0.5), np.abs((v / s) % 1 - 0.5)
        line = np.maximum(_smoothstep(0.485, 0.497, gu), _smoothstep(0.485, 0.497, gv))
        speck = 0.12 * (value_noise(u * 140, v * 140, seed) - 0.5)
        return (c1 * (1 + speck)[:, None]) * (1 - line[:, None]) + c2 * line[:, None]
    if k == "concrete":
        g = fbm(u, v, seed, 2.0 / s, 4)
        spots = _smoothstep(0.75, 0.8, value_noise(u * 40, v * 40, seed + 3)) * 0.15
        return c1 * (0.8 + 0.4 * g - spots)[:, None]
    if k == "fabric":
        weave = 0.05 * np.sin(u * 900) * np.sin(v * 900)
        g = 1 + weave + 0.16 * (value_noise(u * 60, v * 60, seed) - 0.5) + 0.1 * (fbm(u, v, seed, 3, 2) - 0.5)
        return c1 * g[:, None]
    if k == "leaves":
        n = fbm(u * 1.0 + pos[:, 2] * 0.7, v, seed, 22.0 / s, 3)
        return np.where((n > 0.5)[:, None], c1, c2) * (0.7 + 0.6 * n)[:, None]
    if k == "metal":
        g = 1 + 0.05 * (value_noise(u * 200, v * 6, seed) - 0.5)
        return c1 * g[:, None]
    if k == "books":
        return _books(u, v, c1, c2, s, seed, mat.params.get("y0", 0.0), mat.params.get("row", 0.3))
    raise ValueError(f"unknown material kind {k!r}; valid: {', '.join(MATERIAL_KINDS)}")


def _wood(u, v, c1, c2, s, seed, along_v):
    a, b = (v, u) if along_v else (u, v)
    ring = b * 14.0 / s + 2.5 * fbm(a * 0.6, b * 5, seed, 1.0, 3)
    t = 0.5 + 0.5 * np.sin(ring * 2 * np.pi)
    streak = 0.12 * (value_noise(a * 8, b * 160, seed + 7) - 0.5)
    w = (t**3)[:, None]
    return (c1 * (1 - w) + c2 * w) * (1 + streak)[:, None]


def _planks(u, v, c1, c2, s, seed):
    width, length = 0.12 + 0.1 * s, 0.9 + 0.6 * s
    row = np.floor(v / width)
    off = _hash(row, row * 0 + 3, seed) * length
    a = u + off
    plank = np.floor(a / length)
    r = _hash(plank, row, seed + 1)
    base = c1 * (0.82 + 0.36 * r)[:, None]
    grain = _wood(a, v, np.ones(3), np.full(3, 0.75), 0.6, seed, False)[:, 0]
    gap = np.maximum(
        _smoothstep(0.46, 0.5, np.abs((v / width) % 1 - 0.5)),
        _smoothstep(0.48, 0.5, np.abs((a / length) % 1 - 0.5)),
    )
    col = base * grain[:, None]
    return col * (1 - gap[:, None]) + c2 * 0.4 * gap[:, None]


def _carpet(u, v, c1, c2, s, seed, pattern):
    tile = 0.5 * s
    tu, tv = np.floor(u / tile), np.floor(v / tile)
    shade = 1 + 0.07 * (_hash(tu, tv, seed) - 0.5) + 0.04 * ((tu + tv) % 2)
    fine = 0.3 * (value_noise(u * 250, v * 250, seed + 1) - 0.5) + 0.12 * (
        value_noise(u * 70, v * 70, seed + 2) - 0.5
    )
    mix = 0.5 + 0.8 * (fbm(u, v, seed + 3, 3.0, 3) - 0.5)
    if pattern == 1:  # stripes inside each tile, rotated on alternate tiles
        along = np.where((tu + tv) % 2 == 0, u, v)
        mix = _smoothstep(0.2, 0.5, np.abs(np.sin(along * np.pi / (0.04 * s))))
    elif pattern == 2:  # speckled two-tone
        mix = (value_noise(u * 120, v * 120, seed + 4) > 0.62).astype(float)
    col = c1 * (1 - mix)[:, None] + c2 * mix[:, None]
    return col * (shade * (1 + fine))[:, None]


def _tiles(u, v, c1, c2, s, seed):
    size = 0.3 + 0.3 * s
    gu, gv = u / size, v / size
    r = _hash(np.floor(gu), np.floor(gv), seed)
    grout = np.maximum(
        _smoothstep(0.47, 0.49, np.abs(gu % 1 - 0.5)), _smoothstep(0.47, 0.49, np.abs(gv % 1 - 0.5))
    )
    speck = 0.1 * (value_noise(u * 80, v * 80, seed + 1) - 0.5) + 0.08 * (fbm(u, v, seed + 2, 4, 2) - 0.5)
    col = c1 * (0.92 + 0.16 * r + speck)[:, None]
    return col * (1 - grout[:, None]) + c2 * grout[:, None]


def _books(u, v, c1, c2, s, seed, y0, row):
    # variable-width spines: a cell grid of 4 cm, each cell one book (hash decides colour and height)
    cell = np.floor(u / 0.032)
    r1, r2, r3 = _hash(cell, cell * 0, seed), _hash(cell, cell * 0 + 1, seed), _hash(cell, cell * 0 + 2, seed)
    palette = np.array(
        [[0.5, 0.08, 0.06], [0.08, 0.15, 0.4], [0.8, 0.75, 0.6], [0.1, 0.3, 0.12], [0.9, 0.9, 0.88],
         [0.1, 0.1, 0.1], [0.7, 0.45, 0.1], [0.35, 0.2, 0.35], [0.85, 0.6, 0.5], [0.3, 0.5, 0.6]]
    )  # fmt: skip
    col = palette[(r1 * len(palette)).astype(int)] * (0.7 + 0.5 * r2)[:, None]
    height = row * (0.6 + 0.38 * r3)
    local = v - y0
    present = (local < height) & (r2 > 0.12)
    edge = _smoothstep(0.40, 0.5, np.abs((u / 0.032) % 1 - 0.5))
    col = col * (1 - 0.5 * edge)[:, None]
    return np.where(present[:, None], col, c2 * 0.35)


# --- decal images ------------------------------------------------------------------------------------


def _rand_color(rng: np.random.Generator, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def poster_image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A framed poster / picture / chart: (h, w, 3) float in [0, 1]."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = _rand_color(rng, 0.1, 0.95)
    style = rng.integers(4)
    if style == 0:  # abstract blocks and circles
        for _ in range(rng.integers(3, 9)):
            c = tuple(float(x) for x in _rand_color(rng))
            x0, y0 = rng.integers(0, w), rng.integers(0, h)
            if rng.random() < 0.5:
                cv2.rectangle(
                    img,
                    (int(x0), int(y0)),
                    (int(x0 + rng.integers(4, w)), int(y0 + rng.integers(4, h))),
                    c,
                    -1,
                )
            else:
                cv2.circle(img, (int(x0), int(y0)), int(rng.integers(3, max(w, h) // 2)), c, -1)
    elif style == 1:  # landscape photo: sky, ground, blobs
        sky, ground = _rand_color(rng, 0.4, 0.95), _rand_color(rng, 0.05, 0.6)
        horizon = int(h * rng.uniform(0.3, 0.7))
        img[:horizon] = sky
        img[horizon:] = ground
        for _ in range(rng.integers(2, 7)):
            cv2.ellipse(img, (int(rng.integers(0, w)), horizon), (int(rng.integers(3, w // 2 + 4)), int(rng.integers(2, h // 3 + 3))),
                        0, 180, 360, tuple(float(x) for x in _rand_color(rng, 0.05, 0.5)), -1)  # fmt: skip
        img = cv2.GaussianBlur(img, (0, 0), 1.0)
    else:  # text / chart: title bar, lines of "text", maybe bars
        bar = tuple(float(x) for x in _rand_color(rng))
        cv2.rectangle(img, (0, 0), (w, max(2, h // 6)), bar, -1)
        ink = (0.1, 0.1, 0.1) if img[h // 2, w // 2].mean() > 0.45 else (0.92, 0.92, 0.92)
        y = h // 4
        while y < h - 3:
            x1 = int(w * rng.uniform(0.4, 0.92))
            cv2.line(img, (max(2, w // 12), y), (x1, y), ink, max(1, h // 60))
            y += max(3, h // int(rng.integers(8, 20)))
        if style == 3:
            for i in range(5):
                bh = int(rng.uniform(0.1, 0.4) * h)
                x = int(w * (0.15 + 0.15 * i))
                cv2.rectangle(img, (x, h - 4), (x + max(2, w // 12), h - 4 - bh), bar, -1)
    frame = max(1, min(w, h) // 25)
    fc = tuple(float(x) for x in (rng.choice([0.05, 0.9, 0.6]) * np.ones(3)))
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), fc, frame)
    return np.clip(img, 0, 1)


def whiteboard_image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A whiteboard with an aluminium frame and marker scribbles."""
    img = np.full((h, w, 3), rng.uniform(0.86, 0.97), np.float32)
    inks = [(0.05, 0.1, 0.5), (0.6, 0.05, 0.05), (0.05, 0.05, 0.05), (0.05, 0.4, 0.1)]
    for _ in range(rng.integers(0, 10)):
        n = int(rng.integers(2, 7))
        pts = np.stack([rng.integers(w // 10, w - w // 10, n), rng.integers(h // 10, h - h // 10, n)], 1)
        cv2.polylines(
            img, [pts.astype(np.int32)], False, inks[int(rng.integers(len(inks)))], max(1, w // 150)
        )
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (0.6, 0.62, 0.65), max(2, w // 60))
    return img


def window_image(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A window: (albedo-like colour, emission weight) each (h, w, 3)/(h, w). The view outside is emissive."""
    outside = np.zeros((h, w, 3), np.float32)
    sky_top, sky_bot = np.array([0.35, 0.55, 0.95]) * rng.uniform(0.6, 1.1), np.array([0.85, 0.9, 1.0])
    if rng.random() < 0.3:  # overcast
        sky_top = sky_bot = np.full(3, rng.uniform(0.75, 1.0))
    ramp = np.linspace(0, 1, h)[:, None, None]
    outside[:] = sky_top * (1 - ramp) + sky_bot * ramp
    horizon = int(h * rng.uniform(0.45, 1.1))
    for _ in range(rng.integers(0, 8)):  # buildings
        bw, bh = int(rng.integers(w // 10 + 1, w // 2 + 2)), int(rng.integers(h // 8, h))
        x = int(rng.integers(-bw // 2, w))
        cv2.rectangle(
            outside, (x, horizon - bh), (x + bw, h), tuple(float(c) for c in _rand_color(rng, 0.3, 0.8)), -1
        )
    for _ in range(rng.integers(0, 5)):  # trees
        cv2.circle(outside, (int(rng.integers(0, w)), horizon), int(rng.integers(h // 10 + 1, h // 3 + 2)),
                   tuple(float(c) for c in np.array([0.15, 0.35, 0.1]) * rng.uniform(0.5, 1.2)), -1)  # fmt: skip
    outside = cv2.GaussianBlur(outside, (0, 0), rng.uniform(0.3, 1.5))
    emit = np.ones((h, w), np.float32)
    if rng.random() < 0.35:  # venetian blinds
        pitch = max(2, h // int(rng.integers(12, 30)))
        rows = (np.arange(h) % pitch) < pitch * rng.uniform(0.4, 0.8)
        blind = _rand_color(rng, 0.6, 0.95)
        outside[rows] = blind
        emit[rows] = 0.25
    frame_col = np.full(3, rng.choice([0.9, 0.15, 0.5]))
    t = max(1, min(w, h) // 30)
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (0, 0), (w - 1, h - 1), 1, 2 * t)
    for k in range(1, int(rng.integers(1, 4))):
        x = w * k // int(rng.integers(2, 4))
        cv2.line(mask, (x, 0), (x, h), 1, t)
    if rng.random() < 0.5:
        cv2.line(mask, (0, h // 3), (w, h // 3), 1, t)
    outside[mask > 0] = frame_col
    emit[mask > 0] = 0.0
    return outside, emit


def door_image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A door with frame and handle; painted, wooden or with a glass panel."""
    img = np.empty((h, w, 3), np.float32)
    if rng.random() < 0.5:
        base = np.array([0.55, 0.36, 0.2]) * rng.uniform(0.5, 1.3)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        grain = 0.5 + 0.5 * np.sin(xx * 0.9 + 3 * np.sin(yy * 0.05))
        img[:] = base * (0.85 + 0.2 * grain[..., None])
    else:
        img[:] = _rand_color(rng, 0.2, 0.95)
    if rng.random() < 0.3:  # glass panel
        cv2.rectangle(img, (w // 4, h // 8), (3 * w // 4, h // 2), (0.55, 0.6, 0.65), -1)
    f = max(2, w // 12)
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), tuple(float(c) for c in _rand_color(rng, 0.1, 0.9)), f)
    hx, hy = int(w * 0.8), int(h * 0.52)
    cv2.rectangle(img, (hx - max(1, w // 12), hy - 1), (hx, hy + 1), (0.75, 0.75, 0.78), -1)
    return img


def screen_image(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, float]:
    """A monitor's screen: colour and emission strength (0 when switched off)."""
    if rng.random() < 0.35:
        return np.full((h, w, 3), 0.03, np.float32), 0.0
    img = np.empty((h, w, 3), np.float32)
    img[:] = rng.choice([0.95, 0.2, 0.5]) * np.array([1, 1, 1]) * rng.uniform(0.7, 1.0)
    for _ in range(rng.integers(1, 5)):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.rectangle(img, (x0, y0), (x0 + int(rng.integers(2, w)), y0 + int(rng.integers(2, h))),
                      tuple(float(c) for c in _rand_color(rng)), -1)  # fmt: skip
    cv2.rectangle(img, (0, 0), (w, max(1, h // 12)), tuple(float(c) for c in _rand_color(rng, 0.1, 0.5)), -1)
    return img, float(rng.uniform(0.4, 1.0))
