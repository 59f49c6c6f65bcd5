"""PNG charts for report letters and pages, drawn with matplotlib.

- `bar_chart`: items per label, largest first (the overdue summary).
- `kpi_chart`: a branch's KPIs as small multiples, one panel per KPI over the same months, the
  axis from zero (shares 0-100 %), the target a dashed line with the side that misses it
  shaded red, and the values that miss it red.
- `signed_chart`: penalties and rewards per rule, one panel per currency: rewards up in green,
  penalties down in red from a zero line, every amount written at its bar.

Figures use the object-oriented API (`Figure` and the Agg canvas): no pyplot, no global
state, safe in threads. Text in the images reads the same in every language: numbers,
months, currency codes, and panel numbers that the letter or page names in the reader's
language around the image, with what the colours mean. matplotlib's bundled font has no CJK
glyphs and a server may have no CJK font, so words stay out of the images; one image then
serves every reader of a branch. A chart costs 30-80 ms of CPU, the KPI chart's eleven panels
about 200 ms (2026-12-07, a busy 2-core machine), so a night draws only the charts of the
letters it queues and of the pages it writes, each once. Output is deterministic for the same
data, so the last charts drawn are remembered by their data (`_remembered`): nights in one
process, such as the policy tests' 55 cases, draw most of the same charts (95 charts, 17
different), and a repeated chart costs a lookup.
"""

from __future__ import annotations

import functools
import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec

# matplotlib is imported where a chart is drawn: importing it takes half a second, which the
# nights without a report (most of them: a run every 15 minutes) need not spend.
if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BAR_COLOUR = "#c0504d"  # overdue items
RED = "#c62828"  # a penalty; a KPI value missing its target, and the side of the target it is on
GREEN = "#2e7d32"  # a reward
BLUE = "#1f77b4"  # a KPI value on target
TARGET_COLOUR = "#555555"
_INK, _GRID = "#222222", "#e0e0e0"
_DPI = 100
_WIDTH = 7.2  # inches: 720 pixels
_FONT = 9  # points, tick labels and amounts
_COLUMNS = 3  # KPI panels per row
_REMEMBERED = 64  # charts kept, a few kB each

P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class KpiPanel:
    """One KPI over the months: its values (None: not measured) and its target."""

    values: Sequence[float | None]
    missed: Sequence[bool]
    target: float | None = None
    at_least: bool = True  # the target is a floor (≥); else a ceiling (≤)
    kind: str = "average"  # share (in %, drawn 0-100), average or rate: panels of a kind
    # share their axis, so that a lower line is a lower value
    target_text: str = ""  # '≥ 95%', written over the panel

    @property
    def highest(self) -> float:
        """The highest value or target shown."""
        return max([*(v for v in self.values if v is not None), self.target or 0.0])


@dataclass(frozen=True, slots=True)
class SignedBar:
    """One rule's penalties (zero or less) and rewards (zero or more) in one currency."""

    label: str
    penalties: float
    rewards: float


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, without a timestamp or version: the same data, the same bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    # The fastest zlib level: a tenth of the drawing time instead of a third, for a file
    # a few kB larger.
    FigureCanvasAgg(figure).print_png(
        buffer, metadata={"Software": None}, pil_kwargs={"compress_level": 1}
    )
    return buffer.getvalue()


def _remembered(draw: Callable[P, bytes]) -> Callable[P, bytes]:
    """`draw`, returning the PNG drawn before for the same data, of the last _REMEMBERED.

    The key is the data's repr, not the data: values that compare equal (0.0 and -0.0, 1 and
    1.0) may be drawn apart, and the panels' sequences may be lists, which do not hash. Floats'
    reprs are exact, and the dataclasses' show every field."""
    kept: OrderedDict[str, bytes] = OrderedDict()
    lock = threading.Lock()  # the figures are safe in threads, and so is what is kept

    @functools.wraps(draw)
    def remembered(*args: P.args, **kwargs: P.kwargs) -> bytes:
        key = repr((args, sorted(kwargs.items())))
        with lock:
            if key in kept:
                kept.move_to_end(key)
                return kept[key]
        drawn = draw(*args, **kwargs)
        with lock:
            kept[key] = drawn
            while len(kept) > _REMEMBERED:
                kept.popitem(last=False)
        return drawn

    return remembered


def chart_cid(name: str) -> str:
    """The Content-ID of the chart of report `name`: unique within a digest of many reports."""
    return f"{name}.png@aftersales"


