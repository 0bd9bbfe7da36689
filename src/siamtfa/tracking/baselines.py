"""OpenCV's trackers (opencv-contrib) with the same ``init`` / ``update`` / ``track``: the
classic CSRT and KCF, and NanoTrack (``cv2.TrackerNano``), a small pretrained siamese tracker
whose ONNX models the user supplies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamtfa.data.datasets import VideoFrame, read_frame
from siamtfa.data.transforms import to_rgb_array
from siamtfa.tracking.base import BaseTracker

FACTORIES = {
    "csrt": "TrackerCSRT_create",
    "kcf": "TrackerKCF_create",
    "nanotrack": "TrackerNano_create",
}
KINDS = tuple(FACTORIES)
# NanoTrack's model files by version: (backbone, neck and head), as OpenCV publishes them
NANOTRACK_FILES = {
    "v1": ("nanotrack_backbone_sim.onnx", "nanotrack_head_sim.onnx"),
    "v2": ("nanotrack_backbone_sim_v2.onnx", "nanotrack_head_sim_v2.onnx"),
}


def _cv2():
    try:
        import cv2
    except ImportError as err:
        raise ImportError(
            "OpenCV's trackers need opencv-contrib-python-headless (and not plain "
            "opencv-python-headless: both install cv2)"
        ) from err
    return cv2


def nanotrack_models(model_dir: str | Path | None, version: str = "v2") -> tuple[Path, Path]:
    """The backbone and head ONNX files of NanoTrack ``version`` in ``model_dir``; a clear
    error names what is missing."""
    if version not in NANOTRACK_FILES:
        raise ValueError(
            f"unknown NanoTrack version {version!r}: use one of {list(NANOTRACK_FILES)}"
        )
    names = NANOTRACK_FILES[version]
    if model_dir is None:
        raise ValueError(
            f"nanotrack needs --model-dir: a folder holding {' and '.join(names)} "
            "(OpenCV's TrackerNano models)"
        )
    paths = tuple(Path(model_dir) / name for name in names)
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"NanoTrack {version} model not found: {path}")
    return paths


class OpenCVTracker(BaseTracker):
    """``OpenCVTracker("csrt" | "kcf")``, or ``OpenCVTracker("nanotrack", model_dir)``."""

    def __init__(self, kind: str, model_dir: str | Path | None = None, version: str = "v2") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown OpenCV tracker {kind!r}: use one of {KINDS}")
        cv2 = _cv2()
        factory = FACTORIES[kind]
        if not hasattr(cv2, factory):
            raise ImportError(f"cv2.{factory} missing: install opencv-contrib-python-headless")
        self.models: tuple[Path, ...] = ()  # NanoTrack's backbone and head files
        self._create = getattr(cv2, factory)
        if kind == "nanotrack":
            self.models = nanotrack_models(model_dir, version)
            params = cv2.TrackerNano_Params()
            params.backbone, params.neckhead = (str(p) for p in self.models)
            self._create = lambda: cv2.TrackerNano_create(params)
        self.kind = kind
        self.name = kind.upper() if kind != "nanotrack" else f"NanoTrack-{version}"
        self.box = np.zeros(4)

    def _bgr(self, image) -> np.ndarray:
        if isinstance(image, (str, Path, VideoFrame)):
            image = read_frame(image)  # a corrupt file raises an error naming it
        return np.ascontiguousarray(to_rgb_array(image)[..., ::-1])

    def init(self, image, box) -> np.ndarray:
        self.tracker = self._create()
        self.box = np.asarray(box, np.float64)
        x, y, w, h = (round(v) for v in self.box)
        self.tracker.init(self._bgr(image), (x, y, max(w, 1), max(h, 1)))
        return self.box.copy()

    def update(self, image) -> np.ndarray:
        ok, box = self.tracker.update(self._bgr(image))
        if ok:  # on failure keep the last box, as the toolkits expect a box per frame
            self.box = np.asarray(box, np.float64)
        return self.box.copy()
