"""docs/tables.md is generated from the models' column comments and must stay in step."""

from __future__ import annotations

from pathlib import Path

from engine.db.docs import render_tables_markdown
from engine.db.models import SERVICE_TABLES

TABLES_MD = Path(__file__).parents[3] / "docs" / "tables.md"


def test_docs_tables_md_is_up_to_date() -> None:
    assert TABLES_MD.read_text(encoding="utf-8") == render_tables_markdown(), (
        "docs/tables.md is stale: run `python -m engine.db.docs > docs/tables.md`"
    )


def test_every_service_column_is_documented_with_its_choices() -> None:
    text = render_tables_markdown()
    for model in SERVICE_TABLES:
        table = model.__table__
        assert f"### {table.name}\n" in text
        for column in table.columns:
            assert f"| `{column.name}` |" in text
            for choice in column.info.get("choices", ()):
                assert f"`{choice}`" in text
    assert "references `branches.id`" in text
