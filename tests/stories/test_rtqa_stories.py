"""Stories on real news (../shared/eval/rtqa-2023-dev, 513 articles): near-identical pages are one copy group,
one event's reports one story, and a question about a story gets distinct articles in its top 5. The index is
the eval's cached one (qa/eval/evaluate.py), so CI builds it once for these tests and the eval guard."""

from __future__ import annotations

import itertools
import json
import re
import sqlite3

import pytest

import qa
from qa.eval.evaluate import eval_index_dir
from qa.settings import Settings
from tests.helpers import SHARED_EVAL

RTQA = SHARED_EVAL / "rtqa-2023-dev"


@pytest.fixture(scope="module")
def rtqa() -> qa.Assistant:
    settings = Settings(backend="extractive")
    assistant = qa.Assistant(settings.model_copy(update={"index_dir": eval_index_dir(RTQA, settings)}))
    assistant.index([RTQA / "corpus.jsonl"])
    return assistant


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return [json.loads(x) for x in (RTQA / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]


def groups(assistant: qa.Assistant) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(assistant.settings.index_dir / "qa.sqlite") as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT article_id, copy_id, story_id FROM story_articles")}


def shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + 6]) for i in range(len(words) - 5)}


def test_near_identical_pages_are_one_copy_group(rtqa, corpus):
    sets = [shingles(r["text"]) for r in corpus]
    pairs = [
        (corpus[i]["doc_id"], corpus[j]["doc_id"])
        for i, j in itertools.combinations(range(len(corpus)), 2)
        if sets[i] and sets[j] and len(sets[i] & sets[j]) / len(sets[i] | sets[j]) > 0.5
    ]
    assert len(pairs) >= 28  # exact 6-shingle Jaccard, computed here independently of the MinHash estimate
    rows = groups(rtqa)
    apart = [(a, b) for a, b in pairs if rows[a][0] != rows[b][0]]
    assert not apart, apart
    assert rtqa.store().check() == []


def test_one_events_reports_are_one_story(rtqa, corpus):
    hamlin = [r["doc_id"] for r in corpus if "Damar Hamlin" in r["title"]]
    assert len(hamlin) >= 5
    rows = groups(rtqa)
    assert len({rows[a][1] for a in hamlin}) == 1, [(a, rows[a]) for a in hamlin]
    story = rows[hamlin[0]][1]
    outside = [r["doc_id"] for r in corpus if rows[r["doc_id"]][1] == story and "Hamlin" not in r["text"]]
    assert not outside  # nothing unrelated was pulled in
    # Copy groups are not stories: most stories hold one group, and every group stays inside one story.
    by_copy: dict[str, set[str]] = {}
    for copy_id, story_id in rows.values():
        by_copy.setdefault(copy_id, set()).add(story_id)
    assert all(len(s) == 1 for s in by_copy.values())


def test_a_story_question_gets_distinct_articles_in_its_top_5(rtqa):
    answer = rtqa.ask("What happened to Damar Hamlin?", as_of="2023-01-06")
    top = answer.passages[:5]
    assert len({p.article_id for p in top}) >= 3
    assert sum("Hamlin" in p.text or "Hamlin" in p.title for p in top) >= 3


def test_timeline_of_a_story_is_dated_cited_and_in_order(rtqa, corpus):
    timeline = rtqa.timeline("Damar Hamlin cardiac arrest", until="2023-01-10")
    texts = {r["doc_id"]: r["text"] for r in corpus}
    dates = {r["doc_id"]: r["publish_date"].replace("/", "-") for r in corpus}
    assert len(timeline.events) >= 4
    assert [e.date for e in timeline.events] == sorted(e.date for e in timeline.events)
    for e in timeline.events:
        c = e.citation
        assert texts[c.article_id][c.start : c.end] == c.quote == e.text
        assert "2023-01-01" <= e.date <= dates[c.article_id] <= "2023-01-10"
        assert c.outlet
    assert timeline.events[0].date == "2023-01-02"  # the collapse was on Monday, Jan. 2


def test_digest_lists_stories_that_gained_articles_newest_first(rtqa, corpus):
    digest = rtqa.digest("2023-02-20", until="2023-02-28")
    assert digest.stories
    newest = [s.newest for s in digest.stories]
    assert newest == sorted(newest, reverse=True) and all(n >= "2023-02-20" for n in newest)
    texts = {r["doc_id"]: r["text"] for r in corpus}
    for s in digest.stories:
        c = s.citation
        assert texts[c.article_id][c.start : c.end] == c.quote and s.outlets and s.new_articles >= 1
