"""Dataset readers on small fixtures in each official layout, and on malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamtfa.data.datasets import (
    DatasetError,
    VideoFrame,
    read_folder,
    read_frame,
    read_got10k,
    read_lasot,
    read_otb,
    read_uav,
    read_video,
)


def frames(folder: Path, n: int, fmt: str = "{:08d}.jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.new("RGB", (32, 24), (i * 10 % 255, 0, 0)).save(folder / fmt.format(i))


def test_got10k_train_val_and_test(tmp_path: Path) -> None:
    split = tmp_path / "val"
    frames(split / "GOT-10k_Val_000001", 3)
    (split / "list.txt").write_text("GOT-10k_Val_000001\n")
    seq_dir = split / "GOT-10k_Val_000001"
    (seq_dir / "groundtruth.txt").write_text("1,2,3,4\n2,3,4,5\n0,0,0,0\n")
    (seq_dir / "absence.label").write_text("0\n0\n1\n")
    (seq_dir / "cover.label").write_text("8\n5\n0\n")
    (seq_dir / "meta_info.ini").write_text("[METAINFO]\nresolution: (32, 24)\nobject_class: cat\n")
    (seq) = read_got10k(tmp_path, "val")[0]
    assert seq.name == "GOT-10k_Val_000001" and len(seq) == 3
    np.testing.assert_array_equal(seq.boxes[1], [2, 3, 4, 5])
    assert seq.visible.tolist() == [True, True, False]
    assert seq.cover.tolist() == [8, 5, 0]
    assert seq.meta["resolution"] == "(32, 24)" and seq.meta["object_class"] == "cat"
    test = tmp_path / "test"
    frames(test / "GOT-10k_Test_000001", 4)
    (test / "list.txt").write_text("GOT-10k_Test_000001\n")
    (test / "GOT-10k_Test_000001" / "groundtruth.txt").write_text("5,6,7,8\n")
    seq = read_got10k(tmp_path, "test")[0]
    assert len(seq) == 4 and seq.visible.tolist() == [True, False, False, False]
    assert np.isnan(seq.boxes[1:]).all()


def test_lasot(tmp_path: Path) -> None:
    seq_dir = tmp_path / "cat" / "cat-1"
    frames(seq_dir / "img", 3)
    (seq_dir / "groundtruth.txt").write_text("1,1,10,10\n2,2,10,10\n3,3,10,10\n")
    (seq_dir / "full_occlusion.txt").write_text("0,1,0")
    (seq_dir / "out_of_view.txt").write_text("0,0,1")
    (seq,) = read_lasot(tmp_path)
    assert seq.name == "cat-1"
    np.testing.assert_array_equal(seq.boxes[0], [0, 0, 10, 10])  # 1-based -> 0-based
    assert seq.visible.tolist() == [True, False, False]


@pytest.mark.parametrize("sep", [",", "\t", " ", ", "])
def test_otb_separators_and_two_targets(tmp_path: Path, sep: str) -> None:
    frames(tmp_path / "Jogging" / "img", 2, "{:04d}.jpg")
    rows = [[11, 21, 31, 41], [12, 22, 32, 42]]
    text = "\n".join(sep.join(str(v) for v in r) for r in rows) + "\n"
    (tmp_path / "Jogging" / "groundtruth_rect.1.txt").write_text(text)
    (tmp_path / "Jogging" / "groundtruth_rect.2.txt").write_text(text)
    seqs = read_otb(tmp_path)
    assert [s.name for s in seqs] == ["Jogging.1", "Jogging.2"]
    np.testing.assert_array_equal(seqs[0].boxes, np.array(rows, float) - [1, 1, 0, 0])


def test_uav20l_nan_rows_and_uav123_ranges(tmp_path: Path) -> None:
    frames(tmp_path / "data_seq" / "UAV123" / "bike1", 4, "{:06d}.jpg")
    (tmp_path / "anno" / "UAV20L").mkdir(parents=True)
    (tmp_path / "anno" / "UAV20L" / "bike1.txt").write_text(
        "1,1,5,5\nNaN,NaN,NaN,NaN\n2,2,5,5\n3,3,5,5\n"
    )
    (seq,) = read_uav(tmp_path, "UAV20L")
    assert seq.visible.tolist() == [True, False, True, True]
    assert np.isnan(seq.boxes[1]).all()
    (tmp_path / "anno" / "UAV123").mkdir(parents=True)
    (tmp_path / "anno" / "UAV123" / "bike1_2.txt").write_text("1,1,5,5\n2,2,5,5\n")
    with pytest.raises(DatasetError, match="part of folder bike1: pass its frame range"):
        read_uav(tmp_path, "UAV123")
    (seq,) = read_uav(tmp_path, "UAV123", ranges={"bike1_2": ("bike1", 2, 3)})
    assert [p.name for p in seq.frames] == ["000002.jpg", "000003.jpg"]


def test_folder_of_sequences(tmp_path: Path) -> None:
    for name in ("a", "b"):
        frames(tmp_path / name, 2)
        (tmp_path / name / "groundtruth.txt").write_text("1,2,3,4\n1,2,3,4\n")
    (tmp_path / "list.txt").write_text("b\na\n")
    assert [s.name for s in read_folder(tmp_path)] == ["b", "a"]


@pytest.mark.parametrize(
    ("gt", "n_frames", "message"),
    [
        ("1,2,3,4\n1,2,3,4\n", 3, r"groundtruth\.txt: 2 boxes for 3 frames"),
        ("1,2,3,4\n1,2,3,4\n1,2,3,4\n1,2,3,4\n", 3, "4 boxes for 3 frames"),
        ("1,2,3,4\n1,2,x,4\n1,2,3,4\n", 3, r"groundtruth\.txt:2: cannot parse"),
        ("1,2,3,4\n1,2,3\n1,2,3,4\n", 3, r"groundtruth\.txt:2: expected 4 values"),
        ("1,2,3,4\n1,2,-3,4\n1,2,3,4\n", 3, r"groundtruth\.txt:2: negative box size"),
        ("1,2,3,4\nnan,nan,nan,nan\n1,2,3,4\n", 3, r"groundtruth\.txt:2: NaN box"),
    ],
)
def test_malformed_got10k(tmp_path: Path, gt: str, n_frames: int, message: str) -> None:
    frames(tmp_path / "s", n_frames)
    (tmp_path / "list.txt").write_text("s\n")
    (tmp_path / "s" / "groundtruth.txt").write_text(gt)
    (tmp_path / "s" / "absence.label").write_text("0\n" * n_frames)
    with pytest.raises(DatasetError, match=message):
        read_got10k(tmp_path)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"list\.txt: sequence list not found"):
        read_got10k(tmp_path)
    (tmp_path / "list.txt").write_text("gone\n")
    with pytest.raises(DatasetError, match="gone: frame folder not found"):
        read_got10k(tmp_path)
    frames(tmp_path / "gone", 2)
    (tmp_path / "gone" / "groundtruth.txt").write_text("1,2,3,4\n1,2,3,4\n")
    (tmp_path / "gone" / "absence.label").write_text("0\n")
    with pytest.raises(DatasetError, match=r"absence\.label: 1 labels for 2 frames"):
        read_got10k(tmp_path)


def test_video_file_with_box_file(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(5):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, : 10 * (i + 1)] = 200  # a bright band that grows frame by frame
        writer.write(frame)
    writer.release()
    (tmp_path / "clip.txt").write_text("1,2,3,4\n" * 5)
    (seq,) = read_video(video)
    assert seq.name == "clip" and len(seq) == 5
    third = read_frame(seq.frames[2])
    assert third.shape == (48, 64, 3)
    assert third[:, :25].mean() > 150 and third[:, 35:].mean() < 50  # frame 3: band 30 px
    (tmp_path / "clip.txt").write_text("1,2,3,4\n" * 4)
    with pytest.raises(DatasetError, match=r"clip\.txt: 4 boxes for 5 frames"):
        read_video(video)
    with pytest.raises(DatasetError, match="frame 9"):
        read_frame(VideoFrame(video, 8))
