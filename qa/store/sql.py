"""SQLite building blocks of the store: the schema and its upgrades, connections in WAL mode, the meta table,
filters as SQL and the BM25 (FTS5) query."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from qa.store.base import Filters, IndexCorrupt, IndexLocked
from qa.text import content_words

SCHEMA_VERSION = 2  # 2: chunks.sentence_vectors (a version-1 index gains the column when opened)
DB_NAME = "qa.sqlite"
LOCK_NAME = "index.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY, title TEXT, text TEXT, source TEXT, url TEXT, published TEXT,
    content_hash TEXT NOT NULL, origin TEXT, indexed_at REAL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT UNIQUE NOT NULL,
    article_id TEXT NOT NULL REFERENCES articles(id), ordinal INTEGER, start INTEGER, end INTEGER,
    text TEXT NOT NULL, sentences TEXT NOT NULL, vector BLOB NOT NULL, sentence_vectors BLOB);
CREATE INDEX IF NOT EXISTS chunks_article ON chunks(article_id);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, articles TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(title, text, tokenize='porter unicode61');
"""


def fts_query(text: str) -> str:
    """A safe FTS5 OR-query of the content words (user text never reaches FTS5 syntax unquoted)."""
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(content_words(text)))


def like_pattern(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching `text` anywhere in a lower-cased value, with %, _ and \\ in it
    taken literally (Milvus needs its own escaping: qa.store.milvus._like_pattern)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def filter_sql(filters: Filters) -> tuple[str, list]:
    """The filters as a WHERE clause over `articles a`; the same meaning as qa.store.milvus.filter_expr."""
    clauses, args = ["1"], []
    if filters.source:  # qa_lower: Python's lower(), as Milvus stores them (SQLite's folds ASCII only)
        clauses.append("(qa_lower(a.source) LIKE ? ESCAPE '\\' OR qa_lower(a.url) LIKE ? ESCAPE '\\')")
        args += [like_pattern(filters.source)] * 2
    if filters.since:
        clauses.append("a.published >= ?")
        args.append(filters.since)
    if filters.until:
        clauses.append("a.published != '' AND a.published <= ?")
        args.append(filters.until)
    return " AND ".join(clauses), args


def connect(db_path: Path) -> sqlite3.Connection:
    """A connection in WAL mode (readers never wait for the writer) with durable commits."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=60, check_same_thread=False)
    add_functions(conn)
    _set_wal(conn, timeout=60)
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def add_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions filter_sql uses."""
    conn.create_function("qa_lower", 1, lambda value: (value or "").lower(), deterministic=True)


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    for key in ("schema_version", "generation", "dim"):
        if not str(meta.get(key) or "0").isdigit():
            raise IndexCorrupt(
                f"the index records {key} = {meta[key]!r}, not a number (changed or damaged); "
                "delete the index folder and re-index"
            )
    return meta


@contextlib.contextmanager
def opening(path: Path) -> Iterator[None]:
    """SQLite errors while opening an index as the store's errors: busy is locked, anything else damaged."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):  # not damaged
            raise IndexLocked(f"index at {path}/ stayed locked by another process ({exc})") from None
        raise IndexCorrupt(f"index at {path}/ is damaged ({exc}); delete the folder and re-index") from None


def prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables of a new index, or check (and upgrade) the schema of an existing one."""
    conn.executescript(_SCHEMA)
    version = read_meta(conn).get("schema_version")
    if version == "1":
        _upgrade_from_1(conn)
    elif version is None:
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(version) != SCHEMA_VERSION:
        raise IndexCorrupt(
            f"index at {path}/ has schema {version}, this version reads {SCHEMA_VERSION}: re-index into a new folder"
        )


def _upgrade_from_1(conn: sqlite3.Connection) -> None:
    """Schema 1 had no sentence vectors: add the empty column (until then answers embed those sentences per
    question), and mark every file and article as changed, so the next `qa index` embeds them again with
    sentence vectors (feeds too: their entries no longer match the stored hash)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "sentence_vectors" not in {r[1] for r in conn.execute("PRAGMA table_info(chunks)")}:
            conn.execute("ALTER TABLE chunks ADD COLUMN sentence_vectors BLOB")
            conn.execute("UPDATE files SET size = -1")
            conn.execute("UPDATE articles SET content_hash = ''")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _set_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL. SQLite answers "database is locked" at once, without waiting, when another process is
    switching the same new database (two indexers creating one index at once), so wait here."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY") or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
