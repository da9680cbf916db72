"""The dataset factory: sample specs from (seed, index), units of work in parallel, resume, manifest.

Data flow: sources or the procedural world -> stored world (``world.py``) -> plan (splits, units) ->
for each unit, for each sample index: spec (seeded by (seed, index)) -> compose -> encode -> shard / folders ->
unit record -> manifest.

Every sample is a pure function of (config, stored world, index), so the output is byte-identical whatever the
number of workers, and an interrupted run resumes by redoing only the units without a record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fgdepth import compose as C
from fgdepth.config import FactoryConfig, from_dict, to_dict
from fgdepth.data import codec, schema
from fgdepth.scene import Background
from fgdepth.sources import premultiplied_pyramid, premultiply
from fgdepth.world import World, load_world, make_ids, quantise_background, store_world

# Stream tags so different kinds of draws from the same (seed, index) never share a generator.
_STREAM_SAMPLE, _STREAM_SPLIT, _STREAM_ROOM, _STREAM_PERSON, _STREAM_LIMIT = 11, 12, 13, 14, 15
_STREAM_CAMOUFLAGE = 16  # its own stream: a dataset with camouflage has the same placements as one without
# Statistics look at every STATS_STRIDE-th pixel in each direction: cheap, deterministic, plenty for mean/std.
STATS_STRIDE = 8


class DatasetExistsError(RuntimeError):
    """The output directory holds something else, or a dataset made with other settings."""


def rng_for(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of one draw: seeded from (global seed, stream, item index), never from shared state."""
    return np.random.default_rng([seed, stream, index])


