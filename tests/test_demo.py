"""``fgdepth demo`` end to end at a toy scale: every stage runs, writes its files and reports the headline keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fgdepth import cli, demo
from fgdepth.demo import DemoConfig, run_demo
from fgdepth.factory import DatasetExistsError
from fgdepth.metrics import HEADLINE_KEYS


def test_demo_runs_every_stage_and_records_its_recipe(tmp_path: Path) -> None:
    cfg = DemoConfig(
        num_bg=10, num_fg=10, limit=None, size=64, train_size=32, train_minutes=0.05, workers=1, batch_size=8
    )
    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", cfg, log=lines.append)

    assert set(summary["headline"]) == set(HEADLINE_KEYS)
    assert summary["headline"]["num_samples"] > 0
    assert 0.0 <= summary["headline"]["mask_iou"] <= 1.0
    assert summary["camera"] == "intrinsics"
    assert set(summary["camera_unknown"]) == {"depth_abs_rel", "depth_rmse", "depth_delta1"}
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["headline"] == summary["headline"]
    assert Path(summary["report"]).is_file() and Path(summary["checkpoint"]).is_file()
    assert [line.split()[0] for line in lines if line.startswith("[")] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]

    # the training run records the demo's recipe: crops at train_size of the stored size, most on the person
    config = json.loads((tmp_path / "demo" / "run" / "metrics.json").read_text())["config"]
    assert (config["size"], config["infer_size"]) == (32, 64)
    assert (config["batch_size"], config["accelerator"], config["compile"]) == (8, "auto", None)
    assert config["augment_config"] == {"person_crop_p": cfg.person_crop_p}

    # a rerun reuses the world and trains again; a world of other settings is refused, naming them
    run_demo(tmp_path / "demo", cfg, log=lines.append)
    assert json.loads((tmp_path / "demo" / "run" / "metrics.json").read_text())["config"] == config
    other = DemoConfig(**{**cfg.__dict__, "num_bg": 12})
    with pytest.raises(DatasetExistsError, match=r"other settings \(num_bg: 10 -> 12\).*--overwrite"):
        run_demo(tmp_path / "demo", other, log=lines.append)
    result = CliRunner().invoke(cli.app, ["demo", "--out", str(tmp_path / "demo"), "--num-bg", "12"])
    assert (
        result.exit_code == 2
        and "num_bg: 1000 -> 12" not in result.output
        and "other settings" in result.output
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"batch_size": 0}, "batch_size must be >= 1"), ({"compile": "fast"}, "unknown compile mode 'fast'"),
     ({"workers": 0}, "--workers must be >= 1")],
)  # fmt: skip
def test_demo_stops_on_a_bad_setting_before_any_work(tmp_path: Path, setting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_demo(tmp_path / "demo", DemoConfig(**setting), log=lambda line: None)
    assert not (tmp_path / "demo").exists()


def test_demo_cli_passes_the_gpu_settings_and_names_a_bad_one(tmp_path: Path, monkeypatch) -> None:
    seen = []

    def fake_run_demo(out, cfg, log, overwrite):
        seen.append(cfg)
        raise ValueError("stop here")

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    args = [
        "demo",
        "--out",
        str(tmp_path / "d"),
        "--workers",
        "16",
        "--accelerator",
        "gpu",
        "--batch-size",
        "128",
    ]
    result = CliRunner().invoke(cli.app, [*args, "--compile", "reduce-overhead"])
    assert result.exit_code == 2 and "stop here" in result.output
    assert (seen[0].workers, seen[0].accelerator, seen[0].batch_size, seen[0].compile) == (
        16, "gpu", 128, "reduce-overhead",
    )  # fmt: skip

    monkeypatch.undo()
    result = CliRunner().invoke(cli.app, ["demo", "--out", str(tmp_path / "e"), "--batch-size", "0"])
    assert result.exit_code == 2 and "batch_size must be >= 1" in result.output
    assert not (tmp_path / "e").exists()
