from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from siamtfa import build_model
from siamtfa.config import preset


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def small_model(temporal: bool = True, causal: bool = False, adv: bool = True, name: str = "lite"):
    """The ``lite`` (or ``name``) architecture with the given ablation switches."""
    cfg = preset(name)
    cfg.model.temporal.enabled = temporal
    cfg.model.temporal.causal = causal
    cfg.model.adversarial_dropout.enabled = adv
    return build_model(cfg)


def official_got10k_overall(root: Path, tracker_name: str) -> dict:
    """The official toolkit's GOT-10k ``val`` report on ``root/data`` and ``root/results``."""
    from got10k.experiments import ExperimentGOT10k

    exp = ExperimentGOT10k(
        str(root / "data"),
        subset="val",
        result_dir=str(root / "results"),
        report_dir=str(root / "reports"),
    )
    exp.report([tracker_name])
    report = root / "reports" / "GOT-10k" / tracker_name / "performance.json"
    return json.loads(report.read_text())[tracker_name]["overall"]
