"""NanoTrack's head as the RoI classifier's teacher (``model.roi.cls_target: teacher``): the
batched crop against OpenCV's, the teacher's boxes against hand-computed geometry, the targets
against hand-computed values, and a training run that uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from siamtfa.config import AdversarialDropoutConfig, RoIConfig, from_dict
from siamtfa.data.synthetic import make_synthetic
from siamtfa.model.roi_head import RoIHead, _agreement
from siamtfa.tracking.head_look import square_crop
from siamtfa.training import train
from siamtfa.training.teacher import HeadTeacher, square_crops

HEAD_ONNX = (
    Path(__file__).resolve().parents[2] / "shared" / "models" / "nanotrack"
) / "nanotrack_head_sim_v2.onnx"


@pytest.mark.parametrize(
    "cx, cy, side", [(80.3, 60.7, 50.0), (10.0, 100.0, 70.0), (150.2, 5.5, 33.3)]
)
def test_square_crops_are_opencvs_crops(cx: float, cy: float, side: float) -> None:
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3)).astype(np.float32)
    expected = square_crop(image, cx, cy, side, 127)  # the tracker's crop, cv2.warpAffine
    batch = torch.from_numpy(image).permute(2, 0, 1)[None]
    got = square_crops(batch, torch.tensor([[cx, cy]]), torch.tensor([side]), 127)
    # OpenCV interpolates in fixed point: within 0.01 of 255
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), expected, atol=0.01)


class _Trunk:
    """The crop's first channel every 16 pixels, as 48 channels: 8 x 8 for a template crop."""

    def __call__(self, crops: Tensor) -> Tensor:
        return crops[:, :1, ::16, ::16].repeat(1, 48, 1, 1)


class _SureHead(nn.Module):
    """Sure of each search crop's centre cell, the target 51 crop pixels from it each way;
    keeps the templates it was given."""

    def forward(self, template: Tensor, search: Tensor) -> tuple[Tensor, Tensor]:
        self.template = template
        logits = torch.zeros(len(search), 2, 16, 16)
        logits[:, 0], logits[:, 1, 8, 8] = 10.0, 20.0
        return logits, torch.full((len(search), 4, 16, 16), 51.0)


def test_teacher_gives_the_heads_boxes_in_input_pixels() -> None:
    head = _SureHead()
    teacher = HeadTeacher(_Trunk(), head)
    templates = torch.stack([torch.full((3, 240, 320), 10.0), torch.full((3, 240, 320), 200.0)])
    search = torch.zeros(4, 3, 240, 320)
    boxes = torch.tensor([[100.0, 80, 120, 100]]).repeat(4, 1)
    present = torch.tensor([True, True, False, True])
    out = teacher(templates, boxes[:2], search, boxes, present, clip_len=2)
    assert out[2] is None  # no target to look at
    # search crop: 2 x 40 = 80 pixels around (110, 90) as 255; the sure cell's box is crop
    # pixels 127 -/+ 51, i.e. (76.5 .. 178.5) x 80 / 255 - 0.5 + 70 = 93.5 .. 125.5
    top = out[0][1].argmax()
    np.testing.assert_allclose(out[0][0][top], [93.5, 73.5, 125.5, 105.5], atol=1e-4)
    assert float(out[0][1][top]) == pytest.approx(1 / (1 + np.exp(-10.0)))
    assert len(out[3][0]) == 16 * 16
    # one template per clip: frames 0-1 saw clip 0's, frames 2-3 clip 1's
    assert head.template[:, 0, 0, 0].tolist() == [10.0, 10.0, 200.0, 200.0]


def test_teacher_targets_by_hand() -> None:
    rois = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    labels = torch.tensor([1, 0])
    taught = torch.tensor([[0.0, 0, 10, 5], [20, 20, 30, 30]]), torch.tensor([0.8, 0.3])
    # roi 0: max(0.8 x IoU 0.5, 0.3 x 0); roi 1: max(0.8 x 0, 0.3 x 1)
    agreement = _agreement(rois, labels, taught)
    np.testing.assert_allclose(agreement, [0.4, 0.3])
    assert _agreement(rois, labels, None).tolist() == [1.0, 0.0]  # the target was absent
    empty = torch.zeros(0, 4), torch.zeros(0)
    assert _agreement(rois, labels, empty).tolist() == [0.0, 0.0]
    head = RoIHead(
        RoIConfig(cls_target="teacher", teacher_weight=0.25), AdversarialDropoutConfig(), 8, [4]
    )
    targets = head.cls_targets(labels, torch.zeros(2, 4), rois, rois, agreement)
    # foreground share: 0.75 x label + 0.25 x agreement
    np.testing.assert_allclose(targets, [[0.15, 0.85], [0.925, 0.075]], atol=1e-6)
    with pytest.raises(ValueError, match="needs a teacher"):
        head.cls_targets(labels, torch.zeros(2, 4), rois, rois)


def _teacher_config(arch_preset: str = "mobile", teacher: str | None = None):
    return from_dict(
        {
            "preset": arch_preset,
            "input": {"max_size": 192, "min_size": 160},
            "model": {"fpn_channels": 32, "roi": {"fc_dim": 64, "cls_target": "teacher"}},
            "train": {
                "iterations": 3,
                "batch_size": 1,
                "clip_len": 2,
                "warmup_iterations": 1,
                "num_workers": 0,
                "teacher": teacher,
            },
        }
    )


def test_teacher_target_needs_the_heads_file_and_a_mobile_trunk(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs train\.teacher"):
        train(_teacher_config(), ["synthetic=x"], tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="needs backbone arch 'mobilenet_v3'"):
        train(_teacher_config("lite", "head.onnx"), ["synthetic=x"], tmp_path / "b")


@pytest.mark.skipif(not HEAD_ONNX.is_file(), reason="NanoTrack's ONNX files are not here")
def test_training_with_the_teacher(tmp_path: Path) -> None:
    data = tmp_path / "syn"
    make_synthetic(data, 2, 10, seed=3, size=(160, 120), progress=False)
    result = train(
        _teacher_config(teacher=str(HEAD_ONNX)),
        [f"synthetic={data}"],
        tmp_path / "run",
        progress=False,
    )
    assert result.iteration == 3
    assert all(np.isfinite(v) for v in result.losses.values())
