"""What a rule judges in a run: every candidate (full) or the entities an incremental run
picked, and the instants judging leaves for the next runs (engine.run keeps them as watches)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, true


@dataclass
class Scope:
    """The entities a rule judges at this run, and, filled in by judging, when each entity
    judged must be looked at again although nothing in it changes."""

    since: datetime | None  # as_of of the last successful run
    ids: frozenset[int] | None = None  # None: every candidate (a full run)
    watches: dict[str, datetime] = field(default_factory=dict)  # entity id -> next instant

    @property
    def full(self) -> bool:
        """True when the rule judges every candidate."""
        return self.ids is None

    def where(self, table: Table | Any) -> ColumnElement[bool]:
        """The SQL condition that keeps a query to the entities in scope."""
        return true() if self.ids is None else table.c.id.in_(sorted(self.ids))

    def watch(self, entity_id: Any, at: datetime | None) -> None:
        """Note the next instant of interest of an entity judged (none: only a change can)."""
        if at is not None:
            self.watches[str(entity_id)] = at
