"""The retrieval filters in their two translations: SQL for SQLite (BM25, and the FAISS id selector) and the
Milvus boolean expression. Both must select the same articles; the SQL side is checked against what the Filters
docstring promises (source or url contains the text, any case; ISO date bounds, both inclusive; an undated
article passes no date bound)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from qa.store import Filters
from qa.store.codec import encode_vector
from qa.store.milvus import MilvusIndex, filter_expr
from qa.store.sql import add_functions, filter_sql

# id, source, url, published (as the store keeps them: published is ISO or "", see ingest.normalize_date)
RECORDS = [
    (1, "Harbour Times", "https://harbour.example/2024/bridge", "2024-01-05"),
    (2, "Valley News", "", "2024-03-01"),
    (3, "wire", "https://News.Example/VALLEY/fire", "2024-02-15"),
    (4, "City Post", "", ""),
    (5, 'The "Quoted" Post', "", "2023-12-31"),
    (6, "100% Local", "https://local.example/a_b", "2024-02-01"),
    (7, "Élysée Wire", "", "2024-04-10"),
    (8, "O'Brien Weekly", "", "2024-06-30"),
    (9, "Back\\slash News", "", "2024-05-20"),
]
ALL = {r[0] for r in RECORDS}

# Filters whose meaning is the documented one, on both backends.
CASES = [
    pytest.param(Filters(), ALL, id="none"),
    pytest.param(Filters(source="harbour"), {1}, id="source"),
    pytest.param(Filters(source="HARBOUR tIMES"), {1}, id="source-any-case"),
    pytest.param(Filters(source="valley"), {2, 3}, id="source-or-url-any-case"),
    pytest.param(Filters(source="news"), {2, 3, 9}, id="source-or-url-2"),
    pytest.param(Filters(source="example/2024"), {1}, id="url-path"),
    pytest.param(Filters(source="nowhere"), set(), id="source-no-match"),
    pytest.param(Filters(source='"quoted"'), {5}, id="double-quotes"),
    pytest.param(Filters(source="o'brien"), {8}, id="single-quote"),
    pytest.param(Filters(source="100%"), {6}, id="percent-sign"),
    pytest.param(Filters(source='" or source like "%'), set(), id="injection-double-quote"),
    pytest.param(Filters(source="' OR 1=1 --"), set(), id="injection-single-quote"),
    pytest.param(Filters(source="lysée"), {7}, id="non-ascii-same-case"),
    pytest.param(Filters(since="2024-02-01"), {2, 3, 6, 7, 8, 9}, id="since-inclusive"),
    pytest.param(Filters(until="2024-02-01"), {1, 5, 6}, id="until-inclusive-undated-out"),
    pytest.param(Filters(since="2100-01-01"), set(), id="since-future"),
    pytest.param(Filters(until="1999-12-31"), set(), id="until-past"),
    pytest.param(Filters(since="2024-02-01", until="2024-03-01"), {2, 3, 6}, id="since-and-until"),
    pytest.param(Filters(since="2024-03-01", until="2024-02-01"), set(), id="empty-range"),
    pytest.param(Filters(source="news", since="2024-03-01", until="2024-05-31"), {2, 9}, id="all-three"),
    pytest.param(Filters(source="wire", until="2024-03-01"), {3}, id="source-and-until"),
]
# Awkward user text (non-ASCII case, backslashes, LIKE wildcards): both translations must still agree.
DIFFERING = [
    pytest.param(Filters(source="élysée"), id="non-ascii-lower"),
    pytest.param(Filters(source="ÉLYSÉE"), id="non-ascii-upper"),
    pytest.param(Filters(source="\\"), id="backslash"),
    pytest.param(Filters(source="k\\"), id="backslash-last"),
    pytest.param(Filters(source="\\%"), id="backslash-percent"),
    pytest.param(Filters(source="\\\\"), id="two-backslashes"),
    pytest.param(Filters(source="k\\s"), id="backslash-before-letter"),  # literal on both
]
# Awkward text the documented meaning decides (case-insensitive substring, characters taken literally).
SQL_GAPS = [
    pytest.param(Filters(source="élysée"), {7}, id="non-ascii-any-case"),
    pytest.param(Filters(source="a_b"), {6}, id="underscore"),
    pytest.param(Filters(source="%"), {6}, id="percent-alone"),
]


@pytest.fixture(scope="module")
def articles_table() -> sqlite3.Connection:
    """An in-memory table with the columns of the store's articles table (filter_sql refers to it as `a`)."""
    db = sqlite3.connect(":memory:")
    add_functions(db)  # as every store connection has
    db.execute("CREATE TABLE articles (id INTEGER PRIMARY KEY, source TEXT, url TEXT, published TEXT)")
    db.executemany("INSERT INTO articles VALUES (?, ?, ?, ?)", RECORDS)
    return db


def sql_ids(db: sqlite3.Connection, filters: Filters) -> set[int]:
    where, args = filter_sql(filters)
    return {r[0] for r in db.execute(f"SELECT a.id FROM articles a WHERE {where}", args)}


@pytest.mark.parametrize(("filters", "expected"), CASES + SQL_GAPS)
def test_the_sql_filter_selects_what_the_filters_promise(articles_table: sqlite3.Connection, filters, expected):
    assert sql_ids(articles_table, filters) == expected


def test_the_sql_filter_keeps_user_text_out_of_the_statement():
    where, args = filter_sql(Filters(source="x' OR '1'='1", since="2024'--", until="z"))
    assert "'1'" not in where and "--" not in where and args == ["%x' or '1'='1%"] * 2 + ["2024'--", "z"]
    assert filter_sql(Filters()) == ("1", [])


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> MilvusIndex:
    """A Milvus Lite collection made and filled by the store's own code (source and url lower-cased)."""
    path = Path(tmp_path_factory.mktemp("milvus")) / "filters.db"
    index = MilvusIndex(str(path), create=True)
    index.collection = "filters"
    index._create_collection(4)
    vector = encode_vector(np.full(4, 0.5, dtype=np.float32))
    index._insert_rows(iter([(rid, vector, source, url, published) for rid, source, url, published in RECORDS]), 4)
    return index


def milvus_ids(index: MilvusIndex, filters: Filters) -> set[int]:
    """What a filtered dense search returns (every row has the same vector: all that pass come back)."""
    return {rid for rid, _ in index.search(np.full(4, 0.5, dtype=np.float32), 100, filters)}


@pytest.mark.milvus
@pytest.mark.parametrize(("filters", "expected"), CASES)
def test_the_milvus_expression_selects_the_same_articles(collection, articles_table, filters, expected):
    assert milvus_ids(collection, filters) == sql_ids(articles_table, filters) == expected


@pytest.mark.milvus
@pytest.mark.parametrize(
    "filters",
    [pytest.param(Filters(source="a_b"), id="underscore"), pytest.param(Filters(source="%"), id="percent-alone")]
    + DIFFERING,
)
def test_the_milvus_expression_agrees_with_sql_on_awkward_text(collection, articles_table, filters):
    assert milvus_ids(collection, filters) == sql_ids(articles_table, filters)


def test_the_milvus_expression_quotes_user_text():
    expr = filter_expr(Filters(source='A" or id >= 0 or source like "', since='"', until="\\"))
    assert expr == (
        '(source like "%a\\" or id >= 0 or source like \\"%" or url like "%a\\" or id >= 0 or source like \\"%") '
        'and published >= "\\"" and published != "" and published <= "\\\\"'
    )
    assert filter_expr(Filters()) == ""
