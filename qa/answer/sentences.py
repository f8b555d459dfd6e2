"""Reading the retrieved passages sentence by sentence: each sentence's support for the question (a fitted
logistic model over evidence features, qa/answer/support.py), and passages reranked by their best sentence."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from qa.answer import answer_type, places
from qa.answer.support import FEATURES, SupportModel, bm25_feature, lead, load_model, log_rank
from qa.answer.when import TimeFrame, parse_iso, resolve
from qa.indexing.embed import Embedder
from qa.schema import Citation, Passage
from qa.settings import Settings
from qa.text import STOPWORDS, stem, stems

MIN_SENTENCE_CHARS = 25
_ASKS = re.compile(r"\?[\"'”’)\]]*\s*$")
_TEASER = re.compile(r"^\W*[A-Za-z][\w '’&-]{1,40}:(?=[^\s\d/])")  # "More:Popeyes ..."; not "11:30", "https://"
_COL = {name: i for i, name in enumerate(FEATURES)}


@dataclass
class Candidate:
    passage_rank: int
    passage: Passage
    start: int  # article offsets
    end: int
    text: str
    vector: np.ndarray | None = None  # stored at index time; None: embedded when scored
    dense: float = 0.0
    lexical: float = 0.0
    score: float = 0.0  # the support: the model's probability that this sentence answers the question
    features: np.ndarray | None = field(default=None, repr=False)
    short: str = ""  # the entity or number that answers, when the question asks for a kind of thing


def candidates(passages: list[Passage]) -> list[Candidate]:
    """Every sentence of the passages once (overlapping chunks repeat sentences), in passage rank order."""
    seen: set[tuple[str, int]] = set()
    out: list[Candidate] = []
    for rank, p in enumerate(passages):
        for i, (start, end) in enumerate(p.sentences):
            text = p.text[start - p.start : end - p.start]
            if (p.article_id, start) in seen or len(text) < MIN_SENTENCE_CHARS:
                continue
            seen.add((p.article_id, start))
            vector = None if p.sentence_vectors is None else p.sentence_vectors[i]
            out.append(Candidate(rank, p, start, end, text, vector))
    return out


def featurize(
    question: str,
    qvec: np.ndarray,
    cands: list[Candidate],
    embedder: Embedder,
    settings: Settings,
    frame: TimeFrame | None = None,
    focus: str = "",
) -> None:
    """Fill each candidate's feature row (see support.FEATURES). In a follow-up ("And inflation?") the words
    the user just typed (`focus`) are the ones to find. Entities are read only for the `entity_sentences` best
    by similarity and word share (spaCy costs ~4 ms a sentence); the rest count as naming none."""
    if not cands:
        return
    q_stems = stems(focus) or stems(question)
    _embed_alone(qvec, q_stems, cands, embedder, settings.alone_sentences)
    all_q = q_stems | stems(question)
    wanted = answer_type.expected_types(focus or question)
    title_share: dict[str, float] = {}
    names = proper_names(focus or question)
    names_missing: dict[str, float] = {}
    dates = [d for d in (parse_iso(c.passage.published) for c in cands) if d and (not frame or d <= frame.as_of)]
    newest = max(dates, default=None)
    if frame and frame.window and not frame.explicit and not any(frame.start <= d <= frame.end for d in dates):
        frame = TimeFrame(frame.as_of)  # "this week" holds none of the evidence (an old archive): favour the latest
    for c in cands:
        c.dense = float(np.dot(c.vector, qvec))
        own = stems(c.text)
        c.lexical = len(q_stems & own) / len(q_stems) if q_stems else 0.0
        p = c.passage
        if p.article_id not in title_share:
            title_share[p.article_id] = len(q_stems & stems(p.title)) / len(q_stems) if q_stems else 0.0
        new = own - all_q
        x = np.zeros(len(FEATURES))
        x[_COL["dense"]] = c.dense
        x[_COL["lexical"]] = c.lexical
        x[_COL["passage_dense"]] = max(p.dense, 0.0)
        x[_COL["title_lexical"]] = title_share[p.article_id]
        x[_COL["log_rank"]] = log_rank(c.passage_rank)
        x[_COL["bm25"]] = bm25_feature(p.sparse_rank)
        x[_COL["date_fit"]] = frame.fit(p.published, newest) if frame else 0.5
        x[_COL["novel"]] = len(new) / len(own) if own else 0.0
        x[_COL["restates"]] = 0.0 if new else 1.0
        x[_COL["type_miss"]] = 1.0 if wanted else 0.0
        x[_COL["lead"]] = lead(c.start)
        x[_COL["no_word"]] = 1.0 if not (c.lexical or title_share[p.article_id]) else 0.0
        if p.chunk_id not in names_missing:
            mentioned = Mentions(f"{p.title} {p.text}")
            names_missing[p.chunk_id] = sum(not mentioned(n) for n in names) / len(names) if names else 0.0
        x[_COL["names_missing"]] = names_missing[p.chunk_id]
        x[_COL["asks"]] = 1.0 if _ASKS.search(c.text) else 0.0
        x[_COL["teaser"]] = 1.0 if _TEASER.match(c.text) else 0.0
        c.features = x
    # A question that wants no kind of thing uses entities only for any_entity, of the few best sentences
    n_read = settings.entity_sentences if wanted else min(settings.alone_sentences, settings.entity_sentences)
    read = sorted(cands, key=lambda c: 0.6 * c.dense + 0.4 * c.lexical, reverse=True)[:n_read]
    read_ents = answer_type.entities([c.text for c in read])
    in_article: dict[str, list[answer_type.Entity]] = {}
    agree_key: dict[int, str] = {}
    texts: dict[str, list[str]] = {}  # the pooled passages of each article
    for c in cands:
        if c.passage.text not in texts.setdefault(c.passage.article_id, []):
            texts[c.passage.article_id].append(c.passage.text)
    for c, ents in zip(read, read_ents, strict=True):
        in_article.setdefault(c.passage.article_id, []).extend(ents)
    for c, ents in zip(read, read_ents, strict=True):
        found = answer_type.answer_entities(focus or question, ents, wanted)
        typed = answer_type.by_neighbour(focus or question, c.text, found) if wanted else []
        if not wanted:  # a typed question is read by type_match / type_miss
            c.features[_COL["any_entity"]] = 1.0 if answer_type.answer_entities(question, ents, ()) else 0.0
        c.features[_COL["type_match"]] = 1.0 if typed else 0.0
        c.features[_COL["type_miss"]] = 1.0 if wanted and not typed else 0.0
        key = _short(focus or question, typed[0], c, in_article) if typed else ""
        if key:  # agreement on the names spaCy found, as the support model was fitted
            agree_key[id(c)] = key.lower()
        # the sentence is ranked on every name of the type, but its source ("according to FlightAware") is not shown
        shown = answer_type.drop_sources(focus or question, c.text, typed)
        if shown:
            c.short = key if shown[0] is typed[0] else _short(focus or question, shown[0], c, in_article)
        else:
            c.short = ""
        if shown and shown[0].label in answer_type.ORG:  # in full as the article's text has it: "Buffalo Bills"
            c.short = answer_type.fullest(shown[0], in_article[c.passage.article_id], texts[c.passage.article_id])
    by_answer: dict[str, set[str]] = {}
    for c in read:
        if id(c) in agree_key:
            by_answer.setdefault(agree_key[id(c)], set()).add(c.passage.article_id)
    for c in read:
        if id(c) in agree_key:
            c.features[_COL["agree"]] = min(len(by_answer[agree_key[id(c)]]) - 1, 3) / 3


def _short(question: str, entity: answer_type.Entity, c: Candidate, in_article: dict) -> str:
    """The entity as the answer shows it: the country for a demonym, the fullest name in the article, a date's day."""
    shown = answer_type.answer_text(question, entity)
    short = answer_type.fullest(entity, in_article[c.passage.article_id]) if shown == entity.text else shown
    if answer_type.expected_types(question) == answer_type.DATE:  # "when" is answered with a date
        day = resolve(short, c.passage.published)
        short = f"{short} ({day})" if day else short
    return short


