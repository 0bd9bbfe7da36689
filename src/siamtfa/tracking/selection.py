"""Which of the ranked RoIs becomes the tracked box.

The paper answers with the top-scoring RoI. SiamTFA searches the whole frame, so a weak or
distracted classifier can jump to a look-alike anywhere; siamese trackers (SiamRPN, pysot)
damp that with a prior on small motion and size change. ``TrackingConfig`` holds that prior;
with its defaults the choice is exactly the paper's.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from siamtfa.config import TrackingConfig
from siamtfa.ops import best_overlap, box_iou

_as64 = functools.partial(torch.as_tensor, dtype=torch.float64)


def is_paper_rule(cfg: TrackingConfig) -> bool:
    """True when ``select_box`` returns the top-scoring RoI unchanged."""
    return cfg.window_influence == 0 and cfg.scale_penalty == 0 and cfg.size_lr == 1


def blend(scores: np.ndarray, evidence: np.ndarray, weight: float) -> np.ndarray:
    """RoI ``scores`` blended with other ``evidence`` on each RoI (its appearance similarity to
    the template, the correlation filter's response): ``(1 - weight) * scores + weight *
    max(evidence, 0)``, a score in 0..1 like the RoI's (a dissimilar RoI adds nothing rather
    than subtracting)."""
    return (1 - weight) * scores + weight * np.maximum(evidence, 0)


def agreement(boxes: np.ndarray, others: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each of ``boxes [K, 4]``'s agreement with ``others [N, 4]`` scored ``scores [N]`` (all
    ``x1, y1, x2, y2`` in one frame's pixels): the largest ``score * IoU``, ``[K]``."""
    return best_overlap(_iou(boxes, others), _as64(scores)).numpy()


def _iou(boxes: np.ndarray, others: np.ndarray) -> Tensor:
    """``[K, N]`` IoU of two box sets, in float64."""
    return box_iou(_as64(boxes).reshape(-1, 4), _as64(others).reshape(-1, 4))


def fuse(
    rois: np.ndarray,
    roi_scores: np.ndarray,
    head_boxes: np.ndarray,
    head_probs: np.ndarray,
    weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """SiamTFA's RoIs and the correlation head's boxes as one candidate list, ranked (stable,
    RoIs first on ties). Each candidate scores ``(1 - weight) * SiamTFA's evidence + weight *
    the head's``: a RoI its own score and its :func:`agreement` with the head's boxes, a head
    box its agreement with the RoIs and its own probability (one IoU matrix serves both)."""
    iou = _iou(rois, head_boxes)
    scores = np.concatenate(
        [
            (1 - weight) * roi_scores + weight * best_overlap(iou, _as64(head_probs)).numpy(),
            (1 - weight) * best_overlap(iou.T, _as64(roi_scores)).numpy() + weight * head_probs,
        ]
    )
    order = np.argsort(-scores, kind="stable")
    return np.concatenate([rois, head_boxes]).reshape(-1, 4)[order], scores[order]


def select_index(
    boxes: Tensor,
    scores: Tensor,
    previous: Tensor,
    cfg: TrackingConfig,
    velocity: Tensor | None = None,
) -> int:
    """Which of the candidates ``boxes [K, 4]`` (``x1, y1, x2, y2``, ``K >= 1``) ranked by
    ``scores [K]`` wins.

    Each candidate's score is damped by its size change relative to ``previous``
    (``exp(-scale_penalty * (r - 1))``, ``r >= 1`` the ratio of ``sqrt(w * h)``) and blended
    with a Gaussian of its centre's distance, in previous box sizes, from the predicted centre
    (``(1 - window_influence) * score + window_influence * window``): the previous centre plus
    ``window_lead`` times ``velocity``, the previous answer's centre displacement.
    """
    if is_paper_rule(cfg):
        return int(scores.argmax())
    prev_size = (previous[2:] - previous[:2]).clamp(min=1.0).prod().sqrt()
    size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3).prod(1).sqrt()
    ratio = torch.maximum(size / prev_size, prev_size / size)
    damped = scores * torch.exp(-cfg.scale_penalty * (ratio - 1))
    predicted = (previous[:2] + previous[2:]) / 2
    if velocity is not None:
        predicted = predicted + cfg.window_lead * velocity
    shift = (boxes[:, :2] + boxes[:, 2:]) / 2 - predicted
    window = torch.exp(-0.5 * (shift.norm(dim=1) / (cfg.window_sigma * prev_size)) ** 2)
    return int(torch.argmax((1 - cfg.window_influence) * damped + cfg.window_influence * window))