def seed_int(seed: int, stream: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------- splits
def assign_splits(n: int, val_fraction: float, test_fraction: float, rng: np.random.Generator) -> list[str]:
    """A seeded assignment of ``n`` items to train/val/test. Any non-zero fraction gets at least one item while
    at least one item stays for training."""

    def count(frac: float) -> int:
        return 0 if frac <= 0 else max(1, round(n * frac))

    n_test, n_val = count(test_fraction), count(val_fraction)
    while n_test + n_val > n - 1 and (n_test or n_val):
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    order = rng.permutation(n)
    splits = ["train"] * n
    for i in order[:n_test]:
        splits[i] = "test"
    for i in order[n_test : n_test + n_val]:
        splits[i] = "val"
    return splits


# ------------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Unit:
    name: str  # e.g. "train-train-000003"
    group: str
    indices: tuple[int, ...]


@dataclass
class Plan:
    """Which samples exist and how they are grouped into units. Derived from the config and the world's sizes."""

    num_bg: int
    num_people: int
    flip: bool
    placements: int
    units: list[Unit]

    @property
    def fg_per_person(self) -> int:
        return 2 if self.flip else 1

    @property
    def num_fg(self) -> int:
        return self.num_people * self.fg_per_person

    @property
    def total(self) -> int:
        return self.num_bg * self.num_fg * self.placements

    def decode(self, index: int) -> tuple[int, int, bool, int]:
        """index -> (background, person, flipped, placement)."""
        pair, k = divmod(index, self.placements)
        b, f = divmod(pair, self.num_fg)
        person, flipped = divmod(f, self.fg_per_person)
        return b, person, bool(flipped), k


def fg_id(person_id: str, flipped: bool) -> str:
    return person_id + ("f" if flipped else "")


def make_plan(cfg: FactoryConfig, world: World) -> Plan:
    plan = Plan(len(world.backgrounds), len(world.people), cfg.flip, cfg.placements, [])
    index = np.arange(plan.total, dtype=np.int64)
    if cfg.limit is not None and cfg.limit < plan.total:
        index = np.sort(rng_for(cfg.seed, _STREAM_LIMIT, 0).permutation(plan.total)[: cfg.limit])
    pair = index // plan.placements
    b = pair // plan.num_fg
    person = (pair % plan.num_fg) // plan.fg_per_person
    bg_split = np.asarray(world.bg_splits)[b]
    fg_split = np.asarray(world.person_splits)[person]
    for bs in schema.SPLITS:
        for fs in schema.SPLITS:
            sel = index[(bg_split == bs) & (fg_split == fs)]
            group = schema.group_name(bs, fs)
            for n, start in enumerate(range(0, sel.size, cfg.shard_size)):
                chunk = tuple(int(i) for i in sel[start : start + cfg.shard_size])
                plan.units.append(Unit(f"{group}-{n:06d}", group, chunk))
    return plan


# ---------------------------------------------------------------------------------------------- samples
@dataclass
class Sample:
    stem: str
    composed: C.Composed
    meta: dict


class Composer:
    """Turns sample indices into composed samples; holds the per-background caches (floor candidates)."""

    def __init__(self, cfg: FactoryConfig, world: World, plan: Plan):
        self.cfg, self.world, self.plan = cfg, world, plan
        self.mode = cfg.resolved_placement()
        self._candidates: dict[int, np.ndarray] = {}
        # the premultiplied sprite pyramid of the last foreground: consecutive indices share one for ``placements``
        # samples
        self._premult: tuple[tuple[int, bool], list[np.ndarray]] | None = None
        # the shard groups whose people camouflage may recolour: the training selection's, or every one
        self._camouflage_groups = set(schema.selection_groups("all" if cfg.camouflage_held_out else "train"))

    def premultiplied(self, person: int, flipped: bool) -> list[np.ndarray]:
        if self._premult is None or self._premult[0] != (person, flipped):
            rgba = self.world.person(person, flipped).rgba
            self._premult = ((person, flipped), premultiplied_pyramid(premultiply(rgba)))
        return self._premult[1]

    def placement(self, index: int) -> tuple[int, int, bool, int, C.Placement]:
        b, person, flipped, k = self.plan.decode(index)
        bg, fg = self.world.backgrounds[b], self.world.person(person, flipped)
        rng = rng_for(self.cfg.seed, _STREAM_SAMPLE, index)
        if self.mode == "geometry":
            if b not in self._candidates:
                self._candidates[b] = C.floor_candidates(bg)
            p = C.sample_geometry_placement(rng, fg, bg, self._candidates[b])
        else:
            p = C.sample_random_placement(rng, fg, bg, tuple(self.cfg.fg_height))
        group = schema.group_name(self.world.bg_splits[b], self.world.person_splits[person])
        if self.cfg.camouflage > 0 and group in self._camouflage_groups:
            rng = rng_for(self.cfg.seed, _STREAM_CAMOUFLAGE, index)
            if rng.random() < self.cfg.camouflage:
                p = replace(p, **C.sample_camouflage(rng))
        return b, person, flipped, k, p

    def sample(self, index: int) -> Sample:
        b, person, flipped, k, p = self.placement(index)
        bg, fg = self.world.backgrounds[b], self.world.person(person, flipped)
        composed = C.compose(bg, fg, p, self.mode, self.premultiplied(person, flipped))
        # --depth none: the procedural world keeps its depth to place people, the samples go without it
        if self.world.depth_kind is None:
            composed.depth = None
        bg_id, pid = self.world.bg_ids[b], self.world.person_ids[person]
        meta = {
            "index": index,
            "bg_id": bg_id,
            "fg_id": fg_id(pid, flipped),
            "person_id": pid,
            "flip": flipped,
            "placement": k,
            "bg_split": self.world.bg_splits[b],
            "fg_split": self.world.person_splits[person],
            "mode": self.mode,
            "visible_pixels": int(composed.mask.sum()),
            **p.to_dict(),
        }
        return Sample(schema.sample_stem(bg_id, meta["fg_id"], k), composed, meta)


# ----------------------------------------------------------------------------------------------- writing
def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


_TAR_BLOCK, _TAR_RECORD = 512, 20 * 512


@functools.cache
def _ustar_template() -> bytes:
    return _tarinfo("", 0).tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")


def tar_member(name: str, data: bytes) -> list[bytes]:
    """One regular file of a shard, byte for byte as ``tarfile`` writes ``_tarinfo(name, len(data))``: header,
    data, zero padding to the 512-byte block. The header is a cached template with the name, size and checksum
    filled in: tarfile's ``addfile`` costs ~0.1 ms a member, a third of a sample's budget."""
    raw = name.encode()
    if len(raw) > 100:  # USTAR splits long names into a prefix: leave that to tarfile
        header = _tarinfo(name, len(data)).tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape")
    else:
        buf = bytearray(_ustar_template())
        buf[: len(raw)] = raw
        buf[124:136] = b"%011o\0" % len(data)
        buf[148:156] = b" " * 8  # the checksum counts its own field as spaces
        buf[148:155] = b"%06o\0" % sum(buf)
        header = bytes(buf)
    return [header, data, b"\0" * (-len(data) % _TAR_BLOCK)]


def tar_end(offset: int) -> bytes:
    """The end of a tar of ``offset`` bytes: two zero blocks, then zeros to a whole record (as tarfile.close)."""
    return b"\0" * (2 * _TAR_BLOCK + (-(offset + 2 * _TAR_BLOCK) % _TAR_RECORD))


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> tuple[str, int]:
    """Write a tar of (name, bytes) members under a temporary name, fsync, rename; return (sha256, bytes)."""
    digest = hashlib.sha256()
    tmp = path.with_name(f".{path.name}.tmp")
    offset = 0
    with open(tmp, "wb") as raw:
        for name, data in members:
            for chunk in tar_member(name, data):
                raw.write(chunk)
                digest.update(chunk)
                offset += len(chunk)
        end = tar_end(offset)
        raw.write(end)
        digest.update(end)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)
    return digest.hexdigest(), path.stat().st_size


