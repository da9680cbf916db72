"""``fgdepth make-dataset``, ``inspect`` and ``show`` through typer's CliRunner; ``inspect`` catching damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SIZE, Inputs, imwrite_rgb, person_rgba
from eval_helpers import cached_model_file
from fgdepth.cli import app
from fgdepth.data import schema
from fgdepth.data.verify import verify_dataset

runner = CliRunner()


def make_args(inp: Inputs, out: Path, *extra: str) -> list[str]:
    return [
        "make-dataset",
        "--out",
        str(out),
        "--bg-dir",
        str(inp.bg_dir),
        "--fg-dir",
        str(inp.fg_dir),
        "--bg-depth-dir",
        str(inp.depth_dir),
        "--size",
        str(SIZE),
        "--placements",
        "1",
        "--shard-size",
        "8",
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
        "--workers",
        "1",
        *extra,
    ]


def _ok(result) -> None:
    assert result.exit_code == 0, result.output + str(result.exception)


@pytest.mark.parametrize("fmt", ["webdataset", "folders"])
def test_make_dataset_inspect_show(shared_inputs, tmp_path, fmt):
    out = tmp_path / "ds"
    r = runner.invoke(app, make_args(shared_inputs, out, "--format", fmt, "--fg-height", "0.4:0.6"))
    _ok(r)
    assert "samples 60" in r.output and "wrote" in r.output
    m = json.loads((out / schema.MANIFEST_NAME).read_text())
    assert m["format"] == fmt and m["config"]["fg_height"] == [0.4, 0.6] and m["counts"]["samples"] == 60
    r = runner.invoke(app, ["inspect", str(out)])
    _ok(r)
    assert "OK: 60 samples verified" in r.output
    png = tmp_path / "grid.png"
    r = runner.invoke(app, ["show", str(out), "--out", str(png), "--n", "3", "--selection", "train"])
    _ok(r)
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] >= 3 * SIZE and img.shape[1] >= 4 * SIZE


def test_inspect_passes_on_the_session_datasets(shard_dataset, folder_dataset):
    for root in (shard_dataset, folder_dataset):
        rep = verify_dataset(root)
        assert rep.ok, rep.problems
        assert rep.checked_samples == 120
        _ok(runner.invoke(app, ["inspect", str(root), "--fast"]))


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / root.name
    shutil.copytree(root, dst)
    return dst


def _inspect_fails(root: Path, *needles: str) -> str:
    r = runner.invoke(app, ["inspect", str(root)])
    assert r.exit_code == 1, r.output
    assert "FAILED" in r.output
    for needle in needles:
        assert needle in r.output, (needle, r.output)
    return r.output


def test_inspect_fails_on_a_modified_shard(shard_dataset, tmp_path):
    root = _copy(shard_dataset, tmp_path)
    m = json.loads((root / schema.MANIFEST_NAME).read_text())
    shard = root / m["units"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0x01  # one bit inside the first sample's JPEG
    shard.write_bytes(bytes(data))
    _inspect_fails(root, shard.name, "checksum mismatch")


def test_inspect_fails_on_a_deleted_or_truncated_shard(shard_dataset, tmp_path):
    root = _copy(shard_dataset, tmp_path)
    m = json.loads((root / schema.MANIFEST_NAME).read_text())
    first, second = root / m["units"][0]["path"], root / m["units"][1]["path"]
    first.unlink()
    second.write_bytes(second.read_bytes()[:1500])
    out = _inspect_fails(root, f"{first.name}: shard missing", second.name)
    assert "samples, manifest says" in out or "unreadable tar" in out


def test_show_names_a_truncated_shard(shard_dataset, tmp_path):
    root = _copy(shard_dataset, tmp_path)
    for unit in json.loads((root / schema.MANIFEST_NAME).read_text())["units"]:
        shard = root / unit["path"]
        shard.write_bytes(shard.read_bytes()[:5000])  # inside the second sample's composite
    r = runner.invoke(app, ["show", str(root), "--out", str(tmp_path / "grid.png")])
    assert r.exit_code == 2 and ".tar: truncated or corrupt tar" in r.output, (r.output, r.exception)


def test_inspect_fails_on_deleted_world_file(shard_dataset, tmp_path):
    root = _copy(shard_dataset, tmp_path)
    (root / schema.BG_DIR / "bg002.png").unlink()
    (root / schema.FG_MASK_DIR / "fg001.png").unlink()
    _inspect_fails(root, "bg002.png: background missing", "fg001.png: foreground file missing")


@pytest.mark.parametrize(
    "damage",
    ["corrupt background", "background of another size", "8-bit background depth", "person without alpha",
     "corrupt person mask", "empty person", "no sources.json", "no person metadata"],
)  # fmt: skip
def test_inspect_fails_on_a_damaged_world_file(shard_dataset, tmp_path, damage):
    # only the presence of bg/, bg_depth/, fg/ and fg_mask/ files was checked: these passed, though every reader
    # (a background per sample), the on-the-fly dataset, label-depth and a resumed make-dataset need them whole
    root = _copy(shard_dataset, tmp_path)
    path = {
        "corrupt background": root / schema.BG_DIR / "bg001.png",
        "background of another size": root / schema.BG_DIR / "bg001.png",
        "8-bit background depth": root / schema.BG_DEPTH_DIR / "bg002.png",
        "person without alpha": root / schema.FG_DIR / "fg001.png",
        "corrupt person mask": root / schema.FG_MASK_DIR / "fg001.png",
        "empty person": root / schema.FG_DIR / "fg002.png",
        "no sources.json": root / schema.SOURCES_NAME,
        "no person metadata": root / schema.FG_META_DIR / "fg001.json",
    }[damage]
    if damage.startswith("corrupt"):
        path.write_bytes(path.read_bytes()[:60])
    elif damage == "background of another size":
        cv2.imwrite(str(path), cv2.imread(str(path))[: SIZE // 2])
    elif damage == "8-bit background depth":
        cv2.imwrite(str(path), np.zeros((SIZE, SIZE), np.uint8))
    elif damage == "empty person":
        path.write_bytes(b"")
    elif damage == "person without alpha":
        cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., :3])
    else:
        path.unlink()
    _inspect_fails(root, str(path))


def test_empty_files_are_named_not_a_traceback(folder_dataset, tmp_path):
    # a 0-byte file (a crash, a full disk) made OpenCV raise '!buf.empty()' from inspect and show
    root = _copy(folder_dataset, tmp_path)
    stems = sorted(p.stem for p in (root / schema.COMP_DIR).iterdir())
    emptied = [
        root / schema.COMP_DIR / f"{stems[0]}.jpg",
        root / schema.MASK_DIR / f"{stems[1]}.png",
        root / schema.DEPTH_DIR / f"{stems[2]}.png",
        root / schema.META_DIR / f"{stems[3]}.json",
        root / schema.BG_DIR / "bg003.png",
    ]
    for path in emptied:
        path.write_bytes(b"")
    out = _inspect_fails(root, *(str(p) for p in emptied))
    assert "Traceback" not in out
    r = runner.invoke(app, ["show", str(root), "--out", str(tmp_path / "grid.png"), "--n", "100"])
    assert r.exit_code == 2 and "error:" in r.output, (r.output, r.exception)


def test_inspect_fails_on_deleted_or_modified_folder_files(folder_dataset, tmp_path):
    root = _copy(folder_dataset, tmp_path)
    mask = sorted((root / schema.MASK_DIR).iterdir())[3]
    mask.unlink()
    depth = sorted((root / schema.DEPTH_DIR).iterdir())[5]
    depth.write_bytes(cv2.imencode(".png", cv2.imread(str(depth), cv2.IMREAD_UNCHANGED).astype("uint8"))[1])
    _inspect_fails(
        root, f"sample {mask.stem}: missing {schema.EXT_MASK}", "checksum mismatch", "different counts"
    )
    rep = verify_dataset(root)
    assert any(depth.stem in p and "uint16" in p for p in rep.problems), rep.problems


def test_inspect_names_the_file_of_a_bad_sample(shard_dataset, folder_dataset, tmp_path):
    # an 8-bit depth map and a composite that does not decode were reported by sample key alone, not by the
    # shard or the file that holds them
    from fgdepth.data.reader import iter_tar
    from fgdepth.factory import write_tar

    root = _copy(shard_dataset, tmp_path)
    shard = root / json.loads((root / schema.MANIFEST_NAME).read_text())["units"][0]["path"]
    samples = list(iter_tar(shard))
    key, files = samples[1]
    files[schema.EXT_DEPTH] = cv2.imencode(".png", np.zeros((SIZE, SIZE), np.uint8))[1].tobytes()
    files[schema.EXT_COMP] = b"\xff\xd8 not a jpeg"
    write_tar(shard, ((f"{k}.{ext}", data) for k, fs in samples for ext, data in fs.items()))
    out = _inspect_fails(root)
    assert f"{shard}: {key}.{schema.EXT_DEPTH}: depth must be a single-channel uint16 PNG" in out, out
    assert f"{shard}: {key}.{schema.EXT_COMP}: composite does not decode" in out, out

    root = _copy(folder_dataset, tmp_path / "f")
    depth = sorted((root / schema.DEPTH_DIR).iterdir())[2]
    depth.write_bytes(cv2.imencode(".png", np.zeros((SIZE, SIZE), np.uint8))[1].tobytes())
    mask = sorted((root / schema.MASK_DIR).iterdir())[4]
    mask.unlink()
    out = _inspect_fails(root)
    assert f"{depth}: depth must be a single-channel uint16 PNG" in out, out
    assert f"sample {mask.stem}: missing {schema.EXT_MASK} ({mask})" in out, out


@pytest.mark.parametrize("damage", ["8-bit depth", "no mask"])
def test_show_names_the_shard_of_a_bad_sample(shard_dataset, tmp_path, damage):
    # show (and training) reported 'sample <key> depth.png: ...' without the shard, or a KeyError traceback
    from fgdepth.data.reader import iter_tar
    from fgdepth.factory import write_tar

    root = _copy(shard_dataset, tmp_path)
    for unit in json.loads((root / schema.MANIFEST_NAME).read_text())["units"]:
        shard = root / unit["path"]
        samples = list(iter_tar(shard))
        for _, files in samples:
            if damage == "8-bit depth":
                files[schema.EXT_DEPTH] = cv2.imencode(".png", np.zeros((SIZE, SIZE), np.uint8))[1].tobytes()
            else:
                del files[schema.EXT_MASK]
        write_tar(shard, ((f"{k}.{ext}", data) for k, fs in samples for ext, data in fs.items()))
    r = runner.invoke(app, ["show", str(root), "--out", str(tmp_path / "grid.png")])
    assert r.exit_code == 2, (r.output, r.exception)
    assert ".tar: bg" in r.output, r.output
    assert (
        "depth must be a single-channel uint16" if damage == "8-bit depth" else "mask.png missing"
    ) in r.output


def test_inspect_and_show_name_a_corrupt_manifest(shard_dataset, tmp_path):
    root = _copy(shard_dataset, tmp_path)
    manifest = root / schema.MANIFEST_NAME
    manifest.write_text(manifest.read_text()[:200])  # cut short (a full disk, an editor)
    _inspect_fails(root, f"{manifest}: not valid JSON")
    r = runner.invoke(app, ["show", str(root), "--out", str(tmp_path / "grid.png")])
    assert r.exit_code == 2 and f"{manifest}: not valid JSON" in r.output, r.output


@pytest.mark.parametrize(
    "edit, needle",
    [
        ("unit count", "manifest says"),
        ("by_group", "by_group"),
        ("by_selection", "by_selection"),
        ("backgrounds", "backgrounds"),
        ("no units", "no 'units'"),
    ],
)
@pytest.mark.parametrize("which", ["shard_dataset", "folder_dataset"])
def test_inspect_catches_a_manifest_edited_to_wrong_counts(request, tmp_path, which, edit, needle):
    # a folder unit's count and the counts per group, per selection, of backgrounds passed inspect when edited;
    # a manifest without "units" was a KeyError traceback
    root = _copy(request.getfixturevalue(which), tmp_path)
    path = root / schema.MANIFEST_NAME
    m = json.loads(path.read_text())
    if edit == "unit count":
        m["units"][0]["count"] += 1
    elif edit == "no units":
        del m["units"]
    elif edit == "backgrounds":
        m["counts"]["backgrounds"] += 1
    else:
        m["counts"][edit]["train" if edit == "by_selection" else "train-train"] += 1
    path.write_text(json.dumps(m))
    out = _inspect_fails(root, str(path) if edit != "unit count" else m["units"][0]["name"])
    assert needle in out, out
    assert "Traceback" not in out


def test_show_names_an_output_it_cannot_write(shard_dataset, tmp_path):
    # --out naming a folder was an IsADirectoryError traceback
    r = runner.invoke(app, ["show", str(shard_dataset), "--out", str(tmp_path)])
    assert r.exit_code == 2 and f"cannot write {tmp_path}" in r.output, (r.output, r.exception)
    assert sorted(tmp_path.iterdir()) == []  # no temporary left behind


@pytest.mark.parametrize("which", ["shard_dataset", "folder_dataset"])
def test_show_names_a_number_of_samples_below_one(which, request, tmp_path):
    # --n -1 said 'Sample larger than population or is negative' (random.sample's words), --n 0 'sample_grid needs
    # at least one sample', neither naming the option
    for n in ("0", "-1"):
        r = runner.invoke(
            app, ["show", str(request.getfixturevalue(which)), "-o", str(tmp_path / "s.png"), "--n", n]
        )
        assert r.exit_code == 2 and f"--n must be at least 1, got {n}" in r.output, (r.output, r.exception)


def test_show_names_a_selection_without_samples(shared_inputs, tmp_path):
    # a selection with no samples (test of a dataset made with --test-fraction 0) said 'sample_grid needs at least
    # one sample', naming neither the dataset nor the selection
    from fgdepth.factory import make_dataset

    root = tmp_path / "ds"
    make_dataset(shared_inputs.config(test_fraction=0.0), root)
    r = runner.invoke(app, ["show", str(root), "-o", str(tmp_path / "s.png"), "--selection", "test"])
    assert r.exit_code == 2 and f"{root}: the selection 'test' has no samples" in r.output, (
        r.output,
        r.exception,
    )


def test_inspect_without_manifest(tmp_path):
    r = runner.invoke(app, ["inspect", str(tmp_path)])
    assert r.exit_code == 1 and "no manifest" in r.output


@pytest.mark.parametrize("command", ["inspect", "show", "evaluate", "label-depth", "train", "make-dataset"])
def test_a_data_path_that_is_missing_or_a_file_is_named_as_such(command, tmp_path, tmp_path_factory):
    # "nowhere/bg_fg: missing; expected the reference layout" or "no manifest" sent users looking inside a folder
    # that is not there, and make-dataset --out on a file failed with "[Errno 20] Not a directory"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a dataset")
    for path, says in ((tmp_path / "nowhere", "no such dataset folder"), (a_file, "a file, not a")):
        args = {
            "inspect": ["inspect", str(path)],
            "show": ["show", str(path), "-o", str(tmp_path / "s.png")],
            "evaluate": ["evaluate", "-d", str(path), "-c", str(cached_model_file(tmp_path_factory))],
            "label-depth": ["label-depth", str(path), "--teacher", str(tmp_path)],
            "train": ["train", "--data", str(path), "--out", str(tmp_path / "run")],
            "make-dataset": ["make-dataset", "--out", str(path), "--num-bg", "2", "--num-fg", "2"],
        }[command]
        if command == "make-dataset" and path == tmp_path / "nowhere":
            continue  # a new --out is created
        r = runner.invoke(app, args)
        assert r.exit_code != 0 and f"{path}: {says}" in r.output, (command, path, r.output, r.exception)
    assert a_file.read_text() == "not a dataset" and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["make-dataset", "train", "predict", "demo"])
def test_an_out_folder_that_is_a_file_is_refused_by_name(command, tmp_path, tmp_path_factory):
    # mkdir on a file failed as "[Errno 17] File exists: 'notes.txt'" (demo: a traceback), naming no option
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    image = tmp_path / "image.png"
    imwrite_rgb(image, np.full((SIZE, SIZE, 3), 128, np.uint8))
    args = {
        "make-dataset": ["make-dataset", "--out", str(a_file), "--num-bg", "2", "--num-fg", "2"],
        "train": ["train", "--data", str(tmp_path), "--out", str(a_file)],
        "predict": [
            "predict",
            "-c",
            str(cached_model_file(tmp_path_factory)),
            "--background",
            str(image),
            "--image",
            str(image),
            "--out",
            str(a_file),
        ],  # fmt: skip
        "demo": ["demo", "--out", str(a_file)],
    }[command]
    r = runner.invoke(app, args)
    assert r.exit_code != 0 and f"--out {a_file}: a file, not a folder" in r.output, (r.output, r.exception)
    assert a_file.read_text() == "keep me"


def test_make_dataset_refuses_other_settings_unless_overwrite(shared_inputs, tmp_path):
    out = tmp_path / "ds"
    _ok(runner.invoke(app, make_args(shared_inputs, out)))
    r = runner.invoke(app, make_args(shared_inputs, out, "--seed", "4"))
    assert r.exit_code == 2 and "other settings" in r.output and "seed" in r.output
    _ok(runner.invoke(app, make_args(shared_inputs, out, "--seed", "4", "--overwrite")))
    assert json.loads((out / schema.MANIFEST_NAME).read_text())["config"]["seed"] == 4


def test_make_dataset_reports_bad_inputs(inputs, tmp_path):
    imwrite_rgb(inputs.fg_dir / "flat.png", person_rgba(3)[..., :3])
    r = runner.invoke(app, make_args(inputs, tmp_path / "a"))
    assert r.exit_code == 2 and "flat.png" in r.output and "--fg-mask-dir" in r.output
    (inputs.fg_dir / "flat.png").unlink()
    bad = inputs.bg_dir / "room0.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    r = runner.invoke(app, make_args(inputs, tmp_path / "b"))
    _ok(r)
    assert "skipped inputs: 1" in r.output and "room0.jpg" in r.output
    r = runner.invoke(app, make_args(inputs, tmp_path / "c", "--strict"))
    assert r.exit_code == 2 and "room0.jpg" in r.output
    r = runner.invoke(app, make_args(inputs, tmp_path / "d", "--format", "zip"))
    assert r.exit_code == 2 and "--format" in r.output


@pytest.mark.parametrize("value", ["abc", "0.3:x", ""])
def test_make_dataset_names_a_malformed_height_range(shared_inputs, tmp_path, value):
    r = runner.invoke(app, make_args(shared_inputs, tmp_path / "ds", "--fg-height", value))
    assert r.exit_code == 2 and "expected LO:HI" in r.output, (
        r.output,
        r.exception,
    )  # was a ValueError traceback
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_make_dataset_names_an_out_it_cannot_use(shared_inputs, tmp_path, where):
    # --out naming a file (or a path through one) was a NotADirectoryError traceback
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    out = notes if where == "file" else notes / "ds"
    r = runner.invoke(app, make_args(shared_inputs, out))
    assert r.exit_code == 2 and str(notes) in r.output and "error:" in r.output, (r.output, r.exception)
    assert notes.read_text() == "keep me"


def test_make_dataset_camouflage_options(shared_inputs, tmp_path):
    out = tmp_path / "ds"
    _ok(runner.invoke(app, make_args(shared_inputs, out, "--camouflage", "1", "--camouflage-held-out")))
    config = json.loads((out / schema.MANIFEST_NAME).read_text())["config"]
    assert config["camouflage"] == 1.0 and config["camouflage_held_out"] is True
    _ok(runner.invoke(app, ["inspect", str(out)]))
    r = runner.invoke(app, make_args(shared_inputs, tmp_path / "bad", "--camouflage", "1.5"))
    assert r.exit_code == 2 and "--camouflage must be in [0, 1]" in r.output


def test_cli_prints_its_version():
    import fgdepth

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"fgdepth {fgdepth.__version__}"


def test_make_dataset_bad_input_prints_its_error_without_a_progress_bar(tmp_path):
    # the bar was drawn (at 0/?) before the inputs were read, so an error came after an empty bar
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["make-dataset", "--out", str(tmp_path / "ds"), "--bg-dir",
                                      str(tmp_path / "empty"), "--fg-dir", str(tmp_path / "empty")])  # fmt: skip
    assert result.exit_code != 0
    assert result.output.startswith("error: ") and "empty: no images" in result.output
    assert "make-dataset" not in result.output
