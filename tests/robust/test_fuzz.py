"""Hostile input in the default run: hypothesis-generated files and JSON records through ingestion (a few hundred
examples; `python -m stress.fuzz` runs thousands), the fixed hostile batch indexed for real, and one test per
input that used to crash or hang ingestion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.schema import Article, Rejection
from qa.sources.ingest import IngestError, html_to_article, iter_articles
from stress.common import ROOT, print_table
from stress.fuzz import run_fuzz, run_hostile


@pytest.mark.slow
def test_generated_files_and_records_never_crash_ingestion():
    result = run_fuzz(files=300, recs=200, seed_value=0)
    print_table("generated hostile input (CI size)", result.rows())
    assert result.failures == [], "\n\n".join(result.failures)
    assert result.tally["files"] == 300 and result.tally["records"] >= 200
    assert result.tally["articles"] > 0 and result.tally["rejections"] > 0


@pytest.mark.slow
def test_a_hostile_batch_is_rejected_with_reasons_and_the_good_files_are_indexed(tmp_path: Path):
    result = run_hostile(tmp_path, big=False)
    print_table("fixed hostile batch", [*result.hostile.items(), ("indexed", result.indexed)])
    assert result.failures == []
    assert set(result.hostile.values()) == {"ok"} and len(result.hostile) >= 25


def _items(folder: Path) -> list[Article | Rejection]:
    return list(iter_articles([folder], 10**6))


@pytest.mark.slow
def test_a_pipe_and_a_link_to_dev_zero_are_refused_without_reading_them(tmp_path: Path):
    # Reading them used to block forever (pipe) or never end (/dev/zero): run in a child with a deadline.
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "zero.md").symlink_to("/dev/zero")
    code = (
        "import sys; from qa.sources.ingest import iter_articles\n"
        "for r in iter_articles([sys.argv[1]], 10**6): print(f'{r.source}|{r.reason}')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == [
        f"{tmp_path}/pipe.txt|not a regular file (a pipe, device or socket)",
        f"{tmp_path}/zero.md|a link to a file outside {tmp_path}: not followed (copy the file in to index it)",
    ]


def test_a_file_name_that_is_not_utf8_is_refused_with_a_printable_source(tmp_path: Path):
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"Title\n\nText of an article whose file name is Latin-1.")
    [item] = _items(tmp_path)
    assert isinstance(item, Rejection) and item.reason == "file name is not valid UTF-8; rename the file"
    assert item.source.endswith("caf\\udce9.txt")
    item.source.encode("utf-8")  # printable: the CLI prints it, SQLite could store it


def test_json_numbers_beyond_the_int_digit_limit_are_a_rejection_not_a_crash(tmp_path: Path):
    (tmp_path / "big.json").write_text('{"text": ' + "9" * 5000 + "}")
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": "The harbour opened."}) + "\n" + "[" + "9" * 5000 + "]")
    items = _items(tmp_path)
    reasons = sorted(i.reason.split(" for integer")[0] for i in items if isinstance(i, Rejection))
    assert len(items) == 3 and [i.text for i in items if isinstance(i, Article)] == ["The harbour opened."]
    assert reasons == [
        "malformed JSON line: Exceeds the limit (4300 digits)",
        "malformed JSON: Exceeds the limit (4300 digits)",
    ]


def test_lone_surrogates_from_json_escapes_are_dropped_so_the_article_can_be_stored(tmp_path: Path):
    record = {"title": "Market \ud800Day", "text": "The market \udfffopened.", "source": "wire\udc80", "url": "\ud83d"}
    (tmp_path / "s.json").write_text(json.dumps(record))  # ensure_ascii: the surrogates travel as \\udXXX escapes
    [article] = _items(tmp_path)
    assert (article.title, article.text, article.source, article.url) == (
        "Market Day",
        "The market opened.",
        "wire",
        "",
    )


def test_markup_that_breaks_trafilaturas_metadata_step_is_read_or_rejected_not_a_crash():
    # A bare <svg> root made htmldate raise AssertionError, which aborted a whole `qa index` run.
    text = "The harbour bridge in Port Elling opened on Monday after years of debate."
    article = html_to_article(f"<svg onload=alert(1)><p>{text}</p><p>Officials cheered.</p>", "page.html")
    assert article.text == f"{text}\n\nOfficials cheered."
    with pytest.raises(IngestError, match="no article text"):
        html_to_article(f"<svg onload=alert(1)><p>{text}</p>", "page.html")
