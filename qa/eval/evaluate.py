"""`qa eval`: score retrieval, answers, citations, abstention and latency on a set in shared/eval/FORMAT.md.

The corpus is indexed into its own cached index (never the user's) and every question goes through the same
`Assistant.ask()` path the product uses.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tqdm import tqdm

from qa.api import Assistant
from qa.errors import QAError
from qa.eval.stats import percentile
from qa.indexing.chunk import SENTENCES
from qa.indexing.embed import VECTORS, uses_bfloat16
from qa.schema import Answer, Passage
from qa.settings import Settings
from qa.store.codec import FORMAT

REPORT_KEYS = (
    "hit@1",
    "hit@5",
    "hit@10",
    "mrr@10",
    "answer_contains_gold",
    "short_answer_gold",
    "false_abstention",
    "citation_precision",
    "abstention_unanswerable",
    "retrieval_ms_p50",
    "retrieval_ms_p95",
    "answer_ms_p50",
    "answer_ms_p95",
)


class EvalSetError(QAError, ValueError):
    pass


def load_questions(set_dir: Path) -> list[dict]:
    corpus, questions = set_dir / "corpus.jsonl", set_dir / "questions.json"
    for needed in (corpus, questions):
        if not needed.is_file():
            raise EvalSetError(f"{set_dir} is not an evaluation set: {needed.name} is missing (see FORMAT.md)")
    try:
        data = json.loads(questions.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"{questions}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(q, dict) and "question" in q for q in data):
        raise EvalSetError(f"{questions}: expected a JSON list of objects with a 'question' field")
    return data


def eval_index_dir(set_dir: Path, settings: Settings, cache: Path | None = None) -> Path:
    """A private index per (set, model, chunking, how sentence vectors are made and stored), reused across runs
    and updated incrementally."""
    key = json.dumps(
        [str(set_dir.resolve()), settings.embed_model, settings.chunk_chars, settings.chunk_overlap_chars, VECTORS]
        + [SENTENCES]
        + [FORMAT]
        + (["bfloat16"] if uses_bfloat16(settings.embed_precision, settings.embed_device) else [])
    )
    root = cache or Path.home() / ".cache" / "news-qa" / "eval"
    return root / f"{set_dir.resolve().name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def normalize(text: str) -> str:
    text = re.sub(r"\[\d+\]", " ", text.lower())
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def contains_any(text: str, answers: list[str]) -> bool:
    haystack = f" {normalize(text)} "
    return any(f" {normalize(a)} " in haystack for a in answers if normalize(a))


def gold_rank(passages: list[Passage], gold: set[str]) -> int | None:
    """1-based rank of the first gold article, counting each retrieved article once."""
    articles = list(dict.fromkeys(p.article_id for p in passages))
    for rank, article_id in enumerate(articles, start=1):
        if article_id in gold:
            return rank
    return None


def score_question(q: dict, passages: list[Passage], answer: Answer) -> dict[str, Any]:
    answers = [a for a in [q.get("answer"), *(q.get("answer_aliases") or [])] if a]
    gold = set(q.get("gold_doc_ids") or [])
    cited_ok = [contains_any(c.quote, answers) or c.article_id in gold for c in answer.citations]
    return {
        "qid": q.get("qid", ""),
        "question": q["question"],
        "answerable": bool(q.get("answerable", True)),
        "rank": gold_rank(passages, gold) if gold else None,
        "abstained": answer.abstained,
        "contains_gold": bool(answers) and not answer.abstained and contains_any(answer.text, answers),
        # the bold short answer alone: the entity chosen, not the sentence around it
        "short_gold": bool(answers) and not answer.abstained and contains_any(answer.short_answer, answers),
        "short_answer": answer.short_answer,
        "citations": len(cited_ok),
        "citations_correct": sum(cited_ok),
        "support": answer.support,
        "answer": answer.text,
        "notes": answer.notes,  # why it was declined, or why the model's words were replaced by quotes
    }


def summarize(rows: list[dict], retrieval_ms: list[float], answer_ms: list[float]) -> dict[str, float]:
    """The metrics of FORMAT.md from per-question rows (kept separate so tests can check the arithmetic)."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]

    def share(items: list[dict], pred) -> float:
        return sum(1 for r in items if pred(r)) / len(items) if items else 0.0

    def hit(n: int) -> float:
        return share(answerable, lambda r: r["rank"] is not None and r["rank"] <= n)

    cited = sum(r["citations"] for r in answerable if not r["abstained"])
    correct = sum(r["citations_correct"] for r in answerable if not r["abstained"])
    mrr = sum(1 / r["rank"] for r in answerable if r["rank"] and r["rank"] <= 10)
    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "hit@1": hit(1),
        "hit@5": hit(5),
        "hit@10": hit(10),
        "mrr@10": mrr / len(answerable) if answerable else 0.0,
        "answer_contains_gold": share(answerable, lambda r: r["contains_gold"]),
        "short_answer_gold": share(answerable, lambda r: r.get("short_gold", False)),
        "false_abstention": share(answerable, lambda r: r["abstained"]),
        "citation_precision": correct / cited if cited else 0.0,
        "abstention_unanswerable": share(unanswerable, lambda r: r["abstained"]),
        "retrieval_ms_p50": percentile(retrieval_ms, 50),
        "retrieval_ms_p95": percentile(retrieval_ms, 95),
        "answer_ms_p50": percentile(answer_ms, 50),
        "answer_ms_p95": percentile(answer_ms, 95),
    }


def run_eval(
    set_dir: Path | str,
    settings: Settings | None = None,
    limit: int | None = None,
    cache: Path | None = None,
    backend: str = "extractive",
) -> dict[str, Any]:
    """Index the set's corpus privately, ask every question, and return the report (metrics + rows)."""
    set_dir = Path(set_dir)
    questions = load_questions(set_dir)[: limit or None]
    settings = settings or Settings()
    settings = settings.model_copy(update={"index_dir": eval_index_dir(set_dir, settings, cache)})
    assistant = Assistant(settings)
    index_report = assistant.index([set_dir / "corpus.jsonl"])
    rows, retrieval_ms, answer_ms = [], [], []
    for q in tqdm(questions, desc="questions", unit="q", disable=None, leave=False):
        # k=10 only widens the passages returned for Hit@10; the answer reads the same reranked pool as at k=5.
        # A question's date (FORMAT.md: optional) is the day it is answered as of: later articles are not used.
        as_of = q.get("question_date") or None
        answer = assistant.ask(q["question"], k=max(10, settings.k), backend=backend, as_of=as_of)
        retrieval_ms.append(answer.timings_ms["retrieve"])
        answer_ms.append(answer.timings_ms["total"])
        rows.append(score_question(q, answer.passages[: max(10, settings.k)], answer))  # not cited extras
    report: dict[str, Any] = summarize(rows, retrieval_ms, answer_ms)
    report |= {
        "set": str(set_dir),
        "backend": backend,
        "k": settings.k,
        "chunk_chars": settings.chunk_chars,
        "chunk_overlap_chars": settings.chunk_overlap_chars,
        "abstain_threshold": settings.abstain_threshold,
        "embed_model": settings.embed_model,
        "index_rejected": [vars(r) for r in index_report.rejected],
        "questions": rows,
    }
    return report


def load_corpus(set_dir: Path) -> list[dict]:
    """The set's corpus.jsonl records that have a doc_id and a non-empty text (blank lines skipped)."""
    path = set_dir / "corpus.jsonl"
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{path}:{n}: not valid JSON ({exc})") from None
        if isinstance(record, dict) and record.get("doc_id") and str(record.get("text") or "").strip():
            records.append(record)
    return records
