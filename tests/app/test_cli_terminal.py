"""Nothing `qa index`, `qa stats` or `qa ask` prints can drive the terminal: ESC, BEL, C1 controls from an
article (an index written before feeds were cleaned, say) or a file name are shown as visible escapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qa
from qa.app.cli import main
from qa.indexing.indexer import index_articles
from qa.schema import Article
from qa.settings import Settings

pytestmark = pytest.mark.slow

EVIL = "\x1b]0;pwned\x07\x9b2J\u202e"  # retitle the terminal, a C1 CSI, a bidi override
SHOWN = "\\x1b]0;pwned\\x07\\x9b2J\\u202e"


def test_what_the_cli_prints_is_never_a_raw_escape(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    index = tmp_path / "index"
    settings = Settings(index_dir=index, backend="extractive")
    assistant = qa.Assistant(settings)
    article = Article(  # raw, as an older version stored feed entries
        id="evil",
        title=f"Harbour {EVIL}news",
        text=f"The harbour of Tarnholm opened on Monday {EVIL} after four years of building work.",
        source=f"wire {EVIL}",
        published="2024-05-01",
        content_hash="0" * 32,
    )
    index_articles([article], assistant.store(create=True), assistant.embedder, settings)
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / f"empty{EVIL}.txt").write_text("")

    main(["index", str(folder), "--index", str(index)])
    main(["stats", "--index", str(index)])
    main(["ask", "When did the harbour of Tarnholm open?", "--index", str(index), "--backend", "extractive"])
    shown = capsys.readouterr()
    printed = shown.out + shown.err
    for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert raw not in printed
    assert f"empty{SHOWN}.txt" in printed  # the rejected file, by a name that can be read
    assert f"Harbour {SHOWN}news" in printed  # stats' newest articles, and the answer's source
    assert "harbour of Tarnholm opened on Monday" in printed

    main(["ask", "When did the harbour of Tarnholm open?", "--index", str(index), "--backend", "extractive", "--json"])
    out = capsys.readouterr().out
    assert not any(raw in out for raw in ("\x1b", "\x07", "\x9b", "\u202e"))
    assert EVIL in json.loads(out)["citations"][0]["title"]  # the data itself is unchanged
