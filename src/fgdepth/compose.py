"""Placement and compositing: pure functions from (background, foreground, placement) to a sample.

Two ways to place a person:

* ``random`` (the reference's): a height drawn from a range, any position that keeps the sprite inside the image;
  the person's depth is the background's depth at the ground-contact point.
* ``geometry`` (the procedural world's default): the person stands on a visible floor point; its image height is
  ``fy * height_m / Z``; per-pixel depth is the anchor's depth plus the body's own relief, tilted with the
  camera's pitch; nearer furniture hides what lies behind it; a soft contact shadow darkens the floor.

Arrays are numpy HWC (uint8 images, float32 depth in metres, 0 = unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import cv2
import numpy as np

from fgdepth.scene import Background, Foreground
from fgdepth.sources import premultiplied_pyramid, premultiply, resize_premultiplied_float

PlacementMode = Literal["random", "geometry"]
PLACEMENT_MODES = ("random", "geometry")

MIN_HEIGHT_PX = 12  # smaller people carry no usable mask signal at 224 px
MIN_HEAD_DEPTH_RATIO = 0.6  # geometry placement: the head's depth is at least this fraction of the feet's


_CAMOUFLAGE_FIELDS = ("camouflage", "camouflage_top", "camouflage_bottom")


@dataclass(frozen=True)
class Placement:
    """Where and how one sprite is pasted (all in background pixels)."""

    x: int  # left column of the scaled sprite (may be < 0 in geometry mode: clipped)
    y: int  # top row of the scaled sprite
    width: int  # scaled sprite size
    height: int
    anchor_x: float  # ground-contact point in the background
    anchor_y: float
    person_depth: float  # depth at the ground-contact point (metres or relative units; 0 = unknown)
    gain: float = 1.0  # brightness of the person (light differs across the room)
    shadow: float = 0.0  # contact-shadow strength in [0, 1)
    # > 0: a band of the person's rows takes the colour of the room behind it (see camouflage): the strength, and
    # the band's top and bottom as fractions of the sprite's height
    camouflage: float = 0.0
    camouflage_top: float = 0.0
    camouflage_bottom: float = 1.0

    def to_dict(self) -> dict:
        # fields() rather than asdict(): the same dict without asdict's deep copies (~0.2 ms a sample)
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values}
        # records (and datasets) without camouflage stay as they were before it existed
        if not self.camouflage:
            for k in _CAMOUFLAGE_FIELDS:
                del d[k]
        return d


@dataclass
class Composed:
    """composite: (H, W, 3) uint8; mask: (H, W) bool visible person; depth: (H, W) float32 or None."""

    composite: np.ndarray
    mask: np.ndarray
    depth: np.ndarray | None


def _height_px(rng: np.random.Generator, height_range: tuple[float, float], bg_h: int) -> float:
    lo, hi = height_range
    if not 0 < lo <= hi:
        raise ValueError(f"foreground height range must satisfy 0 < lo <= hi, got {height_range}")
    h = rng.uniform(lo, hi)
    return h * bg_h if hi <= 1.0 else h  # fractions of the background height, or pixels


def sample_random_placement(
    rng: np.random.Generator,
    fg: Foreground,
    bg: Background,
    height_range: tuple[float, float] = (0.35, 0.65),
) -> Placement:
    """The reference's placement: a random height, anywhere inside the image."""
    bg_h, bg_w = bg.size
    fh, fw = fg.size
    height = min(max(_height_px(rng, height_range, bg_h), MIN_HEIGHT_PX), bg_h)
    s = height / fh
    if fw * s > bg_w:  # a very wide cut-out: fit the width instead
        s = bg_w / fw
    w, h = max(1, round(fw * s)), max(1, round(fh * s))
    x = int(rng.integers(0, bg_w - w + 1))
    y = int(rng.integers(0, bg_h - h + 1))
    ax, ay = x + fg.anchor[0] * s, y + fg.anchor[1] * s
    depth = 0.0
    if bg.depth is not None:
        u = int(np.clip(round(ax), 0, bg_w - 1))
        v = int(np.clip(round(ay), 0, bg_h - 1))
        depth = float(bg.depth[v, u])
    return Placement(x, y, w, h, float(ax), float(ay), depth)


