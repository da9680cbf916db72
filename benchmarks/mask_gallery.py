"""Masks of several checkpoints side by side on the same samples, and each one's IoU on them.

Usage:
    python benchmarks/mask_gallery.py DATA OUT.png --checkpoint A.ckpt --checkpoint B.ckpt [--selection all]
        [--limit 1000] [--rows 6]

Rows are the samples where the first checkpoint's IoU is lowest, among those whose person covers at least 1 % of
the image (so that a row shows a person, not a few pixels). Columns: background | composite | true mask | one mask
per checkpoint, its IoU written on it. docs/camouflage.png (docs/experiments.md, session 19): the demo's model trained without and with
camouflaged people (``fgdepth make-dataset --camouflage``) on a world of camouflaged people it never saw.
"""

from __future__ import annotations

import argparse
import itertools

import cv2
import numpy as np
from depth_errors import checkpoint_outputs
from mask_errors import iou

from fgdepth.evaluate import iter_samples


def _labelled(mask: np.ndarray, text: str) -> np.ndarray:
    tile = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
    cv2.putText(tile, text, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 80, 80), 1, cv2.LINE_AA)
    return tile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--checkpoint", action="append", required=True)
    ap.add_argument("--selection", default="all")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=6)
    args = ap.parse_args()

    samples = list(itertools.islice(iter_samples(args.data, args.selection), args.limit))
    # per checkpoint, per sample: bool (H, W)
    masks = [[logits > 0 for logits, _ in checkpoint_outputs(path, samples)] for path in args.checkpoint]
    truth = [s["mask"].astype(bool) for s in samples]
    scores = np.array([[iou(m, t) for m, t in zip(ms, truth)] for ms in masks])  # (checkpoints, samples)
    for path, row in zip(args.checkpoint, scores):
        print(f"{path}: IoU {row.mean():.3f} over {len(samples)} samples")
    visible = np.array([t.mean() >= 0.01 for t in truth])
    order = [i for i in np.argsort(scores[0]) if visible[i]][: args.rows]
    rows = []
    for i in order:
        s = samples[i]
        tiles = [s["background"], s["composite"], _labelled(truth[i], "truth")]
        tiles += [_labelled(masks[k][i], f"IoU {scores[k, i]:.2f}") for k in range(len(masks))]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    cv2.imwrite(args.out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({len(order)} rows: the first checkpoint's lowest IoU)")


if __name__ == "__main__":
    main()
