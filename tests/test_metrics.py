"""Known-value tests of fgdepth.metrics on hand-made masks and depth maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fgdepth.metrics import (
    DEPTH_KEYS,
    HEADLINE_KEYS,
    MASK_KEYS,
    MetricAccumulator,
    align_depth,
    depth_metrics,
    headline_metrics,
    mask_metrics,
    sample_metrics,
    ssim,
)


def _square(y: int, x: int, size: int, shape: tuple[int, int] = (10, 10)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


# --- masks -------------------------------------------------------------------------------------------
def test_mask_two_overlapping_squares():
    # 4x4 squares offset by (2, 2): overlap 2x2 = 4, union 16 + 16 - 4 = 28
    pred, target = _square(0, 0, 4), _square(2, 2, 4)
    m = mask_metrics(pred, target)
    assert set(m) == set(MASK_KEYS)
    assert m["mask_iou"] == pytest.approx(4 / 28)
    assert m["mask_precision"] == pytest.approx(4 / 16)
    assert m["mask_recall"] == pytest.approx(4 / 16)
    assert m["mask_f1"] == pytest.approx(2 * 4 / (16 + 16))


def test_mask_subset_precision_recall():
    pred, target = _square(0, 0, 2), _square(0, 0, 4)  # 4 pixels inside 16
    m = mask_metrics(pred, target)
    assert m["mask_precision"] == 1.0
    assert m["mask_recall"] == pytest.approx(4 / 16)
    assert m["mask_iou"] == pytest.approx(4 / 16)
    assert m["mask_f1"] == pytest.approx(2 * 0.25 / 1.25)


def test_mask_empty_cases():
    empty, full = np.zeros((5, 5), bool), _square(1, 1, 2, (5, 5))
    assert mask_metrics(empty, empty) == dict.fromkeys(MASK_KEYS, 1.0)
    assert mask_metrics(empty, full) == dict.fromkeys(MASK_KEYS, 0.0)
    assert mask_metrics(full, empty) == dict.fromkeys(MASK_KEYS, 0.0)
    assert mask_metrics(full, full) == dict.fromkeys(MASK_KEYS, 1.0)


def test_mask_accepts_torch_uint8_and_probabilities():
    target = _square(2, 2, 4)
    as_torch = torch.from_numpy(target.astype(np.float32))[None]  # (1, H, W)
    assert mask_metrics(as_torch, target)["mask_iou"] == 1.0
    assert mask_metrics(target.astype(np.uint8) * 255, target)["mask_iou"] == 1.0
    assert mask_metrics(target * 0.7, target)["mask_iou"] == 1.0


def test_mask_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        mask_metrics(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


# --- depth -------------------------------------------------------------------------------------------
def test_depth_known_values():
    target = np.array([[1.0, 2.0], [4.0, 5.0]])
    pred = np.array([[1.0, 2.0], [5.0, 4.0]])  # errors 0, 0, +1, -1
    m = depth_metrics(pred, target, with_ssim=False)
    assert set(m) == set(DEPTH_KEYS) - {"depth_ssim"}
    assert m["depth_abs_rel"] == pytest.approx((1 / 4 + 1 / 5) / 4)
    assert m["depth_sq_rel"] == pytest.approx((1 / 4 + 1 / 5) / 4)
    assert m["depth_rmse"] == pytest.approx(math.sqrt(2 / 4))
    assert m["depth_rmse_log"] == pytest.approx(math.sqrt((math.log(5 / 4) ** 2 * 2) / 4))
    assert m["depth_log10"] == pytest.approx(2 * math.log10(5 / 4) / 4)
    # ratio 1.25 is not < 1.25: two pixels fail delta1, all pass delta2
    assert m["depth_delta1"] == pytest.approx(0.5)
    assert m["depth_delta2"] == 1.0 and m["depth_delta3"] == 1.0


def test_depth_perfect_and_ssim():
    target = np.linspace(1, 5, 32 * 32).reshape(32, 32)
    m = depth_metrics(target.copy(), target)
    assert m["depth_abs_rel"] == 0 and m["depth_rmse"] == 0 and m["depth_delta1"] == 1
    assert m["depth_ssim"] == pytest.approx(1.0)
    noisy = target + np.random.default_rng(0).normal(0, 0.5, target.shape)
    assert ssim(noisy, target) < 0.9


def test_depth_invalid_pixels_ignored():
    target = np.array([[2.0, 0.0], [np.nan, 4.0]])
    pred = np.array([[2.0, 100.0], [100.0, 4.0]])
    m = depth_metrics(pred, target)
    assert m["depth_abs_rel"] == 0.0 and m["depth_rmse"] == 0.0
    extra = np.array([[1, 1], [1, 0]])  # also drop the last pixel
    pred2 = np.array([[2.0, 1.0], [1.0, 8.0]])
    assert depth_metrics(pred2, target, valid=extra)["depth_abs_rel"] == 0.0


def test_a_valid_mask_of_another_shape_is_refused():
    # a transposed (W, H) valid mask was reshaped to (H, W) silently and scored other pixels
    target = np.arange(1.0, 7.0).reshape(2, 3)
    valid = np.zeros((3, 2))
    valid[:, 0] = 1
    with pytest.raises(ValueError, match=r"valid.*\(3, 2\).*\(2, 3\)"):
        depth_metrics(target, target, valid=valid)
    with pytest.raises(ValueError, match=r"valid.*\(3, 2\).*\(2, 3\)"):
        ssim(target, target, valid)


def test_depth_no_valid_pixels_is_nan():
    m = depth_metrics(np.ones((3, 3)), np.zeros((3, 3)))
    assert set(m) == set(DEPTH_KEYS) and all(math.isnan(v) for v in m.values())


def test_depth_negative_prediction_clamped_before_logs():
    m = depth_metrics(np.array([[-1.0, 2.0]]), np.array([[1.0, 2.0]]))
    assert all(math.isfinite(v) for v in m.values())
    assert m["depth_delta3"] == 0.5


def test_median_alignment_recovers_scale():
    target = np.random.default_rng(1).uniform(1, 10, (16, 16))
    m = depth_metrics(target / 3.0, target, align="median")
    assert m["depth_abs_rel"] == pytest.approx(0.0, abs=1e-9)


def test_lstsq_alignment_recovers_scale_and_shift():
    target = np.random.default_rng(2).uniform(3.5, 10, (16, 16))
    pred = (target - 3.0) / 2.0
    assert depth_metrics(pred, target)["depth_abs_rel"] > 0.3
    m = depth_metrics(pred, target, align="lstsq")
    assert m["depth_abs_rel"] == pytest.approx(0.0, abs=1e-9)
    assert m["depth_delta1"] == 1.0


def test_lstsq_disparity_alignment_recovers_affine_disparity():
    target = np.random.default_rng(3).uniform(1, 10, (16, 16))
    pred = 1.0 / (0.5 / target + 0.2)  # a depth whose inverse is affine in the true inverse depth
    m = depth_metrics(pred, target, align="lstsq_disparity")
    assert m["depth_abs_rel"] == pytest.approx(0.0, abs=1e-9)


def test_alignment_ignores_invalid_and_handles_constant_pred():
    target = np.array([[1.0, 2.0, 0.0]])
    valid = target > 0
    out = align_depth(np.array([[2.0, 4.0, 1000.0]]), target, valid, "lstsq")
    assert out[0, :2] == pytest.approx([1.0, 2.0])
    const = align_depth(np.full((1, 3), 5.0), target, valid, "lstsq")  # falls back to median
    assert np.all(np.isfinite(const))
    with pytest.raises(ValueError, match="unknown align"):
        align_depth(target, target, valid, "bogus")  # type: ignore[arg-type]


def test_depth_accepts_torch_chw():
    t = torch.full((1, 4, 4), 2.0)
    assert depth_metrics(t * 1.25 * 1.01, t)["depth_delta1"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        depth_metrics(np.ones((2, 2)), np.ones((4, 4)))


# --- accumulation ------------------------------------------------------------------------------------
def test_accumulator_averages_and_skips_missing_depth():
    acc = MetricAccumulator()
    acc.update({"mask_iou": 1.0, "depth_abs_rel": 0.2})
    acc.update({"mask_iou": 0.5, "depth_abs_rel": math.nan})
    acc.update({"mask_iou": 0.0})
    out = acc.compute()
    assert out["mask_iou"] == pytest.approx(0.5)
    assert out["depth_abs_rel"] == pytest.approx(0.2)
    assert out["num_samples"] == 3 and out["num_depth_samples"] == 1
    assert len(acc) == 3
    assert acc.compute(prefix="baseline_")["baseline_mask_iou"] == pytest.approx(0.5)
    acc.reset()
    assert acc.compute() == {"num_samples": 0.0, "num_depth_samples": 0.0}


def test_sample_metrics_and_headline():
    mask = _square(2, 2, 4)
    depth = np.where(mask, 2.0, 4.0)
    m = sample_metrics(mask, mask, depth, depth)
    assert m["mask_iou"] == 1.0 and m["depth_abs_rel"] == 0.0
    acc = MetricAccumulator()
    acc.update(m)
    head = headline_metrics(acc.compute(), {"mask_iou": 0.4})
    assert tuple(head) == HEADLINE_KEYS
    assert head["baseline_mask_iou"] == 0.4 and head["num_samples"] == 1
