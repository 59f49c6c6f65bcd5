"""Report charts as a reader sees them: a panel per KPI with its axis from zero, the target
dashed and the values missing it red; penalties below a zero line in red and rewards above it
in green, every amount written; no text cut off or drawn over another; no words, which the
letter around the image gives in the reader's language; the same bytes for the same data."""

from __future__ import annotations

import io
import math
import re
from itertools import combinations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb, to_rgba
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from engine.reports.charts import (
    BAR_COLOUR,
    BLUE,
    GREEN,
    RED,
    KpiPanel,
    SignedBar,
    bar_chart,
    bar_figure,
    kpi_chart,
    kpi_figure,
    png,
    signed_chart,
    signed_figure,
)

MONTHS = ("2026-08", "2026-09", "2026-10", "2026-11")
SHARE = KpiPanel((80.0, 100.0, None, 77.8), (True, False, False, True), 90, True, "share", "≥ 90%")
AVERAGE = KpiPanel((3.46, 3.41, 3.48, 3.25), (True,) * 4, 3.5, True, "average", "≥ 3.5")
RATE = KpiPanel((0.0, 0.0, 0.0, 75.0), (False, False, False, True), 2.0, False, "rate", "≤ 2")
UNTARGETED = KpiPanel((3.5, 3.9, 3.3, 3.2), (False,) * 4, kind="average")
# The shipped policy's eleven KPIs: five survey averages, five shares, the complaint rate.
ELEVEN = (AVERAGE, *(UNTARGETED,) * 4, *(SHARE,) * 5, RATE)
PENALTIES = (
    ("CNY", (SignedBar("1", -1250, 0), SignedBar("2", -50, 0), SignedBar("3", 0, 15464.5))),
    ("EUR", (SignedBar("1", -50, 0),)),
    ("TWD", (SignedBar("3", 0, 3840), SignedBar("4", 0, 0))),
)
OVERDUE = [("dispatch-urban", 3), ("same-day", 12), ("warranty-resolution-24h", 1)]


def _rgb(colour: str) -> tuple[int, ...]:
    return tuple(round(255 * c) for c in to_rgb(colour))


def _texts(figure: Figure) -> list[Text]:
    """The texts a reader sees, laid out as in the PNG (ticks outside the axis are not drawn)."""
    FigureCanvasAgg(figure).draw()
    shown: list[Text] = []
    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            low, high = sorted(axis.get_view_interval())
            ticks = axis.get_major_ticks()
            shown += [t.label1 for t in ticks if low - 1e-9 <= t.get_loc() <= high + 1e-9]
            shown.append(axis.label)
        shown += [*axes.texts, axes.title]
    return [t for t in shown if t.get_visible() and t.get_text().strip()]


def test_one_panel_per_kpi_over_the_same_months() -> None:
    figure = kpi_figure(MONTHS, [SHARE, AVERAGE, RATE, UNTARGETED])

    assert [a.get_xlim() for a in figure.axes] == [(-0.4, 3.4)] * 4
    assert [t.get_text() for t in _texts(figure) if t.get_fontweight() == "bold"] == list("1234")
    # Three panels a row: the months are written under the lowest panel of each column, the
    # year where it changes.
    dated = [[t.get_text() for t in a.get_xticklabels()] for a in figure.axes]
    months = ["2026-08", "09", "10", "11"]
    assert dated == [[""] * 4, months, months, months]
    winter = ("2026-12", "2027-01", "2027-02")
    (turn,) = kpi_figure(winter, [KpiPanel((1, 2, 3), (False,) * 3)]).axes
    assert [t.get_text() for t in turn.get_xticklabels()] == ["2026-12", "2027-01", "02"]


def test_each_axis_starts_at_zero_and_shares_end_at_100_percent() -> None:
    share, average, rate, untargeted = kpi_figure(MONTHS, [SHARE, AVERAGE, RATE, UNTARGETED]).axes

    assert share.get_ylim() == (0, 100)
    assert [t.get_text() for t in share.get_yticklabels()] == ["0%", "50%", "100%"]
    # Panels of a kind share their scale, high enough for every value and target.
    assert average.get_ylim() == untargeted.get_ylim() == (0, pytest.approx(1.1 * 3.9))
    assert rate.get_ylim() == (0, pytest.approx(1.1 * 75))


