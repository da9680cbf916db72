"""The procedural world: exact geometry of rooms, known projections of boxes, people sprites."""

from __future__ import annotations

import numpy as np
import pytest

from fgdepth.synth import render_person, render_room
from fgdepth.synth.camera import Camera
from fgdepth.synth.raycast import FLOOR, Solid, raycast
from fgdepth.synth.room import HFOV_RANGE_DEG, layout_room

SIZE = 64  # small rooms keep the file fast


@pytest.fixture(scope="module")
def rooms():
    return [render_room(seed, size=SIZE) for seed in range(3)]


@pytest.fixture(scope="module")
def people():
    return [render_person(seed, height_px=96) for seed in range(4)]


def _plane_depth(bg):
    """z of the floor plane along each pixel ray, from the returned intrinsics and plane."""
    fx, fy, cx, cy = bg.intrinsics
    nx, ny, nz, d = bg.floor_plane
    v, u = np.mgrid[0 : bg.size[0], 0 : bg.size[1]].astype(np.float64)
    x, y = (u - cx) / fx, (v - cy) / fy  # ray (x, y, 1) * z
    with np.errstate(divide="ignore"):
        return -d / (nx * x + ny * y + nz)


def test_room_shapes_and_finite_depth(rooms):
    for bg in rooms:
        assert bg.rgb.shape == (SIZE, SIZE, 3) and bg.rgb.dtype == np.uint8
        assert bg.depth.shape == (SIZE, SIZE) and bg.depth.dtype == np.float32
        assert np.all(np.isfinite(bg.depth)) and np.all(bg.depth > 0)
        assert bg.has_geometry
        assert bg.floor_mask.dtype == bool and bg.floor_mask.mean() > 0.05
        assert abs(np.linalg.norm(bg.floor_plane[:3]) - 1) < 1e-9
        assert 1.0 <= bg.floor_plane[3] <= 3.0
        fx, fy, cx, cy = bg.intrinsics
        assert cx == pytest.approx((SIZE - 1) / 2) and cy == pytest.approx((SIZE - 1) / 2)


def test_cameras_stay_in_the_field_of_view_range(rooms):
    lo, hi = HFOV_RANGE_DEG
    hfovs = [layout_room(seed)[1]["hfov_deg"] for seed in range(40)]
    assert all(lo <= h <= hi for h in hfovs)
    assert max(hfovs) - min(hfovs) > 0.5 * (hi - lo)  # drawn across the range, not stuck
    for bg in rooms:  # the rendered intrinsics agree: fx = (W / 2) / tan(hfov / 2)
        hfov = np.degrees(2 * np.arctan((SIZE / 2) / bg.intrinsics[0]))
        assert lo - 1e-6 <= hfov <= hi + 1e-6


def test_floor_depth_matches_plane(rooms):
    for bg in rooms:
        z = _plane_depth(bg)
        m = bg.floor_mask
        np.testing.assert_allclose(bg.depth[m], z[m], rtol=1e-4)
        # floor-mask points back-projected lie on the plane
        fx, fy, cx, cy = bg.intrinsics
        v, u = np.nonzero(m)
        pts = np.stack([(u - cx) / fx * bg.depth[m], (v - cy) / fy * bg.depth[m], bg.depth[m]], 1)
        assert np.abs(pts @ np.array(bg.floor_plane[:3]) + bg.floor_plane[3]).max() < 1e-3


def test_room_is_deterministic_and_varied(rooms):
    again = render_room(0, size=SIZE)
    np.testing.assert_array_equal(again.rgb, rooms[0].rgb)
    np.testing.assert_array_equal(again.depth, rooms[0].depth)
    np.testing.assert_array_equal(again.floor_mask, rooms[0].floor_mask)
    assert not np.array_equal(rooms[0].rgb, rooms[1].rgb)
    assert not np.allclose(rooms[0].depth, rooms[1].depth)


def test_supersample_keeps_exact_depth():
    a, b = render_room(5, size=48, supersample=1), render_room(5, size=48, supersample=3)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.intrinsics == b.intrinsics


