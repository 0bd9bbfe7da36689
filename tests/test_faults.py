"""Faults and bad inputs as a table: each row does one wrong thing a user might do and says
what must happen — a clear error (the message names the file, line or option) or the right
result — and, where work could be lost, what must be left as it was. A new case is one row.

The signal case (a whole process group SIGTERMed during training) is its own test below.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from siamtfa import build_model, config
from siamtfa.checkpoint import load_checkpoint, save_checkpoint
from siamtfa.cli import main
from siamtfa.config import InputConfig
from siamtfa.data.datasets import read_folder, read_frame, read_got10k
from siamtfa.data.io import atomic_write_text
from siamtfa.data.synthetic import make_synthetic
from siamtfa.evaluation.results import read_result
from siamtfa.evaluation.runner import evaluate, result_paths, run_benchmark
from siamtfa.tracking import OpenCVTracker, Tracker
from siamtfa.tracking.video import open_frames
from siamtfa.training import train

from .conftest import small_model


@dataclass
class Cli:
    """What a ``siamtfa`` command returned and printed."""

    rc: int
    out: str


def cli(*argv: object) -> Cli:
    """Run ``siamtfa ARGV`` in this process (argparse's own errors included)."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as stop:
            rc = stop.code
    return Cli(int(rc), buffer.getvalue())


def tiny_config(tmp: Path, iterations: int = 2, **model: Any) -> Path:
    """A YAML config of a few cheap iterations."""
    cfg = config.from_dict(
        {
            "preset": "lite",
            "input": {"max_size": 128, "min_size": 96},
            "model": {"fpn_channels": 32, "roi": {"fc_dim": 128}},  # cheap to build and train
            "train": {
                "iterations": iterations,
                "batch_size": 1,
                "clip_len": 2,
                "warmup_iterations": 1,
                "num_workers": 0,
                "log_every": 1,  # log.csv flushed every iteration: the signal tests watch it
            },
        }
    )
    for key, value in model.items():
        setattr(cfg.model, key, value)
    path = tmp / f"tiny{len(list(tmp.glob('tiny*.yaml')))}.yaml"
    config.save(cfg, path)
    return path


def synthetic(tmp: Path, name: str = "syn", sequences: int = 2, frames: int = 6) -> Path:
    make_synthetic(tmp / name, sequences, frames, seed=3, size=(96, 72), progress=False)
    return tmp / name


def a_run(tmp: Path, iterations: int = 2) -> Path:
    """A finished tiny training run in ``tmp/run``."""
    run = tmp / "run"
    cli(
        "train",
        "--config",
        tiny_config(tmp, iterations),
        "--data",
        f"synthetic={synthetic(tmp)}",
        "--out",
        run,
    )
    assert load_checkpoint(run / "last.pt")["iteration"] == iterations
    return run


def kcf_eval(root: Path, out: Path) -> Cli:
    return cli("eval", "--tracker", "kcf", "--dataset", "got10k", "--root", root, "--out", out)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- the cases
@dataclass
class Case:
    name: str
    run: Callable[[Path], Any]  # does the wrong thing; returns a Cli or a value, or raises
    error: str | None = None  # regex the error must match; None: it must succeed
    check: Callable[[Path, Any], None] | None = None  # what must hold afterwards
    slow: bool = False  # trains a model: left out by -m "not slow"


def new_run_on_a_run(tmp: Path) -> Cli:
    run = a_run(tmp, 3)
    tmp.joinpath("log_before").write_bytes((run / "log.csv").read_bytes())
    return cli(
        "train", "--config", tiny_config(tmp, 1), "--data", f"synthetic={tmp / 'syn'}", "--out", run
    )


def run_kept(tmp: Path, _: Any) -> None:
    run = tmp / "run"
    assert load_checkpoint(run / "last.pt")["iteration"] == 3
    assert (run / "log.csv").read_bytes() == tmp.joinpath("log_before").read_bytes()
    # --overwrite starts over, as asked
    again = cli(
        "train",
        "--config",
        tiny_config(tmp, 1),
        "--data",
        f"synthetic={tmp / 'syn'}",
        "--out",
        run,
        "--overwrite",
    )
    assert again.rc == 0, again.out
    assert load_checkpoint(run / "last.pt")["iteration"] == 1
    assert len((run / "log.csv").read_text().splitlines()) == 2


def failed_start(*bad: str) -> Callable[[Path], Cli]:
    def run(tmp: Path) -> Cli:
        out = a_run(tmp)
        tmp.joinpath("before").write_bytes((out / "run.json").read_bytes())
        return cli(
            "train",
            "--config",
            tiny_config(tmp, 5, fpn_channels=16),
            "--data",
            f"synthetic={tmp / 'syn'}",
            "--out",
            out,
            "--overwrite",
            *bad,
        )

    return run


def run_resumable(tmp: Path, _: Any) -> None:
    assert (tmp / "run" / "run.json").read_bytes() == tmp.joinpath("before").read_bytes()
    resumed = cli("train", "--resume", tmp / "run", "--iterations", "3")
    assert resumed.rc == 0, resumed.out
    assert load_checkpoint(tmp / "run" / "last.pt")["iteration"] == 3


def foreign_list(tmp: Path) -> Cli:
    (tmp / "real").mkdir()
    (tmp / "real" / "list.txt").write_text("my_sequence\n")
    return cli("make-synthetic", "--out", tmp / "real", "--sequences", 1, "--frames", 2)


def list_kept(tmp: Path, _: Any) -> None:
    assert (tmp / "real" / "list.txt").read_text() == "my_sequence\n"
    assert sorted(p.name for p in (tmp / "real").iterdir()) == ["list.txt"]


def numbered_frames(tmp: Path) -> Path:
    """Frames ``1.png .. 12.png`` whose grey level is their number."""
    folder = tmp / "seq"
    folder.mkdir()
    for i in range(1, 13):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "groundtruth.txt").write_text("1,1,4,4\n" * 12)
    return folder


