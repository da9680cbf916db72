"""The ``fgdepth`` command line: each command parses its options and calls one library function."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Foreground masks and depth from a static camera that knows its empty scene.",
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from fgdepth import __version__

        typer.echo(f"fgdepth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Foreground masks and depth from a static camera that knows its empty scene."""


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


@contextmanager
def _progress(description: str, unit: str = "samples"):
    """A rich progress bar with rate and time left; yields ``update(done, total)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def render(self, task):  # noqa: ANN001, ANN201
            speed = task.finished_speed or task.speed
            return super().render(task).__class__(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s")

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(""),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        transient=False,
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        if not bar.live.is_started:  # shown from the first report: bad input fails with its message alone
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()


def _parse_range(text: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.replace(",", ":").split(":")]
    except ValueError:  # not a number: a usage error, not a traceback
        parts = []
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise typer.BadParameter(f"expected LO:HI, got {text!r}", param_hint="--fg-height")
    return parts[0], parts[1]


@app.command("make-dataset")
def make_dataset_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset directory."),
    bg_dir: Path | None = typer.Option(None, help="Folder of backgrounds (any common image format)."),
    fg_dir: Path | None = typer.Option(None, help="Folder of RGBA foregrounds (PNG/WebP with alpha)."),
    fg_mask_dir: Path | None = typer.Option(
        None,
        help="Masks <stem>.png for RGB foregrounds without alpha: 0/255 (soft mattes kept), 0/1 or colour on black.",
    ),
    bg_depth_dir: Path | None = typer.Option(
        None, help="Depth per background: <stem>.png uint16 mm or .npy m."
    ),
    synthetic: bool = typer.Option(
        False, "--synthetic", help="Use the procedural world (default without folders)."
    ),
    num_bg: int = typer.Option(100, help="Procedural world: number of rooms."),
    num_fg: int = typer.Option(100, help="Procedural world: number of people (before flips)."),
    size: int = typer.Option(224, help="Output size (square, pixels)."),
    placements: int = typer.Option(20, help="Placements per (background, foreground) pair."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Add each foreground's mirror image."),
    placement: str = typer.Option(
        "auto", help="random | geometry | auto (geometry for the procedural world)."
    ),
    fg_height: str = typer.Option(
        "0.35:0.65", help="Random placement height LO:HI, fraction of size (<=1) or px."
    ),
    camouflage: float = typer.Option(
        0.0, help="Fraction of training samples whose person has clothing coloured like the room behind."
    ),
    camouflage_held_out: bool = typer.Option(
        False, help="Camouflage validation and test samples too (a test set of camouflaged people)."
    ),
    val_fraction: float = typer.Option(
        0.1, help="Fraction of backgrounds and of people held out for validation."
    ),
    test_fraction: float = typer.Option(
        0.1, help="Fraction of backgrounds and of people held out for testing."
    ),
    depth: str = typer.Option("auto", help="auto | none | maps | synthetic | teacher."),
    teacher: Path | None = typer.Option(None, help="Local depth-estimation checkpoint directory."),
    teacher_mode: str = typer.Option("background-once", help="background-once | per-composite."),
    teacher_batch: int = typer.Option(8, help="Teacher batch size."),
    teacher_size: int | None = typer.Option(
        None, help="Teacher input size (e.g. 224; default: the checkpoint's native size)."
    ),
    format: str = typer.Option("webdataset", "--format", help="webdataset (tar shards) | folders."),
    shard_size: int = typer.Option(1000, help="Samples per shard."),
    jpeg_quality: int = typer.Option(90, help="Composite JPEG quality."),
    limit: int | None = typer.Option(None, help="Only a seeded random subset of this many samples."),
    seed: int = typer.Option(0, help="Global seed."),
    workers: int = typer.Option(2, help="Worker processes (local engine) or CPUs of a local Ray instance."),
    engine: str = typer.Option("local", help="local | ray (shards become Ray tasks; same bytes)."),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster address (default: start a local instance)."
    ),
    strict: bool = typer.Option(False, help="Abort on unreadable inputs instead of skipping them."),
    overwrite: bool = typer.Option(False, help="Replace a dataset made with other settings."),
) -> None:
    """Compose backgrounds and people into a dataset of composites, masks and depth (resumable)."""
    from fgdepth.config import FactoryConfig
    from fgdepth.data.verify import summary_lines
    from fgdepth.factory import DatasetExistsError, make_dataset
    from fgdepth.sources import SourceError
    from fgdepth.teacher import TeacherError

    if synthetic and (bg_dir or fg_dir):
        _fail("--synthetic cannot be combined with --bg-dir/--fg-dir")
    cfg = FactoryConfig(
        bg_dir=str(bg_dir) if bg_dir else None,
        fg_dir=str(fg_dir) if fg_dir else None,
        fg_mask_dir=str(fg_mask_dir) if fg_mask_dir else None,
        bg_depth_dir=str(bg_depth_dir) if bg_depth_dir else None,
        num_bg=num_bg,
        num_fg=num_fg,
        size=size,
        placements=placements,
        flip=flip,
        placement=placement,
        fg_height=_parse_range(fg_height),
        camouflage=camouflage,
        camouflage_held_out=camouflage_held_out,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        depth=depth,
        teacher=str(teacher) if teacher else None,
        teacher_mode=teacher_mode,
        teacher_batch=teacher_batch,
        teacher_size=teacher_size,
        format=format,
        shard_size=shard_size,
        jpeg_quality=jpeg_quality,
        limit=limit,
        seed=seed,
        workers=workers,
        engine=engine,
        ray_address=ray_address,
        strict=strict,
    )
    try:
        with _progress("make-dataset") as update:
            manifest = make_dataset(cfg, out, overwrite=overwrite, progress=update)
    # OSError: --out a file, a read-only place, a full disk (its message names the path)
    except (ValueError, DatasetExistsError, SourceError, OSError, TeacherError) as err:
        _fail(str(err))
    for line in summary_lines(manifest):
        typer.echo(line)
    for s in manifest["skipped"]:
        typer.secho(f"skipped {s['path']}: {s['reason']}", fg="yellow", err=True)
    typer.echo(f"wrote {out / 'manifest.json'}")


@app.command("label-depth")
def label_depth_cmd(
    data: Path = typer.Argument(..., help="Dataset directory (webdataset shards or folders)."),
    teacher: Path = typer.Option(..., help="Local depth-estimation checkpoint directory."),
    teacher_mode: str = typer.Option("background-once", help="background-once | per-composite."),
    teacher_size: int | None = typer.Option(
        None, help="Teacher input size (e.g. 224; default: the checkpoint's native size)."
    ),
    teacher_batch: int = typer.Option(8, help="Teacher batch size."),
    overwrite_depth: bool = typer.Option(False, help="Replace the depth the dataset already has."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    engine: str = typer.Option(
        "local", help="local | ray (units in Ray actors: one teacher load each, a GPU each)."
    ),
    workers: int = typer.Option(
        2, help="Ray engine without GPUs: CPU actors (and CPUs of a local instance)."
    ),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster address (default: start a local instance)."
    ),
) -> None:
    """Add or replace depth in an existing dataset with a depth teacher (resumable: rerun after a stop)."""
    from fgdepth.data.verify import summary_lines
    from fgdepth.labeling import label_depth
    from fgdepth.teacher import TeacherError

    try:
        with _progress("label-depth") as update:
            manifest = label_depth(
                data, teacher, mode=teacher_mode, input_size=teacher_size, batch_size=teacher_batch,
                overwrite_depth=overwrite_depth, device=_device(device), progress=update,
                engine=engine, workers=workers, ray_address=ray_address,
            )  # fmt: skip
    except (ValueError, OSError, TeacherError) as err:  # OSError: a read-only dataset, a full disk
        _fail(str(err))
    for line in summary_lines(manifest):
        typer.echo(line)
    typer.echo(f"wrote {data / 'manifest.json'}")


@app.command("inspect")
def inspect_cmd(
    data: Path = typer.Argument(..., help="Dataset directory."),
    fast: bool = typer.Option(False, help="Checksums and counts only; do not decode every file."),
) -> None:
    """Summarise a dataset and verify it; exits non-zero naming every problem."""
    from fgdepth.data.verify import summary_lines, verify_dataset

    rep = verify_dataset(data, deep=not fast)
    if rep.manifest:
        for line in summary_lines(rep.manifest):
            typer.echo(line)
    if rep.problems:
        for p in rep.problems[:200]:
            typer.secho(f"problem: {p}", fg="red", err=True)
        if len(rep.problems) > 200:
            typer.secho(f"... and {len(rep.problems) - 200} more", fg="red", err=True)
        typer.secho(f"FAILED: {len(rep.problems)} problem(s) in {data}", fg="red", err=True)
        raise typer.Exit(1)
    typer.secho(f"OK: {rep.checked_samples:,} samples verified in {data}", fg="green")


@app.command("show")
def show_cmd(
    data: Path = typer.Argument(..., help="Dataset directory."),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="PNG to write."),
    n: int = typer.Option(6, help="Number of samples."),
    selection: str = typer.Option("all", help="Split selection (train, val, test, test_new_people, ...)."),
    seed: int = typer.Option(0, help="Which random samples."),
) -> None:
    """Write a PNG grid of random samples: background | composite | mask | depth (with a scale bar)."""
    from fgdepth.data.reader import random_samples
    from fgdepth.evaluate import dataset_info
    from fgdepth.viz import depth_unit, sample_grid, save_png

    if n < 1:
        _fail(f"--n must be at least 1, got {n}")
    try:
        unit = depth_unit(dataset_info(data)["depth_kind"])
        samples = random_samples(data, n=n, selection=selection, seed=seed)
        if not samples:
            _fail(f"{data}: the selection {selection!r} has no samples")
        grid = sample_grid(samples, unit=unit)
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    try:
        save_png(out, grid)
    except OSError as err:  # a folder, a read-only place
        _fail(f"cannot write {out}: {err.strerror or err}")
    typer.echo(f"wrote {out}")


@app.command("train")
def train_cmd(
    data: Path | None = typer.Option(None, "--data", "-d", help="Dataset directory (shards or folders)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run directory \\[default: runs/fgdepth]."),
    model: str | None = typer.Option(None, help="Model preset: tiny, small, base \\[default: tiny]."),
    source: str | None = typer.Option(
        None, help="auto | memory | shards | folders | on-the-fly \\[default: auto]."
    ),
    size: int | None = typer.Option(None, help="Training resolution \\[default: 96]."),
    infer_size: int | None = typer.Option(
        None,
        help="See samples at this size: train on --size crops of them, validate and predict whole images.",
    ),
    person_crop: float | None = typer.Option(
        None,
        help="Share of the training crops moved onto a person (augment_config.person_crop_p; the demo: 0.8 "
        "with --size 48 --infer-size 160) \\[default: 0].",
    ),
    batch_size: int | None = typer.Option(None, help="Batch size per device \\[default: 32]."),
    lr: float | None = typer.Option(None, help="Peak learning rate, one-cycle schedule \\[default: 0.003]."),
    max_minutes: float | None = typer.Option(None, help="Time budget in minutes, 0 = none \\[default: 6]."),
    max_steps: int | None = typer.Option(None, help="Step limit, -1 = none \\[default: -1]."),
    max_epochs: int | None = typer.Option(None, help="Epoch limit \\[default: 1000]."),
    val_every: int | None = typer.Option(None, help="Validate every N steps \\[default: 200]."),
    weighting: str | None = typer.Option(
        None, help="Task weighting: fixed | uncertainty \\[default: fixed]."
    ),
    ema_decay: float | None = typer.Option(
        None,
        help="Validate, test and export a moving average of the weights with this decay per step, 0 = off "
        "\\[default: 0].",
    ),
    precision: str | None = typer.Option(
        None,
        help="auto | bf16-mixed | 16-mixed | 32 \\[default: auto: bf16-mixed on a GPU that supports it, else "
        "16-mixed; on a CPU bf16-mixed where it computes bf16 natively (AVX512-BF16, AMX), else 32].",
    ),
    augment: bool | None = typer.Option(
        None, "--augment/--no-augment", help="Training augmentation \\[default: on]."
    ),
    devices: str | None = typer.Option(None, help="Devices per node, a number or auto \\[default: 1]."),
    accelerator: str | None = typer.Option(None, help="auto | cpu | gpu \\[default: auto]."),
    strategy: str | None = typer.Option(None, help="auto | ddp | ddp_spawn | ... \\[default: auto]."),
    num_nodes: int | None = typer.Option(None, help="Nodes, multi-node DDP \\[default: 1]."),
    num_workers: int | None = typer.Option(None, help="Data-loader workers per device \\[default: 0]."),
    compile_mode: str | None = typer.Option(
        None,
        "--compile",
        help="torch.compile the training step: default | reduce-overhead (CUDA graphs, for GPUs) | max-autotune "
        "| max-autotune-no-cudagraphs \\[default: off].",
    ),
    seed: int | None = typer.Option(None, help="Seed \\[default: 0]."),
    resume: str | None = typer.Option(None, help="Checkpoint to resume, or 'last'."),
    overwrite: bool | None = typer.Option(
        None,
        "--overwrite/--no-overwrite",
        help="Start again in an --out that holds a run, removing its checkpoints and logs \\[default: refuse].",
    ),
    config: Path | None = typer.Option(
        None, help="YAML TrainConfig (any field); the options given on the command line win over it."
    ),
) -> None:
    """Train the dual-input model; the test split's metrics are printed and written to OUT/metrics.json."""
    from fgdepth.config import from_dict, load_yaml
    from fgdepth.train import TrainConfig, fit

    try:
        base = load_yaml(config) if config else {}
    except (OSError, ValueError) as err:
        _fail(f"--config: {err}")
    # Only the options given override the YAML: a default here would silently undo the file's value.
    given = {
        k: v
        for k, v in dict(
            data=None if data is None else str(data), out=None if out is None else str(out), model=model,
            source=source, size=size, infer_size=infer_size, batch_size=batch_size, lr=lr,
            max_minutes=max_minutes, max_steps=max_steps, max_epochs=max_epochs, val_every_steps=val_every,
            weighting=weighting, ema_decay=ema_decay, precision=precision, augment=augment,
            devices=int(devices) if devices is not None and devices.isdigit() else devices,
            accelerator=accelerator, strategy=strategy, num_nodes=num_nodes, num_workers=num_workers, seed=seed,
            resume=resume, overwrite=overwrite, compile=compile_mode,
        ).items()
        if v is not None
    }  # fmt: skip
    if given.get("max_minutes") == 0:
        given["max_minutes"] = None  # 0 = no budget
    merged = {**base, **given}
    if person_crop is not None:  # one field of the YAML's augment_config, the others kept
        merged["augment_config"] = {**(merged.get("augment_config") or {}), "person_crop_p": person_crop}
    if not merged.get("data"):
        _fail("give the dataset: --data DIR (or data: in --config)")
    try:
        cfg = from_dict(TrainConfig, merged)
        metrics = fit(cfg)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        _fail(str(err))
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"run: {cfg.out}")


