"""Tune the box-selection prior (``TrackingConfig``) on validation sequences.

In ``online`` mode with the whole frame searched and the first template kept, the network's
ranked RoIs do not depend on the boxes chosen before: each sequence is run through the network
once and every candidate setting is replayed on the stored RoIs, which makes a grid search cost
seconds. The search region and the template update do change the RoIs; those are scored by
tracking in full (``track_all``, then ``siamtfa.evaluation.score``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from siamtfa.config import TrackingConfig
from siamtfa.data.datasets import Sequence
from siamtfa.data.sampling import frame_size
from siamtfa.evaluation.metrics import got10k_metrics
from siamtfa.evaluation.score import cover_of
from siamtfa.tracking.selection import next_box
from siamtfa.tracking.tracker import Tracker

GRID: dict[str, tuple[float, ...]] = {
    "window_influence": (0.0, 0.2, 0.4, 0.6, 0.8),
    "window_sigma": (0.5, 1.0, 2.0, 4.0),
    "window_lead": (0.0, 0.5, 1.0),
    "scale_penalty": (0.0, 0.3, 1.0, 3.0),
    "size_lr": (0.3, 0.6, 1.0),
}


@dataclass
class RecordedSequence:
    """One sequence's ground truth and, per frame after the first, the ranked RoIs."""

    name: str
    ground_truth: np.ndarray  # [N, 4] x, y, w, h
    cover: np.ndarray
    size: tuple[int, int]  # W, H
    candidates: list[tuple[np.ndarray, np.ndarray]]  # per frame 1..N-1: boxes xyxy, scores


def record(tracker: Tracker, sequences: list[Sequence], progress: bool = True) -> list:
    """Run ``tracker`` (online mode) over each sequence, keeping every frame's ranked RoIs."""
    if tracker.mode != "online":
        raise ValueError("tuning replays online-mode RoIs: use an online tracker")
    if tracker.tracking.search_target_size or tracker.tracking.template_update:
        raise ValueError("a search region or template update makes the RoIs depend on the boxes")
    out = []
    for seq in tqdm(sequences, desc="record RoIs", disable=not progress):
        tracker.init(seq.frames[0], seq.boxes[0])
        candidates = []
        for frame in seq.frames[1:]:
            tracker.update(frame)
            candidates.append(tracker.candidates)
        truth = (seq.boxes, cover_of(seq), frame_size(seq))
        out.append(RecordedSequence(seq.name, *truth, candidates))
    return out


def replay(seq: RecordedSequence, cfg: TrackingConfig) -> np.ndarray:
    """The boxes the online tracker with selection ``cfg`` gives on ``seq``."""
    boxes = [np.asarray(seq.ground_truth[0], np.float64)]
    for cand_boxes, scores in seq.candidates:
        earlier = boxes[-2] if len(boxes) > 1 else None
        if len(cand_boxes):
            boxes.append(next_box(boxes[-1], cand_boxes, scores, cfg, seq.size, earlier)[0])
        else:
            boxes.append(boxes[-1])
    return np.stack(boxes)


def average_overlap(recorded: list[RecordedSequence], cfg: TrackingConfig) -> float:
    """GOT-10k AO of selection ``cfg`` over the recorded sequences."""
    return got10k_metrics(
        {s.name: replay(s, cfg) for s in recorded},
        {s.name: s.ground_truth for s in recorded},
        {s.name: s.cover for s in recorded},
        {s.name: s.size for s in recorded},
    ).ao


def track_all(
    tracker: Tracker, sequences: list[Sequence], progress: bool = True
) -> dict[str, np.ndarray]:
    """The boxes of ``tracker`` run in full over each sequence, by sequence name."""
    return {
        s.name: tracker.track(s.frames, s.boxes[0])[0]
        for s in tqdm(sequences, desc="track", disable=not progress)
    }


def grid_search(
    recorded: list[RecordedSequence],
    grid: dict[str, tuple[float, ...]] | None = None,
    progress: bool = True,
) -> list[tuple[float, TrackingConfig]]:
    """Every setting of ``grid`` (default ``GRID``) with its AO, best first; ties keep the
    earlier (simpler) setting."""
    grid = grid or GRID
    keys = list(grid)
    settings = [
        replace(TrackingConfig(), **dict(zip(keys, values)))
        for values in itertools.product(*(grid[k] for k in keys))
    ]
    ranked = [
        (average_overlap(recorded, cfg), i, cfg)
        for i, cfg in enumerate(tqdm(settings, desc="grid", disable=not progress))
    ]
    ranked.sort(key=lambda t: (-t[0], t[1]))
    return [(ao, cfg) for ao, _, cfg in ranked]
