"""The training engine."""

from siamtfa.training.engine import TrainResult, lr_at, train

__all__ = ["TrainResult", "lr_at", "train"]
