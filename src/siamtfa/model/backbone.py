"""ResNet in torchvision's module layout, with the temporal shift inside layer4's residual branches.

State-dict names match ``torchvision.models.resnet*`` so a local ImageNet checkpoint loads directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from siamtfa.ops import temporal_shift


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed affine parameters and statistics (buffers, never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        state_dict.pop(prefix + "num_batches_tracked", None)  # torchvision BN has it, we don't
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(32 if channels % 32 == 0 else 8, channels)
    raise ValueError(f"unknown norm {kind!r}: use frozen_bn, bn or gn")


class TemporalShift(nn.Module):
    """Paper Eq. 1 on a residual-branch input; ``clip_len=None`` (template) means no shift.

    Streaming (``stream`` given, one frame per call): the past fold comes from the previous
    call's input, kept in ``stream[self]``; the future fold (bidirectional) is zero, as for the
    last frame of a training clip. So a box for frame t never depends on frames after t.
    """

    def __init__(self, fold_div: int = 8, causal: bool = False) -> None:
        super().__init__()
        self.fold_div = fold_div
        self.causal = causal

    def forward(
        self, x: Tensor, clip_len: int | None, stream: dict[nn.Module, Tensor] | None = None
    ) -> Tensor:
        if stream is None:
            return (
                x if clip_len is None else temporal_shift(x, clip_len, self.fold_div, self.causal)
            )
        fold = x.shape[1] // self.fold_div
        out = x.clone()
        prev = stream.get(self)
        out[:, :fold] = prev if prev is not None else 0.0
        if not self.causal:
            out[:, fold : 2 * fold] = 0.0
        stream[self] = x[:, :fold].detach().clone()
        return out

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}, causal={self.causal}"


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        norm: str,
        downsample: nn.Module | None,
        shift: TemporalShift | None,
    ) -> None:
        super().__init__()
        self.shift = shift
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor, clip_len: int | None = None, stream: dict | None = None) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        # residual branch only
        out = self.shift(x, clip_len, stream) if self.shift is not None else x
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        norm: str,
        downsample: nn.Module | None,
        shift: TemporalShift | None,
    ) -> None:
        super().__init__()
        self.shift = shift
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride on 3x3 (v1.5)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = make_norm(norm, planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor, clip_len: int | None = None, stream: dict | None = None) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        # residual branch only
        out = self.shift(x, clip_len, stream) if self.shift is not None else x
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_LAYERS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk returning C2..C5 (strides 4, 8, 16, 32); ``fc`` is omitted."""

    untrained: tuple[str, ...] = ()  # an ImageNet checkpoint holds every weight

    def __init__(
        self,
        depth: int = 50,
        norm: str = "frozen_bn",
        frozen_stages: int = 1,
        temporal: bool = True,
        fold_div: int = 8,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if depth not in _LAYERS:
            raise ValueError(f"unsupported ResNet depth {depth}: use one of {sorted(_LAYERS)}")
        block, counts = _LAYERS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.inplanes = 64
        self.layer1 = self._make_layer(block, 64, counts[0], 1, norm, None)
        self.layer2 = self._make_layer(block, 128, counts[1], 2, norm, None)
        self.layer3 = self._make_layer(block, 256, counts[2], 2, norm, None)
        shift = (fold_div, causal) if temporal else None
        self.layer4 = self._make_layer(block, 512, counts[3], 2, norm, shift)
        self.out_channels = [64 * block.expansion * m for m in (1, 2, 4, 8)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.frozen_stages = frozen_stages
        stages = [
            (self.conv1, self.bn1),
            (self.layer1,),
            (self.layer2,),
            (self.layer3,),
            (self.layer4,),
        ]
        for stage in stages[: frozen_stages + 1]:  # frozen_stages=-1 freezes nothing
            for module in stage:
                module.requires_grad_(False)

    def _make_layer(
        self,
        block: type,
        planes: int,
        count: int,
        stride: int,
        norm: str,
        shift: tuple[int, bool] | None,
    ) -> nn.ModuleList:
        layers = []
        for i in range(count):
            downsample = None
            if i == 0 and (stride != 1 or self.inplanes != planes * block.expansion):
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                    make_norm(norm, planes * block.expansion),
                )
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    stride if i == 0 else 1,
                    norm,
                    downsample,
                    TemporalShift(*shift) if shift is not None else None,
                )
            )
            self.inplanes = planes * block.expansion
        return nn.ModuleList(layers)

    def forward(
        self, x: Tensor, clip_len: int | None = None, stream: dict | None = None
    ) -> list[Tensor]:
        """C2..C5 features; ``clip_len`` turns the layer4 shift on (``None``: no shift);
        ``stream`` (a dict kept by the caller across frames) shifts one frame at a time."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = block(x, clip_len, stream)
            outs.append(x)
        return outs


class LoadReport(NamedTuple):
    missing: list[str]
    unexpected: list[str]


def load_backbone_weights(backbone: ResNet, path: str | Path) -> LoadReport:
    """Load a torchvision-format ImageNet ResNet checkpoint from a local file.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``, with
    or without a ``module.`` / ``backbone.`` prefix. Returns the missing and unexpected keys
    (``fc.*`` is expected to be unused). Shape mismatches raise with the key named.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or not a torch file
        raise ValueError(f"{path}: cannot read backbone weights ({err})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    own = backbone.state_dict()
    for key, value in cleaned.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(value.shape)}, "
                f"model expects {tuple(own[key].shape)}"
            )
    result = backbone.load_state_dict(cleaned, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    return LoadReport(list(result.missing_keys), unexpected)