class _Stats:
    """Running sums for the manifest: composite mean/std per channel, depth min/max/mean/std."""

    def __init__(self) -> None:
        self.rgb_sum = np.zeros(3)
        self.rgb_sq = np.zeros(3)
        self.rgb_n = 0
        self.depth = [0, 0.0, 0.0, float("inf"), 0.0]  # count, sum, sumsq, min, max

    def add(self, c: C.Composed) -> None:
        px = c.composite[::STATS_STRIDE, ::STATS_STRIDE].reshape(-1, 3).astype(np.float64) / 255.0
        self.rgb_sum += px.sum(0)
        self.rgb_sq += (px * px).sum(0)
        self.rgb_n += px.shape[0]
        if c.depth is not None:
            self.add_depth(c.depth)

    def add_depth(self, depth: np.ndarray) -> None:
        """depth: (H, W) float, 0 = unknown (only known pixels count)."""
        d = depth[::STATS_STRIDE, ::STATS_STRIDE]
        d = d[d > 0].astype(np.float64)
        if d.size:
            s = self.depth
            s[0] += d.size
            s[1] += float(d.sum())
            s[2] += float((d * d).sum())
            s[3] = min(s[3], float(d.min()))
            s[4] = max(s[4], float(d.max()))

    def record(self) -> dict:
        return {
            "rgb_sum": self.rgb_sum.tolist(),
            "rgb_sq": self.rgb_sq.tolist(),
            "rgb_n": self.rgb_n,
            "depth": self.depth if self.depth[0] else [0, 0.0, 0.0, None, None],
        }


def _encode_sample(s: Sample, cfg: FactoryConfig, depth_scale: float) -> dict[str, bytes]:
    files = {
        schema.EXT_COMP: codec.encode_jpeg(s.composed.composite, cfg.jpeg_quality),
        schema.EXT_MASK: codec.encode_mask(s.composed.mask),
    }
    if s.composed.depth is not None:
        files[schema.EXT_DEPTH] = codec.encode_depth(s.composed.depth, depth_scale)
    files[schema.EXT_META] = codec.dumps_meta(s.meta)
    return files


_FOLDER_OF = {
    schema.EXT_COMP: (schema.COMP_DIR, ".jpg"),
    schema.EXT_MASK: (schema.MASK_DIR, ".png"),
    schema.EXT_DEPTH: (schema.DEPTH_DIR, ".png"),
    schema.EXT_META: (schema.META_DIR, ".json"),
}


