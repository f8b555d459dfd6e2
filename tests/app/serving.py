"""A real `qa serve` in a child process on a free loopback port, for the HTTP API and web hardening tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers import ROOT, free_port

START_DEADLINE_S = 180.0


@contextmanager
def qa_serve(index_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m qa serve --index DIR --port P --backend extractive ARGS`; yields its URL once /api/health answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "qa", "serve", "--index", str(index_dir), "--port", str(port)]
    cmd += ["--backend", "extractive", *args]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    child_env |= {"PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"} | (env or {})
    log_path = index_dir.parent / f"serve-{port}.log"  # a file, not a pipe nobody reads (it could fill and block)
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=child_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=30)
                raise RuntimeError(f"qa serve did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
