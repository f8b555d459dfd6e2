"""SQLite building blocks of the store: the schema and its upgrades, connections in WAL mode, the meta table
and filters as SQL."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from qa.store.base import Filters, IndexCorrupt, IndexLocked

# 2: chunks.sentence_vectors; 3: dense_removed; 4: story_*; 5: BM25 in memory (qa/store/bm25_index.py) instead of
# the FTS5 table, sparse_removed (older indexes are upgraded when opened)
SCHEMA_VERSION = 5
DB_NAME = "qa.sqlite"
LOCK_NAME = "index.lock"
WAL_LIMIT = 4 << 20  # bytes the WAL file keeps after a checkpoint

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
CREATE INDEX IF NOT EXISTS articles_hash ON articles(content_hash);
CREATE INDEX IF NOT EXISTS articles_origin ON articles(origin);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, articles TEXT);
CREATE TABLE IF NOT EXISTS sparse_removed (generation INTEGER NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (generation, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dense_removed (generation INTEGER NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (generation, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS story_articles (
    article_id TEXT PRIMARY KEY, copy_id TEXT NOT NULL, story_id TEXT NOT NULL, outlet TEXT NOT NULL,
    published TEXT NOT NULL, signature BLOB, vector BLOB NOT NULL, names TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS story_articles_copy ON story_articles(copy_id);
CREATE INDEX IF NOT EXISTS story_articles_story ON story_articles(story_id);
CREATE INDEX IF NOT EXISTS story_articles_published ON story_articles(published);
CREATE TABLE IF NOT EXISTS story_bands (key BLOB NOT NULL, article_id TEXT NOT NULL,
    PRIMARY KEY (key, article_id)) WITHOUT ROWID;
"""
# story_articles / story_bands (qa/stories/store.py) are derived data: an index from before them gets them filled
# in from its stored vectors by the next writer (qa.stories.store.backfill).
# The tables an index cannot do without; one of them missing is damage, never a reason to start afresh.
PAGE_SIZE = 16384  # of a new qa.sqlite; an index made with 4 KB pages keeps them
TABLES = ("meta", "articles", "chunks", "files")
# A chunk's text: stored as a span of its article's text (chunks.text empty) unless it differs from that span;
# rows of earlier releases hold a copy. SQLite's substr counts characters, as Python's slices do.
CHUNK_TEXT = "CASE WHEN c.text != '' THEN c.text ELSE substr(a.text, c.start + 1, c.end - c.start) END"


def like_pattern(text: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching `text` anywhere in a lower-cased value, with %, _ and \\ in it
    taken literally (Milvus needs its own escaping: qa.store.milvus._like_pattern)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


ISO_DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"  # a `published` that filters read as a date


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
    if filters.as_of:  # ISO dates compare as text; an unreadable date counts as undated
        clauses.append("(a.published NOT GLOB ? OR a.published <= ?)")
        args += [ISO_DATE_GLOB, filters.as_of]
    return " AND ".join(clauses), args


def connect(db_path: Path) -> sqlite3.Connection:
    """A connection in WAL mode (readers never wait for the writer) with durable commits; the WAL file is cut
    back to a few MB after each checkpoint instead of keeping the size of the largest commit."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=60, check_same_thread=False)
    add_functions(conn)
    _set_wal(conn, timeout=60)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
    return conn


def create_database(db_path: Path) -> None:
    """A new qa.sqlite with its tables, made under a temporary name and linked into place, so the index file
    never exists half made (an empty or table-less qa.sqlite is then always damage). When another process
    created it first, its file is kept."""
    tmp = db_path.with_name(f".{db_path.name}.new-{os.getpid()}-{threading.get_ident()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        # Before any table: a chunk row (~2.5 KB) fills most of a 4 KB page alone; a 16 KB page holds six
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        prepare(conn, db_path.parent)
        conn.execute("PRAGMA journal_mode=WAL")  # recorded in the file: every later connection uses WAL
    finally:
        conn.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, db_path)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        if not db_path.exists():
            os.replace(tmp, db_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def check_not_empty(db_path: Path) -> None:
    """A qa.sqlite of 0 bytes (truncated, or emptied) is damage; SQLite would read it as a new, empty index."""
    wal = db_path.with_name(db_path.name + "-wal")
    if db_path.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        raise IndexCorrupt(
            f"index at {db_path.parent}/ is damaged: {db_path.name} is empty (0 bytes), so every article it held "
            "is gone. Nothing was created over it; delete the folder and re-index (or restore it from a backup)"
        )


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy committed pages from the WAL into qa.sqlite (without waiting for readers), so the folder holds
    the index once, not once more in the WAL."""
    with contextlib.suppress(sqlite3.Error):  # best effort: never hides the error of the commit it follows
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def truncate_wal(conn: sqlite3.Connection) -> None:
    """When a writer finishes: checkpoint everything and cut the WAL file to 0 bytes, so an idle index folder holds
    the index once. Waits at most 0.2 s for readers of older snapshots; then it stays a passive checkpoint."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA busy_timeout = 200")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.execute("PRAGMA busy_timeout = 60000")  # connect()'s timeout
    checkpoint(conn)


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
    """Create the tables of a new index (all in one transaction), or check and upgrade an existing one. An index
    missing one of its tables is damaged: that is said, and nothing is created over what is left of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables & set(TABLES):
            missing = [t for t in TABLES if t not in tables]
            if missing:
                names = ", ".join(missing)
                raise IndexCorrupt(
                    f"index at {path}/ is damaged: its table(s) {names} are missing. Nothing was changed; "
                    "delete the folder and re-index (or restore it from a backup)"
                )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        version = read_meta(conn).get("schema_version")
        if version is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('stories_complete', '1')")  # nothing to backfill
        elif int(version) > SCHEMA_VERSION:
            raise IndexCorrupt(
                f"index at {path}/ has schema {version}, this version reads up to {SCHEMA_VERSION}: "
                "use a newer release of this program or re-index into a new folder"
            )
        else:
            if version == "1":
                _upgrade_from_1(conn)
            if "fts" in tables:
                _drop_fts(conn)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _upgrade_from_1(conn: sqlite3.Connection) -> None:
    """Schema 1 had no sentence vectors: add the empty column (until then answers embed those sentences per
    question), and mark every file and article as changed, so the next `qa index` embeds them again with
    sentence vectors (feeds too: their entries no longer match the stored hash). Schema 2 gains only the
    dense_removed table (created above), read by qa/store/faiss_index.py and faiss_state.py."""
    if "sentence_vectors" not in {r[1] for r in conn.execute("PRAGMA table_info(chunks)")}:
        conn.execute("ALTER TABLE chunks ADD COLUMN sentence_vectors BLOB")
        conn.execute("UPDATE files SET size = -1")
        conn.execute("UPDATE articles SET content_hash = ''")


def _drop_fts(conn: sqlite3.Connection) -> None:
    """Schema 4 searched BM25 with an FTS5 table; the in-memory index (qa/store/bm25_index.py) replaces it. Until
    a writer writes its first BM25 file, a process that opens the index tokenizes the chunks itself."""
    conn.execute("DROP TABLE IF EXISTS fts")
    conn.execute("DROP VIEW IF EXISTS fts_source")


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
