"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on the path)."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable

import torch


def describe_device(device: str) -> str:
    """What a figure was measured on: the GPU's name, or the CPU's threads and architecture."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"


def count(text: str) -> int:
    """argparse type of a count or a size (samples, steps, repeats, batch, pixels): a whole number >= 1. Zero or a
    negative one ended in a ZeroDivisionError, IndexError or islice traceback far from the option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def counts(text: str) -> list[int]:
    """argparse type of a comma-separated list of counts (``--workers 1,2``)."""
    return [count(part) for part in text.split(",")]


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's ``main``: an argument the library refuses (a missing checkpoint or dataset, an unknown preset
    or selection) ends in one line naming it, exit status 2, as the ``fgdepth`` commands do, not a traceback."""
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
