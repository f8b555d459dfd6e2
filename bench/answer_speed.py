"""Benchmark (not a test): time to first token, whole-answer time and prompt tokens of the default generator
(Qwen2.5-Coder-1.5B via llama.cpp) on questions over seeds/, plus the answers verbatim.

Run: .venv/bin/python bench/answer_speed.py ["another question" ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qa  # noqa: E402
from qa.answer.generate import warm_up  # noqa: E402
from qa.answer.llm import chat_model  # noqa: E402

QUESTIONS = [
    "Why did Russia decline?",
    "Who initiated the Paris meeting?",
    "How many people have been killed in Syria?",
    "What did Lukashevich say about the Paris initiative?",
    "How many observers did Ban Ki-moon recommend?",
    "Who won the 2010 World Cup?",
]


def main() -> None:
    questions = sys.argv[1:] or QUESTIONS
    with tempfile.TemporaryDirectory(prefix="qa-speed-") as tmp:
        assistant = qa.Assistant(index_dir=Path(tmp) / "index", backend="llamacpp")
        assistant.index([ROOT / "seeds"])
        t0 = time.perf_counter()
        llm = chat_model(assistant.settings, "llamacpp").client  # the llama_cpp.Llama inside ChatLlamaCpp
        load_s = time.perf_counter() - t0
        warm_up(chat_model(assistant.settings, "llamacpp"))  # as `qa serve` does at start: system prompt cached
        rows = []
        for q in questions:
            t0 = time.perf_counter()
            first, answer = None, None
            for item in assistant.ask_stream(q):
                if isinstance(item, str) and first is None and item:
                    first = time.perf_counter() - t0
                answer = item
            total = time.perf_counter() - t0
            generated = len(llm.tokenize(answer.generated_text.encode(), add_bos=False)) if answer.generated_text else 0
            prompt_tokens = llm.n_tokens - generated if answer.generated_text else 0
            rows.append((q, first if answer.generated_text else None, total, prompt_tokens, generated, answer))
    print(f"model load {load_s:.1f} s\n")
    print(f"{'question':<55} {'first token':>11} {'total':>7} {'prompt tok':>10} {'gen tok':>8}")
    for q, first, total, prompt_tokens, generated, _ in rows:
        ft = f"{first:.2f} s" if first is not None else "(no model)"
        print(f"{q[:55]:<55} {ft:>11} {total:>5.2f} s {prompt_tokens:>10} {generated:>8}")
    print()
    for q, *_, answer in rows:
        print(f"Q: {q}\nA: {answer.text}")
        for c in answer.citations:
            print(f"   [{c.n}] {c.quote}")
        if answer.notes:
            print(f"   notes: {answer.notes}")
        print()


if __name__ == "__main__":
    main()
