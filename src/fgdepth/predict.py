"""Inference: a :class:`Predictor` that runs a checkpoint (PyTorch) or an exported model (onnxruntime) on image
pairs of any size, and ``predict`` that writes masks, depth and pictures for images, folders and videos.

Sizes: each (background, composite) pair is resized so that its short side is the model size ``size`` and its
long side keeps the aspect ratio, rounded to a multiple of 32 or to ``size`` (:func:`model_input_size`; the
network is fully convolutional); the outputs are resized back to the input's own resolution (mask logits and
depth bilinearly, then the mask is ``logits > 0``). A background whose size differs from an input image's is resized to that
image's size (OpenCV area / linear): same camera, another resolution.

Files written per input ``<stem>`` (``predict``): ``<stem>_mask.png`` (8-bit, 0/255, input resolution),
``<stem>_depth.png`` (uint16, depth x 1000: millimetres for metric models, 0 = none), ``<stem>_depth_color.png``
(turbo colour map) and ``<stem>_overlay.png`` (the mask in red over the input). A video gives the same pictures
as folders ``frames/ masks/ depth/ depth_color/ overlay/`` (``<stem>_<nnnnnn>.png``) and an MP4 (mp4v) of
overlay | depth colour side by side.
"""

from __future__ import annotations

import glob
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fgdepth.config import require
from fgdepth.data import codec, schema
from fgdepth.intrinsics import depth_at_focal, focal_from_hfov
from fgdepth.register import register_background
from fgdepth.viz import colorize_depth, overlay_mask, save_png, write_atomic

DEFAULT_SIZE = 192  # the reference resolution, when neither the checkpoint nor the data says otherwise
SIZE_MULTIPLE = 32  # the long side of a model input is a multiple of this (see model_input_size)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


# --------------------------------------------------------------------------------------------- sizes
def model_input_size(height: int, width: int, size: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(h, w) of the model input for an image of (height, width): the short side is ``size``, the long side
    keeps the aspect ratio rounded to a multiple of ``multiple`` or to ``size`` itself, whichever is nearer (and at
    least ``size``).

    The rounding bounds the number of distinct input shapes (on CPU, oneDNN spends seconds preparing each new
    shape) and aligns the long side with the encoder's stride; it distorts the aspect by at most
    ``multiple / 2`` pixels. Square images map to (size, size), as in training.
    """
    short, long = min(height, width), max(height, width)
    exact = long * size / short
    out_long = max(size, int(round(exact / multiple)) * multiple)
    if exact - size < abs(out_long - exact):  # e.g. square images at a size that is not a multiple
        out_long = size
    return (size, out_long) if height <= width else (out_long, size)


def checkpoint_train_size(checkpoint: str | Path) -> int | None:
    """The input resolution a checkpoint was trained for: its training config's ``infer_size`` if set (crops
    trained at that scale), else ``size``; from a Lightning ``.ckpt``'s ``train_config``, or for a
    ``model.safetensors`` in a run folder, the run's ``metrics.json`` ``config``. None if unknown."""
    path = Path(checkpoint)
    if path.suffix == ".ckpt" and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return run_input_size((saved.get("hyper_parameters") or {}).get("train_config") or {})
        except Exception:  # noqa: BLE001 - not a Lightning checkpoint: size unknown
            return None
    summary = path.parent / "metrics.json"
    if summary.is_file():
        return run_input_size(json.loads(summary.read_text()).get("config") or {})
    return None


def run_input_size(train_config: dict) -> int | None:
    """The size of the whole images a run's model takes (validation, test, prediction): the training config's
    ``infer_size`` if set (it trained on crops at that scale), else ``size``; None if neither is recorded."""
    size = train_config.get("infer_size") or train_config.get("size")
    return int(size) if size else None


# --------------------------------------------------------------------------------------------- predictor
def _to_batch(images: Sequence[np.ndarray], hw: tuple[int, int]) -> torch.Tensor:
    """(H, W, 3) uint8 images (sizes may differ) -> (B, 3, h, w) float32 in [0, 1] at ``hw`` (area down,
    bilinear up)."""
    out = []
    for image in images:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255)
        if tuple(x.shape[-2:]) != hw:
            down = x.shape[-2] > hw[0]
            x = F.interpolate(x, size=hw, mode="area") if down else F.interpolate(x, size=hw, mode="bilinear")
        out.append(x)
    return torch.cat(out)


