"""The dataset factory (fgdepth.factory): plan, splits without leakage, determinism, resume, bad inputs, reruns."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SIZE, imwrite_rgb, person_rgba, write_inputs
from fgdepth.config import FactoryConfig
from fgdepth.data import schema
from fgdepth.data.reader import FolderDataset, ShardDataset, iter_tar
from fgdepth.data.verify import verify_dataset
from fgdepth.factory import (
    DatasetExistsError,
    Plan,
    assign_splits,
    fg_id,
    make_dataset,
    make_plan,
)
from fgdepth.sources import SourceError
from fgdepth.world import load_world


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (temporaries included: there must be none)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_tree(a: Path, b: Path) -> None:
    ta, tb = tree_bytes(a), tree_bytes(b)
    assert sorted(ta) == sorted(tb)
    differ = [k for k in ta if ta[k] != tb[k]]
    assert not differ, f"files differ: {differ[:10]}"


def shard_metas(root: Path) -> list[tuple[str, dict]]:
    """(unit group, meta) of every sample in every shard of a webdataset-format dataset."""
    manifest = json.loads((root / schema.MANIFEST_NAME).read_text())
    out = []
    for unit in manifest["units"]:
        for _, files in iter_tar(root / unit["path"]):
            out.append((unit["group"], json.loads(files[schema.EXT_META])))
    return out


# ------------------------------------------------------------------------------------------------ plan
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 100])
def test_assign_splits_counts(n):
    splits = assign_splits(n, 0.1, 0.2, np.random.default_rng(0))
    assert len(splits) == n and splits.count("train") >= 1
    if n >= 3:
        assert splits.count("val") >= 1 and splits.count("test") >= 1
    if n == 100:
        assert (splits.count("val"), splits.count("test")) == (10, 20)
    assert assign_splits(n, 0.1, 0.2, np.random.default_rng(0)) == splits
    assert assign_splits(n, 0.0, 0.0, np.random.default_rng(0)) == ["train"] * n


def test_plan_decode_is_a_bijection():
    plan = Plan(num_bg=3, num_people=4, flip=True, placements=5, units=[])
    seen = {plan.decode(i) for i in range(plan.total)}
    assert len(seen) == plan.total == 3 * 8 * 5
    assert plan.decode(0) == (0, 0, False, 0)
    assert plan.decode(5) == (0, 0, True, 0)  # the mirror image follows its person
    assert plan.decode(plan.total - 1) == (2, 3, True, 4)


def test_units_cover_every_sample_once_and_respect_splits(shard_dataset, shared_inputs):
    world = load_world(shard_dataset)
    cfg = shared_inputs.config()
    plan = make_plan(cfg, world)
    indices = [i for u in plan.units for i in u.indices]
    assert sorted(indices) == list(range(plan.total))
    for unit in plan.units:
        assert 1 <= len(unit.indices) <= cfg.shard_size
        for i in unit.indices:
            b, person, _, _ = plan.decode(i)
            assert unit.group == schema.group_name(world.bg_splits[b], world.person_splits[person])


def test_limit_takes_a_seeded_subset(shard_dataset, shared_inputs):
    world = load_world(shard_dataset)
    a = make_plan(shared_inputs.config(limit=25), world)
    b = make_plan(shared_inputs.config(limit=25), world)
    c = make_plan(shared_inputs.config(limit=25, seed=3), world)
    ia = sorted(i for u in a.units for i in u.indices)
    assert len(set(ia)) == 25 and ia == sorted(i for u in b.units for i in u.indices)
    assert ia != sorted(i for u in c.units for i in u.indices)


# ---------------------------------------------------------------------------------------------- splits
def test_manifest_counts_and_splits(shard_dataset):
    m = json.loads((shard_dataset / schema.MANIFEST_NAME).read_text())
    assert m["counts"]["samples"] == 6 * 10 * 2 == sum(u["count"] for u in m["units"])
    assert m["counts"]["samples"] == m["counts"]["by_selection"]["all"]
    assert set(m["splits"]["backgrounds"].values()) == set(schema.SPLITS)
    assert set(m["splits"]["people"].values()) == set(schema.SPLITS)
    assert m["depth"]["kind"] == "metric" and m["depth"]["unit"] == "m" and m["depth"]["scale"] == 1000.0
    src = json.loads((shard_dataset / schema.SOURCES_NAME).read_text())
    assert {b["id"]: b["split"] for b in src["backgrounds"]} == m["splits"]["backgrounds"]


def test_no_held_out_background_or_person_reaches_training(shard_dataset, folder_dataset):
    m = json.loads((shard_dataset / schema.MANIFEST_NAME).read_text())
    bg_split, person_split = m["splits"]["backgrounds"], m["splits"]["people"]
    metas = shard_metas(shard_dataset)
    assert len(metas) == m["counts"]["samples"]
    for group, meta in metas:  # every sample's tags agree with the manifest and with its shard's group
        assert meta["bg_split"] == bg_split[meta["bg_id"]]
        assert meta["fg_split"] == person_split[meta["person_id"]]  # flipped people share their split
        assert meta["fg_id"] == fg_id(meta["person_id"], meta["flip"])
        assert group == schema.group_name(meta["bg_split"], meta["fg_split"])
    flipped = {meta["person_id"] for _, meta in metas if meta["flip"]}
    assert flipped == set(person_split)
    for selection in ("train", "val"):
        keys = [s[schema.KEY] for s in ShardDataset(shard_dataset, selection)]
        folder_keys = FolderDataset(folder_dataset, selection).stems
        assert keys and sorted(keys) == sorted(folder_keys)
        for key in keys:
            bg, fg, _ = schema.parse_stem(key)
            person = fg[:-1] if fg.endswith("f") else fg
            assert bg_split[bg] == selection and person_split[person] == selection, key
    new_people = ShardDataset(shard_dataset, "test_new_people")
    for s in new_people:
        bg, fg, _ = schema.parse_stem(s[schema.KEY])
        assert bg_split[bg] == "train" and person_split[fg.rstrip("f")] == "test"
    assert len(new_people) == m["counts"]["by_selection"]["test_new_people"] > 0


# --------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("fmt", ["webdataset", "folders"])
def test_byte_identical_across_worker_counts(shared_inputs, tmp_path, fmt):
    make_dataset(shared_inputs.config(format=fmt, workers=1), tmp_path / "w1")
    make_dataset(shared_inputs.config(format=fmt, workers=2), tmp_path / "w2")
    assert_same_tree(tmp_path / "w1", tmp_path / "w2")
    assert len(list((tmp_path / "w1" / schema.UNIT_DIR).iterdir())) > 2  # really several units


def test_seed_changes_the_samples(shared_inputs, tmp_path):
    a = make_dataset(shared_inputs.config(seed=0, val_fraction=0, test_fraction=0), tmp_path / "a")
    b = make_dataset(shared_inputs.config(seed=1, val_fraction=0, test_fraction=0), tmp_path / "b")
    assert [u["keys_sha256"] for u in a["units"]] == [u["keys_sha256"] for u in b["units"]]
    assert [u["sha256"] for u in a["units"]] != [u["sha256"] for u in b["units"]]


_KILLED_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import Inputs
from pathlib import Path
import fgdepth.factory as F
real = F.write_unit
def slow(*a, **k):  # leave time to be killed between units
    time.sleep(0.15)
    return real(*a, **k)
F.write_unit = slow
inp = Inputs(Path({bg!r}), Path({fg!r}), Path({depth!r}))
F.make_dataset(inp.config(placements=4, shard_size=8, workers=1), {out!r})
"""


