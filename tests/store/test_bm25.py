"""The in-memory BM25 index (qa/store/bm25_index.py) that replaced FTS5: the same ranking as FTS5's bm25() on real
news, a change log replayed by other processes, its base file refused when tampered with and never unpickled,
kill -9 at any point leaving the last committed generation, and an FTS5 index of schema 4 opening and upgraded."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qa.indexing.chunk import chunk_article
from qa.sources.ingest import load_file
from qa.store import IndexCorrupt, SQLiteStore, Upsert, faiss_store
from qa.store.bm25_index import Bm25Options
from qa.store.faiss_index import FaissIndex
from tests.helpers import ROOT, SHARED_EVAL
from tests.store.contract import DIM, StoreContract, sparse_ids, upsert

RTQA = SHARED_EVAL / "rtqa-2023-dev"
LOG = Bm25Options(rewrite_rows=0, compact_fraction=10.0, log_max_rows=10**9)  # the base is never rewritten


def log_store(path: Path, options: Bm25Options = LOG, create: bool = True) -> SQLiteStore:
    return SQLiteStore(path, FaissIndex(path), create=create, bm25=options)


def bm25_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("bm25-*.idx*"))


class TestBm25LogContract(StoreContract):
    """The whole store contract with every BM25 change after the first commit only logged."""

    @pytest.fixture
    def make_store(self):
        return lambda path: log_store(path)


@pytest.fixture(scope="module")
def news(tmp_path_factory: pytest.TempPathFactory) -> tuple[SQLiteStore, sqlite3.Connection, list[str]]:
    """120 rtqa-2023-dev articles in a store and, beside it, in FTS5 as schema 4 indexed them."""
    assert (RTQA / "corpus.jsonl").exists(), f"{RTQA} is missing: the tests need ../shared beside the repo"
    articles, _ = load_file(RTQA / "corpus.jsonl", 10**9)
    articles = articles[:120]
    store = faiss_store(tmp_path_factory.mktemp("news") / "store", create=True)
    fts = sqlite3.connect(":memory:")
    fts.execute("CREATE VIRTUAL TABLE fts USING fts5(title, text, tokenize='porter unicode61')")
    rng = np.random.default_rng(0)
    upserts = []
    for a in articles:
        chunks = chunk_article(a)
        vecs = rng.standard_normal((len(chunks), DIM)).astype(np.float32)
        upserts.append(Upsert(a, chunks, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)))
    store.commit(upserts, [], {}, "test-model")
    rows = store.connection().execute(
        "SELECT c.id, a.title, c.chunk_id FROM chunks c JOIN articles a ON a.id = c.article_id"
    )
    text = {c.chunk_id: c.text for u in upserts for c in u.chunks}
    fts.executemany("INSERT INTO fts (rowid, title, text) VALUES (?, ?, ?)", [(i, t, text[c]) for i, t, c in rows])
    questions = [q["question"] for q in json.loads((RTQA / "questions.json").read_text())][:60]
    return store, fts, questions


def _fts5(fts: sqlite3.Connection, question: str, k: int) -> list[tuple[int, float]]:
    """What schema 4's StoreView.sparse returned."""
    from qa.text import content_words

    query = " OR ".join(f'"{w}"' for w in dict.fromkeys(content_words(question)))
    if not query:
        return []
    rows = fts.execute("SELECT rowid, rank FROM fts WHERE fts MATCH ? ORDER BY rank LIMIT ?", (query, k)).fetchall()
    return [(int(r[0]), -float(r[1])) for r in rows]


def test_the_ranking_is_fts5s_on_real_news(news):
    store, fts, questions = news
    compared = 0
    for question in questions:
        want = _fts5(fts, question, 50)
        with store.read() as view:
            got = view.sparse(question, 50)
        assert len(got) == len(want), question
        # The same scores, best first (to rounding), and the same chunks wherever scores are not tied.
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-9, atol=1e-12)
        by_score = {}
        for rid, score in want:
            by_score.setdefault(round(score, 9), set()).add(rid)
        for rid, score in got:
            assert rid in by_score[round(score, 9)], question
        compared += len(got)
    assert compared > 1000


