"""Tracking speed on 640x480 video: siamtfa lite / paper in online and clip modes (fp32 as the
tracker runs by default, and bf16 autocast + channels_last), NanoTrack v2, CSRT and KCF; the
temporal-shift overhead; peak memory; what clip mode could gain on this device at most: the
network alone at batch 3 against batch 1, and (CPU) a clip's frames spread one per core, from
the 1-thread rate; and the device's ceiling: the network's FLOPs per frame against a large
matrix product's rate.

Each configuration runs in a fresh process (peak memory is its own). Frames are generated in
memory (decoding excluded); FPS counts the frames after ``init``, in the fastest of
``--passes`` passes over them (another process on the machine can only slow a pass down).

    python benchmarks/speed.py [--checkpoint C] [--frames 30] [--passes 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import Tensor

    from siamtfa.config import InputConfig
    from siamtfa.data.synthetic import SyntheticSequence

S320 = (320, 240)  # the input box of the fast rows

# name: (preset, mode, input (max, min) or None for the preset's, fast, temporal, tuned,
# compiled): the network alone runs the paper's tracking rule; "tuned" adds the --checkpoint's
# own tracking settings (search region, re-detection, template update), as `siamtfa track` runs
# it; "compiled" is `--compile` (the search branch's dense part, built in the warm-up)
CONFIGS = {
    # --checkpoint (default: the shipped default) exactly as `siamtfa track` runs it
    "default online fp32": ("default", "online", None, False, True, True, False),
    "lite online fp32": ("lite", "online", None, False, True, False, False),
    "lite online 320 bf16+cl": ("lite", "online", S320, True, True, False, False),
    "lite online 320 bf16+cl, tuned": ("lite", "online", S320, True, True, True, False),
    "lite online 320 bf16+cl, no shift": ("lite", "online", S320, True, False, False, False),
    "lite online 320 bf16+cl, compiled": ("lite", "online", S320, True, True, False, True),
    "lite clip 320 bf16+cl": ("lite", "clip", S320, True, True, False, False),
    "lite clip 320 bf16+cl, compiled": ("lite", "clip", S320, True, True, False, True),
    # the network alone on a ready batch of 1 or 3 frames: the most that clips can gain here
    "lite network 320 bf16+cl, batch 1": ("lite", "network 1", S320, True, True, False, False),
    "lite network 320 bf16+cl, batch 3": ("lite", "network 3", S320, True, True, False, False),
    # one thread (CPU): a clip's frames spread one per core could reach cores x this
    "lite online 320 bf16+cl, 1 thread": ("lite", "online", S320, True, True, False, False),
    "paper online fp32": ("paper", "online", None, False, True, False, False),
    "paper online bf16+cl": ("paper", "online", None, True, True, False, False),
    "paper clip bf16+cl": ("paper", "clip", None, True, True, False, False),
    "nanotrack v2": ("nanotrack", "", None, False, False, False, False),
    "csrt": ("csrt", "", None, False, False, False, False),
    "kcf": ("kcf", "", None, False, False, False, False),
}


def worker(
    name: str, frames: int, checkpoint: str | None, passes: int, nanotrack: str | None
) -> None:
    from siamtfa import build_model
    from siamtfa.config import InputConfig, preset
    from siamtfa.data.synthetic import render_sequence
    from siamtfa.tracking import OpenCVTracker, Tracker, load_model

    kind, mode, size, fast, temporal, tuned, compiled = CONFIGS[name]
    if name.endswith("1 thread"):
        torch.set_num_threads(1)
    if kind == "paper" and not torch.cuda.is_available():
        frames = min(frames, 4)  # seconds per frame on a CPU
    seq = render_sequence(4242, 0, frames + 1, size=(640, 480))
    if kind in ("csrt", "kcf"):
        tracker = OpenCVTracker(kind)
    elif kind == "nanotrack":
        tracker = OpenCVTracker(kind, nanotrack)
    elif kind == "default":
        tracker = Tracker(checkpoint)  # None: the shipped default
    else:
        loaded = load_model(checkpoint) if checkpoint else None
        backbone = loaded[1].model.backbone if loaded else None
        trained = kind == "lite" and backbone and (backbone.arch, backbone.depth) == ("resnet", 18)
        if trained:
            model, cfg = loaded
            cfg.model.temporal.enabled = temporal
        else:
            cfg = preset(kind)
            cfg.model.temporal.enabled = temporal
            torch.manual_seed(0)
            model = build_model(cfg)
        if not temporal and trained:
            state = model.state_dict()
            model = build_model(cfg)
            model.load_state_dict(state)
        inp = InputConfig(max_size=size[0], min_size=size[1]) if size else cfg.input
        if mode.startswith("network"):
            fps = network_speed(model, seq, inp, int(mode.split()[1]), passes)
            print(json.dumps({"fps": max(fps), "peak_mb": _peak_mb(), "frames": frames}))
            return
        tracker = Tracker(
            model,
            mode,
            None,
            inp,
            clip_len=3,
            precision="bf16" if fast else "fp32",
            channels_last=True if fast else None,  # None: the default (NHWC on CPUs)
            tracking=cfg.tracking if tuned else None,
            compile=compiled,
        )
    tracker.track(seq.frames[:4], seq.boxes[0])  # warm-up
    fps = []
    for _ in range(passes):
        _, times = tracker.track(seq.frames, seq.boxes[0])
        fps.append((len(times) - 1) / times[1:].sum())
    result = {"fps": max(fps), "peak_mb": _peak_mb(), "frames": frames}
    if isinstance(tracker, Tracker):
        result["input"] = [tracker.input_cfg.max_size, tracker.input_cfg.min_size]
    print(json.dumps(result))


def _peak_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def whole_frames(seq: SyntheticSequence, inp: InputConfig, device: str) -> tuple[Tensor, Tensor]:
    """``seq``'s whole frames prepared as the network's input ``[N, 3, H, W]``, and its first
    box as ``[[x1, y1, x2, y2]]`` in input pixels."""
    from siamtfa.data import transforms as T

    h, w = seq.frames[0].shape[:2]
    region = T.Region(T.fit_scale(w, h, inp), 0.0, 0.0)
    images = torch.cat([T.prepare_region(f, region, inp) for f in seq.frames]).to(device)
    x, y, bw, bh = (seq.boxes[0] * region.scale).tolist()
    return images, torch.tensor([[x, y, x + bw, y + bh]], device=device)


def network_speed(
    model: torch.nn.Module, seq: SyntheticSequence, inp: InputConfig, batch: int, passes: int
) -> list[float]:
    """Frames/s of ``forward_search`` alone (bf16 autocast, channels_last) on ``seq``'s frames,
    prepared beforehand in batches of ``batch``: no decoding, resizing or box selection."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    images, box = whole_frames(seq, inp, device)
    images = images.contiguous(memory_format=torch.channels_last)
    batches = [images[i : i + batch] for i in range(1, len(images) - batch + 1, batch)]
    fps = []
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16):
        template = model.template_features(images[:1], box)
        model.forward_search(template, batches[0], batch)  # warm-up
        for _ in range(passes):
            _sync()
            start = time.perf_counter()
            for frames in batches:
                model.forward_search(template, frames, batch)
            _sync()
            fps.append(len(batches) * batch / (time.perf_counter() - start))
    return fps


