"""How the page shows answers, sources, timelines and digests as Markdown and HTML: everything that comes from
articles or users is escaped here (qa/app/web.py lays out the page and wires the events)."""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from qa.schema import Answer, Citation, Passage
from qa.store import IndexMissing
from qa.stories.digest import Digest
from qa.stories.timeline import Timeline

if TYPE_CHECKING:
    from qa.api import Assistant

DIGEST_DAYS = 7  # the digest's default: what is new in the week before the newest article
_INLINE_SPECIAL = re.compile(r"([\\`*_{}\[\]()!|~$])")
# Headings, quotes, lists, rules: blanks *within the line* only. `\s*` also crossed newlines, so each line start
# rescanned all the blank lines after it (a 32 KB question of "\n " took 11 s); this is linear.
_LINE_START_SPECIAL = re.compile(r"^([^\S\n]*\d*)([#>+=.)-])", re.MULTILINE)
_MARKER = re.compile(r"\\\[(\d{1,3})\\\]")


# -- rendering (everything from articles and users is escaped) ----------------------------------------------
def md_escape(text: str) -> str:
    """Text shown literally by the Markdown renderer: no HTML, links, images, emphasis or LaTeX from it."""
    escaped = _INLINE_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return _LINE_START_SPECIAL.sub(r"\1\\\2", escaped)


def answer_markdown(answer: Answer) -> str:
    """The chat bubble: the answer with its [n] markers as superscripts; an abstention reads as one."""
    notes = "".join(f"\n\n<small>{md_escape(note)}</small>" for note in answer.notes)  # notes quote articles
    if answer.abstained:
        return f"ℹ️ *{md_escape(answer.text)}*{notes}"
    text, lead = answer.text, ""
    if answer.short_answer and text.startswith(f"**{answer.short_answer}**: "):  # the short answer, in bold
        text = text[len(answer.short_answer) + 6 :]
        lead = f"**{md_escape(answer.short_answer)}**: "
    return lead + _MARKER.sub(r"<sup>[\1]</sup>", md_escape(text)) + notes


def error_markdown(exc: BaseException, doing: str = "answer") -> str:
    hint = " Upload articles below to create the index." if isinstance(exc, IndexMissing) else ""
    return f"⚠️ **Could not {doing}:** {md_escape(str(exc) or type(exc).__name__)}{md_escape(hint)}"


def _where(c: Citation) -> str:
    """The outlet, url or file name, never a server path."""
    if c.source and "://" not in c.source and ("/" in c.source or "\\" in c.source):
        return Path(c.source.replace("\\", "/")).name
    return c.source or c.url


