"""Conflicting reports: when the best answer is a figure and another well-supported report of the same thing
gives a different one ("at least 30 people were killed" vs "killed 41 people"), both are shown, each cited with
its outlet and date, the latest first, instead of one silently winning."""

from __future__ import annotations

import re
from dataclasses import dataclass

from qa.answer.sentences import Candidate, citation
from qa.schema import Answer
from qa.text import STOPWORDS

_QUANTITY = re.compile(
    r"(?:\b(at least|more than|over|nearly|almost|about|around|some|up to|roughly)\s+)?"
    r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s+(million|billion|thousand))?\b(?!-\w)",
    re.IGNORECASE,
)
_SCALE = {"thousand": 1e3, "million": 1e6, "billion": 1e9}
_MONTH_BEFORE = re.compile(r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s*$", re.IGNORECASE)
_NOT_HEADS = STOPWORDS | set("least more than over nearly almost around roughly up said says".split())
CANDIDATES = 12  # best-supporting sentences looked at for another version
WINDOW = 3  # words either side of a figure that say what it counts


@dataclass(frozen=True)
class Figure:
    value: float
    phrase: str  # as written: "at least 30"
    heads: frozenset[str]  # the words near it that say what it counts ("people", "killed")


def figures(text: str) -> list[Figure]:
    """The figures of a sentence with what they count; years and days of a month are not figures."""
    out = []
    for m in _QUANTITY.finditer(text):
        raw = m.group(2).replace(",", "")
        value = float(raw) * _SCALE.get((m.group(3) or "").lower(), 1.0)
        if (not m.group(3) and 1900 <= value <= 2100 and "." not in raw) or _MONTH_BEFORE.search(text[: m.start()]):
            continue
        after = re.findall(r"[a-z]+", text[m.end() :].lower())[:WINDOW]
        before = re.findall(r"[a-z]+", text[: m.start()].lower())[-WINDOW:]
        heads = frozenset(_stem(w) for w in after + before if w not in _NOT_HEADS and len(w) > 2)
        out.append(Figure(value, m.group(0).strip(), heads))
    return out


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def other_versions(ranked: list[Candidate], threshold: float) -> list[tuple[Candidate, Figure]]:
    """The best sentence and each well-supported sentence of another report that gives a different figure for
    what the best one's figure counts, latest report first; [] when the reports agree (or it is no figure)."""
    if not ranked or not any(ch.isdigit() for ch in ranked[0].short):
        return []
    best = ranked[0]
    mine = [f for f in figures(best.text) if f.phrase.split()[-1] in best.short or best.short in f.phrase]
    if not mine:
        return []
    target = mine[0]
    versions = [(best, target)]
    seen_values = {target.value}
    groups = {_group(best)}
    for c in ranked[1:CANDIDATES]:
        if c.score < threshold or _group(c) in groups:
            continue
        for f in figures(c.text):
            if f.value not in seen_values and len(f.heads & target.heads) >= 1 and _same_topic(best, c):
                versions.append((c, f))
                seen_values.add(f.value)
                groups.add(_group(c))
                break
    if len(versions) < 2:
        return []
    return sorted(versions, key=lambda v: v[0].passage.published, reverse=True)


def _group(c: Candidate) -> str:
    """Copies of one text are one report."""
    return c.passage.article_id if not c.passage.also_in else c.passage.story_id + "/" + c.passage.outlet


def _same_topic(a: Candidate, b: Candidate) -> bool:
    """Two reports of one event: one story, or (an index without stories) close in meaning."""
    if a.passage.story_id and b.passage.story_id:
        return a.passage.story_id == b.passage.story_id
    return b.dense >= a.dense - 0.1


def reported_by(ranked: list[Candidate], threshold: float) -> list[str]:
    """The outlets whose well-supported sentences state the best answer's short answer (copies of one text name
    each outlet that carried it): how widely a claim is reported. [] without a short answer."""
    if not ranked or not ranked[0].short:
        return []
    short = " ".join(ranked[0].short.lower().split())
    figure = re.findall(r"\d[\d,.]*\d|\d", short)  # "about 2,300" is stated as "the 2,300" elsewhere
    out: list[str] = []
    for c in ranked[:CANDIDATES]:
        if c is not ranked[0] and c.score < threshold:
            continue
        text = " ".join(c.text.lower().split())
        if (figure and all(re.search(rf"(?<![\d,.]){re.escape(f)}(?![\d,]\d)", text) for f in figure)) or (
            not figure and short in text
        ):
            p = c.passage
            out += [o for o in (p.outlet or p.source, *p.also_in) if o and o not in out]
    return out


def conflict_answer(question: str, versions: list[tuple[Candidate, Figure]], base: Answer) -> Answer:
    """An answer that gives every version, each cited with its outlet and date, latest first."""
    lines, citations = ["**Reports differ** (latest first):"], []
    for n, (c, f) in enumerate(versions, start=1):
        p = c.passage
        who = ", ".join(x for x in (p.outlet or p.source, p.published) if x)
        lines.append(f"- **{f.phrase}** ({who}): {_defuse(c.text)} [{n}]")
        citations.append(citation(n, c))
    answer = Answer(question, "\n".join(lines), citations, passages=base.passages, support=base.support)
    answer.short_answer = base.short_answer
    answer.notes = [
        "the reports give different figures: "
        + "; ".join(f"{f.phrase} ({c.passage.outlet or c.passage.source}, {c.passage.published})" for c, f in versions)
    ]
    return answer


def add_versions(answer: Answer, versions: list[tuple[Candidate, Figure]]) -> Answer:
    """A generated answer keeps its text; the versions it does not cite are added below it, cited."""
    cited = {(c.chunk_id, c.start) for c in answer.citations}
    missing = [(c, f) for c, f in versions if (c.passage.chunk_id, c.start) not in cited]
    if not missing:
        return answer
    n = max((c.n for c in answer.citations), default=0)
    lines = []
    for c, f in missing:
        n += 1
        p = c.passage
        who = ", ".join(x for x in (p.outlet or p.source, p.published) if x)
        lines.append(f"- **{f.phrase}** ({who}): {_defuse(c.text)} [{n}]")
        answer.citations.append(citation(n, c))
    answer.text = answer.text.rstrip() + "\n\n**Reports differ** (latest first):\n" + "\n".join(lines)
    answer.notes = [*answer.notes, "the reports give different figures; every version is cited"]
    return answer


def _defuse(text: str) -> str:
    return re.sub(r"\[(\d+)\]", r"(\1)", " ".join(text.split()))
