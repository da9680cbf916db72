"""fgdepth predict: files, sizes and dtypes for --image, --images and --video; the ONNX path; the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from eval_helpers import cached_onnx_file, scene
from fgdepth.cli import app
from fgdepth.predict import Predictor, model_input_size

pytestmark = pytest.mark.usefixtures("no_onednn")

KINDS = ("mask", "depth", "depth_color", "overlay")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bg.png (60x80), a.jpg (60x80), b.png (45x60: the background is resized to it), clip.mp4 (5 frames)."""
    root = tmp_path_factory.mktemp("in")
    bg, comp, _, _ = scene(60, 80, 0)
    cv2.imwrite(str(root / "bg.png"), bg[..., ::-1])
    imgs = root / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.jpg"), comp[..., ::-1])
    cv2.imwrite(str(imgs / "b.png"), cv2.resize(comp, (60, 45))[..., ::-1])
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (80, 60))
    assert writer.isOpened()
    for i in range(5):
        writer.write(np.roll(comp, 3 * i, axis=1)[..., ::-1].copy())
    writer.release()
    return root


def _read(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert arr is not None, path
    return arr


def _check_outputs(out: Path, stem: str, hw: tuple[int, int]) -> None:
    mask, depth = _read(out / f"{stem}_mask.png"), _read(out / f"{stem}_depth.png")
    assert mask.dtype == np.uint8 and mask.shape == hw and set(np.unique(mask)) <= {0, 255}
    assert depth.dtype == np.uint16 and depth.shape == hw and depth.max() > 0
    for kind in ("depth_color", "overlay"):
        assert _read(out / f"{stem}_{kind}.png").shape == (*hw, 3)


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["predict", *args])
    assert result.exit_code == 0, result.output


def test_model_input_size() -> None:
    assert model_input_size(96, 96, 96) == (96, 96)
    assert model_input_size(60, 80, 96) == (96, 128)
    assert model_input_size(200, 100, 50) == (96, 50)  # 100 rounded to a multiple of 32
    assert model_input_size(480, 640, 192) == (192, 256)
    assert model_input_size(100, 101, 64) == (64, 64)
    # a size that is not a multiple of 32 (fgdepth train --size 48, --infer-size 60): square images were
    # stretched to (48, 64) / (60, 64), not seen square as in training
    assert model_input_size(64, 64, 60) == (60, 60)
    assert model_input_size(64, 64, 48) == (48, 48)
    assert model_input_size(160, 160, 80) == (80, 80)
    assert model_input_size(120, 160, 60) == (60, 64)  # 80 px across: the nearer of 60 and a multiple of 32


def test_predict_image(model_file: Path, inputs: Path, tmp_path: Path) -> None:
    _run(["-c", str(model_file), "-b", str(inputs / "bg.png"), "--image", str(inputs / "imgs" / "a.jpg"),
          "--out", str(tmp_path), "--size", "64"])  # fmt: skip
    _check_outputs(tmp_path, "a", (60, 80))
    summary = json.loads((tmp_path / "predict.json").read_text())
    assert summary["size"] == 64 and len(summary["outputs"]) == 1 and summary["warnings"] == []


def test_predict_images_resizes_background(model_file: Path, inputs: Path, tmp_path: Path) -> None:
    _run(["-c", str(model_file), "-b", str(inputs / "bg.png"), "--images", str(inputs / "imgs"),
          "--out", str(tmp_path), "--size", "64"])  # fmt: skip
    _check_outputs(tmp_path, "a", (60, 80))
    _check_outputs(tmp_path, "b", (45, 60))


def test_same_aspect_allows_rounding_not_stretching() -> None:
    from fgdepth.data.codec import same_aspect

    assert same_aspect((1080, 1920), (90, 160)) and same_aspect((60, 80), (45, 60))
    assert same_aspect((1080, 1919), (90, 160))  # a side rounded to whole pixels
    assert same_aspect((7, 9), (14, 19))  # half a pixel is a large share of a small side
    assert not same_aspect((480, 640), (360, 640))  # 4:3 against 16:9
    assert not same_aspect((200, 300), (100, 120))
    assert not same_aspect((100, 100), (100, 104))  # 4 % wider


