"""OpenCV's CSRT and KCF (opencv-contrib) with the same ``init`` / ``update`` / ``track``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from siamtfa.data.datasets import VideoFrame, read_frame
from siamtfa.data.transforms import to_rgb_array

KINDS = ("csrt", "kcf")


class OpenCVTracker:
    is_deterministic = True

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown OpenCV tracker {kind!r}: use one of {KINDS}")
        try:
            import cv2
        except ImportError as err:
            raise ImportError(
                "CSRT/KCF need opencv-contrib-python-headless (and not plain "
                "opencv-python-headless: both install cv2)"
            ) from err
        factory = {"csrt": "TrackerCSRT_create", "kcf": "TrackerKCF_create"}[kind]
        if not hasattr(cv2, factory):
            raise ImportError(f"cv2.{factory} missing: install opencv-contrib-python-headless")
        self._create = getattr(cv2, factory)
        self._cv2 = cv2
        self.kind = kind
        self.name = kind.upper()
        self.box = np.zeros(4)

    def _bgr(self, image) -> np.ndarray:
        if isinstance(image, (str, Path, VideoFrame)):
            image = read_frame(image)  # a corrupt file raises an error naming it
        return np.ascontiguousarray(to_rgb_array(image)[..., ::-1])

    def init(self, image, box) -> None:
        self.tracker = self._create()
        self.box = np.asarray(box, np.float64)
        x, y, w, h = (round(v) for v in self.box)
        self.tracker.init(self._bgr(image), (x, y, max(w, 1), max(h, 1)))

    def update(self, image) -> np.ndarray:
        ok, box = self.tracker.update(self._bgr(image))
        if ok:  # on failure keep the last box, as the toolkits expect a box per frame
            self.box = np.asarray(box, np.float64)
        return self.box.copy()

    def track(self, img_files: list, box, visualize: bool = False) -> tuple[np.ndarray, np.ndarray]:
        boxes, times = np.zeros((len(img_files), 4)), np.zeros(len(img_files))
        start = time.perf_counter()
        self.init(img_files[0], box)
        times[0], boxes[0] = time.perf_counter() - start, self.box
        for i in range(1, len(img_files)):
            start = time.perf_counter()
            boxes[i] = self.update(img_files[i])
            times[i] = time.perf_counter() - start
        return boxes, times
