"""How well a sentence answers the question: a small logistic model over evidence features.

The features are measured outside any language model: the sentence's and its passage's similarity to the
question, the share of question words it holds, its BM25 and fused ranks, how well its article's date fits
the question's time, whether it adds words of its own (a sentence that only restates the question answers
nothing) and whether it names a thing of the kind asked for ("which country" -> a place). The coefficients
are fitted on the development sets by bench/fit_support.py (cross-validated; its report prints the held-out
folds) and ship as qa/answer/support_model.json, versioned, so the scores are reproducible and refittable.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

FEATURES = (
    "dense",  # cosine(sentence, question): the best few sentences embedded alone, the rest their stored vector
    "lexical",  # share of the question's content stems in the sentence
    "passage_dense",  # cosine(passage, question)
    "title_lexical",  # share of the question's content stems in the article title
    "log_rank",  # log(1 + the passage's rank in the fused list)
    "bm25",  # 1 / (1 + the passage's BM25 rank), 0 when BM25 did not find it
    "date_fit",  # 1 inside the question's time window, decaying outside; 0.5 undated
    "novel",  # share of the sentence's content stems not in the question
    "restates",  # 1 when the sentence adds no content word to the question
    "type_match",  # 1 when the question wants a kind of thing and the sentence names one it does not
    "type_miss",  # 1 when the question wants a kind of thing and the sentence names none
    "any_entity",  # 1 when the question wants no kind of thing and the sentence names an entity it does not
    "lead",  # 1 for the first sentences of an article (news puts the facts first)
    "agree",  # share of (up to 3) other articles whose sentences name the same answer (independent reports)
    "no_word",  # 1 when neither the sentence nor its headline holds any of the question's content words
    "names_missing",  # share of the question's proper names ("Eiffel", "Hamlin") not in the passage or headline
    "asks",  # 1 when the sentence is itself a question ("When did the House take multiple ballots?")
    "teaser",  # 1 for a link to another story ("More:Popeyes celebrating...", "Previously:Who are...")
)


@dataclass
class SupportModel:
    """support = sigmoid(w . features + b). `abstain_below` is the support under which the answer is declined."""

    version: str
    features: tuple[str, ...]
    coef: np.ndarray
    intercept: float
    abstain_below: float
    notes: dict = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef + self.intercept

    def score(self, x: np.ndarray) -> np.ndarray:
        """Support in [0, 1]. A sentence that shares no content word with the question, nor does its headline,
        is not about it: support 0, whatever its similarity ("the capital of France?" -> "a meeting in Paris")."""
        support = 1.0 / (1.0 + np.exp(-self.logits(x)))
        return np.where(x[:, FEATURES.index("no_word")] > 0, 0.0, support)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "features": list(self.features),
                "coef": [round(float(c), 6) for c in self.coef],
                "intercept": round(float(self.intercept), 6),
                "abstain_below": round(float(self.abstain_below), 6),
                "notes": self.notes,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> SupportModel:
        data = json.loads(text)
        names = tuple(data["features"])
        unknown = set(names) - set(FEATURES)
        if unknown or len(data["coef"]) != len(names):
            raise ValueError(f"support model does not match this version's features ({sorted(unknown)})")
        coef = dict(zip(names, data["coef"], strict=True))
        return cls(
            version=str(data["version"]),
            features=FEATURES,
            coef=np.array([float(coef.get(f, 0.0)) for f in FEATURES]),
            intercept=float(data["intercept"]),
            abstain_below=float(data["abstain_below"]),
            notes=data.get("notes", {}),
        )


@lru_cache(maxsize=4)
def load_model(path: str = "") -> SupportModel:
    """The fitted model shipped in the package, or one at `path` (Settings.support_model)."""
    text = Path(path).read_text() if path else resources.files("qa.answer").joinpath("support_model.json").read_text()
    return SupportModel.from_json(text)


def lead(start: int) -> float:
    return 1.0 if start < 400 else 0.0


def bm25_feature(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / (1.0 + rank)


def log_rank(rank: int) -> float:
    return math.log1p(rank)
