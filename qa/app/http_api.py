"""The plain JSON API beside the chat: /api/ask (JSON or server-sent events), /api/timeline and /api/digest (the
stories of qa/stories), /api/index, /api/stats, /api/health, and an OpenAI-compatible /v1/chat/completions whose
citations travel as data (`citations` in the response and in the last stream chunk). Schema at /api/docs. Auth
and size limits are in qa/app/server.py."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.answer.gguf import ModelUnavailable
from qa.api import Assistant
from qa.app.uploads import repeat_lines, save_uploads, shown_report
from qa.schema import Answer, IndexReport
from qa.settings import Settings
from qa.store import Filters, IndexMissing

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a caller gets as `{"error": {"message", "type", "code"}}` with this HTTP status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


# -- request models --------------------------------------------------------------------------------------------
def _iso_date(value: str) -> str:
    """'' or an ISO date (2012, 2012-04, 2012-04-01, or a full timestamp): a typo would silently match nothing."""
    value = value.strip()
    if value and not re.fullmatch(r"\d{4}(-\d{2})?", value):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not an ISO date (YYYY-MM-DD)") from None
    return value


IsoDate = Annotated[str, AfterValidator(_iso_date)]
DIGEST_MAX_STORIES = 100  # most stories one digest may list


def check_day(value: str | None, what: str = "") -> str:
    """'' or one ISO day (YYYY-MM-DD), normalised: story dates compare as text, so a typo would match nothing."""
    lead = f"{what}: " if what else ""
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{lead}a date must be text (YYYY-MM-DD)")
    value = (value or "").strip()
    if not value:
        return ""
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{lead}'{value}' is not a date: write it as YYYY-MM-DD") from None


def _day(value: str) -> str:
    return check_day(value)


IsoDay = Annotated[str, AfterValidator(_day)]


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class AskRequest(BaseModel):
    """One question. Limits (length, history, k, backends) are the server's and are checked on arrival."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="The question, in plain words.")
    history: list[Message] = Field(default_factory=list, description="Earlier turns, oldest first.")
    k: int | None = Field(None, ge=1, description="Passages to read (the server's default when absent).")
    backend: str | None = Field(None, description="Who writes the answer: one of GET /v1/models.")
    as_of: IsoDate | None = Field(None, description="Answer as the articles stood on this ISO date.")
    source: str = Field("", description="Only articles whose source or url contains this.")
    since: IsoDate = Field("", description="Only articles published on or after this ISO date.")
    until: IsoDate = Field("", description="Only articles published on or before this ISO date.")
    stream: bool = Field(False, description="Server-sent events: `text` pieces, then one `answer`.")


class TimelineRequest(BaseModel):
    """A story's dated events, oldest first. The topic is searched like a question (the same length limit)."""

    model_config = ConfigDict(extra="forbid")
    topic: str = Field(description="What the story is about, in a few words (e.g. 'Ravensberg flood').")
    since: IsoDay = Field("", description="Only events reported on or after this day (YYYY-MM-DD).")
    until: IsoDay = Field("", description="Only events reported on or before this day (YYYY-MM-DD).")
    as_of: IsoDay | None = Field(None, description="The timeline as the articles stood on this day.")


class DigestRequest(BaseModel):
    """The stories that gained articles since a day, newest first, each with one cited sentence of what is new."""

    model_config = ConfigDict(extra="forbid")
    since: IsoDay = Field(description="Stories with an article published on or after this day (YYYY-MM-DD).")
    until: IsoDay = Field("", description="Read as of this day (YYYY-MM-DD): later articles are left out.")
    limit: int = Field(20, ge=1, le=DIGEST_MAX_STORIES, description="Most stories listed.")


# -- the shared rules ------------------------------------------------------------------------------------------
def allowed_backends(settings: Settings) -> tuple[str, ...]:
    """The backends callers may pick: `web_backends`, or the default one and 'extractive'."""
    listed = [b.strip() for b in settings.web_backends.split(",") if b.strip()]
    return tuple(dict.fromkeys(listed or [settings.backend, "extractive"]))


def check_question(settings: Settings, question: str, history: list | None, k: int | None, backend: str | None):
    """Server-side limits, the same for the page and every API; ApiError(4xx) saying which one was hit."""
    if len(question) > settings.web_max_question_chars:
        raise ApiError(
            422, f"the question is {len(question)} characters; the limit is {settings.web_max_question_chars}"
        )
    if not question or not question.strip():
        raise ApiError(422, "the question is empty")
    if history and len(history) > settings.web_max_history_messages:
        raise ApiError(422, f"{len(history)} history messages; the limit is {settings.web_max_history_messages}")
    for m in history or ():
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", None)
        if not isinstance(content, str) or len(content) > 4 * settings.web_max_question_chars:
            raise ApiError(
                422,
                "each history message needs a text content of at most "
                f"{4 * settings.web_max_question_chars} characters",
            )
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= settings.web_max_k):
        raise ApiError(422, f"k must be between 1 and {settings.web_max_k}")
    allowed = allowed_backends(settings)
    if backend and backend not in allowed:
        raise ApiError(
            422,
            f"backend '{backend}' is not offered by this server (choose from {', '.join(allowed)})",
            code="model_not_found",
        )


def check_topic(settings: Settings, topic: str) -> None:
    """A timeline topic's limits: those of a question (ApiError 422 saying which one was hit)."""
    if not isinstance(topic, str):
        raise ApiError(422, "the topic must be text")
    if len(topic) > settings.web_max_question_chars:
        raise ApiError(422, f"the topic is {len(topic)} characters; the limit is {settings.web_max_question_chars}")
    if not topic.strip():
        raise ApiError(422, "the topic is empty")


def _public_citation(c: dict) -> dict:
    """A citation's dict with a file name instead of a server path as its source."""
    src = c.get("source") or ""
    if "://" not in src and ("/" in src or "\\" in src):
        c["source"] = Path(src.replace("\\", "/")).name
    return c


def public_answer(answer: Answer) -> dict:
    """Answer.to_dict() with file names instead of server paths in each citation's source."""
    out = answer.to_dict()
    for c in out["citations"]:
        _public_citation(c)
    return out


def public_stories(out: dict) -> dict:
    """Timeline.to_dict() or Digest.to_dict(), its citations' sources shown as public_answer shows them."""
    for item in out.get("events", []) + out.get("stories", []):
        _public_citation(item["citation"])
    return out


def error_of(exc: BaseException) -> ApiError:
    """What an exception from asking or indexing means for a caller (message, never a traceback)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, IndexMissing):
        return ApiError(409, f"{exc} Upload articles (POST /api/index) to create it.", "index_missing")
    if isinstance(exc, ModelUnavailable):
        return ApiError(503, str(exc), "model_unavailable")
    if isinstance(exc, ValueError):
        return ApiError(422, str(exc))
    if isinstance(exc, (RuntimeError, OSError)):
        return ApiError(503, str(exc) or type(exc).__name__, "server_error")
    log.warning("unexpected %s: %s", type(exc).__name__, exc)
    log.debug("details", exc_info=exc)
    return ApiError(500, f"internal error ({type(exc).__name__}: {exc})", "server_error")


def error_body(e: ApiError) -> dict:
    return {"error": {"message": e.message, "type": e.kind, "code": e.code or e.status}}


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
