"""The FAISS side past its small-index regime: a commit logs only its change in SQLite (no file rewritten), the
log is folded into a new base file by a compaction, an IVF index takes over above a size, and every step keeps the
crash and snapshot guarantees. The stores here use small thresholds so that a handful of vectors exercises the
paths a large index takes; vectors are crafted or drawn near real-looking clusters, not embedded."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qa.store import Filters, SQLiteStore, Upsert
from qa.store.codec import decode_vectors
from qa.store.faiss_index import FaissIndex, FaissOptions
from tests.helpers import ROOT
from tests.store.contract import DIM, StoreContract, article, dense_ids, sparse_ids, unit, upsert

LOG = FaissOptions(rewrite_rows=0, compact_fraction=10.0, log_max_rows=10**9)  # never rewritten by itself


def log_store(path: Path, options: FaissOptions = LOG, create: bool = True) -> SQLiteStore:
    return SQLiteStore(path, FaissIndex(path, options), create=create)


def base_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("faiss-*.index*"))


def logged(path: Path) -> int:
    with sqlite3.connect(path / "qa.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM dense_removed").fetchone()[0]


class TestLoggingStoreContract(StoreContract):
    """The whole store contract, with every commit after the first one only logged."""

    @pytest.fixture
    def make_store(self):
        return lambda path: log_store(path)


def test_commits_after_the_first_write_no_vector_file_and_a_reopened_store_agrees(tmp_path: Path):
    path = tmp_path / "store"
    store = log_store(path)
    upsert(store, "a", "The harbour bridge opened to traffic.", axis=0)
    first = base_files(path)
    assert first == ["faiss-1.index"]  # the first commit writes the base: there is none yet
    stamp = (path / "faiss-1.index").stat().st_mtime_ns
    upsert(store, "b", "The wildfire spread toward the valley.", axis=1)
    upsert(store, "c", "The museum reopened its doors.", axis=2)
    upsert(store, "a", "The harbour bridge closed for repairs.", axis=3)  # an update: old chunk removed
    store.commit([], ["b"], {}, "test-model")  # a delete
    assert base_files(path) == first and (path / "faiss-1.index").stat().st_mtime_ns == stamp
    assert logged(path) == 2  # the ids the update and the delete removed
    assert dense_ids(store, 3)[0] == "a" and "b" not in dense_ids(store, 1) and dense_ids(store, 2)[0] == "c"
    assert store.check() == []
    reopened = log_store(path, create=False)  # a new process: base file + the log replayed from SQLite
    for axis, first_hit in ((3, "a"), (2, "c")):
        assert dense_ids(reopened, axis)[0] == first_hit
    assert set(dense_ids(reopened, 0)) == {"a", "c"} and reopened.check() == []
    assert sparse_ids(reopened, "harbour") == ["a"]


def test_a_reader_in_another_process_follows_the_log_and_keeps_its_snapshot(tmp_path: Path):
    path = tmp_path / "store"
    writer = log_store(path)
    upsert(writer, "a", "The harbour bridge opened to traffic.", axis=0)
    reader = log_store(path, create=False)  # its own FAISS state, as a `qa serve` beside `qa index` has
    assert dense_ids(reader, 0) == ["a"]
    with reader.read() as old:
        upsert(writer, "b", "The wildfire spread toward the valley.", axis=0)
        writer.commit([], ["a"], {}, "test-model")
        hits = old.dense(unit(0), 10)  # the snapshot taken before both commits
        assert [p.article_id for p, _ in old.passages([i for i, _ in hits]).values()] == ["a"]
    assert dense_ids(reader, 0) == ["b"] and reader.check() == []
    states = reader.vectors._states
    newest = states[max(states)]
    assert newest.base_generation == 1 and newest.n == 1 and len(newest.removed) == 1  # replayed, not reloaded


def test_a_compaction_when_the_writer_finishes_folds_the_log_into_a_new_file(tmp_path: Path):
    path = tmp_path / "store"
    store = log_store(path, FaissOptions(rewrite_rows=0, compact_fraction=0.5, log_max_rows=10**9))
    upsert(store, "a", "The harbour bridge opened to traffic.", axis=0)
    with store.write_lock():  # a writer's run: its commits log, its end compacts
        upsert(store, "b", "The wildfire spread toward the valley.", axis=1)
        upsert(store, "a", "The harbour bridge closed for repairs.", axis=2)
        assert base_files(path) == ["faiss-1.index"] and logged(path) == 1
    generation = store.generation()
    assert base_files(path) == ["faiss-1.index", f"faiss-{generation}.index"]  # the previous base stays once
    assert logged(path) == 0
    reopened = log_store(path, create=False)
    assert dense_ids(reopened, 2)[0] == "a" and dense_ids(reopened, 1)[0] == "b" and reopened.check() == []
    with store.write_lock():
        upsert(store, "c", "The museum reopened its doors.", axis=3)
        upsert(store, "d", "The tram fares rose.", axis=4)
    assert "faiss-1.index" not in base_files(path)  # two compactions later the first base is gone
    assert log_store(path, create=False).check() == []


def test_the_log_reaching_its_ceiling_compacts_inside_the_commit(tmp_path: Path):
    path = tmp_path / "store"
    store = log_store(path, FaissOptions(rewrite_rows=0, compact_fraction=10.0, log_max_rows=3))
    for i in range(4):
        upsert(store, f"a{i}", f"Article number {i} about ferries.", axis=i)
    assert f"faiss-{store.generation()}.index" in base_files(path) and store.check() == []


CRASH = """
import os, sys
sys.path.insert(0, {root!r})
from qa.store import SQLiteStore
from qa.store.codec import decode_vectors
from qa.store.faiss_index import FaissIndex, FaissOptions
from tests.store.contract import upsert
path = {path!r}
options = FaissOptions(rewrite_rows=0, compact_fraction={fraction}, log_max_rows=10**9)
store = SQLiteStore(path, FaissIndex(path, options))
conn = store.connection()
{patch}
with store.write_lock():
    upsert(store, "b", "The wildfire spread.", axis=1)
    upsert(store, "a", "The harbour bridge closed.", axis=2)
