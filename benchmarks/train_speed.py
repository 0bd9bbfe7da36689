"""Training speed and peak memory: presets x (single process | 2-process DDP) [x AMP on CUDA];
with ``--profile CONFIG``, where one config's training iteration spends its time.

Each configuration runs in a fresh process (peak memory is per configuration) on synthetic
tensors at the preset's input size: data loading is excluded (one clip costs ~25 ms on one
CPU core; the loader's workers keep up), the SGD step included. The profile splits a step by
the model's top-level modules (backbone, fpn, modulator, rpn, roi_head), backward and the
optimizer step, then lists the ops with the most self time; CPU time per part against device
time tells launch- and Python-bound parts (CPU >> CUDA) from kernel-bound ones.

    python benchmarks/train_speed.py [--presets lite paper] [--iterations 3]
    python benchmarks/train_speed.py --profile configs/mobile_cpu.yaml [--batch 2] [--iterations 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

PAPER_BATCH = (1, 2)  # clips x frames for paper on CPU: a full batch takes minutes per step


def synthetic_batch(n: int, t: int, h: int, w: int, dev: torch.device) -> tuple:
    """Training-forward arguments for ``n`` clips of ``t`` random ``h`` x ``w`` frames, the
    target a fixed box in the middle of every frame."""
    box = torch.tensor([[w * 0.4, h * 0.4, w * 0.6, h * 0.65]], device=dev)
    return (
        torch.randn(n, 3, h, w, device=dev),
        box.repeat(n, 1),
        torch.randn(n * t, 3, h, w, device=dev),
        t,
        box.repeat(n * t, 1),
    )


def worker(preset_name: str, iterations: int, amp: bool) -> None:
    import torch.distributed as dist

    from siamtfa import build_model
    from siamtfa.config import preset
    from siamtfa.data.transforms import canvas_size

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available()
    dev = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if cuda else "cpu")
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    cfg = preset(preset_name)
    n, t = (cfg.train.batch_size, cfg.train.clip_len)
    if preset_name == "paper" and not cuda:
        n, t = PAPER_BATCH
    h, w = canvas_size(cfg.input)
    torch.manual_seed(0)
    model = build_model(cfg).to(dev).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    batch = synthetic_batch(n, t, h, w, dev)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    times = []
    for i in range(iterations + 1):  # the first is warm-up
        if cuda:
            torch.cuda.synchronize()
        tick = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
            loss = ddp(*batch)["loss"]
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - tick)
    peak = (
        torch.cuda.max_memory_allocated(dev)
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ) / 2**20
    stats = torch.tensor([sum(times) / len(times), peak])
    if world > 1:
        gathered = [torch.zeros(2) for _ in range(world)]
        dist.all_gather(gathered, stats)
        stats = torch.stack(gathered)
        del ddp, opt
        dist.barrier()
        dist.destroy_process_group()
    else:
        stats = stats[None]
    if rank == 0:
        print(
            json.dumps(
                {
                    "sec_per_it": float(stats[:, 0].max()),
                    "peak_mb": float(stats[:, 1].sum()),
                    "clips_per_it": n * world,
                    "frames": t,
                    "size": f"{w}x{h}",
                }
            )
        )


def run(preset_name: str, procs: int, iterations: int, amp: bool, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    args = [__file__, "--worker", preset_name, "--iterations", str(iterations)]
    args += ["--amp"] if amp else []
    if procs > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={procs}",
            "--master_port=29611",
            *args,
        ]
    else:
        cmd = [sys.executable, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


MARK = "## "  # prefix of the profile's own ranges


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


def profile_config(args: argparse.Namespace) -> None:
    """Where a training iteration's time goes for ``args.profile`` (a config): per top-level
    module, backward and optimizer step, then the ops with the most self time."""
    from siamtfa import build_model
    from siamtfa.config import load
    from siamtfa.data.transforms import canvas_size

    cfg = load(args.profile)
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
    print(f"{where}; {Path(args.profile).name}: {n} clips x {t} frames at {w}x{h}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["lite", "paper"])
    parser.add_argument("--iterations", type=int, default=3, help="timed (or profiled) steps")
    parser.add_argument("--worker")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--profile", metavar="CONFIG", help="profile this config's step instead")
    parser.add_argument("--batch", type=int, help="--profile: clips per step (default: config's)")
    parser.add_argument("--rows", type=int, default=15, help="--profile: ops listed")
    args = parser.parse_args()
    if args.profile:
        profile_config(args)
        return
    if args.worker:
        worker(args.worker, args.iterations, args.amp)
        return
    cores = os.cpu_count() or 1
    cuda = torch.cuda.is_available()
    modes = [(1, False), (2, False)] if not cuda else [(1, False), (1, True)]
    print(
        f"{'cuda' if cuda else f'cpu, {cores} cores'}; mean of {args.iterations} iterations "
        "after one warm-up; synthetic tensors (no data loading)"
    )
    print(
        f"{'preset':<7} {'input':>9} {'setup':<24} {'clips/it':>8} {'s/it':>7} {'clips/s':>8} "
        f"{'peak MB':>8} {'speed-up':>8}"
    )
    for name in args.presets:
        base = None
        for procs, amp in modes:
            threads = max(1, cores // procs)
            r = run(name, procs, args.iterations, amp, threads)
            rate = r["clips_per_it"] / r["sec_per_it"]
            base = base or rate
            setup = (
                f"{procs} proc x {threads} thr"
                if not cuda
                else f"1 GPU, AMP {'on' if amp else 'off'}"
            ) + f", T={r['frames']}"
            print(
                f"{name:<7} {r['size']:>9} {setup:<24} {r['clips_per_it']:>8} "
                f"{r['sec_per_it']:7.2f} {rate:8.3f} {r['peak_mb']:8.0f} {rate / base:8.2f}"
            )


if __name__ == "__main__":
    main()
