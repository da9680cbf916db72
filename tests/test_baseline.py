"""The classical background-subtraction baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgdepth.baseline import DifferenceBaseline, difference_image, difference_mask
from fgdepth.metrics import mask_metrics


def _textured(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 4) % 160, (yy * 3) % 140, ((xx + yy) * 2) % 120], axis=-1)
    return np.clip(base + rng.integers(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bg = _textured()
    mask = np.zeros(bg.shape[:2], bool)
    mask[30:70, 40:80] = True
    comp = bg.copy()
    comp[mask] = (250, 245, 235)
    return bg, comp, mask


def test_finds_bright_square_on_texture():
    bg, comp, mask = _scene()
    pred = difference_mask(bg, comp)
    assert pred.shape == mask.shape and pred.dtype == bool
    assert mask_metrics(pred, mask)["mask_iou"] > 0.9


def test_float_input_and_l2_reduce():
    bg, comp, mask = _scene()
    pred = difference_mask(bg / 255.0, comp / 255.0, reduce="l2")
    assert mask_metrics(pred, mask)["mask_iou"] > 0.9


def test_identical_images_give_empty_mask():
    bg = _textured()
    assert not difference_mask(bg, bg).any()
    noisy = np.clip(bg.astype(int) + np.random.default_rng(1).integers(-3, 4, bg.shape), 0, 255)
    assert not difference_mask(bg, noisy.astype(np.uint8)).any()


def test_open_removes_specks():
    bg = _textured()
    comp = bg.copy()
    comp[10, 10] = 255 - comp[10, 10]  # one changed pixel
    assert difference_mask(bg, comp, blur_sigma=0).sum() == 0


def test_difference_image_range_and_errors():
    bg, comp, _ = _scene()
    d = difference_image(bg, comp)
    assert d.shape == bg.shape[:2] and d.dtype == np.float32
    assert d.min() >= 0.0 and d.max() <= 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        difference_mask(bg, comp[:10])
    with pytest.raises(ValueError, match="reduce"):
        difference_image(bg, comp, reduce="mean")  # type: ignore[arg-type]


def test_module_matches_function_and_batches():
    bg, comp, mask = _scene()
    model = DifferenceBaseline(open_radius=1, close_radius=2)
    assert np.array_equal(model(bg, comp), difference_mask(bg, comp, open_radius=1, close_radius=2))
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 255.0  # noqa: E731
    bgs, comps = torch.stack([to_t(bg), to_t(bg)]), torch.stack([to_t(comp), to_t(bg)])
    out = model.predict_batch(bgs, comps)
    assert out.shape == (2, 1, *mask.shape) and out.dtype == bool
    assert mask_metrics(out[0, 0], mask)["mask_iou"] > 0.9 and not out[1].any()
    assert model.predict_batch(bgs[:0], comps[:0]).shape == (0, 1, *mask.shape)


def test_images_neither_uint8_nor_float_in_0_1_are_refused_by_name():
    # int64 or float 0-255 images were read as float in [0, 1]: 255x the difference, so sensor noise became
    # foreground (a 40 x 40 pair with +-3 noise: 673 foreground pixels in place of 192)
    bg, comp, _ = _scene()
    with pytest.raises(ValueError, match="int64"):
        difference_mask(bg.astype(np.int64), comp.astype(np.int64))
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        difference_mask(bg.astype(np.float32), comp.astype(np.float32))
    assert np.array_equal(difference_mask(bg / 255.0, comp / 255.0), difference_mask(bg, comp))
