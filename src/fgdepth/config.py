"""Configuration dataclasses: typed defaults, each with the reason for its value. YAML/JSON in, dict out."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise ValueError with the message of the first ``(ok, message)`` check that failed: every config's
    settings are checked this way when it is made, so a bad YAML or flag fails before any work starts."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (tuples become lists, so it round-trips through JSON/YAML)."""
    return json_safe(dataclasses.asdict(cfg))


ENGINES = ("local", "ray")  # make-dataset and label-depth: in this process, or as Ray tasks / actors


def json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` (from YAML / JSON) fits the annotation ``hint``: its outer type only (an int is a float, a
    list is a tuple; a bool is not a number), so that the field's own checks compare like with like."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:  # the type only: the field's own check names the values
        return any(isinstance(value, type(v)) for v in typing.get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    base = origin or hint
    if base is tuple:
        return isinstance(value, (tuple, list))
    return isinstance(value, base) if isinstance(base, type) else True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build ``cls`` from a dict, refusing unknown keys (a typo must not silently become a default) and values of
    the wrong type (a YAML ``batch_size: "8"`` reached the checks' comparisons: a TypeError naming no field)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; valid: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in data.items():
        if not _type_ok(v, hints[k]):
            raise ValueError(f"{k} must be {_type_name(hints[k])}, got {type(v).__name__} {v!r}")
        default = names[k].default
        kwargs[k] = tuple(v) if isinstance(v, list) and isinstance(default, tuple) else v
    return cls(**kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:  # a syntax error: the file and the line, not a traceback
            raise ValueError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


@dataclass
class FactoryConfig:
    """What ``fgdepth make-dataset`` builds. Everything here but ``workers``/``strict`` decides the bytes written."""

    # inputs: user folders, or the procedural world when bg_dir/fg_dir are not given
    bg_dir: str | None = None
    fg_dir: str | None = None
    fg_mask_dir: str | None = None  # masks for RGB foregrounds without alpha, <stem>.png
    bg_depth_dir: str | None = None  # <stem>.png uint16 mm or <stem>.npy metres, one per background
    num_bg: int = 100  # procedural world: reference scale
    num_fg: int = 100  # procedural world: people before flips
    # geometry
    size: int = 224  # reference resolution
    placements: int = 20  # per (background, foreground) pair, as in the reference
    flip: bool = True  # each person and its mirror (reference: 100 people -> 200 foregrounds)
    placement: str = "auto"  # "random" | "geometry" | "auto" (geometry for the procedural world)
    fg_height: tuple[float, float] = (0.35, 0.65)  # random placement: fraction of bg height (<=1) or pixels;
    # the reference's 110 px of 224 (0.49) sits in the middle
    # the fraction of samples whose person has a band of clothing recoloured like the room behind it
    # (fgdepth.compose.camouflage): a model must then find people by shape, not by colour difference alone.
    # Training samples only (room and person both training ones), as an augmentation, unless camouflage_held_out:
    # held-out figures stay comparable with datasets made without it; a camouflaged test set sets both
    camouflage: float = 0.0
    camouflage_held_out: bool = False
    # splits: fractions of backgrounds and of people held out (people held out with their mirror images)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # depth: "auto" = synthetic for the procedural world, maps if bg_depth_dir, teacher if teacher, else none
    depth: str = "auto"
    teacher: str | None = None  # local checkpoint directory of a depth-estimation model
    teacher_mode: str = "background-once"  # or "per-composite"
    teacher_size: int | None = None  # teacher input side (short side for Depth Anything); None = native
    # (518 Depth Anything, 384 DPT); 224 runs ~5x faster on the 224 px reference images
    # output
    format: str = "webdataset"  # or "folders" (the reference layout)
    shard_size: int = 1000  # samples per shard (~20 MB at 224 px)
    jpeg_quality: int = 90
    limit: int | None = None  # a seeded random subset of all samples, spread over every split
    seed: int = 0
    # run-time only (not part of the dataset's identity)
    workers: int = 2
    engine: str = "local"  # "local" (processes on this machine) | "ray" (tasks on a Ray cluster): same bytes
    ray_address: str | None = None  # None: start a local Ray instance with `workers` CPUs
    strict: bool = False  # abort on the first unreadable input instead of skipping it
    teacher_batch: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return self.bg_dir is None and self.fg_dir is None

    def resolved_placement(self) -> str:
        if self.placement == "auto":
            return "geometry" if self.synthetic else "random"
        return self.placement

    def resolved_depth(self) -> str:
        if self.depth != "auto":
            return self.depth
        if self.synthetic:
            return "synthetic"
        if self.bg_depth_dir:
            return "maps"
        if self.teacher:
            return "teacher"
        return "none"

    def identity(self) -> dict[str, Any]:
        """The settings that decide the output; a rerun must match them to resume."""
        d = to_dict(self)
        for k in ("workers", "strict", "teacher_batch", "extra", "engine", "ray_address"):
            d.pop(k)
        if not self.camouflage:  # datasets made before the setting existed resume as they were
            d.pop("camouflage")
            d.pop("camouflage_held_out")
        d["placement"] = self.resolved_placement()
        d["depth"] = self.resolved_depth()
        return d

    def validate(self) -> None:
        if (self.bg_dir is None) != (self.fg_dir is None):
            raise ValueError("give both --bg-dir and --fg-dir, or neither (the procedural world)")
        checks = [
            (self.size >= 16, f"--size must be >= 16, got {self.size}"),
            (self.placements >= 1, f"--placements must be >= 1, got {self.placements}"),
            (self.placement in ("auto", "random", "geometry"), f"unknown --placement {self.placement!r}"),
            (self.format in ("webdataset", "folders"), f"unknown --format {self.format!r}"),
            (
                self.depth in ("auto", "none", "maps", "synthetic", "teacher"),
                f"unknown --depth {self.depth!r}",
            ),
            (
                self.teacher_mode in ("background-once", "per-composite"),
                f"unknown --teacher-mode {self.teacher_mode!r}",
            ),
            (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1, "split fractions must be in [0, 1)"),
            (
                self.val_fraction + self.test_fraction < 1,
                "val + test fractions must leave some training data",
            ),
            (self.shard_size >= 1, "--shard-size must be >= 1"),
            (1 <= self.jpeg_quality <= 100, "--jpeg-quality must be in [1, 100]"),
            (self.limit is None or self.limit >= 1, "--limit must be >= 1"),
            (0 <= self.camouflage <= 1, f"--camouflage must be in [0, 1], got {self.camouflage}"),
            (
                0 < self.fg_height[0] <= self.fg_height[1],
                f"--fg-height must be LO:HI with 0 < LO <= HI, got {self.fg_height[0]}:{self.fg_height[1]}",
            ),
            (self.workers >= 1, "--workers must be >= 1"),
            (self.engine in ENGINES, f"unknown --engine {self.engine!r}; valid: {', '.join(ENGINES)}"),
            (self.teacher_batch >= 1, "--teacher-batch must be >= 1"),
            (self.teacher_size is None or self.teacher_size >= 1, "--teacher-size must be >= 1"),
            (self.num_bg >= 1 and self.num_fg >= 1, "--num-bg and --num-fg must be >= 1"),
        ]
        require(checks)
        if self.resolved_placement() == "geometry" and not self.synthetic:
            raise ValueError("--placement geometry needs camera geometry and 3D people: the procedural world")
        if self.resolved_depth() == "synthetic" and not self.synthetic:
            raise ValueError("--depth synthetic is only for the procedural world")
        if self.resolved_depth() == "maps" and not self.bg_depth_dir:
            raise ValueError("--depth maps needs --bg-depth-dir")
        if self.resolved_depth() == "maps" and self.synthetic:
            raise ValueError(
                "--depth maps (--bg-depth-dir) is for your own backgrounds, not the procedural world"
            )
        if self.depth == "auto" and self.bg_depth_dir and self.teacher:
            # auto took the maps and ignored the teacher without a word
            raise ValueError(
                "both --bg-depth-dir and --teacher: say which depth to use, --depth maps or --depth teacher"
            )
        if self.resolved_depth() == "teacher" and not self.teacher:
            raise ValueError("--depth teacher needs --teacher PATH (a local checkpoint directory)")
        if self.resolved_depth() == "teacher" and self.resolved_placement() == "geometry":
            # geometry placement sizes and hides people by the backgrounds' depth in metres; a teacher's labels
            # replace it before placement (relative disparity: people several times the image's height)
            raise ValueError(
                "--depth teacher with --placement geometry: people are placed by the procedural world's exact "
                "depth, which the teacher's labels would replace; use --placement random, or keep the world's depth"
            )
