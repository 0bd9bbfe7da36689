"""One dataclass config tree, YAML-loadable, with presets ``paper`` and ``lite``.

Unknown or ill-typed keys are rejected with their full key path (e.g. ``model.rpn.nms_thresh``),
so a typo in a YAML file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass
class BackboneConfig:
    # resnet (torchvision layout), mobilenet_v3 (MobileNetV3-Small, NanoTrack's layout) or
    # csp (NanoDet's CSP trunk)
    arch: Literal["resnet", "mobilenet_v3", "csp"] = "resnet"
    depth: int = 50  # ResNet depth: 18, 34, 50 or 101 (resnet only)
    frozen_stages: int = 1  # 0: stem, 1: + the stride-4 stage, ... frozen (as DESIGN); -1: none
    # frozen_bn (DESIGN, for ImageNet weights) | bn | gn (from scratch) | none (converted
    # weights, BatchNorms folded into the convolutions); for mobilenet_v3 the stride-32 stage's
    # (the rest is always none)
    norm: str = "frozen_bn"
    # a local state dict: torchvision's ImageNet ResNet, or `siamtfa convert-backbone` output
    weights: str | None = None


@dataclass
class TemporalConfig:
    enabled: bool = True  # paper Eq. 1 in every layer4 block
    causal: bool = False  # both folds from the past: usable online
    fold_div: int = 8  # K = C // fold_div channels per shifted fold


@dataclass
class RPNConfig:
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)  # one per P2..P6
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    modulation_proj: bool = True  # 3x3 conv before and 1x1 after the Eq. 2 product
    fg_iou: float = 0.7
    bg_iou: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_top_n_train: int = 2000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    min_box_size: float = 1e-3
    smooth_l1_beta: float = 1.0 / 9.0


@dataclass
class RoIConfig:
    output_size: int = 7
    sampling_ratio: int = 2
    fc_dim: int = 1024
    fg_iou: float = 0.5
    bg_iou: float = 0.5
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    box_coder_weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
    smooth_l1_beta: float = 1.0
    # The classifier's target for a foreground RoI: 1 (the paper), or "iou": the IoU of the box
    # it regresses to with the target (soft cross-entropy; background stays 0), so that the
    # score ranks the overlapping boxes by how well they will fit; or "teacher": for every RoI
    # (1 - teacher_weight) x its label + teacher_weight x a pretrained teacher's agreement with
    # it (train.teacher; siamtfa.training.teacher)
    cls_target: Literal["binary", "iou", "teacher"] = "binary"
    teacher_weight: float = 0.5


@dataclass
class AdversarialDropoutConfig:
    enabled: bool = True
    mode: str = "channel"  # "channel" (L = C) or "element" (L = C*7*7)
    delta: float = 0.05  # at most floor(delta * L) mask entries flipped
    weight: float = 1.0  # lambda in the total loss
    keep_prob: float = 0.9  # random mask keep probability


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    fpn_channels: int = 256
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi: RoIConfig = field(default_factory=RoIConfig)
    adversarial_dropout: AdversarialDropoutConfig = field(default_factory=AdversarialDropoutConfig)
    # NanoTrack's pretrained correlation head on the trunk's stride-16 map (backbone "mobile"
    # only), for TrackingConfig.head_weight; its weights come with `siamtfa export --head`
    correlation_head: bool = False


@dataclass
class InputConfig:
    max_size: int = 1333  # frames resized keeping aspect ratio to fit max_size x min_size
    min_size: int = 800
    size_divisor: int = 32  # padded to a multiple of this
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """Clip sampling, frame filters (GlobalTrack's, per DESIGN) and augmentation."""

    min_box_side: float = 10.0  # pixels, in the original frame
    min_area_fraction: float = 0.01  # box area / frame area
    max_area_fraction: float = 0.75
    max_aspect: float = 5.0  # max(w/h, h/w)
    min_cover_fraction: float = 0.3  # GOT-10k cover > max(1, this * max cover)
    max_template_gap: int = 0  # frames between template and clip; 0: anywhere in the sequence
    flip_prob: float = 0.5
    scale_jitter: float = 0.15  # resize factor in [1 - j, 1 + j] around the fitted size
    color_jitter: float = 0.2  # brightness, contrast, saturation factors in [1 - c, 1 + c]
    # Search regions (0: whole frames, the paper). Otherwise each frame is seen as the tracker
    # with tracking.search_target_size sees it: the template through the region around its own
    # box, the clip through the region around its first box as a tracker's last answer would be,
    # off by a size factor in [2**-j, 2**j] (j = region_size_jitter) and a centre shift of up
    # to region_shift target sizes per axis. scale_jitter then applies to whole frames only.
    search_target_size: float = 0.0
    max_upsample: float = 2.0
    region_size_jitter: float = 0.5
    region_shift: float = 0.5


@dataclass
class TrainConfig:
    iterations: int = 90000
    batch_size: int = 2  # clips per process
    clip_len: int = 3  # T adjacent search frames per clip
    lr: float = 1e-2  # for base_batch_size; scaled linearly with the global batch
    base_batch_size: int = 2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iterations: int = 500
    lr_steps: tuple[float, ...] = (2.0 / 3.0, 11.0 / 12.0)  # fractions of the run, x0.1 each
    grad_clip: float = 35.0
    amp: bool = True  # used on CUDA only
    # autocast dtype: float16 (with loss scaling) or bfloat16 (no scaling; Ampere and newer)
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    checkpoint_every: int = 1000
    log_every: int = 20
    seed: int = 0
    num_workers: int = 2
    val_every: int = 0  # iterations between validations (and at the end); 0: off
    init: str | None = None  # siamtfa checkpoint whose model weights start the run (fine-tuning)
    # NanoTrack v2's ONNX head (nanotrack_head_sim_v2.onnx), the teacher of model.roi.cls_target
    # "teacher", run on the model's own frozen stride-16 trunk (a mobile model)
    teacher: str | None = None


@dataclass
class TrackingConfig:
    """How the tracker runs the model: which ranked RoI becomes the box
    (``siamtfa.tracking.selection``), where it searches, and whether the template is updated.
    The defaults are the paper's: the top-scoring RoI, the whole frame, the first template."""

    window_influence: float = 0.0  # weight of the motion prior against the RoI score, 0..1
    window_sigma: float = 1.0  # std of the motion prior, in previous box sizes sqrt(w*h)
    # the motion prior's centre leads the last box by this fraction of the last frame's motion
    # (0: centred on the last box; 1: constant velocity)
    window_lead: float = 0.0
    scale_penalty: float = 0.0  # k in exp(-k * (size ratio - 1)) on each RoI score
    size_lr: float = 1.0  # fraction of the size change taken per frame
    # Box voting: the chosen RoI is replaced by the score-weighted mean of the RoIs that overlap
    # it with IoU >= vote_iou (itself included), before size_lr. 0: off
    vote_iou: float = 0.0
    # Each RoI's score becomes (1 - w) x score + w x max(0, cosine similarity of its trunk
    # feature to the first template's; SiamTFA.appearance), before the prior above. 0: off
    appearance_weight: float = 0.0
    # Online correlation filter (siamtfa.tracking.correlation_filter): learned on the first
    # frame's search region from the trunk's stride-16 map, the target against its
    # surroundings, and updated from each answer. Each RoI's score becomes (1 - w) x score +
    # w x its response (0..1) at the RoI's centre, before the appearance blend. With a search
    # region only (the filter keeps the first region's scale). 0: off
    filter_weight: float = 0.0
    filter_rate: float = 0.02  # fraction of each answer blended into the filter
    filter_sigma: float = 0.25  # std of its Gaussian label, in target sides sqrt(w*h)
    filter_lambda: float = 0.01  # ridge, relative to the first sample's mean energy
    # A second look by the model's correlation head (siamtfa.tracking.head_look), on NanoTrack's
    # crop around the last box: its boxes join the RoIs, and each candidate's score becomes
    # (1 - w) x SiamTFA's evidence + w x the head's (selection.fuse), after the blends above.
    # Needs a model with model.correlation_head. 0: off
    head_weight: float = 0.0
    # Search region: 0 searches the whole frame resized to the input (the paper). Otherwise a
    # frame is cropped around the last box and enlarged so that the target's sqrt(w*h) measures
    # about this many input pixels (never less than the whole frame's scale, never more than
    # max_upsample x the frame's own pixels); the input size, so the cost, stays the same.
    search_target_size: float = 0.0
    max_upsample: float = 2.0
    # With a search region, an answer whose RoI scores below this has the whole frame searched
    # too, and the whole frame's top RoI replaces it when that scores higher (a target that
    # left the region). 0: never.
    redetect_below: float = 0.0
    # Template update: template_interval frames or more after its last change, at an answer
    # whose RoI scores template_min_score or more, the template becomes (1 - template_update) x
    # the first frame's + template_update x the answer's appearance in that frame (anchored to
    # the first, so it cannot drift away from it). 0 keeps the first template (the paper).
    template_update: float = 0.0
    template_interval: int = 10
    template_min_score: float = 0.5


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


class ConfigError(ValueError):
    """A config key is unknown or its value has the wrong type."""


PRESETS = ("paper", "lite", "mobile", "csp")


def preset(name: str) -> Config:
    """The ``paper`` preset (ResNet-50, 1333x800), ``lite`` (ResNet-18, 640x480), ``mobile``
    (MobileNetV3-Small for NanoTrack's converted weights) or ``csp`` (NanoDet's CSP trunk for
    its converted COCO weights), both 640x480 with a narrow pyramid."""
    if name == "paper":
        return Config()
    if name == "lite":
        cfg = Config()
        cfg.model.backbone.depth = 18
        cfg.input.max_size = 640
        cfg.input.min_size = 480
        # fewer proposals and sampled RoIs: the RoI stage dominates CPU time
        cfg.model.rpn.pre_nms_top_n_train = 1000
        cfg.model.rpn.post_nms_top_n_train = 500
        cfg.model.rpn.pre_nms_top_n_test = 300
        cfg.model.rpn.post_nms_top_n_test = 300
        cfg.model.roi.batch_size_per_image = 128
        # narrower pyramid and RoI FCs (same topology): CPU speed and a <= 50 MB checkpoint
        cfg.model.fpn_channels = 128
        cfg.model.roi.fc_dim = 512
        return cfg
    if name == "mobile":
        cfg = preset("lite")
        cfg.model.backbone.arch = "mobilenet_v3"
        cfg.model.backbone.norm = "gn"  # the stride-32 stage, trained from scratch
        cfg.input.mean, cfg.input.std = (0.0, 0.0, 0.0), (1 / 255,) * 3  # NanoTrack's 0..255
        cfg.model.fpn_channels = 64  # the pyramid, not the trunk, dominates the cost here
        cfg.model.roi.fc_dim = 256
        return cfg
    if name == "csp":
        cfg = preset("lite")
        cfg.model.backbone.arch = "csp"
        cfg.model.backbone.norm = "none"  # NanoDet's BatchNorms, folded
        cfg.model.fpn_channels = 64
        cfg.model.roi.fc_dim = 256
        return cfg
    raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), ready for YAML."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    return convert(cfg)


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(
                f"{path}: expected one of {', '.join(map(repr, allowed))}, got {value!r}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{path}: cannot be None")
    if origin is tuple:
        (item_type, _) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(v, item_type, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return _from_dict(annotation, value, path)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {annotation!r}")


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown key (allowed: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def merge(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A new config: ``cfg`` with the (nested, partial) ``overrides`` applied and validated."""

    def deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in upd.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_update(out[key], value)
            else:
                out[key] = value
        return out

    return _from_dict(Config, deep_update(to_dict(cfg), overrides))


def from_dict(data: dict[str, Any]) -> Config:
    """Build a config from a (possibly partial) dict. A ``preset`` key picks the base."""
    data = dict(data)
    base = preset(data.pop("preset", "paper"))
    return merge(base, data)


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    try:
        return from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