def test_predict_warns_when_the_background_is_stretched(
    model_file: Path, inputs: Path, tmp_path: Path
) -> None:
    # a background of another framing was silently stretched to each image: predicted, but named as suspect
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name, (w, h) in {"scaled.png": (40, 30), "wide.png": (80, 45), "wide2.png": (80, 45)}.items():
        cv2.imwrite(str(imgs / name), cv2.resize(_read(inputs / "imgs" / "a.jpg"), (w, h)))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", "-c", str(model_file), "-b", str(inputs / "bg.png"), "--images",
                                      str(imgs), "--out", str(out), "--size", "64"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "predict.json").read_text())
    assert len(summary["outputs"]) == 3
    # once per image size, naming the image and the background
    assert len(summary["warnings"]) == 1 and str(imgs / "wide.png") in summary["warnings"][0]
    assert "bg.png 80x60" in summary["warnings"][0] and "warning: " in result.output
    _check_outputs(out, "wide", (45, 80))
    # a video's frames are checked once, against the same background
    video = tmp_path / "wide.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (80, 44))
    for _ in range(2):
        writer.write(np.zeros((44, 80, 3), np.uint8))
    writer.release()
    result = CliRunner().invoke(app, ["predict", "-c", str(model_file), "-b", str(inputs / "bg.png"), "--video",
                                      str(video), "--out", str(tmp_path / "v"), "--size", "64"])  # fmt: skip
    assert result.exit_code == 0, result.output
    warnings = json.loads((tmp_path / "v" / "predict.json").read_text())["warnings"]
    assert len(warnings) == 1 and "wide.mp4's frames" in warnings[0]


def test_predict_images_skips_an_unreadable_one_and_predicts_the_rest(
    model_file: Path, inputs: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    imgs = tmp_path / "imgs"
    shutil.copytree(inputs / "imgs", imgs)
    (imgs / "0_broken.jpg").write_bytes(b"not a picture")  # first in the batch
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["predict", "-c", str(model_file), "-b", str(inputs / "bg.png"), "--images",
                                      str(imgs), "--out", str(out), "--size", "64"])  # fmt: skip
    assert result.exit_code == 1 and "1 input(s) skipped" in result.output and "0_broken.jpg" in result.output
    _check_outputs(out, "a", (60, 80))
    _check_outputs(out, "b", (45, 60))
    summary = json.loads((out / "predict.json").read_text())
    assert [o["input"] for o in summary["skipped"]] == [str(imgs / "0_broken.jpg")]
    assert len(summary["outputs"]) == 2


def test_predict_video(model_file: Path, inputs: Path, tmp_path: Path) -> None:
    _run(["-c", str(model_file), "-b", str(inputs / "bg.png"), "--video", str(inputs / "clip.mp4"),
          "--out", str(tmp_path), "--size", "64", "--batch-size", "2"])  # fmt: skip
    for folder, suffix in (("frames", "png"), ("masks", "png"), ("depth", "png"), ("overlay", "png")):
        files = sorted((tmp_path / folder).glob(f"*.{suffix}"))
        assert [f.stem for f in files] == [f"clip_{i:06d}" for i in range(5)], folder
    mask = _read(tmp_path / "masks" / "clip_000003.png")
    assert mask.dtype == np.uint8 and mask.shape == (60, 80)
    assert _read(tmp_path / "depth" / "clip_000003.png").dtype == np.uint16
    cap = cv2.VideoCapture(str(tmp_path / "clip_overlay_depth.mp4"))
    n, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    cap.release()
    assert n == 5 and shape == (60, 160, 3)  # overlay | depth colour


