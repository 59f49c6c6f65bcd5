"""docs/regulations.md names every rule of the shipped policy with the articles it implements."""

from __future__ import annotations

import re

from policyfiles import ROOT, TEMPLATES

from engine.policy import load_policy

DOC = ROOT / "docs" / "regulations.md"
REVERSE = "## Reverse index"
EXPECTED = "### Expected after the merge"
ROW_ID = re.compile(r"^\| `([a-z0-9_-]+)` \|", re.MULTILINE)


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
    """The per-seed tables, the reverse index and the ids expected from parallel work."""
    text = DOC.read_text(encoding="utf-8")
    articles, _, rest = text.partition(REVERSE)
    index, _, expected = rest.partition(EXPECTED)
    return articles, index, expected


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


def test_an_expected_id_moves_to_the_index_once_it_ships():
    _, _, expected = _sections()
    shipped = sorted(set(ROW_ID.findall(expected)) & _shipped_ids())
    assert not shipped, f"now shipped, move these rows into the reverse index above: {shipped}"
