"""Converted pretrained backbones: MobileNetV3-Small (``mobile``) with NanoTrack's weights,
checked against onnxruntime running NanoTrack's own ONNX file, and NanoDet's CSP trunk
(``csp``), checked against a naive numpy interpreter of its TensorFlow.js graph; their temporal
wiring; a training step."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from siamtfa import build_model
from siamtfa.checkpoint import save_checkpoint
from siamtfa.cli import main
from siamtfa.config import preset
from siamtfa.model.convert import _layer_state, nanodet_backbone, nanotrack_backbone
from siamtfa.model.csp import CSPNet
from siamtfa.model.mobilenet import MobileNetV3

from .tfjs_reference import run as run_tfjs

NANOTRACK = Path(__file__).resolve().parents[2] / "shared" / "models" / "nanotrack"
ONNX = {"v1": "nanotrack_backbone_sim.onnx", "v2": "nanotrack_backbone_sim_v2.onnx"}
NANODET = NANOTRACK.parent / "nanodet" / "nanodet.json"
needs_nanotrack = pytest.mark.skipif(
    not NANOTRACK.is_dir(), reason="NanoTrack's ONNX files are not here"
)
needs_nanodet = pytest.mark.skipif(not NANODET.is_file(), reason="NanoDet's files are not here")
# the graph's nodes that hold the backbone's C2..C5 (NCHW)
NANODET_OUTPUTS = [f"PartitionedCall/onnx_tf_prefix_Concat_{i}" for i in (12, 27, 42, 62)]


@needs_nanotrack
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_converted_nanotrack_backbone_matches_onnxruntime(version: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = NANOTRACK / ONNX[version]
    trunk = MobileNetV3(pretrained_norm="none").eval()
    missing = trunk.load_state_dict(nanotrack_backbone(path), strict=False).missing_keys
    assert missing and all(k.startswith(trunk.untrained) for k in missing)
    bgr = np.random.default_rng(0).uniform(0, 255, (2, 3, 255, 255)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"input": x[None]})[0] for x in bgr])
    with torch.no_grad():  # the converted weights take RGB: the same pixels, channels swapped
        c4 = trunk(torch.from_numpy(bgr[:, ::-1].copy()))[2].numpy()
    assert c4.shape == expected.shape == (2, 48, 16, 16)
    assert np.abs(c4 - expected).max() < 1e-3


@needs_nanotrack
def test_converter_refuses_another_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nanotrack_head_sim_v2\.onnx: \d+ Conv and \d+ Gemm"):
        nanotrack_backbone(NANOTRACK / "nanotrack_head_sim_v2.onnx")
    (tmp_path / "cut.onnx").write_bytes((NANOTRACK / ONNX["v2"]).read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.onnx: not a readable ONNX model"):
        nanotrack_backbone(tmp_path / "cut.onnx")
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        nanotrack_backbone(tmp_path / "none.onnx")


def test_each_onnx_layer_is_checked_against_its_module() -> None:
    conv, path = torch.nn.Conv2d(3, 4, 3, padding=1), Path("net.onnx")
    node = {"name": "Conv_7", "weight": np.ones((4, 3, 3, 3)), "bias": np.zeros(4)}
    state = _layer_state({**node, "strides": [1, 1], "pads": [1] * 4}, conv, "a.b", path)
    assert sorted(state) == ["a.b.bias", "a.b.weight"] and state["a.b.weight"].sum() == 108
    for bad, message in [
        ({"strides": [2, 2]}, r"net\.onnx: Conv_7 \(a\.b\) has strides \[2, 2\], not \[1, 1\]"),
        (
            {"weight": np.ones((4, 3, 1, 1))},
            r"has weights \(4, 3, 1, 1\), a\.b needs \(4, 3, 3, 3\)",
        ),
        ({"bias": None}, r"a\.b needs \(4, 3, 3, 3\) and a bias"),
    ]:
        with pytest.raises(ValueError, match=message):
            _layer_state({**node, **bad}, conv, "a.b", path)


@needs_nanotrack
def test_convert_command_feeds_the_mobile_preset(tmp_path: Path) -> None:
    out = tmp_path / "backbone.pt"
    assert main(["convert-backbone", "nanotrack", str(NANOTRACK / ONNX["v2"]), str(out)]) == 0
    cfg = preset("mobile")
    cfg.model.backbone.weights = str(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing beyond the stride-32 stage
        model = build_model(cfg)
    expected = nanotrack_backbone(NANOTRACK / ONNX["v2"])
    for key, value in expected.items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value, rtol=0, atol=0)


def test_build_model_warns_about_missing_backbone_weights(tmp_path: Path) -> None:
    state = MobileNetV3(pretrained_norm="none").state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("features.5.")}
    save_checkpoint({"model": partial}, tmp_path / "partial.pt")
    cfg = preset("mobile")
    cfg.model.backbone.weights = str(tmp_path / "partial.pt")
    with pytest.warns(
        UserWarning, match=r"partial\.pt: \d+ backbone weights missing \(features\.5"
    ):
        build_model(cfg)


def test_shift_only_in_the_stride_32_stage_residual_branches() -> None:
    torch.manual_seed(0)
    trunk = MobileNetV3().eval()
    shifted = [i for i, b in enumerate(trunk.features[1:], 1) if getattr(b, "shift", None)]
    assert shifted == [10, 11]  # the stride-32 stage's residual blocks
    frames = torch.randn(3, 3, 96, 96)
    other = frames.clone()
    other[0] += torch.randn(3, 96, 96)  # the past of frame 1
    with torch.no_grad():
        base, moved = trunk(frames, 3), trunk(other, 3)
    for level in range(3):  # C2..C4: per frame
        torch.testing.assert_close(base[level][1], moved[level][1])
    assert not torch.allclose(base[3][1], moved[3][1], atol=1e-6)  # C5 sees frame 0
    with torch.no_grad():  # the template path (no clip) equals the unshifted network
        plain = MobileNetV3(temporal=False).eval()
        plain.load_state_dict(trunk.state_dict())
        torch.testing.assert_close(trunk(frames), plain(frames))


def test_mobile_training_step_trains_all_but_the_frozen_stages() -> None:
    torch.manual_seed(0)
    model = build_model(preset("mobile")).train()
    boxes = torch.tensor([[40.0, 40.0, 100.0, 110.0]])
    losses = model(
        torch.rand(1, 3, 192, 192) * 255, boxes, torch.rand(2, 3, 192, 192) * 255, 2,
        boxes.repeat(2, 1),
    )  # fmt: skip
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["backbone.features.0.0.weight"] is None  # the stem, frozen
    assert grads["backbone.features.1.conv.0.weight"] is None  # the stride-4 stage, frozen
    assert grads["backbone.features.2.conv.0.weight"].abs().sum() > 0
    assert grads["backbone.features.11.conv.0.weight"].abs().sum() > 0


@needs_nanodet
def test_converted_nanodet_backbone_matches_the_tfjs_graph() -> None:
    trunk = CSPNet(norm="none").eval()
    trunk.load_state_dict(nanodet_backbone(NANODET))  # strict: every weight converted
    bgr = np.random.default_rng(0).normal(0, 1, (1, 3, 96, 128)).astype(np.float32)
    expected = run_tfjs(NANODET, bgr, NANODET_OUTPUTS)
    with torch.no_grad():
        ours = trunk(torch.from_numpy(bgr[:, ::-1].copy()))
    for level, (c, e) in enumerate(zip(ours, expected)):
        assert c.shape == e.shape == (1, 64 * 2**level, 24 // 2**level, 32 // 2**level)
        assert np.abs(c.numpy() - e).max() < 1e-3


@needs_nanodet
def test_nanodet_converter_names_a_damaged_file(tmp_path: Path) -> None:
    (tmp_path / "nanodet.json").write_bytes(NANODET.read_bytes())
    (tmp_path / "nanodet.bin").write_bytes((NANODET.parent / "nanodet.bin").read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"nanodet\.json: the weight files end inside"):
        nanodet_backbone(tmp_path / "nanodet.json")
    (tmp_path / "nanodet.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"weight file not found: .*nanodet\.bin"):
        nanodet_backbone(tmp_path / "nanodet.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"x\.json: not a TensorFlow\.js graph model"):
        nanodet_backbone(tmp_path / "x.json")


def test_csp_shift_only_in_the_stride_32_stage_branches() -> None:
    torch.manual_seed(0)
    trunk = CSPNet().eval()
    shifted = [i for i, s in enumerate(trunk.stages) if any(b.shift for b in s.blocks)]
    assert shifted == [3]
    frames = torch.randn(3, 3, 96, 96)
    other = frames.clone()
    other[0] += torch.randn(3, 96, 96)
    with torch.no_grad():
        base, moved = trunk(frames, 3), trunk(other, 3)
        plain = CSPNet(temporal=False).eval()
        plain.load_state_dict(trunk.state_dict())
        torch.testing.assert_close(trunk(frames), plain(frames))  # no clip: no shift
    for level in range(3):
        torch.testing.assert_close(base[level][1], moved[level][1])
    assert not torch.allclose(base[3][1], moved[3][1], atol=1e-6)
    # the concatenated identity half of C5 ([f, a]: a, the stage's first convolution) is
    # per frame; only f, after the shifted branches, sees the neighbours
    torch.testing.assert_close(base[3][1, 256:], moved[3][1, 256:])


@needs_nanodet
def test_convert_command_feeds_the_csp_preset(tmp_path: Path) -> None:
    out = tmp_path / "csp.pt"
    assert main(["convert-backbone", "nanodet", str(NANODET), str(out)]) == 0
    cfg = preset("csp")
    cfg.model.backbone.weights = str(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_model(cfg)
    torch.testing.assert_close(
        model.backbone.stem[0][0].weight, nanodet_backbone(NANODET)["stem.0.0.weight"]
    )
