"""The on-disk format of an fgdepth dataset, and the fixed keys of batches, outputs and losses.

One module names every key and unit so that writer, reader, training and evaluation agree.

Layout of a dataset directory::

    manifest.json                 # written last: schema version, config, counts, stats, checksums
    run.json                      # written first: the settings a rerun must match to resume
    bg/<bg_id>.png                # backgrounds, RGB, stored once (lossless)
    bg_depth/<bg_id>.png          # background depth, uint16 (see DEPTH_* below), if any
    bg_meta/<bg_id>.json          # camera intrinsics and floor plane (procedural world), if any
    fg/<fg_id>.png                # foregrounds, RGBA, stored once (flips are not stored twice)
    fg_mask/<fg_id>.png           # alpha > 0.5 as 0/255
    fg_depth/<fg_id>.npy          # person depth relative to its reference plane, metres (procedural)
    shards/<group>-<nnnnnn>.tar   # --format webdataset: samples grouped by (bg split, fg split)
    bg_fg/<stem>.jpg  bg_fg_mask/<stem>.png  bg_fg_depth/<stem>.png  bg_fg_meta/<stem>.json
                                  # --format folders: the reference layout

A sample stem is ``<bg_id>_<fg_id>_<kk>``, e.g. ``bg001_fg017f_05`` (``f`` marks a mirrored person).
Inside a webdataset shard, a sample is the files ``<stem>.comp.jpg``, ``<stem>.mask.png``,
``<stem>.depth.png`` (if depth) and ``<stem>.meta.json``; stems contain no dots.
"""

from __future__ import annotations

from collections.abc import Container

SCHEMA_VERSION = 1

# --- files -------------------------------------------------------------------------------------------
MANIFEST_NAME = "manifest.json"
RUN_NAME = "run.json"
BG_DIR, BG_DEPTH_DIR, BG_META_DIR = "bg", "bg_depth", "bg_meta"
FG_DIR, FG_MASK_DIR, FG_DEPTH_DIR = "fg", "fg_mask", "fg_depth"
SHARD_DIR = "shards"
COMP_DIR, MASK_DIR, DEPTH_DIR, META_DIR = "bg_fg", "bg_fg_mask", "bg_fg_depth", "bg_fg_meta"

# webdataset extensions of one sample (the key after the first dot)
EXT_COMP, EXT_MASK, EXT_DEPTH, EXT_META = "comp.jpg", "mask.png", "depth.png", "meta.json"

FORMATS = ("webdataset", "folders")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# --- depth encoding ----------------------------------------------------------------------------------
# metric depth: uint16 millimetres, 0 = unknown (max 65.535 m).
# relative depth (a teacher's disparity): uint16 = value * scale, scale recorded in the manifest.
DEPTH_KINDS = ("metric", "relative")
DEPTH_MM_PER_M = 1000.0
DEPTH_UNKNOWN = 0
DEPTH_MAX_UINT16 = 65535

# --- splits ------------------------------------------------------------------------------------------
# Every background and every person belongs to one split; a sample carries both tags.
SPLITS = ("train", "val", "test")
# Named selections readers understand: (allowed background splits, allowed person splits).
SELECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "train": (("train",), ("train",)),
    "val": (("val",), ("val",)),
    "test": (("test",), ("test",)),
    "test_new_people": (("train",), ("test",)),  # fixed camera, unseen people
    "test_new_room": (("test",), ("train",)),  # unseen room, seen people
    "all": (SPLITS, SPLITS),
}


def group_name(bg_split: str, fg_split: str) -> str:
    """Shard group of a (background split, person split) pair, e.g. ``train-test``."""
    return f"{bg_split}-{fg_split}"


