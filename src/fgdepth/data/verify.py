"""``fgdepth inspect``: summarise a dataset and verify it completely.

Checks that every sample has every part, counts agree across modalities and with the manifest, checksums hold,
masks are binary, depth decodes as uint16, and the stored world is whole. Returns the list of problems found.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fgdepth.data import codec, schema
from fgdepth.data.reader import iter_tar, read_manifest


@dataclass
class Report:
    manifest: dict | None = None
    problems: list[str] = field(default_factory=list)
    checked_samples: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_mask(data: bytes, where: str, problems: list[str]) -> None:
    arr = codec.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        problems.append(f"{where}: mask does not decode")
    elif arr.ndim != 2 or not np.isin(arr, (0, 255)).all():
        problems.append(f"{where}: mask is not binary 0/255 single-channel")


def _check_depth(data: bytes, where: str, problems: list[str]) -> None:
    try:
        codec.decode_uint16(data, where)
    except codec.DecodeError as err:
        problems.append(str(err))


def _check_sample(
    key: str,
    files: dict[str, bytes],
    has_depth: bool,
    deep: bool,
    problems: list[str],
    file_of: Callable[[str], str],
) -> None:
    """``file_of(ext)`` names the file that holds (or should hold) a part: each problem names its file."""
    wanted = [schema.EXT_COMP, schema.EXT_MASK, schema.EXT_META] + ([schema.EXT_DEPTH] if has_depth else [])
    missing = [ext for ext in wanted if ext not in files]
    if missing:
        where = ", ".join(file_of(ext) for ext in missing)
        problems.append(f"sample {key}: missing {', '.join(missing)} ({where})")
    if not deep:
        return
    if schema.EXT_MASK in files:
        _check_mask(files[schema.EXT_MASK], file_of(schema.EXT_MASK), problems)
    if has_depth and schema.EXT_DEPTH in files:
        _check_depth(files[schema.EXT_DEPTH], file_of(schema.EXT_DEPTH), problems)
    if schema.EXT_COMP in files and codec.imdecode(files[schema.EXT_COMP], cv2.IMREAD_COLOR) is None:
        problems.append(f"{file_of(schema.EXT_COMP)}: composite does not decode")
    if schema.EXT_META in files:
        try:
            json.loads(files[schema.EXT_META])
        except ValueError:
            problems.append(f"{file_of(schema.EXT_META)}: metadata is not valid JSON")


def verify_dataset(root: str | Path, deep: bool = True) -> Report:
    """Verify ``root``; ``deep`` decodes every mask, depth map and composite (slower)."""
    root = Path(root)
    rep = Report()
    try:
        rep.manifest = manifest = read_manifest(root)
    except (FileNotFoundError, ValueError, json.JSONDecodeError) as err:
        rep.problems.append(str(err))
        return rep
    problems = rep.problems
    has_depth = manifest.get("depth") is not None
    _verify_world(root, manifest, has_depth, deep, problems)
    total = 0
    for unit in manifest["units"]:
        record_path = root / schema.UNIT_DIR / f"{unit['name']}.json"
        record = json.loads(record_path.read_text()) if record_path.is_file() else None
        if manifest["format"] == "webdataset":
            total += _verify_shard(root, unit, has_depth, deep, problems)
        else:
            if record is None:
                problems.append(f"{record_path}: unit record missing (needed to verify folder checksums)")
                continue
            if len(record["keys"]) != unit["count"]:
                problems.append(
                    f"unit {unit['name']}: {len(record['keys'])} samples recorded, manifest says {unit['count']}"
                )
            total += _verify_folder_unit(root, unit, record["keys"], has_depth, deep, problems)
    if total != manifest["counts"]["samples"]:
        problems.append(f"manifest counts {manifest['counts']['samples']} samples, found {total}")
    if manifest["format"] == "folders":
        _verify_folder_counts(root, manifest, has_depth, problems)
    _verify_manifest_counts(root / schema.MANIFEST_NAME, manifest, problems)
    rep.checked_samples = total
    return rep


def _verify_manifest_counts(path: Path, manifest: dict, problems: list[str]) -> None:
    """The manifest's counts against its own units and splits (what readers and summaries take them from)."""
    counts = manifest["counts"]
    by_group: dict[str, int] = {}
    for unit in manifest["units"]:
        by_group[unit["group"]] = by_group.get(unit["group"], 0) + unit["count"]
    by_selection = {
        name: sum(by_group.get(g, 0) for g in schema.selection_groups(name)) for name in schema.SELECTIONS
    }
    expected = {
        "by_group": by_group,
        "by_selection": by_selection,
        "backgrounds": len(manifest["splits"]["backgrounds"]),
        "people": len(manifest["splits"]["people"]),
    }
    for key, value in expected.items():
        if counts.get(key) != value:
            problems.append(f"{path}: counts.{key} is {counts.get(key)}, its units and splits give {value}")


