"""The thin public API: an Assistant owns the loaded model and index; `ask()` and `index()` use a shared one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from qa.answer import Candidate, extractive_answer, rank_sentences, rerank
from qa.embed import Embedder, get_embedder
from qa.gguf import ModelUnavailable
from qa.llm import chat_model
from qa.schema import Answer, Article, IndexReport, Passage
from qa.settings import BACKENDS, Settings
from qa.store import FaissStore, Filters, open_store

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
                self._store = open_store(self.settings, create=create)  # FAISS, or Milvus by vector_uri
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
        backend: str | None = None,
    ) -> Answer:
        """Answer from the indexed articles with cited sentences, or abstain when they do not support one."""
        answer = None
        for item in self.ask_stream(question, k, history, filters, backend):
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
    ) -> Iterator[str | Answer]:
        """Yield the answer text as it is written, then the final Answer with verified citations (whose text
        may differ from the streamed one where the citation check repaired it)."""
        from qa.retrieve import HybridRetriever

        s = self.settings
        backend = backend or s.backend
        question = (question or "").strip()
        if not question:
            raise ValueError("the question is empty")
        if backend not in BACKENDS:
            raise ValueError(f"unknown answer backend '{backend}' (choose from {', '.join(BACKENDS)})")
        embedder, store = self.embedder, self.store()  # loaded once, outside the timings
        model = None if backend == "extractive" else chat_model(s, backend)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with backend_errors(backend, s):
            standalone = self._standalone(question, history, model)
        timings["rewrite"] = (time.perf_counter() - t0) * 1000
        qvec = embedder.encode_query(standalone)
        retriever = HybridRetriever(store, embedder, s)
        k = k or s.k
        pool = retriever.retrieve(standalone, max(k, s.rerank_depth), filters or Filters(), query_vector=qvec)
        ranked = rank_sentences(standalone, qvec, pool, embedder, focus=question)
        passages = rerank(pool, ranked)[:k]
        timings["retrieve"] = (time.perf_counter() - t0) * 1000 - timings["rewrite"]
        quoted = extractive_answer(standalone, ranked, passages, s.abstain_threshold, s.max_answer_sentences)
        if model is None or quoted.abstained:  # weak support: decline without asking any model
            answer = quoted
            yield answer.text
        else:
            with backend_errors(backend, s):
                answer = yield from self._generate(model, standalone, ranked, passages, quoted, timings, t0)
        answer.question, answer.standalone_question, answer.backend = question, standalone, backend
        answer.timings_ms = timings | {"total": (time.perf_counter() - t0) * 1000}
        yield answer

    def _generate(
        self,
        model: BaseChatModel,
        question: str,
        ranked: list[Candidate],
        passages: list[Passage],
        quoted: Answer,
        timings: dict[str, float],
        t0: float,
    ) -> Generator[str, None, Answer]:
        """Stream the model's words, then check every sentence's citation; quote the articles if none holds."""
        from qa.generate import pick_sources, stream_answer
        from qa.verify import verify

        sources = pick_sources(ranked, self.settings.context_sentences)
        pieces: list[str] = []
        for piece in stream_answer(model, question, sources):
            if not pieces:
                timings["first_token"] = (time.perf_counter() - t0) * 1000
            pieces.append(piece)
            yield piece
        raw = "".join(pieces)
        checked = verify(raw, sources, self.embedder, self.settings.min_claim_support)
        if checked.citations:
            answer = Answer(question, checked.text, checked.citations, passages=passages, support=quoted.support)
            answer.notes = checked.notes
        else:
            # Retrieval found support but the model declined or wrote nothing checkable: quote the articles.
            answer = quoted
            why = "declined" if checked.declined else "wrote nothing the sources support"
            answer.notes = [*checked.notes, f"the model {why}; showing the supporting sentences instead"]
        answer.generated_text = raw
        return answer

    def _standalone(self, question: str, history: History | None, model: BaseChatModel | None) -> str:
        if not history:
            return question
        if model is not None:
            from qa.generate import condense_question

            rewritten = condense_question(model, question, history)
            if rewritten:
                return rewritten
        return standalone_question(question, history)


@contextlib.contextmanager
def backend_errors(backend: str, settings: Settings) -> Iterator[None]:
    """A failing model server becomes one clear error naming the backend and what to check."""
    try:
        yield
    except (ModelUnavailable, GeneratorExit):
        raise
    except Exception as exc:  # client libraries raise their own (httpx, openai, ollama) error types
        where = {"openai": settings.openai_base_url, "ollama": settings.ollama_base_url}.get(backend, "")
        hint = f"is the server at {where} running?" if where else "is the model file a valid GGUF?"
        raise ModelUnavailable(
            f"the '{backend}' answer backend failed ({type(exc).__name__}: {exc}); {hint} "
            "(--backend extractive answers without a model)"
        ) from exc


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


def ask_stream(question: str, k: int | None = None, history: History | None = None, **settings: Any):
    """Like ask(), but yields the text as it is generated, then the final Answer."""
    return _assistant(settings).ask_stream(question, k=k, history=history)


def index(paths: Iterable[str | Path] | str | Path, sync: bool = False, **settings: Any) -> IndexReport:
    """`qa.index(["seeds/"])`: embed new or changed articles into the default index."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return _assistant(settings).index(paths, sync=sync)
