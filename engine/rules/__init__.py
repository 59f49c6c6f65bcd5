"""Rule families, one module each, listed here explicitly.

Each module offers `FAMILY` (its name), `is_effective(rule, as_of)` and
`judge(conn, rule, calendars, as_of) -> (findings, skipped reasons)`.
"""

from engine.rules import classification, deadline, obligation, reminder, tally

FAMILIES = {
    reminder.FAMILY: reminder,
    deadline.FAMILY: deadline,
    classification.FAMILY: classification,
    tally.FAMILY: tally,
    obligation.FAMILY: obligation,
}

__all__ = ["FAMILIES", "classification", "deadline", "obligation", "reminder", "tally"]