def unit_path(root: Path, cfg: FactoryConfig, unit: Unit) -> Path:
    return root / schema.SHARD_DIR / f"{unit.name}.tar"


def write_unit(
    root: Path,
    cfg: FactoryConfig,
    composer: Composer,
    unit: Unit,
    depth_fn: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None,
) -> dict:
    """Compose and write one unit (a shard, or a chunk of folder files); return its record.

    ``depth_fn`` replaces each composite's depth (a teacher labelling every composite).
    """
    samples = [composer.sample(i) for i in unit.indices]
    if depth_fn is not None:
        for s, d in zip(samples, depth_fn([s.composed.composite for s in samples])):
            s.composed.depth = d
    stats = _Stats()
    scale = composer.world.depth_scale
    if cfg.format == "webdataset":
        final = unit_path(root, cfg, unit)

        def members() -> Iterator[tuple[str, bytes]]:
            for s in samples:
                stats.add(s.composed)
                for ext, data in _encode_sample(s, cfg, scale).items():
                    yield f"{s.stem}.{ext}", data

        sha, nbytes = write_tar(final, members())
        path = str(final.relative_to(root))
    else:
        digest = hashlib.sha256()
        nbytes = 0
        for s in samples:
            stats.add(s.composed)
            for ext, data in _encode_sample(s, cfg, scale).items():
                folder, suffix = _FOLDER_OF[ext]
                codec.atomic_write_bytes(root / folder / f"{s.stem}{suffix}", data)
                digest.update(f"{folder}/{s.stem}{suffix}:".encode() + hashlib.sha256(data).digest())
                nbytes += len(data)
        sha, path = digest.hexdigest(), None
    return {
        "name": unit.name,
        "group": unit.group,
        "count": len(samples),
        "path": path,
        "bytes": nbytes,
        "sha256": sha,
        "keys_sha256": hashlib.sha256("\n".join(s.stem for s in samples).encode()).hexdigest(),
        "keys": [s.stem for s in samples],
        "stats": stats.record(),
    }


def folder_unit_digest(root: Path, stems: list[str]) -> str:
    """The checksum a folder-format unit records, recomputed from disk (used by ``inspect``)."""
    digest = hashlib.sha256()
    for stem in stems:
        for folder, suffix in _FOLDER_OF.values():
            path = root / folder / f"{stem}{suffix}"
            if path.is_file():
                digest.update(
                    f"{folder}/{stem}{suffix}:".encode() + hashlib.sha256(path.read_bytes()).digest()
                )
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ the world
def build_world(cfg: FactoryConfig, workers: int = 1) -> World:
    """Load user folders or render the procedural world, assign splits, quantise depth as it will be stored."""
    if cfg.synthetic:
        backgrounds, people = _render_world(cfg, workers)
        bg_names = [f"procedural room seed={cfg.seed} index={i}" for i in range(cfg.num_bg)]
        person_names = [f"procedural person seed={cfg.seed} index={i}" for i in range(cfg.num_fg)]
        skipped: list[dict] = []
        # the world's depth is exact; --depth none leaves it out (it was written regardless, its source "none")
        depth_kind = None if cfg.resolved_depth() == "none" else "metric"
    else:
        from fgdepth import sources

        bgs = sources.load_backgrounds(
            cfg.bg_dir, cfg.size, cfg.bg_depth_dir if cfg.resolved_depth() == "maps" else None
        )
        fgs = sources.load_foregrounds(cfg.fg_dir, cfg.fg_mask_dir, max_height=2 * cfg.size)
        skipped = [{"path": s.path, "reason": s.reason} for s in bgs.skipped + fgs.skipped]
        if skipped and cfg.strict:
            raise sources.SourceError(
                "unreadable inputs (--strict): " + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped)
            )
        if not bgs.items or not fgs.items:
            # the skipped files are listed only after a finished run: name them here, or nothing says what to fix
            raise sources.SourceError(
                f"no usable {'backgrounds' if not bgs.items else 'foregrounds'} left after skipping: "
                + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:20])
                + (" ..." if len(skipped) > 20 else "")
            )
        backgrounds, people = bgs.items, fgs.items
        bg_names, person_names = bgs.names, fgs.names
        depth_kind = "metric" if cfg.resolved_depth() == "maps" else None
    world = World(
        backgrounds=backgrounds,
        people=people,
        bg_ids=make_ids("bg", len(backgrounds)),
        person_ids=make_ids("fg", len(people)),
        bg_names=bg_names,
        person_names=person_names,
        bg_splits=assign_splits(
            len(backgrounds), cfg.val_fraction, cfg.test_fraction, rng_for(cfg.seed, _STREAM_SPLIT, 0)
        ),
        person_splits=assign_splits(
            len(people), cfg.val_fraction, cfg.test_fraction, rng_for(cfg.seed, _STREAM_SPLIT, 1)
        ),
        depth_kind=depth_kind,
        skipped=skipped,
    )
    if cfg.resolved_depth() == "teacher":
        _label_backgrounds_with_teacher(cfg, world)
    world.backgrounds = [quantise_background(bg, world.depth_scale) for bg in world.backgrounds]
    return world


