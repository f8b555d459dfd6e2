"""The thin public API: an Assistant owns the loaded model and index; `ask()` and `index()` use a shared one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from qa.answer import extractive_answer
from qa.embed import Embedder, get_embedder
from qa.schema import Answer, Article, IndexReport
from qa.settings import Settings
from qa.store import FaissStore, Filters

History = Sequence[Any]  # [{"role": "user"|"assistant", "content": str}, ...] or [(user, assistant), ...]


class Assistant:
    """Loads the embedding model and opens the index once; every method is safe to call from many threads."""

    def __init__(self, settings: Settings | None = None, **overrides: Any):
        self.settings = (settings or Settings()).model_copy(update=overrides)
        self._store: FaissStore | None = None
        self._lock = threading.Lock()

    @cached_property
    def embedder(self) -> Embedder:
        s = self.settings
        return get_embedder(s.embed_model, s.embed_device, s.embed_batch_size)

    def store(self, create: bool = False) -> FaissStore:
        with self._lock:
            if self._store is None:
                self._store = FaissStore(self.settings.index_dir, create=create)
            return self._store

    # -- indexing ----------------------------------------------------------------------------------------
    def index(self, paths: Iterable[str | Path], sync: bool = False) -> IndexReport:
        """Index new or changed articles under `paths`; unchanged ones cost no embedding."""
        from qa.indexer import index_paths

        return index_paths(paths, self.store(create=True), self.embedder, self.settings, sync=sync)

    def index_articles(self, articles: Sequence[Article]) -> IndexReport:
        from qa.indexer import index_articles

        return index_articles(articles, self.store(create=True), self.embedder, self.settings)

    def stats(self) -> dict:
        return self.store().stats()

    # -- asking ------------------------------------------------------------------------------------------
    def ask(
        self,
        question: str,
        k: int | None = None,
        history: History | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        """Answer from the indexed articles with cited sentences, or abstain when they do not support one."""
        from qa.retrieve import HybridRetriever

        question = (question or "").strip()
        if not question:
            raise ValueError("the question is empty")
        embedder, store = self.embedder, self.store()  # loaded once, outside the timings
        t0 = time.perf_counter()
        standalone = standalone_question(question, history)
        qvec = embedder.encode_query(standalone)
        retriever = HybridRetriever(store, embedder, self.settings)
        passages = retriever.retrieve(standalone, k or self.settings.k, filters or Filters(), query_vector=qvec)
        t1 = time.perf_counter()
        answer = extractive_answer(
            standalone,
            qvec,
            passages,
            embedder,
            self.settings.abstain_threshold,
            self.settings.max_answer_sentences,
            focus=question,
        )
        answer.question = question
        answer.standalone_question = standalone
        answer.timings_ms = {"retrieve": (t1 - t0) * 1000, "total": (time.perf_counter() - t0) * 1000}
        return answer


def standalone_question(question: str, history: History | None) -> str:
    """Without an LLM, a short follow-up ("And the US?") is read together with the previous question."""
    if not history:
        return question
    previous = ""
    for turn in reversed(list(history)):
        if isinstance(turn, dict):
            if turn.get("role") == "user" and str(turn.get("content", "")).strip():
                previous = str(turn["content"])
                break
        elif isinstance(turn, (list, tuple)) and turn and turn[0]:
            previous = str(turn[0])
            break
    if not previous or len(question.split()) > 6:
        return question
    return f"{previous} {question}"


_default: dict[tuple, Assistant] = {}
_default_lock = threading.Lock()


def _assistant(overrides: dict[str, Any]) -> Assistant:
    key = tuple(sorted((k, str(v)) for k, v in overrides.items()))
    with _default_lock:
        if key not in _default:
            _default[key] = Assistant(**overrides)
        return _default[key]


def ask(question: str, k: int | None = None, history: History | None = None, **settings: Any) -> Answer:
    """`qa.ask("Why did Russia decline?")` over the default index; settings as keyword overrides."""
    return _assistant(settings).ask(question, k=k, history=history)


def index(paths: Iterable[str | Path] | str | Path, sync: bool = False, **settings: Any) -> IndexReport:
    """`qa.index(["seeds/"])`: embed new or changed articles into the default index."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return _assistant(settings).index(paths, sync=sync)
