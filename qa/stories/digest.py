"""What's new since a day: the stories that gained articles since then, newest first, each with one cited
sentence of what is new (the newest report's first sentence that its story's earlier reports do not already
say) and how many outlets carry the new reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from qa.schema import Citation
from qa.stories import store as stories

ALREADY_SAID = 0.85  # sentence cosine at which an earlier report already said it
EARLIER = 10  # earlier reports compared against (the most recent ones)


@dataclass
class StoryUpdate:
    story_id: str
    title: str
    newest: str  # ISO date of its newest article
    new_articles: int
    articles: int
    outlets: list[str]
    citation: Citation
    indexed_at: float  # when its newest article was indexed (the page marks stories changed since a last look)


@dataclass
class Digest:
    since: str
    stories: list[StoryUpdate] = field(default_factory=list)

    def to_markdown(self, seen_at: float | None = None) -> str:
        if not self.stories:
            return f"No story gained articles since {self.since}."
        lines = [f"**What's new since {self.since}**", ""]
        for n, s in enumerate(self.stories, start=1):
            fresh = " 🆕 *changed since your last look*" if seen_at is not None and s.indexed_at > seen_at else ""
            outlets = f"; {len(s.outlets)} outlet{'s' if len(s.outlets) != 1 else ''}: {', '.join(s.outlets)}"
            outlets = outlets if s.outlets else ""  # files name no outlet
            lines.append(
                f"{n}. **{s.title}** ({s.newest}; {_count(s)}{outlets}){fresh}  \n"
                f"   {' '.join(s.citation.quote.split())} [{n}]"
            )
        lines += ["", "**Sources**"]
        for n, s in enumerate(self.stories, start=1):
            c = s.citation
            lines.append(f"[{n}] *{c.title}* ({', '.join(x for x in (c.outlets_label(), c.published, c.url) if x)})  ")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"since": self.since, "stories": [vars(s) | {"citation": s.citation.to_dict()} for s in self.stories]}


def _count(s: StoryUpdate) -> str:
    if s.new_articles == s.articles:
        return f"{s.articles} new article{'s' if s.articles != 1 else ''}"
    return f"{s.new_articles} new of {s.articles} articles"


def build(store, embedder, since: str, until: str = "", limit: int = 20) -> Digest:
    """The stories with an article published on or after `since` (and up to `until`), newest first."""
    for day in filter(None, [since, until]):
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"'{day}' is not a date: write it as YYYY-MM-DD") from None
    if not since:
        raise ValueError("the digest needs the day to start from (YYYY-MM-DD)")
    out = Digest(since)
    with store.read() as view:
        conn = view.conn
        args: list = [since]
        where = "published >= ?"
        if until:
            where += " AND published <= ?"
            args.append(until + "\uffff")
        rows = conn.execute(
            f"SELECT story_id, MAX(published) AS newest FROM story_articles WHERE {where} GROUP BY story_id "
            "ORDER BY newest DESC, story_id LIMIT ?",
            [*args, limit],
        ).fetchall()
        groups = stories.stories(conn, [r[0] for r in rows])
        for story_id, newest in rows:
            members = [m for m in groups.get(story_id, []) if not until or m.published[:10] <= until]
            update = _update(view, embedder, story_id, newest, members, since)
            if update is not None:
                out.stories.append(update)
                update.citation.n = len(out.stories)
    return out


def _update(view, embedder, story_id: str, newest: str, members: list, since: str) -> StoryUpdate | None:
    new = [m for m in members if m.published >= since]
    old = [m for m in members if m.published < since][-EARLIER:]
    if not new:
        return None
    latest = new[-1]
    sentences = _sentences(view, embedder, latest.article_id)
    if not sentences:
        return None
    earlier = [v for m in old for _, v, _ in _sentences(view, embedder, m.article_id)]
    earlier_m = np.stack(earlier) if earlier else None
    pick = sentences[0]
    for item in sentences:
        text, vector, _ = item
        if len(text) < 40:
            continue
        if earlier_m is None or float(np.max(earlier_m @ vector)) < ALREADY_SAID:
            pick = item
            break
    text, _, (p, start, end) = pick
    copies = stories.copies(view.conn, [latest.copy_id]).get(latest.copy_id, [latest])
    carried = stories.outlets(copies) or [""]
    citation = Citation(
        n=0, article_id=p.article_id, chunk_id=p.chunk_id, title=p.title, source=p.source, url=p.url,
        published=p.published, quote=text, start=start, end=end, score=0.0, outlet=carried[0], also_in=carried[1:],
    )  # fmt: skip
    indexed = view.conn.execute(
        f"SELECT MAX(indexed_at) FROM articles WHERE id IN ({','.join('?' * len(new))})", [m.article_id for m in new]
    ).fetchone()[0]
    return StoryUpdate(
        story_id=story_id, title=p.title or p.article_id, newest=newest[:10], new_articles=len(new),
        articles=len(members), outlets=stories.outlets(new + copies), citation=citation, indexed_at=float(indexed or 0),
    )  # fmt: skip


def _sentences(view, embedder, article_id: str, chunks: int = 2) -> list:
    """(text, vector, (passage, start, end)) for the sentences of an article's first chunks, in article order."""
    ids = [
        r[0]
        for r in view.conn.execute(
            "SELECT id FROM chunks WHERE article_id = ? ORDER BY ordinal LIMIT ?", (article_id, chunks)
        )
    ]
    out, seen = [], set()
    for p, _ in sorted(view.passages(ids).values(), key=lambda x: x[0].start):
        texts = [p.text[s - p.start : e - p.start] for s, e in p.sentences]
        vectors = p.sentence_vectors if p.sentence_vectors is not None else embedder.encode(texts)
        for (start, end), text, vector in zip(p.sentences, texts, vectors, strict=True):
            if start not in seen:
                seen.add(start)
                out.append((text, np.asarray(vector, dtype=np.float32), (p, start, end)))
    return out
