"""Benchmark runner (layouts, resume, shards, corrupt frames) and the track / demo commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siamtfa import build_model, config
from siamtfa.cli import main
from siamtfa.config import InputConfig
from siamtfa.data.datasets import DatasetError, read_frame, read_got10k
from siamtfa.data.synthetic import make_synthetic, render_sequence
from siamtfa.evaluation.runner import (
    evaluate,
    format_table,
    report,
    result_paths,
    run_benchmark,
    shard_sequences,
)
from siamtfa.tracking import Tracker
from siamtfa.tracking.base import BaseTracker

from .conftest import official_got10k_overall, small_model

SMALL = InputConfig(max_size=160, min_size=120)


@pytest.fixture
def val_set(tmp_path: Path) -> Path:
    root = tmp_path / "data" / "val"
    make_synthetic(root, 3, 5, seed=31337, size=(160, 120), progress=False)
    return root


def tracker() -> Tracker:
    return Tracker(small_model().eval(), "online", "cpu", SMALL)


def test_results_are_read_by_the_official_toolkit(tmp_path: Path, val_set: Path) -> None:
    seqs = read_got10k(val_set)
    out = tmp_path / "results" / "GOT-10k"  # where the toolkit looks
    run_benchmark(tracker(), "mine", seqs, out, "got10k", progress=False)
    ours = report(out, seqs, "got10k")["mine"]["overall"]
    official = official_got10k_overall(tmp_path, "mine")
    assert ours["ao"] == pytest.approx(official["ao"], abs=1e-6)
    assert ours["sr50"] == pytest.approx(official["sr"], abs=1e-6)
    assert (out / "success.png").is_file() and (out / "precision.png").is_file()
    info = json.loads((out / "mine" / "info.json").read_text())
    assert "cover==0" in info["rules"]


def test_resume_skips_finished_and_shards_partition(tmp_path: Path, val_set: Path) -> None:
    seqs = read_got10k(val_set)
    parts = [shard_sequences(seqs, (i, 2)) for i in range(2)]
    names = [s.name for p in parts for s in p]
    assert sorted(names) == sorted(s.name for s in seqs) and len(set(names)) == len(names)
    t = tracker()
    done0 = run_benchmark(t, "m", seqs, tmp_path, "otb", shard=(0, 2), progress=False)
    done1 = run_benchmark(t, "m", seqs, tmp_path, "otb", shard=(1, 2), progress=False)
    assert sorted(done0 + done1) == sorted(s.name for s in seqs)
    assert run_benchmark(t, "m", seqs, tmp_path, "otb", progress=False) == []
    result_paths(tmp_path, "m", seqs[1].name, "otb")[0].unlink()
    assert run_benchmark(t, "m", seqs, tmp_path, "otb", progress=False) == [seqs[1].name]


def test_report_names_the_unfinished_trackers_it_leaves_out(
    tmp_path: Path, val_set: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seqs = read_got10k(val_set)
    run_benchmark(tracker(), "whole", seqs, tmp_path, "otb", progress=False)
    run_benchmark(tracker(), "part", seqs, tmp_path, "otb", shard=(0, 2), progress=False)
    results = report(tmp_path, seqs, "otb")
    assert list(results) == ["whole"]
    assert "left out of the report, unfinished: part (2/3)" in caplog.text


class _Timed(BaseTracker):
    """Answers the ground truth, and says each frame took ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def track(self, frames, box, on_frame=None):
        return np.tile(np.asarray(box, float), (len(frames), 1)), np.full(len(frames), self.seconds)


