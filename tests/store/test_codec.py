"""Sentence vectors are stored as int8 with a scale per sentence: half the bytes of float16, and a cosine moves by
less than 0.002, far below the margins the answer stage compares (0.1 and more). Checked on real MiniLM vectors;
rows of the previous release (float16) are still read, and a blob of the wrong size is an error, never garbage.
Chunk vectors are float16; float32 rows of the previous release are read."""

from __future__ import annotations

import numpy as np
import pytest

from qa.indexing.embed import get_embedder
from qa.store.codec import decode_sentences, decode_vector, decode_vectors, encode_sentences, encode_vector
from tests.helpers import SEEDS


def test_int8_sentence_vectors_keep_cosines_within_0_002_of_float32():
    text = next(SEEDS.glob("*.txt")).read_text()
    sentences = [s for s in text.replace("\n", " ").split(". ") if len(s) > 20][:40]
    embedder = get_embedder()
    vectors = embedder.encode(sentences)
    questions = embedder.encode(["Why did Russia decline?", "Who met in Paris?", "What happened in Syria?"])
    blob = encode_sentences(vectors)
    assert len(blob) == len(sentences) * (384 + 2)  # vs 768 a sentence in float16
    back = decode_sentences(blob, len(sentences), 384)
    assert np.abs(back @ questions.T - vectors @ questions.T).max() < 0.002
    assert np.allclose(np.linalg.norm(back, axis=1), 1, atol=1e-5)


def test_float16_rows_of_the_previous_release_are_read_and_wrong_sizes_refused():
    vectors = np.eye(3, 8, dtype=np.float32)
    np.testing.assert_allclose(decode_sentences(vectors.astype(np.float16).tobytes(), 3, 8), vectors)
    np.testing.assert_allclose(decode_sentences(encode_sentences(vectors), 3, 8), vectors, atol=1e-3)
    with pytest.raises(ValueError, match="sentence vectors"):
        decode_sentences(b"\x00" * 7, 3, 8)
    with pytest.raises(ValueError, match="a 2-d vector in a 16-d index"):
        decode_vector(b"\x00" * 8, 16)


def test_chunk_vectors_are_float16_and_float32_rows_of_the_previous_release_are_read():
    vectors = get_embedder().encode(["Russia declined the invitation.", "The port reopened on Saturday."])
    blob = encode_vector(vectors[0])
    assert len(blob) == 2 * 384  # half the float32 row
    np.testing.assert_allclose(decode_vector(blob, 384), vectors[0], atol=1e-3)
    np.testing.assert_array_equal(decode_vector(vectors[0].astype(np.float32).tobytes(), 384), vectors[0])
    mixed = decode_vectors([blob, vectors[1].astype(np.float32).tobytes()], 384)  # an index mid-upgrade
    assert mixed.shape == (2, 384) and mixed.dtype == np.float32
    np.testing.assert_allclose(mixed, vectors, atol=1e-3)
    with pytest.raises(ValueError, match="a 95-d vector in a 384-d index"):
        decode_vectors([blob, b"\x00" * 380], 384)
