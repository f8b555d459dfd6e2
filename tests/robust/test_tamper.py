"""Index files are data, not code: a tampered index fails with a clear IndexCorrupt (what happened, what to do)
and runs nothing. tests/test_store.py covers a flipped FAISS byte and a garbage database; these are the rest."""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import faiss
import pytest

import qa.store
import qa.store.sql
from qa.store import IndexCorrupt, faiss_store
from tests.store.contract import dense_ids, upsert


class Payload:
    """Unpickling this runs a shell command that creates the `marker` file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "the-payload-ran"


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    store = faiss_store(tmp_path / "store", create=True)
    upsert(store, "a", "The harbour bridge opened.", axis=0)
    upsert(store, "b", "The wildfire spread.", axis=1)
    return tmp_path / "store"


def _current_faiss(folder: Path) -> Path:
    return folder / f"faiss-{faiss_store(folder).generation()}.index"


def _sql(folder: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(folder / "qa.sqlite")
    conn.execute(statement, args)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _replace_faiss(folder: Path, data: bytes, record_checksum: bool) -> None:
    _current_faiss(folder).write_bytes(data)
    if record_checksum:  # the tamperer also rewrote the checksum in the database
        _sql(folder, "UPDATE meta SET value = ? WHERE key = 'faiss_sha256'", hashlib.sha256(data).hexdigest())


def _search(folder: Path) -> list[str]:
    return dense_ids(faiss_store(folder), 0)


@pytest.mark.parametrize("record_checksum", [False, True], ids=["checksum-kept", "checksum-rewritten"])
def test_a_pickle_payload_as_the_faiss_file_is_refused_and_never_run(
    store_dir: Path, marker: Path, record_checksum: bool
):
    pickle.loads(pickle.dumps(Payload(marker.with_suffix(".control"))))  # the payload works when unpickled
    assert marker.with_suffix(".control").exists()
    _replace_faiss(store_dir, pickle.dumps(Payload(marker)), record_checksum)
    match = "not the 16-d FAISS index" if record_checksum else "does not match the checksum"
    with pytest.raises(IndexCorrupt, match=match):
        _search(store_dir)
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("record_checksum", [False, True], ids=["checksum-kept", "checksum-rewritten"])
def test_a_truncated_faiss_file_is_refused(store_dir: Path, record_checksum: bool):
    data = _current_faiss(store_dir).read_bytes()
    _replace_faiss(store_dir, data[: len(data) // 2], record_checksum)
    with pytest.raises(IndexCorrupt, match="Delete the index folder and re-index"):
        _search(store_dir)


@pytest.mark.parametrize("index", [faiss.IndexFlatIP(16), faiss.IndexIDMap2(faiss.IndexFlatIP(8))], ids=["flat", "8d"])
def test_a_valid_faiss_file_of_another_kind_is_refused(store_dir: Path, index: faiss.Index):
    _replace_faiss(store_dir, faiss.serialize_index(index).tobytes(), record_checksum=True)
    with pytest.raises(IndexCorrupt, match="not the 16-d FAISS index this program writes"):
        _search(store_dir)


def test_an_altered_checksum_in_the_database_is_refused(store_dir: Path):
    _sql(store_dir, "UPDATE meta SET value = ? WHERE key = 'faiss_sha256'", "0" * 64)
    with pytest.raises(IndexCorrupt, match="does not match the checksum"):
        _search(store_dir)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_a_truncated_database_gives_a_clear_error(store_dir: Path, keep: float):
    _sql(store_dir, "SELECT 1")  # checkpoint: everything in qa.sqlite itself
    db = store_dir / "qa.sqlite"
    db.write_bytes(db.read_bytes()[: int(db.stat().st_size * keep)])
    with pytest.raises(IndexCorrupt, match="damaged"):
        store = faiss_store(store_dir)
        store.check()
        store.stats()


@pytest.mark.parametrize(
    ("statement", "match"),
    [
        ("UPDATE meta SET value = 'abc' WHERE key = 'generation'", "generation = 'abc', not a number"),
        ("UPDATE chunks SET sentences = '{'", "chunk 'a:0' of the index is damaged"),
        ("UPDATE chunks SET vector = x'00'", "chunk 'a:0' of the index is damaged"),
        ("UPDATE chunks SET vector = zeroblob(8)", "a 2-d vector in a 16-d index"),
    ],
)
def test_altered_records_give_a_clear_error(store_dir: Path, statement: str, match: str):
    _sql(store_dir, statement)
    with pytest.raises(IndexCorrupt, match=match):
        _search(store_dir)


@pytest.mark.slow
def test_the_cli_reports_a_tampered_index_in_one_line_without_a_traceback(store_dir: Path, marker: Path):
    _replace_faiss(store_dir, pickle.dumps(Payload(marker)), record_checksum=True)
    db = store_dir / "qa.sqlite"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa",
            "ask",
            "Did the bridge open?",
            "--index",
            str(store_dir),
            "--backend",
            "extractive",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("qa: error: ") and "was not used" in out.stderr
    db.write_bytes(db.read_bytes()[:4096])
    out = subprocess.run(
        [sys.executable, "-m", "qa", "stats", "--index", str(store_dir)], capture_output=True, text=True
    )
    assert out.returncode == 1 and out.stderr.startswith("qa: error: ") and "damaged" in out.stderr
    assert not marker.exists()


def test_the_store_reads_no_code_from_the_index_folder():
    source = Path(qa.store.__file__).read_text() + Path(qa.store.sql.__file__).read_text()
    for loader in ("import pickle", "pickle.load", "np.load(", "marshal.", "eval(", "exec(", "joblib", "torch.load"):
        assert loader not in source, loader
