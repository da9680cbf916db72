"""Procedural offices: a random room with furniture, rendered by a random pinhole camera.

``render_room(seed)`` lays out a room (see ``layout_room``), casts supersampled rays for the colour and one ray per
output pixel centre for the exact depth, shades with Lambertian lights, ambient occlusion from a top-down
occupancy map, emissive windows / screens / ceiling panels, and finishes with camera effects (white balance,
vignetting, blur, noise). Everything is numpy; one room at 224 px takes a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from fgdepth.scene import Background
from fgdepth.synth import textures as tx
from fgdepth.synth.camera import Camera
from fgdepth.synth.raycast import (
    CEILING,
    FLOOR,
    N_ROOM_FACES,
    WALL_X0,
    WALL_X1,
    WALL_Z0,
    WALL_Z1,
    Solid,
    raycast,
)

FLOOR_MARGIN_M = 0.3  # floor_mask keeps this distance from the walls
_AO_CELL = 0.05  # metres per cell of the top-down occupancy map
_AO_LEVELS = np.array([0.0, 0.25, 0.5, 0.78, 1.05, 1.4, 1.9, 2.6, 5.0])


@dataclass
class Decal:
    """A textured rectangle on one face of a surface (a wall, or a solid's face).

    ``index`` is the Hits.index of the surface, ``axis``/``sign`` the face normal, ``rect`` = (u0, u1, v0, v1) in
    ``textures.surface_uv`` coordinates; ``emission`` (h, w) weights how much of the image glows.
    """

    index: int
    axis: int
    sign: float
    rect: tuple[float, float, float, float]
    image: np.ndarray
    emission: np.ndarray | None = None
    strength: float = 0.0


@dataclass
class Light:
    position: np.ndarray
    color: np.ndarray
    power: float
    facing: np.ndarray  # unit direction of the emitting hemisphere's axis


@dataclass
class Room:
    """A laid-out room: the inner box, solids with materials, decals, lights and ambient light."""

    size: np.ndarray  # (3,) x width, y height, z depth; the room is [0, size]
    faces: list[tx.Material]  # 6 materials, indexed like the room faces
    solids: list[Solid] = field(default_factory=list)
    materials: list[tx.Material] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)  # furniture group of each solid
    decals: list[Decal] = field(default_factory=list)
    lights: list[Light] = field(default_factory=list)
    ambient: np.ndarray = field(default_factory=lambda: np.full(3, 0.3))
    skirting: tuple[float, np.ndarray] = (0.0, np.zeros(3))  # height, colour
    wainscot: tuple[float, np.ndarray] | None = None  # lower wall colour up to a height


# --- palettes ----------------------------------------------------------------------------------------

_WALL = [(0.85, 0.84, 0.8), (0.92, 0.92, 0.9), (0.8, 0.78, 0.7), (0.7, 0.75, 0.78), (0.75, 0.8, 0.7),
         (0.6, 0.62, 0.65), (0.9, 0.85, 0.72), (0.55, 0.3, 0.25), (0.3, 0.4, 0.55), (0.85, 0.7, 0.55)]  # fmt: skip
_WOOD = [(0.6, 0.42, 0.25), (0.75, 0.6, 0.42), (0.4, 0.25, 0.15), (0.85, 0.75, 0.6), (0.5, 0.35, 0.22)]
_NEUTRAL = [(0.9, 0.9, 0.88), (0.2, 0.2, 0.22), (0.5, 0.5, 0.52), (0.7, 0.7, 0.68), (0.08, 0.08, 0.09),
            (0.78, 0.74, 0.66)]  # fmt: skip
_FABRIC = [(0.15, 0.15, 0.17), (0.25, 0.3, 0.45), (0.5, 0.12, 0.1), (0.35, 0.35, 0.37), (0.2, 0.4, 0.35),
           (0.6, 0.5, 0.35), (0.75, 0.45, 0.1), (0.4, 0.42, 0.5)]  # fmt: skip
_CARPET = [(0.3, 0.32, 0.36), (0.45, 0.42, 0.38), (0.25, 0.28, 0.35), (0.5, 0.5, 0.5), (0.35, 0.25, 0.2),
           (0.2, 0.3, 0.28), (0.55, 0.5, 0.42), (0.15, 0.15, 0.18)]  # fmt: skip


def _pick(rng: np.random.Generator, palette, jitter: float = 0.08) -> np.ndarray:
    c = np.asarray(palette[int(rng.integers(len(palette)))], float)
    return np.clip(c * rng.uniform(1 - jitter, 1 + jitter, 3) * rng.uniform(0.85, 1.15), 0.02, 0.98)


def _floor_material(rng: np.random.Generator) -> tx.Material:
    seed = int(rng.integers(1 << 30))
    kind = rng.choice(["carpet", "carpet", "planks", "tiles", "concrete"])
    if kind == "carpet":
        c = _pick(rng, _CARPET)
        return tx.Material("carpet", c, c * rng.uniform(0.6, 1.3, 3), rng.uniform(0.8, 1.4), seed,
                           {"pattern": int(rng.integers(3))})  # fmt: skip
    if kind == "planks":
        return tx.Material("planks", _pick(rng, _WOOD + [(0.6, 0.6, 0.58)]), None, rng.uniform(0, 1), seed)
    if kind == "tiles":
        c = _pick(rng, _NEUTRAL + [(0.6, 0.55, 0.45)])
        return tx.Material("tiles", c, c * rng.uniform(0.5, 0.9), rng.uniform(0, 1), seed)
    return tx.Material("concrete", _pick(rng, [(0.55, 0.55, 0.53), (0.45, 0.44, 0.42)]), None, 1.0, seed)


# --- layout ------------------------------------------------------------------------------------------


class _Builder:
    """Accumulates solids into a Room, with a top-down occupancy grid to keep furniture from overlapping."""

    def __init__(self, room: Room, rng: np.random.Generator, keep_clear: tuple[float, float, float]):
        self.room, self.rng = room, rng
        nx, nz = int(np.ceil(room.size[0] / 0.1)), int(np.ceil(room.size[2] / 0.1))
        self.occ = np.zeros((nz, nx), bool)
        self.keep_clear = keep_clear  # (x, z, radius) around the camera
        self.group = 0

    def free(self, x0: float, z0: float, x1: float, z1: float) -> bool:
        sx, sz = self.room.size[0], self.room.size[2]
        if x0 < 0 or z0 < 0 or x1 > sx or z1 > sz:
            return False
        cx, cz, r = self.keep_clear
        if (max(x0 - cx, 0, cx - x1) ** 2 + max(z0 - cz, 0, cz - z1) ** 2) < r * r:
            return False
        return not self.occ[
            int(z0 / 0.1) : int(np.ceil(z1 / 0.1)), int(x0 / 0.1) : int(np.ceil(x1 / 0.1))
        ].any()

    def claim(self, x0: float, z0: float, x1: float, z1: float) -> None:
        self.occ[int(z0 / 0.1) : int(np.ceil(z1 / 0.1)), int(x0 / 0.1) : int(np.ceil(x1 / 0.1))] = True
        self.group += 1

    def add(self, kind: str, lo, hi, mat: tx.Material) -> int:
        self.room.solids.append(Solid(kind, lo, hi))
        self.room.materials.append(mat)
        self.room.groups.append(self.group)
        return N_ROOM_FACES + len(self.room.solids) - 1

    def mat(self, kind: str, color, color2=None, scale: float = 1.0, **params) -> tx.Material:
        return tx.Material(
            kind, np.asarray(color, float), color2, scale, int(self.rng.integers(1 << 30)), params
        )


def _oriented(x: float, z: float, w: float, d: float, facing: int) -> tuple[float, float, float, float]:
    """Footprint (x0, z0, x1, z1) of a w (side to side) x d (front to back) object centred at (x, z);
    ``facing`` 0..3 = the user side is +z, -z, +x, -x."""
    if facing in (2, 3):
        w, d = d, w
    return x - w / 2, z - d / 2, x + w / 2, z + d / 2


def _desk(b: _Builder, x: float, z: float, facing: int, with_chair: bool = True) -> bool:
    rng = b.rng
    w, d = rng.uniform(1.0, 1.8), rng.uniform(0.6, 0.85)
    chair_depth = 0.75 if with_chair else 0.0
    # footprint includes the chair area on the user side
    fx0, fz0, fx1, fz1 = _oriented(x, z, w, d, facing)
    ext = {
        0: (0, 0, 0, chair_depth),
        1: (0, -chair_depth, 0, 0),
        2: (0, 0, chair_depth, 0),
        3: (-chair_depth, 0, 0, 0),
    }[facing]
    if not b.free(fx0 + ext[0], fz0 + ext[1], fx1 + ext[2], fz1 + ext[3]):
        return False
    top_h = rng.uniform(0.71, 0.77)
    top_mat = b.mat("wood", _pick(rng, _WOOD + _NEUTRAL[:1]), None, rng.uniform(0.6, 1.5)) if rng.random() < 0.6 else \
        b.mat("paint", _pick(rng, _NEUTRAL))  # fmt: skip
    b.add("box", (fx0, top_h - 0.03, fz0), (fx1, top_h, fz1), top_mat)
    leg_mat = b.mat("metal", _pick(rng, _NEUTRAL))
    if rng.random() < 0.5:  # four legs
        for lx in (fx0 + 0.03, fx1 - 0.07):
            for lz in (fz0 + 0.03, fz1 - 0.07):
                b.add("box", (lx, 0, lz), (lx + 0.04, top_h - 0.03, lz + 0.04), leg_mat)
    else:  # side panels and a modesty panel
        if facing in (0, 1):
            b.add("box", (fx0 + 0.02, 0, fz0 + 0.02), (fx0 + 0.05, top_h - 0.03, fz1 - 0.02), leg_mat)
            b.add("box", (fx1 - 0.05, 0, fz0 + 0.02), (fx1 - 0.02, top_h - 0.03, fz1 - 0.02), leg_mat)
            zb = fz0 + 0.05 if facing == 0 else fz1 - 0.07
            b.add("box", (fx0 + 0.05, 0.3, zb), (fx1 - 0.05, top_h - 0.03, zb + 0.02), leg_mat)
        else:
            b.add("box", (fx0 + 0.02, 0, fz0 + 0.02), (fx1 - 0.02, top_h - 0.03, fz0 + 0.05), leg_mat)
            b.add("box", (fx0 + 0.02, 0, fz1 - 0.05), (fx1 - 0.02, top_h - 0.03, fz1 - 0.02), leg_mat)
    # monitor(s), keyboard, clutter
    cx, cz = (fx0 + fx1) / 2, (fz0 + fz1) / 2
    back = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}[facing]
    n_mon = int(rng.choice([0, 1, 1, 2]))
    for k in range(n_mon):
        off = (k - (n_mon - 1) / 2) * 0.58
        sw, sh = rng.uniform(0.45, 0.6), rng.uniform(0.28, 0.36)
        mx = cx + back[0] * (d / 2 - 0.2) + (off if facing in (0, 1) else 0)
        mz = cz + back[1] * (d / 2 - 0.2) + (off if facing in (2, 3) else 0)
        y0 = top_h + rng.uniform(0.08, 0.15)
        half = (sw / 2, 0.015) if facing in (0, 1) else (0.015, sw / 2)
        idx = b.add(
            "box",
            (mx - half[0], y0, mz - half[1]),
            (mx + half[0], y0 + sh, mz + half[1]),
            b.mat("metal", (0.04, 0.04, 0.05)),
        )
        b.add(
            "box",
            (mx - 0.03, top_h, mz - 0.03),
            (mx + 0.03, y0 + 0.05, mz + 0.03),
            b.mat("metal", (0.1, 0.1, 0.1)),
        )
        axis, sign = (
            (2, 1.0) if facing == 0 else (2, -1.0) if facing == 1 else (0, 1.0) if facing == 2 else (0, -1.0)
        )
        lo, hi = b.room.solids[-2].lo, b.room.solids[-2].hi
        u0, u1 = (lo[2], hi[2]) if axis == 0 else (lo[0], hi[0])
        img, strength = tx.screen_image(rng, 48, 30)
        bez = 0.012
        b.room.decals.append(
            Decal(
                idx,
                axis,
                sign,
                (u0 + bez, u1 - bez, y0 + bez, y0 + sh - bez),
                img,
                np.ones(img.shape[:2], np.float32),
                strength,
            )
        )
    if rng.random() < 0.7:  # keyboard / papers / laptop
        kx, kz = cx - back[0] * 0.1 + rng.uniform(-0.2, 0.2), cz - back[1] * 0.1 + rng.uniform(-0.2, 0.2)
        kw = rng.uniform(0.25, 0.45)
        b.add("box", (kx - kw / 2, top_h, kz - kw / 3), (kx + kw / 2, top_h + rng.uniform(0.01, 0.03), kz + kw / 3),
              b.mat("paint", _pick(rng, _NEUTRAL)))  # fmt: skip
    if rng.random() < 0.3:  # mug / lamp / pen pot
        px, pz = rng.uniform(fx0 + 0.1, fx1 - 0.1), rng.uniform(fz0 + 0.1, fz1 - 0.1)
        b.add(
            "cylinder",
            (px - 0.04, top_h, pz - 0.04),
            (px + 0.04, top_h + rng.uniform(0.09, 0.3), pz + 0.04),
            b.mat("paint", tx._rand_color(rng)),
        )
    if rng.random() < 0.35:  # drawer pedestal under the desk
        px = fx1 - 0.5 if facing in (0, 1) else cx - 0.2
        pz = cz - 0.2 if facing in (0, 1) else fz1 - 0.5
        b.add("box", (px, 0.02, pz), (px + 0.4, 0.6, pz + 0.4), leg_mat)
    if with_chair:
        front = (-back[0], -back[1])
        ox, oz = (
            cx + front[0] * (d / 2 + rng.uniform(0.15, 0.45)),
            cz + front[1] * (d / 2 + rng.uniform(0.15, 0.45)),
        )
        ox += rng.uniform(-0.2, 0.2) * (facing in (0, 1))
        oz += rng.uniform(-0.2, 0.2) * (facing in (2, 3))
        _chair(b, ox, oz, back)
    b.claim(fx0 + ext[0], fz0 + ext[1], fx1 + ext[2], fz1 + ext[3])
    return True


def _chair(b: _Builder, x: float, z: float, back: tuple[int, int]) -> None:
    """An office chair at (x, z); ``back`` points from the seat towards the desk (the backrest is opposite)."""
    rng = b.rng
    fabric = b.mat("fabric", _pick(rng, _FABRIC))
    frame = b.mat("metal", _pick(rng, [(0.08, 0.08, 0.08), (0.5, 0.5, 0.52)]))
    seat_h = rng.uniform(0.42, 0.52)
    s = rng.uniform(0.22, 0.26)
    if rng.random() < 0.7:  # swivel chair
        b.add("cylinder", (x - 0.3, 0.04, z - 0.3), (x + 0.3, 0.08, z + 0.3), frame)
        b.add("cylinder", (x - 0.03, 0.08, z - 0.03), (x + 0.03, seat_h - 0.06, z + 0.03), frame)
    else:  # four legs
        for lx in (x - s + 0.02, x + s - 0.04):
            for lz in (z - s + 0.02, z + s - 0.04):
                b.add("box", (lx, 0, lz), (lx + 0.025, seat_h - 0.06, lz + 0.025), frame)
    b.add("box", (x - s, seat_h - 0.08, z - s), (x + s, seat_h, z + s), fabric)
    bx, bz = x - back[0] * (s - 0.03), z - back[1] * (s - 0.03)
    top = seat_h + rng.uniform(0.35, 0.65)
    if back[0] == 0:
        b.add("box", (x - s + 0.02, seat_h + 0.05, bz - 0.03), (x + s - 0.02, top, bz + 0.03), fabric)
    else:
        b.add("box", (bx - 0.03, seat_h + 0.05, z - s + 0.02), (bx + 0.03, top, z + s - 0.02), fabric)


def _cabinet(b: _Builder, x: float, z: float, facing: int) -> bool:
    rng = b.rng
    w, d, h = (
        rng.uniform(0.4, 1.6),
        rng.uniform(0.4, 0.6),
        rng.choice([rng.uniform(0.6, 1.1), rng.uniform(1.2, 2.1)]),
    )
    x0, z0, x1, z1 = _oriented(x, z, w, d, facing)
    if not b.free(x0, z0, x1, z1):
        return False
    mat = (
        b.mat("wood", _pick(rng, _WOOD), None, 1.0)
        if rng.random() < 0.4
        else b.mat("metal", _pick(rng, _NEUTRAL))
    )
    idx = b.add("box", (x0, 0, z0), (x1, h, z1), mat)
    axis, sign = {0: (2, 1.0), 1: (2, -1.0), 2: (0, 1.0), 3: (0, -1.0)}[facing]
    u0, u1 = (z0, z1) if axis == 0 else (x0, x1)
    img = np.empty((64, 32, 3), np.float32)
    img[:] = mat.color
    n = int(rng.integers(2, 6))
    for k in range(1, n):
        cv2.line(img, (0, 64 * k // n), (32, 64 * k // n), tuple(float(c) * 0.5 for c in mat.color), 1)
    for k in range(n):
        yc = int(64 * (k + 0.3) / n)
        cv2.rectangle(img, (12, yc), (20, yc + 1), (0.7, 0.7, 0.72), -1)
    b.room.decals.append(Decal(idx, axis, sign, (u0, u1, 0.0, h), img))
    b.claim(x0, z0, x1, z1)
    return True


def _bookcase(b: _Builder, x: float, z: float, facing: int) -> bool:
    rng = b.rng
    w, d, h = rng.uniform(0.7, 1.8), rng.uniform(0.3, 0.42), rng.uniform(1.0, 2.2)
    x0, z0, x1, z1 = _oriented(x, z, w, d, facing)
    if not b.free(x0, z0, x1, z1):
        return False
    mat = b.mat("wood", _pick(rng, _WOOD + _NEUTRAL[:2]), None, 1.0)
    t = 0.025
    back = {0: (z0, z0 + t), 1: (z1 - t, z1), 2: (x0, x0 + t), 3: (x1 - t, x1)}[facing]
    if facing in (0, 1):
        b.add("box", (x0, 0, back[0]), (x1, h, back[1]), mat)
        b.add("box", (x0, 0, z0), (x0 + t, h, z1), mat)
        b.add("box", (x1 - t, 0, z0), (x1, h, z1), mat)
    else:
        b.add("box", (back[0], 0, z0), (back[1], h, z1), mat)
        b.add("box", (x0, 0, z0), (x1, h, z0 + t), mat)
        b.add("box", (x0, 0, z1 - t), (x1, h, z1), mat)
    n = max(2, int(h / rng.uniform(0.3, 0.42)))
    ys = np.linspace(0.05, h, n + 1)
    for k in range(n):
        b.add("box", (x0, ys[k] - t, z0), (x1, ys[k], z1), mat)
        if rng.random() < 0.8:
            row = ys[k + 1] - ys[k] - t
            inset = rng.uniform(0.02, 0.1)
            books = b.mat("books", (0.5, 0.5, 0.5), mat.color, 1.0, y0=float(ys[k]), row=float(row))
            if facing in (0, 1):
                b.add("box", (x0 + t, ys[k], z0 + inset), (x1 - t, ys[k] + row * 0.95, z1 - inset), books)
            else:
                b.add("box", (x0 + inset, ys[k], z0 + t), (x1 - inset, ys[k] + row * 0.95, z1 - t), books)
    b.add("box", (x0, h - t, z0), (x1, h, z1), mat)
    b.claim(x0, z0, x1, z1)
    return True


def _plant(b: _Builder, x: float, z: float) -> bool:
    rng = b.rng
    r = rng.uniform(0.12, 0.25)
    if not b.free(x - r - 0.1, z - r - 0.1, x + r + 0.1, z + r + 0.1):
        return False
    ph = rng.uniform(0.25, 0.6)
    b.add(
        "cylinder",
        (x - r, 0, z - r),
        (x + r, ph, z + r),
        b.mat("paint", _pick(rng, _NEUTRAL + [(0.6, 0.35, 0.2)])),
    )
    leaves = b.mat(
        "leaves",
        np.array([0.12, 0.35, 0.1]) * rng.uniform(0.6, 1.4),
        np.array([0.05, 0.18, 0.05]),
        rng.uniform(0.6, 1.5),
    )
    height = rng.uniform(0.4, 1.5)
    for _ in range(int(rng.integers(1, 4))):
        lr = rng.uniform(0.2, 0.45) * np.array([1, height / 0.8, 1]) * rng.uniform(0.8, 1.2, 3)
        lr[1] = min(lr[1], height / 1.6)
        c = np.array(
            [
                x + rng.uniform(-0.1, 0.1),
                ph + lr[1] * rng.uniform(0.7, 1.1) + rng.uniform(0, height * 0.4),
                z + rng.uniform(-0.1, 0.1),
            ]
        )
        b.add("ellipsoid", c - lr, c + lr, leaves)
    b.claim(x - r - 0.1, z - r - 0.1, x + r + 0.1, z + r + 0.1)
    return True


def _partition(b: _Builder, x0: float, z0: float, x1: float, z1: float, h: float, mat: tx.Material) -> None:
    b.add("box", (x0, 0.02, z0), (x1, h, z1), mat)


def _meeting_table(b: _Builder, x: float, z: float) -> bool:
    rng = b.rng
    w, d = rng.uniform(1.6, 3.6), rng.uniform(0.9, 1.4)
    along_x = rng.random() < 0.5
    x0, z0, x1, z1 = _oriented(x, z, w, d, 0 if along_x else 2)
    if not b.free(x0 - 0.7, z0 - 0.7, x1 + 0.7, z1 + 0.7):
        return False
    th = rng.uniform(0.72, 0.76)
    top = b.mat("wood", _pick(rng, _WOOD + _NEUTRAL[:2]), None, rng.uniform(0.7, 1.5), along_v=not along_x)
    b.add("box", (x0, th - 0.04, z0), (x1, th, z1), top)
    leg = b.mat("metal", _pick(rng, _NEUTRAL))
    cx, cz = (x0 + x1) / 2, (z0 + z1) / 2
    if along_x:
        for px in (x0 + 0.35, x1 - 0.35):
            b.add("box", (px - 0.04, 0, cz - d / 3), (px + 0.04, th - 0.04, cz + d / 3), leg)
    else:
        for pz in (z0 + 0.35, z1 - 0.35):
            b.add("box", (cx - w / 6, 0, pz - 0.04), (cx + w / 6, th - 0.04, pz + 0.04), leg)
    long_len = (x1 - x0) if along_x else (z1 - z0)
    n = max(1, int(long_len / 0.75))
    for k in range(n):
        if rng.random() < 0.25:
            continue
        p = (k + 0.5) / n
        if along_x:
            px = x0 + p * (x1 - x0)
            _chair(b, px, z0 - rng.uniform(0.3, 0.5), (0, 1))
            if rng.random() < 0.85:
                _chair(b, px, z1 + rng.uniform(0.3, 0.5), (0, -1))
        else:
            pz = z0 + p * (z1 - z0)
            _chair(b, x0 - rng.uniform(0.3, 0.5), pz, (1, 0))
            if rng.random() < 0.85:
                _chair(b, x1 + rng.uniform(0.3, 0.5), pz, (-1, 0))
    b.claim(x0 - 0.7, z0 - 0.7, x1 + 0.7, z1 + 0.7)
    return True


def _sofa(b: _Builder, x: float, z: float, facing: int) -> bool:
    rng = b.rng
    w, d = rng.uniform(1.4, 2.4), rng.uniform(0.8, 0.95)
    x0, z0, x1, z1 = _oriented(x, z, w, d, facing)
    if not b.free(x0, z0, x1, z1):
        return False
    m = b.mat("fabric", _pick(rng, _FABRIC))
    b.add("box", (x0, 0.05, z0), (x1, 0.42, z1), m)
    t, bh = 0.2, rng.uniform(0.75, 0.95)
    if facing == 0:
        b.add("box", (x0, 0.05, z0), (x1, bh, z0 + t), m)
    elif facing == 1:
        b.add("box", (x0, 0.05, z1 - t), (x1, bh, z1), m)
    elif facing == 2:
        b.add("box", (x0, 0.05, z0), (x0 + t, bh, z1), m)
    else:
        b.add("box", (x1 - t, 0.05, z0), (x1, bh, z1), m)
    b.claim(x0, z0, x1, z1)
    return True


def _misc_box(b: _Builder, x: float, z: float, facing: int) -> bool:
    """Printer, water cooler, bin, radiator-like boxes."""
    rng = b.rng
    kind = rng.integers(3)
    if kind == 0:  # printer / copier
        w, d, h = rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.7), rng.uniform(0.9, 1.2)
        x0, z0, x1, z1 = _oriented(x, z, w, d, facing)
        if not b.free(x0, z0, x1, z1):
            return False
        b.add("box", (x0, 0, z0), (x1, h, z1), b.mat("metal", _pick(rng, _NEUTRAL[:4])))
        b.add(
            "box",
            (x0 + 0.05, h, z0 + 0.05),
            (x1 - 0.05, h + 0.12, z1 - 0.05),
            b.mat("metal", (0.15, 0.15, 0.16)),
        )
    elif kind == 1:  # water cooler
        x0, z0, x1, z1 = x - 0.17, z - 0.17, x + 0.17, z + 0.17
        if not b.free(x0, z0, x1, z1):
            return False
        b.add("box", (x0, 0, z0), (x1, 1.0, z1), b.mat("paint", _pick(rng, _NEUTRAL)))
        b.add(
            "cylinder",
            (x0 + 0.03, 1.0, z0 + 0.03),
            (x1 - 0.03, 1.4, z1 - 0.03),
            b.mat("paint", (0.55, 0.7, 0.9)),
        )
    else:  # bin
        x0, z0, x1, z1 = x - 0.16, z - 0.16, x + 0.16, z + 0.16
        if not b.free(x0, z0, x1, z1):
            return False
        b.add(
            "cylinder",
            (x0, 0, z0),
            (x1, rng.uniform(0.3, 0.6), z1),
            b.mat("paint", _pick(rng, _NEUTRAL + _FABRIC)),
        )
    b.claim(x0, z0, x1, z1)
    return True


def _along_wall(rng: np.random.Generator, size: np.ndarray, depth: float) -> tuple[float, float, int]:
    """A random spot against one of the walls (centre at ``depth / 2`` from it) and the facing into the room."""
    wall = int(rng.integers(4))
    if wall == 0:
        return rng.uniform(0.5, size[0] - 0.5), depth / 2 + 0.02, 0
    if wall == 1:
        return rng.uniform(0.5, size[0] - 0.5), size[2] - depth / 2 - 0.02, 1
    if wall == 2:
        return depth / 2 + 0.02, rng.uniform(0.5, size[2] - 0.5), 2
    return size[0] - depth / 2 - 0.02, rng.uniform(0.5, size[2] - 0.5), 3


def _wall_decals(b: _Builder, rng: np.random.Generator) -> None:
    """Windows, doors, posters, whiteboards on the walls, light panels on the ceiling."""
    sx, sy, sz = b.room.size
    # wall: (index, axis, sign, length along the wall)
    walls = [(WALL_X0, 0, 1.0, sz), (WALL_X1, 0, -1.0, sz), (WALL_Z0, 2, 1.0, sx), (WALL_Z1, 2, -1.0, sx)]
    window_walls = rng.choice(4, size=int(rng.choice([0, 1, 1, 2])), replace=False)
    for wi in window_walls:
        idx, axis, sign, length = walls[wi]
        band = rng.random() < 0.5
        sill, top = rng.uniform(0.0, 1.0), min(sy - 0.1, rng.uniform(2.0, 2.6))
        spans = [(0.3, length - 0.3)] if band else []
        if not band:
            n = int(rng.integers(1, 4))
            ww = rng.uniform(0.8, min(2.5, length / n - 0.3))
            for k in range(n):
                c = length * (k + 0.5) / n
                spans.append((c - ww / 2, c + ww / 2))
        for u0, u1 in spans:
            w_px = int(np.clip((u1 - u0) * 40, 16, 240))
            img, emit = tx.window_image(rng, w_px, int(np.clip((top - sill) * 40, 16, 120)))
            b.room.decals.append(
                Decal(idx, axis, sign, (u0, u1, sill, top), img, emit, rng.uniform(1.2, 3.0))
            )
        # daylight through the window
        mid = np.array([sx / 2, (sill + top) / 2, sz / 2])
        mid[axis] = 0.3 if sign > 0 else b.room.size[axis] - 0.3
        facing = np.zeros(3)
        facing[axis] = sign
        b.room.lights.append(
            Light(mid, np.array([0.9, 0.95, 1.05]) * rng.uniform(0.8, 1.1), rng.uniform(1.0, 5.0), facing)
        )
    for wi in range(4):
        idx, axis, sign, length = walls[wi]
        if wi in window_walls:
            continue
        pos = rng.uniform(0.3, max(0.4, length - 1.3))
        if rng.random() < 0.5:  # door
            dw = rng.uniform(0.85, 1.2)
            u0 = rng.uniform(0.2, max(0.3, length - dw - 0.2))
            b.room.decals.append(
                Decal(idx, axis, sign, (u0, u0 + dw, 0.0, rng.uniform(2.0, 2.2)), tx.door_image(rng, 36, 80))
            )
        for _ in range(int(rng.integers(0, 4))):  # posters, pictures, whiteboards
            pos = rng.uniform(0.2, max(0.3, length - 1.0))
            if rng.random() < 0.35:
                ww, hh, y0 = rng.uniform(1.0, 2.4), rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.1)
                img = tx.whiteboard_image(rng, int(ww * 60), int(hh * 60))
            else:
                ww, hh, y0 = rng.uniform(0.3, 1.2), rng.uniform(0.3, 1.0), rng.uniform(1.2, 1.7)
                img = tx.poster_image(rng, int(ww * 60) + 4, int(hh * 60) + 4)
            if pos + ww < length and y0 + hh < sy - 0.1:
                b.room.decals.append(Decal(idx, axis, sign, (pos, pos + ww, y0, y0 + hh), img))


def _lights(b: _Builder, rng: np.random.Generator) -> None:
    sx, sy, sz = b.room.size
    spacing = rng.uniform(1.8, 3.5)
    nx, nz = max(1, int(round(sx / spacing))), max(1, int(round(sz / spacing)))
    color = (
        np.array([1.0, 0.97, 0.9]) * rng.uniform(0.9, 1.1, 3)
        if rng.random() < 0.7
        else np.array([1.0, 0.85, 0.65])
    )
    power = rng.uniform(1.5, 4.0)
    panel = rng.random() < 0.7
    pw, pd = (rng.uniform(0.5, 0.65), rng.uniform(0.5, 1.25)) if panel else (0.2, 0.2)
    img = np.ones((8, 8, 3), np.float32)
    for i in range(nx):
        for k in range(nz):
            if rng.random() < 0.08:
                continue
            x, z = sx * (i + 0.5) / nx, sz * (k + 0.5) / nz
            b.room.lights.append(Light(np.array([x, sy - 0.05, z]), color, power, np.array([0.0, -1.0, 0.0])))
            b.room.decals.append(Decal(CEILING, 1, -1.0, (x - pw / 2, x + pw / 2, z - pd / 2, z + pd / 2), img * color,
                                       np.ones((8, 8), np.float32), rng.uniform(2.0, 4.0)))  # fmt: skip


# Horizontal field of view of the cameras: office and CCTV cameras (2.8-4 mm lenses) and webcams. Metric depth
# from one image cannot tell a wide lens in a small room from a narrow one in a large room; over 50-100 deg a
# tiny model's scale error followed the field of view (correlation 0.64), so the range is kept to what such
# cameras have. Cameras outside it get depth up to a scale: evaluate them with --align median.
HFOV_RANGE_DEG = (60.0, 90.0)


def layout_room(seed: int) -> tuple[Room, dict]:
    """Random room and camera parameters (position, yaw, pitch, roll, hfov_deg) for ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0FF1CE]))
    size = np.array([rng.uniform(3.5, 11.0), rng.uniform(2.5, 3.5), rng.uniform(4.0, 12.0)])
    wall = tx.Material(
        "paint", _pick(rng, _WALL, 0.05), None, rng.uniform(0.5, 2), int(rng.integers(1 << 30))
    )
    ceil_kind = "ceiling" if rng.random() < 0.7 else "paint"
    ceiling = tx.Material(ceil_kind, np.full(3, rng.uniform(0.75, 0.95)), np.full(3, 0.45), rng.choice([0.6, 0.6, 1.2]),
                          int(rng.integers(1 << 30)))  # fmt: skip
    walls = [wall] * 4
    if rng.random() < 0.3:  # an accent wall
        k = int(rng.integers(4))
        walls[k] = tx.Material("paint", _pick(rng, _WALL + _FABRIC), None, 1.0, int(rng.integers(1 << 30)))
    room = Room(size=size, faces=[_floor_material(rng), ceiling, *walls])
    room.ambient = np.array([0.95, 0.97, 1.0]) * rng.uniform(0.25, 0.6)
    room.skirting = (rng.choice([0.0, 0.06, 0.1]), _pick(rng, _NEUTRAL + _WOOD))
    if rng.random() < 0.2:
        room.wainscot = (rng.uniform(0.8, 1.2), _pick(rng, _WALL + _WOOD))

    # camera: near a wall or a corner, looking into the room
    cam_h = rng.uniform(1.0, min(3.0, size[1] - 0.12))
    mode = rng.random()
    if mode < 0.6:  # on the near wall (z = 0), looking along +z
        pos = np.array([rng.uniform(0.25, 0.75) * size[0], cam_h, rng.uniform(0.1, 0.8)])
        yaw = rng.uniform(-0.35, 0.35)
    elif mode < 0.85:  # corner
        pos = np.array([rng.uniform(0.15, 0.6), cam_h, rng.uniform(0.15, 0.6)])
        yaw = np.arctan2(size[0] * rng.uniform(0.4, 0.8), size[2] * rng.uniform(0.4, 0.8))
        if rng.random() < 0.5:
            pos[0] = size[0] - pos[0]
            yaw = -yaw
    else:  # inside the room (a laptop on a desk, a camera on a pillar)
        pos = np.array([rng.uniform(0.3, 0.7) * size[0], cam_h, rng.uniform(0.15, 0.35) * size[2]])
        yaw = rng.uniform(-0.6, 0.6)
    lo_pitch = 0.0 if cam_h < 2.0 else np.deg2rad(8.0)
    pitch = rng.uniform(lo_pitch, np.deg2rad(35.0))
    cam = {
        "position": pos,
        "yaw": float(yaw),
        "pitch": float(pitch),
        "roll": float(np.deg2rad(rng.uniform(-5.0, 5.0))),
        "hfov_deg": float(rng.uniform(*HFOV_RANGE_DEG)),
    }

    b = _Builder(room, rng, (pos[0], pos[2], 1.0))
    style = rng.choice(["open", "open", "meeting", "small", "lounge"])
    if style == "open":
        _desk_rows(b, rng)
    elif style == "meeting":
        _meeting_table(b, size[0] / 2 + rng.uniform(-0.5, 0.5), size[2] * rng.uniform(0.45, 0.65))
    elif style == "lounge":
        for _ in range(int(rng.integers(1, 4))):
            x, z, f = _along_wall(rng, size, 0.9)
            _sofa(b, x, z, f)
    n_desks = int(rng.integers(2, 9)) if style in ("small", "open") else int(rng.integers(0, 4))
    for _ in range(3 * n_desks):  # desks along walls (several tries each)
        x, z, f = _along_wall(rng, size, 0.75)
        n_desks -= _desk(b, x, z, f)
        if n_desks <= 0:
            break
    for _ in range(int(rng.integers(2, 10))):
        x, z, f = _along_wall(rng, size, 0.5)
        (_cabinet if rng.random() < 0.55 else _bookcase)(b, x, z, f)
    for _ in range(int(rng.integers(1, 6))):
        x, z, _ = _along_wall(rng, size, 0.6)
        _plant(b, x, z)
    for _ in range(int(rng.integers(1, 5))):
        x, z, f = _along_wall(rng, size, 0.6)
        _misc_box(b, x, z, f)
    if rng.random() < 0.2:  # a pillar
        x, z = rng.uniform(1.5, size[0] - 1.5), rng.uniform(2.5, size[2] - 1.5)
        pw = rng.uniform(0.3, 0.6)
        if b.free(x - pw, z - pw, x + pw, z + pw):
            b.add("box", (x - pw / 2, 0, z - pw / 2), (x + pw / 2, size[1], z + pw / 2), wall)
            b.claim(x - pw, z - pw, x + pw, z + pw)
    _wall_decals(b, rng)
    _lights(b, rng)
    return room, cam


