"""Monocular depth teachers: label photographs that have no depth with a pretrained depth model.

A teacher is a HuggingFace ``transformers`` depth-estimation checkpoint (Depth Anything V2, DPT / MiDaS 3.x)
read from a LOCAL directory (``local_files_only=True``; nothing is downloaded)::

    teacher = DepthTeacher.load("checkpoints/Depth-Anything-V2-Small-hf", input_size=224)
    depths = teacher.predict([rgb0, rgb1])  # list of (H, W) float32, one per input image
    teacher.info.depth_kind  # "relative" (disparity, unitless) or "metric" (metres)

Two kinds of output:

- ``relative``: DPT / MiDaS and Depth Anything (relative) predict an affine-invariant inverse depth
  (disparity): larger = nearer, 0 = infinitely far. It has no unit; we clamp it at 0.
- ``metric``: Depth Anything V2 metric checkpoints (``config.depth_estimation_type == "metric"``,
  ``config.max_depth``) predict depth in metres.

Stored as uint16 PNG (see :mod:`fgdepth.data.schema`): ``uint16 = round(value * scale)``, 0 = unknown.
Metric uses ``scale = DEPTH_MM_PER_M`` (millimetres); relative uses a per-dataset ``scale`` from
:func:`relative_scale_for`, recorded in the manifest as ``depth_scale`` next to ``depth_kind``.

``transformers`` is an optional dependency (``pip install 'fgdepth[teacher]'``): it is imported inside the
functions that need it, so this module imports without it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fgdepth.data.schema import DEPTH_KINDS, DEPTH_MAX_UINT16, DEPTH_MM_PER_M

SUPPORTED_MODEL_TYPES = ("depth_anything", "dpt")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# the deepest fusion layer has no skip input: its residual_layer1 is never used, and DPT checkpoints converted from
# MiDaS (Intel/dpt-large, dpt-hybrid-midas) do not hold it
_UNUSED_WEIGHTS = ("fusion_stage.layers.0.residual_layer1.",)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TeacherError(Exception):
    """A depth teacher cannot be loaded or run; the message says why and what to do."""


@dataclass
class TeacherInfo:
    """What a loaded teacher is; ``dataclasses.asdict(info)`` goes into the dataset manifest.

    ``input_size`` is the side of the square network input, or its short side when ``keep_aspect`` (the long
    side follows the image's aspect ratio); both sides are rounded to a multiple of ``multiple``.
    """

    path: str
    model_type: str  # "depth_anything" | "dpt"
    depth_kind: str  # "metric" (metres) | "relative" (disparity, unitless)
    native_size: int  # the input size of the checkpoint's image processor
    input_size: int  # the size this teacher runs at
    keep_aspect: bool  # False: every image is resized to input_size x input_size
    multiple: int  # network input sides are multiples of this (patch size, decoder strides)
    device: str
    dtype: str  # compute dtype: "float32" | "bfloat16" | "float16" (autocast)
    batch_size: int
    max_depth: float | None = None  # metric checkpoints: the largest depth the head can output, metres


@dataclass(frozen=True)
class _Preprocess:
    """Image processor settings read from ``preprocessor_config.json``."""

    size: int
    keep_aspect: bool
    ensure_multiple_of: int
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# --- encoding for the dataset ---------------------------------------------------------------------------


def relative_scale_for(max_value: float) -> float:
    """Scale of the uint16 encoding of relative depth: ``uint16 = round(value * scale)``.

    The largest power of two with ``max_value * scale <= 65535``: a power of two is exact in JSON and float32
    and costs at most one bit of precision. Decoding error is at most ``0.5 / scale``. Pass the largest value
    the dataset will hold (with a margin if more images are labelled later: larger values are clipped).
    """
    if not math.isfinite(max_value) or max_value <= 0:
        raise ValueError(f"max_value must be a positive finite number, got {max_value!r}")
    return float(2.0 ** math.floor(math.log2(DEPTH_MAX_UINT16 / max_value)))


def encode_relative(disparity: np.ndarray, scale: float) -> np.ndarray:
    """Relative depth (disparity) to uint16: ``round(value * scale)``, clipped to [0, 65535].

    0 stays 0 (unknown / infinitely far); a positive value never rounds down to 0 (it becomes 1), non-finite
    and negative values become 0. Metric depth uses the same encoding with ``scale = DEPTH_MM_PER_M``.

    Shape:
        disparity: (H, W) float, >= 0 -> (H, W) uint16
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    value = np.nan_to_num(np.asarray(disparity, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    code = np.clip(np.rint(value * scale), 0, DEPTH_MAX_UINT16)
    code = np.where((value > 0) & (code == 0), 1, code)
    return code.astype(np.uint16)


def decode_relative(code: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`encode_relative`: ``uint16 / scale`` as float32 (0 = unknown)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    return (np.asarray(code).astype(np.float32) / np.float32(scale)).astype(np.float32)


def depth_scale_for(depth_kind: str, max_value: float | None = None) -> float:
    """The ``depth_scale`` of a dataset: DEPTH_MM_PER_M for metric, :func:`relative_scale_for` otherwise."""
    if depth_kind == "metric":
        return DEPTH_MM_PER_M
    if depth_kind != "relative" or max_value is None:
        raise ValueError(f"depth_kind {depth_kind!r}: relative needs max_value; valid kinds: {DEPTH_KINDS}")
    return relative_scale_for(max_value)


# --- the teacher ----------------------------------------------------------------------------------------


class DepthTeacher:
    """A depth-estimation model and its preprocessing; :meth:`load` builds one from a checkpoint folder."""

    def __init__(self, model: torch.nn.Module, info: TeacherInfo, prep: _Preprocess) -> None:
        self.model = model
        self.info = info
        self._mean = torch.tensor(prep.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(prep.std, dtype=torch.float32).view(1, 3, 1, 1)
        self._rescale = prep.rescale

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | None = None,
        dtype: str = "auto",
        input_size: int | None = None,
        batch_size: int = 8,
        depth_kind: str | None = None,
    ) -> DepthTeacher:
        """Load a local transformers depth checkpoint (config.json, weights, preprocessor_config.json).

        Args:
            path: checkpoint directory, e.g. a ``save_pretrained`` / ``huggingface-cli download`` folder.
            device: "cuda", "cuda:1", "cpu", ...; None picks CUDA when available, else CPU.
            dtype: "auto" (bf16 autocast on CUDA where supported, else fp16; fp32 on CPU), "float32",
                "bfloat16" or "float16" (CUDA only). Weights stay fp32; outputs are always float32.
            input_size: network input size; None = the processor's native size (518 for Depth Anything V2,
                384 for DPT). Rounded to the model's multiple (14 for Depth Anything, 32 for DPT).
            batch_size: images per forward pass.
            depth_kind: override the detected "metric" / "relative".

        Raises:
            TeacherError: the path is missing, is not a supported depth-estimation checkpoint, or
                transformers is not installed.
        """
        path = Path(path)
        _check_depth_config(path)
        transformers = _import_transformers()
        try:
            model, loading = transformers.AutoModelForDepthEstimation.from_pretrained(
                str(path), local_files_only=True, output_loading_info=True
            )
        except Exception as e:  # OSError, ValueError, safetensors' own error for a cut file, ...
            raise TeacherError(f"cannot load the depth model weights from {path}: {e}") from e
        # transformers initialises missing weights at random with a warning: a teacher of random depth
        missing = [k for k in loading.get("missing_keys") or [] if not any(u in k for u in _UNUSED_WEIGHTS)]
        if missing:
            named = ", ".join(sorted(missing)[:3]) + (" ..." if len(missing) > 3 else "")
            raise TeacherError(
                f"{path}: weights for {len(missing)} of the model's tensors are missing ({named}); are the weights "
                "those of another model?"
            )
        prep = _read_preprocessor_config(path)
        return cls.from_model(model, prep, str(path), device, dtype, input_size, batch_size, depth_kind)

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        processor_config: dict[str, Any],
        path: str = "<memory>",
        device: str | None = None,
        dtype: str = "auto",
        input_size: int | None = None,
        batch_size: int = 8,
        depth_kind: str | None = None,
    ) -> DepthTeacher:
        """A teacher from a transformers depth model already in memory and its image processor settings
        (the dict of ``preprocessor_config.json``); :meth:`load` ends here. Arguments as in :meth:`load`."""
        config = model.config
        model_type = config.model_type
        prep = _preprocess_from_dict(processor_config)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        kind = depth_kind or _detect_depth_kind(config)
        if kind not in DEPTH_KINDS:
            raise ValueError(f"depth_kind must be one of {DEPTH_KINDS}, got {kind!r}")
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        compute_dtype = _resolve_dtype(dtype, dev)
        multiple, keep_aspect = _input_geometry(config, prep)
        size = _round_to(input_size or prep.size, multiple)
        _allow_hybrid_size(model, size)
        # weights in float32 whatever the checkpoint was saved in: transformers 5 keeps a bfloat16 / float16
        # checkpoint's dtype (DPT then refuses float inputs); lower precision is autocast's, per ``dtype``
        model = model.to(device=dev, dtype=torch.float32).eval()
        metric = kind == "metric"
        info = TeacherInfo(
            path=path,
            model_type=model_type,
            depth_kind=kind,
            native_size=prep.size,
            input_size=size,
            keep_aspect=keep_aspect,
            multiple=multiple,
            device=str(dev),
            dtype=str(compute_dtype).removeprefix("torch."),
            batch_size=batch_size,
            max_depth=float(config.max_depth) if metric and getattr(config, "max_depth", None) else None,
        )
        return cls(model, info, prep)

    # -- inference ---------------------------------------------------------------------------------------

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the network input for an image of (height, width)."""
        s, m = self.info.input_size, self.info.multiple
        if not self.info.keep_aspect:
            return s, s
        scale = s / min(height, width)  # the short side becomes input_size, as in the Depth Anything repo
        return _round_to(height * scale, m), _round_to(width * scale, m)

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Depth of each image, resized back (bilinear) to the image's size.

        Images whose network input has the same shape are batched together, ``batch_size`` at a time.

        Shape:
            images: list of (H_i, W_i, 3) uint8 RGB (convert cv2's BGR first)
            returns: list of (H_i, W_i) float32: relative disparity >= 0, or metric depth in metres
        """
        for i, image in enumerate(images):
            if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
                got = (
                    f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                )
                raise ValueError(f"image {i}: expected an (H, W, 3) uint8 RGB array, got {got}")
            if image.shape[2] != 3 or min(image.shape[:2]) < 1:
                raise ValueError(f"image {i}: expected an (H, W, 3) uint8 RGB array, got shape {image.shape}")
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(self.network_size(*image.shape[:2]), []).append(i)
        out: list[np.ndarray | None] = [None] * len(images)
        bs = self.info.batch_size
        for hw, idx in groups.items():
            for start in range(0, len(idx), bs):
                chunk = idx[start : start + bs]
                preds = self._forward([images[i] for i in chunk], hw)
                for i, pred in zip(chunk, preds, strict=True):
                    out[i] = pred
        return out  # type: ignore[return-value]

    def pixel_values(self, images: Sequence[np.ndarray], hw: tuple[int, int]) -> torch.Tensor:
        """The network input: bicubic resize to ``hw``, rescale, normalise with the processor's mean / std.

        Shape:
            images: list of (H_i, W_i, 3) uint8 RGB -> (B, 3, h, w) float32 (CPU)
        """
        h, w = hw
        batch = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_CUBIC) for im in images])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() * self._rescale
        return (x - self._mean) / self._std

    def _forward(self, images: list[np.ndarray], hw: tuple[int, int]) -> list[np.ndarray]:
        """One batch of images that share the network input size ``hw``."""
        h, w = hw
        dev = torch.device(self.info.device)
        x = self.pixel_values(images, hw).to(dev)
        dtype = _DTYPES[self.info.dtype]
        try:
            with (
                torch.inference_mode(),
                torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32),
            ):
                pred = self.model(pixel_values=x).predicted_depth
            pred = pred.float().unsqueeze(1)  # (B, 1, h', w')
            outs = []
            for k, im in enumerate(images):
                d = F.interpolate(pred[k : k + 1], size=im.shape[:2], mode="bilinear", align_corners=False)
                outs.append(d[0, 0].clamp_min(0).cpu().numpy().astype(np.float32))
        except RuntimeError as e:
            if not _is_out_of_memory(e):
                raise
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            raise TeacherError(
                f"out of memory running the depth teacher on {dev} with a batch of {len(images)} "
                f"at {h}x{w} px; "
                f"use a smaller --teacher-batch (e.g. {max(1, len(images) // 2)}) or --teacher-size"
            ) from e
        return outs


