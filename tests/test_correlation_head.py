"""NanoTrack's correlation head (``tracking.head_weight``): the converted head against
onnxruntime running NanoTrack's ONNX head, the pixel-wise correlation against a naive loop, the
crop and the box decoding against hand-computed geometry, the fused score against hand-computed
values, and the tracker answering with the head's box where the head is sure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from siamtfa import build_model
from siamtfa.cli import main
from siamtfa.config import InputConfig, TrackingConfig, preset
from siamtfa.model.convert import nanotrack_head
from siamtfa.model.correlation_head import CorrelationHead, PixelwiseCorrelation
from siamtfa.tracking import Tracker
from siamtfa.tracking.head_look import cell_centres, context_side, decode, square_crop
from siamtfa.tracking.selection import agreement, fuse

NANOTRACK = Path(__file__).resolve().parents[2] / "shared" / "models" / "nanotrack"
HEAD_ONNX = NANOTRACK / "nanotrack_head_sim_v2.onnx"
needs_nanotrack = pytest.mark.skipif(
    not HEAD_ONNX.is_file(), reason="NanoTrack's ONNX files are not here"
)


@needs_nanotrack
def test_converted_head_matches_onnxruntime() -> None:
    ort = pytest.importorskip("onnxruntime")
    head = CorrelationHead().eval()
    head.load_state_dict(nanotrack_head(HEAD_ONNX))  # strict: every weight converted
    rng = np.random.default_rng(0)
    template = rng.normal(0, 1, (1, 48, 8, 8)).astype(np.float32)
    search = rng.normal(0, 1, (1, 48, 16, 16)).astype(np.float32)
    session = ort.InferenceSession(str(HEAD_ONNX), providers=["CPUExecutionProvider"])
    logits, distances = session.run(None, {"input1": template, "input2": search})
    with torch.no_grad():
        ours = head(torch.from_numpy(template), torch.from_numpy(search))
    assert ours[0].shape == (1, 2, 16, 16) and ours[1].shape == (1, 4, 16, 16)
    assert np.abs(ours[0].numpy() - logits).max() < 1e-3
    assert np.abs(ours[1].numpy() - distances).max() < 1e-3 * np.abs(distances).max()


@needs_nanotrack
def test_head_converter_refuses_the_backbone_file(tmp_path: Path) -> None:
    backbone = NANOTRACK / "nanotrack_backbone_sim_v2.onnx"
    with pytest.raises(ValueError, match=r"backbone_sim_v2\.onnx: \d+ Conv .*head has 34"):
        nanotrack_head(backbone)
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        nanotrack_head(tmp_path / "none.onnx")


def test_pixelwise_correlation_is_the_naive_loop() -> None:
    corr = PixelwiseCorrelation(channels=3, cells=4).eval()
    for p in corr.parameters():
        nn.init.normal_(p)
    template, search = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 3, 5)
    with torch.no_grad():
        got = corr(template, search)[0].numpy()
        k = corr.template(template)[0].numpy()  # [3, 2, 2]
        x = corr.search(search)[0].numpy()  # [3, 3, 5]
        w1, b1 = corr.fc1.weight[:, :, 0, 0].numpy(), corr.fc1.bias.numpy()
        w2, b2 = corr.fc2.weight[:, :, 0, 0].numpy(), corr.fc2.bias.numpy()
    raw = np.zeros((4, 3, 5))
    for cell in range(4):  # template cells in row-major order
        for i in range(3):
            for j in range(5):
                raw[cell, i, j] = sum(k[c, cell // 2, cell % 2] * x[c, i, j] for c in range(3))
    pooled = raw.mean((1, 2))
    weights = 1 / (1 + np.exp(-(w2 @ np.maximum(w1 @ pooled + b1, 0) + b2)))
    np.testing.assert_allclose(got, raw * weights[:, None, None], rtol=1e-4, atol=1e-5)


def test_square_crop_samples_where_it_should() -> None:
    ramp = np.tile(np.arange(200, dtype=np.float32)[None, :, None], (100, 1, 3))
    crop = square_crop(ramp, cx=100.0, cy=50.0, side=40.0, size=20)  # 2 pixels per crop pixel
    # crop pixel u samples image pixel (u + 0.5) * 2 - 0.5 + 80; the ramp's value is its x
    np.testing.assert_allclose(crop[3, :, 0], (np.arange(20) + 0.5) * 2 - 0.5 + 80, atol=1e-3)
    outside = square_crop(ramp, cx=0.0, cy=0.0, side=40.0, size=20)
    np.testing.assert_allclose(outside[0, 0], ramp.mean((0, 1)), atol=1e-3)  # the mean colour


def test_decode_boxes_around_nanotrack_grid() -> None:
    np.testing.assert_array_equal(cell_centres(16)[[0, 1, 16, 136]], [
        [-1, -1], [15, -1], [-1, 15], [127, 127],
    ])  # fmt: skip
    logits = torch.zeros(1, 2, 16, 16)
    logits[0, 1, 8, 8] = np.log(3.0)  # softmax: 3 / (1 + 3)
    distances = torch.ones(1, 4, 16, 16)
    distances[0, :, 8, 8] = torch.tensor([10.0, 20.0, 30.0, 40.0])
    boxes, probs = decode(logits, distances)
    np.testing.assert_allclose(boxes[136], [117, 107, 157, 167])
    np.testing.assert_allclose(boxes[0], [-2, -2, 0, 0])
    assert probs[136] == pytest.approx(0.75) and probs[0] == pytest.approx(0.5)


def test_agreement_and_fused_scores_by_hand() -> None:
    rois = np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    head = np.array([[0.0, 0, 10, 5], [100, 100, 110, 110]])  # IoU with roi 0: 0.5, else 0
    np.testing.assert_allclose(agreement(rois, head, np.array([0.8, 0.9])), [0.4, 0.0])
    boxes, scores = fuse(rois, np.array([0.6, 0.7]), head, np.array([0.8, 0.9]), 0.25)
    # roi 0: 0.75*0.6 + 0.25*0.4; roi 1: 0.75*0.7; head 0: 0.75*(0.6*0.5) + 0.25*0.8; head 1
    np.testing.assert_allclose(scores, [0.55, 0.525, 0.425, 0.225])
    np.testing.assert_array_equal(boxes, np.stack([rois[0], rois[1], head[0], head[1]]))
    assert agreement(rois, np.zeros((0, 4)), np.zeros(0)).tolist() == [0.0, 0.0]


class _SureHead(nn.Module):
    """Certain of the crop's centre cell, with the target 51 crop pixels from it each way."""

    def forward(self, template: Tensor, search: Tensor) -> tuple[Tensor, Tensor]:
        logits = torch.zeros(1, 2, 16, 16)
        logits[0, 0], logits[0, 1, 8, 8] = 10.0, 20.0
        return logits, torch.full((1, 4, 16, 16), 51.0)


