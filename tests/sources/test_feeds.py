"""Feeds and web pages: a real HTTP server on 127.0.0.1 (and no other address) serves RSS and Atom feeds, article
pages and misbehaving endpoints; the real fetcher, feedparser, trafilatura, model and index read them."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import qa
from qa.settings import Settings
from qa.sources.feeds import Limits, index_url, load_url
from qa.sources.fetch import fetch
from qa.sources.watch import parse_duration, watch
from qa.store import faiss_store

SLOW_S = 6  # how long the slow endpoint sleeps; the fetcher's timeout in these tests is 1 s


def page(title: str, *paragraphs: str) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html><head><title>{title}</title></head><body>"
        f'<nav><a href="/">Home</a> <a href="/world">World</a></nav>'
        f"<article><h1>{title}</h1>{body}</article><footer>Copyright Tarnholm Courier</footer></body></html>"
    ).encode()


TRAM = (
    "The city council of Tarnholm approved a new tram line on Tuesday after a long debate.",
    "The tram line will have 14 stops and will cost 310 million crowns, according to the transport office.",
)
TRAM_EDITED = (
    "The city council of Tarnholm approved a new tram line on Tuesday after a long debate.",
    "The tram line will have 16 stops and will cost 335 million crowns, according to the transport office.",
)
FERRY = page(
    "Vell Estuary Ferry Ends Service",
    "The ferry across the Vell estuary made its final crossing on Sunday after 87 years of service.",
    "The operator, Vellnor Lines, said passenger numbers had fallen by half since the footbridge opened.",
)
ORCHARD = page(
    "Orchard Festival Draws Record Crowd",
    "The Halden orchard festival drew a record 52,000 visitors over the weekend, the organisers said.",
    "The apple pressing contest was won by Mira Sollen, a farmer from the northern valley.",
)
MUSEUM = page(
    "Tarnholm Museum Reopens",
    "The Tarnholm maritime museum reopened on Friday after a renovation that lasted three years.",
    "Its new wing shows the wreck of the schooner Aldra, raised from the harbour floor in 2019.",
)


def rss(*items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        "<title>Tarnholm Courier</title><link>http://127.0.0.1/</link><description>News</description>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def rss_item(title: str, link: str, date: str, summary: str, content: tuple[str, ...] = ()) -> str:
    encoded = f"<content:encoded><![CDATA[{''.join(f'<p>{p}</p>' for p in content)}]]></content:encoded>"
    return (
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid><pubDate>{date}</pubDate>"
        f"<description>{summary}</description>{encoded if content else ''}</item>"
    )


class Site:
    """A small web site on 127.0.0.1 whose pages a test changes between runs; counts the requests per path."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, str, bytes]] = {}
        self.hits: Counter[str] = Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                site.hits[self.path] += 1
                with contextlib.suppress(OSError):  # the client gave up (as it should, on the bad endpoints)
                    site.respond(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        if h.path == "/slow":  # says nothing for longer than the timeout
            time.sleep(SLOW_S)
            self.send(h, 200, "text/html", page("Late", "This page came far too late to be read by anyone."))
        elif h.path == "/trickle":  # answers at once, then sends one byte every 0.2 s
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.end_headers()
            for _ in range(int(SLOW_S / 0.2)):
                h.wfile.write(b"<p>")
                h.wfile.flush()
                time.sleep(0.2)
        elif h.path == "/huge":  # an endless page without a Content-Length
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.end_headers()
            h.wfile.write(b"<html><body><p>")
            for _ in range(1000):  # 64 MB at most
                h.wfile.write(b"word " * 13_000)
        elif h.path == "/huge-declared":
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(50_000_000))
            h.end_headers()
        elif h.path == "/loop":
            h.send_response(302)
            h.send_header("Location", "/loop")
            h.end_headers()
        elif h.path.startswith("/redirect-to/"):  # sends the client on to the address after the prefix
            h.send_response(302)
            h.send_header("Location", h.path.removeprefix("/redirect-to/"))
            h.end_headers()
        elif h.path in self.pages:
            self.send(h, *self.pages[h.path])
        else:
            self.send(h, 404, "text/html", b"<html><body>not here</body></html>")

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, kind: str, body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    try:
        yield s
    finally:
        s.close()


def cited(answer: qa.Answer) -> set[str]:
    return {c.url for c in answer.citations}


