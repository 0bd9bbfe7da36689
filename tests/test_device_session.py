"""The GPU-lease script's file handling (benchmarks/device_session.py): what travels to the
device (a reduced copy of the train sequences) and what comes back (a checkpoint in parts)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamtfa.checkpoint import save_checkpoint
from siamtfa.data.datasets import read_folder

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_session.py"
spec = importlib.util.spec_from_file_location("device_session", SCRIPT)
device_session = importlib.util.module_from_spec(spec)
spec.loader.exec_module(device_session)


def test_split_and_join_give_back_the_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt"
    save_checkpoint({"model": {"w": torch.arange(10000.0)}, "config": {}}, ckpt)
    back = tmp_path / "back"
    back.mkdir()
    manifest = device_session.split(ckpt, back, part_bytes=9000)
    size = ckpt.stat().st_size
    assert len(manifest["parts"]) == -(-size // 9000) >= 4
    assert all((back / p["name"]).stat().st_size <= 9000 for p in manifest["parts"])
    joined = device_session.join(back, tmp_path / "joined.pt")
    assert joined.read_bytes() == ckpt.read_bytes()

    part = back / manifest["parts"][1]["name"]
    data = bytearray(part.read_bytes())
    data[5] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.pt\.part1: SHA-256"):
        device_session.join(back, tmp_path / "bad.pt")
    part.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.pt\.part1: part missing"):
        device_session.join(back, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_prepare_keeps_every_second_frame_with_scaled_boxes(tmp_path: Path) -> None:
    seq = tmp_path / "src" / "seq_a"
    seq.mkdir(parents=True)
    boxes = np.array([[10 + 4 * t, 20, 300, 100 + t] for t in range(5)], np.float64)
    for t in range(5):
        Image.new("RGB", (1280, 720), (t * 40, 0, 0)).save(seq / f"{t + 1:08d}.jpg")
    (seq / "groundtruth.txt").write_text("\n".join(",".join(map(str, b)) for b in boxes))
    frames = device_session.prepare(tmp_path / "src", tmp_path / "out", step=2, max_side=640)
    assert frames == 3  # frames 1, 3, 5
    (small,) = read_folder(tmp_path / "out")
    assert Image.open(small.frames[0]).size == (640, 360)
    np.testing.assert_allclose(small.boxes, boxes[[0, 2, 4]] * 0.5, atol=1e-3)
    red = [np.asarray(Image.open(f))[..., 0].mean() for f in small.frames]
    np.testing.assert_allclose(red, [0, 80, 160], atol=2)
