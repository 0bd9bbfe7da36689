"""Deterministic synthetic tracking videos in the GOT-10k layout.

Each sequence: a textured target on a cluttered textured background, moving smoothly with scale
and aspect change; similar-looking distractors; occluders that pass in front (partial and full
occlusion); motion blur on fast frames; a drifting illumination; optionally a target whose
look changes (it turns in place and fades into another view), or one that follows a real
target's path (``TrajectoryBank``). Per-frame labels follow GOT-10k:
``cover`` 0-8 (visible fraction in eighths, 0 = fully occluded), ``absence`` (1 when the target
cannot be seen), ``cut_by_image`` (1 when the box leaves the frame).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from siamtfa.data.datasets import read_folder, read_frame
from siamtfa.data.io import atomic_write_text
from siamtfa.data.sampling import frame_size

MANIFEST = "synthetic.json"  # the settings a folder's sequences were made with
MIN_SIDE = 16  # smallest frame side in pixels


@dataclass
class SyntheticSequence:
    frames: list[np.ndarray]  # RGB uint8 [H, W, 3]
    boxes: np.ndarray  # [N, 4] x, y, w, h of the target's full extent
    cover: np.ndarray  # [N] 0..8
    absence: np.ndarray  # [N] 0/1
    cut_by_image: np.ndarray  # [N] 0/1
    visible_masks: list[np.ndarray]  # [H, W] bool: target pixels not hidden by occluders


def _rng(seed: int, index: int | str) -> np.random.Generator:
    digest = hashlib.sha256(f"siamtfa-synthetic:{seed}:{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _noise_texture(rng: np.random.Generator, h: int, w: int, octaves: int = 4) -> np.ndarray:
    """Coloured multi-octave value noise in [0, 1], ``[h, w, 3]``."""
    out = np.zeros((h, w, 3), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 + 3 * 2**o
        small = rng.random((cells, cells, 3)).astype(np.float32)
        img = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        out += amp * np.asarray(img, np.float32) / 255.0
        total += amp
        amp *= 0.55
    out /= total
    tint = rng.random(3).astype(np.float32)
    return np.clip(0.6 * out + 0.4 * tint, 0, 1)


def _pattern_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A distinctive object texture: noise plus stripes or checks in two random colours."""
    base = _noise_texture(rng, h, w, 3)
    c1, c2 = rng.random(3), rng.random(3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(6, 16)
    angle = rng.uniform(0, np.pi)
    kind = rng.integers(3)
    if kind == 0:
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0
    elif kind == 1:
        wave = ((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 0
    else:
        cy, cx = h / 2, w / 2
        wave = np.sin(np.hypot(yy - cy, xx - cx) * 2 * np.pi / period) > 0
    pattern = np.where(wave[..., None], c1, c2).astype(np.float32)
    return np.clip(0.55 * pattern + 0.45 * base, 0, 1)


def _flat_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth two-colour gradient with faint grain: little texture to lock on to."""
    c1, c2 = rng.random(3), rng.random(3)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = xx / max(w, 1) * np.cos(angle) + yy / max(h, 1) * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    grain = rng.normal(0, 0.02, (h, w, 1))
    return np.clip(c1 + (c2 - c1) * ramp[..., None] + grain, 0, 1).astype(np.float32)


def _grain_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Pixel-scale coloured noise, blurred a little or not at all: texture at every scale."""
    noise = rng.random((h, w, 3)).astype(np.float32)
    img = Image.fromarray((noise * 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 2))))
    return np.asarray(img, np.float32) / 255.0


# appearance families of --broad sequences: how backgrounds and targets are drawn
FAMILIES = ("classic", "flat", "grain", "pattern")


def _family_texture(family: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    if family == "flat":
        return _flat_texture(rng, h, w)
    if family == "grain":
        return _grain_texture(rng, h, w)
    if family == "pattern":
        return _pattern_texture(rng, h, w)
    return _noise_texture(rng, h, w, 5)


def _camera(frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One sequence's camera look, drawn once: grey or channel-swapped colour, contrast
    (gamma), sensor noise and softness, so that no single colour rendering is the norm."""
    grey = rng.random() < 0.2
    order = rng.permutation(3) if rng.random() < 0.3 else np.arange(3)
    gamma = float(np.exp(rng.uniform(-0.35, 0.35)))
    sigma = float(rng.uniform(0, 0.04))
    blur = float(rng.uniform(0.5, 1.2)) if rng.random() < 0.25 else 0.0
    out = []
    for frame in frames:
        img = frame.astype(np.float32)[..., order] / 255.0
        if grey:
            img = np.repeat(img.mean(2, keepdims=True), 3, axis=2)
        img = img**gamma + rng.normal(0, sigma, img.shape).astype(np.float32)
        pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
        if blur:
            pil = pil.filter(ImageFilter.GaussianBlur(blur))
        out.append(np.asarray(pil))
    return out


def _ellipse_mask(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1.0


def _smooth_walk(
    rng: np.random.Generator, n: int, scale: float, inertia: float = 0.9
) -> np.ndarray:
    """A smooth random walk (velocity with inertia), ``[n]``."""
    v, x, out = 0.0, 0.0, np.empty(n)
    for i in range(n):
        v = inertia * v + (1 - inertia) * rng.normal(0, scale)
        x += v
        out[i] = x
    return out


def _rotated(texture: np.ndarray, degrees: float) -> np.ndarray:
    """``texture`` turned by ``degrees`` about its centre, same size; the corners the turn
    uncovers are filled from its mirror image, so no blank appears inside the target's shape."""
    h, w = texture.shape[:2]
    padded = np.pad(texture, ((h // 2, h // 2), (w // 2, w // 2), (0, 0)), mode="reflect")
    pil = Image.fromarray((np.clip(padded, 0, 1) * 255).astype(np.uint8))
    turned = np.asarray(pil.rotate(degrees, Image.BILINEAR), np.float32) / 255.0
    return turned[h // 2 : h // 2 + h, w // 2 : w // 2 + w]


def _pixel_box(x: float, y: float, w: float, h: float) -> tuple[int, int, int, int]:
    """The integer pixel rectangle ``x0, y0, x1, y1`` (exclusive) a box is drawn into."""
    x0, y0 = round(x), round(y)
    return x0, y0, max(x0 + 1, round(x + w)), max(y0 + 1, round(y + h))


class _Sprite:
    """A textured object with a fixed shape mask, drawn at a given box."""

    def __init__(self, texture: np.ndarray, ellipse: bool) -> None:
        self.texture = texture
        self.ellipse = ellipse

    def render(self, x: float, y: float, w: float, h: float, fh: int, fw: int):
        """(pixels, mask, x0, y0) of the sprite resized to the integer box, clipped to the frame.

        The mask is computed at the drawn size, so it touches all four sides of the box."""
        x0, y0, x1, y1 = _pixel_box(x, y, w, h)
        size = (x1 - x0, y1 - y0)
        tex = (
            np.asarray(
                Image.fromarray((self.texture * 255).astype(np.uint8)).resize(size, Image.BILINEAR),
                np.float32,
            )
            / 255.0
        )
        mask = _ellipse_mask(size[1], size[0]) if self.ellipse else np.ones(size[::-1], bool)
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x1, fw), min(y1, fh)
        if cx1 <= cx0 or cy1 <= cy0:
            return None
        sl = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        return tex[sl], mask[sl], cx0, cy0


def _paste(frame: np.ndarray, layer: np.ndarray | None, rendered) -> None:
    if rendered is None:
        return
    tex, mask, x0, y0 = rendered
    h, w = mask.shape
    region = frame[y0 : y0 + h, x0 : x0 + w]
    region[mask] = tex[mask]
    if layer is not None:
        layer[y0 : y0 + h, x0 : x0 + w] |= mask


class TextureBank:
    """Real-image material for synthetic videos: background crops of whole frames and object
    crops from ground-truth boxes. Build it from *training* sequences only."""

    def __init__(self, sequences: list) -> None:
        self.sequences = [s for s in sequences if len(s.frames)]
        if not self.sequences:
            raise ValueError("texture bank needs at least one sequence")

    def _frame(self, rng: np.random.Generator):
        seq = self.sequences[int(rng.integers(len(self.sequences)))]
        t = int(rng.integers(len(seq.frames)))
        return seq, t, read_frame(seq.frames[t]).astype(np.float32) / 255.0

    def background(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        _, _, img = self._frame(rng)
        ih, iw = img.shape[:2]
        ch = int(ih * rng.uniform(0.5, 1.0))
        cw = min(iw, int(ch * w / h))
        y0, x0 = int(rng.integers(ih - ch + 1)), int(rng.integers(iw - cw + 1))
        crop = img[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return _resize01(crop, w, h)

    def object(self, rng: np.random.Generator) -> np.ndarray | None:
        """A 64x64 crop of a real target (its ground-truth box), or None if none is usable."""
        for _ in range(5):
            seq, t, img = self._frame(rng)
            x, y, bw, bh = seq.boxes[t]
            if not np.isfinite(seq.boxes[t]).all() or min(bw, bh) < 8:
                continue
            x0, y0 = max(int(x), 0), max(int(y), 0)
            crop = img[y0 : int(y + bh), x0 : int(x + bw)]
            if min(crop.shape[:2]) >= 8:
                return _resize01(crop, 64, 64)
        return None


class TrajectoryBank:
    """Real targets' paths: the ground-truth boxes of *training* sequences, for synthetic
    targets to follow, so that they move, stop, jerk and change size as real ones do (the random
    walk is smooth). Only runs of two or more consecutive valid boxes are kept."""

    def __init__(self, sequences: list) -> None:
        self.tracks: list[tuple[np.ndarray, tuple[int, int]]] = []  # boxes xywh, frame (W, H)
        for seq in sequences:
            boxes = np.asarray(seq.boxes, np.float64)
            valid = np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
            edges = np.flatnonzero(np.diff(np.r_[0, valid.astype(int), 0]))
            runs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 2]
            if runs:
                size = frame_size(seq)
                self.tracks += [(boxes[a:b], size) for a, b in runs]
        if not self.tracks:
            raise ValueError("trajectory bank needs a sequence with 2 or more consecutive boxes")

    def path(
        self, rng: np.random.Generator, n: int, size: tuple[int, int], min_side: float = 12.0
    ) -> np.ndarray:
        """``n`` boxes (x, y, w, h) for a ``size`` = (W, H) frame: a stretch of one real track
        (drawn with probability proportional to its length), starting anywhere and going either
        way, turning back at the track's ends; mirrored left-right half the time; mapped by one
        scale and shift, so motion and size change relative to the target are the real ones.
        The scale fits the real frame into this one, or more, so that the target's sqrt(w*h)
        stays at least ``min_side`` pixels; the shift puts the path's mean centre in the middle."""
        lengths = np.array([len(b) for b, _ in self.tracks], np.float64)
        boxes, (rw, rh) = self.tracks[int(rng.choice(len(lengths), p=lengths / lengths.sum()))]
        # the track forwards then backwards, on a loop: a start in the second half goes backwards
        period = 2 * (len(boxes) - 1)
        step = (int(rng.integers(period)) + np.arange(n)) % period
        b = boxes[np.where(step < len(boxes), step, period - step)].copy()
        if rng.random() < 0.5:
            b[:, 0] = rw - b[:, 0] - b[:, 2]
        fw, fh = size
        scale = max(min(fw / rw, fh / rh), min_side / np.sqrt(b[:, 2] * b[:, 3]).min())
        centre = b[:, :2] + b[:, 2:] / 2
        centre = scale * (centre - centre.mean(0)) + np.array([fw / 2, fh / 2])
        wh = scale * b[:, 2:]
        return np.concatenate((centre - wh / 2, wh), 1)


def _resize01(img: np.ndarray, w: int, h: int) -> np.ndarray:
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return np.asarray(pil.resize((w, h), Image.BILINEAR), np.float32) / 255.0


def render_sequence(
    seed: int,
    index: int,
    num_frames: int = 100,
    size: tuple[int, int] = (320, 240),
    textures: TextureBank | None = None,
    temporal_stress: bool = False,
    target_size: tuple[float, float] = (0.12, 0.3),
    motion: tuple[float, float] = (1.0, 1.0),
    appearance_change: float = 0.0,
    trajectories: TrajectoryBank | None = None,
    broad: bool = False,
) -> SyntheticSequence:
    """Sequence ``index`` of the synthetic set ``seed``: fully determined by the pair (and the
    texture bank, whose real crops replace some procedural backgrounds and targets).

    ``temporal_stress`` makes frames that single-frame trackers find hard: faster motion (so
    more motion blur) and 2-4 occluders per sequence (more full occlusions). ``motion`` scales
    the speed by a per-sequence factor drawn log-uniformly from ``[min, max]`` (real video moves
    faster than the default: its own stream of random numbers, so the rest of the sequence is
    the same as with the default ``(1, 1)``). ``appearance_change`` ``a > 0`` makes the target
    look different from its first frame, as real targets do (a car turns, a person bends): its
    texture turns in place by a smooth random walk of about ``a`` degrees a frame and fades
    into a second view (another real crop or pattern), ``min(a / 2, 1)`` of it by the last
    frame; the shape, and so the box, does not change. Its own random stream too.
    ``trajectories``: the target follows a real path (``TrajectoryBank.path``, its own random
    stream) instead of the random walk, at its real speed (``motion`` and the stress speed-up
    do not apply to it); everything else is drawn as without it, distractors and
    occluders sized by the path's first box. ``broad`` draws the background and the target from
    several appearance families (``FAMILIES``: flat gradients, pixel grain, patterns, the
    classic noise) and gives each sequence its own camera look (``_camera``), so that a
    tracker cannot win by learning one generator's look; its own random stream too."""
    rng = _rng(seed, index)
    style = _rng(seed, f"{index}:style") if broad else None
    speed_up = float(np.exp(_rng(seed, f"{index}:motion").uniform(*np.log(motion))))
    speed_up *= 1.6 if temporal_stress else 1.0
    fw, fh = size
    n = num_frames
    use_real_background = textures is not None and rng.random() < 0.75
    use_real_target = textures is not None and rng.random() < 0.6
    clutter = _backdrop(rng, style, textures if use_real_background else None, fh, fw)
    side = float(np.sqrt(fw * fh) * rng.uniform(*target_size))
    aspect0 = float(np.exp(rng.uniform(-0.6, 0.6)))
    target_tex, ellipse = _target_texture(rng, style, textures if use_real_target else None)
    target = _Sprite(target_tex, ellipse)
    views = None  # per frame: the target's texture, when it changes
    if appearance_change > 0:
        look = _rng(seed, f"{index}:appearance")
        other = textures.object(look) if use_real_target else None
        views = _views(look, target_tex, other, n, appearance_change)
    cx = fw / 2 + rng.uniform(-0.25, 0.25) * fw + _smooth_walk(rng, n, fw * 0.02 * speed_up)
    cy = fh / 2 + rng.uniform(-0.25, 0.25) * fh + _smooth_walk(rng, n, fh * 0.02 * speed_up)
    log_scale = np.clip(_smooth_walk(rng, n, 0.012), -0.7, 0.7)
    log_aspect = np.clip(_smooth_walk(rng, n, 0.008), -0.4, 0.4)
    tw = side * np.sqrt(aspect0) * np.exp(log_scale + log_aspect / 2)
    th = side / np.sqrt(aspect0) * np.exp(log_scale - log_aspect / 2)
    if trajectories is not None:
        path = trajectories.path(_rng(seed, f"{index}:path"), n, size)
        cx, cy = path[:, 0] + path[:, 2] / 2, path[:, 1] + path[:, 3] / 2
        tw, th = path[:, 2], path[:, 3]
        side = float(np.sqrt(tw[0] * th[0]))  # occluders and distractors are sized by it
    # keep the centre mostly inside the frame
    cx = np.clip(cx, -0.1 * fw, 1.1 * fw)
    cy = np.clip(cy, -0.1 * fh, 1.1 * fh)
    distractors = _distractors(rng, target_tex, side, n, size)
    occluders = _occluders(rng, side, n, (2, 5) if temporal_stress else (0, 3))
    gain = 1.0 + 0.35 * np.tanh(_smooth_walk(rng, n, 0.03))
    tilt = rng.uniform(-0.25, 0.25)
    # ground truth = the pixel rectangle the target is drawn into
    rects = np.array([_pixel_box(*b) for b in np.stack((cx - tw / 2, cy - th / 2, tw, th), 1)])
    boxes = np.concatenate((rects[:, :2], rects[:, 2:] - rects[:, :2]), 1).astype(np.float64)
    ramp = np.linspace(1 - tilt, 1 + tilt, fw, dtype=np.float32)[None, :, None]
    speeds = np.hypot(np.diff(cx, append=cx[-1]), np.diff(cy, append=cy[-1]))
    frames, visibles = [], []
    for t in range(n):
        if views is not None:
            target.texture = views[t]
        frame, visible, full = _draw(clutter, target, boxes[t], distractors, occluders, t)
        img = Image.fromarray((np.clip(frame * gain[t] * ramp, 0, 1) * 255).astype(np.uint8))
        if speeds[t] > 0.012 * fw:  # motion blur on fast frames
            img = img.filter(ImageFilter.BoxBlur(min(3, int(speeds[t] / (0.012 * fw)))))
        frames.append(np.asarray(img))
        frac = visible.sum() / max(full, 1)
        visibles.append((visible, 0 if full == 0 or frac < 0.02 else int(np.ceil(frac * 8))))
    if style is not None:
        frames = _camera(frames, style)
    covers = np.array([c for _, c in visibles])
    x, y, w, h = boxes.T
    cuts = ((x < 0) | (y < 0) | (x + w > fw) | (y + h > fh)).astype(int)
    return SyntheticSequence(
        frames, boxes, covers, (covers == 0).astype(int), cuts, [v for v, _ in visibles]
    )


def _backdrop(
    rng: np.random.Generator,
    style: np.random.Generator | None,
    textures: TextureBank | None,
    fh: int,
    fw: int,
) -> np.ndarray:
    """The static background: a real crop (``textures``) or noise, in ``broad`` mode
    (``style``) half of the time another family, with random clutter pasted on it."""
    real = textures is not None
    background = textures.background(rng, fh, fw) if real else _noise_texture(rng, fh, fw, 5)
    if style is not None and style.random() < 0.5:  # half of them: another family
        background = _family_texture(str(style.choice(FAMILIES)), style, fh, fw)
    clutter = background.copy()
    for _ in range(int(rng.integers(6, 14))):
        cw, ch = rng.integers(8, fw // 4), rng.integers(8, fh // 4)
        spr = _Sprite(_noise_texture(rng, int(ch), int(cw), 2), bool(rng.integers(2)))
        _paste(
            clutter, None, spr.render(rng.uniform(-10, fw), rng.uniform(-10, fh), cw, ch, fh, fw)
        )
    return clutter


def _target_texture(
    rng: np.random.Generator, style: np.random.Generator | None, textures: TextureBank | None
) -> tuple[np.ndarray, bool]:
    """The target's look (a real crop from ``textures``, else a pattern; in ``broad`` mode
    sometimes another family) and whether it is drawn as an ellipse (patterns only)."""
    texture = textures.object(rng) if textures is not None else None
    ellipse = bool(rng.integers(2)) and texture is None
    if texture is None:
        texture = _pattern_texture(rng, 64, 64)
    if style is not None and style.random() < 0.4:
        texture = _family_texture(str(style.choice(FAMILIES)), style, 64, 64)
    return texture, ellipse


def _views(
    look: np.random.Generator, first: np.ndarray, other: np.ndarray | None, n: int, change: float
) -> list[np.ndarray]:
    """Per frame, the target turned by a smooth walk of about ``change`` degrees a frame and
    faded into ``other`` (a pattern when None), ``min(change / 2, 1)`` of it by the last frame;
    the first frame, the template, keeps ``first``."""
    other = _pattern_texture(look, 64, 64) if other is None else other
    angle = _smooth_walk(look, n, 5.5 * change)  # mean |step| ~ change degrees
    share = min(change / 2, 1) * (1 - np.cos(np.pi * np.arange(n) / max(n - 1, 1))) / 2
    return [first] + [
        _rotated((1 - f) * first + f * other, a - angle[0]) for f, a in zip(share[1:], angle[1:])
    ]


def _distractors(
    rng: np.random.Generator, texture: np.ndarray, side: float, n: int, size: tuple[int, int]
) -> list[tuple]:
    """1-3 look-alikes: the target's texture recoloured a little, each on its own path
    ``(sprite, x [n], y [n], side)``."""
    fw, fh = size
    out = []
    for _ in range(int(rng.integers(1, 4))):
        tex = np.clip(texture * rng.uniform(0.8, 1.2, 3) + rng.normal(0, 0.04, 3), 0, 1)
        spr = _Sprite(tex.astype(np.float32), bool(rng.integers(2)))
        s = side * rng.uniform(0.7, 1.3)
        dx = rng.uniform(0, fw) + _smooth_walk(rng, n, fw * 0.025)
        dy = rng.uniform(0, fh) + _smooth_walk(rng, n, fh * 0.025)
        out.append((spr, dx, dy, s))
    return out


def _occluders(
    rng: np.random.Generator, side: float, n: int, count: tuple[int, int]
) -> list[tuple]:
    """Solid textured bars that sweep across the target at random times:
    ``(sprite, first frame, frames, width, height, drift)``."""
    out = []
    for _ in range(int(rng.integers(*count))):
        t0 = int(rng.integers(0, max(n - 10, 1)))
        dur = int(rng.integers(8, 30))
        ow, oh = side * rng.uniform(1.0, 2.2), side * rng.uniform(1.0, 2.2)
        spr = _Sprite(_noise_texture(rng, 32, 32, 2), False)
        out.append((spr, t0, dur, ow, oh, rng.uniform(-1.5, 1.5)))
    return out


def _draw(
    clutter: np.ndarray,
    target: _Sprite,
    box: np.ndarray,
    distractors: list[tuple],
    occluders: list[tuple],
    t: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Frame ``t`` before the camera: the scene, the target's visible pixels, and how many
    pixels it covers unoccluded."""
    fh, fw = clutter.shape[:2]
    frame = clutter.copy()
    for spr, dx, dy, s in distractors:
        _paste(frame, None, spr.render(dx[t] - s / 2, dy[t] - s / 2, s, s, fh, fw))
    target_layer = np.zeros((fh, fw), bool)
    x, y, w, h = box
    _paste(frame, target_layer, target.render(x, y, w, h, fh, fw))
    occluded = np.zeros((fh, fw), bool)
    for spr, t0, dur, ow, oh, drift in occluders:
        if t0 <= t < t0 + dur:
            phase = (t - t0) / dur  # sweeps across the target's box
            ox = x + w / 2 - ow / 2 + (phase - 0.5) * 2.2 * ow * drift
            oy = y + h / 2 - oh / 2 + (phase - 0.5) * 1.2 * oh
            _paste(frame, occluded, spr.render(ox, oy, ow, oh, fh, fw))
    return frame, target_layer & ~occluded, int(target_layer.sum())


def write_got10k(seq: SyntheticSequence, folder: Path, quality: int = 92) -> None:
    """One sequence in the GOT-10k layout (frames, groundtruth and label files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(seq.frames, 1):
        Image.fromarray(frame).save(folder / f"{i:08d}.jpg", quality=quality)
    gt = "\n".join(",".join(f"{v:.4f}" for v in box) for box in seq.boxes) + "\n"
    atomic_write_text(folder / "groundtruth.txt", gt)
    for name, values in (
        ("cover", seq.cover),
        ("absence", seq.absence),
        ("cut_by_image", seq.cut_by_image),
    ):
        atomic_write_text(folder / f"{name}.label", "\n".join(str(int(v)) for v in values) + "\n")
    h, w = seq.frames[0].shape[:2]
    meta = (
        f"[METAINFO]\nobject_class: synthetic\nmotion_class: smooth\nmajor_class: synthetic\n"
        f"root_class: synthetic\nmotion_adverb: smoothly\nresolution: ({w}, {h})\n"
    )
    atomic_write_text(folder / "meta_info.ini", meta)


def make_synthetic(
    out: str | Path,
    sequences: int,
    frames: int,
    seed: int,
    size: tuple[int, int] = (320, 240),
    progress: bool = True,
    textures: str | Path | None = None,
    temporal_stress: bool = False,
    target_size: tuple[float, float] = (0.12, 0.3),
    motion: tuple[float, float] = (1.0, 1.0),
    workers: int = 1,
    appearance_change: float = 0.0,
    trajectories: str | Path | None = None,
    broad: bool = False,
) -> list[str]:
    """Write ``sequences`` synthetic sequences to ``out`` (a GOT-10k split folder), rendered
    by ``workers`` processes.

    ``out/synthetic.json`` records the settings. Sequences already complete on disk are kept
    when the settings match (so an interrupted run resumes); a folder made with other
    settings, or holding a ``list.txt`` of something else, is refused rather than mixed or
    overwritten. ``list.txt`` is written last. Returns the sequence names.
    """
    from tqdm import tqdm

    if sequences < 1:
        raise ValueError(f"sequences must be at least 1, got {sequences}")
    if frames < 2:  # the first frame gives the box; a benchmark scores the others
        raise ValueError(f"frames must be at least 2, got {frames}")
    if min(size) < MIN_SIDE:
        raise ValueError(f"width and height must be at least {MIN_SIDE} pixels, got {size}")
    if not 0 < target_size[0] <= target_size[1] < 1:
        raise ValueError(f"target_size must satisfy 0 < min <= max < 1, got {target_size}")
    if not 0 < motion[0] <= motion[1]:
        raise ValueError(f"motion must satisfy 0 < min <= max, got {motion}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not appearance_change >= 0:
        raise ValueError(f"appearance_change must be >= 0, got {appearance_change}")
    out = Path(out)
    settings = {
        "seed": seed,
        "sequences": sequences,
        "frames": frames,
        "size": size,
        "textures": str(Path(textures).resolve()) if textures else None,
        "temporal_stress": temporal_stress,
        "target_size": target_size,
        "motion": motion,
        "appearance_change": appearance_change,
        "trajectories": str(Path(trajectories).resolve()) if trajectories else None,
        "broad": broad,
    }
    _claim_folder(out, json.loads(json.dumps(settings)))
    names = [_name(seed, i) for i in range(sequences)]
    todo = [i for i in range(sequences) if not (out / names[i] / "meta_info.ini").is_file()]
    bank = TextureBank(read_folder(textures)) if textures else None
    paths = TrajectoryBank(read_folder(trajectories)) if trajectories else None
    options = dict(
        size=size,
        textures=bank,
        temporal_stress=temporal_stress,
        target_size=target_size,
        motion=motion,
        appearance_change=appearance_change,
        trajectories=paths,
        broad=broad,
    )
    job = partial(_write_one, out, seed, frames, options)
    bar = tqdm(
        total=sequences,
        initial=sequences - len(todo),
        desc="synthetic sequences",
        disable=not progress,
    )
    if workers == 1:
        for i in todo:
            job(i)
            bar.update(1)
    else:  # sequence i is a pure function of (seed, i): any order gives the same files
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(job, todo):
                bar.update(1)
    bar.close()
    atomic_write_text(out / "list.txt", "\n".join(names) + "\n")
    return names


def _claim_folder(out: Path, settings: dict) -> None:
    """Make ``out`` this call's: new, or holding sequences made with the same ``settings``
    (``MANIFEST``); anything else raises ``ValueError`` before a file is written."""
    manifest, listed = out / MANIFEST, out / "list.txt"
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except ValueError:
            raise ValueError(f"{manifest}: unreadable; delete {out} to start over") from None
        changed = [f"{k}: {old.get(k)!r} now {v!r}" for k, v in settings.items() if old.get(k) != v]
        if changed:
            raise ValueError(
                f"{out} holds synthetic sequences made with other settings ("
                + ", ".join(changed)
                + "): choose another --out, or delete that folder"
            )
        return
    if listed.is_file():
        raise ValueError(
            f"{listed} exists and was not written by make-synthetic: choose another --out"
        )
    atomic_write_text(manifest, json.dumps(settings, indent=1))


def _write_one(out: Path, seed: int, frames: int, options: dict, index: int) -> None:
    """Render sequence ``index`` (``options``: ``render_sequence``'s keywords) and write it."""
    write_got10k(render_sequence(seed, index, frames, **options), out / _name(seed, index))


def _name(seed: int, index: int) -> str:
    return f"SYN-{seed}-{index:06d}"
