"""Stage 4: the persisted index. SQLite holds articles, chunks, their vectors, file stamps and the generation; a
VectorIndex (FAISS files by default, or Milvus) searches the vectors, an in-memory BM25 index (qa/store/bm25_index.py)
the words. Nothing is unpickled.

Layout of the index folder:
    qa.sqlite             articles, chunks (their text as a span of the article's; int8 vectors and 4-bit sentence
                          vectors: qa/store/codec.py), files, dense_removed and sparse_removed (the FAISS and BM25
                          change logs), meta(generation, dim, the checksums of the vector and BM25 files);
                          checkpointed after every commit, so the WAL stays small
    index.lock            held by the one writer
    bm25-<gen>.idx        the BM25 base (qa/store/bm25_file.py)
    (the vector index's own files, e.g. faiss-<gen>.index)

A new qa.sqlite is made whole under a temporary name and linked into place; an existing one that is empty or
misses one of its tables is reported as damaged and never re-created over.

A commit runs in one SQLite write transaction: rows change, the vector and BM25 indexes stage the next generation
where readers of the current one do not see it, then SQLite commits the new generation number. A crash before that
commit leaves the current generation current and intact. Readers run each query in one SQLite read transaction
and search the vectors of the generation that transaction sees, so an answer never mixes two versions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from qa.schema import Passage
from qa.store.base import (
    DenseSearch,
    FileStamp,
    Filters,
    IndexCorrupt,
    IndexLocked,
    IndexMissing,
    StoreError,
    Upsert,
    VectorChange,
    VectorIndex,
)
from qa.store.bm25_index import Bm25Index, Bm25Options, Bm25Search
from qa.store.codec import decode_sentences, decode_vector
from qa.store.rows import delete_articles, insert
from qa.store.sql import (
    CHUNK_TEXT,
    DB_NAME,
    ISO_DATE_GLOB,
    LOCK_NAME,
    check_not_empty,
    checkpoint,
    connect,
    create_database,
    opening,
    prepare,
    read_meta,
    truncate_wal,
)
from qa.stories import store as stories


class StoreView:
    """One consistent snapshot of the index for the length of a query."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        vectors: DenseSearch,
        words: Bm25Search,
        generation: int,
        dim: int,
        newest: str | None = None,
    ):
        self.conn = conn
        self._vectors = vectors
        self._words = words
        self.generation = generation
        self.dim = dim
        self.newest = newest  # the latest dated article's `published`; None: not known

    def effective(self, filters: Filters) -> Filters:
        """The filters without an `as_of` that excludes nothing: the web chat asks every question as of today,
        and over an index of past news no article is dated after it, so the search takes the unfiltered path
        (at 1M chunks the filtered one cost ~8 ms more a question)."""
        if filters.as_of and self.newest is not None and self.newest <= filters.as_of:
            return dataclasses.replace(filters, as_of="")
        return filters

    def dense(self, vector: np.ndarray, k: int, filters: Filters = Filters()) -> list[tuple[int, float]]:
        if not self.generation:
            return []
        return self._vectors.search(vector, k, self.effective(filters))

    def neighbours(self, vectors: np.ndarray, k: int) -> list[list[int]]:
        """The ids near each vector, in one batched search (see DenseSearch.neighbours)."""
        return self._vectors.neighbours(vectors, k) if self.generation else [[] for _ in vectors]

    def dense_ids(self) -> set[int]:
        """Every chunk id the vector index holds (for the integrity check)."""
        return self._vectors.ids() if self.generation else set()

    def sparse(self, text: str, k: int, filters: Filters = Filters()) -> list[tuple[int, float]]:
        """BM25 (FTS5's bm25() over title and text, k1 1.2, b 0.75) of the content words: (chunk id, score)."""
        if not self.generation:
            return []
        return self._words.search(text, k, self.effective(filters))

    def sparse_ids(self) -> set[int]:
        """Every chunk id the BM25 index holds (for the integrity check)."""
        return self._words.ids() if self.generation else set()

    def passages(self, ids: Sequence[int]) -> dict[int, tuple[Passage, np.ndarray]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f"SELECT c.id, c.chunk_id, c.article_id, c.start, c.end, {CHUNK_TEXT}, c.sentences, c.vector, "
            "c.sentence_vectors, a.title, a.source, a.url, a.published "
            f"FROM chunks c JOIN articles a ON a.id = c.article_id WHERE c.id IN ({marks})",
            list(ids),
        ).fetchall()
        out = {}
        for rid, cid, aid, start, end, text, sentences, vector, sentence_vectors, title, source, url, published in rows:
            try:  # the rows are data read back from disk: a damaged one is an error, never code
                passage = Passage(
                    chunk_id=cid,
                    article_id=aid,
                    title=title or "",
                    source=source or "",
                    url=url or "",
                    published=published or "",
                    text=text,
                    start=start,
                    end=end,
                    sentences=tuple(tuple(s) for s in json.loads(sentences)),
                )
                vec = decode_vector(vector, self.dim)
                if sentence_vectors is not None:
                    passage.sentence_vectors = decode_sentences(sentence_vectors, len(passage.sentences), vec.size)
            except (ValueError, TypeError) as exc:
                raise IndexCorrupt(
                    f"chunk {cid!r} of the index is damaged ({exc}); delete the index folder and re-index"
                ) from None
            out[rid] = (passage, vec)
        return out


