"""Config tree (presets, YAML, strict keys) and torchvision-format backbone checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from siamtfa import build_model, config
from siamtfa.config import ConfigError, preset
from siamtfa.model import ResNet, load_backbone_weights


def test_presets_differ_where_documented() -> None:
    paper, lite = preset("paper"), preset("lite")
    assert paper.model.backbone.depth == 50 and lite.model.backbone.depth == 18
    assert paper.input.max_size == 1333 and lite.input.max_size <= 640
    assert paper.model.temporal == lite.model.temporal
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = preset("lite")
    cfg.model.temporal.causal = True
    cfg.model.rpn.anchor_sizes = (16.0, 32.0, 64.0, 128.0, 256.0)
    cfg.train.amp_dtype = "bfloat16"
    path = tmp_path / "cfg.yaml"
    config.save(cfg, path)
    assert config.load(path) == cfg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  rpn:\n    nms_thres: 0.5\n", r"model\.rpn\.nms_thres: unknown key"),
        ("model:\n  temporal:\n    enabled: 'yes'\n", r"model\.temporal\.enabled: expected true"),
        ("train:\n  iterations: 1.5\n", r"train\.iterations: expected an integer"),
        ("model:\n  rpn:\n    anchor_sizes: [1, x]\n", r"model\.rpn\.anchor_sizes\[1\]"),
        ("model: 3\n", r"model: expected a mapping"),
        ("train:\n  amp_dtype: float32\n", r"train\.amp_dtype: expected one of 'float16'"),
        ("- a\n", "top level must be a mapping"),
    ],
)
def test_bad_yaml_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        config.load(path)
    assert str(path) in str(err.value)


def test_preset_key_and_overrides() -> None:
    cfg = config.from_dict({"preset": "lite", "model": {"adversarial_dropout": {"delta": 0.1}}})
    assert cfg.model.backbone.depth == 18 and cfg.model.adversarial_dropout.delta == 0.1
    assert cfg.model.adversarial_dropout.weight == 1.0  # untouched default kept


# every training config (tune*.yaml are siamtfa tune's grids: test_tuning reads them)
SHIPPED_CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
    if not p.name.startswith("tune")
)


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_with_every_value_they_set(path: Path) -> None:
    import yaml

    cfg = config.load(path)

    def check(node: object, raw: dict, where: str) -> None:  # each YAML leaf, read back
        for key, value in raw.items():
            if where == "" and key == "preset":
                continue
            got = getattr(node, key)
            if isinstance(value, dict):
                check(got, value, f"{where}{key}.")
            else:
                want = tuple(value) if isinstance(value, list) else value
                assert got == want, f"{path.name}: {where}{key} = {got!r}, file says {want!r}"

    check(cfg, yaml.safe_load(path.read_text()), "")


# torchvision resnet50 state-dict entries (name -> shape), from its published layout
TORCHVISION_R50_KEYS = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.running_var": (64,),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.bias": (256,),
    "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer3.5.bn2.running_mean": (256,),
    "layer4.2.conv3.weight": (2048, 512, 1, 1),
    "fc.weight": (1000, 2048),
}


def torchvision_like_checkpoint(depth: int, path: Path) -> dict[str, torch.Tensor]:
    state = {k: torch.randn_like(v) for k, v in ResNet(depth).state_dict().items()}
    for key in list(state):
        if key.endswith("running_var"):
            state[key] = state[key].abs() + 0.5
            state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    state["fc.weight"] = torch.randn(1000, 512 * (4 if depth == 50 else 1))
    state["fc.bias"] = torch.randn(1000)
    torch.save(state, path)
    return state


def test_resnet50_uses_torchvision_names() -> None:
    own = ResNet(50).state_dict()
    for key, shape in TORCHVISION_R50_KEYS.items():
        if key.startswith("fc."):
            assert key not in own
        else:
            assert tuple(own[key].shape) == shape, key


@pytest.mark.parametrize("depth", [18, 50])
def test_load_backbone_weights_reports_keys_and_loads_values(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "resnet.pth"
    state = torchvision_like_checkpoint(depth, path)
    backbone = ResNet(depth)
    report = load_backbone_weights(backbone, path)
    assert report.missing == []
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_build_model_loads_weights_from_config(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    state = torchvision_like_checkpoint(18, path)
    cfg = preset("lite")
    cfg.model.backbone.weights = str(path)
    model = build_model(cfg)
    torch.testing.assert_close(
        model.backbone.layer3[1].conv2.weight, state["layer3.1.conv2.weight"]
    )


def test_bad_backbone_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torchvision_like_checkpoint(18, path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"truncated\.pth: cannot read"):
        load_backbone_weights(ResNet(18), truncated)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_backbone_weights(ResNet(18), tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight has shape"):
        load_backbone_weights(ResNet(50), path)  # an R18 file into an R50
