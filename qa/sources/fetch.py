"""Bounded HTTP GET for feeds and article pages: every failure is a reason string, nothing hangs or escapes.

One deadline, `timeout_s`, covers the whole request: name lookups, connecting, every redirect, the headers
and the body (a server that trickles its headers a byte at a time is cut off like one that trickles its body).
The body is streamed, decoded here as it comes (gzip, deflate, br, zstd, also several layers of them) in
pieces of at most 64 KiB, and dropped at `max_bytes` counted after decoding: a small compressed "bomb" that
expands to gigabytes costs no more memory than `max_bytes`. Redirects are followed up to `max_redirects`; a
content type the caller does not accept is refused from the headers, before the body is read.

A feed on the internet must not make us read this machine or its network: every request (each redirect too)
goes to a public address, or to the same kind of address as the one the user gave (`origin`: loopback for a
feed on 127.0.0.1, private for an intranet page). So a link or redirect to 127.0.0.1, 10.x or the cloud
metadata address 169.254.169.254 in a public feed is refused, not fetched and indexed for anyone to ask about.
(A host name checked here could resolve differently a moment later when httpx connects: not a defence against
DNS rebinding.)
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from qa.settings import Settings

# Defaults for callers without settings: the Settings defaults (fetch_timeout_s, fetch_max_redirects, max_file_mb).
_DEFAULTS = Settings.model_construct()  # the defaults, not $QA_* (read where settings are passed)
TIMEOUT_S = _DEFAULTS.fetch_timeout_s
MAX_REDIRECTS = _DEFAULTS.fetch_max_redirects
MAX_BYTES = _DEFAULTS.max_file_bytes
USER_AGENT = "news-qa/0.1 (+https://pypi.org/project/news-qa/)"

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
FEED_TYPES = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml", "text/xml"}
)
_CHARSET = re.compile(rb"""<meta[^<>]{0,512}?charset=["']?([A-Za-z0-9_.:-]{1,40})""", re.IGNORECASE)
_STEP = 64 * 1024  # most bytes one decoding step may produce
_ZSTD_MAX_WINDOW = 8 * 1024 * 1024  # RFC 9659: HTTP zstd decoders need not accept larger windows


@dataclass
class Fetched:
    """The result of one GET: `error` is "" on success, else the reason (and `body` is empty)."""

    url: str  # as asked
    final_url: str = ""  # after redirects
    status: int = 0
    content_type: str = ""  # lower case, without parameters
    charset: str = ""
    body: bytes = b""
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error

    def text(self) -> str:
        """The body decoded: the charset of the headers, else of a <meta> tag, else UTF-8 (bad bytes replaced)."""
        charset = self.charset
        if not charset:
            match = _CHARSET.search(self.body[:4096])
            charset = match.group(1).decode("ascii") if match else "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name
            return self.body.decode("utf-8", errors="replace")


def is_url(text: str) -> bool:
    return str(text).lower().startswith(("http://", "https://"))


def _host(url: str | httpx.URL) -> str:
    """The host as httpx will connect to it: IDNA-2008 ASCII (a Unicode name can encode differently in
    Python's older idna codec, i.e. name another host than the one connected to)."""
    try:
        return httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return urlsplit(str(url)).hostname or ""


class _Refused(Exception):
    pass


