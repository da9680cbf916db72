"""The stored world of a dataset: its backgrounds and people, written once and read back by every consumer.

The factory composes from the world *as stored* (lossless PNG images, depth quantised as written), so the on-the-fly
dataset, which reads the same files, reproduces the factory's pixels exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fgdepth.data import codec, schema
from fgdepth.scene import Background, Foreground


def make_ids(prefix: str, n: int) -> list[str]:
    width = max(3, len(str(max(n - 1, 0))))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


@dataclass
class World:
    """Backgrounds and people (unflipped), with ids, source names and splits."""

    backgrounds: list[Background]
    people: list[Foreground]
    bg_ids: list[str]
    person_ids: list[str]
    bg_names: list[str]
    person_names: list[str]
    bg_splits: list[str]
    person_splits: list[str]
    depth_kind: str | None = None  # "metric" | "relative" | None (no depth)
    depth_scale: float = schema.DEPTH_MM_PER_M  # uint16 value = depth * scale
    teacher: dict | None = None  # the depth teacher that labelled the backgrounds (labeling.teacher_record)
    skipped: list[dict] = field(default_factory=list)
    _flipped: dict[int, Foreground] = field(default_factory=dict, repr=False)

    def person(self, index: int, flip: bool) -> Foreground:
        if not flip:
            return self.people[index]
        if index not in self._flipped:
            self._flipped[index] = self.people[index].flipped()
        return self._flipped[index]

    def sources_record(self) -> dict:
        return {
            "backgrounds": [
                {"id": i, "name": n, "split": s}
                for i, n, s in zip(self.bg_ids, self.bg_names, self.bg_splits)
            ],
            "people": [
                {"id": i, "name": n, "split": s}
                for i, n, s in zip(self.person_ids, self.person_names, self.person_splits)
            ],
            "depth_kind": self.depth_kind,
            "depth_scale": self.depth_scale,
            "teacher": self.teacher,
            "skipped": self.skipped,
        }


def quantise_background(bg: Background, depth_scale: float) -> Background:
    """The background as it will read back from disk (depth rounded to the stored uint16 step)."""
    depth = (
        None
        if bg.depth is None
        else codec.uint16_to_depth(codec.depth_to_uint16(bg.depth, depth_scale), depth_scale)
    )
    return Background(bg.rgb, depth, bg.intrinsics, bg.floor_plane, bg.floor_mask)


def store_world(root: Path, world: World) -> None:
    """Write every background and person once; ``sources.json`` last, as the completion mark."""
    for sub in (schema.BG_DIR, schema.FG_DIR, schema.FG_MASK_DIR, schema.FG_META_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for bg_id, name, bg in zip(world.bg_ids, world.bg_names, world.backgrounds):
        codec.atomic_write_bytes(root / schema.BG_DIR / f"{bg_id}.png", codec.encode_png_rgb(bg.rgb))
        if bg.depth is not None:
            (root / schema.BG_DEPTH_DIR).mkdir(exist_ok=True)
            data = codec.encode_depth(bg.depth, world.depth_scale)
            codec.atomic_write_bytes(root / schema.BG_DEPTH_DIR / f"{bg_id}.png", data)
        if bg.floor_mask is not None:
            (root / schema.BG_FLOOR_DIR).mkdir(exist_ok=True)
            codec.atomic_write_bytes(
                root / schema.BG_FLOOR_DIR / f"{bg_id}.png", codec.encode_mask(bg.floor_mask)
            )
        if bg.intrinsics is not None or bg.floor_plane is not None:
            (root / schema.BG_META_DIR).mkdir(exist_ok=True)
            meta = {"source": name, "intrinsics": bg.intrinsics, "floor_plane": bg.floor_plane}
            codec.atomic_write_json(root / schema.BG_META_DIR / f"{bg_id}.json", _floats(meta))
    for fg_id, name, fg in zip(world.person_ids, world.person_names, world.people):
        codec.atomic_write_bytes(root / schema.FG_DIR / f"{fg_id}.png", codec.encode_png_rgb(fg.rgba))
        codec.atomic_write_bytes(
            root / schema.FG_MASK_DIR / f"{fg_id}.png", codec.encode_mask(fg.rgba[..., 3] > 127)
        )
        meta = {"source": name, "anchor": fg.anchor, "height_m": fg.height_m, "px_per_m": fg.px_per_m}
        codec.atomic_write_json(root / schema.FG_META_DIR / f"{fg_id}.json", _floats(meta))
        if fg.depth_offset is not None:
            (root / schema.FG_DEPTH_DIR).mkdir(exist_ok=True)
            tmp = root / schema.FG_DEPTH_DIR / f".{fg_id}.npy.tmp"
            with open(tmp, "wb") as f:
                np.save(f, fg.depth_offset.astype(np.float32), allow_pickle=False)
            tmp.replace(root / schema.FG_DEPTH_DIR / f"{fg_id}.npy")
    codec.atomic_write_json(root / schema.SOURCES_NAME, world.sources_record())


def _floats(obj):
    if isinstance(obj, dict):
        return {k: _floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_floats(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    return obj


def load_world(root: str | Path) -> World:
    """Read the stored world back (what the factory composes from)."""
    root = Path(root)
    src_path = root / schema.SOURCES_NAME
    if not src_path.is_file():
        raise FileNotFoundError(f"{src_path}: missing; {root} is not a complete fgdepth dataset world")
    src = json.loads(src_path.read_text())
    scale = float(src.get("depth_scale") or schema.DEPTH_MM_PER_M)
    backgrounds = [_load_background(root, b["id"], scale) for b in src["backgrounds"]]
    people = [_load_person(root, p["id"]) for p in src["people"]]
    return World(
        backgrounds=backgrounds,
        people=people,
        bg_ids=[b["id"] for b in src["backgrounds"]],
        person_ids=[p["id"] for p in src["people"]],
        bg_names=[b["name"] for b in src["backgrounds"]],
        person_names=[p["name"] for p in src["people"]],
        bg_splits=[b["split"] for b in src["backgrounds"]],
        person_splits=[p["split"] for p in src["people"]],
        depth_kind=src.get("depth_kind"),
        depth_scale=scale,
        teacher=src.get("teacher"),
        skipped=src.get("skipped", []),
    )


def read_rgb(path: Path) -> np.ndarray:
    return codec.decode_image(codec.read_bytes(path), str(path))


def _load_background(root: Path, bg_id: str, scale: float) -> Background:
    rgb = read_rgb(root / schema.BG_DIR / f"{bg_id}.png")
    depth_path = root / schema.BG_DEPTH_DIR / f"{bg_id}.png"
    depth = (
        codec.decode_depth(codec.read_bytes(depth_path), scale, str(depth_path))
        if depth_path.is_file()
        else None
    )
    floor_path = root / schema.BG_FLOOR_DIR / f"{bg_id}.png"
    floor = codec.decode_mask(codec.read_bytes(floor_path), str(floor_path)) if floor_path.is_file() else None
    meta_path = root / schema.BG_META_DIR / f"{bg_id}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    intr, plane = meta.get("intrinsics"), meta.get("floor_plane")
    return Background(rgb, depth, tuple(intr) if intr else None, tuple(plane) if plane else None, floor)


def _load_person(root: Path, fg_id: str) -> Foreground:
    path = root / schema.FG_DIR / f"{fg_id}.png"
    bgra = codec.imdecode(codec.read_bytes(path), cv2.IMREAD_UNCHANGED)
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
        raise codec.DecodeError(f"{path}: expected an RGBA PNG")
    meta = json.loads((root / schema.FG_META_DIR / f"{fg_id}.json").read_text())
    depth_path = root / schema.FG_DEPTH_DIR / f"{fg_id}.npy"
    offset = np.load(depth_path, allow_pickle=False) if depth_path.is_file() else None
    return Foreground(
        rgba=cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA),
        anchor=tuple(meta["anchor"]),
        depth_offset=offset,
        height_m=meta.get("height_m"),
        px_per_m=meta.get("px_per_m"),
    )
