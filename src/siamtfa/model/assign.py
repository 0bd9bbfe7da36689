"""Label assignment by IoU and balanced positive/negative sampling (one target per frame)."""

from __future__ import annotations

import torch
from torch import Tensor

from siamtfa.ops import box_iou


def assign_by_iou(
    candidates: Tensor,
    target: Tensor | None,
    fg_iou: float,
    bg_iou: float,
    allow_low_quality: bool,
) -> Tensor:
    """Labels 1 (fg, IoU >= fg_iou), 0 (bg, IoU < bg_iou), -1 (ignored) for ``[N, 4]`` boxes.

    ``target`` is one ``[4]`` box or ``None`` (target absent: everything is background). With
    ``allow_low_quality`` the candidates of highest IoU are foreground too (RPN rule).
    """
    labels = torch.full((candidates.shape[0],), -1, dtype=torch.int64, device=candidates.device)
    if target is None:
        return labels.fill_(0)
    iou = box_iou(candidates, target[None])[:, 0]
    labels[iou < bg_iou] = 0
    labels[iou >= fg_iou] = 1
    if allow_low_quality and iou.numel() and iou.max() > 0:
        labels[iou == iou.max()] = 1
    return labels


def sample_balanced(
    labels: Tensor,
    batch_size: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Indices of sampled positives and negatives: at most ``batch_size`` in all."""
    pos = torch.nonzero(labels == 1).squeeze(1)
    neg = torch.nonzero(labels == 0).squeeze(1)
    num_pos = min(pos.numel(), int(batch_size * positive_fraction))
    num_neg = min(neg.numel(), batch_size - num_pos)
    dev = labels.device
    pos = pos[torch.randperm(pos.numel(), generator=generator, device="cpu")[:num_pos].to(dev)]
    neg = neg[torch.randperm(neg.numel(), generator=generator, device="cpu")[:num_neg].to(dev)]
    return pos, neg
