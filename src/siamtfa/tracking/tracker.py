"""The SiamTFA tracker with the GOT-10k toolkit's interface (``init``, ``update``, ``track``).

Modes:

* ``online`` — strictly causal: the box of frame t uses frames <= t only. The temporal shift
  keeps a per-block cache of the previous frame's shifted channels, so each update is one
  backbone pass. For a model trained with the bidirectional shift the future fold is zero (as
  for the last frame of a training clip); the result equals the batch forward exactly only for
  a ``temporal.causal`` model.
* ``clip`` — frames in clips of T with the bidirectional shift as trained (offline evaluation
  and throughput): a box may depend on up to T-1 future frames. Only ``track`` supports it.

The answer is the top-scoring RoI (the paper), or the RoI a checkpoint's ``tracking`` prior
prefers (``siamtfa.tracking.selection``), or, with ``tracking.head_weight``, the candidate it
prefers among the RoIs and the boxes of NanoTrack's correlation head (``head_look``). The
network sees the whole frame (the paper) or, with ``tracking.search_target_size``, a region
around the last box enlarged so that a small target reaches the sizes it was trained on
(``search_region``). Boxes are ``[x, y, w, h]``,
0-based, in the image's pixels; images are RGB (PIL or numpy), grayscale accepted.
"""

from __future__ import annotations

import copy
import functools
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from siamtfa import config as config_mod
from siamtfa.checkpoint import load_checkpoint, load_model_weights
from siamtfa.config import Config, InputConfig, TrackingConfig
from siamtfa.data import transforms as T
from siamtfa.data.datasets import VideoFrame, read_frame
from siamtfa.model import SiamTFA, build_model
from siamtfa.model.siamtfa import APPEARANCE_LEVEL, STRIDES
from siamtfa.tracking.base import BaseTracker
from siamtfa.tracking.correlation_filter import CorrelationFilter
from siamtfa.tracking.head_look import HeadLook
from siamtfa.tracking.selection import blend, clipped_xywh, fuse, next_box

MODES = ("online", "clip")
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "siamtfa_mobile.pt"


def default_tracker_source() -> tuple[SiamTFA | Path, InputConfig | None, bool]:
    """The shipped default checkpoint (with its own input size), or, where it is missing (a
    checkout without it), an untrained ``lite`` model at 320x240 input. The flag says whether
    the weights are trained."""
    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT, None, True
    cfg = config_mod.preset("lite")
    torch.manual_seed(0)
    return build_model(cfg).eval(), InputConfig(max_size=320, min_size=240), False


def load_model(
    checkpoint: str | Path, device: str | torch.device = "cpu"
) -> tuple[SiamTFA, Config]:
    """Model and config from a training checkpoint (``weights_only`` load)."""
    return model_from_state(load_checkpoint(checkpoint), checkpoint, device)


def model_from_state(
    state: dict, checkpoint: str | Path, device: str | torch.device = "cpu"
) -> tuple[SiamTFA, Config]:
    """Model and config from a checkpoint's contents ``state``, read from ``checkpoint``
    (which errors name)."""
    if "config" not in state:
        raise ValueError(f"{checkpoint}: checkpoint has no 'config' entry")
    cfg = config_mod.from_dict(state["config"])
    cfg.model.backbone.weights = None  # the checkpoint holds every weight
    model = build_model(cfg)
    load_model_weights(model, state["model"], checkpoint)
    return model.to(device).eval(), cfg


def _read(image) -> np.ndarray:
    """RGB ``[H, W, 3]`` uint8 from a path, a video frame, a PIL image or an array."""
    if isinstance(image, (str, Path, VideoFrame)):
        image = read_frame(image)  # a corrupt file raises an error naming it
    return T.to_rgb_array(image)


def search_region(
    box: np.ndarray, frame_size: tuple[int, int], fit: float, cfg: TrackingConfig
) -> T.Region:
    """The region to search for the target last seen at ``box`` (x, y, w, h) in a ``(W, H)``
    frame whose whole-frame input scale is ``fit``: :func:`siamtfa.data.transforms.search_region`
    with ``cfg.search_target_size`` and ``cfg.max_upsample``."""
    return T.search_region(box, frame_size, fit, cfg.search_target_size, cfg.max_upsample)


