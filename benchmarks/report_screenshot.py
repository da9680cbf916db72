"""Render an fgdepth report in headless Chromium and save a screenshot, to check that it shows its images and
tables offline (the page must load nothing from the network).

``TARGET`` is a ``report.html``, a folder holding one, or a training run (``RUN/report/report.html`` is made with
``fgdepth.report.make_report`` if missing). Chromium is ``--chromium`` or ``/usr/bin/chromium`` (Debian:
``apt-get install -y chromium``); it runs with a throw-away profile and no network services.

Usage::

    python benchmarks/report_screenshot.py RUN_OR_REPORT [--out report.png] [--size 1400,2400]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser")


def find_chromium(explicit: str | None = None) -> str:
    for name in (explicit,) if explicit else CHROMIUM_CANDIDATES:
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit("no Chromium found; install it (Debian: apt-get install -y chromium) or pass --chromium")


def report_path(target: Path) -> Path:
    if target.is_file():
        return target
    if (target / "report.html").is_file():
        return target / "report.html"
    if (target / "report" / "report.html").is_file():
        return target / "report" / "report.html"
    from fgdepth.report import make_report

    return make_report(target)


def screenshot(html: Path, out: Path, chromium: str, window: str = "1400,2400", timeout: float = 120) -> Path:
    """Headless Chromium screenshot of ``html`` to ``out`` (PNG)."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fgdepth-chromium-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={window}",
            html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", type=Path, help="report.html, its folder, or a training run folder")
    ap.add_argument("--out", type=Path, default=Path("report.png"), help="PNG to write")
    ap.add_argument("--size", default="1400,2400", help="window WIDTH,HEIGHT in CSS pixels")
    ap.add_argument("--chromium", default=None, help="Chromium binary")
    args = ap.parse_args(argv)
    html = report_path(args.target)
    png = screenshot(html, args.out, find_chromium(args.chromium), args.size)
    print(f"{html} -> {png}")


if __name__ == "__main__":
    main(sys.argv[1:])
