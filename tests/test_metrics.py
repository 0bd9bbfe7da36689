"""Metrics against the official GOT-10k toolkit (got10k 0.1.3) and hand-computed cases."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamtfa.evaluation import (
    ao_difference,
    center_error,
    got10k_metrics,
    normalized_precision,
    otb_metrics,
    rect_iou,
)
from siamtfa.evaluation.results import read_result, write_got10k_result

from .conftest import official_got10k_overall

toolkit = pytest.importorskip("got10k.utils.metrics")


def random_rects(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(-40, 300, (n, 2))
    wh = rng.uniform(0, 120, (n, 2))
    wh[rng.random(n) < 0.1] = 0.0  # zero-size predictions
    return np.concatenate((xy, wh), 1)


def test_hand_computed_iou_and_centre_error() -> None:
    a = np.array([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[5.0, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]])
    np.testing.assert_allclose(rect_iou(a, b), [50 / 150, 0.0, 1.0])
    np.testing.assert_allclose(center_error(a, b), [5.0, np.hypot(17.5, 17.5), 0.0])
    # a box half outside a 10x10 image is clipped before the IoU
    np.testing.assert_allclose(
        rect_iou(np.array([[-10.0, 0, 20, 10]]), np.array([[0.0, 0, 10, 10]]), bound=(10, 10)),
        [1.0],
    )


@pytest.mark.parametrize("seed", range(3))
def test_iou_and_centre_error_match_toolkit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = random_rects(rng, 500), random_rects(rng, 500)
    np.testing.assert_allclose(rect_iou(a, b), toolkit.rect_iou(a.copy(), b.copy()), atol=1e-12)
    np.testing.assert_allclose(
        rect_iou(a, b, bound=(320, 240)),
        toolkit.rect_iou(a.copy(), b.copy(), bound=(320, 240)),
        atol=1e-12,
    )
    np.testing.assert_allclose(center_error(a, b), toolkit.center_error(a, b), atol=1e-12)


def make_got10k_val(root: Path, rng: np.random.Generator, n_seq: int = 3):
    gts, covers = {}, {}
    split = root / "val"
    names = [f"GOT-10k_Val_{i:06d}" for i in range(1, n_seq + 1)]
    for name in names:
        n = int(rng.integers(8, 20))
        folder = split / name
        folder.mkdir(parents=True)
        for i in range(1, n + 1):
            Image.new("RGB", (8, 6)).save(folder / f"{i:08d}.jpg")
        gt = np.abs(random_rects(rng, n)) + np.array([0, 0, 5, 5])
        cover = rng.integers(0, 9, n)
        (folder / "groundtruth.txt").write_text(
            "".join(",".join(f"{v:.4f}" for v in r) + "\n" for r in gt)
        )
        (folder / "cover.label").write_text("".join(f"{c}\n" for c in cover))
        (folder / "absence.label").write_text("".join(f"{int(c == 0)}\n" for c in cover))
        (folder / "cut_by_image.label").write_text("0\n" * n)
        (folder / "meta_info.ini").write_text("[METAINFO]\nresolution: (320, 240)\n")
        gts[name] = np.round(gt, 4)
        covers[name] = cover
    (split / "list.txt").write_text("\n".join(names) + "\n")
    return gts, covers


def test_got10k_metrics_match_toolkit_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gts, covers = make_got10k_val(tmp_path / "data", rng)
    preds = {}
    for name, gt in gts.items():
        pred = np.round(gt + rng.normal(0, 15, gt.shape), 4)
        pred[rng.random(len(gt)) < 0.2] = random_rects(rng, 1)  # misses, some outside
        write_got10k_result(
            tmp_path / "results" / "GOT-10k" / "mine", name, pred, rng.uniform(0.01, 0.1, len(gt))
        )
        preds[name] = read_result(
            tmp_path / "results" / "GOT-10k" / "mine" / name / f"{name}_001.txt"
        )
    official = official_got10k_overall(tmp_path, "mine")
    ours = got10k_metrics(preds, gts, covers, {n: (320, 240) for n in gts})
    assert ours.ao == pytest.approx(official["ao"], abs=1e-6)
    assert ours.sr50 == pytest.approx(official["sr"], abs=1e-6)
    np.testing.assert_allclose(ours.success_curve, official["succ_curve"], atol=1e-6)
    assert ours.sr75 == pytest.approx(official["succ_curve"][75], abs=1e-6)


def test_otb_and_uav_curves_match_toolkit() -> None:
    from got10k.experiments.otb import ExperimentOTB
    from got10k.experiments.uav123 import ExperimentUAV123

    rng = np.random.default_rng(1)
    gts, preds = {}, {}
    for s in range(4):
        n = 40
        gt = np.abs(random_rects(rng, n)) + np.array([0, 0, 5, 5])
        gt[rng.random(n) < 0.15] = np.nan  # absent frames (UAV)
        gt[0] = [10, 10, 30, 30]
        pred = np.nan_to_num(gt, nan=50.0) + rng.normal(0, 12, gt.shape)
        gts[f"s{s}"], preds[f"s{s}"] = gt, pred
    uav = object.__new__(ExperimentUAV123)
    uav.nbins_iou, uav.nbins_ce = 21, 51
    succ, prec = [], []
    for name, gt in gts.items():
        boxes = preds[name].copy()
        boxes[0] = gt[0]
        ious, errors = uav._calc_metrics(boxes, gt)
        s_curve, p_curve = ExperimentOTB._calc_curves(uav, ious, errors)
        succ.append(s_curve)
        prec.append(p_curve)
    ours = otb_metrics(preds, gts)
    np.testing.assert_allclose(ours.success_curve, np.mean(succ, axis=0), atol=1e-12)
    np.testing.assert_allclose(ours.precision_curve, np.mean(prec, axis=0), atol=1e-12)
    assert ours.auc == pytest.approx(np.mean(np.mean(succ, axis=0)), abs=1e-12)
    assert ours.precision20 == pytest.approx(np.mean(prec, axis=0)[20], abs=1e-12)


def test_normalized_precision_hand_case() -> None:
    gt = np.array([[0.0, 0, 10, 20], [0, 0, 10, 20]])
    pred = np.array([[1.0, 0, 10, 20], [6.0, 0, 10, 20]])  # normalised errors 0.1 and 0.6
    # thresholds 0, 0.01, ..., 0.5: the first frame is within 41 of 51, the second within none
    assert normalized_precision(pred, gt) == pytest.approx((41 / 51 + 0 / 51) / 2, abs=1e-9)


def _per_sequence(ious: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {n: {"ao": float(np.mean(v)), "frames": len(v)} for n, v in ious.items()}


def test_ao_difference_is_the_pooled_difference_with_an_exact_bootstrap_interval() -> None:
    # per-frame IoUs of two trackers on 4 sequences of unequal length
    a = {"s0": [0.9, 0.8, 0.7], "s1": [0.2], "s2": [0.6, 0.6], "s3": [0.5, 0.1, 0.3, 0.2]}
    b = {"s0": [0.5, 0.5, 0.5], "s1": [0.4], "s2": [0.6, 0.7], "s3": [0.1, 0.1, 0.2, 0.0]}
    diff, low, high = ao_difference(_per_sequence(a), _per_sequence(b), resamples=40000)
    pooled = np.concatenate(list(a.values())).mean() - np.concatenate(list(b.values())).mean()
    assert diff == pytest.approx(pooled, abs=1e-12)
    # the reference: every one of the 4^4 resamples, each frame's IoUs pooled by hand
    exact = []
    for pick in itertools.product(a, repeat=4):
        ia = [x for n in pick for x in a[n]]
        ib = [x for n in pick for x in b[n]]
        exact.append(np.mean(ia) - np.mean(ib))
    exact = np.array(exact)
    # the interval's ends are the exact distribution's 2.5 % and 97.5 % points (to the
    # Monte Carlo error of 40 000 draws, ~0.002 in probability): P(d <= end) reaches the
    # level and P(d < end) does not exceed it
    for end, q in ((low, 0.025), (high, 0.975)):
        assert np.mean(exact <= end + 1e-12) >= q - 0.005
        assert np.mean(exact < end - 1e-12) <= q + 0.005
    assert low < diff < high


def test_ao_difference_degenerate_cases_and_bad_input() -> None:
    a = _per_sequence({"s0": [0.9, 0.7], "s1": [0.4], "s2": [0.6, 0.2, 0.3]})
    assert ao_difference(a, a) == (0.0, 0.0, 0.0)
    # the same shift in every frame: every resample has the same difference
    b = _per_sequence({"s0": [0.8, 0.6], "s1": [0.3], "s2": [0.5, 0.1, 0.2]})
    assert ao_difference(a, b) == pytest.approx((0.1, 0.1, 0.1), abs=1e-12)
    with pytest.raises(ValueError, match="different sequences"):
        ao_difference(a, {k: v for k, v in b.items() if k != "s1"})
    with pytest.raises(ValueError, match="different frames"):
        ao_difference(a, {**b, "s1": {"ao": 0.3, "frames": 2}})
