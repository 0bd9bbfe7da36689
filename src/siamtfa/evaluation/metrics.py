"""Tracking metrics with the official toolkits' exact conventions (numpy only).

Boxes are ``[x, y, w, h]``. GOT-10k: IoU of boxes clipped to the image, frames pooled over the
whole benchmark, the first frame and ``cover == 0`` frames excluded; AO = mean IoU, SR_t = share
of IoU > t. OTB/UAV: per-sequence success curve over 21 IoU thresholds (strict ``>``) and
precision curve over centre errors 0..50 px (``<=``), centres at ``x + (w - 1) / 2``, frames
with NaN ground truth (absent) removed, curves averaged over sequences; AUC = mean of the
success curve, precision = curve at 20 px. LaSOT normalised precision: centre error divided by
the ground-truth size, curve over 0..0.5, its mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS_OTB = np.linspace(0, 1, 21)
IOU_THRESHOLDS_GOT = np.linspace(0, 1, 101)
PIXEL_THRESHOLDS = np.arange(0, 51)
NORM_THRESHOLDS = np.linspace(0, 0.5, 51)


def _clip_to(rects: np.ndarray, bound: tuple[float, float]) -> np.ndarray:
    r = rects.astype(np.float64).copy()
    r[:, 0] = np.clip(r[:, 0], 0, bound[0])
    r[:, 1] = np.clip(r[:, 1], 0, bound[1])
    r[:, 2] = np.clip(r[:, 2], 0, bound[0] - r[:, 0])
    r[:, 3] = np.clip(r[:, 3], 0, bound[1] - r[:, 1])
    return r


def rect_iou(a: np.ndarray, b: np.ndarray, bound: tuple[float, float] | None = None) -> np.ndarray:
    """Row-wise IoU of ``[N, 4]`` boxes; with ``bound = (W, H)`` both are clipped to the image."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"box arrays differ in shape: {a.shape} vs {b.shape}")
    if bound is not None:
        a, b = _clip_to(a, bound), _clip_to(b, bound)
    iw = np.maximum(
        np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0
    )
    ih = np.maximum(
        np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0
    )
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def center_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ca = a[:, :2] + (a[:, 2:] - 1) / 2
    cb = b[:, :2] + (b[:, 2:] - 1) / 2
    return np.sqrt(((ca - cb) ** 2).sum(axis=1))


@dataclass
class GOT10kResult:
    ao: float
    sr50: float
    sr75: float
    success_curve: np.ndarray  # over IOU_THRESHOLDS_GOT
    per_sequence: dict[str, dict[str, float]]


def got10k_metrics(
    predictions: dict[str, np.ndarray],
    ground_truth: dict[str, np.ndarray],
    covers: dict[str, np.ndarray | None],
    resolutions: dict[str, tuple[float, float]],
    skip_first: bool = True,
) -> GOT10kResult:
    """AO / SR over all sequences, frames pooled (GOT-10k toolkit). ``covers[s]`` may be None
    (every frame visible)."""
    pooled, per_seq = [], {}
    start = 1 if skip_first else 0
    for name, gt in ground_truth.items():
        pred = predictions[name]
        if pred.shape != gt.shape:
            raise ValueError(f"{name}: {len(pred)} predicted boxes for {len(gt)} frames")
        ious = rect_iou(pred[start:], gt[start:], bound=resolutions[name])
        cover = covers.get(name)
        if cover is not None:
            ious = ious[np.asarray(cover)[start:] > 0]
        pooled.append(ious)
        per_seq[name] = {
            "ao": float(ious.mean()) if len(ious) else float("nan"),
            "sr50": float((ious > 0.5).mean()) if len(ious) else float("nan"),
            "frames": len(ious),
        }
    ious = np.concatenate(pooled) if pooled else np.zeros(0)
    curve = (ious[:, None] > IOU_THRESHOLDS_GOT[None, :]).mean(axis=0)
    return GOT10kResult(
        float(ious.mean()), float((ious > 0.5).mean()), float((ious > 0.75).mean()), curve, per_seq
    )


