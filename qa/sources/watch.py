"""`qa watch`: keep the index up to date as articles arrive in folders (watchdog) and in feeds (polled).

Folder events are debounced: a burst of writes becomes one incremental run (unchanged files cost a stat, not
a read) once the folders have been quiet for `watch_debounce_s`, or at the latest after `watch_max_delay_factor`
times that (both in Settings). Files removed from a watched folder are removed from the index. A bad file is
rejected with its reason and the watch goes on; a failed run (the index locked by another writer, say) is retried.

Ctrl-C (or SIGTERM) stops at once and cleanly: the observer stops, a run in progress is interrupted, but a
commit in progress finishes first (every commit is atomic anyway, and what was committed stays). Readers of
the index (`qa serve`, any `Assistant`) switch to the new index between questions on their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from qa.errors import QAError
from qa.schema import IndexReport, Rejection
from qa.settings import Settings
from qa.text import for_terminal

log = logging.getLogger(__name__)

_INDEX_EVENTS = {"created", "modified", "deleted", "moved", "closed"}  # not "opened": reading is no change
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

Say = Callable[[str], None]


def parse_duration(text: str) -> float:
    """'30s', '15m', '1h30m', '2h', '90' (seconds) -> seconds; ValueError for anything else."""
    text = str(text).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
        pos = match.end()
    if not text or pos != len(text) or total <= 0:
        raise ValueError(f"'{text}' is not a duration (use e.g. 30s, 15m, 1h)")
    return total


def report_lines(report: IndexReport, hide: Sequence[Rejection] = ()) -> list[str]:
    """The terminal's lines of a report (`qa index` and `qa watch`)."""
    return [f"{what:9} {item}" for what, item in report.lines(hide)]


