"""Depth from a teacher: make-dataset --depth teacher (both modes) and label-depth on existing datasets, with
tiny random checkpoints (no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import Inputs, write_inputs

pytest.importorskip("transformers")


from fgdepth import labeling  # noqa: E402
from fgdepth.cli import app  # noqa: E402
from fgdepth.data import codec, schema  # noqa: E402
from fgdepth.data.reader import iter_tar, open_dataset, read_manifest  # noqa: E402
from fgdepth.data.verify import verify_dataset  # noqa: E402
from fgdepth.factory import make_dataset  # noqa: E402
from fgdepth.labeling import LabelError, label_depth  # noqa: E402
from fgdepth.teacher import TeacherError  # noqa: E402

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread", "offline_hub")


@pytest.fixture(scope="module")
def ckpt(teacher_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return teacher_checkpoints


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """3 backgrounds x 2 people (x2 flips) x 2 placements = 24 composites, no depth maps."""
    return write_inputs(tmp_path_factory.mktemp("inputs"), depth=None, n_bg=3, n_fg=2)


@pytest.fixture(scope="module")
def plain(small_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Datasets without depth, one per format (copy before modifying)."""
    root = tmp_path_factory.mktemp("plain")
    out = {}
    for fmt in schema.FORMATS:
        out[fmt] = root / fmt
        make_dataset(small_inputs.config(depth="none", format=fmt, shard_size=8), out[fmt])
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _members(root: Path) -> dict[str, bytes]:
    """Every sample file of a dataset: {"<stem>.<ext>": bytes}, whatever the format."""
    manifest = read_manifest(root)
    out = {}
    if manifest["format"] == "webdataset":
        for unit in manifest["units"]:
            for key, files in iter_tar(root / unit["path"]):
                out |= {f"{key}.{ext}": data for ext, data in files.items()}
        return out
    for ext, (folder, suffix) in {
        schema.EXT_COMP: (schema.COMP_DIR, ".jpg"),
        schema.EXT_MASK: (schema.MASK_DIR, ".png"),
        schema.EXT_DEPTH: (schema.DEPTH_DIR, ".png"),
        schema.EXT_META: (schema.META_DIR, ".json"),
    }.items():
        if (root / folder).is_dir():
            out |= {f"{p.name.removesuffix(suffix)}.{ext}": p.read_bytes() for p in (root / folder).iterdir()}
    return out


def _check_contact_depth(root: Path) -> int:
    """Inside every person's mask the depth is the background's label at the contact point; returns samples."""
    scale = read_manifest(root)["depth"]["scale"]
    members = _members(root)
    stems = sorted(k.removesuffix("." + schema.EXT_META) for k in members if k.endswith(schema.EXT_META))
    for stem in stems:
        meta = json.loads(members[f"{stem}.{schema.EXT_META}"])
        mask = codec.decode_mask(members[f"{stem}.{schema.EXT_MASK}"])
        depth = codec.decode_depth(members[f"{stem}.{schema.EXT_DEPTH}"], scale)
        bg = codec.decode_depth((root / schema.BG_DEPTH_DIR / f"{meta['bg_id']}.png").read_bytes(), scale)
        u = int(np.clip(round(meta["anchor_x"]), 0, bg.shape[1] - 1))
        v = int(np.clip(round(meta["anchor_y"]), 0, bg.shape[0] - 1))
        assert mask.any()
        np.testing.assert_array_equal(depth[mask], bg[v, u])
        np.testing.assert_array_equal(depth[~mask], bg[~mask])
    return len(stems)


# --- make-dataset --depth teacher --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, mode, fmt, kind",
    [("da", "background-once", "webdataset", "relative"), ("dpt", "per-composite", "folders", "relative"),
     ("da_metric", "background-once", "folders", "metric"), ("da", "per-composite", "webdataset", "relative")],
)  # fmt: skip
def test_make_dataset_with_teacher(small_inputs, ckpt, tmp_path, name, mode, fmt, kind):
    cfg = small_inputs.config(depth="teacher", teacher=str(ckpt[name]), teacher_mode=mode, format=fmt)
    cfg.teacher_size = 28 if name == "da" else None
    manifest = make_dataset(cfg, tmp_path / "ds")
    depth = manifest["depth"]
    assert (depth["kind"], depth["source"], depth["unit"]) == (kind, "teacher", "m" if kind == "metric" else
                                                                "relative disparity")  # fmt: skip
    teacher = depth["teacher"]
    assert teacher["path"] == str(ckpt[name]) and teacher["mode"] == mode
    assert teacher["model_type"] == ("dpt" if name == "dpt" else "depth_anything")
    assert teacher["input_size"] == (28 if name == "da" else teacher["native_size"])
    if kind == "metric":
        assert depth["scale"] == schema.DEPTH_MM_PER_M
    else:  # a power of two with 2x headroom over the backgrounds' labels
        assert np.log2(depth["scale"]).is_integer() and depth["scale"] * depth["max"] <= 65535
    rep = verify_dataset(tmp_path / "ds")
    assert rep.ok, rep.problems
    samples = [s for s in open_dataset(tmp_path / "ds", "all")]
    assert len(samples) == manifest["counts"]["samples"] == 24
    assert all(s[schema.DEPTH_VALID].sum() > 0 for s in samples)
    if mode == "background-once":
        _check_contact_depth(tmp_path / "ds")


