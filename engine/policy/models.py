"""The validated shape of the policy files: frozen models, unknown keys refused.

A file holds any of the top-level sections below; `rules/*.yaml` together make one `Policy`.
Cross-references (field names in conditions, roles, template names) are checked by the loader,
which knows the database schema and the templates.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from engine.db.models import LOCALES, SERVICE_TABLES
from engine.policy.durations import Offset, Span

EntityName = Literal[tuple(t.__tablename__ for t in SERVICE_TABLES)]  # type: ignore[valid-type]
RuleId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$"),
    Field(description="Stable identifier: lower-case letters, digits, - and _"),
]
Word = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
Locale = Literal[LOCALES]  # type: ignore[valid-type]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class Defaults(_Frozen):
    """Policy-wide defaults."""

    locale: Locale = Field("en", description="Language used when a reader's has no template")


class Recipient(_Frozen):
    """A role to notify, with its own notice if given: `{role: sales_rep, notice: renewal_task}`."""

    role: Word = Field(description="customer, a staff role, or a staff column such as sales_rep")
    notice: Word | None = Field(None, description="Template for this role; default: the rule's")

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value: Any) -> Any:
        return {"role": value} if isinstance(value, str) else value


class ReminderRule(_Frozen):
    """A notice at an offset from a date field, once per occurrence of that date."""

    id: RuleId
    title: str = Field(min_length=1, description="What the rule does, for a manager")
    source: str | None = Field(None, description="The clause this rule implements")
    entity: EntityName = Field(description="Table the rule looks at")  # type: ignore[valid-type]
    when: str | None = Field(None, description="Condition on the entity's fields")
    date: Word = Field(description="Date or timestamp field the reminder hangs on")
    offset: Offset = Field(description="When, relative to the date: '1 month before'")
    send_until: Span | None = Field(
        None,
        description=(
            "How long after it falls due a late reminder may still go out. Default: until "
            "the date itself for reminders before it, 7 days for reminders after it."
        ),
    )
    notice: Word = Field(description="Template folder under templates/notices/")

    def notices(self) -> dict[str, str]:
        """The template each notified role receives."""
        return {r.role: r.notice or self.notice for r in self.notify}

    notify: tuple[Recipient, ...] = Field(min_length=1, description="Who receives it")
    effective_from: dt.date | None = Field(None, description="Not evaluated before this day")


class PolicyFile(_Frozen):
    """One file of `rules/`: every section is optional."""

    defaults: Defaults | None = None
    reminders: tuple[ReminderRule, ...] = ()


SECTIONS = tuple(PolicyFile.model_fields)
