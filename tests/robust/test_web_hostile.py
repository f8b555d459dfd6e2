"""Hostile input against the web server (issue 11, web items): each test failed on the server before the fix.
A real `qa serve` in a child process (loopback, extractive, real model and index), driven with gradio_client and
httpx as an outside caller would; the escape's linearity is checked on 1 MB in a child process with a deadline."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import qa
from qa.app.web import respond
from qa.settings import Settings
from tests.app.serving import qa_serve
from tests.helpers import ROOT, SEEDS

pytestmark = pytest.mark.slow

SEED_QUESTION = "Why did Russia decline?"
LOGIN = ("ana", "s3cret-from-a-file")
ESCAPE_DEADLINE_S = 120  # the linear escape takes well under a second on 1 MB; the old regex took hours


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, int]]:
    """`qa serve --auth-file F` (3 files of 50 KB per upload) with its own Gradio temp folder; yields the URL,
    that folder and the server's pid."""
    root = tmp_path_factory.mktemp("hostile-web")
    assert not qa.Assistant(Settings(index_dir=root / "index", backend="extractive")).index([SEEDS]).rejected
    (root / "login").write_text(":".join(LOGIN))
    temp = root / "gradio-tmp"
    env = {"GRADIO_TEMP_DIR": str(temp), "QA_WEB_MAX_FILES": "3", "QA_MAX_FILE_MB": "0.05"}
    with qa_serve(root / "index", "--auth-file", str(root / "login"), env=env) as (url, proc):
        yield url, temp, proc.pid


@pytest.fixture(scope="module")
def client(served: tuple[str, Path, int]) -> Client:
    return Client(served[0], auth=LOGIN, verbose=False)


@contextmanager
def logged_in(url: str) -> Iterator[httpx.Client]:
    """An httpx client holding the page's login cookie."""
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.post("/login", data={"username": LOGIN[0], "password": LOGIN[1]}).status_code == 200
        yield http


