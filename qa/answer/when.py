"""Time in a question: the date it is asked as of, and the window its time words point to.

News questions are about a moment. "Who won this week?" asked on 2023-01-05 means the days before it, and an
article published after the question's date cannot be its evidence. `time_frame()` turns the question's time
words into a window: explicit ones ("yesterday", "on Monday", "in June", "last month", "since March 3") filter
the evidence, vague ones ("this week", "recently", "latest") only favour it (a prior in the sentence score), and
an empty window never empties the evidence (the pipeline falls back and says so). A named day or month is when
the event happened: its window runs a week past it, since that is when it is reported. Dates in phrases are read
with dateparser; the vague words, whose meaning is ours to define, by the rules below.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

Date = dt.date

_MONTHS = "january february march april may june july august september october november december".split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_MONTH_RE = "|".join(m for m in _MONTHS) + r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
# "since March 3", "on Jan. 5, 2023", "before 2023-01-20": a preposition and a date phrase dateparser reads
_DATE_PHRASE = re.compile(
    rf"\b(since|after|before|until|on|from)\s+((?:(?:{_MONTH_RE})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?)"
    rf"|(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTH_RE})\.?(?:,?\s+\d{{4}})?)|(?:\d{{4}}-\d{{2}}-\d{{2}}))\b",
    re.IGNORECASE,
)
_IN_MONTH = re.compile(rf"\b(?:in|during|this|last)\s+({'|'.join(_MONTHS)})(?:\s+(\d{{4}}))?\b", re.IGNORECASE)
_ON_WEEKDAY = re.compile(rf"\b(?:on|last|this)\s+({'|'.join(_WEEKDAYS)})\b", re.IGNORECASE)
_VAGUE = (  # phrase -> days before as_of that it covers
    (re.compile(r"\bthis (?:past )?week(?:end)?\b|\bthe past week\b|\bthe week\b", re.I), 7),
    (re.compile(r"\blast week(?:end)?\b", re.I), 14),
    (re.compile(r"\b(?:recent(?:ly)?|latest|newly|this month|so far this year)\b", re.I), 30),  # not "new": New York
)
_EXPLICIT_RELATIVE = (
    (re.compile(r"\btoday\b|\btonight\b", re.I), 0, 0),
    (re.compile(r"\byesterday\b|\blast night\b", re.I), 1, 0),  # news of yesterday is published today too
)


REPORTED_WITHIN = dt.timedelta(days=7)  # an event on a named day or month is reported up to a week after it


@dataclass(frozen=True)
class TimeFrame:
    """When a question is asked, and the window its time words name (None: no time words)."""

    as_of: Date
    start: Date | None = None
    end: Date | None = None
    explicit: bool = False  # a filter (the user named the dates), not only a prior
    phrase: str = ""  # the words it was read from, for the answer's note

    @property
    def window(self) -> tuple[Date, Date] | None:
        return (self.start, self.end) if self.start and self.end else None

    def fit(self, published: str, newest: Date | None = None) -> float:
        """How well an article date fits the question's time: 1 inside the window, decaying with each day
        outside it; 0.5 when the article has no readable date. Without time words the question asks for the
        latest reports *among the evidence* (`newest`): an old collection is not penalised for being old."""
        day = parse_iso(published)
        if day is None:
            return 0.5
        if day > self.as_of:  # after the question: never evidence (filtered), scored as the worst fit
            return 0.0
        if self.window is None and newest is None:
            return 0.5
        start, end = self.window or (newest, newest)
        days_out = (start - day).days if day < start else (day - end).days if day > end else 0
        return math.exp(-max(days_out, 0) / 14.0)


def parse_iso(value: str | None) -> Date | None:
    try:
        return dt.date.fromisoformat((value or "")[:10])
    except ValueError:
        return None


def as_date(value: Date | dt.datetime | str | None) -> Date:
    """A date given as a date, a datetime, an ISO or 'YYYY/MM/DD' string; None = today."""
    if value is None or value == "":
        return dt.date.today()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip().replace("/", "-")
    day = parse_iso(text)
    if day is None:
        parsed = _dateparser(text, dt.date.today())
        if parsed is None:
            raise ValueError(f"'{value}' is not a date (use YYYY-MM-DD)")
        return parsed
    return day


def time_frame(question: str, as_of: Date | None = None) -> TimeFrame:
    """The window the question's time words name, relative to `as_of` (today when None)."""
    as_of = as_of or dt.date.today()
    found = _explicit(question, as_of)
    if found and found.start <= found.end:
        return found
    if found:  # a day after the question's date ("on 2023-02-01" asked on 2023-01-05) names no report yet
        return TimeFrame(as_of)
    for pattern, days in _VAGUE:
        m = pattern.search(question)
        if m:
            return TimeFrame(as_of, as_of - dt.timedelta(days=days), as_of, False, m.group(0))
    return TimeFrame(as_of)