def test_predict_onnx_same_mask(
    model_file: Path, inputs: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx_path = cached_onnx_file(tmp_path_factory)
    common = ["-b", str(inputs / "bg.png"), "--image", str(inputs / "imgs" / "a.jpg"), "--size", "64"]
    _run(["-c", str(model_file), *common, "--out", str(tmp_path / "pt")])
    _run(["--onnx", str(onnx_path), *common, "--out", str(tmp_path / "ort")])
    _check_outputs(tmp_path / "ort", "a", (60, 80))
    a, b = _read(tmp_path / "pt" / "a_mask.png"), _read(tmp_path / "ort" / "a_mask.png")
    assert np.mean(a != b) <= 0.001  # at most a pixel or two whose logit is ~0
    da = _read(tmp_path / "pt" / "a_depth.png").astype(int)
    db = _read(tmp_path / "ort" / "a_depth.png").astype(int)
    assert np.abs(da - db).max() <= 1  # 1 mm rounding


def test_predictor_batches_mixed_sizes(model_file: Path) -> None:
    pred = Predictor.load(model_file, size=32, batch_size=2)
    pairs = [scene(h, w, i)[:2] for i, (h, w) in enumerate([(40, 40), (30, 50), (40, 40), (20, 20)])]
    out = pred([p[0] for p in pairs], [p[1] for p in pairs])
    assert [m.shape for m, _ in out] == [(40, 40), (30, 50), (40, 40), (20, 20)]
    assert all(m.dtype == bool and d.dtype == np.float32 and (d >= 0).all() for m, d in out)
    single = pred([pairs[1][0]], [pairs[1][1]])[0]
    assert np.array_equal(single[0], out[1][0])  # batching does not change a result
    raw = pred.raw([p[0] for p in pairs], [p[1] for p in pairs])
    for (mask, depth), (logits, raw_depth) in zip(out, raw, strict=True):
        assert logits.dtype == np.float32 and np.array_equal(logits > 0, mask)
        np.testing.assert_array_equal(raw_depth, depth)
    assert all(np.unique(lg).size > 2 for lg, _ in raw)  # logits, not a thresholded mask
    with pytest.raises(ValueError, match="exactly one"):
        Predictor()


def test_predict_errors(model_file: Path, inputs: Path, tmp_path: Path) -> None:
    base = ["predict", "-c", str(model_file), "-b", str(inputs / "bg.png"), "--out", str(tmp_path)]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 2 and "exactly one" in r.output
    r = CliRunner().invoke(app, [*base, "--image", str(tmp_path / "missing.jpg")])
    assert r.exit_code == 2 and "missing.jpg" in r.output


def test_flip_tta_averages_the_pair_and_its_mirror_image() -> None:
    from eval_helpers import randomised_tiny_model

    model = randomised_tiny_model().eval()
    bg, comp, _, _ = scene(40, 56, 3)
    plain, tta = Predictor(model=model, size=40), Predictor(model=model, size=40, flip_tta=True)
    (_, depth), (_, mirrored) = plain([bg, bg[:, ::-1]], [comp, comp[:, ::-1]])
    (_, depth_tta), (_, mirrored_tta) = tta([bg, bg[:, ::-1]], [comp, comp[:, ::-1]])
    np.testing.assert_allclose(depth_tta, (depth + mirrored[:, ::-1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mirrored_tta, depth_tta[:, ::-1], rtol=1e-5, atol=1e-6)  # mirror-symmetric
    assert not np.allclose(depth_tta, depth)  # the model itself is not


def test_predict_images_with_one_stem_keeps_each_outputs(
    model_file: Path, inputs: Path, tmp_path: Path
) -> None:
    # x.jpg and x.png: each wrote x_mask.png..., the second silently replacing the first's outputs
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    bg, comp, _, _ = scene(60, 80, 0)
    cv2.imwrite(str(imgs / "x.jpg"), comp[..., ::-1])
    cv2.imwrite(str(imgs / "x.png"), cv2.resize(comp, (60, 45))[..., ::-1])
    out = tmp_path / "out"
    _run(["-c", str(model_file), "-b", str(inputs / "bg.png"), "--images", str(imgs), "--out", str(out),
          "--size", "64"])  # fmt: skip
    summary = json.loads((out / "predict.json").read_text())
    masks = {o["input"]: o["mask"] for o in summary["outputs"]}
    assert len(set(masks.values())) == 2, masks
    assert _read(Path(masks[str(imgs / "x.jpg")])).shape == (60, 80)
    assert _read(Path(masks[str(imgs / "x.png")])).shape == (45, 60)


def test_predict_onnx_takes_the_trained_input_size(model_file: Path, inputs: Path, tmp_path: Path) -> None:
    # an exported model predicted at 192 px whatever its checkpoint was trained at (the demo's 160: depth ~6 % off
    # PyTorch's), while the checkpoint itself defaults to its training size
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(model_file, run / "model.safetensors")
    (run / "metrics.json").write_text(json.dumps({"config": {"size": 48}}))
    onnx_path = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "-c", str(run / "model.safetensors"), "--out", str(onnx_path),
                                      "--size", "64"])  # fmt: skip
    assert result.exit_code == 0, result.output
    common = ["-b", str(inputs / "bg.png"), "--image", str(inputs / "imgs" / "a.jpg")]
    _run(["-c", str(run / "model.safetensors"), *common, "--out", str(tmp_path / "pt")])
    _run(["--onnx", str(onnx_path), *common, "--out", str(tmp_path / "ort")])
    assert json.loads((tmp_path / "pt" / "predict.json").read_text())["size"] == 48
    assert json.loads((tmp_path / "ort" / "predict.json").read_text())["size"] == 48


def test_predict_video_again_leaves_no_frames_of_the_older_one(
    model_file: Path, inputs: Path, tmp_path: Path
) -> None:
    # a shorter video of the same name into the same --out kept the older one's later frames beside the new ones
    out = tmp_path / "out"
    args = ["-c", str(model_file), "-b", str(inputs / "bg.png"), "--out", str(out), "--size", "64"]
    _run([*args, "--video", str(inputs / "clip.mp4")])  # 5 frames
    short = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (80, 60))
    for _ in range(2):
        writer.write(cv2.imread(str(inputs / "bg.png")))
    writer.release()
    (out / "masks" / "keep.png").write_bytes(b"a file of the user's")
    _run([*args, "--video", str(short)])
    for folder in ("frames", "masks", "depth", "depth_color", "overlay"):
        assert sorted(p.stem for p in (out / folder).glob("clip_*.png")) == ["clip_000000", "clip_000001"], (
            folder
        )
    assert (out / "masks" / "keep.png").is_file()


