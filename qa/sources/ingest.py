"""Stage 1: files and folders in, Articles out; every input that cannot be used comes back as a Rejection."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from qa.errors import QAError
from qa.schema import Article, Rejection

TEXT_TYPES = {".txt", ".text", ".md", ".markdown"}
HTML_TYPES = {".html", ".htm", ".xhtml"}
JSON_TYPES = {".json"}
JSONL_TYPES = {".jsonl", ".ndjson"}
MIN_HTML_WORDS = 8  # below this an HTML page is navigation, not an article
SUPPORTED = TEXT_TYPES | HTML_TYPES | JSON_TYPES | JSONL_TYPES

# Lines that news sites append to articles and that never answer a question.
_BOILERPLATE = re.compile(
    r"^\s*(leave a (comment|reply)|\d+\s+comments?|comments?|share( this( article| story)?)?|advertisement|"
    r"read more|related (articles|stories)|sign up for our newsletter.*|click here to subscribe.*)\s*$",
    re.IGNORECASE,
)
# Control characters, and lone surrogates (from JSON escapes like \ud800) that UTF-8 and SQLite cannot hold.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_FIELDS = {
    "id": ("doc_id", "id", "article_id", "guid"),
    "text": ("text", "body", "content", "article", "maintext"),
    "title": ("title", "headline"),
    "url": ("url", "link"),
    "published": ("publish_date", "published", "date", "pubDate", "date_publish", "published_at"),
    "source": ("source", "outlet", "publisher", "source_domain"),
}


class IngestError(QAError, ValueError):
    """An input that cannot become an article; the message is the reason shown to the user."""


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[Rejection]]:
    """Expand files and folders (recursively, hidden entries skipped) into the supported files to read."""
    files: list[Path] = []
    rejected: list[Rejection] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    candidate = Path(root) / name
                    if candidate.suffix.lower() in SUPPORTED:
                        files.append(candidate)
                    else:
                        rejected.append(Rejection(printable(str(candidate)), _unsupported(candidate)))
        elif path.exists():
            if path.suffix.lower() in SUPPORTED:
                files.append(path)
            else:
                rejected.append(Rejection(printable(str(path)), _unsupported(path)))
        else:
            rejected.append(Rejection(printable(str(path)), "no such file or folder"))
    unique = []
    for path in dict.fromkeys(p.resolve() for p in files):
        reason = _unreadable(path)
        if reason:
            rejected.append(Rejection(printable(str(path)), reason))
        else:
            unique.append(path)
    return unique, rejected


def _unreadable(path: Path) -> str:
    """Why a file must not be opened at all: a pipe or device would block or never end; a name that is not
    UTF-8 cannot be stored or shown."""
    if not is_utf8(str(path)):
        return "file name is not valid UTF-8; rename the file"
    if not path.is_file():
        return "not a regular file (a pipe, device or socket)"
    return ""


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str) -> str:
    """`text` with undecodable bytes of a file name shown as escapes, so it can be printed and stored."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _unsupported(path: Path) -> str:
    kinds = ", ".join(sorted(SUPPORTED))
    return f"unsupported file type '{path.suffix or path.name}' (supported: {kinds})"


def load_file(path: Path, max_bytes: int) -> tuple[list[Article], list[Rejection]]:
    """Read one file into articles; a whole-file problem raises IngestError, a bad JSONL line is a Rejection."""
    origin = str(path)
    if not is_utf8(origin):
        raise IngestError("file name is not valid UTF-8; rename the file")
    text = read_text(path, max_bytes)
    suffix = path.suffix.lower()
    if suffix in TEXT_TYPES:
        return [_from_plain_text(text, path)], []
    if suffix in HTML_TYPES:
        return [_from_html(text, origin)], []
    if suffix in JSON_TYPES:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IngestError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except RecursionError:
            raise IngestError("malformed JSON: nested too deeply") from None
        except ValueError as exc:  # e.g. a number of more than 4300 digits
            raise IngestError(f"malformed JSON: {str(exc).split(';')[0]}") from None
        return _from_records(_records_of(data), origin)
    return _from_jsonl(text, origin)


