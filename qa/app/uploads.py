"""Uploads from the page and the HTTP API: safe names, size and count limits, and content-addressed storage, so one
user's file never replaces another's (`<index>/uploads/<sha256[:16]>/<name>`), and a repeat upload is reported."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from qa.schema import IndexReport, Rejection
from qa.sources.ingest import SUPPORTED

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_COPY_BLOCK = 1 << 20


def safe_name(name: str) -> str:
    """A plain file name for an upload, or ValueError: no folders, no `..`, only [A-Za-z0-9._-]."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("", ".", "..") or "\x00" in base:
        raise ValueError("unsafe file name")
    clean = _UNSAFE.sub("_", base).lstrip("._-")[:120]
    if not clean or Path(clean).suffix.lower() not in SUPPORTED:
        raise ValueError(f"unsupported file type (use {', '.join(sorted(SUPPORTED))})")
    return clean


@dataclass
class Saved:
    """What `save_uploads` did: files to index, the ones already stored (same name and bytes), the refused."""

    paths: list[Path] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)  # names whose identical file was uploaded before
    refused: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def save_uploads(files: Iterable[tuple[str, BinaryIO | str]], folder: Path, max_bytes: int, max_files: int) -> Saved:
    """Store each (name, file or path) under `folder/<content hash>/<safe name>`; never overwrites a different
    file. Sizes are counted while copying (a client's size claim is not trusted)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = Saved()
    for i, (name, source) in enumerate(files):
        shown = Path(str(name).replace("\\", "/")).name
        try:
            if i >= max_files:
                raise ValueError(f"more than {max_files} files in one upload")
            clean = safe_name(shown)
            if isinstance(source, str):
                with open(source, "rb") as stream:
                    target, repeat = _store(stream, clean, folder, max_bytes)
            else:
                target, repeat = _store(source, clean, folder, max_bytes)
            out.paths.append(target)
            if repeat:
                out.repeats.append(clean)
        except (ValueError, OSError) as exc:
            out.refused.append((shown, str(exc)))
    return out


def _store(stream: BinaryIO, name: str, folder: Path, max_bytes: int) -> tuple[Path, bool]:
    """Copy `stream` into a temp file beside its final place, hashing as it goes; then move it into place."""
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            while block := stream.read(_COPY_BLOCK):
                size += len(block)
                if size > max_bytes:
                    raise ValueError(f"file is over the {max_bytes / 1e6:g} MB limit")
                digest.update(block)
                out.write(block)
        target = folder / digest.hexdigest()[:16] / name
        if target.resolve().parent.parent != folder.resolve():
            raise ValueError("unsafe file name")
        if target.exists():
            return target, True
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp, target)  # atomic: a reader sees the whole file or none
        return target, False
    finally:
        Path(tmp).unlink(missing_ok=True)


def shown_report(report: IndexReport | None, saved: Saved, folder: Path) -> IndexReport:
    """The report a user sees: file names instead of server paths, the refused uploads and the repeats."""
    shown = IndexReport(rejected=[Rejection(name, reason) for name, reason in saved.refused])
    if report is None:
        return shown
    hide = re.compile(re.escape(str(folder.resolve()) + os.sep) + r"[0-9a-f]{16}" + re.escape(os.sep))
    shown.added = [hide.sub("", a) for a in report.added]
    shown.updated = [hide.sub("", u) for u in report.updated]
    shown.unchanged = report.unchanged
    shown.rejected += [Rejection(Path(r.source).name, hide.sub("", r.reason)) for r in report.rejected]
    shown.chunks_embedded, shown.seconds = report.chunks_embedded, report.seconds
    return shown


def repeat_lines(saved: Saved) -> list[tuple[str, str]]:
    return [("already indexed", f"{name} (the same file was uploaded before)") for name in saved.repeats]