def run_and_kill_after_first_unit(template: str, inputs, out: Path, timeout: float) -> Path:  # noqa: ANN001
    """Run ``template`` (Python code formatted with the input folders and ``out``) in its own process group and
    SIGKILL the whole group as soon as the first unit record appears; return the unit-record folder."""
    code = template.format(
        tests=str(Path(__file__).parent),
        bg=str(inputs.bg_dir),
        fg=str(inputs.fg_dir),
        depth=str(inputs.depth_dir),
        out=str(out),
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    units = out / schema.UNIT_DIR
    deadline = time.monotonic() + timeout
    try:
        while not (units.is_dir() and any(units.glob("*.json"))):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return units


def test_resume_after_kill_writes_only_missing_units(shared_inputs, tmp_path):
    out = tmp_path / "killed"
    units = run_and_kill_after_first_unit(_KILLED_RUN, shared_inputs, out, timeout=60)
    assert not (out / schema.MANIFEST_NAME).exists()
    done = {p.stem for p in units.glob("*.json")}
    finished = {name: os.stat(out / schema.SHARD_DIR / f"{name}.tar") for name in done}
    cfg = shared_inputs.config(placements=4, shard_size=8, workers=2)
    manifest = make_dataset(cfg, out)
    all_units = {u["name"] for u in manifest["units"]}
    assert done < all_units, "the kill must land before the end for this test to mean anything"
    for name, before in finished.items():  # finished shards are not rewritten
        after = os.stat(out / schema.SHARD_DIR / f"{name}.tar")
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), name
    make_dataset(cfg, tmp_path / "clean")
    assert_same_tree(out, tmp_path / "clean")


