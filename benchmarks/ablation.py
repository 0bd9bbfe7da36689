"""The paper's Table 1 on synthetic data: temporal aggregation on/off x adversarial dropout
on/off, each trained with the same budget and seed, evaluated (online tracker) on a held-out
synthetic benchmark made to need temporal context (``--temporal-stress``: blur, occlusion).

Runs resume: rerun the same command to continue training (``--stop-after`` bounds this
session's share) and, once a variant has finished, to evaluate it. Prints AO / SR0.5 / SR0.75
per variant as mean ± half the range over the seeds, and the AO difference to the baseline of
the same seed (every run's figures in ablation_<sequences>x<frames>.json).
``--init CKPT`` starts every variant from the same weights (neither switch has parameters),
for a fine-tuning ablation when training each from scratch is beyond the budget.

    python benchmarks/ablation.py --config configs/synthetic_lite_cpu.yaml \\
        --data synthetic=/data/syn_train --iterations 4000 --seeds 0 1 --out runs/ablation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from siamtfa import config
from siamtfa.data.datasets import read_got10k
from siamtfa.data.io import atomic_write_text
from siamtfa.data.synthetic import make_synthetic
from siamtfa.evaluation.runner import evaluate, run_benchmark
from siamtfa.tracking import Tracker
from siamtfa.training import train

VARIANTS = {  # name: (temporal aggregation, adversarial dropout), Table 1's rows + the 4th
    "baseline": (False, False),
    "+temporal": (True, False),
    "+temporal +adv": (True, True),
    "+adv": (False, True),
}
HELD_OUT_SEED = 9100  # never used for training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", action="append", required=True)
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="train/score only these rows (to split the runs across machines or sessions)",
    )
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--stop-after", type=int, help="train each unfinished run up to here")
    parser.add_argument("--init", help="checkpoint every variant starts from (fine-tuning)")
    parser.add_argument(
        "--textures",
        help="training sequences that texture the held-out benchmark, as in training "
        "(default: none)",
    )
    parser.add_argument("--sequences", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    out = Path(args.out)
    # named by its size, so that finished runs can be scored again on a larger benchmark
    size = f"{args.sequences}x{args.frames}"
    bench = out / f"heldout_temporal_{HELD_OUT_SEED}_{size}"
    textures = args.textures if args.textures and Path(args.textures).is_dir() else None
    make_synthetic(
        bench,
        args.sequences,
        args.frames,
        HELD_OUT_SEED,
        textures=textures,
        temporal_stress=True,
    )
    sequences = read_got10k(bench)
    scores: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for seed in args.seeds:
        for variant in args.variants:
            temporal, adv = VARIANTS[variant]
            run = out / f"{variant.replace(' ', '').replace('+', 'p')}_seed{seed}"
            cfg = config.load(args.config)
            cfg.model.temporal.enabled = temporal
            cfg.model.adversarial_dropout.enabled = adv
            cfg.train.seed = seed
            cfg.train.iterations = args.iterations
            cfg.train.init = args.init or cfg.train.init
            resume = (run / "last.pt").is_file()
            result = train(cfg, args.data, run, resume=resume, stop_after=args.stop_after)
            if result.iteration < args.iterations:
                print(f"{run}: at iteration {result.iteration} of {args.iterations}")
                continue
            results = run / f"heldout_{size}"
            tracker = Tracker(run / "last.pt", "online")
            run_benchmark(
                tracker,
                "siamtfa",
                sequences,
                results,
                "got10k",
                progress=False,
                info={"variant": variant, "seed": seed},
            )
            overall = evaluate(results, "siamtfa", sequences, "got10k")["overall"]
            scores[variant].append({"seed": seed, **overall})
    print(
        f"\n{'variant':<16} {'temporal':>8} {'adv':>4} {'runs':>4} "
        f"{'AO':>15} {'SR0.5':>15} {'SR0.75':>15} {'AO - baseline':>15}"
    )
    # the seed moves every variant alike (same init and data order): the AO difference to the
    # baseline of the same seed is the sharper comparison
    baseline = {r["seed"]: r["ao"] for r in scores["baseline"]}
    for variant, (temporal, adv) in VARIANTS.items():
        rows = scores[variant]
        paired = [r["ao"] - baseline[r["seed"]] for r in rows if r["seed"] in baseline]
        cells = [_spread([r[key] for r in rows]) for key in ("ao", "sr50", "sr75")] + [
            _spread(paired, "+.3f")
        ]
        print(
            f"{variant:<16} {'yes' if temporal else 'no':>8} {'yes' if adv else 'no':>4} "
            f"{len(rows):>4} " + " ".join(f"{c:>15}" for c in cells)
        )
    atomic_write_text(out / f"ablation_{size}.json", json.dumps(scores, indent=1))


def _spread(values: list[float], fmt: str = ".3f") -> str:
    """``mean ± half range``, or ``-`` for no value."""
    if not values:
        return "-"
    v = np.array(values)
    return f"{v.mean():{fmt}} ± {(v.max() - v.min()) / 2:.3f}"


if __name__ == "__main__":
    main()
