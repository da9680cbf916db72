"""Training: a tiny model on a tiny dataset; checkpoints, resume, round trip, DDP on 2 CPU processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from fgdepth.train import TrainConfig, fit

TINY = {"stem_channels": 8, "encoder_channels": (8, 16, 16, 24), "decoder_channels": (16, 16, 8, 8)}
# TINY with a depth branch of its own (DualUNetConfig.depth_branch) on half-size whole-image views
TINY_WITH_BRANCH = {
    **TINY,
    "depth_branch": {**TINY, "block_kinds": ("fused",) * 4, "depth_activation": "exp"},
    "depth_scale": 0.5,
}


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=str(data),
        out=str(out),
        model_overrides=TINY,
        size=32,
        cache_size=48,
        batch_size=4,
        max_steps=4,
        max_minutes=None,
        val_every_steps=2,
        precision="32",
        channels_last=False,
        log_every_steps=1,
        accelerator="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def trained(shard_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    fit(_cfg(shard_dataset, out))
    return out


def test_fit_writes_checkpoints_logs_and_test_metrics(trained: Path) -> None:
    for name in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "model.safetensors", "logs/metrics.csv"):
        assert (trained / name).is_file(), name
    summary = json.loads((trained / "metrics.json").read_text())
    assert summary["global_step"] == 4
    assert 0.0 <= summary["test"]["mask_iou"] <= 1.0
    assert "depth_abs_rel" in summary["test"]
    assert any((trained / "tb").rglob("events.out.tfevents*"))
    assert summary["best_checkpoint"] == str(Path(summary["config"]["out"]) / "checkpoints" / "best.ckpt")


def test_checkpoint_rebuilds_the_model_with_identical_outputs(trained: Path) -> None:
    import fgdepth

    from_ckpt = fgdepth.load_model(trained / "checkpoints" / "best.ckpt")
    from_st = fgdepth.load_model(trained / "model.safetensors")
    bg, comp = torch.rand(2, 3, 40, 56), torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        a, b = from_ckpt(bg, comp), from_st(bg, comp)
    for key in ("mask_logits", "depth"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_continues_the_step_count_and_the_optimiser_state(shard_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, max_steps=3))
    first = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["global_step"] == 3
    fit(_cfg(shard_dataset, out, max_steps=6, resume="last"))
    second = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert second["global_step"] == 6
    # AdamW's per-parameter step counter continued from 3 instead of restarting at 0
    steps = {float(s["step"]) for s in second["optimizer_states"][0]["state"].values()}
    assert steps == {6.0}
    # the scheduler continued too
    assert second["lr_schedulers"][0]["last_epoch"] == 6
    # the curves of both sessions are in one metrics.csv (Lightning's CSVLogger deletes the old one on resume)
    import csv

    with open(out / "logs" / "metrics.csv", newline="") as f:
        steps = {int(r["step"]) for r in csv.DictReader(f) if r.get("step")}
    assert min(steps) < 3 <= max(steps), steps
    assert not list((out / "logs").glob("metrics.part*.csv"))


def test_a_resumed_run_takes_its_epoch_up_where_it_stopped(
    shard_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a RandomSampler, reseeded with the run, began the first epoch's order again on --resume: its first batches
    # were trained twice and its last ones never
    import fgdepth.train as T
    from fgdepth.data import schema

    trained: list[tuple[str, ...]] = []

    def recording_collate(samples):  # training fetches with gradients on, validation under inference mode
        batch = collate(samples)
        if torch.is_grad_enabled():
            trained.append(tuple(batch[schema.KEY]))
        return batch

    collate = T.collate
    monkeypatch.setattr(T, "collate", recording_collate)
    kw = {"source": "memory", "val_every_steps": 1000}
    steps_per_epoch = len(T.FgDataModule(_cfg(shard_dataset, tmp_path / "x", **kw)).dataset("train")) // 4
    total = steps_per_epoch + 4  # into the second epoch
    fit(_cfg(shard_dataset, tmp_path / "whole", max_steps=total, **kw))
    whole, trained[:] = list(trained), []
    # stopped mid-epoch twice (each stop ends an epoch in Lightning's own count), then to the end
    for i, stop in enumerate((steps_per_epoch // 2, steps_per_epoch + 1, total)):
        fit(_cfg(shard_dataset, tmp_path / "r", max_steps=stop, resume="last" if i else None, **kw))
    assert len(whole) == total and len(set(whole[:steps_per_epoch])) == steps_per_epoch
    assert trained == whole


def test_loss_stays_finite_under_bf16_autocast() -> None:
    """Regression: SSIM's variances cancelled in bf16 and produced NaN gradients within ~10 steps."""
    from fgdepth.losses import MultiTaskLoss

    torch.manual_seed(0)
    depth = 5.0 + torch.rand(4, 1, 24, 24) * 0.01  # flat, far: E[x^2] - E[x]^2 is tiny next to E[x^2]
    pred = (depth + 0.001 * torch.randn_like(depth)).requires_grad_(True)
    batch = {"mask": torch.zeros(4, 1, 24, 24), "depth": depth, "depth_valid": torch.ones_like(depth)}
    logits = torch.zeros(4, 1, 24, 24, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = MultiTaskLoss()({"mask_logits": logits, "depth": pred * 1.0}, batch)
    losses["loss"].backward()
    assert losses["loss"].dtype == torch.float32
    assert torch.isfinite(pred.grad).all()


def test_ddp_two_cpu_processes_see_different_shards(shard_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "fgdepth.cli", "train", "--data", str(shard_dataset), "--out", str(out),
        "--source", "shards", "--size", "32", "--batch-size", "2", "--max-steps", "2", "--max-minutes", "0",
        "--val-every", "2", "--precision", "32", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
    ]  # fmt: skip
    env = {**os.environ, "PL_DISABLE_FORK": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((out / f"shards_rank{r}.json").read_text()) for r in (0, 1)]
    s0, s1 = set(ranks[0]["shards"]), set(ranks[1]["shards"])
    assert s0 and s1 and not (s0 & s1)
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_ddp_on_one_device_resumes_mid_epoch(shard_dataset: Path, tmp_path: Path) -> None:
    # DDP on one device is distributed to Lightning, which wraps the loader's sampler in a DistributedSampler: it
    # keeps the RandomSampler there (an EpochSampler begun mid-epoch would not fit the wrapper's length)
    out = tmp_path / "ddp1"
    cmd = [
        sys.executable, "-m", "fgdepth.cli", "train", "--data", str(shard_dataset), "--out", str(out),
        "--source", "memory", "--size", "32", "--batch-size", "4", "--max-minutes", "0", "--val-every", "1000",
        "--precision", "32", "--accelerator", "cpu", "--devices", "1", "--strategy", "ddp",
    ]  # fmt: skip
    env = {**os.environ, "PL_DISABLE_FORK": "1"}
    for extra in (["--max-steps", "3"], ["--max-steps", "5", "--resume", "last"]):
        res = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=300, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 5


def test_crop_training_records_the_inference_size(shard_dataset: Path, tmp_path: Path) -> None:
    """--infer-size: training crops of --size at the inference scale; predictors then run whole images at it."""
    from fgdepth.predict import checkpoint_train_size
    from fgdepth.train import augment_config

    aug = augment_config({"size": 32, "infer_size": 48, "augment_config": {}})
    assert aug.size == 32 and aug.crop_fraction == pytest.approx(32 / 48)
    assert augment_config({"size": 32, "infer_size": None}).crop_fraction is None
    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, infer_size=48, max_steps=2))
    assert checkpoint_train_size(out / "checkpoints" / "best.ckpt") == 48
    assert checkpoint_train_size(out / "model.safetensors") == 48
    from fgdepth.predict import Predictor

    with pytest.warns(UserWarning, match="trained for 48 px inputs; at 64 px"):
        Predictor.load(out / "model.safetensors", size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (
            Predictor.load(out / "model.safetensors").size
            == 48
            == Predictor.load(out / "model.safetensors", size=48).size
        )


def test_time_budget_schedule_follows_the_clock_and_resumes() -> None:
    from fgdepth.train import TimeBudgetOneCycle

    now = [0.0]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = TimeBudgetOneCycle(opt, max_lr=1.0, budget_s=100.0, pct_start=0.2, clock=lambda: now[0])
    lrs = {}
    for t in (0.0, 10.0, 20.0, 60.0, 100.0, 150.0):
        now[0] = t
        opt.step()
        sched.step()
        lrs[t] = opt.param_groups[0]["lr"]
    assert lrs[0.0] == pytest.approx(1.0 / 25)  # starts at max_lr / div_factor
    assert lrs[0.0] < lrs[10.0] < lrs[20.0] == pytest.approx(1.0)  # warm-up peaks at pct_start of the budget
    assert lrs[20.0] > lrs[60.0] > lrs[100.0]
    assert lrs[100.0] == pytest.approx(1.0 / 25 / 1e4) and lrs[150.0] == lrs[100.0]  # ends with the budget
    # the state carries the elapsed time (no clock, no pickled function): a resumed run goes on from 60 s
    now[0] = 60.0
    state = sched.state_dict()
    assert state["elapsed_before"] == pytest.approx(60.0) and "clock" not in state
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = TimeBudgetOneCycle(opt2, max_lr=1.0, budget_s=100.0, pct_start=0.2, clock=lambda: 1000.0)
    resumed.load_state_dict(state)
    resumed.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(sched.lr_at(0.6))


def test_time_budget_run_validates_its_final_weights(shard_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, max_steps=-1, max_minutes=0.05, val_every_steps=10_000, max_epochs=1000))
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["global_step"] > 0
    rows = (out / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("val/mask_iou")
    assert any(r.split(",")[col] for r in rows[1:]), "the final weights were validated"


def test_cli_options_given_override_the_yaml_and_defaults_do_not(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import fgdepth.train
    from fgdepth.cli import app

    seen: list[TrainConfig] = []
    monkeypatch.setattr(fgdepth.train, "fit", lambda cfg: seen.append(cfg) or {"mask_iou": 1.0})
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        "data: /somewhere\nmodel: small\nsize: 80\nval_every_steps: 500\nmax_minutes: 60\n"
        "model_overrides: {refine_channels: 8}\nloss_config: {silog_weight: 2.0}\n"
    )
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--config", str(yaml_file), "--size", "64", "--no-augment"])
    assert r.exit_code == 0, r.output
    cfg = seen[-1]
    # from the file, although the command line has defaults for them
    assert (cfg.model, cfg.val_every_steps, cfg.max_minutes, cfg.data) == ("small", 500, 60, "/somewhere")
    assert cfg.model_overrides == {"refine_channels": 8} and cfg.loss_config == {"silog_weight": 2.0}
    # given on the command line
    assert cfg.size == 64 and cfg.augment is False
    # neither: TrainConfig's defaults
    assert (cfg.batch_size, cfg.lr, cfg.out) == (TrainConfig.batch_size, TrainConfig.lr, TrainConfig.out)

    r = runner.invoke(app, ["train", "--data", str(tmp_path), "--max-minutes", "0"])
    assert r.exit_code == 0, r.output
    assert seen[-1].max_minutes is None and seen[-1].model == "tiny" and seen[-1].compile is None
    r = runner.invoke(app, ["train", "--data", str(tmp_path), "--compile", "reduce-overhead"])
    assert r.exit_code == 0, r.output
    assert seen[-1].compile == "reduce-overhead"

    # --person-crop sets one field of the YAML's augment_config and keeps the others
    yaml_file.write_text("data: /somewhere\naugment_config: {person_crop_p: 0.2, flip_p: 0.0}\n")
    r = runner.invoke(app, ["train", "--config", str(yaml_file), "--person-crop", "0.8"])
    assert r.exit_code == 0, r.output
    assert seen[-1].augment_config == {"person_crop_p": 0.8, "flip_p": 0.0}

    r = runner.invoke(app, ["train", "--config", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "missing.yaml" in r.output
    r = runner.invoke(app, ["train"])
    assert r.exit_code == 2 and "--data" in r.output


def test_cli_train_help_shows_the_defaults() -> None:
    """The options' defaults are written in their help as "[default: X]", which Rich would read as a markup tag
    and drop unless escaped."""
    import re

    from typer.testing import CliRunner

    from fgdepth.cli import app

    r = CliRunner().invoke(app, ["train", "--help"])
    assert r.exit_code == 0, r.output
    flat = re.sub(r"[\s\u2502]+", "", r.output)  # the help's box and line breaks removed
    for text in ("Trainingresolution[default:96]", "Batchsizeperdevice[default:32]", "[default:tiny]"):
        assert text in flat, text


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"size": 4}, "size must be >= 8"),
        ({"size": 96, "infer_size": 64}, "infer_size (64) must be >= size (96)"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"max_minutes": -1.0}, "max_minutes must be > 0"),
        ({"val_every_steps": 0}, "val_every_steps must be >= 1"),
        ({"ema_decay": 1.0}, "ema_decay must be in [0, 1)"),
        ({"source": "tape"}, "unknown source 'tape'"),
        ({"weighting": "learned"}, "unknown weighting 'learned'"),
        ({"compile": "fast"}, "unknown compile mode 'fast'"),
        # the nested settings were first used once the data was loaded and an --overwrite had removed the old run
        # (unknown keys: a TypeError traceback)
        ({"augment_config": {"bogus": 1}}, "unknown AugmentConfig field(s): bogus"),
        ({"augment_config": {"flip_p": 5}}, "augment_config flip_p is a probability in [0, 1], got 5"),
        ({"loss_config": {"bogus": 1}}, "unknown loss_config field(s): bogus"),
        # Lightning's TypeError traceback once the data was loaded (and an --overwrite had removed the old run)
        (
            {"devices": "x"},
            "devices must be a number (-1: all), device indices such as '0,1' or 'auto', got 'x'",
        ),
        ({"devices": 0}, "devices must be a number (-1: all), device indices such as '0,1' or 'auto', got 0"),
    ],
)
def test_train_config_rejects_bad_settings_by_name(bad: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        TrainConfig(data="d", **bad)
    assert message in str(err.value)


def test_cli_train_reports_a_bad_setting_before_any_work(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fgdepth.cli import app

    r = CliRunner().invoke(
        app, ["train", "--data", str(tmp_path), "--batch-size", "0", "--out", str(tmp_path / "r")]
    )
    assert r.exit_code == 2 and "batch_size must be >= 1" in r.output
    assert not (tmp_path / "r").exists()


def test_depth_branch_trains_on_whole_image_views(shard_dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """A model with a depth branch: crops train the main network's mask, whole-image views the branch's depth."""
    import fgdepth
    from fgdepth.model import create_model
    from fgdepth.model.dual_unet import DualUNet
    from fgdepth.train import augment_config, depth_view_augment_config

    view_aug = depth_view_augment_config(
        {"size": 32, "infer_size": 48, "augment_config": {"crop_fraction": 0.4, "noise_std": 0.0}}, 0.5
    )
    assert view_aug.size == 24 and view_aug.crop_fraction is None and view_aug.noise_std == 0.0
    # the crops' stronger, shared blur is the mask's; the branch's views keep theirs unless the run sets one
    crops = augment_config({"size": 32, "infer_size": 48})
    assert (crops.blur_p, crops.blur_sigma, crops.blur_shared_p) == (0.5, 1.5, 0.8)
    assert (view_aug.blur_p, view_aug.blur_sigma, view_aug.blur_shared_p) == (0.3, 1.0, 0.0)
    assert (crops.light_p, view_aug.light_p) == (0.3, 0.0)  # light between the shots: the mask's crops only
    own_blur = depth_view_augment_config({"size": 32, "augment_config": {"blur_sigma": 2.0}}, 0.5)
    assert (own_blur.blur_p, own_blur.blur_sigma) == (0.3, 2.0)
    # training's view has the size of the model's own view at inference, also where 98 x 0.6 = 58.8 is not whole
    own_view = create_model("tiny").depth_view(torch.zeros(1, 3, 98, 98))
    assert depth_view_augment_config({"size": 64, "infer_size": 98}, 0.6).size == own_view.shape[-1] == 58
    seen: list[tuple[str, int]] = []
    forward_main = DualUNet.forward_main

    def recording(self, background, composite):
        seen.append(("main" if self.depth_net is not None else "branch", background.shape[-1]))
        return forward_main(self, background, composite)

    monkeypatch.setattr(DualUNet, "forward_main", recording)
    branch = {**TINY, "block_kinds": ("fused",) * 4, "depth_activation": "exp"}
    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, infer_size=48, max_steps=2, model_overrides={**TINY, "depth_branch": branch,
                                                                                "depth_scale": 0.5, "mask_scale": 1.5}))  # fmt: skip
    # training: crops as they are (not enlarged by mask_scale), and the branch's whole view
    assert ("main", 32) in seen and ("branch", 24) in seen
    assert ("main", 72) in seen  # validation and test: the whole model on whole images, enlarged 1.5x
    assert {shape for shape in seen if shape[0] == "main"} == {("main", 32), ("main", 72)}
    assert {shape for shape in seen if shape[0] == "branch"} == {("branch", 24)}  # never a crop
    model = fgdepth.load_model(out / "model.safetensors")
    assert model.depth_net is not None
    summary = json.loads((out / "metrics.json").read_text())
    assert "depth_abs_rel" in summary["test"]
    # the gradients' norms before clipping, the whole model's and the branch's share of it
    with open(out / "logs" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/grad_norm")]
    assert rows
    for r in rows:
        total, depth = float(r["train/grad_norm"]), float(r["train/grad_norm_depth"])
        assert 0 < depth <= total < float("inf")


def test_gradient_norm_joins_the_parameters_with_gradients() -> None:
    from fgdepth.train import gradient_norm

    a, b, c = (torch.zeros(1, requires_grad=True) for _ in range(3))
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])  # c has none
    assert gradient_norm([a, b, c]) == pytest.approx(5.0)
    assert gradient_norm([c]) == 0.0


