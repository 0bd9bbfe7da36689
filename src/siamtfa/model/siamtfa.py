"""The SiamTFA network: shared ResNet-FPN with temporal shift, query-guided RPN, RoI stage."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siamtfa.config import ModelConfig
from siamtfa.model.backbone import ResNet
from siamtfa.model.correlation_head import CorrelationHead
from siamtfa.model.csp import CSPNet
from siamtfa.model.fpn import FPN
from siamtfa.model.mobilenet import MobileNetV3
from siamtfa.model.roi_head import RoIHead
from siamtfa.model.rpn import Modulator, RegionProposalNetwork
from siamtfa.ops import multiscale_roi_align, roi_align

STRIDES = [4, 8, 16, 32, 64]  # P2..P6
LOSS_KEYS = ("rpn_cls", "rpn_reg", "rcnn_cls", "rcnn_reg", "adv")
APPEARANCE_LEVEL = 2  # the trunk's stride-16 output (C4), where RoIs are compared for appearance


def _check_images(name: str, images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a [B, 3, H, W] tensor, got {shape}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_boxes(name: str, boxes: Tensor, count: int, present: Tensor | None = None) -> None:
    if not isinstance(boxes, Tensor) or boxes.shape != (count, 4):
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must be a [{count}, 4] tensor of x1, y1, x2, y2, got {shape}")
    rows = range(count) if present is None else torch.nonzero(present).flatten().tolist()
    for i in rows:
        box = boxes[i]
        if not torch.isfinite(box).all():
            raise ValueError(f"{name}[{i}] is not finite: {box.tolist()}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(
                f"{name}[{i}] is empty or degenerate (need x2 > x1, y2 > y1): {box.tolist()}"
            )


class SiamTFA(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bb, temporal = cfg.backbone, cfg.temporal
        shift = (temporal.enabled, temporal.fold_div, temporal.causal)
        if bb.arch == "mobilenet_v3":
            self.backbone = MobileNetV3(bb.norm, "none", bb.frozen_stages, *shift)
        elif bb.arch == "csp":
            self.backbone = CSPNet(bb.norm, bb.frozen_stages, *shift)
        else:
            self.backbone = ResNet(bb.depth, bb.norm, bb.frozen_stages, *shift)
        self.fpn = FPN(self.backbone.out_channels, cfg.fpn_channels)
        self.modulator = Modulator(cfg.fpn_channels, len(STRIDES), cfg.rpn.modulation_proj)
        self.rpn = RegionProposalNetwork(cfg.rpn, cfg.fpn_channels, STRIDES)
        self.roi_head = RoIHead(cfg.roi, cfg.adversarial_dropout, cfg.fpn_channels, STRIDES[:4])
        self.head: CorrelationHead | None = None  # on the trunk, for tracking (not trained)
        if cfg.correlation_head:
            if bb.arch != "mobilenet_v3":
                raise ValueError(
                    "model.correlation_head needs backbone arch 'mobilenet_v3' (NanoTrack's "
                    f"trunk), not {bb.arch!r}"
                )
            self.head = CorrelationHead().requires_grad_(False)

    def pyramid(
        self, images: Tensor, clip_len: int | None, stream: dict | None = None
    ) -> list[Tensor]:
        """P2..P6; ``clip_len`` enables the temporal shift (``None`` for template frames);
        ``stream`` makes it causal across calls (see :class:`TemporalShift`)."""
        return self.fpn(self.backbone(images, clip_len, stream))

    def search_maps(
        self, template: Tensor, search_images: Tensor, clip_len: int, stream: dict | None = None
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
        """The dense part of the search branch: the pyramid P2..P6, on its levels modulated by
        the template the RPN's logits and deltas per level, and the trunk's stride-16 map (for
        :meth:`appearance`). Every shape follows from the input's, with no data-dependent step:
        the part that ``torch.compile`` takes whole."""
        trunk = self.backbone(search_images, clip_len, stream)
        feats = self.fpn(trunk)
        logits, deltas = self.rpn.head_outputs(self.modulator(feats, template, clip_len))
        return feats, logits, deltas, trunk[APPEARANCE_LEVEL]

    def template_features(self, images: Tensor, boxes: Tensor) -> Tensor:
        """The tight ``[N, C, 7, 7]`` template feature of each box (no temporal shift)."""
        _check_images("template_images", images)
        _check_boxes("template_boxes", boxes, images.shape[0])
        feats = self.pyramid(images, None)
        idx = torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)
        rois = torch.cat((idx[:, None], boxes), 1)  # not cast to bf16 maps: see roi_align
        return multiscale_roi_align(
            feats[:4],
            STRIDES[:4],
            rois,
            self.cfg.roi.output_size,
            self.cfg.roi.sampling_ratio,
            aligned=True,
        )

    def appearance(self, trunk: Tensor, rois: Tensor) -> Tensor:
        """Unit vectors ``[K, D]`` of the ``rois`` (rows of batch index, ``x1, y1, x2, y2`` in
        input pixels): their 7x7 RoIAlign on ``trunk``, the trunk's stride-16 map, flattened.
        The trunk, not the pyramid: a converted trunk's features were learned on far more
        images than the layers above it (``TrackingConfig.appearance_weight``)."""
        cfg = self.cfg.roi
        stride = STRIDES[APPEARANCE_LEVEL]
        x = roi_align(
            trunk.float(), rois.float(), cfg.output_size, 1 / stride, cfg.sampling_ratio, True
        )
        return F.normalize(x.flatten(1), dim=1)

    def trunk(self, images: Tensor) -> Tensor:
        """The trunk's stride-16 map of ``images`` (no temporal shift)."""
        return self.backbone(images, None)[APPEARANCE_LEVEL]

    def template_appearance(self, images: Tensor, boxes: Tensor) -> Tensor:
        """:meth:`appearance` of each template box (no temporal shift)."""
        trunk = self.trunk(images)
        idx = torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)
        return self.appearance(trunk, torch.cat((idx[:, None], boxes), 1))

    def forward(
        self,
        template_images: Tensor,
        template_boxes: Tensor,
        search_images: Tensor,
        clip_len: int = 1,
        search_boxes: Tensor | None = None,
        search_present: Tensor | None = None,
        teacher: list[tuple[Tensor, Tensor] | None] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training (``self.training``): the dict of named losses plus ``loss``.
        Inference: per search frame ``{"box", "score", "boxes", "scores"}``, best first.

        ``search_images`` is ``[N * clip_len, 3, H, W]``, clip-major and time-sorted, one clip per
        template; boxes are ``x1, y1, x2, y2`` in input pixels; ``search_present`` (bool ``[N*T]``)
        marks frames whose target is visible (absent frames train only as background);
        ``teacher`` holds each search frame's teacher boxes and probabilities
        (``model.roi.cls_target "teacher"``, :class:`siamtfa.training.teacher.HeadTeacher`).
        """
        template = self.template_features(template_images, template_boxes)
        return self.forward_search(
            template, search_images, clip_len, search_boxes, search_present, teacher=teacher
        )

    def forward_search(
        self,
        template: Tensor,
        search_images: Tensor,
        clip_len: int = 1,
        search_boxes: Tensor | None = None,
        search_present: Tensor | None = None,
        stream: dict | None = None,
        search_maps: Callable | None = None,
        appearance: Tensor | None = None,
        keep_trunk: bool = False,
        teacher: list[tuple[Tensor, Tensor] | None] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """The search branch on a cached template (see :meth:`forward`); with ``stream`` (one
        frame per call) the temporal shift takes its past from the previous call;
        ``search_maps`` stands in for :meth:`search_maps` (the tracker's compiled copy). At
        inference, ``appearance`` (:meth:`template_appearance`, one per template) adds to each
        frame's answer the ``"similarity"`` (cosine) of each of its ranked boxes to it, and
        ``keep_trunk`` its ``"trunk"``, the frame's ``[C, H, W]`` stride-16 trunk map."""
        _check_images("search_images", search_images)
        if clip_len < 1 or search_images.shape[0] != template.shape[0] * clip_len:
            raise ValueError(
                f"search_images has {search_images.shape[0]} frames; expected "
                f"{template.shape[0]} clips x clip_len {clip_len}"
            )
        targets = None
        if self.training:
            if search_boxes is None:
                raise ValueError("training forward needs search_boxes")
            n = search_images.shape[0]
            if search_present is None:
                search_present = torch.ones(n, dtype=torch.bool, device=search_boxes.device)
            _check_boxes("search_boxes", search_boxes, n, search_present)
            targets = [b if p else None for b, p in zip(search_boxes.float(), search_present)]
        image_size = (search_images.shape[-2], search_images.shape[-1])
        maps = search_maps or self.search_maps
        feats, logits, deltas, trunk = maps(template, search_images, clip_len, stream)
        sizes = [tuple(f.shape[-2:]) for f in feats]
        proposals, rpn_losses = self.rpn(logits, deltas, sizes, image_size, targets)
        detections, roi_losses = self.roi_head(
            feats[:4], proposals, template, clip_len, image_size, targets, teacher
        )
        if targets is None:
            if appearance is not None:
                self._add_similarity(detections, trunk, appearance, clip_len)
            if keep_trunk:
                for det, frame_trunk in zip(detections, trunk):
                    det["trunk"] = frame_trunk
            return detections
        losses = {**rpn_losses, **roi_losses}
        losses["loss"] = (
            losses["rpn_cls"]
            + losses["rpn_reg"]
            + losses["rcnn_cls"]
            + losses["rcnn_reg"]
            + self.cfg.adversarial_dropout.weight * losses["adv"]
        )
        return losses

    def _add_similarity(
        self, detections: list[dict[str, Tensor]], trunk: Tensor, appearance: Tensor, clip_len: int
    ) -> None:
        """Each frame's ``"similarity"``: its boxes' :meth:`appearance` against its clip's
        template's."""
        rois = torch.cat(
            [F.pad(d["boxes"].float(), (1, 0), value=i) for i, d in enumerate(detections)]
        )
        vectors = self.appearance(trunk, rois).split([len(d["boxes"]) for d in detections])
        for i, (det, v) in enumerate(zip(detections, vectors)):
            det["similarity"] = v @ appearance[i // clip_len].float()


def build_model(cfg) -> SiamTFA:
    """Build SiamTFA from a :class:`~siamtfa.config.Config` (or its ``model`` part); loads the
    backbone's ImageNet weights when ``model.backbone.weights`` names a file."""
    from siamtfa.config import Config
    from siamtfa.model.backbone import load_backbone_weights

    model_cfg = cfg.model if isinstance(cfg, Config) else cfg
    model = SiamTFA(model_cfg)
    weights = model_cfg.backbone.weights
    if weights:
        report = load_backbone_weights(model.backbone, weights)
        expected = model.backbone.untrained  # the parts no such file holds
        missing = [k for k in report.missing if not k.startswith(expected)]
        unused = [k for k in report.unexpected if not k.startswith("fc.")]  # ImageNet's head
        if missing or unused:
            warnings.warn(
                f"{weights}: {len(missing)} backbone weights missing ({', '.join(missing[:3])}"
                f"{' ...' if len(missing) > 3 else ''}) and {len(unused)} unused "
                f"({', '.join(unused[:3])}{' ...' if len(unused) > 3 else ''}): they start "
                "untrained",
                stacklevel=2,
            )
    return model
