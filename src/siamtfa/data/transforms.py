"""Frame preprocessing shared by training and tracking: resize to fit, normalise, pad."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from siamtfa.config import InputConfig


def fit_scale(width: int, height: int, cfg: InputConfig) -> float:
    """Scale that makes a ``width x height`` frame fit inside ``max_size x min_size``."""
    return min(cfg.max_size / max(width, height), cfg.min_size / min(width, height))


def canvas_size(cfg: InputConfig) -> tuple[int, int]:
    """``(height, width)`` of the padded training canvas (landscape)."""
    div = cfg.size_divisor
    return (-(-cfg.min_size // div) * div, -(-cfg.max_size // div) * div)


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` from a PIL image or a grayscale/RGB/RGBA array.

    Arrays are read by their dtype: uint8 as is, uint16 (and 16-bit PIL images) as 0..65535,
    floats as 0..1, bool as 0/1, other integers as 0..255. Values outside that range, NaNs
    and empty images raise ``ValueError`` rather than give a wrong picture.
    """
    if isinstance(image, Image.Image):
        if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grayscale
            image = np.asarray(image).astype(np.uint16, casting="unsafe")
        elif image.mode == "F":
            image = np.asarray(image)
        else:
            return _checked_shape(np.asarray(image.convert("RGB")))
    arr = _checked_shape(np.asarray(image))
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return _to_uint8(arr[..., :3])


def _checked_shape(arr: np.ndarray) -> np.ndarray:
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an H x W (x 3) image, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"the image is empty ({arr.shape[1]}x{arr.shape[0]} pixels)")
    return arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 of an image array of any dtype, by the ranges ``to_rgb_array`` documents."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("the image holds NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(
                f"a float image must hold values in [0, 1], got [{arr.min():g}, {arr.max():g}]"
                " (pass uint8 for 0..255)"
            )
        return np.rint(arr * 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 255:
            raise ValueError(
                f"an {arr.dtype} image must hold values in 0..255, got {arr.min()}..{arr.max()}"
                " (pass uint16 for 16-bit images)"
            )
        return arr.astype(np.uint8)
    raise ValueError(f"cannot read an image of dtype {arr.dtype}")


def _normalize_(pixels: Tensor, cfg: InputConfig) -> Tensor:
    """``pixels`` ``[..., 3]`` (float, 0..255) normalised in place: ``(p / 255 - mean) / std``."""
    return pixels.div_(255.0).sub_(torch.tensor(cfg.mean)).div_(torch.tensor(cfg.std))


def normalize(rgb: np.ndarray, cfg: InputConfig) -> Tensor:
    """``[3, H, W]`` float tensor, ``cfg``'s mean/std."""
    pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8)).float()
    return _normalize_(pixels, cfg).permute(2, 0, 1)


def pad_to(t: Tensor, height: int, width: int) -> Tensor:
    """Zero-pad (i.e. mean colour after normalisation) at the bottom/right."""
    out = t.new_zeros((t.shape[0], height, width))
    h, w = min(height, t.shape[1]), min(width, t.shape[2])
    out[:, :h, :w] = t[:, :h, :w]
    return out


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """``(W, H)`` of a ``width x height`` frame resized by ``scale``, in whole pixels."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = scaled_size(w, h, scale)
    if size == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


class Region(NamedTuple):
    """The part of a frame the network sees: input pixel = ``(image pixel - (x0, y0)) * scale``."""

    scale: float
    x0: float
    y0: float

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """``x1, y1, x2, y2`` boxes ``[..., 4]`` from input to image pixels."""
        return boxes / self.scale + np.array([self.x0, self.y0, self.x0, self.y0])

    def to_input(self, box: list[float]) -> list[list[float]]:
        """One ``x1, y1, x2, y2`` box from image to input pixels, as a ``[1, 4]`` list."""
        x1, y1, x2, y2 = box
        s = self.scale
        return [[(x1 - self.x0) * s, (y1 - self.y0) * s, (x2 - self.x0) * s, (y2 - self.y0) * s]]


def search_region(
    box: np.ndarray,
    frame_size: tuple[int, int],
    fit: float,
    target_size: float,
    max_upsample: float = 2.0,
) -> Region:
    """The region to search for a target at ``box`` (x, y, w, h) in a ``(W, H)`` frame whose
    whole-frame input scale is ``fit``.

    The region keeps the whole frame's input size (``W * fit`` x ``H * fit`` input pixels) at a
    scale that makes the target measure ``target_size`` input pixels, clamped to
    ``[fit, max(fit, max_upsample)]``; it is centred on the box and shifted to lie inside the
    frame. With ``target_size = 0`` (or a target already as large, or so nearly as large that
    the region's input, in whole pixels, would not fit in the frame) it is the frame.
    """
    width, height = frame_size
    if target_size <= 0:
        return Region(fit, 0.0, 0.0)
    target = float(np.sqrt(max(box[2], 1.0) * max(box[3], 1.0)))
    scale = min(max(target_size / target, fit), max(fit, max_upsample))
    # the crop spans the input size in whole pixels (crop_resize), which rounding can make up to
    # half an input pixel wider than W * fit: that span, too, must lie inside the frame
    span_w, span_h = (n / scale for n in scaled_size(width, height, fit))
    if scale <= fit or span_w > width or span_h > height:
        return Region(fit, 0.0, 0.0)
    crop_w, crop_h = width * fit / scale, height * fit / scale
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    x0 = float(np.clip(cx - crop_w / 2, 0.0, width - max(crop_w, span_w)))
    y0 = float(np.clip(cy - crop_h / 2, 0.0, height - max(crop_h, span_h)))
    return Region(scale, x0, y0)


def crop_resize(rgb: np.ndarray, region: Region, cfg: InputConfig) -> np.ndarray:
    """The frame part ``region`` (``scale, x0, y0``: input pixel = (pixel - x0) * scale) at the
    whole frame's input size ``fit_scale * (W, H)``; the whole frame resized when ``x0 = y0 = 0``
    and ``scale`` is that fit (exactly ``resize``: the box would differ by the rounding)."""
    h, w = rgb.shape[:2]
    fit = fit_scale(w, h, cfg)
    size = scaled_size(w, h, fit)
    if region.x0 == 0 and region.y0 == 0 and region.scale == fit:
        return resize(rgb, fit)
    x0, y0 = region.x0, region.y0
    # min: a region that search_region fitted to the frame's edge may end past it by a rounding
    box = (x0, y0, min(x0 + size[0] / region.scale, w), min(y0 + size[1] / region.scale, h))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, box=box))


def prepare_region(rgb: np.ndarray, region: Region, cfg: InputConfig) -> Tensor:
    """The network's input, a batch of one ``[1, 3, H', W']`` in channels_last memory, for
    ``region`` of ``rgb``: cropped and resized, normalised, padded to ``cfg.size_divisor``.

    Normalised in place in the zero-padded buffer (zero: the mean colour), one pass per step
    instead of a copy per layout change."""
    image = torch.from_numpy(np.array(crop_resize(rgb, region, cfg), dtype=np.uint8))
    h, w, d = image.shape[0], image.shape[1], cfg.size_divisor
    out = torch.zeros(1, -(-h // d) * d, -(-w // d) * d, 3)
    _normalize_(out[0, :h, :w].copy_(image), cfg)
    return out.permute(0, 3, 1, 2)
