"""Evaluation maths: per-image mask and depth metrics, and an accumulator that averages them over a set.

Every function is pure, takes numpy arrays (torch tensors are converted; singleton leading dims such as
``(1, H, W)`` are squeezed) and returns ``dict[str, float]`` with the fixed keys listed below, so that the
evaluate command, the training logs (``val/mask_iou``) and the report agree.

Mask keys:  ``mask_iou, mask_f1, mask_precision, mask_recall``.
Depth keys: ``depth_abs_rel, depth_sq_rel, depth_rmse, depth_rmse_log, depth_log10, depth_delta1,
depth_delta2, depth_delta3, depth_ssim``.
Headline keys of an evaluation (see :func:`headline_metrics`): ``HEADLINE_KEYS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import cv2
import numpy as np

MASK_KEYS = ("mask_iou", "mask_f1", "mask_precision", "mask_recall")
DEPTH_KEYS = (
    "depth_abs_rel",
    "depth_sq_rel",
    "depth_rmse",
    "depth_rmse_log",
    "depth_log10",
    "depth_delta1",
    "depth_delta2",
    "depth_delta3",
    "depth_ssim",
)
HEADLINE_KEYS = (
    "mask_iou",
    "mask_f1",
    "depth_abs_rel",
    "depth_rmse",
    "depth_delta1",
    "baseline_mask_iou",
    "num_samples",
)
# Metrics where a smaller value is better (the report marks the better of model / baseline).
LOWER_IS_BETTER = frozenset({"depth_abs_rel", "depth_sq_rel", "depth_rmse", "depth_rmse_log", "depth_log10"})

Align = Literal["none", "median", "lstsq", "lstsq_disparity"]
ALIGN_MODES = ("none", "median", "lstsq", "lstsq_disparity")

DEPTH_EPS = 1e-6  # predictions are clamped to this before logs and ratios (depth may be relative units)
DISPARITY_FLOOR = 1e-3  # aligned inverse depth is clamped here, i.e. depth capped at 1000 units


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of ``x`` (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _as_2d(x: Any, name: str) -> np.ndarray:
    a = to_numpy(x)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (H, W) (or (1, H, W)), got shape {a.shape}")
    return a


def _as_bool_mask(x: Any, name: str) -> np.ndarray:
    a = _as_2d(x, name)
    return a if a.dtype == bool else a > 0.5


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {a.shape} and {b.shape}; resize the pred")


# --- masks -------------------------------------------------------------------------------------------
def mask_metrics(pred: Any, target: Any) -> dict[str, float]:
    """IoU, F1 (= Dice), precision and recall of a predicted foreground mask.

    Shape:
        pred, target: (H, W) bool. Non-bool input is thresholded at 0.5, so probabilities and 0/1 or 0/255
        masks work; threshold logits yourself (``logits > 0``).

    Empty cases: a ratio whose denominator is 0 is 1.0 when both masks are empty (nothing to find, nothing
    found: a perfect answer) and 0.0 otherwise. So an empty prediction of a non-empty target scores 0 on
    every metric, and so does a non-empty prediction of an empty target.
    """
    p, t = _as_bool_mask(pred, "pred"), _as_bool_mask(target, "target")
    _same_shape(p, t, "pred and target")
    tp = float(np.count_nonzero(p & t))
    fp = float(np.count_nonzero(p & ~t))
    fn = float(np.count_nonzero(~p & t))
    both_empty = tp + fp + fn == 0

    def ratio(num: float, den: float) -> float:
        if den == 0:
            return 1.0 if both_empty else 0.0
        return num / den

    return {
        "mask_iou": ratio(tp, tp + fp + fn),
        "mask_f1": ratio(2 * tp, 2 * tp + fp + fn),
        "mask_precision": ratio(tp, tp + fp),
        "mask_recall": ratio(tp, tp + fn),
    }


# --- depth -------------------------------------------------------------------------------------------
def valid_depth_mask(target: Any, valid: Any | None = None, pred: Any | None = None) -> np.ndarray:
    """Pixels where depth can be scored: target finite and > 0, ``valid`` true (if given), pred finite.

    Shape:
        target, valid, pred: (H, W); returns (H, W) bool.
    """
    t = to_numpy(target)
    with np.errstate(invalid="ignore"):
        m = np.isfinite(t) & (t > 0)
    if valid is not None:
        v = to_numpy(valid)
        v = v if v.dtype == bool else v > 0.5
        m &= _reshaped_like(v, m, "valid")
    if pred is not None:
        m &= _reshaped_like(np.isfinite(to_numpy(pred)), m, "pred")
    return m


def _reshaped_like(a: np.ndarray, like: np.ndarray, name: str) -> np.ndarray:
    """``a`` in ``like``'s shape, up to singleton dims (a reshape alone would take a transposed mask silently)."""
    if a.squeeze().shape != like.squeeze().shape:
        raise ValueError(f"{name} {a.shape} must have the target's shape {like.shape}")
    return a.reshape(like.shape)