def test_predict_video_writes_its_mp4_atomically(inputs: Path, tmp_path: Path) -> None:
    # the MP4 was written in place: a run that failed (or was killed) mid-video left a truncated file there,
    # replacing an older complete one, where the README promises files renamed only when complete
    from fgdepth.predict import predict_video

    class FailsOnSecondBatch:
        batch_size = 2
        calls = 0

        def __call__(self, bgs: list, frames: list) -> list:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("killed")
            return [(np.zeros(f.shape[:2], bool), np.ones(f.shape[:2], np.float32)) for f in frames]

    mp4 = tmp_path / "clip_overlay_depth.mp4"
    mp4.write_bytes(b"an older complete video")
    bg = cv2.imread(str(inputs / "bg.png"))[..., ::-1]
    with pytest.raises(RuntimeError, match="killed"):
        predict_video(FailsOnSecondBatch(), bg, inputs / "clip.mp4", tmp_path)  # type: ignore[arg-type]
    assert mp4.read_bytes() == b"an older complete video"
    assert not [p.name for p in tmp_path.iterdir() if p.suffix in (".mp4", ".tmp") and p != mp4]
    works = FailsOnSecondBatch()
    works.calls = -10
    predict_video(works, bg, inputs / "clip.mp4", tmp_path)  # type: ignore[arg-type]
    assert cv2.VideoCapture(str(mp4)).get(cv2.CAP_PROP_FRAME_COUNT) == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [mp4.name]


@pytest.mark.parametrize(
    "option, message",
    [
        (["--size", "0"], "size must be >= 8 pixels, got 0"),
        (["--size", "-5"], "size must be >= 8 pixels, got -5"),
        (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
        (["--batch-size", "-1"], "batch_size must be >= 1, got -1"),
    ],
)
def test_predict_refuses_a_bad_size_or_batch_by_name(
    model_file: Path, inputs: Path, tmp_path: Path, option: list[str], message: str
) -> None:
    # tracebacks from the resizing (--size 0, -5), range() (--batch-size 0) or an unfilled result (-1)
    r = CliRunner().invoke(app, ["predict", "-c", str(model_file), "-b", str(inputs / "bg.png"), "--image",
                                 str(inputs / "imgs" / "a.jpg"), "--out", str(tmp_path), *option])  # fmt: skip
    assert r.exit_code == 2 and message in r.output, r.output


def test_predict_images_refuses_writing_into_its_input_folder(
    model_file: Path, inputs: Path, tmp_path: Path
) -> None:
    # --out = --images: the next run read the outputs (a_mask.png, ...) as inputs, and wrote a_mask_mask.png ...
    import shutil

    imgs = tmp_path / "imgs"
    shutil.copytree(inputs / "imgs", imgs)
    r = CliRunner().invoke(app, ["predict", "-c", str(model_file), "-b", str(inputs / "bg.png"), "--images",
                                 str(imgs), "--out", str(imgs / "."), "--size", "64"])  # fmt: skip
    assert r.exit_code == 2 and "--out is the --images folder" in r.output, r.output
    assert sorted(p.name for p in imgs.iterdir()) == ["a.jpg", "b.png"]


def test_predictor_refuses_float_images_by_name() -> None:
    # float images in [0, 1] were divided by 255 once more (an empty mask, wrong depth; without registration) or
    # ended in an OpenCV traceback (with it)
    from eval_helpers import randomised_tiny_model

    bg, comp, _, _ = scene(40, 40, 1)
    for register in (False, True):
        pred = Predictor(model=randomised_tiny_model().eval(), size=32, register=register)
        with pytest.raises(ValueError, match="uint8.*float64"):
            pred([bg / 255.0], [comp / 255.0])
