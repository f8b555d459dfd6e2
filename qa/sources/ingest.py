"""Stage 1: files and folders in, Articles out; every input that cannot be used comes back as a Rejection."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from qa.errors import QAError
from qa.schema import Article, Rejection
from qa.text import clean

log = logging.getLogger(__name__)

TEXT_TYPES = {".txt", ".text", ".md", ".markdown"}
HTML_TYPES = {".html", ".htm", ".xhtml"}
JSON_TYPES = {".json"}
JSONL_TYPES = {".jsonl", ".ndjson"}
MIN_HTML_WORDS = 8  # below this an HTML page is navigation, not an article
SUPPORTED = TEXT_TYPES | HTML_TYPES | JSON_TYPES | JSONL_TYPES
# Metadata is a line, not a text: longer values are cut (titles at a word, with an ellipsis), so a hostile
# "title" of megabytes cannot be stored, shown and prepended to every chunk of its article for embedding.
MAX_TITLE_CHARS = 300
MAX_META_CHARS = 300  # source, published
MAX_URL_CHARS = 2048  # a longer url is dropped: cut, it would link somewhere else
MAX_ID_CHARS = 200  # a longer given id is replaced by its hash
# trafilatura's time per element is high and grows with the page (33k empty <p> took 4 s, 133k took 22 s); news
# pages have tens of thousands of elements at most, so more than this is refused before it is parsed.
MAX_HTML_TAGS = 50_000
_TAG_START = re.compile(r"<[A-Za-z/!?]")  # a tag, comment or declaration opens here (a bare '<' is text)

# Lines that news sites append to articles and that never answer a question: whole lines, matched in one pass
# over the text (no list of lines: a file of 8 million 1-character lines stays one string).
_BOILERPLATE = re.compile(
    r"^[^\S\n]*(leave a (comment|reply)|\d+[^\S\n]+comments?|comments?|share( this( article| story)?)?|"
    r"advertisement|read more|related (articles|stories)|sign up for our newsletter.*|click here to subscribe.*)"
    r"[^\S\n]*(\n|\Z)",
    re.IGNORECASE | re.MULTILINE,
)
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
            root = path.resolve()
            for folder, dirs, names in os.walk(path):  # links to folders are listed in dirs, never entered
                here = Path(folder)
                for name in sorted(d for d in dirs if not d.startswith(".") and (here / d).is_symlink()):
                    rejected.append(Rejection(printable(str(here / name)), "a link to a folder: not followed"))
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    candidate = here / name
                    reason = _link_problem(candidate, root) if candidate.is_symlink() else ""
                    if not reason and candidate.suffix.lower() not in SUPPORTED:
                        reason = _unsupported(candidate)
                    if reason:
                        rejected.append(Rejection(printable(str(candidate)), reason))
                    else:
                        files.append(candidate)
        elif path.exists():  # a file named on its own is read even through a link: the user chose it
            if path.suffix.lower() in SUPPORTED:
                files.append(path)
            else:
                rejected.append(Rejection(printable(str(path)), _unsupported(path)))
        else:
            rejected.append(Rejection(printable(str(path)), "no such file or folder"))
    unique: dict[Path, Path] = {}  # the file itself -> the name it is read by (a real file before a link to it)
    for path in files:
        named = own_name(path)
        target = named.resolve()
        if target not in unique or (unique[target].is_symlink() and not named.is_symlink()):
            unique[target] = named
    kept = []
    for path in unique.values():
        reason = _unreadable(path)
        if reason:
            rejected.append(Rejection(printable(str(path)), reason))
        else:
            kept.append(path)
    return kept, rejected


def own_name(path: Path) -> Path:
    """The absolute path of `path` itself: its folder resolved, but not a link at its end (a link is read by
    its own name and suffix, never its target's)."""
    return Path(os.path.realpath(path.parent)) / path.name


def _link_problem(link: Path, root: Path) -> str:
    """Why a symbolic link found in the folder `root` is not read: it leads out of the folder (to /etc/passwd,
    say, or another user's files), or to nothing. "" for a link to a file inside the folder."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop of links
        return "a link to nothing (its target is missing)"
    if not target.is_relative_to(root):
        return f"a link to a file outside {printable(str(root))}: not followed (copy the file in to index it)"
    return ""


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
            return clean(raw.decode("utf-16"))
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
    text = clean(text)
    if not text.strip():
        raise IngestError("no text in file")
    return text


def _strip_boilerplate(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", _BOILERPLATE.sub("", text)).strip()


def _from_plain_text(text: str, path: Path) -> Article:
    first, _, rest = text.strip().partition("\n")
    title = first.lstrip("#").strip()
    if len(title) > MAX_TITLE_CHARS:  # not a headline: the line stays in the text, the file names the article
        log.debug("%s: first line of %d characters is text, not a title", path, len(title))
        title, rest = path.stem, text
    body = _strip_boilerplate(rest)
    if not body:
        body, title = title, path.stem
    return make_article(title=title, text=body, source=str(path), origin=str(path), key=str(path))


def _from_html(html: str, origin: str, url: str = "") -> Article:
    import trafilatura  # heavy import, only when HTML is seen

    if too_many_tags(html):
        raise IngestError(
            f"the HTML has more than {MAX_HTML_TAGS:,} tags, more than any article page; save its text as .txt to "
            "index it"
        )
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
    paragraphs = [line.strip() for line in clean(data.get("text") or "").split("\n") if line.strip()]
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


def too_many_tags(html: str) -> bool:
    """More than MAX_HTML_TAGS tags in `html` (counted up to the limit, not further)."""
    return sum(1 for _ in itertools.islice(_TAG_START.finditer(html), MAX_HTML_TAGS + 1)) > MAX_HTML_TAGS


def html_to_article(html: str, origin: str, url: str = "") -> Article:
    """Extract the main article text of an HTML page (boilerplate, scripts and comments dropped)."""
    return _from_html(clean(html), origin, url)


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
            text = clean(str(value)).strip()
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
    """Build an Article with a stable id (given, or derived from its url/path) and a content hash. Every field
    is cleaned like a file's text (whatever the source: files, feeds, API callers) and metadata is bounded
    (MAX_*_CHARS): a value too long is cut, or dropped where a cut one would be wrong (a url)."""
    text = clean(text)
    if not text.strip():
        raise IngestError("no article text")
    title = shorten(title, MAX_TITLE_CHARS, "title", origin)
    source = shorten(source, MAX_META_CHARS, "source", origin)
    published = shorten(published, MAX_META_CHARS, "date", origin)
    url = " ".join(clean(url[: MAX_URL_CHARS + 1]).split())
    if len(url) > MAX_URL_CHARS:
        log.debug("%s: url of more than %d characters dropped", origin, MAX_URL_CHARS)
        url = ""
    article_id = " ".join(clean(article_id[: MAX_ID_CHARS + 1]).split())
    if len(article_id) > MAX_ID_CHARS:
        log.debug("%s: id of more than %d characters replaced by its hash", origin, MAX_ID_CHARS)
        article_id = id_for(article_id)
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


def shorten(value: str, limit: int, what: str = "value", where: str = "") -> str:
    """`value` cleaned, on one line, and at most `limit` characters: cut at a word with an ellipsis when longer
    (logged at debug). Linear whatever its length: only a prefix of it is looked at."""
    head = " ".join(clean(value[: 4 * limit]).split())
    if len(head) <= limit and len(value) <= 4 * limit:
        return head
    if len(head) > limit:
        cut = head.rfind(" ", limit // 2, limit)
        head = head[:cut] if cut > 0 else head
    head = head[: limit - 1].rstrip() + "\u2026"
    log.debug("%s: %s of %d characters cut to %d", where, what, len(value), len(head))
    return head


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
