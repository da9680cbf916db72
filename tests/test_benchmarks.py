"""The benchmark scripts' command lines: a wrong argument is a usage error naming it, not a traceback."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run ``benchmarks/NAME.py ARGV`` as ``python`` would (in this process); return its exit status."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    try:
        runpy.run_path(str(BENCHMARKS / f"{name}.py"), run_name="__main__")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


@pytest.mark.parametrize(
    "name, argv, option",
    [
        ("train_speed", ["--steps", "0"], "--steps"),
        ("inference", ["--batch", "0"], "--batch"),
        ("inference", ["--size", "-3"], "--size"),
        ("factory", ["--backgrounds", "0"], "--backgrounds"),
        ("factory", ["--workers", "1,x"], "--workers"),
        ("synth_speed", ["--workers", "a"], "--workers"),
        ("depth_errors", ["CKPT", "DATA", "--limit", "0"], "--limit"),
        ("mask_errors", ["CKPT", "DATA", "--limit", "-2"], "--limit"),
        ("shot_differences", ["CKPT", "DATA", "--limit", "0"], "--limit"),
        ("pasted_composites", ["CKPT", "DATA", "--samples", "0"], "--samples"),
    ],
)
def test_a_count_below_one_is_a_usage_error(name, argv, option, monkeypatch, capsys):
    """Zero or negative counts (and worker lists that are not numbers) ended in ZeroDivisionError, IndexError,
    islice's ValueError or int()'s ValueError tracebacks, some after minutes of work; argparse refuses them."""
    assert run_script(name, argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "name, argv, message",
    [
        ("depth_errors", ["model.ckpt", "{missing}"], "{missing}"),
        ("mask_errors", ["model.ckpt", "{missing}"], "{missing}"),
        ("shot_differences", ["model.ckpt", "{missing}"], "{missing}"),
        ("pasted_composites", ["model.ckpt", "{missing}"], "{missing}"),
        ("train_speed", ["--case", "nope:32:2", "--steps", "1", "--repeats", "1"], "unknown model 'nope'"),
        ("train_speed", ["--case", "tiny:32"], "argument --case: expected preset:size:batch"),
        ("inference", ["--preset", "nope", "--size", "32", "--batch", "1"], "unknown model 'nope'"),
        (
            "factory",
            ["--samples", "8", "--engines", "lcal", "--inputs", "procedural"],
            "unknown --engine 'lcal'",
        ),
    ],
)
def test_a_wrong_argument_is_one_line_not_a_traceback(name, argv, message, monkeypatch, capsys, tmp_path):
    """A missing dataset, an unknown preset or a malformed --case ended in a traceback (FileNotFoundError,
    ValueError, a tuple-unpacking error naming no option); each is one line naming it (exit 2)."""
    missing = str(tmp_path / "missing")
    argv = [a.format(missing=missing) for a in argv]
    assert run_script(name, argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert message.format(missing=missing) in err and "Traceback" not in err, err


def test_depth_errors_needs_metric_depth(
    shared_inputs, shard_dataset, model_file, monkeypatch, capsys, tmp_path
):
    """depth_errors.py on a dataset without depth ended in an IndexError traceback, and on relative (teacher) depth
    printed metric figures (metres, delta1 of disparity against depth) as if they meant something; both are one
    line saying it needs metric depth."""
    import json
    import shutil

    from fgdepth.data import schema
    from fgdepth.factory import make_dataset

    plain = tmp_path / "plain"
    make_dataset(shared_inputs.config(depth="none", placements=1), plain)
    relative = shutil.copytree(shard_dataset, tmp_path / "relative")
    manifest = json.loads((relative / schema.MANIFEST_NAME).read_text())
    manifest["depth"]["kind"] = "relative"
    (relative / schema.MANIFEST_NAME).write_text(json.dumps(manifest))
    for data, kind in ((plain, "none"), (relative, "relative")):
        argv = [str(model_file), str(data), "--selection", "all", "--limit", "2"]
        assert run_script("depth_errors", argv, monkeypatch) == 2
        err = capsys.readouterr().err
        assert f"needs a dataset with metric depth; {data} has {kind}" in err and "Traceback" not in err, err


def test_an_empty_selection_is_named(shared_inputs, model_file, monkeypatch, capsys, tmp_path):
    """A selection with no samples (a world whose one person is all training: no val, no test) ended in IndexError
    tracebacks (depth_errors, mask_errors, shot_differences) or numpy's "high <= 0" (pasted_composites, no test
    rooms or people); each names the dataset and what it lacks."""
    from fgdepth.factory import make_dataset

    data = tmp_path / "ds"
    make_dataset(shared_inputs.config(placements=1, val_fraction=0.0, test_fraction=0.0), data)
    for name in ("depth_errors", "mask_errors", "shot_differences"):
        assert run_script(name, [str(model_file), str(data), "--selection", "test"], monkeypatch) == 2
        err = capsys.readouterr().err
        assert f"{data}: no samples in the selection 'test'" in err and "Traceback" not in err, (name, err)
    assert run_script("pasted_composites", [str(model_file), str(data), "--samples", "2"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert f"{data}: no test rooms or no test people to paste" in err, err
