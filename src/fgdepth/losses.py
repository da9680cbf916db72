"""Losses for the foreground mask and the scene depth: pure functions plus :class:`MultiTaskLoss`.

Conventions (all functions):

* ``logits``: (B, 1, H, W) raw mask logits; ``target`` mask: (B, 1, H, W) float in [0, 1] (soft targets allowed).
* ``pred`` / ``target`` depth: (B, 1, H, W) float, metres (or relative units); ``valid``: (B, 1, H, W) in {0, 1}
  or bool. Depth terms average over valid pixels only; zero valid pixels give 0 (never NaN) and zero gradient.
* Everything is computed in float32, also when the predictions come out of a bf16 autocast region.
* Returned losses are scalar tensors unless said otherwise.

Targets at input resolution are brought to the prediction's size by :func:`resize_mask` (area average, kept soft:
a low-resolution pixel half covered by a person gets 0.5, so thin limbs still pull on the logits) and
:func:`resize_depth` (valid-aware area average: only valid pixels enter the mean, so the 0s of unknown depth do
not bleed into their neighbours; an output pixel is valid when at least half its footprint is).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from fgdepth.data.schema import (
    DEPTH,
    DEPTH_PRED,
    DEPTH_VALID,
    LOSS,
    LOSS_DEPTH_GRAD,
    LOSS_DEPTH_L1,
    LOSS_DEPTH_LOG,
    LOSS_DEPTH_SILOG,
    LOSS_DEPTH_SSI,
    LOSS_DEPTH_SSIM,
    LOSS_DEPTH_TOTAL,
    LOSS_KEYS,
    LOSS_MASK_BCE,
    LOSS_MASK_DICE,
    LOSS_MASK_TOTAL,
    LOSS_W_DEPTH,
    LOSS_W_MASK,
    MASK,
    MASK_LOGITS,
)

Weighting = Literal["fixed", "uncertainty"]
DepthKind = Literal["metric", "relative"]


def _check_same(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(
            f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must be equal (B, C, H, W)"
        )


def _valid_bool(valid: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    if valid is None:
        return torch.ones_like(like, dtype=torch.bool)
    _check_same("valid", valid, "pred", like)
    return valid > 0.5 if valid.dtype != torch.bool else valid


def _masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ``valid`` (bool, same shape); 0 when nothing is valid."""
    v = valid.to(x.dtype)
    return (x * v).sum() / v.sum().clamp_min(1.0)


# --- resizing targets ------------------------------------------------------------------------------------


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average a mask to ``size``, keeping it soft.

    Shape:
        mask: (B, 1, H, W) in [0, 1] -> (B, 1, h, w) in [0, 1]
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask.float()
    return F.interpolate(mask.float(), size=size, mode="area")


