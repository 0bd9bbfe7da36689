"""Tracked AO of a checkpoint, with its own tracking settings, on validation sets: the figure
the release rules in ``docs/results`` compare (each set, and the sets pooled frame by frame).

    python benchmarks/tracked_ao.py src/siamtfa/weights/siamtfa_lite.pt \\
        runs/traj/syn_5009 runs/tune/syn_5001 runs/tune/syn_5004 runs/tune/syn_5006 \\
        --pool runs/tune/syn_5001 runs/tune/syn_5004 runs/tune/syn_5006 --out ao.json

Sets are GOT-10k-layout folders (as ``make-synthetic`` writes them); online mode, as
``siamtfa export --tune`` scores its settings. The JSON also holds each sequence's AO and
frame count (``benchmarks/compare_ao.py`` compares two such files).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from siamtfa.data.datasets import read_dataset
from siamtfa.data.io import atomic_write_text
from siamtfa.tracking import Tracker, load_model
from siamtfa.tracking.tuning import pooled_ao, scored, track_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("sets", nargs="+", help="GOT-10k-layout folders")
    parser.add_argument(
        "--pool",
        nargs="+",
        action="append",
        default=[],
        help="some of the sets, also pooled (repeat for several pools)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="JSON file for the figures")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if missing := {s for pool in args.pool for s in pool} - set(args.sets):
        parser.error(f"--pool names sets not listed: {' '.join(sorted(missing))}")

    if args.threads:
        torch.set_num_threads(args.threads)
    model, cfg = load_model(args.checkpoint)
    tracker = Tracker(model, "online", args.device, cfg.input, tracking=cfg.tracking)
    sequences = {s: read_dataset("got10k", s) for s in args.sets}
    boxes = {s: track_all(tracker, seqs) for s, seqs in sequences.items()}
    per_set = {s: scored(boxes[s], seqs) for s, seqs in sequences.items()}
    result = {s: r.ao for s, r in per_set.items()}
    for pool in args.pool:
        pooled = {k: v for s in pool for k, v in boxes[s].items()}
        name = "pooled" if len(args.pool) == 1 else "pooled " + " + ".join(pool)
        result[name] = pooled_ao(pooled, [q for s in pool for q in sequences[s]])
    for name, ao in result.items():
        print(f"{ao:6.3f}  {name}")
    print(f"settings: {cfg.tracking}")
    if args.out:
        result["checkpoint"], result["tracking"] = args.checkpoint, str(cfg.tracking)
        # each set's sequences (AO, frames): for benchmarks/compare_ao.py
        result["per_sequence"] = {s: r.per_sequence for s, r in per_set.items()}
        atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
