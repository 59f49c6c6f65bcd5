"""Small PNG charts for report letters and pages, drawn with Pillow.

A night draws a chart per branch for each report (overdue, penalties, KPIs): at a large site
that is hundreds, and matplotlib took 70 ms to lay out and render each, against a few here.
Charts are drawn at twice their size and scaled down, for smooth edges.

Labels should be ASCII (rule ids, periods, branch codes): Pillow's bundled font has no CJK
glyphs, and a chart must read the same in every locale. Output is deterministic for the same data.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from itertools import pairwise

from PIL import Image, ImageDraw, ImageFont

BAR_COLOUR = (0xC0, 0x50, 0x4D)
# matplotlib's default cycle, so the charts look as they did before.
LINE_COLOURS = (
    (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28),
    (0x94, 0x67, 0xBD), (0x8C, 0x56, 0x4B), (0xE3, 0x77, 0xC2), (0x7F, 0x7F, 0x7F),
    (0xBC, 0xBD, 0x22), (0x17, 0xBE, 0xCF),
)  # fmt: skip
_INK, _GRID, _WHITE = (0x22, 0x22, 0x22), (0xDD, 0xDD, 0xDD), (0xFF, 0xFF, 0xFF)
_S = 2  # drawn at twice the size, then scaled down
_WIDTH = 640
_ROW = 35  # pixels per bar


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "") -> bytes:
    """A horizontal bar chart of (label, value) pairs, largest first, as PNG bytes."""
    return _bar_chart(title, tuple(bars), unit)


# A night draws the same chart for a branch's letter and for the page: draw it once.
@lru_cache(maxsize=64)
def _bar_chart(title: str, bars: tuple[tuple[str, float], ...], unit: str) -> bytes:
    ordered = sorted(bars, key=lambda bar: (-bar[1], bar[0]))
    canvas = _Canvas(_WIDTH, 120 + _ROW * max(len(ordered), 1), title)
    label_width = max((canvas.width_of(label) for label, _ in ordered), default=0)
    left, right, top, bottom = 16 + label_width + 8, _WIDTH - 56, 40, canvas.height - 46
    integer = all(float(value).is_integer() for _, value in ordered)
    ticks = nice_ticks(0, max((value for _, value in ordered), default=0), integer=integer)
    scale = (right - left) / (ticks[-1] or 1)
    for tick in ticks:
        x = left + tick * scale
        canvas.line((x, bottom), (x, bottom + 4))
        canvas.text((x, bottom + 6), _number(tick), anchor="mt")
    canvas.text(((left + right) / 2, bottom + 24), unit, anchor="mt")
    for row, (label, value) in enumerate(ordered):
        middle = top + (row + 0.5) * (bottom - top) / len(ordered)
        half = 0.4 * (bottom - top) / len(ordered)
        end = left + max(value, 0) * scale
        canvas.box((left, middle - half), (end, middle + half), BAR_COLOUR)
        canvas.text((left - 6, middle), label, anchor="rm")
        canvas.text((end + 4, middle), _number(value), anchor="lm")
    canvas.line((left, top), (left, bottom))
    canvas.line((left, bottom), (right, bottom))
    return canvas.png()


def line_chart(
    title: str,
    months: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
) -> bytes:
    """One line per series over the months (None: a gap), as PNG bytes."""
    canvas = _Canvas(_WIDTH, 320, title)
    left, right, top, bottom = 70, _WIDTH - 20, 40, 320 - 40
    values = [v for points in series.values() for v in points if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    ticks = nice_ticks(low, high)
    span = (ticks[-1] - ticks[0]) or 1

    def y(value: float) -> float:
        return bottom - (value - ticks[0]) / span * (bottom - top)

    def x(index: int) -> float:
        return left + (index + 0.5) * (right - left) / max(len(months), 1)

    for tick in ticks:
        canvas.line((left - 4, y(tick)), (left, y(tick)))
        canvas.text((left - 6, y(tick)), _number(tick), anchor="rm")
    canvas.text((left - 6, top - 14), unit, anchor="rb")
    for index, month in enumerate(months):
        canvas.line((x(index), bottom), (x(index), bottom + 4))
        canvas.text((x(index), bottom + 6), month, anchor="mt")
    for number, label in enumerate(sorted(series)):
        colour = LINE_COLOURS[number % len(LINE_COLOURS)]
        points = [(x(i), y(v)) if v is not None else None for i, v in enumerate(series[label])]
        for start, end in pairwise(points):
            if start is not None and end is not None:
                canvas.line(start, end, colour, width=1.5)
        for point in points:
            if point is not None:
                canvas.dot(point, colour)
        key = bottom - 14 - 16 * (len(series) - 1 - number)
        canvas.line((left + 10, key), (left + 30, key), colour, width=1.5)
        canvas.dot((left + 20, key), colour)
        canvas.text((left + 36, key), label, anchor="lm", size=9)
    canvas.line((left, top), (left, bottom))
    canvas.line((left, bottom), (right, bottom))
    return canvas.png()


def chart_cid(name: str) -> str:
    """The Content-ID of the chart of report `name`: unique within a digest of many reports."""
    return f"{name}.png@aftersales"


def nice_ticks(low: float, high: float, *, integer: bool = False) -> list[float]:
    """Round axis ticks from at or below `low` to at or above `high`, five to ten of them."""
    if high <= low:
        high = low + 1
    raw = (high - low) / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    first = math.floor(low / step) * step
    count = math.ceil((high - first) / step - 1e-9)
    return [round(first + i * step, 10) for i in range(count + 1)]


def _number(value: float) -> str:
    return f"{value:g}"


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size * _S)


class _Canvas:
    """A white image drawn at _S times its size; coordinates are given at final size."""

    def __init__(self, width: int, height: int, title: str) -> None:
        self.width, self.height = width, height
        self.image = Image.new("RGB", (width * _S, height * _S), _WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.text((width / 2, 12), title, anchor="mt", size=13)

    def width_of(self, text: str, size: int = 11) -> int:
        """Width of `text` at final size, in pixels."""
        return math.ceil(self.draw.textlength(text, font=_font(size)) / _S)

    def text(self, at: tuple[float, float], text: str, *, anchor: str, size: int = 11) -> None:
        """Write `text` at `at`; `anchor` as Pillow's (`mt`: middle, top)."""
        if text:
            self.draw.text(_scaled(at), text, fill=_INK, font=_font(size), anchor=anchor)

    def line(
        self,
        start: tuple[float, float],
        end: tuple[float, float],
        colour: tuple[int, int, int] = _INK,
        width: float = 1,
    ) -> None:
        """A straight line between two points."""
        self.draw.line([_scaled(start), _scaled(end)], fill=colour, width=round(width * _S))

    def box(
        self, corner: tuple[float, float], opposite: tuple[float, float], colour: tuple[int, ...]
    ) -> None:
        """A filled rectangle."""
        (x0, y0), (x1, y1) = _scaled(corner), _scaled(opposite)
        if x1 > x0:
            self.draw.rectangle((x0, y0, x1, y1), fill=colour)

    def dot(self, at: tuple[float, float], colour: tuple[int, int, int]) -> None:
        """A filled circle marking a data point."""
        x, y = _scaled(at)
        radius = 4 * _S
        self.draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)

    def png(self) -> bytes:
        """The image at final size, as PNG bytes."""
        small = self.image.reduce(_S)  # a box filter: smooth enough, and ten times faster
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def _scaled(at: tuple[float, float]) -> tuple[float, float]:
    return at[0] * _S, at[1] * _S
