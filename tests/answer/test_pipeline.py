"""The ask pipeline's own logic: which failures are blamed on the model. The chat models and the broken embedder
here are stand-ins (LangChain's fake chat model, a class whose encode fails) because the test is about how our
pipeline reports errors, not about a model; the index, retrieval and the rest are real."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

import qa
from qa.answer.extractive import extractive_answer
from qa.answer.gguf import ModelUnavailable
from qa.answer.pipeline import AskPipeline, standalone_question
from qa.store import Filters

QUESTION = "Why did Russia decline?"


class _BrokenEmbedder:
    """Stand-in for a bug in our own citation check: embedding the claims fails."""

    def encode(self, texts):
        raise KeyError("a bug in our own code")


class _DeadServer(GenericFakeChatModel):
    """Stand-in for a model server that goes away mid-answer."""

    def _stream(self, *args, **kwargs) -> Iterator:
        raise ConnectionError("connection refused")


def _generate(seeded: qa.Assistant, pipeline: AskPipeline, model, backend: str) -> list:
    reading = seeded.pipeline().read(QUESTION, 5, Filters())
    quoted = extractive_answer(QUESTION, reading.ranked, reading.passages, seeded.settings)
    return list(pipeline.generate(model, backend, QUESTION, reading, quoted, {}, time.perf_counter()))


def test_a_bug_in_the_citation_check_keeps_its_own_name(seeded: qa.Assistant):
    model = GenericFakeChatModel(messages=iter([AIMessage("Moscow called the meeting one-sided. [1]")]))
    pipeline = AskPipeline(seeded.store(), _BrokenEmbedder(), seeded.settings)
    with pytest.raises(KeyError, match="a bug in our own code"):
        _generate(seeded, pipeline, model, "llamacpp")


def test_a_failing_model_server_is_one_clear_error_naming_it(seeded: qa.Assistant):
    model = _DeadServer(messages=iter([]))
    with pytest.raises(ModelUnavailable, match=r"'openai' answer backend failed.*127\.0\.0\.1:8000.*extractive"):
        _generate(seeded, seeded.pipeline(), model, "openai")


def test_a_short_follow_up_is_read_with_the_last_question_in_either_history_shape():
    pairs = [("Why did Russia decline?", "It called the meeting one-sided. [1]")]
    messages = [{"role": "user", "content": "Why did Russia decline?"}, {"role": "assistant", "content": "..."}]
    for history in (pairs, messages):
        assert standalone_question("And Iran?", history) == "Why did Russia decline? And Iran?"
    long = "Which countries are expected to attend the meeting in Paris on Syria?"
    assert standalone_question(long, pairs) == long  # a full question stands alone
    assert standalone_question("And Iran?", pairs, max_words=1) == "And Iran?"  # settings.followup_max_words
    assert standalone_question("Who said that?", pairs) == "Why did Russia decline? Who said that?"
    assert standalone_question("Who won the 2010 World Cup?", pairs) == "Who won the 2010 World Cup?"  # stands alone
    assert standalone_question("What did Apple announce this week?", pairs).startswith("What did Apple")