def test_rerun_with_same_settings_rewrites_nothing(shared_inputs, tmp_path):
    out = tmp_path / "ds"
    first = make_dataset(shared_inputs.config(workers=1), out)
    before = {p: os.stat(p).st_mtime_ns for p in (out / schema.SHARD_DIR).iterdir()}
    again = make_dataset(shared_inputs.config(workers=2, strict=True), out)  # run-time options may differ
    assert again == first
    assert {p: os.stat(p).st_mtime_ns for p in (out / schema.SHARD_DIR).iterdir()} == before


def test_stale_temporaries_are_removed_on_resume(shared_inputs, tmp_path):
    out = tmp_path / "ds"
    make_dataset(shared_inputs.config(), out)
    (out / schema.SHARD_DIR / ".train-train-000000.tar.tmp").write_bytes(b"half a shard")
    (out / schema.UNIT_DIR / "train-train-000001.json").unlink()  # a unit whose record never got written
    make_dataset(shared_inputs.config(), out)
    make_dataset(shared_inputs.config(), tmp_path / "clean")
    assert_same_tree(out, tmp_path / "clean")


# ---------------------------------------------------------------------------------------------- reruns
def test_other_settings_refuse_unless_overwrite(shared_inputs, tmp_path):
    out = tmp_path / "ds"
    make_dataset(shared_inputs.config(seed=0), out)
    (out / "my_notes.txt").write_text("keep me")
    with pytest.raises(DatasetExistsError, match=r"seed: 0 -> 1.*--overwrite"):
        make_dataset(shared_inputs.config(seed=1), out)
    with pytest.raises(DatasetExistsError, match="format"):
        make_dataset(shared_inputs.config(format="folders"), out)
    make_dataset(shared_inputs.config(seed=1), out, overwrite=True)
    assert (out / "my_notes.txt").read_text() == "keep me"  # only fgdepth's own files are cleared
    (out / "my_notes.txt").unlink()
    # the overwritten dataset is the new one, not the previous run's (same process, same directory)
    make_dataset(shared_inputs.config(seed=1), tmp_path / "clean")
    assert_same_tree(out, tmp_path / "clean")


def test_a_run_that_failed_on_its_inputs_does_not_refuse_the_corrected_command(inputs, tmp_path):
    # RGB people without masks: the error asks for --fg-mask-dir; the run wrote run.json and nothing else, so the
    # command that gives it (other settings) must start, not be told the directory holds another dataset
    rgb_dir, mask_dir = tmp_path / "rgb", tmp_path / "masks"
    rgb_dir.mkdir()
    mask_dir.mkdir()
    for i in range(3):
        rgba = person_rgba(i)
        imwrite_rgb(rgb_dir / f"p{i}.png", rgba[..., :3])
        assert cv2.imwrite(str(mask_dir / f"p{i}.png"), rgba[..., 3])
    out = tmp_path / "ds"
    with pytest.raises(SourceError, match="fg-mask-dir"):
        make_dataset(inputs.config(fg_dir=str(rgb_dir)), out)
    m = make_dataset(inputs.config(fg_dir=str(rgb_dir), fg_mask_dir=str(mask_dir)), out)
    assert m["counts"]["people"] == 3
    make_dataset(inputs.config(fg_dir=str(rgb_dir), fg_mask_dir=str(mask_dir)), tmp_path / "clean")
    assert_same_tree(out, tmp_path / "clean")
    # a finished dataset that lost its sources.json still holds samples: other settings are refused, not cleared
    (out / schema.SOURCES_NAME).unlink()
    with pytest.raises(DatasetExistsError, match="other settings"):
        make_dataset(inputs.config(fg_dir=str(rgb_dir), fg_mask_dir=str(mask_dir), seed=1), out)
    assert (out / schema.MANIFEST_NAME).is_file()


