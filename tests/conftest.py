from __future__ import annotations

import pytest
import torch

from siamtfa import build_model
from siamtfa.config import preset


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def small_model(temporal: bool = True, causal: bool = False, adv: bool = True):
    """The ``lite`` architecture with the given ablation switches."""
    cfg = preset("lite")
    cfg.model.temporal.enabled = temporal
    cfg.model.temporal.causal = causal
    cfg.model.adversarial_dropout.enabled = adv
    return build_model(cfg)
