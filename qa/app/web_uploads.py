"""The web page's uploads: Gradio's file block made to refuse URLs, the handler that stores and indexes what a
browser sends (content-addressed, qa/app/uploads.py) and the report shown for it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import gradio as gr
from gradio_client.utils import is_http_url_like

from qa.api import Assistant
from qa.app.api_models import error_of
from qa.app.render import md_escape
from qa.app.uploads import Saved, repeat_lines, save_uploads, shown_report
from qa.schema import IndexReport


def local_files_only(block: gr.File) -> gr.File:
    """Make `block` refuse a URL a caller puts in its payload: Gradio downloads public URLs for anyone calling
    the upload endpoint with `{"path": "https://..."}`; uploads are files the caller sends. (Patched on the
    instance: a gr.File subclass would make Gradio write a .pyi stub beside this module.)"""
    move, async_move = block.move_resource_to_block_cache, block.async_move_resource_to_block_cache

    def local(url_or_file_path: str | Path | None) -> str | None:
        _no_url(url_or_file_path)
        return move(url_or_file_path)

    async def async_local(url_or_file_path: str | Path | None) -> str | None:
        _no_url(url_or_file_path)
        return await async_move(url_or_file_path)

    block.move_resource_to_block_cache, block.async_move_resource_to_block_cache = local, async_local
    return block


def _no_url(value: object) -> None:
    if is_http_url_like(value):
        raise gr.Error("this server does not fetch URLs for callers; upload the file itself")


def _drop_temp(paths: list[str]) -> None:
    """Delete Gradio's temp copies of an upload (<GRADIO_TEMP_DIR>/<hash>/<name>) once they are stored."""
    for path in paths:
        try:
            Path(path).unlink(missing_ok=True)
            Path(path).parent.rmdir()
        except OSError:  # not empty, or already gone
            pass


def report_markdown(report: IndexReport, saved: Saved | None = None) -> str:
    """The upload's report as Markdown (every name and reason escaped)."""
    lines = [f"**Indexed:** {report.counts()}"]
    pairs = report.lines() + (repeat_lines(saved) if saved else [])
    lines += [f"- {what}: {md_escape(item)}" for what, item in pairs]
    return "\n".join(lines)


def upload_handler(assistant: Assistant, index_lock: threading.Lock, stats: Callable[[], str]) -> Callable:
    """The upload event's function: index the files (stored under <index>/uploads/<content hash>/) and return
    the report, the new index stats (`stats()`) and an emptied file block. `index_lock` is the API's too."""
    settings = assistant.settings

    def upload(paths: list[str] | None, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:  # noqa: B008
        """Index uploaded articles (stored under <index>/uploads/<content hash>/); the report and new stats."""
        if not paths:
            return "No files received.", stats(), None
        progress(0.05, desc="Saving files")
        folder = (settings.index_dir / "uploads").resolve()
        try:
            saved = save_uploads(((p, p) for p in paths), folder, settings.max_file_bytes, settings.web_max_files)
        finally:
            _drop_temp(list(paths))
        report = None
        if saved.paths:
            progress(0.2, desc=f"Indexing {len(saved.paths)} file(s)")
            try:
                with index_lock:
                    report = assistant.index(saved.paths)
            except Exception as exc:
                return f"⚠️ **Indexing failed:** {md_escape(error_of(exc).message)}", stats(), None
        return report_markdown(shown_report(report, saved, folder), saved), stats(), None

    return upload
