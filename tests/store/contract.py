"""Contract tests every VectorStore backend must pass. A backend's test module subclasses StoreContract and
provides a `make_store(path)` fixture. Vectors here are crafted unit vectors: the tests are about the store's
bookkeeping (add, update, delete, order, filters, persistence), not about embedding quality."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from qa.indexing.chunk import chunk_article
from qa.sources.ingest import make_article
from qa.store import FileStamp, Filters, IndexLocked, StoreError, Upsert

DIM = 16


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v


def article(aid: str, text: str, source: str = "wire", published: str = "", url: str = ""):
    a = make_article(
        title=f"Title {aid}",
        text=text,
        source=source,
        origin="",
        key=aid,
        article_id=aid,
        published=published,
        url=url,
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


def sparse_ids(store, text: str, k: int = 10, filters: Filters = Filters()) -> list[str]:
    with store.read() as view:
        hits = view.sparse(text, k, filters)
        records = view.passages([rid for rid, _ in hits])
        return [records[rid][0].article_id for rid, _ in hits]


def _change_bm25(store, removed: list[int], added: list) -> None:
    """The loaded BM25 index of the current generation changed behind the store's back (its file is not)."""
    words, generation = store.words, store.generation()
    words._states[generation] = words._states[generation].advance(generation, removed, added)


