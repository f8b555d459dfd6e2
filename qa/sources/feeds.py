"""Web sources: RSS/Atom feeds (feedparser) and plain article pages in, Articles out; failures become Rejections.

A feed is treated like a file that holds several articles: each entry becomes an article (title, link,
published date, source) whose id comes from its link, and an entry that left the feed is removed from the
index. A feed that cannot be fetched or parsed removes nothing. An entry that carries only a summary gets the
text of its linked page, extracted like an .html file. Entries seen before (same link, same entry content)
whose article is still in the index are skipped without fetching anything (remembered in <index>/feeds.json).

One feed run has a time budget (Limits.budget_s, settings.feed_budget_s) besides each download's deadline: once
it is spent, the summary-only entries left are not fetched this time (their indexed versions are kept, and the
next run fetches them), so a feed of slow pages cannot hold `qa watch` for N entries x the download deadline.
Feed fields are HTML turned into text by a real parser (lxml, linear in any input), never by a regex.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from qa.indexing.embed import Embedder
from qa.schema import Article, IndexReport, Rejection
from qa.settings import Settings
from qa.sources.fetch import FEED_TYPES, HTML_TYPES, MAX_BYTES, MAX_REDIRECTS, TIMEOUT_S, fetch, is_url
from qa.sources.ingest import MAX_HTML_TAGS, IngestError, html_to_article, id_for, make_article, too_many_tags
from qa.store import VectorStore
from qa.text import clean

log = logging.getLogger(__name__)

SEEN_FILE = "feeds.json"  # in the index folder: what each feed's entries looked like when last indexed
PLAIN_TYPES = frozenset({"text/plain"})  # some servers send feeds as text/plain
_FEED_ROOT = re.compile(rb"<(rss|feed|rdf:RDF)\b")
_TAGGED = re.compile(r"<[A-Za-z/!?]")  # fixed-length patterns: linear searches
_MARKUP = re.compile(r"<[A-Za-z/!?]|&")
_DROPPED = ("script", "style", "template", "noscript")  # elements whose text is not text
_BUDGET_S = Settings.model_construct().feed_budget_s
_FIELD_CHARS = 20_000  # of a feed's title or source name read (as HTML) before it is cut to a line


@dataclass
class Limits:
    """How patient and how greedy one download may be (see qa.sources.fetch)."""

    timeout_s: float = TIMEOUT_S
    max_bytes: int = MAX_BYTES
    max_redirects: int = MAX_REDIRECTS
    budget_s: float = _BUDGET_S  # one feed run: the feed and its entries' pages together

    @classmethod
    def of(cls, settings: Settings, **overrides) -> Limits:
        limits = {"max_bytes": settings.max_file_bytes, "timeout_s": settings.fetch_timeout_s}
        limits |= {"max_redirects": settings.fetch_max_redirects, "budget_s": settings.feed_budget_s}
        return cls(**(limits | overrides))


@dataclass
class Loaded:
    """What one URL holds now. `present` are the ids of entries still in the feed (also those that failed to
    load this time, whose indexed version is kept); `origin` is the feed URL for a feed, "" for a page."""

    url: str
    kind: str = ""  # "feed", "page" or "" (nothing usable)
    articles: list[Article] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # seen before and unchanged: not fetched again
    origin: str = ""
    seen: dict[str, dict[str, str]] = field(default_factory=dict)  # link -> {"entry", "id", "hash"}


def load_url(
    url: str,
    limits: Limits | None = None,
    known: Callable[[list[str]], dict[str, tuple[str, str]]] | None = None,
    seen: dict[str, dict[str, str]] | None = None,
) -> Loaded:
    """Fetch `url` and turn it into articles: a feed with entries, else an article page. Never raises for
    what the network or the page does; every problem is a Rejection with the reason. `known(ids)`: the
    (content hash, origin) the index holds for those of the feed's article ids it has (VectorStore.known_articles),
    asked once per feed for its entries only."""
    limits = limits or Limits()
    out = Loaded(url=url)
    deadline = time.monotonic() + limits.budget_s
    got = fetch(
        url,
        accept=HTML_TYPES | FEED_TYPES | PLAIN_TYPES,
        timeout_s=min(limits.timeout_s, limits.budget_s),
        max_bytes=limits.max_bytes,
        max_redirects=limits.max_redirects,
    )
    if not got.ok:
        out.rejected.append(Rejection(url, got.error))
        return out
    if got.content_type in FEED_TYPES or _starts_like_feed(got.body[:4096]):
        import feedparser  # only when a feed is seen

        headers = {"content-type": got.content_type or "application/xml", "content-location": got.final_url}
        try:  # its HTML clean-up and link resolution are off: the text is taken out of the HTML here, not shown
            parsed = feedparser.parse(
                got.body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False
            )
        except Exception as exc:  # feedparser's loose parser fails on some malformed feeds (a 5000-digit &#...;)
            out.rejected.append(Rejection(url, f"the feed could not be parsed ({type(exc).__name__})"))
            return out
        if parsed.get("version") or parsed.entries:
            if not parsed.entries:
                out.rejected.append(Rejection(url, "the feed has no entries (nothing indexed, nothing removed)"))
                return out
            out.kind, out.origin = "feed", url
            _load_entries(parsed, out, limits, known or (lambda ids: {}), seen or {}, deadline)
            return out
        if got.content_type in FEED_TYPES:
            why = parsed.get("bozo_exception") or "no feed elements found"
            out.rejected.append(Rejection(url, f"not a valid RSS or Atom feed ({why})"))
            return out
    if got.content_type not in HTML_TYPES and (got.content_type in PLAIN_TYPES or not _looks_like_html(got.body)):
        kind = got.content_type or "unknown content type"
        out.rejected.append(Rejection(url, f"not an HTML page or a feed ({kind})"))
        return out
    try:
        out.articles.append(html_to_article(got.text(), origin=url, url=url))
        out.kind = "page"
    except IngestError as exc:
        out.rejected.append(Rejection(url, str(exc)))
    return out


def _starts_like_feed(head: bytes) -> bool:
    """The body opens with an RSS, Atom or RDF root, after an optional XML declaration and comments (scanned
    with find, not a regex: `(<!--.*?-->)*` backtracks exponentially on a run of comments)."""
    rest = head.lstrip()
    if rest.startswith(b"<?xml"):
        end = rest.find(b">")
        rest = rest[end + 1 :].lstrip() if end >= 0 else b""
    while rest.startswith(b"<!--"):
        end = rest.find(b"-->", 4)
        rest = rest[end + 3 :].lstrip() if end >= 0 else b""
    return _FEED_ROOT.match(rest) is not None


def _looks_like_html(body: bytes) -> bool:
    head = body[:4096].lower()
    return any(tag in head for tag in (b"<html", b"<body", b"<p", b"<div", b"<article", b"<!doctype html"))


def _load_entries(parsed, out: Loaded, limits: Limits, known: Callable, seen: dict, deadline: float) -> None:
    feed_title = _plain(parsed.feed.get("title", ""))
    keys = [e.get("link") or e.get("id") or f"{out.url}#{n}" for n, e in enumerate(parsed.entries, start=1)]
    known = known([id_for(key) for key in keys])
    for n, (entry, key) in enumerate(zip(parsed.entries, keys, strict=True), start=1):
        link = entry.get("link") or ""
        where = link or f"{out.url} entry {n}"
        title = _plain(entry.get("title", ""))
        content = [c.get("value", "") for c in entry.get("content") or [] if c.get("value", "").strip()]
        summary = entry.get("summary", "") or ""
        published = entry.get("published") or entry.get("updated") or ""
        source = _plain((entry.get("source") or {}).get("title", "")) or feed_title or urlsplit(out.url).hostname
        aid = id_for(key)
        out.present.append(aid)
        entry_hash = _digest(key, title, published, source, summary, *content)
        before = seen.get(key)
        if before and before.get("entry") == entry_hash and known.get(aid, ("",))[0] == before.get("hash"):
            out.skipped.append(aid)
            out.seen[key] = before
            continue
        try:
            if content:
                text = _html_text("\n".join(content), out.url, link)
            elif is_url(link):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IngestError(
                        f"only a summary in the feed, and this run's time budget ({limits.budget_s:g}s) is spent: "
                        "its page is fetched on the next run"
                    )
                page = fetch(
                    link,
                    accept=HTML_TYPES,
                    timeout_s=min(limits.timeout_s, left),
                    max_bytes=limits.max_bytes,
                    max_redirects=limits.max_redirects,
                    origin=out.url,
                )
                if not page.ok:
                    raise IngestError(f"only a summary in the feed, and its page failed: {page.error}")
                extracted = html_to_article(page.text(), origin=out.url, url=link)
                text = extracted.text
                title = title or extracted.title
                published = published or extracted.published
            elif summary.strip():
                text = _html_text(summary, out.url, link)
            else:
                raise IngestError("entry has no text and no link")
            article = make_article(
                title=title,
                text=text,
                source=source or "",
                origin=out.origin,
                key=key,
                url=link,
                published=published,
            )
        except IngestError as exc:
            reason = str(exc)
            if aid in known:
                reason += " (the version indexed before is kept)"
            out.rejected.append(Rejection(where, reason))
            continue
        out.articles.append(article)
        out.seen[key] = {"entry": entry_hash, "id": article.id, "hash": article.content_hash}


def _html_text(fragment: str, origin: str, url: str) -> str:
    """The text of an HTML fragment from a feed (plain text passes through): the article extractor first, else
    all the fragment's text."""
    fragment = clean(fragment)
    if not _TAGGED.search(fragment):
        return html_text(fragment).strip()  # entities decoded (html.unescape fails on a 5000-digit &#...;)
    try:
        return html_to_article(f"<html><body><article>{fragment}</article></body></html>", origin, url).text
    except IngestError:
        text = re.sub(r"[ \t]+", " ", html_text(fragment)).strip()
        if not text:
            raise
        return text