@dataclass
class OTBResult:
    auc: float
    precision20: float
    success_curve: np.ndarray  # over IOU_THRESHOLDS_OTB
    precision_curve: np.ndarray  # over PIXEL_THRESHOLDS
    per_sequence: dict[str, dict[str, float]]


def sequence_curves(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Success and precision curves of one sequence, NaN (absent) ground-truth rows removed."""
    valid = ~np.isnan(gt).any(axis=1)
    ious = rect_iou(pred[valid], gt[valid])
    errors = center_error(pred[valid], gt[valid])
    success = (ious[:, None] > IOU_THRESHOLDS_OTB[None, :]).mean(axis=0)
    precision = (errors[:, None] <= PIXEL_THRESHOLDS[None, :]).mean(axis=0)
    return success, precision


def otb_metrics(
    predictions: dict[str, np.ndarray],
    ground_truth: dict[str, np.ndarray],
    first_frame_gt: bool = True,
) -> OTBResult:
    """OTB/UAV curves; with ``first_frame_gt`` frame 0 counts as the given box (toolkit rule)."""
    succ, prec, per_seq = [], [], {}
    for name, gt in ground_truth.items():
        pred = np.nan_to_num(np.asarray(predictions[name], np.float64), nan=0.0)
        if pred.shape != gt.shape:
            raise ValueError(f"{name}: {len(pred)} predicted boxes for {len(gt)} frames")
        if first_frame_gt:
            pred = pred.copy()
            pred[0] = gt[0]
        s, p = sequence_curves(pred, gt)
        succ.append(s)
        prec.append(p)
        per_seq[name] = {"auc": float(s.mean()), "precision20": float(p[20])}
    success, precision = np.mean(succ, axis=0), np.mean(prec, axis=0)
    return OTBResult(float(success.mean()), float(precision[20]), success, precision, per_seq)


def normalized_precision(pred: np.ndarray, gt: np.ndarray) -> float:
    """LaSOT normalised precision (AUC over normalised centre error 0..0.5) of one sequence."""
    valid = ~np.isnan(gt).any(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    p, g = pred[valid], gt[valid]
    d = ((p[:, :2] + p[:, 2:] / 2) - (g[:, :2] + g[:, 2:] / 2)) / g[:, 2:]
    err = np.sqrt((d**2).sum(axis=1))
    return float((err[:, None] <= NORM_THRESHOLDS[None, :]).mean(axis=0).mean())


def ao_difference(
    a: dict[str, dict[str, float]],
    b: dict[str, dict[str, float]],
    resamples: int = 10000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Pooled GOT-10k AO of tracker ``a`` minus tracker ``b`` on the same sequences, with a
    ``level`` interval from a paired bootstrap over sequences.

    ``a`` and ``b`` are ``GOT10kResult.per_sequence`` (``ao`` and ``frames`` per sequence). The
    sequences are resampled with replacement, the same draw for both trackers, and each
    resample's frames pooled as AO pools them; sequences are the unit because one tracking
    failure changes all the frames after it. Returns ``(difference, low, high)``.
    """
    if set(a) != set(b):
        raise ValueError(f"trackers ran on different sequences: {sorted(set(a) ^ set(b))}")
    names = [n for n in sorted(a) if a[n]["frames"] > 0]
    if not names:
        raise ValueError("no sequence has a frame to score")
    if any(a[n]["frames"] != b[n]["frames"] for n in names):
        raise ValueError("trackers scored different frames of the same sequence")
    frames = np.array([a[n]["frames"] for n in names], np.float64)
    # summed IoU difference per sequence: a resample's pooled AO difference is its sum / frames
    delta = np.array([a[n]["ao"] - b[n]["ao"] for n in names]) * frames
    picks = np.random.default_rng(seed).integers(0, len(names), (resamples, len(names)))
    samples = delta[picks].sum(axis=1) / frames[picks].sum(axis=1)
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(delta.sum() / frames.sum()), float(low), float(high)