def test_update_ema_averages_parameters_and_running_statistics() -> None:
    from fgdepth.train import update_ema

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    average = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        for p in average.parameters():
            p.fill_(0.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    update_ema(average, model, decay=0.5, step=1000)  # d = min(0.5, 1001 / 1010) = 0.5
    for p in average.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.5))
    torch.testing.assert_close(average[1].running_mean, torch.full((2,), 1.0))
    assert int(average[1].num_batches_tracked) == 7  # counters are copied
    update_ema(average, model, decay=0.99, step=0)  # warm-up: d = 1 / 10, the weights weigh 0.9
    torch.testing.assert_close(average[0].weight, torch.full_like(average[0].weight, 0.05 + 0.9))
    assert all(not p.requires_grad or p.grad is None for p in average.parameters())


def test_ema_run_validates_and_exports_the_average_and_keeps_the_raw_weights(
    shard_dataset: Path, tmp_path: Path
) -> None:
    """ema_decay > 0: the checkpoint carries both networks; load_model, model.safetensors and the test use the
    average; average=False gives the raw weights; resuming a run without an average starts one."""
    import fgdepth
    from fgdepth.model.checkpoint import load_model

    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, max_steps=3))  # no average
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith("ema_model.") for k in state)
    fit(_cfg(shard_dataset, out, max_steps=6, resume="last", ema_decay=0.9))
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    raw = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    ema = {k[len("ema_model.") :]: v for k, v in state.items() if k.startswith("ema_model.")}
    assert raw.keys() == ema.keys()
    weight = next(k for k in raw if k.endswith("weight") and raw[k].ndim == 4)
    assert not torch.equal(raw[weight], ema[weight])  # averaged over the three resumed steps, not a copy
    averaged = load_model(out / "checkpoints" / "last.ckpt")
    plain = load_model(out / "checkpoints" / "last.ckpt", average=False)
    torch.testing.assert_close(dict(averaged.state_dict())[weight], ema[weight], rtol=0, atol=0)
    torch.testing.assert_close(dict(plain.state_dict())[weight], raw[weight], rtol=0, atol=0)
    exported = fgdepth.load_model(out / "model.safetensors").state_dict()[weight]
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    torch.testing.assert_close(exported, best["ema_model." + weight], rtol=0, atol=0)
    # and back: resuming with the average switched off drops it
    fit(_cfg(shard_dataset, out, max_steps=7, resume="last"))
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith("ema_model.") for k in state)


