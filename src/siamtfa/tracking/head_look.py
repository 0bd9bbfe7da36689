"""A second look at each frame by NanoTrack's pretrained correlation head, as NanoTrack looks.

SiamTFA's classifier, trained here on a few real sequences, ranks its RoIs poorly (the model
card); NanoTrack's head was trained on large tracking datasets on the very trunk the ``mobile``
model shares. :class:`HeadLook` runs that trunk and head on NanoTrack's own crops (a square
around the target with half its perimeter as context: 127 pixels for the template, twice that
side at 255 pixels for the search) and returns the head's boxes and target probabilities in
image pixels; with ``TrackingConfig.head_weight`` they join the RoIs under one fused score
(:func:`siamtfa.tracking.selection.fuse`).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import Tensor

from siamtfa.model.correlation_head import CorrelationHead

TEMPLATE_SIZE, SEARCH_SIZE, STRIDE = 127, 255, 16


def context_side(width: float, height: float, context: float = 0.5) -> float:
    """The side of the square crop around a ``width x height`` target: ``sqrt((w + p)(h + p))``
    with ``p = context * (w + h)`` (SiamFC's context, NanoTrack's crop)."""
    pad = context * (width + height)
    return float(np.sqrt((width + pad) * (height + pad)))


def square_crop(rgb: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """The ``side``-pixel square of ``rgb`` centred on ``(cx, cy)`` resized to ``size x size``
    (bilinear), padded with the frame's mean colour where it leaves the frame."""
    scale = size / side
    # input pixel u samples image pixel (u + 0.5) / scale - 0.5 + (cx - side / 2)
    shift_x = (0.5 / scale - 0.5 + cx - side / 2) * scale
    shift_y = (0.5 / scale - 0.5 + cy - side / 2) * scale
    matrix = np.array([[scale, 0, -shift_x], [0, scale, -shift_y]], np.float64)
    mean = cv2.mean(rgb)[: rgb.shape[-1]]  # per channel, in float64
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=mean)


def cell_centres(cells: int) -> np.ndarray:
    """The search crop's pixel under each of the head's ``cells x cells`` outputs, ``[N, 2]``
    (x, y) in row-major order: NanoTrack's grid, centred on the crop's middle."""
    offsets = (np.arange(cells) - cells // 2) * STRIDE + SEARCH_SIZE // 2
    ys, xs = np.meshgrid(offsets, offsets, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)


def decode(logits: Tensor, distances: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One search crop's head outputs (``[1, 2, S, S]``, ``[1, 4, S, S]``) as boxes ``[S*S, 4]``
    (``x1, y1, x2, y2`` in crop pixels) and target probabilities ``[S*S]``."""
    prob = torch.softmax(logits[0].float(), 0)[1].flatten().cpu().numpy().astype(np.float64)
    ltrb = distances[0].float().flatten(1).T.cpu().numpy().astype(np.float64)
    centres = cell_centres(logits.shape[-1])
    return np.concatenate([centres - ltrb[:, :2], centres + ltrb[:, 2:]], 1), prob


class HeadLook:
    """``HeadLook(trunk, head, normalise)``: ``trunk`` maps a normalised ``[1, 3, S, S]`` crop
    to its stride-16 map, ``normalise`` an RGB crop ``[S, S, 3]`` uint8 to that input."""

    def __init__(
        self,
        trunk: Callable[[Tensor], Tensor],
        head: CorrelationHead,
        normalise: Callable[[np.ndarray], Tensor],
    ) -> None:
        self.trunk, self.head, self.normalise = trunk, head, normalise
        self.template: Tensor | None = None

    def init(self, rgb: np.ndarray, box: np.ndarray) -> None:
        """The template: the target at ``box`` (x, y, w, h) in ``rgb``."""
        x, y, w, h = box
        crop = square_crop(rgb, x + w / 2, y + h / 2, context_side(w, h), TEMPLATE_SIZE)
        self.template = self.trunk(self.normalise(crop))

    def look(self, rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The head's boxes ``[N, 4]`` (``x1, y1, x2, y2``, image pixels) and target
        probabilities ``[N]`` in the search crop around ``box``, the last answer."""
        if self.template is None:
            raise RuntimeError("HeadLook.init first")
        x, y, w, h = box
        # a box clipped to nothing at the frame's edge still gets a crop
        cx, cy, side = x + w / 2, y + h / 2, 2 * context_side(max(w, 1.0), max(h, 1.0))
        crop = square_crop(rgb, cx, cy, side, SEARCH_SIZE)
        boxes, probs = decode(*self.head(self.template, self.trunk(self.normalise(crop))))
        return crop_to_image(boxes, cx, cy, side), probs


def crop_to_image(boxes: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """Boxes ``[N, 4]`` in the pixels of the search crop that :func:`square_crop` took (the
    ``side``-pixel square centred on ``(cx, cy)``) in the image's pixels."""
    scale = SEARCH_SIZE / side
    origin = np.array([cx, cy, cx, cy]) - side / 2
    return (boxes + 0.5) / scale - 0.5 + origin