# 4. quadratic escape; the question length enforced by the server -----------------------------------------------
def test_the_pages_text_paths_are_linear_on_1_mb_of_adversarial_text():
    code = textwrap.dedent(
        """
        from qa.app.web import answer_markdown, error_markdown, md_escape, sources_html
        from qa.app.web_uploads import report_markdown
        from qa.schema import Answer, Citation, IndexReport, Rejection
        for s in ("\\n " * 500_000, " " * 1_000_000, "\\n1" * 500_000, "\\n \\t1" * 250_000, "[1" * 500_000):
            assert len(md_escape(s)) >= len(s)
            cited = Citation(1, "a", "a:0", s, s, "", "", s, 0, len(s), 1.0)
            assert answer_markdown(Answer(s, s, [cited], support=1.0))
            assert sources_html(Answer(s, s, [cited], support=1.0))
            assert error_markdown(ValueError(s)) and report_markdown(IndexReport(rejected=[Rejection(s, s)]))
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=ESCAPE_DEADLINE_S, cwd=ROOT
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_server_enforces_the_question_length(client: Client, served: tuple[str, Path, int], seeded: qa.Assistant):
    with pytest.raises(AppError, match="the question is 5000 characters; the limit is 1000"):
        client.predict("why " * 1250, api_name="/ask")
    with logged_in(served[0]) as http:
        r = httpx.post(f"{served[0]}/api/ask", json={"question": "\n " * 200_000}, auth=LOGIN, timeout=60)
        assert r.status_code == 422 and "limit is 1000" in r.json()["error"]["message"]
        assert http.get("/config").status_code == 200  # still serving
    *_, (chat, turns, _panel) = respond(seeded, "why " * 1250, [], "extractive", 5)  # the chat's own path
    assert turns[0]["error"] and "the limit is 1000" in chat[-1]["content"]


# 6. one user replacing another's article ---------------------------------------------------------------------
def test_an_upload_never_replaces_another_users_file(client: Client, tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "report.txt").write_text(
        "Otter Census Counts 41 Otters\n\nThe river Lenn holds 41 otters, rangers said.\n"
    )
    (second / "report.txt").write_text(
        "Beaver Dam Approved\n\nThe council of Marsby approved a beaver dam on Friday.\n"
    )
    report, *_ = client.predict([handle_file(str(first / "report.txt"))], api_name="/upload")
    assert "added 1" in report
    report, *_ = client.predict([handle_file(str(second / "report.txt"))], api_name="/upload")
    assert "added 1, updated 0" in report  # a second article, not a replacement of the first
    otters = client.predict("How many otters live in the river Lenn?", api_name="/ask")
    assert "41 otters" in otters["text"]  # the first user's article is still there
    beavers = client.predict("What did the council of Marsby approve?", api_name="/ask")
    assert "beaver dam" in beavers["text"]
    report, *_ = client.predict([handle_file(str(first / "report.txt"))], api_name="/upload")
    assert "added 0" in report and "already indexed: report.txt \\(the same file was uploaded before\\)" in report


# 9. Gradio's temp uploads, the request size, error messages, server paths, --auth in ps, backends, file= -------
def test_gradio_temp_uploads_are_removed_and_requests_capped(client: Client, served: tuple[str, Path, int], tmp_path):
    url, temp, _ = served
    article = tmp_path / "tempcheck-unique.txt"
    article.write_text("Temp Check\n\nThe harbour of Quillon reopened after the storm.\n")
    report, *_ = client.predict([handle_file(str(article))], api_name="/upload")
    assert "added 1" in report
    assert not list(temp.rglob("tempcheck-unique.txt"))  # not kept in GRADIO_TEMP_DIR once indexed

    files = [("files", (f"f{i}.txt", b"x" * 40_000, "text/plain")) for i in range(40)]  # each under the file limit
    with logged_in(url) as http:
        r = http.post("/gradio_api/upload", files=files)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]


def test_api_errors_carry_the_message(client: Client):
    with pytest.raises(AppError, match="history a list"):
        client.predict(SEED_QUESTION, "not a list", api_name="/ask")
    for k in (500, "five"):
        with pytest.raises(AppError, match="k must be between 1 and 20"):
            client.predict(SEED_QUESTION, None, "extractive", k, api_name="/ask")
    with pytest.raises(AppError, match="each history message needs a text content"):
        client.predict(SEED_QUESTION, [{"role": "user"}], api_name="/ask")


def test_citations_name_the_file_not_the_server_path(client: Client):
    out = client.predict(SEED_QUESTION, api_name="/ask")
    assert out["citations"] and {c["source"] for c in out["citations"]} == {
        "russia-stays-away-from-paris-meeting-on-syria.txt"
    }


def test_the_login_comes_from_a_file_not_the_command_line(served: tuple[str, Path, int]):
    url, _, pid = served
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert LOGIN[1] not in cmdline and "--auth-file" in cmdline
    assert httpx.get(f"{url}/config").status_code == 401  # the login is in force
    with pytest.raises(ValueError, match="Could not login"):
        Client(url, auth=(LOGIN[0], "wrong"), verbose=False)


def test_callers_cannot_switch_an_extractive_server_to_a_model(client: Client, served: tuple[str, Path, int]):
    with pytest.raises(AppError, match="backend 'llamacpp' is not offered by this server"):
        client.predict(SEED_QUESTION, None, "llamacpp", api_name="/ask")
    r = httpx.post(f"{served[0]}/api/ask", json={"question": SEED_QUESTION, "backend": "ollama"}, auth=LOGIN)
    assert r.status_code == 422 and "choose from extractive" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "target",
    ["https://1.1.1.1/robots.txt", "HTTP://1.1.1.1/x", "http%3A//1.1.1.1/x", "//1.1.1.1/x", "ftp://1.1.1.1/x"],
)
def test_the_file_route_fetches_no_url(served: tuple[str, Path, int], target: str):
    with logged_in(served[0]) as http:
        for route in ("/gradio_api/file=", "/gradio_api/proxy="):
            r = http.get(route + target)
            assert r.status_code == 403 and "does not fetch URLs" in r.json()["error"]["message"], (route, r.text)


def test_an_upload_naming_a_url_is_not_downloaded(client: Client):
    with pytest.raises(AppError, match="does not fetch URLs"):
        client.predict([handle_file("https://1.1.1.1/article.txt")], api_name="/upload")
