"""``fgdepth demo`` end to end at a toy scale: every stage runs, writes its files and reports the headline keys."""

from __future__ import annotations

import json
from pathlib import Path

from fgdepth.demo import DemoConfig, run_demo
from fgdepth.metrics import HEADLINE_KEYS


def test_demo_runs_every_stage_and_records_its_recipe(tmp_path: Path) -> None:
    cfg = DemoConfig(num_bg=10, num_fg=10, limit=None, size=64, train_size=32, train_minutes=0.05, workers=1)
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
    assert config["augment_config"] == {"person_crop_p": cfg.person_crop_p}
