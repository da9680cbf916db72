"""Losses: known values, zero valid pixels, resizing, gradients, module == functions."""

from __future__ import annotations

import math

import pytest
import torch

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
    MASK,
    MASK_LOGITS,
)
from fgdepth.losses import (
    MultiTaskLoss,
    align_scale_shift,
    boundary_band,
    depth_gradient_loss,
    depth_l1,
    depth_log_l1,
    depth_loss,
    depth_silog,
    depth_ssim_loss,
    mask_bce,
    mask_bce_dice,
    mask_dice_loss,
    resize_depth,
    resize_mask,
    scale_shift_invariant_loss,
    ssim,
)

pytestmark = pytest.mark.usefixtures("one_thread")


ALL_DEPTH_FNS = [depth_l1, depth_gradient_loss, depth_ssim_loss, depth_loss, scale_shift_invariant_loss]


def _depth(b: int = 2, h: int = 16, w: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 1.0 + 4.0 * torch.rand(b, 1, h, w, generator=g)


# --- mask --------------------------------------------------------------------------------------------------


def test_bce_known_values() -> None:
    logits = torch.zeros(1, 1, 4, 4)
    target = (torch.rand(1, 1, 4, 4) > 0.5).float()
    assert float(mask_bce(logits, target)) == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    perfect = (target * 2 - 1) * 50.0
    assert float(mask_bce(perfect, target)) < 1e-6


def test_dice_known_values() -> None:
    target = torch.zeros(1, 1, 8, 8)
    target[..., :4, :] = 1
    perfect = (target * 2 - 1) * 50.0
    assert float(mask_dice_loss(perfect, target)) < 1e-6
    disjoint = -perfect  # predicts exactly the complement
    assert float(mask_dice_loss(disjoint, target)) == pytest.approx(1.0, abs=0.02)
    assert float(mask_bce_dice(perfect, target)) < 1e-5


def test_boundary_band_known_values() -> None:
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 2:7, 2:7] = 1  # a 5 x 5 square
    band = boundary_band(mask, width=1)
    # one pixel either side of the square's edge: the 7 x 7 ring minus the 3 x 3 core
    assert float(band.sum()) == 7 * 7 - 3 * 3
    assert (
        float(band[0, 0, 4, 4]) == 0.0 and float(band[0, 0, 1, 1]) == 1.0 and float(band[0, 0, 0, 0]) == 0.0
    )
    assert float(boundary_band(torch.ones(1, 1, 5, 5)).sum()) == 0.0  # the image's border is not a boundary


def test_bce_boundary_weight_counts_the_band_more() -> None:
    target = torch.zeros(1, 1, 12, 12)
    target[..., 4:8, 4:8] = 1
    far_wrong = (target * 2 - 1) * 50.0
    far_wrong[..., 0, 0] = 50.0  # one confident error far from the person
    edge_wrong = (target * 2 - 1) * 50.0
    edge_wrong[..., 3, 5] = 50.0  # the same error next to the boundary
    assert float(mask_bce(far_wrong, target)) == pytest.approx(float(mask_bce(edge_wrong, target)))
    weighted_far, weighted_edge = mask_bce(far_wrong, target, 3.0), mask_bce(edge_wrong, target, 3.0)
    assert float(weighted_edge) == pytest.approx(4.0 * float(weighted_far), rel=1e-4)
    # zero weight is the plain mean
    torch.testing.assert_close(mask_bce(far_wrong, target, 0.0), mask_bce(far_wrong, target))


def test_dice_per_image_weighs_small_people_like_large_ones() -> None:
    target = torch.zeros(3, 1, 8, 8)
    target[0, :, :6, :] = 1  # a large person, found
    target[1, :, 0, :2] = 1  # a small one, missed
    logits = (target * 2 - 1) * 50.0
    logits[1] = -50.0
    batch_dice = float(mask_dice_loss(logits, target))
    image_dice = float(mask_dice_loss(logits, target, per_image=True))
    assert batch_dice < 0.1  # the large person hides the miss
    # image 2 has no person and is left out: (0 + ~1) / 2
    assert image_dice == pytest.approx(0.5 * (1.0 - 1.0 / 3.0), abs=1e-3)
    assert float(mask_dice_loss(-torch.ones(2, 1, 4, 4) * 50, torch.zeros(2, 1, 4, 4), per_image=True)) == 0.0


