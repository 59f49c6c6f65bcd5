"""JSON Schema of a policy file, so editors can autocomplete and underline mistakes."""

from __future__ import annotations

from typing import Any

from engine.policy.models import PolicyFile

SCHEMA_ID = "https://aftersales.example/schemas/policy-file.v1.json"


def _closed_mappings(node: Any) -> None:
    """Refuse keys outside `patternProperties`, as the models refuse keys outside their type
    (pydantic leaves such mappings open)."""
    if isinstance(node, dict):
        if "patternProperties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _closed_mappings(value)
    elif isinstance(node, list):
        for value in node:
            _closed_mappings(value)


def policy_json_schema() -> dict[str, Any]:
    """The schema every file in rules/ follows."""
    schema = PolicyFile.model_json_schema(mode="validation")
    _closed_mappings(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "aftersales policy file (rules/*.yaml)",
        **schema,
    }
