"""Iteration-based SGD training with exact resume, single process or DistributedDataParallel.

Launch one process per GPU (or CPU worker) with ``torchrun``; rank 0 logs and checkpoints.
The data order is a pure function of ``(seed, iteration, rank)``, and the checkpoint holds the
model, optimizer, iteration and RNG state, so ``resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from siamtfa import config as config_mod
from siamtfa.config import Config, TrainConfig
from siamtfa.data.datasets import read_dataset
from siamtfa.data.io import atomic_write_text
from siamtfa.data.sampling import ClipDataset, Source, collate_clips, frame_size
from siamtfa.model import LOSS_KEYS, build_model
from siamtfa.training.checkpoint import load_checkpoint, load_model_weights, save_checkpoint

log = logging.getLogger(__name__)
LAST = "last.pt"


def _drop_rows_after(path: Path, iteration: int) -> None:
    """A resumed run redoes the iterations after its checkpoint: drop their old log rows."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [
        line for line in lines if not line[:1].isdigit() or int(line.split(",", 1)[0]) <= iteration
    ]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))


def lr_at(iteration: int, cfg: TrainConfig, world_size: int = 1) -> float:
    """Linear warm-up, then x0.1 at each ``lr_steps`` fraction of the run; the base lr is scaled
    linearly with the global batch (``batch_size * world_size / base_batch_size``)."""
    base = cfg.lr * cfg.batch_size * world_size / cfg.base_batch_size
    drops = sum(iteration >= round(f * cfg.iterations) for f in cfg.lr_steps)
    factor = 0.1**drops
    if iteration < cfg.warmup_iterations:
        factor *= (iteration + 1) / cfg.warmup_iterations
    return base * factor