def _desk_rows(b: _Builder, rng: np.random.Generator) -> None:
    """Clusters of desks facing each other, separated by aisles, with optional partitions."""
    along_x = rng.random() < 0.6
    p_len, s_len = (b.room.size[2], b.room.size[0]) if along_x else (b.room.size[0], b.room.size[2])
    aisle = rng.uniform(1.3, 2.2)
    part = b.mat("fabric", _pick(rng, _FABRIC + _NEUTRAL), None, 1.0) if rng.random() < 0.5 else None
    part_h = rng.uniform(1.05, 1.5)
    p = rng.uniform(2.2, 3.5)
    while p < p_len - 2.0:
        s = rng.uniform(0.8, 1.6)
        while s < s_len - 1.4:
            if rng.random() < 0.85:
                if along_x:
                    ok = _desk(b, s + 0.7, p - 0.4, 1, rng.random() < 0.8) | _desk(
                        b, s + 0.7, p + 0.4, 0, rng.random() < 0.8
                    )
                    if part is not None and ok:
                        _partition(b, s, p - 0.02, s + 1.4, p + 0.02, part_h, part)
                        b.room.groups[-1] -= 1  # belongs with its desks
                else:
                    ok = _desk(b, p - 0.4, s + 0.7, 3, rng.random() < 0.8) | _desk(
                        b, p + 0.4, s + 0.7, 2, rng.random() < 0.8
                    )
                    if part is not None and ok:
                        _partition(b, p - 0.02, s, p + 0.02, s + 1.4, part_h, part)
                        b.room.groups[-1] -= 1
            s += rng.uniform(1.5, 2.2)
        p += 0.8 + 2 * 0.75 + aisle


