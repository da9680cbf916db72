"""Inference latency per (background, composite) pair: PyTorch fp32, PyTorch bf16 autocast, onnxruntime; and the
registration of the shots that the predictor runs first (``fgdepth.register``, on the CPU).

Latency per pair = best-of-``--repeats`` time of one call / batch size (the CPU may be shared; re-run on a
quiet machine for figures to quote). Target: ``tiny`` under 15 ms per pair at 192 px with onnxruntime.

    python benchmarks/inference.py                      # tiny and small, 192 px, batch 1 and 16
    python benchmarks/inference.py --preset base --json out.json
    python benchmarks/inference.py --device cuda --preset base --batch 1 --batch 64   # fp32, bf16, fp16 on a GPU

On CUDA the PyTorch engines run on the GPU (times after ``torch.cuda.synchronize``) and onnxruntime is left out
(its CPU provider would be timed on the GPU machine's CPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import count, describe_device, run

from fgdepth.model import count_parameters, create_model


def best_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def bench_preset(
    preset: str,
    size: int,
    batches: list[int],
    repeats: int,
    onnx_dir: Path,
    overrides: dict | None = None,
    device: str = "cpu",
) -> list[dict]:
    model = create_model(preset, **(overrides or {})).eval().to(memory_format=torch.channels_last)
    dev_type = torch.device(device).type
    rows = []
    runner = None
    if dev_type == "cpu":
        try:
            from fgdepth.export import OnnxRunner, export_onnx

            path = onnx_dir / f"{preset}.onnx"
            export_onnx(model, path, size=size)
            runner = OnnxRunner(path)
        except ImportError as e:
            print(f"onnxruntime skipped: {e}")
    model = model.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if dev_type == "cuda" else (lambda: None)
    for batch in batches:
        bg = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        comp = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        reps = max(3, repeats // max(1, batch // 4))
        bg_dev, comp_dev = bg.to(device), comp.to(device)

        def torch_call(dtype: torch.dtype, bg: torch.Tensor = bg_dev, comp: torch.Tensor = comp_dev) -> None:
            with (
                torch.inference_mode(),
                torch.autocast(dev_type, dtype=dtype, enabled=dtype != torch.float32),
            ):
                model(bg, comp)

        engines: dict[str, Callable[[], object]] = {
            "torch_fp32": lambda: torch_call(torch.float32),
            "torch_bf16": lambda: torch_call(torch.bfloat16),
        }
        if dev_type == "cuda":
            engines["torch_fp16"] = lambda: torch_call(torch.float16)
        if runner is not None:
            bg_np, comp_np = bg.contiguous().numpy(), comp.contiguous().numpy()
            engines["onnxruntime"] = lambda r=runner, a=bg_np, b=comp_np: r(a, b)
        for engine, fn in engines.items():
            ms = best_time(fn, reps, sync) * 1e3 / batch
            rows.append(
                {
                    "preset": preset,
                    "params": count_parameters(model),
                    "size": size,
                    "batch": batch,
                    "engine": engine,
                    "device": device,
                    "ms_per_pair": round(ms, 2),
                }
            )
            print(f"{preset:<7} {size:>5} {batch:>5} {engine:<12} {ms:>8.2f}", flush=True)
    return rows


def bench_register(size: int, repeats: int) -> list[dict]:
    """The registration of the shots (``fgdepth.register``, the predictor's default; CPU, per pair, at the pair's
    own size): a pair that needs nothing, and one moved by a pixel and re-exposed (both corrections applied)."""
    import cv2
    import numpy as np
    from shot_differences import _gain, _shift  # the benchmark's own camera changes

    from fgdepth.register import register_background

    rng = np.random.default_rng(0)
    room = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 2)
    room = cv2.normalize(room, None, 20, 230, cv2.NORM_MINMAX).astype(np.uint8)
    comp = room.copy()
    comp[size // 4 : size * 3 // 4, size // 3 : size // 2] = (200, 60, 40)
    moved = _gain(_shift(room, 1, 1), (1.1, 1.05, 0.95))
    rows = []
    for name, bg in (("register-0", room), ("register-1px", moved)):
        ms = best_time(lambda bg=bg: register_background(bg, comp), repeats) * 1000
        rows.append({"preset": "-", "size": size, "batch": 1, "engine": name, "ms_per_pair": round(ms, 3)})
        print(f"{'-':<7} {size:>5} {1:>5} {name:<12} {ms:>8.2f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", default=None, help="repeatable; default: tiny, small")
    ap.add_argument("--size", type=count, default=192)
    ap.add_argument("--batch", type=count, action="append", default=None, help="repeatable; default: 1, 16")
    ap.add_argument("--repeats", type=count, default=20)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--mask-scale",
        type=float,
        default=None,
        help="override the preset's mask_scale (tiny: 1.4; 1 = as is)",
    )
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (PyTorch engines)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = describe_device(args.device)
    print(f"torch {torch.__version__}, {args.device}: {where}")
    print(f"{'preset':<7} {'size':>5} {'batch':>5} {'engine':<12} {'ms/pair':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset or ["tiny", "small"]:
            overrides = {} if args.mask_scale is None else {"mask_scale": args.mask_scale}
            rows += bench_preset(
                preset, args.size, args.batch or [1, 16], args.repeats, Path(tmp), overrides, args.device
            )
    rows += bench_register(args.size, args.repeats)
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
