"""Pixel engine of the built-in ``preview`` model: a fast, deterministic, weight-free animatic.

Everything is pure numpy + Pillow. All randomness comes from a generator seeded with a hash of
(seed, prompt), so the same inputs always give byte-identical frames. The pictures hold no text:
the prompt, clip id and timecode are burnt in over the finished timeline (`scenekit.media.overlay`).
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

KEN_BURNS_ZOOM = 0.06  # zoom gained over one clip length away from a picture's own frame
KEN_BURNS_PAN = 0.8  # share of the zoom's spare margin used for panning
BACKGROUND_SCALE = 4  # the soft background is drawn at 1/4 size, then upscaled


@dataclass(frozen=True)
class Condition:
    """A conditioning source already resized to the clip's size."""

    frames: np.ndarray  # (N, H, W, 3) uint8; N == 1 for an image
    at: int  # output frame index where frames[0] applies
    strength: float  # 0..1


@dataclass(frozen=True)
class _Blob:
    """A soft, wobbling disc moving along a Lissajous path (units: frame heights, seconds)."""

    centre: np.ndarray  # (2,) x, y
    amplitude: np.ndarray  # (2,)
    speed: np.ndarray  # (2,) rad/s
    phase: np.ndarray  # (2,)
    radius: float
    wobble: float
    lobes: int
    spin: float
    colour: np.ndarray  # (3,) float32, 0..1
    opacity: float


@dataclass(frozen=True)
class _Scene:
    """Seeded look of one clip: gradient colours and their drift, plus the blobs."""

    hues: tuple[float, float]
    saturations: tuple[float, float]
    values: tuple[float, float]
    angle: float
    turn: float  # gradient rotation, rad/s
    blobs: tuple[_Blob, ...]


@dataclass(frozen=True)
class _Grid:
    """Low-resolution sample positions for the background, in frame heights from the centre."""

    x: np.ndarray  # (w,) float32, increasing
    y: np.ndarray  # (h,) float32, increasing
    vignette: np.ndarray  # (h, w, 1) float32
    half_diagonal: float


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _rng(seed: int, prompt: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}\x1f{prompt}".encode(), digest_size=16).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _blob(rng: np.random.Generator, aspect: float, hue: float) -> _Blob:
    return _Blob(
        centre=np.array([rng.uniform(0.25, 0.75) * aspect, rng.uniform(0.25, 0.7)]) - [aspect / 2, 0.5],
        amplitude=rng.uniform(0.12, 0.3, 2) * [aspect, 1.0],
        speed=rng.uniform(0.35, 0.8, 2),
        phase=rng.uniform(0.0, 2 * math.pi, 2),
        radius=rng.uniform(0.1, 0.22),
        wobble=rng.uniform(0.05, 0.15),
        lobes=int(rng.integers(2, 5)),
        spin=rng.uniform(-1.5, 1.5),
        colour=_hsv(hue + rng.uniform(-0.1, 0.1), rng.uniform(0.4, 0.8), rng.uniform(0.7, 1.0)),
        opacity=rng.uniform(0.55, 0.85),
    )


def _scene(rng: np.random.Generator, aspect: float) -> _Scene:
    h0 = rng.random()
    hues = (h0, h0 + rng.uniform(0.15, 0.45))
    return _Scene(
        hues=hues,
        saturations=(rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.7)),
        values=(rng.uniform(0.22, 0.45), rng.uniform(0.6, 0.88)),
        angle=rng.uniform(0.0, 2 * math.pi),
        turn=rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.18),
        # blobs alternate between the two gradient hues; the third takes the complementary accent
        blobs=tuple(_blob(rng, aspect, hues[k % 2] + 0.5 * (k == 2)) for k in range(rng.integers(3, 6))),
    )