# --- rendering ---------------------------------------------------------------------------------------


def _ao_maps(room: Room) -> np.ndarray:
    """(levels, nz, nx) ambient occlusion factors from a blurred top-down occupancy map per height level."""
    nx, nz = int(np.ceil(room.size[0] / _AO_CELL)), int(np.ceil(room.size[2] / _AO_CELL))
    pad = 12
    maps = np.empty((len(_AO_LEVELS), nz, nx), np.float32)
    for k, y in enumerate(_AO_LEVELS):
        occ = np.zeros((nz + 2 * pad, nx + 2 * pad), np.float32)
        occ[:pad] = occ[-pad:] = 1.0
        occ[:, :pad] = occ[:, -pad:] = 1.0
        for s in room.solids:
            if s.hi[1] > y + 0.02 and s.lo[1] < y + 1.0:
                x0, x1 = int(s.lo[0] / _AO_CELL) + pad, int(np.ceil(s.hi[0] / _AO_CELL)) + pad
                z0, z1 = int(s.lo[2] / _AO_CELL) + pad, int(np.ceil(s.hi[2] / _AO_CELL)) + pad
                occ[z0:z1, x0:x1] = np.maximum(occ[z0:z1, x0:x1], 0.85 if s.hi[1] - s.lo[1] > 0.1 else 0.4)
        occ = cv2.GaussianBlur(occ, (0, 0), 4.0)
        maps[k] = 1.0 - 0.75 * occ[pad:-pad, pad:-pad]
    return maps


