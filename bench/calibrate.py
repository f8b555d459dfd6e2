"""The abstention frontier on data: run an evaluation set with abstention off (each question as of its date) and
print, for each candidate support threshold, the share of unanswerable questions declined against answerable
ones wrongly declined. The threshold the product uses is fitted with the support model, on held-out folds
(bench/fit_support.py); this shows where it sits.

Run: .venv/bin/python bench/calibrate.py ../shared/eval/rtqa-2023-dev ../shared/eval/squad2-dev eval/seeds
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.eval.evaluate import run_eval  # noqa: E402
from qa.settings import Settings  # noqa: E402


def frontier(rows: list[dict], thresholds: np.ndarray) -> list[tuple[float, float, float, float]]:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    out = []
    for t in thresholds:
        declined = np.mean([r["support"] < t for r in unanswerable]) if unanswerable else float("nan")
        wrongly = np.mean([r["support"] < t for r in answerable])
        gold = np.mean([r["support"] >= t and r["contains_gold"] for r in answerable])
        out.append((float(t), float(declined), float(wrongly), float(gold)))
    return out


def main() -> None:
    from qa.answer.extractive import abstain_threshold

    current = abstain_threshold(Settings())
    settings = Settings(backend="extractive", abstain_threshold=-1e9)
    for set_dir in sys.argv[1:] or [str(ROOT / "eval" / "seeds")]:
        rows = run_eval(set_dir, settings)["questions"]
        print(
            f"\n{set_dir}: support of answerable min {min(r['support'] for r in rows if r['answerable']):.3f}, "
            f"of unanswerable max {max((r['support'] for r in rows if not r['answerable']), default=0):.3f}"
        )
        print(f"{'threshold':>10} {'unanswerable declined':>22} {'answerable declined':>20} {'answer has gold':>16}")
        for t, declined, wrongly, gold in frontier(rows, np.unique(np.r_[np.arange(0.05, 0.96, 0.05), current])):
            mark = "   <- the shipped threshold" if abs(t - current) < 1e-9 else ""
            print(f"{t:>10.3f} {declined:>22.2f} {wrongly:>20.2f} {gold:>16.2f}{mark}")


if __name__ == "__main__":
    main()
