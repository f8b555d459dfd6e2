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
O(change); readers keep searching the state of their SQLite snapshot. Below vector_ivf_min_rows the base is flat
(8-bit codes: flat_base); from there on an IVF index (float16, vector_ivf_nprobe lists searched), built at a
compaction, rebuilt when the index has grown well past the size its lists were made for. Either only finds
candidates: their scores come from the vectors in SQLite.
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
from qa.store.faiss_state import (  # noqa: F401  (FaissOptions: imported from here by callers)
    BUILD_BATCH,
    EXACT_FILTER_MAX,
    KEEP_STATES,
    POST_FILTER_FACTOR,
    REFINE_EXTRA,
    FaissOptions,
    _at,
    _base_ids,
    _base_meta,
    _Delta,
    _empty,
    _fsync_dir,
    _give_back_memory,
    _is_current_kind,
    _is_ours,
    _lists_for,
    _State,
    _vectors,
)
from qa.store.sql import filter_sql, read_meta

FP16 = faiss.ScalarQuantizer.QT_fp16


def flat_base(dim: int) -> faiss.Index:
    """The exact-size base: 8-bit codes over [-1, 1] (every unit vector fits, none is clipped; nothing to train, so
    vectors added later fit as well as the first). A code is off by <= 1/255; the candidates it finds (k +
    REFINE_EXTRA) are re-scored from SQLite, and dense recall@10 stays 1.000 on rtqa-2023-dev (bench/index_query.py)."""
    inner = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit_uniform, faiss.METRIC_INNER_PRODUCT)
    faiss.copy_array_to_vector(np.array([-1.0, 2.0], dtype=np.float32), inner.sq.trained)
    inner.is_trained = True
    return faiss.IndexIDMap2(inner)


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
            found = self._post_filtered(q, k, filters)
            if found is not None:
                return found
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

    def _post_filtered(self, q: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]] | None:
        """The filtered hits read off an unfiltered search POST_FILTER_FACTOR times as deep, when enough of its
        candidates pass: the same hits a search restricted to the allowed rows gives (every allowed row ranks
        below them), without selecting every allowed chunk id in SQL first (8x the search's time at 10k chunks
        for an as-of date, which every dated question carries). None: too few passed, search the allowed rows."""
        state, want = self._state, k + REFINE_EXTRA
        depth = want * POST_FILTER_FACTOR
        first = [i for i, _ in state.search(q, depth, self._nprobe, None)]
        if not first:
            return []
        where, args = filter_sql(filters)
        passing = {
            r[0]
            for r in self._conn.execute(
                "SELECT c.id FROM chunks c JOIN articles a ON a.id = c.article_id "
                f"WHERE c.id IN (SELECT value FROM json_each(?)) AND {where}",
                ["[" + ",".join(map(str, first)) + "]", *args],
            )
        }
        kept = [i for i in first if i in passing]
        every_row = not state.ivf and len(first) < depth  # a flat search returned every live row
        if len(kept) < want and not every_row:
            return None
        return self._exact(q, np.array(kept[:want], dtype=np.int64), k)

    def neighbours(self, vectors: np.ndarray, k: int) -> list[list[int]]:
        if self._state is None or self._state.rows <= 0 or not len(vectors):
            return [[] for _ in range(len(vectors))]
        return self._state.search_many(np.ascontiguousarray(vectors, dtype=np.float32), k, self._nprobe)

    def _exact(self, q: np.ndarray, ids: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Exact scores from the vectors in the snapshot's SQLite rows (an IVF list search only finds candidates)."""
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
        kind = "flat 8-bit (candidates re-scored in float16)"
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
            index.cp.min_points_per_centroid = 4  # FAISS warns on stderr below 39 a list; 32 is our choice
            step = max(1, rows // (32 * lists))  # a spread sample of the vectors to train the lists on
            _, sample = _vectors(conn, dim, "SELECT id, vector FROM chunks WHERE id % ? = 0", (step,))
            if len(sample) < 4 * lists:  # ids too uneven for the spread sample: the first rows will do
                _, sample = _vectors(conn, dim, "SELECT id, vector FROM chunks ORDER BY id LIMIT ?", (32 * lists,))
            index.train(np.ascontiguousarray(sample))
        else:
            index = flat_base(dim)
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