@dataclass
class Predictor:
    """Masks and depth for (background, composite) pairs from a DualUNet or an :class:`~fgdepth.export.OnnxRunner`.

    ``predictor(backgrounds, composites, focals=None)`` takes lists of (H, W, 3) uint8 RGB images (pair i shares
    one size; pairs may differ) and returns one ``(mask (H, W) bool, depth (H, W) float32)`` per pair at the pair's
    own resolution. Pairs with the same model input size are batched (``batch_size``). The caller places the
    torch model on ``device``.

    With ``register`` (the default), each background is first moved and re-exposed to match its composite
    (:func:`fgdepth.register.register_background`); the composite is used as given.

    Cameras (models with a canonical camera, :mod:`fgdepth.intrinsics`): pair i is seen through ``focals[i]``
    (focal length / short side) when given and > 0, else through a lens of horizontal field of view ``hfov``
    (degrees) when set, else through a lens of the canonical camera's field of view across the width (the
    canonical camera itself for square and portrait images). Models without one ignore both.
    """

    model: torch.nn.Module | None = None
    onnx: object | None = None  # an OnnxRunner
    size: int = DEFAULT_SIZE
    batch_size: int = 16
    device: str = "cpu"
    name: str = field(default="model")
    hfov: float | None = None
    flip_tta: bool = False  # test-time augmentation: also predict the mirror image, average (2x the compute)
    # move and re-expose each background to match its composite first (fgdepth.register: a global shift and a gain
    # per channel, as a static camera's two shots differ)
    register: bool = True

    def __post_init__(self) -> None:
        if (self.model is None) == (self.onnx is None):
            raise ValueError("Predictor needs exactly one of model (PyTorch) or onnx (OnnxRunner)")
        require(  # else tracebacks from the resizing, range() or a result never filled
            [
                (self.size >= 8, f"size must be >= 8 pixels, got {self.size}"),
                (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            ]
        )
        if self.model is not None:
            self.model.eval()
        if self.hfov is not None:
            focal_from_hfov(self.hfov, 1, 1)  # raises on a field of view outside (0, 180)
            if self.canonical_focal is None:
                warnings.warn(
                    f"{self.name} has no canonical camera: its depth does not depend on the field of view "
                    f"(hfov {self.hfov} is ignored)",
                    stacklevel=2,
                )

    @property
    def canonical_focal(self) -> float | None:
        """The model's canonical camera (``focal``), None if its depth does not depend on the camera."""
        source = self.model if self.model is not None else self.onnx
        return getattr(source, "canonical_focal", None)

    def focal_of(self, height: int, width: int, focal: float | None = None) -> float:
        """The ``focal`` a pair of (height, width) is seen through: ``focal`` if > 0, else ``hfov``'s, else the
        canonical camera's field of view held across the width (0 for a model without a canonical camera)."""
        if focal is not None and focal > 0:
            return float(focal)
        if self.hfov is not None:
            return focal_from_hfov(self.hfov, height, width)
        canonical = self.canonical_focal
        if canonical is None:
            return 0.0
        # the canonical focal is over the short side (square training images): kept as it is, a landscape photo of
        # an unknown camera would be assumed 91 degrees wide at 4:3, 107 at 16:9, and its depth 1.33x / 1.78x short;
        # the same field of view across the width is this focal (focal_from_hfov of the canonical hfov)
        return canonical * width / min(height, width)

    @classmethod
    def load(
        cls,
        checkpoint: str | Path | None = None,
        onnx: str | Path | None = None,
        size: int | None = None,
        batch_size: int = 16,
        device: str = "cpu",
        default_size: int | None = None,
        hfov: float | None = None,
        flip_tta: bool = False,
        mask_scale: float | None = None,
        register: bool = True,
    ) -> Predictor:
        """From a checkpoint (``.safetensors`` / ``.pt`` / ``.ckpt``) or an ``.onnx`` file. ``size`` defaults to
        the checkpoint's training size (:func:`checkpoint_train_size`; an ONNX model's: the one ``fgdepth export``
        recorded), else ``default_size``, else 192.
        ``mask_scale``: the mask network's input enlargement in place of the checkpoint's (see
        :func:`fgdepth.load_model`); an ONNX model has its own built in (``fgdepth export --mask-scale``)."""
        if (checkpoint is None) == (onnx is None):
            raise ValueError("give exactly one of a checkpoint or an ONNX model")
        if onnx is not None and mask_scale is not None:
            raise ValueError(
                f"{onnx}: an ONNX model's mask scale is fixed at export (fgdepth export --mask-scale)"
            )
        runner = None
        if onnx is not None:
            from fgdepth.export import OnnxRunner

            if not Path(onnx).is_file():
                raise FileNotFoundError(f"no ONNX model at {onnx}")
            runner = OnnxRunner(onnx)
        # an ONNX model records its checkpoint's training size when the export knew it (fgdepth export)
        trained = checkpoint_train_size(checkpoint) if checkpoint else runner.input_size  # type: ignore[union-attr]
        if size is not None and trained is not None and size != trained:
            # a network judges distance partly by apparent size in pixels: tiny trained at 160 px gave test delta1
            # 0.866 at 160, 0.40 at 192 (the mask's own enlargement is DualUNetConfig.mask_scale)
            warnings.warn(
                f"{checkpoint or onnx} was trained for {trained} px inputs; at {size} px everything looks "
                f"{size / trained:.2f}x its trained size, which biases its depth",
                stacklevel=2,
            )
        if size is None:
            size = trained or default_size or DEFAULT_SIZE
        common = {
            "size": size,
            "batch_size": batch_size,
            "hfov": hfov,
            "flip_tta": flip_tta,
            "register": register,
        }
        if runner is not None:
            return cls(onnx=runner, name=str(onnx), **common)
        from fgdepth.model.checkpoint import load_model

        model = load_model(checkpoint, mask_scale=mask_scale).to(device)
        return cls(model=model, device=device, name=str(checkpoint), **common)

    def _run(
        self, bg: torch.Tensor, comp: torch.Tensor, focal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs (mask_logits, depth), (B, 1, h, w) float32 on the CPU; ``focal`` (B,), 0 = unknown.
        With ``flip_tta``, the mean of the outputs for the pair and for its mirror image (mirrored back)."""
        if not self.flip_tta:
            return self._run_once(bg, comp, focal)
        n = bg.shape[0]
        logits, depth = self._run_once(
            torch.cat([bg, bg.flip(-1)]), torch.cat([comp, comp.flip(-1)]), torch.cat([focal, focal])
        )
        return (logits[:n] + logits[n:].flip(-1)) / 2, (depth[:n] + depth[n:].flip(-1)) / 2

    def _run_once(
        self, bg: torch.Tensor, comp: torch.Tensor, focal: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.onnx is not None:
            out = self.onnx(bg.numpy(), comp.numpy())  # type: ignore[operator]
            depth = torch.from_numpy(out[schema.DEPTH_PRED])
            canonical = self.canonical_focal  # the exported graph gives the canonical camera's depth
            if canonical is not None:
                depth = depth_at_focal(depth, focal, canonical)
            return torch.from_numpy(out[schema.MASK_LOGITS]), depth
        camera = {"focal": focal.to(self.device)} if self.canonical_focal is not None else {}
        with torch.inference_mode():
            out = self.model(bg.to(self.device), comp.to(self.device), **camera)  # type: ignore[misc]
        return out[schema.MASK_LOGITS].float().cpu(), out[schema.DEPTH_PRED].float().cpu()

    def __call__(
        self,
        backgrounds: Sequence[np.ndarray],
        composites: Sequence[np.ndarray],
        focals: Sequence[float | None] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(logits > 0, depth) for logits, depth in self.raw(backgrounds, composites, focals)]

    def raw(
        self,
        backgrounds: Sequence[np.ndarray],
        composites: Sequence[np.ndarray],
        focals: Sequence[float | None] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """As calling the predictor, with the mask as logits: ``(mask_logits (H, W) float32, depth)`` per pair
        (foreground where > 0), for thresholds and soft masks of one's own."""
        if len(backgrounds) != len(composites):
            raise ValueError(f"{len(backgrounds)} backgrounds for {len(composites)} composites")
        if focals is not None and len(focals) != len(composites):
            raise ValueError(f"{len(focals)} focals for {len(composites)} composites")
        results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(composites)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (bg, comp) in enumerate(zip(backgrounds, composites, strict=True)):
            if bg.shape != comp.shape or comp.ndim != 3 or comp.shape[2] != 3:
                raise ValueError(
                    f"pair {i}: background {bg.shape} and composite {comp.shape} must be one (H, W, 3)"
                )
            if bg.dtype != np.uint8 or comp.dtype != np.uint8:
                # the images are divided by 255 here: float [0, 1] ones would silently be 255x too dark
                raise ValueError(
                    f"pair {i}: background and composite must be uint8 RGB, got {bg.dtype} and {comp.dtype} "
                    "(float images in [0, 1]: (x * 255).round().astype(np.uint8))"
                )
            groups.setdefault(model_input_size(*comp.shape[:2], self.size), []).append(i)
        if self.register:
            backgrounds = [register_background(b, c)[0] for b, c in zip(backgrounds, composites, strict=True)]
        for hw, idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                focal = [
                    self.focal_of(*composites[i].shape[:2], focals[i] if focals is not None else None)
                    for i in chunk
                ]
                logits, depth = self._run(
                    _to_batch([backgrounds[i] for i in chunk], hw),
                    _to_batch([composites[i] for i in chunk], hw),
                    torch.tensor(focal, dtype=torch.float32),
                )
                for j, i in enumerate(chunk):
                    h, w = composites[i].shape[:2]
                    lg = F.interpolate(logits[j : j + 1], size=(h, w), mode="bilinear", align_corners=False)
                    dp = F.interpolate(depth[j : j + 1], size=(h, w), mode="bilinear", align_corners=False)
                    results[i] = (lg[0, 0].numpy().astype(np.float32), dp[0, 0].numpy().astype(np.float32))
        return results  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------- files
def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    return codec.decode_image(codec.read_bytes(path), str(path))


def _depth_range(depths: Sequence[np.ndarray]) -> tuple[float, float]:
    """(2nd, 98th) percentile of the positive values: a colour range robust to a few outliers."""
    vals = np.concatenate([d[np.isfinite(d) & (d > 0)].ravel() for d in depths] or [np.zeros(0)])
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(vals, [2, 98]))
    return (lo, hi) if hi > lo else (lo, lo + 1e-3)


def pictures(
    composite: np.ndarray, mask: np.ndarray, depth: np.ndarray, depth_range: tuple[float, float] | None = None
) -> dict[str, np.ndarray]:
    """The four outputs of one input: ``mask`` (H, W) uint8 0/255, ``depth`` (H, W) uint16 (x 1000, 0 = none),
    ``depth_color`` and ``overlay`` (H, W, 3) uint8 RGB."""
    lo, hi = depth_range or _depth_range([depth])
    return {
        "mask": mask.astype(np.uint8) * 255,
        "depth": codec.depth_to_uint16(depth, schema.DEPTH_MM_PER_M),
        "depth_color": colorize_depth(depth, lo, hi),
        "overlay": overlay_mask(composite, mask),
    }


def _write_gray(path: Path, array: np.ndarray) -> None:
    """8-bit or 16-bit single-channel PNG, atomically."""
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    write_atomic(path, buf.tobytes())


def write_pictures(out: Path, stem: str, pics: dict[str, np.ndarray], folders: bool = False) -> list[Path]:
    """``out/<stem>_<kind>.png`` (or ``out/<kind-folder>/<stem>.png`` with ``folders``); returns the paths."""
    paths = []
    for kind, array in pics.items():
        path = out / _FOLDERS[kind] / f"{stem}.png" if folders else out / f"{stem}_{kind}.png"
        if array.ndim == 2:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_gray(path, array)
        else:
            save_png(path, array)
        paths.append(path)
    return paths


_FOLDERS = {"mask": "masks", "depth": "depth", "depth_color": "depth_color", "overlay": "overlay"}


def output_stems(images: Sequence[Path]) -> list[str]:
    """The stem each image's outputs are named by: its own, or ``<stem>_<suffix>`` where several inputs share a
    stem (``x.jpg`` and ``x.png`` would otherwise write the same ``x_mask.png``, the second replacing the first)."""
    counts: dict[str, int] = {}
    for p in images:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return [p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}" for p in images]


def _aspect_warnings(background: np.ndarray, image: np.ndarray, bg_name: str, image_name: str) -> list[str]:
    """A warning (a list of one) when ``image`` and ``background`` differ in aspect ratio: the background, resized
    to the image, is then stretched, so unless both were stretched alike (frames squashed to a square) they are not
    one view; else none."""
    if codec.same_aspect(background.shape[:2], image.shape[:2]):
        return []
    (bh, bw), (h, w) = background.shape[:2], image.shape[:2]
    return [
        f"{image_name} is {w}x{h} (aspect {w / h:.2f}), its background {bg_name} {bw}x{bh} ({bw / bh:.2f}): the "
        "background is stretched to the image; unless both were stretched alike, give the empty scene as this "
        "camera framed it"
    ]


def predict_images(
    predictor: Predictor,
    background: np.ndarray,
    images: Sequence[Path],
    out: Path,
    warnings: list[str] | None = None,
    bg_name: str = "background",
) -> list[dict[str, str]]:
    """Predict every image file against ``background`` and write its four pictures under ``out``.

    An image that cannot be read is skipped, its entry ``{"input", "error"}``, and the others are predicted: one
    corrupt frame in a folder of thousands must not cost the rest. ``warnings`` receives one
    :func:`_aspect_warnings` per image size whose aspect ratio is not the background's."""
    warned: set[tuple[int, int]] = set()
    out.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, str]] = []
    stems = dict(zip(images, output_stems(images), strict=True))
    step = max(1, predictor.batch_size)
    for start in range(0, len(images), step):
        paths, comps = [], []
        for p in images[start : start + step]:
            try:
                comps.append(read_rgb(p))
                paths.append(p)
            except (codec.DecodeError, OSError) as err:
                written.append({"input": str(p), "error": str(err)})
        if not paths:
            continue
        for path, comp in zip(paths, comps, strict=True):
            if warnings is not None and comp.shape[:2] not in warned:
                warned.add(comp.shape[:2])
                warnings += _aspect_warnings(background, comp, bg_name, str(path))
        bgs = [codec.fit_background(background, *c.shape[:2]) for c in comps]
        for path, comp, (mask, depth) in zip(paths, comps, predictor(bgs, comps), strict=True):
            stem = stems[path]
            files = write_pictures(out, stem, pictures(comp, mask, depth))
            written.append({"input": str(path), **{p.stem.removeprefix(stem + "_"): str(p) for p in files}})
    return written


