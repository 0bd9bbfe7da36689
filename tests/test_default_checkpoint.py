"""The shipped default checkpoint: size, format, and that it tracks far better than untrained
weights on synthetic sequences it was never trained on (training used seed 1000)."""

from __future__ import annotations

import pytest
import torch

import siamtfa.tracking.tracker as tracker_mod
from siamtfa.checkpoint import load_checkpoint
from siamtfa.data.synthetic import SyntheticSequence, render_sequence
from siamtfa.ops import box_iou, xywh_to_xyxy
from siamtfa.tracking import Tracker
from siamtfa.tracking.tracker import DEFAULT_CHECKPOINT, default_tracker_source

pytestmark = pytest.mark.skipif(
    not DEFAULT_CHECKPOINT.is_file(), reason="no default checkpoint in this checkout"
)


def mean_iou(tracker: Tracker, sequences: list[SyntheticSequence]) -> float:
    """IoU with the truth averaged over frames 1.. (frame 0 is the given box) and sequences."""
    ious = []
    for seq in sequences:
        boxes, _ = tracker.track(seq.frames, seq.boxes[0])
        pred = xywh_to_xyxy(torch.as_tensor(boxes[1:], dtype=torch.float64))
        truth = xywh_to_xyxy(torch.as_tensor(seq.boxes[1:], dtype=torch.float64))
        ious.append(box_iou(pred, truth).diagonal())
    return float(torch.cat(ious).mean())


def test_checkpoint_is_small_fp16_and_loads_weights_only() -> None:
    assert DEFAULT_CHECKPOINT.stat().st_size <= 50 * 2**20
    state = load_checkpoint(DEFAULT_CHECKPOINT)  # weights_only=True
    floats = [v for v in state["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert "optimizer" not in state
    assert state["config"]["model"]["backbone"]["arch"] == "mobilenet_v3"  # the mobile preset
    source, _, trained = default_tracker_source()
    assert trained and source == DEFAULT_CHECKPOINT


@pytest.mark.slow
def test_trained_default_tracks_unseen_sequences_better_than_untrained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sequences = [render_sequence(31337, i, 40) for i in range(3)]
    trained = mean_iou(Tracker(DEFAULT_CHECKPOINT, "online", "cpu"), sequences)
    # the fallback used when no checkpoint ships: untrained lite weights
    monkeypatch.setattr(tracker_mod, "DEFAULT_CHECKPOINT", DEFAULT_CHECKPOINT.with_name("no.pt"))
    model, size, is_trained = default_tracker_source()
    assert not is_trained
    untrained = mean_iou(Tracker(model, "online", "cpu", size), sequences)
    # trained: 0.439 with the mobile default (0.604 with the lite one it replaced), untrained 0.032
    assert trained > 0.40, (trained, untrained)
    assert trained > untrained + 0.25, (trained, untrained)


def test_tracker_without_a_model_is_the_shipped_default() -> None:
    seq = render_sequence(31337, 7, 6)
    ours, _ = Tracker().track(seq.frames, seq.boxes[0])
    named, _ = Tracker(DEFAULT_CHECKPOINT, "online", "cpu").track(seq.frames, seq.boxes[0])
    assert ours.tolist() == named.tolist()
