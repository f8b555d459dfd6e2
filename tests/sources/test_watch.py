"""`qa watch` on a folder, end to end: real subprocesses (the watcher and the web server), the real model and
index. A server started before an article arrives answers with a citation to it, without a restart."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

import qa
from qa.settings import Settings
from qa.sources.watch import watch
from qa.store import faiss_store
from tests.helpers import DATA, free_port

pytestmark = pytest.mark.slow

NEW_TITLE = "Glass Footbridge Opens in Tarnholm"
NEW_ARTICLE = (
    f"{NEW_TITLE}\n\n"
    "The harbour city of Tarnholm opened a glass footbridge across the Vell estuary on Monday. "
    "The footbridge is 412 metres long and was designed by the architect Ilse Varnow. "
    "Officials expect about 9,000 pedestrians to cross it every day.\n"
)
QUESTION = "How long is the glass footbridge in Tarnholm?"
WAIT_S = 90  # the bound on every wait below


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def wait_until(condition, what: str, log: Path | None = None, seconds: float = WAIT_S):
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"gave up waiting for {what}:\n{read(log) if log else ''}"
        time.sleep(0.25)


def server_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
            return json.loads(response.read())["title"] == "news-qa"
    except OSError:
        return False


def test_watch_a_folder_while_a_server_answers(tmp_path: Path):
    inbox, index = tmp_path / "inbox", tmp_path / "index"
    inbox.mkdir()
    shutil.copy(DATA / "articles" / "harbor-bridge.txt", inbox)
    assert len(qa.Assistant(Settings(index_dir=index, backend="extractive")).index([inbox]).added) == 1

    watch_log, serve_log = tmp_path / "watch.log", tmp_path / "serve.log"
    port = free_port()
    with open(watch_log, "w") as wout, open(serve_log, "w") as sout:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "qa", "watch", str(inbox), "--index", str(index), "--debounce", "0.5"],
            stdout=wout,
            stderr=subprocess.STDOUT,
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qa",
                "serve",
                "--index",
                str(index),
                "--backend",
                "extractive",
                "--port",
                str(port),
            ],
            stdout=sout,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "folders: added 0, updated 0, unchanged 1" in read(watch_log), "the first run", watch_log)
        wait_until(lambda: server_up(port) or server.poll() is not None, "the server", serve_log)
        assert server.poll() is None, read(serve_log)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def cites_the_new_article() -> list[dict]:
            answer = client.predict(QUESTION, api_name="/ask")
            return [c for c in answer["citations"] if c["title"] == NEW_TITLE and c["quote"] in NEW_ARTICLE]

        assert not cites_the_new_article()  # not known yet

        # A bad file is rejected with its reason, and the watch goes on.
        (inbox / "broken.json").write_text('{"title": "Half written", "text": ')
        wait_until(lambda: "broken.json: malformed JSON" in read(watch_log), "the rejection", watch_log)
        assert watcher.poll() is None

        dropped = time.monotonic()
        (inbox / "tarnholm-footbridge.txt").write_text(NEW_ARTICLE, encoding="utf-8")

        citation = wait_until(cites_the_new_article, "an answer citing the new article", watch_log)[0]
        print(f"dropped file answerable by the running server after {time.monotonic() - dropped:.1f}s")
        assert Path(citation["source"]).name == "tarnholm-footbridge.txt"
        log = read(watch_log)
        assert f"added     {NEW_TITLE}" in log and log.count("broken.json: malformed JSON") == 1  # said once

        (inbox / "tarnholm-footbridge.txt").unlink()  # a removed file leaves the index
        wait_until(lambda: "removed 1" in read(watch_log), "the removal", watch_log)
        assert not cites_the_new_article()

        started = time.monotonic()
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0, read(watch_log)
        assert time.monotonic() - started < 15
        assert read(watch_log).rstrip().endswith("stopped")
    finally:
        for proc in (watcher, server):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    store = faiss_store(index)
    assert store.check() == [] and store.stats()["articles"] == 1


def test_a_burst_of_files_is_one_run(tmp_path: Path):
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    settings = Settings(index_dir=inbox / "index", backend="extractive", lock_timeout_s=5)  # inside the folder
    lines: list[str] = []
    stop = threading.Event()
    runner = threading.Thread(
        target=watch, args=([inbox], settings), kwargs={"debounce_s": 1.0, "stop": stop, "say": lines.append}
    )
    runner.start()
    try:
        wait_until(lambda: any("folders: added 0" in line for line in lines), "the first run")
        for i in range(5):  # a burst: five files, 0.1 s apart
            (inbox / "sub" / f"note-{i}.md").write_text(
                f"# Note {i}\n\nThe depot in Halden received {i + 3} new trams."
            )
            (inbox / ".note.md.swp").write_text("editor state")  # hidden: ignored
            time.sleep(0.1)
        wait_until(lambda: any("added 5" in line for line in lines), "the burst")
        time.sleep(2)  # index writes inside the watched folder cause no further runs
        assert sum("folders:" in line for line in lines) == 2 and not any("rejected  " in x for x in lines), lines
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive() and lines[-1] == "stopped"
    assert faiss_store(settings.index_dir).check() == []
