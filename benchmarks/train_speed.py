"""Training speed and peak memory: presets x (single process | 2-process DDP) [x AMP on CUDA].

Each configuration runs in a fresh process (peak memory is per configuration) on synthetic
tensors at the preset's input size: data loading is excluded, the SGD step included.

    python benchmarks/train_speed.py [--presets lite paper] [--iterations 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["lite", "paper"])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--worker")
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
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
