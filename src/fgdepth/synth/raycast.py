"""Vectorised ray casting of a room (the inside of a box) and axis-aligned solids seen by a pinhole camera.

Solids are defined by their axis-aligned bounding box ``lo, hi`` (world metres) and a kind: ``box``,
``ellipsoid`` (inscribed in the box) or ``cylinder`` (vertical, elliptic, inscribed). Each solid is only tested
against the rays of its projected bounding rectangle, so small furniture costs little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgdepth.synth.camera import Camera

KINDS = ("box", "ellipsoid", "cylinder")
# index of the room's faces in Hits.index; solids follow from N_ROOM_FACES on
FLOOR, CEILING, WALL_X0, WALL_X1, WALL_Z0, WALL_Z1 = range(6)
N_ROOM_FACES = 6
_EPS = 1e-6


@dataclass
class Solid:
    """An axis-aligned solid: ``kind`` in KINDS, bounding box ``lo``/``hi`` (3,) in world metres."""

    kind: str
    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown solid kind {self.kind!r}; valid: {', '.join(KINDS)}")
        self.lo = np.asarray(self.lo, float)
        self.hi = np.asarray(self.hi, float)
        if np.any(self.hi <= self.lo):
            raise ValueError(f"solid needs hi > lo on every axis, got lo={self.lo}, hi={self.hi}")

    def corners(self) -> np.ndarray:
        """(8, 3) corners of the bounding box."""
        idx = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
        return np.where(idx == 1, self.hi, self.lo)


@dataclass
class Hits:
    """First hits of a grid of rays.

    Attributes:
        t: (h, w) float64 ray parameter = camera z-depth (metres); inf where nothing was hit.
        normal: (h, w, 3) float32 unit world normal facing the ray's origin side.
        index: (h, w) int32, the room face (0..5, see FLOOR...) or N_ROOM_FACES + solid index; -1 for a miss.
        position: (h, w, 3) float64 world hit point (undefined where missed).
    """

    t: np.ndarray
    normal: np.ndarray
    index: np.ndarray
    position: np.ndarray


# The intersection functions take the origin o (3,) and direction planes d (3, h, w) (no exact zeros) and
# return t (h, w) (inf = miss) and the normal planes (3, h, w) float32.


def _intersect_box(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    tn, tf = None, None
    axis_min = []
    for k in range(3):
        inv = 1.0 / d[k]
        t1, t2 = (lo[k] - o[k]) * inv, (hi[k] - o[k]) * inv
        tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
        axis_min.append(tmin)
        tn = tmin if tn is None else np.maximum(tn, tmin)
        tf = tmax if tf is None else np.minimum(tf, tmax)
    t = np.where((tn <= tf) & (tn > _EPS), tn, np.inf)
    normal = np.zeros(d.shape, np.float32)
    for k in (2, 1, 0):  # entry face: the axis whose slab is entered last
        on = axis_min[k] == tn
        normal[:, on] = 0.0
        normal[k][on] = -np.sign(d[k][on])
    return t, normal


def _intersect_ellipsoid(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    c = (lo + hi) / 2
    r = (hi - lo) / 2
    oc = (o - c) / r
    dd = d / r[:, None, None]
    a = (dd * dd).sum(0)
    b = (dd * oc[:, None, None]).sum(0)
    cc = float((oc * oc).sum() - 1.0)
    disc = b * b - a * cc
    ok = disc > 0
    t = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / a, np.inf)
    t = np.where(t > _EPS, t, np.inf)
    tz = np.where(np.isfinite(t), t, 0.0)
    n = (o[:, None, None] + tz * d - c[:, None, None]) / (r * r)[:, None, None]
    n /= np.maximum(np.sqrt((n * n).sum(0)), 1e-12)
    return t, n.astype(np.float32)


def _intersect_cylinder(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    c = (lo + hi) / 2
    r = (hi - lo) / 2
    ox, oz = (o[0] - c[0]) / r[0], (o[2] - c[2]) / r[2]
    dx, dz = d[0] / r[0], d[2] / r[2]
    a = dx * dx + dz * dz
    b = dx * ox + dz * oz
    cc = ox * ox + oz * oz - 1.0
    disc = b * b - a * cc
    ok = (disc > 0) & (a > 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / np.where(ok, a, 1.0), np.inf)
    ys = o[1] + ts * d[1]
    ts = np.where((ts > _EPS) & (ys >= lo[1]) & (ys <= hi[1]), ts, np.inf)
    t = ts
    tz = np.where(np.isfinite(ts), ts, 0.0)
    px, pz = (ox + tz * dx) / r[0], (oz + tz * dz) / r[2]
    norm = np.maximum(np.sqrt(px * px + pz * pz), 1e-12)
    normal = np.stack([px / norm, np.zeros_like(px), pz / norm]).astype(np.float32)
    # the cap facing the origin (if the origin is above the top or below the bottom)
    for y_cap, sign in ((hi[1], 1.0), (lo[1], -1.0)):
        if (o[1] - y_cap) * sign <= 0:
            continue
        tc = (y_cap - o[1]) / d[1]
        qx, qz = ox + tc * dx, oz + tc * dz
        good = (tc > _EPS) & (qx * qx + qz * qz <= 1.0) & (tc < t)
        t = np.where(good, tc, t)
        normal[:, good] = np.array([[0.0], [sign], [0.0]], np.float32)
    return t, normal


_INTERSECT = {"box": _intersect_box, "ellipsoid": _intersect_ellipsoid, "cylinder": _intersect_cylinder}


def intersect_room(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Exit point of rays (direction planes d (3, h, w)) starting inside the box [lo, hi]:
    (t, inward normal planes, face index)."""
    t = np.full(d.shape[1:], np.inf)
    face = np.zeros(d.shape[1:], np.int32)
    normal = np.zeros(d.shape, np.float32)
    faces = ((WALL_X0, WALL_X1), (FLOOR, CEILING), (WALL_Z0, WALL_Z1))
    for k in range(3):
        pos = d[k] > 0
        tk = (np.where(pos, hi[k], lo[k]) - o[k]) / d[k]
        closer = tk < t
        t = np.where(closer, tk, t)
        face = np.where(closer, np.where(pos, faces[k][1], faces[k][0]), face)
        normal[:, closer] = 0.0
        normal[k][closer] = np.where(pos[closer], -1.0, 1.0)
    return t, normal, face


