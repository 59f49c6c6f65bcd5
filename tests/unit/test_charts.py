"""Report charts: PNGs of the right shape, the same bytes for the same data, round axis ticks."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.reports.charts import BAR_COLOUR, LINE_COLOURS, bar_chart, line_chart, nice_ticks


def _pixels(png: bytes) -> tuple[Image.Image, dict[tuple[int, int, int], int]]:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return image, {colour: count for count, colour in image.getcolors(1 << 20)}


def test_a_bar_per_item_longest_for_the_largest() -> None:
    png = bar_chart("Overdue now: SH-01", [("dispatch-urban", 3), ("same-day", 12)], unit="items")
    image, colours = _pixels(png)
    assert image.size == (640, 120 + 2 * 35)
    assert colours[BAR_COLOUR] > 3000
    rows = [y for y in range(image.height) if image.getpixel((400, y)) == BAR_COLOUR]
    assert rows and max(rows) < image.height / 2, "the larger bar is drawn first, at the top"
    assert png == bar_chart(
        "Overdue now: SH-01", [("same-day", 12), ("dispatch-urban", 3)], unit="items"
    )


def test_lines_skip_the_months_without_a_value() -> None:
    png = line_chart(
        "KPIs", ["2026-09", "2026-10", "2026-11"], {"a": [1.0, None, 3.0], "b": [2.0, 2.0, 2.0]}
    )
    image, colours = _pixels(png)
    assert image.size == (640, 320)
    assert colours[LINE_COLOURS[0]] > 50 and colours[LINE_COLOURS[1]] > 50


@pytest.mark.parametrize(
    ("low", "high", "integer", "ticks"),
    [
        (0, 3766, True, [0, 1000, 2000, 3000, 4000]),
        (40, 87.5, False, [40, 50, 60, 70, 80, 90]),
        (0, 2.5, False, [0, 0.5, 1, 1.5, 2, 2.5]),
        (0, 3, True, [0, 1, 2, 3]),
        (0, 0, True, [0, 1]),
    ],
)
def test_ticks_are_round_and_cover_the_values(low, high, integer, ticks) -> None:
    assert nice_ticks(low, high, integer=integer) == ticks
