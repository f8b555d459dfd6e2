"""Concurrency: one process re-indexes changing articles over and over while threads (sharing one Assistant) and
other processes ask questions. Zero errors allowed, and every answer must come from one consistent snapshot:
citations from retrieved passages quoting them exactly, one version per article within an answer, and every
FAISS/BM25 hit of a snapshot backed by its chunk row. Then two indexers started at once: one waits or fails
clearly, and the index stays intact.

    python -m stress.concurrency --questions 1000 --reindex 10
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import qa
from qa.eval.stats import percentile
from qa.settings import Settings
from qa.store import faiss_store
from stress.common import (
    OUT_OF_SCOPE,
    child_env,
    citation_problems,
    print_table,
    probe_snapshot,
    qa_command,
    question_about,
    snapshot_problems,
    write_version,
)


@dataclass
class Tally:
    """What one reader saw."""

    asked: int = 0
    answered: int = 0
    abstained: int = 0
    during_reindex: int = 0
    generations: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def merge(self, other: Tally) -> None:
        self.asked += other.asked
        self.answered += other.answered
        self.abstained += other.abstained
        self.during_reindex += other.during_reindex
        self.generations |= other.generations
        self.latencies += other.latencies
        self.errors += other.errors
        self.problems += other.problems

    def to_json(self) -> str:
        data = self.__dict__ | {"generations": sorted(self.generations)}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Tally:
        data = json.loads(text)
        return cls(**(data | {"generations": set(data["generations"])}))


def ask_many(
    assistant: qa.Assistant, count: int, articles: int, seed: int, busy: threading.Event | None = None
) -> Tally:
    """Ask `count` questions (one in ten out of scope) and check each answer and one snapshot probe."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    tally = Tally()
    store = assistant.store()
    _ = assistant.embedder  # loaded before the clock starts
    for _ in range(count):
        out_of_scope = rng.random() < 0.1
        question = (
            rng.choice(OUT_OF_SCOPE) if out_of_scope else question_about(rng.randrange(articles), 1 + rng.randrange(12))
        )
        tally.asked += 1
        started = time.perf_counter()
        try:
            answer = assistant.ask(question)
            generation, probe = probe_snapshot(store, nrng)
        except Exception as exc:  # every error counts; the run is about there being none
            tally.errors.append(f"{question!r}: {type(exc).__name__}: {exc}")
            continue
        tally.latencies.append(time.perf_counter() - started)
        tally.during_reindex += bool(busy is None or busy.is_set())
        tally.generations.add(generation)
        tally.answered += 1
        tally.abstained += answer.abstained
        problems = citation_problems(answer, strict_markers=True) + snapshot_problems(answer) + probe
        if out_of_scope and not answer.abstained:
            problems.append(f"out-of-scope question answered: {answer.text[:80]!r}")
        if not out_of_scope and answer.abstained:
            problems.append(f"in-scope question declined: {question!r}")
        tally.problems += [f"{question!r}: {p}" for p in problems]
    return tally


def reindex_forever(index: Path, corpus: Path, articles: int, runs: int, stop: Path, max_runs: int) -> int:
    """The re-indexing process: at least `runs` runs, each changing every article, until `stop` appears."""
    assistant = qa.Assistant(Settings(index_dir=index, backend="extractive", commit_every_chunks=8))
    _ = assistant.embedder
    print(json.dumps({"ready": True}), flush=True)
    run = 0
    while run < runs or (not stop.exists() and run < max_runs):
        run += 1
        write_version(corpus, articles, 100 + run)
        report = assistant.index([corpus])
        print(json.dumps({"run": run, "summary": report.summary(), "updated": len(report.updated)}), flush=True)
    return 0