def test_a_log_replayed_by_another_process_agrees_with_a_rewritten_base(tmp_path: Path):
    logged, rewritten = log_store(tmp_path / "log"), faiss_store(tmp_path / "full", create=True)
    reader = log_store(tmp_path / "log", create=False)  # another process, opened before the writes
    texts = {
        "a": "The harbour bridge opened to traffic.",
        "b": "The wildfire spread toward the valley near the bridge.",
        "c": "The museum reopened its doors near the harbour.",
    }
    for store in (logged, rewritten):
        for axis, (aid, text) in enumerate(texts.items()):
            upsert(store, aid, text, axis=axis)
    with reader.read() as snapshot:  # a snapshot held open while the writer goes on
        before = snapshot.sparse("harbour bridge", 10)
        for store in (logged, rewritten):
            upsert(store, "a", "The harbour bridge closed for repairs.", axis=3)  # an update
            store.commit([], ["b"], {}, "test-model")  # a delete
        assert snapshot.sparse("harbour bridge", 10) == before  # its own generation, unchanged
    assert bm25_files(tmp_path / "log") == ["bm25-1.idx"]  # the later commits were only logged
    for query in ("harbour bridge", "wildfire valley", "closed repairs", "museum"):
        expected = sparse_ids(rewritten, query)
        assert sparse_ids(logged, query) == expected, query
        assert sparse_ids(reader, query) == expected, query  # replayed from the log in SQLite
        assert sparse_ids(log_store(tmp_path / "log", create=False), query) == expected, query  # a new process
    assert "b" not in sparse_ids(reader, "wildfire")
    assert reader.check() == [] and logged.check() == []


def test_a_long_log_is_folded_into_a_new_base_when_the_writer_finishes(tmp_path: Path):
    path = tmp_path / "store"
    store = log_store(path, Bm25Options(rewrite_rows=0, compact_fraction=0.5, log_max_rows=10**9))
    with store.write_lock():
        for i in range(6):
            upsert(store, f"n{i}", f"Report number {i} on the harbour ferries.", axis=i)
        assert bm25_files(path) == ["bm25-1.idx"]
    # compacted; the previous base stays for a reader that may still be opening it, until the next compaction
    assert bm25_files(path) == ["bm25-1.idx", f"bm25-{store.generation()}.idx"]
    assert store.connection().execute("SELECT COUNT(*) FROM sparse_removed").fetchone()[0] == 0
    assert len(sparse_ids(log_store(path, create=False), "harbour ferries")) == 6


def _tamper(path: Path, data: bytes, record: bool) -> None:
    [name] = bm25_files(path)
    (path / name).write_bytes(data)
    if record:  # the tamperer also rewrote the checksum in the database
        import hashlib

        conn = sqlite3.connect(path / "qa.sqlite")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'bm25_sha256'", (hashlib.sha256(data).hexdigest(),))
        conn.commit()
        conn.close()


@pytest.mark.parametrize("case", ["flipped bytes", "garbage, checksum recorded", "a pickle, checksum recorded"])
def test_a_tampered_bm25_file_is_refused_and_runs_nothing(tmp_path: Path, case: str):
    path = tmp_path / "store"
    upsert(faiss_store(path, create=True), "a", "The harbour bridge opened.", axis=0)
    [name] = bm25_files(path)
    marker = tmp_path / "the-payload-ran"
    if case == "flipped bytes":
        data = bytearray((path / name).read_bytes())
        data[-4:] = b"\xff" * 4
        _tamper(path, bytes(data), record=False)
        message = "checksum"
    elif case == "garbage, checksum recorded":
        _tamper(path, b"QABM25\x01\n" + (200).to_bytes(8, "little") + b"{" * 300, record=True)
        message = "not a BM25 index"
    else:

        class Payload:
            def __reduce__(self):
                return (__import__("os").system, (f"touch {marker}",))

        _tamper(path, pickle.dumps(Payload()), record=True)
        message = "not a BM25 index"
    with pytest.raises(IndexCorrupt, match=message):
        sparse_ids(faiss_store(path), "harbour")
    assert not marker.exists()


def test_a_missing_bm25_file_is_rebuilt_from_sqlite_and_written_by_the_next_writer(tmp_path: Path):
    path = tmp_path / "store"
    store = faiss_store(path, create=True)
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    for name in bm25_files(path):
        (path / name).unlink()
    reopened = faiss_store(path)
    assert sparse_ids(reopened, "harbour") == ["a"] and reopened.check() == []
    with reopened.write_lock():
        pass
    assert bm25_files(path) == [f"bm25-{store.generation()}.idx"]


