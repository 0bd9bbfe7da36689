"""Tracker modes against the model's batch forward, causality, inputs, toolkit compatibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamtfa.config import InputConfig
from siamtfa.ops import xyxy_to_xywh
from siamtfa.tracking import OpenCVTracker, Tracker

from .conftest import small_model

SIZE = InputConfig(max_size=128, min_size=96)  # frames of 128x96: scale 1, no padding


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    out = []
    for t in range(n):
        f = base.copy()
        f[30 + t : 60 + t, 40 + 2 * t : 80 + 2 * t] = 255 - f[30:60, 40:80]
        out.append(f)
    return out


BOX = [40.0, 30.0, 40.0, 30.0]


def batch_boxes(tracker: Tracker, clip: list[np.ndarray]) -> np.ndarray:
    x = torch.cat([tracker._prepare(f)[0] for f in clip])
    with torch.no_grad():
        dets = tracker.model.forward_search(tracker.template, x, len(clip))
    return xyxy_to_xywh(torch.stack([d["box"] for d in dets])).numpy()


def test_online_is_causal() -> None:
    model = small_model().eval()
    video = frames(5)
    tracker = Tracker(model, "online", "cpu", SIZE)
    boxes, _ = tracker.track(video, BOX)
    changed = [f.copy() for f in video]
    changed[3] = np.random.default_rng(9).integers(0, 255, changed[3].shape, dtype=np.uint8)
    boxes2, _ = tracker.track(changed, BOX)
    np.testing.assert_array_equal(boxes[:3], boxes2[:3])
    assert not np.array_equal(boxes[3], boxes2[3])


def test_online_equals_batch_forward_for_causal_model() -> None:
    # float64: with untrained weights many proposals score alike, and float32 differences
    # between batched and single-frame convolutions could reorder near-ties
    model = small_model(causal=True).eval().double()
    video = frames(5)
    tracker = Tracker(model, "online", "cpu", SIZE)
    boxes, times = tracker.track(video, BOX)
    assert boxes.shape == (5, 4) and (times > 0).all()
    # the batch forward of frames 0..4 as one causal clip; frame 0 only fills the past
    expected = batch_boxes(tracker, video)[1:]
    np.testing.assert_allclose(boxes[1:], expected, atol=1e-6)
    np.testing.assert_allclose(boxes[0], BOX)


def test_clip_mode_equals_batch_forward_on_each_clip() -> None:
    model = small_model().eval().double()
    video = frames(7)
    tracker = Tracker(model, "clip", "cpu", SIZE, clip_len=3)
    boxes, _ = tracker.track(video, BOX)
    for clip in ([1, 2, 3], [4, 5, 6]):
        expected = batch_boxes(tracker, [video[i] for i in clip])
        np.testing.assert_allclose(boxes[clip], expected, atol=1e-6)
    with pytest.raises(RuntimeError, match="clip mode"):
        tracker.update(video[1])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["online", "clip"])
def test_compiled_search_gives_the_eager_boxes(mode: str) -> None:
    # float32: the pre-packed (oneDNN) kernels that freezing brings take no float64. Only the
    # order of additions may change, so the boxes agree to well within a pixel
    model = small_model().eval()
    video = frames(5)
    eager, _ = Tracker(model, mode, "cpu", SIZE, clip_len=2).track(video, BOX)
    tracker = Tracker(model, mode, "cpu", SIZE, clip_len=2, compile=True)
    graph, calls = tracker.search_maps, []
    tracker.search_maps = lambda *args: calls.append(args[1].shape[0]) or graph(*args)
    boxes, _ = tracker.track(video, BOX)
    np.testing.assert_allclose(boxes, eager, atol=1e-3)
    assert calls == ([1, 1, 1, 1] if mode == "online" else [2, 2])  # every frame went through it


def test_channels_last_is_the_cpu_default_and_gives_the_nchw_boxes() -> None:
    model = small_model().eval().double()  # float64: only the order of additions may differ
    video = frames(5)
    nhwc = Tracker(model, "online", "cpu", SIZE)
    assert nhwc.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    boxes, _ = nhwc.track(video, BOX)
    nchw = Tracker(model, "online", "cpu", SIZE, channels_last=False)
    assert nchw.model.backbone.conv1.weight.is_contiguous()
    expected, _ = nchw.track(video, BOX)
    np.testing.assert_allclose(boxes, expected, atol=1e-6)


def test_bf16_tracker_gives_the_boxes_of_autocast_and_leaves_the_model_float32() -> None:
    # the tracker casts the convolution and linear weights to bf16 once; autocast on float32
    # weights casts them on every call, to the same values: the boxes must not move
    model = small_model().eval()
    video = frames(7)
    tracker = Tracker(model, "clip", "cpu", SIZE, clip_len=3, precision="bf16")
    boxes, _ = tracker.track(video, BOX)
    assert tracker.model.backbone.conv1.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the caller's, untouched
    x, y, w, h = BOX
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        template = model.template_features(
            tracker._prepare(video[0])[0], torch.tensor([[x, y, x + w, y + h]])
        )
        for clip in ([1, 2, 3], [4, 5, 6]):
            images = torch.cat([tracker._prepare(video[i])[0] for i in clip])
            dets = model.forward_search(template, images, len(clip))
            expected = xyxy_to_xywh(torch.stack([d["box"] for d in dets])).float().numpy()
            np.testing.assert_allclose(boxes[clip], expected, atol=1e-4)


@pytest.mark.slow
def test_compiled_search_keeps_the_eager_shift_past() -> None:
    # online mode: each call leaves the layer4 blocks' past channels in the stream for the
    # next frame; compiled, they must be the eager ones (with inductor's freezing, a frozen-BN
    # model's second block got values that are none of its activations)
    model = small_model().eval()
    assert model.cfg.backbone.norm == "frozen_bn"
    video = frames(3)
    tracker = Tracker(model, "online", "cpu", SIZE, channels_last=False)
    tracker.init(video[0], BOX)
    x = tracker._prepare(video[1])[0]
    graph = Tracker(model, "online", "cpu", SIZE, channels_last=False, compile=True).search_maps
    eager, past = dict(tracker.stream), dict(tracker.stream)
    with torch.inference_mode():
        model.search_maps(tracker.template, x, 1, eager)
        graph(tracker.template, x, 1, past)
    assert len(eager) == 2  # the two blocks of layer4
    for block in eager:
        torch.testing.assert_close(past[block], eager[block], atol=1e-4, rtol=1e-4)


def test_any_size_grayscale_and_partly_outside_box() -> None:
    tracker = Tracker(small_model().eval(), "online", "cpu", SIZE)
    gray = np.random.default_rng(0).integers(0, 255, (77, 150), dtype=np.uint8)
    tracker.init(gray, [-20.0, 10.0, 60.0, 40.0])
    box = tracker.update(Image.fromarray(gray).convert("RGB"))
    assert box.shape == (4,) and (box[2:] >= 0).all()
    assert box[0] >= 0 and box[0] + box[2] <= 150 + 1e-6
    with pytest.raises(ValueError, match="outside"):
        tracker.init(gray, [200.0, 10.0, 20.0, 20.0])
    with pytest.raises(ValueError, match="finite"):
        tracker.init(gray, [float("nan"), 10.0, 20.0, 20.0])
    with pytest.raises(ValueError, match="no area"):
        tracker.init(gray, [10.0, 10.0, 0.0, 20.0])


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    from siamtfa.checkpoint import save_checkpoint
    from siamtfa.config import from_dict, to_dict

    cfg = from_dict({"preset": "lite", "input": {"max_size": 128, "min_size": 96}})
    model = small_model().eval()
    save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg)}, tmp_path / "c.pt")
    video = frames(3)
    a, _ = Tracker(model, "online", "cpu", SIZE).track(video, BOX)
    b, _ = Tracker(tmp_path / "c.pt", "online", "cpu").track(video, BOX)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_selection_prior_is_applied_to_the_ranked_rois(tmp_path: Path) -> None:
    from siamtfa.checkpoint import save_checkpoint
    from siamtfa.config import TrackingConfig, from_dict, to_dict
    from siamtfa.tracking.selection import select_box

    prior = TrackingConfig(
        window_influence=0.7, window_sigma=0.5, window_lead=1.0, scale_penalty=0.5, size_lr=0.5
    )
    cfg = from_dict(
        {"preset": "lite", "input": {"max_size": 128, "min_size": 96}, "tracking": vars(prior)}
    )
    model = small_model().eval().double()
    save_checkpoint({"model": model.state_dict(), "config": to_dict(cfg)}, tmp_path / "c.pt")
    tracker = Tracker(tmp_path / "c.pt", "online", "cpu")
    assert tracker.tracking == prior  # the checkpoint's choice rule
    video = frames(5)
    tracker.init(video[0], BOX)
    moved, history = 0, [np.asarray(BOX, np.float64)]
    for frame in video[1:]:
        x, y, w, h = history[-1]
        previous = torch.tensor([x, y, x + w, y + h], dtype=torch.float64)
        velocity = None  # the last answer's centre displacement (none for frame 1)
        if len(history) > 1:
            velocity = torch.from_numpy(
                history[-1][:2] + history[-1][2:] / 2 - history[-2][:2] - history[-2][2:] / 2
            )
        tracker.update(frame)
        history.append(tracker.box.copy())
        boxes, scores = (torch.from_numpy(a).double() for a in tracker.ranked())
        expected = select_box(boxes, scores, previous, prior, velocity).clamp(min=0)
        expected[2:] = torch.minimum(expected[2:], torch.tensor([128.0, 96.0], dtype=torch.float64))
        np.testing.assert_allclose(tracker.box, xyxy_to_xywh(expected).numpy(), atol=1e-4)
        moved += not np.allclose(tracker.box, xyxy_to_xywh(boxes[0]).numpy(), atol=1e-3)
    assert moved > 0  # the prior changed the answer on some frame


def _template_at(tracker: Tracker, frame: np.ndarray, box: np.ndarray) -> torch.Tensor:
    """The template feature of ``box`` (x, y, w, h) in ``frame``: scale 1, no region."""
    x, y, w, h = box
    xyxy = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float64)
    with torch.no_grad():
        return tracker.model.template_features(tracker._prepare(frame)[0], xyxy)


@pytest.mark.slow
def test_template_update_blends_the_answer_into_the_first_template() -> None:
    from siamtfa.config import TrackingConfig

    model = small_model().eval().double()
    video = frames(6)
    every_2nd = TrackingConfig(template_update=0.3, template_interval=2, template_min_score=0.0)
    tracker = Tracker(model, "online", "cpu", SIZE, tracking=every_2nd)
    tracker.init(video[0], BOX)
    first = tracker.template.clone()
    expected = first
    for t, frame in enumerate(video[1:], start=1):
        box = tracker.update(frame)
        if t % 2 == 0:  # frames 2 and 4: 0.7 x the first + 0.3 x the answer's appearance
            expected = 0.7 * first + 0.3 * _template_at(tracker, frame, box)
        torch.testing.assert_close(tracker.template, expected, rtol=0, atol=1e-12)
    assert not torch.equal(tracker.template, first)
    # no answer scores 2: the template never changes, and the boxes are the paper's
    never = TrackingConfig(template_update=0.3, template_interval=1, template_min_score=2.0)
    boxes, _ = Tracker(model, "online", "cpu", SIZE, tracking=never).track(video, BOX)
    np.testing.assert_array_equal(boxes, Tracker(model, "online", "cpu", SIZE).track(video, BOX)[0])
    # clip mode changes it between clips only, from the last frame of a clip
    every = TrackingConfig(template_update=0.5, template_interval=1, template_min_score=0.0)
    clip = Tracker(model, "clip", "cpu", SIZE, clip_len=2, tracking=every)
    boxes, _ = clip.track(video[:5], BOX)
    expected = 0.5 * first + 0.5 * _template_at(clip, video[4], boxes[4])
    torch.testing.assert_close(clip.template, expected, rtol=0, atol=1e-12)


def test_runs_inside_the_official_toolkit(tmp_path: Path) -> None:
    from got10k.experiments import ExperimentGOT10k

    seq = tmp_path / "data" / "val" / "GOT-10k_Val_000001"
    seq.mkdir(parents=True)
    for i, f in enumerate(frames(4), 1):
        Image.fromarray(f).save(seq / f"{i:08d}.jpg")
    (seq / "groundtruth.txt").write_text("40,30,40,30\n" * 4)
    for label, value in (("cover", 8), ("absence", 0), ("cut_by_image", 0)):
        (seq / f"{label}.label").write_text(f"{value}\n" * 4)
    (seq / "meta_info.ini").write_text("[METAINFO]\nresolution: (128, 96)\n")
    (tmp_path / "data" / "val" / "list.txt").write_text("GOT-10k_Val_000001\n")
    exp = ExperimentGOT10k(
        str(tmp_path / "data"),
        subset="val",
        result_dir=str(tmp_path / "results"),
        report_dir=str(tmp_path / "reports"),
    )
    tracker = Tracker(small_model().eval(), "online", "cpu", SIZE, name="siamtfa")
    exp.run(tracker)
    out = tmp_path / "results" / "GOT-10k" / "siamtfa" / "GOT-10k_Val_000001"
    assert len((out / "GOT-10k_Val_000001_001.txt").read_text().splitlines()) == 4
    exp.report(["siamtfa"])


@pytest.mark.parametrize("kind", ["csrt", "kcf"])
def test_opencv_baselines_follow_a_moving_patch(kind: str) -> None:
    pytest.importorskip("cv2")
    video = frames(6)
    boxes, times = OpenCVTracker(kind).track(video, BOX)
    assert boxes.shape == (6, 4) and (times >= 0).all()
    assert abs(boxes[-1][0] - (40 + 2 * 5)) <= 6  # the patch moved 2 px/frame right
