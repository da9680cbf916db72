"""Pictures: colour-mapped depth, masks, error maps, titled grids, training curves.

Every picture is a numpy ``(H, W, 3) uint8`` RGB array, drawn with OpenCV; :func:`save_png` writes one to disk
atomically. Matplotlib is only used by :func:`plot_curves`, imported there with the Agg canvas (no pyplot, no
global backend switch). Inputs are numpy HWC / HW; torch tensors and CHW arrays are converted.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fgdepth.data.codec import atomic_write_bytes
from fgdepth.metrics import to_numpy

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
BLANK: Color = (48, 48, 48)  # an absent tile
FONT = cv2.FONT_HERSHEY_SIMPLEX
CMAPS = ("turbo", "magma", "inferno", "viridis", "plasma", "jet", "bone", "gray")


# --- conversions -------------------------------------------------------------------------------------
def _hwc(x: Any) -> np.ndarray:
    """numpy HWC / HW view of an image-like (torch or numpy, CHW or HWC, leading singleton dims dropped)."""
    a = to_numpy(x)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Any image-like as ``(H, W, 3) uint8``: bool -> 0/255, float assumed in [0, 1], gray -> 3 channels.

    Shape:
        image: (H, W), (H, W, 1|3|4) or (1|3, H, W); returns (H, W, 3) uint8.
    """
    a = _hwc(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a // 257).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"cannot show an array of shape {a.shape} as an image")
    return np.ascontiguousarray(a[..., :3])


def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 RGB table of an OpenCV colour map."""
    code = getattr(cv2, f"COLORMAP_{cmap.upper()}", None)
    if cmap not in CMAPS or code is None:
        raise ValueError(f"unknown cmap {cmap!r}; valid: {', '.join(CMAPS)}")
    ramp = np.arange(256, dtype=np.uint8)[:, None]
    return cv2.applyColorMap(ramp, code)[:, 0, ::-1].copy()


def _apply_cmap(values: np.ndarray, valid: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.nan_to_num(values.astype(np.float64)) - vmin) / span, 0.0, 1.0)
    rgb = _lut(cmap)[np.rint(t * 255).astype(np.uint8)]
    rgb[~valid] = BLACK
    return rgb


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def valid_range(depths: Sequence[Any | None]) -> tuple[float, float] | None:
    """(min, max) over the valid (finite, > 0) pixels of several depth maps; None if none is valid."""
    lo, hi = math.inf, -math.inf
    for d in depths:
        if d is None:
            continue
        a = _hwc(d).astype(np.float64)
        v = _valid_depth(a)
        if v.any():
            lo, hi = min(lo, float(a[v].min())), max(hi, float(a[v].max()))
    return (lo, hi) if lo <= hi else None


def depth_unit(depth_kind: str | None) -> str:
    """The scale-bar unit of a dataset's depth: ``m`` for metric depth, ``rel`` for a teacher's relative
    disparity (unitless, larger = nearer)."""
    return "rel" if depth_kind == "relative" else "m"


def colorize_depth(
    depth: Any, vmin: float | None = None, vmax: float | None = None, cmap: str = "turbo"
) -> np.ndarray:
    """Colour-mapped depth; invalid pixels (0, negative, NaN, inf) are black.

    ``vmin`` / ``vmax`` default to the valid range of this map; values outside are clipped.

    Shape:
        depth: (H, W) float (metres or relative units); returns (H, W, 3) uint8 RGB.
    """
    d = _hwc(depth).astype(np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    valid = _valid_depth(d)
    if vmin is None or vmax is None:
        rng = valid_range([d]) or (0.0, 1.0)
        vmin = rng[0] if vmin is None else vmin
        vmax = rng[1] if vmax is None else vmax
    return _apply_cmap(d, valid, float(vmin), float(vmax), cmap)


def mask_to_rgb(mask: Any, color: Color = WHITE) -> np.ndarray:
    """A mask as an image: ``color`` on the foreground, black elsewhere; a float mask (probabilities in
    [0, 1]) is shaded proportionally.

    Shape:
        mask: (H, W) bool, {0, 1}, {0, 255} or float in [0, 1]; returns (H, W, 3) uint8.
    """
    m = _hwc(mask)
    if m.dtype == bool:
        w = m.astype(np.float32)
    elif m.dtype == np.uint8:
        w = m.astype(np.float32) / (255.0 if m.max(initial=0) > 1 else 1.0)
    else:
        w = np.clip(np.nan_to_num(m.astype(np.float32)), 0.0, 1.0)
    if w.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    return np.rint(w[..., None] * np.asarray(color, np.float32)).astype(np.uint8)


def overlay_mask(image: Any, mask: Any, color: Color = (255, 64, 64), alpha: float = 0.5) -> np.ndarray:
    """Blend ``color`` over ``image`` where ``mask`` is set (with weight ``alpha`` times the mask value).

    Shape:
        image: (H, W, 3) uint8 or float in [0, 1]; mask: (H, W); returns (H, W, 3) uint8.
    """
    img = to_rgb_uint8(image).astype(np.float32)
    m = mask_to_rgb(mask, (1, 1, 1))[..., :1].astype(np.float32)
    if m.shape[:2] != img.shape[:2]:
        raise ValueError(f"mask {m.shape[:2]} and image {img.shape[:2]} differ in size")
    w = alpha * m
    out = img * (1.0 - w) + np.asarray(color, np.float32) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def abs_error(pred: Any, target: Any, valid: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``|pred - target|`` and its validity (target > 0 and finite, pred finite, ``valid``).

    ``pred`` is resized (bilinear) to the target's size if they differ (a model may predict at a lower
    resolution). Shape: (H, W) each; returns ((H, W) float64, (H, W) bool).
    """
    t = _hwc(target).astype(np.float64)
    p = _hwc(pred).astype(np.float64)
    if p.shape != t.shape:
        p = cv2.resize(p, (t.shape[1], t.shape[0]), interpolation=cv2.INTER_LINEAR)
    v = _valid_depth(t) & np.isfinite(p)
    if valid is not None:
        vv = _hwc(valid)
        v &= (vv if vv.dtype == bool else vv > 0.5).reshape(v.shape)
    return np.where(v, np.abs(p - t), 0.0), v


def error_map(
    pred: Any, target: Any, valid: Any | None = None, vmax: float | None = None, cmap: str = "magma"
) -> np.ndarray:
    """Colour-mapped absolute depth error in [0, ``vmax``] (default: its 99th percentile); invalid black.

    Shape:
        pred, target: (H, W) float; valid: (H, W) bool; returns (H, W, 3) uint8.
    """
    err, v = abs_error(pred, target, valid)
    if vmax is None:
        vmax = float(np.percentile(err[v], 99)) if v.any() else 1.0
    return _apply_cmap(err, v, 0.0, vmax if vmax > 0 else 1.0, cmap)


# --- text and bars -----------------------------------------------------------------------------------
def _text_scale(tile_h: int) -> float:
    return float(np.clip(tile_h / 320.0, 0.4, 0.9))


def _fit_scale(text: str, max_w: int, scale: float) -> float:
    (w, _), _ = cv2.getTextSize(text, FONT, scale, 1)
    return scale if w <= max_w else max(0.3, scale * max_w / max(w, 1))


def _line_h(scale: float) -> int:
    (_, h), base = cv2.getTextSize("Ag", FONT, scale, 1)
    return h + base + 2


def _put(img: np.ndarray, text: str, x: int, y: int, scale: float, color: Color = BLACK) -> None:
    """Draw ``text`` with its baseline at (x, y)."""
    thick = 1 if scale < 0.7 else 2
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, color, thick, cv2.LINE_AA)


