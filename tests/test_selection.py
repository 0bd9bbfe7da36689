"""Box selection among ranked RoIs: the paper's rule and the motion/size prior, against a
plain-Python loop of the documented formula and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from siamtfa.config import TrackingConfig
from siamtfa.tracking.selection import (
    blend,
    is_paper_rule,
    next_box,
    select_box,
    voted_box,
)

from .test_ops import iou_reference

PRIOR = TrackingConfig(
    window_influence=0.4, window_sigma=0.8, window_lead=0.7, scale_penalty=0.3, size_lr=0.6
)


def naive_select(boxes, scores, prev, cfg: TrackingConfig, velocity=(0.0, 0.0)) -> list[float]:
    pw, ph = max(prev[2] - prev[0], 1.0), max(prev[3] - prev[1], 1.0)
    ps = math.sqrt(pw * ph)
    pcx = (prev[0] + prev[2]) / 2 + cfg.window_lead * velocity[0]
    pcy = (prev[1] + prev[3]) / 2 + cfg.window_lead * velocity[1]
    best, best_rank = 0, -math.inf
    for i, (b, s) in enumerate(zip(boxes, scores)):
        size = math.sqrt((b[2] - b[0]) * (b[3] - b[1]))
        r = max(size / ps, ps / size)
        damped = s * math.exp(-cfg.scale_penalty * (r - 1))
        d = math.hypot((b[0] + b[2]) / 2 - pcx, (b[1] + b[3]) / 2 - pcy)
        window = math.exp(-0.5 * (d / (cfg.window_sigma * ps)) ** 2)
        rank = (1 - cfg.window_influence) * damped + cfg.window_influence * window
        if rank > best_rank:
            best, best_rank = i, rank
    b = boxes[best]
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    w = pw + cfg.size_lr * ((b[2] - b[0]) - pw)
    h = ph + cfg.size_lr * ((b[3] - b[1]) - ph)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def random_boxes(k: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * 300
    wh = 5 + torch.rand(k, 2, generator=gen, dtype=torch.float64) * 80
    return torch.cat([xy, xy + wh], 1)


def test_defaults_are_the_papers_top_scoring_roi() -> None:
    assert is_paper_rule(TrackingConfig()) and not is_paper_rule(PRIOR)
    gen = torch.Generator().manual_seed(0)
    boxes, scores = random_boxes(50, gen), torch.rand(50, generator=gen, dtype=torch.float64)
    prev = torch.tensor([0.0, 0.0, 10.0, 10.0], dtype=torch.float64)
    out = select_box(boxes, scores, prev, TrackingConfig())
    assert torch.equal(out, boxes[scores.argmax()])


@pytest.mark.parametrize("seed", range(20))
def test_prior_matches_a_loop_over_the_formula(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    boxes, scores = random_boxes(30, gen), torch.rand(30, generator=gen, dtype=torch.float64)
    prev = random_boxes(1, gen)[0]
    velocity = (torch.rand(2, generator=gen, dtype=torch.float64) - 0.5) * 60
    out = select_box(boxes, scores, prev, PRIOR, velocity)
    ref = naive_select(boxes.tolist(), scores.tolist(), prev.tolist(), PRIOR, velocity.tolist())
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float64), rtol=0, atol=1e-9)


def test_hand_computed_cases() -> None:
    prev = torch.tensor([100.0, 100.0, 120.0, 120.0])  # centre (110, 110), size 20
    near = [105.0, 105.0, 125.0, 125.0]  # same size, 5 px diagonal-ish shift
    far = [10.0, 10.0, 30.0, 30.0]  # same size, far away, slightly higher score
    boxes, scores = torch.tensor([far, near]), torch.tensor([0.9, 0.8])
    # paper rule: the far, higher-scoring look-alike wins
    assert select_box(boxes, scores, prev, TrackingConfig()).tolist() == far
    # motion prior 0.5: 0.5*0.8 + 0.5*exp(-0.5*(7.07/20)^2) = 0.870 > 0.5*0.9 + 0.5*~0 = 0.45
    prior = TrackingConfig(window_influence=0.5, window_sigma=1.0)
    assert select_box(boxes, scores, prev, prior).tolist() == near
    # scale penalty: a twice-as-large box at 0.9 is damped to 0.9*exp(-1*(2-1)) = 0.331 < 0.8
    big = [90.0, 90.0, 130.0, 130.0]
    out = select_box(torch.tensor([big, near]), scores, prev, TrackingConfig(scale_penalty=1.0))
    assert out.tolist() == near
    # size_lr 0.25: centre of the winner, size 20 + 0.25 * (40 - 20) = 25
    out = select_box(torch.tensor([big]), torch.tensor([1.0]), prev, TrackingConfig(size_lr=0.25))
    assert out.tolist() == [97.5, 97.5, 122.5, 122.5]
    # window_lead 1 with the last motion (-50, -50): the window sits at (60, 60), so a box
    # there (score 0.5) beats the one at the last place (0.8):
    # 0.2*0.5 + 0.8*1 = 0.9 > 0.2*0.8 + 0.8*exp(-0.5*(70.7/20)^2) = 0.16 + 0.8*0.0019
    ahead = [50.0, 50.0, 70.0, 70.0]
    lead = TrackingConfig(window_influence=0.8, window_sigma=1.0, window_lead=1.0)
    boxes, scores = torch.tensor([prev.tolist(), ahead]), torch.tensor([0.8, 0.5])
    assert select_box(boxes, scores, prev, lead, torch.tensor([-50.0, -50.0])).tolist() == ahead
    assert select_box(boxes, scores, prev, lead).tolist() == prev.tolist()  # no motion known


def test_no_candidate_keeps_the_previous_box() -> None:
    prev = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(select_box(torch.zeros(0, 4), torch.zeros(0), prev, PRIOR), prev)


def test_next_box_clips_the_answer_to_the_image() -> None:
    # the paper's rule takes RoI 1 (score 0.9), which sticks out left and below a 128x100 image
    boxes = np.array([[10.0, 10.0, 30.0, 30.0], [-5.0, 90.0, 30.0, 130.0]])
    box, best = next_box(
        np.array([10.0, 10.0, 20.0, 20.0]),
        boxes,
        np.array([0.2, 0.9]),
        TrackingConfig(),
        (128, 100),
    )
    assert best == 1 and box.tolist() == [0.0, 90.0, 30.0, 10.0]


def test_appearance_blend_by_hand() -> None:
    # (1 - 0.25) * score + 0.25 * max(similarity, 0)
    blended = blend(np.array([0.8, 0.4, 0.0]), np.array([-0.6, 1.0, 0.5]), 0.25)
    np.testing.assert_allclose(blended, [0.6, 0.55, 0.125])


def test_box_voting_by_hand() -> None:
    # RoIs 0 and 1 overlap with IoU 90 / 110 = 0.82; RoI 2 lies apart
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60, 60]])
    scores = torch.tensor([0.6, 0.2, 0.9])
    torch.testing.assert_close(voted_box(boxes, scores, 0, 0.8), torch.tensor([0.25, 0, 10.25, 10]))
    assert torch.equal(voted_box(boxes, scores, 0, 0.9), boxes[0])  # only itself
    assert torch.equal(voted_box(boxes, scores, 0, 0.0), boxes[0])  # off
    assert torch.equal(voted_box(boxes, torch.zeros(3), 1, 0.5), boxes[1])  # no weight
    # IoU exactly at the threshold votes: the lower half of box 0 has IoU 50 / 100 = 0.5
    halves = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])
    voted = voted_box(halves, torch.tensor([0.6, 0.2]), 0, 0.5)
    torch.testing.assert_close(voted, torch.tensor([0.0, 0.0, 10.0, 8.75]))  # (6 + 1) / 0.8


@pytest.mark.parametrize("seed", range(5))
def test_box_voting_matches_a_loop(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    boxes, scores = random_boxes(40, gen), torch.rand(40, generator=gen, dtype=torch.float64)
    best, iou_min = int(scores.argmax()), 0.3
    total, acc = 0.0, [0.0] * 4
    for b, s in zip(boxes.tolist(), scores.tolist()):
        if iou_reference(boxes[best].tolist(), b) >= iou_min:
            total += s
            acc = [a + s * v for a, v in zip(acc, b)]
    expected = torch.tensor([a / total for a in acc], dtype=torch.float64)
    torch.testing.assert_close(voted_box(boxes, scores, best, iou_min), expected)


def test_next_box_votes_before_smoothing() -> None:
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    cfg = TrackingConfig(vote_iou=0.5)
    box, best = next_box(
        np.array([0.0, 0.0, 10.0, 10.0]), boxes, np.array([0.5, 0.5]), cfg, (64, 64)
    )
    assert best == 0 and box.tolist() == [0.5, 0.0, 10.0, 10.0]
