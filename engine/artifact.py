"""The run artifact: a versioned JSON document that scripts can rely on (like dbt's run_results)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2


def artifact_path(folder: Path, run_id: str, as_of: datetime) -> Path:
    """Default file name: one file per run, sortable by as-of."""
    return folder / f"run_{as_of:%Y%m%dT%H%M%SZ}_{run_id[:8]}.json"


def write_artifact(path: Path, document: dict[str, Any], findings: Iterable[str] = ()) -> Path:
    """Write `document` atomically, so a reader never sees half a file, with `findings` (each
    a JSON object's text) streamed into its `findings` list, one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    whole = {"schema_version": SCHEMA_VERSION, **document, "findings": []}
    head = json.dumps(whole, ensure_ascii=False, indent=2)
    head = head.removesuffix(_EMPTY_TAIL)  # the findings list is the document's last key
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".run_", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(head + "[")
        first = True
        for finding in findings:
            handle.write(("\n    " if first else ",\n    ") + finding)
            first = False
        handle.write("]\n}\n" if first else "\n  ]\n}\n")
    os.replace(tmp, path)
    return path


_EMPTY_TAIL = "[]\n}"
