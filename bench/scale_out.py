"""Benchmark (not a test): scaling out. Index throughput in-process vs on a local Ray cluster with 1 and 2 worker
nodes, and FAISS vs Milvus Lite at 10k and 100k chunks (build time, dense and hybrid query latency, adding one
article, size on disk).

The Ray runs index the shared SQuAD 2.0 development corpus (411 real articles) on a real `ray start` cluster on
127.0.0.1 (tests/ray_cluster.py), each node offering 1 CPU. The store runs fill both backends with the same
chunks of sampled real sentences and random unit vectors (as bench/index_query.py does): storage, BM25 and vector
search costs are the real ones, embedding is left out.
Run: .venv/bin/python bench/scale_out.py [--sizes 10000 100000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qa  # noqa: E402
from bench.common import print_rows  # noqa: E402
from qa.answer.retrieve import HybridRetriever  # noqa: E402
from qa.eval.stats import percentile  # noqa: E402
from qa.indexing.chunk import chunk_article, sentence_spans  # noqa: E402
from qa.settings import Settings  # noqa: E402
from qa.sources.ingest import load_file, make_article  # noqa: E402
from qa.store import (  # noqa: E402
    Upsert,
    faiss_store,
    milvus_store,  # noqa: E402
)
from tests.ray_cluster import LocalRayCluster  # noqa: E402

CORPUS = ROOT.parent / "shared" / "eval" / "squad2-dev" / "corpus.jsonl"
QUESTIONS = ROOT.parent / "shared" / "eval" / "squad2-dev" / "questions.json"
Row = tuple[str, str]


def timed(fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def ms(values: list[float]) -> str:
    return f"{percentile(values, 50) * 1000:.1f} / {percentile(values, 95) * 1000:.1f} ms"


def bench_ray(work: Path, worker_counts: list[int]) -> list[Row]:
    import ray

    from qa.indexing.distributed import get_ray_embedder, ray_embedder

    rows = []
    local = qa.Assistant(Settings(index_dir=work / "local"))
    local.embedder.encode(["warm up"])
    report, seconds = timed(local.index, [CORPUS])
    chunks = report.chunks_embedded
    rows.append((f"index {chunks} chunks in-process (torch on both cores)", f"{chunks / seconds:.1f} chunks/s"))
    for workers in worker_counts:
        with LocalRayCluster(workers=workers - 1, cpus=1) as cluster:
            settings = Settings(index_dir=work / f"ray-{workers}", ray_address=cluster.address)
            assistant = qa.Assistant(settings)
            assistant.embedder.encode(["warm up"])
            _, start_s = timed(ray_embedder, settings)  # actors start and load the model, once per process
            report, seconds = timed(assistant.index, [CORPUS])
            assert report.chunks_embedded == chunks
            rows.append(
                (
                    f"index {chunks} chunks on Ray, {workers} worker node(s) x 1 CPU",
                    f"{chunks / seconds:.1f} chunks/s (+{start_s:.1f} s to start the workers)",
                )
            )
            ray.shutdown()
            get_ray_embedder.cache_clear()
    return rows


def synthetic_batches(n_chunks: int, dim: int, pool: list[str], per_commit: int = 10_000) -> list[list]:
    """About n_chunks chunks of sampled real sentences (15 sentences an article) with random unit vectors."""
    rng = np.random.default_rng(0)
    random.seed(0)
    batches: list[list] = [[]]
    total = pending = a = 0
    while total < n_chunks:
        text = "\n\n".join(" ".join(random.sample(pool, 3)) for _ in range(5))
        article = make_article(title=f"Synthetic {a}", text=text, source="bench", origin="", key=f"s{a}")
        chunks = chunk_article(article)[: n_chunks - total]
        vectors = rng.standard_normal((len(chunks), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        sentences = [rng.standard_normal((len(c.sentences), dim)).astype(np.float32) for c in chunks]
        batches[-1].append(
            Upsert(article, chunks, vectors, [s / np.linalg.norm(s, axis=1, keepdims=True) for s in sentences])
        )
        total, pending, a = total + len(chunks), pending + len(chunks), a + 1
        if pending >= per_commit and total < n_chunks:
            batches.append([])
            pending = 0
    return batches


def disk_mb(*paths: Path) -> float:
    return sum(p.stat().st_size for path in paths for p in path.rglob("*") if p.is_file()) / 1e6


def bench_stores(work: Path, sizes: list[int], questions: list[str], pool: list[str]) -> list[Row]:
    rows = []
    settings = Settings(index_dir=work / "unused")
    embedder = qa.Assistant(settings).embedder
    query_vectors = embedder.encode(questions)
    new = make_article(title="Harbour bridge approved", text=" ".join(pool[:6]), source="bench", origin="", key="n")
    new_chunks = chunk_article(new)
    new_vectors = embedder.encode([c.text for c in new_chunks])
    for n in sizes:
        batches = synthetic_batches(n, embedder.dim, pool)
        for name, make in (
            ("FAISS", lambda p: faiss_store(p, create=True)),
            ("Milvus Lite", lambda p: milvus_store(p, str(p / "milvus.db"), create=True)),
        ):
            path = work / f"{name.split()[0].lower()}-{n}"
            store = make(path)
            _, build_s = timed(lambda s=store, bs=batches: [s.commit(b, [], {}, embedder.name) for b in bs])
            chunks = store.stats()["chunks"]
            label = f"{name} at {chunks:,} chunks"
            rows.append((f"{label}: build (commit all chunks)", f"{build_s:.1f} s ({chunks / build_s:,.0f} chunks/s)"))
            dense = []
            with store.read() as view:
                view.dense(query_vectors[0], 50)
                for v in query_vectors:
                    dense.append(timed(view.dense, v, 50)[1])
            retriever = HybridRetriever(store, embedder, settings)
            pairs = zip(questions, query_vectors, strict=True)
            hybrid = [timed(retriever.retrieve, q, query_vector=v)[1] for q, v in pairs]
            rows.append((f"{label}: dense top-50 p50/p95", ms(dense)))
            rows.append((f"{label}: hybrid retrieval (dense+BM25+fusion) p50/p95", ms(hybrid)))
            _, add_s = timed(store.commit, [Upsert(new, new_chunks, new_vectors)], [], {}, embedder.name)
            rows.append((f"{label}: add 1 article ({len(new_chunks)} chunks)", f"{add_s * 1000:.0f} ms"))
            _, open_s = timed(make, path)
            rows.append((f"{label}: open the store again", f"{open_s * 1000:.0f} ms"))
            rows.append((f"{label}: on disk", f"{disk_mb(path):.0f} MB"))
            del store
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    questions = [q["question"] for q in json.loads(QUESTIONS.read_text())][: args.queries]
    articles, _ = load_file(CORPUS, 10**9)
    pool = [a.text[s:e] for a in articles for s, e in sentence_spans(a.text)]
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        work = Path(tmp)
        rows = [] if args.skip_ray else bench_ray(work, args.workers)
        rows += bench_stores(work, args.sizes, questions, pool)
    print_rows(rows)


if __name__ == "__main__":
    main()
