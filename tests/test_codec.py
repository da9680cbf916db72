"""Stored codecs: lossless depth PNGs that any PNG reader decodes, binary masks, clear decode errors."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from fgdepth.data import codec


@pytest.mark.parametrize("shape", [(224, 224), (1, 1), (1, 7), (5, 1), (37, 53)])
def test_png_uint16_round_trip_through_opencv_and_pillow(shape):
    rng = np.random.default_rng(sum(shape))
    u16 = rng.integers(0, 65536, shape, dtype=np.uint16)
    u16.flat[0], u16.flat[-1] = 0, 65535  # both ends of the range, where a sign or byte-order slip would show
    data = codec.encode_png_uint16(u16)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    np.testing.assert_array_equal(codec.decode_uint16(data), u16)
    # an independent decoder (Pillow's, not OpenCV's libpng path) reads the same values
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))).astype(np.uint16), u16)


def test_png_uint16_compresses_smooth_depth():
    yy, xx = np.mgrid[0:224, 0:224]
    u16 = (2000 + 7 * yy + 3 * xx).astype(np.uint16)  # a plane, as floors and walls are
    data = codec.encode_png_uint16(u16)
    assert len(data) < u16.nbytes / 10
    np.testing.assert_array_equal(codec.decode_uint16(data), u16)


def test_png_uint16_refuses_other_arrays():
    with pytest.raises(ValueError, match="uint16"):
        codec.encode_png_uint16(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="uint16"):
        codec.encode_png_uint16(np.zeros((4, 4, 3), np.uint16))


def test_depth_round_trip_rounds_to_the_scale_and_keeps_unknown():
    depth = np.array([[0.0, 1.2344, 1.2346], [np.nan, np.inf, 70.0]], np.float32)
    back = codec.decode_depth(codec.encode_depth(depth, 1000.0), 1000.0)
    np.testing.assert_allclose(back, [[0.0, 1.234, 1.235], [0.0, 0.0, 65.535]], atol=1e-6)


def test_mask_png_is_binary_0_255():
    mask = np.zeros((9, 11), bool)
    mask[2:5, 3:8] = True
    data = codec.encode_mask(mask)
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert set(np.unique(grey)) == {0, 255}
    np.testing.assert_array_equal(codec.decode_mask(data), mask)


def test_decoders_name_the_file():
    with pytest.raises(codec.DecodeError, match="broken.png"):
        codec.decode_uint16(b"not a png", name="broken.png")
    eight_bit = codec.encode_mask(np.ones((4, 4), bool))
    with pytest.raises(codec.DecodeError, match="uint16"):
        codec.decode_uint16(eight_bit, name="d.png")


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX file modes")
def test_atomic_write_gives_the_mode_open_would_and_leaves_no_temporary(tmp_path):
    path = codec.atomic_write_bytes(tmp_path / "out" / "a.json", b"{}")
    assert path.read_bytes() == b"{}"
    plain = tmp_path / "plain"
    plain.write_bytes(b"")  # the umask's mode for a new file, as any tool writes it
    assert (path.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o044 == 0o044 & ~umask, "readable by others where the umask allows"
    assert os.listdir(path.parent) == ["a.json"]