def _is_out_of_memory(e: RuntimeError) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's "can't allocate memory"."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    text = str(e).lower()
    return isinstance(e, oom) or "out of memory" in text or "can't allocate memory" in text


# --- loading helpers ------------------------------------------------------------------------------------


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise TeacherError("the depth teacher needs transformers: pip install 'fgdepth[teacher]'") from e
    return transformers


def check_checkpoint(path: str | Path) -> None:
    """Raise TeacherError unless ``path`` is a local checkpoint of a supported depth-estimation model (reads
    config.json only: cheap enough to run before a long job starts)."""
    _check_depth_config(Path(path))


def _check_depth_config(path: Path) -> None:
    """Raise TeacherError unless config.json of ``path`` names a supported depth-estimation model."""
    if not path.exists():
        raise TeacherError(f"teacher checkpoint {path} does not exist")
    if not path.is_dir():
        raise TeacherError(
            f"teacher checkpoint {path} is not a directory (expected a save_pretrained folder)"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise TeacherError(
            f"{path} is not a transformers checkpoint: no config.json (found: {found}); "
            "expected a depth-estimation model saved with save_pretrained"
        )
    config = _read_json_object(config_file, "a transformers config")
    model_type = config.get("model_type")
    archs = config.get("architectures") or []
    transformers = _import_transformers()
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES as DEPTH

    if model_type not in DEPTH:
        raise TeacherError(
            f"{path} is not a depth-estimation checkpoint: config.json has model_type {model_type!r} "
            f"(architectures {archs}); depth models of transformers {transformers.__version__}: "
            f"{', '.join(DEPTH)}"
        )
    if archs and not any(a.endswith("ForDepthEstimation") for a in archs):
        raise TeacherError(
            f"{path} is a {model_type!r} checkpoint for {', '.join(archs)}, not for depth estimation "
            f"(expected {DEPTH[model_type]})"
        )
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise TeacherError(
            f"{path}: model_type {model_type!r} is a depth model that fgdepth's teacher does not support; "
            f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )


def _read_preprocessor_config(path: Path) -> dict[str, Any]:
    file = path / "preprocessor_config.json"
    if not file.is_file():
        raise TeacherError(
            f"{path} has no preprocessor_config.json: the image size and normalisation of the checkpoint are "
            "unknown; copy it from the model's hub page (it is part of every transformers depth checkpoint)"
        )
    return _read_json_object(file, "an image processor config")


def _read_json_object(file: Path, what: str) -> dict[str, Any]:
    """A checkpoint's JSON file as a dict; a TeacherError naming it if it is cut short or not an object."""
    try:
        obj = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise TeacherError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise TeacherError(f"{file} is not {what} (a JSON object)")
    return obj


def _preprocess_from_dict(cfg: dict[str, Any]) -> _Preprocess:
    size = cfg.get("size", 384)
    if isinstance(size, dict):  # {"height", "width"} or {"shortest_edge"}
        size = min(v for k, v in size.items() if k in ("height", "width", "shortest_edge"))
    if cfg.get("do_normalize", True):
        mean, std = tuple(cfg.get("image_mean", IMAGENET_MEAN)), tuple(cfg.get("image_std", IMAGENET_STD))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return _Preprocess(
        size=int(size),
        keep_aspect=bool(cfg.get("keep_aspect_ratio", False)),
        ensure_multiple_of=int(cfg.get("ensure_multiple_of", 1)),
        rescale=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
    )


def _detect_depth_kind(config: Any) -> str:
    return "metric" if getattr(config, "depth_estimation_type", "relative") == "metric" else "relative"


def _input_geometry(config: Any, prep: _Preprocess) -> tuple[int, bool]:
    """(multiple, keep_aspect) of the network input.

    Depth Anything (DINOv2 backbone) takes any multiple of its patch size (14) and any aspect ratio. DPT
    with its own ViT (or the hybrid ViT of MiDaS 3.0) reshapes tokens to a square grid in transformers, so its
    input is square; sides are multiples of twice the patch size (32) so the 0.5x reassemble stage lines up.
    """
    backbone = getattr(config, "backbone_config", None)
    if config.model_type == "depth_anything" or (backbone is not None and not config.is_hybrid):
        patch = getattr(backbone, "patch_size", None) or config.patch_size
        return math.lcm(int(patch), prep.ensure_multiple_of), prep.keep_aspect
    return math.lcm(2 * int(config.patch_size), prep.ensure_multiple_of), False


def _allow_hybrid_size(model: torch.nn.Module, size: int) -> None:
    """The hybrid DPT embedding refuses inputs other than config.image_size although it resizes its position
    embeddings; tell it the size we run at."""
    emb = getattr(getattr(model, "dpt", None), "embeddings", None)
    if emb is not None and type(emb).__name__ == "DPTViTHybridEmbeddings":
        emb.image_size = (size, size)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {', '.join(_DTYPES)}, got {dtype!r}")
    if _DTYPES[dtype] == torch.float16 and device.type == "cpu":
        raise ValueError("float16 autocast is for CUDA; on CPU use float32 or bfloat16")
    return _DTYPES[dtype]


# --- models built from configs (tests, benchmarks) --------------------------------------------------------

# Depth Anything V2 Small (depth-anything/Depth-Anything-V2-Small-hf): DINOv2-S/14 + DPT head, 24.8 M params.
_DA_V2_SMALL = {
    "backbone": {
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "out_indices": [3, 6, 9, 12],
    },
    "head": {
        "reassemble_hidden_size": 384,
        "neck_hidden_sizes": [48, 96, 192, 384],
        "reassemble_factors": [4, 2, 1, 0.5],
        "fusion_hidden_size": 64,
        "head_hidden_size": 32,
    },
}
_DA_TINY = {
    "backbone": {
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "out_indices": [1, 2, 3, 4],
    },
    "head": {
        "reassemble_hidden_size": 32,
        "neck_hidden_sizes": [8, 16, 32, 32],
        "fusion_hidden_size": 16,
        "head_hidden_size": 8,
    },
}
# MiDaS 3.0 DPT-Hybrid (Intel/dpt-hybrid-midas): BiT-R50 stem + ViT-B/16, 123 M params.
_DPT_HYBRID_MIDAS = {
    "is_hybrid": True,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "patch_size": 16,
    "backbone_out_indices": [2, 5, 8, 11],
    "neck_hidden_sizes": [256, 512, 768, 768],
    "reassemble_factors": [1, 1, 1, 0.5],
    "fusion_hidden_size": 256,
    "readout_type": "project",
    "backbone_featmap_shape": [1, 1024, 24, 24],
}
# DPT-Large (Intel/dpt-large, MiDaS 3.0): ViT-L/16, 343 M params.
_DPT_LARGE = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "patch_size": 16,
    "backbone_out_indices": [5, 11, 17, 23],
    "neck_hidden_sizes": [256, 512, 1024, 1024],
    "fusion_hidden_size": 256,
    "readout_type": "project",
}
_DPT_TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "patch_size": 16,
    "backbone_out_indices": [0, 1, 2, 3],
    "neck_hidden_sizes": [8, 16, 32, 32],
    "fusion_hidden_size": 16,
}
REFERENCE_MODELS = ("da-v2-small", "dpt-hybrid-midas", "dpt-large")


