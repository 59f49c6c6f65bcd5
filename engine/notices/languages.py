"""Which language a customer's letter is written in, and which languages a customer notice needs.

A customer reads a letter in their own locale, or in the one the policy declares for it
(`defaults: customer_fallback: {zh-TW: en}`), never in whichever template happens to exist:
English sent to a Taipei customer is a mistake nobody sees. So `validate` refuses a customer
notice that lacks a template for a locale in use (the languages of the countries of the
policy's calendars, the default locale and, with a database, every customer's and branch's
locale), and the run sets a letter aside (`render_failed`, with the reason) when it finds a
customer whose locale has neither a template nor a declared fallback.

Staff notices keep the implicit chain of `NoticeTemplates.pick_locale`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from sqlalchemy import Connection, func, select

from engine.db.models import LOCALES, Branch, Customer
from engine.errors import Location, Problem
from engine.notices.templates import NoticeTemplates

FALLBACK_KEY = "customer_fallback"
"""The `defaults` key declaring the locale customers of a locale read instead."""


@lru_cache(maxsize=64)
def country_locale(country: str) -> str | None:
    """The engine's locale most likely spoken in `country` (Babel's likely subtags: TW is
    zh-TW, CN zh-CN, MX es), or None when it is none of them (DE)."""
    try:
        likely = Locale.parse(f"und_{country}")
    except (UnknownLocaleError, ValueError):
        return None
    for tag in LOCALES:
        ours = Locale.parse(tag, sep="-")
        if (ours.language, ours.script) == (likely.language, likely.script):
            return tag
    return None


def customer_locale(have: Collection[str], wanted: str, fallback: Mapping[str, str]) -> str | None:
    """The locale a customer reading `wanted` gets a notice in: theirs when it has a template,
    else the declared fallback's (followed on: zh-TW → zh-CN → en); None when neither has."""
    locale: str | None = wanted
    seen: set[str] = set()
    while locale is not None and locale not in seen:
        if locale in have:
            return locale
        seen.add(locale)
        locale = fallback.get(locale)
    return None


def locales_in_use(
    calendar_countries: Mapping[str, str],
    default: str,
    database: Mapping[str, list[str]],
) -> dict[str, list[str]]:
    """The locales in use, each with who uses it: the default locale, the language of each
    calendar's country (`{calendar: country}`), and those the `database` holds."""
    users: dict[str, list[str]] = defaultdict(list)
    users[default].append("the default locale")
    for name, country in calendar_countries.items():
        locale = country_locale(country)
        if locale is not None:
            users[locale].append(f"calendar {name} ({country})")
    for locale, readers in database.items():
        users[locale] += readers
    return dict(users)


def database_locales(conn: Connection) -> dict[str, list[str]]:
    """The locales the database's customers and branches read, each with who reads it."""
    users: dict[str, list[str]] = defaultdict(list)
    for code, locale in conn.execute(select(Branch.code, Branch.locale).order_by(Branch.code)):
        users[locale].append(f"branch {code}")
    counted = select(Customer.locale, func.count()).group_by(Customer.locale)
    for locale, count in conn.execute(counted):
        users[locale].append(f"{count} customer{'s' if count != 1 else ''}")
    return dict(users)


def missing_locale_problems(
    named: Mapping[str, Location],
    templates: NoticeTemplates,
    in_use: Mapping[str, list[str]],
    fallback: Mapping[str, str],
    default: str,
) -> list[Problem]:
    """One problem per customer notice (`named`: where the policy first names it) that a
    locale in use would read in no template, even through the declared fallback; the hint
    offers the `default` locale as the fallback when the notice has it."""
    problems = []
    for name, where in named.items():
        have = templates.locales(name)
        if not have:
            continue  # no template at all: the loader says so where it is named
        missing = [loc for loc in sorted(in_use) if customer_locale(have, loc, fallback) is None]
        if not missing:
            continue
        readers = "; ".join(f"{loc}: {', '.join(in_use[loc])}" for loc in missing)
        instead = default if default in have else min(have)
        declared = ", ".join(f"{loc}: {instead}" for loc in missing)
        problems.append(
            Problem(
                f"customer notice {name!r} has templates in {', '.join(sorted(have))} only: "
                f"customers reading {', '.join(missing)} would get no letter ({readers})",
                where,
                f"add {templates.folder}/{name}/{missing[0]}.subject.j2 and "
                f"{missing[0]}.txt.j2, or declare the language they read instead: "
                f"`defaults: {{{FALLBACK_KEY}: {{{declared}}}}}`",
            )
        )
    return problems


def no_template_reason(name: str, wanted: str, have: Collection[str]) -> str:
    """Why a customer's letter is set aside: `last_error` of its outbox row."""
    return (
        f"no {wanted} template: {name} has {', '.join(sorted(have))} only; add "
        f"{name}/{wanted}.*.j2 or declare defaults.{FALLBACK_KEY}"
    )
