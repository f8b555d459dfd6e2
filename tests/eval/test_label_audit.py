"""bench/label_audit.py: a question whose gold article reports the answer beside the question's words is "direct";
one whose gold article only names the answer somewhere else (a roundup) is "incidental", and the report's rows
are counted per class."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.label_audit import best_share, breakdown  # noqa: E402

CORPUS = {
    "tanks": {"doc_id": "tanks", "title": "Berlin decides", "text": "Germany will send Leopard tanks to Ukraine."},
    "roundup": {
        "doc_id": "roundup",
        "title": "News from the 50 states",
        "text": "Oklahoma: A county fair opened. Ohio: Patriot day was marked by a parade.",
    },
}
QUESTIONS = [
    {"qid": "q1", "question": "Which country will send tanks to Ukraine?", "answer": "Germany",
     "gold_doc_ids": ["tanks"]},
    {"qid": "q2", "question": "Which state will train Ukrainians on the Patriot missile system?",
     "answer": "Oklahoma", "gold_doc_ids": ["roundup"]},
]  # fmt: skip


def test_a_gold_sentence_with_the_question_words_is_direct_a_roundup_mention_is_not():
    assert best_share(QUESTIONS[0], CORPUS) == 0.75  # send, tanks, ukraine beside "Germany"; "country" is not
    assert best_share(QUESTIONS[1], CORPUS) == 0.0  # "Patriot" is in the roundup, not beside "Oklahoma"


def test_rows_are_counted_per_class():
    rows = [
        {"qid": "q1", "answerable": True, "rank": 1, "contains_gold": True, "abstained": False},
        {"qid": "q2", "answerable": True, "rank": None, "contains_gold": False, "abstained": True},
    ]
    out = breakdown(rows, {"q1": "direct", "q2": "incidental"})
    assert out["direct"] == {"n": 1, "hit@1": 1.0, "hit@5": 1.0, "mrr@10": 1.0, "answer": 1.0, "declined": 0.0}
    assert out["incidental"]["n"] == 1 and out["incidental"]["hit@5"] == 0.0 and out["incidental"]["declined"] == 1.0


def test_the_script_prints_both_classes_for_a_report(tmp_path: Path):
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in CORPUS.values()))
    (tmp_path / "questions.json").write_text(json.dumps(QUESTIONS))
    rows = [{"qid": q["qid"], "answerable": True, "rank": 1, "contains_gold": True, "abstained": False}
            for q in QUESTIONS]  # fmt: skip
    (tmp_path / "report.json").write_text(json.dumps({"questions": rows}))
    script = str(ROOT / "bench" / "label_audit.py")
    out = subprocess.run(
        [sys.executable, script, str(tmp_path), str(tmp_path / "report.json"), "--list"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    assert "direct      ours              1" in out and "incidental  ours              1" in out
    assert "-> Oklahoma | News from the 50 states" in out
