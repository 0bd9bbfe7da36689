"""Synthetic videos (determinism, pixel-true boxes, occlusion labels) and the clip sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamtfa.config import preset
from siamtfa.data.datasets import DatasetError, Sequence, read_got10k
from siamtfa.data.sampling import ClipDataset, Source, clip_starts, collate_clips, valid_frames
from siamtfa.data.synthetic import make_synthetic, render_sequence


def test_synthetic_is_deterministic() -> None:
    a, b = render_sequence(3, 1, 12), render_sequence(3, 1, 12)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    c = render_sequence(3, 2, 12)
    assert not np.array_equal(a.frames[0], c.frames[0])


@pytest.mark.parametrize("index", range(6))
def test_boxes_match_the_drawn_target(index: int) -> None:
    seq = render_sequence(7, index, 30)
    checked = 0
    for t in range(30):
        if seq.cover[t] < 8 or seq.cut_by_image[t]:
            continue
        ys, xs = np.nonzero(seq.visible_masks[t])
        x, y, w, h = seq.boxes[t]
        # the drawn pixels span exactly the box
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        checked += 1
    assert checked > 0


def test_occlusion_labels_are_consistent() -> None:
    occluded = 0
    for index in range(12):
        seq = render_sequence(11, index, 60)
        assert set(np.unique(seq.cover)) <= set(range(9))
        np.testing.assert_array_equal(seq.absence, (seq.cover == 0).astype(int))
        for t in np.flatnonzero(seq.cover < 8):
            occluded += 1
            assert seq.visible_masks[t].sum() < 0.875 * seq.visible_masks[t].size
        for t in np.flatnonzero(seq.cover == 8):
            assert seq.visible_masks[t].any()
    assert occluded > 0, "no occlusion in 12 sequences: the generator lost its occluders"


def test_written_layout_reads_back(tmp_path: Path) -> None:
    make_synthetic(tmp_path, 2, 8, seed=5, progress=False)
    seqs = read_got10k(tmp_path)
    ref = render_sequence(5, 1, 8)
    assert [s.name for s in seqs] == ["SYN-5-000000", "SYN-5-000001"]
    np.testing.assert_allclose(seqs[1].boxes, ref.boxes, atol=1e-4)
    np.testing.assert_array_equal(seqs[1].visible, ref.absence == 0)
    np.testing.assert_array_equal(seqs[1].cover, ref.cover)
    assert seqs[1].meta["resolution"] == "(320, 240)"


def test_parallel_workers_write_the_same_files(tmp_path: Path) -> None:
    make_synthetic(tmp_path / "one", 3, 4, seed=6, size=(96, 64), progress=False)
    (tmp_path / "two" / "SYN-6-000001").mkdir(parents=True)  # an unfinished folder is redone
    make_synthetic(tmp_path / "two", 3, 4, seed=6, size=(96, 64), progress=False, workers=2)
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.*"))
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.*"))
    assert one == two and len(one) == 3 * (4 + 5) + 2  # + list.txt, synthetic.json
    for rel in one:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    for i, seq in enumerate(read_got10k(tmp_path / "two")):  # sequence i is render_sequence(6, i)
        np.testing.assert_allclose(seq.boxes, render_sequence(6, i, 4, (96, 64)).boxes, atol=1e-4)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        make_synthetic(tmp_path / "x", 1, 2, seed=0, progress=False, workers=0)


# --------------------------------------------------------------------------- sampler


def fake_sequence(tmp_path: Path, boxes: np.ndarray, visible: np.ndarray) -> Sequence:
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(len(boxes)):
        p = folder / f"{i + 1:08d}.jpg"
        Image.new("RGB", (200, 100), (i * 20 % 255, 50, 50)).save(p)
        paths.append(p)
    return Sequence("seq", paths, boxes, visible)


def test_filters_and_clip_starts(tmp_path: Path) -> None:
    boxes = np.tile([[50.0, 20, 40, 40]], (10, 1))
    boxes[3] = [50, 20, 5, 40]  # side < 10: filtered
    boxes[6] = [0, 0, 199, 99]  # area fraction > 0.75: filtered
    visible = np.ones(10, bool)
    visible[8] = False
    seq = fake_sequence(tmp_path, boxes, visible)
    cfg = preset("lite").data
    valid = valid_frames(seq, cfg)
    assert valid.tolist() == [True, True, True, False, True, True, False, True, False, True]
    # clips of 2: every frame valid or absent, at least one valid
    assert clip_starts(valid, visible, 2).tolist() == [0, 1, 4, 7, 8]


def test_a_template_box_lost_in_the_resize_draws_the_sample_again(tmp_path: Path) -> None:
    # frame 0's box passes the filters but only 1 of its 40 columns is inside the 200-wide
    # image; at scale 0.5 that column is half a pixel: the box is empty after resizing
    boxes = np.tile([[50.0, 20, 40, 40]], (6, 1))
    boxes[0] = [199, 20, 40, 40]
    seq = fake_sequence(tmp_path, boxes, np.ones(6, bool))
    cfg = preset("lite")
    cfg.input.max_size, cfg.input.min_size = 100, 50
    assert valid_frames(seq, cfg.data)[0]
    ds = ClipDataset([Source("fake", [seq])], 1, cfg.data, cfg.input, seed=3)
    redrawn = 0
    for i in range(40):
        sample = ds[i]
        first_choice = ds.choose(np.random.default_rng([3, i]))  # the sample's own draw
        if first_choice[1] == 0:
            redrawn += 1
            assert sample["frames"][0] != 0
        else:  # untouched: the sample an unfixed sampler gave
            assert sample["frames"].tolist() == [first_choice[1], *first_choice[2]]
        box = sample["template_box"]
        assert box[2] - box[0] >= 1 and box[3] - box[1] >= 1
    assert redrawn > 0
    boxes[:] = [199, 20, 40, 40]  # nothing can be drawn: a clear error, not a hang
    ds = ClipDataset([Source("fake", [seq])], 1, cfg.data, cfg.input, seed=3)
    last = r"\(last .*seq.0000000[1-6].jpg\)"
    with pytest.raises(DatasetError, match=r"sample 0: .* in 10 draws " + last):
        ds[0]


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    make_synthetic(out, 3, 30, seed=2, progress=False)
    return out


def test_sampler_clips_are_adjacent_sorted_and_reproducible(synthetic_dir: Path) -> None:
    cfg = preset("lite")
    seqs = read_got10k(synthetic_dir)
    ds = ClipDataset([Source("syn", seqs)], 3, cfg.data, cfg.input, seed=4)
    by_name = {s.name: s for s in seqs}
    for i in range(12):
        sample = ds[i]
        template, *clip = sample["frames"].tolist()
        assert clip == list(range(clip[0], clip[0] + 3))
        seq = by_name[sample["sequence"]]
        valid = valid_frames(seq, cfg.data)
        assert valid[template]
        assert all(valid[t] or not seq.visible[t] for t in clip)
        assert sample["search"].shape == (3, 3, 480, 640)
        b = sample["search_boxes"][sample["present"]]
        assert torch.all(b[:, 2:] > b[:, :2])
    again = ClipDataset([Source("syn", seqs)], 3, cfg.data, cfg.input, seed=4)
    for i in (0, 5):
        a, b = ds[i], again[i]
        assert torch.equal(a["search"], b["search"]) and torch.equal(a["frames"], b["frames"])
    other = ClipDataset([Source("syn", seqs)], 3, cfg.data, cfg.input, seed=5)
    assert not all(torch.equal(ds[i]["search"], other[i]["search"]) for i in range(4))
    batch = collate_clips([ds[0], ds[1]])
    assert batch["search"].shape[0] == 6 and batch["template"].shape[0] == 2


def test_sampler_boxes_follow_flip_and_scale(synthetic_dir: Path) -> None:
    cfg = preset("lite")
    cfg.data.flip_prob = 1.0
    cfg.data.scale_jitter = 0.0
    seqs = read_got10k(synthetic_dir)
    ds = ClipDataset([Source("syn", seqs)], 1, cfg.data, cfg.input, seed=0)
    sample = ds[0]
    seq = next(s for s in seqs if s.name == sample["sequence"])
    t = int(sample["frames"][1])
    x, y, w, h = seq.boxes[t] * 2.0  # 320x240 fits 640x480 at scale 2
    expected = torch.tensor([640 - (x + w), y, 640 - x, y + h], dtype=torch.float32)
    expected = torch.maximum(
        torch.minimum(expected, torch.tensor([640.0, 480, 640, 480])), torch.zeros(4)
    )
    torch.testing.assert_close(sample["search_boxes"][0], expected, atol=1e-3, rtol=0)


def test_search_regions_show_the_template_as_the_tracker_does(synthetic_dir: Path) -> None:
    from siamtfa.data import transforms as T

    cfg = preset("lite")
    cfg.input.max_size, cfg.input.min_size = 320, 240  # the 320x240 frames at scale 1
    cfg.data.search_target_size = 100.0  # above every target here: each is enlarged to it
    cfg.data.max_upsample = 10.0
    seqs = read_got10k(synthetic_dir)
    ds = ClipDataset([Source("syn", seqs)], 2, cfg.data, cfg.input, seed=0, augment=False)
    for i in range(3):
        sample = ds[i]
        seq = next(s for s in seqs if s.name == sample["sequence"])
        t = int(sample["frames"][0])
        x, y, w, h = seq.boxes[t]
        scale = 100.0 / np.sqrt(w * h)  # by hand: the target measures 100 input pixels
        x0 = np.clip(x + w / 2 - 160 / scale, 0, 320 - 320 / scale)  # centred, inside
        y0 = np.clip(y + h / 2 - 120 / scale, 0, 240 - 240 / scale)
        box = torch.tensor([x - x0, y - y0, x + w - x0, y + h - y0], dtype=torch.float32) * scale
        torch.testing.assert_close(sample["template_box"], box, atol=1e-3, rtol=0)
        frame = np.asarray(Image.open(seq.frames[t]).convert("RGB"))
        crop = T.crop_resize(frame, T.Region(scale, x0, y0), cfg.input)
        torch.testing.assert_close(sample["template"][:, :240], T.normalize(crop, cfg.input))
        # without augmentation, the clip is seen around its first box, unjittered
        b = sample["search_boxes"][0]
        assert float(((b[2] - b[0]) * (b[3] - b[1])).sqrt()) == pytest.approx(100.0, abs=1e-2)


def test_search_regions_jitter_the_last_answer(tmp_path: Path) -> None:
    from siamtfa.data.datasets import read_folder

    _track_folder(tmp_path, "still", ["300,220,40,40"] * 4, (640, 480))
    cfg = preset("lite")
    cfg.input.max_size, cfg.input.min_size = 320, 240  # the frames at scale 0.5
    cfg.data.min_area_fraction = 0.001
    cfg.data.search_target_size = 40.0
    cfg.data.flip_prob = 0.0
    seqs = read_folder(tmp_path)
    ds = ClipDataset([Source("still", seqs)], 3, cfg.data, cfg.input, seed=0)
    sides, shifts = [], []
    for i in range(40):
        sample = ds[i]
        assert float(((sample["template_box"][2:] - sample["template_box"][:2]).prod()).sqrt()) == (
            pytest.approx(40.0, abs=1e-3)
        )
        b = sample["search_boxes"]
        side = ((b[:, 2:] - b[:, :2]).prod(1)).sqrt()
        assert torch.allclose(side, side[0])  # one region for the clip
        sides.append(float(side[0]))
        shifts.append(((b[0, :2] + b[0, 2:]) / 2 - torch.tensor([160.0, 120.0])) / side[0])
    # the answer's size off by 2**u, u in [-0.5, 0.5]: the target measures 40 / 2**u pixels
    assert 40 / 2**0.5 - 1e-3 <= min(sides) < 36 and 44 < max(sides) <= 40 * 2**0.5 + 1e-3
    # the centre off by up to half the answer's size, each way: in target sizes, times 2**u
    shift = torch.stack(shifts).abs()
    assert shift.max() <= 0.5 * 2**0.5 + 1e-3 and shift.max() > 0.3


def test_search_regions_skip_a_clips_absent_first_frame(tmp_path: Path) -> None:
    from siamtfa.data.datasets import read_folder

    boxes = ["300,220,40,40", "NaN,NaN,NaN,NaN", "310,220,40,40"]  # UAV123's absent row
    _track_folder(tmp_path, "gap", boxes, (640, 480))
    cfg = preset("lite")
    cfg.input.max_size, cfg.input.min_size = 320, 240
    cfg.data.min_area_fraction = 0.001
    cfg.data.search_target_size = 40.0
    ds = ClipDataset([Source("gap", read_folder(tmp_path))], 2, cfg.data, cfg.input, augment=False)
    samples = [ds[i] for i in range(8)]
    gapped = [s for s in samples if s["frames"][1:].tolist() == [1, 2]]
    assert gapped  # the clip that starts on the absent frame was drawn
    for sample in gapped:  # seen around frame 2's box, the clip's first seen target
        assert sample["present"].tolist() == [False, True]
        b = sample["search_boxes"][1]
        assert float(((b[2:] - b[:2]).prod()).sqrt()) == pytest.approx(40.0, abs=1e-3)
        assert ((b[:2] + b[2:]) / 2).tolist() == pytest.approx([160.0, 120.0], abs=1e-3)


def test_real_texture_bank(tmp_path: Path) -> None:
    from PIL import Image

    from siamtfa.data.datasets import read_folder
    from siamtfa.data.synthetic import TextureBank

    rng = np.random.default_rng(0)
    folder = tmp_path / "real" / "seq"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(
            folder / f"{i:08d}.png"
        )
    (folder / "groundtruth.txt").write_text("30,20,40,30\n" * 3)
    bank = TextureBank(read_folder(tmp_path / "real"))
    real = [render_sequence(3, i, 8, textures=bank) for i in range(6)]
    plain = [render_sequence(3, i, 8) for i in range(6)]
    assert any(not np.array_equal(a.frames[0], b.frames[0]) for a, b in zip(real, plain))
    again = render_sequence(3, 2, 8, textures=bank)
    assert np.array_equal(again.frames[5], real[2].frames[5])
    for seq in real:  # the boxes still match the drawn target exactly
        for t in np.flatnonzero((seq.cover == 8) & (seq.cut_by_image == 0)):
            ys, xs = np.nonzero(seq.visible_masks[t])
            x, y, w, h = seq.boxes[t]
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)


def test_temporal_stress_means_more_occlusion() -> None:
    normal = [render_sequence(7, i, 60) for i in range(6)]
    stress = [render_sequence(7, i, 60, temporal_stress=True) for i in range(6)]
    assert sum((s.cover < 8).sum() for s in stress) > 1.3 * sum((s.cover < 8).sum() for s in normal)
    assert sum(s.absence.sum() for s in stress) > sum(s.absence.sum() for s in normal)


def test_target_size_bounds_the_initial_box(tmp_path: Path) -> None:
    # the first frame's size is sqrt(W*H) * U(min, max), up to the first step of the scale walk
    # (well under 3 %) and rounding to whole pixels
    frame = np.sqrt(640 * 480)
    for lo, hi in ((0.04, 0.05), (0.12, 0.3)):
        for i in range(6):
            seq = render_sequence(11, i, 2, (640, 480), target_size=(lo, hi))
            side = np.sqrt(seq.boxes[0, 2] * seq.boxes[0, 3])
            assert 0.97 * lo * frame - 1 <= side <= 1.03 * hi * frame + 1, (lo, hi, side)
    with pytest.raises(ValueError, match="target_size"):
        make_synthetic(tmp_path, 1, 2, seed=0, target_size=(0.3, 0.1), progress=False)


def _centre_path(seq) -> np.ndarray:
    centre = seq.boxes[:, :2] + seq.boxes[:, 2:] / 2
    return centre - centre[0]


@pytest.mark.slow
def test_motion_scales_the_target_path(tmp_path: Path) -> None:
    # the walk is linear in its step: a factor k moves the centre k times as far from its start
    # (up to rounding the box to whole pixels, +-0.5 px per centre); sizes are unchanged.
    # Paths short enough (20 frames) not to reach the border, where the centre is clamped.
    factors = []
    for i in range(4):
        base = render_sequence(13, i, 20, (640, 480))
        fast = render_sequence(13, i, 20, (640, 480), motion=(3.0, 3.0))
        ranged = render_sequence(13, i, 20, (640, 480), motion=(1.0, 2.0))
        path = _centre_path(base)
        assert np.abs(path).max() > 10  # moves enough to tell
        np.testing.assert_allclose(_centre_path(fast), 3 * path, atol=4.0)
        np.testing.assert_allclose(fast.boxes[:, 2:], base.boxes[:, 2:], atol=1.0)
        # (1, 2): one factor per sequence, within the range
        k = float(np.sum(_centre_path(ranged) * path) / np.sum(path * path))
        assert 0.95 < k < 2.05, k
        np.testing.assert_allclose(_centre_path(ranged), k * path, atol=4.0)
        factors.append(k)
    assert max(factors) - min(factors) > 0.1
    with pytest.raises(ValueError, match="motion"):
        make_synthetic(tmp_path, 1, 2, seed=0, motion=(2.0, 1.0), progress=False)


def test_appearance_change_keeps_the_geometry_and_changes_the_look(tmp_path: Path) -> None:
    # its own random stream: boxes, labels and everything but the target's pixels are the same
    n = 40
    for i in range(3):
        base = render_sequence(17, i, n)
        changed = render_sequence(17, i, n, appearance_change=3.0)
        np.testing.assert_array_equal(changed.boxes, base.boxes)
        np.testing.assert_array_equal(changed.cover, base.cover)
        for t in (0, n - 1):
            outside = ~changed.visible_masks[t]
            np.testing.assert_array_equal(changed.frames[t][outside], base.frames[t][outside])
        # the first frame (the template) looks the same; the target's look drifts after it
        assert np.array_equal(changed.frames[0], base.frames[0])
        inside = base.visible_masks[n - 1]
        if inside.sum() < 50:
            continue
        late = np.abs(changed.frames[n - 1][inside].astype(float) - base.frames[n - 1][inside])
        assert late.mean() > 10, late.mean()
    with pytest.raises(ValueError, match="appearance_change"):
        make_synthetic(tmp_path, 1, 2, seed=0, appearance_change=-1.0, progress=False)


def test_rotated_texture_turns_about_its_centre() -> None:
    from siamtfa.data.synthetic import _rotated

    tex = np.zeros((33, 33, 3), np.float32)
    tex[16, 20:30] = 1.0  # a bar pointing right from the centre
    turned = _rotated(tex, 90.0)  # counter-clockwise, as PIL turns: the bar points up
    ys, xs = np.nonzero(turned[..., 0] > 0.5)
    assert set(xs) == {16} and ys.min() >= 3 and ys.max() <= 12, (xs, ys)
    np.testing.assert_allclose(_rotated(tex, 0.0), tex, atol=1 / 255)


def _track_folder(root: Path, name: str, boxes: list[str], size: tuple[int, int]) -> None:
    from PIL import Image

    folder = root / name
    folder.mkdir(parents=True)
    for i in range(len(boxes)):
        Image.new("RGB", size).save(folder / f"{i + 1:08d}.png")
    (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")


def test_trajectory_bank_replays_real_paths(tmp_path: Path) -> None:
    from siamtfa.data.datasets import read_folder
    from siamtfa.data.synthetic import TrajectoryBank

    # a 4-box track (all widths differ, so each output box names its frame) in a 200x100
    # frame; a NaN box splits the second sequence into a 1-box run (dropped) and a 2-box run
    track = np.array([[10, 20, 20, 10], [30, 25, 22, 11], [60, 30, 24, 12], [100, 40, 30, 15.0]])
    _track_folder(tmp_path, "a", [",".join(map(str, b)) for b in track], (200, 100))
    split = ["5,5,20,20", "nan,nan,nan,nan", "5,5,20,20", "9,5,20,20"]
    _track_folder(tmp_path, "b", split, (200, 100))
    bank = TrajectoryBank(read_folder(tmp_path))
    assert [len(b) for b, _ in bank.tracks] == [4, 2]
    scale = 2.0  # fits 200x100 into 400x300: the smaller of 400/200 and 300/100
    seen = set()
    for seed in range(40):
        path = bank.path(np.random.default_rng(seed), 9, (400, 300))
        assert path.shape == (9, 4)
        if np.allclose(path[:, 2], path[:, 3]):
            continue  # the square track
        idx = [int(np.flatnonzero(np.isclose(track[:, 2] * scale, w))[0]) for w in path[:, 2]]
        # a walk that moves one frame at a time and turns back only at the track's ends
        steps = np.diff(idx)
        assert set(steps) <= {-1, 1}
        for t in np.flatnonzero(steps[1:] != steps[:-1]):
            assert idx[t + 1] in (0, 3)
        b = track[idx].copy()
        mirrored = path[1, 0] - path[0, 0] != pytest.approx(scale * (b[1, 0] - b[0, 0]))
        if mirrored:
            b[:, 0] = 200 - b[:, 0] - b[:, 2]
        c = b[:, :2] + b[:, 2:] / 2
        np.testing.assert_allclose(path[:, 2:], scale * b[:, 2:])
        np.testing.assert_allclose(
            path[:, :2] + path[:, 2:] / 2, scale * (c - c.mean(0)) + [200, 150]
        )
        seen.add((idx[0], int(steps[0]), bool(mirrored)))
    # it starts anywhere, goes either way, mirrored or not
    assert len({k for k, _, _ in seen}) == 4 and len({(d, m) for _, d, m in seen}) == 4
    # a tiny target is enlarged to min_side: the scale grows, the motion in sizes stays
    small = bank.path(np.random.default_rng(1), 5, (400, 300), min_side=80.0)
    assert np.sqrt(small[:, 2] * small[:, 3]).min() == pytest.approx(80.0)
    _track_folder(tmp_path, "c", ["1,1,4,4"], (20, 20))
    with pytest.raises(ValueError, match="2 or more"):
        TrajectoryBank(read_folder(tmp_path / "c"))


def test_targets_follow_the_trajectories(tmp_path: Path) -> None:
    from siamtfa.data.datasets import read_folder
    from siamtfa.data.synthetic import TrajectoryBank

    track = [f"{20 + 7 * i},{30 + 3 * i},{30 + i},{20 + i}" for i in range(12)]
    _track_folder(tmp_path / "real", "a", track, (320, 240))
    bank = TrajectoryBank(read_folder(tmp_path / "real"))
    for i in range(3):
        seq = render_sequence(5, i, 30, (320, 240), trajectories=bank)
        plain = render_sequence(5, i, 30, (320, 240))
        # the boxes are the drawn target's (checked where fully visible) and step as the track
        # does: 7 px right or left per frame (mirrored or backwards), never the random walk
        steps = np.abs(np.diff(seq.boxes[:, 0] + seq.boxes[:, 2] / 2))
        assert np.all(np.abs(steps - 7.5) <= 1.0), steps
        assert not np.array_equal(seq.boxes, plain.boxes)
        # cover 8 is 7/8 visible or more, so an occluder may still clip an edge of the box
        exact = []
        for t in np.flatnonzero((seq.cover == 8) & (seq.cut_by_image == 0)):
            ys, xs = np.nonzero(seq.visible_masks[t])
            x, y, w, h = seq.boxes[t]
            assert x <= xs.min() and y <= ys.min() and xs.max() < x + w and ys.max() < y + h
            exact.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h))
        assert np.mean(exact) > 0.5
    names = make_synthetic(
        tmp_path / "syn", 2, 6, seed=5, progress=False, trajectories=tmp_path / "real"
    )
    written = read_got10k(tmp_path / "syn")
    expected = render_sequence(5, 1, 6, trajectories=bank).boxes
    np.testing.assert_allclose(written[1].boxes, expected)
    assert written[1].name == names[1]
