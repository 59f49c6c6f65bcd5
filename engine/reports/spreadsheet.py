"""CSV files for spreadsheets: report cells that Excel or LibreOffice cannot run as formulas.

A report's text comes from data people typed (staff and branch names, call numbers, reasons).
A text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return would be read as a
formula when a manager opens the attached CSV (CSV injection), so it gets a leading apostrophe,
OWASP's rule, and shows as the text it is. Numbers are given as numbers (Decimal, int, float)
and written as they are: a refund of -50.00 stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TextIO

__all__ = ["Cell", "csv_text", "spreadsheet_cell", "write_csv"]

Cell = str | Decimal | int | float | None
"""A value of one CSV cell: text (neutralised if it looks like a formula), a number, or empty."""

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Cell) -> str:
    """The text of one cell: numbers as written, text that a spreadsheet would run prefixed `'`."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")  # never an exponent: 1E+2 would read as text in some tools
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """A CSV document: a header row, then one line per row, every cell made safe to open."""
    out = io.StringIO()
    write_csv(out, columns, rows)
    return out.getvalue()


def write_csv(handle: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """Write `csv_text`'s document to `handle` row by row, for listings too long to hold."""
    # RFC 4180's CRLF line ends: the csv module quotes a cell holding a character of the line
    # terminator only, so with "\n" alone a CR inside a name would end the row in a spreadsheet.
    writer = csv.writer(handle, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([spreadsheet_cell(value) for value in row] for row in rows)
