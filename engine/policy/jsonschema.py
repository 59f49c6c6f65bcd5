"""JSON Schema of a policy file, so editors can autocomplete and underline mistakes."""

from __future__ import annotations

from typing import Any

from engine.policy.models import PolicyFile

SCHEMA_ID = "https://aftersales.example/schemas/policy-file.v1.json"


def policy_json_schema() -> dict[str, Any]:
    """The schema every file in rules/ follows."""
    schema = PolicyFile.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "aftersales policy file (rules/*.yaml)",
        **schema,
    }
