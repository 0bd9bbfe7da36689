"""The ``siamtfa`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from siamtfa import __version__, config
from siamtfa.data.datasets import DATASET_KINDS
from siamtfa.data.synthetic import MIN_SIDE
from siamtfa.model import build_model
from siamtfa.tracking.baselines import KINDS


def _load_config(args: argparse.Namespace) -> config.Config:
    return config.load(args.config) if args.config else config.preset(args.preset or "paper")


def model_summary(model: torch.nn.Module) -> str:
    rows = []
    total = trainable = 0
    for name, child in model.named_children():
        n = sum(p.numel() for p in child.parameters())
        t = sum(p.numel() for p in child.parameters() if p.requires_grad)
        total, trainable = total + n, trainable + t
        rows.append(f"  {name:<12} {n / 1e6:8.2f} M params ({t / 1e6:.2f} M trainable)")
    rows.append(f"  {'total':<12} {total / 1e6:8.2f} M params ({trainable / 1e6:.2f} M trainable)")
    return "\n".join(rows)


TRUNKS = {"resnet": "ResNet-{depth}", "mobilenet_v3": "MobileNetV3-Small", "csp": "NanoDet CSP"}


def cmd_summary(args: argparse.Namespace) -> int:
    """The model's parts and parameter counts: a preset, a YAML config, a checkpoint, or (none
    given) the shipped default that ``track``, ``eval`` and ``demo`` use."""
    from siamtfa.tracking import load_model
    from siamtfa.tracking.tracker import DEFAULT_CHECKPOINT

    if args.preset or args.config:
        cfg = _load_config(args)
        model, what = build_model(cfg), args.config or f"preset {args.preset}"
    else:
        what = args.checkpoint or DEFAULT_CHECKPOINT
        model, cfg = load_model(what)
    trunk = TRUNKS[cfg.model.backbone.arch].format(depth=cfg.model.backbone.depth)
    print(
        f"SiamTFA ({what}): {trunk}-FPN ({cfg.model.fpn_channels} channels), temporal shift "
        f"{'on' if cfg.model.temporal.enabled else 'off'}, adversarial dropout "
        f"{'on' if cfg.model.adversarial_dropout.enabled else 'off'}, input "
        f"{cfg.input.max_size}x{cfg.input.min_size}"
    )
    print(model_summary(model))
    return 0


# the _tracker_options and their defaults: another value means nothing to OpenCV's trackers
SIAMTFA_ONLY = {
    "checkpoint": None,
    "device": None,
    "precision": "fp32",
    "channels_last": None,
    "compile": False,
    "paper_rule": False,
    "tracking": None,
}


def _make_tracker(kind: str, checkpoint: str | None, mode: str, options: argparse.Namespace):
    """(tracker, results-folder name, info) for ``siamtfa`` or one of OpenCV's ``KINDS``;
    ``options`` holds the ``_tracker_choice`` and ``_tracker_options``."""
    from siamtfa.tracking import OpenCVTracker, Tracker
    from siamtfa.tracking.tracker import DEFAULT_CHECKPOINT, default_tracker_source

    device, precision = options.device, options.precision
    channels_last, paper_rule = options.channels_last, options.paper_rule
    compiled = options.compile
    overrides = _tracking_overrides(options.tracking or [])
    if kind != "siamtfa":
        given = [
            f"--{k.replace('_', '-')}" for k, v in SIAMTFA_ONLY.items() if vars(options)[k] != v
        ]
        given += ["--mode clip"] if mode != "online" else []
        if given:
            raise ValueError(f"{', '.join(given)}: siamtfa's options, not {kind}'s")

    if kind in ("csrt", "kcf"):
        return OpenCVTracker(kind), kind, {"tracker": kind}
    if kind == "nanotrack":
        version = options.nanotrack_version
        tracker = OpenCVTracker(kind, options.model_dir, version)
        models = [p.name for p in tracker.models]
        name = "nanotrack" + ("" if version == "v2" else f"-{version}")
        return tracker, name, {"tracker": kind, "version": version, "models": models}
    if kind != "siamtfa":
        raise ValueError(f"unknown tracker {kind!r}: use siamtfa, {', '.join(KINDS)}")
    if checkpoint:
        source, input_cfg, trained = checkpoint, None, True
    else:
        source, input_cfg, trained = default_tracker_source()
        if not trained:
            print(
                f"NOTE: default checkpoint {DEFAULT_CHECKPOINT} not found: using UNTRAINED "
                "lite weights; pass --checkpoint to use your own.",
                file=sys.stderr,
            )
    tracker = Tracker(
        source,
        mode,
        device,
        input_cfg,
        precision=precision,
        channels_last=channels_last,
        tracking=config.TrackingConfig() if paper_rule else None,
        compile=compiled,
    )
    tracker.tracking = dataclasses.replace(tracker.tracking, **overrides)
    info = {
        "tracker": "siamtfa",
        "mode": mode,
        "checkpoint": str(source) if trained else "untrained",
        "clip_len": tracker.clip_len if mode == "clip" else 1,
        "causal": mode == "online",
        "device": str(tracker.device),
        "precision": precision,
        "channels_last": tracker.channels_last,
        "compile": compiled,
        "selection": vars(tracker.tracking),  # all defaults: the paper's top-scoring RoI
    }
    name = f"siamtfa-{mode}" + ("-paper-rule" if paper_rule else "")
    return tracker, name + "".join(f"-{k}={v}" for k, v in overrides.items()), info


def _tracking_overrides(pairs: list[str]) -> dict:
    """``--tracking KEY=VALUE ...`` as ``TrackingConfig`` fields, checked by the config's rules
    (a ``ValueError`` names a malformed pair or an unknown key)."""
    import yaml

    raw = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--tracking {pair}: expected KEY=VALUE, e.g. filter_weight=0.5")
        raw[key] = yaml.safe_load(value)
    checked = config.merge(config.Config(), {"tracking": raw}).tracking
    return {key: getattr(checked, key) for key in raw}


def _read_sequences(dataset: str, root: str, split: str | None):
    """The sequences and the results layout they are filed in (GOT-10k's or OTB's)."""
    from siamtfa.data.datasets import read_dataset, read_got10k

    if dataset == "got10k" and split:
        return read_got10k(root, split), "got10k"
    return read_dataset(dataset, root), "got10k" if dataset in ("got10k", "synthetic") else "otb"


def cmd_eval(args: argparse.Namespace) -> int:
    from siamtfa.evaluation.runner import (
        finished,
        format_table,
        report,
        run_benchmark,
        submission_zip,
    )

    sequences, layout = _read_sequences(args.dataset, args.root, args.split)
    i, n = (int(v) for v in args.shard.split("/"))
    _check_writable(Path(args.out))
    tracker, name, info = _make_tracker(args.tracker, args.checkpoint, args.mode, args)
    name = args.name or name
    try:
        run_benchmark(tracker, name, sequences, args.out, layout, (i, n), info)
    except KeyboardInterrupt:
        done = finished(Path(args.out), name, sequences, layout)
        print(
            f"siamtfa: interrupted; {done} of {len(sequences)} sequences are finished and kept "
            f"in {Path(args.out) / name} (run the same command to continue)",
            file=sys.stderr,
        )
        return 128 + signal.SIGINT
    if args.split == "test":
        print(f"submission: {submission_zip(args.out, name)}")
        return 0
    try:
        results = report(args.out, sequences, layout, title=f"{args.dataset} {args.root}")
    except FileNotFoundError as err:  # other shards still running
        print(f"results written; no report yet: {err}")
        return 0
    print(format_table(results))
    print(f"report: {Path(args.out) / 'report.json'}, plots: success.png, precision.png")
    return 0


def _check_writable(folder: Path) -> None:
    """Raise a clear error now, not a traceback after the first sequence, when results cannot
    be written to ``folder``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"cannot write results to {folder}: {err.strerror or err}") from None