def test_memory_source_fetches_whole_batches_equal_to_sample_by_sample(shard_dataset: Path) -> None:
    """The DataLoader fetches a memory-cached batch in one gather (uint8 images, made float after transfer): the
    same batch as fetching and stacking the samples one by one."""
    from torch.utils.data import DataLoader, Subset

    from fgdepth.data import schema
    from fgdepth.data.reader import collate
    from fgdepth.train import MemoryDataset, _source_dataset, images_to_float

    ds = _source_dataset(_cfg(shard_dataset, Path("unused")), "train", train=True)
    assert isinstance(ds, MemoryDataset) and len(ds) >= 5
    idx = [4, 0, 3, 1]
    for source in (ds, Subset(ds, list(range(len(ds))))):  # validation subsets delegate the batched fetch
        batch = next(iter(DataLoader(source, batch_size=4, sampler=idx, collate_fn=collate)))
        # compact on the way to the device: uint8 images and mask, validity made there
        assert batch[schema.COMPOSITE].dtype == batch[schema.MASK].dtype == torch.uint8
        assert schema.DEPTH_VALID not in batch
        one_by_one = collate([ds[i] for i in idx])
        got = images_to_float(batch)
        assert got[schema.KEY] == one_by_one[schema.KEY]
        for k in schema.BATCH_KEYS:
            torch.testing.assert_close(got[k], one_by_one[k], rtol=0, atol=0)


