from sqlalchemy import inspect

from engine.db.models import Base
from engine.db.schema import alembic_head, current_revision, head_revision, upgrade


def test_init_creates_every_table_and_is_repeatable(db):
    tables = set(inspect(db).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(db) == head_revision()
    assert upgrade(db) == (head_revision(), head_revision())


def test_the_head_the_engine_expects_is_alembics() -> None:
    assert head_revision() == alembic_head(), "set engine.db.schema.HEAD to the new migration"
