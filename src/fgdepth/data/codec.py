"""Encoding and decoding of the stored arrays: one place for every codec setting.

All functions take and return numpy arrays in RGB order (OpenCV's BGR stays inside this module).
"""

from __future__ import annotations

import functools
import json
import math
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fgdepth.data import schema

# Depth PNGs are written here, not by OpenCV: its zlib deflate was the factory's largest cost. Measured on 2 cores
# at 224 px on composite depth maps of the procedural world: OpenCV PAETH + level 1 0.87 ms, 18.7 kB; SUB filter
# (numpy) + ISA-L deflate level 1 0.18 ms, 19.1 kB; bilevel PNG encodes a mask in ~0.07 ms.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_FILTER_SUB = 1
_DEFLATE_LEVEL = 1
_PNG_MASK_PARAMS = [cv2.IMWRITE_PNG_BILEVEL, 1]
_PNG_IMAGE_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


class DecodeError(ValueError):
    """A stored or user file could not be decoded."""


def _encode(ext: str, array: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode an array of shape {array.shape} as {ext}")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """rgb: (H, W, 3) uint8."""
    # cvtColor, not rgb[..., ::-1] + ascontiguousarray: the same BGR array, ~20x faster (0.02 vs 0.34 ms at 224 px)
    return _encode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])


def encode_png_rgb(rgb: np.ndarray) -> bytes:
    """rgb: (H, W, 3) or (H, W, 4) uint8, lossless."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    return _encode(".png", bgr, _PNG_IMAGE_PARAMS)


def encode_mask(mask: np.ndarray) -> bytes:
    """mask: (H, W) bool -> binary PNG that decodes to 0/255 uint8."""
    return _encode(".png", mask.astype(np.uint8) * 255, _PNG_MASK_PARAMS)


def encode_depth(depth: np.ndarray, scale: float = schema.DEPTH_MM_PER_M) -> bytes:
    """depth: (H, W) float32 (0 = unknown) -> uint16 PNG of round(depth * scale), clipped to the uint16 range."""
    return encode_png_uint16(depth_to_uint16(depth, scale))


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_png_uint16(u16: np.ndarray) -> bytes:
    """u16: (H, W) uint16 -> greyscale 16-bit PNG (every row SUB-filtered, one IDAT chunk, ISA-L deflate)."""
    from isal import isal_zlib  # a required dependency; imported here so that decoding never needs it

    if u16.dtype != np.uint16 or u16.ndim != 2:
        raise ValueError(f"expected a (H, W) uint16 array, got {u16.dtype} {u16.shape}")
    h, w = u16.shape
    row = u16.astype(">u2").view(np.uint8).reshape(h, 2 * w)  # PNG stores 16-bit samples big-endian
    # SUB filter: each byte minus the byte one pixel (2 bytes) to its left, modulo 256; the filter byte leads each row
    raw = np.empty((h, 2 * w + 1), np.uint8)
    raw[:, 0] = _PNG_FILTER_SUB
    raw[:, 1:3] = row[:, :2]
    np.subtract(row[:, 2:], row[:, :-2], out=raw[:, 3:])
    header = struct.pack(
        ">IIBBBBB", w, h, 16, 0, 0, 0, 0
    )  # 16-bit greyscale, deflate, adaptive filters, no interlace
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", isal_zlib.compress(raw.tobytes(), _DEFLATE_LEVEL)),
            _png_chunk(b"IEND", b""),
        )
    )


def depth_to_uint16(depth: np.ndarray, scale: float = schema.DEPTH_MM_PER_M) -> np.ndarray:
    d = depth.astype(np.float64) * scale
    if not np.isfinite(d).all():  # the common case skips nan_to_num's copies; same values either way
        d = np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
    np.rint(d, out=d)
    np.clip(d, 0, schema.DEPTH_MAX_UINT16, out=d)
    return d.astype(np.uint16)


def uint16_to_depth(u16: np.ndarray, scale: float = schema.DEPTH_MM_PER_M) -> np.ndarray:
    return u16.astype(np.float32) / np.float32(scale)


