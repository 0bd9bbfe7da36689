"""Adversarial dropout (paper Eq. 4-5; Park et al. AAAI 2018, Lee et al. ICCV 2019)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def kl_from_logits(ref_logits: Tensor, logits: Tensor, reduction: str = "batchmean") -> Tensor:
    """``KL(softmax(ref) || softmax(logits))`` over the last dimension."""
    return F.kl_div(
        F.log_softmax(logits, -1),
        F.log_softmax(ref_logits, -1),
        reduction=reduction,
        log_target=True,
    )


class AdversarialDropout(nn.Module):
    """Random and adversarial dropout masks on the fused RoI feature ``X`` ``[R, C, H, W]``.

    ``mode="channel"``: one mask entry per channel (``L = C``); ``"element"``: ``L = C*H*W``.
    Masks hold 0/1; applying one rescales by ``1 / keep_prob`` (inverted dropout).
    """

    def __init__(self, mode: str = "channel", delta: float = 0.05, keep_prob: float = 0.9) -> None:
        super().__init__()
        if mode not in ("channel", "element"):
            raise ValueError(f"adversarial_dropout.mode must be channel or element, got {mode!r}")
        if not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"adversarial_dropout.keep_prob must be in (0, 1], got {keep_prob}")
        self.mode = mode
        self.delta = delta
        self.keep_prob = keep_prob

    def mask_size(self, x: Tensor) -> int:
        return x.shape[1] if self.mode == "channel" else x[0].numel()

    def random_mask(self, x: Tensor) -> Tensor:
        shape = (x.shape[0], self.mask_size(x))
        return (torch.rand(shape, device=x.device) < self.keep_prob).to(x.dtype)

    def apply(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask / self.keep_prob  # scale the (small) mask, not the feature
        return x * (m[:, :, None, None] if self.mode == "channel" else m.view_as(x))

    def adversarial_mask(
        self, x: Tensor, mask: Tensor, classifier: Callable[[Tensor], Tensor], ref_logits: Tensor
    ) -> Tensor:
        """Eq. 4 by the greedy knapsack relaxation: flip at most ``floor(delta * L)`` entries of
        ``mask`` whose flip most increases ``D = KL(p_ref || h(X * m))`` to first order.

        The Jacobian ``dD/dm`` is taken by ``torch.autograd.grad`` w.r.t. the mask only, so no
        parameter's ``.grad`` is touched. It is evaluated at the undropped feature (``m = 1``): at
        ``m = mask`` itself ``D`` is at its minimum (``p_ref`` is that prediction) and the
        gradient vanishes. Flipping entry ``i`` changes ``D`` by about ``J_i * (1 - 2 m_i)``.
        """
        budget = math.floor(self.delta * mask.shape[1])
        if budget == 0:
            return mask.clone()
        probe = torch.ones_like(mask, requires_grad=True)
        with torch.enable_grad():
            logits = classifier(self.apply(x.detach(), probe))
            div = kl_from_logits(ref_logits.detach(), logits, reduction="sum")
            (jac,) = torch.autograd.grad(div, probe)
        gain = jac * (1.0 - 2.0 * mask)
        top = gain.topk(budget, dim=1)
        flip = torch.zeros_like(mask, dtype=torch.bool).scatter_(1, top.indices, top.values > 0)
        return torch.where(flip, 1.0 - mask, mask)
