"""DualUNet: two stems (background, composite), fused features, a shared encoder, a U-Net decoder, two heads.

Data flow for inputs of size (H, W) and ``s = output_stride``::

    background -> normalise -> stem_bg --+
                                         +-> fuse -> 1x1 proj -> f0 (stride s) --------------------- skip 0
    composite  -> normalise -> stem_comp-+                           |
                                            stage 1 (stride 2s) ---- skip 1
                                            ...
                                            stage N (stride 2^N s) -> decoder: upsample to each skip's exact size,
                                                                      concat, conv ... -> level 0 -> heads

The stems run at the output resolution, so the fused (difference) features that reach the last decoder level are
as sharp as the outputs themselves (thin limbs). Both outputs have the exact size of skip 0:
``h = ceil(H / s)``, ``w = ceil(W / s)`` (every strided conv is 3x3, padding 1), e.g. 192x192 -> 96x96 for s = 2
and 97x131 -> 49x66.

With ``depth_branch`` set, the depth head moves to a second DualUNet that sees the whole input downscaled by
``depth_scale``; its depth is upsampled to the mask's size::

    background, composite -> this network -------------------------------> mask_logits
                          -> box filter + resize x depth_scale -> branch -> depth -> upsample to the mask's size

Training feeds the two networks different views of a sample (crops at the inference scale to this network, the
whole image to the branch: :mod:`fgdepth.train`); inference runs ``forward`` on the whole image.

With ``layered_depth``, the network that owns the depth head predicts two layers, the scene behind the people and
the people, and depth is the scene layer where the mask is off and the people layer where it is on
(:func:`compose_layers`). A branch's coarse layers are composed with the main network's full-resolution mask, so a
person's depth edge is as sharp as the mask.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from fgdepth.data.augment import smooth_before_downscale
from fgdepth.data.schema import DEPTH_LAYERS, DEPTH_PRED, MASK_LOGITS
from fgdepth.intrinsics import depth_at_focal, focal_from_hfov
from fgdepth.model.blocks import Act, ConvNormAct, Norm, SepConv, make_stage

Fusion = Literal["concat", "diff", "both"]
FUSIONS: tuple[str, ...] = ("concat", "diff", "both")
DepthActivation = Literal["softplus", "exp"]
DepthFeatures = Literal["refined", "decoder"]
# exp(9) = 8 km: keeps a diverging log-depth from overflowing float32 (and bf16) before the loss sees it
_MAX_LOG_DEPTH = 9.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DualUNetConfig:
    """Everything needed to rebuild a :class:`DualUNet`; stored in every checkpoint.

    The defaults are the ``tiny`` preset's widths without its refinement, concatenation and log-depth head; see
    :mod:`fgdepth.model.registry` for the named presets.
    """

    # Width of each stem and of the fused stride-s features. Stems run at output resolution: keep them thin.
    stem_channels: int = 16
    # Width of each encoder stage; stage i has stride s * 2^(i+1). Four stages see a 96 px person whole.
    encoder_channels: tuple[int, ...] = (24, 48, 80, 128)
    # Blocks per stage; the deeper (low-resolution) stages are cheap, so depth goes there.
    blocks_per_stage: tuple[int, ...] = (1, 2, 2, 2)
    # Block kind per stage: "fused" (dense 3x3) is faster at high resolution and few channels,
    # "inverted" (MobileNetV2, depthwise) is cheaper at low resolution and many channels.
    block_kinds: tuple[str, ...] = ("fused", "fused", "inverted", "inverted")
    # Expansion ratio of the blocks (hidden width = ratio * input width).
    expand_ratio: float = 3.0
    # Decoder width per level, deepest first; one per encoder stage (the last one is at output resolution).
    # 16, not 24, at the last level: BatchNorm's forward + backward on channels_last (32, 24, 48, 48) bf16 took
    # 7.4 ms on an Intel Xeon with AMX, 1.6 ms for 16 channels; tiny's training step 250-310 -> 215-250 ms there
    # (AMD EPYC: within noise), 20-27 % more steps in 6 CPU minutes, test AbsRel 0.122 vs 0.129-0.132
    # (docs/experiments.md, session 18).
    decoder_channels: tuple[int, ...] = (96, 64, 32, 16)
    # How the two stems' features are fused: "concat" [bg, comp]; "diff" comp - bg (signed, cheapest, but
    # scene depth must then come from the difference alone); "both" [bg, comp, |comp - bg|].
    fusion: Fusion = "both"
    # Outputs are at input / output_stride (1, 2 or 4). The reference maps 192 px to 96 px: 2.
    output_stride: int = 2
    # BatchNorm is fastest and folds into convs at export; "group" for tiny per-device batches.
    norm: Norm = "batch"
    # ReLU is the fastest on CPU and exports everywhere.
    act: Act = "relu"
    # The model normalises its [0, 1] inputs itself, so a checkpoint is self-describing.
    input_mean: tuple[float, float, float] = IMAGENET_MEAN
    input_std: tuple[float, float, float] = IMAGENET_STD
    # None: depth = softplus(x) or exp(x) (see depth_activation), unbounded. A float: max_depth * sigmoid(x).
    max_depth: float | None = None
    # "exp" predicts log-depth: a step on x changes depth by the same ratio near and far (softplus is linear above
    # ~2 m). Every preset sets "exp" (see fgdepth.model.registry); the field's default stays "softplus" so that
    # checkpoints saved before the field existed load as they were trained.
    depth_activation: DepthActivation = "softplus"
    # Where the depth head reads: "refined" (the full-resolution refinement, when there is one) or "decoder" (the
    # decoder's output at stride s, upsampled bilinearly), which leaves the refinement to the mask: tiny, 6 CPU
    # min, both "exp": test IoU 0.903 vs 0.891, but depth AbsRel 0.270 vs 0.238.
    depth_features: DepthFeatures = "refined"
    # The depth head's bias starts at this value (metres): typical indoor distance, speeds the first epochs.
    init_depth: float = 3.0
    # > 0: a full-resolution refinement guided by [bg, comp, |comp - bg|] before the heads, so outputs are at the
    # input resolution whatever output_stride is. Thin limbs: a 48 px mask caps IoU near 0.89 on 160 px truth,
    # a 96 px one near 0.98 (measured on the procedural test split); running the stems at stride 1 costs 3x.
    refine_channels: int = 0
    # The mask head's bias starts at logit(prior): people cover a few % of the image; starting at 0.5 wastes the
    # first hundreds of steps unlearning it.
    mask_prior: float = 0.05
    # None: both heads read this network. A dict of DualUNetConfig fields: depth comes from a second network of
    # that config, which sees the whole input downscaled by ``depth_scale``, and is upsampled to the mask's size.
    # Depth needs the whole room (scale, layout), the mask needs fine detail: trained on crops at the inference
    # scale, one network got the mask and lost depth; trained on whole small images, the reverse
    # (docs/experiments.md, runs A-S).
    depth_branch: dict[str, Any] | None = None
    # The depth branch's input size / this network's input size (0.6: 160 px in, depth from a 96 px view).
    depth_scale: float = 0.6
    # forward() runs this network on the input enlarged by mask_scale (bilinear) and resizes its outputs back to
    # the input's size; a depth branch still sees the input at depth_scale; training crops stay at the input's
    # scale (fgdepth.train.model_step). The mask's errors are its outline on small people, and a network outlined
    # them best at about 1.6x the scale it was trained at, its logits then averaged back down: tiny, 6 CPU min,
    # test IoU 0.901 at 1.0, 0.914 at 1.6, 0.913 at 2.0; trained on crops enlarged 1.6x too, the best scale moved
    # to 2-3x and was no better (docs/experiments.md, V). Costs mask_scale^2 times this network's inference
    # compute.
    mask_scale: float = 1.0
    # None: depth as the training data's cameras showed it. A horizontal field of view (degrees, of a square image):
    # the model predicts depth as through this canonical camera, and ``forward(..., focal=)`` turns it into depth
    # through each sample's own camera (fgdepth.intrinsics; Metric3D). Training then needs the cameras' focal
    # lengths (the procedural world records them); samples without one are taken as seen by the canonical camera.
    canonical_hfov: float | None = None
    # False: one depth map. True: two, the scene behind the people and the people, joined by the mask
    # (compose_layers). Low-resolution depth smears a person into the room behind: on the procedural test split,
    # the true depth through 48 px and back to 160 px keeps delta1 0.99 on the room but 0.78 on the people;
    # composed by the true 160 px mask, 0.996 in all. For a model with a depth_branch, set it in the branch.
    layered_depth: bool = False

    def __post_init__(self) -> None:
        # JSON / YAML give lists; the dataclass holds tuples so configs compare and hash alike.
        for name in ("encoder_channels", "blocks_per_stage", "block_kinds", "decoder_channels"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.depth_branch is not None:
            # stored in full, so a checkpoint does not depend on this version's defaults
            if isinstance(self.depth_branch, DualUNetConfig):
                self.depth_branch = self.depth_branch.to_dict()
            if not isinstance(self.depth_branch, dict):
                raise ValueError(
                    f"depth_branch must be None or a dict of DualUNetConfig fields, got {self.depth_branch!r}"
                )
            branch = DualUNetConfig.from_dict(dict(self.depth_branch))
            if branch.depth_branch is not None:
                raise ValueError("a depth_branch cannot have a depth_branch of its own")
            self.depth_branch = branch.to_dict()
        self.input_mean = tuple(float(v) for v in self.input_mean)  # type: ignore[assignment]
        self.input_std = tuple(float(v) for v in self.input_std)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        n = len(self.encoder_channels)
        if n < 1:
            raise ValueError("encoder_channels needs at least one stage")
        for name in ("blocks_per_stage", "block_kinds", "decoder_channels"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries, encoder_channels has {n}: they must match"
                )
        if self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}; valid: {', '.join(FUSIONS)}")
        if self.output_stride not in (1, 2, 4):
            raise ValueError(f"output_stride must be 1, 2 or 4, got {self.output_stride}")
        if len(self.input_mean) != 3 or len(self.input_std) != 3 or min(self.input_std) <= 0:
            raise ValueError("input_mean and input_std must be 3 values each, std > 0")
        if self.max_depth is not None and not 0 < self.init_depth < self.max_depth:
            raise ValueError(f"init_depth {self.init_depth} must lie in (0, max_depth={self.max_depth})")
        if self.refine_channels < 0:
            raise ValueError(f"refine_channels must be >= 0, got {self.refine_channels}")
        if not 0 < self.mask_prior < 1:
            raise ValueError(f"mask_prior must be in (0, 1), got {self.mask_prior}")
        if self.init_depth <= 0:
            raise ValueError(f"init_depth must be > 0, got {self.init_depth}")
        if self.depth_activation not in ("softplus", "exp"):
            raise ValueError(f"unknown depth_activation {self.depth_activation!r}; valid: softplus, exp")
        if self.depth_features not in ("refined", "decoder"):
            raise ValueError(f"unknown depth_features {self.depth_features!r}; valid: refined, decoder")
        if not 0 < self.depth_scale <= 1:
            raise ValueError(f"depth_scale must be in (0, 1], got {self.depth_scale}")
        if not 0.25 <= self.mask_scale <= 4:
            raise ValueError(f"mask_scale must be in [0.25, 4], got {self.mask_scale}")
        if self.canonical_hfov is not None and not 0 < self.canonical_hfov < 180:
            raise ValueError(f"canonical_hfov must be None or in (0, 180) degrees, got {self.canonical_hfov}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DualUNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise so a config from another model is not silently eaten."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DualUNetConfig fields {unknown}; valid: {sorted(known)}")
        return cls(**d)


class Stem(nn.Module):
    """Per-input stem: log2(s) strided 3x3 convs (or one plain 3x3 when s = 1), then a depthwise-separable conv.

    Shape:
        x: (B, 3, H, W) normalised -> (B, C, ceil(H / s), ceil(W / s))
    """

    def __init__(self, channels: int, stride: int, norm: Norm, act: Act) -> None:
        super().__init__()
        n_down = int(math.log2(stride))
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(max(1, n_down)):
            c_out = channels if i == max(1, n_down) - 1 else max(8, channels // 2)
            layers.append(ConvNormAct(c_in, c_out, 3, 2 if i < n_down else 1, norm=norm, act=act))
            c_in = c_out
        layers.append(SepConv(channels, channels, norm=norm, act=act))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def fuse(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    """Fuse background features ``a`` and composite features ``b``.

    Shape:
        a, b: (B, C, h, w) -> (B, C * k, h, w) with k = 2 ("concat"), 1 ("diff") or 3 ("both")
    """
    if mode == "concat":
        return torch.cat([a, b], dim=1)
    if mode == "diff":
        return b - a
    if mode == "both":
        return torch.cat([a, b, (b - a).abs()], dim=1)
    raise ValueError(f"unknown fusion {mode!r}; valid: {', '.join(FUSIONS)}")


class DualEncoder(nn.Module):
    """Two stems (own weights), fusion, then a shared encoder of strided stages.

    ``out_channels`` lists the width of each returned feature map, highest resolution first (like
    segmentation_models.pytorch, except that level 0 is the fused stem output, not the raw input).

    Shape:
        background, composite: (B, 3, H, W) normalised
        -> list of N + 1 tensors; level i: (B, out_channels[i], ceil(H / (s * 2^i)), ceil(W / (s * 2^i)))
    """

    def __init__(self, cfg: DualUNetConfig) -> None:
        super().__init__()
        c = cfg.stem_channels
        self.fusion = cfg.fusion
        self.stem_background = Stem(c, cfg.output_stride, cfg.norm, cfg.act)
        self.stem_composite = Stem(c, cfg.output_stride, cfg.norm, cfg.act)
        k = {"concat": 2, "diff": 1, "both": 3}[cfg.fusion]
        self.project = ConvNormAct(c * k, c, 1, norm=cfg.norm, act=cfg.act)
        stages = []
        c_in = c
        for c_out, n, kind in zip(cfg.encoder_channels, cfg.blocks_per_stage, cfg.block_kinds):
            stages.append(make_stage(kind, c_in, c_out, n, 2, cfg.expand_ratio, cfg.norm, cfg.act))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.out_channels: tuple[int, ...] = (c, *cfg.encoder_channels)

    def forward(self, background: torch.Tensor, composite: torch.Tensor) -> list[torch.Tensor]:
        x = self.project(fuse(self.stem_background(background), self.stem_composite(composite), self.fusion))
        feats = [x]
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class DecoderBlock(nn.Module):
    """Upsample to the skip's exact size (bilinear), concatenate, 1x1 conv, depthwise-separable 3x3.

    Computed as the 1x1 conv's two parts, ``x``'s at its own resolution, upsampled, plus the skip's: a 1x1 conv
    and bilinear upsampling are both linear, so they commute, and the sum is the conv of the concatenation (same
    weights, equal up to rounding) without upsampling ``C_x`` channels or concatenating at the skip's resolution.

    Shape:
        x: (B, C_x, h, w), skip: (B, C_s, H', W') -> (B, C_out, H', W')
    """

    def __init__(self, c_x: int, c_skip: int, c_out: int, norm: Norm, act: Act) -> None:
        super().__init__()
        self.reduce = ConvNormAct(c_x + c_skip, c_out, 1, norm=norm, act=act)
        self.conv = SepConv(c_out, c_out, norm=norm, act=act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        conv, *norm_act = self.reduce
        c_x = x.shape[1]  # the weight (C_out, C_x + C_s, 1, 1) holds x's channels first, as concatenated
        x = F.conv2d(x, conv.weight[:, :c_x])
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = x + F.conv2d(skip, conv.weight[:, c_x:])
        for layer in norm_act:
            x = layer(x)
        return self.conv(x)


class UNetDecoder(nn.Module):
    """U-Net decoder over the encoder's features, from the deepest to level 0.

    Shape:
        feats: as returned by :class:`DualEncoder` -> (B, decoder_channels[-1], h0, w0), the size of level 0
    """

    def __init__(
        self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...], norm: Norm, act: Act
    ) -> None:
        super().__init__()
        skips = encoder_channels[:-1][::-1]  # deepest skip first
        c_x = encoder_channels[-1]
        blocks = []
        for c_skip, c_out in zip(skips, decoder_channels):
            blocks.append(DecoderBlock(c_x, c_skip, c_out, norm, act))
            c_x = c_out
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = c_x

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for block, skip in zip(self.blocks, feats[-2::-1]):
            x = block(x, skip)
        return x


class Head(nn.Sequential):
    """Depthwise 3x3 + 1x1 to ``c_out`` raw channels (logits or pre-activation depth).

    Shape:
        x: (B, C, h, w) -> (B, c_out, h, w)
    """

    def __init__(self, c_in: int, norm: Norm, act: Act, bias_init: float = 0.0, c_out: int = 1) -> None:
        final = nn.Conv2d(c_in, c_out, 1)
        nn.init.normal_(final.weight, std=1e-3)
        nn.init.constant_(final.bias, bias_init)
        super().__init__(ConvNormAct(c_in, c_in, 3, groups=c_in, norm=norm, act=act), final)


class DualUNet(nn.Module):
    """Foreground mask and scene depth from a background image and the same view with people.

    ``forward(background, composite)`` returns ``{"mask_logits", "depth"}`` (keys in :mod:`fgdepth.data.schema`).

    Shape:
        background: (B, 3, H, W) float32 in [0, 1], the empty scene
        composite: (B, 3, H, W) float32 in [0, 1], same camera, with people
        mask_logits: (B, 1, h, w) float32 raw logits (sigmoid > 0.5 is foreground)
        depth: (B, 1, h, w) float32 >= 0, metres (or relative units when trained so)
        focal: (B,) optional, each camera's focal length / min(H, W), 0 = unknown (see ``forward``)
        with h = ceil(H / output_stride), w = ceil(W / output_stride) (h, w = H, W with refine_channels > 0).
        Outputs are float32 under autocast too. With a depth branch, depth is the branch's, upsampled to (h, w).
    """

    def __init__(self, config: DualUNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else DualUNetConfig()
        self.config = cfg
        self.encoder = DualEncoder(cfg)
        self.decoder = UNetDecoder(self.encoder.out_channels, cfg.decoder_channels, cfg.norm, cfg.act)
        c = c_depth = self.decoder.out_channels
        if cfg.max_depth is not None:
            p = cfg.init_depth / cfg.max_depth
            depth_bias = math.log(p / (1 - p))  # logit
        elif cfg.depth_activation == "exp":
            depth_bias = math.log(cfg.init_depth)
        else:
            depth_bias = math.log(math.expm1(cfg.init_depth))  # softplus^-1
        self.refine_guide: nn.Module | None = None
        own_depth = cfg.depth_branch is None
        if cfg.refine_channels:
            r = cfg.refine_channels
            self.refine_guide = ConvNormAct(9, r, 3, norm=cfg.norm, act=cfg.act)
            self.refine_fuse = ConvNormAct(c + r, r, 3, norm=cfg.norm, act=cfg.act)
            c = r
            if cfg.depth_features == "refined":
                c_depth = r
        mask_bias = math.log(cfg.mask_prior / (1 - cfg.mask_prior))
        self.mask_head = Head(c, cfg.norm, cfg.act, bias_init=mask_bias)
        n_layers = 2 if cfg.layered_depth else 1
        self.depth_head = (
            Head(c_depth, cfg.norm, cfg.act, bias_init=depth_bias, c_out=n_layers) if own_depth else None
        )
        # Non-persistent: rebuilt from the config, follow .to(device), not duplicated in the state dict.
        self.register_buffer("mean", torch.tensor(cfg.input_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.input_std).view(1, 3, 1, 1), persistent=False)
        self._init_weights()
        # after _init_weights: the branch initialises its own heads
        self.depth_net = None if own_depth else DualUNet(DualUNetConfig.from_dict(cfg.depth_branch))

    def _init_weights(self) -> None:
        heads = [self.mask_head[-1]] + ([self.depth_head[-1]] if self.depth_head is not None else [])
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and all(m is not h for h in heads):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def output_stride(self) -> int:
        """Input size / output size: 1 with refinement, else the config's output_stride."""
        return 1 if self.config.refine_channels else self.config.output_stride

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Size (h, w) of the outputs for inputs of size (height, width)."""
        s = self.output_stride
        return -(-height // s), -(-width // s)

    @staticmethod
    def check_inputs(background: torch.Tensor, composite: torch.Tensor) -> None:
        """Raise a ValueError naming the problem if the inputs are not two (B, 3, H, W) tensors of one shape."""
        for name, t in (("background", background), ("composite", composite)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.ndim != 4 or t.shape[1] != 3:
                raise ValueError(f"{name} must be (B, 3, H, W), got shape {tuple(t.shape)}")
            if not t.is_floating_point():
                raise ValueError(f"{name} must be a float tensor in [0, 1], got {t.dtype}")
        if background.shape != composite.shape:
            raise ValueError(
                f"background {tuple(background.shape)} and composite {tuple(composite.shape)} differ in shape"
            )

    def forward(
        self, background: torch.Tensor, composite: torch.Tensor, focal: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``focal`` (B,): each camera's focal length / the input's short side (0 = unknown); used by a model with
        a canonical camera (``canonical_hfov``), ignored otherwise. Without it, depth is the canonical camera's."""
        if not _tracing():
            self.check_inputs(background, composite)
        out = self.forward_main(self.mask_view(background), self.mask_view(composite))
        if self.config.mask_scale != 1:  # back to the input's scale
            size = self.output_size(*background.shape[-2:])
            out = {
                k: F.interpolate(v, size=size, mode="bilinear", align_corners=False) for k, v in out.items()
            }
        if self.depth_net is not None:
            branch = self.depth_net.forward_main(self.depth_view(background), self.depth_view(composite))
            size = out[MASK_LOGITS].shape[-2:]
            # layers: upsampled, then joined by this network's (finer) mask below; else the branch's one map
            key = DEPTH_LAYERS if DEPTH_LAYERS in branch else DEPTH_PRED
            out[key] = F.interpolate(branch[key], size=size, mode="bilinear", align_corners=False)
        join_depth_layers(out)
        if DEPTH_PRED in out:
            out[DEPTH_PRED] = self.to_camera(out[DEPTH_PRED], focal)
        return out

    @property
    def canonical_focal(self) -> float | None:
        """The canonical camera's ``focal`` (fgdepth.intrinsics), None without one."""
        hfov = self.config.canonical_hfov
        return None if hfov is None else focal_from_hfov(hfov, 1, 1)

    def to_camera(self, depth: torch.Tensor, focal: torch.Tensor | None) -> torch.Tensor:
        """This model's depth (B, 1, h, w) through the cameras of ``focal`` (B,) (as is without a canonical
        camera, or where a focal is unknown)."""
        canonical = self.canonical_focal
        return depth if canonical is None else depth_at_focal(depth, focal, canonical)

    def mask_view(self, x: torch.Tensor) -> torch.Tensor:
        """What this network sees: x (B, 3, H, W) resized by ``mask_scale`` (bilinear; box-filtered first when
        that shrinks it), x itself at 1."""
        scale = self.config.mask_scale
        if scale == 1:
            return x
        x = smooth_before_downscale(x, 1 / scale)
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)

    def depth_view(self, x: torch.Tensor) -> torch.Tensor:
        """What the depth branch sees: x (B, 3, H, W) -> (B, 3, floor(H * depth_scale), floor(W * depth_scale)),
        box-filtered first like training's downscaled views (a fixed scale factor, so ONNX keeps dynamic sizes)."""
        scale = self.config.depth_scale
        if scale == 1:
            return x
        x = smooth_before_downscale(x, 1 / scale)
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)

    def forward_main(self, background: torch.Tensor, composite: torch.Tensor) -> dict[str, torch.Tensor]:
        """This network's own heads on the inputs as given: ``{"mask_logits"}``, and ``"depth"`` when there is no
        depth branch (training runs the two networks on different views of a sample); with ``layered_depth``,
        ``"depth_layers"`` (B, 2, h, w) in place of ``"depth"``: the caller joins them by a mask (``forward`` by
        the finest mask it has, training by the true one)."""
        bg = (background - self.mean) / self.std
        comp = (composite - self.mean) / self.std
        x = x_depth = self.decoder(self.encoder(bg, comp))
        if self.refine_guide is not None:
            guide = self.refine_guide(torch.cat([bg, comp, (comp - bg).abs()], dim=1))
            x = F.interpolate(x, size=guide.shape[-2:], mode="bilinear", align_corners=False)
            x = self.refine_fuse(torch.cat([x, guide], dim=1))
            if self.config.depth_features == "refined":
                x_depth = x
        mask_logits = self.mask_head(x).float()
        if self.depth_head is None:
            return {MASK_LOGITS: mask_logits}
        raw = self.depth_head(x_depth).float()
        if x_depth is not x:  # decoder features at stride s: up to the mask's (full) resolution
            raw = F.interpolate(raw, size=mask_logits.shape[-2:], mode="bilinear", align_corners=False)
        depth_key = DEPTH_LAYERS if self.config.layered_depth else DEPTH_PRED
        return {MASK_LOGITS: mask_logits, depth_key: self._activate_depth(raw)}

    def _activate_depth(self, raw: torch.Tensor) -> torch.Tensor:
        if self.config.max_depth is not None:
            return self.config.max_depth * torch.sigmoid(raw)
        if self.config.depth_activation == "exp":
            return torch.exp(raw.clamp(max=_MAX_LOG_DEPTH))
        return F.softplus(raw)


