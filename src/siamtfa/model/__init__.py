"""The SiamTFA network and its parts."""

from siamtfa.model.adversarial_dropout import AdversarialDropout
from siamtfa.model.backbone import FrozenBatchNorm2d, ResNet, load_backbone_weights
from siamtfa.model.siamtfa import LOSS_KEYS, STRIDES, SiamTFA, build_model

__all__ = [
    "LOSS_KEYS",
    "STRIDES",
    "AdversarialDropout",
    "FrozenBatchNorm2d",
    "ResNet",
    "SiamTFA",
    "build_model",
    "load_backbone_weights",
]