def _lose_bm25_chunk(store) -> None:
    _change_bm25(store, [store.connection().execute("SELECT MIN(id) FROM chunks").fetchone()[0]], [])


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
            assert [round(score, 2) for _, score in view.dense(unit(0), 3)] == [0.9, 0.6, 0.2]  # int8 vectors
            assert len(view.dense(unit(0), 2)) == 2

    def test_batched_neighbours_are_the_dense_hits_of_each_vector_without_deleted_chunks(self, store):
        for i in range(6):
            upsert(store, f"a{i}", f"Report number {i} on the harbour.", axis=i)
        with store.read() as view:
            gone = {rid for (rid,) in view.conn.execute("SELECT id FROM chunks WHERE article_id = 'a2'")}
        store.commit([], ["a2"], {}, "test-model")
        queries = np.vstack([unit(i) * 0.8 + unit((i + 1) % 6) * 0.5 + unit((i + 2) % 6) * 0.3 for i in range(6)])
        with store.read() as view:
            batched = view.neighbours(queries, 2)
            one_by_one = [[rid for rid, _ in view.dense(q, 2)] for q in queries]
        assert batched == one_by_one
        assert gone and all(len(ids) == 2 for ids in batched) and not gone & {i for ids in batched for i in ids}

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

    def test_known_articles_finds_by_id_origin_and_text_what_article_hashes_holds(self, store):
        """The indexer diffs a run against these alone: a lookup that missed one would re-add a duplicate or
        leave a deleted article behind."""
        rows = []
        for aid, origin, text in (
            ("a", "/corpus/one.jsonl", "The harbour bridge opened."),
            ("b", "/corpus/one.jsonl", "The wildfire spread."),
            ("c", "/corpus/two.txt", "The mayor resigned."),
            ("d", "", "A feed entry about the port."),
        ):
            a = make_article(title=aid, text=text, source="wire", origin=origin, key=aid, article_id=aid)
            chunks = chunk_article(a, chunk_chars=200, overlap_chars=0)
            rows.append(Upsert(a, chunks, np.vstack([unit(0)] * len(chunks))))
        store.commit(rows, [], {}, "test-model")
        every = store.article_hashes()
        assert store.known_articles() == {}
        assert store.known_articles(ids=["d", "nope"]) == {"d": every["d"]}
        assert store.known_articles(origins=["/corpus/one.jsonl"]) == {k: every[k] for k in "ab"}
        assert store.known_articles(hashes=[every["c"][0], "0" * 64]) == {"c": every["c"]}
        both = store.known_articles(ids=["a"], origins=["/corpus/one.jsonl", "/corpus/two.txt"], hashes=[every["d"][0]])
        assert both == every
        store.commit([], ["b"], {}, "test-model")
        assert store.known_articles(origins=["/corpus/one.jsonl"]) == {"a": every["a"]}

    # -- file stamps ----------------------------------------------------------------------------------------
    def test_file_stamps_round_trip_are_removed_by_none_and_survive_reopening(self, store, make_store):
        a, chunks = article("a", "The harbour bridge opened to traffic.")
        stamps = {
            "/corpus/a.txt": FileStamp(size=123, mtime_ns=1_700_000_000_123_456_789, article_ids=("a",)),
            "/corpus/wire.jsonl": FileStamp(size=9, mtime_ns=1, article_ids=("w1", "w2", "w3")),
            "/corpus/empty.json": FileStamp(size=0, mtime_ns=0, article_ids=()),  # every record was refused
        }
        store.commit([Upsert(a, chunks, np.vstack([unit(0)] * len(chunks)))], [], stamps, "test-model")
        assert store.file_stamps() == stamps
        assert store.file_stamps(["/corpus/a.txt", "/corpus/gone.txt"]) == {"/corpus/a.txt": stamps["/corpus/a.txt"]}
        assert store.file_stamps([]) == {}
        generation = store.generation()
        # A commit of stamps alone changes no vectors: no new generation, and only the stamps named change.
        moved = FileStamp(size=124, mtime_ns=1_700_000_000_999_999_999, article_ids=("a",))
        store.commit([], [], {"/corpus/a.txt": moved, "/corpus/wire.jsonl": None}, "test-model")
        expected = {"/corpus/a.txt": moved, "/corpus/empty.json": stamps["/corpus/empty.json"]}
        assert store.file_stamps() == expected and store.generation() == generation
        store.commit([], [], {"/corpus/never-stamped.txt": None}, "test-model")  # removing an unknown path is fine
        reopened = make_store(store.path)
        assert reopened.file_stamps() == expected
        reopened.commit([], [], {"/corpus/empty.json": None}, "test-model")
        assert make_store(store.path).file_stamps() == {"/corpus/a.txt": moved}
        assert dense_ids(reopened, 0) == ["a"] and reopened.check() == []

    # -- the writer lock ------------------------------------------------------------------------------------
    def test_a_second_writer_on_another_thread_is_refused_while_the_first_holds_the_lock(self, store, make_store):
        other = make_store(store.path)  # another store object for the same folder, as a second indexer has
        outcome: list[object] = []

        def second_writer(timeout: float) -> None:
            started = time.monotonic()
            try:
                with other.write_lock(timeout=timeout):
                    outcome.append(("acquired", time.monotonic() - started))
            except IndexLocked as exc:
                outcome.append((exc, time.monotonic() - started))

        def run_second_writer(timeout: float) -> object:
            outcome.clear()
            thread = threading.Thread(target=second_writer, args=(timeout,))
            thread.start()
            thread.join(30)
            assert not thread.is_alive()
            [result] = outcome
            return result

        with store.write_lock():
            error, waited = run_second_writer(0.2)
            assert isinstance(error, IndexLocked) and "another indexer" in str(error)
            assert waited >= 0.15  # it waited for the lock, it did not give up at once
        assert run_second_writer(0.2)[0] == "acquired"  # released: the next writer gets it

        # A writer that is waiting gets the lock as soon as the first lets go, within its timeout.
        with store.write_lock():
            thread = threading.Thread(target=second_writer, args=(10.0,))
            outcome.clear()
            thread.start()
            time.sleep(0.3)
            assert outcome == []  # still waiting
        thread.join(30)
        [(result, waited)] = outcome
        assert result == "acquired" and 0.2 <= waited < 10

        # An error inside the locked block releases the lock too.
        with pytest.raises(RuntimeError, match="indexing failed"), store.write_lock():
            raise RuntimeError("indexing failed")
        assert run_second_writer(0.2)[0] == "acquired"

    # -- dimension mismatch ---------------------------------------------------------------------------------
    def test_vectors_of_another_dimension_are_refused_and_leave_the_index_as_it_was(self, store):
        upsert(store, "a", "The harbour bridge opened to traffic.", axis=0)
        before = (store.generation(), store.article_hashes(), store.file_stamps(), store.stats()["chunks"])
        b, chunks = article("b", "The wildfire spread toward the valley.")
        small = np.zeros((len(chunks), 8), dtype=np.float32)
        small[:, 0] = 1.0
        stamp = {"/corpus/b.txt": FileStamp(1, 1, ("b",))}
        with pytest.raises(StoreError, match=r"16-d") as raised:
            store.commit([Upsert(b, chunks, small)], ["a"], stamp, "other-model")
        assert type(raised.value) is StoreError  # not IndexCorrupt: the index is fine, the run is not
        # Two dimensions within one commit are refused as well.
        c, c_chunks = article("c", "The museum reopened its doors.")
        mixed = [Upsert(b, chunks, small), Upsert(c, c_chunks, np.vstack([unit(2)] * len(c_chunks)))]
        with pytest.raises(StoreError, match="8, 16|16, 8|same model"):
            store.commit(mixed, [], {}, "test-model")
        after = (store.generation(), store.article_hashes(), store.file_stamps(), store.stats()["chunks"])
        assert after == before and store.stats()["dim"] == DIM
        assert dense_ids(store, 0) == ["a"] and sparse_ids(store, "harbour") == ["a"]
        assert sparse_ids(store, "wildfire") == [] and store.check() == []
        upsert(store, "b", "The wildfire spread toward the valley.", axis=1)  # the right size still goes in
        assert dense_ids(store, 1)[0] == "b" and store.check() == []

    # -- filtered BM25 --------------------------------------------------------------------------------------
    FILTER_CASES = [
        (Filters(), {"harbour", "valley", "undated", "wire", "late"}),
        (Filters(source="VALLEY"), {"valley", "undated", "wire"}),  # any case; "wire" matches by its url
        (Filters(source="harbour times"), {"harbour"}),
        (Filters(source="valley.example/ferries"), {"wire"}),
        (Filters(source="nowhere"), set()),
        (Filters(since="2024-02-01"), {"valley", "wire", "late"}),  # no date: never "since"
        (Filters(until="2024-02-01"), {"harbour"}),  # nor "until"
        (Filters(since="2024-02-01", until="2024-03-01"), {"valley", "wire"}),  # bounds include the day
        (Filters(source="valley", since="2024-03-02"), set()),
        (Filters(source="valley", until="2024-02-20"), {"wire"}),
        (Filters(source="news", until="2024-03-01"), {"valley"}),
    ]

    def _filter_corpus(self, store) -> None:
        rows = [
            ("harbour", "Harbour Times", "", "2024-01-05"),
            ("valley", "Valley News", "https://valley.example/news/1", "2024-03-01"),
            ("undated", "Valley Post", "", ""),
            ("wire", "wire", "https://VALLEY.example/ferries", "2024-02-15"),
            ("late", "City News", "", "2024-06-30"),
        ]
        for aid, source, url, published in rows:
            a, chunks = article(aid, f"Ferries ran on schedule for {aid} readers.", source, published, url)
            store.commit([Upsert(a, chunks, np.vstack([unit(0)] * len(chunks)))], [], {}, "test-model")

    def test_bm25_applies_source_and_date_filters_as_dense_search_does(self, store):
        self._filter_corpus(store)
        for filters, expected in self.FILTER_CASES:
            sparse = sparse_ids(store, "ferries schedule", filters=filters)
            dense = dense_ids(store, 0, filters=filters)
            assert set(sparse) == expected, filters
            assert set(dense) == expected, filters
            assert len(sparse) == len(set(sparse)) and len(dense) == len(set(dense))
        # k still bounds a filtered list
        assert len(sparse_ids(store, "ferries", k=1, filters=Filters(source="valley"))) == 1

    def test_a_source_filter_ignores_the_case_of_non_ascii_letters(self, store):
        upsert(store, "e", "Ferries ran on schedule in Paris.", axis=0, source="Élysée Wire")
        filters = Filters(source="élysée")
        assert dense_ids(store, 0, filters=filters) == ["e"]
        assert sparse_ids(store, "ferries", filters=filters) == ["e"]

    # -- the integrity check finds real faults --------------------------------------------------------------
    FAULTS = {
        # SQL run behind the store's back (or a chunk lost from the loaded BM25 index); the problems check() must
        # then report (one message each)
        "bm25 row missing": (_lose_bm25_chunk, ["BM25"]),
        "chunk row missing": ("DELETE FROM chunks WHERE id = (SELECT MIN(id) FROM chunks)", ["BM25", "vectors"]),
        "article row missing": ("DELETE FROM articles WHERE id = 'b'", ["belong to no article"]),
        "chunk the vectors never got": (
            "INSERT INTO chunks (chunk_id, article_id, ordinal, start, end, text, sentences, vector) "
            "SELECT 'b:99', article_id, 99, start, end, text, sentences, vector FROM chunks WHERE article_id = 'b'",
            ["vectors"],
        ),
    }

    @pytest.mark.parametrize("fault", list(FAULTS))
    def test_integrity_check_reports_tables_that_disagree(self, store, fault: str):
        upsert(store, "a", "Text about ferries.", axis=0)
        upsert(store, "b", "Text about trams.", axis=1)
        assert store.check() == []
        sql, expected = self.FAULTS[fault]
        conn = store.connection()
        if callable(sql):
            sql(store)
        else:
            conn.execute(sql)
        if fault == "chunk the vectors never got":  # with its BM25 postings, so only the vector side lacks it
            [new_id] = [r[0] for r in conn.execute("SELECT id FROM chunks WHERE chunk_id = 'b:99'")]
            _change_bm25(store, [], [(new_id, Counter(trams=1), 1)])
        problems = store.check()
        assert len(problems) == len(expected), problems
        assert all(any(word in p for p in problems) for word in expected), problems
