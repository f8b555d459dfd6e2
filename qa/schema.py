"""The records that flow between stages: Article -> Chunk -> Passage -> Answer (with Citations)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Article:
    """One news article as ingested; `id` is stable across runs, `content_hash` changes with its text."""

    id: str
    title: str
    text: str
    source: str = ""  # file path or outlet name
    url: str = ""
    published: str = ""  # ISO date when it could be parsed, else as given
    content_hash: str = ""
    origin: str = ""  # the file it was read from (for --sync), empty for non-file sources


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one article, with its character span in the article text."""

    chunk_id: str  # "<article id>:<ordinal>"
    article_id: str
    ordinal: int
    start: int
    end: int
    text: str  # == article.text[start:end]
    sentences: tuple[tuple[int, int], ...]  # sentence spans, in article offsets


@dataclass
class Passage:
    """A retrieved chunk with the article fields a citation needs and its retrieval scores."""

    chunk_id: str
    article_id: str
    title: str
    source: str
    url: str
    published: str
    text: str
    start: int
    end: int
    sentences: tuple[tuple[int, int], ...]
    score: float = 0.0  # fused rank score (higher is better)
    dense: float = 0.0  # cosine similarity to the question
    sparse_rank: int | None = None  # rank in the BM25 list, None if BM25 did not find it
    outlet: str = ""  # who published it (qa.stories.signals.outlet)
    also_in: tuple[str, ...] = ()  # the other outlets that carried a copy of this article (its copy group)
    story_id: str = ""  # the story (event) its article belongs to; "" in an index without stories yet
    # One unit vector per sentence (a numpy array, rows in `sentences` order), stored at index time; None: not stored
    sentence_vectors: Any = field(default=None, repr=False, compare=False)


@dataclass
class Citation:
    """The exact quoted text behind one [n] marker, with its span in the article."""

    n: int
    article_id: str
    chunk_id: str
    title: str
    source: str
    url: str
    published: str
    quote: str
    start: int
    end: int
    score: float
    outlet: str = ""
    also_in: list[str] = field(default_factory=list)  # other outlets that carried the same text

    def to_dict(self) -> dict:
        return asdict(self)

    def outlets_label(self) -> str:
        """ "AP; also in USA Today, NBC News": who carried the quoted text."""
        label = self.outlet or ""
        if self.also_in:
            label = f"{label}; also in {', '.join(self.also_in)}" if label else ", ".join(self.also_in)
        return label


@dataclass
class Answer:
    """What `ask()` returns: the answer text with [n] markers, its citations, and whether it abstained."""

    question: str
    text: str
    citations: list[Citation] = field(default_factory=list)
    abstained: bool = False
    passages: list[Passage] = field(default_factory=list)
    support: float = 0.0  # how well the best sentence supports an answer; below the threshold it abstains
    standalone_question: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    backend: str = "extractive"
    generated_text: str = ""  # the model's words before citation checking ("" when no model was asked)
    notes: list[str] = field(default_factory=list)  # how it was answered: a time window's fallback, quotes instead
    checks: list[str] = field(default_factory=list)  # what the citation check repaired in the model's answer
    short_answer: str = ""  # the entity or number that answers, shown in bold before the cited sentence
    as_of: str = ""  # the date the question was answered as of (ISO)
    reported_by: list[str] = field(default_factory=list)  # outlets whose articles state the short answer

    def to_dict(self) -> dict:
        """The stable JSON shape used by `qa ask --json` and the web API."""
        return {
            "question": self.question,
            "standalone_question": self.standalone_question or self.question,
            "text": self.text,
            "abstained": self.abstained,
            "support": round(self.support, 4),
            "citations": [c.to_dict() for c in self.citations],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "backend": self.backend,
            "notes": self.notes,
            "checks": self.checks,
            "short_answer": self.short_answer,
            "as_of": self.as_of,
            "reported_by": self.reported_by,
        }

    def to_markdown(self) -> str:
        if not self.citations:
            return self.text
        lines = [self.text, ""]
        if len(self.reported_by) > 1:
            lines += [f"*Reported by {len(self.reported_by)} outlets: {', '.join(self.reported_by)}.*", ""]
        lines.append("**Sources**")
        for c in self.citations:
            where = c.url or c.source
            meta = ", ".join(x for x in (c.outlets_label(), c.published, where) if x)
            lines.append(f"[{c.n}] *{c.title or c.article_id}*" + (f" ({meta})" if meta else ""))
            lines.append(f"> {c.quote.strip()}")
        return "\n".join(lines)


@dataclass
class Rejection:
    """An input that was not indexed, and why (shown to the user, never silently dropped)."""

    source: str
    reason: str


@dataclass
class IndexReport:
    """What one `index()` run did, article by article."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    chunks_embedded: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    @classmethod
    def merge(cls, *reports: IndexReport) -> IndexReport:
        """One report for several runs (e.g. files, then feeds)."""
        out = cls()
        for r in reports:
            out.added += r.added
            out.updated += r.updated
            out.unchanged += r.unchanged
            out.removed += r.removed
            out.rejected += r.rejected
            out.chunks_embedded += r.chunks_embedded
            out.seconds += r.seconds
        return out

    def lines(self, hide: Sequence[Rejection] = ()) -> list[tuple[str, str]]:
        """(what happened, to which article or file) per change and per rejection, in the order `qa index`
        prints them; rejections in `hide` were shown before. Front ends format the pairs their own way."""
        out = [("added", item) for item in self.added] + [("updated", item) for item in self.updated]
        out += [("removed", item) for item in self.removed]
        out += [("rejected", f"{r.source}: {r.reason}") for r in self.rejected if r not in hide]
        return out

    def counts(self) -> str:
        return (
            f"added {len(self.added)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}, "
            f"removed {len(self.removed)}, rejected {len(self.rejected)}"
        )

    def summary(self) -> str:
        return f"{self.counts()} ({self.chunks_embedded} chunks embedded in {self.seconds:.1f}s)"