def _tracing() -> bool:
    """True while exported or compiled: shape checks would be baked into the graph as constants (and warn)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def compose_layers(layers: torch.Tensor, person: torch.Tensor) -> torch.Tensor:
    """Depth from two layers: the scene behind where ``person`` is 0, the people where it is 1, mixed between.

    Shape:
        layers: (B, 2, h, w), channel 0 the scene behind the people, channel 1 the people
        person: (B, 1, h, w) in [0, 1], a probability or a (soft) true mask
        -> (B, 1, h, w)
    """
    if not _tracing():
        if layers.ndim != 4 or layers.shape[1] != 2:
            raise ValueError(f"layers must be (B, 2, h, w), got {tuple(layers.shape)}")
        if (
            person.shape[0] != layers.shape[0]
            or person.shape[1] != 1
            or person.shape[-2:] != layers.shape[-2:]
        ):
            raise ValueError(
                f"person {tuple(person.shape)} must be (B, 1, h, w) of layers {tuple(layers.shape)}"
            )
    scene, people = layers[:, :1], layers[:, 1:]
    return scene + person.to(layers.dtype) * (people - scene)


def join_depth_layers(
    out: dict[str, torch.Tensor], person: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Replace ``out["depth_layers"]``, where present, by ``out["depth"]``: the layers joined by ``person``
    (B, 1, h, w) in [0, 1], or by the sigmoid of ``out["mask_logits"]`` when None (:func:`compose_layers`).
    ``out`` is changed in place and returned; without layers it is left as it is."""
    layers = out.pop(DEPTH_LAYERS, None)
    if layers is not None:
        out[DEPTH_PRED] = compose_layers(
            layers, torch.sigmoid(out[MASK_LOGITS]) if person is None else person
        )
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
