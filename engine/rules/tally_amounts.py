"""What one person owes or earns in one period, from the rows a tally's query returned (pure).

The query (engine.rules.tally) has already filtered the rows in SQL and added, per row, the
local wall clock of `at`, the candidates of `charge` and a 0/1 flag per `multiply` and
`score` condition. Here the rows are put in periods and grouped per person, and the amount
is worked out in Decimal: per entity (`50 each`, `10% of F`, times the factors, capped),
from bands on a measure, or from a weighted score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from engine.ledger.periods import Period
from engine.policy import CompiledTally
from engine.policy.tally_spec import (
    Amount,
    Measure,
    MoneyBand,
    PointsBand,
    ScoreItem,
    TallyRule,
)

LOCAL = "_local"
BRANCH = "_branch_{}"  # the entity's branch code and country, which decide the currency
PARTY = "_party_{}"
FACTOR = "_factor_{}"
PART = "_part_{}"
CENT = Decimal("0.01")
_SHOWN = 12  # entities named in a reason before "and N more"


@dataclass
class Group:
    """One person's entities in one period, and the role that named the person."""

    period: Period
    party: int
    via: str
    currency: str
    rows: list[Mapping[str, Any]] = field(default_factory=list)
    role: str | None = None  # the person's role, which may have an amount of its own

    def amount(self, rule: TallyRule) -> Amount:
        """The amount this person is tallied by: their role's (`by_role`), else the rule's."""
        return rule.amount_for(self.role)


@dataclass(frozen=True, slots=True)
class Tallied:
    """The signed amount of one person in one period, with how it came about."""

    period: Period
    party: int
    via: str
    currency: str
    amount: Decimal
    entity_ids: tuple[str, ...]
    per_entity: dict[str, Decimal]
    details: dict[str, Any]
    reason: str


def money(value: Decimal) -> Decimal:
    """Rounded to the cent, half up, as payroll does."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def local_day(tally: CompiledTally, row: Mapping[str, Any]) -> date | None:
    """The branch-local day of the row's `at` (a date field is already a day)."""
    value = row[tally.rule.at]
    if isinstance(value, datetime):
        local = row.get(LOCAL)
        return date.fromisoformat(local[:10]) if local else None
    return value


def group(
    tally: CompiledTally,
    rows: Iterable[Mapping[str, Any]],
    periods: Sequence[Period],
    skipped: Counter[str],
) -> list[Group]:
    """Rows by period and person; rows nobody can be charged for are counted in `skipped`."""
    rule = tally.rule
    wanted = {p.key: p for p in periods}
    groups: dict[tuple[str, int], Group] = {}
    for row in rows:
        day = local_day(tally, row)
        if day is None:
            skipped["branch time zone unknown"] += 1
            continue
        period = wanted.get(Period.containing(rule.period, day).key)
        if period is None or (rule.effective_from and day < rule.effective_from):
            continue  # the SQL window is a day wider than the periods, for time zones
        found = next(
            (
                (row[PARTY.format(i)], role)
                for i, role in enumerate(rule.charge)
                if row.get(PARTY.format(i))
            ),
            None,
        )
        if found is None:
            skipped[f"nobody to charge ({', else '.join(rule.charge)})"] += 1
            continue
        currency = tally.currency(
            {"code": row.get(BRANCH.format("code")), "country": row.get(BRANCH.format("country"))}
        )
        if not currency:
            skipped["no currency for the branch (ledger.currency)"] += 1
            continue
        party, via = found
        mine = groups.setdefault((period.key, party), Group(period, party, via, currency))
        mine.rows.append(row)
    return list(groups.values())


def tally_group(tally: CompiledTally, group: Group, skipped: Counter[str]) -> Tallied | None:
    """The signed amount of one group, or None when nothing is owed."""
    form = group.amount(tally.rule).form
    if form in ("each", "share"):
        return _per_entity(tally, group, skipped)
    if form == "bands":
        return _banded(tally, group)
    return _scored(tally, group)


# ---------------------------------------------------------------- per entity


