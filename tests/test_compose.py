"""Placement and compositing (fgdepth.compose): exact alpha behaviour, mask, depth, placements inside the image."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import person_rgba, smooth_depth_m, textured_background
from fgdepth import compose as C
from fgdepth.scene import Background, Foreground, bottom_centre_anchor
from fgdepth.sources import (
    foreground_from_rgba,
    premultiplied_pyramid,
    premultiply,
    resize_premultiplied_float,
)


def _bg(h: int = 48, w: int = 56, depth: bool = True, seed: int = 0) -> Background:
    return Background(textured_background(h, w, seed), smooth_depth_m(h, w, seed) if depth else None)


def _fg(seed: int = 0, h: int = 30) -> Foreground:
    fg = foreground_from_rgba(person_rgba(seed, h))
    assert fg is not None
    return fg


def _unscaled(fg: Foreground, x: int, y: int, depth: float = 2.5) -> C.Placement:
    """A placement at the sprite's own size (no resampling: pixels can be compared exactly)."""
    h, w = fg.size
    return C.Placement(x, y, w, h, x + fg.anchor[0], y + fg.anchor[1], depth)


def test_alpha_zero_leaves_background_and_alpha_255_copies_foreground():
    bg, fg = _bg(), _fg()
    p = _unscaled(fg, 7, 5)
    out = C.compose(bg, fg, p)
    h, w = fg.size
    a = fg.rgba[..., 3]
    assert (a == 0).any() and (a == 255).any() and ((a > 0) & (a < 255)).any()  # soft edges present
    region = out.composite[5 : 5 + h, 7 : 7 + w]
    np.testing.assert_array_equal(region[a == 0], bg.rgb[5 : 5 + h, 7 : 7 + w][a == 0])
    np.testing.assert_array_equal(region[a == 255], fg.rgba[..., :3][a == 255])
    # outside the sprite's box nothing changes
    outside = np.ones(bg.size, bool)
    outside[5 : 5 + h, 7 : 7 + w] = False
    np.testing.assert_array_equal(out.composite[outside], bg.rgb[outside])


def test_soft_alpha_blends_between_background_and_foreground():
    bg, fg = _bg(), _fg(1)
    out = C.compose(bg, fg, _unscaled(fg, 3, 2))
    h, w = fg.size
    a = fg.rgba[..., 3].astype(np.float64)[..., None] / 255
    under = bg.rgb[2 : 2 + h, 3 : 3 + w].astype(np.float64)
    expected = under + (fg.rgba[..., :3] - under) * a
    np.testing.assert_allclose(out.composite[2 : 2 + h, 3 : 3 + w], expected, atol=0.51)


def _scaled_alpha(fg: Foreground, w: int, h: int) -> np.ndarray:
    """The sprite's alpha in [0, 1] at (h, w), as compose scales it (premultiplied pyramid, area or bilinear)."""
    return resize_premultiplied_float(premultiplied_pyramid(premultiply(fg.rgba)), (w, h))[..., 3] / 255


@pytest.mark.parametrize("scale", [1.0, 0.63, 1.4])
def test_mask_is_visible_alpha_above_half(scale):
    bg, fg = _bg(64, 64), _fg(2)
    h, w = round(fg.size[0] * scale), round(fg.size[1] * scale)
    p = C.Placement(4, 3, w, h, 4 + w / 2, 3 + h - 1, 3.0)
    out = C.compose(bg, fg, p)
    sprite_alpha = _scaled_alpha(fg, w, h)
    expected = np.zeros(bg.size, bool)
    expected[3 : 3 + h, 4 : 4 + w] = sprite_alpha > 0.5
    np.testing.assert_array_equal(out.mask, expected)
    assert out.mask.any()


def test_depth_is_person_depth_under_mask_and_background_elsewhere():
    bg, fg = _bg(), _fg()
    out = C.compose(bg, fg, _unscaled(fg, 10, 4, depth=1.75))
    assert out.depth.dtype == np.float32
    np.testing.assert_array_equal(out.depth[out.mask], np.float32(1.75))
    np.testing.assert_array_equal(out.depth[~out.mask], bg.depth[~out.mask])