def cmd_track(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from siamtfa.tracking.video import AnnotatedVideo, open_frames

    frames, fps, count = open_frames(args.input)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{args.input}: no frames")
    if args.select:
        import os

        if not os.environ.get("DISPLAY"):
            raise ValueError("--select needs a display; pass --box x,y,w,h instead")
        import cv2

        box = np.array(cv2.selectROI("siamtfa: select the target", first[..., ::-1]), float)
        cv2.destroyAllWindows()
    elif args.box:
        try:
            box = np.array([float(v) for v in args.box.split(",")])
        except ValueError:
            box = np.zeros(0)
        if box.shape != (4,):
            raise ValueError(f"--box must be four numbers x,y,w,h, got {args.box!r}")
    else:
        raise ValueError("give the target with --box x,y,w,h or --select")
    tracker, _, _ = _make_tracker(args.tracker, args.checkpoint, "online", args)  # a stream
    video = AnnotatedVideo(args.out, fps) if args.out else None
    tracker.init(first, box)
    boxes = [box]
    bar = tqdm(total=count, desc="track", unit="frame")
    start = time.perf_counter()
    if video:
        video.write(first, [(box, (0, 255, 0))])
    bar.update(1)
    for frame in frames:
        boxes.append(tracker.update(frame))
        rate = (len(boxes) - 1) / (time.perf_counter() - start)
        if video:
            video.write(frame, [(boxes[-1], (0, 255, 0))], f"{tracker.name} {rate:.1f} FPS")
        bar.set_postfix(fps=f"{rate:.1f}")
        bar.update(1)
    bar.close()
    if video:
        video.close()
        print(f"annotated video: {args.out}")
    if args.boxes:
        np.savetxt(args.boxes, np.array(boxes), fmt="%.2f", delimiter=",")
        print(f"boxes (x,y,w,h per frame): {args.boxes}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic sequences, tracked by the default tracker; MP4, success plot, AO/SR table."""
    from siamtfa.data.datasets import read_frame, read_got10k
    from siamtfa.data.synthetic import make_synthetic
    from siamtfa.evaluation.results import read_result
    from siamtfa.evaluation.runner import format_table, report, result_paths, run_benchmark
    from siamtfa.tracking.video import AnnotatedVideo

    out = Path(args.out)
    start = time.perf_counter()
    make_synthetic(out / "sequences", args.sequences, args.frames, seed=args.seed, progress=False)
    sequences = read_got10k(out / "sequences")
    tracker, name, info = _make_tracker("siamtfa", args.checkpoint, "online", args)
    shutil.rmtree(out / "results" / name, ignore_errors=True)  # a demo always tracks afresh
    run_benchmark(tracker, name, sequences, out / "results", "got10k", info=info)
    results = report(out / "results", sequences, "got10k", title="synthetic demo")
    video = AnnotatedVideo(out / "demo.mp4", 10)
    for i, seq in enumerate(sequences):  # every sequence: the good and the bad
        pred = read_result(result_paths(out / "results", name, seq.name, "got10k")[0])
        for t, path in enumerate(seq.frames):
            video.write(
                read_frame(path),
                [(seq.boxes[t], (255, 255, 255)), (pred[t], (0, 255, 0))],
                f"sequence {i + 1}/{len(sequences)} frame {t}\nwhite: truth, green: siamtfa",
            )
    video.close()
    per_sequence = results[name]["per_sequence"]
    print("AO per sequence: " + ", ".join(f"{per_sequence[s.name]['ao']:.2f}" for s in sequences))
    print(format_table(results))
    print(
        f"annotated video: {out / 'demo.mp4'}\nsuccess plot: {out / 'results' / 'success.png'}"
        f"\nreport: {out / 'results' / 'report.json'}\n"
        f"({len(sequences)} synthetic sequences, {time.perf_counter() - start:.0f} s)"
    )
    if info["checkpoint"] == "untrained":
        print("The weights are UNTRAINED: these boxes are not meaningful yet.")
    return 0


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    from siamtfa.data.synthetic import make_synthetic

    names = make_synthetic(
        args.out,
        args.sequences,
        args.frames,
        args.seed,
        (args.width, args.height),
        textures=args.textures,
        temporal_stress=args.temporal_stress,
        target_size=tuple(args.target_size),
        motion=tuple(args.motion),
        workers=args.workers,
        appearance_change=args.appearance_change,
        trajectories=args.trajectories,
        broad=args.broad,
    )
    print(f"{len(names)} sequences of {args.frames} frames in {args.out} (GOT-10k layout)")
    return 0


# options that set a run up: a resumed run keeps its own, so giving one with --resume is a
# mistake, never silently ignored
RUN_OPTIONS = (
    "preset",
    "config",
    "data",
    "out",
    "init",
    "teacher",
    "val",
    "backbone_weights",
    "overwrite",
)


def cmd_train(args: argparse.Namespace) -> int:
    from siamtfa.training import Trainer

    options = {"device": args.device}
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in RUN_OPTIONS if getattr(args, k)]
        if given:
            raise ValueError(
                f"--resume continues {args.resume} with its own settings; {', '.join(given)} "
                "cannot change them (start a new run with --out instead)"
            )
        trainer = Trainer.resume(args.resume, args.iterations, **options)
    else:
        if not args.data or not args.out:
            raise ValueError("train needs --data KIND=PATH and --out RUN_DIR (or --resume RUN_DIR)")
        cfg = _load_config(args)
        if args.iterations is not None:
            cfg.train.iterations = args.iterations
        if args.backbone_weights:
            cfg.model.backbone.weights = args.backbone_weights
        if args.init:
            cfg.train.init = args.init
        if args.teacher:
            cfg.train.teacher = args.teacher
        trainer = Trainer.new(cfg, args.data, args.out, args.overwrite, val=args.val, **options)
    result = trainer.run(args.stop_after, args.time_limit)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    print(f"iteration {result.iteration}: {losses}\ncheckpoint: {result.checkpoint}")
    if result.signal is not None:  # a job script must tell this from a finished run
        name = signal.Signals(result.signal).name
        print(f"stopped by {name}; continue with: siamtfa train --resume {trainer.out}")
        return 128 + result.signal
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """A checkpoint with its tracking settings tuned on validation sequences (``--grid``)."""
    from siamtfa.checkpoint import load_checkpoint, save_checkpoint
    from siamtfa.data.datasets import read_dataset
    from siamtfa.tracking.tracker import model_from_state
    from siamtfa.tracking.tuning import Grid, read_grid, tune, with_restarts
    from siamtfa.training.engine import parse_data_spec

    grid = read_grid(args.grid) if args.grid else Grid()
    if len(set(args.on)) < len(args.on):  # its frames would count twice
        raise ValueError(f"--on lists a set twice: {' '.join(args.on)}")
    sets = {}
    for spec in args.on:
        kind, path, _ = parse_data_spec(spec)
        sets[spec] = with_restarts(read_dataset(kind, path), args.starts)
    source = load_checkpoint(args.checkpoint)
    model, cfg = model_from_state(source, args.checkpoint)
    info = {**tune(model, cfg, sets, grid, args.device), "starts": args.starts}
    _print_tuning(info)
    state = {**_provenance(source, args.checkpoint), "tuning": info}
    save_checkpoint(
        {**state, "model": model.cpu().state_dict(), "config": config.to_dict(cfg)}, args.out
    )
    print(f"wrote {args.out} (tracking: {cfg.tracking})")
    return 0


def _print_tuning(info: dict) -> None:
    """What ``tune`` tried and its AO: the replay's best five, then every tracked value."""
    starts = f", {info['starts']} start points each" if info.get("starts", 1) > 1 else ""
    print(f"{'AO':>6}  tuned on {' '.join(info['on'])}{starts}")
    if "replay" in info:
        for ao, setting in info["replay"]["top"]:
            print(f"{ao:6.3f}  replay: {setting}")
        print(f"{info['replay']['paper_rule_ao']:6.3f}  replay: the paper's rule (top RoI)")
    for step in info["tracked"]:
        for values, ao in zip(step["values"], step["ao"]):
            if ao is not None:
                setting = ", ".join(f"{k}={v:g}" for k, v in zip(step["set"], values))
                print(f"{ao:6.3f}  tracked: {setting}")
    for name, ao in info["tracked_ao_by_set"].items():
        print(f"{ao:6.3f}  the tuned settings on {name}")
    print(f"{info['tracked_ao']:6.3f}  the tuned settings, tracked on all")


def _provenance(state: dict, checkpoint: str) -> dict:
    """What a derived checkpoint keeps of ``state`` (read from ``checkpoint``): the training
    checkpoint its weights came from, their iteration and any tuning record."""
    kept = {k: state[k] for k in ("iteration", "tuning") if k in state}
    return {"source": state.get("source", str(checkpoint)), **kept}


def cmd_export(args: argparse.Namespace) -> int:
    """An inference checkpoint: weights (fp16 unless --fp32) and config, as tuned."""
    from siamtfa.checkpoint import load_checkpoint, save_checkpoint
    from siamtfa.tracking.tracker import model_from_state

    source = load_checkpoint(args.checkpoint)
    model, cfg = model_from_state(source, args.checkpoint)  # the weights must fit the config
    if args.head:
        from siamtfa.model.convert import nanotrack_head

        cfg.model.correlation_head = True
        state = {
            **model.state_dict(),
            **{f"head.{k}": v for k, v in nanotrack_head(args.head).items()},
        }
        model = build_model(cfg)  # raises unless the backbone is NanoTrack's
        model.load_state_dict(state)
    weights = {
        k: v.half() if v.is_floating_point() and not args.fp32 else v
        for k, v in model.state_dict().items()
    }
    state = {**_provenance(source, args.checkpoint), "model": weights}
    save_checkpoint({**state, "config": config.to_dict(cfg)}, args.out)
    size = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB, tracking: {cfg.tracking})")
    return 0


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum`` (argparse names the option on error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _window(text: str) -> tuple[float, float]:
    """``SIGMA:INFLUENCE`` (``2:0.6``): a positive width and an influence in ``[0, 1]``."""
    try:
        sigma, influence = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SIGMA:INFLUENCE such as 2:0.6, got {text!r}"
        ) from None
    if not (sigma > 0 and 0 <= influence <= 1):
        raise argparse.ArgumentTypeError(
            f"need SIGMA > 0 and 0 <= INFLUENCE <= 1 in SIGMA:INFLUENCE, got {text!r}"
        )
    return sigma, influence