def _verify_world(root: Path, manifest: dict, has_depth: bool, deep: bool, problems: list[str]) -> None:
    """The stored world: every background (and its depth) and person present; ``deep``: each decodes, at the
    dataset's size (backgrounds) or its person's (masks). Readers, label-depth and a resumed run need them whole."""
    if not (root / schema.SOURCES_NAME).is_file():
        problems.append(f"{root / schema.SOURCES_NAME}: missing (the stored world's index)")
    size = (manifest["size"], manifest["size"])
    for bg_id in manifest["splits"]["backgrounds"]:
        path = root / schema.BG_DIR / f"{bg_id}.png"
        if not path.is_file():
            problems.append(f"{path}: background missing")
        elif deep:
            _check_world_array(
                path, "background", lambda d, p=path: codec.decode_image(d, str(p)), size, problems
            )
        path = root / schema.BG_DEPTH_DIR / f"{bg_id}.png"
        if has_depth and not path.is_file():
            problems.append(f"{path}: background depth missing")
        elif has_depth and deep:
            _check_world_array(
                path, "depth", lambda d, p=path: codec.decode_uint16(d, str(p)), size, problems
            )
    for fg_id in manifest["splits"]["people"]:
        image, mask = root / schema.FG_DIR / f"{fg_id}.png", root / schema.FG_MASK_DIR / f"{fg_id}.png"
        for path in (image, mask, root / schema.FG_META_DIR / f"{fg_id}.json"):
            if not path.is_file():
                problems.append(f"{path}: foreground file missing")
        if not (deep and image.is_file()):
            continue
        rgba = codec.imdecode(image.read_bytes(), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            problems.append(f"{image}: foreground is not an RGBA PNG")
        elif mask.is_file():
            _check_world_array(
                mask, "mask", lambda d, p=mask: codec.decode_mask(d, str(p)), rgba.shape[:2], problems
            )


def _check_world_array(
    path: Path, what: str, decode: Callable[[bytes], np.ndarray], size: tuple[int, int], problems: list[str]
) -> None:
    try:
        arr = decode(path.read_bytes())
    except codec.DecodeError as err:
        problems.append(f"{err} ({what})")
        return
    if arr.shape[:2] != size:
        problems.append(f"{path}: {what} is {arr.shape[1]}x{arr.shape[0]} px, expected {size[1]}x{size[0]}")


def _verify_shard(root: Path, unit: dict, has_depth: bool, deep: bool, problems: list[str]) -> int:
    path = root / unit["path"]
    if not path.is_file():
        problems.append(f"{path}: shard missing")
        return 0
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != unit["sha256"]:
        problems.append(f"{path}: checksum mismatch (corrupt or modified shard)")
    count, keys = 0, []
    try:
        for key, files in iter_tar(path):
            _check_sample(key, files, has_depth, deep, problems, lambda ext, k=key: f"{path}: {k}.{ext}")
            keys.append(key)
            count += 1
    except codec.DecodeError as err:  # a truncated or damaged tar (the message names it)
        problems.append(str(err))
    except Exception as err:  # anything else tarfile may raise
        problems.append(f"{path}: unreadable tar ({err})")
    if len(set(keys)) != len(keys):
        problems.append(f"{path}: duplicate sample keys")
    if count != unit["count"]:
        problems.append(f"{path}: {count} samples, manifest says {unit['count']}")
    elif hashlib.sha256("\n".join(keys).encode()).hexdigest() != unit["keys_sha256"]:
        problems.append(f"{path}: sample keys differ from those recorded")
    return count


def _verify_folder_unit(
    root: Path, unit: dict, keys: list[str], has_depth: bool, deep: bool, problems: list[str]
) -> int:
    from fgdepth.factory import _FOLDER_OF, folder_unit_digest

    found = 0
    for key in keys:
        paths = {ext: root / folder / f"{key}{suffix}" for ext, (folder, suffix) in _FOLDER_OF.items()}
        files = {ext: p.read_bytes() for ext, p in paths.items() if p.is_file()}
        if files:
            found += 1
        _check_sample(key, files, has_depth, deep, problems, lambda ext, paths=paths: str(paths[ext]))
    if folder_unit_digest(root, keys) != unit["sha256"]:
        problems.append(f"unit {unit['name']}: checksum mismatch (files missing, corrupt or modified)")
    return found


def _verify_folder_counts(root: Path, manifest: dict, has_depth: bool, problems: list[str]) -> None:
    folders = [schema.COMP_DIR, schema.MASK_DIR, schema.META_DIR] + ([schema.DEPTH_DIR] if has_depth else [])
    counts = {
        f: sum(1 for p in (root / f).iterdir() if not p.name.startswith(".")) if (root / f).is_dir() else 0
        for f in folders
    }
    if len(set(counts.values())) > 1:
        problems.append(
            "modalities have different counts: " + ", ".join(f"{k}={v}" for k, v in counts.items())
        )


def summary_lines(manifest: dict) -> list[str]:
    c = manifest["counts"]
    lines = [
        f"schema v{manifest['schema_version']}, format {manifest['format']}, {manifest['size']} px, "
        f"fgdepth {manifest.get('fgdepth_version')}",
        f"samples {c['samples']:,}: {c['backgrounds']} backgrounds x {c['foregrounds']} foregrounds "
        f"({c['people']} people) x {manifest['config']['placements']} placements",
        "selections: " + ", ".join(f"{k} {v:,}" for k, v in c["by_selection"].items()),
        f"skipped inputs: {c['skipped_inputs']}",
        f"composite mean {manifest['stats']['composite_mean']} std {manifest['stats']['composite_std']}",
    ]
    d = manifest.get("depth")
    if d:
        lines.append(
            f"depth: {d['kind']} ({d['unit']}), from {d['source']}, min {d['min']} max {d['max']} mean {d['mean']}"
        )
    else:
        lines.append("depth: none")
    nbytes = sum(u["bytes"] for u in manifest["units"])
    lines.append(
        f"{len(manifest['units'])} units, {nbytes / 1e6:.1f} MB, {nbytes / max(c['samples'], 1) / 1e3:.1f} kB/sample"
    )
    return lines
