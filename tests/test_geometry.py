"""Geometry-aware placement (compose mode="geometry") on a hand-built scene with exact geometry: a floor, a pillar
in front of the person and a cabinet behind, seen by a level or pitched pinhole camera."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from fgdepth import compose as C
from fgdepth.scene import Background, Foreground
from fgdepth.sources import resize_rgba
from fgdepth.synth import render_person, render_room
from fgdepth.synth.camera import Camera
from fgdepth.synth.raycast import FLOOR, N_ROOM_FACES, Solid, raycast

H, W = 120, 160
PILLAR, CABINET = N_ROOM_FACES, N_ROOM_FACES + 1
PERSON_H, PPM, PERSON_W = 1.7, 100.0, 0.6  # the rectangle person: metres, sprite px per metre, metres


def _scene(pitch: float) -> tuple[Background, np.ndarray]:
    """A room with a pillar (near, left of centre) and a low cabinet (far); returns the background and the
    per-pixel surface index (FLOOR, PILLAR, CABINET or a wall)."""
    cam = Camera.from_fov((H, W), 60.0, np.array([0.0, 1.5, 0.0]), pitch=pitch)
    solids = [
        Solid("box", [-1.2, 0.0, 2.6], [-0.25, 2.6, 2.9]),  # pillar
        Solid("box", [-0.5, 0.0, 6.0], [1.0, 1.2, 6.5]),  # cabinet
    ]
    hits = raycast(cam, solids, room=(np.array([-6.0, 0.0, -1.0]), np.array([6.0, 4.0, 20.0])))
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 226, (N_ROOM_FACES + len(solids), 3))
    rgb = colours[hits.index].astype(np.float32) + rng.normal(0, 8, (H, W, 3))
    bg = Background(
        rgb=np.clip(rgb, 0, 255).astype(np.uint8),
        depth=hits.t.astype(np.float32),
        intrinsics=cam.intrinsics,
        floor_plane=cam.floor_plane(),
        floor_mask=hits.index == FLOOR,
    )
    return bg, hits.index


def _rect_person(relief: bool = True) -> Foreground:
    """An opaque PERSON_W x PERSON_H m rectangle at PPM px/m; rows [0, 170) are the body, the ground contact is the
    bottom edge (y = 169.5). The relief is nearer in the middle, like a body's front."""
    h, w = int(PERSON_H * PPM), int(PERSON_W * PPM)
    rng = np.random.default_rng(1)
    rgba = np.dstack([rng.integers(0, 256, (h, w, 3)), np.full((h, w), 255)]).astype(np.uint8)
    off = None
    if relief:
        xs = np.linspace(-1, 1, w, dtype=np.float32)
        off = np.tile(-0.15 * (1 - xs**2), (h, 1)).astype(np.float32)
    return Foreground(rgba, anchor=((w - 1) / 2, h - 0.5), depth_offset=off, height_m=PERSON_H, px_per_m=PPM)


def _floor_pixel(bg: Background, u: int, z: float) -> int:
    """Flat index of the visible floor pixel in column u whose depth is nearest z."""
    col = np.where(bg.floor_mask[:, u], np.abs(bg.depth[:, u] - z), np.inf)
    v = int(np.argmin(col))
    assert np.isfinite(col[v])
    return v * W + u


def _place(bg: Background, fg: Foreground, flat: int, seed: int = 0) -> C.Placement:
    return C.sample_geometry_placement(np.random.default_rng(seed), fg, bg, candidates=np.array([flat]))