def test_fps_comes_from_one_run_never_pooled(tmp_path: Path, val_set: Path) -> None:
    seqs = read_got10k(val_set)  # 3 sequences of 5 frames: shard 0 holds 2, shard 1 holds 1
    run_benchmark(_Timed(0.1), "m", seqs, tmp_path, "otb", shard=(0, 2), progress=False)
    alone = evaluate(tmp_path, "m", shard_sequences(seqs, (0, 2)), "otb")["overall"]
    assert alone["fps"] == pytest.approx(10.0) and alone["runs"] == 1
    # resumed in another run, 10x faster: pooled would be 12 frames / 0.84 s = 14.3 FPS
    run_benchmark(_Timed(0.01), "m", seqs, tmp_path, "otb", shard=(1, 2), progress=False)
    results = report(tmp_path, seqs, "otb")
    overall = results["m"]["overall"]
    assert overall["fps"] == pytest.approx(10.0)  # the run with 8 of the 12 timed frames
    assert (overall["runs"], overall["fps_frames"]) == (2, 8)
    assert "FPS of m: from the one of its 2 runs that tracked the most frames (8)" in (
        format_table(results)
    )


def test_table_columns_stay_aligned_for_long_names() -> None:
    overall = {"ao": 0.5, "sr50": 0.6, "sr75": 0.3, "auc": 0.5, "precision20": 0.7, "fps": 30.0}
    long_name = "siamtfa-online-filter_weight=0.5-filter_rate=0.0"
    table = format_table({"kcf": {"overall": overall}, long_name: {"overall": overall}})
    header, *rows = table.splitlines()
    ends = {line.index("0.500") + 5 for line in rows} | {header.index("AO") + 2}
    assert len(ends) == 1 and len(rows) == 2  # AO right-aligned in one column under its header


def test_resume_refuses_results_of_other_settings(tmp_path: Path, val_set: Path) -> None:
    seqs = read_got10k(val_set)[:1]
    info = {"checkpoint": "a.pt", "mode": "online", "device": "cpu"}
    run_benchmark(tracker(), "m", seqs, tmp_path, "otb", info=info, progress=False)
    # another machine (device) may resume the same setup ...
    same = {**info, "device": "cuda"}
    assert run_benchmark(tracker(), "m", seqs, tmp_path, "otb", info=same, progress=False) == []
    # ... but another checkpoint must not add its sequences to these results
    other = {**info, "checkpoint": "b.pt"}
    with pytest.raises(ValueError, match=r"info\.json.*checkpoint: 'a\.pt' now 'b\.pt'"):
        run_benchmark(tracker(), "m", seqs, tmp_path, "otb", info=other, progress=False)


def test_corrupt_frame_names_the_file_and_keeps_finished_results(
    tmp_path: Path, val_set: Path
) -> None:
    seqs = read_got10k(val_set)
    bad = seqs[1].frames[3]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=bad.name):
        run_benchmark(tracker(), "m", seqs, tmp_path, "got10k", progress=False)
    first = result_paths(tmp_path, "m", seqs[0].name, "got10k")[0]
    assert len(np.loadtxt(first, delimiter=",")) == 5
    assert not result_paths(tmp_path, "m", seqs[1].name, "got10k")[0].exists()