def floor_candidates(bg: Background) -> np.ndarray:
    """Flat indices of the pixels where a person may stand. (N,) int64."""
    if bg.floor_mask is None or bg.depth is None:
        raise ValueError("geometry placement needs a background with a floor mask and depth")
    return np.flatnonzero(bg.floor_mask.ravel() & (bg.depth.ravel() > 0))


def sample_geometry_placement(
    rng: np.random.Generator,
    fg: Foreground,
    bg: Background,
    candidates: np.ndarray | None = None,
    tries: int = 30,
) -> Placement:
    """A person standing on a visible floor point, at the camera's scale.

    Rejects points where the person would be tiny (< MIN_HEIGHT_PX), lose more than a third of their body above
    the image's top edge, or be so near a downward-looking camera that the head's depth falls under
    MIN_HEAD_DEPTH_RATIO of the feet's. Falls back to the best point seen if every try fails.
    """
    if not bg.has_geometry:
        raise ValueError("geometry placement needs intrinsics, floor plane, floor mask and depth")
    if fg.height_m is None or fg.px_per_m is None:
        raise ValueError("geometry placement needs a foreground with height_m and px_per_m")
    cand = floor_candidates(bg) if candidates is None else candidates
    if cand.size == 0:
        raise ValueError("background has no visible floor to stand on")
    bg_h, bg_w = bg.size
    fy = bg.intrinsics[1]
    fh, fw = fg.size
    best: tuple[float, Placement] | None = None
    for _ in range(tries):
        # the nearer of two floor points: uniform pixels over-sample far, tiny people
        a, b = (int(cand[i]) for i in rng.integers(0, cand.size, size=2))
        flat = a if bg.depth.flat[a] <= bg.depth.flat[b] else b
        v, u = divmod(flat, bg_w)
        z = float(bg.depth[v, u])
        s = fy / (z * fg.px_per_m)  # sprite pixels -> image pixels
        w, h = max(1, round(fw * s)), max(1, round(fh * s))
        ax, ay = u + rng.uniform(-0.5, 0.5), v + rng.uniform(-0.5, 0.5)
        # the anchor's position in the resized sprite: the scales the resize really applies (after rounding the
        # size) and its pixel-centre convention (sprite coordinate a lands at (a + 0.5) * scale - 0.5)
        x = round(ax - ((fg.anchor[0] + 0.5) * w / fw - 0.5))
        y = round(ay - ((fg.anchor[1] + 0.5) * h / fh - 0.5))
        p = Placement(
            x,
            y,
            w,
            h,
            float(ax),
            float(ay),
            z,
            gain=float(rng.uniform(0.7, 1.15)),
            shadow=float(rng.uniform(0.15, 0.5)),
        )
        cut_top = max(0, -y) / h
        # one scale for the whole sprite holds while the head is not much nearer than the feet (a camera looking
        # down at someone close would otherwise give the head a depth near zero)
        head_z = z + float(bg.floor_plane[2]) * fg.height_m
        too_near = max(0.0, MIN_HEAD_DEPTH_RATIO - head_z / z)
        score = (
            cut_top
            + (MIN_HEIGHT_PX / h if h < MIN_HEIGHT_PX else 0)
            + (h / bg_h if h > bg_h else 0)
            + too_near
        )
        if h >= MIN_HEIGHT_PX and cut_top <= 1 / 3 and h <= bg_h and not too_near:
            return p
        if best is None or score < best[0]:
            best = (score, p)
    return best[1]


def person_depth_map(
    fg: Foreground, bg: Background, p: Placement, sprite_depth_offset: np.ndarray | None
) -> np.ndarray:
    """Depth of every scaled sprite pixel: the anchor's depth, plus the tilt of an upright body seen by a pitched
    camera (``n_z`` metres of z per metre of height), plus the body's own relief. (h, w) float32."""
    depth = np.full((p.height, p.width), p.person_depth, np.float32)
    if bg.floor_plane is not None and fg.px_per_m is not None:
        s = p.height / fg.size[0]
        rows = np.arange(p.height, dtype=np.float32) + p.y - p.anchor_y  # image rows relative to the anchor
        height_above_floor = -rows / (fg.px_per_m * s)
        depth += (bg.floor_plane[2] * height_above_floor)[:, None].astype(np.float32)
    if sprite_depth_offset is not None:
        depth += sprite_depth_offset
    return np.maximum(depth, 1e-3)