def test_mask_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="must be equal"):
        mask_bce(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


# --- depth -------------------------------------------------------------------------------------------------


def test_perfect_depth_gives_zero() -> None:
    t = _depth()
    for fn in (depth_l1, depth_gradient_loss, depth_ssim_loss, depth_loss, scale_shift_invariant_loss):
        assert float(fn(t, t)) == pytest.approx(0.0, abs=1e-5), fn.__name__


def test_l1_known_offset_and_valid_mask() -> None:
    t = _depth()
    valid = torch.ones_like(t)
    valid[..., :, :10] = 0
    pred = t + 0.25
    pred[..., :, :10] += 100.0  # invalid pixels must not count
    assert float(depth_l1(pred, t, valid)) == pytest.approx(0.25, abs=1e-6)
    # a constant offset has no gradient
    assert float(depth_gradient_loss(t + 0.25, t, valid)) == pytest.approx(0.0, abs=1e-6)


def test_gradient_loss_known_value() -> None:
    t = torch.zeros(1, 1, 3, 3)
    pred = torch.tensor([0.0, 1.0, 2.0]).view(1, 1, 1, 3).expand(1, 1, 3, 3).contiguous()  # x-ramp of slope 1
    # 6 x-differences of 1, 6 y-differences of 0 -> mean 0.5
    assert float(depth_gradient_loss(pred, t)) == pytest.approx(0.5)
    valid = torch.ones_like(t)
    valid[..., 1] = 0  # the middle column kills every x-difference
    assert float(depth_gradient_loss(pred, t, valid)) == pytest.approx(0.0)


def test_ssim_identical_and_different() -> None:
    x = torch.rand(2, 1, 24, 24)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, x, reduction="none").shape == x.shape
    assert float(ssim(x, torch.rand(2, 1, 24, 24))) < 0.5
    assert float(ssim(x, 1 - x)) < 0  # anti-correlated structure
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, window_size=4)


def test_gaussian_blur_matches_a_2d_gaussian_convolution() -> None:
    from fgdepth.losses import _gaussian_blur

    x = torch.rand(2, 3, 13, 17)
    r, sigma = torch.arange(7.0) - 3, 1.5
    g = torch.exp(-(r**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :]) / g.sum() ** 2  # (7, 7), sums to 1
    padded = torch.nn.functional.pad(x.reshape(6, 1, 13, 17), (3, 3, 3, 3), mode="replicate")
    expected = torch.nn.functional.conv2d(padded, kernel.view(1, 1, 7, 7)).reshape(x.shape)
    torch.testing.assert_close(_gaussian_blur(x, 7, sigma), expected, rtol=1e-5, atol=1e-6)
    stacked = torch.stack([x, 2 * x])  # any leading dimensions
    torch.testing.assert_close(_gaussian_blur(stacked, 7, sigma)[1], 2 * expected, rtol=1e-5, atol=1e-6)


def test_ssim_tiny_images() -> None:
    x = torch.rand(1, 1, 2, 3)
    assert float(ssim(x, x, window_size=11)) == pytest.approx(1.0, abs=1e-5)


def test_ssim_loss_ignores_invalid_zeros() -> None:
    t = _depth()
    valid = torch.ones_like(t)
    valid[..., 5:9, 5:9] = 0
    t_holes = t * valid  # unknown depth stored as 0
    assert float(depth_ssim_loss(t, t_holes, valid)) == pytest.approx(0.0, abs=1e-5)
    assert float(depth_ssim_loss(t, t_holes)) > 1e-3  # without the mask the holes count