def resize_depth(
    depth: torch.Tensor, valid: torch.Tensor | None, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid-aware area average of a depth map to ``size``.

    Shape:
        depth: (B, 1, H, W), valid: (B, 1, H, W) or None (then ``depth > 0``)
        -> depth (B, 1, h, w), valid (B, 1, h, w) float in {0, 1} (at least half the footprint valid)
    """
    v = (depth > 0) if valid is None else (valid > 0.5)
    v = v.float()
    depth = depth.float()
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth * v, v
    frac = F.interpolate(v, size=size, mode="area")
    mean = F.interpolate(depth * v, size=size, mode="area") / frac.clamp_min(1e-6)
    v_out = (frac >= 0.5).float()
    return mean * v_out, v_out


# --- mask --------------------------------------------------------------------------------------------------


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """``mask`` dilated by ``pixels`` (> 0) or eroded by ``-pixels`` (< 0), chessboard distance (square windows);
    the image's border does not erode.

    Shape:
        mask: (B, 1, H, W) in {0, 1} -> same shape, float
    """
    m, r = mask.float(), abs(pixels)
    if r == 0:
        return m
    return F.max_pool2d(m, 2 * r + 1, 1, r) if pixels > 0 else -F.max_pool2d(-m, 2 * r + 1, 1, r)


def boundary_band(mask: torch.Tensor, width: int = 2) -> torch.Tensor:
    """1 on pixels within ``width`` pixels (chessboard distance) of a boundary of the binary ``mask``, else 0:
    its dilation minus its erosion.

    Shape:
        mask: (B, 1, H, W) in {0, 1} -> same shape, float
    """
    return grow_mask(mask, width) - grow_mask(mask, -width)


def mask_bce(logits: torch.Tensor, target: torch.Tensor, boundary_weight: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy on logits, mean over pixels; with ``boundary_weight`` > 0 the pixels within 2 px of
    the true mask's boundary count ``1 + boundary_weight`` times (where a small person's IoU is lost).

    Shape:
        logits, target: (B, 1, H, W) -> scalar
    """
    _check_same("logits", logits, "target", target)
    if boundary_weight == 0:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    weight = 1.0 + boundary_weight * boundary_band((target > 0.5).float())
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (weight * bce).sum() / weight.sum()


def mask_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0, per_image: bool = False
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 |p t| + smooth) / (|p| + |t| + smooth)`` on ``p = sigmoid(logits)``.

    By default the sums run over the whole batch, so that frames without people do not dominate (and large
    people weigh most). ``per_image=True``: the mean of each image's Dice loss over the images that hold some
    foreground, as mean IoU weighs a small person like a large one (an empty batch gives 0).
    Perfect prediction -> ~0; disjoint masks -> ~1 (exactly 1 - smooth / (|p| + |t| + smooth)).

    Shape:
        logits, target: (B, 1, H, W) -> scalar in [0, 1]
    """
    _check_same("logits", logits, "target", target)
    p = torch.sigmoid(logits.float())
    t = target.float()
    if not per_image:
        inter = (p * t).sum()
        return 1.0 - (2.0 * inter + smooth) / (p.sum() + t.sum() + smooth)
    p, t = p.flatten(1), t.flatten(1)
    per = 1.0 - (2.0 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    has = (t.sum(1) > 0).float()
    return (per * has).sum() / has.sum().clamp_min(1.0)


def mask_bce_dice(
    logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0, dice_weight: float = 1.0
) -> torch.Tensor:
    """``bce_weight * mask_bce + dice_weight * mask_dice_loss``.

    Shape:
        logits, target: (B, 1, H, W) -> scalar
    """
    return bce_weight * mask_bce(logits, target) + dice_weight * mask_dice_loss(logits, target)


# --- depth -------------------------------------------------------------------------------------------------


def depth_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over valid pixels (0 if none).

    Shape:
        pred, target, valid: (B, 1, H, W) -> scalar, units of depth
    """
    _check_same("pred", pred, "target", target)
    v = _valid_bool(valid, pred)
    return _masked_mean((pred.float() - target.float()).abs(), v)


def _log_depth(depth: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """log of depth (B, 1, H, W), floored at ``eps`` so that unknown (0) pixels stay finite."""
    return torch.log(depth.float().clamp_min(eps))


def depth_log_l1(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1e-3
) -> torch.Tensor:
    """Mean |log(pred) - log(target)| over valid pixels: a relative error, the quantity AbsRel and delta1
    measure, so a far wall and a near floor count alike.

    Shape:
        pred, target, valid: (B, 1, H, W) -> scalar
    """
    _check_same("pred", pred, "target", target)
    v = _valid_bool(valid, pred) & (target > 0)
    diff = _log_depth(pred, eps) - _log_depth(target, eps)
    return _masked_mean(diff.abs(), v)


def depth_silog(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    variance_focus: float = 0.85,
    eps: float = 1e-3,
) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014, in the BTS / AdaBins form), mean over images:
    ``sqrt(mean(g^2) - variance_focus * mean(g)^2)`` with ``g = log(pred) - log(target)`` on an image's valid
    pixels.

    ``variance_focus = 1`` ignores a global scale error entirely (only the layout counts); 0 is the RMS of the
    log error. In between, the layout is learnt without waiting for the scale, which one image fixes only
    loosely (field of view, room size). Images without valid pixels are left out (0 if none has any).

    Shape:
        pred, target, valid: (B, 1, H, W) -> scalar
    """
    _check_same("pred", pred, "target", target)
    if not 0.0 <= variance_focus <= 1.0:
        raise ValueError(f"variance_focus must be in [0, 1], got {variance_focus}")
    v = (_valid_bool(valid, pred) & (target > 0)).float().flatten(1)
    g = _log_depth(pred, eps) - _log_depth(target, eps)
    g = g.flatten(1) * v
    n = v.sum(1)
    has = n > 0
    mean_g = g.sum(1) / n.clamp_min(1.0)
    mean_g2 = (g * g).sum(1) / n.clamp_min(1.0)
    # the clamp keeps sqrt's gradient finite at a perfect prediction
    per_image = (mean_g2 - variance_focus * mean_g * mean_g).clamp_min(1e-8).sqrt()
    return (per_image * has).sum() / has.sum().clamp_min(1)


def depth_gradient_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 between the finite-difference gradients (x and y) of pred and target.

    A difference counts when both of its pixels are valid; the mean runs over all counted x and y differences.

    Shape:
        pred, target, valid: (B, 1, H, W) -> scalar
    """
    _check_same("pred", pred, "target", target)
    v = _valid_bool(valid, pred).float()
    d = pred.float() - target.float()
    gx = (d[..., :, 1:] - d[..., :, :-1]).abs()
    gy = (d[..., 1:, :] - d[..., :-1, :]).abs()
    vx = v[..., :, 1:] * v[..., :, :-1]
    vy = v[..., 1:, :] * v[..., :-1, :]
    return ((gx * vx).sum() + (gy * vy).sum()) / (vx.sum() + vy.sum()).clamp_min(1.0)


