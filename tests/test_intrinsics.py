"""Cameras: focal lengths (fgdepth.intrinsics), the canonical camera of a model, and focal lengths carried from
the dataset's background metadata through the reader, augmentation, prediction, evaluation and ONNX."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from eval_helpers import randomised_tiny_model, scene
from fgdepth.data import schema
from fgdepth.data.augment import AugmentConfig, BatchAugment
from fgdepth.data.reader import FolderDataset, read_focal
from fgdepth.intrinsics import depth_at_focal, focal_from_hfov, focal_from_intrinsics, hfov_from_focal
from fgdepth.model import create_model
from fgdepth.predict import Predictor
from fgdepth.train import model_step

pytestmark = pytest.mark.usefixtures("no_onednn")


def test_focal_of_known_fields_of_view():
    assert focal_from_hfov(90, 100, 100) == pytest.approx(0.5)  # tan(45) = 1: f = W / 2
    assert focal_from_hfov(60, 90, 160) == pytest.approx(80 / math.tan(math.radians(30)) / 90)
    assert hfov_from_focal(focal_from_hfov(73, 90, 160), 90, 160) == pytest.approx(73)
    assert focal_from_intrinsics(120.0, 160, 200) == pytest.approx(0.75)  # over the short side
    for bad in (0, 180, -5):
        with pytest.raises(ValueError, match="hfov"):
            focal_from_hfov(bad, 10, 10)
    with pytest.raises(ValueError, match="focal length"):
        focal_from_intrinsics(0.0, 10, 10)


def test_depth_at_focal_scales_known_focals_only():
    depth = torch.full((4, 1, 3, 5), 2.0)
    focal = torch.tensor([0.5, 1.0, 0.0, float("nan")])
    out = depth_at_focal(depth, focal, canonical_focal=0.5)
    np.testing.assert_allclose(out.mean((1, 2, 3)).numpy(), [2.0, 4.0, 2.0, 2.0])
    assert depth_at_focal(depth, None, 0.5) is depth


def test_canonical_model_scales_depth_by_the_focal_and_leaves_the_mask():
    model = randomised_tiny_model(canonical_hfov=70.0).eval()
    canonical = focal_from_hfov(70.0, 1, 1)
    assert model.canonical_focal == pytest.approx(canonical)
    bg, comp = torch.rand(2, 3, 40, 48), torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        plain = model(bg, comp)
        seen = model(bg, comp, focal=torch.tensor([canonical, 2 * canonical]))
    torch.testing.assert_close(seen["mask_logits"], plain["mask_logits"])
    torch.testing.assert_close(seen["depth"][0], plain["depth"][0])
    torch.testing.assert_close(seen["depth"][1], 2 * plain["depth"][1])
    # a model without a canonical camera ignores focal lengths
    other = randomised_tiny_model(canonical_hfov=None).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            other(bg, comp, focal=torch.tensor([0.1, 3.0]))["depth"], other(bg, comp)["depth"]
        )
    with pytest.raises(ValueError, match="canonical_hfov"):
        create_model("tiny", canonical_hfov=180.0)


def test_training_step_sees_depth_through_each_samples_camera():
    """model_step gives the depth branch's output through the batch's focal lengths, so the loss compares it with
    the true (metric) depth of that camera."""
    model = randomised_tiny_model(canonical_hfov=70.0).eval()
    canonical = model.canonical_focal

    class Capture:
        def __call__(self, out, batch, depth_view=None):
            self.view_depth = depth_view[0]["depth"]
            return {}

    def batch(focal: float) -> dict:
        g = torch.Generator().manual_seed(0)
        images = {k: torch.rand(2, 3, 32, 32, generator=g) for k in (schema.BACKGROUND, schema.COMPOSITE)}
        view = {k: torch.rand(2, 3, 20, 20, generator=g) for k in (schema.BACKGROUND, schema.COMPOSITE)}
        view[schema.FOCAL] = torch.full((2,), focal)
        return {**images, schema.FOCAL: torch.full((2,), focal), schema.DEPTH_VIEW: view}

    loss = Capture()
    with torch.no_grad():
        model_step(model, loss, batch(canonical))
        at_canonical = loss.view_depth
        model_step(model, loss, batch(1.5 * canonical))
    torch.testing.assert_close(loss.view_depth, 1.5 * at_canonical)


@pytest.mark.parametrize("zoom_scales_depth", [False, True])
def test_augmentation_keeps_depth_and_focal_consistent(zoom_scales_depth):
    """A zoomed view is either a nearer scene through the same lens (depth / zoom) or the same scene through a
    longer lens (focal * zoom): depth / focal, what the canonical camera sees, is the same either way."""
    b, h, w = 6, 48, 48
    depth = torch.full((b, 1, h, w), 3.0)
    batch = {
        schema.BACKGROUND: torch.rand(b, 3, h, w), schema.COMPOSITE: torch.rand(b, 3, h, w),
        schema.MASK: torch.zeros_like(depth), schema.DEPTH: depth, schema.DEPTH_VALID: torch.ones_like(depth),
        schema.FOCAL: torch.full((b,), 0.6),
    }  # fmt: skip
    cfg = AugmentConfig(size=24, min_crop_scale=0.4, zoom_scales_depth=zoom_scales_depth, jpeg_p=0.0)
    out = BatchAugment(cfg)(batch, torch.Generator().manual_seed(1))
    canonical_view = out[schema.DEPTH].mean((1, 2, 3)) / out[schema.FOCAL]
    ref = BatchAugment(AugmentConfig(size=24, min_crop_scale=0.4, zoom_scales_depth=True, jpeg_p=0.0))(
        batch, torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(canonical_view, ref[schema.DEPTH].mean((1, 2, 3)) / 0.6)
    assert float(canonical_view.min()) < 3.0 / 0.6 - 0.1  # the draw zoomed in
    if zoom_scales_depth:
        torch.testing.assert_close(out[schema.FOCAL], batch[schema.FOCAL])


def test_reader_takes_the_focal_from_the_background_metadata(folder_dataset: Path, tmp_path: Path):
    root = tmp_path / "ds"
    shutil.copytree(folder_dataset, root)
    ds = FolderDataset(root, "all")
    assert float(ds[0][schema.FOCAL]) == 0.0  # user backgrounds: camera unknown
    bg_id = ds.stems[0].split("_")[0]
    h, w = ds.load_numpy(0)[schema.BACKGROUND].shape[:2]
    meta = root / schema.BG_META_DIR / f"{bg_id}.json"
    meta.parent.mkdir(exist_ok=True)
    meta.write_text(json.dumps({"intrinsics": [30.0, 30.0, w / 2, h / 2]}))
    ds = FolderDataset(root, "all")
    assert float(ds[0][schema.FOCAL]) == pytest.approx(30.0 / min(h, w))
    assert read_focal(root, bg_id, (h, w)) == pytest.approx(30.0 / min(h, w))
    meta.write_text(json.dumps({"intrinsics": ["wide"]}))
    with pytest.raises(ValueError, match=f"{bg_id}.json"):
        FolderDataset(root, "all")[0]


def test_predictor_sees_through_the_given_camera(tmp_path: Path):
    model = randomised_tiny_model(canonical_hfov=70.0).eval()
    bg, comp, _, _ = scene(48, 64, 0)
    # the network's own depth: through the canonical focal
    canonical = Predictor(model=model, size=48)([bg], [comp], focals=[focal_from_hfov(70.0, 1, 1)])[0][1]
    wide = Predictor(model=model, size=48, hfov=100.0)([bg], [comp])[0][1]
    ratio = focal_from_hfov(100.0, 48, 64) / focal_from_hfov(70.0, 1, 1)
    np.testing.assert_allclose(wide, canonical * ratio, rtol=1e-5)
    # a pair's own focal wins over hfov; 0 falls back to it
    own = Predictor(model=model, size=48, hfov=100.0)([bg, bg], [comp, comp], focals=[0.9, 0.0])
    np.testing.assert_allclose(own[0][1], canonical * 0.9 / focal_from_hfov(70.0, 1, 1), rtol=1e-5)
    np.testing.assert_allclose(own[1][1], wide, rtol=1e-5)
    with pytest.warns(UserWarning, match="no canonical camera"):
        Predictor(model=randomised_tiny_model(canonical_hfov=None).eval(), size=48, hfov=60.0)


def test_an_unknown_camera_has_the_canonical_field_of_view_across_the_width():
    # the canonical focal is over the short side; a landscape photo of an unknown camera held to it would be
    # assumed wider than the canonical lens, and its depth too near by its aspect ratio
    model = randomised_tiny_model(canonical_hfov=70.0).eval()
    for h, w in ((48, 64), (64, 48), (48, 48)):
        bg, comp, _, _ = scene(h, w, 0)
        unknown = Predictor(model=model, size=48)([bg], [comp])[0][1]
        network = Predictor(model=model, size=48)([bg], [comp], focals=[focal_from_hfov(70.0, 1, 1)])[0][1]
        across_width = Predictor(model=model, size=48, hfov=70.0)([bg], [comp])[0][1]
        np.testing.assert_allclose(unknown, across_width, rtol=1e-5)
        np.testing.assert_allclose(unknown, network * max(w / h, 1.0), rtol=1e-5)


def test_onnx_records_the_canonical_camera(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from fgdepth.export import OnnxRunner, export_onnx

    model = randomised_tiny_model(canonical_hfov=65.0).eval()
    path = export_onnx(model, tmp_path / "m.onnx", size=48)["path"]
    runner = OnnxRunner(path)
    assert runner.canonical_focal == pytest.approx(model.canonical_focal)
    bg, comp, _, _ = scene(48, 48, 1)
    torch_out = Predictor(model=model, size=48, hfov=85.0)([bg], [comp])[0][1]
    onnx_out = Predictor(onnx=runner, size=48, hfov=85.0)([bg], [comp])[0][1]
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=1e-4)


def test_evaluate_uses_the_recorded_cameras_unless_told(tmp_path: Path):
    from eval_helpers import REF_SIZES, write_reference_folder
    from fgdepth.evaluate import evaluate
    from fgdepth.model import save_model

    root = write_reference_folder(tmp_path / "ref")
    for i, (h, w) in enumerate(REF_SIZES):  # every camera twice the canonical focal length
        meta = root / schema.BG_META_DIR / f"room{i}.json"
        meta.parent.mkdir(exist_ok=True)
        meta.write_text(json.dumps({"intrinsics": [2 * focal_from_hfov(70.0, h, w) * min(h, w), 1, 0, 0]}))
    ckpt = save_model(randomised_tiny_model(canonical_hfov=70.0).eval(), tmp_path / "m.safetensors")
    runs = {
        "intrinsics": evaluate(ckpt, root, size=48, per_sample=True),
        "canonical": evaluate(ckpt, root, size=48, per_sample=True, intrinsics=False),
        "hfov 70": evaluate(ckpt, root, size=48, per_sample=True, hfov=70.0),
    }
    for camera, res in runs.items():
        assert res["camera"] == camera
    # twice the focal length: twice as far; median alignment removes exactly that
    for r_in, r_can in zip(runs["intrinsics"]["per_sample"], runs["canonical"]["per_sample"]):
        if r_in["has_depth"]:
            assert r_in["depth_abs_rel"] != pytest.approx(r_can["depth_abs_rel"], rel=1e-3)
    a = evaluate(ckpt, root, size=48, align="median")["all"]
    b = evaluate(ckpt, root, size=48, align="median", intrinsics=False)["all"]
    assert a["depth_abs_rel"] == pytest.approx(b["depth_abs_rel"], rel=1e-4)


def test_cli_evaluate_and_predict_take_the_camera_and_tta(tmp_path: Path):
    from typer.testing import CliRunner

    from eval_helpers import write_reference_folder
    from fgdepth.cli import app
    from fgdepth.model import save_model

    root = write_reference_folder(tmp_path / "ref")
    ckpt = save_model(randomised_tiny_model(canonical_hfov=70.0).eval(), tmp_path / "m.safetensors")
    out = tmp_path / "e.json"
    args = [
        "evaluate",
        "-c",
        str(ckpt),
        "-d",
        str(root),
        "--size",
        "48",
        "--hfov",
        "80",
        "--tta",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["camera"] == "hfov 80" and res["flip_tta"] is True
    pred = tmp_path / "pred"
    bg, comp = sorted((root / "bg").iterdir())[0], sorted((root / "bg_fg").iterdir())[0]
    args = ["predict", "-c", str(ckpt), "-b", str(bg), "--image", str(comp), "-o", str(pred), "--hfov", "80"]
    result = CliRunner().invoke(app, [*args, "--tta"])
    assert result.exit_code == 0, result.output
    assert json.loads((pred / "predict.json").read_text())["hfov"] == 80.0
    result = CliRunner().invoke(app, [*args[:-1], "0"])
    assert result.exit_code != 0 and "hfov" in result.output
