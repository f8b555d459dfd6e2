"""Bounded HTTP GET for feeds and article pages: every failure is a reason string, nothing hangs or escapes.

Each network step (connect, each read) waits at most `timeout_s`, and the whole download stops at a deadline
of `timeout_s` too (a server that trickles bytes is cut off); the body is streamed and dropped at `max_bytes`
(counted after decompression); redirects are followed up to `max_redirects`; a content type the caller does
not accept is refused from the headers, before the body is read.

A feed on the internet must not make us read this machine or its network: every request (each redirect too)
goes to a public address, or to the same kind of address as the one the user gave (`origin`: loopback for a
feed on 127.0.0.1, private for an intranet page). So a link or redirect to 127.0.0.1, 10.x or the cloud
metadata address 169.254.169.254 in a public feed is refused, not fetched and indexed for anyone to ask about.
(A host name checked here could resolve differently a moment later when httpx connects: not a defence against
DNS rebinding.)
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass
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
_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


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
    result = Fetched(url=url)
    try:
        result.error = _get(url, result, accept, timeout_s, max_bytes, max_redirects, started, origin or url)
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
    except (OSError, ValueError, UnicodeError) as exc:
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
        headers={"User-Agent": USER_AGENT, "Accept": _accept_header(accept)},
        trust_env=set(url_kinds) != {"loopback"},  # no proxy between us and this machine
        event_hooks={"request": [_guard(origin, origin_kinds, {host: url_kinds})]},
    )
    with client, client.stream("GET", url) as response:
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
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                return f"response cut off: {limit}"
            chunks.append(chunk)
            if time.monotonic() - started > timeout_s:
                return f"timed out (download took longer than {timeout_s:g}s; cut off after {size} bytes)"
        result.body = b"".join(chunks)
    if not result.body.strip():
        return "empty response"
    return ""


def _accept_header(accept: Collection[str] | None) -> str:
    if not accept:
        return "*/*"
    return ", ".join(sorted(accept)) + ", */*;q=0.1"
