"""What a rule judges in a run: every candidate (full) or the entities an incremental run
picked, and the instants judging leaves for the next runs (engine.run keeps them as watches);
for a rule that changed, which items by closing time each version judges (engine.rule_versions)."""

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


@dataclass(frozen=True)
class ClosedWindow:
    """The items a version judges: those closed in [since, until); open ones too when
    `until` is None (the version in force now). None for `since`: from the beginning."""

    since: datetime | None = None
    until: datetime | None = None
    # The rule (the current version) whose meaning of "closed" places every item in exactly
    # one window, whatever each version's own stop fields, close day or due day say.
    closing: Any = None

    def holds(self, closed_at: datetime | None) -> bool:
        """Whether an item closed at `closed_at` (None: still open) is this window's."""
        if closed_at is None:
            return self.until is None
        after = self.since is None or closed_at >= self.since
        return after and (self.until is None or closed_at < self.until)
