"""Chunking: whole sentences, exact spans into the article, overlap between neighbours."""

from __future__ import annotations

from qa.indexing.chunk import chunk_article, sentence_spans
from qa.sources.ingest import load_file, make_article
from tests.helpers import SEEDS


def _seed():
    [article], _ = load_file(next(SEEDS.glob("*.txt")), 10**7)
    return article


def test_spans_point_at_the_exact_text_and_cover_every_sentence():
    article = _seed()
    chunks = chunk_article(article, chunk_chars=400, overlap_chars=120)
    assert len(chunks) > 3
    covered = set()
    for c in chunks:
        assert article.text[c.start : c.end] == c.text
        assert c.sentences[0][0] == c.start and c.sentences[-1][1] == c.end
        covered.update(c.sentences)
    assert covered == set(sentence_spans(article.text, 400))
    assert [c.chunk_id for c in chunks] == [f"{article.id}:{i}" for i in range(len(chunks))]


def test_neighbouring_chunks_overlap_by_whole_sentences():
    chunks = chunk_article(_seed(), chunk_chars=400, overlap_chars=250)
    shared = [set(a.sentences) & set(b.sentences) for a, b in zip(chunks, chunks[1:], strict=False)]
    assert any(shared), "with a generous overlap some neighbours must share a sentence"
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start > a.start  # always progresses


def test_abbreviations_do_not_split_sentences():
    text = "U.N. Secretary-General Ban Ki-moon met Mr. Lavrov on Monday. They spoke for an hour."
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == [
        "U.N. Secretary-General Ban Ki-moon met Mr. Lavrov on Monday.",
        "They spoke for an hour.",
    ]


def test_a_megabyte_line_without_punctuation_is_cut_into_bounded_chunks():
    article = make_article(title="t", text="word " * 200_000, source="s", origin="s", key="k")
    chunks = chunk_article(article, chunk_chars=600, overlap_chars=100)
    assert max(len(c.text) for c in chunks) <= 600
    assert chunks[-1].end == len(article.text.rstrip())
