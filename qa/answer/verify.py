"""Citation checking after generation: every sentence of a generated answer must be supported by the source it
cites. Wrong citations are re-pointed to the source that does support the sentence, out-of-range ones removed,
unsupported sentences dropped, and the survivors renumbered 1..n in order of appearance."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from qa.answer import answer_type, places
from qa.answer.sentences import Candidate, citation
from qa.indexing.chunk import sentence_spans
from qa.indexing.embed import Embedder
from qa.schema import Citation
from qa.settings import Settings
from qa.text import STOPWORDS, stems, words

_MARKERS = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_DECLINE = re.compile(r"^\W*(the )?(articles?|sources?) (don'?t|do not|does not|doesn'?t) say", re.IGNORECASE)
_LEADING = re.compile(r"^(\s*\[\d+(?:\s*[,;]\s*\d+)*\])+")
MIN_WORDS = 3
FIGURE = re.compile(r"\d+(?:[.,]\d+)*")  # numbers as written: "3,000", "6.1", "42"
_WH = frozenset("what which who whom whose where when how why".split())
_TRUE_FALSE = re.compile(r"\b(true or false|false or true)\b", re.IGNORECASE)
_ECHO_WORDS = 5  # a run of this many of the question's words around its wh-word, copied: the question echoed
_NEW_NAME = re.compile(r"\b(?:[A-Z][\w'’-]*|\d[\d.,]*)")
NAMED = ("PERSON", "ORG", "GPE", "LOC", "NORP", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW")


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in STOPWORDS}


def claim_names(claims: list[str], question: str) -> list[list[str]]:
    """Each claim's names (people, places, organisations, works) that the question does not already hold: the
    ones a source must state for the claim to be its ("The crash occurred in India" is not a Nepal report's)."""
    asked = _words(question)
    out = []
    for ents in answer_type.entities(claims):
        names = [e.text for e in ents if e.label in NAMED and _words(e.text) and not _words(e.text) <= asked]
        out.append(list(dict.fromkeys(names)))
    return out


def states_name(name: str, source: str) -> bool:
    """A source states a name when it holds one of its words ("Suns" for "Phoenix Suns", "Biden" for "Joe Biden")
    or names its country in any form ("French" for "France")."""
    if _words(name) & _words(source):
        return True
    country = places.country_of(name)
    return bool(country) and country in places.countries_named(source)


def restates(sentence: str, question: str) -> bool:
    """A sentence that only gives the question back: every content word of it is the question's ("The White
    House officials believe the objects ... were likely harmless" for "What do officials believe the objects
    were?"), or it copies the question's words around its wh-word and names nothing new ("... warned that doing
    what was as harmful to health as passive smoking causes harm"). Such a sentence answers nothing, however well
    its source supports it. A true-or-false question is exempt: its statement is the claim the answer checks."""
    if not question or _TRUE_FALSE.search(question):
        return False
    if not stems(sentence) - stems(question):
        return True
    q, s = words(question), words(sentence)
    n = _ECHO_WORDS
    runs = {tuple(q[i : i + n]) for i in range(len(q) - n + 1) if _WH & set(q[i : i + n])}
    if not any(tuple(s[i : i + n]) in runs for i in range(len(s) - n + 1)):
        return False
    asked = set(re.findall(r"[\w'’-]+", question))
    return not {w for w in _NEW_NAME.findall(sentence) if w not in asked and w.lower() not in STOPWORDS}


def _numbers(text: str) -> list[int]:
    return [int(n) for group in _MARKERS.findall(text) for n in re.split(r"[,;]", group)]


@dataclass
class Verified:
    text: str
    citations: list[Citation]
    declined: bool = False
    notes: list[str] = field(default_factory=list)
    restated: bool = False  # every sentence only gave the question back


def claim_support(
    claim: str,
    claim_vec: np.ndarray,
    source: Candidate,
    source_vec: np.ndarray,
    settings: Settings,
    names: Sequence[str] = (),
) -> float:
    """How well one source supports one claim: embedding similarity and the share of the claim's words in it.
    A figure or a name the source does not state ("42 days" against a source without 42, "India" against a
    report from Nepal) is not supported at all; the source's headline counts for names."""
    figures = set(FIGURE.findall(_MARKERS.sub(" ", claim)))
    if figures - set(FIGURE.findall(source.text)):
        return 0.0
    if names and not all(states_name(n, f"{source.passage.title} {source.text}") for n in names):
        return 0.0
    claim_stems = stems(claim)
    lexical = len(claim_stems & stems(source.text)) / len(claim_stems) if claim_stems else 0.0
    return settings.claim_dense_weight * float(np.dot(claim_vec, source_vec)) + settings.claim_lexical_weight * lexical


def split_claims(text: str) -> list[tuple[str, list[int]]]:
    """(sentence without markers, cited numbers) pairs; a marker standing alone joins the sentence before it."""
    claims: list[tuple[str, list[int]]] = []
    for start, end in sentence_spans(text):
        piece = text[start:end]
        leading = _LEADING.match(piece)
        if leading and claims:  # "... invited. [1] Next sentence": the marker closes the sentence before
            claims[-1][1].extend(_numbers(leading.group(0)))
            piece = piece[leading.end() :]
        numbers = _numbers(piece)
        sentence = _MARKERS.sub("", piece).strip()
        if not re.search(r"\w", sentence) and claims:
            claims[-1][1].extend(numbers)
            continue
        claims.append((sentence, numbers))
    return [(s, n) for s, n in claims if re.search(r"\w", s)]


def verify(raw: str, sources: list[Candidate], embedder: Embedder, settings: Settings, question: str = "") -> Verified:
    """Check and repair the citations of a generated answer against the sources it was given."""
    min_support = settings.min_claim_support
    text = raw.strip()
    if not text or _DECLINE.match(text):
        return Verified(text="", citations=[], declined=True)
    claims = split_claims(text)
    if not claims or not sources:
        return Verified(text="", citations=[], notes=["the model's answer had no sentences to check"])
    claim_vecs = embedder.encode([c for c, _ in claims])
    source_vecs = embedder.encode([s.text for s in sources])
    names = claim_names([c for c, _ in claims], question)
    notes: list[str] = []
    kept: list[tuple[str, list[int], float]] = []  # sentence, 0-based source indexes, best support
    echoed = 0
    for (sentence, cited), vec, named in zip(claims, claim_vecs, names, strict=True):
        if restates(sentence, question):
            notes.append(f"dropped a sentence that only restates the question: {sentence!r}")
            echoed += 1
            continue
        support = [
            claim_support(sentence, vec, src, sv, settings, named) for src, sv in zip(sources, source_vecs, strict=True)
        ]
        valid = [n - 1 for n in dict.fromkeys(cited) if 1 <= n <= len(sources)]
        if len(valid) < len(set(cited)):
            notes.append(f"removed citation(s) to sources that do not exist: {sorted(set(cited))}")
        good = [i for i in valid if support[i] >= min_support]
        best = int(np.argmax(support))
        if good:
            kept.append((sentence, good, max(support[i] for i in good)))
        elif len(sentence.split()) < MIN_WORDS:
            notes.append(f"dropped a fragment: {sentence!r}")
        elif support[best] >= min_support:
            # no source numbers in the note: the answer shown is renumbered in citation order
            if valid:
                notes.append(f"re-pointed a citation its source does not support to one that does: {sentence!r}")
            else:
                notes.append(f"cited the supporting source of a sentence the model left uncited: {sentence!r}")
            kept.append((sentence, [best], support[best]))
        else:
            notes.append(f"dropped a sentence no source supports: {sentence!r}")
    verified = _renumber(kept, sources, notes)
    verified.restated = echoed == len(claims)
    return verified


def _renumber(kept: list[tuple[str, list[int], float]], sources: list[Candidate], notes: list[str]) -> Verified:
    order: dict[int, int] = {}
    parts, citations = [], []
    for sentence, indexes, support in kept:
        numbers = []
        for i in indexes:
            if i not in order:
                order[i] = len(order) + 1
                citations.append(citation(order[i], sources[i], score=support))
            numbers.append(order[i])
        sentence = sentence if sentence[-1] in ".!?\"'”’" else sentence + "."
        parts.append(sentence + "".join(f" [{n}]" for n in numbers))
    return Verified(text=" ".join(parts), citations=citations, notes=notes)
