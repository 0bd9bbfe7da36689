"""Where a checkpoint's AO goes: losing the target, choosing among the RoIs, or the boxes.

For each sequence the tracker runs twice. Tracked in full (its own boxes feed the next frame's
search region and prior), the frames with a visible target split into *lost* (IoU < 0.1) and
*held*. Teacher-forced (told the ground truth before each frame, as in ``bf16_agreement.py``)
nothing can be lost, which leaves the precision of the box it answers with; the same frames'
ranked RoIs give the paper's top-scoring RoI and the ceiling of a perfect choice: the RoI with
the best IoU among the 10 top-scoring ones, and among all of them. Figures are mean IoU over the
frames after the first with a visible target.

    python benchmarks/error_budget.py --root runs/tune/syn_5001 --root runs/tune/syn_5004
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bf16_agreement import forced_answers
from tqdm import tqdm

from siamtfa.data.datasets import read_dataset
from siamtfa.evaluation.metrics import rect_iou
from siamtfa.ops import xyxy_to_xywh
from siamtfa.tracking.tracker import DEFAULT_CHECKPOINT, Tracker


def candidate_ious(candidates: tuple[np.ndarray, np.ndarray], truth: np.ndarray) -> np.ndarray:
    """IoU with ``truth`` (x, y, w, h) of each ranked RoI (x1, y1, x2, y2), best-scored first."""
    boxes = candidates[0]
    if not len(boxes):
        return np.zeros(1)
    xywh = xyxy_to_xywh(torch.from_numpy(boxes)).numpy()
    return rect_iou(xywh, np.repeat(truth[None], len(boxes), 0))


def budget(tracker: Tracker, sequences: list) -> dict[str, float]:
    tracked, forced, top, best10, best = [], [], [], [], []
    for seq in tqdm(sequences, desc="sequences"):
        keep = seq.visible[1:]
        truth = seq.boxes[1:]
        boxes = tracker.track(seq.frames, seq.boxes[0])[0]
        tracked.append(rect_iou(boxes[1:][keep], truth[keep]))
        answers, candidates = forced_answers(tracker, seq)
        forced.append(rect_iou(answers[1:][keep], truth[keep]))
        ious = [candidate_ious(c, g) for c, g, k in zip(candidates, truth, keep) if k]
        top += [i[0] for i in ious]
        best10 += [i[:10].max() for i in ious]
        best += [i.max() for i in ious]
    iou = np.concatenate(tracked)
    return {
        "tracked": iou.mean(),
        "lost": (iou < 0.1).mean(),
        "held": iou[iou >= 0.1].mean(),
        "forced": np.concatenate(forced).mean(),
        "forced top RoI": np.mean(top),
        "best of top 10": np.mean(best10),
        "best of all": np.mean(best),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--dataset", default="got10k", help="reader: got10k (synthetic), folder…")
    parser.add_argument("--root", action="append", required=True, help="repeatable")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tracker = Tracker(
        args.checkpoint, "online", "cpu", precision=args.precision, channels_last=True
    )
    rows = {root: budget(tracker, read_dataset(args.dataset, root)) for root in args.root}
    columns = list(next(iter(rows.values())))
    print("| set | " + " | ".join(columns) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    for root, row in rows.items():
        print(f"| {root} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
