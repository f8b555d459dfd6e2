"""How much of an eval set's misses its silver labels explain (not a test): each answerable question is put in a
class by its gold articles, and a `qa eval --out` report (ours and, with --baseline, the textbook's) is broken
down by class.

rtqa-2023-dev's `gold_doc_ids` are a heuristic (its README): articles published by the question's date that hold
the answer string and 3 of the question's words *anywhere*. A gold article "holds it directly" when one of its
sentences (or its headline) holds the answer together with at least --share of the question's content words (the
answer's own words not counted); otherwise the answer is there only by the way ("50 States" roundups that name
"Oklahoma", a Brazilian football obituary for "Brazil"), and the corpus may have no report of the event at all.
Retrieval cannot be expected to rank such an article first, and a Hit@5 target is bounded by these questions.

Run: .venv/bin/qa eval ../shared/eval/rtqa-2023-dev --baseline --out /tmp/rtqa.json
     .venv/bin/python bench/label_audit.py ../shared/eval/rtqa-2023-dev /tmp/rtqa.json [--share 0.2] [--list]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.eval.evaluate import contains_any, load_corpus, load_questions  # noqa: E402
from qa.indexing.chunk import sentence_spans  # noqa: E402
from qa.text import stems  # noqa: E402

CLASSES = ("direct", "incidental")


def answers_of(q: dict) -> list[str]:
    return [a for a in [q.get("answer"), *(q.get("answer_aliases") or [])] if a]


def best_share(q: dict, corpus: dict[str, dict]) -> float:
    """The largest share of the question's content stems found in one gold sentence (or headline) that holds
    the answer."""
    answers = answers_of(q)
    asked = stems(q["question"]) - set().union(*(stems(a) for a in answers))
    best = 0.0
    for doc_id in q.get("gold_doc_ids") or []:
        doc = corpus.get(doc_id)
        if not doc or not asked:
            continue
        text = doc["text"]
        pieces = [str(doc.get("title") or "")] + [text[s:e] for s, e in sentence_spans(text)]
        for piece in pieces:
            if contains_any(piece, answers):
                best = max(best, len(asked & stems(piece)) / len(asked))
    return best


def breakdown(rows: list[dict], kind: dict[str, str]) -> dict[str, dict[str, float]]:
    out = {}
    for name in CLASSES:
        pick = [r for r in rows if r["answerable"] and kind.get(r["qid"]) == name]
        n = len(pick) or 1
        out[name] = {
            "n": len(pick),
            "hit@1": sum(r["rank"] == 1 for r in pick) / n,
            "hit@5": sum(r["rank"] is not None and r["rank"] <= 5 for r in pick) / n,
            "mrr@10": sum(1 / r["rank"] for r in pick if r["rank"] and r["rank"] <= 10) / n,
            "answer": sum(r["contains_gold"] for r in pick) / n,
            "declined": sum(r["abstained"] for r in pick) / n,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("set_dir", type=Path)
    parser.add_argument("report", type=Path, help="the JSON written by qa eval --out")
    parser.add_argument("--share", type=float, default=0.2, help="question words a direct gold sentence holds")
    parser.add_argument("--list", action="store_true", help="print the incidental questions and their gold titles")
    args = parser.parse_args()
    corpus = {d["doc_id"]: d for d in load_corpus(args.set_dir)}
    questions = [q for q in load_questions(args.set_dir) if q.get("answerable", True) and q.get("gold_doc_ids")]
    share = {q["qid"]: best_share(q, corpus) for q in questions}
    kind = {qid: "direct" if s >= args.share else "incidental" for qid, s in share.items()}
    report = json.loads(args.report.read_text(encoding="utf-8"))
    who = {"ours": report} | ({"textbook": report["baseline"]} if report.get("baseline") else {})
    keys = ("n", "hit@1", "hit@5", "mrr@10", "answer", "declined")
    print(f"{args.set_dir.name}: gold sentence holds the answer and >= {args.share:.0%} of the question's words")
    print(f"{'class':<12}{'who':<10}" + "".join(f"{k:>9}" for k in keys))
    for name, rep in who.items():
        for cls, m in breakdown(rep["questions"], kind).items():
            print(f"{cls:<12}{name:<10}" + "".join(f"{m[k]:>9.0f}" if k == "n" else f"{m[k]:>9.3f}" for k in keys))
    if args.list:
        rows = {r["qid"]: r for r in report["questions"]}
        for q in questions:
            if kind[q["qid"]] == "incidental":
                titles = "; ".join(str(corpus[d].get("title", ""))[:50] for d in q["gold_doc_ids"][:3] if d in corpus)
                rank = rows.get(q["qid"], {}).get("rank")
                print(f"- [{share[q['qid']]:.2f}, rank {rank}] {q['question'][:90]} -> {q['answer']} | {titles}")


if __name__ == "__main__":
    main()
