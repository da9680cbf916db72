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

The last table times the whole labelling path (``fgdepth.labeling.label_depth``: reading, teacher passes,
composing, PNG encoding, rewriting shards) on a SUBSET (``--label-subset`` composites of a procedural dataset at
224 px, a DA-V2-Small-sized random checkpoint saved to a temporary folder, input ``--size``), and EXTRAPOLATES
to the reference dataset: model load + per-background time x 100 + per-composite time x 400,000.

Usage::

    python benchmarks/teacher.py [--quick] [--json OUT] [--models da-v2-small,dpt-hybrid-midas]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fgdepth.config import FactoryConfig
from fgdepth.factory import make_dataset
from fgdepth.labeling import label_depth, load_teacher
from fgdepth.teacher import DepthTeacher, build_depth_model, make_reference_checkpoint

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


def bench_labelling(n_composites: int, size: int, batch: int, device: str | None) -> list[dict]:
    """Time ``label_depth`` in both modes on a procedural subset; extrapolate to the reference dataset."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="fgdepth-label-bench-") as tmp:
        ckpt = make_reference_checkpoint(Path(tmp) / "da-v2-small", "da-v2-small")
        cfg = FactoryConfig(
            num_bg=4, num_fg=5, placements=2, limit=n_composites, depth="none", val_fraction=0,
            test_fraction=0, workers=1,
        )  # fmt: skip
        data = Path(tmp) / "data"
        manifest = make_dataset(cfg, data)
        n_bg, n = manifest["counts"]["backgrounds"], manifest["counts"]["samples"]
        start = time.perf_counter()
        load_teacher(ckpt, size, batch, device)
        load_s = time.perf_counter() - start
        for mode in ("background-once", "per-composite"):
            marks: list[float] = []
            start = time.perf_counter()
            label_depth(
                data, ckpt, mode=mode, input_size=size, batch_size=batch, overwrite_depth=True,
                device=device, progress=lambda *_, m=marks: m.append(time.perf_counter()),
            )  # fmt: skip
            end = time.perf_counter()
            per_bg = max(marks[0] - start - load_s, 0.0) / n_bg  # first mark: backgrounds labelled
            per_comp = (end - marks[0]) / n
            reference = load_s + per_bg * N_BACKGROUNDS + per_comp * N_COMPOSITES
            rows.append(
                {
                    "strategy": mode,
                    "subset_backgrounds": n_bg,
                    "subset_composites": n,
                    "measured_s": end - start,
                    "load_s": load_s,
                    "per_background_ms": 1000 * per_bg,
                    "per_composite_ms": 1000 * per_comp,
                    "reference_h_extrapolated": reference / 3600,
                    "input": size,
                    "batch": batch,
                    "loadavg_1min": os.getloadavg()[0],
                }
            )
            r = rows[-1]
            print(
                f"{mode:<16} {n_bg:>3} bg {n:>4} comp {r['measured_s']:>8.1f} s   load {load_s:>4.1f} s "
                f"{r['per_background_ms']:>7.1f} ms/bg {r['per_composite_ms']:>7.1f} ms/comp  "
                f"-> {r['reference_h_extrapolated']:>7.2f} h (extrapolated) {r['loadavg_1min']:>5.1f}",
                flush=True,
            )
    return rows


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
    parser.add_argument(
        "--label-subset", type=int, default=None, help="composites labelled end to end (default 40; 0 = skip)"
    )
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
    subset = 40 if args.label_subset is None else args.label_subset
    labelling = []
    if subset > 0:
        print(
            f"\nlabel_depth end to end, da-v2-small (random weights) at {args.size} px, batch {batch}, on a "
            f"{subset}-composite subset; EXTRAPOLATED to {N_BACKGROUNDS} backgrounds / {N_COMPOSITES:,} composites:"
        )
        labelling = bench_labelling(subset, args.size, batch, args.device)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"env": env, "batch": batch, "repeats": repeats, "rows": rows, "labelling": labelling},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
