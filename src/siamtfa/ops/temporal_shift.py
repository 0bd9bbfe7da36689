"""Temporal shift (TSM, Lin et al. ICCV 2019) over clip-major batches: paper Eq. 1."""

from __future__ import annotations

import torch
from torch import Tensor


def temporal_shift(x: Tensor, clip_len: int, fold_div: int = 8, causal: bool = False) -> Tensor:
    """Shift channels along time within each clip.

    ``x`` is ``[N * clip_len, C, H, W]``, clip-major with frames time-sorted. With
    ``K = C // fold_div``:

    * bidirectional (paper Eq. 1): channels ``[0:K]`` at ``t`` come from ``t-1``, ``[K:2K]`` from
      ``t+1``, the rest from ``t``;
    * causal: channels ``[0:K]`` from ``t-1``, everything else from ``t``.

    Zeros where the neighbour does not exist (clip ends). Pure data movement, differentiable.
    """
    if x.dim() != 4:
        raise ValueError(f"temporal_shift expects [N*T, C, H, W], got shape {tuple(x.shape)}")
    if clip_len < 1 or x.shape[0] % clip_len != 0:
        raise ValueError(f"batch of {x.shape[0]} frames is not a multiple of clip_len={clip_len}")
    nt, c, h, w = x.shape
    fold = c // fold_div
    if fold == 0:
        return x
    v = x.view(nt // clip_len, clip_len, c, h, w)
    out = torch.zeros_like(v)
    out[:, 1:, :fold] = v[:, :-1, :fold]  # from the past
    if causal:
        out[:, :, fold:] = v[:, :, fold:]
    else:
        out[:, :-1, fold : 2 * fold] = v[:, 1:, fold : 2 * fold]  # from the future
        out[:, :, 2 * fold :] = v[:, :, 2 * fold :]
    return out.view(nt, c, h, w)
