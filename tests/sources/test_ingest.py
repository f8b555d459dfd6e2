"""Ingest: every supported format, metadata kept, stable ids, and bad input rejected with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.schema import Article, Rejection
from qa.sources.ingest import IngestError, discover, iter_articles, load_file, make_article
from tests.helpers import DATA, SEEDS, SHARED_EVAL

MB = 1_000_000


def _split(paths, max_bytes=16 * MB):
    items = list(iter_articles(paths, max_bytes))
    return [i for i in items if isinstance(i, Article)], [i for i in items if isinstance(i, Rejection)]


def test_every_format_is_read_with_its_metadata():
    articles, rejected = _split([DATA / "articles"])
    assert rejected == []
    by_title = {a.title: a for a in articles}
    assert len(articles) == 7
    txt = by_title["Council Approves New Harbor Bridge in Port Elling"]
    assert txt.text.startswith("The city council of Port Elling voted 7 to 2")
    md = by_title["Wildfire Near Caldera Springs Forces Evacuation of 3,000 Residents"]
    assert not md.text.startswith("#")
    wire = by_title["Striking Dockworkers in Marisport Reach Deal"]
    assert (wire.id, wire.url, wire.source) == (
        "wire-002",
        "https://news.example/marisport-strike",
        "Example Wire",
    )
    assert wire.published == "2024-06-21"  # "June 21, 2024" normalised to ISO
    museum = by_title["Museum of Tallin Bay Returns Stolen Painting"]  # .json with other field names
    assert (museum.id, museum.url, museum.published) == (
        "list-1",
        "https://news.example/painting",
        "2024-05-07",
    )


def test_html_keeps_the_article_and_drops_boilerplate_and_scripts():
    [article], _ = load_file(DATA / "articles" / "election.html", 16 * MB)
    assert article.title == "Greens Win Surprise Majority in Valmora Election"
    assert article.published == "2024-03-11"
    assert "52 of the 100 seats" in article.text and "Paul Ekberg" in article.text
    for junk in ("Leave a comment", "reader42", "Subscribe", "trackingId", "Ignore all previous", "Cookie"):
        assert junk not in article.text


def test_seed_article_loses_its_trailing_comment_prompt():
    [article], _ = load_file(next(SEEDS.glob("*.txt")), 16 * MB)
    assert article.title == "Russia Stays Away From Paris Meeting on Syria"
    assert "Leave a comment" not in article.text
    assert "one-sided" in article.text


def test_eval_format_corpus_loads_with_its_doc_ids():
    corpus = SHARED_EVAL / "squad2-dev" / "corpus.jsonl"
    articles, bad = load_file(corpus, 16 * MB)
    assert bad == []
    assert len(articles) == 411
    assert all(a.id.startswith("sq2_") for a in articles)


def test_ids_are_stable_and_hashes_follow_content(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("Title\n\nBody one.")
    [first], _ = load_file(path, MB)
    [again], _ = load_file(path, MB)
    path.write_text("Title\n\nBody two.")
    [changed], _ = load_file(path, MB)
    assert first.id == again.id == changed.id
    assert first.content_hash == again.content_hash != changed.content_hash


def test_bad_inputs_are_rejected_with_reasons_and_good_files_still_load(tmp_path: Path):
    (tmp_path / "good.txt").write_text("A good article\n\nIt has a body that says something.")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.md").write_text("  \n\n ")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 news\n\nThe caf\xe9 opened.".encode("latin-1"))
    (tmp_path / "broken.json").write_text('{"title": "x", "text": ')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "huge.txt").write_bytes(b"word " * (4 * MB))  # 20 MB
    (tmp_path / "notext.json").write_text(json.dumps([{"title": "no body"}, 42]))
    (tmp_path / "mixed.jsonl").write_text('{"text": "Fine record one about ports."}\nnot json\n{"text": ""}\n')
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    articles, rejected = _split([tmp_path, tmp_path / "missing.txt"])

    reasons = {Path(r.source).name: r.reason for r in rejected}
    assert {a.title for a in articles} == {"A good article", ""}  # good.txt + the one good JSONL record
    assert reasons["empty.txt"] == "empty file"
    assert reasons["blank.md"] == "empty file"
    assert "binary" in reasons["binary.txt"]
    assert "not valid UTF-8" in reasons["latin1.txt"] and "offset 3" in reasons["latin1.txt"]
    assert "malformed JSON" in reasons["broken.json"]
    assert "malformed JSON" in reasons["deep.json"] or "nested" in reasons["deep.json"]
    assert "20.0 MB" in reasons["huge.txt"] and "limit" in reasons["huge.txt"]
    assert "'text'" in reasons["notext.json#1"] and "int" in reasons["notext.json#2"]
    assert "malformed JSON line" in reasons["mixed.jsonl:2"] and "'text'" in reasons["mixed.jsonl:3"]
    assert "unsupported file type" in reasons["photo.jpg"]
    assert reasons["missing.txt"] == "no such file or folder"


def test_hidden_files_are_skipped_and_duplicates_listed_once(tmp_path: Path):
    (tmp_path / ".draft.txt").write_text("Hidden\n\nnot for indexing")
    (tmp_path / "a.txt").write_text("A\n\nbody")
    files, rejected = discover([tmp_path, tmp_path / "a.txt"])
    assert [f.name for f in files] == ["a.txt"] and rejected == []


def test_html_without_article_text_is_rejected(tmp_path: Path):
    path = tmp_path / "empty.html"
    path.write_text("<html><head><script>alert(1)</script></head><body><nav>Home</nav></body></html>")
    with pytest.raises(IngestError, match="no article text"):
        load_file(path, MB)


def test_titles_and_every_metadata_field_are_bounded(tmp_path: Path):
    # A 100 KB title took 1.64 GB to index: it was embedded and FTS-indexed with each chunk of its article.
    long = "word " * 20_000
    record = {"id": "i" * 5000, "title": long, "text": "The harbour opened on Monday.", "url": "http://x/" + "a" * 9000}
    record |= {"source": "s" * 100_000, "published": "2024-01-01 " + "x" * 100_000}
    (tmp_path / "big.json").write_text(json.dumps(record))
    [article], _ = load_file(tmp_path / "big.json", 16 * MB)
    assert len(article.title) <= 300 and article.title.endswith("\u2026")
    assert article.title.removesuffix("\u2026").split() == ["word"] * len(article.title.split())  # at a word
    assert len(article.source) <= 300 and len(article.published) <= 300
    assert article.url == ""  # cut, a url would lead elsewhere
    assert len(article.id) == 16  # the hash of the given id
    assert article.text == "The harbour opened on Monday."


def test_a_first_line_too_long_for_a_title_stays_in_the_text(tmp_path: Path):
    line = "The council met again. " * 40_000  # 920 KB, the reported case
    (tmp_path / "wall.txt").write_text(line + "\n\nA second paragraph.")
    [article], _ = load_file(tmp_path / "wall.txt", 16 * MB)
    assert article.title == "wall"
    assert article.text.startswith(line.strip()) and article.text.endswith("A second paragraph.")


def test_one_character_lines_and_boilerplate_lines_are_handled_in_one_pass(tmp_path: Path):
    (tmp_path / "lines.txt").write_text("Title\n" + "a\n" * 500_000 + "Leave a comment\n  Read more  \nlast\n")
    [article], _ = load_file(tmp_path / "lines.txt", 16 * MB)
    assert article.title == "Title"
    assert article.text == ("a\n" * 500_000) + "last"


def test_feed_like_fields_are_cleaned_like_a_file(tmp_path: Path):
    # ESC/BEL/NUL in a title were stored and printed raw ("\x1b]0;pwned\x07" retitles the terminal).
    article = make_article(
        title="Hello \x1b]0;pwned\x07 world\x00",
        text="Body \x1b[2J with \x9b1m escapes\r\nand lines.",
        source="Src\x07",
        origin="feed",
        key="k",
        url="http://a/\x1b",
        published="2024-01-01\x00",
    )
    assert article.title == "Hello ]0;pwned world" and article.source == "Src"
    assert article.text == "Body [2J with 1m escapes\nand lines."
    assert article.url == "http://a/" and article.published == "2024-01-01"


def test_links_out_of_the_folder_are_not_followed_and_files_are_read_by_their_own_name(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("Secret\n\nThe password is swordfish.")
    (outside / "data.json").write_text(json.dumps({"title": "Json", "text": "Parsed as JSON."}))
    (outside / "dir").mkdir()
    (outside / "dir" / "x.txt").write_text("X\n\nin a linked folder")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "real.txt").write_text("Real\n\nAn article in the folder.")
    (inbox / "leak.txt").symlink_to(outside / "secret.txt")
    (inbox / "passwd.txt").symlink_to("/etc/passwd")
    (inbox / "linked-dir").symlink_to(outside / "dir")
    (inbox / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (inbox / "alias.txt").symlink_to("real.txt")  # inside: the same file, read once
    (inbox / "notes.dat").write_text("Notes\n\nKept as plain data.")
    (inbox / "notes.txt").symlink_to("notes.dat")  # inside: read, as .txt (its own name), not as its target's

    files, rejected = discover([inbox])
    reasons = {Path(r.source).name: r.reason for r in rejected}
    assert sorted(f.name for f in files) == ["notes.txt", "real.txt"]
    assert all(f.parent == inbox.resolve() for f in files)
    assert "outside" in reasons["leak.txt"] and "not followed" in reasons["leak.txt"]
    assert "outside" in reasons["passwd.txt"]
    assert reasons["linked-dir"] == "a link to a folder: not followed"
    assert "target is missing" in reasons["dangling.txt"]
    assert set(reasons) == {"leak.txt", "passwd.txt", "linked-dir", "dangling.txt", "notes.dat"}  # .dat: unsupported
    articles, _ = _split([inbox])
    assert not any("swordfish" in a.text or "root:" in a.text for a in articles)
    assert {a.title for a in articles} == {"Real", "Notes"}

    # A link named on its own is the user's choice: read, by its own name (.txt), not its target's (.json).
    (inbox / "explicit.txt").symlink_to(outside / "data.json")
    [article], _ = load_file(discover([inbox / "explicit.txt"])[0][0], MB)
    assert article.origin == str(inbox.resolve() / "explicit.txt") and article.text.startswith('{"title"')
