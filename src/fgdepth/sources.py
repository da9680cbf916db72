"""Reading and validating users' backgrounds, RGBA foregrounds and background depth maps.

Every problem names the file. Unreadable files are collected as ``skipped`` (the caller decides whether that
aborts, ``--strict``); a missing alpha or a missing depth map is an error that lists every offending file,
since it means the folders do not match what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fgdepth.data import codec, schema
from fgdepth.scene import Background, Foreground, bottom_centre_anchor


class SourceError(ValueError):
    """Input folders that cannot make a dataset as asked."""


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class Loaded:
    """Sources that loaded, with their file names, and those that did not."""

    items: list = field(default_factory=list)  # list[Background] or list[Foreground]
    names: list[str] = field(default_factory=list)  # source file names, same order
    skipped: list[Skipped] = field(default_factory=list)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder}: not a directory")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in schema.IMAGE_SUFFIXES)


def _imread(path: Path) -> np.ndarray | None:
    """Any common format, any bit depth -> uint8 HWC with 3 or 4 channels (RGB[A]), or None if unreadable.

    Images without alpha are turned upright by their EXIF orientation, as viewers and ``codec.decode_image``
    (prediction, evaluation) show them: a phone's JPEG would otherwise come out sideways."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if not data.size:
        return None
    # IMREAD_UNCHANGED keeps an alpha channel but ignores EXIF orientation; these flags apply it. A JPEG holds no
    # alpha, so it is decoded once, with them; another format only again when it turned out to have no alpha.
    upright = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    jpeg = data[:2].tobytes() == b"\xff\xd8"
    arr = cv2.imdecode(data, upright if jpeg else cv2.IMREAD_UNCHANGED)
    if arr is not None and not jpeg and (arr.ndim == 2 or arr.shape[2] != 4):
        arr = cv2.imdecode(data, upright)
    if arr is None:
        return None
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = cv2.normalize(arr, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2RGB)


def _read_matte(path: Path) -> np.ndarray | None:
    """A person's mask -> (H, W) uint8 alpha (:func:`fgdepth.data.codec.mask_plane`: a soft matte kept, 0/1 and
    colour masks read; grey would make red 76, a person three quarters transparent), or None if unreadable."""
    img = _imread(path)
    return None if img is None else codec.mask_plane(img)


def resize_centre_crop(image: np.ndarray, size: int, interpolation: int | None = None) -> np.ndarray:
    """Scale so the short side is ``size``, then crop the centre square. image: (H, W[, C])."""
    h, w = image.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if interpolation is None:
        interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, (nw, nh), interpolation=interpolation) if (nh, nw) != (h, w) else image
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(out[y0 : y0 + size, x0 : x0 + size])


