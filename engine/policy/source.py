"""Read one policy file safely, remembering where every value came from.

PyYAML's safe loader builds the values; we walk its node tree ourselves so that each value
keeps its line and column, duplicate keys are caught, and YAML 1.1 traps are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Location, Problem

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 200_000
MAX_ALIASES = 100
# libyaml's parser gives the same events and marks at about a tenth of the pure-Python cost; a
# cycle every 15 minutes reads the policy each time.
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[str | int, ...]

# YAML 1.1 reads 10:30 as the integer 630 and `no` as False: both are refused, with a hint.
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")
_WORD_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}


@dataclass
class SourceFile:
    """A parsed policy file: its data, and the position of every value and key in it."""

    path: Path
    text: str
    data: Any = None
    values: dict[Path_, yaml.Node] = field(default_factory=dict)
    keys: dict[Path_, yaml.Node] = field(default_factory=dict)

    def location(self, where: Path_, *, key: bool = False) -> Location:
        """Where the value (or with key=True the key) at `where` stands, else its nearest parent."""
        node = self._nearest(where, key)
        if node is None:
            return Location(self.path, 1, 1)
        return Location(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def scalar_column(self, where: Path_, offset: int) -> Location:
        """The position of character `offset` inside the string value at `where`."""
        node = self.values.get(where)
        if node is None:
            return self.location(where)
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        single_line = node.start_mark.line == node.end_mark.line
        if isinstance(node, yaml.ScalarNode) and single_line:
            quoted = 1 if node.style in ("'", '"') else 0
            return Location(self.path, line, col + quoted + offset)
        return Location(self.path, line, col)

    def excerpt(self, line: int, column: int | None = None) -> str:
        """The lines around `line` with a caret under `column`, for error messages."""
        lines = self.text.splitlines()
        start = max(1, line - 2)
        out = [f"  {n:>4} | {lines[n - 1]}" for n in range(start, min(line, len(lines)) + 1)]
        if column:
            out.append("       | " + " " * (column - 1) + "^")
        return "\n".join(out)

    def _nearest(self, where: Path_, key: bool) -> yaml.Node | None:
        for cut in range(len(where), -1, -1):
            sub = where[:cut]
            if key and cut == len(where) and sub in self.keys:
                return self.keys[sub]
            if sub in self.values:
                return self.values[sub]
        return None


class _Walker:
    """Turns a composed node tree into plain values while recording positions."""

    def __init__(self, source: SourceFile, problems: list[Problem]):
        self.source = source
        self.problems = problems
        self.constructor = yaml.SafeLoader("")
        self.nodes = 0

    def problem(self, node: yaml.Node, message: str, hint: str | None = None) -> None:
        loc = Location(self.source.path, node.start_mark.line + 1, node.start_mark.column + 1)
        excerpt = self.source.excerpt(loc.line or 1, loc.column)
        self.problems.append(Problem(message, loc, hint, excerpt))

    def walk(self, node: yaml.Node, where: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge(node)
        self.source.values[where] = node
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, where)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*where, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, where: Path_) -> dict[Any, Any]:
        self.constructor.flatten_mapping(node)
        out: dict[Any, Any] = {}
        empty: yaml.Node | None = None  # the last `key:` with nothing after it
        told = False  # a duplicate after `empty` was reported: the next ones follow from it
        for key_node, value_node in node.value:
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str | int):
                self.problem(key_node, "a key must be a plain word", "write the key as text")
                continue
            key = str(key)
            if key in out:
                if not told:
                    self._duplicate(key_node, (*where, key), empty)
                told = empty is not None
                continue
            if told or _is_empty(value_node):  # a run of duplicates after `empty` ended here
                empty, told = (key_node if _is_empty(value_node) else None), False
            self.source.keys[(*where, key)] = key_node
            out[key] = self.walk(value_node, (*where, key))
        return out

    def _duplicate(self, node: yaml.Node, where: Path_, empty: yaml.Node | None) -> None:
        first = self.source.keys[where].start_mark.line + 1
        hint = "a key may appear once per block; remove or rename one of them"
        if empty is not None:
            hint = (
                f"`{empty.value}:` on line {empty.start_mark.line + 1} has nothing under it: "
                "it, or the lines meant to be under it, are indented wrongly"
            )
        self.problem(node, f"duplicate key {where[-1]!r} (first given on line {first})", hint)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.problem(node, f"cannot read {node.value!r}: {problem}", "check the value")
            return None
        plain = not node.style  # libyaml marks a plain scalar "", PyYAML None
        if plain and node.tag.endswith((":int", ":float")) and _SEXAGESIMAL.match(node.value):
            self.problem(
                node,
                f"{node.value} reads as the number {value}, not as a time of day",
                f"quote times: '{node.value}'",
            )
        if plain and node.tag.endswith(":bool") and node.value.lower() in _WORD_BOOLEANS:
            self.problem(
                node,
                f"{node.value!r} reads as {value} (a yes/no value), which is rarely meant",
                f"write true or false, or quote it as text: '{node.value}'",
            )
        return value


def _is_empty(node: yaml.Node) -> bool:
    """`key:` with no value written after it."""
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and node.value == ""


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


def read_policy_file(path: Path, problems: list[Problem]) -> SourceFile | None:
    """Parse `path`; append every problem found; None if it could not be read at all."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(
            Problem(
                f"cannot read the file: {exc.strerror}",
                Location(path),
                "check that the file exists and may be read",
            )
        )
        return None
    if len(raw) > MAX_FILE_BYTES:
        problems.append(
            Problem(
                f"file is {len(raw):,} bytes; policy files are limited to {MAX_FILE_BYTES:,}",
                Location(path),
                "split the rules over several files",
            )
        )
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(Problem(f"not UTF-8 text ({exc.reason})", Location(path), "save as UTF-8"))
        return None
    source = SourceFile(path, text)
    try:
        aliases = sum(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, _Parser))
        if aliases > MAX_ALIASES:
            problems.append(
                Problem(
                    f"{aliases} aliases (*name); at most {MAX_ALIASES}",
                    Location(path),
                    "write the repeated blocks out",
                )
            )
            return None
        node = yaml.compose(text, Loader=_Parser)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problems.append(
            Problem(
                f"YAML syntax error: {exc.problem or exc.context}",
                Location(path, line, column),
                "check indentation and quoting on this line and the one before",
                source.excerpt(line, column) if line else None,
            )
        )
        return None
    if node is None:
        source.data = {}
        return source
    try:
        source.data = _Walker(source, problems).walk(node, ())
    except _TooLarge as big:
        problems.append(
            Problem(
                f"the file expands to more than {MAX_NODES:,} values",
                Location(path, big.node.start_mark.line + 1),
                "aliases that repeat large blocks multiply; write the blocks out or split",
            )
        )
        return None
    return source