def _render_task(args: tuple[str, int, int, int]):
    kind, seed, size, index = args
    from fgdepth import synth

    if kind == "room":
        return synth.render_room(seed_int(seed, _STREAM_ROOM, index), size=size)
    return synth.render_person(seed_int(seed, _STREAM_PERSON, index), height_px=int(round(size * 8 / 7)))


def _render_world(cfg: FactoryConfig, workers: int) -> tuple[list[Background], list]:
    tasks = [("room", cfg.seed, cfg.size, i) for i in range(cfg.num_bg)]
    tasks += [("person", cfg.seed, cfg.size, i) for i in range(cfg.num_fg)]
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.map(_render_task, tasks, chunksize=4)
    else:
        results = [_render_task(t) for t in tasks]
    return results[: cfg.num_bg], results[cfg.num_bg :]


def _label_backgrounds_with_teacher(cfg: FactoryConfig, world: World) -> None:
    """One teacher pass per background (both modes): the backgrounds' depth, the dataset's depth kind and its
    encoding scale (relative: from the backgrounds' labels with headroom, see ``labeling.encoding_scale``)."""
    from fgdepth import labeling

    model = labeling.load_teacher(cfg.teacher, cfg.teacher_size, cfg.teacher_batch)
    depths = model.predict([bg.rgb for bg in world.backgrounds])
    world.depth_kind = model.info.depth_kind
    world.depth_scale = labeling.encoding_scale(world.depth_kind, depths)
    world.teacher = labeling.teacher_record(model.info, cfg.teacher_mode)
    for bg, d in zip(world.backgrounds, depths):
        bg.depth = d.astype(np.float32)


# ------------------------------------------------------------------------------------------- the run
_WORKER: dict = {}


def _worker_unit(args: tuple[str, dict, Unit]) -> dict:
    root, cfg_dict, unit = args
    if _WORKER.get("root") != root:
        cfg = from_dict(FactoryConfig, cfg_dict)
        world = load_world(root)
        plan = make_plan(cfg, world)
        depth_fn = _teacher_depth_fn(cfg, world) if _per_composite(cfg) else None
        _WORKER.update(root=root, cfg=cfg, composer=Composer(cfg, world, plan), depth_fn=depth_fn)
    return write_unit(Path(root), _WORKER["cfg"], _WORKER["composer"], unit, _WORKER["depth_fn"])


def _per_composite(cfg: FactoryConfig) -> bool:
    return cfg.resolved_depth() == "teacher" and cfg.teacher_mode == "per-composite"


def _teacher_depth_fn(cfg: FactoryConfig, world: World) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """Per-composite labels: the teacher, loaded once per process, on a unit's composites (batched)."""
    from fgdepth import labeling

    return labeling.load_teacher(cfg.teacher, cfg.teacher_size, cfg.teacher_batch).predict


