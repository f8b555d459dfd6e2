"""Small word-level helpers shared by BM25 querying and sentence scoring."""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    "a about after an and any are as at be been but by can could did do does for from had has have he her his "
    "how i if in into is it its me my no not of on or our she so some such than that the their them then there "
    "these they this those to up us was we were what when where which while who whom whose why will with would "
    "you your".split()
)
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased words; split before lower-casing, since lower() can add combining marks ("İ" -> "i̇")."""
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Lower-cased words minus stopwords and single characters."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1]


def stem(word: str) -> str:
    """A crude suffix stripper: enough to match 'declined' with 'decline' or 'meetings' with 'meeting'."""
    for suffix in ("ing", "ed", "es", "s", "ly", "e"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)}