def imdecode(data: bytes, flags: int) -> np.ndarray | None:
    """``cv2.imdecode``, None for undecodable bytes; an empty file (a crash, a full disk) too, where OpenCV raises."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags) if len(data) else None


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """JPEG/PNG bytes -> (H, W, 3) uint8 RGB."""
    arr = imdecode(data, cv2.IMREAD_COLOR)
    if arr is None:
        raise DecodeError(f"{name}: not a decodable image")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def fit_background(background: np.ndarray, height: int, width: int) -> np.ndarray:
    """The background at (height, width): unchanged if it already is, else resized (area down, linear up), so that
    a pair whose shots were stored at different sizes lines up."""
    if background.shape[:2] == (height, width):
        return background
    shrink = background.shape[0] > height or background.shape[1] > width
    return cv2.resize(
        background, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def same_aspect(a_hw: tuple[int, int], b_hw: tuple[int, int]) -> bool:
    """Whether two (height, width) sizes have one aspect ratio, up to rounding each side to whole pixels (1 %
    more allowed): resizing one to the other then scales the picture, it does not stretch it."""
    (ah, aw), (bh, bw) = a_hw, b_hw
    slack = 0.5 / min(ah, aw) + 0.5 / min(bh, bw)  # each side may be off by half a pixel in either size
    return abs(math.log((aw / ah) / (bw / bh))) <= 2 * slack + 0.01


def mask_plane(image: np.ndarray) -> np.ndarray:
    """A decoded 8-bit mask image (H, W) or (H, W, C) -> (H, W) uint8 in 0..255, masks as others write them: a
    colour one counts a pixel by its brightest colour channel (red on black is grey 76, which a grey conversion
    gives), a 0/1 one (a bool array saved as uint8) becomes 0/255; soft values are kept."""
    plane = image if image.ndim == 2 else image[..., :3].max(axis=2)
    return plane * np.uint8(255) if plane.max(initial=0) == 1 else plane


def decode_mask(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """PNG bytes -> (H, W) bool: pixels > 127 of :func:`mask_plane` (0/1 and colour masks read too)."""
    arr = imdecode(data, cv2.IMREAD_UNCHANGED)  # 8-bit grey (what fgdepth writes) needs nothing more
    if arr is not None and not (arr.ndim == 2 and arr.dtype == np.uint8):
        arr = imdecode(data, cv2.IMREAD_COLOR)  # 8 bits, alpha dropped
    if arr is None:
        raise DecodeError(f"{name}: not a decodable mask image")
    return mask_plane(arr) > 127


def decode_uint16(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """uint16 PNG bytes -> (H, W) uint16; refuses 8-bit images, which would silently lose depth."""
    arr = imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DecodeError(f"{name}: not a decodable PNG")
    if arr.dtype != np.uint16 or arr.ndim != 2:
        raise DecodeError(f"{name}: depth must be a single-channel uint16 PNG, got {arr.dtype} {arr.shape}")
    return arr


def decode_depth(data: bytes, scale: float = schema.DEPTH_MM_PER_M, name: str = "<bytes>") -> np.ndarray:
    """uint16 PNG bytes -> (H, W) float32 depth (0 = unknown)."""
    return uint16_to_depth(decode_uint16(data, name), scale)


def read_bytes(path: str | Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@functools.cache
def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process's umask (read once)."""
    try:  # Linux: no race with threads that might set the umask meanwhile
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def require_out_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path, refused where it is a file: a folder that exists or will be made for the outputs
    (``mkdir`` on a file fails as "[Errno 17] File exists", naming neither the option nor the fix)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path}: a file, not a folder for the outputs")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write under a unique temporary name in the same folder, then rename: a reader never sees half a file, and
    a failed write leaves no temporary behind (a killed one leaves ``.<name>.*.tmp``, which resumes remove).
    The file gets the mode a plain ``open()`` would give it (mkstemp's own is 0o600: private to its owner)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # not on Windows, where mkstemp's mode does not hide the file
            os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def dumps_meta(meta: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON so identical metadata gives identical bytes."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