def _per_entity(tally: CompiledTally, group: Group, skipped: Counter[str]) -> Tallied | None:
    rule, currency = tally.rule, group.currency
    amounts: dict[str, Decimal] = {}
    parts: list[str] = []
    factors: dict[str, str] = {}
    items: list[dict[str, Any]] = []  # each entity as a letter names it, in any language
    for row in group.rows:
        base = base_amount(tally, group.amount(rule), row, currency, skipped)
        if base is None:
            continue
        entity_id = str(row["id"])
        times, why = factor(rule, row)
        amounts[entity_id] = money(base * times) * rule.sign
        if times != 1:
            factors[entity_id] = str(times)
        parts.append(f"{_label(row)} {money(base)}" + (f" × {times} ({why})" if why else ""))
        items.append(_item(rule, row, base, times))
    if not amounts:
        return None
    total = sum(amounts.values(), Decimal(0))
    details: dict[str, Any] = {"per_entity": {k: str(v) for k, v in amounts.items()}}
    if factors:
        details["factors"] = factors
    details["items"], details["count"] = items[:_SHOWN], len(items)
    note = ""
    if rule.cap is not None and abs(total) > rule.cap:
        details["uncapped"] = str(total)
        details["cap"] = str(rule.cap)
        total = rule.cap * rule.sign
        note = f", capped at {rule.cap}"
    reason = f"{len(amounts)} {tally.table.name}: {_listed(parts)} = {abs(total)} {currency}{note}"
    return _tallied(tally, group, total, amounts, details, reason)


def base_amount(
    tally: CompiledTally,
    amount: Amount,
    row: Mapping[str, Any],
    currency: str,
    skipped: Counter[str],
) -> Decimal | None:
    """One entity's `amount` before factors (`each`, or the share of its field, which must be
    in `currency`), if it has one."""
    if amount.each is not None:
        return amount.each
    if amount.of is None:
        return None  # measured per person and period, not per entity
    value = row[amount.of]
    if value is None:
        skipped[f"{amount.of} is empty"] += 1
        return None
    row_currency = row.get("currency")
    if row_currency not in (None, currency):
        skipped[f"{amount.of} in {row_currency}, not {currency}"] += 1
        return None
    return (amount.share or Decimal(0)) * Decimal(value)


def factor(rule: TallyRule, row: Mapping[str, Any]) -> tuple[Decimal, str]:
    """The product of the `multiply` factors that apply to a row, and their conditions."""
    product, why = Decimal(1), []
    for index in applied(rule, row):
        multiplier = rule.multiply[index]
        product *= multiplier.by
        why.append(multiplier.when or "always")
    return product, "; ".join(why)


def applied(rule: TallyRule, row: Mapping[str, Any]) -> list[int]:
    """The indexes of the `multiply` parts whose condition the row meets."""
    return [
        index
        for index, multiplier in enumerate(rule.multiply)
        if multiplier.when is None or row.get(FACTOR.format(index))
    ]


# ---------------------------------------------------------------- measures and bands


def measure(what: Measure, rows: Sequence[Mapping[str, Any]]) -> Decimal | None:
    """The measure over `rows`: count, sum, average of every value, or ratio of two sums."""
    if what.kind == "count":
        return Decimal(len(rows))
    values = {f: [Decimal(r[f]) for r in rows if r[f] is not None] for f in what.fields}
    if what.kind == "sum":
        return sum(values[what.fields[0]], Decimal(0))
    if what.kind == "average":
        every = [v for f in what.fields for v in values[f]]
        return sum(every, Decimal(0)) / len(every) if every else None
    above, below = (sum(values[f], Decimal(0)) for f in what.fields)
    return above / below if below else None


def inside(clock: str, hours: tuple[str, str]) -> bool:
    """Python twin of the SQL local-hours test: `HH:MM` in [from, until), maybe past midnight."""
    start, end = hours
    return start <= clock < end if start < end else (clock >= start or clock < end)


def band(bands: Sequence[MoneyBand | PointsBand], value: Decimal | None) -> Any:
    """The first band (highest first) whose lower edge `value` reaches, if any."""
    if value is None:
        return None
    return next((b for b in bands if value >= b.at_least), None)


def _banded(tally: CompiledTally, group: Group) -> Tallied | None:
    rule = tally.rule
    assert rule.measure is not None
    count = len(group.rows)
    if rule.min_count and count < rule.min_count:
        return None
    value = measure(rule.measure, group.rows)
    hit: MoneyBand | None = band(group.amount(rule).bands, value)
    if hit is None:
        return None
    total = hit.amount * rule.sign
    shown = _shown(rule.measure, value)
    reason = (
        f"{rule.measure} {shown} over {count} {tally.table.name}: "
        f"band from {_shown(rule.measure, hit.at_least)} = {money(hit.amount)} {group.currency}"
    )
    details = {
        "measure": str(value),
        "count": count,
        "band": str(hit.at_least),
        "kind": rule.measure.kind,
    }
    return _tallied(tally, group, total, {}, details, reason)