def read_depth_file(path: Path) -> np.ndarray:
    """A depth map: uint16 PNG in millimetres or .npy in metres -> (H, W) float32 metres, 0 = unknown."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise SourceError(f"{path}: depth .npy must be (H, W), got shape {arr.shape}")
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return np.maximum(arr, 0.0)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise SourceError(f"{path}: unreadable depth map")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise SourceError(
            f"{path}: depth PNG must be single-channel uint16 millimetres, got {raw.dtype} {raw.shape}"
        )
    return raw.astype(np.float32) / schema.DEPTH_MM_PER_M


def _find_by_stem(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_backgrounds(bg_dir: str | Path, size: int, depth_dir: str | Path | None = None) -> Loaded:
    """Backgrounds resized and centre-cropped to ``size``; depth resized the same way (nearest, no mixing)."""
    paths = list_images(bg_dir)
    if not paths:
        raise SourceError(f"{bg_dir}: no images ({', '.join(schema.IMAGE_SUFFIXES)})")
    if depth_dir is not None:
        missing = [p.name for p in paths if _find_by_stem(Path(depth_dir), p.stem, (".png", ".npy")) is None]
        if missing:
            raise SourceError(
                f"{depth_dir}: no depth map (<stem>.png uint16 mm or <stem>.npy metres) for "
                f"{len(missing)} background(s): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
            )
    out = Loaded()
    for path in paths:
        rgb = _imread(path)
        if rgb is None:
            out.skipped.append(Skipped(str(path), "unreadable or corrupt image"))
            continue
        depth = None
        if depth_dir is not None:
            dpath = _find_by_stem(Path(depth_dir), path.stem, (".png", ".npy"))
            try:
                depth = read_depth_file(dpath)
            except (SourceError, ValueError, OSError) as err:
                out.skipped.append(Skipped(str(dpath), str(err)))
                continue
            if depth.shape[:2] != rgb.shape[:2]:
                out.skipped.append(
                    Skipped(
                        str(dpath), f"depth size {depth.shape[:2]} differs from image size {rgb.shape[:2]}"
                    )
                )
                continue
            depth = resize_centre_crop(depth, size, cv2.INTER_NEAREST)
        out.items.append(Background(rgb=resize_centre_crop(rgb[..., :3], size), depth=depth))
        out.names.append(path.name)
    return out


def load_foregrounds(
    fg_dir: str | Path, fg_mask_dir: str | Path | None = None, max_height: int = 448
) -> Loaded:
    """RGBA people, cropped to their alpha and scaled down to at most ``max_height`` pixels.

    An RGB file is accepted only with ``<fg_mask_dir>/<stem>.png`` (0/255); otherwise every such file is listed
    in one error.
    """
    paths = list_images(fg_dir)
    if not paths:
        raise SourceError(f"{fg_dir}: no images ({', '.join(schema.IMAGE_SUFFIXES)})")
    out = Loaded()
    images: list[tuple[Path, np.ndarray, Path | None]] = []  # (image, RGBA, the mask its alpha came from)
    no_alpha: list[str] = []
    for path in paths:
        img = _imread(path)
        if img is None:
            out.skipped.append(Skipped(str(path), "unreadable or corrupt image"))
            continue
        mpath = None
        if img.shape[2] == 3:
            mpath = (
                _find_by_stem(Path(fg_mask_dir), path.stem, schema.IMAGE_SUFFIXES) if fg_mask_dir else None
            )
            if mpath is None:
                no_alpha.append(path.name)
                continue
            mask = _read_matte(mpath)
            if mask is None or mask.shape != img.shape[:2]:
                why = (
                    "unreadable" if mask is None else f"size {mask.shape} differs from image {img.shape[:2]}"
                )
                out.skipped.append(Skipped(str(mpath), f"mask {why}"))
                continue
            img = np.dstack([img, mask])
        images.append((path, img, mpath))
    if no_alpha:
        raise SourceError(
            f"{fg_dir}: {len(no_alpha)} foreground(s) have no alpha channel and no matching mask"
            f"{' in ' + str(fg_mask_dir) if fg_mask_dir else ' (give --fg-mask-dir)'}: {', '.join(no_alpha[:20])}"
            f"{' ...' if len(no_alpha) > 20 else ''}"
        )
    for path, rgba, mpath in images:
        fg = foreground_from_rgba(rgba, max_height)
        if fg is None and mpath is not None:  # name the mask, and what it must hold (a 0/1 mask is common)
            largest = rgba[..., 3].max()
            why = f"mask is empty (no pixel > 127; masks are 0/255 or 0/1, this one's largest value is {largest})"
            out.skipped.append(Skipped(str(mpath), why))
            continue
        if fg is None:
            out.skipped.append(Skipped(str(path), "alpha channel is empty (no pixel with alpha > 0.5)"))
            continue
        out.items.append(fg)
        out.names.append(path.name)
    return out


def foreground_from_rgba(rgba: np.ndarray, max_height: int = 448) -> Foreground | None:
    """Crop a flat cut-out to its alpha, limit its height, anchor it at the bottom centre. None if empty."""
    alpha = rgba[..., 3]
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0 or not (alpha > 127).any():
        return None
    rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if rgba.shape[0] > max_height:
        s = max_height / rgba.shape[0]
        rgba = resize_rgba(rgba, (max(1, round(rgba.shape[1] * s)), max_height))
    rgba = np.ascontiguousarray(rgba)
    return Foreground(rgba=rgba, anchor=bottom_centre_anchor(rgba[..., 3]))


def resize_rgba(rgba: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Resize with premultiplied alpha so transparent pixels' colours do not bleed into edges."""
    return resize_premultiplied(premultiply(rgba), size_wh)


def premultiply(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) uint8 straight alpha -> (h, w, 4) float32: RGB * alpha / 255, alpha in [0, 255]."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.concatenate([rgba[..., :3].astype(np.float32) * a, a * 255.0], axis=2)


def resize_premultiplied(premult: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """The second half of :func:`resize_rgba` (callers that resize one sprite often keep its premultiplied form).

    premult: (h, w, 4) float32 from :func:`premultiply`; returns (H, W, 4) uint8 straight alpha, W, H = size_wh.
    """
    r = resize_premultiplied_float(premult, size_wh)
    alpha = r[..., 3:4]
    rgb = np.where(alpha > 1e-3, r[..., :3] / np.maximum(alpha / 255.0, 1e-6), 0.0)
    return np.clip(np.rint(np.concatenate([rgb, alpha], axis=2)), 0, 255).astype(np.uint8)


def resize_premultiplied_float(
    premult: np.ndarray | list[np.ndarray], size_wh: tuple[int, int]
) -> np.ndarray:
    """Resize a premultiplied sprite, or pick from its :func:`premultiplied_pyramid` and resize the nearest larger
    level (area averaging from at most twice the size: the same pixels to within rounding, a fraction of the work).

    Returns (H, W, 4) float32, still premultiplied (RGB in [0, alpha], alpha in [0, 255]).
    """
    levels = premult if isinstance(premult, list) else [premult]
    w, h = size_wh
    source = levels[0]
    for level in levels[1:]:
        if level.shape[0] < h or level.shape[1] < w:
            break
        source = level
    if source.shape[:2] == (h, w):
        return source
    interp = cv2.INTER_AREA if h < source.shape[0] else cv2.INTER_LINEAR
    r = cv2.resize(source, size_wh, interpolation=interp)
    return r[..., None] if r.ndim == 2 else r


def premultiplied_pyramid(premult: np.ndarray, min_height: int = 16) -> list[np.ndarray]:
    """[premult, half, quarter, ...]: each level the area average of the one before, down to ``min_height`` rows."""
    levels = [premult]
    while levels[-1].shape[0] // 2 >= min_height and levels[-1].shape[1] // 2 >= 1:
        prev = levels[-1]
        levels.append(
            cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA)
        )
    return levels