class _Changes:
    """Collects file-system events (watchdog handler) and says when the folders have been quiet long enough."""

    def __init__(self, wake: threading.Event, roots: Sequence[Path], ignore: Sequence[Path]):
        self._wake = wake
        self._roots = list(roots)
        self._ignore = [p.resolve() for p in ignore]
        self._lock = threading.Lock()
        self.first = self.last = 0.0  # monotonic times of the first and the last pending event; 0: none

    def dispatch(self, event) -> None:  # watchdog calls this for every event
        if event.event_type not in _INDEX_EVENTS or (event.is_directory and event.event_type == "modified"):
            return
        raw = [p for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if not any(self._relevant(Path(p.decode() if isinstance(p, bytes) else p)) for p in raw):
            return
        log.debug("change: %s %s", event.event_type, event.src_path)
        self.touch()

    def _relevant(self, path: Path) -> bool:
        for root in self._roots:
            if path.is_relative_to(root) and any(p.startswith(".") for p in path.relative_to(root).parts):
                return False  # hidden files and folders (editor swap files, ...) are not read anyway
        resolved = path.resolve()
        return not any(resolved.is_relative_to(root) for root in self._ignore)

    def touch(self, at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
        with self._lock:
            self.first = self.first or now
            self.last = max(self.last, now)
        self._wake.set()

    def due_in(self, debounce_s: float, max_delay_factor: float) -> float | None:
        """Seconds until a run is due (0: now), or None when nothing is pending."""
        with self._lock:
            if not self.first:
                return None
            now = time.monotonic()
            return max(0.0, min(self.last + debounce_s, self.first + debounce_s * max_delay_factor) - now)

    def take(self) -> None:
        with self._lock:
            self.first = self.last = 0.0


def watch(
    dirs: Sequence[str | Path],
    settings: Settings,
    feeds: Sequence[str] = (),
    every_s: float | None = None,
    debounce_s: float | None = None,
    stop: threading.Event | None = None,
    say: Say | None = None,
) -> None:
    """Index `dirs` and `feeds` now, then again whenever a folder changes or every `every_s` for the feeds,
    until `stop` is set (or SIGINT/SIGTERM in the main thread). Prints what changed through `say`. The timings
    default to settings.feed_every_s and settings.watch_debounce_s; each feed's run is bounded by
    settings.feed_budget_s (qa.sources.feeds), so the folders are never stuck behind a slow feed for long."""
    from watchdog.observers import Observer

    from qa.api import Assistant
    from qa.indexing.indexer import index_paths
    from qa.sources.feeds import Limits, index_urls

    say = say or (lambda line: print(for_terminal(line), flush=True))  # names and titles may hold ESC, BEL, ...
    every_s = settings.feed_every_s if every_s is None else every_s
    debounce_s = settings.watch_debounce_s if debounce_s is None else debounce_s
    retry_s = settings.watch_retry_s
    roots = [Path(d).expanduser().resolve() for d in dirs]
    for root, given in zip(roots, dirs, strict=True):
        if not root.is_dir():
            raise ValueError(f"{given}: no such folder")
    if not roots and not feeds:
        raise ValueError("nothing to watch: give folders and/or --feed URL")
    stop = stop or threading.Event()
    wake = threading.Event()
    assistant = Assistant(settings)
    embedder = assistant.embedder  # loaded once, before the first event
    interrupt = _Interrupt(stop, wake)
    store = _GuardedStore(assistant.store(create=True), interrupt)
    limits = Limits.of(settings)
    index_dir = Path(settings.index_dir).expanduser().resolve()
    changes = _Changes(wake, roots, ignore=[index_dir])
    shown: dict[str, list[Rejection]] = {}

    def run(what: str, index: Callable[[], IndexReport], first: bool) -> bool:
        now = time.strftime("%H:%M:%S")
        try:
            with interrupt.running():
                report = index()
        except KeyboardInterrupt:
            say(f"[{now}] {what}: interrupted; what was committed stays, the rest is indexed on the next run")
            return False
        except (QAError, RuntimeError, ValueError, OSError) as exc:  # the watch goes on; the next run retries
            say(f"[{now}] {what}: failed ({exc}); trying again in {retry_s:g}s")
            return False
        inside = str(index_dir) + os.sep  # an index kept inside a watched folder is not an article
        report.rejected = [r for r in report.rejected if not r.source.startswith(inside)]
        lines = report_lines(report, hide=shown.get(what, []))
        shown[what] = list(report.rejected)  # a file still bad is not reported again and again
        if first or lines:
            say(f"[{now}] {what}: {report.summary()}")
            for line in lines:
                say(f"  {line}")
        return True

    def index_dirs() -> IndexReport:
        return index_paths(roots, store, embedder, settings, sync=True, sync_under=roots)

    def index_feeds() -> IndexReport:
        return index_urls(list(feeds), store, embedder, settings, limits)

    observer = Observer()
    for root in roots:
        observer.schedule(changes, str(root), recursive=True)
    observer.start()  # before the first run, so nothing that arrives during it is missed
    with interrupt.on_signals():
        try:
            where = ", ".join(str(d) for d in dirs)
            polls = f"{len(feeds)} feed(s) every {every_s:g}s" if feeds else ""
            say(f"watching {' and '.join(x for x in (where, polls) if x)} into {settings.index_dir}/ (Ctrl-C stops)")
            if roots and not run("folders", index_dirs, first=True):
                changes.touch(time.monotonic() + retry_s)
            next_poll = time.monotonic() if feeds else float("inf")
            first_poll = True
            while not stop.is_set():
                if time.monotonic() >= next_poll:
                    ok = run("feeds", index_feeds, first=first_poll)
                    first_poll = first_poll and not ok
                    next_poll = time.monotonic() + (every_s if ok else min(every_s, retry_s))
                    continue
                due = changes.due_in(debounce_s, settings.watch_max_delay_factor)
                if due == 0:
                    changes.take()  # events from now on count for the next run
                    if not run("folders", index_dirs, first=False):
                        changes.touch(time.monotonic() + retry_s)
                    continue
                waits = [w for w in (due, next_poll - time.monotonic(), 5.0) if w is not None]
                wake.wait(max(0.01, min(waits)))
                wake.clear()
        finally:
            observer.stop()
            observer.join(timeout=10)
    say("stopped")


class _Interrupt:
    """Ctrl-C / SIGTERM stop the watch at once: a run in progress is interrupted (its embedding work dropped),
    except inside a commit, which finishes first. Either way the index stays whole (commits are atomic)."""

    def __init__(self, stop: threading.Event, wake: threading.Event):
        self.stop, self.wake = stop, wake
        self.in_run = self.in_commit = self.deferred = False

    def handler(self, signum, frame) -> None:
        self.stop.set()
        self.wake.set()
        if not self.in_run:
            return
        if self.in_commit:
            self.deferred = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.in_run = True
        try:
            yield
        finally:
            self.in_run = False

    @contextlib.contextmanager
    def committing(self) -> Iterator[None]:
        self.in_commit = True
        try:
            yield
        finally:
            self.in_commit = False
            if self.deferred:
                self.deferred = False
                raise KeyboardInterrupt

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals only reach the main thread; elsewhere `stop` ends the watch
            return
        previous = {sig: signal.signal(sig, self.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class _GuardedStore:
    """The store, with each commit protected from an interrupt until it is done."""

    def __init__(self, store, interrupt: _Interrupt):
        self._store, self._interrupt = store, interrupt

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def commit(self, *args, **kwargs):
        with self._interrupt.committing():
            return self._store.commit(*args, **kwargs)
