"""Evaluation of a model on a dataset, side by side with the classical baseline.

``evaluate(checkpoint, data)`` reads a dataset written by the factory (shards or folders, any selection) or any
folder in the reference layout (``bg/``, ``bg_fg/``, ``bg_fg_mask/``, optional ``bg_fg_depth/``), predicts with
:class:`fgdepth.predict.Predictor` (inputs resized to the model size, predictions resized back), and scores every
sample at the ground truth's own resolution:

* mask: IoU, F1, precision, recall (mean over images), for the model and for
  :func:`fgdepth.baseline.difference_mask` on the same images;
* depth: AbsRel, SqRel, RMSE, RMSE log, log10, delta1/2/3 and SSIM on the valid pixels (target > 0) of samples
  that have depth; metric depth as is, relative depth (manifest ``depth.kind == "relative"``) after a
  least-squares scale and shift (``align="auto"``; ``none`` / ``median`` / ``lstsq`` force a mode).

The pure core is :func:`score_sample` (one sample) and :func:`evaluate_predictions` (a list); :func:`evaluate`
adds reading and inference. Results are flat dicts: the headline keys ``metrics.HEADLINE_KEYS`` at the top, the
full means under ``all`` (model) and ``baseline``, and optionally ``per_sample`` rows.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from fgdepth import metrics as M
from fgdepth.baseline import difference_mask
from fgdepth.data import schema
from fgdepth.data.reader import open_dataset, read_manifest
from fgdepth.viz import write_atomic

ALIGNS = ("auto", "none", "median", "lstsq")
PER_SAMPLE_KEYS = ("key", "height", "width", "has_depth", *M.MASK_KEYS, *M.DEPTH_KEYS, "baseline_mask_iou",
                   "baseline_mask_f1", "baseline_mask_precision", "baseline_mask_recall")  # fmt: skip
Sample = dict  # key, background / composite (H, W, 3) uint8, mask (H, W) bool, depth (H, W) float32 | None


# ------------------------------------------------------------------------------------------------ data
def dataset_info(data: str | Path) -> dict[str, Any]:
    """What evaluation needs to know of a dataset: ``fgdepth`` (has a manifest), ``depth_kind``
    (metric | relative | none), ``size`` (the factory's output size, or None)."""
    root = Path(data)
    if not (root / schema.MANIFEST_NAME).is_file():
        return {"fgdepth": False, "depth_kind": "metric", "size": None}
    manifest = read_manifest(root)
    depth = manifest.get("depth") or {}
    return {
        "fgdepth": True,
        "depth_kind": depth.get("kind") or "none",
        "size": (manifest.get("config") or {}).get("size"),
    }


def _numpy_sample(t: Mapping[str, Any]) -> Sample:
    """A reader's tensor sample back to numpy HWC (uint8 images are exact: they were stored as uint8)."""

    def image(x: torch.Tensor) -> np.ndarray:
        return (x.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()

    valid = t[schema.DEPTH_VALID][0] > 0
    return {
        schema.KEY: t[schema.KEY],
        schema.BACKGROUND: image(t[schema.BACKGROUND]),
        schema.COMPOSITE: image(t[schema.COMPOSITE]),
        schema.MASK: t[schema.MASK][0].numpy() > 0.5,
        schema.DEPTH: t[schema.DEPTH][0].numpy().astype(np.float32) if bool(valid.any()) else None,
        schema.FOCAL: float(t[schema.FOCAL]) if schema.FOCAL in t else 0.0,
    }


def iter_samples(data: str | Path, selection: str = "test", limit: int | None = None) -> Iterator[Sample]:
    """Samples of a dataset as numpy dicts, in the reader's order (the first ``limit`` if given).

    ``selection`` names a split selection: a manifest's splits, or for a folder written by anyone the seeded
    room and person split that training uses (:func:`fgdepth.data.reader.foreign_splits`; ``all``: every sample).
    """
    if limit is not None and limit < 1:  # else the selection was blamed for having no samples
        raise ValueError(f"limit must be >= 1, got {limit}")
    ds = open_dataset(data, selection)
    items: Iterable = iter(ds) if isinstance(ds, IterableDataset) else (ds[i] for i in range(len(ds)))
    for n, t in enumerate(items):
        if limit is not None and n >= limit:
            break
        yield _numpy_sample(t)


def _batches(it: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    for s in it:
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------- the core
def resolve_align(align: str, depth_kind: str) -> M.Align:
    """``auto``: least-squares scale and shift for relative depth, none for metric depth."""
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; valid: {', '.join(ALIGNS)}")
    if align == "auto":
        return "lstsq" if depth_kind == "relative" else "none"
    return align  # type: ignore[return-value]


def score_sample(
    pred_mask: np.ndarray,
    pred_depth: np.ndarray | None,
    sample: Mapping[str, Any],
    align: M.Align = "none",
    baseline_mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """One row of per-sample results: mask metrics, depth metrics (NaN without depth), baseline mask metrics.

    ``baseline_mask`` defaults to :func:`~fgdepth.baseline.difference_mask` of the sample's two images.

    Shape:
        pred_mask: (H, W) bool; pred_depth: (H, W) float or None; sample: ``key``, ``background`` /
        ``composite`` (H, W, 3) uint8, ``mask`` (H, W) bool, ``depth`` (H, W) float (0 = unknown) or None.
    """
    target = np.asarray(sample[schema.MASK])
    h, w = target.shape[:2]
    row: dict[str, Any] = {"key": sample.get(schema.KEY, ""), "height": h, "width": w}
    row.update(M.mask_metrics(pred_mask, target))
    depth = sample.get(schema.DEPTH)
    has_depth = depth is not None and pred_depth is not None and bool(M.valid_depth_mask(depth).any())
    row["has_depth"] = has_depth
    if has_depth:
        row.update(M.depth_metrics(pred_depth, depth, align=align))
    else:
        row.update(dict.fromkeys(M.DEPTH_KEYS, math.nan))
    if baseline_mask is None:
        baseline_mask = difference_mask(sample[schema.BACKGROUND], sample[schema.COMPOSITE])
    row.update({f"baseline_{k}": v for k, v in M.mask_metrics(baseline_mask, target).items()})
    return row


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means of per-sample rows: headline keys at the top, ``all`` (model), ``baseline`` (baseline means)."""
    model, base = M.MetricAccumulator(), M.MetricAccumulator()
    for r in rows:
        model.update({k: r[k] for k in (*M.MASK_KEYS, *M.DEPTH_KEYS) if k in r})
        base.update({k: r[f"baseline_{k}"] for k in M.MASK_KEYS if f"baseline_{k}" in r})
    all_model, all_base = model.compute(), base.compute()
    out: dict[str, Any] = M.headline_metrics(all_model, all_base)
    out["num_samples"] = len(rows)
    out["num_depth_samples"] = int(all_model["num_depth_samples"])
    out["all"] = {**{k: all_model.get(k, math.nan) for k in (*M.MASK_KEYS, *M.DEPTH_KEYS)}, **{
        "num_samples": len(rows), "num_depth_samples": out["num_depth_samples"]}}  # fmt: skip
    out["baseline"] = {k: all_base.get(k, math.nan) for k in M.MASK_KEYS}
    return out


def evaluate_predictions(
    pred_masks: Sequence[np.ndarray],
    pred_depths: Sequence[np.ndarray | None],
    samples: Sequence[Mapping[str, Any]],
    align: M.Align = "none",
    per_sample: bool = True,
) -> dict[str, Any]:
    """Score given predictions against samples (pure: no model, no files). See :func:`score_sample` for shapes;
    predictions must already be at each sample's resolution."""
    if not len(pred_masks) == len(pred_depths) == len(samples):
        raise ValueError(f"{len(pred_masks)} masks, {len(pred_depths)} depths for {len(samples)} samples")
    rows = [score_sample(m, d, s, align) for m, d, s in zip(pred_masks, pred_depths, samples, strict=True)]
    out = summarize(rows)
    if per_sample:
        out["per_sample"] = rows
    return out


# ---------------------------------------------------------------------------------------------- running
def evaluate_samples(
    predictor: Any,
    samples: Iterable[Sample],
    align: M.Align,
    keep: set[str] | None = None,
    intrinsics: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, dict]]:
    """Predict and score ``samples`` in batches of ``predictor.batch_size``; returns the per-sample rows and,
    for the keys in ``keep``, the samples with their predictions (``pred_mask``, ``pred_depth``) for pictures.
    With ``intrinsics``, each sample's recorded camera (``focal``) goes to the predictor."""
    rows, kept = [], {}
    for batch in _batches(samples, max(1, predictor.batch_size)):
        focals = [s.get(schema.FOCAL) or 0.0 for s in batch] if intrinsics else None
        preds = predictor([s[schema.BACKGROUND] for s in batch], [s[schema.COMPOSITE] for s in batch], focals)
        for s, (mask, depth) in zip(batch, preds, strict=True):
            rows.append(score_sample(mask, depth, s, align))
            if keep is not None and s[schema.KEY] in keep:
                kept[s[schema.KEY]] = {**s, "pred_mask": mask, "pred_depth": depth}
    return rows, kept


def evaluate(
    checkpoint: str | Path | None,
    data: str | Path,
    selection: str | None = None,
    align: str = "auto",
    batch_size: int = 16,
    size: int | None = None,
    limit: int | None = None,
    per_sample: bool = False,
    onnx: str | Path | None = None,
    device: str = "cpu",
    hfov: float | None = None,
    intrinsics: bool = True,
    flip_tta: bool = False,
    mask_scale: float | None = None,
    register: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint (or an ONNX model: ``checkpoint=None, onnx=path``) on ``data``.

    Args:
        selection: split selection (``test``, ``test_new_people``, ..., ``all``); default ``test`` for an fgdepth
            dataset, ``all`` for a folder without a manifest (a selection of such a folder takes the seeded room
            and person split that training on it used: :func:`fgdepth.data.reader.foreign_splits`).
        align: ``auto`` (lstsq for relative-depth datasets, none for metric) | none | median | lstsq.
        size: model input size, the short side (see :func:`fgdepth.predict.model_input_size`); default the
            checkpoint's training size, else the dataset's size, else 192.
        limit: only the first ``limit`` samples.
        per_sample: add ``per_sample`` rows (key, size, every metric, baseline metrics).
        hfov, intrinsics: the cameras, for a model with a canonical camera (:mod:`fgdepth.intrinsics`): ``hfov``
            (degrees) for every sample; else, with ``intrinsics``, each sample's recorded focal length (the
            procedural world records them), the canonical camera's field of view across the width where none is
            recorded (:meth:`fgdepth.predict.Predictor.focal_of`). ``camera`` in the
            result says which: ``hfov <deg>``, ``intrinsics`` or ``canonical``.
        flip_tta: predict each pair and its mirror image and average (test-time augmentation, 2x the compute).
        mask_scale: the mask network's input enlargement in place of the checkpoint's (:func:`fgdepth.load_model`).
        register: move and re-expose each background to match its composite before the model
            (:mod:`fgdepth.register`); the baseline sees the shots as stored.

    Returns:
        ``{mask_iou, mask_f1, depth_abs_rel, depth_rmse, depth_delta1, baseline_mask_iou, num_samples,
        num_depth_samples, all: {...}, baseline: {...}, align, depth_kind, selection, data, model, size}``
        (+ ``per_sample``). Depth values are NaN when no sample has depth.
    """
    from fgdepth.predict import Predictor

    info = dataset_info(data)
    mode = resolve_align(align, info["depth_kind"])
    predictor = Predictor.load(
        checkpoint,
        onnx,
        size=size,
        batch_size=batch_size,
        device=device,
        default_size=info["size"],
        hfov=hfov,
        flip_tta=flip_tta,
        mask_scale=mask_scale,
        register=register,
    )
    selection = selection or ("test" if info["fgdepth"] else "all")
    schema.selection_groups(selection)  # raises naming the valid selections
    use_intrinsics = intrinsics and hfov is None
    samples = iter_samples(data, selection, limit)
    rows, _ = evaluate_samples(predictor, samples, mode, intrinsics=use_intrinsics)
    if not rows:
        raise ValueError(f"{data}: the selection {selection!r} has no samples")
    out = summarize(rows)
    out.update(
        align=mode,
        depth_kind=info["depth_kind"],
        selection=selection,
        data=str(data),
        model=predictor.name,
        size=predictor.size,
        camera=f"hfov {hfov:g}" if hfov is not None else ("intrinsics" if use_intrinsics else "canonical"),
        flip_tta=flip_tta,
        register=register,
        mask_scale=predictor.model.config.mask_scale if predictor.model is not None else None,
    )
    if per_sample:
        out["per_sample"] = rows
    return out


# ------------------------------------------------------------------------------------------------ output
def _json_safe(x: Any) -> Any:
    """NaN / inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(x, Mapping):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def write_json(result: Mapping[str, Any], path: str | Path) -> Path:
    """The result as strict JSON (NaN written as null)."""
    return write_atomic(path, (json.dumps(_json_safe(result), indent=2) + "\n").encode())


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One row per sample (``PER_SAMPLE_KEYS`` columns; NaN left empty)."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PER_SAMPLE_KEYS), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
    return write_atomic(path, buf.getvalue().encode())


def table_lines(result: Mapping[str, Any]) -> list[str]:
    """A plain-text table of the model's means against the baseline's."""
    model, base = result.get("all", {}), result.get("baseline", {})
    keys = [k for k in (*M.MASK_KEYS, *M.DEPTH_KEYS) if k in model]
    lines = [f"{'metric':<18}{'model':>10}{'baseline':>10}", "-" * 38]
    for k in keys:
        b = base.get(k)
        fmt = lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"  # noqa: E731
        lines.append(f"{k:<18}{fmt(model[k]):>10}{fmt(b):>10}")
    lines.append(f"{'num_samples':<18}{result.get('num_samples', 0):>10}  (with depth: "
                 f"{result.get('num_depth_samples', 0)}, align {result.get('align', '-')})")  # fmt: skip
    return lines
