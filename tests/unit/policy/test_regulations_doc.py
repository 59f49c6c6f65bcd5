"""docs/regulations.md names every rule of the shipped policy with the articles it implements,
and its recount of the fidelity audit covers each audit row once."""

from __future__ import annotations

import re

from policyfiles import ROOT, TEMPLATES

from engine.policy import load_policy

DOC = ROOT / "docs" / "regulations.md"
REVERSE = "## Reverse index"
TOTALS = "## Audit totals after the changes"
ROW_ID = re.compile(r"^\| `([a-z0-9_-]+)` \|", re.MULTILINE)
AUDIT_ROWS = [f"#{n}" for n in range(1, 90)] + [f"T{n}" for n in range(1, 12)]
VERDICTS = ("FAITHFUL", "DIFFERENT", "MISSING", "NOT EXPRESSIBLE")


def _shipped_ids() -> set[str]:
    """Every id an auditor looks up: rules (disabled too), metrics, warranty terms, promotions."""
    policy = load_policy(ROOT / "rules", TEMPLATES)
    return {
        *policy.rule_ids(),
        *(r.rule.id for r in policy.disabled),
        *(m.rule.id for m in policy.metrics),
        *(t.id for t in policy.warranty.terms),
        *(p.id for p in policy.warranty.promotions),
    }


def _sections() -> tuple[str, str, str]:
    """The per-seed tables, the reverse index and the recount of the audit."""
    text = DOC.read_text(encoding="utf-8")
    articles, _, rest = text.partition(REVERSE)
    index, _, totals = rest.partition(TOTALS)
    return articles, index, totals


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_reverse_index_lists_exactly_the_shipped_ids():
    _, index, _ = _sections()
    listed = ROW_ID.findall(index)
    assert len(listed) == len(set(listed)), "an id is listed twice in the reverse index"
    shipped = _shipped_ids()
    missing, stale = sorted(shipped - set(listed)), sorted(set(listed) - shipped)
    assert not missing, f"add to the reverse index with their articles: {missing}"
    assert not stale, f"no longer in the shipped policy, remove from the index: {stale}"


def test_every_shipped_id_is_cited_under_an_article():
    articles, _, _ = _sections()
    uncited = {i for i in _shipped_ids() if f"`{i}`" not in articles}
    assert not uncited, f"name in the table of the article they implement: {sorted(uncited)}"


def test_every_audit_row_is_cited_under_an_article():
    articles, _, _ = _sections()
    uncited = [row for row in AUDIT_ROWS if not re.search(rf"{row}(?!\d)", articles)]
    assert not uncited, f"cite in the table of their article: {uncited}"


def test_the_recount_adds_up_and_lists_each_row_left_once():
    _, _, totals = _sections()
    counts: dict[str, list[int]] = {}
    for line in totals.splitlines():
        cells = _cells(line)
        if cells[0] in VERDICTS and len(cells) == 7:
            counts[cells[0]] = [int(c) for c in cells[1:]]
    assert set(counts) == set(VERDICTS), "one line per verdict in the totals table"
    assert [sum(c[i] for c in counts.values()) for i in range(6)] == [89, 11, 100] * 2
    assert all(c[0] + c[1] == c[2] and c[3] + c[4] == c[5] for c in counts.values())
    _, _, left = totals.partition("Rows left, with why:")
    listed: dict[str, str] = {}
    for line in left.splitlines():
        cells = _cells(line)
        if len(cells) == 3 and cells[1] in VERDICTS:
            for row in re.findall(r"#\d+|T\d+", cells[0]):
                assert row not in listed, f"{row} is listed twice"
                listed[row] = cells[1]
    for verdict in VERDICTS[1:]:
        rows = sorted(r for r, v in listed.items() if v == verdict)
        assert len(rows) == counts[verdict][5], f"{verdict}: counted and listed differ: {rows}"