def test_make_dataset_refuses_teacher_depth_for_geometry_placement(ckpt, tmp_path):
    """--synthetic --depth teacher placed the procedural world's people by the teacher's relative disparity read as
    metres (people three times the image's height, occlusion reversed); geometry placement with teacher depth is
    refused before anything is written."""
    args = [
        "--synthetic",
        "--num-bg",
        "2",
        "--num-fg",
        "1",
        "--size",
        "32",
        "--placements",
        "1",
        "--workers",
        "1",
    ]
    teacher = ["--depth", "teacher", "--teacher", str(ckpt["da"]), "--teacher-size", "28"]
    result = runner.invoke(app, ["make-dataset", "-o", str(tmp_path / "ds"), *args, *teacher])
    assert result.exit_code == 2 and "--depth teacher with --placement geometry" in result.output, (
        result.output
    )
    assert not (tmp_path / "ds").exists()


def test_make_dataset_checks_the_teacher_before_writing(small_inputs, tmp_path):
    cfg = small_inputs.config(depth="teacher", teacher=str(tmp_path / "nope"))
    with pytest.raises(TeacherError, match="does not exist"):
        make_dataset(cfg, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    result = runner.invoke(
        app, ["make-dataset", "-o", str(tmp_path / "ds"), "--bg-dir", str(small_inputs.bg_dir),
              "--fg-dir", str(small_inputs.fg_dir), "--depth", "teacher", "--teacher", str(tmp_path / "nope")],
    )  # fmt: skip
    assert result.exit_code == 2 and "does not exist" in result.output


# --- label-depth --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", schema.FORMATS)
def test_label_depth_cli_adds_depth_and_keeps_every_other_member(plain, ckpt, tmp_path, fmt):
    ds = _copy(plain[fmt], tmp_path / "ds")
    before = _members(ds)
    result = runner.invoke(
        app, ["label-depth", str(ds), "--teacher", str(ckpt["da"]), "--teacher-size", "28"]
    )
    assert result.exit_code == 0, result.output
    after = _members(ds)
    added = {k for k in after if k.endswith(schema.EXT_DEPTH)}
    assert len(added) == 24 and set(after) - added == set(before)
    assert all(after[k] == before[k] for k in before)  # byte for byte
    manifest = read_manifest(ds)
    assert manifest["depth"]["kind"] == "relative" and manifest["depth"]["teacher"]["input_size"] == 28
    assert _check_contact_depth(ds) == 24
    assert runner.invoke(app, ["inspect", str(ds)]).exit_code == 0
    assert not list((ds / schema.UNIT_DIR).glob("*depth*"))  # job files removed once finished
    # a second run refuses to replace depth unless asked to
    with pytest.raises(LabelError, match="already has depth"):
        label_depth(ds, ckpt["da"])
    manifest = label_depth(ds, ckpt["dpt"], mode="per-composite", overwrite_depth=True)
    assert manifest["depth"]["teacher"]["model_type"] == "dpt"
    assert verify_dataset(ds).ok
    assert all(_members(ds)[k] == before[k] for k in before)


def test_label_depth_equals_make_dataset_background_once(plain, small_inputs, ckpt, tmp_path):
    """Labelling a finished dataset gives the bytes that make-dataset --depth teacher writes."""
    ds = _copy(plain["webdataset"], tmp_path / "ds")
    label_depth(ds, ckpt["da"], input_size=28)
    cfg = small_inputs.config(depth="teacher", teacher=str(ckpt["da"]), teacher_size=28, shard_size=8)
    made = make_dataset(cfg, tmp_path / "made")
    assert read_manifest(ds)["depth"]["scale"] == made["depth"]["scale"]
    labelled, composed = _members(ds), _members(tmp_path / "made")
    assert labelled.keys() == composed.keys()
    for k, data in labelled.items():
        if not k.endswith(schema.EXT_META):
            assert data == composed[k], k
        else:  # label-depth keeps meta.json byte-identical: its person_depth stays as composed (0, no depth)
            meta, ref = json.loads(data), json.loads(composed[k])
            assert meta.pop("person_depth") == 0 and ref.pop("person_depth") >= 0
            assert meta == ref, k


@pytest.mark.parametrize("mode, fmt", [("background-once", "webdataset"), ("per-composite", "folders")])
def test_label_depth_resumes_after_an_interruption(plain, ckpt, tmp_path, monkeypatch, mode, fmt):
    clean = label_depth(_copy(plain[fmt], tmp_path / "clean"), ckpt["da"], mode=mode, input_size=28)
    ds = _copy(plain[fmt], tmp_path / "ds")
    real = labeling._label_unit
    calls: list[str] = []
    fail_at = [2]  # the second unit of the first run dies

    def flaky(root, manifest, unit, job, depth_fn):
        calls.append(unit["name"])
        if len(calls) == fail_at[0]:
            raise RuntimeError("killed")
        return real(root, manifest, unit, job, depth_fn)

    monkeypatch.setattr(labeling, "_label_unit", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        label_depth(ds, ckpt["da"], mode=mode, input_size=28)
    fail_at[0] = 0
    assert read_manifest(ds)["depth"] is None  # the manifest changes only at the end
    assert not verify_dataset(ds).ok  # the first unit's checksum changed: not a finished dataset yet
    first = calls[0]
    calls.clear()
    with pytest.raises(LabelError, match="interrupted label-depth with other settings"):
        label_depth(ds, ckpt["da"], mode=mode, input_size=42)
    resumed = label_depth(ds, ckpt["da"], mode=mode, input_size=28)
    assert first not in calls and len(calls) == len(clean["units"]) - 1
    assert resumed == clean
    assert _members(ds) == _members(tmp_path / "clean")
    assert verify_dataset(ds).ok


def test_label_depth_clear_errors(plain, tmp_path):
    ds = plain["webdataset"]
    with pytest.raises(TeacherError, match="does not exist"):
        label_depth(ds, tmp_path / "missing")
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]})
    )
    with pytest.raises(TeacherError, match="not a depth-estimation checkpoint"):
        label_depth(ds, bert)
    result = runner.invoke(app, ["label-depth", str(ds), "--teacher", str(bert)])
    assert result.exit_code == 2 and "not a depth-estimation checkpoint" in result.output
    with pytest.raises(FileNotFoundError, match="no manifest"):
        label_depth(tmp_path, bert)
    assert read_manifest(ds)["depth"] is None  # nothing was touched


