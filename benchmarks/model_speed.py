"""Forward time of SiamTFA ``paper`` and ``lite`` at their input sizes, temporal shift on vs off.

Both variants share the same weights (the shift has no parameters), and their runs are
interleaved so that machine noise hits both alike. Prints one table with the on/off ratio.

    python benchmarks/model_speed.py [--repeats 5] [--clip-len 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from siamtfa import build_model
from siamtfa.config import preset


def padded_size(cfg, width: int, height: int) -> tuple[int, int]:
    """A ``width x height`` frame resized to fit the preset's input box and padded."""
    scale = min(cfg.input.max_size / max(width, height), cfg.input.min_size / min(width, height))
    div = cfg.input.size_divisor
    h = -(-round(height * scale) // div) * div
    w = -(-round(width * scale) // div) * div
    return h, w


def time_forward(model, template, search, clip_len, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.forward_search(template, search, clip_len)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clip-len", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["lite", "paper"])
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"device {device}, {torch.get_num_threads()} threads, clip of {args.clip_len} frames, "
        f"median of {args.repeats} interleaved runs, template cached"
    )
    print(
        f"{'preset':<7} {'input':>10} {'shift on ms/frame':>18} {'shift off ms/frame':>19} "
        f"{'on/off':>7}"
    )
    for name in args.presets:
        cfg = preset(name)
        h, w = padded_size(cfg, 1920, 1080) if name == "paper" else padded_size(cfg, 640, 480)
        torch.manual_seed(0)
        on = build_model(cfg).to(device).eval()
        cfg.model.temporal.enabled = False
        off = build_model(cfg).to(device).eval()
        off.load_state_dict(on.state_dict())
        search = torch.randn(args.clip_len, 3, h, w, device=device)
        times: dict[str, list[float]] = {"on": [], "off": []}
        with torch.inference_mode():
            template = on.template_features(
                torch.randn(1, 3, h, w, device=device),
                torch.tensor([[w * 0.4, h * 0.4, w * 0.6, h * 0.6]], device=device),
            )
            for model in (on, off):  # warm-up
                model.forward_search(template, search, args.clip_len)
            for _ in range(args.repeats):
                times["on"].append(time_forward(on, template, search, args.clip_len, device))
                times["off"].append(time_forward(off, template, search, args.clip_len, device))
        t_on = statistics.median(times["on"]) / args.clip_len * 1e3
        t_off = statistics.median(times["off"]) / args.clip_len * 1e3
        print(f"{name:<7} {f'{w}x{h}':>10} {t_on:18.1f} {t_off:19.1f} {t_on / t_off:7.3f}")


if __name__ == "__main__":
    main()
