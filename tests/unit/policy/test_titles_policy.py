"""A rule's title per locale (`titles:`): validated, in the schema, shipped in every language."""

from __future__ import annotations

from pathlib import Path

from policyfiles import problems_of, write_policy

from engine.notices.templates import NoticeTemplates
from engine.policy import load_policy
from engine.policy.jsonschema import policy_json_schema

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = NoticeTemplates(ROOT / "templates" / "notices")
RULE = """\
reminders:
  - id: follow-up
    title: Follow-up call three days after collection
    titles:
      {titles}
    entity: service_requests
    date: collected_at
    offset: 3 days after
    notice: follow_up_call
    notify: [technician]
"""


def test_every_shipped_rule_has_its_title_in_every_language():
    policy = load_policy(ROOT / "rules", TEMPLATES)
    rules = [c.rule for c in policy.rules()] + [m.rule for m in policy.metrics]
    untitled = [r.id for r in rules if set(r.titles) != {"zh-CN", "zh-TW", "es"}]
    assert untitled == []
    urban = next(r for r in rules if r.id == "dispatch-urban")
    assert urban.title_in("zh-CN") == "市区报修后 6 个工作小时内技术人员到场"
    assert urban.title_in("en") == urban.title  # the default: `title`


def test_a_locale_without_a_title_reads_the_default(tmp_path):
    folder = write_policy(tmp_path, rules=RULE.format(titles="zh-CN: 取件后三天回访"))
    (rule,) = [c.rule for c in load_policy(folder, TEMPLATES).rules()]
    assert rule.localized_titles() == {
        "zh-CN": "取件后三天回访",
        "zh-TW": "Follow-up call three days after collection",
        "en": "Follow-up call three days after collection",
        "es": "Follow-up call three days after collection",
    }


def test_an_unknown_locale_is_located_with_the_locales_known(tmp_path):
    folder = write_policy(tmp_path, rules=RULE.format(titles="zh-CN: 回访\n      fr: Rappel"))
    (problem,) = problems_of(folder)
    assert problem.message == "unknown key 'fr' in titles"
    assert (problem.location.line, problem.location.column) == (6, 7)
    assert problem.hint and "'zh-CN'" in problem.hint and "'es'" in problem.hint


def test_an_empty_title_is_refused(tmp_path):
    folder = write_policy(tmp_path, rules=RULE.format(titles='es: ""'))
    (problem,) = problems_of(folder)
    assert "titles.es" in problem.message
    assert problem.location.line == 5


def test_the_schema_names_the_locales():
    schema = str(policy_json_schema())
    assert "'propertyNames': {'enum': ['zh-CN', 'zh-TW', 'en', 'es']}" in schema


def test_a_misspelt_locale_gets_the_near_one_suggested(tmp_path):
    folder = write_policy(tmp_path, rules=RULE.format(titles="zh-cn: 回访"))
    (problem,) = problems_of(folder)
    assert problem.message == "unknown key 'zh-cn' in titles"
    assert problem.hint == "did you mean 'zh-CN'?"
