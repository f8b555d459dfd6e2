"""Milvus as the VectorIndex of a store: Milvus Lite embedded (vector_uri = a path ending in .db) or a Milvus
standalone/cluster server (vector_uri = http(s)://host:19530); the code is the same for both.

It takes the place of the FAISS files (qa/store/faiss_index.py). SQLite stays the source of truth for everything
else: articles, chunk text and spans, the vectors themselves (int8), BM25, file stamps and the generation. Milvus
holds one row per chunk (the SQLite chunk id, its vector, lower-cased source and url, published date), so the
source/date filters run inside the Milvus search.

Consistency. Milvus shares no transaction with SQLite, so a commit orders its steps to let SQLite decide:
  1. inside the SQLite write transaction: leftovers of an interrupted commit are cleaned up (deletes recorded
     as pending in meta; rows with chunk ids SQLite never committed), then the new chunks go into Milvus;
  2. SQLite commits the new generation, recording the replaced chunks' ids as pending deletes;
  3. those ids are deleted from Milvus and the pending record is cleared.
Readers search Milvus and keep only the hits whose chunk is in their SQLite snapshot. Guarantee: every dense hit
resolves to the text and metadata of one generation, the one the reader's snapshot holds; a crash at any step
leaves that generation or the next fully readable, and the next commit removes what the crash left in Milvus.
A reader that races a commit may miss dense hits for the chunks that commit replaces (BM25 still finds them),
never see a chunk of another version. When SQLite and Milvus disagree on the generation (the folder was indexed
with FAISS meanwhile, or the collection was dropped), the collection is rebuilt from the vectors in SQLite when
the store opens: switching backends costs no re-embedding. Milvus Lite does not fsync each write, so with Lite the
open also compares row counts with SQLite (which does) and rebuilds on a mismatch, e.g. after a power loss.

Milvus Lite opens a .db from one process at a time; several processes (`qa serve` plus `qa index`) need a server.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from qa.store.base import Filters, SQLiteStoreLike, StoreError, VectorChange
from qa.store.codec import decode_vector
from qa.store.sql import read_meta

log = logging.getLogger(__name__)

PENDING = "milvus_pending_delete"  # meta key: chunk ids SQLite dropped that Milvus may still hold
SYNCED = "milvus_generation"  # meta key: the generation the Milvus collection holds
BATCH = 2000  # rows per insert or delete request
MAX_TEXT = 4096  # longest source/url kept for filtering
SEARCH_SLACK = 16  # extra hits fetched, so hits outside the reader's snapshot do not shorten the list
# FLAT: exact inner product, the ranking FAISS gives. On a server with millions of chunks, HNSW is the usual choice.
INDEX_TYPE = "FLAT"
SERVER_SCHEMES = ("http", "https", "tcp")
MAX_RESULTS = 16_384  # Milvus's ceiling on the rows one search or query returns


class MilvusIndex:
    """A Milvus collection as the store's VectorIndex (SQLite keeps text, metadata, BM25 and the vectors too)."""

    def __init__(self, uri: str, create: bool = False):
        self.uri = uri
        self._lite = urlsplit(uri).scheme not in SERVER_SCHEMES
        self._client = _connect(uri, create)
        self._store: SQLiteStoreLike | None = None
        self.collection = ""

    def attach(self, store: SQLiteStoreLike) -> None:
        """Name the collection in meta (once), then bring it in sync with SQLite (see the module docstring)."""
        self._store = store
        conn = store.connection()
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('milvus_collection', ?)", (f"qa_{uuid.uuid4().hex}",))
        self.collection = read_meta(conn)["milvus_collection"]
        if self._client.has_collection(self.collection):
            self._client.load_collection(self.collection)  # a reopened collection starts released
        if not self._in_sync(conn):
            with store.write_lock():
                if not self._in_sync(conn):
                    self._rebuild(conn)

    # -- the Milvus collection ---------------------------------------------------------------------------
    def _in_sync(self, conn: sqlite3.Connection) -> bool:
        meta = read_meta(conn)
        generation = int(meta.get("generation", "0"))
        if not generation:
            return True
        if meta.get(SYNCED) != str(generation) or not self._client.has_collection(self.collection):
            return False
        if self._lite:  # Lite does not fsync each write: after a power loss, SQLite (synchronous=FULL) decides
            chunks = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
            expected = chunks + len(json.loads(meta.get(PENDING, "[]")))
            return int(self._client.get_collection_stats(self.collection)["row_count"]) == expected
        return True

    def _rebuild(self, conn: sqlite3.Connection) -> None:
        """Fill a fresh collection from the vectors in SQLite (after a backend switch; nothing is re-embedded)."""
        meta = read_meta(conn)
        log.info("loading the vectors of the index into Milvus collection %s", self.collection)
        if self._client.has_collection(self.collection):
            self._client.drop_collection(self.collection)
        if meta.get("dim"):
            self._create_collection(int(meta["dim"]))
            self._insert_rows(conn.execute(_ROWS_SQL + " ORDER BY c.id"), int(meta["dim"]))
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (SYNCED, meta.get("generation", "0")))
        conn.execute("DELETE FROM meta WHERE key = ?", (PENDING,))

    def _create_collection(self, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for name in ("source", "url", "published"):
            schema.add_field(name, DataType.VARCHAR, max_length=MAX_TEXT)
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type=INDEX_TYPE, metric_type="IP")
        # Strong: a search sees every insert and delete acknowledged before it (a server defaults to Bounded).
        self._client.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")

    def _insert_rows(self, rows: Iterator[tuple], dim: int) -> None:
        """Insert (id, vector bytes, source, url, published) rows. Lite then flushes: it searches rows still in its
        write buffer by a slow path (~200 ms a query at 3k chunks, ~10 ms once flushed); a server needs no help."""
        batch: list[dict[str, Any]] = []
        for rid, vector, source, url, published in rows:
            batch.append(
                {
                    "id": rid,
                    "vector": decode_vector(vector, dim),
                    "source": (source or "").lower()[:MAX_TEXT],
                    "url": (url or "").lower()[:MAX_TEXT],
                    "published": (published or "")[:MAX_TEXT],
                }
            )
            if len(batch) == BATCH:
                self._client.insert(self.collection, batch)
                batch = []
        if batch:
            self._client.insert(self.collection, batch)
        if self._lite:
            self._client.flush(self.collection)

    def delete(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), BATCH):
            self._client.delete(self.collection, ids=list(ids[start : start + BATCH]))

    def search(self, vector: np.ndarray, limit: int, filters: Filters) -> list[tuple[int, float]]:
        hits = self._client.search(
            self.collection,
            data=[np.asarray(vector, dtype=np.float32).reshape(-1).tolist()],
            limit=min(limit, MAX_RESULTS),
            filter=filter_expr(filters),
            output_fields=["id"],
            search_params={"metric_type": "IP"},
        )
        return [(int(h["id"]), float(h["distance"])) for h in hits[0]]

    def vector_ids(self, top: int) -> set[int]:
        """Every chunk id in the collection, asked for in id ranges no larger than one query may return (the last
        range is open: a crashed commit may have left ids above `top`, the highest id SQLite gave out)."""
        if not self._client.has_collection(self.collection):
            return set()
        ids: set[int] = set()
        for low in range(0, top + 1, MAX_RESULTS):
            high = "" if low + MAX_RESULTS > top else f" and id < {low + MAX_RESULTS}"
            rows = self._client.query(
                self.collection, filter=f"id >= {low}{high}", output_fields=["id"], limit=MAX_RESULTS
            )
            ids.update(int(r["id"]) for r in rows)
        return ids

    # -- the commit steps (see the module docstring) --------------------------------------------------------
    def begin(self, conn: sqlite3.Connection, meta: dict[str, str]) -> MilvusWrite:
        """Step 1a: finish the Milvus deletes an interrupted commit left pending (nothing to copy: Milvus is
        changed in place, and readers ignore rows outside their snapshot)."""
        pending = json.loads(meta.get(PENDING, "[]"))
        if pending:
            self.delete(pending)
            conn.execute("DELETE FROM meta WHERE key = ?", (PENDING,))
        return MilvusWrite(self)

    def searcher(self, conn: sqlite3.Connection, meta: dict[str, str]) -> MilvusSearch:
        return MilvusSearch(conn, self)

    def stats(self) -> dict:
        parts = urlsplit(self.uri)
        if not self._lite:
            return {
                "vectors": f"milvus {parts.scheme}://{parts.hostname}:{parts.port or 19530}",  # no credentials
                "collection": self.collection,
            }
        lite = Path(self.uri).expanduser()
        size = sum(p.stat().st_size for p in lite.rglob("*") if p.is_file())
        return {"vectors": f"milvus lite {lite}", "collection": self.collection, "bytes": size}


