"""The web chat: a real Gradio server on a loopback port, driven with gradio_client; plus its escaping and
upload safety rules. Backend "extractive" (no LLM), the real model and index."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, AuthenticationError

import qa
from qa.app.uploads import safe_name, save_uploads
from qa.app.web import md_escape, respond, serve, sources_html
from qa.schema import Answer, Citation, Passage
from qa.settings import Settings
from tests.helpers import DATA, SEEDS, free_port

SEED_QUESTION = "Why did Russia decline?"
NEW_ARTICLE = (
    "Glass Footbridge Opens in Tarnholm\n\n"
    "The harbour city of Tarnholm opened a glass footbridge across the Vell estuary on Monday. "
    "The footbridge is 412 metres long and was designed by the architect Ilse Varnow. "
    "Officials expect about 9,000 pedestrians to cross it every day.\n"
)


def start_server(index_dir: Path, auth: tuple[str, str] | None = None) -> tuple[str, object]:
    """The real `serve()` on a free loopback port, not blocking; returns its URL and the app to close."""
    port = free_port()
    settings = Settings(index_dir=index_dir, backend="extractive", lock_timeout_s=5)
    app = serve(settings, port=port, auth=auth, block=False)
    return f"http://127.0.0.1:{port}/", app


@pytest.fixture(scope="module")
def web_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server over a fresh index of the seed and test articles; shut down after the module's tests."""
    index_dir = tmp_path_factory.mktemp("web") / "index"
    report = qa.Assistant(Settings(index_dir=index_dir, backend="extractive")).index([SEEDS, DATA / "articles"])
    assert not report.rejected, report.rejected
    url, app = start_server(index_dir)
    try:
        yield url
    finally:
        app.close()


@pytest.mark.slow
def test_ask_follow_up_upload_and_cite_the_new_article(web_url: str, tmp_path: Path):
    client = Client(web_url, verbose=False)

    first = client.predict(SEED_QUESTION, api_name="/ask")  # the one-argument call works
    assert first["abstained"] is False and "one-sided" in first["text"] and "[1]" in first["text"]
    assert {"n", "title", "source", "url", "published", "quote", "start", "end", "score"} <= set(first["citations"][0])
    assert any("no representatives of the Syrian government" in c["quote"] for c in first["citations"])
    assert set(first) >= {"text", "abstained", "citations", "standalone_question", "support", "timings_ms"}

    history = [{"role": "user", "content": SEED_QUESTION}, {"role": "assistant", "content": first["text"]}]
    follow = client.predict("And what did Juppe say?", history, "extractive", 5, api_name="/ask")
    assert SEED_QUESTION in follow["standalone_question"]  # read together with the conversation
    assert follow["abstained"] is False and follow["citations"]

    article = tmp_path / "tarnholm bridge.txt"
    article.write_text(NEW_ARTICLE, encoding="utf-8")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "notes.exe").write_bytes(b"MZ\x00\x01")
    files = [handle_file(str(tmp_path / name)) for name in ("tarnholm bridge.txt", "empty.txt", "notes.exe")]
    report, stats, _ = client.predict(files, api_name="/upload")
    assert "added 1" in report and "rejected 2" in report
    assert "Glass Footbridge Opens in Tarnholm" in report and "/tmp" not in report  # no server paths shown
    assert "empty file" in report and "unsupported file type" in report
    assert "9 articles" in stats

    answer = client.predict("How long is the glass footbridge in Tarnholm?", api_name="/ask")
    assert answer["abstained"] is False and "412 metres" in answer["text"]
    cited = [c for c in answer["citations"] if "412 metres" in c["quote"]]
    assert cited and cited[0]["title"] == "Glass Footbridge Opens in Tarnholm"
    assert cited[0]["source"] == "tarnholm_bridge.txt"  # saved under a safe name, shown without the server path
    assert cited[0]["quote"] in NEW_ARTICLE and cited[0]["end"] - cited[0]["start"] == len(cited[0]["quote"])


