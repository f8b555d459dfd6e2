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


def _article(text: str, title: str = "t"):
    return make_article(title=title, text=text, source="s", origin="s", key="k")


def test_sentences_stay_few_per_byte_whatever_the_shape():
    # 1-character lines used to be one sentence each (a sentence vector each at indexing, 8 million for 16 MB),
    # and pysbd's time (the splitter before) grew with sentences x length: now every shape costs a bounded amount
    # per byte.
    for unit in ("a\n", "a\n\n", "a. ", "Mr. ", "word ", "x", "a!\n"):
        text = unit * (20_000 // len(unit))
        spans = sentence_spans(text, max_chars=600)
        assert len(spans) <= len(text) / 16 + 1, (unit, len(spans))
        assert all(text[s:e].strip() and e - s <= 600 for s, e in spans), unit
        chunks = chunk_article(_article(text), chunk_chars=600, overlap_chars=150)
        assert max(len(c.text) for c in chunks) <= 600
        assert len(chunks) <= 2 * len(text) / (600 - 150) + 1, unit  # the text once, plus overlap
        assert set(chunks[0].sentences) <= set(spans)


def test_sentence_finding_grows_linearly_in_the_number_of_splitter_calls_and_their_size(monkeypatch):
    # Counted, not timed: what the splitter is given per call stays bounded, so its cost per byte does too.
    from qa.indexing import chunk

    calls: list[int] = []
    real = chunk._segment

    def counting(piece):
        calls.append(len(piece))
        return real(piece)

    monkeypatch.setattr(chunk, "_segment", counting)
    for unit in ("The council met on Monday. ", "a\n", "Mr. Smith. "):
        for size in (20_000, 80_000):
            calls.clear()
            sentence_spans(unit * (size // len(unit)))
            assert all(n <= chunk._MAX_PIECE for n in calls), unit
            assert sum(calls) <= size, unit  # each character is given to the splitter at most once
    text = "The council met on Monday. " * 2000
    calls.clear()
    sentence_spans(text)
    assert calls and text[: max(calls)].count(". ") <= chunk._MAX_CANDIDATES  # pieces of few possible ends


def test_quotes_initials_and_lone_closing_quotes_stay_with_their_sentence():
    text = (
        "\u201cIt\u2019s humbling,\u201d Burrow said. \u201cI think whatever Buffalo would do.\u201d "
        "Rep. Elise Stefanik, R-N.Y., nominated him. "
        "\u201cAnything else is a failure.\u2019\u2019 He left the room at noon. "
        'She said: "We won." Then, "Go home," he said. It rained in May. John Smith stayed home.'
    )
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "\u201cIt\u2019s humbling,\u201d Burrow said.",
        "\u201cI think whatever Buffalo would do.\u201d",
        "Rep. Elise Stefanik, R-N.Y., nominated him.",
        "\u201cAnything else is a failure.\u2019\u2019",
        "He left the room at noon.",
        'She said: "We won."',
        'Then, "Go home," he said.',
        "It rained in May.",
        "John Smith stayed home.",
    ]


def test_a_sixteen_megabyte_line_is_chunked_in_bounded_pieces():
    text = "word " * (16_000_000 // 5)
    chunks = chunk_article(_article(text), chunk_chars=600, overlap_chars=150)
    assert max(len(c.text) for c in chunks) <= 600
    assert len(chunks) <= len(text) / 300
    assert chunks[-1].end == len(text.rstrip())


def test_memory_for_sentences_stays_a_small_multiple_of_the_text():
    # Every 1-character line was a span tuple before the short ones were joined: 900 MB for 16 MB of "a\n".
    import tracemalloc

    for unit in ("a\n", "a\n\n", "a. "):
        text = unit * (200_000 // len(unit))
        tracemalloc.start()
        try:
            sentence_spans(text, max_chars=600)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 20 * len(text), (unit, peak)


def test_a_heading_dateline_or_byline_paragraph_is_not_quoted_with_the_next_sentence():
    text = (
        "CNN —\n\nKamal was standing outside a shop with other workers.\n\nWe explain\n\n"
        "When did the House take multiple ballots to elect a speaker?\n\n– David Jackson\n\nHow the process works."
    )
    sentences = [text[s:e] for s, e in sentence_spans(text)]
    assert "Kamal was standing outside a shop with other workers." in sentences
    assert "When did the House take multiple ballots to elect a speaker?" in sentences
    assert "We explain" in sentences and "CNN —" in sentences
    # short paragraphs alternating with sentences stay bounded: at most every other span is short
    text = "a\n\nThe sentence is long.\n\n" * 1000
    assert len(sentence_spans(text)) <= 2 * 1000
