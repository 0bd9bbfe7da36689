"""Detection ops in plain torch (torchvision's compiled ops do not load with torch 2.13)."""

from siamtfa.ops.boxes import (
    BoxCoder,
    batched_nms,
    best_overlap,
    box_area,
    box_iou,
    clip_boxes,
    nms,
    nms_keep,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from siamtfa.ops.roi_align import level_for_boxes, multiscale_roi_align, roi_align
from siamtfa.ops.temporal_shift import temporal_shift

__all__ = [
    "BoxCoder",
    "batched_nms",
    "best_overlap",
    "box_area",
    "box_iou",
    "clip_boxes",
    "level_for_boxes",
    "multiscale_roi_align",
    "nms",
    "nms_keep",
    "roi_align",
    "temporal_shift",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
