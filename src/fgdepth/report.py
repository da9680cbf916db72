"""A self-contained HTML report of an evaluation: metrics (model vs baseline), picture grids, curves, config.

``write_report`` writes ``report.html`` and its PNGs side by side in one folder; the page refers to them by
relative file names only and loads nothing from the network (inline CSS, no scripts, no web fonts), so the
folder can be zipped, mailed or opened offline.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fgdepth.metrics import LOWER_IS_BETTER
from fgdepth.viz import plot_curves, save_png, write_atomic

REPORT_NAME = "report.html"
CURVES_NAME = "curves.png"
BASELINE_PREFIX = "baseline_"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1400px;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums;font-family:monospace}
td.better{font-weight:bold;background:#eef8ee}
img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
"""


def select_good_median_worst(
    per_sample: Sequence[tuple[Hashable, float]], n: int, higher_is_better: bool = True
) -> dict[str, list[Hashable]]:
    """Pick ``n`` best, ``n`` around the median and ``n`` worst samples by score (e.g. per-image IoU).

    Returns ``{"good": [...], "median": [...], "worst": [...]}``: ``good`` best first, ``worst`` worst first,
    ``median`` the ``n`` samples centred on the median rank. NaN scores are ignored. With fewer than ``3 n``
    samples the lists overlap (each list is still as long as possible, at most ``n``).
    """
    scored = [(k, float(s)) for k, s in per_sample if not math.isnan(float(s))]
    ranked = sorted(scored, key=lambda ks: ks[1], reverse=higher_is_better)  # best first, stable
    keys = [k for k, _ in ranked]
    n = max(0, min(n, len(keys)))
    start = max(0, min(len(keys) - n, (len(keys) - n) // 2))
    return {"good": keys[:n], "median": keys[start : start + n], "worst": keys[::-1][:n]}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "-"
        if v.is_integer() and abs(v) < 1e9:
            return str(int(v))
        return f"{v:.4g}" if abs(v) >= 1000 or abs(v) < 1e-3 else f"{v:.4f}"
    return str(value)


def _split_baseline(
    metrics: Mapping[str, float], baseline: Mapping[str, float] | None
) -> tuple[dict[str, float], dict[str, float]]:
    """Model metrics and baseline metrics, both keyed without the ``baseline_`` prefix."""
    model = {k: v for k, v in metrics.items() if not k.startswith(BASELINE_PREFIX)}
    base = {k.removeprefix(BASELINE_PREFIX): v for k, v in metrics.items() if k.startswith(BASELINE_PREFIX)}
    for k, v in (baseline or {}).items():
        base[k.removeprefix(BASELINE_PREFIX)] = v
    return model, base


def _better(key: str, a: Any, b: Any) -> int:
    """1 if a is better, -1 if b is, 0 if equal or not comparable."""
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return 0
    if math.isnan(fa) or math.isnan(fb) or fa == fb or key.startswith("num_"):
        return 0
    lower = key in LOWER_IS_BETTER
    return 1 if (fa < fb) == lower else -1


def _metrics_table(metrics: Mapping[str, float], baseline: Mapping[str, float] | None) -> str:
    model, base = _split_baseline(metrics, baseline)
    keys = list(model) + [k for k in base if k not in model]
    has_base = bool(base)
    head = "<tr><th>metric</th><th>model</th>" + ("<th>baseline</th>" if has_base else "") + "</tr>"
    rows = [head]
    for k in keys:
        m, b = model.get(k), base.get(k)
        win = _better(k, m, b) if has_base else 0
        arrow = " &darr;" if k in LOWER_IS_BETTER else ("" if k.startswith("num_") else " &uarr;")
        cells = [f"<td>{html.escape(k)}{arrow}</td>"]
        cells.append(f'<td class="num{" better" if win > 0 else ""}">{html.escape(_fmt(m))}</td>')
        if has_base:
            cells.append(f'<td class="num{" better" if win < 0 else ""}">{html.escape(_fmt(b))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _extra_html(extra: Mapping[str, Any]) -> str:
    rows = []
    for k, v in extra.items():
        if isinstance(v, (Mapping, list, tuple)):
            text = json.dumps(v, indent=2, default=str, sort_keys=False)
            cell = f"<pre>{html.escape(text)}</pre>"
        else:
            cell = html.escape(_fmt(v))
        rows.append(f"<tr><td>{html.escape(str(k))}</td><td>{cell}</td></tr>")
    return "<table>\n<tr><th>setting</th><th>value</th></tr>\n" + "\n".join(rows) + "\n</table>"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") or "grid"


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    metrics: Mapping[str, float],
    baseline: Mapping[str, float] | None = None,
    grids: Mapping[str, np.ndarray] | None = None,
    curves_csv: str | os.PathLike[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` with ``grid_<name>.png`` and ``curves.png`` beside it; return its path.

    Args:
        title: page title.
        metrics: the model's flat metric dict; keys starting with ``baseline_`` go to the baseline column.
        baseline: the baseline's metric dict (keys with or without ``baseline_``), shown beside the model's;
            the better value of each row is highlighted (arrows mark the direction of better).
        grids: named pictures (e.g. ``good``, ``median``, ``worst`` from :func:`fgdepth.viz.prediction_grid`),
            shown in the given order.
        curves_csv: a Lightning ``metrics.csv``; drawn with :func:`fgdepth.viz.plot_curves` if it exists and
            holds data, otherwise the section says why it is missing.
        extra: run configuration (checkpoint, dataset, split, settings...); nested values shown as JSON.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">generated {_dt.datetime.now().isoformat(timespec="seconds")}</p>',
        "<h2>Metrics</h2>",
        _metrics_table(metrics, baseline),
    ]
    if grids:
        parts.append("<h2>Samples</h2>")
        used: set[str] = set()
        for name, image in grids.items():
            fname = f"grid_{_slug(name)}.png"
            i = 2
            while fname in used:
                fname, i = f"grid_{_slug(name)}_{i}.png", i + 1
            used.add(fname)
            save_png(out / fname, image)
            parts.append(
                f"<figure><figcaption>{html.escape(str(name))}</figcaption>"
                f'<img src="{html.escape(fname)}" alt="{html.escape(str(name))}"></figure>'
            )
    if curves_csv is not None:
        parts.append("<h2>Training curves</h2>")
        png = None
        if Path(curves_csv).is_file():
            png = plot_curves(curves_csv, out / CURVES_NAME)
        if png is not None:
            parts.append(f'<img src="{CURVES_NAME}" alt="training curves">')
        else:
            parts.append(f"<p>No curves: {html.escape(str(curves_csv))} is missing or empty.</p>")
    if extra:
        parts += ["<h2>Run configuration</h2>", _extra_html(extra)]
    parts.append("</body></html>\n")
    return write_atomic(out / REPORT_NAME, "\n".join(parts).encode("utf-8"))


# --- a training run's report -------------------------------------------------------------------------
def _run_checkpoint(run: Path, summary: Mapping[str, Any]) -> Path:
    """The run's best checkpoint (``checkpoints/best.ckpt``, else the recorded one, ``last.ckpt``, the
    exported ``model.safetensors``)."""
    candidates = [run / "checkpoints" / "best.ckpt"]
    if summary.get("best_checkpoint"):
        candidates.append(Path(summary["best_checkpoint"]))
    candidates += [run / "checkpoints" / "last.ckpt", run / "model.safetensors"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{run}: no checkpoint (looked for {', '.join(str(c) for c in candidates)})")


def _checkpoint_train_config(run: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The training config in the run's Lightning checkpoint (``hyper_parameters["train_config"]``), {} if none."""
    import torch

    try:
        path = _run_checkpoint(run, summary)
        saved = torch.load(path, map_location="cpu", weights_only=True) if path.suffix == ".ckpt" else {}
    except (FileNotFoundError, RuntimeError, ValueError, OSError):  # no checkpoint, or not a Lightning one
        return {}
    return dict((saved.get("hyper_parameters") or {}).get("train_config") or {})


def _grid_samples(
    kept: Mapping[Hashable, Mapping[str, Any]], keys: Sequence[Hashable], rows: Mapping
) -> list:
    out = []
    for k in keys:
        s, r = kept[k], rows[k]
        label = f"{k}\nIoU {r['mask_iou']:.3f}"
        if not math.isnan(r.get("depth_abs_rel", math.nan)):
            label += f"\nAbsRel {r['depth_abs_rel']:.3f}"
        out.append({**s, "label": label})
    return out


def _tile_size(shape: tuple[int, ...], lo: int = 160, hi: int = 256) -> tuple[int, int]:
    """Grid tile (h, w): the sample's aspect, its height clamped to [lo, hi] so small images stay legible."""
    h, w = shape[:2]
    th = min(max(h, lo), hi)
    return th, max(1, round(w * th / h))


def make_report(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    n: int = 4,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "cpu",
) -> Path:
    """Evaluate a training run's best checkpoint and write ``RUN/report/report.html``; return its path.

    The data default to the run's dataset (``RUN/metrics.json`` ``config.data``) and its test selection; the
    page shows the metrics against the baseline, picture grids of the ``n`` best, ``n`` median and ``n`` worst
    samples by IoU, the training curves (``RUN/logs/metrics.csv``) and the run configuration.
    """
    from fgdepth.evaluate import dataset_info, evaluate_samples, iter_samples, resolve_align, summarize
    from fgdepth.predict import Predictor
    from fgdepth.viz import depth_unit, prediction_grid

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder")
    summary_path = run / "metrics.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    # a run killed before it wrote metrics.json: its checkpoint records the same training config
    config = summary.get("config") or _checkpoint_train_config(run, summary)
    data = data if data is not None else config.get("data")
    if not data:
        # the checkpoint's absence is the first thing to fix; it names what it looked for
        checkpoint = _run_checkpoint(run, summary)
        raise ValueError(
            f"{run}: no --data given, and neither {summary_path.name} nor {checkpoint} names the data"
        )
    checkpoint = _run_checkpoint(run, summary)
    info = dataset_info(data)
    selection = summary.get("test_selection") or config.get("test_selection") or "test"
    trained_on_it = bool(config.get("data")) and Path(config["data"]).resolve() == Path(data).resolve()
    # a folder without a manifest is split as training split it (its test part) if this run trained on it
    selection = selection if info["fgdepth"] or trained_on_it else "all"
    align = resolve_align("auto", info["depth_kind"])
    predictor = Predictor.load(checkpoint, batch_size=batch_size, device=device, default_size=info["size"])
    rows, _ = evaluate_samples(predictor, iter_samples(data, selection, limit), align)
    if not rows:
        raise ValueError(f"{data}: the selection {selection!r} has no samples")
    result = summarize(rows)
    picks = select_good_median_worst([(r["key"], r["mask_iou"]) for r in rows], n)
    wanted = {k for keys in picks.values() for k in keys}
    _, kept = evaluate_samples(predictor, (s for s in iter_samples(data, selection, limit) if s["key"] in wanted),
                               align, keep=wanted)  # fmt: skip
    by_key = {r["key"]: r for r in rows}
    grids = {
        f"{name} ({len(keys)} by IoU)": prediction_grid(
            _grid_samples(kept, keys, by_key),
            tile_size=_tile_size(kept[keys[0]]["mask"].shape),
            unit=depth_unit(info["depth_kind"]),
        )
        for name, keys in picks.items()
        if keys
    }
    extra = {
        "run": str(run),
        "checkpoint": str(checkpoint),
        "data": str(data),
        "selection": selection,
        "depth_kind": info["depth_kind"],
        "depth_align": align,
        "model_input_size": predictor.size,
        "num_depth_samples": result["num_depth_samples"],
        **{
            k: summary[k]
            for k in ("train_seconds", "global_step", "train_samples", "precision")
            if k in summary
        },
        "training_test_metrics": summary.get("test"),
        "train_config": config or None,
    }
    return write_report(
        run / "report",
        title=f"fgdepth report: {'/'.join(run.resolve().parts[-2:])}",  # "demo/run", not just "run"
        metrics=result["all"],
        baseline=result["baseline"],
        grids=grids,
        curves_csv=run / "logs" / "metrics.csv",
        extra={k: v for k, v in extra.items() if v is not None},
    )
