"""Where a training iteration's time goes: ``torch.profiler`` over a few SGD steps, split by
the model's top-level modules (backbone, fpn, modulator, rpn, roi_head), backward and the
optimizer step, then the ops with the most self time.

Synthetic tensors at the config's input size and batch, so data loading is excluded (one clip
costs ~25 ms on one CPU core; the loader's workers keep up). CPU time per part against device
time tells launch- and Python-bound parts (CPU ≫ CUDA) from kernel-bound ones.

    python benchmarks/train_profile.py [--config configs/finetune_lite_gpu.yaml] [--batch 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from train_speed import synthetic_batch  # this folder is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
MARK = "## "  # prefix of this script's own profiler ranges


def mark_children(model: torch.nn.Module) -> None:
    """A profiler range around every call of each top-level module (a module called twice,
    such as the backbone for the template and the search frames, counts both calls)."""
    for name, child in model.named_children():
        ranges: list[record_function] = []

        def enter(_module, _inputs, name=name, ranges=ranges) -> None:
            ranges.append(record_function(MARK + name))
            ranges[-1].__enter__()

        def leave(_module, _inputs, _output, ranges=ranges) -> None:
            ranges.pop().__exit__(None, None, None)

        child.register_forward_pre_hook(enter)
        child.register_forward_hook(leave)


def main() -> None:
    from siamtfa import build_model
    from siamtfa.config import load
    from siamtfa.data.transforms import canvas_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "finetune_lite_gpu.yaml"))
    parser.add_argument("--batch", type=int, help="clips per step (default: the config's)")
    parser.add_argument("--iterations", type=int, default=5, help="profiled steps")
    parser.add_argument("--rows", type=int, default=15, help="ops listed")
    args = parser.parse_args()

    cfg = load(args.config)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    n, t = args.batch or cfg.train.batch_size, cfg.train.clip_len
    h, w = canvas_size(cfg.input)
    torch.manual_seed(0)
    model = build_model(cfg).to(dev).train()
    mark_children(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = synthetic_batch(n, t, h, w, dev)
    use_amp = cuda and cfg.train.amp  # as the training engine does
    amp_dtype = getattr(torch, cfg.train.amp_dtype)

    def step() -> None:
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
            loss = model(*batch)["loss"]
        opt.zero_grad()
        with record_function(MARK + "backward"):
            loss.backward()
        with record_function(MARK + "optimizer"):
            opt.step()

    for _ in range(2):  # warm-up: allocator, kernel selection
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        tick = time.perf_counter()
        for _ in range(args.iterations):
            step()
        if cuda:
            torch.cuda.synchronize()
        per_it = (time.perf_counter() - tick) / args.iterations

    where = "cuda" if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"{where}; {Path(args.config).name}: {n} clips x {t} frames at {w}x{h}")
    print(f"{per_it:.3f} s per iteration under the profiler ({args.iterations} steps)")
    print(f"{'part':<12} {'CPU ms/it':>10} {'CUDA ms/it':>11}")
    events = {e.key: e for e in prof.key_averages() if e.key.startswith(MARK)}
    for key in sorted(events, key=lambda k: -events[k].cpu_time_total):
        e = events[key]
        device_us = getattr(e, "device_time_total", 0.0) if cuda else 0.0
        print(
            f"{key[len(MARK) :]:<12} {e.cpu_time_total / 1e3 / args.iterations:10.1f} "
            f"{device_us / 1e3 / args.iterations:11.1f}"
        )
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))


if __name__ == "__main__":
    main()
