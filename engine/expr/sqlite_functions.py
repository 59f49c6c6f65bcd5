"""SQL functions SQLite lacks, registered on every SQLite connection."""

from typing import Any


def register(dbapi_conn: Any) -> None:
    """Add the engine's functions to one SQLite connection."""
