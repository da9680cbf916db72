"""Focal lengths as fgdepth carries them, and the canonical camera of a metric depth model.

A focal length travels as ``focal``: in pixels divided by the image's short side, so one number holds for every
resized copy of an image (and for the model input, whose short side is the model size). ``0`` means unknown.
An image (H, W) with a horizontal field of view ``hfov`` has ``focal = (W / 2) / tan(hfov / 2) / min(H, W)``.

Canonical camera (Metric3D, Yin et al. 2023): one picture fits a small room seen through a wide lens and a large
room through a narrow one, so a network cannot tell metric depth from the picture alone. A model with a
canonical camera predicts the depth the picture would have through the canonical focal ``f_c``; through the
real focal ``f`` every distance is ``f / f_c`` times that (an object of size S at depth d spans ``f S / d``
pixels, so the same span at ``f_c`` means depth ``d f_c / f``).
"""

from __future__ import annotations

import math

import torch


def focal_from_hfov(hfov_deg: float, height: int, width: int) -> float:
    """``focal`` of an (height, width) image with horizontal field of view ``hfov_deg`` (0 < hfov < 180)."""
    if not 0 < hfov_deg < 180:
        raise ValueError(f"hfov must be in (0, 180) degrees, got {hfov_deg}")
    return (width / 2) / math.tan(math.radians(hfov_deg) / 2) / min(height, width)


def hfov_from_focal(focal: float, height: int, width: int) -> float:
    """Inverse of :func:`focal_from_hfov`, in degrees."""
    return math.degrees(2 * math.atan((width / 2) / (focal * min(height, width))))


def focal_from_intrinsics(fx: float, height: int, width: int) -> float:
    """``focal`` from the horizontal focal length ``fx`` in pixels of an (height, width) image."""
    if not fx > 0:
        raise ValueError(f"focal length must be > 0 pixels, got {fx}")
    return fx / min(height, width)


def depth_at_focal(depth: torch.Tensor, focal: torch.Tensor | None, canonical_focal: float) -> torch.Tensor:
    """Canonical-camera depth (B, 1, h, w) -> depth through each sample's ``focal`` (B,); unknown (0 or not
    finite) focals, or ``focal=None``, keep the canonical camera's depth."""
    if focal is None:
        return depth
    focal = focal.to(device=depth.device, dtype=depth.dtype).reshape(-1)
    known = torch.isfinite(focal) & (focal > 0)
    factor = torch.where(known, focal / canonical_focal, torch.ones_like(focal))
    return depth * factor.view(-1, 1, 1, 1)
