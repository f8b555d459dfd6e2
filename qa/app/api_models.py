"""What the JSON API accepts and returns: request models, their checks, the public shape of an answer, and
errors as `{"error": {...}}` bodies. Split from qa/app/http_api.py so the routes read in one sitting."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from qa.answer.gguf import ModelUnavailable
from qa.schema import Answer
from qa.settings import Settings
from qa.store import IndexMissing

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
