"""Training augmentation: one geometry for all four arrays, depth never mixed, per-shot photometry, seeded."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from fgdepth.data import schema
from fgdepth.data.augment import (
    AugmentConfig,
    BatchAugment,
    affine_grid,
    box_filter,
    geometric,
    jpeg_simulate,
    light_field,
    mask_centroid,
    random_crop_theta,
)


def _blocky_batch(b: int = 4, h: int = 64, w: int = 80, block: int = 8, seed: int = 0) -> dict:
    """Piecewise-constant scenes: depth in blocks, the composite's red channel encodes the depth, the mask is the
    near blocks; bilinear and nearest sampling agree inside the blocks."""
    g = torch.Generator().manual_seed(seed)
    coarse = 1.0 + 9.0 * torch.rand(b, 1, h // block, w // block, generator=g)
    depth = coarse.repeat_interleave(block, 2).repeat_interleave(block, 3)
    composite = torch.cat([depth / 10, torch.rand(b, 2, 1, 1, generator=g).expand(b, 2, h, w)], 1)
    return {
        schema.BACKGROUND: composite.clone(),
        schema.COMPOSITE: composite,
        schema.MASK: (depth < 4).float(),
        schema.DEPTH: depth,
        schema.DEPTH_VALID: torch.ones_like(depth),
    }


def test_geometry_is_the_same_for_all_four_arrays():
    batch = _blocky_batch()
    theta = random_crop_theta(4, torch.Generator().manual_seed(1), min_scale=0.5)
    out = geometric(batch, theta, (48, 48))
    depth_from_image = out[schema.COMPOSITE][:, :1] * 10
    agree = (depth_from_image - out[schema.DEPTH]).abs() < 1e-3
    assert (
        agree.float().mean() > 0.7
    )  # all but the block edges (bilinear blends two blocks); misaligned: ~0.1
    np.testing.assert_array_equal(
        out[schema.MASK][agree].numpy(), (out[schema.DEPTH][agree] < 4).float().numpy()
    )
    np.testing.assert_array_equal(out[schema.BACKGROUND].numpy(), out[schema.COMPOSITE].numpy())


@pytest.mark.parametrize("size", [(48, 48), (57, 41)])
def test_affine_grid_matches_torch(size):
    theta = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(0))  # rotation and shear too
    expected = torch.nn.functional.affine_grid(theta, [3, 1, *size], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, size), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("size", [(40, 40), (23, 37)])
def test_box_filter_matches_avg_pool(k, size):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(k))
    pooled = torch.nn.functional.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
    torch.testing.assert_close(box_filter(x, k), pooled[..., : size[0], : size[1]], rtol=1e-5, atol=1e-6)


def test_depth_and_mask_are_never_interpolated():
    batch = _blocky_batch(seed=3)
    theta = random_crop_theta(4, torch.Generator().manual_seed(2), min_scale=0.4)
    out = geometric(batch, theta, (57, 41))
    for i in range(4):
        assert set(out[schema.DEPTH][i].unique().tolist()) <= set(batch[schema.DEPTH][i].unique().tolist())
    assert set(out[schema.MASK].unique().tolist()) <= {0.0, 1.0}


def test_background_shift_moves_only_the_background():
    batch = _blocky_batch()
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(4, 2, 3).clone()  # identity
    out = geometric(batch, theta, (64, 80), bg_shift_px=torch.tensor([[8.0, 0.0]] * 4))
    np.testing.assert_allclose(out[schema.COMPOSITE].numpy(), batch[schema.COMPOSITE].numpy(), atol=1e-5)
    # the background is sampled 8 px to the right: its column x is the input's column x + 8
    np.testing.assert_allclose(
        out[schema.BACKGROUND][..., :-8].numpy(), batch[schema.BACKGROUND][..., 8:].numpy(), atol=1e-5
    )


@pytest.mark.parametrize("fraction, jitter", [(0.6, 1.25), (0.3, 1.5), (0.9, 1.25)])
def test_crop_fraction_keeps_the_scale(fraction, jitter):
    theta = random_crop_theta(
        2000, torch.Generator().manual_seed(0), crop_fraction=fraction, scale_jitter=jitter, max_aspect=1.0
    )
    side = theta[:, 0, 0].abs()
    assert float(side.min()) >= fraction / jitter - 1e-6
    assert float(side.max()) <= min(1.0, fraction * jitter) + 1e-6
    if fraction * jitter <= 1:  # unclipped: log-uniform around the fraction
        assert math.isclose(float(side.log().median()), math.log(fraction), abs_tol=0.05)
    # the window stays inside the image: |translation| + side <= 1
    assert float((theta[:, 0, 2].abs() + side).max()) <= 1 + 1e-6
    assert float((theta[:, 1, 2].abs() + theta[:, 1, 1]).max()) <= 1 + 1e-6


def test_mask_centroid_in_normalised_coordinates():
    mask = torch.zeros(3, 1, 10, 20)
    mask[0, 0, 0:2, 0:4] = 1  # the top-left corner: pixel centres x 0.5-3.5 of 20, y 0.5-1.5 of 10
    mask[2, 0, 5, 19] = 1
    c = mask_centroid(mask)
    assert torch.allclose(c[0], torch.tensor([2 / 20 * 2 - 1, 1 / 10 * 2 - 1]))
    assert c[1].isnan().all()  # empty mask
    assert torch.allclose(c[2], torch.tensor([19.5 / 20 * 2 - 1, 5.5 / 10 * 2 - 1]))


@pytest.mark.parametrize("corner", [(-0.95, -0.95), (0.95, 0.9), (0.0, 0.3)])
def test_person_crops_hold_the_focus_and_stay_inside(corner):
    n, fraction = 500, 0.4
    focus = torch.tensor(corner).expand(n, 2).clone()
    focus[::10] = float("nan")  # no person: a crop anywhere
    theta = random_crop_theta(
        n,
        torch.Generator().manual_seed(0),
        crop_fraction=fraction,
        focus=focus,
        focus_p=1.0,
        focus_spread=0.75,  # the focus always inside the crop
    )
    sx, sy, tx, ty = theta[:, 0, 0].abs(), theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert float((tx.abs() + sx).max()) <= 1 + 1e-6 and float((ty.abs() + sy).max()) <= 1 + 1e-6
    with_focus = ~focus.isnan().any(1)
    held = ((focus[:, 0] - tx).abs() <= sx) & ((focus[:, 1] - ty).abs() <= sy)
    assert bool(held[with_focus].all())
    # without a focus (or with focus_p 0) a 0.4 crop holds a given point far less often
    free = random_crop_theta(n, torch.Generator().manual_seed(0), crop_fraction=fraction)
    held_free = ((focus[:, 0] - free[:, 0, 2]).abs() <= free[:, 0, 0].abs()) & (
        (focus[:, 1] - free[:, 1, 2]).abs() <= free[:, 1, 1]
    )
    assert float(held_free[with_focus].float().mean()) < 0.6
    # the other draws (zoom, flip) do not depend on the focus
    assert torch.equal(theta[:, 0, 0], free[:, 0, 0]) and torch.equal(theta[:, 1, 1], free[:, 1, 1])


def test_person_crop_spread_sets_how_far_from_the_focus_a_crop_may_lie():
    n, fraction = 2000, 0.3
    focus = torch.zeros(n, 2)  # the image's centre: no crop is clamped at an edge

    def crops(spread):
        theta = random_crop_theta(
            n,
            torch.Generator().manual_seed(1),
            crop_fraction=fraction,
            focus=focus,
            focus_p=1.0,
            focus_spread=spread,
        )
        offset = torch.stack([theta[:, 0, 2].abs(), theta[:, 1, 2].abs()], 1)  # crop centre to focus
        half = torch.stack([theta[:, 0, 0].abs(), theta[:, 1, 1]], 1)
        return offset / half  # in half-sides

    near, wide = crops(0.75), crops(1.5)
    assert float(near.max()) <= 0.75 + 1e-5 and float(wide.max()) <= 1.5 + 1e-5
    assert float(wide.max()) > 1.4  # the whole range is used
    beside = (wide > 1).any(1).float().mean()  # the focus outside the crop: the crop shows what is beside it
    assert 0.3 < float(beside) < 0.7  # 1 - (2 / 3) ** 2 = 0.56 for uniform offsets
    assert not bool((near > 1).any())


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"person_crop_p": 70}, "person_crop_p"),
        ({"person_crop_spread": -1}, "person_crop_spread"),
        ({"jpeg_p": -0.1}, "jpeg_p"),
        ({"size": 4}, "size"),
        ({"crop_fraction": 1.5}, "crop_fraction"),
        ({"jpeg_quality": (90, 50)}, "jpeg_quality"),
    ],
)
def test_augment_config_rejects_values_out_of_range(bad, message):
    with pytest.raises(ValueError, match=message):
        AugmentConfig(**bad)


def test_batch_augment_centres_crops_on_the_person():
    b, size = 64, 80
    batch = _blocky_batch(b=b, h=size, w=size)
    batch[schema.MASK] = torch.zeros(b, 1, size, size)
    batch[schema.MASK][:, :, 60:72, 6:14] = 1  # a small person near the bottom-left corner
    seen = {}
    for p, spread in ((0.0, 0.75), (1.0, 0.75), (1.0, 1.5)):
        cfg = AugmentConfig(
            size=24, crop_fraction=0.3, person_crop_p=p, person_crop_spread=spread, bg_shift_px=0.0
        )
        out = BatchAugment(cfg)(batch, torch.Generator().manual_seed(1))
        seen[p, spread] = float((out[schema.MASK].flatten(1).sum(1) > 0).float().mean())
    assert seen[1.0, 0.75] == 1.0
    assert seen[0.0, 0.75] < 0.5
    # the default spread: some crops beside the person, most still holding part of it
    assert AugmentConfig().person_crop_spread == 1.5
    assert 0.5 < seen[1.0, 1.5] < 1.0


def test_batch_augment_is_seeded_and_changes_only_the_images_photometrically():
    batch = _blocky_batch(b=6, h=96, w=96)
    aug = BatchAugment(
        AugmentConfig(size=48, flip_p=0.0, min_crop_scale=1.0, bg_shift_px=0.0, zoom_scales_depth=False)
    )
    a = aug(batch, torch.Generator().manual_seed(5))
    b = aug(batch, torch.Generator().manual_seed(5))
    c = aug(batch, torch.Generator().manual_seed(6))
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a[schema.COMPOSITE], c[schema.COMPOSITE])
    # the two shots get different photometry although their pixels were identical
    assert (a[schema.BACKGROUND] - a[schema.COMPOSITE]).abs().mean() > 1e-3
    # no crop (up to the aspect jitter), no flip: mask and depth are the inputs at 48 px (nearest), untouched by
    # photometry
    expected = torch.nn.functional.interpolate(batch[schema.DEPTH], size=(48, 48), mode="nearest")
    assert set(a[schema.DEPTH].unique().tolist()) <= set(expected.unique().tolist())
    assert set(a[schema.MASK].unique().tolist()) <= {0.0, 1.0}
    assert a[schema.COMPOSITE].shape == (6, 3, 48, 48)
    assert float(a[schema.COMPOSITE].min()) >= 0 and float(a[schema.COMPOSITE].max()) <= 1


def test_pixel_noise_comes_from_a_seed_the_generator_draws():
    from fgdepth.data.augment import _pixel_noise

    x = torch.zeros(4, 3, 40, 40, dtype=torch.float64)
    a, b, c = (_pixel_noise(x, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1) < 0.05
    # the generator moves on by one draw, whatever the noise's size: the draws after it do not depend on it
    g, h = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    _pixel_noise(x, g), _pixel_noise(x[:1, :1], h)
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=h))


def test_jpeg_simulation_is_close_to_a_real_jpeg():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64, 3)).astype(np.float32), (0, 0), 2)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    for quality in (30, 90):
        sim = jpeg_simulate(x, torch.tensor([float(quality)]))[0].permute(1, 2, 0).numpy() * 255
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        real = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32)
        err_sim, err_real = np.abs(sim - img).mean(), np.abs(real - img).mean()
        assert 0.5 * err_real < err_sim < 2.0 * err_real, (quality, err_sim, err_real)
        assert np.abs(sim - real).mean() < err_real  # the same artefacts, not just the same amount
    errors = [(jpeg_simulate(x, torch.tensor([q])) - x).abs().mean() for q in (20.0, 50.0, 95.0)]
    assert errors[0] > errors[1] > errors[2]  # higher quality, smaller error


_NO_PHOTOMETRY = dict(
    brightness=0.0, contrast=0.0, saturation=0.0, gamma=0.0, white_balance=0.0, shot_exposure=0.0,
    shot_white_balance=0.0, noise_std=0.0, blur_p=0.0, jpeg_p=0.0, bg_shift_px=0.0, light_p=0.0,
)  # fmt: skip


@pytest.mark.parametrize("crop_fraction", [None, 0.5])
@pytest.mark.parametrize("zoom_scales_depth", [False, True])
def test_zoom_scales_depth_by_the_crop_side(crop_fraction, zoom_scales_depth):
    """Ramps in x and y read the crop's side back from the output; depth is divided by the zoom (relative to the
    crop_fraction) when asked, else untouched."""
    b, h, w, size = 8, 64, 80, 32
    ramp_x = (torch.arange(w) / (w - 1)).view(1, 1, 1, w).expand(b, 1, h, w)
    ramp_y = (torch.arange(h) / (h - 1)).view(1, 1, h, 1).expand(b, 1, h, w)
    image = torch.cat([ramp_x, ramp_y, torch.zeros(b, 1, h, w)], 1)
    depth = torch.full((b, 1, h, w), 4.0)
    batch = {
        schema.BACKGROUND: image.clone(), schema.COMPOSITE: image, schema.MASK: torch.zeros_like(depth),
        schema.DEPTH: depth, schema.DEPTH_VALID: torch.ones_like(depth),
    }  # fmt: skip
    cfg = AugmentConfig(
        size=size, min_crop_scale=0.3, crop_fraction=crop_fraction, scale_jitter=1.5,
        zoom_scales_depth=zoom_scales_depth, **_NO_PHOTOMETRY,
    )  # fmt: skip
    out = BatchAugment(cfg)(batch, torch.Generator().manual_seed(3))
    comp = out[schema.COMPOSITE]
    # d value / d output pixel = side * W / (size * (W - 1)) under align_corners=False sampling
    side_x = (comp[:, 0, :, 9] - comp[:, 0, :, 8]).abs().mean(1) * size * (w - 1) / w
    side_y = (comp[:, 1, 9, :] - comp[:, 1, 8, :]).abs().mean(1) * size * (h - 1) / h
    assert float(side_x.min()) < 0.9  # the draw did zoom in
    zoom = (crop_fraction or 1.0) / (side_x * side_y).sqrt()
    expected = 4.0 / zoom if zoom_scales_depth else torch.full((b,), 4.0)
    np.testing.assert_allclose(out[schema.DEPTH].mean((1, 2, 3)).numpy(), expected.numpy(), rtol=1e-3)
    assert float(out[schema.DEPTH].std((1, 2, 3)).max()) < 1e-5  # one factor per image


def test_blur_and_jpeg_computed_on_the_chosen_images_only_match_the_whole_batch() -> None:
    from fgdepth.data.augment import _on_some, gaussian_blur, jpeg_simulate

    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 20, 24, generator=g)
    before = x.clone()
    for fn, param in (
        (gaussian_blur, torch.tensor([0.0, 0.8, 0.0, 0.5])),
        (jpeg_simulate, torch.full((4,), 60.0)),
    ):
        chosen = torch.tensor([False, True, False, True])
        ref = torch.where(chosen.view(-1, 1, 1, 1), fn(x, param), x)
        out = _on_some(fn, x, param, chosen)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
        assert not torch.equal(out[1], x[1]) and torch.equal(out[0], x[0])
        assert _on_some(fn, x, param, torch.zeros(4, dtype=torch.bool)) is x
    assert torch.equal(x, before)  # the input is left as it was


def test_shared_blur_gives_both_shots_one_sigma_and_keeps_how_often_each_is_blurred() -> None:
    # one camera's optics blur both shots alike; independent draws blurred the composite alone as often as both
    g = torch.Generator().manual_seed(0)
    texture = torch.rand(256, 3, 24, 24, generator=g)
    batch = {
        schema.BACKGROUND: texture,
        schema.COMPOSITE: texture.clone(),
        schema.MASK: torch.zeros(256, 1, 24, 24),
        schema.DEPTH: torch.ones(256, 1, 24, 24),
        schema.DEPTH_VALID: torch.ones(256, 1, 24, 24),
    }
    still = dict(
        size=24, min_crop_scale=1.0, scale_jitter=1.0, flip_p=0.0, bg_shift_px=0.0, brightness=0.0,
        contrast=0.0, saturation=0.0, gamma=0.0, white_balance=0.0, shot_exposure=0.0, shot_white_balance=0.0,
        noise_std=0.0, jpeg_p=0.0, light_p=0.0,
    )  # fmt: skip

    def blurred(shared_p: float) -> tuple[torch.Tensor, torch.Tensor]:
        def run(blur_p: float) -> dict:
            cfg = AugmentConfig(**still, blur_p=blur_p, blur_shared_p=shared_p)
            return BatchAugment(cfg)(batch, torch.Generator().manual_seed(1))

        sharp, out = run(0.0), run(0.4)  # the same draws; blur_p only decides which of them blur
        return tuple(
            (out[k] - sharp[k]).abs().flatten(1).amax(1) > 1e-6 for k in (schema.BACKGROUND, schema.COMPOSITE)
        )

    bg, comp = blurred(1.0)
    assert torch.equal(bg, comp) and 0.25 < float(bg.float().mean()) < 0.55
    out = BatchAugment(AugmentConfig(**still, blur_p=0.4, blur_shared_p=1.0))(
        batch, torch.Generator().manual_seed(1)
    )
    assert torch.equal(out[schema.BACKGROUND], out[schema.COMPOSITE])  # the same sigma, not only both blurred
    bg, comp = blurred(0.0)  # independent draws: as often blurred, seldom together
    assert 0.25 < float(comp.float().mean()) < 0.55 and float((bg & comp).float().mean()) < 0.3
    assert not torch.equal(bg, comp)


def test_light_field_is_the_gain_at_its_centre_and_one_far_from_it() -> None:
    field = light_field(
        torch.tensor([[0.0, 0.0], [1.0, -1.0]]), torch.tensor([0.4, 0.4]), torch.tensor([0.7, -0.7]), (21, 21)
    )
    assert field.shape == (2, 1, 21, 21)
    assert float(field[0, 0, 10, 10]) == pytest.approx(math.exp(0.7), rel=1e-3)  # the centre pixel
    assert float(field[0, 0, 0, 0]) == pytest.approx(1.0, abs=1e-3)  # far corner
    assert float(field[1, 0].min()) == pytest.approx(float(field[1, 0, 0, 20]))  # shade, darkest at (1, -1)
    assert float(field[1, 0].min()) < 0.6 and float(field[1, 0].max()) <= 1.0


def test_light_changes_one_shot_by_a_smooth_gain_and_leaves_mask_and_depth() -> None:
    # light that changed over part of the room: one shot, either, is re-lit; the other, the mask and depth are not
    g = torch.Generator().manual_seed(0)
    n = 128
    texture = 0.1 + 0.35 * torch.rand(n, 3, 24, 24, generator=g)  # no clipping at gains up to 2
    mask = (torch.rand(n, 1, 24, 24, generator=g) > 0.5).float()  # stands for people: light ignores it
    batch = {
        schema.BACKGROUND: texture,
        schema.COMPOSITE: texture.clone(),
        schema.MASK: mask,
        schema.DEPTH: torch.ones(n, 1, 24, 24),
        schema.DEPTH_VALID: torch.ones(n, 1, 24, 24),
    }
    still = dict(
        size=24, min_crop_scale=1.0, scale_jitter=1.0, flip_p=0.0, bg_shift_px=0.0, brightness=0.0,
        contrast=0.0, saturation=0.0, gamma=0.0, white_balance=0.0, shot_exposure=0.0, shot_white_balance=0.0,
        noise_std=0.0, jpeg_p=0.0, blur_p=0.0,
    )  # fmt: skip
    # the same draws without light: light_p only decides which shots are lit
    unlit = BatchAugment(AugmentConfig(**still, light_p=0.0))(batch, torch.Generator().manual_seed(1))
    out = BatchAugment(AugmentConfig(**still, light_p=1.0))(batch, torch.Generator().manual_seed(1))
    changed = {
        k: (out[k] - unlit[k]).abs().flatten(1).amax(1) > 1e-3 for k in (schema.BACKGROUND, schema.COMPOSITE)
    }
    assert torch.equal(changed[schema.BACKGROUND], ~changed[schema.COMPOSITE])  # one shot each time
    assert 0.3 < float(changed[schema.COMPOSITE].float().mean()) < 0.7  # either
    pick = changed[schema.COMPOSITE].view(-1, 1, 1, 1)
    gain = torch.where(pick, out[schema.COMPOSITE], out[schema.BACKGROUND]) / torch.where(
        pick, unlit[schema.COMPOSITE], unlit[schema.BACKGROUND]
    )  # one gain for the three channels, varying smoothly over the image
    assert torch.allclose(gain, gain[:, :1].expand_as(gain), atol=1e-4)
    assert float((gain[..., 1:] - gain[..., :-1]).abs().max()) < 0.5
    assert float(gain.amin()) > 0.45 and float(gain.amax()) < 2.05
    assert float(gain.amin()) < 0.8 and float(gain.amax()) > 1.4  # shade and light both drawn
    assert torch.equal(out[schema.MASK], unlit[schema.MASK]) and torch.equal(
        out[schema.DEPTH], unlit[schema.DEPTH]
    )
