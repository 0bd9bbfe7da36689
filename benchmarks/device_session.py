"""One prepared run for a short GPU lease: fine-tune the default on the GPU, time it on CUDA.

A lease here is ~15 minutes of device time, start-up included, one command at most 10 minutes,
and only a few files of at most 16 MiB come back. So the work is one script with a time budget
per step, each step logged and allowed to fail without stopping the next:

1. ``env``: GPU, driver, torch and CUDA versions.
2. ``data``: a training set like the default's (300 synthetic sequences, seed 1000, textured
   from the real *train* sequences) and 150 whose target changes its look and moves faster
   (seed 1300, ``--appearance-change 2 --motion 1 6``; see
   ``docs/results/finetune_appearance.md``), and 150 whose targets follow the real *train*
   sequences' paths (seed 1400, ``--trajectories``: real motion and size change, which the
   default tracks far worse than the random walk; ``docs/results/real_motion_validation.md``),
   rendered there by all CPU cores; the *train* sequences themselves join it at weight 0.2, as
   in the default's recipe.
3. ``train``: a probe measures seconds per iteration, then the shipped default is fine-tuned
   (``configs/finetune_lite_gpu.yaml``) for as many iterations as fit ``--train-seconds``, so
   the lr schedule completes; ``--time-limit`` stops it, checkpointed, if the estimate was off.
4. ``export``: fp16 weights + config, split into parts that fit the file limit, with SHA-256s.
5. ``profile``: ``benchmarks/train_profile.py`` with the training config: where a training
   step's time goes on CUDA (the first lease ran 0.47 s per iteration, not loader-bound).
6. ``roi_align``: ``benchmarks/roi_align_speed.py`` on CUDA (the ``embedding_bag`` RoIAlign
   was chosen on the CPU; is it also the faster one there?).
7. ``speed``: ``benchmarks/speed.py`` on CUDA (lite and paper, online and clip) with the
   shipped default (weights do not change the speed; its tracking settings make the "tuned"
   row real), within what is left of ``--total-seconds``.

Steps 5–7 write to one file, ``speed.txt``.

What comes back: 3 checkpoint parts, the manifest, ``log.csv``, ``run.json``, ``session.log``
and ``speed.txt``: 8 files, the most a call returns.

Here (CPU), before the lease: the *train* sequences do not travel (only the checkout does), so
``prepare`` writes a smaller copy (at most 640 pixels wide, ~40 MiB; every frame, so that the
paths keep their real speed) for the textures and trajectories::

    python benchmarks/device_session.py prepare --out .device/textures

On the device (the checkout's python3 and packages; nothing is installed; at most 9 minutes
with the defaults, so give the call a limit of ~580 s and carry ``.device``)::

    PYTHONPATH=src python3 benchmarks/device_session.py run --textures .device/textures --out $OUT

Back here, reassemble and check the weights, then tune and evaluate on CPU::

    python benchmarks/device_session.py join DIR --out runs/device/finetuned.pt
    siamtfa export runs/device/finetuned.pt runs/device/tuned.pt --max-upsample 4 \\
        --tune synthetic=runs/tune/syn_5001 synthetic=runs/tune/syn_5004 \\
        synthetic=runs/tune/syn_5006 --search-target-size 40
    python benchmarks/accuracy.py --checkpoint runs/device/tuned.pt

(how the validation sets are made: ``docs/results/finetune_appearance.md`` and
``docs/results/real_motion_validation.md``, whose last section is the rule in force: add
``synthetic=runs/traj/syn_5007`` (and 5008, 5009) to the tuning sets; the candidate ships only
if, by ``benchmarks/tracked_ao.py`` and ``benchmarks/compare_ao.py``, its tracked AO minus the
default's on fresh real-motion sequences no candidate has been tracked on (seeds after those
the study's last round used) has a 95 % interval above zero and on the 36 old sequences it is
>= the default's - 0.02 (default: 0.660); decide before running ``accuracy.py``)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "src" / "siamtfa" / "weights" / "siamtfa_lite.pt"
PART_BYTES = 15 * 2**20  # one file back from the device: at most 16 MiB
SPEED_CONFIGS = [  # most wanted first: the step's deadline may cut the last ones
    "lite online 320 bf16+cl",
    "lite clip 320 bf16+cl",
    "lite online 320 bf16+cl, compiled",
    "lite clip 320 bf16+cl, compiled",
    "lite online fp32",
    "paper online bf16+cl",
    "paper clip bf16+cl",
    "lite online 320 bf16+cl, no shift",
    "lite network 320 bf16+cl, batch 1",
    "lite network 320 bf16+cl, batch 3",
    "paper online fp32",
    "lite online 320 bf16+cl, tuned",
]


# ---------------------------------------------------------------------------- here: prepare
def prepare(source: Path, out: Path, step: int = 1, max_side: int = 640) -> int:
    """Every ``step``-th frame of each sequence in ``source`` (a folder of sequence folders with
    ``groundtruth.txt``), at most ``max_side`` pixels wide or high, boxes scaled to match, as
    frame folders that ``read_folder`` reads. Returns the number of frames written."""
    from PIL import Image

    from siamtfa.data.datasets import read_folder

    written = 0
    names = []
    for seq in read_folder(source):
        folder = out / seq.name
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for k, t in enumerate(range(0, len(seq.frames), step), 1):
            image = Image.open(seq.frames[t]).convert("RGB")
            scale = min(1.0, max_side / max(image.size))
            if scale < 1:
                size = (round(image.width * scale), round(image.height * scale))
                image = image.resize(size, Image.BILINEAR)
            image.save(folder / f"{k:08d}.jpg", quality=90)
            lines.append(",".join(f"{v:.3f}" for v in seq.boxes[t] * scale))
            written += 1
        (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
        names.append(seq.name)
    (out / "list.txt").write_text("\n".join(names) + "\n")
    return written


# ---------------------------------------------------------------------------- back here: join
def split(path: Path, out: Path, part_bytes: int = PART_BYTES) -> dict:
    """``path`` cut into ``out/<name>.partK`` files of at most ``part_bytes``; the manifest
    (also returned) holds their names and the SHA-256 of the whole and of each part."""
    data = path.read_bytes()
    parts = []
    for k, first in enumerate(range(0, len(data), part_bytes)):
        chunk = data[first : first + part_bytes]
        name = f"{path.name}.part{k}"
        (out / name).write_bytes(chunk)
        parts.append({"name": name, "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "parts": parts}
    (out / f"{path.name}.manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def join(folder: Path, out: Path) -> Path:
    """Reassemble the file described by the one ``*.manifest.json`` in ``folder`` into
    ``out``, refusing a missing or corrupt part by name; the result must load as a checkpoint."""
    from siamtfa.checkpoint import load_checkpoint
    from siamtfa.data.io import atomic_write_bytes

    manifests = sorted(folder.glob("*.manifest.json"))
    if len(manifests) != 1:
        raise FileNotFoundError(f"{folder}: expected one *.manifest.json, found {len(manifests)}")
    manifest = json.loads(manifests[0].read_text())
    chunks = []
    for part in manifest["parts"]:
        path = folder / part["name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: part missing (listed in {manifests[0]})")
        chunk = path.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise ValueError(f"{path}: SHA-256 differs from {manifests[0]} (corrupt part)")
        chunks.append(chunk)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError(f"{folder}: the joined parts do not give {manifest['file']}")
    atomic_write_bytes(out, data)
    load_checkpoint(out)  # a truncated or foreign file fails here, named
    return out


# ---------------------------------------------------------------------------- there: run
class Session:
    """Runs the steps, each within its own deadline, logging to ``OUT/session.log``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.log_path = out / "session.log"
        self.start = time.monotonic()
        self.status: dict[str, str] = {}

    def log(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f} s] {message}"
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def step(self, name: str, fn, *args) -> object:
        self.log(f"{name}: start")
        tick = time.monotonic()
        try:
            result = fn(*args)
        except Exception as err:  # one failed step must not cost the lease's other results
            self.status[name] = f"failed after {time.monotonic() - tick:.0f} s: {err!r}"
            self.log(f"{name}: {self.status[name]}")
            return None
        self.status[name] = f"done in {time.monotonic() - tick:.0f} s"
        self.log(f"{name}: {self.status[name]}")
        return result

    def command(self, cmd: list[str], seconds: float, output: Path | None = None) -> None:
        """Run ``cmd`` for at most ``seconds``, its output streamed to ``output`` (or the log);
        a non-zero exit or the deadline raises."""
        self.log("$ " + " ".join(cmd))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
        with open(output or self.log_path, "a") as sink:
            proc = subprocess.run(
                cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, timeout=seconds, check=False
            )
        if proc.returncode != 0:
            raise RuntimeError(f"exit status {proc.returncode}: {' '.join(cmd[:4])} ...")


