"""Small building blocks of the DualUNet: conv-norm-act, depthwise-separable and inverted-residual blocks.

Every block maps ``(B, C_in, H, W) -> (B, C_out, H', W')`` with ``H' = ceil(H / stride)`` (padding ``k // 2``),
works with ``channels_last`` memory format and under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Norm = Literal["batch", "group"]
Act = Literal["relu", "silu", "hardswish"]

NORMS: tuple[str, ...] = ("batch", "group")
ACTS: tuple[str, ...] = ("relu", "silu", "hardswish")


def make_norm(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm2d, or GroupNorm with up to 8 groups (for small per-device batches)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


def make_act(kind: Act) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "silu":
        return nn.SiLU(inplace=True)
    if kind == "hardswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {kind!r}; valid: {', '.join(ACTS)}")


class StridedDepthwiseConv2d(nn.Conv2d):
    """A strided depthwise conv that runs in float32 under CPU autocast (same parameters as ``nn.Conv2d``).

    oneDNN's bf16 backward of strided depthwise convs took 10-20x the float32 time on CPU (torch 2.13: 12 ms
    against 0.9 ms for (32, 144, 12, 12)), 11 % of a ``tiny`` training step; float32 costs nothing elsewhere.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) + norm + optional activation.

    Shape:
        x: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm: Norm = "batch",
        act: Act | None = "relu",
    ) -> None:
        conv = StridedDepthwiseConv2d if stride > 1 and groups == c_in and groups > 1 else nn.Conv2d
        layers: list[nn.Module] = [
            conv(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            make_norm(norm, c_out),
        ]
        if act is not None:
            layers.append(make_act(act))
        super().__init__(*layers)


class SepConv(nn.Sequential):
    """Depthwise 3x3 (with stride) + pointwise 1x1: a light replacement for a dense 3x3 conv.

    Shape:
        x: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(
        self, c_in: int, c_out: int, stride: int = 1, norm: Norm = "batch", act: Act = "relu"
    ) -> None:
        super().__init__(
            ConvNormAct(c_in, c_in, 3, stride, groups=c_in, norm=norm, act=act),
            ConvNormAct(c_in, c_out, 1, norm=norm, act=act),
        )


class _ResidualBody(nn.Module):
    """``body(x)``, plus ``x`` when the body keeps the shape (stride 1, same width)."""

    def __init__(self, body: nn.Sequential, residual: bool) -> None:
        super().__init__()
        self.body = body
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class InvertedResidual(_ResidualBody):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3 (with stride), 1x1 project; residual when shapes match.

    ``expand == 1`` skips the expansion conv (a depthwise-separable conv with a linear projection).

    Shape:
        x: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        expand: float = 4.0,
        norm: Norm = "batch",
        act: Act = "relu",
    ) -> None:
        hidden = max(8, int(round(c_in * expand)))
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(c_in, hidden, 1, norm=norm, act=act))
        else:
            hidden = c_in
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, norm=norm, act=act),
            ConvNormAct(hidden, c_out, 1, norm=norm, act=None),
        ]
        super().__init__(nn.Sequential(*layers), stride == 1 and c_in == c_out)


class FusedMBConv(_ResidualBody):
    """EfficientNetV2 "fused" block: dense 3x3 expand (with stride) + 1x1 project; residual when shapes match.

    Faster than :class:`InvertedResidual` at high resolution and few channels (depthwise convs are memory-bound).

    Shape:
        x: (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int = 1,
        expand: float = 2.0,
        norm: Norm = "batch",
        act: Act = "relu",
    ) -> None:
        hidden = max(8, int(round(c_in * expand)))
        body = nn.Sequential(
            ConvNormAct(c_in, hidden, 3, stride, norm=norm, act=act),
            ConvNormAct(hidden, c_out, 1, norm=norm, act=None),
        )
        super().__init__(body, stride == 1 and c_in == c_out)


BLOCKS: dict[str, type[nn.Module]] = {"inverted": InvertedResidual, "fused": FusedMBConv}


def make_stage(
    kind: str,
    c_in: int,
    c_out: int,
    n_blocks: int,
    stride: int,
    expand: float,
    norm: Norm,
    act: Act,
) -> nn.Sequential:
    """``n_blocks`` blocks of ``kind``; the first one carries the stride and the channel change."""
    if kind not in BLOCKS:
        raise ValueError(f"unknown block {kind!r}; valid: {', '.join(BLOCKS)}")
    if n_blocks < 1:
        raise ValueError(f"a stage needs at least one block, got {n_blocks}")
    block = BLOCKS[kind]
    layers = [block(c_in, c_out, stride, expand, norm, act)]
    layers += [block(c_out, c_out, 1, expand, norm, act) for _ in range(n_blocks - 1)]
    return nn.Sequential(*layers)