def _scored(tally: CompiledTally, group: Group) -> Tallied | None:
    rule = tally.rule
    if rule.min_count and len(group.rows) < rule.min_count:
        return None
    points = Decimal(0)
    parts: list[dict[str, Any]] = []
    words: list[str] = []
    for index, item in enumerate(rule.score):
        rows = [r for r in group.rows if item.when is None or r.get(PART.format(index))]
        value = measure(item.measure, rows) if rows else None
        if item.gate is not None:
            if value is None or value < item.gate.at_least:
                return None  # a gate not reached: no amount at all
            words.append(f"{item.name} {_shown(item.measure, value)} reaches {item.gate.at_least}")
            parts.append(_part(item, value, gate=str(item.gate.at_least)))
            continue
        assert item.weight is not None  # a part without a gate has one (the loader checks)
        hit: PointsBand | None = band(item.bands, value)
        if hit is None and item.required:
            return None  # below the required part's lowest band: no amount at all
        got = hit.points if hit else Decimal(0)
        points += got * item.weight
        parts.append(_part(item, value, points=str(got), weight=str(item.weight)))
        words.append(
            f"{item.name} {_shown(item.measure, value)} → {got} points × {_pct(item.weight)}"
        )
    if not points:
        return None
    per_point = group.amount(rule).per_point or Decimal(0)
    total = money(points * per_point) * rule.sign
    reason = (
        f"{'; '.join(words)} = {points.normalize():f} points × {money(per_point)} "
        f"= {abs(total)} {group.currency}"
    )
    details = {"points": str(points), "parts": parts, "per_point": str(money(per_point))}
    return _tallied(tally, group, total, {}, details, reason)


# ---------------------------------------------------------------- helpers


def _tallied(
    tally: CompiledTally,
    group: Group,
    total: Decimal,
    per_entity: dict[str, Decimal],
    details: dict[str, Any],
    reason: str,
) -> Tallied | None:
    total = money(total)
    if not total:
        return None
    if group.via != tally.rule.charge[0]:
        reason += f" (no {tally.rule.charge[0]}: charged to {group.via})"
        details = {**details, "instead_of": tally.rule.charge[0], "charged_to": group.via}
    ids = tuple(per_entity) if per_entity else tuple(str(r["id"]) for r in group.rows)
    return Tallied(
        group.period,
        group.party,
        group.via,
        group.currency,
        total,
        ids,
        per_entity,
        details,
        reason,
    )


def _part(item: ScoreItem, value: Decimal | None, **said: str) -> dict[str, Any]:
    """A score part as JSON: its name, what it measured, and its points or its gate."""
    measured = None if value is None else str(value)
    return {"name": item.name, "measure": measured, "ratio": item.measure.kind == "ratio", **said}


def _label(row: Mapping[str, Any]) -> str:
    return str(row.get("number") or f"#{row['id']}")


def _item(rule: TallyRule, row: Mapping[str, Any], base: Decimal, times: Decimal) -> dict[str, Any]:
    """One entity of a per-entity amount as JSON: its number, else when it happened (`at`,
    which a letter shows in the reader's time), its amount and which `multiply` parts applied."""
    at = row.get(rule.at)
    return {
        "number": row.get("number"),
        "at": at.isoformat() if isinstance(at, date) else None,
        "base": str(money(base)),
        "times": str(times),
        "multiplied": applied(rule, row),
    }


def _listed(parts: Sequence[str]) -> str:
    more = len(parts) - _SHOWN
    return ", ".join(parts[:_SHOWN]) + (f" and {more} more" if more > 0 else "")


def _pct(share: Decimal) -> str:
    return f"{(share * 100).normalize():f}%"


def _shown(what: Measure, value: Decimal | None) -> str:
    """A measured value for people: ratios as percentages, others to two decimals."""
    if value is None:
        return "n/a"
    if what.kind == "ratio":
        return f"{(value * 100).quantize(CENT, rounding=ROUND_HALF_UP).normalize():f}%"
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP).normalize():f}"
