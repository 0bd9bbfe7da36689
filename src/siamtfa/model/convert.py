"""Pretrained backbones converted into the project's backbone family, read with small
dependencies only: NanoTrack's ONNX backbone (``onnx``) into :class:`MobileNetV3`.

A converted state dict expects what the project feeds every backbone, RGB frames scaled by
``InputConfig`` (the ``mobile`` preset keeps NanoTrack's 0..255 range): the converter turns the
first convolution's input channels from NanoTrack's BGR to RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from siamtfa.model.mobilenet import PRETRAINED_BLOCKS, MobileNetV3


def _onnx_layers(path: Path) -> tuple[list[dict], list[dict]]:
    """The Conv and Gemm nodes of an ONNX graph in order, with their constants as arrays."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ImportError(
            "converting ONNX weights needs the onnx package: pip install onnx"
        ) from err
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        graph = onnx.load(str(path)).graph
    except Exception as err:
        raise ValueError(f"{path}: not a readable ONNX model ({err})") from None
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs, gemms = [], []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight, bias = (constants.get(name) for name in [*node.input[1:3], "", ""][:2])
        if node.op_type == "Conv":
            convs.append({"name": node.name, "weight": weight, "bias": bias, **attrs})
        elif node.op_type == "Gemm":
            if weight is not None and not attrs.get("transB", 0):
                weight = weight.T
            gemms.append({"name": node.name, "weight": weight, "bias": bias})
        elif node.op_type == "HardSigmoid" and not np.isclose(attrs.get("alpha", 0.2), 1 / 6):
            raise ValueError(f"{path}: {node.name} is not MobileNetV3's hard sigmoid")
    return convs, gemms


def _check_conv(node: dict, conv: nn.Conv2d, path: Path, key: str) -> None:
    expected = {
        "strides": list(conv.stride),
        "group": conv.groups,
        "pads": list(conv.padding) * 2,
        "dilations": list(conv.dilation),
    }
    for attr, value in expected.items():
        if attr in node and list(np.atleast_1d(node[attr])) != list(np.atleast_1d(value)):
            raise ValueError(f"{path}: {node['name']} ({key}) has {attr} {node[attr]}, not {value}")


def nanotrack_backbone(path: str | Path) -> dict[str, torch.Tensor]:
    """``features.0..8`` of :class:`MobileNetV3` (``pretrained_norm="none"``) from NanoTrack's
    ONNX backbone (v1 or v2): its convolutions and squeeze-excite FCs in graph order, each
    checked against the module it fills (shape, stride, groups, padding)."""
    path = Path(path)
    convs, gemms = _onnx_layers(path)
    trunk = MobileNetV3(pretrained_norm="none", temporal=False).features[:PRETRAINED_BLOCKS]
    layers = [(k, m) for k, m in trunk.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    want = (
        sum(isinstance(m, nn.Conv2d) for _, m in layers),
        sum(isinstance(m, nn.Linear) for _, m in layers),
    )
    if (len(convs), len(gemms)) != want:
        raise ValueError(
            f"{path}: {len(convs)} Conv and {len(gemms)} Gemm nodes; NanoTrack's MobileNetV3 "
            f"backbone has {want[0]} and {want[1]}"
        )
    state, conv_nodes, gemm_nodes = {}, iter(convs), iter(gemms)
    for key, module in layers:
        node = next(conv_nodes) if isinstance(module, nn.Conv2d) else next(gemm_nodes)
        if isinstance(module, nn.Conv2d):
            _check_conv(node, module, path, key)
        shape = getattr(node["weight"], "shape", None)
        if shape != tuple(module.weight.shape) or node["bias"] is None:
            raise ValueError(
                f"{path}: {node['name']} has weights {shape}, "
                f"features.{key} needs {tuple(module.weight.shape)} and a bias"
            )
        state[f"features.{key}.weight"] = torch.from_numpy(np.array(node["weight"], np.float32))
        state[f"features.{key}.bias"] = torch.from_numpy(np.array(node["bias"], np.float32))
    state["features.0.0.weight"] = state["features.0.0.weight"].flip(1)  # BGR -> RGB input
    return state


# source: (converter, the preset whose backbone it fills, the licence of the weights)
CONVERTERS = {"nanotrack": (nanotrack_backbone, "mobile", "Apache-2.0 (NanoTrack)")}