def _grid(width: int, height: int) -> _Grid:
    w, h = -(-width // BACKGROUND_SCALE), -(-height // BACKGROUND_SCALE)
    aspect = width / height
    x = ((np.arange(w, dtype=np.float32) + 0.5) / w - 0.5) * aspect
    y = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    vignette = 1.0 - 0.45 * ((x[None, :] / aspect) ** 2 + y[:, None] ** 2)
    return _Grid(x, y, vignette[..., None], math.hypot(aspect, 1.0) / 2)


def _gradient(scene: _Scene, grid: _Grid, t: float) -> np.ndarray:
    angle = scene.angle + scene.turn * t
    along = grid.x[None, :] * math.cos(angle) + grid.y[:, None] * math.sin(angle)
    ramp = 0.5 + 0.5 * along / grid.half_diagonal
    drift = 0.03 * math.sin(0.4 * t)
    c0, c1 = (_hsv(h + drift, s, v) for h, s, v in zip(scene.hues, scene.saturations, scene.values, strict=True))
    return c0 + (c1 - c0) * ramp[..., None]


def _span(axis: np.ndarray, centre: float, reach: float) -> slice:
    """Indices of the sorted `axis` lying within `reach` of `centre`."""
    return slice(int(np.searchsorted(axis, centre - reach)), int(np.searchsorted(axis, centre + reach)))


def _paint_blob(rgb: np.ndarray, blob: _Blob, grid: _Grid, t: float) -> None:
    """Paints the blob at time t over `rgb` (h, w, 3) float32, touching only its bounding box."""
    cx, cy = blob.centre + blob.amplitude * np.sin(blob.speed * t + blob.phase)
    reach = blob.radius * (1.0 + blob.wobble)
    rows, cols = _span(grid.y, cy, reach), _span(grid.x, cx, reach)
    dx, dy = grid.x[None, cols] - cx, grid.y[rows, None] - cy
    edge = blob.radius * (1.0 + blob.wobble * np.sin(blob.lobes * np.arctan2(dy, dx) + blob.spin * t))
    mask = np.clip((edge - np.hypot(dx, dy)) / (0.45 * blob.radius), 0.0, 1.0)
    box = rgb[rows, cols]
    box += (blob.colour - box) * (blob.opacity * mask * mask * (3.0 - 2.0 * mask))[..., None]


def _background(scene: _Scene, grid: _Grid, t: float, size: tuple[int, int]) -> Image.Image:
    rgb = _gradient(scene, grid, t)
    for blob in scene.blobs:
        _paint_blob(rgb, blob, grid, t)
    small = np.clip(rgb * grid.vignette * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def _ken_burns(picture: Image.Image, zoom: float, pan: tuple[float, float]) -> Image.Image:
    """Crops 1/zoom of `picture`, shifted by `pan` (-1..1 of the spare margin), back to full size."""
    w, h = picture.size
    cw, ch = w / zoom, h / zoom
    left, top = (w - cw) / 2 * (1 + pan[0]), (h - ch) / 2 * (1 + pan[1])
    return picture.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))


def _check_context(context: np.ndarray | None, num_frames: int, width: int, height: int) -> None:
    if context is not None and (context.shape[1:] != (height, width, 3) or len(context) >= num_frames):
        raise ValueError(f"context {context.shape} does not fit a {num_frames}-frame {width}x{height} clip")


