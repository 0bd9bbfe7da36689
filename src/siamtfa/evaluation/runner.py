"""Benchmark runs: track every sequence, write official result layouts, report and plot.

Results: ``<out>/<tracker>/`` in the GOT-10k layout (``<seq>/<seq>_001.txt``, ``_time.txt``)
for GOT-10k and synthetic sets, else the OTB/UAV layout (``<seq>.txt``, ``times/``). A
sequence whose box file exists is skipped, so a run resumes; ``shard=(i, n)`` takes sequences
``i, i+n, ...``. ``<out>/<tracker>/info.json`` says how the results were made (mode, checkpoint,
rules). ``report`` evaluates every tracker folder found.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import time
import uuid
from pathlib import Path

import numpy as np

from siamtfa.data.datasets import Sequence
from siamtfa.data.io import atomic_write_text
from siamtfa.evaluation.metrics import IOU_THRESHOLDS_OTB, PIXEL_THRESHOLDS, otb_metrics
from siamtfa.evaluation.results import (
    is_complete,
    read_result,
    write_got10k_result,
    write_otb_result,
)
from siamtfa.evaluation.score import score

log = logging.getLogger(__name__)

RULES = (
    "GOT-10k metrics: first frame excluded, cover==0 (absent) frames excluded, boxes "
    "clipped to the image, frames pooled. OTB/UAV metrics: NaN (absent) ground truth "
    "removed, frame 0 counted as the given box, per-sequence curves averaged. FPS: frames "
    "after the first / their total seconds, over the sequences of one run (the one that "
    "tracked the most frames): runs resumed elsewhere or under other load are never pooled."
)
RUNS_FILE = "runs.json"  # in each tracker folder: which run tracked each sequence


def result_paths(out: Path, tracker: str, name: str, layout: str) -> tuple[Path, Path]:
    if layout == "got10k":
        return (out / tracker / name / f"{name}_001.txt", out / tracker / name / f"{name}_time.txt")
    return out / tracker / f"{name}.txt", out / tracker / "times" / f"{name}_time.txt"


def shard_sequences(sequences: list[Sequence], shard: tuple[int, int]) -> list[Sequence]:
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
    return sequences[i::n]


def is_finished(out: Path, tracker_name: str, seq: Sequence, layout: str) -> bool:
    """Whether ``seq`` has a complete box file; an incomplete one (a truncated copy, a full
    disk) is reported and tracked again."""
    box_file = result_paths(out, tracker_name, seq.name, layout)[0]
    if not box_file.is_file():
        return False
    if is_complete(box_file, len(seq)):
        return True
    log.warning("%s: incomplete result for %s: tracking it again", box_file, seq.name)
    return False


def finished(out: str | Path, tracker_name: str, sequences: list[Sequence], layout: str) -> int:
    """How many of ``sequences`` have complete results."""
    return sum(is_finished(Path(out), tracker_name, s, layout) for s in sequences)


def run_benchmark(
    tracker,
    tracker_name: str,
    sequences: list[Sequence],
    out: str | Path,
    layout: str,
    shard: tuple[int, int] = (0, 1),
    info: dict | None = None,
    progress: bool = True,
) -> list[str]:
    """Track the shard's unfinished sequences; returns the names tracked now."""
    from tqdm import tqdm

    out = Path(out)
    (out / tracker_name).mkdir(parents=True, exist_ok=True)
    info = json.loads(json.dumps({**(info or {}), "rules": RULES}))  # as stored (lists)
    info_file = out / tracker_name / "info.json"
    if info_file.is_file():  # resuming: never mix results of two setups in one folder
        old = json.loads(info_file.read_text())
        changed = sorted(
            k for k in set(old) | set(info) if k != "device" and old.get(k) != info.get(k)
        )
        if changed:
            raise ValueError(
                f"{info_file}: these results were made with other settings ("
                + ", ".join(f"{k}: {old.get(k)!r} now {info.get(k)!r}" for k in changed)
                + "); use another --out or delete that folder"
            )
    atomic_write_text(info_file, json.dumps(info, indent=1))
    runs_file = out / tracker_name / RUNS_FILE
    runs = _read_runs(runs_file)
    run = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {socket.gethostname()} {uuid.uuid4().hex[:8]}"
    done = []
    todo = [
        s
        for s in shard_sequences(sequences, shard)
        if not is_finished(out, tracker_name, s, layout)
    ]
    bar = tqdm(
        total=sum(len(s) for s in todo), desc=tracker_name, unit="frame", disable=not progress
    )
    for i, seq in enumerate(todo):
        if not np.isfinite(seq.boxes[0]).all():
            raise ValueError(f"{seq.name}: the first frame has no box to start from")
        bar.set_postfix_str(f"{seq.name} ({i + 1}/{len(todo)})")
        boxes, times = tracker.track(seq.frames, seq.boxes[0], on_frame=bar.update)
        if layout == "got10k":
            write_got10k_result(out / tracker_name, seq.name, boxes, times)
        else:
            write_otb_result(out / tracker_name, seq.name, boxes, times)
        runs[seq.name] = run
        atomic_write_text(runs_file, json.dumps(runs, indent=1))
        done.append(seq.name)
    bar.close()
    return done


