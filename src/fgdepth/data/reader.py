"""Reading datasets back: shards (IterableDataset), the folder layout and on-the-fly composition (map-style).

All three yield the same dict (``schema`` keys): ``background``/``composite`` (3, H, W) float32 in [0, 1],
``mask`` (1, H, W) float32 in {0, 1}, ``depth`` (1, H, W) float32 (metres for metric datasets, 0 = unknown),
``depth_valid`` (1, H, W) float32, ``focal`` () float32 (the camera's focal length over the image's short side,
from ``bg_meta/<bg_id>.json``; 0 = unknown) and ``key`` (the sample stem).
"""

from __future__ import annotations

import json
import random
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from fgdepth.data import codec, schema
from fgdepth.intrinsics import focal_from_intrinsics

# background/composite (H, W, 3) uint8, mask (H, W) bool, depth (H, W) float32 | None, focal float, key str
NumpySample = dict


def require_folder(root: str | Path) -> Path:
    """``root`` as a Path; a missing path or a file is named as such, before "no manifest" or "no bg_fg/" in it."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    if not root.is_dir():
        raise ValueError(f"{root}: a file, not a dataset folder")
    return root


def read_manifest(root: str | Path) -> dict:
    path = require_folder(root) / schema.MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest; is {root} a finished fgdepth dataset?")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:  # its own message names no file
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != schema.SCHEMA_VERSION:
        raise ValueError(f"{path}: schema version {version}, expected {schema.SCHEMA_VERSION}")
    missing = [key for key in ("format", "counts", "splits", "units") if key not in manifest]
    if missing:
        raise ValueError(f"{path}: no {', '.join(map(repr, missing))}; not a whole fgdepth manifest")
    return manifest


def depth_scale_of(manifest: dict) -> float:
    return float((manifest.get("depth") or {}).get("scale") or schema.DEPTH_MM_PER_M)


def to_tensors(sample: NumpySample) -> dict:
    """The one place numpy HWC becomes torch CHW."""
    bg = torch.from_numpy(np.ascontiguousarray(sample[schema.BACKGROUND])).permute(2, 0, 1).float().div_(255)
    comp = torch.from_numpy(np.ascontiguousarray(sample[schema.COMPOSITE])).permute(2, 0, 1).float().div_(255)
    mask = torch.from_numpy(np.ascontiguousarray(sample[schema.MASK])).float()[None]
    h, w = mask.shape[-2:]
    depth = sample.get(schema.DEPTH)
    depth_t = (
        torch.zeros(1, h, w) if depth is None else torch.from_numpy(np.ascontiguousarray(depth)).float()[None]
    )
    return {
        schema.BACKGROUND: bg,
        schema.COMPOSITE: comp,
        schema.MASK: mask,
        schema.DEPTH: depth_t,
        schema.DEPTH_VALID: (depth_t > 0).float(),
        schema.FOCAL: torch.tensor(float(sample.get(schema.FOCAL) or 0.0)),
        schema.KEY: sample[schema.KEY],
    }


class _BackgroundCache:
    """Backgrounds are stored once; samples refer to them by id."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, np.ndarray] = {}
        self._focal: dict[str, float] = {}

    def __call__(self, bg_id: str) -> np.ndarray:
        if bg_id not in self._cache:
            path = _find_image(self.root / schema.BG_DIR, bg_id)
            if path is None:
                raise FileNotFoundError(f"{self.root / schema.BG_DIR}: no image for background {bg_id!r}")
            self._cache[bg_id] = codec.decode_image(codec.read_bytes(path), str(path))
        return self._cache[bg_id]

    def focal(self, bg_id: str) -> float:
        """The background camera's ``focal`` (fgdepth.intrinsics) from ``bg_meta/<bg_id>.json``; 0 if unknown."""
        if bg_id not in self._focal:
            self._focal[bg_id] = read_focal(self.root, bg_id, self(bg_id).shape[:2])
        return self._focal[bg_id]