def _embed_alone(qvec: np.ndarray, q_stems: set[str], cands: list[Candidate], embedder: Embedder, best: int) -> None:
    """The stored vector of a sentence is pooled from its chunk's forward pass (one model pass at index time), so
    it leans toward the chunk's topic; the `best` sentences by that vector and word share, the ones the answer is
    chosen from, are embedded alone here, in one small batch. Sentences of an index from before sentence vectors
    were stored are all embedded alone."""
    missing = [c for c in cands if c.vector is None]
    stored = [c for c in cands if c.vector is not None]
    if best and stored:

        def prior(c: Candidate) -> float:
            share = len(q_stems & stems(c.text)) / len(q_stems) if q_stems else 0.0
            return 0.6 * float(np.dot(c.vector, qvec)) + 0.4 * share

        missing += sorted(stored, key=prior, reverse=True)[:best]
    if missing:
        for c, vec in zip(missing, embedder.encode([c.text for c in missing]), strict=True):
            c.vector = vec


def proper_names(question: str) -> set[str]:
    """The question's capitalised words after its first ("Eiffel", "Tower"): the names an answer is about."""
    first = question.split()[0] if question.split() else ""
    out = set()
    for token in re.findall(r"\b[A-Z][\w'’-]{2,}", question):
        if token == first:
            continue
        name = re.sub(r"['’]s?$", "", token).split("-")[0].lower()  # "Diego's" -> diego, "Johnson-era" -> johnson
        if len(name) > 2 and name not in STOPWORDS and name not in _QUIZ_WORDS:
            out.add(name)
    return out


