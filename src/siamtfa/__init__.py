"""SiamTFA: end-to-end temporal feature aggregation for siamese trackers."""

from siamtfa import config
from siamtfa.model import SiamTFA, build_model
from siamtfa.tracking import Tracker

__all__ = ["SiamTFA", "Tracker", "build_model", "config"]
__version__ = "0.1.0"
