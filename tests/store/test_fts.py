"""The BM25 query builder (qa.store.sql.fts_query): content words only, each quoted, once; whatever the user
types, FTS5 sees plain terms, never its own syntax. Checked by running the queries in a real FTS5 MATCH on a table
made by the store's own schema."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.store import faiss_store
from qa.store.sql import fts_query, prepare

DOCS = {
    1: ("Harbour bridge opens", "The harbour bridge opened to traffic on Monday; tolls start in May."),
    2: ("Wildfire", "The wildfire spread toward the valley overnight, near the old mill."),
    3: ("Museum", "The museum reopened with a show of maps of the harbours of the north."),
}
QUERY = re.compile(r'^("[^"]+")( OR "[^"]+")*$')  # nothing but quoted terms joined by OR


@pytest.fixture(scope="module")
def fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    prepare(conn, Path("memory"))  # the store's tables, with its FTS5 tokenizer
    conn.executemany("INSERT INTO fts (rowid, title, text) VALUES (?, ?, ?)", [(i, *d) for i, d in DOCS.items()])
    return conn


def match(conn: sqlite3.Connection, text: str) -> set[int]:
    query = fts_query(text)
    if not query:  # StoreView.sparse asks nothing then (an empty MATCH is a syntax error)
        return set()
    assert QUERY.match(query), query
    return {r[0] for r in conn.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (query,))}


def test_only_content_words_each_quoted_once_in_first_seen_order():
    assert fts_query("What did the Mayor say about the harbour bridge?") == '"mayor" OR "say" OR "harbour" OR "bridge"'
    assert fts_query("Bridge bridge BRIDGE toll, Bridge!") == '"bridge" OR "toll"'
    assert fts_query("Tolls in 2024: 5 dollars") == '"tolls" OR "2024" OR "dollars"'  # single characters go
    assert fts_query("Why was it the one?") == '"one"'
    for nothing in ("", "   ", "a I the of ?", "!!! ... ---", "what was it"):
        assert fts_query(nothing) == ""


def test_the_terms_find_their_documents(fts: sqlite3.Connection):
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
def test_fts5_syntax_in_user_text_is_plain_words(fts: sqlite3.Connection, text: str, found: set[int]):
    assert match(fts, text) == found
    assert fts.execute("SELECT COUNT(*) FROM fts_docsize").fetchone()[0] == len(DOCS)  # rows FTS5 indexed


def test_a_very_long_question_is_still_one_query(fts: sqlite3.Connection):
    text = " ".join(f"word{i}" for i in range(3000)) + " museum"
    assert fts_query(text).count(" OR ") == 3000
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
def test_no_user_text_breaks_the_query(fts: sqlite3.Connection, text: str):
    match(fts, text)  # raises sqlite3.OperationalError ("fts5: syntax error") if it does


def test_a_word_with_a_capital_dotted_i_is_searched_whole(fts: sqlite3.Connection):
    conn = sqlite3.connect(":memory:")
    prepare(conn, Path("memory"))
    conn.execute("INSERT INTO fts (rowid, title, text) VALUES (1, 'Traffic', 'Traffic in İstanbul was slow.')")
    assert match(conn, "İstanbul") == {1}  # FTS5 itself finds it: MATCH '"İstanbul"' does


def test_a_question_without_content_words_asks_bm25_nothing(tmp_path: Path):
    store = faiss_store(tmp_path / "store", create=True)
    with store.read() as view:
        assert view.sparse("what was it?", 10) == [] and view.sparse('" * ^ -', 10) == []
