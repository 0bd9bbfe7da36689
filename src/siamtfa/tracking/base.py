"""The GOT-10k toolkit's tracker interface, with the ``track`` loop every tracker shares."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


class BaseTracker:
    """Subclasses give ``init(image, box)`` and ``update(image) -> box``; boxes ``[x, y, w, h]``
    (0-based), images RGB (a path, a PIL image or an array)."""

    is_deterministic = True
    name = "tracker"

    def init(self, image, box) -> np.ndarray:
        """Start on ``box`` in ``image``; returns the box as the tracker holds it."""
        raise NotImplementedError

    def update(self, image) -> np.ndarray:
        raise NotImplementedError

    def track(
        self, img_files: list, box, visualize: bool = False, on_frame: Callable | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``[N, 4]`` (frame 0 = ``box``) and seconds per frame ``[N]``; ``on_frame(k)``
        is called as each k more frames are done (a progress bar's ``update``)."""
        on_frame = on_frame or (lambda k: None)
        n = len(img_files)
        if n == 0:
            raise ValueError("track needs at least one frame")
        boxes, times = np.zeros((n, 4)), np.zeros(n)
        start = time.perf_counter()
        boxes[0] = self.init(img_files[0], box)
        times[0] = time.perf_counter() - start
        on_frame(1)
        self._follow(img_files, boxes, times, on_frame)
        return boxes, times

    def _follow(
        self, img_files: list, boxes: np.ndarray, times: np.ndarray, on_frame: Callable
    ) -> None:
        """Fill ``boxes[1:]`` and ``times[1:]`` after ``init``: one ``update`` per frame."""
        for i in range(1, len(img_files)):
            start = time.perf_counter()
            boxes[i] = self.update(img_files[i])
            times[i] = time.perf_counter() - start
            on_frame(1)
