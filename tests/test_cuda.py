"""The CUDA paths: the model, the augmentation, mixed-precision training (Lightning's bf16-mixed and 16-mixed),
DDP over NCCL, the teacher and the predictor on a GPU, each against the CPU's answer. Skipped without CUDA (CI
has none); ``python -m pytest tests/test_cuda.py`` on a GPU machine runs them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fgdepth.data import schema
from fgdepth.losses import MultiTaskLoss
from fgdepth.model import create_model
from fgdepth.train import TrainConfig, fit, model_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def exact_fp32():
    """TF32 convolutions and matmuls round to 10 bits of mantissa: off for CPU/GPU comparisons in float32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _batch(b: int, size: int, seed: int = 0, device: str = "cpu") -> dict[str, torch.Tensor]:
    """Smooth random scenes: a person-like block nearer than a tilted floor."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, size).view(1, 1, size, 1).expand(b, 1, size, size)
    depth = 6.0 - 4.0 * yy + 0.1 * torch.rand(b, 1, size, size, generator=g)
    mask = torch.zeros(b, 1, size, size)
    mask[..., size // 4 : size * 3 // 4, size // 3 : size * 2 // 3] = 1
    depth = torch.where(mask > 0, torch.full_like(depth, 2.0), depth)
    background = torch.rand(b, 3, 1, 1, generator=g) * 0.5 + 0.25 * yy
    composite = torch.where(mask > 0, torch.rand(b, 3, 1, 1, generator=g), background)
    out = {
        schema.BACKGROUND: background.expand(b, 3, size, size).contiguous(),
        schema.COMPOSITE: composite.contiguous(),
        schema.MASK: mask,
        schema.DEPTH: depth.contiguous(),
        schema.DEPTH_VALID: torch.ones_like(depth),
    }
    return {k: v.to(device) for k, v in out.items()}


def test_forward_on_cuda_matches_cpu(exact_fp32) -> None:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    bg, comp = torch.rand(2, 3, 97, 131), torch.rand(2, 3, 97, 131)  # odd sizes
    with torch.no_grad():
        ref = model(bg, comp)
        got = model.cuda()(bg.cuda(), comp.cuda())
    for key in (schema.MASK_LOGITS, schema.DEPTH_PRED):
        assert got[key].shape == ref[key].shape
        torch.testing.assert_close(got[key].cpu(), ref[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_steps_train_on_cuda(dtype: torch.dtype) -> None:
    """Autocast (fp16 with loss scaling, as Lightning's 16-mixed) on a channels_last model: float32 outputs and
    losses, gradients in both stems, and a loss that falls on a repeated batch."""
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    torch.manual_seed(0)
    model = create_model("tiny").cuda().to(memory_format=torch.channels_last).train()
    crit = MultiTaskLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    batch = _batch(8, 64, device="cuda")
    for k in (schema.BACKGROUND, schema.COMPOSITE):
        batch[k] = batch[k].contiguous(memory_format=torch.channels_last)
    batch[schema.DEPTH_VIEW] = dict(batch)  # the depth branch's view: here the same whole images
    losses = []
    for step in range(40):
        with torch.autocast("cuda", dtype=dtype):
            out, loss = model_step(model, crit, batch)
        assert out[schema.MASK_LOGITS].dtype == torch.float32 and loss["loss"].dtype == torch.float32
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss["loss"]).backward()
        if step == 0:
            for stem in (model.encoder.stem_background, model.encoder.stem_composite):
                grads = [p.grad for p in stem.parameters() if p.requires_grad]
                assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
                assert any(g.abs().sum() > 0 for g in grads)
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss["loss"].detach()))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


def test_augment_on_cuda_matches_cpu(exact_fp32) -> None:
    """Every draw but the per-pixel noise comes from the CPU generator, so a GPU batch gets the CPU batch's
    augmentation; the noise is drawn on the GPU from a seed the CPU generator draws: the same seed, the same noise."""
    from fgdepth.data.augment import AugmentConfig, BatchAugment

    batch = _batch(6, 56, seed=3)
    noisy = BatchAugment(AugmentConfig(size=40))
    on_gpu = {k: v.cuda() for k, v in batch.items()}
    first, again = (noisy(on_gpu, torch.Generator().manual_seed(11)) for _ in range(2))
    other = noisy(on_gpu, torch.Generator().manual_seed(12))
    assert torch.equal(first[schema.COMPOSITE], again[schema.COMPOSITE])
    assert not torch.equal(first[schema.COMPOSITE], other[schema.COMPOSITE])

    aug = BatchAugment(AugmentConfig(size=40, noise_std=0.0))
    ref = aug(batch, torch.Generator().manual_seed(11))
    got = aug({k: v.cuda() for k, v in batch.items()}, torch.Generator().manual_seed(11))
    assert set(got) == set(ref)
    for key in (schema.BACKGROUND, schema.COMPOSITE):
        diff = (got[key].cpu() - ref[key]).abs()
        # the simulated JPEG rounds its coefficients: a rare coefficient may round the other way
        assert diff.mean() < 1e-3 and diff.max() < 0.1, (key, diff.mean(), diff.max())
    assert (got[schema.MASK].cpu() == ref[schema.MASK]).float().mean() > 0.995
    valid = (got[schema.DEPTH_VALID].cpu() > 0) & (ref[schema.DEPTH_VALID] > 0)
    assert valid.float().mean() > 0.9
    same = (got[schema.DEPTH].cpu() - ref[schema.DEPTH]).abs()[valid] < 1e-3
    assert same.float().mean() > 0.995


def _train_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    """test_train's tiny run, on the GPU with the precision and memory format a GPU user gets."""
    from test_train import _cfg

    return _cfg(data, out, **{"precision": "auto", "channels_last": True, "accelerator": "gpu", **kw})


@pytest.mark.parametrize("precision", ["auto", "16-mixed"])
def test_fit_on_cuda(shard_dataset: Path, tmp_path: Path, precision: str) -> None:
    import fgdepth
    from fgdepth.train import _precision

    cfg = _train_cfg(shard_dataset, tmp_path / "run", precision=precision)
    if precision == "auto":
        assert _precision(cfg) == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")
    metrics = fit(cfg)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["global_step"] == 4
    assert 0.0 <= metrics["mask_iou"] <= 1.0 and np.isfinite(metrics["depth_abs_rel"])
    # the checkpoint was written from GPU tensors and loads on the CPU
    model = fgdepth.load_model(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert all(p.device.type == "cpu" for p in model.parameters())
    with torch.no_grad():
        out = model(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40))
    assert torch.isfinite(out[schema.DEPTH_PRED]).all()


def test_fit_on_cuda_compiled(shard_dataset: Path, tmp_path: Path) -> None:
    """--compile reduce-overhead: the training step's networks and loss as CUDA graphs under Lightning (bf16-mixed,
    gradient clipping, logging); the run trains and its checkpoint loads on the CPU."""
    import fgdepth

    cfg = _train_cfg(
        shard_dataset, tmp_path / "run", compile="reduce-overhead", max_steps=6, val_every_steps=3
    )
    metrics = fit(cfg)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["global_step"] == 6 and summary["config"]["compile"] == "reduce-overhead"
    assert 0.0 <= metrics["mask_iou"] <= 1.0 and np.isfinite(metrics["depth_abs_rel"])
    with open(tmp_path / "run" / "logs" / "metrics.csv") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses) >= 5 and all(np.isfinite(losses))
    model = fgdepth.load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.parametrize("compile_mode", [None, "reduce-overhead"])
