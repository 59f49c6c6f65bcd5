"""Small PNG charts for report letters and pages, drawn with matplotlib off-screen.

Labels should be ASCII (rule ids, periods, branch codes): the bundled fonts have no CJK glyphs,
and a chart must read the same in every locale. Output is deterministic for the same data.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from functools import lru_cache

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_PNG_METADATA = {"Software": None}  # no version string, so equal data gives equal bytes
_WIDTH = 6.4  # inches, at 100 dpi
_CHAR = 0.062  # inches per character of an 8-point tick label, a little over DejaVu Sans's


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "") -> bytes:
    """A horizontal bar chart of (label, value) pairs, largest first, as PNG bytes."""
    return _bar_chart(title, tuple(bars), unit)


# A night draws the same chart for a branch's letter and for the page: draw it once.
@lru_cache(maxsize=64)
def _bar_chart(title: str, bars: tuple[tuple[str, float], ...], unit: str) -> bytes:
    ordered = sorted(bars, key=lambda bar: (-bar[1], bar[0]))
    height = 1.2 + 0.35 * max(len(ordered), 1)
    figure = Figure(figsize=(_WIDTH, height), dpi=100)
    axes = figure.add_subplot()
    longest = max((len(label) for label, _ in ordered), default=0)
    _margins(figure, left=0.25 + _CHAR * longest, top=0.4, bottom=0.45)
    labels = [label for label, _ in ordered][::-1]
    values = [value for _, value in ordered][::-1]
    axes.barh(labels, values, color="#c0504d")
    for y, value in enumerate(values):
        axes.annotate(f"{value:g}", (value, y), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=8)  # fmt: skip
    if all(float(value).is_integer() for value in values):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "0.5 calls"
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(unit, fontsize=8)
    axes.tick_params(labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def line_chart(
    title: str,
    months: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
) -> bytes:
    """One line per series over the months (None: a gap), as PNG bytes."""
    figure = Figure(figsize=(_WIDTH, 3.2), dpi=100)
    axes = figure.add_subplot()
    _margins(figure, left=0.7, top=0.4, bottom=0.45)
    for label in sorted(series):
        values = [float("nan") if v is None else v for v in series[label]]
        axes.plot(list(months), values, marker="o", linewidth=1.5, label=label)
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(unit, fontsize=8)
    axes.tick_params(labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    if series:
        axes.legend(fontsize=7, loc="lower left", frameon=False)
    return _png(figure)


def chart_cid(name: str) -> str:
    """The Content-ID of the chart of report `name`: unique within a digest of many reports."""
    return f"{name}.png@aftersales"


def _margins(figure: Figure, *, left: float, top: float, bottom: float) -> None:
    """Fixed margins in inches: tight_layout would measure every label, at half the chart's
    cost, and a night draws a chart per branch and report."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(
        left=min(left / width, 0.6), right=1 - 0.4 / width, top=1 - top / height,
        bottom=bottom / height,
    )  # fmt: skip


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # A Figure without pyplot: no global figure registry to fill and close.
    figure.savefig(buffer, format="png", metadata=_PNG_METADATA, pil_kwargs={"compress_level": 1})
    return buffer.getvalue()
