"""How fast a depth teacher labels images, and what that means for the reference dataset.

Randomly initialised models with the architecture of real checkpoints (weights do not change the speed):

- ``da-v2-small``: Depth Anything V2 Small (DINOv2-S/14 + DPT head, 24.8 M params), native input 518 px;
- ``dpt-hybrid-midas``: MiDaS 3.0 DPT-Hybrid (BiT-R50 + ViT-B/16, 123 M params), native input 384 px;
- ``dpt-large``: MiDaS 3.0 DPT-Large (ViT-L/16, 343 M params), native 384 px (not run by default).

Each model runs at its native size and at ``--size`` (224) on square ``--image`` px RGB frames through
``DepthTeacher.predict`` (preprocessing and resizing back included), ``--batch`` images per pass. The machine
is shared, so each figure is the BEST of ``--repeats`` timed batches after one warm-up batch.

The reference dataset has 100 backgrounds and 400,000 composites:

- ``per-composite``: the teacher labels every composite (400,000 passes);
- ``background-once``: the teacher labels each background once (100 passes) and a composite's depth is the
  background's depth with the person's depth pasted in.

Usage::

    python benchmarks/teacher.py [--quick] [--json OUT] [--models da-v2-small,dpt-hybrid-midas]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fgdepth.teacher import DepthTeacher, build_depth_model

N_BACKGROUNDS, N_COMPOSITES = 100, 400_000
MODELS = {  # name -> (model_type, preset)
    "da-v2-small": ("depth_anything", "reference"),
    "dpt-hybrid-midas": ("dpt", "reference"),
    "dpt-large": ("dpt", "dpt-large"),
}


def bench_model(
    name: str, sizes: list[int | None], image: int, batch: int, repeats: int, device: str | None
) -> list[dict]:
    """Rows of figures for one model at each input size (None = native)."""
    model_type, preset = MODELS[name]
    model, prep = build_depth_model(model_type, preset)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (image, image, 3), dtype=np.uint8) for _ in range(batch)]
    rows = []
    for size in sizes:
        teacher = DepthTeacher.from_model(model, prep, name, device=device, input_size=size, batch_size=batch)
        teacher.predict(images)  # warm-up
        times = []
        for _ in range(repeats):
            if teacher.info.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            teacher.predict(images)
            if teacher.info.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        best = min(times)
        passes_per_s = batch / best
        rows.append(
            {
                "model": name,
                "params_m": round(params, 1),
                "input": teacher.info.input_size,
                "native": size is None,
                "batch": batch,
                "device": teacher.info.device,
                "dtype": teacher.info.dtype,
                "times_s": [round(t, 4) for t in times],
                "ms_per_pass": 1000 * best / batch,
                "passes_per_s": passes_per_s,
                "per_composite_h": N_COMPOSITES / passes_per_s / 3600,
                "background_once_s": N_BACKGROUNDS / passes_per_s,
                "loadavg_1min": os.getloadavg()[0],  # > cpu_count: other work competed for the cores
            }
        )
        print(_format_row(rows[-1]), flush=True)
    return rows


HEADER = (
    f"{'model':<17} {'params':>7} {'input':>6} {'batch':>5} {'ms/pass':>9} {'passes/s':>9} "
    f"{'per-composite':>14} {'bg-once':>9} {'load':>5}"
)


def _format_row(r: dict) -> str:
    size = f"{r['input']}{'*' if r['native'] else ''}"
    return (
        f"{r['model']:<17} {r['params_m']:>6.1f}M {size:>6} {r['batch']:>5} {r['ms_per_pass']:>9.1f} "
        f"{r['passes_per_s']:>9.2f} {r['per_composite_h']:>12.1f} h {r['background_once_s']:>7.1f} s {r['loadavg_1min']:>5.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", default="da-v2-small,dpt-hybrid-midas", help=f"any of {', '.join(MODELS)}"
    )
    parser.add_argument("--size", type=int, default=224, help="input size run besides the native one")
    parser.add_argument("--image", type=int, default=224, help="side of the square RGB frames labelled")
    parser.add_argument("--batch", type=int, default=None, help="images per pass (default 4; --quick 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed batches (default 3; --quick 2)")
    parser.add_argument("--device", default=None, help="default: CUDA if available, else CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="batch 2, 2 repeats")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    batch = args.batch or (2 if args.quick else 4)
    repeats = args.repeats or (2 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1min": os.getloadavg()[0],
        "torch": torch.__version__,
    }
    print(f"{env}; best of {repeats} timed batches after one warm-up; {args.image}x{args.image} px frames")
    print(HEADER)
    rows = []
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
        rows += bench_model(name, [None, args.size], args.image, batch, repeats, args.device)
    print(f"* native input size. per-composite: {N_COMPOSITES:,} passes; bg-once: {N_BACKGROUNDS} passes.")
    print("load: 1-minute load average after the row; above the core count the figures are pessimistic.")
    if args.json:
        args.json.write_text(
            json.dumps({"env": env, "batch": batch, "repeats": repeats, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
