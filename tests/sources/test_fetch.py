"""The fetcher's limits against a real HTTP server on 127.0.0.1: compressed bombs are cut off as they decode (not
decoded whole first), and one deadline covers the whole request, headers included; a feed run has a budget."""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import brotli
import pytest
import zstandard

from qa.sources.feeds import Limits, load_url
from qa.sources.fetch import fetch

MB = 1_000_000
BOMB = 64 * 2**20  # decoded size of each bomb: 64 MiB of zeros, a few KB on the wire
ARTICLE = (
    b"<!doctype html><html><head><title>Harbour Opens</title></head><body><article><h1>Harbour Opens</h1>"
    b"<p>The new harbour of Tarnholm opened on Monday after four years of building work by the city.</p>"
    b"<p>The first ship to dock was the ferry Aldra, which carries 300 passengers to the islands.</p>"
    b"</article></body></html>"
)


def _bombs() -> dict[str, tuple[str, bytes]]:
    zeros = b"\0" * BOMB
    return {
        "/br": ("br", brotli.compress(zeros, quality=5)),
        "/gzip-gzip": ("gzip, gzip", gzip.compress(gzip.compress(zeros, 9), 9)),
        "/zstd": ("zstd", zstandard.ZstdCompressor(level=3).compress(zeros)),
        "/deflate": ("deflate", zlib.compress(zeros, 9)),
    }


class Server:
    """Serves compressed bodies, a page trickled one byte at a time (headers first), and slow pages."""

    def __init__(self, bodies: dict[str, tuple[str, bytes]], trickle_s: float = 0.3) -> None:
        self.bodies, self.trickle_s = bodies, trickle_s
        self.finished: list[str] = []  # paths whose whole answer was sent
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                with contextlib.suppress(OSError):  # the client gave up, as it should
                    server.respond(self)
                    server.finished.append(self.path)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        if h.path == "/trickle-headers":  # the status line and headers one byte at a time, each within any timeout
            answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Padding: " + b"x" * 40 + b"\r\n"
            answer += b"Content-Length: %d\r\n\r\n" % len(ARTICLE) + ARTICLE
            for byte in answer:
                h.wfile.write(bytes([byte]))
                h.wfile.flush()
                time.sleep(self.trickle_s)
            return
        if h.path.startswith("/sleep/"):  # answers after a pause
            time.sleep(float(h.path.removeprefix("/sleep/")))
            encoding, body = "identity", ARTICLE
        else:
            encoding, body = self.bodies[h.path]
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Encoding", encoding)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    article = gzip.compress(ARTICLE)
    bodies = (
        _bombs()
        | {
            "/page.gz": ("gzip", article),
            "/page-members.gz": ("gzip", gzip.compress(ARTICLE[:100]) + gzip.compress(ARTICLE[100:])),
            "/page.br": ("br", brotli.compress(ARTICLE)),
            "/page.zst": ("zstd", zstandard.ZstdCompressor().compress(ARTICLE)),
            "/page.deflate-raw": ("deflate", zlib.compress(ARTICLE)[2:-4]),  # what some servers send as deflate
            "/damaged.gz": ("gzip", article[:20] + b"\xff" * 40),
            "/unknown": ("compress", b"\x1f\x9d"),
        }
    )
    s = Server(bodies)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("path", ["/br", "/gzip-gzip", "/zstd", "/deflate"])
def test_a_compressed_bomb_is_cut_off_as_it_decodes(server: Server, path: str):
    # Each was decoded whole before the size check: 1.7 KB of brotli cost 2.74 GB. Memory is the point here.
    tracemalloc.start()
    try:
        got = fetch(server.url(path), max_bytes=MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.error == "response cut off: over the 1 MB limit (decoded)" and got.body == b""
    assert peak < 8 * MB, f"{path}: {peak / MB:.1f} MB held for a 1 MB limit (the bomb is {BOMB / MB:.0f} MB)"


@pytest.mark.parametrize("path", ["/page.gz", "/page-members.gz", "/page.br", "/page.zst", "/page.deflate-raw"])
def test_compressed_pages_decode_whole(server: Server, path: str):
    got = fetch(server.url(path))
    assert got.error == "" and got.body == ARTICLE


def test_damaged_or_unknown_encodings_are_a_reason(server: Server):
    assert fetch(server.url("/damaged.gz")).error.startswith("download failed: damaged gzip data")
    assert fetch(server.url("/unknown")).error == "download failed: unsupported content encoding 'compress'"


def test_headers_trickled_a_byte_at_a_time_time_out_at_the_deadline(server: Server):
    # A byte every 19 s never tripped the 20 s timeout, which applied to each read: one deadline now.
    started = time.monotonic()
    got = fetch(server.url("/trickle-headers"), timeout_s=1.5)
    took = time.monotonic() - started
    assert got.error == "timed out (no answer within 1.5s)"
    assert took < 0.3 * 60, took  # the server needs ~60 s for its answer; it was not waited out
    assert "/trickle-headers" not in server.finished


def test_a_feed_run_stops_fetching_pages_when_its_budget_is_spent(server: Server):
    # N summary-only entries used to cost N x the download deadline; the run's budget bounds them together.
    items = "".join(
        f"<item><title>Entry {n}</title><link>{server.url(f'/sleep/{0.8 + n / 100}')}</link>"
        f"<description>Summary {n}.</description></item>"
        for n in range(6)
    )
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>{items}</channel></rss>'
    server.bodies["/feed"] = ("identity", feed.encode())
    loaded = load_url(server.url("/feed"), Limits(timeout_s=5, budget_s=2.0))
    assert len(loaded.present) == 6  # every entry still counts as in the feed: nothing indexed is removed
    assert 1 <= len(loaded.articles) <= 3
    spent = [r for r in loaded.rejected if "time budget (2s) is spent" in r.reason]
    assert len(loaded.articles) + len(loaded.rejected) == 6 and len(spent) >= 3
    # the page fetched when the budget ran out had only what was left of it
    assert all("time budget" in r.reason or "timed out" in r.reason for r in loaded.rejected)
    assert all("fetched on the next run" in r.reason for r in spent)
