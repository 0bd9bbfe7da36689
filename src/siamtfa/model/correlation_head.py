"""NanoTrack's pixel-wise correlation head (its ``neckhead``), for a pretrained first look.

Each of the template's ``8 x 8`` stride-16 cells is correlated with every search cell (a 1x1
convolution on each side, then their dot product), giving 64 similarity channels per search
cell; a squeeze-excite weights them; towers of depthwise-separable convolutions (ReLU6) then
predict, per search cell, two class logits (background, target) and the distances from the
cell's centre to the target's left, top, right and bottom edges, in search-crop pixels (an
exponential keeps them positive). ``siamtfa.model.convert.nanotrack_head`` fills it from
NanoTrack's ONNX head; ``siamtfa.tracking.head_look`` uses it in tracking.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

TEMPLATE_CELLS = 8  # the template's side in stride-16 cells (a 127-pixel crop)


class PixelwiseCorrelation(nn.Module):
    """Template cells x search cells similarities, re-weighted by a squeeze-excite."""

    def __init__(self, channels: int = 48, cells: int = TEMPLATE_CELLS**2) -> None:
        super().__init__()
        self.template = nn.Conv2d(channels, channels, 1)
        self.search = nn.Conv2d(channels, channels, 1)
        self.fc1 = nn.Conv2d(cells, cells, 1)
        self.fc2 = nn.Conv2d(cells, cells, 1)

    def forward(self, template: Tensor, search: Tensor) -> Tensor:
        """``[B, C, 8, 8]`` and ``[B, C, H, W]`` to ``[B, 64, H, W]``."""
        kernel = self.template(template).flatten(2)  # [B, C, 64]
        x = self.search(search)
        corr = torch.einsum("bck,bchw->bkhw", kernel, x)
        weights = torch.sigmoid(self.fc2(torch.relu(self.fc1(corr.mean((2, 3), keepdim=True)))))
        return corr * weights


def _tower(inp: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` depthwise 3x3 (no bias) + pointwise 1x1 + ReLU6 layers."""
    layers: list[nn.Module] = []
    for i in range(depth):
        channels = inp if i == 0 else hidden
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU6(),
        ]
    return nn.Sequential(*layers)


class CorrelationHead(nn.Module):
    """``head(template [B, 48, 8, 8], search [B, 48, H, W])`` -> class logits ``[B, 2, H, W]``
    and edge distances ``[B, 4, H, W]`` (left, top, right, bottom; crop pixels)."""

    def __init__(self, channels: int = 48, hidden: int = 96, depth: int = 6) -> None:
        super().__init__()
        cells = TEMPLATE_CELLS**2
        self.corr_cls = PixelwiseCorrelation(channels, cells)
        self.corr_box = PixelwiseCorrelation(channels, cells)
        self.cls_tower = _tower(cells, hidden, depth)
        self.box_tower = _tower(cells, hidden, depth)
        self.cls_pred = nn.Conv2d(hidden, 2, 1)
        self.box_pred = nn.Conv2d(hidden, 4, 1)

    def forward(self, template: Tensor, search: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.cls_pred(self.cls_tower(self.corr_cls(template, search)))
        distances = torch.exp(self.box_pred(self.box_tower(self.corr_box(template, search))))
        return logits, distances

    def onnx_order(self) -> list[str]:
        """The convolutions' names in the ONNX graph's order (``convert.nanotrack_head``)."""
        corr = ["template", "search", "fc1", "fc2"]
        tower = [f"{i}" for i in range(len(self.cls_tower)) if i % 3 != 2]
        return [
            *(f"corr_box.{k}" for k in corr),
            *(f"corr_cls.{k}" for k in corr),
            *(f"cls_tower.{k}" for k in tower),
            "cls_pred",
            *(f"box_tower.{k}" for k in tower),
            "box_pred",
        ]
