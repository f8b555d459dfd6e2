"""Chat history in the two shapes callers send it (OpenAI-style role dicts, or Gradio's (user, assistant)
pairs), read in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

History = Sequence[Any]  # [{"role": "user"|"assistant", "content": str}, ...] or [(user, assistant), ...]


def turns(history: History | None) -> list[tuple[str, str]]:
    """(role, text) pairs, oldest first; roles are "user" or "assistant", empty texts left out."""
    out: list[tuple[str, str]] = []
    for turn in history or ():
        if isinstance(turn, dict):
            role = "user" if turn.get("role", "user") == "user" else "assistant"
            out.append((role, str(turn.get("content", "") or "")))
        elif isinstance(turn, (list, tuple)) and len(turn) == 2:
            out += [("user", str(turn[0] or "")), ("assistant", str(turn[1] or ""))]
    return [(role, text) for role, text in out if text.strip()]


def last_question(history: History | None) -> str:
    """The user's most recent earlier question, or ""."""
    return next((text for role, text in reversed(turns(history)) if role == "user"), "")


def transcript(history: History | None, limit: int = 6) -> str:
    """The last `limit` entries of the history as "User: ..." / "Assistant: ..." lines (each cut to 400
    characters), for a prompt."""
    names = {"user": "User", "assistant": "Assistant"}
    return "\n".join(f"{names[role]}: {text}"[:400] for role, text in turns(list(history or ())[-limit:]))