def _input_size(text: str) -> tuple[int, int]:
    """``LONGxSHORT`` (``384x288``) as two positive integers, long side first."""
    try:
        long, short = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LONGxSHORT such as 384x288, got {text!r}"
        ) from None
    if not 0 < short <= long:
        raise argparse.ArgumentTypeError(f"need 0 < SHORT <= LONG in LONGxSHORT, got {text!r}")
    return long, short


def cmd_convert_backbone(args: argparse.Namespace) -> int:
    """A pretrained network's backbone as a state dict for ``--backbone-weights``."""
    from siamtfa.checkpoint import save_checkpoint
    from siamtfa.model.convert import CONVERTERS

    convert, preset, licence = CONVERTERS[args.source]
    state = convert(args.path)
    info = {"source": f"{args.source}: {Path(args.path).name}", "licence": licence}
    save_checkpoint({"model": state, **info}, args.out)
    print(
        f"wrote {args.out} ({len(state)} tensors from {info['source']}; licence {licence}); "
        f"train with --preset {preset} --backbone-weights {args.out}"
    )
    return 0


def cmd_plot_log(args: argparse.Namespace) -> int:
    from siamtfa.training.plot import plot_losses

    print(plot_losses(args.run_dir, args.out))
    return 0


def _tracker_choice(p: argparse.ArgumentParser) -> None:
    """Which tracker runs (eval, track): siamtfa or one of OpenCV's, NanoTrack's models."""
    p.add_argument(
        "--tracker",
        default="siamtfa",
        choices=["siamtfa", *KINDS],
        help="nanotrack: OpenCV's TrackerNano with the ONNX models in --model-dir",
    )
    p.add_argument("--model-dir", help="folder of NanoTrack's ONNX files (--tracker nanotrack)")
    p.add_argument(
        "--nanotrack-version", default="v2", choices=["v1", "v2"], help="NanoTrack's models"
    )