def test_a_bad_height_range_is_refused_before_anything_is_written(inputs, tmp_path):
    # checked only when the first sample was placed, after the world was stored: the corrected command was then
    # refused as 'a dataset made with other settings'
    out = tmp_path / "ds"
    with pytest.raises(ValueError, match="--fg-height"):
        make_dataset(inputs.config(fg_height=(0.8, 0.2)), out)
    assert not out.exists()
    make_dataset(inputs.config(fg_height=(0.2, 0.8)), out)


def test_the_same_folders_given_relative_or_absolute_resume(inputs, tmp_path, monkeypatch):
    # run.json keeps the folders as typed: a rerun naming the same folders by absolute path was refused as
    # 'a dataset made with other settings' (bg_dir: 'in/bg' -> '/.../in/bg'), leaving --overwrite
    monkeypatch.chdir(inputs.bg_dir.parent.parent)
    rel = inputs.config(
        bg_dir=os.path.relpath(inputs.bg_dir), fg_dir=os.path.relpath(inputs.fg_dir), bg_depth_dir=None
    )
    out = tmp_path / "ds"
    make_dataset(rel, out)
    before = tree_bytes(out)
    make_dataset(dataclasses.replace(rel, bg_dir=str(inputs.bg_dir), fg_dir=str(inputs.fg_dir)), out)
    settings = (schema.RUN_NAME, schema.MANIFEST_NAME)  # they record the folders as given this time
    assert {k: v for k, v in tree_bytes(out).items() if k not in settings} == {
        k: v for k, v in before.items() if k not in settings
    }
    with pytest.raises(DatasetExistsError, match="fg_dir"):
        make_dataset(dataclasses.replace(rel, fg_dir=str(tmp_path)), out)