def compiled(fn: Callable) -> Callable:
    """``fn`` under ``torch.compile``, built on its first call for each input size (static
    shapes: a tracker sees few sizes, one per aspect ratio of its frames).

    Without inductor's "freezing" (weights as constants, pre-packed for oneDNN): in torch 2.13
    it returned a wrong past for the online temporal shift of a FrozenBatchNorm model
    (``test_compiled_search_keeps_the_eager_shift_past``), and on 2 CPU cores it did not pay."""
    return torch.compile(fn, dynamic=False)


def for_inference(model: SiamTFA, bf16: bool, channels_last: bool) -> SiamTFA:
    """``model``, converted in place: to channels_last memory, and with its convolution and
    linear weights stored in bfloat16 — the values bf16 autocast casts them to on every call
    (the same rounding, so the same results), cast once. The norms keep their float32
    parameters, as autocast uses them."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if bf16:
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.to(torch.bfloat16)
    return model


def _check_box(box, width: int, height: int) -> tuple[np.ndarray, list[float]]:
    """The box as an array, and its part inside the image as ``x1, y1, x2, y2``."""
    box = np.asarray(box, np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"initial box must be 4 finite numbers x, y, w, h; got {box.tolist()}")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"initial box has no area: {box.tolist()}")
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[0] + box[2], width), min(box[1] + box[3], height)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise ValueError(f"initial box {box.tolist()} lies outside the {width}x{height} image")
    return box, [x1, y1, x2, y2]


def _nth(
    searched: tuple[Tensor, list[dict[str, Tensor]]], i: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """The ``i``-th prepared frame and its ranked RoIs of a clip searched together."""
    frames, dets = searched
    return frames[i : i + 1], dets[i]


def _candidates(
    det: dict[str, Tensor],
    region: T.Region,
    appearance_weight: float,
    response: tuple[np.ndarray, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``det``'s RoIs in image pixels (x1, y1, x2, y2) and their scores, blended with the
    correlation filter's ``response`` (per RoI, and its weight) when given, then with their
    appearance similarity when ``appearance_weight`` > 0, and ranked again (stable)."""
    boxes = region.to_image(det["boxes"].float().cpu().numpy())
    scores = det["scores"].float().cpu().numpy()
    if response is not None:
        scores = blend(scores, *response)
    if appearance_weight > 0:
        scores = blend(scores, det["similarity"].float().cpu().numpy(), appearance_weight)
    if response is not None or appearance_weight > 0:
        order = np.argsort(-scores, kind="stable")
        boxes, scores = boxes[order], scores[order]
    return boxes, scores


