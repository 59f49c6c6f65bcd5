"""Nights missed while the host was down: what a catch-up run stands in for.

The engine knows the as-of of the last successful run. A run more than a day after it replaces
the daily runs that did not happen, one a day from that as-of on; a family whose verdict
depends on the instant it is judged (a running clock) judges those instants too, so that one
run after days down records what a run every day would have recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from engine.db.models import Run

DAY = timedelta(days=1)


def previous_as_of(conn: Connection, as_of: datetime) -> datetime | None:
    """The as-of of the newest successful run before `as_of`, if any."""
    return conn.scalar(
        select(func.max(Run.as_of)).where(Run.outcome == "success", Run.as_of < as_of)
    )


def missed_instants(since: datetime | None, as_of: datetime) -> tuple[datetime, ...]:
    """The instants of the daily runs a run at `as_of` replaces: a day apart after `since`,
    before `as_of`; none for a first run or one within a day of the last."""
    if since is None:
        return ()
    out: list[datetime] = []
    at = since + DAY
    while at < as_of:
        out.append(at)
        at += DAY
    return tuple(out)