def _person_depth_in_image(bg: Background, fg: Foreground, p: C.Placement) -> np.ndarray:
    """The person's depth map pasted into the image grid (inf where the sprite is not)."""
    off = cv2.resize(fg.depth_offset, (p.width, p.height), interpolation=cv2.INTER_NEAREST)
    full = C.person_depth_map(fg, bg, p, off)
    out = np.full((H, W), np.inf, np.float32)
    x0, y0, x1, y1 = max(p.x, 0), max(p.y, 0), min(p.x + p.width, W), min(p.y + p.height, H)
    out[y0:y1, x0:x1] = full[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
    return out


def _occluded_setup(pitch: float):
    """The rectangle person standing ~5 m away, its left part behind the pillar, its right part before the
    cabinet."""
    bg, index = _scene(pitch)
    pillar_right = int(np.flatnonzero((index == PILLAR).any(axis=0)).max())
    fg = _rect_person()
    flat = _floor_pixel(bg, pillar_right + 4, 5.0)
    p = dataclasses.replace(_place(bg, fg, flat), gain=1.0)
    return bg, index, fg, p, flat


@pytest.mark.parametrize("pitch", [0.0, 0.2])
@pytest.mark.parametrize("z", [2.5, 4.0, 7.0])
def test_height_is_f_times_h_over_z_and_feet_on_the_floor_pixel(pitch, z):
    bg, _ = _scene(pitch)
    fg = _rect_person(relief=False)
    flat = _floor_pixel(bg, int(0.75 * W), z)
    v, u = divmod(flat, W)
    p = _place(bg, fg, flat)
    out = C.compose(bg, fg, p, mode="geometry")
    rows = np.flatnonzero(out.mask.any(axis=1))
    assert rows.size and rows[0] > 0 and rows[-1] < H - 1, "fully inside the image"
    expected = bg.intrinsics[1] * PERSON_H / float(bg.depth[v, u])
    assert abs((rows[-1] - rows[0] + 1) - expected) <= 1.5
    assert abs(rows[-1] - v) <= 1.5  # the feet stand on the chosen floor pixel
    cols = np.flatnonzero(out.mask.any(axis=0))
    assert abs((cols[-1] - cols[0] + 1) - bg.intrinsics[0] * PERSON_W / float(bg.depth[v, u])) <= 1.5
    assert cols[0] <= u <= cols[-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_procedural_person_height_and_feet(seed):
    bg, _ = _scene(0.15)
    fg = render_person(seed, height_px=120)
    flat = _floor_pixel(bg, int(0.7 * W), 4.0)
    v, u = divmod(flat, W)
    out = C.compose(bg, fg, _place(bg, fg, flat), mode="geometry")
    rows = np.flatnonzero(out.mask.any(axis=1))
    assert rows[0] > 0 and rows[-1] < H - 1
    expected = bg.intrinsics[1] * fg.height_m / float(bg.depth[v, u])
    assert abs((rows[-1] - rows[0] + 1) - expected) <= 2
    assert abs(rows[-1] - v) <= 2


@pytest.mark.parametrize("pitch", [0.0, 0.2])
def test_nearer_box_hides_the_person_and_keeps_its_pixels(pitch):
    bg, index, fg, p, _ = _occluded_setup(pitch)
    out = C.compose(bg, fg, p, mode="geometry")
    person = _person_depth_in_image(bg, fg, p)
    covered = np.isfinite(person)  # the sprite is opaque: every covered pixel would show the person
    hidden = covered & (index == PILLAR)
    assert hidden.sum() > 50, "the scene must put the pillar in front of part of the person"
    assert np.all(bg.depth[hidden] < person[hidden])
    assert not out.mask[hidden].any()
    np.testing.assert_array_equal(out.composite[hidden], bg.rgb[hidden])
    np.testing.assert_array_equal(out.depth[hidden], bg.depth[hidden])
    # the person is in front of the cabinet and the far wall/floor: the person's depth, nearer than the scene
    assert (out.mask & (index == CABINET)).sum() > 20
    assert np.all(out.depth[out.mask] < bg.depth[out.mask])
    np.testing.assert_array_equal(out.depth[out.mask], person[out.mask])
    # outside the mask nothing changes depth
    np.testing.assert_array_equal(out.depth[~out.mask], bg.depth[~out.mask])


@pytest.mark.parametrize("pitch", [0.0, 0.2])
def test_depth_is_the_per_pixel_min_of_person_and_scene(pitch):
    bg, _, fg, p, _ = _occluded_setup(pitch)
    out = C.compose(bg, fg, p, mode="geometry")
    person = _person_depth_in_image(bg, fg, p)
    np.testing.assert_array_equal(out.mask, np.isfinite(person) & (person < bg.depth))
    np.testing.assert_array_equal(out.depth, np.minimum(person, bg.depth))
    # the tilt: a pitched camera sees the head nearer than the feet (the floor normal's z is -sin(pitch))
    cols = np.flatnonzero(out.mask.any(axis=0))
    c = cols[len(cols) // 2]
    rows = np.flatnonzero(out.mask[:, c])
    top, bottom = out.depth[rows[0], c], out.depth[rows[-1], c]
    if pitch == 0:
        assert top == pytest.approx(bottom, abs=1e-5)
    else:
        assert top - bottom == pytest.approx(-np.sin(pitch) * PERSON_H, rel=0.05)


def test_contact_shadow_darkens_only_floor_outside_the_mask():
    bg, index, fg, p, _ = _occluded_setup(0.2)
    assert p.shadow > 0
    lit = C.compose(bg, fg, dataclasses.replace(p, shadow=0.0), mode="geometry")
    shaded = C.compose(bg, fg, p, mode="geometry")
    np.testing.assert_array_equal(shaded.mask, lit.mask)  # shadows are not people
    np.testing.assert_array_equal(shaded.depth, lit.depth)
    diff = shaded.composite.astype(int) - lit.composite.astype(int)
    changed = (diff != 0).any(axis=-1)
    assert changed.sum() > 10, "the shadow must show"
    assert np.all(diff <= 0), "a shadow only darkens"
    assert np.all(bg.floor_mask[changed]), "only floor pixels are shadowed"
    # where the (opaque) sprite shows, the person's pixels are untouched
    sprite = resize_rgba(fg.rgba, (p.width, p.height))
    alpha = np.zeros((H, W), np.uint8)
    x0, y0, x1, y1 = max(p.x, 0), max(p.y, 0), min(p.x + p.width, W), min(p.y + p.height, H)
    alpha[y0:y1, x0:x1] = sprite[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x, 3]
    assert not changed[shaded.mask & (alpha == 255)].any()
    # the shadow lies around the feet, not elsewhere
    v, u = np.nonzero(changed)
    assert np.abs(v - p.anchor_y).max() <= 3 * max(1.0, 0.25 * 0.45 * p.width) + 1
    assert np.abs(u - p.anchor_x).max() <= 3 * 0.45 * p.width + 1


def test_same_seed_same_placement_on_a_rendered_room():
    bg = render_room(3, size=64)
    fg = render_person(4, height_px=80)
    a = C.sample_geometry_placement(np.random.default_rng(7), fg, bg)
    b = C.sample_geometry_placement(np.random.default_rng(7), fg, bg)
    c = C.sample_geometry_placement(np.random.default_rng(8), fg, bg)
    assert a == b and a != c
    v, u = round(a.anchor_y), round(a.anchor_x)
    assert bg.floor_mask[v, u], "the person stands on visible floor"
    assert a.person_depth == pytest.approx(float(bg.depth[v, u]))
    ca, cb = C.compose(bg, fg, a, mode="geometry"), C.compose(bg, fg, b, mode="geometry")
    np.testing.assert_array_equal(ca.composite, cb.composite)
    np.testing.assert_array_equal(ca.depth, cb.depth)


def test_missing_geometry_raises_a_clear_error():
    bg, _ = _scene(0.0)
    fg = _rect_person()
    rng = np.random.default_rng(0)
    for missing in ("depth", "intrinsics", "floor_plane", "floor_mask"):
        partial = dataclasses.replace(bg, **{missing: None})
        with pytest.raises(ValueError, match="geometry placement needs"):
            C.sample_geometry_placement(rng, fg, partial)
    with pytest.raises(ValueError, match="height_m and px_per_m"):
        C.sample_geometry_placement(rng, dataclasses.replace(fg, px_per_m=None), bg)
    no_floor = dataclasses.replace(bg, floor_mask=np.zeros((H, W), bool))
    with pytest.raises(ValueError, match="no visible floor"):
        C.sample_geometry_placement(rng, fg, no_floor)


def test_people_near_a_downward_camera_keep_a_positive_head_depth():
    """A steeply pitched camera sees floor close below it; a person there would need a head depth near zero under
    one scale: such points are rejected (head depth >= MIN_HEAD_DEPTH_RATIO x feet depth)."""
    bg, _ = _scene(0.6)
    fg = _rect_person(relief=False)
    cand = C.floor_candidates(bg)
    assert (
        bg.depth.flat[cand] + bg.floor_plane[2] * PERSON_H < C.MIN_HEAD_DEPTH_RATIO * bg.depth.flat[cand]
    ).any()
    for seed in range(40):
        p = C.sample_geometry_placement(np.random.default_rng(seed), fg, bg, cand)
        depth = C.person_depth_map(fg, bg, p, None)
        assert depth.min() >= C.MIN_HEAD_DEPTH_RATIO * p.person_depth - 1e-4, (seed, p)