def read_text(path: Path, max_bytes: int) -> str:
    """Decode a file as text, refusing what is empty, too large, binary or not UTF-8 (with why)."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):  # reading a pipe blocks forever, /dev/zero never ends
        raise IngestError("not a regular file (a pipe, device or socket)")
    size = st.st_size
    if size > max_bytes:
        raise IngestError(
            f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit (raise QA_MAX_FILE_MB to allow it)"
        )
    raw = path.read_bytes()
    if not raw.strip():
        raise IngestError("empty file")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return _clean(raw.decode("utf-16"))
        except UnicodeDecodeError:
            raise IngestError("broken UTF-16 text") from None
    if b"\x00" in raw[:65536]:
        raise IngestError("binary file (contains NUL bytes), not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); re-save the file as UTF-8"
        ) from None
    text = _clean(text)
    if not text.strip():
        raise IngestError("no text in file")
    return text


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def _strip_boilerplate(text: str) -> str:
    lines = [line for line in text.split("\n") if not _BOILERPLATE.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _from_plain_text(text: str, path: Path) -> Article:
    lines = text.strip().split("\n")
    title = lines[0].lstrip("#").strip()
    body = _strip_boilerplate("\n".join(lines[1:]))
    if not body:
        body, title = title, path.stem
    return make_article(title=title, text=body, source=str(path), origin=str(path), key=str(path))


def _from_html(html: str, origin: str, url: str = "") -> Article:
    import trafilatura  # heavy import, only when HTML is seen

    options = {"output_format": "json", "with_metadata": True, "include_comments": False, "url": url or None}
    try:
        extracted = trafilatura.extract(html, **options) or trafilatura.extract(html, favor_recall=True, **options)
    except Exception:  # its date and metadata helpers fail on some markup (an AssertionError for a bare <svg> root)
        try:
            extracted = trafilatura.extract(html, **(options | {"with_metadata": False}))
        except Exception as exc:
            raise IngestError(f"the HTML could not be parsed ({type(exc).__name__})") from None
    if not extracted:
        raise IngestError("no article text found in the HTML")
    data = json.loads(extracted)
    title = (data.get("title") or "").strip()
    # trafilatura gives one paragraph per line; the headline often repeats as the first one.
    paragraphs = [line.strip() for line in _clean(data.get("text") or "").split("\n") if line.strip()]
    if paragraphs and title and paragraphs[0] == title:
        paragraphs = paragraphs[1:]
    text = _strip_boilerplate("\n\n".join(paragraphs))
    if len(text.split()) < MIN_HTML_WORDS:
        raise IngestError(f"no article text found in the HTML (only {len(text.split())} words outside menus)")
    return make_article(
        title=title or Path(origin).stem,
        text=text,
        source=data.get("sitename") or data.get("hostname") or origin,
        url=url or data.get("url") or "",
        published=data.get("date") or "",
        origin=origin,
        key=url or origin,
    )


def html_to_article(html: str, origin: str, url: str = "") -> Article:
    """Extract the main article text of an HTML page (boilerplate, scripts and comments dropped)."""
    return _from_html(_clean(html), origin, url)


def _records_of(data: object) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("articles", "items", "records", "data", "documents"):
            if isinstance(data.get(key), list):
                return data[key]
        return [data]
    raise IngestError("JSON must be an object or a list of objects with a 'text' field")


def _from_jsonl(text: str, origin: str) -> tuple[list[Article], list[Rejection]]:
    records: list[tuple[str, object]] = []
    rejected: list[Rejection] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"{origin}:{lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            rejected.append(Rejection(f"{origin}:{lineno}", f"malformed JSON line: {exc.msg}"))
        except RecursionError:
            rejected.append(Rejection(f"{origin}:{lineno}", "malformed JSON line: nested too deeply"))
        except ValueError as exc:  # e.g. a number of more than 4300 digits
            rejected.append(Rejection(f"{origin}:{lineno}", f"malformed JSON line: {str(exc).split(';')[0]}"))
    articles, more = _from_records([r for _, r in records], origin, [where for where, _ in records])
    return articles, rejected + more


def _from_records(records: list, origin: str, where: list[str] | None = None) -> tuple[list[Article], list[Rejection]]:
    articles: list[Article] = []
    rejected: list[Rejection] = []
    for i, record in enumerate(records):
        place = where[i] if where else f"{origin}#{i + 1}"
        try:
            articles.append(_from_record(record, origin, place))
        except IngestError as exc:
            rejected.append(Rejection(place, str(exc)))
    if not articles and not rejected:
        raise IngestError("no records in JSON")
    return articles, rejected


def _field(record: dict, name: str) -> str:
    for key in _FIELDS[name]:
        value = record.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = _clean(str(value)).strip()
            if text:
                return text
    return ""


def _from_record(record: object, origin: str, place: str) -> Article:
    if not isinstance(record, dict):
        raise IngestError(f"record is a {type(record).__name__}, not an object with a 'text' field")
    text = _field(record, "text")
    if not text:
        raise IngestError("record has no non-empty 'text' field")
    url = _field(record, "url")
    text = _strip_boilerplate(text)  # _field cleaned it
    if "<" in text and re.search(r"</?(p|div|br|html|body)\b", text, re.IGNORECASE):
        text = html_to_article(text, origin, url).text
    return make_article(
        title=_field(record, "title"),
        text=text,
        source=_field(record, "source") or origin,
        url=url,
        published=_field(record, "published"),
        origin=origin,
        article_id=_field(record, "id"),
        key=url or place,
    )


def id_for(key: str) -> str:
    """The stable id of an article known by `key` (its url or path) when the source gives none."""
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def make_article(
    *,
    title: str,
    text: str,
    source: str,
    origin: str,
    key: str,
    url: str = "",
    published: str = "",
    article_id: str = "",
) -> Article:
    """Build an Article with a stable id (given, or derived from its url/path) and a content hash."""
    if not text.strip():
        raise IngestError("no article text")
    digest = hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:32]
    return Article(
        id=article_id or id_for(key),
        title=title,
        text=text,
        source=source,
        url=url,
        published=normalize_date(published),
        content_hash=digest,
        origin=origin,
    )


def normalize_date(value: str) -> str:
    """ISO 'YYYY-MM-DD' when the date parses, else the text as given (never fails)."""
    value = value.strip()
    if not value:
        return ""
    try:
        from dateutil import parser

        return parser.parse(value).date().isoformat()
    except (ValueError, OverflowError, TypeError):  # dateutil's ParserError is a ValueError
        return value


def iter_articles(paths: Iterable[str | Path], max_bytes: int) -> Iterator[Article | Rejection]:
    """Everything under `paths` as a stream of Articles and Rejections (used by simple callers and tests)."""
    files, rejected = discover(paths)
    yield from rejected
    for path in files:
        try:
            articles, bad = load_file(path, max_bytes)
        except (IngestError, OSError) as exc:
            yield Rejection(str(path), str(exc))
            continue
        yield from articles
        yield from bad