"""

PATCHES = {
    # SQLite is about to commit a logged generation: its rows are written, the COMMIT never happens
    "before a logged commit": (
        "10.0",
        "real = conn.execute\n"
        "class Dying:\n"
        "    def __getattr__(self, name): return getattr(conn, name)\n"
        "    def execute(self, sql, *a):\n"
        "        if sql == 'COMMIT' and conn.execute(\"SELECT COUNT(*) FROM dense_removed\").fetchone()[0]:\n"
        "            os._exit(9)\n"
        "        return real(sql, *a)\n"
        "store._local.conn = Dying()",
    ),
    # the compaction's new file is on disk, its SQLite record is not
    "inside a compaction": (
        "0.01",
        "real = store.vectors.write\n"
        "def write_then_die(index, generation):\n"
        "    real(index, generation)\n"
        "    if generation > 1: os._exit(9)\n"
        "store.vectors.write = write_then_die",
    ),
}


@pytest.mark.parametrize("moment", list(PATCHES))
def test_a_crash_in_the_log_or_a_compaction_leaves_the_last_committed_generation(tmp_path: Path, moment: str):
    path = tmp_path / "store"
    store = log_store(path)
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    upsert(store, "c", "The museum reopened.", axis=3)  # logged
    before = store.generation()
    fraction, patch = PATCHES[moment]
    script = textwrap.dedent(CRASH).format(root=str(ROOT), path=str(path), fraction=fraction, patch=patch)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    reopened = log_store(path, create=False)
    assert set(reopened.article_hashes()) == {"a", "b", "c"} and dense_ids(reopened, 1)[0] == "b"
    if moment == "before a logged commit":  # the update of "a" died: its old version is the one found
        assert reopened.generation() == before + 1 and dense_ids(reopened, 0)[0] == "a"
        assert sparse_ids(reopened, "opened") == ["a"] and sparse_ids(reopened, "closed") == []
    else:  # both commits went through; the compaction after them did not
        assert reopened.generation() == before + 2 and dense_ids(reopened, 2)[0] == "a"
    assert reopened.check() == []
    upsert(reopened, "d", "The tram fares rose.", axis=4)  # and the next write succeeds
    assert dense_ids(reopened, 4)[0] == "d" and log_store(path, create=False).check() == []


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 40 centres, the way embeddings of news on a few topics lie (not uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    vecs = centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def test_above_its_size_the_index_is_ivf_with_recall_close_to_exact_and_filters_stay_exact(tmp_path: Path, capfd):
    options = FaissOptions(rewrite_rows=0, compact_fraction=0.05, log_max_rows=10**9, ivf_min_rows=1500, ivf_nprobe=16)
    path = tmp_path / "store"
    store = log_store(path, options)
    vecs = clustered(3000)
    with store.write_lock():
        for start in range(0, 3000, 500):
            batch = []
            for i in range(start, start + 500):
                a, chunks = article(f"n{i}", f"News item {i}.", source="Valley News" if i % 50 == 0 else "wire")
                batch.append(Upsert(a, chunks[:1], vecs[i : i + 1]))
            store.commit(batch, [], {}, "test-model")
    state = store.vectors._states[store.generation()]
    assert state.ivf and state.log_rows == 0  # the compaction at the end of the run built the IVF index
    assert "WARNING" not in capfd.readouterr().err  # quiet: FAISS's k-means warning is for its default sample
    queries = clustered(50, seed=1)
    recall = []
    with store.read() as view:
        rows = view.conn.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.array([r[0] for r in rows])
        matrix = decode_vectors([r[1] for r in rows], DIM)
        for q in queries:
            exact = set(ids[np.argsort(-(matrix @ q))[:10]].tolist())
            recall.append(len(exact & {i for i, _ in view.dense(q, 10)}) / 10)
        hits = view.dense(queries[0], 100, Filters(source="valley"))
        valley = [
            r[0]
            for r in view.conn.execute(
                "SELECT c.id FROM chunks c JOIN articles a ON a.id = c.article_id WHERE a.source = 'Valley News'"
            )
        ]
        assert sorted(i for i, _ in hits) == sorted(valley)  # a narrow filter is searched exactly
    assert np.mean(recall) >= 0.95, np.mean(recall)
    store.commit([], ["n0", "n1"], {}, "test-model")
    assert "n0" not in dense_ids(store, 0, k=3000) and store.check() == []
    assert log_store(path, options, create=False).check() == []


@pytest.mark.parametrize("options", [FaissOptions(), LOG], ids=["rewritten base", "logged changes"])
def test_a_filtered_search_returns_the_exact_best_of_the_allowed_rows_wide_or_narrow(tmp_path: Path, options):
    """An as-of date keeps most rows (answered from a deeper unfiltered search), a source keeps few (searched
    within the allowed rows): either way the hits are the exact top k of the rows the filter allows."""
    store = log_store(tmp_path / "store", options)
    vecs = clustered(600)
    days = [f"2023-01-{1 + i % 28:02d}" for i in range(600)]
    batch = []
    for i in range(600):
        a, chunks = article(f"n{i}", f"News item {i}.", source="Valley News" if i % 40 == 0 else "wire",
                            published=days[i])  # fmt: skip
        batch.append(Upsert(a, chunks[:1], vecs[i : i + 1]))
        if len(batch) == 200:  # three commits: with LOG the later two stay in the change log
            store.commit(batch, [], {}, "test-model")
            batch = []
    with store.read() as view:  # the vectors as stored (the scores come from these)
        rows = view.conn.execute("SELECT vector FROM chunks ORDER BY id").fetchall()
        stored = decode_vectors([r[0] for r in rows], DIM)
    wide, narrow = Filters(as_of="2023-01-25"), Filters(source="valley")
    for filters, allows in ((wide, lambda i: days[i] <= "2023-01-25"), (narrow, lambda i: i % 40 == 0)):
        for q in clustered(20, seed=3):
            allowed = [i for i in range(600) if allows(i)]
            best = sorted(allowed, key=lambda i: -float(stored[i] @ q))[:10]
            assert _dense_for(store, q, filters) == [f"n{i}" for i in best]


def _dense_for(store: SQLiteStore, q: np.ndarray, filters: Filters) -> list[str]:
    with store.read() as view:
        hits = view.dense(q, 10, filters)
        records = view.passages([rid for rid, _ in hits])
        return [records[rid][0].article_id for rid, _ in hits]


def test_an_as_of_date_that_excludes_nothing_is_searched_unfiltered_until_a_later_article_arrives(tmp_path: Path):
    """The web chat asks as of today: over past news the filter allows every row, so it is dropped (the fast
    unfiltered path); once an article dated after it is indexed (a new generation), the filter applies again."""
    store = log_store(tmp_path / "store", LOG)
    vecs = clustered(61)
    batch = [Upsert(*_dated(i, f"2023-01-{1 + i % 28:02d}"), vecs[i : i + 1]) for i in range(60)]
    store.commit(batch, [], {}, "test-model")
    today = Filters(as_of="2023-02-01")
    with store.read() as view:
        assert view.effective(today) == Filters()
        assert view.effective(Filters(as_of="2023-01-10")) == Filters(as_of="2023-01-10")  # excludes some
        assert view.dense(vecs[60], 10, today) == view.dense(vecs[60], 10)
    store.commit([Upsert(*_dated(60, "2023-03-01"), vecs[60:61])], [], {}, "test-model")
    with store.read() as view:
        assert view.effective(today) == today
    assert "n60" not in _dense_for(store, vecs[60], today)  # its own vector: the best hit, were it allowed
    assert _dense_for(store, vecs[60], Filters())[0] == "n60"


def _dated(i: int, published: str) -> tuple:
    a, chunks = article(f"n{i}", f"News item {i}.", source="wire", published=published)
    return a, chunks[:1]