@pytest.mark.slow
def test_abstention_is_an_answer_and_errors_are_clear(web_url: str):
    client = Client(web_url, verbose=False)
    out = client.predict("Who won the 2010 World Cup?", api_name="/ask")
    assert out["abstained"] is True and out["text"] == "The articles don't say." and out["citations"] == []

    with pytest.raises(AppError, match="backend 'no-such-backend' is not offered by this server"):
        client.predict(SEED_QUESTION, None, "no-such-backend", api_name="/ask")
    assert client.predict(SEED_QUESTION, api_name="/ask")["citations"]  # still serving


@pytest.mark.slow
def test_several_users_are_answered_at_once(web_url: str):
    clients = [Client(web_url, verbose=False) for _ in range(3)]
    jobs = [c.submit(q, api_name="/ask") for c in clients for q in (SEED_QUESTION, "Who won the 2010 World Cup?")]
    results = [job.result(timeout=120) for job in jobs]
    assert [r["abstained"] for r in results] == [False, True] * 3


@pytest.mark.slow
def test_login_is_required_when_auth_is_set(tmp_path: Path):
    url, app = start_server(tmp_path / "index", auth=("ana", "s3cret"))
    try:
        with pytest.raises(AuthenticationError, match="credentials were not provided"):
            Client(url, verbose=False)
        with pytest.raises(ValueError, match="Could not login"):
            Client(url, auth=("ana", "wrong"), verbose=False)
        with pytest.raises(AppError, match="no index"):  # logged in: the app answers (here: no index yet)
            Client(url, auth=("ana", "s3cret"), verbose=False).predict(SEED_QUESTION, api_name="/ask")
    finally:
        app.close()


@pytest.mark.slow
def test_qa_serve_command_starts_the_app(tmp_path: Path):
    port = free_port()
    cmd = [sys.executable, "-m", "qa", "serve", "--index", str(tmp_path / "i"), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--backend", "extractive"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5) as response:
                    config = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"qa serve did not start: {proc.stdout.read().decode() if proc.poll() is not None else ''}")
        assert config["title"] == "news-qa"
        assert {"ask", "timeline", "digest", "upload"} <= {d.get("api_name") for d in config["dependencies"]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_missing_index_is_reported_and_an_upload_creates_it_live(tmp_path: Path):
    url, app = start_server(tmp_path / "new-index")
    try:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="no index"):
            client.predict(SEED_QUESTION, api_name="/ask")
        report, stats, _ = client.predict([handle_file(str(next(SEEDS.glob("*.txt"))))], api_name="/upload")
        assert "added 1" in report and "1 article ·" in stats
        assert "one-sided" in client.predict(SEED_QUESTION, api_name="/ask")["text"]  # no restart
    finally:
        app.close()


def test_chat_turn_streams_then_shows_sources_errors_and_abstentions(seeded: qa.Assistant, tmp_path: Path):
    steps = list(respond(seeded, SEED_QUESTION, [], "extractive", 5))
    chat, turns, panel = steps[-1]
    assert chat[0] == {"role": "user", "content": "Why did Russia decline?"}
    assert "one-sided" in chat[1]["content"]
    assert "<sup>[1]</sup>" in chat[1]["content"]
    assert "<mark>" in panel and "no representatives of the Syrian government" in panel

    *_, (chat, turns, panel) = respond(seeded, "And what did Juppe say?", turns, "extractive", 5)
    assert len(turns) == 2 and len(chat) == 4 and not turns[1]["error"]

    *_, (chat, turns, panel) = respond(seeded, "Who won the 2010 World Cup?", turns, "extractive", 5)
    assert "The articles don't say" in chat[-1]["content"] and "⚠️" not in chat[-1]["content"]
    assert "No indexed passage was found to answer it" in panel

    empty = qa.Assistant(Settings(index_dir=tmp_path / "none", backend="extractive"))
    *_, (chat, turns, panel) = respond(empty, SEED_QUESTION, [], "extractive", 5)
    assert chat[-1]["content"].startswith("⚠️ **Could not answer:**") and "no index" in chat[-1]["content"]
    assert turns[0]["error"] is True


def test_the_pages_date_answers_as_of_that_day(tmp_path: Path):
    from tests.answer.test_as_of import ARTICLES

    dated = qa.Assistant(Settings(index_dir=tmp_path / "dated", backend="extractive"))
    dated.index_articles(ARTICLES)
    question = "What budget did the Millbrook city council approve?"
    *_, (chat, turns, panel) = respond(dated, question, [], "extractive", 5, "2023-01-20")
    assert "5 million" in chat[-1]["content"] and "7 million" not in panel  # February's article is not used yet
    *_, (chat, turns, panel) = respond(dated, question, [], "extractive", 5, "next thursday-ish")
    assert chat[-1]["content"].startswith("⚠️ **Could not answer:**") and "not a date" in chat[-1]["content"]


