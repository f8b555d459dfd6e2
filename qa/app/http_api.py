"""The plain JSON API beside the chat: /api/ask (JSON or server-sent events), /api/timeline and /api/digest (the
stories of qa/stories), /api/index, /api/stats, /api/health, and an OpenAI-compatible /v1/chat/completions whose
citations travel as data (`citations` in the response and in the last stream chunk). Schema at /api/docs. Auth
and size limits are in qa/app/server.py."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.api import Assistant
from qa.app.api_models import (
    ApiError,
    AskRequest,
    DigestRequest,
    TimelineRequest,
    allowed_backends,
    check_question,
    check_topic,
    error_body,
    error_of,
    public_answer,
    public_stories,
)
from qa.app.uploads import repeat_lines, save_uploads, shown_report
from qa.schema import Answer, IndexReport
from qa.store import Filters, IndexMissing

log = logging.getLogger(__name__)


# -- the app ---------------------------------------------------------------------------------------------------
class Api:
    """The routes over one Assistant (auth and body limits are qa/app/server.py's Gate, in front; the /v1
    routes are qa/app/openai_api.py's)."""

    def __init__(self, assistant: Assistant):
        self.assistant = assistant
        self.settings = assistant.settings
        self.slots: asyncio.Semaphore | None = None  # created in the server's event loop
        self.index_lock = threading.Lock()  # one upload indexes at a time (page and API)

    def ask_kwargs(self, k: int | None, as_of: str | None, source: str, since: str, until: str) -> dict:
        kwargs: dict[str, Any] = {"k": k, "filters": Filters(source, since, until)}
        if as_of:
            if "as_of" not in inspect.signature(self.assistant.ask_stream).parameters:
                raise ApiError(422, "as_of is not supported yet by this version of news-qa")
            kwargs["as_of"] = as_of
        return kwargs

    async def acquire(self) -> None:
        """One of web_ask_concurrency answerers, or 429 after web_queue_timeout_s."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.settings.web_ask_concurrency)
        try:
            await asyncio.wait_for(self.slots.acquire(), self.settings.web_queue_timeout_s)
        except TimeoutError:
            raise ApiError(
                429, "the server is busy answering other questions; try again shortly", "rate_limited"
            ) from None

    def release(self) -> None:
        assert self.slots is not None
        self.slots.release()

    async def answer_events(
        self, question: str, history: list[dict], backend: str | None, kwargs: dict
    ) -> AsyncIterator[tuple[str, Any]]:
        """The answer as events; the first item is computed before any response starts, so a missing index or a
        bad filter is an HTTP error, not a broken stream."""
        check_question(self.settings, question, history, kwargs.get("k"), backend)
        await self.acquire()
        try:
            gen = self.assistant.ask_stream(question, history=history or None, backend=backend or None, **kwargs)
            first = await run_in_threadpool(next, gen, None)
        except Exception as exc:
            self.release()
            raise error_of(exc) from exc
        except BaseException:
            self.release()
            raise
        release = _Once(self.release)
        events = self._events(first, gen, release)
        weakref.finalize(events, release)  # a stream never started (the client left first) frees its slot too
        return events

    async def stories(self, fn: Any, *args: Any) -> dict:
        """A timeline or digest (`fn(*args)`, in a thread) as public JSON, in one of the answerers' slots."""
        await self.acquire()
        try:
            found = await run_in_threadpool(fn, *args)
        except Exception as exc:
            raise error_of(exc) from exc
        finally:
            self.release()
        return public_stories(found.to_dict())

    def index_files(self, files: list[tuple[str, Any]]) -> dict:
        folder = (self.settings.index_dir / "uploads").resolve()
        saved = save_uploads(files, folder, self.settings.max_file_bytes, self.settings.web_max_files)
        report = None
        if saved.paths:
            with self.index_lock:
                report = self.assistant.index(saved.paths)
        shown = shown_report(report, saved, folder)
        return report_dict(shown, repeat_lines(saved))

    def build(self) -> FastAPI:
        from qa.app.openai_api import openai_router

        app = FastAPI(
            title="news-qa",
            summary="Ask the indexed news articles; every answer cites its passages.",
            docs_url="/api/docs",
            redoc_url=None,
            openapi_url="/api/openapi.json",
        )
        install_error_handlers(app)
        api = APIRouter(prefix="/api")

        @app.get("/api/health", tags=["api"])
        def health() -> dict:
            """Liveness without auth: the server answers; `index` says whether there is one to ask."""
            try:
                self.assistant.stats()
                index = "ready"
            except IndexMissing:
                index = "missing"
            except Exception as exc:  # damaged, locked: say so (details in the log), the server still runs
                log.warning("index unavailable: %s", exc)
                index = "unavailable"
            return {"status": "ok", "index": index, "backends": list(allowed_backends(self.settings))}

        @api.get("/stats", tags=["api"])
        async def stats() -> dict:
            try:
                stats = await run_in_threadpool(self.assistant.stats)
                return stats | {"index": Path(stats.get("index") or "").name}  # not the server's path
            except Exception as exc:
                raise error_of(exc) from exc

        @api.post("/ask", tags=["api"], responses={200: {"content": {"text/event-stream": {}}}})
        async def ask(req: AskRequest):
            """The answer as JSON (text, abstained, citations, notes, timings); with `stream`, events `text`
            (`{"text": piece}`) then `answer` (the same JSON), or `error`."""
            history = [m.model_dump() for m in req.history]
            kwargs = self.ask_kwargs(req.k, req.as_of, req.source, req.since, req.until)
            events = await self.answer_events(req.question, history, req.backend, kwargs)
            if req.stream:
                return StreamingResponse(_sse(events), media_type="text/event-stream", headers=NO_BUFFER)
            return await final(events)

        @api.post("/timeline", tags=["api"])
        async def timeline(req: TimelineRequest) -> dict:
            """The dated events of the stories the topic finds, oldest first: `events` of `{date, dated_by
            ("stated" or "article"), text, outlets, citation}`."""
            check_topic(self.settings, req.topic)
            return await self.stories(self.assistant.timeline, req.topic, req.since, req.until, req.as_of or None)

        @api.post("/digest", tags=["api"])
        async def digest(req: DigestRequest) -> dict:
            """The stories that gained articles since `since`, newest first: `stories` of `{story_id, title,
            newest, new_articles, articles, outlets, citation, indexed_at}` (indexed_at: unix time)."""
            if not req.since:
                raise ApiError(422, "since: a day (YYYY-MM-DD) is required")
            return await self.stories(self.assistant.digest, req.since, req.until, req.limit)

        @api.post("/index", tags=["api"])
        async def index(files: list[UploadFile] = File(..., description="Articles: .txt .md .html .json .jsonl")):  # noqa: B008
            """Index uploaded articles, with the page's limits and reasons; returns the report (names only)."""
            try:
                return await run_in_threadpool(self.index_files, [(f.filename or "", f.file) for f in files])
            except Exception as exc:
                raise error_of(exc) from exc
            finally:
                for f in files:
                    await f.close()

        app.include_router(api)
        app.include_router(openai_router(self))
        return app

    async def _events(self, first: Any, gen: Iterator, release: _Once) -> AsyncIterator[tuple[str, Any]]:
        """("text", piece)... then ("answer", public dict) or ("error", ApiError); releases the slot at the end."""
        try:
            async for item in iterate_in_threadpool(_chain(first, gen)):
                if isinstance(item, Answer):
                    yield "answer", public_answer(item)
                    return
                yield "text", item
        except Exception as exc:
            yield "error", error_of(exc)
        finally:
            release()  # not awaited: this also runs in a cancelled stream


async def final(events: AsyncIterator[tuple[str, Any]]) -> dict:
    """The answer of a whole event stream (closed in every case, so its slot is released)."""
    async with aclosing(events):
        async for kind, data in events:
            if kind == "error":
                raise data
            if kind == "answer":
                return data
    raise ApiError(500, "the answer stream ended without an answer", "server_error")


class _Once:
    """Calls `fn` the first time it is called, never again."""

    def __init__(self, fn: Any):
        self._fn, self._lock = fn, threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            fn, self._fn = self._fn, None
        if fn is not None:
            fn()


NO_BUFFER = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _chain(first: Any, gen: Iterator) -> Iterator:
    if first is not None:
        yield first
    yield from gen


async def _sse(events: AsyncIterator) -> AsyncIterator[str]:
    async for kind, data in events:
        payload = {"text": data} if kind == "text" else error_body(data) if kind == "error" else data
        yield f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


def report_dict(report: IndexReport, notes: list[tuple[str, str]]) -> dict:
    return {
        "added": report.added,
        "updated": report.updated,
        "unchanged": len(report.unchanged),
        "rejected": [{"source": r.source, "reason": r.reason} for r in report.rejected],
        "already_indexed": [item for _, item in notes],
        "chunks_embedded": report.chunks_embedded,
        "seconds": round(report.seconds, 2),
        "summary": report.counts(),
    }


def install_error_handlers(app: FastAPI) -> None:
    """Every error as `{"error": {"message", "type", "code"}}` (the shape OpenAI clients read), no tracebacks."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"Retry-After": "5"} if exc.status == 429 else None
        return JSONResponse(error_body(exc), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse(error_body(ApiError(422, "; ".join(parts) or "invalid request")), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
        return JSONResponse(
            error_body(ApiError(exc.status_code, str(exc.detail), kind)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
