"""Iteration-based SGD training with exact resume, single process or DistributedDataParallel.

``Trainer.new`` sets a run up in a fresh folder, ``Trainer.resume`` continues one, and
``Trainer.run`` trains (``Trainer.step`` is one iteration). Launch one process per GPU (or CPU
worker) with ``torchrun``; rank 0 logs and checkpoints. The data order is a pure function of
``(seed, iteration, rank)``, and the checkpoint holds the model, optimizer, iteration and RNG
state, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from siamtfa import config as config_mod
from siamtfa.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from siamtfa.config import Config, TrainConfig
from siamtfa.data.datasets import Sequence, read_dataset
from siamtfa.data.io import atomic_write_text, remove_stale_temporaries
from siamtfa.data.sampling import ClipDataset, Source, collate_clips
from siamtfa.evaluation.score import score
from siamtfa.model import LOSS_KEYS, build_model
from siamtfa.tracking import Tracker
from siamtfa.tracking.tuning import track_all
from siamtfa.training.teacher import make_teacher

log = logging.getLogger(__name__)
LAST = "last.pt"
# what a run folder holds; a new run refuses a folder with the first three unless told to
# overwrite, and then removes all of them
RUN_FILES = ("run.json", LAST, "log.csv", "config.yaml", "best.pt", "val.csv", "tb")


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
    signal: int | None = None  # the signal that stopped the run early, if one did


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to checkpoint and stop at the next iteration."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self._old = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # second Ctrl-C: stop now (the last checkpoint is intact)
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process: a signal to the whole
    process group (Ctrl-C, ``scancel``, systemd) must not kill them before it checkpoints; it
    ends them when it stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, local, world


def validate(model: nn.Module, cfg: Config, sequences: list, device: torch.device) -> float:
    """GOT-10k AO of the online tracker on ``sequences`` (the model is left in eval mode)."""
    tracker = Tracker(model, "online", device, cfg.input, tracking=cfg.tracking)
    return score(track_all(tracker, sequences, progress=False), sequences).ao


def read_sources(data: list[str]) -> list[Source]:
    """The training sets of ``kind=path[:weight]`` specs."""
    if not data:
        raise ValueError("no training data: give --data KIND=PATH[:WEIGHT]")
    sources = []
    for spec in data:
        kind, path, weight = parse_data_spec(spec)
        sources.append(Source(f"{kind}:{path}", read_dataset(kind, path), weight))
    return sources


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class _RunLog:
    """``log.csv`` (one row per iteration) and, when installed, TensorBoard; rank 0 only."""

    def __init__(self, out: Path, start: int) -> None:
        for name in ("log.csv", "val.csv"):
            _drop_rows_after(out / name, start)
        new = not (out / "log.csv").exists() or start == 0
        self.file = open(out / "log.csv", "w" if new else "a", newline="")  # noqa: SIM115
        self.csv = csv.writer(self.file)
        if new:
            self.csv.writerow(["iteration", "lr", *LOSS_KEYS, "loss", "seconds"])
        self.out, self.tb = out, None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except ImportError:
            log.info("tensorboard not installed: logging to log.csv only")

    def step(self, it: int, lr: float, losses: dict[str, float], seconds: float) -> None:
        cells = (f"{losses[k]:.6g}" for k in (*LOSS_KEYS, "loss"))
        self.csv.writerow([it, f"{lr:.6g}", *cells, f"{seconds:.3f}"])
        if self.tb is not None:
            for k, v in losses.items():
                self.tb.add_scalar(f"loss/{k}", v, it)
            self.tb.add_scalar("lr", lr, it)

    def validation(self, it: int, ao: float) -> None:
        with open(self.out / "val.csv", "a") as f:
            f.write(f"{it},{ao:.6f}\n")
        if self.tb is not None:
            self.tb.add_scalar("val/ao", ao, it)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """One training run in a folder: ``Trainer.new(cfg, data, out)`` or
    ``Trainer.resume(out)``, then ``run()``.

    The constructor builds the model, optimizer and data and checks every input (data sets,
    ``--init``, a resumed checkpoint) without writing anything; ``new`` and ``resume`` write
    the run's files only once it has succeeded.
    """

    def __init__(
        self,
        cfg: Config,
        data: list[str],
        out: str | Path,
        val: str | None = None,
        device: str | None = None,
        progress: bool = True,
        state: dict | None = None,
    ) -> None:
        self.cfg, self.data, self.val, self.out = cfg, data, val, Path(out)
        self.progress = progress
        self.rank, local_rank, self.world = _distributed()
        if device is None:
            device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        tc = cfg.train
        torch.manual_seed(tc.seed)
        self.model = build_model(cfg).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            self.params,
            lr=lr_at(0, tc, self.world),
            momentum=tc.momentum,
            weight_decay=tc.weight_decay,
        )
        self.use_amp = tc.amp and self.device.type == "cuda"
        self.amp_dtype = getattr(torch, tc.amp_dtype)
        fp16 = self.use_amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.iteration, self.best_ao = 0, -1.0
        if state is not None:
            self._load_state(state)
        else:
            if tc.init:
                load_model_weights(self.model, load_checkpoint(tc.init)["model"], tc.init)
            torch.manual_seed(tc.seed * 1000 + self.rank)  # per-rank dropout / sampling
        self.teacher = make_teacher(cfg, self.model, self.device)
        self.sources = read_sources(data)
        self.val_seqs: list[Sequence] = []
        if val and tc.val_every:
            kind, path, _ = parse_data_spec(val)
            self.val_seqs = read_dataset(kind, path)
        self.wrapped: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _load_state(self, state: dict) -> None:
        """The model, optimizer, iteration and RNG of a ``last.pt``."""
        load_model_weights(self.model, state["model"], self.out / LAST)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state.get("scaler", {}))
        self.iteration = int(state["iteration"])
        self.best_ao = float(state.get("best_ao", -1.0))
        rng = state["rng"]
        torch.set_rng_state(rng[self.rank] if self.rank < len(rng) else rng[0])

    # ------------------------------------------------------------------ setting a run up
    @classmethod
    def new(
        cls, cfg: Config, data: list[str], out: str | Path, overwrite: bool = False, **kwargs
    ) -> Trainer:
        """A run from iteration 0 in ``out``, which must not hold a run unless ``overwrite``
        (then that run's files go, once every input has been checked)."""
        out = Path(out)
        held = [name for name in RUN_FILES[:3] if (out / name).exists()]
        if held and not overwrite:
            raise ValueError(
                f"{out} holds a run ({', '.join(held)}): continue it with --resume {out}, "
                "start over with --overwrite, or choose another --out"
            )
        trainer = cls(cfg, data, out, **kwargs)
        if trainer.rank == 0:
            for name in RUN_FILES if overwrite else ():
                _remove(out / name)
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out)
            trainer._write_run(
                {"config": config_mod.to_dict(cfg), "data": data, "val": trainer.val}
            )
        return trainer

    @classmethod
    def resume(cls, run_dir: str | Path, iterations: int | None = None, **kwargs) -> Trainer:
        """The run in ``run_dir`` from its ``last.pt``, with its own config and data;
        ``iterations`` re-plans its length (the lr steps move with it; ``run.json`` records
        it)."""
        run_dir = Path(run_dir)
        state = load_checkpoint(run_dir / LAST)
        try:
            run = json.loads((run_dir / "run.json").read_text())
            cfg = config_mod.from_dict(run["config"])
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{run_dir / 'run.json'}: cannot read the run ({err})") from None
        replanned = iterations is not None and iterations != cfg.train.iterations
        if replanned:
            log.warning("re-planned from %d to %d iterations", cfg.train.iterations, iterations)
            run.setdefault("replanned", []).append(
                {"at": int(state["iteration"]), "from": cfg.train.iterations, "to": iterations}
            )
            cfg.train.iterations = run["config"]["train"]["iterations"] = iterations
        trainer = cls(cfg, run["data"], run_dir, val=run.get("val"), state=state, **kwargs)
        if trainer.rank == 0:
            remove_stale_temporaries(run_dir)
            if replanned:
                trainer._write_run(run)
        return trainer

    def _write_run(self, run: dict) -> None:
        atomic_write_text(self.out / "run.json", json.dumps(run, indent=1))
        config_mod.save(self.cfg, self.out / "config.yaml")

    # ------------------------------------------------------------------ training
    def loader(self, stop: int) -> torch.utils.data.DataLoader:
        """Batches for iterations ``self.iteration .. stop - 1`` of this rank."""
        tc = self.cfg.train
        dataset = ClipDataset(self.sources, tc.clip_len, self.cfg.data, self.cfg.input, tc.seed)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=tc.batch_size,
            collate_fn=collate_clips,
            num_workers=tc.num_workers,
            sampler=IndexSampler(self.iteration, stop, tc.batch_size, self.rank, self.world),
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_stop_signals,
            # its own generator: drawing worker seeds from the global RNG would shift the
            # model's dropout/sampling randomness between a straight run and a resumed one
            generator=torch.Generator().manual_seed(tc.seed),
        )

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One SGD iteration on ``batch`` at the schedule's lr; returns the losses."""
        tc, dev = self.cfg.train, self.device
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.iteration, tc, self.world)
        inputs = [batch[k].to(dev) for k in ("template", "template_box", "search")]
        boxes, present = batch["search_boxes"].to(dev), batch["present"].to(dev)
        teacher = self.teacher(*inputs, boxes, present, tc.clip_len) if self.teacher else None
        with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.use_amp):
            losses = self.wrapped(*inputs, tc.clip_len, boxes, present, teacher=teacher)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        nn.utils.clip_grad_norm_(self.params, tc.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.iteration += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def save(self) -> Path:
        """``last.pt`` (rank 0 writes; every rank takes part in gathering the RNG states)."""
        rng = [torch.get_rng_state()]
        if self.world > 1:
            gathered = [torch.empty_like(rng[0]) for _ in range(self.world)]
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        path = self.out / LAST
        if self.rank == 0:
            save_checkpoint(
                {
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "iteration": self.iteration,
                    "rng": rng,
                    "config": config_mod.to_dict(self.cfg),
                    "best_ao": self.best_ao,
                },
                path,
            )
        return path

    def validate(self, run_log: _RunLog | None) -> float | None:
        """Track the validation set (rank 0); a new best AO writes ``best.pt``."""
        ao = None
        if self.rank == 0:
            ao = validate(self.model, self.cfg, self.val_seqs, self.device)
            run_log.validation(self.iteration, ao)
            if ao > self.best_ao:  # for inference: model and config only
                self.best_ao = ao
                save_checkpoint(
                    {
                        "model": self.model.state_dict(),
                        "config": config_mod.to_dict(self.cfg),
                        "iteration": self.iteration,
                        "best_ao": ao,
                    },
                    self.out / "best.pt",
                )
            self.wrapped.train()
        if self.world > 1:
            dist.barrier()
        return ao

    def _should_stop(self, requested: bool, began: float, time_limit: float | None) -> bool:
        stop = requested or (time_limit is not None and time.monotonic() - began >= time_limit)
        if self.world > 1:  # every rank stops at the same iteration
            flag = torch.tensor([int(stop)])
            dist.all_reduce(flag)
            stop = bool(flag.item())
        return stop

    def run(self, stop_after: int | None = None, time_limit: float | None = None) -> TrainResult:
        """Train to the end of the schedule, to iteration ``stop_after``, for ``time_limit``
        seconds, or until SIGINT/SIGTERM, checkpointing on the way and at the end."""
        from tqdm import tqdm

        tc = self.cfg.train
        stop_at = min(tc.iterations, stop_after or tc.iterations)
        run_log = _RunLog(self.out, self.iteration) if self.rank == 0 else None
        bar = tqdm(
            total=tc.iterations,
            initial=self.iteration,
            disable=not self.progress or self.rank != 0,
            desc="train",
            dynamic_ncols=True,
        )
        began, losses, path = time.monotonic(), {}, self.out / LAST
        self.wrapped.train()
        with _StopFlag() as stop:
            for batch in self.loader(stop_at):
                tick, lr = time.perf_counter(), lr_at(self.iteration, tc, self.world)
                losses = self.step(batch)
                it = self.iteration
                if run_log is not None:
                    run_log.step(it, lr, losses, time.perf_counter() - tick)
                    if it % tc.log_every == 0:
                        run_log.flush()
                    bar.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{lr:.2e}")
                    bar.update(1)
                stop_now = self._should_stop(stop.requested, began, time_limit)
                if self.val_seqs and (it % tc.val_every == 0 or it == tc.iterations):
                    ao = self.validate(run_log)
                    if ao is not None:
                        bar.write(
                            f"iteration {it}: validation AO {ao:.4f} (best {self.best_ao:.4f})"
                        )
                if it % tc.checkpoint_every == 0 or it in (tc.iterations, stop_after) or stop_now:
                    path = self.save()
                if stop_now:
                    log.warning("stopped at iteration %d; resume with --resume %s", it, self.out)
                    break
        bar.close()
        if run_log is not None:
            run_log.close()
        if self.world > 1:  # exit cleanly: free DDP state before tearing the group down
            del self.wrapped, self.optimizer
            gc.collect()
            dist.barrier()
            dist.destroy_process_group()
        return TrainResult(self.iteration, path, losses, self.model, stop.signal)


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
    overwrite: bool = False,
) -> TrainResult:
    """``Trainer.new(cfg, data, out, ...)`` (or ``Trainer.resume(out, iterations)`` when
    ``resume``; ``cfg``, ``data`` and ``val`` are then the run's own), then ``run``."""
    options = {"device": device, "progress": progress}
    if resume:
        trainer = Trainer.resume(out, iterations, **options)
    else:
        trainer = Trainer.new(cfg, data, out, overwrite, val=val, **options)
    return trainer.run(stop_after, time_limit)
