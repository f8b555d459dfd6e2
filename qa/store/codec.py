"""How vectors are stored in SQLite: small, and read back as data (numpy from bytes), never as code.

Chunk vectors are float16 (the previous release's float32 rows are still read: the blob length tells which);
the FAISS file holds the same float16 values, so exact re-scoring loses nothing it had. Sentence vectors are int8
with one float16 scale per sentence (1 byte a value instead of 2); rows of an earlier release are float16 and still
read. A cosine of unit vectors moves by < 0.002 either way (tests/store/test_codec.py),
far below the margins the answer stage works with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float16).tobytes()


def decode_vector(blob: bytes, dim: int) -> np.ndarray:
    """One chunk vector (float32) from float16 or, as an earlier release wrote it, float32 bytes; ValueError when
    it is neither size for a `dim`-d index."""
    if dim and len(blob) == 2 * dim:
        return np.frombuffer(blob, dtype=np.float16).astype(np.float32)
    if len(blob) % 4 or (dim and len(blob) != 4 * dim):
        raise ValueError(f"a {len(blob) // 4}-d vector in a {dim}-d index")
    return np.frombuffer(blob, dtype=np.float32)


def decode_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Many chunk vectors as one matrix (one numpy call, not one per row)."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    if dim and all(len(b) == 2 * dim for b in blobs):
        return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(-1, dim).astype(np.float32)
    if dim and all(len(b) == 4 * dim for b in blobs):
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, dim).copy()
    return np.vstack([decode_vector(b, dim) for b in blobs])


def encode_sentences(vectors: np.ndarray) -> bytes:
    """Rows of unit vectors as [float16 scale per row][int8 codes]: the largest |value| of a row maps to 127."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scale = np.abs(vectors).max(axis=1, initial=0.0) / 127.0
    scale = scale.astype(np.float16)
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
    codes = np.clip(np.rint(vectors / safe[:, None]), -127, 127).astype(np.int8)
    return scale.tobytes() + codes.tobytes()


def decode_sentences(blob: bytes, rows: int, dim: int) -> np.ndarray:
    """Sentence vectors (`rows` x `dim`, unit length again) from either storage type; ValueError if neither fits."""
    if len(blob) == rows * dim * 2:  # float16, the previous release
        return np.frombuffer(blob, dtype=np.float16).reshape(rows, dim).astype(np.float32)
    if len(blob) != rows * (dim + 2):
        raise ValueError(f"{len(blob)} bytes of sentence vectors for {rows} sentences of {dim} values")
    scale = np.frombuffer(blob[: 2 * rows], dtype=np.float16).astype(np.float32)
    codes = np.frombuffer(blob[2 * rows :], dtype=np.int8).reshape(rows, dim).astype(np.float32)
    out = codes * scale[:, None]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)
