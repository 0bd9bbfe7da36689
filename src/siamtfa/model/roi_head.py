"""Stage 2: RoIAlign features times the template feature (paper Eq. 3), adversarial dropout,
two shared FC layers and sibling 2-way classifier / class-agnostic box regressor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamtfa.config import AdversarialDropoutConfig, RoIConfig
from siamtfa.model.adversarial_dropout import AdversarialDropout, kl_from_logits
from siamtfa.model.assign import assign_by_iou, sample_balanced
from siamtfa.ops import BoxCoder, best_overlap, box_iou, clip_boxes, multiscale_roi_align


class RoIHead(nn.Module):
    def __init__(
        self, cfg: RoIConfig, adv: AdversarialDropoutConfig, channels: int, strides: list[int]
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.strides = strides
        self.fc1 = nn.Linear(channels * cfg.output_size**2, cfg.fc_dim)
        self.fc2 = nn.Linear(cfg.fc_dim, cfg.fc_dim)
        self.cls = nn.Linear(cfg.fc_dim, 2)
        self.reg = nn.Linear(cfg.fc_dim, 4)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.reg.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.reg.bias)
        self.coder = BoxCoder(cfg.box_coder_weights)
        self.dropout = (
            AdversarialDropout(adv.mode, adv.delta, adv.keep_prob) if adv.enabled else None
        )

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``h``: fused features ``[R, C, 7, 7]`` -> logits ``[R, 2]``, deltas ``[R, 4]``."""
        t = F.relu(self.fc1(x.flatten(1)))
        t = F.relu(self.fc2(t))
        return self.cls(t), self.reg(t)

    def fused_features(
        self, feats: list[Tensor], rois: list[Tensor], template: Tensor, clip_len: int
    ) -> Tensor:
        """Eq. 3: ``X = R(b, F_x) * f_z`` for the RoIs of every frame."""
        frame = torch.cat(
            [torch.full((len(r),), i, device=template.device) for i, r in enumerate(rois)]
        )
        boxes = torch.cat(rois)  # in their own dtype: roi_align samples in float32 or wider
        boxes = torch.cat((frame[:, None].to(boxes.dtype), boxes), 1)
        pooled = multiscale_roi_align(
            feats, self.strides, boxes, self.cfg.output_size, self.cfg.sampling_ratio, aligned=True
        )
        # the contiguous template first: the product (fc1's input) comes out in NCHW order in
        # one pass from the channels_last RoI features, not as a copy that fc1 must transpose
        template = template.contiguous()
        return (template if len(template) == 1 else template[frame // clip_len]) * pooled

    def forward(
        self,
        feats: list[Tensor],
        proposals: list[Tensor],
        template: Tensor,
        clip_len: int,
        image_size: tuple[int, int],
        targets: list[Tensor | None] | None = None,
        teacher: list[tuple[Tensor, Tensor] | None] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if targets is None:
            return self.detect(feats, proposals, template, clip_len, image_size), {}
        return [], self.loss(feats, proposals, template, clip_len, targets, teacher)

    def detect(
        self,
        feats: list[Tensor],
        proposals: list[Tensor],
        template: Tensor,
        clip_len: int,
        image_size: tuple[int, int],
    ) -> list[dict[str, Tensor]]:
        x = self.fused_features(feats, proposals, template, clip_len)
        logits, deltas = self.predict(x)
        scores = logits.float().softmax(-1)[:, 1]
        boxes = clip_boxes(
            self.coder.decode(deltas.float(), torch.cat(proposals).float()), *image_size
        )
        out, start = [], 0
        for props in proposals:
            s, b = scores[start : start + len(props)], boxes[start : start + len(props)]
            start += len(props)
            order = torch.sort(s, descending=True, stable=True).indices
            s, b = s[order], b[order]
            if len(order):
                out.append({"box": b[0], "score": s[0], "boxes": b, "scores": s})
            else:  # no proposal survived: report an empty, zero-score answer
                out.append(
                    {"box": b.new_zeros(4), "score": s.new_zeros(()), "boxes": b, "scores": s}
                )
        return out

    def cls_targets(
        self,
        labels: Tensor,
        deltas: Tensor,
        rois: Tensor,
        gt: Tensor,
        taught: Tensor | None = None,
    ) -> Tensor:
        """The classifier's targets for RoIs with ``labels`` (1 foreground, 0 background):
        the labels (``cls_target "binary"``), or ``[R, 2]`` class probabilities whose foreground
        share is the IoU of each foreground RoI's regressed box (``deltas`` on ``rois``, not
        differentiated) with its target box ``gt`` (``"iou"``), or ``(1 - w) x label + w x
        taught``, the teacher's agreement with each RoI (``"teacher"``, ``w`` its weight)."""
        if self.cfg.cls_target == "binary":
            return labels
        if self.cfg.cls_target == "teacher":
            if taught is None:
                raise ValueError("model.roi.cls_target 'teacher' needs a teacher (train.teacher)")
            w = self.cfg.teacher_weight
            share = (1 - w) * labels.float() + w * taught
            return torch.stack((1 - share, share), 1)
        fg = labels == 1
        quality = torch.zeros(len(labels), device=rois.device)
        with torch.no_grad():
            regressed = self.coder.decode(deltas[fg].detach().float(), rois[fg])
            quality[fg] = box_iou(regressed, gt[fg]).diagonal()
        return torch.stack((1 - quality, quality), 1)

    def loss(
        self,
        feats: list[Tensor],
        proposals: list[Tensor],
        template: Tensor,
        clip_len: int,
        targets: list[Tensor | None],
        teacher: list[tuple[Tensor, Tensor] | None] | None = None,
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        rois, labels, gt_boxes, taught = [], [], [], []
        for i, (props, target) in enumerate(zip(proposals, targets)):
            cand = props if target is None else torch.cat((props, target[None].to(props.dtype)))
            lab = assign_by_iou(cand, target, cfg.fg_iou, cfg.bg_iou, False)
            pos, neg = sample_balanced(lab, cfg.batch_size_per_image, cfg.positive_fraction)
            idx = torch.cat((pos, neg))
            rois.append(cand[idx])
            labels.append(lab[idx])
            gt = torch.zeros(len(idx), 4, device=cand.device)  # the target of each positive
            if target is not None:
                gt[: pos.numel()] = target.float()
            gt_boxes.append(gt)
            if teacher is not None:
                taught.append(_agreement(rois[-1], labels[-1], teacher[i]))
        x = self.fused_features(feats, rois, template, clip_len)
        labels_t, gt_t, rois_t = torch.cat(labels), torch.cat(gt_boxes), torch.cat(rois).float()
        taught_t = torch.cat(taught) if teacher is not None else None
        if self.dropout is not None:
            mask = self.dropout.random_mask(x)
            logits, deltas = self.predict(self.dropout.apply(x, mask))
        else:
            logits, deltas = self.predict(x)
        num = max(len(labels_t), 1)
        fg = labels_t == 1
        reg_t = self.coder.encode(rois_t[fg], gt_t[fg])
        losses = {
            "rcnn_cls": F.cross_entropy(
                logits.float(),
                self.cls_targets(labels_t, deltas, rois_t, gt_t, taught_t),
                reduction="sum",
            )
            / num,
            "rcnn_reg": F.smooth_l1_loss(
                deltas[fg].float(), reg_t, beta=cfg.smooth_l1_beta, reduction="sum"
            )
            / num,
        }
        if self.dropout is not None and len(labels_t):
            adv_mask = self.dropout.adversarial_mask(x, mask, lambda z: self.predict(z)[0], logits)
            adv_logits, _ = self.predict(self.dropout.apply(x, adv_mask))
            # Eq. 5; the random-mask prediction is the target distribution (VAT convention)
            losses["adv"] = kl_from_logits(logits.detach().float(), adv_logits.float())
        else:
            losses["adv"] = logits.sum() * 0.0
        return losses


def _agreement(rois: Tensor, labels: Tensor, taught: tuple[Tensor, Tensor] | None) -> Tensor:
    """Each RoI's agreement with a teacher's boxes ``[K, 4]`` and probabilities ``[K]``: the
    largest probability x IoU; its label where the teacher did not look (an absent target)."""
    if taught is None:
        return labels.float()
    boxes, probs = taught
    return best_overlap(box_iou(rois.float(), boxes.float()), probs)
