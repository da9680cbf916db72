"""ONNX export: dynamic batch and size, onnxruntime parity, the runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fgdepth.data.schema import DEPTH_PRED, MASK_LOGITS
from fgdepth.model import create_model

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
