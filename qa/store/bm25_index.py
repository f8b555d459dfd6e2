"""BM25 in memory, persisted as one base file plus the change since it, logged in SQLite (as the FAISS index).

On disk (see also qa/store/sqlite.py):
    bm25-<B>.idx   the postings of every chunk of generation B (qa/store/bm25_file.py; its sha256 in meta)
    qa.sqlite      the chunks added since B are the rows with id > meta bm25_max_id (their text is in SQLite and
                   is tokenized again when a process loads the generation), sparse_removed holds the ids each commit
                   since B removed
A commit writes only its change, in the SQLite transaction that makes its generation current; the base is
rewritten inside a commit while the index is small (bm25_rewrite_rows) or the log is at its ceiling
(bm25_log_max_rows), and when a writer finishes with a log of bm25_compact_fraction of the chunks. A crash before
a commit leaves the previous generation whole; an orphan base file is removed by the next compaction. A missing
base file (or an index from before this module, which searched with FTS5) is rebuilt from the chunk texts in SQLite
(not durable: the next writer writes a base file).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from qa.settings import Settings
from qa.store.base import Filters
from qa.store.bm25_file import read_base, write_base
from qa.store.bm25_state import Base, Delta, State, empty_base, merged
from qa.store.bm25_text import many_doc_terms, query_terms
from qa.store.sql import CHUNK_TEXT, filter_sql, read_meta

KEEP_STATES = 4  # recent generations kept in memory for readers whose snapshot is a little behind
BATCH = 20_000  # chunks read from SQLite at a time when a base is built from it


@dataclass(frozen=True)
class Bm25Options:
    """When the base file is rewritten (qa/settings.py, group "BM25 index")."""

    rewrite_rows: int = Settings.model_fields["bm25_rewrite_rows"].default
    compact_fraction: float = Settings.model_fields["bm25_compact_fraction"].default
    log_max_rows: int = Settings.model_fields["bm25_log_max_rows"].default

    @classmethod
    def from_settings(cls, settings: Settings) -> Bm25Options:
        return cls(settings.bm25_rewrite_rows, settings.bm25_compact_fraction, settings.bm25_log_max_rows)


class Bm25Search:
    """BM25 over one generation; filters are checked in the reader's snapshot, best candidates first."""

    def __init__(self, conn: sqlite3.Connection, state: State | None):
        self._conn, self._state = conn, state

    def search(self, text: str, k: int, filters: Filters = Filters()) -> list[tuple[int, float]]:
        terms = query_terms(text)
        if self._state is None or not terms:
            return []
        accept = None
        if filters:
            where, args = filter_sql(filters)

            def accept(ids: list[int]) -> set[int]:
                rows = self._conn.execute(
                    "SELECT c.id FROM chunks c JOIN articles a ON a.id = c.article_id "
                    f"WHERE c.id IN (SELECT value FROM json_each(?)) AND {where}",
                    ["[" + ",".join(map(str, ids)) + "]", *args],
                )
                return {r[0] for r in rows}

        return self._state.search(terms, k, accept)

    def ids(self) -> set[int]:
        return set() if self._state is None else self._state.ids()


class Bm25Write:
    """One commit's change: the next state, derived from the current one without touching it."""

    def __init__(self, owner: Bm25Index, state: State | None):
        self._owner, self._parent = owner, state
        self._state: State | None = None
        self._keep: set[int] = set()

    def stage(
        self, conn: sqlite3.Connection, generation: int, removed: list[int], added: list[tuple[int, str, str]]
    ) -> dict[str, str]:
        """Before SQLite commits: log the change (or write a new base); the meta entries to commit with it."""
        parent = self._parent or _empty()
        docs = [(i, c, n) for (i, _, _), (c, n) in zip(added, many_doc_terms((t, x) for _, t, x in added), strict=True)]
        state = parent.advance(generation, removed, docs)
        owner = self._owner
        if owner.sync_compaction_due(state):
            state = _compacted(state)
            sha = owner.write(state.base, generation)
            conn.execute("DELETE FROM sparse_removed")
            self._keep = {generation, parent.base_generation}
            self._state = state
            return _base_meta(state, sha)
        conn.executemany("INSERT OR IGNORE INTO sparse_removed VALUES (?, ?)", [(generation, i) for i in removed])
        self._state = state
        return {"bm25_generation": str(generation)}

    def committed(self) -> None:
        self._owner.serve(self._state, self._keep)