@pytest.mark.parametrize(
    "option, needle",
    [(["--device", "tpu"], "not a device"), (["--device", "cuda"], "CUDA is not available"),
     (["--engine", "spark"], "--engine")],
)  # fmt: skip
def test_label_depth_refuses_bad_device_and_engine(plain, ckpt, tmp_path, option, needle):
    # --device tpu was a RuntimeError traceback, --device cuda on a machine without CUDA an AssertionError one,
    # and an unknown --engine ran the local engine as if it had been asked for
    if option[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ds = _copy(plain["webdataset"], tmp_path / "ds")
    result = runner.invoke(app, ["label-depth", str(ds), "--teacher", str(ckpt["da"]), *option])
    assert result.exit_code == 2 and needle in result.output, (result.output, result.exception)
    assert read_manifest(ds)["depth"] is None and not (ds / schema.BG_DEPTH_DIR).exists()


def test_label_depth_refuses_an_unknown_engine_or_no_workers(plain, ckpt, tmp_path, monkeypatch):
    """--engine rayy labelled the whole dataset on the local engine, silently; --engine ray --workers 0 started a
    Ray instance of no CPUs whose actors never ran (a hang). Both are errors naming the option, before any work."""

    def no_ray(*args, **kwargs):
        raise AssertionError("reached the Ray engine")

    monkeypatch.setattr(labeling, "_label_units_ray", no_ray)
    ds = _copy(plain["webdataset"], tmp_path / "ds")
    teacher = ["--teacher", str(ckpt["da"]), "--teacher-size", "28"]
    for extra, message in (
        (["--engine", "rayy"], "unknown --engine 'rayy'; valid: local, ray"),
        (["--engine", "ray", "--workers", "0"], "--workers must be >= 1, got 0"),
    ):
        result = runner.invoke(app, ["label-depth", str(ds), *teacher, *extra])
        assert result.exit_code == 2 and message in result.output, result.output
    assert (
        read_manifest(ds)["depth"] is None and not (ds / schema.BG_DEPTH_DIR).exists()
    )  # nothing was touched


# --- downstream: relative depth is read, trained and evaluated as relative ---------------------------------


def test_relative_depth_downstream(plain, ckpt, tmp_path):
    from fgdepth.evaluate import dataset_info, resolve_align
    from fgdepth.train import FgDataModule, TrainConfig
    from fgdepth.viz import depth_unit
    from fgdepth.world import load_world

    ds = _copy(plain["folders"], tmp_path / "ds")
    manifest = label_depth(ds, ckpt["da"], input_size=28)
    scale = manifest["depth"]["scale"]
    sample = open_dataset(ds, "all")[0]
    raw = codec.decode_uint16((ds / schema.DEPTH_DIR / f"{sample[schema.KEY]}.png").read_bytes())
    np.testing.assert_allclose(sample[schema.DEPTH][0].numpy(), raw / scale, rtol=1e-6)
    assert FgDataModule(TrainConfig(data=str(ds))).depth_kind == "relative"
    info = dataset_info(ds)
    assert info["depth_kind"] == "relative" and resolve_align("auto", info["depth_kind"]) == "lstsq"
    assert depth_unit(info["depth_kind"]) == "rel"
    world = load_world(ds)  # the on-the-fly reader composes from the relabelled world
    assert (world.depth_kind, world.depth_scale) == ("relative", scale)
    assert all(bg.depth is not None for bg in world.backgrounds)


@pytest.mark.parametrize("mode", ["background-once", "per-composite"])
def test_label_depth_on_ray_matches_the_local_engine(plain, ckpt, tmp_path, mode):
    ray = pytest.importorskip("ray")
    local = label_depth(_copy(plain["webdataset"], tmp_path / "local"), ckpt["da"], mode=mode, input_size=28)
    try:
        on_ray = label_depth(
            _copy(plain["webdataset"], tmp_path / "ray"), ckpt["da"], mode=mode, input_size=28, engine="ray"
        )
    finally:
        ray.shutdown()
    a, b = _members(tmp_path / "local"), _members(tmp_path / "ray")
    assert a.keys() == b.keys()
    assert verify_dataset(tmp_path / "ray").ok
    for k in a:
        if mode == "background-once" or not k.endswith(schema.EXT_DEPTH):
            assert a[k] == b[k], k  # the same bytes
        else:  # a teacher pass in another process may use other thread counts: equal to the last stored unit
            da, db = (codec.decode_uint16(x).astype(int) for x in (a[k], b[k]))
            assert np.abs(da - db).max() <= 1, k
    if mode == "background-once":
        assert local["units"] == on_ray["units"]


@pytest.mark.parametrize("fmt", schema.FORMATS)
def test_rerunning_make_dataset_keeps_the_labels_and_their_record(plain, small_inputs, ckpt, tmp_path, fmt):
    # the same command again over a labelled dataset (a habit after a crash) kept the files but rewrote the
    # manifest's depth block from its settings: source "none", the teacher and labelled_by gone
    ds = _copy(plain[fmt], tmp_path / "ds")
    labelled = label_depth(ds, ckpt["da"])["depth"]
    members = _members(ds)
    again = make_dataset(small_inputs.config(depth="none", format=fmt, shard_size=8), ds)["depth"]
    assert again == labelled
    assert _members(ds) == members
    assert verify_dataset(ds).ok


def test_label_depth_refuses_a_world_whose_people_were_placed_by_its_depth(ckpt, tmp_path):
    # the labels replaced bg_depth/, by which on-the-fly composition places the procedural world's people: its
    # samples then differed from the stored ones
    from fgdepth.config import FactoryConfig

    ds = tmp_path / "ds"
    make_dataset(
        FactoryConfig(num_bg=4, num_fg=2, placements=1, size=32, depth="none", val_fraction=0.25), ds
    )
    before = sorted(p.name for p in (ds / schema.BG_DEPTH_DIR).iterdir())
    with pytest.raises(LabelError, match="placed by the procedural world's exact depth"):
        label_depth(ds, ckpt["da"], overwrite_depth=True)
    result = runner.invoke(app, ["label-depth", str(ds), "--teacher", str(ckpt["da"])])
    assert result.exit_code == 2 and "--placement geometry" in result.output, result.output
    assert sorted(p.name for p in (ds / schema.BG_DEPTH_DIR).iterdir()) == before
    assert read_manifest(ds)["depth"] is None
