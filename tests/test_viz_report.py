"""Pictures (shapes, dtypes, colours) and the HTML report (self-contained, links exist)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fgdepth.report import select_good_median_worst, write_report
from fgdepth.viz import (
    colorize_depth,
    depth_scale_bar,
    error_map,
    make_grid,
    mask_to_rgb,
    overlay_mask,
    plot_curves,
    prediction_grid,
    sample_grid,
    save_png,
)

H, W = 24, 32


def _sample(i: int = 0) -> dict:
    rng = np.random.default_rng(i)
    mask = np.zeros((H, W), bool)
    mask[6:18, 8 + i : 20 + i] = True
    depth = np.linspace(1.0, 5.0, H * W, dtype=np.float32).reshape(H, W)
    depth[0, :4] = 0
    return {
        "background": rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
        "composite": rng.integers(0, 255, (H, W, 3), dtype=np.uint8),
        "mask": mask,
        "depth": depth,
        "pred_mask": mask.astype(np.float32) * 0.8,
        "pred_depth": depth[::2, ::2] * 1.1,  # lower resolution: resized for the error
        "label": f"IoU 0.9{i}",
    }


def test_colorize_depth_invalid_black():
    d = np.array([[0.0, 1.0], [np.nan, 3.0]])
    img = colorize_depth(d, cmap="magma")
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8
    assert (img[0, 0] == 0).all() and (img[1, 0] == 0).all()
    assert img[1, 1].sum() > img[0, 1].sum()  # magma: far is brighter
    assert colorize_depth(torch.ones(1, 4, 5)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="cmap"):
        colorize_depth(d, cmap="nope")


def test_masks_overlay_and_error_map():
    m = np.zeros((H, W), bool)
    m[2:5, 2:5] = True
    rgb = mask_to_rgb(m)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and rgb[3, 3].tolist() == [255] * 3
    assert (mask_to_rgb(m.astype(np.uint8) * 255) == rgb).all()
    over = overlay_mask(np.zeros((H, W, 3), np.uint8), m, color=(200, 0, 0), alpha=0.5)
    assert over[3, 3].tolist() == [100, 0, 0] and over[0, 0].tolist() == [0, 0, 0]
    t = np.full((H, W), 2.0)
    t[0, 0] = 0
    err = error_map(t + 1.0, t)
    assert err.shape == (H, W, 3) and err.dtype == np.uint8 and (err[0, 0] == 0).all()


def test_scale_bar_and_grid_sizes():
    bar = depth_scale_bar(0.5, 8.0, height=120, width=80)
    assert bar.shape == (120, 80, 3) and bar.dtype == np.uint8
    tiles = [[np.zeros((H, W, 3), np.uint8), np.ones((H // 2, W // 2), bool)], [None, np.zeros((H, W))]]
    g = make_grid(tiles, titles=None, pad=2)
    assert g.shape == (2 * (H + 2) + 2, 2 * (W + 2) + 2, 3) and g.dtype == np.uint8
    titled = make_grid(tiles, titles=["a", "b"], pad=2)
    assert titled.shape[1] == g.shape[1] and titled.shape[0] > g.shape[0]
    with pytest.raises(ValueError):
        make_grid([])


def test_sample_and_prediction_grids():
    samples = [_sample(0), _sample(1)]
    g = sample_grid(samples)
    assert g.dtype == np.uint8 and g.ndim == 3 and g.shape[0] > 2 * H and g.shape[1] > 4 * W
    p = prediction_grid(samples)
    assert p.dtype == np.uint8 and p.shape[0] == g.shape[0] and p.shape[1] > 7 * W
    chw = {
        k: torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1))) if k == "composite" else v
        for k, v in _sample(0).items()
    }
    assert sample_grid([chw], depth_range=(1.0, 5.0)).shape[0] == sample_grid([_sample(0)]).shape[0]


def test_save_png_roundtrip(tmp_path: Path):
    img = np.zeros((5, 6, 3), np.uint8)
    img[..., 0] = 200
    out = save_png(tmp_path / "sub" / "a.png", img)
    back = cv2.imread(str(out))[..., ::-1]
    assert (back == img).all()
    assert [p.name for p in out.parent.iterdir()] == ["a.png"]  # no temp file left behind


def _write_csv(path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "train/loss_step", "val/loss", "val/mask_iou"])
        for s in range(0, 40, 5):
            w.writerow([s // 20, s, 1.0 / (1 + s), "", ""])
            if s % 20 == 15:
                w.writerow([s // 20, s, "", 0.5 / (1 + s), 0.5 + s / 100])
    return path


def test_plot_curves(tmp_path: Path):
    out = plot_curves(_write_csv(tmp_path / "metrics.csv"), tmp_path / "c.png")
    assert out is not None and cv2.imread(str(out)) is not None
    assert plot_curves({"a": [1, 2, 3], "b": ([0, 2], [1.0, 0.5])}, tmp_path / "d.png") is not None
    assert plot_curves({"a": [float("nan")]}, tmp_path / "e.png") is None


def test_select_good_median_worst():
    scores = [(f"s{i}", float(i)) for i in range(10)] + [("bad", float("nan"))]
    sel = select_good_median_worst(scores, 2)
    assert sel == {"good": ["s9", "s8"], "median": ["s5", "s4"], "worst": ["s0", "s1"]}
    low = select_good_median_worst(scores, 1, higher_is_better=False)
    assert low["good"] == ["s0"] and low["worst"] == ["s9"]
    assert select_good_median_worst([("a", 1.0)], 3) == {"good": ["a"], "median": ["a"], "worst": ["a"]}


def test_write_report_self_contained(tmp_path: Path):
    grid = prediction_grid([_sample(0)])
    metrics = {"mask_iou": 0.8765, "depth_abs_rel": 0.1234, "num_samples": 7.0}
    baseline = {"mask_iou": 0.5432}
    path = write_report(
        tmp_path / "rep",
        title="Eval <run>",
        metrics=metrics,
        baseline=baseline,
        grids={"good": grid, "worst": grid},
        curves_csv=_write_csv(tmp_path / "metrics.csv"),
        extra={"checkpoint": "model.ckpt", "config": {"lr": 0.001}},
    )
    text = path.read_text()
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert set(srcs) == {"grid_good.png", "grid_worst.png", "curves.png"}
    assert all((path.parent / s).is_file() for s in srcs)
    for needle in ("mask_iou", "0.8765", "depth_abs_rel", "0.1234", "0.5432", "num_samples", "model.ckpt"):
        assert needle in text
    assert "Eval &lt;run&gt;" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_write_report_minimal_and_missing_csv(tmp_path: Path):
    path = write_report(tmp_path, title="t", metrics={"mask_iou": 0.5}, curves_csv=tmp_path / "none.csv")
    text = path.read_text()
    assert "<img" not in text and "missing or empty" in text
