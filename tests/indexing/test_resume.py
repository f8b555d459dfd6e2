"""Commits inside one file, and a re-run after a kill continuing from what was committed (qa/indexing/indexer.py:
`_pieces`, `_embed_and_commit`). The planner-level tests commit with made-up vectors like tests/indexing/
test_planner.py; the last two run the real model, the slow one the real `qa index` killed with SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import qa
from qa.indexing.chunk import chunk_article
from qa.indexing.indexer import _FileWork, _pieces, _plan_files
from qa.schema import Chunk, IndexReport
from qa.settings import Settings
from qa.sources.ingest import discover, load_file, make_article
from qa.store import FileStamp, Upsert, VectorStore, faiss_store
from tests.helpers import DATA, ROOT, SHARED_EVAL

EVAL_CORPUS = SHARED_EVAL / "rtqa-2023-dev" / "corpus.jsonl"
SENTENCE = "Sentence {n} of story {i} says something about the harbour, the tolls and the weather in May."


def _record(i: int, sentences: int = 12) -> dict:
    text = " ".join(SENTENCE.format(n=n, i=i) for n in range(sentences))
    return {"doc_id": f"s{i}", "title": f"Story {i}", "text": text}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _chunked(work: list[_FileWork], settings: Settings) -> dict[str, list[Chunk]]:
    return {a.id: chunk_article(a, settings.chunk_chars, settings.chunk_overlap_chars) for w in work for a in w.upserts}


def _plan(folder: Path, store: VectorStore, settings: Settings) -> tuple[list[_FileWork], IndexReport]:
    files, rejected = discover([folder])
    report = IndexReport(rejected=rejected)
    return _plan_files(files, store, settings, report, set()), report


def _commit_pieces(store: VectorStore, settings: Settings, work: list[_FileWork], pieces: int | None = None) -> int:
    """Commit the first `pieces` pieces of a plan (all: None) as _embed_and_commit does, with one made-up unit
    vector per chunk instead of the model's; stopping early is a run killed after that commit."""
    chunked = _chunked(work, settings)
    done = 0
    for piece in _pieces(work, chunked, settings.commit_every_chunks):
        if pieces is not None and done == pieces:
            break
        upserts = []
        for article in piece.articles:
            vectors = np.zeros((len(chunked[article.id]), 8), dtype=np.float32)
            vectors[:, 0] = 1.0
            upserts.append(Upsert(article, chunked[article.id], vectors))
        store.commit(upserts, piece.deletes, piece.files, "test-model")
        done += 1
    return done


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index", commit_every_chunks=5)


def test_pieces_cut_a_file_at_article_boundaries_and_its_stamp_and_deletes_ride_with_its_last_article(
    settings: Settings,
):
    def articles(name: str, n: int):
        return [
            make_article(title=f"{name}{i}", text=_record(i)["text"], source=name, origin=name, key=f"{name}{i}")
            for i in range(n)
        ]

    big = _FileWork("big.jsonl", FileStamp(1, 2, ("b",)), upserts=articles("big", 6), deletes=["gone-from-big"])
    quiet = _FileWork("quiet.jsonl", FileStamp(3, 4, ()), deletes=["gone-from-quiet"])  # read, nothing to embed
    small = _FileWork("small.txt", None, upserts=articles("small", 1))  # None: no stamp (a refused duplicate)
    sync = _FileWork("", None, deletes=["in-a-gone-file"], forget_files=["gone.txt"])
    work = [sync, big, quiet, small]
    chunked = _chunked(work, settings)
    per_article = len(chunked[big.upserts[0].id])
    assert 1 < per_article < settings.commit_every_chunks  # so pieces hold a few whole articles

    pieces = list(_pieces(work, chunked, settings.commit_every_chunks))
    assert [a for p in pieces for a in p.articles] == big.upserts + small.upserts  # in order, each once
    assert len(pieces) > 2
    for piece in pieces[:-1]:  # full: at least commit_every_chunks, over by less than one article
        assert settings.commit_every_chunks <= piece.chunks < settings.commit_every_chunks + per_article
    holding = {p.articles[-1].title: p for p in pieces}
    assert pieces[0].files == {"gone.txt": None} and pieces[0].deletes == ["in-a-gone-file"]
    # quiet.jsonl has nothing to embed: its stamp and deletes join the piece open when it comes, big's last
    assert holding["big5"].files == {"big.jsonl": big.stamp, "quiet.jsonl": quiet.stamp}
    assert holding["big5"].deletes == ["gone-from-big", "gone-from-quiet"]
    assert holding["small0"] is pieces[-1] and pieces[-1].files == {"small.txt": None}
    assert [sum("big.jsonl" in p.files for p in pieces), sum("gone-from-big" in p.deletes for p in pieces)] == [1, 1]


def test_a_killed_run_resumes_and_drops_what_left_the_file_in_between(
    folder: Path, store: VectorStore, settings: Settings
):
    path = folder / "wire.jsonl"
    records = [_record(i) for i in range(6)]
    _write_jsonl(path, records)
    work, _ = _plan(folder, store, settings)
    assert _commit_pieces(store, settings, work, pieces=2) == 2  # killed after the second commit
    committed = set(store.article_hashes())
    assert 0 < len(committed) < 6 and store.file_stamps() == {}
    assert store.generation() == 2

    # Before the re-run, a committed article leaves the file (it is in no stamp: it must still go).
    left = sorted(committed)[0]
    _write_jsonl(path, [r for r in records if r["doc_id"] != left])
    work, report = _plan(folder, store, settings)
    [item] = work
    assert {a.id for a in item.upserts} == {r["doc_id"] for r in records} - committed
    assert sorted(report.unchanged) == sorted(committed - {left}) and report.removed == [left]
    assert item.deletes == [left] and item.stamp is not None

    _commit_pieces(store, settings, work)
    ids = tuple(r["doc_id"] for r in records if r["doc_id"] != left)
    assert set(store.article_hashes()) == set(ids) and store.check() == []
    assert [s.article_ids for s in store.file_stamps().values()] == [ids]


