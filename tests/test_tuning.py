"""Tuning the selection prior: the replay reproduces the tracker, the grid search finds the
prior that a distractor calls for, and ``siamtfa export`` writes a usable fp16 checkpoint."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from siamtfa import build_model
from siamtfa.checkpoint import load_checkpoint, save_checkpoint
from siamtfa.cli import main as siamtfa
from siamtfa.config import TrackingConfig, from_dict, to_dict
from siamtfa.data.datasets import read_dataset
from siamtfa.data.synthetic import make_synthetic
from siamtfa.tracking import Tracker
from siamtfa.tracking.selection import is_paper_rule
from siamtfa.tracking.tuning import RecordedSequence, average_overlap, grid_search, record, replay

from .conftest import small_model

SMALL = {"preset": "lite", "input": {"max_size": 128, "min_size": 96}}
PRIOR = TrackingConfig(
    window_influence=0.5, window_sigma=1.0, window_lead=1.0, scale_penalty=0.3, size_lr=0.5
)


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, 2, 6, seed=31, size=(128, 96), progress=False)
    return root, read_dataset("got10k", root)


def test_replay_reproduces_the_tracker(sequences) -> None:
    _, seqs = sequences
    model = small_model().eval()
    recorded = record(Tracker(model, "online", "cpu", from_dict(SMALL).input), seqs, False)
    tracker = Tracker(model, "online", "cpu", from_dict(SMALL).input, tracking=PRIOR)
    for seq, rec in zip(seqs, recorded):
        boxes, _ = tracker.track(seq.frames, seq.boxes[0])
        np.testing.assert_allclose(replay(rec, PRIOR), boxes, atol=1e-4)
    # where the RoIs depend on the chosen boxes a replay would be wrong
    for changes_rois in (
        TrackingConfig(search_target_size=40),
        TrackingConfig(template_update=0.2),
    ):
        with pytest.raises(ValueError, match="depend on the boxes"):
            record(Tracker(model, "online", "cpu", tracking=changes_rois), seqs, False)


@pytest.mark.slow
def test_grid_search_finds_the_motion_prior_a_distractor_needs() -> None:
    # the target walks right by 4 px a frame; a look-alike far away always scores higher
    n = 20
    truth = np.array([[20.0 + 4 * t, 40.0, 20.0, 20.0] for t in range(n)])
    candidates = []
    for t in range(1, n):
        x, y, w, h = truth[t]
        target = [x, y, x + w, y + h]
        distractor = [200.0, 150.0, 220.0, 170.0]
        candidates.append((np.array([distractor, target]), np.array([0.9, 0.8])))
    rec = RecordedSequence("walk", truth, np.full(n, 8), (320, 240), candidates)
    paper = average_overlap([rec], TrackingConfig())
    ranked = grid_search([rec], progress=False)
    best_ao, best = ranked[0]
    assert paper == pytest.approx(0.0)  # the paper's rule jumps to the distractor
    assert best_ao == pytest.approx(1.0) and best.window_influence > 0
    assert [ao for ao, _ in ranked] == sorted((ao for ao, _ in ranked), reverse=True)


@pytest.mark.slow
def test_grid_search_finds_the_lead_a_fast_target_needs() -> None:
    # the target runs right by 1.5 box sizes a frame; from frame 2 on, a look-alike scoring
    # higher sits where the target was a frame earlier: only a window that leads by the last
    # motion keeps the target
    n = 20
    truth = np.array([[20.0 + 30 * t, 40.0, 20.0, 20.0] for t in range(n)])
    xyxy = np.concatenate([truth[:, :2], truth[:, :2] + truth[:, 2:]], axis=1)
    candidates = [(xyxy[1:2], np.array([0.8]))]
    candidates += [(np.stack([xyxy[t - 1], xyxy[t]]), np.array([0.9, 0.8])) for t in range(2, n)]
    rec = RecordedSequence("run", truth, np.full(n, 8), (640, 240), candidates)
    ranked = grid_search([rec], progress=False)
    best_ao, best = ranked[0]
    assert best_ao == pytest.approx(1.0) and best.window_lead > 0
    assert max(ao for ao, cfg in ranked if cfg.window_lead == 0) < 0.2


@pytest.mark.slow
def test_export_writes_a_tuned_half_precision_checkpoint(tmp_path: Path, sequences) -> None:
    root, seqs = sequences
    model = small_model().eval()
    state = {"model": model.state_dict(), "config": to_dict(from_dict(SMALL)), "iteration": 7}
    save_checkpoint({**state, "optimizer": {"big": torch.zeros(1000)}}, tmp_path / "last.pt")
    out = tmp_path / "default.pt"
    assert siamtfa(["export", str(tmp_path / "last.pt"), str(out), "--tune", f"got10k={root}"]) == 0
    exported = load_checkpoint(out)
    assert exported["iteration"] == 7 and "optimizer" not in exported
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert exported["model"][key].dtype == torch.float16, key
            torch.testing.assert_close(exported["model"][key].float(), value, rtol=1e-3, atol=1e-4)
    tuning = exported["tuning"]
    assert tuning["ao"] >= tuning["paper_rule_ao"]
    tracker = Tracker(out, "online", "cpu")
    assert is_paper_rule(tracker.tracking) == (tuning["ao"] <= tuning["paper_rule_ao"])
    boxes, _ = tracker.track(seqs[0].frames, seqs[0].boxes[0])
    assert boxes.shape == (len(seqs[0]), 4) and np.isfinite(boxes).all()


@pytest.mark.slow
def test_export_pools_several_tune_sets(
    tmp_path: Path, sequences, capsys: pytest.CaptureFixture
) -> None:
    root, seqs = sequences
    other = tmp_path / "other"
    make_synthetic(other, 2, 6, seed=32, size=(128, 96), progress=False)
    model, last, out = _untrained_checkpoint(tmp_path)
    args = ["export", str(last), str(out), "--tune"]
    assert siamtfa([*args, f"got10k={root}", f"synthetic={other}"]) == 0
    tuning = load_checkpoint(out)["tuning"]
    assert tuning["on"] == [f"got10k={root}", f"synthetic={other}"]
    # the tuned AO is the best replay AO over the four sequences together
    pooled = seqs + read_dataset("got10k", other)
    recorded = record(Tracker(model, "online", "cpu", from_dict(SMALL).input), pooled, False)
    assert tuning["ao"] == pytest.approx(grid_search(recorded, progress=False)[0][0], abs=1e-9)
    assert tuning["paper_rule_ao"] == pytest.approx(average_overlap(recorded, TrackingConfig()))
    # the exported settings tracked in full: pooled, and each set on its own
    config = load_checkpoint(out)["config"]
    assert tuning["tracked_ao"] == pytest.approx(_tracked_ao(model, config, pooled), abs=1e-9)
    by_set = tuning["tracked_ao_by_set"]
    assert list(by_set) == tuning["on"]
    for spec, set_seqs in zip(tuning["on"], (seqs, read_dataset("got10k", other))):
        assert by_set[spec] == pytest.approx(_tracked_ao(model, config, set_seqs), abs=1e-9)
    assert "of which synthetic=" in capsys.readouterr().out
    # the same set twice would count its frames twice
    assert siamtfa([*args, f"got10k={root}", f"got10k={root}"]) == 2
    assert "share sequence names" in capsys.readouterr().err


@pytest.mark.slow
def test_export_keeps_the_search_region_that_tracks_best(
    tmp_path: Path, sequences, capsys: pytest.CaptureFixture
) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    args = ["export", str(last), str(out), "--tune", f"got10k={root}"]
    assert siamtfa([*args, "--search-target-size", "0", "60", "--max-upsample", "1.5"]) == 0
    exported = load_checkpoint(out)
    scores = exported["tuning"]["search_target_size"]
    assert set(scores) == {"0", "60"}
    kept = exported["config"]["tracking"]
    assert exported["config"]["tracking"]["max_upsample"] == 1.5
    best = "0" if scores["0"] >= scores["60"] else "60"  # ties keep the value listed first
    assert f"{kept['search_target_size']:g}" == best
    # each score is the GOT-10k AO of that tracker run over the sequences: recompute one
    assert _tracked_ao(model, exported["config"], seqs) == pytest.approx(scores[best], abs=1e-9)
    no_tune = ["export", str(last), str(out), "--search-target-size", "0", "9"]
    assert siamtfa(no_tune) == 2
    assert "need --tune" in capsys.readouterr().err


@pytest.mark.slow
def test_export_keeps_the_template_update_that_tracks_best(tmp_path: Path, sequences) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    args = ["export", str(last), str(out), "--tune", f"got10k={root}"]
    assert siamtfa([*args, "--template-update", "0", "0.5", "--template-interval", "2"]) == 0
    exported = load_checkpoint(out)
    scores = exported["tuning"]["template_update"]
    kept = exported["config"]["tracking"]
    assert set(scores) == {"0", "0.5"} and kept["template_interval"] == 2
    assert scores[f"{kept['template_update']:g}"] == max(scores.values())
    # the kept value's score is the AO of tracking with the exported settings
    ao = _tracked_ao(model, exported["config"], seqs)
    assert ao == pytest.approx(scores[f"{kept['template_update']:g}"], abs=1e-9)


@pytest.mark.slow
def test_export_keeps_the_size_lr_that_tracks_best(tmp_path: Path, sequences) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    args = ["export", str(last), str(out), "--tune", f"got10k={root}"]
    region = ["--search-target-size", "60", "--max-upsample", "1.5"]
    assert siamtfa([*args, *region, "--size-lr", "1", "0.3"]) == 0
    exported = load_checkpoint(out)
    scores = exported["tuning"]["size_lr"]
    kept = exported["config"]["tracking"]
    assert set(scores) == {"1", "0.3"} and kept["search_target_size"] == 60
    assert scores[f"{kept['size_lr']:g}"] == max(scores.values())
    # each score is the AO of tracking with that size_lr and the rest as exported
    for value, ao in scores.items():
        config = {**exported["config"], "tracking": {**kept, "size_lr": float(value)}}
        assert _tracked_ao(model, config, seqs) == pytest.approx(ao, abs=1e-9)
    # one value without --tune is simply set
    assert siamtfa(["export", str(last), str(out), "--size-lr", "0.4"]) == 0
    assert load_checkpoint(out)["config"]["tracking"]["size_lr"] == 0.4


@pytest.mark.slow
def test_export_keeps_the_window_that_tracks_best(
    tmp_path: Path, sequences, capsys: pytest.CaptureFixture
) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    args = ["export", str(last), str(out), "--tune", f"got10k={root}"]
    region = ["--search-target-size", "60", "--max-upsample", "1.5"]
    assert siamtfa([*args, *region, "--window", "0.5:0.9", "4:0"]) == 0
    exported = load_checkpoint(out)
    scores = exported["tuning"]["window"]
    kept = exported["config"]["tracking"]
    assert set(scores) == {"0.5:0.9", "4:0"} and kept["search_target_size"] == 60
    assert scores[f"{kept['window_sigma']:g}:{kept['window_influence']:g}"] == max(scores.values())
    assert scores["0.5:0.9"] != scores["4:0"]  # both numbers reach the tracker
    # each score is the AO of tracking with that window and the rest as exported
    for value, ao in scores.items():
        sigma, influence = (float(v) for v in value.split(":"))
        tracking = {**kept, "window_sigma": sigma, "window_influence": influence}
        config = {**exported["config"], "tracking": tracking}
        assert _tracked_ao(model, config, seqs) == pytest.approx(ao, abs=1e-9)
    # the exported settings' tracked AO is stored, also when no value was tracked in a list
    assert exported["tuning"]["tracked_ao"] == max(scores.values())
    assert siamtfa([*args, *region]) == 0
    exported = load_checkpoint(out)
    ao = _tracked_ao(model, exported["config"], seqs)
    assert exported["tuning"]["tracked_ao"] == pytest.approx(ao, abs=1e-9)
    # one pair without --tune is simply set; a malformed one is refused by name
    assert siamtfa(["export", str(last), str(out), "--window", "3:0.25"]) == 0
    tracking = load_checkpoint(out)["config"]["tracking"]
    assert (tracking["window_sigma"], tracking["window_influence"]) == (3.0, 0.25)
    for bad in ("3", "0:0.5", "2:1.5", "a:b"):
        with pytest.raises(SystemExit) as exit_status:  # argparse's usage error
            siamtfa(["export", str(last), str(out), "--window", bad])
        assert exit_status.value.code == 2 and "SIGMA:INFLUENCE" in capsys.readouterr().err


@pytest.mark.slow
def test_export_keeps_the_proposal_count_that_tracks_best(tmp_path: Path, sequences) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    args = ["export", str(last), str(out), "--tune", f"got10k={root}"]
    assert siamtfa([*args, "--proposals", "300", "1"]) == 0
    exported = load_checkpoint(out)
    scores = exported["tuning"]["post_nms_top_n_test"]
    kept = exported["config"]["model"]["rpn"]["post_nms_top_n_test"]
    assert set(scores) == {"300", "1"} and scores[str(kept)] == max(scores.values())
    assert scores["300"] != scores["1"]  # the count reaches the RPN
    # each score is the AO of a model built afresh with that count and the same weights
    for value, ao in scores.items():
        config = copy.deepcopy(exported["config"])
        config["model"]["rpn"]["post_nms_top_n_test"] = int(value)
        net = build_model(from_dict(config)).eval()
        net.load_state_dict(model.state_dict())
        assert _tracked_ao(net, config, seqs) == pytest.approx(ao, abs=1e-9)
    # one value without --tune is simply set; fewer than one is refused
    assert siamtfa(["export", str(last), str(out), "--proposals", "50"]) == 0
    assert load_checkpoint(out)["config"]["model"]["rpn"]["post_nms_top_n_test"] == 50
    assert siamtfa(["export", str(last), str(out), "--proposals", "0"]) == 2


@pytest.mark.slow
def test_export_keeps_the_input_size_that_tracks_best(
    tmp_path: Path, sequences, capsys: pytest.CaptureFixture
) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    args = ["export", str(last), str(out), "--tune", f"got10k={root}"]
    # 160x48 fits the 128x96 frames by its short side: both sides must reach the tracker
    assert siamtfa([*args, "--input-size", "128x96", "160x48"]) == 0
    exported = load_checkpoint(out)
    scores = exported["tuning"]["input_size"]
    kept = exported["config"]["input"]
    assert set(scores) == {"128x96", "160x48"}
    assert scores[f"{kept['max_size']}x{kept['min_size']}"] == max(scores.values())
    assert scores["128x96"] != scores["160x48"]  # the size reaches the tracker
    # each score is the AO of tracking the 128x96 frames resized to fit that size
    for value, ao in scores.items():
        long, short = (int(v) for v in value.split("x"))
        config = copy.deepcopy(exported["config"])
        config["input"].update(max_size=long, min_size=short)
        assert _tracked_ao(model, config, seqs) == pytest.approx(ao, abs=1e-9)
    # one value without --tune is simply set; a malformed one is refused by name
    assert siamtfa(["export", str(last), str(out), "--input-size", "96x64"]) == 0
    assert load_checkpoint(out)["config"]["input"]["max_size"] == 96
    for bad in ("96", "64x96", "ax3"):
        with pytest.raises(SystemExit) as exit_status:  # argparse's usage error
            siamtfa(["export", str(last), str(out), "--input-size", bad])
        assert exit_status.value.code == 2 and "LONGxSHORT" in capsys.readouterr().err


def _untrained_checkpoint(tmp_path: Path) -> tuple[torch.nn.Module, Path, Path]:
    """A small untrained model saved as a training checkpoint, and where to export it."""
    model = small_model().eval()
    state = {"model": model.state_dict(), "config": to_dict(from_dict(SMALL))}
    save_checkpoint(state, tmp_path / "last.pt")
    return model, tmp_path / "last.pt", tmp_path / "default.pt"


def _tracked_ao(model: torch.nn.Module, config: dict, seqs: list) -> float:
    """GOT-10k AO (visible frames after the first, pooled) of tracking with ``config``."""
    cfg = from_dict(config)
    tracker = Tracker(model, "online", "cpu", cfg.input, tracking=cfg.tracking)
    ious = []
    for s in seqs:
        boxes = tracker.track(s.frames, s.boxes[0])[0]
        ious += list(_iou(boxes[1:], s.boxes[1:], (128, 96))[s.cover[1:] > 0])
    return float(np.mean(ious))


def _iou(pred: np.ndarray, gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Naive IoU of x, y, w, h rows, both clipped to the ``(W, H)`` frame (GOT-10k's rule)."""
    out = []
    for p, g in zip(pred, gt):
        a = [max(p[0], 0), max(p[1], 0), min(p[0] + p[2], size[0]), min(p[1] + p[3], size[1])]
        b = [max(g[0], 0), max(g[1], 0), min(g[0] + g[2], size[0]), min(g[1] + g[3], size[1])]
        iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
        out.append(iw * ih / (area - iw * ih) if area > iw * ih else 0.0)
    return np.array(out)
