"""Accuracy of siamtfa (online and clip), NanoTrack v2, CSRT and KCF on (a) a held-out
synthetic benchmark (seed 9000: never used for training; textured with --textures, training
sequences, like the training data) and (b) the real test sequences in --real.

One ``siamtfa eval`` run per tracker and benchmark (results resume if interrupted); prints one
table (AO, SR0.5, SR0.75, AUC, precision@20, FPS), each siamtfa row's AO difference to every
other tracker with a 95 % interval (paired bootstrap over sequences), and leaves
success/precision plots in ``OUT/<benchmark>/``.

    python benchmarks/accuracy.py [--checkpoint C] --real DIR --textures DIR \
        --nanotrack-dir DIR [--out results/accuracy] [--baseline OTHER.pt]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from siamtfa.cli import main as siamtfa
from siamtfa.evaluation import ao_difference

HELD_OUT_SEED = 9000  # training data uses other seeds (e.g. 1000)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="default: the shipped default checkpoint")
    parser.add_argument(
        "--baseline",
        help="another checkpoint, tracked online as 'baseline-online' (a release decision's "
        "paired comparison; default: none)",
    )
    parser.add_argument("--out", default="results/accuracy")
    parser.add_argument(
        "--sequences", type=int, default=30, help="synthetic sequences (10 cannot resolve 0.1 AO)"
    )
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument(
        "--real", help="folder of real test sequences (frames + groundtruth.txt; default: none)"
    )
    parser.add_argument(
        "--textures",
        help="training sequences that texture the synthetic benchmark, as in training ('' = none)",
    )
    parser.add_argument(
        "--trackers",
        nargs="+",
        default=[
            "siamtfa-online",
            "siamtfa-online-paper-rule",
            "siamtfa-clip",
            "nanotrack",
            "csrt",
            "kcf",
        ],
        help="siamtfa-online-paper-rule: the top-scoring RoI, without the tuned motion prior",
    )
    parser.add_argument(
        "--nanotrack-dir",
        help="NanoTrack's ONNX files (default: none, no nanotrack row)",
    )
    return parser.parse_args()


def eval_command(name: str, kind: str, root: Path, out: Path, args: argparse.Namespace) -> list:
    """The ``siamtfa eval`` arguments for the row ``name`` (``siamtfa-online-paper-rule``,
    ``csrt``, ``baseline`` ...) on one benchmark."""
    tracker, _, mode = name.partition("-")
    mode, _, rule = mode.partition("-")
    cmd = ["eval", "--tracker", tracker, "--dataset", kind, "--root", str(root), "--out", str(out)]
    if tracker == "nanotrack":
        cmd += ["--model-dir", args.nanotrack_dir]
    if tracker == "baseline":
        cmd[2] = "siamtfa"
        cmd += ["--checkpoint", args.baseline, "--name", "baseline-online"]
    if tracker == "siamtfa":
        cmd += ["--mode", mode] + (["--paper-rule"] if rule == "paper-rule" else [])
        cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    return cmd


def print_table(reports: dict[str, dict]) -> None:
    print(
        f"\n{'benchmark':<10} {'tracker':<26} {'AO':>6} {'SR0.5':>6} {'SR0.75':>6} "
        f"{'AUC':>6} {'Prec20':>6} {'FPS':>6}"
    )
    for bench, report in reports.items():
        for name, r in report.items():
            o = r["overall"]
            print(
                f"{bench:<10} {name:<26} {o['ao']:6.3f} {o['sr50']:6.3f} {o['sr75']:6.3f} "
                f"{o['auc']:6.3f} {o['precision20']:6.3f} {o['fps']:6.1f}"
            )


def print_differences(reports: dict[str, dict]) -> None:
    # one tracking failure moves every later frame of its sequence, so the sequences, not the
    # frames, are the sample: how sure is each siamtfa-vs-other gap?
    print("\nAO difference, 95 % interval of a paired bootstrap over sequences:")
    for bench, report in reports.items():
        for ours in (n for n in report if n.startswith("siamtfa")):
            for theirs in (n for n in report if not n.startswith("siamtfa")):
                diff, low, high = ao_difference(
                    report[ours]["per_sequence"], report[theirs]["per_sequence"]
                )
                print(
                    f"{bench:<10} {ours} - {theirs}: {diff:+.3f} [{low:+.3f}, {high:+.3f}] "
                    f"({len(report[ours]['per_sequence'])} sequences)"
                )


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    synthetic = out / "data" / f"synthetic_{HELD_OUT_SEED}"
    make = ["make-synthetic", "--out", str(synthetic), "--sequences", str(args.sequences)]
    make += ["--frames", str(args.frames), "--seed", str(HELD_OUT_SEED)]
    if args.textures and Path(args.textures).is_dir():
        make += ["--textures", args.textures]
    siamtfa(make)
    benchmarks = [("synthetic", "synthetic", synthetic)]
    if args.real:
        benchmarks.append(("real", "folder", Path(args.real)))
    trackers = [t for t in args.trackers if t != "nanotrack" or args.nanotrack_dir]
    trackers += ["baseline"] if args.baseline else []
    reports = {}
    for bench, kind, root in benchmarks:
        for name in trackers:
            cmd = eval_command(name, kind, root, out / bench, args)
            if siamtfa(cmd) != 0:
                raise SystemExit(f"siamtfa {' '.join(cmd)} failed")
        reports[bench] = json.loads((out / bench / "report.json").read_text())
    print_table(reports)
    print_differences(reports)
    print(f"plots: {out}/<benchmark>/success.png, precision.png")


if __name__ == "__main__":
    main()
