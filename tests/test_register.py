"""fgdepth.register: the shift and gain between the shots are measured and undone; the predictor does it first."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import textured_background
from eval_helpers import scene
from fgdepth.register import estimate_gain, estimate_shift, register_background


def _moved(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def _exposed(image: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return np.clip(image.astype(np.float32) * np.float32(gains), 0, 255).round().astype(np.uint8)


def _room_and_composite(
    h: int = 120, w: int = 160, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured room, the same room with a flat-coloured 'person' (10 % of it), and the person's mask."""
    room = textured_background(h, w, seed)
    person = np.zeros((h, w), bool)
    person[h // 4 : h // 4 + h // 2, w // 2 : w // 2 + w // 5] = True
    comp = room.copy()
    comp[person] = (210, 50, 60)
    return room, comp, person


def _error_outside(a: np.ndarray, b: np.ndarray, person: np.ndarray) -> float:
    """Mean absolute difference away from the person and the image border (edges repeated by a shift)."""
    keep = ~cv2.dilate(person.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    keep[:3], keep[-3:], keep[:, :3], keep[:, -3:] = False, False, False, False
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32))[keep].mean())


@pytest.mark.parametrize("dx, dy", [(1.0, 1.0), (-1.4, 0.5), (0.6, -2.3)])
def test_shift_and_gain_are_measured_and_undone(dx: float, dy: float) -> None:
    room, comp, person = _room_and_composite()
    bg = _exposed(_moved(room, dx, dy), (1.12, 1.0, 0.9))  # the background shot: moved, warmer, brighter
    out, reg = register_background(bg, comp)
    assert reg.shift == pytest.approx((dx, dy), abs=0.1)
    assert reg.gain == pytest.approx((1 / 1.12, 1.0, 1 / 0.9), abs=0.015)
    assert reg.applied == ("shift", "gain")
    assert out.dtype == np.uint8 and out.shape == bg.shape
    before, after = _error_outside(bg, comp, person), _error_outside(out, comp, person)
    assert after < 0.5 * before  # not 0: a fractional shift resampled twice blurs the fine noise


def test_same_shots_are_left_alone() -> None:
    room, comp, _ = _room_and_composite()
    out, reg = register_background(room, comp)
    assert out is room and reg.applied == ()
    assert np.hypot(*reg.shift) < 0.3 and reg.gain == (1.0, 1.0, 1.0)  # most pixels are the very same


def test_people_covering_most_of_the_image_do_not_mislead_it() -> None:
    room = textured_background(120, 160, 5)
    comp = room.copy()
    comp[:, :104] = (90, 140, 200)  # a person (or a crowd) in front of 65 % of the room
    # the median ratio reads the person, not the room: a gain applied from it would unsettle the whole room
    assert max(abs(g - 1) for g in estimate_gain(room, comp)) > 0.1
    out, reg = register_background(room, comp)
    assert out is room and reg.applied == ()


def test_small_and_implausible_shifts_are_not_applied() -> None:
    room, comp, _ = _room_and_composite()
    _, small = register_background(_moved(room, 0.15, 0.0), comp)
    assert "shift" not in small.applied
    # 12 px on a 120 px short side is above max_shift (5 %): a moved camera, not jitter
    far, reg = register_background(_moved(room, 12.0, 0.0), comp)
    assert reg.shift[0] == pytest.approx(12.0, abs=0.2) and "shift" not in reg.applied
    _, allowed = register_background(_moved(room, 12.0, 0.0), comp, max_shift=0.2)
    assert "shift" in allowed.applied


def test_large_images_are_measured_on_a_small_copy() -> None:
    room, comp, person = _room_and_composite(480, 640, seed=3)
    bg = _moved(room, 3.0, -2.0)
    dx, dy, _ = estimate_shift(cv2.resize(bg, (320, 240), interpolation=cv2.INTER_AREA),
                               cv2.resize(comp, (320, 240), interpolation=cv2.INTER_AREA))  # fmt: skip
    assert (dx, dy) == pytest.approx((1.5, -1.0), abs=0.1)  # half the size, half the shift
    out, reg = register_background(bg, comp, size=128)
    assert reg.shift == pytest.approx((3.0, -2.0), abs=0.2)  # measured at 128 px, scaled back
    assert _error_outside(out, comp, person) < 0.3 * _error_outside(bg, comp, person)


def test_gain_ignores_dark_and_saturated_pixels() -> None:
    room, comp, _ = _room_and_composite()
    bright = _exposed(room, (1.5, 1.5, 1.5))  # many pixels clip at 255: their ratio is not the gain
    assert estimate_gain(bright, room) == pytest.approx((1 / 1.5,) * 3, abs=0.01)


def test_shapes_must_match() -> None:
    room, comp, _ = _room_and_composite()
    with pytest.raises(ValueError, match=r"\(120, 160, 3\).*\(60, 160, 3\)"):
        register_background(room, comp[:60])


def test_float_images_are_refused_by_name() -> None:
    # float images in [0, 1] ended in an OpenCV traceback ("Unsupported depth of input image")
    bg, comp, _, _ = scene(40, 40, 1)
    with pytest.raises(ValueError, match="uint8.*float64"):
        register_background(bg / 255.0, comp / 255.0)


@pytest.mark.parametrize("hw", [(1, 1), (7, 1), (1, 9)])
def test_an_image_one_pixel_wide_or_high_is_left_unmoved(hw: tuple[int, int]) -> None:
    # OpenCV's Hann window needs 2 x 2 pixels: such images ended in an OpenCV traceback in the predictor
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (*hw, 3), np.uint8)
    out, how = register_background(bg, bg)
    assert np.array_equal(out, bg) and how.shift == (0.0, 0.0) and "shift" not in how.applied


def test_predictor_registers_the_background_by_default(tmp_path: Path) -> None:
    from eval_helpers import randomised_tiny_model
    from fgdepth.predict import Predictor

    model = randomised_tiny_model().eval()
    bg, comp, _, _ = scene(64, 80, 1)
    moved = _exposed(_moved(bg, 1.0, -1.0), (0.85, 0.85, 0.85))
    registered, reg = register_background(moved, comp)
    assert reg.applied == ("shift", "gain")
    (_, depth), = Predictor(model=model, size=48)([moved], [comp])  # fmt: skip
    (_, direct), = Predictor(model=model, size=48, register=False)([registered], [comp])  # fmt: skip
    (_, unregistered), = Predictor(model=model, size=48, register=False)([moved], [comp])  # fmt: skip
    np.testing.assert_allclose(depth, direct, rtol=1e-5, atol=1e-6)
    assert not np.allclose(depth, unregistered)


def test_predict_cli_records_the_registration(model_file: Path, tmp_path: Path) -> None:
    from fgdepth.cli import app

    bg, comp, _, _ = scene(60, 80, 0)
    cv2.imwrite(str(tmp_path / "bg.png"), bg[..., ::-1])
    cv2.imwrite(str(tmp_path / "a.png"), comp[..., ::-1])
    for flag, expected in (("--register", True), ("--no-register", False)):
        out = tmp_path / flag
        args = ["predict", "-c", str(model_file), "-b", str(tmp_path / "bg.png"), "--image",
                str(tmp_path / "a.png"), "--out", str(out), "--size", "64", flag]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "predict.json").read_text())["register"] is expected
