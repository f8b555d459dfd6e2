"""The OpenAI-compatible face of `qa serve`: POST /v1/chat/completions (the last user message is the question,
earlier turns the history, `model` the backend) and GET /v1/models. The reply's content is the cited answer
text; `citations` (and the whole `answer`) travel as extra fields of the response and of the last stream chunk,
so any OpenAI client gets the sources as data."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from qa.app.api_models import ApiError, IsoDate, allowed_backends, error_body
from qa.app.http_api import NO_BUFFER, Api, final


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The OpenAI chat format; `model` names the backend. k/source/since/until/as_of may be sent as extra fields."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1)
    k: int | None = Field(None, ge=1)
    as_of: IsoDate | None = None
    source: str = ""
    since: IsoDate = ""
    until: IsoDate = ""


def openai_router(api: Api) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    @v1.get("/models", tags=["openai"])
    def models() -> dict:
        """The answer backends this server offers, as OpenAI models."""
        return {
            "object": "list",
            "data": [
                {"id": b, "object": "model", "created": 0, "owned_by": "news-qa"}
                for b in allowed_backends(api.settings)
            ],
        }

    @v1.post("/chat/completions", tags=["openai"])
    async def chat(req: ChatRequest):
        """OpenAI chat: the last user message is the question, earlier ones the history; `citations` (and
        the whole `answer`) ride along as extra fields, in the last chunk when streaming."""
        if req.model not in allowed_backends(api.settings):
            offered = ", ".join(allowed_backends(api.settings))
            raise ApiError(
                404, f"model '{req.model}' is not offered here (GET /v1/models: {offered})", code="model_not_found"
            )
        question, history = _conversation(req.messages)
        kwargs = api.ask_kwargs(req.k, req.as_of, req.source, req.since, req.until)
        events = await api.answer_events(question, history, req.model, kwargs)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            chunks = _openai_chunks(events, cid, created, req.model)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=NO_BUFFER)
        return _completion(cid, created, req.model, await final(events))

    return v1


def _text_of(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ApiError(422, "only text content is understood (parts of type 'text')")
        parts.append(part["text"])
    return "".join(parts)


def _conversation(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The last user message and the user/assistant turns before it (system and tool messages are ignored)."""
    if messages[-1].role != "user":
        raise ApiError(422, "the last message must be the user's question")
    history = [
        {"role": m.role, "content": _text_of(m.content)} for m in messages[:-1] if m.role in ("user", "assistant")
    ]
    return _text_of(messages[-1].content), history


def _completion(cid: str, created: int, model: str, answer: dict) -> dict:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer["text"]}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "citations": answer["citations"],
        "answer": answer,
    }


async def _openai_chunks(events: AsyncIterator, cid: str, created: int, model: str) -> AsyncIterator[str]:
    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    streamed = ""
    async for kind, data in events:
        if kind == "text":
            streamed += data
            yield chunk({"content": data})
        elif kind == "answer":
            if data["text"].strip() != streamed.strip():  # the citation check repaired the model's words
                yield chunk({"content": f"\n\nChecked against the sources:\n{data['text']}"})
            yield chunk({}, "stop", citations=data["citations"], answer=data)
        else:
            yield f"data: {json.dumps(error_body(data), ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
