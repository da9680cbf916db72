"""The factory on Ray: same bytes as the local engine, same resume semantics."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from fgdepth.data import schema
from fgdepth.factory import make_dataset

ray = pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).parent))
from test_factory import assert_same_tree, run_and_kill_after_first_unit  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("fmt", ["webdataset", "folders"])
def test_ray_engine_is_byte_identical_to_the_local_engine(local_ray, shared_inputs, tmp_path, fmt):
    make_dataset(shared_inputs.config(format=fmt, workers=1), tmp_path / "local")
    manifest = make_dataset(shared_inputs.config(format=fmt, engine="ray", workers=2), tmp_path / "ray")
    assert manifest["counts"]["samples"] > 0
    assert_same_tree(tmp_path / "local", tmp_path / "ray")


_RAY_RUN = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import Inputs
from fgdepth.factory import make_dataset
inp = Inputs(Path({bg!r}), Path({fg!r}), Path({depth!r}))
make_dataset(inp.config(placements=20, shard_size=4, engine="ray", workers=2), {out!r})
"""


def test_ray_run_killed_then_resumed(shared_inputs, tmp_path):
    out = tmp_path / "killed"
    units = run_and_kill_after_first_unit(_RAY_RUN, shared_inputs, out, timeout=120)
    time.sleep(1.0)  # let orphaned Ray workers finish their current unit (same bytes: harmless)
    assert not (out / schema.MANIFEST_NAME).exists()
    done = {p.stem for p in units.glob("*.json")}
    cfg = shared_inputs.config(placements=20, shard_size=4, workers=2)  # resumed by the local engine
    manifest = make_dataset(cfg, out)
    assert done < {u["name"] for u in manifest["units"]}
    make_dataset(cfg, tmp_path / "clean")
    assert_same_tree(out, tmp_path / "clean")


def test_a_ray_address_without_a_cluster_is_a_clear_error(
    shared_inputs, teacher_checkpoints, tmp_path, monkeypatch
):
    """Ray's ConnectionError (``--ray-address auto`` with no cluster running) was a traceback from make-dataset and
    label-depth; it is an error naming --ray-address (exit 2)."""
    from typer.testing import CliRunner

    from fgdepth.cli import app

    def no_cluster(*args, **kwargs):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    inp = shared_inputs
    folders = ["--bg-dir", str(inp.bg_dir), "--fg-dir", str(inp.fg_dir), "--size", "32", "--placements", "1"]
    ray_args = ["--engine", "ray", "--ray-address", "auto"]
    runner = CliRunner()
    result = runner.invoke(app, ["make-dataset", "--out", str(tmp_path / "ds"), *folders, *ray_args])
    assert result.exit_code == 2, result.output
    assert "--ray-address auto: cannot connect to Ray" in result.output
    result = runner.invoke(app, ["make-dataset", "--out", str(tmp_path / "ds"), *folders])  # resumed locally
    assert result.exit_code == 0, result.output
    teacher = ["--teacher", str(teacher_checkpoints["da"]), "--teacher-size", "28"]
    result = runner.invoke(app, ["label-depth", str(tmp_path / "ds"), *teacher, *ray_args])
    assert result.exit_code == 2, result.output
    assert "--ray-address auto: cannot connect to Ray" in result.output