@dataclass
class ConcurrencyResult:
    readers: str = ""
    tally: Tally = field(default_factory=Tally)
    reindex_runs: int = 0
    reindex_failed: str = ""
    integrity: list[str] = field(default_factory=list)
    two_indexers: list[tuple[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, object]]:
        t = self.tally
        return [
            ("readers", self.readers),
            ("questions asked / answered", f"{t.asked} / {t.answered}"),
            ("  asked while a re-index ran", t.during_reindex),
            ("  abstained (out of scope)", t.abstained),
            ("re-index runs (all articles changed each run)", self.reindex_runs),
            (
                "index generations seen by readers",
                f"{len(t.generations)} ({min(t.generations, default=0)}..{max(t.generations, default=0)})",
            ),
            ("errors", len(t.errors)),
            ("inconsistent answers / snapshots", len(t.problems)),
            (
                "latency p50 / p95 / max (s)",
                f"{percentile(t.latencies, 50):.2f} / {percentile(t.latencies, 95):.2f}"
                f" / {max(t.latencies, default=0):.2f}",
            ),
            ("index check after the run", "ok" if not self.integrity else "; ".join(self.integrity)),
            *self.two_indexers,
            ("wall time (s)", f"{self.seconds:.0f}"),
            ("failures", len(self.failures)),
        ]


