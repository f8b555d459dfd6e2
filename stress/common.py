"""What the stress runs share: synthetic articles whose text changes by version, the answer invariants every
run checks, and a small figures table."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.schema import Answer
from qa.sources.ingest import load_file
from qa.store import VectorStore

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
TEST_ARTICLES = ROOT / "tests" / "data" / "articles"
ABSTAIN = "The articles don't say."
OUT_OF_SCOPE = ["Who won the 2010 World Cup?", "What is the capital of Australia?", "How tall is the Eiffel Tower?"]
MARKER = re.compile(r"\[(\d+)\]")
EDITION = re.compile(r"\bedition (\d+)\b")

TOPICS = [
    ("harbour", "mooring posts"),
    ("tram", "tram stops"),
    ("library", "reading rooms"),
    ("school", "classrooms"),
    ("hospital", "beds"),
    ("museum", "galleries"),
    ("market", "stalls"),
    ("park", "benches"),
    ("ferry", "boats"),
    ("stadium", "seats"),
    ("airport", "gates"),
    ("bridge", "lamps"),
]
TOWNS = ["Port Elling", "Marisport", "Valmora", "Tarnholm", "Caldera Springs", "Norby", "Kestrel Bay", "Ashford"]


def _subject(i: int) -> tuple[str, str, str]:
    topic, noun = TOPICS[i % len(TOPICS)]
    return topic, noun, TOWNS[(i // len(TOPICS)) % len(TOWNS)]


def article_text(i: int, version: int, sentences: int = 12) -> str:
    """Article `i` at `version`: the same headline, every sentence changed and tagged 'edition <version>' (so
    an answer that mixes two versions of one article is visible), about 3 chunks long."""
    topic, noun, town = _subject(i)
    body = " ".join(
        f"In edition {version}, the {topic} committee of district {i} in {town} said it would add "
        f"{(i * 31 + j * 7 + version * 13) % 90 + 5} {noun} in phase {j + 1}."
        for j in range(sentences)
    )
    return f"{town} {topic} committee report for district {i}\n\n{body}\n"


def question_about(i: int, phase: int = 1) -> str:
    topic, noun, town = _subject(i)
    return f"How many {noun} will the {topic} committee of district {i} in {town} add in phase {phase}?"


def write_version(folder: Path, n: int, version: int, sentences: int = 12) -> dict[str, str]:
    """Write articles 0..n-1 at `version` as .txt files; returns {article id: content hash} as ingested."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}
    for i in range(n):
        path = folder / f"article-{i:03d}.txt"
        path.write_text(article_text(i, version, sentences), encoding="utf-8")
        [article], _ = load_file(path.resolve(), 10**7)
        hashes[article.id] = article.content_hash
    return hashes


def citation_problems(answer: Answer, strict_markers: bool = False) -> list[str]:
    """What the system promises of every answer: an abstention is exactly the fixed sentence with no sources;
    otherwise citations are numbered 1..n, each used in the text, each from a retrieved passage, each quote
    the exact text of that passage at its offsets, and no [n] in the text points nowhere. A marker that is
    part of a quoted article sentence (an article may contain "[7]") is tolerated unless `strict_markers`."""
    if answer.abstained:
        return [] if answer.text == ABSTAIN and not answer.citations else [f"odd abstention: {answer.text!r}"]
    problems = []
    if not answer.citations:
        problems.append(f"an answer without citations: {answer.text[:80]!r}")
    numbers = [c.n for c in answer.citations]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"citation numbers {numbers} are not 1..n")
    passages = {p.chunk_id: p for p in answer.passages}
    for c in answer.citations:
        p = passages.get(c.chunk_id)
        if p is None:
            problems.append(f"[{c.n}] cites {c.chunk_id}, a passage that was not retrieved")
            continue
        if p.article_id != c.article_id or p.text[c.start - p.start : c.end - p.start] != c.quote:
            problems.append(f"[{c.n}] quote is not the text of passage {c.chunk_id} at {c.start}:{c.end}")
        if f"[{c.n}]" not in answer.text:
            problems.append(f"[{c.n}] is never used in the answer text")
    rest = answer.text
    if not strict_markers:
        for c in answer.citations:
            rest = rest.replace(c.quote, " ")
    stray = sorted({int(n) for n in MARKER.findall(rest)} - set(numbers))
    if stray:
        problems.append(f"markers {stray} in the answer have no citation: {answer.text[:120]!r}")
    return problems


def snapshot_problems(answer: Answer) -> list[str]:
    """Every article appears in one version only within one answer (passages and quotes alike)."""
    problems = []
    editions: dict[str, set[str]] = {}
    for p in answer.passages:
        found = set(EDITION.findall(p.text))
        if len(found) > 1:
            problems.append(f"passage {p.chunk_id} mixes editions {sorted(found)}")
        editions.setdefault(p.article_id, set()).update(found)
    for aid, found in editions.items():
        if len(found) > 1:
            problems.append(f"article {aid} appears in editions {sorted(found)} within one answer")
    for c in answer.citations:
        quoted = set(EDITION.findall(c.quote))
        if not quoted <= editions.get(c.article_id, set()):
            problems.append(f"[{c.n}] quotes edition {sorted(quoted)} of a passage in {sorted(editions[c.article_id])}")
    return problems


def probe_snapshot(store: VectorStore, rng: np.random.Generator) -> tuple[int, list[str]]:
    """Inside one read snapshot every FAISS and BM25 hit must have its chunk row (retrieval would silently
    drop a hit without one, hiding a FAISS/SQLite mismatch). Returns the generation read and the problems."""
    with store.read() as view:
        problems = []
        if view.generation and view.dim:
            vector = rng.standard_normal(view.dim).astype(np.float32)
            vector /= np.linalg.norm(vector)
            hits = [rid for rid, _ in view.dense(vector, 20)]
            missing = set(hits) - set(view.passages(hits))
            if missing:
                problems.append(f"generation {view.generation}: FAISS ids {sorted(missing)[:5]} have no chunk row")
        hits = [rid for rid, _ in view.sparse("committee district edition phase", 20)]
        missing = set(hits) - set(view.passages(hits))
        if missing:
            problems.append(f"generation {view.generation}: BM25 ids {sorted(missing)[:5]} have no chunk row")
        return view.generation, problems


def print_table(title: str, rows: Sequence[tuple[str, object]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n{'-' * max(len(title), width + 12)}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    sys.stdout.flush()


def child_env(**overrides: str) -> dict[str, str]:
    """Environment for child processes: this checkout importable (python -m stress.*), quiet progress bars."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return env | {"TQDM_DISABLE": "1"} | overrides


def qa_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "qa", *args]