def _read_runs(runs_file: Path) -> dict[str, str]:
    """Which run tracked each sequence (``RUNS_FILE``); none recorded yet: empty."""
    return json.loads(runs_file.read_text()) if runs_file.is_file() else {}


def evaluate(out: str | Path, tracker_name: str, sequences: list[Sequence], layout: str) -> dict:
    """Every metric of one tracker's results on ``sequences`` (all must be finished)."""
    out = Path(out)
    runs = _read_runs(out / tracker_name / RUNS_FILE)
    preds, timed = {}, {}  # timed: run -> [seconds, frames]
    for seq in sequences:
        box_file, time_file = result_paths(out, tracker_name, seq.name, layout)
        if not box_file.is_file():
            raise FileNotFoundError(f"{box_file}: no result for {seq.name}")
        preds[seq.name] = read_result(box_file, len(seq))
        if time_file.is_file():
            t = np.loadtxt(time_file, ndmin=1)[1:]
            sums = timed.setdefault(runs.get(seq.name, "unrecorded"), [0.0, 0])
            sums[0] += float(t[t > 0].sum())
            sums[1] += int((t > 0).sum())
    seconds, frames = max(timed.values(), key=lambda v: v[1], default=(0.0, 0))
    got = score(preds, sequences)
    gts = {s.name: s.boxes for s in sequences}
    otb = otb_metrics(preds, gts)
    return {
        "overall": {
            "ao": got.ao,
            "sr50": got.sr50,
            "sr75": got.sr75,
            "auc": otb.auc,
            "precision20": otb.precision20,
            "fps": frames / seconds if seconds > 0 else float("nan"),
            "fps_frames": frames,  # the frames the FPS is measured on: one run's
            "runs": len(timed),
        },
        "curves": {
            "got_success": got.success_curve.tolist(),
            "success": otb.success_curve.tolist(),
            "precision": otb.precision_curve.tolist(),
        },
        "per_sequence": {n: {**got.per_sequence[n], **otb.per_sequence[n]} for n in gts},
    }


def report(out: str | Path, sequences: list[Sequence], layout: str, title: str = "") -> dict:
    """Evaluate every tracker folder in ``out`` that has all results (the others are named in
    a warning); write ``report.json``, ``success.png``, ``precision.png``; return the report."""
    out = Path(out)
    results = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        done = finished(out, folder.name, sequences, layout)
        if done < len(sequences):
            n = len(sequences)
            log.warning("left out of the report, unfinished: %s (%d/%d)", folder.name, done, n)
            continue
        results[folder.name] = evaluate(out, folder.name, sequences, layout)
        info = folder / "info.json"
        if info.is_file():
            results[folder.name]["info"] = json.loads(info.read_text())
    if not results:
        raise FileNotFoundError(f"{out}: no tracker has results for all {len(sequences)} sequences")
    atomic_write_text(out / "report.json", json.dumps(results, indent=1))
    plot_curves(results, out, title)
    return results


def format_table(results: dict) -> str:
    """The overall metrics, best AO first; a note under it for FPS taken from one of several
    runs."""
    width = max([20, *map(len, results)])  # long names (--tracking settings) stay aligned
    lines = [
        f"{'tracker':<{width}} {'AO':>6} {'SR0.5':>6} {'SR0.75':>6} {'AUC':>6} {'Prec20':>6} "
        f"{'FPS':>7}"
    ]
    ranked = sorted(results.items(), key=lambda kv: -kv[1]["overall"]["ao"])
    for name, r in ranked:
        o = r["overall"]
        lines.append(
            f"{name:<{width}} {o['ao']:6.3f} {o['sr50']:6.3f} {o['sr75']:6.3f} "
            f"{o['auc']:6.3f} {o['precision20']:6.3f} {o['fps']:7.1f}"
        )
    for name, r in ranked:
        if r["overall"].get("runs", 1) > 1:
            o = r["overall"]
            lines.append(
                f"FPS of {name}: from the one of its {o['runs']} runs that tracked the most "
                f"frames ({o['fps_frames']}); runs are never pooled"
            )
    return "\n".join(lines)


def plot_curves(results: dict, out: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind, xs, xlabel, key, metric, label in (
        ("success", IOU_THRESHOLDS_OTB, "overlap threshold", "success", "auc", "AUC"),
        (
            "precision",
            PIXEL_THRESHOLDS,
            "location error threshold (px)",
            "precision",
            "precision20",
            "at 20 px",
        ),
    ):
        fig, ax = plt.subplots(figsize=(6, 5))
        ranked = sorted(results.items(), key=lambda kv: -kv[1]["overall"][metric])
        for name, r in ranked:
            value = r["overall"][metric]
            ax.plot(xs, r["curves"][key], lw=2, label=f"{name} [{label} {value:.3f}]")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("success rate" if kind == "success" else "precision")
        ax.set_title(f"{kind.capitalize()} plot{' — ' + title if title else ''}")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left" if kind == "success" else "lower right")
        fig.tight_layout()
        fig.savefig(out / f"{kind}.png", dpi=110)
        plt.close(fig)


def submission_zip(out: str | Path, tracker_name: str) -> Path:
    """GOT-10k test-split submission: the tracker's result folder zipped."""
    folder = Path(out) / tracker_name
    return Path(shutil.make_archive(str(folder), "zip", root_dir=folder))
