"""How a checkpoint's mask holds when the two shots differ as a real camera's do: JPEG, exposure, white balance,
sensor noise, a pixel of misalignment, and all of them at once; light that changed over part of the room; and
when the camera is softer than the training world's renders (both shots blurred alike) or its focus changed
between the shots (the composite blurred).

Usage:
    python benchmarks/shot_differences.py CKPT DATA [--selection test] [--limit 1000] [--seed 0]

Each row changes the background shot of every sample (the composite as stored, except for noise, which both shots
get, each its own; shifts are diagonal, (d, d) pixels at the dataset's size) and scores the checkpoint's masks
without and with the registration of the shots (`fgdepth.register`: the background moved and re-exposed to match
the composite, the predictor's default) and the classical baseline's (Otsu on |composite - background|,
`fgdepth.baseline`, on the shots as changed). "Speckle" is the share of the
image predicted foreground more than 2 px away from any true person (``fgdepth.losses.boundary_band``): what a
model that learnt pixel difference marks on a room that has not changed. Every draw comes from a generator seeded
by (seed, row, sample index).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable

import cv2
import numpy as np
import torch
from common import count, run
from mask_errors import iou

from fgdepth.baseline import difference_mask
from fgdepth.evaluate import iter_samples
from fgdepth.losses import boundary_band
from fgdepth.predict import Predictor

Shots = tuple[np.ndarray, np.ndarray]  # (background, composite), (H, W, 3) uint8 RGB


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _gain(image: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return np.clip(image.astype(np.float32) * np.float32(gains), 0, 255).round().astype(np.uint8)


def _noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Moved by (dx, dy) pixels (bilinear where fractional), edges repeated."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Turned by ``degrees`` about the image's centre (a camera knocked, not moved), edges repeated."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _light_field(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) times a gain ``field`` (H, W): light that changed over part of the room."""
    return np.clip(image.astype(np.float32) * field[..., None], 0, 255).round().astype(np.uint8)


def _side_light(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Gain rising from ``lo`` at the left edge to ``hi`` at the right: a window's light that changed."""
    w = image.shape[1]
    return _light_field(image, np.broadcast_to(np.linspace(lo, hi, w, dtype=np.float32), image.shape[:2]))


def _light_pool(image: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """A soft pool of light (a lamp switched on, a patch of sun) at a random place: gain ``gain`` at its centre,
    its radius a quarter of the image's side."""
    h, w = image.shape[:2]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (0.25 * min(h, w)) ** 2
    return _light_field(image, 1 + (gain - 1) * np.exp(-r2).astype(np.float32))


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def _all(bg: np.ndarray, comp: np.ndarray, rng: np.random.Generator) -> Shots:
    bg = _shift(_gain(bg, (1.1, 1.05, 0.95)), 1, 0)
    return _noise(_jpeg(bg, 60), 3.0, rng), _noise(comp, 3.0, rng)


CHANGES: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], Shots]] = {
    "none (as stored)": lambda bg, comp, rng: (bg, comp),
    "background JPEG q50": lambda bg, comp, rng: (_jpeg(bg, 50), comp),
    "background exposure x1.15": lambda bg, comp, rng: (_gain(bg, (1.15, 1.15, 1.15)), comp),
    "background exposure x0.85": lambda bg, comp, rng: (_gain(bg, (0.85, 0.85, 0.85)), comp),
    "background white balance (1.08, 1, 0.92)": lambda bg, comp, rng: (_gain(bg, (1.08, 1.0, 0.92)), comp),
    "noise sigma 4 on both shots": lambda bg, comp, rng: (_noise(bg, 4.0, rng), _noise(comp, 4.0, rng)),
    "background shifted 0.5 px": lambda bg, comp, rng: (_shift(bg, 0.5, 0.5), comp),
    "background shifted 1 px": lambda bg, comp, rng: (_shift(bg, 1, 1), comp),
    "background shifted 3 px": lambda bg, comp, rng: (_shift(bg, 3, 3), comp),
    "background rotated 0.5 degrees": lambda bg, comp, rng: (_rotate(bg, 0.5), comp),
    "all: x1.1 warm, 1 px, q60, noise 3": _all,
    "background lit x0.85 -> x1.15 across": lambda bg, comp, rng: (_side_light(bg, 0.85, 1.15), comp),
    "a pool of light x1.3 on the background": lambda bg, comp, rng: (_light_pool(bg, 1.3, rng), comp),
    "a pool of shade x0.75 on the background": lambda bg, comp, rng: (_light_pool(bg, 0.75, rng), comp),
    "a pool of shade x0.5 on the background": lambda bg, comp, rng: (_light_pool(bg, 0.5, rng), comp),
    "a pool of light x1.6 on the background": lambda bg, comp, rng: (_light_pool(bg, 1.6, rng), comp),
    "both shots blurred sigma 0.8 px": lambda bg, comp, rng: (_blur(bg, 0.8), _blur(comp, 0.8)),
    "both shots blurred sigma 1.2 px": lambda bg, comp, rng: (_blur(bg, 1.2), _blur(comp, 1.2)),
    "composite blurred sigma 0.8 px": lambda bg, comp, rng: (bg, _blur(comp, 0.8)),
}


