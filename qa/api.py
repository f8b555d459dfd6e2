"""The thin public API: an Assistant owns the loaded model and index; `ask()` and `index()` use a shared one."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from langchain_core.retrievers import BaseRetriever

from qa.answer.history import History
from qa.answer.pipeline import AskPipeline
from qa.indexing.embed import Embedder, get_embedder
from qa.schema import Answer, Article, IndexReport
from qa.settings import Settings
from qa.store import Filters, VectorStore, open_store


class Assistant:
    """Loads the embedding model and opens the index once; every method is safe to call from many threads."""

    def __init__(self, settings: Settings | None = None, **overrides: Any):
        self.settings = (settings or Settings()).model_copy(update=overrides)
        self._store: VectorStore | None = None
        self._lock = threading.Lock()

    @cached_property
    def embedder(self) -> Embedder:
        s = self.settings
        return get_embedder(s.embed_model, s.embed_device, s.embed_batch_size, s.embed_precision)

    def store(self, create: bool = False) -> VectorStore:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings, create=create)  # FAISS, or Milvus by vector_uri
            return self._store

    # -- indexing ----------------------------------------------------------------------------------------
    def index(self, paths: Iterable[str | Path], sync: bool = False) -> IndexReport:
        """Index new or changed articles under `paths`; unchanged ones cost no embedding."""
        from qa.indexing.indexer import index_paths

        return index_paths(paths, self.store(create=True), self.embedder, self.settings, sync=sync)

    def index_articles(self, articles: Sequence[Article]) -> IndexReport:
        from qa.indexing.indexer import index_articles

        return index_articles(articles, self.store(create=True), self.embedder, self.settings)

    def stats(self) -> dict:
        return self.store().stats()

    # -- asking ------------------------------------------------------------------------------------------
    def pipeline(self) -> AskPipeline:
        """The question flow over this assistant's index and model (qa/answer/pipeline.py)."""
        return AskPipeline(self.store(), self.embedder, self.settings)

    def ask(
        self,
        question: str,
        k: int | None = None,
        history: History | None = None,
        filters: Filters | None = None,
        backend: str | None = None,
        as_of: dt.date | str | None = None,
    ) -> Answer:
        """Answer from the indexed articles with cited sentences, or abstain when they do not support one.
        `as_of` (a date; default today) answers as of that day: articles published after it are not used and
        "this week" means the days before it."""
        answer = None
        for item in self.ask_stream(question, k, history, filters, backend, as_of):
            answer = item
        assert isinstance(answer, Answer)
        return answer

    def ask_stream(
        self,
        question: str,
        k: int | None = None,
        history: History | None = None,
        filters: Filters | None = None,
        backend: str | None = None,
        as_of: dt.date | str | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer text as it is written, then the final Answer with verified citations (whose text
        may differ from the streamed one where the citation check repaired it). See qa/answer/pipeline.py."""
        yield from self.pipeline().run(question, k, history, filters, backend, as_of)

    # -- stories -----------------------------------------------------------------------------------------
    def timeline(self, topic: str, since: str = "", until: str = "", as_of: dt.date | str | None = None):
        """The dated events of the stories `topic` finds, oldest first, each cited to its sentence and outlets
        (qa/stories/timeline.py). `since` / `until` are ISO days; `as_of` leaves out later articles."""
        from qa.answer.when import as_date
        from qa.stories import timeline

        day = as_date(as_of).isoformat() if as_of is not None else ""
        return timeline.build(self.pipeline().retriever, self.embedder, topic, since, until, day)

    def digest(self, since: str, until: str = "", limit: int = 20):
        """The stories that gained articles since `since` (ISO day), newest first, each with one cited sentence of
        what is new and the outlets carrying it (qa/stories/digest.py)."""
        from qa.stories import digest

        return digest.build(self.store(), self.embedder, since, until, limit)

    def as_retriever(self, k: int | None = None, filters: Filters | None = None) -> BaseRetriever:
        """A LangChain retriever giving the passages `ask()` reads, in the same order (hybrid retrieval plus
        the sentence rerank), as Documents with the citation fields in their metadata."""
        from qa.answer.retrieve import LangChainRetriever

        pipeline, k = self.pipeline(), k or self.settings.k
        return LangChainRetriever(search=lambda query: pipeline.read(query, k, filters or Filters()).passages)


_default: dict[tuple, Assistant] = {}
_default_lock = threading.Lock()


def _assistant(overrides: dict[str, Any]) -> Assistant:
    key = tuple(sorted((k, str(v)) for k, v in overrides.items()))
    with _default_lock:
        if key not in _default:
            _default[key] = Assistant(**overrides)
        return _default[key]


def ask(
    question: str,
    k: int | None = None,
    history: History | None = None,
    as_of: dt.date | str | None = None,
    **settings: Any,
) -> Answer:
    """`qa.ask("Why did Russia decline?")` over the default index; settings as keyword overrides."""
    return _assistant(settings).ask(question, k=k, history=history, as_of=as_of)


def ask_stream(
    question: str,
    k: int | None = None,
    history: History | None = None,
    as_of: dt.date | str | None = None,
    **settings: Any,
):
    """Like ask(), but yields the text as it is generated, then the final Answer."""
    return _assistant(settings).ask_stream(question, k=k, history=history, as_of=as_of)


def index(paths: Iterable[str | Path] | str | Path, sync: bool = False, **settings: Any) -> IndexReport:
    """`qa.index(["seeds/"])`: embed new or changed articles into the default index."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return _assistant(settings).index(paths, sync=sync)
