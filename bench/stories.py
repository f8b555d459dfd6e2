"""Benchmark (not a test): what story clustering costs at index time, as a share of the whole indexing run
(one run, so machine noise affects both alike), and its disk use per 1k articles.

Run: .venv/bin/python bench/stories.py [../shared/eval/rtqa-2023-dev] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qa  # noqa: E402
from qa.settings import Settings  # noqa: E402

TABLES = ("story_articles", "story_bands", "story_articles_copy", "story_articles_story", "story_articles_published")


def table_bytes(db: Path) -> dict[str, int]:
    """Bytes per table and index, from SQLite's dbstat (pages actually used)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    return dict(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("set_dir", nargs="?", default=str(ROOT.parent / "shared" / "eval" / "rtqa-2023-dev"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N articles")
    args = ap.parse_args()
    lines = (Path(args.set_dir) / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lines = [x for x in lines if x.strip()][: args.limit or None]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        assistant = qa.Assistant(Settings(index_dir=Path(tmp) / "index", backend="extractive"))
        started = time.perf_counter()
        report = assistant.index([corpus])
        total = time.perf_counter() - started
        store = assistant.store()
        clustering = store.story_seconds
        sizes = table_bytes(store.db_path)
        story_bytes = sum(sizes.get(t, 0) for t in TABLES)
        all_bytes = store.stats()["bytes"]
        n = len(report.added)
        with sqlite3.connect(store.db_path) as conn:
            groups = conn.execute(
                "SELECT COUNT(DISTINCT copy_id), COUNT(DISTINCT story_id) FROM story_articles"
            ).fetchone()
    out = {
        "articles": n,
        "indexing_s": round(total, 2),
        "clustering_s": round(clustering, 3),
        "clustering_share_of_indexing": round(clustering / total, 4),
        "clustering_ms_per_1k_articles": round(clustering / n * 1000 * 1000, 1),
        "story_bytes_per_1k_articles": round(story_bytes / n * 1000),
        "story_share_of_index_bytes": round(story_bytes / all_bytes, 4),
        "copy_groups": groups[0],
        "stories": groups[1],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