class Tracker(BaseTracker):
    """``Tracker(model_or_checkpoint=None, mode="online", device=None)``; no model: the shipped
    default checkpoint."""

    def __init__(
        self,
        model: SiamTFA | str | Path | None = None,
        mode: str = "online",
        device: str | torch.device | None = None,
        input_cfg: InputConfig | None = None,
        clip_len: int | None = None,
        name: str | None = None,
        precision: str = "fp32",
        channels_last: bool | None = None,
        tracking: TrackingConfig | None = None,
        compile: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if model is None:
            model, default_input, trained = default_tracker_source()
            input_cfg = input_cfg or default_input
            if not trained:
                warnings.warn(f"{DEFAULT_CHECKPOINT} not found: UNTRAINED weights", stacklevel=2)
        loaded = isinstance(model, (str, Path))
        if loaded:
            model, cfg = load_model(model, self.device)
            input_cfg = input_cfg or cfg.input
            clip_len = clip_len or cfg.train.clip_len
            tracking = tracking or cfg.tracking
        self.model = model.to(self.device).eval()
        self.dtype = next(self.model.parameters()).dtype  # of the prepared frames
        self.bf16 = precision == "bf16"  # autocast: convolutions and FCs in bfloat16
        # NHWC by default on CPUs, where oneDNN's convolutions are faster in it (fp32 lite: ~8 %;
        # the same answers to 1e-4 mean IoU); GPUs keep NCHW unless asked
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        self.channels_last = channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if self.bf16 or channels_last:  # on a copy: a caller's model (one in training, say)
            own = self.model if loaded else copy.deepcopy(self.model)  # keeps dtype and layout
            self.model = for_inference(own, self.bf16, channels_last)
        # the search branch's dense part, compiled on request (passed to forward_search)
        self.search_maps = compiled(self.model.search_maps) if compile else None
        self.input_cfg = input_cfg or InputConfig()
        self.tracking = tracking or TrackingConfig()
        self.clip_len = clip_len or 3
        self.mode = mode
        self.name = name or f"SiamTFA-{mode}"
        self.template: Tensor | None = None
        self.first_template: Tensor | None = None  # the template from init's box
        self.appearance: Tensor | None = None  # its trunk feature (tracking.appearance_weight)
        self.filter: CorrelationFilter | None = None  # tracking.filter_weight
        self.look: HeadLook | None = None  # tracking.head_weight
        self.since_template = 0  # frames answered since the template was last set
        self.stream: dict = {}  # per-block past channels (online mode)
        self.stream_size: tuple[int, ...] = ()
        self.box = np.zeros(4)
        self.earlier: np.ndarray | None = None  # the box before self.box: its motion
        self._ranked: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 4)), np.zeros(0))

    # ---------------------------------------------------------------- preprocessing
    def _region(self, width: int, height: int) -> T.Region:
        """Where the next frame is looked at: around ``self.box`` (``TrackingConfig``)."""
        fit = T.fit_scale(width, height, self.input_cfg)
        return search_region(self.box, (width, height), fit, self.tracking)

    def _whole(self, width: int, height: int) -> T.Region:
        """The whole frame at the input's scale (the paper's view)."""
        return T.Region(T.fit_scale(width, height, self.input_cfg), 0.0, 0.0)

    def _prepare(self, image, region: T.Region | None = None) -> tuple[Tensor, T.Region, tuple]:
        """Normalised, resized, padded ``[1, 3, H', W']`` of ``region`` (default: the whole
        frame at the input's scale), the region, and the frame's ``(W, H)``."""
        rgb = _read(image)
        h, w = rgb.shape[:2]
        region = self._whole(w, h) if region is None else region
        t = T.prepare_region(rgb, region, self.input_cfg)
        t = t.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        return t, region, (w, h)

    def _normalise(self, crop: np.ndarray) -> Tensor:
        """An RGB crop ``[S, S, 3]`` as the network's input ``[1, 3, S, S]``."""
        t = T.normalize(crop, self.input_cfg)[None].to(self.device, self.dtype)
        return t.contiguous(memory_format=self.memory_format)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _answer(
        self, det: dict[str, Tensor], region: T.Region, size: tuple[int, int], rgb: np.ndarray
    ) -> float:
        """Pick the box among ``det``'s ranked RoIs, with the correlation head's boxes in
        ``rgb`` when it looks (``self.tracking``); none: keep the box. Returns the chosen
        candidate's score (0 when there is none)."""
        response = None
        if self.filter is not None:
            values = self.filter.at_boxes(det["trunk"], det["boxes"]).numpy()
            response = values, self.tracking.filter_weight
        self._ranked = _candidates(det, region, self.tracking.appearance_weight, response)
        if self.look is not None:
            with self._autocast():
                head = self.look.look(rgb, self.box)
            self._ranked = fuse(*self._ranked, *head, self.tracking.head_weight)
        previous, score = self.box, 0.0
        if len(self._ranked[0]):
            self.box, best = next_box(previous, *self._ranked, self.tracking, size, self.earlier)
            score = float(self._ranked[1][best])
        self.earlier = previous
        self.since_template += 1
        return score

    def _redetect(
        self,
        score: float,
        region: T.Region,
        size: tuple[int, int],
        search_whole: Callable[[T.Region], tuple[Tensor, dict[str, Tensor]]],
    ) -> tuple[float, T.Region, Tensor] | None:
        """Look at the whole frame when the answer in ``region`` scored ``score`` below
        ``tracking.redetect_below`` and ``region`` is not the whole frame already:
        ``search_whole(whole)`` gives the prepared whole frame and its ranked RoIs, and their
        top RoI (taken as it is; the correlation filter, learned at the region's scale, and the
        correlation head have no say) replaces the answer when it scores higher. Returns its score,
        the whole frame's region and the prepared frame; None when the answer stays."""
        whole = self._whole(*size)
        if score >= self.tracking.redetect_below or region == whole:
            return None
        frame, det = search_whole(whole)
        boxes, scores = _candidates(det, whole, self.tracking.appearance_weight)
        if not len(boxes) or scores[0] <= score:
            return None
        self._ranked = boxes, scores
        self.box = clipped_xywh(boxes[0], size)
        return float(scores[0]), whole, frame

    def _search(
        self, frames: Tensor, clip_len: int, stream: dict | None = None
    ) -> list[dict[str, Tensor]]:
        """The ranked RoIs of each of ``frames`` (prepared) for the current template."""
        with self._autocast():
            return self.model.forward_search(
                self.template,
                frames,
                clip_len,
                stream=stream,
                search_maps=self.search_maps,
                appearance=self.appearance,
                keep_trunk=self.filter is not None,
            )

    def _update_template(self, frame: Tensor, region: T.Region, score: float) -> None:
        """Blend the answer's appearance in ``frame`` (one prepared frame of ``region``) into
        the template when ``tracking.template_update`` asks for it: ``template_interval`` frames
        or more after the last change, at an answer scoring ``template_min_score`` or more."""
        cfg = self.tracking
        if (
            cfg.template_update <= 0
            or self.since_template < cfg.template_interval
            or score < cfg.template_min_score
        ):
            return
        x, y, w, h = self.box
        ((x1, y1, x2, y2),) = region.to_input([x, y, x + w, y + h])
        x1, x2 = np.clip([x1, x2], 0, frame.shape[-1])
        y1, y2 = np.clip([y1, y2], 0, frame.shape[-2])
        if x2 - x1 < 1 or y2 - y1 < 1:  # the box left the searched region
            return
        xyxy = torch.tensor([[x1, y1, x2, y2]], device=self.device, dtype=frame.dtype)
        with self._autocast():
            latest = self.model.template_features(frame, xyxy).to(self.first_template.dtype)
        self.template = torch.lerp(self.first_template, latest, cfg.template_update)
        self.since_template = 0

    def _learn_filter(self, det: dict[str, Tensor], region: T.Region) -> None:
        """Blend the answer, seen in ``region`` (``det``'s), into the correlation filter
        (``tracking.filter_rate``), unless its centre left the region's map."""
        if self.filter is None:
            return
        x, y, w, h = self.box
        (box,) = region.to_input([x, y, x + w, y + h])
        height, width = det["trunk"].shape[-2:]
        stride = self.filter.stride
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if 0 <= cx < width * stride and 0 <= cy < height * stride:
            self.filter.update(det["trunk"], box, self.tracking.filter_rate)

    def _head_look(self, rgb: np.ndarray, box: np.ndarray) -> HeadLook | None:
        """The correlation head's look, its template taken at ``box`` in ``rgb``, when
        ``tracking.head_weight`` asks for one; None otherwise."""
        if self.tracking.head_weight <= 0:
            return None
        if self.model.head is None:
            raise ValueError(
                "tracking.head_weight needs a model with a correlation head "
                "(model.correlation_head; siamtfa export --head)"
            )
        look = HeadLook(self.model.trunk, self.model.head, self._normalise)
        look.init(rgb, box)
        return look

    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """The last answered frame's ranked RoIs, in image pixels (``x1, y1, x2, y2``), and
        their scores: what the box was chosen from."""
        return self._ranked[0].copy(), self._ranked[1].copy()

    # ---------------------------------------------------------------- GOT-10k interface
    @torch.inference_mode()
    def init(self, image, box) -> np.ndarray:
        """Cache the template feature of ``box`` (x, y, w, h) in ``image``; reset the stream."""
        rgb = _read(image)
        box, inside = _check_box(box, rgb.shape[1], rgb.shape[0])
        self.box = box
        self.earlier = None
        frame, region, _ = self._prepare(rgb, self._region(rgb.shape[1], rgb.shape[0]))
        xyxy = torch.tensor(region.to_input(inside), device=self.device, dtype=frame.dtype)
        with self._autocast():
            self.template = self.model.template_features(frame, xyxy)
            self.first_template, self.since_template = self.template, 0
            self.appearance = None
            if self.tracking.appearance_weight > 0:
                self.appearance = self.model.template_appearance(frame, xyxy)
            self.look = self._head_look(rgb, box)
            self.filter = None
            if self.tracking.filter_weight > 0 and self.tracking.search_target_size > 0:
                self.filter = CorrelationFilter(
                    self.model.trunk(frame)[0],
                    xyxy[0].tolist(),
                    STRIDES[APPEARANCE_LEVEL],
                    self.tracking.filter_sigma,
                    self.tracking.filter_lambda,
                )
            self.stream, self.stream_size = {}, frame.shape[-2:]
            if self.mode == "online":  # frame 0 fills the shift cache: frame 1's past
                self.model.backbone(frame, 1, self.stream)
        return self.box.copy()

    @torch.inference_mode()
    def update(self, image) -> np.ndarray:
        """The box ``[x, y, w, h]`` in ``image`` (online mode)."""
        if self.template is None:
            raise RuntimeError("call init(image, box) before update(image)")
        if self.mode != "online":
            raise RuntimeError("clip mode needs future frames: use track(img_files, box)")
        rgb = _read(image)
        frame, region, size = self._prepare(rgb, self._region(rgb.shape[1], rgb.shape[0]))
        if frame.shape[-2:] != self.stream_size:
            self.stream, self.stream_size = {}, frame.shape[-2:]  # size changed: no valid past
        past = dict(self.stream)  # the shift's past, for a second look at this frame
        det = self._search(frame, 1, self.stream)[0]
        score = self._answer(det, region, size, rgb)

        def search_whole(whole: T.Region) -> tuple[Tensor, dict[str, Tensor]]:
            whole_frame = self._prepare(rgb, whole)[0]
            return whole_frame, self._search(whole_frame, 1, past)[0]

        found = self._redetect(score, region, size, search_whole)
        if found is None:
            self._learn_filter(det, region)
        else:  # the whole frame's look is the one the stream continues from
            (score, region, frame), self.stream = found, past
        self._update_template(frame, region, score)
        return self.box.copy()

    def _follow(
        self, img_files: list, boxes: np.ndarray, times: np.ndarray, on_frame: Callable
    ) -> None:
        """After ``init``: frame by frame online, else clips of ``clip_len`` frames."""
        if self.mode == "online":
            super()._follow(img_files, boxes, times, on_frame)
            return
        n = len(img_files)
        for first in range(1, n, self.clip_len):
            idx = list(range(first, min(first + self.clip_len, n)))
            start = time.perf_counter()
            boxes[idx] = self._track_clip([img_files[i] for i in idx])
            times[idx] = (time.perf_counter() - start) / len(idx)
            on_frame(len(idx))

    @torch.inference_mode()
    def _track_clip(self, images: list) -> np.ndarray:
        rgbs = [_read(im) for im in images]
        h, w = rgbs[0].shape[:2]
        if any(r.shape[:2] != (h, w) for r in rgbs):
            raise ValueError("clip mode needs frames of one size within a clip")
        region = self._region(w, h)  # one region for the clip: around the box before it
        prepared = [self._prepare(r, region) for r in rgbs]
        frames = torch.cat([p[0] for p in prepared])
        dets = self._search(frames, len(images))

        @functools.cache
        def whole_clip(whole: T.Region) -> tuple[Tensor, list[dict[str, Tensor]]]:
            """The whole frames of the clip, searched together once, as the shift needs."""
            whole_frames = torch.cat([self._prepare(r, whole)[0] for r in rgbs])
            return whole_frames, self._search(whole_frames, len(images))

        out = []
        for i, det in enumerate(dets):
            score, seen, where = (
                self._answer(det, region, (w, h), rgbs[i]),
                frames[i : i + 1],
                region,
            )
            found = self._redetect(
                score, region, (w, h), lambda whole, i=i: _nth(whole_clip(whole), i)
            )
            if found is None:
                self._learn_filter(det, region)
            else:
                score, where, seen = found
            out.append(self.box.copy())
            if i == len(dets) - 1:  # the next clip's template may change only between clips
                self._update_template(seen, where, score)
        return np.stack(out)