def _highlight(text: str, spans: list[tuple[int, int, int]]) -> str:
    """Escape `text`, wrapping each (start, end, n) span in <mark> with its number."""
    out, pos = [], 0
    for start, end, n in sorted(spans):
        if start < pos:  # overlaps a span already marked
            continue
        out += [html.escape(text[pos:start]), f"<mark>{html.escape(text[start:end])}<sup>{n}</sup></mark>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _card(citations: list[Citation], passage: Passage | None) -> str:
    c = citations[0]
    spans = []
    if passage is not None:
        for cit in citations:
            start, end = cit.start - passage.start, cit.end - passage.start
            if 0 <= start <= end <= len(passage.text) and passage.text[start:end] == cit.quote:
                spans.append((start, end, cit.n))
    if passage is not None and spans:
        lead = len(passage.text) - len(passage.text.lstrip())
        body = _highlight(passage.text.strip(), [(a - lead, b - lead, n) for a, b, n in spans])
    else:  # the quote alone
        body = " … ".join(_highlight(cit.quote, [(0, len(cit.quote), cit.n)]) for cit in citations)
    title = html.escape(c.title or c.article_id)
    if c.url.startswith(("http://", "https://")):
        title = f'<a href="{html.escape(c.url)}" target="_blank" rel="noopener noreferrer nofollow">{title}</a>'
    numbers = "".join(f"[{cit.n}]" for cit in citations)
    meta = [html.escape(c.published)] if c.published else []
    if c.outlet or c.also_in:  # who carried the text: "AP; also in NBC News, USA Today"
        meta.append(f'<span class="outlets">{html.escape(c.outlets_label())}</span>')
    where = _where(c)
    if where and where != c.outlet:  # a file name, or a source the outlet does not already name
        meta.append(html.escape(where))
    return (
        f'<div class="card"><div class="head"><span class="n">{numbers}</span>{title}</div>'
        f'<div class="meta">{" · ".join(meta)}</div><div class="passage">{body}</div></div>'
    )


def sources_html(answer: Answer) -> str:
    """The sources panel for one answer: one card per cited passage, the cited spans highlighted."""
    head = f'<div class="title">Sources for “{html.escape(answer.question)}”</div>'
    if answer.abstained or not answer.citations:
        why = (
            f"No indexed passage was found to answer it (the best sentence's support: {answer.support:.2f}). "
            "Try other words, or add articles that cover it."
        )
        return f'<div class="sources">{head}<div class="note">{html.escape(why)}</div></div>'
    passages = {p.chunk_id: p for p in answer.passages}
    groups: dict[str, list[Citation]] = {}
    for c in answer.citations:
        groups.setdefault(c.chunk_id if c.chunk_id in passages else f"{c.chunk_id}#{c.n}", []).append(c)
    cards = [_card(group, passages.get(group[0].chunk_id)) for group in groups.values()]
    notes = "".join(f'<div class="note">Citation check: {html.escape(n)}</div>' for n in answer.checks)
    return f'<div class="sources">{head}{"".join(cards)}{notes}</div>'


def _safe_citation(c: Citation) -> Citation:
    """A copy of `c` whose words (from articles) render literally in Markdown, server paths as file names."""
    return replace(
        c,
        title=md_escape(c.title),
        article_id=md_escape(c.article_id),
        source=md_escape(_where(c)),
        url=_md_link(c.url),
        published=md_escape(c.published),
        quote=md_escape(c.quote),
        outlet=md_escape(c.outlet),
        also_in=[md_escape(o) for o in c.also_in],
    )


def _md_link(url: str) -> str:
    """An http(s) url as a Markdown link to itself (the renderer would autolink it with the escapes inside the
    address); any other url as literal text."""
    if not url.startswith(("http://", "https://")):
        return md_escape(url)
    return f"[{md_escape(url)}]({quote(url, safe=':/?&=#%~+@,;!$')})"


def timeline_markdown(timeline: Timeline) -> str:
    """Timeline.to_markdown() with the topic and everything from the articles escaped."""
    events = [
        replace(
            e,
            date=md_escape(e.date),
            text=md_escape(e.text),
            citation=_safe_citation(e.citation),
            outlets=[md_escape(o) for o in e.outlets],
        )
        for e in timeline.events
    ]
    return replace(timeline, topic=md_escape(timeline.topic), events=events).to_markdown()


def digest_markdown(digest: Digest, seen_at: float | None = None) -> str:
    """Digest.to_markdown(seen_at) with everything from the articles escaped; stories indexed after `seen_at`
    (this browser's last look) are marked as changed."""
    stories = [
        replace(
            s,
            title=md_escape(s.title),
            newest=md_escape(s.newest),
            outlets=[md_escape(o) for o in s.outlets],
            citation=_safe_citation(s.citation),
        )
        for s in digest.stories
    ]
    return replace(digest, since=md_escape(digest.since), stories=stories).to_markdown(seen_at=seen_at)


def default_since(assistant: Assistant) -> str:
    """The digest's first day: DIGEST_DAYS before the newest article's date (before today when there is none)."""
    try:
        newest = dt.date.fromisoformat((assistant.stats().get("newest_article") or "")[:10])
    except Exception:  # no index yet, or an article without a date: count back from today
        newest = dt.date.today()
    return (newest - dt.timedelta(days=DIGEST_DAYS)).isoformat()
