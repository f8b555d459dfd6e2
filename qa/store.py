"""Stage 4: the persisted index. SQLite holds articles, chunks, their vectors and a BM25 (FTS5) index; a FAISS
file per generation holds the dense index. Both change in one atomic step, and nothing is unpickled.

Layout of the index folder:
    qa.sqlite             articles, chunks (+ float32 vectors, float16 sentence vectors), fts, files,
                          meta(generation, checksums)
    faiss-<gen>.index     faiss.serialize_index bytes for that generation, sha256 recorded in meta
    index.lock            held by the one writer

A write builds faiss-<gen+1>.index (temp file, fsync, rename), then commits the SQLite transaction that makes
<gen+1> current. A crash before the commit leaves <gen> current and intact; an orphan file is overwritten next
time. Readers run each query in one SQLite read transaction and use the FAISS file of the generation that
transaction sees, so an answer never mixes two versions of the index.

Other vector backends keep all of the SQLite part (its schema, connections and records: qa/store_sql.py) and
replace only the FAISS files: `open_store()` picks one from settings.vector_uri (qa/milvus_store.py: Milvus Lite
or a Milvus server).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from qa.schema import Passage
from qa.store_sql import (
    DB_NAME,
    LOCK_NAME,
    SCHEMA_VERSION,
    FileStamp,
    Filters,
    IndexCorrupt,
    IndexLocked,
    IndexMissing,
    StoreError,
    Upsert,
    VectorStore,
    connect,
    filter_sql,
    fts_query,
    opening,
    prepare,
    read_meta,
)

if TYPE_CHECKING:
    from qa.settings import Settings

__all__ = [  # the store's errors and records live in qa/store_sql.py and are used from here too
    "DB_NAME",
    "SCHEMA_VERSION",
    "FaissStore",
    "FileStamp",
    "Filters",
    "IndexCorrupt",
    "IndexLocked",
    "IndexMissing",
    "StoreError",
    "StoreView",
    "Upsert",
    "VectorStore",
    "open_store",
]


class StoreView:
    """One consistent snapshot of the index for the length of a query."""

    def __init__(self, conn: sqlite3.Connection, index: faiss.Index | None, generation: int):
        self._conn = conn
        self._index = index
        self.generation = generation

    def _allowed_ids(self, filters: Filters) -> np.ndarray:
        where, args = filter_sql(filters)
        rows = self._conn.execute(
            f"SELECT c.id FROM chunks c JOIN articles a ON a.id = c.article_id WHERE {where}", args
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def dense(self, vector: np.ndarray, k: int, filters: Filters = Filters()) -> list[tuple[int, float]]:
        if self._index is None or self._index.ntotal == 0:
            return []
        params = None
        if filters:
            allowed = self._allowed_ids(filters)
            if allowed.size == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, ids = self._index.search(vector.reshape(1, -1).astype(np.float32), k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def dense_ids(self) -> set[int]:
        """Every chunk id the dense index holds (for the integrity check)."""
        return set() if self._index is None else set(faiss.vector_to_array(self._index.id_map).tolist())

    def sparse(self, text: str, k: int, filters: Filters = Filters()) -> list[tuple[int, float]]:
        query = fts_query(text)
        if not query:
            return []
        where, args = filter_sql(filters)
        rows = self._conn.execute(
            "SELECT f.rowid, bm25(fts) AS s FROM fts f JOIN chunks c ON c.id = f.rowid "
            f"JOIN articles a ON a.id = c.article_id WHERE fts MATCH ? AND {where} ORDER BY s LIMIT ?",
            [query, *args, k],
        ).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]

    def passages(self, ids: Sequence[int]) -> dict[int, tuple[Passage, np.ndarray]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._conn.execute(
            "SELECT c.id, c.chunk_id, c.article_id, c.start, c.end, c.text, c.sentences, c.vector, c.sentence_vectors, "
            "a.title, a.source, a.url, a.published FROM chunks c JOIN articles a ON a.id = c.article_id "
            f"WHERE c.id IN ({marks})",
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
                vec = np.frombuffer(vector, dtype=np.float32)
                if self._index is not None and vec.size != self._index.d:
                    raise ValueError(f"a {vec.size}-d vector in a {self._index.d}-d index")
                if sentence_vectors is not None:
                    rows_ = np.frombuffer(sentence_vectors, dtype=np.float16)
                    if rows_.size != len(passage.sentences) * vec.size:
                        raise ValueError(f"{rows_.size} sentence vector values for {len(passage.sentences)} sentences")
                    passage.sentence_vectors = rows_.reshape(len(passage.sentences), vec.size).astype(np.float32)
            except (ValueError, TypeError) as exc:
                raise IndexCorrupt(
                    f"chunk {cid!r} of the index is damaged ({exc}); delete the index folder and re-index"
                ) from None
            out[rid] = (passage, vec)
        return out


class FaissStore:
    """The embedded default store (see module docstring for the on-disk protocol)."""

    def __init__(self, path: Path | str, create: bool = False):
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        if not self.db_path.exists():
            if not create:
                raise IndexMissing(f"no index at {self.path}/: build one first with `qa index PATH...`")
            self.path.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._load_lock = threading.Lock()
        self._loaded: tuple[int, faiss.Index | None] = (-1, None)
        with opening(self.path):
            prepare(self._conn(), self.path)

    # -- connections -------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.db_path)
        return conn

    _meta = staticmethod(read_meta)

    @contextlib.contextmanager
    def _damage_check(self) -> Iterator[None]:
        """SQLite's "malformed" or "not a database" (a truncated or overwritten file) as a clear IndexCorrupt."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
                raise
            raise IndexCorrupt(f"index at {self.path}/ is damaged ({exc}); delete the folder and re-index") from None

    def _faiss_path(self, generation: int) -> Path:
        return self.path / f"faiss-{generation}.index"

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
        finally:
            lock.release()

    def article_hashes(self) -> dict[str, tuple[str, str]]:
        with self._damage_check():
            rows = self._conn().execute("SELECT id, content_hash, origin FROM articles").fetchall()
        return {r[0]: (r[1], r[2] or "") for r in rows}

    def file_stamps(self) -> dict[str, FileStamp]:
        with self._damage_check():
            rows = self._conn().execute("SELECT path, size, mtime_ns, articles FROM files").fetchall()
        return {r[0]: FileStamp(r[1], r[2], tuple(json.loads(r[3]))) for r in rows}

    def commit(
        self,
        upserts: Sequence[Upsert],
        deletes: Sequence[str],
        files: dict[str, FileStamp | None],
        model: str,
    ) -> int:
        """Apply one batch of changes atomically; returns the new generation. Call under write_lock()."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            meta = self._meta(conn)
            generation = int(meta.get("generation", "0"))
            dims = {u.vectors.shape[1] for u in upserts if len(u.vectors)}
            if len(dims) > 1 or (meta.get("dim") and dims and int(meta["dim"]) not in dims):
                raise StoreError(
                    f"index at {self.path}/ holds {meta.get('dim')}-d vectors from {meta.get('embed_model')}; "
                    f"this run made {sorted(dims)}-d vectors with {model}: use the same model or a new --index"
                )
            index = self._begin_vectors(conn, meta, generation)
            stale = [u.article.id for u in upserts] + list(deletes)
            removed_ids = self._delete_articles(conn, stale)
            new_ids, new_vectors = self._insert(conn, upserts)
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
            if removed_ids or new_ids:  # only a change of vectors makes a new generation
                generation += 1
                updates["generation"] = str(generation)
                written, index = self._stage_vectors(conn, index, dim, removed_ids, new_ids, new_vectors, generation)
                updates |= written
            if dim:
                updates |= {"dim": str(dim), "embed_model": meta.get("embed_model") or model}
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(updates.items()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if removed_ids or new_ids:
            self._vectors_committed(generation, index, removed_ids)
        return generation

    # The dense-index steps of a commit; a backend with another vector index (qa/milvus_store.py) overrides them.
    def _begin_vectors(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int):
        """A private copy of the current FAISS index to change (readers keep searching the shared one)."""
        if not generation:
            return None
        loaded_gen, loaded = self._loaded
        if loaded_gen == generation and loaded is not None:
            return faiss.clone_index(loaded)
        return self._load_index(conn, meta, generation)

    def _stage_vectors(
        self,
        conn: sqlite3.Connection,
        index: faiss.Index | None,
        dim: int,
        removed_ids: list[int],
        new_ids: list[int],
        new_vectors: list[np.ndarray],
        generation: int,
    ) -> tuple[dict[str, str], faiss.Index]:
        """Before the SQLite commit: write the next generation's FAISS file; returns meta updates and the index."""
        if index is None:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if removed_ids:
            index.remove_ids(np.array(removed_ids, dtype=np.int64))
        if new_ids:
            index.add_with_ids(np.vstack(new_vectors), np.array(new_ids, dtype=np.int64))
        return {"faiss_sha256": self._write_index(index, generation)}, index

    def _vectors_committed(self, generation: int, index: faiss.Index, removed_ids: list[int]) -> None:
        """After the SQLite commit: serve the new index, drop old files."""
        self._loaded = (generation, index)
        self._prune(generation)

    def _delete_articles(self, conn: sqlite3.Connection, article_ids: Sequence[str]) -> list[int]:
        removed: list[int] = []
        for aid in article_ids:
            ids = [r[0] for r in conn.execute("SELECT id FROM chunks WHERE article_id = ?", (aid,))]
            removed += ids
            conn.executemany("DELETE FROM fts WHERE rowid = ?", [(i,) for i in ids])
            conn.execute("DELETE FROM chunks WHERE article_id = ?", (aid,))
            conn.execute("DELETE FROM articles WHERE id = ?", (aid,))
        return removed

    def _insert(self, conn: sqlite3.Connection, upserts: Sequence[Upsert]) -> tuple[list[int], list[np.ndarray]]:
        ids: list[int] = []
        vectors: list[np.ndarray] = []
        now = time.time()
        for upsert in upserts:
            a, chunks, vecs = upsert.article, upsert.chunks, upsert.vectors
            per_sentence = [None] * len(chunks) if upsert.sentence_vectors is None else upsert.sentence_vectors
            conn.execute(
                "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (a.id, a.title, a.text, a.source, a.url, a.published, a.content_hash, a.origin, now),
            )
            for chunk, vec, sentence_vecs in zip(chunks, vecs, per_sentence, strict=True):
                vec = np.ascontiguousarray(vec, dtype=np.float32)
                if sentence_vecs is not None and (
                    np.shape(sentence_vecs) != (len(chunk.sentences), vec.size)
                    or not np.all(np.abs(sentence_vecs) <= 1.0001)  # unit vectors (also: no NaN), fit in float16
                ):
                    raise StoreError(f"chunk {chunk.chunk_id}: sentence vectors are not one unit vector a sentence")
                cur = conn.execute(
                    "INSERT INTO chunks (chunk_id, article_id, ordinal, start, end, text, sentences, vector, "
                    "sentence_vectors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        chunk.chunk_id,
                        a.id,
                        chunk.ordinal,
                        chunk.start,
                        chunk.end,
                        chunk.text,
                        json.dumps(chunk.sentences),
                        vec.tobytes(),
                        None if sentence_vecs is None else np.asarray(sentence_vecs, dtype=np.float16).tobytes(),
                    ),
                )
                conn.execute(
                    "INSERT INTO fts (rowid, title, text) VALUES (?, ?, ?)",
                    (cur.lastrowid, a.title, chunk.text),
                )
                ids.append(int(cur.lastrowid))
                vectors.append(vec.reshape(1, -1))
        return ids, vectors

    def _write_index(self, index: faiss.Index, generation: int) -> str:
        data = faiss.serialize_index(index).tobytes()
        target = self._faiss_path(generation)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.path)
        return hashlib.sha256(data).hexdigest()

    def _prune(self, generation: int) -> None:
        """Drop FAISS files older than the previous generation (a reader may still be opening that one)."""
        for path in self.path.glob("faiss-*.index*"):
            match = re.fullmatch(r"faiss-(\d+)\.index(\.tmp\d+)?", path.name)
            if match and (
                int(match.group(1)) < generation - 1 or (match.group(2) and int(match.group(1)) <= generation)
            ):
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- reading -----------------------------------------------------------------------------------------
    def _load_index(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int) -> faiss.Index:
        path = self._faiss_path(generation)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return self._rebuild_from_vectors(conn, int(meta.get("dim", "0")))
        if hashlib.sha256(data).hexdigest() != meta.get("faiss_sha256"):
            raise IndexCorrupt(
                f"{path} does not match the checksum recorded when it was written (changed or damaged); "
                "it was not loaded. Delete the index folder and re-index."
            )
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError:
            index = None
        dim = int(meta.get("dim") or 0)
        if not isinstance(index, faiss.IndexIDMap2) or (dim and index.d != dim):
            raise IndexCorrupt(
                f"{path} matches its recorded checksum but is not the {dim}-d FAISS index this program writes "
                "(the index folder was changed); it was not used. Delete the index folder and re-index."
            )
        return index

    def _rebuild_from_vectors(self, conn: sqlite3.Connection, dim: int) -> faiss.Index:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        rows = conn.execute("SELECT id, vector FROM chunks").fetchall()
        if rows:
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            index.add_with_ids(np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows]), ids)
        return index

    @contextlib.contextmanager
    def read(self) -> Iterator[StoreView]:
        """A consistent snapshot for one query (SQLite read transaction + that generation's FAISS index)."""
        conn = self._conn()
        with self._damage_check():
            for attempt in range(5):
                conn.execute("BEGIN")
                try:
                    meta = self._meta(conn)
                    generation = int(meta.get("generation", "0"))
                    view = self._view(conn, meta, generation)
                except FileNotFoundError:
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

    def _view(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int) -> StoreView:
        return StoreView(conn, self._index_for(conn, meta, generation), generation)

    def _index_for(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int) -> faiss.Index | None:
        loaded_gen, index = self._loaded
        if loaded_gen == generation:
            return index
        with self._load_lock:
            if self._loaded[0] != generation:
                self._loaded = (generation, self._load_index(conn, meta, generation) if generation else None)
            return self._loaded[1]

    def generation(self) -> int:
        row = self._conn().execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def stats(self) -> dict:
        with self._damage_check():
            return self._stats()

    def _stats(self) -> dict:
        conn = self._conn()
        meta = self._meta(conn)
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
        return {
            "index": str(self.path),
            "articles": articles,
            "chunks": chunks,
            "bytes": size,
            "embed_model": meta.get("embed_model", ""),
            "dim": int(meta.get("dim", "0") or 0),
            "generation": int(meta.get("generation", "0")),
            "updated_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(updated)) if updated else "",
            "newest_article": newest or "",
            "newest_articles": [f"{published}  {title}" for published, title in recent],
        }

    def check(self) -> list[str]:
        """Integrity check: FAISS ids, chunk rows, FTS rows and articles all agree. Returns the problems."""
        problems = []
        with self.read() as view:
            conn = view._conn
            chunk_ids = {r[0] for r in conn.execute("SELECT id FROM chunks")}
            fts_ids = {r[0] for r in conn.execute("SELECT rowid FROM fts")}
            if chunk_ids != fts_ids:
                problems.append(f"{len(chunk_ids ^ fts_ids)} chunks differ between chunks and the BM25 index")
            dense_ids = view.dense_ids()
            if dense_ids != chunk_ids:
                problems.append(f"{len(dense_ids ^ chunk_ids)} chunks differ between the vectors and the chunk table")
            orphans = conn.execute(
                "SELECT COUNT(*) FROM chunks WHERE article_id NOT IN (SELECT id FROM articles)"
            ).fetchone()[0]
            if orphans:
                problems.append(f"{orphans} chunks belong to no article")
        return problems


def open_store(settings: Settings, create: bool = False) -> FaissStore:
    """The store settings.vector_uri picks: FAISS files in index_dir (empty, the default) or Milvus."""
    if settings.vector_uri:
        from qa.milvus_store import MilvusStore

        return MilvusStore(settings.index_dir, settings.vector_uri, create=create)
    return FaissStore(settings.index_dir, create=create)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
