"""The optional search region (``TrackingConfig.search_target_size``): region geometry against
hand-computed values, the crop against array slicing, and the tracker's coordinate mapping
with a model whose answers are known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from siamtfa.config import InputConfig, TrackingConfig
from siamtfa.data.transforms import (
    Region,
    crop_resize,
    fit_scale,
    prepare_region,
    scaled_size,
)
from siamtfa.tracking import Tracker
from siamtfa.tracking.tracker import search_region

from .conftest import small_model

ZOOM = TrackingConfig(search_target_size=40.0, max_upsample=2.0)
INPUT = InputConfig(max_size=320, min_size=240)  # a 640x480 frame fits at scale 0.5


def test_whole_frame_when_off_or_target_large_enough() -> None:
    box = np.array([300.0, 200.0, 20.0, 20.0])
    assert search_region(box, (640, 480), 0.5, TrackingConfig()) == Region(0.5, 0.0, 0.0)
    big = np.array([100.0, 100.0, 100.0, 100.0])  # 100 px * 0.5 = 50 >= 40 input px
    assert search_region(big, (640, 480), 0.5, ZOOM) == Region(0.5, 0.0, 0.0)


def test_region_by_hand() -> None:
    # target sqrt(20*20) = 20 px -> scale 40/20 = 2 (= max_upsample); the region is the
    # 320x240 input / 2 = 160x120 frame pixels centred on (310, 210)
    r = search_region(np.array([300.0, 200.0, 20.0, 20.0]), (640, 480), 0.5, ZOOM)
    assert r == pytest.approx(Region(2.0, 230.0, 150.0))
    # 5 px target: capped at 2x upsampling
    r = search_region(np.array([300.0, 200.0, 5.0, 5.0]), (640, 480), 0.5, ZOOM)
    assert r.scale == pytest.approx(2.0)
    # 32 px target: scale 1.25, region 256x192 centred on (316, 216)
    r = search_region(np.array([300.0, 200.0, 32.0, 32.0]), (640, 480), 0.5, ZOOM)
    assert r == pytest.approx(Region(1.25, 316 - 128, 216 - 96))
    # near the corner the region is shifted inside the frame
    r = search_region(np.array([630.0, 470.0, 20.0, 20.0]), (640, 480), 0.5, ZOOM)
    assert r == pytest.approx(Region(2.0, 480.0, 360.0))
    r = search_region(np.array([-5.0, -5.0, 20.0, 20.0]), (640, 480), 0.5, ZOOM)
    assert r == pytest.approx(Region(2.0, 0.0, 0.0))


def test_crop_resize_is_the_slice_at_unit_scale() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    out = crop_resize(rgb, Region(1.0, 100.0, 50.0), INPUT)
    np.testing.assert_array_equal(out, rgb[50:290, 100:420])
    # bilinear interpolation of a linear ramp is exact: output pixel (u, v) samples the frame at
    # x0 + (u + 0.5) / s - 0.5 (pixel centres), so a 2x region is checked against the formula
    y, x = np.mgrid[0:480, 0:640].astype(float)
    ramp = np.repeat((0.2 * x + 0.2 * y)[..., None], 3, 2)
    out = crop_resize(np.round(ramp).astype(np.uint8), Region(2.0, 100.0, 50.0), INPUT)
    v, u = np.mgrid[0:240, 0:320].astype(float)
    ref = 0.2 * (100 + (u + 0.5) / 2 - 0.5) + 0.2 * (50 + (v + 0.5) / 2 - 0.5)
    assert out.shape == (240, 320, 3)
    assert np.abs(out[..., 0] - ref).max() <= 1.0  # the ramp's own rounding to uint8


def test_region_at_the_edge_fits_its_rounded_input() -> None:
    # 352x288 into 256x192: fit 2/3, input 235 (rounded up from 234.67) x 192. A 20 px target
    # at the bottom-right corner: scale 2, so the crop spans 235 / 2 = 117.5 frame pixels and
    # must start at 352 - 117.5 (W * fit / 2 = 117.33 would end past the frame: PIL refused)
    cfg = InputConfig(max_size=256, min_size=192)
    fit = 2 / 3
    r = search_region(np.array([335.0, 270.0, 20.0, 20.0]), (352, 288), fit, ZOOM)
    assert r == pytest.approx(Region(2.0, 234.5, 192.0))
    y, x = np.mgrid[0:288, 0:352].astype(float)
    ramp = np.repeat((0.3 * x + 0.2 * y)[..., None], 3, 2)
    out = crop_resize(np.round(ramp).astype(np.uint8), r, cfg)
    v, u = np.mgrid[0:192, 0:235].astype(float)
    ref = 0.3 * (234.5 + (u + 0.5) / 2 - 0.5) + 0.2 * (192 + (v + 0.5) / 2 - 0.5)
    assert out.shape == (192, 235, 3)
    assert np.abs(out[..., 0] - ref).max() <= 1.0
    # a scale a hair above the fit (40 / 59.95 px = 0.6672 < 235 / 352): 235 input pixels
    # would span 352.2 frame pixels, more than the frame: the whole frame instead
    near = search_region(np.array([100.0, 100.0, 59.95, 59.95]), (352, 288), fit, ZOOM)
    assert near == Region(fit, 0.0, 0.0)


def test_regions_of_any_frame_and_input_size_lie_inside_the_frame() -> None:
    # random frame and input sizes, targets anywhere (edges included) and of any size: the
    # region's whole-pixel input always lies inside the frame, so the crop never fails
    rng = np.random.default_rng(5)
    for _ in range(300):
        width, height = (int(n) for n in rng.integers(16, 900, 2))
        cfg = InputConfig(max_size=int(rng.integers(64, 400)), min_size=int(rng.integers(48, 300)))
        cfg.min_size = min(cfg.min_size, cfg.max_size)
        fit = fit_scale(width, height, cfg)
        side = rng.uniform(1, max(width, height), 2)
        corner = rng.uniform(-side, (width, height))
        zoom = TrackingConfig(search_target_size=float(rng.uniform(8, 80)), max_upsample=4.0)
        r = search_region(np.r_[corner, side], (width, height), fit, zoom)
        if r != Region(fit, 0.0, 0.0):  # not the whole frame, which is resized, not cropped
            span_w, span_h = (n / r.scale for n in scaled_size(width, height, fit))
            assert r.x0 >= 0 and r.y0 >= 0
            assert r.x0 + span_w <= width + 1e-9 and r.y0 + span_h <= height + 1e-9
        out = crop_resize(np.zeros((height, width, 3), np.uint8), r, cfg)
        assert out.shape[:2] == scaled_size(width, height, fit)[::-1]


@pytest.mark.parametrize(
    ("mean", "std"), [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.0,) * 3, (1 / 255,) * 3)]
)
def test_prepared_input_is_the_normalised_padded_crop(mean, std) -> None:
    # against the per-channel arithmetic written out: (pixel / 255 - mean) / std, zero padding
    cfg = dataclasses.replace(INPUT, mean=mean, std=std)  # ImageNet's; the default's (0..255)
    rgb = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    region = Region(0.9, 20.0, 10.0)
    got = prepare_region(rgb, region, cfg)
    crop = crop_resize(rgb, region, cfg).astype(np.float32)
    h, w = crop.shape[:2]
    assert got.shape == (1, 3, 256, 320)  # 240 rows padded to a multiple of 32
    assert got.is_contiguous(memory_format=torch.channels_last)
    for c in range(3):
        expected = (crop[..., c] / np.float32(255.0) - np.float32(mean[c])) / np.float32(std[c])
        np.testing.assert_array_equal(got[0, c, :h, :w].numpy(), expected)
    assert got[0, :, h:].eq(0).all() and got[0, :, :, w:].eq(0).all()


def test_region_round_trip() -> None:
    r = Region(2.5, 31.0, 17.0)
    box = [40.0, 20.0, 70.0, 90.0]
    back = r.to_image(np.array(r.to_input(box)))
    np.testing.assert_allclose(back[0], box)


def test_tracker_maps_template_and_answers_through_the_region() -> None:
    """A model that answers a fixed input-pixel box: the tracker's box is that box mapped
    through the region it chose, and the template box it was given is the initial box mapped in."""
    model = small_model().eval()
    seen: dict[str, list] = {"template": [], "frames": []}
    answer = torch.tensor([[60.0, 50.0, 100.0, 90.0]])  # input pixels

    def template_features(images, boxes):
        seen["template"].append(boxes.tolist())
        return torch.zeros(len(boxes), 8, 7, 7)

    def forward_search(template, images, clip_len=1, stream=None, **_):
        seen["frames"].append(images.shape)
        det = {"box": answer[0], "score": torch.tensor(0.9), "boxes": answer}
        return [{**det, "scores": torch.tensor([0.9])}] * images.shape[0]

    model.template_features = template_features
    model.forward_search = forward_search
    tracker = Tracker(model, "online", "cpu", INPUT, tracking=ZOOM)
    frame = np.zeros((480, 640, 3), np.uint8)
    tracker.init(frame, [300.0, 200.0, 20.0, 20.0])  # region: scale 2 at (230, 150)
    np.testing.assert_allclose(seen["template"][0], [[140.0, 100.0, 180.0, 140.0]])
    box = tracker.update(frame)
    # input (60, 50)-(100, 90) / 2 + (230, 150) = (260, 175)-(280, 195)
    np.testing.assert_allclose(box, [260.0, 175.0, 20.0, 20.0])
    assert tuple(seen["frames"][0][-2:]) == (256, 320)  # the input size of the whole frame
    # the next region follows the new box: centre (270, 185) -> (190, 125)
    assert search_region(box, (640, 480), 0.5, ZOOM) == pytest.approx(Region(2.0, 190.0, 125.0))


def _scripted_model(
    answers: list[tuple[list[float], float]], calls: list, templates: list | None = None
) -> torch.nn.Module:
    """A model whose search passes answer ``answers`` in turn (one input-pixel box and its score
    per pass, for every frame of the pass); ``calls`` gets each pass's input size, each pass
    marks the shift's ``stream`` with its number, and ``templates`` gets each template's
    input size and input-pixel box."""
    model = small_model().eval()

    def template_features(images, boxes):
        if templates is not None:
            templates.append((tuple(images.shape[-2:]), boxes[0].tolist()))
        return torch.zeros(len(boxes), 8, 7, 7)

    def forward_search(template, images, clip_len=1, stream=None, **_):
        calls.append(tuple(images.shape[-2:]))
        if stream is not None:
            stream["pass"] = len(calls)
        box, score = answers[len(calls) - 1]
        boxes, scores = torch.tensor([box]), torch.tensor([score])
        det = {"box": boxes[0], "score": scores[0], "boxes": boxes, "scores": scores}
        return [det] * len(images)

    model.template_features = template_features
    model.forward_search = forward_search
    return model


@pytest.mark.parametrize(
    ("below", "whole_score", "expected"),
    [
        # 0.2 < 0.5: the whole frame is searched; its 0.8 answer (10, 20)-(30, 40) at scale
        # 0.5 is (20, 40)-(60, 80) in the image
        (0.5, 0.8, [20.0, 40.0, 40.0, 40.0]),
        (0.5, 0.1, [260.0, 175.0, 20.0, 20.0]),  # the whole frame scores lower: kept
        (0.1, 0.8, [260.0, 175.0, 20.0, 20.0]),  # 0.2 is not below 0.1: no second look
    ],
)
def test_redetection_searches_the_whole_frame_after_a_weak_answer(
    below: float, whole_score: float, expected: list[float]
) -> None:
    calls: list = []
    answers = [([60.0, 50.0, 100.0, 90.0], 0.2), ([10.0, 20.0, 30.0, 40.0], whole_score)]
    cfg = TrackingConfig(search_target_size=40.0, max_upsample=2.0, redetect_below=below)
    tracker = Tracker(_scripted_model(answers, calls), "online", "cpu", INPUT, tracking=cfg)
    frame = np.zeros((480, 640, 3), np.uint8)
    tracker.init(frame, [300.0, 200.0, 20.0, 20.0])  # region: scale 2 at (230, 150)
    np.testing.assert_allclose(tracker.update(frame), expected)
    assert len(calls) == (2 if below > 0.2 else 1)
    # the next frame's shift continues from the look that gave the answer
    assert tracker.stream["pass"] == (2 if expected[0] == 20.0 else 1)


@pytest.mark.parametrize("mode", ["online", "clip"])
def test_template_update_after_redetection_takes_the_whole_frame(mode: str) -> None:
    calls, templates = [], []
    answers = [([60.0, 50.0, 100.0, 90.0], 0.2), ([10.0, 20.0, 30.0, 40.0], 0.8)]
    cfg = TrackingConfig(
        search_target_size=40.0,
        max_upsample=2.0,
        redetect_below=0.5,
        template_update=0.5,
        template_interval=1,
        template_min_score=0.0,
    )
    model = _scripted_model(answers, calls, templates)
    tracker = Tracker(model, mode, "cpu", INPUT, 1, tracking=cfg)
    frame = np.zeros((480, 640, 3), np.uint8)
    tracker.track([frame] * 2, [300.0, 200.0, 20.0, 20.0])
    # init's template from the region; the update's from the whole frame (scale 0.5, padded
    # to 256x320), where the answer (20, 40)-(60, 80) in the image is (10, 20)-(30, 40)
    assert templates[1] == ((256, 320), [10.0, 20.0, 30.0, 40.0])


def test_redetection_in_clip_mode_searches_the_whole_clip_once() -> None:
    calls: list = []
    answers = [([60.0, 50.0, 100.0, 90.0], 0.2), ([10.0, 20.0, 30.0, 40.0], 0.8)]
    cfg = TrackingConfig(search_target_size=40.0, max_upsample=2.0, redetect_below=0.5)
    tracker = Tracker(_scripted_model(answers, calls), "clip", "cpu", INPUT, 2, tracking=cfg)
    frame = np.zeros((480, 640, 3), np.uint8)
    boxes, _ = tracker.track([frame] * 3, [300.0, 200.0, 20.0, 20.0])
    # both frames of the clip answer weakly in the region: one whole-frame pass for the two
    np.testing.assert_allclose(boxes[1:], [[20.0, 40.0, 40.0, 40.0]] * 2)
    assert calls == [(256, 320), (256, 320)]


def _two_box_model(seen: list, passes: list | None = None) -> torch.nn.Module:
    """A model whose every frame has two RoIs (input pixels), A then B, scoring 0.9 and 0.3
    with appearance similarities 0.1 and 1.0 (``passes``: other (scores, similarities) for
    each search pass in turn)."""
    model = small_model().eval()
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [100.0, 100.0, 120.0, 120.0]])

    def template_features(images, boxes):
        return torch.zeros(len(boxes), 8, 7, 7)

    def template_appearance(images, boxes):
        seen.append("template_appearance")
        return torch.ones(len(boxes), 5)

    def forward_search(template, images, clip_len=1, stream=None, appearance=None, **_):
        seen.append(appearance)
        scores, similarity = passes.pop(0) if passes else ([0.9, 0.3], [0.1, 1.0])
        det = {"box": boxes[0], "score": torch.tensor(scores[0]), "boxes": boxes}
        det["scores"], det["similarity"] = torch.tensor(scores), torch.tensor(similarity)
        return [det] * images.shape[0]

    model.template_features = template_features
    model.template_appearance = template_appearance
    model.forward_search = forward_search
    return model


@pytest.mark.parametrize("mode", ["online", "clip"])
def test_appearance_weight_ranks_by_the_blend(mode: str) -> None:
    frame = np.zeros((240, 320, 3), np.uint8)  # scale 1: input pixels are image pixels
    for weight, box, ranked_scores in [
        (0.0, [10.0, 10.0, 20.0, 20.0], [0.9, 0.3]),  # the paper's top-scoring RoI
        (0.9, [100.0, 100.0, 20.0, 20.0], [0.93, 0.18]),  # 0.1*0.3 + 0.9*1.0 vs 0.1*0.9 + 0.09
    ]:
        seen: list = []
        cfg = TrackingConfig(appearance_weight=weight)
        tracker = Tracker(_two_box_model(seen), mode, "cpu", INPUT, tracking=cfg, clip_len=2)
        boxes, _ = tracker.track([frame] * 3, [50.0, 50.0, 20.0, 20.0])
        np.testing.assert_allclose(boxes[1:], [box, box])
        np.testing.assert_allclose(tracker.ranked()[1], ranked_scores)
        np.testing.assert_allclose(tracker.ranked()[0][0], np.add(box, [0, 0, box[0], box[1]]))
        # the template's appearance is computed, and passed on, only when it is used
        assert ("template_appearance" in seen) == (weight > 0)
        assert all((a is not None) == (weight > 0) for a in seen if not isinstance(a, str))


def test_redetection_compares_blended_scores() -> None:
    # in the region, A blends to 0.1*0.9 + 0.9*0.1 = 0.18 < redetect_below: the whole frame is
    # searched, where B blends to 0.1*0.1 + 0.9*1.0 = 0.91 > 0.18 (its raw 0.1 is below A's
    # raw 0.9 and the whole frame's top raw score 0.15 is below 0.18): B is taken
    cfg = TrackingConfig(
        appearance_weight=0.9, search_target_size=40.0, max_upsample=2.0, redetect_below=0.5
    )
    passes = [([0.9, 0.3], [0.1, 0.1]), ([0.15, 0.1], [0.1, 1.0])]
    tracker = Tracker(_two_box_model([], passes), "online", "cpu", INPUT, tracking=cfg)
    frame = np.zeros((240, 320, 3), np.uint8)
    tracker.init(frame, [50.0, 50.0, 20.0, 20.0])
    assert tracker._region(320, 240) != tracker._whole(320, 240)
    np.testing.assert_allclose(tracker.update(frame), [100.0, 100.0, 20.0, 20.0])
    assert tracker.ranked()[1][0] == pytest.approx(0.91)
    assert not passes  # both passes were made
