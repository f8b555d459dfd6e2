"""The embedder: chunk vectors, and from them the per-sentence vectors the answer stage reads (real MiniLM)."""

from __future__ import annotations

import numpy as np
import pytest

from qa.indexing.embed import get_embedder


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def spans_of(text: str, sentences: list[str]) -> list[tuple[int, int]]:
    return [(text.index(s), text.index(s) + len(s)) for s in sentences]


def test_chunk_vectors_equal_plain_encoding_and_every_sentence_gets_a_unit_vector(embedder):
    sentences = [
        "Moscow declined the invitation to the Paris meeting.",
        "Officials called the talks one-sided.",
        "The harbour bridge reopened to traffic on Monday.",
    ]
    text = "Russia stays away\n" + " ".join(sentences)
    vectors, per_chunk = embedder.encode_chunks([text, "No sentences here."], [spans_of(text, sentences), []])
    assert vectors.shape == (2, embedder.dim)
    # The model's own chunk vectors (to a cosine of 0.9999: in bfloat16, where the CPU has it, a batch's padding
    # rounds differently).
    assert ((vectors * embedder.encode([text, "No sentences here."])).sum(axis=1) > 0.9999).all()
    assert per_chunk[0].shape == (3, embedder.dim) and per_chunk[1].shape == (0, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(per_chunk[0], axis=1), 1.0, atol=1e-5)
    # Each sentence's vector is nearest to a question about that sentence, not to its neighbours'.
    questions = ["Who declined the invitation?", "How were the talks described?", "When did the bridge reopen?"]
    similarity = embedder.encode(questions) @ per_chunk[0].T
    assert list(similarity.argmax(axis=1)) == [0, 1, 2]


def test_one_pass_reads_each_sentence_in_its_chunk_and_embeds_alone_only_what_the_model_cut_off(embedder):
    """Sentence vectors come from the chunk's own forward pass (no second pass over the text); a sentence past
    the model's token limit (256 word pieces) has no tokens there and is embedded by itself instead."""
    first = "Moscow declined the invitation to the Paris meeting."
    last = "The harbour bridge reopened to traffic on Monday."
    text = first + " " + "filler words " * 200 + last
    spans = spans_of(text, [first, last])
    _, (in_chunk,) = embedder.encode_chunks([text], [spans])
    alone = embedder.encode([first, last])
    cosines = (in_chunk * alone).sum(axis=1)
    assert cosines[1] > 0.9999  # cut off: its own vector
    assert 0.3 < cosines[0] < 0.999  # read in context: close to, but not, the sentence alone


def test_a_loaded_model_leaves_numpy_blas_on_one_thread_and_question_encodes_restore_torch_threads(embedder):
    """numpy's pthreads OpenBLAS spins after each product and took torch's second core (answers 2-3x slower at 1M
    chunks); a question-sized encode runs on one torch thread and puts the thread count back for bulk encodes."""
    import torch
    from threadpoolctl import threadpool_info

    pthreads = [i for i in threadpool_info() if i["user_api"] == "blas" and i.get("threading_layer") == "pthreads"]
    assert pthreads and all(i["num_threads"] == 1 for i in pthreads)
    before = torch.get_num_threads()
    seen = []
    real = embedder._model.encode

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    embedder._model.encode = spy
    try:
        embedder.encode(["Why did Russia decline?"])
        embedder.encode(["A longer sentence of an article, read alone at question time."] * 8)
        embedder.encode(["A chunk of text."] * 64)
    finally:
        del embedder._model.encode
    assert seen == [1, 1, before] and torch.get_num_threads() == before


def test_bfloat16_products_give_the_float32_vectors_and_a_bad_precision_is_refused():
    """bfloat16 autocast (2.1x faster on AMX / AVX512-BF16 CPUs, chosen by 'auto' there) must not move what
    retrieval sees: chunk, sentence and question vectors stay at cosine >= 0.9999 of float32's."""
    from qa.errors import QAError

    exact, fast = get_embedder(precision="float32"), get_embedder(precision="bfloat16")
    assert not exact.bfloat16 and fast.bfloat16
    sentences = ["Moscow declined the invitation, describing the meeting as one-sided.", "Juppe regretted it."]
    text = "Russia Stays Away From Paris Meeting on Syria\n" + " ".join(sentences)
    texts = [text] + [f"Chunk {i}: the harbour bridge reopened to traffic on day {i} of the works." for i in range(7)]
    spans = [spans_of(text, sentences)] + [[] for _ in range(7)]
    (a, a_sentences), (b, b_sentences) = exact.encode_chunks(texts, spans), fast.encode_chunks(texts, spans)
    assert not np.array_equal(a, b)  # the products really ran in bfloat16
    assert ((a * b).sum(axis=1) > 0.9999).all() and ((a_sentences[0] * b_sentences[0]).sum(axis=1) > 0.9999).all()
    questions = ["Why did Russia decline?", "When did the bridge reopen?", "Who regretted it?"]
    assert ((exact.encode(questions) * fast.encode(questions)).sum(axis=1) > 0.9999).all()
    with pytest.raises(QAError, match="embed_precision"):
        get_embedder(precision="float8")
