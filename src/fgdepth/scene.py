"""The two things the factory composes: a background (an empty scene) and a foreground (a person).

Both come either from user folders (``sources.py``) or from the procedural world (``synth/``). Arrays are numpy
HWC; the camera follows OpenCV's convention (x right, y down, z forward, pixel centres at integer coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Background:
    """An empty scene seen by a static camera.

    Attributes:
        rgb: (H, W, 3) uint8.
        depth: (H, W) float32 z-depth in metres (or relative units), 0 where unknown; None if no depth source.
        intrinsics: (fx, fy, cx, cy) in pixels of ``rgb``; None if unknown (user photographs).
        floor_plane: (nx, ny, nz, d) in camera coordinates with n a unit vector pointing up from the floor, so that
            floor points X satisfy n.X + d = 0 and d is the camera height above the floor (metres); None if unknown.
        floor_mask: (H, W) bool, pixels where the floor is visible (a person may stand there); None if unknown.
    """

    rgb: np.ndarray
    depth: np.ndarray | None = None
    intrinsics: tuple[float, float, float, float] | None = None
    floor_plane: tuple[float, float, float, float] | None = None
    floor_mask: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.rgb.shape[0], self.rgb.shape[1]

    @property
    def has_geometry(self) -> bool:
        return (
            self.depth is not None
            and self.intrinsics is not None
            and self.floor_plane is not None
            and self.floor_mask is not None
        )


@dataclass
class Foreground:
    """A transparent sprite of a person, upright, cropped to its alpha.

    Attributes:
        rgba: (h, w, 4) uint8, straight (not premultiplied) alpha.
        anchor: (x, y) pixel coordinates of the ground-contact point (between the feet) in the sprite.
        depth_offset: (h, w) float32 metres, the person's depth relative to the vertical plane through the anchor
            (positive = farther from the camera), 0 outside the alpha; None for flat user cut-outs.
        height_m: the person's height in metres; None if unknown.
        px_per_m: sprite pixels per metre (the sprite's scale); None if unknown.
    """

    rgba: np.ndarray
    anchor: tuple[float, float]
    depth_offset: np.ndarray | None = None
    height_m: float | None = None
    px_per_m: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(h, w)."""
        return self.rgba.shape[0], self.rgba.shape[1]

    def flipped(self) -> Foreground:
        """The horizontal mirror image (anchor mirrored too)."""
        w = self.rgba.shape[1]
        return Foreground(
            rgba=np.ascontiguousarray(self.rgba[:, ::-1]),
            anchor=(w - 1 - self.anchor[0], self.anchor[1]),
            depth_offset=None
            if self.depth_offset is None
            else np.ascontiguousarray(self.depth_offset[:, ::-1]),
            height_m=self.height_m,
            px_per_m=self.px_per_m,
        )


def bottom_centre_anchor(alpha: np.ndarray) -> tuple[float, float]:
    """Ground contact of a flat cut-out: centre of the lowest rows of its alpha > 0.5.

    Args:
        alpha: (h, w) uint8 or float alpha.
    """
    on = alpha > (127 if alpha.dtype == np.uint8 else 0.5)
    rows = np.flatnonzero(on.any(axis=1))
    if rows.size == 0:
        return (alpha.shape[1] - 1) / 2.0, float(alpha.shape[0] - 1)
    bottom = rows[-1]
    # the columns of the bottom few rows (feet), so one stray pixel does not decide
    band = on[max(bottom - 2, 0) : bottom + 1].any(axis=0)
    cols = np.flatnonzero(band)
    return float(cols.min() + cols.max()) / 2.0, float(bottom)
