"""Benchmark metrics (numpy only) and result files in the official layouts."""

from siamtfa.evaluation.metrics import (
    center_error,
    got10k_metrics,
    normalized_precision,
    otb_metrics,
    rect_iou,
)

__all__ = ["center_error", "got10k_metrics", "normalized_precision", "otb_metrics", "rect_iou"]
