"""Policy files written for a test, and the problems loading them reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import PolicyError, Problem
from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")


def write_policy(tmp_path: Path, **files: str) -> Path:
    """A rules folder holding `<name>.yaml` for each keyword (written over on a second call)."""
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


def problems_of(folder: Path, templates: NoticeTemplates = TEMPLATES) -> list[Problem]:
    """The problems loading `folder` with `templates` reports (it must fail)."""
    with pytest.raises(PolicyError) as caught:
        load_policy(folder, templates)
    return caught.value.problems


def line_col(text: str, needle: str) -> tuple[int, int]:
    """Line and column (1-based) of the first `needle` in `text`, as a problem reports them."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)
