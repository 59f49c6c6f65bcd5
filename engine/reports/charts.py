"""Small PNG charts for report letters and pages, drawn with matplotlib off-screen.

Labels should be ASCII (rule ids, periods, branch codes): the bundled fonts have no CJK glyphs,
and a chart must read the same in every locale. Output is deterministic for the same data.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot

from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_PNG_METADATA = {"Software": None}  # no version string, so equal data gives equal bytes


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, unit: str = "") -> bytes:
    """A horizontal bar chart of (label, value) pairs, largest first, as PNG bytes."""
    ordered = sorted(bars, key=lambda bar: (-bar[1], bar[0]))
    height = 1.2 + 0.35 * max(len(ordered), 1)
    figure, axes = plt.subplots(figsize=(6.4, height), dpi=100)
    try:
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
    finally:
        plt.close(figure)


def line_chart(
    title: str,
    months: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
) -> bytes:
    """One line per series over the months (None: a gap), as PNG bytes."""
    figure, axes = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    try:
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
    finally:
        plt.close(figure)


def chart_cid(name: str) -> str:
    """The Content-ID of the chart of report `name`: unique within a digest of many reports."""
    return f"{name}.png@aftersales"


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata=_PNG_METADATA)
    return buffer.getvalue()
