"""The run artifact is written with its findings streamed in, and reads back as one document."""

from __future__ import annotations

import json
from pathlib import Path

from engine.artifact import SCHEMA_VERSION, write_artifact


def test_streamed_findings_read_back_in_order_after_the_other_keys(tmp_path: Path) -> None:
    findings = (
        {"rule": "dispatch-urban", "entity_id": str(n), "reason": "已超时"} for n in range(3)
    )
    lines = (json.dumps(f, ensure_ascii=False) for f in findings)
    path = write_artifact(tmp_path / "run.json", {"run_id": "r1", "counts": {"a": 1}}, lines)
    document = json.loads(path.read_text("utf-8"))
    assert list(document) == ["schema_version", "run_id", "counts", "findings"]
    assert document["schema_version"] == SCHEMA_VERSION
    assert [f["entity_id"] for f in document["findings"]] == ["0", "1", "2"]
    assert document["findings"][0]["reason"] == "已超时"
    assert not list(tmp_path.glob(".run_*")), "the temporary file was left behind"


def test_a_night_without_findings_has_an_empty_list(tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "run.json", {"run_id": "r2"})
    assert json.loads(path.read_text("utf-8"))["findings"] == []
