"""Pydantic's errors about a policy file's shape, told as a person fixes them: one problem per
mistake, at its place, with a hint. A misspelt key is not also a missing one; a key indented
too little or too far is named with the block it belongs to, and what it drags along (the keys
after an empty one, an entry read as a name of its own) is not reported again."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.errors import Problem
from engine.policy.models import PolicyFile
from engine.policy.source import Path_, SourceFile


def shape_problems(source: SourceFile, exc: ValidationError, prefix: Path_) -> list[Problem]:
    """The problems of one rule or section at `prefix`: its root causes, not what follows."""
    problems: list[Problem] = []
    errors = [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors()]
    missing = {_where(e): e for e in errors if e["type"] == "missing"}
    hidden: set[Path_] = set()
    for error in errors:
        where = _where(error)
        if error["type"] == "extra_forbidden":
            # A misspelt or misplaced key: the key it should be is not "missing" as well.
            hidden |= {m for m in missing if m[:-1] == where[:-1] or m[-1] == where[-1]}
        if _is_empty(error):
            # `key:` with nothing under it: the lines meant for it, indented too little, are
            # read as the keys after it, each wrong in its own way.
            hidden |= {w for w in map(_where, errors) if _follows(source, where, w)}
    for block, key in {(m[:-1], m[-1]) for m in missing if m not in hidden}:
        # A key of `block` indented too little stands beside it, read as a name (a calendar
        # called `hours`): one problem at that key, none for what it lacks and holds.
        beside = (*block[:-1], key)
        if block and _follows(source, block, beside):
            hidden |= {w for w in map(_where, errors) if w[: len(beside)] == beside}
            hidden.add((*block, key))
            problems.append(
                Problem(
                    f"`{key}` is read as an entry of its own, beside `{block[-1]}`",
                    source.location(beside, key=True),
                    f"`{key}` is a key of `{block[-1]}`: indent it further than `{block[-1]}:`",
                )
            )
    for error in errors:
        if _where(error) not in hidden:
            problems.append(_shape_problem(source, error, missing))
    return problems


# The errors of a value that should have been a block of keys or a list.
_BLOCK_TYPES = {"dict_type", "model_type", "model_attributes_type", "list_type", "tuple_type"}


def _where(error: Any) -> Path_:
    return tuple(p for p in error["loc"] if isinstance(p, str | int))


def _is_empty(error: Any) -> bool:
    """The error of a `key:` with nothing written after it."""
    return error["input"] is None and error["type"] != "missing"


def _follows(source: SourceFile, first: Path_, where: Path_) -> bool:
    """Whether `where` lies under a key that comes after the key `first` in its block."""
    parent, depth = first[:-1], len(first)
    if len(where) < depth or where[: depth - 1] != parent:
        return False
    block = source.data
    for part in parent:
        block = block[part] if isinstance(block, dict | list) else None
    keys = list(block) if isinstance(block, dict) else []
    return (
        first[-1] in keys
        and where[depth - 1] in keys
        and keys.index(where[depth - 1]) > keys.index(first[-1])
    )


def _shape_problem(source: SourceFile, error: Any, missing: Mapping[Path_, Any]) -> Problem:
    where = _where(error)
    if error["type"] == "extra_forbidden":
        hint = _unknown_key_hint(source, str(where[-1]), where[:-1], missing)
        return Problem(f"unknown key {where[-1]!r}", source.location(where, key=True), hint)
    if error["loc"][-1:] == ("[key]",):  # a mapping's key outside its choices (a locale, say)
        expected = str(error.get("ctx", {}).get("expected", ""))
        choices = {c.lower(): c for c in re.findall(r"'([^']+)'", expected)}
        close = difflib.get_close_matches(str(where[-2]).lower(), list(choices), n=1)
        hint = f"did you mean {choices[close[0]]!r}?" if close else f"keys: {expected}"
        where_key = source.location(where[:-1], key=True)
        return Problem(f"unknown key {where[-2]!r} in {where[-3]}", where_key, hint)
    if error["type"] == "missing":
        return Problem(
            f"missing required key {where[-1]!r}",
            source.location(where[:-1]),
            f"add `{where[-1]}:` to this block",
        )
    if _is_empty(error) and error["type"] in _BLOCK_TYPES:
        return empty_problem(source, where)
    field = ".".join(str(p) for p in where) or "file"
    message = str(error["msg"]).removeprefix("Value error, ")
    hint = _EMPTY_HINT if _is_empty(error) else _type_hint(error["type"])
    return Problem(f"{field}: {message}", source.location(where), hint)


_EMPTY_HINT = "write its value after it, or indent the lines that belong to it further than it"


def empty_problem(source: SourceFile, where: Path_) -> Problem:
    """`key:` with nothing after it, where a value or a block was wanted."""
    field = ".".join(str(p) for p in where)
    return Problem(
        f"{field}: `{where[-1]}:` has nothing under it",
        source.location(where, key=True),
        _EMPTY_HINT,
    )


def _unknown_key_hint(
    source: SourceFile, key: str, block: Path_, missing: Mapping[Path_, Any]
) -> str:
    """What an unknown key should be: a key this block lacks or takes, else a key of the block
    above it or around it, indented wrongly."""
    lacking = [str(m[-1]) for m in missing if m[:-1] == block]
    known = known_keys(block)
    close = difflib.get_close_matches(key, lacking, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    belongs = next((m[:-1] for m in missing if m[-1] == key and m[:-1] != block), None)
    if belongs is not None:
        line = source.location(belongs).line
        return f"`{key}` belongs to the block on line {line}: check its indentation"
    above = next((b for b in _blocks_above(source, block, key) if key in known_keys(b)), None)
    if above is not None:
        line = source.location(above, key=True).line
        return f"`{key}` is a key of `{above[-1]}:` on line {line}: indent it under it"
    around = block[:-1]
    while around and isinstance(around[-1], int):
        around = around[:-1]
    if block and key in known_keys(around):
        return (
            f"`{key}` is a key of the block around this one: indent it in line with `{block[-1]}:`"
        )
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    if lacking:
        return f"this block lacks {', '.join(f'`{k}:`' for k in lacking)}: is it this key?"
    if known:
        return f"known keys: {', '.join(known)}"
    return "check the indentation of this key and the lines above it"


def _blocks_above(source: SourceFile, block: Path_, key: str) -> list[Path_]:
    """The keys before `key` in `block`, nearest first: a line indented too little joins them."""
    data = source.data
    for part in block:
        data = data[part] if isinstance(data, dict | list) else None
    keys = list(data) if isinstance(data, dict) else []
    before = keys[: keys.index(key)] if key in keys else []
    return [(*block, k) for k in reversed(before)]


def _type_hint(kind: str) -> str:
    """What to write instead, by the kind of value pydantic expected."""
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write a block of `key: value` lines, indented under this key"
    if kind in ("list_type", "tuple_type"):
        return "write a list: [a, b], or one `- item` line each"
    return "see docs/policy.md for the values this key takes"


def known_keys(where: Path_) -> list[str]:
    """The keys the block at `where` takes; [] where the policy chooses the names."""
    annotation: Any = PolicyFile
    named = False  # the part is a name the policy chose: a role, a calendar, an outcome
    for part in where:
        if isinstance(part, int) or named:
            named = False
            continue
        model = inner_model(annotation)
        field = model.model_fields.get(str(part)) if model is not None else None
        if field is None:
            return []
        annotation = field.annotation
        named = _is_mapping(annotation)
    model = None if named else inner_model(annotation)
    return list(model.model_fields) if model is not None else []


def _is_mapping(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and any(
        _is_mapping(arg) for arg in typing.get_args(annotation)
    )


def inner_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation (`tuple[Rule, ...]`, `Spec | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (tuple, list, dict, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = inner_model(arg)
            if found is not None:
                return found
    return None
