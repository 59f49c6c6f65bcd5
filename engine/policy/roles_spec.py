"""Staff roles as data: the policy declares each role and its title in the readers' languages.

    roles:
      quality:
        title: {en: Quality department, zh-CN: 品质部, zh-TW: 品質部, es: Calidad}

Every role a rule notifies, charges or copies must be declared; a letter names a role by its
title (`recipient.role_title`), not by its id. A policy declaring no roles gets
`STANDARD_ROLES`, titled from their ids, so a small policy folder needs no roles file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import Field

from engine.errors import Location, Problem
from engine.policy.models import Locale, _Frozen
from engine.policy.source import SourceFile

STANDARD_ROLES = (
    "technician",
    "hotline_operator",
    "team_lead",
    "service_supervisor",
    "service_manager",
    "sales_rep",
    "sales_director",
    "vice_general_manager",
    "responsible_department",
    "case_management",
    "accounting",
    "payroll",
    "operations",
)
"""The roles of a policy that declares none (the engine's roles before they became data)."""

RESERVED_ROLES = ("customer",)
"""Not a staff role: `customer` reaches the entity's customer."""


class RoleSpec(_Frozen):
    """One staff role: how letters name it, per locale."""

    title: dict[Locale, str] = Field(  # type: ignore[valid-type]
        min_length=1,
        description="The role's name in letters, per locale: {en: Accounting, zh-CN: 财务部}",
    )

    def title_in(self, locale: str) -> str:
        """The title in `locale`, else the same language's, else English, else any."""
        titles: Mapping[str, str] = self.title
        language = locale.split("-")[0]
        for candidate in (locale, *(t for t in titles if t.split("-")[0] == language), "en"):
            if candidate in titles:
                return titles[candidate]
        return next(iter(titles.values()))


def standard_roles() -> dict[str, RoleSpec]:
    """The roles of a policy that declares none, titled from their ids."""
    return {
        role: RoleSpec(title={"en": role.replace("_", " ").capitalize()}) for role in STANDARD_ROLES
    }


def declared_roles(
    given: Iterable[tuple[SourceFile, Mapping[str, RoleSpec]]], problems: list[Problem]
) -> dict[str, RoleSpec]:
    """The roles the files declare, each once (`STANDARD_ROLES` when none declares any)."""
    roles: dict[str, RoleSpec] = {}
    where: dict[str, Location] = {}
    declared = False
    for source, section in given:
        for role, spec in section.items():
            declared = True
            at = source.location(("roles", role), key=True)
            if role in RESERVED_ROLES:
                problems.append(Problem(f"{role!r} is not a staff role", at, "choose another id"))
            elif role in roles:
                problems.append(
                    Problem(f"role {role!r} is already declared at {where[role]}", at, "keep one")
                )
            else:
                roles[role], where[role] = spec, at
    return roles if declared else standard_roles()