def _device(name: str) -> str:
    """auto, or a torch device name; a usage error (not a traceback deep in a model) for one that cannot run."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(name).type
    except RuntimeError:
        _fail(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        _fail(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
    return name


_REGISTER_HELP = (
    "Move and re-expose the background to match the composite first (a global shift and a gain per channel, as "
    "a static camera's two shots differ)."
)
_MASK_SCALE_HELP = (
    "The mask network's input enlargement in place of the checkpoint's (tiny: 1.4): lower is faster, higher "
    "gives small people finer outlines."
)


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint (.ckpt/.safetensors)."
    ),
    data: Path = typer.Option(..., "--data", "-d", help="Dataset directory, or any reference-layout folder."),
    selection: str | None = typer.Option(
        None,
        help="Split selection: train, val, test, test_new_people, test_new_room, all \\[default: test; a folder "
        "without a manifest: all, and a selection of it takes the seeded split that training on it used].",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write one CSV row per sample."),
    align: str = typer.Option("auto", help="Depth alignment: auto | none | median | lstsq."),
    limit: int | None = typer.Option(None, help="Only the first N samples."),
    size: int | None = typer.Option(None, help="Model input size (default: the training size)."),
    batch_size: int = typer.Option(16, help="Batch size."),
    onnx: Path | None = typer.Option(None, "--onnx", help="Evaluate an exported ONNX model instead."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (PyTorch only)."),
    hfov: float | None = typer.Option(
        None, help="The cameras' horizontal field of view, degrees (models with a canonical camera)."
    ),
    intrinsics: bool = typer.Option(
        True,
        help="Use each sample's recorded camera (procedural datasets record it) when --hfov is not given.",
    ),
    tta: bool = typer.Option(False, "--tta", help="Average with the mirror image's prediction (2x compute)."),
    mask_scale: float | None = typer.Option(None, help=_MASK_SCALE_HELP),
    register: bool = typer.Option(True, help=_REGISTER_HELP),
) -> None:
    """Evaluate a model against the classical baseline: prints a table, writes JSON / CSV."""
    from fgdepth.evaluate import evaluate, table_lines, write_csv, write_json

    if (checkpoint is None) == (onnx is None):
        _fail("give exactly one of --checkpoint or --onnx")
    for option, path in (("--json", json_out), ("--csv", csv_out)):  # before the evaluation, not after it
        if path is not None and path.is_dir():
            _fail(f"{option} {path}: a folder; give a file name")
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            _fail(f"{option} {path}: cannot make its folder ({err})")
    try:
        result = evaluate(
            checkpoint, data, selection=selection, align=align, batch_size=batch_size, size=size,
            limit=limit, per_sample=csv_out is not None, onnx=onnx, device=_device(device), hfov=hfov,
            intrinsics=intrinsics, flip_tta=tta, mask_scale=mask_scale, register=register,
        )  # fmt: skip
    except (FileNotFoundError, ValueError, ImportError) as err:
        _fail(str(err))
    for line in table_lines(result):
        typer.echo(line)
    if csv_out is not None:
        typer.echo(f"wrote {write_csv(result.pop('per_sample'), csv_out)}")
    if json_out is not None:
        typer.echo(f"wrote {write_json(result, json_out)}")


@app.command("predict")
def predict_cmd(
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Checkpoint (.ckpt/.safetensors)."
    ),
    background: Path = typer.Option(
        ..., "--background", "-b", help="The empty scene (resized to each input)."
    ),
    image: Path | None = typer.Option(None, "--image", help="One image with people."),
    images: Path | None = typer.Option(None, "--images", help="A folder of images."),
    video: Path | None = typer.Option(None, "--video", help="A static-camera video (every frame)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    onnx: Path | None = typer.Option(
        None, "--onnx", help="Run an exported ONNX model (onnxruntime) instead."
    ),
    size: int | None = typer.Option(None, help="Model input size, short side (default: the training size)."),
    batch_size: int = typer.Option(8, help="Batch size."),
    device: str = typer.Option("auto", help="auto | cpu | cuda (PyTorch only)."),
    hfov: float | None = typer.Option(
        None,
        help="The camera's horizontal field of view, degrees: metric depth for models with a canonical "
        "camera (without it, the canonical camera's, 75 for the presets, is assumed across the width).",
    ),
    tta: bool = typer.Option(False, "--tta", help="Average with the mirror image's prediction (2x compute)."),
    mask_scale: float | None = typer.Option(None, help=_MASK_SCALE_HELP),
    register: bool = typer.Option(True, help=_REGISTER_HELP),
) -> None:
    """Masks (0/255 PNG), depth (uint16 mm PNG), colour depth and overlays for images or a video."""
    from fgdepth.predict import predict

    if (checkpoint is None) == (onnx is None):
        _fail("give exactly one of --checkpoint or --onnx")
    if sum(x is not None for x in (image, images, video)) != 1:
        _fail("give exactly one of --image, --images or --video")
    try:
        summary = predict(
            background, out, checkpoint=checkpoint, onnx=onnx, image=image, images=images, video=video,
            size=size, batch_size=batch_size, device=_device(device), hfov=hfov, flip_tta=tta,
            mask_scale=mask_scale, register=register,
        )  # fmt: skip
    except (FileNotFoundError, ValueError, OSError, ImportError) as err:
        _fail(str(err))
    outputs = summary["outputs"]
    frames = sum(o.get("frames", 1) for o in outputs)
    typer.echo(f"predicted {frames} image(s) at model size {summary['size']}; wrote {out}")
    for warning in summary["warnings"]:
        typer.secho(f"warning: {warning}", fg="yellow", err=True)
    if summary["skipped"]:
        skipped = summary["skipped"]
        _fail(
            f"{len(skipped)} input(s) skipped (listed in {out / 'predict.json'}): {skipped[0]['error']}",
            code=1,
        )


@app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., help="Training run directory."),
    data: Path | None = typer.Option(
        None, "--data", "-d", help="Dataset (default: the run's, test selection)."
    ),
    n: int = typer.Option(4, help="Samples per grid (good, median, worst)."),
    limit: int | None = typer.Option(None, help="Only the first N samples."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Write RUN/report/report.html: metrics vs baseline, good / median / worst grids, curves, config."""
    from fgdepth.report import make_report

    try:
        path = make_report(run, data=data, n=n, limit=limit, device=_device(device))
    except (FileNotFoundError, ValueError) as err:
        _fail(str(err))
    typer.echo(f"wrote {path}")


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Checkpoint (.ckpt/.safetensors)."),
    out: Path = typer.Option(Path("model.onnx"), "--out", "-o", help="ONNX file to write."),
    size: int = typer.Option(192, help="Export / check size (batch and size stay dynamic)."),
    opset: int = typer.Option(17, help="ONNX opset."),
    mask_scale: float | None = typer.Option(None, help=_MASK_SCALE_HELP),
) -> None:
    """Export to ONNX (inputs background/composite, outputs mask_logits/depth), checked with onnxruntime."""
    from fgdepth.export import export_onnx
    from fgdepth.model.checkpoint import load_model
    from fgdepth.predict import checkpoint_train_size

    if out.is_dir():  # else found only at the final rename, after the export and its checks
        _fail(f"--out {out}: a folder; give the ONNX file's name", code=1)
    try:
        model = load_model(checkpoint, mask_scale=mask_scale)
        trained = checkpoint_train_size(checkpoint)  # predict --onnx's default size, as predict -c's
        report = export_onnx(model, out, size=size, opset=opset, input_size=trained)
    # OSError: an --out that cannot be written
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        _fail(str(err), code=1)
    typer.echo(f"wrote {report['path']}")


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Demo directory (data, run, report)."),
    minutes: float = typer.Option(6.0, help="Training time budget in minutes."),
    num_bg: int | None = typer.Option(None, help="Procedural rooms (default: DemoConfig's, 1,000)."),
    num_fg: int | None = typer.Option(
        None, help="Procedural people before flips (default: DemoConfig's, 40)."
    ),
    limit: int | None = typer.Option(
        None, help="Samples: a seeded subset of the (room, person) pairs (default: DemoConfig's, 24,000)."
    ),
    seed: int = typer.Option(0, help="Seed."),
    workers: int = typer.Option(2, help="Processes that render the world."),
    accelerator: str = typer.Option("auto", help="Where training runs: auto (a GPU if any) | cpu | gpu."),
    batch_size: int = typer.Option(32, help="Training batch; a GPU wants 128 or more."),
    compile_mode: str | None = typer.Option(
        None,
        "--compile",
        help="torch.compile the training step, e.g. reduce-overhead on a GPU (as fgdepth train).",
    ),
    overwrite: bool = typer.Option(
        False, help="Replace a world in OUT/data made with other settings (else it is reused, or refused)."
    ),
) -> None:
    """The whole cycle on the procedural world: dataset, training (tiny), held-out evaluation, report.

    On a GPU: fgdepth demo --workers 16 --batch-size 128 --compile reduce-overhead"""
    from fgdepth.demo import DemoConfig, run_demo
    from fgdepth.factory import DatasetExistsError

    given = (("num_bg", num_bg), ("num_fg", num_fg), ("limit", limit))
    sizes = {k: v for k, v in given if v is not None}
    cfg = DemoConfig(
        train_minutes=minutes, seed=seed, workers=workers, accelerator=accelerator, batch_size=batch_size,
        compile=compile_mode, **sizes,
    )  # fmt: skip
    try:
        summary = run_demo(out, cfg, log=typer.echo, overwrite=overwrite)
    except (ValueError, DatasetExistsError) as err:  # a setting out of range, or OUT/data another world
        _fail(str(err))
    h = summary["headline"]
    typer.echo(
        f"held-out test ({h['num_samples']} samples, unseen rooms and people): "
        f"mask IoU {h['mask_iou']:.3f} (baseline {h['baseline_mask_iou']:.3f}), F1 {h['mask_f1']:.3f}, "
        f"depth AbsRel {h['depth_abs_rel']:.3f}, RMSE {h['depth_rmse']:.3f} m, delta1 {h['depth_delta1']:.3f}"
        f" (camera: {summary['camera']})"
    )
    u = summary["camera_unknown"]
    typer.echo(
        f"depth as if the cameras were unknown: AbsRel {u['depth_abs_rel']:.3f}, RMSE {u['depth_rmse']:.3f} m, "
        f"delta1 {u['depth_delta1']:.3f}"
    )
    typer.echo(f"timings: {summary['timings']}")
    typer.echo(f"report: {summary['report']}")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