def _pixel_rect(camera: Camera, solid: Solid, s: int, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    """Rows/columns of the supersampled grid whose rays may hit the solid; None if it is off-screen."""
    u, v, z = camera.project(solid.corners())
    h, w = shape
    if np.all(z <= 0):  # behind the camera
        return None
    if np.any(z < 1e-3):  # straddles the camera plane: test every ray
        return slice(0, h), slice(0, w)
    j0 = int(np.floor((u.min() + 0.5) * s - 0.5)) - 1
    j1 = int(np.ceil((u.max() + 0.5) * s - 0.5)) + 2
    i0 = int(np.floor((v.min() + 0.5) * s - 0.5)) - 1
    i1 = int(np.ceil((v.max() + 0.5) * s - 0.5)) + 2
    j0, j1, i0, i1 = max(j0, 0), min(j1, w), max(i0, 0), min(i1, h)
    if j0 >= j1 or i0 >= i1:
        return None
    return slice(i0, i1), slice(j0, j1)


def raycast(
    camera: Camera,
    solids: list[Solid],
    room: tuple[np.ndarray, np.ndarray] | None = None,
    supersample: int = 1,
) -> Hits:
    """Cast the camera's pixel rays (s x s per pixel, see Camera.pixel_grid) into a scene.

    Args:
        camera: the camera; its size sets the output grid (H*s, W*s).
        solids: axis-aligned solids; Hits.index of solid k is N_ROOM_FACES + k.
        room: (lo, hi) of the room's inner box, which must contain the camera; None for open space.
        supersample: s, sub-pixels per pixel along each axis.
    """
    u, v = camera.pixel_grid(supersample)
    d = np.moveaxis(camera.ray_directions(u, v), -1, 0).copy()  # (3, H, W) planes: fast per-axis arithmetic
    d[np.abs(d) < 1e-12] = 1e-12  # no exact zeros: keeps the slab test free of 0 * inf
    o = camera.position
    shape = u.shape
    if room is not None:
        t, normal, index = intersect_room(o, d, np.asarray(room[0], float), np.asarray(room[1], float))
    else:
        t = np.full(shape, np.inf)
        normal = np.zeros((3,) + shape, np.float32)
        index = np.full(shape, -1, np.int32)
    for k, solid in enumerate(solids):
        rect = _pixel_rect(camera, solid, supersample, shape)
        if rect is None:
            continue
        tk, nk = _INTERSECT[solid.kind](o, d[:, rect[0], rect[1]], solid.lo, solid.hi)
        closer = tk < t[rect]
        t[rect][closer] = tk[closer]
        normal[:, rect[0], rect[1]][:, closer] = nk[:, closer]
        index[rect][closer] = N_ROOM_FACES + k
    position = o + np.where(np.isfinite(t), t, 0.0)[..., None] * np.moveaxis(d, 0, -1)
    normal = np.ascontiguousarray(np.moveaxis(normal, 0, -1))
    return Hits(t=t, normal=normal, index=index, position=position)
