"""How fast ``make_dataset`` writes 224 px samples (composite JPEG + mask PNG + 16-bit depth PNG + meta JSON).

Two kinds of inputs (``--inputs``). ``folders``: made here, like a user's folders: ``--backgrounds`` textured JPEG
rooms of 256-320 px with smooth uint16 depth maps, and ``--people`` RGBA PNG cut-outs about 200 px tall with soft
alpha edges; random placement. ``procedural``: the embedded world (``--backgrounds`` rooms, ``--people`` people),
geometry-aware placement with occlusion and exact per-pixel depth; its render time is not counted. Each run builds a
fresh dataset of ``--samples`` samples; the clock starts when the stored world is written and the plan is made
(the first progress call) and stops when the manifest is written, so the figure is the steady-state rate of
composing, encoding and writing. Reported per format and worker count: samples/s and bytes/sample.

Also: the per-sample time split of one process (compose, JPEG, mask PNG, depth PNG, meta, tar) and, with
``--profile``, a cProfile of ``write_unit`` on one shard.

The machine may be shared: figures are lower bounds; the load average is printed with them.

Usage::

    python benchmarks/factory.py [--samples 8000] [--workers 1,2] [--format webdataset|folders|both]
                                 [--inputs folders,procedural] [--engines local,ray] [--profile] [--json OUT]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import importlib.util
import io
import json
import math
import os
import platform
import pstats
import resource
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from common import count, counts, run

from fgdepth.config import FactoryConfig
from fgdepth.data import codec, schema
from fgdepth.factory import Composer, _Stats, make_dataset, make_plan, tar_member, write_unit
from fgdepth.world import load_world

SIZE = 224


def make_inputs(root: Path, n_bg: int, n_fg: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """User-folder-like inputs: JPEG rooms with uint16 mm depth PNGs, RGBA PNG people."""
    rng = np.random.default_rng(seed)
    bg_dir, depth_dir, fg_dir = root / "bg", root / "depth", root / "fg"
    for d in (bg_dir, depth_dir, fg_dir):
        d.mkdir(parents=True)
    for i in range(n_bg):
        h, w = int(rng.integers(256, 321)), int(rng.integers(256, 321))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = rng.uniform(40, 200, 3) + (yy / h)[..., None] * rng.uniform(-60, 60, 3)
        img += cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)).astype(np.float32), (0, 0), 4)
        img += rng.normal(0, 4, (h, w, 3))
        cv2.imwrite(
            str(bg_dir / f"room{i:03d}.jpg"),
            np.clip(img, 0, 255).astype(np.uint8),
            [cv2.IMWRITE_JPEG_QUALITY, 92],
        )
        depth = 7.0 - 5.0 * yy / h + 0.4 * np.sin(xx / w * np.pi * rng.uniform(1, 3))
        cv2.imwrite(str(depth_dir / f"room{i:03d}.png"), np.rint(depth * 1000).astype(np.uint16))
    for i in range(n_fg):
        h = int(rng.integers(180, 221))
        w = int(h * rng.uniform(0.35, 0.5))
        a = np.zeros((h + 8, w + 8), np.float32)
        cx = (w + 8) // 2
        cv2.circle(a, (cx, 4 + h // 9), h // 10, 1.0, -1)
        cv2.ellipse(a, (cx, 4 + h * 4 // 10), (w // 3, h // 5), 0, 0, 360, 1.0, -1)
        cv2.rectangle(a, (cx - w // 4, 4 + h // 2), (cx - 2, 3 + h), 1.0, -1)
        cv2.rectangle(a, (cx + 2, 4 + h // 2), (cx + w // 4, 3 + h), 1.0, -1)
        alpha = np.clip(np.rint(cv2.GaussianBlur(a, (0, 0), 1.5) * 255), 0, 255).astype(np.uint8)
        rgb = cv2.GaussianBlur(rng.normal(128, 50, (h + 8, w + 8, 3)).astype(np.float32), (0, 0), 2)
        bgra = np.dstack([np.clip(rgb, 0, 255).astype(np.uint8), alpha])
        cv2.imwrite(str(fg_dir / f"person{i:03d}.png"), bgra)
    return bg_dir, fg_dir, depth_dir


def bench_config(
    inputs: tuple[Path, Path, Path] | tuple[int, int],
    samples: int,
    fmt: str,
    workers: int,
    engine: str = "local",
) -> FactoryConfig:
    """``inputs``: the user-like folders (bg, fg, depth), or (rooms, people) of the procedural world."""
    if len(inputs) == 2:
        n_bg, n_fg = inputs
        return FactoryConfig(
            num_bg=n_bg,
            num_fg=n_fg,
            size=SIZE,
            placements=max(1, math.ceil(samples / (n_bg * n_fg * 2))),
            limit=samples,
            format=fmt,
            workers=workers,
            engine=engine,
        )
    bg_dir, fg_dir, depth_dir = inputs
    n_bg, n_fg = len(list(bg_dir.iterdir())), len(list(fg_dir.iterdir())) * 2
    return FactoryConfig(
        bg_dir=str(bg_dir),
        fg_dir=str(fg_dir),
        bg_depth_dir=str(depth_dir),
        size=SIZE,
        placements=max(1, math.ceil(samples / (n_bg * n_fg))),
        limit=samples,
        format=fmt,
        workers=workers,
        engine=engine,
    )


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_run(cfg: FactoryConfig, out: Path) -> dict:
    """Seconds from the first progress call (world stored, plan made) to the finished manifest, and the CPU
    seconds spent meanwhile by this process and its (reaped) worker processes."""
    start: list[float] = []

    def progress(done: int, total: int) -> None:
        if not start:
            start.extend([time.perf_counter(), time.process_time()])

    t0, c0 = time.perf_counter(), _children_cpu()
    manifest = make_dataset(cfg, out, overwrite=True, progress=progress)
    t1, cpu = time.perf_counter(), time.process_time() - start[1] + _children_cpu() - c0
    n = manifest["counts"]["samples"]
    nbytes = sum(u["bytes"] for u in manifest["units"])
    secs = t1 - start[0]
    return {
        "format": cfg.format,
        "engine": cfg.engine,
        "workers": cfg.workers,
        "samples": n,
        "seconds": round(secs, 3),
        "world_seconds": round(start[0] - t0, 3),
        "samples_per_s": round(n / secs, 1),
        "cpu_ms_per_sample": round(cpu / n * 1e3, 3),
        # what the same CPU work would give on ``workers`` idle cores (a shared machine hides it)
        "cpu_bound_samples_per_s": round(cfg.workers * n / cpu, 1),
        "bytes_per_sample": round(nbytes / n),
    }


def time_reader(root: Path, loader_workers: int) -> dict:
    """Samples/s of reading the dataset back as training tensors (decode + to_tensors), with a DataLoader."""
    from torch.utils.data import DataLoader

    from fgdepth.data.reader import ShardDataset, collate

    ds = ShardDataset(root, "all")
    loader = DataLoader(ds, batch_size=32, num_workers=loader_workers, collate_fn=collate)
    t0, n = time.perf_counter(), 0
    for batch in loader:
        n += len(batch["key"])
    secs = time.perf_counter() - t0
    return {
        "loader_workers": loader_workers,
        "samples": n,
        "seconds": round(secs, 3),
        "samples_per_s": round(n / secs, 1),
    }


def time_split(root: Path, cfg: FactoryConfig, n: int = 300) -> dict[str, float]:
    """Milliseconds per sample of each stage of ``write_unit``, in this process (one worker's view)."""
    world = load_world(root)
    plan = make_plan(cfg, world)
    composer = Composer(cfg, world, plan)
    indices = [i for u in plan.units for i in u.indices][:n]
    stages = ("compose", "jpeg", "mask_png", "depth_png", "meta_json", "stats", "tar")
    t = dict.fromkeys(stages, 0.0)
    buf, digest = io.BytesIO(), hashlib.sha256()
    for i in indices:
        clock = [time.perf_counter()]
        s = composer.sample(i)
        clock.append(time.perf_counter())
        jpg = codec.encode_jpeg(s.composed.composite, cfg.jpeg_quality)
        clock.append(time.perf_counter())
        msk = codec.encode_mask(s.composed.mask)
        clock.append(time.perf_counter())
        dep = codec.encode_depth(s.composed.depth, world.depth_scale)
        clock.append(time.perf_counter())
        meta = codec.dumps_meta(s.meta)
        clock.append(time.perf_counter())
        _Stats().add(s.composed)
        clock.append(time.perf_counter())
        files = {schema.EXT_COMP: jpg, schema.EXT_MASK: msk, schema.EXT_DEPTH: dep, schema.EXT_META: meta}
        for ext, data in files.items():
            for chunk in tar_member(f"{s.stem}.{ext}", data):  # as write_unit does, hash included
                buf.write(chunk)
                digest.update(chunk)
        clock.append(time.perf_counter())
        for k, t0, t1 in zip(stages, clock, clock[1:]):
            t[k] += t1 - t0
    out = {k: round(v / len(indices) * 1e3, 3) for k, v in t.items()}
    out["total"] = round(sum(out.values()), 3)
    return out


def profile_unit(root: Path, cfg: FactoryConfig, top: int = 18) -> str:
    world = load_world(root)
    plan = make_plan(cfg, world)
    composer = Composer(cfg, world, plan)
    unit = max(plan.units, key=lambda u: len(u.indices))
    scratch = root / "_profile"
    (scratch / schema.SHARD_DIR).mkdir(parents=True, exist_ok=True)
    prof = cProfile.Profile()
    prof.enable()
    write_unit(scratch, cfg, composer, unit)
    prof.disable()
    shutil.rmtree(scratch)
    s = io.StringIO()
    s.write(f"cProfile of write_unit on {unit.name} ({len(unit.indices)} samples)\n")
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=count, default=8000)
    ap.add_argument("--workers", type=counts, default=[1, 2])
    ap.add_argument("--engines", default="local,ray", help="local and/or ray (ray skipped if not installed)")
    ap.add_argument("--format", default="webdataset", choices=("webdataset", "folders", "both"))
    ap.add_argument("--backgrounds", type=count, default=20)
    ap.add_argument("--people", type=count, default=20)
    ap.add_argument("--inputs", default="folders,procedural", help="folders and/or procedural")
    ap.add_argument("--profile", action="store_true", help="cProfile write_unit on one shard")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--tmp", type=Path, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    formats = ["webdataset", "folders"] if args.format == "both" else [args.format]
    workers = args.workers
    kinds = args.inputs.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="fgdepth-bench-", dir=args.tmp))
    try:
        rows, readers, split = [], [], {}
        print(
            f"{'inputs format engine':<28} {'wkr':>3} {'samples':>8} {'seconds':>8} {'samples/s':>10} "
            f"{'cpu ms/sample':>14} {'cpu-bound/s':>12} {'bytes/sample':>13}"
        )
        engines = [e for e in args.engines.split(",") if e != "ray" or importlib.util.find_spec("ray")]
        for kind in kinds:
            if kind == "folders":
                inputs = make_inputs(tmp / "inputs", args.backgrounds, args.people)
            elif kind == "procedural":
                inputs = (args.backgrounds, args.people)
            else:
                raise SystemExit(f"--inputs: unknown kind {kind!r} (folders, procedural)")
            for engine in engines:
                for fmt in formats:
                    for w in workers:
                        out = tmp / f"ds-{kind}-{fmt}-{engine}"
                        row = {"inputs": kind} | time_run(
                            bench_config(inputs, args.samples, fmt, w, engine), out
                        )
                        row["load_avg"] = round(os.getloadavg()[0], 2)
                        if engine == "ray":  # Ray's workers are not this process's children: no CPU figure
                            row["cpu_ms_per_sample"] = row["cpu_bound_samples_per_s"] = float("nan")
                        rows.append(row)
                        print(
                            f"{kind + ' ' + fmt + ' ' + engine:<28} {w:>3} {row['samples']:>8} "
                            f"{row['seconds']:>8.2f} {row['samples_per_s']:>10,.0f} "
                            f"{row['cpu_ms_per_sample']:>14.3f} {row['cpu_bound_samples_per_s']:>12,.0f} "
                            f"{row['bytes_per_sample']:>13,}   (load avg {row['load_avg']})"
                        )
            root = tmp / f"ds-{kind}-{formats[0]}-local"
            if kind == kinds[0] and "webdataset" in formats and "local" in engines:
                for lw in (0, 2):
                    r = time_reader(tmp / f"ds-{kind}-webdataset-local", lw)
                    readers.append(r)
                    print(
                        f"reader (ShardDataset -> tensors, DataLoader workers {lw}): "
                        f"{r['samples_per_s']:,.0f} samples/s"
                    )
            if "local" in engines:
                cfg = bench_config(inputs, args.samples, formats[0], 1)
                split[kind] = time_split(root, cfg)
                print(
                    f"per-sample ms, {kind} (one process): "
                    + ", ".join(f"{k} {v:.3f}" for k, v in split[kind].items())
                )
                print(
                    f"  -> {1e3 / split[kind]['total']:,.0f} samples/s per process at most (excluding file I/O)"
                )
                if args.profile:
                    print(profile_unit(root, cfg))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "machine": {
                            "cpus": os.cpu_count(),
                            "platform": platform.platform(),
                            "opencv": cv2.__version__,
                        },
                        "size": SIZE,
                        "runs": rows,
                        "reader": readers,
                        "split_ms": split,
                    },
                    indent=2,
                )
                + "\n"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(main)
