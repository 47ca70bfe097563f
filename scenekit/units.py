"""Durations, frame counts, frame rates and sizes as people write them in specs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

_DURATION = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>ms|s|m|f|frames?)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?\s*$")


@dataclass(frozen=True)
class Duration:
    """A span given either in seconds or as an exact frame count."""

    seconds: Fraction | None = None
    frames: int | None = None

    def to_frames(self, fps: Fraction) -> int:
        """Frame count at `fps`; seconds are rounded half up (2.5 frames -> 3)."""
        if self.frames is not None:
            return self.frames
        assert self.seconds is not None
        return math.floor(self.seconds * fps + Fraction(1, 2))

    def __str__(self) -> str:
        if self.frames is not None:
            return f"{self.frames}f"
        assert self.seconds is not None
        return f"{float(self.seconds):g}s"


def parse_duration(value: object) -> Duration:
    """Parse `5s`, `500ms`, `1.5m`, `2.5` (seconds) or `12f` (frames)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s, 500ms, 2.5 or 12f")
    if isinstance(value, int | float | Decimal):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return Duration(seconds=Fraction(str(value)))
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 5s, 500ms, 2.5 or 12f")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a duration; write 5s, 500ms, 2.5 (seconds) or 12f (frames)")
    number, unit = match["num"], match["unit"] or "s"
    if unit.startswith("f"):
        if "." in number:
            raise ValueError(f"'{value}': a frame count must be a whole number")
        return Duration(frames=int(number))
    seconds = Fraction(number)
    if unit == "ms":
        seconds /= 1000
    elif unit == "m":
        seconds *= 60
    return Duration(seconds=seconds)


def parse_fps(value: object) -> Fraction:
    """Parse `24`, `23.976`, `30000/1001` into an exact rate."""
    if isinstance(value, bool):
        raise ValueError("expected a frame rate such as 24 or 30000/1001")
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or not (match := _RATE.match(value)):
        raise ValueError(f"'{value}' is not a frame rate; write 24, 25, 29.97 or 30000/1001")
    try:
        rate = Fraction(match[1]) / (int(match[2]) if match[2] else 1)
    except ZeroDivisionError as exc:
        raise ValueError(f"'{value}' is not a frame rate") from exc
    if not 1 <= rate <= 240:
        raise ValueError(f"frame rate {value} is outside 1..240")
    return rate


def parse_size(value: object) -> tuple[int, int]:
    """Parse `768x512` into (width, height)."""
    if not isinstance(value, str) or not (match := _SIZE.match(value)):
        raise ValueError(f"'{value}' is not a size; write WIDTHxHEIGHT, e.g. 768x512")
    width, height = int(match[1]), int(match[2])
    if width <= 0 or height <= 0:
        raise ValueError(f"size {value} must be positive")
    return width, height


def format_rate(rate: Fraction) -> str:
    """`Fraction(24)` -> `24`, `Fraction(30000, 1001)` -> `30000/1001`."""
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"
