"""Our own logic behind the HTTP API, without a server: the wait for a free answerer, the OpenAI stream when the
citation check changed the model's words (a scripted event stream stands in for the model: the test is about
how we frame it), the conversation reading, the date check and the server-path hiding."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import qa
from qa.app.api_models import ApiError, AskRequest, allowed_backends, check_question, public_answer
from qa.app.http_api import Api
from qa.app.openai_api import ChatMessage, _conversation, _openai_chunks
from qa.schema import Answer, Citation
from qa.settings import Settings


def test_a_full_server_says_429_and_frees_the_slot_after(tmp_path: Path):
    settings = Settings(index_dir=tmp_path / "i", web_ask_concurrency=1, web_queue_timeout_s=0.05)
    api = Api(qa.Assistant(settings))  # nothing is loaded: no question is answered

    async def scenario() -> None:
        await api.acquire()
        with pytest.raises(ApiError) as refused:
            await api.acquire()
        assert refused.value.status == 429 and "busy" in refused.value.message
        api.release()
        await api.acquire()  # free again

    asyncio.run(scenario())


def test_the_openai_stream_shows_the_checked_answer_and_ends_with_the_citations():
    citation = {"n": 1, "quote": "Moscow declined the invitation.", "source": "a.txt"}

    async def events():  # scripted: what Api.answer_events yields for a model whose citation was repaired
        yield "text", "Moscow said no "
        yield "text", "[2]."
        yield "answer", {"text": "Moscow declined the invitation. [1]", "citations": [citation]}

    async def collect() -> list[str]:
        return [c async for c in _openai_chunks(events(), "chatcmpl-x", 0, "llamacpp")]

    raw = asyncio.run(collect())
    assert raw[-1] == "data: [DONE]\n\n"
    chunks = [json.loads(c.removeprefix("data: ")) for c in raw[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == "Moscow said no [2].\n\nChecked against the sources:\nMoscow declined the invitation. [1]"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["citations"] == [citation]
    assert all("citations" not in c for c in chunks[:-1])


def test_the_conversation_is_the_last_user_message_and_the_turns_before():
    messages = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Why did Russia decline?"),
        ChatMessage(role="assistant", content="It called the meeting one-sided. [1]"),
        ChatMessage(role="user", content=[{"type": "text", "text": "And "}, {"type": "text", "text": "Juppe?"}]),
    ]
    question, history = _conversation(messages)
    assert question == "And Juppe?"
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_limits_dates_and_backends(tmp_path: Path):
    s = Settings(index_dir=tmp_path, backend="llamacpp", web_max_question_chars=10)
    assert allowed_backends(s) == ("llamacpp", "extractive")
    assert allowed_backends(s.model_copy(update={"web_backends": "ollama, extractive"})) == ("ollama", "extractive")
    with pytest.raises(ApiError, match="the limit is 10"):
        check_question(s, "x" * 11, None, None, None)
    with pytest.raises(ApiError, match="not offered"):
        check_question(s, "why?", None, None, "openai")
    assert AskRequest(question="q", since="2012", until="2012-04-01T10:00:00").since == "2012"
    with pytest.raises(ValueError, match="not an ISO date"):
        AskRequest(question="q", until="next week")


def test_citations_name_files_not_server_paths():
    c = Citation(1, "a", "a:0", "T", "/srv/news/uploads/0123456789abcdef/a.txt", "", "", "q", 0, 1, 1.0)
    web = Citation(2, "b", "b:0", "T", "https://example.org/b", "", "", "q", 0, 1, 1.0)
    out = public_answer(Answer("q", "q [1] [2]", [c, web]))
    assert [x["source"] for x in out["citations"]] == ["a.txt", "https://example.org/b"]
