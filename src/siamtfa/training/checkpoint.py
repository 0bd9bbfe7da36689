"""Atomic checkpoints: written to a temporary file, fsynced, then renamed into place."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from siamtfa.data.io import atomic_write_bytes


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True``; a missing, truncated or foreign file raises a clear
    error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {err}"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a siamtfa checkpoint (no 'model' entry)")
    return state
