"""`qa eval`: metric arithmetic against hand-computed values, and a whole run on a tiny set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.eval.evaluate import REPORT_KEYS, contains_any, gold_rank, summarize
from qa.schema import Passage


def _row(answerable=True, rank=None, abstained=False, contains=False, cited=0, correct=0, short=False):
    return {
        "answerable": answerable,
        "rank": rank,
        "abstained": abstained,
        "contains_gold": contains,
        "short_gold": short,
        "citations": cited,
        "citations_correct": correct,
    }


def test_metric_arithmetic_matches_hand_computed_values():
    rows = [
        _row(rank=1, contains=True, cited=2, correct=2, short=True),
        _row(rank=3, contains=True, cited=1, correct=0),
        _row(rank=None, abstained=True),
        _row(rank=7, contains=False, cited=1, correct=1),
        _row(answerable=False, abstained=True),
        _row(answerable=False, abstained=False, cited=1),
    ]
    m = summarize(rows, retrieval_ms=[10, 20, 30, 40], answer_ms=[100, 100, 100, 500])
    assert (m["answerable"], m["unanswerable"]) == (4, 2)
    assert (m["hit@1"], m["hit@5"], m["hit@10"]) == (0.25, 0.5, 0.75)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)
    assert m["answer_contains_gold"] == 0.5
    assert m["short_answer_gold"] == 0.25  # only one answer's bold entity holds the gold answer
    assert m["false_abstention"] == 0.25
    assert m["citation_precision"] == pytest.approx(3 / 4)  # answered answerable: 3 of 4 citations right
    assert m["abstention_unanswerable"] == 0.5
    assert m["retrieval_ms_p50"] == 25 and m["answer_ms_p50"] == 100
    assert m["answer_ms_p95"] == pytest.approx(440)


def test_gold_rank_counts_each_article_once():
    def p(aid):
        return Passage(aid + ":0", aid, "", "", "", "", "", 0, 1, ())

    assert gold_rank([p("a"), p("a"), p("b"), p("c")], {"c"}) == 3
    assert gold_rank([p("a")], {"z"}) is None


def test_answer_matching_ignores_case_punctuation_and_markers():
    assert contains_any("It cost 412 million Euros. [1]", ["412 million euros"])
    assert contains_any("the U.S. [2] said", ["U.S."])
    assert not contains_any("4120 million", ["412"])


def _tiny_set(root: Path) -> Path:
    set_dir = root / "tiny"
    set_dir.mkdir()
    records = [
        {"doc_id": "d1", "title": "Bridge", "text": "The harbour bridge in Port Elling will cost 412 million euros."},
        {"doc_id": "d2", "title": "Fire", "text": "About 3,000 residents fled a wildfire near Caldera Springs."},
        {"doc_id": "d3", "title": "Rates", "text": "The Central Bank of Norland raised its rate to 4.5 percent."},
    ]
    (set_dir / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    questions = [
        {"qid": "q1", "question": "How much will the Port Elling bridge cost?", "answerable": True,
         "answer": "412 million euros", "gold_doc_ids": ["d1"]},
        {"qid": "q2", "question": "How many residents fled the wildfire?", "answerable": True,
         "answer": "3,000", "answer_aliases": ["3000"], "gold_doc_ids": ["d2"]},
        {"qid": "q3", "question": "Who won the 2010 World Cup?", "answerable": False, "answer": None,
         "gold_doc_ids": []},
    ]  # fmt: skip
    (set_dir / "questions.json").write_text(json.dumps(questions))
    return set_dir


@pytest.mark.slow
def test_qa_eval_end_to_end_on_a_tiny_set_with_the_baseline_beside_it(tmp_path: Path):
    set_dir, out = _tiny_set(tmp_path), tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "qa", "eval", str(set_dir), "--backend", "extractive", "--baseline",
         "--out", str(out), "--min-hit5", "1.0"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["metric", "ours", "baseline"]
    assert "hit@5" in proc.stdout and "answer_contains_gold" in proc.stdout
    report = json.loads(out.read_text())
    base = report["baseline"]
    for key in (*REPORT_KEYS, "answerable", "unanswerable"):
        assert isinstance(report[key], int | float) and isinstance(base[key], int | float), key
    assert report["backend"] == "extractive" and report["k"] == 5

    assert (report["answerable"], report["unanswerable"]) == (2, 1)
    assert report["hit@1"] == 1.0 and report["answer_contains_gold"] == 1.0
    assert report["abstention_unanswerable"] == 1.0 and report["citation_precision"] == 1.0

    assert (base["answerable"], base["unanswerable"]) == (2, 1)
    assert base["hit@1"] == base["hit@10"] == base["mrr@10"] == 1.0
    # Retrieve-and-quote: the top chunk is the whole gold article, it is cited, and nothing is declined.
    assert base["answer_contains_gold"] == 1.0 and base["citation_precision"] == 1.0
    assert base["false_abstention"] == 0.0 and base["abstention_unanswerable"] == 0.0
    assert 0 < base["retrieval_ms_p50"] <= base["retrieval_ms_p95"]

    guarded = subprocess.run(  # the CI guard: a floor above what was reached fails the run and names the metric
        [sys.executable, "-m", "qa", "eval", str(set_dir), "--backend", "extractive", "--min-answer", "1.01"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert guarded.returncode == 1 and "answer_contains_gold 1.000 is below the guard 1.01" in guarded.stderr

    # The set was indexed into a private cache index, never the user's vectorstore/.
    [private] = (tmp_path / ".cache" / "news-qa" / "eval").iterdir()
    assert (private / "qa.sqlite").exists() and private.name.startswith("tiny-")


@pytest.mark.slow
def test_a_folder_that_is_not_a_set_is_a_clear_error(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "qa", "eval", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "corpus.jsonl is missing" in proc.stderr
