"""Reading the retrieved passages sentence by sentence: each sentence's support for the question (embedding
similarity plus the share of question words it holds), and passages reranked by their best sentence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.indexing.embed import Embedder
from qa.schema import Citation, Passage
from qa.settings import Settings
from qa.text import stems

MIN_SENTENCE_CHARS = 25


@dataclass
class Candidate:
    passage_rank: int
    passage: Passage
    start: int  # article offsets
    end: int
    text: str
    vector: np.ndarray | None = None  # stored at index time; None: embedded when scored
    dense: float = 0.0
    lexical: float = 0.0
    score: float = 0.0


def candidates(passages: list[Passage]) -> list[Candidate]:
    """Every sentence of the passages once (overlapping chunks repeat sentences), in passage rank order."""
    seen: set[tuple[str, int]] = set()
    out: list[Candidate] = []
    for rank, p in enumerate(passages):
        for i, (start, end) in enumerate(p.sentences):
            text = p.text[start - p.start : end - p.start]
            if (p.article_id, start) in seen or len(text) < MIN_SENTENCE_CHARS:
                continue
            seen.add((p.article_id, start))
            vector = None if p.sentence_vectors is None else p.sentence_vectors[i]
            out.append(Candidate(rank, p, start, end, text, vector))
    return out


def score_sentences(
    question: str, qvec: np.ndarray, cands: list[Candidate], embedder: Embedder, settings: Settings, focus: str = ""
) -> None:
    """Support score of each sentence: embedding similarity plus the share of question words it contains.
    In a follow-up ("And inflation?") the words the user just typed (`focus`) are the ones to find."""
    if not cands:
        return
    missing = [c for c in cands if c.vector is None]  # an index from before sentence vectors were stored
    for c, vec in zip(missing, embedder.encode([c.text for c in missing]), strict=True):
        c.vector = vec
    q_stems = stems(focus) or stems(question)
    s = settings
    for c in cands:
        c.dense = float(np.dot(c.vector, qvec))
        c.lexical = len(q_stems & stems(c.text)) / len(q_stems) if q_stems else 0.0
        c.score = (
            s.support_dense_weight * c.dense
            + s.support_lexical_weight * c.lexical
            + s.support_passage_weight * max(c.passage.dense, 0.0)
            - s.support_rank_penalty * c.passage_rank
        )


def rank_sentences(
    question: str, qvec: np.ndarray, passages: list[Passage], embedder: Embedder, settings: Settings, focus: str = ""
) -> list[Candidate]:
    """All sentences of the passages, best-supporting first; ranked[0].score is the answer's support."""
    cands = candidates(passages)
    score_sentences(question, qvec, cands, embedder, settings, focus)
    return sorted(cands, key=lambda c: c.score, reverse=True)


def rerank(passages: list[Passage], ranked: list[Candidate]) -> list[Passage]:
    """Passages ordered by their best sentence's support: a sentence-level reading of the fused list that
    lifts the passage that actually answers above ones that merely share words (squad2-dev Hit@1 0.80 -> 0.88)."""
    best: dict[str, float] = {}
    for c in ranked:
        best.setdefault(c.passage.chunk_id, c.score)
    return sorted(passages, key=lambda p: best.get(p.chunk_id, float("-inf")), reverse=True)


def citation(n: int, c: Candidate, score: float | None = None) -> Citation:
    p = c.passage
    return Citation(
        n=n, article_id=p.article_id, chunk_id=p.chunk_id, title=p.title, source=p.source, url=p.url,
        published=p.published, quote=c.text, start=c.start, end=c.end,
        score=round(c.score if score is None else score, 4),
    )  # fmt: skip
