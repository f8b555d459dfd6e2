"""A story's timeline: its dated events, one line per report, oldest first, each cited to its sentence and outlet.

The topic is searched like a question; the stories of the best passages are the ones shown. From every copy
group of those stories (copies count once, their outlets are listed) the sentence closest to the topic is one
line, dated by the day it states ("on Tuesday", "Jan. 3", resolved against its article's date) or else by the
article's date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa.answer.when import _MONTH_RE, _WEEKDAYS, resolve
from qa.schema import Citation, Passage
from qa.store import Filters
from qa.stories import store as stories

_DAY_PHRASE = re.compile(
    rf"\b(?:(?:on|last|this)\s+)?(?:{'|'.join(_WEEKDAYS)}|yesterday)\b"
    rf"|\b(?:on\s+)?(?:{_MONTH_RE})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b",
    re.IGNORECASE,
)
STORIES = 2  # stories of the best passages shown (a topic may span two linked threads)
RELEVANT = 0.85  # a second story's best passage must be this close to the first one's cosine
MAX_LINES = 40
# Not an event: notes added when the page was updated (their weekdays are after the article's date), links to
# other pages, bylines and credits; an event line is a whole sentence.
_NOT_EVENT = re.compile(r"^\W*(editor'?s note|update|opinion|read more|related|follow|contributing|by\s+[A-Z])", re.I)
_ENDS = tuple(".!?\"'”’)")
SAME_LINE = 0.92  # sentence cosine at which two reports say the same thing: one line, both outlets


@dataclass
class Event:
    date: str  # ISO day the event happened (stated in the sentence) or was reported (the article's date)
    text: str
    citation: Citation
    dated_by: str  # "stated" or "article"
    outlets: list[str] = field(default_factory=list)


@dataclass
class Timeline:
    topic: str
    events: list[Event] = field(default_factory=list)
    stories: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        if not self.events:
            return f"No dated reports about *{self.topic}* in the articles."
        lines = [f"**Timeline: {self.topic}**", ""]
        for e in self.events:
            day = (e.date or "undated") + ("" if e.dated_by == "stated" or not e.date else " (reported)")
            lines.append(f"- **{day}**: {' '.join(e.text.split())} [{e.citation.n}] ({', '.join(e.outlets)})")
        lines += ["", "**Sources**"]
        for e in self.events:
            c = e.citation
            meta = ", ".join(x for x in (c.outlets_label(), c.published, c.url) if x)
            lines.append(f"[{c.n}] *{c.title or c.article_id}* ({meta})  ")  # "  ": a line break in markdown
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "topic": self.topic,
            "events": [
                {"date": e.date, "dated_by": e.dated_by, "text": e.text, "outlets": e.outlets}
                | {"citation": e.citation.to_dict()}
                for e in self.events
            ],
        }


def build(retriever, embedder, topic: str, since: str = "", until: str = "", as_of: str = "") -> Timeline:
    """The timeline of the stories `topic` finds, between `since` and `until` (ISO days, both optional)."""
    topic = " ".join((topic or "").split())
    if not topic:
        raise ValueError("the timeline topic is empty")
    filters = Filters(since=since, until=until, as_of=as_of)
    qvec = embedder.encode_query(topic)
    found = retriever.retrieve(topic, 10, filters, query_vector=qvec)
    top = max((p.dense for p in found), default=0.0)
    relevant = [p for p in found if p.dense >= RELEVANT * top]  # another story only when it is as close a match
    story_ids = list(dict.fromkeys(p.story_id or p.article_id for p in relevant))[:STORIES]
    out = Timeline(topic, stories=story_ids)
    if not story_ids:
        return out
    with retriever.store.read() as view:
        groups = stories.stories(view.conn, story_ids)
        last = min(filter(None, [until, as_of]), default="")  # the earlier of the user's range and the as-of day
        members = [m for ms in groups.values() for m in ms if _within(m.published, since, last)]
        copy_groups: dict[str, list[stories.Member]] = {}
        for m in members:
            copy_groups.setdefault(m.copy_id, []).append(m)
        owners = {ms[0].article_id: ms for ms in copy_groups.values()}  # the earliest copy stands for its group
        if not owners:
            return out
        marks = ",".join("?" * len(owners))
        rows = [r[0] for r in view.conn.execute(f"SELECT id FROM chunks WHERE article_id IN ({marks})", list(owners))]
        passages = [p for p, _ in view.passages(rows).values()]
    lines = _best_sentences(passages, owners, qvec, embedder)
    lines.sort(key=lambda x: x[1], reverse=True)
    kept: list[tuple[Event, np.ndarray]] = []
    for event, _score, vector in lines:
        twin = next((e for e, v in kept if float(np.dot(v, vector)) >= SAME_LINE), None)
        if twin is not None:
            twin.outlets += [o for o in event.outlets if o not in twin.outlets]
            continue
        kept.append((event, vector))
        if len(kept) == MAX_LINES:
            break
    events = sorted((e for e, _ in kept), key=lambda e: (e.date, e.citation.published))
    for n, e in enumerate(events, start=1):
        e.citation.n = n
    out.events = events
    return out


def _best_sentences(passages: list[Passage], owners: dict[str, list], qvec: np.ndarray, embedder) -> list:
    """Per article, its sentence closest to the topic (a sentence stating its day is preferred a little)."""
    best: dict[str, tuple] = {}
    for p in passages:
        texts = [p.text[s - p.start : e - p.start] for s, e in p.sentences]
        vectors = p.sentence_vectors if p.sentence_vectors is not None else embedder.encode(texts)
        for (start, end), text, vector in zip(p.sentences, texts, vectors, strict=True):
            if len(text) < 40 or _NOT_EVENT.match(text) or not text.rstrip().endswith(_ENDS):
                continue
            stated = _stated_day(text, p.published)
            score = float(np.dot(vector, qvec)) + (0.05 if stated else 0.0) - 0.002 * (start // 200)
            if p.article_id not in best or score > best[p.article_id][1]:
                best[p.article_id] = (p, score, vector, text, start, end, stated)
    lines = []
    for aid, (p, score, vector, text, start, end, stated) in best.items():
        group = owners[aid]
        outlets = stories.outlets(group) or [p.outlet or Path(p.source).name]  # a file's name, never its path
        citation = Citation(
            n=0, article_id=aid, chunk_id=p.chunk_id, title=p.title, source=p.source, url=p.url, published=p.published,
            quote=text, start=start, end=end, score=round(score, 4), outlet=outlets[0], also_in=outlets[1:],
        )  # fmt: skip
        event = Event(stated or p.published[:10], text, citation, "stated" if stated else "article", outlets)
        lines.append((event, score, np.asarray(vector, dtype=np.float32)))
    return lines


def _stated_day(sentence: str, published: str) -> str:
    """The day a sentence says its event happened, resolved against its article's date ("" if none, or one
    after the article or more than two weeks before it)."""
    for match in _DAY_PHRASE.finditer(sentence):
        day = resolve(match.group(), published)
        if day and day <= published[:10] and day >= _minus_days(published, 14):
            return day
    return ""


def _minus_days(published: str, days: int) -> str:
    import datetime as dt

    try:
        return (dt.date.fromisoformat(published[:10]) - dt.timedelta(days=days)).isoformat()
    except ValueError:
        return ""


def _within(published: str, since: str, until: str) -> bool:
    day = published[:10]
    return (not since or day >= since) and (not until or (bool(day) and day <= until))
