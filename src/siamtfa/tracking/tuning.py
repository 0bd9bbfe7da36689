"""Tune a checkpoint's tracking settings on validation sequences (``siamtfa tune``).

Two stages, both given by a :class:`Grid` (a YAML file):

* **replay** — the box-selection prior. In ``online`` mode with the whole frame searched and
  the first template kept, the network's ranked RoIs do not depend on the boxes chosen
  before: each sequence is run through the network once and every combination of the grid is
  replayed on the stored RoIs, which makes the search cost seconds.
* **tracked** — settings that change the RoIs themselves (search region, template update,
  proposals, input size) or that the replay chose for the whole frame: steps in order, each
  value (or set of values taken together) tracked in full and the best kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from siamtfa import config as config_mod
from siamtfa.config import Config, ConfigError, TrackingConfig
from siamtfa.data.datasets import Sequence
from siamtfa.data.sampling import frame_size
from siamtfa.evaluation.metrics import got10k_metrics
from siamtfa.evaluation.score import cover_of
from siamtfa.model import SiamTFA
from siamtfa.tracking.selection import next_box
from siamtfa.tracking.tracker import Tracker

GRID: dict[str, tuple[float, ...]] = {
    "window_influence": (0.0, 0.2, 0.4, 0.6, 0.8),
    "window_sigma": (0.5, 1.0, 2.0, 4.0),
    "window_lead": (0.0, 0.5, 1.0),
    "scale_penalty": (0.0, 0.3, 1.0, 3.0),
    "size_lr": (0.1, 0.3, 0.6, 1.0),
}


@dataclass
class RecordedSequence:
    """One sequence's ground truth and, per frame after the first, the ranked RoIs."""

    name: str
    ground_truth: np.ndarray  # [N, 4] x, y, w, h
    cover: np.ndarray
    size: tuple[int, int]  # W, H
    candidates: list[tuple[np.ndarray, np.ndarray]]  # per frame 1..N-1: boxes xyxy, scores


def with_restarts(sequences: list[Sequence], starts: int) -> list[Sequence]:
    """Each sequence and, for ``starts`` > 1, its tails from ``k / starts`` of its length
    (k = 1 .. starts - 1), each from the first frame there or after where the target is
    visible (named ``NAME@FRAME``): OTB's temporal robustness runs, so that one early failure
    on a sequence does not decide between settings."""
    if starts < 1:
        raise ValueError(f"starts must be 1 or more, got {starts}")
    out = []
    for seq in sequences:
        out.append(seq)
        usable = seq.visible & (np.nan_to_num(seq.boxes[:, 2:]) > 0).all(1)
        for k in range(1, starts):
            begin = k * len(seq) // starts
            later = begin + np.flatnonzero(usable[begin:])
            if not len(later) or later[0] >= len(seq) - 1:  # nothing left to track
                continue
            i = int(later[0])
            cover = None if seq.cover is None else seq.cover[i:]
            out.append(
                replace(
                    seq,
                    name=f"{seq.name}@{i}",
                    frames=seq.frames[i:],
                    boxes=seq.boxes[i:],
                    visible=seq.visible[i:],
                    cover=cover,
                )
            )
    return out


def _truth(seq: Sequence) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """What ``seq``'s AO is scored against: its boxes, cover labels and frame size."""
    return seq.boxes, cover_of(seq), frame_size(seq)


def record(tracker: Tracker, sequences: list[Sequence], progress: bool = True) -> list:
    """Run ``tracker`` (online mode) over each sequence, keeping every frame's ranked RoIs."""
    if tracker.mode != "online":
        raise ValueError("tuning replays online-mode RoIs: use an online tracker")
    t = tracker.tracking
    if t.search_target_size or t.template_update or t.filter_weight or t.head_weight:
        raise ValueError(
            "a search region, template update, correlation filter or head look makes the "
            "candidates depend on the boxes"
        )
    out = []
    for seq in tqdm(sequences, desc="record RoIs", disable=not progress):
        tracker.init(seq.frames[0], seq.boxes[0])
        candidates = []
        for frame in seq.frames[1:]:
            tracker.update(frame)
            candidates.append(tracker.ranked())
        out.append(RecordedSequence(seq.name, *_truth(seq), candidates))
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