def test_validation_cadence_follows_val_every_across_epochs() -> None:
    """Within an epoch when it is longer than --val-every, else every k-th epoch end (k rounded): a 1000-step
    cadence on 119-step epochs validates every 8 epochs, not every epoch."""
    from fgdepth.train import _validation_cadence

    assert _validation_cadence(300, 478) == {"val_check_interval": 300, "check_val_every_n_epoch": None}
    assert _validation_cadence(1000, 119) == {"val_check_interval": 1.0, "check_val_every_n_epoch": 8}
    assert _validation_cadence(119, 119) == {"val_check_interval": 1.0, "check_val_every_n_epoch": 1}
    assert _validation_cadence(50, 119)["val_check_interval"] == 50
    assert _validation_cadence(10, 200)["check_val_every_n_epoch"] is None
    assert _validation_cadence(150, 119)["check_val_every_n_epoch"] == 1


@pytest.mark.slow
def test_compiled_training_parts_share_the_weights_and_match_eager() -> None:
    """torch.compile of the training step (about a minute of compiling on 2 CPU cores, hence slow). In float64:
    in float32 the stems' gradients, small sums of large terms through a dozen BatchNorms, differ by a few % between
    summation orders (0.2 % of the whole gradient's norm); in float64 by 1e-7."""
    from fgdepth.data import schema
    from fgdepth.losses import MultiTaskLoss
    from fgdepth.model.registry import create_model
    from fgdepth.train import compiled_training_parts, model_step

    torch.manual_seed(0)
    model = create_model("tiny").double()  # both networks, layered depth
    loss_fn = MultiTaskLoss().double()
    parts = compiled_training_parts(model, loss_fn, "default")

    def arrays(n: int) -> dict:
        rand = lambda c: torch.rand(2, c, n, n, dtype=torch.float64)  # noqa: E731
        return {
            schema.BACKGROUND: rand(3),
            schema.COMPOSITE: rand(3),
            schema.MASK: (rand(1) > 0.5).double(),
            schema.DEPTH: rand(1) + 1,
            schema.DEPTH_VALID: torch.ones(2, 1, n, n, dtype=torch.float64),
        }

    batch = {**arrays(32), schema.DEPTH_VIEW: arrays(24)}
    losses, grads = [], []
    for model_view, loss in ((model, loss_fn), parts):
        model.zero_grad()
        _, out = model_step(model_view, loss, batch, training=True)
        out["loss"].backward()
        losses.append(float(out["loss"].detach()))
        grads.append([p.grad.clone() for p in model.parameters()])  # None (an error) if not shared
    assert abs(losses[1] - losses[0]) < 1e-6 * abs(losses[0])
    errors = [float((gc - ge).norm() / ge.norm().clamp(min=1e-12)) for ge, gc in zip(*grads, strict=True)]
    assert max(errors) < 1e-4, max(errors)