def frame_order(tmp: Path) -> tuple[list[int], list[int]]:
    folder = numbered_frames(tmp)
    dataset = [int(read_frame(f)[0, 0, 0]) // 10 for f in read_folder(folder)[0].frames]
    video = [int(frame[0, 0, 0]) // 10 for frame in open_frames(str(folder))[0]]
    return dataset, video


def in_order(_: Path, orders: tuple[list[int], list[int]]) -> None:
    assert orders[0] == orders[1] == list(range(1, 13))


def sixteen_bit_png(tmp: Path) -> np.ndarray:
    import cv2

    grey = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    cv2.imwrite(str(tmp / "deep.png"), grey)
    return read_frame(tmp / "deep.png")


def scaled_not_white(_: Path, rgb: np.ndarray) -> None:
    expected = np.linspace(0, 65535, 64 * 48).reshape(48, 64) / 257
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    assert np.abs(rgb[..., 0] - expected).max() <= 1.0


def tracker() -> Tracker:
    torch.manual_seed(0)  # the same untrained weights each time
    return Tracker(small_model().eval(), "online", "cpu", InputConfig(max_size=96, min_size=72))


def image_kinds(_: Path) -> list[np.ndarray]:
    """The boxes for one frame given as uint8, float [0, 1] and uint16."""
    rng = np.random.default_rng(0)
    first, second = (rng.integers(0, 256, (72, 96, 3)).astype(np.uint8) for _ in range(2))
    boxes = []
    for convert in (lambda a: a, lambda a: a / 255.0, lambda a: a.astype(np.uint16) * 257):
        t = tracker()
        t.init(convert(first), [30, 20, 24, 18])
        boxes.append(t.update(convert(second)))
    return boxes


def same_boxes(_: Path, boxes: list[np.ndarray]) -> None:
    np.testing.assert_allclose(boxes[1], boxes[0], atol=1e-4)
    np.testing.assert_allclose(boxes[2], boxes[0], atol=1e-4)


def update_with(image: np.ndarray) -> Callable[[Path], np.ndarray]:
    def run(_: Path) -> np.ndarray:
        t = tracker()
        t.init(np.zeros((72, 96, 3), np.uint8), [30, 20, 24, 18])
        return t.update(image)

    return run


def remake_with(*changed: object) -> Callable[[Path], Cli]:
    def run(tmp: Path) -> Cli:
        args = [
            "make-synthetic",
            "--out",
            tmp / "s",
            "--sequences",
            2,
            "--frames",
            4,
            "--width",
            64,
            "--height",
            48,
        ]
        assert cli(*args).rc == 0
        tmp.joinpath("before.json").write_text(json.dumps(sorted(snapshot(tmp / "s"))))
        return cli(*args, *changed)

    return run


def synthetic_kept(tmp: Path, _: Any) -> None:
    assert json.loads(tmp.joinpath("before.json").read_text()) == sorted(snapshot(tmp / "s"))


def resume_with(*extra: object) -> Callable[[Path], Cli]:
    def run(tmp: Path) -> Cli:
        return cli("train", "--resume", a_run(tmp), *extra)

    return run


def resume_foreign_checkpoint(tmp: Path) -> Cli:
    run = a_run(tmp)
    other = config.load(tiny_config(tmp, 2, fpn_channels=16))
    state = load_checkpoint(run / "last.pt")
    state["model"] = build_model(other).state_dict()
    save_checkpoint(state, run / "last.pt")
    return cli("train", "--resume", run, "--iterations", 4)


def empty_set(tmp: Path) -> Cli:
    (tmp / "empty").mkdir()
    (tmp / "empty" / "list.txt").write_text("\n")
    return kcf_eval(tmp / "empty", tmp / "r")


def results_of(tmp: Path, damage: Callable[[Path], None]) -> Any:
    """KCF results on two sequences, the first sequence's box file then damaged."""
    root = synthetic(tmp)
    seqs = read_got10k(root)
    run_benchmark(OpenCVTracker("kcf"), "kcf", seqs, tmp / "r", "got10k", progress=False)
    damage(result_paths(tmp / "r", "kcf", seqs[0].name, "got10k")[0])
    return seqs


def partial_last_line(tmp: Path) -> dict:
    seqs = results_of(tmp, lambda f: f.write_text(f.read_text()[:-12]))
    return evaluate(tmp / "r", "kcf", seqs, "got10k")


def truncated_result(tmp: Path) -> list[str]:
    def cut(f: Path) -> None:
        f.write_text("".join(f.read_text().splitlines(keepends=True)[:3]))

    seqs = results_of(tmp, cut)
    return run_benchmark(OpenCVTracker("kcf"), "kcf", seqs, tmp / "r", "got10k", progress=False)


def retracked(tmp: Path, done: list[str]) -> None:
    seqs = read_got10k(tmp / "syn")
    assert done == [seqs[0].name]
    assert len(read_result(result_paths(tmp / "r", "kcf", seqs[0].name, "got10k")[0])) == 6


def eval_out(where: Callable[[Path], Path]) -> Callable[[Path], Cli]:
    def run(tmp: Path) -> Cli:
        return kcf_eval(synthetic(tmp), where(tmp))

    return run


def a_file(tmp: Path) -> Path:
    (tmp / "results").write_text("not a folder")
    return tmp / "results"


def interrupted_eval(tmp: Path) -> Cli:
    root = synthetic(tmp, sequences=3)
    calls = []

    def track(self: OpenCVTracker, frames: list, box: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, frames, box, **kwargs)

    original = OpenCVTracker.track
    OpenCVTracker.track = track  # undone below, whatever happens
    try:
        return kcf_eval(root, tmp / "r")
    finally:
        OpenCVTracker.track = original


def stale_temporary(tmp: Path) -> list[str]:
    run = a_run(tmp)
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    assert cli("train", "--resume", run, "--iterations", 3).rc == 0
    return sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp"))


def umask_mode(tmp: Path) -> int:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp / "a.txt", "x")
    finally:
        os.umask(old)
    return (tmp / "a.txt").stat().st_mode & 0o777


class Foreign:
    pass


def foreign_pickle(tmp: Path) -> dict:
    torch.save({"model": Foreign()}, tmp / "evil.pt")
    return load_checkpoint(tmp / "evil.pt")


def equals(expected: Any) -> Callable[[Path, Any], None]:
    def check(_: Path, value: Any) -> None:
        assert value == expected

    return check


CASES = [
    # data lost
    Case("train --out on a run", new_run_on_a_run, r"holds a run .*--resume", run_kept),
    Case(
        "failed start: missing data",
        failed_start("--data", "synthetic=does_not_exist"),
        r"does_not_exist.*not found",
        run_resumable,
    ),
    Case(
        "failed start: bad --init",
        failed_start("--init", "nothing.pt"),
        r"checkpoint not found: nothing\.pt",
        run_resumable,
    ),
    Case(
        "make-synthetic over a dataset's list.txt",
        foreign_list,
        r"list\.txt exists and was not written by make-synthetic",
        list_kept,
    ),
    # silently wrong
    Case("frames 1..12 in natural order", frame_order, None, in_order),
    Case("16-bit PNG frame", sixteen_bit_png, None, scaled_not_white),
    Case("float [0, 1] and uint16 arrays", image_kinds, None, same_boxes),
    Case("NaN image", update_with(np.full((72, 96, 3), np.nan)), "NaN"),
    Case("float image in 0..255", update_with(np.full((72, 96, 3), 200.0)), r"values in \[0, 1\]"),
    Case(
        "make-synthetic: other --frames",
        remake_with("--frames", 5),
        r"other settings \(frames: 4 now 5\)",
        synthetic_kept,
    ),
    Case(
        "make-synthetic: other --width",
        remake_with("--width", 80),
        r"size: \[64, 48\] now \[80, 48\]",
        synthetic_kept,
    ),
    Case(
        "make-synthetic: other --seed", remake_with("--seed", 1), r"seed: 0 now 1", synthetic_kept
    ),
    Case(
        "make-synthetic --sequences 0",
        remake_with("--sequences", 0),
        r"--sequences: must be at least 1, got 0",
    ),
    Case(
        "make-synthetic --sequences -3",
        remake_with("--sequences", -3),
        r"--sequences: must be at least 1, got -3",
    ),
    Case("--resume with --config", resume_with("--config", "x.yaml"), r"--config cannot change"),
    Case("--resume with --data", resume_with("--data", "synthetic=x"), r"--data cannot change"),
    Case(
        "--resume with --init --teacher --val",
        resume_with("--init", "a.pt", "--teacher", "h.onnx", "--val", "got10k=v"),
        r"--init, --teacher, --val cannot change",
    ),
    # raw tracebacks
    Case(
        "--resume with a checkpoint of another model",
        resume_foreign_checkpoint,
        r"last\.pt: weights do not fit",
    ),
    Case("make-synthetic --frames 0", remake_with("--frames", 0), r"--frames: must be at least 2"),
    Case("make-synthetic --frames -5", remake_with("--frames", -5), r"--frames: .*got -5"),
    Case("make-synthetic --width 0", remake_with("--width", 0), r"--width: must be at least 16"),
    Case("eval on an empty set", empty_set, r"list\.txt: lists no sequences"),
    Case("update on a 0x0 image", update_with(np.zeros((0, 0, 3), np.uint8)), r"empty \(0x0"),
    Case("track([])", lambda _: tracker().track([], [0, 0, 4, 4]), "at least one frame"),
    Case(
        "result file with a partial last line",
        partial_last_line,
        r"SYN-3-000000_001\.txt:6: expected 4 numbers",
    ),
    Case("truncated result file on rerun", truncated_result, None, retracked),
    Case("eval --out is a file", eval_out(a_file), r"cannot write results to .*results"),
    Case(
        "eval --out on a read-only file system",
        eval_out(lambda _: Path("/sys/siamtfa")),
        r"cannot write results to /sys/siamtfa",
    ),
    Case("Ctrl-C during eval", interrupted_eval, r"interrupted; 1 of 3 sequences are finished"),
    # small
    Case("stale .tmp of a killed checkpoint write", stale_temporary, None, equals([])),
    Case("atomic writes follow the umask", umask_mode, None, equals(0o644)),
    Case(
        "foreign pickle in a checkpoint",
        foreign_pickle,
        r"evil\.pt: not a siamtfa checkpoint: it holds Python objects",
    ),
]


for case in CASES:  # the cases that train a model first
    case.slow = case.name.startswith(("train --out", "failed start", "--resume", "stale .tmp"))


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] * c.slow) for c in CASES]
)
def test_fault(case: Case, tmp_path: Path) -> None:
    try:
        result = case.run(tmp_path)
    except (ValueError, RuntimeError) as err:  # the library's clear errors
        assert case.error, f"unexpected error: {err!r}"
        message = str(err)
        assert "weights_only" not in message
        assert re.search(case.error, message), message
        result = err
    else:
        if isinstance(result, Cli):
            if case.error:
                assert result.rc != 0, result.out
                assert re.search(case.error, result.out), result.out
            else:
                assert result.rc == 0, result.out
            assert "Traceback" not in result.out, result.out
        else:
            assert case.error is None, f"no error, returned {result!r}"
    if case.check is not None:
        case.check(tmp_path, result)