def ceiling(checkpoint: str | None) -> dict[str, float]:
    """What this device allows: the network's (``checkpoint``'s, else the default's) GFLOP per
    640x480 frame at the fast rows' input (torch's FlopCounterMode: convolutions and matrix
    products, 2 per multiply-add; RoIs as NMS leaves them on a rendered frame) and the GFLOP/s
    of a large matrix product in fp32 and bf16, the rate that convolutions and FCs approach at
    best."""
    from torch.utils.flop_counter import FlopCounterMode

    from siamtfa.config import InputConfig
    from siamtfa.data.synthetic import render_sequence
    from siamtfa.tracking import load_model
    from siamtfa.tracking.tracker import default_tracker_source

    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = checkpoint or default_tracker_source()[0]
    if isinstance(source, torch.nn.Module):  # no shipped checkpoint: an untrained lite
        model = source.to(device)
    else:
        model = load_model(source, device)[0]
    seq = render_sequence(4242, 0, 2, size=(640, 480))
    images, box = whole_frames(seq, InputConfig(max_size=S320[0], min_size=S320[1]), device)
    with torch.inference_mode():
        template = model.template_features(images[:1], box)
        with FlopCounterMode(display=False) as counter:
            model.forward_search(template, images[1:], 1)
    n = 8192 if device == "cuda" else 2048
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        best = float("inf")
        for _ in range(12):  # the first few warm up; the fastest counts
            _sync()
            start = time.perf_counter()
            a @ b
            _sync()
            best = min(best, time.perf_counter() - start)
        rates[str(dtype).split(".")[1]] = 2 * n**3 / best / 1e9
    return {"gflop": counter.get_total_flops() / 1e9, "size": n, **rates}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--passes", type=int, default=3, help="timed passes; the fastest counts")
    parser.add_argument(
        "--checkpoint",
        help="the default row's checkpoint (default: the shipped one); the lite rows' weights "
        "when it is a lite one (default: random)",
    )
    parser.add_argument(
        "--nanotrack-dir", help="NanoTrack's ONNX files (default: none, no nanotrack row)"
    )
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS))
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.frames, args.checkpoint, args.passes, args.nanotrack_dir)
        return
    device = "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    print(f"{device}; 640x480 frames, FPS over the frames after init (decode excluded)")
    print(f"{'configuration':<36} {'FPS':>7} {'ms/frame':>9} {'peak MB':>8} {'frames':>6}")
    results = {}
    for name in args.only or [c for c in CONFIGS if c != "nanotrack v2" or args.nanotrack_dir]:
        cmd = [sys.executable, __file__, "--worker", name, "--frames", str(args.frames)]
        cmd += ["--passes", str(args.passes)]
        cmd += ["--nanotrack-dir", args.nanotrack_dir] if args.nanotrack_dir else []
        cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:  # one failed configuration must not cost the others' rows
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{name:<36} failed (exit status {proc.returncode}): {last}")
            continue
        r = results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{name:<36} {r['fps']:7.2f} {1000 / r['fps']:9.1f} {r['peak_mb']:8.0f} "
            f"{r['frames']:6d}"
        )
    on, off = "lite online 320 bf16+cl", "lite online 320 bf16+cl, no shift"
    if on in results and off in results:
        ratio = results[off]["fps"] / results[on]["fps"]
        print(f"temporal-shift overhead (online, lite): {ratio:.3f} x the time without it")
    clip = "lite clip 320 bf16+cl"
    if clip in results and on in results:
        print(f"clip / online throughput (lite): {results[clip]['fps'] / results[on]['fps']:.2f}")
    for mode in ("online", "clip"):
        eager, compiled = f"lite {mode} 320 bf16+cl", f"lite {mode} 320 bf16+cl, compiled"
        if eager in results and compiled in results:
            ratio = results[compiled]["fps"] / results[eager]["fps"]
            print(f"torch.compile / eager throughput (lite {mode}): {ratio:.2f}")
    one, three = "lite network 320 bf16+cl, batch 1", "lite network 320 bf16+cl, batch 3"
    if one in results and three in results:
        ratio = results[three]["fps"] / results[one]["fps"]
        print(f"network alone, batch 3 / batch 1 throughput (the most clips can gain): {ratio:.2f}")
    c = ceiling(args.checkpoint)
    fp32_max, bf16_max = c["float32"] / c["gflop"], c["bfloat16"] / c["gflop"]
    print(
        f"ceiling: the network takes {c['gflop']:.1f} GFLOP a frame; a {c['size']:.0f}^3 "
        f"matrix product runs at {c['float32']:.0f} GFLOP/s in fp32, {c['bfloat16']:.0f} in "
        f"bf16: at most {fp32_max:.1f} / {bf16_max:.1f} frames/s"
    )
    for name in ("lite online 320 bf16+cl", "lite clip 320 bf16+cl"):
        if name in results:
            print(f"  {name}: {results[name]['fps'] / bf16_max:.0%} of the bf16 ceiling")
    fp32 = results.get("lite online fp32")
    if fp32 and fp32.get("input") == list(S320):  # the checkpoint's own input, if it is 320
        print(f"  lite online fp32: {fp32['fps'] / fp32_max:.0%} of the fp32 ceiling")
    single = "lite online 320 bf16+cl, 1 thread"
    if single in results and on in results and not torch.cuda.is_available():
        cores = torch.get_num_threads()
        ratio = cores * results[single]["fps"] / results[on]["fps"]
        print(f"{cores} frames at a time, one per core, at best: {ratio:.2f} x online")


if __name__ == "__main__":
    main()
