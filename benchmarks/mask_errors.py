"""Where a checkpoint's mask goes wrong: near the outline or away from it, missed or extra, by person size, at
which logit threshold, and what a one-pixel outline error alone would cost.

Usage:
    python benchmarks/mask_errors.py CKPT DATA [--selection test] [--limit 1000]

IoU is the mean over images (as ``fgdepth evaluate``). "Near the outline" is within 2 px (chessboard distance)
of the true mask's boundary (:func:`fgdepth.losses.boundary_band`). The bound rows score the true mask against
itself grown or shrunk by one pixel: the IoU a model whose outline is everywhere one pixel off would get.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from common import run
from depth_errors import diagnostic_parser, samples_and_outputs

from fgdepth.losses import boundary_band, grow_mask

THRESHOLDS = (-1.0, -0.5, 0.0, 0.5)  # logits


def iou(pred: np.ndarray, true: np.ndarray) -> float:
    union = np.logical_or(pred, true).sum()
    return float(np.logical_and(pred, true).sum() / union) if union else 1.0


def main() -> None:
    args = diagnostic_parser(__doc__.splitlines()[0]).parse_args()
    samples, outputs = samples_and_outputs(args)
    by_threshold: dict[float, list[float]] = {t: [] for t in THRESHOLDS}
    bounds: dict[str, list[float]] = {"shrunk 1 px": [], "grown 1 px": []}
    area, errors = [], np.zeros(4)  # missed near, missed away, extra near, extra away
    for s, (logits, _) in zip(samples, outputs):
        true = s["mask"].astype(bool)
        for t in THRESHOLDS:
            by_threshold[t].append(iou(logits > t, true))
        true_t = torch.from_numpy(true.astype(np.float32))[None, None]
        bounds["shrunk 1 px"].append(iou(grow_mask(true_t, -1)[0, 0].numpy() > 0.5, true))
        bounds["grown 1 px"].append(iou(grow_mask(true_t, 1)[0, 0].numpy() > 0.5, true))
        area.append(true.mean())
        near = boundary_band(true_t)[0, 0].numpy() > 0.5
        pred = logits > 0
        for i, wrong in enumerate((true & ~pred, pred & ~true)):
            errors[2 * i : 2 * i + 2] += (np.sum(wrong & near), np.sum(wrong & ~near))

    ious, area = np.array(by_threshold[0.0]), np.array(area)
    print(f"{len(samples)} samples of {args.data} ({args.selection}), {args.checkpoint}")
    print(f"mask IoU {ious.mean():.3f} (median {np.median(ious):.3f}; below 0.8: {np.mean(ious < 0.8):.2f})")
    share = errors / max(errors.sum(), 1)
    print(f"wrong pixels: missed near the outline {share[0]:.2f}, missed away {share[1]:.2f}, "
          f"extra near {share[2]:.2f}, extra away {share[3]:.2f}")  # fmt: skip
    edges = np.quantile(area, [0.0, 0.25, 0.5, 0.75, 1.0])
    parts = []
    for lo, hi in itertools.pairwise(edges):
        sel = (area >= lo) & (area <= hi)
        parts.append(f"{100 * lo:.1f}-{100 * hi:.1f} %: {ious[sel].mean():.3f}")
    print("IoU by person area (quarters of the images, % of the image): " + ", ".join(parts))
    print(
        "IoU by logit threshold: " + ", ".join(f"{t:+.1f}: {np.mean(v):.3f}" for t, v in by_threshold.items())
    )
    print("the true mask against itself, " + ", ".join(f"{k}: {np.mean(v):.3f}" for k, v in bounds.items()))


if __name__ == "__main__":
    run(main)