# ----------------------------------------------------------------------------- signals
@pytest.mark.slow
def test_sigterm_to_the_process_group_checkpoints_and_resumes(tmp_path: Path) -> None:
    """How SLURM's scancel and systemd stop a job: SIGTERM to every process of the group,
    DataLoader workers included. The run must checkpoint, say so by its exit status, and
    resume cleanly."""
    cfg = config.load(tiny_config(tmp_path, 1000))
    cfg.train.num_workers = 2
    config.save(cfg, tmp_path / "workers.yaml")
    data = f"synthetic={synthetic(tmp_path)}"
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "siamtfa.cli",
            "train",
            "--config",
            str(tmp_path / "workers.yaml"),
            "--data",
            data,
            "--out",
            str(run),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a job
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not _logged_rows(run / "log.csv") >= 3:  # training is under way, workers up
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out and "stopped by SIGTERM" in out, out
    stopped = load_checkpoint(run / "last.pt")["iteration"]
    assert stopped >= 3 and stopped == _logged_rows(run / "log.csv")
    resumed = train(
        config.load(tiny_config(tmp_path)),
        [],
        run,
        resume=True,
        progress=False,
        iterations=stopped + 2,
    )
    assert resumed.iteration == stopped + 2 and resumed.signal is None


def _logged_rows(path: Path) -> int:
    return max(len(path.read_text().splitlines()) - 1, 0) if path.is_file() else 0