def select_box(
    boxes: Tensor,
    scores: Tensor,
    previous: Tensor,
    cfg: TrackingConfig,
    velocity: Tensor | None = None,
) -> Tensor:
    """The answer ``x1, y1, x2, y2``: the winner of :func:`select_index` through
    :func:`smoothed_box` (``previous`` when there is no candidate)."""
    if len(boxes) == 0:
        return previous
    return smoothed_box(boxes[select_index(boxes, scores, previous, cfg, velocity)], previous, cfg)


def voted_box(boxes: Tensor, scores: Tensor, best: int, iou_min: float) -> Tensor:
    """Box voting (Gidaris & Komodakis, ICCV 2015): the mean of the candidates ``boxes [K, 4]``
    overlapping ``boxes[best]`` with IoU >= ``iou_min``, weighted by their ``scores`` (their
    regressions err differently; for the shipped default the mean placed the box worse).
    ``boxes[best]`` when ``iou_min`` is 0 or the weights sum to 0."""
    if iou_min <= 0:
        return boxes[best]
    weights = scores * (box_iou(boxes[best : best + 1], boxes)[0] >= iou_min)
    total = weights.sum()
    if total <= 0:
        return boxes[best]
    return (boxes * weights[:, None]).sum(0) / total


def smoothed_box(winner: Tensor, previous: Tensor, cfg: TrackingConfig) -> Tensor:
    """``winner``'s centre with a size moved from ``previous``'s by the fraction ``size_lr``."""
    if cfg.size_lr == 1:
        return winner
    prev_wh = (previous[2:] - previous[:2]).clamp(min=1.0)  # a box clipped to nothing
    wh = (winner[2:] - winner[:2]).clamp(min=1e-3)
    centre = (winner[:2] + winner[2:]) / 2
    new_wh = prev_wh + cfg.size_lr * (wh - prev_wh)
    return torch.cat([centre - new_wh / 2, centre + new_wh / 2])


def next_box(
    previous: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    cfg: TrackingConfig,
    image_size: tuple[int, int],
    earlier: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """The tracker's step: ``previous`` box ``[x, y, w, h]`` (and ``earlier``, the one before
    it, whose centre gives the velocity) and one frame's ranked RoIs (``x1, y1, x2, y2`` in
    image pixels, at least one) to the new box, clipped to the ``(W, H)`` image, and the index
    of the RoI it comes from."""
    x, y, w, h = previous
    prev = torch.tensor([x, y, x + w, y + h], dtype=torch.float32)
    velocity = None
    if earlier is not None:
        velocity = torch.tensor(_centre(previous) - _centre(earlier), dtype=torch.float32)
    boxes_t, scores_t = torch.as_tensor(boxes), torch.as_tensor(scores)
    best = select_index(boxes_t, scores_t, prev, cfg, velocity)
    winner = voted_box(boxes_t, scores_t, best, cfg.vote_iou)
    return clipped_xywh(smoothed_box(winner, prev, cfg).tolist(), image_size), best


def clipped_xywh(xyxy, image_size: tuple[int, int]) -> np.ndarray:
    """``x1, y1, x2, y2`` clipped to the ``(W, H)`` image, as ``[x, y, w, h]``."""
    x1, y1, x2, y2 = xyxy
    x1, x2 = np.clip([x1, x2], 0, image_size[0])
    y1, y2 = np.clip([y1, y2], 0, image_size[1])
    return np.array([x1, y1, x2 - x1, y2 - y1])


def _centre(box: np.ndarray) -> np.ndarray:
    return np.asarray(box[:2], np.float64) + np.asarray(box[2:], np.float64) / 2
