"""The Milvus backend (Milvus Lite, embedded): the shared store contract, crash recovery at both points where
SQLite and Milvus can disagree, backend switching without re-embedding, and the whole pipeline on real text."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qa.answer.retrieve import HybridRetriever
from qa.api import Assistant
from qa.settings import Settings
from qa.store import Filters, VectorStore, faiss_store, open_store
from qa.store import milvus_store as open_milvus
from qa.store.faiss_index import FaissIndex
from qa.store.milvus import PENDING, MilvusIndex
from qa.store.sql import read_meta
from tests.helpers import ROOT
from tests.store.contract import StoreContract, dense_ids, unit, upsert

pytestmark = pytest.mark.milvus


def lite_uri(path: Path) -> str:
    return str(path / "vectors" / "milvus.db")


def milvus_store(path: Path) -> VectorStore:
    return open_milvus(path, lite_uri(path), create=True)


class TestMilvusLiteStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self):
        return milvus_store


def server_uri(path: Path) -> str:
    """An http:// Milvus endpoint on 127.0.0.1, served by milvus-lite's gRPC server: the code path of a Milvus
    standalone or cluster deployment, without one."""
    from milvus_lite.server_manager import server_manager_instance

    (path / "server").mkdir(parents=True, exist_ok=True)
    uri = server_manager_instance.start_and_get_uri(str(path / "server" / "milvus.db"))
    assert uri and uri.startswith("http://127.0.0.1:")
    return uri


class TestMilvusServerStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self):
        return lambda path: open_milvus(path, server_uri(path), create=True)


def test_open_store_picks_the_backend_from_vector_uri(tmp_path: Path):
    assert isinstance(open_store(Settings(index_dir=tmp_path / "f"), create=True).vectors, FaissIndex)
    store = open_store(Settings(index_dir=tmp_path / "m", vector_uri=lite_uri(tmp_path / "m")), create=True)
    assert isinstance(store.vectors, MilvusIndex) and store.stats()["vectors"].startswith("milvus lite")


def test_filter_values_are_data_not_expression_syntax(tmp_path: Path):
    store = milvus_store(tmp_path / "store")
    upsert(store, "q", "Ferries run late.", axis=0, source='The "Harbour" Times')
    upsert(store, "p", "Ferries run early.", axis=0, source="Plain News")
    assert dense_ids(store, 0, filters=Filters(source='"harbour" t')) == ["q"]
    assert dense_ids(store, 0, filters=Filters(source='" or source like "%')) == []


def test_integrity_check_reports_a_chunk_missing_from_the_collection(tmp_path: Path):
    store = milvus_store(tmp_path / "store")
    upsert(store, "a", "Text about ferries.", axis=0)
    upsert(store, "b", "Text about trams.", axis=1)
    assert store.check() == []
    [lost] = [r[0] for r in store.connection().execute("SELECT id FROM chunks WHERE article_id = 'b'")]
    store.vectors._client.delete(store.vectors.collection, ids=[lost])  # behind the store's back
    assert dense_ids(store, 1) == ["a"]
    assert any("vectors" in p for p in store.check())
    # Milvus Lite does not fsync, so an open compares row counts with SQLite and rebuilds on a mismatch.
    reopened = milvus_store(tmp_path / "store")
    assert reopened.check() == [] and dense_ids(reopened, 1)[0] == "b"


def _run_and_die(path: Path, body: str) -> None:
    """Run `body` in a child process that dies with os._exit(9) where the body says (no cleanup at all)."""
    script = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, {root!r})
        from qa.store import milvus_store
        from tests.store.contract import upsert
        store = milvus_store({path!r}, {uri!r}, create=True)
    """).format(root=str(ROOT), path=str(path), uri=lite_uri(path))
    proc = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(body)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 9, proc.stderr


@pytest.mark.slow
def test_a_crash_after_the_milvus_insert_before_the_sqlite_commit_leaves_the_previous_index(tmp_path: Path):
    path = tmp_path / "store"
    _run_and_die(
        path,
        """
        upsert(store, "a", "The harbour bridge opened.", axis=0)
        from qa.store.milvus import MilvusWrite
        real = MilvusWrite.stage
        def stage_then_die(self, *args):
            real(self, *args)
            os._exit(9)
        MilvusWrite.stage = stage_then_die
        upsert(store, "b", "The wildfire spread.", axis=1)
        """,
    )
    store = open_milvus(path, lite_uri(path))
    assert set(store.article_hashes()) == {"a"} and dense_ids(store, 1) == ["a"]
    assert store.check() == []  # the orphan vector of "b" was dropped when the store opened
    upsert(store, "b", "The wildfire spread.", axis=1)
    assert dense_ids(store, 1)[0] == "b" and store.check() == []


