"""Tuning the selection prior: the replay reproduces the tracker, the grid search finds the
prior that a distractor calls for, ``siamtfa tune`` keeps what tracks best on the validation
sets, and ``siamtfa export`` writes a usable fp16 checkpoint."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from siamtfa import build_model
from siamtfa.checkpoint import load_checkpoint, save_checkpoint
from siamtfa.cli import main as siamtfa
from siamtfa.config import ConfigError, TrackingConfig, from_dict, to_dict
from siamtfa.data.datasets import Sequence, read_dataset
from siamtfa.data.synthetic import make_synthetic
from siamtfa.tracking import Tracker
from siamtfa.tracking.tuning import (
    GRID,
    RecordedSequence,
    average_overlap,
    grid_search,
    overall_ao,
    read_grid,
    record,
    replay,
    with_restarts,
)

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
        TrackingConfig(filter_weight=0.5),
    ):
        with pytest.raises(ValueError, match="depend on the boxes"):
            record(Tracker(model, "online", "cpu", tracking=changes_rois), seqs, False)


def test_restarts_begin_at_the_first_visible_frame_of_each_kth_part() -> None:
    boxes = np.tile([1.0, 1.0, 4.0, 3.0], (9, 1))
    boxes[3] = np.nan  # absent: the second start moves on to frame 4
    boxes[6, 2] = 0.0  # no width: the third moves on to frame 7
    visible = ~np.isnan(boxes).any(1)
    frames = [Path(f"{i}.jpg") for i in range(9)]
    seq = Sequence("s", frames, boxes, visible, cover=np.arange(9))
    short = Sequence("t", frames[:3], boxes[:3], visible[:3])  # its 2nd tail: one frame, dropped
    runs = with_restarts([seq, short], 3)
    assert [r.name for r in runs] == ["s", "s@4", "s@7", "t", "t@1"]
    assert runs[0] is seq
    assert runs[1].frames == frames[4:] and runs[2].frames == frames[7:]
    np.testing.assert_array_equal(runs[1].cover, np.arange(4, 9))
    np.testing.assert_array_equal(runs[2].boxes, boxes[7:])
    assert runs[4].cover is None and list(runs[4].visible) == [True, True]
    assert with_restarts([seq], 1) == [seq]
    with pytest.raises(ValueError, match="starts must be 1 or more"):
        with_restarts([seq], 0)


def test_overall_ao_pools_frames_or_averages_runs() -> None:
    # run a: IoU 1 then 0 after its first frame; run b: IoU 1. Frames: 2/3; runs: (0.5 + 1)/2
    gt = np.array([[0.0, 0, 10, 10]] * 3)
    boxes = {"a": np.array([[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 10, 10]]), "b": gt[:2]}
    truth = {"a": (gt, np.full(3, 8), (100, 100)), "b": (gt[:2], np.full(2, 8), (100, 100))}
    assert overall_ao(boxes, truth) == pytest.approx(2 / 3)
    assert overall_ao(boxes, truth, "runs") == pytest.approx(0.75)


def test_tune_starts_tracks_the_restarts_and_averages_runs(tmp_path: Path, sequences) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    grid = tmp_path / "grid.yaml"
    steps = [{"tracking.size_lr": [0.5]}]
    grid.write_text(
        yaml.safe_dump({"replay": {"size_lr": [1.0]}, "tracked": steps, "average": "runs"})
    )
    args = ["tune", str(last), str(out), "--grid", str(grid), "--on", f"got10k={root}"]
    assert siamtfa([*args, "--starts", "2"]) == 0
    tuned = load_checkpoint(out)
    tuning, config = tuned["tuning"], tuned["config"]
    assert tuning["starts"] == 2 and tuning["average"] == "runs"
    runs = with_restarts(seqs, 2)
    assert len(runs) == 2 * len(seqs)
    # each run's AO averaged, in the replay (the paper's rule) and in the tracked step
    paper = to_dict(from_dict(SMALL))
    expected = np.mean([_tracked_ao(model, paper, [r]) for r in runs])
    assert tuning["replay"]["paper_rule_ao"] == pytest.approx(expected, abs=1e-9)
    expected = np.mean([_tracked_ao(model, config, [r]) for r in runs])
    assert tuning["tracked_ao"] == pytest.approx(expected, abs=1e-9)


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


def test_export_writes_half_precision_weights_and_keeps_the_tuning(tmp_path: Path) -> None:
    model = small_model().eval()
    tuning = {"on": ["got10k=val"], "tracked_ao": 0.5}
    state = {"model": model.state_dict(), "config": to_dict(from_dict(SMALL)), "iteration": 7}
    tuned = {**state, "tuning": tuning, "config": {**state["config"], "tracking": vars(PRIOR)}}
    save_checkpoint({**tuned, "optimizer": {"big": torch.zeros(1000)}}, tmp_path / "tuned.pt")
    out = tmp_path / "default.pt"
    assert siamtfa(["export", str(tmp_path / "tuned.pt"), str(out)]) == 0
    exported = load_checkpoint(out)
    assert exported["iteration"] == 7 and "optimizer" not in exported
    assert exported["tuning"] == tuning and exported["source"] == str(tmp_path / "tuned.pt")
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert exported["model"][key].dtype == torch.float16, key
            torch.testing.assert_close(exported["model"][key].float(), value, rtol=1e-3, atol=1e-4)
    assert Tracker(out, "online", "cpu").tracking == PRIOR
    assert siamtfa(["export", str(tmp_path / "tuned.pt"), str(out), "--fp32"]) == 0
    assert load_checkpoint(out)["model"]["backbone.conv1.weight"].dtype == torch.float32


@pytest.mark.slow
def test_tune_pools_the_sets_and_keeps_the_best_replayed_prior(
    tmp_path: Path, sequences, capsys: pytest.CaptureFixture
) -> None:
    root, seqs = sequences
    other = tmp_path / "other"
    make_synthetic(other, 2, 6, seed=32, size=(128, 96), progress=False)
    model, last, out = _untrained_checkpoint(tmp_path)
    small = {"window_influence": [0.0, 0.6], "window_sigma": [1.0, 2.0], "size_lr": [0.3, 1.0]}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"replay": small}))
    args = ["tune", str(last), str(out), "--grid", str(grid), "--on"]
    assert siamtfa([*args, f"got10k={root}", f"synthetic={other}"]) == 0
    tuned = load_checkpoint(out)
    tuning, config = tuned["tuning"], tuned["config"]
    assert tuning["on"] == [f"got10k={root}", f"synthetic={other}"]
    # the replay's best AO and the paper rule's, over the four sequences together
    pooled = seqs + read_dataset("got10k", other)
    recorded = record(Tracker(model, "online", "cpu", from_dict(SMALL).input), pooled, False)
    ranked = grid_search(recorded, {k: tuple(v) for k, v in small.items()}, progress=False)
    assert tuning["replay"]["top"][0][0] == pytest.approx(ranked[0][0], abs=1e-9)
    paper_ao = average_overlap(recorded, TrackingConfig())
    assert tuning["replay"]["paper_rule_ao"] == pytest.approx(paper_ao)
    kept = from_dict(config).tracking
    assert kept == (ranked[0][1] if ranked[0][0] > paper_ao else TrackingConfig())
    # the tuned settings tracked in full: pooled, and each set on its own
    assert tuning["tracked_ao"] == pytest.approx(_tracked_ao(model, config, pooled), abs=1e-9)
    by_set = tuning["tracked_ao_by_set"]
    assert list(by_set) == tuning["on"]
    for spec, set_seqs in zip(tuning["on"], (seqs, read_dataset("got10k", other))):
        assert by_set[spec] == pytest.approx(_tracked_ao(model, config, set_seqs), abs=1e-9)
    assert f"the tuned settings on synthetic={other}" in capsys.readouterr().out
    # the weights are the checkpoint's, as they were
    for key, value in model.state_dict().items():
        torch.testing.assert_close(tuned["model"][key], value, rtol=0, atol=0)
    # the same sequences twice would count their frames twice
    assert siamtfa([*args, f"got10k={root}", f"got10k={root}"]) == 2
    assert "--on lists a set twice" in capsys.readouterr().err
    assert siamtfa([*args, f"got10k={root}", f"synthetic={root}"]) == 2
    assert "share sequence names" in capsys.readouterr().err


@pytest.mark.slow
def test_tune_tracks_each_step_in_full_and_keeps_the_best(tmp_path: Path, sequences) -> None:
    root, seqs = sequences
    model, last, out = _untrained_checkpoint(tmp_path)
    steps = [
        {"tracking.search_target_size": [0, 60], "tracking.max_upsample": [1.5, 1.5]},
        {"tracking.window_sigma": [0.5, 4], "tracking.window_influence": [0.9, 0]},
        {"tracking.template_interval": [2]},  # one value: set, not tracked
        {"model.rpn.post_nms_top_n_test": [300, 1]},
        # 160x48 fits the 128x96 frames by its short side: both sides must reach the tracker
        {"input.max_size": [128, 160], "input.min_size": [96, 48]},
    ]
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"replay": {}, "tracked": steps}, sort_keys=False))
    args = ["tune", str(last), str(out), "--on", f"got10k={root}", "--grid", str(grid)]
    assert siamtfa(args) == 0
    tuned = load_checkpoint(out)
    config, results = tuned["config"], tuned["tuning"]["tracked"]
    assert "replay" not in tuned["tuning"]
    assert [r["set"] for r in results] == [list(step) for step in steps]
    # each value's score: a model and tracker built afresh from the checkpoint's config with
    # the earlier steps' kept values and this value
    at_step = to_dict(from_dict(SMALL))
    for step, result in zip(steps, results):
        assert result["values"] == [list(v) for v in zip(*step.values())]
        if len(result["values"]) == 1:
            assert result["ao"] == [None]
        for values, ao in zip(result["values"], result["ao"]):
            if ao is not None:
                tried = _with(at_step, step, values)
                assert _tracked_ao(_rebuilt(model, tried), tried, seqs) == pytest.approx(ao)
        if len(result["values"]) > 1:
            assert result["ao"][result["kept"]] == max(result["ao"])
            assert result["ao"][0] != result["ao"][1], step  # the value reaches the tracker
        at_step = _with(at_step, step, result["values"][result["kept"]])
    assert config == at_step  # the tuned config holds every kept value
    ao = _tracked_ao(_rebuilt(model, config), config, seqs)
    assert tuned["tuning"]["tracked_ao"] == pytest.approx(ao, abs=1e-9)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("replay: {size_lr: [1]}\nextra: 1", "expected a mapping with the keys replay, tracked"),
        ("average: sequences", "average: 'sequences': not one of frames, runs"),
        ("replay: {search_target_size: [0, 40]}", "replay: search_target_size: not one of"),
        ("replay: {size_lr: 0.5}", "replay: tracking.size_lr: expected a non-empty list"),
        ("replay: {size_lr: [a]}", "replay: tracking.size_lr: expected a number, got 'a'"),
        ("tracked: [{model.backbone.depth: [18]}]", r"tracked\[0\]: model.backbone.depth: not"),
        ("tracked: [{tracking.sizelr: [1]}]", r"tracked\[0\]: tracking.sizelr: unknown key"),
        (
            "tracked: [{input.max_size: [320, 384], input.min_size: [240]}]",
            r"tracked\[0\]: its value lists differ in length",
        ),
        ("tracked: [{input.max_size: [3.5]}]", "input.max_size: expected an integer"),
        ("tracked: [[1]]", r"tracked\[0\]: expected a mapping of config paths"),
        ("replay: [", "cannot read the grid"),
    ],
)
def test_read_grid_names_the_file_and_the_entry(tmp_path: Path, grid: str, message: str) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(grid)
    with pytest.raises(ConfigError, match=message) as err:
        read_grid(path)
    assert str(path) in str(err.value)


def test_the_shipped_grid_reads() -> None:
    grid = read_grid(Path(__file__).parents[1] / "configs" / "tune.yaml")
    assert grid.replay == GRID and grid.average == "runs"
    step = {"tracking.search_target_size": (0.0,) * 4 + (40.0,) * 4}
    step["tracking.appearance_weight"] = (0.0, 0.5, 0.75, 0.9) * 2
    prior = [{f"tracking.{k}": GRID[k]} for k in ("scale_penalty", "size_lr", "window_influence")]
    assert grid.tracked == [step, *prior]


def test_the_filter_grid_reads() -> None:
    grid = read_grid(Path(__file__).parents[1] / "configs" / "tune_filter.yaml")
    assert not grid.replay and grid.average == "runs"  # the checkpoint's prior is kept
    weights, rates = (
        grid.tracked[0]["tracking.filter_weight"],
        grid.tracked[0]["tracking.filter_rate"],
    )
    assert (weights[0], rates[0]) == (0.0, 0.0)  # the default as shipped is tried first
    assert len(weights) == len(rates) == 10
    assert [list(step) for step in grid.tracked[1:]] == [
        ["tracking.filter_sigma"],
        ["tracking.window_influence"],
    ]


def _untrained_checkpoint(tmp_path: Path) -> tuple[torch.nn.Module, Path, Path]:
    """A small untrained model saved as a training checkpoint, and where to export it."""
    model = small_model().eval()
    state = {"model": model.state_dict(), "config": to_dict(from_dict(SMALL))}
    save_checkpoint(state, tmp_path / "last.pt")
    return model, tmp_path / "last.pt", tmp_path / "default.pt"


def _with(config: dict, step: dict, values: list) -> dict:
    """A copy of ``config`` with each dotted path of ``step`` set to its item of ``values``."""
    config = copy.deepcopy(config)
    for key, value in zip(step, values):
        *parents, name = key.split(".")
        holder = config
        for part in parents:
            holder = holder[part]
        holder[name] = value
    return config


def _rebuilt(model: torch.nn.Module, config: dict) -> torch.nn.Module:
    """A model built afresh from ``config`` (its RPN settings) with ``model``'s weights."""
    net = build_model(from_dict(config)).eval()
    net.load_state_dict(model.state_dict())
    return net


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
