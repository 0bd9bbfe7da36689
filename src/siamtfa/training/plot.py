"""Loss curves of a run (``log.csv``) as a PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from siamtfa.model import LOSS_KEYS


def plot_losses(run_dir: str | Path, out: str | Path | None = None, smooth: int = 50) -> Path:
    """Every loss term and the total, raw (faint) and moving-averaged, plus the lr."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    with open(run_dir / "log.csv", newline="") as f:
        # the last row of an iteration wins: logs of runs resumed before the engine dropped
        # the rows after the checkpoint hold some iterations twice
        rows = list({int(r["iteration"]): r for r in csv.DictReader(f)}.values())
    rows.sort(key=lambda r: int(r["iteration"]))
    if not rows:
        raise ValueError(f"{run_dir / 'log.csv'}: no iterations logged yet")
    it = np.array([int(r["iteration"]) for r in rows])
    fig, (ax, ax_lr) = plt.subplots(
        2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    k = max(1, min(smooth, len(rows) // 5))  # the window actually used
    for key in (*LOSS_KEYS, "loss"):
        y = np.array([float(r[key]) for r in rows])
        avg = np.convolve(y, np.ones(k) / k, mode="valid")
        (line,) = ax.plot(it[k - 1 :], avg, label=key, lw=2 if key == "loss" else 1.2)
        ax.plot(it, y, color=line.get_color(), alpha=0.15, lw=0.6)
    ax.set_yscale("log")
    ax.set_ylabel(f"loss (moving average over {k})")
    ax.legend(ncol=3)
    ax.grid(alpha=0.3)
    ax_lr.plot(it, [float(r["lr"]) for r in rows], color="k")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("iteration")
    ax_lr.grid(alpha=0.3)
    ax.set_title(f"{run_dir.name}: {len(rows)} iterations")
    fig.tight_layout()
    out = Path(out) if out else run_dir / "loss_curve.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
