"""Crash consistency and "zero articles lost", in the default run: the kill -9 loop of stress/crash.py, smaller
(8 kills instead of 50), plus the indexer cases that used to drop articles without any crash at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import qa
from qa.settings import Settings
from stress.common import print_table
from stress.crash import run_crash

HARBOUR = "Harbour Bridge Opens\n\nThe harbour bridge in Port Elling opened on Monday after four years of work.\n"
FIRE = "Wildfire Spreads\n\nA wildfire near Caldera Springs forced 3,000 residents to leave their homes.\n"
TRAM = "Tram Fares Rise\n\nTram fares in Marisport rose to three crowns on Monday, the transport board said.\n"


@pytest.mark.slow
def test_kill_9_during_reindex_never_loses_or_mixes_articles(tmp_path: Path):
    result = run_crash(tmp_path, kills=8, articles=8, seed=7, finish_every=0, time_limit=400)
    print_table("kill -9 during re-index (CI size)", result.rows())
    assert result.failures == []
    assert result.kills == 8 and result.checks >= 10
    assert result.articles_lost == 0 and result.wrong_versions == 0
    assert result.killed_mid_job + result.killed_after_last_commit >= 1, "no kill landed inside the writes"
    assert result.reruns_finished == 1  # the final rerun brought every article to the new version


def _titles(assistant: qa.Assistant) -> list[str]:
    return sorted(r[0] for r in assistant.store().connection().execute("SELECT title FROM articles"))


def _corpus(tmp_path: Path) -> tuple[qa.Assistant, Path]:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive")), folder


def test_swapping_the_texts_of_two_files_keeps_both_articles(tmp_path: Path):
    # Each new text used to be refused as a "duplicate" of the other file's old text, and both were dropped.
    assistant, folder = _corpus(tmp_path)
    (folder / "a.txt").write_text(HARBOUR)
    (folder / "b.txt").write_text(FIRE)
    assistant.index([folder])
    (folder / "a.txt").write_text(FIRE + "\n")
    (folder / "b.txt").write_text(HARBOUR + "\n")
    report = assistant.index([folder])
    assert report.rejected == [] and len(report.updated) == 2
    assert _titles(assistant) == ["Harbour Bridge Opens", "Wildfire Spreads"]
    assert assistant.store().check() == []


def test_a_text_moved_to_a_new_file_is_kept(tmp_path: Path):
    assistant, folder = _corpus(tmp_path)
    (folder / "b.txt").write_text(HARBOUR)
    assistant.index([folder])
    (folder / "a.txt").write_text(HARBOUR + "\n")  # read first: its text is b.txt's old one
    (folder / "b.txt").write_text(TRAM)
    assistant.index([folder])
    assert _titles(assistant) == ["Harbour Bridge Opens", "Tram Fares Rise"]
    assert len(assistant.index([folder]).unchanged) == 2  # and it stays


def test_a_refused_copy_is_indexed_once_its_original_is_gone(tmp_path: Path):
    # The copy's file used to be stamped as indexed (with no article), so it was skipped forever after.
    assistant, folder = _corpus(tmp_path)
    (folder / "a.txt").write_text(HARBOUR)
    assistant.index([folder])
    shutil.copy(folder / "a.txt", folder / "b.txt")
    report = assistant.index([folder])
    assert [r.reason for r in report.rejected] == [f"duplicate of already indexed article '{report.unchanged[0]}'"]
    (folder / "a.txt").unlink()
    report = assistant.index([folder], sync=True)
    assert _titles(assistant) == ["Harbour Bridge Opens"] and len(report.added) == 1
    assert assistant.store().check() == []
