"""Registration of the two shots: undo what a static camera changes between them before the model sees them.

A camera on a shelf moves by a pixel between the shots (a door slammed, the mount warmed) and re-exposes (auto
exposure, white balance). The model is trained with such differences (``fgdepth.data.augment``), but a 1 px
misalignment at 160 px still cost the 6-minute models 0.04-0.11 mask IoU and a 15 % exposure change 0.01-0.04
(``benchmarks/shot_differences.py``). Both are global and cheap to measure from the pair itself, because the
people cover a few % of the image and the rest is the same room:

- the shift by phase correlation, refined by robust Lucas-Kanade (to a few hundredths of a pixel; the people's
  pixels are left out as outliers), and
- a gain per channel as the median ratio composite / background over pixels that are neither dark nor saturated
  (the people's pixels are outliers that the median ignores).

The background is then moved and re-exposed to match the composite; the composite, which the masks and depth
describe, is never touched. Differences below ``min_shift`` / ``min_gain`` are left alone: resampling blurs, and the
model has learnt small differences anyway. Pure functions on (H, W, 3) uint8 RGB arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# a pixel this dark or bright in either shot says little about the gain (noise, clipping)
_GAIN_RANGE = (16, 240)
# two shots of one room agree to this many levels (of 255) per channel: noise, JPEG
_AGREE = 6


@dataclass(frozen=True)
class Registration:
    """How the background differs from the composite: it shows the room moved by ``shift`` (dx, dy) pixels at the
    images' resolution and ``1 / gain`` as bright per channel (RGB). ``response``: the phase correlation's peak
    (0-1; higher is surer). ``applied``: the corrections :func:`register_background` made."""

    shift: tuple[float, float]
    gain: tuple[float, float, float]
    response: float
    applied: tuple[str, ...] = ()


def _small(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """``image`` with its short side at most ``size`` (area-averaged), and the scale applied."""
    scale = min(1.0, size / min(image.shape[:2]))
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image, scale


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` moved by (dx, dy) pixels: bilinear where fractional, edges repeated."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def _refine_shift(
    composite: np.ndarray, background: np.ndarray, dx: float, dy: float, iterations: int
) -> tuple[float, float]:
    """Lucas-Kanade on grey (H, W) float32 images, from (dx, dy): each step moves the background back by the
    current shift, fits its gain to the composite (the median ratio), and solves the 2x2 normal equations of the
    linearised difference over the pixels whose residual is within 3 robust sigmas (the people are not)."""
    a = cv2.GaussianBlur(composite, (0, 0), 1.0)
    b = cv2.GaussianBlur(background, (0, 0), 1.0)
    h, w = a.shape
    k = None
    for _ in range(iterations):
        m = int(np.ceil(max(abs(dx), abs(dy)))) + 3  # repeated edges carry no information
        if 2 * m + 8 > min(h, w):
            break
        moved = _shifted(b, -dx, -dy)
        inner = (slice(m, h - m), slice(m, w - m))
        a_in, b_in = a[inner], moved[inner]
        if k is None:  # the gain hardly changes with a fraction of a pixel: measured once
            lit = b_in > 8
            if np.count_nonzero(lit) < 64:
                break
            k = float(np.median(a_in[lit] / b_in[lit]))
        r = k * b_in - a_in
        sample = r[::2, ::2]  # robust scale from a quarter of the pixels
        sigma = 1.4826 * float(np.median(np.abs(sample - np.median(sample)))) + 1e-3
        keep = (np.abs(r) < 3 * sigma).astype(np.float32)
        gx = k * cv2.Sobel(moved, cv2.CV_32F, 1, 0, ksize=3)[inner] / 8
        gy = k * cv2.Sobel(moved, cv2.CV_32F, 0, 1, ksize=3)[inner] / 8
        hessian = np.array(
            [
                [np.sum(keep * gx * gx), np.sum(keep * gx * gy)],
                [np.sum(keep * gx * gy), np.sum(keep * gy * gy)],
            ],
            np.float64,
        )
        if np.linalg.cond(hessian) > 1e4:  # no texture, or texture in one direction only
            break
        step = np.linalg.solve(hessian, [np.sum(keep * gx * r), np.sum(keep * gy * r)])
        dx, dy = dx - float(step[0]), dy - float(step[1])
        if np.hypot(*step) < 0.01:
            break
    return dx, dy


def estimate_shift(
    background: np.ndarray, composite: np.ndarray, iterations: int = 6, refine_from: float = 0.0
) -> tuple[float, float, float]:
    """(dx, dy, response): the background shows the room moved by (dx, dy) pixels against the composite.

    Phase correlation of the grey images (through a Hann window) finds it to a few tenths of a pixel whatever its
    size; ``iterations`` of robust Lucas-Kanade refine it to a few hundredths (a refinement that wanders more than
    a pixel from the correlation's answer is dropped), where the correlation's shift is at least ``refine_from``
    pixels (a still camera's pairs need no refinement). ``response``: the correlation's peak, 0-1."""
    a = cv2.cvtColor(composite, cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(background, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if min(a.shape) < 2:  # no shift to measure along a single row or column (and no Hann window of 1 pixel)
        return 0.0, 0.0, 0.0
    window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F)
    # copies: OpenCV 5 applies the window to its inputs in place
    (dx, dy), response = cv2.phaseCorrelate(a.copy(), b.copy(), window)
    if np.hypot(dx, dy) >= refine_from:
        rx, ry = _refine_shift(a, b, dx, dy, iterations)
        if np.hypot(rx - dx, ry - dy) <= 1.0:
            dx, dy = rx, ry
    return float(dx), float(dy), float(response)


def _exposed(image: np.ndarray, gain: tuple[float, float, float]) -> np.ndarray:
    """``image`` (uint8) times ``gain`` per channel, rounded and clipped (a lookup table: no float image)."""
    levels = np.arange(256, dtype=np.float32)[:, None] * np.float32(gain)
    table = np.clip(levels.round(), 0, 255).astype(np.uint8).reshape(256, 1, 3)
    return cv2.LUT(image, table)


def agreement(background: np.ndarray, composite: np.ndarray, tolerance: int = _AGREE) -> float:
    """The share of pixels whose three channels all differ by at most ``tolerance`` between the shots."""
    diff = cv2.absdiff(background, composite)
    worst = np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])
    return np.count_nonzero(worst <= tolerance) / worst.size


def estimate_gain(background: np.ndarray, composite: np.ndarray) -> tuple[float, float, float]:
    """Per channel (RGB), the median of composite / background over pixels neither dark nor saturated in both
    shots (1.0 for a channel with too few such pixels). Give it aligned shots: edges moved apart are outliers."""
    lo, hi = _GAIN_RANGE
    # every other pixel of each row and column: a median of thousands of pixels is as good, 4x cheaper
    bg = background[::2, ::2].reshape(-1, 3)
    comp = composite[::2, ::2].reshape(-1, 3)
    gains = []
    for c in range(3):
        b, a = bg[:, c], comp[:, c]
        ok = (b >= lo) & (b < hi) & (a >= lo) & (a < hi)
        n = np.count_nonzero(ok)
        gains.append(float(np.median(a[ok].astype(np.float32) / b[ok])) if n >= 64 else 1.0)
    return gains[0], gains[1], gains[2]


def _best_agreement(background: np.ndarray, composite: np.ndarray) -> tuple[float, float, tuple]:
    """(agreement as it is, agreement re-exposed by :func:`estimate_gain`, that gain)."""
    gain = estimate_gain(background, composite)
    return agreement(background, composite), agreement(_exposed(background, gain), composite), gain


def register_background(
    background: np.ndarray,
    composite: np.ndarray,
    min_shift: float = 0.3,
    max_shift: float = 0.05,
    min_response: float = 0.05,
    min_gain: float = 0.03,
    size: int = 128,
) -> tuple[np.ndarray, Registration]:
    """The background moved and re-exposed to match the composite, and what was measured and done.

    Args:
        background, composite: (H, W, 3) uint8 RGB of one size.
        min_shift: move the background only if the shift is at least this long (pixels).
        max_shift: ... and at most this fraction of the short side (a larger one is not the same camera's
            jitter: a repeated pattern, or a moved camera, which no shift repairs).
        min_response: ... and the correlation's peak at least this high.
        min_gain: re-expose only if a channel's gain differs from 1 by at least this much.
        size: short side at which the shift and the gain are measured.

    Returns:
        (background (H, W, 3) uint8, :class:`Registration`); the input itself when nothing was applied.
    """
    if background.shape != composite.shape or background.ndim != 3 or background.shape[2] != 3:
        raise ValueError(
            f"background {background.shape} and composite {composite.shape} must be one (H, W, 3)"
        )
    if background.dtype != np.uint8 or composite.dtype != np.uint8:  # else an OpenCV traceback
        raise ValueError(
            f"background and composite must be uint8 RGB, got {background.dtype} and {composite.dtype}"
        )
    # measured on copies of at most ``size`` px (a 1080p pair costs about as much as a 128 px one), applied at full size
    small_bg, scale = _small(background, size)
    small_comp, _ = _small(composite, size)
    # the correlation alone is good to a few tenths: below half of min_shift, no refinement can reach min_shift
    dx, dy, response = estimate_shift(small_bg, small_comp, refine_from=0.5 * min_shift * scale)
    dx, dy = dx / scale, dy / scale
    applied: list[str] = []
    out = background
    # each correction must make more of the image agree: where people cover most of it, the median that measures
    # the gain (and the correlation) reads the people, and a "correction" would make the room disagree
    length = float(np.hypot(dx, dy))
    plain, exposed, gain = _best_agreement(small_bg, small_comp)
    if min_shift <= length <= max_shift * min(background.shape[:2]) and response >= min_response:
        moved = _shifted(small_bg, -dx * scale, -dy * scale)
        moved_plain, moved_exposed, moved_gain = _best_agreement(moved, small_comp)
        # each judged at its better exposure: shots exposed differently agree nowhere until re-exposed
        if max(moved_plain, moved_exposed) > max(plain, exposed):
            out = _shifted(out, -dx, -dy)
            plain, exposed, gain = moved_plain, moved_exposed, moved_gain
            applied.append("shift")
    if max(abs(g - 1.0) for g in gain) >= min_gain and exposed > plain:
        out = _exposed(out, gain)
        applied.append("gain")
    return out, Registration((dx, dy), gain, response, tuple(applied))