def _headed_model() -> nn.Module:
    cfg = preset("mobile")
    cfg.model.correlation_head = True
    model = build_model(cfg).eval()
    model.head = _SureHead()
    return model


@pytest.mark.parametrize("mode", ["online", "clip"])
def test_tracker_answers_with_the_sure_heads_box(mode: str) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    box = [300.0, 200.0, 20.0, 20.0]
    cfg = TrackingConfig(head_weight=1.0)
    tracker = Tracker(_headed_model(), mode, "cpu", InputConfig(320, 240), tracking=cfg)
    boxes, _ = tracker.track([frame] * 2, box)
    # the search crop: 2 x 40 = 80 image pixels around (310, 210), 255 crop pixels; its centre
    # pixel 127 is image pixel 310 - 0.5, and 51 crop pixels are 16 image pixels
    assert context_side(20, 20) == 40
    np.testing.assert_allclose(boxes[1], [309.5 - 16, 209.5 - 16, 32, 32], atol=1e-3)
    ranked_boxes, _ = tracker.ranked()
    assert len(ranked_boxes) > 16 * 16  # the RoIs and the head's boxes


def test_head_weight_needs_a_head_and_the_head_a_mobile_trunk() -> None:
    cfg = preset("lite")
    cfg_tracking = TrackingConfig(head_weight=0.5)
    tracker = Tracker(
        build_model(cfg), "online", "cpu", InputConfig(320, 240), tracking=cfg_tracking
    )
    with pytest.raises(ValueError, match="needs a model with a correlation head"):
        tracker.init(np.zeros((240, 320, 3), np.uint8), [100, 100, 30, 30])
    cfg.model.correlation_head = True
    with pytest.raises(ValueError, match="correlation_head needs backbone arch 'mobilenet_v3'"):
        build_model(cfg)


@needs_nanotrack
def test_export_attaches_the_converted_head(tmp_path: Path) -> None:
    from siamtfa.checkpoint import save_checkpoint
    from siamtfa.config import to_dict
    from siamtfa.tracking.tracker import load_model

    cfg = preset("mobile")
    save_checkpoint(
        {"model": build_model(cfg).state_dict(), "config": to_dict(cfg)}, tmp_path / "a.pt"
    )
    out = tmp_path / "headed.pt"
    assert main(["export", str(tmp_path / "a.pt"), str(out), "--head", str(HEAD_ONNX)]) == 0
    model, loaded = load_model(out)
    assert loaded.model.correlation_head
    for key, value in nanotrack_head(HEAD_ONNX).items():  # stored in fp16
        torch.testing.assert_close(model.head.state_dict()[key], value, rtol=1e-3, atol=1e-3)


def test_head_look_maps_a_clipped_box_and_agreement_mixes_dtypes() -> None:
    from siamtfa.tracking.head_look import HeadLook

    def normalise(crop: np.ndarray) -> Tensor:
        return torch.from_numpy(crop).permute(2, 0, 1)[None].float()

    look = HeadLook(lambda x: x[:, :1, ::16, ::16], _SureHead(), normalise)
    frame = np.zeros((100, 100, 3), np.uint8)
    look.init(frame, np.array([10.0, 10.0, 20.0, 20.0]))
    boxes, probs = look.look(frame, np.array([100.0, 100.0, 0.0, 0.0]))  # clipped to nothing
    assert np.isfinite(boxes).all() and probs.argmax() == 136
    # a side of 2 x context_side(1, 1) = 4 pixels from (98, 98): crop pixel u is image pixel
    # (u + 0.5) * 4 / 255 - 0.5 + 98, and the sure box spans u = 127 - 51 .. 127 + 51
    np.testing.assert_allclose(boxes[136], [98.7, 98.7, 100.3, 100.3], atol=1e-9)
    got = agreement(np.array([[0.0, 0, 10, 10]]), np.array([[0.0, 0, 10, 5]], np.float32), [1.0])
    np.testing.assert_allclose(got, [0.5])