def _explicit(question: str, as_of: Date) -> TimeFrame | None:
    for pattern, back, fwd in _EXPLICIT_RELATIVE:
        m = pattern.search(question)
        if m:
            day = as_of - dt.timedelta(days=back)
            return TimeFrame(as_of, day, min(as_of, day + dt.timedelta(days=1 + fwd)), True, m.group(0))
    m = _DATE_PHRASE.search(question)
    if m:
        day = _dateparser(m.group(2), as_of)
        if day is not None:
            word = m.group(1).lower()
            if word in ("since", "after", "from"):
                return TimeFrame(as_of, min(day, as_of), as_of, True, m.group(0))
            if word in ("before", "until"):
                return TimeFrame(as_of, dt.date(1900, 1, 1), min(day, as_of), True, m.group(0))
            return TimeFrame(as_of, day, min(as_of, day + REPORTED_WITHIN), True, m.group(0))
    m = _ON_WEEKDAY.search(question)
    if m:
        back = (as_of.weekday() - _WEEKDAYS.index(m.group(1).lower())) % 7 or 7
        day = as_of - dt.timedelta(days=back)
        return TimeFrame(as_of, day, min(as_of, day + REPORTED_WITHIN), True, m.group(0))
    m = _IN_MONTH.search(question)
    if m and not (m.group(1).lower() == "may" and not m.group(2)):  # "may" alone is the verb far more often
        month = _MONTHS.index(m.group(1).lower()) + 1
        year = int(m.group(2)) if m.group(2) else as_of.year - (month > as_of.month)
        if m.group(0).lower().startswith("last") and not m.group(2) and month == as_of.month:
            year -= 1
        start = dt.date(year, month, 1)
        end = (start + dt.timedelta(days=32)).replace(day=1) + REPORTED_WITHIN
        return TimeFrame(as_of, start, min(end, as_of), True, m.group(0))
    if re.search(r"\blast month\b", question, re.I):
        first = as_of.replace(day=1)
        start = (first - dt.timedelta(days=1)).replace(day=1)
        return TimeFrame(as_of, start, min(first + REPORTED_WITHIN, as_of), True, "last month")
    return None  # a year ("spent in 2022", "running in 2024") names the event's time, not the report's


def _dateparser(text: str, base: Date) -> Date | None:
    import dateparser

    parsed = dateparser.parse(
        text,
        languages=["en"],
        settings={
            "RELATIVE_BASE": dt.datetime(base.year, base.month, base.day),
            "PREFER_DATES_FROM": "past",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    return parsed.date() if parsed else None


_RELATIVE_DAY = re.compile(
    rf"^(?:(?:on|last|this|next)\s+)?(?:{'|'.join(_WEEKDAYS)}|today|yesterday|tonight|last night|tomorrow)$"
    rf"|^(?:(?:on\s+)?(?:{_MONTH_RE})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?)$",
    re.IGNORECASE,
)


def resolve(phrase: str, published: str) -> str:
    """A relative day in a sentence ("Tuesday", "yesterday", "Jan. 3") as the ISO date it meant when its article
    was published; "" when the phrase is not a day or the article is undated."""
    base = parse_iso(published)
    if base is None or not _RELATIVE_DAY.match(phrase.strip()):
        return ""
    bare = re.sub(r"^(on|last|this)\s+", "", phrase.strip(), flags=re.I)
    if bare.lower() == _WEEKDAYS[base.weekday()]:  # "Tuesday" in a Tuesday's article is that day
        return base.isoformat()
    day = _dateparser(bare, base)
    return day.isoformat() if day else ""
