"""Conflicting reports are shown side by side, each cited with its outlet and date, the latest first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qa
from qa.answer.gguf import smollm2_path
from qa.settings import Settings
from qa.stories.conflicts import figures
from tests.helpers import DATA

TOLL = DATA / "stories" / "conflicting_toll.jsonl"
QUESTION = "How many people were killed in the San Telmo landslide?"


def test_two_outlets_with_different_tolls_are_both_cited_latest_first(tmp_path: Path):
    assistant = qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive"))
    assistant.index([TOLL])
    answer = assistant.ask(QUESTION, as_of="2024-01-25")
    assert "Reports differ" in answer.text
    assert [(c.outlet, c.published) for c in answer.citations] == [("Reuters", "2024-01-24"), ("CNN", "2024-01-22")]
    assert "41" in answer.citations[0].quote and "At least 30" in answer.citations[1].quote
    assert answer.text.index("41") < answer.text.index("At least 30")
    assert any("different figures" in n for n in answer.notes)
    # As of the day before the second report, there is one version only.
    earlier = assistant.ask(QUESTION, as_of="2024-01-23")
    assert "Reports differ" not in earlier.text and "30" in earlier.text


def test_reports_that_agree_are_not_a_conflict(tmp_path: Path):
    rows = [json.loads(x) for x in TOLL.read_text().splitlines()]
    rows[1]["text"] = rows[1]["text"].replace("killed 41 people", "killed at least 30 people")
    path = tmp_path / "agree.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assistant = qa.Assistant(Settings(index_dir=tmp_path / "index", backend="extractive"))
    assistant.index([path])
    answer = assistant.ask(QUESTION, as_of="2024-01-25")
    assert "Reports differ" not in answer.text and "30" in answer.text


def test_figures_know_what_they_count():
    (f,) = figures("At least 30 people were killed in the landslide.")
    assert (f.value, f.phrase) == (30, "At least 30") and "people" in f.heads
    assert [x.value for x in figures("The storm of 2023 killed 1,200 cattle on Jan. 5")] == [1200]
    assert figures("The 2.5 million residents")[0].value == 2.5e6


@pytest.mark.llm
def test_a_generated_answer_keeps_both_versions_cited(tmp_path: Path):
    """With a real llama.cpp model (SmolLM2, the small test model), whatever version the model writes, the answer
    cites both reports: the ones it left out are added below it."""
    assistant = qa.Assistant(
        Settings(index_dir=tmp_path / "index", backend="llamacpp", gguf_path=smollm2_path(), max_answer_tokens=60)
    )
    assistant.index([TOLL])
    answer = assistant.ask(QUESTION, as_of="2024-01-25")
    assert not answer.abstained
    assert {("Reuters", "2024-01-24"), ("CNN", "2024-01-22")} <= {(c.outlet, c.published) for c in answer.citations}
    assert "Reports differ" in answer.text
