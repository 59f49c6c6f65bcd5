"""A template context as JSON text, restored exactly: a held staff item waits as data.

Rendering is the expensive part of a night, and most staff items are only counted in a digest
(`engine.notices.digest.SHOWN` per kind are shown), so an item keeps its context until a digest
shows it. JSON alone would turn datetimes into strings (and `|date` would refuse them) and
Decimals into floats (and `|money` would round them), so such values are tagged: a one-key
object `{"$datetime": "2026-11-23T18:00:00+00:00"}`. A real mapping that happens to look like a
tag is wrapped in `{"$dict": ...}`, so every value comes back as it went in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$timedelta": lambda parts: timedelta(days=parts[0], seconds=parts[1], microseconds=parts[2]),
    "$decimal": Decimal,
    "$tuple": lambda items: tuple(_decode(item) for item in items),
    "$dict": lambda mapping: {key: _decode(item) for key, item in mapping.items()},
}


def dump_context(context: Mapping[str, Any]) -> str:
    """The context as JSON text; TypeError for a value it cannot restore exactly."""
    return json.dumps(_encode(dict(context)), ensure_ascii=False, separators=(",", ":"))


def load_context(text: str) -> dict[str, Any]:
    """The context `dump_context` stored, with its datetimes, Decimals and tuples."""
    restored = _decode(json.loads(text))
    if not isinstance(restored, dict):
        raise ValueError("a stored context is a JSON object")
    return restored


def _encode(value: Any) -> Any:
    # bool before int: True is an int too, and must stay True.
    if value is None or isinstance(value, bool | int | float | str):
        return value
    # datetime before date: a datetime is a date too.
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, tuple):
        return {"$tuple": [_encode(item) for item in value]}
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("a template context's mappings have text keys")
        encoded = {key: _encode(item) for key, item in value.items()}
        return {"$dict": encoded} if _is_tag(encoded) else encoded
    raise TypeError(f"cannot keep a {type(value).__name__} in a stored context")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, dict):
        if _is_tag(value):
            ((tag, payload),) = value.items()
            return _DECODERS[tag](payload)
        return {key: _decode(item) for key, item in value.items()}
    return value


def _is_tag(mapping: Mapping[str, Any]) -> bool:
    return len(mapping) == 1 and next(iter(mapping)) in _DECODERS
