"""`qa serve`: the Gradio chat mounted in a FastAPI app beside the JSON API (qa/app/http_api.py), on one port,
bound to 127.0.0.1 by default; one login for both (USER:PASS for the page, a bearer token or Basic for the API),
request bodies capped, and Gradio's fetch-a-URL-for-the-caller route closed."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import gradio as gr
import uvicorn

from qa.api import Assistant
from qa.settings import Settings

log = logging.getLogger(__name__)

# `/gradio_api/file=<url>` makes Gradio download any public URL for the caller (and `/proxy=` proxies some):
# a server answering from its own articles has no reason to fetch for anyone.
_REMOTE = re.compile(r"/(?:file|proxy)=\s*(?:[a-z][a-z0-9+.-]+:|[/\\]{2})", re.IGNORECASE)
START_DEADLINE_S = 60.0
UPLOADS = ("/api/index", "/gradio_api/upload")  # the only routes taking files; the rest take small JSON
MAX_JSON_BYTES = 2_000_000  # a question, 40 history messages and the Gradio payloads fit many times over
OPEN = ("/api/health", "/api/docs", "/api/openapi.json", "/api/docs/oauth2-redirect")  # no credentials needed


@dataclass(frozen=True)
class Credentials:
    """Who may use the server: USER:PASS (page login, or Basic auth on the API) and/or a bearer token."""

    user: str = ""
    password: str = ""
    token: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """From web_auth / web_token, or the files they name (kept out of argv, so `ps` does not show them)."""
        auth = settings.web_auth.get_secret_value() or _read_secret(settings.web_auth_file, "web_auth_file")
        token = settings.web_token.get_secret_value() or _read_secret(settings.web_token_file, "web_token_file")
        if auth and (":" not in auth or not auth.partition(":")[0] or not auth.partition(":")[2]):
            raise ValueError("the login must be USER:PASS (from --auth-file, $QA_WEB_AUTH or --auth)")
        user, _, password = auth.partition(":")
        return cls(user, password, token)

    @property
    def enabled(self) -> bool:
        return bool(self.user or self.token)

    def login(self, user: str, password: str) -> bool:
        """The page's check: the user and password, or any user name with the token as the password."""
        by_user = bool(self.user) and _same(user, self.user) and _same(password, self.password)
        return by_user or (bool(self.token) and _same(password, self.token))

    def page_auth(self) -> Callable[[str, str], bool] | None:
        return self.login if self.enabled else None

    def allows(self, authorization: str) -> bool:
        """The API's check: `Authorization: Bearer <token>`, or Basic with the login."""
        scheme, _, value = authorization.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self.token:
            return _same(value, self.token)
        if scheme == "basic" and self.user:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return self.login(user, password)
        return False

    def refusal(self) -> str:
        what = "a bearer token (Authorization: Bearer ...)" if self.token else "Basic auth with the login"
        return f"authentication required: send {what}"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _read_secret(path: Path | None, what: str) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {what} {path}: {exc}") from exc


class Gate:
    """ASGI wrapper, before Gradio or the API read anything: API calls without credentials (401), any
    `file=`/`proxy=` path naming a URL (403), request bodies over the limit (413, by Content-Length or
    as they stream). The page's own login is Gradio's."""

    def __init__(self, app: Any, credentials: Credentials, max_upload: int, max_body: int = MAX_JSON_BYTES):
        self.app, self.credentials, self.max_upload, self.max_body = app, credentials, max_upload, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = unquote(scope.get("path", ""))
        headers = dict(scope.get("headers") or ())
        guarded = self.credentials.enabled and path.startswith(("/api/", "/v1/")) and path not in OPEN
        if guarded and not self.credentials.allows(headers.get(b"authorization", b"").decode("latin-1")):
            return await _refuse(send, 401, self.credentials.refusal(), [(b"www-authenticate", b"Bearer")])
        if _REMOTE.search(path):
            return await _refuse(send, 403, "this server does not fetch URLs for callers; upload the file itself")
        limit = self.max_upload if path in UPLOADS else self.max_body
        too_big = f"the request is over the {limit / 1e6:g} MB limit"
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await _refuse(send, 413, too_big)
        received, over, started = 0, False, False

        async def counting_receive() -> dict:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body without a Content-Length
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _refuse(send, 413, too_big)


async def _refuse(send: Callable, status: int, message: str, extra: list | None = None) -> None:
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build(assistant: Assistant, credentials: Credentials, host: str, port: int) -> Any:
    """The ASGI app: the API routes first, then the Gradio page mounted at /, inside the limits."""
    from qa.app.http_api import Api
    from qa.app.web import THEME, create_app

    settings = assistant.settings
    api = Api(assistant)
    app = gr.mount_gradio_app(
        api.build(),
        create_app(assistant, index_lock=api.index_lock),
        path="/",
        server_name=host,
        server_port=port,
        footer_links=["api"],
        auth=credentials.page_auth(),
        max_file_size=settings.max_file_bytes,
        show_error=True,
        theme=THEME,
        ssr_mode=False,
        mcp_server=False,
    )
    max_upload = settings.web_max_files * settings.max_file_bytes + (1 << 20)  # a full upload and its form fields
    return Gate(app, credentials, max_upload)


class Running:
    """A server started with block=False: its URL, and close() to stop it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str):
        self.server, self.thread, self.url = server, thread, url

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run(app: Any, host: str, port: int, block: bool) -> Running | None:
    """Serve `app` with uvicorn: in this thread until Ctrl-C, or in a background one (returned, to close)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if block:
        print(f"news-qa on http://{host}:{port}/ (API docs at /api/docs); Ctrl-C stops it", flush=True)
        server.run()
        return None
    thread = threading.Thread(target=server.run, name=f"qa-serve-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_DEADLINE_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the server did not start on {host}:{port} (is the port in use?)")
        time.sleep(0.02)
    return Running(server, thread, f"http://{host}:{port}/")


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    block: bool = True,
) -> Running | None:
    """Start the chat and the HTTP API on http://host:port; blocks unless `block=False` (then `.close()` the
    returned server). `auth` (USER, PASS) overrides settings.web_auth; the token is settings.web_token."""
    from qa.answer.generate import warm_up
    from qa.answer.llm import chat_model

    credentials = Credentials.from_settings(settings)
    if auth:
        credentials = replace(credentials, user=auth[0], password=auth[1])
    if host not in ("127.0.0.1", "localhost", "::1") and not credentials.enabled:
        log.warning("serving on %s without a login or token: anyone who can reach it may ask and upload", host)
    assistant = Assistant(settings)
    _ = assistant.embedder  # load the models before the first question, not during it
    if settings.backend != "extractive":
        try:
            model = chat_model(settings, settings.backend)
        except Exception as exc:  # the chat shows the error on each question; the app keeps serving
            log.warning("answer backend %s is not available: %s", settings.backend, exc)
        else:
            if settings.backend == "llamacpp":  # a local model: evaluate the system prompt now, once
                try:
                    warm_up(model)
                except Exception as exc:  # only the first answer is slower
                    log.warning("could not pre-evaluate the system prompt: %s", exc)
    return run(build(assistant, credentials, host, port), host, port, block)
