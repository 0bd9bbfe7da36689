"""Training samples: one template frame and a clip of T adjacent, time-sorted search frames.

Sample ``i`` is a pure function of ``(seed, i)``: any worker can produce it, and a resumed run
continues with exactly the samples an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from siamtfa.config import DataConfig, InputConfig
from siamtfa.data import transforms as T
from siamtfa.data.datasets import DatasetError, Sequence, VideoFrame, read_frame

log = logging.getLogger(__name__)
MAX_DRAWS = 10  # of one sample whose template box vanishes in the resize


@dataclass
class Source:
    """A dataset to sample from, with its mixing weight."""

    name: str
    sequences: list[Sequence]
    weight: float = 1.0


def frame_size(seq: Sequence) -> tuple[int, int]:
    """``(width, height)``: from GOT-10k's ``meta_info.ini`` if present, else the first frame's
    header (no decoding)."""
    res = seq.meta.get("resolution")
    if res:
        w, h = (int(v) for v in res.strip("() ").split(","))
        return w, h
    if isinstance(seq.frames[0], VideoFrame):
        h, w = read_frame(seq.frames[0]).shape[:2]
        return w, h
    try:
        with Image.open(seq.frames[0]) as im:
            return im.size
    except OSError as err:
        raise DatasetError(f"{seq.frames[0]}: cannot read image ({err})") from None


def valid_frames(seq: Sequence, cfg: DataConfig) -> np.ndarray:
    """GlobalTrack's frame filters: visible, side >= min, area fraction and aspect in range,
    GOT-10k cover above ``max(1, min_cover_fraction * max cover)``."""
    w_img, h_img = frame_size(seq)
    b = np.nan_to_num(seq.boxes, nan=0.0)
    w, h = b[:, 2], b[:, 3]
    area = w * h / float(w_img * h_img)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.maximum(w / h, h / w)
    ok = (
        seq.visible
        & (np.minimum(w, h) >= cfg.min_box_side)
        & (area >= cfg.min_area_fraction)
        & (area <= cfg.max_area_fraction)
        & (aspect <= cfg.max_aspect)
    )
    if seq.cover is not None and len(seq.cover):
        ok &= seq.cover > max(1.0, cfg.min_cover_fraction * float(seq.cover.max()))
    return ok


def clip_starts(valid: np.ndarray, visible: np.ndarray, clip_len: int) -> np.ndarray:
    """Starts ``s`` of clips ``[s, s + T)`` whose frames are all valid or absent (absent frames
    train as background), with at least one valid frame."""
    n = len(valid)
    if n < clip_len:
        return np.zeros(0, np.int64)
    usable = np.concatenate(([0], np.cumsum(valid | ~visible)))
    good = np.concatenate(([0], np.cumsum(valid)))
    s = np.arange(n - clip_len + 1)
    ok = (usable[s + clip_len] - usable[s] == clip_len) & (good[s + clip_len] - good[s] > 0)
    return s[ok]


class ClipDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        sources: list[Source],
        clip_len: int,
        data: DataConfig,
        inputs: InputConfig,
        seed: int = 0,
        augment: bool = True,
        length: int = 10**9,
    ) -> None:
        self.clip_len, self.data, self.inputs = clip_len, data, inputs
        self.seed, self.augment, self.length = seed, augment, length
        self.entries: list[list[tuple[Sequence, np.ndarray, np.ndarray]]] = []
        weights = []
        for src in sources:
            usable = []
            for seq in src.sequences:
                valid = valid_frames(seq, data)
                starts = clip_starts(valid, seq.visible, clip_len)
                if len(starts) and valid.any():
                    usable.append((seq, np.flatnonzero(valid), starts))
            if len(usable) < len(src.sequences):
                log.info(
                    "%s: %d of %d sequences have no usable clip",
                    src.name,
                    len(src.sequences) - len(usable),
                    len(src.sequences),
                )
            if usable:
                self.entries.append(usable)
                weights.append(src.weight)
        if not self.entries:
            raise DatasetError("no sequence has a usable clip after the frame filters")
        self.weights = np.asarray(weights, np.float64) / sum(weights)

    def __len__(self) -> int:
        return self.length

    def choose(self, rng: np.random.Generator) -> tuple[Sequence, int, list[int]]:
        """(sequence, template index, clip indices) for one sample."""
        src = self.entries[int(rng.choice(len(self.entries), p=self.weights))]
        seq, valid_idx, starts = src[int(rng.integers(len(src)))]
        start = int(starts[rng.integers(len(starts))])
        candidates = valid_idx
        if self.data.max_template_gap > 0:
            near = np.abs(valid_idx - start) <= self.data.max_template_gap
            candidates = valid_idx[near] if near.any() else valid_idx
        template = int(candidates[rng.integers(len(candidates))])
        return seq, template, list(range(start, start + self.clip_len))

    def __getitem__(self, index: int) -> dict:
        # A frame that passed the filters can still lose its box to the resize (a sliver at
        # the image border, shrunk by the scale jitter): draw again rather than end a long run
        # there (a resumed run would stop at the same sample). Draw 0 is the sample itself
        # (numpy seeds [s, i, 0] as [s, i]), so the samples that never hit this are unchanged.
        for draw in range(MAX_DRAWS):
            rng = np.random.default_rng([self.seed, index, draw])
            sample = self._sample(rng)
            if isinstance(sample, dict):
                return sample
            log.warning(
                "%s: template box empty after resizing; sample %d drawn again", sample, index
            )
        raise DatasetError(
            f"sample {index}: the template box was empty after resizing in {MAX_DRAWS} draws "
            f"(last {sample}); check the boxes and data.min_box_side / min_area_fraction"
        )

    def _sample(self, rng: np.random.Generator) -> dict | str:
        """One sample, or the template frame's path if its box vanished in the resize."""
        seq, t_idx, clip = self.choose(rng)
        images = [read_frame(seq.frames[i]) for i in [t_idx, *clip]]
        h, w = images[0].shape[:2]
        views = self._views(rng, seq, t_idx, clip, (w, h))
        flip = False
        gains = np.ones(3)
        if self.augment:
            flip = bool(rng.random() < self.data.flip_prob)
            c = self.data.color_jitter
            gains = rng.uniform(1 - c, 1 + c, 3)  # brightness, contrast, saturation
        canvas_h, canvas_w = T.canvas_size(self.inputs)
        tensors, boxes, present = [], [], []
        for img, i, view in zip(images, [t_idx, *clip], views):
            if img.shape[:2] != (h, w):
                raise DatasetError(
                    f"{seq.frames[i]}: size {img.shape[1]}x{img.shape[0]} differs "
                    f"from the sequence's {w}x{h}"
                )
            if self.data.search_target_size > 0:  # a region (at 0, 0 too), or the frame at fit
                img = T.crop_resize(img, view, self.inputs)
            else:  # the whole frame at a jittered scale
                img = T.resize(img, view.scale)
            if flip:
                img = img[:, ::-1]
            if self.augment:
                img = _color_jitter(img, gains)
            tensors.append(T.pad_to(T.normalize(img, self.inputs), canvas_h, canvas_w))
            box, ok = _transform_box(
                seq.boxes[i], view, flip, img.shape[1], img.shape[0], canvas_w, canvas_h
            )
            boxes.append(box)
            present.append(ok and bool(seq.visible[i]))
        if not present[0]:
            return str(seq.frames[t_idx])
        return {
            "template": tensors[0],
            "template_box": boxes[0],
            "search": torch.stack(tensors[1:]),
            "search_boxes": torch.stack(boxes[1:]),
            "present": torch.tensor(present[1:]),
            "sequence": seq.name,
            "frames": torch.tensor([t_idx, *clip]),
        }

    def _views(
        self,
        rng: np.random.Generator,
        seq: Sequence,
        t_idx: int,
        clip: list[int],
        size: tuple[int, int],
    ) -> list[T.Region]:
        """Where the template frame and each clip frame are seen (``DataConfig``): the whole
        frame at a jittered scale, or search regions as the tracker's: the clip's around its
        first box where the target is seen (a clip has one: ``clip_starts``)."""
        fit = T.fit_scale(*size, self.inputs)
        d = self.data
        if d.search_target_size <= 0:
            scale = fit * rng.uniform(1.0 - d.scale_jitter, 1.0) if self.augment else fit
            return [T.Region(scale, 0.0, 0.0)] * (1 + self.clip_len)
        target, upsample = d.search_target_size, d.max_upsample
        template = T.search_region(seq.boxes[t_idx], size, fit, target, upsample)
        first = next(i for i in clip if seq.visible[i] and np.isfinite(seq.boxes[i]).all())
        last = np.asarray(seq.boxes[first], np.float64)  # the tracker's last answer, jittered
        if self.augment:
            side = float(np.sqrt(max(last[2], 1.0) * max(last[3], 1.0)))
            wh = last[2:] * 2.0 ** rng.uniform(-d.region_size_jitter, d.region_size_jitter)
            centre = last[:2] + last[2:] / 2 + rng.uniform(-1, 1, 2) * d.region_shift * side
            last = np.concatenate([centre - wh / 2, wh])
        region = T.search_region(last, size, fit, target, upsample)
        return [template] + [region] * self.clip_len