class SQLiteStore:
    """Records, BM25, file stamps, generations, the writer lock and the commit protocol; the dense search is
    delegated to `vectors` (see the module docstring for the on-disk protocol)."""

    def __init__(self, path: Path | str, vectors: VectorIndex, create: bool = False, bm25: Bm25Options | None = None):
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        with opening(self.path):
            if not self.db_path.exists():
                if not create:
                    raise IndexMissing(f"no index at {self.path}/: build one first with `qa index PATH...`")
                self.path.mkdir(parents=True, exist_ok=True)
                create_database(self.db_path)
            check_not_empty(self.db_path)
            self._local = threading.local()
            self.vectors = vectors
            self.words = Bm25Index(self.path, bm25)
            self._newest: tuple[int, str | None] | None = None  # (generation, its newest dated article)
            self.story_seconds = 0.0  # time spent placing articles in copy groups and stories (bench/stories.py)
            prepare(self.connection(), self.path)
        vectors.attach(self)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.db_path)
        return conn

    @contextlib.contextmanager
    def _damage_check(self) -> Iterator[None]:
        """SQLite's "malformed" or "not a database" (a truncated or overwritten file) as a clear IndexCorrupt."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
                raise
            raise IndexCorrupt(f"index at {self.path}/ is damaged ({exc}); delete the folder and re-index") from None

    # -- writing -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def write_lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Keep writers apart across processes; a second indexer waits up to `timeout` then fails clearly."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path / LOCK_NAME))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise IndexLocked(
                f"another indexer is writing {self.path}/ (waited {timeout:.0f}s); try again when it finishes"
            ) from None
        try:
            yield
            maintain = getattr(self.vectors, "maintain", None)
            if maintain is not None:  # e.g. fold the FAISS change log into a new base file
                maintain()
            self.words.maintain(self.connection())
            self._backfill_stories()
        finally:
            truncate_wal(self.connection())
            lock.release()

    def _backfill_stories(self) -> None:
        """Copy groups and stories for an index written before they existed (once, from the stored vectors)."""
        conn = self.connection()
        meta = read_meta(conn)
        if meta.get(stories.BACKFILL_DONE):
            return
        from tqdm import tqdm

        total = stories.missing_count(conn)
        dim, current = int(meta.get("dim", "0") or 0), int(meta.get("generation", "0"))
        with tqdm(total=total, disable=None if total else True, desc="grouping stories", unit="article") as bar:
            while True:  # one transaction per batch: a stopped run keeps what it did
                conn.execute("BEGIN IMMEDIATE")
                try:
                    done = stories.backfill(conn, self.vectors.searcher(conn, meta) if current else None, dim)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                bar.update(done)
                if not done:
                    return

    def article_hashes(self) -> dict[str, tuple[str, str]]:
        with self._damage_check():
            rows = self.connection().execute("SELECT id, content_hash, origin FROM articles").fetchall()
        return {r[0]: (r[1], r[2] or "") for r in rows}

    def known_articles(
        self, ids: Iterable[str] = (), origins: Iterable[str] = (), hashes: Iterable[str] = ()
    ) -> dict[str, tuple[str, str]]:
        """article_hashes() of the articles among `ids`, from one of `origins` or with one of `hashes`: what a run
        reading those must diff against, found through the tables' indexes, so adding one article to a large
        index does not read every article's row (O(change))."""
        query = " UNION ".join(
            f"SELECT id, content_hash, origin FROM articles WHERE {column} IN (SELECT value FROM json_each(?{n}))"
            for n, column in ((1, "id"), (2, "origin"), (3, "content_hash"))
        )
        params = tuple(json.dumps(sorted(set(values))) for values in (ids, origins, hashes))
        with self._damage_check():
            rows = self.connection().execute(query, params).fetchall()
        return {r[0]: (r[1], r[2] or "") for r in rows}

    def file_stamps(self, paths: Iterable[str] | None = None) -> dict[str, FileStamp]:
        """Every file's stamp, or those of `paths` only (by the primary key: O(paths))."""
        query, params = "SELECT path, size, mtime_ns, articles FROM files", ()
        if paths is not None:
            query, params = query + " WHERE path IN (SELECT value FROM json_each(?))", (json.dumps(sorted(paths)),)
        with self._damage_check():
            rows = self.connection().execute(query, params).fetchall()
        return {r[0]: FileStamp(r[1], r[2], tuple(json.loads(r[3]))) for r in rows}

    def commit(
        self,
        upserts: Sequence[Upsert],
        deletes: Sequence[str],
        files: dict[str, FileStamp | None],
        model: str,
    ) -> int:
        """Apply one batch of changes atomically; returns the new generation. Call under write_lock()."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            meta = read_meta(conn)
            generation = int(meta.get("generation", "0"))
            dims = {u.vectors.shape[1] for u in upserts if len(u.vectors)}
            if len(dims) > 1 or (meta.get("dim") and dims and int(meta["dim"]) not in dims):
                raise StoreError(
                    f"index at {self.path}/ holds {meta.get('dim')}-d vectors from {meta.get('embed_model')}; "
                    f"this run made {sorted(dims)}-d vectors with {model}: use the same model or a new --index"
                )
            # The neighbours a new article's story is looked for among: the index as it was before this commit.
            dense = self.vectors.searcher(conn, meta) if upserts and generation else None
            write = self.vectors.begin(conn, meta)
            words = self.words.begin(conn, meta)
            stale = [u.article.id for u in upserts] + list(deletes)
            removed_ids = delete_articles(conn, stale)
            added, new_vectors = insert(conn, upserts)
            new_ids = [i for i, _, _ in added]
            started = time.perf_counter()
            stories.assign(conn, dense, filter(None, (stories.article_row(u.article, u.vectors) for u in upserts)))
            self.story_seconds += time.perf_counter() - started
            for path, stamp in files.items():
                if stamp is None:
                    conn.execute("DELETE FROM files WHERE path = ?", (path,))
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                        (path, stamp.size, stamp.mtime_ns, json.dumps(list(stamp.article_ids))),
                    )
            dim = next(iter(dims)) if dims else int(meta.get("dim", "0") or 0)
            updates = {"updated_at": str(time.time())}
            changed = bool(removed_ids or new_ids)  # only a change of vectors makes a new generation
            if changed:
                generation += 1
                updates["generation"] = str(generation)
                updates |= write.stage(conn, VectorChange(generation, dim, removed_ids, new_ids, new_vectors))
                updates |= words.stage(conn, generation, removed_ids, added)
            if dim:
                updates |= {"dim": str(dim), "embed_model": meta.get("embed_model") or model}
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(updates.items()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if changed:
            write.committed()
            words.committed()
        checkpoint(conn)
        return generation

    # -- reading -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[StoreView]:
        """A consistent snapshot for one query (SQLite read transaction + that generation's vectors)."""
        conn = self.connection()
        with self._damage_check():
            for attempt in range(5):
                conn.execute("BEGIN")
                try:
                    meta = read_meta(conn)
                    generation = int(meta.get("generation", "0"))
                    view = StoreView(
                        conn,
                        self.vectors.searcher(conn, meta),
                        self.words.searcher(conn, meta),
                        generation,
                        int(meta.get("dim", "0") or 0),
                        self._newest_dated(conn, meta, generation),
                    )
                except FileNotFoundError:  # a writer pruned the vector file this snapshot wanted: look again
                    conn.execute("ROLLBACK")
                    if attempt == 4:
                        raise
                    continue
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                try:
                    yield view
                finally:
                    conn.execute("COMMIT")
                return

    def _newest_dated(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int) -> str | None:
        """The latest ISO `published` of the generation's articles, read once per generation from the story rows'
        index ("" when none is dated); None while older indexes still lack story rows (then filters stay)."""
        cached = self._newest
        if cached is not None and cached[0] == generation:
            return cached[1]
        newest = None
        if meta.get(stories.BACKFILL_DONE):
            row = conn.execute(
                "SELECT published FROM story_articles WHERE published GLOB ? ORDER BY published DESC LIMIT 1",
                (ISO_DATE_GLOB,),
            ).fetchone()
            newest = row[0] if row else ""
        self._newest = (generation, newest)
        return newest

    def generation(self) -> int:
        row = self.connection().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def stats(self) -> dict:
        with self._damage_check():
            return self._stats()

    def _stats(self) -> dict:
        conn = self.connection()
        meta = read_meta(conn)
        articles, newest = conn.execute("SELECT COUNT(*), MAX(NULLIF(published, '')) FROM articles").fetchone()
        chunks = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        recent = conn.execute(
            "SELECT published, title FROM articles WHERE published != '' ORDER BY published DESC, id LIMIT 3"
        ).fetchall()
        size = 0
        for p in self.path.iterdir():
            with contextlib.suppress(OSError):  # a writer may replace or prune a file meanwhile
                size += p.stat().st_size if p.is_file() else 0
        updated = float(meta.get("updated_at", "0") or 0)
        extra = self.vectors.stats()
        words = self.words.latest()
        if words is not None:
            extra["bm25"] = f"in memory, base of generation {words.base_generation} + {words.log_rows} logged changes"
        return {
            "index": str(self.path),
            "articles": articles,
            "chunks": chunks,
            "bytes": size + extra.pop("bytes", 0),
            "embed_model": meta.get("embed_model", ""),
            "dim": int(meta.get("dim", "0") or 0),
            "generation": int(meta.get("generation", "0")),
            "updated_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(updated)) if updated else "",
            "newest_article": newest or "",
            "newest_articles": [f"{published}  {title}" for published, title in recent],
        } | extra

    def check(self) -> list[str]:
        """Integrity check: vector ids, chunk rows, BM25 postings and articles all agree. Returns the problems."""
        problems = []
        with self.read() as view:
            conn = view.conn
            with self._damage_check():  # every page, also of tables no query below reads (e.g. story_bands)
                verdict = conn.execute("PRAGMA quick_check(1)").fetchone()
            if verdict and verdict[0] != "ok":
                raise IndexCorrupt(f"index at {self.path}/ is damaged ({verdict[0]}); delete the folder and re-index")
            chunk_ids = {r[0] for r in conn.execute("SELECT id FROM chunks")}
            sparse_ids = view.sparse_ids()  # what the BM25 index of this generation holds
            if chunk_ids != sparse_ids:
                problems.append(f"{len(chunk_ids ^ sparse_ids)} chunks differ between chunks and the BM25 index")
            dense_ids = view.dense_ids()
            if dense_ids != chunk_ids:
                problems.append(f"{len(dense_ids ^ chunk_ids)} chunks differ between the vectors and the chunk table")
            orphans = conn.execute(
                "SELECT COUNT(*) FROM chunks WHERE article_id NOT IN (SELECT id FROM articles)"
            ).fetchone()[0]
            if orphans:
                problems.append(f"{orphans} chunks belong to no article")
            story_ids = {r[0] for r in conn.execute("SELECT article_id FROM story_articles")}
            complete = conn.execute("SELECT 1 FROM meta WHERE key = ?", (stories.BACKFILL_DONE,)).fetchone()
            with_chunks = {r[0] for r in conn.execute("SELECT DISTINCT article_id FROM chunks")}
            if complete and with_chunks - story_ids:
                problems.append(f"{len(with_chunks - story_ids)} articles are in no story")
        return problems
