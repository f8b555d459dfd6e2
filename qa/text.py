"""Small text helpers shared by the stages: the one cleaning every source's text goes through, what is safe to
print on a terminal, and the word-level helpers of BM25 querying and sentence scoring."""

from __future__ import annotations

import re

STOPWORDS = frozenset(
    "a about after an and any are as at be been but by can could did do does for from had has have he her his "
    "how i if in into is it its me my no not of on or our she so some such than that the their them then there "
    "these they this those to up us was we were what when where which while who whom whose why will with would "
    "you your".split()
)
_WORD = re.compile(r"\w+")
# C0 controls but tab and newline, DEL, C1 controls (U+0080-U+009F: CSI U+009B starts an escape on some
# terminals), and lone surrogates (from JSON escapes like \ud800) that UTF-8 and SQLite cannot hold.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# What a terminal must not be sent raw: every control character (tab and newline where lines are kept) and the
# bidirectional overrides that make text display as something else than it is.
_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
_UNSAFE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")


def clean(text: str) -> str:
    """Line ends as \\n, control characters and lone surrogates removed. Every source's text (files, JSON
    records, feed entries, pages) goes through it, so nothing stored can drive a terminal or break UTF-8."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def for_terminal(text: str, one_line: bool = False) -> str:
    """`text` safe to print: ESC, BEL, NUL and every other control character shown as a visible escape
    (e.g. \\x1b), never sent raw. Newlines and tabs are kept unless `one_line`."""
    pattern = _UNSAFE_LINE if one_line else _UNSAFE
    return pattern.sub(_escape, str(text))


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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
