"""Ops against independent naive references (per-element loops transcribed from the definitions)."""

from __future__ import annotations

import math

import pytest
import torch

from siamtfa.ops import (
    BoxCoder,
    batched_nms,
    box_iou,
    clip_boxes,
    multiscale_roi_align,
    nms,
    nms_keep,
    roi_align,
    temporal_shift,
)

# --------------------------------------------------------------------------- temporal shift


def shift_reference(x: torch.Tensor, clip_len: int, fold_div: int, causal: bool) -> torch.Tensor:
    nt, c, _, _ = x.shape
    k = c // fold_div
    out = torch.zeros_like(x)
    for i in range(nt):
        n, t = divmod(i, clip_len)
        for ch in range(c):
            if ch < k:
                src = t - 1
            elif ch < 2 * k and not causal:
                src = t + 1
            else:
                src = t
            if 0 <= src < clip_len:
                out[i, ch] = x[n * clip_len + src, ch]
    return out


@pytest.mark.parametrize("clip_len", [1, 2, 5])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_temporal_shift_matches_eq1(clip_len: int, batch: int, causal: bool) -> None:
    x = torch.randn(batch * clip_len, 16, 3, 4)
    got = temporal_shift(x, clip_len, fold_div=8, causal=causal)
    torch.testing.assert_close(got, shift_reference(x, clip_len, 8, causal), rtol=0, atol=0)


def test_temporal_shift_fold_div_and_gradcheck() -> None:
    x = torch.randn(2 * 3, 12, 2, 2, dtype=torch.float64, requires_grad=True)
    got = temporal_shift(x, 3, fold_div=4)
    torch.testing.assert_close(got, shift_reference(x.detach(), 3, 4, False))
    assert torch.autograd.gradcheck(lambda v: temporal_shift(v, 3, 4), (x,))
    assert torch.autograd.gradcheck(lambda v: temporal_shift(v, 3, 4, causal=True), (x,))


def test_temporal_shift_rejects_bad_batch() -> None:
    with pytest.raises(ValueError, match="multiple of clip_len"):
        temporal_shift(torch.zeros(5, 8, 2, 2), 2)


# --------------------------------------------------------------------------- RoIAlign


def bilinear_reference(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """Transcription of torchvision's CPU ``bilinear_interpolate`` for one channel map."""
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return img.new_zeros(())
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * img[y_low, x_low]
        + hy * lx * img[y_low, x_high]
        + ly * hx * img[y_high, x_low]
        + ly * lx * img[y_high, x_high]
    )


def roi_align_reference(inp, rois, out_size, scale, ratio, aligned):
    k = rois.shape[0]
    c = inp.shape[1]
    rows = []
    for r in range(k):
        b = int(rois[r, 0])
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = (float(v) * scale - off for v in rois[r, 1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / out_size, rw / out_size
        gh = ratio if ratio > 0 else math.ceil(rh / out_size)
        gw = ratio if ratio > 0 else math.ceil(rw / out_size)
        count = max(gh * gw, 1)
        chans = []
        for ch in range(c):
            cells = []
            for ph in range(out_size):
                for pw in range(out_size):
                    acc = inp.new_zeros(())
                    for iy in range(gh):
                        yy = y1 + ph * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            xx = x1 + pw * bw + (ix + 0.5) * bw / gw
                            acc = acc + bilinear_reference(inp[b, ch], yy, xx)
                    cells.append(acc / count)
            chans.append(torch.stack(cells).view(out_size, out_size))
        rows.append(torch.stack(chans))
    return torch.stack(rows)


ROIS = torch.tensor(
    [
        [0, 1.0, 1.0, 9.0, 7.0],  # inside
        [1, -3.0, -2.0, 5.0, 4.0],  # partly outside, top-left
        [0, 6.0, 4.0, 15.0, 13.0],  # partly outside, bottom-right
        [1, 2.2, 3.1, 2.5, 3.3],  # tiny
        [0, 4.0, 4.0, 4.0, 4.0],  # empty
        [1, 0.0, 0.0, 24.0, 20.0],  # larger than the map at scale 0.5
    ],
    dtype=torch.float64,
)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [-1, 2])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_roi_align_matches_naive_loop(aligned: bool, ratio: int, scale: float) -> None:
    torch.manual_seed(0)
    inp = torch.randn(2, 2, 8, 10, dtype=torch.float64, requires_grad=True)
    got = roi_align(inp, ROIS, 3, scale, ratio, aligned)
    ref = roi_align_reference(inp, ROIS, 3, scale, ratio, aligned)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(ref)
    (g_got,) = torch.autograd.grad((got * weights).sum(), inp)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), inp)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-5, atol=1e-5)


