"""Readers for tracking benchmarks in their official on-disk layouts.

Every reader is lazy (it lists frame paths and parses annotations; no frame is decoded) and
returns :class:`Sequence` objects with boxes ``[x, y, w, h]`` (0-based top-left, as the GOT-10k
toolkit; OTB/UAV files are 1-based and converted) and per-frame visibility.

Malformed annotations raise :class:`DatasetError` naming the file and line. The one documented
skip: UAV123/UAV20L rows of ``NaN`` (target absent) become NaN boxes with ``visible = False``,
as the official toolkit treats them.
"""

from __future__ import annotations

import configparser
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from siamtfa.data.transforms import to_rgb_array

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class VideoFrame:
    """Frame ``index`` (0-based) of a video file, decoded only when read."""

    video: Path
    index: int

    def __str__(self) -> str:
        return f"{self.video} (frame {self.index + 1})"


def read_frame(frame: Path | VideoFrame | str) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` of an image file or a video frame; errors name the frame."""
    if isinstance(frame, VideoFrame):
        import cv2

        cap = cv2.VideoCapture(str(frame.video))
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, frame.index)
            ok, bgr = cap.read()
        finally:
            cap.release()
        if not ok:
            raise DatasetError(f"{frame}: cannot decode frame")
        return np.ascontiguousarray(bgr[..., ::-1])
    try:
        with Image.open(frame) as im:
            return to_rgb_array(im)  # 16-bit frames scaled, not clipped to white
    except (OSError, ValueError) as err:
        raise DatasetError(f"{frame}: cannot read frame ({err})") from None


@dataclass
class Sequence:
    name: str
    frames: list[Path | VideoFrame]
    boxes: np.ndarray  # [N, 4] x, y, w, h (0-based); NaN rows where unknown
    visible: np.ndarray  # [N] bool
    cover: np.ndarray | None = None  # GOT-10k 0..8 per frame
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)


def parse_boxes(path: Path, allow_nan: bool = False, one_based: bool = False) -> np.ndarray:
    """``[N, 4]`` boxes from a text file of ``x,y,w,h`` lines (comma, tab or space separated)."""
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        if len(parts) != 4:
            raise DatasetError(f"{path}:{lineno}: expected 4 values x,y,w,h, got {line!r}")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: cannot parse numbers in {line!r}") from None
        if any(math.isnan(v) for v in vals):
            if not allow_nan:
                raise DatasetError(f"{path}:{lineno}: NaN box {line!r}")
            vals = [math.nan] * 4
        elif vals[2] < 0 or vals[3] < 0:
            raise DatasetError(f"{path}:{lineno}: negative box size in {line!r}")
        rows.append(vals)
    if not rows:
        raise DatasetError(f"{path}: no boxes")
    boxes = np.asarray(rows, np.float64)
    if one_based:
        boxes[:, :2] -= 1.0
    return boxes


def parse_flags(path: Path, count: int | None = None, sep: str | None = None) -> np.ndarray:
    """Integer labels, one per line (or separated by ``sep``)."""
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found")
    text = path.read_text()
    items = text.split(sep) if sep else text.split()
    try:
        values = np.asarray([int(float(v)) for v in items if v.strip()], np.int64)
    except ValueError as err:
        raise DatasetError(f"{path}: cannot parse labels ({err})") from None
    if count is not None and len(values) != count:
        raise DatasetError(f"{path}: {len(values)} labels for {count} frames")
    return values


def natural_key(path: Path) -> list[str | int]:
    """Sort key that orders numbers by value: ``2.jpg`` before ``10.jpg``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_frames(folder: Path, pattern: str | None = None) -> list[Path]:
    """The image files in ``folder`` in natural order (``1, 2, ..., 10``, not ``1, 10, 2``)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: frame folder not found")
    frames = sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES
            and (pattern is None or re.fullmatch(pattern, p.name))
        ),
        key=natural_key,
    )
    if not frames:
        raise DatasetError(f"{folder}: no frames")
    return frames


def _check_count(frames: list[Path], boxes: np.ndarray, gt: Path) -> None:
    if len(frames) != len(boxes):
        raise DatasetError(f"{gt}: {len(boxes)} boxes for {len(frames)} frames in {gt.parent}")


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: sequence list not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: lists no sequences")
    return names


def _read_meta(path: Path) -> dict[str, str]:
    """GOT-10k ``meta_info.ini`` (``key: value`` lines under ``[METAINFO]``); {} if absent."""
    if not path.is_file():
        return {}
    text = path.read_text(errors="replace")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text if text.lstrip().startswith("[") else "[METAINFO]\n" + text)
    except configparser.Error as err:
        raise DatasetError(f"{path}: {err}") from None
    return dict(parser.items(parser.sections()[0])) if parser.sections() else {}


def read_got10k(root: str | Path, split: str | None = None) -> list[Sequence]:
    """GOT-10k: ``root/<split>/list.txt`` (or ``root/list.txt``), per sequence ``%08d.jpg``,
    ``groundtruth.txt`` and, outside ``test``, ``absence.label``, ``cover.label``,
    ``cut_by_image.label``, ``meta_info.ini``. Test sequences carry only the first box."""
    folder = Path(root) / split if split else Path(root)
    sequences = []
    for name in _read_list(folder / "list.txt"):
        seq_dir = folder / name
        frames = list_frames(seq_dir)
        gt = seq_dir / "groundtruth.txt"
        boxes = parse_boxes(gt)
        meta = _read_meta(seq_dir / "meta_info.ini")
        if len(boxes) == 1 and len(frames) > 1 and not (seq_dir / "absence.label").exists():
            # test split: first box only
            full = np.full((len(frames), 4), np.nan)
            full[0] = boxes[0]
            visible = np.zeros(len(frames), bool)
            visible[0] = True
            sequences.append(Sequence(name, frames, full, visible, None, meta))
            continue
        _check_count(frames, boxes, gt)
        visible = np.ones(len(frames), bool)
        cover = None
        if (seq_dir / "absence.label").exists():
            visible = parse_flags(seq_dir / "absence.label", len(frames)) == 0
        if (seq_dir / "cover.label").exists():
            cover = parse_flags(seq_dir / "cover.label", len(frames))
        sequences.append(Sequence(name, frames, boxes, visible, cover, meta))
    return sequences


def read_lasot(root: str | Path, classes: list[str] | None = None) -> list[Sequence]:
    """LaSOT: ``<class>/<class>-<n>/img/%08d.jpg``, ``groundtruth.txt`` (1-based),
    ``full_occlusion.txt`` and ``out_of_view.txt`` (comma-separated 0/1 per frame)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: LaSOT root not found")
    sequences = []
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if classes and cls_dir.name not in classes:
            continue
        for seq_dir in sorted(p for p in cls_dir.iterdir() if p.is_dir()):
            frames = list_frames(seq_dir / "img")
            gt = seq_dir / "groundtruth.txt"
            boxes = parse_boxes(gt, one_based=True)
            _check_count(frames, boxes, gt)
            occ = parse_flags(seq_dir / "full_occlusion.txt", len(frames), ",")
            oov = parse_flags(seq_dir / "out_of_view.txt", len(frames), ",")
            sequences.append(Sequence(seq_dir.name, frames, boxes, (occ == 0) & (oov == 0)))
    return sequences


def read_otb(root: str | Path) -> list[Sequence]:
    """OTB-100: ``<Seq>/img/%04d.jpg`` and ``groundtruth_rect*.txt`` (1-based; comma, tab or
    space separated). A folder with two ground-truth files (Jogging, Skating2) gives two
    sequences, ``<Seq>.1`` and ``<Seq>.2``. Sequences whose boxes cover a frame sub-range
    (e.g. David, from frame 300) need that range: such a count mismatch raises."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: OTB root not found")
    sequences = []
    for seq_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        gts = sorted(seq_dir.glob("groundtruth_rect*.txt"))
        if not gts:
            continue
        frames = list_frames(seq_dir / "img")
        for gt in gts:
            boxes = parse_boxes(gt, one_based=True)
            _check_count(frames, boxes, gt)
            suffix = gt.name[len("groundtruth_rect") : -len(".txt")]
            name = seq_dir.name + (suffix if suffix else "")
            sequences.append(Sequence(name, frames, boxes, np.ones(len(frames), bool)))
    return sequences


def read_uav(
    root: str | Path, subset: str = "UAV20L", ranges: dict[str, tuple[str, int, int]] | None = None
) -> list[Sequence]:
    """UAV123 / UAV20L: ``anno/<subset>/<seq>.txt`` (1-based; ``NaN,NaN,NaN,NaN`` rows when the
    target is absent) and frames ``data_seq/UAV123/<folder>/%06d.jpg``.

    A sequence uses its own folder whole when the frame count matches; UAV123 sequences that are
    parts of a shared folder (``bird1_2`` ...) need ``ranges[seq] = (folder, first, last)``
    (1-based, inclusive) from the benchmark's configuration; without it a clear error is raised.
    """
    root = Path(root)
    anno_dir = root / "anno" / subset
    if not anno_dir.is_dir():
        raise DatasetError(f"{anno_dir}: annotation folder not found")
    sequences = []
    for gt in sorted(anno_dir.glob("*.txt")):
        name = gt.stem
        boxes = parse_boxes(gt, allow_nan=True, one_based=True)
        if ranges and name in ranges:
            folder, first, last = ranges[name]
            frames = list_frames(root / "data_seq" / "UAV123" / folder)[first - 1 : last]
        else:
            folder = name if subset == "UAV123" else name.lower()
            seq_dir = root / "data_seq" / "UAV123" / folder
            if not seq_dir.is_dir():
                base = re.sub(r"_\d+$", "", name)
                raise DatasetError(
                    f"{gt}: frames folder {seq_dir} not found"
                    + (
                        f"; {name} is part of folder {base}: pass its frame range"
                        if base != name
                        else ""
                    )
                )
            frames = list_frames(seq_dir)
        _check_count(frames, boxes, gt)
        visible = ~np.isnan(boxes).any(axis=1)
        if (~visible).any():
            log.info("%s: %d absent (NaN) frames", gt, int((~visible).sum()))
        sequences.append(Sequence(name, frames, boxes, visible))
    return sequences


def read_folder(path: str | Path, one_based: bool = False) -> list[Sequence]:
    """A plain sequence folder (frames + ``groundtruth.txt``), or a folder of such folders with
    an optional ``list.txt`` (as ``../shared/data``)."""
    path = Path(path)
    if (path / "groundtruth.txt").is_file():
        frames = list_frames(path)
        boxes = parse_boxes(path / "groundtruth.txt", allow_nan=True, one_based=one_based)
        _check_count(frames, boxes, path / "groundtruth.txt")
        return [Sequence(path.name, frames, boxes, ~np.isnan(boxes).any(axis=1))]
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder")
    names = (
        _read_list(path / "list.txt")
        if (path / "list.txt").is_file()
        else sorted(p.name for p in path.iterdir() if (p / "groundtruth.txt").is_file())
    )
    if not names:
        raise DatasetError(f"{path}: no sequence folders with groundtruth.txt")
    return [s for n in names for s in read_folder(path / n, one_based)]


def read_video(video: str | Path, box_file: str | Path | None = None) -> list[Sequence]:
    """A video file with a box file (``x,y,w,h`` per frame, 0-based; default
    ``<video>.txt``). Frames are decoded lazily, one at a time."""
    import cv2

    video = Path(video)
    if not video.is_file():
        raise DatasetError(f"{video}: video not found")
    gt = Path(box_file) if box_file else video.with_suffix(".txt")
    boxes = parse_boxes(gt, allow_nan=True)
    cap = cv2.VideoCapture(str(video))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    if count <= 0:
        raise DatasetError(f"{video}: cannot open video or count its frames")
    frames = [VideoFrame(video, i) for i in range(count)]
    _check_count(frames, boxes, gt)
    return [Sequence(video.stem, frames, boxes, ~np.isnan(boxes).any(axis=1))]


READERS = {
    "got10k": read_got10k,
    "synthetic": read_got10k,  # make-synthetic writes the GOT-10k layout
    "lasot": read_lasot,
    "otb": read_otb,
    "uav123": lambda root: read_uav(root, "UAV123"),
    "uav20l": lambda root: read_uav(root, "UAV20L"),
    "folder": read_folder,
    "video": read_video,
}


DATASET_KINDS = tuple(READERS)  # for --data, --val, --tune, eval --dataset and their errors


def read_dataset(kind: str, root: str | Path) -> list[Sequence]:
    """The sequences of a ``kind`` (one of ``DATASET_KINDS``) dataset at ``root``."""
    if kind not in READERS:
        raise DatasetError(f"unknown dataset kind {kind!r}: use one of {', '.join(READERS)}")
    sequences = READERS[kind](root)
    if not sequences:
        raise DatasetError(f"{root}: no {kind} sequences found")
    return sequences
