"""NanoTrack's pretrained correlation head as a teacher for SiamTFA's RoI classifier.

The classifier, trained here on a few real sequences, ranks its RoIs poorly (the model card);
NanoTrack's head, trained on large tracking datasets on the very trunk the ``mobile`` model
shares, ranks the same targets better. With ``model.roi.cls_target: teacher`` each sampled
RoI's target mixes its label with the head's agreement with it (the largest probability x IoU
over the head's boxes), so the classifier learns the teacher's ranking of look-alikes too. The
teacher looks as in tracking (``siamtfa.tracking.head_look``): a 127-pixel template crop, a
255-pixel search crop, here taken from the training batch's prepared frames and centred on
each frame's target.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamtfa.config import Config
from siamtfa.model.convert import nanotrack_head
from siamtfa.model.correlation_head import CorrelationHead
from siamtfa.tracking.head_look import (
    SEARCH_SIZE,
    TEMPLATE_SIZE,
    context_side,
    crop_to_image,
    decode,
)


def square_crops(images: Tensor, centres: Tensor, sides: Tensor, size: int) -> Tensor:
    """``images [B, C, H, W]``'s ``sides [B]``-pixel squares centred on ``centres [B, 2]``
    (x, y) resized to ``size x size`` (bilinear), padded with each image's mean: the geometry
    of :func:`siamtfa.tracking.head_look.square_crop`, batched."""
    height, width = images.shape[-2:]
    steps = (torch.arange(size, device=images.device, dtype=torch.float32) + 0.5) / size
    # output pixel u samples image pixel (u + 0.5) * side / size - 0.5 + centre - side / 2
    pos = steps[None] * sides[:, None, None] - 0.5 + centres[:, :, None] - sides[:, None, None] / 2
    gx = (2 * pos[:, 0] + 1) / width - 1  # grid_sample's coordinates (align_corners=False)
    gy = (2 * pos[:, 1] + 1) / height - 1
    grid = torch.stack(
        (gx[:, None, :].expand(-1, size, -1), gy[:, :, None].expand(-1, -1, size)), -1
    )
    mean = images.float().mean((2, 3), keepdim=True)
    return F.grid_sample(images.float() - mean, grid, align_corners=False) + mean


def _crop_geometry(boxes: Tensor, factor: float) -> tuple[Tensor, Tensor]:
    """Centres ``[B, 2]`` and ``factor`` x NanoTrack's context sides ``[B]`` of ``x1, y1, x2,
    y2`` boxes (at least a pixel wide)."""
    boxes = boxes.float()
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
    sides = [factor * context_side(w, h) for w, h in wh.tolist()]
    return (boxes[:, :2] + boxes[:, 2:]) / 2, torch.tensor(sides, device=boxes.device)


class HeadTeacher:
    """``HeadTeacher(trunk, head)``: ``trunk`` maps prepared frames ``[B, 3, S, S]`` to their
    stride-16 map (the model's own frozen trunk), ``head`` is NanoTrack's converted head."""

    def __init__(self, trunk: Callable[[Tensor], Tensor], head: CorrelationHead) -> None:
        self.trunk, self.head = trunk, head.eval()

    @torch.no_grad()
    def __call__(
        self,
        template_images: Tensor,
        template_boxes: Tensor,
        search_images: Tensor,
        search_boxes: Tensor,
        present: Tensor,
        clip_len: int,
    ) -> list[tuple[Tensor, Tensor] | None]:
        """Per search frame, the head's boxes ``[K, 4]`` (``x1, y1, x2, y2`` in the frame's
        input pixels) and target probabilities ``[K]`` around its target, from its clip's
        template; None where the target is absent (``present``)."""
        centres, sides = _crop_geometry(template_boxes, 1.0)
        template = self.trunk(square_crops(template_images, centres, sides, TEMPLATE_SIZE))
        centres, sides = _crop_geometry(search_boxes, 2.0)
        search = self.trunk(square_crops(search_images, centres, sides, SEARCH_SIZE))
        logits, distances = self.head(template.repeat_interleave(clip_len, 0), search)
        out: list[tuple[Tensor, Tensor] | None] = []
        for i, seen in enumerate(present.tolist()):
            if not seen:
                out.append(None)
                continue
            boxes, probs = decode(logits[i : i + 1], distances[i : i + 1])
            (cx, cy), side = centres[i].tolist(), float(sides[i])
            boxes = crop_to_image(boxes, cx, cy, side).astype(np.float32)
            device = search_images.device
            out.append((torch.from_numpy(boxes).to(device), torch.from_numpy(probs).to(device)))
        return out


def make_teacher(cfg: Config, model: nn.Module, device: torch.device) -> HeadTeacher | None:
    """The RoI classifier's teacher (``model.roi.cls_target "teacher"``): NanoTrack's head
    from ``train.teacher`` on ``model``'s trunk; None for the other targets."""
    if cfg.model.roi.cls_target != "teacher":
        return None
    if not cfg.train.teacher:
        raise ValueError("model.roi.cls_target 'teacher' needs train.teacher: NanoTrack v2's head")
    if cfg.model.backbone.arch != "mobilenet_v3":
        raise ValueError(
            "model.roi.cls_target 'teacher' needs backbone arch 'mobilenet_v3' (NanoTrack's "
            f"trunk), not {cfg.model.backbone.arch!r}"
        )
    head = CorrelationHead().requires_grad_(False)
    head.load_state_dict(nanotrack_head(cfg.train.teacher))
    return HeadTeacher(model.trunk, head.to(device))
