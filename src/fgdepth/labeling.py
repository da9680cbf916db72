"""Depth labels from a monocular teacher: for ``make-dataset --depth teacher`` and for ``fgdepth label-depth``,
which adds (or replaces) depth in a dataset that already exists.

Two strategies (``mode``):

- ``background-once``: one teacher pass per background. A composite's depth is its background's label with the
  person pasted in at the label of the ground-contact point (the factory's random placement: a flat person at
  the depth of the point it stands on; for relative disparity, the disparity there). 100 passes for the
  reference dataset of 100 backgrounds and 400,000 composites.
- ``per-composite``: one pass per composite (the teacher sees the person; 400,000 passes). The backgrounds are
  labelled too (their labels fix the encoding scale and are stored in ``bg_depth/``).

Encoding (``uint16 = round(value * scale)``, 0 = unknown): metric teachers use millimetres; relative teachers a
per-dataset power-of-two scale chosen once from the backgrounds' labels with 2x headroom
(:func:`encoding_scale`): composites' values above ``65535 / scale`` (twice the largest background disparity)
are clipped. ``label-depth`` on composites labels the stored JPEG composites; ``make-dataset`` labels them
before JPEG encoding.

``label_depth`` is resumable: the background labels and the job's settings go to ``units/depth-label.json``,
each finished unit to ``units/<unit>.depth.json``; a rerun skips finished units, and the manifest is rewritten
(atomically) only at the end, after which the job files are removed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fgdepth.config import ENGINES
from fgdepth.data import codec, schema
from fgdepth.data.reader import iter_tar, read_manifest

if TYPE_CHECKING:
    from fgdepth.teacher import DepthTeacher

MODES = ("background-once", "per-composite")
RELATIVE_HEADROOM = 2.0  # relative scale: room for composites twice as near (in disparity) as any background
JOB_NAME = "depth-label.json"  # under units/: settings, teacher and scale of a label-depth run in progress
_MARKER_SUFFIX = ".depth.json"  # units/<unit>.depth.json: that unit is labelled


class LabelError(ValueError):
    """A dataset cannot be labelled as asked; the message says why and what to do."""


# --- helpers shared with the factory ------------------------------------------------------------------------


def load_teacher(
    path: str | Path, input_size: int | None = None, batch_size: int = 8, device: str | None = None
) -> DepthTeacher:
    """``DepthTeacher.load`` with the options the factory and ``label-depth`` pass."""
    from fgdepth.teacher import DepthTeacher

    return DepthTeacher.load(path, device=device, input_size=input_size, batch_size=batch_size)


def encoding_scale(depth_kind: str, background_depths: Sequence[np.ndarray]) -> float:
    """The uint16 scale of a dataset labelled by a teacher: millimetres for metric depth; for relative depth
    the largest power of two that holds ``RELATIVE_HEADROOM`` x the largest background label."""
    from fgdepth.teacher import TeacherError, depth_scale_for

    if depth_kind == "metric":
        return depth_scale_for("metric")
    peak = max((float(d.max()) for d in background_depths if d.size), default=0.0)
    if not np.isfinite(peak) or peak <= 0:
        raise TeacherError("the teacher predicted no positive depth on any background; is it a depth model?")
    return depth_scale_for("relative", RELATIVE_HEADROOM * peak)


def teacher_record(info: Any, mode: str) -> dict:
    """What the manifest records of a teacher (``TeacherInfo`` without run-time fields) and the strategy."""
    keep = [
        "path",
        "model_type",
        "depth_kind",
        "native_size",
        "input_size",
        "keep_aspect",
        "multiple",
        "dtype",
    ]
    d = dataclasses.asdict(info)
    return {k: d[k] for k in keep} | {"max_depth": d.get("max_depth"), "mode": mode}


def paste_contact_depth(
    background_depth: np.ndarray, mask: np.ndarray, anchor_x: float, anchor_y: float
) -> np.ndarray:
    """Background-once depth of a composite: the background's depth, and inside the person's mask the
    background's depth at the ground-contact point (as ``compose`` does for random placement).

    Shape:
        background_depth: (H, W) float32 (metres or relative disparity, 0 = unknown); mask: (H, W) bool
        returns: (H, W) float32
    """
    if mask.shape != background_depth.shape:
        raise ValueError(f"mask {mask.shape} and background depth {background_depth.shape} differ in size")
    h, w = background_depth.shape
    u = int(np.clip(round(anchor_x), 0, w - 1))
    v = int(np.clip(round(anchor_y), 0, h - 1))
    depth = background_depth.astype(np.float32, copy=True)
    depth[mask] = depth[v, u]
    return depth


# --- label-depth ---------------------------------------------------------------------------------------------


def label_depth(
    root: str | Path,
    teacher_path: str | Path,
    mode: str = "background-once",
    input_size: int | None = None,
    batch_size: int = 8,
    overwrite_depth: bool = False,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine: str = "local",
    workers: int = 2,
    ray_address: str | None = None,
) -> dict:
    """Add (or with ``overwrite_depth`` replace) depth labels in the dataset at ``root``; return its manifest.

    ``engine="ray"`` labels the units in Ray actors (one teacher load per actor, one GPU each when the cluster
    has GPUs, else ``workers`` CPU actors); the output and the resume points are the local engine's.

    Webdataset shards are rewritten with ``<stem>.depth.png`` members (every other member byte-identical) under
    a temporary name, then renamed; the folder format gets ``bg_fg_depth/<stem>.png``. Background labels go to
    ``bg_depth/``; ``sources.json``, the unit records and ``manifest.json`` (depth block, checksums, bytes) are
    rewritten at the end. Resumable: rerun the same command after an interruption.

    ``progress(done_samples, total_samples)`` is called once the backgrounds are labelled and after each unit.

    Raises:
        LabelError: the dataset already has depth (without ``overwrite_depth``), or an interrupted run with
            other settings is pending.
        TeacherError: the checkpoint is missing or is not a supported depth model.
    """
    from fgdepth import teacher as T
    from fgdepth.factory import _remove_stale_temporaries

    if mode not in MODES:
        raise ValueError(f"unknown teacher mode {mode!r}; valid: {', '.join(MODES)}")
    if engine not in ENGINES:  # else any other name ran the local engine, silently
        raise ValueError(f"unknown --engine {engine!r}; valid: {', '.join(ENGINES)}")
    if workers < 1:  # a Ray instance of no CPUs never runs an actor: a hang
        raise ValueError(f"--workers must be >= 1, got {workers}")
    root = Path(root)
    manifest = read_manifest(root)
    if (manifest.get("config") or {}).get("placement") == "geometry":
        # its people were sized and hidden by the world's exact depth, which the labels would replace: on-the-fly
        # composition would then place them elsewhere than its samples (make-dataset refuses the same for --teacher)
        raise LabelError(
            f"{root}: its people were placed by the procedural world's exact depth (--placement geometry), which "
            "it already has; labels would replace the depth they were placed by"
        )
    T.check_checkpoint(teacher_path)
    settings = {"teacher": str(Path(teacher_path).resolve()), "mode": mode, "input_size": input_size}
    job = _pending_job(root, settings, manifest, overwrite_depth)
    _remove_stale_temporaries(root)
    teacher: list = []  # loaded at most once, when first needed

    def get_teacher():
        if not teacher:
            teacher.append(load_teacher(teacher_path, input_size, batch_size, device))
        return teacher[0]

    if job is None:
        job = _label_backgrounds(root, manifest, settings, get_teacher())
    bg_depth = _stored_background_depth(root, manifest, job["scale"])
    total = manifest["counts"]["samples"]
    done = 0
    if progress:
        progress(done, total)
    records = {}
    pending = []
    for unit in manifest["units"]:
        record = _finished(root, manifest, unit, job)
        if record is None:
            pending.append(unit)
        else:
            records[unit["name"]] = record
            done += unit["count"]
    if progress:
        progress(done, total)
    if engine == "ray":
        teacher_args = (str(teacher_path), input_size, batch_size, device)
        labelled = _label_units_ray(root, manifest, pending, job, mode, teacher_args, workers, ray_address)
    else:
        labelled = (
            _label_unit(root, manifest, u, job, _depth_fn(mode, get_teacher, bg_depth)) for u in pending
        )
    counts = {u["name"]: u["count"] for u in pending}
    for record in labelled:
        records[record["name"]] = record
        done += counts[record["name"]]
        if progress:
            progress(done, total)
    return _finish(root, manifest, job, records)


def _depth_fn(mode: str, get_teacher: Callable[[], Any], bg_depth: dict[str, np.ndarray]) -> DepthFn:
    return _per_composite_fn(get_teacher()) if mode == "per-composite" else _background_once_fn(bg_depth)


def _label_units_ray(
    root: Path,
    manifest: dict,
    units: list[dict],
    job: dict,
    mode: str,
    teacher_args: tuple,
    workers: int,
    ray_address: str | None,
) -> Iterator[dict]:
    """Label ``units`` in Ray actors; yields each unit's marker as it completes."""
    import ray

    from fgdepth.factory import init_ray

    if not units:
        return
    init_ray(ray_address, workers)
    gpus = int(ray.cluster_resources().get("GPU", 0)) if mode == "per-composite" else 0
    n_actors = max(1, min(len(units), gpus or workers))
    options = {"num_gpus": 1} if gpus else {"num_cpus": 1}

    class _Labeller:
        def __init__(self) -> None:
            teacher: list = []

            def get_teacher():
                if not teacher:
                    teacher.append(load_teacher(*teacher_args))
                return teacher[0]

            bg_depth = _stored_background_depth(root, manifest, job["scale"])
            self.depth_fn = _depth_fn(mode, get_teacher, bg_depth)

        def label(self, unit: dict) -> dict:
            return _label_unit(root, manifest, unit, job, self.depth_fn)

    actor_cls = ray.remote(**options)(_Labeller)
    pool = ray.util.ActorPool([actor_cls.remote() for _ in range(n_actors)])
    yield from pool.map_unordered(lambda actor, unit: actor.label.remote(unit), units)


