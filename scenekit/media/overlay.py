"""Burn-ins drawn over finished frames: a caption in the lower third, a label top-left and the
timecode top-right, each on a translucent dark box.

Drawn after transitions are blended, so pictures dissolve and text does not. Text patches are drawn
once with Pillow and composited onto every frame with integer numpy maths. A caption reads only as
much of its text as fits the picture, however long the text is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BOX_RGBA = (10, 10, 14, 165)  # translucent dark box behind all text
TEXT_RGBA = (245, 245, 245, 255)
ELLIPSIS = "\u2026"
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Patch:
    """A premultiplied RGBA patch at a place on the frame."""

    top: int
    left: int
    premultiplied: np.ndarray  # (h, w, 3) uint16: rgb * alpha
    keep: np.ndarray  # (h, w, 1) uint16: 255 - alpha

    def apply(self, frame: np.ndarray) -> None:
        """Composite the patch onto `frame` (H, W, 3) uint8, in place."""
        h, w = self.keep.shape[:2]
        region = frame[self.top : self.top + h, self.left : self.left + w]
        region[...] = (region * self.keep + self.premultiplied + 127) // 255


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def _text_box(lines: Sequence[str], size: int, *, min_text_width: float = 0.0, centre: bool = False) -> Image.Image:
    """RGBA image: `lines` in white on a rounded translucent dark box."""
    font = _font(size)
    ascent, descent = font.getmetrics()
    line_height = ascent + descent
    pad_x, pad_y = max(3, size // 2), max(2, size // 3)
    text_width = math.ceil(max(min_text_width, *(font.getlength(line) for line in lines)))
    box = Image.new("RGBA", (text_width + 2 * pad_x, line_height * len(lines) + 2 * pad_y))
    ImageDraw.Draw(box).rounded_rectangle((0, 0, box.width - 1, box.height - 1), max(2, size // 3), BOX_RGBA)
    text = Image.new("RGBA", box.size)
    draw = ImageDraw.Draw(text)
    for k, line in enumerate(lines):
        x = pad_x + (text_width - font.getlength(line)) / 2 if centre else pad_x
        draw.text((x, pad_y + k * line_height), line, font=font, fill=TEXT_RGBA)
    return Image.alpha_composite(box, text)


def _place(image: Image.Image, left: int, top: int, width: int, height: int) -> Patch:
    """`image` placed at (left, top) on a width x height frame, clipped to it and premultiplied."""
    crop = (max(0, -left), max(0, -top), min(image.width, width - left), min(image.height, height - top))
    rgba = np.asarray(image.crop(crop), dtype=np.uint16)
    alpha = rgba[..., 3:]
    return Patch(max(0, top), max(0, left), rgba[..., :3] * alpha, 255 - alpha)


def _longest_fit(text: str, font: ImageFont.FreeTypeFont, max_width: float, suffix: str = "") -> int:
    """The most leading characters of `text` that fit in `max_width` followed by `suffix` (at least one)."""
    fits, too_long = 1, len(text) + 1
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if font.getlength(text[:middle] + suffix) <= max_width:
            fits = middle
        else:
            too_long = middle
    return fits


def _pieces(word: str, font: ImageFont.FreeTypeFont, max_width: float) -> Iterator[str]:
    """`word` in pieces that each fit in `max_width` (a word that fits is one piece); lazily."""
    reach = max(1, int(max_width))  # no glyph is narrower than a pixel: a piece never has more characters
    start = 0
    while start < len(word):
        head = word[start : start + reach]
        count = len(head) if font.getlength(head) <= max_width else _longest_fit(head, font, max_width)
        yield head[:count]
        start += count


def _ellipsised(line: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    """`line` shortened as needed to end with an ellipsis within `max_width`."""
    if font.getlength(f"{line} {ELLIPSIS}") <= max_width:
        return f"{line} {ELLIPSIS}"
    return line[: _longest_fit(line, font, max_width, ELLIPSIS)].rstrip() + ELLIPSIS


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float, max_lines: int) -> list[str]:
    """At most `max_lines` lines of `text` word-wrapped to `max_width` (too wide words are broken);
    when text is left over, the last line ends with an ellipsis. Reads only as far as the lines reach."""
    lines: list[str] = []
    for match in _WORD.finditer(text):
        for piece in _pieces(match.group(), font, max_width):
            if lines and font.getlength(f"{lines[-1]} {piece}") <= max_width:
                lines[-1] = f"{lines[-1]} {piece}"
            elif len(lines) == max_lines:
                lines[-1] = _ellipsised(lines[-1], font, max_width)
                return lines
            else:
                lines.append(piece)
    return lines


def caption(text: str, width: int, height: int) -> Patch | None:
    """`text` word-wrapped and centred in the lower third of a width x height frame, cut with an
    ellipsis where the third is full; None when there is no text."""
    size = max(11, round(height / 24))
    ascent, descent = _font(size).getmetrics()
    fits = max(1, int((height / 3 - size) // (ascent + descent)))
    lines = wrap(text, _font(size), 0.86 * width - size, fits)
    if not lines:
        return None
    box = _text_box(lines, size, centre=True)
    top = min(round(height * 5 / 6 - box.height / 2), height - box.height - max(2, size // 3))
    return _place(box, (width - box.width) // 2, top, width, height)


def timecode(n: int, fps: Fraction) -> str:
    """HH:MM:SS:FF of frame n; seconds are floor(n / fps), FF counts frames since that second began."""
    seconds = n * fps.denominator // fps.numerator
    first = -(-seconds * fps.numerator // fps.denominator)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{n - first:02d}"


class Burnin:
    """The overlay of a stretch of the timeline: `caption` in the lower third, `label` top-left, and
    the timecode and frame number of each frame top-right; legible from 256x256 to 1920x1080."""

    def __init__(
        self, width: int, height: int, fps: Fraction, frames: range, *, label: str | None, caption_text: str | None
    ):
        self.width, self.height, self.fps = width, height, fps
        self.size = max(10, round(height / 36))
        self.margin = max(4, self.size // 2)
        self.caption = caption(caption_text, width, height) if caption_text else None
        self.label = _place(_text_box([label], self.size), self.margin, self.margin, width, height) if label else None
        self.stamp_width = max((_font(self.size).getlength(self._stamp(n)) for n in frames), default=0.0)

    def _stamp(self, n: int) -> str:
        return f"{timecode(n, self.fps)}  frame {n}"

    def apply(self, frame: np.ndarray, n: int) -> None:
        """Draw the overlay of timeline frame `n` onto `frame` (H, W, 3) uint8, in place."""
        for patch in (self.caption, self.label):
            if patch is not None:
                patch.apply(frame)
        stamp = _text_box([self._stamp(n)], self.size, min_text_width=self.stamp_width)
        _place(stamp, self.width - self.margin - stamp.width, self.margin, self.width, self.height).apply(frame)
