"""Delivery outcomes the database would not take, kept in a file until it does.

When the server has answered but the outbox cannot be written (the database stayed locked past
delivery's patience, the disk is full), the answers are appended to a JSON-lines file,
`<artifacts_dir>/delivery-journal.jsonl`, and fsynced. The next delivery applies the file
before anything else (before it treats rows left in `sending` as crash leftovers), then
removes it. Applying twice is harmless: each line only changes a row still in the state the
line expects. Lines of another database (the file may be shared) are kept for that one.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["JOURNAL_NAME", "OutcomeJournal"]

JOURNAL_NAME = "delivery-journal.jsonl"
_TIMES = ("b_sent_at", "b_next_attempt_at")


class OutcomeJournal:
    """An append-only file of outcome rows (the parameters of the outbox's record statement)."""

    def __init__(self, path: Path, database: str) -> None:
        self.path = path
        self.database = database

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Add the rows and fsync; OSError if even that fails."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            json.dumps({"database": self.database, **_plain(row)}, ensure_ascii=False) + "\n"
            for row in rows
        )
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()
            os.fsync(fh.fileno())

    def pending(self) -> list[dict[str, Any]]:
        """The rows kept for this database, oldest first."""
        return [row for database, row in self._read() if database == self.database]

    def applied(self) -> None:
        """Forget this database's rows (they are in the database now); keep the others'."""
        others = [(db, row) for db, row in self._read() if db != self.database]
        if not others:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            "".join(json.dumps({"database": db, **_plain(r)}) + "\n" for db, r in others),
            encoding="utf-8",
        )
        os.replace(tmp, self.path)

    def _read(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash while appending: its row stays `sending`
            database = item.pop("database", "")
            for name in _TIMES:
                if item.get(name):
                    item[name] = datetime.fromisoformat(item[name])
            rows.append((database, item))
        return rows


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