def test_roi_align_float32_channels_last_and_bad_shapes() -> None:
    inp = torch.randn(2, 4, 8, 10)
    ref = roi_align_reference(inp.double(), ROIS, 2, 1.0, 2, True)
    for layout in (torch.contiguous_format, torch.channels_last):  # the tracker's is the latter
        got = roi_align(inp.contiguous(memory_format=layout), ROIS.float(), 2, 1.0, 2, True)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        roi_align(inp, torch.zeros(3, 4), 2)


# FPN rule k = floor(4 + log2(sqrt(wh) / 224)) on P2..P5: by hand, sqrt(wh) of 40, 90 -> 2;
# 150 -> 3; 300 -> 4; 460, 700 -> 5 (clamped)
MULTISCALE_ROIS = torch.tensor(
    [
        [1, 10.0, 12.0, 50.0, 52.0],  # 40 x 40
        [0, -20.0, 5.0, 70.0, 95.0],  # 90 x 90, partly outside
        [1, 20.0, 0.0, 170.0, 150.0],  # 150 x 150
        [0, 0.0, 0.0, 450.0, 200.0],  # sqrt(450 * 200) = 300
        [1, -100.0, -50.0, 360.0, 410.0],  # 460 x 460
        [0, 5.0, 5.0, 705.0, 705.0],  # 700 x 700
    ],
    dtype=torch.float64,
)
MULTISCALE_LEVELS = [2, 2, 3, 4, 5, 5]


@pytest.mark.parametrize("ratio", [-1, 2])
def test_multiscale_roi_align_reads_each_roi_from_its_level(ratio: int) -> None:
    torch.manual_seed(0)
    strides = [4, 8, 16, 32]
    sizes = [(24, 30), (12, 15), (6, 8), (3, 4)]  # a 96 x 120 image, odd map sizes included
    feats = [torch.randn(2, 2, h, w, dtype=torch.float64, requires_grad=True) for h, w in sizes]
    # channels_last maps, as the tracker gives them
    got = multiscale_roi_align(
        [f.contiguous(memory_format=torch.channels_last) for f in feats],
        strides,
        MULTISCALE_ROIS,
        2,
        ratio,
        aligned=True,
    )
    ref = torch.cat(
        [
            roi_align_reference(
                feats[lvl - 2], MULTISCALE_ROIS[i : i + 1], 2, 2.0**-lvl, ratio, True
            )
            for i, lvl in enumerate(MULTISCALE_LEVELS)
        ]
    )
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    weights = torch.randn_like(ref)
    grads = torch.autograd.grad((got * weights).sum(), feats)
    grads_ref = torch.autograd.grad((ref * weights).sum(), feats)
    for lvl, (g, g_ref) in enumerate(zip(grads, grads_ref)):
        assert g_ref.abs().sum() > 0, f"no RoI reads level {lvl + 2}"
        torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="consecutive"):
        multiscale_roi_align([feats[0], feats[2]], [4, 16], MULTISCALE_ROIS, 2, ratio)


# --------------------------------------------------------------------------- NMS, IoU, coder