def _tracker_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that runs the siamtfa tracker (demo, eval, track)."""
    p.add_argument("--checkpoint", help="siamtfa checkpoint (default: the shipped one)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="bf16: autocast convolutions and FCs (faster on recent CPUs and GPUs)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        help="NHWC memory format (default: on CPUs, off on GPUs)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the search branch's dense part (needs a C++ compiler on CPU; "
        "built on the first frame of each input size)",
    )
    p.add_argument(
        "--paper-rule",
        action="store_true",
        help="answer with the top-scoring RoI, ignoring the checkpoint's motion/size prior",
    )
    p.add_argument(
        "--tracking",
        nargs="+",
        metavar="KEY=VALUE",
        help="override the checkpoint's tracking settings (docs/tracking.md), e.g. "
        "filter_weight=0.5; results are filed under a name that lists them",
    )


class _HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless it has none or already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            text += "" if "default" in text else " (default: %(default)s)"
        return text


def _add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="print the model's parts and parameter counts")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--preset", choices=config.PRESETS, help="a preset's model")
    what.add_argument("--config", help="a YAML config's model")
    what.add_argument("--checkpoint", help="a checkpoint's model (default: the shipped one)")
    p.set_defaults(func=cmd_summary)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="track generated sequences with the default tracker")
    p.add_argument("--out", default="siamtfa_demo", help="output folder")
    p.add_argument("--sequences", type=_int_at_least(1), default=6, help="sequences to make")
    p.add_argument("--frames", type=_int_at_least(2), default=40, help="frames per sequence")
    p.add_argument("--seed", type=int, default=777000, help="never used for training")
    _tracker_options(p)
    p.set_defaults(func=cmd_demo)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="run a tracker on a benchmark and report")
    _tracker_choice(p)
    p.add_argument("--mode", default="online", choices=["online", "clip"], help="siamtfa's mode")
    p.add_argument(
        "--dataset",
        required=True,
        choices=DATASET_KINDS,
        help="layout of --root (folder: sequence folders of frames + groundtruth.txt)",
    )
    p.add_argument("--root", required=True, help="the dataset's folder (or video file)")
    p.add_argument("--split", help="GOT-10k split (train, val, test)")
    p.add_argument("--out", required=True, help="results folder (one subfolder per tracker)")
    p.add_argument("--shard", default="0/1", help="i/n: this machine's share of sequences")
    p.add_argument("--name", help="results subfolder (default: tracker and mode)")
    _tracker_options(p)
    p.set_defaults(func=cmd_eval)


def _add_track(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="track an object in a video, frame folder or webcam")
    p.add_argument("input", help="video file, frame folder, or webcam index")
    p.add_argument(
        "--box", help="the target in the first frame: x,y,w,h in pixels, 0-based top-left"
    )
    p.add_argument("--select", action="store_true", help="draw the box (needs a display)")
    p.add_argument("--out", help="annotated MP4")
    p.add_argument("--boxes", help="text file of x,y,w,h per frame")
    _tracker_choice(p)
    _tracker_options(p)
    p.set_defaults(func=cmd_track)


def _add_make_synthetic(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-synthetic", help="write synthetic sequences (GOT-10k layout)")
    p.add_argument("--out", required=True, help="folder (refused if it holds something else)")
    p.add_argument("--sequences", type=_int_at_least(1), default=20, help="how many")
    p.add_argument("--frames", type=_int_at_least(2), default=100, help="frames per sequence")
    p.add_argument("--seed", type=int, default=0, help="sequence i of a seed is always the same")
    p.add_argument("--width", type=_int_at_least(MIN_SIDE), default=320, help="frame width")
    p.add_argument("--height", type=_int_at_least(MIN_SIDE), default=240, help="frame height")
    p.add_argument(
        "--textures",
        help="folder of TRAINING sequences whose frames and boxes "
        "give real backgrounds and targets (never a test set)",
    )
    p.add_argument(
        "--temporal-stress",
        action="store_true",
        help="faster motion (more blur) and more full occlusions",
    )
    p.add_argument(
        "--target-size",
        type=float,
        nargs=2,
        default=(0.12, 0.3),
        metavar=("MIN", "MAX"),
        help="initial target sqrt(w*h) as a fraction of the frame's sqrt(W*H)",
    )
    p.add_argument(
        "--motion",
        type=float,
        nargs=2,
        default=(1.0, 1.0),
        metavar=("MIN", "MAX"),
        help="speed factor per sequence, drawn log-uniformly (real video: about 1 10)",
    )
    p.add_argument(
        "--appearance-change",
        type=float,
        default=0.0,
        metavar="A",
        help="the target turns about A degrees a frame and fades into another view, min(A/2, 1) "
        "of it by the last frame (0: it keeps its look)",
    )
    p.add_argument(
        "--trajectories",
        help="folder of TRAINING sequences whose ground-truth paths the targets follow "
        "(real motion and size change instead of the random walk; --motion does not apply)",
    )
    p.add_argument(
        "--broad",
        action="store_true",
        help="backgrounds and targets from several appearance families (flat, grain, patterns) "
        "and a camera look per sequence (grey, swapped colours, contrast, noise, softness)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes (same output for any)")
    p.set_defaults(func=cmd_make_synthetic)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (torchrun for several processes)")
    p.add_argument("--preset", choices=config.PRESETS, help="model and recipe (default: paper)")
    p.add_argument("--config", help="YAML config (overrides --preset)")
    p.add_argument(
        "--data",
        action="append",
        metavar="KIND=PATH[:WEIGHT]",
        help=f"KIND: {', '.join(DATASET_KINDS)}; WEIGHT: its share of the samples; repeatable",
    )
    p.add_argument("--out", help="run folder (checkpoints, logs)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a run already in --out (else refused)"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument(
        "--iterations", type=int, help="override train.iterations (with --resume: re-plan the run)"
    )
    p.add_argument("--stop-after", type=int, help="checkpoint and stop at this iteration")
    p.add_argument(
        "--time-limit", type=float, metavar="SECONDS", help="checkpoint and stop after this long"
    )
    p.add_argument("--backbone-weights", help="local torchvision ImageNet ResNet checkpoint")
    p.add_argument("--init", metavar="CKPT", help="start from a siamtfa checkpoint's weights")
    p.add_argument(
        "--teacher",
        metavar="ONNX",
        help="NanoTrack v2's head (nanotrack_head_sim_v2.onnx): train.teacher, the RoI "
        "classifier's teacher when model.roi.cls_target is teacher",
    )
    p.add_argument(
        "--val",
        metavar="KIND=PATH",
        help="sequences tracked every train.val_every iterations; best AO -> best.pt",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.set_defaults(func=cmd_train)


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="tune a checkpoint's tracking settings on validation sets")
    p.add_argument("checkpoint", help="checkpoint to tune (best.pt, last.pt)")
    p.add_argument("out", help="where to write the tuned checkpoint")
    p.add_argument(
        "--on",
        nargs="+",
        required=True,
        metavar="KIND=PATH",
        help="VALIDATION sets, pooled (never a test set)",
    )
    p.add_argument(
        "--grid",
        help="YAML grid: replay (selection prior) and tracked steps, e.g. configs/tune.yaml "
        "(default: the selection prior only)",
    )
    p.add_argument(
        "--starts",
        type=int,
        default=1,
        help="track each sequence from this many start points: its first frame and k/N of "
        "its length (more runs from few sequences; default 1)",
    )
    p.add_argument("--device", help="where to track (default: cuda if available)")
    p.set_defaults(func=cmd_tune)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="inference checkpoint: fp16 weights and config")
    p.add_argument("checkpoint", help="checkpoint (tuned, or best.pt / last.pt)")
    p.add_argument("out", help="where to write it")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    p.add_argument(
        "--head",
        metavar="ONNX",
        help="add NanoTrack v2's correlation head, converted from this file "
        "(nanotrack_head_sim_v2.onnx), for tracking.head_weight; a mobile model only",
    )
    p.set_defaults(func=cmd_export)


def _add_convert_backbone(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-backbone", help="a pretrained network's backbone as --backbone-weights"
    )
    p.add_argument(
        "source",
        choices=["nanotrack", "nanodet"],
        help="nanotrack: its ONNX backbone, v1 or v2 (for --preset mobile); nanodet: its "
        "TensorFlow.js graph, nanodet.json with nanodet.bin beside it (for --preset csp)",
    )
    p.add_argument("path", help="nanotrack_backbone_sim_v2.onnx, nanodet.json ...")
    p.add_argument("out", help="where to write the state dict (.pt)")
    p.set_defaults(func=cmd_convert_backbone)


def _add_plot_log(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-log", help="draw a run's loss curves (PNG)")
    p.add_argument("run_dir", help="a training run's folder")
    p.add_argument("--out", help="PNG path (default RUN_DIR/loss_curve.png)")
    p.set_defaults(func=cmd_plot_log)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamtfa", description=__doc__)
    parser.add_argument("--version", action="version", version=f"siamtfa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, formatter_class=_HelpFormatter)
    _add_summary(sub)
    _add_demo(sub)
    _add_eval(sub)
    _add_track(sub)
    _add_make_synthetic(sub)
    _add_train(sub)
    _add_tune(sub)
    _add_export(sub)
    _add_convert_backbone(sub)
    _add_plot_log(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # ConfigError, DatasetError are ValueErrors
        print(f"siamtfa: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("siamtfa: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # output piped into head and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