def test_an_rss_feed_is_followed_new_edited_and_removed_entries(site: Site, assistant: qa.Assistant):
    feed, tram, ferry, orchard, museum = (
        site.url(p) for p in ("/feed.xml", "/news/tram.html", "/news/ferry.html", "/news/orchard.html", "/news/museum")
    )
    site.pages |= {
        "/news/ferry.html": (200, "text/html; charset=utf-8", FERRY),
        "/news/orchard.html": (200, "text/html", ORCHARD),
        "/news/museum": (200, "text/html", MUSEUM),
    }
    entries = {
        "tram": rss_item("Tarnholm Approves Tram Line", tram, "Tue, 03 Sep 2024 09:00:00 GMT", "A tram.", TRAM),
        "ferry": rss_item("Vell Ferry Ends Service", ferry, "Mon, 02 Sep 2024 08:00:00 GMT", "The ferry &amp; more."),
        "orchard": rss_item("Orchard Festival Record", orchard, "Sun, 01 Sep 2024 07:00:00 GMT", "Apples."),
    }
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss(*entries.values()))
    store, embedder, s = assistant.store(create=True), assistant.embedder, assistant.settings

    first = index_url(feed, store, embedder, s)
    assert (len(first.added), first.updated, first.removed, first.rejected) == (3, [], [], [])
    assert site.hits["/news/tram.html"] == 0  # the entry carried its text: no page fetched
    assert site.hits["/news/ferry.html"] == site.hits["/news/orchard.html"] == 1  # summaries only: pages fetched

    answer = assistant.ask("How many stops will the Tarnholm tram line have?")
    assert "14 stops" in answer.text and tram in cited(answer)
    c = next(c for c in answer.citations if c.url == tram)
    assert (c.title, c.source, c.published) == ("Tarnholm Approves Tram Line", "Tarnholm Courier", "2024-09-03")
    answer = assistant.ask("After how many years of service did the Vell estuary ferry stop?")
    assert "87 years" in answer.text and ferry in cited(answer)
    assert next(c for c in answer.citations if c.url == ferry).title == "Vell Ferry Ends Service"  # the entry's

    # The feed changes: the tram entry is edited, the ferry entry leaves, a museum entry arrives.
    entries["tram"] = rss_item("Tarnholm Approves Tram Line", tram, "Tue, 03 Sep 2024 09:00:00 GMT", "", TRAM_EDITED)
    del entries["ferry"]
    entries["museum"] = rss_item("Museum Reopens", museum, "Fri, 06 Sep 2024 10:00:00 GMT", "A museum.")
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss(*entries.values()))
    second = index_url(feed, store, embedder, s)
    assert len(second.added) == 1 and "Museum Reopens" in second.added[0]
    assert len(second.updated) == 1 and "Tarnholm Approves Tram Line" in second.updated[0]
    assert len(second.unchanged) == 1 and len(second.removed) == 1 and second.rejected == []
    assert site.hits["/news/orchard.html"] == 1  # seen before, unchanged: not fetched again

    answer = assistant.ask("How many stops will the Tarnholm tram line have?")
    assert "16 stops" in answer.text and "14 stops" not in answer.text and tram in cited(answer)
    answer = assistant.ask("Which schooner wreck does the museum's new wing show?")
    assert "Aldra" in answer.text and museum in cited(answer)
    assert ferry not in cited(assistant.ask("After how many years of service did the Vell estuary ferry stop?"))
    assert assistant.stats()["newest_article"] == "2024-09-06"

    # An entry whose page now fails is rejected with the reason; its indexed version stays; nothing else changes.
    entries["museum"] = rss_item("Museum Reopens", museum, "Fri, 06 Sep 2024 10:00:00 GMT", "New summary.")
    site.pages["/news/museum"] = (500, "text/html", b"oops")
    site.pages["/feed.xml"] = (200, "application/rss+xml", rss(*entries.values()))
    third = index_url(feed, store, embedder, s)
    assert (third.added, third.updated, third.removed, len(third.unchanged)) == ([], [], [], 2)
    assert [(r.source, r.reason) for r in third.rejected] == [
        (
            museum,
            "only a summary in the feed, and its page failed: HTTP 500 Internal Server Error "
            "(the version indexed before is kept)",
        )
    ]
    assert museum in cited(assistant.ask("Which schooner wreck does the museum's new wing show?"))

    # A feed that cannot be read removes nothing.
    site.pages["/feed.xml"] = (503, "text/html", b"down for maintenance")
    down = index_url(feed, store, embedder, s)
    assert down.removed == [] and "HTTP 503" in down.rejected[0].reason
    assert store.stats()["articles"] == 3 and store.check() == []


