"""The textbook LangChain pipeline, scored on the same set and with the same metrics as `qa eval`.

Pipeline: `RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)` over each corpus record's text
(metadata `doc_id`), the same MiniLM embeddings as ours, LangChain's `FAISS.from_documents` and
`similarity_search(question, k=10)`.

Embeddings go through a small `langchain_core` `Embeddings` adapter around `qa.indexing.embed.get_embedder` rather than
`langchain_huggingface.HuggingFaceEmbeddings`: that package would downgrade huggingface_hub (2.x -> 1.x) under
our transformers / sentence-transformers. The adapter does what `HuggingFaceEmbeddings` does (newlines become
spaces, `SentenceTransformer.encode`); the packaged MiniLM ends in a Normalize layer, so the vectors are the same
unit vectors either way, and FAISS's default L2 distance ranks exactly like cosine.

There is no answer generation: the baseline is a *retrieve-and-quote* baseline. Its "answer" is the full text
of the top retrieved chunk (up to 1000 characters), it never abstains, and its one citation is that chunk. So
`answer_contains_gold` and `citation_precision` measure whether the top chunk holds the gold answer / comes
from a gold article (generous to the baseline: a 1000-character quote is not a short answer),
`false_abstention` is 0 and `abstention_unanswerable` is 0 by construction. Hit@k and MRR@10 count each article
once (`qa.eval.evaluate.gold_rank`), and latencies are measured as in `run_eval`: retrieval alone, then the whole
answer call (which retrieves again).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from tqdm import tqdm

from qa.eval.evaluate import load_corpus, load_questions, score_question, summarize
from qa.indexing.embed import get_embedder
from qa.schema import Answer, Citation, Passage
from qa.settings import Settings

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 200
TOP_K = 10
BATCH_SIZE = 32  # SentenceTransformer.encode's default, which HuggingFaceEmbeddings keeps: the textbook tunes nothing
# (and runs in float32, as HuggingFaceEmbeddings does: our bfloat16 autocast is ours, not the textbook's)


class MiniLMEmbeddings(Embeddings):
    """LangChain embeddings backed by our loaded sentence-transformers model (one load per process)."""

    def __init__(self, settings: Settings):
        self._embedder = get_embedder(settings.embed_model, settings.embed_device, BATCH_SIZE, "float32")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.encode([t.replace("\n", " ") for t in texts], batch_size=BATCH_SIZE).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def build_store(records: list[dict], settings: Settings):
    """Split, embed and index the corpus the textbook way; returns (LangChain FAISS store, chunk count)."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    with warnings.catch_warnings():  # langchain-community announces its sunset on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.vectorstores import FAISS

    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, add_start_index=True)
    docs = splitter.split_documents(
        [
            Document(page_content=r["text"], metadata={"doc_id": str(r["doc_id"]), "title": r.get("title") or ""})
            for r in records
        ]
    )
    if not docs:
        raise ValueError("the corpus has no text to index")
    return FAISS.from_documents(docs, MiniLMEmbeddings(settings)), len(docs)


def _passage(doc: Document, rank: int) -> Passage:
    start = int(doc.metadata.get("start_index", 0))
    doc_id = doc.metadata["doc_id"]
    title = doc.metadata.get("title", "")
    text = doc.page_content
    return Passage(f"{doc_id}:{start}", doc_id, title, "", "", "", text, start, start + len(text), (), score=-rank)


def _answer(question: str, passages: list[Passage]) -> Answer:
    if not passages:
        return Answer(question, "", abstained=True)
    top = passages[0]
    citation = Citation(1, top.article_id, top.chunk_id, top.title, "", "", "", top.text, top.start, top.end, 0.0)
    return Answer(question, f"{top.text} [1]", citations=[citation], passages=passages)


def run_baseline(set_dir: Path | str, settings: Settings | None = None, limit: int | None = None) -> dict[str, Any]:
    """Score the textbook pipeline on the set; the metric keys are those of `qa.eval.evaluate.summarize`."""
    set_dir = Path(set_dir)
    questions = load_questions(set_dir)[: limit or None]
    settings = settings or Settings()
    t0 = time.perf_counter()
    store, n_chunks = build_store(load_corpus(set_dir), settings)
    index_s = time.perf_counter() - t0

    def retrieve(question: str) -> list[Passage]:
        return [_passage(d, i) for i, d in enumerate(store.similarity_search(question, k=TOP_K), start=1)]

    rows, retrieval_ms, answer_ms = [], [], []
    for q in tqdm(questions, desc="baseline", unit="q", disable=None, leave=False):
        t0 = time.perf_counter()
        passages = retrieve(q["question"])
        t1 = time.perf_counter()
        answer = _answer(q["question"], retrieve(q["question"]))
        t2 = time.perf_counter()
        retrieval_ms.append((t1 - t0) * 1000)
        answer_ms.append((t2 - t1) * 1000)
        rows.append(score_question(q, passages, answer))
    report: dict[str, Any] = summarize(rows, retrieval_ms, answer_ms)
    report |= {
        "backend": "langchain-textbook (retrieve-and-quote)",
        "k": TOP_K,
        "chunk_size": CHUNK_SIZE,
        "chunk_overlap": CHUNK_OVERLAP,
        "embed_model": settings.embed_model,
        "splitter": "RecursiveCharacterTextSplitter",
        "vectorstore": "langchain_community FAISS (L2), similarity_search",
        "chunks": n_chunks,
        "index_seconds": round(index_s, 2),
        "questions": rows,
    }
    return report
