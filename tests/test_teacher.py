"""Depth teachers on tiny random checkpoints built from configs (no network, no downloads)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from fgdepth import teacher as T  # noqa: E402
from fgdepth.teacher import DepthTeacher, TeacherError  # noqa: E402

SIZES = [(40, 60), (33, 47), (40, 60)]  # two share a network input shape, one does not


pytestmark = pytest.mark.usefixtures("offline_hub")


@pytest.fixture(scope="module")
def checkpoints(teacher_checkpoints: dict[str, Path]) -> dict[str, Path]:
    return teacher_checkpoints


def _images(sizes: list[tuple[int, int]] = SIZES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


# --- loading and prediction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, model_type, kind", [("da", "depth_anything", "relative"), ("dpt", "dpt", "relative"),
                               ("da_metric", "depth_anything", "metric")]
)  # fmt: skip
def test_load_and_predict(checkpoints: dict[str, Path], name: str, model_type: str, kind: str) -> None:
    teacher = DepthTeacher.load(checkpoints[name])
    info = teacher.info
    assert (info.model_type, info.depth_kind, info.device, info.dtype) == (model_type, kind, "cpu", "float32")
    assert info.input_size == info.native_size
    out = teacher.predict(_images())
    assert [o.shape for o in out] == SIZES
    for depth in out:
        assert depth.dtype == np.float32
        assert np.isfinite(depth).all()
        assert (depth >= 0).all()
        assert depth.std() > 1e-3  # the tiny models are calibrated to vary by O(1)
    if kind == "metric":
        assert info.max_depth == 20.0
        assert all(d.max() <= info.max_depth for d in out)


def test_batched_equals_one_by_one(checkpoints: dict[str, Path]) -> None:
    for name in ("da", "dpt"):
        teacher = DepthTeacher.load(checkpoints[name], batch_size=2)
        images = _images(SIZES + [(40, 60), (20, 90)], seed=1)
        batched = teacher.predict(images)
        single = [teacher.predict([im])[0] for im in images]
        for b, s in zip(batched, single, strict=True):
            np.testing.assert_allclose(b, s, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["da", "dpt"])
def test_preprocessing_matches_image_processor(checkpoints: dict[str, Path], name: str) -> None:
    """At the native size (no resize) our normalisation equals the saved transformers image processor's."""
    from transformers import AutoImageProcessor

    teacher = DepthTeacher.load(checkpoints[name])
    s = teacher.info.native_size
    images = _images([(s, s), (s, s)])
    processor = AutoImageProcessor.from_pretrained(str(checkpoints[name]), local_files_only=True)
    expected = processor(images=images, return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(teacher.pixel_values(images, (s, s)).numpy(), expected.numpy(), atol=1e-5)


def test_empty_input(checkpoints: dict[str, Path]) -> None:
    assert DepthTeacher.load(checkpoints["da"]).predict([]) == []


def test_input_size_rounding_and_geometry(checkpoints: dict[str, Path]) -> None:
    da = DepthTeacher.load(checkpoints["da"], input_size=30)
    assert da.info.input_size == 28 and da.info.multiple == 14 and da.info.keep_aspect
    assert da.network_size(40, 60) == (28, 42)  # short side -> input_size, long side follows, multiples of 14
    dpt = DepthTeacher.load(checkpoints["dpt"], input_size=100)
    assert dpt.info.input_size == 96 and dpt.info.multiple == 32 and not dpt.info.keep_aspect
    assert dpt.network_size(40, 60) == (96, 96)  # transformers' DPT-ViT needs a square token grid
    assert [o.shape for o in dpt.predict(_images())] == SIZES


def test_depth_kind_override_and_bad_options(checkpoints: dict[str, Path]) -> None:
    assert DepthTeacher.load(checkpoints["da"], depth_kind="metric").info.depth_kind == "metric"
    with pytest.raises(ValueError, match="depth_kind"):
        DepthTeacher.load(checkpoints["da"], depth_kind="inverse")
    with pytest.raises(ValueError, match="float16"):
        DepthTeacher.load(checkpoints["da"], dtype="float16", device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        DepthTeacher.load(checkpoints["da"], batch_size=0)


def test_bfloat16_on_cpu(checkpoints: dict[str, Path]) -> None:
    teacher = DepthTeacher.load(checkpoints["da"], dtype="bf16")
    assert teacher.info.dtype == "bfloat16"
    out = teacher.predict(_images()[:1])
    assert out[0].dtype == np.float32 and out[0].shape == SIZES[0] and np.isfinite(out[0]).all()


@pytest.mark.parametrize("name", ["da", "da_metric", "dpt"])
def test_half_precision_checkpoint_runs_in_float32(
    checkpoints: dict[str, Path], tmp_path: Path, name: str
) -> None:
    # checkpoints are often saved in bfloat16 / float16, and transformers 5 loads them so: DPT then failed with a
    # RuntimeError (float input, bfloat16 bias) and Depth Anything ran in bfloat16 while the manifest said float32
    import shutil

    import transformers

    half = tmp_path / "half"
    model = transformers.AutoModelForDepthEstimation.from_pretrained(str(checkpoints[name]))
    # bfloat16, not float16: the calibrated heads of the tiny models overflow float16
    model.to(torch.bfloat16).save_pretrained(str(half))
    shutil.copy(checkpoints[name] / "preprocessor_config.json", half)
    teacher = DepthTeacher.load(half)
    assert next(teacher.model.parameters()).dtype == torch.float32  # weights stay fp32, as documented
    assert teacher.info.dtype == "float32"
    out = teacher.predict(_images()[:1])[0]
    ref = DepthTeacher.load(checkpoints[name]).predict(_images()[:1])[0]
    assert np.isfinite(out).all() and out.std() > 1e-3
    np.testing.assert_allclose(out, ref, atol=0.03 * float(ref.max()))  # bfloat16-rounded weights


def test_bad_images(checkpoints: dict[str, Path]) -> None:
    teacher = DepthTeacher.load(checkpoints["da"])
    with pytest.raises(ValueError, match="image 1"):
        teacher.predict([_images()[0], np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="image 0"):
        teacher.predict([np.zeros((8, 8), np.uint8)])


# --- errors ---------------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-teacher"
    with pytest.raises(TeacherError, match="no-such-teacher.*does not exist"):
        DepthTeacher.load(missing)


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(TeacherError, match="no config.json.*weights.bin"):
        DepthTeacher.load(tmp_path)


def test_not_a_depth_model(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
    ).save_pretrained(tmp_path)
    with pytest.raises(TeacherError, match="not a depth-estimation checkpoint.*'bert'"):
        DepthTeacher.load(tmp_path)


@pytest.mark.parametrize("damage", ["weights cut short", "config a list", "processor cut short"])
def test_a_damaged_checkpoint_is_a_teacher_error_naming_the_file(
    checkpoints: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    # a cut safetensors file was a SafetensorError traceback, a config.json holding a list an AttributeError, and a
    # cut preprocessor_config.json a bare JSONDecodeError naming no file
    import shutil

    ckpt = shutil.copytree(checkpoints["dpt"], tmp_path / "ckpt")
    if damage == "weights cut short":
        name = "model.safetensors"
        (ckpt / name).write_bytes((ckpt / name).read_bytes()[:1000])
    elif damage == "config a list":
        name = "config.json"
        (ckpt / name).write_text("[1, 2]")
    else:
        name = "preprocessor_config.json"
        (ckpt / name).write_text((ckpt / name).read_text()[:40])
    with pytest.raises(TeacherError, match=str(ckpt)):
        DepthTeacher.load(ckpt)


def test_weights_of_another_model_are_refused(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    # Depth Anything's config with DPT's weights loaded with every layer newly initialised (a warning table on
    # stderr) and labelled the dataset with random depth
    import shutil

    ckpt = shutil.copytree(checkpoints["da"], tmp_path / "ckpt")
    shutil.copy(checkpoints["dpt"] / "model.safetensors", ckpt / "model.safetensors")
    with pytest.raises(TeacherError, match=f"{ckpt}.*weights for .* missing"):
        DepthTeacher.load(ckpt)
    # the hub's DPT checkpoints lack the deepest fusion layer's residual_layer1, which is never used: they load
    from safetensors.torch import load_file, save_file

    dpt = shutil.copytree(checkpoints["dpt"], tmp_path / "dpt")
    weights = load_file(dpt / "model.safetensors")
    unused = [k for k in weights if "fusion_stage.layers.0.residual_layer1." in k]
    assert unused
    save_file(
        {k: v for k, v in weights.items() if k not in unused}, dpt / "model.safetensors", {"format": "pt"}
    )
    out = DepthTeacher.load(dpt).predict(_images()[:1])[0]
    np.testing.assert_array_equal(out, DepthTeacher.load(checkpoints["dpt"]).predict(_images()[:1])[0])


def test_depth_model_type_with_other_head(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    config = json.loads((checkpoints["dpt"] / "config.json").read_text())
    config["architectures"] = ["DPTForSemanticSegmentation"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TeacherError, match="DPTForSemanticSegmentation, not for depth estimation"):
        DepthTeacher.load(tmp_path)


@pytest.mark.parametrize(
    "message",
    ["CUDA out of memory. Tried to allocate 2.00 GiB", "DefaultCPUAllocator: can't allocate memory"],
)
def test_out_of_memory_suggests_smaller_batch(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    teacher = DepthTeacher.load(checkpoints["da"], batch_size=4)

    def oom(*args: object, **kwargs: object) -> None:
        raise RuntimeError(message)

    monkeypatch.setattr(teacher, "model", oom)
    with pytest.raises(TeacherError, match=r"out of memory.*--teacher-batch \(e.g. 1\)"):
        teacher.predict(_images())


def test_other_runtime_errors_pass_through(
    checkpoints: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = DepthTeacher.load(checkpoints["da"])

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(teacher, "model", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        teacher.predict(_images())


def test_imports_without_transformers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh copy of the module runs with transformers unimportable (fgdepth.teacher itself untouched)."""
    monkeypatch.setitem(sys.modules, "transformers", None)
    spec = importlib.util.spec_from_file_location("teacher_without_transformers", T.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    with pytest.raises(module.TeacherError, match=r"pip install 'fgdepth\[teacher\]'"):
        module.make_tiny_checkpoint(tmp_path / "unused")
    assert module.relative_scale_for(1.0) == 32768.0


# --- encoding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_value", [0.01, 1.0, 17.3, 3000.0, 1e6])
def test_relative_scale_fits_uint16(max_value: float) -> None:
    scale = T.relative_scale_for(max_value)
    assert max_value * scale <= 65535 < 2 * max_value * scale  # the largest power of two that fits
    assert np.log2(scale) == round(np.log2(scale))


def test_relative_scale_rejects_bad_max() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive finite"):
            T.relative_scale_for(bad)


def test_encode_decode_round_trip() -> None:
    rng = np.random.default_rng(0)
    disparity = (rng.random((32, 48)) * 17.3).astype(np.float32)
    disparity[0, :4] = [0.0, 1e-9, np.nan, -1.0]
    scale = T.relative_scale_for(float(np.nanmax(disparity)))
    code = T.encode_relative(disparity, scale)
    assert code.dtype == np.uint16 and code.shape == disparity.shape
    assert list(code[0, :4]) == [0, 1, 0, 0]  # 0 stays unknown, positive never becomes 0, nan/negative -> 0
    back = T.decode_relative(code, scale)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back[1:], disparity[1:], atol=1 / scale)
    assert T.encode_relative(np.array([1e9]), scale)[0] == 65535  # clipped, not wrapped


def test_depth_scale_for() -> None:
    assert T.depth_scale_for("metric") == 1000.0
    assert T.depth_scale_for("relative", 17.3) == T.relative_scale_for(17.3)
    with pytest.raises(ValueError):
        T.depth_scale_for("relative")
