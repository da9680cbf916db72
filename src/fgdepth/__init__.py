"""fgdepth: foreground masks and depth from a static camera that knows its empty scene."""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(path):  # noqa: ANN001, ANN201 - thin lazy re-export, typed at its source
    """Rebuild a trained model from a checkpoint (``.ckpt``, ``.pt`` or ``.safetensors``); see fgdepth.model."""
    from fgdepth.model.checkpoint import load_model as _load_model

    return _load_model(path)


__all__ = ["__version__", "load_model"]
