"""The training engine."""

from siamtfa.training.engine import Trainer, TrainResult, lr_at, train

__all__ = ["TrainResult", "Trainer", "lr_at", "train"]
