"""How vectors are stored: chunk vectors int8 with a scale each (a cosine moves by < 0.003), sentence vectors 4-bit
with a scale each (~0.005 on average; they only pre-select and score sentences, the chosen ones are embedded alone).
Checked on real MiniLM vectors. Rows of earlier releases (float32 / float16 chunk vectors, float16 / int8 sentence
vectors) are still read, also mixed in one index, and a blob of the wrong size is an error, never garbage."""

from __future__ import annotations

import numpy as np
import pytest

from qa.indexing.embed import get_embedder
from qa.store.codec import decode_sentences, decode_vector, decode_vectors, encode_sentences, encode_vector
from tests.helpers import SEEDS

QUESTIONS = ["Why did Russia decline?", "Who met in Paris?", "What happened in Syria?"]


def _seed_sentences() -> list[str]:
    text = next(SEEDS.glob("*.txt")).read_text()
    return [s for s in text.replace("\n", " ").split(". ") if len(s) > 20][:40]


def test_4_bit_sentence_vectors_keep_cosines_near_float32_in_a_quarter_of_the_bytes():
    sentences = _seed_sentences()
    embedder = get_embedder()
    vectors, questions = embedder.encode(sentences), embedder.encode(QUESTIONS)
    blob = encode_sentences(vectors)
    assert len(blob) == len(sentences) * (192 + 2)  # vs 386 in int8, 768 in float16
    back = decode_sentences(blob, len(sentences), 384)
    error = np.abs(back @ questions.T - vectors @ questions.T)
    assert error.mean() < 0.01 and error.max() < 0.05
    assert np.allclose(np.linalg.norm(back, axis=1), 1, atol=1e-5)
    best = np.argsort(-(vectors @ questions.T), axis=0)[:3]  # the sentences a question would read first
    again = np.argsort(-(back @ questions.T), axis=0)[:8]
    assert all(set(best[:, q]) <= set(again[:, q]) for q in range(len(QUESTIONS)))


def test_sentence_rows_of_earlier_releases_are_read_and_wrong_sizes_refused():
    vectors = np.eye(3, 8, dtype=np.float32)
    np.testing.assert_allclose(decode_sentences(vectors.astype(np.float16).tobytes(), 3, 8), vectors)
    int8 = np.float16(1 / 127).tobytes() * 3 + (vectors * 127).astype(np.int8).tobytes()  # the previous release
    np.testing.assert_allclose(decode_sentences(int8, 3, 8), vectors, atol=1e-3)
    odd = np.random.default_rng(0).normal(size=(4, 7)).astype(np.float32)
    odd /= np.linalg.norm(odd, axis=1, keepdims=True)
    assert np.all(np.sum(decode_sentences(encode_sentences(odd), 4, 7) * odd, axis=1) > 0.97)  # an odd dimension
    with pytest.raises(ValueError, match="sentence vectors"):
        decode_sentences(b"\x00" * 7, 3, 8)
    with pytest.raises(ValueError, match="a 2-d vector in a 16-d index"):
        decode_vector(b"\x00" * 8, 16)


def test_chunk_vectors_are_int8_and_float16_or_float32_rows_of_earlier_releases_are_read():
    vectors = get_embedder().encode(["Russia declined the invitation.", "The port reopened on Saturday."])
    questions = get_embedder().encode(QUESTIONS)
    blob = encode_vector(vectors[0])
    assert len(blob) == 384 + 2  # a quarter of the float32 row
    back = decode_vector(blob, 384)
    assert np.abs(questions @ back - questions @ vectors[0]).max() < 0.003
    np.testing.assert_array_equal(decode_vector(vectors[0].astype(np.float32).tobytes(), 384), vectors[0])
    f16 = vectors[1].astype(np.float16).tobytes()
    mixed = decode_vectors([blob, f16, vectors[1].astype(np.float32).tobytes()], 384)  # an index mid-upgrade
    assert mixed.shape == (3, 384) and mixed.dtype == np.float32
    np.testing.assert_allclose(mixed, vectors[[0, 1, 1]], atol=2e-3)
    np.testing.assert_array_equal(decode_vectors([blob, blob], 384), np.stack([back, back]))
    with pytest.raises(ValueError, match="a 95-d vector in a 384-d index"):
        decode_vectors([blob, b"\x00" * 380], 384)
