"""The index pipeline: ingest -> diff against the store -> chunk -> embed -> commit, embedding only what changed.

Unchanged files are recognised by size and mtime without being read; changed files are parsed and their
articles compared by content hash, so re-indexing an unchanged corpus embeds nothing.

Commits come every `settings.commit_every_chunks` chunks, also inside one file (a JSONL file of thousands of
articles is many commits). A file's stamp and its deletes go in the commit holding its last article, so a run
killed halfway leaves the file unstamped (or with its old stamp): the next run reads it again, finds the
committed articles unchanged by content hash and embeds only the rest.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.indexing.chunk import chunk_article
from qa.indexing.embed import Embedder
from qa.schema import Article, Chunk, IndexReport, Rejection
from qa.settings import Settings
from qa.sources.ingest import IngestError, discover, load_file
from qa.store import FileStamp, Upsert, VectorStore

log = logging.getLogger(__name__)


@dataclass
class _FileWork:
    """What one file changes: articles to (re)embed, article ids to drop, and its new stamp."""

    path: str
    stamp: FileStamp | None
    upserts: list[Article] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    forget_files: list[str] = field(default_factory=list)  # paths whose files are gone (sync)


def label(article: Article) -> str:
    return f"{article.title or article.id} ({article.url or article.origin or article.source})"


def index_paths(
    paths: Iterable[str | Path],
    store: VectorStore,
    embedder: Embedder,
    settings: Settings,
    sync: bool = False,
    sync_under: Sequence[str | Path] | None = None,
) -> IndexReport:
    """Bring the store up to date with `paths`; with `sync`, also drop articles whose files are gone
    (only files under the folders `sync_under`, when given)."""
    started = time.perf_counter()
    report = IndexReport()
    with store.write_lock(settings.lock_timeout_s):
        files, rejected = discover(paths)
        report.rejected += rejected
        # Sync first: a file that moved is then re-added under its new name, not refused as a duplicate.
        gone = _plan_sync(store, report, sync_under) if sync else _FileWork(path="", stamp=None)
        work = [gone, *_plan_files(files, store, settings, report, set(gone.deletes))]
        report.chunks_embedded = _embed_and_commit(work, store, embedder, settings)
    report.seconds = time.perf_counter() - started
    return report


def index_articles(
    articles: Sequence[Article],
    store: VectorStore,
    embedder: Embedder,
    settings: Settings,
    origin: str = "",
    keep: Iterable[str] = (),
) -> IndexReport:
    """Index articles that did not come from files (feeds, API callers), with the same diffing. With `origin`
    (a feed URL), `articles` are all that origin holds now: its other indexed articles are removed, except
    the ids in `keep` (entries still there that could not be loaded this time)."""
    started = time.perf_counter()
    report = IndexReport()
    with store.write_lock(settings.lock_timeout_s):
        work = _FileWork(path="", stamp=None)
        known = store.known_articles(
            ids=[a.id for a in articles], origins=[origin] if origin else [], hashes=[a.content_hash for a in articles]
        )
        kept = set(_diff(articles, known, _hash_owners(known), work, report, set())) | set(keep)
        for gone in sorted(aid for aid, (_, where) in known.items() if origin and where == origin and aid not in kept):
            work.deletes.append(gone)
            report.removed.append(gone)
        report.chunks_embedded = _embed_and_commit([work], store, embedder, settings)
    report.seconds = time.perf_counter() - started
    return report


def _hash_owners(known: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {content_hash: aid for aid, (content_hash, _) in known.items()}


def _plan_files(
    files: list[Path], store: VectorStore, settings: Settings, report: IndexReport, gone: set[str]
) -> list[_FileWork]:
    stamps = store.file_stamps(str(path) for path in files)
    max_bytes = settings.max_file_bytes
    # Read every changed file first, so the duplicate check below knows which indexed texts this run replaces.
    loaded: list[tuple[str, os.stat_result, FileStamp | None, list[Article] | None]] = []
    for path in files:
        key = str(path)
        try:
            st = path.stat()
        except OSError as exc:
            report.rejected.append(Rejection(key, f"cannot read: {exc.strerror}"))
            continue
        old = stamps.get(key)
        if old and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
            loaded.append((key, st, old, None))
            continue
        try:
            articles, bad = load_file(path, max_bytes)
        except (IngestError, OSError) as exc:
            reason = str(exc) if isinstance(exc, IngestError) else f"cannot read: {exc}"
            if old:
                reason += " (the version indexed before is kept)"
            report.rejected.append(Rejection(key, reason))
            continue
        report.rejected += bad
        loaded.append((key, st, old, articles))

    # What this run must diff against: the indexed articles it reads again, those its changed files held, and
    # those whose text it brings (duplicates). Looked up by id, origin and hash, not read whole: O(change).
    read = [(key, old, articles) for key, _, old, articles in loaded if articles is not None]
    stamped = [i for _, old, _ in read if old for i in old.article_ids]
    known = store.known_articles(
        ids=[a.id for *_, articles in read for a in articles] + stamped,
        origins=[key for key, _, _ in read],
        hashes=[a.content_hash for *_, articles in read for a in articles],
    )
    known = {aid: v for aid, v in known.items() if aid not in gone}
    by_origin: dict[str, set[str]] = {}
    for aid, (_, origin) in known.items():
        by_origin.setdefault(origin, set()).add(aid)

    def previous(key: str, old: FileStamp | None) -> set[str]:
        # The stamp's ids, and what was read from the file since: a run killed inside a file committed some of
        # its articles without a new stamp.
        came_from = by_origin.get(key, set())
        return came_from | set(old.article_ids) if old else set(came_from)

    # A text whose article changes or leaves its file in this run is free: another file may take it (contents
    # swapped or moved between files), instead of being refused as a duplicate of a text that is going away.
    new_hash = {a.id: a.content_hash for *_, articles in loaded for a in articles or ()}
    leaving = {aid for key, _, old, articles in loaded if articles is not None for aid in previous(key, old)}
    freed = {aid for aid in leaving | set(new_hash) if aid in known and new_hash.get(aid) != known[aid][0]}
    owners = _hash_owners({aid: v for aid, v in known.items() if aid not in freed})
    seen_ids: set[str] = set()
    plan: list[_FileWork] = []
    left: list[set[str]] = []
    for key, st, old, articles in loaded:
        if articles is None:  # unchanged since it was indexed
            report.unchanged += list(old.article_ids)
            seen_ids.update(old.article_ids)
            continue
        work = _FileWork(path=key, stamp=None)
        kept = _diff(articles, known, owners, work, report, seen_ids)
        left.append(previous(key, old) - set(kept))
        # A file with a refused duplicate gets no stamp, so it is read again next time: once the twin it
        # duplicates is gone, its text is indexed instead of being skipped as unchanged forever.
        if len(kept) == len(articles):
            work.stamp = FileStamp(st.st_size, st.st_mtime_ns, tuple(kept))
        plan.append(work)
    # Deletes are decided once every file is diffed: an article (same id, same text) that moved to a file read
    # later in this run belongs to that file now and stays.
    for work, gone_ids in zip(plan, left, strict=True):
        for gone in sorted(gone_ids):
            if gone in known and gone not in seen_ids:
                work.deletes.append(gone)
                report.removed.append(gone)
    return plan


def _diff(
    articles: Iterable[Article],
    known: dict[str, tuple[str, str]],
    by_hash: dict[str, str],
    work: _FileWork,
    report: IndexReport,
    seen_ids: set[str],
) -> list[str]:
    """Sort articles into added / updated / unchanged / duplicate; returns the ids this source now holds.
    `by_hash` (content hash -> article id) is shared by the whole run, so copies across files are caught."""
    kept: list[str] = []
    for article in articles:
        if article.id in seen_ids:
            report.rejected.append(Rejection(label(article), f"duplicate id '{article.id}' in this run"))
            continue
        twin = by_hash.get(article.content_hash)
        if twin is not None and twin != article.id:
            report.rejected.append(Rejection(label(article), f"duplicate of already indexed article '{twin}'"))
            continue
        seen_ids.add(article.id)
        by_hash[article.content_hash] = article.id
        kept.append(article.id)
        old = known.get(article.id)
        if old is None:
            report.added.append(label(article))
        elif old[0] != article.content_hash:
            report.updated.append(label(article))
        else:
            report.unchanged.append(article.id)
            continue
        work.upserts.append(article)
    return kept


def _plan_sync(store: VectorStore, report: IndexReport, under: Sequence[str | Path] | None = None) -> _FileWork:
    """Drop the articles of indexed files that no longer exist (under the folders `under`, when given)."""
    work = _FileWork(path="", stamp=None)
    stamps = store.file_stamps()
    roots = [Path(r).expanduser().resolve() for r in under or ()]
    for path, stamp in stamps.items():
        if roots and not any(Path(path).is_relative_to(r) for r in roots):
            continue
        if not Path(path).exists():
            work.deletes += list(stamp.article_ids)
            report.removed += list(stamp.article_ids)
            work.forget_files.append(path)
    return work


@dataclass
class _Piece:
    """One commit: whole articles (of one file or several), with the deletes and stamps of the files whose last
    article it holds."""

    articles: list[Article] = field(default_factory=list)
    chunks: int = 0
    deletes: list[str] = field(default_factory=list)
    files: dict[str, FileStamp | None] = field(default_factory=dict)


def _pieces(work: list[_FileWork], chunked: dict[str, list[Chunk]], every: int) -> Iterator[_Piece]:
    """Cut the plan into commits of about `every` chunks, at article boundaries also inside one file (an article
    is never split: one larger than `every` is one commit). A file's deletes and stamp (None: drop it) join the
    piece holding its last article, so a file is stamped only once all of it is committed."""
    piece = _Piece()
    for item in work:
        for article in item.upserts:
            if piece.chunks >= every:
                yield piece
                piece = _Piece()
            piece.articles.append(article)
            piece.chunks += len(chunked[article.id])
        piece.deletes += item.deletes
        if item.path:
            piece.files[item.path] = item.stamp
        piece.files |= {path: None for path in item.forget_files}
    if piece.articles or piece.deletes or piece.files:
        yield piece


def _embed_and_commit(work: list[_FileWork], store: VectorStore, embedder: Embedder, settings: Settings) -> int:
    """Chunk and embed the changed articles and commit them in pieces of about `commit_every_chunks` chunks, so
    a crash loses little; only one piece's vectors are held at a time."""
    articles = [a for w in work for a in w.upserts]
    timing = _Timing(articles=len(articles))
    started = time.perf_counter()
    if settings.ray_address and articles:  # chunk and embed on a Ray cluster instead (qa/indexing/distributed.py)
        from qa.indexing.distributed import ray_embedder

        embedder = ray_embedder(settings)
        chunks = embedder.chunk(articles, settings.chunk_chars, settings.chunk_overlap_chars)
    else:
        chunks = [
            chunk_article(a, settings.chunk_chars, settings.chunk_overlap_chars)
            for a in _bar(articles, desc="chunking", unit="article")
        ]
    timing.chunking = time.perf_counter() - started
    chunked: dict[str, list[Chunk]] = {a.id: c for a, c in zip(articles, chunks, strict=True)}
    total = sum(len(c) for c in chunked.values())
    bar = _bar(None, total=total, unit="chunk", desc="embedding")
    embedded = 0
    for piece in _pieces(work, chunked, settings.commit_every_chunks):
        embedded += _commit_batch(piece, chunked, store, embedder, bar, timing)
    bar.close()
    timing.chunks = embedded
    if embedded and _on_terminal():
        tqdm.write(timing.summary(time.perf_counter() - started), file=sys.stderr)
    return embedded


