"""Terms for the in-memory BM25 index (qa/store/bm25_state.py): the tokens SQLite's FTS5 `porter unicode61`
tokenizer makes of a text, so ranking stays what it was when FTS5 did the search.

Words are split in Python (letters and digits, with combining marks kept inside a word as unicode61 does); each
distinct word is handed once to an in-memory FTS5 table with that tokenizer, which folds case and diacritics and
stems it, and the result is cached. So the terms are FTS5's own (its Porter stemmer, its folding), at the cost of
one dictionary lookup per word once a word has been seen.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable

from qa.text import content_words

# unicode61 keeps letters, digits and combining marks in a token; Python's \w splits at a combining mark.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_WORD = re.compile(f"(?:[^\\W_]|[{_MARKS}])+")
CACHE_MAX = 2_000_000  # cached words (~100 bytes each); the cache starts afresh beyond it


class _Stemmer:
    """word -> its FTS5 terms, through one in-memory FTS5 table (a word may make 0, 1 or more terms)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, ...]] = {}
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            conn.execute("CREATE VIRTUAL TABLE w USING fts5(word, tokenize='porter unicode61')")
            conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(w, 'instance')")
            self._conn = conn
        return self._conn

    def terms(self, words: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """The terms of each word; unseen words are stemmed in one batch."""
        cache = self._cache
        wanted = set(words)
        missing = [w for w in wanted if w not in cache]
        if missing:
            with self._lock:
                if len(cache) + len(missing) > CACHE_MAX:
                    cache.clear()
                conn = self._connection()
                conn.execute("BEGIN")
                try:
                    conn.executemany("INSERT INTO w (rowid, word) VALUES (?, ?)", enumerate(missing, start=1))
                    found: dict[int, list[str]] = {}
                    for doc, term in conn.execute("SELECT doc, term FROM v ORDER BY doc, offset"):
                        found.setdefault(doc, []).append(term)
                finally:
                    conn.execute("ROLLBACK")  # the table stays empty: nothing but the stems is kept
                for i, word in enumerate(missing, start=1):
                    cache[word] = tuple(found.get(i, ()))
        return {w: cache[w] for w in wanted}


_STEMMER = _Stemmer()


def doc_terms(title: str, text: str) -> tuple[Counter[str], int]:
    """The term counts of one chunk (its article's title and its text, as FTS5 indexed both) and its length
    in tokens (FTS5's document length for BM25: every token, stopwords too)."""
    return many_doc_terms([(title, text)])[0]


def many_doc_terms(rows: Iterable[tuple[str, str]]) -> list[tuple[Counter[str], int]]:
    """doc_terms of many chunks, stemming their new words in one batch."""
    rows = list(rows)
    split = [_WORD.findall(title or "") + _WORD.findall(text or "") for title, text in rows]
    stems = _STEMMER.terms(w for words in split for w in words)
    out = []
    for words in split:
        counts: Counter[str] = Counter()
        length = 0
        for word in words:
            terms = stems[word]
            length += len(terms)
            counts.update(terms)
        out.append((counts, length))
    return out


def query_terms(text: str) -> list[str]:
    """The BM25 query: what FTS5 made of the old `"w1" OR "w2" ...` query (qa.store.sql.fts_query), one entry
    per distinct content word, so two words with one stem count twice, as two FTS5 phrases did. A word FTS5
    splits in several tokens (a_b) becomes its terms, not a phrase of them."""
    distinct = list(dict.fromkeys(content_words(text)))
    stems = _STEMMER.terms(distinct)
    return [term for word in distinct for term in stems[word]]
