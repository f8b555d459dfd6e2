"""Indexes written by earlier releases open and answer, and the next `qa index` carries them onto the new layout,
without embedding their articles again: main before issue 16 (schema 2, one whole float32 FAISS file per
generation, float16 sentence vectors, no change log) and the release before the 8-bit layout (float16 chunk
vectors and FAISS file, int8 sentence vectors). The old index is written here the way that release wrote it (its
schema and its record format, copied below), with the real model, so no binary fixture is needed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

import qa
from qa.indexing.chunk import chunk_article
from qa.indexing.indexer import embed_text
from qa.settings import Settings
from qa.sources.ingest import load_file
from qa.store import SCHEMA_VERSION, faiss_store
from qa.store.codec import decode_sentences, decode_vector
from tests.helpers import SEEDS

OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE articles (
    id TEXT PRIMARY KEY, title TEXT, text TEXT, source TEXT, url TEXT, published TEXT,
    content_hash TEXT NOT NULL, origin TEXT, indexed_at REAL);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id TEXT UNIQUE NOT NULL,
    article_id TEXT NOT NULL REFERENCES articles(id), ordinal INTEGER, start INTEGER, end INTEGER,
    text TEXT NOT NULL, sentences TEXT NOT NULL, vector BLOB NOT NULL, sentence_vectors BLOB);
CREATE INDEX chunks_article ON chunks(article_id);
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, articles TEXT);
CREATE VIRTUAL TABLE fts USING fts5(title, text, tokenize='porter unicode61');
"""


def write_old_release_index(folder: Path, assistant: qa.Assistant) -> None:
    """The seed articles indexed as the previous release stored them (generation 1)."""
    folder.mkdir(parents=True)
    [path] = sorted(SEEDS.glob("*.txt"))
    articles, _ = load_file(path, 10**9)
    conn = sqlite3.connect(folder / "qa.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(OLD_SCHEMA)
    ids, vectors = [], []
    for a in articles:
        conn.execute(
            "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (a.id, a.title, a.text, a.source, a.url, a.published, a.content_hash, a.origin, time.time()),
        )
        chunks = chunk_article(a)
        texts, spans = zip(*(embed_text(a, c) for c in chunks), strict=True)
        chunk_vecs, sentence_vecs = assistant.embedder.encode_chunks(list(texts), list(spans))
        for c, vec, sents in zip(chunks, chunk_vecs, sentence_vecs, strict=True):
            cur = conn.execute(
                "INSERT INTO chunks (chunk_id, article_id, ordinal, start, end, text, sentences, vector, "
                "sentence_vectors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.chunk_id,
                    a.id,
                    c.ordinal,
                    c.start,
                    c.end,
                    c.text,
                    json.dumps(c.sentences),
                    vec.astype(np.float32).tobytes(),
                    sents.astype(np.float16).tobytes(),
                ),
            )
            conn.execute("INSERT INTO fts (rowid, title, text) VALUES (?, ?, ?)", (cur.lastrowid, a.title, c.text))
            ids.append(cur.lastrowid)
            vectors.append(vec)
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(len(vectors[0])))
    index.add_with_ids(np.vstack(vectors).astype(np.float32), np.array(ids, dtype=np.int64))
    data = faiss.serialize_index(index).tobytes()
    (folder / "faiss-1.index").write_bytes(data)
    st = path.stat()
    conn.execute(
        "INSERT INTO files VALUES (?, ?, ?, ?)",
        (str(path.resolve()), st.st_size, st.st_mtime_ns, json.dumps([a.id for a in articles])),
    )
    meta = {
        "schema_version": "2",
        "generation": "1",
        "dim": str(len(vectors[0])),
        "embed_model": assistant.embedder.name,
        "faiss_sha256": hashlib.sha256(data).hexdigest(),
        "updated_at": str(time.time()),
    }
    conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
    conn.close()


