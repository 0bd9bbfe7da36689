"""Pretrained backbones converted into the project's backbone family, read with small
dependencies only: NanoTrack's ONNX backbone (``onnx``) into :class:`MobileNetV3`, NanoDet's
TensorFlow.js graph (json and numpy) into :class:`CSPNet`; and NanoTrack's ONNX head into
:class:`CorrelationHead`.

A converted state dict expects what the project feeds every backbone, RGB frames scaled by
``InputConfig`` (``mobile`` keeps NanoTrack's 0..255 range; NanoDet's mean and std are
ImageNet's, the default): the converters turn the first convolution's input channels from the
networks' BGR to RGB.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from siamtfa.model.correlation_head import CorrelationHead
from siamtfa.model.csp import CSPNet
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


def _layer_state(node: dict, module: nn.Module, key: str, path: Path) -> dict[str, torch.Tensor]:
    """``module``'s weight (and bias) at ``key`` from the ONNX ``node``, checked against it:
    a convolution's stride, groups, padding and dilation, the weight's shape, a bias exactly
    where the module has one."""
    if isinstance(module, nn.Conv2d):
        _check_conv(node, module, path, key)
    shape = getattr(node["weight"], "shape", None)
    if shape != tuple(module.weight.shape) or (node["bias"] is None) != (module.bias is None):
        bias = " and a bias" if module.bias is not None else ", no bias"
        raise ValueError(
            f"{path}: {node['name']} has weights {shape}, {key} needs "
            f"{tuple(module.weight.shape)}{bias}"
        )
    state = {f"{key}.weight": torch.from_numpy(np.array(node["weight"], np.float32))}
    if module.bias is not None:
        state[f"{key}.bias"] = torch.from_numpy(np.array(node["bias"], np.float32))
    return state


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
        state.update(_layer_state(node, module, f"features.{key}", path))
    state["features.0.0.weight"] = state["features.0.0.weight"].flip(1)  # BGR -> RGB input
    return state


def nanotrack_head(path: str | Path) -> dict[str, torch.Tensor]:
    """:class:`CorrelationHead`'s state from NanoTrack v2's ONNX head (``neckhead``): its
    convolutions in graph order, each checked against the module it fills (shape, stride,
    groups, padding, bias)."""
    path = Path(path)
    convs, gemms = _onnx_layers(path)
    head = CorrelationHead()
    keys = head.onnx_order()
    if len(convs) != len(keys) or gemms:
        raise ValueError(
            f"{path}: {len(convs)} Conv and {len(gemms)} Gemm nodes; NanoTrack v2's head has "
            f"{len(keys)} and 0"
        )
    state = {}
    for key, node in zip(keys, convs):
        state.update(_layer_state(node, head.get_submodule(key), key, path))
    return state


def _tfjs_graph(path: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """A TensorFlow.js graph model's nodes by name and its constants (fp16-stored ones cast
    to their original dtype), read with json and numpy alone."""
    if not path.is_file():
        raise FileNotFoundError(f"TensorFlow.js model not found: {path}")
    try:
        model = json.loads(path.read_text())
        nodes = {node["name"]: node for node in model["modelTopology"]["node"]}
        groups = model["weightsManifest"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a TensorFlow.js graph model ({err})") from None
    values = {}
    for group in groups:
        files = [path.parent / name for name in group["paths"]]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: weight file not found: {', '.join(missing)}")
        data, offset = b"".join(f.read_bytes() for f in files), 0
        for weight in group["weights"]:
            stored = (weight.get("quantization") or {}).get("dtype", weight["dtype"])
            if stored not in ("float16", "float32", "int32"):
                raise ValueError(f"{path}: {weight['name']} is stored as {stored}")
            count = int(np.prod(weight["shape"], dtype=np.int64))
            end = offset + count * np.dtype(stored).itemsize
            if end > len(data):
                raise ValueError(f"{path}: the weight files end inside {weight['name']}")
            array = np.frombuffer(data[offset:end], stored).astype(weight["dtype"])
            values[weight["name"]] = array.reshape(weight["shape"])
            offset = end
    return nodes, values


def nanodet_backbone(path: str | Path) -> dict[str, torch.Tensor]:
    """:class:`CSPNet` (``norm="none"``) from NanoDet's TensorFlow.js graph (``nanodet.json``
    and the ``nanodet.bin`` beside it): its first 25 Conv2D nodes in the graph's numbering,
    each with the bias added after it, checked against the module it fills (shape, stride,
    padding). TensorFlow's HWIO kernels become OIHW."""
    path = Path(path)
    nodes, values = _tfjs_graph(path)
    adds = {  # a convolution's output -> the constant added to it (its bias)
        node["input"][0]: values.get(node["input"][1])
        for node in nodes.values()
        if node["op"] in ("Add", "AddV2") and len(node.get("input", [])) == 2
    }
    convs = sorted((n for n in nodes.values() if n["op"] == "Conv2D"), key=_number)
    trunk = CSPNet(norm="none", temporal=False)
    layers = [(k, m) for k, m in trunk.named_modules() if isinstance(m, nn.Conv2d)]
    if len(convs) < len(layers):
        raise ValueError(f"{path}: {len(convs)} Conv2D nodes; NanoDet's backbone has {len(layers)}")
    state = {}
    for (key, module), node in zip(layers, convs):
        kernel, bias = values.get(node["input"][1]), adds.get(node["name"])
        want = tuple(module.weight.shape)
        if kernel is None or bias is None or kernel.transpose(3, 2, 0, 1).shape != want:
            shape = None if kernel is None else kernel.transpose(3, 2, 0, 1).shape
            raise ValueError(f"{path}: {node['name']} has weights {shape}, {key} needs {want}")
        strides = [int(s) for s in node["attr"]["strides"]["list"]["i"]][1:3]
        pads = _tfjs_padding(nodes, values, node)
        if strides != list(module.stride) or pads != list(module.padding):
            raise ValueError(
                f"{path}: {node['name']} has strides {strides}, padding {pads}; {key} needs "
                f"{list(module.stride)}, {list(module.padding)}"
            )
        state[f"{key}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        state[f"{key}.bias"] = torch.from_numpy(bias.astype(np.float32))
    state["stem.0.0.weight"] = state["stem.0.0.weight"].flip(1)  # BGR -> RGB input
    return state


def _number(node: dict) -> int:
    """The graph's numbering of a node: ``.../convolution_12`` is 12, ``.../convolution`` 0."""
    tail = node["name"].rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _tfjs_padding(nodes: dict, values: dict, conv: dict) -> list[int]:
    """The symmetric (height, width) zero padding before ``conv``: the ``Pad`` its input comes
    from, through the transposes around it; [0, 0] when there is none."""
    name = conv["input"][0]
    while nodes[name]["op"] == "Transpose":
        name = nodes[name]["input"][0]
    if nodes[name]["op"] != "Pad":
        return [0, 0]
    pads = values[nodes[name]["input"][1]]  # NCHW order, [before, after] per axis
    if (pads[:2] != 0).any() or (pads[2:, 0] != pads[2:, 1]).any():
        raise ValueError(f"{conv['name']}: padding {pads.tolist()} is not symmetric in H and W")
    return [int(pads[2, 0]), int(pads[3, 0])]


# source: (converter, the preset whose backbone it fills, the licence of the weights)
CONVERTERS = {
    "nanotrack": (nanotrack_backbone, "mobile", "Apache-2.0 (NanoTrack)"),
    "nanodet": (nanodet_backbone, "csp", "Apache-2.0 (NanoDet)"),
}