@pytest.mark.parametrize("fn", ALL_DEPTH_FNS, ids=lambda f: f.__name__)
def test_zero_valid_pixels_no_nan(fn) -> None:  # noqa: ANN001
    pred = _depth().requires_grad_(True)
    loss = fn(pred, _depth(seed=1), torch.zeros_like(pred))
    assert torch.isfinite(loss) and float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_scale_shift_invariance() -> None:
    t = _depth()
    valid = (torch.rand_like(t) > 0.3).float()
    scale, shift = align_scale_shift(2 * t + 3, t, valid)
    torch.testing.assert_close(scale, torch.full((2,), 0.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(shift, torch.full((2,), -1.5), atol=1e-3, rtol=0)
    assert float(scale_shift_invariant_loss(2 * t + 3, t, valid)) == pytest.approx(0.0, abs=1e-4)
    assert float(scale_shift_invariant_loss(torch.rand_like(t), t, valid)) > 0.1


def test_align_degenerate_constant_prediction() -> None:
    t = _depth()
    scale, shift = align_scale_shift(torch.ones_like(t), t)
    assert torch.all(scale == 0)
    torch.testing.assert_close(shift, t.flatten(1).mean(1))


def test_depth_loss_gradients_finite() -> None:
    pred = _depth(seed=2).requires_grad_(True)
    t = _depth()
    valid = (torch.rand_like(t) > 0.5).float()
    (depth_loss(pred, t, valid) + scale_shift_invariant_loss(pred, t, valid)).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


# --- resizing ----------------------------------------------------------------------------------------------


def test_resize_mask_soft_area() -> None:
    m = torch.zeros(1, 1, 4, 4)
    m[..., 0, 0] = 1
    r = resize_mask(m, (2, 2))
    assert float(r[0, 0, 0, 0]) == pytest.approx(0.25) and float(r.sum()) == pytest.approx(0.25)


def test_resize_depth_no_bleeding() -> None:
    d = torch.full((1, 1, 4, 4), 2.0)
    v = torch.ones_like(d)
    d[..., 0, 0], v[..., 0, 0] = 0.0, 0.0  # one unknown pixel
    d[..., 2:, 2:], v[..., 2:, 2:] = 0.0, 0.0  # a fully unknown block
    rd, rv = resize_depth(d, v, (2, 2))
    assert float(rd[0, 0, 0, 0]) == pytest.approx(2.0)  # not 1.5: the 0 did not bleed in
    assert rv[0, 0].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    assert float(rd[0, 0, 1, 1]) == 0.0
    rd2, rv2 = resize_depth(d, None, (2, 2))  # valid defaults to depth > 0
    torch.testing.assert_close(rd2, rd)
    torch.testing.assert_close(rv2, rv)


# --- the module --------------------------------------------------------------------------------------------


def _outputs_and_batch(b: int = 2, size: int = 32, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    out = {
        MASK_LOGITS: torch.randn(b, 1, size // 2, size // 2, generator=g, requires_grad=True),
        DEPTH_PRED: (1 + torch.rand(b, 1, size // 2, size // 2, generator=g)).requires_grad_(True),
    }
    depth = 1 + 3 * torch.rand(b, 1, size, size, generator=g)
    valid = (torch.rand(b, 1, size, size, generator=g) > 0.2).float()
    batch = {
        MASK: (torch.rand(b, 1, size, size, generator=g) > 0.5).float(),
        DEPTH: depth * valid,
        DEPTH_VALID: valid,
    }
    return out, batch


def test_module_matches_functions() -> None:
    out, batch = _outputs_and_batch()
    res = MultiTaskLoss(log_structure=False)(out, batch)
    assert set(res) == set(LOSS_KEYS)
    mask = resize_mask(batch[MASK], (16, 16))
    t, v = resize_depth(batch[DEPTH], batch[DEPTH_VALID], (16, 16))
    torch.testing.assert_close(res[LOSS_MASK_BCE], mask_bce(out[MASK_LOGITS], mask))
    torch.testing.assert_close(res[LOSS_MASK_DICE], mask_dice_loss(out[MASK_LOGITS], mask))
    torch.testing.assert_close(res[LOSS_DEPTH_L1], depth_l1(out[DEPTH_PRED], t, v))
    torch.testing.assert_close(res[LOSS_DEPTH_GRAD], depth_gradient_loss(out[DEPTH_PRED], t, v))
    torch.testing.assert_close(res[LOSS_DEPTH_SSIM], depth_ssim_loss(out[DEPTH_PRED], t, v))
    torch.testing.assert_close(res[LOSS_DEPTH_LOG], depth_log_l1(out[DEPTH_PRED], t, v))
    torch.testing.assert_close(res[LOSS_DEPTH_SILOG], depth_silog(out[DEPTH_PRED], t, v))
    expected = (
        mask_bce_dice(out[MASK_LOGITS], mask)
        + depth_loss(out[DEPTH_PRED], t, v)
        + depth_silog(out[DEPTH_PRED], t, v)
    )
    torch.testing.assert_close(res[LOSS], expected)
    # DenseDepth's own mix: no log terms
    dense = MultiTaskLoss(silog_weight=0.0, log_structure=False)(out, batch)
    torch.testing.assert_close(
        dense[LOSS], mask_bce_dice(out[MASK_LOGITS], mask) + depth_loss(out[DEPTH_PRED], t, v)
    )
    # log-L1 in place of SILog
    log_l1 = MultiTaskLoss(log_weight=2.0, silog_weight=0.0, log_structure=False)(out, batch)
    torch.testing.assert_close(log_l1[LOSS], dense[LOSS] + 2.0 * depth_log_l1(out[DEPTH_PRED], t, v))
    # SILog's variance focus reaches the function
    focused = MultiTaskLoss(silog_variance_focus=0.5)(out, batch)
    torch.testing.assert_close(focused[LOSS_DEPTH_SILOG], depth_silog(out[DEPTH_PRED], t, v, 0.5))
    assert not torch.allclose(focused[LOSS_DEPTH_SILOG], res[LOSS_DEPTH_SILOG])


def test_log_structure_compares_ratios() -> None:
    out, batch = _outputs_and_batch()
    res = MultiTaskLoss()(out, batch)  # the default
    t, v = resize_depth(batch[DEPTH], batch[DEPTH_VALID], (16, 16))
    log_p, log_t = torch.log(out[DEPTH_PRED].clamp_min(1e-3)), torch.log(t.clamp_min(1e-3))
    torch.testing.assert_close(res[LOSS_DEPTH_GRAD], depth_gradient_loss(log_p, log_t, v))
    torch.testing.assert_close(res[LOSS_DEPTH_SSIM], depth_ssim_loss(log_p, log_t, v, math.log(10.0)))
    # a global scale error leaves log gradients unchanged, not metric ones
    scaled = {**out, DEPTH_PRED: t * 2.0}
    exact = {**out, DEPTH_PRED: t.clone()}
    loss = MultiTaskLoss(log_structure=True)
    assert float(loss(scaled, batch)[LOSS_DEPTH_GRAD]) == pytest.approx(
        float(loss(exact, batch)[LOSS_DEPTH_GRAD]), abs=1e-5
    )
    assert float(MultiTaskLoss(log_structure=False)(scaled, batch)[LOSS_DEPTH_GRAD]) > 0.05


def test_depth_silog_known_values() -> None:
    target = torch.tensor([[[[1.0, 2.0], [4.0, 8.0]]]])
    # a global scale error: invisible at variance_focus 1, sqrt(1 - focus) * |log s| otherwise
    for focus in (0.0, 0.5, 0.85):
        got = float(depth_silog(3 * target, target, variance_focus=focus))
        assert got == pytest.approx(math.sqrt(1 - focus) * math.log(3), rel=1e-5)
    assert float(depth_silog(3 * target, target, variance_focus=1.0)) < 1e-3
    # a layout error with no net scale (x e^a, x e^-a on two pixels each): a, whatever the focus
    pred = target * torch.tensor([[[[math.e**0.3, math.e**-0.3], [math.e**-0.3, math.e**0.3]]]])
    assert float(depth_silog(pred, target, variance_focus=0.85)) == pytest.approx(0.3, rel=1e-5)
    # invalid pixels do not count; images without valid pixels leave the mean
    valid = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    wild = torch.tensor([[[[3.0, 6.0], [100.0, 0.01]]]])
    assert float(depth_silog(wild, target, valid, variance_focus=1.0)) < 1e-3
    both = depth_silog(
        torch.cat([pred, wild]), torch.cat([target, target]), torch.cat([torch.ones_like(valid), 0 * valid])
    )
    assert float(both) == pytest.approx(0.3, rel=1e-5)
    assert float(depth_silog(target, torch.zeros_like(target))) == 0.0
    # finite gradients at a perfect prediction
    p = target.clone().requires_grad_(True)
    depth_silog(p, target).backward()
    assert torch.isfinite(p.grad).all()
    with pytest.raises(ValueError, match="variance_focus"):
        depth_silog(target, target, variance_focus=1.5)


def test_depth_log_l1_known_values() -> None:
    target = torch.full((1, 1, 4, 4), 2.0)
    valid = torch.ones_like(target)
    valid[..., 0, :] = 0
    assert float(depth_log_l1(2 * target, target, valid)) == pytest.approx(math.log(2), rel=1e-6)
    assert float(depth_log_l1(target / 4, target, valid)) == pytest.approx(math.log(4), rel=1e-6)
    assert float(depth_log_l1(target, target, valid)) == 0.0
    # unknown depth (0) never counts, and nothing valid gives 0, not NaN
    assert float(depth_log_l1(target, torch.zeros_like(target))) == 0.0


def test_relative_depth_keys_and_invariance() -> None:
    out, batch = _outputs_and_batch()
    crit = MultiTaskLoss(depth_kind="relative")
    res = crit(out, batch)
    assert set(res) == set(LOSS_KEYS) | {LOSS_DEPTH_SSI}
    t, v = resize_depth(batch[DEPTH], batch[DEPTH_VALID], (16, 16))
    out[DEPTH_PRED] = (0.5 * t + 7).detach()  # right up to scale and shift
    res = crit(out, batch)
    for k in (LOSS_DEPTH_SSI, LOSS_DEPTH_GRAD, LOSS_DEPTH_SSIM):
        assert float(res[k]) == pytest.approx(0.0, abs=1e-4), k


def test_uncertainty_weighting_gets_gradients() -> None:
    out, batch = _outputs_and_batch()
    crit = MultiTaskLoss(weighting="uncertainty")
    assert [n for n, _ in crit.named_parameters()] == ["log_vars"]
    res = crit(out, batch)
    res[LOSS].backward()
    assert crit.log_vars.grad is not None and (crit.log_vars.grad.abs() > 0).all()
    assert out[MASK_LOGITS].grad is not None and out[DEPTH_PRED].grad is not None
    off = MultiTaskLoss(weighting="uncertainty", depth_weight=0.0)(out, batch)  # depth switched off
    torch.testing.assert_close(
        off[LOSS], MultiTaskLoss(weighting="uncertainty")(out, {MASK: batch[MASK]})[LOSS]
    )


def test_missing_depth_and_no_valid_pixels() -> None:
    out, batch = _outputs_and_batch()
    res = MultiTaskLoss()(out, {MASK: batch[MASK]})
    assert float(res[LOSS_DEPTH_L1].detach()) == 0.0 and torch.isfinite(res[LOSS])
    batch[DEPTH_VALID] = torch.zeros_like(batch[DEPTH_VALID])
    for kind in ("metric", "relative"):
        res = MultiTaskLoss(depth_kind=kind)(out, batch)
        assert all(torch.isfinite(v) for v in res.values())
        res[LOSS].backward()
        assert torch.isfinite(out[DEPTH_PRED].grad).all()


def test_bf16_predictions_are_upcast() -> None:
    out, batch = _outputs_and_batch()
    out = {k: v.detach().bfloat16() for k, v in out.items()}
    res = MultiTaskLoss()(out, batch)
    assert res[LOSS].dtype == torch.float32


def test_module_option_errors() -> None:
    with pytest.raises(ValueError, match="weighting"):
        MultiTaskLoss(weighting="learned")
    with pytest.raises(ValueError, match="depth_kind"):
        MultiTaskLoss(depth_kind="inverse")
    with pytest.raises(ValueError, match="silog_variance_focus"):
        MultiTaskLoss(silog_variance_focus=1.2)


def test_depth_view_gives_the_depth_terms_and_an_aux_mask() -> None:
    crop_out, crop = _outputs_and_batch(seed=1)
    view_out, view = _outputs_and_batch(seed=2)
    crop_out = {MASK_LOGITS: crop_out[MASK_LOGITS]}  # the main network of a model with a depth branch
    for aux in (0.0, 0.5):
        crit = MultiTaskLoss(aux_mask_weight=aux)
        res = crit(crop_out, crop, depth_view=(view_out, view))
        alone = crit(view_out, view)  # the view as an ordinary batch
        for k in LOSS_KEYS:
            if k.startswith("depth_"):
                torch.testing.assert_close(res[k], alone[k], msg=k)
        mask_crop = crit(crop_out, crop)  # mask only: zero depth terms
        assert float(mask_crop[LOSS_DEPTH_TOTAL].detach()) == 0.0
        torch.testing.assert_close(res[LOSS_MASK_BCE], mask_crop[LOSS_MASK_BCE])
        expected = mask_crop[LOSS] + alone[LOSS_DEPTH_TOTAL] + aux * alone[LOSS_MASK_TOTAL]
        torch.testing.assert_close(res[LOSS], expected)
    res[LOSS].backward()
    assert view_out[MASK_LOGITS].grad.abs().sum() > 0 and view_out[DEPTH_PRED].grad.abs().sum() > 0
    assert crop_out[MASK_LOGITS].grad.abs().sum() > 0
