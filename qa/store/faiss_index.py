"""The default VectorIndex: FAISS in memory; on disk one base file plus the change since it, logged in SQLite.

On disk (see also qa/store/sqlite.py):
    faiss-<B>.index   every vector of generation B, the base (temp file, fsync, rename; its sha256 in meta)
    qa.sqlite         the chunks added since B are the rows with id > meta faiss_max_id (chunk ids only grow), and
                      dense_removed holds the ids each commit since B removed
A commit therefore writes only its change, in the SQLite transaction that makes its generation current: O(change),
and a crash before that commit leaves the previous generation whole. The base is rewritten ("compacted") at every
commit while it is small (vector_rewrite_rows), in the commit that makes the log vector_log_max_rows long, and when
a writer finishes with a log of vector_compact_fraction of the vectors. A compaction writes the new file first and
records it in one SQLite transaction; a crash in between leaves an orphan file that the next compaction removes. A
base file is loaded only when its checksum matches and it is the kind of index this module writes; a missing one is
rebuilt from the vectors in SQLite. An index folder of the previous release (one whole file per generation, no log)
is read as a base with an empty log, and the next commit carries on from it.

In memory a generation is an immutable _State: the base index, the vectors added since (an append-only buffer that
later generations share, each seeing its own prefix) and the ids removed since. A commit derives the next state in
O(change); readers keep searching the state of their SQLite snapshot. Below vector_ivf_min_rows the base is exact
(float16 vectors, flat); from there on an IVF index (float16, vector_ivf_nprobe lists searched), built at a
compaction, rebuilt when the index has grown well past the size its lists were made for.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from qa.settings import Settings
from qa.store.base import Filters, IndexCorrupt, SQLiteStoreLike, VectorChange
from qa.store.codec import decode_vector, decode_vectors
from qa.store.sql import filter_sql, read_meta

FP16 = faiss.ScalarQuantizer.QT_fp16
EXACT_FILTER_MAX = 50_000  # a filter this narrow is searched exactly, not through the IVF lists
REFINE_EXTRA = 8  # candidates fetched beyond k, then ranked by their exact (float32) scores
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

    def ids(self) -> set[int]:
        out = set(_base_ids(self.base).tolist()) - self.removed
        return out | set(self._live_delta()[0].tolist())


class FaissSearch:
    """Dense search of one generation; filters become an id list from the reader's snapshot."""

    def __init__(self, conn: sqlite3.Connection, state: _State | None, nprobe: int, dim: int):
        self._conn, self._state, self._nprobe, self._dim = conn, state, nprobe, dim

    def search(self, vector: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]]:
        state = self._state
        if state is None or state.rows <= 0:
            return []
        q = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        allowed = None
        if filters:
            where, args = filter_sql(filters)
            rows = self._conn.execute(
                f"SELECT c.id FROM chunks c JOIN articles a ON a.id = c.article_id WHERE {where}", args
            ).fetchall()
            if not rows:
                return []
            allowed = np.array([r[0] for r in rows], dtype=np.int64)
            if state.ivf and len(allowed) <= EXACT_FILTER_MAX:  # a few lists would miss most of a narrow filter
                return self._exact(q, allowed, k)
        candidates = state.search(q, k + REFINE_EXTRA, self._nprobe, allowed)
        return self._exact(q, np.array([i for i, _ in candidates], dtype=np.int64), k)

    def _exact(self, q: np.ndarray, ids: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Exact scores from the float32 vectors in the snapshot (the FAISS file holds float16 ones)."""
        if not len(ids):
            return []
        found, vecs = _vectors(
            self._conn,
            self._dim,
            "SELECT id, vector FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
            ("[" + ",".join(map(str, ids.tolist())) + "]",),
        )
        scores = vecs @ q
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(found[i]), float(scores[i])) for i in top]

    def ids(self) -> set[int]:
        return set() if self._state is None else self._state.ids()


class FaissWrite:
    """One commit's change: the next state, derived from the current one without touching it."""

    def __init__(self, owner: FaissIndex, state: _State | None):
        self._owner = owner
        self._parent = state
        self._state: _State | None = None
        self._keep: set[int] = set()

    def stage(self, conn: sqlite3.Connection, change: VectorChange) -> dict[str, str]:
        parent = self._parent or _empty(change.dim)
        state = parent.advance(change.generation, change.removed_ids, change.new_ids, change.new_vectors)
        owner = self._owner
        if owner.sync_compaction_due(state):
            state = owner.compact_state(conn, state)
            sha = owner.write(state.base, change.generation)
            conn.execute("DELETE FROM dense_removed")
            self._keep = {change.generation, parent.base_generation}
            self._state = state
            return _base_meta(state, sha, change.generation)
        conn.executemany(
            "INSERT OR IGNORE INTO dense_removed VALUES (?, ?)", [(change.generation, i) for i in change.removed_ids]
        )
        self._state = state
        # The base this log starts from (also for a base the previous release wrote, which had no log).
        return {
            "faiss_generation": str(change.generation),
            "faiss_base": str(state.base_generation),
            "faiss_max_id": str(state.base_max_id),
        }

    def committed(self) -> None:
        self._owner.serve(self._state, self._keep)


class FaissIndex:
    """The base file and change log of one index folder; recent generations stay loaded for readers."""

    def __init__(self, path: Path | str, options: FaissOptions | None = None):
        self.path = Path(path)
        self.options = options or FaissOptions()
        self._lock = threading.Lock()
        self._states: dict[int, _State] = {}
        self._store: SQLiteStoreLike | None = None

    def attach(self, store: SQLiteStoreLike) -> None:
        """Nothing to check up front: a base file is verified when it is first loaded."""
        self._store = store

    def _file(self, generation: int) -> Path:
        return self.path / f"faiss-{generation}.index"

    def begin(self, conn: sqlite3.Connection, meta: dict[str, str]) -> FaissWrite:
        return FaissWrite(self, self._state_for(conn, meta))

    def searcher(self, conn: sqlite3.Connection, meta: dict[str, str]) -> FaissSearch:
        return FaissSearch(conn, self._state_for(conn, meta), self.options.ivf_nprobe, int(meta.get("dim") or 0))

    def stats(self) -> dict:
        with self._lock:
            state = max(self._states.values(), key=lambda s: s.generation, default=None)
        if state is None or state.base is None:
            return {}
        kind = "flat fp16 (exact)"
        if state.ivf:
            kind = f"IVF{state.base.nlist} fp16, nprobe {self.options.ivf_nprobe}"
        return {
            "vectors": f"faiss {kind}, base of generation {state.base_generation} + {state.log_rows} logged changes"
        }

    # -- loading --------------------------------------------------------------------------------------------
    def _state_for(self, conn: sqlite3.Connection, meta: dict[str, str]) -> _State | None:
        generation = int(meta.get("generation", "0"))
        if not generation:
            return None
        with self._lock:
            state = self._states.get(generation)
            if state is None:
                state = self._load(conn, meta, generation)
                self._remember(state)
            return state

    def _remember(self, state: _State) -> None:
        self._states[state.generation] = state
        for old in sorted(self._states)[:-KEEP_STATES]:
            del self._states[old]

    def _load(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int) -> _State:
        dim = int(meta.get("dim") or 0)
        logged = meta.get("faiss_generation")
        if logged is not None and int(logged) != generation:  # another backend committed since: the log has gaps
            return self._rebuilt(conn, generation, dim)
        base_generation = int(meta.get("faiss_base", generation))
        # Carry on from a loaded generation when the log still covers the way from it (O(change)).
        newer = [s for s in self._states.values() if base_generation <= s.generation < generation and s.durable]
        if logged is not None and newer:
            return self._replay(conn, max(newer, key=lambda s: s.generation), generation)
        base = self._read_base(meta, base_generation, dim)
        if base is None:
            return self._rebuilt(conn, generation, dim)
        max_id = int(meta["faiss_max_id"]) if "faiss_max_id" in meta else int(_base_ids(base).max(initial=0))
        state = _State(base_generation, dim, base, base_generation, True, max_id, max_id, _Delta(dim), 0, frozenset())
        return self._replay(conn, state, generation) if logged is not None else _at(state, generation)

    def _replay(self, conn: sqlite3.Connection, state: _State, generation: int) -> _State:
        """`state` brought forward to `generation` from the log in the caller's snapshot."""
        ids, vecs = _vectors(conn, state.dim, "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id", (state.max_id,))
        removed = [r[0] for r in conn.execute("SELECT id FROM dense_removed WHERE generation > ?", (state.generation,))]
        return state.advance(generation, removed, ids.tolist(), vecs)

    def _rebuilt(self, conn: sqlite3.Connection, generation: int, dim: int) -> _State:
        """Every vector of the snapshot, read from SQLite (not durable: the next commit writes a base file)."""
        base, top = self._build_from(conn, dim)
        return _State(generation, dim, base, 0, False, top, top, _Delta(dim), 0, frozenset())

    def _read_base(self, meta: dict[str, str], generation: int, dim: int) -> faiss.Index | None:
        path = self._file(generation)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as fh:  # hashed in blocks, then read by FAISS: one copy in memory, not two
                while block := fh.read(1 << 24):
                    digest.update(block)
        except FileNotFoundError:
            return None
        if digest.hexdigest() != meta.get("faiss_sha256"):
            raise IndexCorrupt(
                f"{path} does not match the checksum recorded when it was written (changed or damaged); "
                "it was not loaded. Delete the index folder and re-index."
            )
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:
            index = None
        if not _is_ours(index) or (dim and index.d != dim):
            raise IndexCorrupt(
                f"{path} matches its recorded checksum but is not the {dim}-d FAISS index this program writes "
                "(the index folder was changed); it was not used. Delete the index folder and re-index."
            )
        return index

    # -- compaction -----------------------------------------------------------------------------------------
    def sync_compaction_due(self, state: _State) -> bool:
        """Rewrite the base inside this commit: small, never written, or the log at its ceiling."""
        o = self.options
        return not state.durable or state.rows <= o.rewrite_rows or state.log_rows >= o.log_max_rows

    def compaction_due(self, state: _State) -> bool:
        return state.log_rows > 0 and state.log_rows >= self.options.compact_fraction * max(state.rows, 1)

    def compact_state(self, conn: sqlite3.Connection, state: _State) -> _State:
        """A state of the same generation whose base holds everything (the log folded in)."""
        rows = state.rows
        want_ivf = rows >= self.options.ivf_min_rows
        lists = _lists_for(rows)
        reuse = (
            state.base is not None
            and state.ivf == want_ivf
            and _is_current_kind(state.base)
            and (not want_ivf or state.base.nlist * 2 >= lists)
        )
        if reuse:
            base = faiss.clone_index(state.base)
            if state.removed:
                base.remove_ids(np.fromiter(state.removed, dtype=np.int64, count=len(state.removed)))
            ids, vecs = state._live_delta()
            if len(ids):
                base.add_with_ids(np.ascontiguousarray(vecs), ids)
        else:
            base, _ = self._build_from(conn, state.dim)
        g = state.generation
        return _State(g, state.dim, base, g, True, state.max_id, state.max_id, _Delta(state.dim), 0, frozenset())

    def _build_from(self, conn: sqlite3.Connection, dim: int) -> tuple[faiss.Index, int]:
        """A base of every vector in the caller's snapshot, read in batches (memory: the index, not the rows);
        returns it and the largest chunk id."""
        rows, top = conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM chunks").fetchone()
        if rows >= self.options.ivf_min_rows:
            lists = _lists_for(rows)
            index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, lists, FP16, faiss.METRIC_INNER_PRODUCT)
            index.by_residual = False
            index.cp.niter = 10  # k-means: 10 rounds on 32 points a list find lists as good for search as 25
            step = max(1, rows // (32 * lists))  # a spread sample of the vectors to train the lists on
            _, sample = _vectors(conn, dim, "SELECT id, vector FROM chunks WHERE id % ? = 0", (step,))
            if len(sample) < 4 * lists:  # ids too uneven for the spread sample: the first rows will do
                _, sample = _vectors(conn, dim, "SELECT id, vector FROM chunks ORDER BY id LIMIT ?", (32 * lists,))
            index.train(np.ascontiguousarray(sample))
        else:
            index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(dim, FP16, faiss.METRIC_INNER_PRODUCT))
        last = 0
        while True:
            ids, vecs = _vectors(
                conn, dim, "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT ?", (last, BUILD_BATCH)
            )
            if not len(ids):
                return index, int(top)
            index.add_with_ids(np.ascontiguousarray(vecs), ids)
            last = int(ids[-1])

    def maintain(self) -> None:
        """When a writer finishes: fold a log of compact_fraction of the vectors into a new base file."""
        store = self._store
        if store is None:
            return
        conn = store.connection()
        meta = read_meta(conn)
        state = self._state_for(conn, meta)
        if state is not None and state.durable and state.rows <= self.options.rewrite_rows:
            self._prune({state.base_generation})  # cheap to rebuild: no second copy kept for late readers
        if state is None or not state.durable or not self.compaction_due(state):
            return
        if meta.get("faiss_base") == str(state.generation):  # already folded (never write over the live base)
            return
        conn.execute("BEGIN")  # one snapshot for the vectors a new base may read from SQLite
        try:
            compacted = self.compact_state(conn, state)
        finally:
            conn.execute("COMMIT")
        sha = self.write(compacted.base, state.generation)
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = read_meta(conn)
            if now.get("generation") != str(state.generation) or now.get("faiss_base") == str(state.generation):
                conn.execute("ROLLBACK")  # another commit came first: this base is not the current one
                return
            conn.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", list(_base_meta(compacted, sha, state.generation).items())
            )
            conn.execute("DELETE FROM dense_removed WHERE generation <= ?", (state.generation,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.serve(compacted, {state.generation, state.base_generation})

    # -- files ----------------------------------------------------------------------------------------------
    def write(self, index: faiss.Index, generation: int) -> str:
        """Write a base file durably; returns its sha256 (recorded in meta by the same commit)."""
        target = self._file(generation)
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        faiss.write_index(index, str(tmp))  # straight to the file: no second copy in memory (800 MB at 1M)
        digest = hashlib.sha256()
        with open(tmp, "rb+") as fh:
            while block := fh.read(1 << 24):
                digest.update(block)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.path)
        return digest.hexdigest()

    def serve(self, state: _State | None, keep: set[int]) -> None:
        """After the SQLite commit: readers get the new state. A new base file makes the ones before the
        previous base go (a reader may still be opening that one), with any temp file left by a crash."""
        if state is None:
            return
        with self._lock:
            self._remember(state)
            if keep:  # a compaction: older states hold the old base, drop them (readers keep theirs)
                for old in [g for g in self._states if g < state.generation]:
                    del self._states[old]
        if keep:
            self._prune(keep)
            _give_back_memory()

    def _prune(self, keep: set[int]) -> None:
        """Remove base files other than `keep`, and temp files a crash left (one writer at a time)."""
        for path in self.path.glob("faiss-*.index*"):
            match = re.fullmatch(r"faiss-(\d+)\.index(\.tmp\d+)?", path.name)
            if match and (match.group(2) or int(match.group(1)) not in keep):
                with contextlib.suppress(OSError):
                    path.unlink()


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
    """Not the previous release's float32 flat file (that one is rebuilt as float16 at its first compaction)."""
    return not (isinstance(index, faiss.IndexIDMap2) and isinstance(faiss.downcast_index(index.index), faiss.IndexFlat))


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