def test_quiet_lightning_drops_its_tips_and_the_warnings_a_user_cannot_act_on(caplog) -> None:
    import logging

    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from fgdepth.train import quiet_lightning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_lightning()
        quiet_lightning()  # idempotent: one filter on the logger
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
        # what Lightning says on every --resume (fgdepth's own handling makes it untrue or harmless)
        warnings.warn(
            "Experiment logs directory /r/logs/ exists and is not empty. Previous ...", stacklevel=1
        )
        warnings.warn("Checkpoint directory /r/checkpoints exists and is not empty.", stacklevel=1)
        warnings.warn(
            "You're resuming from a checkpoint that ended before the epoch ended and ...", stacklevel=1
        )
        warnings.warn(
            "The number of training batches (16) is smaller than the logging interval", stacklevel=1
        )
    assert [str(w.message) for w in caught] == [
        "something else is deprecated",
        "The number of training batches (16) is smaller than the logging interval",
    ]
    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing something")
        rank_zero_info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert sum(type(f).__name__ == "_DropLightningTips" for f in logger.filters) == 1


def test_a_new_run_over_an_existing_one_is_refused_unless_overwrite(
    shard_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, max_steps=2))
    (out / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="already holds a training run .*checkpoints.*--resume last"):
        fit(_cfg(shard_dataset, out, max_steps=3))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched
    # a Trainer setting it cannot use (a typo, a missing package) is named before --overwrite removes anything
    for bad in ({"accelerator": "tpu"}, {"strategy": "ddpp"}, {"precision": "8-mixed"}):
        with pytest.raises(ValueError, match="cannot train with accelerator"):
            fit(_cfg(shard_dataset, out, max_steps=3, overwrite=True, **bad))
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, bad
    fit(_cfg(shard_dataset, out, max_steps=3, overwrite=True))
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 3
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own outputs were removed
    with open(out / "logs" / "metrics.csv", newline="") as f:
        assert max(int(r["step"]) for r in csv.DictReader(f) if r.get("step")) <= 3


