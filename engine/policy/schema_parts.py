"""Pieces of the policy files' JSON Schema that the models' own types cannot say.

JSON Schema patterns are ECMA-262 regexes without flags, so what the loader reads in any case is
spelled out letter by letter; lists that come from installed data (time zones, currencies) are
read when the schema is generated, not when a policy loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema


def anycase(word: str) -> str:
    """An ECMA-262 pattern of `word` in any case: `[wW][oO]...`."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def one_of_words(words: Iterable[str]) -> str:
    """An ECMA-262 group matching one of `words` in any case: `([hH][oO][uU][rR]|[hH])`."""
    alternatives = sorted(words, key=len, reverse=True)  # the longest first: `mins` before `min`
    return "(" + "|".join(anycase(word) for word in alternatives) + ")"


def any_of_words(words: Iterable[str]) -> str:
    """An ECMA-262 pattern of a whole text that is one of `words`, in any case, spaces around."""
    return rf"^\s*{one_of_words(words)}\s*$"


@dataclass(frozen=True)
class LazySchema:
    """`Annotated[...]` metadata: the JSON Schema `build()` returns, built only when asked."""

    build: Callable[[], dict[str, Any]]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The built schema, in place of the type's own."""
        return self.build()