@_remembered
def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "") -> bytes:
    """A horizontal bar chart of (label, value) pairs, largest first, as PNG bytes."""
    return png(bar_figure(title, bars, unit=unit))


def bar_figure(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "") -> Figure:
    """The figure of `bar_chart`."""
    from matplotlib.ticker import MaxNLocator

    ordered = sorted(bars, key=lambda bar: (-bar[1], bar[0]))
    labels = [label for label, _ in ordered]
    figure = _figure(height=1.1 + 0.35 * max(len(ordered), 1))
    # Room for the longest label at the left, in inches (about 0.6 em per character).
    left = 0.25 + 0.6 * (_FONT + 1) / 72 * max((len(label) for label in labels), default=0)
    _margins(figure, left=left, right=0.5, top=0.45, bottom=0.5)
    axes = figure.add_subplot()
    rows = range(len(ordered))
    found = axes.barh(rows, [value for _, value in ordered], height=0.7, color=BAR_COLOUR)
    axes.bar_label(found, labels=[_number(v) for _, v in ordered], padding=3, fontsize=_FONT)
    axes.set_yticks(rows, labels, fontsize=_FONT + 1)
    axes.invert_yaxis()  # the largest at the top
    axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axes.set_xlabel(unit, fontsize=_FONT)
    axes.tick_params(axis="x", labelsize=_FONT)
    axes.set_title(title, fontsize=_FONT + 3)
    _tidy(axes, grid="x")
    return figure


@_remembered
def kpi_chart(months: Sequence[str], panels: Sequence[KpiPanel]) -> bytes:
    """One small panel per KPI over `months`, numbered from 1, as PNG bytes."""
    return png(kpi_figure(months, panels))


def kpi_figure(months: Sequence[str], panels: Sequence[KpiPanel]) -> Figure:
    """The figure of `kpi_chart`: panels in rows of three, the months under each column."""
    rows = max(math.ceil(len(panels) / _COLUMNS), 1)
    figure = _figure(height=0.55 + 1.6 * rows)
    _margins(figure, left=0.45, right=0.15, top=0.3, bottom=0.3)
    grid = figure.add_gridspec(rows, _COLUMNS, hspace=0.55, wspace=0.3)
    # Every axis starts at zero: shares end at 100 %, the others a tenth above the highest
    # value or target of their kind.
    tops: dict[str, float] = {}
    for panel in panels:
        tops[panel.kind] = max(tops.get(panel.kind, 0.0), 1.1 * panel.highest)
    tops["share"] = 100.0
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(grid[divmod(index, _COLUMNS)])
        # The months are written under the lowest panel of each column only: they are the same.
        dated = index + _COLUMNS >= len(panels)
        _kpi_panel(axes, index + 1, months, panel, top=tops[panel.kind] or 1.0, dated=dated)
    return figure


def _kpi_panel(
    axes: Axes, number: int, months: Sequence[str], panel: KpiPanel, *, top: float, dated: bool
) -> None:
    from matplotlib.ticker import MaxNLocator

    # Ticks, labels and grid lines given, not computed per axis and restyled after: eleven
    # panels cost a third less.
    if panel.kind == "share":
        ticks, labels = [0.0, 50.0, 100.0], ["0%", "50%", "100%"]
    else:
        found = MaxNLocator(nbins=4, steps=[1, 2, 5, 10]).tick_values(0, top)
        ticks = [float(t) for t in found if t <= top]
        labels = [f"{t:g}" for t in ticks]
    axes.set_ylim(0, top)
    axes.set_xlim(-0.4, len(months) - 0.6)
    axes.set_yticks(ticks, labels, fontsize=_FONT - 1)
    axes.hlines(ticks, -0.4, len(months) - 0.6, color=_GRID, linewidth=0.8, zorder=0)
    if panel.target is not None:
        axes.axhline(panel.target, color=TARGET_COLOUR, linewidth=1, linestyle=(0, (4, 3)))
        low, high = (0, panel.target) if panel.at_least else (panel.target, top)
        axes.axhspan(low, high, color=RED, alpha=0.08, linewidth=0)
    xs = range(len(panel.values))
    axes.plot(xs, [math.nan if v is None else v for v in panel.values], color=BLUE, linewidth=1.5)
    for missed, colour in ((False, BLUE), (True, RED)):
        ys = [v if v is not None and m is missed else math.nan
              for v, m in zip(panel.values, panel.missed, strict=True)]  # fmt: skip
        axes.plot(xs, ys, linestyle="", marker="o", markersize=5, color=colour, clip_on=False)
    axes.set_xticks(range(len(months)), _short(months) if dated else [], fontsize=_FONT - 1)
    _heading(axes, str(number), panel.target_text)
    _tidy(axes, grid="")


