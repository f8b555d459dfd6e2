"""The web chat: streaming cited answers, a sources panel naming every outlet that carried a passage, a story's
timeline, a digest of what is new since a day (marking what changed since this browser last looked), uploads
indexed live, and Gradio's `/ask`, `/timeline` and `/digest` endpoints. Served with the JSON API by
qa/app/server.py; limits and error messages are the API's (qa/app/http_api.py)."""

from __future__ import annotations

import datetime as dt
import html
import logging
import threading
import time
from collections.abc import Iterator
from functools import partial

import gradio as gr

from qa.answer.when import as_date
from qa.api import Assistant
from qa.app.api_models import (
    allowed_backends,
    check_day,
    check_question,
    check_topic,
)
from qa.app.render import (  # noqa: F401  (tests and callers have always found these in qa.app.web)
    _MARKER,
    answer_markdown,
    default_since,
    digest_markdown,
    error_markdown,
    md_escape,
    sources_html,
    timeline_markdown,
)
from qa.app.server import serve  # noqa: F401  (qa.app.web.serve: where callers have always found it)
from qa.app.web_endpoints import endpoints
from qa.app.web_uploads import local_files_only, upload_handler
from qa.schema import Answer
from qa.sources.ingest import SUPPORTED
from qa.store import IndexMissing

log = logging.getLogger(__name__)

EXAMPLES = [
    "Why did Russia decline?",
    "Which countries are expected to attend the Paris meeting?",
    "What were the Paris talks designed to do?",
    "Who won the 2010 World Cup?",
]
STATS_EVERY_S = 5.0  # the index stats refresh this often (another process, e.g. `qa watch`, may add articles)
GRADIO_CACHE_CLEAN = (600, 3600)  # every 10 min, delete Gradio's temp files (uploads never submitted) over 1 h old
EMPTY_PANEL = (
    '<div class="sources"><div class="title">Sources</div><div class="empty">Ask a question: the passages '
    "behind the answer appear here, the quoted words highlighted. Click an earlier answer to see its sources "
    "again.</div></div>"
)
# Gradio 6.31 ships Source Sans Pro SemiBold as a 5 KB subset, so bold text mixes fonts: use the full Bold.
THEME = gr.themes.Default(font=(gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)), "system-ui", "sans-serif"))
WAIT = "Reading the articles…"
SEEN_KEY = "news-qa-digest-seen"  # the browser's localStorage key for when it last looked at the digest
PANEL_CSS = """
.sources { display: flex; flex-direction: column; gap: 10px; font-size: 14px; line-height: 1.5; }
.title { font-weight: 600; font-size: 15px; }
.card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px;
        background: var(--background-fill-secondary); }
.head { font-weight: 600; }
.head a { color: inherit; }
.n { color: var(--color-accent); margin-right: 6px; }
.meta { color: var(--body-text-color-subdued); font-size: 12px; margin: 2px 0 6px; }
.outlets { color: var(--body-text-color); font-weight: 600; }
.passage { margin: 0; padding-left: 10px; border-left: 3px solid var(--border-color-accent); white-space: pre-line; }
mark { background: #fde68a; color: #1f2937; padding: 0 2px; border-radius: 3px; }
mark sup { font-weight: 700; margin-left: 2px; }
.empty, .note { color: var(--body-text-color-subdued); }
.error { color: var(--error-text-color, #b91c1c); }
"""