def _gaussian_blur(x: torch.Tensor, window_size: int, sigma: float) -> torch.Tensor:
    """Separable gaussian blur with replicate padding; (..., H, W) -> same shape.

    As sums of shifted slices, not ``conv2d``: oneDNN's backward of a one-channel convolution took 2 ms for
    (32, 1, 54, 54) on CPU, and the loss's SSIM had six of them per step."""
    half = window_size // 2
    coords = [float(i - half) for i in range(window_size)]
    g = [math.exp(-(c * c) / (2 * sigma**2)) for c in coords]
    total = sum(g)
    g = [v / total for v in g]
    h, w = x.shape[-2:]
    y = F.pad(x.reshape(-1, 1, h, w), (half, half, half, half), mode="replicate")
    y = sum(g[k] * y[..., :, k : k + w] for k in range(window_size))
    y = sum(g[k] * y[..., k : k + h, :] for k in range(window_size))
    return y.reshape(x.shape)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float | torch.Tensor = 1.0,
    window_size: int = 7,
    sigma: float = 1.5,
    valid: torch.Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Structural similarity with a gaussian window (replicate padding, so the map keeps the input size).

    ``data_range`` is the dynamic range L of the values (C1 = (0.01 L)^2, C2 = (0.03 L)^2): a float, or a
    (B,) tensor for one range per image. With ``reduction="mean"``, the map is averaged over ``valid`` pixels
    (all if None; 0 if none is valid).

    Shape:
        x, y: (B, C, H, W); valid: (B, C, H, W) or None -> map (B, C, H, W) or scalar; identical inputs -> 1
    """
    _check_same("x", x, "y", y)
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be odd and positive, got {window_size}")
    x, y = x.float(), y.float()
    rng = torch.as_tensor(data_range, dtype=x.dtype, device=x.device)
    if rng.ndim == 1:
        rng = rng.view(-1, 1, 1, 1)
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    # the five local means in one blur of a (5, B, C, H, W) stack
    mx, my, exx, eyy, exy = _gaussian_blur(torch.stack([x, y, x * x, y * y, x * y]), window_size, sigma)
    sxx, syy, sxy = exx - mx * mx, eyy - my * my, exy - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    if reduction == "none":
        return smap
    return _masked_mean(smap, _valid_bool(valid, x))


def depth_ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    data_range: float | torch.Tensor | None = 10.0,
    window_size: int = 7,
) -> torch.Tensor:
    """``(1 - SSIM) / 2`` averaged over valid pixels, clamped to [0, 1].

    Invalid target pixels are replaced by the (detached) prediction before filtering, so unknown depth (0) does
    not bleed into the windows of valid neighbours. ``data_range=None`` uses each image's largest valid target.

    Shape:
        pred, target, valid: (B, 1, H, W) -> scalar in [0, 1]
    """
    _check_same("pred", pred, "target", target)
    v = _valid_bool(valid, pred)
    pred = pred.float()
    target = torch.where(v, target.float(), pred.detach())
    if data_range is None:
        data_range = (target * v).flatten(1).amax(dim=1).clamp_min(1e-6)
    smap = ssim(pred, target, data_range, window_size, reduction="none")
    return _masked_mean(((1.0 - smap) / 2.0).clamp(0.0, 1.0), v)


def depth_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    l1_weight: float = 0.1,
    grad_weight: float = 1.0,
    ssim_weight: float = 1.0,
    data_range: float = 10.0,
) -> torch.Tensor:
    """DenseDepth's mix: ``0.1 * L1 + 1 * gradient L1 + 1 * (1 - SSIM) / 2`` over valid pixels.

    Shape:
        pred, target, valid: (B, 1, H, W) -> scalar
    """
    return (
        l1_weight * depth_l1(pred, target, valid)
        + grad_weight * depth_gradient_loss(pred, target, valid)
        + ssim_weight * depth_ssim_loss(pred, target, valid, data_range)
    )


def align_scale_shift(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image least-squares ``(scale, shift)`` minimising ``sum_valid (scale * pred + shift - target)^2``.

    Gradients flow through both (as in MiDaS). Degenerate images (fewer than two distinct valid predictions,
    e.g. no valid pixel) get ``scale = 0`` and ``shift`` = mean valid target (0 if none), still a least-squares
    optimum.

    Shape:
        pred, target, valid: (B, 1, H, W) -> scale (B,), shift (B,)
    """
    _check_same("pred", pred, "target", target)
    v = _valid_bool(valid, pred).float().flatten(1)
    p, t = pred.float().flatten(1), target.float().flatten(1)
    n = v.sum(1).clamp_min(1.0)
    mean_p, mean_t = (v * p).sum(1) / n, (v * t).sum(1) / n
    pc, tc = (p - mean_p[:, None]) * v, (t - mean_t[:, None]) * v  # centred: a stable 1-D solve
    var_p = (pc * pc).sum(1)
    ok = var_p > 1e-12 * (mean_p * mean_p * n).clamp_min(1e-12)
    scale = torch.where(ok, (pc * tc).sum(1) / torch.where(ok, var_p, torch.ones_like(var_p)), 0.0 * var_p)
    shift = mean_t - scale * mean_p
    return scale, shift


