"""Parsing and validation of model outputs, including the nasty ones small models produce."""

from __future__ import annotations

import json

import pytest

from genre_local.llm import tasks
from genre_local.llm.parsing import extract_json_object, parse_news, parse_profile, parse_summary


def test_summary_plain_json():
    assert parse_summary('{"title": "Storm floods Miami streets"}').value == {"title": "Storm floods Miami streets"}


def test_summary_prose_and_fences_around_json():
    text = 'Sure! Here is the headline:\n```json\n{"title": "**Title:** <b>Fed holds rates</b>"}\n```\nHope it helps.'
    assert parse_summary(text).value == {"title": "Fed holds rates"}


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "empty output"),
        ("   \n", "empty output"),
        ('{"title": "Storm floods Mia', "truncated"),
        ("Je vais répondre en français: voici le titre.", "no JSON object"),
        ('{"headline": "x"}', "lacks the 'title'"),
        ('{"title": ""}', "too short"),
        ('{"title": "' + "x" * 200 + '"}', "longer than"),
        ('{"title": 42}', "too short"),
        ("{'title': 'single quotes'}", "malformed JSON"),
        ('{"title": "{the new headline}"}', "placeholder"),
        ('{"title": "<the new headline>"}', "too short"),  # read as a tag and stripped
    ],
)
def test_summary_rejects(text, error):
    parsed = parse_summary(text)
    assert not parsed.valid and parsed.value is None
    assert error in parsed.error


def test_braces_inside_strings_do_not_confuse_the_scanner():
    obj, error = extract_json_object('noise {"title": "A } brace and a \\" quote"} trailing {"x": 1}')
    assert error is None and obj == {"title": 'A } brace and a " quote'}


def test_profile_dedupes_canonicalizes_and_drops_unknown():
    parsed = parse_profile(
        '{"topics": ["Health", "health", "space aliens", "finance", "HEALTH"], "regions": ["florida", "Atlantis", "Florida"]}'
    )
    assert parsed.value == {"topics": ["health", "finance"], "regions": ["Florida"]}


def test_profile_only_unknown_topics_is_invalid():
    parsed = parse_profile('{"topics": ["space aliens", "cooking shows"], "regions": []}')
    assert not parsed.valid and "no known interest topic" in parsed.error and "space aliens" in parsed.error


def test_profile_missing_regions_is_fine_missing_topics_is_not():
    assert parse_profile('{"topics": ["weather"]}').value == {"topics": ["weather"], "regions": []}
    assert not parse_profile('{"regions": ["Texas"]}').valid


def test_profile_caps_topic_count():
    text = json.dumps({"topics": ["health", "education", "travel", "religion", "culture", "food", "fashion"], "regions": []})
    assert len(parse_profile(text).value["topics"]) == 5


def _news(*items):
    return json.dumps({"items": [dict(zip(("title", "abstract", "category"), i)) for i in items]})


def test_news_valid_and_extra_items_cut():
    text = _news(("New park opens downtown", "A park.", "Lifestyle"), ("Team wins title", "Big win.", "sports"), ("Third", "x", "news"))
    parsed = parse_news(text, 2, ["Something else"])
    assert parsed.value == {
        "items": [
            {"title": "New park opens downtown", "abstract": "A park.", "category": "lifestyle"},
            {"title": "Team wins title", "abstract": "Big win.", "category": "sports"},
        ]
    }


@pytest.mark.parametrize(
    "items, error",
    [
        ([("New park opens downtown", "A park.", "lifestyle")], "1 items, expected 2"),
        ([("New park opens downtown", "A park.", "politics"), ("Team wins title", "x", "sports")], "unknown category 'politics'"),
        ([("Same title here", "a", "news"), ("same title HERE!", "b", "news")], "repeats another item"),
        ([("Dolphins beat Jets in overtime", "a", "sports"), ("Other story", "b", "news")], "copies a history title"),
        ([("", "a", "news"), ("Other story", "b", "news")], "too short"),
    ],
)
def test_news_rejects(items, error):
    parsed = parse_news(_news(*items), 2, ["Dolphins beat Jets in overtime"])
    assert not parsed.valid and error in parsed.error


def test_news_items_not_a_list():
    assert "lacks the 'items'" in parse_news('{"items": "none"}', 2).error
    assert "not an object" in parse_news('{"items": ["a", "b"]}', 2).error


def test_each_task_parses_its_own_output():
    assert tasks.TASKS["summarize"].parse('{"title": "A fine headline"}', 2).valid
    assert tasks.TASKS["profile"].parse('{"topics": ["food"], "regions": []}', 2).valid
    assert not tasks.TASKS["profile"].parse('{"title": "A fine headline"}', 2).valid
    for task in ("news", "chain"):
        assert tasks.TASKS[task].parse(_news(("One story", "a", "news"), ("Two story", "b", "tv")), 2).valid
        assert not tasks.TASKS[task].parse(_news(("One story", "a", "news")), 2).valid  # per_user reaches the parser


@pytest.mark.parametrize("task", ["news", "chain"])
def test_generators_reject_copies_of_the_history_they_were_shown(task):
    text = _news(("Dolphins beat Jets in overtime", "a", "sports"), ("Other story", "b", "news"))
    assert tasks.TASKS[task].parse(text, 2).valid
    parsed = tasks.TASKS[task].parse(text, 2, ["Dolphins beat Jets in overtime"])
    assert not parsed.valid and "copies a history title" in parsed.error


def test_task_registry_order_and_lookup():
    from genre_local.errors import UserError

    assert list(tasks.TASKS) == ["summarize", "profile", "news", "chain"]  # GENRE's order: profile before chain
    assert tasks.resolve_tasks("all") == list(tasks.TASKS.values())
    assert tasks.resolve_tasks("chain") == [tasks.CHAIN]
    assert tasks.CHAIN.requires is tasks.PROFILE and all(t.requires is None for t in (tasks.SUMMARIZE, tasks.PROFILE, tasks.NEWS))
    with pytest.raises(UserError, match="--task 'bogus' is not known; use one of summarize, profile, news, chain or all"):
        tasks.resolve_tasks("bogus")


def test_task_output_lengths_and_penalties_are_pinned():
    # These values are in every stored fingerprint: changing one silently orphans stored outputs.
    assert [tasks.TASKS[t].max_tokens(2) for t in tasks.TASKS] == [102, 64, 564, 564]
    assert tasks.NEWS.max_tokens(1) == 290
    assert [tasks.TASKS[t].repetition_penalty for t in tasks.TASKS] == [1.0, 1.1, 1.1, 1.1]


def test_a_task_requiring_one_without_a_reader_is_refused():
    from dataclasses import replace

    with pytest.raises(ValueError, match="requires 'news', which has no read_latest"):
        replace(tasks.CHAIN, requires=tasks.NEWS)


def test_schema_bounds_fit_inside_validation_limits():
    # An output the constrained decoder allows must never fail validation on length.
    from genre_local.llm import parsing, schemas

    assert schemas.SCHEMA_TITLE_MAX <= parsing.TITLE_MAX_CHARS
    assert schemas.SCHEMA_ABSTRACT_MAX <= parsing.ABSTRACT_MAX_CHARS
    news = tasks.TASKS["news"].schema(3)["properties"]["items"]
    assert news["minItems"] == news["maxItems"] == 3
