"""Box math in plain torch: IoU, NMS (torchvision semantics), the box coder, conversions.

Boxes are ``[x1, y1, x2, y2]`` in continuous pixel coordinates unless a name says ``xywh``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU, ``[..., N, 4] x [..., M, 4] -> [..., N, M]``; 0 where the union is empty.
    Not differentiable (it overwrites its temporaries).

    Built one coordinate at a time, each step one pass over ``[..., N, M]`` planes, in place:
    NMS builds a ``[levels, 300, 300]`` matrix for every frame."""
    ax1, ay1, ax2, ay2 = (t[..., :, None] for t in a.movedim(-1, 0).contiguous())
    bx1, by1, bx2, by2 = (t[..., None, :] for t in b.movedim(-1, 0).contiguous())
    inter = torch.minimum(ax2, bx2).sub_(torch.maximum(ax1, bx1)).clamp_(min=0)
    inter.mul_(torch.minimum(ay2, by2).sub_(torch.maximum(ay1, by1)).clamp_(min=0))
    union = (box_area(a)[..., :, None] + box_area(b)[..., None, :]).sub_(inter)
    # rounding is monotone, so union >= inter >= 0: union is 0 only where inter is, IoU 0
    return inter.div_(union.clamp_(min=torch.finfo(inter.dtype).tiny))


def best_overlap(iou: Tensor, scores: Tensor) -> Tensor:
    """Each row's largest ``score * IoU`` over ``iou [K, N]``'s columns scored ``scores [N]``:
    how strongly ``K`` boxes agree with ``N`` scored ones; zeros when ``N`` is 0."""
    if not iou.shape[1]:
        return iou.new_zeros(iou.shape[0])
    return (iou * scores.to(iou.dtype)[None]).max(1).values


def nms_keep(boxes: Tensor, scores: Tensor, valid: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS in each row of a batch (torchvision semantics): ``boxes`` ``[G, n, 4]``,
    ``scores`` and ``valid`` (the boxes that take part) ``[G, n]``; returns the kept boxes'
    mask ``[G, n]``.

    In each row a valid box is suppressed by a kept valid box of higher score with IoU >
    ``iou_threshold``; ties in score are broken by the lower index first (stable sort). Instead
    of a Python loop over boxes, the greedy keep set is found as the unique fixed point of
    ``keep[i] = not any(keep[j] and iou[j, i] > t for j < i)``, iterated from "keep all": each
    step fixes at least the next undecided box, and in practice a handful of steps suffice.
    """
    g, n = scores.shape
    if n == 0:
        return valid.clone()
    ranked = torch.where(valid, scores, float("-inf"))  # the rest go last and are never kept
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    b = boxes.gather(1, order[..., None].expand(g, n, 4)).float()
    ok = valid.gather(1, order)
    # suppress[g, j, i]: box j (ranked before i) suppresses box i if j is kept (never if invalid)
    suppress = box_iou(b, b).gt_(iou_threshold).triu_(diagonal=1)  # 0/1 in place
    keep = ok
    # counts of 0/1 products, exact in any float type; fp32 saves autocast's casts
    with torch.autocast(boxes.device.type, enabled=False):
        for _ in range(n + 1):
            new_keep = ok & (torch.bmm(keep.float()[:, None], suppress)[:, 0] == 0)
            if torch.equal(new_keep, keep):
                break
            keep = new_keep
    return torch.zeros_like(valid).scatter(1, order, keep)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS (:func:`nms_keep`): indices of the kept ``[N, 4]`` boxes, in decreasing score
    order (ties: the lower index first)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    valid = torch.ones(1, len(scores), dtype=torch.bool, device=boxes.device)
    kept = torch.nonzero(nms_keep(boxes[None], scores[None], valid, iou_threshold)[0]).squeeze(1)
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS done independently within each group (e.g. FPN level), torchvision semantics."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    kept = []
    for g in torch.unique(groups):
        idx = torch.nonzero(groups == g).squeeze(1)
        kept.append(idx[nms(boxes[idx], scores[idx], iou_threshold)])
    keep = torch.cat(kept)
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


def clip_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """``boxes`` ``[..., 4]`` clamped to the image, ``0 <= x <= width``, ``0 <= y <= height``."""
    limits = boxes.new_tensor([width, height, width, height])
    return torch.minimum(boxes.clamp(min=0), limits)


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    return torch.cat((boxes[..., :2], boxes[..., :2] + boxes[..., 2:]), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    return torch.cat((boxes[..., :2], boxes[..., 2:] - boxes[..., :2]), dim=-1)


class BoxCoder:
    """Faster R-CNN (dx, dy, dw, dh) deltas with per-coordinate weights, as torchvision's."""

    def __init__(
        self,
        weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
        clamp: float = math.log(1000.0 / 16),
    ) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.clamp = clamp

    def encode(self, reference: Tensor, target: Tensor) -> Tensor:
        """Deltas that turn ``reference`` boxes into ``target`` boxes (both ``[N, 4]``)."""
        wx, wy, ww, wh = self.weights
        rw = reference[:, 2] - reference[:, 0]
        rh = reference[:, 3] - reference[:, 1]
        rx = reference[:, 0] + 0.5 * rw
        ry = reference[:, 1] + 0.5 * rh
        tw = target[:, 2] - target[:, 0]
        th = target[:, 3] - target[:, 1]
        tx = target[:, 0] + 0.5 * tw
        ty = target[:, 1] + 0.5 * th
        return torch.stack(
            (
                wx * (tx - rx) / rw,
                wy * (ty - ry) / rh,
                ww * torch.log(tw / rw),
                wh * torch.log(th / rh),
            ),
            dim=1,
        )

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Boxes from ``deltas`` ``[N, 4]`` applied to ``reference`` ``[N, 4]``.

        x and y (w and h) as pairs: each op runs once on ``[N, 2]`` where one per coordinate
        would run twice on ``[N]``, with the same arithmetic (the same bits)."""
        deltas = deltas.to(reference.dtype)
        size = reference[:, 2:] - reference[:, :2]
        centre = reference[:, :2] + 0.5 * size
        scaled = deltas / deltas.new_tensor(self.weights)
        centre = scaled[:, :2] * size + centre
        half = 0.5 * (torch.exp(scaled[:, 2:].clamp(max=self.clamp)) * size)
        return torch.cat((centre - half, centre + half), dim=1)