def test_without_background_depth_the_sample_has_none():
    bg, fg = _bg(depth=False), _fg()
    assert C.compose(bg, fg, _unscaled(fg, 0, 0)).depth is None


def test_compose_does_not_modify_its_inputs():
    bg, fg = _bg(), _fg()
    rgb, depth, rgba = bg.rgb.copy(), bg.depth.copy(), fg.rgba.copy()
    C.compose(bg, fg, _unscaled(fg, 10, 4))
    np.testing.assert_array_equal(bg.rgb, rgb)
    np.testing.assert_array_equal(bg.depth, depth)
    np.testing.assert_array_equal(fg.rgba, rgba)


def test_sprite_past_the_edges_is_clipped():
    bg, fg = _bg(40, 40), _fg(h=30)
    h, w = fg.size
    out = C.compose(bg, fg, _unscaled(fg, -(w // 2), 40 - h // 2))
    assert out.composite.shape == (40, 40, 3)
    expected = np.zeros((40, 40), bool)
    visible = fg.rgba[: h // 2, w // 2 :, 3] > 127  # the sprite's top-right part lands bottom-left
    expected[40 - h // 2 :, : w - w // 2] = visible
    np.testing.assert_array_equal(out.mask, expected)
    # entirely outside: the background unchanged, no mask
    far = C.compose(bg, fg, _unscaled(fg, 100, 100))
    np.testing.assert_array_equal(far.composite, bg.rgb)
    assert not far.mask.any()


def _wide_fg() -> Foreground:
    rgba = np.zeros((10, 90, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[1:, 2:-2, 3] = 255
    return Foreground(rgba, bottom_centre_anchor(rgba[..., 3]))


@pytest.mark.parametrize("bg_size", [(48, 48), (40, 64), (64, 36)])
@pytest.mark.parametrize("height_range", [(0.35, 0.65), (0.9, 1.0), (20.0, 80.0)])
def test_random_placement_stays_inside_the_image(bg_size, height_range):
    bg = _bg(*bg_size)
    bg_h, bg_w = bg_size
    for fg in (_fg(0, 40), _fg(3, 90), _wide_fg()):
        for seed in range(150):
            p = C.sample_random_placement(np.random.default_rng(seed), fg, bg, height_range)
            assert p.x >= 0 and p.x + p.width <= bg_w, (seed, p)
            assert p.y >= 0 and p.y + p.height <= bg_h, (seed, p)
            assert p.width >= 1 and p.height >= 1
            assert p.x <= p.anchor_x <= p.x + p.width and p.y <= p.anchor_y <= p.y + p.height
            u = int(np.clip(round(p.anchor_x), 0, bg_w - 1))
            v = int(np.clip(round(p.anchor_y), 0, bg_h - 1))
            assert p.person_depth == pytest.approx(float(bg.depth[v, u]))
            out = C.compose(bg, fg, p)  # the whole sprite lands: its full alpha mask shows
            assert out.mask.sum() == (_scaled_alpha(fg, p.width, p.height) > 0.5).sum()


def test_random_placement_height_follows_the_range():
    bg, fg = _bg(64, 64), _fg(0, 40)
    heights = [
        C.sample_random_placement(np.random.default_rng(s), fg, bg, (0.25, 0.5)).height for s in range(200)
    ]
    assert min(heights) >= round(0.25 * 64) - 1 and max(heights) <= round(0.5 * 64) + 1
    assert max(heights) - min(heights) > 8  # actually random
    px = [C.sample_random_placement(np.random.default_rng(s), fg, bg, (20, 20)).height for s in range(20)]
    assert set(px) == {20}
    assert C.sample_random_placement(np.random.default_rng(0), fg, bg, (0.01, 0.01)).height == C.MIN_HEIGHT_PX


def test_random_placement_is_a_function_of_the_seed():
    bg, fg = _bg(), _fg()
    a = C.sample_random_placement(np.random.default_rng(5), fg, bg)
    b = C.sample_random_placement(np.random.default_rng(5), fg, bg)
    assert a == b


def test_bad_height_range_raises():
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        C.sample_random_placement(np.random.default_rng(0), _fg(), _bg(), (0.6, 0.3))


def test_flipped_mirrors_sprite_and_anchor():
    fg = _fg(4)
    f = fg.flipped()
    np.testing.assert_array_equal(f.rgba, fg.rgba[:, ::-1])
    assert f.anchor == (fg.size[1] - 1 - fg.anchor[0], fg.anchor[1])
    np.testing.assert_array_equal(f.flipped().rgba, fg.rgba)


def test_bottom_centre_anchor_known_values():
    alpha = np.zeros((10, 12), np.uint8)
    alpha[2:8, 3:6] = 255  # lowest on-row is 7, columns 3..5
    assert bottom_centre_anchor(alpha) == (4.0, 7.0)
    assert bottom_centre_anchor(np.zeros((5, 5), np.uint8)) == (2.0, 4.0)


def test_geometry_placement_needs_geometry():
    with pytest.raises(ValueError, match="geometry"):
        C.sample_geometry_placement(np.random.default_rng(0), _fg(), _bg())


def test_placement_to_dict_rounds_floats_keeps_ints():
    from dataclasses import asdict

    p = C.Placement(1, 2, 30, 40, 12.345678, 41.0, 2.123456789, gain=1.0, shadow=0.0, camouflage=0.123456)
    d = p.to_dict()
    assert d == {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(p).items()}
    assert list(d) == [f for f in asdict(p)] and d["anchor_x"] == 12.3457 and d["x"] == 1
    # without camouflage the record is the one written before the setting existed
    plain = C.Placement(1, 2, 30, 40, 12.345678, 41.0, 2.123456789).to_dict()
    assert "camouflage" not in plain and "camouflage_top" not in plain and "camouflage_bottom" not in plain


def test_camouflage_gives_a_flat_band_the_room_colour_and_keeps_the_rest():
    h, w = 20, 10
    alpha = np.ones((h, w), np.float32)
    alpha[:, :2] = 0.0
    alpha[:, 2] = 0.5  # the outline's blend
    person, room = np.float32([200, 40, 40]), np.float32([90, 120, 150])
    over = alpha[..., None] * person
    under = np.broadcast_to(room, (h, w, 3)).astype(np.float32)
    band = np.zeros(h, np.float32)
    band[5:15] = 1
    out = C.camouflage(over, alpha, under, 1.0, band, sigma=3.0)
    # premultiplied: alpha * the room's colour, on the outline too
    np.testing.assert_allclose(out[5:15], alpha[5:15, :, None] * room, atol=1e-3)
    np.testing.assert_array_equal(out[band == 0], over[band == 0])


def test_camouflage_moves_the_band_mean_by_its_strength_and_flattens_its_contrast():
    rng = np.random.default_rng(0)
    h, w = 24, 12
    alpha = np.ones((h, w), np.float32)
    over = rng.uniform(60, 180, (h, w, 3)).astype(np.float32)
    room = np.float32([100, 100, 100])
    under = np.broadcast_to(room, (h, w, 3)).astype(np.float32)
    band = np.ones(h, np.float32)
    out = C.camouflage(over, alpha, under, 0.5, band, sigma=2.0)
    mu = over.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), mu + 0.5 * (room - mu), atol=1e-2)
    np.testing.assert_allclose(out.reshape(-1, 3).std(0), 0.75 * over.reshape(-1, 3).std(0), rtol=1e-3)


def test_camouflage_stays_within_the_premultiplied_range():
    rng = np.random.default_rng(1)
    alpha = rng.uniform(0, 1, (16, 16)).astype(np.float32)
    over = alpha[..., None] * rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    under = np.full((16, 16, 3), 255, np.float32)  # pulls every colour up
    out = C.camouflage(over, alpha, under, 1.0, np.ones(16, np.float32), sigma=2.0)
    assert out.min() >= 0 and (out <= 255 * alpha[..., None] + 1e-3).all()
    assert (out > over + 1).any()


def test_band_weights_cover_the_band_and_ramp_outside():
    w = C.band_weights(100, 0.2, 0.6)
    assert (w[21:59] == 1).all()  # row centres 0.215 ... 0.585
    assert (w[:15] == 0).all() and (w[65:] == 0).all()
    assert 0 < w[17] < 1 and 0 < w[62] < 1
    assert C.band_weights(10, 0.0, 1.0).min() == 1