@pytest.mark.slow
def test_atom_feed_and_article_page_by_the_command_line(site: Site, tmp_path: Path):
    index = tmp_path / "index"
    site.pages["/ferry.html"] = (200, "text/html", FERRY)
    site.pages["/seed.html"] = (200, "text/html", ORCHARD)
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Vell Gazette</title><id>urn:vell</id><updated>2024-10-02T10:00:00Z</updated>"
        f'<entry><title>Vell Ferry Ends Service</title><link href="{site.url("/ferry.html")}"/><id>urn:1</id>'
        "<updated>2024-10-01T08:00:00Z</updated><summary>The ferry stops.</summary></entry>"
        f'<entry><title type="html">Tarnholm &lt;b&gt;Tram&lt;/b&gt;</title><link href="/tram"/><id>urn:2</id>'
        '<published>2024-10-02T09:00:00Z</published><updated>2024-10-02T10:00:00Z</updated><content type="html">'
        + "".join(f"&lt;p&gt;{p}&lt;/p&gt;" for p in TRAM)
        + "</content></entry></feed>"
    )
    site.pages["/atom"] = (200, "application/atom+xml; charset=utf-8", atom.encode())
    site.pages["/picture.png"] = (200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    article = site.url("/seed.html")

    # A long-lived Assistant (like `qa serve`) has the index loaded; another process then adds articles to it.
    first = qa.Assistant(Settings(index_dir=index, backend="extractive"))
    assert len(index_url(article, first.store(create=True), first.embedder, first.settings).added) == 1
    answer = first.ask("Who won the apple pressing contest?")
    assert "Mira Sollen" in answer.text and article in {c.url for c in answer.citations}
    assert "14 stops" not in first.ask("How many stops will the Tarnholm tram line have?").text
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa",
            "index",
            site.url("/atom"),
            article,
            site.url("/picture.png"),
            "--index",
            str(index),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "added 2, updated 0, unchanged 1, removed 0, rejected 1" in proc.stdout
    assert f"rejected  {site.url('/picture.png')}: not an HTML page or a feed (content type image/png)" in proc.stdout

    answer = first.ask("How many stops will the Tarnholm tram line have?")  # the new index, no restart
    tram = next(c for c in answer.citations if "14 stops" in c.quote)
    assert (tram.title, tram.source, tram.url, tram.published) == (
        "Tarnholm Tram",
        "Vell Gazette",
        site.url("/tram"),  # resolved against the feed's address
        "2024-10-02",
    )

    again = subprocess.run(
        [sys.executable, "-m", "qa", "index", site.url("/atom"), "--index", str(index)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "added 0, updated 0, unchanged 2, removed 0, rejected 0 (0 chunks embedded" in again.stdout
    assert site.hits["/ferry.html"] == 1

    stats = subprocess.run(
        [sys.executable, "-m", "qa", "stats", "--index", str(index), "--json"], capture_output=True, text=True
    )
    data = json.loads(stats.stdout)
    assert data["articles"] == 3 and data["newest_articles"][:2] == [
        "2024-10-02  Tarnholm Tram",
        "2024-10-01  Vell Ferry Ends Service",
    ]


@pytest.mark.slow
def test_bad_responses_are_cut_off_with_a_reason(site: Site):
    limits = Limits(timeout_s=1, max_bytes=1_000_000, max_redirects=3)
    site.pages["/picture.png"] = (200, "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    site.pages["/empty"] = (200, "text/html", b"   ")
    site.pages["/menu"] = (200, "text/html", b"<html><body><nav><a href='/'>Home</a></nav></body></html>")
    site.pages["/notes.txt"] = (200, "text/plain", b"just some notes, not a page")
    site.pages["/broken-feed"] = (200, "application/rss+xml", b'{"error": "rate limited"}')
    expected = {
        "/slow": "timed out (no answer within 1s)",
        "/trickle": "timed out (download took longer than 1s",
        "/huge": "response cut off: over the 1 MB limit",
        "/huge-declared": "response is 50.0 MB, over the 1 MB limit",
        "/loop": "too many redirects (more than 3)",
        "/picture.png": "not an HTML page or a feed (content type image/png)",
        "/missing": "HTTP 404 Not Found",
        "/empty": "empty response",
        "/menu": "no article text found in the HTML",
        "/notes.txt": "not an HTML page or a feed (text/plain)",
        "/broken-feed": "not a valid RSS or Atom feed",
    }
    for path, reason in expected.items():
        started = time.monotonic()
        loaded = load_url(site.url(path), limits)
        took = time.monotonic() - started
        assert loaded.articles == [] and len(loaded.rejected) == 1, path
        assert loaded.rejected[0].source == site.url(path) and loaded.rejected[0].reason.startswith(reason), (
            path,
            loaded.rejected[0].reason,
        )
        assert took < 5, (path, took)  # cut off, never waited out (the slow ones take 6 s)

    with socketless_port() as port:
        refused = fetch(f"http://127.0.0.1:{port}/", timeout_s=1)
    assert refused.error.startswith("cannot connect")
    assert fetch("ftp://127.0.0.1/file").error == "not an http(s) address"

    # In a feed, a bad entry page is that entry's rejection; the other entries are indexed.
    items = [
        rss_item("Ferry", site.url("/ferry.html"), "Mon, 02 Sep 2024 08:00:00 GMT", "Ferry."),
        rss_item("Slow", site.url("/slow"), "Mon, 02 Sep 2024 08:00:00 GMT", "Slow."),
        rss_item("Picture", site.url("/picture.png"), "Mon, 02 Sep 2024 08:00:00 GMT", "Picture."),
    ]
    site.pages["/ferry.html"] = (200, "text/html", FERRY)
    site.pages["/feed"] = (200, "application/rss+xml", rss(*items))
    loaded = load_url(site.url("/feed"), limits)
    assert [a.title for a in loaded.articles] == ["Ferry"] and len(loaded.present) == 3
    assert [r.reason for r in loaded.rejected] == [
        "only a summary in the feed, and its page failed: timed out (no answer within 1s)",
        "only a summary in the feed, and its page failed: not an HTML page or a feed (content type image/png)",
    ]


def test_a_feed_cannot_make_us_read_addresses_of_another_kind_than_its_own(site: Site):
    # A feed on this machine may link to pages on this machine, but not into the private network or to the cloud
    # metadata address, not even through a redirect: those entries are refused before any connection is made.
    site.pages["/ferry.html"] = (200, "text/html", FERRY)
    site.pages["/feed"] = (
        200,
        "application/rss+xml",
        rss(
            rss_item("Ferry", site.url("/ferry.html"), "Mon, 02 Sep 2024 08:00:00 GMT", "Ferry."),
            rss_item("Metadata", "http://169.254.169.254/latest/meta-data/", "Mon, 02 Sep 2024 08:00:00 GMT", "M."),
            rss_item("Bounce", site.url("/redirect-to/http://10.1.2.3/admin"), "Mon, 02 Sep 2024 08:00:00 GMT", "B."),
        ),
    )
    loaded = load_url(site.url("/feed"), Limits(timeout_s=2))
    assert [a.title for a in loaded.articles] == ["Ferry"]
    reasons = [r.reason for r in loaded.rejected]
    assert len(reasons) == 2
    assert "refused: 169.254.169.254 is a link-local address" in reasons[0]
    assert "refused: 10.1.2.3 is a private address" in reasons[1] and site.hits["/redirect-to/http://10.1.2.3/admin"]

    # A feed from a public address cannot reach this machine; the same page asked for directly is read.
    hits = site.hits["/ferry.html"]
    got = fetch(site.url("/ferry.html"), origin="http://93.184.216.34/feed.xml")
    assert got.error.startswith("refused: 127.0.0.1 is a loopback address") and site.hits["/ferry.html"] == hits
    assert fetch(site.url("/ferry.html")).ok


def test_feed_entries_are_cleaned_like_files_and_their_html_fields_read_by_a_parser(site: Site):
    # ESC/BEL in a title were stored and printed raw; 200k '<' in a field took 41.7 s in a `<[^>]+>` regex; a feed
    # opening with a run of comments was never sniffed as one (an exponential regex); a 5000-digit character
    # reference crashed html.unescape.
    evil = "\x1b]0;pwned\x07"
    body = rss(
        rss_item(f"Tram {evil}line &amp; <b>more</b>", site.url("/a"), "Mon, 02 Sep 2024 08:00:00 GMT", "x", TRAM),
        rss_item(
            "&lt;" * 200_000, site.url("/b"), "Mon, 02 Sep 2024 08:00:00 GMT", "b", ("Text of b. " + "&lt;" * 200_000,)
        ),
        rss_item("Digits", site.url("/c"), "Mon, 02 Sep 2024 08:00:00 GMT", "c", ("&#" + "9" * 5000 + "; text",)),
    )
    declaration, rest = body.split(b"\n", 1)
    site.pages["/feed.xml"] = (200, "text/plain", declaration + b"<!---->" * 40 + rest)  # sniffed: no feed type
    loaded = load_url(site.url("/feed.xml"), Limits(timeout_s=5))
    assert loaded.kind == "feed" and loaded.rejected == []
    tram, lt, digits = loaded.articles
    assert tram.title == "Tram ]0;pwnedline & more" and tram.text.startswith(TRAM[0])
    assert len(lt.title) <= 300 and set(lt.title.removesuffix("\u2026")) == {"<"}
    assert lt.text.startswith("Text of b.") and lt.text.count("<") == 200_000
    assert digits.text.endswith("text") and not any(c in a.text + a.title for a in loaded.articles for c in "\x1b\x07")


def test_the_guard_checks_every_address_of_the_host_httpx_connects_to(monkeypatch: pytest.MonkeyPatch):
    # No DNS here, so name resolution is faked (the test is about our check, not about DNS). Python's idna codec
    # reads "xn--fa-hia.de" as "faß.de" and would look up "fass.de": the guard must check the name connected to.
    import socket

    answers = {
        "xn--fa-hia.de": ["127.0.0.1"],
        "fass.de": ["93.184.216.35"],
        "mixed.example": ["93.184.216.36", "10.0.0.1"],
    }

    def getaddrinfo(host, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(f"unknown host {host}")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0)) for ip in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    public_feed = "http://93.184.216.34/feed.xml"
    for url, reason in (
        ("http://xn--fa-hia.de/latest", "refused: xn--fa-hia.de is a loopback address (127.0.0.1)"),
        ("http://faß.de/latest", "refused: xn--fa-hia.de is a loopback address (127.0.0.1)"),
        ("http://mixed.example/", "refused: mixed.example is a private address (10.0.0.1)"),
        ("http://nowhere.example/", "cannot connect: nowhere.example does not resolve"),
    ):
        assert fetch(url, origin=public_feed, timeout_s=1).error.startswith(reason), url


class socketless_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


@pytest.mark.slow
def test_watch_polls_a_feed(site: Site, settings: Settings):
    items = [rss_item("Ferry", site.url("/ferry.html"), "Mon, 02 Sep 2024 08:00:00 GMT", "Ferry.")]
    site.pages["/ferry.html"] = (200, "text/html", FERRY)
    site.pages["/museum.html"] = (200, "text/html", MUSEUM)
    site.pages["/feed"] = (200, "application/rss+xml", rss(*items))
    lines: list[str] = []
    stop = threading.Event()
    runner = threading.Thread(
        target=watch,
        args=([], settings),
        kwargs={"feeds": [site.url("/feed")], "every_s": 0.5, "stop": stop, "say": lines.append},
    )
    runner.start()
    try:
        wait_for(lambda: any("feeds: added 1" in line for line in lines), 60, lines)
        items.append(rss_item("Museum", site.url("/museum.html"), "Fri, 06 Sep 2024 10:00:00 GMT", "Museum."))
        site.pages["/feed"] = (200, "application/rss+xml", rss(*items))
        wait_for(lambda: any("feeds: added 1, updated 0, unchanged 1" in line for line in lines), 60, lines)
        polls = site.hits["/feed"]
        wait_for(lambda: site.hits["/feed"] >= polls + 2, 10, lines)  # it keeps polling; unchanged: silent
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive() and lines[-1] == "stopped"
    assert sum("feeds:" in line for line in lines) == 2  # the first poll, then the one that changed something
    assert site.hits["/museum.html"] == 1 and site.hits["/ferry.html"] == 1
    assert faiss_store(settings.index_dir).check() == []


def wait_for(condition, seconds: float, lines: list[str]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "\n".join(lines)
        time.sleep(0.1)


def test_durations():
    assert [parse_duration(x) for x in ("30s", "15m", "1h30m", "90", "0.5s", "2h")] == [30, 900, 5400, 90, 0.5, 7200]
    for bad in ("", "soon", "15x", "-5m", "0s"):
        with pytest.raises(ValueError):
            parse_duration(bad)
