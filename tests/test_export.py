"""ONNX export: dynamic batch and size, onnxruntime parity, the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fgdepth.data.schema import DEPTH_PRED, MASK_LOGITS
from fgdepth.model import create_model, model_config

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from eval_helpers import randomised_tiny_model  # noqa: E402
from fgdepth.export import OnnxRunner, export_onnx  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, dict]:
    model = randomised_tiny_model()  # non-trivial BN stats and heads, so that parity means something
    model.train()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    report = export_onnx(model, path, size=64)
    return model, path, report


def test_export_report(exported: tuple[torch.nn.Module, Path, dict]) -> None:
    model, path, report = exported
    assert path.is_file()
    assert report["max_abs_diff"] <= 1e-4
    assert len(report["per_check"]) == 2
    assert {tuple(c["shape"]) for c in report["per_check"]} == {(1, 3, 64, 64), (3, 3, 33, 71)}
    assert model.training  # mode restored


def test_graph_names_and_dynamic_axes(exported: tuple[torch.nn.Module, Path, dict]) -> None:
    import onnx

    _, path, _ = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["background", "composite"]
    assert [o.name for o in graph.output] == [MASK_LOGITS, DEPTH_PRED]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for i, d in enumerate(dims) if i != 1)  # B, H, W symbolic


def test_runner_matches_torch(exported: tuple[torch.nn.Module, Path, dict]) -> None:
    model, path, _ = exported
    runner = OnnxRunner(path)
    bg, comp = torch.rand(2, 3, 50, 38), torch.rand(2, 3, 50, 38)
    model.eval()
    with torch.no_grad():
        ref = model(bg, comp)
    model.train()
    got = runner(bg, comp.numpy())  # tensors and arrays both accepted
    h, w = model.output_size(50, 38)
    for k in (MASK_LOGITS, DEPTH_PRED):
        assert got[k].shape == (2, 1, h, w) and got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], ref[k].numpy(), atol=1e-4, rtol=0)
    single = runner(bg[0].numpy(), comp[0].numpy())
    assert single[DEPTH_PRED].shape == (1, 1, h, w)
    with pytest.raises(ValueError, match="differ in shape"):
        runner(bg, comp[:, :, :40])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        runner(bg[:, :1], comp[:, :1])


@pytest.mark.slow
def test_dynamo_export(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("~25 s: run with -m slow")
    pytest.importorskip("onnxscript")
    report = export_onnx(create_model("tiny"), tmp_path / "tiny_dynamo.onnx", size=64, dynamo=True)
    assert report["max_abs_diff"] <= 1e-4 and report["opset"] >= 18


@pytest.mark.parametrize("overrides", [{"depth_scale": 0.6, "mask_scale": 1.0}, {"mask_scale": 1.6}])
def test_scaled_views_export_with_dynamic_sizes(tmp_path: Path, overrides: dict) -> None:
    """The branch's view (depth_scale) and the mask network's (mask_scale: enlarged, outputs resized back) are
    fixed scales of the input: parity at a second, odd size catches a baked-in size."""
    torch.manual_seed(0)
    branch = {"stem_channels": 8, "encoder_channels": (8, 16), "blocks_per_stage": (1, 1)}
    branch |= {"block_kinds": ("fused", "fused"), "decoder_channels": (16, 8), "depth_activation": "exp"}
    model = create_model("tiny", depth_branch=branch, **overrides)
    report = export_onnx(model, tmp_path / "scaled.onnx", size=64)
    assert report["max_abs_diff"] <= 1e-4


def test_mask_scale_is_chosen_at_load_and_export(model_file: Path, tmp_path: Path) -> None:
    """--mask-scale: the same weights with the mask network on a smaller (faster) enlargement; ONNX keeps the one
    it was exported with, and the ONNX predictor refuses a second one."""
    from typer.testing import CliRunner

    from fgdepth.cli import app
    from fgdepth.model.checkpoint import load_model
    from fgdepth.predict import Predictor

    own, lower = load_model(model_file), load_model(model_file, mask_scale=1.0)
    assert (own.config.mask_scale, lower.config.mask_scale) == (model_config("tiny").mask_scale, 1.0)
    for (k, a), b in zip(own.state_dict().items(), lower.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    bg, comp = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        out_own, out_lower = own(bg, comp), lower(bg, comp)
    assert out_own[MASK_LOGITS].shape == out_lower[MASK_LOGITS].shape == (1, 1, 48, 64)
    assert not torch.allclose(out_own[MASK_LOGITS], out_lower[MASK_LOGITS])

    onnx_path = tmp_path / "m1.onnx"
    res = CliRunner().invoke(
        app, ["export", "-c", str(model_file), "-o", str(onnx_path), "--size", "48", "--mask-scale", "1.0"]
    )
    assert res.exit_code == 0, res.output
    got = OnnxRunner(onnx_path)(bg.numpy(), comp.numpy())
    np.testing.assert_allclose(got[MASK_LOGITS], out_lower[MASK_LOGITS].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="fixed at export"):
        Predictor.load(onnx=onnx_path, mask_scale=1.3)
    res = CliRunner().invoke(
        app, ["export", "-c", str(model_file), "-o", str(tmp_path / "x.onnx"), "--mask-scale", "9"]
    )
    assert res.exit_code != 0 and "mask_scale must be in [0.25, 4]" in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_parity_ok_accepts_float32_rounding_and_refuses_the_rest() -> None:
    from fgdepth.export import parity_ok

    assert parity_ok(5e-5, 9e-4, 0.0)  # within atol of PyTorch
    assert parity_ok(3.3e-4, 3.1e-4, 3.8e-4)  # the demo's model: PyTorch's own float32 error is larger
    assert not parity_ok(3.3e-4, 3.1e-4, 1e-6)  # a difference no rounding explains
    assert not parity_ok(1e-2, 1e-2, 4e-3)  # beyond twice the float32 error + atol
    assert not parity_ok(float("nan"), 0.0, 0.0) and not parity_ok(0.0, 0.0, float("nan"))


@pytest.mark.parametrize("error", ["offset", "nan"])
def test_failed_export_leaves_nothing_and_keeps_an_older_file(
    tmp_path: Path, monkeypatch, error: str
) -> None:
    from fgdepth import export

    path = tmp_path / "m.onnx"
    path.write_bytes(b"an older export")
    call = export.OnnxRunner.__call__

    def wrong(self, background, composite):
        out = call(self, background, composite)
        out[MASK_LOGITS] = out[MASK_LOGITS] + 1e-2 if error == "offset" else out[MASK_LOGITS] * np.nan
        return out

    monkeypatch.setattr(export.OnnxRunner, "__call__", wrong)
    with pytest.raises(RuntimeError, match="onnxruntime differs from PyTorch"):
        export_onnx(create_model("tiny"), path, size=32)
    assert path.read_bytes() == b"an older export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary left behind
    monkeypatch.undo()
    report = export_onnx(create_model("tiny"), path, size=32)
    assert report["path"] == str(path) and path.stat().st_size > 1000
    assert report["float32_error"] < 1e-4 and report["onnx_float64_error"] < 1e-4
