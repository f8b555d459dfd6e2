"""The BM25 query (qa.store.bm25_text.query_terms and StoreView.sparse): content words only, each once, stemmed as
FTS5's porter tokenizer stems them; whatever the user types is plain words, never query syntax. The cases are the
ones the FTS5 query builder was held to, now run through the store's in-memory BM25 index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.schema import Chunk
from qa.sources.ingest import make_article
from qa.store import Upsert, faiss_store
from qa.store.bm25_text import query_terms

DOCS = {
    1: ("Harbour bridge opens", "The harbour bridge opened to traffic on Monday; tolls start in May."),
    2: ("Wildfire", "The wildfire spread toward the valley overnight, near the old mill."),
    3: ("Museum", "The museum reopened with a show of maps of the harbours of the north."),
}


@pytest.fixture(scope="module")
def fts(tmp_path_factory: pytest.TempPathFactory):
    """A store holding DOCS (named fts for the cases below, which were FTS5's)."""
    store = faiss_store(tmp_path_factory.mktemp("bm25") / "store", create=True)
    upserts = []
    for i, (title, text) in DOCS.items():
        a = make_article(title=title, text=text, source="wire", origin="", key=str(i), article_id=str(i))
        chunk = Chunk(f"{i}:0", a.id, 0, 0, len(a.text), a.text, ((0, len(a.text)),))
        upserts.append(Upsert(a, [chunk], np.eye(4, dtype=np.float32)[i : i + 1]))
    store.commit(upserts, [], {}, "test-model")
    return store


def match(store, text: str) -> set[int]:
    with store.read() as view:
        hits = view.sparse(text, 10)
        return {int(p.article_id) for p, _ in view.passages([rid for rid, _ in hits]).values()}


def test_only_content_words_each_once_in_first_seen_order_as_fts5_stems_them():
    assert query_terms("What did the Mayor say about the harbour bridge?") == ["mayor", "sai", "harbour", "bridg"]
    assert query_terms("Bridge bridge BRIDGE toll, Bridge!") == ["bridg", "toll"]
    assert query_terms("Tolls in 2024: 5 dollars") == ["toll", "2024", "dollar"]  # single characters go
    assert query_terms("Why was it the one?") == ["on"]
    for nothing in ("", "   ", "a I the of ?", "!!! ... ---", "what was it"):
        assert query_terms(nothing) == []


def test_the_terms_find_their_documents(fts):
    assert match(fts, "When did the harbour bridge open?") == {1, 3}  # porter: harbours -> harbour
    assert match(fts, "wildfire") == {2}
    assert match(fts, "what was it") == set()


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('"', set()),
        ('"harbour', {1, 3}),  # an unbalanced quote
        ('harbour" OR "x', {1, 3}),
        ("*", set()),
        ("brid*", set()),  # no prefix search: "brid" is a word of its own
        ("NEAR(", {2}),  # the word "near" (document 2 has it)
        ("NEAR(harbour museum, 0)", {1, 2, 3}),  # no proximity query: three words
        ("-harbour", {1, 3}),  # no negation
        ("NOT harbour", {1, 3}),
        ("harbour AND NOT wildfire", {1, 2, 3}),
        ("^harbour", {1, 3}),  # no first-token anchor
        ("OR", set()),
        ("OR OR OR", set()),
        ("harbour OR", {1, 3}),
        ("AND", set()),
        ("title:wildfire", {2}),  # no column filter
        ("{title text}: museum", {3}),
        ("text : maps", {3}),
        ("(museum", {3}),
        ("museum)", {3}),
        ("+ museum +", {3}),
        ("mu\x00seum", set()),
        ("'; DROP TABLE fts; --", set()),
        ('""""', set()),
        ("valley\u00a0mill", {2}),
        ("\u202evalley", {2}),
    ],
)
def test_fts5_syntax_in_user_text_is_plain_words(fts, text: str, found: set[int]):
    assert match(fts, text) == found
    assert fts.check() == [] and fts.stats()["chunks"] == len(DOCS)


def test_a_very_long_question_is_still_one_query(fts):
    text = " ".join(f"word{i}" for i in range(3000)) + " museum"
    assert len(query_terms(text)) == 3001
    assert match(fts, text) == {3}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(['"', "*", "(", ")", "-", "^", ":", "+", "{", "}", ",", "'", "\\", "NEAR", "OR", "NOT"]),
            st.sampled_from(["harbour", "museum", "the", "x"]),
            st.text(max_size=4),
        ),
        max_size=20,
    ).map("".join)
)
def test_no_user_text_breaks_the_query(fts, text: str):
    match(fts, text)


def test_a_word_with_a_capital_dotted_i_is_searched_whole(tmp_path: Path):
    store = faiss_store(tmp_path / "store", create=True)
    a = make_article(
        title="Traffic", text="Traffic in İstanbul was slow.", source="", origin="", key="1", article_id="1"
    )
    chunk = Chunk("1:0", "1", 0, 0, len(a.text), a.text, ((0, len(a.text)),))
    store.commit([Upsert(a, [chunk], np.eye(4, dtype=np.float32)[:1])], [], {}, "test-model")
    assert match(store, "İstanbul") == {1}  # as FTS5 found it: MATCH '"İstanbul"' did


def test_a_question_without_content_words_asks_bm25_nothing(tmp_path: Path):
    store = faiss_store(tmp_path / "store", create=True)
    with store.read() as view:
        assert view.sparse("what was it?", 10) == [] and view.sparse('" * ^ -', 10) == []