class MilvusWrite:
    """One commit's Milvus steps 1b and 3."""

    def __init__(self, owner: MilvusIndex):
        self._owner = owner
        self._removed: list[int] = []

    def stage(self, conn: sqlite3.Connection, change: VectorChange) -> dict[str, str]:
        """Step 1b, before the SQLite commit: insert the new chunks. SQLite chunk ids only grow, so any Milvus row
        at or above the first new id was left by a commit that never landed: drop it first."""
        owner = self._owner
        if change.new_ids:
            if not owner._client.has_collection(owner.collection):
                owner._create_collection(change.dim)
            first = min(change.new_ids)
            owner._client.delete(owner.collection, filter=f"id >= {first}")
            owner._insert_rows(conn.execute(_ROWS_SQL + " WHERE c.id >= ? ORDER BY c.id", (first,)), change.dim)
        updates = {SYNCED: str(change.generation)}
        if change.removed_ids:
            updates[PENDING] = json.dumps(change.removed_ids)
        self._removed = change.removed_ids
        return updates

    def committed(self) -> None:
        """Step 3, after the SQLite commit: delete the replaced chunks from Milvus. If Milvus fails now, the
        commit still stands; the ids stay pending for the next commit and readers skip them meanwhile."""
        if not self._removed:
            return
        from pymilvus.exceptions import MilvusException

        try:
            self._owner.delete(self._removed)
        except MilvusException as exc:
            log.warning("Milvus delete failed (%s); retried on the next commit", exc)
            return
        assert self._owner._store is not None
        self._owner._store.connection().execute("DELETE FROM meta WHERE key = ?", (PENDING,))