def test_cli_train_over_an_existing_run_exits_2_naming_the_way_out(trained: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fgdepth.cli", "train", "--data", json.loads((trained / "metrics.json").read_text())
         ["config"]["data"], "--out", str(trained), "--max-steps", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "already holds a training run" in proc.stderr and "--overwrite" in proc.stderr


def test_a_wrong_data_folder_costs_an_existing_run_nothing_even_with_overwrite(
    trained: Path, tmp_path: Path
) -> None:
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    for data in (tmp_path / "nowhere", tmp_path):  # no folder; a folder that is not a dataset
        with pytest.raises(FileNotFoundError, match="no such dataset folder|expected the reference layout"):
            fit(_cfg(data, trained, overwrite=True))
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("source", ["auto", "folders"])
def test_trains_on_a_foreign_folder_of_mixed_sizes(tmp_path: Path, source: str) -> None:
    from eval_helpers import REF_SIZES, write_reference_folder

    data = write_reference_folder(tmp_path / "ref")  # 4 rooms, each image its own size, no manifest
    assert len(set(REF_SIZES)) == len(REF_SIZES)
    metrics = fit(_cfg(data, tmp_path / "r", source=source, batch_size=2, max_steps=2, cache_size=32))
    summary = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert summary["train_samples"] == 2 and "mask_iou" in metrics  # 2 rooms train, 1 val, 1 test


def test_an_empty_val_selection_is_named(shared_inputs, tmp_path: Path) -> None:
    from fgdepth.factory import make_dataset

    data = tmp_path / "noval"
    make_dataset(shared_inputs.config(val_fraction=0.0), data)
    # the memory cache said only "no samples to cache": which dataset, which selection?
    with pytest.raises(ValueError, match=r"noval: the val selection 'val' has no samples"):
        fit(_cfg(data, tmp_path / "r"))


def test_an_empty_test_selection_is_refused_before_training(shared_inputs, tmp_path: Path) -> None:
    from fgdepth.factory import make_dataset

    data = tmp_path / "notest"
    make_dataset(shared_inputs.config(test_fraction=0.0), data)
    # it was found only after the whole training, which then wrote neither metrics.json nor model.safetensors
    with pytest.raises(ValueError, match=r"notest: the test selection 'test' has no samples"):
        fit(_cfg(data, tmp_path / "r"))
    assert not (tmp_path / "r" / "checkpoints").exists()


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ('batch_size: "eight"\n', "batch_size must be int, got str 'eight'"),
        ("lr: [1, 2]\n", "lr must be float, got list [1, 2]"),
        ("max_minutes: fast\n", "max_minutes must be float | None, got str 'fast'"),
    ],
)
def test_cli_train_config_of_a_wrong_type_is_named(tmp_path: Path, yaml_text: str, message: str) -> None:
    # a YAML value of the wrong type reached the checks' comparisons: a TypeError traceback naming no field
    from typer.testing import CliRunner

    from fgdepth.cli import app

    (tmp_path / "c.yaml").write_text(yaml_text)
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--config", str(tmp_path / "c.yaml"),
                                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert r.exit_code == 2 and message in r.output, r.output