def align_depth(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, align: Align) -> np.ndarray:
    """Rescale ``pred`` onto ``target`` using only the ``valid`` pixels (returns a new float64 array).

    Modes:
        ``none``: unchanged.
        ``median``: ``pred * median(target) / median(pred)`` (scale only; for metric depth up to scale).
        ``lstsq``: least-squares scale ``s`` and shift ``b`` minimising ``|s * pred + b - target|^2``
            (for relative, affine-invariant depth).
        ``lstsq_disparity``: the same fit in inverse-depth space, ``s / pred + b ~ 1 / target``, then
            inverted back; the aligned inverse depth is clamped at ``DISPARITY_FLOOR`` (MiDaS-style
            evaluation of affine-invariant disparity predictions). Both inputs are depths.
    Degenerate fits (constant prediction, fewer than 2 valid pixels) fall back to ``median``.

    Shape:
        pred, target, valid: (H, W); any shape works as long as all three agree.
    """
    if align not in ALIGN_MODES:
        raise ValueError(f"unknown align {align!r}; valid: {', '.join(ALIGN_MODES)}")
    p = pred.astype(np.float64)
    if align == "none" or not valid.any():
        return p
    pv, tv = p[valid], target[valid].astype(np.float64)
    if align in ("lstsq", "lstsq_disparity"):
        x, y = pv, tv
        if align == "lstsq_disparity":
            x, y = 1.0 / np.maximum(pv, DEPTH_EPS), 1.0 / tv
        fit = _lstsq_scale_shift(x, y)
        if fit is not None:
            s, b = fit
            if align == "lstsq":
                return s * p + b
            return 1.0 / np.maximum(s / np.maximum(p, DEPTH_EPS) + b, DISPARITY_FLOOR)
    med_p = float(np.median(pv))
    return p * (float(np.median(tv)) / med_p) if med_p > 0 else p


