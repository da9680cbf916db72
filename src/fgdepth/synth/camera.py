"""A pinhole camera in a y-up world, and the pixel rays it casts.

World frame: x and z horizontal, y up, floor at y = 0. Camera frame: OpenCV (x right, y down, z forward).
Pixel centres sit at integer coordinates, so a centred principal point is ``cx = (W - 1) / 2``.
A ray is ``origin + t * direction`` with the direction's camera-frame z equal to 1, so ``t`` *is* the z-depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rotation_yaw_pitch_roll(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (3, 3) of a camera turned by ``yaw`` about world up, tilted down by ``pitch``
    and rolled by ``roll`` about its optical axis (radians). Yaw 0 looks along world +z."""
    # camera axes in the world before any rotation: x right = world +x, y down = world -y, z forward = +z
    base = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    cr, sr = np.cos(roll), np.sin(roll)
    r_roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])  # about camera z
    cp, sp = np.cos(pitch), np.sin(pitch)
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])  # about world x; +pitch looks down
    cy, sy = np.cos(yaw), np.sin(yaw)
    r_yaw = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])  # about world y
    return r_yaw @ r_pitch @ base @ r_roll


@dataclass
class Camera:
    """Pinhole camera.

    Attributes:
        fx, fy, cx, cy: intrinsics in pixels of an image of ``size``.
        size: (H, W) of the output image.
        position: (3,) camera centre in the world (metres).
        rotation: (3, 3) camera-to-world rotation (columns: camera x, y, z axes in the world).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    size: tuple[int, int]
    position: np.ndarray
    rotation: np.ndarray

    @classmethod
    def from_fov(
        cls,
        size: tuple[int, int],
        hfov_deg: float,
        position: np.ndarray,
        yaw: float = 0.0,
        pitch: float = 0.0,
        roll: float = 0.0,
    ) -> Camera:
        """Square pixels, centred principal point; angles in radians (pitch > 0 looks down)."""
        h, w = size
        f = (w / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
        rot = rotation_yaw_pitch_roll(yaw, pitch, roll)
        return cls(f, f, (w - 1) / 2.0, (h - 1) / 2.0, (h, w), np.asarray(position, float), rot)

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        return float(self.fx), float(self.fy), float(self.cx), float(self.cy)

    def floor_plane(self) -> tuple[float, float, float, float]:
        """(nx, ny, nz, d) of the floor y = 0 in camera coordinates; n points up, d = camera height."""
        n = self.rotation.T @ np.array([0.0, 1.0, 0.0])
        return float(n[0]), float(n[1]), float(n[2]), float(self.position[1])

    def pixel_grid(self, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (u, v), each (H*s, W*s), of the sub-pixel centres of an s x s supersampling.

        Output pixel (i, j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]; its s x s sub-pixels sit at the
        centres of an even split of that square, so area-averaging s x s blocks gives the output pixel.
        """
        h, w = self.size
        s = supersample
        u = (np.arange(w * s, dtype=np.float64) + 0.5) / s - 0.5
        v = (np.arange(h * s, dtype=np.float64) + 0.5) / s - 0.5
        return np.meshgrid(u, v)

    def ray_directions(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """World directions (..., 3) of the rays through pixel coordinates (u, v); camera-frame z = 1."""
        dc = np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], axis=-1)
        return dc @ self.rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel u, v and z-depth, each (N,)."""
        pc = (np.asarray(points, float) - self.position) @ self.rotation
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * pc[:, 0] / z + self.cx
            v = self.fy * pc[:, 1] / z + self.cy
        return u, v, z
