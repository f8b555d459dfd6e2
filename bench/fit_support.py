"""Fit the sentence-support model (qa/answer/support.py) on the development sets, cross-validated.

Every question of the sets is read once (retrieval as of its `question_date`, every sentence of the pool
featurized); then a logistic regression over the features is fitted on all folds but one and scored on the
held-out one, grouped so that questions of one week (which share articles) never straddle train and test. The
report prints the held-out metrics beside the hand-set weights the model replaces; `--write` refits on all
questions and writes qa/answer/support_model.json with the threshold chosen the same way.

Run: .venv/bin/python bench/fit_support.py ../shared/eval/rtqa-2023-dev ../shared/eval/squad2-dev eval/seeds [--write]
(eval/seeds keeps the seed question answered and "the capital of France?" over the seed declined).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.answer.extractive import extractive_answer  # noqa: E402
from qa.answer.pipeline import _as_of_filters  # noqa: E402
from qa.answer.sentences import Candidate, candidates, featurize, rerank  # noqa: E402
from qa.answer.support import FEATURES, SupportModel  # noqa: E402
from qa.answer.when import as_date, time_frame  # noqa: E402
from qa.api import Assistant  # noqa: E402
from qa.eval.evaluate import contains_any, eval_index_dir, gold_rank, load_questions  # noqa: E402
from qa.schema import Passage  # noqa: E402
from qa.settings import Settings  # noqa: E402
from qa.store import Filters  # noqa: E402

MODEL_PATH = ROOT / "qa" / "answer" / "support_model.json"
MAX_FALSE_ABSTENTION = 0.05  # the threshold: the highest one whose training folds decline <= this of answerable


@dataclass
class Read:
    set_name: str
    group: str
    q: dict
    pool: list[Passage]
    cands: list[Candidate]
    x: np.ndarray  # features, one row per candidate
    y: np.ndarray  # 1 where the sentence holds the gold answer


def collect(set_dirs: list[str], settings: Settings, depth: int) -> list[Read]:
    reads: list[Read] = []
    for set_dir in map(Path, set_dirs):
        s = settings.model_copy(update={"index_dir": eval_index_dir(set_dir, settings)})
        assistant = Assistant(s)
        assistant.index([set_dir / "corpus.jsonl"])
        pipeline = assistant.pipeline()
        for q in load_questions(set_dir):
            as_of = as_date(q["question_date"]) if q.get("question_date") else None
            frame = time_frame(q["question"], as_of or dt.date.today())
            qvec = assistant.embedder.encode_query(q["question"])
            filters = _as_of_filters(Filters(), frame, as_of is not None, with_window=frame.explicit)
            pool = pipeline.retriever.retrieve(q["question"], depth, filters, query_vector=qvec)
            if not pool and frame.explicit:
                filters = _as_of_filters(Filters(), frame, as_of is not None, with_window=False)
                pool = pipeline.retriever.retrieve(q["question"], depth, filters, query_vector=qvec)
            cands = candidates(pool)
            featurize(q["question"], qvec, cands, assistant.embedder, s, frame)
            answers = [a for a in [q.get("answer"), *(q.get("answer_aliases") or [])] if a]
            x = np.stack([c.features for c in cands]) if cands else np.zeros((0, len(FEATURES)))
            y = np.array([bool(answers) and contains_any(c.text, answers) for c in cands], dtype=float)
            week = (as_of or dt.date(2000, 1, 1)).isocalendar()
            group = f"{set_dir.name}:{week[0]}-{week[1]}" if as_of else f"{set_dir.name}:{q.get('qid')}"
            reads.append(Read(set_dir.name, group, q, pool, cands, x, y))
        print(f"read {set_dir.name}: {sum(r.set_name == set_dir.name for r in reads)} questions", flush=True)
    return reads


def fit(reads: list[Read], c_reg: float) -> SupportModel:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([r.x for r in reads])
    y = np.concatenate([r.y for r in reads])
    lr = LogisticRegression(C=c_reg, max_iter=2000, class_weight="balanced")
    lr.fit(x, y)
    model = SupportModel("fit", FEATURES, lr.coef_[0], float(lr.intercept_[0]), 0.5)
    model.abstain_below = choose_threshold(reads, model)
    return model


def hand_model() -> SupportModel:
    """The weights the fitted model replaces (0.6 dense + 0.4 lexical + 0.1 passage - 0.01 rank), as a model."""
    coef = np.zeros(len(FEATURES))
    coef[FEATURES.index("dense")], coef[FEATURES.index("lexical")] = 0.6, 0.4
    coef[FEATURES.index("passage_dense")] = 0.1
    return SupportModel("hand", FEATURES, coef, 0.0, 0.0)


def top_supports(reads: list[Read], model: SupportModel) -> list[float]:
    return [float(model.score(r.x).max()) if len(r.x) else 0.0 for r in reads]


def choose_threshold(reads: list[Read], model: SupportModel) -> float:
    """The highest support threshold that wrongly declines at most MAX_FALSE_ABSTENTION of answerable ones."""
    ans = sorted(s for r, s in zip(reads, top_supports(reads, model), strict=True) if r.q.get("answerable", True))
    if not ans:
        return 0.0
    i = int(np.floor(MAX_FALSE_ABSTENTION * len(ans)))
    return float(ans[i] - 1e-6) if i < len(ans) else 0.0


def evaluate(reads: list[Read], model: SupportModel, settings: Settings, k: int = 10) -> dict[str, float]:
    rows = []
    s = settings.model_copy(update={"abstain_threshold": -1.0})
    for r in reads:
        for c, p in zip(r.cands, model.score(r.x) if len(r.x) else [], strict=True):
            c.score = float(p)
        ranked = sorted(r.cands, key=lambda c: c.score, reverse=True)
        passages = rerank(r.pool, ranked, settings.per_article)[:k]
        answers = [a for a in [r.q.get("answer"), *(r.q.get("answer_aliases") or [])] if a]
        answer = extractive_answer(r.q["question"], ranked, passages, s)
        support = ranked[0].score if ranked else 0.0
        gold = set(r.q.get("gold_doc_ids") or [])
        rows.append(
            {
                "set": r.set_name,
                "answerable": bool(r.q.get("answerable", True)),
                "rank": gold_rank(passages, gold) if gold else None,
                "abstained": support < model.abstain_below,
                "gold": bool(answers) and contains_any(answer.text, answers),
                "cited_ok": [contains_any(c.quote, answers) or c.article_id in gold for c in answer.citations],
            }
        )
    return rows


def summarize(rows: list[dict]) -> dict[str, float]:
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]
    given = [r for r in ans if not r["abstained"]]
    cited = sum(len(r["cited_ok"]) for r in given)
    return {
        "hit@1": np.mean([r["rank"] == 1 for r in ans]),
        "hit@5": np.mean([r["rank"] is not None and r["rank"] <= 5 for r in ans]),
        "mrr@10": np.mean([1 / r["rank"] if r["rank"] else 0 for r in ans]),
        "answer": np.mean([r["gold"] and not r["abstained"] for r in ans]),
        "answer_if_all": np.mean([r["gold"] for r in ans]),
        "citation": sum(sum(r["cited_ok"]) for r in given) / cited if cited else 0.0,
        "declines": np.mean([r["abstained"] for r in una]) if una else float("nan"),
        "false_abst": np.mean([r["abstained"] for r in ans]),
    }


def cross_validate(reads: list[Read], settings: Settings, c_reg: float, folds: int = 5) -> list[dict]:
    groups = sorted({r.group for r in reads})
    rng = np.random.default_rng(0)
    order = rng.permutation(len(groups))
    fold_of = {groups[g]: i % folds for i, g in enumerate(order)}
    rows: list[dict | None] = [None] * len(reads)  # in the order of `reads`
    for f in range(folds):
        train = [r for r in reads if fold_of[r.group] != f]
        test = [i for i, r in enumerate(reads) if fold_of[r.group] == f]
        for i, row in zip(test, evaluate([reads[i] for i in test], fit(train, c_reg), settings), strict=True):
            rows[i] = row
    return rows


def table(title: str, results: dict[str, dict[str, dict[str, float]]]) -> None:
    keys = ("hit@1", "hit@5", "mrr@10", "answer", "answer_if_all", "citation", "declines", "false_abst")
    print(f"\n{title}\n{'set':<16}{'who':<22}" + "".join(f"{k:>14}" for k in keys))
    for set_name, by_who in results.items():
        for who, m in by_who.items():
            print(f"{set_name:<16}{who:<22}" + "".join(f"{m[k]:>14.3f}" for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="+")
    parser.add_argument("--depth", type=int, default=None, help="fused passages read per question")
    parser.add_argument("--c", type=float, default=0.1, help="inverse regularisation strength")
    parser.add_argument("--write", action="store_true", help=f"refit on everything and write {MODEL_PATH.name}")
    args = parser.parse_args()
    settings = Settings(backend="extractive")
    depth = args.depth or settings.rerank_depth
    reads = collect(args.sets, settings, depth)
    hand = hand_model()
    hand.abstain_below = choose_threshold(reads, hand)  # in-sample: flatters the hand weights, not the model
    cv_rows = cross_validate(reads, settings, args.c)
    hand_rows = evaluate(reads, hand, settings)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name in dict.fromkeys(r.set_name for r in reads):
        pick = [i for i, r in enumerate(reads) if r.set_name == name]
        results[name] = {
            "hand weights (in-sample)": summarize([hand_rows[i] for i in pick]),
            "fitted (held-out folds)": summarize([cv_rows[i] for i in pick]),
        }
    table(f"depth {depth}, per_article {settings.per_article}, C {args.c}", results)
    if args.write:
        model = fit(reads, args.c)
        model.version = dt.date.today().isoformat()
        model.notes = {
            "fitted_on": [Path(s).name for s in args.sets],
            "depth": depth,
            "C": args.c,
            "max_false_abstention": MAX_FALSE_ABSTENTION,
            "held_out": {n: {k: round(float(v), 3) for k, v in m["fitted (held-out folds)"].items()}
                         for n, m in results.items()},
        }  # fmt: skip
        MODEL_PATH.write_text(model.to_json() + "\n")
        print(f"wrote {MODEL_PATH}")
        for name, coef in zip(FEATURES, model.coef, strict=True):
            print(f"  {name:<14}{coef:+.3f}")
        print(f"  intercept     {model.intercept:+.3f}   abstain below {model.abstain_below:.3f}")


if __name__ == "__main__":
    main()
