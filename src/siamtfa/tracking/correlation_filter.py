"""An online discriminative correlation filter on the trunk's stride-16 map
(``TrackingConfig.filter_weight``).

SiamTFA's scores compare each RoI with the template only; the filter also learns, from the
first frame, what the target is *not*: the background and look-alikes around it. It is the
multi-channel ridge regression of MOSSE / KCF (linear kernel) / DSST, solved per frequency
in closed form, on features that were pretrained on far more images than the layers above
(the converted trunk). One sample's exact solution per frequency ``k`` is

    G_c[k] = conj(X_c[k]) Y[k] / (sum_c |X_c[k]|^2 + lambda),

the response to features ``Z`` is ``ifft(sum_c G_c Z_c)`` (circular), and answers are
blended in as running averages of the numerator and the denominator (MOSSE's update).
Features are Hann-windowed against the circular boundary; the label is a periodic Gaussian
on the target's centre.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def hann_window_2d(height: int, width: int) -> Tensor:
    """``[H, W]`` outer product of Hann windows that do not reach zero at the edges."""
    rows = torch.hann_window(height + 2, periodic=False, dtype=torch.float64)[1:-1]
    cols = torch.hann_window(width + 2, periodic=False, dtype=torch.float64)[1:-1]
    return (rows[:, None] * cols[None, :]).float()


def gaussian_label(height: int, width: int, centre: tuple[float, float], sigma: float) -> Tensor:
    """``[H, W]`` Gaussian of std ``sigma`` cells around ``centre`` (x, y in cells), periodic
    (distances wrap around, as the FFT's correlation does)."""
    cx, cy = centre
    dx = torch.remainder(torch.arange(width, dtype=torch.float64) - cx + width / 2, width)
    dy = torch.remainder(torch.arange(height, dtype=torch.float64) - cy + height / 2, height)
    dx, dy = dx - width / 2, dy - height / 2
    return torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * sigma**2)).float()


def box_cells(box: tuple[float, float, float, float] | Tensor, stride: int) -> Tensor:
    """Centres ``[..., 2]`` (x, y in cells of a stride-``stride`` map, cell ``i`` centred at
    input pixel ``(i + 0.5) * stride``) of ``x1, y1, x2, y2`` boxes ``[..., 4]``."""
    box = torch.as_tensor(box, dtype=torch.float32)
    return (box[..., :2] + box[..., 2:]) / (2 * stride) - 0.5


class CorrelationFilter:
    """``CorrelationFilter(features, box, stride, sigma, lam)``: learned on ``features``
    ``[C, H, W]`` (a stride-``stride`` map) with the target at ``box`` (x1, y1, x2, y2 in
    input pixels); ``sigma`` is the label's std in target sides ``sqrt(w * h)``, ``lam`` the
    ridge relative to the features' mean energy (fixed from the first sample)."""

    def __init__(
        self, features: Tensor, box: tuple[float, ...], stride: int, sigma: float, lam: float
    ) -> None:
        self.stride, self.sigma = stride, sigma
        self.window = hann_window_2d(*features.shape[-2:])
        self.numerator, self.energy = self._terms(features, box)
        self.ridge = lam * float(self.energy.mean())

    def _terms(self, features: Tensor, box: tuple[float, ...]) -> tuple[Tensor, Tensor]:
        """One sample's numerator ``conj(X) Y`` ``[C, H, W]`` and energy ``sum |X|^2``."""
        spectrum = self._spectrum(features)
        x1, y1, x2, y2 = box
        side = math.sqrt(max(x2 - x1, 1.0) * max(y2 - y1, 1.0)) / self.stride
        centre = box_cells(box, self.stride).tolist()
        label = gaussian_label(*features.shape[-2:], centre, self.sigma * side)
        return spectrum.conj() * torch.fft.fft2(label), (spectrum.abs() ** 2).sum(0)

    def _spectrum(self, features: Tensor) -> Tensor:
        """FFT of the windowed ``features``, on the CPU in float32 wherever the map was made
        (a 16x20 map: a GPU round trip would cost more than the FFT)."""
        return torch.fft.fft2(features.detach().float().cpu() * self.window)

    def update(self, features: Tensor, box: tuple[float, ...], rate: float) -> None:
        """Blend in the sample ``features`` with the target at ``box``: ``(1 - rate)`` of the
        filter so far plus ``rate`` of the sample's terms. A map of another size (the input
        changed) is skipped."""
        if rate <= 0 or features.shape[-2:] != self.window.shape:
            return
        numerator, energy = self._terms(features, box)
        self.numerator = torch.lerp(self.numerator, numerator, rate)
        self.energy = torch.lerp(self.energy, energy, rate)

    def response(self, features: Tensor) -> Tensor:
        """``[H, W]`` correlation response of ``features`` ``[C, H, W]`` (the label's scale:
        about 1 at a centre like the learned target's)."""
        spectrum = self._spectrum(features)
        product = (self.numerator * spectrum).sum(0) / (self.energy + self.ridge)
        return torch.fft.ifft2(product).real

    def at_boxes(self, features: Tensor, boxes: Tensor) -> Tensor:
        """The response of ``features`` at the centre of each of ``boxes`` ``[K, 4]`` (input
        pixels), bilinear between cells (the border's value beyond it), clipped to 0..1: a
        score like the RoI's. A map of another size than the filter's gives zeros."""
        if features.shape[-2:] != self.window.shape:
            return torch.zeros(len(boxes))
        height, width = self.window.shape
        cells = box_cells(boxes.float().cpu(), self.stride)
        grid = torch.stack(
            [cells[:, 0] * 2 / max(width - 1, 1) - 1, cells[:, 1] * 2 / max(height - 1, 1) - 1],
            dim=-1,
        )
        response = self.response(features)[None, None]
        values = F.grid_sample(
            response, grid[None, None], align_corners=True, padding_mode="border"
        )
        return values[0, 0, 0].clamp(0, 1)
