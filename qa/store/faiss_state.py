"""The in-memory side of the FAISS vector index (qa/store/faiss_index.py): its options, one generation's
state (a base index plus the change log replayed on it) and the helpers that build, check and read them."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from qa.settings import Settings
from qa.store.base import IndexCorrupt
from qa.store.codec import decode_vector, decode_vectors

EXACT_FILTER_MAX = 50_000  # a filter this narrow is searched exactly, not through the IVF lists
REFINE_EXTRA = 8  # candidates fetched beyond k, then ranked by their exact scores (from SQLite)
POST_FILTER_FACTOR = 4  # a filtered search first looks this many times deeper unfiltered (FaissSearch)
BUILD_BATCH = 20_000  # rows read from SQLite at a time when a base is built from it
KEEP_STATES = 4  # recent generations kept in memory for readers whose snapshot is a little behind


@dataclass(frozen=True)
class FaissOptions:
    """When the base file is rewritten and when it becomes approximate (qa/settings.py, group "vector index")."""

    rewrite_rows: int = Settings.model_fields["vector_rewrite_rows"].default
    compact_fraction: float = Settings.model_fields["vector_compact_fraction"].default
    log_max_rows: int = Settings.model_fields["vector_log_max_rows"].default
    ivf_min_rows: int = Settings.model_fields["vector_ivf_min_rows"].default
    ivf_nprobe: int = Settings.model_fields["vector_ivf_nprobe"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> FaissOptions:
        return cls(
            settings.vector_rewrite_rows,
            settings.vector_compact_fraction,
            settings.vector_log_max_rows,
            settings.vector_ivf_min_rows,
            settings.vector_ivf_nprobe,
        )


class _Delta:
    """Append-only rows (ids, vectors) shared by successive generations; a generation sees the first n."""

    def __init__(self, dim: int, capacity: int = 0):
        self.ids = np.zeros(capacity, dtype=np.int64)
        self.vecs = np.zeros((capacity, dim), dtype=np.float32)
        self.used = 0

    def append(self, n: int, ids: np.ndarray, vecs: np.ndarray) -> tuple[_Delta, int]:
        """Rows [:n] plus these; in place when nobody appended past n yet and there is room, else into a copy."""
        m = len(ids)
        if not m:
            return self, n
        target = self
        if self.used != n or n + m > len(self.ids):
            target = _Delta(self.vecs.shape[1], max(2 * (n + m), 1024))
            target.ids[:n], target.vecs[:n] = self.ids[:n], self.vecs[:n]
        target.ids[n : n + m], target.vecs[n : n + m] = ids, vecs
        target.used = n + m
        return target, n + m


@dataclass(frozen=True)
class _State:
    """The vectors of one generation: base minus `removed`, plus the first `n` rows of `delta`."""

    generation: int
    dim: int
    base: faiss.Index | None
    base_generation: int  # the generation whose file holds `base` (0: none on disk yet)
    durable: bool  # the base is on disk and the log in SQLite covers every commit since
    max_id: int  # every chunk id up to this one was seen by this state (added, or skipped as gone)
    base_max_id: int  # ...and by its base
    delta: _Delta
    n: int
    removed: frozenset[int]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def ivf(self) -> bool:
        return isinstance(self.base, faiss.IndexIVF)

    @property
    def base_rows(self) -> int:
        return 0 if self.base is None else int(self.base.ntotal)

    @property
    def log_rows(self) -> int:
        return self.n + len(self.removed)

    @property
    def rows(self) -> int:
        return self.base_rows + self.n - len(self.removed)

    def advance(self, generation: int, removed: list[int], ids: list[int], vecs: np.ndarray) -> _State:
        """The next generation: O(change), this one stays as it was for its readers."""
        delta, n = self.delta.append(self.n, np.asarray(ids, dtype=np.int64), vecs)
        return _State(
            generation,
            self.dim,
            self.base,
            self.base_generation,
            self.durable,
            max([self.max_id, *ids]),
            self.base_max_id,
            delta,
            n,
            self.removed | frozenset(removed) if removed else self.removed,
        )

    # -- searching ----------------------------------------------------------------------------------------
    def _removed_selector(self) -> faiss.IDSelector | None:
        if not self.removed:
            return None
        if "removed" not in self._cache:
            batch = faiss.IDSelectorBatch(np.fromiter(self.removed, dtype=np.int64, count=len(self.removed)))
            self._cache["removed"] = (faiss.IDSelectorNot(batch), batch)  # the Not keeps a pointer to the batch
        return self._cache["removed"][0]

    def _live_delta(self) -> tuple[np.ndarray, np.ndarray]:
        if "delta" not in self._cache:
            ids, vecs = self.delta.ids[: self.n], self.delta.vecs[: self.n]
            if self.removed and self.n:
                keep = ~np.isin(ids, np.fromiter(self.removed, dtype=np.int64, count=len(self.removed)))
                ids, vecs = ids[keep], vecs[keep]
            self._cache["delta"] = (ids, vecs)
        return self._cache["delta"]

    def search(self, q: np.ndarray, k: int, nprobe: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        hits: list[tuple[int, float]] = []
        if self.base is not None and self.base.ntotal:
            keep: list = []
            sel = self._removed_selector()
            if allowed is not None:
                batch = faiss.IDSelectorBatch(allowed)
                keep.append(batch)
                sel = batch if sel is None else faiss.IDSelectorAnd(batch, sel)
            if self.ivf:
                params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
            else:
                params = faiss.SearchParameters(sel=sel) if sel is not None else None
            scores, ids = _single_threaded(self.base.search, q.reshape(1, -1), k, params=params)
            hits = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        ids, vecs = self._live_delta()
        if len(ids):
            if allowed is not None:
                mask = np.isin(ids, allowed)
                ids, vecs = ids[mask], vecs[mask]
            scores = vecs @ q
            top = np.argsort(-scores)[:k] if len(scores) <= k else np.argpartition(-scores, k)[:k]
            hits += [(int(ids[i]), float(scores[i])) for i in top]
        hits.sort(key=lambda h: -h[1])
        return hits[:k]

    def search_many(self, qs: np.ndarray, k: int, nprobe: int) -> list[list[int]]:
        """Ids near each query, nearest first: one FAISS call on all threads and one matrix product over the
        change log (a search per query costs ~10 ms at 250k vectors, mostly per-call overhead on a busy machine)."""
        found: list[list[tuple[float, int]]] = [[] for _ in range(len(qs))]
        if self.base is not None and self.base.ntotal:
            sel = self._removed_selector()
            if self.ivf:
                params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
            else:
                params = faiss.SearchParameters(sel=sel) if sel is not None else None
            scores, ids = self.base.search(qs, k, params=params)
            for row, (s, i) in enumerate(zip(scores, ids, strict=True)):
                found[row] = [(float(a), int(b)) for a, b in zip(s, i, strict=True) if b >= 0]
        ids, vecs = self._live_delta()
        for at in range(0, len(qs) if len(ids) else 0, 256):  # in blocks: 256 x 50k scores are 51 MB
            scores = qs[at : at + 256] @ vecs.T
            top = np.argsort(-scores, axis=1)[:, :k] if len(ids) <= k else np.argpartition(-scores, k, axis=1)[:, :k]
            for row in range(len(scores)):
                found[at + row] += [(float(scores[row, j]), int(ids[j])) for j in top[row]]
        return [[i for _, i in sorted(hits, reverse=True)[:k]] for hits in found]

    def ids(self) -> set[int]:
        out = set(_base_ids(self.base).tolist()) - self.removed
        return out | set(self._live_delta()[0].tolist())


def _give_back_memory() -> None:
    """After a compaction freed the previous base: hand the freed heap back to the system. glibc keeps the lists
    of a freed IVF index (hundreds of KB each) in its heap, so each compaction would otherwise add an index's size
    to the resident memory of a long-running writer."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _single_threaded(fn, *args, **kwargs):
    """One query on one thread: OpenMP's hand-over costs ~30 ms a search on a busy 2-core machine, more than the
    search itself (0.03 ms at 1k vectors, 2.5 ms at 100k). The setting is this thread's own (libgomp keeps it per
    thread), so an indexing thread keeps its cores."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        faiss.omp_set_num_threads(before)


def _empty(dim: int) -> _State:
    return _State(0, dim, None, 0, False, 0, 0, _Delta(dim), 0, frozenset())


def _at(state: _State, generation: int) -> _State:
    return _State(
        generation,
        state.dim,
        state.base,
        state.base_generation,
        state.durable,
        state.max_id,
        state.base_max_id,
        state.delta,
        state.n,
        state.removed,
    )


def _base_meta(state: _State, sha: str, generation: int) -> dict[str, str]:
    return {
        "faiss_sha256": sha,
        "faiss_base": str(state.base_generation),
        "faiss_max_id": str(state.base_max_id),
        "faiss_generation": str(generation),
    }


def _lists_for(rows: int) -> int:
    return max(64, int(4 * math.sqrt(max(rows, 1))))


def _is_ours(index: faiss.Index | None) -> bool:
    """The kinds this module writes (and the exact one the previous release wrote), inner product only."""
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        return (
            isinstance(inner, faiss.IndexFlatIP | faiss.IndexScalarQuantizer)
            and index.metric_type == faiss.METRIC_INNER_PRODUCT
        )
    return isinstance(index, faiss.IndexIVFScalarQuantizer) and index.metric_type == faiss.METRIC_INNER_PRODUCT


def _is_current_kind(index: faiss.Index) -> bool:
    """IVF, or the 8-bit flat base; earlier releases' float32 and float16 flat files are rebuilt at their first
    compaction."""
    if not isinstance(index, faiss.IndexIDMap2):
        return True
    inner = faiss.downcast_index(index.index)
    return isinstance(inner, faiss.IndexScalarQuantizer) and inner.sq.qtype == faiss.ScalarQuantizer.QT_8bit_uniform


def _base_ids(index: faiss.Index | None) -> np.ndarray:
    if index is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map)
    lists = index.invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(index.nlist)
        if lists.list_size(i)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _vectors(conn: sqlite3.Connection, dim: int, sql: str, args: tuple) -> tuple[np.ndarray, np.ndarray]:
    rows = conn.execute(sql, args).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    try:
        vecs = decode_vectors([r[1] for r in rows], dim)
    except ValueError:
        for rid, blob in rows:  # name the damaged chunk, as StoreView.passages does
            try:
                decode_vector(blob, dim)
            except ValueError as exc:
                name = conn.execute("SELECT chunk_id FROM chunks WHERE id = ?", (rid,)).fetchone()
                raise IndexCorrupt(
                    f"chunk {name[0] if name else rid!r} of the index is damaged ({exc}); "
                    "delete the index folder and re-index"
                ) from None
        raise
    return ids, vecs


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