def _video_frames(path: Path, batch: int) -> Iterator[list[np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open this video")
    try:
        chunk: list[np.ndarray] = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            chunk.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if len(chunk) == batch:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    finally:
        cap.release()


def predict_video(
    predictor: Predictor,
    background: np.ndarray,
    video: Path,
    out: Path,
    warnings: list[str] | None = None,
    bg_name: str = "background",
) -> dict[str, object]:
    """Every frame of a static-camera ``video`` against one ``background``: picture folders and an MP4 (mp4v) of
    overlay | depth colour. The depth colour range is fixed by the first batch so colours do not flicker.
    ``warnings`` receives an :func:`_aspect_warnings` if the frames' aspect ratio is not the background's."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    fps = fps if fps and math.isfinite(fps) and fps > 0 else 25.0
    out.mkdir(parents=True, exist_ok=True)
    mp4 = out / f"{video.stem}_overlay_depth.mp4"
    # written under a temporary name (its suffix tells OpenCV the container) and renamed once complete: a failed
    # or killed run leaves no truncated video in place of an older one
    tmp = out / f".{mp4.stem}.{os.getpid()}.tmp.mp4"
    writer, rng, n = None, None, 0
    try:
        for frames in _video_frames(video, max(1, predictor.batch_size)):
            if n == 0 and warnings is not None:
                warnings += _aspect_warnings(background, frames[0], bg_name, f"{video}'s frames")
            bg = codec.fit_background(background, *frames[0].shape[:2])
            preds = predictor([bg] * len(frames), frames)
            rng = rng or _depth_range([d for _, d in preds])
            for frame, (mask, depth) in zip(frames, preds, strict=True):
                stem = f"{video.stem}_{n:06d}"
                pics = pictures(frame, mask, depth, rng)
                save_png(out / "frames" / f"{stem}.png", frame)
                write_pictures(out, stem, pics, folders=True)
                side = np.concatenate([pics["overlay"], pics["depth_color"]], axis=1)
                if writer is None:
                    h, w = side.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise OSError(f"OpenCV cannot write {mp4} with the mp4v codec")
                writer.write(cv2.cvtColor(side, cv2.COLOR_RGB2BGR))
                n += 1
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp, mp4)
    finally:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
    if n == 0:
        raise ValueError(f"{video}: no frame could be read")
    # frames of an older, longer video of this name in this --out would otherwise pass for this one's
    for folder in ("frames", *_FOLDERS.values()):
        for path in (out / folder).glob(f"{glob.escape(video.stem)}_*.png"):
            index = path.stem[len(video.stem) + 1 :]
            if len(index) == 6 and index.isdigit() and int(index) >= n:
                path.unlink()
    return {"input": str(video), "frames": n, "fps": fps, "video": str(mp4), "folders": str(out)}


def list_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Image files directly inside ``folder`` (sorted), without ``exclude`` (e.g. the background itself)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    skip = exclude.resolve() if exclude is not None else None
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in schema.IMAGE_SUFFIXES and p.resolve() != skip
    ]


def predict(
    background: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    image: str | Path | None = None,
    images: str | Path | None = None,
    video: str | Path | None = None,
    size: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    hfov: float | None = None,
    flip_tta: bool = False,
    mask_scale: float | None = None,
    register: bool = True,
) -> dict[str, object]:
    """Predict one image, a folder of images or a video (exactly one of ``image`` / ``images`` / ``video``)
    against the empty-scene ``background`` with a checkpoint or an ONNX model; write the outputs under ``out``.
    ``hfov``: the camera's horizontal field of view in degrees, for models with a canonical camera (without it,
    the canonical camera's field of view across the width is assumed: 75 degrees for the presets).
    ``flip_tta``: average with the mirror image's prediction.
    ``mask_scale``: the mask network's input enlargement in place of the checkpoint's (:func:`fgdepth.load_model`).
    ``register``: move and re-expose the background to match each input first (:mod:`fgdepth.register`).

    Returns a summary ``{"model", "size", "hfov", "register", "outputs", "skipped", "warnings"}`` (also written to
    ``out/predict.json``).
    """
    if sum(x is not None for x in (image, images, video)) != 1:
        raise ValueError("give exactly one of image, images or video")
    codec.require_out_folder(out)
    if images is not None and Path(out).resolve() == Path(images).resolve():
        # its outputs (<stem>_mask.png, ...) would be read as inputs by the next run into it
        raise ValueError(f"--out is the --images folder {images}: give another folder for the outputs")
    predictor = Predictor.load(
        checkpoint,
        onnx,
        size=size,
        batch_size=batch_size,
        device=device,
        hfov=hfov,
        flip_tta=flip_tta,
        mask_scale=mask_scale,
        register=register,
    )
    bg_path = Path(background)
    if not bg_path.is_file():
        raise FileNotFoundError(f"no background image at {bg_path}")
    bg = read_rgb(bg_path)
    out = Path(out)
    warnings: list[str] = []
    if video is not None:
        if not Path(video).is_file():
            raise FileNotFoundError(f"no video at {video}")
        outputs: list = [predict_video(predictor, bg, Path(video), out, warnings, str(bg_path))]
    else:
        paths = [Path(image)] if image is not None else list_images(Path(images), exclude=bg_path)  # type: ignore[arg-type]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing or not paths:
            raise FileNotFoundError(f"no input image at {', '.join(missing) or images}")
        outputs = predict_images(predictor, bg, paths, out, warnings, str(bg_path))
    summary = {
        "model": predictor.name,
        "size": predictor.size,
        "hfov": hfov,
        "register": register,
        "outputs": [o for o in outputs if "error" not in o],
        "skipped": [o for o in outputs if "error" in o],  # inputs that could not be read, with the reason
        "warnings": warnings,  # predicted, but perhaps not what was meant (_aspect_warnings)
    }
    write_atomic(out / "predict.json", json.dumps(summary, indent=2).encode())
    return summary