def _contact_shadow(image: np.ndarray, bg: Background, p: Placement) -> np.ndarray:
    """Darken a soft ellipse of floor under the feet (not part of the mask: shadows are not people)."""
    bg_h, bg_w = bg.size
    rx = max(2.0, 0.45 * p.width)
    ry = max(1.0, 0.25 * rx)
    x0, x1 = int(max(0, np.floor(p.anchor_x - 3 * rx))), int(min(bg_w, np.ceil(p.anchor_x + 3 * rx) + 1))
    y0, y1 = int(max(0, np.floor(p.anchor_y - 3 * ry))), int(min(bg_h, np.ceil(p.anchor_y + 3 * ry) + 1))
    if x0 >= x1 or y0 >= y1:
        return image
    # separable: exp(-(a + b)) = exp(-a) * exp(-b), two 1-D exps instead of one per pixel
    gx = np.exp(-0.5 * ((np.arange(x0, x1, dtype=np.float32) - np.float32(p.anchor_x)) / np.float32(rx)) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1, dtype=np.float32) - np.float32(p.anchor_y)) / np.float32(ry)) ** 2)
    g = gy[:, None] * gx[None, :]
    if bg.floor_mask is not None:
        g *= bg.floor_mask[y0:y1, x0:x1]
    out = image.copy()
    region = out[y0:y1, x0:x1].astype(np.float32) * (1.0 - p.shadow * g)[..., None]
    out[y0:y1, x0:x1] = np.rint(region).astype(np.uint8)
    return out


def sample_camouflage(rng: np.random.Generator) -> dict[str, float]:
    """Placement fields of a camouflaged person: a band of 30-100 % of the body from a random row down (a shirt,
    trousers, or all of them), moved 50-100 % of the way to the room's colour, its own contrast flattened by as
    much (at most halved)."""
    top = float(rng.uniform(0.0, 0.6))
    return {
        "camouflage": float(rng.uniform(0.5, 1.0)),
        "camouflage_top": top,
        "camouflage_bottom": min(1.0, top + float(rng.uniform(0.3, 1.0))),
    }


