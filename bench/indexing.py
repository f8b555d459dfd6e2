"""Benchmark (not a test): does indexing cost one model pass? In one run on the same corpus (rtqa-2023-dev by
default): raw `SentenceTransformer.encode` of our chunk texts, our whole `qa index` (ingest, chunk, embed, store),
and the textbook LangChain pipeline (1000/200 splitter + MiniLM + FAISS, qa/eval/baseline.py). Printed as a table of
wall times, chunks/s and ratios; machine noise hits all rows alike, so read the ratios.

Run: .venv/bin/python bench/indexing.py [--set ../shared/eval/rtqa-2023-dev] [--articles N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qa  # noqa: E402
from bench.common import print_rows  # noqa: E402
from qa.eval.baseline import build_store  # noqa: E402
from qa.eval.evaluate import load_corpus, load_questions  # noqa: E402
from qa.eval.stats import percentile  # noqa: E402
from qa.indexing.chunk import chunk_article  # noqa: E402
from qa.indexing.embed import get_embedder  # noqa: E402
from qa.indexing.indexer import embed_text  # noqa: E402
from qa.settings import Settings  # noqa: E402
from qa.sources.ingest import load_file  # noqa: E402

DEFAULT_SET = ROOT.parent / "shared" / "eval" / "rtqa-2023-dev"


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def p50_95(values: list[float]) -> str:
    return f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} ms"


def query_times(assistant: qa.Assistant, textbook, questions: list[dict]) -> dict[str, list[float]]:
    """Per question: our retrieval and whole extractive answer (as of the question's date), the textbook's
    similarity_search (it has no answer step)."""
    out: dict[str, list[float]] = {"ours retrieval": [], "ours answer": [], "textbook retrieval": []}
    for q in questions:
        answer = assistant.ask(q["question"], as_of=q.get("question_date") or None)
        out["ours retrieval"].append(answer.timings_ms["retrieve"])
        out["ours answer"].append(answer.timings_ms["total"])
        _, seconds = timed(textbook.similarity_search, q["question"], k=10)
        out["textbook retrieval"].append(seconds * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="an evaluation set folder with corpus.jsonl")
    parser.add_argument("--articles", type=int, default=0, help="only the first N articles (0 = all)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="qa-bench-indexing-") as tmp:
        work = Path(tmp)
        corpus = args.set / "corpus.jsonl"
        if args.articles:
            lines = corpus.read_text(encoding="utf-8").splitlines()[: args.articles]
            corpus = work / "corpus.jsonl"
            corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        text_mb = sum(len(json.loads(line).get("text", "")) for line in corpus.open(encoding="utf-8")) / 1e6
        settings = Settings(index_dir=work / "index", backend="extractive")
        assistant = qa.Assistant(settings)
        model = get_embedder(precision="float32")._model  # the raw encode, as a script would run it
        model.encode(["warm up the model and its threads"])
        assistant.embedder.encode(["warm up ours"])

        articles, _ = load_file(corpus, 10**9)
        chunked, chunk_s = timed(
            lambda: [
                (a, c) for a in articles for c in chunk_article(a, settings.chunk_chars, settings.chunk_overlap_chars)
            ]
        )
        texts = [embed_text(a, c)[0] for a, c in chunked]
        _, raw_s = timed(model.encode, texts, batch_size=settings.embed_batch_size, normalize_embeddings=True)
        raw_bf16_s = None
        if assistant.embedder.bfloat16:  # what ours runs: the same encode with bfloat16 products
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, raw_bf16_s = timed(
                    assistant.embedder._model.encode,
                    texts,
                    batch_size=settings.embed_batch_size,
                    normalize_embeddings=True,
                )

        report, ours_s = timed(assistant.index, [corpus])
        assert report.chunks_embedded == len(texts), (report.chunks_embedded, len(texts))

        records = load_corpus(args.set)[: args.articles or None]
        (textbook, textbook_chunks), textbook_s = timed(build_store, records, settings)
        textbook.save_local(str(work / "textbook"))
        sizes = {"ours": folder_mb(settings.index_dir), "textbook": folder_mb(work / "textbook")}
        latency = query_times(assistant, textbook, load_questions(args.set))

    n = len(texts)
    rows = [
        ("corpus", f"{args.set.name}: {len(articles)} articles, {text_mb:.1f} M characters of text"),
        (
            f"our chunks ({settings.chunk_chars}/{settings.chunk_overlap_chars}, headline + sentences)",
            f"{n:,}; chunking alone {chunk_s:.1f} s ({chunk_s / ours_s:.1%})",
        ),
        ("raw SentenceTransformer.encode of our chunk texts", f"{raw_s:.1f} s, {n / raw_s:.1f} chunks/s"),
        *(
            [("  the same in bfloat16 (autocast, as ours runs)", f"{raw_bf16_s:.1f} s, {n / raw_bf16_s:.1f} chunks/s")]
            if raw_bf16_s
            else []
        ),
        (
            f"our qa index (ingest+chunk+embed+store, {'bfloat16' if raw_bf16_s else 'float32'})",
            f"{ours_s:.1f} s, {n / ours_s:.1f} chunks/s",
        ),
        ("  throughput / raw encode in the same precision", f"{(raw_bf16_s or raw_s) / ours_s:.2f}x"),
        *([("  throughput / raw float32 encode", f"{raw_s / ours_s:.2f}x")] if raw_bf16_s else []),
        ("textbook LangChain (1000/200 + MiniLM + FAISS, float32)", f"{textbook_s:.1f} s, {textbook_chunks:,} chunks"),
        ("  our wall time / textbook's", f"{ours_s / textbook_s:.2f}x"),
        (
            "index on disk: ours / textbook",
            f"{sizes['ours']:.1f} MB / {sizes['textbook']:.1f} MB "
            f"({sizes['ours'] / text_mb:.1f}x / {sizes['textbook'] / text_mb:.1f}x the text)",
        ),
        *((f"{name} p50 / p95", p50_95(values)) for name, values in latency.items()),
    ]
    print_rows(rows)


if __name__ == "__main__":
    main()
