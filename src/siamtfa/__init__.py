"""SiamTFA: end-to-end temporal feature aggregation for siamese trackers."""

from siamtfa import config
from siamtfa.model import SiamTFA, build_model

__all__ = ["SiamTFA", "build_model", "config"]
__version__ = "0.1.0"
