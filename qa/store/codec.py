"""How vectors are stored in SQLite: small, and read back as data (numpy from bytes), never as code.

Chunk vectors are int8 with one float16 scale a vector (dim + 2 bytes): a cosine moves by < 0.003, and they only
re-score the candidates the FAISS file found and seed the story vectors. Sentence vectors are 4-bit with one float16
scale a sentence (dim / 2 + 2 bytes): they only pre-select the sentences embedded alone at answer time and score
the others, where a cosine off by ~0.005 on average moved rtqa-2023-dev and squad2-dev by at most one question. Rows of
earlier releases (float32 and float16 chunk vectors, float16 and int8 sentence vectors) are still read, mixed in
one index too: the blob's length tells its type.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FORMAT = "int8-chunks-4bit-sentences"  # part of qa eval's index cache key: a new format means re-indexing there
_STEP = 0.375  # 4-bit step in units of the row's RMS value: 15 levels cover +-2.6 RMS (best of 0.3-0.45 on MiniLM)


def encode_vector(vector: np.ndarray) -> bytes:
    """[float16 scale][int8 codes]: the largest |value| maps to 127."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    scale = np.float16(np.abs(v).max(initial=0.0) / 127.0)
    safe = np.float32(scale) if scale > 0 else np.float32(1.0)
    codes = np.clip(np.rint(v / safe), -127, 127).astype(np.int8)
    return scale.tobytes() + codes.tobytes()


def decode_vector(blob: bytes, dim: int) -> np.ndarray:
    """One chunk vector (float32) from int8, float16 or float32 bytes; ValueError when it is none of those sizes
    for a `dim`-d index."""
    if dim and len(blob) == dim + 2:
        return _int8(np.frombuffer(blob, dtype=np.uint8).reshape(1, -1))[0]
    if dim and len(blob) == 2 * dim:
        return np.frombuffer(blob, dtype=np.float16).astype(np.float32)
    if len(blob) % 4 or (dim and len(blob) != 4 * dim):
        raise ValueError(f"a {len(blob) // 4}-d vector in a {dim}-d index")
    return np.frombuffer(blob, dtype=np.float32)


def decode_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Many chunk vectors as one matrix (one numpy call, not one per row, when they share a type)."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    if dim and all(len(b) == dim + 2 for b in blobs):
        return _int8(np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(-1, dim + 2))
    if dim and all(len(b) == 2 * dim for b in blobs):
        return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(-1, dim).astype(np.float32)
    if dim and all(len(b) == 4 * dim for b in blobs):
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, dim).copy()
    return np.vstack([decode_vector(b, dim) for b in blobs])


def _int8(rows: np.ndarray) -> np.ndarray:
    scale = rows[:, :2].copy().view(np.float16).astype(np.float32)
    return rows[:, 2:].view(np.int8).astype(np.float32) * scale


def encode_sentences(vectors: np.ndarray) -> bytes:
    """Rows of unit vectors as [float16 scale per row][4-bit codes, two a byte]: code c stands for (c - 8) * scale,
    c in 1..15 (zero exact), the scale a fixed share of the row's RMS value (outliers clipped: finer steps)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    rows, dim = vectors.shape
    scale = (np.sqrt(np.mean(vectors**2, axis=1)) * _STEP).astype(np.float16) if rows else np.zeros(0, np.float16)
    safe = np.where(scale > 0, scale.astype(np.float32), 1.0)
    codes = (np.clip(np.rint(vectors / safe[:, None]), -7, 7) + 8).astype(np.uint8)
    if dim % 2:
        codes = np.hstack([codes, np.full((rows, 1), 8, np.uint8)])
    return scale.tobytes() + (codes[:, 0::2] | (codes[:, 1::2] << 4)).tobytes()


def decode_sentences(blob: bytes, rows: int, dim: int) -> np.ndarray:
    """Sentence vectors (`rows` x `dim`, unit length again) from any stored type; ValueError if none fits."""
    if len(blob) == rows * dim * 2:  # float16, two releases back
        return np.frombuffer(blob, dtype=np.float16).reshape(rows, dim).astype(np.float32)
    half = (dim + 1) // 2
    if len(blob) == rows * (dim + 2):  # int8, the previous release
        scale = np.frombuffer(blob[: 2 * rows], dtype=np.float16).astype(np.float32)
        out = np.frombuffer(blob[2 * rows :], dtype=np.int8).reshape(rows, dim).astype(np.float32) * scale[:, None]
    elif len(blob) == rows * (half + 2):
        scale = np.frombuffer(blob[: 2 * rows], dtype=np.float16).astype(np.float32)
        packed = np.frombuffer(blob[2 * rows :], dtype=np.uint8).reshape(rows, half)
        codes = np.empty((rows, 2 * half), dtype=np.float32)
        codes[:, 0::2], codes[:, 1::2] = packed & 15, packed >> 4
        out = (codes[:, :dim] - 8) * scale[:, None]
    else:
        raise ValueError(f"{len(blob)} bytes of sentence vectors for {rows} sentences of {dim} values")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)