@dataclass(frozen=True)
class _Track:
    """A condition plus its seeded pan direction, blended over the background frame by frame."""

    condition: Condition
    pan: np.ndarray  # (2,) pan direction scaled by KEN_BURNS_PAN
    still: Image.Image | None  # the picture, converted once, for single-frame conditions

    def weight(self, i: int, fps: float, span: int) -> float:
        """Fades in over a second before `at`; decays to half a clip length after the last frame."""
        cond = self.condition
        if i < cond.at:
            return cond.strength * _smoothstep(1.0 - (cond.at - i) / fps)
        return cond.strength * 0.5 ** (max(0, i - cond.at - len(cond.frames) + 1) / span)

    def blend(self, picture: Image.Image, i: int, fps: float, span: int) -> Image.Image:
        """Blends the condition's picture for output frame i, with Ken-Burns motion, over `picture`."""
        weight = self.weight(i, fps, span)
        if weight <= 0.0:
            return picture
        j = min(max(i - self.condition.at, 0), len(self.condition.frames) - 1)
        source = self.still if self.still is not None else Image.fromarray(self.condition.frames[j])
        offset = i - self.condition.at - j  # frames away from where the shown picture applies
        travel = min(1.0, abs(offset) / span)
        moved = _ken_burns(source, 1.0 + KEN_BURNS_ZOOM * travel, tuple(self.pan * np.sign(offset) * travel))
        return Image.blend(picture, moved, weight)


def _tracks(rng: np.random.Generator, conditions: Sequence[Condition]) -> list[_Track]:
    angles = rng.uniform(0.0, 2 * math.pi, len(conditions))
    return [
        _Track(
            cond,
            KEN_BURNS_PAN * np.array([math.cos(a), math.sin(a)]),
            Image.fromarray(cond.frames[0]) if len(cond.frames) == 1 else None,
        )
        for cond, a in zip(conditions, angles, strict=True)
    ]


class _Painter:
    """Per-clip precomputed state; `paint(i, out)` draws one generated frame."""

    def __init__(
        self,
        *,
        prompt: str,
        width: int,
        height: int,
        fps: float,
        num_frames: int,
        seed: int,
        context: np.ndarray | None,
        conditions: Sequence[Condition],
    ) -> None:
        rng = _rng(seed, prompt)
        self.scene = _scene(rng, width / height)
        self.tracks = _tracks(rng, conditions)
        self.grid = _grid(width, height)
        self.size = (width, height)
        self.fps = fps
        self.span = max(1, num_frames - 1)
        self.kept = 0 if context is None else len(context)
        self.last = Image.fromarray(context[-1]) if context is not None and self.kept else None

    def _continue(self, frame: np.ndarray, i: int) -> None:
        """Cross-dissolves from the still-zooming last context frame into `frame`, in place."""
        step = i - self.kept + 1
        mix = _smoothstep(step / self.fps)
        if self.last is None or mix >= 1.0:
            return
        held = _ken_burns(self.last, 1.0 + KEN_BURNS_ZOOM * step / self.span, (0.0, 0.0))
        frame[...] = np.asarray(Image.blend(held, Image.fromarray(frame), mix))

    def paint(self, i: int, out: np.ndarray) -> None:
        """Draws generated output frame i into `out` (H, W, 3) uint8."""
        picture = _background(self.scene, self.grid, i / self.fps, self.size)
        for track in self.tracks:
            picture = track.blend(picture, i, self.fps, self.span)
        out[...] = np.asarray(picture)
        self._continue(out, i)


def draw_clip(
    *,
    prompt: str,
    width: int,
    height: int,
    fps: float,
    num_frames: int,
    seed: int,
    context: np.ndarray | None,
    conditions: Sequence[Condition],
    on_frame: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The clip's (num_frames, height, width, 3) uint8 frames; `prompt` and `seed` choose its look."""
    _check_context(context, num_frames, width, height)
    painter = _Painter(
        prompt=prompt,
        width=width,
        height=height,
        fps=fps,
        num_frames=num_frames,
        seed=seed,
        context=context,
        conditions=conditions,
    )
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    if context is not None:
        frames[: len(context)] = context
    for i in range(num_frames):
        if i >= painter.kept:
            painter.paint(i, frames[i])
        if on_frame is not None:
            on_frame(i)
    return frames


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (h, w, 3) uint8 RGB image to cover width x height (scale then centre-crop), Pillow LANCZOS."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    cw, ch = width / scale, height / scale
    left, top = (w - cw) / 2, (h - ch) / 2
    box = (left, top, left + cw, top + ch)
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS, box=box))
