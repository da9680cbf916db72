"""Reading users' folders (fgdepth.sources): formats, corrupt files, missing alpha, depth maps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import BG_SPECS, SIZE, imwrite_rgb, person_rgba, smooth_depth_m, write_inputs
from fgdepth import sources
from fgdepth.sources import SourceError


def test_backgrounds_of_every_format_and_size_load_square(inputs):
    loaded = sources.load_backgrounds(inputs.bg_dir, SIZE)
    assert loaded.names == sorted(f"room{i}{s}" for i, (_, _, s) in enumerate(BG_SPECS))
    assert {Path(n).suffix for n in loaded.names} == {".jpg", ".png", ".webp"}
    assert not loaded.skipped
    for bg in loaded.items:
        assert bg.rgb.shape == (SIZE, SIZE, 3) and bg.rgb.dtype == np.uint8
        assert bg.depth is None
        assert bg.rgb.std() > 5  # the texture survived


def test_resize_centre_crop_known_values():
    img = np.zeros((10, 20), np.uint8)
    img[:, 5:15] = 255  # the centre square of a 2:1 image
    out = sources.resize_centre_crop(img, 10)
    assert out.shape == (10, 10) and (out == 255).all()
    up = sources.resize_centre_crop(np.arange(12, dtype=np.float32).reshape(3, 4), 6, cv2.INTER_NEAREST)
    assert up.shape == (6, 6) and set(np.unique(up)) <= set(range(12))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_and_empty_files_are_skipped_with_their_name(inputs):
    bad = inputs.bg_dir / "room0.jpg"
    _truncate(bad)
    (inputs.bg_dir / "empty.png").write_bytes(b"")
    (inputs.bg_dir / "notes.txt").write_text("not an image, not listed")
    loaded = sources.load_backgrounds(inputs.bg_dir, SIZE)
    assert len(loaded.items) == len(BG_SPECS) - 1
    assert "room0.jpg" not in loaded.names
    assert sorted(Path(s.path).name for s in loaded.skipped) == ["empty.png", "room0.jpg"]
    assert all("corrupt" in s.reason for s in loaded.skipped)


def test_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="not a directory"):
        sources.load_backgrounds(tmp_path / "nope", SIZE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        sources.load_foregrounds(tmp_path / "empty")


def test_foregrounds_are_cropped_to_alpha_and_limited_in_height(inputs):
    loaded = sources.load_foregrounds(inputs.fg_dir)
    assert loaded.names == [f"person{i}.png" for i in range(5)]
    for fg in loaded.items:
        a = fg.rgba[..., 3]
        assert fg.rgba.dtype == np.uint8 and fg.rgba.shape[2] == 4
        for edge in (a[0], a[-1], a[:, 0], a[:, -1]):
            assert edge.any()  # cropped tight: every border row/column has some alpha
        ax, ay = fg.anchor
        assert 0 <= ax <= fg.size[1] - 1 and (a[int(ay)] > 127).any() and not (a[int(ay) + 1 :] > 127).any()
    small = sources.load_foregrounds(inputs.fg_dir, max_height=32)
    assert max(fg.size[0] for fg in small.items) == 32


def test_foreground_without_alpha_lists_every_file(inputs):
    for name in ("plain_a.png", "plain_b.jpg"):
        imwrite_rgb(inputs.fg_dir / name, person_rgba(9)[..., :3])
    with pytest.raises(SourceError) as err:
        sources.load_foregrounds(inputs.fg_dir)
    msg = str(err.value)
    assert "plain_a.png" in msg and "plain_b.jpg" in msg and "2 foreground(s)" in msg
    assert "--fg-mask-dir" in msg
    assert "person0.png" not in msg


def test_foreground_without_alpha_is_accepted_with_a_mask_dir(inputs, tmp_path):
    rgba = person_rgba(9)
    imwrite_rgb(inputs.fg_dir / "plain.jpg", rgba[..., :3])
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    binary = np.where(rgba[..., 3] > 127, 255, 0).astype(np.uint8)
    cv2.imwrite(str(mask_dir / "plain.png"), binary)
    loaded = sources.load_foregrounds(inputs.fg_dir, fg_mask_dir=mask_dir)
    fg = loaded.items[loaded.names.index("plain.jpg")]
    ys, xs = np.nonzero(binary)
    np.testing.assert_array_equal(fg.rgba[..., 3], binary[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    # a mask of the wrong size is skipped, naming the mask
    cv2.imwrite(str(mask_dir / "plain.png"), binary[:-3])
    loaded = sources.load_foregrounds(inputs.fg_dir, fg_mask_dir=mask_dir)
    assert "plain.jpg" not in loaded.names
    assert [Path(s.path).name for s in loaded.skipped] == ["plain.png"]


def test_a_0_1_or_colour_mask_is_read_and_an_empty_one_named(inputs, tmp_path):
    # masks as segmentation and annotation tools write them: 0/1 (was skipped as 'alpha channel is empty', naming
    # the image) and red on black (read as grey 76: a person three quarters transparent); an empty mask is named
    rgba = person_rgba(9)
    person = rgba[..., 3] > 127
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for name in ("zero_one", "red", "empty"):
        imwrite_rgb(inputs.fg_dir / f"{name}.jpg", rgba[..., :3])
    cv2.imwrite(str(mask_dir / "zero_one.png"), person.astype(np.uint8))
    cv2.imwrite(
        str(mask_dir / "red.png"), np.dstack([np.zeros_like(person, np.uint8)] * 2 + [person * np.uint8(255)])
    )
    cv2.imwrite(str(mask_dir / "empty.png"), np.zeros(person.shape, np.uint8))
    loaded = sources.load_foregrounds(inputs.fg_dir, fg_mask_dir=mask_dir)
    assert {"zero_one.jpg", "red.jpg"} <= set(loaded.names)
    assert "empty.jpg" not in loaded.names
    assert [(Path(s.path).name, "0/255" in s.reason) for s in loaded.skipped] == [("empty.png", True)]
    for name in ("zero_one.jpg", "red.jpg"):
        alpha = loaded.items[loaded.names.index(name)].rgba[..., 3]
        assert set(np.unique(alpha)) <= {0, 255}, name  # opaque where the mask says, as a 0/255 mask gives


def test_fully_transparent_foreground_is_skipped(inputs):
    rgba = person_rgba(0)
    rgba[..., 3] = 0
    imwrite_rgb(inputs.fg_dir / "ghost.png", rgba)
    loaded = sources.load_foregrounds(inputs.fg_dir)
    assert "ghost.png" not in loaded.names
    assert "empty" in loaded.skipped[0].reason


def test_resize_rgba_does_not_bleed_transparent_colour():
    rgba = np.zeros((40, 30, 4), np.uint8)
    cv2.circle(rgba, (15, 20), 10, (0, 0, 0, 255), -1)
    rgba[..., 3] = cv2.GaussianBlur(rgba[..., 3], (0, 0), 1.5)
    rgba[..., :3] = np.where(rgba[..., 3:] > 0, (10, 200, 30), (255, 0, 255))  # magenta where transparent
    for size in ((13, 17), (45, 60)):
        out = sources.resize_rgba(rgba, size)
        assert out.shape == (size[1], size[0], 4)
        seen = out[out[..., 3] > 0, :3].astype(int)
        assert np.abs(seen - (10, 200, 30)).max() <= 2


@pytest.mark.parametrize("kind", ["png", "npy", "mixed"])
def test_depth_maps_png_mm_and_npy_metres(tmp_path, kind):
    inp = write_inputs(tmp_path, depth=kind)
    loaded = sources.load_backgrounds(inp.bg_dir, SIZE, inp.depth_dir)
    assert not loaded.skipped
    for name, bg in zip(loaded.names, loaded.items):
        i = int(Path(name).stem[4:])
        h, w, _ = BG_SPECS[i]
        truth = sources.resize_centre_crop(smooth_depth_m(h, w, i), SIZE, cv2.INTER_NEAREST)
        assert bg.depth.dtype == np.float32 and bg.depth.shape == (SIZE, SIZE)
        np.testing.assert_allclose(bg.depth, truth, atol=0.0005)
        assert bg.depth.max() > 1.0  # metres, not millimetres


def test_missing_depth_map_is_a_clear_error(inputs):
    (inputs.depth_dir / "room3.png").unlink()
    with pytest.raises(SourceError, match=r"no depth map .* room3\.png"):
        sources.load_backgrounds(inputs.bg_dir, SIZE, inputs.depth_dir)


def test_8bit_or_wrong_size_depth_is_skipped_naming_the_file(inputs):
    cv2.imwrite(str(inputs.depth_dir / "room1.png"), np.full((72, 64), 9, np.uint8))
    np.save(inputs.depth_dir / "room2.npy", np.ones((5, 5), np.float32))
    (inputs.depth_dir / "room2.png").unlink()
    loaded = sources.load_backgrounds(inputs.bg_dir, SIZE, inputs.depth_dir)
    reasons = {Path(s.path).name: s.reason for s in loaded.skipped}
    assert set(reasons) == {"room1.png", "room2.npy"}
    assert "uint16" in reasons["room1.png"] and "differs" in reasons["room2.npy"]
    assert len(loaded.items) == len(BG_SPECS) - 2


def test_read_depth_file_cleans_npy(tmp_path):
    arr = np.array([[1.5, np.nan], [-2.0, np.inf]], np.float64)
    np.save(tmp_path / "d.npy", arr)
    out = sources.read_depth_file(tmp_path / "d.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.5, 0.0], [0.0, 0.0]])


def test_premultiplied_pyramid_resize_matches_a_direct_resize():
    """Resizing from the nearest larger pyramid level gives the direct area resize's pixels up to a little extra
    smoothing (a few per cent), the same coverage, and exactly the source at its own size."""
    from fgdepth.sources import premultiplied_pyramid, premultiply, resize_premultiplied_float

    rgba = person_rgba(3, 120)
    premult = premultiply(rgba)
    levels = premultiplied_pyramid(premult, min_height=16)
    heights = [rgba.shape[0]]
    while heights[-1] // 2 >= 16:
        heights.append(heights[-1] // 2)
    assert [lv.shape[0] for lv in levels] == heights and len(heights) >= 3
    np.testing.assert_array_equal(resize_premultiplied_float(levels, premult.shape[1::-1]), premult)
    for w, h in [(20, 48), (11, 25), (40, 100), (70, 160)]:
        direct = resize_premultiplied_float(premult, (w, h))
        via = resize_premultiplied_float(levels, (w, h))
        assert via.shape == direct.shape == (h, w, 4)
        assert np.abs(via - direct).mean() < 0.1 * np.abs(direct).mean()
        assert via[..., 3].sum() == pytest.approx(direct[..., 3].sum(), rel=0.03)
        assert (via[..., :3] <= via[..., 3:4] + 1e-3).all()  # still premultiplied: colour never above alpha


def test_exif_orientation_turns_a_background_upright_and_alpha_images_load_as_stored(tmp_path):
    import io

    from PIL import Image

    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :40] = (
        255  # left half white: upright (EXIF 6 = rotate 90 degrees clockwise), the top half is white
    )
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    (tmp_path / "phone.jpg").write_bytes(buf.getvalue())
    rgb = sources._imread(tmp_path / "phone.jpg")
    assert rgb.shape == (80, 40, 3)
    assert rgb[:30].mean() > 200 and rgb[50:].mean() < 50
    grey = np.zeros((40, 80), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "JPEG", exif=exif.tobytes())
    (tmp_path / "grey.jpg").write_bytes(buf.getvalue())
    assert sources._imread(tmp_path / "grey.jpg").shape == (80, 40, 3)
    rgba = np.zeros((40, 80, 4), np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "person.png")
    assert sources._imread(tmp_path / "person.png").shape == (40, 80, 4)