def _ao_lookup(maps: np.ndarray, room: Room, pos: np.ndarray, normal: np.ndarray) -> np.ndarray:
    p = pos + 0.12 * normal
    level = np.clip(np.searchsorted(_AO_LEVELS, p[:, 1], side="right") - 1, 0, len(_AO_LEVELS) - 1)
    ix = np.clip((p[:, 0] / _AO_CELL).astype(int), 0, maps.shape[2] - 1)
    iz = np.clip((p[:, 2] / _AO_CELL).astype(int), 0, maps.shape[1] - 1)
    return maps[level, iz, ix]


def _groups(index: np.ndarray) -> dict[int, np.ndarray]:
    """Flat positions of each distinct value of ``index``, in one sort."""
    order = np.argsort(index, kind="stable")
    vals, starts = np.unique(index[order], return_index=True)
    ends = np.append(starts[1:], order.size)
    return {int(v): order[a:b] for v, a, b in zip(vals, starts, ends)}


def _apply_decals(room: Room, groups, pos, normal, alb, emit) -> None:
    for dec in room.decals:
        sel = groups.get(dec.index)
        if sel is None:
            continue
        sel = sel[normal[sel, dec.axis] * dec.sign > 0.5]
        u, v = tx.surface_uv(pos[sel], normal[sel])
        u0, u1, v0, v1 = dec.rect
        inside = (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)
        sel, u, v = sel[inside], u[inside], v[inside]
        h, w = dec.image.shape[:2]
        col = np.clip(((u - u0) / (u1 - u0) * w).astype(int), 0, w - 1)
        row = np.clip(((v1 - v) / (v1 - v0) * h).astype(int), 0, h - 1)
        alb[sel] = dec.image[row, col]
        if dec.emission is not None:
            emit[sel] = dec.image[row, col] * (dec.emission[row, col] * dec.strength)[:, None]