def address_kinds(host: str) -> dict[str, str]:
    """{kind: an address of that kind} over every address `host` is or resolves to. Kinds: "public",
    "loopback", "link-local", "private", or "unresolved" (nothing to connect to)."""
    name = host.strip("[]").lower().rstrip(".")
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return {"loopback": name}
    try:
        addresses = [ipaddress.ip_address(name)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            return {"unresolved": ""}
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    kinds: dict[str, str] = {}
    for ip in addresses:
        ip = getattr(ip, "ipv4_mapped", None) or ip
        if ip.is_loopback or ip.is_unspecified:  # 0.0.0.0 connects to this machine
            kind = "loopback"
        elif ip.is_link_local:
            kind = "link-local"
        else:
            kind = "public" if ip.is_global else "private"
        kinds.setdefault(kind, str(ip))
    return kinds


def _guard(origin: str, origin_kinds: dict[str, str], known: dict[str, dict[str, str]]):
    """An httpx request hook: refuse a request to a host any of whose addresses is non-public and of another
    kind than the origin's. `known`: hosts already resolved for this download (not looked up again)."""
    allowed = {"public", *origin_kinds}

    def check(request: httpx.Request) -> None:
        host = _host(request.url)
        for kind, address in (known.get(host) or address_kinds(host)).items():
            if kind == "unresolved" and kind not in allowed:
                raise _Refused(f"cannot connect: {host} does not resolve")
            if kind not in allowed:
                raise _Refused(
                    f"refused: {host} is a {kind} address ({address}), and {origin} is not; "
                    "fetch it directly if it is meant to be read"
                )

    return check


def fetch(
    url: str,
    *,
    accept: Collection[str] | None = None,
    timeout_s: float = TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
    max_redirects: int = MAX_REDIRECTS,
    origin: str = "",
) -> Fetched:
    """GET `url` within the limits; `accept` lists the content types wanted (None: any). `origin` is the address
    the user gave when `url` came from it (a feed's entry link): it decides which non-public addresses are allowed
    (module docstring)."""
    started = time.monotonic()
    # The request runs in a worker; this thread waits for it until the deadline, whatever step it is stuck in
    # (httpx's own timeouts apply to each step: a byte every 19 s would never end a 20 s read timeout).
    out: list[Fetched] = []
    job = _Job()

    def run() -> None:
        try:
            out.append(_attempt(url, accept, timeout_s, max_bytes, max_redirects, started, origin or url, job))
        except Exception as exc:  # _attempt turns what the network does into reasons; this is the unforeseen
            out.append(Fetched(url=url, error=f"download failed ({type(exc).__name__}: {exc})"))

    # daemon: a worker stuck in a read past the deadline is left to its own read timeout, never waited for
    worker = threading.Thread(target=run, name=f"qa-fetch {url[:80]}", daemon=True)
    worker.start()
    worker.join(max(0.0, started + timeout_s - time.monotonic()))
    if out:
        return out[0]
    job.cancel.set()
    for client in list(job.clients):
        with contextlib.suppress(Exception):  # wakes the worker where the connection allows it
            client.close()
    if job.answered:
        error = f"timed out (download took longer than {timeout_s:g}s; cut off after {job.size} bytes)"
    else:
        error = f"timed out (no answer within {timeout_s:g}s)"
    return Fetched(url=url, error=error, seconds=time.monotonic() - started)


@dataclass
class _Job:
    """What the thread waiting for one request and the worker doing it share."""

    cancel: threading.Event = field(default_factory=threading.Event)  # the deadline passed: stop
    clients: list[httpx.Client] = field(default_factory=list)  # closed at the deadline
    answered: bool = False  # the response headers came
    size: int = 0  # body bytes decoded so far


def _attempt(
    url: str,
    accept: Collection[str] | None,
    timeout_s: float,
    max_bytes: int,
    max_redirects: int,
    started: float,
    origin: str,
    job: _Job,
) -> Fetched:
    result = Fetched(url=url)
    try:
        result.error = _get(url, result, accept, timeout_s, max_bytes, max_redirects, started, origin, job)
    except _Refused as exc:
        result.error = str(exc)
    except httpx.TooManyRedirects:
        result.error = f"too many redirects (more than {max_redirects})"
    except httpx.TimeoutException:
        result.error = f"timed out (no answer within {timeout_s:g}s)"
    except httpx.UnsupportedProtocol as exc:
        result.error = f"unsupported address: {exc}"
    except httpx.ConnectError as exc:
        result.error = f"cannot connect: {exc or 'connection refused'}"
    except (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict) as exc:
        result.error = f"download failed ({type(exc).__name__}: {exc})"
    except _TooLarge as exc:
        result.error = str(exc)
    except _Undecodable as exc:
        result.error = f"download failed: {exc}"
    except (OSError, ValueError, UnicodeError, RuntimeError) as exc:
        result.error = f"download failed ({type(exc).__name__}: {exc})"
    if result.error:
        result.body = b""
    result.seconds = time.monotonic() - started
    return result


def _get(
    url: str,
    result: Fetched,
    accept: Collection[str] | None,
    timeout_s: float,
    max_bytes: int,
    max_redirects: int,
    started: float,
    origin: str,
    job: _Job,
) -> str:
    if not is_url(url):
        return "not an http(s) address"
    limit = f"over the {max_bytes / 1e6:g} MB limit"
    host = _host(url)
    url_kinds = address_kinds(host)  # one lookup serves the proxy choice, the origin and the first request
    origin_kinds = url_kinds if origin == url else address_kinds(_host(origin))
    client = httpx.Client(
        follow_redirects=True,
        max_redirects=max_redirects,
        timeout=httpx.Timeout(timeout_s),
        headers={"User-Agent": USER_AGENT, "Accept": _accept_header(accept), "Accept-Encoding": ACCEPT_ENCODING},
        trust_env=set(url_kinds) != {"loopback"},  # no proxy between us and this machine
        event_hooks={"request": [_guard(origin, origin_kinds, {host: url_kinds})]},
    )
    job.clients.append(client)
    if job.cancel.is_set():  # the deadline passed while the names were looked up
        client.close()
        return "cancelled"
    with client, client.stream("GET", url) as response:
        job.answered = True
        result.final_url = str(response.url)
        result.status = response.status_code
        kind, _, params = response.headers.get("content-type", "").partition(";")
        result.content_type = kind.strip().lower()
        match = re.search(r"charset=[\"']?([\w.:-]+)", params, re.IGNORECASE)
        result.charset = match.group(1) if match else ""
        if response.status_code >= 400:
            return f"HTTP {response.status_code} {response.reason_phrase}".strip()
        if response.status_code >= 300:
            return f"HTTP {response.status_code} redirect without a usable Location"
        if accept is not None and result.content_type and result.content_type not in accept:
            return f"not an HTML page or a feed (content type {result.content_type})"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            return f"response is {int(declared) / 1e6:.1f} MB, {limit}"
        encodings = [e.strip().lower() for e in response.headers.get_list("content-encoding", split_commas=True)]
        encodings = [e for e in encodings if e not in ("", "identity")]
        chunks: list[bytes] = []
        size = 0
        raw = _counted(response.iter_raw(_STEP), max_bytes, limit)
        for chunk in decoded(raw, encodings):
            size += len(chunk)
            job.size = size
            if size > max_bytes:
                return f"response cut off: {limit} (decoded)" if encodings else f"response cut off: {limit}"
            chunks.append(chunk)
            if job.cancel.is_set() or time.monotonic() - started > timeout_s:
                return f"timed out (download took longer than {timeout_s:g}s; cut off after {size} bytes)"
        result.body = b"".join(chunks)
    if not result.body.strip():
        return "empty response"
    return ""


class _Undecodable(Exception):
    """A body whose content encoding is unknown or whose compressed data is damaged."""


class _TooLarge(Exception):
    """The encoded body alone is over the limit."""


def _counted(raw: Iterable[bytes], max_bytes: int, limit: str) -> Iterator[bytes]:
    """The raw (still encoded) body, refused past `max_bytes` too."""
    size = 0
    for chunk in raw:
        size += len(chunk)
        if size > max_bytes:
            raise _TooLarge(f"response cut off: {limit} (before decoding)")
        yield chunk


def decoded(raw: Iterable[bytes], encodings: list[str]) -> Iterator[bytes]:
    """The body under its Content-Encoding layers (applied in order, so undone last first), in pieces of at most
    64 KiB each: the consumer stops at its limit before more is decoded."""
    body: Iterable[bytes] = raw
    for encoding in reversed(encodings):
        if encoding in ("", "identity"):
            continue
        layer = _DECODERS.get(encoding)
        if layer is None:
            raise _Undecodable(f"unsupported content encoding '{encoding[:40]}'")
        body = layer(body)
    return iter(body)


def _inflate(chunks: Iterable[bytes], wbits: int, name: str) -> Iterator[bytes]:
    """gzip (several members too) or deflate (zlib-wrapped, or raw as some servers send it), bounded steps."""
    fallback = wbits == zlib.MAX_WBITS  # deflate: raw deflate when the zlib header is missing
    inflater = zlib.decompressobj(wbits)
    started = False
    try:
        for data in chunks:
            while data:
                try:
                    out = inflater.decompress(data, _STEP)
                except zlib.error:
                    if not fallback or started:
                        raise
                    inflater, fallback = zlib.decompressobj(-zlib.MAX_WBITS), False
                    continue
                started = True
                if out:
                    yield out
                data = inflater.unconsumed_tail
                while len(out) == _STEP and not data:  # output may still be pending inside zlib
                    out = inflater.decompress(b"", _STEP)
                    if out:
                        yield out
                    data = inflater.unconsumed_tail
                if inflater.eof:
                    rest, data = inflater.unused_data + data, b""
                    if wbits & 16 and rest.strip(b"\0"):  # another gzip member follows
                        inflater, data = zlib.decompressobj(wbits), rest
        tail = inflater.flush()
        if tail:
            yield tail
    except zlib.error as exc:
        raise _Undecodable(f"damaged {name} data ({exc})") from None


def _unbrotli(chunks: Iterable[bytes]) -> Iterator[bytes]:
    import brotli

    decompressor = brotli.Decompressor()
    try:
        for data in chunks:
            out = decompressor.process(data, output_buffer_limit=_STEP)
            if out:
                yield out
            while not decompressor.can_accept_more_data():
                out = decompressor.process(b"", output_buffer_limit=_STEP)
                if not out:
                    break
                yield out
    except brotli.error as exc:
        raise _Undecodable(f"damaged br data ({exc})") from None


class _Reader:
    """A file-like read(n) over an iterator of chunks (zstandard's stream reader pulls its input)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks, self._buffer = iter(chunks), b""

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = chunk
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _unzstd(chunks: Iterable[bytes]) -> Iterator[bytes]:
    import zstandard

    decompressor = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    try:
        with decompressor.stream_reader(_Reader(chunks), read_across_frames=True, closefd=False) as reader:
            while out := reader.read(_STEP):
                yield out
    except zstandard.ZstdError as exc:
        raise _Undecodable(f"damaged zstd data ({exc})") from None


def _available() -> dict[str, Callable[[Iterable[bytes]], Iterator[bytes]]]:
    decoders: dict[str, Callable[[Iterable[bytes]], Iterator[bytes]]] = {
        "gzip": lambda c: _inflate(c, zlib.MAX_WBITS | 16, "gzip"),
        "x-gzip": lambda c: _inflate(c, zlib.MAX_WBITS | 16, "gzip"),
        "deflate": lambda c: _inflate(c, zlib.MAX_WBITS, "deflate"),
    }
    try:
        import brotli

        brotli.Decompressor().process(b"", output_buffer_limit=1)  # brotli >= 1.2: bounded output
        decoders["br"] = _unbrotli
    except (ImportError, TypeError, AttributeError):
        pass
    try:
        import zstandard  # noqa: F401

        decoders["zstd"] = _unzstd
    except ImportError:
        pass
    return decoders


_DECODERS = _available()
ACCEPT_ENCODING = ", ".join(e for e in _DECODERS if e != "x-gzip")


def _accept_header(accept: Collection[str] | None) -> str:
    if not accept:
        return "*/*"
    return ", ".join(sorted(accept)) + ", */*;q=0.1"