def test_box_projects_where_predicted():
    cam = Camera.from_fov((60, 80), 60.0, np.array([0.0, 1.0, 0.0]))  # level camera looking along +z
    box = Solid("box", [-0.5, 0.75, 3.0], [0.5, 1.25, 4.0])
    hits = raycast(cam, [box])
    v, u = np.mgrid[0:60, 0:80]
    half_u, half_v = cam.fx * 0.5 / 3.0, cam.fy * 0.25 / 3.0
    inside = (np.abs(u - cam.cx) < half_u) & (np.abs(v - cam.cy) < half_v)
    hit = np.isfinite(hits.t)
    np.testing.assert_array_equal(hit, inside)
    np.testing.assert_allclose(hits.t[hit], 3.0, rtol=1e-12)  # front face: z-depth, not ray length
    assert np.all(hits.normal[hit] == np.array([0, 0, -1], np.float32))


def test_tilted_camera_floor_depth():
    cam = Camera.from_fov((40, 40), 90.0, np.array([2.0, 1.5, 0.5]), yaw=0.3, pitch=0.4, roll=0.05)
    hits = raycast(cam, [], room=(np.zeros(3), np.array([4.0, 3.0, 6.0])))
    nx, ny, nz, d = cam.floor_plane()
    v, u = np.mgrid[0:40, 0:40]
    z = -d / (nx * (u - cam.cx) / cam.fx + ny * (v - cam.cy) / cam.fy + nz)
    m = hits.index == FLOOR
    assert m.sum() > 100
    np.testing.assert_allclose(hits.t[m], z[m], rtol=1e-9)
    assert np.all(np.isfinite(hits.t)) and np.all(hits.t > 0)


def test_solid_kinds_and_errors():
    cam = Camera.from_fov((40, 40), 60.0, np.zeros(3))
    for kind in ("ellipsoid", "cylinder"):
        hits = raycast(cam, [Solid(kind, [-0.5, -0.5, 2.0], [0.5, 0.5, 3.0])])
        assert hits.t[20, 20] == pytest.approx(2.0, abs=0.01)
    with pytest.raises(ValueError, match="unknown solid kind"):
        Solid("cone", [0, 0, 0], [1, 1, 1])


def test_person_sprite(people):
    for fg in people:
        a = fg.rgba[..., 3]
        assert fg.rgba.dtype == np.uint8
        assert np.any((a > 0) & (a < 255)), "soft edges"
        rows = np.flatnonzero((a > 0).any(axis=1))
        assert abs((fg.anchor[1] - rows[0]) - fg.height_m * fg.px_per_m) <= 2
        assert abs(fg.height_m * fg.px_per_m - 96) <= 1
        assert abs(fg.anchor[1] - rows[-1]) <= 2  # the feet touch the anchor row
        cols = np.flatnonzero((a > 0).any(axis=0))
        assert cols[0] <= fg.anchor[0] <= cols[-1]
        assert np.all(fg.depth_offset[a == 0] == 0)
        assert np.abs(fg.depth_offset).max() <= 0.5
        assert 1.0 < fg.height_m < 2.5


def test_person_is_deterministic(people):
    again = render_person(0, height_px=96)
    np.testing.assert_array_equal(again.rgba, people[0].rgba)
    np.testing.assert_array_equal(again.depth_offset, people[0].depth_offset)
    assert again.anchor == people[0].anchor
    assert not np.array_equal(people[0].rgba, people[1].rgba) or people[0].size != people[1].size


@pytest.mark.parametrize("kind", __import__("fgdepth.synth.textures", fromlist=["x"]).MATERIAL_KINDS)
def test_every_material_renders(kind):
    from fgdepth.synth import textures as tx

    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 5, (50, 3))
    normal = np.tile([0.0, 1.0, 0.0], (50, 1))
    col = tx.albedo(tx.Material(kind, np.array([0.5, 0.4, 0.3]), None, 1.0, 3), pos, normal)
    assert col.shape == (50, 3) and np.all(np.isfinite(col)) and col.min() >= 0
