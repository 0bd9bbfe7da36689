"""MobileNetV3-Small (Howard et al., ICCV 2019) as a C2..C5 trunk, with the temporal shift
inside the residual branches of its stride-32 stage.

The layout (``features.<i>.conv.<j>``) is that of NanoTrack's backbone (the mobilenetv3.pytorch
design it was trained with: squeeze-excite before the block's second activation), so
``siamtfa.convert`` maps its ONNX weights, whose BatchNorms are folded into the convolutions,
one to one: blocks built with ``norm="none"`` have convolutions with a bias and no norm.
NanoTrack stops at stride 16 (``features.8``); the stride-32 stage (``features.9``-``11``)
is MobileNetV3-Small's own and starts untrained. As TSM does for MobileNet online, the shift
moves channels on the input of each residual branch there, never on the identity path.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from siamtfa.model.backbone import TemporalShift, make_norm


class BlockSpec(NamedTuple):
    """One inverted-residual block: input, expanded and output channels, depthwise kernel,
    squeeze-excite, hard-swish (else ReLU), stride."""

    inp: int
    hidden: int
    out: int
    kernel: int
    se: bool
    hswish: bool
    stride: int


# MobileNetV3-Small, features.1..11 (Howard et al., Table 2)
SMALL = (
    BlockSpec(16, 16, 16, 3, True, False, 2),  # stride 4: C2
    BlockSpec(16, 72, 24, 3, False, False, 2),
    BlockSpec(24, 88, 24, 3, False, False, 1),  # stride 8: C3
    BlockSpec(24, 96, 40, 5, True, True, 2),
    BlockSpec(40, 240, 40, 5, True, True, 1),
    BlockSpec(40, 240, 40, 5, True, True, 1),
    BlockSpec(40, 120, 48, 5, True, True, 1),
    BlockSpec(48, 144, 48, 5, True, True, 1),  # stride 16: C4 (NanoTrack's output)
    BlockSpec(48, 288, 96, 5, True, True, 2),
    BlockSpec(96, 576, 96, 5, True, True, 1),
    BlockSpec(96, 576, 96, 5, True, True, 1),  # stride 32: C5
)
STAGE_ENDS = (1, 3, 8, 11)  # the features index whose output is C2, C3, C4, C5
PRETRAINED_BLOCKS = 9  # features.0..8: what NanoTrack's backbone holds


def _divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: to a multiple of ``divisor``, never down by over 10 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv(inp: int, out: int, kernel: int, stride: int, norm: str, groups: int = 1) -> nn.Conv2d:
    bias = norm == "none"  # BatchNorm folded into the convolution
    return nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=bias)


def _norm(norm: str, channels: int) -> nn.Module:
    return nn.Identity() if norm == "none" else make_norm(norm, channels)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _divisible(channels / 4)
        self.fc = nn.Sequential(
            nn.Linear(channels, squeezed),
            nn.ReLU(inplace=True),
            nn.Linear(squeezed, channels),
            nn.Hardsigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(x.mean((2, 3)))[:, :, None, None].to(x.dtype)


class InvertedResidual(nn.Module):
    def __init__(self, spec: BlockSpec, norm: str, shift: TemporalShift | None = None) -> None:
        super().__init__()
        self.residual = spec.stride == 1 and spec.inp == spec.out
        if shift is not None and not self.residual:
            raise ValueError("the temporal shift needs a residual block")
        self.shift = shift

        def act() -> nn.Module:
            return nn.Hardswish() if spec.hswish else nn.ReLU(inplace=True)

        se = SqueezeExcite(spec.hidden) if spec.se else nn.Identity()
        depthwise = _conv(spec.hidden, spec.hidden, spec.kernel, spec.stride, norm, spec.hidden)
        project = _conv(spec.hidden, spec.out, 1, 1, norm)
        if spec.inp == spec.hidden:  # no expansion: the indices NanoTrack's names use
            layers = [depthwise, _norm(norm, spec.hidden), act(), se, project]
        else:
            expand = _conv(spec.inp, spec.hidden, 1, 1, norm)
            layers = [expand, _norm(norm, spec.hidden), act(), depthwise]
            layers += [_norm(norm, spec.hidden), se, act(), project]
        self.conv = nn.Sequential(*layers, _norm(norm, spec.out))

    def forward(self, x: Tensor, clip_len: int | None = None, stream: dict | None = None) -> Tensor:
        if not self.residual:
            return self.conv(x)
        branch = self.shift(x, clip_len, stream) if self.shift is not None else x
        return x + self.conv(branch)


class MobileNetV3(nn.Module):
    """MobileNetV3-Small trunk returning C2..C5 (strides 4, 8, 16, 32; 16, 24, 48, 96
    channels). ``pretrained_norm`` is the norm of ``features.0..8`` (``"none"`` for converted
    NanoTrack weights), ``norm`` that of the stride-32 stage; ``frozen_stages`` as ResNet's
    (0: the stem, 1: + the stride-4 stage, ...; -1: nothing)."""

    def __init__(
        self,
        norm: str = "gn",
        pretrained_norm: str = "none",
        frozen_stages: int = 1,
        temporal: bool = True,
        fold_div: int = 8,
        causal: bool = False,
    ) -> None:
        super().__init__()
        stem = nn.Sequential(
            _conv(3, 16, 3, 2, pretrained_norm), _norm(pretrained_norm, 16), nn.Hardswish()
        )
        blocks: list[nn.Module] = [stem]
        for i, spec in enumerate(SMALL, start=1):
            last_stage = i > STAGE_ENDS[2]
            shift = None
            if temporal and last_stage and spec.stride == 1 and spec.inp == spec.out:
                shift = TemporalShift(fold_div, causal)
            blocks.append(
                InvertedResidual(spec, pretrained_norm if not last_stage else norm, shift)
            )
        self.features = nn.ModuleList(blocks)
        # what converted NanoTrack weights do not hold: the stride-32 stage
        self.untrained = tuple(f"features.{i}." for i in range(PRETRAINED_BLOCKS, len(blocks)))
        self.out_channels = [SMALL[end - 1].out for end in STAGE_ENDS]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        stops = (1, *(end + 1 for end in STAGE_ENDS))  # past the stem, past each stage
        frozen = stops[min(frozen_stages, len(stops) - 1)] if frozen_stages >= 0 else 0
        self.features[:frozen].requires_grad_(False)

    def forward(
        self, x: Tensor, clip_len: int | None = None, stream: dict | None = None
    ) -> list[Tensor]:
        """C2..C5; ``clip_len`` turns the stride-32 stage's shift on (``None``: no shift);
        ``stream`` (a dict kept by the caller across frames) shifts one frame at a time."""
        x = self.features[0](x)
        outs = []
        for i, block in enumerate(self.features[1:], start=1):
            x = block(x, clip_len, stream)
            if i in STAGE_ENDS:
                outs.append(x)
        return outs
