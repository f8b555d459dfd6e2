"""The rows one commit writes and removes: articles, their chunks (text as a span of the article's text, vectors
through qa/store/codec.py) and their story membership."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

import numpy as np

from qa.store.base import StoreError, Upsert
from qa.store.codec import decode_vector, encode_sentences, encode_vector
from qa.stories import store as stories


def delete_articles(conn: sqlite3.Connection, article_ids: Sequence[str]) -> list[int]:
    """Remove these articles with their chunks; returns the chunk ids that went."""
    removed: list[int] = []
    for aid in article_ids:
        removed += [r[0] for r in conn.execute("SELECT id FROM chunks WHERE article_id = ?", (aid,))]
        stories.remove(conn, [aid])
        conn.execute("DELETE FROM chunks WHERE article_id = ?", (aid,))
        conn.execute("DELETE FROM articles WHERE id = ?", (aid,))
    return removed


def insert(conn: sqlite3.Connection, upserts: Sequence[Upsert]) -> tuple[list[tuple[int, str, str]], np.ndarray]:
    """Write the articles and chunks; returns (chunk id, title, text) of each new chunk and their vectors."""
    added: list[tuple[int, str, str]] = []
    vectors: list[np.ndarray] = []
    now = time.time()
    for upsert in upserts:
        a, chunks, vecs = upsert.article, upsert.chunks, upsert.vectors
        per_sentence = [None] * len(chunks) if upsert.sentence_vectors is None else upsert.sentence_vectors
        conn.execute(
            "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (a.id, a.title, a.text, a.source, a.url, a.published, a.content_hash, a.origin, now),
        )
        for chunk, vec, sentence_vecs in zip(chunks, vecs, per_sentence, strict=True):
            vec = np.ascontiguousarray(vec, dtype=np.float32)
            if not np.all(np.abs(vec) <= 1.0001):  # unit vectors (also: no NaN): inside the FAISS file's [-1, 1]
                raise StoreError(f"chunk {chunk.chunk_id}: its vector is not a unit vector")
            if sentence_vecs is not None and (
                np.shape(sentence_vecs) != (len(chunk.sentences), vec.size)
                or not np.all(np.abs(sentence_vecs) <= 1.0001)  # unit vectors (also: no NaN)
            ):
                raise StoreError(f"chunk {chunk.chunk_id}: sentence vectors are not one unit vector a sentence")
            blob = encode_vector(vec)
            vec = decode_vector(blob, vec.size)  # as stored: searches before and after a reopen agree
            span = a.text[chunk.start : chunk.end] == chunk.text  # then only its offsets are stored
            cur = conn.execute(
                "INSERT INTO chunks (chunk_id, article_id, ordinal, start, end, text, sentences, vector, "
                "sentence_vectors) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    chunk.chunk_id,
                    a.id,
                    chunk.ordinal,
                    chunk.start,
                    chunk.end,
                    "" if span else chunk.text,
                    json.dumps(chunk.sentences),
                    blob,
                    None if sentence_vecs is None else encode_sentences(sentence_vecs),
                ),
            )
            added.append((int(cur.lastrowid), a.title, chunk.text))
            vectors.append(vec.reshape(1, -1))
    return added, (np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32))
