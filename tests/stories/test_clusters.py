"""Copy groups and stories on the real model, FAISS and SQLite: a wire story reprinted by three outlets is one
copy group naming all three, its follow-up joins the story, unrelated articles stay apart, and the groups follow
additions and removals incrementally."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

import qa
from qa.settings import Settings
from qa.stories import signals
from qa.stories import store as stories
from tests.helpers import DATA

WIRE = DATA / "stories" / "wire_story.jsonl"
COPIES = {"ap-ravensberg-flood", "usatoday-ravensberg", "nbc-ravensberg"}


def groups(index: Path) -> dict[str, tuple[str, str, str]]:
    with sqlite3.connect(index / "qa.sqlite") as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT article_id, copy_id, story_id, outlet FROM story_articles")}  # fmt: skip


@pytest.fixture
def wire(tmp_path: Path) -> tuple[qa.Assistant, Path]:
    folder = tmp_path / "news"
    folder.mkdir()
    shutil.copy(WIRE, folder / "wire.jsonl")
    assistant = qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive"))
    assert not assistant.index([folder]).rejected
    return assistant, folder


def test_wire_copies_are_one_group_with_three_outlets(wire):
    assistant, _ = wire
    rows = groups(assistant.settings.index_dir)
    assert len({rows[a][0] for a in COPIES}) == 1
    assert sorted(rows[a][2] for a in COPIES) == ["AP", "NBC News", "USA Today"]
    story = rows["ap-ravensberg-flood"][1]
    assert rows["guardian-ravensberg-day2"][1] == story  # the follow-up: another text, the same event
    assert rows["guardian-ravensberg-day2"][0] != rows["ap-ravensberg-flood"][0]
    assert rows["ap-chess"][1] != story and rows["usatoday-bakery"][1] != story
    assert assistant.store().check() == []


def test_copies_collapse_into_one_cited_passage_naming_every_outlet(wire):
    assistant, _ = wire
    answer = assistant.ask("How many residents were evacuated from Ravensberg?", as_of="2024-03-06")
    assert "2,300" in answer.text and not answer.abstained
    first = answer.citations[0]
    assert {first.outlet, *first.also_in} == {"AP", "NBC News", "USA Today"}
    assert "also in" in answer.to_markdown()
    shown = [p.article_id for p in answer.passages]
    assert len(set(shown) & COPIES) == 1, shown  # one passage for the three copies, not three


def test_groups_follow_additions_and_removals(wire):
    assistant, folder = wire
    lines = WIRE.read_text().splitlines()
    nbc = next(json.loads(x) for x in lines if "nbc-ravensberg" in x)
    # A fourth outlet prints the wire copy later: it joins the group without re-clustering the others.
    reprint = nbc | {"doc_id": "times-ravensberg", "source": "The Times", "url": "https://times.example/ravensberg"}
    reprint["text"] = "By Ann Lee\n\n" + nbc["text"].replace("Forecasters expect", "Weather forecasters expect")
    (folder / "later.jsonl").write_text(json.dumps(reprint) + "\n")
    assert assistant.index([folder]).added
    rows = groups(assistant.settings.index_dir)
    assert rows["times-ravensberg"][0] == rows["ap-ravensberg-flood"][0]
    # The original leaves: its copies stay one group, in the same story.
    original = next(x for x in lines if "ap-ravensberg-flood" in x)
    (folder / "wire.jsonl").write_text("\n".join(x for x in lines if x != original) + "\n")
    report = assistant.index([folder])
    assert report.removed == ["ap-ravensberg-flood"]
    rows = groups(assistant.settings.index_dir)
    assert "ap-ravensberg-flood" not in rows
    assert len({rows[a][0] for a in ("usatoday-ravensberg", "nbc-ravensberg", "times-ravensberg")}) == 1
    assert rows["guardian-ravensberg-day2"][1] == rows["nbc-ravensberg"][1]
    assert assistant.store().check() == []


def test_an_index_from_before_stories_gets_them_without_re_embedding(wire):
    assistant, folder = wire
    index = assistant.settings.index_dir
    with sqlite3.connect(index / "qa.sqlite") as conn:
        conn.execute("DELETE FROM story_articles")
        conn.execute("DELETE FROM story_bands")
        conn.execute("DELETE FROM meta WHERE key = 'stories_complete'")
    # A backfill stopped after its first batch keeps that batch and is not marked complete.
    with sqlite3.connect(index / "qa.sqlite") as conn:
        assert stories.backfill(conn, None, 384, limit=2) == 2
    assert len(groups(index)) == 2
    with sqlite3.connect(index / "qa.sqlite") as conn:
        assert conn.execute("SELECT 1 FROM meta WHERE key = 'stories_complete'").fetchone() is None
    again = qa.Assistant(Settings(index_dir=index, backend="extractive"))
    report = again.index([folder])
    assert report.chunks_embedded == 0
    rows = groups(index)
    assert len(rows) == 6 and len({rows[a][0] for a in COPIES}) == 1
    assert again.store().check() == []


def test_signals():
    text = " ".join(f"word{i}" for i in range(300))
    a, b = signals.minhash(text), signals.minhash(text.replace("word150", "changed"))
    assert signals.similarity(a, b) > 0.8
    assert signals.similarity(a, signals.minhash(" ".join(f"other{i}" for i in range(300)))) < 0.1
    assert signals.minhash("too short") is None
    assert signals.outlet("/home/me/news/a.txt", "") == ""
    assert signals.outlet("/home/me/news/a.txt", "https://www.cnn.com/x") == "cnn.com"
    assert signals.outlet("AP", "https://apnews.com/x") == "AP"
    names = signals.entities("Bills safety Damar Hamlin collapses", "Damar Hamlin collapsed on Monday in Cincinnati.")
    assert "damar hamlin" in names and "monday" not in names
    assert signals.shared_names(["damar hamlin"], ["hamlin", "bengals"]) == 1


def test_an_answer_says_which_outlets_report_it(wire):
    assistant, _ = wire
    answer = assistant.ask("How many residents were evacuated from Ravensberg?", as_of="2024-03-07")
    # The wire text (AP, NBC News, USA Today) and the Guardian's own follow-up all state "2,300".
    assert set(answer.reported_by) == {"AP", "NBC News", "USA Today", "The Guardian"}
    assert "Reported by 4 outlets" in answer.to_markdown()
    assert answer.to_dict()["reported_by"] == answer.reported_by


def test_timeline_is_dated_cited_and_read_as_of_a_day(wire):
    assistant, _ = wire
    timeline = assistant.timeline("Ravensberg flood")
    assert [(e.date, e.outlets) for e in timeline.events] == [
        ("2024-03-05", ["AP", "NBC News", "USA Today"]),
        ("2024-03-07", ["The Guardian"]),  # "on Thursday" in an article of Thursday, March 7
    ]
    assert all(f"[{e.citation.n}]" in timeline.to_markdown() for e in timeline.events)
    # The earlier of `until` and `as_of` bounds it.
    assert [e.date for e in assistant.timeline("Ravensberg flood", until="2024-03-08", as_of="2024-03-05").events] == [
        "2024-03-05"
    ]


def test_digest_numbers_its_citations_and_refuses_a_non_date(wire):
    assistant, _ = wire
    digest = assistant.digest("2024-03-06")
    assert [s.citation.n for s in digest.stories] == list(range(1, len(digest.stories) + 1))
    assert digest.stories[0].title.startswith("Ravensberg flood")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        assistant.digest("soon")


def test_files_without_an_outlet_name_no_server_path(tmp_path: Path):
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "port.txt").write_text(
        "Ravensberg port closes\n\nFloodwaters from the swollen Tamsin River closed the port of Ravensberg on "
        "Tuesday, halting grain shipments, harbour master Ilse Brandt said.\n"
    )
    assistant = qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive"))
    assistant.index([folder])
    timeline = assistant.timeline("Ravensberg port")
    assert timeline.events and timeline.events[0].outlets == ["port.txt"]
    assert str(folder) not in json.dumps(timeline.to_dict()["events"][0]["outlets"])
    assert "**undated**" in timeline.to_markdown()
