"""Helpers shared by the evaluate / predict / report tests: a random-weight tiny model and a small folder in the
reference layout with images of several sizes (one sample without depth)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fgdepth.model import create_model, save_model
from fgdepth.model.dual_unet import Head

# (height, width) of the reference-layout samples; the third one has no depth file
REF_SIZES = [(40, 56), (64, 48), (70, 70), (52, 66)]
NO_DEPTH = 2


def randomised_tiny_model(**overrides) -> torch.nn.Module:
    """A ``tiny`` DualUNet with random weights, random BN statistics and random heads (so outputs vary and a
    round trip or an export that drops any of them is caught); left in train mode."""
    torch.manual_seed(0)
    model = create_model("tiny", **overrides)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        for head in (m for m in model.modules() if isinstance(m, Head)):  # the depth branch's too
            head[-1].weight.normal_(0, 0.3, generator=g)
    return model


def tiny_model_file(path: Path) -> Path:
    """:func:`randomised_tiny_model`, saved."""
    return save_model(randomised_tiny_model().eval(), path)


def scene(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """background, composite (H, W, 3) uint8; mask (H, W) bool; depth (H, W) float32 metres (a tilted plane)."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 6, h // 3), 0, 0, 360, 1, -1)
    comp = bg.copy()
    comp[mask > 0] = (200, 60, 40)
    depth = (2.0 + 3.0 * np.linspace(0, 1, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)).copy()
    depth[0, :3] = 0.0  # a few unknown pixels
    return bg, comp, mask.astype(bool), depth


def _imwrite(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), img), path


def write_reference_folder(root: Path) -> Path:
    """``bg/<bg>.jpg``, ``bg_fg/<bg>_p<i>_00.jpg``, ``bg_fg_mask/<stem>.png`` (0/255), ``bg_fg_depth/<stem>.png``
    (uint16 mm) for every sample but ``NO_DEPTH``."""
    for i, (h, w) in enumerate(REF_SIZES):
        bg, comp, mask, depth = scene(h, w, i)
        stem = f"room{i}_p{i}_00"
        _imwrite(root / "bg" / f"room{i}.jpg", bg)
        _imwrite(root / "bg_fg" / f"{stem}.jpg", comp)
        _imwrite(root / "bg_fg_mask" / f"{stem}.png", mask.astype(np.uint8) * 255)
        if i != NO_DEPTH:
            _imwrite(root / "bg_fg_depth" / f"{stem}.png", np.rint(depth * 1000).astype(np.uint16))
    return root


_CACHE: dict[str, Path] = {}


def cached_model_file(tmp_path_factory) -> Path:  # noqa: ANN001 - pytest.TempPathFactory
    """One saved tiny model per test session (shared by the evaluate / predict / report tests)."""
    if "model" not in _CACHE:
        _CACHE["model"] = tiny_model_file(tmp_path_factory.mktemp("model") / "tiny.safetensors")
    return _CACHE["model"]


def cached_onnx_file(tmp_path_factory) -> Path:  # noqa: ANN001 - pytest.TempPathFactory
    """The cached tiny model exported to ONNX once per session (needs onnx and onnxruntime)."""
    if "onnx" not in _CACHE:
        from fgdepth.export import export_onnx
        from fgdepth.model import load_model

        path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
        export_onnx(load_model(cached_model_file(tmp_path_factory)), path, size=64)
        _CACHE["onnx"] = path
    return _CACHE["onnx"]


@pytest.fixture(scope="module")
def no_onednn() -> Iterator[None]:
    """oneDNN spends ~1-3 s preparing each new input shape on this 2-core machine; the tests' tiny images run
    faster without it (same maths). Modules opt in with ``pytestmark = pytest.mark.usefixtures("no_onednn")``."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny model saved as safetensors (one per session)."""
    return cached_model_file(tmp_path_factory)
