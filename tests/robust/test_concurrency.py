"""Concurrency in the default run: stress/concurrency.py at CI size (100 questions from 2 threads and 1 process
while another process re-indexes at least 3 times), and two indexers started at once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from qa.store import faiss_store
from stress.common import print_table
from stress.concurrency import run_concurrency, run_two_indexers


@pytest.mark.slow
def test_questions_during_reindexing_see_one_consistent_snapshot_each(tmp_path: Path):
    result = run_concurrency(
        tmp_path, questions=100, reindex=3, threads=2, processes=1, articles=8, time_limit=900, two_indexers=False
    )
    print_table("questions while re-indexing (CI size)", result.rows())
    assert result.failures == []
    assert result.tally.asked == result.tally.answered == 100 and result.tally.errors == []
    assert result.reindex_runs >= 3
    assert len(result.tally.generations) > 1, "the readers never saw the index change under them"


@pytest.mark.slow
def test_two_indexers_at_once_wait_or_fail_clearly_and_never_corrupt(tmp_path: Path):
    rows, failures = run_two_indexers(tmp_path)
    print_table("two indexers at once", rows)
    assert failures == []


def test_opening_a_new_index_while_another_process_writes_it_waits_instead_of_failing(tmp_path: Path):
    # SQLite refuses the switch to WAL at once, without its busy wait, while another connection writes the new
    # file: two `qa index` started at once on a new index failed with "index ... is damaged (database is locked)".
    folder = tmp_path / "index"
    folder.mkdir()
    other = sqlite3.connect(folder / "qa.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE early (x)")
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    release.start()
    store = faiss_store(folder, create=True)
    release.join()
    assert store.check() == [] and store.generation() == 0
