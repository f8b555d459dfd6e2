"""Stage 6 (extractive): answer with the retrieved sentences that best answer the question, each cited [n];
abstain when the best support is below a threshold calibrated on data (bench/calibrate.py)."""

from __future__ import annotations

import re

from qa.answer import places
from qa.answer.prompts import prompt
from qa.answer.sentences import Candidate, citation
from qa.answer.support import load_model
from qa.answer.verify import FIGURE
from qa.schema import Answer, Passage
from qa.settings import Settings


def extractive_answer(question: str, ranked: list[Candidate], passages: list[Passage], settings: Settings) -> Answer:
    """Quote the best sentence, plus close runners-up from the same article that share a word with the question,
    each cited [n]. A runner-up without one is only near the topic ("the water had risen 4.2 meters" for "how
    many residents were evacuated"): quoting it reads as part of the answer when it is not."""
    threshold, max_sentences = abstain_threshold(settings), settings.max_answer_sentences
    support = ranked[0].score if ranked else 0.0
    if not ranked or support < threshold:
        return abstain(question, passages, support)
    best = ranked[0]
    chosen = [best]
    for c in ranked[1:]:
        if len(chosen) == max_sentences:
            break
        # More sentences only from the best one's article: they read as one account and cite precisely.
        if c.passage.article_id != best.passage.article_id:
            continue
        close = c.score >= max(threshold, best.score - settings.extra_sentence_margin)
        if close and c.lexical > 0 and c.dense >= best.dense - settings.extra_sentence_dense_margin:
            chosen.append(c)
    citations = [citation(n, c) for n, c in enumerate(chosen, start=1)]
    text = " ".join(f"{_defuse_markers(c.text)} [{n}]" for n, c in enumerate(chosen, start=1))
    if best.short:
        text = f"**{_defuse_markers(best.short)}**: {text}"
    answer = Answer(question, text, citations, abstained=False, passages=passages, support=support)
    answer.short_answer = best.short
    return answer


def lead_with_short(text: str, short: str) -> str:
    """A generated answer led by the reading's short answer in bold, as a quoted one is, when the checked text
    states it ("... France's foreign ministry ..." -> "**France**: ..."); else unchanged: the bold answer is shown
    only where the model's own words, checked against the sources, agree with it."""
    said = short.split(" (")[0]  # "Tuesday (2023-01-03)": the text says "Tuesday"
    figures = set(FIGURE.findall(said))  # "About 3,000" is stated by "3,000 residents"
    if figures:
        stated = figures <= set(FIGURE.findall(text))
    else:
        stated = bool(said) and bool(re.search(rf"(?<!\w){re.escape(said)}(?!\w)", text, re.IGNORECASE))
    if not stated and (country := places.country_of(said)):  # "France" is stated by "the French Foreign Ministry"
        words = re.findall(r"[A-Z][\w.'’-]*", text)
        runs = (" ".join(words[i : i + n]) for n in (1, 2, 3) for i in range(len(words)))
        stated = any(places.country_of(run) == country for run in runs)
    if not stated:
        return text
    return f"**{_defuse_markers(short)}**: {text}"


def abstain_threshold(settings: Settings) -> float:
    """The configured threshold, else the one fitted with the support model."""
    if settings.abstain_threshold is not None:
        return settings.abstain_threshold
    return load_model(str(settings.support_model or "")).abstain_below


def _defuse_markers(text: str) -> str:
    """An article's own "[7]" must not read as our citation [7]: shown as "(7)" in the answer text (the
    citation's quote keeps the article's exact words)."""
    return re.sub(r"\[(\d+)\]", r"(\1)", text)


def abstain(question: str, passages: list[Passage], support: float = 0.0) -> Answer:
    return Answer(question, prompt("abstain.txt"), abstained=True, passages=passages, support=support)
