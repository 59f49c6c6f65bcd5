"""When the daily and periodic parts run: local wall-clock times, in the policy's `schedule:`.

    schedule:
      digests: "08:00"          # per branch, in the branch's time zone
      overdue_summary: "08:00"  # per branch
      obligations: "06:00"      # company-wide, in the ledger's time zone
      tallies: "06:00"
      month_close: "06:00"      # on the ledger's close day
      kpi_report: "07:00"

Deadlines, reminders and classifications are judged every cycle and have no time here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema

from engine.policy.models import _Frozen

_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _clock(value: Any) -> str:
    # An unquoted 10:30 arrives as the number 630: the YAML reader has already said so, with
    # the quoting hint, so this message only has to name what is expected.
    if isinstance(value, str) and _HH_MM.match(value):
        return value
    raise ValueError(f"{value!r} is not a time of day: write it quoted, as \"HH:MM\", e.g. '08:00'")


LocalClock = Annotated[
    str,
    PlainValidator(_clock),
    WithJsonSchema({"type": "string", "pattern": _HH_MM.pattern, "description": "HH:MM, local"}),
]
"""A wall-clock time of day, "HH:MM" from 00:00 to 23:59."""


class ScheduleSpec(_Frozen):
    """Local times of the daily and periodic parts; every cycle does what has come due."""

    digests: LocalClock = Field(
        "08:00",
        description="Staff digests, per branch in the branch's time zone (head office: the "
        "ledger's)",
    )
    overdue_summary: LocalClock = Field(
        "08:00", description="Each branch's overdue summary, in the branch's time zone"
    )
    obligations: LocalClock = Field(
        "06:00", description="Obligation rules (monthly inspections...), company-wide, daily"
    )
    tallies: LocalClock = Field(
        "06:00", description="Tally rules and ledger booking, company-wide, daily"
    )
    month_close: LocalClock = Field(
        "06:00", description="The ledger's monthly close, on its close day (ledger.close_on_day)"
    )
    kpi_report: LocalClock = Field(
        "07:00", description="KPI measurement and the monthly report, company-wide, daily"
    )

    def at(self, part: str) -> str:
        """The local time of `part`, "HH:MM"."""
        return str(getattr(self, part))


PARTS = tuple(ScheduleSpec.model_fields)
"""The parts of a cycle that run once per local day (the close: once per month)."""

BRANCH_PARTS = ("digests", "overdue_summary")
"""Parts done per branch, when the branch's clocks show their time; the others are
company-wide, on the ledger's clocks."""