def environment() -> str:
    import torch

    lines = [f"python {sys.version.split()[0]}, torch {torch.__version__}"]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(
            f"cuda {torch.version.cuda}, {props.name}, {props.total_memory / 2**30:.0f} GiB, "
            f"{props.multi_processor_count} SMs"
        )
    else:
        lines.append("no CUDA device: CPU (a rehearsal of the session)")
    lines.append(f"{os.cpu_count()} CPU cores")
    return "\n".join(lines)


def seconds_per_iteration(
    session: Session, cli: list[str], train_args: list[str], work: Path
) -> float:
    """Steady-state seconds per iteration from two short runs (8 and 24 iterations): their
    difference removes start-up (model build, loader workers, kernel selection)."""
    counts, walls = (8, 24), []
    for n in counts:
        tick = time.monotonic()
        probe = str(work / f"probe_{n}")
        session.command([*cli, "train", *train_args, "--out", probe, "--iterations", str(n)], 600)
        walls.append(time.monotonic() - tick)
    return max((walls[1] - walls[0]) / (counts[1] - counts[0]), 1e-3)


def run(args: argparse.Namespace) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    session = Session(out)
    cli = [sys.executable, "-m", "siamtfa.cli"]
    session.log(session.step("env", environment) or "env unknown")
    cuda = torch.cuda.is_available()

    workers = max(1, (os.cpu_count() or 2) - 1)

    def render(step: str, folder: Path, sequences: int, seed: int, *extra: str) -> None:
        make = [*cli, "make-synthetic", "--out", str(folder), "--sequences", str(sequences)]
        make += ["--frames", "100", "--seed", str(seed), "--workers", str(workers), *extra]
        make += ["--textures", args.textures] if args.textures else []
        session.step(step, session.command, make, args.data_seconds)

    data = work / "syn_train"
    render("data", data, args.sequences, 1000)
    changing = work / "syn_appearance"
    if args.appearance_sequences:
        extra = ("--appearance-change", "2", "--motion", "1", "6")
        render("appearance data", changing, args.appearance_sequences, 1300, *extra)
    moving = work / "syn_real_motion"
    if args.motion_sequences and args.textures:
        extra = ("--trajectories", args.textures)
        render("real-motion data", moving, args.motion_sequences, 1400, *extra)

    run_dir = work / "finetune"
    train_args = ["--config", args.config, "--data", f"synthetic={data}"]
    for extra_set in (changing, moving):
        if (extra_set / "list.txt").is_file():
            train_args += ["--data", f"synthetic={extra_set}"]
    if args.textures:  # the real train sequences at the default's weight (at most 640 px here)
        train_args += ["--data", f"folder={args.textures}:0.2"]
    train_args += ["--init", str(args.init)] if args.init else []
    per_it = session.step("probe", seconds_per_iteration, session, cli, train_args, work)
    if per_it:
        iterations = max(10, int(args.train_seconds / per_it))
        session.log(f"probe: {per_it:.3f} s per iteration -> {iterations} iterations planned")
        full = [*cli, "train", *train_args, "--out", str(run_dir), "--iterations", str(iterations)]
        full += ["--time-limit", str(args.train_seconds * 1.1)]
        session.step("train", session.command, full, args.train_seconds * 1.3 + 60)
    for name in ("log.csv", "run.json"):
        if (run_dir / name).is_file():
            (out / name).write_bytes((run_dir / name).read_bytes())

    exported = work / "finetuned.pt"
    if (run_dir / "last.pt").is_file():
        export = [*cli, "export", str(run_dir / "last.pt"), str(exported)]
        session.step("export", session.command, export, 120)
        if exported.is_file():
            session.step("split", split, exported, out)

    timings = out / "speed.txt"  # one file for these: a call brings back 8 files at most
    profile = [sys.executable, str(ROOT / "benchmarks" / "train_profile.py")]
    session.step("profile", session.command, [*profile, "--config", args.config], 90, timings)
    ops = [sys.executable, str(ROOT / "benchmarks" / "roi_align_speed.py")]
    session.step("roi_align", session.command, ops, 60, timings)
    speed = [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--passes", "3"]
    speed += ["--frames", "60" if cuda else "30"]  # a GPU frame takes milliseconds
    speed += ["--checkpoint", str(DEFAULT)]
    speed += ["--only", *(SPEED_CONFIGS if cuda else SPEED_CONFIGS[:2])]
    left = args.total_seconds - (time.monotonic() - session.start)
    seconds = min(args.speed_seconds, left)
    if seconds > 10:
        session.step("speed", session.command, speed, seconds, timings)
    else:
        session.log(f"speed: skipped, {left:.0f} s left of --total-seconds")
    session.log(json.dumps(session.status, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="here: a small copy of the train sequences to carry")
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "data" / "real" / "train"))
    p.add_argument("--out", default=".device/textures")
    p = sub.add_parser("run", help="on the device: data, fine-tuning, export, CUDA speed")
    p.add_argument("--out", required=True, help="$OUT: what comes back")
    p.add_argument("--work", default="/tmp/siamtfa_session", help="scratch (does not come back)")
    p.add_argument("--textures", help="the folder `prepare` wrote")
    p.add_argument("--config", default=str(ROOT / "configs" / "finetune_lite_gpu.yaml"))
    p.add_argument("--init", default=str(DEFAULT), help="'' to train from scratch")
    p.add_argument("--sequences", type=int, default=300)
    p.add_argument("--appearance-sequences", type=int, default=150, help="0: none")
    p.add_argument(
        "--motion-sequences", type=int, default=150, help="real paths (needs --textures); 0: none"
    )
    p.add_argument("--data-seconds", type=float, default=90)
    p.add_argument("--train-seconds", type=float, default=240)
    p.add_argument("--speed-seconds", type=float, default=150)
    p.add_argument(
        "--total-seconds", type=float, default=540, help="the speed step gets what is left"
    )
    p = sub.add_parser("join", help="back here: reassemble the fine-tuned checkpoint")
    p.add_argument("folder", help="the files that came back")
    p.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        frames = prepare(Path(args.source), Path(args.out))
        size = sum(f.stat().st_size for f in Path(args.out).rglob("*")) / 2**20
        print(f"{frames} frames, {size:.1f} MiB in {args.out}: carry its top folder")
    elif args.command == "run":
        run(args)
    else:
        print(f"wrote {join(Path(args.folder), Path(args.out))}")


if __name__ == "__main__":
    main()