def _on_terminal() -> bool:
    return sys.stderr.isatty() and not os.environ.get("TQDM_DISABLE")


def _bar(items: Sequence | None, **kwargs) -> tqdm:
    """A progress bar with an ETA on a terminal; nothing at all when stderr is not one (logs, pipes, tests)."""
    n = kwargs.get("total", len(items) if items is not None else 0)
    return tqdm(items, disable=None if n else True, leave=False, dynamic_ncols=True, **kwargs)


@dataclass
class _Timing:
    """Where one run's time went, for the line printed when it finishes."""

    articles: int = 0
    chunks: int = 0
    chunking: float = 0.0
    embedding: float = 0.0
    storing: float = 0.0

    def summary(self, seconds: float) -> str:
        rate = self.chunks / seconds if seconds > 0 else 0.0
        return (
            f"indexed {self.chunks:,} chunks of {self.articles:,} articles in {seconds:.1f} s, {rate:.1f} chunks/s "
            f"(chunking {self.chunking:.1f} s, embedding {self.embedding:.1f} s, storing {self.storing:.1f} s)"
        )


def _commit_batch(
    piece: _Piece, chunked: dict[str, list[Chunk]], store: VectorStore, embedder: Embedder, bar: tqdm, timing: _Timing
) -> int:
    texts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for article in piece.articles:
        for chunk in chunked[article.id]:
            text, sentence_spans = embed_text(article, chunk)
            texts.append(text)
            spans.append(sentence_spans)
    started = time.perf_counter()
    vectors, sentence_vectors = _encode_with_progress(embedder, texts, spans, bar)
    timing.embedding += time.perf_counter() - started
    upserts = []
    offset = 0
    for article in piece.articles:
        chunks = chunked.pop(article.id)  # committed below: its chunks are not needed again
        end = offset + len(chunks)
        upserts.append(Upsert(article, chunks, vectors[offset:end], sentence_vectors[offset:end]))
        offset = end
    started = time.perf_counter()
    if upserts or piece.deletes or piece.files:
        store.commit(upserts, piece.deletes, piece.files, embedder.name)
    timing.storing += time.perf_counter() - started
    return len(texts)


def embed_text(article: Article, chunk: Chunk) -> tuple[str, list[tuple[int, int]]]:
    """What gets embedded (the headline gives each chunk the article's context), and where in it each of the
    chunk's sentences is."""
    prefix = f"{article.title}\n" if article.title else ""
    shift = len(prefix) - chunk.start
    return prefix + chunk.text, [(start + shift, end + shift) for start, end in chunk.sentences]


def _encode_with_progress(
    embedder: Embedder, texts: list[str], spans: list[list[tuple[int, int]]], bar: tqdm
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Encode in length order (little padding per batch, as one big encode call would) with steady progress:
    chunk vectors, and per chunk its sentence vectors."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    sentence_vectors: list[np.ndarray] = [out[:0]] * len(texts)
    step = embedder.batch_size * 4
    for start in range(0, len(order), step):
        ids = order[start : start + step]
        out[ids], per_chunk = embedder.encode_chunks([texts[i] for i in ids], [spans[i] for i in ids])
        for i, vectors in zip(ids, per_chunk, strict=True):
            sentence_vectors[i] = vectors
        bar.update(len(ids))
    return out, sentence_vectors
