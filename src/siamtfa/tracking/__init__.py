"""Trackers: SiamTFA (online / clip modes) and OpenCV baselines."""

from siamtfa.tracking.baselines import OpenCVTracker
from siamtfa.tracking.tracker import Tracker, load_model

__all__ = ["OpenCVTracker", "Tracker", "load_model"]
