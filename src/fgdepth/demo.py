"""``fgdepth demo``: the whole cycle on the embedded procedural world, sized for a 2-core laptop.

procedural world -> dataset (shards) -> train the ``tiny`` preset under a time budget -> evaluate on the held-out
test selection (rooms and people never seen in training) -> HTML report. Each stage resumes if rerun.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fgdepth.config import FactoryConfig
from fgdepth.data.codec import atomic_write_bytes, require_out_folder
from fgdepth.metrics import HEADLINE_KEYS
from fgdepth.train import TrainConfig, trains_on_cuda


@dataclass
class DemoConfig:
    """Sizes chosen so the demo ends in under 10 minutes on 2 CPU cores."""

    # depth generalises with rooms, not placements: many rooms, one placement per (room, person, flip), and a
    # seeded subset of those pairs (limit). With 300 rooms (all 24,000 pairs) the 6-minute model reached depth
    # delta1 0.90 on its training rooms and 0.82 on unseen ones; 1,000 rooms x 24 people each closed most of that
    # gap (1,000 samples of an unseen world: delta1 0.792 -> 0.812) for 45 s more of rendering
    num_bg: int = 1000  # rooms: 800 train / 100 val / 100 test
    num_fg: int = 40  # people (+ mirrors): 32 / 4 / 4
    placements: int = 1
    limit: int | None = 24_000  # samples: 15,300 train, ~240 test (100 unseen rooms x 4 unseen people)
    size: int = 160  # stored resolution, and the inference size (whole images)
    # the mask network trains on crops at the stored scale, so masks are predicted at 160 px (96 px crops: test
    # IoU 0.887 vs 0.830 with whole images resized to 96, same data and budget). 48 px crops, most of them moved
    # onto the person (person_crop_p), cost the step about 40 % less, and the depth branch (whole images at 96 px
    # whatever the crops) sees that many more samples: tiny, 6 CPU min, means over three seeds against 96 px
    # crops, test delta1 0.881 vs 0.853, AbsRel 0.118 vs 0.131, mask IoU 0.912 vs 0.917; 1,000 unseen samples
    # delta1 0.862 vs 0.835, AbsRel 0.127 vs 0.140, mask 0.899 vs 0.899 (docs/experiments.md, session 15).
    # Some of those crops fall beside the person (AugmentConfig.person_crop_spread), else some runs predict
    # blobs there
    train_size: int = 48
    person_crop_p: float = 0.8
    # 30 % of the training people have a band of clothing coloured like the room behind them (held-out splits stay
    # as drawn): the model learns people's shape where colour difference fails, as on real photographs. 6 CPU
    # min, seeds 0 / 1: 1,000 unseen camouflaged samples IoU 0.827 / 0.788 -> 0.847 / 0.832 (recall 0.876 / 0.820
    # -> 0.907 / 0.884), clean test and dsE within the spread (0.918 / 0.903 -> 0.916 / 0.901, 0.905 / 0.893 ->
    # 0.907 / 0.895); 60 % cost dsE 0.006-0.008 (docs/experiments.md, session 19)
    camouflage: float = 0.3
    train_minutes: float = 6.0
    model: str = "tiny"
    seed: int = 0
    workers: int = 2  # processes that render the world
    # Where training runs ("auto": a GPU if there is one), its batch, and a torch.compile mode for its step. On one
    # H200, batch 128 with "reduce-overhead" trained 5,014 steps in the 6 minutes: test IoU 0.942, AbsRel 0.104,
    # delta1 0.912, against 0.909 / 0.121 / 0.872 for batch 32 on 2 CPU cores (docs/experiments.md,
    # session 22)
    accelerator: str = "auto"
    batch_size: int = 32
    compile: str | None = None


def run_demo(
    out: str | Path,
    cfg: DemoConfig | None = None,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
) -> dict:
    """Run every stage into ``out`` and return the headline metrics (also in ``out/demo.json``).

    A world already in ``out/data`` is reused (the factory resumes it); one made with other settings raises
    ``fgdepth.factory.DatasetExistsError`` naming them, unless ``overwrite`` replaces it. Training starts again."""
    from fgdepth.evaluate import evaluate
    from fgdepth.factory import make_dataset
    from fgdepth.report import make_report
    from fgdepth.train import fit

    cfg = cfg or DemoConfig()
    out = require_out_folder(out)
    timings: dict[str, float] = {}

    data = out / "data"
    # both stages' settings are checked (TrainConfig, FactoryConfig) before any work
    run = out / "run"
    tcfg = TrainConfig(
        data=str(data),
        out=str(run),
        model=cfg.model,
        size=cfg.train_size,
        infer_size=cfg.size,
        max_minutes=cfg.train_minutes,
        seed=cfg.seed,
        accelerator=cfg.accelerator,
        batch_size=cfg.batch_size,
        compile=cfg.compile,
        # tiny's mask network validates on 1.4x enlarged images (2x the compute; at 1.6x four validations of the
        # 223-sample selection took ~50 s of the 6 minutes, 809 -> 690 steps); one of 128 samples takes ~7 s
        val_every_steps=300,
        val_samples=128,
        augment_config={"person_crop_p": cfg.person_crop_p},
        overwrite=True,  # a rerun of the demo trains again; its world is reused (the factory resumes)
    )
    fcfg = FactoryConfig(
        num_bg=cfg.num_bg,
        num_fg=cfg.num_fg,
        placements=cfg.placements,
        limit=cfg.limit,
        size=cfg.size,
        shard_size=500,
        camouflage=cfg.camouflage,
        seed=cfg.seed,
        workers=cfg.workers,
    )
    fcfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    log(f"[1/4] procedural world -> {data}")
    manifest = make_dataset(fcfg, data, overwrite=overwrite)
    timings["dataset_s"] = round(time.time() - t, 1)
    log(f"      {manifest['counts']['samples']:,} samples in {timings['dataset_s']} s")

    t = time.time()
    log(f"[2/4] training {cfg.model} for {cfg.train_minutes} min (batch {cfg.batch_size}) -> {run}")
    fit(tcfg)
    timings["train_s"] = round(time.time() - t, 1)

    t = time.time()
    log("[3/4] evaluating on the held-out test selection (unseen rooms and people)")
    ckpt = run / "checkpoints" / "best.ckpt"
    device = "cuda" if trains_on_cuda(tcfg) else "cpu"  # evaluate where training ran
    # through each image's camera as the world records it, and as if the cameras were unknown
    results = evaluate(ckpt, data, selection="test", device=device)
    blind = evaluate(ckpt, data, selection="test", intrinsics=False, device=device)
    timings["evaluate_s"] = round(time.time() - t, 1)

    t = time.time()
    log("[4/4] report")
    report = make_report(run, data=data)
    timings["report_s"] = round(time.time() - t, 1)

    headline = {k: results[k] for k in HEADLINE_KEYS}
    camera_unknown = {k: blind[k] for k in ("depth_abs_rel", "depth_rmse", "depth_delta1")}
    summary = {
        "headline": headline,
        "camera": results["camera"],
        "camera_unknown": camera_unknown,
        "timings": timings,
        "report": str(report),
        "checkpoint": str(ckpt),
    }
    atomic_write_bytes(out / "demo.json", json.dumps(summary, indent=2).encode())
    return summary
