"""The default VectorIndex: one FAISS file per generation in the index folder (exact inner product).

A commit clones the current index privately, applies the change, writes faiss-<gen+1>.index (temp file, fsync,
rename) and records its sha256 in the same SQLite transaction that makes <gen+1> current. A crash before that
commit leaves <gen> current and its file intact; an orphan file is overwritten next time. A file is loaded only
when its checksum matches, and a missing one is rebuilt from the vectors in SQLite.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import threading
from pathlib import Path

import faiss
import numpy as np

from qa.store.base import Filters, IndexCorrupt, SQLiteStoreLike, VectorChange
from qa.store.sql import filter_sql


class FaissSearch:
    """Dense search of one generation's FAISS index; filters become an id selector from the reader's snapshot."""

    def __init__(self, conn: sqlite3.Connection, index: faiss.Index | None):
        self._conn = conn
        self._index = index

    def search(self, vector: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]]:
        if self._index is None or self._index.ntotal == 0:
            return []
        params = None
        if filters:
            where, args = filter_sql(filters)
            rows = self._conn.execute(
                f"SELECT c.id FROM chunks c JOIN articles a ON a.id = c.article_id WHERE {where}", args
            ).fetchall()
            if not rows:
                return []
            allowed = np.array([r[0] for r in rows], dtype=np.int64)
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, ids = self._index.search(vector.reshape(1, -1).astype(np.float32), k, params=params)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def ids(self) -> set[int]:
        return set() if self._index is None else set(faiss.vector_to_array(self._index.id_map).tolist())


class FaissWrite:
    """One commit's change to a private copy of the index (readers keep searching the shared one)."""

    def __init__(self, owner: FaissIndex, index: faiss.Index | None):
        self._owner = owner
        self._index = index
        self._generation = 0

    def stage(self, conn: sqlite3.Connection, change: VectorChange) -> dict[str, str]:
        index = self._index if self._index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(change.dim))
        if change.removed_ids:
            index.remove_ids(np.array(change.removed_ids, dtype=np.int64))
        if change.new_ids:
            index.add_with_ids(change.new_vectors, np.array(change.new_ids, dtype=np.int64))
        self._index, self._generation = index, change.generation
        return {"faiss_sha256": self._owner.write(index, change.generation)}

    def committed(self) -> None:
        self._owner.serve(self._generation, self._index)


class FaissIndex:
    """FAISS files beside qa.sqlite, one per generation; the current one stays loaded for readers."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._loaded: tuple[int, faiss.Index | None] = (-1, None)

    def attach(self, store: SQLiteStoreLike) -> None:
        """Nothing to check up front: each generation's file is verified when it is first loaded."""

    def _file(self, generation: int) -> Path:
        return self.path / f"faiss-{generation}.index"

    def begin(self, conn: sqlite3.Connection, meta: dict[str, str]) -> FaissWrite:
        generation = int(meta.get("generation", "0"))
        if not generation:
            return FaissWrite(self, None)
        loaded_gen, loaded = self._loaded
        if loaded_gen == generation and loaded is not None:
            return FaissWrite(self, faiss.clone_index(loaded))
        return FaissWrite(self, self._load(conn, meta, generation))

    def searcher(self, conn: sqlite3.Connection, meta: dict[str, str]) -> FaissSearch:
        generation = int(meta.get("generation", "0"))
        loaded_gen, index = self._loaded
        if loaded_gen != generation:
            with self._lock:
                if self._loaded[0] != generation:
                    self._loaded = (generation, self._load(conn, meta, generation) if generation else None)
                index = self._loaded[1]
        return FaissSearch(conn, index)

    def stats(self) -> dict:
        return {}

    # -- files -------------------------------------------------------------------------------------------
    def write(self, index: faiss.Index, generation: int) -> str:
        """Write the next generation's file durably; returns its sha256 (recorded in meta by the commit)."""
        data = faiss.serialize_index(index).tobytes()
        target = self._file(generation)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.path)
        return hashlib.sha256(data).hexdigest()

    def serve(self, generation: int, index: faiss.Index) -> None:
        """After the SQLite commit: readers get the new index; files older than the previous generation go (a
        reader may still be opening that one)."""
        self._loaded = (generation, index)
        for path in self.path.glob("faiss-*.index*"):
            match = re.fullmatch(r"faiss-(\d+)\.index(\.tmp\d+)?", path.name)
            if match and (
                int(match.group(1)) < generation - 1 or (match.group(2) and int(match.group(1)) <= generation)
            ):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _load(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int) -> faiss.Index:
        path = self._file(generation)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return _rebuild_from_vectors(conn, int(meta.get("dim", "0")))
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


def _rebuild_from_vectors(conn: sqlite3.Connection, dim: int) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    rows = conn.execute("SELECT id, vector FROM chunks").fetchall()
    if rows:
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        index.add_with_ids(np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows]), ids)
    return index


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