def test_non_dataset_directory_is_refused(shared_inputs, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(DatasetExistsError, match="not an fgdepth dataset"):
        make_dataset(shared_inputs.config(), out)


# ---------------------------------------------------------------------------------------------- inputs
def test_truncated_jpeg_is_skipped_and_counted(inputs, tmp_path):
    bad = inputs.bg_dir / "room4.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    m = make_dataset(inputs.config(), tmp_path / "ds")
    assert m["counts"]["skipped_inputs"] == 1 and m["counts"]["backgrounds"] == 5
    assert Path(m["skipped"][0]["path"]).name == "room4.jpg"
    names = [
        b["name"] for b in json.loads((tmp_path / "ds" / schema.SOURCES_NAME).read_text())["backgrounds"]
    ]
    assert "room4.jpg" not in names and len(names) == 5
    with pytest.raises(SourceError, match=r"--strict.*room4\.jpg"):
        make_dataset(inputs.config(strict=True), tmp_path / "strict")


def test_no_usable_people_left_names_what_was_skipped_and_why(inputs, tmp_path):
    # the error said only 'no usable backgrounds or foregrounds left after skipping unreadable files': the
    # skipped files and their reasons are printed on success only, so the user was told nothing to fix
    for p in inputs.fg_dir.iterdir():
        rgba = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        rgba[..., 3] = 0
        assert cv2.imwrite(str(p), rgba)
    with pytest.raises(SourceError, match=r"no usable foregrounds.*person0\.png: alpha channel is empty"):
        make_dataset(inputs.config(), tmp_path / "ds")


def test_foreground_without_alpha(inputs, tmp_path):
    rgba = person_rgba(7)
    imwrite_rgb(inputs.fg_dir / "no_alpha.jpg", rgba[..., :3])
    with pytest.raises(SourceError, match=r"no alpha.*no_alpha\.jpg"):
        make_dataset(inputs.config(), tmp_path / "a")
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(str(masks / "no_alpha.png"), np.where(rgba[..., 3] > 127, 255, 0).astype(np.uint8))
    m = make_dataset(inputs.config(fg_mask_dir=str(masks)), tmp_path / "b")
    assert m["counts"]["people"] == 6
    names = [p["name"] for p in json.loads((tmp_path / "b" / schema.SOURCES_NAME).read_text())["people"]]
    assert "no_alpha.jpg" in names


def test_missing_depth_map_is_a_clear_error(inputs, tmp_path):
    (inputs.depth_dir / "room2.png").unlink()
    with pytest.raises(SourceError, match=r"no depth map.*room2\.webp"):
        make_dataset(inputs.config(), tmp_path / "ds")


@pytest.mark.parametrize("kind", ["npy", None])
def test_depth_from_npy_or_no_depth(tmp_path, kind):
    inp = write_inputs(tmp_path / "in", depth=kind, n_bg=3, n_fg=2)
    out = tmp_path / "ds"
    m = make_dataset(inp.config(val_fraction=0, test_fraction=0), out)
    metas = shard_metas(out)
    keys = {name for u in m["units"] for name in _tar_names(out / u["path"])}
    if kind is None:
        assert m["depth"] is None and not (out / schema.BG_DEPTH_DIR).exists()
        assert not any(k.endswith(schema.EXT_DEPTH) for k in keys)
        assert all(meta["person_depth"] == 0.0 for _, meta in metas)
    else:
        assert m["depth"]["kind"] == "metric" and 1.0 < m["depth"]["mean"] < 7.0
        assert len(list((out / schema.BG_DEPTH_DIR).iterdir())) == 3
        assert sum(k.endswith(schema.EXT_DEPTH) for k in keys) == m["counts"]["samples"]


def _tar_names(path: Path) -> list[str]:
    import tarfile

    with tarfile.open(path) as tar:
        return tar.getnames()


def test_shard_members_are_webdataset_shaped(shard_dataset):
    m = json.loads((shard_dataset / schema.MANIFEST_NAME).read_text())
    names = _tar_names(shard_dataset / m["units"][0]["path"])
    exts = (schema.EXT_COMP, schema.EXT_MASK, schema.EXT_DEPTH, schema.EXT_META)
    assert len(names) == 4 * m["units"][0]["count"]
    for i in range(0, len(names), 4):  # a sample's files are adjacent, the key has no dots
        stems = {n.split(".", 1)[0] for n in names[i : i + 4]}
        assert len(stems) == 1 and "." not in stems.pop()
        assert tuple(n.split(".", 1)[1] for n in names[i : i + 4]) == exts


def test_stored_world_is_the_inputs_at_size(shard_dataset, shared_inputs):
    world = load_world(shard_dataset)
    assert world.bg_names == sorted(p.name for p in shared_inputs.bg_dir.iterdir())
    for bg in world.backgrounds:
        assert bg.rgb.shape == (SIZE, SIZE, 3) and bg.depth.shape == (SIZE, SIZE)
        np.testing.assert_array_equal(bg.depth, np.round(bg.depth * 1000) / np.float32(1000))  # mm steps
    assert len(world.people) == 5 and all(p.rgba.shape[0] <= 2 * SIZE for p in world.people)


@pytest.mark.parametrize("sizes", [[0, 1, 511, 512, 513], [27_000, 900, 12_345, 310] * 3, [10_240]])
def test_fast_tar_writer_matches_tarfile(sizes):
    """write_unit writes members itself (speed); the bytes must be tarfile's, long names included."""
    import io
    import tarfile

    from fgdepth.factory import _tarinfo, tar_end, tar_member

    rng = np.random.default_rng(len(sizes))
    files = [(f"bg{i:03d}_fg{i:03d}f_{i % 100:02d}.ext{i}", rng.bytes(n)) for i, n in enumerate(sizes)]
    files.append(("d" * 90 + "/" + "x" * 60 + ".json", b"{}"))  # > 100 characters: USTAR prefix
    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
    ours = b"".join(chunk for name, data in files for chunk in tar_member(name, data))
    assert ours + tar_end(len(ours)) == ref.getvalue()


def test_composer_sprite_cache_changes_nothing(shard_dataset, shared_inputs):
    """Composer keeps the last sprite premultiplied; any order of indices gives compose()'s plain result."""
    from fgdepth import compose as C
    from fgdepth.factory import Composer

    world = load_world(shard_dataset)
    cfg = shared_inputs.config()
    composer = Composer(cfg, world, make_plan(cfg, world))
    for i in np.random.default_rng(0).permutation(composer.plan.total)[:40]:
        b, person, flipped, _, p = composer.placement(int(i))
        plain = C.compose(world.backgrounds[b], world.person(person, flipped), p)
        cached = composer.sample(int(i)).composed
        np.testing.assert_array_equal(cached.composite, plain.composite)
        np.testing.assert_array_equal(cached.mask, plain.mask)
        np.testing.assert_array_equal(cached.depth, plain.depth)


def test_camouflage_recolours_only_people_and_keeps_placements(shard_dataset, shared_inputs):
    """The same samples as without camouflage (own random stream): masks, depth and the room equal, the people
    recoloured, each recorded with its band."""
    from fgdepth.factory import Composer

    world = load_world(shard_dataset)
    cfg = shared_inputs.config()
    camo_cfg = dataclasses.replace(cfg, camouflage=1.0, camouflage_held_out=True)
    plan = make_plan(cfg, world)
    plain, camo = Composer(cfg, world, plan), Composer(camo_cfg, world, plan)
    changed = 0
    for i in range(0, plan.total, max(1, plan.total // 12)):
        a, b = plain.sample(i), camo.sample(i)
        np.testing.assert_array_equal(a.composed.mask, b.composed.mask)
        np.testing.assert_array_equal(a.composed.depth, b.composed.depth)
        near = cv2.dilate(a.composed.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        np.testing.assert_array_equal(a.composed.composite[~near], b.composed.composite[~near])
        changed += int((a.composed.composite != b.composed.composite).any())
        assert "camouflage" not in a.meta and 0.5 <= b.meta["camouflage"] <= 1.0
        assert 0 <= b.meta["camouflage_top"] < b.meta["camouflage_bottom"] <= 1
        assert {k: v for k, v in b.meta.items() if not k.startswith("camouflage")} == a.meta
    assert changed >= 10


def test_camouflage_setting_is_checked_and_absent_from_old_identities(shared_inputs):
    cfg = shared_inputs.config()
    identity = cfg.identity()  # datasets made before the setting resume
    assert "camouflage" not in identity and "camouflage_held_out" not in identity
    assert dataclasses.replace(cfg, camouflage=0.3).identity()["camouflage"] == 0.3
    with pytest.raises(ValueError, match="--camouflage"):
        dataclasses.replace(cfg, camouflage=1.5).validate()


def test_camouflage_leaves_held_out_samples_alone_by_default(shard_dataset, shared_inputs):
    from fgdepth.factory import Composer

    world = load_world(shard_dataset)
    cfg = dataclasses.replace(shared_inputs.config(), camouflage=1.0)
    composer = Composer(cfg, world, make_plan(cfg, world))
    seen = set()
    for i in range(composer.plan.total):
        meta = composer.sample(i).meta
        training = meta["bg_split"] == meta["fg_split"] == "train"
        assert ("camouflage" in meta) == training
        seen.add(training)
    assert seen == {True, False}


def test_depth_none_leaves_the_procedural_worlds_depth_out(tmp_path):
    # --depth none on the procedural world wrote its exact depth anyway, the manifest saying its source was "none"
    from fgdepth.data.reader import OnTheFlyDataset

    cfg = FactoryConfig(num_bg=4, num_fg=2, placements=1, size=32, depth="none", val_fraction=0.25)
    manifest = make_dataset(cfg, tmp_path / "ds")
    assert "depth" not in manifest or not manifest["depth"]
    members = [
        ext
        for unit in manifest["units"]
        for _, files in iter_tar(tmp_path / "ds" / unit["path"])
        for ext in files
    ]
    assert members and schema.EXT_DEPTH not in members
    for reader in (ShardDataset, OnTheFlyDataset):
        sample = next(iter(reader(tmp_path / "ds", "train")))
        assert not sample[schema.DEPTH_VALID].any(), reader.__name__
    assert verify_dataset(tmp_path / "ds").ok


def test_depth_settings_that_contradict_each_other_are_refused(tmp_path):
    with pytest.raises(ValueError, match="procedural world"):
        FactoryConfig(depth="maps", bg_depth_dir=str(tmp_path)).validate()
    both = FactoryConfig(bg_dir=str(tmp_path), fg_dir=str(tmp_path), bg_depth_dir=str(tmp_path), teacher="t")
    with pytest.raises(ValueError, match="--depth maps or --depth teacher"):
        both.validate()
    FactoryConfig(
        bg_dir="b", fg_dir="f", bg_depth_dir="d", teacher="t", depth="maps"
    ).validate()  # said which
