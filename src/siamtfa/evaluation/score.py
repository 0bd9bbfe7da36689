"""The one scorer of tracked boxes against a data set: GOT-10k's metrics (AO, SR; frames
pooled, the first and the absent ones left out) of boxes by sequence name."""

from __future__ import annotations

import numpy as np

from siamtfa.data.datasets import Sequence
from siamtfa.data.sampling import frame_size
from siamtfa.evaluation.metrics import GOT10kResult, got10k_metrics


def cover_of(seq: Sequence) -> np.ndarray:
    """GOT-10k cover labels (0..8), or 8 / 0 from visibility where a dataset has none."""
    return seq.cover if seq.cover is not None else seq.visible.astype(int) * 8


def score(boxes: dict[str, np.ndarray], sequences: list[Sequence]) -> GOT10kResult:
    """GOT-10k metrics of ``boxes`` (by sequence name) over ``sequences``."""
    return got10k_metrics(
        {s.name: boxes[s.name] for s in sequences},
        {s.name: s.boxes for s in sequences},
        {s.name: cover_of(s) for s in sequences},
        {s.name: frame_size(s) for s in sequences},
    )