def _irradiance(room: Room, pos: np.ndarray, normal: np.ndarray, ao: np.ndarray) -> np.ndarray:
    """(N, 3) light arriving at points: ambient x AO plus Lambertian lights (hemispherical emitters)."""
    px, py, pz = (pos[:, k].astype(np.float32) for k in range(3))
    nx, ny, nz = (normal[:, k].astype(np.float32) for k in range(3))
    out = room.ambient[None, :].astype(np.float32) * ao[:, None]
    by_color: dict[tuple, np.ndarray] = {}
    for li in room.lights:
        dx, dy, dz = (np.float32(li.position[k]) - q for k, q in enumerate((px, py, pz)))
        dist2 = dx * dx + dy * dy + dz * dz
        inv = 1.0 / np.sqrt(dist2)
        cos_s = np.maximum((dx * nx + dy * ny + dz * nz) * inv, 0)
        f = li.facing
        cos_l = np.maximum(-(dx * np.float32(f[0]) + dy * np.float32(f[1]) + dz * np.float32(f[2])) * inv, 0)
        w = cos_s * cos_l * (np.float32(li.power) / (1.0 + dist2 * np.float32(0.25)))
        key = tuple(np.round(li.color, 6))
        by_color[key] = by_color[key] + w if key in by_color else w
    shadow = 0.35 + 0.65 * ao
    for color, w in by_color.items():
        out += (w * shadow)[:, None] * np.asarray(color, np.float32)
    return out


