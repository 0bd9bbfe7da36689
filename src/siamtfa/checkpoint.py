"""Atomic checkpoints: written to a temporary file, fsynced, then renamed into place."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
    except pickle.UnpicklingError:  # torch's text suggests weights_only=False: never do that
        raise ValueError(
            f"{path}: not a siamtfa checkpoint: it holds Python objects other than tensors "
            "and plain containers, which are never loaded (a foreign or unsafe file)"
        ) from None
    except Exception as err:
        raise ValueError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {_first_line(err)}"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not a siamtfa checkpoint (no 'model' entry)")
    return state


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def load_model_weights(
    model: nn.Module, weights: dict[str, torch.Tensor], source: str | Path
) -> None:
    """Copy a checkpoint's model weights (fp16 ones cast back) into ``model``, strictly: weights
    of another architecture raise an error naming ``source``, the file they came from."""
    weights = {k: v.float() if v.is_floating_point() else v for k, v in weights.items()}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(f"{source}: weights do not fit this model: {err}") from err
