"""Stage 6 (generative): an LCEL chain (prompt | chat model | text) over a few numbered source sentences,
streamed; and follow-up questions rewritten into standalone ones. Prompts live in prompts/."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from qa.answer.history import History, transcript
from qa.answer.prompts import prompt
from qa.answer.sentences import Candidate
from qa.stories.signals import outlet


def pick_sources(ranked: list[Candidate], n: int) -> list[Candidate]:
    """The n best-supporting sentences: few prompt tokens (a fast first token) and precise citations."""
    return ranked[:n]


HEADLINE_CHARS = 120


def format_sources(sources: Sequence[Candidate]) -> str:
    """One numbered line per sentence, led by its article's date and outlet (news is read as of a day) and its
    headline, which often names what the sentence only refers to ("She said ..." under "Ardern to resign")."""
    lines = []
    for i, c in enumerate(sources, start=1):
        who = c.passage.outlet or outlet(c.passage.source, c.passage.url)
        headline = " ".join(c.passage.title.split())
        if len(headline) > HEADLINE_CHARS:
            headline = headline[:HEADLINE_CHARS].rsplit(" ", 1)[0] + " ..."
        meta = ", ".join(x for x in (c.passage.published, who) if x)
        meta = "; ".join(x for x in (meta, f"headline: {headline}" if headline else "") if x)
        lines.append(f"[{i}] " + (f"({meta}) " if meta else "") + " ".join(c.text.split()))
    return "\n".join(lines)


def answer_chain(model: BaseChatModel) -> Runnable:
    template = ChatPromptTemplate.from_messages(
        [("system", prompt("answer_system.txt")), ("human", prompt("answer_user.txt"))],
        template_format="f-string",
    )
    return template | model | StrOutputParser()


def warm_up(model: BaseChatModel) -> None:
    """Run the answer prompt once, without sources and for one token. llama.cpp keeps the evaluated system prompt
    in its KV cache and reuses it for the next prompt, so the first question after start does not evaluate it
    (first token of the seed question 3.5 s -> ~2 s here)."""
    answer_chain(model.bind(max_tokens=1)).invoke({"sources": "", "question": ""})


def stream_answer(model: BaseChatModel, question: str, sources: Sequence[Candidate]) -> Iterator[str]:
    """Text pieces as the model writes them."""
    yield from answer_chain(model).stream({"sources": format_sources(sources), "question": question})


def condense_question(model: BaseChatModel, question: str, history: History) -> str | None:
    """The follow-up as a standalone question, or None when the model's rewrite is not usable."""
    template = ChatPromptTemplate.from_messages(
        [("system", prompt("condense_system.txt")), ("human", prompt("condense_user.txt"))]
    )
    chain = template | model | StrOutputParser()
    text = chain.invoke({"history": transcript(history), "question": question})
    lines = [line.strip().strip('"').strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    rewritten = re.sub(r"^(standalone question|question)\s*:\s*", "", lines[0], flags=re.IGNORECASE)
    return rewritten if 3 <= len(rewritten) <= 300 else None