def _job_path(root: Path) -> Path:
    return root / schema.UNIT_DIR / JOB_NAME


def _marker_path(root: Path, unit_name: str) -> Path:
    return root / schema.UNIT_DIR / f"{unit_name}{_MARKER_SUFFIX}"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _clear_job(root: Path, manifest: dict) -> None:
    for unit in manifest["units"]:
        _marker_path(root, unit["name"]).unlink(missing_ok=True)
    _job_path(root).unlink(missing_ok=True)


def _pending_job(root: Path, settings: dict, manifest: dict, overwrite_depth: bool) -> dict | None:
    """The interrupted run to resume (same settings), or None to start; refuse what would lose labels."""
    job = _read_json(_job_path(root))
    if job is not None and job.get("settings") != settings:
        if not overwrite_depth:
            raise LabelError(
                f"{root} has an interrupted label-depth with other settings ({job.get('settings')}); rerun it "
                "with those settings to finish it, or pass --overwrite-depth to start over with these"
            )
        _clear_job(root, manifest)
        job = None
    if job is None and manifest.get("depth") and not overwrite_depth:
        d = manifest["depth"]
        raise LabelError(
            f"{root} already has depth ({d.get('kind')}, from {d.get('source')}); "
            "pass --overwrite-depth to replace it"
        )
    return job


