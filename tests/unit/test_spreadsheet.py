"""Cells of report CSVs: text that a spreadsheet would run is prefixed, numbers are not."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from engine.reports.spreadsheet import csv_text, spreadsheet_cell


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1", "-50.00"])
def test_text_starting_like_a_formula_gets_an_apostrophe(text):
    assert spreadsheet_cell(text) == "'" + text


@pytest.mark.parametrize(
    ("number", "written"),
    [(Decimal("-50.00"), "-50.00"), (Decimal("1E+2"), "100"), (-3, "-3"), (-0.5, "-0.5")],
)
def test_numbers_are_written_as_numbers(number, written):
    assert spreadsheet_cell(number) == written


def test_a_line_break_inside_a_cell_stays_inside_its_row():
    text = csv_text(("name", "amount"), [("Ana\rGarcía", Decimal("-50.00")), (None, 1)])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["name", "amount"],
        ["Ana\rGarcía", "-50.00"],
        ["", "1"],
    ]