_QUIZ_WORDS = frozenset({"true", "false"})  # "..., Russia agreed to a new treaty. True or false?"

# "What is the capital of France?", "Who was the head coach of ...?", "What is France's capital?"
_RELATION = re.compile(
    r"^\W*(?:what|who|which)\s+(?:is|was|are|were)\s+"
    r"(?:the\s+((?:[a-z]+\s+)?[a-z]+)\s+of\b|(?:the\s+)?[\w .&'’-]+?['’]s?\s+((?:[a-z]+\s+)?[a-z]+)\s*\?*\s*$)",
    re.IGNORECASE,
)
_GENERIC_RELATIONS = frozenset("name names title kind type sort number amount part role meaning".split())


def relation_asked(question: str) -> set[str]:
    """The stems of the relation a "What is the N of Y?" question asks for ({"capital"} for "the capital of
    France"), where N is answered by a name (a capital, a coach, a CEO; any N after "who"); empty for other
    questions, for a descriptive N ("the cause of") and a generic one ("the name of"). The sentence that answers
    such a question states the relation; one that only names a place of Y ("a meeting in Paris") does not."""
    m = _RELATION.match(question.strip())
    if not m:
        return set()
    nouns = (m.group(1) or m.group(2)).lower().split()
    if not question.strip().lower().startswith("who") and not answer_type.names_a_holder(nouns[-1]):
        return set()  # "What was the cause of the fire?" is answered without the word "cause"
    return {stem(w) for w in nouns if w not in _GENERIC_RELATIONS | STOPWORDS}


def stating(relation: set[str], question: str, ranked: list[Candidate]) -> list[Candidate]:
    """The ranked sentences that state the relation asked for: its word next to a name or number the question
    does not hold ("Mayor Ilse Marten", "Canberra, Australia's capital"); "held in the French capital" names
    the relation but not its value."""
    return [c for c in ranked if states_relation(relation, question, c.text)]


_TOKEN = re.compile(r"[\w'’.-]+")
_VALUE = re.compile(r"[A-Z0-9][\w'’.-]*")
RELATION_WINDOW = 2  # words either side of the relation's word, not counting stopwords and the question's own