def _scores(pred: np.ndarray, true: np.ndarray, near: np.ndarray) -> tuple[float, float]:
    """IoU (1 when both are empty) and speckle: the image's share predicted foreground away from the true people
    and from ``near``, the band around their outline."""
    return iou(pred, true), float(np.mean(pred & ~true & ~near))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("data")
    ap.add_argument("--selection", default="test")
    ap.add_argument("--limit", type=count, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="only the changes whose name contains this text")
    args = ap.parse_args()

    samples = list(itertools.islice(iter_samples(args.data, args.selection), args.limit))
    if not samples:  # else an IndexError at samples[0]
        raise ValueError(f"{args.data}: no samples in the selection {args.selection!r}")
    predictor = Predictor.load(args.checkpoint, default_size=samples[0]["composite"].shape[0])
    truth = [s["mask"].astype(bool) for s in samples]
    # the outline band depends on the truth only: once per sample, not per change and scorer
    bands = [
        boundary_band(torch.from_numpy(t.astype(np.float32))[None, None])[0, 0].numpy() > 0.5 for t in truth
    ]
    print(f"{len(samples)} samples of {args.data} ({args.selection}), {args.checkpoint}")
    print(
        f"{'change between the shots':42s} {'IoU':>6s} {'speckle %':>9s} {'registered':>10s} {'speckle %':>9s} "
        f"{'baseline IoU':>12s} {'speckle %':>9s}"
    )
    for c, (name, change) in enumerate(CHANGES.items()):
        if args.only is not None and args.only not in name:
            continue
        shots = [
            change(s["background"], s["composite"], np.random.default_rng([args.seed, c, i]))
            for i, s in enumerate(samples)
        ]
        scores = []
        for register in (False, True):
            predictor.register = register
            outputs = predictor.raw(
                [b for b, _ in shots], [x for _, x in shots], [s.get("focal") for s in samples]
            )
            scores.append(
                np.array([_scores(logits > 0, t, n) for (logits, _), t, n in zip(outputs, truth, bands)])
            )
        base = np.array([_scores(difference_mask(b, x), t, n) for (b, x), t, n in zip(shots, truth, bands)])
        raw, registered = scores
        print(
            f"{name:42s} {raw[:, 0].mean():6.3f} {100 * raw[:, 1].mean():9.3f} "
            f"{registered[:, 0].mean():10.3f} {100 * registered[:, 1].mean():9.3f} "
            f"{base[:, 0].mean():12.3f} {100 * base[:, 1].mean():9.3f}"
        )


if __name__ == "__main__":
    run(main)
