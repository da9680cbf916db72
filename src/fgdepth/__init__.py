"""fgdepth: foreground masks and depth from a static camera that knows its empty scene."""

from __future__ import annotations

__version__ = "0.1.0"


def load_model(path, **options):  # noqa: ANN001, ANN003, ANN201 - thin lazy re-export, typed at its source
    """Rebuild a trained model from a checkpoint (``.ckpt``, ``.pt`` or ``.safetensors``); ``options`` (``strict``,
    ``average``, ``mask_scale``) as :func:`fgdepth.model.checkpoint.load_model`'s, which this forwards to."""
    from fgdepth.model.checkpoint import load_model as _load_model

    return _load_model(path, **options)


__all__ = ["__version__", "load_model"]