def stats_markdown(assistant: Assistant) -> str:
    try:
        s = assistant.stats()
    except IndexMissing:
        return "**Index:** empty — upload articles to create it."
    except (RuntimeError, ValueError, OSError) as exc:
        return f"**Index:** unavailable ({md_escape(str(exc))})"
    return (
        f"**Index:** {_count(s['articles'], 'article')} · {_count(s['chunks'], 'chunk')} · "
        f"last update {md_escape(s['updated_at'] or 'never')} · newest article {md_escape(s['newest_article'] or '–')}"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- the app -------------------------------------------------------------------------------------------------
def _history(turns: list[dict]) -> list[dict[str, str]]:
    pairs = (({"role": "user", "content": t["q"]}, {"role": "assistant", "content": t["a"]}) for t in turns)
    return [m for t, pair in zip(turns, pairs, strict=True) if not t["error"] for m in pair]


def _chat(turns: list[dict], pending: str | None = None) -> list[dict[str, str]]:
    messages = [m for t in turns for m in ({"role": "user", "content": md_escape(t["q"])}, t["bubble"])]
    return messages + ([{"role": "user", "content": md_escape(pending)}] if pending else [])


def respond(
    assistant: Assistant, question: str, turns: list[dict], backend: str, k: float, as_of: str = ""
) -> Iterator[tuple]:
    """One chat turn: stream the answer into the chat, then its sources; errors become a chat message.
    `as_of` is the page's date: the answer uses the articles published by then ("" = today)."""
    if not question:
        yield gr.skip(), gr.skip(), gr.skip()
        return
    bubble = {"role": "assistant", "content": ""}
    chat = [*_chat(turns, question), bubble]
    text, answer = "", None
    try:
        history = _history(turns)[-assistant.settings.web_max_history_messages :]
        check_question(assistant.settings, question, history, int(k), backend)
        day = as_date((as_of or "").strip() or None)  # a bad date is an error message in the chat
        for item in assistant.ask_stream(question, k=int(k), history=history, backend=backend, as_of=day):
            if isinstance(item, Answer):
                answer = item
            else:
                text += item
                bubble["content"] = _MARKER.sub(r"<sup>[\1]</sup>", md_escape(text))
                yield chat, gr.skip(), gr.skip()
        assert answer is not None, "the answer stream ended without an answer"
        bubble["content"] = answer_markdown(answer)
        turn = {"q": question, "a": answer.text, "bubble": bubble, "sources": sources_html(answer), "error": False}
    except Exception as exc:  # shown in the chat; the app keeps serving
        log.warning("question failed: %s", exc)
        log.debug("details", exc_info=exc)
        bubble["content"] = error_markdown(exc)
        panel = f'<div class="sources"><div class="error">{html.escape(str(exc))}</div></div>'
        turn = {"q": question, "a": "", "bubble": bubble, "sources": panel, "error": True}
    turns = [*turns, turn]
    yield chat, turns, turn["sources"]


def create_app(assistant: Assistant, index_lock: threading.Lock | None = None) -> gr.Blocks:
    """The Gradio app over `assistant`'s index (queue configured); qa/app/server.py mounts it beside the API.
    `index_lock` is shared with the API's uploads, so one upload indexes at a time."""
    settings = assistant.settings
    index_lock = index_lock or threading.Lock()
    concurrency = settings.web_ask_concurrency
    limit = settings.web_max_question_chars

    def take_question(question: str, turns: list[dict]) -> tuple[str, list, str, str]:
        question = (question or "").strip()
        if len(question) > limit:  # the browser stops at max_length; other callers are refused here, unread
            refused = {"role": "assistant", "content": error_markdown(ValueError(f"the limit is {limit} characters"))}
            return gr.skip(), [*_chat(turns), refused], "", gr.skip()
        panel = f'<div class="sources"><div class="title">Sources</div><div class="empty">{WAIT}</div></div>'
        return "", _chat(turns, question), question, panel if question else gr.skip()

    def show_sources(turns: list[dict], evt: gr.SelectData) -> str:
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        return turns[index // 2]["sources"] if 0 <= index // 2 < len(turns) else gr.skip()

    def show_timeline(topic: str, since: str, until: str, as_of: str) -> str:
        """The Timeline tab: the story's dated events, oldest first, or the error."""
        try:
            check_topic(settings, topic)
            day = as_date((as_of or "").strip() or None)
            found = assistant.timeline(topic, check_day(since, "since"), check_day(until, "until"), day)
            return timeline_markdown(found)
        except Exception as exc:  # shown in the tab; the app keeps serving
            log.warning("timeline failed: %s", exc)
            return error_markdown(exc, "show the timeline")

    def show_digest(since: str, seen_at: float | None) -> tuple[str, float]:
        """The Digest tab, marking the stories indexed after this browser's last look (`seen_at`, unix time;
        None on its first); now becomes the last look."""
        now = time.time()  # before reading: an article indexed while the digest is read counts as changed next time
        try:
            day = check_day(since, "since")
            if not day:
                raise ValueError("since: a day (YYYY-MM-DD) is required")
            found = assistant.digest(day)
        except Exception as exc:
            log.warning("digest failed: %s", exc)
            return error_markdown(exc, "show the digest"), gr.skip()
        seen = float(seen_at) if isinstance(seen_at, int | float) and not isinstance(seen_at, bool) else None
        return digest_markdown(found, seen), now

    with gr.Blocks(title="news-qa", analytics_enabled=False, delete_cache=GRADIO_CACHE_CLEAN) as app:
        gr.Markdown("## news-qa · ask the news\nAnswers quote the articles, every sentence cited [n].")
        turns = gr.State([])
        pending = gr.State("")
        seen_at = gr.BrowserState(None, storage_key=SEEN_KEY)
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Chat", id="chat-tab", elem_id="chat-tab"), gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    chat = gr.Chatbot(
                        label="Chat",
                        elem_id="chat",
                        height=460,
                        latex_delimiters=[],
                        feedback_options=None,
                        buttons=["copy"],
                        placeholder="Ask about the indexed articles, or pick an example below.",
                    )
                    question = gr.Textbox(
                        show_label=False,
                        placeholder="Ask a question…",
                        elem_id="question",
                        submit_btn="Ask",
                        max_length=limit,
                        autofocus=True,
                    )
                    examples = gr.Examples(EXAMPLES, inputs=[question], label="Examples", api_visibility="private")
                with gr.Column(scale=2):
                    sources = gr.HTML(EMPTY_PANEL, css_template=PANEL_CSS, js_on_load=None, elem_id="sources")
            with gr.Tab("Timeline", id="timeline-tab", elem_id="timeline-tab"):
                with gr.Row():
                    topic = gr.Textbox(
                        label="Story",
                        placeholder="What happened? e.g. a place and an event",
                        elem_id="timeline-topic",
                        max_length=limit,
                        max_lines=1,
                        scale=4,
                    )
                    since = gr.Textbox(
                        label="Since (YYYY-MM-DD)", elem_id="timeline-since", max_length=32, max_lines=1, scale=1
                    )
                    until = gr.Textbox(
                        label="Until (YYYY-MM-DD)", elem_id="timeline-until", max_length=32, max_lines=1, scale=1
                    )
                with gr.Row():
                    show_tl = gr.Button("Show timeline", variant="primary", elem_id="timeline-show", scale=0)
                timeline_out = gr.Markdown(
                    "The story's dated events appear here, oldest first, each cited [n] with the outlets that "
                    "carried it. Articles dated after the page's *Answer as of* day (below) are left out.",
                    elem_id="timeline",
                    latex_delimiters=[],
                    line_breaks=True,
                )
            with gr.Tab("Digest", id="digest-tab", elem_id="digest-tab"):
                with gr.Row():
                    digest_since = gr.Textbox(
                        value=partial(default_since, assistant),  # evaluated per page load
                        label="What's new since (YYYY-MM-DD)",
                        elem_id="digest-since",
                        max_length=32,
                        max_lines=1,
                        scale=1,
                    )
                    gr.Column(scale=3, min_width=0)  # keeps the date box narrow, on the left
                with gr.Row():
                    show_dg = gr.Button("Show what's new", variant="primary", elem_id="digest-show", scale=0)
                digest_out = gr.Markdown(
                    "The stories that gained articles since that day appear here, newest first; the ones that "
                    "changed since this browser last looked are marked.",
                    elem_id="digest",
                    latex_delimiters=[],
                    line_breaks=True,
                )
        with gr.Accordion("Articles and settings", open=True), gr.Row():
            with gr.Column(scale=3):
                files = local_files_only(
                    gr.File(
                        label="Add articles",
                        elem_id="upload",
                        file_count="multiple",
                        height=120,
                    )
                )
                gr.Markdown(
                    f"{', '.join(sorted(SUPPORTED))} · up to {settings.web_max_files} files of "
                    f"{settings.max_file_mb:g} MB each; indexed right away, no restart needed.",
                )
                report = gr.Markdown(label="Upload report", elem_id="upload-report")
            with gr.Column(scale=2):
                stats = gr.Markdown(stats_markdown(assistant), label="Index", elem_id="index-stats")
                backend = gr.Dropdown(list(allowed_backends(settings)), value=settings.backend, label="Answer backend")
                k = gr.Slider(
                    1,
                    settings.web_max_k,
                    value=min(settings.k, settings.web_max_k),
                    step=1,
                    label="Passages to read (k)",
                )
                as_of = gr.Textbox(
                    value=lambda: dt.date.today().isoformat(),  # evaluated per page load: today, shown
                    label="Answer as of (YYYY-MM-DD): later articles are not used, 'this week' is the week before",
                    elem_id="as-of",
                    max_lines=1,
                    max_length=32,
                )

        for start in (question.submit, examples.load_input_event.then):  # typing Enter, or clicking an example
            start(
                take_question,
                [question, turns],
                [question, chat, pending, sources],
                queue=False,
                api_visibility="private",
            ).then(
                partial(respond, assistant),
                [pending, turns, backend, k, as_of],
                [chat, turns, sources],
                concurrency_limit=concurrency,
                concurrency_id="ask",
                show_progress="minimal",
                api_visibility="private",
            )
        chat.select(show_sources, [turns], [sources], queue=False, api_visibility="private")
        chat.clear(lambda: ([], EMPTY_PANEL), None, [turns, sources], queue=False, api_visibility="private")
        files.upload(
            upload_handler(assistant, index_lock, partial(stats_markdown, assistant)),
            [files],
            [report, stats, files],
            api_name="upload",
            concurrency_limit=1,
            concurrency_id="index",
        )
        app.load(lambda: stats_markdown(assistant), None, [stats], queue=False, api_visibility="private")
        gr.Timer(STATS_EVERY_S).tick(
            lambda: stats_markdown(assistant), None, [stats], queue=False, api_visibility="private"
        )
        for start in (topic.submit, show_tl.click):
            start(
                show_timeline,
                [topic, since, until, as_of],
                [timeline_out],
                concurrency_limit=concurrency,
                concurrency_id="ask",
                show_progress="minimal",
                api_visibility="private",
            )
        for start in (digest_since.submit, show_dg.click):
            start(
                show_digest,
                [digest_since, seen_at],
                [digest_out, seen_at],
                concurrency_limit=concurrency,
                concurrency_id="ask",
                show_progress="minimal",
                api_visibility="private",
            )
        for name, fn in endpoints(assistant).items():
            gr.api(fn, api_name=name, concurrency_limit=concurrency, concurrency_id="ask")
    app.queue(max_size=256, default_concurrency_limit=concurrency)
    return app