class IndexSampler(torch.utils.data.Sampler[int]):
    """Sample indices for iterations ``start, start + 1, ...`` of this rank."""

    def __init__(self, start: int, stop: int, batch: int, rank: int, world: int) -> None:
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for it in range(self.start, self.stop):
            first = (it * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.batch


def parse_data_spec(spec: str) -> tuple[str, str, float]:
    """``kind=path`` or ``kind=path:weight``."""
    if "=" not in spec:
        raise ValueError(f"--data {spec!r}: expected KIND=PATH[:WEIGHT]")
    kind, rest = spec.split("=", 1)
    path, weight = rest, 1.0
    if ":" in rest:
        head, tail = rest.rsplit(":", 1)
        try:
            path, weight = head, float(tail)
        except ValueError:
            path, weight = rest, 1.0
    return kind, path, weight


@dataclass
class TrainResult:
    iteration: int
    checkpoint: Path
    losses: dict[str, float]
    model: nn.Module


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop at the next iteration."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # second Ctrl-C: stop now (the last checkpoint is intact)
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def validate(model: nn.Module, cfg: Config, sequences: list, device: torch.device) -> float:
    """GOT-10k AO of the online tracker on ``sequences`` (the model is left in eval mode)."""
    from siamtfa.evaluation.metrics import got10k_metrics
    from siamtfa.tracking import Tracker
    from siamtfa.tracking.tuning import cover_of

    tracker = Tracker(model, "online", device, cfg.input)
    preds, gts, covers, res = {}, {}, {}, {}
    for seq in sequences:
        preds[seq.name] = tracker.track(seq.frames, seq.boxes[0])[0]
        gts[seq.name] = seq.boxes
        covers[seq.name] = cover_of(seq)
        res[seq.name] = frame_size(seq)
    return got10k_metrics(preds, gts, covers, res).ao


def train(
    cfg: Config,
    data: list[str],
    out: str | Path,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    val: str | None = None,
    iterations: int | None = None,
    time_limit: float | None = None,
) -> TrainResult:
    """Train ``cfg`` on ``data`` specs (``kind=path[:weight]``), writing to ``out``.

    ``resume`` continues the run in ``out`` (its saved config and data); ``stop_after`` ends
    the run, checkpointed, at that iteration of the schedule (for time-limited sessions).
    ``val`` (``kind=path``) is tracked every ``train.val_every`` iterations; its AO goes to
    ``val.csv`` and the best model to ``best.pt``. ``iterations`` with ``resume`` re-plans the
    run's length (the lr steps move with it; the run is then no longer the one it started as,
    which ``run.json`` records). ``time_limit`` (seconds of this call) checkpoints and stops
    the run at the first iteration past it, as SIGTERM does; ``resume`` continues it.
    """
    out = Path(out)
    rank, local_rank, world = _distributed()
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    tc = cfg.train

    state = None
    if resume:
        state = load_checkpoint(out / LAST)
        run = json.loads((out / "run.json").read_text())
        cfg = config_mod.from_dict(run["config"])
        data, val = run["data"], run.get("val")
        tc = cfg.train
        if iterations is not None and iterations != tc.iterations:
            log.warning("re-planned from %d to %d iterations", tc.iterations, iterations)
            run.setdefault("replanned", []).append(
                {"at": int(state["iteration"]), "from": tc.iterations, "to": iterations}
            )
            tc.iterations = run["config"]["train"]["iterations"] = iterations
            if rank == 0:
                atomic_write_text(out / "run.json", json.dumps(run, indent=1))
                config_mod.save(cfg, out / "config.yaml")
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(
            json.dumps({"config": config_mod.to_dict(cfg), "data": data, "val": val}, indent=1)
        )
        config_mod.save(cfg, out / "config.yaml")

    torch.manual_seed(tc.seed)
    model = build_model(cfg).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=lr_at(0, tc, world), momentum=tc.momentum, weight_decay=tc.weight_decay
    )
    use_amp = tc.amp and dev.type == "cuda"
    amp_dtype = getattr(torch, tc.amp_dtype)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state.get("scaler", {}))
        start = int(state["iteration"])
        torch.set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
    else:
        if tc.init:
            load_model_weights(model, load_checkpoint(tc.init)["model"], tc.init)
        torch.manual_seed(tc.seed * 1000 + rank)  # per-rank dropout / sampling randomness
    wrapped: nn.Module = model
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    sources = []
    for spec in data:
        kind, path, weight = parse_data_spec(spec)
        kind = "got10k" if kind == "synthetic" else kind
        sources.append(Source(f"{kind}:{path}", read_dataset(kind, path), weight))
    dataset = ClipDataset(sources, tc.clip_len, cfg.data, cfg.input, seed=tc.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=tc.batch_size,
        collate_fn=collate_clips,
        num_workers=tc.num_workers,
        sampler=IndexSampler(
            start, min(tc.iterations, stop_after or tc.iterations), tc.batch_size, rank, world
        ),
        pin_memory=dev.type == "cuda",
        # its own generator: drawing worker seeds from the global RNG would shift the model's
        # dropout/sampling randomness between a straight run and a resumed one
        generator=torch.Generator().manual_seed(tc.seed),
    )

    val_seqs = []
    if val and tc.val_every:
        kind, path, _ = parse_data_spec(val)
        val_seqs = read_dataset("got10k" if kind == "synthetic" else kind, path)
    best_ao = float(state.get("best_ao", -1.0)) if state is not None else -1.0

    writer = csv_file = tb = None
    if rank == 0:
        for name in ("log.csv", "val.csv"):
            _drop_rows_after(out / name, start)
        new_log = not (out / "log.csv").exists() or start == 0
        csv_file = open(out / "log.csv", "w" if new_log else "a", newline="")  # noqa: SIM115
        writer = csv.writer(csv_file)
        if new_log:
            writer.writerow(["iteration", "lr", *LOSS_KEYS, "loss", "seconds"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out / "tb"))
        except ImportError:
            log.info("tensorboard not installed: logging to log.csv only")

    def checkpoint(iteration: int) -> Path:
        rng = [torch.get_rng_state()]
        if world > 1:
            gathered = [torch.empty_like(rng[0]) for _ in range(world)]
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        path = out / LAST
        if rank == 0:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "iteration": iteration,
                    "rng": rng,
                    "config": config_mod.to_dict(cfg),
                    "best_ao": best_ao,
                },
                path,
            )
        return path

    from tqdm import tqdm

    bar = tqdm(
        total=tc.iterations,
        initial=start,
        disable=not progress or rank != 0,
        desc="train",
        dynamic_ncols=True,
    )
    it = start
    began = time.monotonic()
    last_losses: dict[str, float] = {}
    path = out / LAST
    wrapped.train()
    with _StopFlag() as stop:
        for batch in loader:
            tick = time.perf_counter()
            lr = lr_at(it, tc, world)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                losses = wrapped(
                    batch["template"].to(dev),
                    batch["template_box"].to(dev),
                    batch["search"].to(dev),
                    tc.clip_len,
                    batch["search_boxes"].to(dev),
                    batch["present"].to(dev),
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["loss"]).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, tc.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            it += 1
            last_losses = {k: float(v.detach()) for k, v in losses.items()}
            if rank == 0:
                writer.writerow(
                    [
                        it,
                        f"{lr:.6g}",
                        *(f"{last_losses[k]:.6g}" for k in (*LOSS_KEYS, "loss")),
                        f"{time.perf_counter() - tick:.3f}",
                    ]
                )
                if tb is not None:
                    for k, v in last_losses.items():
                        tb.add_scalar(f"loss/{k}", v, it)
                    tb.add_scalar("lr", lr, it)
                if it % tc.log_every == 0:
                    csv_file.flush()
                bar.set_postfix(loss=f"{last_losses['loss']:.3f}", lr=f"{lr:.2e}")
                bar.update(1)
            stop_now = stop.requested or (
                time_limit is not None and time.monotonic() - began >= time_limit
            )
            if world > 1:
                flag = torch.tensor([int(stop_now)])
                dist.all_reduce(flag)
                stop_now = bool(flag.item())
            if val_seqs and it % tc.val_every == 0:
                if rank == 0:
                    ao = validate(model, cfg, val_seqs, dev)
                    with open(out / "val.csv", "a") as f:
                        f.write(f"{it},{ao:.6f}\n")
                    if tb is not None:
                        tb.add_scalar("val/ao", ao, it)
                    if ao > best_ao:  # for inference: model and config only
                        best_ao = ao
                        save_checkpoint(
                            {
                                "model": model.state_dict(),
                                "config": config_mod.to_dict(cfg),
                                "iteration": it,
                                "best_ao": ao,
                            },
                            out / "best.pt",
                        )
                    bar.write(f"iteration {it}: validation AO {ao:.4f} (best {best_ao:.4f})")
                    wrapped.train()
                if world > 1:
                    dist.barrier()
            if it % tc.checkpoint_every == 0 or it in (tc.iterations, stop_after) or stop_now:
                path = checkpoint(it)
            if stop_now:
                log.warning("stopped at iteration %d; resume with --resume %s", it, out)
                break
    bar.close()
    if rank == 0:
        csv_file.close()
        if tb is not None:
            tb.close()
    if world > 1:  # exit cleanly: free DDP state before tearing the group down
        del wrapped, optimizer
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(it, path, last_losses, model)
