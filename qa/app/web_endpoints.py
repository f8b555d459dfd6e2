"""Gradio's programmatic endpoints (`/ask`, `/timeline`, `/digest`, called with gradio_client): the same JSON as
`qa ask --json`, `qa timeline --json` and `qa digest --json`, checked by the API's rules (qa/app/api_models.py),
errors sent as their message (Gradio would send {"error": null})."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from qa.api import Assistant
from qa.app.api_models import (
    DIGEST_MAX_STORIES,
    ApiError,
    check_day,
    check_question,
    check_topic,
    error_of,
    public_answer,
    public_stories,
)


def endpoints(assistant: Assistant) -> dict[str, Callable[..., dict]]:
    """The endpoint functions by api_name; their signatures and docstrings are what Gradio's API page shows."""
    settings = assistant.settings

    def ask(question: str, history: list[dict[str, str]] | None = None, backend: str = "", k: int = 0) -> dict:
        """Answer `question` from the indexed articles: the JSON of `qa ask --json` (text, citations, ...)."""
        try:
            if not isinstance(question, str) or not isinstance(history, list | None):
                raise ApiError(422, "question must be text and history a list of {role, content} messages")
            check_question(settings, question, history, k or None, backend or None)
            answer = assistant.ask(question, k=k or None, history=history or None, backend=backend or None)
            return public_answer(answer)
        except Exception as exc:  # the caller gets the message (Gradio would send {"error": null})
            raise gr.Error(error_of(exc).message) from exc

    def timeline(topic: str, since: str = "", until: str = "", as_of: str = "") -> dict:
        """The dated events of the stories `topic` finds, oldest first: the JSON of `qa timeline --json`."""
        try:
            check_topic(settings, topic)
            day = check_day(as_of, "as_of") or None
            return public_stories(
                assistant.timeline(topic, check_day(since, "since"), check_day(until, "until"), day).to_dict()
            )
        except Exception as exc:
            raise gr.Error(error_of(exc).message) from exc

    def digest(since: str, until: str = "", limit: int = 20) -> dict:
        """The stories that gained articles since `since` (YYYY-MM-DD), newest first: `qa digest --json`."""
        try:
            day = check_day(since, "since")
            if not day:
                raise ApiError(422, "since: a day (YYYY-MM-DD) is required")
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= DIGEST_MAX_STORIES:
                raise ApiError(422, f"limit must be between 1 and {DIGEST_MAX_STORIES}")
            return public_stories(assistant.digest(day, check_day(until, "until"), limit).to_dict())
        except Exception as exc:
            raise gr.Error(error_of(exc).message) from exc

    return {"ask": ask, "timeline": timeline, "digest": digest}
