"""Benchmark metrics (numpy only) and result files in the official layouts."""

from siamtfa.evaluation.metrics import (
    ao_difference,
    center_error,
    got10k_metrics,
    normalized_precision,
    otb_metrics,
    rect_iou,
)

__all__ = [
    "ao_difference",
    "center_error",
    "got10k_metrics",
    "normalized_precision",
    "otb_metrics",
    "rect_iou",
]