def iou_reference(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_reference(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(iou_reference(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def random_boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * 50
    wh = torch.rand(n, 2, generator=gen) * 30 + 1
    return torch.cat((xy, xy + wh), 1)


def test_box_iou_matches_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = random_boxes(7, gen), random_boxes(5, gen)
    a[5, 2:] = a[5, :2]  # empty
    b[4] = a[3]  # identical
    b[3] = torch.tensor([200.0, 200.0, 210.0, 205.0])  # far from all
    got = box_iou(a, b)
    for i in range(7):
        for j in range(5):
            assert got[i, j].item() == pytest.approx(iou_reference(a[i].tolist(), b[j].tolist()))
    assert got[5].eq(0).all() and got[:, 3].eq(0).all() and got[3, 4] == 1
    assert box_iou(a[5:6], a[5:6]).item() == 0  # empty with empty: no union, IoU 0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_naive_reference_with_ties(seed: int, thr: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    boxes = random_boxes(120, gen)
    scores = torch.randint(0, 10, (120,), generator=gen).float()  # many ties
    got = nms(boxes, scores, thr).tolist()
    assert got == nms_reference(boxes.tolist(), scores.tolist(), thr)


def test_nms_keep_is_the_reference_on_each_rows_valid_boxes() -> None:
    gen = torch.Generator().manual_seed(7)
    rows, n, thr = 6, 40, 0.5
    boxes = torch.stack([random_boxes(n, gen) for _ in range(rows)])
    scores = torch.randint(0, 6, (rows, n), generator=gen).float()  # many ties
    valid = torch.rand(rows, n, generator=gen) > 0.3
    valid[0] = True
    valid[1] = False  # a row with no box taking part
    scores[2, 5] = math.inf  # an invalid row entry may hold anything
    valid[2, 5] = False
    boxes[3, 1], valid[3, 0], scores[3, :2] = boxes[3, 0], False, -math.inf  # an invalid twin
    keep = nms_keep(boxes, scores, valid, thr)
    for r in range(rows):
        idx = torch.nonzero(valid[r]).squeeze(1).tolist()
        ref = nms_reference(boxes[r, idx].tolist(), scores[r, idx].tolist(), thr)
        assert torch.nonzero(keep[r]).squeeze(1).tolist() == sorted(idx[i] for i in ref)


def test_batched_nms_is_per_group() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5).tolist() == [0]


def decode_reference(delta: list[float], box: list[float], weights, clamp: float) -> list[float]:
    """torchvision's BoxCoder.decode_single for one box, in float64."""
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = box[0] + 0.5 * w, box[1] + 0.5 * h
    dx, dy, dw, dh = (d / wt for d, wt in zip(delta, weights))
    px, py = dx * w + cx, dy * h + cy
    pw, ph = math.exp(min(dw, clamp)) * w, math.exp(min(dh, clamp)) * h
    return [px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph]


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_decode_matches_per_box_reference(weights) -> None:
    gen = torch.Generator().manual_seed(3)
    ref = random_boxes(40, gen).double()
    deltas = torch.randn(40, 4, generator=gen, dtype=torch.float64) * 2
    deltas[:3, 2:] = 50.0  # past the clamp
    coder = BoxCoder(weights)
    got = coder.decode(deltas, ref)
    for i in range(40):
        expected = decode_reference(deltas[i].tolist(), ref[i].tolist(), weights, coder.clamp)
        assert got[i].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_clip_boxes_by_hand() -> None:
    boxes = torch.tensor([[-5.0, 3.0, 50.0, 70.0], [10.0, -1.0, 20.0, 20.0]])
    clipped = clip_boxes(boxes, 60.0, 40.0)  # height 60, width 40
    assert clipped.tolist() == [[0.0, 3.0, 40.0, 60.0], [10.0, 0.0, 20.0, 20.0]]


def test_box_coder_round_trip_and_known_value() -> None:
    gen = torch.Generator().manual_seed(2)
    ref, tgt = random_boxes(50, gen).double(), random_boxes(50, gen).double()
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        torch.testing.assert_close(coder.decode(coder.encode(ref, tgt), ref), tgt)
    # hand-computed: reference 10x10 at centre (5, 5); target 20x10 at centre (10, 5)
    d = BoxCoder().encode(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 20, 10]]))
    torch.testing.assert_close(d, torch.tensor([[0.5, 0.0, math.log(2.0), 0.0]]))
