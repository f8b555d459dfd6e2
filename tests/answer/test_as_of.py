"""Answers as of a date (issue 14): later articles are not evidence, time words pick the window, and an empty
window falls back with a note instead of emptying the evidence. Real model, real index."""

from __future__ import annotations

import pytest

import qa
from qa.sources.ingest import make_article

ARTICLES = [
    make_article(
        origin="test", key="budget-jan", article_id="budget-jan", title="Council approves city budget",
        source="Gazette", url="https://gazette.example/jan", published="2023-01-03",
        text="The Millbrook city council approved a budget of 5 million dollars on Tuesday. "
        "The council said the money would repair the old harbor bridge and two schools.",
    ),
    make_article(
        origin="test", key="budget-feb", article_id="budget-feb", title="Council raises city budget",
        source="Herald", url="https://herald.example/feb", published="2023-02-14",
        text="The Millbrook city council raised its budget to 7 million dollars after the flood. "
        "The council said the extra money would go to flood repairs along the river.",
    ),
    make_article(
        origin="test", key="undated", article_id="undated", title="Millbrook library opens", source="Notes",
        text="The Millbrook library opened a new reading room for children, with books donated by residents "
        "over many years.",
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory) -> qa.Assistant:
    assistant = qa.Assistant(index_dir=tmp_path_factory.mktemp("dated") / "index", backend="extractive")
    assistant.index_articles(ARTICLES)
    return assistant


def test_articles_published_after_the_date_asked_are_not_used(dated: qa.Assistant):
    question = "What budget did the Millbrook city council approve?"
    january = dated.ask(question, as_of="2023-01-20")
    assert january.as_of == "2023-01-20"
    assert {p.article_id for p in january.passages} <= {"budget-jan", "undated"}  # undated ones stay
    assert "5 million" in january.text and january.citations[0].published == "2023-01-03"
    march = dated.ask(question, as_of="2023-03-01")
    assert "budget-feb" in {p.article_id for p in march.passages}


def test_vague_time_words_favour_the_week_before_the_date(dated: qa.Assistant):
    answer = dated.ask("How much is the Millbrook council budget this week?", as_of="2023-02-16")
    assert answer.citations and answer.citations[0].article_id == "budget-feb"
    assert "7 million" in answer.text


def test_an_explicit_window_filters_and_an_empty_one_falls_back_and_says_so(dated: qa.Assistant):
    answer = dated.ask("What did the Millbrook council approve in January?", as_of="2023-03-01")
    assert {p.article_id for p in answer.passages} == {"budget-jan"}  # the window is a filter: dated ones only
    empty = dated.ask("What did the Millbrook council approve in July?", as_of="2023-03-01")
    assert empty.passages  # nothing was dated July 2022: the evidence is the whole collection, with a note
    assert any("in July" in note and "answered from the others" in note for note in empty.notes)


def test_a_bad_date_is_a_clear_error(dated: qa.Assistant):
    with pytest.raises(ValueError, match="not a date"):
        dated.ask("What budget did the council approve?", as_of="soon")


def test_a_question_about_a_name_no_article_mentions_is_declined_and_says_why(dated: qa.Assistant):
    answer = dated.ask("How big is the Eiffel council budget?")  # budget articles exist; Eiffel is in none
    assert answer.abstained and any("mentions eiffel" in note for note in answer.notes)
    assert not dated.ask("How big is the Millbrook council budget?").abstained
