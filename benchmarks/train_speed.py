"""Training throughput (images/s) per preset: forward + MultiTaskLoss + backward + AdamW step on random data.

Each setting is timed as the best of ``--repeats`` runs of ``--steps`` steps after a warm-up (best-of because
the CPU may be shared; re-run on a quiet machine for figures to quote). One "image" is one
(background, composite) pair with its targets. For a model with a depth branch (``tiny``) it is a training
step's pair: a ``size`` crop for the main network and the whole image at ``--view-size`` for the branch (the
demo: 96 px crops of 160 px images, the branch's view 0.6 x 160 = 96 px).

    python benchmarks/train_speed.py                       # default cases, 2 threads
    python benchmarks/train_speed.py --case tiny:96:32 --json out.json
    python benchmarks/train_speed.py --device cuda --modes fp32,bf16-cl,fp16-cl --case base:192:64

On CUDA, ``fp16`` modes scale the loss (``torch.amp.GradScaler``), as Lightning's ``16-mixed`` does; times are
taken after ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import count, describe_device, run

from fgdepth.data import schema
from fgdepth.losses import MultiTaskLoss
from fgdepth.model import count_parameters, create_model
from fgdepth.train import model_step

DEFAULT_CASES = ["tiny:96:32", "small:96:32", "small:192:16", "base:192:8"]
MODES = ("fp32", "fp32-cl", "bf16", "bf16-cl", "fp16", "fp16-cl")  # dtype, "-cl": channels_last; fp16: CUDA
CPU_MODES = ("fp32", "fp32-cl", "bf16", "bf16-cl")
CUDA_MODES = ("fp32", "fp32-cl", "bf16-cl", "fp16-cl")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_batch(batch: int, size: int, channels_last: bool, device: str = "cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    depth = 1 + 4 * torch.rand(batch, 1, size, size, generator=g)
    out = {
        "background": torch.rand(batch, 3, size, size, generator=g),
        "composite": torch.rand(batch, 3, size, size, generator=g),
        "mask": (torch.rand(batch, 1, size, size, generator=g) > 0.7).float(),
        "depth": depth,
        "depth_valid": torch.ones_like(depth),
    }
    out = {k: v.to(device) for k, v in out.items()}
    for k in ("background", "composite"):
        out[k] = out[k].contiguous(memory_format=fmt)
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def images_per_second(
    preset: str,
    size: int,
    batch: int,
    dtype: str,
    channels_last: bool,
    steps: int,
    repeats: int,
    view_size: int | None = None,
    device: str = "cpu",
) -> tuple[float, int]:
    """Training images/s of one setting; ``dtype`` "fp32" | "bf16" | "fp16" (autocast; fp16 with loss scaling)."""
    dev_type = torch.device(device).type
    if dtype == "fp16" and dev_type != "cuda":
        raise ValueError("fp16 autocast is timed on CUDA only (CPU: fp32 or bf16)")
    torch.manual_seed(0)
    model = create_model(preset).train().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    crit = MultiTaskLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(dev_type, enabled=dtype == "fp16")
    data = make_batch(batch, size, channels_last, device)
    if model.depth_net is not None:  # the branch trains on its own whole-image view, as in fgdepth.train
        data[schema.DEPTH_VIEW] = make_batch(batch, view_size or size, channels_last, device)

    def step() -> None:
        with torch.autocast(dev_type, dtype=DTYPES[dtype], enabled=dtype != "fp32"):
            loss = model_step(model, crit, data)[1]["loss"]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(2):
        step()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        best = min(best, (time.perf_counter() - t) / steps)
    return batch / best, count_parameters(model)


def parse_case(text: str) -> str:
    """argparse type of ``--case``: ``preset:size:batch`` with size and batch counts (else a tuple-unpacking
    ValueError naming no option)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected preset:size:batch, got {text!r}")
    count(parts[1]), count(parts[2])
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--case", type=parse_case, action="append", help="preset:size:batch (repeatable)", default=None
    )
    ap.add_argument("--steps", type=count, default=3, help="steps per timed repeat")
    ap.add_argument("--repeats", type=count, default=3, help="timed repeats; the best is kept")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument(
        "--modes",
        default=None,
        help=f"comma-separated subset of {','.join(MODES)} (default: {','.join(CPU_MODES)} on CPU, "
        f"{','.join(CUDA_MODES)} on CUDA)",
    )
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    ap.add_argument(
        "--view-size", type=count, default=None, help="depth branch's view (default: the case's size)"
    )
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    on_cuda = args.device.startswith("cuda")
    where = describe_device(args.device)
    print(f"torch {torch.__version__}, {args.device}: {where}")
    print(f"{'preset':<7} {'params':>8} {'size':>5} {'batch':>5} {'dtype':>5} {'chl':>4} {'img/s':>8}")
    modes = args.modes.split(",") if args.modes else CUDA_MODES if on_cuda else CPU_MODES
    for case in args.case or DEFAULT_CASES:
        preset, size, batch = case.split(":")
        for mode in modes:
            if mode not in MODES:
                raise SystemExit(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
            dtype, cl = mode.split("-")[0], mode.endswith("-cl")
            ips, n = images_per_second(
                preset,
                int(size),
                int(batch),
                dtype,
                cl,
                args.steps,
                args.repeats,
                args.view_size,
                args.device,
            )
            row = {
                "preset": preset,
                "params": n,
                "size": int(size),
                "batch": int(batch),
                "dtype": dtype,
                "device": args.device,
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
        meta = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": where,
            "best_of": args.repeats,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    run(main)