def test_article_text_is_escaped_and_the_quote_highlighted():
    text = "<script>alert(1)</script> Intro. The **bold** claim [x](javascript:alert(1)) holds. Outro $$x$$."
    quote = "The **bold** claim [x](javascript:alert(1)) holds."
    start = text.index(quote)
    passage = Passage(
        "a:0", "a", "<img src=x onerror=alert(1)>", "/srv/secret/path/a.txt", "", "2024-01-02", text, 0, len(text), ()
    )
    citation = Citation(
        1,
        "a",
        "a:0",
        passage.title,
        passage.source,
        "javascript:alert(1)",
        "2024-01-02",
        quote,
        start,
        start + len(quote),
        0.9,
    )
    answer = Answer("q <b>", f"{quote} [1]", [citation], passages=[passage], support=0.9)
    panel = sources_html(answer)
    assert "<script>" not in panel and "<img" not in panel and "<b>" not in panel and "href" not in panel
    assert "&lt;script&gt;" in panel and f"<mark>{quote.replace('<', '&lt;')}<sup>1</sup></mark>" in panel
    assert "/srv/secret" not in panel and "a.txt" in panel and "2024-01-02" in panel
    rendered = md_escape("<b>x</b> [a](http://e) ![i](x) *e* $$x$$\n# head\n1. item")
    assert "<b>" not in rendered and "\\[a\\]\\(" in rendered and "\\*e\\*" in rendered and "\\$\\$" in rendered
    assert "\n\\# head" in rendered and "\n1\\. item" in rendered


def test_citation_repairs_show_with_the_sources_and_the_chat_keeps_what_the_answer_rests_on():
    """Our rendering logic on a given Answer: the checker's repairs are not repeated in the chat bubble."""
    from qa.app.render import answer_markdown

    text = "Moscow declined the invitation."
    passage = Passage("a:0", "a", "Russia Stays Away", "a.txt", "", "2024-01-02", text, 0, len(text), ())
    citation = Citation(1, "a", "a:0", passage.title, passage.source, "", "2024-01-02", text, 0, len(text), 0.9)
    answer = Answer("Why?", f"{text} [1]", [citation], passages=[passage], support=0.9)
    answer.checks = ["cited the supporting source of a sentence the model left uncited: 'Moscow declined.'"]
    answer.notes = ['no article is dated within "this week"; answered from the others']
    bubble, panel = answer_markdown(answer), sources_html(answer)
    assert "left uncited" not in bubble and "this week" in bubble
    assert "Citation check: cited the supporting source" in panel and "this week" not in panel
    assert answer.to_dict()["checks"] == answer.checks


def test_upload_names_and_limits(tmp_path: Path):
    assert safe_name("../../etc/cron.d/evil.txt") == "evil.txt"
    assert safe_name("..\\..\\win.md") == "win.md"
    assert safe_name("my report (final).JSON") == "my_report_final_.JSON"
    for bad in ("..", "", "/", "x.exe", ".txt", "noext"):
        with pytest.raises(ValueError):
            safe_name(bad)

    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for i in range(7):
        (src / f"a{i}.txt").write_text(f"Title {i}\n\nBody {i}.")
        paths.append(str(src / f"a{i}.txt"))
    (src / "big.txt").write_text("x" * 2000)
    folder = tmp_path / "uploads"
    saved = save_uploads([(p, p) for p in [*paths, str(src / "big.txt")]], folder, max_bytes=1000, max_files=5)
    assert len(saved.paths) == 5 and all(p.parent.parent == folder for p in saved.paths)
    assert [reason for _, reason in saved.refused].count("more than 5 files in one upload") == 3
    saved = save_uploads([("big.txt", str(src / "big.txt"))], folder, max_bytes=1000, max_files=5)
    assert not saved.paths and "over the" in saved.refused[0][1]
    assert not list(folder.glob(".upload-*"))  # no half-written temp files left behind
