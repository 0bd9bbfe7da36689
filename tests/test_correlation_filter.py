"""The online correlation filter (``TrackingConfig.filter_*``): its closed form against ridge
regression solved in the pixel domain with an explicit convolution matrix, the label and the
window against their formulas, the sampling at RoI centres against hand-computed
interpolation, and the tracker ranking by the blend with a model whose features are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from siamtfa.config import InputConfig, TrackingConfig
from siamtfa.tracking import Tracker
from siamtfa.tracking.correlation_filter import CorrelationFilter, gaussian_label, hann_window_2d

from .conftest import small_model

STRIDE = 16
BOX = (40.0, 24.0, 72.0, 56.0)  # centre (56, 40) px: cell (3, 2); side 32 px = 2 cells
INPUT = InputConfig(max_size=320, min_size=240)  # padded to 256x320: a 16x20 map at stride 16


def test_hann_window_by_formula() -> None:
    # w[m] = 0.5 - 0.5 cos(2 pi m / (N + 1)), m = 1..N: no zero at either edge
    rows = [0.5 - 0.5 * math.cos(2 * math.pi * m / 4) for m in (1, 2, 3)]
    cols = [0.5 - 0.5 * math.cos(2 * math.pi * m / 5) for m in (1, 2, 3, 4)]
    np.testing.assert_allclose(hann_window_2d(3, 4), np.outer(rows, cols), atol=1e-7)


def test_gaussian_label_wraps_around() -> None:
    label = gaussian_label(4, 5, (4.5, 0.0), 1.0)
    # column 0 lies 0.5 cells from x = 4.5 across the edge, column 2 lies 2.5 cells away;
    # row 3 lies 1 cell from y = 0 across the edge
    assert label[0, 0] == pytest.approx(math.exp(-0.125))
    assert label[0, 2] == pytest.approx(math.exp(-(2.5**2) / 2))
    assert label[3, 4] == pytest.approx(math.exp(-(0.25 + 1) / 2))


def _convolution_matrix(x: np.ndarray) -> np.ndarray:
    """``A`` with ``(A g)[s] = sum_c sum_u g_c[u] x_c[(s - u) mod (H, W)]``, ``g`` flattened."""
    c, h, w = x.shape
    a = np.zeros((h * w, c * h * w))
    for sy, sx, ch, uy, ux in np.ndindex(h, w, c, h, w):
        a[sy * w + sx, (ch * h + uy) * w + ux] = x[ch, (sy - uy) % h, (sx - ux) % w]
    return a


def test_closed_form_is_ridge_regression_in_the_pixel_domain() -> None:
    torch.manual_seed(0)
    x, z = torch.randn(2, 2, 4, 6), torch.randn(2, 2, 4, 6)
    lam = 0.05
    cf = CorrelationFilter(x[0], BOX, STRIDE, sigma=0.25, lam=lam)
    # the reference: min ||A g - y||^2 + lambda ||g||^2 over the windowed features, lambda
    # relative to their energy (the mean over frequencies of sum_c |X_c|^2 = sum of x^2)
    window = hann_window_2d(4, 6).double().numpy()
    xw, zw = x[0].double().numpy() * window, z[0].double().numpy() * window
    y = gaussian_label(4, 6, (3.0, 2.0), 0.25 * 2).double().numpy().ravel()
    a = _convolution_matrix(xw)
    ridge = lam * (xw**2).sum()
    g = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ y)
    expected = (_convolution_matrix(zw) @ g).reshape(4, 6)
    np.testing.assert_allclose(cf.response(z[0]), expected, atol=1e-5)
    # on its own features, with little ridge, the response is the label: peak 1 at cell (3, 2)
    sharp = CorrelationFilter(x[0], BOX, STRIDE, sigma=0.25, lam=1e-6)
    np.testing.assert_allclose(sharp.response(x[0]), y.reshape(4, 6), atol=1e-3)


def test_update_blends_the_terms() -> None:
    torch.manual_seed(1)
    x, x2 = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    other_box = (8.0, 8.0, 40.0, 24.0)
    cf = CorrelationFilter(x, BOX, STRIDE, 0.25, 0.01)
    first = CorrelationFilter(x, BOX, STRIDE, 0.25, 0.01)
    second = CorrelationFilter(x2, other_box, STRIDE, 0.25, 0.01)
    cf.update(x2, other_box, 0.0)  # rate 0: unchanged
    torch.testing.assert_close(cf.numerator, first.numerator)
    cf.update(x2, other_box, 0.25)
    torch.testing.assert_close(cf.numerator, 0.75 * first.numerator + 0.25 * second.numerator)
    torch.testing.assert_close(cf.energy, 0.75 * first.energy + 0.25 * second.energy)
    assert cf.ridge == first.ridge  # fixed by the first sample
    cf.update(torch.randn(3, 5, 6), BOX, 0.5)  # another map size: skipped
    torch.testing.assert_close(cf.energy, 0.75 * first.energy + 0.25 * second.energy)


def test_at_boxes_interpolates_and_clips() -> None:
    cf = CorrelationFilter(torch.randn(2, 4, 6), BOX, STRIDE, 0.25, 0.01)
    # a known response: 0.1 x + 0.01 y + 0.3 at cell (x, y), bilinear so exact between cells
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    cf.response = lambda features: 0.1 * xs + 0.01 * ys + 0.3
    boxes = torch.tensor(
        [
            [8.0, 24.0, 40.0, 56.0],  # centre (24, 40) px: cell (1, 2) -> 0.42
            [16.0, 28.0, 48.0, 60.0],  # cell (1.5, 2.25) -> 0.4725
            [-80.0, -80.0, -60.0, -60.0],  # beyond the top-left: the border's 0.3
            [150.0, 10.0, 170.0, 30.0],  # cell (9.5, 0.75), beyond the right: 0.8075
        ]
    )
    values = cf.at_boxes(torch.zeros(2, 4, 6), boxes)
    np.testing.assert_allclose(values, [0.42, 0.4725, 0.3, 0.8075], atol=1e-6)
    cf.response = lambda features: 2.0 - 0.1 * xs  # above 1: clipped
    assert cf.at_boxes(torch.zeros(2, 4, 6), boxes[:1]).item() == 1.0
    assert cf.at_boxes(torch.zeros(2, 5, 6), boxes).tolist() == [0.0] * 4  # other size


def _filter_model(seen: list) -> torch.nn.Module:
    """A model whose trunk map is one fixed random pattern, rolled 2 cells right in every
    search frame, with two RoIs there: A (score 0.9) where the target was in the first frame
    and B (score 0.3) where the pattern moved it."""
    model = small_model().eval()
    pattern = torch.randn(1, 8, 16, 20, generator=torch.Generator().manual_seed(3))

    def template_features(images, boxes):
        seen.append(("template", boxes[0].tolist()))
        return torch.zeros(len(boxes), 8, 7, 7)

    def forward_search(template, images, clip_len=1, stream=None, keep_trunk=False, **_):
        seen.append(("keep_trunk", keep_trunk))
        first = torch.tensor(seen[0][1])
        boxes = torch.stack([first, first + torch.tensor([32.0, 0.0, 32.0, 0.0])])
        det = {"box": boxes[0], "score": torch.tensor(0.9), "boxes": boxes}
        det["scores"] = torch.tensor([0.9, 0.3])
        if keep_trunk:
            det["trunk"] = pattern.roll(2, dims=-1)[0]
        return [det] * images.shape[0]

    model.trunk = lambda images: pattern
    model.template_features = template_features
    model.forward_search = forward_search
    return model


@pytest.mark.parametrize("mode", ["online", "clip"])
def test_filter_weight_ranks_by_the_response(mode: str) -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    box = [300.0, 200.0, 20.0, 20.0]  # a region at scale 2: B lies 16 image pixels right of A
    for weight, shift in [(0.0, 0.0), (0.9, 16.0)]:
        seen: list = []
        cfg = TrackingConfig(search_target_size=40.0, max_upsample=2.0, filter_weight=weight)
        tracker = Tracker(
            _filter_model(seen),
            mode,
            "cpu",
            INPUT,
            tracking=cfg,
            clip_len=1,
        )
        boxes, _ = tracker.track([frame] * 2, box)
        np.testing.assert_allclose(boxes[1], [300.0 + shift, 200.0, 20.0, 20.0])
        assert all(keep == (weight > 0) for what, keep in seen if what == "keep_trunk")
        if weight:  # 0.1 x score + 0.9 x response: B responds, A (0.9) hardly
            response = (tracker.ranked()[1] - 0.1 * np.array([0.3, 0.9])) / 0.9
            assert response[0] > 0.5 and 0 <= response[1] < 0.1


def test_answers_are_learned_where_they_were_seen() -> None:
    seen: list = []
    cfg = TrackingConfig(
        search_target_size=40.0, max_upsample=2.0, filter_weight=0.9, filter_rate=1.0
    )
    model = _filter_model(seen)
    tracker = Tracker(model, "online", "cpu", INPUT, tracking=cfg)
    frame = np.zeros((480, 640, 3), np.uint8)
    tracker.init(frame, [300.0, 200.0, 20.0, 20.0])
    tracker.update(frame)  # answers B: input (172, 100)-(212, 140) in the search frame's map
    trunk = model.trunk(None).roll(2, dims=-1)[0]
    learned = CorrelationFilter(trunk, (172.0, 100.0, 212.0, 140.0), STRIDE, 0.25, 0.01)
    torch.testing.assert_close(tracker.filter.numerator, learned.numerator)


def test_filter_needs_a_search_region() -> None:
    seen: list = []
    cfg = TrackingConfig(filter_weight=0.9)  # the whole frame: no filter
    tracker = Tracker(_filter_model(seen), "online", "cpu", INPUT, tracking=cfg)
    tracker.init(np.zeros((240, 320, 3), np.uint8), [50.0, 50.0, 20.0, 20.0])
    assert tracker.filter is None