def build_depth_model(
    model_type: str, preset: str = "tiny", metric: bool = False, image_size: int | None = None, seed: int = 0
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A randomly initialised depth model and its ``preprocessor_config`` dict.

    Args:
        model_type: "depth_anything" or "dpt".
        preset: "tiny" (tests; ~0.1 M params) or "reference": Depth Anything V2 Small for depth_anything,
            MiDaS 3.0 DPT-Hybrid for dpt (benchmarks: the architecture of the real checkpoints, random
            weights).
            "dpt-large" builds DPT-Large.
        metric: Depth Anything only: a metric head (sigmoid * max_depth, max_depth = 20 m as the Hypersim
            checkpoints).
        image_size: the processor's size; default 518 (Depth Anything), 384 (DPT), 56 / 64 for tiny.
    """
    transformers = _import_transformers()
    torch.manual_seed(seed)
    if model_type == "depth_anything":
        spec = _DA_TINY if preset == "tiny" else _DA_V2_SMALL
        size = image_size or (56 if preset == "tiny" else 518)
        backbone = transformers.Dinov2Config(
            patch_size=14, image_size=size, reshape_hidden_states=False, **spec["backbone"]
        )
        extra = {"depth_estimation_type": "metric", "max_depth": 20} if metric else {}
        config = transformers.DepthAnythingConfig(
            backbone_config=backbone, patch_size=14, **spec["head"], **extra
        )
        model = transformers.DepthAnythingForDepthEstimation(config)
        prep = {"size": {"height": size, "width": size}, "keep_aspect_ratio": True, "ensure_multiple_of": 14}
        prep |= {"image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "resample": 3}
    elif model_type == "dpt":
        if metric:
            raise ValueError("DPT / MiDaS checkpoints are relative; metric=True is for depth_anything")
        spec = {"tiny": _DPT_TINY, "dpt-large": _DPT_LARGE}.get(preset, _DPT_HYBRID_MIDAS)
        size = image_size or (64 if preset == "tiny" else 384)
        config = transformers.DPTConfig(image_size=size, use_auxiliary_head=False, **spec)
        model = transformers.DPTForDepthEstimation(config)
        prep = {"size": {"height": size, "width": size}, "keep_aspect_ratio": False, "ensure_multiple_of": 1}
        prep |= {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3}
    else:
        raise ValueError(f"model_type must be one of {SUPPORTED_MODEL_TYPES}, got {model_type!r}")
    model.config.architectures = [type(model).__name__]
    if preset == "tiny":
        _calibrate_head(model, size)
    prep |= {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True}
    return model.eval(), prep | {"do_pad": False}


@torch.no_grad()
def _calibrate_head(model: torch.nn.Module, size: int) -> None:
    """Rescale the last conv of a random model so that its output varies by O(1) (about N(0.5, 1) before the
    final activation) instead of ~1e-7: tests then compare meaningful numbers."""
    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    seen: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda _m, _i, out: seen.append(out))
    model.eval()(pixel_values=torch.randn(2, 3, size, size))
    handle.remove()
    last.weight /= seen[0].std().clamp_min(1e-12)
    last.bias.fill_(0.5)


def make_tiny_checkpoint(
    path: str | Path, model_type: str = "depth_anything", metric: bool = False, image_size: int | None = None
) -> Path:
    """Save a tiny random depth checkpoint (model + image processor) that :meth:`DepthTeacher.load` reads."""
    return _save_checkpoint(path, *build_depth_model(model_type, "tiny", metric, image_size))


def make_reference_checkpoint(path: str | Path, name: str = "da-v2-small") -> Path:
    """Save a full-sized random checkpoint: "da-v2-small" (99 MB), "dpt-hybrid-midas" (490 MB) or
    "dpt-large" (1.4 GB)."""
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown reference model {name!r}; valid: {', '.join(REFERENCE_MODELS)}")
    model_type = "depth_anything" if name == "da-v2-small" else "dpt"
    return _save_checkpoint(
        path, *build_depth_model(model_type, "dpt-large" if name == "dpt-large" else "ref")
    )


def _save_checkpoint(path: str | Path, model: torch.nn.Module, prep: dict[str, Any]) -> Path:
    transformers = _import_transformers()
    path = Path(path)
    model.save_pretrained(str(path))
    # transformers 5 names the numpy/PIL processor DPTImageProcessorPil (DPTImageProcessor needs torchvision)
    processor_cls = getattr(transformers, "DPTImageProcessorPil", None) or transformers.DPTImageProcessor
    processor_cls(**prep).save_pretrained(str(path))
    return path