def _shade(room: Room, hits, rng: np.random.Generator) -> np.ndarray:
    """Linear radiance (h, w, 3) of the hit points."""
    shape = hits.t.shape
    index = hits.index.reshape(-1)
    pos = hits.position.reshape(-1, 3)
    normal = hits.normal.reshape(-1, 3).astype(np.float64)
    alb = np.zeros((index.size, 3))
    mats = room.faces + room.materials
    groups = _groups(index)
    for m, sel in groups.items():
        alb[sel] = tx.albedo(mats[m], pos[sel], normal[sel])
    # skirting boards and two-tone walls
    on_wall = (index >= WALL_X0) & (index < N_ROOM_FACES)
    if room.wainscot is not None:
        sel = on_wall & (pos[:, 1] < room.wainscot[0])
        alb[sel] = room.wainscot[1] * (alb[sel] / np.maximum(room.faces[2].color, 1e-3))
    if room.skirting[0] > 0:
        alb[on_wall & (pos[:, 1] < room.skirting[0])] = room.skirting[1]
    emit = np.zeros_like(alb)
    _apply_decals(room, groups, pos, normal, alb, emit)
    ao = _ao_lookup(_ao_maps(room), room, pos, normal)
    return (alb * _irradiance(room, pos, normal, ao) + emit).reshape(shape + (3,))


