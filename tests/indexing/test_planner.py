"""The re-index planner (qa/indexing/indexer.py: `_plan_files`, `_diff`), without the embedding model: a real
FAISS store in tmp_path and real files; a plan is committed in one commit with made-up vectors where the indexer
commits real ones. What is checked is what the planner decides: which files are read, which articles are embedded,
deleted or refused, and the stamps that let the next run skip a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from qa.indexing.chunk import chunk_article
from qa.indexing.indexer import _diff, _FileWork, _plan_files, label
from qa.schema import IndexReport
from qa.settings import Settings
from qa.sources.ingest import discover, id_for, make_article
from qa.store import FileStamp, Upsert, VectorStore

BRIDGE = "Harbour bridge opens\n\nThe harbour bridge opened to traffic on Monday. Tolls start in May.\n"
FIRE = "Wildfire reaches the valley\n\nThe wildfire spread toward the valley overnight. Crews held the road.\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index")


def plan(folder: Path, store: VectorStore, settings: Settings, gone: set[str] | None = None):
    files, rejected = discover([folder])
    report = IndexReport(rejected=rejected)
    return _plan_files(files, store, settings, report, gone or set()), report


def commit(store: VectorStore, work: list[_FileWork]) -> None:
    """What the indexer commits for a plan, in one commit, with a made-up unit vector per chunk for the model's."""
    upserts = []
    for item in work:
        for article in item.upserts:
            chunks = chunk_article(article, 600, 0)
            vectors = np.zeros((len(chunks), 8), dtype=np.float32)
            vectors[:, 0] = 1.0
            upserts.append(Upsert(article, chunks, vectors))
    files = {item.path: item.stamp for item in work if item.path}
    files |= {path: None for item in work for path in item.forget_files}
    store.commit(upserts, [aid for item in work for aid in item.deletes], files, "test-model")


def index(folder: Path, store: VectorStore, settings: Settings) -> IndexReport:
    work, report = plan(folder, store, settings)
    commit(store, work)
    return report


def txt_id(path: Path) -> str:
    return id_for(str(path.resolve()))


def by_path(work: list[_FileWork]) -> dict[str, _FileWork]:
    return {item.path: item for item in work}


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_new_files_are_planned_with_the_stamps_that_let_the_next_run_skip_them(folder, store, settings):
    (folder / "bridge.txt").write_text(BRIDGE)
    write_jsonl(folder / "wire.jsonl", [{"id": "w1", "text": "Ferries ran late."}, {"id": "w2", "text": "Trams ran."}])
    work, report = plan(folder, store, settings)
    items = by_path(work)
    bridge, wire = items[str((folder / "bridge.txt").resolve())], items[str((folder / "wire.jsonl").resolve())]
    st = (folder / "wire.jsonl").stat()
    assert wire.stamp == FileStamp(st.st_size, st.st_mtime_ns, ("w1", "w2"))
    assert [a.id for a in wire.upserts] == ["w1", "w2"] and wire.deletes == []
    assert [a.id for a in bridge.upserts] == [txt_id(folder / "bridge.txt")]
    assert bridge.stamp.article_ids == (txt_id(folder / "bridge.txt"),)
    assert len(report.added) == 3 and report.updated == report.unchanged == report.removed == report.rejected == []
    commit(store, work)
    assert store.file_stamps() == {item.path: item.stamp for item in work}


