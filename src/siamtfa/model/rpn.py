"""Stage 1: template modulation of the search pyramid (paper Eq. 2) and a per-level RPN."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamtfa.config import RPNConfig
from siamtfa.model.anchors import grid_anchors
from siamtfa.model.assign import assign_by_iou, sample_balanced
from siamtfa.ops import BoxCoder, clip_boxes, nms_keep

# (frame, level) IoU matrices are built this many cells at a time: bounded so that NMS's
# temporaries stay cache-sized (measured ~2x faster than one pass over a 3-frame clip)
NMS_BATCH_CELLS = 2**19


class Modulator(nn.Module):
    """``f_mod^i = M(f_avg, f_x^i)``: depth-wise correlation of every search level with the
    global-average-pooled 7x7 template feature, i.e. a channel-wise product (1x1 kernel).

    With ``proj`` a 3x3 conv projects each level before the product and a 1x1 conv after it,
    as in GlobalTrack's query-guided RPN.
    """

    def __init__(self, channels: int, num_levels: int, proj: bool = True) -> None:
        super().__init__()
        self.proj_in = (
            nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(num_levels))
            if proj
            else None
        )
        self.proj_out = (
            nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(num_levels))
            if proj
            else None
        )

    def forward(self, feats: list[Tensor], template: Tensor, clip_len: int) -> list[Tensor]:
        f_avg = template.mean(dim=(2, 3)).repeat_interleave(clip_len, dim=0)[:, :, None, None]
        outs = []
        for i, f in enumerate(feats):
            if self.proj_in is not None:
                f = self.proj_in[i](f)
            f = f * f_avg
            if self.proj_out is not None:
                f = self.proj_out[i](f)
            outs.append(f)
        return outs


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then sibling 1x1 convs: ``2k`` fg/bg logits and ``4k`` box deltas."""

    def __init__(self, channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.cls = nn.Conv2d(channels, 2 * num_anchors, 1)
        self.reg = nn.Conv2d(channels, 4 * num_anchors, 1)
        for m in (self.conv, self.cls, self.reg):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        self.k = num_anchors

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``[B, H*W*k, 2]`` and deltas ``[B, H*W*k, 4]``, ordered like the anchors."""
        t = F.relu(self.conv(x))
        b, _, h, w = t.shape
        logits = self.cls(t).view(b, self.k, 2, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 2)
        deltas = self.reg(t).view(b, self.k, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
        return logits, deltas


class RegionProposalNetwork(nn.Module):
    def __init__(self, cfg: RPNConfig, channels: int, strides: list[int]) -> None:
        super().__init__()
        if len(cfg.anchor_sizes) != len(strides):
            raise ValueError(f"rpn.anchor_sizes needs one size per FPN level ({len(strides)})")
        self.cfg = cfg
        self.strides = strides
        self.heads = nn.ModuleList(RPNHead(channels, len(cfg.aspect_ratios)) for _ in strides)
        self.coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        # anchors by (map sizes, device): a tracker asks for the same few sizes every frame
        self._anchors: dict[tuple, list[Tensor]] = {}

    def head_outputs(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Each level's logits ``[B, H*W*k, 2]`` and deltas ``[B, H*W*k, 4]`` (anchors' order)."""
        outs = [head(f) for head, f in zip(self.heads, feats)]
        return [o[0] for o in outs], [o[1] for o in outs]

    def anchors(self, sizes: list[tuple[int, int]], device: torch.device) -> list[Tensor]:
        """Each level's anchors for feature maps of ``sizes`` (H, W); read-only (cached)."""
        key = (tuple(tuple(hw) for hw in sizes), str(device))
        if key not in self._anchors:
            if len(self._anchors) >= 8:  # frames of many sizes: keep the cache small
                self._anchors.clear()
            self._anchors[key] = [
                grid_anchors(tuple(hw), s, a, self.cfg.aspect_ratios, device)
                for hw, s, a in zip(sizes, self.strides, self.cfg.anchor_sizes)
            ]
        return self._anchors[key]

    def forward(
        self,
        logits: list[Tensor],
        deltas: list[Tensor],
        sizes: list[tuple[int, int]],
        image_size: tuple[int, int],
        targets: list[Tensor | None] | None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals per frame (``[R, 4]``, detached, best first) from :meth:`head_outputs` on
        maps of ``sizes`` and, given targets, the losses."""
        anchors = self.anchors(sizes, logits[0].device)
        proposals = self.propose(logits, deltas, anchors, image_size)
        losses: dict[str, Tensor] = {}
        if targets is not None:
            losses = self.loss(
                torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors), targets
            )
        return proposals, losses

    @torch.no_grad()
    def propose(
        self,
        logits: list[Tensor],
        deltas: list[Tensor],
        anchors: list[Tensor],
        image_size: tuple[int, int],
    ) -> list[Tensor]:
        cfg = self.cfg
        pre_n = cfg.pre_nms_top_n_train if self.training else cfg.pre_nms_top_n_test
        post_n = cfg.post_nms_top_n_train if self.training else cfg.post_nms_top_n_test
        frames = logits[0].shape[0]
        scores, picked_deltas, picked_anchors = [], [], []
        for lg, dl, an in zip(logits, deltas, anchors):  # every frame at once, level by level
            objectness = (lg[..., 1] - lg[..., 0]).float()  # monotone in softmax fg prob
            top = objectness.topk(min(pre_n, objectness.shape[1]), dim=1).indices  # [B, k]
            scores.append(objectness.gather(1, top))
            picked_deltas.append(dl.gather(1, top[..., None].expand(-1, -1, 4)))
            picked_anchors.append(an[top])
        # decoded for every level at once: one pass of each op instead of one per level
        decoded = self.coder.decode(
            torch.cat(picked_deltas, 1).float().view(-1, 4),
            torch.cat(picked_anchors, 1).view(-1, 4),
        )
        decoded = clip_boxes(decoded, *image_size).view(frames, -1, 4)
        boxes = decoded.split([s.shape[1] for s in scores], dim=1)
        # [B, L, n]: each level's top-n, padded where a level has fewer anchors
        n = max(s.shape[1] for s in scores)
        boxes_t = torch.stack([F.pad(b, (0, 0, 0, n - b.shape[1])) for b in boxes], 1)
        scores_t = torch.stack([F.pad(s, (0, n - s.shape[1]), value=-math.inf) for s in scores], 1)
        wh = boxes_t[..., 2:] - boxes_t[..., :2]
        valid = (wh >= cfg.min_box_size).all(-1) & torch.isfinite(scores_t)
        # NMS within each frame and level, as many (frame, level) rows at a time as fit
        rows = frames * len(scores)
        row_boxes, row_scores, row_valid = (
            boxes_t.view(rows, n, 4),
            scores_t.view(rows, n),
            valid.view(rows, n),
        )
        step = max(1, NMS_BATCH_CELLS // n**2)
        keep = [
            nms_keep(
                row_boxes[i : i + step],
                row_scores[i : i + step],
                row_valid[i : i + step],
                cfg.nms_thresh,
            )
            for i in range(0, rows, step)
        ]
        kept = torch.cat(keep).view(frames, -1)
        # per frame, best first; ties: the lower level, then the level's top-k order
        ranked = torch.where(kept, scores_t.view(frames, -1), -math.inf)
        order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
        counts = kept.sum(1).clamp(max=post_n).tolist()
        flat = boxes_t.view(frames, -1, 4)
        return [flat[b, order[b, :c]] for b, c in enumerate(counts)]

    def loss(
        self, logits: Tensor, deltas: Tensor, anchors: Tensor, targets: list[Tensor | None]
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        cls_idx, cls_lab, reg_pred, reg_tgt = [], [], [], []
        for b, target in enumerate(targets):
            labels = assign_by_iou(anchors, target, cfg.fg_iou, cfg.bg_iou, True)
            pos, neg = sample_balanced(labels, cfg.batch_size_per_image, cfg.positive_fraction)
            idx = torch.cat((pos, neg))
            cls_idx.append(logits[b, idx])
            cls_lab.append(labels[idx])
            if pos.numel():
                reg_pred.append(deltas[b, pos])
                reg_tgt.append(self.coder.encode(anchors[pos], target.expand(pos.numel(), 4)))
        sampled_logits = torch.cat(cls_idx)
        num = max(sampled_logits.shape[0], 1)
        cls_loss = (
            F.cross_entropy(sampled_logits.float(), torch.cat(cls_lab), reduction="sum") / num
        )
        if reg_pred:
            reg_loss = (
                F.smooth_l1_loss(
                    torch.cat(reg_pred).float(),
                    torch.cat(reg_tgt),
                    beta=cfg.smooth_l1_beta,
                    reduction="sum",
                )
                / num
            )
        else:
            reg_loss = deltas.sum() * 0.0
        return {"rpn_cls": cls_loss, "rpn_reg": reg_loss}
