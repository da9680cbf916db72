"""The classical baseline: background subtraction against the known empty scene.

``|composite - background|`` per pixel (after a light blur), reduced over channels, thresholded with Otsu's
method (never below a floor, so two identical or nearly identical images give an empty mask), then cleaned by
a morphological opening (removes specks) and closing (fills small holes) with elliptic kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

Reduce = Literal["max", "l2"]


def _to_float_hwc(image: Any, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name} must be (H, W, 3) uint8 or float in [0, 1], got shape {a.shape}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be uint8, uint16 or float in [0, 1], got {a.dtype}")
    a = a.astype(np.float32)
    peak = float(a.max(initial=0.0))
    if peak > 1.0 + 1e-3:  # a 0-255 float image read as [0, 1] would make sensor noise foreground
        raise ValueError(
            f"{name} must be float in [0, 1] (or uint8), got values up to {peak:g}: divide by 255"
        )
    return a


def _ellipse(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def difference_image(
    background: Any, composite: Any, blur_sigma: float = 1.0, reduce: Reduce = "max"
) -> np.ndarray:
    """Per-pixel colour difference in [0, 1] (``max`` over channels, or L2 norm divided by sqrt(3)).

    Shape:
        background, composite: (H, W, 3) uint8, or float in [0, 1]; returns (H, W) float32.
    """
    bg, comp = _to_float_hwc(background, "background"), _to_float_hwc(composite, "composite")
    if bg.shape != comp.shape:
        raise ValueError(f"background and composite differ in shape: {bg.shape} vs {comp.shape}")
    if blur_sigma > 0:
        bg = cv2.GaussianBlur(bg, (0, 0), blur_sigma).reshape(bg.shape)
        comp = cv2.GaussianBlur(comp, (0, 0), blur_sigma).reshape(comp.shape)
    d = np.abs(comp - bg)
    if reduce == "max":
        return d.max(axis=-1)
    if reduce == "l2":
        return np.sqrt((d * d).sum(axis=-1) / d.shape[-1])
    raise ValueError(f"unknown reduce {reduce!r}; valid: max, l2")


def difference_mask(
    background: Any,
    composite: Any,
    open_radius: int = 2,
    close_radius: int = 4,
    blur_sigma: float = 1.0,
    reduce: Reduce = "max",
    min_threshold: float = 0.06,
) -> np.ndarray:
    """Foreground mask by background subtraction, Otsu threshold and morphology.

    The threshold is ``max(otsu(diff), min_threshold)``: Otsu always splits a histogram in two, even one of
    pure sensor or JPEG noise, so the floor keeps identical images empty.

    Args:
        background, composite: (H, W, 3) uint8, or float in [0, 1] (RGBA and gray are accepted).
        open_radius, close_radius: radii in pixels of the elliptic opening / closing kernels (0 skips).
        blur_sigma: Gaussian blur of both images before differencing (0 skips).
        reduce: ``max`` or ``l2`` over channels.
        min_threshold: floor of the threshold, in [0, 1] colour units.

    Shape:
        returns (H, W) bool, True on the foreground.
    """
    diff = difference_image(background, composite, blur_sigma, reduce)
    d8 = np.clip(np.rint(diff * 255.0), 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(d8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    thr = max(float(otsu), min_threshold * 255.0)
    mask = (d8 > thr).astype(np.uint8)
    if open_radius > 0:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _ellipse(open_radius))
    if close_radius > 0:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse(close_radius))
    return mask.astype(bool)


@dataclass
class DifferenceBaseline:
    """:func:`difference_mask` with stored hyper-parameters; also runs on CHW batches (numpy or torch)."""

    open_radius: int = 2
    close_radius: int = 4
    blur_sigma: float = 1.0
    reduce: Reduce = "max"
    min_threshold: float = 0.06

    def __call__(self, background: Any, composite: Any) -> np.ndarray:
        """(H, W, 3) images -> (H, W) bool mask."""
        return difference_mask(
            background,
            composite,
            open_radius=self.open_radius,
            close_radius=self.close_radius,
            blur_sigma=self.blur_sigma,
            reduce=self.reduce,
            min_threshold=self.min_threshold,
        )

    def predict_batch(self, background: Any, composite: Any) -> np.ndarray:
        """Masks of a batch.

        Shape:
            background, composite: (B, 3, H, W) float in [0, 1] (numpy or torch, as in a batch dict);
            returns (B, 1, H, W) bool numpy.
        """
        from fgdepth.metrics import to_numpy

        bg, comp = to_numpy(background), to_numpy(composite)
        if bg.ndim != 4 or bg.shape != comp.shape:
            raise ValueError(f"expected two (B, 3, H, W) batches, got {bg.shape} and {comp.shape}")
        masks = [self(b.transpose(1, 2, 0), c.transpose(1, 2, 0)) for b, c in zip(bg, comp, strict=True)]
        h, w = bg.shape[2:]
        return np.stack(masks)[:, None] if masks else np.zeros((0, 1, h, w), bool)
