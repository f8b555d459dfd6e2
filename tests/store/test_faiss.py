"""The FAISS + SQLite store: the shared contract, plus atomic writes, crash safety and tamper detection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from qa.store import IndexCorrupt, IndexLocked, IndexMissing, VectorStore, faiss_store
from tests.helpers import DATA, ROOT, SEEDS
from tests.store.contract import StoreContract, dense_ids, upsert


class TestFaissStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self):
        return lambda path: faiss_store(path, create=True)


def test_reading_a_missing_index_says_how_to_build_one(tmp_path: Path):
    with pytest.raises(IndexMissing, match="qa index"):
        faiss_store(tmp_path / "nothing")


@pytest.mark.slow
def test_a_crash_between_writing_faiss_and_committing_leaves_the_previous_index(tmp_path: Path):
    path = tmp_path / "store"
    store = faiss_store(path, create=True)
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    before = store.generation()
    # A child process commits a second article but dies (os._exit: no cleanup at all) right after the new
    # FAISS file is on disk and before SQLite commits: the most delicate moment of a write.
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from qa.store import faiss_store
        from tests.store.contract import upsert
        store = faiss_store({str(path)!r})
        real = store.vectors.write
        def write_then_die(index, generation):
            real(index, generation)
            os._exit(9)
        store.vectors.write = write_then_die
        upsert(store, "b", "The wildfire spread.", axis=1)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    reopened = faiss_store(path)
    assert reopened.generation() == before
    assert reopened.check() == []
    assert set(reopened.article_hashes()) == {"a"}
    assert dense_ids(reopened, 0) == ["a"]
    upsert(reopened, "b", "The wildfire spread.", axis=1)  # and the next write succeeds
    assert dense_ids(reopened, 1)[0] == "b" and reopened.check() == []


@pytest.mark.slow
def test_kill_9_during_real_indexing_never_corrupts_the_index(tmp_path: Path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"a{i}.txt").write_text(f"Article {i}\n\n" + f"Sentence {i} about harbour number {i}. " * 80)
    index = tmp_path / "index"
    # Small commit batches, so kills land inside writes as well as inside embedding.
    env = os.environ | {"QA_INDEX_DIR": str(index), "QA_COMMIT_EVERY_CHUNKS": "8"}
    subprocess.run([sys.executable, "-m", "qa", "index", str(SEEDS)], env=env, check=True, capture_output=True)
    for delay in (2.5, 3.5, 4.5, 5.5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa", "index", str(corpus)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = faiss_store(index)
        assert store.check() == []
        assert any("Russia" in title for title in _titles(store))  # nothing that was indexed is lost
    done = subprocess.run(
        [sys.executable, "-m", "qa", "index", str(corpus)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "rejected 0" in done.stdout
    store = faiss_store(index)
    assert store.check() == [] and store.stats()["articles"] == 21


def _titles(store: VectorStore) -> list[str]:
    return [r[0] for r in store.connection().execute("SELECT title FROM articles")]


def test_a_tampered_faiss_file_is_refused_not_loaded(tmp_path: Path):
    store = faiss_store(tmp_path / "store", create=True)
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    [faiss_file] = (tmp_path / "store").glob("faiss-*.index")
    data = bytearray(faiss_file.read_bytes())
    data[-8:] = b"\xff" * 8
    faiss_file.write_bytes(bytes(data))
    with pytest.raises(IndexCorrupt, match="checksum"):
        dense_ids(faiss_store(tmp_path / "store"), 0)


def test_a_garbage_database_gives_a_clear_error(tmp_path: Path):
    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "qa.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(IndexCorrupt, match="damaged"):
        faiss_store(folder)


def test_a_second_writer_waits_then_fails_clearly(tmp_path: Path):
    store = faiss_store(tmp_path / "store", create=True)
    other = faiss_store(tmp_path / "store")
    with (
        store.write_lock(),
        pytest.raises(IndexLocked, match="another indexer"),
        other.write_lock(timeout=0.2),
    ):
        pass


def test_integrity_check_reports_a_chunk_the_loaded_faiss_index_lost(tmp_path: Path):
    store = faiss_store(tmp_path / "store", create=True)
    upsert(store, "a", "Text about ferries.", axis=0)
    upsert(store, "b", "Text about trams.", axis=1)
    assert store.check() == []
    loaded = store.vectors._states[store.generation()].base  # the index readers of the current generation search
    [lost] = [r[0] for r in store.connection().execute("SELECT id FROM chunks WHERE article_id = 'b'")]
    assert loaded.remove_ids(np.array([lost], dtype=np.int64)) == 1
    assert dense_ids(store, 1) == ["a"]  # "b" cannot be found by meaning any more...
    assert any("vectors" in p for p in store.check())  # ...and the check says so
    assert faiss_store(tmp_path / "store").check() == []  # the file on disk was never changed


def test_the_index_folder_holds_no_pickles(tmp_path: Path):
    store = faiss_store(tmp_path / "store", create=True)
    upsert(store, "a", "Text.", axis=0)
    names = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert [n for n in names if n.endswith((".pkl", ".pickle"))] == []
    assert (DATA / "articles").exists()


def test_a_real_index_stores_int8_vectors_4_bit_sentences_an_8_bit_faiss_file_an_empty_wal(tmp_path: Path):
    """What keeps the index small on disk (bench/index_query.py prints the size against the text): a chunk row
    alone fills most of a 4 KB page, so pages are 16 KB; vectors are int8 (4-bit for sentences), the FAISS file holds
    8-bit codes, and the results read back as before."""
    import sqlite3

    import qa
    from qa.settings import Settings

    assistant = qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive"))
    assistant.index([SEEDS])
    conn = sqlite3.connect(tmp_path / "index" / "qa.sqlite")
    try:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 16384
        assert {n for (n,) in conn.execute("SELECT DISTINCT length(vector) FROM chunks")} == {384 + 2}
        rows = conn.execute("SELECT sentences, length(sentence_vectors) FROM chunks").fetchall()
        assert all(size == len(json.loads(spans)) * (192 + 2) for spans, size in rows)
        chunks = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    finally:
        conn.close()
    wal = tmp_path / "index" / "qa.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    (faiss_file,) = (tmp_path / "index").glob("faiss-*.index")
    assert faiss_file.stat().st_size < chunks * (384 + 8) + 4096  # a byte a value and the id: not float16's two
    answer = assistant.ask("Why did Russia decline?")
    assert "one-sided" in answer.citations[0].quote
    fresh = qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive"))  # reopened from disk
    assert fresh.ask("Why did Russia decline?").citations[0].quote == answer.citations[0].quote


def test_an_index_from_schema_1_opens_keeps_its_articles_and_still_answers(tmp_path: Path):
    import sqlite3

    import qa
    from qa.settings import Settings

    settings = Settings(index_dir=tmp_path / "index", backend="extractive")
    qa.Assistant(settings).index([SEEDS])
    with sqlite3.connect(settings.index_dir / "qa.sqlite") as conn:  # what a schema-1 index looked like
        conn.execute("ALTER TABLE chunks DROP COLUMN sentence_vectors")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    assistant = qa.Assistant(settings)
    answer = assistant.ask("Why did Russia decline?")  # sentences without stored vectors are embedded instead
    assert not answer.abstained and "one-sided" in answer.citations[0].quote
    assert all(p.sentence_vectors is None for p in answer.passages)
    store = assistant.store()
    assert store.check() == [] and store.stats()["articles"] == 1
    with sqlite3.connect(settings.index_dir / "qa.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            qa.store.SCHEMA_VERSION
        )
    # The next index run embeds the unchanged articles again, now with their sentence vectors.
    report = assistant.index([SEEDS])
    assert report.updated and report.chunks_embedded > 0
    answer = assistant.ask("Why did Russia decline?")
    assert "one-sided" in answer.citations[0].quote and all(p.sentence_vectors is not None for p in answer.passages)
