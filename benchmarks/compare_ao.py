"""Paired comparison of two ``benchmarks/tracked_ao.py`` results: AO of A minus AO of B on
each set both tracked, and on pools of them, with a 95 % interval from a paired bootstrap over
sequences (``siamtfa.evaluation.metrics.ao_difference``).

    python benchmarks/compare_ao.py candidate.json default.json \\
        --pool runs/tune/syn_5001 runs/tune/syn_5004 runs/tune/syn_5006

It says how far apart two checkpoints are against how much the figure moves with the
sequences drawn: a release rule's margin below the interval's width is decided by noise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from siamtfa.evaluation.metrics import ao_difference


def per_sequence(path: str) -> dict[str, dict[str, dict[str, float]]]:
    """The per-set, per-sequence AO and frame counts a ``tracked_ao.py --out`` file holds."""
    result = json.loads(Path(path).read_text())
    if "per_sequence" not in result:
        raise ValueError(f"{path}: no per-sequence figures (written by an older tracked_ao.py)")
    return result["per_sequence"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="tracked_ao.py JSON of checkpoint A")
    parser.add_argument("b", help="tracked_ao.py JSON of checkpoint B")
    parser.add_argument("--pool", nargs="+", action="append", default=[], help="sets pooled")
    args = parser.parse_args()
    a, b = per_sequence(args.a), per_sequence(args.b)
    common = [s for s in a if s in b]
    if not common:
        parser.error("the two files share no set")
    if missing := [s for pool in args.pool for s in pool if s not in common]:
        parser.error(f"--pool: not in both files: {' '.join(missing)}")
    rows = [(s, [s]) for s in common] + [(" + ".join(p), p) for p in args.pool]
    print(f"A = {args.a}\nB = {args.b}\n")
    print(f"{'A − B':>7}  {'95 % interval':>17}  {'sequences':>9}  set")
    for name, sets in rows:
        seqs_a = {f"{s}/{q}": v for s in sets for q, v in a[s].items()}
        seqs_b = {f"{s}/{q}": v for s in sets for q, v in b[s].items()}
        diff, low, high = ao_difference(seqs_a, seqs_b)
        print(f"{diff:+7.3f}  [{low:+.3f}, {high:+.3f}]  {len(seqs_a):9d}  {name}")


if __name__ == "__main__":
    main()
