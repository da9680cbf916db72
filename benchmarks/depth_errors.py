"""Where a checkpoint's depth goes wrong, on a dataset with metric depth: the room against the people, the scale
of each image and of each person, error by true depth and by image row, and what the output's resolution alone
would cost (the true depth through the branch's grid and back).

Usage:
    python benchmarks/depth_errors.py CKPT DATA [--selection test] [--limit 1000] [--grid 48]

Every figure is a mean over images (as ``fgdepth evaluate``), through each image's recorded camera. delta1 counts
pixels whose predicted / true depth ratio is within 1.25; "scale known" removes each image's median log error
first; "per person" removes each person's own.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from common import count, run

from fgdepth.evaluate import dataset_info, iter_samples
from fgdepth.losses import resize_depth
from fgdepth.predict import Predictor

LOG_125 = float(np.log(1.25))
DEPTH_BINS_M = (0.0, 2.0, 3.0, 4.0, 6.0, 8.0, np.inf)


def _within(r: np.ndarray) -> float:
    return float(np.mean(np.abs(r) < LOG_125)) if r.size else float("nan")


def through_grid(depth: np.ndarray, grid: int) -> np.ndarray:
    """The true depth area-averaged to grid x grid (as the losses see it) and bilinearly back: what a perfect
    coarse output would give."""
    small, _ = resize_depth(torch.from_numpy(depth)[None, None], None, (grid, grid))
    return F.interpolate(small, size=depth.shape, mode="bilinear", align_corners=False)[0, 0].numpy()


def diagnostic_parser(description: str) -> argparse.ArgumentParser:
    """The command line of the checkpoint diagnostics (this script, mask_errors.py): CKPT DATA [--selection]
    [--limit]."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("checkpoint")
    ap.add_argument("data")
    ap.add_argument("--selection", default="test")
    ap.add_argument("--limit", type=count, default=1000)
    return ap


def samples_and_outputs(
    args: argparse.Namespace, need_depth: bool = False
) -> tuple[list[dict], list[tuple[np.ndarray, np.ndarray]]]:
    """The selection's first ``args.limit`` samples (those with depth if ``need_depth``) and the checkpoint's
    outputs on them, through each image's camera: ``(mask_logits, depth)`` per sample (``Predictor.raw``)."""
    samples = [
        s
        for s in itertools.islice(iter_samples(args.data, args.selection), args.limit)
        if not need_depth or s["depth"] is not None
    ]
    if not samples:  # else an IndexError at samples[0]
        raise ValueError(f"{args.data}: no samples in the selection {args.selection!r}")
    return samples, checkpoint_outputs(args.checkpoint, samples)


def checkpoint_outputs(checkpoint: str, samples: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """A checkpoint's ``(mask_logits, depth)`` on each sample, through each image's camera (``Predictor.raw``)."""
    predictor = Predictor.load(checkpoint, default_size=samples[0]["composite"].shape[0])
    return predictor.raw(
        [s["background"] for s in samples],
        [s["composite"] for s in samples],
        [s.get("focal") for s in samples],
    )


def main() -> None:
    ap = diagnostic_parser(__doc__.splitlines()[0])
    ap.add_argument(
        "--grid", type=count, default=48, help="the depth output's side (tiny's branch: 48 at 160 px)"
    )
    args = ap.parse_args()
    kind = dataset_info(args.data)["depth_kind"]
    if kind != "metric":  # else no samples (an IndexError) or figures in metres of relative disparity
        raise ValueError(f"depth_errors.py needs a dataset with metric depth; {args.data} has {kind}")
    samples, preds = samples_and_outputs(args, need_depth=True)
    rows: dict[str, list[float]] = {k: [] for k in ("all", "room", "people", "scale_known", "people_own_scale",
                                                    "grid_room", "grid_people")}  # fmt: skip
    image_scale, person_scale = [], []
    by_bin = np.zeros((len(DEPTH_BINS_M) - 1, 3))  # within, count, sum of log error
    by_row = np.zeros((4, 2))
    for s, (_, depth) in zip(samples, preds):
        t, person = s["depth"], s["mask"]
        valid = t > 0
        r = np.log(np.maximum(depth, 1e-3)) - np.log(np.maximum(t, 1e-3))
        g = float(np.median(r[valid]))
        image_scale.append(g)
        rows["all"].append(_within(r[valid]))
        rows["room"].append(_within(r[valid & ~person]))
        rows["scale_known"].append(_within(r[valid] - g))
        rg = np.log(np.maximum(through_grid(t, args.grid), 1e-3)) - np.log(np.maximum(t, 1e-3))
        rows["grid_room"].append(_within(rg[valid & ~person]))
        if (valid & person).sum() >= 20:
            rp = r[valid & person]
            person_scale.append(float(np.median(rp)))
            rows["people"].append(_within(rp))
            rows["people_own_scale"].append(_within(rp - np.median(rp)))
            rows["grid_people"].append(_within(rg[valid & person]))
        room = valid & ~person
        for k in range(len(DEPTH_BINS_M) - 1):
            sel = room & (t >= DEPTH_BINS_M[k]) & (t < DEPTH_BINS_M[k + 1])
            by_bin[k] += (np.sum(np.abs(r[sel]) < LOG_125), sel.sum(), r[sel].sum())
        h = t.shape[0]
        for q in range(4):
            sel = room.copy()
            sel[: q * h // 4] = False
            sel[(q + 1) * h // 4 :] = False
            by_row[q] += (np.sum(np.abs(r[sel]) < LOG_125), sel.sum())

    mean = {k: float(np.nanmean(v)) if v else float("nan") for k, v in rows.items()}
    print(f"{len(samples)} samples of {args.data} ({args.selection}), {args.checkpoint}")
    print(f"delta1: all {mean['all']:.3f}, room {mean['room']:.3f}, people {mean['people']:.3f}")
    print(f"delta1 with each image's scale known: {mean['scale_known']:.3f}; people, each person's own scale: "
          f"{mean['people_own_scale']:.3f}")  # fmt: skip
    g, p = np.array(image_scale), np.array(person_scale)
    print(f"log scale error per image: mean {g.mean():+.3f}, std {g.std():.3f}; per person: mean {p.mean():+.3f}, "
          f"std {p.std():.3f}, off by > 25 %: {np.mean(np.abs(p) > LOG_125):.2f}")  # fmt: skip
    n = np.maximum(by_bin[:, 1], 1)
    edges = ", ".join(f"{a:g}-{b:g} m" for a, b in itertools.pairwise(DEPTH_BINS_M))
    print(f"room by true depth ({edges}): delta1 {np.round(by_bin[:, 0] / n, 3).tolist()}, "
          f"mean log error {np.round(by_bin[:, 2] / n, 3).tolist()}")  # fmt: skip
    print(f"room by image quarter, top to bottom: delta1 {np.round(by_row[:, 0] / by_row[:, 1], 3).tolist()}")
    print(f"true depth through a {args.grid} px grid and back: delta1 room {mean['grid_room']:.3f}, "
          f"people {mean['grid_people']:.3f}")  # fmt: skip


if __name__ == "__main__":
    run(main)