def overall_ao(
    boxes: dict[str, np.ndarray],
    truth: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]],
    average: str = "frames",
) -> float:
    """GOT-10k AO of ``boxes`` against ``truth`` (boxes, cover, frame size), both by run name:
    over all frames pooled (``"frames"``, the toolkit's AO), or the mean of each run's AO
    (``"runs"``: every video counts once, however long)."""
    if average == "runs":
        return float(np.mean([overall_ao({n: boxes[n]}, {n: truth[n]}) for n in truth]))
    gt, cover, size = ({n: t[i] for n, t in truth.items()} for i in range(3))
    return got10k_metrics({n: boxes[n] for n in truth}, gt, cover, size).ao


def average_overlap(
    recorded: list[RecordedSequence], cfg: TrackingConfig, average: str = "frames"
) -> float:
    """AO (:func:`overall_ao`) of selection ``cfg`` over the recorded sequences."""
    truth = {s.name: (s.ground_truth, s.cover, s.size) for s in recorded}
    return overall_ao({s.name: replay(s, cfg) for s in recorded}, truth, average)


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
    average: str = "frames",
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
        (average_overlap(recorded, cfg, average), i, cfg)
        for i, cfg in enumerate(tqdm(settings, desc="grid", disable=not progress))
    ]
    ranked.sort(key=lambda t: (-t[0], t[1]))
    return [(ao, cfg) for ao, _, cfg in ranked]


AVERAGES = ("frames", "runs")  # Grid.average

# config sections a tracked step may set: the tracker's and the RPN's test-time settings
TUNABLE = ("tracking.", "input.", "model.rpn.")


@dataclass
class Grid:
    """What :func:`tune` searches. ``replay``: ``TrackingConfig`` fields and their values, every
    combination replayed (empty: keep the checkpoint's selection). ``tracked``: steps in order,
    each mapping config paths (``tracking.size_lr``, ``input.max_size``) to value lists of one
    length, whose i-th values are tried together. ``average``: see :func:`overall_ao`."""

    replay: dict[str, tuple[Any, ...]] = field(default_factory=lambda: dict(GRID))
    tracked: list[dict[str, tuple[Any, ...]]] = field(default_factory=list)
    average: str = "frames"  # how runs are averaged into the AO compared (overall_ao)


def read_grid(path: str | Path) -> Grid:
    """The :class:`Grid` in a YAML file with the keys ``replay``, ``tracked`` and ``average``;
    every path and value is checked against the config, and an error names the file and the
    entry."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the grid: {err}") from err
    if not isinstance(data, dict) or set(data) - {"replay", "tracked", "average"}:
        raise ConfigError(f"{path}: expected a mapping with the keys replay, tracked, average")
    average = data.get("average", "frames")
    if average not in AVERAGES:
        raise ConfigError(f"{path}: average: {average!r}: not one of {', '.join(AVERAGES)}")
    replay = data.get("replay") or {}
    steps = data.get("tracked") or []
    if not isinstance(replay, dict) or not isinstance(steps, list):
        raise ConfigError(f"{path}: replay must be a mapping and tracked a list of mappings")
    unknown = sorted(set(replay) - set(GRID))  # only the selection prior can be replayed
    if unknown:
        raise ConfigError(f"{path}: replay: {unknown[0]}: not one of {', '.join(GRID)}")
    checked = _values(path, "replay", {f"tracking.{k}": v for k, v in replay.items()})
    grid = Grid({k.removeprefix("tracking."): v for k, v in checked.items()}, [], average)
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or not step:
            raise ConfigError(f"{path}: tracked[{i}]: expected a mapping of config paths")
        for key in step:
            if not str(key).startswith(TUNABLE):
                raise ConfigError(f"{path}: tracked[{i}]: {key}: not under {', '.join(TUNABLE)}")
        values = _values(path, f"tracked[{i}]", step)
        if len({len(v) for v in values.values()}) > 1:
            raise ConfigError(f"{path}: tracked[{i}]: its value lists differ in length")
        grid.tracked.append(values)
    return grid


def _values(path: str | Path, where: str, entries: Mapping[str, Any]) -> dict[str, tuple]:
    """``entries`` (config path -> non-empty list) with each value checked and converted by
    the config's own rules."""
    out = {}
    for key, values in entries.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: {where}: {key}: expected a non-empty list of values")
        try:
            out[key] = tuple(_get(config_mod.merge(Config(), _nested(key, v)), key) for v in values)
        except ConfigError as err:
            raise ConfigError(f"{path}: {where}: {err}") from None
    return out