def html_text(fragment: str) -> str:
    """All the text of an HTML fragment, entities decoded, scripts and styles dropped (lxml's HTML parser:
    linear on any input, e.g. 200k '<' that a `<[^>]+>` regex takes quadratic time over). Like a page, a fragment
    of more tags than any article is refused (IngestError) rather than parsed."""
    import lxml.html
    from lxml import etree

    fragment = clean(fragment)
    if not _MARKUP.search(fragment):
        return fragment
    if too_many_tags(fragment):
        raise IngestError(f"the HTML has more than {MAX_HTML_TAGS:,} tags, more than any article")
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div", parser=_html_parser())
    except (etree.ParserError, ValueError):  # nothing to parse (only a comment, say)
        return ""
    for element in list(root.iter(*_DROPPED)):
        element.drop_tree()
    return clean(root.text_content())


@functools.cache
def _html_parser():
    import lxml.html

    return lxml.html.HTMLParser(huge_tree=True)  # a text node may be megabytes long


def _plain(text: str) -> str:
    """A feed field (a title, a source name) as one line of text. Only its first _FIELD_CHARS are read: it is cut
    to a few hundred characters anyway (qa.sources.ingest.MAX_TITLE_CHARS)."""
    return " ".join(html_text((text or "")[:_FIELD_CHARS]).split())


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


