"""The editor schema (`aftersales schema`) agrees with the loader: a standard validator,
check-jsonschema with ECMA-262 regexes as VS Code uses, passes every shipped policy file and
rejects each broken one the loader rejects, pointing at the same place."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from policyfiles import ROOT, problems_of

SHIPPED = sorted((ROOT / "rules").glob("*.yaml"))

# case: (file in rules/, text as shipped, text written instead, where the schema complains)
BROKEN = {
    "unknown duration unit": ("sla", "within: 6 working hours", "within: 6 hrs", "within"),
    "months on a deadline clock": ("sla", "within: 6 working hours", "within: 1 month", "within"),
    "unknown key": (
        "sla",
        "    within: 6 working hours",
        "    withn: 6 working hours",
        "deadlines[0]",
    ),
    "wrong type": ("sla", "pause_while: [waiting_customer]", "pause_while: 3", "pause_while"),
    "notify entry not a role word": (
        "contracts",
        "notify: [team_lead, sales_director]",
        "notify: [team_lead, Sales Director]",
        "notify[1]",
    ),
    "notify entry with role and department": (
        "contracts",
        "notify: [team_lead, sales_director]",
        "notify: [team_lead, {role: sales_director, department: branch_id}]",
        "notify[1]",
    ),
    "nobody to notify": (
        "contracts",
        "notify: [team_lead, sales_director]",
        "notify: []",
        "notify",
    ),
    "warning share of 100%": ("sla", "warn_at: 80%", "warn_at: 100%", "warn_at"),
    "offset with a sign and a side": (
        "contracts",
        "offset: 1 month before",
        "offset: -1 month before",
        "offset",
    ),
    "repeat every month": (
        "sla",
        "repeat: every 2 working days",
        "repeat: every 1 month",
        "repeat",
    ),
    "no stop field": ("sla", "stop: [arrived_at, completed_at]", "stop: []", "stop"),
    "opening hours without minutes": (
        "calendars",
        '["09:00-12:00", "13:00-18:00"]',
        '["9-12", "13:00-18:00"]',
        "['mon-fri'][0]",
    ),
    "amount without its unit": ("penalties", "penalty: 50 each", "penalty: 50", "penalty"),
    "rule id in capitals": ("sla", "id: dispatch-urban", "id: Dispatch-Urban", "id"),
    "unknown table": ("sla", "entity: service_requests", "entity: service_request", "entity"),
    "time of day out of range": ("schedule", 'digests: "08:00"', 'digests: "24:00"', "digests"),
    "title in an unknown locale": ("roles", "es: Técnico}", "fr: Technicien}", "title"),
    "role id in capitals": ("roles", "  technician:", "  Technician:", "roles"),
    "unknown time zone": ("calendars", "Asia/Shanghai", "Asia/Shangai", "timezone"),
    "unknown holiday country": ("calendars", "{country: CN}", "{country: XX}", "country"),
    "unknown currency": ("penalties", "{CN: CNY,", "{CN: RMB,", "currency.CN"),
    "negative amount": ("penalties", "amount: 300}", "amount: -300}", "amount"),
    "local hour past midnight": ("penalties", "'22:00']", "'24:30']", "local_hours"),
    "warranty of zero years": ("warranty", "{unit: 1 year,", "{unit: 0 years,", "unit"),
    "warranty in working days": ("warranty", "{unit: 1 year,", "{unit: 300 working days,", "unit"),
    "decision row in both forms": (
        "warranty",
        "- {otherwise: paid}",
        "- {otherwise: paid, then: free}",
        "first_match[3]",
    ),
    "target both ways": (
        "kpis",
        "target: {at_least: 3.5}",
        "target: {at_least: 3, at_most: 4}",
        "target",
    ),
}


@pytest.fixture(scope="module")
def schema_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The schema as a user writes it: `aftersales schema --out policy.schema.json`."""
    out = tmp_path_factory.mktemp("schema") / "policy.schema.json"
    exe = Path(sys.executable).with_name("aftersales")
    subprocess.run([str(exe), "schema", "--out", str(out)], check=True, capture_output=True)
    return out


def check_jsonschema(schema: Path, *files: Path, regex: str = "default") -> dict:
    """check-jsonschema's verdict, as its JSON output."""
    exe = Path(sys.executable).with_name("check-jsonschema")
    run = subprocess.run(
        [str(exe), "--schemafile", str(schema), "--regex-variant", regex, "-o", "json", *files],
        capture_output=True,
        text=True,
    )
    if not run.stdout.startswith("{"):  # no verdict: the schema itself is not valid, say
        pytest.fail(f"check-jsonschema did not check: {run.stderr or run.stdout}")
    return json.loads(run.stdout)


@pytest.mark.parametrize("regex", ["default", "nonunicode"])
def test_every_shipped_policy_file_passes_check_jsonschema(schema_file, regex):
    verdict = check_jsonschema(schema_file, *SHIPPED, regex=regex)
    assert verdict["status"] == "ok", verdict["errors"] or verdict["parse_errors"]


def broken_folder(root: Path, case: str) -> Path:
    """A copy of the shipped rules with `case`'s file broken."""
    name, shipped, broken, _where = BROKEN[case]
    rules = root / case.replace(" ", "-") / "rules"
    shutil.copytree(ROOT / "rules", rules)
    path = rules / f"{name}.yaml"
    text = path.read_text(encoding="utf-8")
    assert shipped in text, f"{case}: the shipped policy changed, pick another line to break"
    path.write_text(text.replace(shipped, broken, 1), encoding="utf-8")
    return rules


@pytest.fixture(scope="module")
def schema_errors(schema_file, tmp_path_factory) -> dict[str, list[dict]]:
    """check-jsonschema's errors on every broken file, by case (one run for all)."""
    root = tmp_path_factory.mktemp("broken")
    files = {case: broken_folder(root, case) / f"{BROKEN[case][0]}.yaml" for case in BROKEN}
    errors = check_jsonschema(schema_file, *files.values()).get("errors", [])
    return {case: [e for e in errors if e["filename"] == str(f)] for case, f in files.items()}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_file_is_rejected_by_the_schema_and_the_loader_alike(
    schema_errors, tmp_path, case
):
    where, broken = BROKEN[case][3], BROKEN[case][2]
    assert problems_of(broken_folder(tmp_path, case)), "the loader accepts it: no broken file"
    errors = schema_errors[case]
    assert errors, f"check-jsonschema accepts {broken!r}, the loader does not"
    # Under an optional block the error is the block's, its cause the deepest match's.
    paths = [p for e in errors for p in (e["path"], e.get("best_deep_match", e)["path"])]
    assert any(path.endswith(where) for path in paths), errors
