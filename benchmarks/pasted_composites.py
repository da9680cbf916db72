"""A checkpoint's mask on composites made as the reference data set made them: cut-out people pasted onto
backgrounds at random scales and places, with no shadow, no occlusion and no camera geometry, saved as JPEG.

Usage:
    python benchmarks/pasted_composites.py CKPT DATA [--out DIR] [--samples 200] [--size 224] [--seed 0]

DATA is a procedural dataset (``fgdepth make-dataset``); its held-out ``test`` rooms (``bg/``) and people (``fg/``,
RGBA) are pasted into two folders in the reference layout (``bg/``, ``bg_fg/``, ``bg_fg_mask/``), which
``fgdepth evaluate`` then scores against the classical baseline:

- ``anywhere``: the person 25-90 % of the image's height, anywhere (up to a quarter outside the frame);
- ``floor``: the same sizes, the feet in the bottom eighth of the image, as a camera would see them stand.

A model that learnt where people stand (on the floor, at the camera's scale) would lose on ``anywhere``; one that
learnt people would score both alike. Sample i draws from a generator seeded by (seed, i).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
from common import count, run

from fgdepth.evaluate import evaluate

MODES = ("anywhere", "floor")


def paste_folder(data: Path, out: Path, mode: str, samples: int, size: int, seed: int) -> Path:
    """Write ``samples`` pasted composites of ``data``'s test rooms and people into ``out`` (reference layout)."""
    splits = json.loads((data / "manifest.json").read_text())["splits"]
    rooms = sorted(k for k, v in splits["backgrounds"].items() if v == "test")
    people = sorted(k for k, v in splits["people"].items() if v == "test")
    if not rooms or not people:  # else numpy's "high <= 0" drawing from an empty list
        raise ValueError(f"{data}: no test rooms or no test people to paste")
    for name in ("bg", "bg_fg", "bg_fg_mask"):
        (out / name).mkdir(parents=True, exist_ok=True)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 90]
    for i in range(samples):
        rng = np.random.default_rng([seed, i])
        room = rooms[rng.integers(len(rooms))]
        bg = cv2.resize(
            cv2.imread(str(data / "bg" / f"{room}.png")), (size, size), interpolation=cv2.INTER_AREA
        )
        cv2.imwrite(str(out / "bg" / f"{room}.jpg"), bg, jpeg)
        fg = cv2.imread(str(data / "fg" / f"{people[rng.integers(len(people))]}.png"), cv2.IMREAD_UNCHANGED)
        ys, xs = np.nonzero(fg[..., 3])
        fg = fg[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        if rng.random() < 0.5:
            fg = fg[:, ::-1]
        h = int(size * rng.uniform(0.25, 0.9))
        w = max(1, round(fg.shape[1] * h / fg.shape[0]))
        fg = cv2.resize(np.ascontiguousarray(fg), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        x0 = int(rng.integers(-w // 4, size - 3 * w // 4 + 1))
        if mode == "anywhere":
            y0 = int(rng.integers(-h // 6, size - h + 1))
        else:
            y0 = size - h - int(rng.integers(0, size // 8 + 1))
        top, left, bottom, right = max(y0, 0), max(x0, 0), min(y0 + h, size), min(x0 + w, size)
        piece = fg[top - y0 : bottom - y0, left - x0 : right - x0]
        alpha = piece[..., 3:4] / 255.0
        comp = bg.astype(np.float32)
        comp[top:bottom, left:right] = alpha * piece[..., :3] + (1 - alpha) * comp[top:bottom, left:right]
        mask = np.zeros((size, size), np.uint8)
        mask[top:bottom, left:right] = np.where(piece[..., 3] > 127, 255, 0)
        stem = f"{room}_{i:04d}"
        cv2.imwrite(str(out / "bg_fg" / f"{stem}.jpg"), comp.round().astype(np.uint8), jpeg)
        cv2.imwrite(str(out / "bg_fg_mask" / f"{stem}.png"), mask)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="keep the folders here (default: a temporary one)")
    ap.add_argument("--samples", type=count, default=200)
    ap.add_argument("--size", type=count, default=224)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        print(
            f"{args.samples} pasted composites per mode of {args.data}'s test rooms and people, {args.checkpoint}"
        )
        print(f"{'mode':<10} {'IoU':>6} {'F1':>6} {'precision':>9} {'recall':>6} {'baseline IoU':>12}")
        for mode in MODES:
            folder = paste_folder(args.data, root / mode, mode, args.samples, args.size, args.seed)
            r = evaluate(args.checkpoint, folder)
            print(
                f"{mode:<10} {r['mask_iou']:>6.3f} {r['mask_f1']:>6.3f} {r['all']['mask_precision']:>9.3f} "
                f"{r['all']['mask_recall']:>6.3f} {r['baseline_mask_iou']:>12.3f}"
            )


if __name__ == "__main__":
    run(main)
