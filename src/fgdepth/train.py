"""Training with Lightning: a DataModule over shards / folders / on-the-fly composition / an in-memory cache,
a LightningModule that owns loss, metrics, augmentation and optimiser, and ``fit(cfg) -> metrics``.

The plain ``DualUNet`` lives apart (``fgdepth.model``); checkpoints carry its config, so ``fgdepth.load_model``
rebuilds it from a ``.ckpt`` alone.
"""

from __future__ import annotations

import copy
import csv
import inspect
import json
import logging
import math
import os
import re
import shutil
import time
import typing
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from fgdepth.config import from_dict, require, to_dict
from fgdepth.data import codec, schema
from fgdepth.data.augment import DEPTH_VIEW_DEFAULTS, AugmentConfig, BatchAugment, resize_batch
from fgdepth.data.codec import atomic_write_bytes
from fgdepth.data.reader import (
    FolderDataset,
    OnTheFlyDataset,
    ShardDataset,
    collate,
    depth_scale_of,
    read_manifest,
    require_folder,
)
from fgdepth.losses import MultiTaskLoss, Weighting, resize_mask
from fgdepth.model.checkpoint import EMA_PREFIX
from fgdepth.model.dual_unet import join_depth_layers
from fgdepth.predict import run_input_size

Source = Literal["auto", "memory", "shards", "folders", "on-the-fly"]
_SOURCES = typing.get_args(Source)
_WEIGHTINGS = typing.get_args(Weighting)  # MultiTaskLoss's, checked here before any work
_COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """``fgdepth train``: defaults train the ``tiny`` preset on 2 CPU cores."""

    data: str = ""
    out: str = "runs/fgdepth"
    model: str = "tiny"  # preset name (fgdepth.model.registry)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    source: Source = "auto"
    size: int = 96  # training resolution (square); the reference used 192
    # None: each training image is the whole sample resized to ``size`` (with a zoom of at most 1.3x), and so are
    # validation, test and prediction inputs. A number: samples are seen at this size, training takes ``size``
    # crops of them at that scale (jittered), and validation, test and prediction run on the whole image at this
    # size: fine masks at the cost of a bigger input at inference.
    infer_size: int | None = None
    cache_size: int = 128  # memory source: samples are decoded once and stored at this size (or infer_size)
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_epochs: int = 1000
    max_steps: int = -1
    max_minutes: float | None = 6.0  # time budget; the best checkpoint so far is kept
    val_every_steps: int = 200
    val_samples: int = 512  # validation uses at most this many held-out samples
    precision: str = "auto"  # auto: bf16-mixed where the device computes bf16 natively, else 32 / 16-mixed
    channels_last: bool = True
    grad_clip: float = 1.0
    # > 0: validate, test and export an exponential moving average of the weights (decay per step, warmed up as
    # min(decay, (1 + step) / (10 + step))); checkpoints hold both, --resume continues both
    ema_decay: float = 0.0
    weighting: Weighting = "fixed"
    depth_weight: float = 1.0
    # extra fgdepth.losses.MultiTaskLoss arguments (term weights), e.g. {"silog_weight": 1.0, "log_weight": 0.0}
    loss_config: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    augment_config: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0
    devices: int | str = 1
    accelerator: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    seed: int = 0
    resume: str | None = None  # a .ckpt, or "last" for <out>/checkpoints/last.ckpt
    # An out folder that already holds a run is refused unless resuming (a forgotten --resume would replace its
    # checkpoints and Lightning would delete its logs); True starts again there, removing that run's outputs.
    overwrite: bool = False
    train_selection: str = "train"
    val_selection: str = "val"
    test_selection: str = "test"
    log_every_steps: int = 20
    # a torch.compile mode for the training step's two networks and loss, e.g. "reduce-overhead" (CUDA graphs) on
    # a GPU; None: eager. Compiling takes a minute or two of the time budget; on 2 CPU cores it gains ~6 %
    compile: str | None = None

    def __post_init__(self) -> None:
        require(
            [
                (self.size >= 8, f"size must be >= 8 pixels, got {self.size}"),
                (
                    self.infer_size is None or self.infer_size >= self.size,
                    f"infer_size ({self.infer_size}) must be >= size ({self.size}): training takes size crops "
                    "of the samples seen at infer_size",
                ),
                (self.cache_size >= 8, f"cache_size must be >= 8 pixels, got {self.cache_size}"),
                (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
                (self.lr > 0, f"lr must be > 0, got {self.lr}"),
                (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
                (
                    self.max_minutes is None or self.max_minutes > 0,
                    f"max_minutes must be > 0 (or None: no time budget), got {self.max_minutes}",
                ),
                (self.max_epochs >= 1, f"max_epochs must be >= 1, got {self.max_epochs}"),
                (self.val_every_steps >= 1, f"val_every_steps must be >= 1, got {self.val_every_steps}"),
                (self.val_samples >= 1, f"val_samples must be >= 1, got {self.val_samples}"),
                (self.log_every_steps >= 1, f"log_every_steps must be >= 1, got {self.log_every_steps}"),
                (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = none), got {self.grad_clip}"),
                (self.depth_weight >= 0, f"depth_weight must be >= 0, got {self.depth_weight}"),
                (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
                (
                    0.0 <= self.ema_decay < 1.0,
                    f"ema_decay must be in [0, 1) (0 = no average), got {self.ema_decay}",
                ),
                (
                    self.source in _SOURCES,
                    f"unknown source {self.source!r}; valid: {', '.join(_SOURCES)}",
                ),
                (
                    self.compile is None or self.compile in _COMPILE_MODES,
                    f"unknown compile mode {self.compile!r}; valid: {', '.join(_COMPILE_MODES)}",
                ),
                (
                    self.weighting in _WEIGHTINGS,
                    f"unknown weighting {self.weighting!r}; valid: {', '.join(_WEIGHTINGS)}",
                ),
                (
                    (isinstance(self.devices, int) and (self.devices >= 1 or self.devices == -1))
                    or (
                        isinstance(self.devices, str)
                        and bool(re.fullmatch(r"auto|-1|\d+|(\d+,)+\d*", self.devices))
                    ),
                    "devices must be a number (-1: all), device indices such as '0,1' or 'auto', got "
                    f"{self.devices!r}",
                ),
            ]
        )
        # the nested settings too: they were first used once the data was loaded (and an --overwrite had removed
        # the old run), an unknown key as a TypeError
        augment_config(
            {"size": self.size, "infer_size": self.infer_size, "augment_config": self.augment_config}
        )
        unknown = sorted(set(self.loss_config) - set(inspect.signature(MultiTaskLoss).parameters))
        require([(not unknown, f"unknown loss_config field(s): {', '.join(unknown)}")])


# ----------------------------------------------------------------------------------------------- data
def square_sample(sample: dict, size: int) -> dict:
    """A numpy sample squeezed to (size, size): images by area (down) or linear (up), mask and depth by nearest
    (no mixing of labels), a missing depth as zeros (unknown), the focal length re-referred to the new width."""
    import cv2

    h, w = sample[schema.MASK].shape
    shape = (size, size)
    interp = cv2.INTER_AREA if h > size else cv2.INTER_LINEAR
    depth = sample.get(schema.DEPTH)
    return {
        **sample,
        schema.BACKGROUND: cv2.resize(sample[schema.BACKGROUND], shape, interpolation=interp),
        schema.COMPOSITE: cv2.resize(sample[schema.COMPOSITE], shape, interpolation=interp),
        schema.MASK: cv2.resize(sample[schema.MASK].astype(np.uint8), shape, interpolation=cv2.INTER_NEAREST),
        schema.DEPTH: (
            np.zeros(shape, np.float32)
            if depth is None
            else cv2.resize(depth, shape, interpolation=cv2.INTER_NEAREST)
        ),
        # focal is relative to the short side; squeezing to a square makes the width the reference
        schema.FOCAL: float(sample.get(schema.FOCAL) or 0.0) * min(h, w) / w,
    }


class MemoryDataset(Dataset):
    """A selection decoded once and held as uint8 / float32 tensors at ``cache_size``: on 2 CPU cores decoding
    JPEG/PNG every step costs more than the tiny model's training step."""

    def __init__(self, source: ShardDataset | FolderDataset, cache_size: int):
        samples = (
            source.iter_numpy()
            if isinstance(source, ShardDataset)
            else map(source.load_numpy, range(len(source)))
        )
        bgs, comps, masks, depths, focals, keys = [], [], [], [], [], []
        for s in (square_sample(sample, cache_size) for sample in samples):
            bgs.append(s[schema.BACKGROUND])
            comps.append(s[schema.COMPOSITE])
            masks.append(s[schema.MASK])
            depths.append(s[schema.DEPTH])
            focals.append(s[schema.FOCAL])
            keys.append(s[schema.KEY])
        if not keys:
            raise ValueError("no samples to cache")
        self.background = torch.from_numpy(np.stack(bgs)).permute(0, 3, 1, 2).contiguous()
        self.composite = torch.from_numpy(np.stack(comps)).permute(0, 3, 1, 2).contiguous()
        self.mask = torch.from_numpy(np.stack(masks))[:, None]
        self.depth = torch.from_numpy(np.stack(depths))[:, None]
        self.focal = torch.tensor(focals, dtype=torch.float32)
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def _take(self, index: int | torch.Tensor) -> dict:
        """The arrays at ``index`` (an int: one sample; a tensor of indices: a batch) as stored: uint8 images and
        mask, no validity (depth > 0); :func:`images_to_float` completes them."""
        return {
            schema.BACKGROUND: self.background[index],
            schema.COMPOSITE: self.composite[index],
            schema.MASK: self.mask[index],
            schema.DEPTH: self.depth[index],
            schema.FOCAL: self.focal[index],
        }

    def __getitem__(self, i: int) -> dict:
        return images_to_float({**self._take(i), schema.KEY: self.keys[i]})

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch by one gather per array (the DataLoader's batched fetch; ``collate`` passes it on), with
        the images and mask left uint8 and no validity: the training module completes the batch on its device
        (:func:`images_to_float`). Per-sample fetches and stacking took 67-175 ms per 128 pairs at 160 px on 2 cores,
        this takes 8 ms, and a GPU receives 0.28 MB per pair at 160 px (0.46 with a float32 mask and validity, 1.0
        all float32)."""
        batch = self._take(torch.as_tensor(indices, dtype=torch.long))
        return {**batch, schema.KEY: [self.keys[i] for i in indices]}


def images_to_float(batch: dict) -> dict:
    """The batch (or sample) as the schema has it, from a :class:`MemoryDataset`'s compact one: uint8 images as
    float32 in [0, 1], a uint8 mask as float32, and the depth's validity (depth > 0) where the batch has none; a
    batch already so (the other sources) as it is."""
    out = dict(batch)
    for key in (schema.BACKGROUND, schema.COMPOSITE):
        if out[key].dtype == torch.uint8:
            out[key] = out[key].float().div_(255)
    if out.get(schema.MASK) is not None and out[schema.MASK].dtype == torch.uint8:
        out[schema.MASK] = out[schema.MASK].float()
    if schema.DEPTH_VALID not in out and out.get(schema.DEPTH) is not None:
        out[schema.DEPTH_VALID] = (out[schema.DEPTH] > 0).float()
    return out


def _source_dataset(cfg: TrainConfig, selection: str, train: bool) -> Dataset:
    root = Path(cfg.data)
    manifest = read_manifest(root) if (root / schema.MANIFEST_NAME).is_file() else None
    source = cfg.source
    if source == "auto":
        count = (
            manifest["counts"]["samples"]
            if manifest is not None
            else len(list((root / schema.COMP_DIR).glob("*")))  # a foreign folder: its composites
        )
        source = (
            "memory"
            if count <= 60_000
            else ("shards" if manifest and manifest["format"] == "webdataset" else "folders")
        )
    if source == "on-the-fly":
        return OnTheFlyDataset(root, selection)
    if manifest is not None and manifest["format"] == "webdataset":
        # the memory cache holds the whole selection on every rank (a DistributedSampler splits it); streamed
        # training shards are split by rank and worker inside ShardDataset; every rank evaluates the whole
        # (small) val/test selection, so the ranks' metric all-reduces always match
        whole = {"rank": 0, "world_size": 1} if (source == "memory" or not train) else {}
        streamed = {"shuffle": train, "equal_split": train} if source == "shards" else {}
        base: Dataset = ShardDataset(root, selection, seed=cfg.seed, **whole, **streamed)
    elif manifest is None:  # anyone's folder: its samples may differ in size; a batch needs one
        size = cfg.infer_size or cfg.cache_size
        base = FolderDataset(
            root, selection, transform=None if source == "memory" else partial(square_sample, size=size)
        )
    else:
        base = FolderDataset(root, selection)
    if source == "memory" and len(base):  # an empty selection: FgDataModule.dataset's error names it
        return MemoryDataset(base, cfg.infer_size or cfg.cache_size)
    return base


class FgDataModule:
    """Train / val / test datasets and loaders (a plain class: Lightning accepts any object with *_dataloader)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        root = require_folder(cfg.data)
        self.manifest = read_manifest(root) if (root / schema.MANIFEST_NAME).is_file() else None
        self._sets: dict[str, Dataset] = {}

    @property
    def depth_kind(self) -> str:
        depth = (self.manifest or {}).get("depth")
        return depth["kind"] if depth else "none"

    def dataset(self, stage: str) -> Dataset:
        if stage not in self._sets:
            sel = {
                "train": self.cfg.train_selection,
                "val": self.cfg.val_selection,
                "test": self.cfg.test_selection,
            }
            ds = _source_dataset(self.cfg, sel[stage], train=stage == "train")
            if stage == "val" and len(ds) > self.cfg.val_samples and not isinstance(ds, IterableDataset):
                idx = np.random.default_rng(self.cfg.seed).choice(
                    len(ds), self.cfg.val_samples, replace=False
                )
                ds = torch.utils.data.Subset(ds, sorted(idx.tolist()))
            if len(ds) == 0:
                hint = (
                    ""
                    if self.manifest
                    else " (a folder without a manifest is split by room, 10 % each for val and test: it needs "
                    "three rooms or more; fgdepth.data.reader.foreign_splits)"
                )
                raise ValueError(
                    f"{self.cfg.data}: the {stage} selection {sel[stage]!r} has no samples{hint}"
                )
            self._sets[stage] = ds
        return self._sets[stage]

    def _loader(self, stage: str, sampler: Sampler | None = None) -> DataLoader:
        ds = self.dataset(stage)
        iterable = isinstance(ds, IterableDataset)
        return DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            shuffle=stage == "train" and not iterable and sampler is None,
            sampler=sampler,
            drop_last=stage == "train",
            num_workers=self.cfg.num_workers,
            collate_fn=collate,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self, sampler: Sampler | None = None) -> DataLoader:
        """Shuffled (a RandomSampler, which Lightning turns into a DistributedSampler under DDP), or in the order
        of ``sampler`` (a map-style dataset's)."""
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class EpochSampler(Sampler[int]):
    """Each epoch's order from (seed, epoch), and epoch ``start_epoch`` begun at sample ``start``: a run resumed
    mid-epoch takes its epoch up where it stopped, in the order an uninterrupted run had. A RandomSampler, reseeded
    with the run, began the first epoch's order again: its first batches trained twice, its last ones never, which
    for a run of about one epoch (the demo's) left a third of the data unseen after a resume at two thirds.

    Lightning calls ``set_epoch`` with its own count, which a stop at ``max_steps`` mid-epoch advances by one (its
    epoch ends there); ``epoch_offset`` is that count minus the epoch by steps, so the order follows the steps.
    ``len`` stays the whole epoch's: Lightning counts the epoch's batches by it and resumes its count."""

    def __init__(
        self, num_samples: int, seed: int, start_epoch: int = 0, start: int = 0, epoch_offset: int = 0
    ) -> None:
        self.num_samples, self.seed = num_samples, seed
        self.epoch = self.start_epoch = start_epoch
        self.start, self.epoch_offset = start, epoch_offset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch - self.epoch_offset

    def order(self, epoch: int) -> list[int]:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.order(self.epoch)
        return iter(order[self.start :] if self.epoch == self.start_epoch else order)

    def __len__(self) -> int:
        return self.num_samples


# ---------------------------------------------------------------------------------------------- module
class _DropLightningTips(logging.Filter):
    """Drops Lightning's "💡 Tip" lines (an advertisement for a cloud logger) from every run's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def quiet_lightning() -> None:
    """Keep Lightning's noise out of the output: its tips, the deprecation warning that its own pytree helper
    raises under recent torch (Lightning's code, nothing a user can act on), and what it says on every --resume:
    that the run's folders are not empty (fit refuses a new run there; a resumed run keeps its curves, see
    set_aside_csv_log) and that its data loader is not resumable (a single process's EpochSampler takes the epoch
    up where it stopped; under DDP that epoch's order starts again: some samples twice, others skipped once).
    Idempotent."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
    for message in (
        r"Experiment logs directory .* exists and is not empty",
        r"Checkpoint directory .* exists and is not empty",
        r"You're resuming from a checkpoint that ended before the epoch ended",
    ):
        warnings.filterwarnings("ignore", message=message)


def _lightning():
    import lightning.pytorch as pl

    quiet_lightning()
    return pl


def make_module(cfg: TrainConfig, model_config: dict, depth_kind: str):
    """The LightningModule (built lazily so importing fgdepth.train does not import Lightning)."""
    pl = _lightning()
    from fgdepth import metrics as M
    from fgdepth.losses import MultiTaskLoss
    from fgdepth.model.dual_unet import DualUNet, DualUNetConfig

    class FgDepthModule(pl.LightningModule):
        def __init__(self, model_config: dict, train_config: dict, depth_kind: str):
            super().__init__()
            self.save_hyperparameters()
            self.model = DualUNet(DualUNetConfig.from_dict(model_config))
            self.tc = train_config
            kind = "relative" if depth_kind == "relative" else "metric"
            self.loss_fn = MultiTaskLoss(
                weighting=train_config["weighting"],
                depth_kind=kind,
                depth_weight=train_config["depth_weight"] if depth_kind != "none" else 0.0,
                **train_config.get("loss_config", {}),
            )
            self.depth_kind = depth_kind
            self.augment = BatchAugment(augment_config(train_config))
            self.depth_view_augment = (
                BatchAugment(depth_view_augment_config(train_config, self.model.config.depth_scale))
                if self.model.depth_net is not None
                else None
            )
            self._val = M.MetricAccumulator()
            # the training step's compiled networks and loss (the same modules and weights; not submodules, so
            # checkpoints are unchanged)
            self._train_parts = (
                compiled_training_parts(self.model, self.loss_fn, train_config["compile"])
                if train_config.get("compile")
                else (self.model, self.loss_fn)
            )
            # the average is a submodule, so checkpoints carry it (as ema_model.*) and load_model prefers it
            self.ema_model = None
            if train_config.get("ema_decay", 0.0) > 0:
                self.ema_model = copy.deepcopy(self.model).requires_grad_(False)

        @property
        def eval_model(self) -> torch.nn.Module:
            """The network that validation, tests and exports see: the average when there is one."""
            return self.model if self.ema_model is None else self.ema_model

        def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
            # before clipping (Lightning clips after this hook): how often grad_clip acts, and on which network
            if self.global_step % self.tc["log_every_steps"]:
                return
            if self.model.depth_net is None:
                norms = {"grad_norm": gradient_norm(self.model.parameters())}
            else:  # the whole model's norm from its two networks' (each gradient read once)
                branch = {id(p) for p in self.model.depth_net.parameters()}
                depth = gradient_norm(self.model.depth_net.parameters())
                main = gradient_norm(p for p in self.model.parameters() if id(p) not in branch)
                norms = {"grad_norm": math.hypot(main, depth), "grad_norm_depth": depth}
            for k, v in norms.items():
                self.log(f"train/{k}", v)

        def on_train_batch_end(self, outputs: Any, batch: dict, batch_idx: int) -> None:
            if self.ema_model is not None:  # after the optimiser's step
                update_ema(self.ema_model, self.model, self.tc["ema_decay"], self.global_step)

        def on_load_checkpoint(self, checkpoint: dict) -> None:
            # resuming with the average switched on or off: start it from the weights, or drop it
            state = checkpoint["state_dict"]
            has_ema = any(k.startswith(EMA_PREFIX) for k in state)
            if self.ema_model is not None and not has_ema:
                state.update(
                    {
                        EMA_PREFIX + k[len("model.") :]: v
                        for k, v in list(state.items())
                        if k.startswith("model.")
                    }
                )
            elif self.ema_model is None and has_ema:
                for k in [k for k in state if k.startswith(EMA_PREFIX)]:
                    del state[k]

        def on_train_start(self) -> None:
            # resuming with a larger step budget: the restored one-cycle schedule stretches to the new end
            sched = self.lr_schedulers()
            if sched is not None and hasattr(sched, "total_steps"):
                sched.total_steps = max(sched.total_steps, self._total_steps())
            # which shards this rank streams: a record for users, and the proof that DDP ranks differ
            ds = self.trainer.train_dataloader.dataset
            if isinstance(ds, ShardDataset):
                shards = [p.name for p in ds.shards_for_this_process()]
                path = Path(self.trainer.default_root_dir) / f"shards_rank{self.global_rank}.json"
                path.write_text(json.dumps({"rank": self.global_rank, "shards": shards}, indent=1))

        def forward(
            self, background: torch.Tensor, composite: torch.Tensor, focal: torch.Tensor | None = None
        ) -> dict:
            return self.model(background, composite, focal=focal)

        def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
            return self.prepare_batch(batch, self.trainer.training, self.global_step)

        def prepare_batch(self, batch: dict, training: bool, step: int) -> dict:
            """A transferred batch as the step takes it: float images; in training (``training``) augmented crops
            and the depth branch's view (under ``schema.DEPTH_VIEW``), drawn from (seed, ``step``, rank); else
            resized; channels_last images where the run asks for them."""
            batch = images_to_float(batch)
            size = run_input_size(self.tc)
            view = None
            if training and self.tc["augment"]:
                g = torch.Generator().manual_seed(self.tc["seed"] * 1_000_003 + step * 7 + self.global_rank)
                if self.depth_view_augment is not None:
                    view = self.depth_view_augment(batch, g)
                batch = self.augment(batch, g)
            else:
                if training and self.depth_view_augment is not None:
                    view = resize_batch(batch, self.depth_view_augment.cfg.size)
                batch = resize_batch(batch, size)
            if self.tc["channels_last"]:
                for b in (batch,) if view is None else (batch, view):
                    for k in (schema.BACKGROUND, schema.COMPOSITE):
                        b[k] = b[k].contiguous(memory_format=torch.channels_last)
            if view is not None:  # training a depth branch: it learns from its own view (see model_step)
                batch[schema.DEPTH_VIEW] = view
            return batch

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            _, losses = model_step(*self._train_parts, batch, training=True)
            bs = batch[schema.COMPOSITE].shape[0]
            self.log("train/loss", losses["loss"], prog_bar=True, batch_size=bs)
            for k in schema.LOSS_KEYS:  # every term and the task weights
                if k != schema.LOSS:
                    self.log(f"train/{k}", losses[k], batch_size=bs)
            return losses["loss"]

        def _eval_step(self, batch: dict, prefix: str) -> None:
            out, losses = model_step(self.eval_model, self.loss_fn, batch)
            self.log(
                f"{prefix}/loss", losses["loss"], batch_size=batch[schema.COMPOSITE].shape[0], sync_dist=True
            )
            pred_mask, pred_depth = upsample_outputs(out, batch[schema.MASK].shape[-2:])
            align = "lstsq" if self.depth_kind == "relative" else "none"
            for i in range(pred_mask.shape[0]):
                m = M.mask_metrics(
                    pred_mask[i, 0].cpu().numpy(), batch[schema.MASK][i, 0].cpu().numpy() > 0.5
                )
                if self.depth_kind != "none" and batch[schema.DEPTH_VALID][i].sum() > 0:
                    m.update(
                        M.depth_metrics(
                            pred_depth[i, 0].float().cpu().numpy(),
                            batch[schema.DEPTH][i, 0].cpu().numpy(),
                            align=align,
                            with_ssim=False,
                        )
                    )
                self._val.update(m)

        def validation_step(self, batch: dict, batch_idx: int) -> None:
            self._eval_step(batch, "val")

        def test_step(self, batch: dict, batch_idx: int) -> None:
            self._eval_step(batch, "test")

        def _log_epoch(self, prefix: str) -> None:
            res = self._val.compute()
            self._val.reset()
            for k in ("mask_iou", "mask_f1", "depth_abs_rel", "depth_rmse", "depth_delta1"):
                if k in res and not math.isnan(res[k]):
                    self.log(f"{prefix}/{k}", float(res[k]), prog_bar=k == "mask_iou", sync_dist=True)

        def on_validation_epoch_end(self) -> None:
            self._log_epoch("val")

        def on_test_epoch_end(self) -> None:
            self._log_epoch("test")

        def _total_steps(self) -> int:
            total = self.trainer.estimated_stepping_batches
            if not math.isfinite(total) or total <= 0 or total > 10**7:
                total = 10_000
            return int(total) + 1

        def configure_optimizers(self):
            params = list(self.model.parameters()) + list(self.loss_fn.parameters())
            opt = torch.optim.AdamW(params, lr=self.tc["lr"], weight_decay=self.tc["weight_decay"])
            if self.tc.get("max_minutes") and self.tc.get("max_steps", -1) <= 0:
                # the budget's end, less a margin for the last validation
                budget_s = self.tc["max_minutes"] * 60 * (1 - _FINAL_VALIDATION_MARGIN)
                sched = TimeBudgetOneCycle(opt, max_lr=self.tc["lr"], budget_s=budget_s, pct_start=0.15)
            else:
                sched = torch.optim.lr_scheduler.OneCycleLR(
                    opt,
                    max_lr=self.tc["lr"],
                    total_steps=self._total_steps(),
                    pct_start=0.15,
                    anneal_strategy="cos",
                )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return FgDepthModule(model_config, to_dict_any(cfg), depth_kind)


def compiled_training_parts(model, loss_fn: torch.nn.Module, mode: str) -> tuple[Any, Any]:
    """(model, loss) for :func:`model_step` in training, with the DualUNet's networks (``forward_main``, and the
    depth branch's) and the loss compiled by ``torch.compile(mode=mode)``; they share ``model``'s weights.

    Static shapes: a run's crops and views keep one size. On a GPU the eager step of ``tiny`` is thousands of
    small kernels (2,600 per step of 128): "reduce-overhead" replays them as CUDA graphs (forward, loss and backward
    12-20 ms against 42-45 ms on an H200, ``benchmarks/train_step_profile.py``)."""
    from types import SimpleNamespace

    def compiled(fn):
        return torch.compile(fn, mode=mode, dynamic=False)

    branch = None
    if model.depth_net is not None:
        branch = SimpleNamespace(forward_main=compiled(model.depth_net.forward_main))
    view = SimpleNamespace(
        forward_main=compiled(model.forward_main), depth_net=branch, to_camera=model.to_camera
    )
    return view, compiled(loss_fn.forward)


def gradient_norm(parameters) -> float:
    """The L2 norm of the gradients of ``parameters`` together (those without one are skipped)."""
    return float(torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None]))


class TimeBudgetOneCycle(torch.optim.lr_scheduler.LRScheduler):
    """One-cycle learning rate (cosine warm-up to ``max_lr`` over ``pct_start``, cosine down to
    ``max_lr / div_factor / final_div_factor``) keyed on elapsed wall time, not on steps.

    With a time budget the schedule then ends when the budget does, whatever the machine's speed: a step count
    planned from a few timed steps was 15% short on an idle 2-core machine (the first steps are slow) and far off
    on a shared one. ``clock`` is injectable for tests; the elapsed time is saved with the state, so a resumed run
    continues the schedule where it stopped.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_lr: float,
        budget_s: float,
        pct_start: float = 0.15,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        clock=time.monotonic,
    ):
        self.max_lr, self.budget_s, self.pct_start = max_lr, budget_s, pct_start
        self.initial_lr = max_lr / div_factor
        self.final_lr = self.initial_lr / final_div_factor
        self.clock, self._t0, self.elapsed_before = clock, None, 0.0
        super().__init__(optimizer)

    def elapsed(self) -> float:
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        return self.elapsed_before + now - self._t0

    def lr_at(self, progress: float) -> float:
        p = min(max(progress, 0.0), 1.0)
        if p < self.pct_start:
            a, b, q = self.initial_lr, self.max_lr, p / self.pct_start
        else:
            a, b, q = self.max_lr, self.final_lr, (p - self.pct_start) / (1 - self.pct_start)
        return b + (a - b) * (1 + math.cos(math.pi * q)) / 2

    def get_lr(self) -> list[float]:
        lr = self.lr_at(self.elapsed() / self.budget_s)
        return [lr for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "clock", "_t0")}
        state["elapsed_before"] = self.elapsed()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)
        self._t0 = None


def set_aside_csv_log(log_dir: Path) -> None:
    """Keep a resumed run's earlier curves: Lightning's CSVLogger deletes an existing ``metrics.csv`` when it
    starts, so it is renamed ``metrics.part<N>.csv`` first (merged back by :func:`merge_csv_logs`)."""
    current = log_dir / "metrics.csv"
    if current.is_file():
        n = len(list(log_dir.glob("metrics.part*.csv")))
        current.rename(log_dir / f"metrics.part{n}.csv")


def merge_csv_logs(log_dir: Path) -> None:
    """``metrics.part0.csv``, ``part1``, ... and the current ``metrics.csv`` -> one ``metrics.csv`` (rows in
    order, the union of the columns), written to a temporary name and renamed; the parts are then removed."""
    parts = sorted(log_dir.glob("metrics.part*.csv"), key=lambda p: int(p.stem.rsplit("part", 1)[1]))
    if not parts:
        return
    fields: list[str] = []
    rows: list[dict] = []
    for path in [*parts, log_dir / "metrics.csv"]:
        if path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                fields += [k for k in reader.fieldnames or [] if k not in fields]
                rows += list(reader)
    tmp = log_dir / "metrics.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, log_dir / "metrics.csv")
    for path in parts:
        path.unlink()


@torch.no_grad()
def update_ema(average: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """average <- d * average + (1 - d) * model for parameters, with d = min(decay, (1 + step) / (10 + step))
    (early steps weigh more, so the average does not stay near its random start); floating-point buffers
    (BatchNorm's running statistics) are averaged alike, others (counters) copied."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(average.parameters()), [p.detach() for p in model.parameters()], 1 - d)
    for b_avg, b in zip(average.buffers(), model.buffers(), strict=True):
        if b_avg.is_floating_point():
            b_avg.lerp_(b, 1 - d)
        else:
            b_avg.copy_(b)


def model_step(model, loss_fn, batch: dict, training: bool = False) -> tuple[dict, dict]:
    """Outputs and losses of ``model`` (a DualUNet) on ``batch``.

    Whole images (validation, test) go through ``model(...)`` as users run it (the mask network on the input
    enlarged by ``mask_scale``, the branch on its view). A training batch (``training``, or one carrying
    ``schema.DEPTH_VIEW``) holds crops at the input's scale, which each network sees as they are: the main
    network on the batch's images, the depth branch on the view (whole images); a branch with layered depth has its
    layers composed by the view's true mask."""
    view = batch.get(schema.DEPTH_VIEW)
    if not training and view is None:
        out = model(batch[schema.BACKGROUND], batch[schema.COMPOSITE], focal=batch.get(schema.FOCAL))
        return out, loss_fn(out, batch)
    out = model.forward_main(batch[schema.BACKGROUND], batch[schema.COMPOSITE])
    if view is None:  # one network: both heads on the crops
        join_depth_layers(out)
        if schema.DEPTH_PRED in out:
            out[schema.DEPTH_PRED] = model.to_camera(out[schema.DEPTH_PRED], batch.get(schema.FOCAL))
        return out, loss_fn(out, batch)
    view_out = model.depth_net.forward_main(view[schema.BACKGROUND], view[schema.COMPOSITE])
    # layered depth learns from the view's true mask: each layer is taught where it is seen, and the branch's own
    # coarse mask (a helper) does not blur the people's depth edge; without one, its own mask joins them
    person = None
    if schema.DEPTH_LAYERS in view_out and schema.MASK in view:
        person = resize_mask(view[schema.MASK], tuple(view_out[schema.DEPTH_LAYERS].shape[-2:]))
    join_depth_layers(view_out, person)
    view_out[schema.DEPTH_PRED] = model.to_camera(view_out[schema.DEPTH_PRED], view.get(schema.FOCAL))
    return out, loss_fn(out, batch, depth_view=(view_out, view))


def augment_config(train_config: dict) -> AugmentConfig:
    """The augmentation of a run: ``size`` outputs; with ``infer_size``, crops at the inference scale."""
    extra = dict(train_config.get("augment_config") or {})
    if train_config.get("infer_size"):
        extra.setdefault("crop_fraction", min(1.0, train_config["size"] / train_config["infer_size"]))
    return from_dict(AugmentConfig, {**extra, "size": train_config["size"]})  # unknown keys named


def depth_view_augment_config(train_config: dict, depth_scale: float) -> AugmentConfig:
    """The augmentation of a depth branch's view: the whole image (zoom <= 1.3x, as without ``infer_size``) at
    ``depth_scale`` times the run's input size; the photometric settings of the run, the blur's and the light's
    defaults those of :data:`fgdepth.data.augment.DEPTH_VIEW_DEFAULTS`."""
    extra = dict(train_config.get("augment_config") or {})
    extra.pop("crop_fraction", None)
    extra.pop("person_crop_p", None)  # the view is the whole room
    extra = {**DEPTH_VIEW_DEFAULTS, **extra}  # the run's own blur and light, where it gives them, for both
    # floor, as F.interpolate(scale_factor=depth_scale) sizes the model's own view (DualUNet.depth_view)
    size = max(8, math.floor(run_input_size(train_config) * depth_scale))
    return from_dict(AugmentConfig, {**extra, "size": size})


def to_dict_any(cfg: TrainConfig) -> dict:
    return to_dict(cfg)


def upsample_outputs(out: dict, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions at the target's size: mask (B, 1, H, W) bool from bilinear logits, depth (B, 1, H, W)."""
    import torch.nn.functional as F

    logits = F.interpolate(
        out[schema.MASK_LOGITS].float(), size=tuple(size), mode="bilinear", align_corners=False
    )
    depth = F.interpolate(
        out[schema.DEPTH_PRED].float(), size=tuple(size), mode="bilinear", align_corners=False
    )
    return logits > 0, depth


# ------------------------------------------------------------------------------------------------- fit
def trains_on_cuda(cfg: TrainConfig) -> bool:
    """Whether the run's accelerator is a CUDA GPU ("auto" takes one where there is one)."""
    return cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX). Without them oneDNN emulates bf16 and
    bf16 autocast trains slower than float32: measured on a 2-core Xeon without either, the demo's step (tiny, 48 px
    crops, 96 px depth views) ran 91 img/s under bf16 against 131 in float32 (benchmarks/train_speed.py,
    docs/experiments.md)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    if trains_on_cuda(cfg):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32"


_MONITOR = "val/mask_iou"  # the best checkpoint's metric
# A depth branch is a network of its own (DualUNetConfig.depth_branch), so best.ckpt takes the branch's weights
# from the validation with the best depth, not from the best mask's: in session 28 one demo's mask dipped late
# (validation IoU 0.888 -> 0.790) and its depth was kept at the earlier, less trained step (docs/experiments.md).
_DEPTH_MONITOR = "val/depth_abs_rel"  # lower is better
DEPTH_BRANCH_BEST = "best_depth_branch.safetensors"  # in <out>/checkpoints: the branch at its best validation
DEPTH_BRANCH_STEP_KEY = "fgdepth_depth_branch_step"  # in a merged best.ckpt: the step its branch comes from


def is_depth_branch_key(key: str) -> bool:
    """Whether a Lightning state-dict key is the depth branch's (``model.depth_net.*``, ``ema_model.depth_net.*``)."""
    return ".depth_net." in f".{key}"


def depth_branch_best_callback(path: Path, resume: bool):
    """A Lightning callback that writes the depth branch's weights (raw and averaged) to ``path`` (safetensors,
    atomically; its step and ``val/depth_abs_rel`` in the metadata) at each validation that lowers that score.
    Resuming (``resume``) starts from the score already in ``path``."""
    import lightning.pytorch as pl
    from safetensors import safe_open
    from safetensors.torch import save

    class DepthBranchBest(pl.Callback):
        def __init__(self) -> None:
            self.best: float | None = None
            if resume and path.is_file():
                with safe_open(str(path), "pt") as f:
                    self.best = float((f.metadata() or {})["val_depth_abs_rel"])

        def on_validation_end(self, trainer, pl_module) -> None:
            score = trainer.callback_metrics.get(_DEPTH_MONITOR)
            if trainer.sanity_checking or score is None or not math.isfinite(float(score)):
                return
            if self.best is not None and float(score) >= self.best:
                return
            self.best = float(score)
            if trainer.is_global_zero:
                tensors = {
                    k: v.detach().cpu().contiguous()
                    for k, v in pl_module.state_dict().items()
                    if is_depth_branch_key(k)
                }
                meta = {"step": str(trainer.global_step), "val_depth_abs_rel": repr(self.best)}
                atomic_write_bytes(path, save(tensors, metadata=meta))

    return DepthBranchBest()


def merge_depth_branch(checkpoint: Path, branch: Path) -> int | None:
    """Put ``branch``'s depth-branch weights (:func:`depth_branch_best_callback`'s file) into the Lightning
    ``checkpoint`` in place (atomically), recording their step under ``DEPTH_BRANCH_STEP_KEY``. -> that step;
    None, the checkpoint untouched, where it is the checkpoint's own step or the two hold different branch
    weights (a run that switched its average on or off when resumed)."""
    import io

    from safetensors import safe_open

    with safe_open(str(branch), "pt") as f:
        step = int((f.metadata() or {})["step"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = saved["state_dict"]
    if step == int(saved.get("global_step", -1)) or set(tensors) != {
        k for k in state if is_depth_branch_key(k)
    }:
        return None
    state.update(tensors)
    saved[DEPTH_BRANCH_STEP_KEY] = step
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    atomic_write_bytes(checkpoint, buffer.getvalue())
    return step


_FINAL_VALIDATION_MARGIN = 0.03  # of a time budget: the schedule ends this much early, training half as much


def model_config_for(cfg: TrainConfig, dm: FgDataModule) -> dict:
    """The run's model config: its preset with ``cfg.model_overrides``, and from the dataset's manifest (where a
    setting is not overridden) the composites' mean and std and the mean metric depth."""
    from fgdepth.model.registry import create_model

    overrides = dict(cfg.model_overrides)
    if dm.manifest is not None:
        st = dm.manifest["stats"]
        overrides.setdefault("input_mean", tuple(st["composite_mean"]))
        overrides.setdefault("input_std", tuple(max(s, 1e-3) for s in st["composite_std"]))
        depth = dm.manifest.get("depth")
        if depth and depth["kind"] == "metric" and depth.get("mean"):
            overrides.setdefault("init_depth", float(depth["mean"]))
    return create_model(cfg.model, **overrides).config.to_dict()


def fit(cfg: TrainConfig) -> dict[str, float]:
    """Train, validate on the held-out split, test the best checkpoint; return the test metrics.

    Writes ``<out>/checkpoints/{best,last}.ckpt``, ``<out>/model.safetensors``, CSV + TensorBoard logs (every loss
    term, the learning rate, the gradients' norm before clipping, the validation metrics) and ``<out>/metrics.json``.
    best.ckpt is the validation with the best mask IoU; a depth branch's weights in it come from the validation with
    the lowest depth AbsRel (kept in ``<out>/checkpoints/best_depth_branch.safetensors``, see _DEPTH_MONITOR).
    """
    pl = _lightning()
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.strategies import SingleDeviceStrategy
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from fgdepth.model.checkpoint import save_model

    pl.seed_everything(cfg.seed, workers=True)
    out = codec.require_out_folder(cfg.out)
    dm = FgDataModule(cfg)  # the data first: a wrong --data must cost an existing run (--overwrite) nothing
    model_config = model_config_for(cfg, dm)
    n_train = len(dm.dataset("train"))
    # training batches drop the last partial one: a larger batch would train no step and save the untrained model
    require(
        [
            (
                n_train >= cfg.batch_size,
                f"batch_size {cfg.batch_size} is larger than the {n_train} training samples of {cfg.data}: "
                "no full batch, no training step; give a smaller --batch-size",
            )
        ]
    )
    for stage in ("val", "test"):  # an empty one raises now, not after the whole training
        dm.dataset(stage)
    precision = _precision(cfg)
    try:  # before the run folder is touched: an --accelerator, --strategy or --precision it cannot use
        # (a typo, a missing package) must not cost an existing run (--overwrite) anything either
        max_steps = cfg.max_steps if cfg.max_steps > 0 else -1
        best = ModelCheckpoint(
            dirpath=out / "checkpoints", filename="best", monitor=_MONITOR, mode="max", save_last=True
        )
        branch_file = out / "checkpoints" / DEPTH_BRANCH_BEST
        branch_best = (
            depth_branch_best_callback(branch_file, resume=cfg.resume is not None)
            if model_config.get("depth_branch")
            else None
        )
        steps_per_epoch = max(1, n_train // cfg.batch_size)
        trainer = pl.Trainer(
            default_root_dir=str(out),
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            num_nodes=cfg.num_nodes,
            precision=precision,
            max_epochs=cfg.max_epochs,
            max_steps=max_steps,
            max_time={"minutes": cfg.max_minutes * (1 - _FINAL_VALIDATION_MARGIN / 2)}
            if cfg.max_minutes
            else None,
            gradient_clip_val=cfg.grad_clip or None,
            **_validation_cadence(cfg.val_every_steps, steps_per_epoch),
            log_every_n_steps=cfg.log_every_steps,
            callbacks=[best, LearningRateMonitor("step")] + ([branch_best] if branch_best else []),
            logger=[
                CSVLogger(str(out), name="logs", version=""),
                TensorBoardLogger(str(out), name="tb", version=""),
            ],
            num_sanity_val_steps=0,
            deterministic=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ImportError, ValueError, RuntimeError) as e:
        raise ValueError(
            f"cannot train with accelerator {cfg.accelerator!r}, devices {cfg.devices!r}, strategy "
            f"{cfg.strategy!r}, precision {precision!r}: {e}"
        ) from e
    if rank_zero_only.rank == 0:  # other ranks start once rank 0 may have written here already
        prepare_run_dir(out, resume=cfg.resume is not None, overwrite=cfg.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    module = make_module(cfg, model_config, dm.depth_kind)
    if cfg.channels_last:
        module.to(memory_format=torch.channels_last)
    ckpt_path, (lightning_epoch, step) = _resume_checkpoint(cfg, out)
    if ckpt_path and rank_zero_only.rank == 0:  # the launcher's rank (RANK, LOCAL_RANK, SLURM_PROCID, ...)
        set_aside_csv_log(out / "logs")
    sampler = None
    # one device without a distributed strategy (Lightning would wrap the sampler in a DistributedSampler: DDP even on
    # one device keeps the RandomSampler it turns into one)
    if isinstance(trainer.strategy, SingleDeviceStrategy) and not isinstance(
        dm.dataset("train"), IterableDataset
    ):
        # each epoch's order from (seed, epoch), so that a resumed run takes its epoch up where it stopped
        epoch, position = divmod(step, steps_per_epoch)
        sampler = EpochSampler(
            n_train, cfg.seed, epoch, position * cfg.batch_size, epoch_offset=lightning_epoch - epoch
        )
    t0 = time.time()
    trainer.fit(
        module,
        train_dataloaders=dm.train_dataloader(sampler),
        val_dataloaders=dm.val_dataloader(),
        ckpt_path=ckpt_path,
        weights_only=True,  # a checkpoint to resume may come from anywhere: never unpickle it
    )
    train_seconds = time.time() - t0
    # last.ckpt = the state at the end, whatever the validation cadence (resume continues from here)
    # weights_only=False: the full training state (optimiser, schedule, loops), so that --resume continues exactly;
    # loading it back still never unpickles (fit/test pass weights_only=True)
    trainer.save_checkpoint(out / "checkpoints" / "last.ckpt", weights_only=False)
    # the last steps (the lowest learning rates) usually come after the last periodic validation: validate the
    # final weights too, and keep them as best if they are
    final = trainer.validate(module, dataloaders=dm.val_dataloader(), verbose=False)
    score = (final[0] if final else {}).get(_MONITOR)
    best_file = out / "checkpoints" / "best.ckpt"
    if score is not None and (best.best_model_score is None or score >= float(best.best_model_score)):
        trainer.save_checkpoint(best_file, weights_only=False)
        best.best_model_path = str(best_file)
    best_path = best.best_model_path or best.last_model_path
    if best_path and Path(best_path).resolve() == best_file.resolve():
        best_path = str(best_file)  # as --out gave it, whichever saved it (Lightning records it absolute)
    branch_step = None
    if branch_best is not None and best_path == str(best_file) and branch_file.is_file():
        if trainer.is_global_zero:  # the branch from its own best validation (see _DEPTH_MONITOR)
            branch_step = merge_depth_branch(best_file, branch_file)
        trainer.strategy.barrier()
    results = trainer.test(
        module,
        dataloaders=dm.test_dataloader(),
        ckpt_path=best_path or None,
        verbose=False,
        weights_only=True,
    )
    metrics = {k.split("/", 1)[1]: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        merge_csv_logs(out / "logs")
        save_model(module.eval_model, out / "model.safetensors")
        summary = {
            "test": metrics,
            "test_selection": cfg.test_selection,
            "train_seconds": round(train_seconds, 1),
            "global_step": trainer.global_step,
            "best_checkpoint": str(best_path),
            "depth_branch_step": branch_step,  # where best.ckpt's depth branch comes from another step
            "train_samples": n_train,
            "precision": precision,  # what "auto" chose on this machine
            "config": to_dict(cfg),
        }
        atomic_write_bytes(out / "metrics.json", json.dumps(summary, indent=2).encode())
    return metrics


# What fit (and fgdepth report) write into a run's folder; a run is there if any of them is.
RUN_OUTPUTS = ("checkpoints", "logs", "tb", "metrics.json", "model.safetensors", "report")


def existing_run(out: Path) -> list[str]:
    """The run outputs already in ``out`` (empty folders do not count)."""
    found = []
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(name)
    return found + sorted(p.name for p in out.glob("shards_rank*.json"))


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an existing one unless ``overwrite``; then remove its outputs (only those:
    anything else in the folder is left). Resuming keeps everything."""
    found = existing_run(out) if out.is_dir() and not resume else []
    if not found:
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} already holds a training run ({', '.join(found)}): give --resume last to continue it, "
            "--overwrite to start again there (its checkpoints and logs are removed), or another --out"
        )
    for name in found:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _validation_cadence(val_every_steps: int, steps_per_epoch: int) -> dict[str, Any]:
    """Lightning's arguments for validating every ``val_every_steps`` steps: inside an epoch when it is shorter
    than one, else at the end of every k-th epoch, k = the nearest whole number of epochs (a GPU run at batch 128
    of the demo's world has 119-step epochs: validating each one spent its time on validation)."""
    if val_every_steps < steps_per_epoch:
        return {"val_check_interval": val_every_steps, "check_val_every_n_epoch": None}
    return {
        "val_check_interval": 1.0,
        "check_val_every_n_epoch": max(1, round(val_every_steps / steps_per_epoch)),
    }


def _resume_checkpoint(cfg: TrainConfig, out: Path) -> tuple[str | None, tuple[int, int]]:
    """The checkpoint to resume (None: a new run) and its position: (the epoch Lightning resumes in, global step);
    (0, 0) for a new run. Anything but a Lightning training checkpoint is refused by name."""
    if cfg.resume is None:
        return None, (0, 0)
    path = out / "checkpoints" / "last.ckpt" if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    # anything else reached Lightning, whose KeyError or unpickling traceback named no file
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any failure to read it means "not a checkpoint"
        raise ValueError(f"{path}: not a checkpoint to resume from ({e})") from e
    if not isinstance(saved, dict) or not {"state_dict", "global_step", "loops"} <= set(saved):
        raise ValueError(
            f"{path}: not a checkpoint to resume from (no training state: a Lightning .ckpt is needed)"
        )
    progress = saved["loops"].get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return str(path), (int(progress.get("processed", saved.get("epoch", 0))), int(saved["global_step"]))


__all__ = [
    "TrainConfig",
    "FgDataModule",
    "MemoryDataset",
    "fit",
    "make_module",
    "model_config_for",
    "depth_scale_of",
]
