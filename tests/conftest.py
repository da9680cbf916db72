"""Shared fixtures: tiny user-folder inputs (textured backgrounds, soft-edged RGBA people, depth maps) and small
datasets built once per session from them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from fgdepth.config import FactoryConfig

pytest_plugins = ["eval_helpers"]  # shared fixtures: model_file, no_onednn

# (height, width, suffix) of the test backgrounds: several sizes and aspect ratios, three formats
BG_SPECS = [
    (64, 80, ".jpg"),
    (72, 64, ".png"),
    (96, 96, ".webp"),
    (60, 90, ".png"),
    (80, 56, ".jpg"),
    (50, 50, ".webp"),
]
N_PEOPLE = 5
SIZE = 48  # output size of the test datasets


def textured_background(h: int, w: int, seed: int) -> np.ndarray:
    """(h, w, 3) uint8: a colour gradient plus smooth blobs and fine noise (something for JPEG to chew on)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    grad = rng.uniform(-60, 60, (2, 3))
    img = base + (yy / h)[..., None] * grad[0] + (xx / w)[..., None] * grad[1]
    blobs = cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)).astype(np.float32), (0, 0), 3)
    img = img + blobs + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def person_rgba(seed: int, h: int = 70) -> np.ndarray:
    """(H, W, 4) uint8 straight-alpha cut-out of a people-like shape (head, body, legs) with blurred alpha edges,
    transparent margins around it, and a different colour in the transparent region (must never show)."""
    rng = np.random.default_rng(100 + seed)
    w = int(h * rng.uniform(0.4, 0.6))
    H, W = h + 10, w + 10  # margins
    alpha = np.zeros((H, W), np.float32)
    cx = W / 2 + rng.uniform(-2, 2)
    cv2.circle(alpha, (int(cx), 5 + h // 8), max(2, h // 9), 1.0, -1)  # head
    cv2.ellipse(alpha, (int(cx), 5 + h * 4 // 10), (max(2, w // 3), h // 5), 0, 0, 360, 1.0, -1)  # body
    leg = max(1, w // 8)
    cv2.rectangle(alpha, (int(cx) - 2 * leg, 5 + h // 2), (int(cx) - leg // 2, 5 + h - 1), 1.0, -1)
    cv2.rectangle(alpha, (int(cx) + leg // 2, 5 + h // 2), (int(cx) + 2 * leg, 5 + h - 1), 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.2)  # soft edges: many alpha values strictly in (0, 255)
    a = np.clip(np.rint(alpha * 255), 0, 255).astype(np.uint8)
    rgb = textured_background(H, W, 500 + seed)
    rgb[a == 0] = (255, 0, 255)  # a colour that must never leak into a composite
    return np.dstack([rgb, a])


def smooth_depth_m(h: int, w: int, seed: int) -> np.ndarray:
    """(h, w) float32 metres: a tilted plane 1.5-6 m with a soft bump, a few unknown (0) pixels."""
    rng = np.random.default_rng(200 + seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = 6.0 - 4.0 * yy / h + 0.5 * np.sin(xx / w * np.pi * rng.uniform(1, 3))
    d[0, : max(1, w // 10)] = 0.0
    return d.astype(np.float32)


def imwrite_rgb(path: Path, rgb: np.ndarray) -> None:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), bgr), path


@dataclass
class Inputs:
    bg_dir: Path
    fg_dir: Path
    depth_dir: Path | None = None

    def config(self, **kw) -> FactoryConfig:
        """A tiny config over these folders (random placement, 48 px, 2 placements, small shards)."""
        base = dict(
            bg_dir=str(self.bg_dir),
            fg_dir=str(self.fg_dir),
            bg_depth_dir=str(self.depth_dir) if self.depth_dir else None,
            size=SIZE,
            placements=2,
            shard_size=16,
            val_fraction=0.2,
            test_fraction=0.2,
            workers=1,
        )
        base.update(kw)
        return FactoryConfig(**base)


def write_inputs(
    root: Path, depth: str | None = "png", n_bg: int = len(BG_SPECS), n_fg: int = N_PEOPLE
) -> Inputs:
    """Write backgrounds (jpg/png/webp, various sizes), RGBA PNG people and optionally depth maps
    (``"png"``: uint16 mm, ``"npy"``: float32 metres, ``"mixed"``: alternating) under ``root``."""
    bg_dir, fg_dir = root / "bg", root / "fg"
    bg_dir.mkdir(parents=True)
    fg_dir.mkdir()
    depth_dir = None
    if depth:
        depth_dir = root / "depth"
        depth_dir.mkdir()
    for i, (h, w, suffix) in enumerate(BG_SPECS[:n_bg]):
        imwrite_rgb(bg_dir / f"room{i}{suffix}", textured_background(h, w, i))
        if depth_dir is not None:
            d = smooth_depth_m(h, w, i)
            if depth == "npy" or (depth == "mixed" and i % 2):
                np.save(depth_dir / f"room{i}.npy", d)
            else:
                assert cv2.imwrite(str(depth_dir / f"room{i}.png"), np.rint(d * 1000).astype(np.uint16))
    for i in range(n_fg):
        imwrite_rgb(fg_dir / f"person{i}.png", person_rgba(i, h=60 + 6 * i))
    return Inputs(bg_dir, fg_dir, depth_dir)


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    """Fresh input folders with uint16 PNG depth maps (a test may modify them)."""
    return write_inputs(tmp_path / "in")


@pytest.fixture(scope="session")
def shared_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Input folders shared by the session's datasets: do not modify."""
    return write_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="session")
def shard_dataset(shared_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished webdataset-format dataset with metric depth (do not modify)."""
    from fgdepth.factory import make_dataset

    out = tmp_path_factory.mktemp("ds") / "shards"
    make_dataset(shared_inputs.config(), out)
    return out


@pytest.fixture(scope="session")
def folder_dataset(shared_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished folder-format dataset with metric depth (do not modify)."""
    from fgdepth.factory import make_dataset

    out = tmp_path_factory.mktemp("ds") / "folders"
    make_dataset(shared_inputs.config(format="folders"), out)
    return out


# makes any attempt of transformers / huggingface_hub to reach the network fail instead
OFFLINE_HUB_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors gain nothing from threads, and the CPU cores are shared: one thread is faster here."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt of transformers / huggingface_hub to reach the network fail instead."""
    for k, v in OFFLINE_HUB_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture(scope="session")
def teacher_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> tiny random teacher checkpoint directory (Depth Anything relative / metric, DPT), built offline."""
    pytest.importorskip("transformers")
    from fgdepth import teacher

    root = tmp_path_factory.mktemp("teachers")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in OFFLINE_HUB_ENV.items():
            mp.setenv(k, v)
        return {
            "da": teacher.make_tiny_checkpoint(root / "da", "depth_anything"),
            "da_metric": teacher.make_tiny_checkpoint(root / "da_metric", "depth_anything", metric=True),
            "dpt": teacher.make_tiny_checkpoint(root / "dpt", "dpt"),
        }