@pytest.mark.slow
def test_train_stopped_by_a_signal_exits_nonzero(tmp_path: Path) -> None:
    """SIGINT to the process alone (Ctrl-C): checkpointed, exit status 130."""
    run = tmp_path / "run"
    cfg = tiny_config(tmp_path, 1000)
    data = f"synthetic={synthetic(tmp_path)}"
    os_kill_after_first_row = threading_timer_killing(run)
    try:
        rc = cli("train", "--config", cfg, "--data", data, "--out", run)
    finally:
        os_kill_after_first_row.cancel()
    assert rc.rc == 128 + signal.SIGINT, rc.out
    assert "stopped by SIGINT" in rc.out
    assert load_checkpoint(run / "last.pt")["iteration"] == _logged_rows(run / "log.csv")


def threading_timer_killing(run: Path) -> Any:
    """A thread that sends this process SIGINT once ``run`` has logged an iteration."""
    import threading

    class Killer(threading.Thread):
        def __init__(self) -> None:
            super().__init__(daemon=True)
            self.stop = threading.Event()

        def run(self) -> None:
            while not self.stop.is_set():
                if _logged_rows(run / "log.csv") >= 1:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
                time.sleep(0.05)

        def cancel(self) -> None:
            self.stop.set()

    killer = Killer()
    killer.start()
    return killer
