"""Incremental re-indexing with the real model: only new or changed articles are embedded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import qa
from tests.helpers import SEEDS


def _generation(assistant: qa.Assistant) -> int:
    return assistant.store().generation()


def test_first_index_adds_everything_and_a_rerun_embeds_nothing(assistant: qa.Assistant, corpus: Path):
    first = assistant.index([corpus])
    assert len(first.added) == 7 and first.rejected == [] and first.chunks_embedded >= 7
    generation = _generation(assistant)
    again = assistant.index([corpus])
    assert (len(again.unchanged), again.added, again.updated, again.chunks_embedded) == (7, [], [], 0)
    assert _generation(assistant) == generation
    assert assistant.store().check() == []


def test_touching_a_file_without_changing_it_embeds_nothing(assistant: qa.Assistant, corpus: Path):
    assistant.index([corpus])
    path = corpus / "wire.jsonl"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    report = assistant.index([corpus])
    assert report.chunks_embedded == 0 and len(report.unchanged) == 7


def test_a_changed_article_is_re_embedded_and_its_old_text_is_gone(assistant: qa.Assistant, corpus: Path):
    assistant.index([corpus])
    path = corpus / "harbor-bridge.txt"
    path.write_text(path.read_text().replace("412 million euros", "530 million euros"))
    report = assistant.index([corpus])
    assert len(report.updated) == 1 and "Harbor Bridge" in report.updated[0]
    assert len(report.unchanged) == 6 and 0 < report.chunks_embedded <= 3
    answer = assistant.ask("How much will the harbor bridge in Port Elling cost?")
    assert "530 million" in answer.text and "412" not in answer.text
    assert assistant.store().check() == []


def test_records_removed_from_a_jsonl_file_are_removed(assistant: qa.Assistant, corpus: Path):
    assistant.index([corpus])
    path = corpus / "wire.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")  # drop wire-003, the exoplanet story
    report = assistant.index([corpus])
    assert report.removed == ["wire-003"] and report.chunks_embedded == 0
    assert "wire-003" not in assistant.store().article_hashes()


def test_sync_removes_articles_whose_files_are_gone(assistant: qa.Assistant, corpus: Path):
    assistant.index([corpus])
    (corpus / "wildfire.md").unlink()
    kept = assistant.index([corpus])
    assert kept.removed == [] and len(assistant.store().article_hashes()) == 7  # without --sync: kept
    synced = assistant.index([corpus], sync=True)
    assert len(synced.removed) == 1 and len(assistant.store().article_hashes()) == 6
    assert assistant.ask("How many residents were evacuated near Caldera Springs?").abstained


def test_new_articles_are_added_next_to_the_old_ones(assistant: qa.Assistant, corpus: Path):
    assistant.index([corpus])
    report = assistant.index([SEEDS])
    assert len(report.added) == 1 and len(assistant.store().article_hashes()) == 8


def test_bad_files_are_rejected_while_good_ones_in_the_same_run_index(assistant: qa.Assistant, corpus: Path):
    (corpus / "empty.txt").write_text("")
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (corpus / "bad-utf8.txt").write_bytes(b"Title\n\n\xff\xfe\xfa broken")
    (corpus / "broken.json").write_text("{not json")
    (corpus / "huge.txt").write_bytes(b"a" * 20_000_001)
    report = assistant.index([corpus])
    reasons = {Path(r.source).name: r.reason for r in report.rejected}
    assert set(reasons) == {"empty.txt", "binary.txt", "bad-utf8.txt", "broken.json", "huge.txt"}
    assert all(reasons.values())
    assert len(report.added) == 7


def test_an_indexed_file_that_turns_bad_keeps_its_indexed_version(assistant: qa.Assistant, corpus: Path):
    assistant.index([corpus])
    (corpus / "museum.json").write_text('[{"title": "x", "text": ')
    report = assistant.index([corpus])
    [rejection] = report.rejected
    assert "malformed JSON" in rejection.reason and "kept" in rejection.reason
    assert "list-1" in assistant.store().article_hashes()


def test_the_same_text_under_two_names_is_indexed_once(assistant: qa.Assistant, corpus: Path):
    (corpus / "copy-of-bridge.txt").write_text((corpus / "harbor-bridge.txt").read_text())
    report = assistant.index([corpus])
    assert len(report.added) == 7
    [dup] = report.rejected
    assert "duplicate" in dup.reason


def test_articles_can_be_indexed_from_python(assistant: qa.Assistant, tmp_path: Path):
    records = tmp_path / "r.jsonl"
    records.write_text(json.dumps({"doc_id": "x1", "title": "Quiet", "text": "The lighthouse keeper retired."}))
    assistant.index([records])
    answer = assistant.ask("Who retired?")
    assert not answer.abstained and answer.citations[0].article_id == "x1"
