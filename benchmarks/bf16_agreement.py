"""How far bf16 autocast (+ channels_last), channels_last alone, or torch.compile moves the
tracker's boxes.

Tracking is chaotic: a box a pixel off moves the next frame's search region and motion prior,
and a few frames later the two runs may follow different objects, so the AO of two whole runs
differs by more than the arithmetic does (on 10 sequences, by several 1e-3 either way). Here
both trackers see the same input at every frame: before frame t each is told the ground-truth
boxes of frames t-1 and t-2 (teacher forcing; where the target is absent it keeps its own
answer), so the only difference left is the precision. Reports, over all frames after the
first with a visible target: the mean IoU with the ground truth of each (the teacher-forced
analogue of AO) and its difference, and the IoU between the two answers.

    python benchmarks/bf16_agreement.py --root runs/accuracy/data/synthetic_9000
    python benchmarks/bf16_agreement.py --dataset folder --root ../shared/data/real/test
    python benchmarks/bf16_agreement.py --root ... --reference bf16 --candidate bf16-compiled
    python benchmarks/bf16_agreement.py --root ... --candidate fp32-cl
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from siamtfa.data.datasets import Sequence, read_dataset
from siamtfa.evaluation.metrics import rect_iou
from siamtfa.tracking.tracker import DEFAULT_CHECKPOINT, Tracker

# the settings compared: Tracker options ("fp32" is the plain NCHW reference; the tracker's
# default on CPUs is "fp32-cl")
SETTINGS = {
    "fp32": {"channels_last": False},
    "fp32-cl": {"channels_last": True},
    "bf16": {"precision": "bf16", "channels_last": True},
    "bf16-compiled": {"precision": "bf16", "channels_last": True, "compile": True},
}


def forced_answers(
    tracker: Tracker, seq: Sequence
) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """``tracker``'s box ``[N, 4]`` for each frame, told the ground truth before each, and,
    per frame after the first, its ranked RoIs (image ``x1, y1, x2, y2``, scores)."""
    tracker.init(seq.frames[0], seq.boxes[0])
    boxes, candidates = [seq.boxes[0]], []
    for t in range(1, len(seq)):
        if seq.visible[t - 1]:
            tracker.box = seq.boxes[t - 1].astype(np.float64)
            seen = t >= 2 and seq.visible[t - 2]
            tracker.earlier = seq.boxes[t - 2].astype(np.float64) if seen else None
        boxes.append(tracker.update(seq.frames[t]))
        candidates.append(tracker.candidates)
    return np.stack(boxes), candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--dataset", default="got10k", help="reader: got10k (synthetic), folder…")
    parser.add_argument("--root", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", default="fp32", choices=list(SETTINGS))
    parser.add_argument("--candidate", default="bf16", choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sequences = read_dataset(args.dataset, args.root)
    ref, new = args.reference, args.candidate
    trackers = {k: Tracker(args.checkpoint, "online", "cpu", **SETTINGS[k]) for k in (ref, new)}
    truth, ious = {ref: [], new: []}, []
    for seq in tqdm(sequences, desc="sequences"):
        a, b = forced_answers(trackers[ref], seq)[0], forced_answers(trackers[new], seq)[0]
        keep = seq.visible[1:]
        gt = seq.boxes[1:][keep]
        truth[ref].append(rect_iou(a[1:][keep], gt))
        truth[new].append(rect_iou(b[1:][keep], gt))
        ious.append(rect_iou(a[1:][keep], b[1:][keep]))
    r, c, both = (np.concatenate(v) for v in (truth[ref], truth[new], ious))
    print(f"{len(sequences)} sequences, {len(both)} frames, ground truth given before each frame")
    print(
        f"mean IoU with ground truth: {ref} {r.mean():.4f}  {new} {c.mean():.4f}  "
        f"difference {c.mean() - r.mean():+.4f}"
    )
    print(
        f"IoU between {ref} and {new} answers: mean {both.mean():.4f}  median "
        f"{np.median(both):.4f}  >= 0.95 in {(both >= 0.95).mean():.1%} of frames  "
        f"< 0.5 in {(both < 0.5).mean():.1%}"
    )


if __name__ == "__main__":
    main()