def test_eval_command_with_baseline_and_report(
    tmp_path: Path, val_set: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "eval",
                "--tracker",
                "kcf",
                "--dataset",
                "got10k",
                "--root",
                str(val_set.parent),
                "--split",
                "val",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "kcf" in printed and "AO" in printed
    assert json.loads((tmp_path / "r" / "report.json").read_text())["kcf"]["overall"]["fps"] > 0


def test_eval_tracking_overrides_are_applied_and_filed_apart(
    tmp_path: Path, val_set: Path, capsys: pytest.CaptureFixture
) -> None:
    common = ["eval", "--dataset", "got10k", "--root", str(val_set.parent), "--split", "val"]
    common += ["--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main([*common, "--tracking", "filter_weight=0.5", "window_influence=0"]) == 0
    info = json.loads(
        (
            tmp_path / "r" / "siamtfa-online-filter_weight=0.5-window_influence=0.0" / "info.json"
        ).read_text()
    )
    shipped = Tracker().tracking  # the checkpoint's settings, but for the two given
    assert info["selection"] == {**vars(shipped), "filter_weight": 0.5, "window_influence": 0.0}
    capsys.readouterr()
    for bad, message in [
        (["--tracking", "filter_weigth=0.5"], "tracking.filter_weigth: unknown key"),
        (["--tracking", "filter_weight"], "--tracking filter_weight: expected KEY=VALUE"),
        (["--tracking", "filter_weight=x"], "tracking.filter_weight: expected a number"),
        (["--tracker", "kcf", "--tracking", "size_lr=1"], "not kcf's"),
    ]:
        assert main([*common, *bad]) == 2
        assert message in capsys.readouterr().err


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    """``frames`` as numbered PNGs in ``folder`` (made)."""
    from PIL import Image

    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    return folder


@pytest.mark.parametrize("kind", ["video", "folder"])
def test_track_command(tmp_path: Path, kind: str) -> None:
    seq = render_sequence(5, 0, 6, size=(160, 120))
    if kind == "video":
        source = tmp_path / "in.mp4"
        write_video(source, seq.frames)
    else:
        source = write_frames(tmp_path / "frames", seq.frames)
    box = ",".join(str(v) for v in seq.boxes[0])
    out, boxes = tmp_path / "out.mp4", tmp_path / "boxes.txt"
    assert main(["track", str(source), "--box", box, "--out", str(out), "--boxes", str(boxes)]) == 0
    assert out.stat().st_size > 1000
    result = np.loadtxt(boxes, delimiter=",")
    assert result.shape == (6, 4)
    np.testing.assert_allclose(result[0], seq.boxes[0], atol=0.01)


def test_version_and_every_option_documented(capsys: pytest.CaptureFixture) -> None:
    from siamtfa import __version__
    from siamtfa.cli import build_parser

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"siamtfa {__version__}"
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"


def test_track_needs_a_box(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write_frames(tmp_path / "f", [np.zeros((48, 64, 3), np.uint8)] * 2)
    assert main(["track", str(folder)]) == 2
    assert "give the target with --box x,y,w,h or --select" in capsys.readouterr().err
    assert main(["track", str(folder), "--box", "10,10,20,20"]) == 0  # the same, with a box


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import cv2

    assert main(["demo", "--out", str(tmp_path), "--sequences", "2", "--frames", "5"]) == 0
    printed = capsys.readouterr().out
    assert "AO" in printed and "demo.mp4" in printed
    per_sequence = next(line for line in printed.splitlines() if line.startswith("AO per sequence"))
    assert len(per_sequence.split(":")[1].split(",")) == 2
    assert (tmp_path / "demo.mp4").stat().st_size > 1000
    video = cv2.VideoCapture(str(tmp_path / "demo.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 10  # every frame of both sequences
    video.release()
    assert (tmp_path / "results" / "success.png").is_file()
    assert (tmp_path / "results" / "report.json").is_file()


def _opencv_boxes(tracker, frames: list[np.ndarray], box: np.ndarray) -> np.ndarray:
    """OpenCV's ``tracker`` called directly on BGR copies of RGB ``frames``, ints in."""
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    tracker.init(bgr[0], tuple(round(v) for v in box))
    return np.array([box] + [np.array(tracker.update(f)[1], float) for f in bgr[1:]])


NANOTRACK = Path(__file__).resolve().parents[2] / "shared" / "models" / "nanotrack"


def test_nanotrack_names_the_missing_model_file(
    tmp_path: Path, val_set: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["eval", "--tracker", "nanotrack", "--dataset", "got10k", "--root", str(val_set)]
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert "nanotrack needs --model-dir" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "r"), "--model-dir", str(tmp_path)]) == 2
    assert f"NanoTrack v2 model not found: {tmp_path}/nanotrack_backbone_sim_v2" in (
        capsys.readouterr().err
    )


@pytest.mark.skipif(not NANOTRACK.is_dir(), reason="NanoTrack's ONNX files are not here")
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_nanotrack_eval_gives_opencvs_own_boxes(tmp_path: Path, version: str) -> None:
    import cv2

    root = tmp_path / "seqs"
    make_synthetic(root, 2, 8, seed=4, size=(320, 240), progress=False)
    out = tmp_path / "r"
    args = ["eval", "--tracker", "nanotrack", "--dataset", "got10k", "--root", str(root)]
    args += ["--out", str(out), "--model-dir", str(NANOTRACK), "--nanotrack-version", version]
    assert main(args) == 0
    name = "nanotrack" if version == "v2" else "nanotrack-v1"
    report = json.loads((out / "report.json").read_text())[name]
    assert report["info"]["models"][0].startswith("nanotrack_backbone_sim")
    backbone, head = (
        ("nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx")
        if version == "v1"
        else ("nanotrack_backbone_sim_v2.onnx", "nanotrack_head_sim_v2.onnx")
    )
    for seq in read_got10k(root):  # OpenCV called directly, on BGR frames, ints in and out
        params = cv2.TrackerNano_Params()
        params.backbone, params.neckhead = str(NANOTRACK / backbone), str(NANOTRACK / head)
        nano = cv2.TrackerNano_create(params)
        expected = _opencv_boxes(nano, [read_frame(f) for f in seq.frames], seq.boxes[0])
        ours = np.loadtxt(result_paths(out, name, seq.name, "got10k")[0], delimiter=",")
        np.testing.assert_allclose(ours, expected, atol=1e-3)
    assert report["overall"]["ao"] > 0.3  # it follows the targets


@pytest.mark.parametrize("kind", ["csrt", "nanotrack"])
def test_track_command_runs_opencvs_trackers(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture
) -> None:
    import cv2

    if kind == "nanotrack" and not NANOTRACK.is_dir():
        pytest.skip("NanoTrack's ONNX files are not here")
    seq = render_sequence(6, 0, 8, size=(320, 240))
    source = write_frames(tmp_path / "frames", seq.frames)
    box = ",".join(str(v) for v in seq.boxes[0])
    out, boxes = tmp_path / "out.mp4", tmp_path / "boxes.txt"
    args = ["track", str(source), "--box", box, "--tracker", kind, "--boxes", str(boxes)]
    models = ["--model-dir", str(NANOTRACK)] if kind == "nanotrack" else []
    if kind == "nanotrack":
        params = cv2.TrackerNano_Params()
        params.backbone = str(NANOTRACK / "nanotrack_backbone_sim_v2.onnx")
        params.neckhead = str(NANOTRACK / "nanotrack_head_sim_v2.onnx")
        reference = cv2.TrackerNano_create(params)
    else:
        reference = cv2.TrackerCSRT_create()
    assert main([*args, *models, "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    expected = _opencv_boxes(reference, seq.frames, seq.boxes[0])
    np.testing.assert_allclose(np.loadtxt(boxes, delimiter=","), expected, atol=0.01)
    capsys.readouterr()
    # siamtfa's options, or NanoTrack without its models: one line naming them
    assert main([*args, *models, "--checkpoint", "x.pt", "--precision", "bf16"]) == 2
    assert f"--checkpoint, --precision: siamtfa's options, not {kind}'s" in capsys.readouterr().err
    if kind == "nanotrack":
        assert main(args) == 2
        assert "nanotrack needs --model-dir" in capsys.readouterr().err


def test_summary_describes_the_default_model_unless_told(capsys: pytest.CaptureFixture) -> None:
    # no option: the model Tracker() uses, whatever it is; counted here independently
    assert main(["summary"]) == 0
    total = sum(p.numel() for p in Tracker(device="cpu").model.parameters())
    last = capsys.readouterr().out.splitlines()[-1].split()
    assert last[:4] == ["total", f"{total / 1e6:.2f}", "M", "params"]
    assert main(["summary", "--preset", "mobile"]) == 0
    first, *rows = capsys.readouterr().out.splitlines()
    assert "(preset mobile): MobileNetV3-Small-FPN (64 channels)" in first
    total = sum(p.numel() for p in build_model(config.preset("mobile")).parameters())
    assert rows[-1].split() == ["total", f"{total / 1e6:.2f}", "M", "params", *rows[-1].split()[4:]]
    # the reader gone (piped into head, say): no traceback
    proc = subprocess.Popen(
        [sys.executable, "-m", "siamtfa.cli", "summary"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    assert proc.wait() == 1 and proc.stderr.read() == b""
