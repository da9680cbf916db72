"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on the path)."""

from __future__ import annotations

import platform

import torch


def describe_device(device: str) -> str:
    """What a figure was measured on: the GPU's name, or the CPU's threads and architecture."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