class MilvusSearch:
    """Dense search that asks Milvus and keeps only the chunks this SQLite snapshot holds."""

    def __init__(self, conn: sqlite3.Connection, owner: MilvusIndex):
        self._conn = conn
        self._owner = owner

    def search(self, vector: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]]:
        hits = self._owner.search(vector, k + SEARCH_SLACK, filters)
        if not hits:
            return []
        marks = ",".join("?" * len(hits))
        known = {r[0] for r in self._conn.execute(f"SELECT id FROM chunks WHERE id IN ({marks})", [i for i, _ in hits])}
        return [(i, s) for i, s in hits if i in known][:k]

    def neighbours(self, vectors: np.ndarray, k: int) -> list[list[int]]:
        return [[i for i, _ in self.search(v, k, Filters())] for v in vectors]

    def ids(self) -> set[int]:
        row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'").fetchone()
        return self._owner.vector_ids(int(row[0]) if row else 0)


_ROWS_SQL = "SELECT c.id, c.vector, a.source, a.url, a.published FROM chunks c JOIN articles a ON a.id = c.article_id"


def filter_expr(filters: Filters) -> str:
    """The Milvus boolean expression for the filters, with the same meaning as `qa.store.sql.filter_sql`."""
    clauses = []
    if filters.source:
        pattern = _literal(_like_pattern(filters.source))
        clauses.append(f"(source like {pattern} or url like {pattern})")
    if filters.since:
        clauses.append(f"published >= {_literal(filters.since)}")
    if filters.until:
        clauses.append(f'published != "" and published <= {_literal(filters.until)}')
    if filters.as_of:  # ISO dates compare as text; undated articles stay (an unreadable date: see sql.filter_sql)
        clauses.append(f'(published == "" or published <= {_literal(filters.as_of)})')
    return " and ".join(clauses)


def _like_pattern(text: str) -> str:
    """`text` anywhere in a lower-cased field, with %, _ and \\ literal, as qa.store.sql.like_pattern means it.
    Milvus reads a backslash as an escape before %, _ or \\ only, and an escaped backslash before a letter as a
    regex class ("\\\\s" does not match "\\s"), so a backslash is doubled only where the next character needs it."""
    text = text.lower()
    out = []
    for i, ch in enumerate(text):
        if ch in "%_":
            out.append("\\" + ch)
        elif ch == "\\":
            out.append("\\\\" if i + 1 == len(text) or text[i + 1] in "%_\\" else "\\")
        else:
            out.append(ch)
    return f"%{''.join(out)}%"


def _literal(value: str) -> str:
    """A quoted, escaped Milvus string literal: user text never becomes expression syntax."""
    return json.dumps(value, ensure_ascii=False)


def _connect(uri: str, create: bool):
    """A MilvusClient for a Milvus Lite file (.db) or a server URL, with errors that say what to do."""
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError:
        raise StoreError("vector_uri needs Milvus: pip install 'news-qa[scale]' (pymilvus, milvus-lite)") from None
    lite = urlsplit(uri).scheme not in SERVER_SCHEMES
    if lite:
        if not uri.endswith(".db"):
            raise StoreError(f"vector_uri {uri!r}: use a path ending in .db (Milvus Lite) or http://host:19530")
        path = Path(uri).expanduser()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        uri = str(path)
    try:
        return MilvusClient(uri=uri)
    except MilvusException as exc:
        hint = " (Milvus Lite opens a file from one process at a time: is another qa running?)" if lite else ""
        raise StoreError(f"cannot open Milvus at {uri}: {exc}{hint}") from None
