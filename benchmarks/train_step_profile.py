"""Where a training step of the demo's recipe goes, phase by phase, on a CPU or a GPU.

Runs the same work as ``fgdepth train`` (the memory source's batched fetch, the transfer, the augmentation of the
crops and of the depth branch's view, forward + loss, backward, clipping + AdamW) in a plain loop, so that each
phase can be timed with the device synchronised after it; then the same loop unsynchronised (the step as training
runs it, phases overlapping on a GPU), and ``torch.profiler``'s busiest operators. ``--compile`` adds the same
loop with the model's two networks and the loss compiled as ``fgdepth train --compile MODE`` does, its compile
time printed apart.

Usage: python benchmarks/train_step_profile.py DATA [--device cuda] [--batch 128] [--steps 30]
           [--compile reduce-overhead] [--compile default] [--profile-steps 5] [--precision auto|bf16|32]
``--precision auto`` (the default) picks through ``fgdepth train --precision auto``'s own rule: bf16 autocast on a
GPU and on a CPU with native bf16 (AVX512-BF16 or AMX), float32 on other CPUs.
DATA: a dataset written by ``fgdepth make-dataset`` (the demo's world, or a smaller one of the same kind).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time

import torch

from fgdepth.train import (
    FgDataModule,
    TrainConfig,
    _precision,
    compiled_training_parts,
    make_module,
    model_config_for,
    model_step,
)


def build(data: str, batch: int, device: torch.device, model_overrides: dict | None = None):
    """The demo's TrainConfig on ``data`` (``model_overrides`` on the preset): its module on ``device``, an
    optimiser, and an endless batch iterator."""
    cfg = TrainConfig(
        data=data,
        out="/tmp/fgdepth_step_profile",
        size=48,
        infer_size=160,
        batch_size=batch,
        augment_config={"person_crop_p": 0.8},
        model_overrides=model_overrides or {},
    )
    dm = FgDataModule(cfg)
    module = make_module(cfg, model_config_for(cfg, dm), dm.depth_kind)
    module = module.to(device, memory_format=torch.channels_last)
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = dm.train_dataloader()

    def batches():
        while True:
            yield from loader

    return cfg, module, opt, batches()


def run(
    module, step_model, opt, it, device, steps: int, sync: bool, start: int = 0, bf16: bool = True
) -> dict[str, float]:
    """Seconds per step of each phase (``sync``: the device synchronised after each) and in all; ``bf16``: under
    bf16 autocast, else in float32."""
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    phases = dict.fromkeys(("fetch", "transfer", "augment", "forward+loss", "backward", "optimiser"), 0.0)

    def mark(name: str, t: float) -> float:
        if sync and device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        phases[name] += now - t
        return now

    if device.type == "cuda":
        torch.cuda.synchronize()
    t_all = t = time.perf_counter()
    for i in range(steps):
        batch = next(it)
        t = mark("fetch", t)
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        t = mark("transfer", t)
        batch = module.prepare_batch(batch, training=True, step=start + i)  # as on_after_batch_transfer
        t = mark("augment", t)
        with amp:
            _, losses = step_model(batch)
        t = mark("forward+loss", t)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        t = mark("backward", t)
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        t = mark("optimiser", t)
    if device.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - t_all
    return {**{k: v / steps for k, v in phases.items()}, "step": total / steps}


def _count(net) -> int:
    return 0 if net is None else sum(p.numel() for p in net.parameters())


def report(name: str, r: dict[str, float], batch: int) -> None:
    parts = ", ".join(f"{k} {v * 1e3:.1f}" for k, v in r.items() if k != "step")
    print(
        f"{name}: {r['step'] * 1e3:.1f} ms per step of {batch} ({batch / r['step']:.0f} pairs/s); {parts} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--compile", action="append", default=[], help="torch.compile mode (repeatable)")
    ap.add_argument("--overrides", default="{}", help="JSON of DualUNetConfig fields over the preset's")
    ap.add_argument("--precision", choices=("auto", "bf16", "32"), default="auto")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg, module, opt, it = build(args.data, args.batch, device, json.loads(args.overrides))
    train_mixes = _precision(dataclasses.replace(cfg, accelerator=device.type)) != "32"  # on a GPU, always
    bf16 = args.precision == "bf16" or (args.precision == "auto" and train_mixes)
    print(
        f"device {device}, torch {torch.__version__}, batch {args.batch}, crops {cfg.size} px, "
        f"depth view {module.depth_view_augment.cfg.size} px, parameters {_count(module.model) / 1e6:.3f} M "
        f"(depth branch {_count(module.model.depth_net) / 1e6:.3f} M), {'bf16 autocast' if bf16 else 'float32'}"
    )

    def eager(batch):
        return model_step(module.model, module.loss_fn, batch, training=True)

    run(module, eager, opt, it, device, args.warmup, sync=False, bf16=bf16)
    report(
        "eager, synchronised per phase",
        run(module, eager, opt, it, device, args.steps, True, bf16=bf16),
        args.batch,
    )
    report(
        "eager, as training runs",
        run(module, eager, opt, it, device, args.steps, False, bf16=bf16),
        args.batch,
    )

    if args.profile_steps > 0:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            run(module, eager, opt, it, device, args.profile_steps, False, bf16=bf16)
        ka = prof.key_averages()
        print(ka.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
        if device.type == "cuda":
            print(ka.table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60))
            n_kernels = sum(e.count for e in ka if e.device_type == torch.autograd.DeviceType.CUDA)
            print(f"CUDA kernels per step: {n_kernels / args.profile_steps:.0f}")

    for mode in args.compile:
        from torch import _dynamo

        _dynamo.reset()
        parts = compiled_training_parts(module.model, module.loss_fn, mode)

        def compiled(batch, parts=parts):
            return model_step(*parts, batch, training=True)

        t0 = time.perf_counter()
        try:
            run(module, compiled, opt, it, device, 3, sync=True, bf16=bf16)
        except Exception as e:  # report and go on: a failed mode is a finding, not a crash
            print(f"compile {mode}: failed: {type(e).__name__}: {str(e)[:300]}")
            continue
        print(f"compile {mode}: first 3 steps {time.perf_counter() - t0:.1f} s")
        run(module, compiled, opt, it, device, args.warmup, sync=False, bf16=bf16)
        report(
            f"compiled ({mode}), as training runs",
            run(module, compiled, opt, it, device, args.steps, False, bf16=bf16),
            args.batch,
        )
        report(
            f"compiled ({mode}), synchronised per phase",
            run(module, compiled, opt, it, device, args.steps, True, bf16=bf16),
            args.batch,
        )


if __name__ == "__main__":
    main()
