"""Training throughput (images/s) per preset: forward + MultiTaskLoss + backward + AdamW step on random data.

Each setting is timed as the best of ``--repeats`` runs of ``--steps`` steps after a warm-up (best-of because
the CPU may be shared; re-run on a quiet machine for figures to quote). One "image" is one
(background, composite) pair with its targets. For a model with a depth branch (``tiny``) it is a training
step's pair: a ``size`` crop for the main network and the whole image at ``--view-size`` for the branch (the
demo: 96 px crops of 160 px images, the branch's view 0.6 x 160 = 96 px).

    python benchmarks/train_speed.py                       # default cases, 2 threads
    python benchmarks/train_speed.py --case tiny:96:32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from fgdepth.data import schema
from fgdepth.losses import MultiTaskLoss
from fgdepth.model import count_parameters, create_model
from fgdepth.train import model_step

DEFAULT_CASES = ["tiny:96:32", "small:96:32", "small:192:16", "base:192:8"]
MODES = ("fp32", "fp32-cl", "bf16", "bf16-cl")  # dtype, "-cl": channels_last


def make_batch(batch: int, size: int, channels_last: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    depth = 1 + 4 * torch.rand(batch, 1, size, size, generator=g)
    return {
        "background": torch.rand(batch, 3, size, size, generator=g).contiguous(memory_format=fmt),
        "composite": torch.rand(batch, 3, size, size, generator=g).contiguous(memory_format=fmt),
        "mask": (torch.rand(batch, 1, size, size, generator=g) > 0.7).float(),
        "depth": depth,
        "depth_valid": torch.ones_like(depth),
    }


def images_per_second(
    preset: str,
    size: int,
    batch: int,
    bf16: bool,
    channels_last: bool,
    steps: int,
    repeats: int,
    view_size: int | None = None,
) -> tuple[float, int]:
    torch.manual_seed(0)
    model = create_model(preset).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    crit = MultiTaskLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = make_batch(batch, size, channels_last)
    if model.depth_net is not None:  # the branch trains on its own whole-image view, as in fgdepth.train
        data[schema.DEPTH_VIEW] = make_batch(batch, view_size or size, channels_last)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model_step(model, crit, data)[1]["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t) / steps)
    return batch / best, count_parameters(model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", help="preset:size:batch (repeatable)", default=None)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is kept")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    ap.add_argument(
        "--view-size", type=int, default=None, help="depth branch's view (default: the case's size)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"{'preset':<7} {'params':>8} {'size':>5} {'batch':>5} {'dtype':>5} {'chl':>4} {'img/s':>8}")
    for case in args.case or DEFAULT_CASES:
        preset, size, batch = case.split(":")
        for mode in args.modes.split(","):
            if mode not in MODES:
                raise SystemExit(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
            bf16, cl = mode.startswith("bf16"), mode.endswith("-cl")
            ips, n = images_per_second(
                preset, int(size), int(batch), bf16, cl, args.steps, args.repeats, args.view_size
            )
            row = {
                "preset": preset,
                "params": n,
                "size": int(size),
                "batch": int(batch),
                "dtype": "bf16" if bf16 else "fp32",
                "channels_last": cl,
                "images_per_s": round(ips, 1),
            }
            rows.append(row)
            chl = "yes" if cl else "no"
            print(
                f"{preset:<7} {n / 1e6:>7.2f}M {size:>5} {batch:>5} {row['dtype']:>5} {chl:>4} {ips:>8.1f}",
                flush=True,
            )
    if args.json:
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "best_of": args.repeats}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