def states_relation(relation: set[str], question: str, text: str) -> bool:
    tokens = [t.strip(".'’-") for t in _TOKEN.findall(text)]
    asked = {w.lower().strip(".'’-") for w in _TOKEN.findall(question)}
    asked_countries = places.countries_named(question)

    def value(word: str) -> bool:  # a name or number that is not the question's ("French" for "France")
        country = places.country_of(word)
        return (
            bool(_VALUE.match(word))
            and stem(word.lower()) not in relation
            and not (country and country in asked_countries)
        )

    for i, token in enumerate(tokens):
        if stem(token.lower()) not in relation:
            continue
        for side in (tokens[:i][::-1], tokens[i + 1 :]):
            near = [w for w in side if w and w.lower() not in STOPWORDS and w.lower() not in asked]
            if any(value(w) for w in near[:RELATION_WINDOW]):
                return True
    return False


def absent_names(question: str, passages: list[Passage]) -> list[str]:
    """The question's names that no retrieved passage or headline mentions: the articles are not about it."""
    mentioned = Mentions(" ".join(f"{p.title} {p.text}" for p in passages))
    return sorted(n for n in proper_names(question) if not mentioned(n))


class Mentions:
    """Whether a text mentions a lower-cased name: a plural ("baftas") by its singular, a country ("britain") by
    any of its forms ("UK", "British"). One reading for the names_missing feature and for the decline of
    absent names, so the support model is fitted on what the decline checks."""

    def __init__(self, text: str):
        self.text, self.low = text, text.lower()
        self._countries: frozenset[str] | None = None

    def __call__(self, name: str) -> bool:
        if name in self.low or (name.endswith("s") and name[:-1] in self.low):
            return True
        if not (country := places.country_of(name.capitalize())):
            return False
        if self._countries is None:
            self._countries = places.countries_named(self.text)
        return country in self._countries


def score(cands: list[Candidate], model: SupportModel) -> None:
    if cands:
        for c, p in zip(cands, model.score(np.stack([c.features for c in cands])), strict=True):
            c.score = float(p)


def rank_sentences(
    question: str,
    qvec: np.ndarray,
    passages: list[Passage],
    embedder: Embedder,
    settings: Settings,
    focus: str = "",
    frame: TimeFrame | None = None,
) -> list[Candidate]:
    """All sentences of the passages, best-supporting first; ranked[0].score is the answer's support."""
    cands = candidates(passages)
    featurize(question, qvec, cands, embedder, settings, frame, focus)
    score(cands, load_model(str(settings.support_model or "")))
    return sorted(cands, key=lambda c: c.score, reverse=True)


def rerank(passages: list[Passage], ranked: list[Candidate], per_article: int = 0) -> list[Passage]:
    """Passages ordered by their best sentence's support: a sentence-level reading of the fused list that
    lifts the passage that actually answers above ones that merely share words. With `per_article`, at most
    that many passages of one article come before any passage of the others (distinct evidence first)."""
    best: dict[str, float] = {}
    for c in ranked:
        best.setdefault(c.passage.chunk_id, c.score)
    order = sorted(passages, key=lambda p: best.get(p.chunk_id, float("-inf")), reverse=True)
    if not per_article:
        return order
    count: dict[str, int] = {}
    first, later = [], []
    for p in order:
        count[p.article_id] = count.get(p.article_id, 0) + 1
        (first if count[p.article_id] <= per_article else later).append(p)
    return first + later


def citation(n: int, c: Candidate, score: float | None = None) -> Citation:
    p = c.passage
    return Citation(
        n=n, article_id=p.article_id, chunk_id=p.chunk_id, title=p.title, source=p.source, url=p.url,
        published=p.published, quote=c.text, start=c.start, end=c.end,
        score=round(c.score if score is None else score, 4), outlet=p.outlet, also_in=list(p.also_in),
    )  # fmt: skip