CRASH = """
import os, sys
sys.path.insert(0, {root!r})
import numpy as np
from pathlib import Path
from qa.store import SQLiteStore
from qa.store.bm25_index import Bm25Options
from qa.store.faiss_index import FaissIndex
from tests.store.contract import upsert
store = SQLiteStore(Path({path!r}), FaissIndex(Path({path!r})), bm25=Bm25Options({options}))
{patch}
with store.write_lock():
    upsert(store, "a", "The harbour bridge closed.", axis=2)
    upsert(store, "b", "The wildfire spread.", axis=1)
os._exit(9)
"""
PATCHES = {
    # a new base file is on disk (written inside the commit), the commit is not
    "after a base file, before its commit": (
        "rewrite_rows=10**6",
        "real = store.words.write\n"
        "def write_then_die(base, generation):\n"
        "    real(base, generation)\n"
        "    os._exit(9)\n"
        "store.words.write = write_then_die",
    ),
    # the log rows are written, the SQLite commit is not
    "before a logged commit": (
        "rewrite_rows=0, compact_fraction=10.0, log_max_rows=10**9",
        "import sqlite3\n"
        "class Dying(sqlite3.Connection):\n"
        "    def execute(self, sql, *a):\n"
        "        if sql == 'COMMIT': os._exit(9)\n"
        "        return super().execute(sql, *a)\n"
        "store._local.conn = sqlite3.connect(store.db_path, factory=Dying, isolation_level=None)",
    ),
    # both commits went through; the compaction when the writer finishes died after writing its file
    "inside a compaction": (
        "rewrite_rows=0, compact_fraction=0.01, log_max_rows=10**9",
        "real = store.words.write\n"
        "def write_then_die(base, generation):\n"
        "    real(base, generation)\n"
        "    os._exit(9)\n"
        "store.words.write = write_then_die",
    ),
}


@pytest.mark.parametrize("moment", list(PATCHES))
def test_kill_9_at_any_point_leaves_the_last_committed_generation(tmp_path: Path, moment: str):
    path = tmp_path / "store"
    store = log_store(path)
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    upsert(store, "c", "The museum reopened.", axis=3)
    before = store.generation()
    options, patch = PATCHES[moment]
    script = textwrap.dedent(CRASH).format(root=str(ROOT), path=str(path), options=options, patch=patch)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    reopened = log_store(path, create=False)
    if moment == "inside a compaction":
        assert reopened.generation() == before + 2
        assert sparse_ids(reopened, "closed") == ["a"] and sparse_ids(reopened, "wildfire") == ["b"]
    else:  # the first commit died: the previous generation, whole
        assert reopened.generation() == before
        assert sparse_ids(reopened, "opened") == ["a"] and sparse_ids(reopened, "closed") == []
    assert sparse_ids(reopened, "museum") == ["c"] and reopened.check() == []
    upsert(reopened, "d", "The tram fares rose.", axis=4)  # and the next write succeeds
    assert sparse_ids(reopened, "tram") == ["d"] and log_store(path, create=False).check() == []


def test_an_fts5_index_of_schema_4_opens_answers_and_the_next_writer_upgrades_it(tmp_path: Path):
    path = tmp_path / "store"
    store = faiss_store(path, create=True)
    upsert(store, "a", "The harbour bridge opened to traffic.", axis=0)
    upsert(store, "b", "The wildfire spread toward the valley.", axis=1)
    conn = sqlite3.connect(path / "qa.sqlite")  # what schema 4 held: FTS5 over the chunk texts, no BM25 file
    conn.executescript(
        """
        UPDATE chunks SET text = (SELECT substr(a.text, chunks.start + 1, chunks.end - chunks.start)
                                  FROM articles a WHERE a.id = chunks.article_id);
        CREATE VIEW fts_source AS
            SELECT c.id AS id, a.title AS title, c.text AS text FROM chunks c JOIN articles a ON a.id = c.article_id;
        CREATE VIRTUAL TABLE fts USING fts5(title, text, content='fts_source', content_rowid='id',
            tokenize='porter unicode61');
        INSERT INTO fts (fts) VALUES ('rebuild');
        DROP TABLE sparse_removed;
        DELETE FROM meta WHERE key LIKE 'bm25_%';
        UPDATE meta SET value = '4' WHERE key = 'schema_version';
        """
    )
    conn.commit()
    conn.close()
    for name in bm25_files(path):
        (path / name).unlink()
    old = faiss_store(path)  # opens (the FTS5 table goes), answers from the chunk texts
    assert sparse_ids(old, "wildfire valley") == ["b"] and old.check() == []
    with sqlite3.connect(path / "qa.sqlite") as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "fts" not in names and "sparse_removed" in names
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "5"
    upsert(old, "c", "The museum reopened.", axis=2)  # the next writer writes the BM25 file
    assert bm25_files(path) == [f"bm25-{old.generation()}.idx"]
    fresh = faiss_store(path)
    assert sparse_ids(fresh, "harbour") == ["a"] and sparse_ids(fresh, "museum") == ["c"] and fresh.check() == []
