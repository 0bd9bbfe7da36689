"""Frame sources (video file, frame folder, webcam) and an annotated video writer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from siamtfa.data.datasets import DatasetError, list_frames, read_frame


def _cv2():
    try:
        import cv2
    except ImportError as err:
        raise ImportError("video input/output needs opencv-contrib-python-headless") from err
    return cv2


def open_frames(source: str) -> tuple[Iterator[np.ndarray], float, int | None]:
    """RGB frames of a video file, a folder of images or a webcam index; with fps and count."""
    if source.isdigit():
        return _capture(int(source))
    path = Path(source)
    if path.is_dir():
        files = list_frames(path)  # natural order; a corrupt frame raises naming it
        return (read_frame(f) for f in files), 30.0, len(files)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path}")
    return _capture(str(path))


def _capture(source: str | int) -> tuple[Iterator[np.ndarray], float, int | None]:
    cv2 = _cv2()
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise DatasetError(f"{source}: cannot open video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def read() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame[..., ::-1].copy()
        finally:
            cap.release()

    return read(), fps, count if isinstance(source, str) else None


class AnnotatedVideo:
    """Writes RGB frames with boxes drawn (``mp4v`` MP4) to ``path``."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.writer = None

    def write(
        self,
        frame: np.ndarray,
        boxes: list[tuple[np.ndarray, tuple[int, int, int]]],
        text: str = "",
    ) -> None:
        cv2 = _cv2()
        img = np.ascontiguousarray(frame[..., ::-1])
        if self.writer is None:
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h)
            )
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: cannot open video writer")
        for box, rgb in boxes:
            if np.isfinite(box).all():
                x, y, w, h = (round(v) for v in box)
                cv2.rectangle(img, (x, y), (x + w, y + h), rgb[::-1], 2)
        for i, line in enumerate(text.splitlines()):  # one line each: nothing cut off
            scale = min(0.5, 0.5 * (img.shape[1] - 12) / max(9 * len(line), 1))
            cv2.putText(
                img,
                line,
                (6, 18 + 18 * i),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
        self.writer.write(img)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