def _label_backgrounds(root: Path, manifest: dict, settings: dict, teacher: Any) -> dict:
    """One pass per background; write bg_depth/ and the job record (which marks this step done)."""
    from fgdepth.world import read_rgb

    bg_ids = list(manifest["splits"]["backgrounds"])
    depths = teacher.predict([read_rgb(root / schema.BG_DIR / f"{b}.png") for b in bg_ids])
    kind = teacher.info.depth_kind
    scale = encoding_scale(kind, depths)
    (root / schema.BG_DEPTH_DIR).mkdir(exist_ok=True)
    for bg_id, d in zip(bg_ids, depths, strict=True):
        codec.atomic_write_bytes(root / schema.BG_DEPTH_DIR / f"{bg_id}.png", codec.encode_depth(d, scale))
    job = {
        "settings": settings,
        "id": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16],
        "kind": kind,
        "scale": scale,
        "teacher": teacher_record(teacher.info, settings["mode"]),
    }
    codec.atomic_write_json(_job_path(root), job)
    return job


def _stored_background_depth(root: Path, manifest: dict, scale: float) -> dict[str, np.ndarray]:
    """bg_id -> (H, W) float32 label as stored (quantised), which composites are composed from."""
    out = {}
    for bg_id in manifest["splits"]["backgrounds"]:
        path = root / schema.BG_DEPTH_DIR / f"{bg_id}.png"
        out[bg_id] = codec.decode_depth(codec.read_bytes(path), scale, str(path))
    return out


DepthFn = Callable[[list[dict[str, bytes]]], list[np.ndarray]]  # samples' {ext: bytes} -> (H, W) depth each


def _background_once_fn(bg_depth: dict[str, np.ndarray]) -> DepthFn:
    def depth_fn(samples: list[dict[str, bytes]]) -> list[np.ndarray]:
        out = []
        for files in samples:
            meta = json.loads(files[schema.EXT_META])
            mask = codec.decode_mask(files[schema.EXT_MASK])
            out.append(paste_contact_depth(bg_depth[meta["bg_id"]], mask, meta["anchor_x"], meta["anchor_y"]))
        return out

    return depth_fn


def _per_composite_fn(teacher: Any) -> DepthFn:
    def depth_fn(samples: list[dict[str, bytes]]) -> list[np.ndarray]:
        return teacher.predict([codec.decode_image(files[schema.EXT_COMP]) for files in samples])

    return depth_fn


def _finished(root: Path, manifest: dict, unit: dict, job: dict) -> dict | None:
    """The marker of a unit labelled by this job, if its output is still what the marker describes."""
    marker = _read_json(_marker_path(root, unit["name"]))
    if marker is None or marker.get("job") != job["id"]:
        return None
    if manifest["format"] == "webdataset":
        shard = root / unit["path"]
        if not shard.is_file() or shard.stat().st_size != marker["bytes"]:
            return None
    return marker


