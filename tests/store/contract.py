"""Contract tests every VectorStore backend must pass. A backend's test module subclasses StoreContract and
provides a `make_store(path)` fixture. Vectors here are crafted unit vectors: the tests are about the store's
bookkeeping (add, update, delete, order, filters, persistence), not about embedding quality."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from qa.indexing.chunk import chunk_article
from qa.sources.ingest import make_article
from qa.store import Filters, Upsert

DIM = 16


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def article(aid: str, text: str, source: str = "wire", published: str = ""):
    a = make_article(
        title=f"Title {aid}",
        text=text,
        source=source,
        origin="",
        key=aid,
        article_id=aid,
        published=published,
    )
    chunks = chunk_article(a, chunk_chars=200, overlap_chars=0)
    return a, chunks


def upsert(store, aid: str, text: str, axis: int, **kw) -> int:
    a, chunks = article(aid, text, **kw)
    vectors = np.vstack([unit(axis)] * len(chunks))
    return store.commit([Upsert(a, chunks, vectors, sentence_vectors(chunks))], [], {}, "test-model")


def sentence_vectors(chunks) -> list[np.ndarray]:
    """Sentence i of every chunk gets unit(i): the round trip shows which vector belongs to which sentence."""
    return [np.vstack([unit(i) for i in range(len(c.sentences))]) for c in chunks]


def dense_ids(store, axis: int, k: int = 10, filters: Filters = Filters()) -> list[str]:
    with store.read() as view:
        hits = view.dense(unit(axis), k, filters)
        records = view.passages([rid for rid, _ in hits])
        return [records[rid][0].article_id for rid, _ in hits]


def sparse_ids(store, text: str, k: int = 10) -> list[str]:
    with store.read() as view:
        hits = view.sparse(text, k)
        records = view.passages([rid for rid, _ in hits])
        return [records[rid][0].article_id for rid, _ in hits]


class StoreContract:
    @pytest.fixture
    def store(self, make_store, tmp_path: Path):
        return make_store(tmp_path / "store")

    def test_empty_store_answers_nothing(self, store):
        assert dense_ids(store, 0) == [] and sparse_ids(store, "anything") == []
        assert store.stats()["articles"] == 0 and store.stats()["chunks"] == 0

    def test_added_articles_are_found_dense_and_sparse_in_order(self, store):
        upsert(store, "a", "The harbour bridge opened to traffic.", axis=0)
        upsert(store, "b", "The wildfire spread toward the valley.", axis=1)
        assert dense_ids(store, 0)[0] == "a" and dense_ids(store, 1)[0] == "b"
        assert sparse_ids(store, "wildfire valley") == ["b"]
        assert store.article_hashes().keys() == {"a", "b"}

    def test_dense_hits_come_best_first_with_their_scores(self, store):
        for aid, cos in (("far", 0.2), ("near", 0.9), ("mid", 0.6)):
            a, chunks = article(aid, f"Text about {aid}.")
            vector = unit(0) * cos + unit(1) * np.sqrt(1 - cos**2)
            store.commit([Upsert(a, chunks, np.vstack([vector] * len(chunks)))], [], {}, "test-model")
        assert dense_ids(store, 0) == ["near", "mid", "far"]
        with store.read() as view:
            assert [round(score, 4) for _, score in view.dense(unit(0), 3)] == [0.9, 0.6, 0.2]
            assert len(view.dense(unit(0), 2)) == 2

    def test_sentence_vectors_come_back_with_their_passage_in_sentence_order(self, store):
        upsert(store, "a", "The harbour bridge opened. Traffic was light. Tolls start in May.", axis=0)
        a, chunks = article("b", "No sentence vectors were stored for this one.")
        store.commit([Upsert(a, chunks, np.vstack([unit(1)] * len(chunks)))], [], {}, "test-model")
        with store.read() as view:
            by_article = {
                p.article_id: p for p, _ in view.passages([rid for rid, _ in view.dense(unit(0), 5)]).values()
            }
        stored = by_article["a"].sentence_vectors
        assert len(by_article["a"].sentences) == 3
        np.testing.assert_allclose(stored, np.vstack([unit(0), unit(1), unit(2)]), atol=1e-3)
        assert by_article["b"].sentence_vectors is None

    def test_update_replaces_the_old_chunks(self, store):
        upsert(store, "a", "Original text about ferries.", axis=0)
        upsert(store, "a", "Revised text about trams.", axis=2)
        assert sparse_ids(store, "ferries") == [] and sparse_ids(store, "trams") == ["a"]
        assert dense_ids(store, 2) == ["a"] and store.stats()["chunks"] == 1

    def test_delete_removes_everything_of_the_article(self, store):
        upsert(store, "a", "Text about ferries.", axis=0)
        upsert(store, "b", "Text about trams.", axis=1)
        store.commit([], ["a"], {}, "test-model")
        assert dense_ids(store, 0) == ["b"] and sparse_ids(store, "ferries") == []
        assert set(store.article_hashes()) == {"b"}

    def test_filters_by_source_and_date(self, store):
        upsert(store, "a", "Ferries run late.", axis=0, source="Harbour Times", published="2024-01-05")
        upsert(store, "b", "Ferries run early.", axis=0, source="Valley News", published="2024-03-01")
        assert dense_ids(store, 0, filters=Filters(source="valley")) == ["b"]
        assert dense_ids(store, 0, filters=Filters(since="2024-02-01")) == ["b"]
        assert dense_ids(store, 0, filters=Filters(until="2024-02-01")) == ["a"]
        assert dense_ids(store, 0, filters=Filters(source="nowhere")) == []

    def test_integrity_check_passes_after_adds_updates_and_deletes(self, store):
        upsert(store, "a", "Text about ferries.", axis=0)
        upsert(store, "b", "Text about trams.", axis=1)
        upsert(store, "a", "New text about ferries and piers.", axis=2)
        store.commit([], ["b"], {}, "test-model")
        assert store.check() == [] and store.stats()["articles"] == 1

    def test_persists_across_reopening(self, store, make_store):
        upsert(store, "a", "The harbour bridge opened to traffic.", axis=3)
        reopened = make_store(store.path)
        assert dense_ids(reopened, 3) == ["a"] and sparse_ids(reopened, "harbour") == ["a"]

    def test_concurrent_readers_see_whole_snapshots_while_a_writer_commits(self, store):
        upsert(store, "base", "Base article about ports.", axis=0)
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader():
            try:
                while not stop.is_set():
                    with store.read() as view:
                        hits = view.dense(unit(0), 50)
                        records = view.passages([rid for rid, _ in hits])
                        assert set(records) == {rid for rid, _ in hits}  # every hit resolves in its snapshot
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(15):
            upsert(store, f"a{i % 3}", f"Version {i} of an article about ports.", axis=0)
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