def test_cli_train_config_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    # yaml's ParserError escaped as a traceback
    from typer.testing import CliRunner

    from fgdepth.cli import app

    (tmp_path / "c.yaml").write_text("size: 64\n: : :\n  - x")
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--config", str(tmp_path / "c.yaml"),
                                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert r.exit_code == 2 and "c.yaml: not valid YAML" in r.output, r.output


def test_a_batch_larger_than_the_training_set_is_refused(shard_dataset: Path, tmp_path: Path) -> None:
    # drop_last left no full batch: the run "finished" at step 0, its untrained model saved and tested
    from fgdepth.data.reader import ShardDataset

    n = len(ShardDataset(shard_dataset, "train"))
    with pytest.raises(ValueError, match=rf"batch_size {n + 1} is larger than the {n} training samples"):
        fit(_cfg(shard_dataset, tmp_path / "r", batch_size=n + 1))
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_resume_from_a_file_that_is_not_a_training_checkpoint_is_named(
    shard_dataset: Path, tmp_path: Path
) -> None:
    # Lightning's KeyError / unpickling traceback, naming no file
    from fgdepth.model import create_model
    from fgdepth.model.checkpoint import checkpoint_dict

    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.txt: not a checkpoint to resume from"):
        fit(_cfg(shard_dataset, tmp_path / "r", resume=str(text)))
    weights = tmp_path / "weights.pt"  # a model file: weights, no training state
    torch.save(checkpoint_dict(create_model("tiny", **TINY)), weights)
    with pytest.raises(ValueError, match="weights.pt: not a checkpoint to resume from"):
        fit(_cfg(shard_dataset, tmp_path / "r", resume=str(weights)))


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(False, False, "32"), (True, False, "bf16-mixed"), (False, True, "bf16-mixed")],
)
def test_auto_precision_on_cpu_takes_bf16_only_where_the_cpu_computes_it(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: str
) -> None:
    from fgdepth.train import _precision

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cfg = TrainConfig(data="d", out="o", accelerator="cpu")
    assert _precision(cfg) == expected
    for explicit in ("32", "bf16-mixed", "16-mixed"):  # an explicit choice is never second-guessed
        assert _precision(TrainConfig(data="d", out="o", accelerator="cpu", precision=explicit)) == explicit


def test_auto_precision_on_cpu_survives_a_torch_without_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    from fgdepth.train import _precision

    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert _precision(TrainConfig(data="d", out="o", accelerator="cpu")) == "32"


def test_a_run_records_the_precision_auto_chose(
    shard_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, max_steps=1, precision="auto"))
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["precision"] == "32" and summary["config"]["precision"] == "auto"