def _label_unit(root: Path, manifest: dict, unit: dict, job: dict, depth_fn: DepthFn) -> dict:
    """Label one unit, update its factory record, then write its marker (the resume point)."""
    from fgdepth.factory import _Stats

    record_path = root / schema.UNIT_DIR / f"{unit['name']}.json"
    record = _read_json(record_path)
    if manifest["format"] == "webdataset":
        samples = list(iter_tar(root / unit["path"]))
    else:
        if record is None:
            raise LabelError(
                f"{record_path}: unit record missing; the folder dataset's sample list is unknown"
            )
        samples = [(key, _folder_files(root, key)) for key in record["keys"]]
    depths = depth_fn([files for _, files in samples])
    stats = _Stats()
    for d in depths:
        stats.add_depth(d)
    encoded = [codec.encode_depth(d, job["scale"]) for d in depths]
    if manifest["format"] == "webdataset":
        sha256, nbytes = _rewrite_shard(root / unit["path"], samples, encoded)
    else:
        sha256, nbytes = _write_folder_depth(root, samples, encoded)
    depth_stats = stats.record()["depth"]
    marker = {"job": job["id"], "name": unit["name"], "sha256": sha256, "bytes": nbytes, "depth": depth_stats}
    if record is not None:
        record.update(sha256=sha256, bytes=nbytes)
        record["stats"]["depth"] = depth_stats
        codec.atomic_write_json(record_path, record)
    codec.atomic_write_json(_marker_path(root, unit["name"]), marker)
    return marker


def _folder_files(root: Path, key: str) -> dict[str, bytes]:
    from fgdepth.factory import _FOLDER_OF

    files = {}
    for ext, (folder, suffix) in _FOLDER_OF.items():
        path = root / folder / f"{key}{suffix}"
        if path.is_file():
            files[ext] = codec.read_bytes(path)
    return files


def _with_depth(files: dict[str, bytes], depth: bytes) -> list[tuple[str, bytes]]:
    """Members in the factory's order (comp, mask, depth, meta): the depth replaces an old one in place, or
    goes before the metadata."""
    if schema.EXT_DEPTH in files:
        return [(ext, depth if ext == schema.EXT_DEPTH else data) for ext, data in files.items()]
    out = [(ext, data) for ext, data in files.items() if ext != schema.EXT_META]
    out.append((schema.EXT_DEPTH, depth))
    if schema.EXT_META in files:
        out.append((schema.EXT_META, files[schema.EXT_META]))
    return out


def _rewrite_shard(
    path: Path, samples: list[tuple[str, dict[str, bytes]]], depths: list[bytes]
) -> tuple[str, int]:
    """Write the shard again with depth members under a temporary name, then rename; (sha256, bytes)."""
    from fgdepth.factory import write_tar

    members = (
        (f"{key}.{ext}", data)
        for (key, files), depth in zip(samples, depths, strict=True)
        for ext, data in _with_depth(files, depth)
    )
    return write_tar(path, members)


def _write_folder_depth(
    root: Path, samples: list[tuple[str, dict[str, bytes]]], depths: list[bytes]
) -> tuple[str, int]:
    """Write bg_fg_depth/<stem>.png (each atomically); (the unit's checksum, its bytes) as the factory records."""
    from fgdepth.factory import folder_unit_digest

    (root / schema.DEPTH_DIR).mkdir(exist_ok=True)
    nbytes = 0
    for (key, files), depth in zip(samples, depths, strict=True):
        codec.atomic_write_bytes(root / schema.DEPTH_DIR / f"{key}.png", depth)
        nbytes += sum(len(v) for ext, v in files.items() if ext != schema.EXT_DEPTH) + len(depth)
    return folder_unit_digest(root, [key for key, _ in samples]), nbytes


def _finish(root: Path, manifest: dict, job: dict, markers: dict[str, dict]) -> dict:
    """sources.json and manifest.json with the depth block and the new checksums; then drop the job files."""
    from fgdepth.factory import depth_summary

    for unit in manifest["units"]:
        m = markers[unit["name"]]
        unit.update(sha256=m["sha256"], bytes=m["bytes"])
    stats = [{"depth": m["depth"]} for m in markers.values()]
    depth = depth_summary(job["kind"], job["scale"], "teacher", stats)
    manifest["depth"] = depth | {"teacher": job["teacher"], "labelled_by": "label-depth"}
    sources_path = root / schema.SOURCES_NAME
    sources = json.loads(sources_path.read_text())
    sources.update(depth_kind=job["kind"], depth_scale=job["scale"], teacher=job["teacher"])
    codec.atomic_write_json(sources_path, sources)
    codec.atomic_write_json(root / schema.MANIFEST_NAME, manifest)
    _clear_job(root, manifest)
    return manifest
