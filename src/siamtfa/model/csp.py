"""NanoDet's COCO-trained CSP backbone (3x3 convolutions, LeakyReLU 0.1, cross-stage partial
stages) as a C2..C5 trunk, with the temporal shift inside its stride-32 stage's branches.

A stage: ``a`` = a 3x3 convolution (stride 2 after the first stage); then ``blocks`` times
``b = conv(x)``, ``c = conv(b)``, ``x = [c, b]``; then ``f = conv(x)``; the output ``[f, a]``.
The concatenated ``b`` and ``a`` pass untouched, like a residual block's identity; as TSM does
for residual blocks, the shift moves channels on the input of the branch (``c``'s input) only.
Blocks built with ``norm="none"`` carry a bias (NanoDet's BatchNorms folded into it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from siamtfa.model.backbone import TemporalShift, make_norm

# (width, blocks, stride) per stage: outputs 2 * width channels at strides 4, 8, 16, 32
STAGES = ((32, 1, 1), (64, 2, 2), (128, 2, 2), (256, 3, 2))


class ConvAct(nn.Sequential):
    def __init__(self, inp: int, out: int, stride: int, norm: str) -> None:
        norm_layer = nn.Identity() if norm == "none" else make_norm(norm, out)
        conv = nn.Conv2d(inp, out, 3, stride, 1, bias=norm == "none")
        super().__init__(conv, norm_layer, nn.LeakyReLU(0.1, inplace=True))


class CSPBlock(nn.Module):
    def __init__(self, inp: int, width: int, norm: str, shift: TemporalShift | None) -> None:
        super().__init__()
        self.b = ConvAct(inp, width // 2, 1, norm)
        self.shift = shift
        self.c = ConvAct(width // 2, width // 2, 1, norm)

    def forward(self, x: Tensor, clip_len: int | None = None, stream: dict | None = None) -> Tensor:
        b = self.b(x)
        branch = self.shift(b, clip_len, stream) if self.shift is not None else b
        return torch.cat([self.c(branch), b], 1)


class CSPStage(nn.Module):
    def __init__(
        self, inp: int, width: int, blocks: int, stride: int, norm: str, shift: tuple | None
    ) -> None:
        super().__init__()
        self.a = ConvAct(inp, width, stride, norm)
        self.blocks = nn.ModuleList(
            CSPBlock(width, width, norm, TemporalShift(*shift) if shift else None)
            for _ in range(blocks)
        )
        self.f = ConvAct(width, width, 1, norm)

    def forward(self, x: Tensor, clip_len: int | None = None, stream: dict | None = None) -> Tensor:
        a = x = self.a(x)
        for block in self.blocks:
            x = block(x, clip_len, stream)
        return torch.cat([self.f(x), a], 1)


class CSPNet(nn.Module):
    """NanoDet's CSP trunk returning C2..C5 (strides 4, 8, 16, 32; 64, 128, 256, 512
    channels); ``frozen_stages`` as ResNet's (0: the stem, 1: + the stride-4 stage, ...)."""

    untrained: tuple[str, ...] = ()  # a converted NanoDet file holds every weight

    def __init__(
        self,
        norm: str = "none",
        frozen_stages: int = 1,
        temporal: bool = True,
        fold_div: int = 8,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvAct(3, 32, 2, norm), nn.MaxPool2d(3, 2, 1))
        stages, inp = [], 32
        for i, (width, blocks, stride) in enumerate(STAGES):
            shift = (fold_div, causal) if temporal and i == len(STAGES) - 1 else None
            stages.append(CSPStage(inp, width, blocks, stride, norm, shift))
            inp = 2 * width
        self.stages = nn.ModuleList(stages)
        self.out_channels = [2 * width for width, _, _ in STAGES]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_out", nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for part in [self.stem, *self.stages][: frozen_stages + 1]:  # -1 freezes nothing
            part.requires_grad_(False)

    def forward(
        self, x: Tensor, clip_len: int | None = None, stream: dict | None = None
    ) -> list[Tensor]:
        """C2..C5; ``clip_len`` turns the stride-32 stage's shift on (``None``: no shift);
        ``stream`` (a dict kept by the caller across frames) shifts one frame at a time."""
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x, clip_len, stream)
            outs.append(x)
        return outs