def _lstsq_scale_shift(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Closed-form least squares of ``y ~ s * x + b``; None when ``x`` is (nearly) constant."""
    if x.size < 2:
        return None
    mx, my = x.mean(), y.mean()
    var = float(np.mean((x - mx) ** 2))
    if var <= 1e-12 * max(1.0, mx * mx):
        return None
    s = float(np.mean((x - mx) * (y - my))) / var
    return s, float(my - s * mx)


def depth_metrics(
    pred: Any,
    target: Any,
    valid: Any | None = None,
    align: Align = "none",
    with_ssim: bool = True,
) -> dict[str, float]:
    """Standard monocular-depth errors of ``pred`` against ``target`` on valid pixels.

    Valid pixels: target finite and > 0, pred finite, and ``valid`` (if given). After alignment (see
    :func:`align_depth`), with ``p`` clamped to ``DEPTH_EPS`` for logs and ratios:
    ``abs_rel = mean(|p - t| / t)``, ``sq_rel = mean((p - t)^2 / t)``, ``rmse = sqrt(mean((p - t)^2))``,
    ``rmse_log = sqrt(mean((ln p - ln t)^2))``, ``log10 = mean(|log10 p - log10 t|)``,
    ``delta_k = mean(max(p / t, t / p) < 1.25^k)``, and ``ssim`` from :func:`ssim` on the aligned map.
    With no valid pixel every value is NaN (the accumulator skips such images).

    Shape:
        pred, target: (H, W) float, same units (metres, or relative units); valid: (H, W) bool or {0, 1}.
    """
    t = _as_2d(target, "target").astype(np.float64)
    p = _as_2d(pred, "pred")
    _same_shape(p, t, "pred and target")
    v = valid_depth_mask(t, None if valid is None else _as_2d(valid, "valid"), p)
    keys = DEPTH_KEYS if with_ssim else DEPTH_KEYS[:-1]
    if not v.any():
        return dict.fromkeys(keys, math.nan)
    p = align_depth(p, t, v, align)
    pv, tv = p[v], t[v]
    pc = np.maximum(pv, DEPTH_EPS)
    diff = pv - tv
    ratio = np.maximum(pc / tv, tv / pc)
    out = {
        "depth_abs_rel": float(np.mean(np.abs(diff) / tv)),
        "depth_sq_rel": float(np.mean(diff**2 / tv)),
        "depth_rmse": float(np.sqrt(np.mean(diff**2))),
        "depth_rmse_log": float(np.sqrt(np.mean((np.log(pc) - np.log(tv)) ** 2))),
        "depth_log10": float(np.mean(np.abs(np.log10(pc) - np.log10(tv)))),
        "depth_delta1": float(np.mean(ratio < 1.25)),
        "depth_delta2": float(np.mean(ratio < 1.25**2)),
        "depth_delta3": float(np.mean(ratio < 1.25**3)),
    }
    if with_ssim:
        out["depth_ssim"] = ssim(p, t, v)
    return out


def ssim(a: Any, b: Any, valid: Any | None = None, sigma: float = 1.5) -> float:
    """Mean structural similarity of two depth maps over valid pixels; ``b`` is the reference (target).

    Both maps are normalised by the reference's valid range (``(x - min b) / (max b - min b)``), so the
    SSIM constants (``C1 = 0.01^2``, ``C2 = 0.03^2`` for a data range of 1) hold whatever the units. Local
    statistics use an 11x11 Gaussian window (``sigma``) with normalised convolution: invalid pixels carry
    zero weight instead of pulling the local means towards 0. ``valid`` defaults to
    :func:`valid_depth_mask` of ``b``. NaN if no pixel is valid; 1.0 for identical maps.

    Shape:
        a, b: (H, W) float; valid: (H, W) bool.
    """
    x, y = _as_2d(a, "a").astype(np.float64), _as_2d(b, "b").astype(np.float64)
    _same_shape(x, y, "a and b")
    v = valid_depth_mask(y, None if valid is None else _as_2d(valid, "valid"), x)
    if not v.any():
        return math.nan
    lo, hi = float(y[v].min()), float(y[v].max())
    scale = hi - lo if hi > lo else 1.0
    w = v.astype(np.float64)
    x = np.where(v, (x - lo) / scale, 0.0)
    y = np.where(v, (y - lo) / scale, 0.0)

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), sigma, borderType=cv2.BORDER_CONSTANT)

    wsum = np.maximum(blur(w), 1e-12)
    mx, my = blur(w * x) / wsum, blur(w * y) / wsum
    vx = np.maximum(blur(w * x * x) / wsum - mx * mx, 0.0)
    vy = np.maximum(blur(w * y * y) / wsum - my * my, 0.0)
    cxy = blur(w * x * y) / wsum - mx * my
    c1, c2 = 0.01**2, 0.03**2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.mean(smap[v]))


def sample_metrics(
    pred_mask: Any,
    target_mask: Any,
    pred_depth: Any | None = None,
    target_depth: Any | None = None,
    valid: Any | None = None,
    align: Align = "none",
) -> dict[str, float]:
    """Mask metrics, plus depth metrics when both depths are given, of one image (one flat dict)."""
    out = mask_metrics(pred_mask, target_mask)
    if pred_depth is not None and target_depth is not None:
        out.update(depth_metrics(pred_depth, target_depth, valid, align))
    return out


# --- averaging over a set ----------------------------------------------------------------------------
class MetricAccumulator:
    """Averages per-image metric dicts over a set of images.

    Each key is the mean over the images that reported a finite value for it, so images without valid depth
    (NaN depth metrics, or no depth keys at all) do not count towards depth means. ``compute()`` adds
    ``num_samples`` (images seen) and ``num_depth_samples`` (images with a finite ``depth_abs_rel``).

    Example::

        acc = MetricAccumulator()
        for ...:
            acc.update(sample_metrics(pred_mask, mask, pred_depth, depth, valid))
        acc.compute()  # {"mask_iou": ..., "depth_abs_rel": ..., "num_samples": 12.0, ...}
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.num_samples = 0
        self.num_depth_samples = 0

    def update(self, metrics: Mapping[str, float]) -> None:
        """Add one image's metrics."""
        self.num_samples += 1
        for key, value in metrics.items():
            value = float(value)
            if not math.isfinite(value):
                continue
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1
        if math.isfinite(float(metrics.get("depth_abs_rel", math.nan))):
            self.num_depth_samples += 1

    def __len__(self) -> int:
        return self.num_samples

    def compute(self, prefix: str = "") -> dict[str, float]:
        """Flat dict of means plus ``num_samples`` and ``num_depth_samples``; every key gets ``prefix``."""
        out = {f"{prefix}{k}": self._sums[k] / self._counts[k] for k in self._sums}
        out[f"{prefix}num_samples"] = float(self.num_samples)
        out[f"{prefix}num_depth_samples"] = float(self.num_depth_samples)
        return out


def headline_metrics(
    model: Mapping[str, float], baseline: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The headline figures of an evaluation, exactly ``HEADLINE_KEYS`` (missing values are NaN).

    ``model`` is a :meth:`MetricAccumulator.compute` dict of the network; ``baseline`` one of the classical
    baseline (its ``mask_iou``, or ``baseline_mask_iou``, becomes ``baseline_mask_iou``).
    """
    out = {k: float(model.get(k, math.nan)) for k in HEADLINE_KEYS}
    if baseline is not None:
        value = baseline.get("mask_iou", baseline.get("baseline_mask_iou", math.nan))
        out["baseline_mask_iou"] = float(value)
    return out