def _finish(radiance: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Exposure, tone curve, area-downsampling by s, white balance, vignetting, blur, noise -> uint8."""
    lum = radiance.mean(-1)
    key = np.percentile(lum, 55)
    radiance = radiance * (rng.uniform(0.3, 0.6) / max(key, 1e-6))
    img = 1.0 - np.exp(-1.6 * radiance)  # soft shoulder; highlights saturate like a camera
    img = img ** (1 / 1.6)
    hs, ws = img.shape[:2]
    img = img.reshape(hs // s, s, ws // s, s, 3).mean(axis=(1, 3))
    h, w = img.shape[:2]
    img = img * rng.uniform(0.9, 1.1, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    img = img * (1 - rng.uniform(0.0, 0.45) * r2)[..., None]
    if rng.random() < 0.6:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.3, 0.9))
    sigma = rng.uniform(0.002, 0.025)
    img = img + rng.normal(0, sigma, img.shape) * np.sqrt(np.clip(img, 0.02, 1))[..., :]
    img = img + rng.normal(0, sigma * 0.3, (h, w, 1))
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def make_camera(cam: dict, size: int) -> Camera:
    return Camera.from_fov(
        (size, size), cam["hfov_deg"], cam["position"], cam["yaw"], cam["pitch"], cam["roll"]
    )


def _ensure_floor(room: Room, camera: Camera, min_fraction: float = 0.2) -> None:
    """Drop the furniture groups that hide the floor most until enough floor shows (cheap 48 px casts)."""
    low = Camera(camera.fx * 48 / camera.size[1], camera.fy * 48 / camera.size[0], 23.5, 23.5, (48, 48),
                 camera.position, camera.rotation)  # fmt: skip
    lo, hi = np.zeros(3), room.size
    for _ in range(12):
        hits = raycast(low, room.solids, (lo, hi))
        if (hits.index == FLOOR).mean() >= min_fraction or not room.solids:
            return
        idx = hits.index[24:] - N_ROOM_FACES
        idx = idx[idx >= 0]
        if idx.size == 0:
            return
        groups = np.asarray(room.groups)
        worst = np.bincount(groups[idx]).argmax()
        keep = groups != worst
        removed = {N_ROOM_FACES + k for k in np.flatnonzero(~keep)}
        remap = np.cumsum(keep) - 1
        room.decals = [d for d in room.decals if d.index not in removed]
        for d in room.decals:
            if d.index >= N_ROOM_FACES:
                d.index = N_ROOM_FACES + int(remap[d.index - N_ROOM_FACES])
        room.solids = [s for s, k in zip(room.solids, keep) if k]
        room.materials = [m for m, k in zip(room.materials, keep) if k]
        room.groups = [g for g, k in zip(room.groups, keep) if k]


def render_room(seed: int, size: int = 224, supersample: int = 2) -> Background:
    """Render a random office for ``seed`` as a Background with exact depth and camera geometry.

    Args:
        seed: any int; the same seed gives the same arrays.
        size: output height and width in pixels.
        supersample: sub-pixels per pixel side for the colour (anti-aliasing); depth is cast at pixel centres.

    Returns:
        Background with rgb (size, size, 3) uint8, depth (size, size) float32 z-depth in metres (finite, > 0),
        intrinsics (fx, fy, cx, cy), floor_plane (nx, ny, nz, d) in camera coordinates (n up, d = camera
        height), floor_mask (size, size) bool: visible floor at least FLOOR_MARGIN_M from the walls.
    """
    if size < 8 or supersample < 1:
        raise ValueError(f"need size >= 8 and supersample >= 1, got {size}, {supersample}")
    room, cam = layout_room(seed)
    camera = make_camera(cam, size)
    _ensure_floor(room, camera)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    bounds = (np.zeros(3), room.size)
    hits = raycast(camera, room.solids, bounds, supersample)
    rgb = _finish(_shade(room, hits, rng), supersample, rng)
    centre = hits if supersample == 1 else raycast(camera, room.solids, bounds, 1)
    p = centre.position
    m = FLOOR_MARGIN_M
    floor_mask = (centre.index == FLOOR) & (p[..., 0] > m) & (p[..., 0] < room.size[0] - m)
    floor_mask &= (p[..., 2] > m) & (p[..., 2] < room.size[2] - m)
    return Background(
        rgb=rgb,
        depth=centre.t.astype(np.float32),
        intrinsics=camera.intrinsics,
        floor_plane=camera.floor_plane(),
        floor_mask=floor_mask,
    )