_OWNED = (
    schema.MANIFEST_NAME,
    schema.RUN_NAME,
    schema.SOURCES_NAME,
    schema.BG_DIR,
    schema.BG_DEPTH_DIR,
    schema.BG_META_DIR,
    schema.BG_FLOOR_DIR,
    schema.FG_DIR,
    schema.FG_MASK_DIR,
    schema.FG_DEPTH_DIR,
    schema.FG_META_DIR,
    schema.SHARD_DIR,
    schema.UNIT_DIR,
    schema.COMP_DIR,
    schema.MASK_DIR,
    schema.DEPTH_DIR,
    schema.META_DIR,
)


_PATH_SETTINGS = ("bg_dir", "fg_dir", "fg_mask_dir", "bg_depth_dir", "teacher")


def _same_setting(key: str, previous: object, current: object) -> bool:
    """Settings compare as recorded, folders as the folders they name (typed relative once, absolute the next)."""
    if key in _PATH_SETTINGS and isinstance(previous, str) and isinstance(current, str):
        return os.path.abspath(previous) == os.path.abspath(current)
    return previous == current


def _check_out_dir(root: Path, cfg: FactoryConfig, overwrite: bool) -> None:
    """Refuse to mix datasets: resume only a run with the same identity; --overwrite clears fgdepth's files only."""
    run_path = root / schema.RUN_NAME
    if not codec.require_out_folder(root).exists():
        return
    if overwrite:
        _remove_owned(root)
        return
    if run_path.is_file():
        previous = json.loads(run_path.read_text()).get("config", {})
        current = cfg.identity()
        diff = sorted(
            k for k in set(previous) | set(current) if not _same_setting(k, previous.get(k), current.get(k))
        )
        unstarted = not any(
            (root / name).exists() for name in (schema.SOURCES_NAME, schema.MANIFEST_NAME, schema.UNIT_DIR)
        )
        if diff and unstarted:
            # the run stopped before its world was stored (a wrong folder, people without alpha): no sample exists,
            # so the corrected command starts afresh instead of being refused as another dataset
            _remove_owned(root)
            return
        if diff:
            details = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in diff)
            raise DatasetExistsError(
                f"{root} holds a dataset made with other settings ({details}); "
                "use the same settings to resume, another --out, or --overwrite"
            )
    elif any(root.iterdir()):
        raise DatasetExistsError(
            f"{root} is not empty and is not an fgdepth dataset; use another --out or --overwrite"
        )