def _put_centered(img: np.ndarray, text: str, cx: int, cy: int, max_w: int, scale: float) -> None:
    s = _fit_scale(text, max_w, scale)
    (w, h), _ = cv2.getTextSize(text, FONT, s, 1)
    _put(img, text, cx - w // 2, cy + h // 2, s)


def _tick_decimals(vmin: float, vmax: float, n: int) -> int:
    step = abs(vmax - vmin) / max(n - 1, 1)
    if step <= 0:
        return 2
    return int(np.clip(math.ceil(-math.log10(step)) + 1, 0, 3))


def depth_scale_bar(
    vmin: float,
    vmax: float,
    height: int,
    width: int = 84,
    cmap: str = "turbo",
    unit: str = "m",
    n_ticks: int = 5,
) -> np.ndarray:
    """A vertical colour bar, ``vmax`` at the top, with ``n_ticks`` labelled ticks (e.g. ``2.5 m``).

    Shape:
        returns (height, width, 3) uint8 RGB on white.
    """
    height, width = max(int(height), 16), max(int(width), 32)
    img = np.full((height, width, 3), 255, np.uint8)
    scale = 0.4 if height < 200 else 0.5
    margin = _line_h(scale) // 2 + 1
    x0, bw = 3, max(8, width // 5)
    y0, y1 = margin, height - margin  # vmax at y0, vmin at y1
    ramp = np.linspace(1.0, 0.0, max(y1 - y0, 2))
    img[y0 : y0 + ramp.size, x0 : x0 + bw] = _lut(cmap)[np.rint(ramp * 255).astype(int)][:, None]
    cv2.rectangle(img, (x0, y0), (x0 + bw - 1, y0 + ramp.size - 1), BLACK, 1)
    n_ticks = max(2, min(n_ticks, (y1 - y0) // _line_h(scale) + 1))
    dec = _tick_decimals(vmin, vmax, n_ticks)
    for i in range(n_ticks):
        f = i / (n_ticks - 1)
        y = int(round(y1 - 1 - f * (y1 - 1 - y0)))
        cv2.line(img, (x0 + bw, y), (x0 + bw + 3, y), BLACK, 1)
        label = f"{vmin + f * (vmax - vmin):.{dec}f}" + (f" {unit}" if unit else "")
        s = _fit_scale(label, width - (x0 + bw + 6), scale)
        (_, th), _ = cv2.getTextSize(label, FONT, s, 1)
        _put(img, label, x0 + bw + 6, y + th // 2, s)
    return img


# --- grids -------------------------------------------------------------------------------------------
def _grid(
    rows: Sequence[Sequence[Any | None]],
    titles: Sequence[str] | None,
    pad: int,
    tile_size: tuple[int, int] | None,
    row_labels: Sequence[str | None] | None,
) -> tuple[np.ndarray, int, float]:
    """The grid, the height of its title band and the font scale of its titles."""
    if not rows or not any(len(r) for r in rows):
        raise ValueError("make_grid needs at least one row with one tile")
    ncols = max(len(r) for r in rows)
    if tile_size is None:
        first = next(t for r in rows for t in r if t is not None)
        tile_size = tuple(to_rgb_uint8(first).shape[:2])  # type: ignore[assignment]
    th, tw = tile_size
    scale = _text_scale(th)
    head = _line_h(scale) + 2 * pad if titles else 0
    labels = [(lbl or "").split("\n") for lbl in (row_labels or [])]
    lab_w = 0
    if any(any(line for line in lines) for lines in labels):
        widths = [cv2.getTextSize(line, FONT, scale, 1)[0][0] for lines in labels for line in lines]
        lab_w = max(widths) + 2 * pad
    h = head + len(rows) * (th + pad) + pad
    w = lab_w + ncols * (tw + pad) + pad
    out = np.full((h, w, 3), 255, np.uint8)
    for c, title in enumerate(titles or []):
        cx = lab_w + pad + c * (tw + pad) + tw // 2
        _put_centered(out, title, cx, pad + head // 2 - pad, tw, scale)
    for r, row in enumerate(rows):
        y = head + pad + r * (th + pad)
        for c in range(ncols):
            x = lab_w + pad + c * (tw + pad)
            tile = row[c] if c < len(row) else None
            if tile is None:
                out[y : y + th, x : x + tw] = BLANK
                continue
            t = to_rgb_uint8(tile)
            if t.shape[:2] != (th, tw):
                shrink = t.shape[0] > th or t.shape[1] > tw
                t = cv2.resize(t, (tw, th), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
            out[y : y + th, x : x + tw] = t
        if r < len(labels):
            lh = _line_h(scale)
            ty = y + th // 2 - (len(labels[r]) * lh) // 2 + lh - 2
            for i, line in enumerate(labels[r]):
                _put(out, line, pad, ty + i * lh, _fit_scale(line, lab_w - 2 * pad, scale))
    return out, head, scale


def make_grid(
    rows: Sequence[Sequence[Any | None]],
    titles: Sequence[str] | None = None,
    pad: int = 4,
    tile_size: tuple[int, int] | None = None,
    row_labels: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Tiles in rows on white, resized to a common ``tile_size`` (default: the first tile's), with column
    ``titles`` above and optional ``row_labels`` (``\\n`` splits lines) in a band on the left.

    A ``None`` tile (or a short row) leaves a dark grey blank.

    Shape:
        tiles: anything :func:`to_rgb_uint8` accepts; tile_size: (h, w); returns (H, W, 3) uint8.
    """
    return _grid(rows, titles, pad, tile_size, row_labels)[0]


def _append_bars(
    grid: np.ndarray, head: int, pad: int, scale: float, bars: Sequence[tuple[str, float, float, str, str]]
) -> np.ndarray:
    """Put one titled scale bar per (title, vmin, vmax, cmap, unit) to the right of ``grid``."""
    parts = [grid]
    body_h = grid.shape[0] - head - 2 * pad
    title_h = head if head else _line_h(scale) + 2 * pad
    for title, vmin, vmax, cmap, unit in bars:
        bar = depth_scale_bar(vmin, vmax, body_h - (title_h - head), cmap=cmap, unit=unit)
        col = np.full((grid.shape[0], bar.shape[1] + pad, 3), 255, np.uint8)
        col[title_h + pad : title_h + pad + bar.shape[0], : bar.shape[1]] = bar
        _put_centered(col, title, bar.shape[1] // 2, title_h // 2, bar.shape[1], scale)
        parts.append(col)
    return np.concatenate(parts, axis=1)


def _get(sample: Mapping[str, Any], key: str) -> Any | None:
    value = sample.get(key)
    return None if value is None else _hwc(value)


def sample_grid(
    samples: Sequence[Mapping[str, Any]],
    depth_range: tuple[float, float] | None = None,
    cmap: str = "turbo",
    unit: str = "m",
    tile_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Dataset samples, one per row: background | composite | mask | depth, with one shared depth scale bar.

    ``depth_range`` defaults to the valid range over all samples' depths. A sample without ``depth`` (or
    ``background``) gets a blank tile. Optional ``label`` strings become row labels.

    Shape:
        samples: dicts of ``background``, ``composite`` (H, W, 3) uint8, ``mask`` (H, W) bool/uint8,
        ``depth`` (H, W) float, 0 unknown (CHW / torch accepted too); returns (H', W', 3) uint8.
    """
    if not samples:
        raise ValueError("sample_grid needs at least one sample")
    depths = [_get(s, "depth") for s in samples]
    rng = depth_range or valid_range(depths)
    rows = []
    for s, d in zip(samples, depths, strict=True):
        mask = _get(s, "mask")
        rows.append(
            [
                _get(s, "background"),
                _get(s, "composite"),
                None if mask is None else mask_to_rgb(mask),
                None if d is None or rng is None else colorize_depth(d, rng[0], rng[1], cmap),
            ]
        )
    labels = [s.get("label") for s in samples]
    pad = 4
    grid, head, scale = _grid(rows, ["background", "composite", "mask", "depth"], pad, tile_size, labels)
    if rng is None:
        return grid
    return _append_bars(grid, head, pad, scale, [("depth", rng[0], rng[1], cmap, unit)])


def prediction_grid(
    samples: Sequence[Mapping[str, Any]],
    depth_range: tuple[float, float] | None = None,
    error_max: float | None = None,
    cmap: str = "turbo",
    error_cmap: str = "magma",
    unit: str = "m",
    tile_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Predictions against truth, one sample per row: background | composite | true mask | pred mask |
    true depth | pred depth | depth error, with a depth scale bar and an error scale bar on the right.

    Depth colours share ``depth_range`` (default: valid range of the true depths, else of the predictions);
    errors share ``[0, error_max]`` (default: 99th percentile of all valid absolute errors). A sample's
    optional ``label`` (e.g. ``"IoU 0.93"``; ``\\n`` for more lines) is written left of its row.

    Shape:
        samples: dicts of ``background``, ``composite`` (H, W, 3) uint8, ``mask``, ``pred_mask`` (H, W) bool
        or probabilities, ``depth``, ``pred_depth`` (H, W) float (a prediction at lower resolution is
        resized), optional ``depth_valid`` (H, W) and ``label`` str; returns (H', W', 3) uint8.
    """
    if not samples:
        raise ValueError("prediction_grid needs at least one sample")
    true_d = [_get(s, "depth") for s in samples]
    pred_d = [_get(s, "pred_depth") for s in samples]
    rng = depth_range or valid_range(true_d) or valid_range(pred_d)
    errs = [
        abs_error(p, t, s.get("depth_valid")) if p is not None and t is not None else None
        for s, p, t in zip(samples, pred_d, true_d, strict=True)
    ]
    if error_max is None:
        all_err = np.concatenate([e[v] for e, v in (x for x in errs if x is not None)] or [np.zeros(0)])
        error_max = float(np.percentile(all_err, 99)) if all_err.size else 1.0
    error_max = error_max if error_max > 0 else 1.0
    rows = []
    for s, t, p, e in zip(samples, true_d, pred_d, errs, strict=True):
        mask, pmask = _get(s, "mask"), _get(s, "pred_mask")
        rows.append(
            [
                _get(s, "background"),
                _get(s, "composite"),
                None if mask is None else mask_to_rgb(mask),
                None if pmask is None else mask_to_rgb(pmask),
                None if t is None or rng is None else colorize_depth(t, rng[0], rng[1], cmap),
                None if p is None or rng is None else colorize_depth(p, rng[0], rng[1], cmap),
                None if e is None else _apply_cmap(e[0], e[1], 0.0, error_max, error_cmap),
            ]
        )
    titles = ["background", "composite", "true mask", "pred mask", "true depth", "pred depth", "|error|"]
    pad = 4
    grid, head, scale = _grid(rows, titles, pad, tile_size, [s.get("label") for s in samples])
    bars = [] if rng is None else [("depth", rng[0], rng[1], cmap, unit)]
    if any(e is not None for e in errs):
        bars.append(("|error|", 0.0, error_max, error_cmap, unit))
    return _append_bars(grid, head, pad, scale, bars) if bars else grid


# --- files -------------------------------------------------------------------------------------------
write_atomic = atomic_write_bytes  # one atomic writer for the project (fgdepth.data.codec)


def save_png(path: str | os.PathLike[str], rgb: Any) -> Path:
    """Write an RGB (or gray) image as PNG atomically: a temporary name in the same folder, then
    ``os.replace``, so readers never see a half-written file."""
    img = to_rgb_uint8(rgb)
    ok, buf = cv2.imencode(".png", img[..., ::-1])
    if not ok:
        raise OSError(f"could not encode PNG for {path}")
    return write_atomic(path, buf.tobytes())


def read_metrics_csv(csv_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Columns of a Lightning CSVLogger ``metrics.csv`` as float arrays (empty cells are NaN)."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols: dict[str, np.ndarray] = {}
    for name in rows[0].keys() if rows else []:
        vals = []
        for r in rows:
            try:
                vals.append(float(r.get(name) or "nan"))
            except ValueError:
                vals.append(math.nan)
        cols[name] = np.asarray(vals, np.float64)
    return cols


def _panel_name(column: str) -> str:
    name = column.split("/", 1)[1] if column.split("/", 1)[0] in ("train", "val", "test") else column
    for suffix in ("_step", "_epoch"):
        name = name.removesuffix(suffix)
    return name


def _series(source: Any, x: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if isinstance(source, (str, os.PathLike)):
        cols = read_metrics_csv(source)
        xs = cols.get(x, cols.get("step", np.arange(len(next(iter(cols.values()), [])), dtype=np.float64)))
        out = {}
        for name, ys in cols.items():
            if name in ("step", "epoch", x):
                continue
            keep = np.isfinite(xs) & np.isfinite(ys)
            if keep.any():
                out[name] = (xs[keep], ys[keep])
        return out
    out = {}
    for name, value in source.items():
        if isinstance(value, tuple) and len(value) == 2:
            xs, ys = np.asarray(value[0], np.float64), np.asarray(value[1], np.float64)
        else:
            ys = np.asarray(value, np.float64)
            xs = np.arange(ys.size, dtype=np.float64)
        keep = np.isfinite(xs) & np.isfinite(ys)
        if keep.any():
            out[name] = (xs[keep], ys[keep])
    return out


def plot_curves(
    source: str | os.PathLike[str] | Mapping[str, Any], out_png: str | os.PathLike[str], x: str = "step"
) -> Path | None:
    """Training curves as a PNG; returns its path, or None (and writes nothing) when there is nothing to plot.

    ``source`` is a Lightning CSVLogger ``metrics.csv`` (sparse rows, empty cells skipped; x is the ``x``
    column, default ``step``) or a dict ``name -> ys`` or ``name -> (xs, ys)``. Series that differ only by a
    ``train/`` / ``val/`` / ``test/`` prefix or a ``_step`` / ``_epoch`` suffix share a panel (so
    ``train/loss_step`` and ``val/loss`` are drawn together).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = _series(source, x)
    if not series:
        return None
    panels: dict[str, list[str]] = {}
    for name in series:
        panels.setdefault(_panel_name(name), []).append(name)
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.2 * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for i, (panel, names) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for name in names:
            xs, ys = series[name]
            ax.plot(xs, ys, marker="o" if xs.size <= 30 else None, markersize=3, linewidth=1.2, label=name)
        ax.set_title(panel)
        ax.set_xlabel(x if isinstance(source, (str, os.PathLike)) else "index")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_atomic(out_png, buf.getvalue())