def test_merge_depth_branch_takes_the_branch_from_its_own_step(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from fgdepth.train import DEPTH_BRANCH_STEP_KEY, merge_depth_branch

    ckpt = tmp_path / "best.ckpt"
    state = {"model.head.weight": torch.zeros(2), "model.depth_net.stem.weight": torch.zeros(3)}
    torch.save({"state_dict": state, "global_step": 10}, ckpt)
    branch = tmp_path / "branch.safetensors"
    save_file({"model.depth_net.stem.weight": torch.ones(3)}, str(branch), metadata={"step": "10"})
    assert merge_depth_branch(ckpt, branch) is None  # the checkpoint's own step: nothing to do
    assert torch.equal(torch.load(ckpt, weights_only=True)["state_dict"]["model.depth_net.stem.weight"], state[
        "model.depth_net.stem.weight"])  # fmt: skip
    save_file({"model.depth_net.stem.weight": torch.ones(3)}, str(branch), metadata={"step": "6"})
    assert merge_depth_branch(ckpt, branch) == 6
    merged = torch.load(ckpt, weights_only=True)
    assert torch.equal(merged["state_dict"]["model.depth_net.stem.weight"], torch.ones(3))
    assert torch.equal(merged["state_dict"]["model.head.weight"], torch.zeros(2))  # the mask's step's own
    assert merged[DEPTH_BRANCH_STEP_KEY] == 6 and merged["global_step"] == 10
    # a branch file with other weights than the checkpoint's branch (an average switched on) is not merged
    save_file({"ema_model.depth_net.stem.weight": torch.full((3,), 2.0)}, str(branch), metadata={"step": "4"})
    assert merge_depth_branch(ckpt, branch) is None
    assert torch.equal(
        torch.load(ckpt, weights_only=True)["state_dict"]["model.depth_net.stem.weight"], torch.ones(3)
    )
    assert not list(tmp_path.glob("*.tmp"))


def test_best_checkpoint_takes_the_depth_branch_from_the_best_depth_validation(
    shard_dataset: Path, tmp_path: Path
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from fgdepth.train import DEPTH_BRANCH_BEST, DEPTH_BRANCH_STEP_KEY, is_depth_branch_key

    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, infer_size=48, max_steps=8, model_overrides=TINY_WITH_BRANCH))
    branch_file = out / "checkpoints" / DEPTH_BRANCH_BEST
    with safe_open(str(branch_file), "pt") as f:
        meta = f.metadata()
    with open(out / "logs" / "metrics.csv", newline="") as f:
        val = [
            (int(r["step"]), float(r["val/depth_abs_rel"]))
            for r in csv.DictReader(f)
            if r.get("val/depth_abs_rel")
        ]
    assert len(val) >= 3
    assert float(meta["val_depth_abs_rel"]) == pytest.approx(min(v for _, v in val), rel=1e-6)
    assert 0 < int(meta["step"]) <= 8  # a global step (the CSV's validation rows are one step behind it)
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    saved = load_file(str(branch_file))
    assert set(saved) == {k for k in best["state_dict"] if is_depth_branch_key(k)} and saved
    for k, v in saved.items():
        torch.testing.assert_close(best["state_dict"][k], v, rtol=0, atol=0)
    summary = json.loads((out / "metrics.json").read_text())
    if int(meta["step"]) == best["global_step"]:
        assert summary["depth_branch_step"] is None and DEPTH_BRANCH_STEP_KEY not in best
    else:
        assert summary["depth_branch_step"] == best[DEPTH_BRANCH_STEP_KEY] == int(meta["step"])


def test_a_depth_branch_best_at_another_step_goes_into_best_ckpt(
    shard_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring when the depth's best validation is not the mask's: a monitor that never improves after the first
    validation (the depth weight, fixed at 1) puts that validation's branch (global step 2, val_every_steps) into
    best.ckpt, with the final step's mask network."""
    import fgdepth.train as train
    from fgdepth.model.checkpoint import load_model

    monkeypatch.setattr(train, "_DEPTH_MONITOR", "train/w_depth")
    out = tmp_path / "r"
    fit(_cfg(shard_dataset, out, infer_size=48, max_steps=6, model_overrides=TINY_WITH_BRANCH))
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] == last["global_step"] == 6  # the mask's best: its final weights here
    assert best[train.DEPTH_BRANCH_STEP_KEY] == 2
    assert json.loads((out / "metrics.json").read_text())["depth_branch_step"] == 2
    for k, v in best["state_dict"].items():
        same = torch.equal(v, last["state_dict"][k])
        if train.is_depth_branch_key(k) and v.is_floating_point() and v.ndim == 4:
            assert not same, k  # step 2's branch, not step 6's
        elif not train.is_depth_branch_key(k):
            assert same, k
    model = load_model(out / "checkpoints" / "best.ckpt")  # the merged checkpoint still rebuilds the model
    assert model.depth_net is not None


def test_a_resumed_run_keeps_its_depth_branch_best_score(
    shard_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    """Resuming reads the branch file's score back: a later validation replaces it only by doing better."""
    from safetensors import safe_open

    import fgdepth.train as train

    out = tmp_path / "r"
    # the depth weight, fixed at 1: never improves after the first validation
    monkeypatch.setattr(train, "_DEPTH_MONITOR", "train/w_depth")
    fit(_cfg(shard_dataset, out, infer_size=48, max_steps=4, model_overrides=TINY_WITH_BRANCH))
    fit(_cfg(shard_dataset, out, infer_size=48, max_steps=8, model_overrides=TINY_WITH_BRANCH, resume="last"))
    with safe_open(str(out / "checkpoints" / train.DEPTH_BRANCH_BEST), "pt") as f:
        assert f.metadata()["step"] == "2"  # the first run's first validation, not the resumed run's
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best[train.DEPTH_BRANCH_STEP_KEY] == 2 and best["global_step"] == 8