def test_ddp_over_nccl_on_the_gpus(shard_dataset: Path, tmp_path: Path, compile_mode: str | None) -> None:
    """DDP over NCCL (one process per GPU, up to two), eager and with the compiled training step (whose compiled
    parts call the module's own networks, the parameters DDP's hooks watch)."""
    n = min(torch.cuda.device_count(), 2)  # the test dataset has shards for two ranks
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "fgdepth.cli", "train", "--data", str(shard_dataset), "--out", str(out),
        "--source", "shards", "--size", "32", "--batch-size", "2", "--max-steps", "2", "--max-minutes", "0",
        "--val-every", "2", "--accelerator", "gpu", "--devices", str(n), "--strategy", "ddp",
    ] + (["--compile", compile_mode] if compile_mode else [])  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "nccl" in (res.stdout + res.stderr).lower() or n == 1
    shards = [set(json.loads((out / f"shards_rank{r}.json").read_text())["shards"]) for r in range(n)]
    assert all(shards)
    for i in range(n):
        for j in range(i + 1, n):
            assert not shards[i] & shards[j]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["global_step"] == 2 and summary["config"]["compile"] == compile_mode


@pytest.mark.parametrize("name", ["da", "dpt"])
def test_teacher_on_cuda_matches_cpu(
    teacher_checkpoints: dict[str, Path], offline_hub, exact_fp32, name
) -> None:
    """On a GPU the teacher picks itself (device None) and autocasts (dtype "auto"); fp32 matches the CPU."""
    from fgdepth.teacher import DepthTeacher

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 60), (33, 47), (40, 60)]]
    ref = DepthTeacher.load(teacher_checkpoints[name], device="cpu").predict(images)
    fp32 = DepthTeacher.load(teacher_checkpoints[name], device="cuda", dtype="float32").predict(images)
    auto = DepthTeacher.load(teacher_checkpoints[name])
    assert auto.info.device.startswith("cuda") and auto.info.dtype in ("bfloat16", "float16")
    mixed = auto.predict(images)
    for r, a, m in zip(ref, fp32, mixed, strict=True):
        assert a.shape == m.shape == r.shape and a.dtype == m.dtype == np.float32
        np.testing.assert_allclose(a, r, rtol=1e-3, atol=1e-3)
        assert np.median(np.abs(m - r) / np.maximum(np.abs(r), 1e-3)) < 0.05


def test_predictor_on_cuda_matches_cpu(model_file: Path, exact_fp32) -> None:
    from fgdepth.predict import Predictor

    rng = np.random.default_rng(0)
    bgs = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(3)]
    comps = [b.copy() for b in bgs]
    for c in comps:
        c[20:70, 40:80] = rng.integers(0, 256, 3, dtype=np.uint8)
    ref = Predictor.load(model_file, size=64).raw(bgs, comps)
    got = Predictor.load(model_file, size=64, device="cuda").raw(bgs, comps)
    for (lr, dr), (lg, dg) in zip(ref, got, strict=True):
        assert lg.shape == lr.shape == (90, 120) and dg.dtype == np.float32
        np.testing.assert_allclose(lg, lr, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(dg, dr, rtol=1e-3, atol=1e-3)