@_remembered
def signed_chart(panels: Sequence[tuple[str, Sequence[SignedBar]]]) -> bytes:
    """Penalties below and rewards above zero per bar, a panel per (title, bars), as PNG."""
    return png(signed_figure(panels))


def signed_figure(panels: Sequence[tuple[str, Sequence[SignedBar]]]) -> Figure:
    """The figure of `signed_chart`: the panels side by side, as wide as their bars."""
    figure = _figure(height=2.4)
    _margins(figure, left=0.2, right=0.2, top=0.35, bottom=0.3)
    # Every bar as wide as in a panel of three: one rule's bar is not a block across the page.
    slots = [max(len(bars), 3) for _, bars in panels] or [1]
    grid = figure.add_gridspec(1, len(slots), width_ratios=slots, wspace=0.1)
    for index, (title, bars) in enumerate(panels):
        axes = figure.add_subplot(grid[0, index])
        xs = range(len(bars))
        spare = (slots[index] - len(bars)) / 2
        for sign, colour in (("penalties", RED), ("rewards", GREEN)):
            amounts = [getattr(bar, sign) for bar in bars]
            drawn = axes.bar(xs, amounts, width=0.6, color=colour, label=sign)
            # Every amount is written; a rule whose entries cancel out says 0, once.
            texts = [
                _amount(getattr(bar, sign))
                if getattr(bar, sign) or (sign == "rewards" and not bar.penalties)
                else ""
                for bar in bars
            ]
            axes.bar_label(drawn, labels=texts, padding=2, fontsize=_FONT)
        axes.axhline(0, color=_INK, linewidth=1, clip_on=False)
        axes.margins(y=0.2)  # room for the amounts above and below the bars
        axes.set_xlim(-0.6 - spare, len(bars) - 0.4 + spare)
        axes.set_xticks(xs, [bar.label for bar in bars], fontsize=_FONT + 1)
        axes.set_yticks([])
        _heading(axes, title)
        # The zero line is the only horizontal line: the bars' axis below the data would read
        # as a second zero under the penalties.
        axes.spines[:].set_visible(False)
        axes.tick_params(axis="x", length=0)
    return figure


def _figure(height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(_WIDTH, height), dpi=_DPI, facecolor="white")


def _margins(figure: Figure, *, left: float, right: float, top: float, bottom: float) -> None:
    """Fixed margins in inches: the layout costs nothing to compute, unlike tight_layout."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height
    )


def _heading(axes: Axes, left: str, right: str = "") -> None:
    """Bold `left` over the panel's left edge, `right` in grey over its right edge. Texts,
    not titles: matplotlib places titles by measuring every axis, a third of a chart's time."""
    above = {"transform": axes.transAxes, "va": "bottom", "fontsize": _FONT + 1}
    axes.text(0, 1.06, left, ha="left", fontweight="bold", **above)
    if right:
        axes.text(1, 1.06, right, ha="right", color=TARGET_COLOUR, **above)


def _tidy(axes: Axes, *, grid: str) -> None:
    """No box around the data; light grid lines across the values' direction."""
    axes.spines[["top", "right"]].set_visible(False)
    axes.spines[["left", "bottom"]].set_color(_INK)
    if grid:
        axes.grid(axis=grid, color=_GRID, linewidth=0.8)  # type: ignore[arg-type]
        axes.set_axisbelow(True)


def _short(months: Sequence[str]) -> list[str]:
    """'2026-11', '12', '2027-01', '02': the year only where it changes, so that a panel's
    months fit under it side by side."""
    shown = []
    for before, month in zip([None, *months], months, strict=False):
        same_year = before is not None and before[:4] == month[:4]
        shown.append(month[5:] if same_year else month)
    return shown


def _number(value: float) -> str:
    return f"{value:g}"


def _amount(value: float) -> str:
    """An amount with its sign and digits in groups of three, e.g. '−1 250', '+300', '0'."""
    digits = f"{abs(value):,.0f}" if float(value).is_integer() else f"{abs(value):,.2f}"
    sign = "−" if value < 0 else "+" if value > 0 else ""
    return sign + digits.replace(",", "\u202f")  # a narrow space: neither 1,250 nor 1.250