def run_concurrency(
    workdir: Path,
    questions: int = 1000,
    reindex: int = 10,
    threads: int = 3,
    processes: int = 2,
    articles: int = 24,
    seed: int = 1,
    time_limit: float = 3600,
    two_indexers: bool = True,
) -> ConcurrencyResult:
    """Questions from `threads` threads here and `processes` reader processes while another process re-indexes."""
    started = time.monotonic()
    result = ConcurrencyResult(readers=f"{threads} threads (one shared Assistant) + {processes} processes")
    corpus, index, stop = workdir / "corpus", workdir / "index", workdir / "stop"
    stop.unlink(missing_ok=True)
    write_version(corpus, articles, 0)
    assistant = qa.Assistant(Settings(index_dir=index, backend="extractive"))
    assistant.index([corpus])
    readers = threads + processes
    shares = [questions // readers + (i < questions % readers) for i in range(readers)]

    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stress.concurrency",
            "--reindexer",
            "--index",
            str(index),
            "--corpus",
            str(corpus),
            "--articles",
            str(articles),
            "--reindex",
            str(reindex),
            "--stop",
            str(stop),
        ],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready = writer.stdout.readline() if writer.stdout else ""  # questions start once it is about to write
    if "ready" not in ready:
        result.failures.append(f"the re-indexer did not start: {ready}")
    busy = threading.Event()
    busy.set()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stress.concurrency",
                "--reader",
                "--index",
                str(index),
                "--questions",
                str(shares[threads + i]),
                "--articles",
                str(articles),
                "--seed",
                str(seed * 1000 + threads + i),
            ],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    tallies: list[Tally] = []
    workers = [
        threading.Thread(
            target=lambda i=i: tallies.append(ask_many(assistant, shares[i], articles, seed * 1000 + i, busy))
        )
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=max(1.0, time_limit - (time.monotonic() - started)))
    for t in tallies:
        result.tally.merge(t)
    if len(tallies) < threads:
        result.failures.append(f"{threads - len(tallies)} reader threads did not finish within the time limit")
    for child in children:
        try:
            out, err = child.communicate(timeout=max(1.0, time_limit - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            child.kill()
            out, err = child.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if child.returncode != 0 or not lines:
            result.failures.append(f"a reader process failed (rc {child.returncode}): {err[-300:]}")
        else:
            result.tally.merge(Tally.from_json(lines[-1]))
    stop.touch()
    try:
        out, err = writer.communicate(timeout=max(60.0, time_limit - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        writer.kill()
        out, err = writer.communicate()
    busy.clear()
    runs = [json.loads(line) for line in out.splitlines() if line.startswith('{"run"')]
    result.reindex_runs = len(runs)
    if writer.returncode != 0 or len(runs) < reindex:
        result.failures.append(f"the re-indexer failed after {len(runs)} runs (rc {writer.returncode}): {err[-300:]}")
    result.integrity = faiss_store(index).check()
    t = result.tally
    result.failures += [f"error: {e}" for e in t.errors[:10]] + [f"inconsistent: {p}" for p in t.problems[:10]]
    result.failures += [f"index check: {p}" for p in result.integrity]
    if t.asked != questions:
        result.failures.append(f"{t.asked} of {questions} questions were asked")
    if two_indexers:
        two_rows, two_failures = run_two_indexers(workdir / "two")
        result.two_indexers, result.failures = two_rows, result.failures + two_failures
    result.seconds = time.monotonic() - started
    return result


def run_two_indexers(workdir: Path) -> tuple[list[tuple[str, object]], list[str]]:
    """Two `qa index` processes started at once on one index: (a) with the default wait both finish, one after
    the other; (b) with no wait the loser (if any) fails with IndexLocked's message; (c) an indexer facing a
    held lock fails clearly and changes nothing. The index passes its check after each."""
    rows: list[tuple[str, object]] = []
    failures: list[str] = []
    left, right = workdir / "left", workdir / "right"
    write_version(left, 6, 0)
    write_version(right, 6, 0)
    for i, path in enumerate(sorted(right.iterdir())):  # other articles than `left` (no duplicates)
        path.write_text(path.read_text().replace("district", f"ward {i} of district"))

    def both(index: Path, timeout: str) -> list[subprocess.CompletedProcess]:
        env = child_env(QA_LOCK_TIMEOUT_S=timeout)
        procs = [
            subprocess.Popen(
                qa_command("index", str(folder), "--index", str(index), "--quiet"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for folder in (left, right)
        ]
        outputs = [p.communicate(timeout=600) for p in procs]
        return [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs, strict=True)]

    for label, timeout in (("(a) two indexers at once, default wait", "600"), ("(b) two at once, no wait", "0")):
        index = workdir / f"index-{timeout}"
        runs = both(index, timeout)
        ok = [r for r in runs if r.returncode == 0]
        refused = [r for r in runs if r.returncode != 0 and "another indexer is writing" in r.stderr]
        unclear = [r for r in runs if r.returncode != 0 and r not in refused]
        problems = faiss_store(index).check() if ok else ["no indexer finished"]
        articles = faiss_store(index).stats()["articles"] if ok else 0
        rows.append(
            (
                label,
                f"{len(ok)} finished, {len(refused)} refused clearly, {articles} articles, check {problems or 'ok'}",
            )
        )
        if unclear or problems or articles != 6 * len(ok) or (timeout != "0" and len(ok) != 2):
            failures.append(f"{label}: {[(r.returncode, r.stderr[-200:]) for r in runs]} {problems}")

    index = workdir / "index-600"
    before = faiss_store(index).article_hashes()
    write_version(left, 6, 1)
    with faiss_store(index).write_lock():
        held = subprocess.run(
            qa_command("index", str(left), "--index", str(index)),
            env=child_env(QA_LOCK_TIMEOUT_S="1"),
            capture_output=True,
            text=True,
            timeout=600,
        )
    unchanged = faiss_store(index).article_hashes() == before and not faiss_store(index).check()
    message = held.stderr.strip().splitlines()[-1] if held.stderr.strip() else ""
    rows.append(("(c) indexer facing a held lock", f"rc {held.returncode}: {message}"))
    if held.returncode != 1 or "another indexer is writing" not in message or not unchanged:
        failures.append(f"(c) a held lock: rc {held.returncode}, {message!r}, index unchanged: {unchanged}")
    return rows, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--reindex", type=int, default=10, help="re-index runs at least (more while readers ask)")
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--articles", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=3600)
    parser.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reindexer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reader:
        assistant = qa.Assistant(Settings(index_dir=args.index, backend="extractive"))
        print(ask_many(assistant, args.questions, args.articles, args.seed).to_json())
        return 0
    if args.reindexer:
        return reindex_forever(args.index, args.corpus, args.articles, args.reindex, args.stop, 5 * args.reindex)
    workdir = Path(tempfile.mkdtemp(prefix="stress-concurrency-"))
    try:
        result = run_concurrency(
            workdir,
            args.questions,
            args.reindex,
            args.threads,
            args.processes,
            args.articles,
            args.seed,
            args.time_limit,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table("Concurrency: questions while re-indexing", result.rows())
    for failure in result.failures[:20]:
        print(f"FAIL {failure}")
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