def _nested(key: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for the path ``a.b``."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def _get(cfg: Config, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _set(cfg: Config, key: str, value: Any) -> None:
    *parents, name = key.split(".")
    setattr(_get(cfg, ".".join(parents)), name, value)


def tune(
    model: SiamTFA,
    cfg: Config,
    sets: dict[str, list[Sequence]],
    grid: Grid,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tune ``cfg`` (in place; ``model`` was built from it and shares its ``model.rpn``) on
    the validation ``sets`` (name -> sequences), pooled. Returns what was tried and its AO:
    the record a tuned checkpoint keeps under ``tuning``."""
    seqs = [s for group in sets.values() for s in group]
    names = [s.name for s in seqs]
    if len(set(names)) < len(names):  # AO is pooled over frames keyed by sequence name
        raise ValueError(f"the tuning sets share sequence names: {' '.join(sets)}")
    info: dict[str, Any] = {"on": list(sets), "average": grid.average, "tracked": []}
    if grid.replay:
        recorded = record(Tracker(model, "online", device, cfg.input), seqs, progress)
        ranked = grid_search(recorded, grid.replay, progress, grid.average)
        paper_ao = average_overlap(recorded, TrackingConfig(), grid.average)
        cfg.tracking = ranked[0][1] if ranked[0][0] > paper_ao else TrackingConfig()
        top = [[ao, {k: getattr(s, k) for k in grid.replay}] for ao, s in ranked[:5]]
        info["replay"] = {"top": top, "paper_rule_ao": paper_ao}
    boxes: dict[str, dict] = {}  # by settings: each is tracked once
    truth = {s.name: _truth(s) for s in seqs}  # read once (frame sizes come from the files)

    def tracked_ao(subset: list[Sequence] = seqs) -> float:
        """AO of tracking with ``cfg`` as it is now."""
        key = repr((cfg.tracking, cfg.model.rpn, cfg.input))
        if key not in boxes:
            tracker = Tracker(model, "online", device, cfg.input, tracking=cfg.tracking)
            boxes[key] = track_all(tracker, seqs, progress)
        names = [s.name for s in subset]
        return overall_ao(boxes[key], {n: truth[n] for n in names}, grid.average)

    for step in grid.tracked:
        choices = list(zip(*step.values()))
        scores = []
        for choice in choices:
            for key, value in zip(step, choice):
                _set(cfg, key, value)
            scores.append(tracked_ao() if len(choices) > 1 else None)
        kept = int(np.argmax(scores)) if len(choices) > 1 else 0  # ties: the first listed
        for key, value in zip(step, choices[kept]):
            _set(cfg, key, value)
        info["tracked"].append(
            {"set": list(step), "values": [list(c) for c in choices], "ao": scores, "kept": kept}
        )
    info["tracked_ao"] = tracked_ao()
    info["tracked_ao_by_set"] = {name: tracked_ao(group) for name, group in sets.items()}
    return info
