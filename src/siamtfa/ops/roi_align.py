"""RoIAlign (He et al., Mask R-CNN) in plain torch with torchvision's exact semantics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _sample_and_pool(
    input: Tensor, batch: Tensor, y: Tensor, x: Tensor, out_h: int, out_w: int
) -> Tensor:
    """Average of bilinear samples: ``y`` ``[K, out_h*gh]`` and ``x`` ``[K, out_w*gw]`` are
    each RoI's sample rows/columns; returns ``[K, C, out_h, out_w]``.

    torchvision's border rule: points outside ``[-1, H] x [-1, W]`` give 0, points in the band
    between are clamped onto the border. ``grid_sample`` with ``padding_mode="border"`` and
    ``align_corners=True`` clamps exactly that way; a validity mask zeroes the far-outside
    points. The loop is over images, not RoIs.
    """
    _, c, h, w = input.shape
    k, py, px = y.shape[0], y.shape[1], x.shape[1]
    valid = ((y >= -1.0) & (y <= h))[:, :, None] & ((x >= -1.0) & (x <= w))[:, None, :]
    gy = y / max(h - 1, 1) * 2 - 1
    gx = x / max(w - 1, 1) * 2 - 1
    grid = torch.stack((gx[:, None, :].expand(k, py, px), gy[:, :, None].expand(k, py, px)), -1)
    parts, groups = [], []
    for b in torch.unique(batch).tolist():
        idx = torch.nonzero(batch == b).squeeze(1)
        g = grid[idx].reshape(1, -1, px, 2)  # this image's RoIs stacked along the grid height
        s = F.grid_sample(
            input[b : b + 1], g, mode="bilinear", padding_mode="border", align_corners=True
        )  # [1, C, k * py, px]: each RoI's rows stacked
        s = s * valid[idx].reshape(1, 1, -1, px).to(s.dtype)
        # bins never straddle two RoIs: py is a multiple of the bin height
        s = F.avg_pool2d(s, (py // out_h, px // out_w))  # [1, C, k * out_h, out_w]
        parts.append(s.view(c, len(idx), out_h, out_w).permute(1, 0, 2, 3))
        groups.append(idx)
    return _ungroup(parts, groups)


def _ungroup(parts: list[Tensor], groups: list[Tensor]) -> Tensor:
    """Rows of ``parts`` (computed per group of indices) back in the original order."""
    if len(parts) == 1:
        return parts[0]
    return torch.cat(parts)[torch.argsort(torch.cat(groups))]


def _roi_align_fixed_grid(
    input: Tensor,
    rois: Tensor,
    h: int,
    w: int,
    out_h: int,
    out_w: int,
    grid_h: int,
    grid_w: int,
    spatial_scale: float,
    aligned: bool,
) -> Tensor:
    offset = 0.5 if aligned else 0.0
    batch = rois[:, 0].long()
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:  # legacy: force malformed RoIs to be at least 1x1
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / out_h
    bin_w = roi_w / out_w
    dev, dt = rois.device, rois.dtype
    # sample offsets within the RoI, in bins: (p + (g + 0.5) / grid)
    fy = (
        torch.arange(out_h, device=dev, dtype=dt)[:, None]
        + (torch.arange(grid_h, device=dev, dtype=dt)[None, :] + 0.5) / grid_h
    ).reshape(-1)
    fx = (
        torch.arange(out_w, device=dev, dtype=dt)[:, None]
        + (torch.arange(grid_w, device=dev, dtype=dt)[None, :] + 0.5) / grid_w
    ).reshape(-1)
    ys = y1[:, None] + fy[None, :] * bin_h[:, None]  # [K, out_h*grid_h]
    xs = x1[:, None] + fx[None, :] * bin_w[:, None]  # [K, out_w*grid_w]
    return _sample_and_pool(input, batch, ys, xs, out_h, out_w)


def roi_align(
    input: Tensor,
    boxes: Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with torchvision's semantics; differentiable, no Python loop over RoIs.

    ``input`` ``[B, C, H, W]``; ``boxes`` ``[K, 5]`` rows of (batch index, x1, y1, x2, y2) in
    input-image coordinates; returns ``[K, C, out_h, out_w]``. ``sampling_ratio <= 0`` picks
    ``ceil(roi_size / output_size)`` samples per bin for each RoI (RoIs are grouped by that grid,
    so the loop is over distinct grid sizes, not RoIs).
    """
    if input.dim() != 4:
        raise ValueError(f"roi_align input must be [B, C, H, W], got {tuple(input.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 5:
        raise ValueError(f"roi_align boxes must be [K, 5], got {tuple(boxes.shape)}")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, c, h, w = input.shape
    k = boxes.shape[0]
    rois = boxes.to(input.dtype)
    if k == 0:
        return input.new_zeros((0, c, out_h, out_w))
    args = (h, w, out_h, out_w)
    if sampling_ratio > 0:
        return _roi_align_fixed_grid(
            input, rois, *args, sampling_ratio, sampling_ratio, spatial_scale, aligned
        )
    # adaptive grid, computed from the RoI size exactly as the sampling positions are; an empty
    # (or inverted) aligned RoI gets a zero grid and so a zero output, as in torchvision
    offset = 0.5 if aligned else 0.0
    roi_w = (rois[:, 3] * spatial_scale - offset) - (rois[:, 1] * spatial_scale - offset)
    roi_h = (rois[:, 4] * spatial_scale - offset) - (rois[:, 2] * spatial_scale - offset)
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    grid_h = torch.ceil(roi_h / out_h).long()
    grid_w = torch.ceil(roi_w / out_w).long()
    parts, groups = [], []
    keys = torch.stack((grid_h, grid_w), 1)
    for gh, gw in torch.unique(keys, dim=0).tolist():
        idx = torch.nonzero((grid_h == gh) & (grid_w == gw)).squeeze(1)
        if gh <= 0 or gw <= 0:
            parts.append(input.new_zeros((len(idx), c, out_h, out_w)))
        else:
            parts.append(
                _roi_align_fixed_grid(input, rois[idx], *args, gh, gw, spatial_scale, aligned)
            )
        groups.append(idx)
    return _ungroup(parts, groups)


def level_for_boxes(
    boxes: Tensor,
    k_min: int = 2,
    k_max: int = 5,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
) -> Tensor:
    """FPN level rule ``k = floor(4 + log2(sqrt(wh) / 224))`` clamped to ``[k_min, k_max]``."""
    wh = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    scale = torch.sqrt(wh)
    k = torch.floor(canonical_level + torch.log2(scale / canonical_size + 1e-6) + 1e-6)
    return k.clamp(k_min, k_max).long()


def multiscale_roi_align(
    features: list[Tensor],
    strides: list[int],
    boxes: Tensor,
    output_size: int,
    sampling_ratio: int,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign from an FPN pyramid (levels ``log2(stride)``), each RoI from its level's map.

    Sampled in float32 or wider whatever the maps' dtype, as CUDA autocast does for
    ``grid_sample``: a bf16 coordinate near 300 px is off by up to 1 px, and bf16 sampling is
    slower on CPU. Returns float32 (float64 for float64 maps)."""
    dtype = torch.promote_types(features[0].dtype, torch.float32)
    boxes = boxes.to(dtype)
    levels = [round(math.log2(s)) for s in strides]
    target = level_for_boxes(boxes[:, 1:], min(levels), max(levels))
    parts, groups = [], []
    for feat, stride, lvl in zip(features, strides, levels):
        idx = torch.nonzero(target == lvl).squeeze(1)
        if idx.numel():
            parts.append(
                roi_align(
                    feat.to(dtype), boxes[idx], output_size, 1.0 / stride, sampling_ratio, aligned
                )
            )
            groups.append(idx)
    if not parts:
        c = features[0].shape[1]
        return boxes.new_zeros((0, c, output_size, output_size))
    return _ungroup(parts, groups)
