"""FPN anchors: one size per level, several aspect ratios, centred on feature cells."""

from __future__ import annotations

import torch
from torch import Tensor


def cell_anchors(size: float, aspect_ratios: tuple[float, ...]) -> Tensor:
    """``[k, 4]`` zero-centred anchors of area ``size**2`` and ``h / w = ratio``."""
    ratios = torch.tensor(aspect_ratios, dtype=torch.float32)
    h = size * torch.sqrt(ratios)
    w = size / torch.sqrt(ratios)
    return torch.stack((-w / 2, -h / 2, w / 2, h / 2), dim=1)


def grid_anchors(
    feature_size: tuple[int, int],
    stride: int,
    size: float,
    aspect_ratios: tuple[float, ...],
    device: torch.device | None = None,
) -> Tensor:
    """``[H * W * k, 4]`` anchors for one level, ordered (y, x, ratio) like the head outputs.

    Cell ``(i, j)`` is centred at ``((j + 0.5) * stride, (i + 0.5) * stride)``: the centre of
    the input pixels it covers.
    """
    h, w = feature_size
    base = cell_anchors(size, aspect_ratios).to(device)
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)
    return (centres + base[None]).reshape(-1, 4)
