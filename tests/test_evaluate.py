"""fgdepth.evaluate: the pure scoring core with known answers, evaluate() on a reference-layout folder and a
factory dataset, the ONNX path and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from eval_helpers import NO_DEPTH, REF_SIZES, cached_onnx_file, scene, write_reference_folder
from fgdepth.cli import app
from fgdepth.evaluate import evaluate, evaluate_predictions, resolve_align, score_sample
from fgdepth.metrics import HEADLINE_KEYS
from fgdepth.model import model_config

pytestmark = pytest.mark.usefixtures("no_onednn")


@pytest.fixture(scope="module")
def ref_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reference_folder(tmp_path_factory.mktemp("ref"))


def _samples() -> list[dict]:
    out = []
    for i, (h, w) in enumerate(REF_SIZES):
        bg, comp, mask, depth = scene(h, w, i)
        out.append(
            dict(
                key=f"s{i}", background=bg, composite=comp, mask=mask, depth=None if i == NO_DEPTH else depth
            )
        )
    return out


# ------------------------------------------------------------------------------------------ pure core
def test_perfect_predictions() -> None:
    samples = _samples()
    res = evaluate_predictions([s["mask"] for s in samples], [s["depth"] for s in samples], samples)
    assert set(HEADLINE_KEYS) <= set(res)
    assert res["num_samples"] == 4 and res["num_depth_samples"] == 3
    assert res["mask_iou"] == 1.0 and res["mask_f1"] == 1.0
    assert res["depth_abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert res["depth_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert res["depth_delta1"] == 1.0
    assert res["all"]["depth_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < res["baseline_mask_iou"] <= 1.0  # a clean synthetic difference: the baseline does well
    rows = res["per_sample"]
    assert [r["key"] for r in rows] == ["s0", "s1", "s2", "s3"]
    assert math.isnan(rows[NO_DEPTH]["depth_abs_rel"]) and not rows[NO_DEPTH]["has_depth"]


def test_known_values_and_alignment() -> None:
    _, _, mask, depth = scene(40, 40, 0)
    sample = dict(
        key="a", background=np.zeros((40, 40, 3), np.uint8), composite=np.zeros((40, 40, 3), np.uint8)
    )
    sample.update(mask=mask, depth=depth)
    half = mask.copy()
    rows_true = np.nonzero(mask.any(1))[0]
    half[rows_true[len(rows_true) // 2] :] = False  # the top part of the true mask only
    expected_iou = half.sum() / mask.sum()
    row = score_sample(half, depth * 2, sample, align="none")
    assert row["mask_iou"] == pytest.approx(expected_iou)
    assert row["mask_precision"] == 1.0
    assert row["depth_abs_rel"] == pytest.approx(1.0)  # |2t - t| / t
    assert row["depth_delta1"] == 0.0
    assert score_sample(half, depth * 2, sample, align="median")["depth_abs_rel"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert score_sample(half, depth * 2 + 1, sample, align="lstsq")["depth_abs_rel"] == pytest.approx(
        0.0, abs=1e-6
    )
    # identical images: the baseline finds nothing, and scores 0 on a non-empty target
    assert row["baseline_mask_iou"] == 0.0


def test_resolve_align() -> None:
    assert resolve_align("auto", "relative") == "lstsq"
    assert resolve_align("auto", "metric") == "none"
    assert resolve_align("median", "metric") == "median"
    with pytest.raises(ValueError, match="valid"):
        resolve_align("bogus", "metric")


def test_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        evaluate_predictions([np.zeros((4, 4), bool)], [], [])


# --------------------------------------------------------------------------------------------- running
def test_evaluate_reference_folder(model_file: Path, ref_folder: Path) -> None:
    res = evaluate(model_file, ref_folder, per_sample=True, size=64)
    assert set(HEADLINE_KEYS) <= set(res)
    assert res["num_samples"] == len(REF_SIZES) and res["num_depth_samples"] == len(REF_SIZES) - 1
    assert res["selection"] == "all" and res["align"] == "none" and res["size"] == 64
    assert 0.0 <= res["mask_iou"] <= 1.0 and res["depth_abs_rel"] >= 0
    assert res["baseline_mask_iou"] > 0.5
    sizes = {(r["height"], r["width"]) for r in res["per_sample"]}
    assert sizes == set(REF_SIZES)  # scored at the ground truth's resolution
    assert evaluate(model_file, ref_folder, limit=2, size=64)["num_samples"] == 2
    # the checkpoint's own; --mask-scale chooses another
    assert res["mask_scale"] == model_config("tiny").mask_scale
    lower = evaluate(model_file, ref_folder, size=64, mask_scale=1.0)
    assert lower["mask_scale"] == 1.0  # its effect on the outputs: test_export


def test_evaluate_factory_dataset(model_file: Path, shard_dataset: Path) -> None:
    res = evaluate(model_file, shard_dataset, selection="test", batch_size=4)
    assert res["num_samples"] > 0 and res["selection"] == "test"
    assert res["size"] == 48  # the dataset's size when the checkpoint records none
    assert not math.isnan(res["depth_abs_rel"])
    with pytest.raises(ValueError, match="valid"):
        evaluate(model_file, shard_dataset, selection="nope")


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_named(model_file: Path, ref_folder: Path, limit: int) -> None:
    # --limit 0 / -1 said "the selection 'all' has no samples", blaming a selection that has them
    with pytest.raises(ValueError, match=f"limit must be >= 1, got {limit}"):
        evaluate(model_file, ref_folder, size=64, limit=limit)


def test_evaluate_onnx_matches_torch(
    model_file: Path, ref_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    onnx_path = cached_onnx_file(tmp_path_factory)
    a = evaluate(model_file, ref_folder, size=64, per_sample=True)
    b = evaluate(None, ref_folder, size=64, per_sample=True, onnx=onnx_path)
    assert b["mask_iou"] == pytest.approx(a["mask_iou"], abs=1e-3)
    assert b["depth_abs_rel"] == pytest.approx(a["depth_abs_rel"], abs=1e-4)


def test_cli_evaluate(model_file: Path, ref_folder: Path, tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    args = ["evaluate", "--checkpoint", str(model_file), "--data", str(ref_folder), "--size", "64"]
    result = CliRunner().invoke(
        app, [*args, "--json", str(out_json), "--csv", str(out_csv), "--align", "median"]
    )
    assert result.exit_code == 0, result.output
    assert "mask_iou" in result.output and "baseline" in result.output
    data = json.loads(out_json.read_text())  # strict JSON (NaN written as null)
    assert set(HEADLINE_KEYS) <= set(data) and data["num_samples"] == 4 and data["align"] == "median"
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[NO_DEPTH]["depth_abs_rel"] == ""
    bad = CliRunner().invoke(
        app, ["evaluate", "--checkpoint", str(tmp_path / "none.ckpt"), "--data", str(ref_folder)]
    )
    assert bad.exit_code == 2 and "no checkpoint" in bad.output


def test_evaluate_reads_masks_stored_as_0_1(model_file: Path, ref_folder: Path, tmp_path: Path) -> None:
    # masks written as 0/1 (np.uint8 of a bool) read as empty (> 127): IoU 0 for every model, no word said
    import shutil

    import cv2

    ones = tmp_path / "ref01"
    shutil.copytree(ref_folder, ones)
    for path in (ones / "bg_fg_mask").glob("*.png"):
        cv2.imwrite(str(path), (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8))
    want, got = evaluate(model_file, ref_folder, size=64), evaluate(model_file, ones, size=64)
    assert got["baseline_mask_iou"] == want["baseline_mask_iou"] > 0.5
    assert got["mask_iou"] == want["mask_iou"]


def test_evaluate_reads_coloured_masks(model_file: Path, ref_folder: Path, tmp_path: Path) -> None:
    # a red-on-black RGB mask (annotation tools write them) is grey 76 < 128: every mask read as empty, IoU 0
    import shutil

    import cv2

    red = tmp_path / "red"
    shutil.copytree(ref_folder, red)
    for path in (red / "bg_fg_mask").glob("*.png"):
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127
        bgr = np.zeros((*mask.shape, 3), np.uint8)
        bgr[mask] = (0, 0, 255)
        cv2.imwrite(str(path), bgr)
    want, got = evaluate(model_file, ref_folder, size=64), evaluate(model_file, red, size=64)
    assert got["baseline_mask_iou"] == want["baseline_mask_iou"] > 0.5
    assert got["mask_iou"] == want["mask_iou"]


def test_cli_evaluate_refuses_an_unwritable_output_before_evaluating(
    model_file: Path, ref_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --json naming a folder, or --csv under a file: a traceback once the whole evaluation was done (and lost)
    import fgdepth.evaluate

    def no_evaluation(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated before checking the outputs")

    monkeypatch.setattr(fgdepth.evaluate, "evaluate", no_evaluation)
    (tmp_path / "afile").write_text("")
    args = ["evaluate", "--checkpoint", str(model_file), "--data", str(ref_folder)]
    r = CliRunner().invoke(app, [*args, "--json", str(tmp_path)])
    assert r.exit_code == 2 and f"--json {tmp_path}: a folder" in r.output, r.output
    r = CliRunner().invoke(app, [*args, "--csv", str(tmp_path / "afile" / "r.csv")])
    assert r.exit_code == 2 and "--csv" in r.output and "afile" in r.output, r.output
