"""Stage 5: hybrid retrieval. Dense FAISS and BM25 (SQLite FTS5) lists fused by reciprocal rank, near-duplicate
passages dropped, copies of one text (qa/stories) collapsed into one passage naming every outlet, optional
source/date filters applied inside both searches."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from qa.indexing.embed import Embedder
from qa.schema import Passage
from qa.settings import Settings
from qa.store import Filters, VectorStore
from qa.stories import store as stories
from qa.stories.signals import outlet
from qa.text import words


class HybridRetriever:
    def __init__(self, store: VectorStore, embedder: Embedder, settings: Settings):
        self.store = store
        self.embedder = embedder
        self.settings = settings

    def retrieve(
        self,
        question: str,
        k: int | None = None,
        filters: Filters = Filters(),
        query_vector: np.ndarray | None = None,
    ) -> list[Passage]:
        """Top-k passages for the question, best first, each with its fused score and cosine similarity."""
        s = self.settings
        k = k or s.k
        vector = self.embedder.encode_query(question) if query_vector is None else query_vector
        with self.store.read() as view:
            dense = view.dense(vector, s.fetch_k, filters)
            sparse = view.sparse(question, s.fetch_k, filters)
            fused = fuse([(s.dense_weight, dense), (s.sparse_weight, sparse)], s.rrf_k)
            order = sorted(fused, key=fused.__getitem__, reverse=True)
            if not s.pool_per_article:  # with a cap per article, the whole fused list may be needed
                order = order[: k * s.fuse_pool_factor]
            records = view.passages(order)
            groups = _groups(view.conn, [p.article_id for p, _ in records.values()])
        sparse_rank = {rid: rank for rank, (rid, _) in enumerate(sparse)}
        passages: list[Passage] = []
        kept_words: list[set[str]] = []
        per_article: dict[str, int] = {}
        copy_owner: dict[str, str] = {}  # copy group -> the article that stands for it (the best-ranked one)
        for rid in order:
            if rid not in records:
                continue
            passage, passage_vector = records[rid]
            member, carried = groups.get(passage.article_id, (None, ()))
            if member is not None:
                owner = copy_owner.setdefault(member.copy_id, passage.article_id)
                if owner != passage.article_id:
                    continue  # a copy of a text already in the list: its outlet is named on that passage instead
                passage.outlet, passage.story_id = member.outlet, member.story_id
                passage.also_in = tuple(o for o in carried if o != member.outlet)
            else:
                passage.outlet = outlet(passage.source, passage.url)
            if s.pool_per_article and per_article.get(passage.article_id, 0) >= s.pool_per_article:
                continue  # a long article must not fill the pool: distinct articles are distinct evidence
            bag = set(words(passage.text))
            if any(_jaccard(bag, other) >= s.dedup_jaccard for other in kept_words):
                continue
            passage.score = fused[rid]
            passage.dense = float(np.dot(passage_vector, vector))
            passage.sparse_rank = sparse_rank.get(rid)
            passages.append(passage)
            kept_words.append(bag)
            per_article[passage.article_id] = per_article.get(passage.article_id, 0) + 1
            if len(passages) == k:
                break
        return passages


def _groups(conn, article_ids: list[str]) -> dict[str, tuple[stories.Member, list[str]]]:
    """Per article: its copy-group membership and every outlet that carried its text."""
    members = stories.members_of(conn, list(dict.fromkeys(article_ids)))
    groups = stories.copies(conn, [m.copy_id for m in members.values()])
    return {aid: (m, stories.outlets(groups.get(m.copy_id, [m]))) for aid, m in members.items()}


def fuse(lists: Sequence[tuple[float, Sequence[tuple[int, float]]]], rrf_k: int) -> dict[int, float]:
    """Weighted reciprocal-rank fusion: each list adds weight / (rrf_k + rank) for every id it holds (rank 1 =
    first). Only ranks count, so BM25 and cosine scores need no common scale."""
    fused: dict[int, float] = {}
    for weight, ranked in lists:
        for rank, (rid, _) in enumerate(ranked, start=1):
            fused[rid] = fused.get(rid, 0.0) + weight / (rrf_k + rank)
    return fused


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


class LangChainRetriever(BaseRetriever):
    """Adapter: Passages as LangChain Documents, with the citation fields in metadata. `search` is the
    question -> passages step of the ask pipeline (Assistant.as_retriever), so both read the same passages."""

    search: Callable[[str], list[Passage]]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun | None = None
    ) -> list[Document]:
        return [
            Document(
                page_content=p.text,
                metadata={k: v for k, v in vars(p).items() if k not in ("text", "sentence_vectors")},
            )
            for p in self.search(query)
        ]