@pytest.mark.slow
def test_a_crash_after_the_sqlite_commit_before_the_milvus_delete_is_finished_by_the_next_commit(tmp_path: Path):
    path = tmp_path / "store"
    _run_and_die(
        path,
        """
        upsert(store, "a", "Original text about ferries.", axis=0)
        from qa.store.milvus import MilvusWrite
        MilvusWrite.committed = lambda self: os._exit(9)
        upsert(store, "a", "Revised text about trams.", axis=2)
        """,
    )
    store = open_milvus(path, lite_uri(path))
    assert read_meta(store.connection()).get(PENDING)  # the old chunk's vector is still in Milvus...
    with store.read() as view:
        hits = view.dense(unit(0), 10)
        assert hits and all(score < 0.5 for _, score in hits)  # ...but no reader gets it
        assert set(view.passages([i for i, _ in hits])) == {i for i, _ in hits}
    upsert(store, "b", "Text about buses.", axis=1)
    assert PENDING not in read_meta(store.connection()) and store.check() == []


def test_switching_backends_reuses_the_stored_vectors(tmp_path: Path):
    path = tmp_path / "store"
    flat = faiss_store(path, create=True)
    upsert(flat, "a", "The harbour bridge opened.", axis=0)
    upsert(flat, "b", "The wildfire spread.", axis=1)
    milvus = milvus_store(path)  # no collection yet: filled from the vectors in SQLite
    assert dense_ids(milvus, 1)[0] == "b" and milvus.check() == []
    upsert(milvus, "c", "The museum reopened.", axis=2)
    back = faiss_store(path)  # and back: FAISS rebuilds its index from SQLite too
    assert dense_ids(back, 2)[0] == "c" and back.check() == []
    upsert(back, "d", "The ferry was late.", axis=3)
    again = milvus_store(path)  # Milvus is behind by one generation: rebuilt
    assert dense_ids(again, 3)[0] == "d" and again.check() == []


@pytest.mark.slow
def test_incremental_index_filters_and_hybrid_retrieval_match_faiss(tmp_path: Path, corpus: Path):
    """The real pipeline on both backends: same passages for the same questions, same incremental behaviour."""
    questions = ["When did the bridge open?", "How far did the wildfire spread?", "What did the museum show?"]
    results = {}
    for name, uri in (("faiss", ""), ("milvus", lite_uri(tmp_path / "milvus"))):
        settings = Settings(index_dir=tmp_path / name, vector_uri=uri, backend="extractive")
        assistant = Assistant(settings)
        first = assistant.index([corpus])
        assert first.chunks_embedded > 0 and not first.rejected
        assert assistant.index([corpus]).chunks_embedded == 0  # unchanged: nothing embedded
        retriever = HybridRetriever(assistant.store(), assistant.embedder, settings)
        results[name] = [[p.chunk_id for p in retriever.retrieve(q)] for q in questions]
        results[name].append([p.chunk_id for p in retriever.retrieve("bridge", filters=Filters(since="2100-01-01"))])
        assert assistant.store().check() == []
    assert results["milvus"] == results["faiss"]
    assert results["faiss"][-1] == []


@pytest.mark.slow
def test_update_and_sync_delete_on_milvus(tmp_path: Path, corpus: Path):
    settings = Settings(index_dir=tmp_path / "index", vector_uri=lite_uri(tmp_path), backend="extractive")
    assistant = Assistant(settings)
    assistant.index([corpus])
    note = corpus / "harbor-bridge.txt"
    note.write_text(note.read_text() + "\n\nThe toll was dropped in March after a council vote.")
    report = assistant.index([corpus])
    assert len(report.updated) == 1 and report.chunks_embedded > 0
    (corpus / "wildfire.md").unlink()
    report = assistant.index([corpus], sync=True)
    assert report.removed and report.chunks_embedded == 0
    store = assistant.store()
    assert store.check() == []
    passages = HybridRetriever(store, assistant.embedder, settings).retrieve("Why was the toll dropped?")
    assert "council vote" in passages[0].text
