"""Tracking speed on 640x480 video: siamtfa lite / paper in online and clip modes (fp32, and
bf16 autocast + channels_last), CSRT and KCF; the temporal-shift overhead; peak memory.

Each configuration runs in a fresh process (peak memory is its own). Frames are generated in
memory (decoding excluded); FPS counts the frames after ``init``.

    python benchmarks/speed.py [--checkpoint C] [--frames 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch

# name: (preset, mode, input (max, min) or None for the preset's, fast, temporal, tuned): the
# network alone runs the paper's tracking rule; "tuned" adds the --checkpoint's own tracking
# settings (search region, re-detection, template update), as `siamtfa track` runs it
CONFIGS = {
    "lite online fp32": ("lite", "online", None, False, True, False),
    "lite online 320 bf16+cl": ("lite", "online", (320, 240), True, True, False),
    "lite online 320 bf16+cl, tuned": ("lite", "online", (320, 240), True, True, True),
    "lite online 320 bf16+cl, no shift": ("lite", "online", (320, 240), True, False, False),
    "lite clip 320 bf16+cl": ("lite", "clip", (320, 240), True, True, False),
    "paper online fp32": ("paper", "online", None, False, True, False),
    "paper online bf16+cl": ("paper", "online", None, True, True, False),
    "paper clip bf16+cl": ("paper", "clip", None, True, True, False),
    "csrt": ("csrt", "", None, False, False, False),
    "kcf": ("kcf", "", None, False, False, False),
}


def worker(name: str, frames: int, checkpoint: str | None) -> None:
    from siamtfa import build_model
    from siamtfa.config import InputConfig, preset
    from siamtfa.data.synthetic import render_sequence
    from siamtfa.tracking import OpenCVTracker, Tracker, load_model

    kind, mode, size, fast, temporal, tuned = CONFIGS[name]
    if kind == "paper" and not torch.cuda.is_available():
        frames = min(frames, 4)  # seconds per frame on a CPU
    seq = render_sequence(4242, 0, frames + 1, size=(640, 480))
    if kind in ("csrt", "kcf"):
        tracker = OpenCVTracker(kind)
    else:
        if checkpoint and kind == "lite":
            model, cfg = load_model(checkpoint)
            cfg.model.temporal.enabled = temporal
        else:
            cfg = preset(kind)
            cfg.model.temporal.enabled = temporal
            torch.manual_seed(0)
            model = build_model(cfg)
        if not temporal and checkpoint and kind == "lite":
            state = model.state_dict()
            model = build_model(cfg)
            model.load_state_dict(state)
        inp = InputConfig(max_size=size[0], min_size=size[1]) if size else cfg.input
        tracker = Tracker(
            model,
            mode,
            None,
            inp,
            clip_len=3,
            precision="bf16" if fast else "fp32",
            channels_last=fast,
            tracking=cfg.tracking if tuned else None,
        )
    tracker.track(seq.frames[:4], seq.boxes[0])  # warm-up
    _, times = tracker.track(seq.frames, seq.boxes[0])
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"fps": (len(times) - 1) / times[1:].sum(), "peak_mb": peak, "frames": len(times) - 1}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--checkpoint", help="trained lite checkpoint (default: random weights)")
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS))
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.frames, args.checkpoint)
        return
    device = "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    print(f"{device}; 640x480 frames, FPS over the frames after init (decode excluded)")
    print(f"{'configuration':<36} {'FPS':>7} {'ms/frame':>9} {'peak MB':>8} {'frames':>6}")
    results = {}
    for name in args.only or CONFIGS:
        cmd = [sys.executable, __file__, "--worker", name, "--frames", str(args.frames)]
        cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        r = results[name] = json.loads(out.strip().splitlines()[-1])
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


if __name__ == "__main__":
    main()