# -- indexing ------------------------------------------------------------------------------------------------
def index_url(
    url: str, store: VectorStore, embedder: Embedder, settings: Settings, limits: Limits | None = None
) -> IndexReport:
    """Bring the index up to date with one feed or page: new and edited entries are (re)embedded, entries that
    left the feed are removed, and every failure is a rejection with its reason."""
    from qa.indexing.indexer import index_articles

    limits = limits or Limits.of(settings)
    feeds = _read_seen(store.path)
    loaded = load_url(url, limits, lambda ids: store.known_articles(ids=ids), feeds.get(url, {}))
    if loaded.kind == "feed":
        report = index_articles(loaded.articles, store, embedder, settings, origin=url, keep=loaded.present)
    elif loaded.articles:
        report = index_articles(loaded.articles, store, embedder, settings)
    else:
        report = IndexReport()
    report.unchanged += loaded.skipped
    report.rejected = loaded.rejected + report.rejected
    if loaded.kind == "feed":
        # remember only what the index really holds (not duplicates, say)
        now = store.known_articles(ids=[s["id"] for s in loaded.seen.values()])
        feeds[url] = {link: s for link, s in loaded.seen.items() if now.get(s["id"], ("",))[0] == s["hash"]}
        _write_seen(store.path, feeds)
    return report


def index_urls(
    urls: list[str], store: VectorStore, embedder: Embedder, settings: Settings, limits: Limits | None = None
) -> IndexReport:
    return IndexReport.merge(*(index_url(u, store, embedder, settings, limits) for u in urls))


def _read_seen(index_dir: Path) -> dict[str, dict[str, dict[str, str]]]:
    try:
        data = json.loads((index_dir / SEEN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a missing or damaged cache only costs fetching again
    return data if isinstance(data, dict) else {}


def _write_seen(index_dir: Path, feeds: dict) -> None:
    target = index_dir / SEEN_FILE
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(feeds, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, target)