def _color_jitter(img: np.ndarray, gains: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    f = f * gains[0]
    f = (f - f.mean()) * gains[1] + f.mean()
    gray = f.mean(axis=2, keepdims=True)
    f = (f - gray) * gains[2] + gray
    return np.clip(f, 0, 255).astype(np.uint8)


def _transform_box(
    box_xywh: np.ndarray,
    view: T.Region,
    flip: bool,
    width: int,
    height: int,
    canvas_w: int,
    canvas_h: int,
) -> tuple[Tensor, bool]:
    """Box ``x1, y1, x2, y2`` in the ``width x height`` input of ``view`` (flipped), clipped to
    it and to the canvas."""
    if not np.isfinite(box_xywh).all():
        return torch.zeros(4), False
    ((x1, y1, x2, y2),) = view.to_input([*box_xywh[:2], *(box_xywh[:2] + box_xywh[2:])])
    if flip:
        x1, x2 = width - x2, width - x1
    x1, x2 = np.clip([x1, x2], 0, min(width, canvas_w))
    y1, y2 = np.clip([y1, y2], 0, min(height, canvas_h))
    ok = x2 - x1 >= 1.0 and y2 - y1 >= 1.0
    return torch.tensor([x1, y1, x2, y2], dtype=torch.float32), bool(ok)


def collate_clips(samples: list[dict]) -> dict:
    """Clip-major batch: templates ``[N, ...]``, search frames ``[N*T, ...]``."""
    return {
        "template": torch.stack([s["template"] for s in samples]),
        "template_box": torch.stack([s["template_box"] for s in samples]),
        "search": torch.cat([s["search"] for s in samples]),
        "search_boxes": torch.cat([s["search_boxes"] for s in samples]),
        "present": torch.cat([s["present"] for s in samples]),
        "sequence": [s["sequence"] for s in samples],
        "frames": torch.stack([s["frames"] for s in samples]),
    }