def selection_groups(selection: str) -> list[str]:
    """Shard groups that a named selection reads."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown split selection {selection!r}; valid: {', '.join(SELECTIONS)}")
    bgs, fgs = SELECTIONS[selection]
    return [group_name(b, f) for b in bgs for f in fgs]


def sample_stem(bg_id: str, fg_id: str, placement: int) -> str:
    return f"{bg_id}_{fg_id}_{placement:02d}"


def person_of(fg_id: str, person_ids: Container[str]) -> str:
    """The person a sample's ``fg_id`` shows: a mirror image ``<person_id>f`` shows ``<person_id>``, read as one only
    where that id is among ``person_ids`` (an id may itself end in f)."""
    return fg_id[:-1] if fg_id.endswith("f") and fg_id[:-1] in person_ids else fg_id


def parse_stem(stem: str) -> tuple[str, str, int]:
    """Inverse of :func:`sample_stem`: ``bg001_fg017f_05`` -> ("bg001", "fg017f", 5)."""
    parts = stem.split("_")
    if len(parts) < 3 or not parts[-1].isdigit():
        raise ValueError(f"sample stem {stem!r} is not of the form <bg_id>_<fg_id>_<kk>")
    return parts[0], "_".join(parts[1:-1]), int(parts[-1])


# --- batches, outputs, losses ------------------------------------------------------------------------
# A sample / batch is a dict with these keys (torch, CHW; B leading in a batch):
# A memory-cached training batch holds uint8 images (0-255) and mask, and no DEPTH_VALID, until it reaches the device
# (train.images_to_float).
BACKGROUND = "background"  # (B, 3, H, W) float32 in [0, 1]
COMPOSITE = "composite"  # (B, 3, H, W) float32 in [0, 1]
MASK = "mask"  # (B, 1, H, W) float32 in {0, 1}
DEPTH = "depth"  # (B, 1, H, W) float32, metres (or relative units), 0 where unknown
DEPTH_VALID = "depth_valid"  # (B, 1, H, W) float32 in {0, 1}
FOCAL = "focal"  # (B,) float32: focal length / the short side, 0 = unknown (fgdepth.intrinsics)
KEY = "key"  # list[str] of stems (not collated into a tensor)
BATCH_KEYS = (BACKGROUND, COMPOSITE, MASK, DEPTH, DEPTH_VALID, FOCAL)
# Training batches of a model with a depth branch also carry the branch's view: a batch dict of the same keys, the
# whole image at the branch's (smaller) size, while the main keys hold crops.
DEPTH_VIEW = "depth_view"

# Model outputs
MASK_LOGITS = "mask_logits"  # (B, 1, h, w) float32 logits, h = H / output_stride
DEPTH_PRED = "depth"  # (B, 1, h, w) float32 >= 0
# (B, 2, h, w) float32 >= 0: the scene behind the people and the people, of a network with layered depth; inside
# training only (``forward`` returns the two keys above, composed: fgdepth.model.dual_unet.compose_layers)
DEPTH_LAYERS = "depth_layers"

# --- world files (stored once per dataset) ------------------------------------------------------------
BG_FLOOR_DIR = "bg_floor"  # bg_floor/<bg_id>.png: floor visible, 0/255 (procedural world)
FG_META_DIR = "fg_meta"  # fg_meta/<fg_id>.json: anchor, height_m, px_per_m, source name
SOURCES_NAME = "sources.json"  # ids, source names, splits, skipped inputs; marks the stored world complete
UNIT_DIR = "units"  # units/<unit>.json: one record per completed shard / folder chunk (resume, stats)

# --- loss dict keys (owned by fgdepth.losses; logged as train/<key>) --------------------------------------
LOSS = "loss"  # the scalar to minimise
LOSS_MASK_BCE = "mask_bce"
LOSS_MASK_DICE = "mask_dice"
LOSS_MASK_TOTAL = "mask_total"  # bce_weight * mask_bce + dice_weight * mask_dice
LOSS_DEPTH_L1 = "depth_l1"
LOSS_DEPTH_GRAD = "depth_grad"
LOSS_DEPTH_SSIM = "depth_ssim"  # (1 - SSIM) / 2
LOSS_DEPTH_LOG = "depth_log"  # L1 of log depth (metric): relative error, weighs near and far alike
LOSS_DEPTH_SILOG = "depth_silog"  # scale-invariant log error (Eigen et al.): structure first, scale second
LOSS_DEPTH_SSI = "depth_ssi"  # scale-and-shift-invariant L1, only when depth_kind == "relative"
LOSS_DEPTH_TOTAL = "depth_total"
LOSS_W_MASK = "w_mask"  # effective task weights (learned ones under "uncertainty" weighting)
LOSS_W_DEPTH = "w_depth"
LOSS_KEYS = (
    LOSS,
    LOSS_MASK_BCE,
    LOSS_MASK_DICE,
    LOSS_MASK_TOTAL,
    LOSS_DEPTH_L1,
    LOSS_DEPTH_GRAD,
    LOSS_DEPTH_SSIM,
    LOSS_DEPTH_LOG,
    LOSS_DEPTH_SILOG,
    LOSS_DEPTH_TOTAL,
    LOSS_W_MASK,
    LOSS_W_DEPTH,
)  # plus LOSS_DEPTH_SSI for relative depth