def test_an_article_moved_unchanged_to_a_file_read_later_is_kept(folder: Path, store: VectorStore, settings: Settings):
    # The first file's diff used to delete it (it left that file) while the second one kept it as unchanged.
    _write_jsonl(folder / "a.jsonl", [_record(1), _record(2)])
    _write_jsonl(folder / "b.jsonl", [_record(3)])
    _commit_pieces(store, settings, _plan(folder, store, settings)[0])
    _write_jsonl(folder / "a.jsonl", [_record(2)])
    _write_jsonl(folder / "b.jsonl", [_record(3), _record(1)])
    work, report = _plan(folder, store, settings)
    assert report.removed == [] and [a for w in work for a in w.upserts] == []
    _commit_pieces(store, settings, work)
    assert set(store.article_hashes()) == {"s1", "s2", "s3"} and store.check() == []


def test_one_jsonl_file_is_committed_in_several_generations(tmp_path: Path):
    assistant = qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive", commit_every_chunks=1))
    path = tmp_path / "wire.jsonl"
    path.write_text((DATA / "articles" / "wire.jsonl").read_text())
    report = assistant.index([path])
    store = assistant.store()
    assert len(report.added) == 3 and report.chunks_embedded >= 3
    assert store.generation() == 3  # one commit an article, not one for the file
    assert [s.article_ids for s in store.file_stamps().values()] == [("wire-001", "wire-002", "wire-003")]
    assert store.check() == []


# -- the real CLI, killed after its first commit ------------------------------------------------------------------


def _eval_articles(path: Path, n: int) -> None:
    """The `n` shortest articles of the shared evaluation corpus (real news, ~100 chunks: the whole corpus's
    first 40 are ~900, minutes of embedding on 2 cores), in corpus order, as one JSONL file of the fields
    `qa index` reads."""
    assert EVAL_CORPUS.exists(), f"needs the shared evaluation corpus at {EVAL_CORPUS} (shared/ beside the repo)"
    keys = ("doc_id", "title", "text", "url", "publish_date", "source")
    records = [json.loads(line) for line in EVAL_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    shortest = set(sorted(range(len(records)), key=lambda i: len(records[i]["text"]))[:n])
    path.write_text(
        "".join(json.dumps({k: r[k] for k in keys if k in r}) + "\n" for i, r in enumerate(records) if i in shortest),
        encoding="utf-8",
    )


def _qa_index(path: Path, index: Path) -> list[str]:
    return [sys.executable, "-m", "qa", "index", str(path), "--index", str(index), "--quiet"]


def _generation(db: Path) -> int:
    """The committed generation, read the way a second process would while the writer runs (read-only)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # the writer is still creating the schema
        return 0
    return int(row[0]) if row else 0


def _chunks_embedded(output: str) -> int:
    return int(re.search(r"\((\d+) chunks embedded", output).group(1))


@pytest.mark.slow
def test_qa_index_killed_inside_one_jsonl_file_keeps_its_commits_and_a_rerun_embeds_only_the_rest(tmp_path: Path):
    path, index = tmp_path / "corpus.jsonl", tmp_path / "index"
    _eval_articles(path, 40)
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "QA_COMMIT_EVERY_CHUNKS": "8",
        "TQDM_DISABLE": "1",
    }
    command = _qa_index(path, index)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while _generation(index / "qa.sqlite") < 1:
            assert proc.poll() is None, f"qa index exited before its first commit: {proc.communicate()[0]}"
            assert time.monotonic() < deadline, "no commit within 300s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed inside the file, not finished

    settings = Settings(index_dir=index, backend="extractive")
    articles, rejected = load_file(path, settings.max_file_bytes)
    assert len(articles) == 40 and rejected == []
    chunks = {a.id: len(chunk_article(a, settings.chunk_chars, settings.chunk_overlap_chars)) for a in articles}
    store = faiss_store(index)
    killed_at = store.generation()
    committed = set(store.article_hashes())
    assert 0 < len(committed) < 40
    assert store.check() == []
    assert store.file_stamps() == {}  # the stamp waits for the commit with the file's last article

    first = next(a for a in articles if a.id in committed)  # committed articles answer questions already
    assistant = qa.Assistant(settings)
    answer = assistant.ask(f"{first.title.rstrip(' .')}?")
    assert not answer.abstained and first.id in {c.article_id for c in answer.citations}

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    missing = [a.id for a in articles if a.id not in committed]
    assert f"added {len(missing)}, updated 0, unchanged {len(committed)}" in rerun.stdout
    assert _chunks_embedded(rerun.stdout) == sum(chunks[aid] for aid in missing) < sum(chunks.values())
    store = faiss_store(index)
    assert set(store.article_hashes()) == set(chunks) and store.check() == []
    assert store.generation() > killed_at + 1  # the re-run, too, committed inside the file
    assert [s.article_ids for s in store.file_stamps().values()] == [tuple(a.id for a in articles)]
    print(
        f"\n40 articles, {sum(chunks.values())} chunks; killed after {len(committed)} articles; "
        f"rerun embedded {_chunks_embedded(rerun.stdout)}; generation {store.generation()}"
    )

    third = assistant.index([path])  # in this process, whose model is loaded already
    assert (third.chunks_embedded, len(third.unchanged), third.changed) == (0, 40, False)