def _remove_owned(root: Path) -> None:
    """Remove fgdepth's own files and folders from ``root`` (anything else stays)."""
    for name in _OWNED:
        p = root / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def make_dataset(
    cfg: FactoryConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Build (or resume) a dataset in ``out_dir``; return its manifest.

    ``progress(done_samples, total_samples)`` is called as units complete.
    """
    cfg.validate()
    root = Path(out_dir)
    world_stored = (root / schema.SOURCES_NAME).is_file() and not overwrite
    if cfg.resolved_depth() == "teacher" and (_per_composite(cfg) or not world_stored):
        from fgdepth import teacher

        teacher.check_checkpoint(cfg.teacher)  # before anything is written: a typo must not leave a run.json
    _check_out_dir(root, cfg, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    codec.atomic_write_json(
        root / schema.RUN_NAME, {"schema_version": schema.SCHEMA_VERSION, "config": cfg.identity()}
    )
    if not (root / schema.SOURCES_NAME).is_file():
        store_world(root, build_world(cfg, cfg.workers))
    world = load_world(root)
    plan = make_plan(cfg, world)
    (root / schema.UNIT_DIR).mkdir(exist_ok=True)
    if cfg.format == "webdataset":
        (root / schema.SHARD_DIR).mkdir(exist_ok=True)
    else:
        for folder, _ in _FOLDER_OF.values():
            if folder != schema.DEPTH_DIR or world.depth_kind:
                (root / folder).mkdir(exist_ok=True)
    _remove_stale_temporaries(root)
    records = {u.name: r for u in plan.units if (r := _done_record(root, cfg, u)) is not None}
    todo = [u for u in plan.units if u.name not in records]
    done = sum(r["count"] for r in records.values())
    total = sum(len(u.indices) for u in plan.units)
    if progress:
        progress(done, total)
    for record in _run_units(root, cfg, todo):
        codec.atomic_write_json(root / schema.UNIT_DIR / f"{record['name']}.json", record)
        records[record["name"]] = record
        done += record["count"]
        if progress:
            progress(done, total)
    manifest = build_manifest(cfg, world, plan, records)
    _keep_depth_labels(root / schema.MANIFEST_NAME, manifest)
    codec.atomic_write_json(root / schema.MANIFEST_NAME, manifest)
    return manifest


def _keep_depth_labels(path: Path, manifest: dict) -> None:
    """A rerun over a dataset that ``fgdepth label-depth`` labelled keeps the manifest's word of it (its units and
    labels are kept as they are): rebuilt from the settings, the depth block said source "none", no teacher."""
    try:
        previous = json.loads(path.read_text()).get("depth") or {}
    except (OSError, ValueError, AttributeError):
        return
    if previous.get("labelled_by") and manifest.get("depth"):
        for key in ("source", "teacher", "labelled_by"):
            if key in previous:
                manifest["depth"][key] = previous[key]


def _run_units(root: Path, cfg: FactoryConfig, todo: list[Unit]) -> Iterator[dict]:
    tasks = [(str(root), to_dict(cfg), u) for u in todo]
    # each run loads its own world and config: a cache kept from an earlier run into the same directory (then
    # overwritten with other settings) would compose the old dataset; a forked worker must not inherit it either
    _WORKER.clear()
    # per-composite teacher labels run in this process: one model (CUDA cannot be forked, and the model's own
    # threads already use every core); composing is ~1% of a sample's time next to the teacher's pass
    if cfg.engine == "ray":
        yield from _run_units_ray(cfg, tasks)
        return
    if cfg.workers <= 1 or len(todo) <= 1 or _per_composite(cfg):
        for t in tasks:
            yield _worker_unit(t)
        return
    ctx = mp.get_context("fork")
    with ctx.Pool(min(cfg.workers, len(todo))) as pool:
        yield from pool.imap_unordered(_worker_unit, tasks)


def init_ray(address: str | None, workers: int) -> None:
    """Connect to the Ray cluster at ``address``, or start a local instance of ``workers`` CPUs (none if Ray is
    already initialised). Ray's own errors for an address that holds no cluster (``auto`` without one, a bad
    format) are ConnectionError / ValueError tracebacks naming no option: a ValueError naming ``--ray-address``."""
    import ray

    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError) as err:
        where = f"--ray-address {address}" if address else "a local Ray instance"
        raise ValueError(f"{where}: cannot connect to Ray ({err})") from err


def _run_units_ray(cfg: FactoryConfig, tasks: list) -> Iterator[dict]:
    """Units as Ray tasks (one per shard), results in completion order; the driver writes the records, so
    resume works as with the local engine. Every node must see ``out`` at the same path (a shared filesystem).
    With per-composite teacher labels, each task loads the teacher once and asks for a GPU when the cluster has
    one."""
    import ray

    init_ray(cfg.ray_address, cfg.workers)
    options: dict = {"num_cpus": 1, "max_retries": 2}
    if _per_composite(cfg) and ray.cluster_resources().get("GPU", 0) >= 1:
        options["num_gpus"] = 1
    remote = ray.remote(_worker_unit).options(**options)
    pending = [remote.remote(t) for t in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:  # an aborted run (error, Ctrl-C) leaves no task writing behind our back
            ray.cancel(ref, force=True)


def _done_record(root: Path, cfg: FactoryConfig, unit: Unit) -> dict | None:
    path = root / schema.UNIT_DIR / f"{unit.name}.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("count") != len(unit.indices):
        return None
    if cfg.format == "webdataset":
        shard = unit_path(root, cfg, unit)
        if not shard.is_file() or shard.stat().st_size != record.get("bytes"):
            return None
    return record


def _remove_stale_temporaries(root: Path) -> None:
    for sub in (
        schema.SHARD_DIR,
        schema.UNIT_DIR,
        schema.COMP_DIR,
        schema.MASK_DIR,
        schema.DEPTH_DIR,
        schema.META_DIR,
    ):
        d = root / sub
        if d.is_dir():
            for p in d.glob(".*.tmp"):
                p.unlink(missing_ok=True)


# -------------------------------------------------------------------------------------------- manifest
def _mean_std(total: np.ndarray, sq: np.ndarray, n: int) -> tuple[list[float], list[float]]:
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(sq / max(n, 1) - mean * mean, 0.0))
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def depth_summary(kind: str, scale: float, source: str, stats: list[dict]) -> dict:
    """The manifest's ``depth`` block from the units' stats records."""
    d = [s["depth"] for s in stats if s["depth"][0]]
    n = sum(x[0] for x in d)
    mean = sum(x[1] for x in d) / max(n, 1)
    var = max(sum(x[2] for x in d) / max(n, 1) - mean * mean, 0.0)
    return {
        "kind": kind,
        "unit": "m" if kind == "metric" else "relative disparity",
        "encoding": "uint16 png, value = round(depth * scale), 0 = unknown"
        + ("" if kind == "metric" else "; larger values were clipped to 65535 / scale"),
        "scale": scale,
        "source": source,
        "min": round(min(x[3] for x in d), 6) if d else None,
        "max": round(max(x[4] for x in d), 6) if d else None,
        "mean": round(mean, 6),
        "std": round(var**0.5, 6),
    }


def build_manifest(cfg: FactoryConfig, world: World, plan: Plan, records: dict[str, dict]) -> dict:
    ordered = [records[u.name] for u in plan.units]
    rgb_sum = sum((np.asarray(r["stats"]["rgb_sum"]) for r in ordered), np.zeros(3))
    rgb_sq = sum((np.asarray(r["stats"]["rgb_sq"]) for r in ordered), np.zeros(3))
    comp_mean, comp_std = _mean_std(rgb_sum, rgb_sq, sum(r["stats"]["rgb_n"] for r in ordered))
    bg_px = np.concatenate(
        [bg.rgb[::STATS_STRIDE, ::STATS_STRIDE].reshape(-1, 3) for bg in world.backgrounds]
    )
    bg_px = bg_px.astype(np.float64) / 255.0
    bg_mean, bg_std = _mean_std(bg_px.sum(0), (bg_px * bg_px).sum(0), bg_px.shape[0])
    by_group = {}
    for r in ordered:
        by_group[r["group"]] = by_group.get(r["group"], 0) + r["count"]
    by_selection = {
        name: sum(by_group.get(g, 0) for g in schema.selection_groups(name)) for name in schema.SELECTIONS
    }
    depth = None
    if world.depth_kind:
        depth = depth_summary(
            world.depth_kind, world.depth_scale, cfg.resolved_depth(), [r["stats"] for r in ordered]
        )
        if world.teacher:
            depth["teacher"] = world.teacher
    from fgdepth import __version__

    return {
        "schema_version": schema.SCHEMA_VERSION,
        "fgdepth_version": __version__,
        "config": cfg.identity(),
        "format": cfg.format,
        "size": cfg.size,
        "counts": {
            "samples": sum(r["count"] for r in ordered),
            "backgrounds": len(world.backgrounds),
            "people": len(world.people),
            "foregrounds": plan.num_fg,
            "by_group": by_group,
            "by_selection": by_selection,
            "skipped_inputs": len(world.skipped),
        },
        "splits": {
            "backgrounds": dict(zip(world.bg_ids, world.bg_splits)),
            "people": dict(zip(world.person_ids, world.person_splits)),
        },
        "stats": {
            "composite_mean": comp_mean,
            "composite_std": comp_std,
            "background_mean": bg_mean,
            "background_std": bg_std,
            "stride": STATS_STRIDE,
        },
        "depth": depth,
        "skipped": world.skipped,
        "units": [
            {k: r[k] for k in ("name", "group", "count", "path", "bytes", "sha256", "keys_sha256")}
            for r in ordered
        ],
    }
