"""The HTTP API of a real `qa serve` (child process, loopback, extractive backend, the real model and index),
called with httpx, curl and the official openai client: the seed question's "one-sided" citation arrives as
data everywhere; bad input is a 4xx with a message; nothing answers without the token when auth is on."""

from __future__ import annotations

import base64
import inspect
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

import qa
from qa.settings import Settings
from tests.app.serving import qa_serve
from tests.helpers import DATA, SEEDS

pytestmark = pytest.mark.slow

SEED_QUESTION = "Why did Russia decline?"
TOKEN = "t0ken-for-tests"
LOGIN = ("ana", "s3cret")
ARTICLE = (
    "Glass Footbridge Opens in Tarnholm\n\n"
    "The harbour city of Tarnholm opened a glass footbridge across the Vell estuary on Monday. "
    "The footbridge is 412 metres long and was designed by the architect Ilse Varnow.\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`qa serve` with a token from a file and the login from $QA_WEB_AUTH, over the seed and test articles;
    small upload limits (3 files of 50 KB) so the limits are cheap to reach."""
    root = tmp_path_factory.mktemp("http-api")
    report = qa.Assistant(Settings(index_dir=root / "index", backend="extractive")).index([SEEDS, DATA / "articles"])
    assert not report.rejected, report.rejected
    (root / "token").write_text(TOKEN + "\n")
    env = {"QA_WEB_AUTH": ":".join(LOGIN), "QA_WEB_MAX_FILES": "3", "QA_MAX_FILE_MB": "0.05"}
    with qa_serve(root / "index", "--token-file", str(root / "token"), env=env) as (url, _):
        yield url


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
        yield client


def one_sided(citations: list[dict]) -> dict:
    """The cited passage of the seed answer; its source is a file name, never a server path."""
    found = [c for c in citations if "one-sided" in c["quote"]]
    assert found, citations
    c = found[0]
    assert {"n", "title", "source", "url", "published", "quote", "start", "end"} <= set(c)
    assert c["source"] == "russia-stays-away-from-paris-meeting-on-syria.txt"
    assert c["end"] - c["start"] == len(c["quote"])
    return c


def sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


# -- httpx -----------------------------------------------------------------------------------------------------
def test_health_stats_models_and_docs(server: str, api: httpx.Client):
    health = httpx.get(f"{server}/api/health").json()  # no auth needed to see that it runs
    assert health == {"status": "ok", "index": "ready", "backends": ["extractive"]}
    stats = api.get("/api/stats").json()
    assert stats["articles"] == 8 and stats["chunks"] > 8 and "/" not in stats["index"]
    assert api.get("/v1/models").json()["data"] == [
        {"id": "extractive", "object": "model", "created": 0, "owned_by": "news-qa"}
    ]
    schema = api.get("/api/openapi.json").json()
    assert {
        "/api/ask",
        "/api/timeline",
        "/api/digest",
        "/api/index",
        "/api/stats",
        "/api/health",
        "/v1/chat/completions",
        "/v1/models",
    } <= set(schema["paths"])
    assert "question" in schema["components"]["schemas"]["AskRequest"]["properties"]
    assert "topic" in schema["components"]["schemas"]["TimelineRequest"]["properties"]
    assert "since" in schema["components"]["schemas"]["DigestRequest"]["required"]
    docs = api.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_ask_as_json_and_as_events(api: httpx.Client):
    answer = api.post("/api/ask", json={"question": SEED_QUESTION}).json()
    assert answer["abstained"] is False and "one-sided" in answer["text"] and "[1]" in answer["text"]
    assert set(answer) >= {"text", "abstained", "citations", "notes", "timings_ms", "backend"}
    one_sided(answer["citations"])

    with api.stream("POST", "/api/ask", json={"question": SEED_QUESTION, "stream": True, "k": 3}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r.read().decode())
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and kinds[:-1] and set(kinds[:-1]) == {"text"}
    assert "".join(data["text"] for _, data in events[:-1]).strip() == events[-1][1]["text"].strip()
    one_sided(events[-1][1]["citations"])

    out = api.post("/api/ask", json={"question": "Who won the 2010 World Cup?"}).json()
    assert out["abstained"] is True and out["citations"] == []
    filtered = api.post("/api/ask", json={"question": SEED_QUESTION, "source": "no-such-outlet"}).json()
    assert filtered["citations"] == []  # the filter reached retrieval


def test_as_of_is_passed_through_or_refused_clearly(api: httpx.Client):
    r = api.post("/api/ask", json={"question": SEED_QUESTION, "as_of": "2012-04-01"})
    if "as_of" in inspect.signature(qa.Assistant.ask_stream).parameters:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 422 and "as_of is not supported yet" in r.json()["error"]["message"]


def test_openai_chat_format_with_citations_as_data(api: httpx.Client):
    body = {
        "model": "extractive",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": SEED_QUESTION}],
    }
    out = api.post("/v1/chat/completions", json=body).json()
    assert out["object"] == "chat.completion" and out["choices"][0]["finish_reason"] == "stop"
    assert "one-sided" in out["choices"][0]["message"]["content"]
    one_sided(out["citations"])
    assert out["answer"]["abstained"] is False

    follow = {
        **body,
        "messages": [
            *body["messages"],
            out["choices"][0]["message"],
            {"role": "user", "content": "And what did Juppe say?"},
        ],
    }
    again = api.post("/v1/chat/completions", json=follow).json()
    assert SEED_QUESTION in again["answer"]["standalone_question"]  # earlier messages are the history


def test_index_upload_limits_and_no_overwrite(api: httpx.Client, tmp_path: Path):
    files = [
        ("files", ("tarnholm bridge.txt", ARTICLE.encode(), "text/plain")),
        ("files", ("empty.txt", b"", "text/plain")),
        ("files", ("notes.exe", b"MZ\x00", "application/octet-stream")),
        ("files", ("fourth.txt", b"Fourth\n\nOne too many.", "text/plain")),
    ]
    report = api.post("/api/index", files=files).json()
    assert report["added"] == ["Glass Footbridge Opens in Tarnholm (tarnholm_bridge.txt)"]
    reasons = {r["source"]: r["reason"] for r in report["rejected"]}
    assert "empty" in reasons["empty.txt"] and "unsupported file type" in reasons["notes.exe"]
    assert reasons["fourth.txt"] == "more than 3 files in one upload"
    assert "/tmp" not in json.dumps(report)

    again = api.post("/api/index", files=files[:1]).json()  # the same file again: said so, nothing replaced
    assert again["added"] == [] and again["already_indexed"] == [
        "tarnholm_bridge.txt (the same file was uploaded before)"
    ]
    other = ARTICLE.replace("412 metres", "97 metres").replace("Glass", "Wooden")
    third = api.post("/api/index", files=[("files", ("tarnholm bridge.txt", other.encode(), "text/plain"))]).json()
    assert third["added"] == ["Wooden Footbridge Opens in Tarnholm (tarnholm_bridge.txt)"]
    answer = api.post("/api/ask", json={"question": "How long is the glass footbridge in Tarnholm?"}).json()
    assert "412 metres" in answer["text"]  # the first user's article is still there

    big = api.post("/api/index", files=[("files", ("big.txt", b"Big\n\n" + b"word " * 20_000, "text/plain"))]).json()
    assert big["rejected"] == [{"source": "big.txt", "reason": "file is over the 0.05 MB limit"}]
    huge = api.post("/api/index", files=[("files", ("huge.txt", b"x" * 2_500_000, "text/plain"))])
    assert huge.status_code == 413 and "limit" in huge.json()["error"]["message"]  # refused before reading


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/ask", {"question": "x" * 1001}, 422, "the question is 1001 characters; the limit is 1000"),
        ("/api/ask", {"question": "   "}, 422, "the question is empty"),
        ("/api/ask", {}, 422, "question: Field required"),
        ("/api/ask", {"question": SEED_QUESTION, "k": 0}, 422, "k: Input should be greater than or equal to 1"),
        ("/api/ask", {"question": SEED_QUESTION, "k": 21}, 422, "k must be between 1 and 20"),
        ("/api/ask", {"question": SEED_QUESTION, "backend": "llamacpp"}, 422, "not offered by this server"),
        ("/api/ask", {"question": SEED_QUESTION, "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
        ("/api/ask", {"question": SEED_QUESTION, "history": "hi"}, 422, "history: Input should be a valid list"),
        (
            "/api/ask",
            {"question": SEED_QUESTION, "since": "soon"},
            422,
            "since: Value error, 'soon' is not an ISO date",
        ),
        (
            "/v1/chat/completions",
            {"model": "llamacpp", "messages": [{"role": "user", "content": "q"}]},
            404,
            "model 'llamacpp' is not offered here",
        ),
        ("/v1/chat/completions", {"model": "extractive", "messages": []}, 422, "messages: List should have at least"),
        (
            "/v1/chat/completions",
            {"model": "extractive", "messages": [{"role": "assistant", "content": "q"}]},
            422,
            "the last message must be the user's question",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "extractive",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
            422,
            "only text",
        ),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(api: httpx.Client, path: str, body: dict, status: int, message: str):
    r = api.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and "Traceback" not in r.text


def test_a_huge_json_body_is_refused_unread(api: httpx.Client):
    r = api.post(
        "/api/ask", content=b'{"question": "' + b"x" * 3_000_000 + b'"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "over the 2 MB limit" in r.json()["error"]["message"]


def test_not_json_is_a_4xx(api: httpx.Client):
    r = api.post("/api/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]["message"]


def test_nothing_answers_without_credentials(server: str):
    calls = [
        ("GET", "/api/stats"),
        ("POST", "/api/ask"),
        ("POST", "/api/timeline"),
        ("POST", "/api/digest"),
        ("POST", "/api/index"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/config"),
        ("GET", "/gradio_api/info"),
    ]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + _basic("ana", "no")}):
            r = httpx.request(method, server + path, headers=headers, json={"question": SEED_QUESTION})
            assert r.status_code == 401, (method, path, headers, r.status_code)
    basic = {"Authorization": "Basic " + _basic(*LOGIN)}  # the page's login works for the API too
    assert (
        httpx.post(f"{server}/api/ask", headers=basic, json={"question": SEED_QUESTION}, timeout=120).status_code == 200
    )
    timeline = httpx.post(f"{server}/api/timeline", headers=basic, json={"topic": "Paris talks"}, timeout=120)
    assert timeline.status_code == 200 and timeline.json()["events"], timeline.text
    digest = httpx.post(f"{server}/api/digest", headers=basic, json={"since": "2000-01-01", "limit": 2}, timeout=120)
    assert digest.status_code == 200 and len(digest.json()["stories"]) == 2, digest.text
    page = httpx.post(f"{server}/login", data={"username": "ana", "password": TOKEN})  # the token is a page password
    assert page.status_code == 200 and page.json() == {"success": True}


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# -- curl --------------------------------------------------------------------------------------------------------
def curl(*args: str) -> str:
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "120", "-H", f"Authorization: Bearer {TOKEN}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_endpoint_with_curl(server: str, tmp_path: Path):
    assert json.loads(curl(f"{server}/api/health"))["index"] == "ready"
    assert json.loads(curl(f"{server}/api/stats"))["articles"] >= 8
    assert json.loads(curl(f"{server}/v1/models"))["data"][0]["id"] == "extractive"
    ask = ["-H", "Content-Type: application/json", "-d", json.dumps({"question": SEED_QUESTION})]
    one_sided(json.loads(curl(*ask, f"{server}/api/ask"))["citations"])
    streamed = curl(
        "-N",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps({"question": SEED_QUESTION, "stream": True}),
        f"{server}/api/ask",
    )
    one_sided(sse(streamed)[-1][1]["citations"])
    chat = {"model": "extractive", "messages": [{"role": "user", "content": SEED_QUESTION}]}
    out = json.loads(
        curl("-H", "Content-Type: application/json", "-d", json.dumps(chat), f"{server}/v1/chat/completions")
    )
    one_sided(out["citations"])
    article = tmp_path / "curl-article.md"
    article.write_text("# Curl Lake Drained\n\nEngineers drained Curl Lake on Tuesday to repair the old dam.\n")
    report = json.loads(curl("-F", f"files=@{article}", f"{server}/api/index"))
    assert report["added"] == ["Curl Lake Drained (curl-article.md)"]
    assert "swagger" in curl(f"{server}/api/docs").lower()


# -- the openai client -----------------------------------------------------------------------------------------
def test_the_official_openai_client(server: str):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=TOKEN, max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["extractive"]

    reply = client.chat.completions.create(model="extractive", messages=[{"role": "user", "content": SEED_QUESTION}])
    assert "one-sided" in reply.choices[0].message.content
    one_sided(reply.model_extra["citations"])

    chunks = list(
        client.chat.completions.create(
            model="extractive", messages=[{"role": "user", "content": SEED_QUESTION}], stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "one-sided" in text and chunks[-1].choices[0].finish_reason == "stop"
    one_sided(chunks[-1].model_extra["citations"])
    assert all("citations" not in c.model_extra for c in chunks[:-1])

    with pytest.raises(openai.NotFoundError, match="not offered here"):
        client.chat.completions.create(model="llamacpp", messages=[{"role": "user", "content": SEED_QUESTION}])
    with pytest.raises(openai.AuthenticationError, match="authentication required"):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()


@pytest.mark.llm
def test_a_model_answer_streams_through_the_openai_client(tmp_path: Path):
    """The generative path end to end (SmolLM2, the small packaged GGUF): words stream, the last chunk carries
    the checked answer and its citations, whatever the model wrote."""
    from qa.answer.gguf import smollm2_path

    index = tmp_path / "index"
    assert not qa.Assistant(Settings(index_dir=index, backend="extractive")).index([SEEDS]).rejected
    env = {"QA_GGUF_PATH": str(smollm2_path()), "QA_MAX_ANSWER_TOKENS": "60", "QA_WEB_TOKEN": TOKEN}
    with qa_serve(index, "--backend", "llamacpp", env=env) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0, timeout=300)
        assert [m.id for m in client.models.list()] == ["llamacpp", "extractive"]
        question = [{"role": "user", "content": SEED_QUESTION}]
        chunks = list(client.chat.completions.create(model="llamacpp", messages=question, stream=True))
        answer = chunks[-1].model_extra["answer"]
        assert answer["backend"] == "llamacpp" and chunks[-1].model_extra["citations"] == answer["citations"]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text.strip() == answer["text"].strip() or text.endswith(
            f"Checked against the sources:\n{answer['text']}"
        )
        assert answer["citations"] and all(c["quote"] and "/" not in c["source"] for c in answer["citations"])
