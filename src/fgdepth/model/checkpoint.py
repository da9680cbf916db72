"""Save and rebuild DualUNets: the config always travels with the weights.

Accepted by :func:`load_model`:

* ``.safetensors`` written by :func:`save_model` (config JSON in the metadata under ``model_config``);
* a ``torch.save``-d dict ``{"model_config": dict, "state_dict": ...}`` (any suffix, e.g. ``.pt``), see
  :func:`checkpoint_dict`;
* a Lightning ``.ckpt`` whose ``hyper_parameters["model_config"]`` is the config dict and whose ``state_dict``
  keys are prefixed ``model.`` (other keys, e.g. a loss's parameters, are ignored). A run with an average of its
  weights (``TrainConfig.ema_decay``) also stores them, prefixed ``ema_model.``: those are loaded unless
  ``average=False`` asks for the raw training weights.

``_orig_mod.`` (from ``torch.compile``) is stripped everywhere. Pickles are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fgdepth.model.dual_unet import DualUNet, DualUNetConfig

FORMAT_TAG = "fgdepth.DualUNet"
CONFIG_KEY = "model_config"


def _unwrap(model: nn.Module) -> DualUNet:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if not isinstance(model, DualUNet):
        raise TypeError(f"expected a DualUNet, got {type(model).__name__}")
    return model


EMA_PREFIX = "ema_model."


def clean_state_dict(state_dict: dict[str, torch.Tensor], average: bool = True) -> dict[str, torch.Tensor]:
    """The network's entries of a Lightning state dict: ``ema_model.`` (the weights' moving average) if present
    and ``average``, else ``model.`` (if any); the prefix and ``_orig_mod.`` stripped."""
    prefix = EMA_PREFIX if average and any(k.startswith(EMA_PREFIX) for k in state_dict) else "model."
    if any(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return {k.replace("_orig_mod.", ""): v for k, v in state_dict.items()}


def checkpoint_dict(model: nn.Module) -> dict[str, Any]:
    """``{"model_config": dict, "state_dict": dict}``: what ``torch.save`` should store for :func:`load_model`."""
    model = _unwrap(model)
    return {CONFIG_KEY: model.config.to_dict(), "state_dict": clean_state_dict(model.state_dict())}


def save_model(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``) with its config JSON in the metadata; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_model writes .safetensors files, got {path}")
    model = _unwrap(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in clean_state_dict(model.state_dict()).items()}
    metadata = {"format": FORMAT_TAG, CONFIG_KEY: json.dumps(model.config.to_dict())}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:  # noqa: BLE001 - SafetensorError (truncated, not safetensors) names no file
        raise ValueError(f"{path} is not a fgdepth checkpoint (safetensors cannot read it: {e})") from e
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path} is not a fgdepth checkpoint: its metadata has no {CONFIG_KEY!r}")
    return json.loads(meta[CONFIG_KEY]), state


def _read_pickle(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise ValueError(
            f"{path} is not a fgdepth checkpoint (torch.load weights_only=True failed: {e})"
        ) from e
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise ValueError(f"{path} is not a fgdepth checkpoint: expected a dict with 'state_dict'")
    config = obj.get(CONFIG_KEY)
    if config is None:  # Lightning: save_hyperparameters() puts it under hyper_parameters
        config = (obj.get("hyper_parameters") or {}).get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise ValueError(
            f"{path} is not a fgdepth checkpoint: no {CONFIG_KEY!r} dict at the top level or in "
            f"'hyper_parameters' (top-level keys: {sorted(obj)})"
        )
    return dict(config), obj["state_dict"]


def load_model(
    path: str | Path, strict: bool = True, average: bool = True, mask_scale: float | None = None
) -> DualUNet:
    """Rebuild a DualUNet from a ``.safetensors``, ``.pt`` or Lightning ``.ckpt`` file, on CPU, in eval mode.

    ``average``: a ``.ckpt`` of a run that kept a moving average of its weights gives those (what it validated
    and tested); False gives the raw weights of its last optimiser step.
    ``mask_scale``: run the mask network on whole inputs enlarged by this factor in place of the checkpoint's own
    (:class:`DualUNetConfig`; an inference-time choice, the weights are the same): lower is faster, higher gives
    small people finer outlines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    config, state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pickle(path)
    if mask_scale is not None:
        config = {**config, "mask_scale": float(mask_scale)}
    model = DualUNet(DualUNetConfig.from_dict(config))
    try:
        model.load_state_dict(clean_state_dict(state, average=average), strict=strict)
    except RuntimeError as e:  # missing / unexpected keys, other shapes: hundreds of lines naming no file
        detail = " ".join(str(e).split())[:300]
        raise ValueError(f"{path}: its weights do not fit its model config ({detail} ...)") from e
    return model.eval()
