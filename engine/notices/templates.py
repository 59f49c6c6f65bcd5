"""Notice templates: one folder per notice, `<locale>.subject.j2`, `.txt.j2`, optional `.html.j2`.

Rendering is sandboxed (operations staff edit these files) and strict: an undefined variable
is an error, never a blank in a customer's letter. Dates, money and numbers are formatted with
Babel in the reader's locale and the branch's time zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

PARTS = ("subject", "txt", "html")
REQUIRED_PARTS = ("subject", "txt")
_FILE = re.compile(r"^(?P<locale>[a-z]{2}(?:-[A-Z]{2})?)\.(?P<part>subject|txt|html)\.j2$")


@dataclass(frozen=True, slots=True)
class RenderedNotice:
    """A notice ready for the outbox."""

    locale: str
    subject: str
    text: str
    html: str | None


@lru_cache(maxsize=64)
def _parsed_locale(tag: str) -> Locale:
    # Parsing walks Babel's locale data files: at a million letters a night it dominated.
    return Locale.parse(tag, sep="-")


def _babel_locale(ctx: Context) -> Locale:
    return _parsed_locale(ctx["locale"])


def _given(value: Any, what: str) -> Any:
    # Babel reads None as "now": an empty field would print today's date in a letter.
    if value is None:
        raise ValueError(f"the {what} to format is empty; test it with `is none` first")
    return value


@pass_context
def _date(ctx: Context, value: date | datetime, format: str = "long") -> str:
    if isinstance(_given(value, "date"), datetime):
        value = value.astimezone(ZoneInfo(ctx["timezone"])).date()
    return format_date(value, format=format, locale=_babel_locale(ctx))


@pass_context
def _datetime(ctx: Context, value: datetime, format: str = "medium") -> str:
    tz = ZoneInfo(ctx["timezone"])
    stamp = _given(value, "timestamp")
    return format_datetime(stamp, format=format, tzinfo=tz, locale=_babel_locale(ctx))


@pass_context
def _money(ctx: Context, amount: Decimal | int, currency: str) -> str:
    return format_currency(Decimal(_given(amount, "amount")), currency, locale=_babel_locale(ctx))


@pass_context
def _number(ctx: Context, value: Decimal | int | float) -> str:
    return format_decimal(_given(value, "number"), locale=_babel_locale(ctx))


@pass_context
def _percent(ctx: Context, value: Decimal | float) -> str:
    # A share held as a fraction (0.953) reads as a percentage in the reader's style.
    return format_percent(_given(value, "share"), "#,##0.#%", locale=_babel_locale(ctx))


class NoticeTemplates:
    """The notice templates under one folder, with a locale fallback chain."""

    def __init__(self, folder: Path, default_locale: str = "en"):
        self.folder = folder
        self.default_locale = default_locale
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader(str(folder)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            keep_trailing_newline=True,
            # One command reads the templates once: no stat() of every file at every render.
            auto_reload=False,
        )
        self.env.filters.update(
            date=_date, datetime=_datetime, money=_money, number=_number, percent=_percent
        )
        self._files = self._scan()
        # name -> the first context rendered with it; set to a dict to collect (preview does).
        self.samples: dict[str, dict[str, Any]] | None = None

    def _scan(self) -> dict[str, dict[str, set[str]]]:
        found: dict[str, dict[str, set[str]]] = {}
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*/*.j2")):
            match = _FILE.match(path.name)
            if match and not path.parent.name.startswith("_"):
                parts = found.setdefault(path.parent.name, {}).setdefault(match["locale"], set())
                parts.add(match["part"])
        return found

    def names(self) -> set[str]:
        """Every notice that has at least one complete locale."""
        return {name for name in self._files if self.locales(name)}

    def locales(self, name: str) -> set[str]:
        """The locales in which `name` has a subject and a plain-text body."""
        by_locale = self._files.get(name, {})
        return {loc for loc, parts in by_locale.items() if set(REQUIRED_PARTS) <= parts}

    def pick_locale(self, name: str, wanted: str | None) -> str | None:
        """The reader's locale, else the same language, else the default, else any."""
        have = self.locales(name)
        if not have:
            return None
        language = (wanted or "").split("-")[0]
        chain = [wanted, *sorted(loc for loc in have if loc.split("-")[0] == language)]
        chain += [self.default_locale, *sorted(have)]
        return next(loc for loc in chain if loc in have)

    def paths(self, name: str, locale: str) -> dict[str, str]:
        """Loader names of the parts present for one notice and locale."""
        present = self._files.get(name, {}).get(locale, set())
        return {part: f"{name}/{locale}.{part}.j2" for part in PARTS if part in present}

    def render(
        self, name: str, wanted_locale: str | None, context: dict[str, Any]
    ) -> RenderedNotice:
        """Render every part of notice `name` for a reader who reads `wanted_locale`."""
        locale = self.pick_locale(name, wanted_locale)
        if locale is None:
            raise LookupError(f"no template for notice {name!r} in {self.folder}")
        if self.samples is not None:
            self.samples.setdefault(name, context)
        values = {"timezone": "UTC", **context, "locale": locale}
        out = {
            part: self.env.get_template(path).render(values)
            for part, path in self.paths(name, locale).items()
        }
        subject = " ".join(out["subject"].split())  # one line: no header folding tricks
        return RenderedNotice(locale, subject, out["txt"], out.get("html"))
