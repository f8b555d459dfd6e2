"""The ask pipeline, one typed step after another:

    rewrite (follow-up -> standalone question) -> retrieve (hybrid, fused) -> read (score every sentence,
    rerank passages by their best one) -> abstain or quote (extractive) -> generate (LLM, streamed) -> verify
    (every citation checked against its sentence)

`Assistant.ask_stream` (qa/api.py) runs it; `Assistant.as_retriever` exposes its retrieve-and-read steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel

from qa.answer.extractive import abstain, abstain_threshold, extractive_answer, lead_with_short
from qa.answer.generate import condense_question, pick_sources, stream_answer
from qa.answer.gguf import ModelUnavailable
from qa.answer.history import History, last_question
from qa.answer.retrieve import HybridRetriever
from qa.answer.sentences import Candidate, absent_names, rank_sentences, relation_asked, rerank, stating
from qa.answer.verify import verify
from qa.answer.when import TimeFrame, as_date, time_frame
from qa.indexing.embed import Embedder
from qa.schema import Answer, Passage
from qa.settings import BACKENDS, Settings
from qa.store import Filters, VectorStore
from qa.stories.conflicts import add_versions, conflict_answer, other_versions, reported_by


@dataclass
class Reading:
    """What the retrieve and read steps found: the passages in the order the answer reads them, and every
    sentence of them, best-supporting first (ranked[0].score is the answer's support)."""

    passages: list[Passage]
    ranked: list[Candidate]
    frame: TimeFrame | None = None
    notes: list[str] = field(default_factory=list)  # how the question's time was read, and any fallback
    retrieve_ms: float = 0.0  # embedding the question and fetching the fused pool; the rest of read() is reading


class AskPipeline:
    """The question flow over one store and embedding model; stateless between questions (thread-safe)."""

    def __init__(self, store: VectorStore, embedder: Embedder, settings: Settings):
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.retriever = HybridRetriever(store, embedder, settings)

    # -- the steps ---------------------------------------------------------------------------------------
    def rewrite(self, question: str, history: History | None, model: BaseChatModel | None, backend: str) -> str:
        """The question to search for: a follow-up is rewritten by the model, or read with the previous one."""
        if not history:
            return question
        if model is not None:
            with backend_errors(backend, self.settings):
                rewritten = condense_question(model, question, history)
            if rewritten:
                return rewritten
        return standalone_question(question, history, self.settings.followup_max_words)

    def read(
        self, standalone: str, k: int, filters: Filters, focus: str = "", as_of: dt.date | str | None = None
    ) -> Reading:
        """Retrieve a pool of fused passages as of the question's date, score their sentences, keep the k
        passages with the best ones. Explicit time words filter the pool; an empty window falls back to the
        whole pool (and says so), vague ones only favour articles in their window."""
        s = self.settings
        day = as_date(as_of)
        frame = time_frame(focus or standalone, day)
        if not frame.window and focus and focus != standalone:  # "And in France?" after "... yesterday?"
            frame = time_frame(standalone, day)
        t0 = time.perf_counter()
        qvec = self.embedder.encode_query(standalone)
        depth = max(k, s.rerank_depth)
        dated = _as_of_filters(filters, frame, as_of is not None, with_window=frame.explicit)
        pool = self.retriever.retrieve(standalone, depth, dated, query_vector=qvec)
        notes = []
        if not pool and frame.explicit:
            dated = _as_of_filters(filters, frame, as_of is not None, with_window=False)
            pool = self.retriever.retrieve(standalone, depth, dated, query_vector=qvec)
            if pool:
                notes.append(
                    f'no article is dated within "{frame.phrase}" ({frame.start} to {frame.end}); '
                    "answered from the others"
                )
        elif frame.window and not frame.explicit and not any(frame.fit(p.published) == 1.0 for p in pool):
            notes.append(f'no retrieved article is dated within "{frame.phrase}" ({frame.start} to {frame.end})')
        retrieve_ms = (time.perf_counter() - t0) * 1000
        ranked = rank_sentences(standalone, qvec, pool, self.embedder, s, focus=focus or standalone, frame=frame)
        return Reading(rerank(pool, ranked, s.per_article)[:k], ranked, frame, notes, retrieve_ms)

    def generate(
        self,
        model: BaseChatModel,
        backend: str,
        question: str,
        reading: Reading,
        quoted: Answer,
        timings: dict[str, float],
        t0: float,
    ) -> Generator[str, None, Answer]:
        """Stream the model's words, then check every sentence's citation; quote the articles if none holds.
        `timings` gains "first_token", in ms since `t0` (the question's start)."""
        sources = pick_sources(reading.ranked, self.settings.context_sentences)
        pieces: list[str] = []
        with backend_errors(backend, self.settings):  # only the model call: our own bugs keep their names
            for piece in stream_answer(model, question, sources):
                if not pieces:
                    timings["first_token"] = (time.perf_counter() - t0) * 1000
                pieces.append(piece)
                yield piece
        raw = "".join(pieces)
        checked = verify(raw, sources, self.embedder, self.settings, question)
        if checked.citations:
            text = lead_with_short(checked.text, quoted.short_answer)
            answer = Answer(question, text, checked.citations, passages=reading.passages, support=quoted.support)
            answer.short_answer = quoted.short_answer if text != checked.text else ""
            answer.checks = checked.notes  # repairs, shown with the sources; the chat shows only what it rests on
        else:
            # Retrieval found support but the model declined or wrote nothing checkable: quote the articles.
            answer = quoted
            why = (
                "declined"
                if checked.declined
                else "only restated the question"
                if checked.restated
                else "wrote nothing the sources support"
            )
            answer.checks = checked.notes
            answer.notes = [*answer.notes, f"the model {why}; showing the supporting sentences instead"]
        answer.generated_text = raw
        return answer

    # -- the whole flow ----------------------------------------------------------------------------------
    def run(
        self,
        question: str,
        k: int | None = None,
        history: History | None = None,
        filters: Filters | None = None,
        backend: str | None = None,
        as_of: dt.date | str | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer text as it is written, then the final Answer with verified citations (whose text
        may differ from the streamed one where the citation check repaired it)."""
        from qa.answer.llm import chat_model

        s = self.settings
        backend = backend or s.backend
        question = (question or "").strip()
        if not question:
            raise ValueError("the question is empty")
        if backend not in BACKENDS:
            raise ValueError(f"unknown answer backend '{backend}' (choose from {', '.join(BACKENDS)})")
        model = None if backend == "extractive" else chat_model(s, backend)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone = self.rewrite(question, history, model, backend)
        timings["rewrite"] = (time.perf_counter() - t0) * 1000
        reading = self.read(standalone, k or s.k, filters or Filters(), focus=question, as_of=as_of)
        timings["retrieve"] = reading.retrieve_ms  # the question's vector and the fused pool, as a retriever does
        timings["read"] = (time.perf_counter() - t0) * 1000 - timings["rewrite"] - reading.retrieve_ms  # sentences
        quoted = extractive_answer(standalone, reading.ranked, reading.passages, s)
        absent = absent_names(question, list({c.passage.chunk_id: c.passage for c in reading.ranked}.values()))
        if absent and not quoted.abstained:  # "How tall is the Eiffel Tower?" over a water tower's article
            quoted = abstain(standalone, reading.passages, quoted.support)
            quoted.notes = [f"no retrieved article mentions {', '.join(absent)}"]
        if not quoted.abstained and (relation := relation_asked(standalone)):
            # "What is the capital of France?" is answered by a sentence that states a capital, not one that
            # names Paris as where a meeting was held: quote the best one that does, or decline.
            holding = stating(relation, standalone, reading.ranked)
            if not holding:
                quoted = abstain(standalone, reading.passages, quoted.support)
                quoted.notes = ["no retrieved sentence states what the question asks for"]
            elif holding[0] is not reading.ranked[0]:
                quoted = extractive_answer(standalone, holding, reading.passages, s)
        versions = [] if quoted.abstained else other_versions(reading.ranked, abstain_threshold(s))
        if versions and model is None:  # reports disagree on the figure asked for: show each, latest first
            quoted = conflict_answer(standalone, versions, quoted)
        if model is None or quoted.abstained:  # weak support: decline without asking any model
            answer = quoted
            yield answer.text
        else:
            answer = yield from self.generate(model, backend, standalone, reading, quoted, timings, t0)
            if versions and answer.citations and answer is not quoted:
                answer = add_versions(answer, versions)  # the checker keeps both sides, whatever the model chose
        answer.passages = _with_cited(answer.passages, answer, reading.ranked)
        if not answer.abstained:
            answer.reported_by = reported_by(reading.ranked, abstain_threshold(s))
        answer.question, answer.standalone_question, answer.backend = question, standalone, backend
        answer.as_of = reading.frame.as_of.isoformat() if reading.frame else ""
        answer.notes = [*reading.notes, *answer.notes]
        answer.timings_ms = timings | {"total": (time.perf_counter() - t0) * 1000}
        yield answer


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


_FOLLOW_UP = re.compile(
    r"^(?:and|but|so|also|then|what about|how about)\b|\b(?:he|she|it|they|him|her|them|his|hers|its|their|there)\b"
    r"|\b(?:that|this|those|these)\s*\??$",  # "Who said that?", not "What did Apple announce this week?"
    re.IGNORECASE,
)


def standalone_question(question: str, history: History | None, max_words: int = 6) -> str:
    """Without an LLM, a short follow-up ("And the US?", "Who said that?") is read together with the previous
    question; a short question that stands on its own ("Who won the 2010 World Cup?") is not."""
    previous = last_question(history)
    if not previous or len(question.split()) > max_words or not _FOLLOW_UP.search(question):
        return question
    return f"{previous} {question}"


def _as_of_filters(filters: Filters, frame: TimeFrame, dated: bool, with_window: bool) -> Filters:
    """The user's filters narrowed to articles published by the question's date when one was given (`dated`;
    undated articles stay), and, with_window, to the window its explicit time words name."""
    since, until = filters.since, filters.until
    if with_window and frame.window:
        since = max(filter(None, [since, frame.start.isoformat()]))
        until = min(filter(None, [until, frame.end.isoformat()]))
    return dataclasses.replace(filters, since=since, until=until, as_of=frame.as_of.isoformat() if dated else "")


def _with_cited(passages: list[Passage], answer: Answer, ranked: list[Candidate]) -> list[Passage]:
    """The top-k passages, then any other retrieved passage a citation quotes (a second passage of the best
    article, ranked below the other articles' first ones), so every citation is to a passage shown."""
    shown = {p.chunk_id for p in passages}
    by_chunk = {c.passage.chunk_id: c.passage for c in ranked}
    extra = [by_chunk[c.chunk_id] for c in answer.citations if c.chunk_id not in shown and c.chunk_id in by_chunk]
    return passages + list({p.chunk_id: p for p in extra}.values())
