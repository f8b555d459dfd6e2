"""Crash consistency: kill -9 the real indexer (`python -m qa index`) at random moments while it re-indexes
articles whose text changes between version A and B, and check after every kill that the index loads, passes
its integrity check, holds every article at its old or its new version (none lost, none extra) and answers a
search; a rerun then finishes the job.

    python -m stress.crash --kills 50
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from qa.store import faiss_store
from qa.store.codec import decode_vector
from stress.common import child_env, print_table, qa_command, write_version


@dataclass
class CrashResult:
    kills: int = 0
    attempts: int = 0
    finished_before_kill: int = 0
    killed_before_first_commit: int = 0
    killed_mid_job: int = 0  # some commits of the run landed, not all
    killed_after_last_commit: int = 0
    checks: int = 0
    articles: int = 0
    articles_lost: int = 0  # summed over every check
    wrong_versions: int = 0
    reruns_finished: int = 0
    seconds_full_run: float = 0.0
    seconds_first_commit: float = 0.0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, object]]:
        return [
            ("kill -9 (landed while running)", self.kills),
            ("  before the run's first commit", self.killed_before_first_commit),
            ("  between commits (mid-job)", self.killed_mid_job),
            ("  after the last commit", self.killed_after_last_commit),
            ("runs that finished before their kill (all complete)", self.finished_before_kill),
            ("articles in the corpus", self.articles),
            ("index checks (load + integrity + versions)", self.checks),
            ("articles lost (all checks)", self.articles_lost),
            ("articles at neither old nor new version", self.wrong_versions),
            ("reruns that finished the job", self.reruns_finished),
            ("full re-index / its first commit (s)", f"{self.seconds_full_run:.1f} / {self.seconds_first_commit:.1f}"),
            ("wall time (s)", f"{self.seconds:.0f}"),
            ("failures", len(self.failures)),
        ]


def verify(index: Path, versions: dict[str, set[str]], result: CrashResult, when: str) -> dict[str, str]:
    """Load the index as a reader would and check it; returns {article id: content hash} found."""
    result.checks += 1
    try:
        store = faiss_store(index)
        problems = store.check()
        found = {aid: h for aid, (h, _) in store.article_hashes().items()}
        with store.read() as view:  # a search answers: the first chunk's own vector finds that chunk
            row = view.conn.execute("SELECT id, vector FROM chunks ORDER BY id LIMIT 1").fetchone()
            if row is not None:
                hits = view.dense(decode_vector(row[1], view.dim), 1)
                if not hits or hits[0][0] != row[0]:
                    problems.append(f"searching chunk {row[0]}'s own vector found {hits}")
    except Exception as exc:  # the whole point: any failure to load is a finding, reported with its moment
        result.failures.append(f"{when}: index did not load: {type(exc).__name__}: {exc}")
        return {}
    lost = sorted(set(versions) - set(found))
    extra = sorted(set(found) - set(versions))
    wrong = sorted(aid for aid, h in found.items() if aid in versions and h not in versions[aid])
    result.articles_lost += len(lost)
    result.wrong_versions += len(wrong)
    problems += [f"{len(lost)} articles lost"] * bool(lost) + [f"{len(extra)} unexpected articles"] * bool(extra)
    problems += [f"{len(wrong)} articles at neither version"] * bool(wrong)
    if problems:
        result.failures.append(f"{when}: {'; '.join(problems)}")
    return found


def _wait_for_commits(index: Path, generation: int, proc: subprocess.Popen, deadline: float) -> None:
    """Return once the index reaches `generation` (or the indexer exits, or the deadline passes)."""
    conn = sqlite3.connect(index / "qa.sqlite", timeout=5)
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(sqlite3.OperationalError):  # the schema may not exist yet
                row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                if row and int(row[0]) >= generation:
                    return
            time.sleep(0.01)
    finally:
        conn.close()


def run_to_end(corpus: Path, index: Path, env: dict[str, str], timeout: float = 600) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        qa_command("index", str(corpus), "--index", str(index), "--quiet"),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, (proc.stdout + proc.stderr).strip(), time.monotonic() - started


def run_crash(
    workdir: Path,
    kills: int = 50,
    articles: int = 40,
    seed: int = 1,
    commit_every: int = 8,
    finish_every: int = 10,
    time_limit: float = 1800,
) -> CrashResult:
    """Kill the indexer `kills` times (bounded by 3x attempts and `time_limit` seconds) and check each time."""
    rng = random.Random(seed)
    result = CrashResult(articles=articles)
    started = time.monotonic()
    corpus, index = workdir / "corpus", workdir / "index"
    env = child_env(QA_COMMIT_EVERY_CHUNKS=str(commit_every), QA_LOCK_TIMEOUT_S="60")
    hashes = [write_version(corpus, articles, 1), write_version(corpus, articles, 0)]  # B, then A on disk
    versions = {aid: {hashes[0][aid], hashes[1][aid]} for aid in hashes[0]}

    # The first full index, timed: until its first commit (start-up, model load, first batch) and to the end.
    t0 = time.monotonic()
    log = workdir / "indexer.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(qa_command("index", str(corpus), "--index", str(index)), env=env, stdout=fh, stderr=fh)
    while proc.poll() is None and not (index / "qa.sqlite").exists():
        time.sleep(0.01)
    _wait_for_commits(index, 1, proc, t0 + 600)
    result.seconds_first_commit = time.monotonic() - t0
    rc, out = proc.wait(timeout=600), log.read_text()
    result.seconds_full_run = time.monotonic() - t0
    commits = faiss_store(index).generation()  # how many commits one full re-index makes
    if rc != 0 or verify(index, versions, result, "first full index") != hashes[1]:
        result.failures.append(f"the first full index did not finish cleanly (rc {rc}): {out[-300:]}")
        return result

    load = result.seconds_first_commit
    version = 0
    while result.kills < kills and result.attempts < 3 * kills and time.monotonic() - started < time_limit:
        # Each version is the target twice in a row: the second run is a rerun of a killed job.
        version = (result.attempts // 2 + 1) % 2
        target = write_version(corpus, articles, version)
        result.attempts += 1
        generation = faiss_store(index).generation()
        log = workdir / "indexer.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                qa_command("index", str(corpus), "--index", str(index), "--quiet"), env=env, stdout=fh, stderr=fh
            )
        # A fifth of the kills at a random moment of start-up and model loading; the rest after a random number
        # of the run's commits plus up to 0.3 s, so they land in embedding, FAISS writes and SQLite commits.
        t0 = time.monotonic()
        if rng.random() < 0.2:
            delay = rng.uniform(0.2, load)
        else:
            _wait_for_commits(index, generation + rng.randint(1, max(1, commits - 1)), proc, t0 + 300)
            delay = time.monotonic() - t0 + rng.uniform(0, 0.3)
        try:
            proc.wait(timeout=max(0.0, delay - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            result.kills += 1
            when = f"kill {result.kills} at {delay:.1f}s (version {'AB'[version]})"
            found = verify(index, versions, result, when)
            at_target = sum(found.get(aid) == h for aid, h in target.items())
            if faiss_store(index).generation() == generation:
                result.killed_before_first_commit += 1
            elif at_target < len(target):
                result.killed_mid_job += 1
            else:
                result.killed_after_last_commit += 1
            if finish_every and result.kills % finish_every == 0:
                _finish(corpus, index, env, versions, target, result, f"rerun after kill {result.kills}")
            continue
        result.finished_before_kill += 1
        if proc.returncode != 0:
            result.failures.append(f"an unkilled run failed (rc {proc.returncode}): {log.read_text()[-300:]}")
        if verify(index, versions, result, "a run that finished") != target:
            result.failures.append("a run that finished left articles at the old version")
    _finish(corpus, index, env, versions, write_version(corpus, articles, version), result, "final rerun")
    if result.kills < kills:
        result.failures.append(f"only {result.kills} of {kills} kills landed within the bounds")
    result.seconds = time.monotonic() - started
    return result


def _finish(
    corpus: Path,
    index: Path,
    env: dict[str, str],
    versions: dict[str, set[str]],
    target: dict[str, str],
    result: CrashResult,
    when: str,
) -> None:
    """A rerun finishes the job: every article at the target version, integrity intact."""
    rc, out, _ = run_to_end(corpus, index, env)
    found = verify(index, versions, result, when)
    if rc != 0 or found != target:
        stale = sum(found.get(aid) != h for aid, h in target.items())
        result.failures.append(f"{when}: rc {rc}, {stale} articles not at the new version: {out[-300:]}")
    else:
        result.reruns_finished += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--articles", type=int, default=40)
    parser.add_argument("--commit-every", type=int, default=8, help="QA_COMMIT_EVERY_CHUNKS of the indexer")
    parser.add_argument("--finish-every", type=int, default=10, help="a run to completion after every N kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=1800, help="stop killing after this many seconds")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="stress-crash-"))
    try:
        result = run_crash(
            workdir, args.kills, args.articles, args.seed, args.commit_every, args.finish_every, args.time_limit
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table("Crash consistency: kill -9 during re-index", result.rows())
    for failure in result.failures[:20]:
        print(f"FAIL {failure}")
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
