"""Web load: simulated users (each its own gradio_client.Client) ask the running app's `/ask` API on loopback,
back to back, over the extractive backend; reports p50/p95 latency and errors (an exception, a malformed
response, or an answer where an abstention was due and vice versa).

    python -m stress.web_load --users 20 --questions 500          # against `qa serve` in a child process
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import qa
from qa.eval.stats import percentile
from qa.settings import Settings
from stress.common import (
    OUT_OF_SCOPE,
    SEEDS,
    TEST_ARTICLES,
    child_env,
    print_table,
    qa_command,
)
from tests.helpers import free_port

ANSWERABLE = [
    "Why did Russia decline?",
    "Which countries are expected to attend the Paris meeting?",
    "How many residents had to leave because of the wildfire?",
    "What did the Central Bank of Norland do?",
    "Why did dockworkers strike?",
    "What did Noor Haddad promise?",
]


@dataclass
class LoadResult:
    users: int = 0
    questions: int = 0
    think: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)  # the app's own time per answer (timings_ms.total), s
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)

    def rows(self) -> list[tuple[str, object]]:
        return [
            ("simulated users (own Client each)", self.users),
            ("pause between a user's questions (mean, s)", self.think or "none: back to back"),
            ("questions sent / answered", f"{self.questions} / {len(self.latencies)}"),
            ("errors", len(self.errors)),
            ("latency p50 / p95 / max (s)", f"{self.p50:.2f} / {self.p95:.2f} / {max(self.latencies, default=0):.2f}"),
            (
                "  of which answering (server p50 / p95, s)",
                f"{percentile(self.server, 50):.2f} / {percentile(self.server, 95):.2f}",
            ),
            ("throughput (questions/s)", f"{len(self.latencies) / self.seconds:.1f}" if self.seconds else "-"),
            ("wall time (s)", f"{self.seconds:.0f}"),
        ]


def response_problem(question: str, out: object) -> str:
    """Why a /ask response is wrong ("" when it is right)."""
    if not isinstance(out, dict) or not {"text", "abstained", "citations"} <= set(out):
        return f"malformed response {str(out)[:100]!r}"
    if question in OUT_OF_SCOPE and not out["abstained"]:
        return f"answered an out-of-scope question: {out['text'][:80]!r}"
    if question in ANSWERABLE and (out["abstained"] or not out["citations"]):
        return "declined an answerable question"
    return ""


def run_load(url: str, users: int, questions: int, timeout: float = 300, think: float = 0.0) -> LoadResult:
    """`users` threads, each with its own Client, share `questions` questions; a user sends the next one when
    its last is back (after a random pause averaging `think` seconds, like a reader; 0: back to back)."""
    from gradio_client import Client

    result = LoadResult(users=users, questions=questions, think=think)
    pauses = random.Random(0)
    pool = itertools.islice(itertools.cycle(ANSWERABLE + OUT_OF_SCOPE), questions)
    lock = threading.Lock()
    clients = [Client(url, verbose=False) for _ in range(users)]
    start = threading.Barrier(users + 1)

    def user(client: Client) -> None:
        start.wait()
        while True:
            with lock:
                question = next(pool, None)
                pause = pauses.expovariate(1 / think) if think else 0.0
            if question is None:
                return
            time.sleep(pause)
            t0 = time.perf_counter()
            try:
                out = client.submit(question, api_name="/ask").result(timeout=timeout)
                problem = response_problem(question, out)
            except Exception as exc:  # every failure is an error of the run
                problem = f"{type(exc).__name__}: {exc}"
            with lock:
                if problem:
                    result.errors.append(f"{question!r}: {problem}")
                else:
                    result.latencies.append(time.perf_counter() - t0)
                    result.server.append(out.get("timings_ms", {}).get("total", 0) / 1000)

    threads = [threading.Thread(target=user, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout * questions)
    result.seconds = time.perf_counter() - t0
    for client in clients:
        client.close()
    return result


def build_index(index_dir: Path) -> None:
    report = qa.Assistant(Settings(index_dir=index_dir, backend="extractive")).index([SEEDS, TEST_ARTICLES])
    if report.rejected:
        raise RuntimeError(f"test articles rejected: {report.rejected}")


def start_server(index_dir: Path, in_process: bool, env: dict[str, str] | None = None) -> tuple[str, Callable]:
    """The app on a free loopback port: `qa serve` in a child process, or qa.app.web.serve() in this one."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    if in_process:
        from qa.app.web import serve

        app = serve(Settings(index_dir=index_dir, backend="extractive"), port=port, block=False)
        return url, app.close
    cmd = qa_command("serve", "--index", str(index_dir), "--port", str(port), "--backend", "extractive")
    proc = subprocess.Popen(cmd, env=child_env(**(env or {})), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}config", timeout=5) as response:
                json.loads(response.read())
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"qa serve did not start: {proc.communicate()[1][-500:]!r}") from None
            time.sleep(0.5)

    def stop() -> None:
        proc.terminate()
        proc.wait(timeout=30)

    return url, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--p95-limit", type=float, default=2.0, help="fail when p95 latency (s) is above this")
    parser.add_argument("--think", type=float, default=0.0, help="mean pause (s) before each user's next question")
    parser.add_argument("--in-process", action="store_true", help="serve from this process (default: `qa serve`)")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the `qa serve` process, e.g. OMP_NUM_THREADS=1",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="stress-web-"))
    try:
        build_index(workdir / "index")
        env = dict(item.split("=", 1) for item in args.server_env)
        url, stop = start_server(workdir / "index", args.in_process, env)
        try:
            run_load(url, 1, 2)  # warm-up: first-request costs are not what is measured
            result = run_load(url, args.users, args.questions, think=args.think)
        finally:
            stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    where = "in this process" if args.in_process else "`qa serve` child process"
    print_table(
        f"Web load: /ask on loopback ({where}{', ' + ' '.join(args.server_env) if args.server_env else ''})",
        [*result.rows(), ("p95 limit (s)", args.p95_limit)],
    )
    for error in result.errors[:20]:
        print(f"FAIL {error}")
    if result.p95 > args.p95_limit:
        print(f"FAIL p95 latency {result.p95:.2f}s is above {args.p95_limit}s")
    return 1 if result.errors or result.p95 > args.p95_limit or len(result.latencies) != args.questions else 0


if __name__ == "__main__":
    sys.exit(main())
