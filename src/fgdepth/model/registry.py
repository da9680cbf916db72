"""Named DualUNet presets: ``create_model(name, **overrides)`` and ``list_models()`` (timm-style).

==========  ========  ===============================================================================
name        params    meant for
==========  ========  ===============================================================================
``tiny``    ~0.74 M   CPU training at 96 px (>= 60 images/s on 2 cores) and CPU / ONNX inference
``small``   ~0.72 M   CPU inference at 192 px, short GPU runs
``base``    ~3.5 M    GPU training at the reference 192 px in / 96 px out
==========  ========  ===============================================================================

All presets use ``output_stride = 2`` (the reference 192 -> 96); override it with ``output_stride=1`` or ``4``.
``tiny`` gives depth to a branch of its own (the same widths, no refinement) that sees the whole image at 0.6 of
the input size and predicts two layers, the room behind the people and the people, that the main network's mask
joins at full resolution; ``small`` and ``base`` read both heads from one network (``depth_branch=None``).
Overrides apply to the main network: change the branch with ``depth_branch={...}`` (DualUNetConfig fields), drop
it with ``None``.
Every preset has a canonical camera (``canonical_hfov=75``): pass ``focal=`` to ``forward`` for metric depth through
another lens, or ``canonical_hfov=None`` for a model that guesses the lens itself.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fgdepth.model.dual_unet import DualUNet, DualUNetConfig

# Every preset predicts log-depth (depth_activation="exp"): with the log losses (SILog) a softplus head could stall
# at a constant depth (a one-batch overfit stayed at 3x its first loss); on the procedural world both reach the
# same quality (tiny, 6 CPU min: test AbsRel 0.209 / delta1 0.641 with exp, 0.213 / 0.649 with softplus).
_LOG_DEPTH = {"depth_activation": "exp"}
# Every preset predicts depth as through a canonical camera of 75 degrees (fgdepth.intrinsics; Metric3D), the middle
# of the procedural world's 60-90 degree lenses, and takes each image's real focal length where it is known: tiny,
# 6 CPU min, test AbsRel 0.193 -> 0.156, delta1 0.662 -> 0.801; on 1,000 samples of an unseen world 0.188 -> 0.165,
# 0.697 -> 0.785. Where the camera is unknown, its field of view is assumed across the image's width
# (docs/experiments.md, S1; Predictor.focal_of).
_CANONICAL_CAMERA = {"canonical_hfov": 75.0}

_PRESETS: dict[str, dict[str, Any]] = {
    # the DualUNetConfig defaults + full-resolution refinement (thin limbs) + concatenation: in a 2-minute CPU
    # budget on the demo data, concat reached test IoU 0.775 (268 steps) vs both 0.753 (213) and diff 0.726
    # (264); depth AbsRel 0.275 / 0.267 / 0.258 (benchmarks: see README "Fusion")
    #
    # Depth in a branch (tiny, 6 CPU min, 96 px crops of 160 px images, the branch on the whole image at 96 px):
    # test IoU 0.909, AbsRel 0.213, delta1 0.688 against 0.897-0.904, 0.198-0.215, 0.62-0.64 with one network; the
    # branch's own refinement cost 7 ms more per 192 px pair in onnxruntime for no gain (docs/experiments.md).
    #
    # The branch's depth is layered (the room behind, the people), composed by the main network's full-resolution
    # mask: tiny, 6 CPU min, test delta1 0.820 -> 0.857 (on the people 0.55 -> 0.67), AbsRel 0.147 -> 0.136.
    #
    # The mask network sees whole inputs enlarged 1.4x (trained on crops at the input's scale): test IoU 0.901 ->
    # 0.911, 1,000 unseen samples 0.885 -> 0.893, for 2x its inference compute. 1.6x gained 0.001-0.003 more
    # (0.913 / 0.896 on the demo's model) at 1.3x the latency: onnxruntime, 192 px, batch 1, 18.5-18.9 ms
    # against 13.9-14.3 side by side (docs/experiments.md, Y). ``--mask-scale 1.6`` at inference still gives
    # it, and is worth 0.01 IoU for a model of a 224 px world (0.941 -> 0.952, one 1-hour model).
    "tiny": {
        "refine_channels": 8,
        "fusion": "concat",
        **_LOG_DEPTH,
        **_CANONICAL_CAMERA,
        "depth_branch": {"fusion": "concat", **_LOG_DEPTH, "layered_depth": True},
        "depth_scale": 0.6,
        "mask_scale": 1.4,
    },
    "small": {
        "stem_channels": 24,
        "encoder_channels": (32, 64, 112, 160),
        "blocks_per_stage": (1, 2, 3, 2),
        "decoder_channels": (128, 80, 48, 32),
        **_LOG_DEPTH,
        **_CANONICAL_CAMERA,
    },
    "base": {
        "stem_channels": 32,
        "encoder_channels": (48, 96, 192, 320),
        "blocks_per_stage": (2, 3, 4, 2),
        "decoder_channels": (256, 128, 64, 48),
        "expand_ratio": 4.0,
        **_LOG_DEPTH,
        **_CANONICAL_CAMERA,
    },
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, smallest first."""
    return list(_PRESETS)


def model_config(name: str, **overrides: Any) -> DualUNetConfig:
    """The config of preset ``name`` with ``overrides`` applied (any :class:`DualUNetConfig` field)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    d = asdict(DualUNetConfig())
    d.update(_PRESETS[name])
    d.update(overrides)
    return DualUNetConfig.from_dict(d)


def create_model(name: str, **overrides: Any) -> DualUNet:
    """Build preset ``name`` (see :func:`list_models`), e.g. ``create_model("tiny", fusion="diff")``."""
    return DualUNet(model_config(name, **overrides))