def camouflage(
    over: np.ndarray,
    alpha: np.ndarray,
    under: np.ndarray,
    strength: float,
    band: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """The person's premultiplied colour ``over`` with a band of rows recoloured like the room behind it.

    Where a person's clothes match the background, a model that learnt pixel difference leaves holes (the brief's
    prototype did on real photographs). In the band, each pixel's colour c becomes
    ``mu + k (c - mu) + strength (local - mu)``: mu the band's mean colour, ``local`` the background behind the
    pixel blurred by ``sigma`` (the wall above, the floor below), k = 1 - strength / 2 (flatter cloth); the band's
    shading and texture, the outline's blend (alpha) and the rest of the body stay.

    Shape:
        over: (h, w, 3) float32 premultiplied colour (alpha * rgb, 0-255); alpha: (h, w) float32 in [0, 1]
        under: (h, w, 3) float32, the background behind; band: (h,) float32 row weights in [0, 1]
        -> (h, w, 3) float32 premultiplied, within [0, 255 * alpha]
    """
    total = float((alpha * band[:, None]).sum())
    if total < 1.0 or strength <= 0:
        return over
    rgb_sum = (over * band[:, None, None]).reshape(-1, 3).sum(0)
    mu = (rgb_sum / total).astype(np.float32)  # the band's mean colour (alpha-weighted)
    local = cv2.GaussianBlur(under, (0, 0), sigmaX=max(sigma, 0.5), borderType=cv2.BORDER_REFLECT)
    k = np.float32(1.0 - 0.5 * strength)
    a = alpha[..., None]
    change = (k - 1) * (over - a * mu) + np.float32(strength) * a * (local - mu)
    out = over + band[:, None, None] * change
    return np.clip(out, 0.0, 255.0 * a)


def band_weights(height: int, top: float, bottom: float) -> np.ndarray:
    """(height,) float32 row weights: 1 between the fractions ``top`` and ``bottom`` of the height, ramping to 0
    over 5 % of it on either side (cloth ends softly)."""
    rows = (np.arange(height, dtype=np.float32) + 0.5) / max(height, 1)
    ramp = np.float32(0.05)
    w = np.minimum((rows - top) / ramp + 1, (bottom - rows) / ramp + 1)
    return np.clip(w, 0.0, 1.0).astype(np.float32)


def compose(
    bg: Background,
    fg: Foreground,
    p: Placement,
    mode: PlacementMode = "random",
    premult: list[np.ndarray] | None = None,
) -> Composed:
    """Paste ``fg`` onto ``bg`` at ``p``.

    Alpha 0 leaves the background's pixel exactly; alpha 255 copies the foreground's exactly (but for a band that
    ``p.camouflage`` recolours like the room behind it: :func:`camouflage`). The mask is the
    visible pasted pixels with alpha > 0.5. In ``geometry`` mode, pixels where the scene is nearer than the person
    stay background (pixels and depth). ``premult``: ``premultiplied_pyramid(premultiply(fg.rgba))`` if the caller
    keeps it (the same result, less work when one sprite is pasted many times).
    """
    bg_h, bg_w = bg.size
    if premult is None:
        premult = premultiplied_pyramid(premultiply(fg.rgba))
    # blending stays premultiplied: out = under * (1 - a) + a * rgb, and the sprite already holds a * rgb
    sprite = resize_premultiplied_float(premult, (p.width, p.height))
    # clip the sprite to the image
    x0, y0 = max(p.x, 0), max(p.y, 0)
    x1, y1 = min(p.x + p.width, bg_w), min(p.y + p.height, bg_h)
    image = _contact_shadow(bg.rgb, bg, p) if (mode == "geometry" and p.shadow > 0) else bg.rgb
    mask = np.zeros((bg_h, bg_w), bool)
    depth = None if bg.depth is None else bg.depth.copy()
    if x0 >= x1 or y0 >= y1:
        return Composed(image.copy() if image is bg.rgb else image, mask, depth)
    sx0, sy0 = x0 - p.x, y0 - p.y
    crop = sprite[sy0 : sy0 + (y1 - y0), sx0 : sx0 + (x1 - x0)]
    alpha = crop[..., 3] * np.float32(1 / 255)
    over = crop[..., :3]  # premultiplied colour
    if (
        p.gain != 1.0
    ):  # brighter or darker person, each channel saturating at 255 (premultiplied: 255 * alpha)
        over = np.minimum(over * np.float32(p.gain), crop[..., 3:4])
    person_depth = None
    if mode == "geometry" and bg.depth is not None:
        offset = None
        if fg.depth_offset is not None:
            offset = cv2.resize(fg.depth_offset, (p.width, p.height), interpolation=cv2.INTER_NEAREST)
        full = person_depth_map(fg, bg, p, offset)
        person_depth = full[sy0 : sy0 + (y1 - y0), sx0 : sx0 + (x1 - x0)]
        scene = bg.depth[y0:y1, x0:x1]
        in_front = (person_depth < scene) | (scene <= 0)
        alpha = alpha * in_front
        over = over * in_front[..., None]
    under = image[y0:y1, x0:x1].astype(np.float32)
    if p.camouflage > 0:
        band = band_weights(p.height, p.camouflage_top, p.camouflage_bottom)[sy0 : sy0 + (y1 - y0)]
        over = camouflage(over, alpha, under, p.camouflage, band, sigma=0.25 * p.width)
    blended = under * (1.0 - alpha)[..., None] + over
    out = image.copy() if image is bg.rgb else image
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    visible = alpha > 0.5
    mask[y0:y1, x0:x1] = visible
    if depth is not None:
        region = depth[y0:y1, x0:x1]
        if person_depth is not None:
            region[visible] = person_depth[visible]
        else:
            region[visible] = np.float32(p.person_depth)
    return Composed(out, mask, depth)