def test_an_unchanged_file_is_skipped_by_its_stamp_without_being_read(folder, store, settings):
    path = folder / "bridge.txt"
    path.write_text(BRIDGE)
    index(folder, store, settings)
    # New text of the same size, with the old mtime put back: only reading the file could tell.
    before = path.stat()
    path.write_text(BRIDGE.replace("Monday", "Sunday"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    work, report = plan(folder, store, settings)
    assert work == [] and report.unchanged == [txt_id(path)] and report.updated == []
    # Once the mtime moves, the file is read, and its new text is seen.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    work, report = plan(folder, store, settings)
    assert [a.id for item in work for a in item.upserts] == [txt_id(path)] and len(report.updated) == 1


def test_a_touched_file_is_read_and_diffed_by_content_hash(folder, store, settings):
    path = folder / "wire.jsonl"
    write_jsonl(path, [{"id": "w1", "text": "Ferries ran late."}, {"id": "w2", "text": "Trams ran."}])
    index(folder, store, settings)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime
    work, report = plan(folder, store, settings)
    [item] = work
    assert item.upserts == [] and item.deletes == []  # read, compared, nothing to embed
    assert sorted(report.unchanged) == ["w1", "w2"] and report.added == report.updated == []
    assert item.stamp == FileStamp(st.st_size, st.st_mtime_ns + 10**9, ("w1", "w2"))  # the new mtime is kept
    commit(store, work)
    assert plan(folder, store, settings)[0] == []  # so the next run skips it unread
    # One record changed: only that one is embedded again.
    write_jsonl(path, [{"id": "w1", "text": "Ferries ran late."}, {"id": "w2", "text": "Trams ran on time."}])
    [item], report = plan(folder, store, settings)
    assert [a.id for a in item.upserts] == ["w2"] and report.unchanged == ["w1"] and len(report.updated) == 1


def test_an_article_that_left_its_file_is_deleted(folder, store, settings):
    path = folder / "wire.jsonl"
    write_jsonl(path, [{"id": "w1", "text": "Ferries ran late."}, {"id": "w2", "text": "Trams ran."}])
    index(folder, store, settings)
    write_jsonl(path, [{"id": "w1", "text": "Ferries ran late."}])
    [item], report = plan(folder, store, settings)
    assert item.deletes == ["w2"] and report.removed == ["w2"] and item.upserts == []
    assert item.stamp.article_ids == ("w1",)
    commit(store, [item])
    assert set(store.article_hashes()) == {"w1"} and store.check() == []


def test_a_record_that_moved_to_a_file_read_later_in_the_run_stays(folder, store, settings):
    write_jsonl(folder / "a.jsonl", [{"id": "w1", "text": "Ferries ran late."}, {"id": "w2", "text": "Trams ran."}])
    index(folder, store, settings)
    write_jsonl(folder / "a.jsonl", [{"id": "w1", "text": "Ferries ran late."}])
    write_jsonl(folder / "b.jsonl", [{"id": "w2", "text": "Trams ran."}])  # same id, same text, another file
    work, report = plan(folder, store, settings)
    assert report.removed == [] and all(item.deletes == [] for item in work)
    assert by_path(work)[str((folder / "b.jsonl").resolve())].stamp.article_ids == ("w2",)
    commit(store, work)
    assert set(store.article_hashes()) == {"w1", "w2"} and store.check() == []


def test_a_duplicate_text_across_files_is_refused_with_a_reason_and_read_again_later(folder, store, settings):
    (folder / "a-bridge.txt").write_text(BRIDGE)
    index(folder, store, settings)
    copy = folder / "b-copy.txt"
    copy.write_text(BRIDGE)  # same headline and text: same content hash, another id
    [item], report = plan(folder, store, settings)
    [rejection] = report.rejected
    assert rejection.reason == f"duplicate of already indexed article '{txt_id(folder / 'a-bridge.txt')}'"
    assert "Harbour bridge opens" in rejection.source
    assert item.upserts == [] and item.stamp is None  # no stamp: read again next run
    commit(store, [item])
    assert str(copy.resolve()) not in store.file_stamps()
    # The original changes in a later run: its old text is free, and the copy is indexed with it.
    (folder / "a-bridge.txt").write_text(BRIDGE.replace("Monday", "Sunday"))
    work, report = plan(folder, store, settings)
    assert report.rejected == [] and len(report.added) == 1 and len(report.updated) == 1
    assert all(item.stamp is not None for item in work)


def test_two_new_files_with_one_text_index_the_first_and_refuse_the_second(folder, store, settings):
    (folder / "one.txt").write_text(FIRE)
    (folder / "two.txt").write_text(FIRE)
    work, report = plan(folder, store, settings)
    assert [a.id for item in work for a in item.upserts] == [txt_id(folder / "one.txt")]
    assert [r.reason for r in report.rejected] == [
        f"duplicate of already indexed article '{txt_id(folder / 'one.txt')}'"
    ]
    assert by_path(work)[str((folder / "two.txt").resolve())].stamp is None


def test_a_text_moved_to_another_file_is_not_a_duplicate_of_the_one_going_away(folder, store, settings):
    old = folder / "old.txt"
    old.write_text(BRIDGE)
    index(folder, store, settings)
    old.rename(folder / "new.txt")
    # index_paths passes the ids a sync drops as `gone`: then the moved text is simply added again.
    work, report = plan(folder, store, settings, gone={txt_id(old)})
    assert report.rejected == [] and [a.id for item in work for a in item.upserts] == [txt_id(folder / "new.txt")]
    # Without a sync the old copy stays indexed, so the new file is a duplicate of it.
    work, report = plan(folder, store, settings)
    assert [r.reason for r in report.rejected] == [f"duplicate of already indexed article '{txt_id(old)}'"]


def test_a_changed_file_that_no_longer_loads_keeps_what_was_indexed(folder, store, settings):
    path = folder / "wire.jsonl"
    write_jsonl(path, [{"id": "w1", "text": "Ferries ran late."}])
    index(folder, store, settings)
    path.write_text("   \n")
    work, report = plan(folder, store, settings)
    assert work == [] and [r.reason for r in report.rejected] == ["empty file (the version indexed before is kept)"]


def _article(aid: str, text: str):
    """The content hash covers headline and text: articles with the same text here are duplicates."""
    return make_article(title="Headline", text=text, source="wire", origin="feed", key=aid, article_id=aid)


def test_diff_sorts_articles_into_added_updated_unchanged_and_refused():
    same, changed, new = _article("same", "Unchanged."), _article("changed", "New text."), _article("new", "Fresh.")
    twin = _article("twin", "Unchanged.")  # the text of "same" under another id
    known = {"same": (same.content_hash, "feed"), "changed": ("old-hash", "feed")}
    by_hash = {same.content_hash: "same", "old-hash": "changed"}
    work, report, seen = _FileWork(path="", stamp=None), IndexReport(), set()
    again = _article("new", "Fresh, but a second time in this run.")
    kept = _diff([same, changed, new, twin, again], known, by_hash, work, report, seen)
    assert kept == ["same", "changed", "new"] and seen == {"same", "changed", "new"}
    assert [a.id for a in work.upserts] == ["changed", "new"]
    assert report.added == [label(new)] and report.updated == [label(changed)] and report.unchanged == ["same"]
    assert [(r.source, r.reason) for r in report.rejected] == [
        (label(twin), "duplicate of already indexed article 'same'"),
        (label(again), "duplicate id 'new' in this run"),
    ]
    assert by_hash[new.content_hash] == "new"  # shared by the run: a later copy of it is caught too


def test_diff_of_an_article_whose_text_moved_to_another_id_in_the_same_run():
    first, copy = _article("a", "Same words."), _article("b", "Same words.")
    report = IndexReport()
    assert _diff([first, copy], {}, {}, _FileWork(path="", stamp=None), report, set()) == ["a"]
    assert [r.reason for r in report.rejected] == ["duplicate of already indexed article 'a'"]
