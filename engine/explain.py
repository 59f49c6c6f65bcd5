"""`aftersales explain`: why a rule does or does not fire for one entity, step by step."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from engine.db.models import Branch, Finding, Notice
from engine.db.schema import require_current
from engine.errors import UsageError
from engine.expr import explain as explain_condition
from engine.rules import reminder
from engine.run import load_checked_policy
from engine.settings import Settings


def explain_reminder(
    settings: Settings, engine: Engine, rule_id: str, entity_id: str, as_of: datetime
) -> list[tuple[str, str]]:
    """Labelled lines that walk through one reminder for one entity at `as_of`."""
    policy, _ = load_checked_policy(settings)
    item = policy.rule(rule_id)
    if item is None:
        raise UsageError(f"no rule {rule_id!r}; rules: {', '.join(policy.rule_ids())}")
    require_current(engine)
    rule, table = item.rule, item.table
    with engine.connect() as conn:
        key = table.c.id.type.python_type(entity_id) if entity_id.isdigit() else entity_id
        row = conn.execute(select(table).where(table.c.id == key)).mappings().first()
        if row is None:
            raise UsageError(f"no {table.name} row with id {entity_id}")
        tz_name = "UTC"
        if "branch_id" in row:
            tz_name = conn.scalar(select(Branch.timezone).where(Branch.id == row["branch_id"]))
        recorded = conn.execute(
            select(Finding.key, Finding.recorded_at).where(
                Finding.rule_id == rule.id, Finding.entity_id == str(row["id"])
            )
        ).all()
        notices = conn.execute(
            select(Notice.recipient_role, Notice.recipient_address, Notice.status).where(
                Notice.finding_key.in_([k for k, _ in recorded])
            )
        ).all()

    lines = [
        ("rule", f"{rule.id}: {rule.title}"),
        ("source", rule.source or "-"),
        ("entity", f"{table.name} {row.get('number') or row['id']} (branch time zone {tz_name})"),
        ("as of", as_of.isoformat()),
    ]
    matched = True
    if item.condition is not None:
        lines.append(("when", rule.when or ""))
        for text, value in explain_condition(item.condition, dict(row), as_of):
            lines.append(("  " + ("yes" if value else "NO " if value is False else "n/a"), text))
        matched = all(v is True for _, v in explain_condition(item.condition, dict(row), as_of))
    anchor = row[rule.date]
    if anchor is None:
        lines.append((rule.date, "empty: the reminder cannot fall due"))
        return lines
    due, stale = reminder.due_window(item, anchor, ZoneInfo(tz_name))
    local = ZoneInfo(tz_name)
    lines += [
        (rule.date, str(anchor)),
        ("offset", rule.offset.spoken()),
        ("due at", f"{due.astimezone(local).isoformat()} (local)"),
        ("stale from", f"{stale.astimezone(local).isoformat()} (local)"),
    ]
    if not reminder.is_effective(item, as_of):
        state = f"rule not effective before {rule.effective_from}"
    elif not matched:
        state = "condition does not hold: no reminder"
    elif as_of < due:
        state = f"not due yet ({(due - as_of).days} days to go)"
    elif as_of >= stale:
        state = "stale: too late to send"
    else:
        state = "due"
    lines.append(("state", state))
    for key, when in recorded:
        lines.append(("finding", f"{key} recorded {when.isoformat()}"))
    for role, address, status in notices:
        lines.append(("notice", f"{role} <{address or 'no address'}>: {status}"))
    return lines