def read_focal(root: Path, bg_id: str, image_hw: tuple[int, int]) -> float:
    """``focal`` of background ``bg_id`` (stored at ``image_hw``) from its ``bg_meta`` intrinsics; 0 without."""
    path = root / schema.BG_META_DIR / f"{bg_id}.json"
    if not path.is_file():
        return 0.0
    try:
        intrinsics = json.loads(path.read_text()).get("intrinsics")
        return focal_from_intrinsics(float(intrinsics[0]), *image_hw) if intrinsics else 0.0
    except (ValueError, TypeError, IndexError, AttributeError) as e:
        raise ValueError(
            f'{path}: unreadable intrinsics ({e}); expected {{"intrinsics": [fx, fy, cx, cy]}}'
        ) from e


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in schema.IMAGE_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def decode_shard_sample(
    files: dict[str, bytes],
    key: str,
    backgrounds: _BackgroundCache,
    scale: float,
    shard: str | Path | None = None,
) -> NumpySample:
    """``shard``: the tar the sample came from, named in errors with the member."""
    where = f"{shard}: {key}." if shard else f"sample {key} "
    missing = [ext for ext in (schema.EXT_COMP, schema.EXT_MASK) if ext not in files]
    if missing:
        raise codec.DecodeError(f"{where}{missing[0]} missing")
    meta = json.loads(files[schema.EXT_META]) if schema.EXT_META in files else None
    bg_id = meta["bg_id"] if meta else schema.parse_stem(key)[0]
    depth = files.get(schema.EXT_DEPTH)
    return {
        schema.KEY: key,
        schema.BACKGROUND: backgrounds(bg_id),
        schema.FOCAL: backgrounds.focal(bg_id),
        schema.COMPOSITE: codec.decode_image(files[schema.EXT_COMP], f"{where}{schema.EXT_COMP}"),
        schema.MASK: codec.decode_mask(files[schema.EXT_MASK], f"{where}{schema.EXT_MASK}"),
        schema.DEPTH: None
        if depth is None
        else codec.decode_depth(depth, scale, f"{where}{schema.EXT_DEPTH}"),
        "meta": meta,
    }


