"""What every store shares: the records a commit takes, the store's errors, and the two protocols.

`VectorStore` is what the indexer, the retriever and the front ends need of a store (callers type against it).
`VectorIndex` is the one part that differs between backends: where the dense vectors are searched (FAISS files
or a Milvus collection). The SQLite store (qa/store/sqlite.py) owns one and drives it through a commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from qa.errors import QAError
from qa.schema import Article, Chunk

if TYPE_CHECKING:
    from qa.store.sqlite import StoreView


class StoreError(QAError, RuntimeError):
    """A problem with the index folder; the message says what to do."""


class IndexMissing(StoreError):
    pass


class IndexCorrupt(StoreError):
    pass


class IndexLocked(StoreError):
    pass


class Upsert(NamedTuple):
    """One article to (re)write: its chunks, their vectors, and per chunk one vector per sentence (or None: the
    answer stage then embeds those sentences when it reads them)."""

    article: Article
    chunks: Sequence[Chunk]
    vectors: np.ndarray
    sentence_vectors: Sequence[np.ndarray] | None = None


@dataclass(frozen=True)
class FileStamp:
    """What a file looked like when indexed: unchanged size and mtime mean no need to read it again."""

    size: int
    mtime_ns: int
    article_ids: tuple[str, ...]


@dataclass(frozen=True)
class Filters:
    """Optional retrieval filters: `source` matches source or url (substring), dates are ISO bounds. `as_of`
    drops articles dated after it but, unlike `until`, keeps undated ones (a question's own date, not the user's
    date range)."""

    source: str = ""
    since: str = ""
    until: str = ""
    as_of: str = ""

    def __bool__(self) -> bool:
        return bool(self.source or self.since or self.until or self.as_of)


@dataclass(frozen=True)
class VectorChange:
    """The dense side of one commit: chunks that leave and chunks that arrive (rows of `new_vectors`)."""

    generation: int  # the generation this commit makes current
    dim: int
    removed_ids: list[int]
    new_ids: list[int]
    new_vectors: np.ndarray  # (len(new_ids), dim) float32


class DenseSearch(Protocol):
    """Dense search inside one reader's SQLite snapshot."""

    def search(self, vector: np.ndarray, k: int, filters: Filters) -> list[tuple[int, float]]:
        """(chunk id, inner product) pairs, best first; only chunks the snapshot holds that pass the filters."""
        ...

    def neighbours(self, vectors: np.ndarray, k: int) -> list[list[int]]:
        """For each row of `vectors`, the ids of about its `k` nearest chunks (unfiltered, approximate order is
        fine): one batched search for a commit's new articles (story placement), not one search per article."""
        ...

    def ids(self) -> set[int]:
        """Every chunk id the vector side holds (for the integrity check)."""
        ...


class VectorWrite(Protocol):
    """The vector side of one commit, begun inside the SQLite write transaction."""

    def stage(self, conn: sqlite3.Connection, change: VectorChange) -> dict[str, str]:
        """Before SQLite commits: make the change durable where readers of the old generation do not see it;
        returns meta entries to commit with it."""
        ...

    def committed(self) -> None:
        """After SQLite committed: serve the new generation, clean up what the old one needed."""
        ...


class VectorIndex(Protocol):
    """Where the dense vectors are searched. SQLite stays the source of truth (it holds every vector too), so
    an implementation can always be rebuilt from it. Every implementation passes tests/store/contract.py."""

    def attach(self, store: SQLiteStoreLike) -> None:
        """Called once the SQLite part is open: check or rebuild the vector side against it."""
        ...

    def begin(self, conn: sqlite3.Connection, meta: dict[str, str]) -> VectorWrite: ...

    def searcher(self, conn: sqlite3.Connection, meta: dict[str, str]) -> DenseSearch: ...

    def stats(self) -> dict:
        """Extra fields for `qa stats`; a "bytes" entry is added to the index size."""
        ...


class SQLiteStoreLike(Protocol):
    """What a VectorIndex may use of the store that owns it."""

    path: Path

    def connection(self) -> sqlite3.Connection: ...
    def write_lock(self, timeout: float = 600.0) -> contextlib.AbstractContextManager[None]: ...


class VectorStore(Protocol):
    """What the indexer, the retriever and the front ends need of a store."""

    path: Path

    def write_lock(self, timeout: float = 600.0) -> contextlib.AbstractContextManager[None]: ...
    def article_hashes(self) -> dict[str, tuple[str, str]]: ...
    def known_articles(
        self, ids: Iterable[str] = (), origins: Iterable[str] = (), hashes: Iterable[str] = ()
    ) -> dict[str, tuple[str, str]]: ...
    def file_stamps(self, paths: Iterable[str] | None = None) -> dict[str, FileStamp]: ...
    def commit(
        self,
        upserts: Sequence[Upsert],
        deletes: Sequence[str],
        files: dict[str, FileStamp | None],
        model: str,
    ) -> int: ...
    def read(self) -> contextlib.AbstractContextManager[StoreView]: ...
    def generation(self) -> int: ...
    def stats(self) -> dict: ...
    def check(self) -> list[str]: ...
