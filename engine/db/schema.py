"""Create, upgrade and check the schema with Alembic, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from engine.db.changes import install_triggers
from engine.errors import DatabaseNotReady

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

HEAD = "0018"
"""The newest migration, as Alembic finds it (a test checks): a cycle every few minutes checks
the schema without importing Alembic, which costs it a tenth of a second."""


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration shipped with this version of the engine."""
    return HEAD


def alembic_head() -> str:
    """The newest migration as Alembic reads the migrations folder."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.scalar(text("SELECT version_num FROM alembic_version"))


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        # From the current models: a later migration that rebuilt a table on SQLite (batch
        # mode) dropped its triggers, and one that added a foreign key wants it in tombstones.
        install_triggers(conn)
    return before, head_revision()


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is missing or older than this engine."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "has no schema" if current is None else f"is at revision {current}"
        raise DatabaseNotReady(
            f"the database {engine.url.render_as_string(hide_password=True)} {state}; "
            f"this engine needs {head}. Run `aftersales init` first."
        )