def scale_shift_invariant_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """MiDaS-style loss for relative depth: align pred per image (:func:`align_scale_shift`), then L1.

    ``loss(2 * t + 3, t) == 0``.

    Shape:
        pred, target, valid: (B, 1, H, W) -> scalar
    """
    scale, shift = align_scale_shift(pred, target, valid)
    aligned = scale.view(-1, 1, 1, 1) * pred.float() + shift.view(-1, 1, 1, 1)
    return depth_l1(aligned, target, valid)


# --- combination -------------------------------------------------------------------------------------------


class MultiTaskLoss(nn.Module):
    """Mask (BCE + Dice) and depth losses combined with fixed or learned (Kendall et al. 2018) weights.

    ``forward(outputs, batch)`` takes the model's output dict (``mask_logits``, ``depth``) and a batch dict
    (``mask``, optionally ``depth`` and ``depth_valid``, at input resolution: they are resized to the outputs'
    size, see the module docstring) and returns a dict of scalars with the keys named in
    :mod:`fgdepth.data.schema`: ``loss`` (to minimise), ``mask_bce``, ``mask_dice``, ``depth_l1``,
    ``depth_grad``, ``depth_ssim``, ``mask_total``, ``depth_total``, ``w_mask``, ``w_depth`` (effective task
    weights), and ``depth_ssi`` when ``depth_kind="relative"``.

    * ``depth_kind="metric"``: depth = l1_weight * L1 + log_weight * log-L1 + silog_weight * SILog
      + grad_weight * grad + ssim_weight * (1 - SSIM) / 2, SSIM with ``data_range=depth_range`` metres.
      DenseDepth's mix is (0.1, 0, 0, 1, 1) with ``log_structure=False``; the default (0.1, 0, 1, 1, 1) adds
      SILog (:func:`depth_silog`), a log error, so relative as AbsRel and delta1 are, that lets the layout be
      learnt apart from the scale: on the procedural world (6 CPU minutes, tiny) test AbsRel 0.224 / delta1
      0.592 against 0.238 / 0.567 with log-L1 (weight 1) in its place. ``silog_variance_focus`` (0.85) is how much of an image's mean log error
      SILog forgives (1: the scale is free). ``log_structure=True`` (default) computes the gradient and SSIM
      terms on log depth (SSIM range ``log(depth_range)``): a step is weighed by its ratio, as the metrics weigh
      errors, not by its metres (tiny, 6 CPU min, three paired runs: delta1 +0.005 to +0.009, on the people's
      pixels +0.04 to +0.10; docs/experiments.md, U); ``False`` gives DenseDepth's metric terms.
    * ``depth_kind="relative"``: the prediction is first aligned per image by least-squares scale and shift;
      depth = ssi_weight * depth_ssi + grad_weight * grad + ssim_weight * (1 - SSIM) / 2, all on the aligned
      prediction (SSIM range: each image's largest target). ``depth_l1`` is then the unaligned L1, logged only.
    * mask = bce_weight * BCE + dice_weight * Dice; ``boundary_weight`` > 0 counts the pixels within 2 px of a
      person's outline that much more in the BCE, ``dice_per_image=True`` averages Dice over images (see
      :func:`mask_bce`, :func:`mask_dice_loss`); both off by default: neither moved the 6-minute tiny's IoU
      beyond the spread between seeds (docs/experiments.md, U).
    * ``weighting="fixed"``: loss = mask_weight * mask_total + depth_weight * depth_total.
    * ``weighting="uncertainty"``: loss = sum_i weight_i * (exp(-s_i) * total_i + s_i) with learnable
      log-variances ``s = (s_mask, s_depth)`` initialised at 0 (give them to the optimiser: they are this module's
      parameters); ``mask_weight`` / ``depth_weight`` still scale each task (0 switches a task off).

    A batch without ``depth`` gives zero depth terms; without ``depth_valid``, valid = ``depth > 0``.

    ``forward(outputs, batch, depth_view=(view_outputs, view_batch))``, for a model with a depth branch: the depth
    terms come from the branch's outputs on its own view of the samples (the whole image, smaller), and that
    view's mask terms join the mask task with weight ``aux_mask_weight`` (it tells the branch where people are);
    ``mask_*`` and ``depth_*`` report the main outputs' mask and the view's depth. Outputs without ``depth`` and
    no view give zero depth terms.
    """

    def __init__(
        self,
        weighting: Weighting = "fixed",
        depth_kind: DepthKind = "metric",
        mask_weight: float = 1.0,
        depth_weight: float = 1.0,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        l1_weight: float = 0.1,
        grad_weight: float = 1.0,
        ssim_weight: float = 1.0,
        ssi_weight: float = 1.0,
        log_weight: float = 0.0,
        silog_weight: float = 1.0,
        silog_variance_focus: float = 0.85,
        depth_range: float = 10.0,
        aux_mask_weight: float = 0.2,
        log_structure: bool = True,
        boundary_weight: float = 0.0,
        dice_per_image: bool = False,
    ) -> None:
        super().__init__()
        if weighting not in ("fixed", "uncertainty"):
            raise ValueError(f"unknown weighting {weighting!r}; valid: fixed, uncertainty")
        if depth_kind not in ("metric", "relative"):
            raise ValueError(f"unknown depth_kind {depth_kind!r}; valid: metric, relative")
        self.weighting, self.depth_kind = weighting, depth_kind
        self.mask_weight, self.depth_weight = mask_weight, depth_weight
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.l1_weight, self.grad_weight, self.ssim_weight, self.ssi_weight = (
            l1_weight,
            grad_weight,
            ssim_weight,
            ssi_weight,
        )
        self.log_weight, self.silog_weight = log_weight, silog_weight
        if not 0.0 <= silog_variance_focus <= 1.0:
            raise ValueError(f"silog_variance_focus must be in [0, 1], got {silog_variance_focus}")
        self.silog_variance_focus = silog_variance_focus
        self.depth_range = depth_range
        self.aux_mask_weight = aux_mask_weight
        self.log_structure = log_structure
        self.boundary_weight, self.dice_per_image = boundary_weight, dice_per_image
        self.log_vars = nn.Parameter(torch.zeros(2)) if weighting == "uncertainty" else None

    def extra_repr(self) -> str:
        return f"weighting={self.weighting!r}, depth_kind={self.depth_kind!r}"

    def _depth_terms(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        zero = pred.sum() * 0.0
        names = [k for k in LOSS_KEYS if k.startswith("depth_")]
        if self.depth_kind == "relative":
            names.append(LOSS_DEPTH_SSI)
        if DEPTH not in batch:
            return dict.fromkeys(names, zero)
        target, valid = resize_depth(batch[DEPTH], batch.get(DEPTH_VALID), tuple(pred.shape[-2:]))
        out = {
            LOSS_DEPTH_L1: depth_l1(pred, target, valid),
            LOSS_DEPTH_SILOG: depth_silog(pred, target, valid, self.silog_variance_focus),
        }
        if self.depth_kind == "metric":
            # log_structure: edges and structure as ratios, like the metrics: 10 cm at 1 m counts as 80 cm at 8 m
            p, t, data_range = pred, target, self.depth_range
            if self.log_structure:
                p, t, data_range = _log_depth(pred), _log_depth(target), math.log(self.depth_range)
            out[LOSS_DEPTH_GRAD] = depth_gradient_loss(p, t, valid)
            out[LOSS_DEPTH_SSIM] = depth_ssim_loss(p, t, valid, data_range)
            out[LOSS_DEPTH_LOG] = depth_log_l1(pred, target, valid)
            first = (
                self.l1_weight * out[LOSS_DEPTH_L1]
                + self.log_weight * out[LOSS_DEPTH_LOG]
                + self.silog_weight * out[LOSS_DEPTH_SILOG]
            )
        else:
            scale, shift = align_scale_shift(pred, target, valid)
            aligned = scale.view(-1, 1, 1, 1) * pred.float() + shift.view(-1, 1, 1, 1)
            out[LOSS_DEPTH_SSI] = depth_l1(aligned, target, valid)
            out[LOSS_DEPTH_GRAD] = depth_gradient_loss(aligned, target, valid)
            out[LOSS_DEPTH_SSIM] = depth_ssim_loss(aligned, target, valid, None)
            # logged only: relative depth has no scale
            out[LOSS_DEPTH_LOG] = depth_log_l1(pred, target, valid)
            first = self.ssi_weight * out[LOSS_DEPTH_SSI]
        out[LOSS_DEPTH_TOTAL] = (
            first + self.grad_weight * out[LOSS_DEPTH_GRAD] + self.ssim_weight * out[LOSS_DEPTH_SSIM]
        )
        return out

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        batch: dict[str, torch.Tensor],
        depth_view: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        # Losses run in float32 even under autocast: SSIM's variances (E[x^2] - E[x]^2) cancel catastrophically in
        # bf16 and gave NaN gradients after ~10 steps.
        device_type = outputs[MASK_LOGITS].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward(outputs, batch, depth_view)

    def _mask_terms(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = logits.float()
        mask = resize_mask(batch[MASK], tuple(logits.shape[-2:]))
        out = {
            LOSS_MASK_BCE: mask_bce(logits, mask, self.boundary_weight),
            LOSS_MASK_DICE: mask_dice_loss(logits, mask, per_image=self.dice_per_image),
        }
        out[LOSS_MASK_TOTAL] = self.bce_weight * out[LOSS_MASK_BCE] + self.dice_weight * out[LOSS_MASK_DICE]
        return out

    def _forward(
        self,
        outputs: dict[str, torch.Tensor],
        batch: dict[str, torch.Tensor],
        depth_view: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None,
    ) -> dict[str, torch.Tensor]:
        logits = outputs[MASK_LOGITS]
        out = self._mask_terms(logits, batch)
        mask_task = out[LOSS_MASK_TOTAL]
        if depth_view is not None:
            view_outputs, view_batch = depth_view
            out.update(self._depth_terms(view_outputs[DEPTH_PRED].float(), view_batch))
            aux = self._mask_terms(view_outputs[MASK_LOGITS], view_batch)[LOSS_MASK_TOTAL]
            mask_task = mask_task + self.aux_mask_weight * aux
        elif DEPTH_PRED in outputs:
            out.update(self._depth_terms(outputs[DEPTH_PRED].float(), batch))
        else:
            out.update(self._depth_terms(logits.float(), {}))  # zeros, still attached to the graph
        if self.log_vars is None:
            w_mask = torch.tensor(self.mask_weight, device=logits.device)
            w_depth = torch.tensor(self.depth_weight, device=logits.device)
            total = w_mask * mask_task + w_depth * out[LOSS_DEPTH_TOTAL]
        else:
            s_mask, s_depth = self.log_vars[0], self.log_vars[1]
            total = self.mask_weight * (torch.exp(-s_mask) * mask_task + s_mask)
            total = total + self.depth_weight * (torch.exp(-s_depth) * out[LOSS_DEPTH_TOTAL] + s_depth)
            w_mask = (self.mask_weight * torch.exp(-s_mask)).detach()
            w_depth = (self.depth_weight * torch.exp(-s_depth)).detach()
        out[LOSS] = total
        out[LOSS_W_MASK], out[LOSS_W_DEPTH] = w_mask, w_depth
        return out