class Bm25Index:
    """The BM25 base file and change log of one index folder; recent generations stay loaded for readers."""

    def __init__(self, path: Path | str, options: Bm25Options | None = None):
        self.path = Path(path)
        self.options = options or Bm25Options()
        self._lock = threading.Lock()
        self._states: dict[int, State] = {}

    def _file(self, generation: int) -> Path:
        return self.path / f"bm25-{generation}.idx"

    def begin(self, conn: sqlite3.Connection, meta: dict[str, str]) -> Bm25Write:
        return Bm25Write(self, self._state_for(conn, meta))

    def searcher(self, conn: sqlite3.Connection, meta: dict[str, str]) -> Bm25Search:
        return Bm25Search(conn, self._state_for(conn, meta))

    def latest(self) -> State | None:
        with self._lock:
            return max(self._states.values(), key=lambda s: s.generation, default=None)

    # -- loading --------------------------------------------------------------------------------------------
    def _state_for(self, conn: sqlite3.Connection, meta: dict[str, str]) -> State | None:
        generation = int(meta.get("generation", "0"))
        if not generation:
            return None
        with self._lock:
            state = self._states.get(generation)
            if state is None:
                state = self._load(conn, meta, generation)
                self._remember(state)
            return state

    def _remember(self, state: State) -> None:
        self._states[state.generation] = state
        for old in sorted(self._states)[:-KEEP_STATES]:
            del self._states[old]

    def _load(self, conn: sqlite3.Connection, meta: dict[str, str], generation: int) -> State:
        logged = meta.get("bm25_generation")
        if logged is None or int(logged) != generation:  # no BM25 log yet (an FTS5 index) or a gap in it
            return self._rebuilt(conn, generation)
        base_generation = int(meta["bm25_base"])
        newer = [s for s in self._states.values() if base_generation <= s.generation < generation and s.durable]
        if newer:  # carry on from a loaded generation: O(change)
            return self._replay(conn, max(newer, key=lambda s: s.generation), generation)
        base = read_base(self._file(base_generation), meta.get("bm25_sha256"))
        if base is None:
            return self._rebuilt(conn, generation)
        top = int(meta.get("bm25_max_id", "0"))
        state = State(base_generation, base, base_generation, True, top, top, Delta(), 0, frozenset(), *_size(base))
        return self._replay(conn, state, generation)

    def _replay(self, conn: sqlite3.Connection, state: State, generation: int) -> State:
        """`state` brought forward to `generation` from the log in the caller's snapshot."""
        rows = conn.execute(
            f"SELECT c.id, a.title, {CHUNK_TEXT} FROM chunks c JOIN articles a ON a.id = c.article_id "
            "WHERE c.id > ? ORDER BY c.id",
            (state.max_id,),
        ).fetchall()
        log = conn.execute("SELECT id FROM sparse_removed WHERE generation > ?", (state.generation,))
        removed = [r[0] for r in log]
        terms = many_doc_terms((title, text) for _, title, text in rows)
        docs = [(r[0], c, n) for r, (c, n) in zip(rows, terms, strict=True)]
        return state.advance(generation, removed, docs)

    def _rebuilt(self, conn: sqlite3.Connection, generation: int) -> State:
        """Every chunk of the snapshot, tokenized from SQLite in batches (not durable: the next commit writes
        a base file)."""
        state, last = _empty(), 0
        while True:
            rows = conn.execute(
                f"SELECT c.id, a.title, {CHUNK_TEXT} FROM chunks c JOIN articles a ON a.id = c.article_id "
                "WHERE c.id > ? ORDER BY c.id LIMIT ?",
                (last, BATCH),
            ).fetchall()
            if not rows:
                break
            terms = many_doc_terms((title, text) for _, title, text in rows)
            state = state.advance(generation, [], [(r[0], c, n) for r, (c, n) in zip(rows, terms, strict=True)])
            state = _compacted(state)  # fold each batch: the delta stays small
            last = rows[-1][0]
        return state.at(generation, base_generation=0, durable=False)

    # -- compaction -----------------------------------------------------------------------------------------
    def sync_compaction_due(self, state: State) -> bool:
        o = self.options
        return not state.durable or state.live <= o.rewrite_rows or state.log_rows >= o.log_max_rows

    def maintain(self, conn: sqlite3.Connection) -> None:
        """When a writer finishes: write a base for a rebuilt state, or fold a long log into a new base file."""
        meta = read_meta(conn)
        state = self._state_for(conn, meta)
        if state is None:
            return
        if state.durable:  # else rebuilt from SQLite (no base file yet, or it went missing): always written
            if state.live <= self.options.rewrite_rows:
                self._prune({state.base_generation})
            short = state.log_rows < max(self.options.compact_fraction * state.live, 1)
            if short or meta.get("bm25_base") == str(state.generation):  # never write over the live base
                return
        compacted = _compacted(state)
        sha = self.write(compacted.base, state.generation)
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = read_meta(conn)
            if now.get("generation") != str(state.generation):
                conn.execute("ROLLBACK")  # another commit came first: this base is not the current one
                return
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(_base_meta(compacted, sha).items()))
            conn.execute("DELETE FROM sparse_removed WHERE generation <= ?", (state.generation,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.serve(compacted, {state.generation, state.base_generation})

    # -- files ----------------------------------------------------------------------------------------------
    def write(self, base: Base, generation: int) -> str:
        """Write a base file durably; returns its sha256 (recorded in meta by the same commit)."""
        from qa.store.faiss_state import _fsync_dir

        sha = write_base(base, self._file(generation))
        _fsync_dir(self.path)
        return sha

    def serve(self, state: State | None, keep: set[int]) -> None:
        """After the SQLite commit: readers get the new state; a new base file makes older ones go."""
        if state is None:
            return
        with self._lock:
            self._remember(state)
            if keep:
                for old in [g for g in self._states if g < state.generation]:
                    del self._states[old]
        if keep:
            self._prune(keep)

    def _prune(self, keep: set[int]) -> None:
        """Remove base files other than `keep`, and temp files a crash left (one writer at a time)."""
        for path in self.path.glob("bm25-*.idx*"):
            match = re.fullmatch(r"bm25-(\d+)\.idx(\.tmp\d+)?", path.name)
            if match and (match.group(2) or int(match.group(1)) not in keep):
                with contextlib.suppress(OSError):
                    path.unlink()


def _empty() -> State:
    return State(0, empty_base(), 0, False, 0, 0, Delta(), 0, frozenset(), 0, 0)


def _size(base: Base) -> tuple[int, int]:
    return len(base.ids), int(base.lengths.sum(dtype="int64"))


def _compacted(state: State) -> State:
    """The same generation with everything in its base (log folded in); durable once the caller wrote it."""
    base = merged(state)
    top = state.max_id
    return State(state.generation, base, state.generation, True, top, top, Delta(), 0, frozenset(), *_size(base))


def _base_meta(state: State, sha: str) -> dict[str, str]:
    return {
        "bm25_sha256": sha,
        "bm25_base": str(state.base_generation),
        "bm25_max_id": str(state.base_max_id),
        "bm25_generation": str(state.generation),
    }
