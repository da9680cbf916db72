"""The DualUNet model: config, presets and checkpoints."""

from __future__ import annotations

from fgdepth.model.checkpoint import load_model, save_model
from fgdepth.model.dual_unet import DualUNet, DualUNetConfig, count_parameters
from fgdepth.model.registry import create_model, list_models, model_config

__all__ = [
    "DualUNet",
    "DualUNetConfig",
    "count_parameters",
    "create_model",
    "list_models",
    "load_model",
    "model_config",
    "save_model",
]