def iter_tar(path: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a webdataset tar; the key ends at the first dot.

    A tar cut short or damaged raises DecodeError naming it (once the samples before the damage are yielded)."""
    current, files = None, {}
    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition("/")[2].partition(".")
                if key != current and current is not None:
                    yield current, files
                    files = {}
                current = key
                files[ext] = tar.extractfile(member).read()
            # tarfile ends quietly at a cut or broken header after the first one: a whole tar ends with a zero block
            tar.fileobj.seek(tar.offset)
            if tar.fileobj.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                raise tarfile.ReadError(f"no end-of-archive block at byte {tar.offset}")
    except tarfile.ReadError as err:
        raise codec.DecodeError(f"{path}: truncated or corrupt tar ({err})") from None
    if current is not None:
        yield current, files


def split_for_rank_and_worker(items: list, rank: int, world_size: int) -> list:
    """The share of ``items`` for this distributed rank and this data-loader worker (round robin)."""
    items = items[rank::world_size]
    info = get_worker_info()
    if info is not None:
        items = items[info.id :: info.num_workers]
    return items


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardDataset(IterableDataset):
    """Samples of a webdataset-format dataset, one selection (``schema.SELECTIONS``) of it.

    Shards are shuffled per epoch (seeded by (seed, epoch)), split across distributed ranks and loader workers,
    and samples pass a small shuffle buffer. ``transform`` acts on the numpy sample before it becomes tensors.
    """

    def __init__(
        self,
        root: str | Path,
        selection: str = "train",
        shuffle: bool = False,
        seed: int = 0,
        buffer_size: int = 256,
        transform: Callable[[NumpySample], NumpySample] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        equal_split: bool = False,
    ):
        self.root = Path(root)
        self.manifest = read_manifest(root)
        if self.manifest["format"] != "webdataset":
            raise ValueError(f"{root}: format is {self.manifest['format']!r}; use FolderDataset")
        groups = set(schema.selection_groups(selection))
        self.shards = [self.root / u["path"] for u in self.manifest["units"] if u["group"] in groups]
        self.num_samples = sum(u["count"] for u in self.manifest["units"] if u["group"] in groups)
        self.selection, self.shuffle, self.seed, self.buffer_size = selection, shuffle, seed, buffer_size
        self.transform = transform
        self.rank, self.world_size = rank, world_size
        # DDP needs every rank to run the same number of steps, else the collective ops hang at the epoch's end
        self.equal_split = equal_split
        self.scale = depth_scale_of(self.manifest)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_world(self) -> tuple[int, int]:
        rank, world = _dist_rank_world()
        return (
            self.rank if self.rank is not None else rank,
            self.world_size if self.world_size is not None else world,
        )

    def shards_for_this_process(self) -> list[Path]:
        shards = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}-{self.epoch}").shuffle(shards)
        return split_for_rank_and_worker(shards, *self._rank_world())

    def samples_per_process(self) -> int:
        """With ``equal_split``: the samples every rank and loader worker yields per epoch."""
        info = get_worker_info()
        return self.num_samples // (self._rank_world()[1] * (info.num_workers if info else 1))

    def iter_numpy(self) -> Iterator[NumpySample]:
        """This process's share, decoded, in shard order (no shuffling). With ``equal_split``, exactly
        ``samples_per_process()`` samples, going round this process's shards again if its share is short."""
        backgrounds = _BackgroundCache(self.root)
        shards = self.shards_for_this_process()
        quota = self.samples_per_process() if self.equal_split else None
        if quota == 0 or not shards:
            return
        n = 0
        while True:
            for shard in shards:
                for key, files in iter_tar(shard):
                    if quota is not None and n >= quota:
                        return
                    yield decode_shard_sample(files, key, backgrounds, self.scale, shard)
                    n += 1
            if quota is None:
                return

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        rng = random.Random(f"{self.seed}-{self.epoch}-{info.id if info else 0}")
        samples = (
            _shuffle_buffer(self.iter_numpy(), self.buffer_size, rng) if self.shuffle else self.iter_numpy()
        )
        for s in samples:
            yield to_tensors(self.transform(s) if self.transform else s)

    def __len__(self) -> int:
        if self.equal_split:
            return self.num_samples // self._rank_world()[1]
        return self.num_samples


def _shuffle_buffer(it: Iterator, size: int, rng: random.Random) -> Iterator:
    buf: list = []
    for x in it:
        if len(buf) < size:
            buf.append(x)
            continue
        i = rng.randrange(size)
        yield buf[i]
        buf[i] = x
    rng.shuffle(buf)
    yield from buf


# a folder without a manifest (foreign_splits): the share of its rooms (and people) held out for val and for test
FOREIGN_VAL_FRACTION = FOREIGN_TEST_FRACTION = 0.1
FOREIGN_SPLIT_SEED = 0


def foreign_splits(stems: list[str]) -> dict[str, dict[str, str]]:
    """Splits for a folder someone else wrote (no manifest), in the manifest's form ``{"backgrounds": {id: split},
    "people": {id: split}}``: 10 % of its rooms each for val and test (at least one each where there are three or
    more), seeded, so that train, val and test never share a room.

    Rooms are the stems' first ``_`` field (as the reference layout pairs a composite with ``bg/<bg_id>``). Where
    every stem reads as ``<bg_id>_<fg_id>_<kk>`` and splitting the people as well (10 % each, a mirrored
    ``<fg_id>f`` with ``<fg_id>``) still leaves samples in train, val and test, people are held out too;
    otherwise ``"people"`` is empty and the split holds out rooms only (names are not always people).
    """
    from fgdepth.factory import assign_splits  # the factory's own rule (lazy: the factory imports the world)

    def split(ids: list[str], stream: int) -> dict[str, str]:
        rng = np.random.default_rng([FOREIGN_SPLIT_SEED, stream])
        return dict(
            zip(ids, assign_splits(len(ids), FOREIGN_VAL_FRACTION, FOREIGN_TEST_FRACTION, rng), strict=True)
        )

    rooms = split(sorted({stem.split("_", 1)[0] for stem in stems}), 0)
    try:
        parsed = [schema.parse_stem(stem) for stem in stems]
    except ValueError:
        return {"backgrounds": rooms, "people": {}}
    fg_ids = {fg for _, fg, _ in parsed}
    person_of = {f: schema.person_of(f, fg_ids) for f in fg_ids}
    people = split(sorted(set(person_of.values())), 1)
    found = {(rooms[bg], people[person_of[fg]]) for bg, fg, _ in parsed}
    if all((name, name) in found for name in ("train", "val", "test")):
        return {"backgrounds": rooms, "people": people}
    return {"backgrounds": rooms, "people": {}}


class FolderDataset(Dataset):
    """The reference folder layout: ``bg/<bg_id>.*``, ``bg_fg/<bg_id>_<rest>.jpg``, ``bg_fg_mask/<stem>.png``,
    optional ``bg_fg_depth/<stem>.png`` (uint16). Works on folders written by anyone. ``selection`` keeps the
    samples whose background and person belong to it: the splits of the fgdepth manifest, or for a folder without
    one those of :func:`foreign_splits` (``splits`` says which; ``selection="all"`` keeps every sample)."""

    def __init__(
        self,
        root: str | Path,
        selection: str = "all",
        transform: Callable[[NumpySample], NumpySample] | None = None,
        depth_scale: float | None = None,
    ):
        self.root = require_folder(root)
        comp_dir = self.root / schema.COMP_DIR
        if not comp_dir.is_dir():
            raise FileNotFoundError(
                f"{comp_dir}: missing; expected the reference layout (bg/, bg_fg/, bg_fg_mask/)"
            )
        stems = sorted(p.stem for p in comp_dir.iterdir() if p.suffix.lower() in schema.IMAGE_SUFFIXES)
        self.manifest = None
        if (self.root / schema.MANIFEST_NAME).is_file():
            self.manifest = read_manifest(self.root)
        self.splits = self.manifest["splits"] if self.manifest else foreign_splits(stems)
        self.stems = self._select(stems, selection)
        self.transform = transform
        self.scale = depth_scale if depth_scale is not None else depth_scale_of(self.manifest or {})
        self._backgrounds = _BackgroundCache(self.root)

    def _select(self, stems: list[str], selection: str) -> list[str]:
        schema.selection_groups(selection)  # raises the error listing valid names if unknown
        if self.manifest is None and selection == "all":
            return stems
        bg_ok, fg_ok = schema.SELECTIONS[selection]
        rooms, people = self.splits["backgrounds"], self.splits["people"]
        # a foreign folder whose people are unknown: rooms alone decide
        if not people and self.manifest is None:
            if selection == "test_new_people":
                raise ValueError(
                    f"{self.root}: its composites' names do not say who is in them (<bg_id>_<fg_id>_<kk>), so no "
                    "selection of unseen people can be made"
                )
            return [stem for stem in stems if rooms.get(stem.split("_", 1)[0]) in bg_ok]
        keep = []
        for stem in stems:
            bg_id, fg, _ = schema.parse_stem(stem)
            person = schema.person_of(fg, people)
            if rooms.get(bg_id) in bg_ok and people.get(person) in fg_ok:
                keep.append(stem)
        return keep

    def __len__(self) -> int:
        return len(self.stems)

    def load_numpy(self, i: int) -> NumpySample:
        stem = self.stems[i]
        comp_path = _find_image(self.root / schema.COMP_DIR, stem)
        mask_path = self.root / schema.MASK_DIR / f"{stem}.png"
        if not mask_path.is_file():
            raise FileNotFoundError(f"{mask_path}: missing mask for composite {comp_path.name}")
        depth_path = self.root / schema.DEPTH_DIR / f"{stem}.png"
        bg_id = stem.split("_", 1)[0]
        comp = codec.decode_image(codec.read_bytes(comp_path), str(comp_path))
        mask = codec.decode_mask(codec.read_bytes(mask_path), str(mask_path))
        depth = (
            codec.decode_depth(codec.read_bytes(depth_path), self.scale, str(depth_path))
            if depth_path.is_file()
            else None
        )
        for path, label in ((mask_path, mask), (depth_path, depth)):
            if label is not None and label.shape[:2] != comp.shape[:2]:
                raise ValueError(
                    f"{path}: size {label.shape[1]}x{label.shape[0]} differs from its composite {comp_path.name}'s "
                    f"{comp.shape[1]}x{comp.shape[0]}"
                )
        h, w = comp.shape[:2]
        return {
            schema.KEY: stem,
            # a background stored at another size than the composite (anyone's folders) is resized to it
            schema.BACKGROUND: codec.fit_background(self._backgrounds(bg_id), h, w),
            schema.FOCAL: self._backgrounds.focal(bg_id),
            schema.COMPOSITE: comp,
            schema.MASK: mask,
            schema.DEPTH: depth,
        }

    def __getitem__(self, i: int) -> dict:
        s = self.load_numpy(i)
        return to_tensors(self.transform(s) if self.transform else s)


class OnTheFlyDataset(Dataset):
    """Composes samples in the data loader from the dataset's stored world and specs: the same pixels as the
    materialised dataset before JPEG encoding, for the same seed, without writing any sample files.

    ``root`` needs only the stored world (``fgdepth make-dataset`` writes it first; ``--limit 1`` is enough).
    """

    def __init__(
        self,
        root: str | Path,
        selection: str = "train",
        transform: Callable[[NumpySample], NumpySample] | None = None,
        config_overrides: dict | None = None,
    ):
        from fgdepth import factory
        from fgdepth.config import FactoryConfig, from_dict
        from fgdepth.world import load_world

        self.root = Path(root)
        if not (self.root / schema.RUN_NAME).is_file() or not (self.root / schema.SOURCES_NAME).is_file():
            # anyone's reference-layout folder has samples but no stored world: there is nothing to compose from
            raise FileNotFoundError(
                f"{self.root}: no {schema.RUN_NAME} / {schema.SOURCES_NAME}; on-the-fly composition needs a dataset "
                "made by fgdepth make-dataset (its stored world); read this folder with --source memory or folders"
            )
        run = json.loads((self.root / schema.RUN_NAME).read_text())
        cfg = from_dict(FactoryConfig, {**run["config"], **(config_overrides or {})})
        cfg.limit = (config_overrides or {}).get("limit")  # the full plan unless asked for a subset
        self.world = load_world(self.root)
        plan = factory.make_plan(cfg, self.world)
        groups = set(schema.selection_groups(selection))
        self.indices = [i for u in plan.units if u.group in groups for i in u.indices]
        self.composer = factory.Composer(cfg, self.world, plan)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def load_numpy(self, i: int) -> NumpySample:
        s = self.composer.sample(self.indices[i])
        bg = self.world.backgrounds[self.world.bg_ids.index(s.meta["bg_id"])]
        return {
            schema.KEY: s.stem,
            schema.BACKGROUND: bg.rgb,
            schema.FOCAL: focal_from_intrinsics(bg.intrinsics[0], *bg.rgb.shape[:2])
            if bg.intrinsics
            else 0.0,
            schema.COMPOSITE: s.composed.composite,
            schema.MASK: s.composed.mask,
            schema.DEPTH: s.composed.depth,
            "meta": s.meta,
        }

    def __getitem__(self, i: int) -> dict:
        s = self.load_numpy(i)
        return to_tensors(self.transform(s) if self.transform else s)


def open_dataset(root: str | Path, selection: str = "all", **kwargs) -> Dataset:
    """The right reader for ``root``: shards, or the folder layout (fgdepth's or anyone's)."""
    root = Path(root)
    if (root / schema.MANIFEST_NAME).is_file() and read_manifest(root)["format"] == "webdataset":
        return ShardDataset(root, selection, **kwargs)
    return FolderDataset(root, selection, **kwargs)


def collate(samples: list[dict] | dict) -> dict:
    """Stack tensors; keep keys as a list of strings. A batch a dataset fetched whole (``__getitems__``) passes."""
    if isinstance(samples, dict):
        return samples
    out = {k: torch.stack([s[k] for s in samples]) for k in schema.BATCH_KEYS}
    out[schema.KEY] = [s[schema.KEY] for s in samples]
    return out


def random_samples(root: str | Path, n: int, selection: str = "all", seed: int = 0) -> list[NumpySample]:
    """``n`` seeded random samples of a dataset as numpy dicts (for pictures)."""
    ds = open_dataset(root, selection)
    rng = random.Random(seed)
    if isinstance(ds, FolderDataset):
        picks = sorted(rng.sample(range(len(ds)), min(n, len(ds))))
        return [ds.load_numpy(i) for i in picks]
    shards = list(ds.shards)
    rng.shuffle(shards)
    backgrounds = _BackgroundCache(ds.root)
    out: list[NumpySample] = []
    left: list[tuple[Path, str]] = []  # (shard, key) of the entries not taken, should the shards run short
    for shard in shards:
        entries = list(iter_tar(shard))
        take = rng.sample(entries, min(max(1, n // max(len(shards), 1) + 1), len(entries), n - len(out)))
        out += [decode_shard_sample(files, key, backgrounds, ds.scale, shard) for key, files in take]
        if len(out) >= n:
            return out
        taken = {key for key, _ in take}
        left += [(shard, key) for key, _ in entries if key not in taken]
    more = rng.sample(left, min(n - len(out), len(left)))
    for shard in dict.fromkeys(s for s, _ in more):
        keys = {key for s, key in more if s == shard}
        out += [
            decode_shard_sample(f, key, backgrounds, ds.scale, shard)
            for key, f in iter_tar(shard)
            if key in keys
        ]
    return out