def test_the_target_is_dashed_and_the_values_missing_it_red() -> None:
    share, _average, rate, untargeted = kpi_figure(MONTHS, [SHARE, AVERAGE, RATE, UNTARGETED]).axes

    (target,) = [line for line in share.lines if line.get_linestyle() == "--"]
    assert list(target.get_ydata()) == [90, 90]
    dots = [line for line in share.lines if line.get_marker() == "o"]
    points = {
        to_rgba(dot.get_color()): [(x, y) for x, y in dot.get_xydata() if not math.isnan(y)]
        for dot in dots
    }
    assert points == {to_rgba(RED): [(0, 80), (3, 77.8)], to_rgba(BLUE): [(1, 100)]}
    # The side of the target that misses it is shaded: below a floor, above a ceiling.
    assert [p.get_y() for p in share.patches] == [0] and share.patches[0].get_height() == 90
    assert [p.get_y() for p in rate.patches] == [2]
    assert not [line for line in untargeted.lines if line.get_linestyle() == "--"]
    (values,) = [line for line in share.lines if line.get_linestyle() == "-"]
    assert str(values.get_ydata()[2]) == "nan", "a month without a value is a gap"


def test_penalties_go_below_the_zero_line_in_red_and_rewards_above_it_in_green() -> None:
    image = Image.open(io.BytesIO(signed_chart(PENALTIES[:1]))).convert("RGB")
    width, height = image.size
    rows = {colour: [] for colour in (_rgb(RED), _rgb(GREEN))}
    for y in range(height):
        line = [image.getpixel((x, y)) for x in range(width)]
        for colour, found in rows.items():
            if line.count(colour) > 10:
                found.append(y)
        if line.count(_rgb("#222222")) > width / 2:
            zero = y

    assert rows[_rgb(RED)] and rows[_rgb(GREEN)], "both bars are drawn"
    assert min(rows[_rgb(RED)]) > zero > max(rows[_rgb(GREEN)])
    texts = [t.get_text() for t in _texts(signed_figure(PENALTIES))]
    assert {"−1\u202f250", "−50", "+15\u202f464.50", "+3\u202f840", "0"} <= set(texts)
    assert texts.count("−50") == 2, "every amount is written, in every currency's panel"


@pytest.mark.parametrize(
    "figure",
    [kpi_figure(MONTHS, ELEVEN), signed_figure(PENALTIES), bar_figure("Overdue", OVERDUE)],
    ids=["kpi", "penalties", "overdue"],
)
def test_no_text_is_cut_off_or_drawn_over_another(figure: Figure) -> None:
    texts = _texts(figure)
    boxes = [t.get_window_extent() for t in texts]
    inside = figure.bbox.padded(-1)
    assert [t.get_text() for t, b in zip(texts, boxes, strict=True) if
            not (inside.contains(b.x0, b.y0) and inside.contains(b.x1, b.y1))] == []  # fmt: skip
    assert [
        (a.get_text(), b.get_text())
        for (a, box_a), (b, box_b) in combinations(zip(texts, boxes, strict=True), 2)
        if box_a.overlaps(box_b)
    ] == []


def test_kpi_and_penalty_charts_hold_no_words_only_numbers_months_and_currencies() -> None:
    shown = [t.get_text() for f in (kpi_figure(MONTHS, ELEVEN), signed_figure(PENALTIES))
             for t in _texts(f)]  # fmt: skip
    words = [text for text in shown if re.search(r"[^\d\s.,%+−≥≤\-]", text)]
    assert set(words) == {"CNY", "EUR", "TWD"}


def test_the_same_data_gives_the_same_bytes() -> None:
    # Drawn twice, not through the charts remembered by their data.
    assert png(kpi_figure(MONTHS, ELEVEN)) == png(kpi_figure(MONTHS, ELEVEN))
    assert png(signed_figure(PENALTIES)) == png(signed_figure(PENALTIES))


def test_a_remembered_chart_is_the_one_its_data_draws() -> None:
    assert kpi_chart(MONTHS, ELEVEN) == png(kpi_figure(MONTHS, ELEVEN))
    assert kpi_chart(MONTHS, ELEVEN) is kpi_chart(MONTHS, ELEVEN)
    # Data that compare equal are told apart: each gets the chart it draws.
    for amount in (0.0, -0.0, 1, 1.0):
        bars = [("CNY", [SignedBar("1", penalties=-1.0, rewards=amount)])]
        assert signed_chart(bars) == png(signed_figure(bars))


def test_overdue_bars_longest_at_the_top() -> None:
    image = Image.open(io.BytesIO(bar_chart("Overdue", OVERDUE, unit="items"))).convert("RGB")
    lengths = {}
    for y in range(image.height):
        line = [image.getpixel((x, y)) for x in range(image.width)]
        if line.count(_rgb(BAR_COLOUR)) > 5:
            lengths[y] = line.count(_rgb(BAR_COLOUR))
    longest, shortest = max(lengths.values()), min(lengths.values())
    assert max(y for y, n in lengths.items() if n == longest) < min(
        y for y, n in lengths.items() if n == shortest
    )
