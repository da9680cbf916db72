"""fgdepth report (make_report) on a fake training run, and fgdepth export via the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from eval_helpers import cached_model_file, write_reference_folder
from fgdepth.cli import app
from fgdepth.model import load_model
from fgdepth.report import make_report

pytestmark = pytest.mark.usefixtures("no_onednn")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as ``fit`` leaves it: a Lightning-style best.ckpt (model. prefix, model and train configs in
    hyper_parameters), metrics.json with config.data, logs/metrics.csv."""
    root = tmp_path_factory.mktemp("run")
    data = write_reference_folder(root / "data")
    run = root / "run"
    model = load_model(cached_model_file(tmp_path_factory))
    (run / "checkpoints").mkdir(parents=True)
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "model_config": model.config.to_dict(),
                "train_config": {"size": 32, "data": str(data)},
                "depth_kind": "metric",
            },
        },
        run / "checkpoints" / "best.ckpt",
    )
    summary = {"test": {"mask_iou": 0.5}, "test_selection": "test", "global_step": 30,
               "config": {"data": str(data), "size": 64, "model": "tiny"}}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(summary))
    (run / "logs").mkdir()
    rows = ["epoch,step,train/loss_step,val/loss,val/mask_iou"]
    rows += [f"0,{s},{1.0 / (s + 1):.4f},," for s in range(0, 30, 5)]
    rows += ["0,14,,0.8,0.3", "0,29,,0.6,0.5"]
    (run / "logs" / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run


def test_make_report(run_dir: Path) -> None:
    path = make_report(run_dir, n=2)
    assert path == run_dir / "report" / "report.html"
    text = path.read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)
    assert len(srcs) == 4  # good, median, worst, curves
    for src in srcs:
        assert "/" not in src and (path.parent / src).is_file(), src
    assert "curves.png" in srcs
    assert "baseline" in text and "mask_iou" in text and "best.ckpt" in text
    assert "model_input_size" in text  # run configuration: the training size from the checkpoint
    assert (
        f"<title>fgdepth report: {run_dir.parent.name}/run</title>" in text
    )  # the run's folder and its parent


def test_cli_report_other_data(
    run_dir: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = write_reference_folder(tmp_path / "other")
    result = CliRunner().invoke(app, ["report", str(run_dir), "--data", str(data), "--n", "1"])
    assert result.exit_code == 0, result.output
    assert str(data) in (run_dir / "report" / "report.html").read_text()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope: no such run folder" in missing.output, missing.output
    # a folder that is no run: named by what it lacks, not by "no config.data in" a metrics.json that is not there
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "no checkpoint (looked for" in empty.output, empty.output
    # a run whose checkpoint is an exported model (no training config): asks for --data
    (tmp_path / "weights").mkdir()
    shutil.copy(cached_model_file(tmp_path_factory), tmp_path / "weights" / "model.safetensors")
    no_data = CliRunner().invoke(app, ["report", str(tmp_path / "weights")])
    assert no_data.exit_code == 2 and "no --data given" in no_data.output, no_data.output


def test_cli_export_parity(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    ckpt = cached_model_file(tmp_path_factory)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(out), "--size", "48"])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    diff = float(re.search(r"max abs diff ([0-9.e+-]+)", result.output).group(1))
    assert diff <= 1e-4
    bad = CliRunner().invoke(app, ["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--out", str(out)])
    assert bad.exit_code == 1 and "no checkpoint" in bad.output


def test_report_of_a_run_killed_before_it_wrote_metrics_json(run_dir: Path, tmp_path: Path) -> None:
    # a killed run has checkpoints but no metrics.json: "no --data given", though its checkpoint records the data
    killed = tmp_path / "killed"
    shutil.copytree(run_dir / "checkpoints", killed / "checkpoints")
    path = make_report(killed, n=1)
    assert path.is_file() and str(run_dir.parent / "data") in path.read_text()  # the data it trained on


def test_cli_export_to_a_folder_is_an_error_not_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # --out naming an existing folder: the final rename's IsADirectoryError escaped as a traceback
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    ckpt = cached_model_file(tmp_path_factory)
    r = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path), "--size", "32"])
    assert r.exit_code == 1 and f"--out {tmp_path}: a folder" in r.output, r.output
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary left
