"""Damage is never read as emptiness (issue 11, item 8): a qa.sqlite of 0 bytes, or one that lost its chunks,
files or articles table, is reported as damaged with what to do, and nothing is created over it; a missing index is
still made new. Each case through the store (reading and indexing) and once through the CLI."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qa.store import IndexCorrupt, faiss_store
from tests.store.contract import dense_ids, upsert


def _index(tmp_path: Path) -> Path:
    store = faiss_store(tmp_path / "store", create=True)
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    return tmp_path / "store"


def _drop(table: str):
    def damage(folder: Path) -> None:
        conn = sqlite3.connect(folder / "qa.sqlite")
        conn.execute(f"DROP TABLE {table}")
        conn.commit()
        conn.close()

    return damage


def _empty(folder: Path) -> None:
    for name in ("qa.sqlite-wal", "qa.sqlite-shm"):
        (folder / name).unlink(missing_ok=True)
    (folder / "qa.sqlite").write_bytes(b"")


def _contents(folder: Path) -> tuple:
    """The size of an empty file, or the tables and their row counts."""
    db = folder / "qa.sqlite"
    if not db.stat().st_size:
        return (0,)
    conn = sqlite3.connect(db)
    names = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    counts = [conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names if not n.startswith("fts")]
    conn.close()
    return names, counts


DAMAGE = {
    "0-byte qa.sqlite": (_empty, "is empty \\(0 bytes\\)"),
    "chunks table dropped": (_drop("chunks"), "table\\(s\\) chunks are missing"),
    "files table dropped": (_drop("files"), "table\\(s\\) files are missing"),
    "articles table dropped": (_drop("articles"), "table\\(s\\) articles are missing"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
@pytest.mark.parametrize("create", [False, True], ids=["read", "index"])
def test_a_damaged_index_is_reported_and_never_created_over(tmp_path: Path, case: str, create: bool):
    folder = _index(tmp_path)
    damage, message = DAMAGE[case]
    damage(folder)
    before = _contents(folder)
    with pytest.raises(IndexCorrupt, match=message) as raised:
        faiss_store(folder, create=create)
    assert "delete the folder and re-index" in str(raised.value)
    assert _contents(folder) == before  # nothing was created over what is left


@pytest.mark.parametrize("case", ["0-byte qa.sqlite", "chunks table dropped"])
def test_the_cli_says_the_index_is_damaged_and_fails(tmp_path: Path, case: str):
    folder = _index(tmp_path)
    DAMAGE[case][0](folder)
    for command in (["stats"], ["index", str(tmp_path / "nothing-here")]):
        out = subprocess.run(
            [sys.executable, "-m", "qa", *command, "--index", str(folder)], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("qa: error: ") and "damaged" in out.stderr, out.stderr


def test_a_missing_index_is_still_created_and_a_new_one_is_whole_from_the_start(tmp_path: Path):
    folder = tmp_path / "new" / "index"
    store = faiss_store(folder, create=True)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".qa.sqlite")) == []  # no temp file left
    with sqlite3.connect(folder / "qa.sqlite") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"meta", "articles", "chunks", "files", "dense_removed", "sparse_removed"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    assert dense_ids(faiss_store(folder), 0) == ["a"]
