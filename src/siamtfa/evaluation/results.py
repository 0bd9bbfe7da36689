"""Result files in the official layouts, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamtfa.data.io import atomic_write_text


def _rows(boxes: np.ndarray) -> str:
    return "".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in boxes)


def write_got10k_result(
    result_dir: str | Path, name: str, boxes: np.ndarray, times: np.ndarray, repetition: int = 1
) -> None:
    """GOT-10k toolkit layout: ``<dir>/<seq>/<seq>_001.txt`` and ``<seq>_time.txt``."""
    folder = Path(result_dir) / name
    atomic_write_text(folder / f"{name}_time.txt", "".join(f"{t:.8f}\n" for t in times))
    # the box file last: its presence marks the sequence as finished
    atomic_write_text(folder / f"{name}_{repetition:03d}.txt", _rows(boxes))


def write_otb_result(
    result_dir: str | Path, name: str, boxes: np.ndarray, times: np.ndarray | None = None
) -> None:
    """OTB/UAV layout: ``<dir>/<seq>.txt`` (and ``times/<seq>_time.txt``)."""
    if times is not None:
        atomic_write_text(
            Path(result_dir) / "times" / f"{name}_time.txt", "".join(f"{t:.8f}\n" for t in times)
        )
    atomic_write_text(Path(result_dir) / f"{name}.txt", _rows(boxes))


def read_result(path: str | Path, frames: int | None = None) -> np.ndarray:
    """``[N, 4]`` boxes from a result file (comma, tab or space separated); a malformed line,
    or a count other than ``frames`` when given, raises ``ValueError`` naming the file."""
    path = Path(path)
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = [float(v) for v in line.replace(",", " ").split()]
        except ValueError:
            row = []
        if len(row) != 4:
            raise ValueError(f"{path}:{lineno}: expected 4 numbers x,y,w,h, got {line!r}")
        rows.append(row)
    if frames is not None and len(rows) != frames:
        raise ValueError(f"{path}: {len(rows)} boxes for {frames} frames")
    return np.asarray(rows, np.float64).reshape(-1, 4)


def is_complete(path: str | Path, frames: int) -> bool:
    """Whether ``path`` holds a readable box for each of ``frames`` frames."""
    try:
        read_result(path, frames)
    except (OSError, ValueError):
        return False
    return True