@pytest.mark.parametrize("rewrite_rows", [20_000, 0], ids=["small-index", "log-on-the-old-file"])
def test_an_index_of_the_previous_release_opens_answers_and_the_next_index_run_upgrades_it(
    tmp_path: Path, rewrite_rows: int
):
    settings = Settings(
        index_dir=tmp_path / "index",
        backend="extractive",
        vector_rewrite_rows=rewrite_rows,
        vector_compact_fraction=10.0,  # no compaction at the end of the run: the log case stays a log
    )
    write_old_release_index(settings.index_dir, qa.Assistant(settings))
    assistant = qa.Assistant(settings)
    answer = assistant.ask("Why did Russia decline?")
    assert not answer.abstained and "one-sided" in answer.citations[0].quote
    assert all(p.sentence_vectors is not None for p in answer.passages)  # the float16 ones are read
    assert assistant.store().check() == []
    with sqlite3.connect(settings.index_dir / "qa.sqlite") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)

    # The next run: the seed is unchanged (nothing embedded again); a new article is added on the new layout.
    news = tmp_path / "news"
    news.mkdir()
    (news / "bridge.txt").write_text("Harbour Bridge Opens\n\nThe harbour bridge in Port Elling opened on Monday.\n")
    report = assistant.index([SEEDS, news])
    assert len(report.unchanged) == 1 and len(report.added) == 1
    with sqlite3.connect(settings.index_dir / "qa.sqlite") as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    assert meta["faiss_generation"] == meta["generation"] == "2"
    files = sorted(p.name for p in settings.index_dir.glob("faiss-*.index"))
    if rewrite_rows:  # small: the base was rewritten in the new format
        assert meta["faiss_base"] == "2" and "faiss-2.index" in files
    else:  # only logged: the old file stays the base, the log holds the new article
        assert meta["faiss_base"] == "1" and files == ["faiss-1.index"]
    for store in (assistant.store(), faiss_store(settings.index_dir, settings=settings)):  # this and a new process
        assert store.check() == [] and store.stats()["articles"] == 2
    fresh = qa.Assistant(settings)
    assert "one-sided" in fresh.ask("Why did Russia decline?").citations[0].quote
    assert "Port Elling" in fresh.ask("Where did the harbour bridge open?").citations[0].quote


def rewrite_as_last_release(folder: Path) -> None:
    """The index as the release before the 8-bit layout stored it: float16 chunk vectors, int8 sentence vectors
    (one float16 scale a row) and a float16 flat FAISS base (the encodings copied from that release)."""
    conn = sqlite3.connect(folder / "qa.sqlite", isolation_level=None)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    dim = int(meta["dim"])
    ids, vectors = [], []
    for rowid, blob, spans, sents in conn.execute("SELECT id, vector, sentences, sentence_vectors FROM chunks"):
        vec = decode_vector(blob, dim)
        rows = decode_sentences(sents, len(json.loads(spans)), dim)
        scale = (np.abs(rows).max(axis=1) / 127.0).astype(np.float16)
        codes = np.clip(np.rint(rows / scale.astype(np.float32)[:, None]), -127, 127).astype(np.int8)
        conn.execute(
            "UPDATE chunks SET vector = ?, sentence_vectors = ? WHERE id = ?",
            (vec.astype(np.float16).tobytes(), scale.tobytes() + codes.tobytes(), rowid),
        )
        ids.append(rowid)
        vectors.append(vec)
    index = faiss.IndexIDMap2(
        faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    )
    index.add_with_ids(np.vstack(vectors), np.array(ids, dtype=np.int64))
    data = faiss.serialize_index(index).tobytes()
    (folder / f"faiss-{meta['faiss_base']}.index").write_bytes(data)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'faiss_sha256'", (hashlib.sha256(data).hexdigest(),))
    conn.close()


def test_an_index_of_the_last_release_answers_and_its_next_commit_writes_the_8_bit_layout(tmp_path: Path):
    settings = Settings(index_dir=tmp_path / "index", backend="extractive")
    qa.Assistant(settings).index([SEEDS])
    rewrite_as_last_release(settings.index_dir)
    assistant = qa.Assistant(settings)
    answer = assistant.ask("Why did Russia decline?")
    assert not answer.abstained and "one-sided" in answer.citations[0].quote
    assert all(p.sentence_vectors is not None for p in answer.passages)  # the int8 ones are read
    assert assistant.store().check() == []

    news = tmp_path / "news"
    news.mkdir()
    (news / "bridge.txt").write_text("Harbour Bridge Opens\n\nThe harbour bridge in Port Elling opened on Monday.\n")
    report = assistant.index([SEEDS, news])
    assert len(report.unchanged) == 1 and len(report.added) == 1  # the old rows are kept, not embedded again
    with sqlite3.connect(settings.index_dir / "qa.sqlite") as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        sizes = dict(conn.execute("SELECT length(vector), COUNT(*) FROM chunks GROUP BY 1").fetchall())
    assert set(sizes) == {2 * 384, 384 + 2}  # float16 rows of the seed beside int8 rows of the new article
    base_file = faiss.read_index(str(settings.index_dir / f"faiss-{meta['faiss_base']}.index"))
    base = faiss.downcast_index(base_file.index)  # base_file kept: it owns (and would free) the inner index
    assert base.sq.qtype == faiss.ScalarQuantizer.QT_8bit_uniform and base.ntotal == sum(sizes.values())
    fresh = qa.Assistant(settings)
    assert fresh.store().check() == []
    assert "one-sided" in fresh.ask("Why did Russia decline?").citations[0].quote
    assert "Port Elling" in fresh.ask("Where did the harbour bridge open?").citations[0].quote
