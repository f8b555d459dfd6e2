"""Hostile inputs (issue 11) at full size: each case runs in its own process, and its wall time, peak RSS and
outcome are printed in one table. Cases: 16 MB of one line, one 15 MB title, 16 MB of 1-character lines, the
reported 954 KB file whose first line is 880 KB (indexed with the real model), 1 GiB brotli / gzip-in-gzip /
zstd bombs, response headers trickled a byte every 19 s, a feed of slow pages, 1 MB adversarial strings in feed
fields and pages, and links out of an indexed folder.

    python -m stress.hostile                  # every case, each stopped after --cap seconds
    python -m stress.hostile --only bomb      # the cases whose name contains "bomb"
    python -m stress.hostile --tree OLD       # the same cases against another checkout (a "before" column)

Each case says what it expects (a bounded result, a rejection with a reason); any other outcome, or a case
still running at the cap, fails the run. Only the standard library and qa are imported, so --tree works on
older checkouts too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
GIB = 2**30
CASES: dict[str, Callable[[Path], tuple[bool, str]]] = {}


def case(name: str):
    def register(fn: Callable[[Path], tuple[bool, str]]):
        CASES[name] = fn
        return fn

    return register


# -- a local server for the network cases ------------------------------------------------------------------------
class _Server:
    def __init__(self, routes: dict[str, Callable[[BaseHTTPRequestHandler], None]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                with contextlib.suppress(OSError):
                    routes[self.path.split("?")[0]](self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


def _send(h: BaseHTTPRequestHandler, body: bytes, kind: str = "text/html", encoding: str = "") -> None:
    h.send_response(200)
    h.send_header("Content-Type", kind)
    if encoding:
        h.send_header("Content-Encoding", encoding)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _zeros(total: int, step: int = 2**20) -> Iterator[bytes]:
    block = b"\0" * step
    for _ in range(total // step):
        yield block


def _bomb(kind: str) -> bytes:
    """1 GiB of zeros compressed as `kind`, made in 1 MiB steps (never 1 GiB in memory)."""
    if kind == "br":
        import brotli

        c = brotli.Compressor(quality=5)
        return b"".join(c.process(b) for b in _zeros(GIB)) + c.finish()
    if kind == "zstd":
        import zstandard

        z = zstandard.ZstdCompressor(level=3).compressobj()
        return b"".join(z.compress(b) for b in _zeros(GIB)) + z.flush()
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    outer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [outer.compress(inner.compress(b)) for b in _zeros(GIB)]
    return b"".join(out) + outer.compress(inner.flush()) + outer.flush()


def _fetch_case(path: str, routes: dict) -> tuple[str, float]:
    from qa.sources.fetch import fetch

    server = _Server(routes)
    started = time.monotonic()
    got = fetch(server.url(path))
    return (got.error or f"ok, {len(got.body)} bytes"), time.monotonic() - started


# -- the cases -----------------------------------------------------------------------------------------------------
def _ingest_and_chunk(path: Path) -> tuple[int, int, int, str]:
    from qa.indexing.chunk import chunk_article
    from qa.sources.ingest import load_file

    [article], _ = load_file(path, 16 * MB)
    chunks = chunk_article(article, 600, 150)
    return len(chunks), max(len(c.text) for c in chunks), sum(len(c.sentences) for c in chunks), article.title


@case("one line of 16 MB (.txt, chunked)")
def _one_line(work: Path) -> tuple[bool, str]:
    path = work / "line.txt"
    path.write_text("word " * (15_900_000 // 5))
    chunks, longest, sentences, title = _ingest_and_chunk(path)
    return len(title) <= 300 and longest <= 600, f"{chunks} chunks of <= {longest} chars, title {len(title)} chars"


@case("1-character lines, 16 MB (.txt, chunked)")
def _short_lines(work: Path) -> tuple[bool, str]:
    path = work / "lines.txt"
    path.write_text("Title\n" + "a\n" * 7_900_000)
    chunks, longest, sentences, _ = _ingest_and_chunk(path)
    return sentences <= 2 * 16 * MB / 16, f"{chunks} chunks, {sentences} sentences to embed"


def _index(work: Path, folder: Path) -> tuple[object, object]:
    import qa
    from qa.settings import Settings

    assistant = qa.Assistant(Settings(index_dir=work / "index", backend="extractive"))
    report = assistant.index([folder])
    titles = [r[0] for r in assistant.store().connection().execute("SELECT title FROM articles")]
    return report, titles


@case("baseline: one small article (indexed)")
def _baseline(work: Path) -> tuple[bool, str]:
    folder = work / "in"
    folder.mkdir()
    (folder / "small.txt").write_text("Harbour Opens\n\nThe new harbour of Tarnholm opened on Monday.")
    report, _ = _index(work, folder)
    return len(report.added) == 1, f"{report.chunks_embedded} chunk: the model's own RSS, for the indexed cases"


@case("one 15 MB title (.json, indexed)")
def _title(work: Path) -> tuple[bool, str]:
    folder = work / "in"
    folder.mkdir()
    text = " ".join(f"The harbour council met for session {i} on Monday." for i in range(1000))  # ~90 chunks
    (folder / "title.json").write_text(json.dumps({"title": "headline " * 1_650_000, "text": text}))
    report, titles = _index(work, folder)
    size = sum(p.stat().st_size for p in (work / "index").iterdir() if p.is_file())
    ok = len(report.added) == 1 and max(map(len, titles)) <= 300
    return ok, f"{report.chunks_embedded} chunks, title {max(map(len, titles))} chars, index {size / MB:.1f} MB"


@case("880 KB first line of a 954 KB .txt (indexed)")
def _reported(work: Path) -> tuple[bool, str]:
    folder = work / "in"
    folder.mkdir()
    line = "The council discussed the harbour budget again at length. " * 15_000  # 885 KB
    rest = "\n\n".join("The ferry timetable changes in June." for _ in range(2000))
    (folder / "upload.txt").write_text(line + "\n\n" + rest)
    report, titles = _index(work, folder)
    return len(report.added) == 1 and max(map(len, titles)) <= 300, f"{report.chunks_embedded} chunks, {titles[0]!r}"


def _bomb_case(kind: str, encoding: str) -> Callable[[Path], tuple[bool, str]]:
    def run(work: Path) -> tuple[bool, str]:
        body = _bomb(kind)
        error, seconds = _fetch_case("/bomb", {"/bomb": lambda h: _send(h, body, encoding=encoding)})
        return "cut off" in error, f"{len(body) / 1000:.1f} KB on the wire: {error}"

    return run


case("1 GiB brotli bomb (fetch)")(_bomb_case("br", "br"))
case("1 GiB gzip-in-gzip bomb (fetch)")(_bomb_case("gzip", "gzip, gzip"))
case("1 GiB zstd bomb (fetch)")(_bomb_case("zstd", "zstd"))


def _trickle(h: BaseHTTPRequestHandler, every_s: float = 19.0) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nok":
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        time.sleep(every_s)


@case("headers at 1 byte / 19 s (fetch, 20 s deadline)")
def _slow_headers(work: Path) -> tuple[bool, str]:
    error, seconds = _fetch_case("/slow", {"/slow": _trickle})
    return error.startswith("timed out") and seconds < 25, f"{error} after {seconds:.0f}s"


@case("feed of 8 pages that answer after 25 s (budget)")
def _slow_feed(work: Path) -> tuple[bool, str]:
    from qa.settings import Settings
    from qa.sources.feeds import Limits, load_url

    def late(h: BaseHTTPRequestHandler) -> None:
        time.sleep(25)
        _send(h, b"<html><body><article><p>" + b"The late page finally came. " * 20 + b"</p></article></body></html>")

    routes: dict[str, Callable] = {}
    server = _Server(routes)
    items = "".join(
        f"<item><title>Entry {n}</title><link>{server.url(f'/page{n}')}</link><description>s</description></item>"
        for n in range(8)
    )
    feed = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>{items}</channel></rss>'.encode()
    routes |= {f"/page{n}": late for n in range(8)} | {"/feed": lambda h: _send(h, feed, "application/rss+xml")}
    started = time.monotonic()
    loaded = load_url(server.url("/feed"), Limits.of(Settings()))
    seconds = time.monotonic() - started
    return seconds < 150 and len(loaded.present) == 8, f"{len(loaded.rejected)} entries put off, {seconds:.0f}s"


def _feed_with(title: str, content: str, head: str = "") -> bytes:
    guid = '<guid isPermaLink="false">entry-1</guid>'  # no link: the summary is the text
    item = f"<item><title>{title}</title>{guid}<description>{content}</description></item>"
    return (f'<?xml version="1.0"?>{head}<rss version="2.0"><channel><title>F</title>{item}</channel></rss>').encode()


def _feed_case(body: bytes, kind: str = "application/rss+xml") -> tuple[bool, str]:
    from qa.sources.feeds import load_url

    server = _Server({"/feed": lambda h: _send(h, body, kind)})
    loaded = load_url(server.url("/feed"))
    titles = [len(a.title) for a in loaded.articles]
    reasons = [r.reason[:80] for r in loaded.rejected]
    ok = loaded.kind == "feed" and len(titles) == 1 and titles[0] <= 300
    return ok, f"{loaded.kind or 'no feed'}: {len(titles)} entry, title of {titles} chars; rejected {reasons}"


@case("feed title of 1 MB '<' (regex)")
def _feed_title(work: Path) -> tuple[bool, str]:
    return _feed_case(_feed_with("&lt;" * 1_000_000, "A summary of the entry."))


@case("feed summary of 1 MB '<' (regex)")
def _feed_summary(work: Path) -> tuple[bool, str]:
    return _feed_case(_feed_with("Entry", "&lt;b&gt;" + "&lt;" * 1_000_000))


@case("page opening with 40 comments (feed-sniffing regex)")
def _page_comments(work: Path) -> tuple[bool, str]:
    # Every response that is not declared a feed is sniffed for one; a run of comments with no feed root after
    # it made the old `(<!--.*?-->\s*)*` regex backtrack 2^40 times.
    from qa.sources.feeds import load_url

    text = b"<p>The new harbour of Tarnholm opened on Monday after four years of building work.</p>" * 3
    page = b"<!---->" * 40 + b"<html><head><title>Harbour</title></head><body><article>" + text + b"</article></html>"
    server = _Server({"/page": lambda h: _send(h, page)})
    loaded = load_url(server.url("/page"))
    return loaded.kind == "page", f"{loaded.kind or 'nothing'}: {[a.title for a in loaded.articles]}"


@case("HTML file of 333k <p> (1 MB)")
def _many_tags(work: Path) -> tuple[bool, str]:
    from qa.sources.ingest import IngestError, load_file

    path = work / "tags.html"
    path.write_text("<html><body><article>" + "<p>" * 333_000 + "</article></body></html>")
    try:
        load_file(path, 16 * MB)
    except IngestError as exc:
        return True, f"rejected: {exc}"
    return False, "read as an article"


@case("links out of the folder (secret, /etc/passwd)")
def _links(work: Path) -> tuple[bool, str]:
    from qa.schema import Article
    from qa.sources.ingest import iter_articles

    (work / "secret.txt").write_text("Secret\n\nThe password is swordfish.")
    inbox = work / "inbox"
    inbox.mkdir()
    (inbox / "news.txt").write_text("News\n\nThe harbour opened on Monday.")
    (inbox / "leak.txt").symlink_to(work / "secret.txt")
    (inbox / "passwd.json").symlink_to("/etc/passwd")
    items = list(iter_articles([inbox], 16 * MB))
    leaked = [a.origin for a in items if isinstance(a, Article) and ("swordfish" in a.text or "root:" in a.text)]
    rejected = sorted(Path(r.source).name for r in items if not isinstance(r, Article))
    return not leaked, f"leaked {leaked or 'nothing'}; rejected {rejected}"


# -- running -------------------------------------------------------------------------------------------------------
def _child(name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="qa-hostile-") as tmp:
        started = time.monotonic()
        try:
            ok, outcome = CASES[name](Path(tmp))
        except Exception as exc:  # a crash is an outcome too
            ok, outcome = False, f"crashed: {type(exc).__name__}: {str(exc)[:200]}"
        seconds = time.monotonic() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"ok": ok, "outcome": outcome, "seconds": seconds, "rss_mb": rss}), flush=True)


def _peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _run(name: str, tree: Path, cap: float) -> dict:
    env = os.environ | {"PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", name]
    started = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tree)
    peak = 0.0
    while child.poll() is None and time.monotonic() - started < cap:
        peak = max(peak, _peak_rss_mb(child.pid))
        time.sleep(0.2)
    if child.poll() is None:
        child.kill()
        child.wait()
        return {"ok": False, "outcome": f"still running at {cap:g}s: killed", "seconds": cap, "rss_mb": peak}
    lines = (child.stdout.read() if child.stdout else "").strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return {
            "ok": False,
            "outcome": f"died (exit {child.returncode})",
            "seconds": time.monotonic() - started,
            "rss_mb": peak,
        }
    result["rss_mb"] = max(result["rss_mb"], peak)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--cap", type=float, default=900, help="seconds a case may take before it is killed")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose qa is run (default: this one)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        _child(args.case)
        return 0
    names = [n for n in CASES if args.only in n]
    print(f"hostile inputs against {args.tree} (each case its own process, killed at {args.cap:g}s)")
    print(f"{'attack':<52}{'time':>9}{'peak RSS':>11}  outcome")
    failed = 0
    for name in names:
        result = _run(name, args.tree.resolve(), args.cap)
        failed += not result["ok"]
        mark = "" if result["ok"] else "FAILED: "
        print(f"{name:<52}{result['seconds']:>8.1f}s{result['rss_mb']:>8.0f} MB  {mark}{result['outcome']}", flush=True)
    print(f"{len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
