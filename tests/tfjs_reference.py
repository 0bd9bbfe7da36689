"""A naive numpy interpreter of the few TensorFlow ops NanoDet's TensorFlow.js graph uses, as an
independent reference for the converted backbone (no torch, no converter code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load(path: Path) -> tuple[dict, dict]:
    model = json.loads(path.read_text())
    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    values, offset = {}, 0
    group = model["weightsManifest"][0]
    data = b"".join((path.parent / p).read_bytes() for p in group["paths"])
    for w in group["weights"]:
        dtype = np.dtype(w.get("quantization", {}).get("dtype", w["dtype"]))
        n = int(np.prod(w["shape"]))
        values[w["name"]] = np.frombuffer(data, dtype, n, offset).astype(w["dtype"])
        values[w["name"]] = values[w["name"]].reshape(w["shape"])
        offset += n * dtype.itemsize
    return nodes, values


def conv2d_nhwc(x: np.ndarray, kernel: np.ndarray, strides: list[int]) -> np.ndarray:
    """VALID convolution, a loop over the kernel's taps."""
    kh, kw, _, out = kernel.shape
    sh, sw = strides
    n, h, w, _ = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    y = np.zeros((n, oh, ow, out), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            y += patch @ kernel[i, j]
    return y


def maxpool_nhwc(x: np.ndarray, k: int, s: int) -> np.ndarray:
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    y = np.full((n, oh, ow, c), -np.inf)
    for i in range(k):
        for j in range(k):
            y = np.maximum(y, x[:, i : i + s * (oh - 1) + 1 : s, j : j + s * (ow - 1) + 1 : s])
    return y


def run(path: Path, image: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    """The named nodes' values for ``image`` (``[1, 3, H, W]``, fed to ``input_1``)."""
    nodes, values = load(path)
    memo: dict[str, np.ndarray] = {"input_1": image.astype(np.float64)}

    def value(name: str) -> np.ndarray:
        name = name.partition(":")[0]  # the graph ops used here have one output
        if name in memo:
            return memo[name]
        if name in values:
            return values[name]
        node = nodes[name]
        ins = node.get("input", [])
        attr = node.get("attr", {})
        op = node["op"]
        if op in ("Pad", "PadV2"):
            fill = float(value(ins[2])) if op == "PadV2" else 0.0
            out = np.pad(value(ins[0]), value(ins[1]), constant_values=fill)
        elif op == "Transpose":
            out = value(ins[0]).transpose(value(ins[1]))
        elif op == "Conv2D":
            strides = [int(s) for s in attr["strides"]["list"]["i"]][1:3]
            out = conv2d_nhwc(value(ins[0]), value(ins[1]), strides)
        elif op in ("Add", "AddV2"):
            out = value(ins[0]) + value(ins[1])
        elif op == "LeakyRelu":
            x = value(ins[0])
            out = np.where(x > 0, x, attr["alpha"]["f"] * x)
        elif op == "MaxPool":
            k = int(attr["ksize"]["list"]["i"][1])
            out = maxpool_nhwc(value(ins[0]), k, int(attr["strides"]["list"]["i"][1]))
        elif op == "ConcatV2":
            out = np.concatenate([value(i) for i in ins[:-1]], axis=int(value(ins[-1])))
        else:
            raise NotImplementedError(op)
        memo[name] = out
        return out

    return [value(name) for name in outputs]
