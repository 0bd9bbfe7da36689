"""RoIAlign: the shipped ``embedding_bag`` gather against the ``grid_sample`` + ``avg_pool2d``
formulation it replaced, forward and forward + backward, side by side in one table.

Shapes are the default tracker's: a 128-channel P2-P5 pyramid of a 320x256 input, 300 RoIs per
frame at inference (batch 1 and a clip of 3, channels_last as the tracker runs it) and 128 per
frame in training (6 search frames, NCHW). Both give torchvision's RoIAlign (tests/test_ops.py
checks the shipped one against a transcription of torchvision's loop); the table prints their
largest difference too.

    python benchmarks/roi_align_speed.py [--repeats 10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from siamtfa.ops import multiscale_roi_align
from siamtfa.ops.roi_align import level_for_boxes

STRIDES = [4, 8, 16, 32]


def grid_sample_roi_align(features: list[Tensor], rois: Tensor) -> Tensor:
    """Aligned RoIAlign, 7x7, 2x2 samples per bin, by ``grid_sample`` per image and level."""
    levels = level_for_boxes(rois[:, 1:], 2, 5)
    out = rois.new_zeros((len(rois), features[0].shape[1], 7, 7))
    fy = ((torch.arange(14, dtype=rois.dtype, device=rois.device) + 0.5) / 14)[None]
    for feat, stride in zip(features, STRIDES):
        h, w = feat.shape[-2:]
        for b in range(feat.shape[0]):
            idx = torch.nonzero((levels == round(math.log2(stride))) & (rois[:, 0] == b))[:, 0]
            if not len(idx):
                continue
            x1, y1, x2, y2 = (rois[idx, 1 + i, None] / stride - 0.5 for i in range(4))
            ys, xs = y1 + fy * (y2 - y1), x1 + fy * (x2 - x1)  # [k, 14] sample rows / columns
            valid = ((ys >= -1) & (ys <= h))[:, :, None] & ((xs >= -1) & (xs <= w))[:, None, :]
            gx = (xs / (w - 1) * 2 - 1)[:, None, :].expand(-1, 14, -1)
            gy = (ys / (h - 1) * 2 - 1)[:, :, None].expand(-1, -1, 14)
            grid = torch.stack((gx, gy), -1).reshape(1, -1, 14, 2)
            s = F.grid_sample(feat[b : b + 1], grid, padding_mode="border", align_corners=True)
            s = F.avg_pool2d(s * valid.reshape(1, 1, -1, 14), 2)  # [1, C, k * 7, 7]
            out[idx] = s.view(-1, len(idx), 7, 7).transpose(0, 1)
    return out


def shipped_roi_align(features: list[Tensor], rois: Tensor) -> Tensor:
    return multiscale_roi_align(features, STRIDES, rois, 7, 2)


def case(
    frames: int, per_frame: int, channels_last: bool, device: str
) -> tuple[list[Tensor], Tensor]:
    """A pyramid of ``frames`` maps and ``per_frame`` random RoIs on each."""
    gen = torch.Generator().manual_seed(frames * per_frame)
    features = [
        torch.randn(frames, 128, 64 // 2**i, 80 // 2**i, generator=gen).to(device) for i in range(4)
    ]
    if channels_last:
        features = [f.contiguous(memory_format=torch.channels_last) for f in features]
    k = frames * per_frame
    xy = torch.rand(k, 2, generator=gen) * 300
    wh = torch.rand(k, 2, generator=gen) ** 2 * 200 + 2  # most small, some large: all levels
    batch = torch.arange(frames).repeat_interleave(per_frame)[:, None].float()
    return features, torch.cat((batch, xy, xy + wh), 1).to(device)


def seconds(
    fn: Callable[[list[Tensor], Tensor], Tensor],
    features: list[Tensor],
    rois: Tensor,
    backward: bool,
    repeats: int,
    device: str,
) -> float:
    """Fastest of ``repeats`` calls of ``fn`` (and its backward pass), after one warm-up."""
    leaves = [f.detach().requires_grad_(backward) for f in features]
    best = math.inf
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode(not backward):
            out = fn(leaves, rois)
            if backward:
                out.sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="the fastest counts")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"{args.device}, {torch.get_num_threads()} threads; ms, fastest of {args.repeats}")
    head = f"{'case':<34} {'pass':<10} {'grid_sample':>11} {'shipped':>8} {'speed-up':>8}"
    print(head + f" {'max diff':>9}")
    cases = {
        "inference, 1 frame x 300, cl": (1, 300, True),
        "inference, clip 3 x 300, cl": (3, 300, True),
        "training, 6 frames x 128": (6, 128, False),
    }
    for name, (frames, per_frame, cl) in cases.items():
        features, rois = case(frames, per_frame, cl, args.device)
        diff = (grid_sample_roi_align(features, rois) - shipped_roi_align(features, rois)).abs()
        for kind in ("forward", "+ backward") if name.startswith("training") else ("forward",):
            times = [
                seconds(fn, features, rois, kind != "forward", args.repeats, args.device)
                for fn in (grid_sample_roi_align, shipped_roi_align)
            ]
            print(
                f"{name:<34} {kind:<10} {1000 * times[0]:11.1f} {1000 * times[1]:8.1f} "
                f"{times[0] / times[1]:7.1f}x {diff.max().item():9.1e}"
            )


if __name__ == "__main__":
    main()
